//! Sync with relays: the protocol state machine ([`session`]), the websocket driver and the
//! daemon ([`net`]), and the store writes they lead to (here).
//!
//! Two invariants make sync crash-safe. The pull cursor moves in the same transaction as the
//! changes it covers, so a node killed mid-sync resumes exactly where it stopped. An
//! envelope leaves the outbox only in the transaction that records the relay's answer for
//! it, so an edit is retried until a relay has it durably.

pub mod net;
pub mod session;

use anyhow::{Context, Result};
use meridian_relay::protocol::PushResult;
use redb::{ReadableTable, WriteTransaction};

use crate::id::Id;
use crate::ingest::{self, Limits, Rejected, Report};
use crate::node::{self, Node};
use crate::store::{self, CURSORS, Cursor, OUTBOX, REJECTED};

/// The stored cursor of one relay of one workspace.
pub fn cursor(node: &Node, workspace: Id, relay: &str) -> Result<Cursor> {
    let txn = node.db().begin_read()?;
    read_cursor(&txn.open_table(CURSORS)?, workspace, relay)
}

fn read_cursor(
    table: &impl ReadableTable<([u8; 16], &'static str), &'static [u8]>,
    workspace: Id,
    relay: &str,
) -> Result<Cursor> {
    match table.get((workspace.0, relay))? {
        Some(bytes) => store::decode(bytes.value(), "sync cursor"),
        None => Ok(Cursor::default()),
    }
}

fn put_cursor(txn: &WriteTransaction, workspace: Id, relay: &str, cursor: &Cursor) -> Result<()> {
    txn.open_table(CURSORS)?
        .insert((workspace.0, relay), store::encode(cursor).as_slice())?;
    Ok(())
}

fn cursor_in(txn: &WriteTransaction, workspace: Id, relay: &str) -> Result<Cursor> {
    read_cursor(&txn.open_table(CURSORS)?, workspace, relay)
}

/// Starts a cursor over for a relay whose log is not the one it was taken against.
pub fn reset_cursor(node: &Node, workspace: Id, relay: &str, relay_id: [u8; 16]) -> Result<()> {
    let txn = node.db().begin_write()?;
    let cursor = Cursor {
        relay: Some(serde_bytes::ByteBuf::from(relay_id.to_vec())),
        pulled: 0,
        pushed: 0,
    };
    put_cursor(&txn, workspace, relay, &cursor)?;
    txn.commit()?;
    Ok(())
}

/// Outbox entries from position `from` on, at most `max` of them.
pub fn outbox(node: &Node, workspace: Id, from: u64, max: usize) -> Result<Vec<(u64, Vec<u8>)>> {
    let txn = node.db().begin_read()?;
    let table = txn.open_table(OUTBOX)?;
    let mut entries = Vec::new();
    for entry in table
        .range((workspace.0, from)..=(workspace.0, u64::MAX))?
        .take(max)
    {
        let (key, value) = entry?;
        entries.push((key.value().1, value.value().to_vec()));
    }
    Ok(entries)
}

/// Opens received entries and applies them, moving the pull cursor in the same transaction.
pub fn apply(
    node: &Node,
    workspace: Id,
    relay: &str,
    entries: Vec<(u64, Vec<u8>)>,
    up_to: u64,
) -> Result<Report> {
    let (_, record) = node.workspace(Some(&workspace.hex()))?;
    let limits = Limits::default();
    let mut budget = limits.max_inflated;
    let mut items = Vec::new();
    let mut refused = Vec::new();
    for (seq, bytes) in entries {
        match ingest::open_sealed(&bytes, workspace, &record, &mut budget) {
            Ok(item) => items.push(item),
            Err(e) => refused.push(rejection(
                Some(&bytes),
                format!("entry {seq} of {relay}: {e:#}"),
            )),
        }
        if budget == 0 {
            budget = limits.max_inflated;
        }
    }
    ingest::apply_received(node, workspace, items, &limits, |txn, report| {
        for rejected in refused {
            ingest::record_rejection(txn, workspace, &rejected)?;
            report.rejected.push(rejected);
        }
        let mut cursor = cursor_in(txn, workspace, relay)?;
        cursor.pulled = cursor.pulled.max(up_to);
        put_cursor(txn, workspace, relay, &cursor)
    })
}

/// A rejection of encoded envelope `bytes`, naming its document and signer when it decodes.
fn rejection(bytes: Option<&[u8]>, reason: String) -> Rejected {
    let envelope = bytes.and_then(|b| meridian_relay::Envelope::decode(b).ok());
    Rejected {
        doc: envelope
            .as_ref()
            .map(|e| hex::encode(&e.doc))
            .unwrap_or_default(),
        signer: envelope.map(|e| hex::encode(e.author)).unwrap_or_default(),
        reason,
    }
}

/// Records the relay's answer for pushed outbox entries: rejections are recorded, and an
/// entry leaves the outbox once every relay of the workspace has answered for it.
pub fn acked(
    node: &Node,
    workspace: Id,
    relay: &str,
    results: &[(u64, PushResult)],
    pushed: Option<u64>,
    pulled: Option<u64>,
) -> Result<Vec<Rejected>> {
    let txn = node.db().begin_write()?;
    let record = node::workspace_record(&txn, workspace)?;
    let mut rejected = Vec::new();
    {
        let outbox = txn.open_table(OUTBOX)?;
        for (seq, result) in results {
            if let PushResult::Rejected(reason) = result {
                let bytes = outbox.get((workspace.0, *seq))?;
                rejected.push(rejection(
                    bytes.as_ref().map(|b| b.value()),
                    format!("{relay} refused this node's change: {reason}"),
                ));
            }
        }
    }
    for r in &rejected {
        ingest::record_rejection(&txn, workspace, r)?;
    }
    let mut cursor = cursor_in(&txn, workspace, relay)?;
    cursor.pushed = cursor.pushed.max(pushed.unwrap_or(0));
    cursor.pulled = cursor.pulled.max(pulled.unwrap_or(0));
    put_cursor(&txn, workspace, relay, &cursor)?;
    // Every relay the workspace lists, and this one, must have answered.
    let mut done = cursor.pushed;
    for other in record.relays.iter().filter(|r| r.as_str() != relay) {
        done = done.min(cursor_in(&txn, workspace, other)?.pushed);
    }
    {
        let mut outbox = txn.open_table(OUTBOX)?;
        let gone = outbox.extract_from_if((workspace.0, 0)..(workspace.0, done), |_, _| true)?;
        for entry in gone {
            entry?;
        }
    }
    txn.commit().context("cannot record the relay's answer")?;
    Ok(rejected)
}

/// Every envelope the node holds for a workspace, the workspace document's first: what a
/// relay that has never seen the workspace's history needs.
pub fn all_envelopes(node: &Node, workspace: Id) -> Result<Vec<Vec<u8>>> {
    let mut docs = vec![workspace];
    docs.extend(node.summaries(workspace)?.into_iter().map(|(id, _)| id));
    let mut envelopes = Vec::new();
    for doc in docs {
        for record in node.records(doc)? {
            let store::Record::Sealed(bytes) = record;
            envelopes.push(bytes);
        }
    }
    Ok(envelopes)
}

/// Envelopes refused during sync, newest last.
pub fn rejections(node: &Node, workspace: Id) -> Result<Vec<Rejected>> {
    let txn = node.db().begin_read()?;
    let table = txn.open_table(REJECTED)?;
    let mut out = Vec::new();
    for entry in table.range((workspace.0, 0)..=(workspace.0, u64::MAX))? {
        out.push(store::decode(entry?.1.value(), "rejection")?);
    }
    Ok(out)
}
