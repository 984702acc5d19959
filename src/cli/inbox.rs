//! `meridian inbox` and `meridian read`: printing what the application layer's inbox says,
//! in words for people and as structured JSON for scripts.

use std::collections::BTreeMap;

use anyhow::{Result, bail};
use jiff::Timestamp;
use serde_json::{Value as Json, json};

use super::{Out, Tone};
use crate::app::inbox::{self, Happened, Options};
use crate::doc::Kind;
use crate::id::Id;
use crate::inbox::{Event, Item, Need, Wait};
use crate::node::Node;
use crate::norms::parse_moment;
use crate::workspace::WorkspaceState;

/// A kind of document as a person types it.
pub fn parse_kind(text: &str) -> Result<Kind> {
    match Kind::parse(text.trim().to_ascii_lowercase().trim_end_matches('s')) {
        Some(kind) if kind != Kind::Workspace => Ok(kind),
        _ => crate::fail!(
            Usage,
            "`{text}` is not a kind of document: use proposal, thread or update"
        ),
    }
}

/// How far a moment is from now, for people: `in 3 h`, `2 d ago`.
pub fn relative(at: i64, now: i64) -> String {
    // Times come from documents: no subtraction may overflow.
    let minutes = (i128::from(at) - i128::from(now)).unsigned_abs() / 60_000;
    let amount = if minutes < 60 {
        format!("{} min", minutes.max(1))
    } else if minutes < 48 * 60 {
        format!("{} h", minutes / 60)
    } else {
        format!("{} d", minutes / (24 * 60))
    };
    if at >= now {
        format!("in {amount}")
    } else {
        format!("{amount} ago")
    }
}

/// A member as JSON: `{"id": KEY, "name": NAME}`.
fn person(state: &WorkspaceState, id: &str) -> Json {
    json!({"id": id, "name": state.name_of(id)})
}

/// `meridian inbox`: every workspace, or the one `-w` names.
pub fn inbox(
    node: &Node,
    selector: Option<&str>,
    (at, limit, kind): (Option<&str>, Option<usize>, Option<&str>),
    out: &Out,
) -> Result<()> {
    let real_now = crate::node::now();
    let now = match at {
        Some(at) => parse_moment(at, real_now, &out.tz)?.as_millisecond(),
        None => real_now.as_millisecond(),
    };
    let workspace = match selector {
        Some(selector) => Some(node.workspace(Some(selector))?.0),
        None => None,
    };
    if node.workspaces()?.is_empty() {
        bail!(
            "this node belongs to no workspace yet: `meridian workspace create NAME` or `meridian join CODE`"
        );
    }
    let options = Options {
        workspace,
        kind: kind.map(parse_kind).transpose()?,
        limit,
        now,
    };
    let me = node.member_id();
    let inbox = inbox::inbox(node, &me, &options)?;
    let states: BTreeMap<Id, WorkspaceState> = node
        .workspaces()?
        .into_iter()
        .map(|(id, record)| (id, record.state))
        .collect();
    let (waiting, overdue, others, happened) = inbox.counts();
    if out.json {
        let workspaces: Vec<Json> = inbox
            .workspaces
            .iter()
            .map(|w| {
                let state = &states[&w.id];
                json!({
                    "id": w.id.hex(), "name": w.name,
                    "waiting_for_you": w.waiting_for_you.iter().map(|i| item_json(out, state, i)).collect::<Vec<_>>(),
                    "waiting_on_others": w.waiting_on_others.iter().map(|i| wait_json(out, state, i)).collect::<Vec<_>>(),
                    "happened": w.happened.iter().map(|h| happened_json(out, state, &me, h)).collect::<Vec<_>>(),
                    "totals": {"waiting_for_you": w.totals[0], "waiting_on_others": w.totals[1], "happened": w.totals[2]},
                })
            })
            .collect();
        return out.print_json(&json!({
            "summary": {"waiting_for_you": waiting, "overdue": overdue, "waiting_on_others": others, "happened": happened},
            "workspaces": workspaces,
        }));
    }
    if waiting + others + happened == 0 {
        say!(
            out,
            "Nothing needs you, and nothing changed since you last read."
        );
        return Ok(());
    }
    let overdue_text = if overdue > 0 {
        format!(" ({overdue} overdue)")
    } else {
        String::new()
    };
    say!(
        out,
        "{waiting} waiting for you{overdue_text} · {others} waiting on others · {happened} changed since you read {}",
        if happened == 1 { "it" } else { "them" }
    );
    let grouped = inbox.workspaces.len() > 1;
    for w in &inbox.workspaces {
        if w.totals.iter().sum::<usize>() == 0 {
            continue;
        }
        let state = &states[&w.id];
        let indent = if grouped { "  " } else { "" };
        if grouped {
            say!(out);
            say!(out, "{}", w.name);
        }
        if !w.waiting_for_you.is_empty() {
            say!(out);
            say!(
                out,
                "{indent}{}",
                out.paint(Tone::Heading, "Waiting for you:")
            );
            for group in by_document(&w.waiting_for_you, |i| i.id) {
                say!(
                    out,
                    "{indent}  {}",
                    headline(out, group[0].id, group[0].kind, &group[0].title)
                );
                for item in group {
                    say!(out, "{indent}      {}", need_text(out, state, item, now));
                }
            }
            more(out, indent, w.totals[0], w.waiting_for_you.len())?;
        }
        if !w.waiting_on_others.is_empty() {
            say!(out);
            say!(
                out,
                "{indent}{}",
                out.paint(Tone::Heading, "Waiting on others:")
            );
            for group in by_document(&w.waiting_on_others, |w| w.id) {
                say!(
                    out,
                    "{indent}  {}",
                    headline(out, group[0].id, group[0].kind, &group[0].title)
                );
                for wait in group {
                    say!(out, "{indent}      {}", wait_text(out, state, wait, now));
                }
            }
            more(out, indent, w.totals[1], w.waiting_on_others.len())?;
        }
        if !w.happened.is_empty() {
            say!(out);
            say!(
                out,
                "{indent}{}",
                out.paint(Tone::Heading, "Since you last read:")
            );
            for h in &w.happened {
                say!(
                    out,
                    "{indent}  {} ({})",
                    headline(out, h.id, h.kind, &h.title),
                    h.state
                );
                let words: Vec<String> = h
                    .events
                    .iter()
                    .map(|e| event_text(state, &me, h.kind, e))
                    .collect();
                let words = if words.is_empty() {
                    format!(
                        "changed {} by {}",
                        out.time(h.updated),
                        state.name_of(&h.last_author)
                    )
                } else {
                    words.join(" · ")
                };
                say!(out, "{indent}      {words}");
            }
            more(out, indent, w.totals[2], w.happened.len())?;
        }
    }
    Ok(())
}

/// Items grouped by document, each group where its document first comes (the order is
/// by urgency, and a document's lines stay together under its title).
fn by_document<T>(items: &[T], id: impl Fn(&T) -> Id) -> Vec<Vec<&T>> {
    let mut groups: Vec<Vec<&T>> = Vec::new();
    for item in items {
        match groups.iter_mut().find(|g| id(g[0]) == id(item)) {
            Some(group) => group.push(item),
            None => groups.push(vec![item]),
        }
    }
    groups
}

fn more(out: &Out, indent: &str, total: usize, shown: usize) -> Result<()> {
    if total > shown {
        say!(
            out,
            "{indent}  … and {} more (--limit N shows more)",
            total - shown
        );
    }
    Ok(())
}

fn headline(out: &Out, id: Id, kind: Kind, title: &str) -> String {
    format!(
        "{}  {:<8}  {}",
        out.paint(Tone::Id, &id.short()),
        kind.as_str(),
        super::printable(title)
    )
}

/// `due Tue 2026-12-08 17:00 JST (in 3 h)` or `OVERDUE since …`.
fn due(out: &Out, deadline: Option<i64>, overdue: bool, now: i64) -> String {
    match deadline {
        Some(d) if overdue => format!(
            "{} since {} ({})",
            out.paint(Tone::Alarm, "OVERDUE"),
            out.time(d),
            relative(d, now)
        ),
        Some(d) => format!("due {} ({})", out.time(d), relative(d, now)),
        None => String::new(),
    }
}

fn need_text(out: &Out, state: &WorkspaceState, item: &Item, now: i64) -> String {
    let due = due(out, item.deadline, item.overdue, now);
    let level = item
        .urgency
        .as_ref()
        .map(|u| format!(", {u}"))
        .unwrap_or_default();
    let when = if due.is_empty() {
        String::new()
    } else {
        format!(": {due}{level}")
    };
    let short = item.id.short();
    match &item.need {
        Need::Ask {
            asked_by,
            escalated_from,
            ..
        } => match escalated_from {
            Some(from) => format!(
                "ESCALATED to you: {} did not answer {}'s request{when}",
                state.name_of(from),
                state.name_of(asked_by)
            ),
            None => format!("{} asked you to respond{when}", state.name_of(asked_by)),
        },
        Need::Approve { stale: true, .. } => {
            format!("approve again: the text changed since your approval{when}")
        }
        Need::Approve { stale: false, .. } => {
            format!("your approval as a decider (approve, or raise a concern){when}")
        }
        Need::Concern {
            concern_id,
            by,
            message,
        } => {
            let concern = crate::id::prefix(concern_id, 8);
            format!(
                "{}'s blocking concern {concern}: \"{}\" ({} resolves it, or you, with `meridian proposal resolve {short} {concern} -m NOTE`)",
                state.name_of(by),
                crate::id::prefix(message, 60),
                state.name_of(by)
            )
        }
        Need::Accept => {
            format!("you can accept it now: `meridian proposal accept {short}`")
        }
        Need::Conflict => format!(
            "concurrent decisions conflict: settle with `meridian resolve {short} state STATE`"
        ),
        Need::Declined { member, why, .. } => {
            let why = if why.is_empty() {
                String::new()
            } else {
                format!(" ({why})")
            };
            format!(
                "{} declined your request{why}: ask someone else with `meridian ask {short} NAME`",
                state.name_of(member)
            )
        }
    }
}

fn wait_text(out: &Out, state: &WorkspaceState, wait: &Wait, now: i64) -> String {
    let who = state.name_of(&wait.member);
    let what = match (wait.approval, wait.stale) {
        (true, true) => format!("{who}'s approval (theirs went stale)"),
        (true, false) => format!("{who}'s approval"),
        (false, _) => format!("{who}'s response ({})", wait.urgency),
    };
    let escalated = wait
        .escalated_from
        .as_ref()
        .map(|m| format!(", escalated from {}", state.name_of(m)))
        .unwrap_or_default();
    let Some(deadline) = wait.deadline else {
        return format!("{what}{escalated}");
    };
    let theirs = state
        .member(&wait.member)
        .and_then(|m| {
            let zoned = Timestamp::from_millisecond(deadline)
                .ok()?
                .to_zoned_datetime(m.calendar().tz);
            Some(zoned.strftime("%a %H:%M").to_string())
        })
        .unwrap_or_default();
    let verb = if wait.overdue {
        format!("{} since", out.paint(Tone::Alarm, "OVERDUE"))
    } else {
        "due".to_string()
    };
    format!(
        "{what}{escalated}: {verb} {} your time, {theirs} for {who} ({})",
        out.time(deadline),
        relative(deadline, now)
    )
}

/// A field as people call it: `Summary` for `section Summary`.
fn field_name(kind: Kind, field: &str) -> String {
    match (kind, field) {
        (_, f) if f.starts_with("section ") => f["section ".len()..].to_string(),
        (Kind::Thread, "body") => "opening text".into(),
        (_, "title") => "title".into(),
        (_, f) => f.to_string(),
    }
}

fn names(state: &WorkspaceState, ids: &[String]) -> String {
    let names: Vec<String> = ids.iter().map(|id| state.name_of(id)).collect();
    match names.as_slice() {
        [] => String::new(),
        [one] => one.clone(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    }
}

/// An event in words: "accepted by Ana", "2 new replies (Bo, Cy)".
pub fn event_text(state: &WorkspaceState, me: &str, kind: Kind, event: &Event) -> String {
    let name = |id: &str| state.name_of(id);
    let with = |text: &str| {
        if text.is_empty() {
            String::new()
        } else {
            format!(": {}", crate::id::prefix(text, 80))
        }
    };
    match event {
        Event::Created { by, .. } => format!("new {} by {}", kind.as_str(), name(by)),
        Event::Transition {
            state: s,
            by,
            message,
            ..
        } => {
            let verb = match s.as_str() {
                "open" if kind == Kind::Thread => "reopened",
                "open" => "opened for comments",
                "final-comment" => "in its final comment period",
                "draft" => "reopened",
                other => other,
            };
            format!("{verb} by {}{}", name(by), with(message))
        }
        Event::PeriodClosed { by, .. } => format!("comment period closed by {}", name(by)),
        Event::Approved { by, .. } => format!("{} approved", name(by)),
        Event::Unapproved { by, .. } => format!("{} took back their approval", name(by)),
        Event::Concern {
            by,
            blocking,
            message,
            ..
        } => format!(
            "{} raised a{} concern{}",
            name(by),
            if *blocking { " blocking" } else { "" },
            with(message)
        ),
        Event::ConcernResolved {
            raised_by,
            by,
            note,
            ..
        } => {
            if raised_by == by {
                format!("{} resolved their concern{}", name(by), with(note))
            } else {
                let whose = if raised_by == me {
                    "your".to_string()
                } else {
                    format!("{}'s", name(raised_by))
                };
                format!("{} resolved {whose} concern{}", name(by), with(note))
            }
        }
        Event::Replies { count, authors, .. } => format!(
            "{count} new {} ({})",
            if *count == 1 { "reply" } else { "replies" },
            names(state, authors)
        ),
        Event::Edited { field, editors } => {
            format!(
                "{} edited by {}",
                field_name(kind, field),
                names(state, editors)
            )
        }
        Event::Asked {
            member,
            by,
            urgency,
            ..
        } => {
            let whom = if member == me {
                "you".to_string()
            } else {
                name(member)
            };
            format!("{} asked {whom} ({urgency})", name(by))
        }
        Event::Declined { by, why, .. } => format!("{} declined{}", name(by), with(why)),
    }
}

pub(super) fn item_json(out: &Out, state: &WorkspaceState, item: &Item) -> Json {
    let mut need = serde_json::to_value(&item.need).unwrap_or(Json::Null);
    person_fields(out, state, &mut need);
    json!({
        "id": item.id.hex(), "kind": item.kind.as_str(), "title": item.title,
        "need": need, "urgency": item.urgency,
        "deadline": item.deadline.map(|d| out.rfc3339(d)), "overdue": item.overdue,
    })
}

fn wait_json(out: &Out, state: &WorkspaceState, wait: &Wait) -> Json {
    let theirs = state
        .member(&wait.member)
        .and_then(|m| Some(super::rfc3339_in(wait.deadline?, &m.calendar().tz)));
    json!({
        "id": wait.id.hex(), "kind": wait.kind.as_str(), "title": wait.title,
        "member": person(state, &wait.member),
        "escalated_from": wait.escalated_from.as_ref().map(|m| person(state, m)),
        "approval": wait.approval, "stale": wait.stale, "urgency": wait.urgency,
        "asked_at": out.rfc3339(wait.asked_at),
        "deadline": wait.deadline.map(|d| out.rfc3339(d)),
        "deadline_theirs": theirs,
        "overdue": wait.overdue,
    })
}

pub(crate) fn happened_json(out: &Out, state: &WorkspaceState, me: &str, h: &Happened) -> Json {
    let events: Vec<Json> = h
        .events
        .iter()
        .map(|e| {
            let mut value = serde_json::to_value(e).unwrap_or(Json::Null);
            person_fields(out, state, &mut value);
            value["text"] = json!(event_text(state, me, h.kind, e));
            value
        })
        .collect();
    json!({
        "id": h.id.hex(), "kind": h.kind.as_str(), "title": h.title, "state": h.state,
        "updated": out.rfc3339(h.updated), "last_author": person(state, &h.last_author),
        "events": events,
    })
}

/// Turns member ids into person objects and milliseconds into RFC 3339 times, in the
/// fields events and needs use for them.
pub(crate) fn person_fields(out: &Out, state: &WorkspaceState, value: &mut Json) {
    let Some(map) = value.as_object_mut() else {
        return;
    };
    for key in ["by", "asked_by", "member", "raised_by", "escalated_from"] {
        if let Some(id) = map.get(key).and_then(Json::as_str).map(str::to_string) {
            map.insert(key.into(), person(state, &id));
        }
    }
    for key in ["authors", "editors"] {
        if let Some(ids) = map.get(key).and_then(Json::as_array).cloned() {
            let people: Vec<Json> = ids
                .iter()
                .filter_map(Json::as_str)
                .map(|id| person(state, id))
                .collect();
            map.insert(key.into(), json!(people));
        }
    }
    for key in ["at", "asked_at"] {
        if let Some(ms) = map.get(key).and_then(Json::as_i64) {
            map.insert(key.into(), out.rfc3339(ms));
        }
    }
}

/// `meridian read --all [--kind K]`: every document of every workspace (or of `-w`).
pub fn mark_all_read(
    node: &Node,
    selector: Option<&str>,
    kind: Option<&str>,
    out: &Out,
) -> Result<()> {
    let kind = kind.map(parse_kind).transpose()?;
    let workspaces: Vec<Id> = match selector {
        Some(selector) => vec![node.workspace(Some(selector))?.0],
        None => node.workspaces()?.into_iter().map(|(id, _)| id).collect(),
    };
    let mut marks = Vec::new();
    let mut read = Vec::new();
    for workspace in workspaces {
        for (id, summary) in node.summaries(workspace)? {
            if kind.is_none_or(|k| summary.kind == k) {
                read.push(
                    json!({"id": id.hex(), "kind": summary.kind.as_str(), "title": summary.title}),
                );
                marks.push((id, summary.heads));
            }
        }
    }
    node.mark_read_many(&marks)?;
    if out.json {
        out.print_json(&json!({ "read": read }))?;
    } else {
        let noun = if marks.len() == 1 {
            "document"
        } else {
            "documents"
        };
        say!(out, "Marked {} {noun} read.", marks.len());
    }
    Ok(())
}
