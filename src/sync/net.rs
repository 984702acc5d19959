//! The websocket driver of [`Session`]: one round for `meridian sync`, a connection that
//! stays up for `meridian daemon`, and the daemon itself.
//!
//! The driver runs on a single-threaded runtime: store writes happen inline, between
//! frames. Frames go out through a queue drained concurrently with reading, so the node
//! always reads what the relay sends while its own push is still leaving.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use futures_util::{FutureExt, SinkExt, StreamExt};
use meridian_relay::protocol::{
    self, Frame, PushResult, RefusedCode, Register, VouchResult, Vouchee,
};
use serde::Serialize;
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use super::session::{Admission, Event, Output, Session};
use super::tls;
use crate::id::Id;
use crate::ingest::Rejected;
use crate::node::Node;
use crate::store::WorkspaceRecord;

/// How long connecting to a relay may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// The most outbox entries read at once.
const OUTBOX_BATCH: usize = 10_000;

/// How often a live connection looks at the outbox even without a wake-up.
const POLL_INTERVAL: Duration = Duration::from_secs(2);

/// How often a live connection looks for snapshots due (only the creator's node makes any).
const SNAPSHOT_INTERVAL: Duration = Duration::from_secs(600);

/// The most frames taken in at once when several have already arrived.
const READY_FRAMES: usize = 64;

/// The most entries, and envelope bytes, applied in one transaction when the entries of
/// several frames are applied together: ten of the relay's largest frames. Received
/// envelopes are in memory already; each document's new operations stay bounded by
/// `ingest::Limits::max_ops` whatever the batch (a batch over it is applied an envelope at
/// a time).
const MERGED_ENTRIES: usize = 10 * protocol::MAX_BATCH_ENTRIES;
/// See [`MERGED_ENTRIES`]. Two of the relay's largest batches: what a batch's envelopes may
/// inflate to is in proportion to their bytes (`ingest::Budget`, 16 times), so this bounds
/// it to 132 MiB; small envelopes reach [`MERGED_ENTRIES`] long before.
const MERGED_BYTES: usize = 2 * protocol::MAX_BATCH_BYTES;

/// What one connection did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RoundReport {
    /// The relay URL.
    pub relay: String,
    /// Outbox envelopes the relay stored (or already had).
    pub pushed: usize,
    /// Log entries received.
    pub pulled: usize,
    /// New changes applied.
    pub applied: usize,
    /// Documents that changed, hex ids.
    pub documents: BTreeSet<String>,
    /// Envelopes refused, by this node or by the relay.
    pub rejected: Vec<Rejected>,
    /// Envelopes held back until what they depend on arrives.
    pub held: usize,
    /// Of those, envelopes of removed members written after their removal, refused.
    pub refused_late: usize,
    /// Requests the relay refused (a revocation by someone not the creator, say).
    pub errors: Vec<String>,
}

impl RoundReport {
    /// Adds another round's figures to this one's.
    pub fn absorb(&mut self, other: RoundReport) {
        self.pushed += other.pushed;
        self.pulled += other.pulled;
        self.applied += other.applied;
        self.documents.extend(other.documents);
        self.rejected.extend(other.rejected);
        self.held += other.held;
        self.refused_late += other.refused_late;
        self.errors.extend(other.errors);
    }
}

/// Why a relay refused this node.
#[derive(Debug, thiserror::Error)]
#[error("the relay refused the connection: {reason}")]
pub struct RefusedError {
    /// The relay URL.
    pub relay: String,
    /// Machine-readable reason.
    pub code: RefusedCode,
    /// The relay's explanation.
    pub reason: String,
    /// Whether the device left its registration out (see [`Event::Refused`]).
    pub without_registration: bool,
}

/// The websocket URL of a relay: `ws://host:port` gets the protocol's path.
pub fn endpoint(relay: &str) -> Result<String> {
    let relay = relay_url(relay)?;
    let path = relay.split_once("://").map_or("", |(_, rest)| rest);
    Ok(if path.contains('/') {
        relay
    } else {
        format!("{relay}{}", protocol::PATH)
    })
}

/// The one spelling of a relay's URL that this node stores and compares: the scheme and
/// host in lower case, no trailing `/`, and no `/v1` (the protocol's path, which the node
/// adds when it connects). So `ws://Relay.example.org:7070/v1/` and
/// `ws://relay.example.org:7070` are one relay. A path other than the protocol's (a relay
/// behind a proxy at `/meridian/v1`) is kept.
pub fn relay_url(text: &str) -> Result<String> {
    let text = text.trim();
    let not_a_url = || {
        crate::error::failure(
            crate::error::ErrorKind::Usage,
            format!(
                "`{text}` is not a relay URL: it should look like ws://relay.example.org:7070 (the address `meridian-relay serve` prints)"
            ),
        )
    };
    let lower = text.to_ascii_lowercase();
    let scheme = ["ws://", "wss://"]
        .into_iter()
        .find(|s| lower.starts_with(s))
        .ok_or_else(not_a_url)?;
    let rest = &text[scheme.len()..];
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    if authority.is_empty()
        || authority
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "@?#\\".contains(c))
        || path.contains(['?', '#'])
        || path.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(not_a_url());
    }
    let path = path.trim_end_matches('/');
    let path = if path == protocol::PATH { "" } else { path };
    Ok(format!("{scheme}{}{path}", authority.to_ascii_lowercase()))
}

/// How this device asks a relay to admit it: the creator registers the workspace, a member
/// who joined shows their invite proof.
pub fn registration(node: &Node, record: &WorkspaceRecord) -> Option<Register> {
    let own = node.key().verifying_key().to_bytes();
    if let Some(proof) = &record.device_proof {
        return Some(Register::Device(proof.clone()));
    }
    match (&record.salt, &record.proof) {
        (Some(salt), _) if record.creator == own => Some(Register::Create {
            salt: salt.to_vec(),
        }),
        (_, Some(proof)) => Some(Register::Join(proof.clone())),
        _ => None,
    }
}

/// The keys relays must refuse that this device may tell them of: for any of the creator's
/// devices, every key of a removed member; for any device, its member's revoked devices.
fn removed_members(node: &Node, record: &WorkspaceRecord) -> Vec<Vec<u8>> {
    let me = node.member_id();
    let revoked = record
        .state
        .members
        .iter()
        .filter(|m| m.id == me)
        .flat_map(|m| &m.devices)
        .filter(|d| !d.active())
        .filter_map(|d| hex::decode(&d.key).ok());
    if hex::decode(&me).ok().as_deref() != Some(record.creator.as_slice()) {
        return revoked.collect();
    }
    record
        .state
        .members
        .iter()
        .filter(|m| m.removed)
        .flat_map(|m| m.keys.iter().filter_map(|k| hex::decode(k).ok()))
        .chain(revoked)
        .collect()
}

/// The members this node, the workspace's creator, has not yet vouched for to the relay
/// with id `relay` (every member, for a relay not known yet): those its copy of the
/// workspace shows verified and not removed, with the invite proof of each. A relay checks
/// an invite's expiry when a device registers there, so the creator's word is how a
/// member whose invite has expired gets into a relay added later, and how the changes
/// they wrote, backfilled by others, are stored there rather than refused. Empty for
/// anyone but the creator, and without loading anything once every member was vouched for.
pub fn vouches_due(
    node: &Node,
    workspace: Id,
    record: &WorkspaceRecord,
    relay: Option<[u8; 16]>,
) -> Result<Vec<Vouchee>> {
    let creator = node.key().verifying_key().to_bytes();
    if record.creator != creator {
        return Ok(Vec::new());
    }
    let told = match relay {
        Some(relay) => super::vouched(node, workspace, relay)?,
        None => BTreeSet::new(),
    };
    // A removed member's invitees are not vouched for: the relay refuses them by their
    // own registration, and the creator cannot tell whether they joined before the removal.
    let removed: BTreeSet<&str> = record
        .state
        .members
        .iter()
        .filter(|m| m.removed)
        .map(|m| m.id.as_str())
        .collect();
    let due: Vec<[u8; 32]> = record
        .state
        .members
        .iter()
        .filter(|m| m.verified && !m.removed)
        .filter(|m| {
            !m.invited_by
                .as_deref()
                .is_some_and(|by| removed.contains(by))
        })
        .filter_map(|m| <[u8; 32]>::try_from(hex::decode(&m.id).ok()?).ok())
        .filter(|key| *key != creator && !told.contains(key))
        .collect();
    if due.is_empty() {
        return Ok(Vec::new());
    }
    let doc = node.load(workspace, workspace)?;
    let proofs = crate::workspace::member_proofs(crate::doc::View::now(&doc));
    // An invite admits one device. Two member entries that show the same invite mean that
    // someone holding a used code wrote an entry of their own, and a relay told of both
    // would admit whichever key it met first, perhaps locking the real member out of every
    // relay added later. The creator cannot tell which entry is genuine, so it vouches for
    // neither: each may still register with the invite itself, where the relay's rule of
    // one device per invite decides.
    let mut uses: std::collections::BTreeMap<&[u8], usize> = Default::default();
    for proof in proofs.values() {
        *uses.entry(proof.invite_public.as_slice()).or_default() += 1;
    }
    Ok(due
        .into_iter()
        .filter_map(|key| {
            let proof = proofs.get(&hex::encode(key))?.clone();
            if uses.get(proof.invite_public.as_slice()) != Some(&1) {
                return None;
            }
            Some(Vouchee {
                key: key.to_vec(),
                proof,
            })
        })
        .collect())
}

/// Whether a connection ends after one round or stays up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Push the outbox, pull everything new, return.
    Once,
    /// Keep going until the connection fails.
    Live,
}

/// Runs one connection to one relay for one workspace.
///
/// In [`Mode::Live`], `wake` signals new local changes; `on_round` is called after every
/// store write with what it did.
///
/// The device's registration goes only to a relay that has not welcomed it yet. Should a
/// relay that did welcome it answer `NotMember` to a `Prove` without it (its members were
/// lost, say), the node connects once more with the registration, and no more.
pub async fn connect(
    node: &Node,
    workspace: Id,
    relay: &str,
    mode: Mode,
    wake: Option<watch::Receiver<u64>>,
    mut on_change: impl FnMut(&RoundReport),
) -> Result<RoundReport> {
    let first = connect_as(
        node,
        workspace,
        relay,
        mode,
        wake.clone(),
        &mut on_change,
        Admission::UntilWelcomed,
    )
    .await;
    match first {
        Err(e)
            if e.downcast_ref::<RefusedError>().is_some_and(|refused| {
                refused.code == RefusedCode::NotMember && refused.without_registration
            }) =>
        {
            tracing::info!(
                "{relay} no longer knows this device: connecting again with its registration"
            );
            connect_as(
                node,
                workspace,
                relay,
                mode,
                wake,
                &mut on_change,
                Admission::Always,
            )
            .await
        }
        other => other,
    }
}

/// [`connect`], showing the registration as `admission` says.
async fn connect_as(
    node: &Node,
    workspace: Id,
    relay: &str,
    mode: Mode,
    mut wake: Option<watch::Receiver<u64>>,
    on_change: &mut dyn FnMut(&RoundReport),
    admission: Admission,
) -> Result<RoundReport> {
    let url = endpoint(relay)?;
    let config = WebSocketConfig::default()
        .max_message_size(Some(protocol::MAX_FRAME_BYTES))
        .max_frame_size(Some(protocol::MAX_FRAME_BYTES));
    let connector = if url.starts_with("wss://") {
        let ca = node.relay_ca(relay)?;
        Some(tokio_tungstenite::Connector::Rustls(tls::client_config(
            ca.as_deref(),
        )?))
    } else {
        None
    };
    let (socket, _) = tokio::time::timeout(
        CONNECT_TIMEOUT,
        tokio_tungstenite::connect_async_tls_with_config(
            url.as_str(),
            Some(config),
            true,
            connector,
        ),
    )
    .await
    .map_err(|_| {
        anyhow!(
            "{relay} did not answer within {}s",
            CONNECT_TIMEOUT.as_secs()
        )
    })?
    .map_err(|e| match tls::explain(relay, &e) {
        Some(words) => anyhow!(words),
        None => anyhow::Error::new(e).context(format!("cannot connect to {relay}")),
    })?;
    if mode == Mode::Live {
        tracing::info!("connected to {relay}");
    }
    let (mut sink, mut source) = socket.split();
    let (frames_tx, mut frames_rx) = mpsc::unbounded_channel::<Message>();
    let writer = async move {
        while let Some(message) = frames_rx.recv().await {
            sink.send(message)
                .await
                .context("the connection to the relay failed")?;
        }
        let _ = sink.close().await;
        Ok::<(), anyhow::Error>(())
    };

    let mut report = RoundReport {
        relay: relay.to_string(),
        ..RoundReport::default()
    };
    let pinger = frames_tx.clone();
    let mut send = |frame: Frame| {
        frames_tx
            .send(Message::Binary(frame.encode().into()))
            .map_err(|_| anyhow!("the connection to {relay} closed"))
    };
    // Pings keep proxies that cut idle connections from cutting this one, and tell a dead
    // relay (or a dead network path) from a quiet one within two intervals.
    let ping_every = ping_interval();
    let mut pings = tokio::time::interval_at(tokio::time::Instant::now() + ping_every, ping_every);
    pings.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut heard = Instant::now();
    // When the last ping went out: the relay is gone when nothing came since a ping at
    // least an interval old.
    let mut pinged: Option<Instant> = None;
    let main = async {
        let (mut session, mut outputs) =
            begin_with(node, workspace, relay, Instant::now(), admission)?;
        let mut poll = tokio::time::interval(POLL_INTERVAL);
        // The first idle moment of a live connection looks for snapshots due.
        let mut last_snapshots: Option<Instant> = None;
        let mut ended: Option<anyhow::Error> = None;
        loop {
            carry_out(
                node,
                workspace,
                relay,
                &mut session,
                std::mem::take(&mut outputs),
                &mut send,
                &mut report,
                on_change,
            )?;
            if let Some(e) = ended.take() {
                return Err(e);
            }
            if session.is_closed() {
                bail!("the connection to {relay} ended");
            }
            if mode == Mode::Once && session.is_idle() {
                // Edits made while this round ran (or beyond one read) go too, then
                // snapshots due; the round ends when there is nothing left.
                outputs = when_idle(node, workspace, relay, &mut session, Instant::now())?;
                if outputs.is_empty() {
                    return Ok(());
                }
                continue;
            }
            if mode == Mode::Live
                && session.is_idle()
                && last_snapshots.is_none_or(|at| at.elapsed() >= SNAPSHOT_INTERVAL)
            {
                last_snapshots = Some(Instant::now());
                outputs = snapshots(
                    node,
                    workspace,
                    relay,
                    &mut session,
                    &Default::default(),
                    Instant::now(),
                )?;
                if !outputs.is_empty() {
                    continue;
                }
            }
            let tick = tokio::time::sleep(Duration::from_secs(1));
            tokio::select! {
                // Messages already here first, so a busy moment of this loop's own is never
                // taken for the relay's silence.
                biased;
                message = source.next() => {
                    heard = Instant::now();
                    // Frames that arrived meanwhile are taken in too, so that their entries
                    // are applied together (see `carry_out`).
                    let mut frames: Vec<Frame> = read_frame(relay, message)?.into_iter().collect();
                    for _ in 1..READY_FRAMES {
                        let Some(message) = source.next().now_or_never() else {
                            break;
                        };
                        match read_frame(relay, message) {
                            Ok(frame) => frames.extend(frame),
                            // The frames before the end go first (a refusal says why).
                            Err(e) => {
                                ended = Some(e);
                                break;
                            }
                        }
                    }
                    let now = Instant::now();
                    for frame in frames {
                        outputs.extend(session.receive(frame, now));
                    }
                }
                _ = poll.tick() => {
                    if mode == Mode::Live && !still_listed(node, workspace, relay) {
                        return Ok(());
                    }
                    outputs = refresh(node, workspace, &mut session, Instant::now())?;
                }
                changed = async {
                    match wake.as_mut() {
                        Some(wake) => wake.changed().await,
                        None => std::future::pending().await,
                    }
                } => {
                    if changed.is_err() {
                        wake = None;
                    }
                    outputs = refresh(node, workspace, &mut session, Instant::now())?;
                }
                _ = tick => {
                    outputs = session.tick(Instant::now());
                }
                _ = pings.tick() => {
                    if let Some(at) = pinged
                        && at.elapsed() >= ping_every
                        && heard < at
                    {
                        bail!(
                            "{relay} stopped answering: nothing, not even a reply to a ping, for {}s",
                            heard.elapsed().as_secs()
                        );
                    }
                    pinger
                        .send(Message::Ping(Default::default()))
                        .map_err(|_| anyhow!("the connection to {relay} closed"))?;
                    pinged = Some(Instant::now());
                }
            }
        }
    };
    tokio::select! {
        result = main => result?,
        result = writer => {
            result?;
            bail!("the connection to {relay} closed");
        }
    }
    Ok(report)
}

/// Time between websocket pings to a relay: 25 s, under the idle timeouts of common
/// proxies (nginx cuts a websocket idle for 60 s by default), or `MERIDIAN_PING_SECS`.
fn ping_interval() -> Duration {
    std::env::var("MERIDIAN_PING_SECS")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s > 0.0)
        .map_or(Duration::from_secs(25), Duration::from_secs_f64)
}

/// The frame in a websocket message: `None` for messages that carry none (pings), an error
/// when the connection ended or the frame does not decode.
fn read_frame(
    relay: &str,
    message: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>,
) -> Result<Option<Frame>> {
    match message {
        None | Some(Ok(Message::Close(_))) => bail!("{relay} closed the connection"),
        Some(Err(e)) => Err(anyhow!(e).context(format!("the connection to {relay} failed"))),
        Some(Ok(Message::Binary(bytes))) => Frame::decode(&bytes)
            .map(Some)
            .with_context(|| format!("{relay} sent a frame this node cannot read")),
        Some(Ok(_)) => Ok(None),
    }
}

/// A session for one workspace and relay, resuming from the stored cursor, and its first
/// outputs: the opening frame, the outbox to push and the revocations the relay still owes.
pub fn begin(
    node: &Node,
    workspace: Id,
    relay: &str,
    now: Instant,
) -> Result<(Session, Vec<Output>)> {
    begin_with(node, workspace, relay, now, Admission::UntilWelcomed)
}

/// [`begin`], showing the registration as `admission` says.
pub fn begin_with(
    node: &Node,
    workspace: Id,
    relay: &str,
    now: Instant,
    admission: Admission,
) -> Result<(Session, Vec<Output>)> {
    let (_, record) = node.workspace(Some(&workspace.hex()))?;
    let stored = super::cursor(node, workspace, relay)?;
    let relay_id = stored
        .relay
        .as_ref()
        .and_then(|r| <[u8; 16]>::try_from(r.as_slice()).ok());
    let mut session = Session::new(
        node.key().clone(),
        workspace.0,
        registration(node, &record),
        relay_id,
        stored.pulled,
        stored.pushed,
    )
    .with_admission(admission)
    .with_shared(stored.shared);
    let mut outputs = session.start(now);
    outputs.extend(refresh(node, workspace, &mut session, now)?);
    Ok((session, outputs))
}

/// What changed locally since the session last looked: new outbox entries to push, and
/// members the creator removed whom the relay must now refuse (a removal made while a
/// connection is up reaches the relay on that connection, not only on the next one).
pub fn refresh(
    node: &Node,
    workspace: Id,
    session: &mut Session,
    now: Instant,
) -> Result<Vec<Output>> {
    let (_, record) = node.workspace(Some(&workspace.hex()))?;
    let mut outputs = session.local_runs(
        super::outgoing(
            node,
            workspace,
            session.queued_to(),
            OUTBOX_BATCH,
            session.takes_shared(),
        )?,
        now,
    );
    let removed = removed_members(node, &record);
    if !removed.is_empty() {
        outputs.extend(session.revoke(removed, now));
    }
    if session.takes_vouches() {
        let vouches = vouches_due(node, workspace, &record, session.relay())?;
        if !vouches.is_empty() {
            outputs.extend(session.vouch(vouches, now));
        }
    }
    Ok(outputs)
}

/// Snapshots due for this relay by `policy` ([`crate::snapshot::due`]), handed to an idle
/// session: the node has applied the relay's log up to the session's cursor, so that is
/// what they cover.
pub fn snapshots(
    node: &Node,
    workspace: Id,
    relay: &str,
    session: &mut Session,
    policy: &crate::snapshot::Policy,
    now: Instant,
) -> Result<Vec<Output>> {
    if !session.is_idle() {
        return Ok(Vec::new());
    }
    let due = crate::snapshot::due(node, workspace, relay, session.cursor(), policy)?;
    Ok(if due.is_empty() {
        Vec::new()
    } else {
        session.snapshot(due, now)
    })
}

/// What an idle session of one round does next: push what was written meanwhile (runs of
/// one document coalesced), then hand over the snapshots due. Empty when the round is over.
pub fn when_idle(
    node: &Node,
    workspace: Id,
    relay: &str,
    session: &mut Session,
    now: Instant,
) -> Result<Vec<Output>> {
    let rest = super::outgoing(
        node,
        workspace,
        session.queued_to(),
        OUTBOX_BATCH,
        session.takes_shared(),
    )?;
    if !rest.is_empty() {
        return Ok(session.local_runs(rest, now));
    }
    snapshots(node, workspace, relay, session, &Default::default(), now)
}

/// Carries out a session's outputs, and those they lead to: a relay new to the workspace
/// (or whose log was replaced) gets the whole history, not just what is still in the
/// outbox. Frames go to `send`; `on_change` hears of every store write.
#[allow(clippy::too_many_arguments)]
pub fn carry_out(
    node: &Node,
    workspace: Id,
    relay: &str,
    session: &mut Session,
    mut outputs: Vec<Output>,
    send: &mut dyn FnMut(Frame) -> Result<()>,
    report: &mut RoundReport,
    on_change: &mut dyn FnMut(&RoundReport),
) -> Result<()> {
    outputs = merge_applies(outputs);
    while !outputs.is_empty() {
        let mut more = Vec::new();
        for output in outputs.drain(..) {
            let mut delta = RoundReport {
                relay: relay.to_string(),
                ..RoundReport::default()
            };
            if let Output::NewRelay(relay_id) = output {
                // Vouches go before the backfill, so that the envelopes of members the
                // relay has not met are stored, not refused.
                let (_, record) = node.workspace(Some(&workspace.hex()))?;
                let vouches = vouches_due(node, workspace, &record, Some(relay_id))?;
                more.extend(session.vouch(vouches, Instant::now()));
                let all = super::all_envelopes(node, workspace)?;
                more.extend(session.backfill(all, Instant::now()));
            }
            if perform(node, workspace, relay, output, send, &mut delta)? {
                on_change(&delta);
            }
            report.absorb(delta);
        }
        outputs = more;
    }
    Ok(())
}

/// Adjacent `Apply` outputs (the entries of frames that arrived together) made one, up to
/// [`MERGED_ENTRIES`] and [`MERGED_BYTES`]. Applying entries loads every document they touch from
/// its stored records, so nine frames applied one by one loaded a document nine times: most
/// of a node's time when a team comes back online at once.
fn merge_applies(outputs: Vec<Output>) -> Vec<Output> {
    let mut merged: Vec<Output> = Vec::with_capacity(outputs.len());
    for output in outputs {
        match (merged.last_mut(), output) {
            (
                Some(Output::Apply { entries, up_to }),
                Output::Apply {
                    entries: more,
                    up_to: next,
                },
            ) if entries.len() + more.len() <= MERGED_ENTRIES
                && entries
                    .iter()
                    .chain(&more)
                    .map(|(_, e)| e.len())
                    .sum::<usize>()
                    <= MERGED_BYTES =>
            {
                entries.extend(more);
                *up_to = (*up_to).max(next);
            }
            (_, output) => merged.push(output),
        }
    }
    merged
}

/// Carries out one output of the session. Returns whether the store changed.
fn perform(
    node: &Node,
    workspace: Id,
    relay: &str,
    output: Output,
    send: &mut dyn FnMut(Frame) -> Result<()>,
    report: &mut RoundReport,
) -> Result<bool> {
    match output {
        Output::Send(frame) => {
            send(frame)?;
            Ok(false)
        }
        Output::NewRelay(id) => {
            super::reset_cursor(node, workspace, relay, id)?;
            Ok(false)
        }
        Output::Apply { entries, up_to } => {
            report.pulled += entries.len();
            let applied = super::apply(node, workspace, relay, entries, up_to)?;
            report.applied += applied.applied;
            report.held += applied.held;
            report.refused_late += applied.refused_late;
            report.documents.extend(applied.documents.iter().cloned());
            let changed = applied.applied > 0 || !applied.rejected.is_empty() || applied.held > 0;
            report.rejected.extend(applied.rejected);
            Ok(changed)
        }
        Output::Acked {
            results,
            pushed,
            pulled,
        } => {
            report.pushed += results
                .iter()
                .filter(|(_, r)| !matches!(r, PushResult::Rejected(_)))
                .count();
            let rejected = super::acked(node, workspace, relay, &results, pushed, pulled)?;
            let changed = report.pushed > 0 || !rejected.is_empty();
            report.rejected.extend(rejected);
            Ok(changed)
        }
        Output::SnapshotStored {
            doc,
            covers,
            result,
        } => {
            let kept = !matches!(result, PushResult::Rejected(_));
            if let PushResult::Rejected(reason) = &result {
                tracing::info!(
                    "{relay} did not keep the snapshot of {}: {reason}",
                    Id(doc).short()
                );
            }
            crate::snapshot::answered(node, workspace, relay, doc, covers, kept)?;
            Ok(false)
        }
        Output::Vouched {
            relay: relay_id,
            results,
        } => {
            let keys: Vec<[u8; 32]> = results
                .iter()
                .filter_map(|(key, _)| key.as_slice().try_into().ok())
                .collect();
            super::record_vouched(node, workspace, relay_id, &keys)?;
            for (key, result) in results {
                match result {
                    VouchResult::Admitted => tracing::info!(
                        "{relay} admitted member {} on the creator's word",
                        crate::id::prefix(&hex::encode(&key), 12)
                    ),
                    VouchResult::Known => {}
                    VouchResult::Refused(reason) => report.errors.push(format!(
                        "it would not admit member {} on the creator's word: {reason}",
                        crate::id::prefix(&hex::encode(&key), 12)
                    )),
                }
            }
            Ok(false)
        }
        Output::Event(Event::Refused {
            code,
            reason,
            without_registration,
        }) => Err(RefusedError {
            relay: relay.to_string(),
            code,
            reason,
            without_registration,
        }
        .into()),
        Output::Event(Event::Failed(why)) => bail!("{relay}: {why}"),
        Output::Event(Event::RelayError(reason)) => {
            report.errors.push(reason);
            Ok(true)
        }
        Output::Event(Event::Revoked(member)) => {
            tracing::info!(
                "{relay} revoked member {}",
                crate::id::prefix(&hex::encode(member), 12)
            );
            Ok(false)
        }
        Output::Event(Event::Welcome { shared, .. }) => {
            super::remember_shared(node, workspace, relay, shared)?;
            Ok(false)
        }
        Output::Event(Event::CaughtUp) => Ok(false),
    }
}

/// One sync round with every relay of a workspace (or the given ones), one after another.
/// Each relay's result is returned separately: one unreachable relay does not stop the rest.
pub fn sync_once(
    node: &Node,
    workspace: Id,
    relays: &[String],
) -> Result<Vec<(String, Result<RoundReport>)>> {
    sync_once_with(node, workspace, relays, &mut |_| {})
}

/// [`sync_once`], telling `progress` what each relay's round has done so far, every time
/// it stores something.
pub fn sync_once_with(
    node: &Node,
    workspace: Id,
    relays: &[String],
    progress: &mut dyn FnMut(&RoundReport),
) -> Result<Vec<(String, Result<RoundReport>)>> {
    node.publish_device_key(workspace)?;
    node.settle_epochs(workspace)?;
    node.settle_removals(workspace)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    Ok(runtime.block_on(async {
        let mut results = Vec::new();
        for relay in relays {
            let mut so_far = RoundReport {
                relay: relay.clone(),
                ..RoundReport::default()
            };
            progress(&so_far);
            let result = connect(node, workspace, relay, Mode::Once, None, |delta| {
                so_far.pushed += delta.pushed;
                so_far.applied += delta.applied;
                so_far.pulled += delta.pulled;
                progress(&so_far);
            })
            .await;
            results.push((relay.clone(), result));
        }
        results
    }))
}

/// The daemon's wake-up socket in a home.
pub fn socket_path(home: &Path) -> PathBuf {
    home.join("daemon.sock")
}

/// Tells a running daemon that the outbox has new entries. Best effort and instant: when no
/// daemon runs, nothing happens (the next `sync` or daemon start pushes them).
pub fn wake_daemon(home: &Path) {
    #[cfg(unix)]
    {
        let path = socket_path(home);
        if path.exists()
            && let Ok(socket) = std::os::unix::net::UnixDatagram::unbound()
        {
            let _ = socket.set_nonblocking(true);
            let _ = socket.send_to(b"w", &path);
        }
    }
    #[cfg(not(unix))]
    let _ = home;
}

/// Runs the daemon until ctrl-c or SIGTERM: one live connection per (workspace, relay),
/// reconnecting with exponential backoff and jitter.
pub fn daemon(node: &Node, on_tick: &mut dyn FnMut(&Node)) -> Result<()> {
    let lock_path = node.home().join("daemon.lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .with_context(|| format!("cannot open {}", lock_path.display()))?;
    if lock.try_lock().is_err() {
        bail!(
            "a meridian daemon is already running for {}",
            node.home().display()
        );
    }
    let targets = daemon_targets(node)?;
    for workspace in targets.iter().map(|(w, _)| *w).collect::<BTreeSet<Id>>() {
        node.publish_device_key(workspace)?;
        node.settle_epochs(workspace)?;
        node.settle_removals(workspace)?;
    }
    if targets.is_empty() {
        bail!(
            "no workspace of this node lists a relay: add one with `meridian workspace relay add URL`"
        );
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let (wake_tx, wake_rx) = watch::channel(0u64);
        let listener = wake_listener(node.home(), wake_tx)?;
        tracing::info!(
            "daemon started: {} connection(s); ctrl-c stops it",
            targets.len()
        );
        // Relays a workspace starts or stops sharing are picked up as the workspace
        // document changes: a connection ends when its relay leaves the list, and a new
        // relay gets one.
        let mut running: BTreeSet<(Id, String)> = BTreeSet::new();
        let mut connections = futures_util::stream::FuturesUnordered::new();
        let mut look = tokio::time::interval(TARGETS_INTERVAL);
        let work = async {
            loop {
                tokio::select! {
                    _ = look.tick() => {
                        on_tick(node);
                        for target in daemon_targets(node).unwrap_or_default() {
                            if running.insert(target.clone()) {
                                let wake = wake_rx.clone();
                                connections.push(async move {
                                    keep_connected(node, target.0, &target.1, wake).await;
                                    target
                                });
                            }
                        }
                    }
                    Some(ended) = connections.next(), if !connections.is_empty() => {
                        running.remove(&ended);
                    }
                }
            }
        };
        tokio::select! {
            () = work => {}
            _ = listener => {}
            _ = meridian_relay::server::shutdown_signal() => tracing::info!("stopping"),
        }
        let _ = std::fs::remove_file(socket_path(node.home()));
        Ok(())
    })
}

/// Listens for wake-ups from other `meridian` processes of this home.
fn wake_listener(
    home: &Path,
    wake: watch::Sender<u64>,
) -> Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    {
        let path = socket_path(home);
        let _ = std::fs::remove_file(&path);
        let socket = tokio::net::UnixDatagram::bind(&path)
            .with_context(|| format!("cannot listen on {}", path.display()))?;
        Ok(async move {
            let mut buffer = [0u8; 16];
            while socket.recv(&mut buffer).await.is_ok() {
                wake.send_modify(|n| *n += 1);
            }
        })
    }
    #[cfg(not(unix))]
    {
        let _ = (home, wake);
        Ok(std::future::pending())
    }
}

/// How often the daemon looks for relays added to or removed from its workspaces.
const TARGETS_INTERVAL: Duration = Duration::from_secs(2);

/// Every (workspace, relay) this node syncs with.
fn daemon_targets(node: &Node) -> Result<Vec<(Id, String)>> {
    Ok(node
        .workspaces()?
        .into_iter()
        .flat_map(|(id, record)| record.relays.into_iter().map(move |r| (id, r)))
        .collect())
}

/// Whether the workspace still lists the relay (an error reading it counts as yes).
fn still_listed(node: &Node, workspace: Id, relay: &str) -> bool {
    node.workspace(Some(&workspace.hex()))
        .map(|(_, record)| record.relays.iter().any(|r| r == relay))
        .unwrap_or(true)
}

/// Keeps one (workspace, relay) connection up, with backoff between attempts, until the
/// workspace no longer lists the relay.
async fn keep_connected(node: &Node, workspace: Id, relay: &str, wake: watch::Receiver<u64>) {
    let mut backoff = FIRST_BACKOFF;
    loop {
        if !still_listed(node, workspace, relay) {
            tracing::info!("{relay} is no longer among the workspace's relays: disconnecting");
            return;
        }
        let started = Instant::now();
        let result = connect(
            node,
            workspace,
            relay,
            Mode::Live,
            Some(wake.clone()),
            log_round,
        )
        .await;
        match result {
            Ok(_) => {}
            Err(e) => {
                if let Some(refused) = e.downcast_ref::<RefusedError>()
                    && !matches!(refused.code, RefusedCode::ShuttingDown | RefusedCode::Busy)
                {
                    tracing::error!("{}", crate::error::describe(&e));
                } else {
                    tracing::warn!("{}", crate::error::describe(&e));
                }
            }
        }
        if started.elapsed() > Duration::from_secs(30) {
            backoff = FIRST_BACKOFF;
        }
        let wait = full_jitter(backoff, u32::from_le_bytes(crate::id::random_bytes::<4>()));
        tracing::info!("reconnecting to {relay} in {:.1}s", wait.as_secs_f64());
        tokio::time::sleep(wait).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// The first wait before reconnecting, and the longest: the wait doubles between them.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// A wait drawn evenly from zero to `backoff` ("full jitter"), `random` being a uniform
/// u32: when a relay or its proxy restarts, its members come back spread over the whole
/// window instead of together at its end.
fn full_jitter(backoff: Duration, random: u32) -> Duration {
    backoff.mul_f64(f64::from(random) / f64::from(u32::MAX))
}

fn log_round(report: &RoundReport) {
    tracing::info!(
        "{}: pushed {}, pulled {}, {} change(s) applied to {} document(s){}",
        report.relay,
        report.pushed,
        report.pulled,
        report.applied,
        report.documents.len(),
        if report.held > 0 {
            format!(", {} held waiting for what they depend on", report.held)
        } else {
            String::new()
        }
    );
    for rejected in &report.rejected {
        tracing::warn!("rejected: {}", rejected.reason);
    }
    for error in &report.errors {
        tracing::warn!("{}: {error}", report.relay);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnects_spread_over_the_whole_backoff() {
        let backoff = Duration::from_secs(8);
        assert_eq!(full_jitter(backoff, 0), Duration::ZERO);
        assert_eq!(full_jitter(backoff, u32::MAX), backoff);
        let middle = full_jitter(backoff, u32::MAX / 2);
        assert!(middle > Duration::from_millis(3990) && middle < Duration::from_millis(4010));
    }

    #[test]
    fn the_creator_vouches_for_no_one_whose_invite_another_entry_shows() {
        use crate::node::tests::{invite, new_home, profile};
        let tmp = tempfile::tempdir().unwrap();
        let (home, workspace) = new_home(&tmp);
        let ana = Node::open(&home).unwrap();
        // Bo and Cy each get an invite; Eve, who saw Bo's code, joins with it too.
        let (bo_code, cy_code) = (invite(&ana, workspace), invite(&ana, workspace));
        let limits = crate::ingest::Limits::default();
        let mut keys = Vec::new();
        for (name, code) in [("Bo", &bo_code), ("Cy", &cy_code), ("Eve", &bo_code)] {
            let member = Node::init(&tmp.path().join(name), &profile(name)).unwrap();
            member.join(code).unwrap();
            let joined = crate::bundle::export(&member, workspace, &[workspace]).unwrap();
            crate::bundle::merge(&ana, &joined, &limits).unwrap();
            keys.push(member.key().verifying_key().to_bytes().to_vec());
        }
        let (_, record) = ana.workspace(Some(&workspace.hex())).unwrap();
        let due: Vec<Vec<u8>> = vouches_due(&ana, workspace, &record, None)
            .unwrap()
            .into_iter()
            .map(|v| v.key)
            .collect();
        assert_eq!(
            due,
            vec![keys[1].clone()],
            "only Cy, whose invite is hers alone"
        );
    }

    fn apply(seqs: &[u64], size: usize) -> Output {
        Output::Apply {
            entries: seqs.iter().map(|s| (*s, vec![0; size])).collect(),
            up_to: *seqs.last().unwrap(),
        }
    }

    fn shape(outputs: &[Output]) -> Vec<(usize, u64)> {
        outputs
            .iter()
            .map(|o| match o {
                Output::Apply { entries, up_to } => (entries.len(), *up_to),
                _ => (0, 0),
            })
            .collect()
    }

    #[test]
    fn entries_of_frames_taken_in_together_are_applied_together_in_order() {
        let acked = || Output::Acked {
            results: Vec::new(),
            pushed: None,
            pulled: None,
        };
        let merged = merge_applies(vec![
            apply(&[1, 2], 10),
            apply(&[3], 10),
            apply(&[4, 5, 6], 10),
            acked(),
            apply(&[8], 10),
        ]);
        assert_eq!(shape(&merged), vec![(6, 6), (0, 0), (1, 8)]);
        let Output::Apply { entries, .. } = &merged[0] else {
            unreachable!()
        };
        let seqs: Vec<u64> = entries.iter().map(|(s, _)| *s).collect();
        assert_eq!(seqs, [1, 2, 3, 4, 5, 6]);
        // Bounded.
        let half = MERGED_BYTES / 2 + 1;
        let merged = merge_applies(vec![apply(&[1], half), apply(&[2], half)]);
        assert_eq!(shape(&merged), vec![(1, 1), (1, 2)]);
    }
}
