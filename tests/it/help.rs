//! The command line is an interface: every `--help` is a snapshot, so a renamed or dropped
//! command or flag shows up in review.

fn help(args: &[&str]) -> String {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_meridian"))
        .args(args)
        .arg("--help")
        .env_remove("MERIDIAN_HOME")
        .env_remove("COLUMNS")
        .output()
        .unwrap();
    assert!(output.status.success());
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn every_help_page() {
    let pages: &[&[&str]] = &[
        &[],
        &["init"],
        &["workspace"],
        &["invite"],
        &["member"],
        &["proposal"],
        &["proposal", "new"],
        &["proposal", "edit"],
        &["proposal", "open"],
        &["proposal", "concern"],
        &["proposal", "resolve"],
        &["proposal", "reopen"],
        &["proposal", "close"],
        &["proposal", "unapprove"],
        &["proposal", "deciders"],
        &["ask"],
        &["decline"],
        &["ack"],
        &["member", "admin"],
        &["workspace", "norm"],
        &["workspace", "use"],
        &["workspace", "log"],
        &["read"],
        &["profile", "set"],
        &["away"],
        &["thread"],
        &["thread", "new"],
        &["reply"],
        &["react"],
        &["update", "new"],
        &["update", "list"],
        &["update", "missing"],
        &["show"],
        &["inbox"],
        &["search"],
        &["log"],
        &["diff"],
        &["conflicts"],
        &["resolve"],
        &["export"],
        &["verify"],
        &["device", "add"],
        &["device", "join"],
        &["device", "revoke"],
        &["merge"],
        &["completions"],
        &["man"],
        &["schema"],
    ];
    for page in pages {
        let name = if page.is_empty() {
            "meridian".to_string()
        } else {
            format!("meridian {}", page.join(" "))
        };
        insta::assert_snapshot!(name.replace(' ', "_"), help(page), &name);
    }
}

fn meridian(args: &[&str]) -> String {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_meridian"))
        .args(args)
        .env_remove("MERIDIAN_HOME")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// Completions and the manual need no home, and cover every command.
#[test]
fn completions_and_the_manual_page() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let script = meridian(&["completions", shell]);
        for command in ["proposal", "inbox", "resolve", "away"] {
            assert!(
                script.contains(command),
                "{shell} completion lacks {command}"
            );
        }
    }
    let page = meridian(&["man"]);
    assert!(
        page.starts_with(".ie"),
        "not roff: {}",
        &page[..40.min(page.len())]
    );
    assert!(page.contains(".TH meridian 1"), "{page}");
    assert!(page.contains("inbox"));
    let refused = std::process::Command::new(env!("CARGO_BIN_EXE_meridian"))
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2));
    // The schema scripts validate against is the one the contract tests use.
    let printed: serde_json::Value = serde_json::from_str(&meridian(&["schema"])).unwrap();
    let file: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/docs/json/meridian.schema.json"
        ))
        .unwrap(),
    )
    .unwrap();
    assert_eq!(printed, file);
}
