//! The daily loop (write, ask, decide, reply, catch up) as a team meets it: each test is
//! one thing a person does, and fails on a build from before it was fixed
//! (`MERIDIAN_TEST_BIN=old/meridian cargo test --test it daily::` shows which).

use serde_json::Value;

use crate::support::{Home, World, sync_pair};

/// Ana (Tokyo), Bo (Berlin) and Cy (Lima) in one workspace, exchanging bundles.
fn team(world: &World) -> [Home; 3] {
    let homes = world.team(&[
        ("Ana", "Asia/Tokyo"),
        ("Bo", "Europe/Berlin"),
        ("Cy", "America/Lima"),
    ]);
    <[Home; 3]>::try_from(homes).ok().unwrap()
}

/// Both directions of a bundle exchange.
fn exchange(world: &World, a: &Home, b: &Home) {
    sync_pair(world, a, b);
    sync_pair(world, b, a);
}

fn field<'a>(value: &'a Value, name: &str) -> Vec<&'a str> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v[name].as_str().unwrap())
        .collect()
}

#[test]
fn a_conflict_settles_with_the_value_show_prints_or_another() {
    let world = World::new();
    let [ana, bo, _] = team(&world);
    let p = ana.create(&["proposal", "new", "Storage", "--decider", "Bo"]);
    exchange(&world, &ana, &bo);
    // Offline, both rename it.
    ana.ok(&["proposal", "edit", &p, "--title", "Store in redb"]);
    bo.ok(&["proposal", "edit", &p, "--title", "Store in SQLite"]);
    exchange(&world, &ana, &bo);
    let conflicts = ana.json(&["conflicts", &p]);
    assert_eq!(field(&conflicts, "field"), ["title"], "{conflicts}");
    // The title `show` prints is the one that wins; settling on it works.
    let shown = ana.json(&["show", &p])["title"]
        .as_str()
        .unwrap()
        .to_string();
    let first = ana.ok(&["show", &p]);
    assert!(first.contains(&format!("# {shown}")), "{first}");
    ana.ok(&["resolve", &p, "title", &shown]);
    assert_eq!(ana.json(&["conflicts", &p]), Value::Array(vec![]));
    assert_eq!(ana.json(&["show", &p])["title"], shown.as_str());
    // Bo settles the same conflict concurrently with the other value: a new conflict,
    // which a third value settles.
    let other = if shown == "Store in redb" {
        "Store in SQLite"
    } else {
        "Store in redb"
    };
    bo.ok(&["resolve", &p, "title", other]);
    exchange(&world, &ana, &bo);
    bo.ok(&["resolve", &p, "title", "Store in one redb file"]);
    exchange(&world, &ana, &bo);
    for home in [&ana, &bo] {
        assert_eq!(home.json(&["conflicts", &p]), Value::Array(vec![]));
        assert_eq!(home.json(&["show", &p])["title"], "Store in one redb file");
    }
    assert!(
        ana.err(&["resolve", &p, "title", "x"])
            .contains("has no conflict")
    );
}

#[test]
fn a_state_conflict_settles_to_either_state() {
    let world = World::new();
    let [ana, bo, _] = team(&world);
    let decide = |state: &str| {
        let p = ana.create(&[
            "proposal",
            "new",
            "Ship it",
            "--decider",
            "Ana",
            "--decider",
            "Bo",
        ]);
        ana.ok(&["proposal", "open", &p, "--closes", "0m"]);
        ana.ok(&["proposal", "approve", &p]);
        exchange(&world, &ana, &bo);
        bo.ok(&["proposal", "approve", &p]);
        exchange(&world, &ana, &bo);
        // Offline, Ana accepts while Bo rejects.
        ana.ok(&["proposal", "accept", &p]);
        bo.ok(&["proposal", "reject", &p, "-m", "not now"]);
        exchange(&world, &ana, &bo);
        let shown = bo.ok(&["show", &p]);
        assert!(shown.contains("accepted vs rejected"), "{shown}");
        let conflicts = bo.json(&["conflicts", &p]);
        assert_eq!(field(&conflicts, "field"), ["state"], "{conflicts}");
        bo.ok(&["resolve", &p, "state", state]);
        exchange(&world, &ana, &bo);
        for home in [&ana, &bo] {
            assert_eq!(home.json(&["show", &p])["state"], state);
            assert_eq!(home.json(&["conflicts", &p]), Value::Array(vec![]));
        }
    };
    decide("accepted");
    decide("rejected");
}

#[test]
fn a_thread_resolved_and_reopened_concurrently_settles_to_open() {
    let world = World::new();
    let [ana, bo, _] = team(&world);
    let t = ana.create(&["thread", "new", "Release date?", "-m", "Friday or Monday?"]);
    exchange(&world, &ana, &bo);
    // Each resolves it offline; Ana then reopens what she saw, Bo does not see that.
    ana.ok(&["thread", "resolve", &t]);
    bo.ok(&["thread", "resolve", &t]);
    ana.ok(&["thread", "reopen", &t]);
    exchange(&world, &ana, &bo);
    let conflicts = bo.json(&["conflicts", &t]);
    let values: Vec<&str> = conflicts[0]["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["value"].as_str().unwrap())
        .collect();
    assert_eq!(values, ["open", "resolved"], "{conflicts}");
    bo.ok(&["resolve", &t, "state", "open"]);
    exchange(&world, &ana, &bo);
    for home in [&ana, &bo] {
        assert_eq!(home.json(&["show", &t])["state"], "open");
        assert_eq!(home.json(&["conflicts", &t]), Value::Array(vec![]));
    }
}

#[test]
fn naming_a_person_or_a_section_twice_is_naming_them_once() {
    let world = World::new();
    let [ana, _, _] = team(&world);
    let p = ana.create(&[
        "proposal",
        "new",
        "Twice",
        "--ask",
        "Bo",
        "--ask",
        "bo",
        "--decider",
        "Cy",
        "--decider",
        "Cy",
        "--decider",
        "Ana",
        "--section",
        "Summary=Once.",
        "--section",
        "summary=Once.",
    ]);
    let shown = ana.json(&["show", &p]);
    assert_eq!(field(&shown["asks"], "member"), ["Bo"], "{shown}");
    assert_eq!(shown["deciders"].as_array().unwrap().len(), 2, "{shown}");
    assert_eq!(shown["sections"][0]["text"], "Once.");
    let t = ana.create(&[
        "thread",
        "new",
        "Asked twice",
        "-m",
        "?",
        "--ask",
        "Cy",
        "--ask",
        "Cy",
    ]);
    assert_eq!(field(&ana.json(&["show", &t])["asks"], "member"), ["Cy"]);
    ana.ok(&["workspace", "ladder", "Bo", "Bo", "Cy"]);

    let refused = ana.err(&[
        "proposal",
        "new",
        "Two texts",
        "--section",
        "Summary=a",
        "--section",
        "Summary=b",
    ]);
    assert!(
        refused.contains("Summary") && refused.contains("\"a\"") && refused.contains("\"b\""),
        "{refused}"
    );
    assert!(!refused.contains("bug in meridian"), "{refused}");
}

#[test]
fn a_removed_member_is_listed_as_removed_and_cannot_be_asked() {
    let world = World::new();
    let [ana, bo, _] = team(&world);
    ana.ok(&["member", "remove", "Cy"]);
    exchange(&world, &ana, &bo);
    for home in [&ana, &bo] {
        let members = home.json(&["member", "list"]);
        let cy = members
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == "Cy")
            .unwrap()
            .clone();
        assert_eq!(cy["removed"], true, "{members}");
        assert!(home.ok(&["member", "list"]).contains("REMOVED"));
        assert_eq!(home.json(&["workspace", "list"])[0]["members"], 2);
    }
    for args in [
        &["proposal", "new", "X", "--ask", "Cy"][..],
        &["proposal", "new", "X", "--decider", "Cy"],
        &["thread", "new", "X", "--ask", "Cy", "-m", "body"],
    ] {
        let refused = bo.err(args);
        assert!(refused.contains("Cy was removed"), "{args:?}: {refused}");
    }
    assert!(!ana.err(&["workspace", "ladder", "Cy"]).contains("bug"));
}

#[test]
fn a_removed_device_is_told_so_when_it_syncs() {
    let team = crate::relays::Team::new(&[("Ana", "Asia/Tokyo"), ("Cy", "America/Lima")]);
    let [ana, cy] = [&team.homes[0], &team.homes[1]];
    ana.ok(&["member", "remove", "Cy"]);
    crate::relays::sync(ana);
    cy.ok(&["thread", "new", "Still here?", "-m", "hello"]);
    let said = cy.err(&["sync"]);
    assert!(
        said.contains("removed from workspace `acme`") && !said.contains("outbox"),
        "{said}"
    );
}

/// The workspaces a home lists, by name.
fn workspaces(home: &Home) -> Vec<String> {
    field(&home.json(&["workspace", "list"]), "name")
        .into_iter()
        .map(str::to_string)
        .collect()
}

#[test]
fn a_join_the_relay_refuses_fails_and_leaves_room_for_a_fresh_code() {
    let mut team = crate::relays::Team::new(&[("Ana", "Asia/Tokyo"), ("Bo", "Europe/Berlin")]);
    let [ana, bo] = [&team.homes[0], &team.homes[1]];
    // A code admits one device: Bo's node used this one already.
    let used = ana.ok(&["invite"]).trim().to_string();
    let dee = team.world.person("Dee", "Europe/Berlin");
    dee.ok(&["join", &used]);
    let eve = team.world.person("Eve", "Asia/Tokyo");
    let refused = eve.err(&["join", &used]);
    assert!(
        refused.contains("already used") && refused.contains("new code"),
        "{refused}"
    );
    assert!(workspaces(&eve).is_empty(), "a refused join keeps nothing");
    let fresh = ana.ok(&["invite"]).trim().to_string();
    let joined = eve.ok(&["join", &fresh]);
    assert!(joined.starts_with("Joined acme"), "{joined}");

    // An invite whose inviter was removed admits nobody.
    let bos_code = bo.ok(&["invite"]).trim().to_string();
    ana.ok(&["member", "remove", "Bo"]);
    crate::relays::sync(ana);
    let fay = team.world.person("Fay", "America/Lima");
    let refused = fay.err(&["join", &bos_code]);
    assert!(refused.contains("not a member"), "{refused}");
    assert!(workspaces(&fay).is_empty());

    // Offline, a join is kept and says it registers later; if the relay then refuses the
    // code, a fresh one joins the same workspace, keeping what was written meanwhile.
    let gus = team.world.person("Gus", "America/Lima");
    team.relay.stop();
    let offline = gus.ok(&["join", &used]);
    assert!(offline.contains("offline"), "{offline}");
    let t = gus.create(&["thread", "new", "Hello from Gus", "-m", "first words"]);
    team.relay.restart();
    let said = gus.err(&["sync"]);
    assert!(said.contains("already used"), "{said}");
    let fresh = ana.ok(&["invite"]).trim().to_string();
    let again = gus.ok(&["join", &fresh]);
    assert!(again.starts_with("Joined acme"), "{again}");
    crate::relays::push(&gus);
    crate::relays::sync(ana);
    assert_eq!(ana.json(&["show", &t])["title"], "Hello from Gus");
    let members = ana.json(&["member", "list"]);
    let gus_row = members
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "Gus")
        .unwrap();
    assert_eq!(gus_row["verified"], true, "{members}");
}
