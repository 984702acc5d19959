//! Writing commands: proposals and their lifecycle, threads, replies, reactions, updates.
//! Each parses its arguments, calls the application layer (`crate::app`) and prints.

use anyhow::{Context, Result, bail};
use serde_json::json;

use super::{Ctx, ProposalCommand, ThreadCommand, UpdateCommand, edit_in_editor, read_text};
use crate::app::decision;
use crate::app::draft::{self, Created, ProposalDraft, TextEdit};
use crate::app::request::PassedTo;
use crate::doc::Kind;
use crate::markdown;

pub fn proposal(ctx: &Ctx, command: ProposalCommand) -> Result<()> {
    let written = match command {
        ProposalCommand::New {
            title,
            template,
            sections,
            new_sections,
            body_file,
            asks,
            deciders,
            urgency,
        } => {
            let body = body_file.map(|path| read_text(&path)).transpose()?;
            let created = draft::new_proposal(
                ctx,
                ProposalDraft {
                    title,
                    template,
                    body,
                    sections: named_texts(&sections, "--section")?,
                    new_sections: named_texts(&new_sections, "--new-section")?,
                    asks: asks.clone(),
                    deciders,
                    urgency,
                },
            )?;
            created_done(ctx, &created)?;
            return away_notes(ctx, &asks);
        }
        ProposalCommand::List { state } => {
            return super::read::list(ctx, Kind::Proposal, state.as_deref());
        }
        ProposalCommand::Edit {
            id,
            section,
            new_section,
            remove_section,
            file,
            title,
        } => {
            return edit(
                ctx,
                &id,
                (section, new_section, remove_section),
                file,
                title,
            );
        }
        ProposalCommand::Open { id, closes } => {
            decision::open(ctx, decision::proposal_id(ctx, &id)?, &closes, false)?
        }
        ProposalCommand::FinalComment { id, closes } => {
            decision::open(ctx, decision::proposal_id(ctx, &id)?, &closes, true)?
        }
        ProposalCommand::Close { id } => decision::close(ctx, decision::proposal_id(ctx, &id)?)?,
        ProposalCommand::Deciders { id, names } => {
            let id = decision::proposal_id(ctx, &id)?;
            let ids = draft::set_deciders(ctx, id, &names)?;
            let people: Vec<_> = ids
                .iter()
                .map(|d| json!({"id": d, "name": ctx.name(d)}))
                .collect();
            let names: Vec<String> = ids.iter().map(|d| ctx.name(d)).collect();
            said!(
                ctx.out,
                "{} is decided by {}.",
                document(ctx, id)?,
                names.join(", ")
            );
            return ctx.out.done(json!({"id": id.hex(), "deciders": people}));
        }
        ProposalCommand::Approve { id, message } => {
            decision::approve(ctx, decision::proposal_id(ctx, &id)?, message.read()?)?
        }
        ProposalCommand::Unapprove { id } => {
            decision::unapprove(ctx, decision::proposal_id(ctx, &id)?)?
        }
        ProposalCommand::Concern { id, text, blocking } => {
            let id = decision::proposal_id(ctx, &id)?;
            let message = super::text(text, "concern")?;
            decision::concern(ctx, id, &message, blocking)?
        }
        ProposalCommand::Resolve { id, concern, note } => {
            let note = note.read()?;
            decision::resolve_concern(ctx, decision::proposal_id(ctx, &id)?, &concern, note)?
        }
        ProposalCommand::Accept(d) => decision::decide(
            ctx,
            decision::proposal_id(ctx, &d.id)?,
            "accept",
            d.message.read()?,
        )?,
        ProposalCommand::Reject(d) => decision::decide(
            ctx,
            decision::proposal_id(ctx, &d.id)?,
            "reject",
            d.message.read()?,
        )?,
        ProposalCommand::Withdraw(d) => decision::decide(
            ctx,
            decision::proposal_id(ctx, &d.id)?,
            "withdraw",
            d.message.read()?,
        )?,
        ProposalCommand::Supersede { id, by } => {
            decision::supersede(ctx, decision::proposal_id(ctx, &id)?, &by)?
        }
        ProposalCommand::Reopen { id, text } => {
            let id = decision::proposal_id(ctx, &id)?;
            let why = super::text(text, "reason")?;
            decision::reopen(ctx, id, &why)?
        }
    };
    entry_done(ctx, &written)
}

/// Says which of the people named are away, and what happens to their request.
fn away_notes(ctx: &Ctx, names: &[String]) -> Result<()> {
    let ids = ctx.record.state.find_active(names, "asked")?;
    for note in crate::app::request::away_notes(ctx, &ids, crate::node::now_ms()) {
        warn!(ctx.out, "{note}");
    }
    Ok(())
}

/// `NAME=TEXT` arguments, split.
fn named_texts(args: &[String], flag: &str) -> Result<Vec<(String, String)>> {
    args.iter()
        .map(|arg| {
            let (name, text) = arg.split_once('=').with_context(|| {
                format!("`{flag} {arg}` should be NAME=TEXT, like {flag} Summary='Use redb'")
            })?;
            Ok((name.trim().to_string(), text.to_string()))
        })
        .collect()
}

/// Prints a new document's id and title, and what comes next.
fn created_done(ctx: &Ctx, created: &Created) -> Result<()> {
    if ctx.out.json {
        return ctx.out.print_json(&json!({
            "id": created.id.hex(), "kind": created.kind.as_str(), "title": created.title,
        }));
    }
    let id = ctx.out.paint(super::Tone::Id, &created.id.short());
    match created.kind {
        Kind::Proposal => said!(
            ctx.out,
            "Created proposal {id} \"{}\", a draft: `meridian proposal open {}` starts its comment period.",
            created.title,
            created.id.short()
        ),
        Kind::Thread => said!(ctx.out, "Started thread {id} \"{}\".", created.title),
        _ => said!(ctx.out, "Posted update {id} \"{}\".", created.title),
    }
    if !created.named.is_empty() {
        let names: Vec<String> = created.named.iter().map(|m| ctx.name(m)).collect();
        said!(
            ctx.out,
            "Asked {} to respond: the blockers name {}.",
            names.join(", "),
            if names.len() == 1 { "them" } else { "each" }
        );
    }
    Ok(())
}

/// `8a7d25a9 "Title"`: a document as a confirmation names it.
fn document(ctx: &Ctx, id: crate::id::Id) -> Result<String> {
    let (_, summary) = ctx.document(&id.hex())?;
    Ok(format!(
        "{} \"{}\"",
        ctx.out.paint(super::Tone::Id, &id.short()),
        super::printable(&summary.title)
    ))
}

/// What still stands between a proposal and its acceptance, in a few words.
fn next_for(ctx: &Ctx, id: crate::id::Id) -> Result<String> {
    let (_, summary) = ctx.document(&id.hex())?;
    if !matches!(summary.state.as_str(), "open" | "final-comment") {
        return Ok(String::new());
    }
    let obstacles = summary.obstacles(crate::node::now_ms());
    if obstacles.is_empty() {
        return Ok(format!(
            "; it can be accepted now: `meridian proposal accept {}`",
            id.short()
        ));
    }
    let name = |m: &str| ctx.reader_name(m);
    let time = |t: i64| ctx.out.time(t);
    let words: Vec<String> = obstacles.iter().map(|o| o.describe(&name, &time)).collect();
    Ok(format!("; waiting: {}", words.join("; ")))
}

/// Prints what a deciding action wrote: as JSON, or a line saying what happened and what
/// comes next.
fn entry_done(ctx: &Ctx, written: &decision::Written) -> Result<()> {
    if ctx.out.json {
        return ctx.out.print_json(&json!({
            "id": written.id.hex(),
            "entry_id": written.entry.id,
            "kind": written.entry.kind,
        }));
    }
    let entry = &written.entry;
    let doc = document(ctx, written.id)?;
    let (_, summary) = ctx.document(&written.id.hex())?;
    let thread = summary.kind == Kind::Thread;
    let short = |id: &str| ctx.out.paint(super::Tone::Id, crate::id::prefix(id, 8));
    let until = |closes: Option<i64>| closes.map(|c| ctx.out.time(c)).unwrap_or_default();
    match entry.kind.as_str() {
        "open" | "final-comment" if entry.closes.is_some_and(|c| c <= entry.at) => {
            said!(
                ctx.out,
                "Closed the comment period of {doc}{}.",
                next_for(ctx, written.id)?
            )
        }
        "open" => said!(
            ctx.out,
            "Opened {doc} for comments until {}.",
            until(entry.closes)
        ),
        "final-comment" => said!(
            ctx.out,
            "Started the final comment period of {doc}, until {}.",
            until(entry.closes)
        ),
        "approve" => said!(ctx.out, "Approved {doc}{}.", next_for(ctx, written.id)?),
        "unapprove" => said!(ctx.out, "Took back your approval of {doc}."),
        "concern" => said!(
            ctx.out,
            "Raised {} concern {} on {doc}.",
            if entry.blocking { "a blocking" } else { "a" },
            short(&entry.id)
        ),
        "resolve-concern" => said!(
            ctx.out,
            "Resolved concern {} on {doc}.",
            short(&entry.target)
        ),
        "accept" => said!(
            ctx.out,
            "Accepted {doc} ({} approval{}).",
            summary.approvals.iter().filter(|a| !a.stale).count(),
            if summary.approvals.iter().filter(|a| !a.stale).count() == 1 {
                ""
            } else {
                "s"
            }
        ),
        "reject" => said!(ctx.out, "Rejected {doc}."),
        "withdraw" => said!(ctx.out, "Withdrew {doc}."),
        "supersede" => said!(
            ctx.out,
            "Marked {doc} superseded by {}.",
            short(&entry.target)
        ),
        "reopen" if thread => said!(ctx.out, "Reopened thread {doc}."),
        "reopen" => said!(
            ctx.out,
            "Reopened {doc} as a draft: its text may change, and every approval is stale."
        ),
        "resolve" => said!(ctx.out, "Resolved thread {doc}."),
        "cancel-ask" => said!(
            ctx.out,
            "Cancelled the request to {} on {doc}.",
            ctx.name(&entry.target)
        ),
        "ack" => said!(
            ctx.out,
            "Acknowledged the request on {doc}: no reply needed."
        ),
        other => said!(ctx.out, "Wrote {other} on {doc}."),
    }
    Ok(())
}

/// `proposal edit`: one section from a file or $EDITOR, a new section, a removal, the
/// title, or the whole proposal as Markdown.
fn edit(
    ctx: &Ctx,
    prefix: &str,
    (section, new_section, remove_section): (Option<String>, Option<String>, Option<String>),
    file: Option<std::path::PathBuf>,
    title: Option<String>,
) -> Result<()> {
    let id = decision::proposal_id(ctx, prefix)?;
    let mut edits = Vec::new();
    if let Some(title) = title {
        edits.push(TextEdit::Title(title));
    }
    let (now_title, now_sections) = draft::current_text(ctx, id)?;
    let known = |name: &str| {
        now_sections
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case(name))
    };
    // `--section NAME=TEXT` (the spelling `proposal new` takes) sets the text inline.
    let inline = |given: &str, exists: bool| match given.split_once('=') {
        Some((name, text)) if file.is_none() && known(name.trim()) == exists => {
            Some((name.trim().to_string(), text.to_string()))
        }
        _ => None,
    };
    let section_inline = section
        .as_deref()
        .filter(|name| !known(name))
        .and_then(|given| inline(given, true));
    let inline = section_inline
        .map(|(name, text)| TextEdit::Section { name, text })
        .or_else(|| {
            let (name, text) = inline(new_section.as_deref()?, false)?;
            Some(TextEdit::NewSection { name, text })
        });
    match (inline, section, new_section, remove_section, file) {
        (Some(edit), ..) => edits.push(edit),
        (None, Some(name), _, _, file) => {
            let text = match file {
                Some(path) => read_text(&path)?,
                None => {
                    let old = now_sections
                        .iter()
                        .find(|(n, _)| n.eq_ignore_ascii_case(&name))
                        .map(|(_, t)| t.clone());
                    // An unknown name is refused before an editor opens.
                    let Some(old) = old else {
                        return Err(draft::unknown_section(
                            &name,
                            &now_sections,
                            &format!("add one with --new-section '{name}'"),
                        ));
                    };
                    edit_in_editor(&old, &name)?
                }
            };
            edits.push(TextEdit::Section { name, text });
        }
        (None, _, Some(name), _, file) => {
            let text = match file {
                Some(path) => read_text(&path)?,
                None => edit_in_editor("", &name)?,
            };
            edits.push(TextEdit::NewSection { name, text });
        }
        (None, _, _, Some(name), _) => edits.push(TextEdit::RemoveSection { name }),
        (None, None, None, None, Some(path)) => edits.push(TextEdit::Whole {
            markdown: read_text(&path)?,
            complete: false,
        }),
        (None, None, None, None, None) if !edits.is_empty() => {}
        (None, None, None, None, None) => {
            if let Err(section) = markdown::round_trips(&now_title, &now_sections) {
                bail!(
                    "section `{section}` holds a line that reads as a Markdown heading, so editing the whole proposal would split it: edit it alone with `meridian proposal edit {} --section '{section}'`",
                    id.short()
                );
            }
            let text = edit_in_editor(&markdown::render(&now_title, &now_sections), "proposal")?;
            edits.push(TextEdit::Whole {
                markdown: text,
                complete: true,
            });
        }
    }
    done_edit(ctx, draft::edit_proposal(ctx, id, edits)?)
}

/// Says what an edit changed: quiet for one section, a line for each section added or
/// removed (a removal is easy to miss in an editor).
fn done_edit(ctx: &Ctx, edited: draft::Edited) -> Result<()> {
    if ctx.out.json {
        let id = edited.id.map(|id| id.hex());
        return ctx.out.print_json(&json!({
            "id": id, "changed": edited.changed, "added": edited.added,
            "removed": edited.removed.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            "title_changed": edited.title_changed,
        }));
    }
    if edited.is_empty() {
        warn!(ctx.out, "No changes.");
    }
    if let Some(id) = edited.id {
        let mut what: Vec<String> = edited.changed.clone();
        if edited.title_changed {
            what.insert(0, "the title".into());
        }
        if !what.is_empty() {
            said!(
                ctx.out,
                "Edited {} of {}.",
                what.join(", "),
                document(ctx, id)?
            );
        }
    }
    let to = match edited.id {
        Some(id) => format!(" to {}", document(ctx, id)?),
        None => String::new(),
    };
    for name in &edited.added {
        said!(ctx.out, "Added section {name}{to}.");
    }
    for (name, lines) in &edited.removed {
        let lines = match lines {
            0 => "it was empty".to_string(),
            1 => "1 line; the history keeps it".to_string(),
            n => format!("{n} lines; the history keeps them"),
        };
        say!(ctx.out, "Removed section {name} ({lines}).");
    }
    Ok(())
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
            let body = super::text(body, "thread's opening text")?;
            let created = draft::new_thread(ctx, &title, &body, &asks, urgency)?;
            created_done(ctx, &created)?;
            away_notes(ctx, &asks)
        }
        ThreadCommand::List => super::read::list(ctx, Kind::Thread, None),
        ThreadCommand::Resolve { id } => thread_state(ctx, &id, true),
        ThreadCommand::Reopen { id } => thread_state(ctx, &id, false),
    }
}

fn thread_state(ctx: &Ctx, prefix: &str, resolve: bool) -> Result<()> {
    let id = crate::app::decision::thread_id(ctx, prefix)?;
    let written = crate::app::decision::thread_state(ctx, id, resolve)?;
    entry_done(ctx, &written)
}

pub fn reply(ctx: &Ctx, target: &str, text: super::Text, edit: bool, delete: bool) -> Result<()> {
    use crate::app::comment;
    if delete {
        if text.message.is_some() || text.file.is_some() {
            bail!("--delete takes no text: it removes the comment");
        }
        let (id, comment_id) = comment::delete(ctx, target)?;
        said!(
            ctx.out,
            "Deleted your comment {} on {}; the history keeps its text.",
            crate::id::prefix(&comment_id, 8),
            document(ctx, id)?
        );
        return ctx
            .out
            .done(json!({"id": id.hex(), "comment_id": comment_id, "deleted": true}));
    }
    if edit {
        let body = super::text(text, "comment")?;
        let (id, comment_id) = comment::edit(ctx, target, &body)?;
        said!(
            ctx.out,
            "Edited your comment {} on {}; others see that it was edited.",
            crate::id::prefix(&comment_id, 8),
            document(ctx, id)?
        );
        return ctx
            .out
            .done(json!({"id": id.hex(), "comment_id": comment_id, "edited": true}));
    }
    // The target is checked before an editor opens.
    ctx.document(comment::split_target(target).0)?;
    let body = super::text(text, "reply")?;
    let replied = comment::reply(ctx, target, &body)?;
    if ctx.out.json {
        ctx.out.print_json(&json!({
            "id": replied.id.hex(), "comment_id": replied.comment_id, "parent": replied.parent,
        }))?;
    } else {
        said!(
            ctx.out,
            "Replied to {} \"{}\" as {}.",
            replied.kind.as_str(),
            super::printable(&replied.title),
            ctx.out.paint(
                super::Tone::Id,
                &format!(
                    "{}:{}",
                    replied.id.short(),
                    crate::id::prefix(&replied.comment_id, 8)
                )
            )
        );
    }
    Ok(())
}

pub fn react(ctx: &Ctx, target: &str, emoji: &str, remove: bool) -> Result<()> {
    let (id, comment) = crate::app::comment::react(ctx, target, emoji, remove)?;
    let verb = if remove { "Took back" } else { "Reacted" };
    said!(
        ctx.out,
        "{verb} {emoji} on comment {} of {}.",
        crate::id::prefix(&comment, 8),
        document(ctx, id)?
    );
    ctx.out.done(json!({
        "id": id.hex(), "comment_id": comment, "reaction": emoji, "removed": remove,
    }))
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
                crate::update::join_items(&done),
                crate::update::join_items(&next),
                crate::update::join_items(&blockers),
            ];
            // The week in the author's own zone (not `--tz`, which says how to show
            // times): the one `update missing` counts.
            let period = period.unwrap_or_else(|| {
                let tz = ctx
                    .record
                    .state
                    .member(&ctx.me)
                    .map_or_else(|| ctx.out.tz.clone(), |m| m.calendar().tz);
                crate::update::week_of(crate::node::now(), &tz)
            });
            let created = draft::new_update(ctx, parts, &links, period)?;
            created_done(ctx, &created)
        }
        UpdateCommand::List { limit } => super::read::updates(ctx, limit),
        UpdateCommand::Missing => super::read::missing_updates(ctx),
    }
}

/// `meridian ask ID NAME... [--urgency L]` and `meridian ask ID --cancel NAME`.
pub fn ask(
    ctx: &Ctx,
    prefix: &str,
    names: &[String],
    urgency: Option<String>,
    cancel: Option<String>,
) -> Result<()> {
    use crate::app::request;
    let id = request::requestable(ctx, prefix)?;
    if let Some(name) = cancel {
        let written = request::cancel(ctx, id, &name)?;
        return entry_done(ctx, &written);
    }
    let written = request::ask(ctx, id, names, urgency)?;
    let asked: Vec<String> = written.iter().map(|w| w.entry.target.clone()).collect();
    if let Some(first) = written.first() {
        let names: Vec<String> = asked.iter().map(|m| ctx.name(m)).collect();
        said!(
            ctx.out,
            "Asked {} ({}) on {}.",
            names.join(", "),
            first.entry.urgency,
            document(ctx, id)?
        );
    }
    for note in request::away_notes(ctx, &asked, crate::node::now_ms()) {
        warn!(ctx.out, "{note}");
    }
    if ctx.out.json {
        return ctx.out.print_json(&json!({
            "id": id.hex(),
            "entry_ids": written.iter().map(|w| &w.entry.id).collect::<Vec<_>>(),
        }));
    }
    Ok(())
}

/// `meridian decline ID [-m WHY]` and `meridian ack ID`.
pub fn answer(ctx: &Ctx, prefix: &str, ack: bool, why: Option<String>) -> Result<()> {
    let id = crate::app::request::requestable(ctx, prefix)?;
    let (written, passed) = crate::app::request::answer(ctx, id, ack, why)?;
    let Some(passed) = passed else {
        return entry_done(ctx, &written);
    };
    if ctx.out.json {
        return entry_done(ctx, &written);
    }
    let doc = document(ctx, written.id)?;
    match passed {
        PassedTo::Ladder(next) => said!(
            ctx.out,
            "Declined the request on {doc}: it goes to {}, next on the escalation ladder.",
            ctx.name(&next)
        ),
        PassedTo::Asker(asker) => said!(
            ctx.out,
            "Declined the request on {doc}: it goes back to {}, who asked.",
            ctx.name(&asker)
        ),
    }
    Ok(())
}
