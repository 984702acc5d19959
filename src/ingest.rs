//! Taking in changes written elsewhere: the one path by which foreign bytes reach a
//! document, shared by `merge` today and by sync later.
//!
//! Everything is hostile until checked, in this order (DESIGN §6): size → envelope shape and
//! signature → decryption → bounded decompression → actor owns the change → membership →
//! apply → missing dependencies → nesting depth. All documents of one batch are applied in
//! one redb write transaction: the first failure aborts it and the store stays exactly as it
//! was.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;

use sha2::Digest;

use anyhow::{Context, Result, bail};
use automerge::{Automerge, Change, ExpandedChange, ObjType, ROOT, ReadDoc, Value};
use meridian_relay::{AuthorKeys, Envelope};
use redb::{ReadableTable, ReadableTableMetadata};

use crate::cache::DocCache;
use crate::doc::View;
use crate::id::Id;
use crate::identity;
use crate::node::{self, Node};
use crate::seal;
use crate::store::{LogEntry, Record, WorkspaceRecord};
use crate::workspace::{self, WorkspaceState};

/// Bounds on one batch of foreign input.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Largest input file or batch, bytes.
    pub max_input: usize,
    /// What compressed data may inflate to, per byte of the input that carries it (an
    /// envelope's ciphertext, a saved document): see [`Budget`].
    pub inflation: u64,
    /// What one batch's inputs may inflate to beyond `inflation` times their size, shared by
    /// all of them.
    pub inflation_slack: u64,
    /// Most changes in one batch.
    pub max_changes: usize,
    /// Most new operations applied to one document in one batch, as changes (and so in one
    /// change): automerge holds several hundred bytes of memory per operation while it
    /// applies them (a merge of one change of 240,000 operations peaks at 200 MB, of
    /// 480,000 at 380 MB).
    pub max_ops: usize,
    /// Most operations in a document taken whole (a saved document, a snapshot): loading
    /// one holds about a hundred bytes per operation.
    pub max_document_ops: usize,
    /// Deepest object nesting a document may reach.
    pub max_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_input: 256 << 20,
            inflation: 16,
            inflation_slack: 4 << 20,
            max_changes: 1_000_000,
            max_ops: 250_000,
            max_document_ops: 500_000,
            max_depth: 64,
        }
    }
}

/// What the compressed data in one batch of foreign input may inflate to, in proportion to
/// what arrived: each input (an envelope, a saved document) [`Limits::inflation`] times its
/// own size, plus what is left of a slack of [`Limits::inflation_slack`] the whole batch
/// shares. An input that inflates beyond its share is refused as a decompression bomb
/// before automerge allocates what it inflates to; what an accepted one took beyond its
/// proportion is gone from the slack.
///
/// So a batch of N bytes inflates to at most `inflation × N + slack` (16 × 9 MiB + 4 MiB for
/// the largest frame a relay sends), however its envelopes are cut, where a fixed budget
/// per batch made the budget itself the bomb: a 1 MiB saved document inflating to just
/// under a gigabyte passed it and made `merge` take 2 GB. A bomb in one envelope leaves
/// the others of its batch their own share. Honest data is far below the ratio: a
/// compressed run is raw changes deflated (2–5 times), automerge compresses only columns.
#[derive(Clone, Debug)]
pub struct Budget {
    inflation: u64,
    slack: u64,
}

impl Budget {
    /// The budget of one batch of foreign input.
    pub fn new(limits: &Limits) -> Budget {
        Budget {
            inflation: limits.inflation,
            slack: limits.inflation_slack,
        }
    }

    /// For envelopes this node checked against a batch's budget once already and stored
    /// (held ones, its own outbox): they are opened again with room for anything a single
    /// envelope could have been let through with.
    pub fn stored() -> Budget {
        let limits = Limits::default();
        let largest = meridian_relay::envelope::MAX_ENVELOPE_BYTES as u64;
        Budget {
            inflation: 0,
            slack: largest * limits.inflation + limits.inflation_slack,
        }
    }

    /// Runs `open` on an input of `len` compressed bytes with what it may inflate to (the
    /// closure subtracts what it inflates), and takes what it used beyond its proportion
    /// from the slack.
    pub fn open<T>(&mut self, len: usize, open: impl FnOnce(&mut u64) -> Result<T>) -> Result<T> {
        let share = (len as u64).saturating_mul(self.inflation);
        let allowed = share.saturating_add(self.slack);
        let mut left = allowed;
        let opened = open(&mut left)?;
        let used = allowed.saturating_sub(left);
        self.slack = self.slack.saturating_sub(used.saturating_sub(share));
        Ok(opened)
    }
}

/// The magic bytes at the start of every automerge chunk.
pub const AUTOMERGE_MAGIC: [u8; 4] = [0x85, 0x6f, 0x4a, 0x83];

/// One unit of foreign input: a verified envelope's changes to one document.
#[derive(Clone)]
pub struct Item {
    /// The document it belongs to.
    pub doc: Id,
    /// The envelope that carried the changes, stored if it brings anything new.
    pub carrier: Carrier,
    /// The signer's device key.
    pub signer: [u8; 32],
    /// The parsed changes, each written by the signer's device (or, in a snapshot, vouched
    /// for by the workspace's creator).
    pub changes: Vec<Change>,
    /// For a snapshot envelope, the whole document: a node with none of the document takes
    /// it as it is instead of applying its changes one by one.
    pub snapshot: Option<Box<Automerge>>,
}

/// The envelope an [`Item`] came in, as the node stores it.
#[derive(Clone, Debug)]
pub enum Carrier {
    /// An envelope of one document (the encoded bytes), stored as it is.
    Whole(Vec<u8>),
    /// One document's part of a shared envelope. The envelope is stored once, in
    /// [`crate::store::ENVELOPES`]; the document's record keeps its hash and the part's
    /// change bytes, so loading the document opens nothing else.
    Part {
        /// The encoded shared envelope; `None` for a part that was held, whose envelope
        /// was kept when it was.
        envelope: Option<std::sync::Arc<Vec<u8>>>,
        /// Its content hash.
        hash: [u8; 32],
        /// This document's change chunks from it.
        changes: Vec<u8>,
    },
}

/// A part of a shared envelope waiting in [`crate::store::HELD`]: what retrying it needs,
/// without opening the envelope again (it may hold a thousand other documents' parts).
/// Stored after the byte [`HELD_PART`]; a held envelope of one document is stored as it is.
#[derive(serde::Serialize, serde::Deserialize)]
struct HeldPart {
    #[serde(with = "serde_bytes")]
    workspace: Vec<u8>,
    #[serde(with = "serde_bytes")]
    hash: Vec<u8>,
    #[serde(with = "serde_bytes")]
    signer: Vec<u8>,
    /// The part's change chunks, as they were checked (actors) when it was held.
    #[serde(with = "serde_bytes")]
    changes: Vec<u8>,
}

/// The first byte of a held part. An encoded envelope is a CBOR map, which never starts
/// with it.
const HELD_PART: u8 = 0;

/// What a merge did.
#[derive(Debug, Default, serde::Serialize)]
pub struct Report {
    /// Documents that received new changes.
    pub documents: Vec<String>,
    /// New changes applied.
    pub applied: usize,
    /// Envelopes the node already had.
    pub known: usize,
    /// Envelopes refused for good, with the reason (sync only: a merge fails instead).
    pub rejected: Vec<Rejected>,
    /// Envelopes held back until what they need arrives: changes they depend on, or the
    /// membership of their signer (sync only).
    pub held: usize,
    /// Of those, envelopes a removal refuses: a removed member's changes written after the
    /// remover's view of them (`crate::lock`).
    pub refused_late: usize,
}

/// An envelope refused during sync.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Rejected {
    /// The document, hex.
    pub doc: String,
    /// The signer's device key, hex.
    pub signer: String,
    /// What was wrong.
    pub reason: String,
}

/// The error of a change that depends on changes the node does not have yet.
#[derive(Debug, thiserror::Error)]
#[error(
    "{count} change(s) to document {doc} depend on changes this node does not have (first missing: {first}); merge the export they come from first; nothing was merged"
)]
pub struct MissingDeps {
    count: usize,
    doc: String,
    first: String,
}

/// A whole document that holds more operations than one merge takes: refused before
/// automerge loads it.
#[derive(Debug, thiserror::Error)]
#[error(
    "the document holds {ops} operations, more than the limit of {limit} in one merge: refused before loading it (automerge holds several hundred bytes of memory per operation, and a few bytes of run-length encoding can claim millions)"
)]
pub struct TooManyOps {
    ops: u64,
    limit: u64,
}

/// The error of changes a removed member wrote after the remover's view of them
/// (`crate::lock`): held, in case a member who took them before the removal reached them
/// builds on them, which takes them everywhere.
#[derive(Debug, thiserror::Error)]
#[error(
    "{count} change(s) to document {doc} were written {writer}: no member's node takes them; nothing was merged (a bundle from a current member carries the rest)"
)]
pub struct Locked {
    count: usize,
    doc: String,
    /// By whom and when: `by Cy after they were removed from the workspace`.
    writer: String,
}

/// The error of a change whose signer is not (yet) a verified member.
#[derive(Debug, thiserror::Error)]
#[error(
    "changes to document {doc} were written by {signer}, who is not a verified member of this workspace; nothing was merged"
)]
pub struct NotMember {
    doc: String,
    signer: String,
}

/// Reads a LEB128 unsigned integer: its value and how many bytes it took.
pub(crate) fn uleb(bytes: &[u8]) -> Result<(u64, usize)> {
    let mut value: u64 = 0;
    for (i, byte) in bytes.iter().enumerate().take(10) {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok((value, i + 1));
        }
    }
    bail!("a length field is truncated or too long")
}

/// Takes `n` bytes off the front of `bytes`.
pub(crate) fn take<'a>(bytes: &mut &'a [u8], n: u64, what: &str) -> Result<&'a [u8]> {
    let n = usize::try_from(n)
        .ok()
        .filter(|n| *n <= bytes.len())
        .with_context(|| format!("the {what} is truncated"))?;
    let (head, tail) = bytes.split_at(n);
    *bytes = tail;
    Ok(head)
}

/// Takes a LEB128 unsigned integer off the front of `bytes`.
pub(crate) fn take_uleb(bytes: &mut &[u8], what: &str) -> Result<u64> {
    let (value, n) = uleb(bytes).with_context(|| format!("the {what} is malformed"))?;
    *bytes = &bytes[n..];
    Ok(value)
}

/// Inflates raw deflate data into nowhere, failing once it passes the remaining budget.
fn inflate_bounded(data: &[u8], budget: &mut u64) -> Result<()> {
    let mut decoder = flate2::read::DeflateDecoder::new(data).take(budget.saturating_add(1));
    let inflated =
        std::io::copy(&mut decoder, &mut std::io::sink()).context("compressed data is corrupt")?;
    if inflated > *budget {
        bail!(
            "compressed data inflates beyond the limit of {} bytes: refusing a decompression bomb",
            *budget
        );
    }
    *budget -= inflated;
    Ok(())
}

/// The automerge change bytes an envelope's plaintext carries: the plaintext itself, or for
/// a compressed run (it starts with [`seal::DEFLATED_CHANGES`]) what its DEFLATE stream
/// inflates to. The inflated bytes count against `budget` like automerge's own compressed
/// chunks do, and may not exceed [`meridian_relay::envelope::MAX_ENVELOPE_BYTES`]: compression never lets an envelope
/// carry more than it could uncompressed, so a 4 MiB bomb costs at most 4 MiB of memory.
/// The caller still checks the result with [`chunks`].
pub fn plaintext_changes<'a>(
    plaintext: &'a [u8],
    budget: &mut u64,
) -> Result<std::borrow::Cow<'a, [u8]>> {
    match plaintext.split_first() {
        Some((&seal::DEFLATED_CHANGES, stream)) => {
            let limit = (*budget).min(meridian_relay::envelope::MAX_ENVELOPE_BYTES as u64);
            let inflated = inflate_run(stream, limit)?;
            *budget -= inflated.len() as u64;
            Ok(std::borrow::Cow::Owned(inflated))
        }
        _ => Ok(std::borrow::Cow::Borrowed(plaintext)),
    }
}

/// [`meridian_relay::deflate::inflate_bounded`], its refusals in the words of changes.
fn inflate_run(stream: &[u8], limit: u64) -> Result<Vec<u8>> {
    use meridian_relay::deflate::InflateError;
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    meridian_relay::deflate::inflate_bounded(stream, limit).map_err(|e| match e {
        InflateError::TooLarge { limit } => anyhow::anyhow!(
            "compressed changes inflate beyond the limit of {limit} bytes: refusing a decompression bomb"
        ),
        InflateError::Corrupt(e) => anyhow::Error::new(e).context("compressed changes are corrupt"),
        InflateError::Truncated => {
            anyhow::anyhow!("compressed changes are truncated: the stream stops before its end")
        }
        InflateError::Trailing => anyhow::anyhow!("compressed changes are followed by stray bytes"),
    })
}

/// Whether automerge bytes open with a whole document (a document chunk) rather than
/// changes.
pub fn is_whole_document(bytes: &[u8]) -> bool {
    bytes.starts_with(&AUTOMERGE_MAGIC) && bytes.get(8) == Some(&0)
}

/// Splits automerge bytes into chunks, checking each header and bounding what compressed
/// parts inflate to. Change chunks are always accepted; document chunks only if `allow_doc`.
pub fn chunks<'a>(mut bytes: &'a [u8], budget: &mut u64, allow_doc: bool) -> Result<Vec<&'a [u8]>> {
    let mut chunks = Vec::new();
    while !bytes.is_empty() {
        let start = bytes;
        if bytes.len() < 9 || bytes[..4] != AUTOMERGE_MAGIC {
            bail!("the data is not automerge changes (bad chunk header)");
        }
        let chunk_type = bytes[8];
        bytes = &bytes[9..];
        let len = take_uleb(&mut bytes, "chunk length")?;
        let data = take(&mut bytes, len, "chunk")?;
        match chunk_type {
            1 => *budget = budget.saturating_sub(len),
            2 => inflate_bounded(data, budget)?,
            0 if allow_doc => check_document_columns(data, budget)?,
            0 => bail!("a whole document was found where only changes are allowed"),
            other => bail!("unsupported automerge chunk type {other}"),
        }
        chunks.push(&start[..start.len() - bytes.len()]);
    }
    Ok(chunks)
}

/// Walks a document chunk's column layout and bounds every compressed column.
fn check_document_columns(mut data: &[u8], budget: &mut u64) -> Result<()> {
    let actors = take_uleb(&mut data, "actor list")?;
    for _ in 0..actors {
        let len = take_uleb(&mut data, "actor id")?;
        take(&mut data, len, "actor id")?;
    }
    let heads = take_uleb(&mut data, "head list")?;
    take(&mut data, heads.saturating_mul(32), "head list")?;
    // The change columns, then the operation columns.
    let mut columns = Vec::new();
    for list in 0..2 {
        let count = take_uleb(&mut data, "column list")?;
        for _ in 0..count {
            let spec = take_uleb(&mut data, "column spec")?;
            let len = take_uleb(&mut data, "column length")?;
            columns.push((list == 1 && spec & !0b1000 == ACTION_COLUMN, spec, len));
        }
    }
    let limit = Limits::default().max_document_ops as u64;
    for (is_action, spec, len) in columns {
        let column = take(&mut data, len, "column")?;
        let inflated;
        let column = if spec & 0b1000 != 0 {
            if !is_action {
                inflate_bounded(column, budget)?;
                continue;
            }
            inflated = inflate_run(column, *budget)?;
            *budget -= inflated.len() as u64;
            inflated.as_slice()
        } else {
            *budget = budget.saturating_sub(len);
            column
        };
        if is_action {
            let ops = rle_len(column)?;
            if ops > limit {
                return Err(TooManyOps { ops, limit }.into());
            }
        }
    }
    Ok(())
}

/// The operation column of a document chunk that holds each operation's action (column 4,
/// an integer column): as many values as the document has operations.
const ACTION_COLUMN: u64 = (4 << 4) | 2;

/// How many values a run-length encoded column holds, without expanding it: a run is a
/// signed count, then one value repeated that many times (count > 0), as many literal
/// values as the count's absolute value (count < 0), or a count of nulls (count = 0).
fn rle_len(mut column: &[u8]) -> Result<u64> {
    let mut total: u64 = 0;
    while !column.is_empty() {
        let count = take_sleb(&mut column, "run length")?;
        let values = if count > 0 {
            take_uleb(&mut column, "run value")?;
            count.unsigned_abs()
        } else if count < 0 {
            for _ in 0..count.unsigned_abs() {
                take_uleb(&mut column, "literal value")?;
            }
            count.unsigned_abs()
        } else {
            take_uleb(&mut column, "null run")?
        };
        total = total.saturating_add(values);
    }
    Ok(total)
}

/// Takes a signed LEB128 integer off the front of `bytes`.
fn take_sleb(bytes: &mut &[u8], what: &str) -> Result<i64> {
    let mut value: i64 = 0;
    for (i, byte) in bytes.iter().enumerate().take(10) {
        value |= i64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            if i < 9 && byte & 0x40 != 0 {
                value |= -1 << (7 * (i + 1));
            }
            *bytes = &bytes[i + 1..];
            return Ok(value);
        }
    }
    bail!("the {what} is malformed")
}

/// Parses the changes inside checked change chunks. Automerge's parser panics on some
/// crafted changes (an integer out of range, found by cargo-fuzz): caught and refused like
/// its other panics ([`guard`]).
pub fn parse_changes(chunks: &[&[u8]]) -> Result<Vec<Change>> {
    chunks
        .iter()
        .map(|chunk| {
            guard(|| {
                Change::from_bytes(chunk.to_vec())
                    .map_err(|e| anyhow::anyhow!("a change is malformed: {e}"))
            })
        })
        .collect()
}

/// Opens an envelope from a bundle or the network into [`Item`]s (one per document it
/// carries), checking signature, workspace, decryption, decompression bounds and that
/// every change's actor is the signer.
pub fn open_sealed(
    bytes: &[u8],
    workspace: Id,
    record: &WorkspaceRecord,
    budget: &mut Budget,
) -> Result<Vec<Item>> {
    open_envelope(Envelope::decode(bytes)?, workspace, record, budget)
}

/// How many envelopes a window of [`each_verified`] holds, and how many of their bytes at
/// most: it holds two windows decoded at once (one being opened, the next being checked),
/// beside the caller's input.
const VERIFY_WINDOW: usize = 512;
const VERIFY_WINDOW_BYTES: usize = 16 << 20;

/// The fewest envelopes a thread of [`each_verified`] is started for: starting one costs
/// about as much as checking one signature.
const VERIFY_PER_THREAD: usize = 16;

/// Decodes encoded envelopes and checks their signatures, and hands each to `open` in
/// order, as [`open_sealed`] would take them one by one. The signature check is most of
/// what opening an envelope costs (about 40 µs of 60), and envelopes do not depend on each
/// other until they are applied, so a window of them is checked on every core while what
/// follows (decryption, decompression against one budget, parsing) stays in order on this
/// thread. While this thread opens one window, the next is being checked: opening was a
/// third of a merge's time with the other core idle.
pub fn each_verified<E>(
    envelopes: &[&[u8]],
    mut open: impl FnMut(usize, Result<Envelope, meridian_relay::EnvelopeError>) -> Result<(), E>,
) -> Result<(), E> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let windows = verify_windows(envelopes);
    let parts = |window: &std::ops::Range<usize>| {
        let window = &envelopes[window.clone()];
        let threads = cores.min(window.len() / VERIFY_PER_THREAD).max(1);
        window.chunks(window.len().div_ceil(threads))
    };
    let decode = |part: &[&[u8]]| -> Vec<_> {
        let mut keys = AuthorKeys::default();
        part.iter()
            .map(|b| Envelope::decode_with(b, &mut keys))
            .collect()
    };
    let joined = |handles: Vec<std::thread::ScopedJoinHandle<'_, Vec<_>>>| {
        let mut decoded = Vec::new();
        for handle in handles {
            decoded.extend(
                handle
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
            );
        }
        decoded
    };
    std::thread::scope(|scope| {
        let Some(first) = windows.first() else {
            return Ok(());
        };
        // The first window: this thread checks a part of it too, and a batch of a few
        // envelopes starts no thread at all.
        let mut parts_of_first = parts(first);
        let mine = parts_of_first.next().unwrap_or_default();
        let others: Vec<_> = parts_of_first
            .map(|part| scope.spawn(move || decode(part)))
            .collect();
        let mut current = decode(mine);
        current.extend(joined(others));
        for (k, window) in windows.iter().enumerate() {
            let ahead: Option<Vec<_>> = windows.get(k + 1).map(|next| {
                parts(next)
                    .map(|part| scope.spawn(move || decode(part)))
                    .collect()
            });
            for (i, envelope) in current.into_iter().enumerate() {
                open(window.start + i, envelope)?;
            }
            current = ahead.map(joined).unwrap_or_default();
        }
        Ok(())
    })
}

/// Consecutive ranges of `envelopes`, each at most [`VERIFY_WINDOW`] envelopes and, unless
/// one envelope alone is larger, [`VERIFY_WINDOW_BYTES`].
fn verify_windows(envelopes: &[&[u8]]) -> Vec<std::ops::Range<usize>> {
    let mut windows = Vec::new();
    let mut start = 0;
    while start < envelopes.len() {
        let mut end = start + 1;
        let mut bytes = envelopes[start].len();
        while end < envelopes.len()
            && end - start < VERIFY_WINDOW
            && bytes + envelopes[end].len() <= VERIFY_WINDOW_BYTES
        {
            bytes += envelopes[end].len();
            end += 1;
        }
        windows.push(start..end);
        start = end;
    }
    windows
}

/// [`open_sealed`] of an envelope already decoded, whose signature was checked by the
/// caller ([`each_verified`]) or when this node stored it.
pub fn open_envelope(
    envelope: Envelope,
    workspace: Id,
    record: &WorkspaceRecord,
    budget: &mut Budget,
) -> Result<Vec<Item>> {
    let len = envelope.ciphertext.len();
    budget.open(len, |left| {
        open_envelope_within(envelope, workspace, record, left)
    })
}

/// [`open_envelope`] with what its compressed data may still inflate to.
fn open_envelope_within(
    envelope: Envelope,
    workspace: Id,
    record: &WorkspaceRecord,
    budget: &mut u64,
) -> Result<Vec<Item>> {
    if envelope.workspace_id() != workspace.0 {
        bail!(
            "an envelope belongs to another workspace ({})",
            hex::encode(envelope.workspace_id())
        );
    }
    let plaintext = seal::open_with(record, &envelope)?;
    items_of_plaintext(envelope, &plaintext, &record.creator, budget)
}

/// The items an opened envelope carries: its changes checked as the writer's own (only the
/// workspace's `creator` vouches for others', in a snapshot), parsed within `budget`.
pub fn items_of_plaintext(
    envelope: Envelope,
    plaintext: &[u8],
    creator: &[u8],
    budget: &mut u64,
) -> Result<Vec<Item>> {
    let signer: [u8; 32] = envelope
        .author
        .as_slice()
        .try_into()
        .context("bad author key")?;
    if envelope.is_shared() {
        return open_parts(envelope, plaintext, signer, budget);
    }
    let plaintext = plaintext_changes(plaintext, budget)?;
    let doc = Id(envelope.doc_id());
    let parts = chunks(&plaintext, budget, true)?;
    let (changes, snapshot) = if parts.first().is_some_and(|c| is_whole_document(c)) {
        let (whole, changes) = snapshot_changes(&plaintext, parts.len(), &signer, creator, doc)?;
        // Only the creator's document is taken as it is. automerge checks a document chunk's
        // changes against its heads, not that its stored operations are in the order those
        // changes give: a member's document is rebuilt from its changes like any others'.
        let trusted = signer.as_slice() == creator;
        (changes, trusted.then(|| Box::new(whole)))
    } else {
        let changes = parse_changes(&parts)?;
        for change in &changes {
            check_actor(change, &signer)?;
        }
        (changes, None)
    };
    Ok(vec![Item {
        doc,
        // Stored re-encoded, so unknown fields cannot pad what the node keeps.
        carrier: Carrier::Whole(envelope.encode()),
        signer,
        changes,
        snapshot,
    }])
}

/// The items of a shared envelope: one per document it lists, each its part's changes
/// (never a whole document: snapshots are of one document).
fn open_parts(
    envelope: Envelope,
    plaintext: &[u8],
    signer: [u8; 32],
    budget: &mut u64,
) -> Result<Vec<Item>> {
    let docs = envelope.doc_ids();
    let parts = plaintext_parts(plaintext, docs.len(), budget)?;
    let encoded = envelope.encode();
    let hash: [u8; 32] = sha2::Sha256::digest(&encoded).into();
    let encoded = std::sync::Arc::new(encoded);
    let mut items = Vec::with_capacity(docs.len());
    for (doc, part) in docs.into_iter().zip(parts) {
        let doc = Id(doc);
        let changes = chunks(&part, budget, false)
            .and_then(|chunks| parse_changes(&chunks))
            .with_context(|| format!("the part for document {}", doc.short()))?;
        for change in &changes {
            check_actor(change, &signer)?;
        }
        items.push(Item {
            doc,
            carrier: Carrier::Part {
                envelope: Some(encoded.clone()),
                hash,
                changes: part,
            },
            signer,
            changes,
            snapshot: None,
        });
    }
    Ok(items)
}

/// Splits a shared envelope's plaintext ([`seal::DEFLATED_PARTS`], then one DEFLATE stream
/// of parts, each a LEB128 length and that many bytes) into its `count` parts. Inflation
/// counts against `budget` and may not exceed what an envelope could carry uncompressed.
/// Every part must hold something: a shared envelope lists only documents it changes.
pub fn plaintext_parts(plaintext: &[u8], count: usize, budget: &mut u64) -> Result<Vec<Vec<u8>>> {
    let Some((&seal::DEFLATED_PARTS, stream)) = plaintext.split_first() else {
        bail!("a shared envelope's plaintext is not a compressed list of parts");
    };
    let limit = (*budget).min(meridian_relay::envelope::MAX_ENVELOPE_BYTES as u64);
    let inflated = inflate_run(stream, limit)?;
    *budget -= inflated.len() as u64;
    let mut rest = inflated.as_slice();
    let mut parts = Vec::with_capacity(count);
    for _ in 0..count {
        let len = take_uleb(&mut rest, "part length")?;
        let part = take(&mut rest, len, "shared envelope's part")?;
        if part.is_empty() {
            bail!("a shared envelope has an empty part: it lists a document it does not change");
        }
        parts.push(part.to_vec());
    }
    if !rest.is_empty() {
        bail!("a shared envelope's parts are followed by stray bytes");
    }
    Ok(parts)
}

/// The changes of an envelope that holds one whole automerge document: a snapshot sealed by
/// the workspace creator ([`crate::snapshot`]), who vouches for every change in it, or a
/// member's document of their own, every change in it theirs (a large edit sealed whole,
/// `node::own_document`). Each change must still be a Meridian device's; the rules and
/// membership checks that follow apply to them as to any.
///
/// Loading costs time in proportion to the operations the chunk describes, before the
/// operation limit is checked, as parsing change chunks does.
fn snapshot_changes(
    plaintext: &[u8],
    chunks: usize,
    signer: &[u8; 32],
    creator: &[u8],
    doc: Id,
) -> Result<(Automerge, Vec<Change>)> {
    if chunks != 1 {
        bail!(
            "a snapshot of document {} holds more than one document",
            doc.short()
        );
    }
    let loaded = guard(|| Automerge::load(plaintext))
        .with_context(|| format!("the snapshot of document {} does not load", doc.short()))?;
    let changes = loaded.get_changes(&[]);
    let creator = signer.as_slice() == creator;
    for change in &changes {
        match identity::actor_key(change.actor_id()) {
            None => bail!(
                "the snapshot of document {} holds change {} whose actor id is not a Meridian device's",
                doc.short(),
                short_hash(change)
            ),
            Some(key) if !creator && &key != signer => bail!(
                "a whole document (a snapshot) of document {} is signed by {}, who is neither the workspace's creator nor the writer of its change {} (device {}): only the creator vouches for others' changes",
                doc.short(),
                crate::id::prefix(&hex::encode(signer), 12),
                short_hash(change),
                crate::id::prefix(&hex::encode(key), 12)
            ),
            Some(_) => {}
        }
    }
    Ok((loaded, changes))
}

/// Checks that a change was written by the device that signed it. (The workspace's
/// genesis change is never transmitted: every node builds it, so one arriving from outside
/// is refused here too, its actor being no device's.)
pub fn check_actor(change: &Change, signer: &[u8; 32]) -> Result<()> {
    let Some(key) = identity::actor_key(change.actor_id()) else {
        bail!(
            "change {} has an actor id that is not a Meridian device's",
            short_hash(change)
        );
    };
    if &key != signer {
        bail!(
            "forged change {}: it was written by device {} but signed by {}; nothing was merged",
            short_hash(change),
            crate::id::prefix(&hex::encode(key), 12),
            crate::id::prefix(&hex::encode(signer), 12)
        );
    }
    Ok(())
}

fn short_hash(change: &Change) -> String {
    change.hash().to_string()[..12].to_string()
}

/// Applies a batch of items to the node in one transaction: all or nothing.
///
/// Only the signers of changes the node does not have yet must be verified members: an old
/// envelope by someone since removed does not block a bundle that carries it along.
pub fn apply(node: &Node, workspace: Id, items: Vec<Item>, limits: &Limits) -> Result<Report> {
    let txn = node.db().begin_write()?;
    let report = apply_in(&txn, node, workspace, items, limits)?;
    txn.commit()?;
    Ok(report)
}

/// [`apply`] inside the caller's transaction, which the caller commits or drops.
pub fn apply_in(
    txn: &redb::WriteTransaction,
    node: &Node,
    workspace: Id,
    items: Vec<Item>,
    limits: &Limits,
) -> Result<Report> {
    let total: usize = items.iter().map(|i| i.changes.len()).sum();
    if total > limits.max_changes {
        bail!(
            "the input holds {total} changes, more than the limit of {}",
            limits.max_changes
        );
    }
    let target = Target::new(txn, node, workspace, limits);
    let mut record = node::workspace_record(txn, workspace)?;
    let mut report = Report::default();
    for (doc_id, items) in by_document(workspace, items) {
        for mut group in within_ops(items, limits.max_ops) {
            report.absorb(try_store(&target, &mut record, doc_id, &mut group)?);
        }
    }
    Ok(report)
}

/// A document's items, in order, in consecutive groups of at most `max_ops` operations
/// each (an item larger than that alone): a bundle of a large document is applied a
/// merge's worth at a time, so memory stays bounded and nothing any node took is refused.
fn within_ops(items: Vec<Item>, max_ops: usize) -> Vec<Vec<Item>> {
    let mut groups: Vec<Vec<Item>> = Vec::new();
    let mut ops = 0;
    for item in items {
        let size: usize = item.changes.iter().map(Change::len).sum();
        match groups.last_mut() {
            Some(group) if ops + size <= max_ops => {
                ops += size;
                group.push(item);
            }
            _ => {
                ops = size;
                groups.push(vec![item]);
            }
        }
    }
    groups
}

/// Groups items by document, the workspace document first: it may bring the members who
/// signed the rest, and its own new signers must be members of the state it leads to.
fn by_document(workspace: Id, items: Vec<Item>) -> Vec<(Id, Vec<Item>)> {
    let mut by_doc: BTreeMap<Id, Vec<Item>> = BTreeMap::new();
    for item in items {
        by_doc.entry(item.doc).or_default().push(item);
    }
    let mut groups: Vec<(Id, Vec<Item>)> = Vec::with_capacity(by_doc.len());
    if let Some(items) = by_doc.remove(&workspace) {
        groups.push((workspace, items));
    }
    groups.extend(by_doc);
    groups
}

fn check_members(state: &WorkspaceState, keys: &BTreeSet<[u8; 32]>, doc: Id) -> Result<()> {
    for key in keys {
        if !state.is_member_key(key) {
            return Err(NotMember {
                doc: doc.short(),
                signer: state.name_of(&hex::encode(key)),
            }
            .into());
        }
    }
    Ok(())
}

/// Whether an ingest error may resolve itself once more changes arrive.
fn is_waiting(error: &anyhow::Error) -> bool {
    error.is::<MissingDeps>() || error.is::<NotMember>() || error.is::<Locked>()
}

/// The most envelopes a workspace may hold back waiting for their dependencies.
pub const MAX_HELD: u64 = 10_000;

/// Applies envelopes received by sync, in one transaction, isolating failures: a document
/// whose envelopes break a rule does not stop the others. An envelope that fails is retried
/// alone; if it still fails it is rejected (reported, never applied) unless it only waits
/// for changes or a membership not here yet, in which case it is held and retried when
/// more changes to its document arrive (or, for a membership, when the workspace document
/// changes). `finish` runs in the same transaction (the caller
/// moves its cursor there), so a crash keeps both or neither.
pub fn apply_received(
    node: &Node,
    workspace: Id,
    items: Vec<Item>,
    limits: &Limits,
    finish: impl FnOnce(&redb::WriteTransaction, &mut Report) -> Result<()>,
) -> Result<Report> {
    let txn = node.db().begin_write()?;
    let mut record = node::workspace_record(&txn, workspace)?;
    let mut report = Report::default();
    let mut done = BTreeSet::new();
    let mut apply = DocumentApply {
        target: Target::new(&txn, node, workspace, limits),
        record: &mut record,
        report: &mut report,
    };
    for (doc_id, new) in by_document(workspace, items) {
        apply.apply(doc_id, new)?;
        done.insert(doc_id);
    }
    if apply.report.documents.contains(&workspace.hex()) {
        // The member list may have grown: envelopes held for want of their signer's
        // membership, in documents this batch did not touch, get another chance.
        for doc_id in held_documents(&txn, workspace)? {
            if !done.contains(&doc_id) {
                apply.apply(doc_id, Vec::new())?;
            }
        }
    }
    finish(&txn, &mut report)?;
    txn.commit()?;
    Ok(report)
}

/// Retries every envelope of `workspace` held back, the workspace document's first: after
/// a local edit of the workspace document that may have made their signers members (an
/// added device's own entry, which verifies the invites it made before).
pub fn retry_held(node: &Node, workspace: Id) -> Result<Report> {
    let limits = Limits::default();
    let txn = node.db().begin_write()?;
    let mut record = node::workspace_record(&txn, workspace)?;
    let mut report = Report::default();
    let mut docs = held_documents(&txn, workspace)?;
    docs.sort_by_key(|d| *d != workspace);
    let mut apply = DocumentApply {
        target: Target::new(&txn, node, workspace, &limits),
        record: &mut record,
        report: &mut report,
    };
    for doc_id in docs {
        apply.apply(doc_id, Vec::new())?;
    }
    txn.commit()?;
    Ok(report)
}

/// Where one batch is stored, and under which limits.
struct Target<'a> {
    txn: &'a redb::WriteTransaction,
    /// The node's loaded documents: taken from for each document, put back once stored.
    docs: &'a DocCache,
    workspace: Id,
    limits: &'a Limits,
    /// This device's key: its envelopes also go to the outbox.
    own: [u8; 32],
    /// The shared envelopes this transaction has seen kept, so the many parts of one
    /// envelope look it up once.
    kept: std::cell::RefCell<std::collections::HashSet<[u8; 32]>>,
}

impl<'a> Target<'a> {
    fn new(
        txn: &'a redb::WriteTransaction,
        node: &'a Node,
        workspace: Id,
        limits: &'a Limits,
    ) -> Target<'a> {
        Target {
            txn,
            docs: node.docs(),
            workspace,
            limits,
            own: node.key().verifying_key().to_bytes(),
            kept: Default::default(),
        }
    }
}

/// What applying received envelopes to one document needs.
struct DocumentApply<'a> {
    target: Target<'a>,
    record: &'a mut WorkspaceRecord,
    report: &'a mut Report,
}

impl DocumentApply<'_> {
    /// Applies a document's new envelopes with its held ones. When they fail together,
    /// each is tried alone, again while any succeeds (one may supply what another waits
    /// for); what still fails is held or rejected.
    fn apply(&mut self, doc_id: Id, new: Vec<Item>) -> Result<()> {
        // Held envelopes of this document get another chance, before the new ones.
        let mut items = take_held(self.target.txn, self.target.workspace, doc_id, self.record)?;
        items.extend(new);
        if let [item] = items.as_mut_slice() {
            // A lone item keeps its error: whether it waits or is refused for good
            // depends on the error's type.
            return match self.store(doc_id, std::slice::from_mut(item)) {
                Ok(()) => Ok(()),
                Err(error) => {
                    let refused = (item.doc, &item.carrier, &item.signer);
                    refuse_item(&self.target, refused, error, self.report)
                }
            };
        }
        if items.is_empty() || self.store(doc_id, &mut items).is_ok() {
            return Ok(());
        }
        let mut failed: Vec<(Item, anyhow::Error)> = Vec::new();
        loop {
            let mut progress = false;
            for mut item in std::mem::take(&mut items) {
                match self.store(doc_id, std::slice::from_mut(&mut item)) {
                    Ok(()) => progress = true,
                    Err(e) => failed.push((item, e)),
                }
            }
            if !progress || failed.is_empty() {
                break;
            }
            items = failed.drain(..).map(|(item, _)| item).collect();
        }
        for (item, error) in failed {
            let refused = (item.doc, &item.carrier, &item.signer);
            refuse_item(&self.target, refused, error, self.report)?;
        }
        Ok(())
    }

    fn store(&mut self, doc_id: Id, items: &mut [Item]) -> Result<()> {
        let part = try_store(&self.target, self.record, doc_id, items)?;
        self.report.absorb(part);
        Ok(())
    }
}

/// The documents of `workspace` with envelopes held back.
fn held_documents(txn: &redb::WriteTransaction, workspace: Id) -> Result<Vec<Id>> {
    let table = txn.open_table(crate::store::HELD)?;
    let mut docs = Vec::new();
    let mut last = None;
    for entry in table.iter()? {
        let (key, value) = entry?;
        let doc = Id(key.value().0);
        if last == Some(doc) {
            continue;
        }
        last = Some(doc);
        let ours = match held_entry(value.value()) {
            Held::Part(part) => part.workspace == workspace.0,
            Held::Whole(envelope) => envelope.is_some_and(|e| e.workspace_id() == workspace.0),
        };
        if ours {
            docs.push(doc);
        }
    }
    Ok(docs)
}

impl Report {
    fn absorb(&mut self, other: Report) {
        self.documents.extend(other.documents);
        self.applied += other.applied;
        self.known += other.known;
    }
}

/// Prepares and stores one document's items; the error leaves the transaction untouched.
fn try_store(
    target: &Target<'_>,
    record: &mut WorkspaceRecord,
    doc_id: Id,
    items: &mut [Item],
) -> Result<Report> {
    let mut report = Report::default();
    let Some(mut prepared) = prepare(target, record, doc_id, items, &mut report)? else {
        return Ok(report);
    };
    let workspace = target.workspace;
    if let Some(state) = prepared.state.take() {
        let mut state_record = record.clone();
        state_record.state = state;
        check_members(&state_record.state, &prepared.signers, workspace)?;
        store(target, record, prepared, &mut report)?;
        *record = node::workspace_record(target.txn, workspace)?;
    } else {
        check_members(&record.state, &prepared.signers, doc_id)?;
        store(target, record, prepared, &mut report)?;
    }
    Ok(report)
}

/// What a row of [`crate::store::HELD`] holds.
enum Held {
    /// An envelope of one document (`None` if it no longer decodes).
    Whole(Option<Envelope>),
    /// A document's part of a shared envelope.
    Part(HeldPart),
}

fn held_entry(value: &[u8]) -> Held {
    match value.split_first() {
        Some((&HELD_PART, part)) => match crate::store::decode::<HeldPart>(part, "held part") {
            Ok(part) => Held::Part(part),
            Err(_) => Held::Whole(None),
        },
        _ => Held::Whole(Envelope::decode_stored(value).ok()),
    }
}

/// Keeps a shared envelope once, however many of its parts are stored or held, and gives
/// it to the outbox if this device signed it (a home restored from the device's key, say,
/// pulling its own envelopes back from one relay: the others may lack them).
fn keep_shared(
    target: &Target<'_>,
    hash: &[u8; 32],
    envelope: Option<&std::sync::Arc<Vec<u8>>>,
    signer: &[u8; 32],
) -> Result<()> {
    let Some(envelope) = envelope else {
        // A held part's envelope was kept when the part was held.
        return Ok(());
    };
    if !target.kept.borrow_mut().insert(*hash) {
        return Ok(());
    }
    let mut shared = target.txn.open_table(crate::store::ENVELOPES)?;
    if shared.get(hash)?.is_some() {
        return Ok(());
    }
    shared.insert(hash, envelope.as_slice())?;
    if *signer == target.own {
        node::append_outbox(target.txn, target.workspace, envelope)?;
    }
    Ok(())
}

/// Holds an item back or rejects it for good. A part of a shared envelope is held as its
/// own changes, the envelope kept once however many of its parts wait.
fn refuse_item(
    target: &Target<'_>,
    (doc, carrier, signer): (Id, &Carrier, &[u8; 32]),
    error: anyhow::Error,
    report: &mut Report,
) -> Result<()> {
    let Target { txn, workspace, .. } = *target;
    let mut held = txn.open_table(crate::store::HELD)?;
    if is_waiting(&error) && held.len()? < MAX_HELD {
        let next = node::next_seq(&held, doc.0)?;
        match carrier {
            Carrier::Whole(envelope) => {
                held.insert((doc.0, next), envelope.as_slice())?;
            }
            Carrier::Part {
                envelope,
                hash,
                changes,
            } => {
                let mut value = vec![HELD_PART];
                value.extend(crate::store::encode(&HeldPart {
                    workspace: workspace.0.to_vec(),
                    hash: hash.to_vec(),
                    signer: signer.to_vec(),
                    changes: changes.clone(),
                }));
                held.insert((doc.0, next), value.as_slice())?;
                drop(held);
                keep_shared(target, hash, envelope.as_ref(), signer)?;
            }
        }
        report.held += 1;
        if error.is::<Locked>() {
            report.refused_late += 1;
        }
        return Ok(());
    }
    let rejected = Rejected {
        doc: doc.hex(),
        signer: hex::encode(signer),
        reason: format!("{error:#}"),
    };
    record_rejection(txn, workspace, &rejected)?;
    report.rejected.push(rejected);
    Ok(())
}

/// Records an envelope refused during sync, for `sync` to report and for later inspection.
pub fn record_rejection(
    txn: &redb::WriteTransaction,
    workspace: Id,
    rejected: &Rejected,
) -> Result<()> {
    let mut table = txn.open_table(crate::store::REJECTED)?;
    let next = node::next_seq(&table, workspace.0)?;
    table.insert(
        (workspace.0, next),
        crate::store::encode(rejected).as_slice(),
    )?;
    Ok(())
}

/// Removes and reopens the held envelopes and parts of one document.
fn take_held(
    txn: &redb::WriteTransaction,
    workspace: Id,
    doc: Id,
    record: &WorkspaceRecord,
) -> Result<Vec<Item>> {
    let mut table = txn.open_table(crate::store::HELD)?;
    let mut items = Vec::new();
    let taken = table.extract_from_if((doc.0, 0)..=(doc.0, u64::MAX), |_, _| true)?;
    for entry in taken {
        let mut budget = Budget::stored();
        // It opened and verified once already; the workspace key has not changed since.
        match held_entry(entry?.1.value()) {
            Held::Whole(Some(envelope)) => {
                if let Ok(opened) = open_envelope(envelope, workspace, record, &mut budget) {
                    items.extend(opened);
                }
            }
            Held::Whole(None) => {}
            Held::Part(part) => {
                if let Ok(item) = held_part(doc, part, &mut budget) {
                    items.push(item);
                }
            }
        }
    }
    Ok(items)
}

/// How the envelopes a workspace holds back divide: those that hold only a removed member's
/// changes written after the remover's view of them (refused by the removal, kept in case a
/// member who took them before the removal builds on them: `crate::lock`), and the others
/// (waiting for changes or a membership that has not arrived).
pub fn held_for_removals(node: &Node, workspace: Id) -> Result<(usize, usize)> {
    let (_, record) = node.workspace(Some(&workspace.hex()))?;
    let txn = node.db().begin_read()?;
    let table = txn.open_table(crate::store::HELD)?;
    let mut held: Vec<(Id, Vec<Item>)> = Vec::new();
    for entry in table.iter()? {
        let (key, value) = entry?;
        let doc = Id(key.value().0);
        let mut budget = Budget::stored();
        let items = match held_entry(value.value()) {
            Held::Whole(Some(envelope)) if envelope.workspace_id() == workspace.0 => {
                open_envelope(envelope, workspace, &record, &mut budget).unwrap_or_default()
            }
            Held::Part(part) if part.workspace == workspace.0 => {
                held_part(doc, part, &mut budget).into_iter().collect()
            }
            _ => continue,
        };
        held.push((doc, items));
    }
    // The membership with every held workspace change in it: a device of a removed member
    // whose own entry is held (written beyond the lock) is that member's there, so the
    // lock refuses its entry and everything it wrote after.
    let mut members = node.load(workspace, workspace)?;
    let pending: Vec<Change> = held
        .iter()
        .flat_map(|(_, items)| items)
        .filter(|i| i.doc == workspace)
        .flat_map(|i| i.changes.iter().cloned())
        .collect();
    let state = match guard(|| members.apply_changes(pending)) {
        Ok(()) => workspace::read_state(View::now(&members), &record.creator),
        Err(_) => record.state.clone(),
    };
    let locks = crate::lock::Locks::of(&state);
    let (mut removals, mut others) = (0, 0);
    for (doc, items) in held {
        // Of what it carries, what the node lacks: does a removal refuse all of it?
        let loaded = node.load(workspace, doc).ok();
        let lacking = |c: &&Change| {
            loaded
                .as_ref()
                .is_none_or(|d| d.get_change_meta_by_hash(&c.hash()).is_none())
        };
        let late = |c: &Change| locks.late(doc, c.actor_id(), c.seq()).is_some();
        let mut changes = items
            .iter()
            .filter(|i| i.doc == doc)
            .flat_map(|i| &i.changes)
            .filter(lacking)
            .peekable();
        if changes.peek().is_some() && changes.all(late) {
            removals += 1;
        } else {
            others += 1;
        }
    }
    Ok((removals, others))
}

/// The item a held part stands for, parsed again from the changes kept with it.
fn held_part(doc: Id, part: HeldPart, budget: &mut Budget) -> Result<Item> {
    let hash: [u8; 32] = part.hash.as_slice().try_into()?;
    let signer: [u8; 32] = part.signer.as_slice().try_into()?;
    let changes = budget.open(part.changes.len(), |left| {
        parse_changes(&chunks(&part.changes, left, false)?)
    })?;
    Ok(Item {
        doc,
        carrier: Carrier::Part {
            envelope: None,
            hash,
            changes: part.changes,
        },
        signer,
        changes,
        snapshot: None,
    })
}

/// A document with foreign changes applied in memory, not yet stored.
struct Prepared {
    doc_id: Id,
    kind: crate::doc::Kind,
    touched: node::Touched,
    doc: Automerge,
    next_seq: u64,
    checkpointed: u64,
    envelopes: Vec<(Carrier, [u8; 32])>,
    entries: Vec<LogEntry>,
    signers: BTreeSet<[u8; 32]>,
    /// The workspace's state the batch leads to, when it is of the workspace document.
    state: Option<WorkspaceState>,
}

/// Applies one document's new changes in memory and checks the result.
fn prepare(
    target: &Target<'_>,
    record: &WorkspaceRecord,
    doc_id: Id,
    items: &mut [Item],
    report: &mut Report,
) -> Result<Option<Prepared>> {
    let Target {
        txn,
        docs,
        workspace,
        limits,
        ..
    } = *target;
    if items.is_empty() {
        return Ok(None);
    }
    let mut indexed = None;
    if doc_id != workspace
        && let Some(existing) = txn.open_table(crate::store::DOCS)?.get(doc_id.0)?
    {
        let summary: crate::index::DocSummary =
            crate::store::decode(existing.value(), "index entry")?;
        if summary.workspace != workspace.0 {
            bail!(
                "document {} already exists in another workspace on this node: refusing it",
                doc_id.short()
            );
        }
        indexed = Some(summary.kind);
    }
    let loaded = node::load_for_write(docs, txn, record, workspace, doc_id)?;
    let mut doc = loaded.doc;
    // A lone snapshot of a document this node has none of is taken whole.
    let whole = match items {
        [item] if doc.get_heads().is_empty() => item.snapshot.take(),
        _ => None,
    };
    let mut envelopes = Vec::new();
    let mut entries: Vec<LogEntry> = Vec::new();
    let mut signers = BTreeSet::new();
    let mut fresh: Vec<&Change> = Vec::new();
    let mut seen = BTreeSet::new();
    for item in items.iter() {
        let before = fresh.len();
        fresh.extend(
            item.changes
                .iter()
                // The metadata lookup reads the change graph only; `get_change_by_hash`
                // would rebuild the whole change from the document's columns.
                .filter(|c| {
                    doc.get_change_meta_by_hash(&c.hash()).is_none() && seen.insert(c.hash())
                }),
        );
        if fresh.len() == before {
            report.known += 1;
            continue;
        }
        entries.extend(fresh[before..].iter().map(|c| node::log_entry(c)));
        signers.insert(item.signer);
        envelopes.push((item.carrier.clone(), item.signer));
    }
    if fresh.is_empty() {
        return Ok(None);
    }
    let ops: usize = fresh.iter().map(|c| c.len()).sum();
    let max_ops = match whole {
        Some(_) => limits.max_document_ops,
        None => limits.max_ops,
    };
    if ops > max_ops {
        bail!(
            "the new changes to document {} hold {ops} operations, more than the limit of {max_ops} in one merge or sync: refusing them",
            doc_id.short(),
        );
    }
    report.applied += fresh.len();
    let was_empty = loaded.next_seq == 0 && doc_id != workspace;
    let roots = fresh.iter().filter(|c| c.deps().is_empty()).count();
    let took_whole = whole.is_some();
    match whole {
        Some(whole) => doc = *whole,
        None => {
            let owned: Vec<Change> = fresh.iter().map(|c| (*c).clone()).collect();
            guard(|| doc.apply_changes(owned)).with_context(|| {
                format!(
                    "the changes to document {} do not apply; nothing was merged",
                    doc_id.short()
                )
            })?;
        }
    }
    let changes = fresh;
    let missing = doc.get_missing_deps(&[]);
    if let Some(first) = missing.first() {
        return Err(MissingDeps {
            count: missing.len(),
            doc: doc_id.short(),
            first: crate::id::prefix(&first.to_string(), 12).to_string(),
        }
        .into());
    }
    let expanded: Vec<ExpandedChange> =
        guard(|| Ok::<_, anyhow::Error>(changes.iter().map(|c| c.decode()).collect()))?;
    // Only a new map, list or table can deepen a document whose stored state was checked,
    // and objects never move: the new ones are all there is to check. A snapshot taken
    // whole is checked whole.
    if took_whole {
        check_depth(&doc, limits.max_depth)?;
    } else if makes_containers(&expanded) {
        check_new_depth(&doc, &expanded, limits.max_depth)?;
    }
    let view = View::now(&doc);
    // What a document is (its kind, id and workspace) is written in its first change alone:
    // the rules refuse those fields in any later one. So a document this node has stored
    // is still what its index entry says, and reading its root again (each field a seek
    // through automerge's columns) would only say the same.
    let stored_kind = indexed.filter(|_| !was_empty);
    let kind = if doc_id == workspace {
        Some(crate::doc::Kind::Workspace)
    } else {
        stored_kind.or_else(|| view.kind())
    };
    let Some(kind) = kind else {
        bail!(
            "document {} is of an unknown kind: refusing it",
            doc_id.short()
        );
    };
    // Checked together, so the path to each object they touch is looked up once.
    let first = |change: &Change| was_empty && roots == 1 && change.deps().is_empty();
    // Whose each device is, and which removals hold, by the membership the batch leads to.
    let state = (doc_id == workspace).then(|| workspace::read_state(view, &record.creator));
    let members = state.as_ref().unwrap_or(&record.state);
    // A device not counted here yet would read as a writer of its own, not its member's,
    // and break the rules on `by`: its changes to other documents wait for its entry
    // instead. (The workspace document's own rules come first: a change there can undo
    // the very membership it would be checked against.)
    if doc_id != workspace {
        check_members(members, &signers, doc_id)?;
    }
    let checked =
        || crate::rules::check_decoded(&doc, kind, &changes, &expanded, first, Some(members));
    let touched = guard(checked).with_context(|| {
        format!(
            "document {} was refused; nothing was merged",
            doc_id.short()
        )
    })?;
    // A removal holds: a removed member's changes beyond what the remover had of them are
    // refused, by the membership the batch leads to (it may bring the removal itself).
    let locks = crate::lock::Locks::of(state.as_ref().unwrap_or(&record.state));
    let refused = crate::lock::refused(&locks, doc_id, &changes);
    if let Some((change, writer)) = refused.first() {
        let name = members.name_of(writer);
        let writer = if locks.is_revoked_device(change.actor_id()) {
            format!("by a device of {name}'s after it was revoked")
        } else {
            format!("by {name} after they were removed from the workspace")
        };
        return Err(Locked {
            count: refused.len(),
            doc: doc_id.short(),
            writer,
        }
        .into());
    }
    if stored_kind.is_none() {
        let expected_kind = doc_id == workspace || kind != crate::doc::Kind::Workspace;
        let in_workspace = if doc_id == workspace {
            view.str(&ROOT, "id")
        } else {
            view.str(&ROOT, "workspace")
        };
        let id = view.str(&ROOT, "id");
        if !expected_kind
            || in_workspace.as_deref() != Some(workspace.hex().as_str())
            || id.as_deref() != Some(doc_id.hex().as_str())
        {
            bail!(
                "document {} does not say it is that document of this workspace: refusing it",
                doc_id.short()
            );
        }
    }
    Ok(Some(Prepared {
        doc_id,
        kind,
        // A new document, and one taken whole, is summarised whole.
        touched: if stored_kind.is_some() && !took_whole {
            touched
        } else {
            node::Touched::anything()
        },
        doc,
        next_seq: loaded.next_seq,
        checkpointed: loaded.checkpointed,
        envelopes,
        entries,
        signers,
        state,
    }))
}

/// Stores a prepared document: its new envelopes, history lines and index entry; the
/// envelopes this device signed also go to the outbox.
fn store(
    target: &Target<'_>,
    record: &WorkspaceRecord,
    prepared: Prepared,
    report: &mut Report,
) -> Result<()> {
    let Target {
        txn,
        docs,
        workspace,
        own,
        ..
    } = *target;
    let mut records = Vec::with_capacity(prepared.envelopes.len());
    for (carrier, signer) in prepared.envelopes {
        match carrier {
            Carrier::Whole(envelope) => {
                if signer == own {
                    node::append_outbox(txn, workspace, &envelope)?;
                }
                records.push(Record::Sealed(envelope));
            }
            Carrier::Part {
                envelope,
                hash,
                changes,
            } => {
                keep_shared(target, &hash, envelope.as_ref(), &signer)?;
                records.push(Record::Part {
                    envelope: hash.to_vec(),
                    changes,
                });
            }
        }
    }
    let appended = node::append_records(
        txn,
        prepared.doc_id,
        prepared.next_seq,
        &records,
        &prepared.entries,
    )?;
    node::reindex(
        txn,
        (workspace, record),
        (prepared.doc_id, prepared.kind),
        &prepared.doc,
        (prepared.entries.len() as u64, &prepared.touched),
    )?;
    report.documents.push(prepared.doc_id.hex());
    let stored = node::Loaded {
        doc: prepared.doc,
        next_seq: prepared.next_seq + records.len() as u64,
        checkpointed: prepared.checkpointed,
    };
    node::stored(
        docs,
        txn,
        (workspace, prepared.doc_id),
        stored,
        (appended, None),
    )
}

thread_local! {
    static GUARDED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs automerge on untrusted input, turning a panic inside it into an error: crafted
/// changes can reach assertions in automerge that are not meant as input validation.
///
/// The panic message is silenced on this thread only. The process's panic hook is wrapped
/// once, not swapped per call: swapping races when two threads guard at once, and the
/// loser leaves the silent hook installed for good, hiding every later panic.
pub fn guard<T, E: std::fmt::Display>(f: impl FnOnce() -> Result<T, E>) -> Result<T> {
    static WRAP: std::sync::Once = std::sync::Once::new();
    WRAP.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !GUARDED.get() {
                previous(info);
            }
        }));
    });
    let outer = GUARDED.replace(true);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    GUARDED.set(outer);
    match result {
        Ok(result) => result.map_err(|e| anyhow::anyhow!("{e:#}")),
        Err(_) => bail!("automerge could not process the changes (they are malformed)"),
    }
}

/// Whether any operation makes a container that can hold other objects.
fn makes_containers(changes: &[ExpandedChange]) -> bool {
    changes.iter().flat_map(|c| &c.operations).any(|op| {
        matches!(
            op.action,
            automerge::legacy::OpType::Make(ObjType::Map | ObjType::List | ObjType::Table)
        )
    })
}

/// Fails if an object that `changes` (applied to `doc`) create is nested deeper than `max`
/// levels, as [`check_depth`] counts them: each costs the walk up from its parent, which
/// stops past `max`.
pub fn check_new_depth(doc: &Automerge, changes: &[ExpandedChange], max: usize) -> Result<()> {
    use automerge::legacy::{ObjectId, OpId, OpType};
    // Objects made in this batch are known by the depth they were made at; the others
    // are looked up once each.
    let mut depths: std::collections::HashMap<ObjectId, usize> = Default::default();
    for change in changes {
        for (index, op) in change.operations.iter().enumerate() {
            if !matches!(
                op.action,
                OpType::Make(ObjType::Map | ObjType::List | ObjType::Table)
            ) {
                continue;
            }
            let parent = match depths.get(&op.obj) {
                Some(depth) => *depth,
                None => {
                    let depth = match &op.obj {
                        ObjectId::Root => 0,
                        obj => {
                            let id = guard(|| doc.import_obj(&obj.to_string()))?;
                            // One level per ancestor, the root included.
                            guard(|| doc.parents(&id))?.take(max + 1).count()
                        }
                    };
                    depths.insert(op.obj.clone(), depth);
                    depth
                }
            };
            if parent + 1 > max {
                bail!("the document nests objects more than {max} levels deep: refusing it");
            }
            let made = OpId(
                change.start_op.get() + index as u64,
                change.actor_id.clone(),
            );
            depths.insert(ObjectId::Id(made), parent + 1);
        }
    }
    Ok(())
}

/// Fails if any object in the document is nested deeper than `max` levels.
pub fn check_depth(doc: &Automerge, max: usize) -> Result<()> {
    let mut stack = vec![(ROOT, 0usize)];
    while let Some((obj, depth)) = stack.pop() {
        if depth > max {
            bail!("the document nests objects more than {max} levels deep: refusing it");
        }
        let children: Vec<_> = match doc.object_type(&obj) {
            Ok(ObjType::Map) | Ok(ObjType::Table) => doc
                .keys(&obj)
                .filter_map(|k| doc.get(&obj, k).ok().flatten())
                .collect(),
            Ok(ObjType::List) => (0..doc.length(&obj))
                .filter_map(|i| doc.get(&obj, i).ok().flatten())
                .collect(),
            _ => Vec::new(),
        };
        for (value, id) in children {
            if matches!(value, Value::Object(t) if t != ObjType::Text) {
                stack.push((id, depth + 1));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::SigningKey;

    use super::*;

    #[test]
    fn a_run_length_column_is_counted_without_expanding_it() {
        // Three 5s, then the literals 1 and 2, then four nulls: nine values.
        assert_eq!(rle_len(&[3, 5, 0x7e, 1, 2, 0, 4]).unwrap(), 9);
        // A million copies in four bytes (count 1,000,000 as signed LEB128, then the value).
        assert_eq!(rle_len(&[0xc0, 0x84, 0x3d, 7]).unwrap(), 1_000_000);
        assert!(rle_len(&[3]).is_err(), "a run without its value");
        assert!(rle_len(&[0x7e, 1]).is_err(), "fewer literals than counted");
    }

    /// A document nested `levels` deep: all but the last level in one change, the last in
    /// a second. Returns the document and the second change, decoded.
    fn nested(levels: usize, list: bool) -> (Automerge, Vec<ExpandedChange>) {
        use automerge::transaction::Transactable;
        let mut doc = Automerge::new();
        let mut tx = doc.transaction();
        let mut obj = ROOT;
        for _ in 0..levels - 1 {
            obj = tx.put_object(&obj, "deeper", ObjType::Map).unwrap();
        }
        tx.commit();
        let heads = doc.get_heads();
        let mut tx = doc.transaction();
        if list {
            let l = tx.put_object(&obj, "last", ObjType::List).unwrap();
            tx.insert_object(&l, 0, ObjType::Map).unwrap();
        } else {
            tx.put_object(&obj, "last", ObjType::Map).unwrap();
            tx.put_object(&obj, "text", ObjType::Text).unwrap();
        }
        tx.commit();
        let new = doc.get_changes(&heads).iter().map(|c| c.decode()).collect();
        (doc, new)
    }

    #[test]
    fn new_objects_alone_are_checked_for_depth_with_the_verdict_of_the_whole_walk() {
        for levels in [1, 2, 9, 10, 11, 12] {
            for list in [false, true] {
                let (doc, new) = nested(levels, list);
                let whole = check_depth(&doc, 10).is_ok();
                let incremental = check_new_depth(&doc, &new, 10).is_ok();
                assert_eq!(incremental, whole, "{levels} levels, list {list}");
            }
        }
        // The boundary is where the whole walk puts it.
        let (doc, new) = nested(10, false);
        assert!(check_new_depth(&doc, &new, 10).is_ok());
        let (doc, new) = nested(11, false);
        assert!(check_new_depth(&doc, &new, 10).is_err());
        // Several levels made in the same change count from their parent in it.
        let (doc, _) = nested(12, false);
        let all: Vec<ExpandedChange> = doc.get_changes(&[]).iter().map(|c| c.decode()).collect();
        assert!(check_new_depth(&doc, &all, 10).is_err());
        assert!(check_new_depth(&doc, &all, 12).is_ok());
    }

    #[test]
    fn envelopes_checked_on_every_core_come_back_in_order_each_with_its_own_verdict() {
        let device = SigningKey::from_bytes(&[1; 32]);
        let key = [9; 32];
        // Past one window, so several windows and threads take part.
        let count = VERIFY_WINDOW * 2 + 37;
        let mut encoded: Vec<Vec<u8>> = (0..count)
            .map(|i| {
                let doc = Id([(i % 251) as u8; 16]);
                let plaintext = (i as u32).to_le_bytes();
                seal::seal(&device, &key, Id([7; 16]), doc, &plaintext).encode()
            })
            .collect();
        // A forged signature here and there, one in each window.
        let forged = [3, VERIFY_WINDOW + 300, count - 1];
        for &i in &forged {
            let mut envelope = Envelope::decode_stored(&encoded[i]).unwrap();
            envelope.signature[0] ^= 1;
            encoded[i] = envelope.encode();
        }
        let slices: Vec<&[u8]> = encoded.iter().map(Vec::as_slice).collect();
        let mut seen = Vec::new();
        each_verified(&slices, |i, envelope| {
            match envelope {
                Ok(envelope) => {
                    let plaintext = seal::open(&key, &envelope).unwrap();
                    assert_eq!(plaintext, (i as u32).to_le_bytes(), "envelope {i}");
                }
                Err(error) => assert!(forged.contains(&i), "envelope {i}: {error}"),
            }
            seen.push(i);
            Ok::<_, ()>(())
        })
        .unwrap();
        assert_eq!(seen, (0..count).collect::<Vec<_>>());
        // The caller's error stops it where it happened.
        let mut last = 0;
        let stopped = each_verified(&slices, |i, _| {
            last = i;
            if i == VERIFY_WINDOW + 5 {
                Err(i)
            } else {
                Ok(())
            }
        });
        assert_eq!((stopped, last), (Err(VERIFY_WINDOW + 5), VERIFY_WINDOW + 5));

        // No envelope, and one: no window to check ahead, nothing left behind.
        let mut calls = 0;
        each_verified(&[], |_, _| {
            calls += 1;
            Ok::<_, ()>(())
        })
        .unwrap();
        assert_eq!(calls, 0);
        each_verified(&slices[..1], |i, envelope| {
            assert_eq!((i, envelope.is_ok()), (0, true));
            calls += 1;
            Ok::<_, ()>(())
        })
        .unwrap();
        assert_eq!(calls, 1);

        // Large envelopes make smaller windows, in the same order.
        let big: Vec<Vec<u8>> = (0..30u8)
            .map(|i| seal::seal(&device, &key, Id([7; 16]), Id([i; 16]), &[i; 700 << 10]).encode())
            .collect();
        let slices: Vec<&[u8]> = big.iter().map(Vec::as_slice).collect();
        let mut seen = Vec::new();
        each_verified(&slices, |i, envelope| {
            assert_eq!(envelope.unwrap().doc_id(), [i as u8; 16]);
            seen.push(i);
            Ok::<_, ()>(())
        })
        .unwrap();
        assert_eq!(seen, (0..30).collect::<Vec<_>>());
    }
}
