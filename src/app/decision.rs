//! Deciding: a proposal's comment periods, approvals, concerns, acceptance, rejection,
//! withdrawal, supersession and reopening; a thread's resolution.
//!
//! Each action writes one entry after checking, as every node will, that it counts; when it
//! would not, the error says every reason at once and what to do about each.

use anyhow::Result;
use serde::Serialize;

use super::Context;
use crate::discussion::{self, Entry};
use crate::doc::{Kind, View};
use crate::fail;
use crate::id::{Id, resolve_prefix};
use crate::node::{commit, now_ms};
use crate::norms::period_end;
use crate::{proposal, thread};

/// What a deciding action wrote.
#[derive(Clone, Debug, Serialize)]
pub struct Written {
    /// The document.
    pub id: Id,
    /// The entry.
    pub entry: Entry,
}

/// The proposal a prefix names.
pub fn proposal_id(cx: &Context, prefix: &str) -> Result<Id> {
    document_of(cx, prefix, Kind::Proposal)
}

/// The thread a prefix names.
pub fn thread_id(cx: &Context, prefix: &str) -> Result<Id> {
    document_of(cx, prefix, Kind::Thread)
}

fn document_of(cx: &Context, prefix: &str, kind: Kind) -> Result<Id> {
    let (id, summary) = cx.document(prefix)?;
    if summary.kind != kind {
        fail!(
            Usage,
            "{} is a {} (\"{}\"), not a {}",
            id.short(),
            summary.kind.as_str(),
            summary.title,
            kind.as_str()
        );
    }
    Ok(id)
}

/// Opens the comment period (or the final comment period), closing at `closes`: a date, or
/// a duration counted in the working time of the deciders and the people asked.
pub fn open(cx: &Context, id: Id, closes: &str, final_comment: bool) -> Result<Written> {
    let now = crate::node::now();
    let doc = cx.node.load(cx.workspace, id)?;
    let p = proposal::read(View::now(&doc));
    let mut people: Vec<&String> = p.deciders.iter().collect();
    people.extend(p.asks.iter().map(|a| &a.member));
    people.sort();
    people.dedup();
    let calendars: Vec<_> = people
        .iter()
        .filter_map(|m| cx.record.state.member(m))
        .map(|m| m.calendar())
        .collect();
    let closes = period_end(closes, now, &cx.tz, &calendars)?.as_millisecond();
    let kind = if final_comment {
        "final-comment"
    } else {
        "open"
    };
    transition(cx, id, kind, |e| e.closes = Some(closes))
}

/// Ends the current comment period now.
pub fn close(cx: &Context, id: Id) -> Result<Written> {
    let doc = cx.node.load(cx.workspace, id)?;
    let state = proposal::state(View::now(&doc)).state;
    let kind = match &state {
        discussion::State::Open { .. } => "open",
        discussion::State::FinalComment { .. } => "final-comment",
        other => fail!(
            Refused,
            "{} is {}, not in a comment period: there is nothing to close",
            id.short(),
            other.name()
        ),
    };
    if state.closes().is_some_and(|c| c <= now_ms()) {
        fail!(
            Refused,
            "the comment period of {} closed already, {}",
            id.short(),
            cx.time(state.closes().unwrap_or_default())
        );
    }
    transition(cx, id, kind, |e| {
        e.closes = Some(now_ms());
        e.message = "period closed early".into();
    })
}

/// Accepts, rejects or withdraws.
pub fn decide(cx: &Context, id: Id, kind: &str, message: Option<String>) -> Result<Written> {
    if kind == "accept" {
        let doc = cx.node.load(cx.workspace, id)?;
        let p = proposal::read(View::now(&doc));
        if p.lifecycle.state.name() != "accepted" {
            let obstacles = p.obstacles(now_ms());
            if !obstacles.is_empty() {
                let name = |m: &str| {
                    if m == cx.me {
                        proposal::YOU.to_string()
                    } else {
                        cx.name(m)
                    }
                };
                let time = |t: i64| cx.time(t);
                let reasons: Vec<String> =
                    obstacles.iter().map(|o| o.describe(&name, &time)).collect();
                let mut what_to_do = String::new();
                if obstacles
                    .iter()
                    .any(|o| matches!(o, proposal::Obstacle::PeriodOpen { .. }))
                {
                    what_to_do = format!(
                        " (`meridian proposal close {}` ends the period now)",
                        id.short()
                    );
                }
                fail!(
                    Refused,
                    "cannot accept {}: {}{what_to_do}",
                    id.short(),
                    reasons.join("; ").replace(
                        "`meridian proposal open ID`",
                        &format!("`meridian proposal open {}`", id.short())
                    )
                );
            }
        }
    }
    transition(cx, id, kind, |e| e.message = message.unwrap_or_default())
}

/// Marks the proposal superseded by `by`.
pub fn supersede(cx: &Context, id: Id, by: &str) -> Result<Written> {
    let by = proposal_id(cx, by)?;
    if by == id {
        fail!(
            Usage,
            "a proposal cannot supersede itself: name the proposal that replaces it"
        );
    }
    transition(cx, id, "supersede", |e| e.target = by.hex())
}

/// Moves a decided proposal back to draft: its approvals go stale, its text may change.
pub fn reopen(cx: &Context, id: Id, why: &str) -> Result<Written> {
    if why.trim().is_empty() {
        fail!(
            Usage,
            "say why it is reopened with -m WHY: everyone who decided it will read it"
        );
    }
    transition(cx, id, "reopen", |e| e.message = why.trim().to_string())
}

/// Writes a lifecycle transition after checking, as every node will, that it counts.
fn transition(cx: &Context, id: Id, kind: &str, fill: impl FnOnce(&mut Entry)) -> Result<Written> {
    let me = cx.me.clone();
    let entry = cx.node.edit(cx.workspace, id, |doc| {
        let current = proposal::read(View::now(doc));
        let mut entry = Entry::new(kind, &me, now_ms());
        entry.prev = current.lifecycle.tips.clone();
        fill(&mut entry);
        let heads = doc.get_heads();
        entry.heads = crate::doc::heads_hex(&heads);
        let mut entries = current.entries.clone();
        entries.push(entry.clone());
        let after = proposal::lifecycle(doc, &entries, &current.deciders, &current.author);
        if let Some((_, reason)) = after.ignored.iter().find(|(e, _)| *e == entry.id) {
            fail!(
                Refused,
                "cannot {kind} {}: {}",
                id.short(),
                explain(cx, id, kind, reason, &current)
            );
        }
        write_entry(doc, &entry, &heads)?;
        Ok(entry)
    })?;
    Ok(Written { id, entry })
}

/// Commits one entry, its kind (and message) as the change message.
pub(crate) fn write_entry(
    doc: &mut automerge::Automerge,
    entry: &Entry,
    heads: &[automerge::ChangeHash],
) -> Result<()> {
    let mut tx = doc.transaction();
    discussion::put_entry(&mut tx, entry, heads)?;
    // A period closed early is an `open` entry that closes at once: its history says so.
    let kind = match entry.kind.as_str() {
        "open" | "final-comment" if entry.closes.is_some_and(|c| c <= entry.at) => "close period",
        kind => kind,
    };
    let message = if entry.message.is_empty() || entry.message == "period closed early" {
        kind.to_string()
    } else {
        format!("{kind}: {}", entry.message)
    };
    commit(tx, &message);
    Ok(())
}

/// Turns member ids in a rule's reason into names and adds what to do.
fn explain(
    cx: &Context,
    id: Id,
    kind: &str,
    reason: &str,
    proposal: &proposal::Proposal,
) -> String {
    let mut reason = reason.to_string();
    for member in &cx.record.state.members {
        reason = reason.replace(&member.id, &member.name);
    }
    let short = id.short();
    let state = proposal.lifecycle.state.name();
    if reason.contains("period closed") {
        let closes = proposal
            .lifecycle
            .state
            .closes()
            .map(|c| format!(", {}", cx.time(c)))
            .unwrap_or_default();
        reason = format!(
            "its {state} period has not closed yet{closes} (`meridian proposal close {short}` ends it now)"
        );
    } else if reason.contains("not allowed from") && state == kind_state(kind) {
        reason = format!("it is already {state} (`meridian show {short}` says by whom and when)");
    } else if reason.contains("from draft") {
        reason.push_str(&format!(
            " (open the comment period first with `meridian proposal open {short}`)"
        ));
    } else if reason.contains("not allowed from") {
        reason = format!("it is {state} (`meridian show {short}` shows where it stands)");
    }
    reason
}

/// The state a transition leads to.
fn kind_state(kind: &str) -> &str {
    discussion::target_state(kind).unwrap_or(kind)
}

/// Approves the current text.
pub fn approve(cx: &Context, id: Id, message: Option<String>) -> Result<Written> {
    feedback(cx, id, "approve", |e| {
        e.message = message.unwrap_or_default()
    })
}

/// Raises a concern, blocking acceptance or not.
pub fn concern(cx: &Context, id: Id, message: &str, blocking: bool) -> Result<Written> {
    if message.trim().is_empty() {
        fail!(
            Usage,
            "the concern is empty: say what worries you with -m TEXT"
        );
    }
    feedback(cx, id, "concern", |e| {
        e.message = message.trim().to_string();
        e.blocking = blocking;
    })
}

/// Retracts one's own approval.
pub fn unapprove(cx: &Context, id: Id) -> Result<Written> {
    let doc = cx.node.load(cx.workspace, id)?;
    let p = proposal::read(View::now(&doc));
    if !p.approvals.iter().any(|a| a.entry.by == cx.me) {
        fail!(
            NotFound,
            "you have not approved {}: there is nothing to retract",
            id.short()
        );
    }
    feedback(cx, id, "unapprove", |_| {})
}

/// Writes an approval, a concern or a retraction, while the proposal is undecided.
fn feedback(cx: &Context, id: Id, kind: &str, fill: impl FnOnce(&mut Entry)) -> Result<Written> {
    let me = cx.me.clone();
    let entry = cx.node.edit(cx.workspace, id, |doc| {
        let state = proposal::state(View::now(doc)).state;
        if proposal::DECIDED.contains(&state.name()) {
            let what = match kind {
                "approve" => "approved",
                "unapprove" => "unapproved",
                _ => "given concerns",
            };
            fail!(Refused,
                "{} is {}: it can no longer be {what} (`meridian proposal reopen {} -m WHY` reopens it)",
                id.short(),
                state.name(),
                id.short()
            );
        }
        let mut entry = Entry::new(kind, &me, now_ms());
        fill(&mut entry);
        let heads = doc.get_heads();
        write_entry(doc, &entry, &heads)?;
        Ok(entry)
    })?;
    Ok(Written { id, entry })
}

/// Resolves a concern: the person who raised it may, and the proposal's author may with a
/// note saying why (shown beside the concern, and reported to whoever raised it).
pub fn resolve_concern(
    cx: &Context,
    id: Id,
    concern: &str,
    note: Option<String>,
) -> Result<Written> {
    let me = cx.me.clone();
    let entry = cx.node.edit(cx.workspace, id, |doc| {
        let current = proposal::read(View::now(doc));
        let found = resolve_prefix(
            "concern",
            concern,
            current
                .concerns
                .iter()
                .map(|c| (c.entry.id.clone(), c.clone())),
        )?;
        if let Some(resolved) = &found.resolved {
            fail!(Refused,
                "concern {} was already resolved by {} {}",
                crate::id::prefix(&found.entry.id, 8),
                cx.name(&resolved.by),
                cx.time(resolved.at)
            );
        }
        let raiser = cx.name(&found.entry.by);
        let note = note.unwrap_or_default().trim().to_string();
        if found.entry.by != me {
            if current.author != me {
                fail!(Refused,
                    "only {raiser}, who raised it, or the proposal's author may resolve this concern"
                );
            }
            if note.is_empty() {
                fail!(Usage,
                    "you are resolving {raiser}'s concern for them: say why with -m NOTE (they will see it)"
                );
            }
        }
        let mut entry = Entry::new("resolve-concern", &me, now_ms());
        entry.target = found.entry.id.clone();
        entry.message = note;
        let heads = doc.get_heads();
        let mut tx = doc.transaction();
        discussion::put_entry(&mut tx, &entry, &heads)?;
        commit(
            tx,
            &format!("resolve concern {}", crate::id::prefix(&found.entry.id, 8)),
        );
        Ok(entry)
    })?;
    Ok(Written { id, entry })
}

/// Resolves (or reopens) a thread.
pub fn thread_state(cx: &Context, id: Id, resolve: bool) -> Result<Written> {
    let kind = if resolve { "resolve" } else { "reopen" };
    let me = cx.me.clone();
    let entry = cx.node.edit(cx.workspace, id, |doc| {
        let current = thread::read(View::now(doc));
        let mut entry = Entry::new(kind, &me, now_ms());
        entry.prev = current.lifecycle.tips.clone();
        let mut entries = current.entries.clone();
        entries.push(entry.clone());
        if let Some((_, reason)) = thread::lifecycle(&entries)
            .ignored
            .iter()
            .find(|(e, _)| *e == entry.id)
        {
            fail!(Refused, "cannot {kind} {}: {reason}", id.short());
        }
        let heads = doc.get_heads();
        entry.heads = crate::doc::heads_hex(&heads);
        write_entry(doc, &entry, &heads)?;
        Ok(entry)
    })?;
    Ok(Written { id, entry })
}
