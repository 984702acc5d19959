//! What the main commands print, as text and as JSON, kept as snapshots: a change to what
//! people or scripts read shows in review (`cargo insta review`, or `INSTA_UPDATE=always`).
//! Ids, keys, hashes, times and paths change from run to run and are redacted.

use crate::support::{Home, World, sync_pair};

/// Snapshots `args` as `home` runs them, text and JSON, under `name`.
fn screens(home: &Home, name: &str, args: &[&str]) {
    let text = home.ok(args);
    let mut json_args = vec!["--json"];
    json_args.extend(args);
    let json = home.ok(&json_args);
    snapshot(&format!("{name}_text"), &text);
    snapshot(&format!("{name}_json"), &json);
}

/// Snapshots `text` with what changes between runs redacted.
fn snapshot(name: &str, text: &str) {
    insta::with_settings!({
        filters => vec![
            (r"[0-9a-f]{64}", "[key]"),
            (r"[0-9a-f]{32}", "[id]"),
            (r"\b[0-9a-f]{12}\b", "[key12]"),
            (r"\b[0-9a-f]{8}:[0-9a-f]{8}\b", "[doc:comment]"),
            (r"\b[0-9a-f]{8}\b", "[short]"),
            (r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}([+-]\d{2}:\d{2}|Z)", "[time]"),
            (r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun) \d{4}-\d{2}-\d{2} \d{2}:\d{2} [A-Z0-9+-]+", "[time]"),
            (r"\((in [^)]*|[^()]* ago|just now)\)", "([relative])"),
            (r"\b(Mon|Tue|Wed|Thu|Fri|Sat|Sun) \d{2}:\d{2}\b", "[day time]"),
            (r"(?m)\s+working$", ""),
            (r"/tmp/[^\s\x22]*", "[path]"),
            (r"\x22working_now\x22: (true|false)", "\"working_now\": [bool]"),
        ],
        prepend_module_to_snapshot => false,
        snapshot_path => "snapshots/screens",
    }, {
        insta::assert_snapshot!(name, text);
    });
}

/// Ana (Tokyo) and Bo (Berlin) decide a proposal and discuss a thread, exchanging
/// bundles; each main command's output along the way is a snapshot.
#[test]
fn the_main_commands_read_as_recorded() {
    let world = World::new();
    let homes = world.team(&[("Ana", "Asia/Tokyo"), ("Bo", "Europe/Berlin")]);
    let (ana, bo) = (&homes[0], &homes[1]);
    let exchange = || {
        sync_pair(&world, ana, bo);
        sync_pair(&world, bo, ana);
    };
    let p = ana.create(&[
        "proposal",
        "new",
        "Store workspaces in redb",
        "--section",
        "Summary=One redb file per node.",
        "--decider",
        "Bo",
        "--ask",
        "Bo",
        "--urgency",
        "high",
    ]);
    ana.ok(&["proposal", "open", &p, "--closes", "3d"]);
    let t = ana.create(&["thread", "new", "Release date?", "-m", "Friday or Monday?"]);
    exchange();
    screens(bo, "inbox_bo", &["inbox"]);
    screens(bo, "proposal_list", &["proposal", "list"]);
    screens(bo, "show_proposal", &["show", &p, "--no-mark"]);
    bo.ok(&["reply", &t, "-m", "Monday: Friday deploys are risky."]);
    bo.ok(&["proposal", "concern", &p, "-m", "What about backups?"]);
    bo.ok(&["proposal", "approve", &p, "-m", "Looks right."]);
    exchange();
    screens(ana, "inbox_ana", &["inbox"]);
    screens(ana, "show_thread", &["show", &t]);
    screens(ana, "thread_list", &["thread", "list"]);
    screens(ana, "member_list", &["member", "list"]);
    screens(ana, "workspace_norms", &["workspace", "norms"]);
    // The log and the diff of the proposal since it was written.
    let log = ana.json(&["log", &p]);
    let first = log.as_array().unwrap().last().unwrap()["hash"]
        .as_str()
        .unwrap()
        .to_string();
    screens(ana, "log", &["log", &p]);
    screens(ana, "diff", &["diff", &p, &first[..12]]);
    screens(ana, "conflicts", &["conflicts", &p]);
}
