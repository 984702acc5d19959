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
            Frame::Skipped { .. } => "Skipped",
            Frame::CaughtUp { .. } => "CaughtUp",
            Frame::Push { .. } => "Push",
            Frame::Stored { .. } => "Stored",
            Frame::Snapshot { .. } => "Snapshot",
            Frame::Revoke { .. } => "Revoke",
            Frame::Revoked { .. } => "Revoked",
            Frame::Error { .. } => "Error",
        }
    }
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
            },
        ];
        for frame in frames {
            assert_eq!(Frame::decode(&frame.encode()).unwrap(), frame);
        }
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
