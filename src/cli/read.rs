//! Reading commands: lists, show, inbox, read.

use anyhow::{Result, bail};
use automerge::{Automerge, ChangeHash};
use serde_json::{Value as Json, json};

use super::table::{Cell, Table};
use super::{Ctx, Tone};
use crate::discussion::{self, Ask, Comment, Lifecycle, State};
use crate::doc::{Kind, View, parse_heads};
use crate::history;
use crate::id::Id;
use crate::inbox;
use crate::index::{AskSummary, DocSummary};
use crate::{proposal, thread, update};

/// The states a list can be narrowed to, per kind.
fn states(kind: Kind) -> &'static [&'static str] {
    match kind {
        Kind::Proposal => &discussion::PROPOSAL_STATES,
        Kind::Thread => &discussion::THREAD_STATES,
        _ => &["posted"],
    }
}

pub fn list(ctx: &Ctx, kind: Kind, state: Option<&str>) -> Result<()> {
    if let Some(state) = state
        && !states(kind).contains(&state)
    {
        crate::fail!(
            Usage,
            "`{state}` is not a state of a {}: use one of {}",
            kind.as_str(),
            states(kind).join(", ")
        );
    }
    let now = crate::node::now_ms();
    let mut docs: Vec<(Id, DocSummary)> = ctx
        .node
        .summaries(ctx.workspace)?
        .into_iter()
        .filter(|(_, s)| s.kind == kind && state.is_none_or(|st| s.state == st))
        .collect();
    docs.sort_by_key(|(_, s)| std::cmp::Reverse(s.updated));
    let name = |m: &str| ctx.reader_name(m);
    let time = |t: i64| ctx.out.time(t);
    let obstacles = |s: &DocSummary| -> Vec<crate::proposal::Obstacle> {
        if s.kind == Kind::Proposal && matches!(s.state.as_str(), "open" | "final-comment") {
            s.obstacles(now)
        } else {
            Vec::new()
        }
    };
    if ctx.out.json {
        let list: Vec<Json> = docs
            .iter()
            .map(|(id, s)| {
                let mut value = summary_json(ctx, *id, s);
                if s.kind == Kind::Proposal {
                    value["obstacles"] = json!(
                        obstacles(s)
                            .iter()
                            .map(|o| obstacle_json(ctx, o))
                            .collect::<Vec<_>>()
                    );
                }
                value
            })
            .collect();
        ctx.out.print_json(&json!(list))?;
        return Ok(());
    }
    if docs.is_empty() {
        return say_empty(ctx, kind, state);
    }
    let mut table = Table::new(&["ID", "STATE", "TITLE", "AUTHOR", "LAST CHANGE"]).elastic(2);
    for (id, s) in &docs {
        table.row(vec![
            Cell::toned(id.short(), Tone::Id),
            Cell::toned(&s.state, state_tone(&s.state)),
            Cell::new(&s.title),
            Cell::new(ctx.name(&s.author)),
            Cell::new(ctx.out.time(s.updated)),
        ]);
        let obstacles = obstacles(s);
        if !obstacles.is_empty() {
            let words: Vec<String> = obstacles.iter().map(|o| o.describe(&name, &time)).collect();
            table.note(format!("waiting: {}", words.join("; ")));
        } else if s.kind == Kind::Proposal && matches!(s.state.as_str(), "open" | "final-comment") {
            table.note(ctx.out.paint(Tone::Good, "ready to accept"));
        }
    }
    table.print(&ctx.out)
}

/// The colour of a state in a list: decided and fine in green, a conflict in red.
pub(super) fn state_tone(state: &str) -> Tone {
    match state {
        "conflict" => Tone::Alarm,
        "accepted" | "resolved" => Tone::Good,
        "rejected" | "withdrawn" | "superseded" => Tone::Dim,
        _ => Tone::Plain,
    }
}

/// What an empty list says: that there is nothing, and how to make the first one.
fn say_empty(ctx: &Ctx, kind: Kind, state: Option<&str>) -> Result<()> {
    let (plural, create) = match kind {
        Kind::Proposal => ("proposals", "meridian proposal new TITLE"),
        Kind::Thread => ("threads", "meridian thread new TITLE -m TEXT"),
        _ => ("updates", "meridian update new --done TEXT"),
    };
    match state {
        Some(state) => say!(
            ctx.out,
            "No {plural} are {state} in {}; `meridian {} list` shows them all.",
            ctx.record.name,
            kind.as_str()
        ),
        None => say!(
            ctx.out,
            "No {plural} yet in {}: write the first with `{create}`.",
            ctx.record.name
        ),
    }
    Ok(())
}

fn sorted(items: &[String]) -> Vec<String> {
    let mut items = items.to_vec();
    items.sort();
    items
}

fn summary_json(ctx: &Ctx, id: Id, s: &DocSummary) -> Json {
    json!({
        "id": id.hex(), "kind": s.kind.as_str(), "title": s.title, "state": s.state,
        "author": ctx.person(&s.author),
        "created": ctx.out.rfc3339(s.created), "updated": ctx.out.rfc3339(s.updated),
        "closes": s.closes.map(|c| ctx.out.rfc3339(c)), "changes": s.changes,
        "heads": sorted(&s.heads),
    })
}

/// An obstacle to acceptance as JSON: its kind, the people as `{id, name}`, times in RFC
/// 3339, and a sentence naming everyone (the same for every reader, unlike the text `show`
/// prints, which says "you").
fn obstacle_json(ctx: &Ctx, obstacle: &crate::proposal::Obstacle) -> Json {
    use crate::proposal::Obstacle;
    let name = |m: &str| ctx.name(m);
    let time = |t: i64| ctx.out.time(t);
    let mut value = match obstacle {
        Obstacle::Unapproved { decider } | Obstacle::Stale { decider } => {
            json!({"decider": ctx.person(decider)})
        }
        Obstacle::BlockingConcern {
            concern_id,
            by,
            message,
        } => json!({"entry_id": concern_id, "by": ctx.person(by), "message": message}),
        Obstacle::NotInPeriod { state } => json!({"state": state}),
        Obstacle::PeriodOpen { closes } => json!({"closes": ctx.out.rfc3339(*closes)}),
    };
    let kind = serde_json::to_value(obstacle).unwrap_or(Json::Null)["kind"].clone();
    value["kind"] = kind;
    value["text"] = json!(obstacle.describe(&name, &time));
    value
}

/// A lifecycle as JSON: the state's name, the transitions at its tips, those ignored and why.
fn lifecycle_json(lifecycle: &Lifecycle) -> Json {
    let candidates = match &lifecycle.state {
        State::Conflict { candidates } => candidates
            .iter()
            .map(|(state, entry)| json!({"state": state, "entry_id": entry}))
            .collect(),
        _ => Vec::new(),
    };
    json!({
        "state": lifecycle.state.name(),
        "superseded_by": match &lifecycle.state { State::Superseded { by } => Some(by), _ => None },
        "candidates": candidates,
        "tips": lifecycle.tips,
        "ignored": lifecycle.ignored.iter().map(|(entry, reason)| json!({"entry_id": entry, "reason": reason})).collect::<Vec<_>>(),
    })
}

/// Resolves `--at` to heads.
pub fn heads_for(ctx: &Ctx, doc: &Automerge, at: &str) -> Result<Vec<ChangeHash>> {
    if at.len() >= 4
        && at.chars().all(|c| c.is_ascii_hexdigit())
        && let Ok(heads) = history::heads_at_rev(doc, at)
    {
        return Ok(heads);
    }
    let moment = match crate::norms::Moment::parse(at, &ctx.out.tz) {
        Ok(_) => crate::norms::parse_past(at, crate::node::now(), &ctx.out.tz)?,
        Err(_) => crate::fail!(
            Usage,
            "`{at}` is neither a revision of this document (see `meridian log`) nor a date or duration (2d means 2 days ago)"
        ),
    };
    let heads = history::heads_at_time(doc, moment.as_millisecond());
    if heads.is_empty() {
        // Its first change, to the second: a time in the same minute is before it.
        let first = doc
            .get_changes(&[])
            .first()
            .map(|c| c.timestamp())
            .unwrap_or_default();
        let created = jiff::Timestamp::from_millisecond(first)
            .map(|t| {
                t.to_zoned_datetime(ctx.out.tz.clone())
                    .strftime("%a %Y-%m-%d %H:%M:%S %Z")
                    .to_string()
            })
            .unwrap_or_default();
        crate::fail!(
            NotFound,
            "the document did not exist yet at {}: it was created {created} (`meridian log` lists its revisions)",
            ctx.out.time(moment.as_millisecond())
        );
    }
    Ok(heads)
}

pub fn show(ctx: &Ctx, prefix: &str, at: Option<&str>, mark: bool) -> Result<()> {
    let (id, summary) = ctx.node.resolve(ctx.workspace, prefix)?;
    let result = show_doc(ctx, id, &summary, at);
    // Showing the document as it stands is reading it (written only when it changes: a
    // write costs a command that only reads its durable commit).
    let read = ctx.node.read_marker(id)?.map(|mut heads| {
        heads.sort();
        heads
    });
    let mut heads = summary.heads.clone();
    heads.sort();
    if result.is_ok() && mark && at.is_none() && read.as_ref() != Some(&heads) {
        ctx.node.mark_read_many(&[(id, summary.heads.clone())])?;
    }
    result
}

fn show_doc(ctx: &Ctx, id: Id, summary: &DocSummary, at: Option<&str>) -> Result<()> {
    let summary = summary.clone();
    let doc = ctx.node.load(ctx.workspace, id)?;
    let heads = match at {
        Some(at) => Some(heads_for(ctx, &doc, at)?),
        None => None,
    };
    let view = match &heads {
        Some(h) => View::at(&doc, h),
        None => View::now(&doc),
    };
    // What changed since my last read, only when looking at the present.
    let since = match (&heads, ctx.node.read_marker(id)?) {
        (None, Some(marker)) => {
            let marker = parse_heads(&marker);
            let mut now = doc.get_heads();
            now.sort();
            let mut sorted = marker.clone();
            sorted.sort();
            (sorted != now).then(|| Since::between(ctx, View::at(&doc, &marker), view))
        }
        _ => None,
    };
    let conflicts = history::conflicts(view);
    if ctx.out.json {
        let mut value = document_json(ctx, id, summary.kind, view, &summary)?;
        value["changed_since_read"] = match &since {
            Some(since) => since.json(ctx, summary.kind),
            None => Json::Null,
        };
        ctx.out.print_json(&value)?;
        return Ok(());
    }
    match summary.kind {
        Kind::Proposal => show_proposal(ctx, id, view, &summary, since.as_ref(), &conflicts)?,
        Kind::Thread => show_thread(ctx, id, view, &summary, since.as_ref(), &conflicts)?,
        Kind::Update => show_update(ctx, id, view, since.as_ref())?,
        Kind::Workspace => bail!(
            "that is the workspace document: see `meridian member list` and `meridian workspace norms`"
        ),
    }
    print_removals(ctx, &summary, view)
}

/// Says who of the people who wrote in a document were removed from the workspace, when
/// and by whom (nothing is read unless someone was removed).
fn print_removals(ctx: &Ctx, summary: &DocSummary, view: View<'_>) -> Result<()> {
    if !ctx.record.state.members.iter().any(|m| m.removed) {
        return Ok(());
    }
    let mut people = vec![summary.author.clone()];
    for comment in crate::discussion::comments(view) {
        if !people.contains(&comment.by) {
            people.push(comment.by);
        }
    }
    let removed: Vec<String> = people
        .iter()
        .filter_map(|id| {
            Some(format!(
                "{} was {}",
                ctx.name(id),
                super::removal_text(ctx, id)?
            ))
        })
        .collect();
    if !removed.is_empty() {
        say!(ctx.out);
    }
    for line in removed {
        say!(
            ctx.out,
            "{}",
            ctx.out.paint(Tone::Alarm, &format!("{line}."))
        );
    }
    Ok(())
}

/// A document as JSON, as `show --json` and `export --format json` print it.
pub fn document_json(
    ctx: &Ctx,
    id: Id,
    kind: Kind,
    view: View<'_>,
    summary: &DocSummary,
) -> Result<Json> {
    let conflicts = conflicts_json(ctx, &history::conflicts(view));
    Ok(match kind {
        Kind::Proposal => {
            let p = proposal::read(view);
            let now = crate::node::now_ms();
            json!({
                "id": id.hex(), "kind": "proposal", "title": p.title, "template": p.template,
                "state": p.lifecycle.state.name(), "lifecycle": lifecycle_json(&p.lifecycle),
                "closes": p.lifecycle.state.closes().map(|c| ctx.out.rfc3339(c)),
                "author": ctx.person(&p.author), "created": ctx.out.rfc3339(p.created),
                "urgency": p.urgency,
                "sections": p.sections.iter().map(|(n, t)| json!({"name": n, "text": t})).collect::<Vec<_>>(),
                "deciders": p.deciders.iter().map(|d| ctx.person(d)).collect::<Vec<_>>(),
                "approvals": p.approvals.iter().map(|a| json!({"entry_id": a.entry.id, "by": ctx.person(&a.entry.by), "time": ctx.out.rfc3339(a.entry.at), "stale": a.stale, "message": a.entry.message})).collect::<Vec<_>>(),
                "concerns": p.concerns.iter().map(|c| json!({
                    "entry_id": c.entry.id, "by": ctx.person(&c.entry.by), "time": ctx.out.rfc3339(c.entry.at),
                    "message": c.entry.message, "blocking": c.entry.blocking, "resolved": c.resolved.is_some(),
                    "resolution": c.resolved.as_ref().map(|r| json!({
                        "by": ctx.person(&r.by), "time": ctx.out.rfc3339(r.at), "note": r.message,
                    })),
                })).collect::<Vec<_>>(),
                "obstacles": p.obstacles(now).iter().map(|o| obstacle_json(ctx, o)).collect::<Vec<_>>(),
                "asks": asks_json(ctx, &p.asks, &summary.asks),
                "comments": comments_json(ctx, &p.comments),
                "conflicts": conflicts,
                "decided_at": p.decided_at, "late_edits": p.late_edits,
            })
        }
        Kind::Thread => {
            let t = thread::read(view);
            json!({
                "id": id.hex(), "kind": "thread", "title": t.title, "state": t.lifecycle.state.name(),
                "lifecycle": lifecycle_json(&t.lifecycle),
                "author": ctx.person(&t.author), "created": ctx.out.rfc3339(t.created),
                "body": t.body, "urgency": t.urgency, "asks": asks_json(ctx, &t.asks, &summary.asks),
                "comments": comments_json(ctx, &t.comments), "conflicts": conflicts,
            })
        }
        Kind::Update => {
            let u = update::read(view);
            json!({
                "id": id.hex(), "kind": "update", "title": u.title, "author": ctx.person(&u.author),
                "created": ctx.out.rfc3339(u.created), "period": u.period, "done": u.done, "next": u.next,
                "blockers": u.blockers, "links": u.links, "comments": comments_json(ctx, &u.comments),
            })
        }
        Kind::Workspace => bail!("that is the workspace document: see `meridian member list`"),
    })
}

fn comments_json(ctx: &Ctx, comments: &[Comment]) -> Json {
    json!(comments
        .iter()
        .map(|c| json!({
            "comment_id": c.id, "parent": c.parent, "by": ctx.person(&c.by),
            "time": ctx.out.rfc3339(c.at), "body": c.body,
            "edited": c.edited.map(|t| ctx.out.rfc3339(t)), "deleted": c.deleted,
            "reactions": c.reactions.iter().map(|(e, who)| (e.clone(), json!(who.iter().map(|w| ctx.person(w)).collect::<Vec<_>>()))).collect::<serde_json::Map<_, _>>(),
        }))
        .collect::<Vec<_>>())
}

fn asks_json(ctx: &Ctx, asks: &[Ask], summary_asks: &[AskSummary]) -> Json {
    let now = crate::node::now().as_millisecond();
    json!(asks
        .iter()
        .map(|a| {
            let summary = summary_asks
                .iter()
                .find(|s| s.member == a.member && s.by == a.by && s.at == a.at);
            let rungs = summary.map(|s| inbox::escalation(s, &ctx.record.state, now)).unwrap_or_default();
            let responded = summary.and_then(|s| s.responded);
            json!({
                "member": ctx.person(&a.member), "urgency": a.urgency,
                "asked_by": ctx.person(&a.by), "asked_at": ctx.out.rfc3339(a.at),
                "deadline": rungs.first().map(|r| ctx.out.rfc3339(r.deadline)),
                "responded": responded.map(|r| ctx.out.rfc3339(r)),
                "declined": summary.and_then(|s| s.declined.as_ref()).map(|(at, why)| json!({"time": ctx.out.rfc3339(*at), "why": why})),
                "overdue": responded.is_none() && rungs.first().is_some_and(|r| now > r.deadline),
                "escalated_to": rungs.iter().skip(1).map(|r| json!({"member": ctx.person(&r.member), "deadline": ctx.out.rfc3339(r.deadline)})).collect::<Vec<_>>(),
            })
        })
        .collect::<Vec<_>>())
}

fn state_text(ctx: &Ctx, id: Id, lifecycle: &Lifecycle) -> String {
    match &lifecycle.state {
        State::Open { closes: Some(c) } | State::FinalComment { closes: Some(c) } => {
            let verb = if *c < crate::node::now().as_millisecond() {
                "closed"
            } else {
                "closes"
            };
            format!("{} ({verb} {})", lifecycle.state.name(), ctx.out.time(*c))
        }
        State::Superseded { by } => format!("superseded by {}", crate::id::prefix(by, 8)),
        State::Conflict { candidates } => format!(
            "{}: {} (settle with `meridian resolve {} state STATE`)",
            ctx.out.paint(Tone::Alarm, "CONFLICT"),
            candidates
                .iter()
                .map(|(s, _)| s.as_str())
                .collect::<Vec<_>>()
                .join(" vs "),
            id.short()
        ),
        other => other.name().to_string(),
    }
}

/// A document's title, and who wrote it when.
fn print_title(ctx: &Ctx, title: &str, author: &str, created: i64) -> Result<()> {
    say!(ctx.out, "# {title}");
    say!(
        ctx.out,
        "by {} · {}",
        ctx.name(author),
        ctx.out.time(created)
    );
    Ok(())
}

/// What changed in a document since the reader last read it: the events in words, and
/// which comments and fields are new to them, to mark in place.
struct Since {
    events: Vec<inbox::Event>,
    comments: std::collections::BTreeSet<String>,
    fields: std::collections::BTreeSet<String>,
}

impl Since {
    fn between(ctx: &Ctx, before: View<'_>, now: View<'_>) -> Since {
        let events = inbox::events(Some(before), now, &ctx.me);
        let comments = discussion::comments_added(before, now)
            .into_iter()
            .filter(|c| c.by != ctx.me)
            .map(|c| c.id)
            .collect();
        let fields = events
            .iter()
            .filter_map(|e| match e {
                inbox::Event::Edited { field, .. } => Some(field.clone()),
                _ => None,
            })
            .collect();
        Since {
            events,
            comments,
            fields,
        }
    }

    fn json(&self, ctx: &Ctx, kind: Kind) -> Json {
        json!(
            self.events
                .iter()
                .map(|e| {
                    let mut value = serde_json::to_value(e).unwrap_or(Json::Null);
                    super::inbox::person_fields(&ctx.out, &ctx.record.state, &mut value);
                    value["text"] = json!(super::inbox::event_text(
                        &ctx.record.state,
                        &ctx.me,
                        kind,
                        e
                    ));
                    value
                })
                .collect::<Vec<_>>()
        )
    }

    fn edited(since: Option<&Since>, field: &str) -> &'static str {
        if since.is_some_and(|s| s.fields.contains(field)) {
            "  (edited since you read it)"
        } else {
            ""
        }
    }
}

fn print_since_read(ctx: &Ctx, kind: Kind, since: Option<&Since>) -> Result<()> {
    let Some(since) = since.filter(|s| !s.events.is_empty()) else {
        return Ok(());
    };
    say!(ctx.out, "Since you last read it:");
    for event in &since.events {
        say!(
            ctx.out,
            "  {}",
            super::inbox::event_text(&ctx.record.state, &ctx.me, kind, event)
        );
    }
    say!(ctx.out);
    Ok(())
}

fn print_comments(ctx: &Ctx, doc: Id, comments: &[Comment], since: Option<&Since>) -> Result<()> {
    fn walk(
        ctx: &Ctx,
        (doc, since): (Id, Option<&Since>),
        comments: &[Comment],
        parent: Option<&str>,
        depth: usize,
    ) -> Result<()> {
        for c in comments.iter().filter(|c| c.parent.as_deref() == parent) {
            let indent = "  ".repeat(depth.min(12));
            let mut mark = match (c.deleted, c.edited) {
                (true, _) => " · deleted".to_string(),
                (false, Some(at)) => format!(" · edited {}", ctx.out.time(at)),
                _ => String::new(),
            };
            if since.is_some_and(|s| s.comments.contains(&c.id)) {
                mark.push_str(&format!("  {}", ctx.out.paint(Tone::Good, "NEW")));
            }
            say!(
                ctx.out,
                "{indent}[{}:{}] {} · {}{mark}",
                doc.short(),
                crate::id::prefix(&c.id, 8),
                ctx.name(&c.by),
                ctx.out.time(c.at)
            );
            for line in c.body.lines() {
                say!(ctx.out, "{indent}  {line}");
            }
            if !c.reactions.is_empty() {
                let reactions: Vec<String> = c
                    .reactions
                    .iter()
                    .map(|(e, who)| format!("{e} {}", who.len()))
                    .collect();
                say!(ctx.out, "{indent}  {}", reactions.join("  "));
            }
            walk(ctx, (doc, since), comments, Some(&c.id), depth + 1)?;
        }
        Ok(())
    }
    // Replies whose parent is unknown (never merged) are shown at the top level.
    let known: std::collections::BTreeSet<&str> = comments.iter().map(|c| c.id.as_str()).collect();
    let orphans: Vec<Comment> = comments
        .iter()
        .filter(|c| c.parent.as_deref().is_some_and(|p| !known.contains(p)))
        .map(|c| Comment {
            parent: None,
            ..c.clone()
        })
        .collect();
    let mut all: Vec<Comment> = comments
        .iter()
        .filter(|c| !orphans.iter().any(|o| o.id == c.id))
        .cloned()
        .collect();
    all.extend(orphans);
    all.sort_by(|a, b| (a.at, &a.id).cmp(&(b.at, &b.id)));
    if !all.is_empty() {
        say!(ctx.out, "\nDiscussion:");
        walk(ctx, (doc, since), &all, None, 1)?;
    }
    Ok(())
}

fn print_asks(ctx: &Ctx, asks: &[Ask], summary_asks: &[AskSummary]) -> Result<()> {
    let now = crate::node::now().as_millisecond();
    for ask in asks {
        let summary = summary_asks
            .iter()
            .find(|s| s.member == ask.member && s.by == ask.by && s.at == ask.at);
        let responded = summary.and_then(|s| s.responded);
        let rungs = summary
            .map(|s| inbox::escalation(s, &ctx.record.state, now))
            .unwrap_or_default();
        let declined = summary.and_then(|s| s.declined.clone());
        let status = match (responded, rungs.first()) {
            (Some(at), _) => format!("responded {}", ctx.out.time(at)),
            (None, _) if declined.is_some() => {
                let (at, why) = declined.clone().unwrap_or_default();
                let why = if why.is_empty() {
                    String::new()
                } else {
                    format!(": {}", super::printable(&why))
                };
                format!("declined {}{why}", ctx.out.time(at))
            }
            (None, None) => "no deadline".to_string(),
            (None, Some(r)) if now > r.deadline => {
                format!(
                    "{} since {}",
                    ctx.out.paint(Tone::Alarm, "OVERDUE"),
                    ctx.out.time(r.deadline)
                )
            }
            (None, Some(r)) => format!("due {}", ctx.out.time(r.deadline)),
        };
        say!(
            ctx.out,
            "  asked {} ({}): {status}",
            ctx.name(&ask.member),
            ask.urgency
        );
        if responded.is_none() {
            for rung in rungs.iter().skip(1) {
                say!(
                    ctx.out,
                    "    escalated to {}: due {}",
                    ctx.name(&rung.member),
                    ctx.out.time(rung.deadline)
                );
            }
        }
    }
    Ok(())
}

fn print_conflicts(ctx: &Ctx, conflicts: &[history::Conflict]) -> Result<()> {
    for conflict in conflicts.iter().filter(|c| c.field != "state") {
        let values: Vec<String> = conflict
            .values
            .iter()
            .map(|v| format!("{:?} by {}", v.value, ctx.name(&v.author)))
            .collect();
        say!(
            ctx.out,
            "{} in {}: {}",
            ctx.out.paint(Tone::Alarm, "CONFLICT"),
            conflict.field,
            values.join(" vs ")
        );
    }
    Ok(())
}

fn conflicts_json(ctx: &Ctx, conflicts: &[history::Conflict]) -> Json {
    json!(conflicts
        .iter()
        .map(|c| json!({"field": c.field, "values": c.values.iter().map(|v| json!({"value": v.value, "by": ctx.person(&v.author)})).collect::<Vec<_>>()}))
        .collect::<Vec<_>>())
}

fn show_proposal(
    ctx: &Ctx,
    id: Id,
    view: View<'_>,
    summary: &DocSummary,
    since: Option<&Since>,
    conflicts: &[history::Conflict],
) -> Result<()> {
    let p = proposal::read(view);
    say!(
        ctx.out,
        "{} · {} · {}",
        id.short(),
        p.template,
        state_text(ctx, id, &p.lifecycle)
    );
    print_title(ctx, &p.title, &p.author, p.created)?;
    // Who decided it, when, and why: the transition the state stands on.
    if proposal::DECIDED.contains(&p.lifecycle.state.name())
        && let Some(entry) = p
            .entries
            .iter()
            .rev()
            .find(|e| p.lifecycle.tips.contains(&e.id))
    {
        let mut state = p.lifecycle.state.name().to_string();
        if let Some(first) = state.get_mut(0..1) {
            first.make_ascii_uppercase();
        }
        let why = if entry.message.is_empty() {
            String::new()
        } else {
            format!(": {}", super::printable(&entry.message))
        };
        say!(
            ctx.out,
            "{} by {}, {}{why}",
            ctx.out.paint(Tone::Good, &state),
            ctx.name(&entry.by),
            ctx.out.time(entry.at)
        );
    }
    if !p.late_edits.is_empty() {
        say!(
            ctx.out,
            "Note: {} changed concurrently with the decision, by someone who had not seen it. The {} text is shown; `meridian diff {} REV` shows the later edits.",
            p.late_edits.join(", "),
            p.lifecycle.state.name(),
            id.short()
        );
    }
    print_conflicts(ctx, conflicts)?;
    for (entry, reason) in &p.lifecycle.ignored {
        say!(
            ctx.out,
            "  (ignored transition {}: {reason})",
            crate::id::prefix(entry, 8)
        );
    }
    say!(ctx.out);
    print_since_read(ctx, Kind::Proposal, since)?;
    for (name, text) in &p.sections {
        let edited = Since::edited(since, &format!("section {name}"));
        say!(ctx.out, "## {name}{edited}\n");
        if text.trim().is_empty() {
            say!(ctx.out, "(empty)\n");
        } else {
            say!(ctx.out, "{}\n", text.trim_end());
        }
    }
    let obstacles = p.obstacles(crate::node::now_ms());
    if matches!(
        p.lifecycle.state,
        State::Open { .. } | State::FinalComment { .. }
    ) {
        if obstacles.is_empty() {
            say!(
                ctx.out,
                "Ready to accept: the period closed, every decider approved this text, no blocking concern is open."
            );
        } else {
            say!(ctx.out, "Before it can be accepted:");
            let name = |m: &str| ctx.reader_name(m);
            let time = |t: i64| ctx.out.time(t);
            for obstacle in &obstacles {
                say!(ctx.out, "  - {}", obstacle.describe(&name, &time));
            }
        }
        say!(ctx.out);
    }
    say!(ctx.out, "Deciders:");
    for decider in &p.deciders {
        let approval = p.approvals.iter().rev().find(|a| &a.entry.by == decider);
        let status = match approval {
            Some(a) if a.stale => format!(
                "approved {} — {}: the text changed since",
                ctx.out.time(a.entry.at),
                ctx.out.paint(Tone::Alarm, "STALE")
            ),
            Some(a) => format!("approved {}", ctx.out.time(a.entry.at)),
            None => "not yet approved".into(),
        };
        say!(ctx.out, "  {}: {status}", ctx.name(decider));
    }
    let others: Vec<_> = p
        .approvals
        .iter()
        .filter(|a| !p.deciders.contains(&a.entry.by))
        .collect();
    for a in others {
        say!(
            ctx.out,
            "  {} approved{} too (not a decider)",
            ctx.name(&a.entry.by),
            if a.stale { " (stale)" } else { "" }
        );
    }
    // The changes since each approver's latest approval, when it is stale: one diff per
    // version approved, naming everyone who approved that version.
    let mut latest: Vec<&proposal::Approval> = Vec::new();
    for approval in p.approvals.iter().rev() {
        if !latest.iter().any(|a| a.entry.by == approval.entry.by) {
            latest.push(approval);
        }
    }
    // Each version approved (its sections) with the names of who approved it.
    type Version = (Vec<(String, String)>, Vec<String>);
    let mut stale: Vec<Version> = Vec::new();
    for approval in latest.into_iter().rev().filter(|a| a.stale) {
        let then = proposal::sections(View::at(view.doc, &approval.entry.heads()));
        let name = ctx.name(&approval.entry.by);
        match stale.iter_mut().find(|(text, _)| *text == then) {
            Some((_, names)) => names.push(name),
            None => stale.push((then, vec![name])),
        }
    }
    for (then, names) in stale {
        let whose: Vec<String> = names.iter().map(|n| format!("{n}'s")).collect();
        say!(ctx.out, "\nChanges since {} approval:", whose.join(" and "));
        for (name, text) in &p.sections {
            let before = then
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, t)| t.as_str())
                .unwrap_or("");
            if before != text {
                say!(ctx.out, "  ## {name}");
                for line in history::text_diff(before, text)
                    .lines()
                    .filter(|l| !l.starts_with(' '))
                {
                    say!(ctx.out, "  {line}");
                }
            }
        }
    }
    if !p.concerns.is_empty() {
        say!(ctx.out, "\nConcerns:");
        for c in &p.concerns {
            let status = match (c.resolved.is_some(), c.entry.blocking) {
                (true, true) => "blocking, resolved".to_string(),
                (true, false) => "resolved".to_string(),
                (false, true) => ctx.out.paint(Tone::Alarm, "BLOCKING"),
                (false, false) => "open".to_string(),
            };
            // The same id form as comments: `meridian reply DOC:CONCERN` answers it.
            say!(
                ctx.out,
                "  [{}:{}] {} · {} · {status}",
                id.short(),
                crate::id::prefix(&c.entry.id, 8),
                ctx.name(&c.entry.by),
                ctx.out.time(c.entry.at),
            );
            say!(ctx.out, "    {}", c.entry.message);
            if let Some(resolved) = &c.resolved {
                let by = if resolved.by == c.entry.by {
                    format!("{} resolved it", ctx.name(&resolved.by))
                } else {
                    format!("Resolved by {} (the author)", ctx.name(&resolved.by))
                };
                let note = if resolved.message.is_empty() {
                    String::new()
                } else {
                    format!(": {}", resolved.message)
                };
                say!(ctx.out, "    {by}, {}{note}", ctx.out.time(resolved.at));
            }
            for reply in p
                .comments
                .iter()
                .filter(|r| r.parent.as_deref() == Some(c.entry.id.as_str()))
            {
                say!(
                    ctx.out,
                    "      [{}:{}] {} · {}: {}",
                    id.short(),
                    crate::id::prefix(&reply.id, 8),
                    ctx.name(&reply.by),
                    ctx.out.time(reply.at),
                    comment_text(reply)
                );
            }
        }
    }
    if !p.asks.is_empty() {
        say!(ctx.out, "\nResponses requested:");
        print_asks(ctx, &p.asks, &summary.asks)?;
    }
    // Replies to concerns were shown with them.
    let concerns: Vec<&str> = p.concerns.iter().map(|c| c.entry.id.as_str()).collect();
    let discussion: Vec<Comment> = p
        .comments
        .iter()
        .filter(|c| !c.parent.as_deref().is_some_and(|p| concerns.contains(&p)))
        .cloned()
        .collect();
    print_comments(ctx, id, &discussion, since)?;
    Ok(())
}

/// A comment's text as shown, or a note that it was deleted.
fn comment_text(comment: &Comment) -> String {
    if comment.deleted {
        "(deleted)".into()
    } else if comment.edited.is_some() {
        format!("{} (edited)", comment.body.trim_end())
    } else {
        comment.body.trim_end().to_string()
    }
}

fn show_thread(
    ctx: &Ctx,
    id: Id,
    view: View<'_>,
    summary: &DocSummary,
    since: Option<&Since>,
    conflicts: &[history::Conflict],
) -> Result<()> {
    let t = thread::read(view);
    let state = match t.lifecycle.state {
        State::Open { .. } => "open".to_string(),
        _ => state_text(ctx, id, &t.lifecycle),
    };
    say!(ctx.out, "{} · thread · {state}", id.short());
    print_title(ctx, &t.title, &t.author, t.created)?;
    print_conflicts(ctx, conflicts)?;
    say!(ctx.out);
    print_since_read(ctx, Kind::Thread, since)?;
    if !t.body.trim().is_empty() {
        say!(ctx.out, "{}", t.body.trim_end());
    }
    if !t.asks.is_empty() {
        say!(ctx.out, "\nResponses requested:");
        print_asks(ctx, &t.asks, &summary.asks)?;
    }
    print_comments(ctx, id, &t.comments, since)?;
    Ok(())
}

fn show_update(ctx: &Ctx, id: Id, view: View<'_>, since: Option<&Since>) -> Result<()> {
    let u = update::read(view);
    say!(ctx.out, "{} · status update · {}", id.short(), u.period);
    print_title(ctx, &u.title, &u.author, u.created)?;
    say!(ctx.out);
    print_since_read(ctx, Kind::Update, since)?;
    for (label, text) in [
        ("Done:", &u.done),
        ("Next:", &u.next),
        ("Blockers:", &u.blockers),
    ] {
        if !text.trim().is_empty() {
            say!(ctx.out, "{}", ctx.out.paint(super::Tone::Heading, label));
            for line in text.trim_end().lines() {
                say!(ctx.out, "  {line}");
            }
            say!(ctx.out);
        }
    }
    if !u.links.is_empty() {
        say!(ctx.out, "{}", ctx.out.paint(super::Tone::Heading, "About:"));
        for link in &u.links {
            let short = ctx.out.paint(super::Tone::Id, crate::id::prefix(link, 8));
            match ctx.node.resolve(ctx.workspace, link) {
                Ok((_, s)) => say!(
                    ctx.out,
                    "  {short} \"{}\" · {} · {}",
                    super::printable(&s.title),
                    s.kind.as_str(),
                    s.state
                ),
                Err(_) => say!(ctx.out, "  {short} (not on this device yet)"),
            }
        }
    }
    print_comments(ctx, id, &u.comments, since)?;
    Ok(())
}

/// `meridian read ID...`: marks each document read as it stands.
pub fn mark_read(ctx: &Ctx, prefixes: &[String]) -> Result<()> {
    let mut marks = Vec::new();
    let mut read = Vec::new();
    for prefix in prefixes {
        let (id, summary) = ctx.document(prefix)?;
        read.push(json!({"id": id.hex(), "kind": summary.kind.as_str(), "title": summary.title}));
        marks.push((id, summary.heads));
    }
    ctx.node.mark_read_many(&marks)?;
    ctx.out.done(json!({ "read": read }))?;
    match marks.as_slice() {
        [(id, _)] => said!(ctx.out, "Marked {} read.", id.short()),
        _ => said!(ctx.out, "Marked {} documents read.", marks.len()),
    }
    Ok(())
}

/// `meridian update list`: each update with what it says, newest first; on a terminal each
/// part is wrapped to the width and cut after a few lines.
pub fn updates(ctx: &Ctx, limit: Option<usize>) -> Result<()> {
    let mut all = crate::app::updates::list(ctx)?;
    all.truncate(limit.unwrap_or(usize::MAX));
    if ctx.out.json {
        // What every list prints of a document, and what the update says.
        let summaries: std::collections::HashMap<Id, DocSummary> =
            ctx.node.summaries(ctx.workspace)?.into_iter().collect();
        let list: Vec<Json> = all
            .iter()
            .filter_map(|(id, u)| {
                let mut value = summary_json(ctx, *id, summaries.get(id)?);
                value["period"] = json!(u.period);
                value["done"] = json!(u.done);
                value["next"] = json!(u.next);
                value["blockers"] = json!(u.blockers);
                value["links"] = json!(u.links);
                value["comments"] = json!(u.comments.len());
                Some(value)
            })
            .collect();
        return ctx.out.print_json(&json!(list));
    }
    if all.is_empty() {
        return say_empty(ctx, Kind::Update, None);
    }
    let width = ctx.out.width(80).map(|w| w.clamp(40, 120));
    for (i, (id, u)) in all.iter().enumerate() {
        if i > 0 {
            say!(ctx.out);
        }
        say!(
            ctx.out,
            "{}  {}  {}",
            ctx.out.paint(Tone::Id, &id.short()),
            ctx.out.paint(
                Tone::Heading,
                &format!("{} · {}", ctx.reader_name(&u.author), u.period)
            ),
            ctx.out.paint(Tone::Dim, &ctx.out.time(u.created))
        );
        for (label, text) in [
            ("Done", &u.done),
            ("Next", &u.next),
            ("Blockers", &u.blockers),
        ] {
            if text.trim().is_empty() {
                continue;
            }
            let lines = excerpt(text, width.map(|w| w.saturating_sub(12)), 3);
            for (k, line) in lines.iter().enumerate() {
                let label = if k == 0 { label } else { "" };
                let tone = if label == "Blockers" {
                    Tone::Alarm
                } else {
                    Tone::Dim
                };
                // Padded before it is painted: colour codes have no width.
                say!(
                    ctx.out,
                    "  {}{line}",
                    ctx.out.paint(tone, &format!("{label:<10}"))
                );
            }
        }
        let replies = u.comments.len();
        if replies > 0 {
            say!(
                ctx.out,
                "  {}",
                ctx.out.paint(
                    Tone::Dim,
                    &format!("{replies} repl{}", if replies == 1 { "y" } else { "ies" })
                )
            );
        }
    }
    Ok(())
}

/// Text as lines: as they are without a width, else wrapped at `width` and cut after
/// `most` lines with an ellipsis.
fn excerpt(text: &str, width: Option<usize>, most: usize) -> Vec<String> {
    let Some(width) = width else {
        return text.trim_end().lines().map(str::to_string).collect();
    };
    let width = width.max(20);
    let mut lines = Vec::new();
    for line in text.trim_end().lines() {
        let mut current = String::new();
        for word in line.split_whitespace() {
            let fits = current.chars().count() + 1 + word.chars().count() <= width;
            if !current.is_empty() && !fits {
                lines.push(std::mem::take(&mut current));
            }
            if !current.is_empty() {
                current.push(' ');
            }
            current.push_str(word);
        }
        lines.push(current);
    }
    if lines.len() > most {
        lines.truncate(most);
        if let Some(last) = lines.last_mut() {
            last.push_str(" …");
        }
    }
    lines
}

/// `meridian update missing`: who has not posted for the week they are in.
pub fn missing_updates(ctx: &Ctx) -> Result<()> {
    let all = crate::app::updates::list(ctx)?;
    let missing = crate::app::updates::missing(ctx, &all, crate::node::now());
    if ctx.out.json {
        let list: Vec<Json> = missing
            .iter()
            .map(|m| json!({ "member": ctx.person(&m.member), "period": m.period, "away": m.away }))
            .collect();
        return ctx.out.print_json(&json!(list));
    }
    if missing.is_empty() {
        say!(
            ctx.out,
            "Everyone in {} has posted an update for their week.",
            ctx.record.name
        );
        return Ok(());
    }
    let mut table = Table::new(&["MEMBER", "WEEK", "LOCAL TIME", "NOTE"]);
    for m in &missing {
        let member = ctx.record.state.member(&m.member);
        let local = member.map_or(String::new(), |member| {
            crate::norms::show_time(crate::node::now_ms(), &member.calendar().tz)
        });
        table.row(vec![
            Cell::new(ctx.reader_name(&m.member)),
            Cell::new(&m.period),
            Cell::toned(local, Tone::Dim),
            Cell::new(if m.away { "away" } else { "" }),
        ]);
    }
    table.print(&ctx.out)?;
    Ok(())
}
