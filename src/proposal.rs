//! Proposals: RFCs, ADRs, decisions and custom templates, with sections of collaborative
//! text, deciders, approvals and concerns, and a lifecycle derived from entries.
//!
//! Every node derives the same state from the same document: a transition counts only if
//! it follows the rules as the document stood when its author made it (its recorded heads),
//! so a misbehaving client cannot accept a proposal its deciders never approved.

use anyhow::Result;
use automerge::transaction::Transactable;
use automerge::{Automerge, ObjType, ROOT, ReadDoc};
use serde::Serialize;

use crate::discussion::{self, Ask, Comment, Entry, Lifecycle, State};
use crate::doc::{View, ensure_map, put_str_list, put_text};
use crate::id::Id;

/// What `proposal new` writes.
pub struct NewProposal {
    /// The new document's id.
    pub id: Id,
    /// Its workspace.
    pub workspace: Id,
    /// Title.
    pub title: String,
    /// Template name.
    pub template: String,
    /// Sections in order, with initial text.
    pub sections: Vec<(String, String)>,
    /// Member ids whose approval acceptance needs.
    pub deciders: Vec<String>,
    /// Member ids asked to respond.
    pub asks: Vec<String>,
    /// Urgency level of the asks.
    pub urgency: String,
    /// The author's member id.
    pub author: String,
    /// Creation time, ms.
    pub at: i64,
}

/// Writes a new proposal into an empty document.
pub fn create<T: Transactable + ReadDoc>(tx: &mut T, new: &NewProposal) -> Result<()> {
    tx.put(ROOT, "id", new.id.hex())?;
    tx.put(ROOT, "kind", "proposal")?;
    tx.put(ROOT, "workspace", new.workspace.hex())?;
    tx.put(ROOT, "title", new.title.as_str())?;
    tx.put(ROOT, "template", new.template.as_str())?;
    tx.put(ROOT, "author", new.author.as_str())?;
    tx.put(ROOT, "created", new.at)?;
    tx.put(ROOT, "urgency", new.urgency.as_str())?;
    let sections = tx.put_object(ROOT, "sections", ObjType::Map)?;
    for (name, text) in &new.sections {
        put_text(tx, &sections, name, text)?;
    }
    let order: Vec<String> = new.sections.iter().map(|(name, _)| name.clone()).collect();
    put_str_list(tx, &ROOT, "order", &order)?;
    let deciders = tx.put_object(ROOT, "deciders", ObjType::Map)?;
    for decider in &new.deciders {
        tx.put(&deciders, decider.as_str(), true)?;
    }
    tx.put_object(ROOT, "entries", ObjType::Map)?;
    tx.put_object(ROOT, "comments", ObjType::Map)?;
    discussion::put_asks(tx, &new.asks, &new.urgency, &new.author, new.at)?;
    Ok(())
}

/// Sections given by name (`--section NAME=TEXT`, a Markdown file), each name once: a name
/// given twice with the same text is given once (names compare case-insensitively), with
/// two texts it is an error naming both.
pub fn merge_sections(given: Vec<(String, String)>) -> Result<Vec<(String, String)>> {
    let mut merged: Vec<(String, String)> = Vec::new();
    for (name, text) in given {
        match merged.iter().find(|(n, _)| n.eq_ignore_ascii_case(&name)) {
            Some((_, earlier)) if *earlier == text => {}
            Some((first, earlier)) => anyhow::bail!(
                "section `{first}` is given twice with different text ({} and {}): give it once",
                quote(earlier),
                quote(&text)
            ),
            None => merged.push((name, text)),
        }
    }
    Ok(merged)
}

/// A text in quotes, cut to its first line and 40 characters, for a message.
fn quote(text: &str) -> String {
    let line = text.lines().next().unwrap_or("");
    let cut: String = line.chars().take(40).collect();
    if cut.len() < text.trim_end().len() {
        format!("\"{cut}…\"")
    } else {
        format!("\"{cut}\"")
    }
}

/// Replaces a section's text with minimal splices, so concurrent edits elsewhere in the
/// section survive; creates the section (at the end) if it does not exist.
pub fn set_section<T: Transactable + ReadDoc>(tx: &mut T, name: &str, text: &str) -> Result<()> {
    let sections = ensure_map(tx, &ROOT, "sections")?;
    match tx.get(&sections, name)? {
        Some((automerge::Value::Object(ObjType::Text), obj)) => tx.update_text(&obj, text)?,
        _ => {
            put_text(tx, &sections, name, text)?;
            let order = match tx.get(ROOT, "order")? {
                Some((automerge::Value::Object(ObjType::List), obj)) => obj,
                _ => tx.put_object(ROOT, "order", ObjType::List)?,
            };
            let len = tx.length(&order);
            tx.insert(&order, len, name)?;
        }
    }
    Ok(())
}

/// The sections in order, with their text.
pub fn sections(view: View<'_>) -> Vec<(String, String)> {
    let Some(map) = view.map(&ROOT, "sections") else {
        return Vec::new();
    };
    let mut names = view.str_list(&ROOT, "order");
    // Sections added concurrently may be missing from the order, or listed twice.
    let mut seen = std::collections::BTreeSet::new();
    names.retain(|n| seen.insert(n.clone()));
    for name in view.keys(&map) {
        if !seen.contains(&name) {
            names.push(name);
        }
    }
    names
        .into_iter()
        .filter_map(|name| {
            let text = view.text_obj(&map, &name).and_then(|t| view.text_of(&t))?;
            Some((name, text))
        })
        .collect()
}

/// The states that end a proposal: its text is final in them.
pub const DECIDED: [&str; 4] = ["accepted", "rejected", "withdrawn", "superseded"];

/// Whether the proposal, as `view` shows it, is decided (accepted, rejected, withdrawn or
/// superseded).
pub fn is_decided(view: View<'_>) -> bool {
    view.kind() == Some(crate::doc::Kind::Proposal)
        && DECIDED.contains(&read(view).lifecycle.state.name())
}

/// An approval, and whether the text changed after it.
#[derive(Clone, Debug, Serialize)]
pub struct Approval {
    /// The approval entry.
    pub entry: Entry,
    /// The text changed after the approval was given.
    pub stale: bool,
}

/// A concern, and its resolution if any.
#[derive(Clone, Debug, Serialize)]
pub struct Concern {
    /// The concern entry.
    pub entry: Entry,
    /// The entry that resolved it.
    pub resolved: Option<Entry>,
}

/// Everything shown about a proposal.
#[derive(Clone, Debug, Serialize)]
pub struct Proposal {
    /// Id.
    pub id: String,
    /// Title.
    pub title: String,
    /// Template.
    pub template: String,
    /// Author member id.
    pub author: String,
    /// Created, ms.
    pub created: i64,
    /// Urgency of the asks.
    pub urgency: String,
    /// Sections in order.
    pub sections: Vec<(String, String)>,
    /// Decider member ids.
    pub deciders: Vec<String>,
    /// Requests for a response.
    pub asks: Vec<Ask>,
    /// Lifecycle.
    pub lifecycle: Lifecycle,
    /// Approvals.
    pub approvals: Vec<Approval>,
    /// Concerns.
    pub concerns: Vec<Concern>,
    /// All entries.
    pub entries: Vec<Entry>,
    /// Comments.
    pub comments: Vec<Comment>,
}

/// Reads a proposal and derives its state.
pub fn read(view: View<'_>) -> Proposal {
    let entries = discussion::entries(view);
    let deciders = view
        .map(&ROOT, "deciders")
        .map(|m| view.keys(&m))
        .unwrap_or_default();
    let sections_now = sections(view);
    let approvals = approvals(view.doc, &entries, &sections_now);
    let author = view.string(&ROOT, "author");
    let concerns = concerns(&entries, &author);
    let lifecycle = lifecycle(view.doc, &entries, &deciders, &author);
    Proposal {
        id: view.string(&ROOT, "id"),
        title: view.title(),
        template: view.string(&ROOT, "template"),
        author: view.string(&ROOT, "author"),
        created: view.int(&ROOT, "created").unwrap_or(0),
        urgency: view.string(&ROOT, "urgency"),
        sections: sections_now,
        deciders,
        asks: discussion::asks(view),
        lifecycle,
        approvals,
        concerns,
        comments: discussion::comments(view),
        entries,
    }
}

fn approvals(
    doc: &Automerge,
    entries: &[Entry],
    sections_now: &[(String, String)],
) -> Vec<Approval> {
    entries
        .iter()
        .filter(|e| e.kind == "approve")
        .map(|entry| {
            let heads = entry.heads();
            Approval {
                stale: sections(View::at(doc, &heads)) != sections_now,
                entry: entry.clone(),
            }
        })
        .collect()
}

/// Concerns with their resolutions; only the person who raised a concern or the proposal's
/// author can resolve it.
fn concerns(entries: &[Entry], author: &str) -> Vec<Concern> {
    entries
        .iter()
        .filter(|e| e.kind == "concern")
        .map(|entry| Concern {
            resolved: entries
                .iter()
                .find(|r| {
                    r.kind == "resolve-concern"
                        && r.target == entry.id
                        && (r.by == entry.by || r.by == author)
                })
                .cloned(),
            entry: entry.clone(),
        })
        .collect()
}

/// Why the proposal cannot be accepted by someone who sees the document as `view` shows
/// it (its deciders, approvals and concerns as they stood then); `None` when it can.
pub fn accept_blockers(view: View<'_>) -> Option<String> {
    let entries = discussion::entries(view);
    let author = view.string(&ROOT, "author");
    let deciders = view
        .map(&ROOT, "deciders")
        .map(|m| view.keys(&m))
        .unwrap_or_default();
    let sections_then = sections(view);
    let approvals = approvals(view.doc, &entries, &sections_then);
    let missing: Vec<&String> = deciders
        .iter()
        .filter(|d| !approvals.iter().any(|a| &a.entry.by == *d && !a.stale))
        .collect();
    if !missing.is_empty() {
        return Some(format!(
            "{} decider(s) have not approved the current text: {}",
            missing.len(),
            missing
                .iter()
                .map(|m| m.as_str())
                .collect::<Vec<_>>()
                .join(",")
        ));
    }
    let blocking: Vec<Concern> = concerns(&entries, &author)
        .into_iter()
        .filter(|c| c.entry.blocking && c.resolved.is_none())
        .collect();
    if let Some(concern) = blocking.first() {
        return Some(format!(
            "{} blocking concern(s) unresolved, first {}",
            blocking.len(),
            crate::id::prefix(&concern.entry.id, 8)
        ));
    }
    None
}

/// Derives the lifecycle with the proposal rules.
pub fn lifecycle(
    doc: &Automerge,
    entries: &[Entry],
    deciders: &[String],
    author: &str,
) -> Lifecycle {
    let rule = |entry: &Entry, before: &State| -> Option<String> {
        let kind = entry.kind.as_str();
        if entry.by != author && !deciders.contains(&entry.by) {
            return Some(format!("only the author or a decider may {kind}"));
        }
        let in_period = matches!(before, State::Open { .. } | State::FinalComment { .. });
        let allowed = match kind {
            "open" => matches!(
                before,
                State::Draft | State::Open { .. } | State::Conflict { .. }
            ),
            "final-comment" => matches!(before, State::Open { .. } | State::Conflict { .. }),
            "accept" | "reject" => in_period || matches!(before, State::Conflict { .. }),
            "withdraw" => in_period || matches!(before, State::Draft | State::Conflict { .. }),
            "supersede" => !matches!(before, State::Withdrawn | State::Superseded { .. }),
            "reopen" => !matches!(before, State::Draft),
            _ => false,
        };
        if !allowed {
            return Some(format!("`{kind}` is not allowed from {}", before.name()));
        }
        if matches!(kind, "accept" | "reject")
            && let Some(closes) = before.closes()
            && entry.at < closes
        {
            return Some(format!(
                "`{kind}` made before the {} period closed",
                before.name()
            ));
        }
        if kind == "accept" {
            let heads = entry.heads();
            if let Some(reason) = accept_blockers(View::at(doc, &heads)) {
                return Some(reason);
            }
        }
        None
    };
    // Transitions by people who may not make them are set aside before the cap on
    // transitions applies, so a flood of them cannot push the real ones out.
    let may = |e: &Entry| !e.is_transition() || e.by == author || deciders.contains(&e.by);
    let counted: Vec<Entry> = entries.iter().filter(|e| may(e)).cloned().collect();
    let mut life = discussion::lifecycle(&counted, State::Draft, &rule);
    for entry in entries.iter().filter(|e| !may(e)) {
        life.ignored.push((
            entry.id.clone(),
            format!("only the author or a decider may {}", entry.kind),
        ));
    }
    life.ignored.sort();
    life
}
