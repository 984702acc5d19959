//! Files that carry changes between nodes without a relay: Meridian bundles (sealed,
//! signed envelopes, as the relay would store them) and saved automerge documents.

use anyhow::{Context, Result, bail};
use automerge::{Automerge, ROOT};
use serde::{Deserialize, Serialize};

use crate::doc::View;
use crate::id::Id;
use crate::ingest::{self, AUTOMERGE_MAGIC, Item, Limits, Report};
use crate::node::Node;
use crate::store::WorkspaceRecord;
use crate::workspace;

/// The first bytes of a bundle file.
pub const BUNDLE_MAGIC: &[u8] = b"MERIDIAN-BUNDLE\n";

/// The bundle format version.
pub const BUNDLE_VERSION: u32 = 1;

/// A bundle: one workspace's envelopes for some documents.
#[derive(Debug, Serialize, Deserialize)]
pub struct Bundle {
    /// Format version.
    pub version: u32,
    /// The workspace id.
    #[serde(with = "serde_bytes")]
    pub workspace: Vec<u8>,
    /// Encoded envelopes, in the order they apply.
    pub envelopes: Vec<serde_bytes::ByteBuf>,
    /// The documents the bundle is of. A shared envelope (several documents' changes,
    /// signed once) also carries parts for documents the bundle is not of; a merge takes
    /// only these documents' parts, as the others may depend on history it does not carry.
    /// Absent from bundles written before shared envelopes: everything is taken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docs: Option<Vec<serde_bytes::ByteBuf>>,
    /// What lets anyone check it with no home (`meridian verify`): present only in a
    /// verifiable export.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disclosure: Option<Disclosure>,
}

/// The keys a verifiable export discloses: one per envelope, opening it and no other
/// ([`crate::seal::Disclosed`]), and the workspace's creator, the root every membership is
/// checked from.
#[derive(Debug, Serialize, Deserialize)]
pub struct Disclosure {
    /// The creator's device key.
    #[serde(with = "serde_bytes")]
    pub creator: Vec<u8>,
    /// The salt the workspace id was derived with from the creator's key, when the
    /// creator exported it: the id then proves who created the workspace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub salt: Option<serde_bytes::ByteBuf>,
    /// Per envelope, in order: its key (`None` for a keyring record, which is not sealed).
    pub keys: Vec<Option<crate::seal::Disclosed>>,
}

/// A verifiable export of one document: [`export`]'s bundle of it and the workspace
/// document, with a [`Disclosure`]. The documents other than these two whose changes it
/// discloses too (an envelope that carries several documents' changes, sent in one push,
/// opens whole or not at all).
pub fn export_verifiable(node: &Node, workspace: Id, doc: Id) -> Result<(Vec<u8>, Vec<Id>)> {
    let (_, record) = node.workspace(Some(&workspace.hex()))?;
    let envelopes = node.envelopes(&[workspace, doc])?;
    let mut keys = Vec::with_capacity(envelopes.len());
    let mut others = std::collections::BTreeSet::new();
    for bytes in &envelopes {
        let envelope = meridian_relay::Envelope::decode_stored(bytes)
            .context("a stored envelope is damaged")?;
        others.extend(
            envelope
                .doc_ids()
                .into_iter()
                .map(Id)
                .filter(|d| *d != workspace && *d != doc),
        );
        keys.push(Some(crate::seal::disclose(&record, &envelope)?));
    }
    let disclosure = Disclosure {
        creator: record.creator.clone(),
        salt: record.salt.clone(),
        keys,
    };
    let bytes = write(workspace, envelopes, &[workspace, doc], Some(disclosure));
    Ok((bytes, others.into_iter().collect()))
}

/// Builds a bundle of `docs` (their whole history) in `workspace`.
pub fn export(node: &Node, workspace: Id, docs: &[Id]) -> Result<Vec<u8>> {
    // The keyring records first: a member who merges the bundle may not hold the epochs
    // its envelopes are sealed under yet.
    let mut envelopes = crate::epochs::adopted_envelopes(&node.db().begin_read()?, workspace)?;
    envelopes.extend(node.envelopes(docs)?);
    Ok(write(workspace, envelopes, docs, None))
}

/// The bytes of a bundle of `envelopes` of `docs` in `workspace`.
fn write(
    workspace: Id,
    envelopes: Vec<Vec<u8>>,
    docs: &[Id],
    disclosure: Option<Disclosure>,
) -> Vec<u8> {
    let bundle = Bundle {
        version: BUNDLE_VERSION,
        workspace: workspace.0.to_vec(),
        envelopes: envelopes
            .into_iter()
            .map(serde_bytes::ByteBuf::from)
            .collect(),
        docs: Some(
            docs.iter()
                .map(|d| serde_bytes::ByteBuf::from(d.0.to_vec()))
                .collect(),
        ),
        disclosure,
    };
    let mut bytes = BUNDLE_MAGIC.to_vec();
    ciborium::into_writer(&bundle, &mut bytes).expect("writing CBOR to a Vec cannot fail");
    bytes
}

/// What kind of file `merge` was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// A Meridian bundle.
    Bundle,
    /// A saved automerge document.
    SavedDocument,
}

/// A file read and checked up to the point of applying it.
pub struct Opened {
    /// What kind of file it was.
    pub source: Source,
    /// The workspace its changes belong to.
    pub workspace: Id,
    /// The verified envelopes and their changes.
    pub items: Vec<Item>,
    /// Envelopes sealed under an epoch this device holds no key of yet, whose record the
    /// bundle carries but which waits for workspace changes the items bring ([`merge`]
    /// applies the items, adopts it, and opens these).
    pub waiting: Vec<(usize, meridian_relay::Envelope)>,
    /// The keyring records it carries (signatures checked), kept by [`merge`].
    pub records: Vec<meridian_relay::Envelope>,
    /// The documents a bundle is of (`None`: all it carries).
    pub docs: Option<Vec<Id>>,
}

/// Merges a bundle or saved document into the node: everything or nothing.
pub fn merge(node: &Node, bytes: &[u8], limits: &Limits) -> Result<(Source, Report)> {
    let opened = open(node, bytes, limits)?;
    let workspace = opened.workspace;
    let txn = node.db().begin_write()?;
    for envelope in &opened.records {
        crate::epochs::receive(&txn, workspace, envelope)
            .context("a keyring record of the bundle was refused; nothing was merged")?;
    }
    let mut report = ingest::apply_in(&txn, node, workspace, opened.items, limits)?;
    if !opened.records.is_empty() {
        // Sealed under an epoch whose record waited for the workspace changes this bundle
        // also carries, now applied: adopt it, then open and apply the rest, in the same
        // transaction.
        let mut record = crate::node::workspace_record(&txn, workspace)?;
        let settled = crate::epochs::settle(&txn, node.key(), workspace, &mut record)?;
        if let Some(refused) = settled.refused.first() {
            bail!("{}; nothing was merged", refused.reason);
        }
        let mut budget = ingest::Budget::new(limits);
        let mut items = Vec::new();
        for (i, envelope) in opened.waiting {
            let got = ingest::open_envelope(envelope, workspace, &record, &mut budget);
            match got {
                Ok(got) => items.extend(
                    got.into_iter()
                        .filter(|item| opened.docs.as_ref().is_none_or(|d| d.contains(&item.doc))),
                ),
                Err(e) if e.is::<crate::seal::UnknownEpoch>() => return Err(not_received(i)),
                Err(e) => return Err(e.context(refused(i))),
            }
        }
        let more = ingest::apply_in(&txn, node, workspace, items, limits)?;
        report.documents.extend(more.documents);
        report.applied += more.applied;
        report.known += more.known;
    }
    txn.commit()?;
    // Records the bundle carried may have waited for the workspace changes it also
    // carried; envelopes held from sync may open with what it brought.
    let settled = node.settle_epochs(workspace)?;
    report.documents.extend(settled.documents);
    report.applied += settled.applied;
    node.settle_removals(workspace)?;
    Ok((opened.source, report))
}

/// Reads a bundle or saved document and checks everything that can be checked before
/// applying it: size, shape, signatures, decryption, decompression bounds, authorship.
pub fn open(node: &Node, bytes: &[u8], limits: &Limits) -> Result<Opened> {
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
    if let Some(body) = bytes.strip_prefix(BUNDLE_MAGIC) {
        return open_bundle(node, body, limits);
    }
    if bytes.starts_with(&AUTOMERGE_MAGIC) {
        let (workspace, items) = open_saved(node, bytes, limits)?;
        return Ok(Opened {
            source: Source::SavedDocument,
            workspace,
            items,
            waiting: Vec::new(),
            records: Vec::new(),
            docs: None,
        });
    }
    bail!(
        "the file is neither a Meridian bundle nor a saved automerge document; nothing was merged"
    )
}

fn open_bundle(node: &Node, body: &[u8], limits: &Limits) -> Result<Opened> {
    let bundle: Bundle = meridian_relay::cbor::from_slice(body).map_err(|e| {
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
    let record = known_workspace(node, workspace)?;
    let docs: Option<std::collections::HashSet<&[u8]>> = bundle
        .docs
        .as_ref()
        .map(|docs| docs.iter().map(|d| d.as_slice()).collect());
    let mut budget = ingest::Budget::new(limits);
    let mut items = Vec::with_capacity(bundle.envelopes.len());
    let mut records = Vec::new();
    let mut waiting = Vec::new();
    let wanted = |item: &Item| docs.as_ref().is_none_or(|d| d.contains(&item.doc.0[..]));
    let encoded: Vec<&[u8]> = bundle.envelopes.iter().map(|e| e.as_slice()).collect();
    ingest::each_verified(&encoded, |i, envelope| {
        let envelope = envelope
            .map_err(anyhow::Error::from)
            .with_context(|| refused(i))?;
        if envelope.is_keyring() {
            if envelope.workspace_id() != workspace.0 {
                return Err(
                    anyhow::anyhow!("a keyring record of another workspace").context(refused(i))
                );
            }
            records.push(envelope);
            return Ok(());
        }
        // One sealed under an epoch not held yet waits for the records the bundle carries
        // (`merge` adopts them once the items are applied).
        if !crate::seal::holds_epoch(&record, &envelope) {
            waiting.push((i, envelope));
            return Ok(());
        }
        let opened = ingest::open_envelope(envelope, workspace, &record, &mut budget)
            .with_context(|| refused(i))?;
        items.extend(opened.into_iter().filter(wanted));
        Ok::<_, anyhow::Error>(())
    })?;
    if let Some((i, _)) = waiting.first().filter(|_| records.is_empty()) {
        return Err(not_received(*i));
    }
    let docs = docs.map(|docs| docs.iter().filter_map(|d| Id::from_slice(d)).collect());
    Ok(Opened {
        source: Source::Bundle,
        workspace,
        items,
        waiting,
        records,
        docs,
    })
}

/// Why the bundle's envelope `i` (from 0) was refused.
fn refused(i: usize) -> String {
    format!(
        "envelope {} of the bundle was refused; nothing was merged",
        i + 1
    )
}

/// The bundle's envelope `i` (from 0) is sealed under a key this device does not hold.
fn not_received(i: usize) -> anyhow::Error {
    anyhow::anyhow!(
        "envelope {} of the bundle is sealed under a key this device has not received: sync with the workspace's relays (`meridian sync`), then merge again; nothing was merged",
        i + 1
    )
}

/// A saved automerge document carries no signatures, so the only changes taken from it are
/// this device's own (re-sealed and signed now, as at any local edit). Taking anyone else's
/// would let whoever wrote the file put words in their name.
fn open_saved(node: &Node, bytes: &[u8], limits: &Limits) -> Result<(Id, Vec<Item>)> {
    ingest::Budget::new(limits)
        .open(bytes.len(), |left| {
            ingest::chunks(bytes, left, true).map(drop)
        })
        .map_err(|e| {
            let what = if e.is::<ingest::TooManyOps>() {
                "the saved document was refused; nothing was merged"
            } else {
                "the saved document is damaged; nothing was merged"
            };
            e.context(what)
        })?;
    let doc = ingest::guard(|| Automerge::load(bytes)).map_err(|e| {
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
    let record = known_workspace(node, workspace)?;
    let local = node.load(workspace, doc_id).ok();
    let is_known = |change: &automerge::Change| {
        local
            .as_ref()
            .is_some_and(|l| l.get_change_meta_by_hash(&change.hash()).is_some())
    };
    let mut new: Vec<automerge::Change> = doc
        .get_changes(&[])
        .into_iter()
        .filter(|c| !is_known(c) && !workspace::is_genesis_actor(workspace, c.actor_id()))
        .collect();
    let own = node.actor();
    let mut others: Vec<String> = new
        .iter()
        .filter(|c| c.actor_id() != &own)
        .map(|c| {
            let key = crate::identity::actor_key(c.actor_id())
                .map(hex::encode)
                .unwrap_or_default();
            record.state.name_of(&key)
        })
        .collect();
    others.sort();
    others.dedup();
    if !others.is_empty() {
        bail!(
            "the saved document holds {} change(s) by {} that this node does not have; saved documents carry no signatures, so only your own changes are taken from them: ask for a bundle instead (`meridian export ID --format bundle`); nothing was merged",
            new.iter().filter(|c| c.actor_id() != &own).count(),
            others.join(", ")
        );
    }
    let sealer = crate::seal::Sealer::of(&record)?;
    let signer = node.key().verifying_key().to_bytes();
    // Sealed as an edit's changes are: together, in envelopes of at most
    // `MAX_SEALED_BYTES` of change bytes each, one signature for each envelope.
    let groups = crate::node::sealing_groups(&mut new);
    let mut new = new.into_iter();
    let items = groups
        .into_iter()
        .map(|(count, group)| {
            let plaintext = crate::seal::changes_plaintext(&group);
            Item {
                doc: doc_id,
                carrier: ingest::Carrier::Whole(
                    sealer
                        .seal(node.key(), workspace, &[doc_id], &plaintext)
                        .encode(),
                ),
                signer,
                changes: new.by_ref().take(count).collect(),
                snapshot: None,
            }
        })
        .collect();
    Ok((workspace, items))
}

fn known_workspace(node: &Node, workspace: Id) -> Result<WorkspaceRecord> {
    node.workspaces()?
        .into_iter()
        .find(|(id, _)| *id == workspace)
        .map(|(_, record)| record)
        .with_context(|| {
            format!(
                "the file belongs to workspace {}, which this node has not joined: join it with an invite code first",
                workspace.short()
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::commit;
    use crate::node::tests::new_home;
    use automerge::transaction::Transactable;

    #[test]
    fn a_saved_document_of_ones_own_changes_is_sealed_in_envelopes_of_many() {
        let tmp = tempfile::tempdir().unwrap();
        let (home, workspace) = new_home(&tmp);
        let node = Node::open(&home).unwrap();
        // A thread this device wrote elsewhere and saved: created, then retitled 300 times.
        let id = Id::random();
        let mut doc = Automerge::new();
        doc.set_actor(node.actor());
        let mut tx = doc.transaction();
        crate::thread::create(
            &mut tx,
            &crate::thread::NewThread {
                id,
                workspace,
                title: "Elsewhere".into(),
                body: "body".into(),
                asks: vec![],
                urgency: "normal".into(),
                author: node.member_id(),
                at: crate::node::now_ms(),
            },
        )
        .unwrap();
        commit(tx, "new thread");
        for i in 0..300 {
            let mut tx = doc.transaction();
            tx.put(ROOT, "title", format!("Take {i}")).unwrap();
            commit(tx, "retitle");
        }
        let limits = Limits::default();
        let opened = open(&node, &doc.save(), &limits).unwrap();
        assert_eq!(opened.source, Source::SavedDocument);
        assert_eq!(opened.items.len(), 1, "one envelope for all 301 changes");
        assert_eq!(opened.items[0].changes.len(), 301);
        let outbox = crate::sync::outbox(&node, workspace, 0, usize::MAX)
            .unwrap()
            .len();
        let report = ingest::apply(&node, workspace, opened.items, &limits).unwrap();
        assert_eq!(report.applied, 301);
        assert_eq!(node.history(id).unwrap().len(), 301);
        assert_eq!(
            node.load(workspace, id).unwrap().get_heads(),
            doc.get_heads()
        );
        let queued = crate::sync::outbox(&node, workspace, 0, usize::MAX).unwrap();
        assert_eq!(queued.len(), outbox + 1);
    }
}
