//! Helpers for tests over a real relay: the `meridian-relay` binary on loopback, a team that
//! syncs through it, sync rounds and polling with a deadline.
//!
//! A relay's stderr goes to `<data dir>.log` next to its data directory; it is printed when
//! a test fails, or always with `MERIDIAN_TEST_RELAY_LOG=1`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;

use crate::support::{Home, World};

/// How long a relay may take to print its address.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// How long a relay may take to stop after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);

/// The newest modification time of the files under `dir` (recursively).
fn newest_source(dir: &Path) -> Option<SystemTime> {
    let mut newest = None;
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        let time = if path.is_dir() {
            newest_source(&path)
        } else {
            entry.metadata().ok().and_then(|m| m.modified().ok())
        };
        newest = newest.max(time);
    }
    newest
}

/// The `meridian-relay` binary, next to the `meridian` binary cargo built for these tests.
///
/// It belongs to another package, so cargo does not build it for this test target: when it
/// is missing (or older than the relay's sources or `Cargo.lock`) it is built once, with the
/// same profile.
pub fn relay_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        let meridian = Path::new(env!("CARGO_BIN_EXE_meridian"));
        let binary =
            meridian.with_file_name(format!("meridian-relay{}", std::env::consts::EXE_SUFFIX));
        let built = std::fs::metadata(&binary).and_then(|m| m.modified()).ok();
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let lock = std::fs::metadata(root.join("Cargo.lock"))
            .and_then(|m| m.modified())
            .ok();
        let stale = match (built, newest_source(&root.join("relay")).max(lock)) {
            (None, _) => true,
            (Some(built), Some(source)) => source > built,
            (Some(_), None) => false,
        };
        if stale {
            let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
            let mut command = Command::new(cargo);
            command
                .args(["build", "-p", "meridian-relay", "--bin", "meridian-relay"])
                .current_dir(env!("CARGO_MANIFEST_DIR"));
            if meridian.components().any(|c| c.as_os_str() == "release") {
                command.arg("--release");
            }
            let output = command.output().expect("cargo runs");
            assert!(
                output.status.success(),
                "building meridian-relay failed:\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        assert!(
            binary.exists(),
            "{} is missing after building it",
            binary.display()
        );
        binary
    })
}

/// Sends a signal to a process with the `kill` command.
pub fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .args([format!("-{name}"), pid.to_string()])
        .status()
        .expect("the kill command runs");
    assert!(status.success(), "kill -{name} {pid} failed");
}

/// Waits for a child to exit, up to `limit`.
pub fn wait_for(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("the child can be waited for") {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A `meridian-relay serve` process on loopback.
pub struct Relay {
    data: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    /// `127.0.0.1:PORT`.
    addr: String,
    /// More arguments of `serve`, kept for restarts.
    args: Vec<String>,
}

impl Relay {
    /// Starts a relay on a free port with its database in `data`.
    pub fn start(data: &Path) -> Relay {
        Relay::start_with(data, &[])
    }

    /// [`Relay::start`] with more arguments of `serve` (`--tls-cert FILE`, say).
    pub fn start_with(data: &Path, args: &[&str]) -> Relay {
        let name = data.file_name().unwrap().to_string_lossy().into_owned();
        let log = data
            .parent()
            .expect("the data directory has a parent")
            .join(format!("{name}.log"));
        let mut relay = Relay {
            data: data.to_path_buf(),
            log,
            child: None,
            addr: String::new(),
            args: args.iter().map(|a| a.to_string()).collect(),
        };
        match relay.spawn("127.0.0.1:0") {
            Ok(()) => relay,
            Err(why) => panic!("the relay did not start: {why}\n{}", relay.stderr()),
        }
    }

    /// Spawns the process and reads the address it prints; on failure says why.
    fn spawn(&mut self, listen: &str) -> Result<(), String> {
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("the relay log file opens");
        let mut child = Command::new(relay_binary())
            .args(["serve", "--listen", listen, "--data"])
            .arg(&self.data)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("the relay binary runs");
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let _ = tx.send(lines.next().and_then(Result::ok));
            // Keep draining, so the relay never writes to a closed pipe.
            for _ in lines {}
        });
        let line = match rx.recv_timeout(START_TIMEOUT) {
            Ok(Some(line)) => line,
            Ok(None) | Err(mpsc::RecvTimeoutError::Disconnected) => {
                let status = wait_for(&mut child, Duration::from_secs(5));
                if status.is_none() {
                    let _ = child.kill();
                    let _ = child.wait();
                }
                return Err(format!(
                    "it exited ({status:?}) without printing its address"
                ));
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("no address within {START_TIMEOUT:?}"));
            }
        };
        let Some(addr) = line
            .strip_prefix("listening on ws://")
            .or_else(|| line.strip_prefix("listening on wss://"))
            .map(|rest| rest.trim().trim_end_matches("/v1"))
        else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("unexpected first line from the relay: {line}");
        };
        self.addr = addr.to_string();
        self.child = Some(child);
        Ok(())
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The URL nodes are given: `ws://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    /// The data directory.
    pub fn data(&self) -> &Path {
        &self.data
    }

    /// The relay's log (stderr of every run), for failure messages.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The log file's path.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Stops it gracefully with SIGTERM and asserts it exits cleanly.
    pub fn stop(&mut self) {
        let mut child = self.child.take().expect("the relay is running");
        signal(child.id(), "TERM");
        let status = wait_for(&mut child, STOP_TIMEOUT);
        if status.is_none() {
            let _ = child.kill();
            let _ = child.wait();
        }
        assert!(
            status.is_some_and(|s| s.success()),
            "the relay did not stop cleanly on SIGTERM ({status:?}):\n{}",
            self.stderr()
        );
    }

    /// Kills it with SIGKILL: no chance to finish anything.
    pub fn kill(&mut self) {
        let mut child = self.child.take().expect("the relay is running");
        child.kill().expect("the relay can be killed");
        child.wait().expect("the killed relay is reaped");
    }

    /// Starts it again on the same data directory and, so the nodes' URL stays valid, the
    /// same port (retrying while the port is still held).
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "stop or kill the relay first");
        let listen = self.addr.clone();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.spawn(&listen) {
                Ok(()) => break,
                Err(why) if Instant::now() < deadline => {
                    eprintln!("relay restart on {listen}: {why}; retrying");
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(why) => panic!(
                    "the relay did not restart on {listen}: {why}\n{}",
                    self.stderr()
                ),
            }
        }
        assert_eq!(self.addr, listen, "the relay restarted on its old port");
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() || std::env::var_os("MERIDIAN_TEST_RELAY_LOG").is_some() {
            eprintln!(
                "--- relay log {} ---\n{}",
                self.log.display(),
                self.stderr()
            );
        }
    }
}

/// A `meridian` command for a home, for processes the test spawns and signals itself.
pub fn meridian(home: &Home, args: &[&str]) -> Command {
    let mut command = Command::new(crate::support::meridian_bin());
    command
        .args(args)
        .env("MERIDIAN_HOME", home.path())
        .env_remove("EDITOR")
        .env_remove("VISUAL")
        .stdin(Stdio::null());
    command
}

/// A relay and a team syncing through it. Fields drop in order: the relay stops before
/// the homes' directory goes.
pub struct Team {
    pub relay: Relay,
    pub homes: Vec<Home>,
    pub world: World,
}

impl Team {
    /// The first person creates `acme` with the relay; everyone else joins with an invite
    /// (joining registers with the relay and pulls), then everyone syncs until nothing moves.
    pub fn new(people: &[(&str, &str)]) -> Team {
        let world = World::new();
        let relay = Relay::start(&world.file("relay"));
        let homes: Vec<Home> = people.iter().map(|(n, tz)| world.person(n, tz)).collect();
        homes[0].ok(&["workspace", "create", "acme", "--relay", &relay.url()]);
        for home in &homes[1..] {
            let code = homes[0].ok(&["invite"]);
            home.ok(&["join", code.trim()]);
        }
        let team = Team {
            relay,
            homes,
            world,
        };
        team.sync_until_quiet(&team.homes.iter().collect::<Vec<_>>());
        for home in &team.homes {
            let members = home.json(&["member", "list"]);
            let verified = members
                .as_array()
                .unwrap()
                .iter()
                .filter(|m| m["verified"] == true)
                .count();
            assert_eq!(
                verified,
                people.len(),
                "{} sees every member, verified: {members}",
                home.name()
            );
        }
        team
    }

    /// Syncs the given homes in order, round after round, until a round moves nothing and
    /// every outbox is empty.
    pub fn sync_until_quiet(&self, order: &[&Home]) {
        for _ in 0..6 {
            let mut moved = 0;
            for home in order {
                for report in sync(home).as_array().unwrap() {
                    moved += report["pushed"].as_u64().unwrap()
                        + report["applied"].as_u64().unwrap()
                        + report["held"].as_u64().unwrap();
                }
            }
            if moved == 0 && order.iter().all(|home| outbox(home) == 0) {
                return;
            }
        }
        panic!(
            "sync did not settle in 6 rounds; relay log:\n{}",
            self.relay.stderr()
        );
    }
}

/// One `meridian sync --json` that must succeed with every relay; returns its reports.
#[track_caller]
pub fn sync(home: &Home) -> Value {
    let reports = home.json(&["sync"])["relays"].clone();
    for report in reports.as_array().expect("sync lists its relays") {
        assert_eq!(
            report["ok"],
            true,
            "{} could not sync: {report}",
            home.name()
        );
    }
    reports
}

/// How many envelopes wait in a home's outbox.
pub fn outbox(home: &Home) -> u64 {
    home.json(&["workspace", "relay", "list"])["outbox"]
        .as_u64()
        .unwrap()
}

/// Syncs until the home's outbox is empty; returns the reports of every round, as one list.
///
/// One `meridian sync` should do, but a round can end before it read the outbox (a product
/// bug, see `every_sync_pushes_the_outbox`): the retry keeps the other tests about what
/// they test.
#[track_caller]
pub fn push(home: &Home) -> Value {
    let mut all = Vec::new();
    for attempt in 1..=5 {
        all.extend(sync(home).as_array().unwrap().iter().cloned());
        if outbox(home) == 0 {
            return Value::Array(all);
        }
        eprintln!(
            "{}: a sync left the outbox unpushed (attempt {attempt}): syncing again",
            home.name()
        );
    }
    panic!("{}: five syncs did not empty the outbox", home.name());
}

/// The sum of one field over sync reports.
pub fn total(reports: &Value, field: &str) -> u64 {
    reports
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r[field].as_u64().unwrap())
        .sum()
}

/// Everything `meridian sync --json` reported rejected.
pub fn rejected(reports: &Value) -> Vec<Value> {
    reports
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["rejected"].as_array().cloned().unwrap_or_default())
        .collect()
}

/// Calls `check` until it returns `Some`, or panics with `what` after `limit`.
#[track_caller]
pub fn poll<T>(limit: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "gave up after {limit:?}: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The comment bodies of a document.
pub fn comment_bodies(home: &Home, id: &str) -> Vec<String> {
    home.json(&["show", id])["comments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["body"].as_str().unwrap().to_string())
        .collect()
}

/// The titles of every proposal and thread a home has.
pub fn titles(home: &Home) -> Vec<String> {
    let mut titles = Vec::new();
    for kind in ["proposal", "thread"] {
        for doc in home.json(&[kind, "list"]).as_array().unwrap() {
            titles.push(doc["title"].as_str().unwrap().to_string());
        }
    }
    titles
}

/// What must be identical on every node: the heads of every document, the changes of `id`
/// and its content, read in one zone.
pub fn state(home: &Home, id: &str) -> (Value, Value) {
    let mut heads = Vec::new();
    for kind in ["proposal", "thread"] {
        let list = home.json(&["--tz", "UTC", kind, "list"]);
        let mut docs: Vec<(String, Value)> = list
            .as_array()
            .unwrap()
            .iter()
            .map(|d| (d["id"].as_str().unwrap().to_string(), d["heads"].clone()))
            .collect();
        docs.sort_by(|a, b| a.0.cmp(&b.0));
        heads.extend(docs.into_iter().map(|(id, h)| serde_json::json!([id, h])));
    }
    // Every change of `id` exactly once (nodes store them in arrival order).
    let mut log: Vec<String> = home
        .json(&["log", id])
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["hash"].as_str().unwrap().to_string())
        .collect();
    log.sort();
    heads.push(serde_json::json!(log));
    let mut shown = home.json(&["--tz", "UTC", "show", id]);
    // Per reader: what they have not read yet, and deadlines counted from now.
    shown.as_object_mut().unwrap().remove("changed_since_read");
    shown.as_object_mut().unwrap().remove("asks");
    (Value::Array(heads), shown)
}

/// Writes a file in the world's directory and returns its path.
pub fn write_file(world: &World, name: &str, text: &str) -> String {
    let path = world.file(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

/// A string no test writes twice.
pub fn unique(label: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{label}-{:x}-{:x}", nanos, std::process::id())
}

/// A `meridian sync --json` that must fail with every relay; returns each relay's error.
#[track_caller]
pub fn sync_fails(home: &Home) -> Vec<String> {
    let output = home.run(&["--json", "sync"]);
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        !output.status.success(),
        "sync should have failed for {}:\n{stdout}",
        home.name()
    );
    assert!(
        !stderr.contains("panicked"),
        "a panic is not an error message: {stderr}"
    );
    let reports: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("sync printed invalid JSON ({e}):\n{stdout}\n{stderr}"));
    reports["relays"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            assert_eq!(r["ok"], false, "{}: {r}", home.name());
            r["error"].as_str().unwrap().to_string()
        })
        .collect()
}

/// Appends `name<TAB>value` to the file named by `MERIDIAN_FIGURES`, when it is set, and
/// prints it either way: the numbers a run measured, for reports.
pub fn figure(name: &str, value: impl std::fmt::Display) {
    eprintln!("figure {name} = {value}");
    let Some(path) = std::env::var_os("MERIDIAN_FIGURES") else {
        return;
    };
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("cannot open the figures file {path:?}: {e}"));
    std::io::Write::write_all(&mut file, format!("{name}\t{value}\n").as_bytes())
        .expect("the figures file is writable");
}

/// A child process killed (SIGKILL) and reaped when dropped, so a failing test leaves no
/// process behind.
pub struct Guard(pub Option<Child>);

impl Guard {
    /// The child.
    pub fn child(&mut self) -> &mut Child {
        self.0.as_mut().expect("the process is still held")
    }

    /// Takes the child out, to wait for it.
    pub fn take(&mut self) -> Child {
        self.0.take().expect("the process is still held")
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `meridian daemon` for `home`, with `env` set and its log in `log`; stopped when the
/// guard drops. Read the log with [`read_log`].
pub fn start_daemon(home: &Home, log: &Path, env: &[(&str, &str)]) -> Guard {
    let mut command = meridian(home, &["daemon"]);
    command
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap());
    Guard(Some(command.spawn().unwrap()))
}

/// What a log file holds so far (nothing, before it exists).
pub fn read_log(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}
