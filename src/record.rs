//! Documents written out as Markdown: a proposal as a complete decision record, the layout
//! teams that keep architecture decision records in a repository know (adr-tools,
//! log4brains and its MADR header list), and threads and updates with their discussion.
//!
//! Pure functions of a document as read and of how to name people: no clock, no store.
//! Times are in UTC, so a record reads the same whoever exports it and wherever they are,
//! and rerunning an export in another time zone changes no file.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use crate::discussion::{Comment, Entry, State};
use crate::proposal::Proposal;
use crate::thread::Thread;
use crate::update::Update;

/// Another proposal a record links to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Related {
    /// Its id.
    pub id: String,
    /// Its title.
    pub title: String,
    /// The file its record is written to, when records are written together.
    pub file: Option<String>,
}

/// What a record needs beside the document.
pub struct Context<'a> {
    /// A member's name from their member id.
    pub names: &'a dyn Fn(&str) -> String,
    /// The proposal that superseded this one, when it is known.
    pub superseded_by: Option<Related>,
    /// The proposals this one superseded.
    pub supersedes: Vec<Related>,
    /// Include the comments.
    pub discussion: bool,
}

/// A moment in UTC, to the minute: `2026-12-07 14:03 UTC`.
pub fn utc(ms: i64) -> String {
    match jiff::Timestamp::from_millisecond(ms) {
        Ok(t) => t.strftime("%Y-%m-%d %H:%M UTC").to_string(),
        Err(_) => "(invalid time)".into(),
    }
}

/// The day of a moment in UTC: `2026-12-07`.
pub fn utc_day(ms: i64) -> String {
    match jiff::Timestamp::from_millisecond(ms) {
        Ok(t) => t.strftime("%Y-%m-%d").to_string(),
        Err(_) => "0000-00-00".into(),
    }
}

/// The transitions that decided the proposal (one, or several that conflict), oldest first.
pub fn decision(p: &Proposal) -> Vec<&Entry> {
    let mut decided: Vec<&Entry> = p
        .entries
        .iter()
        .filter(|e| {
            p.lifecycle.tips.contains(&e.id)
                && matches!(
                    e.kind.as_str(),
                    "accept" | "reject" | "withdraw" | "supersede"
                )
        })
        .collect();
    decided.sort_by(|a, b| (a.at, &a.id).cmp(&(b.at, &b.id)));
    decided
}

/// The date a record is filed under: when the proposal was decided, or when it was
/// created while it is not.
pub fn date(p: &Proposal) -> i64 {
    decision(p).last().map_or(p.created, |e| e.at)
}

/// A title as a file name's words: lower case letters and digits joined by single
/// hyphens, at most 60 characters, cut at a word.
pub fn slug(title: &str) -> String {
    const MOST: usize = 60;
    // A file name is at most 255 bytes; four-byte letters must leave room for the date,
    // the short id and a temporary suffix.
    const MOST_BYTES: usize = 150;
    let mut slug = String::new();
    for word in title
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        let word = word.to_lowercase();
        if slug.is_empty() {
            // One word longer than the limit is cut.
            for c in word.chars().take(MOST) {
                if slug.len() + c.len_utf8() > MOST_BYTES {
                    break;
                }
                slug.push(c);
            }
            continue;
        }
        if slug.chars().count() + 1 + word.chars().count() > MOST
            || slug.len() + 1 + word.len() > MOST_BYTES
        {
            break;
        }
        slug.push('-');
        slug.push_str(&word);
    }
    if slug.is_empty() {
        "untitled".into()
    } else {
        slug
    }
}

/// The file a proposal's record is written to: its date, the slug of its title and its
/// short id, e.g. `2026-12-07-store-workspaces-in-redb-889e0d9a.md`. The short id keeps
/// names unique and lets a rerun find the file a proposal had before its title or date
/// changed ([`short_id_of_file`]).
pub fn file_name(p: &Proposal) -> String {
    format!(
        "{}-{}-{}.md",
        utc_day(date(p)),
        slug(&p.title),
        crate::id::prefix(&p.id, 8)
    )
}

/// The short id a record's file name ends with, if it is one [`file_name`] made.
pub fn short_id_of_file(name: &str) -> Option<&str> {
    let stem = name.strip_suffix(".md")?;
    let (_, short) = stem.rsplit_once('-')?;
    (short.len() == 8 && short.bytes().all(|b| b.is_ascii_hexdigit())).then_some(short)
}

fn versions(heads: &[String]) -> String {
    if heads.is_empty() {
        return "`(unknown)`".into();
    }
    heads
        .iter()
        .map(|h| format!("`{}`", crate::id::prefix(h, 8)))
        .collect::<Vec<_>>()
        .join(", ")
}

fn quoted(message: &str) -> String {
    let message = message.trim();
    if message.is_empty() {
        String::new()
    } else {
        format!(": “{}”", message.replace('\n', " "))
    }
}

fn link(r: &Related) -> String {
    match &r.file {
        Some(file) => format!("[{}]({file})", r.title),
        None => format!("{} (`{}`)", r.title, crate::id::prefix(&r.id, 8)),
    }
}

fn list(names: &[String]) -> String {
    if names.is_empty() {
        "nobody".into()
    } else {
        names.join(", ")
    }
}

/// What a transition did, as a record says it.
fn transition(e: &Entry, names: &dyn Fn(&str) -> String) -> String {
    let what = match e.kind.as_str() {
        "open" => "opened for comment".to_string(),
        "final-comment" => "announced the final comment period".to_string(),
        "accept" => "accepted".to_string(),
        "reject" => "rejected".to_string(),
        "withdraw" => "withdrew it".to_string(),
        "supersede" => format!(
            "marked it superseded by `{}`",
            crate::id::prefix(&e.target, 8)
        ),
        "reopen" => "reopened it".to_string(),
        other => other.to_string(),
    };
    let closes = match e.closes {
        Some(closes) if matches!(e.kind.as_str(), "open" | "final-comment") => {
            format!(" (closing {})", utc(closes))
        }
        _ => String::new(),
    };
    format!(
        "{}, {}: {what}{closes}{}",
        utc(e.at),
        names(&e.by),
        quoted(&e.message)
    )
}

/// A proposal as a complete decision record. Sections with nothing to say are left out.
pub fn proposal(p: &Proposal, cx: &Context<'_>) -> String {
    let names = cx.names;
    let mut out = String::new();
    let _ = writeln!(out, "# {}\n", p.title);
    // The header list, as MADR writes it.
    let decided = decision(p);
    let status = match &p.lifecycle.state {
        State::Conflict { .. } => "in conflict (concurrent decisions; see below)".to_string(),
        state => state.name().to_string(),
    };
    let _ = writeln!(out, "- Status: {status}");
    for e in &decided {
        let verb = match e.kind.as_str() {
            "accept" => "Accepted",
            "reject" => "Rejected",
            "withdraw" => "Withdrawn",
            _ => "Superseded",
        };
        let _ = writeln!(
            out,
            "- {verb}: {} by {}{}",
            utc(e.at),
            names(&e.by),
            quoted(&e.message)
        );
    }
    let mut deciders: Vec<String> = p.deciders.iter().map(|d| names(d)).collect();
    deciders.sort();
    let _ = writeln!(out, "- Deciders: {}", list(&deciders));
    let _ = writeln!(
        out,
        "- Author: {}, {}{}",
        names(&p.author),
        utc(p.created),
        if p.template.is_empty() {
            String::new()
        } else {
            format!(" (template {})", p.template)
        }
    );
    if let Some(by) = &cx.superseded_by {
        let _ = writeln!(out, "- Superseded by: {}", link(by));
    } else if let State::Superseded { by } = &p.lifecycle.state {
        let _ = writeln!(out, "- Superseded by: `{}`", crate::id::prefix(by, 8));
    }
    if !cx.supersedes.is_empty() {
        let links: Vec<String> = cx.supersedes.iter().map(link).collect();
        let _ = writeln!(out, "- Supersedes: {}", links.join(", "));
    }
    if let Some(heads) = &p.decided_at {
        let _ = writeln!(out, "- Decided on version: {}", versions(heads));
    }
    let _ = writeln!(out, "- Id: `{}`", p.id);
    out.push('\n');
    if !p.late_edits.is_empty() {
        let _ = writeln!(
            out,
            "> {} changed concurrently with the decision, by someone who had not seen it: \
             this record shows the text as decided.\n",
            p.late_edits.join(", ")
        );
    }
    if let State::Conflict { candidates } = &p.lifecycle.state {
        let _ = writeln!(out, "## Conflicting decisions\n");
        for (state, entry_id) in candidates {
            match p.entries.iter().find(|e| &e.id == entry_id) {
                Some(e) => {
                    let _ = writeln!(out, "- {state}: {}", transition(e, names));
                }
                None => {
                    let _ = writeln!(out, "- {state}");
                }
            }
        }
        out.push('\n');
    }
    for (name, text) in &p.sections {
        if text.trim().is_empty() {
            continue;
        }
        let _ = writeln!(out, "## {name}\n\n{}\n", text.trim_end());
    }
    if !p.approvals.is_empty() || !p.deciders.is_empty() {
        let mut lines = Vec::new();
        for a in &p.approvals {
            lines.push(format!(
                "- {}, {}, on version {}{}{}",
                names(&a.entry.by),
                utc(a.entry.at),
                versions(&a.entry.heads),
                if a.stale {
                    " (stale: the text changed after it, or the proposal was reopened)"
                } else {
                    ""
                },
                quoted(&a.entry.message)
            ));
        }
        let approved: BTreeSet<&str> = p
            .approvals
            .iter()
            .filter(|a| !a.stale)
            .map(|a| a.entry.by.as_str())
            .collect();
        let mut missing: Vec<String> = p
            .deciders
            .iter()
            .filter(|d| !approved.contains(d.as_str()))
            .map(|d| names(d))
            .collect();
        missing.sort();
        if !missing.is_empty() && !lines.is_empty() {
            lines.push(format!("- Not approved (or stale): {}", missing.join(", ")));
        }
        if !lines.is_empty() {
            let _ = writeln!(out, "## Approvals\n\n{}\n", lines.join("\n"));
        }
    }
    if !p.concerns.is_empty() {
        let _ = writeln!(out, "## Concerns\n");
        for c in &p.concerns {
            let _ = writeln!(
                out,
                "- {}, {}{}{}",
                names(&c.entry.by),
                utc(c.entry.at),
                if c.entry.blocking { ", blocking" } else { "" },
                quoted(&c.entry.message)
            );
            match &c.resolved {
                Some(r) => {
                    let _ = writeln!(
                        out,
                        "  - resolved by {}, {}{}",
                        names(&r.by),
                        utc(r.at),
                        quoted(&r.message)
                    );
                }
                None => {
                    let _ = writeln!(out, "  - unresolved");
                }
            }
        }
        out.push('\n');
    }
    let mut transitions: Vec<&Entry> = p.entries.iter().filter(|e| e.is_transition()).collect();
    transitions.sort_by(|a, b| (a.at, &a.id).cmp(&(b.at, &b.id)));
    if !transitions.is_empty() {
        let _ = writeln!(out, "## History\n");
        for e in transitions {
            let _ = writeln!(out, "- {}", transition(e, names));
        }
        out.push('\n');
    }
    if cx.discussion {
        discussion(&mut out, &p.comments, names);
    }
    one_newline(out)
}

/// The text ending in exactly one newline.
fn one_newline(mut text: String) -> String {
    let kept = text.trim_end().len();
    text.truncate(kept);
    text.push('\n');
    text
}

/// A thread, its text and its discussion.
pub fn thread(t: &Thread, names: &dyn Fn(&str) -> String) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# {}\n\n- Status: {}\n- Author: {}, {}\n- Id: `{}`\n",
        t.title,
        t.lifecycle.state.name(),
        names(&t.author),
        utc(t.created),
        t.id
    );
    if !t.body.trim().is_empty() {
        let _ = writeln!(out, "{}\n", t.body.trim_end());
    }
    discussion(&mut out, &t.comments, names);
    one_newline(out)
}

/// A status update: done, next and blockers, and its discussion.
pub fn update(u: &Update, names: &dyn Fn(&str) -> String) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# {}\n", u.title);
    if !u.period.is_empty() {
        let _ = writeln!(out, "- Period: {}", u.period);
    }
    let _ = writeln!(
        out,
        "- Author: {}, {}\n- Id: `{}`\n",
        names(&u.author),
        utc(u.created),
        u.id
    );
    for (label, text) in [
        ("Done", &u.done),
        ("Next", &u.next),
        ("Blockers", &u.blockers),
    ] {
        if !text.trim().is_empty() {
            let _ = writeln!(out, "## {label}\n\n{}\n", text.trim_end());
        }
    }
    if !u.links.is_empty() {
        let _ = writeln!(out, "## Links\n");
        for l in &u.links {
            let _ = writeln!(out, "- {l}");
        }
        out.push('\n');
    }
    discussion(&mut out, &u.comments, names);
    one_newline(out)
}

/// The comments as a nested list under `## Discussion`, replies under what they answer
/// (iteratively: a forged chain of replies cannot overflow the stack); nothing when there
/// are none.
fn discussion(out: &mut String, comments: &[Comment], names: &dyn Fn(&str) -> String) {
    if comments.is_empty() {
        return;
    }
    let _ = writeln!(out, "## Discussion\n");
    let ids: BTreeSet<&str> = comments.iter().map(|c| c.id.as_str()).collect();
    let mut ordered: Vec<&Comment> = comments.iter().collect();
    ordered.sort_by(|a, b| (a.at, &a.id).cmp(&(b.at, &b.id)));
    // Replies to a comment this node does not have are shown at the top level.
    fn parent_of<'c>(c: &'c Comment, ids: &BTreeSet<&str>) -> Option<&'c str> {
        c.parent.as_deref().filter(|p| ids.contains(p))
    }
    let mut stack: Vec<(&Comment, usize)> = ordered
        .iter()
        .rev()
        .filter(|c| parent_of(c, &ids).is_none())
        .map(|c| (*c, 0))
        .collect();
    let mut seen: BTreeSet<&str> = BTreeSet::new();
    while let Some((c, depth)) = stack.pop() {
        if !seen.insert(c.id.as_str()) {
            continue;
        }
        let indent = "  ".repeat(depth.min(12));
        let body = if c.deleted {
            "*(deleted)*".to_string()
        } else {
            c.body.trim_end().replace('\n', &format!("\n{indent}  "))
        };
        let _ = writeln!(
            out,
            "{indent}- **{}** ({}){}: {body}",
            names(&c.by),
            utc(c.at),
            if c.edited.is_some() { ", edited" } else { "" }
        );
        for reply in ordered
            .iter()
            .rev()
            .filter(|r| parent_of(r, &ids) == Some(c.id.as_str()))
        {
            stack.push((reply, depth + 1));
        }
    }
    out.push('\n');
}

/// One line of the index of decision records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexRow {
    /// The record's file.
    pub file: String,
    /// The proposal's title.
    pub title: String,
    /// Its state.
    pub state: String,
    /// Its date ([`date`]), ms.
    pub date: i64,
}

/// `index.md`: a table of the decision records, oldest first.
pub fn index(workspace: &str, rows: &[IndexRow]) -> String {
    let mut rows: Vec<&IndexRow> = rows.iter().collect();
    rows.sort_by(|a, b| (a.date, &a.file).cmp(&(b.date, &b.file)));
    let mut out = format!(
        "# Decision records of {workspace}\n\n\
         Written by `meridian export --all --format markdown`; rerunning it updates this \
         directory. Dates are in UTC: when a proposal was decided, or created while it is \
         not.\n\n| Date | Decision | State |\n|---|---|---|\n"
    );
    for row in rows {
        let title = row.title.replace('|', "\\|");
        let _ = writeln!(
            out,
            "| {} | [{title}]({}) | {} |",
            utc_day(row.date),
            row.file,
            row.state
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_title_becomes_the_words_of_a_file_name() {
        assert_eq!(slug("Store workspaces in redb"), "store-workspaces-in-redb");
        assert_eq!(
            slug("  RFC: Sync v2 — the relay's log!  "),
            "rfc-sync-v2-the-relay-s-log"
        );
        assert_eq!(slug("Überall Ümlaute"), "überall-ümlaute");
        assert_eq!(slug("???"), "untitled");
        let long = slug(&"word ".repeat(40));
        assert!(long.len() <= 60 && !long.ends_with('-'), "{long}");
        assert_eq!(slug(&"x".repeat(100)).len(), 60);
        // Four-byte letters: a file name has 255 bytes, not characters.
        assert!(slug(&"𝐀".repeat(80)).len() <= 150);
        assert!(slug(&"𝐀𝐁 ".repeat(40)).len() <= 150);
    }

    #[test]
    fn a_record_file_is_found_again_by_its_short_id() {
        assert_eq!(
            short_id_of_file("2026-12-07-store-workspaces-in-redb-889e0d9a.md"),
            Some("889e0d9a")
        );
        for other in [
            "index.md",
            "README.md",
            "2026-12-07-notes.md",
            "0001-record-architecture-decisions.md",
            "2026-12-07-x-889e0d9a.txt",
        ] {
            assert_eq!(short_id_of_file(other), None, "{other}");
        }
        assert_eq!(utc(1_796_652_180_000), "2026-12-07 14:03 UTC");
        assert_eq!(utc_day(1_796_652_180_000), "2026-12-07");
    }

    #[test]
    fn the_index_lists_records_oldest_first_and_escapes_titles() {
        let row = |file: &str, title: &str, date: i64| IndexRow {
            file: file.into(),
            title: title.into(),
            state: "accepted".into(),
            date,
        };
        let index = index(
            "acme",
            &[
                row("b.md", "Later | with a pipe", 2_000_000_000_000),
                row("a.md", "Earlier", 1_000_000_000_000),
            ],
        );
        let a = index.find("(a.md)").unwrap();
        let b = index.find("(b.md)").unwrap();
        assert!(a < b, "{index}");
        assert!(
            index.contains("[Later \\| with a pipe](b.md) | accepted |"),
            "{index}"
        );
    }
}
