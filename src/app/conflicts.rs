//! Settling a conflict: a field that concurrent writes left with several values, or a
//! lifecycle whose concurrent transitions disagree.
//!
//! Any value settles it: one of the concurrent ones, as `conflicts` and `show` print them,
//! or a new one. Automerge writes "keep the value that already wins" as a deletion of the
//! others, which the document rules refuse for a field that is always a value; so a value
//! is always written as a put that supersedes every concurrent one.

use anyhow::Result;
use automerge::transaction::Transactable;
use automerge::{ObjType, ROOT, ScalarValue};
use serde::Serialize;

use super::Context;
use crate::discussion::{self, Entry};
use crate::doc::{Kind, View};
use crate::fail;
use crate::history;
use crate::id::Id;
use crate::node::{commit, now_ms};
use crate::{proposal, thread};

/// What `resolve` wrote.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Resolution {
    /// The document.
    pub id: Id,
    /// The field, as `conflicts` names it.
    pub field: String,
    /// The value it now has.
    pub value: String,
    /// For `state`: the transition entry that settled it.
    pub entry_id: Option<String>,
}

/// The state names a person may type, with the transition that leads to each.
const STATES: [(&str, &str); 9] = [
    ("accepted", "accept"),
    ("rejected", "reject"),
    ("withdrawn", "withdraw"),
    ("superseded", "supersede"),
    ("open", "open"),
    ("final-comment", "final-comment"),
    ("resolved", "resolve"),
    ("draft", "reopen"),
    ("reopened", "reopen"),
];

/// The state a typed name means (`accept` and `accepted` alike), for a document of `kind`.
fn state_name(kind: Kind, typed: &str) -> Result<&'static str> {
    let typed = typed.trim().to_ascii_lowercase();
    let found = STATES
        .iter()
        .find(|(state, transition)| *state == typed || *transition == typed)
        .map(|(state, _)| *state);
    // Any state but a conflict settles one.
    let allowed: Vec<&str> = match kind {
        Kind::Thread => &discussion::THREAD_STATES[..],
        _ => &discussion::PROPOSAL_STATES[..],
    }
    .iter()
    .copied()
    .filter(|s| *s != "conflict")
    .collect();
    // A thread's "open" is the state a reopen leads to.
    let state = match (kind, found) {
        (Kind::Thread, Some("draft" | "reopened")) => "open",
        (_, Some("reopened")) => "draft",
        (_, Some(state)) => state,
        (_, None) => "",
    };
    if !allowed.contains(&state) {
        fail!(
            Usage,
            "`{typed}` is not a state a {} can be settled to: use one of {}",
            kind.as_str(),
            allowed.join(", ")
        );
    }
    Ok(state)
}

/// Settles the conflict in `field` of document `id` with `value`.
pub fn resolve(cx: &Context, id: Id, kind: Kind, field: &str, value: &str) -> Result<Resolution> {
    history::check_resolvable(field)?;
    if field == "urgency" {
        cx.record.state.norms().level(value)?;
    }
    if field == "title" && value.trim().is_empty() {
        fail!(Usage, "a title cannot be empty: give the title to keep");
    }
    let state = if field == "state" {
        Some(state_name(kind, value)?)
    } else {
        None
    };
    let me = cx.me.clone();
    let entry_id = cx.node.edit(cx.workspace, id, |doc| {
        let view = View::now(doc);
        let conflicts = history::conflicts(view);
        let Some(conflict) = conflicts.iter().find(|c| c.field == field) else {
            fail!(NotFound,
                "`{field}` has no conflict in {}: `meridian conflicts {}` lists the fields that do",
                id.short(),
                id.short()
            );
        };
        if let Some(state) = state {
            let entry = state_entry(doc, kind, &me, state)?;
            let heads = doc.get_heads();
            let mut tx = doc.transaction();
            discussion::put_entry(&mut tx, &entry, &heads)?;
            commit(tx, &format!("resolve state conflict: {state}"));
            return Ok(Some(entry.id));
        }
        if proposal::is_decided(view) && (field == "title" || field.starts_with("section ")) {
            fail!(Refused,
                "the proposal is {}: its text is final (`meridian proposal reopen {} -m WHY` reopens it)",
                proposal::read(view).lifecycle.state.name(),
                id.short()
            );
        }
        let concurrent = conflict.values.iter().any(|v| v.value == value);
        let sections = view.map(&ROOT, "sections");
        let mut tx = doc.transaction();
        if let Some(name) = field.strip_prefix("section ") {
            // Every concurrent text object is replaced by one holding the chosen text.
            let sections = sections.ok_or_else(|| anyhow::anyhow!("the proposal has no sections"))?;
            let text = tx.put_object(&sections, name, ObjType::Text)?;
            tx.splice_text(&text, 0, 0, value)?;
        } else {
            // Putting the value that already wins would be written as a deletion of the
            // others: a placeholder first makes the chosen value a put over all of them.
            if concurrent {
                tx.put(ROOT, field, ScalarValue::Null)?;
            }
            tx.put(ROOT, field, value)?;
        }
        commit(tx, &format!("resolve {field}: {value}"));
        Ok(None)
    })?;
    Ok(Resolution {
        id,
        field: field.to_string(),
        value: state
            .map(str::to_string)
            .unwrap_or_else(|| value.to_string()),
        entry_id,
    })
}

/// The transition that settles a state conflict to `state`: a copy of the concurrent
/// transition that led there when there is one (its closing time, its successor), else a
/// new one; either way following every tip, and checked as every node will check it.
fn state_entry(doc: &automerge::Automerge, kind: Kind, me: &str, state: &str) -> Result<Entry> {
    let view = View::now(doc);
    let (lifecycle, entries) = match kind {
        Kind::Proposal => {
            let p = proposal::read(view);
            (p.lifecycle, p.entries)
        }
        _ => {
            let t = thread::read(view);
            (t.lifecycle, t.entries)
        }
    };
    let discussion::State::Conflict { candidates } = &lifecycle.state else {
        fail!(NotFound, "the state has no conflict");
    };
    let transition = STATES
        .iter()
        .find(|(name, _)| *name == state)
        .map(|(_, transition)| *transition)
        .unwrap_or("reopen");
    let shown = |name: &str| match (kind, name) {
        (Kind::Thread, "draft") => "open".to_string(),
        _ => name.to_string(),
    };
    let chosen = candidates
        .iter()
        .find(|(name, _)| shown(name) == state)
        .and_then(|(_, entry)| entries.iter().find(|e| e.id == *entry));
    let mut entry = Entry::new(transition, me, now_ms());
    if let Some(chosen) = chosen {
        entry.kind = chosen.kind.clone();
        entry.closes = chosen.closes;
        entry.target = chosen.target.clone();
    } else if transition == "supersede" {
        fail!(
            Usage,
            "no concurrent transition superseded it: `meridian proposal supersede ID --by OTHER` names the proposal that replaces it"
        );
    }
    entry.prev = lifecycle.tips.clone();
    entry.message = format!("resolve conflict: {state}");
    let heads = doc.get_heads();
    entry.heads = crate::doc::heads_hex(&heads);
    let mut all = entries;
    all.push(entry.clone());
    let ignored = match kind {
        Kind::Proposal => {
            let deciders = view
                .map(&ROOT, "deciders")
                .map(|m| view.keys(&m))
                .unwrap_or_default();
            proposal::lifecycle(doc, &all, &deciders, &view.string(&ROOT, "author")).ignored
        }
        _ => thread::lifecycle(&all).ignored,
    };
    if let Some((_, reason)) = ignored.iter().find(|(e, _)| *e == entry.id) {
        fail!(Refused, "cannot settle the state to {state}: {reason}");
    }
    Ok(entry)
}
