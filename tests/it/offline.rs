//! Three people in three time zones edit offline and converge through bundles.

use serde_json::Value;

use crate::support::{Home, World, sync_pair};

/// What must be identical on every node: heads and content, read in one zone.
fn state(home: &Home, id: &str) -> (Value, Value) {
    let list = home.json(&["--tz", "UTC", "proposal", "list"]);
    let threads = home.json(&["--tz", "UTC", "thread", "list"]);
    let heads: Vec<Value> = list
        .as_array()
        .unwrap()
        .iter()
        .chain(threads.as_array().unwrap())
        .map(|d| d["heads"].clone())
        .collect();
    let mut shown = home.json(&["--tz", "UTC", "show", id]);
    shown.as_object_mut().unwrap().remove("changed_since_read");
    shown.as_object_mut().unwrap().remove("asks");
    (Value::Array(heads), shown)
}

fn write_file(world: &World, name: &str, text: &str) -> String {
    let path = world.file(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn three_zones_edit_offline_and_converge_in_any_exchange_order() {
    let world = World::new();
    let homes = world.team(&[
        ("Ana", "Asia/Tokyo"),
        ("Bo", "Europe/Berlin"),
        ("Cy", "America/Lima"),
    ]);
    let [ana, bo, cy] = [&homes[0], &homes[1], &homes[2]];
    let p = ana.create(&[
        "proposal",
        "new",
        "Storage engine",
        "--decider",
        "Ana",
        "--decider",
        "Bo",
        "--section",
        "Summary=We store documents in redb.\n",
    ]);
    let t = ana.create(&["thread", "new", "Naming", "-m", "What do we call it?"]);
    ana.ok(&["proposal", "open", &p, "--closes", "0m"]);
    for home in [bo, cy] {
        sync_pair(&world, ana, home);
    }

    // Offline: two concurrent edits of the same section, replies everywhere.
    let a_file = write_file(&world, "a.md", "We store all documents in redb.\n");
    ana.ok(&[
        "proposal",
        "edit",
        &p,
        "--section",
        "Summary",
        "--file",
        &a_file,
    ]);
    let b_file = write_file(
        &world,
        "b.md",
        "We store documents in redb.\nOne file per home.\n",
    );
    bo.ok(&[
        "proposal",
        "edit",
        &p,
        "--section",
        "Summary",
        "--file",
        &b_file,
    ]);
    ana.ok(&["reply", &t, "-m", "Meridian"]);
    bo.ok(&["reply", &t, "-m", "Longitude"]);
    cy.ok(&["reply", &p, "-m", "Looks good from Lima"]);
    cy.ok(&["reply", &t, "-m", "Either"]);

    // Exchange in a scrambled order: Lima first, Tokyo last.
    for (from, to) in [
        (cy, bo),
        (bo, ana),
        (ana, cy),
        (cy, ana),
        (bo, cy),
        (ana, bo),
    ] {
        sync_pair(&world, from, to);
    }
    let reference = state(ana, &p);
    assert_eq!(state(bo, &p), reference, "Berlin converged with Tokyo");
    assert_eq!(state(cy, &p), reference, "Lima converged with Tokyo");
    let summary = reference.1["sections"][0]["text"].as_str().unwrap();
    assert_eq!(
        summary, "We store all documents in redb.\nOne file per home.\n",
        "both concurrent edits survive"
    );
    assert_eq!(reference.1["comments"].as_array().unwrap().len(), 1);
    let thread = ana.json(&["--tz", "UTC", "show", &t]);
    assert_eq!(thread["comments"].as_array().unwrap().len(), 3);
    assert_eq!(
        bo.json(&["--tz", "UTC", "show", &t])["comments"],
        thread["comments"]
    );

    // Incompatible transitions offline: Ana accepts while Bo rejects.
    ana.ok(&["proposal", "approve", &p]);
    bo.ok(&["proposal", "approve", &p]);
    sync_pair(&world, ana, bo);
    sync_pair(&world, bo, ana);
    // Concurrent title edits too (before each decides: a decided text is final).
    ana.ok(&["proposal", "edit", &p, "--title", "Storage engine: redb"]);
    bo.ok(&["proposal", "edit", &p, "--title", "Storage engine (redb)"]);
    ana.ok(&["proposal", "approve", &p]);
    bo.ok(&["proposal", "approve", &p]);
    ana.ok(&["proposal", "accept", &p]);
    bo.ok(&["proposal", "reject", &p, "-m", "too risky"]);
    for (from, to) in [(bo, cy), (ana, cy), (cy, ana), (cy, bo)] {
        sync_pair(&world, from, to);
    }
    for home in [ana, bo, cy] {
        let shown = home.json(&["show", &p]);
        assert_eq!(
            shown["state"],
            "conflict",
            "{} sees the conflict",
            home.name()
        );
        let conflicts = home.json(&["conflicts", &p]);
        let fields: Vec<&str> = conflicts
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["field"].as_str().unwrap())
            .collect();
        assert_eq!(fields, ["title", "state"], "{}", home.name());
        let state = &conflicts[1]["values"];
        let mut who: Vec<(String, String)> = state
            .as_array()
            .unwrap()
            .iter()
            .map(|v| {
                (
                    v["value"].as_str().unwrap().into(),
                    v["by"]["name"].as_str().unwrap().into(),
                )
            })
            .collect();
        who.sort();
        assert_eq!(
            who,
            [
                ("accepted".to_string(), "Ana".to_string()),
                ("rejected".to_string(), "Bo".to_string())
            ]
        );
    }
    assert!(cy.ok(&["show", &p]).contains("CONFLICT"));
    assert!(
        cy.err(&["resolve", &p, "body", "x"])
            .contains("cannot be resolved")
    );

    // Settle both explicitly, on one node; everyone follows.
    // The title first: a rejected proposal's text is final.
    bo.ok(&["resolve", &p, "title", "Storage engine"]);
    bo.ok(&["resolve", &p, "state", "rejected"]);
    for home in [ana, cy] {
        sync_pair(&world, bo, home);
    }
    for home in [ana, bo, cy] {
        let shown = home.json(&["show", &p]);
        assert_eq!(shown["state"], "rejected");
        assert_eq!(shown["title"], "Storage engine");
        assert_eq!(home.json(&["conflicts", &p]).as_array().unwrap().len(), 0);
    }
    assert_eq!(state(ana, &p), state(cy, &p));
}
