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
