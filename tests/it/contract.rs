//! The command line as a contract scripts rely on: exit codes by kind of failure, errors
//! as JSON under `--json`, and one JSON model across commands.

use serde_json::Value;

use crate::support::{Home, World};

/// Runs a command that must fail; returns its exit code and stderr.
fn fails(home: &Home, args: &[&str]) -> (i32, String) {
    let output = home.run(args);
    assert!(!output.status.success(), "{args:?} should fail");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!stderr.contains("panicked"), "{stderr}");
    (output.status.code().unwrap(), stderr)
}

#[test]
fn exit_codes_say_what_kind_of_failure_it_was() {
    let world = World::new();
    let ana = world.person("Ana", "Asia/Tokyo");
    ana.ok(&["workspace", "create", "acme"]);
    let p = ana.create(&["proposal", "new", "Ship", "--decider", "Ana"]);
    ana.ok(&["proposal", "open", &p, "--closes", "0m"]);
    ana.ok(&["proposal", "approve", &p]);
    ana.ok(&["proposal", "accept", &p]);
    let cases: Vec<(Vec<&str>, i32, &str)> = vec![
        (vec!["proposal", "nwe"], 2, "usage"),
        (vec!["show", "zz"], 2, "usage"),
        (vec!["show", "ffffffff"], 3, "not_found"),
        (vec!["proposal", "list", "--state", "opne"], 2, "usage"),
        (vec!["profile", "set", "--hours", "9-5"], 2, "usage"),
        (vec!["away", "tomorrow"], 2, "usage"),
        (vec!["inbox", "--kind", "memo"], 2, "usage"),
        (vec!["show", &p, "--at", "2026-13-01"], 2, "usage"),
        (
            vec!["proposal", "new", "X", "--template", "rfcs"],
            2,
            "usage",
        ),
        (vec!["proposal", "new", "X", "--urgency", "hi"], 2, "usage"),
        (vec!["join", "hello"], 2, "usage"),
        (vec!["resolve", &p, "titel", "x"], 2, "usage"),
        (
            vec!["proposal", "new", "X", "--ask", "Nobody"],
            3,
            "not_found",
        ),
        (
            vec!["proposal", "edit", &p, "--title", "Rewritten"],
            4,
            "refused",
        ),
        (
            vec!["sync", "--relay", "ws://127.0.0.1:9"],
            5,
            "unreachable",
        ),
    ];
    for (args, code, kind) in &cases {
        let (got, stderr) = fails(&ana, args);
        assert_eq!(got, *code, "{args:?}: {stderr}");
        assert!(stderr.lines().any(|l| l.starts_with("error: ")), "{stderr}");
        let mut json = vec!["--json"];
        json.extend(args);
        let (got, stderr) = fails(&ana, &json);
        assert_eq!(got, *code, "{json:?}: {stderr}");
        let error: Value = serde_json::from_str(stderr.lines().last().unwrap())
            .unwrap_or_else(|e| panic!("{json:?}: the error is not JSON ({e}): {stderr}"));
        assert_eq!(error["kind"], *kind, "{error}");
        assert!(error["error"].as_str().unwrap().len() > 10, "{error}");
    }
    // Seventeen documents: two share a first digit, which is then an ambiguous prefix.
    let mut ids = vec![p.clone()];
    for i in 0..16 {
        ids.push(ana.create(&["thread", "new", &format!("Topic {i}"), "-m", "x"]));
    }
    let digit = (0..16)
        .map(|d| format!("{d:x}"))
        .find(|d| ids.iter().filter(|id| id.starts_with(d.as_str())).count() > 1)
        .unwrap();
    let (code, stderr) = fails(&ana, &["show", &digit]);
    assert_eq!(code, 6, "{stderr}");
    assert!(stderr.contains("is ambiguous"), "{stderr}");
}

#[test]
fn suggestions_for_what_was_probably_meant() {
    let world = World::new();
    let ana = world.person("Ana", "Asia/Tokyo");
    ana.ok(&["workspace", "create", "acme"]);
    let p = ana.create(&["proposal", "new", "Store workspaces in redb"]);
    // One digit off: the document it probably was.
    let mut typo: Vec<char> = p[..8].chars().collect();
    typo.swap(2, 3);
    if typo[2] == typo[3] {
        typo[3] = if typo[3] == 'a' { 'b' } else { 'a' };
    }
    let typo: String = typo.into_iter().collect();
    let (_, said) = fails(&ana, &["show", &typo]);
    assert!(
        said.contains(&format!("did you mean {}", &p[..8]))
            && said.contains("Store workspaces in redb"),
        "{said}"
    );
    let (code, said) = fails(&ana, &["workspace", "norms", "-w", "acne"]);
    assert_eq!(code, 3);
    assert!(said.contains("did you mean `acme`"), "{said}");
    let bob = world.person("Bob", "Europe/Berlin");
    let (code, said) = fails(&bob, &["profile", "set", "--tz", "Europe/Berln"]);
    assert_eq!(code, 2);
    assert!(said.contains("did you mean Europe/Berlin?"), "{said}");
    let (_, said) = fails(
        &ana,
        &[
            "proposal",
            "edit",
            &p,
            "--section",
            "Sumary",
            "--file",
            "/dev/null",
        ],
    );
    assert!(said.contains("did you mean `Summary`"), "{said}");
}

/// The schema of every command's JSON (`docs/json/meridian.schema.json`).
fn schema() -> &'static Value {
    static SCHEMA: std::sync::OnceLock<Value> = std::sync::OnceLock::new();
    SCHEMA.get_or_init(|| {
        serde_json::from_str(include_str!("../../docs/json/meridian.schema.json"))
            .expect("the schema is JSON")
    })
}

/// Checks `value` against the schema's definition `name`.
#[track_caller]
fn valid(name: &str, value: &Value) {
    // `show` is one of three documents: checked as the one it says it is.
    let name = match (name, value["kind"].as_str()) {
        ("show", Some(kind)) => kind,
        _ => name,
    };
    let mut wrapper = schema().clone();
    wrapper["$ref"] = Value::String(format!("#/$defs/{name}"));
    assert!(
        schema()["$defs"].get(name).is_some(),
        "the schema defines no `{name}`"
    );
    let validator = jsonschema::validator_for(&wrapper).expect("the schema compiles");
    let errors: Vec<String> = validator
        .iter_errors(value)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "not a `{name}`:\n{}\n{}",
        errors.join("\n"),
        serde_json::to_string_pretty(value).unwrap()
    );
}

/// Runs `args` with --json, checks its output against `name`, returns it.
#[track_caller]
fn checked(home: &Home, name: &str, args: &[&str]) -> Value {
    let value = home.json(args);
    valid(name, &value);
    value
}

#[test]
fn every_command_prints_the_documented_json() {
    let team = crate::relays::Team::new(&[("Ana", "Asia/Tokyo"), ("Bo", "Europe/Berlin")]);
    let [ana, bo] = [&team.homes[0], &team.homes[1]];
    let world = &team.world;
    checked(ana, "whoami", &["whoami"]);
    checked(ana, "workspace_list", &["workspace", "list"]);
    checked(ana, "member_list", &["member", "list"]);
    checked(ana, "invite", &["invite"]);
    checked(ana, "relay_list", &["workspace", "relay", "list"]);
    checked(ana, "workspace_norm", &["workspace", "norm", "high", "2h"]);
    checked(ana, "workspace_ladder", &["workspace", "ladder", "Bo"]);
    checked(
        ana,
        "workspace_template",
        &["workspace", "template", "pm", "Impact", "Actions"],
    );
    checked(ana, "workspace_norms", &["workspace", "norms"]);
    let keys = checked(ana, "workspace_keys", &["workspace", "keys"]);
    assert_eq!(keys["sealing"], "first", "nobody removed yet: {keys}");
    checked(ana, "log", &["workspace", "log"]);
    checked(ana, "member_admin", &["member", "admin", "Bo"]);
    checked(ana, "workspace_use", &["workspace", "use", "acme"]);

    let p = checked(
        ana,
        "created",
        &[
            "proposal",
            "new",
            "Ship",
            "--decider",
            "Ana",
            "--decider",
            "Bo",
            "--ask",
            "Bo",
        ],
    )["id"]
        .as_str()
        .unwrap()
        .to_string();
    let t = checked(ana, "created", &["thread", "new", "Lunch", "-m", "Where?"])["id"]
        .as_str()
        .unwrap()
        .to_string();
    let u = checked(
        ana,
        "created",
        &["update", "new", "--done", "Storage", "--link", &p],
    )["id"]
        .as_str()
        .unwrap()
        .to_string();
    let file = world.file("summary.md");
    std::fs::write(&file, "One file per home.\n").unwrap();
    checked(
        ana,
        "edited",
        &[
            "proposal",
            "edit",
            &p,
            "--section",
            "Summary",
            "--file",
            file.to_str().unwrap(),
        ],
    );
    checked(ana, "deciders", &["proposal", "deciders", &p, "Ana", "Bo"]);
    checked(
        ana,
        "entry_written",
        &["proposal", "open", &p, "--closes", "3d"],
    );
    checked(ana, "entry_written", &["proposal", "close", &p]);
    checked(
        ana,
        "entry_written",
        &["proposal", "approve", &p, "-m", "yes"],
    );
    checked(ana, "entry_written", &["proposal", "unapprove", &p]);
    checked(ana, "entry_written", &["proposal", "approve", &p]);
    let concern = checked(
        ana,
        "entry_written",
        &["proposal", "concern", &p, "-m", "Backups?"],
    )["entry_id"]
        .as_str()
        .unwrap()
        .to_string();
    let reply = checked(
        ana,
        "replied",
        &["reply", &format!("{p}:{}", &concern[..8]), "-m", "nightly"],
    )["comment_id"]
        .as_str()
        .unwrap()
        .to_string();
    checked(
        ana,
        "entry_written",
        &["proposal", "resolve", &p, &concern[..8]],
    );
    let target = format!("{p}:{}", &reply[..8]);
    checked(ana, "reacted", &["react", &target, "👍"]);
    checked(
        ana,
        "comment_changed",
        &["reply", "--edit", &target, "-m", "nightly, tested"],
    );
    checked(ana, "asked", &["ask", &t, "Bo", "--urgency", "high"]);
    checked(ana, "entry_written", &["ask", &t, "--cancel", "Bo"]);
    checked(ana, "asked", &["ask", &t, "Bo"]);
    checked(ana, "sync", &["sync"]);
    checked(bo, "sync", &["sync"]);
    checked(bo, "inbox", &["inbox"]);
    checked(bo, "entry_written", &["decline", &t, "-m", "busy"]);
    checked(bo, "entry_written", &["proposal", "approve", &p]);
    checked(bo, "sync", &["sync"]);
    checked(ana, "sync", &["sync"]);
    checked(ana, "inbox", &["inbox"]);
    for id in [&p, &t, &u] {
        checked(ana, "show", &["show", id, "--no-mark"]);
        checked(ana, "show", &["show", id]);
        checked(ana, "log", &["log", id]);
    }
    checked(ana, "list", &["proposal", "list"]);
    checked(ana, "list", &["thread", "list"]);
    checked(ana, "update_list", &["update", "list"]);
    checked(ana, "search", &["search", "Storage"]);
    checked(ana, "search_reindex", &["search", "--reindex"]);
    checked(ana, "update_missing", &["update", "missing"]);
    let log = ana.json(&["log", &p]);
    let first = log.as_array().unwrap().last().unwrap()["hash"]
        .as_str()
        .unwrap()
        .to_string();
    checked(ana, "diff", &["diff", &p, &first[..12]]);
    checked(ana, "conflicts", &["conflicts", &p]);
    checked(ana, "read", &["read", &p, &t]);
    checked(ana, "read", &["read", "--all"]);
    checked(
        ana,
        "entry_written",
        &["proposal", "accept", &p, "-m", "agreed"],
    );
    checked(ana, "entry_written", &["thread", "resolve", &t]);
    checked(ana, "show", &["show", &p]);
    let out = world.file("p.md");
    checked(
        ana,
        "export_file",
        &["export", &p, "-o", out.to_str().unwrap()],
    );
    checked(ana, "export_stdout", &["export", &p]);
    let records = world.file("decisions");
    checked(
        ana,
        "export_records",
        &[
            "export",
            "--all",
            "--format",
            "markdown",
            "-o",
            records.to_str().unwrap(),
        ],
    );
    checked(ana, "export_stdout", &["export", &p, "--format", "json"]);
    let bundle = world.file("all.bundle");
    checked(
        ana,
        "export_file",
        &[
            "export",
            "--all",
            "--format",
            "bundle",
            "-o",
            bundle.to_str().unwrap(),
        ],
    );
    checked(bo, "merge", &["merge", bundle.to_str().unwrap()]);
    let verifiable = world.file("p.bundle");
    checked(
        ana,
        "export_file",
        &[
            "export",
            &p,
            "--format",
            "bundle",
            "--verifiable",
            "-o",
            verifiable.to_str().unwrap(),
        ],
    );
    checked(ana, "verify", &["verify", verifiable.to_str().unwrap()]);
    checked(bo, "profile", &["profile", "set", "--hours", "08:00-16:00"]);
    checked(bo, "away", &["away", "--clear"]);
    // The rest of the lifecycle, and taking things back.
    let q = checked(
        ana,
        "created",
        &["proposal", "new", "Second", "--decider", "Ana"],
    )["id"]
        .as_str()
        .unwrap()
        .to_string();
    checked(
        ana,
        "entry_written",
        &["proposal", "open", &q, "--closes", "0m"],
    );
    checked(
        ana,
        "entry_written",
        &["proposal", "final-comment", &q, "--closes", "0m"],
    );
    checked(
        ana,
        "entry_written",
        &["proposal", "reject", &q, "-m", "no"],
    );
    checked(
        ana,
        "entry_written",
        &["proposal", "reopen", &q, "-m", "again"],
    );
    checked(ana, "entry_written", &["proposal", "withdraw", &q]);
    checked(
        ana,
        "entry_written",
        &["proposal", "reopen", &q, "-m", "once more"],
    );
    checked(
        ana,
        "entry_written",
        &["proposal", "supersede", &q, "--by", &p],
    );
    checked(ana, "entry_written", &["thread", "reopen", &t]);
    checked(ana, "reacted", &["react", &target, "👍", "--remove"]);
    checked(ana, "comment_changed", &["reply", "--delete", &target]);
    checked(ana, "read", &["read", &q]);
    checked(
        ana,
        "relay_change",
        &["workspace", "relay", "add", "ws://127.0.0.1:9"],
    );
    checked(
        ana,
        "relay_change",
        &["workspace", "relay", "remove", "ws://127.0.0.1:9"],
    );
    let v = checked(
        ana,
        "created",
        &["thread", "new", "Ack", "-m", "?", "--ask", "Bo"],
    )["id"]
        .as_str()
        .unwrap()
        .to_string();
    checked(ana, "sync", &["sync"]);
    checked(bo, "sync", &["sync"]);
    checked(bo, "entry_written", &["ack", &v]);
    checked(ana, "member_remove", &["member", "remove", "Bo"]);
    let keys = checked(ana, "workspace_keys", &["workspace", "keys"]);
    assert_eq!(keys["epochs"][0]["reason"], "removal", "{keys}");
    assert_eq!(keys["epochs"][0]["removed"]["name"], "Bo", "{keys}");

    // Errors are JSON objects of their own.
    let output = ana.run(&["--json", "show", "ffffffff"]);
    let error: Value = serde_json::from_slice(&output.stderr).unwrap();
    valid("error", &error);

    // A fresh identity, a workspace, a join: the rest of the commands.
    let cy = world.person("Cy", "America/Lima");
    let code = ana.ok(&["invite"]).trim().to_string();
    let dee = world.person("Dee", "Europe/Lisbon");
    let joined = dee.json(&["join", &code]);
    valid("join", &joined);
    let device = checked(ana, "device_code", &["device", "add"]);
    let laptop = world.home_in("ana-laptop", "Ana", "Asia/Tokyo");
    let joined = laptop.json(&["device", "join", device["code"].as_str().unwrap()]);
    valid("device_join", &joined);
    checked(&laptop, "device_list", &["device", "list"]);
    let created = cy.json(&["workspace", "create", "side"]);
    valid("workspace_create", &created);
    let init = {
        let home = world.file("fresh");
        let output = std::process::Command::new(crate::support::meridian_bin())
            .args(["--json", "init", "--name", "Fresh", "--tz", "UTC"])
            .env("MERIDIAN_HOME", &home)
            .output()
            .unwrap();
        serde_json::from_slice::<Value>(&output.stdout).unwrap()
    };
    valid("init", &init);
}

/// `sync` tells a person what moved in their words (edits sent, what arrived in which
/// document, who joined); the relay's figures come with `-v`.
#[test]
fn sync_speaks_the_language_of_the_people_using_it() {
    use crate::relays::Team;
    let team = Team::new(&[("Ana", "Asia/Tokyo"), ("Bo", "Europe/Berlin")]);
    let (ana, bo) = (&team.homes[0], &team.homes[1]);
    assert_eq!(ana.ok(&["sync"]).trim(), "Up to date");
    let t = bo.create(&["thread", "new", "Release date?", "-m", "When do we ship?"]);
    let said = bo.ok(&["sync"]);
    assert_eq!(said.trim(), "Sent 1 edit", "{said}");
    bo.ok(&["reply", &t, "-m", "Friday?"]);
    bo.ok(&["reply", &t, "-m", "Or Monday."]);
    let said = bo.ok(&["sync"]);
    assert_eq!(said.trim(), "Sent 2 edits", "{said}");
    let said = ana.ok(&["sync"]);
    let mut lines = said.lines();
    assert_eq!(
        lines.next(),
        Some("Received a new thread \"Release date?\""),
        "{said}"
    );
    let detail = lines.next().unwrap_or_default();
    assert!(
        detail.contains(&t[..8]) && detail.contains("new thread by Bo"),
        "{said}"
    );
    for developer in ["pushed", "pulled", "outbox", "envelope", "entries"] {
        assert!(!said.contains(developer), "`{developer}` in: {said}");
    }
    bo.ok(&["reply", &t, "-m", "Tuesday, then."]);
    bo.ok(&["reply", &t, "-m", "Final answer."]);
    bo.ok(&["sync"]);
    ana.ok(&["reply", &t, "-m", "Tuesday works."]);
    let said = ana.ok(&["sync"]);
    assert!(
        said.starts_with("Sent 1 edit · received 2 replies on \"Release date?\""),
        "{said}"
    );
    assert!(said.contains("2 new replies (Bo)"), "{said}");
    let verbose = ana.ok(&["-v", "sync"]);
    assert!(
        verbose.contains(&format!("{}: pushed 0, pulled 0", team.relay.url())),
        "{verbose}"
    );
    assert!(verbose.trim_end().ends_with("Up to date"), "{verbose}");
    // A proposal decided before it arrives says so.
    let p = bo.create(&["proposal", "new", "Ship Tuesday", "--template", "decision"]);
    bo.ok(&["proposal", "open", &p, "--closes", "now"]);
    bo.ok(&["proposal", "approve", &p]);
    bo.ok(&["proposal", "accept", &p]);
    bo.ok(&["sync"]);
    let said = ana.ok(&["sync"]);
    assert!(said.contains("new proposal by Bo (accepted)"), "{said}");
    // A newcomer is news too.
    let cy = team.world.person("Cy", "America/Lima");
    let code = ana.ok(&["invite"]);
    cy.ok(&["join", code.trim()]);
    assert_eq!(ana.ok(&["sync"]).trim(), "Cy joined");
    assert_eq!(ana.ok(&["-q", "sync"]), "", "-q says nothing");
    // A busy week: counted, the latest listed, the rest left to the inbox.
    for i in 0..25 {
        bo.ok(&["thread", "new", &format!("Topic {i}"), "-m", "Thoughts?"]);
    }
    bo.ok(&["sync"]);
    let said = ana.ok(&["sync"]);
    let lines: Vec<&str> = said.lines().collect();
    assert_eq!(lines[0], "Received news in 25 documents", "{said}");
    assert!(
        lines[1].contains("\"Topic 24\""),
        "the latest first: {said}"
    );
    assert_eq!(lines.len(), 12, "{said}");
    assert_eq!(lines[11], "  … and 15 more: `meridian inbox` lists them");
    let json = cy.json(&["sync"]);
    assert_eq!(json["received_total"], 25, "{json}");
    assert_eq!(json["received"].as_array().unwrap().len(), 20, "{json}");
}

/// A relay has one spelling: `ws://host:port/v1/` and `ws://HOST:port` are the relay a
/// workspace already lists.
#[test]
fn a_relay_url_is_one_relay_however_it_is_spelled() {
    use crate::relays::Team;
    let team = Team::new(&[("Ana", "Asia/Tokyo")]);
    let ana = &team.homes[0];
    let url = team.relay.url();
    for spelling in [
        format!("{url}/v1"),
        format!("{url}/v1/"),
        format!("{url}/"),
        url.to_uppercase(),
    ] {
        let (code, said) = fails(ana, &["workspace", "relay", "add", &spelling]);
        assert_eq!(code, 1, "{said}");
        assert!(said.contains("already syncs with"), "{spelling}: {said}");
    }
    let listed = ana.json(&["workspace", "relay", "list"]);
    assert_eq!(listed["relays"].as_array().unwrap().len(), 1, "{listed}");
    ana.ok(&["workspace", "relay", "remove", &format!("{url}/v1")]);
    let listed = ana.json(&["workspace", "relay", "list"]);
    assert_eq!(listed["relays"], serde_json::json!([]), "{listed}");
    ana.ok(&["workspace", "relay", "add", &format!("{url}/v1/")]);
    let listed = ana.json(&["workspace", "relay", "list"]);
    assert_eq!(listed["relays"][0]["relay"], url.as_str(), "{listed}");
    // Sharing the relay again is an edit of the workspace document, sent by the first sync.
    ana.ok(&["sync", "--relay", &format!("{url}/v1")]);
    let said = ana.ok(&["sync", "--relay", &format!("{url}/v1")]);
    assert_eq!(said.trim(), "Up to date", "{said}");
    let (code, said) = fails(ana, &["workspace", "relay", "add", "http://example.org"]);
    assert_eq!(code, 2);
    assert!(said.contains("not a relay URL"), "{said}");
}
