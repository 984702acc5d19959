//! Writing commands: proposals and their lifecycle, threads, replies, reactions, updates.

use anyhow::{Context, Result, bail};
use automerge::ROOT;
use serde_json::json;

use super::{Ctx, ProposalCommand, ThreadCommand, UpdateCommand, edit_in_editor, read_text};
use crate::discussion::{self, Entry};
use crate::doc::{Kind, View};
use crate::id::{Id, resolve_prefix};
use crate::node::{commit, now_ms};
use crate::norms::{DEFAULT_URGENCY, parse_moment};
use crate::proposal::{self, NewProposal};
use crate::thread::{self, NewThread};
use crate::update::{self, NewUpdate};

pub fn proposal(ctx: &Ctx, command: ProposalCommand) -> Result<()> {
    match command {
        ProposalCommand::New {
            title,
            template,
            sections,
            body_file,
            asks,
            deciders,
            urgency,
        } => new_proposal(
            ctx, title, template, sections, body_file, asks, deciders, urgency,
        ),
        ProposalCommand::List { state } => super::read::list(ctx, Kind::Proposal, state.as_deref()),
        ProposalCommand::Edit {
            id,
            section,
            file,
            title,
        } => edit(ctx, &id, section, file, title),
        ProposalCommand::Open { id, closes } => {
            let closes = parse_moment(&closes, crate::node::now(), &ctx.out.tz)?.as_millisecond();
            transition(ctx, &id, "open", |e| e.closes = Some(closes))
        }
        ProposalCommand::FinalComment { id, closes } => {
            let closes = parse_moment(&closes, crate::node::now(), &ctx.out.tz)?.as_millisecond();
            transition(ctx, &id, "final-comment", |e| e.closes = Some(closes))
        }
        ProposalCommand::Approve { id, message } => feedback(ctx, &id, "approve", |e| {
            e.message = message.unwrap_or_default()
        }),
        ProposalCommand::Concern {
            id,
            message,
            blocking,
        } => feedback(ctx, &id, "concern", |e| {
            e.message = message;
            e.blocking = blocking;
        }),
        ProposalCommand::Resolve { id, concern } => resolve_concern(ctx, &id, &concern),
        ProposalCommand::Accept(d) => transition(ctx, &d.id, "accept", |e| {
            e.message = d.message.unwrap_or_default()
        }),
        ProposalCommand::Reject(d) => transition(ctx, &d.id, "reject", |e| {
            e.message = d.message.unwrap_or_default()
        }),
        ProposalCommand::Withdraw(d) => transition(ctx, &d.id, "withdraw", |e| {
            e.message = d.message.unwrap_or_default()
        }),
        ProposalCommand::Supersede { id, by } => {
            let (by, summary) = ctx.node.resolve(ctx.workspace, &by)?;
            if summary.kind != Kind::Proposal {
                bail!(
                    "{} is a {}, not a proposal: a proposal is superseded by another proposal",
                    by.short(),
                    summary.kind.as_str()
                );
            }
            transition(ctx, &id, "supersede", |e| e.target = by.hex())
        }
    }
}

fn member_ids(ctx: &Ctx, names: &[String], role: &str) -> Result<Vec<String>> {
    ctx.record.state.find_active(names, role)
}

fn urgency_level(ctx: &Ctx, urgency: Option<String>) -> Result<String> {
    let urgency = urgency.unwrap_or_else(|| DEFAULT_URGENCY.to_string());
    ctx.record.state.norms().level(&urgency)?;
    Ok(urgency)
}

#[allow(clippy::too_many_arguments)]
fn new_proposal(
    ctx: &Ctx,
    title: String,
    template: String,
    section_args: Vec<String>,
    body_file: Option<std::path::PathBuf>,
    asks: Vec<String>,
    deciders: Vec<String>,
    urgency: Option<String>,
) -> Result<()> {
    if title.trim().is_empty() {
        bail!("the title is empty");
    }
    let mut sections: Vec<(String, String)> = ctx
        .record
        .state
        .template(&template)?
        .into_iter()
        .map(|name| (name, String::new()))
        .collect();
    let mut given = Vec::new();
    if let Some(path) = body_file {
        given.extend(parse_markdown(&read_text(&path)?).1);
    }
    for arg in section_args {
        let (name, text) = arg.split_once('=').with_context(|| {
            format!("`--section {arg}` should be NAME=TEXT, like --section Summary='Use redb'")
        })?;
        given.push((name.trim().to_string(), text.to_string()));
    }
    for (name, text) in proposal::merge_sections(given)? {
        match sections
            .iter_mut()
            .find(|(n, _)| n.eq_ignore_ascii_case(&name))
        {
            Some(section) => section.1 = text,
            None => sections.push((name, text)),
        }
    }
    let deciders = if deciders.is_empty() {
        vec![ctx.me.clone()]
    } else {
        member_ids(ctx, &deciders, "a decider")?
    };
    let new = NewProposal {
        id: Id::random(),
        workspace: ctx.workspace,
        title,
        template,
        sections,
        deciders,
        asks: member_ids(ctx, &asks, "asked")?,
        urgency: urgency_level(ctx, urgency)?,
        author: ctx.me.clone(),
        at: now_ms(),
    };
    let message = format!("new proposal: {}", new.title);
    create(ctx, new.id, &new.title, &message, |tx| {
        proposal::create(tx, &new)
    })
}

/// Writes a new document with `f`, then prints its id.
fn create(
    ctx: &Ctx,
    id: Id,
    title: &str,
    message: &str,
    f: impl FnOnce(&mut automerge::transaction::Transaction<'_>) -> Result<()>,
) -> Result<()> {
    ctx.node.edit(ctx.workspace, id, |doc| {
        let mut tx = doc.transaction();
        f(&mut tx)?;
        commit(tx, message);
        Ok(())
    })?;
    if ctx.out.json {
        ctx.out.print_json(&json!({"id": id.hex()}))?;
    } else {
        say!(ctx.out, "{}  {title}", id.short());
    }
    Ok(())
}

/// Splits Markdown into an optional `# Title` and `## Section` blocks.
pub fn parse_markdown(text: &str) -> (Option<String>, Vec<(String, String)>) {
    let mut title = None;
    let mut sections: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        if let Some(name) = line.strip_prefix("## ") {
            sections.push((name.trim().to_string(), String::new()));
        } else if let (Some(t), true) = (line.strip_prefix("# "), sections.is_empty()) {
            title = Some(t.trim().to_string());
        } else if let Some((_, body)) = sections.last_mut() {
            body.push_str(line);
            body.push('\n');
        }
    }
    for (_, body) in &mut sections {
        let trimmed = body.trim_matches('\n').to_string();
        *body = if trimmed.is_empty() {
            trimmed
        } else {
            trimmed + "\n"
        };
    }
    (title, sections)
}

/// Renders a title and sections as Markdown that [`parse_markdown`] reads back.
pub fn render_markdown(title: &str, sections: &[(String, String)]) -> String {
    let mut out = format!("# {title}\n");
    for (name, text) in sections {
        out.push_str(&format!("\n## {name}\n\n{}", text));
        if !text.is_empty() && !text.ends_with('\n') {
            out.push('\n');
        }
    }
    out
}

fn proposal_id(ctx: &Ctx, prefix: &str) -> Result<Id> {
    let (id, summary) = ctx.node.resolve(ctx.workspace, prefix)?;
    if summary.kind != Kind::Proposal {
        bail!(
            "{} is a {}, not a proposal",
            id.short(),
            summary.kind.as_str()
        );
    }
    Ok(id)
}

fn edit(
    ctx: &Ctx,
    prefix: &str,
    section: Option<String>,
    file: Option<std::path::PathBuf>,
    title: Option<String>,
) -> Result<()> {
    let id = proposal_id(ctx, prefix)?;
    let doc = ctx.node.load(ctx.workspace, id)?;
    let current = proposal::read(View::now(&doc));
    // Work out the new title and sections before touching the store.
    let mut new_title = title;
    let updates: Vec<(String, String)> = match (&section, &file) {
        (Some(name), _) => {
            let existing = current
                .sections
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(n, t)| (n.clone(), t.clone()));
            let (name, old) = existing.unwrap_or_else(|| (name.clone(), String::new()));
            let text = match &file {
                Some(path) => read_text(path)?,
                None => edit_in_editor(&old, &name)?,
            };
            vec![(name, text)]
        }
        (None, Some(path)) => {
            let (t, sections) = parse_markdown(&read_text(path)?);
            if sections.is_empty() {
                bail!(
                    "{} has no `## Section` headings: give --section NAME to set one section from a plain file",
                    path.display()
                );
            }
            new_title = new_title.or(t);
            sections
        }
        (None, None) if new_title.is_some() => Vec::new(),
        (None, None) => {
            let text = edit_in_editor(
                &render_markdown(&current.title, &current.sections),
                "proposal",
            )?;
            let (t, sections) = parse_markdown(&text);
            new_title = t;
            sections
        }
    };
    let changed: Vec<&(String, String)> = updates
        .iter()
        .filter(|(name, text)| {
            current
                .sections
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, t)| t)
                != Some(text)
        })
        .collect();
    let title_changed = new_title.as_ref().is_some_and(|t| *t != current.title);
    if changed.is_empty() && !title_changed {
        if !ctx.out.json {
            warn!(ctx.out, "No changes.");
        }
        ctx.out
            .done(json!({"id": id.hex(), "sections": [], "title_changed": false}))?;
        return Ok(());
    }
    let names: Vec<&str> = changed.iter().map(|(n, _)| n.as_str()).collect();
    ctx.node.edit(ctx.workspace, id, |doc| {
        let mut tx = doc.transaction();
        for (name, text) in &changed {
            proposal::set_section(&mut tx, name, text)?;
        }
        if let Some(title) = new_title.as_ref().filter(|_| title_changed) {
            automerge::transaction::Transactable::put(&mut tx, ROOT, "title", title.as_str())?;
        }
        let what = if names.is_empty() {
            "title".to_string()
        } else {
            names.join(", ")
        };
        commit(tx, &format!("edit {what}"));
        Ok(())
    })?;
    if ctx.out.json {
        ctx.out.print_json(
            &json!({"id": id.hex(), "sections": names, "title_changed": title_changed}),
        )?;
    }
    Ok(())
}

/// Writes a lifecycle transition after checking, as every node will, that it counts.
fn transition(ctx: &Ctx, prefix: &str, kind: &str, fill: impl FnOnce(&mut Entry)) -> Result<()> {
    let id = proposal_id(ctx, prefix)?;
    let me = ctx.me.clone();
    let entry = ctx.node.edit(ctx.workspace, id, |doc| {
        let view = View::now(doc);
        let current = proposal::read(view);
        let mut entry = Entry::new(kind, &me, now_ms());
        entry.prev = current.lifecycle.tips.clone();
        fill(&mut entry);
        let heads = doc.get_heads();
        entry.heads = crate::doc::heads_hex(&heads);
        let mut entries = current.entries.clone();
        entries.push(entry.clone());
        let after = proposal::lifecycle(doc, &entries, &current.deciders, &current.author);
        if let Some((_, reason)) = after.ignored.iter().find(|(e, _)| *e == entry.id) {
            bail!(
                "cannot {kind} {}: {}",
                id.short(),
                explain(reason, &current, ctx)
            );
        }
        write_entry(doc, &entry, &heads)?;
        Ok(entry)
    })?;
    if ctx.out.json {
        ctx.out
            .print_json(&json!({"id": id.hex(), "entry": entry.id, "kind": kind}))?;
    }
    Ok(())
}

/// Commits one entry, its kind (and message) as the change message.
pub(super) fn write_entry(
    doc: &mut automerge::Automerge,
    entry: &Entry,
    heads: &[automerge::ChangeHash],
) -> Result<()> {
    let mut tx = doc.transaction();
    discussion::put_entry(&mut tx, entry, heads)?;
    let message = if entry.message.is_empty() {
        entry.kind.clone()
    } else {
        format!("{}: {}", entry.kind, entry.message)
    };
    commit(tx, &message);
    Ok(())
}

/// Turns member ids in a rule's reason into names and adds what to do.
fn explain(reason: &str, proposal: &proposal::Proposal, ctx: &Ctx) -> String {
    let mut reason = reason.to_string();
    for member in &ctx.record.state.members {
        reason = reason.replace(&member.id, &member.name);
    }
    if reason.contains("not approved") {
        reason.push_str(" (they approve with `meridian proposal approve ID`)");
    } else if reason.contains("blocking concern") {
        reason.push_str(" (resolve it with `meridian proposal resolve ID CONCERN`)");
    } else if reason.contains("period closed") {
        if let Some(closes) = proposal.lifecycle.state.closes() {
            reason.push_str(&format!(": it closes {}", ctx.out.time(closes)));
        }
    } else if reason.contains("from draft") {
        reason.push_str(" (open the comment period first with `meridian proposal open ID`)");
    }
    reason
}

/// Writes an approval or concern.
fn feedback(ctx: &Ctx, prefix: &str, kind: &str, fill: impl FnOnce(&mut Entry)) -> Result<()> {
    let id = proposal_id(ctx, prefix)?;
    let me = ctx.me.clone();
    let entry = ctx.node.edit(ctx.workspace, id, |doc| {
        let state = proposal::read(View::now(doc)).lifecycle.state;
        if matches!(
            state.name(),
            "accepted" | "rejected" | "withdrawn" | "superseded"
        ) {
            bail!(
                "the proposal is {}: it no longer takes {kind}s",
                state.name()
            );
        }
        let mut entry = Entry::new(kind, &me, now_ms());
        fill(&mut entry);
        let heads = doc.get_heads();
        write_entry(doc, &entry, &heads)?;
        Ok(entry)
    })?;
    if ctx.out.json {
        ctx.out.print_json(&json!({"id": entry.id}))?;
    } else if kind == "concern" {
        say!(ctx.out, "{}", &entry.id[..8]);
    }
    Ok(())
}

fn resolve_concern(ctx: &Ctx, prefix: &str, concern: &str) -> Result<()> {
    let id = proposal_id(ctx, prefix)?;
    let me = ctx.me.clone();
    ctx.node
        .edit(ctx.workspace, id, |doc| {
            let current = proposal::read(View::now(doc));
            let found = resolve_prefix(
                "concern",
                concern,
                current
                    .concerns
                    .iter()
                    .map(|c| (c.entry.id.clone(), c.clone())),
            )?;
            if found.resolved.is_some() {
                bail!(
                    "concern {} is already resolved",
                    crate::id::prefix(&found.entry.id, 8)
                );
            }
            if found.entry.by != me && current.author != me {
                bail!(
                    "only the person who raised the concern or the proposal's author may resolve it"
                );
            }
            let mut entry = Entry::new("resolve-concern", &me, now_ms());
            entry.target = found.entry.id.clone();
            let heads = doc.get_heads();
            let mut tx = doc.transaction();
            discussion::put_entry(&mut tx, &entry, &heads)?;
            commit(
                tx,
                &format!("resolve concern {}", crate::id::prefix(&found.entry.id, 8)),
            );
            Ok(entry)
        })
        .and_then(|entry| {
            ctx.out
                .done(json!({"id": entry.id, "concern": entry.target}))
        })
}

pub fn thread(ctx: &Ctx, command: ThreadCommand) -> Result<()> {
    match command {
        ThreadCommand::New {
            title,
            body,
            asks,
            urgency,
        } => {
            if title.trim().is_empty() {
                bail!("the title is empty");
            }
            let body = match body {
                Some(body) => body,
                None if std::env::var_os("EDITOR").is_some()
                    || std::env::var_os("VISUAL").is_some() =>
                {
                    edit_in_editor("", "thread")?
                }
                None => String::new(),
            };
            let new = NewThread {
                id: Id::random(),
                workspace: ctx.workspace,
                title,
                body,
                asks: member_ids(ctx, &asks, "asked")?,
                urgency: urgency_level(ctx, urgency)?,
                author: ctx.me.clone(),
                at: now_ms(),
            };
            let message = format!("new thread: {}", new.title);
            create(ctx, new.id, &new.title, &message, |tx| {
                thread::create(tx, &new)
            })
        }
        ThreadCommand::List => super::read::list(ctx, Kind::Thread, None),
        ThreadCommand::Resolve { id } => thread_transition(ctx, &id, "resolve"),
        ThreadCommand::Reopen { id } => thread_transition(ctx, &id, "reopen"),
    }
}

fn thread_transition(ctx: &Ctx, prefix: &str, kind: &str) -> Result<()> {
    let (id, summary) = ctx.node.resolve(ctx.workspace, prefix)?;
    if summary.kind != Kind::Thread {
        bail!(
            "{} is a {}, not a thread",
            id.short(),
            summary.kind.as_str()
        );
    }
    let me = ctx.me.clone();
    ctx.node.edit(ctx.workspace, id, |doc| {
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
            bail!("cannot {kind} {}: {reason}", id.short());
        }
        let heads = doc.get_heads();
        write_entry(doc, &entry, &heads)
    })?;
    ctx.out.done(
        json!({"id": id.hex(), "state": if kind == "resolve" { "resolved" } else { "open" }}),
    )?;
    Ok(())
}

/// Splits `DOC[:COMMENT]`.
fn split_target(target: &str) -> (&str, Option<&str>) {
    match target.split_once(':') {
        Some((doc, comment)) => (doc, Some(comment)),
        None => (target, None),
    }
}

pub fn reply(ctx: &Ctx, target: &str, message: Option<String>) -> Result<()> {
    let (doc_prefix, comment_prefix) = split_target(target);
    let (id, summary) = ctx.node.resolve(ctx.workspace, doc_prefix)?;
    let body = match message {
        Some(m) => m,
        None => edit_in_editor("", "reply")?,
    };
    if body.trim().is_empty() {
        bail!("the reply is empty: nothing was sent");
    }
    let me = ctx.me.clone();
    let comment_id = Id::random().hex();
    ctx.node.edit(ctx.workspace, id, |doc| {
        let parent = match comment_prefix {
            Some(prefix) => {
                let comments = discussion::comments(View::now(doc));
                Some(resolve_prefix(
                    "comment",
                    prefix,
                    comments.into_iter().map(|c| (c.id.clone(), c.id)),
                )?)
            }
            None => None,
        };
        let mut tx = doc.transaction();
        discussion::put_comment(
            &mut tx,
            &comment_id,
            parent.as_deref(),
            &me,
            now_ms(),
            &body,
        )?;
        let first_line = body.lines().next().unwrap_or_default();
        commit(
            tx,
            &format!("reply: {}", first_line.chars().take(60).collect::<String>()),
        );
        Ok(())
    })?;
    if ctx.out.json {
        ctx.out
            .print_json(&json!({"id": comment_id, "document": id.hex()}))?;
    } else {
        say!(
            ctx.out,
            "{}:{}  reply to {} \"{}\"",
            id.short(),
            &comment_id[..8],
            summary.kind.as_str(),
            summary.title
        );
    }
    Ok(())
}

pub fn react(ctx: &Ctx, target: &str, emoji: &str) -> Result<()> {
    let (doc_prefix, Some(comment_prefix)) = split_target(target) else {
        bail!("react to one comment: give DOCUMENT:COMMENT, as `meridian show` lists them");
    };
    if emoji.trim().is_empty() || emoji.chars().count() > 16 || emoji.contains(' ') {
        bail!("`{emoji}` is not a reaction: give one emoji or a short word without spaces");
    }
    let (id, _) = ctx.node.resolve(ctx.workspace, doc_prefix)?;
    let me = ctx.me.clone();
    ctx.node
        .edit(ctx.workspace, id, |doc| {
            let view = View::now(doc);
            let comments = discussion::comments(view);
            let comment = resolve_prefix(
                "comment",
                comment_prefix,
                comments.into_iter().map(|c| (c.id.clone(), c.id)),
            )?;
            let obj = discussion::comment_obj(view, &comment).context("the comment vanished")?;
            let mut tx = doc.transaction();
            discussion::put_reaction(&mut tx, &obj, emoji, &me, now_ms())?;
            commit(tx, &format!("react {emoji}"));
            Ok(comment)
        })
        .and_then(|comment| {
            ctx.out
                .done(json!({"id": id.hex(), "comment": comment, "reaction": emoji}))
        })
}

pub fn update(ctx: &Ctx, command: UpdateCommand) -> Result<()> {
    match command {
        UpdateCommand::New {
            done,
            next,
            blockers,
            links,
            period,
        } => {
            let parts = [
                done.unwrap_or_default(),
                next.unwrap_or_default(),
                blockers.unwrap_or_default(),
            ];
            if parts.iter().all(|p| p.trim().is_empty()) {
                bail!("the update is empty: give at least one of --done, --next, --blockers");
            }
            let links = links
                .iter()
                .map(|l| ctx.node.resolve(ctx.workspace, l).map(|(id, _)| id.hex()))
                .collect::<Result<Vec<_>>>()?;
            let period = period.unwrap_or_else(|| {
                let week = crate::node::now()
                    .to_zoned_datetime(ctx.out.tz.clone())
                    .date()
                    .iso_week_date();
                format!("{}-W{:02}", week.year(), week.week())
            });
            let name = ctx.name(&ctx.me);
            let new = NewUpdate {
                id: Id::random(),
                workspace: ctx.workspace,
                title: format!("{name}, {period}"),
                period,
                parts,
                links,
                author: ctx.me.clone(),
                at: now_ms(),
            };
            let message = format!("status update {}", new.period);
            create(ctx, new.id, &new.title, &message, |tx| {
                update::create(tx, &new)
            })
        }
        UpdateCommand::List => super::read::list(ctx, Kind::Update, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_round_trips_title_and_sections() {
        let sections = vec![
            ("Summary".to_string(), "Use redb.\n".to_string()),
            (
                "Design".to_string(),
                "One file.\n\nTwo paragraphs.\n".to_string(),
            ),
        ];
        let text = render_markdown("Storage", &sections);
        assert_eq!(
            parse_markdown(&text),
            (Some("Storage".to_string()), sections)
        );
    }
}
