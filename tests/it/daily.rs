//! The daily loop (write, ask, decide, reply, catch up) as a team meets it: each test is
//! one thing a person does, and fails on a build from before it was fixed
//! (`MERIDIAN_TEST_BIN=old/meridian cargo test --test it daily::` shows which).

use serde_json::Value;

use crate::support::{Home, World, sync_pair};

/// Ana (Tokyo), Bo (Berlin) and Cy (Lima) in one workspace, exchanging bundles.
fn team(world: &World) -> [Home; 3] {
    world.three()
}

/// Both directions of a bundle exchange.
fn exchange(world: &World, a: &Home, b: &Home) {
    sync_pair(world, a, b);
    sync_pair(world, b, a);
}

/// `home` sets a section of proposal `p` to `text`, from a file as a person would.
fn edit_section(world: &World, home: &Home, p: &str, flag: &str, name: &str, text: &str) {
    let file = world.file(&format!("{}-{name}.md", home.name()));
    std::fs::write(&file, text).unwrap();
    home.ok(&[
        "proposal",
        "edit",
        p,
        flag,
        name,
        "--file",
        file.to_str().unwrap(),
    ]);
}

/// One field of every object in a list; a person's name for a person.
fn field<'a>(value: &'a Value, name: &str) -> Vec<&'a str> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v[name].as_str().or(v[name]["name"].as_str()).unwrap())
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
    let [ana, bo, cy] = team(&world);
    // Cy writes in a thread before she is removed.
    let t = bo.create(&["thread", "new", "Lunch?", "-m", "Thai?"]);
    exchange(&world, &bo, &cy);
    cy.ok(&["reply", &t, "-m", "Sushi"]);
    exchange(&world, &cy, &bo);
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
        // When, and by whom: the creator, the only one who removes.
        assert_eq!(cy["removal"]["by"]["name"], "Ana", "{members}");
        assert!(cy["removal"]["at"].is_string(), "{members}");
        let list = home.ok(&["member", "list"]);
        let line = list.lines().find(|l| l.starts_with("Cy")).unwrap();
        assert!(
            line.contains("removed ") && line.ends_with("by Ana"),
            "{list}"
        );
        assert_eq!(home.json(&["workspace", "list"])[0]["members"], 2);
    }
    // Her words stay in the thread, and the thread says she has since been removed.
    let log = bo.ok(&["log", &t]);
    assert!(
        log.contains("Cy") && log.contains("(since removed)"),
        "{log}"
    );
    assert!(
        log.lines()
            .any(|l| l.starts_with("Cy was removed ") && l.ends_with("by Ana.")),
        "{log}"
    );
    let entries = bo.json(&["log", &t]);
    let by_cy: Vec<&serde_json::Value> = entries
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["author"]["name"] == "Cy")
        .collect();
    assert!(!by_cy.is_empty(), "{entries}");
    assert!(
        by_cy.iter().all(|e| e["removal"]["by"]["name"] == "Ana"),
        "{entries}"
    );
    let shown = bo.ok(&["show", &t]);
    assert!(shown.contains("Sushi"), "{shown}");
    assert!(
        shown
            .lines()
            .any(|l| l.starts_with("Cy was removed ") && l.ends_with("by Ana.")),
        "{shown}"
    );
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

/// A proposal Ana opens for herself and Bo to decide, approved by both, ready to accept.
fn approved_by_both(world: &World, ana: &Home, bo: &Home) -> String {
    let p = ana.create(&[
        "proposal",
        "new",
        "Use redb",
        "--decider",
        "Ana",
        "--decider",
        "Bo",
        "--section",
        "Summary=One file per home.",
    ]);
    ana.ok(&["proposal", "open", &p, "--closes", "0m"]);
    ana.ok(&["proposal", "approve", &p]);
    exchange(world, ana, bo);
    bo.ok(&["proposal", "approve", &p]);
    exchange(world, ana, bo);
    p
}

fn summary(home: &Home, p: &str) -> String {
    home.json(&["show", p])["sections"][0]["text"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn a_decided_proposal_is_final_until_reopened() {
    let world = World::new();
    let [ana, bo, _] = team(&world);
    let p = approved_by_both(&world, &ana, &bo);
    ana.ok(&["proposal", "accept", &p, "-m", "agreed"]);
    exchange(&world, &ana, &bo);
    for args in [
        &["proposal", "edit", &p, "--title", "Use SQLite"][..],
        &[
            "proposal",
            "edit",
            &p,
            "--section",
            "Summary",
            "--file",
            "/dev/null",
        ],
    ] {
        let refused = bo.err(args);
        assert!(
            refused.contains("accepted: its text is final") && !refused.contains("bug"),
            "{refused}"
        );
    }
    // A hand-made change after the decision is refused by every node's rules.
    let forged = {
        use meridian::doc::View;
        let node = meridian::node::Node::open(bo.path()).unwrap();
        let (workspace, _) = node.workspace(None).unwrap();
        let id = meridian::id::Id::parse(&p).unwrap();
        node.edit(workspace, id, |doc| {
            let _ = View::now(doc);
            let mut tx = doc.transaction();
            automerge::transaction::Transactable::put(
                &mut tx,
                automerge::ROOT,
                "title",
                "Rewritten",
            )?;
            tx.commit();
            Ok(())
        })
    };
    let error = format!("{:#}", forged.unwrap_err());
    assert!(
        error.contains("its title, sections and deciders are final"),
        "{error}"
    );

    // Reopening: by the author or a decider, with a reason; back to draft, approvals stale.
    assert!(bo.err(&["proposal", "reopen", &p]).contains("-m"));
    assert!(
        bo.err(&["proposal", "reopen", &p, "-m", " "])
            .contains("empty")
    );
    bo.ok(&["proposal", "reopen", &p, "-m", "the backup story changed"]);
    let shown = bo.json(&["show", &p]);
    assert_eq!(shown["state"], "draft");
    assert!(
        shown["approvals"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["stale"] == true),
        "{shown}"
    );
    bo.ok(&["proposal", "edit", &p, "--title", "Use redb, with backups"]);
    exchange(&world, &ana, &bo);
    assert_eq!(ana.json(&["show", &p])["title"], "Use redb, with backups");
}

#[test]
fn an_edit_concurrent_with_the_decision_is_kept_but_the_decided_text_is_shown() {
    let world = World::new();
    let [ana, bo, _] = team(&world);
    let p = approved_by_both(&world, &ana, &bo);
    // Offline: Ana accepts while Bo, not knowing, rewrites the summary.
    ana.ok(&["proposal", "accept", &p]);
    edit_section(
        &world,
        &bo,
        &p,
        "--section",
        "Summary",
        "Two files per home.\n",
    );
    exchange(&world, &ana, &bo);
    for home in [&ana, &bo] {
        let shown = home.json(&["show", &p]);
        assert_eq!(shown["state"], "accepted", "{shown}");
        assert_eq!(summary(home, &p), "One file per home.", "the accepted text");
        assert_eq!(shown["late_edits"], serde_json::json!(["section Summary"]));
        let text = home.ok(&["show", &p]);
        assert!(text.contains("concurrently with the decision"), "{text}");
        let markdown = home.ok(&["export", &p]);
        assert!(
            markdown.contains("One file per home.") && markdown.contains("concurrently"),
            "{markdown}"
        );
    }
}

fn section_names(home: &Home, p: &str) -> Vec<String> {
    field(&home.json(&["show", p])["sections"], "name")
        .into_iter()
        .map(str::to_string)
        .collect()
}

#[test]
fn a_markdown_body_keeps_its_preamble_and_its_code_blocks() {
    let world = World::new();
    let [ana, _, _] = team(&world);
    let body = world.file("rfc.md");
    std::fs::write(
        &body,
        "# Backups\n\nWhy now: we lost a laptop.\n\n## Summary\n\nNightly copies.\n\n\
         ## Design\n\n```sh\n## not a heading\nmeridian export --all\n```\n",
    )
    .unwrap();
    let p = ana.create(&[
        "proposal",
        "new",
        "Backups",
        "--body-file",
        body.to_str().unwrap(),
    ]);
    let shown = ana.json(&["show", &p]);
    let sections = &shown["sections"];
    assert_eq!(sections[0]["name"], "Introduction", "{shown}");
    assert_eq!(sections[0]["text"], "Why now: we lost a laptop.\n");
    let design = sections
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "Design")
        .unwrap();
    assert_eq!(
        design["text"],
        "```sh\n## not a heading\nmeridian export --all\n```\n"
    );
    assert!(!section_names(&ana, &p).contains(&"not a heading".to_string()));
}

#[test]
fn section_names_are_checked_and_sections_can_be_added_and_removed() {
    let world = World::new();
    let [ana, _, _] = team(&world);
    let refused = ana.err(&["proposal", "new", "X", "--section", "Sumary=typo"]);
    assert!(
        refused.contains("no section `Sumary`") && refused.contains("Summary, Motivation"),
        "{refused}"
    );
    let p = ana.create(&[
        "proposal",
        "new",
        "Cache",
        "--template",
        "adr",
        "--new-section",
        "Risks=Stale reads.",
    ]);
    assert_eq!(
        section_names(&ana, &p),
        ["Context", "Decision", "Consequences", "Risks"]
    );
    let refused = ana.err(&[
        "proposal",
        "edit",
        &p,
        "--section",
        "Rsks",
        "--file",
        "/dev/null",
    ]);
    assert!(
        refused.contains("no section `Rsks`") && refused.contains("--new-section"),
        "{refused}"
    );
    edit_section(
        &world,
        &ana,
        &p,
        "--new-section",
        "Alternatives",
        "An LRU cache.\n",
    );
    ana.ok(&["proposal", "edit", &p, "--remove-section", "Risks"]);
    assert_eq!(
        section_names(&ana, &p),
        ["Context", "Decision", "Consequences", "Alternatives"]
    );
    // `NAME=TEXT`, as `proposal new` takes it, sets a section's text without a file.
    let said = ana.ok(&["proposal", "edit", &p, "--section", "context=Reads = slow."]);
    assert!(said.contains("Edited Context of"), "{said}");
    let said = ana.ok(&["proposal", "edit", &p, "--new-section", "Costs=None."]);
    assert!(said.contains("Added section Costs to"), "{said}");
    let shown = ana.json(&["show", &p]);
    assert_eq!(shown["sections"][0]["text"], "Reads = slow.", "{shown}");
    assert_eq!(shown["sections"][4]["name"], "Costs", "{shown}");
    ana.ok(&["proposal", "edit", &p, "--remove-section", "Costs"]);
    // A file sets the sections it has; the others stay.
    let part = world.file("part.md");
    std::fs::write(&part, "## Context\n\nReads are slow.\n").unwrap();
    ana.ok(&["proposal", "edit", &p, "--file", part.to_str().unwrap()]);
    assert_eq!(section_names(&ana, &p).len(), 4);
    // In the editor, deleting a heading removes its section, and the command says so.
    let editor = world.file("editor.sh");
    std::fs::write(
        &editor,
        "#!/bin/sh\nprintf '# Cache\\n\\n## Context\\n\\nSlow.\\n\\n## Decision\\n\\nCache.\\n' > \"$1\"\n",
    )
    .unwrap();
    let output = std::process::Command::new(crate::support::meridian_bin())
        .args(["proposal", "edit", &p])
        .env("MERIDIAN_HOME", ana.path())
        .env("EDITOR", format!("sh {}", editor.display()))
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let said = String::from_utf8_lossy(&output.stdout);
    assert!(
        said.contains("Removed section Consequences")
            && said.contains("Removed section Alternatives"),
        "{said}"
    );
    assert_eq!(section_names(&ana, &p), ["Context", "Decision"]);
}

#[test]
fn in_history_commands_a_duration_means_ago() {
    let world = World::new();
    let [ana, _, _] = team(&world);
    let p = ana.create(&["proposal", "new", "Old", "--section", "Summary=first"]);
    // A minute ago the proposal did not exist yet: `1m` must not read as the future.
    let said = ana.err(&["show", &p, "--at", "1m"]);
    assert!(said.contains("did not exist yet"), "{said}");
    let said = ana.err(&["diff", &p, "1m"]);
    assert!(said.contains("did not exist yet"), "{said}");
    let future = ana.err(&["show", &p, "--at", "2099-01-01"]);
    assert!(future.contains("in the future"), "{future}");
    let past = ana.err(&["proposal", "open", &p, "--closes", "2020-01-01"]);
    assert!(past.contains("in the past"), "{past}");
}

#[test]
fn every_text_comes_from_m_a_file_stdin_or_the_editor_and_empty_aborts() {
    use std::io::Write;
    let world = World::new();
    let [ana, _, _] = team(&world);
    // No body and no editor: refused, nothing created.
    let said = ana.err(&["thread", "new", "Empty"]);
    assert!(said.contains("$EDITOR"), "{said}");
    assert_eq!(ana.json(&["thread", "list"]), Value::Array(vec![]));
    let said = ana.err(&["thread", "new", "Blank", "-m", "  "]);
    assert!(said.contains("empty"), "{said}");
    let t = ana.create(&["thread", "new", "Lunch", "-m", "Where?"]);
    // `-m -` reads stdin, as does `--file -`.
    let mut child = std::process::Command::new(crate::support::meridian_bin())
        .args(["--json", "reply", &t, "-m", "-"])
        .env("MERIDIAN_HOME", ana.path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"From stdin\n")
        .unwrap();
    assert!(child.wait_with_output().unwrap().status.success());
    let file = world.file("reply.md");
    std::fs::write(&file, "From a file\n").unwrap();
    ana.ok(&["reply", &t, "--file", file.to_str().unwrap()]);
    let bodies: Vec<String> = field(&ana.json(&["show", &t])["comments"], "body")
        .into_iter()
        .map(str::to_string)
        .collect();
    assert_eq!(bodies, ["From stdin\n", "From a file\n"]);
    // An editor that leaves the text empty aborts the reply.
    let output = std::process::Command::new(crate::support::meridian_bin())
        .args(["reply", &t])
        .env("MERIDIAN_HOME", ana.path())
        .env("EDITOR", "true")
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("empty"));
    assert_eq!(
        ana.json(&["show", &t])["comments"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    // Optional messages come from a file too, and open no editor when absent.
    let p = ana.create(&["proposal", "new", "Messages"]);
    let note = world.file("note.txt");
    std::fs::write(&note, "Read it twice.\n").unwrap();
    ana.ok(&["proposal", "approve", &p, "--file", note.to_str().unwrap()]);
    let approvals = ana.json(&["show", &p])["approvals"].clone();
    assert_eq!(approvals[0]["message"], "Read it twice.", "{approvals}");
}

#[test]
fn your_own_words_can_be_edited_deleted_and_taken_back() {
    let world = World::new();
    let [ana, bo, _] = team(&world);
    let t = ana.create(&["thread", "new", "Lunch", "-m", "Where?"]);
    exchange(&world, &ana, &bo);
    let c = bo.json(&["reply", &t, "-m", "Pizza"])["comment_id"]
        .as_str()
        .unwrap()
        .to_string();
    let target = format!("{t}:{}", &c[..8]);
    exchange(&world, &ana, &bo);
    assert!(
        ana.err(&["reply", "--edit", &target, "-m", "Sushi"])
            .contains("Bo's")
    );
    bo.ok(&["reply", "--edit", &target, "-m", "Ramen"]);
    ana.ok(&["react", &target, "👍"]);
    exchange(&world, &ana, &bo);
    let comment = ana.json(&["show", &t])["comments"][0].clone();
    assert_eq!(comment["body"], "Ramen");
    assert!(comment["edited"].is_string(), "{comment}");
    assert!(ana.ok(&["show", &t]).contains("edited"));
    ana.ok(&["react", &target, "👍", "--remove"]);
    assert!(
        ana.err(&["react", &target, "👍", "--remove"])
            .contains("not reacted")
    );
    assert_eq!(
        ana.json(&["show", &t])["comments"][0]["reactions"],
        serde_json::json!({})
    );
    bo.ok(&["reply", "--delete", &target]);
    exchange(&world, &ana, &bo);
    let comment = ana.json(&["show", &t])["comments"][0].clone();
    assert_eq!(comment["deleted"], true);
    assert_eq!(comment["body"], "");
    // The history keeps the earlier texts.
    let log = ana.ok(&["log", &t]);
    assert!(
        log.contains("edit comment") && log.contains("delete comment"),
        "{log}"
    );

    // An approval can be taken back.
    let p = approved_by_both(&world, &ana, &bo);
    bo.ok(&["proposal", "unapprove", &p]);
    exchange(&world, &ana, &bo);
    let refused = ana.err(&["proposal", "accept", &p]);
    assert!(refused.contains("Bo has not approved"), "{refused}");
}

#[test]
fn concerns_are_answered_and_resolved_with_a_note_and_periods_close_early() {
    let world = World::new();
    let [ana, bo, cy] = team(&world);
    let p = ana.create(&["proposal", "new", "Backups", "--decider", "Ana"]);
    ana.ok(&["proposal", "open", &p, "--closes", "5d"]);
    exchange(&world, &ana, &cy);
    let concern = cy.json(&[
        "proposal",
        "concern",
        &p,
        "-m",
        "Restores untested",
        "--blocking",
    ])["entry_id"]
        .as_str()
        .unwrap()
        .to_string();
    exchange(&world, &ana, &cy);
    // Ana answers the concern, then resolves it for Cy with a note.
    ana.ok(&[
        "reply",
        &format!("{p}:{}", &concern[..8]),
        "-m",
        "We test monthly",
    ]);
    sync_pair(&world, &ana, &bo);
    let refused = bo.err(&["proposal", "resolve", &p, &concern[..8]]);
    assert!(refused.contains("only Cy, who raised it"), "{refused}");
    ana.ok(&[
        "proposal",
        "resolve",
        &p,
        &concern[..8],
        "-m",
        "monthly restore drill",
    ]);
    let text = ana.ok(&["show", &p]);
    assert!(
        text.contains("Resolved by Ana (the author), ") && text.contains("monthly restore drill"),
        "{text}"
    );
    assert!(text.contains("We test monthly"), "{text}");
    // Closing the period early lets the decider accept now.
    ana.ok(&["proposal", "approve", &p]);
    let refused = ana.err(&["proposal", "accept", &p]);
    assert!(refused.contains("comment period closes"), "{refused}");
    ana.ok(&["proposal", "close", &p]);
    ana.ok(&["proposal", "accept", &p]);
    assert_eq!(ana.json(&["show", &p])["state"], "accepted");
}

/// The kinds of what waits for a person, per document title, from `inbox --json`.
fn needs(home: &Home) -> Vec<(String, String)> {
    let inbox = home.json(&["inbox"]);
    let mut needs = Vec::new();
    for w in inbox["workspaces"].as_array().unwrap() {
        for item in w["waiting_for_you"].as_array().unwrap() {
            let mut need = item["need"]["kind"].as_str().unwrap().to_string();
            if item["need"]["stale"] == true {
                need.push_str(" (stale)");
            }
            needs.push((item["title"].as_str().unwrap().to_string(), need));
        }
    }
    needs.sort();
    needs
}

fn need(title: &str, kind: &str) -> (String, String) {
    (title.to_string(), kind.to_string())
}

#[test]
fn the_inbox_says_what_each_person_owes_and_waits_on() {
    let world = World::new();
    let [ana, bo, cy] = team(&world);
    let p = ana.create(&[
        "proposal",
        "new",
        "Backups",
        "--decider",
        "Ana",
        "--decider",
        "Bo",
        "--ask",
        "Cy",
        "--urgency",
        "high",
        "--section",
        "Summary=Nightly.",
    ]);
    let t = ana.create(&["thread", "new", "Lunch", "-m", "Where?", "--ask", "Bo"]);
    ana.create(&[
        "thread",
        "new",
        "News",
        "-m",
        "FYI only",
        "--ask",
        "Cy",
        "--urgency",
        "fyi",
    ]);
    // A draft asks nothing of its deciders yet; opening it does.
    exchange(&world, &ana, &bo);
    assert_eq!(needs(&bo), [need("Lunch", "ask")]);
    ana.ok(&["proposal", "open", &p, "--closes", "0m"]);
    for home in [&bo, &cy] {
        exchange(&world, &ana, home);
    }
    assert_eq!(
        needs(&bo),
        [need("Backups", "approve"), need("Lunch", "ask")]
    );
    // An fyi ask waits for nobody: it shows as news.
    assert_eq!(needs(&cy), [need("Backups", "ask")]);
    let cy_inbox = cy.ok(&["inbox"]);
    assert!(cy_inbox.contains("Ana asked you (fyi)"), "{cy_inbox}");
    // Ana waits on Bo's approval and on Cy, each due in their own hours.
    let text = ana.ok(&["inbox"]);
    assert!(
        text.contains("Bo's approval: due")
            && text.contains("your time")
            && text.contains("for Bo"),
        "{text}"
    );
    assert!(text.contains("Cy's response (high)"), "{text}");
    let inbox = ana.json(&["inbox"]);
    let waits = &inbox["workspaces"][0]["waiting_on_others"];
    let bo_wait = waits
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["member"]["name"] == "Bo" && w["approval"] == true)
        .unwrap();
    assert!(
        bo_wait["deadline_theirs"]
            .as_str()
            .unwrap()
            .ends_with("+01:00"),
        "{bo_wait}"
    );
    assert!(
        bo_wait["deadline"].as_str().unwrap().ends_with("+09:00"),
        "{bo_wait}"
    );

    // Bo approves and answers; Cy edits the text and raises a blocking concern.
    bo.ok(&["proposal", "approve", &p]);
    bo.ok(&["reply", &t, "-m", "Ramen"]);
    exchange(&world, &ana, &bo);
    exchange(&world, &ana, &cy);
    cy.ok(&["show", &p]);
    edit_section(
        &world,
        &cy,
        &p,
        "--section",
        "Summary",
        "Nightly, encrypted.\n",
    );
    let concern =
        cy.json(&["proposal", "concern", &p, "-m", "Restores?", "--blocking"])["entry_id"]
            .as_str()
            .unwrap()
            .to_string();
    cy.ok(&["reply", &p, "-m", "Looks good otherwise"]);
    for home in [&ana, &bo] {
        exchange(&world, &cy, home);
    }
    // Bo's approval went stale; Ana owes hers and faces Cy's concern.
    assert_eq!(needs(&bo), [need("Backups", "approve (stale)")]);
    assert_eq!(
        needs(&ana),
        [need("Backups", "approve"), need("Backups", "concern")]
    );
    let text = ana.ok(&["inbox"]);
    assert!(
        text.contains("Summary edited by Cy")
            && text.contains("Bo approved")
            && text.contains("1 new reply (Cy)"),
        "{text}"
    );
    assert!(text.contains("Cy raised a blocking concern"), "{text}");
    // `show` marks a document read: it leaves "what happened".
    let shown = ana.ok(&["show", &p]);
    assert!(
        shown.contains("Since you last read it:") && shown.contains("NEW"),
        "{shown}"
    );
    assert!(shown.contains("(edited since you read it)"), "{shown}");
    assert!(!ana.ok(&["inbox"]).contains("Summary edited by Cy"));

    // Ana resolves the concern for Cy, approves; once Bo approves again she can accept.
    ana.ok(&[
        "proposal",
        "resolve",
        &p,
        &concern[..8],
        "-m",
        "drill monthly",
    ]);
    ana.ok(&["proposal", "approve", &p]);
    exchange(&world, &ana, &bo);
    bo.ok(&["proposal", "approve", &p]);
    exchange(&world, &ana, &bo);
    assert_eq!(needs(&ana), [need("Backups", "accept")]);
    ana.ok(&["proposal", "accept", &p]);
    exchange(&world, &ana, &cy);
    let inbox = cy.json(&["inbox"]);
    let happened = &inbox["workspaces"][0]["happened"];
    let backups = happened
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["title"] == "Backups")
        .unwrap();
    let words: Vec<&str> = field(&backups["events"], "text");
    assert!(
        words.contains(&"Ana resolved your concern: drill monthly"),
        "{words:?}"
    );
    assert!(words.contains(&"accepted by Ana"), "{words:?}");
    let accepted = backups["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "transition")
        .unwrap();
    assert_eq!(accepted["by"]["name"], "Ana");
    assert_eq!(accepted["state"], "accepted");
}

#[test]
fn reading_and_several_workspaces() {
    let world = World::new();
    let [ana, bo, _] = team(&world);
    let a = ana.create(&["thread", "new", "One", "-m", "1"]);
    let b = ana.create(&["thread", "new", "Two", "-m", "2"]);
    let p = ana.create(&["proposal", "new", "Three"]);
    exchange(&world, &ana, &bo);
    let summary = bo.ok(&["inbox"]);
    assert!(
        summary.starts_with("0 waiting for you · 0 waiting on others · 3 changed"),
        "{summary}"
    );
    bo.ok(&["show", &a, "--no-mark"]);
    assert_eq!(bo.json(&["inbox"])["summary"]["happened"], 3);
    bo.ok(&["read", &a, &b]);
    assert_eq!(bo.json(&["inbox"])["summary"]["happened"], 1);
    assert_eq!(
        bo.json(&["inbox", "--kind", "thread"])["summary"]["happened"],
        0
    );
    assert!(bo.err(&["inbox", "--kind", "thred"]).contains("not a kind"));
    bo.ok(&["read", "--all", "--kind", "proposal"]);
    assert!(bo.ok(&["inbox"]).starts_with("Nothing needs you"));
    let _ = p;

    // A new member starts with the past read, except what asks them.
    let asked = ana.create(&["thread", "new", "For Dee", "-m", "?", "--ask", "Ana"]);
    let dee = world.person("Dee", "Europe/Berlin");
    let code = ana.ok(&["invite"]);
    dee.ok(&["join", code.trim()]);
    exchange(&world, &ana, &dee);
    exchange(&world, &ana, &dee);
    let inbox = dee.json(&["inbox"]);
    assert_eq!(inbox["summary"]["happened"], 0, "{inbox}");
    let _ = asked;
    let later = ana.create(&[
        "thread",
        "new",
        "After Dee joined",
        "-m",
        "hi",
        "--ask",
        "Dee",
    ]);
    exchange(&world, &ana, &dee);
    assert_eq!(needs(&dee), [need("After Dee joined", "ask")]);
    assert_eq!(dee.json(&["inbox"])["summary"]["happened"], 1);
    let _ = later;

    // Two workspaces: the inbox spans both, a document's id finds its own workspace.
    bo.ok(&["workspace", "create", "side"]);
    let s = bo.create(&["-w", "side", "thread", "new", "Side topic", "-m", "x"]);
    let inbox = bo.json(&["inbox"]);
    assert_eq!(field(&inbox["workspaces"], "name"), ["acme", "side"]);
    bo.ok(&["show", &s[..8]]);
    bo.ok(&["reply", &s[..8], "-m", "found without -w"]);
    // The workspace created last is the current one, and the lists are its own.
    bo.ok(&["workspace", "use", "acme"]);
    assert!(!bo.ok(&["thread", "list"]).contains("Side topic"));
    bo.ok(&["workspace", "use", "side"]);
    assert_eq!(
        field(&bo.json(&["thread", "list"]), "title"),
        ["Side topic"]
    );
    assert!(bo.ok(&["workspace", "list"]).contains("(current)"));
    let narrowed = bo.json(&["-w", "acme", "inbox"]);
    assert_eq!(field(&narrowed["workspaces"], "name"), ["acme"]);
}

#[test]
fn asking_after_writing_cancelling_declining_and_acknowledging() {
    let world = World::new();
    let [ana, bo, cy] = team(&world);
    let t = ana.create(&["thread", "new", "Deploy window", "-m", "Friday?"]);
    ana.ok(&["ask", &t, "Bo", "Cy", "--urgency", "high"]);
    assert!(ana.err(&["ask", &t, "Bo"]).contains("already asked"));
    assert!(ana.err(&["ask", &t, "Ana"]).contains("cannot ask yourself"));
    assert!(
        ana.err(&["ask", &t, "Bo", "--urgency", "soonish"])
            .contains("not an urgency level")
    );
    for home in [&bo, &cy] {
        exchange(&world, &ana, home);
    }
    assert_eq!(needs(&bo), [need("Deploy window", "ask")]);
    // Ana changes her mind about Cy.
    ana.ok(&["ask", &t, "--cancel", "Cy"]);
    exchange(&world, &ana, &cy);
    assert!(needs(&cy).is_empty());
    // Bo declines: with no ladder, the request comes back to Ana.
    let said = bo.ok(&["decline", &t, "-m", "on leave, ask Cy"]);
    assert!(said.contains("it goes back to Ana, who asked"), "{said}");
    assert!(bo.err(&["decline", &t]).contains("nobody is waiting"));
    exchange(&world, &ana, &bo);
    assert!(needs(&bo).is_empty());
    assert_eq!(needs(&ana), [need("Deploy window", "declined")]);
    let text = ana.ok(&["inbox"]);
    assert!(
        text.contains("Bo declined your request (on leave, ask Cy)"),
        "{text}"
    );
    // Asked again, Cy acknowledges: that is an answer.
    ana.ok(&["ask", &t, "Cy"]);
    exchange(&world, &ana, &cy);
    assert_eq!(needs(&cy), [need("Deploy window", "ask")]);
    cy.ok(&["ack", &t]);
    assert!(needs(&cy).is_empty());
    exchange(&world, &ana, &cy);
    assert!(
        !ana.ok(&["inbox"]).contains("Cy's response"),
        "Ana no longer waits on Cy"
    );
    // With a ladder, a decline escalates at once.
    ana.ok(&["workspace", "ladder", "Cy"]);
    let u = ana.create(&["thread", "new", "Pager", "-m", "Who?", "--ask", "Bo"]);
    for home in [&bo, &cy] {
        exchange(&world, &ana, home);
    }
    let said = bo.ok(&["decline", &u]);
    assert!(
        said.contains("it goes to Cy, next on the escalation ladder"),
        "{said}"
    );
    exchange(&world, &bo, &cy);
    let escalated = cy.json(&["inbox"]);
    let item = &escalated["workspaces"][0]["waiting_for_you"][0];
    assert_eq!(item["need"]["escalated_from"]["name"], "Bo", "{escalated}");
}

#[test]
fn only_the_creator_and_admins_change_the_norms_on_every_node() {
    let world = World::new();
    let [ana, bo, cy] = team(&world);
    let refused = bo.err(&["workspace", "norm", "high", "1h"]);
    assert!(
        refused.contains("only the workspace's creator (Ana)"),
        "{refused}"
    );
    assert!(
        bo.err(&["member", "admin", "Cy"])
            .contains("only the workspace's creator")
    );
    // A change made by hand, past the command's check, is refused by the others' rules.
    {
        let node = meridian::node::Node::open(bo.path()).unwrap();
        let (workspace, _) = node.workspace(None).unwrap();
        let forged = node.edit(workspace, workspace, |doc| {
            let mut tx = doc.transaction();
            meridian::workspace::put_level(
                &mut tx,
                "high",
                meridian::norms::ResponseTime::WorkingMinutes(5),
            )?;
            tx.commit();
            Ok(())
        });
        let error = format!("{:#}", forged.unwrap_err());
        assert!(error.contains("change the norms"), "{error}");
    }
    let unknown = ana.err(&["workspace", "norm", "blocker", "15m"]);
    assert!(unknown.contains("add it with --new"), "{unknown}");
    ana.ok(&["workspace", "norm", "blocker", "15m", "--new"]);
    ana.ok(&["member", "admin", "Bo"]);
    exchange(&world, &ana, &bo);
    bo.ok(&["workspace", "norm", "high", "1h"]);
    bo.ok(&["workspace", "ladder", "Cy", "Ana"]);
    exchange(&world, &bo, &cy);
    let norms = cy.json(&["workspace", "norms"]);
    assert_eq!(
        field(&norms["levels"], "name")[..3],
        ["blocker", "high", "urgent"]
    );
    assert_eq!(norms["ladder"][0]["name"], "Cy");
    assert_eq!(field(&norms["admins"], "name"), ["Ana", "Bo"]);
    let log = cy.ok(&["workspace", "log"]);
    assert!(
        log.contains("admin: Bo")
            && log.contains("urgency high: respond within 1h")
            && log.contains("escalation ladder: Cy → Ana"),
        "{log}"
    );
    assert!(
        log.lines()
            .any(|l| l.contains("Bo") && l.contains("urgency high")),
        "{log}"
    );
}

#[test]
fn your_profile_and_days_away_move_deadlines_everywhere() {
    let world = World::new();
    let [ana, bo, cy] = team(&world);
    // Bo moves from Berlin to Lima and works later; everyone computes his deadlines anew.
    bo.ok(&[
        "profile",
        "set",
        "--tz",
        "America/Lima",
        "--hours",
        "10:00-18:00",
    ]);
    assert_eq!(bo.json(&["whoami"])["tz"], "America/Lima");
    exchange(&world, &bo, &ana);
    let members = ana.json(&["member", "list"]);
    let bo_row = members
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "Bo")
        .unwrap()
        .clone();
    assert_eq!(bo_row["tz"], "America/Lima");
    assert_eq!(bo_row["hours"], "10:00-18:00");
    assert!(
        bo.err(&["profile", "set", "--tz", "Mars/Olympus"])
            .contains("not a known IANA")
    );
    // A name another member has is refused, whatever its case.
    let taken = bo.err(&["profile", "set", "--name", "cy"]);
    assert!(
        taken.contains("`cy` is taken") && taken.contains("(Lima)"),
        "{taken}"
    );
    bo.ok(&["profile", "set", "--name", "Bo Silva"]);
    exchange(&world, &bo, &ana);
    assert!(ana.ok(&["member", "list"]).contains("Bo Silva"));

    // Away: a request to Bo waits for his return, and the asker is told.
    let lima = meridian::norms::time_zone("America/Lima").unwrap();
    let today = jiff::Timestamp::now()
        .to_zoned_datetime(lima.clone())
        .date();
    let back = today.checked_add(jiff::Span::new().days(14)).unwrap();
    bo.ok(&["away", &format!("{today}..{back}")]);
    assert!(bo.ok(&["away"]).contains(&format!("{today}..{back}")));
    exchange(&world, &bo, &ana);
    let t = ana.create(&[
        "thread",
        "new",
        "Q",
        "-m",
        "?",
        "--ask",
        "Bo Silva",
        "--urgency",
        "urgent",
    ]);
    let output = ana.run(&["thread", "new", "Q2", "-m", "?", "--ask", "Bo Silva"]);
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(
        said.contains("is away until") && said.contains("from their return"),
        "{said}"
    );
    let inbox = ana.json(&["inbox"]);
    let wait = inbox["workspaces"][0]["waiting_on_others"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["id"] == t.as_str())
        .unwrap()
        .clone();
    let due: jiff::Timestamp = wait["deadline"].as_str().unwrap().parse().unwrap();
    let due_day = due.to_zoned_datetime(lima).date();
    assert!(
        due_day > back,
        "an urgent request to someone away is due after {back}: {due_day}"
    );
    // With a ladder, the request passes on at once.
    ana.ok(&["workspace", "ladder", "Cy"]);
    let u = ana.create(&[
        "thread",
        "new",
        "Pager",
        "-m",
        "?",
        "--ask",
        "Bo Silva",
        "--urgency",
        "urgent",
    ]);
    exchange(&world, &ana, &cy);
    let cy_inbox = cy.json(&["inbox"]);
    let item = cy_inbox["workspaces"][0]["waiting_for_you"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["id"] == u.as_str())
        .cloned();
    assert!(item.is_some(), "escalated to Cy at once: {cy_inbox}");
    bo.ok(&["away", "--clear"]);
    assert!(bo.ok(&["away"]).contains("not away"));
}

#[test]
fn two_people_who_chose_one_name_offline_are_told_apart_the_same_way_everywhere() {
    let world = World::new();
    let ana = world.person("Ana", "Asia/Tokyo");
    ana.ok(&["workspace", "create", "acme"]);
    let first = world.person("Bo", "Europe/Berlin");
    let second = world.person("bo2", "America/Lima");
    second.ok(&["profile", "set", "--name", "Bo"]);
    for home in [&first, &second] {
        let code = ana.ok(&["invite"]);
        home.ok(&["join", code.trim()]);
    }
    for home in [&first, &second] {
        exchange(&world, &ana, home);
    }
    exchange(&world, &ana, &first);
    exchange(&world, &ana, &second);
    let names = |home: &Home| -> Vec<String> {
        let mut names: Vec<String> = field(&home.json(&["member", "list"]), "shown")
            .into_iter()
            .map(str::to_string)
            .collect();
        names.sort();
        names
    };
    let shown = names(&ana);
    assert_eq!(shown.len(), 3);
    assert!(
        shown[1].starts_with("Bo#") && shown[2].starts_with("Bo#"),
        "{shown:?}"
    );
    assert_eq!(names(&first), shown);
    assert_eq!(names(&second), shown);
    let refused = ana.err(&["thread", "new", "X", "-m", "?", "--ask", "Bo"]);
    assert!(
        refused.contains(&shown[1]) && refused.contains(&shown[2]),
        "{refused}"
    );
    let t = ana.create(&["thread", "new", "X", "-m", "?", "--ask", &shown[1]]);
    assert_eq!(
        ana.json(&["show", &t])["asks"][0]["member"]["name"],
        shown[1].as_str()
    );
}

#[test]
fn a_section_added_twice_concurrently_settles_to_either_text() {
    let world = World::new();
    let [ana, bo, _] = team(&world);
    let p = ana.create(&["proposal", "new", "Cache", "--template", "adr"]);
    exchange(&world, &ana, &bo);
    for (home, text) in [(&ana, "Stale reads."), (&bo, "Memory use.")] {
        edit_section(&world, home, &p, "--new-section", "Risks", text);
    }
    exchange(&world, &ana, &bo);
    let conflicts = ana.json(&["conflicts", &p]);
    assert_eq!(field(&conflicts, "field"), ["section Risks"], "{conflicts}");
    ana.ok(&["resolve", &p, "section Risks", "Memory use."]);
    exchange(&world, &ana, &bo);
    for home in [&ana, &bo] {
        assert_eq!(home.json(&["conflicts", &p]), Value::Array(vec![]));
        let shown = home.json(&["show", &p]);
        let risks = shown["sections"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == "Risks")
            .unwrap()
            .clone();
        assert_eq!(risks["text"], "Memory use.");
    }
}

#[test]
fn proposal_list_states_every_obstacle_and_refuses_an_unknown_state() {
    let world = World::new();
    let [ana, bo, cy] = team(&world);
    let p = ana.create(&[
        "proposal",
        "new",
        "Ship",
        "--decider",
        "Ana",
        "--decider",
        "Bo",
    ]);
    ana.ok(&["proposal", "open", &p, "--closes", "2d"]);
    ana.ok(&["proposal", "approve", &p]);
    exchange(&world, &ana, &cy);
    cy.ok(&[
        "proposal",
        "concern",
        &p,
        "-m",
        "No rollback plan",
        "--blocking",
    ]);
    exchange(&world, &ana, &cy);
    let listed = ana.ok(&["proposal", "list"]);
    assert!(
        listed.contains("comment period closes")
            && listed.contains("Bo has not approved")
            && listed.contains("Cy's blocking concern"),
        "{listed}"
    );
    let json = ana.json(&["proposal", "list"]);
    let kinds: Vec<&str> = field(&json[0]["obstacles"], "kind");
    assert_eq!(kinds, ["period_open", "unapproved", "blocking_concern"]);
    let refused = ana.err(&["proposal", "list", "--state", "opne"]);
    assert!(
        refused.contains("not a state") && refused.contains("final-comment"),
        "{refused}"
    );
    let _ = bo;
}

#[test]
fn two_people_asking_one_person_keep_their_own_requests() {
    let world = World::new();
    let [ana, bo, cy] = team(&world);
    let t = ana.create(&["thread", "new", "Deploy", "-m", "When?", "--ask", "Cy"]);
    exchange(&world, &ana, &bo);
    // Bo asks Cy too, then takes his request back: Ana's stands.
    bo.ok(&["ask", &t, "Cy", "--urgency", "urgent"]);
    let refused = bo.err(&["ask", &t, "--cancel", "Ana"]);
    assert!(refused.contains("no request"), "{refused}");
    bo.ok(&["ask", &t, "--cancel", "Cy"]);
    exchange(&world, &bo, &cy);
    exchange(&world, &ana, &cy);
    assert_eq!(needs(&cy), [need("Deploy", "ask")]);
    let item = &cy.json(&["inbox"])["workspaces"][0]["waiting_for_you"][0];
    assert_eq!(item["need"]["asked_by"]["name"], "Ana", "{item}");
    // The author changes the deciders; nobody else does.
    let p = ana.create(&["proposal", "new", "Decide", "--decider", "Ana"]);
    ana.ok(&["proposal", "deciders", &p, "Ana", "Bo"]);
    assert_eq!(
        ana.json(&["show", &p])["deciders"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    exchange(&world, &ana, &bo);
    let refused = bo.err(&["proposal", "deciders", &p, "Bo"]);
    assert!(refused.contains("only the proposal's author"), "{refused}");
}

#[test]
fn a_join_refuses_a_name_the_workspace_has_and_the_same_code_works_after_a_rename() {
    let team = crate::relays::Team::new(&[("Ana", "Asia/Tokyo"), ("Bo", "Europe/Berlin")]);
    let ana = &team.homes[0];
    let code = ana.ok(&["invite"]).trim().to_string();
    let second = team.world.person("ana2", "America/Lima");
    second.ok(&["profile", "set", "--name", "bo"]);
    let refused = second.err(&["join", &code]);
    assert!(
        refused.contains("has a member called Bo already") && refused.contains("bo (Lima)"),
        "{refused}"
    );
    assert!(
        workspaces(&second).is_empty(),
        "a refused join keeps nothing"
    );
    second.ok(&["profile", "set", "--name", "Bo (Lima)"]);
    let joined = second.ok(&["join", &code]);
    assert!(joined.starts_with("Joined acme"), "{joined}");
    crate::relays::sync(ana);
    let names: Vec<String> = field(&ana.json(&["member", "list"]), "name")
        .into_iter()
        .map(str::to_string)
        .collect();
    assert!(names.contains(&"Bo (Lima)".to_string()), "{names:?}");
}

#[test]
fn show_diffs_each_stale_version_once_naming_who_approved_it() {
    let world = World::new();
    let [ana, bo, cy] = team(&world);
    let p = ana.create(&[
        "proposal",
        "new",
        "Backups",
        "--section",
        "Summary=Nightly.",
        "--decider",
        "Bo",
        "--decider",
        "Cy",
    ]);
    ana.ok(&["proposal", "open", &p]);
    for home in [&bo, &cy] {
        exchange(&world, &ana, home);
        home.ok(&["proposal", "approve", &p]);
        exchange(&world, &ana, home);
    }
    edit_section(&world, &ana, &p, "--section", "Summary", "Hourly.\n");
    let shown = ana.ok(&["show", &p]);
    assert_eq!(shown.matches("Changes since").count(), 1, "{shown}");
    assert!(
        shown.contains("Changes since Bo's and Cy's approval:"),
        "{shown}"
    );
    // Bo approves the new text, and it changes again: one diff per version approved.
    exchange(&world, &ana, &bo);
    bo.ok(&["proposal", "approve", &p]);
    exchange(&world, &ana, &bo);
    edit_section(&world, &ana, &p, "--section", "Summary", "Every minute.\n");
    let shown = ana.ok(&["show", &p]);
    assert_eq!(shown.matches("Changes since").count(), 2, "{shown}");
    assert!(
        shown.contains("Changes since Bo's approval:\n  ## Summary\n  -Hourly.")
            && shown.contains("Changes since Cy's approval:\n  ## Summary\n  -Nightly."),
        "{shown}"
    );
}

#[test]
fn an_edit_too_large_for_the_other_members_nodes_is_refused_where_it_is_written() {
    let world = World::new();
    let team = world.team(&[("Ana", "Asia/Tokyo"), ("Bo", "Europe/Berlin")]);
    let [ana, bo] = [&team[0], &team[1]];
    let p = ana.create(&["proposal", "new", "Corpus", "--section", "Summary=short"]);
    // One character is one operation: a text longer than a node takes in one piece.
    let file = world.file("long.md");
    std::fs::write(&file, "word ".repeat(60_001)).unwrap();
    let file = file.to_str().unwrap();
    let said = ana.err(&[
        "proposal",
        "edit",
        &p,
        "--section",
        "Design",
        "--file",
        file,
    ]);
    assert!(
        said.contains("too large")
            && said.contains("more than 250000")
            && said.contains("smaller edits"),
        "{said}"
    );
    assert!(ana.ok(&["show", &p]).contains("short"));
    assert!(
        !ana.ok(&["show", &p]).contains("word word"),
        "nothing was changed"
    );
    // The same text in two edits reaches Bo, by a bundle of more than one merge's worth.
    let half = "word ".repeat(30_000);
    edit_section(&world, ana, &p, "--section", "Design", &half);
    edit_section(&world, ana, &p, "--section", "Drawbacks", &half);
    sync_pair(&world, ana, bo);
    let shown = bo.json(&["show", &p]);
    assert!(
        shown.to_string().contains("word word"),
        "Bo has both halves"
    );
}
