//! Proposals: RFCs, ADRs, decisions and custom templates, with sections of collaborative
//! text, deciders, approvals and concerns, and a lifecycle derived from entries.
//!
//! Every node derives the same state from the same document: a transition counts only if
//! it follows the rules as the document stood when its author made it (its recorded heads),
//! so a misbehaving client cannot accept a proposal its deciders never approved.

use anyhow::Result;
use automerge::transaction::Transactable;
use std::collections::BTreeSet;

use automerge::{Automerge, ChangeHash, ObjType, ROOT, ReadDoc};
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

/// Removes a section: its text leaves the document as it stands (the history keeps it).
pub fn remove_section<T: Transactable + ReadDoc>(tx: &mut T, name: &str) -> Result<()> {
    let sections = ensure_map(tx, &ROOT, "sections")?;
    tx.delete(&sections, name)?;
    if let Some((automerge::Value::Object(ObjType::List), order)) = tx.get(ROOT, "order")? {
        let len = tx.length(&order);
        for i in (0..len).rev() {
            if let Some((automerge::Value::Scalar(s), _)) = tx.get(&order, i)?
                && s.as_str() == Some(name)
            {
                tx.delete(&order, i)?;
            }
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

/// An approval, and whether it still stands for the text.
#[derive(Clone, Debug, Serialize)]
pub struct Approval {
    /// The approval entry.
    pub entry: Entry,
    /// The text changed after the approval was given, or the proposal was reopened after
    /// it: the approver must approve again.
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
    /// Title: as decided, once the proposal is decided.
    pub title: String,
    /// Template.
    pub template: String,
    /// Author member id.
    pub author: String,
    /// Created, ms.
    pub created: i64,
    /// Urgency of the asks.
    pub urgency: String,
    /// Sections in order: as decided, once the proposal is decided.
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
    /// The document heads the decision was made on, once decided.
    pub decided_at: Option<Vec<String>>,
    /// Fields edited concurrently with the decision, by someone who had not seen it
    /// (`title`, `section NAME`): kept in the document, but not part of the decided text.
    pub late_edits: Vec<String>,
}

/// The deciders of a proposal as `view` shows it.
pub fn deciders(view: View<'_>) -> Vec<String> {
    view.map(&ROOT, "deciders")
        .map(|m| view.keys(&m))
        .unwrap_or_default()
}

/// The lifecycle alone, without reading sections or comments.
pub fn state(view: View<'_>) -> Lifecycle {
    let entries = discussion::entries(view);
    lifecycle(
        view.doc,
        &entries,
        &deciders(view),
        &view.string(&ROOT, "author"),
    )
}

/// The heads a decided proposal was decided on: those of the transitions that decided it.
pub fn decided_heads(life: &Lifecycle, entries: &[Entry]) -> Option<Vec<ChangeHash>> {
    if !DECIDED.contains(&life.state.name()) {
        return None;
    }
    let mut heads: Vec<ChangeHash> = entries
        .iter()
        .filter(|e| life.tips.contains(&e.id))
        .flat_map(Entry::heads)
        .collect();
    heads.sort();
    heads.dedup();
    Some(heads)
}

/// Whether a change made on `deps` may still edit the proposal's title or sections: not
/// once the proposal, as its author saw it, was decided. The rules check every replica's
/// changes with this, so a decided text stays decided everywhere.
pub fn text_is_final(doc: &Automerge, deps: &[ChangeHash]) -> bool {
    DECIDED.contains(&state(View::at(doc, deps)).state.name())
}

/// Reads a proposal and derives its state.
pub fn read(view: View<'_>) -> Proposal {
    let entries = discussion::entries(view);
    let deciders = deciders(view);
    let author = view.string(&ROOT, "author");
    let lifecycle = lifecycle(view.doc, &entries, &deciders, &author);
    let sections_now = sections(view);
    let decided = decided_heads(&lifecycle, &entries);
    let (title, shown, late_edits) = match &decided {
        Some(heads) => {
            let then = View::at(view.doc, heads);
            let (title, sections_then) = (then.title(), sections(then));
            let mut late = Vec::new();
            if title != view.title() {
                late.push("title".to_string());
            }
            for (name, text) in &sections_now {
                if sections_then
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, t)| t)
                    != Some(text)
                {
                    late.push(format!("section {name}"));
                }
            }
            for (name, _) in &sections_then {
                if !sections_now.iter().any(|(n, _)| n == name) {
                    late.push(format!("section {name}"));
                }
            }
            (title, sections_then, late)
        }
        None => (view.title(), sections_now, Vec::new()),
    };
    let approvals = approvals(view.doc, &entries, &shown, &deciders, &author);
    let concerns = concerns(&entries, &author);
    Proposal {
        id: view.string(&ROOT, "id"),
        title,
        template: view.string(&ROOT, "template"),
        author,
        created: view.int(&ROOT, "created").unwrap_or(0),
        urgency: view.string(&ROOT, "urgency"),
        sections: shown,
        deciders,
        asks: discussion::asks(view),
        lifecycle,
        approvals,
        concerns,
        comments: discussion::comments(view),
        entries,
        decided_at: decided.map(|h| crate::doc::heads_hex(&h)),
        late_edits,
    }
}

/// Approvals, each stale when the text differs from `text` (the text as it stands, or as
/// decided) or when the author or a decider reopened the proposal after seeing it.
fn approvals(
    doc: &Automerge,
    entries: &[Entry],
    text: &[(String, String)],
    deciders: &[String],
    author: &str,
) -> Vec<Approval> {
    // Approvals a reopen by the author or a decider saw, and approvals their own approver
    // retracted (`unapprove`) after seeing them.
    let mut reopened: BTreeSet<String> = BTreeSet::new();
    let mut retracted: BTreeSet<String> = BTreeSet::new();
    for later in entries.iter().filter(|e| {
        (e.kind == "reopen" && (e.by == author || deciders.contains(&e.by)))
            || e.kind == "unapprove"
    }) {
        let heads = later.heads();
        for seen in discussion::entries(View::at(doc, &heads))
            .into_iter()
            .filter(|e| e.kind == "approve")
        {
            if later.kind == "reopen" {
                reopened.insert(seen.id);
            } else if seen.by == later.by {
                retracted.insert(seen.id);
            }
        }
    }
    entries
        .iter()
        .filter(|e| e.kind == "approve" && !retracted.contains(&e.id))
        .map(|entry| {
            let heads = entry.heads();
            Approval {
                stale: reopened.contains(&entry.id) || sections(View::at(doc, &heads)) != text,
                entry: entry.clone(),
            }
        })
        .collect()
}

/// Concerns with their resolutions: the first resolution by the person who raised the
/// concern or by the proposal's author counts. (`meridian proposal resolve` asks the author
/// for a note saying why; the note is shown beside the concern and reported to its raiser.)
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

/// One thing that stands between a proposal and its acceptance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Obstacle {
    /// A decider has not approved.
    Unapproved {
        /// The decider's member id.
        decider: String,
    },
    /// A decider approved a text that changed since, or before the proposal was reopened.
    Stale {
        /// The decider's member id.
        decider: String,
    },
    /// A blocking concern nobody resolved.
    BlockingConcern {
        /// The concern's entry id.
        concern_id: String,
        /// Who raised it.
        by: String,
        /// What it says.
        message: String,
    },
    /// The proposal is not in a comment period (a draft is opened first).
    NotInPeriod {
        /// Its state.
        state: String,
    },
    /// The comment period has not closed yet.
    PeriodOpen {
        /// When it closes, ms.
        closes: i64,
    },
}

/// How [`Obstacle::describe`] is told a member is the reader.
pub const YOU: &str = "you";

impl Obstacle {
    /// The obstacle in words, members named by `name` and times written by `time`. A
    /// `name` of `you` (the reader) is addressed as such: "you have not approved".
    pub fn describe(&self, name: &dyn Fn(&str) -> String, time: &dyn Fn(i64) -> String) -> String {
        let whose = |id: &str| match name(id).as_str() {
            YOU => "your".to_string(),
            other => format!("{other}'s"),
        };
        match self {
            Obstacle::Unapproved { decider } => match name(decider).as_str() {
                YOU => "you have not approved".to_string(),
                other => format!("{other} has not approved"),
            },
            Obstacle::Stale { decider } if name(decider) == YOU => {
                "your approval is stale: the text changed since (approve it again)".to_string()
            }
            Obstacle::Stale { decider } => format!(
                "{} approval is stale: the text changed since (they approve again)",
                whose(decider)
            ),
            Obstacle::BlockingConcern {
                concern_id,
                by,
                message,
            } => format!(
                "{} blocking concern {} is open: {}",
                whose(by),
                crate::id::prefix(concern_id, 8),
                crate::id::prefix(message, 80)
            ),
            Obstacle::NotInPeriod { state } if state == "draft" => {
                "it is a draft: open the comment period first (`meridian proposal open ID`)".into()
            }
            Obstacle::NotInPeriod { state } => format!("it is {state}"),
            Obstacle::PeriodOpen { closes } => {
                format!("its comment period closes {}", time(*closes))
            }
        }
    }
}

/// What stands between the proposal, as `view` shows it, and acceptance by its deciders:
/// missing and stale approvals, open blocking concerns, every one of them (the comment
/// period is judged by [`Proposal::obstacles`], which knows the time).
pub fn obstacles(view: View<'_>) -> Vec<Obstacle> {
    let entries = discussion::entries(view);
    let author = view.string(&ROOT, "author");
    let deciders = deciders(view);
    let sections_then = sections(view);
    let approvals = approvals(view.doc, &entries, &sections_then, &deciders, &author);
    let concerns = concerns(&entries, &author);
    approval_obstacles(&deciders, &approvals, &concerns)
}

fn approval_obstacles(
    deciders: &[String],
    approvals: &[Approval],
    concerns: &[Concern],
) -> Vec<Obstacle> {
    let mut obstacles = Vec::new();
    for decider in deciders {
        let theirs: Vec<&Approval> = approvals
            .iter()
            .filter(|a| &a.entry.by == decider)
            .collect();
        if theirs.iter().any(|a| !a.stale) {
            continue;
        }
        obstacles.push(if theirs.is_empty() {
            Obstacle::Unapproved {
                decider: decider.clone(),
            }
        } else {
            Obstacle::Stale {
                decider: decider.clone(),
            }
        });
    }
    for concern in concerns
        .iter()
        .filter(|c| c.entry.blocking && c.resolved.is_none())
    {
        obstacles.push(Obstacle::BlockingConcern {
            concern_id: concern.entry.id.clone(),
            by: concern.entry.by.clone(),
            message: concern.entry.message.clone(),
        });
    }
    obstacles
}

impl Proposal {
    /// Everything that stands between the proposal and its acceptance at `now` (ms): its
    /// state and comment period, every missing or stale approval, every open blocking
    /// concern. Empty when a decider can accept it now.
    pub fn obstacles(&self, now: i64) -> Vec<Obstacle> {
        let mut obstacles = Vec::new();
        match &self.lifecycle.state {
            State::Open { closes } | State::FinalComment { closes } => {
                if let Some(closes) = closes.filter(|c| *c > now) {
                    obstacles.push(Obstacle::PeriodOpen { closes });
                }
            }
            State::Conflict { .. } => {}
            other => obstacles.push(Obstacle::NotInPeriod {
                state: other.name().to_string(),
            }),
        }
        obstacles.extend(approval_obstacles(
            &self.deciders,
            &self.approvals,
            &self.concerns,
        ));
        obstacles
    }
}

/// Why the proposal cannot be accepted by someone who sees the document as `view` shows
/// it (its deciders, approvals and concerns as they stood then); `None` when it can.
pub fn accept_blockers(view: View<'_>) -> Option<String> {
    let obstacles = obstacles(view);
    if obstacles.is_empty() {
        return None;
    }
    let ids = |id: &str| id.to_string();
    let no_time = |_: i64| String::new();
    Some(
        obstacles
            .iter()
            .map(|o| o.describe(&ids, &no_time))
            .collect::<Vec<_>>()
            .join("; "),
    )
}

/// Derives the lifecycle with the proposal rules.
pub fn lifecycle(
    doc: &Automerge,
    entries: &[Entry],
    deciders: &[String],
    author: &str,
) -> Lifecycle {
    // Who decided is judged as each transition's author saw the document: deciders the
    // author removes later (or concurrently) keep the transitions they made while deciders.
    let at_heads: std::cell::RefCell<std::collections::HashMap<Vec<String>, Vec<String>>> =
        Default::default();
    let may_decide = |e: &Entry| -> bool {
        if e.by == author {
            return true;
        }
        let mut cache = at_heads.borrow_mut();
        let then = cache.entry(e.heads.clone()).or_insert_with(|| {
            if e.heads.is_empty() {
                deciders.to_vec()
            } else {
                self::deciders(View::at(doc, &e.heads()))
            }
        });
        then.contains(&e.by)
    };
    let rule = |entry: &Entry, before: &State| -> Option<String> {
        let kind = entry.kind.as_str();
        if !may_decide(entry) {
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
    let may = |e: &Entry| !e.is_transition() || may_decide(e);
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
