//! Scenarios through a relay on loopback: 1 (convergence), 3 (reconnect after a week
//! offline) and 4 (first copy for a new member). Every node reaches the relay through a
//! proxy that counts the bytes on the wire; the relay runs in this process on threads of its
//! own, whose CPU time is read from `/proc`.

use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use automerge::Automerge;
use automerge::sync::{State, SyncDoc};
use meridian::id::Id;
use meridian::node::Node;

use crate::Settings;
use crate::repo;
use crate::report::{Row, Target, median};
use crate::workload::{self, Edits, Proxy, Relay, Rng, Team, scratch, sync_round, sync_until};

const CONVERGENCE: &str = "1. Convergence through the relay";
const RECONNECT: &str = "3. Reconnect after a week offline";
const FIRST_COPY: &str = "4. First copy for a new member";
const SIDE_BY_SIDE: &str = "8. Side by side with automerge-repo";

/// One convergence configuration: `nodes` people, `docs` documents, `edits` edits to each
/// document in all, spread evenly over the people; each edit a character typed into a
/// proposal or a reply to a thread.
#[derive(Clone, Copy, Debug)]
struct Config {
    nodes: usize,
    docs: usize,
    edits: usize,
    kind: Edits,
}

/// Scenario 1.
pub fn convergence(settings: &Settings, rows: &mut Vec<Row>) -> Result<()> {
    let configs = if settings.quick {
        vec![
            Config {
                nodes: 10,
                docs: 1,
                edits: 1_000,
                kind: Edits::Typing,
            },
            Config {
                nodes: 10,
                docs: 10,
                edits: 100,
                kind: Edits::Typing,
            },
            Config {
                nodes: 20,
                docs: 100,
                edits: 20,
                kind: Edits::Typing,
            },
            Config {
                nodes: 10,
                docs: 1,
                edits: 1_000,
                kind: Edits::Replies,
            },
        ]
    } else {
        let s = settings.convergence_scale;
        let scaled = |n: usize| ((n as f64 * s).round() as usize).max(1);
        vec![
            Config {
                nodes: 10,
                docs: 1,
                edits: scaled(10_000),
                kind: Edits::Typing,
            },
            Config {
                nodes: 10,
                docs: scaled(100),
                edits: 100,
                kind: Edits::Typing,
            },
            Config {
                nodes: 50,
                docs: scaled(1_000),
                edits: 20,
                kind: Edits::Typing,
            },
            // A thread everyone replied to offline, a thousand replies each.
            Config {
                nodes: 10,
                docs: 1,
                edits: scaled(10_000),
                kind: Edits::Replies,
            },
        ]
    };
    let chosen = |i: &usize| {
        settings.convergence_only.is_empty() || settings.convergence_only.contains(&(i + 1))
    };
    for (_, config) in configs.into_iter().enumerate().filter(|(i, _)| chosen(i)) {
        let mut measured = Vec::new();
        for run in 0..settings.convergence_runs {
            let m = converge(config, run as u64)?;
            eprintln!("  {config:?}: {m:?}");
            measured.push(m);
        }
        let pick = |f: fn(&Converged) -> f64| median(&measured.iter().map(f).collect::<Vec<_>>());
        let name = match config.kind {
            Edits::Typing => format!(
                "{} nodes × {} document{} × {} edits per document",
                config.nodes,
                config.docs,
                if config.docs == 1 { "" } else { "s" },
                config.edits
            ),
            Edits::Replies => format!(
                "{} nodes × {} thread{} × {} replies per node, made offline",
                config.nodes,
                config.docs,
                if config.docs == 1 { "" } else { "s" },
                config.edits / config.nodes
            ),
        };
        let row = |metric: String, unit, median, baseline, target| Row {
            scenario: CONVERGENCE.into(),
            metric,
            unit,
            median,
            runs: measured.len(),
            baseline,
            target,
        };
        rows.push(row(
            format!("{name}: time to full convergence"),
            "s",
            pick(|m| m.seconds),
            Some((
                "automerge sync between the documents in one process".into(),
                pick(|m| m.baseline_seconds),
            )),
            match config.kind {
                Edits::Typing => Target::RatioAtMost(1.2),
                Edits::Replies => Target::RatioAtMost(1.5),
            },
        ));
        rows.push(row(
            format!("{name}: bytes on the wire per edit per receiver"),
            "B",
            pick(|m| m.bytes_per_edit),
            Some((
                "automerge sync messages".into(),
                pick(|m| m.baseline_bytes_per_edit),
            )),
            // A reply carries a sentence or two of text, a keystroke one character.
            match config.kind {
                Edits::Typing => Target::AtMost(130.0),
                Edits::Replies => Target::None,
            },
        ));
        rows.push(row(
            format!("{name}: relay CPU per delivery"),
            "µs",
            pick(|m| m.relay_cpu_per_delivery_us),
            None,
            Target::None,
        ));
        if config.docs == 1 {
            side_by_side(settings, rows, config, &name, &measured)?;
        }
    }
    Ok(())
}

/// Scenario 8: the same workload on automerge-repo and its sync server.
fn side_by_side(
    settings: &Settings,
    rows: &mut Vec<Row>,
    config: Config,
    name: &str,
    measured: &[Converged],
) -> Result<()> {
    let per_peer = config.edits / config.nodes;
    let row = Row::of(SIDE_BY_SIDE);
    let outcome = repo::converge(
        config.nodes,
        per_peer,
        config.kind,
        settings.convergence_runs,
    )?;
    let runs = match outcome {
        repo::Outcome::Ran(runs) => runs,
        repo::Outcome::Skipped(why) => {
            eprintln!("  automerge-repo side by side skipped: {why}");
            rows.push(row(
                format!("{name}: skipped, {why}"),
                "s",
                f64::NAN,
                0,
                None,
                Target::None,
            ));
            return Ok(());
        }
    };
    let what = format!(
        "{}, a Node.js process per peer",
        runs.first().map_or("automerge-repo", |r| r.what.as_str())
    );
    let seconds: Vec<f64> = runs.iter().map(|r| r.seconds).collect();
    let deliveries = (config.edits * (config.nodes - 1)) as f64;
    let bytes: Vec<f64> = runs.iter().map(|r| r.bytes as f64 / deliveries).collect();
    rows.push(row(
        format!("{name}: time to full convergence through Meridian's relay"),
        "s",
        median(&measured.iter().map(|m| m.seconds).collect::<Vec<_>>()),
        measured.len(),
        Some((what.clone(), median(&seconds))),
        // At least five times faster.
        Target::RatioAtMost(0.2),
    ));
    rows.push(row(
        format!("{name}: bytes on the wire per edit per receiver"),
        "B",
        median(
            &measured
                .iter()
                .map(|m| m.bytes_per_edit)
                .collect::<Vec<_>>(),
        ),
        measured.len(),
        Some((what, median(&bytes))),
        Target::None,
    ));
    Ok(())
}

#[derive(Debug)]
struct Converged {
    seconds: f64,
    bytes_per_edit: f64,
    relay_cpu_per_delivery_us: f64,
    baseline_seconds: f64,
    baseline_bytes_per_edit: f64,
}

/// Creates `count` documents in one transaction: text proposals to type into, or threads
/// to reply to.
fn new_documents(node: &Node, workspace: Id, count: usize, kind: Edits) -> Result<Vec<Id>> {
    node.batch(|batch| {
        (0..count)
            .map(|i| match kind {
                Edits::Typing => {
                    let new =
                        workload::text_proposal(node, workspace, &format!("Shared document {i}"));
                    workload::create_proposal(&new, |id, f| batch.edit(workspace, id, f))
                }
                Edits::Replies => workload::create_thread(
                    node,
                    &format!("Shared thread {i}"),
                    |id, f| batch.edit(workspace, id, f),
                    workspace,
                ),
            })
            .collect()
    })
}

fn converge(config: Config, seed: u64) -> Result<Converged> {
    let Config {
        nodes,
        docs,
        edits,
        kind,
    } = config;
    let tmp = scratch("meridian-bench-converge")?;
    let relay = Relay::start(&tmp.path().join("relay"))?;
    let proxy = Proxy::start(relay.addr)?;
    let team = Team::new(tmp.path(), nodes, vec![proxy.url.clone()])?;
    let workspace = team.workspace;
    team.introduce(&proxy.url)?;
    let ids = new_documents(&team.nodes[0], workspace, docs, kind)?;
    for node in &team.nodes {
        sync_round(node, workspace, &proxy.url)?;
    }
    // Everyone edits offline, one command per edit (an envelope each): edit k of document
    // d is made by person (d + k) mod nodes.
    let mut own = vec![0u64; nodes];
    for (n, node) in team.nodes.iter().enumerate() {
        let share: Vec<(Id, usize)> = ids
            .iter()
            .enumerate()
            .map(|(d, id)| (*id, (0..edits).filter(|k| (d + k) % nodes == n).count()))
            .filter(|(_, count)| *count > 0)
            .collect();
        own[n] = share.iter().map(|(_, count)| *count as u64).sum();
        let mut rng = Rng(seed * 1_000_003 + n as u64);
        workload::edit_by_edit(node, workspace, &share, kind, &mut rng)?;
    }
    let total = (docs * edits) as u64;
    // The lower bound starts from the very same documents.
    let replicas: Vec<Vec<Automerge>> = team
        .nodes
        .iter()
        .map(|node| ids.iter().map(|id| node.load(workspace, *id)).collect())
        .collect::<Result<_>>()?;
    let (baseline_seconds, baseline_bytes) = automerge_sync(replicas)?;

    proxy.take();
    let cpu_before = relay.cpu_seconds();
    let started = Instant::now();
    let finished: Vec<Result<f64>> = std::thread::scope(|scope| {
        let handles: Vec<_> = team
            .nodes
            .iter()
            .enumerate()
            .map(|(n, node)| {
                let url = proxy.url.clone();
                let expected = total - own[n];
                std::thread::Builder::new()
                    .name(format!("node{n}"))
                    .spawn_scoped(scope, move || {
                        let mut applied = 0u64;
                        sync_until(node, workspace, &url, Duration::from_secs(1800), |_, r| {
                            applied = r.applied as u64;
                            Ok(applied >= expected)
                        })?;
                        Ok(started.elapsed().as_secs_f64())
                    })
                    .expect("a thread for a node")
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a node thread"))
            .collect()
    });
    let mut seconds: f64 = 0.0;
    for result in finished {
        seconds = seconds.max(result?);
    }
    let relay_cpu = relay.cpu_seconds() - cpu_before;
    let (up, down) = proxy.take();
    // Every replica must have reached the same state.
    for id in &ids {
        let heads: Vec<Vec<String>> = team
            .nodes
            .iter()
            .map(|node| Ok(node.resolve(workspace, &id.hex())?.1.heads))
            .collect::<Result<_>>()?;
        ensure!(
            heads.windows(2).all(|w| {
                let (mut a, mut b) = (w[0].clone(), w[1].clone());
                a.sort();
                b.sort();
                a == b
            }),
            "the replicas of {} did not converge",
            id.short()
        );
    }
    let deliveries = (total * (nodes as u64 - 1)) as f64;
    Ok(Converged {
        seconds,
        bytes_per_edit: (up + down) as f64 / deliveries,
        relay_cpu_per_delivery_us: relay_cpu * 1e6 / deliveries,
        baseline_seconds,
        baseline_bytes_per_edit: baseline_bytes as f64 / deliveries,
    })
}

/// The in-process lower bound: every replica syncs each document with a hub copy (as a
/// relay that could read would), with automerge's sync protocol, until nothing moves.
/// Returns the time and the bytes of every sync message.
fn automerge_sync(replicas: Vec<Vec<Automerge>>) -> Result<(f64, u64)> {
    let mut replicas = replicas;
    let docs = replicas[0].len();
    let mut hubs: Vec<Automerge> = (0..docs).map(|_| Automerge::new()).collect();
    let mut states: Vec<Vec<(State, State)>> = replicas
        .iter()
        .map(|r| r.iter().map(|_| (State::new(), State::new())).collect())
        .collect();
    let mut bytes = 0u64;
    let started = Instant::now();
    loop {
        let mut moved = false;
        for (n, replica) in replicas.iter_mut().enumerate() {
            for d in 0..docs {
                let (near, far) = &mut states[n][d];
                loop {
                    let mut quiet = true;
                    if let Some(message) = replica[d].generate_sync_message(near) {
                        let encoded = message.encode();
                        bytes += encoded.len() as u64;
                        hubs[d].receive_sync_message(
                            far,
                            automerge::sync::Message::decode(&encoded)?,
                        )?;
                        quiet = false;
                    }
                    if let Some(message) = hubs[d].generate_sync_message(far) {
                        let encoded = message.encode();
                        bytes += encoded.len() as u64;
                        replica[d].receive_sync_message(
                            near,
                            automerge::sync::Message::decode(&encoded)?,
                        )?;
                        quiet = false;
                    }
                    if quiet {
                        break;
                    }
                    moved = true;
                }
            }
        }
        if !moved {
            break;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    for d in 0..docs {
        let heads = hubs[d].get_heads();
        ensure!(
            replicas.iter().all(|r| r[d].get_heads() == heads),
            "automerge sync did not converge"
        );
    }
    Ok((seconds, bytes))
}

/// Scenario 3: a member offline for a week while ten documents of the workspace changed.
pub fn reconnect(settings: &Settings, rows: &mut Vec<Row>) -> Result<()> {
    let tmp = scratch("meridian-bench-reconnect")?;
    let relay = Relay::start(&tmp.path().join("relay"))?;
    let proxy = Proxy::start(relay.addr)?;
    let team = Team::new(tmp.path(), 2, vec![relay.url.clone()])?;
    let workspace = team.workspace;
    let (ana, bo) = (&team.nodes[0], &team.nodes[1]);
    // Bo reaches the relay through the proxy only.
    bo.set_relays(workspace, vec![proxy.url.clone()])?;
    let made = workload::populate(ana, workspace, settings.docs)?;
    sync_round(ana, workspace, &relay.url)?;
    let started = Instant::now();
    let first = sync_round(bo, workspace, &proxy.url)?;
    let first_seconds = started.elapsed().as_secs_f64();
    let (up, down) = proxy.take();
    sync_round(ana, workspace, &relay.url)?;
    eprintln!(
        "  a new member's first sync of {} documents: {first_seconds:.1} s, {} changes, {} KB",
        settings.docs,
        first.report.applied,
        (up + down) / 1000
    );
    rows.push(Row {
        scenario: RECONNECT.into(),
        metric: format!(
            "setup: a new member's first sync of the {} documents (once)",
            settings.docs
        ),
        unit: "s",
        median: first_seconds,
        runs: 1,
        baseline: None,
        target: Target::None,
    });

    let mut empty_seconds = Vec::new();
    let mut seconds = Vec::new();
    let mut wire = Vec::new();
    let mut payload = Vec::new();
    let mut envelopes = Vec::new();
    let mut requests = Vec::new();
    for run in 0..settings.reconnect_runs {
        // Nothing changed: the fixed cost of a round.
        proxy.take();
        empty_seconds.push(sync_round(bo, workspace, &proxy.url)?.seconds);
        // A week: ten documents change, one edit each.
        let pushed_from = meridian::sync::cursor(ana, workspace, &relay.url)?.pushed;
        for k in 0..10 {
            let doc = made.docs[(run * 10 + k) * 7 % made.docs.len()];
            workload::reply(ana, workspace, doc, "Back to this after the week")?;
        }
        let changed: u64 = meridian::sync::outbox(ana, workspace, pushed_from, 100)?
            .iter()
            .map(|(_, e)| e.len() as u64)
            .sum();
        sync_round(ana, workspace, &relay.url)?;
        proxy.take();
        let round = sync_round(bo, workspace, &proxy.url)?;
        let (up, down) = proxy.take();
        ensure!(
            round.report.applied == 10,
            "the reconnect applied {} changes, expected 10",
            round.report.applied
        );
        if run == 0 {
            eprintln!(
                "  a reconnect's frames: {:?}; on the wire {} bytes, {} of them frames",
                round.by_frame,
                up + down,
                round.payload_up + round.payload_down
            );
        }
        seconds.push(round.seconds);
        wire.push((up + down) as f64);
        payload.push((round.payload_up + round.payload_down) as f64);
        envelopes.push(changed as f64);
        requests.push(round.requests() as f64);
    }
    let changed = median(&envelopes);
    let row = |metric: String, unit, median, baseline, target| Row {
        scenario: RECONNECT.into(),
        metric,
        unit,
        median,
        runs: seconds.len(),
        baseline,
        target,
    };
    let docs = settings.docs;
    rows.push(row(
        format!("requests after authentication to catch up ({docs} documents, 10 changed)"),
        "",
        median(&requests),
        None,
        Target::AtMost(1.0),
    ));
    rows.push(row(
        "bytes on the wire, whole connection (TCP payload both ways)".into(),
        "B",
        median(&wire),
        Some(("the 10 changed envelopes".into(), changed)),
        Target::RatioAtMost(1.1),
    ));
    rows.push(row(
        "bytes of protocol frames (websocket payloads both ways, handshake included)".into(),
        "B",
        median(&payload),
        Some(("the 10 changed envelopes".into(), changed)),
        Target::RatioAtMost(1.1),
    ));
    rows.push(row(
        "time to catch up (connect, authenticate, pull, apply durably)".into(),
        "ms",
        median(&seconds) * 1000.0,
        Some((
            "a round when nothing changed".into(),
            median(&empty_seconds) * 1000.0,
        )),
        Target::None,
    ));
    Ok(())
}

/// Scenario 4: a new member's first copy of a workspace whose largest document is as long
/// as the "automerge paper" editing trace.
pub fn first_copy(settings: &Settings, rows: &mut Vec<Row>) -> Result<()> {
    let tmp = scratch("meridian-bench-first-copy")?;
    let relay = Relay::start(&tmp.path().join("relay"))?;
    let proxy = Proxy::start(relay.addr)?;
    let changes = settings.first_copy_changes;
    let small = settings.docs / 10;
    let team = Team::new(tmp.path(), 2, vec![relay.url.clone()])?;
    let workspace = team.workspace;
    let (ana, bo) = (&team.nodes[0], &team.nodes[1]);
    bo.set_relays(workspace, vec![proxy.url.clone()])?;
    workload::populate(ana, workspace, small)?;
    // Typed edit by edit, an envelope per change, as a document written over months is.
    let started = Instant::now();
    let long = workload::new_text_document(ana, workspace, "The paper")?;
    workload::type_edit_by_edit(ana, workspace, &[(long, changes - 1)], &mut Rng(3))?;
    eprintln!(
        "  typed {changes} changes in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    sync_round(ana, workspace, &relay.url)?;
    proxy.take();
    let round = sync_round(bo, workspace, &proxy.url)?;
    let (up, down) = proxy.take();
    ensure!(
        workload::changes_of(bo, workspace, long)? == changes as u64,
        "the new member did not get the whole long document"
    );
    // The baseline: each document as one compressed snapshot, and loading them.
    let mut snapshot_bytes = 0u64;
    let mut load_seconds = 0.0;
    for (id, _) in ana.summaries(workspace)? {
        let saved = ana.load(workspace, id)?.save();
        snapshot_bytes += saved.len() as u64;
        let started = Instant::now();
        let doc = Automerge::load(&saved)?;
        load_seconds += started.elapsed().as_secs_f64();
        drop(doc);
    }
    let row = |metric: String, unit, median, baseline, target| Row {
        scenario: FIRST_COPY.into(),
        metric,
        unit,
        median,
        runs: 1,
        baseline,
        target,
    };
    let name = format!("a {changes}-change document typed edit by edit and {small} small ones");
    rows.push(row(
        format!("{name}: bytes on the wire"),
        "KB",
        (up + down) as f64 / 1000.0,
        Some((
            "one compressed snapshot (automerge save) per document".into(),
            snapshot_bytes as f64 / 1000.0,
        )),
        Target::RatioAtMost(1.2),
    ));
    rows.push(row(
        format!("{name}: time to a usable copy"),
        "s",
        round.seconds,
        Some(("loading those snapshots in process".into(), load_seconds)),
        Target::None,
    ));
    Ok(())
}
