//! The inbox, the first screen of the product: for every workspace (or one), what waits
//! for the person, what they wait on from others, and what happened, in words, in the
//! documents that changed since they read them.
//!
//! Waiting-for and waiting-on come from the index alone (`crate::inbox`); what happened
//! needs each changed document and the heads the person last read it at, so it is read for
//! the documents that changed last (`limit`, or [`HAPPENED_SHOWN`]; the rest are counted).

use anyhow::Result;
use serde::Serialize;

use crate::doc::{Kind, View, parse_heads};
use crate::id::Id;
use crate::inbox::{self, Event, Item, Wait};
use crate::node::Node;

/// How much of the inbox to read.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Only this workspace.
    pub workspace: Option<Id>,
    /// Only documents of this kind.
    pub kind: Option<Kind>,
    /// At most this many entries in each part of each workspace (`None`: every request
    /// and wait, and the [`HAPPENED_SHOWN`] documents that changed last).
    pub limit: Option<usize>,
    /// The moment the inbox is for, ms (deadlines are judged against it).
    pub now: i64,
}

/// The documents that changed since they were read shown per workspace when no limit is
/// given (each is loaded to say what happened in it; the rest are counted).
pub const HAPPENED_SHOWN: usize = 20;

/// The inbox of every workspace asked for.
#[derive(Clone, Debug, Serialize)]
pub struct Inbox {
    /// One part per workspace, by name.
    pub workspaces: Vec<WorkspaceInbox>,
}

/// One workspace's part of the inbox.
#[derive(Clone, Debug, Serialize)]
pub struct WorkspaceInbox {
    /// The workspace.
    pub id: Id,
    /// Its name.
    pub name: String,
    /// What waits for the person.
    pub waiting_for_you: Vec<Item>,
    /// What the person waits on.
    pub waiting_on_others: Vec<Wait>,
    /// Documents changed by others since the person read them, newest first.
    pub happened: Vec<Happened>,
    /// How many entries each part had before `limit` cut it: waiting for you, waiting on
    /// others, happened.
    pub totals: [usize; 3],
}

/// A document that changed since it was read, and what happened in it.
#[derive(Clone, Debug, Serialize)]
pub struct Happened {
    /// The document.
    pub id: Id,
    /// Its kind.
    pub kind: Kind,
    /// Its title.
    pub title: String,
    /// Its state.
    pub state: String,
    /// When it last changed, ms.
    pub updated: i64,
    /// Who changed it last (device key hex).
    pub last_author: String,
    /// What happened since it was read.
    pub events: Vec<Event>,
}

impl Happened {
    /// What happened in a document since the heads `marker` (the person's read marker, or
    /// the heads before a sync; `None`: never read), leaving out what `me` did.
    pub fn read(
        node: &Node,
        workspace: Id,
        (id, summary): (Id, &crate::index::DocSummary),
        marker: Option<&Vec<String>>,
        me: &str,
    ) -> Result<Happened> {
        let doc = node.load(workspace, id)?;
        let heads = marker.map(|m| parse_heads(m));
        let before = heads.as_ref().map(|heads| View::at(&doc, heads));
        Ok(Happened {
            id,
            kind: summary.kind,
            title: summary.title.clone(),
            state: summary.state.clone(),
            updated: summary.updated,
            last_author: summary.last_author.clone(),
            events: inbox::events(before, View::now(&doc), me),
        })
    }
}

impl Inbox {
    /// Items waiting for the person, in every workspace, before any limit; how many are
    /// overdue; items waiting on others; documents that changed.
    pub fn counts(&self) -> (usize, usize, usize, usize) {
        let mut counts = (0, 0, 0, 0);
        for w in &self.workspaces {
            counts.0 += w.totals[0];
            counts.1 += w.waiting_for_you.iter().filter(|i| i.overdue).count();
            counts.2 += w.totals[1];
            counts.3 += w.totals[2];
        }
        counts
    }
}

/// Reads the inbox of `me` on `node`.
pub fn inbox(node: &Node, me: &str, options: &Options) -> Result<Inbox> {
    let markers = node.read_markers()?;
    let mut workspaces = Vec::new();
    for (workspace, record) in node.workspaces()? {
        if options.workspace.is_some_and(|w| w != workspace) {
            continue;
        }
        let summaries: Vec<_> = node
            .summaries(workspace)?
            .into_iter()
            .filter(|(_, s)| options.kind.is_none_or(|k| s.kind == k))
            .collect();
        let state = &record.state;
        let joined = state
            .members
            .iter()
            .find(|m| m.id == me)
            .and_then(|m| m.joined)
            .filter(|_| record.creator != hex::decode(me).unwrap_or_default());
        let mut waiting_for_you = inbox::waiting_for(me, &summaries, state, options.now);
        let mut waiting_on_others = inbox::waiting_on(me, &summaries, state, options.now);
        let changed = inbox::changed(me, &summaries, &markers, joined);
        let totals = [
            waiting_for_you.len(),
            waiting_on_others.len(),
            changed.len(),
        ];
        if let Some(limit) = options.limit {
            waiting_for_you.truncate(limit);
            waiting_on_others.truncate(limit);
        }
        let shown = options.limit.unwrap_or(HAPPENED_SHOWN);
        let mut happened = Vec::new();
        for (id, summary) in changed.into_iter().take(shown) {
            happened.push(Happened::read(
                node,
                workspace,
                (*id, summary),
                markers.get(id),
                me,
            )?);
        }
        workspaces.push(WorkspaceInbox {
            id: workspace,
            name: record.name.clone(),
            waiting_for_you,
            waiting_on_others,
            happened,
            totals,
        });
    }
    workspaces.sort_by(|a, b| (&a.name, a.id).cmp(&(&b.name, b.id)));
    Ok(Inbox { workspaces })
}
