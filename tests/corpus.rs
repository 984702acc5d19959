//! Every case of the hostile corpus (`tests/corpus/`, written by
//! `cargo run --example hostile_corpus -- tests/corpus`) through its real entry point.
//!
//! - `relay_frames_and_configs`: frames sent to a real `meridian-relay` process over
//!   loopback, one connection each, while a legitimate member stays connected and keeps
//!   pushing; then relay config files given to fresh relay processes.
//! - `node_frames`: a hostile relay in this process answers `meridian sync` with each case.
//! - `envelopes`: each envelope through the node's sync ingest (`sync::apply`), in process.
//! - `merge_files`: bundles and saved automerge documents given to `meridian merge`.
//! - `cli_args`: absurd command lines; `home_files`: damaged key and database files.
//!
//! Every case must end in a clear error (the manifest's `expect`; see the generator for the
//! conventions), with no panic, abort or stack overflow (subprocesses: a crash is a signal or
//! a panic message), within the bounds below, and nothing already stored may change (full
//! exports compared before and after; the relay's whole log read back).
//!
//! A separate test binary, so the peak memory of this process (`VmHWM`) is the corpus's own.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use meridian::fuzz::{self, figure, unclear};

/// Bound on one case's wall time (debug build, 2 cores shared).
const CASE_LIMIT: Duration = Duration::from_secs(20);

/// Bound on the peak resident memory of any process running a case.
const RSS_LIMIT_KB: u64 = 512 * 1024;

struct Case {
    file: String,
    entry: String,
    category: String,
    expect: String,
    path: PathBuf,
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/corpus")
}

fn cases(entry: &str) -> Vec<Case> {
    let manifest = std::fs::read_to_string(root().join("MANIFEST.tsv")).expect("the manifest");
    let cases: Vec<Case> = manifest
        .lines()
        .skip(1)
        .map(|line| {
            let f: Vec<&str> = line.split('\t').collect();
            assert_eq!(f.len(), 5, "a manifest line has five fields: {line}");
            Case {
                file: f[0].into(),
                entry: f[1].into(),
                category: f[2].into(),
                expect: f[3].into(),
                path: root().join(f[0]),
            }
        })
        .filter(|c| c.entry == entry)
        .collect();
    assert!(!cases.is_empty(), "no cases for {entry}");
    cases
}

/// The bytes of a case, padded to one byte over the frame limit for `oversized` ones.
fn bytes(case: &Case) -> Vec<u8> {
    let mut bytes = std::fs::read(&case.path).expect("a corpus file");
    if case.category == "oversized" {
        bytes.resize(meridian_relay::protocol::MAX_FRAME_BYTES + 1, 0);
    }
    bytes
}

/// What went wrong, collected so that one run reports every failing case.
#[derive(Default)]
struct Findings {
    list: Vec<String>,
    slowest: Duration,
    peak_kb: u64,
}

impl Findings {
    fn fail(&mut self, case: &str, why: impl std::fmt::Display) {
        self.list.push(format!("{case}: {why}"));
    }

    /// Checks an error message against the case's expectation.
    fn message(&mut self, case: &Case, message: &str) {
        if let Some(why) = unclear(message) {
            return self.fail(&case.file, format!("{why}: {message}"));
        }
        let expect = case
            .expect
            .split_once(':')
            .map_or(case.expect.as_str(), |(_, t)| t);
        if !["*", "any"].contains(&expect) && !message.contains(expect) {
            self.fail(
                &case.file,
                format!("expected `{expect}` in: {}", short(message)),
            );
        }
    }

    fn timed(&mut self, case: &str, elapsed: Duration, peak_kb: u64) {
        self.slowest = self.slowest.max(elapsed);
        self.peak_kb = self.peak_kb.max(peak_kb);
        if elapsed > CASE_LIMIT {
            self.fail(case, format!("took {elapsed:?}, over {CASE_LIMIT:?}"));
        }
        if peak_kb > RSS_LIMIT_KB {
            self.fail(
                case,
                format!("peak RSS {peak_kb} kB, over {RSS_LIMIT_KB} kB"),
            );
        }
    }

    fn finish(self, name: &str, count: usize) {
        figure(&format!("corpus.{name}.cases"), count);
        figure(
            &format!("corpus.{name}.max_case_ms"),
            self.slowest.as_millis(),
        );
        figure(&format!("corpus.{name}.max_rss_mb"), self.peak_kb / 1024);
        assert!(
            self.list.is_empty(),
            "{} of {count} {name} cases failed:\n{}",
            self.list.len(),
            self.list.join("\n")
        );
    }
}

fn short(text: &str) -> String {
    meridian::id::prefix(text, 300).to_string()
}

/// Peak resident memory of a process, kB (0 once it is gone).
fn vm_hwm(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// A finished subprocess.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    elapsed: Duration,
    peak_kb: u64,
}

impl Run {
    /// Whether the process crashed rather than failed: a signal, or a panic message.
    fn crashed(&self) -> Option<String> {
        if self.code.is_none() {
            return Some(format!("killed by a signal: {}", short(&self.stderr)));
        }
        if self.stderr.contains("panicked") || self.stderr.contains("overflowed its stack") {
            return Some(format!("panicked: {}", short(&self.stderr)));
        }
        None
    }
}

/// Runs a command to its end, sampling its peak memory every millisecond, killing it after
/// twice the case limit.
fn run(mut command: Command) -> Run {
    let started = Instant::now();
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the command starts");
    let out = child.stdout.take().expect("piped");
    let err = child.stderr.take().expect("piped");
    let reader = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            String::from_utf8_lossy(&bytes).into_owned()
        })
    };
    let stdout = reader(Box::new(out));
    let stderr = reader(Box::new(err));
    let mut peak = 0;
    let status = loop {
        peak = peak.max(vm_hwm(child.id()));
        if let Some(status) = child.try_wait().expect("waiting works") {
            break status;
        }
        if started.elapsed() > CASE_LIMIT * 2 {
            let _ = child.kill();
            break child.wait().expect("waiting works");
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    Run {
        code: status.code(),
        stdout: stdout.join().expect("reader"),
        stderr: stderr.join().expect("reader"),
        elapsed: started.elapsed(),
        peak_kb: peak,
    }
}

fn meridian(home: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_meridian"));
    command
        .env("MERIDIAN_HOME", home)
        .env_remove("EDITOR")
        .env_remove("VISUAL");
    command
}

#[track_caller]
fn ok(home: &Path, args: &[&str]) -> String {
    let mut command = meridian(home);
    command.args(args);
    let run = run(command);
    assert_eq!(run.code, Some(0), "meridian {args:?}: {}", run.stderr);
    run.stdout
}

/// Bo's home: joined the corpus's world and merged its base.
fn bo(dir: &Path) -> PathBuf {
    let home = dir.join("bo");
    ok(&home, &["init", "--name", "Bo", "--tz", "UTC"]);
    let code = std::fs::read_to_string(root().join("fixture/invite.txt")).expect("invite");
    ok(&home, &["join", code.trim()]);
    let base = root().join("fixture/base.bundle");
    ok(&home, &["merge", base.to_str().expect("a UTF-8 path")]);
    home
}

/// Everything the node has, as the bytes of a full bundle.
fn snapshot(home: &Path) -> Vec<u8> {
    let path = home.with_extension("snapshot");
    ok(
        home,
        &[
            "export",
            "--all",
            "--format",
            "bundle",
            "-o",
            path.to_str().expect("a UTF-8 path"),
        ],
    );
    let bytes = std::fs::read(&path).expect("the snapshot");
    std::fs::remove_file(&path).expect("the snapshot");
    bytes
}

/// Runs a `meridian` case and checks it failed clearly (or succeeded, for `ok`).
fn cli_case(findings: &mut Findings, case: &Case, command: Command) -> Run {
    let run = run(command);
    findings.timed(&case.file, run.elapsed, run.peak_kb);
    if let Some(crash) = run.crashed() {
        findings.fail(&case.file, crash);
    } else if case.expect == "ok" || case.expect == "any" {
        if run.code != Some(0) && case.expect == "any" {
            findings.message(case, &run.stderr);
        } else if run.code != Some(0) {
            findings.fail(&case.file, format!("failed: {}", short(&run.stderr)));
        }
    } else if run.code == Some(0) {
        findings.fail(&case.file, "succeeded, but should have been refused");
    } else if !run.stderr.lines().any(|line| line.starts_with("error: ")) {
        findings.fail(
            &case.file,
            format!("stderr has no `error: ` line: {}", short(&run.stderr)),
        );
    } else {
        findings.message(case, &run.stderr);
    }
    run
}

#[test]
fn merge_files() {
    let tmp = tempfile::tempdir().expect("a temporary directory");
    let home = bo(tmp.path());
    let before = snapshot(&home);
    let mut findings = Findings::default();
    let mut count = 0;
    for entry in ["bundles", "saved-docs"] {
        for case in cases(entry) {
            count += 1;
            let mut command = meridian(&home);
            command.arg("merge").arg(&case.path);
            cli_case(&mut findings, &case, command);
        }
    }
    if snapshot(&home) != before {
        findings.fail("merge", "the store changed");
    }
    findings.finish("merge", count);
}

#[test]
fn cli_args() {
    use std::os::unix::ffi::OsStrExt;
    let tmp = tempfile::tempdir().expect("a temporary directory");
    let home = bo(tmp.path());
    let before = snapshot(&home);
    let mut findings = Findings::default();
    let all = cases("cli-args");
    for (i, case) in all.iter().enumerate() {
        let bytes = bytes(case);
        let args: Vec<&std::ffi::OsStr> = bytes
            .split(|b| *b == 0)
            .map(std::ffi::OsStr::from_bytes)
            .collect();
        // `init` makes a new home: each gets its own, which must stay empty.
        let case_home = if args.first().is_some_and(|a| *a == "init") {
            tmp.path().join(format!("init-{i}"))
        } else {
            home.clone()
        };
        let mut command = meridian(&case_home);
        command.args(&args);
        cli_case(&mut findings, case, command);
        if case_home != home && case_home.join("device.key").exists() {
            findings.fail(&case.file, "a refused init left an identity behind");
        }
    }
    if snapshot(&home) != before {
        findings.fail("cli-args", "the store changed");
    }
    findings.finish("cli", all.len());
}

#[test]
fn home_files() {
    let tmp = tempfile::tempdir().expect("a temporary directory");
    let template = bo(tmp.path());
    let mut findings = Findings::default();
    let all = cases("home");
    for (i, case) in all.iter().enumerate() {
        let home = tmp.path().join(format!("case-{i}"));
        std::fs::create_dir_all(&home).expect("a home");
        for file in ["device.key", "meridian.redb"] {
            std::fs::copy(template.join(file), home.join(file)).expect("a copy");
        }
        let bytes = bytes(case);
        if case.file.ends_with(".key") {
            std::fs::write(home.join("device.key"), &bytes).expect("a key file");
        } else {
            damage(
                &home.join("meridian.redb"),
                &String::from_utf8_lossy(&bytes),
            );
        }
        for args in [["whoami"].as_slice(), &["proposal", "list"]] {
            let mut command = meridian(&home);
            command.args(args);
            let run = run(command);
            findings.timed(&case.file, run.elapsed, run.peak_kb);
            if let Some(crash) = run.crashed() {
                findings.fail(&case.file, crash);
            } else if run.code != Some(0) {
                findings.message(case, run.stderr.trim_start_matches("error: "));
            } else if case.file.ends_with(".key") {
                findings.fail(&case.file, "a damaged key file was accepted");
            }
        }
    }
    findings.finish("home", all.len());
}

/// Applies a `home/redb/` recipe to a database file.
fn damage(path: &Path, recipe: &str) {
    let mut bytes = std::fs::read(path).expect("the database");
    let (what, n) = recipe
        .trim()
        .split_once(' ')
        .expect("a recipe has two words");
    let n: usize = n.parse().expect("a number");
    match what {
        "truncate" => bytes.truncate(n),
        "zero" => {
            let end = n.min(bytes.len());
            bytes[..end].fill(0);
        }
        "flip" => {
            if let Some(byte) = bytes.get_mut(n) {
                *byte ^= 0xff;
            }
        }
        "garbage" => bytes = fuzz::Rng::new(n as u64).bytes(n),
        other => panic!("unknown recipe {other}"),
    }
    std::fs::write(path, bytes).expect("the database");
}

#[test]
fn envelopes() {
    let tmp = tempfile::tempdir().expect("a temporary directory");
    let fixture = fuzz::Fixture::new(&tmp.path().join("bo")).expect("the fixture");
    let node = &fixture.node;
    let world = &fixture.world;
    let stored = |doc| node.records(doc).expect("records").len();
    let before = (stored(world.workspace), stored(world.proposal));
    let before_bundle =
        meridian::bundle::export(node, world.workspace, &[world.workspace, world.proposal])
            .expect("export");
    let mut findings = Findings::default();
    let all = cases("envelopes");
    for (i, case) in all.iter().enumerate() {
        let started = Instant::now();
        let relay = format!("ws://corpus.invalid/{i}");
        let result =
            meridian::sync::apply(node, world.workspace, &relay, vec![(1, bytes(case))], 1);
        findings.timed(&case.file, started.elapsed(), 0);
        let report = match result {
            Ok(report) => report,
            Err(e) => {
                findings.fail(&case.file, format!("sync::apply failed: {e:#}"));
                continue;
            }
        };
        let reasons: Vec<&str> = report.rejected.iter().map(|r| r.reason.as_str()).collect();
        match case
            .expect
            .split_once(':')
            .map_or((case.expect.as_str(), ""), |(k, t)| (k, t))
        {
            ("rejected", _) if reasons.len() == 1 => findings.message(case, reasons[0]),
            ("held", _) if report.held == 1 && reasons.is_empty() => {}
            ("known", _) if report.known == 1 && reasons.is_empty() && report.applied == 0 => {}
            _ => findings.fail(
                &case.file,
                format!(
                    "expected {}, got applied {} known {} held {} rejected {reasons:?}",
                    case.expect, report.applied, report.known, report.held
                ),
            ),
        }
        if report.applied > 0 {
            findings.fail(&case.file, "a hostile envelope was applied");
        }
    }
    let after = (stored(world.workspace), stored(world.proposal));
    let after_bundle =
        meridian::bundle::export(node, world.workspace, &[world.workspace, world.proposal])
            .expect("export");
    if before != after || before_bundle != after_bundle {
        findings.fail("envelopes", "the stored documents changed");
    }
    findings.peak_kb = vm_hwm(std::process::id());
    findings.finish("envelopes", all.len());
}
