//! One round with a workspace's relays, told as what a person cares about: how many of
//! their edits went out, and what arrived, document by document, in the words the inbox
//! uses ("2 new replies (Bo, Cy)", "accepted by Ana"). The envelopes, log positions and
//! held changes behind it stay in each relay's [`RoundReport`], for `-v` and for scripts.

use std::collections::BTreeMap;

use anyhow::Result;
use serde::Serialize;

use super::inbox::Happened;
use crate::doc::Kind;
use crate::id::Id;
use crate::inbox::Event;
use crate::node::Node;
use crate::sync::net::{self, RoundReport};

/// What a round with every relay did.
#[derive(Debug)]
pub struct Synced {
    /// Each relay's round, in the order given: its report, or why it failed.
    pub rounds: Vec<(String, Result<RoundReport>)>,
    /// Edits of this device that reached at least one relay.
    pub sent: usize,
    /// What arrived, per document that changed, the latest first: the [`RECEIVED_READ`]
    /// that changed last.
    pub received: Vec<Happened>,
    /// How many documents others changed (`received` holds the latest of them).
    pub received_total: usize,
    /// Members who joined, by id.
    pub joined: Vec<String>,
}

impl Synced {
    /// Whether nothing moved either way (and every relay answered).
    pub fn up_to_date(&self) -> bool {
        self.sent == 0
            && self.received_total == 0
            && self.joined.is_empty()
            && self.rounds.iter().all(|(_, r)| r.is_ok())
    }

    /// Changes from others applied here, over every relay.
    pub fn applied(&self) -> usize {
        self.ok().map(|r| r.applied).sum()
    }

    /// The reports of the relays that answered.
    pub fn ok(&self) -> impl Iterator<Item = &RoundReport> {
        self.rounds.iter().filter_map(|(_, r)| r.as_ref().ok())
    }
}

/// How many of the documents that changed in a round are read to say what happened in
/// them; the rest are counted.
pub const RECEIVED_READ: usize = 20;

/// What a relay's round has done so far, for a progress line while it runs.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Progress {
    /// The relay.
    pub relay: String,
    /// Edits sent so far.
    pub sent: usize,
    /// Changes received and applied so far.
    pub received: usize,
}

/// Syncs `workspace` with `relays`, one after the other, telling `progress` as changes
/// are stored; then reads what arrived against what was here before.
pub fn sync(
    node: &Node,
    workspace: Id,
    relays: &[String],
    progress: &mut dyn FnMut(&Progress),
) -> Result<Synced> {
    let before: BTreeMap<Id, Vec<String>> = node
        .summaries(workspace)?
        .into_iter()
        .map(|(id, summary)| (id, summary.heads))
        .collect();
    let members_before: Vec<String> = node
        .workspace(Some(&workspace.hex()))?
        .1
        .state
        .members
        .iter()
        .map(|m| m.id.clone())
        .collect();
    let rounds = net::sync_once_with(node, workspace, relays, &mut |report| {
        progress(&Progress {
            relay: report.relay.clone(),
            sent: report.pushed,
            received: report.applied,
        })
    })?;
    let me = node.member_id();
    let mut changed: Vec<Id> = Vec::new();
    for (_, round) in &rounds {
        if let Ok(report) = round {
            for doc in &report.documents {
                if let Ok(id) = Id::parse(doc)
                    && id != workspace
                    && !changed.contains(&id)
                {
                    changed.push(id);
                }
            }
        }
    }
    let summaries: BTreeMap<Id, _> = node.summaries(workspace)?.into_iter().collect();
    // Newest first; what happened is read for the latest only (each is a document loaded),
    // so a week offline in a busy workspace does not load every document again.
    let mut changed: Vec<(Id, &crate::index::DocSummary)> = changed
        .into_iter()
        .filter_map(|id| Some((id, summaries.get(&id)?)))
        .collect();
    changed.sort_by_key(|(_, s)| std::cmp::Reverse(s.updated));
    let mut received_total = changed.len();
    let mut received = Vec::new();
    for (id, summary) in changed.into_iter().take(RECEIVED_READ) {
        let happened = Happened::read(node, workspace, (id, summary), before.get(&id), &me)?;
        // A document that only changed by this person's other devices is not news.
        if happened.events.is_empty() && summary.last_author == me {
            received_total -= 1;
            continue;
        }
        received.push(happened);
    }
    let joined = node
        .workspace(Some(&workspace.hex()))?
        .1
        .state
        .members
        .iter()
        .filter(|m| !members_before.contains(&m.id) && m.id != me)
        .map(|m| m.id.clone())
        .collect();
    let sent = rounds
        .iter()
        .filter_map(|(_, r)| r.as_ref().ok())
        .map(|r| r.pushed)
        .max()
        .unwrap_or(0);
    Ok(Synced {
        rounds,
        sent,
        received,
        received_total,
        joined,
    })
}

/// A short phrase for what arrived in one document, for a one-line summary:
/// `2 replies on "Release date?"`, `a decision on "Store workspaces in redb"`,
/// `new proposal "Adopt jiff"`. Titles are given in full; the caller shortens.
pub fn gist(happened: &Happened) -> Gist {
    let decided = happened.events.iter().any(|e| {
        matches!(e, Event::Transition { state, .. }
            if matches!(state.as_str(), "accepted" | "rejected" | "withdrawn" | "superseded"))
    });
    if happened
        .events
        .iter()
        .any(|e| matches!(e, Event::Created { .. }))
    {
        return Gist::New(happened.kind);
    }
    if decided {
        return Gist::Decision;
    }
    let replies: usize = happened
        .events
        .iter()
        .map(|e| match e {
            Event::Replies { count, .. } => *count,
            _ => 0,
        })
        .sum();
    if replies > 0 && happened.events.len() == 1 {
        return Gist::Replies(replies);
    }
    if happened.kind == Kind::Proposal
        && happened
            .events
            .iter()
            .all(|e| matches!(e, Event::Approved { .. }))
        && !happened.events.is_empty()
    {
        return Gist::Approvals(happened.events.len());
    }
    Gist::Changes
}

/// What kind of news a document brings, for a one-line summary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gist {
    /// A document new to this node.
    New(Kind),
    /// A proposal was decided (accepted, rejected, withdrawn, superseded).
    Decision,
    /// Only replies, this many.
    Replies(usize),
    /// Only approvals, this many.
    Approvals(usize),
    /// Anything else.
    Changes,
}
