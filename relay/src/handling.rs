//! The relay's decisions about what a client sends, without I/O.
//!
//! [`crate::server`] wraps them in sockets, timeouts and threads; the deterministic
//! simulation (`tests/sim`) calls them directly over in-memory frame queues, so both run the
//! same handshake checks, push sorting and forwarding rules.

use crate::determinism;
use crate::envelope::{AuthorKeys, Envelope};
use crate::membership::verify_signature;
use crate::protocol::{Frame, PROTOCOL_VERSION, PushResult, RefusedCode, Register, auth_message};
use crate::store::{Incoming, Refusal};

/// A workspace id.
pub type Ws = [u8; 16];
/// A device's public key.
pub type Key = [u8; 32];

fn refusal(code: RefusedCode, reason: impl Into<String>) -> Refusal {
    Refusal {
        code,
        reason: reason.into(),
    }
}

/// Who connects, and how, from its `Hello`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hello {
    /// The workspace.
    pub ws: Ws,
    /// The device's key.
    pub key: Key,
    /// Whether the client reads [`Frame::Deflated`].
    pub deflate: bool,
}

/// The first frame: `Hello` with this protocol version, a workspace id and a key.
pub fn hello(frame: Frame) -> Result<Hello, Refusal> {
    let Frame::Hello {
        version,
        workspace,
        key,
        deflate,
    } = frame
    else {
        return Err(refusal(
            RefusedCode::Protocol,
            format!("expected Hello, got {}", frame.name()),
        ));
    };
    if version != PROTOCOL_VERSION {
        return Err(refusal(
            RefusedCode::Version,
            format!(
                "this relay speaks protocol version {PROTOCOL_VERSION}, the client {version}: upgrade the older side"
            ),
        ));
    }
    match (
        Ws::try_from(workspace.as_slice()),
        Key::try_from(key.as_slice()),
    ) {
        (Ok(ws), Ok(key)) => Ok(Hello { ws, key, deflate }),
        _ => Err(refusal(
            RefusedCode::Protocol,
            "Hello needs a 16-byte workspace id and a 32-byte key",
        )),
    }
}

/// A fresh challenge from relay `relay`: the nonce to remember and the frame to send.
pub fn challenge(relay: [u8; 16]) -> Result<([u8; 32], Frame), getrandom::Error> {
    let mut nonce = [0u8; 32];
    determinism::fill(&mut nonce)?;
    let frame = Frame::Challenge {
        nonce: nonce.to_vec(),
        relay: relay.to_vec(),
    };
    Ok((nonce, frame))
}

/// The second frame: `Prove`, signed over this relay, nonce, workspace and key. Returns how
/// the device asks to be admitted.
pub fn prove(
    frame: Frame,
    relay: [u8; 16],
    nonce: &[u8; 32],
    ws: &Ws,
    key: &Key,
) -> Result<Option<Register>, Refusal> {
    let Frame::Prove {
        signature,
        register,
    } = frame
    else {
        return Err(refusal(
            RefusedCode::Protocol,
            format!("expected Prove, got {}", frame.name()),
        ));
    };
    let message = auth_message(&relay, nonce, ws, key);
    verify_signature(key, &message, &signature, "authentication").map_err(|_| {
        refusal(
            RefusedCode::BadProof,
            "the authentication signature does not verify for this key",
        )
    })?;
    Ok(register)
}

/// A push sorted: per envelope either its answer already (it does not decode, or belongs to
/// another workspace) or `None`, and the envelopes to store, in order.
pub struct Sorted {
    answers: Vec<Option<PushResult>>,
    /// What the store must try to append.
    pub incoming: Vec<Incoming>,
}

/// Checks a push's envelopes for workspace `ws`, pushed by the device `pusher`.
pub fn sort_push(ws: &Ws, pusher: &Key, envelopes: Vec<serde_bytes::ByteBuf>) -> Sorted {
    let mut answers = Vec::with_capacity(envelopes.len());
    let mut incoming = Vec::new();
    // A push is usually one device's envelopes: its key is parsed once.
    let mut keys = AuthorKeys::default();
    for bytes in envelopes {
        match Envelope::decode_with(&bytes, &mut keys) {
            Err(e) => answers.push(Some(PushResult::Rejected(e.to_string()))),
            Ok(envelope) if envelope.workspace_id() != *ws => answers.push(Some(
                PushResult::Rejected("the envelope belongs to another workspace".into()),
            )),
            Ok(envelope) => {
                incoming.push(to_store(&envelope, pusher));
                answers.push(None);
            }
        }
    }
    Sorted { answers, incoming }
}

/// A verified envelope as the store appends it: encoded once, and hashed from that.
fn to_store(envelope: &Envelope, pusher: &Key) -> Incoming {
    let bytes = envelope.encode();
    let mut author = [0; 32];
    author.copy_from_slice(&envelope.author);
    Incoming {
        hash: crate::envelope::content_hash(&bytes),
        author,
        docs: envelope.doc_ids(),
        bytes,
        forwarded: author != *pusher,
    }
}

impl Sorted {
    /// Every envelope's answer, given the store's results for [`Sorted::incoming`].
    pub fn answers(self, stored: Vec<PushResult>) -> Vec<PushResult> {
        let mut stored = stored.into_iter();
        self.answers
            .into_iter()
            .map(|r| {
                r.or_else(|| stored.next())
                    .unwrap_or_else(|| PushResult::Rejected("lost by the relay".into()))
            })
            .collect()
    }
}

/// A snapshot pushed for workspace `ws` by a node that says whether it reads shared
/// envelopes, checked, or the answer refusing it. The store decides the rest
/// ([`crate::store::RelayStore::put_snapshot`]).
pub fn sort_snapshot(ws: &Ws, bytes: &[u8], reads_shared: bool) -> Result<Incoming, PushResult> {
    if !reads_shared {
        return Err(PushResult::Rejected(
            "this node cannot read shared envelopes, so its snapshot may lack changes the log holds; update meridian to make snapshots".into(),
        ));
    }
    match Envelope::decode(bytes) {
        Err(e) => Err(PushResult::Rejected(e.to_string())),
        Ok(envelope) if envelope.workspace_id() != *ws => Err(PushResult::Rejected(
            "the snapshot belongs to another workspace".into(),
        )),
        Ok(envelope) if envelope.is_shared() => Err(PushResult::Rejected(
            "a snapshot is of one document, not a shared envelope".into(),
        )),
        // Only the creator's are kept (`put_snapshot`), whoever hands them over.
        Ok(envelope) => Ok(to_store(&envelope, &[0; 32])),
    }
}

/// The frames that carry one catch-up read to the client, in order: the positions it
/// skipped for snapshots (when there are any), then its entries up to where it got.
pub fn catch_up_frames(read: crate::store::Read) -> Vec<Frame> {
    let mut frames = Vec::with_capacity(2);
    if !read.skipped.is_empty() {
        frames.push(Frame::Skipped {
            ranges: read.skipped,
        });
    }
    frames.push(Frame::Entries {
        entries: read
            .entries
            .into_iter()
            .map(|(seq, bytes)| (seq, serde_bytes::ByteBuf::from(bytes)))
            .collect(),
        up_to: read.up_to,
    });
    frames
}

/// The fewest entries an `Entries` frame holds before the relay compresses it. A lone
/// envelope is mostly signature, nonce and ciphertext, which do not compress, and has no
/// other envelope to share its field names, workspace id and author key with.
pub const DEFLATE_MIN_ENTRIES: usize = 2;

/// Whether an `Entries` frame of `entries` entries is worth compressing for a client that
/// reads [`Frame::Deflated`].
pub fn worth_deflating(entries: usize) -> bool {
    entries >= DEFLATE_MIN_ENTRIES
}

/// The encoding of a catch-up frame for a client: an `Entries` frame worth compressing
/// goes as [`Frame::Deflated`] to a client that reads it (`deflate`), when that is smaller;
/// anything else goes as it is.
pub fn encode_for(frame: &Frame, deflate: bool) -> Vec<u8> {
    let encoded = frame.encode();
    match frame {
        Frame::Entries { entries, .. } if deflate && worth_deflating(entries.len()) => {
            Frame::deflate(&encoded).unwrap_or(encoded)
        }
        _ => encoded,
    }
}

/// What to do with a newly committed batch `first..=last` for a subscriber that has
/// everything up to `cursor`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Forward {
    /// It has the batch already.
    Nothing,
    /// The batch does not follow its cursor, or is too large to keep live: read the log.
    CatchUp,
    /// The batch is its own push: it knows the entries from `Stored`; move the cursor.
    Own,
    /// Send the batch's frame.
    Send,
}

/// Decides [`Forward`]: `own` when the subscriber pushed the batch, `live` when the batch's
/// frame is kept for live forwarding.
pub fn forward(first: u64, last: u64, cursor: u64, own: bool, live: bool) -> Forward {
    if last <= cursor {
        Forward::Nothing
    } else if first != cursor + 1 {
        Forward::CatchUp
    } else if own {
        Forward::Own
    } else if live {
        Forward::Send
    } else {
        Forward::CatchUp
    }
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::SigningKey;

    use super::*;

    #[test]
    fn a_push_is_stored_as_encoded_once_with_each_verdict_in_place() {
        let sign = |seed: u8, ws: u8| {
            Envelope::sign(
                &SigningKey::from_bytes(&[seed; 32]),
                [ws; 16],
                [2; 16],
                [3; 24],
                |_| vec![seed],
            )
        };
        let mut forged = sign(7, 1);
        forged.ciphertext[0] ^= 1;
        let pushed = [sign(7, 1), sign(8, 1), forged, sign(7, 9), sign(7, 1)];
        let sorted = sort_push(
            &[1; 16],
            &[7; 32],
            pushed
                .iter()
                .map(|e| serde_bytes::ByteBuf::from(e.encode()))
                .collect(),
        );
        let stored: Vec<_> = sorted
            .incoming
            .iter()
            .map(|i| (i.hash, i.bytes.clone(), i.author))
            .collect();
        let kept = [&pushed[0], &pushed[1], &pushed[4]];
        let expected: Vec<_> = kept
            .iter()
            .map(|e| {
                (
                    e.hash(),
                    e.encode(),
                    <[u8; 32]>::try_from(&e.author[..]).unwrap(),
                )
            })
            .collect();
        assert_eq!(stored, expected);
        let answers = sorted.answers(vec![PushResult::Stored(1); 3]);
        assert!(matches!(answers[2], PushResult::Rejected(_)));
        assert!(
            matches!(&answers[3], PushResult::Rejected(why) if why.contains("another workspace"))
        );
        assert!(matches!(answers[4], PushResult::Stored(_)));
    }
}
