//! `meridian daemon --on-inbox CMD`: a real daemon connected to a real relay tells Ana what
//! newly waits for her, in her working hours: at once while she is at work, only requests
//! of a level the norms say interrupts quiet hours while she is off, and never the same
//! thing twice, even after a restart.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::relays::{Guard, Team, meridian, read_log};
use crate::support::Home;

/// Ana's daemon, running CMD for each item into `out` (one JSON line each).
fn daemon(home: &Home, out: &Path, log: &Path) -> Guard {
    let mut command = meridian(
        home,
        &[
            "daemon",
            "--on-inbox",
            &format!("cat >> '{}'", out.display()),
        ],
    );
    command
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap());
    Guard(Some(command.spawn().unwrap()))
}

/// The lines `out` holds after waiting up to `limit` for `until` to hold of them.
fn lines_when(out: &Path, limit: Duration, until: impl Fn(&[String]) -> bool) -> Vec<String> {
    let started = Instant::now();
    loop {
        let lines: Vec<String> = std::fs::read_to_string(out)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect();
        if until(&lines) || started.elapsed() > limit {
            return lines;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Working hours in UTC, `from` to `to` hours after the current hour.
fn hours_from_now(from: i64, to: i64) -> String {
    let hour = jiff::Timestamp::now()
        .as_second()
        .div_euclid(3600)
        .rem_euclid(24);
    let at = |h: i64| format!("{:02}:00", (hour + h).rem_euclid(24));
    format!("{}-{}", at(from), at(to))
}

#[test]
fn the_daemon_tells_what_waits_in_working_hours_and_interrupting_levels_at_once() {
    let team = Team::new(&[("Ana", "UTC"), ("Bo", "Europe/Berlin")]);
    let [ana, bo] = [&team.homes[0], &team.homes[1]];
    // At work now: from an hour ago to two hours from now, every day.
    ana.ok(&[
        "profile",
        "set",
        "--hours",
        &hours_from_now(-1, 2),
        "--days",
        "mon-sun",
    ]);
    let out = team.world.file("told.jsonl");
    let log = team.world.file("daemon.log");
    let mut running = daemon(ana, &out, &log);
    let t = bo.create(&[
        "thread",
        "new",
        "Release date?",
        "-m",
        "Friday or Monday?",
        "--ask",
        "Ana",
    ]);
    bo.ok(&["sync"]);
    let told = lines_when(&out, Duration::from_secs(30), |l| !l.is_empty());
    assert_eq!(told.len(), 1, "{told:?}\n{}", read_log(&log));
    let item: serde_json::Value = serde_json::from_str(&told[0]).unwrap();
    assert_eq!(item["id"], t.as_str());
    assert_eq!(item["title"], "Release date?");
    assert_eq!(item["need"]["kind"], "ask");
    assert_eq!(item["need"]["asked_by"]["name"], "Bo");
    assert_eq!(item["workspace"]["name"], "acme");

    // Off from now on, in a workspace whose norms make `high` interrupt quiet hours and
    // `urgent` wait: a normal and an urgent request are held, a high one comes at once.
    let mut stopped = running.take();
    let _ = stopped.kill();
    let _ = stopped.wait();
    ana.ok(&[
        "profile",
        "set",
        "--hours",
        &hours_from_now(3, 5),
        "--days",
        "mon-sun",
    ]);
    ana.ok(&["workspace", "norm", "high", "--interrupts"]);
    ana.ok(&["workspace", "norm", "urgent", "--no-interrupts"]);
    let norms = ana.json(&["workspace", "norms"]);
    let interrupting: Vec<&str> = norms["levels"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["interrupts"] == true)
        .map(|l| l["name"].as_str().unwrap())
        .collect();
    assert_eq!(interrupting, ["high"]);
    running = daemon(ana, &out, &log);
    let request = |title: &str, urgency: &str| {
        bo.create(&[
            "thread",
            "new",
            title,
            "-m",
            "Can you look?",
            "--ask",
            "Ana",
            "--urgency",
            urgency,
        ])
    };
    let normal = request("Lunch?", "normal");
    let urgent = request("The wiki is slow", "urgent");
    let high = request("The relay is down", "high");
    bo.ok(&["sync"]);
    let told = lines_when(&out, Duration::from_secs(30), |l| l.len() >= 2);
    std::thread::sleep(Duration::from_secs(3));
    let told_now = lines_when(&out, Duration::ZERO, |_| true);
    assert_eq!(told, told_now, "nothing more after the high one");
    assert_eq!(told.len(), 2, "{told:?}\n{}", read_log(&log));
    let second: serde_json::Value = serde_json::from_str(&told[1]).unwrap();
    assert_eq!(second["id"], high.as_str());
    assert!(
        !told
            .iter()
            .any(|l| l.contains(&normal) || l.contains(&urgent)),
        "{told:?}"
    );
    // Restarted, the daemon does not tell the same things again.
    drop(running);
    let _running = daemon(ana, &out, &log);
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(lines_when(&out, Duration::ZERO, |_| true).len(), 2);
    assert!(ana.path().join("notified.json").exists());
}

#[test]
fn notify_without_a_notification_service_says_what_to_do() {
    let team = Team::new(&[("Ana", "UTC")]);
    let ana = &team.homes[0];
    let output = meridian(ana, &["daemon", "--notify"])
        .env("PATH", "/nonexistent")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(said.contains("notify-send"), "{said}");
    assert!(said.contains("--on-inbox"), "{said}");
}
