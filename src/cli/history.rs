//! History and merging commands: log, diff, conflicts, resolve, export, merge.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde_json::json;

use super::{Ctx, Format};
use crate::bundle;
use crate::discussion::Comment;
use crate::doc::{Kind, View};
use crate::history;
use crate::id::Id;
use crate::ingest::Limits;
use crate::{proposal, thread, update};

pub fn log(ctx: &Ctx, prefix: &str, limit: Option<usize>) -> Result<()> {
    let (id, _) = ctx.node.resolve(ctx.workspace, prefix)?;
    print_log(ctx, id, limit)
}

/// Prints a document's history (the workspace document's too: `workspace log`).
pub fn print_log(ctx: &Ctx, id: Id, limit: Option<usize>) -> Result<()> {
    let entries = match limit {
        Some(n) => ctx.node.history_tail(id, n)?,
        None => {
            let mut all = ctx.node.history(id)?;
            all.reverse();
            all
        }
    };
    // A long history has few authors: each is looked up once.
    let mut authors: HashMap<Vec<u8>, (String, bool)> = HashMap::new();
    let mut author = |e: &crate::store::LogEntry| -> (String, bool) {
        authors
            .entry(e.author.clone())
            .or_insert_with(|| {
                let key = hex::encode(&e.author);
                let member = ctx.record.state.member(&key).is_some();
                (ctx.name(&key), member)
            })
            .clone()
    };
    if ctx.out.json {
        let list: Vec<_> = entries
            .iter()
            .map(|e| {
                let (name, verified) = author(e);
                json!({"hash": hex::encode(&e.hash), "author": name, "author_key": hex::encode(&e.author), "verified": verified, "time": ctx.out.rfc3339(e.time), "message": e.message})
            })
            .collect();
        ctx.out.print_json(&json!(list))?;
        return Ok(());
    }
    // Times are shown to the minute, so a run of changes made in the same minute formats its
    // time once: the whole history of a long document is 100,000 lines.
    let mut minute: Option<(i64, String)> = None;
    for e in &entries {
        let (name, verified) = author(e);
        let mark = if verified { "" } else { " (UNVERIFIED)" };
        let time = match &minute {
            Some((m, text)) if *m == e.time.div_euclid(60_000) => text.clone(),
            _ => {
                let text = ctx.out.time(e.time);
                minute = Some((e.time.div_euclid(60_000), text.clone()));
                text
            }
        };
        let hash = hex::encode(&e.hash[..e.hash.len().min(6)]);
        say!(ctx.out, "{hash}  {name:<12} {time}  {}{mark}", e.message);
    }
    Ok(())
}

pub fn diff(ctx: &Ctx, prefix: &str, from: &str, to: Option<&str>) -> Result<()> {
    let (id, _) = ctx.node.resolve(ctx.workspace, prefix)?;
    let doc = ctx.node.load(ctx.workspace, id)?;
    let from_heads = super::read::heads_for(ctx, &doc, from)?;
    let to_heads = match to {
        Some(to) => super::read::heads_for(ctx, &doc, to)?,
        None => doc.get_heads(),
    };
    let changes = history::diff(
        &history::fields(View::at(&doc, &from_heads)),
        &history::fields(View::at(&doc, &to_heads)),
    );
    if ctx.out.json {
        ctx.out.print_json(&json!(changes))?;
        return Ok(());
    }
    for change in &changes {
        match (&change.before, &change.after) {
            (None, Some(after)) => {
                say!(ctx.out, "+ {}", change.field);
                for line in after.lines() {
                    say!(ctx.out, "  + {line}");
                }
            }
            (Some(before), None) => {
                say!(ctx.out, "- {}", change.field);
                for line in before.lines() {
                    say!(ctx.out, "  - {line}");
                }
            }
            (Some(before), Some(after)) => {
                say!(ctx.out, "~ {}", change.field);
                for line in history::text_diff(before, after).lines() {
                    say!(ctx.out, "  {line}");
                }
            }
            (None, None) => {}
        }
    }
    Ok(())
}

pub fn conflicts(ctx: &Ctx, prefix: &str) -> Result<()> {
    let (id, _) = ctx.node.resolve(ctx.workspace, prefix)?;
    let doc = ctx.node.load(ctx.workspace, id)?;
    let conflicts = history::conflicts(View::now(&doc));
    if ctx.out.json {
        let list: Vec<_> = conflicts
            .iter()
            .map(|c| json!({"field": c.field, "values": c.values.iter().map(|v| json!({"value": v.value, "author": ctx.name(&v.author), "author_id": v.author})).collect::<Vec<_>>()}))
            .collect();
        ctx.out.print_json(&json!(list))?;
        return Ok(());
    }
    if conflicts.is_empty() {
        say!(ctx.out, "No conflicts.");
    }
    for c in &conflicts {
        say!(ctx.out, "{}:", c.field);
        for v in &c.values {
            say!(ctx.out, "  {:?} by {}", v.value, ctx.name(&v.author));
        }
    }
    Ok(())
}

pub fn resolve(ctx: &Ctx, prefix: &str, field: &str, value: &str) -> Result<()> {
    let (id, summary) = ctx.document(prefix)?;
    let resolution = crate::app::conflicts::resolve(ctx, id, summary.kind, field, value)?;
    ctx.out.done(json!({
        "id": id.hex(), "field": resolution.field, "value": resolution.value,
        "entry_id": resolution.entry_id,
    }))?;
    Ok(())
}

pub fn export(
    ctx: &Ctx,
    prefix: Option<&str>,
    all: bool,
    format: Format,
    output: Option<PathBuf>,
) -> Result<()> {
    let bytes = match (prefix, all, format) {
        (_, true, Format::Bundle) => {
            let mut docs = vec![ctx.workspace];
            docs.extend(
                ctx.node
                    .summaries(ctx.workspace)?
                    .into_iter()
                    .map(|(id, _)| id),
            );
            bundle::export(&ctx.node, ctx.workspace, &docs)?
        }
        (_, true, _) => bail!("--all exports a bundle: add --format bundle"),
        (None, false, _) => bail!("name a document to export, or pass --all --format bundle"),
        (Some(prefix), false, Format::Bundle) => {
            let (id, _) = ctx.node.resolve(ctx.workspace, prefix)?;
            // The workspace document travels along, so the receiver knows every author.
            bundle::export(&ctx.node, ctx.workspace, &[ctx.workspace, id])?
        }
        (Some(prefix), false, format) => {
            let (id, summary) = ctx.node.resolve(ctx.workspace, prefix)?;
            let doc = ctx.node.load(ctx.workspace, id)?;
            let view = View::now(&doc);
            match format {
                Format::Markdown => markdown(ctx, summary.kind, view).into_bytes(),
                Format::Automerge => doc.save(),
                _ => {
                    let value = super::read::document_json(ctx, id, summary.kind, view, &summary)?;
                    let mut text = serde_json::to_string_pretty(&value)?;
                    text.push('\n');
                    text.into_bytes()
                }
            }
        }
    };
    match output {
        Some(path) => {
            write_file(&path, &bytes)?;
            ctx.out.done(json!({"path": path, "bytes": bytes.len()}))?;
            Ok(())
        }
        None => {
            if matches!(format, Format::Bundle | Format::Automerge)
                && std::io::stdout().is_terminal()
            {
                bail!("this format is binary: write it to a file with -o FILE");
            }
            ctx.out.bytes(&bytes)
        }
    }
}

/// Writes a file atomically (temporary file, then rename), so a failed export never
/// leaves half a bundle under the final name.
fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension(format!("tmp-{}", Id::random().short()));
    std::fs::write(&tmp, bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}

fn markdown(ctx: &Ctx, kind: Kind, view: View<'_>) -> String {
    let mut out = String::new();
    let comments: Vec<Comment> = match kind {
        Kind::Proposal => {
            let p = proposal::read(view);
            out.push_str(&format!("# {}\n\n", p.title));
            out.push_str(&format!(
                "*{} · {} · by {} · {}*\n\n",
                p.template,
                p.lifecycle.state.name(),
                ctx.name(&p.author),
                ctx.out.time(p.created)
            ));
            if !p.late_edits.is_empty() {
                out.push_str(&format!(
                    "> Note: {} changed concurrently with the decision; the {} text is shown.\n\n",
                    p.late_edits.join(", "),
                    p.lifecycle.state.name()
                ));
            }
            for (name, text) in &p.sections {
                out.push_str(&format!("## {name}\n\n{}\n\n", text.trim_end()));
            }
            if !p.approvals.is_empty() || !p.concerns.is_empty() {
                out.push_str("## Review\n\n");
                for a in &p.approvals {
                    out.push_str(&format!(
                        "- approved by {}{}\n",
                        ctx.name(&a.entry.by),
                        if a.stale { " (stale)" } else { "" }
                    ));
                }
                for c in &p.concerns {
                    out.push_str(&format!(
                        "- concern by {}{}: {}\n",
                        ctx.name(&c.entry.by),
                        if c.resolved.is_some() {
                            " (resolved)"
                        } else if c.entry.blocking {
                            " (blocking)"
                        } else {
                            ""
                        },
                        c.entry.message
                    ));
                }
                out.push('\n');
            }
            p.comments
        }
        Kind::Thread => {
            let t = thread::read(view);
            out.push_str(&format!(
                "# {}\n\n*thread · {} · by {} · {}*\n\n{}\n\n",
                t.title,
                t.lifecycle.state.name(),
                ctx.name(&t.author),
                ctx.out.time(t.created),
                t.body.trim_end()
            ));
            t.comments
        }
        _ => {
            let u = update::read(view);
            out.push_str(&format!("# {}\n\n", u.title));
            for (label, text) in [
                ("Done", &u.done),
                ("Next", &u.next),
                ("Blockers", &u.blockers),
            ] {
                if !text.trim().is_empty() {
                    out.push_str(&format!("## {label}\n\n{}\n\n", text.trim_end()));
                }
            }
            u.comments
        }
    };
    if !comments.is_empty() {
        out.push_str("## Discussion\n\n");
        fn walk(
            ctx: &Ctx,
            out: &mut String,
            comments: &[Comment],
            parent: Option<&str>,
            depth: usize,
        ) {
            for c in comments.iter().filter(|c| c.parent.as_deref() == parent) {
                let indent = "  ".repeat(depth.min(12));
                out.push_str(&format!(
                    "{indent}- **{}** ({}): {}\n",
                    ctx.name(&c.by),
                    ctx.out.time(c.at),
                    c.body.trim_end().replace('\n', &format!("\n{indent}  "))
                ));
                walk(ctx, out, comments, Some(&c.id), depth + 1);
            }
        }
        walk(ctx, &mut out, &comments, None, 0);
    }
    out
}

pub fn merge(ctx: &Ctx, file: &Path) -> Result<()> {
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let (source, report) = bundle::merge(&ctx.node, &bytes, &Limits::default())
        .with_context(|| format!("cannot merge {}", file.display()))?;
    if ctx.out.json {
        ctx.out.print_json(&json!({"source": source, "documents": report.documents, "applied": report.applied, "known": report.known}))?;
        return Ok(());
    }
    say!(
        ctx.out,
        "Merged {} new change(s) into {} document(s); {} record(s) were already here.",
        report.applied,
        report.documents.len(),
        report.known
    );
    Ok(())
}
