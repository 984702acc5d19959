//! Requests for a response after a document is written: asking someone, cancelling the
//! request, and answering it without a reply: declining it (it goes back to the asker, or
//! on along the escalation ladder) or acknowledging it (seen, no reply needed).

use anyhow::Result;

use super::Context;
use super::decision::{Written, write_entry};
use crate::discussion::{self, Entry};
use crate::doc::{Kind, View};
use crate::fail;
use crate::id::Id;
use crate::node::now_ms;

/// The document a request can be made on: a proposal or a thread.
pub fn requestable(cx: &Context, prefix: &str) -> Result<Id> {
    let (id, summary) = cx.document(prefix)?;
    if !matches!(summary.kind, Kind::Proposal | Kind::Thread) {
        fail!(
            Usage,
            "{} is a status update: ask people on a proposal or a thread, or reply to the update",
            id.short()
        );
    }
    Ok(id)
}

/// The requests of a document nobody answered; with `declined`, those declined too (they
/// wait on their asker).
fn unanswered(view: View<'_>, declined: bool) -> Vec<discussion::Ask> {
    let entries = discussion::entries(view);
    let comments = discussion::comments(view);
    let author = view.string(&automerge::ROOT, "author");
    discussion::asks_from(view, &entries, &author)
        .into_iter()
        .filter(|a| {
            discussion::responded_at(&comments, &entries, &a.member, a.at).is_none()
                && (declined || discussion::declined_at(&entries, &a.member, a.at).is_none())
        })
        .collect()
}

/// The requests of a document that wait for an answer.
fn pending(view: View<'_>) -> Vec<discussion::Ask> {
    unanswered(view, false)
}

/// Asks members to respond, with an urgency of the workspace's norms.
pub fn ask(
    cx: &Context,
    id: Id,
    names: &[String],
    urgency: Option<String>,
) -> Result<Vec<Written>> {
    let members = cx.record.state.find_active(names, "asked")?;
    if members.contains(&cx.me) {
        fail!(
            Usage,
            "you cannot ask yourself: name the people whose response you need"
        );
    }
    let urgency = urgency.unwrap_or_else(|| crate::norms::DEFAULT_URGENCY.to_string());
    cx.record.state.norms().level(&urgency)?;
    let me = cx.me.clone();
    cx.node.edit(cx.workspace, id, |doc| {
        let view = View::now(doc);
        if view.kind() == Some(Kind::Proposal) && crate::proposal::is_decided(view) {
            fail!(Refused, "{} is decided: there is nothing left to ask", id.short());
        }
        let pending = pending(view);
        for member in &members {
            if pending.iter().any(|a| &a.member == member && a.by == me) {
                fail!(Refused,
                    "{} is already asked on {} and has not answered: cancel it first with `meridian ask {} --cancel {}`",
                    cx.name(member),
                    id.short(),
                    id.short(),
                    cx.name(member)
                );
            }
        }
        let mut written = Vec::new();
        for member in &members {
            let mut entry = Entry::new("ask", &me, now_ms());
            entry.target = member.clone();
            entry.urgency = urgency.clone();
            let heads = doc.get_heads();
            write_entry(doc, &entry, &heads)?;
            written.push(Written { id, entry });
        }
        Ok(written)
    })
}

/// Cancels the request to `name`: the asker or the document's author may.
pub fn cancel(cx: &Context, id: Id, name: &str) -> Result<Written> {
    let member = cx.record.state.find(name)?.id.clone();
    let me = cx.me.clone();
    cx.node.edit(cx.workspace, id, |doc| {
        let view = View::now(doc);
        let asks: Vec<discussion::Ask> = unanswered(view, true)
            .into_iter()
            .filter(|a| a.member == member)
            .collect();
        let Some(ask) = asks.first() else {
            fail!(
                NotFound,
                "{} has no request on {} waiting for an answer",
                cx.name(&member),
                id.short()
            );
        };
        let author = view.string(&automerge::ROOT, "author");
        if !asks.iter().any(|a| a.by == me) && author != me {
            fail!(
                Refused,
                "{} asked {}: only they or the document's author cancel it",
                cx.name(&ask.by),
                cx.name(&member)
            );
        }
        let mut entry = Entry::new("cancel-ask", &me, now_ms());
        entry.target = member.clone();
        let heads = doc.get_heads();
        entry.heads = crate::doc::heads_hex(&heads);
        write_entry(doc, &entry, &heads)?;
        Ok(Written { id, entry })
    })
}

/// Where a request goes when its member declines it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PassedTo {
    /// To the next member on the escalation ladder.
    Ladder(String),
    /// Back to whoever asked.
    Asker(String),
}

/// Declines the request made to me (`ack = false`, with why), or acknowledges it. A
/// decline says where the request goes next.
pub fn answer(
    cx: &Context,
    id: Id,
    ack: bool,
    why: Option<String>,
) -> Result<(Written, Option<PassedTo>)> {
    let me = cx.me.clone();
    cx.node.edit(cx.workspace, id, |doc| {
        let view = View::now(doc);
        let Some(ask) = pending(view).into_iter().find(|a| a.member == me) else {
            fail!(
                NotFound,
                "nobody is waiting for your answer on {}: `meridian inbox` lists what is",
                id.short()
            );
        };
        let mut entry = Entry::new(if ack { "ack" } else { "decline" }, &me, now_ms());
        entry.message = why.unwrap_or_default().trim().to_string();
        let heads = doc.get_heads();
        write_entry(doc, &entry, &heads)?;
        let passed = (!ack).then(|| passed_to(&cx.record.state, &ask.by, &me));
        Ok((Written { id, entry }, passed))
    })
}

/// Who takes a request `member` declined: the first on the ladder who can (as
/// [`crate::inbox::escalation`] reads it), or the asker.
fn passed_to(state: &crate::workspace::WorkspaceState, asker: &str, member: &str) -> PassedTo {
    state
        .norms()
        .ladder
        .into_iter()
        .find(|m| m != member && state.member(m).is_some_and(|m| !m.removed))
        .map_or_else(|| PassedTo::Asker(asker.to_string()), PassedTo::Ladder)
}

/// What to tell someone asking members who are away at `now`: until when, and whether the
/// request passes on along the ladder or waits for their return.
pub fn away_notes(cx: &Context, members: &[String], now: i64) -> Vec<String> {
    let Ok(at) = jiff::Timestamp::from_millisecond(now) else {
        return Vec::new();
    };
    let ladder = cx.record.state.norms().ladder;
    members
        .iter()
        .filter_map(|id| {
            let member = cx.record.state.member(id)?;
            let back = member.calendar().away_at(at)?;
            let passes = ladder.iter().find(|m| *m != id).map(|m| cx.name(m));
            Some(match passes {
                Some(next) => format!(
                    "{} is away until {back} (their time): the request goes to {next}, next on the escalation ladder",
                    cx.name(id)
                ),
                None => format!(
                    "{} is away until {back} (their time): their deadline counts from their return",
                    cx.name(id)
                ),
            })
        })
        .collect()
}
