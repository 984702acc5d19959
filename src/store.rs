//! The node's redb file: table definitions and the records kept in them.
//!
//! The source of truth is `RECORDS`, the append-only list of change records per document
//! (sealed envelopes as their authors signed them). Everything else is derived from it and
//! kept in the same transactions: `HISTORY` serves `log` without loading a document, `DOCS`
//! is the index behind lists and the inbox, `CHECKPOINTS` spares loading a long document
//! from every record, `WORKSPACES` caches each workspace's members and norms. Values are CBOR, so fields can be added without a migration.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use redb::{
    ConcurrencyMode, Database, DatabaseError, ReadableDatabase, ReadableTable, TableDefinition,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Small settings of this home: the profile, the actor incarnation.
pub const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// Workspace id → [`WorkspaceRecord`].
pub const WORKSPACES: TableDefinition<[u8; 16], &[u8]> = TableDefinition::new("workspaces");
/// (document id, sequence) → [`Record`]: every change the node has, in arrival order.
pub const RECORDS: TableDefinition<([u8; 16], u64), &[u8]> = TableDefinition::new("records");
/// Document id → [`Checkpoint`]: a save of the document as of its records before a
/// position, so loading it reads the save and the records after it, not every record.
pub const CHECKPOINTS: TableDefinition<[u8; 16], &[u8]> = TableDefinition::new("checkpoints");
/// (document id, sequence) → [`LogEntry`]: one per change, for `log`.
pub const HISTORY: TableDefinition<([u8; 16], u64), &[u8]> = TableDefinition::new("history");
/// Document id → [`crate::index::DocSummary`]: the derived index.
pub const DOCS: TableDefinition<[u8; 16], &[u8]> = TableDefinition::new("docs");
/// Document id → the heads the reader last marked as read.
pub const READ_MARKERS: TableDefinition<[u8; 16], &[u8]> = TableDefinition::new("read_markers");
/// (workspace id, sequence) → encoded envelope not yet stored by a relay.
pub const OUTBOX: TableDefinition<([u8; 16], u64), &[u8]> = TableDefinition::new("outbox");

/// Envelope hash → encoded shared envelope (changes to several documents, signed once),
/// kept once for every document record ([`Record::Part`]) and held entry that refers to it.
pub const ENVELOPES: TableDefinition<[u8; 32], &[u8]> = TableDefinition::new("envelopes");

/// Workspace id → the position the next outbox entry gets.
pub const OUTBOX_NEXT: TableDefinition<[u8; 16], u64> = TableDefinition::new("outbox_next");
/// (workspace id, relay URL) → [`Cursor`]: how far sync got with each relay.
pub const CURSORS: TableDefinition<([u8; 16], &str), &[u8]> = TableDefinition::new("cursors");
/// (document id, sequence) → encoded envelope received by sync and held back until the
/// changes it depends on (or its signer's membership) arrive.
pub const HELD: TableDefinition<([u8; 16], u64), &[u8]> = TableDefinition::new("held");
/// (workspace id, relay URL, document id) → [`crate::snapshot::Sent`]: the last snapshot of
/// a document this node gave a relay.
pub const SNAPSHOTS_SENT: TableDefinition<SentKey, &[u8]> = TableDefinition::new("snapshots_sent");

/// (workspace id, relay id, member key) → nothing: the creator vouched for that member to
/// that relay, and the relay answered ([`crate::sync::session::Session::vouch`]).
pub const VOUCHED: TableDefinition<VouchedKey, ()> = TableDefinition::new("vouched");

/// (workspace id, relay id, member key).
pub type VouchedKey = ([u8; 16], [u8; 16], [u8; 32]);

/// (workspace id, relay URL, document id).
pub type SentKey = ([u8; 16], &'static str, [u8; 16]);
/// (workspace id, sequence) → [`crate::ingest::Rejected`]: envelopes refused during sync.
pub const REJECTED: TableDefinition<([u8; 16], u64), &[u8]> = TableDefinition::new("rejected");

/// How far sync got with one relay of one workspace.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// The relay's id when the cursor was taken: a relay with another id has another log.
    pub relay: Option<serde_bytes::ByteBuf>,
    /// The relay log's sequence number up to which everything was applied.
    pub pulled: u64,
    /// The outbox sequence number up to which the relay stored everything (exclusive).
    pub pushed: u64,
    /// Whether the relay took shared envelopes when it last welcomed this device, so the
    /// first push of the next connection may carry them.
    #[serde(default)]
    pub shared: bool,
}

/// How long a command waits for another `meridian` process to release the database.
const OPEN_PATIENCE: Duration = Duration::from_secs(10);

/// One stored change record. An enum so that later kinds can join without a migration.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Record {
    /// An encoded, signed envelope, exactly as its author sealed it.
    Sealed(#[serde(with = "serde_bytes")] Vec<u8>),
    /// A document's part of a shared envelope (several documents' changes, signed once),
    /// which is kept once in [`ENVELOPES`].
    Part {
        /// The shared envelope's hash, its key in [`ENVELOPES`].
        #[serde(with = "serde_bytes")]
        envelope: Vec<u8>,
        /// This document's automerge change chunks from it, as verified when stored.
        #[serde(with = "serde_bytes")]
        changes: Vec<u8>,
    },
}

/// A document saved as of its records before `next_seq` (derived data: the records stay
/// the source of truth, and a checkpoint that does not load is ignored).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The position of the first record not in the save.
    pub next_seq: u64,
    /// How many changes the save holds (its history lines).
    pub changes: u64,
    /// `Automerge::save` of the document.
    #[serde(with = "serde_bytes")]
    pub save: Vec<u8>,
}

/// One line of a document's history.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LogEntry {
    /// The automerge change hash.
    #[serde(with = "serde_bytes")]
    pub hash: Vec<u8>,
    /// The hashes this change depends on.
    pub deps: Vec<serde_bytes::ByteBuf>,
    /// The device key of the author (the first 32 bytes of the actor id), whose signature
    /// over the change was verified before it was stored.
    #[serde(with = "serde_bytes")]
    pub author: Vec<u8>,
    /// Milliseconds since the epoch, as the author's clock said.
    pub time: i64,
    /// The commit message.
    pub message: String,
}

/// What the node knows about a workspace it belongs to.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WorkspaceRecord {
    /// The workspace's display name.
    pub name: String,
    /// The symmetric key that seals its changes.
    #[serde(with = "serde_bytes")]
    pub key: Vec<u8>,
    /// The device key of its creator (the root of membership).
    #[serde(with = "serde_bytes")]
    pub creator: Vec<u8>,
    /// Relay URLs.
    pub relays: Vec<String>,
    /// The deterministic first change of the workspace document.
    #[serde(with = "serde_bytes")]
    pub genesis: Vec<u8>,
    /// Members and norms derived from the workspace document.
    pub state: crate::workspace::WorkspaceState,
    /// The salt the workspace id was derived with from the creator's key: the creator
    /// shows it to register the workspace with a relay.
    #[serde(default)]
    pub salt: Option<serde_bytes::ByteBuf>,
    /// How this device was admitted, shown to a relay to register with it.
    #[serde(default)]
    pub proof: Option<crate::workspace::JoinProof>,
}

/// Opens (or creates) the node's database.
///
/// The file is opened in redb's multi-writer mode, so several `meridian` processes (a
/// command while the daemon runs) share it, one write transaction at a time. A process of
/// an older redb that locks the whole file is waited for, for a while.
///
/// Multi-writer mode also makes every commit two-phase and record the allocator state
/// (redb's quick-repair), so opening after a crash does not read the whole file: the choice
/// the relay makes too, on measurements (`ARCHITECTURE.md`, "Crash recovery"). Should a
/// full repair still be needed, its progress is logged.
pub fn open_database(path: &Path) -> Result<Database> {
    let started = Instant::now();
    let mut wait = Duration::from_millis(5);
    let mut builder = Database::builder();
    builder.set_concurrency_mode(ConcurrencyMode::MultiWriter);
    builder.set_repair_callback(|session| {
        tracing::warn!(
            "repairing the database after an unclean shutdown: {:.0}% done",
            session.progress() * 100.0
        );
    });
    loop {
        match builder.create(path) {
            Ok(db) => return Ok(db),
            Err(DatabaseError::DatabaseAlreadyOpen) if started.elapsed() < OPEN_PATIENCE => {
                std::thread::sleep(wait);
                wait = (wait * 2).min(Duration::from_millis(200));
            }
            Err(DatabaseError::DatabaseAlreadyOpen) => bail!(
                "{} is in use by another meridian process that did not finish within {}s; wait for it or stop it",
                path.display(),
                OPEN_PATIENCE.as_secs()
            ),
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("cannot open the database {}", path.display()));
            }
        }
    }
}

/// The version of the table layout; a home made by an older build gets the new tables.
pub const SCHEMA: u64 = 6;

/// Brings a home's tables up to this build's layout (tables are only ever added).
pub fn upgrade(db: &Database) -> Result<()> {
    let current = {
        let txn = db.begin_read()?;
        let meta = txn.open_table(META)?;
        meta.get("schema")?
            .and_then(|v| v.value().try_into().ok().map(u64::from_le_bytes))
            .unwrap_or(1)
    };
    if current < SCHEMA {
        let txn = db.begin_write()?;
        open_every_table(&txn)?;
        pull_again_what_was_unreadable(&txn)?;
        txn.commit()?;
    }
    Ok(())
}

/// Creates every table, so read transactions never meet a missing one.
pub fn create_tables(db: &Database) -> Result<()> {
    let txn = db.begin_write()?;
    open_every_table(&txn)?;
    txn.commit()?;
    Ok(())
}

/// Moves the pull cursors back to the first entry an older build refused because it could
/// not read its envelope's version (a shared envelope, to a build before them), and forgets
/// those refusals: this build judges the entries again on its next sync. Other entries
/// pulled again are recognised as known.
fn pull_again_what_was_unreadable(txn: &redb::WriteTransaction) -> Result<()> {
    /// The one field of a stored refusal read here.
    #[derive(Deserialize)]
    struct Refusal {
        reason: String,
    }
    let mut rejected = txn.open_table(REJECTED)?;
    let mut again: std::collections::BTreeMap<([u8; 16], String), u64> = Default::default();
    let mut forget = Vec::new();
    for entry in rejected.iter()? {
        let (key, value) = entry?;
        let Ok(refusal) = decode::<Refusal>(value.value(), "refusal") else {
            continue;
        };
        if let Some((seq, relay)) = unreadable_entry(&refusal.reason) {
            let (workspace, _) = key.value();
            let first = again.entry((workspace, relay)).or_insert(seq);
            *first = (*first).min(seq);
            forget.push(key.value());
        }
    }
    for key in forget {
        rejected.remove(key)?;
    }
    let mut cursors = txn.open_table(CURSORS)?;
    for ((workspace, relay), seq) in again {
        let Some(stored) = cursors.get((workspace, relay.as_str()))? else {
            continue;
        };
        let mut cursor: Cursor = decode(stored.value(), "cursor")?;
        drop(stored);
        cursor.pulled = cursor.pulled.min(seq.saturating_sub(1));
        cursors.insert((workspace, relay.as_str()), encode(&cursor).as_slice())?;
    }
    Ok(())
}

/// The log position and relay of a refusal that says `entry SEQ of RELAY: envelope version
/// N is not supported…`, as sync records an entry whose version the build does not read.
fn unreadable_entry(reason: &str) -> Option<(u64, String)> {
    let (seq, rest) = reason.strip_prefix("entry ")?.split_once(" of ")?;
    // A relay URL holds "://" but never ": ".
    let (relay, error) = rest.split_once(": ")?;
    let unreadable = error.starts_with("envelope version ") && error.contains(" is not supported");
    unreadable.then_some((seq.parse().ok()?, relay.to_string()))
}

fn open_every_table(txn: &redb::WriteTransaction) -> Result<()> {
    txn.open_table(META)?
        .insert("schema", SCHEMA.to_le_bytes().as_slice())?;
    txn.open_table(META)?;
    txn.open_table(WORKSPACES)?;
    txn.open_table(RECORDS)?;
    txn.open_table(HISTORY)?;
    txn.open_table(DOCS)?;
    txn.open_table(READ_MARKERS)?;
    txn.open_table(OUTBOX)?;
    txn.open_table(OUTBOX_NEXT)?;
    txn.open_table(CURSORS)?;
    txn.open_table(HELD)?;
    txn.open_table(REJECTED)?;
    txn.open_table(SNAPSHOTS_SENT)?;
    txn.open_table(CHECKPOINTS)?;
    txn.open_table(ENVELOPES)?;
    txn.open_table(VOUCHED)?;
    Ok(())
}

/// Encodes a value as CBOR.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let mut bytes = Vec::new();
    ciborium::into_writer(value, &mut bytes).expect("writing CBOR to a Vec cannot fail");
    bytes
}

/// Decodes a stored CBOR value; `what` names it in the error.
pub fn decode<T: DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T> {
    meridian_relay::cbor::from_slice(bytes).with_context(|| format!("the stored {what} is corrupt"))
}
