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
    // Two workspaces and none chosen: ambiguous.
    ana.ok(&["workspace", "create", "side"]);
    let (code, stderr) = fails(&ana, &["proposal", "list"]);
    assert_eq!(code, 6, "{stderr}");
    assert!(stderr.contains("workspace use"), "{stderr}");
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
