//! The derived index: one small summary per document, rebuilt from the document whenever
//! it changes, so lists and the inbox read only this table and never load a document.

use serde::{Deserialize, Serialize};

use crate::discussion::{self, State};
use crate::doc::{Kind, View, heads_hex};
use crate::proposal;
use crate::thread;

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
    /// When they first responded, ms.
    pub responded: Option<i64>,
}

/// What lists and the inbox need to know about a document.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocSummary {
    /// The workspace id.
    #[serde(with = "serde_bytes")]
    pub workspace: Vec<u8>,
    /// Kind.
    pub kind: Kind,
    /// Title.
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
    let entries = discussion::entries(view);
    let comments = discussion::comments(view);
    let state: State = match kind {
        Kind::Proposal => {
            let deciders = view
                .map(&automerge::ROOT, "deciders")
                .map(|m| view.keys(&m))
                .unwrap_or_default();
            proposal::lifecycle(
                view.doc,
                &entries,
                &deciders,
                &view.string(&automerge::ROOT, "author"),
            )
            .state
        }
        Kind::Thread => thread::lifecycle(&entries).state,
        Kind::Update | Kind::Workspace => State::Draft,
    };
    let asks = discussion::asks(view)
        .into_iter()
        .map(|ask| AskSummary {
            responded: discussion::responded_at(&comments, &entries, &ask.member, ask.at),
            member: ask.member,
            urgency: ask.urgency,
            at: ask.at,
            by: ask.by,
        })
        .collect();
    DocSummary {
        workspace: workspace.to_vec(),
        kind,
        title: view.title(),
        state: match kind {
            Kind::Update => "posted".into(),
            Kind::Workspace => "workspace".into(),
            _ => state.name().into(),
        },
        closes: state.closes(),
        author: view.string(&automerge::ROOT, "author"),
        created: view.int(&automerge::ROOT, "created").unwrap_or(0),
        updated,
        last_author: last_author.to_string(),
        heads: heads_hex(&view.doc.get_heads()),
        changes,
        asks,
    }
}
