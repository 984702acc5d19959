//! Status updates as a team lives with them: what each says at a glance, a blocker that
//! names someone reaching their inbox, and who has not posted for the week they are in.

use crate::support::{Home, World, sync_pair};

/// Ana (Tokyo), Bo (Berlin) and Cy (Lima) in one workspace, exchanging bundles.
fn team(world: &World) -> [Home; 3] {
    world.three()
}

#[test]
fn an_update_lists_what_it_says_and_a_named_blocker_waits_in_their_inbox() {
    let world = World::new();
    let [ana, bo, cy] = team(&world);
    let u = ana.create(&[
        "update",
        "new",
        "--done",
        "Shipped sync v2",
        "--done",
        "Fixed the inbox",
        "--next",
        "Benchmarks",
        "--blockers",
        "Waiting on @Cy for the relay's address",
    ]);
    let shown = ana.json(&["show", &u]);
    assert_eq!(shown["done"], "- Shipped sync v2\n- Fixed the inbox");
    assert_eq!(shown["next"], "Benchmarks");

    // The list says what each update says (not a table of titles).
    let listed = ana.ok(&["update", "list"]);
    for line in [
        "Done      - Shipped sync v2",
        "          - Fixed the inbox",
        "Next      Benchmarks",
        "Blockers  Waiting on @Cy for the relay's address",
    ] {
        assert!(listed.contains(line), "{line:?} is missing from:\n{listed}");
    }
    let json = ana.json(&["update", "list"]);
    assert_eq!(json[0]["id"], u.as_str());
    assert_eq!(
        json[0]["blockers"],
        "Waiting on @Cy for the relay's address"
    );

    // Cy, named in the blockers, finds the update waiting for her; Bo does not.
    for to in [&bo, &cy] {
        sync_pair(&world, &ana, to);
    }
    let waiting = |home: &Home| -> Vec<String> {
        home.json(&["inbox"])["workspaces"][0]["waiting_for_you"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["id"].as_str().unwrap_or_default().to_string())
            .collect()
    };
    assert_eq!(waiting(&cy), [u.as_str()]);
    assert!(waiting(&bo).is_empty());
    // Her reply answers it.
    cy.ok(&["reply", &u, "-m", "relay.example.org:7070"]);
    assert!(waiting(&cy).is_empty());
}

#[test]
fn missing_updates_are_counted_in_each_members_own_week() {
    let world = World::new();
    let [ana, bo, cy] = team(&world);
    // Bo posted, but for an old week.
    bo.ok(&[
        "update", "new", "--done", "Old news", "--period", "2020-W01",
    ]);
    ana.ok(&["update", "new", "--done", "Storage"]);
    for (from, to) in [(&ana, &cy), (&bo, &cy)] {
        sync_pair(&world, from, to);
    }
    let missing = cy.json(&["update", "missing"]);
    let names: Vec<&str> = missing
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["member"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Bo", "Cy"], "{missing}");
    // Each one's week is theirs: what `update new` would file for them now.
    for m in missing.as_array().unwrap() {
        let home = if m["member"]["name"] == "Bo" {
            &bo
        } else {
            &cy
        };
        let id = home.create(&["update", "new", "--next", "Catch up"]);
        assert_eq!(home.json(&["show", &id])["period"], m["period"], "{m}");
    }
    let text = ana.ok(&["update", "missing"]);
    assert!(text.contains("MEMBER"), "{text}");
    for (from, to) in [(&bo, &ana), (&cy, &ana)] {
        sync_pair(&world, from, to);
    }
    let text = ana.ok(&["update", "missing"]);
    assert!(
        text.contains("Everyone in acme has posted an update for their week."),
        "{text}"
    );
}
