//! `meridian-relay`: the store-and-forward server of Meridian, and the wire types that
//! nodes and relay share.
//!
//! The relay never reads a document: it does not link automerge nor any cipher. It checks
//! the shape and signature of [`envelope::Envelope`]s and the membership of their authors,
//! stores them as they are in an append-only log per workspace, and forwards them to the
//! workspace's connected members.

pub mod cbor;
pub mod deflate;
pub mod determinism;
pub mod envelope;
pub mod handling;
pub mod membership;
pub mod metrics;
pub mod protocol;
pub mod server;
pub mod store;

pub use envelope::{AuthorKeys, Envelope, EnvelopeError};
pub use membership::JoinProof;
pub use protocol::Frame;
