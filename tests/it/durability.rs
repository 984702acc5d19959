//! Several processes on one home, and processes killed mid-write: every acknowledged edit
//! is kept and the database always opens.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::World;

fn reply(home: &std::path::Path, thread: &str, body: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_meridian"));
    command
        .args(["reply", thread, "-m", body])
        .env("MERIDIAN_HOME", home)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    command
}

fn bodies(home: &crate::support::Home, thread: &str) -> Vec<String> {
    let shown = home.json(&["show", thread]);
    shown["comments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["body"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn concurrent_commands_on_one_home_all_land() {
    let world = World::new();
    let ana = world.person("Ana", "Europe/Berlin");
    ana.ok(&["workspace", "create", "solo"]);
    let t = ana.create(&["thread", "new", "Busy", "-m", "busy"]);
    let children: Vec<_> = (0..8)
        .map(|i| {
            reply(ana.path(), &t, &format!("reply {i}"))
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let output = child.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let mut got = bodies(&ana, &t);
    got.sort();
    let mut expected: Vec<String> = (0..8).map(|i| format!("reply {i}")).collect();
    expected.sort();
    assert_eq!(got, expected);
}

#[test]
fn killed_writers_never_corrupt_the_store_or_lose_acknowledged_edits() {
    let world = World::new();
    let ana = world.person("Ana", "Europe/Berlin");
    ana.ok(&["workspace", "create", "solo"]);
    let t = ana.create(&["thread", "new", "Crashy", "-m", "crashy"]);
    // How long one write takes here, so the kills can be spread over its whole life.
    let started = std::time::Instant::now();
    ana.ok(&["reply", &t, "-m", "timing"]);
    let span = (started.elapsed().as_micros() as u64 * 3 / 2).max(1000);
    let mut acknowledged = vec!["timing".to_string()];
    let mut killed = 0;
    for i in 0..30u64 {
        let body = format!("edit {i}");
        let mut child = reply(ana.path(), &t, &body).spawn().unwrap();
        // Spread the kills over the life of the process: before open, mid-transaction, after commit.
        std::thread::sleep(Duration::from_micros((i * 7919) % span));
        let _ = child.kill();
        let status = child.wait().unwrap();
        if status.success() {
            acknowledged.push(body);
        } else {
            killed += 1;
        }
        // The store opens after every kill, and every acknowledged edit is there.
        let present = bodies(&ana, &t);
        for body in &acknowledged {
            assert!(
                present.contains(body),
                "acknowledged `{body}` was lost after kill {i}"
            );
        }
    }
    eprintln!(
        "{} edits acknowledged, {killed} writers killed",
        acknowledged.len()
    );
    assert!(
        killed > 0,
        "no process was killed mid-flight; the test proved nothing"
    );
    let present = bodies(&ana, &t);
    assert!(present.len() >= acknowledged.len());
    // And the node still writes.
    ana.ok(&["reply", &t, "-m", "after the storm"]);
}
