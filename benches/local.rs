//! Local speed: a node with 10,000 documents, timed as a person meets it — a fresh
//! `meridian` process per command, from start to exit.
//!
//! Run with `cargo bench --bench local` (add `-- --docs N --runs N` to change the size).
//! Prints a Markdown table of medians, the ratio to a process that only opens the home
//! (`whoami`), and whether each interactive command meets its target.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use meridian::discussion;
use meridian::id::Id;
use meridian::identity::Profile;
use meridian::node::{Node, commit, now_ms};
use meridian::proposal::{self, NewProposal};
use meridian::thread::{self, NewThread};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str, default: usize| -> usize {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let docs = arg("--docs", 10_000);
    let runs = arg("--runs", 15);
    let tmp = tempfile::tempdir()?;
    let home = tmp.path().join("home");

    let started = Instant::now();
    let (proposal_id, thread_id) = populate(&home, docs)?;
    let populate_time = started.elapsed();

    let cases: Vec<(&str, Vec<String>, Option<u128>)> = vec![
        (
            "whoami (process + open, baseline)",
            vec!["whoami".into()],
            None,
        ),
        ("inbox", vec!["inbox".into()], Some(100)),
        (
            "inbox --json",
            vec!["--json".into(), "inbox".into()],
            Some(100),
        ),
        (
            "proposal list",
            vec!["proposal".into(), "list".into()],
            Some(100),
        ),
        (
            "thread list",
            vec!["thread".into(), "list".into()],
            Some(100),
        ),
        (
            "show (one unloaded proposal)",
            vec!["show".into(), proposal_id.hex()],
            None,
        ),
        (
            "log -n 20",
            vec!["log".into(), proposal_id.hex(), "-n".into(), "20".into()],
            None,
        ),
        (
            "reply (first edit of an unloaded thread, durable)",
            vec!["reply".into(), thread_id.hex(), "-m".into(), "ok".into()],
            None,
        ),
    ];
    println!("## Local reads and writes, {docs} documents\n");
    println!(
        "Machine: {} cores, {}. Populated in {:.1} s. Median of {runs} fresh processes each.\n",
        cores(),
        cpu(),
        populate_time.as_secs_f64()
    );
    println!("| command | median ms | p90 ms | × baseline | target |");
    println!("|---|---:|---:|---:|---|");
    let mut baseline = None;
    let mut failed = false;
    for (name, args, target) in cases {
        let mut times: Vec<Duration> = (0..runs)
            .map(|_| time(&home, &args))
            .collect::<anyhow::Result<_>>()?;
        times.sort();
        let median = times[times.len() / 2];
        let p90 = times[(times.len() * 9 / 10).min(times.len() - 1)];
        let base = *baseline.get_or_insert(median);
        let verdict = match target {
            Some(ms) if median.as_millis() < ms => format!("< {ms} ms: met"),
            Some(ms) => {
                failed = true;
                format!("< {ms} ms: MISSED")
            }
            None => String::new(),
        };
        println!(
            "| {name} | {:.1} | {:.1} | {:.2} | {verdict} |",
            ms(median),
            ms(p90),
            median.as_secs_f64() / base.as_secs_f64()
        );
    }
    if failed {
        anyhow::bail!("an interactive command missed its target");
    }
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn time(home: &Path, args: &[String]) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let output = Command::new(env!("CARGO_BIN_EXE_meridian"))
        .args(args)
        .env("MERIDIAN_HOME", home)
        .output()?;
    let elapsed = started.elapsed();
    anyhow::ensure!(
        output.status.success(),
        "meridian {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(elapsed)
}

/// Creates a home with `docs` documents: proposals with sections and a few replies,
/// threads, a tenth of them asking for my response.
fn populate(home: &Path, docs: usize) -> anyhow::Result<(Id, Id)> {
    let profile = Profile {
        name: "Ana".into(),
        tz: "Europe/Berlin".into(),
        hours: "09:00-17:00".into(),
        days: "mon-fri".into(),
    };
    let node = Node::init(home, &profile)?;
    let workspace = node.create_workspace("bench", vec![])?;
    let me = node.member_id();
    let mut last = (Id::random(), Id::random());
    for chunk in 0..docs.div_ceil(1000) {
        node.batch(|batch| {
            for i in chunk * 1000..((chunk + 1) * 1000).min(docs) {
                let id = Id::random();
                let asks = if i % 10 == 0 {
                    vec![me.clone()]
                } else {
                    vec![]
                };
                if i % 2 == 0 {
                    let new = NewProposal {
                        id,
                        workspace,
                        title: format!("Proposal {i}: a change to subsystem {}", i % 37),
                        template: "adr".into(),
                        sections: vec![
                            ("Context".into(), "Some context paragraph. ".repeat(8)),
                            ("Decision".into(), "We will do the thing.".into()),
                            ("Consequences".into(), "Things change.".into()),
                        ],
                        deciders: vec![me.clone()],
                        asks,
                        urgency: "normal".into(),
                        author: me.clone(),
                        at: now_ms(),
                    };
                    batch.edit(workspace, id, |doc| {
                        let mut tx = doc.transaction();
                        proposal::create(&mut tx, &new)?;
                        commit(tx, "new proposal");
                        let mut tx = doc.transaction();
                        discussion::put_comment(
                            &mut tx,
                            &Id::random().hex(),
                            None,
                            &me,
                            now_ms(),
                            "Looks fine",
                        )?;
                        commit(tx, "reply");
                        Ok(())
                    })?;
                    last.0 = id;
                } else {
                    let new = NewThread {
                        id,
                        workspace,
                        title: format!("Thread {i}"),
                        body: "What do we think?".into(),
                        asks,
                        urgency: "high".into(),
                        author: me.clone(),
                        at: now_ms(),
                    };
                    batch.edit(workspace, id, |doc| {
                        let mut tx = doc.transaction();
                        thread::create(&mut tx, &new)?;
                        commit(tx, "new thread");
                        Ok(())
                    })?;
                    last.1 = id;
                }
            }
            Ok(())
        })?;
    }
    Ok(last)
}

fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

fn cpu() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}
