//! The application layer: what a person does in a workspace (write, ask, decide, reply,
//! settle a conflict, catch up), as functions over a [`Context`] that return structured
//! results. The command line parses arguments, calls these and prints what they return;
//! a second face (a web UI) calls the same functions, so both show the same semantics.
//!
//! Everything here that decides something is checked again by the document rules on
//! every replica (`rules`); the checks here exist to refuse early with a message that
//! says what to do, before anything is written.

pub mod comment;
pub mod conflicts;
pub mod decision;
pub mod draft;
pub mod inbox;
pub mod invite;
pub mod request;
pub mod sync;
pub mod team;

use anyhow::Result;
use jiff::tz::TimeZone;

use crate::id::Id;
use crate::index::DocSummary;
use crate::node::Node;
use crate::store::WorkspaceRecord;

/// A person acting in one workspace on this node.
pub struct Context {
    /// The node.
    pub node: Node,
    /// The workspace.
    pub workspace: Id,
    /// What the node knows of it (members, norms, relays).
    pub record: WorkspaceRecord,
    /// The person's member id (their device key, hex).
    pub me: String,
    /// The zone times are shown in (the person's, or the one they asked for).
    pub tz: TimeZone,
}

impl Context {
    /// A member's display name.
    pub fn name(&self, id: &str) -> String {
        self.record.state.name_of(id)
    }

    /// A time for people, in the reader's zone: `Tue 2026-11-24 09:00 -05`.
    pub fn time(&self, ms: i64) -> String {
        crate::norms::show_time(ms, &self.tz)
    }

    /// The document a unique id prefix names in this workspace.
    pub fn document(&self, prefix: &str) -> Result<(Id, DocSummary)> {
        self.node.resolve(self.workspace, prefix)
    }
}
