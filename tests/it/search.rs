//! `meridian search`: what three people wrote in three time zones, found through a real
//! relay; an index killed while it is brought up to date, damaged or deleted, repaired at
//! the next search without losing a hit.

use std::time::Duration;

use serde_json::Value;

use crate::relays::Team;
use crate::support::{Home, World, meridian_bin};

fn ids(hits: &Value) -> Vec<String> {
    hits.as_array()
        .unwrap_or_else(|| panic!("not a list: {hits}"))
        .iter()
        .map(|h| h["id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn search_finds_what_everyone_wrote_with_filters_and_the_line_that_matched() {
    let team = Team::new(&[
        ("Ana", "Asia/Tokyo"),
        ("Bo", "Europe/Berlin"),
        ("Cy", "America/Lima"),
    ]);
    let [ana, bo, cy] = [&team.homes[0], &team.homes[1], &team.homes[2]];
    let p = ana.create(&[
        "proposal",
        "new",
        "Store workspaces in redb",
        "--section",
        "Summary=One file per home.\nIt is copied whole for backups.",
    ]);
    let t = bo.create(&[
        "thread",
        "new",
        "Where does the relay live?",
        "-m",
        "We need a host.",
    ]);
    team.sync_until_quiet(&[ana, bo, cy]);
    cy.ok(&[
        "reply",
        &t,
        "-m",
        "On the backup host, next to the nightly snapshots.",
    ]);
    cy.ok(&[
        "proposal",
        "concern",
        &p,
        "-m",
        "Are backups of a live file consistent?",
        "--blocking",
    ]);
    let u = bo.create(&["update", "new", "--done", "Moved the backups to S3"]);
    team.sync_until_quiet(&[ana, bo, cy]);

    // Everything that says "backups" (or "backup": no stemming, so not that one).
    let mut found = ids(&ana.json(&["search", "backups"]));
    found.sort();
    let mut expected = vec![p.clone(), u.clone()];
    expected.sort();
    assert_eq!(found, expected);
    // Each hit says where it matched and shows that line.
    let hits = ana.json(&["search", "backups", "--kind", "proposal"]);
    assert_eq!(ids(&hits), [p.as_str()]);
    let hit = &hits[0];
    assert_eq!(hit["kind"], "proposal");
    assert_eq!(hit["state"], "draft");
    assert_eq!(hit["matches"], 2, "the section and the concern: {hit}");
    let line = hit["line"].as_str().unwrap();
    let [start, end] = [0, 1].map(|i| hit["highlights"][0][i].as_u64().unwrap() as usize);
    assert_eq!(&line[start..end], "backups", "{hit}");
    // Filters: who wrote it, the state, a phrase, since when.
    assert_eq!(
        ids(&ana.json(&["search", "host", "--author", "Cy"])),
        [t.as_str()]
    );
    assert!(ids(&ana.json(&["search", "host", "--author", "Ana"])).is_empty());
    assert_eq!(
        ids(&ana.json(&["search", "backups", "--state", "posted"])),
        [u.as_str()]
    );
    assert_eq!(
        ids(&bo.json(&["search", "\"nightly snapshots\""])),
        [t.as_str()]
    );
    assert!(ids(&bo.json(&["search", "\"snapshots nightly\""])).is_empty());
    assert!(ids(&bo.json(&["search", "relay", "--since", "2020-01-01"])).contains(&t));
    // A person reads it as text.
    let text = cy.ok(&["search", "nightly"]);
    assert!(text.contains("Where does the relay live?"), "{text}");
    assert!(text.contains("comment, Cy, "), "{text}");
    assert!(
        text.contains("On the backup host, next to the nightly snapshots."),
        "{text}"
    );
    assert!(
        cy.ok(&["search", "zebra"])
            .contains("Nothing matches `zebra`.")
    );
    let e = cy.err(&["search", "host", "--author", "Dee"]);
    assert!(e.contains("nobody named `Dee`"), "{e}");
    let e = cy.err(&["search", "\"unclosed"]);
    assert!(e.contains("cannot read the query"), "{e}");
}

/// `meridian search WORD` started and killed after `after`.
fn killed_search(home: &Home, after: Duration) {
    let mut child = std::process::Command::new(meridian_bin())
        .args(["search", "canary"])
        .env("MERIDIAN_HOME", home.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(after);
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn an_index_killed_damaged_or_deleted_is_repaired_and_never_misses_a_hit() {
    let world = World::new();
    let ana = world.person("Ana", "Europe/Berlin");
    ana.ok(&["workspace", "create", "solo"]);
    let count = |home: &Home| ids(&home.json(&["search", "canary", "--limit", "500"])).len();
    let mut written = 0;
    for round in 0..6u64 {
        // New documents, then a search killed part way through indexing them.
        for i in 0..15 {
            ana.ok(&[
                "thread",
                "new",
                &format!("Thread {round}-{i}"),
                "-m",
                &format!("A canary, number {round}-{i}."),
            ]);
            written += 1;
        }
        killed_search(&ana, Duration::from_millis(5 + round * 9));
        assert_eq!(count(&ana), written, "after the kill in round {round}");
    }
    // A text that starts with spaces and holds letters of several bytes: the line and the
    // highlight are taken from the text as stored (tantivy's snippet of a document trims
    // it first, which shifted every offset and once split a character).
    let t = ana.create(&["thread", "new", "Coffee", "-m", "Where?"]);
    ana.ok(&["reply", &t, "-m", "  Café au lait by the harbour"]);
    let hits = ana.json(&["search", "harbour"]);
    let line = hits[0]["line"].as_str().unwrap();
    let [start, end] = [0, 1].map(|i| hits[0]["highlights"][0][i].as_u64().unwrap() as usize);
    assert_eq!(&line[start..end], "harbour", "{hits}");
    assert!(
        ana.ok(&["search", "harbour"])
            .contains("Café au lait by the harbour")
    );
    // A damaged index is rebuilt; so is a deleted one.
    let dir = ana.path().join("search");
    std::fs::write(dir.join("meta.json"), b"{ not json").unwrap();
    assert_eq!(count(&ana), written);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(count(&ana), written);
    // An edit after the index was built is found by the next search.
    ana.ok(&["thread", "new", "Late", "-m", "The last canary."]);
    assert_eq!(count(&ana), written + 1);
    let said = ana.ok(&["search", "--reindex"]);
    // Every canary thread, the late one and the coffee thread.
    assert!(
        said.contains(&format!("Indexed {} documents", written + 2)),
        "{said}"
    );
}

/// The generation the search index has reached, from its commit's payload.
fn reached(home: &Home) -> String {
    let meta = std::fs::read_to_string(home.path().join("search/meta.json")).unwrap_or_default();
    let value: Value = serde_json::from_str(&meta).unwrap_or(Value::Null);
    value["payload"].as_str().unwrap_or_default().to_string()
}

#[test]
fn a_running_daemon_keeps_the_index_of_someone_who_searches_up_to_date() {
    let team = Team::new(&[("Ana", "Asia/Tokyo"), ("Bo", "Europe/Berlin")]);
    let [ana, bo] = [&team.homes[0], &team.homes[1]];
    // Ana has searched once: her home has an index.
    assert!(ids(&ana.json(&["search", "lighthouse"])).is_empty());
    let before = reached(ana);
    assert!(before.starts_with("v1 gen "), "{before}");
    let log = team.world.file("daemon.log");
    let _daemon = crate::relays::start_daemon(ana, &log, &[]);
    let t = bo.create(&[
        "thread",
        "new",
        "The lighthouse",
        "-m",
        "A relay by the sea.",
    ]);
    bo.ok(&["sync"]);
    // The daemon receives it and indexes it, with no search run meanwhile.
    let started = std::time::Instant::now();
    while reached(ana) == before && started.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_ne!(
        reached(ana),
        before,
        "the daemon did not index: {}",
        crate::relays::read_log(&log)
    );
    assert_eq!(ids(&ana.json(&["search", "lighthouse"])), [t.as_str()]);
}
