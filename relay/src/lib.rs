//! `meridian-relay`: the store-and-forward server of Meridian, and the wire types that
//! nodes and relay share.
//!
//! The relay never reads a document: it does not link automerge nor any cipher, it only
//! checks the shape and signature of [`envelope::Envelope`]s and stores them as they are.
//! The websocket server arrives with the sync protocol; today this crate holds the envelope
//! that bundles carry and the relay will store.

pub mod envelope;

pub use envelope::{Envelope, EnvelopeError};
