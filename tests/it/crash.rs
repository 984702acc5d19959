//! Seeded SIGKILL trials over real processes: `meridian` write commands, `meridian sync`,
//! a running `meridian daemon` and the `meridian-relay` process killed at random moments,
//! on one team reused across trials (three homes and a relay on loopback, real redb files).
//!
//! After every kill: the databases open (the next command succeeds, the relay restarts and
//! serves), every edit whose write command exited 0 is in its node, and every edit that a
//! `meridian sync` exiting 0 (or the daemon) had the relay acknowledge reaches another node
//! through the restarted relay. At the end every node holds every acknowledged edit and all
//! of them are identical.
//!
//! `MERIDIAN_CRASH_TRIALS` sets the number of trials (200 by default), `MERIDIAN_CRASH_SEED`
//! the seed of the first one (trial `i` uses seed + `i`; by default the clock picks it). A
//! seed fixes what a trial does and when it kills, relative to how long the processes took
//! when the run measured them: timing on the machine decides the rest. A failing trial
//! prints the command that replays it.

use std::collections::{BTreeMap, BTreeSet};
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant, SystemTime};

use meridian::id::Id;
use meridian::node::Node;
use meridian::store::WorkspaceRecord;
use meridian_relay::Envelope;
use meridian_relay::store::RelayStore;

use crate::relays::{
    Guard, Team, comment_bodies, figure, meridian, outbox, poll, signal, state, sync, wait_for,
};
use crate::support::Home;

const PEOPLE: [(&str, &str); 3] = [
    ("Ana", "Asia/Tokyo"),
    ("Bo", "Europe/Berlin"),
    ("Cy", "America/Lima"),
];

/// A `meridian sync` whose relay died must end within this.
const SYNC_LIMIT: Duration = Duration::from_secs(30);

/// splitmix64: small, seedable, good enough to pick targets and moments.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        meridian_relay::determinism::splitmix(&mut self.0)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// A moment in [0, 1.5 × span): about a third of the processes finish before it.
    fn moment(&mut self, span: Duration) -> Duration {
        span.mul_f64(1.5 * (self.next() >> 11) as f64 / (1u64 << 53) as f64)
    }
}

/// What a trial kills.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Target {
    Write,
    Sync,
    Daemon,
    Relay,
}

impl Target {
    fn name(self) -> &'static str {
        match self {
            Target::Write => "write",
            Target::Sync => "sync",
            Target::Daemon => "daemon",
            Target::Relay => "relay",
        }
    }
}

/// How long each killed thing takes to finish its work here, measured before the trials.
#[derive(Debug, Default)]
struct Spans {
    write: Duration,
    sync: Duration,
    daemon: Duration,
    relay: Duration,
}

/// The team, the thread every edit replies to, and what was acknowledged.
struct Scenario {
    team: Team,
    thread: String,
    workspace: Id,
    /// Per home, the edits whose write command exited 0.
    written: Vec<Vec<String>>,
    /// Edits the relay acknowledged (the outbox emptied after a sync or by the daemon).
    on_relay: BTreeSet<String>,
    /// The hashes of the changes behind them: what the relay's log must hold.
    on_relay_hashes: BTreeSet<[u8; 32]>,
    /// The workspace as the first home has it, to open envelopes with.
    record: WorkspaceRecord,
    spans: Spans,
    /// Per target: (killed, finished before the kill).
    outcomes: BTreeMap<Target, (u64, u64)>,
    /// How long the relay took to listen again after each kill.
    relay_restarts: Vec<Duration>,
}

fn spawn(home: &Home, args: &[&str]) -> Guard {
    Guard(Some(
        meridian(home, args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("meridian runs"),
    ))
}

/// SIGKILLs a child (unless it already exited) and returns how it ended.
fn kill(mut guard: Guard) -> Output {
    let mut child: Child = guard.take();
    let _ = child.kill();
    child.wait_with_output().expect("the child is reaped")
}

impl Scenario {
    fn new() -> Scenario {
        let team = Team::new(&PEOPLE);
        let thread = team.homes[0].create(&["thread", "new", "Crash drill", "-m", "Go"]);
        team.sync_until_quiet(&team.homes.iter().collect::<Vec<_>>());
        let (workspace, record) = Node::open(team.homes[0].path())
            .unwrap()
            .workspace(None)
            .unwrap();
        let mut scenario = Scenario {
            team,
            thread,
            workspace,
            written: vec![Vec::new(); PEOPLE.len()],
            on_relay: BTreeSet::new(),
            on_relay_hashes: BTreeSet::new(),
            record,
            spans: Spans::default(),
            outcomes: BTreeMap::new(),
            relay_restarts: Vec::new(),
        };
        scenario.measure();
        scenario
    }

    fn home(&self, index: usize) -> &Home {
        &self.team.homes[index]
    }

    /// Writes a reply that must succeed; it is acknowledged.
    fn write(&mut self, index: usize, body: String) {
        self.home(index).ok(&["reply", &self.thread, "-m", &body]);
        self.written[index].push(body);
    }

    /// The relay has everything this home wrote, once its outbox is empty.
    fn pushed(&mut self, index: usize) {
        assert_eq!(
            outbox(self.home(index)),
            0,
            "{}: a sync exited 0 with edits written before it still in the outbox",
            self.home(index).name()
        );
        self.on_relay.extend(self.written[index].iter().cloned());
        let node = Node::open(self.home(index).path()).unwrap();
        let own = node.key().verifying_key().to_bytes();
        for bytes in meridian::sync::all_envelopes(&node, self.workspace).unwrap() {
            let envelope = Envelope::decode(&bytes).unwrap();
            if envelope.author == own {
                self.on_relay_hashes.extend(self.change_hashes(&bytes));
            }
        }
    }

    /// The hashes of the changes an envelope carries. A push coalesces a run of outbox
    /// envelopes into one, so the relay holds this node's changes, not its envelopes.
    fn change_hashes(&self, bytes: &[u8]) -> Vec<[u8; 32]> {
        let mut budget = meridian::ingest::Budget::stored();
        meridian::ingest::open_sealed(bytes, self.workspace, &self.record, &mut budget)
            .unwrap()
            .iter()
            .flat_map(|item| &item.changes)
            .map(|change| change.hash().0)
            .collect()
    }

    /// The killed relay's database opens (repairing if it must), its log is dense from 1,
    /// and it holds every envelope the relay acknowledged.
    fn check_relay_log(&self) {
        let store = RelayStore::open(self.team.relay.data())
            .unwrap_or_else(|e| panic!("the killed relay's database does not open: {e:#}"));
        let entries = store
            .read(&self.workspace.0, 0, usize::MAX, usize::MAX)
            .unwrap();
        let mut logged = BTreeSet::new();
        for (i, (seq, bytes)) in entries.iter().enumerate() {
            assert_eq!(*seq, i as u64 + 1, "the relay's log has a gap");
            logged.extend(self.change_hashes(bytes));
        }
        let lost = self.on_relay_hashes.difference(&logged).count();
        assert_eq!(lost, 0, "the killed relay lost {lost} acknowledged changes");
    }

    /// The home's database opens and holds every edit acknowledged to it.
    fn check_home(&self, index: usize, after: &str) {
        let bodies: BTreeSet<String> = comment_bodies(self.home(index), &self.thread)
            .into_iter()
            .collect();
        for body in &self.written[index] {
            assert!(
                bodies.contains(body),
                "{}: the acknowledged edit `{body}` is gone after {after}",
                self.home(index).name()
            );
        }
    }

    fn count(&mut self, target: Target, output: &Output) {
        let entry = self.outcomes.entry(target).or_default();
        if output.status.success() {
            entry.1 += 1;
        } else {
            entry.0 += 1;
        }
    }

    /// How long each target takes to do its work, so kills can land all over it.
    fn measure(&mut self) {
        let started = Instant::now();
        self.write(0, "timing write".into());
        self.spans.write = started.elapsed();

        self.write(1, "timing sync".into());
        let started = Instant::now();
        sync(self.home(1));
        self.spans.sync = started.elapsed();
        self.pushed(1);

        for index in 0..PEOPLE.len() {
            self.write(index, format!("timing relay {index}"));
        }
        let started = Instant::now();
        let children: Vec<Guard> = (0..PEOPLE.len())
            .map(|index| spawn(self.home(index), &["sync"]))
            .collect();
        for mut child in children {
            assert!(child.take().wait().unwrap().success());
        }
        self.spans.relay = started.elapsed();
        for index in 0..PEOPLE.len() {
            self.pushed(index);
        }

        let started = Instant::now();
        let mut daemon = self.start_daemon(2);
        self.write(2, "timing daemon".into());
        poll(Duration::from_secs(20), "the daemon pushes", || {
            (outbox(self.home(2)) == 0).then_some(())
        });
        self.spans.daemon = started.elapsed();
        self.pushed(2);
        self.stop_daemon(&mut daemon, 2);
        eprintln!("crash: spans {:?}", self.spans);
    }

    fn start_daemon(&self, index: usize) -> Guard {
        let log = self
            .team
            .world
            .file(&format!("daemon-{}.log", self.home(index).name()));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        Guard(Some(
            meridian(self.home(index), &["daemon"])
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("the daemon runs"),
        ))
    }

    fn stop_daemon(&self, daemon: &mut Guard, index: usize) {
        signal(daemon.child().id(), "TERM");
        let status = wait_for(daemon.child(), Duration::from_secs(20));
        let log = self
            .team
            .world
            .file(&format!("daemon-{}.log", self.home(index).name()));
        assert!(
            status.is_some_and(|s| s.success()),
            "the daemon did not stop cleanly ({status:?}):\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        daemon.take().wait().expect("the daemon is reaped");
    }

    /// One trial, all decided by `seed`.
    fn trial(&mut self, seed: u64) {
        let mut rng = Rng(seed);
        let target = match rng.below(20) {
            0..7 => Target::Write,
            7..13 => Target::Sync,
            13..16 => Target::Daemon,
            _ => Target::Relay,
        };
        let index = rng.below(PEOPLE.len() as u64) as usize;
        let label = format!("{seed:x}");
        match target {
            Target::Write => self.kill_write(&mut rng, index, &label),
            Target::Sync => self.kill_sync(&mut rng, index, &label),
            Target::Daemon => self.kill_daemon(&mut rng, index, &label),
            Target::Relay => self.kill_relay(&mut rng, &label),
        }
    }

    /// A write command killed at a random moment of its life.
    fn kill_write(&mut self, rng: &mut Rng, index: usize, label: &str) {
        let body = format!("{label} write");
        let child = spawn(self.home(index), &["reply", &self.thread, "-m", &body]);
        std::thread::sleep(rng.moment(self.spans.write));
        let output = kill(child);
        self.count(Target::Write, &output);
        if output.status.success() {
            self.written[index].push(body);
        }
        self.check_home(index, "a killed write");
    }

    /// A `meridian sync` with something to push, killed at a random moment.
    fn kill_sync(&mut self, rng: &mut Rng, index: usize, label: &str) {
        self.write(index, format!("{label} before a sync"));
        let child = spawn(self.home(index), &["--json", "sync"]);
        std::thread::sleep(rng.moment(self.spans.sync));
        let output = kill(child);
        self.count(Target::Sync, &output);
        if output.status.success() {
            let reports: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
            assert_eq!(reports["relays"][0]["ok"], true, "{reports}");
            self.pushed(index);
        }
        self.check_home(index, "a killed sync");
    }

    /// A running daemon, pushing this home's edits and pulling another's, killed at a
    /// random moment; restarted, it must push what is left.
    fn kill_daemon(&mut self, rng: &mut Rng, index: usize, label: &str) {
        let moment = rng.moment(self.spans.daemon);
        let other = (index + 1 + rng.below(2) as usize) % PEOPLE.len();
        let started = Instant::now();
        let daemon = self.start_daemon(index);
        self.write(other, format!("{label} for the daemon to pull"));
        sync(self.home(other));
        self.pushed(other);
        self.write(index, format!("{label} while the daemon runs"));
        std::thread::sleep(moment.saturating_sub(started.elapsed()));
        let output = kill(daemon);
        self.count(Target::Daemon, &output);
        self.check_home(index, "a killed daemon");

        let mut daemon = self.start_daemon(index);
        poll(
            Duration::from_secs(20),
            "the restarted daemon pushes what was left",
            || (outbox(self.home(index)) == 0).then_some(()),
        );
        self.pushed(index);
        let pulled = format!("{label} for the daemon to pull");
        poll(
            Duration::from_secs(20),
            "the restarted daemon pulls what another member pushed",
            || {
                comment_bodies(self.home(index), &self.thread)
                    .contains(&pulled)
                    .then_some(())
            },
        );
        self.stop_daemon(&mut daemon, index);
    }

    /// The relay killed while every home pushes and pulls; restarted, it holds and serves
    /// everything it acknowledged.
    fn kill_relay(&mut self, rng: &mut Rng, label: &str) {
        for index in 0..PEOPLE.len() {
            if rng.below(3) > 0 {
                self.write(index, format!("{label} before the relay dies"));
            }
        }
        let children: Vec<Guard> = (0..PEOPLE.len())
            .map(|index| spawn(self.home(index), &["--json", "sync"]))
            .collect();
        std::thread::sleep(rng.moment(self.spans.relay));
        self.team.relay.kill();
        let mut interrupted = false;
        for (index, mut child) in children.into_iter().enumerate() {
            let ended = wait_for(child.child(), SYNC_LIMIT);
            assert!(
                ended.is_some(),
                "{}: a sync whose relay died did not end within {SYNC_LIMIT:?}",
                self.home(index).name()
            );
            let output = child.take().wait_with_output().unwrap();
            if output.status.success() {
                self.pushed(index);
            } else {
                interrupted = true;
            }
            self.check_home(index, "the relay died under a sync");
        }
        // A relay kill counts as killed mid-flight when it interrupted a sync, as finished
        // when every sync was done before it.
        let entry = self.outcomes.entry(Target::Relay).or_default();
        if interrupted {
            entry.0 += 1;
        } else {
            entry.1 += 1;
        }
        self.check_relay_log();
        let started = Instant::now();
        self.team.relay.restart();
        self.relay_restarts.push(started.elapsed());

        let reader = rng.below(PEOPLE.len() as u64) as usize;
        sync(self.home(reader));
        let bodies: BTreeSet<String> = comment_bodies(self.home(reader), &self.thread)
            .into_iter()
            .collect();
        for body in &self.on_relay {
            assert!(
                bodies.contains(body),
                "the relay acknowledged `{body}` but {} did not receive it from the restarted relay",
                self.home(reader).name()
            );
        }
    }

    /// Everyone syncs until nothing moves: every node holds every acknowledged edit, and
    /// all are identical.
    fn converge(&self) {
        let homes: Vec<&Home> = self.team.homes.iter().collect();
        self.team.sync_until_quiet(&homes);
        let acknowledged: BTreeSet<&String> = self.written.iter().flatten().collect();
        let reference = state(homes[0], &self.thread);
        for home in &homes {
            let bodies: BTreeSet<String> = comment_bodies(home, &self.thread).into_iter().collect();
            for body in &acknowledged {
                assert!(
                    bodies.contains(*body),
                    "{} never received the acknowledged edit `{body}`",
                    home.name()
                );
            }
            assert_eq!(outbox(home), 0, "{} pushed everything", home.name());
            assert_eq!(
                state(home, &self.thread),
                reference,
                "{} converged with {}",
                home.name(),
                homes[0].name()
            );
        }
    }
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|v| {
        v.parse()
            .unwrap_or_else(|_| panic!("{name} must be a number, not `{v}`"))
    })
}

#[test]
fn sigkill_trials() {
    let trials = env_u64("MERIDIAN_CRASH_TRIALS").unwrap_or(200);
    let first = env_u64("MERIDIAN_CRASH_SEED").unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_micros() as u64
    });
    eprintln!("crash: {trials} trials from seed {first}");
    let started = Instant::now();
    let mut scenario = Scenario::new();
    for i in 0..trials {
        let seed = first.wrapping_add(i);
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| scenario.trial(seed))) {
            eprintln!(
                "crash: trial {i} failed. Replay it alone:\n  \
                 MERIDIAN_CRASH_SEED={seed} MERIDIAN_CRASH_TRIALS=1 cargo test --test it crash::\n\
                 or the run up to it:\n  \
                 MERIDIAN_CRASH_SEED={first} MERIDIAN_CRASH_TRIALS={} cargo test --test it crash::",
                i + 1
            );
            resume_unwind(panic);
        }
    }
    if let Err(panic) = catch_unwind(AssertUnwindSafe(|| scenario.converge())) {
        eprintln!(
            "crash: the nodes did not converge after the trials. Replay the run:\n  \
             MERIDIAN_CRASH_SEED={first} MERIDIAN_CRASH_TRIALS={trials} cargo test --test it crash::"
        );
        resume_unwind(panic);
    }
    scenario.team.relay.stop();

    figure("crash.trials", trials);
    figure("crash.seconds", started.elapsed().as_secs());
    for (target, (killed, finished)) in &scenario.outcomes {
        figure(&format!("crash.kills.{}", target.name()), killed);
        figure(&format!("crash.finished.{}", target.name()), finished);
    }
    let acknowledged: usize = scenario.written.iter().map(Vec::len).sum();
    figure("crash.acknowledged_edits", acknowledged);
    figure("crash.relay_acknowledged_edits", scenario.on_relay.len());
    if let Some(slowest) = scenario.relay_restarts.iter().max() {
        figure("crash.relay_restart_ms.max", slowest.as_millis());
    }
    // A run in which nothing was killed mid-flight proved nothing.
    if trials >= 50 {
        for target in [Target::Write, Target::Sync, Target::Daemon, Target::Relay] {
            let (killed, _) = scenario.outcomes.get(&target).copied().unwrap_or_default();
            assert!(killed > 0, "no {} was killed mid-flight", target.name());
        }
    }
}
