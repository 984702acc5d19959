//! Files that carry changes between nodes without a relay: Meridian bundles (sealed,
//! signed envelopes, as the relay would store them) and saved automerge documents.

use anyhow::{Context, Result, bail};
use automerge::{Automerge, ROOT};
use serde::{Deserialize, Serialize};

use crate::doc::View;
use crate::id::Id;
use crate::ingest::{self, AUTOMERGE_MAGIC, Item, Limits, Report};
use crate::node::Node;
use crate::store::Record;
use crate::workspace;

/// The first bytes of a bundle file.
pub const BUNDLE_MAGIC: &[u8] = b"MERIDIAN-BUNDLE\n";

/// The bundle format version.
pub const BUNDLE_VERSION: u32 = 1;

/// A bundle: one workspace's records for some documents.
#[derive(Debug, Serialize, Deserialize)]
pub struct Bundle {
    /// Format version.
    pub version: u32,
    /// The workspace id.
    #[serde(with = "serde_bytes")]
    pub workspace: Vec<u8>,
    /// Records in the order they apply.
    pub records: Vec<BundleRecord>,
}

/// One record of a bundle.
#[derive(Debug, Serialize, Deserialize)]
pub enum BundleRecord {
    /// An encoded envelope.
    Sealed(#[serde(with = "serde_bytes")] Vec<u8>),
    /// Unsigned change bytes of a document, merged earlier from a saved document.
    Unsigned {
        /// Document id.
        #[serde(with = "serde_bytes")]
        doc: Vec<u8>,
        /// Change bytes.
        #[serde(with = "serde_bytes")]
        changes: Vec<u8>,
    },
}

/// Builds a bundle of `docs` (their whole history) in `workspace`.
pub fn export(node: &Node, workspace: Id, docs: &[Id]) -> Result<Vec<u8>> {
    let mut records = Vec::new();
    for doc in docs {
        for record in node.records(*doc)? {
            records.push(match record {
                Record::Sealed(bytes) => BundleRecord::Sealed(bytes),
                Record::Unsigned(changes) => BundleRecord::Unsigned {
                    doc: doc.0.to_vec(),
                    changes,
                },
            });
        }
    }
    let bundle = Bundle {
        version: BUNDLE_VERSION,
        workspace: workspace.0.to_vec(),
        records,
    };
    let mut bytes = BUNDLE_MAGIC.to_vec();
    ciborium::into_writer(&bundle, &mut bytes).expect("writing CBOR to a Vec cannot fail");
    Ok(bytes)
}

/// What kind of file `merge` was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// A Meridian bundle.
    Bundle,
    /// A saved automerge document (unsigned).
    SavedDocument,
}

/// Merges a bundle or saved document into the node: everything or nothing.
pub fn merge(node: &Node, bytes: &[u8], limits: &Limits) -> Result<(Source, Report)> {
    if bytes.len() > limits.max_input {
        bail!(
            "the file is {} bytes, more than the limit of {} bytes",
            bytes.len(),
            limits.max_input
        );
    }
    if bytes.is_empty() {
        bail!(
            "the file is empty: export a bundle with `meridian export ID --format bundle -o FILE`"
        );
    }
    let mut budget = limits.max_inflated;
    if let Some(body) = bytes.strip_prefix(BUNDLE_MAGIC) {
        let bundle: Bundle = ciborium::from_reader(body).map_err(|e| {
            anyhow::anyhow!("the bundle is damaged or truncated ({e}); nothing was merged")
        })?;
        if bundle.version != BUNDLE_VERSION {
            bail!(
                "bundle version {} is not supported by this meridian (it reads version {BUNDLE_VERSION}): upgrade meridian",
                bundle.version
            );
        }
        let workspace =
            Id::from_slice(&bundle.workspace).context("the bundle's workspace id is damaged")?;
        let (_, record) = known_workspace(node, workspace)?;
        let mut items = Vec::with_capacity(bundle.records.len());
        for (i, entry) in bundle.records.into_iter().enumerate() {
            let item = match entry {
                BundleRecord::Sealed(envelope) => {
                    ingest::open_sealed(&envelope, workspace, &record, &mut budget)
                }
                BundleRecord::Unsigned { doc, changes } => {
                    unsigned_item(&doc, changes, workspace, &record, &mut budget)
                }
            };
            items.push(item.with_context(|| {
                format!(
                    "record {} of the bundle was refused; nothing was merged",
                    i + 1
                )
            })?);
        }
        let report = ingest::apply(node, workspace, items, limits)?;
        return Ok((Source::Bundle, report));
    }
    if bytes.starts_with(&AUTOMERGE_MAGIC) {
        let chunks = ingest::chunks(bytes, &mut budget, true)
            .context("the saved document is damaged; nothing was merged")?;
        drop(chunks);
        let doc = Automerge::load(bytes).map_err(|e| {
            anyhow::anyhow!("the saved document does not load ({e}); nothing was merged")
        })?;
        ingest::check_depth(&doc, limits.max_depth)?;
        let view = View::now(&doc);
        let doc_id = view
            .str(&ROOT, "id")
            .and_then(|h| Id::parse(&h).ok())
            .context("the saved document is not a Meridian document (it has no id)")?;
        let workspace = match view.str(&ROOT, "workspace") {
            Some(w) => Id::parse(&w).context("the saved document's workspace id is damaged")?,
            None => doc_id,
        };
        let (_, record) = known_workspace(node, workspace)?;
        let mut items = Vec::new();
        for change in doc.get_changes(&[]) {
            if workspace::is_genesis_actor(workspace, change.actor_id()) && doc_id == workspace {
                ingest::check_actor(&change, None, doc_id, workspace, &record)?;
                continue;
            }
            ingest::check_actor(&change, None, doc_id, workspace, &record)?;
            items.push(Item {
                doc: doc_id,
                record: Record::Unsigned(change.raw_bytes().to_vec()),
                signer: None,
                changes: vec![change],
            });
        }
        let report = ingest::apply(node, workspace, items, limits)?;
        return Ok((Source::SavedDocument, report));
    }
    bail!(
        "the file is neither a Meridian bundle nor a saved automerge document; nothing was merged"
    )
}

fn unsigned_item(
    doc: &[u8],
    changes: Vec<u8>,
    workspace: Id,
    record: &crate::store::WorkspaceRecord,
    budget: &mut u64,
) -> Result<Item> {
    let doc = Id::from_slice(doc).context("a document id is damaged")?;
    let parsed = ingest::parse_changes(&ingest::chunks(&changes, budget, false)?)?;
    for change in &parsed {
        ingest::check_actor(change, None, doc, workspace, record)?;
    }
    Ok(Item {
        doc,
        record: Record::Unsigned(changes),
        signer: None,
        changes: parsed,
    })
}

fn known_workspace(node: &Node, workspace: Id) -> Result<(Id, crate::store::WorkspaceRecord)> {
    node.workspaces()?
        .into_iter()
        .find(|(id, _)| *id == workspace)
        .with_context(|| format!("the file belongs to workspace {}, which this node has not joined: join it with an invite code first", workspace.short()))
}
