//! Documents as Markdown (`meridian export ID --format markdown`) and a workspace's
//! decision records as a directory (`meridian export --all --format markdown -o DIR`).
//! What each record says is `record`'s; this finds the proposals a record links to.

use anyhow::Result;

use super::Context;
use crate::discussion::State;
use crate::doc::{Kind, View};
use crate::id::Id;
use crate::index::DocSummary;
use crate::proposal::{self, Proposal};
use crate::record::{self, IndexRow, Related};
use crate::{thread, update};

/// A document as Markdown: a proposal as its decision record (with its comments when
/// `discussion`), a thread or an update with its discussion.
pub fn markdown(cx: &Context, id: Id, summary: &DocSummary, discussion: bool) -> Result<String> {
    let doc = cx.node.load(cx.workspace, id)?;
    let view = View::now(&doc);
    let names = |member: &str| cx.name(member);
    Ok(match summary.kind {
        Kind::Proposal => {
            let p = proposal::read(view);
            let superseded = superseded(cx)?;
            // Titles from the index; a record alone links to nothing.
            let (superseded_by, supersedes) = links(&p, &superseded, |other| {
                let (_, summary) = cx.node.resolve(cx.workspace, other).ok()?;
                Some((summary.title, None))
            });
            record::proposal(
                &p,
                &record::Context {
                    names: &names,
                    superseded_by,
                    supersedes,
                    discussion,
                },
            )
        }
        Kind::Thread => record::thread(&thread::read(view), &names),
        _ => record::update(&update::read(view), &names),
    })
}

/// Every proposal of the workspace as a decision record: its index row (which names its
/// file) and its text. Records link to each other by file.
pub fn decision_records(cx: &Context, discussion: bool) -> Result<Vec<(IndexRow, String)>> {
    let mut proposals = Vec::new();
    for (id, summary) in cx.node.summaries(cx.workspace)? {
        if summary.kind != Kind::Proposal {
            continue;
        }
        let doc = cx.node.load(cx.workspace, id)?;
        proposals.push(proposal::read(View::now(&doc)));
    }
    let files: std::collections::HashMap<String, (String, String)> = proposals
        .iter()
        .map(|p| (p.id.clone(), (p.title.clone(), record::file_name(p))))
        .collect();
    let superseded: Vec<(String, String, String)> = proposals
        .iter()
        .filter_map(|p| match &p.lifecycle.state {
            State::Superseded { by } => Some((p.id.clone(), p.title.clone(), by.clone())),
            _ => None,
        })
        .collect();
    let names = |member: &str| cx.name(member);
    let mut records = Vec::with_capacity(proposals.len());
    for p in &proposals {
        let (superseded_by, supersedes) = links(p, &superseded, |id| {
            files
                .get(id)
                .map(|(title, file)| (title.clone(), Some(file.clone())))
        });
        let text = record::proposal(
            p,
            &record::Context {
                names: &names,
                superseded_by,
                supersedes,
                discussion,
            },
        );
        records.push((
            IndexRow {
                file: record::file_name(p),
                title: p.title.clone(),
                state: p.lifecycle.state.name().to_string(),
                date: record::date(p),
            },
            text,
        ));
    }
    Ok(records)
}

/// The superseded proposals of the workspace: (id, title, the id of what superseded it).
/// Only those whose index says "superseded" are read.
fn superseded(cx: &Context) -> Result<Vec<(String, String, String)>> {
    let mut found = Vec::new();
    for (id, summary) in cx.node.summaries(cx.workspace)? {
        if summary.kind != Kind::Proposal || summary.state != "superseded" {
            continue;
        }
        let doc = cx.node.load(cx.workspace, id)?;
        let view = View::now(&doc);
        if let State::Superseded { by } = proposal::state(view).state {
            found.push((id.hex(), summary.title.clone(), by));
        }
    }
    Ok(found)
}

/// What superseded `p` and what `p` superseded, with the title and file `known` gives for
/// an id (a link by id otherwise).
fn links(
    p: &Proposal,
    superseded: &[(String, String, String)],
    known: impl Fn(&str) -> Option<(String, Option<String>)>,
) -> (Option<Related>, Vec<Related>) {
    let related = |id: &str, title: Option<&str>| {
        let known = known(id);
        Related {
            id: id.to_string(),
            title: known
                .as_ref()
                .map(|(t, _)| t.clone())
                .or(title.map(str::to_string))
                .unwrap_or_else(|| format!("proposal {}", crate::id::prefix(id, 8))),
            file: known.and_then(|(_, f)| f),
        }
    };
    let superseded_by = match &p.lifecycle.state {
        State::Superseded { by } => Some(related(by, None)),
        _ => None,
    };
    let supersedes = superseded
        .iter()
        .filter(|(id, _, by)| by == &p.id && id != &p.id)
        .map(|(id, title, _)| related(id, Some(title)))
        .collect();
    (superseded_by, supersedes)
}
