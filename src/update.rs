//! Status updates: what I did, what I will do next, what blocks me, with links to the
//! proposals and threads they concern.

use anyhow::Result;
use automerge::transaction::Transactable;
use automerge::{ObjType, ROOT, ReadDoc};
use serde::Serialize;

use crate::discussion::{self, Comment};
use crate::doc::{View, put_str_list, put_text};
use crate::id::Id;

/// The three parts of an update.
pub const PARTS: [&str; 3] = ["done", "next", "blockers"];

/// What `update new` writes.
pub struct NewUpdate {
    /// The new document's id.
    pub id: Id,
    /// Its workspace.
    pub workspace: Id,
    /// Title shown in lists.
    pub title: String,
    /// The period it covers (ISO week by default).
    pub period: String,
    /// Done / next / blockers.
    pub parts: [String; 3],
    /// Linked document ids.
    pub links: Vec<String>,
    /// Author member id.
    pub author: String,
    /// Created, ms.
    pub at: i64,
}

/// Writes a new update into an empty document.
pub fn create<T: Transactable + ReadDoc>(tx: &mut T, new: &NewUpdate) -> Result<()> {
    tx.put(ROOT, "id", new.id.hex())?;
    tx.put(ROOT, "kind", "update")?;
    tx.put(ROOT, "workspace", new.workspace.hex())?;
    tx.put(ROOT, "title", new.title.as_str())?;
    tx.put(ROOT, "author", new.author.as_str())?;
    tx.put(ROOT, "created", new.at)?;
    tx.put(ROOT, "period", new.period.as_str())?;
    for (name, text) in PARTS.iter().zip(&new.parts) {
        put_text(tx, &ROOT, name, text)?;
    }
    put_str_list(tx, &ROOT, "links", &new.links)?;
    tx.put_object(ROOT, "comments", ObjType::Map)?;
    Ok(())
}

/// Everything shown about an update.
#[derive(Clone, Debug, Serialize)]
pub struct Update {
    /// Id.
    pub id: String,
    /// Title.
    pub title: String,
    /// Author member id.
    pub author: String,
    /// Created, ms.
    pub created: i64,
    /// Period.
    pub period: String,
    /// What was done.
    pub done: String,
    /// What comes next.
    pub next: String,
    /// What blocks.
    pub blockers: String,
    /// Linked documents.
    pub links: Vec<String>,
    /// Replies.
    pub comments: Vec<Comment>,
}

/// Reads an update.
pub fn read(view: View<'_>) -> Update {
    Update {
        id: view.string(&ROOT, "id"),
        title: view.title(),
        author: view.string(&ROOT, "author"),
        created: view.int(&ROOT, "created").unwrap_or(0),
        period: view.string(&ROOT, "period"),
        done: view.string(&ROOT, "done"),
        next: view.string(&ROOT, "next"),
        blockers: view.string(&ROOT, "blockers"),
        links: view.str_list(&ROOT, "links"),
        comments: discussion::comments(view),
    }
}
