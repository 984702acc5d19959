//! Document snapshots for relays: the workspace creator's node seals a whole document (one
//! compressed automerge save) and hands it to each relay, which gives it to a member who
//! subscribes with none of the document in place of the document's entries. A new member's
//! first copy of a long document then costs about one compressed save, not its whole
//! history of envelopes.
//!
//! Only the creator makes snapshots, and nodes accept only the creator's: a snapshot carries
//! other members' changes under one signature, so whoever signs it vouches for all of them,
//! and the creator is already the root of membership every node trusts. (A member's whole
//! document of only their own changes is taken on the terms of change chunks, rebuilt from
//! its changes; it is no snapshot.) `ARCHITECTURE.md`
//! ("Snapshots") has the reasoning and what it costs.

use anyhow::Result;
use redb::{ReadableTable, ReadableTableMetadata};
use serde::{Deserialize, Serialize};

use crate::id::Id;
use crate::index::DocSummary;
use crate::node::{self, Node};
use crate::seal;
use crate::store::{self, CHECKPOINTS, DOCS, HELD, HISTORY, META, RECORDS};
use crate::sync::session::Snapshot;

/// When a document gets a snapshot.
#[derive(Clone, Copy, Debug)]
pub struct Policy {
    /// The fewest changes a document needs before a snapshot of it is worth making: below
    /// it, the document's own envelopes are about as small.
    pub min_changes: u64,
    /// How much a document must have grown since its last snapshot on a relay (a factor on
    /// its change count) before it gets another: with 2, sizes at least double from one
    /// snapshot to the next, so all of a document's snapshots together cost under twice its
    /// last one.
    pub growth: u64,
    /// The most snapshots made in one call, so one sync round is not held up for long.
    pub max_per_round: usize,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            min_changes: 16,
            growth: 2,
            max_per_round: 64,
        }
    }
}

/// What a node remembers of the last snapshot it gave a relay for a document.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Sent {
    /// The log position the snapshot covered.
    pub covers: u64,
    /// The document's change count then.
    pub changes: u64,
    /// Whether the relay kept it (or had a newer one).
    pub kept: bool,
}

/// The snapshots due for `relay` whose log this node has applied up to `covers`, largest
/// documents first. Empty unless this node's device
/// created the workspace.
pub fn due(
    node: &Node,
    workspace: Id,
    relay: &str,
    covers: u64,
    policy: &Policy,
) -> Result<Vec<Snapshot>> {
    let (_, record) = node.workspace(Some(&workspace.hex()))?;
    if record.creator != node.key().verifying_key().to_bytes() || covers == 0 {
        return Ok(Vec::new());
    }
    // No key to seal under yet (concurrent removals, a repair epoch not started): no
    // snapshot until there is one.
    let sealer = match seal::Sealer::of(&record) {
        Ok(sealer) => sealer,
        Err(e) if e.is::<seal::NoSafeEpoch>() => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let txn = node.db().begin_read()?;
    let sent_table = txn.open_table(store::SNAPSHOTS_SENT)?;
    let held = txn.open_table(HELD)?;
    // Nothing was due when the store last looked like this: skip the scan of the index (as
    // long as `inbox` takes, 25–30 ms at 10,000 documents) on every idle sync round.
    let idle_key = format!(
        "snapshots-idle/{}/{}/{}/{relay}",
        workspace.hex(),
        policy.min_changes,
        policy.growth
    );
    let fingerprint = {
        let mut bytes = txn.open_table(HISTORY)?.len()?.to_le_bytes().to_vec();
        bytes.extend_from_slice(&held.len()?.to_le_bytes());
        bytes
    };
    if txn
        .open_table(META)?
        .get(idle_key.as_str())?
        .is_some_and(|stored| stored.value() == fingerprint.as_slice())
    {
        return Ok(Vec::new());
    }
    let mut candidates = Vec::new();
    for (doc, summary) in node.summaries(workspace)? {
        if summary.changes < policy.min_changes {
            continue;
        }
        let sent: Sent = match sent_table.get((workspace.0, relay, doc.0))? {
            Some(bytes) => store::decode(bytes.value(), "snapshot record")?,
            None => Sent::default(),
        };
        if summary.changes < sent.changes.saturating_mul(policy.growth) {
            continue;
        }
        // A held envelope is in the relay's log but not in the document: a snapshot would
        // make new members skip it.
        if held.range((doc.0, 0)..=(doc.0, u64::MAX))?.next().is_some() {
            continue;
        }
        candidates.push((summary.changes, doc));
    }
    candidates.sort_by(|a, b| b.cmp(a));
    let records = txn.open_table(RECORDS)?;
    let checkpoints = txn.open_table(CHECKPOINTS)?;
    let mut out = Vec::new();
    let mut too_large = Vec::new();
    for (_, doc) in candidates.into_iter().take(policy.max_per_round) {
        let loaded = node::load_doc(&records, &checkpoints, &record, workspace, doc)?;
        let saved = loaded.doc.save();
        let ops = automerge::ReadDoc::stats(&loaded.doc).num_ops;
        if saved.len() > meridian_relay::envelope::MAX_ENVELOPE_BYTES - 1024
            || ops > crate::ingest::Limits::default().max_document_ops as u64
        {
            // Too large for one envelope, or for members to take whole: they replay this
            // document's entries, and the document is looked at again when it has doubled.
            too_large.push(doc.0);
            continue;
        }
        let envelope = sealer.seal(node.key(), workspace, &[doc], &saved).encode();
        out.push(Snapshot {
            doc: doc.0,
            covers,
            envelope,
        });
    }
    drop((records, checkpoints, held, sent_table, txn));
    for doc in too_large {
        answered(node, workspace, relay, doc, covers, false)?;
    }
    if out.is_empty() {
        // History only grows, so the same counts mean no document gained changes. (A held
        // envelope refused for good and another held since leave the counts as they were:
        // a snapshot then waits for the next change anywhere.)
        let txn = node.db().begin_write()?;
        txn.open_table(META)?
            .insert(idle_key.as_str(), fingerprint.as_slice())?;
        txn.commit()?;
    }
    Ok(out)
}

/// Records a relay's answer for a snapshot.
pub fn answered(
    node: &Node,
    workspace: Id,
    relay: &str,
    doc: [u8; 16],
    covers: u64,
    kept: bool,
) -> Result<()> {
    let txn = node.db().begin_write()?;
    let changes = match txn.open_table(DOCS)?.get(doc)? {
        Some(bytes) => store::decode::<DocSummary>(bytes.value(), "index entry")?.changes,
        None => 0,
    };
    let sent = Sent {
        covers,
        changes,
        kept,
    };
    txn.open_table(store::SNAPSHOTS_SENT)?
        .insert((workspace.0, relay, doc), store::encode(&sent).as_slice())?;
    txn.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::tests::{new_home, new_thread, retitle};

    const RELAY: &str = "ws://relay.test/v1";

    #[test]
    fn an_idle_round_skips_the_scan_until_a_document_changes() {
        let tmp = tempfile::tempdir().unwrap();
        let (home, workspace) = new_home(&tmp);
        let node = Node::open(&home).unwrap();
        let doc = new_thread(&node, workspace, "t").unwrap();
        let policy = Policy {
            min_changes: 1,
            ..Policy::default()
        };
        let due_docs = || -> Vec<[u8; 16]> {
            due(&node, workspace, RELAY, 7, &policy)
                .unwrap()
                .into_iter()
                .map(|s| s.doc)
                .collect()
        };
        assert!(due_docs().contains(&doc.0));
        answered(&node, workspace, RELAY, doc.0, 7, true).unwrap();
        assert_eq!(
            due_docs(),
            Vec::<[u8; 16]>::new(),
            "nothing new: nothing due"
        );

        // Forget the answer behind the scan's back: with the store's counts unchanged the
        // scan is skipped, so the document is not found due again...
        let txn = node.db().begin_write().unwrap();
        txn.open_table(store::SNAPSHOTS_SENT)
            .unwrap()
            .remove((workspace.0, RELAY, doc.0))
            .unwrap();
        txn.commit().unwrap();
        assert_eq!(due_docs(), Vec::<[u8; 16]>::new());
        // ...until a change anywhere makes it look again.
        retitle(&node, workspace, doc, "t2").unwrap();
        assert!(due_docs().contains(&doc.0));
    }
}
