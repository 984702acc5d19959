//! The node's side of the sync protocol as a state machine without I/O.
//!
//! Inputs are frames from the relay, the node's outbox (local changes) and the time; outputs
//! are frames to send, store writes (entries to apply with the cursor they lead to, outbox
//! entries the relay acknowledged) and events. [`super::net`] drives it over a websocket;
//! the tests below drive it over an in-memory relay.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use ed25519_dalek::{Signer, SigningKey};
use meridian_relay::protocol::{
    Frame, MAX_BATCH_BYTES, MAX_BATCH_ENTRIES, PROTOCOL_VERSION, PushResult, RefusedCode, Register,
    auth_message,
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
    },
    /// Everything the relay had when the node subscribed was delivered.
    CaughtUp,
    /// The relay refused the connection.
    Refused {
        /// Machine-readable reason.
        code: RefusedCode,
        /// The relay's explanation.
        reason: String,
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
        /// The outbox position everything before which the relay has answered for.
        pushed: u64,
        /// A new pull cursor: the push's entries directly followed the old one.
        pulled: Option<u64>,
    },
    /// Something to report.
    Event(Event),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    AwaitChallenge,
    AwaitWelcome,
    Ready,
    Closed,
}

/// A push sent and not yet answered.
struct InFlight {
    id: u64,
    seqs: Vec<u64>,
}

/// One connection's protocol state.
pub struct Session {
    key: SigningKey,
    workspace: [u8; 16],
    register: Option<Register>,
    relay: Option<[u8; 16]>,
    cursor: u64,
    state: State,
    caught_up: bool,
    /// Outbox entries not yet pushed on this connection, in order.
    queue: VecDeque<(u64, Vec<u8>)>,
    /// The outbox sequence number after the last one queued.
    queued_to: u64,
    in_flight: Option<InFlight>,
    next_push: u64,
    revokes: Vec<Vec<u8>>,
    deadline: Option<Instant>,
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
            relay,
            cursor,
            state: State::AwaitChallenge,
            caught_up: false,
            queue: VecDeque::new(),
            queued_to: pushed,
            in_flight: None,
            next_push: 1,
            revokes: Vec::new(),
            deadline: None,
        }
    }

    /// Opens the exchange.
    pub fn start(&mut self, now: Instant) -> Vec<Output> {
        self.deadline = Some(now + ANSWER_TIMEOUT);
        vec![Output::Send(Frame::Hello {
            version: PROTOCOL_VERSION,
            workspace: self.workspace.to_vec(),
            key: self.key.verifying_key().to_bytes().to_vec(),
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
    }

    /// The outbox position after the last entry handed to the session.
    pub fn queued_to(&self) -> u64 {
        self.queued_to
    }

    /// Local changes: outbox entries (sequence number, envelope) in order. Entries already
    /// handed over are ignored.
    pub fn local(&mut self, entries: Vec<(u64, Vec<u8>)>, now: Instant) -> Vec<Output> {
        for (seq, envelope) in entries {
            if seq >= self.queued_to {
                self.queued_to = seq + 1;
                self.queue.push_back((seq, envelope));
            }
        }
        self.pump(now)
    }

    /// Asks the relay to revoke members (only the workspace creator may).
    pub fn revoke(&mut self, members: Vec<Vec<u8>>, now: Instant) -> Vec<Output> {
        self.revokes.extend(members);
        self.pump(now)
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
                out.push(Output::Event(Event::Refused { code, reason }));
            }
            (State::AwaitChallenge, Frame::Challenge { nonce, relay }) => {
                let Ok(relay) = <[u8; 16]>::try_from(relay.as_slice()) else {
                    return self.fail("the relay sent a malformed challenge");
                };
                if self.relay != Some(relay) {
                    self.relay = Some(relay);
                    self.cursor = 0;
                    self.queued_to = 0;
                    out.push(Output::NewRelay(relay));
                }
                let key = self.key.verifying_key().to_bytes();
                let message = auth_message(&relay, &nonce, &self.workspace, &key);
                out.push(Output::Send(Frame::Prove {
                    signature: self.key.sign(&message).to_bytes().to_vec(),
                    register: self.register.clone(),
                }));
                self.state = State::AwaitWelcome;
                self.deadline = Some(now + ANSWER_TIMEOUT);
            }
            (State::AwaitWelcome, Frame::Welcome { head }) => {
                self.state = State::Ready;
                out.push(Output::Event(Event::Welcome { head }));
                out.push(Output::Send(Frame::Subscribe { after: self.cursor }));
                self.deadline = Some(now + ANSWER_TIMEOUT);
                out.extend(self.pump(now));
            }
            (State::Ready, Frame::Entries { entries, up_to }) => {
                if up_to < self.cursor || entries.iter().any(|(seq, _)| *seq > up_to) {
                    return self.fail("the relay sent entries out of order");
                }
                self.cursor = up_to;
                self.touch(now);
                out.push(Output::Apply {
                    entries: entries
                        .into_iter()
                        .map(|(seq, bytes)| (seq, bytes.into_vec()))
                        .collect(),
                    up_to,
                });
            }
            (State::Ready, Frame::CaughtUp { head }) => {
                self.caught_up = true;
                self.touch(now);
                if head > self.cursor {
                    // The rest are this node's own pushes on this connection.
                    self.cursor = head;
                    out.push(Output::Apply {
                        entries: Vec::new(),
                        up_to: head,
                    });
                }
                out.push(Output::Event(Event::CaughtUp));
            }
            (State::Ready, Frame::Stored { id, results }) => {
                let Some(flight) = self.in_flight.take_if(|f| f.id == id) else {
                    return self.fail("the relay answered a push that was not sent");
                };
                if results.len() != flight.seqs.len() {
                    return self.fail("the relay answered a push with the wrong number of results");
                }
                let pushed = flight.seqs.last().map_or(0, |s| s + 1);
                // Once caught up, entries this push appended right after the cursor need
                // not come back: the node has them.
                let before = self.cursor;
                if self.caught_up {
                    let mut seqs: Vec<u64> = results
                        .iter()
                        .filter_map(|r| match r {
                            PushResult::Stored(seq) | PushResult::Duplicate(seq) => Some(*seq),
                            PushResult::Rejected(_) => None,
                        })
                        .collect();
                    seqs.sort_unstable();
                    for seq in seqs {
                        if seq == self.cursor + 1 {
                            self.cursor = seq;
                        }
                    }
                }
                out.push(Output::Acked {
                    results: flight.seqs.into_iter().zip(results).collect(),
                    pushed,
                    pulled: (self.cursor > before).then_some(self.cursor),
                });
                self.touch(now);
                out.extend(self.pump(now));
            }
            (State::Ready, Frame::Revoked { member }) => {
                self.touch(now);
                out.push(Output::Event(Event::Revoked(member)));
            }
            (State::Ready, Frame::Error { reason }) => {
                self.touch(now);
                out.push(Output::Event(Event::RelayError(reason)));
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

    /// Keeps a deadline only while an answer is awaited.
    fn touch(&mut self, now: Instant) {
        self.deadline =
            (!self.caught_up || self.in_flight.is_some()).then_some(now + ANSWER_TIMEOUT);
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
