//! The derived index: one small summary per document, rebuilt from the document whenever
//! it changes, so lists and the inbox read only this table and never load a document.

use serde::{Deserialize, Serialize};

use crate::discussion::{self, State};
use crate::doc::{Kind, View, heads_hex};
use crate::history;
use crate::proposal;
use crate::thread;

/// The version of what [`summarize`] writes, kept in the home's `META` table: a home whose
/// summaries are older has them all rebuilt from the documents when it is opened
/// (`node::Node::open`), so a summary need not say its own.
/// 1: deciders, approvals, concerns, the period's start, conflicts, declines, late edits.
/// 2: the workspaces' states are read again too: when a member was removed.
pub const VERSION: u32 = 2;

/// A request for a response, with whether and when it was answered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AskSummary {
    /// The member asked.
    pub member: String,
    /// Urgency level.
    pub urgency: String,
    /// When asked, ms.
    pub at: i64,
    /// Who asked.
    pub by: String,
    /// When they first responded, ms (a decline is not a response).
    pub responded: Option<i64>,
    /// When they declined, and why: the request goes back to the asker, or on along the
    /// escalation ladder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub declined: Option<(i64, String)>,
}

/// An approval, and whether it still stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalSummary {
    /// The approver's member id.
    pub by: String,
    /// When, ms.
    pub at: i64,
    /// The text changed since, or the proposal was reopened since.
    pub stale: bool,
}

/// How a concern was resolved.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResolutionSummary {
    /// Who resolved it.
    pub by: String,
    /// When, ms.
    pub at: i64,
    /// Why (the author's note when resolving someone else's concern).
    pub note: String,
}

/// A concern, and its resolution.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConcernSummary {
    /// The concern's entry id.
    pub id: String,
    /// Who raised it.
    pub by: String,
    /// When, ms.
    pub at: i64,
    /// Whether it blocks acceptance.
    pub blocking: bool,
    /// What it says (its first 200 characters).
    pub message: String,
    /// How it was resolved, if it was.
    pub resolved: Option<ResolutionSummary>,
}

/// What lists and the inbox need to know about a document.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocSummary {
    /// The workspace id.
    #[serde(with = "serde_bytes")]
    pub workspace: Vec<u8>,
    /// Kind.
    pub kind: Kind,
    /// Title (as decided, for a decided proposal).
    pub title: String,
    /// Derived state name (`draft`, `open`, `accepted`, `conflict`, …).
    pub state: String,
    /// When the current period closes, ms.
    pub closes: Option<i64>,
    /// Author member id.
    pub author: String,
    /// Created, ms.
    pub created: i64,
    /// Time of the latest change, ms.
    pub updated: i64,
    /// Author of the latest change (device key hex).
    pub last_author: String,
    /// Current heads, hex.
    pub heads: Vec<String>,
    /// Number of changes.
    pub changes: u64,
    /// Requests for a response.
    pub asks: Vec<AskSummary>,
    /// The urgency of the document's requests (a decider's implied one included).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub urgency: String,
    /// A proposal's deciders.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deciders: Vec<String>,
    /// A proposal's approvals that stand or went stale (retracted ones are left out).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approvals: Vec<ApprovalSummary>,
    /// A proposal's concerns.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub concerns: Vec<ConcernSummary>,
    /// When the current comment period began, ms: deciders are asked from then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opened: Option<i64>,
    /// Fields with concurrent values (`title`, `section NAME`, `state`, …).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conflicts: Vec<String>,
    /// Fields of a decided proposal edited concurrently with the decision.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub late_edits: Vec<String>,
}

impl DocSummary {
    /// A summary of an empty document of `kind`, for tools and tests to fill in.
    pub fn empty(kind: Kind) -> DocSummary {
        DocSummary {
            workspace: vec![0; 16],
            kind,
            title: String::new(),
            state: String::new(),
            closes: None,
            author: String::new(),
            created: 0,
            updated: 0,
            last_author: String::new(),
            heads: Vec::new(),
            changes: 0,
            asks: Vec::new(),
            urgency: String::new(),
            deciders: Vec::new(),
            approvals: Vec::new(),
            concerns: Vec::new(),
            opened: None,
            conflicts: Vec::new(),
            late_edits: Vec::new(),
        }
    }

    /// The comment period is over (or has no end), so a decider could accept once the
    /// approvals and concerns allow it.
    pub fn period_closed(&self, now: i64) -> bool {
        matches!(self.state.as_str(), "open" | "final-comment")
            && self.closes.is_none_or(|c| c <= now)
    }

    /// The deciders whose approval is missing, and whether theirs is stale.
    pub fn missing_approvals(&self) -> Vec<(&str, bool)> {
        self.deciders
            .iter()
            .filter(|d| !self.approvals.iter().any(|a| &a.by == *d && !a.stale))
            .map(|d| {
                let stale = self.approvals.iter().any(|a| &a.by == d);
                (d.as_str(), stale)
            })
            .collect()
    }

    /// The blocking concerns nobody resolved.
    pub fn open_blocking_concerns(&self) -> impl Iterator<Item = &ConcernSummary> {
        self.concerns
            .iter()
            .filter(|c| c.blocking && c.resolved.is_none())
    }

    /// Everything between an undecided proposal and its acceptance at `now`, as
    /// [`proposal::Proposal::obstacles`] says it, from the summary alone.
    pub fn obstacles(&self, now: i64) -> Vec<proposal::Obstacle> {
        let mut obstacles = Vec::new();
        match self.state.as_str() {
            "open" | "final-comment" => {
                if let Some(closes) = self.closes.filter(|c| *c > now) {
                    obstacles.push(proposal::Obstacle::PeriodOpen { closes });
                }
            }
            "conflict" => {}
            other => obstacles.push(proposal::Obstacle::NotInPeriod {
                state: other.to_string(),
            }),
        }
        for (decider, stale) in self.missing_approvals() {
            let decider = decider.to_string();
            obstacles.push(if stale {
                proposal::Obstacle::Stale { decider }
            } else {
                proposal::Obstacle::Unapproved { decider }
            });
        }
        for concern in self.open_blocking_concerns() {
            obstacles.push(proposal::Obstacle::BlockingConcern {
                concern_id: concern.id.clone(),
                by: concern.by.clone(),
                message: concern.message.clone(),
            });
        }
        obstacles
    }

    /// Whether the proposal is decided (its text is final).
    pub fn decided(&self) -> bool {
        proposal::DECIDED.contains(&self.state.as_str())
    }
}

/// Summarises a document as it is now.
pub fn summarize(
    view: View<'_>,
    kind: Kind,
    workspace: &[u8],
    updated: i64,
    last_author: &str,
    changes: u64,
) -> DocSummary {
    let root = automerge::ROOT;
    let author = view.string(&root, "author");
    let entries = discussion::entries(view);
    let comments = discussion::comments(view);
    let mut summary = DocSummary {
        workspace: workspace.to_vec(),
        kind,
        title: view.title(),
        state: match kind {
            Kind::Update => "posted".into(),
            Kind::Workspace => "workspace".into(),
            _ => State::Draft.name().into(),
        },
        closes: None,
        author: author.clone(),
        created: view.int(&root, "created").unwrap_or(0),
        updated,
        last_author: last_author.to_string(),
        heads: heads_hex(&view.doc.get_heads()),
        changes,
        asks: Vec::new(),
        // Only a proposal's urgency is read from the summary (a decider's implied request);
        // asks carry their own.
        urgency: if kind == Kind::Proposal {
            view.string(&root, "urgency")
        } else {
            String::new()
        },
        deciders: Vec::new(),
        approvals: Vec::new(),
        concerns: Vec::new(),
        opened: None,
        conflicts: history::field_conflicts(view)
            .into_iter()
            .map(|c| c.field)
            .collect(),
        late_edits: Vec::new(),
    };
    let lifecycle = match kind {
        Kind::Proposal => {
            let p = proposal::read(view);
            summary.title = p.title.clone();
            summary.deciders = p.deciders.clone();
            summary.approvals = p
                .approvals
                .iter()
                .map(|a| ApprovalSummary {
                    by: a.entry.by.clone(),
                    at: a.entry.at,
                    stale: a.stale,
                })
                .collect();
            summary.concerns = p
                .concerns
                .iter()
                .map(|c| ConcernSummary {
                    id: c.entry.id.clone(),
                    by: c.entry.by.clone(),
                    at: c.entry.at,
                    blocking: c.entry.blocking,
                    message: c.entry.message.chars().take(200).collect(),
                    resolved: c.resolved.as_ref().map(|r| ResolutionSummary {
                        by: r.by.clone(),
                        at: r.at,
                        note: r.message.chars().take(200).collect(),
                    }),
                })
                .collect();
            summary.late_edits = p.late_edits.clone();
            Some(p.lifecycle)
        }
        Kind::Thread => Some(thread::lifecycle(&entries)),
        Kind::Update | Kind::Workspace => None,
    };
    if let Some(lifecycle) = lifecycle {
        summary.state = lifecycle.state.name().into();
        summary.closes = lifecycle.state.closes();
        summary.opened = period_start(&entries, &lifecycle);
        if matches!(lifecycle.state, State::Conflict { .. }) {
            summary.conflicts.push("state".into());
        }
    }
    summary.asks = discussion::asks_from(view, &entries, &author)
        .into_iter()
        .map(|ask| AskSummary {
            responded: discussion::responded_at(&comments, &entries, &ask.member, ask.at),
            declined: discussion::declined_at(&entries, &ask.member, ask.at),
            member: ask.member,
            urgency: ask.urgency,
            at: ask.at,
            by: ask.by,
        })
        .collect();
    summary
}

/// Brings a summary up to date with comments made since it was derived (`ids`, read from
/// `view`), as [`summarize`] would read them: each can be the first response to a request.
/// Costs the new comments, not the discussion.
pub fn note_new_comments(summary: &mut DocSummary, view: View<'_>, ids: &[String]) {
    if ids.is_empty() || summary.asks.is_empty() {
        return;
    }
    let Some(comments) = view.map(&automerge::ROOT, "comments") else {
        return;
    };
    for id in ids.iter().filter(|id| discussion::is_record_id(id)) {
        let Some(comment) = view.map(&comments, id) else {
            continue;
        };
        let by = view.string(&comment, "by");
        let at = view.int(&comment, "at").unwrap_or(0);
        for ask in summary
            .asks
            .iter_mut()
            .filter(|a| a.member == by && at >= a.at)
        {
            ask.responded = Some(ask.responded.map_or(at, |r| r.min(at)));
        }
    }
}

/// When the current comment period began: the first counted `open` or `final-comment`
/// since the last reopen, if the proposal is in a period.
fn period_start(entries: &[discussion::Entry], lifecycle: &discussion::Lifecycle) -> Option<i64> {
    if !matches!(
        lifecycle.state,
        State::Open { .. } | State::FinalComment { .. }
    ) {
        return None;
    }
    let counted = |e: &&discussion::Entry| !lifecycle.ignored.iter().any(|(id, _)| *id == e.id);
    let since = entries
        .iter()
        .filter(counted)
        .filter(|e| e.kind == "reopen")
        .map(|e| e.at)
        .max()
        .unwrap_or(i64::MIN);
    entries
        .iter()
        .filter(counted)
        .filter(|e| matches!(e.kind.as_str(), "open" | "final-comment") && e.at >= since)
        .map(|e| e.at)
        .min()
}
