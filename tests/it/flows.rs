//! The CLI's user flows, one test per capability.

use serde_json::Value;

use crate::support::{World, sync_pair};

#[test]
fn identity_workspace_invite_and_join() {
    let world = World::new();
    let ana = world.person("Ana", "Asia/Tokyo");
    let me = ana.json(&["whoami"]);
    assert_eq!(me["name"], "Ana");
    assert_eq!(me["tz"], "Asia/Tokyo");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(ana.path().join("device.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(
            mode & 0o777,
            0o600,
            "the device key is readable only by its owner"
        );
    }
    assert!(
        ana.err(&["init", "--name", "Ana"])
            .contains("already holds an identity")
    );
    assert!(
        ana.err(&["proposal", "list"])
            .contains("belongs to no workspace")
    );

    let created = ana.json(&["workspace", "create", "acme"]);
    assert_eq!(created["id"].as_str().unwrap().len(), 32);
    let code = ana.ok(&["invite"]);
    assert!(code.starts_with("meridian-invite-1-"));

    let bo = world.person("Bo", "America/Lima");
    assert!(
        bo.err(&["join", "not-a-code"])
            .contains("not a Meridian invite code")
    );
    let mut damaged = code.trim().to_string();
    damaged.truncate(damaged.len() - 10);
    assert!(bo.err(&["join", &damaged]).contains("damaged"));
    bo.ok(&["join", code.trim()]);
    assert!(bo.err(&["join", code.trim()]).contains("already a member"));

    sync_pair(&world, &ana, &bo);
    sync_pair(&world, &bo, &ana);
    for home in [&ana, &bo] {
        let members = home.json(&["member", "list"]);
        let members = members.as_array().unwrap();
        assert_eq!(members.len(), 2);
        assert!(members.iter().all(|m| m["verified"] == true), "{members:?}");
        let bo_row = members.iter().find(|m| m["name"] == "Bo").unwrap();
        assert_eq!(bo_row["tz"], "America/Lima");
        assert_eq!(bo_row["hours"], "09:00-17:00");
        assert!(bo_row["local_time"].as_str().unwrap().ends_with("-05:00"));
    }
    let workspaces = bo.json(&["workspace", "list"]);
    assert_eq!(workspaces[0]["name"], "acme");
    assert_eq!(workspaces[0]["members"], 2);
}

#[test]
fn bad_init_input_gets_clear_errors() {
    let world = World::new();
    let home = world.tmp.path().join("x");
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_meridian"))
            .args(args)
            .env("MERIDIAN_HOME", &home)
            .output()
            .unwrap()
    };
    let cases = [
        (
            vec!["init", "--name", "X", "--tz", "Mars/Olympus"],
            "not a known IANA time zone",
        ),
        (
            vec!["init", "--name", "X", "--hours", "9-5"],
            "24-hour HH:MM-HH:MM",
        ),
        (
            vec!["init", "--name", "X", "--days", "funday"],
            "not a weekday",
        ),
        (vec!["init", "--name", " "], "the name is empty"),
    ];
    for (args, expected) in cases {
        let output = run(&args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            !output.status.success() && stderr.contains(expected),
            "{args:?}: {stderr}"
        );
    }
    assert!(
        !home.join("device.key").exists(),
        "a failed init leaves no identity behind"
    );
}

#[test]
fn proposal_lifecycle_needs_open_period_approvals_and_no_blocking_concern() {
    let world = World::new();
    let [ana, bo] =
        <[_; 2]>::try_from(world.team(&[("Ana", "Asia/Tokyo"), ("Bo", "Europe/Berlin")]))
            .ok()
            .unwrap();
    let p = ana.create(&[
        "proposal",
        "new",
        "Use redb",
        "--decider",
        "Bo",
        "--decider",
        "Ana",
        "--section",
        "Summary=One file per home.",
    ]);
    assert!(
        ana.err(&["proposal", "accept", &p])
            .contains("open the comment period first")
    );
    ana.ok(&["proposal", "open", &p, "--closes", "0m"]);
    let refused = ana.err(&["proposal", "accept", &p]);
    assert!(
        refused.contains("Bo has not approved") && refused.contains("you have not approved"),
        "{refused}"
    );
    ana.ok(&["proposal", "approve", &p, "-m", "ship it"]);

    sync_pair(&world, &ana, &bo);
    bo.ok(&["proposal", "approve", &p]);
    let concern = bo.json(&[
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
    sync_pair(&world, &bo, &ana);

    assert!(
        ana.err(&["proposal", "accept", &p])
            .contains("blocking concern")
    );
    assert!(
        ana.err(&["proposal", "resolve", &p, "zzz"])
            .contains("not a concern id")
    );
    // Ana resolves Bo's concern for him: only with a note saying why.
    assert!(
        ana.err(&["proposal", "resolve", &p, &concern[..6]])
            .contains("-m NOTE")
    );
    ana.ok(&[
        "proposal",
        "resolve",
        &p,
        &concern[..6],
        "-m",
        "backups are in the plan",
    ]);
    ana.ok(&["proposal", "accept", &p, "-m", "agreed"]);
    let shown = ana.json(&["show", &p]);
    assert_eq!(shown["state"], "accepted");
    assert_eq!(shown["concerns"][0]["resolved"], true);
    assert!(
        ana.err(&["proposal", "approve", &p])
            .contains("can no longer be approved")
    );

    // Bo's node derives the same state from the same facts.
    sync_pair(&world, &ana, &bo);
    assert_eq!(bo.json(&["show", &p])["state"], "accepted");
    let listed = bo.json(&["proposal", "list", "--state", "accepted"]);
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(
        bo.json(&["proposal", "list", "--state", "draft"])
            .as_array()
            .unwrap()
            .len(),
        0
    );
    // Someone who is neither author nor decider cannot move a proposal along.
    let q = ana.create(&["proposal", "new", "Ana decides alone"]);
    sync_pair(&world, &ana, &bo);
    assert!(
        bo.err(&["proposal", "open", &q])
            .contains("only the author or a decider")
    );
}

#[test]
fn accepting_before_the_period_closes_is_refused_and_supersede_links() {
    let world = World::new();
    let ana = world.person("Ana", "Europe/Berlin");
    ana.ok(&["workspace", "create", "solo"]);
    let p = ana.create(&["proposal", "new", "Adopt ADRs", "--template", "adr"]);
    ana.ok(&["proposal", "open", &p, "--closes", "3d"]);
    ana.ok(&["proposal", "approve", &p]);
    let refused = ana.err(&["proposal", "accept", &p]);
    assert!(refused.contains("comment period closes"), "{refused}");
    ana.ok(&["proposal", "final-comment", &p, "--closes", "0m"]);
    ana.ok(&["proposal", "accept", &p]);
    let q = ana.create(&["proposal", "new", "Adopt ADRs v2", "--template", "adr"]);
    ana.ok(&["proposal", "supersede", &p, "--by", &q]);
    let shown = ana.json(&["show", &p]);
    assert_eq!(shown["state"], "superseded");
    assert_eq!(shown["lifecycle"]["superseded_by"], q.as_str());
    let w = ana.create(&["proposal", "new", "Never mind"]);
    ana.ok(&["proposal", "withdraw", &w, "-m", "not needed"]);
    assert_eq!(ana.json(&["show", &w])["state"], "withdrawn");
    assert!(
        ana.err(&["proposal", "open", &w])
            .contains("it is withdrawn")
    );
}

#[test]
fn templates_sections_and_editing() {
    let world = World::new();
    let ana = world.person("Ana", "Europe/Berlin");
    ana.ok(&["workspace", "create", "solo"]);
    let rfc = ana.json(&["show", &ana.create(&["proposal", "new", "An RFC"])]);
    let names: Vec<&str> = rfc["sections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "Summary",
            "Motivation",
            "Design",
            "Drawbacks",
            "Alternatives",
            "Unresolved questions"
        ]
    );
    assert!(
        ana.err(&["proposal", "new", "X", "--template", "nope"])
            .contains("not a template")
    );
    ana.ok(&[
        "workspace",
        "template",
        "postmortem",
        "Impact",
        "Timeline",
        "Actions",
    ]);
    let pm = ana.create(&[
        "proposal",
        "new",
        "Outage",
        "--template",
        "postmortem",
        "--section",
        "Impact=All users",
    ]);
    let shown = ana.json(&["show", &pm]);
    assert_eq!(shown["sections"][0]["name"], "Impact");
    assert_eq!(shown["sections"][0]["text"], "All users");

    let file = world.file("timeline.md");
    std::fs::write(&file, "09:00 alarms\n09:05 rollback\n").unwrap();
    ana.ok(&[
        "proposal",
        "edit",
        &pm,
        "--section",
        "Timeline",
        "--file",
        file.to_str().unwrap(),
    ]);
    let body = world.file("whole.md");
    std::fs::write(
        &body,
        "# Outage of Tuesday\n\n## Impact\n\nHalf the users\n\n## Actions\n\nAdd a canary\n",
    )
    .unwrap();
    ana.ok(&["proposal", "edit", &pm, "--file", body.to_str().unwrap()]);
    let shown = ana.json(&["show", &pm]);
    assert_eq!(shown["title"], "Outage of Tuesday");
    let text = |name: &str| {
        shown["sections"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .unwrap()["text"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(text("Impact"), "Half the users\n");
    assert_eq!(text("Timeline"), "09:00 alarms\n09:05 rollback\n");
    assert_eq!(text("Actions"), "Add a canary\n");

    // $EDITOR is used when no file is given: a script standing in for a person.
    let editor = world.file("editor.sh");
    std::fs::write(&editor, "#!/bin/sh\nsed -i 's/Half/Most of/' \"$1\"\n").unwrap();
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_meridian"))
        .args(["proposal", "edit", &pm, "--section", "Impact"])
        .env("MERIDIAN_HOME", ana.path())
        .env("EDITOR", format!("sh {}", editor.display()))
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(
        ana.json(&["show", &pm])["sections"][0]["text"],
        "Most of the users\n"
    );
    assert!(
        ana.err(&["proposal", "edit", &pm, "--section", "Impact"])
            .contains("$EDITOR is not set")
    );
}

#[test]
fn an_approval_goes_stale_when_the_text_changes() {
    let world = World::new();
    let ana = world.person("Ana", "Europe/Berlin");
    ana.ok(&["workspace", "create", "solo"]);
    let p = ana.create(&[
        "proposal",
        "new",
        "Cache",
        "--section",
        "Summary=Use an LRU cache.",
    ]);
    ana.ok(&["proposal", "approve", &p]);
    assert_eq!(ana.json(&["show", &p])["approvals"][0]["stale"], false);
    let file = world.file("s.md");
    std::fs::write(&file, "Use an LFU cache.").unwrap();
    ana.ok(&[
        "proposal",
        "edit",
        &p,
        "--section",
        "Summary",
        "--file",
        file.to_str().unwrap(),
    ]);
    assert_eq!(ana.json(&["show", &p])["approvals"][0]["stale"], true);
    let text = ana.ok(&["show", &p]);
    assert!(text.contains("STALE"), "{text}");
    assert!(
        text.contains("-Use an LRU cache.") && text.contains("+Use an LFU cache."),
        "{text}"
    );
    // A stale approval does not count towards acceptance.
    ana.ok(&["proposal", "open", &p, "--closes", "0m"]);
    assert!(
        ana.err(&["proposal", "accept", &p])
            .contains("your approval is stale")
    );
}

#[test]
fn threads_nested_replies_reactions_and_resolve() {
    let world = World::new();
    let [ana, bo] =
        <[_; 2]>::try_from(world.team(&[("Ana", "Asia/Tokyo"), ("Bo", "America/Lima")]))
            .ok()
            .unwrap();
    let t = ana.create(&[
        "thread",
        "new",
        "Release date?",
        "-m",
        "Friday or Monday?",
        "--ask",
        "Bo",
        "--urgency",
        "high",
    ]);
    sync_pair(&world, &ana, &bo);
    let first = bo.json(&["reply", &t, "-m", "Monday"])["comment_id"]
        .as_str()
        .unwrap()
        .to_string();
    sync_pair(&world, &bo, &ana);
    let nested = ana.json(&[
        "reply",
        &format!("{}:{}", &t[..8], &first[..8]),
        "-m",
        "Monday it is",
    ])["comment_id"]
        .as_str()
        .unwrap()
        .to_string();
    ana.ok(&["react", &format!("{t}:{}", &first[..6]), "👍"]);
    assert!(ana.err(&["react", &t, "👍"]).contains("DOCUMENT:COMMENT"));
    assert!(
        ana.err(&["reply", &format!("{t}:ffffffff"), "-m", "x"])
            .contains("no comment")
    );
    ana.ok(&["thread", "resolve", &t]);
    assert!(
        ana.err(&["thread", "resolve", &t])
            .contains("already resolved")
    );
    let shown = ana.json(&["show", &t]);
    assert_eq!(shown["state"], "resolved");
    assert_eq!(shown["body"], "Friday or Monday?");
    let comments = shown["comments"].as_array().unwrap();
    assert_eq!(comments.len(), 2);
    let reply = comments
        .iter()
        .find(|c| c["comment_id"] == nested.as_str())
        .unwrap();
    assert_eq!(reply["parent"], first.as_str());
    assert_eq!(
        comments
            .iter()
            .find(|c| c["comment_id"] == first.as_str())
            .unwrap()["reactions"]["👍"][0]["name"],
        "Ana"
    );
    let text = ana.ok(&["show", &t]);
    assert!(
        text.contains("Monday it is") && text.contains("👍 1"),
        "{text}"
    );
    let list = ana.json(&["thread", "list"]);
    assert_eq!(list[0]["state"], "resolved");
    ana.ok(&["thread", "reopen", &t]);
    assert_eq!(ana.json(&["show", &t])["state"], "open");
}

#[test]
fn status_updates_link_documents() {
    let world = World::new();
    let ana = world.person("Ana", "Europe/Berlin");
    ana.ok(&["workspace", "create", "solo"]);
    let p = ana.create(&["proposal", "new", "Use redb"]);
    assert!(ana.err(&["update", "new"]).contains("the update is empty"));
    let u = ana.create(&[
        "update",
        "new",
        "--done",
        "Wrote the storage RFC",
        "--blockers",
        "None",
        "--link",
        &p[..8],
        "--period",
        "2026-W48",
    ]);
    let shown = ana.json(&["show", &u]);
    assert_eq!(shown["kind"], "update");
    assert_eq!(shown["done"], "Wrote the storage RFC");
    assert_eq!(shown["links"][0], p.as_str());
    assert_eq!(shown["period"], "2026-W48");
    assert_eq!(ana.json(&["update", "list"]).as_array().unwrap().len(), 1);
    assert_eq!(
        ana.json(&["proposal", "list"]).as_array().unwrap().len(),
        1,
        "lists show one kind"
    );
}

#[test]
fn history_log_show_at_diff_and_times_in_the_readers_zone() {
    let world = World::new();
    let ana = world.person("Ana", "Asia/Tokyo");
    ana.ok(&["workspace", "create", "solo"]);
    let p = ana.create(&[
        "proposal",
        "new",
        "Queue",
        "--section",
        "Summary=Use a queue.",
    ]);
    let file = world.file("s.md");
    std::fs::write(&file, "Use a durable queue.").unwrap();
    ana.ok(&[
        "proposal",
        "edit",
        &p,
        "--section",
        "Summary",
        "--file",
        file.to_str().unwrap(),
    ]);
    ana.ok(&["reply", &p, "-m", "Which one?"]);

    let log = ana.json(&["log", &p]);
    let log = log.as_array().unwrap();
    assert_eq!(log.len(), 3);
    for entry in log {
        assert_eq!(entry["author"]["name"], "Ana");
        assert_eq!(entry["verified"], true);
        assert_eq!(entry["hash"].as_str().unwrap().len(), 64);
        assert!(
            entry["time"].as_str().unwrap().ends_with("+09:00"),
            "{entry}"
        );
    }
    assert!(
        log[0]["message"].as_str().unwrap().starts_with("reply"),
        "newest first"
    );
    assert_eq!(log[2]["message"], "new proposal: Queue");
    let lima = ana.json(&["--tz", "America/Lima", "log", &p, "-n", "1"]);
    assert_eq!(lima.as_array().unwrap().len(), 1);
    assert!(lima[0]["time"].as_str().unwrap().ends_with("-05:00"));
    assert!(ana.ok(&["log", &p]).contains("Ana"));

    let first = log[2]["hash"].as_str().unwrap();
    let then = ana.json(&["show", &p, "--at", &first[..10]]);
    assert_eq!(then["sections"][0]["text"], "Use a queue.");
    assert_eq!(then["comments"].as_array().unwrap().len(), 0);
    let now = ana.json(&["show", &p]);
    assert_eq!(now["sections"][0]["text"], "Use a durable queue.");
    let before_all = ana.err(&["show", &p, "--at", "2000-01-01"]);
    assert!(before_all.contains("did not exist yet"), "{before_all}");

    let diff = ana.json(&["diff", &p, &first[..10]]);
    let fields: Vec<&str> = diff
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["section Summary", "comment"], "{diff}");
    // Structured: what kind of change, before and after, and who made it.
    assert_eq!(diff[0]["change"], "changed");
    assert_eq!(diff[0]["before"], "Use a queue.");
    assert_eq!(diff[0]["after"], "Use a durable queue.");
    assert_eq!(diff[0]["editors"][0]["name"], "Ana");
    assert_eq!(diff[1]["change"], "added");
    assert_eq!(diff[1]["by"]["name"], "Ana");
    assert!(
        diff[1]["comment_id"].as_str().unwrap().len() == 32,
        "{diff}"
    );
    let text = ana.ok(&["diff", &p, &first[..10]]);
    assert!(
        text.contains("-Use a queue.") && text.contains("+Use a durable queue."),
        "{text}"
    );
    assert!(
        ana.err(&["diff", &p, "not-a-rev"])
            .contains("neither a revision")
    );
}

#[test]
fn export_markdown_json_and_read_markers() {
    let world = World::new();
    let [ana, bo] =
        <[_; 2]>::try_from(world.team(&[("Ana", "Asia/Tokyo"), ("Bo", "America/Lima")]))
            .ok()
            .unwrap();
    let p = ana.create(&[
        "proposal",
        "new",
        "Storage",
        "--section",
        "Summary=Use redb.",
    ]);
    ana.ok(&["reply", &p, "-m", "Thoughts?"]);
    let md = ana.ok(&["export", &p, "--discussion"]);
    assert!(md.starts_with("# Storage\n"), "{md}");
    assert!(
        md.contains("## Summary\n\nUse redb.") && md.contains("**Ana**"),
        "{md}"
    );
    // A proposal's record leaves its comments out unless asked for.
    assert!(!ana.ok(&["export", &p]).contains("Thoughts?"));
    let out = world.file("p.json");
    ana.ok(&[
        "export",
        &p,
        "--format",
        "json",
        "-o",
        out.to_str().unwrap(),
    ]);
    let json: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(json["id"], p.as_str());
    assert_eq!(json["kind"], "proposal");
    assert!(ana.err(&["export", "--all"]).contains("--format bundle"));

    // Bo sees the new proposal as changed until he reads it, then again after Ana replies.
    sync_pair(&world, &ana, &bo);
    let inbox = bo.json(&["inbox"]);
    assert!(changed(&inbox).iter().any(|d| d["id"] == p.as_str()));
    bo.ok(&["read", &p]);
    assert!(changed(&bo.json(&["inbox"])).is_empty());
    ana.ok(&["reply", &p, "-m", "Ping"]);
    sync_pair(&world, &ana, &bo);
    let shown = bo.json(&["show", &p, "--no-mark"]);
    let since = shown["changed_since_read"]
        .as_array()
        .expect("changes since the last read");
    assert!(
        since
            .iter()
            .any(|c| c["kind"] == "replies" && c["text"] == "1 new reply (Ana)"),
        "{since:?}"
    );
    assert_eq!(changed(&bo.json(&["inbox"])).len(), 1);
    // Your own edits do not count as unread.
    bo.ok(&["read", &p]);
    bo.ok(&["reply", &p, "-m", "Fine by me"]);
    assert!(changed(&bo.json(&["inbox"])).is_empty());
}

/// The documents `inbox --json` says changed since they were read, across workspaces.
fn changed(inbox: &Value) -> Vec<Value> {
    inbox["workspaces"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|w| w["happened"].as_array().unwrap().clone())
        .collect()
}

#[test]
fn ids_resolve_by_unique_prefix_with_clear_errors() {
    let world = World::new();
    let ana = world.person("Ana", "Europe/Berlin");
    ana.ok(&["workspace", "create", "solo"]);
    let mut ids: Vec<String> = Vec::new();
    // Seventeen ids over sixteen hex digits: two share a first digit.
    for i in 0..17 {
        ids.push(ana.create(&["thread", "new", &format!("t{i}"), "-m", "x"]));
    }
    let shared = ids
        .iter()
        .find(|a| ids.iter().filter(|b| b[..1] == a[..1]).count() > 1)
        .unwrap();
    assert!(ana.err(&["show", &shared[..1]]).contains("ambiguous"));
    assert!(ana.err(&["show", "zz"]).contains("not a document id"));
    let unknown = (0..16)
        .map(|d| format!("{d:x}"))
        .map(|d| format!("{d}{d}{d}{d}{d}{d}{d}{d}"))
        .find(|p| !ids.iter().any(|id| id.starts_with(p)))
        .unwrap();
    assert!(
        ana.err(&["show", &unknown])
            .contains("no document has an id starting with")
    );
    assert!(
        ana.err(&["proposal", "open", &ids[0]])
            .contains("not a proposal")
    );
    assert!(
        ana.err(&["proposal", "new", "X", "--ask", "Nobody"])
            .contains("no member is called `Nobody`")
    );
    assert!(
        ana.err(&["proposal", "new", "X", "--urgency", "asap"])
            .contains("not an urgency level")
    );
    let p = ana.create(&["proposal", "new", "X"]);
    assert!(
        ana.err(&["proposal", "open", &p, "--closes", "soon"])
            .contains("not a date or duration")
    );
    assert!(ana.err(&["-w", "nope", "inbox"]).contains("no workspace"));
}

#[test]
fn saved_automerge_documents_give_only_what_can_be_verified() {
    let world = World::new();
    let [ana, bo] =
        <[_; 2]>::try_from(world.team(&[("Ana", "Asia/Tokyo"), ("Bo", "Europe/Berlin")]))
            .ok()
            .unwrap();
    let p = ana.create(&[
        "proposal",
        "new",
        "Saved",
        "--section",
        "Summary=From another tool",
    ]);
    let file = world.file("p.automerge");
    ana.ok(&[
        "export",
        &p,
        "--format",
        "automerge",
        "-o",
        file.to_str().unwrap(),
    ]);
    let bytes = std::fs::read(&file).unwrap();
    assert_eq!(
        &bytes[..4],
        &[0x85, 0x6f, 0x4a, 0x83],
        "a real automerge document"
    );
    // Ana's changes are unsigned in that file: Bo's node will not take them on trust.
    let before = bo.snapshot();
    let refused = bo.err(&["merge", file.to_str().unwrap()]);
    assert!(
        refused.contains("by Ana")
            && refused.contains("carry no signatures")
            && refused.contains("bundle"),
        "{refused}"
    );
    assert_eq!(bo.snapshot(), before);
    // The bundle of the same document goes through, and then the saved copy holds nothing new.
    sync_pair(&world, &ana, &bo);
    let merged = bo.json(&["merge", file.to_str().unwrap()]);
    assert_eq!(merged["source"], "saved_document");
    assert_eq!(merged["applied"], 0);
    // Ana's own changes she can always take back from a saved copy.
    assert_eq!(ana.json(&["merge", file.to_str().unwrap()])["applied"], 0);
    let log = bo.json(&["log", &p]);
    assert!(
        log.as_array()
            .unwrap()
            .iter()
            .all(|e| e["verified"] == true && e["author"]["name"] == "Ana"),
        "{log}"
    );
}

/// `meridian log | head` and friends: a reader that closes stdout before the command has
/// printed ends the command quietly and successfully, never with a panic, and what a
/// writing command stored stays stored.
#[test]
fn a_reader_that_stops_early_ends_the_command_quietly() {
    use std::process::{Command, Stdio};
    let world = World::new();
    let ana = world.person("Ana", "Europe/Lisbon");
    ana.ok(&["workspace", "create", "solo"]);
    let thread = ana.create(&["thread", "new", "Lunch", "-m", "Where?"]);
    for n in 0..3 {
        ana.ok(&["reply", &thread, "-m", &format!("reply {n}")]);
    }
    let closed_early = |args: &[&str]| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_meridian"))
            .args(args)
            .env("MERIDIAN_HOME", ana.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the meridian binary runs");
        // The only read end closes before the process can have written a byte.
        drop(child.stdout.take());
        let output = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success() && stderr.is_empty(),
            "meridian {args:?} with its reader gone: {}\n{stderr}",
            output.status
        );
    };
    for args in [
        &["thread", "list"][..],
        &["--json", "thread", "list"],
        &["log", &thread],
        &["show", &thread],
        &["inbox"],
        &["whoami"],
        &["workspace", "list"],
        &["export", &thread],
    ] {
        closed_early(args);
    }
    closed_early(&["reply", &thread, "-m", "stored anyway"]);
    let shown = ana.ok(&["show", &thread]);
    assert!(shown.contains("stored anyway"), "{shown}");

    // Any other failure to print is an error that says so.
    #[cfg(target_os = "linux")]
    {
        let full = std::fs::File::create("/dev/full").unwrap();
        let output = Command::new(env!("CARGO_BIN_EXE_meridian"))
            .args(["log", &thread])
            .env("MERIDIAN_HOME", ana.path())
            .stdout(full)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{stderr}");
        assert!(
            stderr.starts_with("error: could not write to standard output: ")
                && !stderr.contains("panicked"),
            "{stderr}"
        );
    }
}

/// Text on stdout and a warning on stderr reach one pipe (`2>&1`) in the order they were
/// written, although stdout is buffered when it is not a terminal.
#[test]
fn text_and_warnings_keep_their_order_in_one_pipe() {
    use std::io::Read;
    use std::process::{Command, Stdio};
    let world = World::new();
    let ana = world.person("Ana", "Europe/Lisbon");
    ana.ok(&["workspace", "create", "solo"]);
    let (mut reader, writer) = std::io::pipe().unwrap();
    let status = Command::new(env!("CARGO_BIN_EXE_meridian"))
        .args(["invite"])
        .env("MERIDIAN_HOME", ana.path())
        .stdin(Stdio::null())
        .stdout(writer.try_clone().unwrap())
        .stderr(writer)
        .status()
        .unwrap();
    assert!(status.success());
    let mut both = String::new();
    reader.read_to_string(&mut both).unwrap();
    let code = both.find("meridian-invite-").expect("the code is printed");
    let warning = both
        .find("This code carries")
        .expect("the warning is printed");
    assert!(code < warning, "the code comes first:\n{both}");
}
