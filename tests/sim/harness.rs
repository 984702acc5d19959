//! The simulated world: nodes, relays, connections, and the scheduler that moves them.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use automerge::ReadDoc;
use clap::Parser;
use meridian::cli::Cli;
use meridian::doc::View;
use meridian::id::Id;
use meridian::identity::Profile;
use meridian::node::Node;
use meridian::snapshot::Policy;
use meridian::sync::net::{RoundReport, begin, carry_out, refresh, snapshots};
use meridian::sync::session::{Output, Session};
use meridian::workspace::Invite;
use meridian::{history, proposal, sync};
use meridian_relay::Envelope;
use meridian_relay::determinism;
use meridian_relay::handling::{self, Forward};
use meridian_relay::protocol::{
    Frame, MAX_BATCH_BYTES, MAX_BATCH_ENTRIES, PushResult, RefusedCode,
};
use meridian_relay::server::SEND_BATCH_BYTES;
use meridian_relay::store::{CatchUp, Refusal, RelayStore};
use redb::ReadableTableMetadata;
use serde_bytes::ByteBuf;
use sha2::{Digest, Sha256};

/// Sunday 2026-11-22 00:00 UTC: the simulated clock starts here.
const START_MS: i64 = 1_795_392_000_000;

/// Appends `name<TAB>value` to the file `MERIDIAN_FIGURES` names, for RELIABILITY.md.
pub fn figure(name: &str, value: impl fmt::Display) {
    let Ok(path) = std::env::var("MERIDIAN_FIGURES") else {
        return;
    };
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("MERIDIAN_FIGURES names a writable file");
    writeln!(file, "{name}\t{value}").expect("MERIDIAN_FIGURES is writable");
}

/// The scheduler's own generator (SplitMix64), apart from the one behind keys and nonces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        meridian_relay::determinism::splitmix(&mut self.0)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    /// True `percent` times in a hundred.
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        (!items.is_empty()).then(|| &items[self.below(items.len())])
    }
}

/// What a run did, summed over runs for the report.
#[derive(Default)]
pub struct Outcome {
    /// Steps scheduled.
    pub steps: u64,
    /// Commands that succeeded / that the rules refused.
    pub edits: u64,
    /// Commands refused by the rules (approving one's own proposal, say).
    pub refused: u64,
    /// Frames delivered.
    pub frames: u64,
    /// Frames delivered twice.
    pub duplicated: u64,
    /// Frames swapped with the next one.
    pub reordered: u64,
    /// Connections cut by the network.
    pub cuts: u64,
    /// Sessions that failed (protocol break detected, timeout, refusal).
    pub failed: u64,
    /// Node crashes.
    pub node_crashes: u64,
    /// Relay crashes.
    pub relay_crashes: u64,
    /// Partitions started.
    pub partitions: u64,
    /// Members who joined mid-run.
    pub late_joins: u64,
    /// Members removed by the creator mid-run.
    pub removals: u64,
    /// Devices added to a member's devices mid-run (`device add` / `device join`).
    pub device_adds: u64,
    /// Devices their member revoked mid-run.
    pub revocations: u64,
    /// Keyring records (key epochs started and shared) the relays hold at the end.
    pub keyring_records: u64,
    /// Changes by removed members beyond their removal's lock that the relays hold: refused
    /// by every node...
    pub late_refused: u64,
    /// ...or kept by every node (one took them before the removal reached it).
    pub late_kept: u64,
    /// Envelopes the relays hold at the end.
    pub envelopes: u64,
    /// Document snapshots the relays kept.
    pub snapshots: u64,
    /// Log entries a catch-up skipped because it sent a snapshot holding them.
    pub skipped: u64,
    /// Hash of the final state.
    pub digest: String,
}

impl Outcome {
    /// Adds another run's counts.
    pub fn add(&mut self, o: &Outcome) {
        self.steps += o.steps;
        self.edits += o.edits;
        self.refused += o.refused;
        self.frames += o.frames;
        self.duplicated += o.duplicated;
        self.reordered += o.reordered;
        self.cuts += o.cuts;
        self.failed += o.failed;
        self.node_crashes += o.node_crashes;
        self.relay_crashes += o.relay_crashes;
        self.partitions += o.partitions;
        self.late_joins += o.late_joins;
        self.keyring_records += o.keyring_records;
        self.removals += o.removals;
        self.device_adds += o.device_adds;
        self.revocations += o.revocations;
        self.late_refused += o.late_refused;
        self.late_kept += o.late_kept;
        self.envelopes += o.envelopes;
        self.snapshots += o.snapshots;
        self.skipped += o.skipped;
    }

    /// Reports the counts as figures.
    pub fn figures(&self) {
        figure("sim.steps", self.steps);
        figure("sim.edits", self.edits);
        figure("sim.edits_refused_by_rules", self.refused);
        figure("sim.frames", self.frames);
        figure("sim.frames_duplicated", self.duplicated);
        figure("sim.frames_reordered", self.reordered);
        figure("sim.connections_cut", self.cuts);
        figure("sim.sessions_failed", self.failed);
        figure("sim.node_crashes", self.node_crashes);
        figure("sim.relay_crashes", self.relay_crashes);
        figure("sim.partitions", self.partitions);
        figure("sim.late_joins", self.late_joins);
        figure("sim.removals", self.removals);
        figure("sim.device_adds", self.device_adds);
        figure("sim.revocations", self.revocations);
        figure("sim.keyring_records", self.keyring_records);
        figure("sim.late_changes_refused", self.late_refused);
        figure("sim.late_changes_kept", self.late_kept);
        figure("sim.envelopes_checked", self.envelopes);
        figure("sim.snapshots_kept", self.snapshots);
        figure("sim.entries_skipped_for_snapshots", self.skipped);
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} steps, {} edits (+{} refused by the rules), {} frames ({} duplicated, {} reordered), {} cuts, {} failed sessions, {} node and {} relay crashes, {} partitions, {} late joins, {} device adds, {} revocations, {} removals ({} later changes refused everywhere, {} kept everywhere), {} keyring records, {} envelopes checked everywhere, {} snapshots kept, {} entries skipped for them",
            self.steps,
            self.edits,
            self.refused,
            self.frames,
            self.duplicated,
            self.reordered,
            self.cuts,
            self.failed,
            self.node_crashes,
            self.relay_crashes,
            self.partitions,
            self.late_joins,
            self.device_adds,
            self.revocations,
            self.removals,
            self.late_refused,
            self.late_kept,
            self.keyring_records,
            self.envelopes,
            self.snapshots,
            self.skipped
        )
    }
}

struct SimNode {
    name: String,
    home: PathBuf,
    /// Who invited this member.
    inviter: Option<usize>,
    /// The node whose member this device is, when it was added with a device code.
    device_of: Option<usize>,
}

struct SimRelay {
    url: String,
    dir: PathBuf,
    store: Option<RelayStore>,
}

impl SimRelay {
    fn store(&self) -> &RelayStore {
        self.store.as_ref().expect("a relay is open between steps")
    }
}

/// The relay's side of one connection, as `meridian_relay::server` keeps it.
#[derive(Default)]
struct Peer {
    hello: Option<([u8; 16], [u8; 32])>,
    /// The node reads `Deflated` frames: catch-ups of several entries go compressed.
    deflate: bool,
    nonce: Option<[u8; 32]>,
    ready: bool,
    /// Everything up to here was sent (or is the client's own), once subscribed.
    subscribed: Option<u64>,
    /// The relay ended the connection after its last queued frame.
    closed: bool,
}

struct Conn {
    id: u64,
    node: usize,
    relay: usize,
    session: Session,
    /// Frames on their way to the relay.
    up: VecDeque<Frame>,
    /// Frames on their way to the node.
    down: VecDeque<Frame>,
    peer: Peer,
}

/// One simulated world.
pub struct Sim {
    rng: Rng,
    _root: tempfile::TempDir,
    epoch: Instant,
    elapsed: Duration,
    workspace: Id,
    nodes: Vec<SimNode>,
    relays: Vec<SimRelay>,
    conns: Vec<Conn>,
    next_conn: u64,
    partitioned: BTreeSet<(usize, usize)>,
    /// Members the creator removed: relays refuse them once told, and they are left out of
    /// the final comparison (what they wrote before relays refused them must still be
    /// everywhere).
    removed: BTreeSet<usize>,
    /// The last steps, printed when a run fails.
    trace: VecDeque<String>,
    outcome: Outcome,
    counter: u64,
}

type Run<T> = Result<T, String>;

fn err(e: impl fmt::Display) -> String {
    format!("{e:#}")
}

fn scratch() -> tempfile::TempDir {
    // tmpfs when there is one: fsync there is free, and the run is about logic, not disks.
    let shm = std::path::Path::new("/dev/shm");
    if shm.is_dir()
        && let Ok(dir) = tempfile::Builder::new()
            .prefix("meridian-sim")
            .tempdir_in(shm)
    {
        return dir;
    }
    tempfile::tempdir().expect("a temporary directory")
}

impl Sim {
    /// Runs one seed to the end and checks it.
    pub fn run(seed: u64) -> Run<Outcome> {
        determinism::simulate(seed, START_MS);
        let result = Sim::new(seed).and_then(|mut sim| {
            let result = sim.play();
            result.map_err(|why| {
                let trace: Vec<_> = sim.trace.iter().cloned().collect();
                format!("{why}\n  last steps:\n    {}", trace.join("\n    "))
            })
        });
        determinism::stop_simulating();
        result
    }

    fn new(seed: u64) -> Run<Sim> {
        let mut rng = Rng(seed ^ 0x5EED_CAFE_F00D_D00D);
        let root = scratch();
        let relay_count = 1 + rng.below(2);
        let node_count = 2 + rng.below(3);
        let relays: Vec<SimRelay> = (0..relay_count)
            .map(|r| {
                let dir = root.path().join(format!("relay{r}"));
                std::fs::create_dir_all(&dir).map_err(err)?;
                Ok(SimRelay {
                    url: format!("ws://relay{r}.sim:7070"),
                    store: Some(RelayStore::open(&dir).map_err(err)?),
                    dir,
                })
            })
            .collect::<Run<_>>()?;
        let urls: Vec<String> = relays.iter().map(|r| r.url.clone()).collect();
        let mut sim = Sim {
            rng,
            epoch: Instant::now(),
            elapsed: Duration::ZERO,
            workspace: Id([0; 16]),
            nodes: Vec::new(),
            relays,
            conns: Vec::new(),
            next_conn: 1,
            partitioned: BTreeSet::new(),
            removed: BTreeSet::new(),
            trace: VecDeque::new(),
            outcome: Outcome::default(),
            counter: 0,
            _root: root,
        };
        let creator = sim.init_node()?;
        let node = Node::open(&sim.nodes[creator].home).map_err(err)?;
        sim.workspace = node.create_workspace("Sim", urls).map_err(err)?;
        drop(node);
        for _ in 1..node_count {
            sim.join_node(creator)?;
        }
        Ok(sim)
    }

    fn init_node(&mut self) -> Run<usize> {
        let index = self.nodes.len();
        let name = format!("n{index}");
        let home = self._root.path().join(&name);
        let profile = Profile {
            name: name.clone(),
            tz: ["UTC", "Asia/Tokyo", "America/Lima", "Europe/Berlin"][index % 4].into(),
            hours: "09:00-17:00".into(),
            days: "mon-fri".into(),
            away: Vec::new(),
        };
        Node::init(&home, &profile).map_err(err)?;
        let key = Node::open(&home).map_err(err)?.device_id();
        self.note(format!("node {index} has the device key {}", &key[..12]));
        self.nodes.push(SimNode {
            name,
            home,
            inviter: None,
            device_of: None,
        });
        Ok(index)
    }

    /// A new member, invited by `inviter`, joins offline.
    fn join_node(&mut self, inviter: usize) -> Run<usize> {
        let node = Node::open(&self.nodes[inviter].home).map_err(err)?;
        let (id, record) = node.workspace(None).map_err(err)?;
        let invite = Invite::new(
            node.key(),
            id,
            &record.name,
            &record.key,
            &record.creator,
            record.relays.clone(),
            START_MS + 365 * 24 * 3600 * 1000,
        );
        drop(node);
        let index = self.init_node()?;
        let joiner = Node::open(&self.nodes[index].home).map_err(err)?;
        joiner.join(&invite).map_err(err)?;
        self.nodes[index].inviter = Some(inviter);
        Ok(index)
    }

    /// A new device of the member `of` (a node) is, added with a code `of` makes; `None`
    /// when `of` may not add devices yet (its membership has not verified here).
    fn add_device(&mut self, of: usize) -> Run<Option<usize>> {
        let node = Node::open(&self.nodes[of].home).map_err(err)?;
        let (id, record) = node.workspace(None).map_err(err)?;
        let code = match meridian::app::device::code(
            &node,
            id,
            &record,
            START_MS + 365 * 24 * 3600 * 1000,
        ) {
            Ok(code) => code,
            Err(_) => return Ok(None),
        };
        drop(node);
        let index = self.init_node()?;
        let device = Node::open(&self.nodes[index].home).map_err(err)?;
        device.join_as_device(&code).map_err(err)?;
        self.nodes[index].device_of = Some(of);
        Ok(Some(index))
    }

    fn now(&self) -> Instant {
        self.epoch + self.elapsed
    }

    fn note(&mut self, what: String) {
        if std::env::var_os("MERIDIAN_SIM_TRACE").is_some() {
            eprintln!("{what}");
        }
        if self.trace.len() == 40 {
            self.trace.pop_front();
        }
        self.trace.push_back(what);
    }

    fn play(&mut self) -> Run<Outcome> {
        let steps = 150 + self.rng.below(150);
        for step in 0..steps {
            self.outcome.steps += 1;
            self.step(step)?;
        }
        self.heal()?;
        // Act two, in half the runs with an added device and nobody removed: its member
        // revokes it once every replica knows it, and the run goes on (the revoked device
        // keeps writing) until the network heals again.
        if self.removed.is_empty() && self.rng.chance(50) && self.revoke_a_device(steps)? {
            let more = 30 + self.rng.below(60);
            for step in steps..steps + more {
                self.outcome.steps += 1;
                self.step(step)?;
            }
            self.heal()?;
        }
        self.check()?;
        Ok(std::mem::take(&mut self.outcome))
    }

    /// A member revokes one of their added devices from the device that added it; from
    /// then on the revoked device counts as removed for every check. Whether one was.
    fn revoke_a_device(&mut self, step: usize) -> Run<bool> {
        let devices: Vec<(usize, usize)> = (0..self.nodes.len())
            .filter_map(|n| Some((n, self.nodes[n].device_of?)))
            .collect();
        let Some(&(device, of)) = self.rng.pick(&devices) else {
            return Ok(false);
        };
        let key = Node::open(&self.nodes[device].home)
            .map_err(err)?
            .device_id();
        // Only a device whose entry has reached the revoker can be named.
        let known = {
            let node = Node::open(&self.nodes[of].home).map_err(err)?;
            let (_, record) = node.workspace(None).map_err(err)?;
            record.state.members.iter().any(|m| m.keys.contains(&key))
        };
        if known && self.cli(of, &["device", "revoke", &key[..16]]) {
            self.outcome.revocations += 1;
            self.removed.insert(device);
            self.note(format!(
                "{step}: node {of} revokes its device node {device}"
            ));
            return Ok(true);
        }
        Ok(false)
    }

    fn step(&mut self, step: usize) -> Run<()> {
        let roll = self.rng.below(100);
        match roll {
            0..20 => self.edit(),
            20..30 => {
                let node = self.rng.below(self.nodes.len());
                let relay = self.rng.below(self.relays.len());
                self.connect(node, relay)
            }
            30..57 => self.deliver_any(true, true),
            57..84 => self.deliver_any(false, true),
            84..88 => self.poll_any(),
            88..89 => {
                if let Some(c) = self.random_conn() {
                    self.outcome.cuts += 1;
                    self.note(format!("{step}: cut connection {}", self.conns[c].id));
                    self.conns.remove(c);
                }
                Ok(())
            }
            89..90 => {
                let node = self.rng.below(self.nodes.len());
                self.outcome.node_crashes += 1;
                self.note(format!("{step}: node {node} crashes"));
                self.conns.retain(|c| c.node != node);
                Ok(())
            }
            90..91 if self.rng.chance(50) => {
                let relay = self.rng.below(self.relays.len());
                self.crash_relay(relay)
            }
            91..93 => {
                let pair = (
                    self.rng.below(self.nodes.len()),
                    self.rng.below(self.relays.len()),
                );
                if self.partitioned.remove(&pair) {
                    self.note(format!("{step}: partition {pair:?} heals"));
                } else {
                    self.outcome.partitions += 1;
                    self.note(format!("{step}: partition {pair:?}"));
                    self.partitioned.insert(pair);
                    self.conns.retain(|c| (c.node, c.relay) != pair);
                }
                Ok(())
            }
            93..94 if self.outcome.late_joins < 2 => {
                // A removed member's invites are refused by relays; members invite.
                let members: Vec<usize> = (0..self.nodes.len())
                    .filter(|n| !self.removed.contains(n))
                    .collect();
                let inviter = *self.rng.pick(&members).expect("the creator stays");
                let index = self.join_node(inviter)?;
                self.outcome.late_joins += 1;
                self.note(format!("{step}: node {index} joins, invited by {inviter}"));
                Ok(())
            }
            95..96 if self.outcome.device_adds < 2 => {
                let members: Vec<usize> = (0..self.nodes.len())
                    .filter(|n| !self.removed.contains(n))
                    .collect();
                let of = *self.rng.pick(&members).expect("the creator stays");
                if let Some(index) = self.add_device(of)? {
                    self.outcome.device_adds += 1;
                    self.note(format!(
                        "{step}: node {index} is added as a device of node {of}'s member"
                    ));
                }
                Ok(())
            }
            96..98 if self.removed.is_empty() && self.outcome.revocations == 0 => {
                self.revoke_a_device(step).map(|_| ())
            }
            94..95 if self.removed.is_empty() => {
                // The creator (node 0) removes a member it knows of. Not one who invited
                // others: relays refuse a removed member's invites even when used before
                // the removal (they cannot tell when an offline join happened), so those
                // members would need a new invite.
                let creator = Node::open(&self.nodes[0].home).map_err(err)?;
                let (_, record) = creator.workspace(None).map_err(err)?;
                drop(creator);
                let known: Vec<usize> = (1..self.nodes.len())
                    .filter(|n| self.nodes.iter().all(|other| other.inviter != Some(*n)))
                    .filter(|n| {
                        let name = &self.nodes[*n].name;
                        record
                            .state
                            .members
                            .iter()
                            .any(|m| m.verified && m.name == *name)
                    })
                    .collect();
                if let Some(&member) = self.rng.pick(&known) {
                    let name = self.nodes[member].name.clone();
                    if self.cli(0, &["member", "remove", &name]) {
                        self.outcome.removals += 1;
                        self.removed.insert(member);
                        // Their other devices go with them.
                        loop {
                            let more: Vec<usize> = (0..self.nodes.len())
                                .filter(|n| !self.removed.contains(n))
                                .filter(|n| {
                                    self.nodes[*n]
                                        .device_of
                                        .is_some_and(|of| self.removed.contains(&of))
                                })
                                .collect();
                            if more.is_empty() {
                                break;
                            }
                            self.removed.extend(more);
                        }
                    }
                }
                Ok(())
            }
            _ => {
                // Mostly seconds; now and then long enough for a waiting session to time out.
                let secs = if self.rng.chance(10) {
                    60
                } else {
                    1 + self.rng.below(5)
                };
                let by = Duration::from_secs(secs as u64);
                self.advance(by)
            }
        }
    }

    fn random_conn(&mut self) -> Option<usize> {
        (!self.conns.is_empty()).then(|| self.rng.below(self.conns.len()))
    }

    fn crash_relay(&mut self, relay: usize) -> Run<()> {
        self.outcome.relay_crashes += 1;
        self.note(format!("relay {relay} crashes and restarts"));
        self.conns.retain(|c| c.relay != relay);
        let sim_relay = &mut self.relays[relay];
        sim_relay.store = None;
        sim_relay.store = Some(RelayStore::open(&sim_relay.dir).map_err(err)?);
        Ok(())
    }

    fn advance(&mut self, by: Duration) -> Run<()> {
        self.elapsed += by;
        determinism::advance(by.as_millis() as i64);
        let now = self.now();
        let mut c = 0;
        while c < self.conns.len() {
            let outputs = self.conns[c].session.tick(now);
            if self.carry(c, outputs)? {
                c += 1;
            }
        }
        Ok(())
    }

    /// Opens a connection unless one is open or the pair is partitioned.
    fn connect(&mut self, node: usize, relay: usize) -> Run<()> {
        if self.partitioned.contains(&(node, relay))
            || self
                .conns
                .iter()
                .any(|c| c.node == node && c.relay == relay)
        {
            return Ok(());
        }
        let opened = Node::open(&self.nodes[node].home).map_err(err)?;
        let (session, outputs) =
            begin(&opened, self.workspace, &self.relays[relay].url, self.now()).map_err(err)?;
        drop(opened);
        let id = self.next_conn;
        self.next_conn += 1;
        self.note(format!(
            "node {node} connects to relay {relay} (connection {id})"
        ));
        self.conns.push(Conn {
            id,
            node,
            relay,
            session,
            up: VecDeque::new(),
            down: VecDeque::new(),
            peer: Peer::default(),
        });
        self.carry(self.conns.len() - 1, outputs)?;
        Ok(())
    }

    /// Carries out a session's outputs on its node. Returns whether the connection is still
    /// open (it is removed when the session ended).
    fn carry(&mut self, c: usize, outputs: Vec<Output>) -> Run<bool> {
        if outputs.is_empty() {
            return Ok(true);
        }
        let conn = &mut self.conns[c];
        let node = Node::open(&self.nodes[conn.node].home).map_err(err)?;
        let url = &self.relays[conn.relay].url;
        let up = &mut conn.up;
        let mut send = |frame: Frame| {
            up.push_back(frame);
            Ok(())
        };
        let mut report = RoundReport::default();
        let result = carry_out(
            &node,
            self.workspace,
            url,
            &mut conn.session,
            outputs,
            &mut send,
            &mut report,
            &mut |_| {},
        );
        if !report.rejected.is_empty() {
            if std::env::var_os("MERIDIAN_SIM_DEBUG").is_some() {
                let (_, record) = node.workspace(None).map_err(err)?;
                for m in &record.state.members {
                    eprintln!(
                        "  {} {} verified={} removed={} lock={} keys={:?} devices={:?}",
                        &m.id[..12],
                        m.name,
                        m.verified,
                        m.removed,
                        m.lock.is_some(),
                        m.keys.iter().map(|k| &k[..12]).collect::<Vec<_>>(),
                        m.devices
                            .iter()
                            .map(|d| (&d.key[..12], d.revoked.is_some()))
                            .collect::<Vec<_>>()
                    );
                }
            }
            return Err(format!(
                "node {} rejected envelopes no one forged: {:?}",
                conn.node, report.rejected
            ));
        }
        match result {
            Ok(()) if !conn.session.is_closed() => Ok(true),
            Ok(()) => {
                self.drop_conn(c, "the session closed".into());
                Ok(false)
            }
            Err(e) if conn.session.is_closed() => {
                self.drop_conn(c, format!("{e:#}"));
                Ok(false)
            }
            Err(e) => Err(format!(
                "node {} failed to carry out its session's outputs: {e:#}",
                conn.node
            )),
        }
    }

    fn drop_conn(&mut self, c: usize, why: String) {
        let conn = self.conns.remove(c);
        self.outcome.failed += 1;
        self.note(format!(
            "connection {} (node {}, relay {}) ends: {why}",
            conn.id, conn.node, conn.relay
        ));
    }

    /// Delivers the next frame of a random connection, sometimes twice or out of order.
    fn deliver_any(&mut self, upward: bool, faults: bool) -> Run<()> {
        let Some(c) = self.random_conn() else {
            return Ok(());
        };
        self.deliver(c, upward, faults).map(|_| ())
    }

    /// Delivers one frame on connection `c`. Returns whether one was delivered.
    fn deliver(&mut self, c: usize, upward: bool, faults: bool) -> Run<bool> {
        let queue = if upward {
            &mut self.conns[c].up
        } else {
            &mut self.conns[c].down
        };
        if faults && queue.len() >= 2 && self.rng.chance(15) {
            queue.swap(0, 1);
            self.outcome.reordered += 1;
        }
        let Some(frame) = queue.pop_front() else {
            if !upward && self.conns[c].peer.closed {
                self.drop_conn(c, "the relay closed it".into());
            }
            return Ok(false);
        };
        let copies = if faults && self.rng.chance(3) { 2 } else { 1 };
        self.outcome.frames += 1;
        self.outcome.duplicated += copies - 1;
        for _ in 0..copies {
            if upward {
                self.relay_receive(c, frame.clone())?;
            } else {
                let now = self.now();
                let outputs = self.conns[c].session.receive(frame.clone(), now);
                if !self.carry(c, outputs)? {
                    break;
                }
            }
        }
        Ok(true)
    }

    /// The relay handles a frame from connection `c` with the server's own decisions
    /// (`meridian_relay::handling`): handshake and admission, catch-up, pushes (stored
    /// durably, answered, forwarded to the workspace's other subscribers), revocations. A
    /// refusal ends the connection. What the simulation leaves out is the server's I/O:
    /// sockets, timeouts, the writer thread and the live broadcast buffer.
    fn relay_receive(&mut self, c: usize, frame: Frame) -> Run<()> {
        let Sim {
            conns,
            relays,
            outcome,
            ..
        } = self;
        let relay = conns[c].relay;
        let store = relays[relay].store();
        let conn = &mut conns[c];
        if conn.peer.closed {
            return Ok(());
        }
        let refuse = |conn: &mut Conn, refusal: Refusal| {
            conn.down.push_back(Frame::Refused {
                code: refusal.code,
                reason: refusal.reason,
            });
            conn.peer.closed = true;
        };
        if !conn.peer.ready {
            match (conn.peer.hello, conn.peer.nonce) {
                (None, _) => match handling::hello(frame) {
                    Ok(hello) => {
                        let (nonce, challenge) = handling::challenge(store.id()).map_err(err)?;
                        conn.peer.hello = Some((hello.ws, hello.key));
                        conn.peer.deflate = hello.deflate;
                        conn.peer.nonce = Some(nonce);
                        conn.down.push_back(challenge);
                    }
                    Err(refusal) => refuse(conn, refusal),
                },
                (Some((ws, key)), Some(nonce)) => {
                    let admitted =
                        handling::prove(frame, store.id(), &nonce, &ws, &key).map(|register| {
                            store.admit(&ws, &key, register.as_ref(), determinism::now_ms())
                        });
                    match admitted {
                        Ok(Ok(Ok(()))) => {
                            conn.peer.ready = true;
                            let head = store.head(&ws).map_err(err)?;
                            conn.down.push_back(Frame::Welcome {
                                head,
                                shared: true,
                                vouch: true,
                            });
                        }
                        Ok(Ok(Err(refusal))) | Err(refusal) => refuse(conn, refusal),
                        Ok(Err(e)) => return Err(err(e)),
                    }
                }
                (Some(_), None) => unreachable!("a nonce is sent with every challenge"),
            }
            return Ok(());
        }
        let (ws, key) = conn.peer.hello.expect("ready after Hello");
        match frame {
            Frame::Subscribe { after } => {
                let plan = CatchUp::subscribe(after);
                let (cursor, skipped) =
                    catch_up_with(store, &ws, after, plan, conn.peer.deflate, &mut conn.down)?;
                outcome.skipped += skipped;
                conn.down.push_back(Frame::CaughtUp { head: cursor });
                conn.peer.subscribed = Some(cursor);
            }
            Frame::Push { id, envelopes } => {
                let mut sorted = handling::sort_push(&ws, &key, envelopes);
                let incoming = std::mem::take(&mut sorted.incoming);
                let appended = if incoming.is_empty() {
                    Default::default()
                } else {
                    store
                        .append(&[(ws, incoming)])
                        .map_err(err)?
                        .pop()
                        .unwrap_or_default()
                };
                let results = sorted.answers(appended.results);
                conn.down.push_back(Frame::Stored { id, results });
                let origin = conn.id;
                if let (Some(&(first, _)), Some(&(last, _))) =
                    (appended.entries.first(), appended.entries.last())
                {
                    // The server keeps small batches live; every batch is small here.
                    for other in conns.iter_mut() {
                        if other.relay != relay || other.peer.hello.map(|h| h.0) != Some(ws) {
                            continue;
                        }
                        let Some(cursor) = other.peer.subscribed else {
                            continue;
                        };
                        let own = other.id == origin;
                        match handling::forward(first, last, cursor, own, true) {
                            Forward::Nothing => {}
                            Forward::CatchUp => {
                                let cursor = catch_up(
                                    store,
                                    &ws,
                                    cursor,
                                    other.peer.deflate,
                                    &mut other.down,
                                )?;
                                other.peer.subscribed = Some(cursor);
                            }
                            Forward::Own => other.peer.subscribed = Some(last),
                            Forward::Send => {
                                other.down.push_back(Frame::Entries {
                                    entries: appended
                                        .entries
                                        .iter()
                                        .map(|(seq, b)| (*seq, ByteBuf::from(b.clone())))
                                        .collect(),
                                    up_to: last,
                                });
                                other.peer.subscribed = Some(last);
                            }
                        }
                    }
                }
            }
            Frame::Snapshot {
                id,
                covers,
                envelope,
                shared,
            } => {
                let result = match handling::sort_snapshot(&ws, &envelope, shared) {
                    Ok(snapshot) => store.put_snapshot(&ws, &snapshot, covers).map_err(err)?,
                    Err(answer) => answer,
                };
                outcome.snapshots += u64::from(matches!(result, PushResult::Stored(_)));
                conn.down.push_back(Frame::Stored {
                    id,
                    results: vec![result],
                });
            }
            Frame::Vouch { id, members } => {
                let results = store
                    .vouch(&ws, &key, &members, determinism::now_ms())
                    .map_err(err)?;
                conn.down.push_back(Frame::Vouched { id, results });
            }
            Frame::Revoke { member } => {
                let Ok(member_key) = <[u8; 32]>::try_from(member.as_slice()) else {
                    conn.down.push_back(Frame::Error {
                        reason: "Revoke needs a 32-byte member key".into(),
                    });
                    return Ok(());
                };
                match store
                    .revoke(&ws, &key, &member_key, determinism::now_ms())
                    .map_err(err)?
                {
                    Ok(removed) => {
                        conn.down.push_back(Frame::Revoked { member });
                        for other in conns.iter_mut() {
                            if other.relay == relay
                                && other
                                    .peer
                                    .hello
                                    .is_some_and(|(w, k)| w == ws && removed.contains(&k))
                            {
                                refuse(
                                    other,
                                    Refusal {
                                        code: RefusedCode::Removed,
                                        reason: "removed".into(),
                                    },
                                );
                            }
                        }
                    }
                    Err(reason) => conn.down.push_back(Frame::Error { reason }),
                }
            }
            other => {
                let reason = format!("{} is not expected after the handshake", other.name());
                refuse(
                    conn,
                    Refusal {
                        code: RefusedCode::Protocol,
                        reason,
                    },
                );
            }
        }
        Ok(())
    }

    /// A connected node looks at its outbox (the daemon's wake-up or poll).
    fn poll_any(&mut self) -> Run<()> {
        let Some(c) = self.random_conn() else {
            return Ok(());
        };
        self.poll(c).map(|_| ())
    }

    fn poll(&mut self, c: usize) -> Run<bool> {
        let node = Node::open(&self.nodes[self.conns[c].node].home).map_err(err)?;
        let now = self.now();
        let mut outputs =
            refresh(&node, self.workspace, &mut self.conns[c].session, now).map_err(err)?;
        if outputs.is_empty() {
            // An idle creator hands the relay snapshots of documents that grew: late
            // joiners then start from them. The simulation's documents are small, so any
            // change makes one due.
            let policy = Policy {
                min_changes: 1,
                ..Policy::default()
            };
            let url = &self.relays[self.conns[c].relay].url;
            outputs = snapshots(
                &node,
                self.workspace,
                url,
                &mut self.conns[c].session,
                &policy,
                now,
            )
            .map_err(err)?;
        }
        drop(node);
        self.carry(c, outputs)
    }

    /// Runs a CLI command on a node, in this process.
    fn cli(&mut self, node: usize, args: &[&str]) -> bool {
        let home = self.nodes[node].home.to_string_lossy().into_owned();
        let mut argv = vec!["meridian", "--home", home.as_str()];
        argv.extend_from_slice(args);
        let cli = Cli::try_parse_from(&argv).expect("the simulation builds valid command lines");
        let result = meridian::cli::run(cli);
        let ok = result.is_ok();
        if ok {
            self.outcome.edits += 1;
        } else {
            self.outcome.refused += 1;
        }
        self.note(format!(
            "node {node}: meridian {} -> {}",
            args.join(" "),
            match &result {
                Ok(()) => "ok".to_string(),
                Err(e) => format!("refused: {e:#}"),
            }
        ));
        ok
    }

    /// A random edit of a random kind by a random member.
    fn edit(&mut self) -> Run<()> {
        let n = self.rng.below(self.nodes.len());
        self.counter += 1;
        let k = self.counter;
        let node = Node::open(&self.nodes[n].home).map_err(err)?;
        let docs = node.summaries(self.workspace).map_err(err)?;
        let doc = self.rng.pick(&docs).map(|(id, s)| (*id, s.kind));
        let loaded = match doc {
            Some((id, _)) => Some(node.load(self.workspace, id).map_err(err)?),
            None => None,
        };
        drop(node);
        let other = self.nodes[self.rng.below(self.nodes.len())].name.clone();
        let text = format!("text {k} from n{n}");
        let Some(((id, _), doc)) = doc.zip(loaded) else {
            self.cli(
                n,
                &[
                    "proposal",
                    "new",
                    &format!("P{k}"),
                    "--section",
                    "Summary=first",
                ],
            );
            return Ok(());
        };
        let id = id.hex();
        let view = View::now(&doc);
        match self.rng.below(15) {
            0 => {
                self.cli(
                    n,
                    &[
                        "proposal",
                        "new",
                        &format!("P{k}"),
                        "--section",
                        &format!("Summary={text}"),
                    ],
                );
            }
            1 => {
                self.cli(
                    n,
                    &[
                        "thread",
                        "new",
                        &format!("T{k}"),
                        "-m",
                        &text,
                        "--ask",
                        &other,
                    ],
                );
            }
            2 => {
                self.cli(
                    n,
                    &["update", "new", "--done", &text, "--period", "2026-W48"],
                );
            }
            3 => {
                let file = self.nodes[n].home.join("section.txt");
                std::fs::write(&file, format!("{text}\nmore")).map_err(err)?;
                let section = ["Summary", "Motivation", "Design"][self.rng.below(3)];
                self.cli(
                    n,
                    &[
                        "proposal",
                        "edit",
                        &id,
                        "--section",
                        section,
                        "--file",
                        &file.to_string_lossy(),
                    ],
                );
            }
            4 => {
                self.cli(n, &["proposal", "open", &id]);
            }
            5 | 6 => {
                self.cli(n, &["proposal", "approve", &id, "-m", &text]);
            }
            7 => {
                let blocking = self.rng.chance(50);
                let mut args = vec!["proposal", "concern", &id, "-m", &text];
                if blocking {
                    args.push("--blocking");
                }
                self.cli(n, &args);
            }
            8 => {
                let verb = ["accept", "reject", "withdraw"][self.rng.below(3)];
                self.cli(n, &["proposal", verb, &id]);
            }
            9 | 10 => {
                let comments = meridian::discussion::comments(view);
                let target = match self.rng.pick(&comments) {
                    Some(c) if self.rng.chance(50) => format!("{id}:{}", c.id),
                    _ => id.clone(),
                };
                self.cli(n, &["reply", &target, "-m", &text]);
            }
            11 => {
                let comments = meridian::discussion::comments(view);
                if let Some(c) = self.rng.pick(&comments) {
                    let target = format!("{id}:{}", c.id);
                    self.cli(n, &["react", &target, "+1"]);
                }
            }
            12 => {
                let verb = if self.rng.chance(50) {
                    "resolve"
                } else {
                    "reopen"
                };
                self.cli(n, &["thread", verb, &id]);
            }
            13 => {
                let concerns = proposal::read(view).concerns;
                if let Some(c) = self.rng.pick(&concerns) {
                    let concern = c.entry.id.clone();
                    self.cli(n, &["proposal", "resolve", &id, &concern]);
                }
            }
            _ => {
                let conflicts = history::conflicts(view);
                if let Some(conflict) = self.rng.pick(&conflicts) {
                    let field = conflict.field.clone();
                    self.cli(n, &["resolve", &id, &field, &text]);
                }
            }
        }
        Ok(())
    }

    /// Ends every fault, connects everyone everywhere and delivers until nothing moves.
    fn heal(&mut self) -> Run<()> {
        self.partitioned.clear();
        self.note("the network heals".into());
        for round in 0..60 {
            for node in 0..self.nodes.len() {
                for relay in 0..self.relays.len() {
                    if !self.removed.contains(&node) {
                        self.connect(node, relay)?;
                    }
                }
            }
            let mut moved = true;
            let mut deliveries = 0;
            while moved {
                moved = false;
                let mut c = 0;
                while c < self.conns.len() {
                    let before = self.conns.len();
                    let delivered =
                        self.deliver(c, true, false)? | self.deliver(c, false, false)?;
                    moved |= delivered;
                    deliveries += usize::from(delivered);
                    if self.conns.len() == before {
                        c += 1;
                    }
                }
                if deliveries > 200_000 {
                    return Err("delivery never stops: a livelock".into());
                }
            }
            let mut c = 0;
            while c < self.conns.len() {
                if self.poll(c)? {
                    c += 1;
                }
            }
            let members = self.nodes.len() - self.removed.len();
            let live: Vec<&Conn> = self
                .conns
                .iter()
                .filter(|c| !self.removed.contains(&c.node))
                .collect();
            let quiet = live.len() == members * self.relays.len()
                && live
                    .iter()
                    .all(|c| c.session.is_idle() && c.up.is_empty() && c.down.is_empty());
            if quiet && self.outboxes_empty()? {
                self.note(format!("quiet after {round} healing rounds"));
                return Ok(());
            }
            if live.iter().any(|c| !c.up.is_empty()) {
                // The polls had something to send (an outbox entry, a snapshot): deliver it
                // before letting time pass.
                continue;
            }
            // A session stuck waiting times out, as it would on a real clock.
            self.advance(Duration::from_secs(31))?;
        }
        Err("the network healed but the replicas never went quiet".into())
    }

    fn outboxes_empty(&self) -> Run<bool> {
        for (index, node) in self.nodes.iter().enumerate() {
            if self.removed.contains(&index) {
                continue;
            }
            let opened = Node::open(&node.home).map_err(err)?;
            if !sync::outbox(&opened, self.workspace, 0, 1)
                .map_err(err)?
                .is_empty()
            {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Every replica holds the same documents, heads and derived state, nothing is held or
    /// rejected, and every change a relay stored is everywhere. (Changes, not envelopes: a
    /// push coalesces a run of outbox envelopes into one, and a node keeps its own as they
    /// were; a retried run is sealed afresh, and replicas keep only the first copy.)
    fn check(&mut self) -> Run<()> {
        let record = {
            let index = (0..self.nodes.len())
                .find(|i| !self.removed.contains(i))
                .ok_or("every node was removed")?;
            let node = Node::open(&self.nodes[index].home).map_err(err)?;
            node.workspace(Some(&self.workspace.hex())).map_err(err)?.1
        };
        let mut late: BTreeSet<(Id, automerge::ChangeHash)> = BTreeSet::new();
        let mut logged = BTreeSet::new();
        let mut sealed_in_epochs: Vec<Vec<u8>> = Vec::new();
        let mut changes: BTreeMap<Id, BTreeSet<automerge::ChangeHash>> = BTreeMap::new();
        let mut items = Vec::new();
        for relay in &self.relays {
            let mut after = 0;
            loop {
                let entries = relay
                    .store()
                    .read(&self.workspace.0, after, MAX_BATCH_ENTRIES, MAX_BATCH_BYTES)
                    .map_err(err)?;
                let Some(&(last, _)) = entries.last() else {
                    break;
                };
                for (_, bytes) in entries {
                    let envelope = Envelope::decode(&bytes).map_err(err)?;
                    logged.insert(envelope.hash());
                    if envelope.is_keyring() {
                        self.outcome.keyring_records += 1;
                        continue;
                    }
                    if envelope.epoch_id().is_some() {
                        sealed_in_epochs.push(bytes.clone());
                    }
                    let mut budget = meridian::ingest::Budget::stored();
                    items.extend(
                        meridian::ingest::open_sealed(&bytes, self.workspace, &record, &mut budget)
                            .map_err(err)?,
                    );
                }
                after = last;
            }
        }
        // The removals' locks, by the membership with every logged workspace change in it:
        // a removed member's device whose own entry came beyond the lock is theirs there.
        let locks = {
            let index = (0..self.nodes.len())
                .find(|i| !self.removed.contains(i))
                .ok_or("every node was removed")?;
            let node = Node::open(&self.nodes[index].home).map_err(err)?;
            let mut doc = node.load(self.workspace, self.workspace).map_err(err)?;
            let all: Vec<automerge::Change> = items
                .iter()
                .filter(|i| i.doc == self.workspace)
                .flat_map(|i| i.changes.iter().cloned())
                .collect();
            doc.apply_changes(all).map_err(err)?;
            let state =
                meridian::workspace::read_state(meridian::doc::View::now(&doc), &record.creator);
            meridian::lock::Locks::of(&state)
        };
        for item in items {
            // A removed member's change beyond the removal's lock is refused by every node,
            // or (taken by one before the removal reached it) kept by all: the states
            // compared below say which.
            let taken: Vec<automerge::ChangeHash> = item
                .changes
                .iter()
                .filter(|c| locks.late(item.doc, c.actor_id(), c.seq()).is_none())
                .map(|c| c.hash())
                .collect();
            if !taken.is_empty() {
                changes.entry(item.doc).or_default().extend(taken);
            }
            late.extend(
                item.changes
                    .iter()
                    .filter(|c| locks.late(item.doc, c.actor_id(), c.seq()).is_some())
                    .map(|c| (item.doc, c.hash())),
            );
        }
        self.outcome.envelopes = logged.len() as u64;
        // Every current member's node holds every epoch anything is sealed under (it walked
        // back from the newest); a removed member's holds none started after its removal:
        // in a run of one removal, that is every epoch there is.
        for (index, sim_node) in self.nodes.iter().enumerate() {
            let node = Node::open(&sim_node.home).map_err(err)?;
            let (_, own) = node.workspace(Some(&self.workspace.hex())).map_err(err)?;
            let opened = sealed_in_epochs
                .iter()
                .filter(|bytes| {
                    let envelope = Envelope::decode(bytes).expect("decoded above");
                    meridian::seal::open_with(&own, &envelope).is_ok()
                })
                .count();
            let removed = self.removed.contains(&index);
            if (removed && opened > 0) || (!removed && opened < sealed_in_epochs.len()) {
                let txn = node.db().begin_read().map_err(err)?;
                let records = meridian::epochs::records(&txn, self.workspace).map_err(err)?;
                let me = node.key().verifying_key().to_bytes();
                let described: Vec<String> = records
                    .iter()
                    .map(|r| {
                        format!(
                            "{} {} by {}{}{}",
                            if r.starts { "starts" } else { "shares" },
                            r.epoch.map(|e| hex::encode(&e[..4])).unwrap_or_default(),
                            hex::encode(&r.author[..4]),
                            if r.adopted { "" } else { " (waiting)" },
                            if r.devices.contains(&me) {
                                ", wrapped to it"
                            } else {
                                ""
                            },
                        )
                    })
                    .collect();
                let held: Vec<String> = own
                    .epochs
                    .iter()
                    .map(|e| hex::encode(&e.hash[..4.min(e.hash.len())]))
                    .collect();
                return Err(if removed {
                    format!(
                        "node {index}, removed, opens {opened} envelopes sealed under an epoch after its removal; it holds epochs {held:?} and keeps records: {}",
                        described.join("; ")
                    )
                } else {
                    format!(
                        "node {index} opens {opened} of the {} envelopes sealed under key epochs; it holds epochs {held:?} ({:?}) and keeps records: {}",
                        sealed_in_epochs.len(),
                        own.sealing,
                        described.join("; ")
                    )
                });
            }
        }
        for &removed in &self.removed {
            let node = Node::open(&self.nodes[removed].home).map_err(err)?;
            let key = node.key().verifying_key().to_bytes();
            for (r, relay) in self.relays.iter().enumerate() {
                let member = relay.store().member(&self.workspace.0, &key).map_err(err)?;
                if member.is_some_and(|m| !m.removed) {
                    return Err(format!(
                        "relay {r} still admits node {removed}, removed by the creator"
                    ));
                }
            }
        }
        let mut states = Vec::new();
        for (index, sim_node) in self.nodes.iter().enumerate() {
            if self.removed.contains(&index) {
                continue;
            }
            let node = Node::open(&sim_node.home).map_err(err)?;
            // What a removal refuses stays held on every node alike (the states compared
            // below are equal): anything else held is lost.
            let (_, held) =
                meridian::ingest::held_for_removals(&node, self.workspace).map_err(err)?;
            let held = held as u64 + {
                let txn = node.db().begin_read().map_err(err)?;
                txn.open_table(meridian::store::HELD_EPOCH)
                    .map_err(err)?
                    .len()
                    .map_err(err)?
            };
            if held > 0 {
                if std::env::var_os("MERIDIAN_SIM_DEBUG").is_some() {
                    for (i, n) in self.nodes.iter().enumerate() {
                        let node = Node::open(&n.home).map_err(err)?;
                        let (_, rec) = node.workspace(None).map_err(err)?;
                        let ms: Vec<String> = rec
                            .state
                            .members
                            .iter()
                            .map(|m| {
                                format!(
                                    "{}:{}:v{}:{:?}",
                                    m.name,
                                    &m.id[..6],
                                    m.verified,
                                    m.keys.iter().map(|k| &k[..6]).collect::<Vec<_>>()
                                )
                            })
                            .collect();
                        eprintln!(
                            "DEBUG node {i} dev {} member {} {:?} rejected {:?}",
                            &node.device_id()[..6],
                            &node.member_id()[..6],
                            ms,
                            sync::rejections(&node, self.workspace)
                                .map_err(err)?
                                .iter()
                                .map(|r| r.reason.clone())
                                .collect::<Vec<_>>()
                        );
                    }
                }
                return Err(format!("node {index} still holds {held} envelopes back"));
            }
            let rejected = sync::rejections(&node, self.workspace).map_err(err)?;
            if !rejected.is_empty() {
                return Err(format!("node {index} rejected envelopes: {rejected:?}"));
            }
            for (doc, hashes) in &changes {
                let loaded = node.load(self.workspace, *doc).map_err(err)?;
                if let Some(missing) = hashes
                    .iter()
                    .find(|h| loaded.get_change_by_hash(h).is_none())
                {
                    return Err(format!(
                        "node {index} lacks change {} of document {} that a relay acknowledged",
                        &missing.to_string()[..12],
                        doc.short()
                    ));
                }
            }
            if states.is_empty() {
                for (doc, hash) in &late {
                    let kept = node
                        .load(self.workspace, *doc)
                        .is_ok_and(|d| d.get_change_meta_by_hash(hash).is_some());
                    if kept {
                        self.outcome.late_kept += 1;
                    } else {
                        self.outcome.late_refused += 1;
                    }
                }
            }
            states.push((index, state_of(&node, self.workspace)?));
        }
        let (first, reference) = &states[0];
        for (index, state) in &states[1..] {
            if state != reference {
                let keys: BTreeSet<&String> = state.keys().chain(reference.keys()).collect();
                let diff: Vec<_> = keys
                    .into_iter()
                    .filter(|k| state.get(*k) != reference.get(*k))
                    .map(|k| {
                        format!(
                            "{k}: node {index} has {:?}, node {first} has {:?}",
                            state.get(k),
                            reference.get(k)
                        )
                    })
                    .take(3)
                    .collect();
                return Err(format!("replicas differ:\n    {}", diff.join("\n    ")));
            }
        }
        if let Ok(path) = std::env::var("MERIDIAN_SIM_DUMP") {
            let text: String = reference
                .iter()
                .map(|(k, v)| format!("{k}: {v}\n"))
                .collect();
            std::fs::write(path, text).map_err(err)?;
        }
        let mut hasher = Sha256::new();
        for (key, value) in reference {
            hasher.update(key.as_bytes());
            hasher.update(value.as_bytes());
        }
        self.outcome.digest = hex::encode(hasher.finalize());
        Ok(())
    }
}

/// A replica's documents as comparable text: per document its summary (kind, state,
/// deadlines, asks, heads) and its conflicts; and the workspace's members and heads.
fn state_of(node: &Node, workspace: Id) -> Run<BTreeMap<String, String>> {
    let mut state = BTreeMap::new();
    let (_, record) = node.workspace(Some(&workspace.hex())).map_err(err)?;
    let doc = node.load(workspace, workspace).map_err(err)?;
    state.insert(
        "workspace".into(),
        format!("{:?} {:?}", doc.get_heads(), record.state),
    );
    for (id, summary) in node.summaries(workspace).map_err(err)? {
        let doc = node.load(workspace, id).map_err(err)?;
        // Summaries are kept up to date from each batch of changes alone where they can
        // be (`node::reindex`): they must say what deriving them from the whole does.
        let whole = meridian::index::summarize(
            View::now(&doc),
            summary.kind,
            &workspace.0,
            summary.updated,
            &summary.last_author,
            summary.changes,
        );
        if whole != summary {
            return Err(format!(
                "the index summary of {} kept from its changes is {summary:?}, but the whole document says {whole:?}",
                id.short()
            ));
        }
        let conflicts = history::conflicts(View::now(&doc));
        state.insert(
            id.hex(),
            format!(
                "{} {conflicts:?}",
                serde_json::to_string(&summary).map_err(err)?
            ),
        );
    }
    Ok(state)
}

/// Queues every log entry after `after` in bounded batches; returns the new cursor.
fn catch_up(
    store: &RelayStore,
    ws: &[u8; 16],
    after: u64,
    deflate: bool,
    down: &mut VecDeque<Frame>,
) -> Run<u64> {
    Ok(catch_up_with(store, ws, after, CatchUp::live(), deflate, down)?.0)
}

/// Queues the entries after `after` as `plan` says, in bounded batches, as the server does
/// (snapshots in place of whole documents after a `Subscribe`); returns the new cursor and
/// how many entries it skipped for snapshots.
fn catch_up_with(
    store: &RelayStore,
    ws: &[u8; 16],
    after: u64,
    mut plan: CatchUp,
    deflate: bool,
    down: &mut VecDeque<Frame>,
) -> Run<(u64, u64)> {
    let mut cursor = after;
    let mut skipped = 0;
    loop {
        let read = store
            .read_for(ws, cursor, &mut plan, MAX_BATCH_ENTRIES, SEND_BATCH_BYTES)
            .map_err(err)?;
        if read.up_to <= cursor {
            return Ok((cursor, skipped));
        }
        skipped += read.skipped.iter().map(|(a, b)| b - a + 1).sum::<u64>();
        let up_to = read.up_to;
        // Encoded as the server encodes them, compressed for a node that reads that.
        for frame in handling::catch_up_frames(read) {
            let encoded = handling::encode_for(&frame, deflate);
            down.push_back(Frame::decode(&encoded).map_err(err)?);
        }
        cursor = up_to;
    }
}
