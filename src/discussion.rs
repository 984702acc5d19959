//! What proposals, threads and updates share: comments with nested replies and reactions,
//! requests for a response, and append-only entries (lifecycle transitions, approvals,
//! concerns) from which state is derived.
//!
//! Entries live in a map keyed by a random id, never in a list two peers append to, so
//! concurrent entries are all kept. Each transition names the transitions it followed
//! (`prev`), which makes "concurrent" a property of the data rather than of clocks: two
//! transitions that do not follow one another are both tips, and if they lead to different
//! states the document shows a conflict until someone resolves it.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::Result;
use automerge::transaction::Transactable;
use automerge::{ChangeHash, ObjId, ObjType, ROOT, ReadDoc};
use serde::Serialize;

use crate::doc::{View, ensure_map, heads_hex, parse_heads};
use crate::id::Id;

/// One comment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Comment {
    /// Its id.
    pub id: String,
    /// The comment it replies to, if any.
    pub parent: Option<String>,
    /// Author's member id.
    pub by: String,
    /// When, ms since the epoch.
    pub at: i64,
    /// The text.
    pub body: String,
    /// Reactions: emoji → member ids.
    pub reactions: BTreeMap<String, Vec<String>>,
    /// When its author last edited it, ms.
    pub edited: Option<i64>,
    /// Its author deleted it (its text is gone; replies to it stay).
    pub deleted: bool,
}

/// One append-only entry: a transition, an approval, a concern or the resolution of one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Entry {
    /// Its id.
    pub id: String,
    /// What it is: `open`, `final-comment`, `accept`, `reject`, `withdraw`, `supersede`,
    /// `resolve`, `reopen` (transitions); `approve`, `concern`, `resolve-concern`.
    pub kind: String,
    /// Author's member id.
    pub by: String,
    /// When, ms since the epoch.
    pub at: i64,
    /// For transitions: the transitions this one followed.
    pub prev: Vec<String>,
    /// For periods: when the period closes, ms since the epoch.
    pub closes: Option<i64>,
    /// A message.
    pub message: String,
    /// The document heads the author saw when writing this entry.
    pub heads: Vec<String>,
    /// For `supersede`: the superseding document; for `resolve-concern`: the concern.
    pub target: String,
    /// For concerns: whether it blocks acceptance.
    pub blocking: bool,
    /// For `ask`: the urgency of the request.
    pub urgency: String,
}

impl Entry {
    /// A new entry of `kind` by `by` at `at`, with nothing else set.
    pub fn new(kind: &str, by: &str, at: i64) -> Entry {
        Entry {
            id: Id::random().hex(),
            kind: kind.to_string(),
            by: by.to_string(),
            at,
            prev: Vec::new(),
            closes: None,
            message: String::new(),
            heads: Vec::new(),
            target: String::new(),
            blocking: false,
            urgency: String::new(),
        }
    }

    /// Whether this entry changes the lifecycle state.
    pub fn is_transition(&self) -> bool {
        target_state(&self.kind).is_some()
    }

    /// The heads as change hashes.
    pub fn heads(&self) -> Vec<ChangeHash> {
        parse_heads(&self.heads)
    }
}

/// A request that a member respond.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Ask {
    /// The member asked.
    pub member: String,
    /// The urgency level.
    pub urgency: String,
    /// When asked, ms.
    pub at: i64,
    /// Who asked.
    pub by: String,
}

/// Whether a key of the entries or comments map is a record id as Meridian makes them
/// (32 lowercase hex digits). Others are left out: a key that extends another's id would
/// make every prefix of that id ambiguous, and nobody could name the record again.
pub fn is_record_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Adds an entry, recording the heads the author sees.
pub fn put_entry<T: Transactable + ReadDoc>(
    tx: &mut T,
    entry: &Entry,
    heads: &[ChangeHash],
) -> Result<()> {
    let entries = ensure_map(tx, &ROOT, "entries")?;
    let obj = tx.put_object(&entries, entry.id.as_str(), ObjType::Map)?;
    tx.put(&obj, "kind", entry.kind.as_str())?;
    tx.put(&obj, "by", entry.by.as_str())?;
    tx.put(&obj, "at", entry.at)?;
    tx.put(&obj, "prev", entry.prev.join(","))?;
    if let Some(closes) = entry.closes {
        tx.put(&obj, "closes", closes)?;
    }
    if !entry.message.is_empty() {
        tx.put(&obj, "message", entry.message.as_str())?;
    }
    tx.put(&obj, "heads", heads_hex(heads).join(","))?;
    if !entry.target.is_empty() {
        tx.put(&obj, "target", entry.target.as_str())?;
    }
    if entry.blocking {
        tx.put(&obj, "blocking", true)?;
    }
    if !entry.urgency.is_empty() {
        tx.put(&obj, "urgency", entry.urgency.as_str())?;
    }
    Ok(())
}

/// Reads every entry, sorted by time then id (a stable order for display).
pub fn entries(view: View<'_>) -> Vec<Entry> {
    let split = |s: &str| -> Vec<String> {
        s.split(',')
            .filter(|p| !p.is_empty())
            .map(str::to_string)
            .collect()
    };
    let mut entries: Vec<Entry> = view
        .records(&ROOT, "entries", &[])
        .into_iter()
        .filter(|r| is_record_id(&r.id))
        .filter_map(|r| {
            Some(Entry {
                kind: r.str("kind")?.to_string(),
                by: r.string("by"),
                at: r.int("at").unwrap_or(0),
                prev: split(r.str("prev").unwrap_or_default()),
                closes: r.int("closes"),
                message: r.string("message"),
                heads: split(r.str("heads").unwrap_or_default()),
                target: r.string("target"),
                blocking: r.bool("blocking"),
                urgency: r.string("urgency"),
                id: r.id,
            })
        })
        .collect();
    entries.sort_by(|a, b| (a.at, &a.id).cmp(&(b.at, &b.id)));
    entries
}

/// Adds a comment, or a reply to `parent`.
pub fn put_comment<T: Transactable + ReadDoc>(
    tx: &mut T,
    id: &str,
    parent: Option<&str>,
    by: &str,
    at: i64,
    body: &str,
) -> Result<()> {
    let comments = ensure_map(tx, &ROOT, "comments")?;
    let obj = tx.put_object(&comments, id, ObjType::Map)?;
    if let Some(parent) = parent {
        tx.put(&obj, "parent", parent)?;
    }
    tx.put(&obj, "by", by)?;
    tx.put(&obj, "at", at)?;
    tx.put(&obj, "body", body)?;
    // Made with the comment, so two people reacting at once never create two maps.
    tx.put_object(&obj, "reactions", ObjType::Map)?;
    Ok(())
}

/// Adds a reaction to a comment.
pub fn put_reaction<T: Transactable + ReadDoc>(
    tx: &mut T,
    comment: &ObjId,
    emoji: &str,
    by: &str,
    at: i64,
) -> Result<()> {
    let reactions = ensure_map(tx, comment, "reactions")?;
    tx.put(&reactions, format!("{emoji} {by}"), at)?;
    Ok(())
}

/// Replaces the text of a comment (its author's edit), or with `None` deletes it.
pub fn put_comment_edit<T: Transactable + ReadDoc>(
    tx: &mut T,
    comment: &ObjId,
    body: Option<&str>,
    at: i64,
) -> Result<()> {
    match body {
        Some(body) => {
            tx.put(comment, "body", body)?;
            tx.put(comment, "edited", at)?;
        }
        None => {
            tx.put(comment, "body", "")?;
            tx.put(comment, "deleted", at)?;
        }
    }
    Ok(())
}

/// Takes back one's reaction to a comment.
pub fn remove_reaction<T: Transactable + ReadDoc>(
    tx: &mut T,
    comment: &ObjId,
    emoji: &str,
    by: &str,
) -> Result<()> {
    let reactions = ensure_map(tx, comment, "reactions")?;
    tx.delete(&reactions, format!("{emoji} {by}"))?;
    Ok(())
}

/// The object of a comment, by full id.
pub fn comment_obj(view: View<'_>, id: &str) -> Option<ObjId> {
    view.map(&view.map(&ROOT, "comments")?, id)
}

/// Every comment, in time order.
pub fn comments(view: View<'_>) -> Vec<Comment> {
    let mut comments: Vec<Comment> = view
        .records(&ROOT, "comments", &["reactions"])
        .into_iter()
        .filter(|r| is_record_id(&r.id))
        .map(|r| {
            let mut reactions: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for key in r.keys("reactions").unwrap_or_default() {
                if let Some((emoji, member)) = key.rsplit_once(' ') {
                    reactions
                        .entry(emoji.to_string())
                        .or_default()
                        .push(member.to_string());
                }
            }
            let deleted = r.int("deleted").is_some();
            Comment {
                parent: r
                    .str("parent")
                    .filter(|p| !p.is_empty())
                    .map(str::to_string),
                by: r.string("by"),
                at: r.int("at").unwrap_or(0),
                body: if deleted {
                    String::new()
                } else {
                    r.string("body")
                },
                reactions,
                edited: r.int("edited"),
                deleted,
                id: r.id,
            }
        })
        .collect();
    comments.sort_by(|a, b| (a.at, &a.id).cmp(&(b.at, &b.id)));
    comments
}

/// The comments `now` holds that `before`, an earlier look at the same document, does not,
/// in time order. When `now` is the document as it is and few changes came since `before`,
/// only those changes and the comments they made are read, not the whole discussion:
/// comments are never deleted or replaced (`rules`), so a comment is new exactly when a
/// change since `before` made it.
pub fn comments_added(before: View<'_>, now: View<'_>) -> Vec<Comment> {
    comments_added_when(before, now, 15)
}

/// [`comments_added`], reading the changes when there are at most one for every `ratio`
/// comments.
fn comments_added_when(before: View<'_>, now: View<'_>, ratio: usize) -> Vec<Comment> {
    let whole = || {
        let known: BTreeSet<String> = comments(before).into_iter().map(|c| c.id).collect();
        comments(now)
            .into_iter()
            .filter(|c| !known.contains(&c.id))
            .collect()
    };
    let (Some(heads), None) = (before.heads, now.heads) else {
        return whole();
    };
    let doc = now.doc;
    if heads
        .iter()
        .any(|h| doc.get_change_meta_by_hash(h).is_none())
    {
        return whole();
    }
    let Some(map) = now.map(&ROOT, "comments") else {
        return Vec::new();
    };
    let since = doc.get_changes(heads);
    // One field at a time costs about fifteen times what a walk costs per comment.
    if since.len() * ratio > doc.length(&map) {
        return whole();
    }
    let map_id = map.to_string();
    let mut added: Vec<Comment> = since
        .iter()
        .flat_map(|change| change.decode().operations)
        .filter(|op| {
            matches!(op.action, automerge::legacy::OpType::Make(ObjType::Map))
                && op.obj.to_string() == map_id
        })
        .filter_map(|op| match op.key {
            automerge::legacy::Key::Map(key) => Some(key.to_string()),
            automerge::legacy::Key::Seq(_) => None,
        })
        .filter(|id| is_record_id(id))
        .filter_map(|id| {
            let obj = now.map(&map, &id)?;
            Some(read_comment(now, &obj, id))
        })
        .collect();
    added.sort_by(|a, b| (a.at, &a.id).cmp(&(b.at, &b.id)));
    added.dedup_by(|a, b| a.id == b.id);
    added
}

/// One comment, field by field (see [`comments`] for all of them in one walk).
pub fn read_comment(view: View<'_>, obj: &ObjId, id: String) -> Comment {
    let mut reactions: BTreeMap<String, Vec<String>> = BTreeMap::new();
    if let Some(r) = view.map(obj, "reactions") {
        for key in view.keys(&r) {
            if let Some((emoji, member)) = key.rsplit_once(' ') {
                reactions
                    .entry(emoji.to_string())
                    .or_default()
                    .push(member.to_string());
            }
        }
    }
    let deleted = view.int(obj, "deleted").is_some();
    Comment {
        parent: view.str(obj, "parent").filter(|p| !p.is_empty()),
        by: view.string(obj, "by"),
        at: view.int(obj, "at").unwrap_or(0),
        body: if deleted {
            String::new()
        } else {
            view.string(obj, "body")
        },
        reactions,
        edited: view.int(obj, "edited"),
        deleted,
        id,
    }
}

/// Asks members to respond with an urgency.
pub fn put_asks<T: Transactable + ReadDoc>(
    tx: &mut T,
    members: &[String],
    urgency: &str,
    by: &str,
    at: i64,
) -> Result<()> {
    let asks = ensure_map(tx, &ROOT, "asks")?;
    for member in members {
        let obj = tx.put_object(&asks, member.as_str(), ObjType::Map)?;
        tx.put(&obj, "urgency", urgency)?;
        tx.put(&obj, "at", at)?;
        tx.put(&obj, "by", by)?;
    }
    Ok(())
}

/// Every request for a response in force: those made with the document (its `asks` map)
/// and later (`ask` entries), the latest per member and asker, less those their asker (or
/// the document's author) cancelled after seeing them. Keying by asker too means nobody
/// replaces, and then cancels, a request someone else made.
pub fn asks(view: View<'_>) -> Vec<Ask> {
    let entries = entries(view);
    let author = view.string(&ROOT, "author");
    asks_from(view, &entries, &author)
}

/// [`asks`] with the entries already read.
pub fn asks_from(view: View<'_>, entries: &[Entry], author: &str) -> Vec<Ask> {
    let mut asks: BTreeMap<(String, String), (Ask, Option<String>)> = BTreeMap::new();
    if let Some(map) = view.map(&ROOT, "asks") {
        for member in view.keys(&map) {
            let Some(obj) = view.map(&map, &member) else {
                continue;
            };
            let ask = Ask {
                urgency: view.string(&obj, "urgency"),
                at: view.int(&obj, "at").unwrap_or(0),
                by: view.string(&obj, "by"),
                member: member.clone(),
            };
            asks.insert((member, ask.by.clone()), (ask, None));
        }
    }
    // Entries come sorted by time: a later ask of the same person by the same asker
    // replaces an earlier one.
    for entry in entries
        .iter()
        .filter(|e| e.kind == "ask" && !e.target.is_empty())
    {
        let ask = Ask {
            member: entry.target.clone(),
            urgency: entry.urgency.clone(),
            at: entry.at,
            by: entry.by.clone(),
        };
        asks.insert(
            (entry.target.clone(), entry.by.clone()),
            (ask, Some(entry.id.clone())),
        );
    }
    let cancels: Vec<&Entry> = entries
        .iter()
        .filter(|e| e.kind == "cancel-ask" && !e.target.is_empty())
        .collect();
    if !cancels.is_empty() {
        asks.retain(|(member, by), (_, entry_id)| {
            !cancels.iter().any(|cancel| {
                cancel.target == *member
                    && (cancel.by == *by || cancel.by == author)
                    && saw_ask(view, cancel, entry_id.as_deref())
            })
        });
    }
    asks.into_values().map(|(ask, _)| ask).collect()
}

/// Whether `cancel` was written after seeing the ask (an entry, or one of the document's
/// first asks, which every later entry saw).
fn saw_ask(view: View<'_>, cancel: &Entry, ask_entry: Option<&str>) -> bool {
    match ask_entry {
        None => true,
        Some(id) => {
            let heads = cancel.heads();
            entries(View::at(view.doc, &heads))
                .iter()
                .any(|e| e.id == id)
        }
    }
}

/// Entry kinds that answer a request without being a response to the document itself:
/// a decline hands the request back, an acknowledgement says it was seen.
pub const ANSWERS: [&str; 2] = ["decline", "ack"];

/// When `member` first responded at or after `since`: a comment, or an entry other than a
/// decline or a request of their own (asking or cancelling passes nothing back).
pub fn responded_at(
    comments: &[Comment],
    entries: &[Entry],
    member: &str,
    since: i64,
) -> Option<i64> {
    let by_comments = comments
        .iter()
        .filter(|c| c.by == member && c.at >= since)
        .map(|c| c.at);
    let by_entries = entries
        .iter()
        .filter(|e| {
            e.by == member
                && e.at >= since
                && !matches!(e.kind.as_str(), "decline" | "ask" | "cancel-ask")
        })
        .map(|e| e.at);
    by_comments.chain(by_entries).min()
}

/// When and why `member` declined a request made at `since`, if they did.
pub fn declined_at(entries: &[Entry], member: &str, since: i64) -> Option<(i64, String)> {
    entries
        .iter()
        .find(|e| e.kind == "decline" && e.by == member && e.at >= since)
        .map(|e| (e.at, e.message.clone()))
}

/// A lifecycle state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum State {
    /// Being written; no comment period yet.
    Draft,
    /// In its comment period.
    Open {
        /// When the period closes, ms.
        closes: Option<i64>,
    },
    /// In its final, announced comment period.
    FinalComment {
        /// When the period closes, ms.
        closes: Option<i64>,
    },
    /// Accepted by its deciders.
    Accepted,
    /// Rejected.
    Rejected,
    /// Withdrawn by its authors.
    Withdrawn,
    /// Replaced by another proposal.
    Superseded {
        /// The id of the superseding document.
        by: String,
    },
    /// A thread marked resolved.
    Resolved,
    /// Incompatible transitions were made concurrently.
    Conflict {
        /// The states the concurrent transitions lead to, with the entry ids.
        candidates: Vec<(String, String)>,
    },
}

impl State {
    /// The short name shown in lists and stored in the index.
    pub fn name(&self) -> &'static str {
        match self {
            State::Draft => "draft",
            State::Open { .. } => "open",
            State::FinalComment { .. } => "final-comment",
            State::Accepted => "accepted",
            State::Rejected => "rejected",
            State::Withdrawn => "withdrawn",
            State::Superseded { .. } => "superseded",
            State::Resolved => "resolved",
            State::Conflict { .. } => "conflict",
        }
    }

    /// When the current period closes, if in one.
    pub fn closes(&self) -> Option<i64> {
        match self {
            State::Open { closes } | State::FinalComment { closes } => *closes,
            _ => None,
        }
    }
}

/// The states a proposal can be in, in the order of its life.
pub const PROPOSAL_STATES: [&str; 8] = [
    "draft",
    "open",
    "final-comment",
    "accepted",
    "rejected",
    "withdrawn",
    "superseded",
    "conflict",
];

/// The states a thread can be in.
pub const THREAD_STATES: [&str; 3] = ["open", "resolved", "conflict"];

/// The name of the state a transition kind leads to.
pub fn target_state(kind: &str) -> Option<&'static str> {
    Some(match kind {
        "open" => "open",
        "final-comment" => "final-comment",
        "accept" => "accepted",
        "reject" => "rejected",
        "withdraw" => "withdrawn",
        "supersede" => "superseded",
        "resolve" => "resolved",
        "reopen" => "draft",
        _ => return None,
    })
}

/// The derived lifecycle of a document.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Lifecycle {
    /// The state shown to people.
    pub state: State,
    /// The transitions no other transition followed (more than one: concurrent).
    pub tips: Vec<String>,
    /// Transitions that broke a rule, with the reason; they do not count.
    pub ignored: Vec<(String, String)>,
}

/// Checks a transition against the state it follows and the document as its author saw it.
/// Returns the reason it is not allowed.
pub type Rule<'a> = &'a dyn Fn(&Entry, &State) -> Option<String>;

/// Transitions per document the derivation considers; later ones (by time, then id) are
/// ignored, so a flood of entries cannot make every read of the document slow.
pub const MAX_TRANSITIONS: usize = 1000;

/// Derives the lifecycle from the entries, the same way on every node.
///
/// Transitions are resolved predecessors first (Kahn's algorithm, no recursion). `prev`
/// names only transitions that existed when an entry was written, so honest entries form an
/// acyclic graph; entries caught in a forged cycle are ignored, and so are references to
/// transitions the node does not have.
pub fn lifecycle(entries: &[Entry], initial: State, rule: Rule<'_>) -> Lifecycle {
    let mut ignored = Vec::new();
    let mut transitions: Vec<&Entry> = entries.iter().filter(|e| e.is_transition()).collect();
    transitions.sort_by(|a, b| (a.at, &a.id).cmp(&(b.at, &b.id)));
    for late in transitions.iter().skip(MAX_TRANSITIONS) {
        ignored.push((
            late.id.clone(),
            format!("more than {MAX_TRANSITIONS} transitions"),
        ));
    }
    transitions.truncate(MAX_TRANSITIONS);
    let by_id: BTreeMap<&str, &Entry> = transitions.iter().map(|e| (e.id.as_str(), *e)).collect();
    fn known_prev<'a>(e: &'a Entry, by_id: &BTreeMap<&str, &Entry>) -> BTreeSet<&'a str> {
        e.prev
            .iter()
            .map(String::as_str)
            .filter(|p| by_id.contains_key(p) && *p != e.id)
            .collect()
    }
    let mut waiting: BTreeMap<&str, usize> = BTreeMap::new();
    let mut followers: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for entry in &transitions {
        let prev = known_prev(entry, &by_id);
        waiting.insert(&entry.id, prev.len());
        for p in prev {
            followers.entry(p).or_default().push(&entry.id);
        }
    }
    let mut ready: std::collections::VecDeque<&str> = waiting
        .iter()
        .filter(|(_, n)| **n == 0)
        .map(|(id, _)| *id)
        .collect();
    let mut after: BTreeMap<&str, State> = BTreeMap::new();
    while let Some(id) = ready.pop_front() {
        let entry = by_id[id];
        let before = combine(
            known_prev(entry, &by_id)
                .into_iter()
                .map(|p| (p.to_string(), after[p].clone()))
                .collect(),
            &initial,
        );
        let state = match rule(entry, &before) {
            None => next_state(entry, &before),
            Some(reason) => {
                ignored.push((entry.id.clone(), reason));
                before
            }
        };
        after.insert(id, state);
        for follower in followers.get(id).into_iter().flatten() {
            let count = waiting.get_mut(follower).expect("every transition waits");
            *count -= 1;
            if *count == 0 {
                ready.push_back(follower);
            }
        }
    }
    for entry in &transitions {
        if !after.contains_key(entry.id.as_str()) {
            ignored.push((entry.id.clone(), "its predecessors form a cycle".into()));
        }
    }
    let followed: BTreeSet<&str> = transitions
        .iter()
        .filter(|e| after.contains_key(e.id.as_str()))
        .flat_map(|e| known_prev(e, &by_id))
        .collect();
    let tips: Vec<String> = after
        .keys()
        .filter(|id| !followed.contains(**id))
        .map(|id| id.to_string())
        .collect();
    let state = combine(
        tips.iter()
            .map(|t| (t.clone(), after[t.as_str()].clone()))
            .collect(),
        &initial,
    );
    ignored.sort();
    Lifecycle {
        state,
        tips,
        ignored,
    }
}

fn next_state(entry: &Entry, _before: &State) -> State {
    match entry.kind.as_str() {
        "open" => State::Open {
            closes: entry.closes,
        },
        "final-comment" => State::FinalComment {
            closes: entry.closes,
        },
        "accept" => State::Accepted,
        "reject" => State::Rejected,
        "withdraw" => State::Withdrawn,
        "supersede" => State::Superseded {
            by: entry.target.clone(),
        },
        "resolve" => State::Resolved,
        _ => State::Draft,
    }
}

/// The state after several concurrent transitions: theirs if they agree, else a conflict.
fn combine(states: Vec<(String, State)>, initial: &State) -> State {
    let distinct: BTreeSet<&'static str> = states.iter().map(|(_, s)| s.name()).collect();
    match distinct.len() {
        0 => initial.clone(),
        1 => {
            // Agreeing periods: the latest closing time wins, deterministically.
            states
                .into_iter()
                .map(|(_, s)| s)
                .max_by_key(|s| s.closes())
                .expect("one state at least")
        }
        _ => {
            let mut candidates: Vec<(String, String)> = states
                .into_iter()
                .map(|(id, s)| (s.name().to_string(), id))
                .collect();
            candidates.sort();
            State::Conflict { candidates }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// How comments were read before `View::records`: one lookup per field.
    fn comments_by_lookup(view: View<'_>) -> Vec<Comment> {
        let Some(map) = view.map(&ROOT, "comments") else {
            return Vec::new();
        };
        let mut comments: Vec<Comment> = view
            .keys(&map)
            .into_iter()
            .filter(|id| is_record_id(id))
            .filter_map(|id| Some(read_comment(view, &view.map(&map, &id)?, id)))
            .collect();
        comments.sort_by(|a, b| (a.at, &a.id).cmp(&(b.at, &b.id)));
        comments
    }

    /// How entries were read before `View::records`.
    fn entries_by_lookup(view: View<'_>) -> Vec<Entry> {
        let Some(map) = view.map(&ROOT, "entries") else {
            return Vec::new();
        };
        let split = |s: String| -> Vec<String> {
            s.split(',')
                .filter(|p| !p.is_empty())
                .map(str::to_string)
                .collect()
        };
        let mut entries: Vec<Entry> = view
            .keys(&map)
            .into_iter()
            .filter(|id| is_record_id(id))
            .filter_map(|id| {
                let obj = view.map(&map, &id)?;
                Some(Entry {
                    kind: view.str(&obj, "kind")?,
                    by: view.string(&obj, "by"),
                    at: view.int(&obj, "at").unwrap_or(0),
                    prev: split(view.string(&obj, "prev")),
                    closes: view.int(&obj, "closes"),
                    message: view.string(&obj, "message"),
                    heads: split(view.string(&obj, "heads")),
                    target: view.string(&obj, "target"),
                    blocking: view.bool(&obj, "blocking"),
                    urgency: view.string(&obj, "urgency"),
                    id,
                })
            })
            .collect();
        entries.sort_by(|a, b| (a.at, &a.id).cmp(&(b.at, &b.id)));
        entries
    }

    /// One step of a random discussion, by one of three replicas.
    #[derive(Clone, Debug)]
    enum Step {
        Comment {
            replica: usize,
            key: u8,
            reply_to: Option<u8>,
            at: i64,
        },
        Edit {
            replica: usize,
            key: u8,
            body: u8,
        },
        Delete {
            replica: usize,
            key: u8,
        },
        React {
            replica: usize,
            key: u8,
            emoji: u8,
        },
        Unreact {
            replica: usize,
            key: u8,
            emoji: u8,
        },
        Entry {
            replica: usize,
            key: u8,
            kind: u8,
            at: i64,
        },
        Odd {
            replica: usize,
            key: u8,
            what: u8,
        },
        Sync {
            from: usize,
            to: usize,
        },
    }

    fn step() -> impl proptest::strategy::Strategy<Value = Step> {
        use proptest::prelude::*;
        let r = 0..3usize;
        let k = 0..6u8;
        prop_oneof![
            4 => (r.clone(), k.clone(), proptest::option::of(0..6u8), 0..50i64)
                .prop_map(|(replica, key, reply_to, at)| Step::Comment { replica, key, reply_to, at }),
            2 => (r.clone(), k.clone(), any::<u8>()).prop_map(|(replica, key, body)| Step::Edit { replica, key, body }),
            1 => (r.clone(), k.clone()).prop_map(|(replica, key)| Step::Delete { replica, key }),
            2 => (r.clone(), k.clone(), 0..3u8).prop_map(|(replica, key, emoji)| Step::React { replica, key, emoji }),
            1 => (r.clone(), k.clone(), 0..3u8).prop_map(|(replica, key, emoji)| Step::Unreact { replica, key, emoji }),
            2 => (r.clone(), k.clone(), 0..4u8, 0..50i64).prop_map(|(replica, key, kind, at)| Step::Entry { replica, key, kind, at }),
            2 => (r.clone(), k.clone(), 0..5u8).prop_map(|(replica, key, what)| Step::Odd { replica, key, what }),
            2 => (r.clone(), r).prop_map(|(from, to)| Step::Sync { from, to }),
        ]
    }

    fn id_of(key: u8) -> String {
        format!("{:032x}", u128::from(key) * 0x1234_5678_9abc_def1)
    }

    /// Plays `steps` on three replicas and merges them. An `honest` play keeps the rules
    /// records live by (`rules`): a comment is made once, at a key nobody used, and never
    /// replaced.
    fn play(steps: &[Step], honest: bool) -> (automerge::Automerge, Vec<Vec<ChangeHash>>) {
        use automerge::{ActorId, Automerge, ObjType, transaction::Transactable};
        // The containers come with the document's first change, as `rules` requires.
        let mut base = Automerge::new().with_actor(ActorId::from(vec![9; 16]));
        let mut tx = base.transaction();
        crate::doc::ensure_map(&mut tx, &ROOT, "comments").unwrap();
        crate::doc::ensure_map(&mut tx, &ROOT, "entries").unwrap();
        tx.commit();
        let mut replicas: Vec<Automerge> = (0..3u8)
            .map(|i| base.fork().with_actor(ActorId::from(vec![i + 1; 16])))
            .collect();
        let mut past = Vec::new();
        for step in steps {
            let replica = match step {
                Step::Comment { replica, .. }
                | Step::Edit { replica, .. }
                | Step::Delete { replica, .. }
                | Step::React { replica, .. }
                | Step::Unreact { replica, .. }
                | Step::Entry { replica, .. }
                | Step::Odd { replica, .. } => *replica,
                Step::Sync { from, to } => {
                    let theirs = replicas[*from].clone();
                    replicas[*to].merge(&mut theirs.clone()).unwrap();
                    continue;
                }
            };
            let by = format!("member{replica}");
            let key = match step {
                Step::Edit { key, .. }
                | Step::Delete { key, .. }
                | Step::React { key, .. }
                | Step::Unreact { key, .. }
                | Step::Odd { key, .. } => Some(*key),
                _ => None,
            };
            if honest {
                let used = |key: u8| {
                    replicas
                        .iter()
                        .any(|r| comment_obj(View::now(r), &id_of(key)).is_some())
                };
                match step {
                    Step::Comment { key, .. } if used(*key) => continue,
                    Step::Odd { what: 3, .. } => continue,
                    _ => {}
                }
            }
            let doc = &mut replicas[replica];
            let target = key.and_then(|key| comment_obj(View::now(doc), &id_of(key)));
            let heads = doc.get_heads();
            let mut tx = doc.transaction();
            match step {
                Step::Comment {
                    key, reply_to, at, ..
                } => {
                    let parent = reply_to.map(id_of);
                    put_comment(&mut tx, &id_of(*key), parent.as_deref(), &by, *at, "hello")
                        .unwrap();
                }
                Step::Edit { body, .. } => {
                    if let Some(obj) = &target {
                        put_comment_edit(&mut tx, obj, Some(&format!("edited {body}")), 7).unwrap();
                    }
                }
                Step::Delete { .. } => {
                    if let Some(obj) = &target {
                        put_comment_edit(&mut tx, obj, None, 9).unwrap();
                    }
                }
                Step::React { emoji, .. } => {
                    if let Some(obj) = &target {
                        put_reaction(
                            &mut tx,
                            obj,
                            ["+1", "eyes", "ok go"][*emoji as usize],
                            &by,
                            3,
                        )
                        .unwrap();
                    }
                }
                Step::Unreact { emoji, .. } => {
                    if let Some(obj) = &target {
                        let _ = remove_reaction(
                            &mut tx,
                            obj,
                            ["+1", "eyes", "ok go"][*emoji as usize],
                            &by,
                        );
                    }
                }
                Step::Entry { key, kind, at, .. } => {
                    let mut entry = Entry::new(
                        ["open", "approve", "concern", "ask"][*kind as usize],
                        &by,
                        *at,
                    );
                    entry.id = id_of(*key);
                    entry.prev = vec![id_of(key.wrapping_add(1))];
                    entry.blocking = *kind == 2;
                    entry.closes = (*kind == 0).then_some(*at + 10);
                    put_entry(&mut tx, &entry, &heads).unwrap();
                }
                Step::Odd { key, what, .. } => {
                    // What a foreign writer could put: text bodies, numbers of other
                    // types, keys that are not record ids, scalars where maps belong.
                    let comments = crate::doc::ensure_map(&mut tx, &ROOT, "comments").unwrap();
                    match what {
                        0 => {
                            if let Some(obj) = &target {
                                crate::doc::put_text(&mut tx, obj, "body", "a text body").unwrap();
                            }
                        }
                        1 => {
                            if let Some(obj) = &target {
                                tx.put(obj, "at", automerge::ScalarValue::Uint(5)).unwrap();
                                tx.put(obj, "by", 12i64).unwrap();
                            }
                        }
                        2 => {
                            tx.put_object(&comments, "not-a-record-id", ObjType::Map)
                                .unwrap();
                        }
                        3 => {
                            tx.put(&comments, id_of(*key), "a scalar where a comment goes")
                                .unwrap();
                        }
                        _ => {
                            if let Some(obj) = &target {
                                let r = tx.put_object(obj, "reactions", ObjType::List).unwrap();
                                tx.insert(&r, 0, "x y").unwrap();
                            }
                        }
                    }
                }
                Step::Sync { .. } => unreachable!(),
            }
            tx.commit();
            past.push(doc.get_heads());
        }
        let mut all = replicas.remove(0);
        for mut other in replicas {
            all.merge(&mut other).unwrap();
        }
        (all, past)
    }

    #[test]
    fn a_text_body_written_by_a_foreign_writer_is_read() {
        let steps = [
            Step::Comment {
                replica: 0,
                key: 1,
                reply_to: None,
                at: 1,
            },
            Step::Odd {
                replica: 0,
                key: 1,
                what: 0,
            },
        ];
        let (doc, _) = play(&steps, false);
        let read = comments(View::now(&doc));
        assert_eq!(read, comments_by_lookup(View::now(&doc)));
        assert_eq!(read[0].body, "a text body");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

        /// The one-walk reads of comments and entries say exactly what reading field by
        /// field said, now and at every point in the past, whatever concurrent replicas
        /// and foreign writers did.
        #[test]
        fn records_read_in_one_walk_match_reads_field_by_field(
            steps in proptest::collection::vec(step(), 1..60)
        ) {
            let (doc, past) = play(&steps, false);
            let now = View::now(&doc);
            proptest::prop_assert_eq!(comments(now), comments_by_lookup(now));
            proptest::prop_assert_eq!(entries(now), entries_by_lookup(now));
            for heads in past.iter().step_by(5) {
                let then = View::at(&doc, heads);
                proptest::prop_assert_eq!(comments(then), comments_by_lookup(then));
                proptest::prop_assert_eq!(entries(then), entries_by_lookup(then));
            }
            // What is new since a moment in the past, read from the changes since then, in
            // a history that keeps the rules.
            let (doc, past) = play(&steps, true);
            let now = View::now(&doc);
            for heads in &past {
                let then = View::at(&doc, heads);
                let known: BTreeSet<String> = comments_by_lookup(then).into_iter().map(|c| c.id).collect();
                let expected: Vec<Comment> = comments_by_lookup(now)
                    .into_iter()
                    .filter(|c| !known.contains(&c.id))
                    .collect();
                proptest::prop_assert_eq!(&comments_added_when(then, now, 0), &expected);
                proptest::prop_assert_eq!(&comments_added(then, now), &expected);
            }
        }
    }

    fn transition(id: &str, kind: &str, prev: &[&str]) -> Entry {
        Entry {
            id: id.into(),
            prev: prev.iter().map(|p| p.to_string()).collect(),
            ..Entry::new(kind, "ana", 0)
        }
    }

    fn derive(entries: &[Entry]) -> Lifecycle {
        lifecycle(entries, State::Draft, &|_, _| None)
    }

    #[test]
    fn a_chain_of_transitions_ends_in_its_last_state() {
        let entries = [
            transition("a", "open", &[]),
            transition("b", "accept", &["a"]),
        ];
        assert_eq!(derive(&entries).state, State::Accepted);
        assert_eq!(derive(&entries).tips, vec!["b".to_string()]);
    }

    #[test]
    fn concurrent_incompatible_transitions_conflict_until_resolved() {
        let mut entries = vec![
            transition("a", "open", &[]),
            transition("b", "accept", &["a"]),
            transition("c", "reject", &["a"]),
        ];
        let life = derive(&entries);
        assert_eq!(
            life.state,
            State::Conflict {
                candidates: vec![
                    ("accepted".into(), "b".into()),
                    ("rejected".into(), "c".into())
                ]
            }
        );
        entries.push(transition("d", "accept", &["b", "c"]));
        assert_eq!(derive(&entries).state, State::Accepted);
    }

    #[test]
    fn concurrent_agreeing_transitions_are_not_a_conflict() {
        let entries = [
            transition("a", "open", &[]),
            transition("b", "withdraw", &["a"]),
            transition("c", "withdraw", &["a"]),
        ];
        assert_eq!(derive(&entries).state, State::Withdrawn);
    }

    #[test]
    fn a_transition_breaking_a_rule_is_ignored_with_its_reason() {
        let entries = [transition("a", "accept", &[])];
        let life = lifecycle(&entries, State::Draft, &|e, before| {
            (e.kind == "accept" && *before == State::Draft).then(|| "not open".to_string())
        });
        assert_eq!(life.state, State::Draft);
        assert_eq!(
            life.ignored,
            vec![("a".to_string(), "not open".to_string())]
        );
    }

    #[test]
    fn forged_cycles_are_ignored_and_leave_the_rest_alone() {
        let entries = [
            transition("a", "open", &[]),
            transition("x", "withdraw", &["a", "y"]),
            transition("y", "reopen", &["x"]),
        ];
        let life = derive(&entries);
        assert_eq!(life.state, State::Open { closes: None });
        assert_eq!(life.tips, vec!["a".to_string()]);
        assert_eq!(life.ignored.len(), 2);
    }

    #[test]
    fn a_long_chain_resolves_without_recursion_and_floods_are_capped() {
        let ids: Vec<String> = (0..MAX_TRANSITIONS + 10)
            .map(|i| format!("{i:06}"))
            .collect();
        let entries: Vec<Entry> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| {
                let prev: Vec<&str> = if i == 0 {
                    vec![]
                } else {
                    vec![ids[i - 1].as_str()]
                };
                Entry {
                    at: i as i64,
                    ..transition(id, "open", &prev)
                }
            })
            .collect();
        let life = derive(&entries);
        assert_eq!(life.tips, vec![ids[MAX_TRANSITIONS - 1].clone()]);
        assert_eq!(life.ignored.len(), 10);
    }
}
