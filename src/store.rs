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
/// (document id, sequence of its first line) → a run of consecutive history lines, one per
/// change, for `log` ([`history_row`]; rows written before runs hold one [`LogEntry`]).
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
/// Generation → workspace id and document id (32 bytes): documents written since the search
/// index was last brought up to date (`search`). Appended in the transaction that writes a
/// document's index summary, so it is as durable as the write; the search index's commit
/// names the generation it has reached, and what lies beyond it is indexed again.
pub const SEARCH_QUEUE: TableDefinition<u64, [u8; 32]> = TableDefinition::new("search_queue");

/// (workspace id, envelope hash) → a keyring record's envelope, after one byte: 1 once it
/// was checked and adopted, 0 while it waits for what it names (`crate::epochs`).
pub const KEYRING: TableDefinition<([u8; 16], [u8; 32]), &[u8]> = TableDefinition::new("keyring");

/// (workspace id, sequence) → an envelope sealed under a key epoch this device does not hold
/// yet, kept until a keyring record brings it (`crate::epochs`).
pub const HELD_EPOCH: TableDefinition<([u8; 16], u64), &[u8]> = TableDefinition::new("held_epoch");

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
    /// `Automerge::save` of the document, or with `deflated` its uncompressed save
    /// deflated as one stream at the fastest level.
    #[serde(with = "serde_bytes")]
    pub save: Vec<u8>,
    /// How `save` is compressed. Automerge's own save deflates each column at the default
    /// level: for a discussion (mostly text) that is 13 times the time of saving it
    /// uncompressed, and a checkpoint is written every sixteenth of a document's growth.
    /// Deflating the uncompressed save at the fastest level takes a fifth of the time for
    /// 1.6 times the bytes, and inflating it adds a fifteenth to loading. Older checkpoints
    /// (and ones made from a save already at hand) are automerge's own.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deflated: bool,
}

impl Checkpoint {
    /// The checkpoint of a document as it is now.
    pub fn of(doc: &automerge::Automerge, next_seq: u64, changes: u64) -> Checkpoint {
        use std::io::Write as _;
        let mut deflating =
            flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
        let deflated = deflating
            .write_all(&doc.save_nocompress())
            .and_then(|()| deflating.finish());
        match deflated {
            Ok(save) => Checkpoint {
                next_seq,
                changes,
                save,
                deflated: true,
            },
            // Writing into memory does not fail; automerge's own save if it ever did.
            Err(_) => Checkpoint {
                next_seq,
                changes,
                save: doc.save(),
                deflated: false,
            },
        }
    }

    /// The bytes `Automerge::load` takes. A checkpoint is derived data in the home, but a
    /// damaged one must not make a load use unbounded memory: it inflates to at most 64
    /// times its size and a MiB (a discussion's uncompressed save is about 3 times its
    /// deflated one), or is refused and the records are read instead.
    pub fn saved(&self) -> anyhow::Result<std::borrow::Cow<'_, [u8]>> {
        if !self.deflated {
            return Ok(std::borrow::Cow::Borrowed(&self.save));
        }
        let limit = self.save.len().saturating_mul(64).saturating_add(1 << 20);
        meridian_relay::deflate::inflate_bounded(&self.save, limit)
            .map(std::borrow::Cow::Owned)
            .map_err(|e| anyhow::anyhow!("the checkpoint does not inflate ({e:?})"))
    }
}

/// One line of a document's history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
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

/// The most history lines one `HISTORY` row holds: a large edit's lines are stored in rows
/// of many, and `log -n 20` reads at most two rows.
pub const RUN_LINES: usize = 256;

/// The first byte of a `HISTORY` row that holds a run of lines. Rows written before runs
/// hold one CBOR-encoded [`LogEntry`], a map, whose first byte is never this.
const RUN_TAG: u8 = 0x01;

/// Line flags: the line depends on exactly the line before it in the run, has its author,
/// has its message.
const DEPS_PREVIOUS: u8 = 1;
const SAME_AUTHOR: u8 = 2;
const SAME_MESSAGE: u8 = 4;

/// Encodes consecutive history lines, at most [`RUN_LINES`] of them, as the `HISTORY` row
/// that stores them.
///
/// Lines of one edit or one sync mostly depend on the line before, share an author and a
/// message, and were made milliseconds apart; a run says so in a flag byte, so a typed
/// line costs its hash and a few bytes, not the 150 of a CBOR map with a second hash and
/// the author's key in it. An entry per row also cost a B-tree insert per change, a fifth
/// of a batch import's time.
pub fn history_row(lines: &[LogEntry]) -> Vec<u8> {
    debug_assert!(!lines.is_empty() && lines.len() <= RUN_LINES);
    let mut out = Vec::with_capacity(8 + lines.len() * 40);
    out.push(RUN_TAG);
    put_unsigned(&mut out, lines.len() as u64);
    let mut previous: Option<&LogEntry> = None;
    for line in lines {
        let deps_previous =
            previous.is_some_and(|p| line.deps.len() == 1 && line.deps[0] == p.hash);
        let same_author = previous.is_some_and(|p| p.author == line.author);
        let same_message = previous.is_some_and(|p| p.message == line.message);
        let flag = |set: bool, flag: u8| if set { flag } else { 0 };
        out.push(
            flag(deps_previous, DEPS_PREVIOUS)
                | flag(same_author, SAME_AUTHOR)
                | flag(same_message, SAME_MESSAGE),
        );
        put_bytes(&mut out, &line.hash);
        if !deps_previous {
            put_unsigned(&mut out, line.deps.len() as u64);
            for dep in &line.deps {
                put_bytes(&mut out, dep);
            }
        }
        if !same_author {
            put_bytes(&mut out, &line.author);
        }
        leb128::write::signed(
            &mut out,
            line.time.wrapping_sub(previous.map_or(0, |p| p.time)),
        )
        .expect("writing to a Vec cannot fail");
        if !same_message {
            put_bytes(&mut out, line.message.as_bytes());
        }
        previous = Some(line);
    }
    out
}

fn put_unsigned(out: &mut Vec<u8>, value: u64) {
    leb128::write::unsigned(out, value).expect("writing to a Vec cannot fail");
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_unsigned(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// The history lines of one `HISTORY` row: a run, or a lone entry as older builds wrote.
pub fn history_lines(row: &[u8]) -> Result<Vec<LogEntry>> {
    history_last_lines(row, usize::MAX)
}

/// The last `n` history lines of one `HISTORY` row, oldest first. The lines before them
/// are read (each depends on the one before) but not copied out.
pub fn history_last_lines(row: &[u8], n: usize) -> Result<Vec<LogEntry>> {
    match row.first() {
        Some(&RUN_TAG) => decode_run(&row[1..], n).context("a stored history line is corrupt"),
        _ if n == 0 => Ok(Vec::new()),
        _ => Ok(vec![decode(row, "history line")?]),
    }
}

/// How many history lines one `HISTORY` row holds, reading only its header.
pub fn history_row_len(row: &[u8]) -> Result<u64> {
    match row.first() {
        Some(&RUN_TAG) => Ok(run_len(&mut &row[1..])
            .context("a stored history line is corrupt (its count)")?
            as u64),
        _ => Ok(1),
    }
}

/// The line count at the head of a run: at least one, at most [`RUN_LINES`], as every run
/// is written. A damaged count is refused rather than trusted, so it can neither move the
/// positions of the lines that follow nor make one row decode to a multitude of copies of
/// its longest message.
fn run_len(input: &mut &[u8]) -> Result<usize> {
    let count = get_unsigned(input)?;
    if count == 0 || count > RUN_LINES as u64 {
        bail!("it claims {count} lines, where a run holds 1 to {RUN_LINES}");
    }
    Ok(count as usize)
}

/// A line of a run, borrowed from the row: what the next line may repeat.
#[derive(Clone, Copy)]
struct RunLine<'a> {
    hash: &'a [u8],
    author: &'a [u8],
    time: i64,
    message: &'a str,
}

fn decode_run(mut bytes: &[u8], keep: usize) -> Result<Vec<LogEntry>> {
    let input = &mut bytes;
    let count = run_len(input)?;
    let first_kept = count.saturating_sub(keep);
    let mut lines: Vec<LogEntry> = Vec::with_capacity(count - first_kept);
    let mut previous: Option<RunLine<'_>> = None;
    let mut deps: Vec<&[u8]> = Vec::new();
    for i in 0..count {
        let [flags, rest @ ..] = *input else {
            bail!("a line ends early");
        };
        *input = rest;
        let repeats = |flag: u8, what: &str| match (flags & flag != 0, previous) {
            (true, Some(previous)) => Ok(Some(previous)),
            (true, None) => bail!("the first line of a run repeats {what}"),
            (false, _) => Ok(None),
        };
        let hash = get_hash(input)?;
        deps.clear();
        match repeats(DEPS_PREVIOUS, "the line before it")? {
            Some(previous) => deps.push(previous.hash),
            None => {
                let n = get_unsigned(input)?;
                if n > input.len() as u64 {
                    bail!("a line claims {n} dependencies");
                }
                for _ in 0..n {
                    deps.push(get_hash(input)?);
                }
            }
        }
        let author = match repeats(SAME_AUTHOR, "an author")? {
            Some(previous) => previous.author,
            None => match get_bytes(input)? {
                key if key.is_empty() || key.len() == 32 => key,
                key => bail!("an author key of {} bytes", key.len()),
            },
        };
        let delta = leb128::read::signed(input)
            .ok()
            .context("a time ends early")?;
        let time = previous.map_or(0, |p| p.time).wrapping_add(delta);
        let message = match repeats(SAME_MESSAGE, "a message")? {
            Some(previous) => previous.message,
            None => std::str::from_utf8(get_bytes(input)?)
                .ok()
                .context("a message is not UTF-8")?,
        };
        if i >= first_kept {
            lines.push(LogEntry {
                hash: hash.to_vec(),
                deps: deps
                    .iter()
                    .map(|d| serde_bytes::ByteBuf::from(d.to_vec()))
                    .collect(),
                author: author.to_vec(),
                time,
                message: message.to_string(),
            });
        }
        previous = Some(RunLine {
            hash,
            author,
            time,
            message,
        });
    }
    if !input.is_empty() {
        bail!("{} bytes follow its last line", input.len());
    }
    Ok(lines)
}

/// A change hash: 32 bytes, as automerge's are.
fn get_hash<'a>(input: &mut &'a [u8]) -> Result<&'a [u8]> {
    match get_bytes(input)? {
        hash if hash.len() == 32 => Ok(hash),
        hash => bail!("a change hash of {} bytes", hash.len()),
    }
}

fn get_unsigned(input: &mut &[u8]) -> Result<u64> {
    crate::ingest::take_uleb(input, "number")
}

fn get_bytes<'a>(input: &mut &'a [u8]) -> Result<&'a [u8]> {
    let len = get_unsigned(input)?;
    crate::ingest::take(input, len, "field")
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
    /// How this device was added to its member's devices (`meridian device join`), shown
    /// to a relay to register with it.
    #[serde(default)]
    pub device_proof: Option<meridian_relay::membership::DeviceProof>,
    /// The key epochs after the first this device holds the secrets of.
    #[serde(default)]
    pub epochs: Vec<crate::seal::EpochKey>,
    /// What this device seals new changes under (`epochs::settle` chooses).
    #[serde(default)]
    pub sealing: crate::keyring::Sealing,
    /// Relays the workspace shares that this device chose not to use.
    #[serde(default)]
    pub dropped: Vec<String>,
    /// Relays in `relays` only because the workspace shares them (not added here, nor from
    /// the invite): they go when the workspace stops sharing them.
    #[serde(default)]
    pub followed: Vec<String>,
    /// The removed members (ids) whose changes this node took before their removal
    /// reached it have been endorsed (`Node::settle_removals`), so it is not looked for
    /// again.
    #[serde(default)]
    pub endorsed: Vec<String>,
}

impl WorkspaceRecord {
    /// A record of workspace `acme` holding `key`, nobody removed, for tests.
    #[cfg(test)]
    pub(crate) fn with_key(key: &[u8]) -> WorkspaceRecord {
        WorkspaceRecord {
            name: "acme".into(),
            key: key.to_vec(),
            creator: Vec::new(),
            relays: Vec::new(),
            genesis: Vec::new(),
            state: Default::default(),
            salt: None,
            proof: None,
            device_proof: None,
            dropped: Vec::new(),
            epochs: Vec::new(),
            sealing: Default::default(),
            followed: Vec::new(),
            endorsed: Vec::new(),
        }
    }

    /// Takes in the relays the workspace shares, after its document changed from sharing
    /// `before`: a newly shared relay is used from now on (unless this device dropped it),
    /// and one no longer shared is no longer used.
    pub fn follow_shared_relays(&mut self, before: &[String]) {
        for relay in &self.state.relays {
            if !self.relays.contains(relay) && !self.dropped.contains(relay) {
                self.relays.push(relay.clone());
                self.followed.push(relay.clone());
            }
        }
        let unshared: Vec<String> = before
            .iter()
            .filter(|r| !self.state.relays.contains(r) && self.followed.contains(r))
            .cloned()
            .collect();
        self.relays.retain(|r| !unshared.contains(r));
        self.followed.retain(|r| !unshared.contains(r));
    }
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
/// 7: `HISTORY` rows hold runs of lines, which a build before could not read.
pub const SCHEMA: u64 = 7;

/// Brings a home's tables up to this build's layout (tables are only ever added, and rows an
/// older build wrote stay readable). A home a newer build wrote is refused whole rather than
/// misread row by row.
pub fn upgrade(db: &Database) -> Result<()> {
    let current = {
        let txn = db.begin_read()?;
        let meta = txn.open_table(META)?;
        meta.get("schema")?
            .and_then(|v| v.value().try_into().ok().map(u64::from_le_bytes))
            .unwrap_or(1)
    };
    if current > SCHEMA {
        bail!(
            "this home was written by a newer meridian (store layout {current}; this build reads \
             layouts up to {SCHEMA}): run that version or a later one"
        );
    }
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
    txn.open_table(KEYRING)?;
    txn.open_table(HELD_EPOCH)?;
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

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn shared_relays_come_and_go_but_a_devices_own_stay() {
        let mut record = WorkspaceRecord {
            name: "acme".into(),
            key: Vec::new(),
            creator: Vec::new(),
            relays: vec!["ws://own:1".into()],
            genesis: Vec::new(),
            state: crate::workspace::WorkspaceState::default(),
            salt: None,
            proof: None,
            device_proof: None,
            dropped: vec!["ws://dropped:3".into()],
            epochs: Vec::new(),
            sealing: Default::default(),
            followed: Vec::new(),
            endorsed: Vec::new(),
        };
        let shared = |r: &mut WorkspaceRecord, list: &[&str]| {
            let before = std::mem::take(&mut r.state.relays);
            r.state.relays = list.iter().map(|s| s.to_string()).collect();
            r.follow_shared_relays(&before);
        };
        shared(&mut record, &["ws://own:1", "ws://new:2", "ws://dropped:3"]);
        assert_eq!(record.relays, ["ws://own:1", "ws://new:2"]);
        // Unshared: the followed one goes; the device's own stays.
        shared(&mut record, &[]);
        assert_eq!(record.relays, ["ws://own:1"]);
        assert!(record.followed.is_empty());
    }

    /// The rows that store `lines`, as `node::append_records` writes them.
    fn history_rows(lines: &[LogEntry]) -> Vec<Vec<u8>> {
        lines.chunks(RUN_LINES).map(history_row).collect()
    }

    /// Lines as edits and syncs make them: mostly a chain of one author's changes with one
    /// message, now and then a merge, another author, another message, a clock that went
    /// back.
    fn lines() -> impl Strategy<Value = Vec<LogEntry>> {
        let line = (
            any::<[u8; 32]>(),
            0..4usize,
            any::<bool>(),
            0..3u8,
            -5_000i64..100_000,
            prop::sample::select(vec!["edit", "note", "", "approve: LGTM", "é ✓"]),
        );
        prop::collection::vec(line, 0..2_200).prop_map(|raw| {
            let mut out: Vec<LogEntry> = Vec::new();
            let mut time = 1_700_000_000_000i64;
            for (hash, deps, chain, author, delta, message) in raw {
                let previous = out.last().map(|p: &LogEntry| p.hash.clone());
                let deps = match (chain, previous) {
                    (true, Some(previous)) => vec![serde_bytes::ByteBuf::from(previous)],
                    _ => (0..deps)
                        .map(|i| serde_bytes::ByteBuf::from(vec![i as u8; 32]))
                        .collect(),
                };
                time = time.wrapping_add(delta);
                out.push(LogEntry {
                    hash: hash.to_vec(),
                    deps,
                    // A key, or none: a change whose actor is not a device key.
                    author: if author == 0 {
                        vec![]
                    } else {
                        vec![author; 32]
                    },
                    time,
                    message: message.to_string(),
                });
            }
            out
        })
    }

    proptest! {
        #[test]
        fn history_rows_give_back_the_lines_they_were_made_of(
            lines in lines(),
            last in 0..RUN_LINES + 2,
        ) {
            let rows = history_rows(&lines);
            prop_assert_eq!(rows.len(), lines.len().div_ceil(RUN_LINES));
            let mut back = Vec::new();
            for row in &rows {
                let run = history_lines(row).unwrap();
                prop_assert!(run.len() <= RUN_LINES);
                prop_assert_eq!(history_row_len(row).unwrap(), run.len() as u64);
                let tail = &run[run.len().saturating_sub(last)..];
                prop_assert_eq!(&history_last_lines(row, last).unwrap(), tail);
                back.extend(run);
            }
            prop_assert_eq!(back, lines);
        }

        #[test]
        fn a_damaged_history_row_is_an_error_never_a_panic(
            lines in lines(),
            cut in any::<prop::sample::Index>(),
            flip in any::<(prop::sample::Index, u8)>(),
            noise in prop::collection::vec(any::<u8>(), 0..200),
        ) {
            let Some(row) = history_rows(&lines).into_iter().next() else {
                return Ok(());
            };
            // Every proper prefix is refused: a run says how many lines it holds.
            let short = &row[..cut.index(row.len())];
            prop_assert!(history_lines(short).is_err());
            let mut flipped = row.clone();
            let at = flip.0.index(flipped.len());
            flipped[at] ^= flip.1;
            let _ = history_lines(&flipped);
            let _ = history_row_len(&flipped);
            let mut random = vec![RUN_TAG];
            random.extend(&noise);
            let _ = history_lines(&random);
            let _ = history_row_len(&random);
        }
    }

    #[test]
    fn a_typed_line_costs_its_hash_and_a_few_bytes() {
        let lines: Vec<LogEntry> = (0..1000u32)
            .scan(None::<Vec<u8>>, |previous, i| {
                let hash = [&i.to_le_bytes()[..], &[7; 28]].concat();
                let line = LogEntry {
                    hash: hash.clone(),
                    deps: previous
                        .iter()
                        .cloned()
                        .map(serde_bytes::ByteBuf::from)
                        .collect(),
                    author: vec![1; 32],
                    time: 1_700_000_000_000 + i as i64 * 40,
                    message: "edit".into(),
                };
                *previous = Some(hash);
                Some(line)
            })
            .collect();
        let rows = history_rows(&lines);
        let bytes: usize = rows.iter().map(Vec::len).sum();
        assert!(bytes < 1000 * 36, "{bytes} bytes for 1,000 typed lines");
        let single: usize = lines.iter().map(|l| encode(l).len()).sum();
        assert!(
            bytes * 4 < single,
            "{bytes} bytes against {single} as single entries"
        );
    }

    #[test]
    fn a_run_with_a_damaged_count_or_key_is_refused() {
        let line = |hash: Vec<u8>, author: Vec<u8>| LogEntry {
            hash,
            deps: vec![],
            author,
            time: 5,
            message: "edit".into(),
        };
        let good = history_rows(&[line(vec![3; 32], vec![1; 32])]).remove(0);
        assert_eq!(history_row_len(&good).unwrap(), 1);
        // The count is the byte after the tag: 0, one past a run, and u64::MAX.
        let mut counts: Vec<Vec<u8>> = vec![vec![0], vec![0x81, 0x02]];
        counts.push([vec![0xff; 9], vec![0x01]].concat());
        for count in counts {
            let row = [&[RUN_TAG][..], &count, &good[2..]].concat();
            for error in [
                history_row_len(&row).map(|_| ()).unwrap_err(),
                history_lines(&row).map(|_| ()).unwrap_err(),
            ] {
                assert!(format!("{error:#}").contains("corrupt"), "{error:#}");
            }
        }
        // Hashes of another length, and an author key that is neither a key nor absent.
        for bad in [line(vec![3; 31], vec![]), line(vec![3; 32], vec![1; 33])] {
            let row = history_rows(&[bad]).remove(0);
            assert!(history_lines(&row).is_err());
        }
        assert!(history_lines(&history_rows(&[line(vec![3; 32], vec![])])[0]).is_ok());
    }

    #[test]
    fn a_row_written_before_runs_is_read_as_one_line() {
        let line = LogEntry {
            hash: vec![3; 32],
            deps: vec![serde_bytes::ByteBuf::from(vec![2; 32])],
            author: vec![1; 32],
            time: 5,
            message: "edit".into(),
        };
        let row = encode(&line);
        assert_eq!(history_row_len(&row).unwrap(), 1);
        assert_eq!(history_lines(&row).unwrap(), vec![line]);
        let error = history_lines(&row[..row.len() - 1]).unwrap_err();
        assert!(format!("{error:#}").contains("corrupt"), "{error:#}");
    }
}
