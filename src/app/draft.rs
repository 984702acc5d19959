//! Writing documents: new proposals, threads and status updates, and edits to a proposal's
//! title and sections.
//!
//! Names are taken as typed only where a typo cannot pass unnoticed: `--section NAME` must
//! name a section the proposal (or its template) has, and a new section is added by asking
//! for one (`--new-section`). A Markdown file's own headings are deliberate, so they add
//! and, in a whole-document edit, remove sections, and the result says which.

use anyhow::Result;
use automerge::ROOT;
use automerge::transaction::Transactable;
use serde::Serialize;

use super::Context;
use crate::doc::View;
use crate::fail;
use crate::id::Id;
use crate::markdown;
use crate::node::{commit, now_ms};
use crate::norms::DEFAULT_URGENCY;
use crate::proposal::{self, NewProposal};
use crate::thread::{self, NewThread};
use crate::update::{self, NewUpdate};

/// A document written.
#[derive(Clone, Debug, Serialize)]
pub struct Created {
    /// Its id.
    pub id: Id,
    /// Its kind.
    pub kind: crate::doc::Kind,
    /// Its title.
    pub title: String,
    /// Members asked to respond because the text names them (an update's blockers).
    pub named: Vec<String>,
}

/// What a new proposal is made of, as a person gave it.
#[derive(Clone, Debug, Default)]
pub struct ProposalDraft {
    /// Its title.
    pub title: String,
    /// Its template (`rfc`, `adr`, `decision`, or a custom one).
    pub template: String,
    /// A Markdown body whose `## Heading`s are sections.
    pub body: Option<String>,
    /// Section texts by name: each name must be a section of the template or the body.
    pub sections: Vec<(String, String)>,
    /// Sections to add beyond the template.
    pub new_sections: Vec<(String, String)>,
    /// Names of the people asked to respond.
    pub asks: Vec<String>,
    /// Names of the deciders (none: the author alone).
    pub deciders: Vec<String>,
    /// The urgency level (none: the workspace's default).
    pub urgency: Option<String>,
}

/// The urgency level, checked against the workspace's norms.
fn urgency(cx: &Context, urgency: Option<String>) -> Result<String> {
    let urgency = urgency.unwrap_or_else(|| DEFAULT_URGENCY.to_string());
    cx.record.state.norms().level(&urgency)?;
    Ok(urgency)
}

/// The error for a section name the proposal lacks.
pub fn unknown_section(name: &str, sections: &[(String, String)], hint: &str) -> anyhow::Error {
    let names: Vec<&str> = sections.iter().map(|(n, _)| n.as_str()).collect();
    let near = crate::error::closest(name, names.iter().copied())
        .map(|n| format!(" (did you mean `{n}`?)"))
        .unwrap_or_default();
    crate::error::failure(
        crate::error::ErrorKind::NotFound,
        format!(
            "there is no section `{name}`{near}: the sections are {}; {hint}",
            if names.is_empty() {
                "none".to_string()
            } else {
                names.join(", ")
            }
        ),
    )
}

/// Writes a new proposal.
pub fn new_proposal(cx: &Context, draft: ProposalDraft) -> Result<Created> {
    let title = draft.title.trim().to_string();
    if title.is_empty() {
        fail!(Usage, "the title is empty");
    }
    let mut sections: Vec<(String, String)> = cx
        .record
        .state
        .template(&draft.template)?
        .into_iter()
        .map(|name| (name, String::new()))
        .collect();
    if let Some(body) = &draft.body {
        let parsed = markdown::parse(body);
        let mut from_file = parsed.sections;
        if !parsed.preamble.is_empty() {
            from_file.insert(0, (markdown::PREAMBLE_SECTION.to_string(), parsed.preamble));
        }
        for (name, text) in proposal::merge_sections(from_file)? {
            match sections
                .iter_mut()
                .find(|(n, _)| n.eq_ignore_ascii_case(&name))
            {
                Some(section) => section.1 = text,
                None if name == markdown::PREAMBLE_SECTION => sections.insert(0, (name, text)),
                None => sections.push((name, text)),
            }
        }
    }
    for (name, text) in proposal::merge_sections(draft.sections)? {
        let Some(section) = sections
            .iter_mut()
            .find(|(n, _)| n.eq_ignore_ascii_case(&name))
        else {
            return Err(unknown_section(
                &name,
                &sections,
                &format!("add one with --new-section '{name}=TEXT'"),
            ));
        };
        section.1 = text;
    }
    for (name, text) in proposal::merge_sections(draft.new_sections)? {
        if sections.iter().any(|(n, _)| n.eq_ignore_ascii_case(&name)) {
            fail!(
                Usage,
                "the proposal already has a section `{name}`: set it with --section '{name}=TEXT'"
            );
        }
        sections.push((name, text));
    }
    let deciders = if draft.deciders.is_empty() {
        vec![cx.me.clone()]
    } else {
        cx.record.state.find_active(&draft.deciders, "a decider")?
    };
    let new = NewProposal {
        id: Id::random(),
        workspace: cx.workspace,
        title,
        template: draft.template,
        sections,
        deciders,
        asks: cx.record.state.find_active(&draft.asks, "asked")?,
        urgency: urgency(cx, draft.urgency)?,
        author: cx.me.clone(),
        at: now_ms(),
    };
    let message = format!("new proposal: {}", new.title);
    create(cx, new.id, &message, |tx| proposal::create(tx, &new))?;
    Ok(Created {
        id: new.id,
        kind: crate::doc::Kind::Proposal,
        title: new.title,
        named: Vec::new(),
    })
}

/// Starts a thread.
pub fn new_thread(
    cx: &Context,
    title: &str,
    body: &str,
    asks: &[String],
    level: Option<String>,
) -> Result<Created> {
    if title.trim().is_empty() {
        fail!(Usage, "the title is empty");
    }
    if body.trim().is_empty() {
        fail!(
            Usage,
            "aborting: the thread's opening text is empty, so nothing was written"
        );
    }
    let new = NewThread {
        id: Id::random(),
        workspace: cx.workspace,
        title: title.trim().to_string(),
        body: body.to_string(),
        asks: cx.record.state.find_active(asks, "asked")?,
        urgency: urgency(cx, level)?,
        author: cx.me.clone(),
        at: now_ms(),
    };
    let message = format!("new thread: {}", new.title);
    create(cx, new.id, &message, |tx| thread::create(tx, &new))?;
    Ok(Created {
        id: new.id,
        kind: crate::doc::Kind::Thread,
        title: new.title,
        named: Vec::new(),
    })
}

/// Posts a status update: what was done, what is next, what blocks, for `period`.
pub fn new_update(
    cx: &Context,
    parts: [String; 3],
    links: &[String],
    period: String,
) -> Result<Created> {
    if parts.iter().all(|p| p.trim().is_empty()) {
        fail!(
            Usage,
            "the update is empty: give at least one of --done, --next, --blockers"
        );
    }
    let links = links
        .iter()
        .map(|l| cx.document(l).map(|(id, _)| id.hex()))
        .collect::<Result<Vec<_>>>()?;
    // A blocker that names a member (`@Cy`) asks them to respond: the update is in their
    // inbox until they reply, like any request.
    let asks: Vec<String> = update::named_in(&parts[2], &cx.record.state.members)
        .into_iter()
        .filter(|m| *m != cx.me)
        .collect();
    let new = NewUpdate {
        id: Id::random(),
        workspace: cx.workspace,
        title: format!("{}, {period}", cx.name(&cx.me)),
        period,
        parts,
        links,
        author: cx.me.clone(),
        at: now_ms(),
        asks,
        urgency: urgency(cx, None)?,
    };
    let message = format!("status update {}", new.period);
    create(cx, new.id, &message, |tx| update::create(tx, &new))?;
    Ok(Created {
        id: new.id,
        kind: crate::doc::Kind::Update,
        title: new.title,
        named: new.asks,
    })
}

/// Writes a new document with `f`.
fn create(
    cx: &Context,
    id: Id,
    message: &str,
    f: impl FnOnce(&mut automerge::transaction::Transaction<'_>) -> Result<()>,
) -> Result<()> {
    cx.node.edit(cx.workspace, id, |doc| {
        let mut tx = doc.transaction();
        f(&mut tx)?;
        commit(tx, message);
        Ok(())
    })
}

/// One edit of a proposal's text.
#[derive(Clone, Debug)]
pub enum TextEdit {
    /// Replace an existing section's text.
    Section {
        /// Its name (any case).
        name: String,
        /// The new text.
        text: String,
    },
    /// Add a section.
    NewSection {
        /// Its name.
        name: String,
        /// Its text.
        text: String,
    },
    /// Remove a section (its text stays in the history).
    RemoveSection {
        /// Its name (any case).
        name: String,
    },
    /// The whole proposal as Markdown: its title, and a `## Heading` per section. With
    /// `complete` (the person edited every section, in an editor) a section whose heading
    /// is gone is removed; otherwise the sections the text lacks stay as they are.
    Whole {
        /// The Markdown.
        markdown: String,
        /// Whether the text stands for every section.
        complete: bool,
    },
    /// A new title.
    Title(String),
}

/// What an edit changed.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Edited {
    /// The proposal.
    pub id: Option<Id>,
    /// Sections whose text changed.
    pub changed: Vec<String>,
    /// Sections added.
    pub added: Vec<String>,
    /// Sections removed, with how many lines of text each had.
    pub removed: Vec<(String, usize)>,
    /// The title changed.
    pub title_changed: bool,
}

impl Edited {
    /// Whether anything changed.
    pub fn is_empty(&self) -> bool {
        self.changed.is_empty()
            && self.added.is_empty()
            && self.removed.is_empty()
            && !self.title_changed
    }
}

/// A proposal's title and sections as they stand, to edit them.
pub fn current_text(cx: &Context, id: Id) -> Result<(String, Vec<(String, String)>)> {
    let doc = cx.node.load(cx.workspace, id)?;
    let view = View::now(&doc);
    Ok((view.title(), proposal::sections(view)))
}

/// Edits a proposal's title and sections, unless it is decided.
pub fn edit_proposal(cx: &Context, id: Id, edits: Vec<TextEdit>) -> Result<Edited> {
    cx.node.edit(cx.workspace, id, |doc| {
        let view = View::now(doc);
        let state = proposal::state(view).state;
        if proposal::DECIDED.contains(&state.name()) {
            fail!(Refused,
                "{} is {}: its text is final. Write a new proposal that supersedes it (`meridian proposal supersede {} --by NEW`), or reopen it with `meridian proposal reopen {} -m WHY`",
                id.short(),
                state.name(),
                id.short(),
                id.short()
            );
        }
        let current = proposal::sections(view);
        let title = view.title();
        let mut plan = Edited {
            id: Some(id),
            ..Edited::default()
        };
        // The sections to write (name → text), and the ones to remove.
        let mut writes: Vec<(String, String)> = Vec::new();
        let mut removes: Vec<String> = Vec::new();
        let mut new_title: Option<String> = None;
        let find = |name: &str| {
            current
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .cloned()
        };
        for edit in edits {
            match edit {
                TextEdit::Section { name, text } => {
                    let (name, _) = find(&name).ok_or_else(|| {
                        unknown_section(
                            &name,
                            &current,
                            &format!("add one with --new-section '{name}'"),
                        )
                    })?;
                    writes.push((name, text));
                }
                TextEdit::NewSection { name, text } => {
                    let name = name.trim().to_string();
                    if name.is_empty() {
                        fail!(Usage, "a section needs a name");
                    }
                    if let Some((existing, _)) = find(&name) {
                        fail!(Usage, "the proposal already has a section `{existing}`: edit it with --section '{existing}'");
                    }
                    writes.push((name, text));
                }
                TextEdit::RemoveSection { name } => {
                    let (name, _) = find(&name).ok_or_else(|| {
                        unknown_section(&name, &current, "nothing was removed")
                    })?;
                    removes.push(name);
                }
                TextEdit::Whole { markdown: text, complete } => {
                    let parsed = markdown::parse(&text);
                    if parsed.sections.is_empty() && parsed.preamble.is_empty() {
                        fail!(Usage,
                            "the text has no `## Section` headings, so it would remove every section: give --section NAME to set one section from a plain file"
                        );
                    }
                    let mut given = parsed.sections;
                    if !parsed.preamble.is_empty() {
                        given.insert(
                            0,
                            (markdown::PREAMBLE_SECTION.to_string(), parsed.preamble),
                        );
                    }
                    let given = proposal::merge_sections(given)?;
                    for (name, _) in current.iter().filter(|_| complete) {
                        if !given.iter().any(|(n, _)| n.eq_ignore_ascii_case(name)) {
                            removes.push(name.clone());
                        }
                    }
                    for (name, text) in given {
                        let name = find(&name).map(|(n, _)| n).unwrap_or(name);
                        writes.push((name, text));
                    }
                    new_title = parsed.title.or(new_title);
                }
                TextEdit::Title(t) => new_title = Some(t),
            }
        }
        if let Some(t) = &new_title
            && t.trim().is_empty()
        {
            fail!(Usage, "the title is empty");
        }
        plan.title_changed = new_title.as_ref().is_some_and(|t| t.trim() != title);
        let mut tx = doc.transaction();
        for (name, text) in &writes {
            match current.iter().find(|(n, _)| n == name) {
                // A trailing newline more or less is not an edit.
                Some((_, old)) if old.trim_end() == text.trim_end() => {}
                Some(_) => {
                    proposal::set_section(&mut tx, name, text)?;
                    plan.changed.push(name.clone());
                }
                None => {
                    proposal::set_section(&mut tx, name, text)?;
                    plan.added.push(name.clone());
                }
            }
        }
        for name in &removes {
            let lines = current
                .iter()
                .find(|(n, _)| n == name)
                .map_or(0, |(_, t)| t.lines().count());
            proposal::remove_section(&mut tx, name)?;
            plan.removed.push((name.clone(), lines));
        }
        if plan.title_changed {
            let t = new_title.as_deref().unwrap_or_default().trim();
            tx.put(ROOT, "title", t)?;
        }
        if plan.is_empty() {
            tx.rollback();
            return Ok(plan);
        }
        let mut what: Vec<String> = plan.changed.clone();
        what.extend(plan.added.iter().map(|n| format!("+{n}")));
        what.extend(plan.removed.iter().map(|(n, _)| format!("-{n}")));
        if plan.title_changed {
            what.push("title".into());
        }
        commit(tx, &format!("edit {}", what.join(", ")));
        Ok(plan)
    })
}

/// Replaces a proposal's deciders (its author only, while it is undecided): the people
/// whose fresh approval acceptance needs.
pub fn set_deciders(cx: &Context, id: Id, names: &[String]) -> Result<Vec<String>> {
    let ids = cx.record.state.find_active(names, "a decider")?;
    if ids.is_empty() {
        fail!(Usage, "name at least one decider");
    }
    let me = cx.me.clone();
    cx.node.edit(cx.workspace, id, |doc| {
        let view = View::now(doc);
        if view.string(&ROOT, "author") != me {
            fail!(Refused, "only the proposal's author changes its deciders");
        }
        let state = proposal::state(view).state;
        if proposal::DECIDED.contains(&state.name()) {
            fail!(Refused,
                "{} is {}: its deciders are final (`meridian proposal reopen {} -m WHY` reopens it)",
                id.short(),
                state.name(),
                id.short()
            );
        }
        let current = proposal::deciders(view);
        let map = view
            .map(&ROOT, "deciders")
            .ok_or_else(|| anyhow::anyhow!("the proposal has no deciders map"))?;
        let mut tx = doc.transaction();
        for gone in current.iter().filter(|d| !ids.contains(d)) {
            tx.delete(&map, gone.as_str())?;
        }
        for new in ids.iter().filter(|d| !current.contains(d)) {
            tx.put(&map, new.as_str(), true)?;
        }
        if tx.pending_ops() == 0 {
            tx.rollback();
            return Ok(());
        }
        let names: Vec<String> = ids.iter().map(|d| cx.name(d)).collect();
        commit(tx, &format!("deciders: {}", names.join(", ")));
        Ok(())
    })?;
    Ok(ids)
}
