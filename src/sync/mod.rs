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
pub mod tls;

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use ed25519_dalek::SigningKey;
use meridian_relay::Envelope;
use meridian_relay::protocol::PushResult;
use redb::{ReadableTable, WriteTransaction};

use crate::id::Id;
use crate::ingest::{self, Limits, Rejected, Report};
use crate::node::{self, Node};
use crate::seal;
use crate::store::WorkspaceRecord;
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
        shared: cursor_in(&txn, workspace, relay)?.shared,
    };
    put_cursor(&txn, workspace, relay, &cursor)?;
    txn.commit()?;
    Ok(())
}

/// The members the creator has vouched for to the relay with id `relay` (it answered).
pub fn vouched(
    node: &Node,
    workspace: Id,
    relay: [u8; 16],
) -> Result<std::collections::BTreeSet<[u8; 32]>> {
    let txn = node.db().begin_read()?;
    let table = txn.open_table(store::VOUCHED)?;
    let mut keys = std::collections::BTreeSet::new();
    for entry in table.range((workspace.0, relay, [0; 32])..=(workspace.0, relay, [0xff; 32]))? {
        keys.insert(entry?.0.value().2);
    }
    Ok(keys)
}

/// Records that the relay with id `relay` answered the creator's vouch for `members`.
pub fn record_vouched(
    node: &Node,
    workspace: Id,
    relay: [u8; 16],
    members: &[[u8; 32]],
) -> Result<()> {
    let txn = node.db().begin_write()?;
    {
        let mut table = txn.open_table(store::VOUCHED)?;
        for member in members {
            table.insert((workspace.0, relay, *member), ())?;
        }
    }
    txn.commit()?;
    Ok(())
}

/// Records whether a relay takes shared envelopes, as its welcome said (a write only when
/// that changed).
pub fn remember_shared(node: &Node, workspace: Id, relay: &str, shared: bool) -> Result<()> {
    if cursor(node, workspace, relay)?.shared == shared {
        return Ok(());
    }
    let txn = node.db().begin_write()?;
    let mut cursor = cursor_in(&txn, workspace, relay)?;
    cursor.shared = shared;
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
/// runs of consecutive entries coalesced by [`coalesce`], across documents when the relay
/// takes `shared` envelopes.
pub fn outgoing(
    node: &Node,
    workspace: Id,
    from: u64,
    max: usize,
    shared: bool,
) -> Result<Vec<Outgoing>> {
    let entries = outbox(node, workspace, from, max)?;
    if entries.is_empty() {
        // A live connection asks every two seconds: an empty outbox reads nothing more.
        return Ok(Vec::new());
    }
    let (_, mut record) = node.workspace(Some(&workspace.hex()))?;
    if record.sealing == crate::keyring::Sealing::Waiting {
        match node.repair_epoch(workspace) {
            Ok(repaired) => record = repaired,
            // This device was removed: relays refuse it, and what it has queued goes as it
            // is, for them to say so.
            Err(e) if crate::error::kind_of(&e) == crate::error::ErrorKind::Refused => {
                return Ok(coalesce(node.key(), None, workspace, entries, shared));
            }
            Err(e) => return Err(e),
        }
    }
    Ok(coalesce(
        node.key(),
        Some(&record),
        workspace,
        entries,
        shared,
    ))
}

/// Turns outbox entries (position, envelope), in order, into the envelopes a push carries:
/// each run of consecutive entries becomes one envelope, newly sealed and signed by
/// `device`, whose plaintext is all their changes compressed together, up to
/// [`node::MAX_SEALED_BYTES`] of change bytes a run. Without `shared`, a run is of one
/// document ([`seal::deflate_changes`]); with it, a run may span up to
/// [`meridian_relay::envelope::MAX_DOCS`] documents and becomes a shared envelope
/// ([`seal::shared_plaintext`]) when it does, so receivers check one signature for a
/// whole push.
///
/// An entry that creates a document starts a run of that document alone: a relay hands a
/// new member a snapshot in place of a document's first entry, which it can do only for
/// an envelope of that one document.
///
/// Every change of a run was written by this device (the outbox holds only its own), so
/// receivers accept the run as one envelope. An entry alone, one that holds a whole
/// document, or one that does not open with `key` as this device's envelope of this
/// workspace, travels as it is. A run is pushed,
/// acknowledged and retried whole; a retried run is sealed afresh (another nonce, so
/// another envelope for the relay), and receivers skip the changes they already have.
/// The node's own stored records keep the entries as they were.
pub fn coalesce(
    device: &SigningKey,
    keys: Option<&WorkspaceRecord>,
    workspace: Id,
    entries: Vec<(u64, Vec<u8>)>,
    shared: bool,
) -> Vec<Outgoing> {
    let sealer = keys.and_then(|record| Some((record, seal::Sealer::of(record).ok()?)));
    let key = sealer.as_ref();
    let own = device.verifying_key().to_bytes();
    // An entry of this device's sealed under an older epoch (written before a removal
    // reached this node) is sealed again under the current one before it leaves. While
    // this node holds no epoch, every entry is under the workspace key: nothing to look at.
    let entries: Vec<(u64, Vec<u8>)> = match key {
        Some((record, sealer)) if !record.epochs.is_empty() => entries
            .into_iter()
            .map(|(seq, bytes)| (seq, reseal(device, record, sealer, workspace, bytes)))
            .collect(),
        _ => entries,
    };
    /// A run being built: its entries, their change bytes per document (in order within
    /// each), their total, and whether it is one new document's.
    #[derive(Default)]
    struct Run {
        entries: Vec<(u64, Vec<u8>)>,
        docs: BTreeMap<Id, Vec<u8>>,
        bytes: usize,
        ops: usize,
        creation: bool,
    }
    // Receivers apply an envelope at a time at worst: a run stays within one merge's
    // operations (each entry is, as its edit was sealed).
    let max_ops = ingest::Limits::default().max_ops;
    let open = |bytes: &[u8]| -> Option<(Id, Vec<u8>, usize)> {
        let (record, sealer) = key?;
        // The device signs the run afresh and must vouch only for what it had signed. The
        // outbox holds only what this node signed or verified when storing it, so the
        // signature is not checked again (30 µs an entry, a tenth of a push); a damaged
        // entry fails to open (the AEAD binds its ids and author) and travels as it is,
        // for the relay to refuse.
        let envelope = Envelope::decode_stored(bytes).ok()?;
        // One sealed under another key than the current (a workspace change made before a
        // removal, [`reseal`]) travels alone, as it was sealed.
        if envelope.is_shared()
            || envelope.author != own
            || envelope.workspace_id() != workspace.0
            || !sealer.sealed(&envelope)
        {
            return None;
        }
        let plaintext = seal::open_with(record, &envelope).ok()?;
        let mut budget = meridian_relay::envelope::MAX_ENVELOPE_BYTES as u64;
        let changes = ingest::plaintext_changes(&plaintext, &mut budget).ok()?;
        // A whole document (a large edit sealed as one save) is already as small as it
        // gets, and receivers take a whole document only alone in its envelope.
        if ingest::is_whole_document(&changes) {
            return None;
        }
        // What does not parse travels all the same, for the receivers to refuse.
        let ops = ingest::chunks(&changes, &mut budget, false)
            .and_then(|chunks| ingest::parse_changes(&chunks))
            .map_or(0, |parsed| parsed.iter().map(automerge::Change::len).sum());
        Some((Id(envelope.doc_id()), changes.into_owned(), ops))
    };
    let finish = |run: Run, out: &mut Vec<Outgoing>| {
        let first = run.entries[0].0;
        let last = run.entries[run.entries.len() - 1].0;
        let envelope = match (run.entries.len(), key) {
            (2.., Some((_, sealer))) if run.docs.len() > 1 => {
                let docs: Vec<Id> = run.docs.keys().copied().collect();
                let parts: Vec<&[u8]> = run.docs.values().map(Vec::as_slice).collect();
                sealer
                    .seal(device, workspace, &docs, &seal::shared_plaintext(&parts))
                    .encode()
            }
            (2.., Some((_, sealer))) => {
                let (doc, changes) = run.docs.into_iter().next().expect("a run has changes");
                sealer
                    .seal(device, workspace, &[doc], &seal::deflate_changes(&changes))
                    .encode()
            }
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
        let Some((doc, changes, ops)) = open(&bytes) else {
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
        let creation = creates_document(&changes);
        if let Some(current) = run.as_mut() {
            let alone = current.creation || !shared;
            let joins = current.bytes + changes.len() <= node::MAX_SEALED_BYTES
                && current.ops + ops <= max_ops
                && !creation
                && if alone {
                    current.docs.contains_key(&doc)
                } else {
                    current.docs.contains_key(&doc)
                        || current.docs.len() < meridian_relay::envelope::MAX_DOCS
                };
            if joins {
                current.bytes += changes.len();
                current.ops += ops;
                current
                    .docs
                    .entry(doc)
                    .or_default()
                    .extend_from_slice(&changes);
                current.entries.push((seq, bytes));
                continue;
            }
        }
        if let Some(run) = run.take() {
            finish(run, &mut out);
        }
        let mut started = Run {
            bytes: changes.len(),
            ops,
            creation,
            ..Run::default()
        };
        started.docs.insert(doc, changes);
        started.entries.push((seq, bytes));
        run = Some(started);
    }
    if let Some(run) = run.take() {
        finish(run, &mut out);
    }
    out
}

/// An outbox entry as it is pushed: as it was stored, unless it is this device's and sealed
/// under another key than `sealer`'s, when its plaintext is sealed again under that one.
fn reseal(
    device: &SigningKey,
    record: &WorkspaceRecord,
    sealer: &seal::Sealer,
    workspace: Id,
    bytes: Vec<u8>,
) -> Vec<u8> {
    let Ok(envelope) = Envelope::decode_stored(&bytes) else {
        return bytes;
    };
    // The workspace document's own changes stay as they were sealed: every epoch's
    // recipients are read from it, and a removal must open with the key its readers
    // already hold, or the epoch that follows it would wait for itself.
    if envelope.is_keyring()
        || envelope.doc_ids().contains(&workspace.0)
        || sealer.sealed(&envelope)
        || envelope.author != device.verifying_key().to_bytes()
        || envelope.workspace_id() != workspace.0
    {
        return bytes;
    }
    let Ok(plaintext) = seal::open_with(record, &envelope) else {
        return bytes;
    };
    let docs: Vec<Id> = envelope.doc_ids().into_iter().map(Id).collect();
    sealer.seal(device, workspace, &docs, &plaintext).encode()
}

/// Whether automerge change chunks (this device's own) hold a change with no dependencies:
/// the first change of a document. An uncompressed change chunk's body starts with its
/// dependency count, so only the headers are read; a chunk automerge compressed (a large
/// change, such as a proposal created with a long pasted section) is parsed.
fn creates_document(mut changes: &[u8]) -> bool {
    while changes.len() > 9 && changes[..4] == ingest::AUTOMERGE_MAGIC {
        let chunk_type = changes[8];
        let Ok((len, read)) = ingest::uleb(&changes[9..]) else {
            return false;
        };
        let rest = &changes[9 + read..];
        let Some(body) = usize::try_from(len).ok().and_then(|n| rest.get(..n)) else {
            return false;
        };
        let first = match chunk_type {
            1 => body.first() == Some(&0),
            2 => {
                let chunk = &changes[..9 + read + body.len()];
                automerge::Change::from_bytes(chunk.to_vec())
                    .is_ok_and(|change| change.deps().is_empty())
            }
            _ => false,
        };
        if first {
            return true;
        }
        changes = &rest[body.len()..];
    }
    false
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
    let mut budget = ingest::Budget::new(&limits);
    let mut batch = Batch::default();
    let mut records = Vec::new();
    let encoded: Vec<&[u8]> = entries.iter().map(|(_, bytes)| bytes.as_slice()).collect();
    ingest::each_verified(&encoded, |i, envelope| {
        let opened = envelope.map_err(anyhow::Error::from).and_then(|envelope| {
            if envelope.is_keyring() && envelope.workspace_id() == workspace.0 {
                records.push(envelope);
                return Ok(Vec::new());
            }
            ingest::open_envelope(envelope, workspace, &record, &mut budget)
        });
        batch.sort(i, &entries[i], relay, opened);
        Ok::<_, anyhow::Error>(())
    })?;
    let keyring_moved = !records.is_empty();
    if keyring_moved {
        // Keyring records are kept and adopted in a transaction of their own, and the
        // envelopes of this batch sealed under the epochs they bring are opened again. A
        // crash before the cursor moves pulls them again, and they are recognised.
        batch
            .refused
            .extend(node.receive_keyring(workspace, &records)?);
        let (_, record) = node.workspace(Some(&workspace.hex()))?;
        for i in std::mem::take(&mut batch.waiting) {
            let opened = Envelope::decode_stored(&entries[i].1)
                .map_err(anyhow::Error::from)
                .and_then(|envelope| {
                    ingest::open_envelope(envelope, workspace, &record, &mut budget)
                });
            batch.sort(i, &entries[i], relay, opened);
        }
    }
    let Batch {
        items,
        waiting,
        refused,
    } = batch;
    let report = ingest::apply_received(node, workspace, items, &limits, |txn, report| {
        for rejected in refused {
            ingest::record_rejection(txn, workspace, &rejected)?;
            report.rejected.push(rejected);
        }
        for i in waiting {
            crate::epochs::hold(txn, workspace, &entries[i].1)?;
            report.held += 1;
        }
        let mut cursor = cursor_in(txn, workspace, relay)?;
        cursor.pulled = cursor.pulled.max(up_to);
        put_cursor(txn, workspace, relay, &cursor)
    })?;
    let mut report = report;
    if keyring_moved || report.documents.contains(&workspace.hex()) {
        // A record may have waited for the workspace changes this batch brought, a new
        // member may need the current key, and envelopes may wait for a key that came.
        let settled = node.settle_epochs(workspace)?;
        report.documents.extend(settled.documents);
        report.applied += settled.applied;
        report.rejected.extend(settled.rejected);
        // A removal that arrived makes this node endorse what it took of the removed
        // member before (`crate::lock`), so that the others take it too.
        let endorsed = node.settle_removals(workspace)?;
        report.documents.extend(endorsed.iter().map(|d| d.hex()));
        // An added device writes its entry once its member's has arrived.
        node.write_device_entry(workspace)?;
    }
    Ok(report)
}

/// Where each entry of a pulled batch goes once opened: applied, held for a key this
/// device does not hold yet, or refused.
#[derive(Default)]
struct Batch {
    items: Vec<ingest::Item>,
    /// Positions in the batch.
    waiting: Vec<usize>,
    refused: Vec<Rejected>,
}

impl Batch {
    fn sort(
        &mut self,
        i: usize,
        (seq, bytes): &(u64, Vec<u8>),
        relay: &str,
        opened: Result<Vec<ingest::Item>>,
    ) {
        match opened {
            Ok(opened) => self.items.extend(opened),
            Err(e) if e.is::<seal::UnknownEpoch>() => self.waiting.push(i),
            Err(e) => self.refused.push(rejection(
                Some(bytes),
                format!("entry {seq} of {relay}: {e:#}"),
            )),
        }
    }
}

/// A rejection of encoded envelope `bytes`, naming its document and signer when it decodes.
pub(crate) fn rejection(bytes: Option<&[u8]>, reason: String) -> Rejected {
    let envelope = bytes.and_then(|b| meridian_relay::Envelope::decode(b).ok());
    Rejected {
        doc: envelope
            .as_ref()
            .map(|e| {
                let docs: Vec<String> = e.doc_ids().iter().map(hex::encode).collect();
                docs.join(",")
            })
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
    node.envelopes(&docs)
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
    const KEY: seal::WorkspaceKey = [9; 32];

    /// A workspace record holding [`KEY`], nobody removed.
    fn keys() -> WorkspaceRecord {
        WorkspaceRecord::with_key(&KEY)
    }

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
        let runs = coalesce(&device, Some(&keys()), WORKSPACE, entries.clone(), false);
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
        let alone = coalesce(&device, None, WORKSPACE, entries, false);
        assert_eq!(alone.len(), 9);
    }

    #[test]
    fn a_whole_document_travels_alone_between_runs_of_changes() {
        let device = SigningKey::from_bytes(&[1; 32]);
        let whole = {
            use automerge::transaction::Transactable;
            let mut doc = automerge::AutoCommit::new();
            doc.put(automerge::ROOT, "a", 1).unwrap();
            doc.save()
        };
        assert!(ingest::is_whole_document(&whole));
        let entries: Vec<(u64, Vec<u8>)> = [
            sealed(&device, 7, &change(false)),
            sealed(&device, 7, &whole),
            sealed(&device, 7, &change(false)),
            sealed(&device, 7, &change(false)),
        ]
        .into_iter()
        .enumerate()
        .map(|(i, e)| (20 + i as u64, e))
        .collect();
        for shared in [false, true] {
            let runs = coalesce(&device, Some(&keys()), WORKSPACE, entries.clone(), shared);
            let spans: Vec<(u64, u64)> = runs.iter().map(|r| (r.first, r.last)).collect();
            assert_eq!(
                spans,
                vec![(20, 20), (21, 21), (22, 23)],
                "shared: {shared}"
            );
            assert_eq!(runs[1].envelope, entries[1].1);
        }
    }

    /// The parts of a shared envelope, by document.
    fn parts(bytes: &[u8]) -> Vec<(u8, Vec<u8>)> {
        let envelope = Envelope::decode(bytes).unwrap();
        let plaintext = seal::open(&KEY, &envelope).unwrap();
        let mut budget = u64::MAX;
        let docs = envelope.doc_ids();
        let parts = ingest::plaintext_parts(&plaintext, docs.len(), &mut budget).unwrap();
        docs.iter().map(|d| d[0]).zip(parts).collect()
    }

    /// A real change chunk: the first of a document, or one after it.
    fn change(first: bool) -> Vec<u8> {
        use automerge::transaction::Transactable;
        let mut doc = automerge::AutoCommit::new();
        doc.put(automerge::ROOT, "a", 1).unwrap();
        if !first {
            doc.commit();
            doc.put(automerge::ROOT, "a", 2).unwrap();
        }
        doc.get_last_local_change().unwrap().raw_bytes().to_vec()
    }

    /// A change in automerge's compressed form, as a change too large to share a piece is
    /// sealed: the first of a document, or one after it.
    fn large_change(first: bool) -> Vec<u8> {
        use automerge::transaction::Transactable;
        let mut doc = automerge::AutoCommit::new();
        let text = "a long pasted section ".repeat(100);
        doc.put(automerge::ROOT, "a", text.as_str()).unwrap();
        if !first {
            doc.commit();
            doc.put(automerge::ROOT, "b", text.as_str()).unwrap();
        }
        let mut change = doc.get_last_local_change().unwrap().clone();
        change.bytes().to_vec()
    }

    #[test]
    fn a_relay_that_takes_shared_envelopes_gets_one_per_run_across_documents() {
        let device = SigningKey::from_bytes(&[1; 32]);
        let other = SigningKey::from_bytes(&[2; 32]);
        let (created, edited) = (change(true), change(false));
        assert!(creates_document(&created));
        assert!(!creates_document(&edited));
        assert!(creates_document(&[&edited[..], &created].concat()));
        let (large, large_edit) = (large_change(true), large_change(false));
        assert_eq!(large[8], 2, "automerge compresses a large change");
        assert!(creates_document(&large));
        assert!(!creates_document(&large_edit));
        let entries: Vec<(u64, Vec<u8>)> = [
            sealed(&device, 9, b"c1"),
            sealed(&device, 7, b"a1"),
            sealed(&device, 8, b"b1"),
            sealed(&device, 7, b"a2"),
            sealed(&other, 8, b"not ours"),
            sealed(&device, 8, b"b2"),
            sealed(&device, 5, &created),
            sealed(&device, 5, &edited),
            sealed(&device, 6, &edited),
            sealed(&device, 5, &edited),
        ]
        .into_iter()
        .enumerate()
        .map(|(i, e)| (i as u64, e))
        .collect();
        let runs = coalesce(&device, Some(&keys()), WORKSPACE, entries.clone(), true);
        let spans: Vec<(u64, u64)> = runs.iter().map(|r| (r.first, r.last)).collect();
        // A document's first change starts a run of that document alone (6..=7).
        assert_eq!(spans, vec![(0, 3), (4, 4), (5, 5), (6, 7), (8, 9)]);
        assert_eq!(
            parts(&runs[0].envelope),
            vec![
                (7, b"a1a2".to_vec()),
                (8, b"b1".to_vec()),
                (9, b"c1".to_vec())
            ]
        );
        assert_eq!(runs[1].envelope, entries[4].1, "not ours: as it is");
        assert_eq!(runs[2].envelope, entries[5].1, "alone: as it is");
        assert_eq!(
            opened(&runs[3].envelope),
            (5, [&created[..], &edited].concat())
        );
        assert_eq!(
            parts(&runs[4].envelope),
            vec![(5, edited.clone()), (6, edited.clone())]
        );
        // A relay that does not take them gets runs of one document.
        let plain = coalesce(&device, Some(&keys()), WORKSPACE, entries, false);
        assert!(
            plain
                .iter()
                .all(|r| !Envelope::decode(&r.envelope).unwrap().is_shared())
        );
        assert_eq!(plain.len(), 9);
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
        let runs = coalesce(&device, Some(&keys()), WORKSPACE, entries.clone(), true);
        let spans: Vec<(u64, u64)> = runs.iter().map(|r| (r.first, r.last)).collect();
        assert_eq!(spans, vec![(0, 0), (1, 1), (2, 3)]);
        assert_eq!(
            runs[1].envelope, entries[1].1,
            "it goes as it is, for the relay to refuse"
        );
    }
}
