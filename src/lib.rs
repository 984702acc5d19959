//! Meridian: local-first asynchronous team communication.
//!
//! A node keeps a participant's workspaces as automerge documents in one redb file and
//! works with no network. See `ARCHITECTURE.md` for the map of modules and their invariants.

pub mod app;
pub mod bundle;
pub mod cache;
pub mod cli;
pub mod device;
pub mod discussion;
pub mod doc;
pub mod epochs;
pub mod error;
#[doc(hidden)]
pub mod fuzz;
pub mod history;
pub mod id;
pub mod identity;
pub mod inbox;
pub mod index;
pub mod ingest;
pub mod keyring;
pub mod lock;
pub mod markdown;
pub mod node;
pub mod norms;
pub mod notify;
pub mod proposal;
pub mod record;
pub mod rules;
pub mod seal;
pub mod search;
pub mod snapshot;
pub mod store;
pub mod sync;
pub mod thread;
pub mod update;
pub mod verify;
pub mod workspace;
