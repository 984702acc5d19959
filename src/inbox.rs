//! The inbox: what waits for my response (asks, approvals a decider owes, blocking
//! concerns on my proposals, decisions I can make or must settle), what I wait on from
//! others, with deadlines counted in each responder's working time and escalated along the
//! ladder when missed, and which documents changed since I last read them.
//!
//! Computed from the index and the cached workspace state alone, with `now` passed in, so
//! every node derives the same deadlines and no server runs a timer. (What happened in a
//! changed document, in words, needs the document: see [`events`].)

use std::collections::BTreeMap;

use automerge::ROOT;
use jiff::Timestamp;
use serde::Serialize;

use crate::discussion;
use crate::doc::{Kind, View};
use crate::id::Id;
use crate::index::{AskSummary, DocSummary};
use crate::norms::ResponseTime;
use crate::workspace::WorkspaceState;

/// One step of a request's escalation: who holds it and until when.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Rung {
    /// The member expected to respond.
    pub member: String,
    /// Their deadline, ms.
    pub deadline: i64,
}

/// Who holds a request now, after escalation, or `None` if no response is expected.
///
/// A request its member declined is theirs no more: it escalates from the moment they
/// declined, or (with no one on the ladder) goes back to the asker.
pub fn escalation(ask: &AskSummary, state: &WorkspaceState, now: i64) -> Vec<Rung> {
    let norms = state.norms();
    let Ok(within) = norms.level(&ask.urgency) else {
        return Vec::new();
    };
    let deadline_for = |member: &str, from: i64| -> Option<i64> {
        let calendar = state.member(member)?.calendar();
        let from = Timestamp::from_millisecond(from).ok()?;
        calendar.deadline(from, within).map(|t| t.as_millisecond())
    };
    // Someone away when asked passes the request on at once, when there is anyone to pass
    // it to; otherwise their deadline counts from their return.
    let away = state
        .member(&ask.member)
        .and_then(|m| {
            m.calendar()
                .away_at(Timestamp::from_millisecond(ask.at).ok()?)
        })
        .is_some();
    // The ladder's members who can take a request: not the person asked, not removed.
    let takers: Vec<&String> = norms
        .ladder
        .iter()
        .filter(|m| **m != ask.member && state.member(m).is_some_and(|m| !m.removed))
        .collect();
    let ladder = !takers.is_empty();
    let first = match &ask.declined {
        Some((at, _)) => Some(*at),
        None if away && ladder => Some(ask.at),
        None => deadline_for(&ask.member, ask.at),
    };
    let Some(first) = first else {
        return Vec::new();
    };
    let mut rungs = vec![Rung {
        member: ask.member.clone(),
        deadline: first,
    }];
    for next in takers {
        let last = rungs.last().expect("one rung at least").deadline;
        if now <= last {
            break;
        }
        let Some(deadline) = deadline_for(next, last) else {
            break;
        };
        rungs.push(Rung {
            member: next.clone(),
            deadline,
        });
    }
    rungs
}

/// One request for my response.
#[derive(Clone, Debug, Serialize)]
pub struct Request {
    /// The document.
    pub id: Id,
    /// Its kind.
    pub kind: Kind,
    /// Its title.
    pub title: String,
    /// Urgency level.
    pub urgency: String,
    /// Who asked.
    pub asked_by: String,
    /// When, ms.
    pub asked_at: i64,
    /// My deadline, ms, if a response is expected by a time.
    pub deadline: Option<i64>,
    /// The deadline has passed.
    pub overdue: bool,
    /// The member whose missed deadline (or decline) escalated this to me.
    pub escalated_from: Option<String>,
}

/// Whether a level expects a response by a time (`fyi` does not).
fn expects_response(state: &WorkspaceState, urgency: &str) -> bool {
    !matches!(state.norms().level(urgency), Ok(ResponseTime::None))
}

/// The asks of a document, and for a proposal in its comment period the asks its deciders
/// owe without being asked: an approval that is missing or stale, due as if they had been
/// asked with the proposal's urgency when the period began. The flag says which are implied.
fn asks_with_implied(summary: &DocSummary) -> Vec<(AskSummary, bool)> {
    let mut asks: Vec<(AskSummary, bool)> =
        summary.asks.iter().map(|a| (a.clone(), false)).collect();
    if summary.kind == Kind::Proposal
        && matches!(summary.state.as_str(), "open" | "final-comment")
        && let Some(opened) = summary.opened
    {
        for (decider, _) in summary.missing_approvals() {
            let urgency = if summary.urgency.is_empty() {
                crate::norms::DEFAULT_URGENCY.to_string()
            } else {
                summary.urgency.clone()
            };
            // A stale approval is owed again from no earlier than when it was given.
            let approved = summary
                .approvals
                .iter()
                .filter(|a| a.by == decider)
                .map(|a| a.at)
                .max();
            asks.push((
                AskSummary {
                    member: decider.to_string(),
                    urgency,
                    at: approved.map_or(opened, |a| a.max(opened)),
                    by: summary.author.clone(),
                    responded: None,
                    declined: None,
                },
                true,
            ));
        }
    }
    asks
}

fn open_for_response(summary: &DocSummary) -> bool {
    !matches!(
        summary.state.as_str(),
        "accepted" | "rejected" | "withdrawn" | "superseded" | "resolved"
    )
}

/// What asks for `me` to respond, soonest deadline first: requests made to me (or that
/// escalated to me) that expect a response by a time.
pub fn requests(
    me: &str,
    summaries: &[(Id, DocSummary)],
    state: &WorkspaceState,
    now: i64,
) -> Vec<Request> {
    let mut requests = Vec::new();
    for (id, summary) in summaries.iter().filter(|(_, s)| open_for_response(s)) {
        for ask in summary.asks.iter().filter(|a| a.responded.is_none()) {
            if let Some(request) = request_to(me, *id, summary, ask, state, now) {
                requests.push(request);
            }
        }
    }
    requests.sort_by_key(|r| (r.deadline.unwrap_or(i64::MAX), r.asked_at));
    requests
}

/// Whether a request left the person asked at once: they declined it, or were away when
/// asked while someone on the ladder could take it.
fn handed_on(ask: &AskSummary, state: &WorkspaceState) -> bool {
    if ask.declined.is_some() {
        return true;
    }
    let away = state
        .member(&ask.member)
        .and_then(|m| {
            m.calendar()
                .away_at(Timestamp::from_millisecond(ask.at).ok()?)
        })
        .is_some();
    away && state
        .norms()
        .ladder
        .iter()
        .any(|m| *m != ask.member && state.member(m).is_some_and(|m| !m.removed))
}

/// The request `ask` makes of `me`, if it is mine to answer now.
fn request_to(
    me: &str,
    id: Id,
    summary: &DocSummary,
    ask: &AskSummary,
    state: &WorkspaceState,
    now: i64,
) -> Option<Request> {
    if !expects_response(state, &ask.urgency) {
        return None;
    }
    let rungs = escalation(ask, state, now);
    let direct = ask.member == me && !handed_on(ask, state);
    let position = rungs.iter().position(|r| r.member == me);
    let position = if direct {
        Some(0)
    } else {
        position.filter(|p| *p > 0)
    }?;
    // Once escalated past me, it is no longer mine to answer (unless I was asked).
    if !direct && position + 1 != rungs.len() {
        return None;
    }
    let deadline = rungs.get(position).map(|r| r.deadline);
    Some(Request {
        id,
        kind: summary.kind,
        title: summary.title.clone(),
        urgency: ask.urgency.clone(),
        asked_by: ask.by.clone(),
        asked_at: ask.at,
        deadline,
        overdue: deadline.is_some_and(|d| now > d),
        escalated_from: (!direct && position > 0).then(|| rungs[position - 1].member.clone()),
    })
}

/// Why something waits for me.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Need {
    /// Someone asked me to respond (or their request escalated to me).
    Ask {
        /// Who asked.
        asked_by: String,
        /// When, ms.
        asked_at: i64,
        /// The member whose missed deadline (or decline) passed it to me.
        escalated_from: Option<String>,
    },
    /// I decide this proposal and my approval is missing, or stale.
    Approve {
        /// I approved a text that changed since, or before it was reopened.
        stale: bool,
        /// When the comment period began (the implied request), ms.
        asked_at: i64,
    },
    /// A blocking concern on my proposal.
    Concern {
        /// The concern's entry id.
        concern_id: String,
        /// Who raised it.
        by: String,
        /// What it says.
        message: String,
    },
    /// My proposal can be accepted now: the period closed, every decider approved the
    /// text as it stands, no blocking concern is open.
    Accept,
    /// The proposal's state is in conflict (concurrent decisions), and I may settle it.
    Conflict,
    /// Someone declined my request, and no one on the ladder took it.
    Declined {
        /// Who declined.
        member: String,
        /// When, ms.
        at: i64,
        /// Why.
        why: String,
    },
}

/// Something that waits for me.
#[derive(Clone, Debug, Serialize)]
pub struct Item {
    /// The document.
    pub id: Id,
    /// Its kind.
    pub kind: Kind,
    /// Its title.
    pub title: String,
    /// What it needs of me.
    pub need: Need,
    /// The urgency, when it is a request.
    pub urgency: Option<String>,
    /// My deadline, ms.
    pub deadline: Option<i64>,
    /// The deadline has passed.
    pub overdue: bool,
}

/// Everything that waits for `me`: overdue first, then by deadline, then the rest.
pub fn waiting_for(
    me: &str,
    summaries: &[(Id, DocSummary)],
    state: &WorkspaceState,
    now: i64,
) -> Vec<Item> {
    let mut items = Vec::new();
    for (id, summary) in summaries {
        let item = |need: Need, request: Option<&Request>| Item {
            id: *id,
            kind: summary.kind,
            title: summary.title.clone(),
            need,
            urgency: request.map(|r| r.urgency.clone()),
            deadline: request.and_then(|r| r.deadline),
            overdue: request.is_some_and(|r| r.overdue),
        };
        let mine = summary.author == me || summary.deciders.iter().any(|d| d == me);
        if open_for_response(summary) {
            // Requests: an explicit one, and a decider's implied one, shown once.
            let mut approve: Option<(Request, bool)> = None;
            let mut asked: Option<Request> = None;
            for (ask, implied) in asks_with_implied(summary) {
                if ask.responded.is_some() {
                    continue;
                }
                let Some(request) = request_to(me, *id, summary, &ask, state, now) else {
                    continue;
                };
                if implied && request.escalated_from.is_none() {
                    let stale = summary
                        .missing_approvals()
                        .iter()
                        .any(|(d, stale)| *d == me && *stale);
                    approve = Some((request, stale));
                } else if asked.as_ref().is_none_or(|a| {
                    a.deadline.unwrap_or(i64::MAX) > request.deadline.unwrap_or(i64::MAX)
                }) {
                    asked = Some(request);
                }
            }
            match (approve, asked) {
                (Some((mut approval, stale)), asked) => {
                    // The approval is what is owed; an explicit ask may make it sooner.
                    if let Some(a) = asked.filter(|a| {
                        a.escalated_from.is_none()
                            && a.deadline.unwrap_or(i64::MAX)
                                < approval.deadline.unwrap_or(i64::MAX)
                    }) {
                        approval.deadline = a.deadline;
                        approval.overdue = a.overdue;
                        approval.urgency = a.urgency;
                    }
                    let asked_at = approval.asked_at;
                    items.push(item(Need::Approve { stale, asked_at }, Some(&approval)));
                }
                (None, Some(request)) => items.push(item(
                    Need::Ask {
                        asked_by: request.asked_by.clone(),
                        asked_at: request.asked_at,
                        escalated_from: request.escalated_from.clone(),
                    },
                    Some(&request),
                )),
                (None, None) => {}
            }
        }
        if summary.kind == Kind::Proposal && !summary.decided() {
            if summary.author == me {
                for concern in summary.open_blocking_concerns() {
                    items.push(item(
                        Need::Concern {
                            concern_id: concern.id.clone(),
                            by: concern.by.clone(),
                            message: concern.message.clone(),
                        },
                        None,
                    ));
                }
            }
            if mine
                && summary.period_closed(now)
                && summary.missing_approvals().is_empty()
                && summary.open_blocking_concerns().next().is_none()
            {
                items.push(item(Need::Accept, None));
            }
        }
        if mine && summary.state == "conflict" {
            items.push(item(Need::Conflict, None));
        }
        // My requests someone declined, with no one on the ladder to take them.
        if open_for_response(summary) {
            for ask in summary
                .asks
                .iter()
                .filter(|a| a.by == me && a.responded.is_none())
            {
                // Asking anyone on the document since answers the decline.
                let asked_since =
                    |declined: i64| summary.asks.iter().any(|a| a.by == me && a.at > declined);
                if let Some((at, why)) = &ask.declined
                    && escalation(ask, state, now).len() == 1
                    && !asked_since(*at)
                {
                    items.push(item(
                        Need::Declined {
                            member: ask.member.clone(),
                            at: *at,
                            why: why.clone(),
                        },
                        None,
                    ));
                }
            }
        }
    }
    items.sort_by_key(|i| (!i.overdue, i.deadline.unwrap_or(i64::MAX)));
    items
}

/// What I wait on from someone else.
#[derive(Clone, Debug, Serialize)]
pub struct Wait {
    /// The document.
    pub id: Id,
    /// Its kind.
    pub kind: Kind,
    /// Its title.
    pub title: String,
    /// The member who owes the response now (after escalation).
    pub member: String,
    /// The member first asked, when it escalated from them.
    pub escalated_from: Option<String>,
    /// An approval of my proposal rather than a reply.
    pub approval: bool,
    /// Their approval went stale.
    pub stale: bool,
    /// The urgency level.
    pub urgency: String,
    /// When asked, ms.
    pub asked_at: i64,
    /// Their deadline, ms.
    pub deadline: Option<i64>,
    /// The deadline has passed.
    pub overdue: bool,
}

/// What `me` waits on: my open requests, and the approvals my proposals lack; overdue
/// first, then by deadline.
pub fn waiting_on(
    me: &str,
    summaries: &[(Id, DocSummary)],
    state: &WorkspaceState,
    now: i64,
) -> Vec<Wait> {
    let mut waits = Vec::new();
    for (id, summary) in summaries.iter().filter(|(_, s)| open_for_response(s)) {
        for (ask, implied) in asks_with_implied(summary) {
            let mine = if implied {
                summary.author == me
            } else {
                ask.by == me
            };
            if !mine || ask.member == me || ask.responded.is_some() {
                continue;
            }
            if state
                .members
                .iter()
                .any(|m| m.id == ask.member && m.removed)
            {
                continue;
            }
            let rungs = escalation(&ask, state, now);
            let Some(holder) = rungs.last() else {
                continue;
            };
            if ask.declined.is_some() && rungs.len() == 1 {
                continue; // It came back to me: shown as waiting for me.
            }
            let stale = implied
                && summary
                    .missing_approvals()
                    .iter()
                    .any(|(d, stale)| *d == ask.member && *stale);
            waits.push(Wait {
                id: *id,
                kind: summary.kind,
                title: summary.title.clone(),
                member: holder.member.clone(),
                escalated_from: (rungs.len() > 1).then(|| rungs[rungs.len() - 2].member.clone()),
                approval: implied,
                stale,
                urgency: ask.urgency.clone(),
                asked_at: ask.at,
                deadline: Some(holder.deadline),
                overdue: now > holder.deadline,
            });
        }
    }
    waits.sort_by_key(|w| (!w.overdue, w.deadline.unwrap_or(i64::MAX)));
    waits
}

/// Documents changed by someone else since I last marked them read, newest first.
///
/// A document I never marked read counts as read when nothing in it is newer than `joined`
/// (when I joined the workspace): a new member starts with the past read, and is shown only
/// what asks them (through [`waiting_for`]) and what happens from then on.
pub fn changed<'a>(
    me: &str,
    summaries: &'a [(Id, DocSummary)],
    markers: &BTreeMap<Id, Vec<String>>,
    joined: Option<i64>,
) -> Vec<&'a (Id, DocSummary)> {
    let mut changed: Vec<&(Id, DocSummary)> = summaries
        .iter()
        .filter(|(id, summary)| {
            if summary.last_author == me {
                return false;
            }
            let mut heads = summary.heads.clone();
            heads.sort();
            match markers.get(id) {
                Some(marker) => {
                    let mut marker = marker.clone();
                    marker.sort();
                    marker != heads
                }
                None => joined.is_none_or(|joined| summary.updated >= joined),
            }
        })
        .collect();
    changed.sort_by_key(|(_, s)| std::cmp::Reverse(s.updated));
    changed
}

/// Something that happened in a document since I read it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    /// The document is new to me.
    Created {
        /// Its author.
        by: String,
        /// When, ms.
        at: i64,
    },
    /// A lifecycle transition: opened, accepted, rejected, withdrawn, superseded, reopened,
    /// a thread resolved.
    Transition {
        /// The state it led to.
        state: String,
        /// Who made it.
        by: String,
        /// When, ms.
        at: i64,
        /// Its message.
        message: String,
    },
    /// The comment period was closed early.
    PeriodClosed {
        /// Who closed it.
        by: String,
        /// When, ms.
        at: i64,
    },
    /// An approval.
    Approved {
        /// Who approved.
        by: String,
        /// When, ms.
        at: i64,
    },
    /// An approval taken back.
    Unapproved {
        /// Who.
        by: String,
        /// When, ms.
        at: i64,
    },
    /// A concern.
    Concern {
        /// Who raised it.
        by: String,
        /// When, ms.
        at: i64,
        /// Whether it blocks acceptance.
        blocking: bool,
        /// What it says.
        message: String,
    },
    /// A concern resolved.
    ConcernResolved {
        /// The concern's entry id.
        concern_id: String,
        /// Who raised it.
        raised_by: String,
        /// Who resolved it.
        by: String,
        /// When, ms.
        at: i64,
        /// Why.
        note: String,
    },
    /// New replies.
    Replies {
        /// How many.
        count: usize,
        /// Who wrote them, each once, in order.
        authors: Vec<String>,
        /// The latest, ms.
        at: i64,
    },
    /// A field's text changed (a section, the title, a thread's opening text).
    Edited {
        /// The field (`title`, `section Summary`, `body`, …).
        field: String,
        /// Who changed it, each once.
        editors: Vec<String>,
    },
    /// Someone was asked to respond.
    Asked {
        /// Who was asked.
        member: String,
        /// Who asked.
        by: String,
        /// When, ms.
        at: i64,
        /// The urgency.
        urgency: String,
    },
    /// Someone declined a request.
    Declined {
        /// Who declined.
        by: String,
        /// When, ms.
        at: i64,
        /// Why.
        why: String,
    },
}

/// What happened in a document between `before` (what I read; `None` if I never read it)
/// and `now`, leaving out what `me` did.
pub fn events(before: Option<View<'_>>, now: View<'_>, me: &str) -> Vec<Event> {
    let author = now.string(&ROOT, "author");
    let Some(before) = before else {
        let mut events = vec![Event::Created {
            by: author,
            at: now.int(&ROOT, "created").unwrap_or(0),
        }];
        // What it asks of me, the first thing to know about it.
        events.extend(
            discussion::asks(now)
                .into_iter()
                .filter(|a| a.member == me)
                .map(|a| Event::Asked {
                    member: a.member,
                    by: a.by,
                    at: a.at,
                    urgency: a.urgency,
                }),
        );
        return events;
    };
    let mut events = Vec::new();
    let seen: std::collections::BTreeSet<String> = discussion::entries(before)
        .into_iter()
        .map(|e| e.id)
        .collect();
    let entries = discussion::entries(now);
    let new: Vec<&discussion::Entry> = entries
        .iter()
        .filter(|e| !seen.contains(&e.id) && e.by != me)
        .collect();
    for (i, entry) in new.iter().enumerate() {
        let (by, at) = (entry.by.clone(), entry.at);
        // One approval per person: the latest says it.
        let approved_again = || {
            new[i + 1..]
                .iter()
                .any(|later| later.kind == "approve" && later.by == entry.by)
        };
        let event = match entry.kind.as_str() {
            "approve" if approved_again() => continue,
            "approve" => Event::Approved { by, at },
            "open" | "final-comment" if entry.closes.is_some_and(|c| c <= entry.at) => {
                Event::PeriodClosed { by, at }
            }
            "unapprove" => Event::Unapproved { by, at },
            "concern" => Event::Concern {
                by,
                at,
                blocking: entry.blocking,
                message: entry.message.clone(),
            },
            "resolve-concern" => Event::ConcernResolved {
                raised_by: entries
                    .iter()
                    .find(|c| c.id == entry.target)
                    .map(|c| c.by.clone())
                    .unwrap_or_default(),
                concern_id: entry.target.clone(),
                by,
                at,
                note: entry.message.clone(),
            },
            "ask" => Event::Asked {
                member: entry.target.clone(),
                by,
                at,
                urgency: entry.urgency.clone(),
            },
            "decline" => Event::Declined {
                by,
                at,
                why: entry.message.clone(),
            },
            kind => match discussion::target_state(kind) {
                Some(state) => Event::Transition {
                    state: match (now.kind(), state) {
                        (Some(Kind::Thread), "draft") => "open".into(),
                        _ => state.into(),
                    },
                    by,
                    at,
                    message: entry.message.clone(),
                },
                None => continue,
            },
        };
        events.push(event);
    }
    let replies: Vec<discussion::Comment> = discussion::comments_added(before, now)
        .into_iter()
        .filter(|c| c.by != me)
        .collect();
    if let Some(latest) = replies.iter().map(|c| c.at).max() {
        let mut by: Vec<String> = Vec::new();
        for c in &replies {
            if !by.contains(&c.by) {
                by.push(c.by.clone());
            }
        }
        events.push(Event::Replies {
            count: replies.len(),
            authors: by,
            at: latest,
        });
    }
    for field in edited_fields(before, now) {
        let by = editors(now, before, &field, me);
        if !by.is_empty() {
            events.push(Event::Edited { field, editors: by });
        }
    }
    events
}

/// The text fields that differ between two views of a document.
fn edited_fields(before: View<'_>, now: View<'_>) -> Vec<String> {
    let mut fields = Vec::new();
    if before.title() != now.title() {
        fields.push("title".to_string());
    }
    match now.kind() {
        Some(Kind::Proposal) => {
            let then = crate::proposal::sections(before);
            for (name, text) in crate::proposal::sections(now) {
                if then.iter().find(|(n, _)| *n == name).map(|(_, t)| t) != Some(&text) {
                    fields.push(format!("section {name}"));
                }
            }
            for (name, _) in then {
                if !fields.contains(&format!("section {name}"))
                    && crate::proposal::sections(now)
                        .iter()
                        .all(|(n, _)| *n != name)
                {
                    fields.push(format!("section {name}"));
                }
            }
        }
        Some(Kind::Thread) if before.string(&ROOT, "body") != now.string(&ROOT, "body") => {
            fields.push("body".into());
        }
        Some(Kind::Update) => {
            for part in crate::update::PARTS {
                if before.string(&ROOT, part) != now.string(&ROOT, part) {
                    fields.push(part.into());
                }
            }
        }
        _ => {}
    }
    fields
}

/// The changes this many past what was read are read for who edited a field; beyond, the
/// authors of every new change are named.
const EDITORS_SCANNED: usize = 2000;

/// Who edited `field` after `before`: the authors of the new changes whose operations
/// touch it (its text, or its key in its map), leaving out `me`.
fn editors(now: View<'_>, before: View<'_>, field: &str, me: &str) -> Vec<String> {
    let Some(before_heads) = before.heads else {
        return Vec::new();
    };
    let changes = now.doc.get_changes(before_heads);
    field_editors(now, before, &changes, field, me)
}

/// Who, among the authors of `changes` (those between `before` and `now`), edited `field`
/// (`title`, `section NAME`, `body`, …): whose operations touch its text or its key.
/// `me` is left out.
pub fn field_editors(
    now: View<'_>,
    before: View<'_>,
    changes: &[automerge::Change],
    field: &str,
    me: &str,
) -> Vec<String> {
    let either = |f: &dyn Fn(View<'_>) -> Option<automerge::ObjId>| f(now).or_else(|| f(before));
    // The map the field is a key of (`None`: the root), its key, and its text object.
    let (map, key, text) = match field.strip_prefix("section ") {
        Some(name) => {
            let sections = either(&|v| v.map(&ROOT, "sections"));
            let text = either(&|v| {
                let sections = v.map(&ROOT, "sections")?;
                v.text_obj(&sections, name)
            });
            (sections.map(|s| s.to_string()), name, text)
        }
        None => (None, field, either(&|v| v.text_obj(&ROOT, field))),
    };
    let text = text.map(|t| t.to_string());
    let scan = changes.len() <= EDITORS_SCANNED;
    let mut by: Vec<String> = Vec::new();
    for change in changes {
        let Some(author) = crate::identity::actor_key(change.actor_id()).map(hex::encode) else {
            continue;
        };
        if author == me || by.contains(&author) {
            continue;
        }
        let touches = !scan
            || change.decode().operations.iter().any(|op| {
                let obj = match &op.obj {
                    automerge::legacy::ObjectId::Root => None,
                    automerge::legacy::ObjectId::Id(id) => {
                        Some(format!("{}@{}", id.0, id.1.to_hex_string()))
                    }
                };
                let at_key = matches!(&op.key, automerge::legacy::Key::Map(k) if k == key);
                (obj.is_some() && obj == text) || (obj == map && at_key)
            });
        if touches {
            by.push(author);
        }
    }
    by
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workspace::Member;

    fn member(id: &str, tz: &str) -> Member {
        Member {
            shown: String::new(),
            ..Member::for_test(id, id, tz)
        }
    }

    fn ms(text: &str) -> i64 {
        text.parse::<Timestamp>().unwrap().as_millisecond()
    }

    #[test]
    fn a_missed_deadline_escalates_to_the_next_rung_in_their_own_hours() {
        let state = WorkspaceState {
            members: vec![
                member("lima", "America/Lima"),
                member("tokyo", "Asia/Tokyo"),
            ],
            ladder: vec!["tokyo".into()],
            ..Default::default()
        };
        let ask = AskSummary {
            member: "lima".into(),
            urgency: "urgent".into(),
            at: ms("2026-11-24T10:00:00-05:00"),
            by: "tokyo".into(),
            responded: None,
            declined: None,
        };
        let before = escalation(&ask, &state, ms("2026-11-24T10:30:00-05:00"));
        assert_eq!(before.len(), 1);
        assert_eq!(before[0].deadline, ms("2026-11-24T11:00:00-05:00"));
        let after = escalation(&ask, &state, ms("2026-11-24T11:30:00-05:00"));
        assert_eq!(after.len(), 2);
        // 11:00 in Lima is 01:00 in Tokyo: Tokyo's hour starts at 09:00 their time.
        assert_eq!(after[1].deadline, ms("2026-11-25T10:00:00+09:00"));

        let summary = DocSummary {
            workspace: vec![0; 16],
            kind: Kind::Thread,
            title: "t".into(),
            state: "open".into(),
            closes: None,
            author: "tokyo".into(),
            created: 0,
            updated: 0,
            last_author: String::new(),
            heads: vec![],
            changes: 1,
            asks: vec![ask],
            ..DocSummary::empty(Kind::Thread)
        };
        let docs = vec![(Id([1; 16]), summary)];
        let now = ms("2026-11-24T11:30:00-05:00");
        let lima = requests("lima", &docs, &state, now);
        assert!(lima[0].overdue);
        let tokyo = requests("tokyo", &docs, &state, now);
        assert_eq!(tokyo[0].escalated_from.as_deref(), Some("lima"));
        assert!(!tokyo[0].overdue);
    }

    /// A proposal by `ana` that `ana` and `bo` decide, open since `opened`.
    fn open_proposal(opened: i64) -> DocSummary {
        DocSummary {
            kind: Kind::Proposal,
            title: "p".into(),
            state: "open".into(),
            closes: Some(opened),
            author: "ana".into(),
            urgency: "high".into(),
            deciders: vec!["ana".into(), "bo".into()],
            opened: Some(opened),
            ..DocSummary::empty(Kind::Proposal)
        }
    }

    fn kinds(items: &[Item]) -> Vec<String> {
        items
            .iter()
            .map(|i| match &i.need {
                Need::Approve { stale: true, .. } => "approve (stale)".to_string(),
                need => serde_json::to_value(need).unwrap()["kind"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            })
            .collect()
    }

    #[test]
    fn each_person_sees_what_they_owe_on_a_proposal() {
        let state = WorkspaceState {
            members: vec![
                member("ana", "Asia/Tokyo"),
                member("bo", "Europe/Berlin"),
                member("cy", "America/Lima"),
            ],
            ..Default::default()
        };
        let opened = ms("2026-11-24T09:00:00+09:00");
        let now = opened + 60_000;
        let mut p = open_proposal(opened);
        let docs = |p: &DocSummary| vec![(Id([1; 16]), p.clone())];
        // Both deciders owe an approval, due as a `high` request from the opening.
        assert_eq!(
            kinds(&waiting_for("ana", &docs(&p), &state, now)),
            ["approve"]
        );
        let bo = waiting_for("bo", &docs(&p), &state, now);
        assert_eq!(kinds(&bo), ["approve"]);
        assert_eq!(bo[0].deadline, Some(ms("2026-11-24T13:00:00+01:00")));
        assert!(waiting_for("cy", &docs(&p), &state, now).is_empty());
        // Ana waits on Bo's approval (not on her own).
        let waits = waiting_on("ana", &docs(&p), &state, now);
        assert_eq!(waits.len(), 1);
        assert!(waits[0].approval && waits[0].member == "bo");
        // Bo approved a text that changed since: stale. Ana approved: nothing more for her.
        p.approvals = vec![
            crate::index::ApprovalSummary {
                by: "ana".into(),
                at: now,
                stale: false,
            },
            crate::index::ApprovalSummary {
                by: "bo".into(),
                at: now,
                stale: true,
            },
        ];
        assert_eq!(
            kinds(&waiting_for("bo", &docs(&p), &state, now)),
            ["approve (stale)"]
        );
        assert!(waiting_for("ana", &docs(&p), &state, now).is_empty());
        // A blocking concern waits for the author; once Bo approves it is all that is left.
        p.approvals[1].stale = false;
        p.concerns = vec![crate::index::ConcernSummary {
            id: "c1".into(),
            by: "cy".into(),
            at: now,
            blocking: true,
            message: "why?".into(),
            resolved: None,
        }];
        assert_eq!(
            kinds(&waiting_for("ana", &docs(&p), &state, now)),
            ["concern"]
        );
        // Resolved: the deciders can accept, the period having closed.
        p.concerns[0].resolved = Some(crate::index::ResolutionSummary {
            by: "cy".into(),
            at: now,
            note: String::new(),
        });
        assert_eq!(
            kinds(&waiting_for("ana", &docs(&p), &state, now)),
            ["accept"]
        );
        assert_eq!(
            kinds(&waiting_for("bo", &docs(&p), &state, now)),
            ["accept"]
        );
        // Not before the period closes.
        p.closes = Some(now + 1);
        assert!(waiting_for("ana", &docs(&p), &state, now).is_empty());
        // Concurrent decisions: the people who decide settle them.
        p.state = "conflict".into();
        assert_eq!(
            kinds(&waiting_for("bo", &docs(&p), &state, now)),
            ["conflict"]
        );
        assert!(waiting_for("cy", &docs(&p), &state, now).is_empty());
    }

    #[test]
    fn a_decline_or_an_absence_hands_a_request_on() {
        let mut state = WorkspaceState {
            members: vec![member("ana", "Asia/Tokyo"), member("bo", "Europe/Berlin")],
            ..Default::default()
        };
        let at = ms("2026-11-24T10:00:00+01:00");
        let ask = AskSummary {
            member: "bo".into(),
            urgency: "normal".into(),
            at,
            by: "ana".into(),
            responded: None,
            declined: Some((at + 1, "busy".into())),
        };
        let doc = |ask: &AskSummary| {
            vec![(
                Id([2; 16]),
                DocSummary {
                    state: "open".into(),
                    asks: vec![ask.clone()],
                    ..DocSummary::empty(Kind::Thread)
                },
            )]
        };
        // No ladder: back to the asker.
        assert_eq!(
            kinds(&waiting_for("ana", &doc(&ask), &state, at + 2)),
            ["declined"]
        );
        assert!(waiting_for("bo", &doc(&ask), &state, at + 2).is_empty());
        assert!(waiting_on("ana", &doc(&ask), &state, at + 2).is_empty());
        // With a ladder: on to its next rung at once.
        state.ladder = vec!["ana".into()];
        let items = waiting_for("ana", &doc(&ask), &state, at + 2);
        assert_eq!(kinds(&items), ["ask"]);
        assert!(
            matches!(&items[0].need, Need::Ask { escalated_from: Some(from), .. } if from == "bo")
        );
        // Away when asked: the same, without a decline.
        let mut away = ask.clone();
        away.declined = None;
        state.members[1].away = vec!["2026-11-20..2026-11-30".into()];
        let items = waiting_for("ana", &doc(&away), &state, at + 2);
        assert_eq!(kinds(&items), ["ask"]);
        state.ladder.clear();
        // Without a ladder, Bo's deadline counts from his return.
        let bo = waiting_for("bo", &doc(&away), &state, at + 2);
        assert_eq!(bo[0].deadline, Some(ms("2026-12-02T17:00:00+01:00")));
    }
}
