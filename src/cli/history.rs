//! History and merging commands: log, diff, conflicts, resolve, export, merge.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde_json::json;

use super::{Ctx, Format, Spinner, Tone};
use crate::bundle;
use crate::doc::View;
use crate::history;
use crate::id::Id;
use crate::ingest::Limits;

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
    // A long history has few authors: each is looked up once, and a removed one's removal
    // told once, below, in the order they first appear.
    struct Author {
        id: String,
        name: String,
        verified: bool,
        removal: Option<String>,
    }
    let mut authors: HashMap<Vec<u8>, std::rc::Rc<Author>> = HashMap::new();
    let mut removed: Vec<String> = Vec::new();
    let mut author = |e: &crate::store::LogEntry| -> std::rc::Rc<Author> {
        authors
            .entry(e.author.clone())
            .or_insert_with(|| {
                let id = hex::encode(&e.author);
                let removal = super::removal_text(ctx, &id);
                if let Some(text) = &removal {
                    removed.push(format!("{} was {text}.", ctx.name(&id)));
                }
                std::rc::Rc::new(Author {
                    name: ctx.name(&id),
                    verified: ctx.record.state.member(&id).is_some(),
                    removal,
                    id,
                })
            })
            .clone()
    };
    if ctx.out.json {
        let list: Vec<_> = entries
            .iter()
            .map(|e| {
                let a = author(e);
                let removal = match a.removal {
                    Some(_) => super::removal_json(ctx, &a.id),
                    None => serde_json::Value::Null,
                };
                json!({"hash": hex::encode(&e.hash), "author": {"id": a.id, "name": a.name}, "verified": a.verified, "removal": removal, "time": ctx.out.rfc3339(e.time), "message": e.message})
            })
            .collect();
        ctx.out.print_json(&json!(list))?;
        return Ok(());
    }
    // Times are shown to the minute, so a run of changes made in the same minute formats its
    // time once: the whole history of a long document is 100,000 lines.
    let mut minute: Option<(i64, String)> = None;
    for e in &entries {
        let a = author(e);
        let mark = if !a.verified {
            format!(" ({})", ctx.out.paint(Tone::Alarm, "UNVERIFIED"))
        } else if a.removal.is_some() {
            format!(" ({})", ctx.out.paint(Tone::Alarm, "since removed"))
        } else {
            String::new()
        };
        let time = match &minute {
            Some((m, text)) if *m == e.time.div_euclid(60_000) => text.clone(),
            _ => {
                let text = ctx.out.time(e.time);
                minute = Some((e.time.div_euclid(60_000), text.clone()));
                text
            }
        };
        let hash = hex::encode(&e.hash[..e.hash.len().min(6)]);
        let hash = ctx.out.paint(Tone::Id, &hash);
        let name = super::table::pad(&a.name, 12);
        say!(ctx.out, "{hash}  {name} {time}  {}{mark}", e.message);
    }
    for text in &removed {
        say!(ctx.out, "{}", ctx.out.paint(Tone::Alarm, text));
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
    let name = |id: &str| ctx.name(id);
    let changes = history::diff(
        &history::fields(View::at(&doc, &from_heads), &name),
        &history::fields(View::at(&doc, &to_heads), &name),
    );
    if ctx.out.json {
        let list = diff_json(ctx, &doc, &from_heads, &to_heads, &changes)?;
        ctx.out.print_json(&json!(list))?;
        return Ok(());
    }
    if changes.is_empty() {
        said!(ctx.out, "No differences.");
    }
    let out = &ctx.out;
    let added = |line: &str| out.paint(Tone::Added, line);
    let removed = |line: &str| out.paint(Tone::Removed, line);
    let record = |field: &str| {
        ["entry ", "comment ", "ask "]
            .iter()
            .any(|p| field.starts_with(p))
    };
    for change in &changes {
        match (&change.before, &change.after) {
            // An entry, comment or request: what it says, then which it is.
            (None, Some(after)) if record(&change.field) => {
                let mut lines = after.lines();
                let first = lines.next().unwrap_or_default();
                let which = out.paint(Tone::Dim, &format!("({})", change.field));
                say!(out, "{}  {which}", added(&format!("+ {first}")));
                for line in lines {
                    say!(out, "{}", added(&format!("    {line}")));
                }
            }
            (None, Some(after)) => {
                say!(out, "{}", added(&format!("+ {}", change.field)));
                for line in after.lines() {
                    say!(out, "  {}", added(&format!("+ {line}")));
                }
            }
            (Some(before), None) => {
                say!(out, "{}", removed(&format!("- {}", change.field)));
                for line in before.lines() {
                    say!(out, "  {}", removed(&format!("- {line}")));
                }
            }
            (Some(before), Some(after)) => {
                say!(
                    out,
                    "{}",
                    out.paint(Tone::Heading, &format!("~ {}", change.field))
                );
                for line in history::text_diff(before, after).lines() {
                    let line = match line.chars().next() {
                        Some('+') => added(line),
                        Some('-') => removed(line),
                        _ => line.to_string(),
                    };
                    say!(out, "  {line}");
                }
            }
            (None, None) => {}
        }
    }
    Ok(())
}

/// A diff as structured JSON: each changed field with its values before and after and who
/// changed it; each entry, comment and request added or changed, with its author.
fn diff_json(
    ctx: &Ctx,
    doc: &automerge::Automerge,
    from: &[automerge::ChangeHash],
    to: &[automerge::ChangeHash],
    changes: &[history::FieldChange],
) -> Result<Vec<serde_json::Value>> {
    use crate::discussion;
    let (before, after) = (View::at(doc, from), View::at(doc, to));
    // The changes between the two points: after `from`, and part of `to`.
    let mut now = doc.get_heads();
    now.sort();
    let mut until = to.to_vec();
    until.sort();
    let between = if now == until {
        doc.get_changes(from)
    } else {
        doc.fork_at(to)
            .map(|fork| fork.get_changes(from))
            .unwrap_or_default()
    };
    let kind_of = |c: &history::FieldChange| match (&c.before, &c.after) {
        (None, _) => "added",
        (_, None) => "removed",
        _ => "changed",
    };
    let mut list = Vec::new();
    let record = |f: &str| {
        ["entry ", "comment ", "ask "]
            .iter()
            .any(|p| f.starts_with(p))
    };
    for change in changes.iter().filter(|c| !record(&c.field)) {
        let by = crate::inbox::field_editors(after, before, &between, &change.field, "");
        list.push(json!({
            "field": change.field, "change": kind_of(change),
            "before": change.before, "after": change.after,
            "editors": by.iter().map(|m| ctx.person(m)).collect::<Vec<_>>(),
        }));
    }
    let seen: std::collections::BTreeSet<String> = discussion::entries(before)
        .into_iter()
        .map(|e| e.id)
        .collect();
    for entry in discussion::entries(after)
        .into_iter()
        .filter(|e| !seen.contains(&e.id))
    {
        list.push(json!({
            "field": "entry", "change": "added", "entry_id": entry.id, "kind": entry.kind,
            "by": ctx.person(&entry.by), "time": ctx.out.rfc3339(entry.at),
            "message": entry.message, "target": Some(&entry.target).filter(|t| !t.is_empty()),
        }));
    }
    let earlier: std::collections::BTreeMap<String, discussion::Comment> =
        discussion::comments(before)
            .into_iter()
            .map(|c| (c.id.clone(), c))
            .collect();
    for comment in discussion::comments(after) {
        let change = match earlier.get(&comment.id) {
            None => "added",
            Some(old) if old.deleted != comment.deleted => "deleted",
            Some(old) if old.body != comment.body => "changed",
            Some(_) => continue,
        };
        list.push(json!({
            "field": "comment", "change": change, "comment_id": comment.id,
            "parent": comment.parent, "by": ctx.person(&comment.by),
            "time": ctx.out.rfc3339(comment.at),
            "before": earlier.get(&comment.id).map(|c| &c.body), "after": comment.body,
        }));
    }
    let asked: Vec<discussion::Ask> = discussion::asks(before);
    for ask in discussion::asks(after) {
        if !asked
            .iter()
            .any(|a| a.member == ask.member && a.by == ask.by && a.at == ask.at)
        {
            list.push(json!({
                "field": "ask", "change": "added", "member": ctx.person(&ask.member),
                "by": ctx.person(&ask.by), "urgency": ask.urgency, "time": ctx.out.rfc3339(ask.at),
            }));
        }
    }
    Ok(list)
}

pub fn conflicts(ctx: &Ctx, prefix: &str) -> Result<()> {
    let (id, _) = ctx.node.resolve(ctx.workspace, prefix)?;
    let doc = ctx.node.load(ctx.workspace, id)?;
    let conflicts = history::conflicts(View::now(&doc));
    if ctx.out.json {
        let list: Vec<_> = conflicts
            .iter()
            .map(|c| json!({"field": c.field, "values": c.values.iter().map(|v| json!({"value": v.value, "by": ctx.person(&v.author)})).collect::<Vec<_>>()}))
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
    said!(
        ctx.out,
        "Settled {field} of {} \"{}\" to {:?}.",
        id.short(),
        super::printable(&summary.title),
        resolution.value
    );
    ctx.out.done(json!({
        "id": id.hex(), "field": resolution.field, "value": resolution.value,
        "entry_id": resolution.entry_id,
    }))?;
    Ok(())
}

/// How `export` writes.
pub struct Export {
    /// The format.
    pub format: Format,
    /// The file (a directory for every decision record), or stdout.
    pub output: Option<PathBuf>,
    /// Markdown: with the comments.
    pub discussion: bool,
    /// A bundle anyone can check (`meridian verify`).
    pub verifiable: bool,
}

pub fn export(ctx: &Ctx, prefix: Option<&str>, all: bool, how: Export) -> Result<()> {
    let Export {
        format,
        output,
        discussion,
        verifiable,
    } = how;
    if verifiable && format != Format::Bundle {
        crate::fail!(
            Usage,
            "--verifiable makes a bundle anyone can check: add --format bundle"
        );
    }
    // Documents a verifiable export discloses beside the one asked for.
    let mut disclosed_others = Vec::new();
    if discussion && format != Format::Markdown {
        crate::fail!(
            Usage,
            "--discussion adds comments to Markdown: drop it, or pass --format markdown"
        );
    }
    if all && format == Format::Markdown {
        let Some(dir) = output else {
            crate::fail!(
                Usage,
                "--all --format markdown writes one decision record per proposal into a directory: add -o DIR (or --format bundle -o FILE for a bundle of everything)"
            );
        };
        return write_records(ctx, &dir, discussion);
    }
    // The document exported, when it is one.
    let document = match (prefix, all) {
        (Some(prefix), false) => Some(ctx.node.resolve(ctx.workspace, prefix)?.0),
        _ => None,
    };
    let bytes = match (prefix, all, format) {
        (_, true, Format::Bundle) => {
            let mut docs = vec![ctx.workspace];
            docs.extend(
                ctx.node
                    .summaries(ctx.workspace)?
                    .into_iter()
                    .map(|(id, _)| id),
            );
            let spinner = Spinner::start(
                &ctx.out,
                &format!("Exporting {} documents of {}", docs.len(), ctx.record.name),
            );
            let bytes = bundle::export(&ctx.node, ctx.workspace, &docs);
            spinner.done();
            bytes?
        }
        (_, true, _) => crate::fail!(
            Usage,
            "--all exports a bundle (--format bundle) or the decision records (--format markdown -o DIR)"
        ),
        (None, false, _) => {
            crate::fail!(
                Usage,
                "name a document to export, or pass --all --format bundle (or --all --format markdown -o DIR)"
            )
        }
        (Some(prefix), false, Format::Bundle) if verifiable => {
            let (id, _) = ctx.node.resolve(ctx.workspace, prefix)?;
            let (bytes, others) = bundle::export_verifiable(&ctx.node, ctx.workspace, id)?;
            disclosed_others = others;
            bytes
        }
        (Some(prefix), false, Format::Bundle) => {
            let (id, _) = ctx.node.resolve(ctx.workspace, prefix)?;
            // The workspace document travels along, so the receiver knows every author.
            bundle::export(&ctx.node, ctx.workspace, &[ctx.workspace, id])?
        }
        (Some(prefix), false, format) => {
            let (id, summary) = ctx.node.resolve(ctx.workspace, prefix)?;
            if format == Format::Markdown {
                crate::app::records::markdown(ctx, id, &summary, discussion)?.into_bytes()
            } else {
                let doc = ctx.node.load(ctx.workspace, id)?;
                let view = View::now(&doc);
                match format {
                    Format::Automerge => doc.save(),
                    _ => {
                        let value =
                            super::read::document_json(ctx, id, summary.kind, view, &summary)?;
                        let mut text = serde_json::to_string_pretty(&value)?;
                        text.push('\n');
                        text.into_bytes()
                    }
                }
            }
        }
    };
    let format_name = match format {
        Format::Markdown => "markdown",
        Format::Json => "json",
        Format::Bundle => "bundle",
        Format::Automerge => "automerge",
    };
    let binary = matches!(format, Format::Bundle | Format::Automerge);
    match output {
        Some(path) => {
            write_file(&path, &bytes)?;
            ctx.out.done(json!({
                "id": document.map(|d| d.hex()),
                "format": format_name, "path": path, "bytes": bytes.len(),
            }))?;
            let what = match (document, format) {
                (None, _) => format!("workspace {} as a bundle", ctx.record.name),
                (Some(id), Format::Bundle) => format!("{} as a bundle", id.short()),
                (Some(id), _) => format!("{} as {format_name}", id.short()),
            };
            said!(
                ctx.out,
                "Wrote {what} to {} ({}).",
                path.display(),
                size(bytes.len())
            );
            if verifiable {
                said!(
                    ctx.out,
                    "Anyone can check it, with no home, with `meridian verify {}`. It opens this document and the workspace's member list for whoever holds the file.",
                    path.display()
                );
                if !disclosed_others.is_empty() {
                    let n = disclosed_others.len();
                    warn!(
                        ctx.out,
                        "It also discloses the changes to {n} other {} sent in the same envelopes ({}): share it with that in mind.",
                        if n == 1 { "document" } else { "documents" },
                        disclosed_others
                            .iter()
                            .map(|d| d.short())
                            .collect::<Vec<_>>()
                            .join(", ")
                    );
                }
            } else if format == Format::Bundle {
                said!(
                    ctx.out,
                    "Anyone in the workspace adds it with `meridian merge {}`.",
                    path.display()
                );
            }
            Ok(())
        }
        // Under --json the export is one JSON value like every command's output: the
        // document itself for JSON, else the text (or base64 of the bytes) in `content`.
        None if ctx.out.json => {
            let content = match format {
                Format::Json => serde_json::from_slice(&bytes)?,
                _ if binary => json!(base64::Engine::encode(
                    &base64::engine::general_purpose::STANDARD,
                    &bytes
                )),
                _ => json!(String::from_utf8_lossy(&bytes)),
            };
            ctx.out.print_json(&json!({
                "id": document.map(|d| d.hex()), "format": format_name,
                "encoding": if binary { "base64" } else if matches!(format, Format::Json) { "json" } else { "text" },
                "content": content,
            }))
        }
        None => {
            if binary && std::io::stdout().is_terminal() {
                crate::fail!(
                    Usage,
                    "this format is binary: write it to a file with -o FILE"
                );
            }
            ctx.out.bytes(&bytes)
        }
    }
}

/// `meridian verify FILE`: checks a verifiable export with no home and prints its record.
pub fn verify(file: &Path, out: &super::Out) -> Result<()> {
    let bytes = std::fs::read(file).map_err(|e| {
        crate::error::failure(
            crate::error::ErrorKind::NotFound,
            format!("cannot read {}: {e}", file.display()),
        )
    })?;
    let verified = crate::verify::verify(&bytes, &Limits::default()).map_err(|e| {
        crate::error::failure(
            crate::error::ErrorKind::Refused,
            format!("{} does not verify: {e:#}", file.display()),
        )
    })?;
    let state = &verified.state;
    let writers: Vec<serde_json::Value> = verified
        .writers
        .iter()
        .map(|id| json!({"id": id, "name": state.name_of(id)}))
        .collect();
    let record = verified.record();
    if out.json {
        return out.print_json(&json!({
            "file": file,
            "workspace": {"id": verified.workspace.hex(), "name": verified.workspace_name},
            "creator": verified.creator,
            "creator_bound": verified.creator_bound,
            "id": verified.id.hex(),
            "kind": verified.kind.as_str(),
            "title": verified.title(),
            "state": verified.state_name(),
            "envelopes": verified.envelopes,
            "changes": verified.changes,
            "writers": writers,
            "other_documents": verified.others,
            "record": record,
        }));
    }
    said!(
        out,
        "{} {}: every signature, key and rule holds.",
        out.paint(Tone::Good, "Verified"),
        file.display()
    );
    said!(
        out,
        "  {} {} \"{}\" ({}) in workspace \"{}\"",
        verified.kind.as_str(),
        out.paint(Tone::Id, &verified.id.short()),
        verified.title(),
        verified.state_name(),
        verified.workspace_name
    );
    let creator = crate::id::prefix(&verified.creator, 12);
    if verified.creator_bound {
        said!(
            out,
            "  created by {} (key {creator}; the workspace id is derived from it)",
            state.name_of(&verified.creator)
        );
    } else {
        said!(
            out,
            "  created by {} (key {creator}: compare it with the key `meridian whoami` shows on their device)",
            state.name_of(&verified.creator)
        );
    }
    let names: Vec<String> = verified
        .writers
        .iter()
        .map(|id| state.name_of(id))
        .collect();
    said!(
        out,
        "  {} {} in {} {}, written by {}, each a member by invites that lead back to that key",
        verified.changes,
        if verified.changes == 1 {
            "change"
        } else {
            "changes"
        },
        verified.envelopes,
        if verified.envelopes == 1 {
            "envelope"
        } else {
            "envelopes"
        },
        super::sync::names_and(&names)
    );
    said!(out, "");
    out.bytes(record.as_bytes())
}

/// Writes a file atomically (temporary file, then rename), so a failed export never
/// leaves half a bundle under the final name.
fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension(format!("tmp-{}", Id::random().short()));
    // The error names the file asked for, not the temporary one beside it.
    let written = std::fs::write(&tmp, bytes).and_then(|()| std::fs::rename(&tmp, path));
    if let Err(error) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(crate::error::failure(
            crate::error::ErrorKind::Other,
            format!("cannot write {}: {error}", path.display()),
        ));
    }
    Ok(())
}

/// `export --all --format markdown -o DIR`: one decision record per proposal and
/// `index.md`. A rerun rewrites only what changed and removes the file a proposal had
/// under an older name (its title or decision date changed); files it did not write are
/// left alone.
fn write_records(ctx: &Ctx, dir: &Path, discussion: bool) -> Result<()> {
    if dir.is_file() {
        crate::fail!(
            Usage,
            "{} is a file: --all --format markdown writes a directory of records",
            dir.display()
        );
    }
    std::fs::create_dir_all(dir).map_err(|e| {
        crate::error::failure(
            crate::error::ErrorKind::Other,
            format!("cannot create {}: {e}", dir.display()),
        )
    })?;
    let records = crate::app::records::decision_records(ctx, discussion)?;
    // Files already there, by the short id their names end with.
    let mut before: HashMap<String, Vec<String>> = HashMap::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if let Some(short) = crate::record::short_id_of_file(&name) {
            before.entry(short.to_string()).or_default().push(name);
        }
    }
    let (mut written, mut removed) = (0, Vec::new());
    let mut write = |name: &str, text: &str| -> Result<()> {
        let path = dir.join(name);
        if std::fs::read(&path).is_ok_and(|old| old == text.as_bytes()) {
            return Ok(());
        }
        write_file(&path, text.as_bytes())?;
        written += 1;
        Ok(())
    };
    // A file is another name of this record only if no current record has that name and
    // it says it is this proposal (two proposals may share a short id).
    let current: std::collections::HashSet<&str> =
        records.iter().map(|(row, _)| row.file.as_str()).collect();
    for (row, text) in &records {
        let id_line = text
            .lines()
            .find(|l| l.starts_with("- Id: `"))
            .unwrap_or_default();
        if let Some(older) = crate::record::short_id_of_file(&row.file).and_then(|s| before.get(s))
        {
            for old in older.iter().filter(|old| !current.contains(old.as_str())) {
                let path = dir.join(old);
                let ours = std::fs::read_to_string(&path)
                    .is_ok_and(|t| !id_line.is_empty() && t.lines().any(|l| l == id_line));
                if !ours {
                    continue;
                }
                match std::fs::remove_file(&path) {
                    Ok(()) => removed.push(old.clone()),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => {
                        return Err(anyhow::anyhow!("cannot remove {}: {e}", path.display()));
                    }
                }
            }
        }
        write(&row.file, text)?;
    }
    let rows: Vec<_> = records.iter().map(|(row, _)| row.clone()).collect();
    write("index.md", &crate::record::index(&ctx.record.name, &rows))?;
    ctx.out.done(json!({
        "format": "markdown", "directory": dir, "records": records.len(),
        "written": written, "removed": removed,
        "files": rows.iter().map(|r| &r.file).collect::<Vec<_>>(),
    }))?;
    let changed = match written {
        0 => "nothing changed".to_string(),
        1 => "1 file written".to_string(),
        n => format!("{n} files written"),
    };
    said!(
        ctx.out,
        "{} decision record{} of {} and index.md in {} ({changed}{}).",
        records.len(),
        if records.len() == 1 { "" } else { "s" },
        ctx.record.name,
        dir.display(),
        match removed.len() {
            0 => String::new(),
            1 => ", 1 renamed".to_string(),
            n => format!(", {n} renamed"),
        }
    );
    Ok(())
}

/// A size for people: `812 bytes`, `14.2 KiB`, `3.1 MiB`.
fn size(bytes: usize) -> String {
    match bytes {
        b if b < 1024 => format!("{b} bytes"),
        b if b < 1 << 20 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{:.1} MiB", b as f64 / (1 << 20) as f64),
    }
}

pub fn merge(ctx: &Ctx, file: &Path) -> Result<()> {
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let spinner = Spinner::start(&ctx.out, &format!("Merging {}", file.display()));
    let merged = bundle::merge(&ctx.node, &bytes, &Limits::default());
    spinner.done();
    let (source, report) = merged.with_context(|| format!("cannot merge {}", file.display()))?;
    if ctx.out.json {
        ctx.out.print_json(&json!({"source": source, "documents": report.documents, "applied": report.applied, "known": report.known}))?;
        return Ok(());
    }
    let plural = |n: usize, one: &'static str, many: &'static str| if n == 1 { one } else { many };
    let docs = report.documents.len();
    if report.applied == 0 {
        say!(
            ctx.out,
            "Nothing new in {}: everything in it was already here.",
            file.display()
        );
    } else {
        say!(
            ctx.out,
            "Merged {}: {} new {} in {docs} {}{}.",
            file.display(),
            report.applied,
            plural(report.applied, "change", "changes"),
            plural(docs, "document", "documents"),
            if report.known > 0 {
                format!(" ({} already here)", report.known)
            } else {
                String::new()
            }
        );
    }
    Ok(())
}
