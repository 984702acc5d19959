//! Decision records: a proposal exported as Markdown says who decided what, when and why,
//! and `export --all --format markdown -o DIR` keeps a directory of them up to date, as
//! teams keep architecture decision records in a repository.

use crate::support::{Home, World, sync_pair};

/// Ana (Tokyo), Bo (Berlin) and Cy (Lima) in one workspace, exchanging bundles.
fn team(world: &World) -> [Home; 3] {
    world.three()
}

/// Everyone has everything.
fn everyone(world: &World, homes: &[Home]) {
    for from in homes {
        for to in homes {
            if from.name() != to.name() {
                sync_pair(world, from, to);
            }
        }
    }
}

/// Ana's proposal, deciders Ana and Bo; Bo approves; Cy raises a blocking concern that Ana
/// resolves with a note; Cy comments; Ana approves and accepts.
fn decided(world: &World, homes: &[Home]) -> String {
    let [ana, bo, cy] = [&homes[0], &homes[1], &homes[2]];
    let p = ana.create(&[
        "proposal",
        "new",
        "Store workspaces in redb",
        "--template",
        "adr",
        "--decider",
        "Ana",
        "--decider",
        "Bo",
        "--section",
        "Context=We need one file per home.",
        "--section",
        "Decision=Use redb.",
    ]);
    ana.ok(&["proposal", "open", &p, "--closes", "0m"]);
    everyone(world, homes);
    bo.ok(&["proposal", "approve", &p, "-m", "Looks right to me"]);
    let concern = cy.json(&[
        "proposal",
        "concern",
        &p,
        "-m",
        "What about backups?",
        "--blocking",
    ])["entry_id"]
        .as_str()
        .unwrap()
        .to_string();
    cy.ok(&["reply", &p, "-m", "Otherwise I like it."]);
    everyone(world, homes);
    ana.ok(&[
        "proposal",
        "resolve",
        &p,
        &concern,
        "-m",
        "Backups are a copy of the file.",
    ]);
    ana.ok(&["proposal", "approve", &p]);
    ana.ok(&["proposal", "accept", &p, "-m", "Agreed on the call"]);
    everyone(world, homes);
    p
}

#[test]
fn a_proposal_exported_as_markdown_is_a_complete_decision_record() {
    let world = World::new();
    let homes = team(&world);
    let p = decided(&world, &homes);
    let [_, bo, cy] = [&homes[0], &homes[1], &homes[2]];
    let record = bo.ok(&["export", &p]);
    let has = |line: &str| {
        assert!(
            record.contains(line),
            "the record lacks {line:?}:\n{record}"
        )
    };
    has("# Store workspaces in redb\n");
    has("- Status: accepted\n");
    has("by Ana: “Agreed on the call”");
    has("- Deciders: Ana, Bo\n");
    has("(template adr)");
    has("## Context\n\nWe need one file per home.\n");
    has("## Decision\n\nUse redb.\n");
    has("## Approvals\n");
    has("Looks right to me");
    has("## Concerns\n");
    has("- Cy, ");
    has(", blocking: “What about backups?”");
    has("  - resolved by Ana, ");
    has("“Backups are a copy of the file.”");
    has("## History\n");
    has("Ana: opened for comment");
    has("Ana: accepted: “Agreed on the call”");
    // Each approval names the version it approved, the decision the version decided.
    assert_eq!(record.matches("on version `").count(), 2, "{record}");
    assert!(record.contains("- Decided on version: `"), "{record}");
    // The comments only when asked for; sections with nothing to say are left out.
    assert!(!record.contains("Otherwise I like it."), "{record}");
    assert!(!record.contains("## Discussion"), "{record}");
    assert!(!record.contains("Supersede"), "{record}");
    let with = bo.ok(&["export", &p, "--discussion"]);
    assert!(with.contains("## Discussion\n\n- **Cy** ("), "{with}");
    assert!(with.contains("Otherwise I like it."), "{with}");
    // The same record whoever exports it, wherever they are (times in UTC).
    assert_eq!(cy.ok(&["export", &p]), record);
    assert!(record.contains(" UTC"), "{record}");
    // --discussion belongs to Markdown.
    let e = bo.err(&["export", &p, "--format", "json", "--discussion"]);
    assert!(e.contains("--discussion"), "{e}");
}

#[test]
fn a_stale_approval_and_a_missing_one_are_marked() {
    let world = World::new();
    let homes = team(&world);
    let [ana, bo, _] = [&homes[0], &homes[1], &homes[2]];
    let p = ana.create(&[
        "proposal",
        "new",
        "Ship weekly",
        "--decider",
        "Bo",
        "--decider",
        "Cy",
        "--section",
        "Summary=Every Monday.",
    ]);
    ana.ok(&["proposal", "open", &p]);
    everyone(&world, &homes);
    bo.ok(&["proposal", "approve", &p]);
    everyone(&world, &homes);
    let file = world.file("summary.md");
    std::fs::write(&file, "Every Tuesday.").unwrap();
    ana.ok(&[
        "proposal",
        "edit",
        &p,
        "--section",
        "Summary",
        "--file",
        file.to_str().unwrap(),
    ]);
    let record = ana.ok(&["export", &p]);
    assert!(record.contains("- Status: open\n"), "{record}");
    assert!(
        record.contains("(stale: the text changed after it"),
        "{record}"
    );
    assert!(
        record.contains("- Not approved (or stale): Bo, Cy\n"),
        "{record}"
    );
    assert!(!record.contains("Decided on version"), "{record}");
}

/// `export --all --format markdown -o DIR` with --json.
fn export_records(home: &Home, dir: &std::path::Path) -> serde_json::Value {
    home.json(&[
        "export",
        "--all",
        "--format",
        "markdown",
        "-o",
        dir.to_str().unwrap(),
    ])
}

#[test]
fn the_decision_records_of_a_workspace_are_a_directory_a_rerun_updates_in_place() {
    let world = World::new();
    let homes = team(&world);
    let old = decided(&world, &homes);
    let [ana, bo, _] = [&homes[0], &homes[1], &homes[2]];
    let new = ana.create(&[
        "proposal",
        "new",
        "Store workspaces in SQLite",
        "--template",
        "adr",
        "--decider",
        "Ana",
        "--section",
        "Context=redb was hard to inspect.",
    ]);
    ana.ok(&["proposal", "supersede", &old, "--by", &new]);
    let draft = ana.create(&["proposal", "new", "Rename the relay?"]);
    everyone(&world, &homes);

    let dir = world.file("decisions");
    let said = bo.run(&[
        "export",
        "--all",
        "--format",
        "markdown",
        "-o",
        dir.to_str().unwrap(),
    ]);
    assert!(said.status.success());
    let said =
        String::from_utf8_lossy(&said.stderr).into_owned() + &String::from_utf8_lossy(&said.stdout);
    assert!(
        said.contains("3 decision records of acme and index.md in"),
        "{said}"
    );
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(files.len(), 4, "{files:?}");
    assert!(files.contains(&"index.md".to_string()));
    let named = |id: &str, slug: &str| -> String {
        let name = files
            .iter()
            .find(|f| f.ends_with(&format!("-{}.md", &id[..8])))
            .unwrap_or_else(|| panic!("no file for {id} in {files:?}"))
            .clone();
        // YYYY-MM-DD-slug-shortid.md
        assert_eq!(&name[4..5], "-", "{name}");
        assert_eq!(&name[10..], format!("-{slug}-{}.md", &id[..8]), "{name}");
        name
    };
    let old_file = named(&old, "store-workspaces-in-redb");
    let new_file = named(&new, "store-workspaces-in-sqlite");
    let draft_file = named(&draft, "rename-the-relay");
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap();
    assert!(
        read(&old_file).contains(&format!(
            "- Superseded by: [Store workspaces in SQLite]({new_file})"
        )),
        "{}",
        read(&old_file)
    );
    assert!(
        read(&new_file).contains(&format!(
            "- Supersedes: [Store workspaces in redb]({old_file})"
        )),
        "{}",
        read(&new_file)
    );
    let index = read("index.md");
    assert!(index.contains("| Date | Decision | State |"), "{index}");
    for (file, state) in [
        (&old_file, "superseded"),
        (&new_file, "draft"),
        (&draft_file, "draft"),
    ] {
        assert!(
            index.contains(&format!("]({file}) | {state} |")),
            "{file} {state}:\n{index}"
        );
    }

    // A rerun with nothing new writes nothing.
    let again = export_records(bo, &dir);
    assert_eq!(again["written"], 0, "{again}");

    // A new title renames the record's file: the old one goes, the new one comes.
    bo.ok(&[
        "proposal",
        "edit",
        &draft,
        "--title",
        "Rename the relay to hub",
    ]);
    let third = export_records(bo, &dir);
    assert_eq!(third["removed"][0], draft_file.as_str(), "{third}");
    assert!(!dir.join(&draft_file).exists());
    let renamed = draft_file.replace("rename-the-relay", "rename-the-relay-to-hub");
    assert!(dir.join(&renamed).exists(), "{third}");
    assert!(read("index.md").contains(&renamed));
    // Files the export did not write stay.
    std::fs::write(dir.join("README.md"), "ours").unwrap();
    export_records(bo, &dir);
    assert_eq!(read("README.md"), "ours");

    // Without a directory, it says what to add.
    let e = bo.err(&["export", "--all", "--format", "markdown"]);
    assert!(e.contains("-o DIR"), "{e}");
}

/// `meridian verify` run by someone with no home at all.
fn verify_as_outsider(world: &World, args: &[&str]) -> std::process::Output {
    std::process::Command::new(crate::support::meridian_bin())
        .args(args)
        .env("MERIDIAN_HOME", world.file("nobody-home"))
        .output()
        .expect("the meridian binary runs")
}

#[test]
fn a_verifiable_export_is_checked_by_someone_with_no_home_and_any_alteration_is_caught() {
    let world = World::new();
    let homes = team(&world);
    let p = decided(&world, &homes);
    let bo = &homes[1];
    let file = world.file("decision.bundle");
    let file = file.to_str().unwrap();
    let said = bo.ok(&[
        "export",
        &p,
        "--format",
        "bundle",
        "--verifiable",
        "-o",
        file,
    ]);
    assert!(said.contains("meridian verify"), "{said}");

    let out = verify_as_outsider(&world, &["verify", file]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("every signature, key and rule holds"),
        "{text}"
    );
    assert!(text.contains("(accepted)"), "{text}");
    assert!(
        text.contains("“Looks right to me”"),
        "Bo's approval: {text}"
    );
    assert!(
        text.contains("Agreed on the call"),
        "Ana's acceptance: {text}"
    );
    let out = verify_as_outsider(&world, &["--json", "verify", file]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["state"], "accepted");
    assert_eq!(json["id"], p.as_str());
    let writers: Vec<&str> = json["writers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["name"].as_str().unwrap())
        .collect();
    assert!(
        writers.contains(&"Ana") && writers.contains(&"Bo"),
        "{writers:?}"
    );
    assert!(
        !world.file("nobody-home").exists(),
        "verifying made no home"
    );

    // Altered in any way, the file does not verify, and says why.
    let bytes = std::fs::read(file).unwrap();
    let bundle: meridian::bundle::Bundle =
        ciborium::from_reader(&bytes[meridian::bundle::BUNDLE_MAGIC.len()..]).unwrap();
    let write = |name: &str, bundle: &meridian::bundle::Bundle| {
        let path = world.file(name);
        let mut out = meridian::bundle::BUNDLE_MAGIC.to_vec();
        ciborium::into_writer(bundle, &mut out).unwrap();
        std::fs::write(&path, out).unwrap();
        path.to_str().unwrap().to_string()
    };
    let refused = |path: &str, why: &str| {
        let out = verify_as_outsider(&world, &["verify", path]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{path} verified");
        assert!(stderr.contains("does not verify"), "{stderr}");
        assert!(stderr.contains(why), "{path}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    };
    // A flipped bit in a sealed change: the signature no longer holds.
    let mut flipped: meridian::bundle::Bundle =
        ciborium::from_reader(&bytes[meridian::bundle::BUNDLE_MAGIC.len()..]).unwrap();
    let last = flipped.envelopes.len() - 1;
    let at = flipped.envelopes[last].len() - 20;
    flipped.envelopes[last][at] ^= 1;
    refused(
        &write("flipped.bundle", &flipped),
        "of the bundle does not verify",
    );
    // A key that opens nothing.
    let mut wrong_key: meridian::bundle::Bundle =
        ciborium::from_reader(&bytes[meridian::bundle::BUNDLE_MAGIC.len()..]).unwrap();
    let keys = &mut wrong_key.disclosure.as_mut().unwrap().keys;
    keys[last].as_mut().unwrap().subkey[0] ^= 1;
    refused(
        &write("wrong-key.bundle", &wrong_key),
        "does not open with the key",
    );
    // An envelope left out (Bo's approval, which the acceptance builds on, say).
    let mut cut: meridian::bundle::Bundle =
        ciborium::from_reader(&bytes[meridian::bundle::BUNDLE_MAGIC.len()..]).unwrap();
    for i in (0..cut.envelopes.len()).rev() {
        let envelope = meridian_relay::Envelope::decode(&cut.envelopes[i]).unwrap();
        if envelope
            .doc_ids()
            .contains(&meridian::id::Id::parse(&p).unwrap().0)
            && envelope.author == hex::decode(bo.json(&["whoami"])["id"].as_str().unwrap()).unwrap()
        {
            cut.envelopes.remove(i);
            cut.disclosure.as_mut().unwrap().keys.remove(i);
            break;
        }
    }
    assert!(cut.envelopes.len() < bundle.envelopes.len());
    refused(&write("cut.bundle", &cut), "incomplete");
    // A bundle made for members only carries no keys: the sender is told what to run.
    let plain = world.file("plain.bundle");
    bo.ok(&[
        "export",
        &p,
        "--format",
        "bundle",
        "-o",
        plain.to_str().unwrap(),
    ]);
    refused(plain.to_str().unwrap(), "--verifiable");
}
