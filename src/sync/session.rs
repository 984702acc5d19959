//! The node's side of the sync protocol as a state machine without I/O.
//!
//! Inputs are frames from the relay, the node's outbox (local changes) and the time; outputs
//! are frames to send, store writes (entries to apply with the cursor they lead to, outbox
//! entries the relay acknowledged) and events. [`super::net`] drives it over a websocket;
//! the tests below drive it over an in-memory relay.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::ops::RangeInclusive;
use std::time::{Duration, Instant};

use ed25519_dalek::{Signer, SigningKey};
use meridian_relay::protocol::{
    Frame, MAX_BATCH_BYTES, MAX_BATCH_ENTRIES, MAX_VOUCHES, PROTOCOL_VERSION, PushResult,
    RefusedCode, Register, VouchResult, Vouchee, auth_message,
};

/// How long the relay may take to answer before the session gives up on the connection.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// Something that happened, for the driver to report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// Authenticated; the relay's log ends at `head`.
    Welcome {
        /// The relay log's last sequence number.
        head: u64,
        /// Whether the relay stores shared envelopes.
        shared: bool,
    },
    /// Everything the relay had when the node subscribed was delivered.
    CaughtUp,
    /// The relay refused the connection.
    Refused {
        /// Machine-readable reason.
        code: RefusedCode,
        /// The relay's explanation.
        reason: String,
        /// Whether this connection's `Prove` left out the device's registration because the
        /// relay had welcomed it before. A `NotMember` then means the relay forgot the
        /// device: the driver connects once more with [`Admission::Always`].
        without_registration: bool,
    },
    /// The relay revoked a member at our request.
    Revoked(Vec<u8>),
    /// The relay reported a failed request.
    RelayError(String),
    /// The relay broke the protocol or stopped answering; the driver closes the connection.
    Failed(String),
}

/// What the driver must do.
#[derive(Debug, PartialEq, Eq)]
pub enum Output {
    /// Send this frame.
    Send(Frame),
    /// The relay's id differs from the one the stored cursor belongs to: its log is another
    /// one, so the driver resets the cursor (pull from the start, push the whole outbox).
    /// It comes once the relay has welcomed the device, so a cursor that names a relay id
    /// says that relay admitted the device.
    NewRelay([u8; 16]),
    /// Apply these entries and store `up_to` as the pull cursor, in one transaction.
    Apply {
        /// (relay sequence number, encoded envelope).
        entries: Vec<(u64, Vec<u8>)>,
        /// The new cursor.
        up_to: u64,
    },
    /// The relay answered for these outbox entries: remove them, record rejections, and
    /// store `pushed` as the push cursor, in one transaction.
    Acked {
        /// (outbox sequence number, what the relay did with it).
        results: Vec<(u64, PushResult)>,
        /// The outbox position everything before which the relay has answered for (`None`
        /// when the push held only backfilled envelopes).
        pushed: Option<u64>,
        /// A new pull cursor: the push's entries directly followed the old one.
        pulled: Option<u64>,
    },
    /// The relay answered for a snapshot: record it so it is not sent again.
    SnapshotStored {
        /// The document.
        doc: [u8; 16],
        /// The log position it covers.
        covers: u64,
        /// What the relay did with it.
        result: PushResult,
    },
    /// The relay answered for members this node (the creator) vouched for: record them as
    /// told to that relay, so they are not sent again.
    Vouched {
        /// The relay's id.
        relay: [u8; 16],
        /// (member key, what the relay did).
        results: Vec<(Vec<u8>, VouchResult)>,
    },
    /// Something to report.
    Event(Event),
}

/// A document snapshot for the relay ([`crate::snapshot`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// The document.
    pub doc: [u8; 16],
    /// The last log position whose entry of the document it holds.
    pub covers: u64,
    /// The sealed envelope.
    pub envelope: Vec<u8>,
}

/// When the device shows a relay its registration (the creator's salt or a member's join
/// proof, a few hundred bytes) in `Prove`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Admission {
    /// Until the relay has welcomed the device: not to a relay whose id the stored cursor
    /// names, since a relay admits a device it knows without it.
    #[default]
    UntilWelcomed,
    /// On every connection: for a reconnection after a relay answered `NotMember` to a
    /// `Prove` without it.
    Always,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    AwaitChallenge,
    AwaitWelcome,
    Ready,
    Closed,
}

/// Outbox entries that travel as one envelope: positions `first..=last` of the outbox, and
/// the envelope that carries all their changes (the entry itself when there is one).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outgoing {
    /// The first outbox position covered.
    pub first: u64,
    /// The last outbox position covered.
    pub last: u64,
    /// The encoded envelope.
    pub envelope: Vec<u8>,
}

/// A push sent and not yet answered.
struct InFlight {
    id: u64,
    /// The outbox positions each envelope covers, `None` for a backfilled one.
    seqs: Vec<Option<RangeInclusive<u64>>>,
}

/// One connection's protocol state.
pub struct Session {
    key: SigningKey,
    workspace: [u8; 16],
    register: Option<Register>,
    admission: Admission,
    /// Whether this connection's `Prove` left the registration out.
    registration_omitted: bool,
    relay: Option<[u8; 16]>,
    /// A relay id not the stored cursor's, to report once the relay welcomes the device.
    new_relay: Option<[u8; 16]>,
    cursor: u64,
    /// Log positions above the cursor that hold this node's own pushes (the relay said so
    /// in `Stored`); the relay does not send them back, so they fill gaps in what it sends.
    own: BTreeSet<u64>,
    /// Ranges of log positions above the cursor (start → inclusive end) that the relay
    /// skipped because a snapshot it sent holds their entries.
    skipped: BTreeMap<u64, u64>,
    /// Snapshots to push.
    snapshots: VecDeque<Snapshot>,
    /// The snapshot sent and not yet answered: (push id, document, covers).
    snapshot_in_flight: Option<(u64, [u8; 16], u64)>,
    state: State,
    caught_up: bool,
    /// Envelopes not yet pushed on this connection, in order, with the outbox positions
    /// each covers (`None` for a backfilled one).
    queue: VecDeque<(Option<RangeInclusive<u64>>, Vec<u8>)>,
    /// The outbox sequence number after the last one queued.
    queued_to: u64,
    /// Whether the relay takes shared envelopes: what it said when it welcomed this
    /// session, or before that, on the last connection.
    shared: bool,
    in_flight: Option<InFlight>,
    next_push: u64,
    revokes: Vec<Vec<u8>>,
    /// Members whose revocation this session already asked for (or queued).
    asked: BTreeSet<Vec<u8>>,
    /// Members to vouch for, not yet sent.
    vouches: VecDeque<Vouchee>,
    /// Members this session already queued a vouch for.
    vouched: BTreeSet<Vec<u8>>,
    /// The vouch sent and not yet answered: (id, the member keys it named).
    vouch_in_flight: Option<(u64, Vec<Vec<u8>>)>,
    /// Whether the relay's welcome said it takes vouches.
    takes_vouch: bool,
    deadline: Option<Instant>,
}

/// The most characters of a relay's explanation a node keeps.
pub const MAX_REASON_CHARS: usize = 300;

/// A relay's explanation made safe to print: control characters (terminal escapes among
/// them) become `\u{fffd}`, and it is cut to [`MAX_REASON_CHARS`].
pub fn printable(reason: &str) -> String {
    let mut text: String = reason
        .chars()
        .take(MAX_REASON_CHARS)
        .map(|c| if c.is_control() { '\u{fffd}' } else { c })
        .collect();
    if reason.chars().nth(MAX_REASON_CHARS).is_some() {
        text.push('…');
    }
    text
}

impl Session {
    /// A session for one workspace, resuming from a stored cursor: the relay id it belongs
    /// to, the last sequence number applied, and the outbox position already pushed.
    pub fn new(
        key: SigningKey,
        workspace: [u8; 16],
        register: Option<Register>,
        relay: Option<[u8; 16]>,
        cursor: u64,
        pushed: u64,
    ) -> Session {
        Session {
            key,
            workspace,
            register,
            admission: Admission::default(),
            registration_omitted: false,
            relay,
            new_relay: None,
            cursor,
            own: BTreeSet::new(),
            skipped: BTreeMap::new(),
            snapshots: VecDeque::new(),
            snapshot_in_flight: None,
            state: State::AwaitChallenge,
            caught_up: false,
            queue: VecDeque::new(),
            queued_to: pushed,
            shared: false,
            in_flight: None,
            next_push: 1,
            revokes: Vec::new(),
            asked: BTreeSet::new(),
            vouches: VecDeque::new(),
            vouched: BTreeSet::new(),
            vouch_in_flight: None,
            takes_vouch: false,
            deadline: None,
        }
    }

    /// Whether the relay took shared envelopes when it last welcomed this device, until
    /// this session's welcome says.
    pub fn with_shared(mut self, shared: bool) -> Session {
        self.shared = shared;
        self
    }

    /// Whether pushes may carry shared envelopes (several documents' changes, signed once).
    pub fn takes_shared(&self) -> bool {
        self.shared
    }

    /// Sets when the device shows its registration (by default, until welcomed).
    pub fn with_admission(mut self, admission: Admission) -> Session {
        self.admission = admission;
        self
    }

    /// Opens the exchange.
    pub fn start(&mut self, now: Instant) -> Vec<Output> {
        self.deadline = Some(now + ANSWER_TIMEOUT);
        vec![Output::Send(Frame::Hello {
            version: PROTOCOL_VERSION,
            workspace: self.workspace.to_vec(),
            key: self.key.verifying_key().to_bytes().to_vec(),
            // The relay's catch-up and live batches come compressed when that pays.
            deflate: true,
        })]
    }

    /// Whether the relay accepted the connection and it is still open.
    pub fn is_ready(&self) -> bool {
        self.state == State::Ready
    }

    /// Whether the session ended (refused, failed or the relay broke the protocol).
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// Whether one round is complete: caught up, every queued change pushed and answered.
    pub fn is_idle(&self) -> bool {
        self.state == State::Ready
            && self.caught_up
            && self.in_flight.is_none()
            && self.queue.is_empty()
            && self.revokes.is_empty()
            && self.vouches.is_empty()
            && self.vouch_in_flight.is_none()
            && self.snapshots.is_empty()
            && self.snapshot_in_flight.is_none()
    }

    /// Snapshots to push once the outbox is: (document, the log position it covers, the
    /// sealed envelope). They go one at a time, after the session caught up.
    pub fn snapshot(&mut self, snapshots: Vec<Snapshot>, now: Instant) -> Vec<Output> {
        self.snapshots.extend(snapshots);
        self.pump(now)
    }

    /// The relay log position up to which this node has everything.
    pub fn cursor(&self) -> u64 {
        self.cursor
    }

    /// The outbox position after the last entry handed to the session.
    pub fn queued_to(&self) -> u64 {
        self.queued_to
    }

    /// Local changes: outbox entries (sequence number, envelope) in order, an envelope each.
    /// Entries already handed over are ignored.
    pub fn local(&mut self, entries: Vec<(u64, Vec<u8>)>, now: Instant) -> Vec<Output> {
        let runs = entries
            .into_iter()
            .map(|(seq, envelope)| Outgoing {
                first: seq,
                last: seq,
                envelope,
            })
            .collect();
        self.local_runs(runs, now)
    }

    /// Local changes: runs of outbox entries in order, each run travelling as one envelope
    /// ([`crate::sync::outgoing`] makes them). The relay's answer for a run's envelope is
    /// its answer for every entry of the run, and the push cursor passes the whole run at
    /// once, so a run is acknowledged, or retried, whole. Runs starting before what was
    /// already handed over are ignored.
    pub fn local_runs(&mut self, runs: Vec<Outgoing>, now: Instant) -> Vec<Output> {
        for run in runs {
            if run.first >= self.queued_to && run.last >= run.first {
                self.queued_to = run.last + 1;
                self.queue
                    .push_back((Some(run.first..=run.last), run.envelope));
            }
        }
        self.pump(now)
    }

    /// Envelopes the node already has, for a relay that may lack them (one it has never
    /// synced with, or one whose log was replaced): they go out before the outbox, and
    /// their answers touch no outbox position.
    pub fn backfill(&mut self, envelopes: Vec<Vec<u8>>, now: Instant) -> Vec<Output> {
        for envelope in envelopes.into_iter().rev() {
            self.queue.push_front((None, envelope));
        }
        self.pump(now)
    }

    /// Asks the relay to revoke members (only the workspace creator may).
    /// Members already asked for on this session are skipped, so the driver may pass the
    /// whole removed list whenever it looks.
    pub fn revoke(&mut self, members: Vec<Vec<u8>>, now: Instant) -> Vec<Output> {
        for member in members {
            if self.asked.insert(member.clone()) {
                self.revokes.push(member);
            }
        }
        self.pump(now)
    }

    /// Members the creator vouches for ([`Frame::Vouch`]), sent before any push once the
    /// relay welcomed the device, and only to a relay that takes them. Members already
    /// queued on this session are ignored.
    pub fn vouch(&mut self, members: Vec<Vouchee>, now: Instant) -> Vec<Output> {
        if !self.takes_vouches() {
            // A relay that does not take them welcomed us: nothing would answer.
            return Vec::new();
        }
        for member in members {
            if self.vouched.insert(member.key.clone()) {
                self.vouches.push_back(member);
            }
        }
        self.pump(now)
    }

    /// Whether vouches handed over may still be sent: not once a relay that does not take
    /// them welcomed the device.
    pub fn takes_vouches(&self) -> bool {
        self.state != State::Ready || self.takes_vouch
    }

    /// The relay's id: the stored cursor's until the relay's challenge tells.
    pub fn relay(&self) -> Option<[u8; 16]> {
        self.relay
    }

    /// Checks the answer deadline.
    pub fn tick(&mut self, now: Instant) -> Vec<Output> {
        match self.deadline {
            Some(deadline) if now >= deadline && self.state != State::Closed => {
                self.fail("the relay stopped answering")
            }
            _ => Vec::new(),
        }
    }

    fn fail(&mut self, why: &str) -> Vec<Output> {
        self.state = State::Closed;
        vec![Output::Event(Event::Failed(why.to_string()))]
    }

    /// A frame from the relay.
    pub fn receive(&mut self, frame: Frame, now: Instant) -> Vec<Output> {
        let mut out = Vec::new();
        match (self.state, frame) {
            (State::Closed, _) => {}
            (_, Frame::Refused { code, reason }) => {
                self.state = State::Closed;
                out.push(Output::Event(Event::Refused {
                    code,
                    reason: printable(&reason),
                    without_registration: self.registration_omitted,
                }));
            }
            (State::AwaitChallenge, Frame::Challenge { nonce, relay }) => {
                let Ok(relay) = <[u8; 16]>::try_from(relay.as_slice()) else {
                    return self.fail("the relay sent a malformed challenge");
                };
                // The stored cursor names a relay id only once that relay welcomed us.
                let welcomed_before = self.relay == Some(relay);
                if !welcomed_before {
                    self.relay = Some(relay);
                    self.cursor = 0;
                    self.queued_to = 0;
                    self.queue.clear();
                    self.new_relay = Some(relay);
                }
                let register = match self.admission {
                    Admission::UntilWelcomed if welcomed_before => None,
                    _ => self.register.clone(),
                };
                self.registration_omitted = register.is_none() && self.register.is_some();
                let key = self.key.verifying_key().to_bytes();
                let message = auth_message(&relay, &nonce, &self.workspace, &key);
                out.push(Output::Send(Frame::Prove {
                    signature: self.key.sign(&message).to_bytes().to_vec(),
                    register,
                }));
                self.state = State::AwaitWelcome;
                self.deadline = Some(now + ANSWER_TIMEOUT);
            }
            (
                State::AwaitWelcome,
                Frame::Welcome {
                    head,
                    shared,
                    vouch,
                },
            ) => {
                self.state = State::Ready;
                self.takes_vouch = vouch;
                if !vouch {
                    // An older relay: it admits members only by their own registration.
                    self.vouches.clear();
                }
                if self.shared && !shared {
                    // Runs were queued across documents on the last welcome's word, and
                    // this relay no longer takes them (it was downgraded): they go back
                    // to the outbox, for the driver to hand over again per document.
                    let first = self.queue.iter().find_map(|(seqs, _)| seqs.clone());
                    if let Some(first) = first {
                        self.queue.retain(|(seqs, _)| seqs.is_none());
                        self.queued_to = *first.start();
                    }
                }
                self.shared = shared;
                out.push(Output::Event(Event::Welcome { head, shared }));
                let new_relay = self.new_relay.take();
                if let Some(relay) = new_relay {
                    out.push(Output::NewRelay(relay));
                }
                out.push(Output::Send(Frame::Subscribe { after: self.cursor }));
                self.deadline = Some(now + ANSWER_TIMEOUT);
                // A new relay first gets the history the driver backfills (which pushes).
                if new_relay.is_none() {
                    out.extend(self.pump(now));
                }
            }
            (State::Ready, Frame::Entries { entries, up_to }) => {
                let seqs: Vec<u64> = entries.iter().map(|(seq, _)| *seq).collect();
                let Some(cursor) = self.advance(&seqs, up_to) else {
                    return self.fail("the relay skipped or reordered log entries");
                };
                self.cursor = cursor;
                self.touch(now);
                out.push(Output::Apply {
                    entries: entries
                        .into_iter()
                        .map(|(seq, bytes)| (seq, bytes.into_vec()))
                        .collect(),
                    up_to: cursor,
                });
            }
            (State::Ready, Frame::Deflated { frame }) => {
                // Untrusted: inflated within the frame limit, and what is inside must be an
                // `Entries` frame (never another `Deflated`), handled as if it came plain.
                return match Frame::inflate(&frame) {
                    Ok(entries @ Frame::Entries { .. }) => self.receive(entries, now),
                    Ok(other) => self.fail(&format!(
                        "the relay sent a compressed {}: it breaks the protocol",
                        other.name()
                    )),
                    Err(error) => self.fail(&format!(
                        "the relay sent a frame that cannot be read ({error}): it breaks the protocol"
                    )),
                };
            }
            (State::Ready, Frame::Skipped { ranges }) => {
                let mut last = self.cursor;
                for (start, end) in ranges {
                    if start <= last || end < start {
                        return self.fail("the relay sent skipped ranges out of order");
                    }
                    self.skipped.insert(start, end);
                    last = end;
                }
                self.touch(now);
            }
            (State::Ready, Frame::Stored { id, mut results })
                if self
                    .snapshot_in_flight
                    .is_some_and(|(sent, _, _)| sent == id) =>
            {
                let (_, doc, covers) = self.snapshot_in_flight.take().expect("checked above");
                if results.len() != 1 {
                    return self
                        .fail("the relay answered a snapshot with the wrong number of results");
                }
                let result = match results.remove(0) {
                    PushResult::Rejected(reason) => PushResult::Rejected(printable(&reason)),
                    other => other,
                };
                out.push(Output::SnapshotStored {
                    doc,
                    covers,
                    result,
                });
                self.touch(now);
                out.extend(self.pump(now));
            }
            (State::Ready, Frame::CaughtUp { head }) => {
                // Anything between the cursor and the head must be this node's own pushes.
                let Some(cursor) = self.advance(&[], head) else {
                    return self.fail("the relay's head is past entries it never sent");
                };
                self.caught_up = true;
                self.touch(now);
                if cursor > self.cursor {
                    self.cursor = cursor;
                    out.push(Output::Apply {
                        entries: Vec::new(),
                        up_to: cursor,
                    });
                }
                out.push(Output::Event(Event::CaughtUp));
                out.extend(self.pump(now));
            }
            (State::Ready, Frame::Stored { id, results }) => {
                let Some(flight) = self.in_flight.take_if(|f| f.id == id) else {
                    return self.fail("the relay answered a push that was not sent");
                };
                if results.len() != flight.seqs.len() {
                    return self.fail("the relay answered a push with the wrong number of results");
                }
                let pushed = flight.seqs.iter().flatten().last().map(|s| s.end() + 1);
                // Entries this push put right after the cursor need not come back: the node
                // has them.
                let before = self.cursor;
                self.own.extend(results.iter().filter_map(|r| match r {
                    PushResult::Stored(seq) | PushResult::Duplicate(seq) => {
                        Some(*seq).filter(|seq| *seq > before)
                    }
                    PushResult::Rejected(_) => None,
                }));
                while self.own.remove(&(self.cursor + 1)) {
                    self.cursor += 1;
                }
                // An envelope's answer is the answer for every outbox entry it carries.
                out.push(Output::Acked {
                    results: flight
                        .seqs
                        .into_iter()
                        .zip(results)
                        .filter_map(|(seqs, result)| {
                            let result = match result {
                                PushResult::Rejected(reason) => {
                                    PushResult::Rejected(printable(&reason))
                                }
                                other => other,
                            };
                            Some(seqs?.map(move |seq| (seq, result.clone())))
                        })
                        .flatten()
                        .collect(),
                    pushed,
                    pulled: (self.cursor > before).then_some(self.cursor),
                });
                self.touch(now);
                out.extend(self.pump(now));
            }
            (State::Ready, Frame::Vouched { id, results }) => {
                let expected = self.vouch_in_flight.take_if(|(sent, _)| *sent == id);
                let Some((_, members)) = expected else {
                    return self.fail("the relay answered a vouch this node did not send");
                };
                if results.len() != members.len() {
                    return self
                        .fail("the relay's answer to a vouch does not have one result per member");
                }
                let relay = self.relay.expect("a relay welcomed this session");
                let results = members
                    .into_iter()
                    .zip(results)
                    .map(|(member, result)| match result {
                        VouchResult::Refused(reason) => {
                            (member, VouchResult::Refused(printable(&reason)))
                        }
                        other => (member, other),
                    })
                    .collect();
                out.push(Output::Vouched { relay, results });
                self.touch(now);
                out.extend(self.pump(now));
            }
            (State::Ready, Frame::Revoked { member }) => {
                self.touch(now);
                out.push(Output::Event(Event::Revoked(member)));
            }
            (State::Ready, Frame::Error { reason }) => {
                self.touch(now);
                out.push(Output::Event(Event::RelayError(printable(&reason))));
            }
            (_, other) => {
                return self.fail(&format!(
                    "the relay sent {} out of turn: it breaks the protocol",
                    other.name()
                ));
            }
        }
        out
    }

    /// Where the cursor goes after entries `seqs` (increasing) ending at `up_to`, or `None`
    /// when they leave a gap: every position after the cursor must be among them, one of
    /// this node's own pushes, or skipped for a snapshot. Entries at or before the cursor
    /// are repeats, harmless.
    fn advance(&mut self, seqs: &[u64], up_to: u64) -> Option<u64> {
        if seqs.windows(2).any(|w| w[0] >= w[1]) || seqs.last().is_some_and(|s| *s > up_to) {
            return None;
        }
        let start = self.cursor;
        let mut next = start + 1;
        for &seq in seqs.iter().filter(|s| **s > start) {
            while next < seq
                && let Some(after) = self.filled(next)
            {
                next = after;
            }
            if seq != next {
                return None;
            }
            next += 1;
        }
        while next <= up_to
            && let Some(after) = self.filled(next)
        {
            next = after;
        }
        if up_to >= next {
            return None;
        }
        let mut cursor = self.cursor.max(up_to);
        while let Some(after) = self.filled(cursor + 1) {
            cursor = after - 1;
        }
        self.own.retain(|seq| *seq > cursor);
        self.skipped.retain(|_, end| *end > cursor);
        Some(cursor)
    }

    /// When position `seq` needs no entry (an own push, or skipped for a snapshot), the
    /// position after the run it belongs to.
    fn filled(&self, seq: u64) -> Option<u64> {
        if self.own.contains(&seq) {
            return Some(seq + 1);
        }
        self.skipped
            .range(..=seq)
            .next_back()
            .filter(|(_, end)| **end >= seq)
            .map(|(_, end)| end + 1)
    }

    /// Keeps a deadline only while an answer is awaited.
    fn touch(&mut self, now: Instant) {
        let waiting = !self.caught_up
            || self.in_flight.is_some()
            || self.snapshot_in_flight.is_some()
            || self.vouch_in_flight.is_some();
        self.deadline = waiting.then_some(now + ANSWER_TIMEOUT);
    }

    /// Sends the next push and pending revocations when the connection allows.
    fn pump(&mut self, now: Instant) -> Vec<Output> {
        let mut out = Vec::new();
        if self.state != State::Ready {
            return out;
        }
        for member in self.revokes.drain(..) {
            out.push(Output::Send(Frame::Revoke { member }));
        }
        // Before any push: the relay takes frames in order, so the envelopes of members it
        // admits now are stored, not refused.
        if self.takes_vouch && self.vouch_in_flight.is_none() && !self.vouches.is_empty() {
            let take = self.vouches.len().min(MAX_VOUCHES);
            let members: Vec<Vouchee> = self.vouches.drain(..take).collect();
            let id = self.next_push;
            self.next_push += 1;
            self.vouch_in_flight = Some((id, members.iter().map(|m| m.key.clone()).collect()));
            self.deadline = Some(now + ANSWER_TIMEOUT);
            out.push(Output::Send(Frame::Vouch { id, members }));
        }
        if self.takes_vouch && !self.vouches.is_empty() {
            // More than one vouch's worth: no push may overtake the rest.
            return out;
        }
        if self.in_flight.is_none()
            && self.queue.is_empty()
            && self.caught_up
            && self.snapshot_in_flight.is_none()
            && let Some(Snapshot {
                doc,
                covers,
                envelope,
            }) = self.snapshots.pop_front()
        {
            let id = self.next_push;
            self.next_push += 1;
            self.snapshot_in_flight = Some((id, doc, covers));
            self.deadline = Some(now + ANSWER_TIMEOUT);
            out.push(Output::Send(Frame::Snapshot {
                id,
                covers,
                envelope: serde_bytes::ByteBuf::from(envelope),
                shared: true,
            }));
            return out;
        }
        if self.in_flight.is_some() || self.queue.is_empty() {
            return out;
        }
        let mut seqs = Vec::new();
        let mut envelopes = Vec::new();
        let mut bytes = 0;
        while let Some((_, envelope)) = self.queue.front() {
            if !envelopes.is_empty()
                && (envelopes.len() >= MAX_BATCH_ENTRIES
                    || bytes + envelope.len() > MAX_BATCH_BYTES)
            {
                break;
            }
            let (seq, envelope) = self.queue.pop_front().expect("front exists");
            bytes += envelope.len();
            seqs.push(seq);
            envelopes.push(serde_bytes::ByteBuf::from(envelope));
        }
        let id = self.next_push;
        self.next_push += 1;
        self.in_flight = Some(InFlight { id, seqs });
        self.deadline = Some(now + ANSWER_TIMEOUT);
        out.push(Output::Send(Frame::Push { id, envelopes }));
        out
    }
}

#[cfg(test)]
mod tests {
    //! The session over an in-memory relay: a log, a member list and forwarding, with the
    //! same rules as the real one, and "nodes" that keep what the session tells them to.

    use super::*;

    /// A relay in memory.
    struct Relay {
        id: [u8; 16],
        log: Vec<Vec<u8>>,
        /// Per connection: (subscribed cursor, frames waiting to be delivered).
        connections: Vec<(Option<u64>, VecDeque<Frame>)>,
        /// The last `Hello` asked for compressed frames: catch-ups of several entries go
        /// as `Deflated`, as the real relay sends them.
        deflate: bool,
        /// How many `Deflated` frames it sent.
        deflated: usize,
    }

    impl Relay {
        fn new(id: u8) -> Relay {
            Relay {
                id: [id; 16],
                log: Vec::new(),
                connections: Vec::new(),
                deflate: false,
                deflated: 0,
            }
        }

        fn connect(&mut self) -> usize {
            self.connections.push((None, VecDeque::new()));
            self.connections.len() - 1
        }

        fn handle(&mut self, conn: usize, frame: Frame) {
            let reply = match frame {
                Frame::Hello { deflate, .. } => {
                    self.deflate = deflate;
                    Frame::Challenge {
                        nonce: vec![7; 32],
                        relay: self.id.to_vec(),
                    }
                }
                Frame::Prove { .. } => Frame::Welcome {
                    head: self.log.len() as u64,
                    shared: true,
                    vouch: false,
                },
                Frame::Subscribe { after } => {
                    let entries: Vec<_> = self
                        .log
                        .iter()
                        .enumerate()
                        .skip(after as usize)
                        .map(|(i, e)| (i as u64 + 1, serde_bytes::ByteBuf::from(e.clone())))
                        .collect();
                    let head = self.log.len() as u64;
                    if !entries.is_empty() {
                        let frame = Frame::Entries {
                            entries,
                            up_to: head,
                        };
                        let encoded = meridian_relay::handling::encode_for(&frame, self.deflate);
                        let frame = Frame::decode(&encoded).expect("the relay's own frame");
                        self.deflated += usize::from(matches!(frame, Frame::Deflated { .. }));
                        self.connections[conn].1.push_back(frame);
                    }
                    self.connections[conn].0 = Some(head);
                    Frame::CaughtUp { head }
                }
                Frame::Push { id, envelopes } => {
                    let mut results = Vec::new();
                    let first = self.log.len() as u64 + 1;
                    for envelope in envelopes {
                        match self.log.iter().position(|e| *e == envelope.as_slice()) {
                            Some(i) => results.push(PushResult::Duplicate(i as u64 + 1)),
                            None => {
                                self.log.push(envelope.into_vec());
                                results.push(PushResult::Stored(self.log.len() as u64));
                            }
                        }
                    }
                    let last = self.log.len() as u64;
                    for (other, (cursor, queue)) in self.connections.iter_mut().enumerate() {
                        let Some(cursor) = cursor else { continue };
                        if other != conn && last >= first {
                            let entries = (first..=last)
                                .map(|seq| {
                                    let bytes = self.log[seq as usize - 1].clone();
                                    (seq, serde_bytes::ByteBuf::from(bytes))
                                })
                                .collect();
                            queue.push_back(Frame::Entries {
                                entries,
                                up_to: last,
                            });
                        }
                        *cursor = last;
                    }
                    Frame::Stored { id, results }
                }
                other => panic!("unexpected {other:?}"),
            };
            self.connections[conn].1.push_back(reply);
        }
    }

    /// A node's store, as far as sync is concerned.
    #[derive(Default)]
    struct Node {
        applied: Vec<Vec<u8>>,
        cursor: u64,
        relay: Option<[u8; 16]>,
        outbox: Vec<(u64, Vec<u8>)>,
        pushed: u64,
    }

    impl Node {
        fn perform(&mut self, outputs: Vec<Output>, relay: &mut Relay, conn: usize) {
            for output in outputs {
                match output {
                    Output::Send(frame) => relay.handle(conn, frame),
                    Output::NewRelay(id) => {
                        self.relay = Some(id);
                        self.cursor = 0;
                        self.pushed = 0;
                    }
                    Output::Apply { entries, up_to } => {
                        for (_, bytes) in entries {
                            if !self.applied.contains(&bytes) {
                                self.applied.push(bytes);
                            }
                        }
                        self.cursor = up_to;
                    }
                    Output::Acked {
                        results,
                        pushed,
                        pulled,
                    } => {
                        let pushed = pushed.unwrap_or(self.pushed);
                        self.outbox.retain(|(seq, _)| *seq >= pushed);
                        assert!(
                            results
                                .iter()
                                .all(|(_, r)| !matches!(r, PushResult::Rejected(_)))
                        );
                        self.pushed = pushed;
                        if let Some(pulled) = pulled {
                            self.cursor = pulled;
                        }
                    }
                    Output::SnapshotStored { .. } | Output::Vouched { .. } => {}
                    Output::Event(Event::Failed(why)) => panic!("session failed: {why}"),
                    Output::Event(_) => {}
                }
            }
        }

        fn session(&self) -> Session {
            Session::new(
                SigningKey::from_bytes(&[1; 32]),
                [2; 16],
                None,
                self.relay,
                self.cursor,
                self.pushed,
            )
        }

        fn write(&mut self, text: &str) {
            let seq = self.outbox.last().map_or(self.pushed, |(s, _)| s + 1);
            self.outbox.push((seq, text.as_bytes().to_vec()));
            self.applied.push(text.as_bytes().to_vec());
        }
    }

    /// Delivers queued frames until nothing moves.
    fn run(relay: &mut Relay, parties: &mut [(&mut Node, &mut Session, usize)]) {
        let now = Instant::now();
        loop {
            let mut moved = false;
            for (node, session, conn) in parties.iter_mut() {
                while let Some(frame) = relay.connections[*conn].1.pop_front() {
                    moved = true;
                    let outputs = session.receive(frame, now);
                    node.perform(outputs, relay, *conn);
                }
                let outputs = session.local(node.outbox.clone(), now);
                if !outputs.is_empty() {
                    moved = true;
                }
                node.perform(outputs, relay, *conn);
            }
            if !moved {
                return;
            }
        }
    }

    fn connect(node: &mut Node, relay: &mut Relay) -> (Session, usize) {
        let conn = relay.connect();
        let mut session = node.session();
        let outputs = session.start(Instant::now());
        node.perform(outputs, relay, conn);
        (session, conn)
    }

    #[test]
    fn two_nodes_exchange_offline_work_and_live_edits() {
        let mut relay = Relay::new(9);
        let (mut ana, mut bo) = (Node::default(), Node::default());
        ana.write("a1");
        ana.write("a2");
        bo.write("b1");
        let (mut sa, ca) = connect(&mut ana, &mut relay);
        let (mut sb, cb) = connect(&mut bo, &mut relay);
        run(
            &mut relay,
            &mut [(&mut ana, &mut sa, ca), (&mut bo, &mut sb, cb)],
        );
        assert!(sa.is_idle() && sb.is_idle());
        assert_eq!(relay.log.len(), 3);
        for node in [&ana, &bo] {
            assert_eq!(node.applied.len(), 3, "every node has every change");
            assert!(
                node.outbox.is_empty(),
                "acknowledged changes leave the outbox"
            );
        }
        // Live: a new edit reaches the other side without a new connection.
        ana.write("a3");
        run(
            &mut relay,
            &mut [(&mut ana, &mut sa, ca), (&mut bo, &mut sb, cb)],
        );
        assert!(bo.applied.contains(&b"a3".to_vec()));
        assert_eq!(bo.cursor, 4);
        assert_eq!(
            ana.cursor, 4,
            "own pushes right after the cursor advance it"
        );
    }

    #[test]
    fn a_new_session_resumes_from_the_cursor() {
        let mut relay = Relay::new(9);
        let mut ana = Node::default();
        let mut bo = Node::default();
        ana.write("a1");
        let (mut sa, ca) = connect(&mut ana, &mut relay);
        run(&mut relay, &mut [(&mut ana, &mut sa, ca)]);
        let (mut sb, cb) = connect(&mut bo, &mut relay);
        run(&mut relay, &mut [(&mut bo, &mut sb, cb)]);
        assert_eq!(bo.cursor, 1);
        // Bo goes away; Ana writes; Bo comes back with his stored cursor.
        ana.write("a2");
        run(&mut relay, &mut [(&mut ana, &mut sa, ca)]);
        let (mut sb, cb) = connect(&mut bo, &mut relay);
        let before = bo.applied.len();
        let subscribe = relay.connections[cb].1.clone();
        run(&mut relay, &mut [(&mut bo, &mut sb, cb)]);
        assert_eq!(bo.applied.len(), before + 1);
        assert_eq!(bo.cursor, 2);
        assert!(
            subscribe
                .iter()
                .all(|f| !matches!(f, Frame::Entries { .. }))
        );
    }

    #[test]
    fn another_relay_id_starts_over() {
        let mut first = Relay::new(1);
        let mut ana = Node::default();
        ana.write("a1");
        let (mut s, c) = connect(&mut ana, &mut first);
        run(&mut first, &mut [(&mut ana, &mut s, c)]);
        assert_eq!(ana.cursor, 1);
        // The relay's data was replaced: same URL, another log.
        let mut second = Relay::new(2);
        second.log.push(b"x".to_vec());
        let (mut s, c) = connect(&mut ana, &mut second);
        run(&mut second, &mut [(&mut ana, &mut s, c)]);
        assert_eq!(ana.relay, Some([2; 16]));
        assert!(ana.applied.contains(&b"x".to_vec()));
    }

    #[test]
    fn refusals_and_protocol_breaks_close_the_session() {
        let now = Instant::now();
        let mut session = Node::default().session();
        session.start(now);
        let out = session.receive(
            Frame::Refused {
                code: RefusedCode::NotMember,
                reason: "no".into(),
            },
            now,
        );
        assert!(matches!(
            out.as_slice(),
            [Output::Event(Event::Refused {
                code: RefusedCode::NotMember,
                ..
            })]
        ));
        assert!(session.is_closed());

        // Entries before authentication break the protocol.
        let mut session = Node::default().session();
        session.start(now);
        let out = session.receive(
            Frame::Entries {
                entries: Vec::new(),
                up_to: 1,
            },
            now,
        );
        assert!(matches!(out.as_slice(), [Output::Event(Event::Failed(_))]));

        // An answer to a push never sent.
        let mut session = welcomed(now);
        let out = session.receive(
            Frame::Stored {
                id: 5,
                results: Vec::new(),
            },
            now,
        );
        assert!(matches!(out.as_slice(), [Output::Event(Event::Failed(_))]));
    }

    /// A session past the handshake with an empty relay.
    fn welcomed(now: Instant) -> Session {
        let mut session = Node::default().session();
        session.start(now);
        session.receive(
            Frame::Challenge {
                nonce: vec![0; 32],
                relay: vec![0; 16],
            },
            now,
        );
        session.receive(
            Frame::Welcome {
                head: 0,
                shared: true,
                vouch: false,
            },
            now,
        );
        session
    }

    #[test]
    fn a_silent_relay_times_out() {
        let now = Instant::now();
        let mut session = Node::default().session();
        session.start(now);
        assert!(session.tick(now + Duration::from_secs(1)).is_empty());
        let out = session.tick(now + ANSWER_TIMEOUT + Duration::from_secs(1));
        assert!(matches!(out.as_slice(), [Output::Event(Event::Failed(_))]));
    }

    #[test]
    fn pushes_are_bounded_batches_one_at_a_time() {
        let now = Instant::now();
        let mut session = welcomed(now);
        let entries: Vec<_> = (0..2500).map(|i| (i, vec![0u8; 10])).collect();
        let out = session.local(entries, now);
        let pushes: Vec<_> = out
            .iter()
            .filter_map(|o| match o {
                Output::Send(Frame::Push { envelopes, .. }) => Some(envelopes.len()),
                _ => None,
            })
            .collect();
        assert_eq!(pushes, vec![MAX_BATCH_ENTRIES]);
        let out = session.local(vec![(3000, vec![1])], now);
        assert!(out.is_empty(), "one push in flight at a time");
    }

    fn entries(seqs: &[u64], up_to: u64) -> Frame {
        Frame::Entries {
            entries: seqs
                .iter()
                .map(|s| (*s, serde_bytes::ByteBuf::from(vec![*s as u8])))
                .collect(),
            up_to,
        }
    }

    fn failed(out: &[Output]) -> bool {
        matches!(out, [Output::Event(Event::Failed(_))])
    }

    #[test]
    fn entries_that_skip_positions_break_the_connection_and_apply_nothing() {
        let now = Instant::now();
        // Reordered: the second batch arrives first.
        let mut session = welcomed(now);
        assert!(failed(&session.receive(entries(&[3, 4], 4), now)));
        // A head past what was sent.
        let mut session = welcomed(now);
        session.receive(entries(&[1, 2], 2), now);
        assert!(failed(&session.receive(Frame::CaughtUp { head: 5 }, now)));
        // An up_to past the last entry, and entries out of order inside one frame.
        let mut session = welcomed(now);
        assert!(failed(&session.receive(entries(&[1], 3), now)));
        let mut session = welcomed(now);
        assert!(failed(&session.receive(entries(&[2, 1], 2), now)));
    }

    /// The DEFLATE stream of `bytes`.
    fn deflate_raw(bytes: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut encoder =
            flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
        encoder.write_all(bytes).unwrap();
        encoder.finish().unwrap()
    }

    fn deflated(stream: Vec<u8>) -> Frame {
        Frame::Deflated {
            frame: serde_bytes::ByteBuf::from(stream),
        }
    }

    #[test]
    fn compressed_entries_are_applied_like_plain_ones() {
        let now = Instant::now();
        let mut node = Node::default();
        let out = node.session().start(now);
        assert!(
            matches!(
                out.as_slice(),
                [Output::Send(Frame::Hello { deflate: true, .. })]
            ),
            "the node asks for compressed frames: {out:?}"
        );
        let mut session = welcomed(now);
        let out = session.receive(deflated(deflate_raw(&entries(&[1, 2, 3], 3).encode())), now);
        let [
            Output::Apply {
                entries: applied,
                up_to: 3,
            },
        ] = out.as_slice()
        else {
            panic!("{out:?}");
        };
        assert_eq!(applied, &vec![(1, vec![1]), (2, vec![2]), (3, vec![3])]);
        // The rules for entries hold inside: a gap breaks the connection.
        let out = session.receive(deflated(deflate_raw(&entries(&[5, 6], 6).encode())), now);
        assert!(failed(&out), "{out:?}");
        // A catch-up from the in-memory relay comes compressed and arrives whole.
        let mut relay = Relay::new(1);
        for i in 0..20u8 {
            relay
                .log
                .push(format!("versionworkspacedocauthor {i}").into_bytes());
        }
        let (mut s, c) = connect(&mut node, &mut relay);
        run(&mut relay, &mut [(&mut node, &mut s, c)]);
        assert_eq!(relay.deflated, 1, "the catch-up came compressed");
        assert_eq!(node.cursor, 20);
        assert_eq!(node.applied.len(), 20);
    }

    #[test]
    fn hostile_compressed_frames_break_the_connection_and_apply_nothing() {
        let now = Instant::now();
        let nested = deflated(deflate_raw(&entries(&[1], 1).encode())).encode();
        let mut stray = deflate_raw(&entries(&[1], 1).encode());
        stray.extend_from_slice(b"more");
        let valid = deflate_raw(&entries(&[1, 2], 2).encode());
        let cases: Vec<(&str, Vec<u8>, &str)> = vec![
            (
                "bomb",
                deflate_raw(&vec![0; meridian_relay::protocol::MAX_FRAME_BYTES + 1]),
                "decompression bomb",
            ),
            ("truncated", valid[..valid.len() - 3].to_vec(), "truncated"),
            ("garbage", vec![0xfe; 100], "corrupt"),
            ("stray bytes", stray, "stray bytes"),
            ("nested", deflate_raw(&nested), "holds Deflated"),
            (
                "a caught-up",
                deflate_raw(&Frame::CaughtUp { head: 0 }.encode()),
                "holds CaughtUp",
            ),
            ("not a frame", deflate_raw(&[0x1c; 10]), "not a frame"),
        ];
        for (name, stream, expected) in cases {
            let mut session = welcomed(now);
            let out = session.receive(deflated(stream), now);
            let [Output::Event(Event::Failed(why))] = out.as_slice() else {
                panic!("{name}: {out:?}");
            };
            assert!(
                why.contains("compressed frame is not valid") && why.contains(expected),
                "{name}: {why}"
            );
            assert!(session.is_closed(), "{name}");
        }
        // Before the relay welcomed the node, a compressed frame is out of turn.
        let mut session = Node::default().session();
        session.start(now);
        let out = session.receive(deflated(valid), now);
        assert!(failed(&out), "{out:?}");
    }

    #[test]
    fn positions_skipped_for_a_snapshot_fill_gaps_and_nothing_else_does() {
        let now = Instant::now();
        // The snapshot stands at 1 (the document's first entry); 2–4 and 6 are its
        // document's later entries, skipped; 5 is another document's.
        let mut session = welcomed(now);
        let out = session.receive(
            Frame::Skipped {
                ranges: vec![(2, 4), (6, 6)],
            },
            now,
        );
        assert!(out.is_empty());
        let out = session.receive(entries(&[1, 5], 6), now);
        assert!(matches!(out.as_slice(), [Output::Apply { up_to: 6, .. }]));
        let out = session.receive(Frame::CaughtUp { head: 6 }, now);
        assert!(matches!(out.as_slice(), [Output::Event(Event::CaughtUp)]));
        // Without the ranges the same entries leave a gap.
        let mut session = welcomed(now);
        assert!(failed(&session.receive(entries(&[1, 5], 6), now)));
        // Ranges must be increasing and after the cursor.
        let mut session = welcomed(now);
        session.receive(entries(&[1, 2], 2), now);
        let out = session.receive(
            Frame::Skipped {
                ranges: vec![(2, 3)],
            },
            now,
        );
        assert!(failed(&out));
        let mut session = welcomed(now);
        let out = session.receive(
            Frame::Skipped {
                ranges: vec![(5, 6), (3, 4)],
            },
            now,
        );
        assert!(failed(&out));
    }

    #[test]
    fn a_snapshot_goes_after_the_catch_up_and_its_answer_is_reported() {
        let now = Instant::now();
        let mut session = welcomed(now);
        let snapshot = Snapshot {
            doc: [3; 16],
            covers: 7,
            envelope: vec![1, 2, 3],
        };
        let out = session.snapshot(vec![snapshot], now);
        assert!(out.is_empty(), "not before the catch-up ends");
        let out = session.receive(Frame::CaughtUp { head: 0 }, now);
        let [
            Output::Event(Event::CaughtUp),
            Output::Send(Frame::Snapshot { id, covers: 7, .. }),
        ] = out.as_slice()
        else {
            panic!("expected the snapshot right after the catch-up, got {out:?}");
        };
        assert!(!session.is_idle(), "the snapshot awaits its answer");
        let out = session.receive(
            Frame::Stored {
                id: *id,
                results: vec![PushResult::Stored(7)],
            },
            now,
        );
        assert!(matches!(
            out.as_slice(),
            [Output::SnapshotStored {
                doc: [3, ..],
                covers: 7,
                result: PushResult::Stored(7)
            }]
        ));
        assert!(session.is_idle());
    }

    #[test]
    fn repeats_are_harmless_and_own_pushes_fill_gaps() {
        let now = Instant::now();
        let mut session = welcomed(now);
        session.receive(entries(&[1, 2], 2), now);
        session.receive(Frame::CaughtUp { head: 2 }, now);
        // A duplicated frame moves nothing and breaks nothing.
        let out = session.receive(entries(&[1, 2], 2), now);
        assert!(matches!(out.as_slice(), [Output::Apply { up_to: 2, .. }]));
        // This node's push lands at 4, after someone else's 3 it has not seen yet.
        session.local(vec![(0, vec![9])], now);
        let out = session.receive(
            Frame::Stored {
                id: 1,
                results: vec![PushResult::Stored(4)],
            },
            now,
        );
        assert!(matches!(
            out.as_slice(),
            [Output::Acked { pulled: None, .. }]
        ));
        // 3 arrives; 4 is the node's own, so the cursor passes it and 5 follows.
        let out = session.receive(entries(&[3], 3), now);
        assert!(matches!(out.as_slice(), [Output::Apply { up_to: 4, .. }]));
        let out = session.receive(entries(&[5], 5), now);
        assert!(matches!(out.as_slice(), [Output::Apply { up_to: 5, .. }]));
    }

    #[test]
    fn a_relays_explanations_reach_the_screen_printable_and_short() {
        let now = Instant::now();
        let mut session = Node::default().session();
        session.start(now);
        let out = session.receive(
            Frame::Refused {
                code: RefusedCode::Protocol,
                reason: format!("\x1b[2J\x1b]0;owned\x07{}", "x".repeat(10_000)),
            },
            now,
        );
        let [Output::Event(Event::Refused { reason, .. })] = out.as_slice() else {
            panic!("{out:?}");
        };
        assert!(!reason.chars().any(char::is_control), "{reason:?}");
        assert!(reason.chars().count() <= MAX_REASON_CHARS + 1);
        assert!(reason.ends_with('…'));
        assert_eq!(printable("plain words"), "plain words");
    }

    #[test]
    fn a_run_of_outbox_entries_is_one_envelope_and_its_answer_passes_them_all() {
        let now = Instant::now();
        let mut session = welcomed(now);
        session.receive(Frame::CaughtUp { head: 0 }, now);
        let out = session.local_runs(
            vec![
                Outgoing {
                    first: 0,
                    last: 4,
                    envelope: vec![1],
                },
                Outgoing {
                    first: 5,
                    last: 5,
                    envelope: vec![2],
                },
            ],
            now,
        );
        let [Output::Send(Frame::Push { id, envelopes })] = out.as_slice() else {
            panic!("{out:?}");
        };
        assert_eq!(envelopes.len(), 2, "five entries of one run, one envelope");
        assert_eq!(session.queued_to(), 6);
        let out = session.receive(
            Frame::Stored {
                id: *id,
                results: vec![PushResult::Stored(1), PushResult::Duplicate(2)],
            },
            now,
        );
        let [
            Output::Acked {
                results,
                pushed,
                pulled,
            },
        ] = out.as_slice()
        else {
            panic!("{out:?}");
        };
        let seqs: Vec<u64> = results.iter().map(|(seq, _)| *seq).collect();
        assert_eq!(seqs, vec![0, 1, 2, 3, 4, 5], "an answer for every entry");
        assert!(
            results[..5]
                .iter()
                .all(|(_, r)| *r == PushResult::Stored(1))
        );
        assert_eq!(*pushed, Some(6), "the push cursor passes the whole run");
        assert_eq!(
            *pulled,
            Some(2),
            "both envelopes directly follow the cursor"
        );
        assert!(session.is_idle());
        // Runs already handed over are not queued again.
        let again = session.local_runs(
            vec![Outgoing {
                first: 3,
                last: 5,
                envelope: vec![3],
            }],
            now,
        );
        assert!(again.is_empty(), "{again:?}");
    }

    /// A session that has the creator's registration and, maybe, a cursor from relay 5.
    #[test]
    fn runs_queued_for_a_relay_that_took_shared_envelopes_go_back_if_it_no_longer_does() {
        let now = Instant::now();
        let node = Node {
            relay: Some([0; 16]),
            pushed: 3,
            ..Node::default()
        };
        let queue = |session: &mut Session| {
            session.start(now);
            session.local_runs(
                vec![Outgoing {
                    first: 3,
                    last: 6,
                    envelope: vec![1],
                }],
                now,
            );
            assert_eq!(session.queued_to(), 7);
            session.receive(
                Frame::Challenge {
                    nonce: vec![0; 32],
                    relay: vec![0; 16],
                },
                now,
            );
        };
        let welcome = |shared| Frame::Welcome {
            head: 0,
            shared,
            vouch: false,
        };
        // It said it took them last time, and says so again: the run stays queued.
        let mut session = node.session().with_shared(true);
        queue(&mut session);
        session.receive(welcome(true), now);
        assert_eq!(session.queued_to(), 7);
        // Now it does not: the entries are handed over again from the first.
        let mut session = node.session().with_shared(true);
        queue(&mut session);
        let out = session.receive(welcome(false), now);
        assert_eq!(session.queued_to(), 3);
        assert!(!session.takes_shared());
        assert!(
            !out.iter()
                .any(|o| matches!(o, Output::Send(Frame::Push { .. }))),
            "{out:?}"
        );
    }

    fn vouchee(key: u8) -> Vouchee {
        Vouchee {
            key: vec![key; 32],
            proof: meridian_relay::membership::JoinProof {
                invite_public: vec![8; 32],
                inviter: vec![9; 32],
                expires: 0,
                inviter_sig: vec![0; 64],
                join_sig: vec![0; 64],
            },
        }
    }

    /// Relay 5's challenge, then its welcome; what the welcome led to.
    fn welcomed_by_relay_5(session: &mut Session, vouch: bool, now: Instant) -> Vec<Output> {
        session.receive(
            Frame::Challenge {
                nonce: vec![0; 32],
                relay: vec![5; 16],
            },
            now,
        );
        session.receive(
            Frame::Welcome {
                head: 0,
                shared: true,
                vouch,
            },
            now,
        )
    }

    /// The frames a session sends, by name, in order.
    fn sent(out: &[Output]) -> Vec<&'static str> {
        out.iter()
            .filter_map(|o| match o {
                Output::Send(frame) => Some(frame.name()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn vouches_go_before_pushes_and_only_to_a_relay_that_takes_them() {
        let now = Instant::now();
        let node = Node {
            relay: Some([5; 16]),
            ..Node::default()
        };
        for takes in [true, false] {
            let mut session = node.session();
            session.start(now);
            assert!(session.vouch(vec![vouchee(7), vouchee(8)], now).is_empty());
            session.vouch(vec![vouchee(7)], now);
            session.local(vec![(0, vec![1])], now);
            let out = welcomed_by_relay_5(&mut session, takes, now);
            let expected: &[&str] = if takes {
                &["Subscribe", "Vouch", "Push"]
            } else {
                &["Subscribe", "Push"]
            };
            assert_eq!(sent(&out), expected);
            assert_eq!(session.takes_vouches(), takes);
            let vouch_id = out.iter().find_map(|o| match o {
                Output::Send(Frame::Vouch { id, members }) => {
                    assert_eq!(members.len(), 2, "each member once");
                    Some(*id)
                }
                _ => None,
            });
            let push_id = out
                .iter()
                .find_map(|o| match o {
                    Output::Send(Frame::Push { id, .. }) => Some(*id),
                    _ => None,
                })
                .unwrap();
            session.receive(Frame::CaughtUp { head: 0 }, now);
            session.receive(
                Frame::Stored {
                    id: push_id,
                    results: vec![PushResult::Stored(1)],
                },
                now,
            );
            assert_eq!(
                session.is_idle(),
                !takes,
                "idle only once the vouch is answered"
            );
            let Some(vouch_id) = vouch_id else { continue };
            // An answer to another vouch, or of the wrong length, breaks the protocol.
            for wrong in [
                Frame::Vouched {
                    id: vouch_id + 7,
                    results: vec![VouchResult::Known; 2],
                },
                Frame::Vouched {
                    id: vouch_id,
                    results: vec![VouchResult::Known],
                },
            ] {
                let mut copy = node.session();
                copy.start(now);
                copy.vouch(vec![vouchee(7), vouchee(8)], now);
                welcomed_by_relay_5(&mut copy, true, now);
                let out = copy.receive(wrong, now);
                assert!(
                    matches!(out[..], [Output::Event(Event::Failed(_))]),
                    "{out:?}"
                );
            }
            let out = session.receive(
                Frame::Vouched {
                    id: vouch_id,
                    results: vec![
                        VouchResult::Admitted,
                        VouchResult::Refused("\u{1b}[2Jused".into()),
                    ],
                },
                now,
            );
            assert_eq!(
                out,
                [Output::Vouched {
                    relay: [5; 16],
                    results: vec![
                        (vec![7; 32], VouchResult::Admitted),
                        (vec![8; 32], VouchResult::Refused("\u{fffd}[2Jused".into())),
                    ],
                }]
            );
            assert!(session.is_idle());
        }
    }

    /// A relay met for the first time that does not take vouches: the vouches the driver
    /// hands over after `NewRelay` are dropped, and the round ends.
    #[test]
    fn a_new_relay_that_takes_no_vouches_does_not_hold_the_round_open() {
        let now = Instant::now();
        let mut session = Node::default().session();
        session.start(now);
        let out = welcomed_by_relay_5(&mut session, false, now);
        assert!(out.iter().any(|o| matches!(o, Output::NewRelay(_))));
        assert!(session.vouch(vec![vouchee(7)], now).is_empty());
        session.receive(Frame::CaughtUp { head: 0 }, now);
        assert!(session.is_idle());
    }

    fn registered(relay: Option<[u8; 16]>, admission: Admission) -> Session {
        Session::new(
            SigningKey::from_bytes(&[1; 32]),
            [2; 16],
            Some(Register::Create { salt: vec![3; 16] }),
            relay,
            4,
            0,
        )
        .with_admission(admission)
    }

    fn prove(session: &mut Session, relay: u8) -> Vec<Output> {
        let now = Instant::now();
        session.start(now);
        session.receive(
            Frame::Challenge {
                nonce: vec![0; 32],
                relay: vec![relay; 16],
            },
            now,
        )
    }

    fn register_sent(out: &[Output]) -> Option<bool> {
        out.iter().find_map(|o| match o {
            Output::Send(Frame::Prove { register, .. }) => Some(register.is_some()),
            _ => None,
        })
    }

    #[test]
    fn the_registration_goes_only_to_a_relay_that_has_not_welcomed_the_device() {
        let now = Instant::now();
        // Never welcomed by this relay: the registration goes along.
        let mut session = registered(None, Admission::UntilWelcomed);
        let out = prove(&mut session, 5);
        assert_eq!(register_sent(&out), Some(true));
        assert!(
            !out.iter().any(|o| matches!(o, Output::NewRelay(_))),
            "the cursor names a relay only once it welcomed the device"
        );
        let out = session.receive(
            Frame::Welcome {
                head: 0,
                shared: true,
                vouch: false,
            },
            now,
        );
        assert_eq!(out[1], Output::NewRelay([5; 16]), "{out:?}");
        // Welcomed by relay 5 before: it knows the device.
        let mut session = registered(Some([5; 16]), Admission::UntilWelcomed);
        assert_eq!(register_sent(&prove(&mut session, 5)), Some(false));
        // Another relay id at the same URL: another relay, which needs it.
        let mut session = registered(Some([5; 16]), Admission::UntilWelcomed);
        assert_eq!(register_sent(&prove(&mut session, 6)), Some(true));
        // After a NotMember to a Prove without it, the next connection shows it.
        let mut session = registered(Some([5; 16]), Admission::UntilWelcomed);
        prove(&mut session, 5);
        let out = session.receive(
            Frame::Refused {
                code: RefusedCode::NotMember,
                reason: "who?".into(),
            },
            now,
        );
        assert!(matches!(
            out.as_slice(),
            [Output::Event(Event::Refused {
                code: RefusedCode::NotMember,
                without_registration: true,
                ..
            })]
        ));
        let mut session = registered(Some([5; 16]), Admission::Always);
        assert_eq!(register_sent(&prove(&mut session, 5)), Some(true));
        let out = session.receive(
            Frame::Refused {
                code: RefusedCode::NotMember,
                reason: "who?".into(),
            },
            now,
        );
        assert!(matches!(
            out.as_slice(),
            [Output::Event(Event::Refused {
                without_registration: false,
                ..
            })]
        ));
    }
}
