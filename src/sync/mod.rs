//! Sync with relays: the protocol state machine ([`session`]), the websocket driver and the
//! daemon ([`net`]), and the store reads and writes they lead to (here), among them the
//! coalescing of outbox entries into fewer envelopes before a push.
//!
//! Two invariants make sync crash-safe. The pull cursor moves in the same transaction as the
//! changes it covers, so a node killed mid-sync resumes exactly where it stopped. An
//! envelope leaves the outbox only in the transaction that records the relay's answer for
//! it, so an edit is retried until a relay has it durably.

pub mod net;
pub mod session;

use anyhow::{Context, Result};
use ed25519_dalek::SigningKey;
use meridian_relay::Envelope;
use meridian_relay::protocol::PushResult;
use redb::{ReadableTable, WriteTransaction};

use crate::id::Id;
use crate::ingest::{self, Limits, Rejected, Report};
use crate::node::{self, Node};
use crate::seal::{self, WorkspaceKey};
use crate::store::{self, CURSORS, Cursor, OUTBOX, REJECTED};
use session::Outgoing;

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

/// Outbox entries from position `from` on (at most `max` of them) as they are pushed:
/// runs of consecutive entries of one document coalesced by [`coalesce`].
pub fn outgoing(node: &Node, workspace: Id, from: u64, max: usize) -> Result<Vec<Outgoing>> {
    let entries = outbox(node, workspace, from, max)?;
    if entries.len() < 2 {
        return Ok(coalesce(node.key(), None, workspace, entries));
    }
    let (_, record) = node.workspace(Some(&workspace.hex()))?;
    let key: WorkspaceKey = record
        .key
        .as_slice()
        .try_into()
        .context("the workspace key is damaged")?;
    Ok(coalesce(node.key(), Some(&key), workspace, entries))
}

/// Turns outbox entries (position, envelope), in order, into the envelopes a push carries:
/// each run of consecutive entries of one document becomes one envelope, newly sealed and
/// signed by `device`, whose plaintext is all their changes compressed together
/// ([`seal::deflate_changes`]), up to [`node::MAX_SEALED_BYTES`] of change bytes a run.
///
/// Every change of a run was written by this device (the outbox holds only its own), so
/// receivers accept the run as one envelope. An entry alone, or one that does not open with
/// `key` as this device's envelope of this workspace, travels as it is. A run is pushed,
/// acknowledged and retried whole; a retried run is sealed afresh (another nonce, so
/// another envelope for the relay), and receivers skip the changes they already have.
/// The node's own stored records keep the entries as they were.
pub fn coalesce(
    device: &SigningKey,
    key: Option<&WorkspaceKey>,
    workspace: Id,
    entries: Vec<(u64, Vec<u8>)>,
) -> Vec<Outgoing> {
    /// A run being built: the document, its entries, and their change bytes.
    struct Run {
        doc: Id,
        entries: Vec<(u64, Vec<u8>)>,
        changes: Vec<u8>,
    }
    let own = device.verifying_key().to_bytes();
    let open = |bytes: &[u8]| -> Option<(Id, Vec<u8>)> {
        let key = key?;
        // The device signs the run afresh and must vouch only for what it had signed. The
        // outbox holds only what this node signed or verified when storing it, so the
        // signature is not checked again (30 µs an entry, a tenth of a push); a damaged
        // entry fails to open (the AEAD binds its ids and author) and travels as it is,
        // for the relay to refuse.
        let envelope = Envelope::decode_stored(bytes).ok()?;
        if envelope.author != own || envelope.workspace_id() != workspace.0 {
            return None;
        }
        let plaintext = seal::open(key, &envelope).ok()?;
        let mut budget = Limits::default().max_inflated;
        let changes = ingest::plaintext_changes(&plaintext, &mut budget).ok()?;
        Some((Id(envelope.doc_id()), changes.into_owned()))
    };
    let finish = |run: Run, out: &mut Vec<Outgoing>| {
        let first = run.entries[0].0;
        let last = run.entries[run.entries.len() - 1].0;
        let envelope = match (run.entries.len(), key) {
            (2.., Some(key)) => seal::seal(
                device,
                key,
                workspace,
                run.doc,
                &seal::deflate_changes(&run.changes),
            )
            .encode(),
            _ => run.entries.into_iter().next().expect("a run has entries").1,
        };
        out.push(Outgoing {
            first,
            last,
            envelope,
        });
    };
    let mut out = Vec::new();
    let mut run: Option<Run> = None;
    for (seq, bytes) in entries {
        let Some((doc, changes)) = open(&bytes) else {
            if let Some(run) = run.take() {
                finish(run, &mut out);
            }
            out.push(Outgoing {
                first: seq,
                last: seq,
                envelope: bytes,
            });
            continue;
        };
        if let Some(current) = run.as_mut()
            && current.doc == doc
            && current.changes.len() + changes.len() <= node::MAX_SEALED_BYTES
        {
            current.changes.extend_from_slice(&changes);
            current.entries.push((seq, bytes));
            continue;
        }
        if let Some(run) = run.take() {
            finish(run, &mut out);
        }
        run = Some(Run {
            doc,
            entries: vec![(seq, bytes)],
            changes,
        });
    }
    if let Some(run) = run.take() {
        finish(run, &mut out);
    }
    out
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

#[cfg(test)]
mod tests {
    use super::*;

    const WORKSPACE: Id = Id([1; 16]);
    const KEY: WorkspaceKey = [9; 32];

    fn sealed(device: &SigningKey, doc: u8, plaintext: &[u8]) -> Vec<u8> {
        seal::seal(device, &KEY, WORKSPACE, Id([doc; 16]), plaintext).encode()
    }

    fn opened(bytes: &[u8]) -> (u8, Vec<u8>) {
        let envelope = Envelope::decode(bytes).unwrap();
        envelope.verify().unwrap();
        let plaintext = seal::open(&KEY, &envelope).unwrap();
        let mut budget = u64::MAX;
        let changes = ingest::plaintext_changes(&plaintext, &mut budget).unwrap();
        (envelope.doc[0], changes.into_owned())
    }

    #[test]
    fn consecutive_entries_of_one_document_travel_as_one_envelope() {
        let device = SigningKey::from_bytes(&[1; 32]);
        let other = SigningKey::from_bytes(&[2; 32]);
        let big = vec![0xab; node::MAX_SEALED_BYTES / 2 - 10];
        let entries: Vec<(u64, Vec<u8>)> = [
            sealed(&device, 7, b"a1"),
            sealed(&device, 7, b"a2"),
            sealed(&device, 7, b"a3"),
            sealed(&device, 8, b"b1"),
            sealed(&other, 8, b"not ours"),
            sealed(&device, 8, b"b2"),
            sealed(&device, 7, &big),
            sealed(&device, 7, &big),
            sealed(&device, 7, &big),
        ]
        .into_iter()
        .enumerate()
        .map(|(i, e)| (10 + i as u64, e))
        .collect();
        let runs = coalesce(&device, Some(&KEY), WORKSPACE, entries.clone());
        let spans: Vec<(u64, u64)> = runs.iter().map(|r| (r.first, r.last)).collect();
        assert_eq!(
            spans,
            vec![(10, 12), (13, 13), (14, 14), (15, 15), (16, 17), (18, 18)]
        );
        assert_eq!(opened(&runs[0].envelope), (7, b"a1a2a3".to_vec()));
        assert_eq!(opened(&runs[4].envelope), (7, [&big[..], &big].concat()));
        // Entries alone, and envelopes not this device's, travel as they are.
        for (run, entry) in [(1, 3), (2, 4), (3, 5), (5, 8)] {
            assert_eq!(runs[run].envelope, entries[entry].1);
        }
        // Without the key nothing is coalesced.
        let alone = coalesce(&device, None, WORKSPACE, entries);
        assert_eq!(alone.len(), 9);
    }

    #[test]
    fn a_damaged_entry_is_never_signed_afresh() {
        // The outbox holds only envelopes this node signed or verified, so signatures are
        // not checked again; what was damaged on disk fails to open (the AEAD binds the
        // ciphertext to its workspace, document and author) and is not vouched for.
        let device = SigningKey::from_bytes(&[1; 32]);
        let mut altered = Envelope::decode(&sealed(&device, 7, b"a2")).unwrap();
        altered.ciphertext[3] ^= 1;
        let entries = vec![
            (0, sealed(&device, 7, b"a1")),
            (1, altered.encode()),
            (2, sealed(&device, 7, b"a3")),
            (3, sealed(&device, 7, b"a4")),
        ];
        let runs = coalesce(&device, Some(&KEY), WORKSPACE, entries.clone());
        let spans: Vec<(u64, u64)> = runs.iter().map(|r| (r.first, r.last)).collect();
        assert_eq!(spans, vec![(0, 0), (1, 1), (2, 3)]);
        assert_eq!(
            runs[1].envelope, entries[1].1,
            "it goes as it is, for the relay to refuse"
        );
    }
}
