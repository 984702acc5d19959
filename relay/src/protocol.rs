//! The sync protocol between a node and a relay: one websocket per (node, relay, workspace),
//! binary messages, one CBOR-encoded [`Frame`] per message. `PROTOCOL.md` at the top of the
//! repository describes the exchange for implementers of other clients.

use serde::{Deserialize, Serialize};

use crate::envelope::ID_LEN;
use crate::membership::JoinProof;

/// The protocol version this build speaks (sent in [`Frame::Hello`]).
pub const PROTOCOL_VERSION: u32 = 1;

/// The largest frame either side accepts: a push of a few envelopes of the maximum size.
pub const MAX_FRAME_BYTES: usize = 9 << 20;

/// The most entries a relay puts in one [`Frame::Entries`].
pub const MAX_BATCH_ENTRIES: usize = 1000;

/// The most envelope bytes a relay puts in one [`Frame::Entries`], and a node in one
/// [`Frame::Push`] (a single larger envelope still travels, alone).
pub const MAX_BATCH_BYTES: usize = 4 << 20;

/// The most members one [`Frame::Vouch`] may name.
pub const MAX_VOUCHES: usize = 256;

/// The websocket path a relay serves.
pub const PATH: &str = "/v1";

/// How a device asks the relay to admit it, when it is not yet a member there.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Register {
    /// The creator registers the workspace: the relay checks that the workspace id is
    /// [`crate::membership::workspace_id`] of the device key and this salt.
    Create {
        /// The salt the workspace id was derived with.
        #[serde(with = "serde_bytes")]
        salt: Vec<u8>,
    },
    /// A new member registers with an invite proof; each invite admits one device, once.
    Join(JoinProof),
    /// A member's new device registers with the proof one of their devices added it; each
    /// device code admits one device, once.
    Device(crate::membership::DeviceProof),
}

/// A member the creator vouches for ([`Frame::Vouch`]): their device key and the invite
/// proof they joined with.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vouchee {
    /// The member's device key.
    #[serde(with = "serde_bytes")]
    pub key: Vec<u8>,
    /// The proof from their member entry.
    pub proof: JoinProof,
}

/// What became of one member of a [`Frame::Vouch`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum VouchResult {
    /// Admitted now, durably; their invite is recorded as used by them.
    Admitted,
    /// Already a member here (or removed, which a vouch does not undo).
    Known,
    /// Refused for this reason; nothing was recorded.
    Refused(String),
}

/// What became of one envelope of a [`Frame::Push`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PushResult {
    /// Appended to the log at this sequence number, durably.
    Stored(u64),
    /// The relay already had it, at this sequence number.
    Duplicate(u64),
    /// Refused for this reason; the relay keeps nothing of it.
    Rejected(String),
}

/// Why a relay refused a connection ([`Frame::Refused`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RefusedCode {
    /// The client speaks another protocol version.
    Version,
    /// The frames did not follow the protocol.
    Protocol,
    /// The relay does not serve this workspace.
    UnknownWorkspace,
    /// The device is not a member of the workspace on this relay.
    NotMember,
    /// The device was removed from the workspace.
    Removed,
    /// A signature or proof did not verify.
    BadProof,
    /// The invite was already used by another device.
    InviteUsed,
    /// The invite expired.
    InviteExpired,
    /// The handshake took too long.
    Timeout,
    /// The relay is at a connection limit; try again later.
    Busy,
    /// The relay is shutting down; try again later.
    ShuttingDown,
}

/// One protocol message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Frame {
    /// Node → relay, first: who is connecting, for which workspace.
    Hello {
        /// [`PROTOCOL_VERSION`].
        version: u32,
        /// The workspace id.
        #[serde(with = "serde_bytes")]
        workspace: Vec<u8>,
        /// The device's ed25519 public key.
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        /// Whether the node reads [`Frame::Deflated`]. Older nodes leave the field out,
        /// which means false; it is left out when false, so such a `Hello` is the one
        /// older relays know (they ignore the field when it is there).
        #[serde(default, skip_serializing_if = "is_false")]
        deflate: bool,
    },
    /// Relay → node: prove you hold the key.
    Challenge {
        /// 32 random bytes, fresh for this connection.
        #[serde(with = "serde_bytes")]
        nonce: Vec<u8>,
        /// The relay's id, stable for the life of its data directory.
        #[serde(with = "serde_bytes")]
        relay: Vec<u8>,
    },
    /// Node → relay: the signature over [`auth_message`], and a registration if the device
    /// may not be a member on this relay yet.
    Prove {
        /// ed25519 signature by the device key.
        #[serde(with = "serde_bytes")]
        signature: Vec<u8>,
        /// How to admit the device if it is not a member yet.
        register: Option<Register>,
    },
    /// Relay → node: authenticated. `head` is the workspace log's last sequence number.
    Welcome {
        /// The last sequence number in the workspace log (0 when empty).
        head: u64,
        /// Whether the relay stores shared envelopes (several documents' changes, signed
        /// once: envelope version 2). Older relays leave it out, which means false, and a
        /// node then pushes envelopes of one document only; older nodes ignore it.
        #[serde(default, skip_serializing_if = "is_false")]
        shared: bool,
        /// Whether the relay takes [`Frame::Vouch`]. Older relays leave it out (false), and
        /// a node does not send them one.
        #[serde(default, skip_serializing_if = "is_false")]
        vouch: bool,
    },
    /// Relay → node: the connection is refused; the relay closes it. Nothing of the
    /// workspace was sent.
    Refused {
        /// Machine-readable reason.
        code: RefusedCode,
        /// What was wrong and what to do.
        reason: String,
    },
    /// Node → relay: send every entry after this sequence number, then live ones.
    Subscribe {
        /// The last sequence number the node has applied (0 for none).
        after: u64,
    },
    /// Relay → node: log entries in order. Every entry with a sequence number up to
    /// `up_to` was either in this frame, in an earlier one, or pushed on this connection.
    Entries {
        /// (sequence number, encoded envelope).
        entries: Vec<(u64, serde_bytes::ByteBuf)>,
        /// The node may set its cursor here once it has applied these entries.
        up_to: u64,
    },
    /// Relay → node, only to a node whose `Hello` set `deflate`: a [`Frame::Entries`],
    /// encoded, then compressed as one raw DEFLATE stream (RFC 1951). The repeated field
    /// names, workspace id and author keys of its envelopes compress away. The node reads
    /// it with [`Frame::inflate`] and handles the `Entries` inside as if it came plain.
    Deflated {
        /// The DEFLATE stream of the encoded `Entries` frame.
        frame: serde_bytes::ByteBuf,
    },
    /// Relay → node, during the catch-up after `Subscribe`: these log positions hold
    /// entries of documents whose snapshot this catch-up sent instead (in `Entries`, at the
    /// position of the document's first entry). The node counts them as received.
    Skipped {
        /// Inclusive ranges of log positions, increasing.
        ranges: Vec<(u64, u64)>,
    },
    /// Relay → node: the catch-up after `Subscribe` is complete; live entries follow.
    CaughtUp {
        /// The sequence number the node has every entry up to.
        head: u64,
    },
    /// Node → relay: envelopes to append.
    Push {
        /// Echoed in the answer.
        id: u64,
        /// Encoded envelopes.
        envelopes: Vec<serde_bytes::ByteBuf>,
    },
    /// Relay → node: the push `id` is durable; one result per envelope, in order.
    Stored {
        /// The push's id.
        id: u64,
        /// What became of each envelope.
        results: Vec<PushResult>,
    },
    /// Node (the workspace creator) → relay: a sealed snapshot of one document (its
    /// plaintext is a whole automerge document), holding every change of that document in
    /// the log up to position `covers`. A member who subscribes with none of the document
    /// gets the snapshot in place of those entries. Answered by `Stored` with one result:
    /// `Stored(covers)` when kept, `Duplicate(c)` when the relay has one covering `c` ≥
    /// `covers` already, or `Rejected`.
    Snapshot {
        /// Echoed in the answer; shares the numbering of pushes.
        id: u64,
        /// The last log position whose entry (of this document) the snapshot holds.
        covers: u64,
        /// The encoded envelope.
        envelope: serde_bytes::ByteBuf,
        /// Whether its maker reads shared envelopes, and so holds the changes of every
        /// shared entry up to `covers`. Older nodes leave it out (false), and the relay
        /// refuses their snapshots: a catch-up from one would skip shared entries the
        /// maker never applied.
        #[serde(default, skip_serializing_if = "is_false")]
        shared: bool,
    },
    /// Node (the workspace creator) → relay: this member may no longer connect or push.
    Revoke {
        /// The member's device key.
        #[serde(with = "serde_bytes")]
        member: Vec<u8>,
    },
    /// Relay → node: the member was revoked; their connections are closed.
    Revoked {
        /// The member's device key.
        #[serde(with = "serde_bytes")]
        member: Vec<u8>,
    },
    /// Node (the workspace creator) → relay: these devices are members, admit them without
    /// their own registration. A relay checks an invite's expiry when a device registers,
    /// so without this a member whose invite expired could never use a relay added later,
    /// and the changes they wrote, backfilled by others, would be refused there. At most
    /// [`MAX_VOUCHES`] members; only to a relay whose `Welcome` said `vouch`.
    Vouch {
        /// Echoed in the answer; shares the numbering of pushes.
        id: u64,
        /// The members.
        members: Vec<Vouchee>,
    },
    /// Relay → node: the answer to [`Frame::Vouch`], one result per member, in order.
    Vouched {
        /// The vouch's id.
        id: u64,
        /// What became of each member.
        results: Vec<VouchResult>,
    },
    /// Relay → node: a request failed but the connection stays up.
    Error {
        /// What was wrong.
        reason: String,
    },
}

/// Why bytes are not a frame.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    /// Larger than [`MAX_FRAME_BYTES`].
    #[error("frame is {0} bytes, more than the limit of {MAX_FRAME_BYTES}")]
    TooLarge(usize),
    /// Not a CBOR frame of this protocol.
    #[error("frame is not valid: {0}")]
    Malformed(String),
    /// A [`Frame::Deflated`] whose stream does not inflate to one `Entries` frame within
    /// [`MAX_FRAME_BYTES`].
    #[error("compressed frame is not valid: {0}")]
    Deflated(String),
}

fn is_false(value: &bool) -> bool {
    !*value
}

impl Frame {
    /// Encodes as CBOR.
    pub fn encode(&self) -> Vec<u8> {
        let mut bytes = Vec::new();
        ciborium::into_writer(self, &mut bytes).expect("writing CBOR to a Vec cannot fail");
        bytes
    }

    /// Decodes CBOR bytes, refusing oversized input.
    pub fn decode(bytes: &[u8]) -> Result<Frame, FrameError> {
        if bytes.len() > MAX_FRAME_BYTES {
            return Err(FrameError::TooLarge(bytes.len()));
        }
        crate::cbor::from_slice(bytes).map_err(|e| FrameError::Malformed(e.to_string()))
    }

    /// `encoded` (the encoding of an `Entries` frame) as the encoding of the
    /// [`Frame::Deflated`] that carries it, or `None` when compressing does not make it
    /// smaller (one envelope alone: its signature, nonce and ciphertext do not compress),
    /// or makes it so much smaller that a node would take it for a bomb ([`Frame::inflate`]
    /// bounds the ratio): a member can push an envelope whose ciphertext is all zeros, and
    /// every reader must still be able to take the frame that carries it.
    pub fn deflate(encoded: &[u8]) -> Option<Vec<u8>> {
        let stream = COMPRESSOR.with_borrow_mut(|slot| {
            // A compressor holds a few hundred KB of tables: setting them up again for
            // every frame cost 100 µs, ten times compressing two envelopes.
            let compressor = slot.get_or_insert_with(|| {
                flate2::Compress::new(flate2::Compression::new(LEVEL), false)
            });
            compressor.reset();
            // Room for the whole stream even when nothing compresses (fixed Huffman codes
            // take up to 9 bits a byte), so it always finishes; whether it is worth sending
            // is decided below.
            let mut stream = Vec::with_capacity(encoded.len() + encoded.len() / 8 + 1024);
            let finished = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                compressor.compress_vec(encoded, &mut stream, flate2::FlushCompress::Finish)
            }));
            match finished {
                Ok(Ok(flate2::Status::StreamEnd)) => Some(stream),
                _ => {
                    // zlib-rs 0.6.8's level 1 (`deflate_quick`), given no more room than
                    // the frame, panicked in the relay's catch-up reads of a convergence run
                    // (`buf.len() must fit in remaining()`; not reproduced outside it). The
                    // relay now uses level 2 with room to finish; should a panic or an
                    // unfinished stream remain, the compressor is dropped, not reused, and
                    // the frame goes plain.
                    *slot = None;
                    None
                }
            }
        })?;
        if encoded.len() > inflation_limit(stream.len()) {
            return None;
        }
        let frame = Frame::Deflated {
            frame: serde_bytes::ByteBuf::from(stream),
        }
        .encode();
        (frame.len() < encoded.len()).then_some(frame)
    }

    /// The `Entries` frame a [`Frame::Deflated`] carries, from its stream. The stream is
    /// untrusted: it must end exactly where the field ends, inflate to at most
    /// [`MAX_FRAME_BYTES`] and to at most [`MAX_INFLATION`] times its own size plus 64 KiB
    /// (a bomb is stopped one byte past that, never held whole), and hold one `Entries`
    /// frame, not another compressed frame nor anything else.
    pub fn inflate(stream: &[u8]) -> Result<Frame, FrameError> {
        let encoded = inflate_bounded(stream, inflation_limit(stream.len()))?;
        match Frame::decode(&encoded) {
            Ok(frame @ Frame::Entries { .. }) => Ok(frame),
            Ok(other) => Err(FrameError::Deflated(format!(
                "it holds {}, and only Entries may be compressed",
                other.name()
            ))),
            Err(error) => Err(FrameError::Deflated(format!(
                "what it inflates to is not a frame: {error}"
            ))),
        }
    }

    /// A short name for logs.
    pub fn name(&self) -> &'static str {
        match self {
            Frame::Hello { .. } => "Hello",
            Frame::Challenge { .. } => "Challenge",
            Frame::Prove { .. } => "Prove",
            Frame::Welcome { .. } => "Welcome",
            Frame::Refused { .. } => "Refused",
            Frame::Subscribe { .. } => "Subscribe",
            Frame::Entries { .. } => "Entries",
            Frame::Deflated { .. } => "Deflated",
            Frame::Skipped { .. } => "Skipped",
            Frame::CaughtUp { .. } => "CaughtUp",
            Frame::Push { .. } => "Push",
            Frame::Stored { .. } => "Stored",
            Frame::Snapshot { .. } => "Snapshot",
            Frame::Revoke { .. } => "Revoke",
            Frame::Revoked { .. } => "Revoked",
            Frame::Vouch { .. } => "Vouch",
            Frame::Vouched { .. } => "Vouched",
            Frame::Error { .. } => "Error",
        }
    }
}

/// How many times its own size a compressed frame may inflate to. Entries are sealed
/// envelopes, whose ciphertext does not compress: only their ids, keys and field names
/// repeat, so real frames shrink by well under 2×. Without this bound a relay could make a
/// node hold 9 MiB per 9 KB it sends, and a node takes up to 64 frames at once.
pub const MAX_INFLATION: usize = 16;

/// The most a compressed stream of `len` bytes may inflate to.
fn inflation_limit(len: usize) -> usize {
    len.saturating_mul(MAX_INFLATION)
        .saturating_add(64 << 10)
        .min(MAX_FRAME_BYTES)
}

/// The DEFLATE level of [`Frame::deflate`], for live batches (compressed on the relay's one
/// writer thread) and catch-up frames alike. On these frames the default level (6) is no
/// smaller (a first copy 1.06× a save, level 2 1.05×, level 1 1.09×) for more CPU (relay
/// CPU per delivery in the 10 × 100 × 100 convergence, whose nodes share the two cores
/// with the relay: 2.6 µs, level 2 2.2–2.4, level 1 1.8); level 1, zlib-rs's
/// `deflate_quick`, panicked under load.
const LEVEL: u32 = 2;

thread_local! {
    /// This thread's compressor, kept between frames.
    static COMPRESSOR: std::cell::RefCell<Option<flate2::Compress>> =
        const { std::cell::RefCell::new(None) };
}

/// [`crate::deflate::inflate_bounded`], its refusals as the reasons a node gives.
fn inflate_bounded(stream: &[u8], limit: usize) -> Result<Vec<u8>, FrameError> {
    use crate::deflate::InflateError;
    crate::deflate::inflate_bounded(stream, limit).map_err(|e| {
        FrameError::Deflated(match e {
            InflateError::TooLarge { limit } => format!(
                "it inflates beyond the limit of {limit} bytes: refusing a decompression bomb"
            ),
            InflateError::Corrupt(e) => format!("the DEFLATE stream is corrupt ({e})"),
            InflateError::Truncated => {
                "the DEFLATE stream is truncated: it stops before its end".into()
            }
            InflateError::Trailing => "the DEFLATE stream is followed by stray bytes".into(),
        })
    })
}

/// What the device signs to authenticate: bound to this relay, this connection's nonce,
/// the workspace and the key, so a proof cannot be replayed anywhere else.
pub fn auth_message(relay: &[u8], nonce: &[u8], workspace: &[u8; ID_LEN], key: &[u8]) -> Vec<u8> {
    let mut message = b"meridian/relay-auth/v1\0".to_vec();
    for part in [relay, nonce, workspace.as_slice(), key] {
        message.extend_from_slice(&(part.len() as u64).to_le_bytes());
        message.extend_from_slice(part);
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        let frames = [
            Frame::Hello {
                version: PROTOCOL_VERSION,
                workspace: vec![1; 16],
                key: vec![2; 32],
                deflate: false,
            },
            Frame::Hello {
                version: PROTOCOL_VERSION,
                workspace: vec![1; 16],
                key: vec![2; 32],
                deflate: true,
            },
            Frame::Deflated {
                frame: serde_bytes::ByteBuf::from(vec![9; 5]),
            },
            Frame::Entries {
                entries: vec![(3, serde_bytes::ByteBuf::from(vec![4, 5]))],
                up_to: 7,
            },
            Frame::Stored {
                id: 1,
                results: vec![
                    PushResult::Stored(3),
                    PushResult::Duplicate(2),
                    PushResult::Rejected("no".into()),
                ],
            },
            Frame::Refused {
                code: RefusedCode::NotMember,
                reason: "not a member".into(),
            },
            Frame::Skipped {
                ranges: vec![(2, 5), (9, 9)],
            },
            Frame::Snapshot {
                id: 4,
                covers: 12,
                envelope: serde_bytes::ByteBuf::from(vec![6; 3]),
                shared: true,
            },
        ];
        for frame in frames {
            assert_eq!(Frame::decode(&frame.encode()).unwrap(), frame);
        }
    }

    /// What a Hello looked like before `deflate`: what an older relay decodes into, and
    /// what an older node sends.
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum OldFrame {
        Hello {
            version: u32,
            #[serde(with = "serde_bytes")]
            workspace: Vec<u8>,
            #[serde(with = "serde_bytes")]
            key: Vec<u8>,
        },
    }

    #[test]
    fn hello_without_deflate_is_the_old_hello_both_ways() {
        let old = OldFrame::Hello {
            version: PROTOCOL_VERSION,
            workspace: vec![1; 16],
            key: vec![2; 32],
        };
        let mut old_bytes = Vec::new();
        ciborium::into_writer(&old, &mut old_bytes).unwrap();
        let hello = |deflate| Frame::Hello {
            version: PROTOCOL_VERSION,
            workspace: vec![1; 16],
            key: vec![2; 32],
            deflate,
        };
        // An older node's Hello reads as one that did not ask, and a new node that does not
        // ask sends exactly that.
        assert_eq!(Frame::decode(&old_bytes).unwrap(), hello(false));
        assert_eq!(hello(false).encode(), old_bytes);
        // An older relay reads a new node's Hello, ignoring the field it does not know.
        let read: OldFrame = crate::cbor::from_slice(&hello(true).encode()).unwrap();
        assert_eq!(read, old);
    }

    /// `n` pseudo-random bytes (xorshift), from and advancing `state`.
    fn noise(state: &mut u64, n: usize) -> Vec<u8> {
        (0..n)
            .map(|_| {
                *state ^= *state << 13;
                *state ^= *state >> 7;
                *state ^= *state << 17;
                *state as u8
            })
            .collect()
    }

    /// An `Entries` frame of `count` envelope-like entries: each repeats the names, the
    /// workspace id and the author key, around 150 random bytes.
    fn entries(count: u64) -> Frame {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut random = |n: usize| noise(&mut state, n);
        Frame::Entries {
            entries: (1..=count)
                .map(|seq| {
                    let mut envelope = b"versionworkspace".to_vec();
                    envelope.extend_from_slice(&[7; 16]);
                    envelope.extend_from_slice(b"docauthor");
                    envelope.extend_from_slice(&[8; 32]);
                    envelope.extend_from_slice(b"nonceciphertextsignature");
                    envelope.extend(random(150));
                    (seq, serde_bytes::ByteBuf::from(envelope))
                })
                .collect(),
            up_to: count,
        }
    }

    #[test]
    fn deflated_entries_inflate_to_the_same_frame_and_only_when_smaller() {
        let frame = entries(50);
        let encoded = frame.encode();
        let deflated = Frame::deflate(&encoded).expect("repeated names and ids compress");
        assert!(
            deflated.len() < encoded.len() * 9 / 10,
            "{}",
            deflated.len()
        );
        let Frame::Deflated { frame: stream } = Frame::decode(&deflated).unwrap() else {
            panic!("not a Deflated frame");
        };
        assert_eq!(Frame::inflate(&stream).unwrap(), frame);
        // Random bytes alone do not compress: the frame goes plain.
        let random = Frame::Entries {
            entries: vec![(1, serde_bytes::ByteBuf::from(vec![0u8; 0]))],
            up_to: 1,
        };
        assert_eq!(Frame::deflate(&random.encode()), None);
    }

    fn deflate_raw(bytes: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut encoder =
            flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
        encoder.write_all(bytes).unwrap();
        encoder.finish().unwrap()
    }

    #[test]
    fn frames_that_do_not_compress_are_sent_plain_without_a_panic() {
        // Frames of sealed envelopes barely compress. Compressing them, one after another on
        // one thread's compressor, finishes or gives up and is smaller when it is sent. (The
        // panic of level 1 seen in a convergence run was not reproduced with these.)
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut noise = |len: usize| noise(&mut state, len);
        let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
        for count in [2, 3, 10, 100, 1000] {
            for size in [1, 60, 150, 300, 1200, 4000] {
                let frame = Frame::Entries {
                    entries: (0..count)
                        .map(|i| {
                            let nonce: [u8; 24] = noise(24).try_into().unwrap();
                            let ciphertext = noise(size + i % 7);
                            let envelope = crate::Envelope::sign(
                                &key,
                                [1; 16],
                                [(i % 5) as u8; 16],
                                nonce,
                                |_| ciphertext,
                            );
                            (i as u64, serde_bytes::ByteBuf::from(envelope.encode()))
                        })
                        .collect(),
                    up_to: count as u64,
                }
                .encode();
                if frame.len() > 1 << 20 {
                    continue;
                }
                if let Some(deflated) = Frame::deflate(&frame) {
                    assert!(deflated.len() < frame.len());
                }
            }
        }
    }

    #[test]
    fn a_frame_that_compresses_too_well_goes_plain() {
        // A member may push an envelope of zeros: its frame must reach every reader.
        let zeros = Frame::Entries {
            entries: vec![
                (1, serde_bytes::ByteBuf::from(vec![0; 1 << 20])),
                (2, serde_bytes::ByteBuf::from(vec![0; 1 << 20])),
            ],
            up_to: 2,
        }
        .encode();
        assert_eq!(Frame::deflate(&zeros), None);
    }

    #[test]
    fn hostile_deflated_frames_are_clear_errors() {
        let entries = entries(3).encode();
        let stream = deflate_raw(&entries);
        let nested = Frame::deflate(&entries).unwrap();
        let hello = Frame::Hello {
            version: 1,
            workspace: vec![1; 16],
            key: vec![2; 32],
            deflate: true,
        };
        let mut stray = stream.clone();
        stray.push(0);
        let cases: Vec<(&str, Vec<u8>, &str)> = vec![
            (
                "bomb",
                deflate_raw(&vec![0; MAX_FRAME_BYTES + 1]),
                "decompression bomb",
            ),
            (
                "inflates too far for its size",
                deflate_raw(&vec![0; 1 << 20]),
                "decompression bomb",
            ),
            (
                "truncated",
                stream[..stream.len() / 2].to_vec(),
                "truncated",
            ),
            ("empty", Vec::new(), "truncated"),
            ("garbage", vec![0xff; 64], "corrupt"),
            ("stray bytes", stray, "stray bytes"),
            ("nested", deflate_raw(&nested), "holds Deflated"),
            ("not entries", deflate_raw(&hello.encode()), "holds Hello"),
            ("not a frame", deflate_raw(b"plain words"), "not a frame"),
        ];
        for (name, stream, expected) in cases {
            let error = Frame::inflate(&stream).unwrap_err();
            assert!(
                matches!(error, FrameError::Deflated(_)),
                "{name}: {error:?}"
            );
            let error = error.to_string();
            assert!(
                error.starts_with("compressed frame is not valid") && error.contains(expected),
                "{name}: {error}"
            );
        }
        // Bytes that inflate within both bounds are read, and refused for what they are.
        let random = noise(&mut 0x9e37_79b9_7f4a_7c15_u64, 1 << 20);
        let error = Frame::inflate(&deflate_raw(&random)).unwrap_err();
        assert!(error.to_string().contains("not a frame"), "{error}");
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(Frame::decode(b"").is_err());
        assert!(Frame::decode(&[0xff; 40]).is_err());
        assert_eq!(
            Frame::decode(&vec![0; MAX_FRAME_BYTES + 1]),
            Err(FrameError::TooLarge(MAX_FRAME_BYTES + 1))
        );
    }
}
