//! Threads: a titled discussion with nested replies, reactions and a resolved marker.

use anyhow::Result;
use automerge::transaction::Transactable;
use automerge::{ObjType, ROOT, ReadDoc};
use serde::Serialize;

use crate::discussion::{self, Ask, Comment, Entry, Lifecycle, State};
use crate::doc::{View, put_text};
use crate::id::Id;

/// What `thread new` writes.
pub struct NewThread {
    /// The new document's id.
    pub id: Id,
    /// Its workspace.
    pub workspace: Id,
    /// Title.
    pub title: String,
    /// Opening text.
    pub body: String,
    /// Member ids asked to respond.
    pub asks: Vec<String>,
    /// Urgency of the asks.
    pub urgency: String,
    /// Author member id.
    pub author: String,
    /// Created, ms.
    pub at: i64,
}

/// Writes a new thread into an empty document.
pub fn create<T: Transactable + ReadDoc>(tx: &mut T, new: &NewThread) -> Result<()> {
    tx.put(ROOT, "id", new.id.hex())?;
    tx.put(ROOT, "kind", "thread")?;
    tx.put(ROOT, "workspace", new.workspace.hex())?;
    tx.put(ROOT, "title", new.title.as_str())?;
    tx.put(ROOT, "author", new.author.as_str())?;
    tx.put(ROOT, "created", new.at)?;
    tx.put(ROOT, "urgency", new.urgency.as_str())?;
    put_text(tx, &ROOT, "body", &new.body)?;
    tx.put_object(ROOT, "entries", ObjType::Map)?;
    tx.put_object(ROOT, "comments", ObjType::Map)?;
    discussion::put_asks(tx, &new.asks, &new.urgency, &new.author, new.at)?;
    Ok(())
}

/// Everything shown about a thread.
#[derive(Clone, Debug, Serialize)]
pub struct Thread {
    /// Id.
    pub id: String,
    /// Title.
    pub title: String,
    /// Author member id.
    pub author: String,
    /// Created, ms.
    pub created: i64,
    /// Opening text.
    pub body: String,
    /// Urgency of the asks.
    pub urgency: String,
    /// Requests for a response.
    pub asks: Vec<Ask>,
    /// Open or resolved (or a conflict of the two).
    pub lifecycle: Lifecycle,
    /// Replies.
    pub comments: Vec<Comment>,
    /// Entries (resolve, reopen).
    pub entries: Vec<Entry>,
}

/// Reads a thread.
pub fn read(view: View<'_>) -> Thread {
    let entries = discussion::entries(view);
    Thread {
        id: view.string(&ROOT, "id"),
        title: view.title(),
        author: view.string(&ROOT, "author"),
        created: view.int(&ROOT, "created").unwrap_or(0),
        body: view.string(&ROOT, "body"),
        urgency: view.string(&ROOT, "urgency"),
        asks: discussion::asks(view),
        lifecycle: lifecycle(&entries),
        comments: discussion::comments(view),
        entries,
    }
}

/// Derives open/resolved; the initial state of a thread is shown as `open`.
pub fn lifecycle(entries: &[Entry]) -> Lifecycle {
    let rule = |entry: &Entry, before: &State| -> Option<String> {
        let resolved = matches!(before, State::Resolved);
        match entry.kind.as_str() {
            "resolve" if resolved => Some("already resolved".into()),
            "reopen" if !resolved && !matches!(before, State::Conflict { .. }) => {
                Some("not resolved".into())
            }
            "resolve" | "reopen" => None,
            other => Some(format!("`{other}` does not apply to threads")),
        }
    };
    let mut life = discussion::lifecycle(entries, State::Open { closes: None }, &rule);
    // A reopen leads to the shared "draft"; a thread calls that state open.
    match &mut life.state {
        State::Draft => life.state = State::Open { closes: None },
        State::Conflict { candidates } => {
            for (state, _) in candidates.iter_mut() {
                if state == "draft" {
                    *state = "open".into();
                }
            }
            candidates.sort();
        }
        _ => {}
    }
    life
}
