//! The node: one person's device, its redb file and key, and the one path every local edit
//! takes (CLI → model → document → store → outbox).
//!
//! An edit loads the document from its stored records inside a write transaction, lets the
//! caller change it, seals its new changes into envelopes, appends the envelopes, the
//! history lines, the index summary and the outbox entries, and commits durably before the
//! command reports success. A large edit of a document only this device has written is
//! sealed as the document's save, which holds the same changes in a fortieth of the bytes
//! (`own_document`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{Context, Result, bail};
use automerge::transaction::{CommitOptions, Transaction};
use automerge::{ActorId, Automerge, Change, ChangeHash, ReadDoc};
use ed25519_dalek::SigningKey;
use meridian_relay::Envelope;
use redb::{
    ConcurrencyMode, Database, ReadOnlyDatabase, ReadTransaction, ReadableDatabase, ReadableTable,
    TransactionError, WriteTransaction,
};

use crate::cache::DocCache;
use crate::doc::View;
use crate::id::{Id, random_bytes, resolve_prefix};
use crate::identity::{self, Profile};
use crate::index::{DocSummary, summarize};
use crate::ingest::Rejected;
use crate::seal;
use crate::store::{
    self, CHECKPOINTS, Checkpoint, DOCS, HISTORY, LogEntry, META, OUTBOX, READ_MARKERS, RECORDS,
    Record, WORKSPACES, WorkspaceRecord,
};
use crate::workspace::{self, Invite, WorkspaceState};

/// The database file inside a home.
pub const DB_FILE: &str = "meridian.redb";

/// Milliseconds since the Unix epoch, now (the simulation's clock on a simulated thread).
pub fn now_ms() -> i64 {
    meridian_relay::determinism::now_ms()
}

/// Now, as a timestamp (the simulation's clock on a simulated thread).
pub fn now() -> jiff::Timestamp {
    jiff::Timestamp::from_millisecond(now_ms()).unwrap_or(jiff::Timestamp::UNIX_EPOCH)
}

/// Commits a transaction with a message and the current time (automerge defaults to 0).
pub fn commit(tx: Transaction<'_>, message: &str) -> Option<ChangeHash> {
    tx.commit_with(
        CommitOptions::default()
            .with_message(message)
            .with_time(now_ms()),
    )
    .0
}

/// One person's node.
pub struct Node {
    home: PathBuf,
    db: Db,
    key: SigningKey,
    incarnation: [u8; 8],
    docs: DocCache,
    /// The member this device is, when it was added to a member's devices (`meridian device
    /// join`): their first device's key. `None`: this device is its own member.
    member: std::sync::Mutex<Option<String>>,
}

/// The node's redb file, opened read-only until something writes.
///
/// Opening redb for writing costs durable writes that a command which only reads need not
/// pay: an fsync when the handle opens (it marks the file in use) and four when it closes
/// (it records the allocator state), 10–20 ms on a laptop disk before `inbox` has read a
/// thing. A read-only handle (in the multi-writer mode every `meridian` process uses, so it
/// follows other processes' commits) writes nothing; the first write transaction opens the
/// file for writing, and from then on reads go there too.
pub struct Db {
    path: PathBuf,
    reader: Option<ReadOnlyDatabase>,
    writer: OnceLock<Database>,
}

impl Db {
    /// Opens an existing file, read-only when it can be read as it is.
    fn open(path: &Path) -> Result<Db> {
        if let Some(reader) = Db::open_read_only(path) {
            return Ok(Db {
                path: path.to_path_buf(),
                reader: Some(reader),
                writer: OnceLock::new(),
            });
        }
        let db = store::open_database(path)?;
        store::upgrade(&db)?;
        Ok(Db::writable(path, db))
    }

    /// A read-only handle, unless the file needs something only a writer does: a repair after
    /// a crash, new tables for this build, or waiting for an older redb's exclusive lock.
    fn open_read_only(path: &Path) -> Option<ReadOnlyDatabase> {
        let mut builder = Database::builder();
        builder.set_concurrency_mode(ConcurrencyMode::MultiWriter);
        let reader = builder.open_read_only(path).ok()?;
        let schema = {
            let txn = reader.begin_read().ok()?;
            let meta = txn.open_table(META).ok()?;
            let value = meta.get("schema").ok()??;
            u64::from_le_bytes(value.value().try_into().ok()?)
        };
        (schema == store::SCHEMA).then_some(reader)
    }

    fn writable(path: &Path, db: Database) -> Db {
        Db {
            path: path.to_path_buf(),
            reader: None,
            writer: OnceLock::from(db),
        }
    }

    /// Begins a read transaction.
    pub fn begin_read(&self) -> Result<ReadTransaction, TransactionError> {
        match (self.writer.get(), &self.reader) {
            (Some(db), _) => db.begin_read(),
            (None, Some(reader)) => reader.begin_read(),
            (None, None) => unreachable!("a Db holds a reader until it holds a writer"),
        }
    }

    /// Begins a write transaction, opening the file for writing the first time.
    pub fn begin_write(&self) -> Result<WriteTransaction> {
        Ok(self.for_writing()?.begin_write()?)
    }

    /// The writable handle, opened on first use.
    pub fn for_writing(&self) -> Result<&Database> {
        if let Some(db) = self.writer.get() {
            return Ok(db);
        }
        let db = store::open_database(&self.path)?;
        store::upgrade(&db)?;
        Ok(self.writer.get_or_init(|| db))
    }
}

impl Node {
    /// Creates a new identity in `home`.
    pub fn init(home: &Path, profile: &Profile) -> Result<Node> {
        profile.validate()?;
        std::fs::create_dir_all(home)
            .with_context(|| format!("cannot create the home {}", home.display()))?;
        if home.join(identity::KEY_FILE).exists() {
            bail!(
                "{} already holds an identity; use another --home (or MERIDIAN_HOME) for a second one",
                home.display()
            );
        }
        let key = identity::create_key(home)?;
        let path = home.join(DB_FILE);
        let db = store::open_database(&path)?;
        store::create_tables(&db)?;
        let incarnation: [u8; 8] = random_bytes();
        let txn = db.begin_write()?;
        {
            let mut meta = txn.open_table(META)?;
            meta.insert("profile", store::encode(profile).as_slice())?;
            meta.insert("incarnation", incarnation.as_slice())?;
            meta.insert(
                "index_version",
                crate::index::VERSION.to_le_bytes().as_slice(),
            )?;
        }
        txn.commit()?;
        Ok(Node {
            home: home.to_path_buf(),
            db: Db::writable(&path, db),
            key,
            incarnation,
            docs: DocCache::default(),
            member: Default::default(),
        })
    }

    /// Opens the identity in `home`.
    pub fn open(home: &Path) -> Result<Node> {
        let key = identity::load_key(home)?;
        let path = home.join(DB_FILE);
        if !path.exists() {
            bail!(
                "{} is missing: this home is damaged or was not made by `meridian init`",
                path.display()
            );
        }
        let db = Db::open(&path)?;
        let incarnation = {
            let txn = db.begin_read()?;
            let meta = txn.open_table(META)?;
            let value = meta
                .get("incarnation")?
                .context("the home's database has no incarnation: it is damaged")?;
            value
                .value()
                .try_into()
                .context("the home's incarnation is damaged")?
        };
        let member = {
            let txn = db.begin_read()?;
            let meta = txn.open_table(META)?;
            meta.get("member")?
                .map(|v| String::from_utf8_lossy(v.value()).into_owned())
        };
        let node = Node {
            home: home.to_path_buf(),
            db,
            key,
            incarnation,
            docs: DocCache::default(),
            member: std::sync::Mutex::new(member),
        };
        node.summarize_again_if_older()?;
        Ok(node)
    }

    /// Rebuilds every document's index summary when they were written by a build that
    /// summarised less (`index::VERSION`): once, in one transaction, at the first open.
    fn summarize_again_if_older(&self) -> Result<()> {
        let current = |txn: &ReadTransaction| -> Result<u32> {
            let meta = txn.open_table(META)?;
            Ok(meta
                .get("index_version")?
                .and_then(|v| v.value().try_into().ok().map(u32::from_le_bytes))
                .unwrap_or(0))
        };
        if current(&self.db.begin_read()?)? >= crate::index::VERSION {
            return Ok(());
        }
        let txn = self.db.begin_write()?;
        let docs: Vec<(Id, DocSummary)> = {
            let table = txn.open_table(DOCS)?;
            let mut docs = Vec::new();
            for item in table.iter()? {
                let (id, bytes) = item?;
                docs.push((Id(id.value()), store::decode(bytes.value(), "index entry")?));
            }
            docs
        };
        let mut records: std::collections::HashMap<Id, WorkspaceRecord> = Default::default();
        for (doc_id, summary) in docs {
            let Some(workspace) = Id::from_slice(&summary.workspace) else {
                continue;
            };
            let record = match records.entry(workspace) {
                std::collections::hash_map::Entry::Occupied(known) => known.into_mut(),
                std::collections::hash_map::Entry::Vacant(new) => {
                    match workspace_record(&txn, workspace) {
                        Ok(record) => new.insert(record),
                        // An index entry of a workspace this node no longer has: left as is.
                        Err(_) => continue,
                    }
                }
            };
            let loaded = match load_doc(
                &txn.open_table(RECORDS)?,
                &txn.open_table(CHECKPOINTS)?,
                record,
                workspace,
                doc_id,
            ) {
                Ok(loaded) => loaded,
                Err(e) => {
                    tracing::warn!(
                        "document {} does not load to be summarised again ({e:#}); its summary stays",
                        doc_id.short()
                    );
                    continue;
                }
            };
            let fresh = summarize(
                View::now(&loaded.doc),
                summary.kind,
                &summary.workspace,
                summary.updated,
                &summary.last_author,
                summary.changes,
            );
            txn.open_table(DOCS)?
                .insert(doc_id.0, store::encode(&fresh).as_slice())?;
        }
        // The workspaces' states, cached in their records, are read again as well.
        let workspaces: Vec<(Id, WorkspaceRecord)> = {
            let table = txn.open_table(WORKSPACES)?;
            let mut all = Vec::new();
            for item in table.iter()? {
                let (id, bytes) = item?;
                all.push((
                    Id(id.value()),
                    store::decode(bytes.value(), "workspace record")?,
                ));
            }
            all
        };
        for (workspace, record) in workspaces {
            match load_doc(
                &txn.open_table(RECORDS)?,
                &txn.open_table(CHECKPOINTS)?,
                &record,
                workspace,
                workspace,
            ) {
                Ok(loaded) => {
                    let record = with_state(&record, View::now(&loaded.doc));
                    txn.open_table(WORKSPACES)?
                        .insert(workspace.0, store::encode(&record).as_slice())?;
                }
                Err(e) => tracing::warn!(
                    "workspace {} does not load to be read again ({e:#}); its state stays",
                    workspace.short()
                ),
            }
        }
        txn.open_table(META)?.insert(
            "index_version",
            crate::index::VERSION.to_le_bytes().as_slice(),
        )?;
        txn.commit()?;
        Ok(())
    }

    /// The home directory.
    pub fn home(&self) -> &Path {
        &self.home
    }

    /// The database.
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// The documents this node keeps loaded between writes.
    pub fn docs(&self) -> &DocCache {
        &self.docs
    }

    /// The device key.
    pub fn key(&self) -> &SigningKey {
        &self.key
    }

    /// This device's member id: its public key in hex.
    pub fn member_id(&self) -> String {
        match self.member().clone() {
            Some(member) => member,
            None => self.device_id(),
        }
    }

    fn member(&self) -> std::sync::MutexGuard<'_, Option<String>> {
        self.member.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// This device's own key, hex: the member id too, unless it was added to a member's
    /// devices.
    pub fn device_id(&self) -> String {
        hex::encode(self.key.verifying_key().to_bytes())
    }

    /// The automerge actor of this node.
    pub fn actor(&self) -> ActorId {
        identity::actor_id(&self.key, &self.incarnation)
    }

    /// The profile given at `init`.
    pub fn profile(&self) -> Result<Profile> {
        let txn = self.db.begin_read()?;
        let meta = txn.open_table(META)?;
        let bytes = meta
            .get("profile")?
            .context("the home has no profile: run `meridian init`")?;
        store::decode(bytes.value(), "profile")
    }

    /// Replaces the profile kept in this home (the workspaces' member entries are written
    /// by the caller, see `app::team::update_profile`).
    pub fn set_profile(&self, profile: &Profile) -> Result<()> {
        profile.validate()?;
        let txn = self.db.begin_write()?;
        txn.open_table(META)?
            .insert("profile", store::encode(profile).as_slice())?;
        txn.commit()?;
        Ok(())
    }

    /// Every workspace this node belongs to.
    pub fn workspaces(&self) -> Result<Vec<(Id, WorkspaceRecord)>> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(WORKSPACES)?;
        let mut all = Vec::new();
        for item in table.iter()? {
            let (id, bytes) = item?;
            all.push((Id(id.value()), store::decode(bytes.value(), "workspace")?));
        }
        Ok(all)
    }

    /// The workspace `meridian workspace use` made current, if it still exists here.
    pub fn current_workspace(&self) -> Result<Option<Id>> {
        let txn = self.db.begin_read()?;
        let meta = txn.open_table(META)?;
        let Some(bytes) = meta.get("current_workspace")? else {
            return Ok(None);
        };
        let id = Id::from_slice(bytes.value());
        drop(bytes);
        let known = txn.open_table(WORKSPACES)?;
        Ok(match id {
            Some(id) if known.get(id.0)?.is_some() => Some(id),
            _ => None,
        })
    }

    /// Makes `workspace` the one commands use when several are here and none is named.
    pub fn set_current_workspace(&self, workspace: Id) -> Result<()> {
        let txn = self.db.begin_write()?;
        txn.open_table(META)?
            .insert("current_workspace", workspace.0.as_slice())?;
        txn.commit()?;
        Ok(())
    }

    /// The CA certificate (PEM) this device trusts for `relay` (a canonical relay URL),
    /// beside the system's roots, if one was given with `--ca`.
    pub fn relay_ca(&self, relay: &str) -> Result<Option<Vec<u8>>> {
        let txn = self.db.begin_read()?;
        let meta = txn.open_table(META)?;
        Ok(meta
            .get(format!("relay_ca {relay}").as_str())?
            .map(|pem| pem.value().to_vec()))
    }

    /// Trusts the CA certificate `pem` for `relay` (a canonical relay URL) from now on.
    pub fn set_relay_ca(&self, relay: &str, pem: &[u8]) -> Result<()> {
        let txn = self.db.begin_write()?;
        txn.open_table(META)?
            .insert(format!("relay_ca {relay}").as_str(), pem)?;
        txn.commit()?;
        Ok(())
    }

    /// The workspace holding the one document whose id starts with `prefix`, if exactly
    /// one workspace holds such documents.
    pub fn locate(&self, prefix: &str) -> Result<Option<Id>> {
        let mut found: Vec<Id> = Vec::new();
        for (id, summary) in self.documents_by_prefix(prefix)? {
            let _ = id;
            if let Some(workspace) = Id::from_slice(&summary.workspace)
                && !found.contains(&workspace)
            {
                found.push(workspace);
            }
        }
        Ok((found.len() == 1).then(|| found[0]))
    }

    /// The workspace named or id-prefixed by `selector`, or the current one, or the only one.
    pub fn workspace(&self, selector: Option<&str>) -> Result<(Id, WorkspaceRecord)> {
        let all = self.workspaces()?;
        match selector {
            None => match all.len() {
                0 => crate::fail!(
                    NotFound,
                    "this node belongs to no workspace yet: `meridian workspace create NAME` or `meridian join CODE`"
                ),
                1 => Ok(all.into_iter().next().expect("one")),
                _ => {
                    if let Some(current) = self.current_workspace()? {
                        return all
                            .into_iter()
                            .find(|(id, _)| *id == current)
                            .context("the current workspace vanished");
                    }
                    crate::fail!(
                        Ambiguous,
                        "this node belongs to {} workspaces ({}): choose one with -w NAME, or make one current with `meridian workspace use NAME`",
                        all.len(),
                        all.iter()
                            .map(|(_, w)| w.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                }
            },
            Some(selector) => {
                let named: Vec<_> = all
                    .iter()
                    .filter(|(_, w)| w.name == selector)
                    .cloned()
                    .collect();
                if named.len() == 1 {
                    return Ok(named.into_iter().next().expect("one"));
                }
                if named.len() > 1 {
                    crate::fail!(
                        Ambiguous,
                        "{} workspaces are called `{selector}`: name one by its id ({})",
                        named.len(),
                        named
                            .iter()
                            .map(|(id, _)| id.short())
                            .collect::<Vec<_>>()
                            .join(", ")
                    );
                }
                if !selector.chars().all(|c| c.is_ascii_hexdigit()) {
                    let names: Vec<&str> = all.iter().map(|(_, w)| w.name.as_str()).collect();
                    let hint = crate::error::closest(selector, names.iter().copied())
                        .map(|n| format!(" (did you mean `{n}`?)"))
                        .unwrap_or_default();
                    crate::fail!(
                        NotFound,
                        "no workspace is called `{selector}`{hint}: this node has {}",
                        names.join(", ")
                    );
                }
                resolve_prefix(
                    "workspace",
                    selector,
                    all.into_iter().map(|(id, w)| (id.hex(), (id, w))),
                )
            }
        }
    }

    /// Creates a workspace with this node's person as its first member.
    pub fn create_workspace(&self, name: &str, relays: Vec<String>) -> Result<Id> {
        if name.trim().is_empty() {
            bail!("the workspace name is empty");
        }
        if self.workspaces()?.iter().any(|(_, w)| w.name == name) {
            bail!("this node already has a workspace called `{name}`: choose another name");
        }
        let salt = random_bytes::<16>();
        let creator = self.key.verifying_key().to_bytes();
        let id = Id(meridian_relay::membership::workspace_id(&creator, &salt));
        let record = WorkspaceRecord {
            name: name.to_string(),
            key: random_bytes::<32>().to_vec(),
            genesis: workspace::genesis(id, &creator),
            creator: creator.to_vec(),
            relays,
            state: WorkspaceState::default(),
            salt: Some(serde_bytes::ByteBuf::from(salt.to_vec())),
            proof: None,
            device_proof: None,
            dropped: Vec::new(),
            epochs: Vec::new(),
            sealing: Default::default(),
            followed: Vec::new(),
            endorsed: Vec::new(),
        };
        self.add_workspace(id, &record, None, &format!("create workspace {name}"))?;
        Ok(id)
    }

    /// Replaces a workspace's relay list.
    pub fn set_relays(&self, workspace: Id, relays: Vec<String>) -> Result<()> {
        self.edit_record(workspace, |record| record.relays = relays)
    }

    /// Changes what this node keeps of a workspace (`change` edits it), in one
    /// transaction.
    pub fn edit_record(
        &self,
        workspace: Id,
        change: impl FnOnce(&mut WorkspaceRecord),
    ) -> Result<()> {
        let txn = self.db.begin_write()?;
        let mut record = workspace_record(&txn, workspace)?;
        change(&mut record);
        txn.open_table(WORKSPACES)?
            .insert(workspace.0, store::encode(&record).as_slice())?;
        txn.commit()?;
        Ok(())
    }

    /// Joins a workspace from an invite code. Works offline: the member entry is written
    /// against the shared genesis and merges with everyone else's copy later.
    pub fn join(&self, invite: &Invite) -> Result<Id> {
        let id = self.join_pending(invite)?;
        self.write_member_entry(id)?;
        Ok(id)
    }

    /// The first half of [`Node::join`]: the workspace, its key and this device's invite
    /// proof, with no member entry yet, so that a join can learn the workspace's members
    /// (and the relays' answer) before it writes one.
    pub fn join_pending(&self, invite: &Invite) -> Result<Id> {
        let id = invite.workspace_id()?;
        if self.workspaces()?.iter().any(|(w, _)| *w == id) {
            bail!(
                "this node is already a member of workspace `{}`",
                invite.name
            );
        }
        let proof = invite.proof_for(&self.key.verifying_key())?;
        let record = Joining {
            name: &invite.name,
            key: &invite.key,
            creator: &invite.creator,
            relays: &invite.relays,
            epoch: invite.epoch.as_ref(),
        }
        .record(id, Some(proof), None);
        let txn = self.db.begin_write()?;
        txn.open_table(WORKSPACES)?
            .insert(id.0, store::encode(&record).as_slice())?;
        txn.commit()?;
        Ok(id)
    }

    /// Publishes this device's encryption key in its member entry of `workspace` if it has
    /// not yet (a member who joined with a build from before keys were published): a
    /// local edit that the next push carries. Whether it wrote one.
    pub fn publish_device_key(&self, workspace: Id) -> Result<bool> {
        let (_, record) = self.workspace(Some(&workspace.hex()))?;
        if record.device_proof.is_some() {
            // An added device publishes its key with its entry (`write_device_entry`).
            return self.write_device_entry(workspace).map(|_| false);
        }
        let me = self.member_id();
        let mine = hex::encode(crate::keyring::DeviceKey::of(&self.key).public());
        let Some(member) = record.state.member(&me) else {
            return Ok(false);
        };
        if member.removed || member.encryption.as_deref() == Some(mine.as_str()) {
            return Ok(false);
        }
        let name = member.name.clone();
        self.edit(workspace, workspace, |doc| {
            let members = View::now(doc)
                .map(&automerge::ROOT, "members")
                .context("the workspace genesis has no members map")?;
            let mut tx = doc.transaction();
            workspace::put_device_key(&mut tx, &members, &self.key, workspace)?;
            commit(tx, &format!("{name}'s device publishes its encryption key"));
            Ok(())
        })?;
        Ok(true)
    }

    /// Keeps keyring records that arrived (signatures checked) and adopts what can be
    /// adopted, in one transaction. The records refused for good, to report.
    pub fn receive_keyring(&self, workspace: Id, records: &[Envelope]) -> Result<Vec<Rejected>> {
        let txn = self.db.begin_write()?;
        let mut refused = Vec::new();
        for envelope in records {
            if let Err(e) = crate::epochs::receive(&txn, workspace, envelope) {
                refused.push(Rejected {
                    doc: hex::encode(meridian_relay::envelope::KEYRING_DOC),
                    signer: hex::encode(&envelope.author),
                    reason: format!("{e:#}"),
                });
            }
        }
        let mut record = workspace_record(&txn, workspace)?;
        let settled = crate::epochs::settle(&txn, &self.key, workspace, &mut record)?;
        refused.extend(settled.refused);
        txn.commit()?;
        Ok(refused)
    }

    /// Adopts what waits among the keyring records (the workspace changes their basis
    /// names may have arrived since), wraps the epochs this device holds to members who
    /// joined after them, and opens and applies the envelopes held for a key that has
    /// arrived. What applying them did.
    pub fn settle_epochs(&self, workspace: Id) -> Result<crate::ingest::Report> {
        if crate::epochs::untouched(&self.db.begin_read()?, workspace)? {
            // No record and nothing held: nothing to settle, unless someone was removed by
            // a build from before key epochs, when the choice must move off the workspace
            // key (the next edit or push then starts a repair epoch).
            let (_, record) = self.workspace(Some(&workspace.hex()))?;
            let stale = record.sealing == crate::keyring::Sealing::First
                && !crate::keyring::removed_devices(&record.state).is_empty();
            if !stale {
                return Ok(crate::ingest::Report::default());
            }
        }
        let txn = self.db.begin_write()?;
        let mut record = workspace_record(&txn, workspace)?;
        let settled = crate::epochs::settle(&txn, &self.key, workspace, &mut record)?;
        for rejected in &settled.refused {
            crate::ingest::record_rejection(&txn, workspace, rejected)?;
        }
        crate::epochs::share_missing(&txn, &self.key, workspace, &record)?;
        let held = crate::epochs::held(&txn, workspace)?;
        txn.commit()?;
        if held.is_empty() {
            return Ok(crate::ingest::Report {
                rejected: settled.refused,
                ..Default::default()
            });
        }
        let limits = crate::ingest::Limits::default();
        let mut budget = crate::ingest::Budget::stored();
        let mut items = Vec::new();
        let mut opened = Vec::new();
        let mut rejected = Vec::new();
        for (position, bytes) in &held {
            // Verified when it arrived; one that no longer decodes is dropped.
            let decoded = Envelope::decode_stored(bytes).map_err(anyhow::Error::from);
            match decoded
                .and_then(|e| crate::ingest::open_envelope(e, workspace, &record, &mut budget))
            {
                Ok(got) => items.extend(got),
                Err(e) if e.is::<seal::UnknownEpoch>() => continue,
                Err(e) => rejected.push(crate::sync::rejection(Some(bytes), format!("{e:#}"))),
            }
            opened.push(*position);
        }
        if opened.is_empty() {
            return Ok(crate::ingest::Report {
                rejected: settled.refused,
                ..Default::default()
            });
        }
        let mut report =
            crate::ingest::apply_received(self, workspace, items, &limits, |txn, report| {
                for r in rejected {
                    crate::ingest::record_rejection(txn, workspace, &r)?;
                    report.rejected.push(r);
                }
                crate::epochs::release(txn, workspace, &opened)
            })?;
        report.rejected.extend(settled.refused);
        Ok(report)
    }

    /// Starts a repair epoch now (this node has nothing safe to seal under); the workspace
    /// record as it then is.
    pub fn repair_epoch(&self, workspace: Id) -> Result<WorkspaceRecord> {
        let txn = self.db.begin_write()?;
        let mut record = workspace_record(&txn, workspace)?;
        if record.sealing == crate::keyring::Sealing::Waiting {
            crate::epochs::repair(&txn, &self.key, workspace, &mut record)?;
        }
        txn.commit()?;
        Ok(record)
    }

    /// Removes a member (the creator's act): the removal and a new key epoch without their
    /// device, in one transaction, so nothing this node writes afterwards is sealed under
    /// a key they hold.
    pub fn remove_member(&self, workspace: Id, member: &workspace::Member, at: i64) -> Result<()> {
        let txn = self.db.begin_write()?;
        let lock = self.lock_of(&txn, workspace, &member.keys)?.encode();
        let creator = self.member_id();
        self.edit_in(&txn, workspace, workspace, |doc| {
            let view = View::now(doc);
            let members = view
                .map(&automerge::ROOT, "members")
                .context("the workspace document has no members")?;
            let entry = view
                .map(&members, &member.id)
                .context("the member has no entry")?;
            let own = view
                .map(&members, &creator)
                .context("the creator has no member entry")?;
            let mut tx = doc.transaction();
            workspace::put_removed(&mut tx, &entry, at)?;
            workspace::put_lock(&mut tx, &own, &member.id, &lock)?;
            commit(tx, &format!("remove member {}", member.name));
            Ok(())
        })?;
        let reason = crate::keyring::Reason::Removal {
            member: member.id.clone(),
        };
        self.rotate_after_lock(&txn, workspace, &member.id, reason)?;
        txn.commit()?;
        Ok(())
    }

    /// Revokes one of this member's other devices: marks it revoked with what this node has
    /// of it (its lock), and starts a key epoch without it, in one transaction. Relays
    /// refuse it from this device's next sync on.
    pub fn revoke_device(&self, workspace: Id, device: &str, at: i64) -> Result<()> {
        let txn = self.db.begin_write()?;
        let record = workspace_record(&txn, workspace)?;
        let me = self.member_id();
        let Some(member) = record.state.member(&me).cloned() else {
            crate::fail!(
                Refused,
                "this device is not a member of workspace `{}`",
                record.name
            );
        };
        let lock = self
            .lock_of(&txn, workspace, std::slice::from_ref(&device.to_string()))?
            .encode();
        self.edit_in(&txn, workspace, workspace, |doc| {
            let view = View::now(doc);
            let entry = view
                .map(&automerge::ROOT, "members")
                .and_then(|members| view.map(&members, &me))
                .and_then(|entry| view.map(&entry, "devices"))
                .and_then(|devices| view.map(&devices, device))
                .context("the device has no entry under yours")?;
            let mut tx = doc.transaction();
            automerge::transaction::Transactable::put(&mut tx, &entry, "revoked", at)?;
            automerge::transaction::Transactable::put(
                &mut tx,
                &entry,
                "lock",
                automerge::ScalarValue::Bytes(lock.clone()),
            )?;
            commit(tx, &format!("{} revokes a device", member.name));
            Ok(())
        })?;
        self.rotate_after_lock(&txn, workspace, device, crate::keyring::Reason::Repair)?;
        txn.commit()?;
        Ok(())
    }

    /// After a removal or a revocation of `locked` (a member id or a device key) written in
    /// `txn`: a new key epoch on the workspace document as it now is. Nothing of `locked`
    /// beyond its lock is on this node, so there is nothing of it to endorse.
    fn rotate_after_lock(
        &self,
        txn: &WriteTransaction,
        workspace: Id,
        locked: &str,
        reason: crate::keyring::Reason,
    ) -> Result<()> {
        let mut record = workspace_record(txn, workspace)?;
        record.endorsed.push(locked.to_string());
        let heads = load_for_write(&self.docs, txn, &record, workspace, workspace)?;
        let basis = heads.doc.get_heads();
        keep(&self.docs, txn, workspace, workspace, heads)?;
        crate::epochs::start(txn, &self.key, workspace, &mut record, reason, &basis).map(drop)
    }

    /// What this node has of the devices `keys` (hex), in every document of the workspace:
    /// the lock a removal or a revocation records (`crate::lock`).
    fn lock_of(
        &self,
        txn: &WriteTransaction,
        workspace: Id,
        keys: &[String],
    ) -> Result<crate::lock::Lock> {
        let record = workspace_record(txn, workspace)?;
        let keys: std::collections::HashSet<[u8; 32]> = keys
            .iter()
            .filter_map(|k| <[u8; 32]>::try_from(hex::decode(k).ok()?).ok())
            .collect();
        let docs = summaries_in(&txn.open_table(DOCS)?, workspace)?;
        let mut lock = crate::lock::Lock::default();
        for doc_id in std::iter::once(workspace).chain(docs.into_iter().map(|(id, _)| id)) {
            let loaded = load_for_write(&self.docs, txn, &record, workspace, doc_id)?;
            lock.add_document(doc_id, &loaded.doc, &keys);
            keep(&self.docs, txn, workspace, doc_id, loaded)?;
        }
        Ok(lock)
    }

    /// Endorses, once for each removal, the changes of the removed member this node took
    /// before the removal reached it and nothing of its own builds on yet: an empty change
    /// on top of them, so that every replica takes them too and the documents converge
    /// (`crate::lock`: the integrity window). What it endorsed, by document.
    pub fn settle_removals(&self, workspace: Id) -> Result<Vec<Id>> {
        let (_, record) = self.workspace(Some(&workspace.hex()))?;
        let me = self.member_id();
        let revoked = record
            .state
            .members
            .iter()
            .flat_map(|m| &m.devices)
            .filter(|d| !d.active() && d.lock.is_some())
            .map(|d| d.key.clone());
        let pending: Vec<String> = record
            .state
            .members
            .iter()
            .filter(|m| m.removed && m.lock.is_some())
            .map(|m| m.id.clone())
            .chain(revoked)
            .filter(|id| !record.endorsed.contains(id))
            .collect();
        // A device not (yet) a verified member's may not write; it endorses once it is. A
        // revoked one writes nothing more.
        let active = record
            .state
            .active_device_member(&self.device_id())
            .is_some_and(|m| m.id == me);
        if pending.is_empty() || !active {
            return Ok(Vec::new());
        }
        let txn = self.db.begin_write()?;
        let mut endorsed = Vec::new();
        {
            let locks = crate::lock::Locks::of(&record.state);
            let removed: std::collections::HashSet<Vec<u8>> = record
                .state
                .members
                .iter()
                .filter(|m| pending.contains(&m.id))
                .flat_map(|m| m.keys.iter().filter_map(|k| hex::decode(k).ok()))
                .chain(pending.iter().filter_map(|k| hex::decode(k).ok()))
                .collect();
            let docs = summaries_in(&txn.open_table(DOCS)?, workspace)?;
            for doc_id in std::iter::once(workspace).chain(docs.into_iter().map(|(id, _)| id)) {
                let loaded = load_for_write(&self.docs, &txn, &record, workspace, doc_id)?;
                let heads = crate::lock::unendorsed_heads(&locks, doc_id, &loaded.doc);
                keep(&self.docs, &txn, workspace, doc_id, loaded)?;
                if heads.is_empty() {
                    continue;
                }
                // The relays refuse the removed member's own pushes: their envelopes go
                // from here, before the change that depends on them.
                for envelope in signed_by(&txn, doc_id, &removed)? {
                    append_outbox(&txn, workspace, &envelope)?;
                }
                self.edit_in(&txn, workspace, doc_id, |doc| {
                    let message = "keep the changes that arrived before their writer's removal";
                    doc.empty_commit(CommitOptions::default().with_message(message.to_string()));
                    Ok(())
                })?;
                endorsed.push(doc_id);
            }
        }
        let mut record = workspace_record(&txn, workspace)?;
        record.endorsed.extend(pending);
        txn.open_table(WORKSPACES)?
            .insert(workspace.0, store::encode(&record).as_slice())?;
        txn.commit()?;
        Ok(endorsed)
    }

    /// Writes this person's member entry into a workspace joined with
    /// [`Node::join_pending`], with the invite proof it was joined with.
    pub fn write_member_entry(&self, id: Id) -> Result<()> {
        let profile = self.profile()?;
        let me = self.member_id();
        let record = self
            .workspaces()?
            .into_iter()
            .find(|(w, _)| *w == id)
            .map(|(_, r)| r)
            .context("the workspace is not on this node")?;
        self.edit(id, id, |doc| {
            let view = View::now(doc);
            let members = view
                .map(&automerge::ROOT, "members")
                .context("the workspace genesis has no members map")?;
            if view.map(&members, &me).is_some() {
                return Ok(());
            }
            let mut tx = doc.transaction();
            workspace::put_member(
                &mut tx,
                &members,
                &self.key.verifying_key(),
                &profile,
                now_ms(),
                record.proof.as_ref(),
            )?;
            workspace::put_device_key(&mut tx, &members, &self.key, id)?;
            commit(tx, &format!("{} joins", profile.name));
            Ok(())
        })
    }

    /// Joins a workspace as another device of the member whose device made `code`
    /// (`meridian device join`): keeps what the code carries and remembers whose device
    /// this is. Its device entry is written once the member's entry is here
    /// ([`Node::write_device_entry`]).
    pub fn join_as_device(&self, code: &crate::device::DeviceCode) -> Result<Id> {
        let id = code.workspace_id()?;
        let member = hex::encode(&code.member);
        if member == self.device_id() {
            crate::fail!(
                Usage,
                "this is the device that made the code: run `meridian device join` on the new device"
            );
        }
        let own = self.member().clone();
        if let Some(own) = &own
            && *own != member
        {
            crate::fail!(
                Refused,
                "this device is already another member's ({}): a device belongs to one person",
                crate::id::prefix(own, 12)
            );
        }
        let workspaces = self.workspaces()?;
        if workspaces.iter().any(|(w, _)| *w == id) {
            crate::fail!(Usage, "this device is already in workspace `{}`", code.name);
        }
        if own.is_none() && !workspaces.is_empty() {
            crate::fail!(
                Refused,
                "this device is already a member of its own, in {} workspace(s): add a device with a fresh home (`meridian --home DIR init`, then `meridian --home DIR device join CODE`)",
                workspaces.len()
            );
        }
        let proof = code.proof_for(&self.key.verifying_key())?;
        let record = Joining {
            name: &code.name,
            key: &code.key,
            creator: &code.creator,
            relays: &code.relays,
            epoch: code.epoch.as_ref(),
        }
        .record(id, None, Some(proof));
        let txn = self.db.begin_write()?;
        txn.open_table(WORKSPACES)?
            .insert(id.0, store::encode(&record).as_slice())?;
        txn.open_table(META)?.insert("member", member.as_bytes())?;
        txn.commit()?;
        *self.member() = Some(member);
        Ok(id)
    }

    /// Writes this device's entry under its member's in `workspace`, with the proof it was
    /// added with and its encryption key. `Ok(false)` while the member's entry has not
    /// arrived (sync, or merge a bundle from one of their devices, first).
    pub fn write_device_entry(&self, workspace: Id) -> Result<bool> {
        let (_, record) = self.workspace(Some(&workspace.hex()))?;
        let Some(proof) = record.device_proof.clone() else {
            return Ok(false);
        };
        let me = self.device_id();
        if record.state.members.iter().any(|m| m.keys.contains(&me)) {
            return Ok(true);
        }
        let member = self.member_id();
        // The device that added this one must be counted first (a device added by a device
        // whose own entry has not arrived yet waits for it).
        let by = hex::encode(&proof.by);
        let adder_counted = record
            .state
            .member(&member)
            .is_some_and(|m| m.id == member && m.keys.contains(&by));
        if !adder_counted {
            return Ok(false);
        }
        let written = self.edit(workspace, workspace, |doc| {
            let view = View::now(doc);
            let Some(entry) = view
                .map(&automerge::ROOT, "members")
                .and_then(|members| view.map(&members, &member))
            else {
                return Ok(false);
            };
            let name = view.string(&entry, "name");
            let mut tx = doc.transaction();
            workspace::put_new_device(&mut tx, &entry, &self.key, &proof, workspace)?;
            commit(tx, &format!("{name} adds a device"));
            Ok(true)
        })?;
        if written {
            // Members this device invited before its entry was in are members now.
            crate::ingest::retry_held(self, workspace)?;
        }
        Ok(written)
    }

    /// Whether a relay has ever welcomed this device into `workspace`: until then its
    /// membership rests on the invite it joined with, which a relay may still refuse.
    pub fn admitted_anywhere(&self, workspace: Id) -> Result<bool> {
        let txn = self.db.begin_read()?;
        let cursors = txn.open_table(store::CURSORS)?;
        for item in cursors.range((workspace.0, "")..)? {
            let (key, bytes) = item?;
            if key.value().0 != workspace.0 {
                break;
            }
            let cursor: store::Cursor = store::decode(bytes.value(), "sync cursor")?;
            if cursor.relay.is_some() {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Joins again with a fresh invite a workspace this device joined, but that no relay
    /// admitted yet (its first invite was refused, or it joined offline): the member entry
    /// and the record get the new invite proof, and everything written meanwhile stays.
    pub fn rejoin(&self, invite: &Invite) -> Result<Id> {
        let id = invite.workspace_id()?;
        let proof = invite.proof_for(&self.key.verifying_key())?;
        self.set_join_proof(id, &proof, &invite.relays)?;
        Ok(id)
    }

    /// Writes the invite proof this device joined `workspace` with into its record and
    /// its member entry (adding `relays` to the record's), as `rejoin` does, or back to
    /// the earlier one when the relays refused the new one.
    pub fn set_join_proof(
        &self,
        id: Id,
        proof: &workspace::JoinProof,
        relays: &[String],
    ) -> Result<()> {
        let me = self.member_id();
        let txn = self.db.begin_write()?;
        let mut record = workspace_record(&txn, id)?;
        record.proof = Some(proof.clone());
        for relay in relays {
            if !record.relays.contains(relay) {
                record.relays.push(relay.clone());
                record.followed.push(relay.clone());
            }
        }
        txn.open_table(WORKSPACES)?
            .insert(id.0, store::encode(&record).as_slice())?;
        self.edit_in(&txn, id, id, |doc| {
            let view = View::now(doc);
            // A join that stopped before writing the entry writes it later, with the record's
            // proof.
            let Some(entry) = view
                .map(&automerge::ROOT, "members")
                .and_then(|members| view.map(&members, &me))
            else {
                return Ok(());
            };
            let mut tx = doc.transaction();
            workspace::put_invite(&mut tx, &entry, proof)?;
            commit(tx, "join again with a new invite");
            Ok(())
        })?;
        txn.commit()?;
        Ok(())
    }

    /// Removes every trace of a workspace from this node: its documents, their records,
    /// history and index, the outbox and the sync state. Only for a workspace this device
    /// never became a member of (a join the relays refused), which holds nothing of anyone's.
    pub fn forget_workspace(&self, workspace: Id) -> Result<()> {
        let txn = self.db.begin_write()?;
        let mut docs = vec![workspace.0];
        {
            let table = txn.open_table(DOCS)?;
            for item in table.iter()? {
                let (id, bytes) = item?;
                let summary: DocSummary = store::decode(bytes.value(), "index entry")?;
                if summary.workspace == workspace.0 {
                    docs.push(id.value());
                }
            }
        }
        let mut shared: Vec<Vec<u8>> = Vec::new();
        {
            let records = txn.open_table(RECORDS)?;
            for doc in &docs {
                for item in records.range((*doc, 0)..=(*doc, u64::MAX))? {
                    if let Record::Part { envelope, .. } =
                        store::decode::<Record>(item?.1.value(), "record")?
                    {
                        shared.push(envelope);
                    }
                }
            }
        }
        let mine = |doc: [u8; 16]| docs.contains(&doc);
        let ours = |id: [u8; 16]| id == workspace.0;
        txn.open_table(RECORDS)?.retain(|(doc, _), _| !mine(doc))?;
        txn.open_table(HISTORY)?.retain(|(doc, _), _| !mine(doc))?;
        txn.open_table(store::HELD)?
            .retain(|(doc, _), _| !mine(doc))?;
        txn.open_table(CHECKPOINTS)?.retain(|doc, _| !mine(doc))?;
        txn.open_table(DOCS)?.retain(|doc, _| !mine(doc))?;
        txn.open_table(READ_MARKERS)?.retain(|doc, _| !mine(doc))?;
        txn.open_table(OUTBOX)?.retain(|(id, _), _| !ours(id))?;
        txn.open_table(store::OUTBOX_NEXT)?
            .retain(|id, _| !ours(id))?;
        txn.open_table(store::CURSORS)?
            .retain(|(id, _), _| !ours(id))?;
        txn.open_table(store::REJECTED)?
            .retain(|(id, _), _| !ours(id))?;
        txn.open_table(store::SNAPSHOTS_SENT)?
            .retain(|(id, _, _), _| !ours(id))?;
        txn.open_table(store::VOUCHED)?
            .retain(|(id, _, _), _| !ours(id))?;
        {
            let mut envelopes = txn.open_table(store::ENVELOPES)?;
            for hash in shared {
                if let Ok(hash) = <[u8; 32]>::try_from(hash.as_slice()) {
                    envelopes.remove(hash)?;
                }
            }
        }
        txn.open_table(WORKSPACES)?.remove(workspace.0)?;
        let cleared = self.member().is_some() && {
            let left = txn
                .open_table(WORKSPACES)?
                .iter()?
                .filter_map(|e| e.ok())
                .count();
            left == 0
        };
        if cleared {
            // A device added to nobody's devices is its own member again.
            txn.open_table(META)?.remove("member")?;
        }
        txn.commit()?;
        if cleared {
            *self.member() = None;
        }
        Ok(())
    }

    /// Stores a new workspace and this person's member entry in one transaction, so a
    /// failure leaves no half-joined workspace behind.
    fn add_workspace(
        &self,
        id: Id,
        record: &WorkspaceRecord,
        proof: Option<&workspace::JoinProof>,
        message: &str,
    ) -> Result<()> {
        let profile = self.profile()?;
        let txn = self.db.begin_write()?;
        txn.open_table(WORKSPACES)?
            .insert(id.0, store::encode(record).as_slice())?;
        self.edit_in(&txn, id, id, |doc| {
            let members = View::now(doc)
                .map(&automerge::ROOT, "members")
                .context("the workspace genesis has no members map")?;
            let mut tx = doc.transaction();
            if proof.is_none() {
                workspace::put_name(&mut tx, &record.name)?;
            }
            workspace::put_member(
                &mut tx,
                &members,
                &self.key.verifying_key(),
                &profile,
                now_ms(),
                proof,
            )?;
            workspace::put_device_key(&mut tx, &members, &self.key, id)?;
            commit(tx, message);
            Ok(())
        })?;
        txn.commit()?;
        Ok(())
    }

    /// Makes one local edit to a document, durably.
    ///
    /// `f` receives the document (empty for a new one) with this node's actor, and makes its
    /// changes with [`commit`]. Every new change is sealed and stored before this returns. If
    /// `f` fails, nothing is stored.
    pub fn edit<T>(
        &self,
        workspace: Id,
        doc_id: Id,
        f: impl FnOnce(&mut Automerge) -> Result<T>,
    ) -> Result<T> {
        let txn = self.db.begin_write()?;
        let output = self.edit_in(&txn, workspace, doc_id, f)?;
        txn.commit()?;
        Ok(output)
    }

    /// Makes many edits in one durable transaction: one fsync for all of them, for imports
    /// and bulk work. If any edit fails, none is stored.
    pub fn batch<T>(&self, f: impl FnOnce(&Batch<'_>) -> Result<T>) -> Result<T> {
        let txn = self.db.begin_write()?;
        let output = f(&Batch {
            node: self,
            txn: &txn,
        })?;
        txn.commit()?;
        Ok(output)
    }

    fn edit_in<T>(
        &self,
        txn: &WriteTransaction,
        workspace: Id,
        doc_id: Id,
        f: impl FnOnce(&mut Automerge) -> Result<T>,
    ) -> Result<T> {
        let record = workspace_record(txn, workspace)?;
        if doc_id != workspace
            && record.device_proof.is_some()
            && record.state.member_of_device(&self.device_id()).is_none()
        {
            crate::fail!(
                Refused,
                "this device is not counted as yours in workspace `{}` yet: sync first (`meridian sync`), so that it finds your member entry and adds itself there; nothing was changed",
                record.name
            );
        }
        let mut loaded = load_for_write(&self.docs, txn, &record, workspace, doc_id)?;
        loaded.doc.set_actor(self.actor());
        let mut before = loaded.doc.get_heads();
        let count_before = loaded.doc.stats().num_changes;
        let output = f(&mut loaded.doc)?;
        if loaded.doc.get_heads() == before {
            keep(&self.docs, txn, workspace, doc_id, loaded)?;
            return Ok(output);
        }
        let kind = View::now(&loaded.doc)
            .kind()
            .context("the document has no kind: this is a bug in meridian")?;
        let mut record = record;
        if record.sealing == crate::keyring::Sealing::Waiting {
            crate::epochs::repair(txn, &self.key, workspace, &mut record)?;
        }
        let doc = &loaded.doc;
        let sealer = seal::Sealer::of(&record)?;
        let seal_one = |plaintext: &[u8]| sealer.seal(&self.key, workspace, &[doc_id], plaintext);
        // Our own edits obey the same rules every peer will check them against; nothing is
        // written until they are checked.
        // Whose each device is: for the workspace document, by the state the edit leads to
        // (a new device's first edit writes the entry that makes it its member's).
        let after =
            (doc_id == workspace).then(|| workspace::read_state(View::now(doc), &record.creator));
        let members = after.as_ref().unwrap_or(&record.state);
        let check = |changes: &[Change]| {
            crate::rules::check_changes(
                doc,
                kind,
                changes,
                |change| doc_id != workspace && change.deps().is_empty(),
                Some(members),
            )
            .context(crate::error::Failure {
                kind: crate::error::ErrorKind::Refused,
                message: "this edit breaks a document rule, which is a bug in meridian; nothing was changed".into(),
            })
        };
        let stats = doc.stats();
        let new = stats.num_changes.saturating_sub(count_before) as usize;
        let large = new >= PARALLEL_CHECK;
        // A large edit of a document only this device has written (an import into a new
        // one) is sealed as the whole document when its save fits in an envelope:
        // automerge's save is a fortieth of its changes' compressed size and takes a
        // thirtieth of the time. The changes are rebuilt anyway (the rules check and the
        // history lines need them), and the save is made and sealed beside that.
        let whole = large && own_document(doc_id == workspace, &stats, new);
        let (mut changes, save, sealed) = if whole {
            std::thread::scope(|scope| {
                let saving = scope.spawn(|| {
                    let save = doc.save();
                    let sealed = (save.len() <= MAX_SEALED_BYTES).then(|| seal_one(&save).encode());
                    (save, sealed)
                });
                let changes = doc.get_changes(&before);
                let (save, sealed) = joined(saving.join());
                (changes, Some(save), sealed)
            })
        } else {
            (doc.get_changes(&before), None, None)
        };
        // Every node refuses an envelope holding more operations than one merge may bring
        // (`ingest::Limits::max_ops`): such an edit would stay here alone, for good.
        let max_ops = crate::ingest::Limits::default().max_ops;
        if let Some(ops) = changes.iter().map(Change::len).find(|ops| *ops > max_ops) {
            crate::fail!(
                Refused,
                "this edit is too large for the other members' nodes to take in one piece: {ops} operations (one per character or field written), more than {max_ops}. Make it in smaller edits, a long text in several parts; nothing was changed"
            );
        }
        let (touched, envelopes) = match sealed {
            Some(sealed) => (check_on_both_cores(&changes, check)?, vec![sealed]),
            None => {
                let groups = sealing_groups(&mut changes);
                let seal_all = || -> Vec<Vec<u8>> {
                    groups
                        .iter()
                        .map(|(_, group)| seal_one(&seal::changes_plaintext(group)).encode())
                        .collect()
                };
                if large {
                    // Other large edits check their rules on a second core while their
                    // changes are compressed and sealed.
                    let (checked, sealed) = std::thread::scope(|scope| {
                        let checking = scope.spawn(|| check(&changes));
                        let sealed = seal_all();
                        (joined(checking.join()), sealed)
                    });
                    (checked?, sealed)
                } else {
                    (check(&changes)?, seal_all())
                }
            }
        };
        let entries: Vec<LogEntry> = changes.iter().map(log_entry).collect();
        let mut records = Vec::new();
        for envelope in envelopes {
            append_outbox(txn, workspace, &envelope)?;
            records.push(Record::Sealed(envelope));
        }
        before.sort();
        let marker = read_marker(txn, doc_id)?;
        // Acting on a document one never marked read is reading it as it stood.
        let was_read = marker.as_ref().is_none_or(|heads| *heads == before);
        let appended = append_records(txn, doc_id, loaded.next_seq, &records, &entries)?;
        reindex(
            txn,
            (workspace, &record),
            (doc_id, kind),
            &loaded.doc,
            (entries.len() as u64, &touched),
        )?;
        // Your own edit does not make a document "changed since you last read it".
        if was_read {
            set_read_marker(txn, doc_id, &loaded.doc.get_heads())?;
        }
        loaded.next_seq += records.len() as u64;
        // The save, if one was made, is the document as it is now: a checkpoint takes it.
        stored(
            &self.docs,
            txn,
            (workspace, doc_id),
            loaded,
            (appended, save),
        )?;
        Ok(output)
    }

    /// Loads a document for reading.
    pub fn load(&self, workspace: Id, doc_id: Id) -> Result<Automerge> {
        let txn = self.db.begin_read()?;
        let record = {
            let table = txn.open_table(WORKSPACES)?;
            let bytes = table.get(workspace.0)?.context("unknown workspace")?;
            store::decode::<WorkspaceRecord>(bytes.value(), "workspace")?
        };
        let loaded = load_doc(
            &txn.open_table(RECORDS)?,
            &txn.open_table(CHECKPOINTS)?,
            &record,
            workspace,
            doc_id,
        )?;
        if loaded.next_seq == 0 && doc_id != workspace {
            bail!("document {} has no stored changes", doc_id.short());
        }
        Ok(loaded.doc)
    }

    /// The index summaries of a workspace's documents.
    pub fn summaries(&self, workspace: Id) -> Result<Vec<(Id, DocSummary)>> {
        let txn = self.db.begin_read()?;
        summaries_in(&txn.open_table(DOCS)?, workspace)
    }

    /// Resolves a document id prefix within a workspace.
    pub fn resolve(&self, workspace: Id, prefix: &str) -> Result<(Id, DocSummary)> {
        let candidates: Vec<(String, (Id, DocSummary))> = self
            .documents_by_prefix(prefix)?
            .into_iter()
            .filter(|(_, summary)| summary.workspace == workspace.0)
            .map(|(id, summary)| (id.hex(), (id, summary)))
            .collect();
        let describe =
            |(_, s): &(Id, DocSummary)| Some(format!("{} \"{}\"", s.kind.as_str(), s.title));
        match crate::id::resolve_prefix_or("document", prefix, candidates, describe) {
            // Nothing starts with it: perhaps a digit was mistyped.
            Err(e) if crate::error::kind_of(&e) == crate::error::ErrorKind::NotFound => {
                let all: Vec<(String, (Id, DocSummary))> = self
                    .summaries(workspace)?
                    .into_iter()
                    .map(|(id, summary)| (id.hex(), (id, summary)))
                    .collect();
                match crate::id::resolve_prefix_or("document", prefix, all, describe) {
                    Err(e) if !e.to_string().contains("did you mean") => {
                        Err(crate::error::failure(
                            crate::error::ErrorKind::NotFound,
                            format!("{e}: if a teammate wrote it, `meridian sync` brings it here"),
                        ))
                    }
                    other => other,
                }
            }
            other => other,
        }
    }

    /// Every document of any workspace whose id starts with `prefix` (hex).
    fn documents_by_prefix(&self, prefix: &str) -> Result<Vec<(Id, DocSummary)>> {
        // Only the index keys in the prefix's range are read and decoded.
        let prefix = prefix.trim().to_ascii_lowercase();
        let bound = |fill: char| -> Option<[u8; 16]> {
            let mut digits: String = prefix.chars().take(32).collect();
            while digits.len() < 32 {
                digits.push(fill);
            }
            let mut bytes = [0; 16];
            hex::decode_to_slice(&digits, &mut bytes).ok()?;
            Some(bytes)
        };
        let mut found = Vec::new();
        if let (Some(low), Some(high)) = (bound('0'), bound('f')) {
            let txn = self.db.begin_read()?;
            let table = txn.open_table(DOCS)?;
            for item in table.range(low..=high)? {
                let (id, bytes) = item?;
                let summary: DocSummary = store::decode(bytes.value(), "index entry")?;
                found.push((Id(id.value()), summary));
            }
        }
        Ok(found)
    }

    /// The history of a document, oldest first, from the index.
    pub fn history(&self, doc_id: Id) -> Result<Vec<LogEntry>> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(HISTORY)?;
        let mut lines = Vec::new();
        for item in table.range((doc_id.0, 0)..=(doc_id.0, u64::MAX))? {
            lines.extend(store::history_lines(item?.1.value())?);
        }
        Ok(lines)
    }

    /// The last `n` lines of a document's history, newest first, reading only the rows
    /// that hold them.
    pub fn history_tail(&self, doc_id: Id, n: usize) -> Result<Vec<LogEntry>> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(HISTORY)?;
        let mut lines = Vec::new();
        for item in table.range((doc_id.0, 0)..=(doc_id.0, u64::MAX))?.rev() {
            if lines.len() >= n {
                break;
            }
            let row = store::history_last_lines(item?.1.value(), n - lines.len())?;
            lines.extend(row.into_iter().rev());
        }
        Ok(lines)
    }

    /// The heads at which the reader last marked a document read.
    pub fn read_marker(&self, doc_id: Id) -> Result<Option<Vec<String>>> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(READ_MARKERS)?;
        match table.get(doc_id.0)? {
            Some(bytes) => Ok(Some(store::decode(bytes.value(), "read marker")?)),
            None => Ok(None),
        }
    }

    /// Every read marker, for the inbox.
    pub fn read_markers(&self) -> Result<BTreeMap<Id, Vec<String>>> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(READ_MARKERS)?;
        let mut markers = BTreeMap::new();
        for item in table.iter()? {
            let (id, bytes) = item?;
            markers.insert(Id(id.value()), store::decode(bytes.value(), "read marker")?);
        }
        Ok(markers)
    }

    /// Marks a document read at its current heads.
    pub fn mark_read(&self, doc_id: Id, heads: &[String]) -> Result<()> {
        let txn = self.db.begin_write()?;
        txn.open_table(READ_MARKERS)?
            .insert(doc_id.0, store::encode(&heads).as_slice())?;
        txn.commit()?;
        Ok(())
    }

    /// Marks several documents read, each at the heads given, in one transaction.
    pub fn mark_read_many(&self, marks: &[(Id, Vec<String>)]) -> Result<()> {
        let txn = self.db.begin_write()?;
        {
            let mut table = txn.open_table(READ_MARKERS)?;
            for (doc_id, heads) in marks {
                table.insert(doc_id.0, store::encode(heads).as_slice())?;
            }
        }
        txn.commit()?;
        Ok(())
    }

    /// The stored records of a document, in order (for bundles).
    pub fn records(&self, doc_id: Id) -> Result<Vec<Record>> {
        self.doc_range(RECORDS, doc_id, "record")
    }

    /// The envelopes that carry the changes of `docs`, each once, in an order a receiver
    /// can apply them one frame at a time: each document's in the order of its records, and
    /// a shared envelope only after everything before it in every document it has a part
    /// of. What a bundle or a relay that lacks them is given.
    pub fn envelopes(&self, docs: &[Id]) -> Result<Vec<Vec<u8>>> {
        let txn = self.db.begin_read()?;
        let records = txn.open_table(RECORDS)?;
        let shared = txn.open_table(store::ENVELOPES)?;
        let mut lists = Vec::with_capacity(docs.len());
        for doc in docs {
            let mut list = std::collections::VecDeque::new();
            for item in records.range((doc.0, 0)..=(doc.0, u64::MAX))? {
                list.push_back(match store::decode::<Record>(item?.1.value(), "record")? {
                    Record::Sealed(bytes) => Step::Whole(bytes),
                    Record::Part { envelope, .. } => {
                        Step::Shared(envelope.as_slice().try_into().with_context(|| {
                            format!(
                                "a stored record of document {} is corrupt (its envelope hash)",
                                doc.short()
                            )
                        })?)
                    }
                });
            }
            lists.push(list);
        }
        causal_order(lists)
            .into_iter()
            .map(|step| match step {
                Step::Whole(bytes) => Ok(bytes),
                Step::Shared(hash) => Ok(shared
                    .get(hash)?
                    .with_context(|| {
                        format!(
                            "the shared envelope {} is missing from the store",
                            hex::encode(&hash[..6])
                        )
                    })?
                    .value()
                    .to_vec()),
            })
            .collect()
    }

    /// Every value of one document in a per-document table, in order.
    fn doc_range<T: serde::de::DeserializeOwned>(
        &self,
        table: redb::TableDefinition<([u8; 16], u64), &[u8]>,
        doc_id: Id,
        what: &str,
    ) -> Result<Vec<T>> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(table)?;
        let mut values = Vec::new();
        for item in table.range((doc_id.0, 0)..=(doc_id.0, u64::MAX))? {
            values.push(store::decode(item?.1.value(), what)?);
        }
        Ok(values)
    }
}

/// The most change bytes sealed into one envelope.
pub const MAX_SEALED_BYTES: usize = 1 << 20;

/// The plaintexts of the envelopes that carry one edit's changes: all of them together, in
/// pieces of at most [`MAX_SEALED_BYTES`] (a change larger than that travels alone).
///
/// An edit usually makes one change. A batch of many (an import, a script) would otherwise
/// pay an ed25519 signature, a nonce and an envelope's framing for each one, on this node
/// and again at every receiver, which verifies each signature: a third of a batch import's
/// time went to curve arithmetic. Receivers already take envelopes of several changes, all
/// by the signer, all of one document.
///
/// Changes go in uncompressed, to be compressed together ([`seal::changes_plaintext`]); a
/// change larger than a piece goes alone in automerge's own compressed form, since a
/// compressed piece may inflate to no more than an envelope could carry raw.
///
/// Each piece is the number of changes it holds, in order, and their bytes.
pub(crate) fn sealing_groups(changes: &mut [Change]) -> Vec<(usize, Vec<u8>)> {
    let max_ops = crate::ingest::Limits::default().max_ops;
    let mut groups = Vec::new();
    let mut plaintext = Vec::new();
    let mut count = 0;
    let mut ops = 0;
    for change in changes {
        let change_ops = change.len();
        let bytes = if change.raw_bytes().len() > MAX_SEALED_BYTES {
            change.bytes()
        } else {
            std::borrow::Cow::Borrowed(change.raw_bytes())
        };
        // Receivers apply an envelope at a time at worst: within one merge's operations.
        if !plaintext.is_empty()
            && (plaintext.len() + bytes.len() > MAX_SEALED_BYTES || ops + change_ops > max_ops)
        {
            groups.push((std::mem::take(&mut count), std::mem::take(&mut plaintext)));
            ops = 0;
        }
        plaintext.extend_from_slice(&bytes);
        count += 1;
        ops += change_ops;
    }
    if !plaintext.is_empty() {
        groups.push((count, plaintext));
    }
    groups
}

/// From how many changes one edit checks its rules on a thread of its own, beside sealing:
/// below it, starting the thread costs more than the overlap saves.
const PARALLEL_CHECK: usize = 256;

/// Whether to seal an edit of `new` changes as the document's save, when that carries what
/// its changes would and at most as much again: every change in it is this device's (the
/// document has one actor, and the edit was made with it), the edit is at least half of it
/// (receivers have the rest already and skip it), and its operations and changes are within
/// one merge's limits (the caller checks that the save fits in an envelope). Receivers
/// accept a whole document from a member only when every change in it is the signer's
/// (`ingest`), so this never vouches for anyone else. The workspace document, whose genesis
/// change no device wrote, is never sealed whole.
fn own_document(is_workspace: bool, stats: &automerge::Stats, new: usize) -> bool {
    // Receivers take a whole document in one piece, never split across merges: all of it
    // must be within what one merge may bring.
    let limits = crate::ingest::Limits::default();
    !is_workspace
        && stats.num_actors == 1
        && new as u64 * 2 >= stats.num_changes
        && stats.num_ops <= limits.max_document_ops as u64
        && stats.num_changes <= limits.max_changes as u64
}

/// The result of a scoped thread, its panic carried on to this one.
fn joined<T>(result: std::thread::Result<T>) -> T {
    result.unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// Runs `check` over `changes` on two cores, half each, and gives the first half's error if
/// both halves have one. The rules look at each change on its own; a half costs its own
/// lookups of the objects both touch.
fn check_on_both_cores(
    changes: &[Change],
    check: impl Fn(&[Change]) -> Result<Touched> + Sync,
) -> Result<Touched> {
    let (first, second) = changes.split_at(changes.len() / 2);
    std::thread::scope(|scope| {
        let checking = scope.spawn(|| check(first));
        let later = check(second);
        Ok(joined(checking.join())?.and(later?))
    })
}

/// Several edits in one transaction; see [`Node::batch`].
pub struct Batch<'a> {
    node: &'a Node,
    txn: &'a WriteTransaction,
}

impl Batch<'_> {
    /// Like [`Node::edit`], inside the batch's transaction.
    pub fn edit<T>(
        &self,
        workspace: Id,
        doc_id: Id,
        f: impl FnOnce(&mut Automerge) -> Result<T>,
    ) -> Result<T> {
        self.node.edit_in(self.txn, workspace, doc_id, f)
    }
}

/// A document loaded from its records.
pub struct Loaded {
    /// The document.
    pub doc: Automerge,
    /// The sequence number the next record gets.
    pub next_seq: u64,
    /// How many changes the checkpoint it was loaded from holds (0 without one).
    pub checkpointed: u64,
}

/// The envelopes of a document's records signed by one of `signers`, in the order stored.
fn signed_by(
    txn: &WriteTransaction,
    doc_id: Id,
    signers: &std::collections::HashSet<Vec<u8>>,
) -> Result<Vec<Vec<u8>>> {
    let records = txn.open_table(RECORDS)?;
    let shared = txn.open_table(store::ENVELOPES)?;
    let mut out: Vec<Vec<u8>> = Vec::new();
    for item in records.range((doc_id.0, 0)..=(doc_id.0, u64::MAX))? {
        let bytes = match store::decode::<Record>(item?.1.value(), "record")? {
            Record::Sealed(bytes) => bytes,
            Record::Part { envelope, .. } => {
                let Ok(hash) = <[u8; 32]>::try_from(envelope.as_slice()) else {
                    continue;
                };
                match shared.get(hash)? {
                    Some(bytes) => bytes.value().to_vec(),
                    None => continue,
                }
            }
        };
        if Envelope::decode_stored(&bytes).is_ok_and(|e| signers.contains(&e.author)) {
            out.push(bytes);
        }
    }
    Ok(out)
}

/// The index summaries of a workspace's documents, from the `docs` table.
pub fn summaries_in(
    table: &impl ReadableTable<[u8; 16], &'static [u8]>,
    workspace: Id,
) -> Result<Vec<(Id, DocSummary)>> {
    let mut all = Vec::new();
    for item in table.iter()? {
        let (id, bytes) = item?;
        let summary: DocSummary = store::decode(bytes.value(), "index entry")?;
        if summary.workspace == workspace.0 {
            all.push((Id(id.value()), summary));
        }
    }
    Ok(all)
}

/// What an invite or a device code says of the workspace a device joins with it.
struct Joining<'a> {
    name: &'a str,
    key: &'a [u8],
    creator: &'a [u8],
    relays: &'a [String],
    /// The key epoch its maker sealed under (hash, secret).
    epoch: Option<&'a (serde_bytes::ByteBuf, serde_bytes::ByteBuf)>,
}

impl Joining<'_> {
    /// The record a device keeps of workspace `id` it joins, admitted by `proof` (an
    /// invite) or `device_proof` (a device code).
    fn record(
        &self,
        id: Id,
        proof: Option<workspace::JoinProof>,
        device_proof: Option<meridian_relay::membership::DeviceProof>,
    ) -> WorkspaceRecord {
        WorkspaceRecord {
            name: self.name.to_string(),
            key: self.key.to_vec(),
            genesis: workspace::genesis(id, self.creator),
            creator: self.creator.to_vec(),
            relays: self.relays.to_vec(),
            state: WorkspaceState::default(),
            salt: None,
            proof,
            device_proof,
            dropped: Vec::new(),
            epochs: self
                .epoch
                .iter()
                .map(|(hash, secret)| seal::EpochKey {
                    hash: hash.to_vec(),
                    secret: secret.to_vec(),
                    depth: 1,
                    unchecked: false,
                })
                .collect(),
            sealing: match self.epoch {
                Some((hash, _)) => crate::keyring::Sealing::Epoch(hash.clone()),
                None => crate::keyring::Sealing::First,
            },
            // The code's relays are the workspace's: they go if it stops sharing them.
            followed: self.relays.to_vec(),
            endorsed: Vec::new(),
        }
    }
}

/// Reads the workspace record inside a write transaction.
pub fn workspace_record(txn: &WriteTransaction, workspace: Id) -> Result<WorkspaceRecord> {
    let table = txn.open_table(WORKSPACES)?;
    let bytes = table.get(workspace.0)?.with_context(|| {
        format!(
            "this node does not belong to workspace {}",
            workspace.short()
        )
    })?;
    store::decode(bytes.value(), "workspace")
}

/// Puts a document whose records `txn` holds into `cache`, weighed by its change count.
fn keep(
    cache: &DocCache,
    txn: &WriteTransaction,
    workspace: Id,
    doc_id: Id,
    loaded: Loaded,
) -> Result<()> {
    let changes = history_len(&txn.open_table(HISTORY)?, doc_id)?;
    cache.put(
        workspace,
        doc_id,
        loaded,
        changes,
        &txn.open_table(RECORDS)?,
    )
}

/// What follows storing a document's new records (after [`append_records`]; they end
/// before `loaded.next_seq`, and `loaded.checkpointed` is what it was loaded with): a new
/// checkpoint if one is due (from `save`, the document's save as it is now, when the caller
/// made one), then the document kept in `cache` for the next write.
pub fn stored(
    cache: &DocCache,
    txn: &WriteTransaction,
    (workspace, doc_id): (Id, Id),
    mut loaded: Loaded,
    (appended, save): (Appended, Option<Vec<u8>>),
) -> Result<()> {
    let changes = appended.changes;
    loaded.checkpointed = checkpoint_if_due(txn, doc_id, &loaded, changes, save)?;
    match appended.last {
        Some(last) => cache.put_hashed(workspace, doc_id, loaded, changes, last),
        None => cache.put(
            workspace,
            doc_id,
            loaded,
            changes,
            &txn.open_table(RECORDS)?,
        ),
    }
}

/// What [`append_records`] wrote: how many history lines the document has now, and the
/// hash of its last record, as the document cache keys it (`None` if it wrote none).
pub struct Appended {
    /// The document's changes, counted by its history lines.
    pub changes: u64,
    /// The hash of the last record written.
    pub last: Option<[u8; 32]>,
}

/// One record of a document as [`Node::envelopes`] hands it over.
#[derive(Debug, PartialEq)]
enum Step {
    /// An envelope of one document.
    Whole(Vec<u8>),
    /// A part of the shared envelope with this hash.
    Shared([u8; 32]),
}

/// Merges documents' records into one sequence: each document's in order, each shared
/// envelope once, after what precedes it in every document that has a part of it.
///
/// Walking the documents one after another would put a shared envelope at its first part,
/// ahead of the other documents' earlier history, creation included: a receiver fed one
/// frame at a time would hold every such part until that history came (at most 10,000,
/// then refused for good), and a relay would index the shared envelope as those
/// documents' first entry. Documents that stored parts of two envelopes in opposite orders
/// (one held, the other not) wait on each other; then the envelope the first of them waits
/// at goes first, and the receiver holds what that leaves waiting.
fn causal_order(lists: Vec<std::collections::VecDeque<Step>>) -> Vec<Step> {
    use std::collections::{HashMap, HashSet, VecDeque};
    /// The merge so far.
    struct Merge {
        lists: Vec<VecDeque<Step>>,
        out: Vec<Step>,
        sent: HashSet<[u8; 32]>,
        /// The documents stopped at each shared envelope, until all its holders are.
        waiting: HashMap<[u8; 32], Vec<usize>>,
        ready: VecDeque<usize>,
    }
    impl Merge {
        /// Sends a shared envelope and lets the documents stopped at it go on.
        fn release(&mut self, hash: [u8; 32]) {
            self.sent.insert(hash);
            self.out.push(Step::Shared(hash));
            for doc in self.waiting.remove(&hash).unwrap_or_default() {
                self.lists[doc].pop_front();
                self.ready.push_back(doc);
            }
        }
    }
    // How many of the documents have a part of each shared envelope.
    let mut holders: HashMap<[u8; 32], usize> = HashMap::new();
    for list in &lists {
        let mine: HashSet<[u8; 32]> = list
            .iter()
            .filter_map(|step| match step {
                Step::Shared(hash) => Some(*hash),
                Step::Whole(_) => None,
            })
            .collect();
        for hash in mine {
            *holders.entry(hash).or_default() += 1;
        }
    }
    let mut merge = Merge {
        ready: (0..lists.len()).collect(),
        lists,
        out: Vec::new(),
        sent: HashSet::new(),
        waiting: HashMap::new(),
    };
    let mut first_unfinished = 0;
    loop {
        while let Some(doc) = merge.ready.pop_front() {
            while let Some(step) = merge.lists[doc].front() {
                match step {
                    Step::Whole(_) => {
                        let whole = merge.lists[doc].pop_front().expect("a front step");
                        merge.out.push(whole);
                    }
                    Step::Shared(hash) if merge.sent.contains(hash) => {
                        merge.lists[doc].pop_front();
                    }
                    Step::Shared(hash) => {
                        let hash = *hash;
                        let stopped = merge.waiting.entry(hash).or_default();
                        stopped.push(doc);
                        if stopped.len() == holders[&hash] {
                            merge.release(hash);
                        }
                        // Released, this document is ready again; otherwise it waits.
                        break;
                    }
                }
            }
        }
        // Every unfinished document waits at a shared envelope: they wait on each other.
        let Some(doc) = (first_unfinished..merge.lists.len()).find(|d| !merge.lists[*d].is_empty())
        else {
            break;
        };
        first_unfinished = doc;
        match merge.lists[doc].front() {
            Some(Step::Shared(hash)) => merge.release(*hash),
            _ => merge.ready.push_back(doc),
        }
    }
    merge.out
}

/// Loads a document to change it inside `txn`: the copy kept in `cache` if the records have
/// not moved since it was kept (it is taken out; the caller puts it back once stored), else
/// from the store.
pub fn load_for_write(
    cache: &DocCache,
    txn: &WriteTransaction,
    record: &WorkspaceRecord,
    workspace: Id,
    doc_id: Id,
) -> Result<Loaded> {
    let records = txn.open_table(RECORDS)?;
    if let Some(loaded) = cache.take(workspace, doc_id, &records)? {
        return Ok(loaded);
    }
    load_doc(
        &records,
        &txn.open_table(CHECKPOINTS)?,
        record,
        workspace,
        doc_id,
    )
}

/// Loads a document from its records: its checkpoint, if it has one, then each later
/// envelope opened, all loaded in one call. Records were verified when they were stored, so
/// signatures are not checked again here.
pub fn load_doc(
    records: &impl ReadableTable<([u8; 16], u64), &'static [u8]>,
    checkpoints: &impl ReadableTable<[u8; 16], &'static [u8]>,
    record: &WorkspaceRecord,
    workspace: Id,
    doc_id: Id,
) -> Result<Loaded> {
    let checkpoint = match checkpoints.get(doc_id.0)? {
        Some(bytes) => store::decode::<Checkpoint>(bytes.value(), "checkpoint").ok(),
        None => None,
    };
    if let Some(checkpoint) = checkpoint {
        match load_from(records, Some(checkpoint), record, workspace, doc_id) {
            Ok(loaded) => return Ok(loaded),
            Err(e) => tracing::warn!(
                "the checkpoint of document {} does not load ({e:#}); reading every record",
                doc_id.short()
            ),
        }
    }
    load_from(records, None, record, workspace, doc_id)
}

fn load_from(
    records: &impl ReadableTable<([u8; 16], u64), &'static [u8]>,
    checkpoint: Option<Checkpoint>,
    record: &WorkspaceRecord,
    workspace: Id,
    doc_id: Id,
) -> Result<Loaded> {
    let checkpointed = checkpoint.as_ref().map_or(0, |c| c.changes);
    let (mut bytes, mut next_seq) = match checkpoint {
        Some(checkpoint) => (checkpoint.saved()?.into_owned(), checkpoint.next_seq),
        None if doc_id == workspace => (record.genesis.clone(), 0),
        None => (Vec::new(), 0),
    };
    for item in records.range((doc_id.0, next_seq)..=(doc_id.0, u64::MAX))? {
        let (k, v) = item?;
        next_seq = k.value().1 + 1;
        match store::decode::<Record>(v.value(), "record")? {
            Record::Sealed(envelope) => {
                let envelope: Envelope = ciborium::from_reader(envelope.as_slice())
                    .context("a stored envelope is corrupt")?;
                // Checked when stored; a compressed run inflates within its own bound.
                let plaintext = seal::open_with(record, &envelope)?;
                let mut unbounded = u64::MAX;
                let changes = crate::ingest::plaintext_changes(&plaintext, &mut unbounded)?;
                if crate::ingest::is_whole_document(&changes) && envelope.author != record.creator {
                    // Loaded first, a document chunk would be taken as it is stored; only the
                    // creator's is (`ingest::open_envelope`), anyone else's gives its changes.
                    let whole = Automerge::load(&changes).with_context(|| {
                        format!("a stored whole document {} does not load", doc_id.short())
                    })?;
                    for change in whole.get_changes(&[]) {
                        bytes.extend_from_slice(change.raw_bytes());
                    }
                } else {
                    bytes.extend_from_slice(&changes);
                }
            }
            // A part of a shared envelope keeps its changes as verified: nothing to open.
            Record::Part { changes, .. } => bytes.extend_from_slice(&changes),
        }
    }
    let doc = if bytes.is_empty() {
        Automerge::new()
    } else {
        Automerge::load(&bytes).with_context(|| {
            format!(
                "the stored changes of document {} do not load",
                doc_id.short()
            )
        })?
    };
    Ok(Loaded {
        doc,
        next_seq,
        checkpointed,
    })
}

/// The fewest changes after a document's checkpoint before a new one is written.
///
/// Every command is a fresh process that loads the document it edits, replaying the
/// records after its checkpoint at about 12 µs each, while saving a short document costs
/// about 0.25 µs per change it holds (a 256-change text: 0.13 ms). At 256, one command at
/// a time on a few-hundred-change document took 2.25 ms an edit; at 32, 1.37–1.47 ms
/// (the suite's one-edit-per-transaction loop, 500 edits, three runs each).
pub const CHECKPOINT_MIN_CHANGES: u64 = 32;

/// Writes a new checkpoint of a document of `changes` changes (whose records now end before
/// `loaded.next_seq`, and which was loaded from a checkpoint of `loaded.checkpointed`
/// changes) once enough changes piled up since: at least [`CHECKPOINT_MIN_CHANGES`], and a
/// sixteenth of the document's changes, so saving (whose cost grows with the document)
/// stays a small share of the loading it spares. Returns the changes the document's
/// checkpoint now holds.
fn checkpoint_if_due(
    txn: &WriteTransaction,
    doc_id: Id,
    loaded: &Loaded,
    changes: u64,
    save: Option<Vec<u8>>,
) -> Result<u64> {
    let before = loaded.checkpointed;
    if changes.saturating_sub(before) < CHECKPOINT_MIN_CHANGES.max(before / 16) {
        return Ok(before);
    }
    let checkpoint = match save {
        Some(save) => Checkpoint {
            next_seq: loaded.next_seq,
            changes,
            save,
            deflated: false,
        },
        None => Checkpoint::of(&loaded.doc, loaded.next_seq, changes),
    };
    txn.open_table(CHECKPOINTS)?
        .insert(doc_id.0, store::encode(&checkpoint).as_slice())?;
    Ok(changes)
}

/// The history line for a change.
pub fn log_entry(change: &Change) -> LogEntry {
    LogEntry {
        hash: change.hash().0.to_vec(),
        deps: change
            .deps()
            .iter()
            .map(|d| serde_bytes::ByteBuf::from(d.0.to_vec()))
            .collect(),
        author: identity::actor_key(change.actor_id())
            .map(|k| k.to_vec())
            .unwrap_or_default(),
        time: change.timestamp(),
        message: change.message().unwrap_or_default().to_string(),
    }
}

/// Appends records from `seq` on, and history lines after the existing ones.
pub fn append_records(
    txn: &WriteTransaction,
    doc_id: Id,
    seq: u64,
    new_records: &[Record],
    lines: &[LogEntry],
) -> Result<Appended> {
    let mut records = txn.open_table(RECORDS)?;
    let mut last = None;
    for (i, record) in new_records.iter().enumerate() {
        let encoded = store::encode(record);
        records.insert((doc_id.0, seq + i as u64), encoded.as_slice())?;
        if i + 1 == new_records.len() {
            last = Some(<sha2::Sha256 as sha2::Digest>::digest(&encoded).into());
        }
    }
    let mut history = txn.open_table(HISTORY)?;
    let mut next = history_len(&history, doc_id)?;
    for run in lines.chunks(store::RUN_LINES) {
        history.insert((doc_id.0, next), store::history_row(run).as_slice())?;
        next = position_after(next, run.len() as u64)?;
    }
    Ok(Appended {
        changes: next,
        last,
    })
}

/// How many history lines a document has: its last row's first line and how many it holds.
pub fn history_len(
    table: &impl ReadableTable<([u8; 16], u64), &'static [u8]>,
    doc_id: Id,
) -> Result<u64> {
    match table
        .range((doc_id.0, 0)..=(doc_id.0, u64::MAX))?
        .next_back()
        .transpose()?
    {
        Some((key, row)) => position_after(key.value().1, store::history_row_len(row.value())?),
        None => Ok(0),
    }
}

/// The position after a history row that starts at `first` and holds `lines` lines; a
/// damaged count that would run past the last position is an error, never a wrap.
fn position_after(first: u64, lines: u64) -> Result<u64> {
    first
        .checked_add(lines)
        .context("the stored history is corrupt (its positions run out)")
}

/// The sequence number after the last one under `key` in a (key, sequence) table.
pub fn next_seq(
    table: &impl ReadableTable<([u8; 16], u64), &'static [u8]>,
    key: [u8; 16],
) -> Result<u64> {
    Ok(table
        .range((key, 0)..=(key, u64::MAX))?
        .next_back()
        .transpose()?
        .map(|(k, _)| k.value().1 + 1)
        .unwrap_or(0))
}

/// Appends an encoded envelope to the workspace's outbox.
///
/// Positions only grow, even once sync has emptied the outbox: relays' push cursors are
/// positions in it.
pub fn append_outbox(txn: &WriteTransaction, workspace: Id, envelope: &[u8]) -> Result<()> {
    let mut outbox = txn.open_table(OUTBOX)?;
    let mut counters = txn.open_table(store::OUTBOX_NEXT)?;
    let stored = counters.get(workspace.0)?.map(|v| v.value()).unwrap_or(0);
    let next = next_seq(&outbox, workspace.0)?.max(stored);
    outbox.insert((workspace.0, next), envelope)?;
    counters.insert(workspace.0, next + 1)?;
    Ok(())
}

fn read_marker(txn: &WriteTransaction, doc_id: Id) -> Result<Option<Vec<ChangeHash>>> {
    let table = txn.open_table(READ_MARKERS)?;
    let Some(bytes) = table.get(doc_id.0)? else {
        return Ok(None);
    };
    let heads: Vec<String> = store::decode(bytes.value(), "read marker")?;
    let mut heads = crate::doc::parse_heads(&heads);
    heads.sort();
    Ok(Some(heads))
}

fn set_read_marker(txn: &WriteTransaction, doc_id: Id, heads: &[ChangeHash]) -> Result<()> {
    let heads = crate::doc::heads_hex(heads);
    txn.open_table(READ_MARKERS)?
        .insert(doc_id.0, store::encode(&heads).as_slice())?;
    Ok(())
}

pub use crate::rules::Touched;

/// A workspace's record with its state (and name) read from the workspace document as it is
/// now: the relays it follows move with the shared list.
fn with_state(record: &WorkspaceRecord, view: View<'_>) -> WorkspaceRecord {
    let mut record = record.clone();
    let shared = std::mem::take(&mut record.state.relays);
    record.state = workspace::read_state(view, &record.creator);
    record.follow_shared_relays(&shared);
    if let Some(name) = view.str(&automerge::ROOT, "name") {
        record.name = name;
    }
    record
}

/// Rebuilds the derived data of one document after `added` changes that touched `touched`:
/// the workspace state for the workspace document, the index summary for the others.
pub fn reindex(
    txn: &WriteTransaction,
    (workspace, record): (Id, &WorkspaceRecord),
    (doc_id, kind): (Id, crate::doc::Kind),
    doc: &Automerge,
    (added, touched): (u64, &Touched),
) -> Result<()> {
    let view = View::now(doc);
    if doc_id == workspace {
        let mut updated = with_state(record, view);
        if crate::keyring::removed_devices(&updated.state)
            != crate::keyring::removed_devices(&record.state)
        {
            crate::epochs::rechoose(txn, workspace, &mut updated)?;
        }
        let record = updated;
        txn.open_table(WORKSPACES)?
            .insert(workspace.0, store::encode(&record).as_slice())?;
        return Ok(());
    }
    let latest = doc
        .get_heads()
        .iter()
        .filter_map(|h| doc.get_change_meta_by_hash(h))
        .max_by_key(|c| c.timestamp);
    let (updated, last_author) = latest
        .map(|c| {
            (
                c.timestamp,
                identity::actor_key(&c.actor)
                    .map(hex::encode)
                    .unwrap_or_default(),
            )
        })
        .unwrap_or_default();
    let mut docs = txn.open_table(DOCS)?;
    let stored = match docs.get(doc_id.0)? {
        Some(bytes) => Some(store::decode::<DocSummary>(bytes.value(), "index entry")?),
        None => None,
    };
    let before = stored.as_ref().map_or(0, |s| s.changes);
    // A text edit leaves every field alone but for a proposal's approvals (whose staleness
    // is a comparison of texts) and a decided proposal's late edits.
    let text_blind = |s: &DocSummary| s.approvals.is_empty() && !s.decided();
    let full = || {
        summarize(
            view,
            kind,
            &workspace.0,
            updated,
            &last_author,
            before + added,
        )
    };
    let summary = match stored {
        Some(mut summary) if !touched.other && (!touched.sequences || text_blind(&summary)) => {
            summary.updated = updated;
            summary.last_author = last_author.clone();
            summary.heads = crate::doc::heads_hex(&doc.get_heads());
            summary.changes = before + added;
            crate::index::note_new_comments(&mut summary, view, &touched.comments);
            // The unit tests check the shortcut against the whole derivation at every
            // write (the simulation checks it at the end of each run, the property test of
            // `app` on random histories).
            #[cfg(test)]
            assert_eq!(
                summary,
                full(),
                "the summary derived from the changes alone"
            );
            summary
        }
        _ => full(),
    };
    docs.insert(doc_id.0, store::encode(&summary).as_slice())?;
    crate::search::enqueue(txn, workspace, doc_id)?;
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn new_thread(node: &Node, workspace: Id, title: &str) -> Result<Id> {
        let id = Id::random();
        let new = crate::thread::NewThread {
            id,
            workspace,
            title: title.into(),
            body: "body".into(),
            asks: vec![],
            urgency: "normal".into(),
            author: node.member_id(),
            at: now_ms(),
        };
        node.edit(workspace, id, |doc| {
            let mut tx = doc.transaction();
            crate::thread::create(&mut tx, &new)?;
            commit(tx, "new thread");
            Ok(())
        })?;
        Ok(id)
    }

    /// A profile in UTC office hours.
    pub(crate) fn profile(name: &str) -> Profile {
        Profile {
            name: name.into(),
            tz: "UTC".into(),
            hours: "09:00-17:00".into(),
            days: "mon-fri".into(),
            away: Vec::new(),
        }
    }

    /// A new home with one workspace, in a directory the caller keeps.
    pub(crate) fn new_home(tmp: &tempfile::TempDir) -> (PathBuf, Id) {
        let home = tmp.path().join("home");
        let workspace = Node::init(&home, &profile("Ana"))
            .unwrap()
            .create_workspace("w", vec![])
            .unwrap();
        (home, workspace)
    }

    /// An invite to `workspace` from `inviter`, valid for an hour.
    pub(crate) fn invite(inviter: &Node, workspace: Id) -> Invite {
        let (_, record) = inviter.workspace(Some(&workspace.hex())).unwrap();
        Invite::new(
            inviter.key(),
            workspace,
            &record.name,
            &record.key,
            &record.creator,
            vec![],
            now_ms() + 3_600_000,
        )
    }

    #[test]
    fn a_device_publishes_its_encryption_key_once_even_in_a_workspace_joined_before() {
        let tmp = tempfile::tempdir().unwrap();
        let (home, workspace) = new_home(&tmp);
        let node = Node::open(&home).unwrap();
        let me = node.member_id();
        let published = |node: &Node| {
            let (_, record) = node.workspace(Some(&workspace.hex())).unwrap();
            record.state.member(&me).unwrap().encryption.clone()
        };
        let mine = hex::encode(crate::keyring::DeviceKey::of(node.key()).public());
        assert_eq!(
            published(&node),
            Some(mine.clone()),
            "published at creation"
        );
        assert!(
            !node.publish_device_key(workspace).unwrap(),
            "nothing to do"
        );
        // As a home made before keys were published has it: no `devices` in the entry.
        node.edit(workspace, workspace, |doc| {
            let view = View::now(doc);
            let members = view.map(&automerge::ROOT, "members").unwrap();
            let entry = view.map(&members, &me).unwrap();
            let mut tx = doc.transaction();
            automerge::transaction::Transactable::delete(&mut tx, &entry, "devices")?;
            commit(tx, "as before");
            Ok(())
        })
        .unwrap();
        assert_eq!(published(&node), None);
        assert!(node.publish_device_key(workspace).unwrap());
        assert_eq!(published(&node), Some(mine));
        assert!(!node.publish_device_key(workspace).unwrap());
    }

    #[test]
    fn an_upgrade_pulls_again_what_an_older_build_could_not_read() {
        let tmp = tempfile::tempdir().unwrap();
        let (home, workspace) = new_home(&tmp);
        let relay = "ws://relay.example:7070";
        {
            // As a build before shared envelopes left it: two entries refused for their
            // version, one for a reason that stands, the cursor past all three.
            let node = Node::open(&home).unwrap();
            let txn = node.db().begin_write().unwrap();
            let cursor = store::Cursor {
                relay: Some(serde_bytes::ByteBuf::from(vec![5; 16])),
                pulled: 40,
                pushed: 3,
                shared: false,
            };
            txn.open_table(store::CURSORS)
                .unwrap()
                .insert((workspace.0, relay), store::encode(&cursor).as_slice())
                .unwrap();
            let unreadable = |seq| {
                format!(
                    "entry {seq} of {relay}: envelope version 2 is not supported (this build reads version 1)"
                )
            };
            for reason in [
                unreadable(31),
                "entry 12 of ws://relay.example:7070: forged change 1a2b".to_string(),
                unreadable(17),
            ] {
                let rejected = crate::ingest::Rejected {
                    doc: "ab".into(),
                    signer: "cd".into(),
                    reason,
                };
                crate::ingest::record_rejection(&txn, workspace, &rejected).unwrap();
            }
            txn.open_table(META)
                .unwrap()
                .insert("schema", 4u64.to_le_bytes().as_slice())
                .unwrap();
            txn.commit().unwrap();
        }
        let node = Node::open(&home).unwrap();
        let cursor = crate::sync::cursor(&node, workspace, relay).unwrap();
        assert_eq!(
            (cursor.pulled, cursor.pushed),
            (16, 3),
            "from the first unreadable one"
        );
        assert_eq!(
            cursor.relay.unwrap().as_slice(),
            [5; 16],
            "the same relay's log"
        );
        let reasons: Vec<String> = crate::sync::rejections(&node, workspace)
            .unwrap()
            .into_iter()
            .map(|r| r.reason)
            .collect();
        assert_eq!(
            reasons,
            vec!["entry 12 of ws://relay.example:7070: forged change 1a2b"]
        );
    }

    #[test]
    fn shared_envelopes_go_after_what_precedes_them_in_every_document() {
        // Documents as strings: a lowercase letter is an envelope of that document alone,
        // an uppercase one a shared envelope; the merged order, the same way.
        let check = |docs: &[&str], expect: &str| {
            let lists = docs
                .iter()
                .map(|doc| {
                    doc.bytes()
                        .map(|c| match c {
                            b'A'..=b'Z' => Step::Shared([c; 32]),
                            _ => Step::Whole(vec![c]),
                        })
                        .collect()
                })
                .collect();
            let order: String = causal_order(lists)
                .into_iter()
                .map(|step| match step {
                    Step::Shared(hash) => hash[0] as char,
                    Step::Whole(bytes) => bytes[0] as char,
                })
                .collect();
            assert_eq!(order, expect, "{docs:?}");
        };
        check(&[], "");
        check(&["ab", "cd"], "abcd");
        // S waits for the second document's creation and first edit.
        check(&["aSb", "cdSe"], "acdSbe");
        check(&["aSTb", "cSd", "eTf"], "acSeTdfb");
        // A document holding S twice sends it once.
        check(&["aSbS", "cS"], "acSb");
        // Parts stored in opposite orders: the first document's envelope goes first.
        check(&["aSTb", "cTSd"], "acSTdb");
    }

    #[test]
    fn a_home_opens_read_only_until_it_writes_and_follows_other_writers() {
        let tmp = tempfile::tempdir().unwrap();
        let (home, workspace) = new_home(&tmp);

        let first = Node::open(&home).unwrap();
        let second = Node::open(&home).unwrap();
        assert!(first.db().reader.is_some() && first.db().writer.get().is_none());
        assert_eq!(first.summaries(workspace).unwrap().len(), 0);

        // A write opens the file for writing; a read-only handle sees the commit.
        let one = new_thread(&first, workspace, "one").unwrap();
        assert!(first.db().writer.get().is_some());
        assert!(second.db().writer.get().is_none());
        let seen: Vec<Id> = second
            .summaries(workspace)
            .unwrap()
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        assert_eq!(seen, vec![one]);

        // Two writers in one process, as a command beside the daemon.
        let two = new_thread(&second, workspace, "two").unwrap();
        assert_eq!(first.summaries(workspace).unwrap().len(), 2);
        drop((first, second));
        let again = Node::open(&home).unwrap();
        let mut all: Vec<Id> = again
            .summaries(workspace)
            .unwrap()
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        all.sort();
        let mut expected = vec![one, two];
        expected.sort();
        assert_eq!(all, expected);
    }

    #[test]
    fn an_edits_changes_are_sealed_compressed_together_and_read_back_whole() {
        use automerge::transaction::Transactable;
        let mut doc = Automerge::new();
        let text = {
            let mut tx = doc.transaction();
            let text = tx
                .put_object(automerge::ROOT, "t", automerge::ObjType::Text)
                .unwrap();
            tx.commit();
            text
        };
        // Small changes, then one larger than a piece (a 3 MiB paste of varied text).
        for i in 0..50 {
            let mut tx = doc.transaction();
            tx.splice_text(&text, 0, 0, &format!("edit {i} ")).unwrap();
            tx.commit();
        }
        let paste: String = (0..300_000u32)
            .map(|i| format!("{:x}", i.wrapping_mul(2_654_435_761)))
            .collect();
        assert!(paste.len() > 2 * MAX_SEALED_BYTES);
        let mut tx = doc.transaction();
        tx.splice_text(&text, 0, 0, &paste).unwrap();
        tx.commit();
        let mut changes = doc.get_changes(&[]);
        let groups = sealing_groups(&mut changes);
        assert_eq!(
            groups.len(),
            2,
            "the small ones together, the large one alone"
        );
        let mut read = Vec::new();
        for (_, group) in &groups {
            let plaintext = seal::changes_plaintext(group);
            assert!(plaintext.len() <= meridian_relay::envelope::MAX_ENVELOPE_BYTES);
            let mut budget = u64::MAX;
            let bytes = crate::ingest::plaintext_changes(&plaintext, &mut budget).unwrap();
            let mut budget = u64::MAX;
            let chunks = crate::ingest::chunks(&bytes, &mut budget, false).unwrap();
            read.extend(crate::ingest::parse_changes(&chunks).unwrap());
        }
        let hashes = |c: &[Change]| c.iter().map(Change::hash).collect::<Vec<_>>();
        assert_eq!(hashes(&read), hashes(&changes));
        // The small ones went compressed together.
        assert_eq!(
            seal::changes_plaintext(&groups[0].1)[0],
            seal::DEFLATED_CHANGES
        );
    }

    #[test]
    fn an_edit_that_breaks_a_rule_stores_nothing_alone_or_in_a_batch_checked_beside_sealing() {
        use automerge::transaction::Transactable;
        let tmp = tempfile::tempdir().unwrap();
        let (home, workspace) = new_home(&tmp);
        let node = Node::open(&home).unwrap();
        let doc = new_thread(&node, workspace, "Original").unwrap();
        let history = node.history(doc).unwrap().len();
        let outbox = crate::sync::outbox(&node, workspace, 0, usize::MAX)
            .unwrap()
            .len();
        // `count` changes, each a new title.
        let retitles = |d: &mut Automerge, count: usize| -> Result<()> {
            for i in 0..count {
                let mut tx = d.transaction();
                tx.put(automerge::ROOT, "title", format!("Title {i}"))?;
                commit(tx, "retitle");
            }
            Ok(())
        };
        // A document's kind never changes after its creation.
        let rekind = |d: &mut Automerge| -> Result<()> {
            let mut tx = d.transaction();
            tx.put(automerge::ROOT, "kind", "proposal")?;
            commit(tx, "rekind");
            Ok(())
        };
        // 0 retitles: one bad change alone; PARALLEL_CHECK: the bad one first or last in a
        // batch checked half on each core.
        for (count, bad_first) in [(0, false), (PARALLEL_CHECK, false), (PARALLEL_CHECK, true)] {
            let error = node
                .edit(workspace, doc, |d| {
                    if bad_first {
                        rekind(d)?;
                    }
                    retitles(d, count)?;
                    if !bad_first {
                        rekind(d)?;
                    }
                    Ok(())
                })
                .unwrap_err();
            assert!(
                format!("{error:#}").contains("breaks a document rule"),
                "{error:#}"
            );
            assert_eq!(node.history(doc).unwrap().len(), history);
            let queued = crate::sync::outbox(&node, workspace, 0, usize::MAX).unwrap();
            assert_eq!(queued.len(), outbox, "nothing was queued to push");
            let stored = node.load(workspace, doc).unwrap();
            assert_eq!(title(&stored).as_deref(), Some("Original"));
        }
        // The same batch without the bad change is stored whole.
        node.edit(workspace, doc, |d| retitles(d, PARALLEL_CHECK))
            .unwrap();
        assert_eq!(node.history(doc).unwrap().len(), history + PARALLEL_CHECK);
        let last = format!("Title {}", PARALLEL_CHECK - 1);
        assert_eq!(
            title(&node.load(workspace, doc).unwrap()).as_deref(),
            Some(last.as_str())
        );
    }

    #[test]
    fn a_large_edit_of_a_document_only_its_writer_touched_travels_whole_and_merges_the_same() {
        use automerge::transaction::Transactable;
        let tmp = tempfile::tempdir().unwrap();
        let (home, workspace) = new_home(&tmp);
        let ana = Node::open(&home).unwrap();
        let (_, record) = ana.workspace(Some(&workspace.hex())).unwrap();
        let bo = Node::init(&tmp.path().join("bo"), &profile("Bo")).unwrap();
        bo.join(&invite(&ana, workspace)).unwrap();
        let limits = crate::ingest::Limits::default();
        let joined = crate::bundle::export(&bo, workspace, &[workspace]).unwrap();
        crate::bundle::merge(&ana, &joined, &limits).unwrap();

        // Bo, who did not create the workspace, writes a thread alone, then makes many
        // changes to it in one edit.
        let doc = new_thread(&bo, workspace, "Notes").unwrap();
        let queued = crate::sync::outbox(&bo, workspace, 0, usize::MAX)
            .unwrap()
            .len();
        bo.edit(workspace, doc, |d| {
            for i in 0..PARALLEL_CHECK {
                let mut tx = d.transaction();
                tx.put(automerge::ROOT, "title", format!("Notes, take {i}"))?;
                commit(tx, &format!("retitle {i}"));
            }
            Ok(())
        })
        .unwrap();
        let outbox = crate::sync::outbox(&bo, workspace, 0, usize::MAX).unwrap();
        assert_eq!(outbox.len(), queued + 1, "the edit is one envelope");
        let envelope = Envelope::decode(&outbox[queued].1).unwrap();
        let plaintext = seal::open(&record.key.as_slice().try_into().unwrap(), &envelope).unwrap();
        assert!(crate::ingest::is_whole_document(&plaintext));

        // Its history lines are what automerge says of each change.
        let written = bo.load(workspace, doc).unwrap();
        let lines = |node: &Node| -> Vec<Vec<u8>> {
            node.history(doc)
                .unwrap()
                .iter()
                .map(store::encode)
                .collect()
        };
        let expected: Vec<Vec<u8>> = written
            .get_changes(&[])
            .iter()
            .map(|c| store::encode(&log_entry(c)))
            .collect();
        assert_eq!(lines(&bo), expected);

        // Ana, who has none of the document, takes it from Bo's signature alone, as she
        // would his changes: rebuilt from them, not as the chunk lays it out.
        let mut budget = crate::ingest::Budget::new(&limits);
        let items =
            crate::ingest::open_sealed(&outbox[queued].1, workspace, &record, &mut budget).unwrap();
        assert!(
            items[0].snapshot.is_none(),
            "only the creator's is taken whole"
        );
        let report = crate::ingest::apply(&ana, workspace, items, &limits).unwrap();
        assert_eq!(report.applied, PARALLEL_CHECK + 1);
        let received = ana.load(workspace, doc).unwrap();
        assert_eq!(received.get_heads(), written.get_heads());
        assert_eq!(lines(&ana), expected);
        assert_eq!(
            title(&received).as_deref(),
            Some(format!("Notes, take {}", PARALLEL_CHECK - 1).as_str())
        );
        // Both load it again from their records alone: Ana from the whole document as her
        // first record, Bo from his first change and then the whole document.
        drop(bo);
        let bo = Node::open(&tmp.path().join("bo")).unwrap();
        for node in [&ana, &bo] {
            let txn = node.db().begin_write().unwrap();
            txn.open_table(CHECKPOINTS).unwrap().remove(doc.0).unwrap();
            txn.commit().unwrap();
            let again = Node::open(node.home()).unwrap();
            assert_eq!(
                again.load(workspace, doc).unwrap().get_heads(),
                written.get_heads()
            );
        }
    }

    pub(crate) fn retitle(node: &Node, workspace: Id, doc: Id, title: &str) -> Result<()> {
        node.edit(workspace, doc, |d| {
            let mut tx = d.transaction();
            automerge::transaction::Transactable::put(&mut tx, automerge::ROOT, "title", title)?;
            commit(tx, "retitle");
            Ok(())
        })
    }

    fn title(doc: &Automerge) -> Option<String> {
        View::now(doc).str(&automerge::ROOT, "title")
    }

    #[test]
    fn a_home_a_newer_build_wrote_is_refused_whole_and_left_as_it_was() {
        let tmp = tempfile::tempdir().unwrap();
        let (home, workspace) = new_home(&tmp);
        let newer = store::SCHEMA + 1;
        {
            let node = Node::open(&home).unwrap();
            let txn = node.db().begin_write().unwrap();
            txn.open_table(META)
                .unwrap()
                .insert("schema", newer.to_le_bytes().as_slice())
                .unwrap();
            txn.commit().unwrap();
        }
        let error = Node::open(&home).err().expect("a newer home is refused");
        assert!(
            format!("{error:#}").contains("written by a newer meridian"),
            "{error:#}"
        );
        // Nothing was rewritten: put the layout back and the home opens as before.
        let db = store::open_database(&home.join(DB_FILE)).unwrap();
        let txn = db.begin_write().unwrap();
        let stored = txn
            .open_table(META)
            .unwrap()
            .get("schema")
            .unwrap()
            .unwrap()
            .value()
            .to_vec();
        assert_eq!(stored, newer.to_le_bytes());
        txn.open_table(META)
            .unwrap()
            .insert("schema", store::SCHEMA.to_le_bytes().as_slice())
            .unwrap();
        txn.commit().unwrap();
        drop(db);
        let node = Node::open(&home).unwrap();
        assert!(node.workspace(Some(&workspace.hex())).is_ok());
    }

    #[test]
    fn a_damaged_history_count_fails_the_next_edit_and_overwrites_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let (home, workspace) = new_home(&tmp);
        let node = Node::open(&home).unwrap();
        let doc = new_thread(&node, workspace, "Counted").unwrap();
        retitle(&node, workspace, doc, "Second").unwrap();
        let rows = |node: &Node| -> Vec<(u64, Vec<u8>)> {
            let txn = node.db().begin_read().unwrap();
            let table = txn.open_table(HISTORY).unwrap();
            table
                .range((doc.0, 0)..=(doc.0, u64::MAX))
                .unwrap()
                .map(|item| {
                    let (key, value) = item.unwrap();
                    (key.value().1, value.value().to_vec())
                })
                .collect()
        };
        // The last row claims u64::MAX lines.
        let mut damaged = rows(&node);
        damaged.last_mut().unwrap().1 = [vec![0x01], vec![0xff; 9], vec![0x01]].concat();
        {
            let txn = node.db().begin_write().unwrap();
            let (seq, row) = damaged.last().unwrap();
            txn.open_table(HISTORY)
                .unwrap()
                .insert((doc.0, *seq), row.as_slice())
                .unwrap();
            txn.commit().unwrap();
        }
        node.docs().clear();
        let error = retitle(&node, workspace, doc, "Third").unwrap_err();
        assert!(format!("{error:#}").contains("corrupt"), "{error:#}");
        assert_eq!(rows(&node), damaged, "no row was written or moved");
        let error = node.history(doc).unwrap_err();
        assert!(format!("{error:#}").contains("corrupt"), "{error:#}");
    }

    #[test]
    fn history_reads_the_same_across_runs_and_rows_older_builds_wrote() {
        use automerge::transaction::Transactable;
        let tmp = tempfile::tempdir().unwrap();
        let (home, workspace) = new_home(&tmp);
        let node = Node::open(&home).unwrap();
        let doc = new_thread(&node, workspace, "History").unwrap();
        for i in 0..3 {
            retitle(&node, workspace, doc, &format!("Older {i}")).unwrap();
        }
        // As a build before runs left them: one CBOR entry per row.
        {
            let txn = node.db().begin_write().unwrap();
            let mut table = txn.open_table(HISTORY).unwrap();
            let lines = node.history(doc).unwrap();
            for seq in 0..4 {
                table.remove((doc.0, seq)).unwrap();
            }
            for (seq, line) in lines.iter().enumerate() {
                table
                    .insert((doc.0, seq as u64), store::encode(line).as_slice())
                    .unwrap();
            }
            drop(table);
            txn.commit().unwrap();
        }
        // Then this build: a large edit (runs of many), and single edits (runs of one).
        let many = 5 * store::RUN_LINES + 7;
        node.edit(workspace, doc, |d| {
            for i in 0..many {
                let mut tx = d.transaction();
                tx.put(automerge::ROOT, "title", format!("Take {i}"))?;
                commit(tx, if i % 500 == 0 { "milestone" } else { "retitle" });
            }
            Ok(())
        })
        .unwrap();
        node.docs().clear();
        retitle(&node, workspace, doc, "Last but one").unwrap();
        retitle(&node, workspace, doc, "Last").unwrap();

        let expected: Vec<LogEntry> = node
            .load(workspace, doc)
            .unwrap()
            .get_changes(&[])
            .iter()
            .map(log_entry)
            .collect();
        assert_eq!(expected.len(), 4 + many + 2);
        assert_eq!(node.history(doc).unwrap(), expected);
        let txn = node.db().begin_read().unwrap();
        let table = txn.open_table(HISTORY).unwrap();
        assert_eq!(history_len(&table, doc).unwrap(), expected.len() as u64);
        let rows = table.range((doc.0, 0)..=(doc.0, u64::MAX)).unwrap().count();
        assert_eq!(
            rows,
            4 + many.div_ceil(store::RUN_LINES) + 2,
            "rows: 4 old, the large edit's runs, 2 runs of one"
        );
        for n in [
            0,
            1,
            2,
            3,
            20,
            store::RUN_LINES + 30,
            many + 3,
            expected.len() + 5,
        ] {
            let newest_first: Vec<LogEntry> = expected.iter().rev().take(n).cloned().collect();
            assert_eq!(
                node.history_tail(doc, n).unwrap(),
                newest_first,
                "tail of {n}"
            );
        }
    }

    #[test]
    fn a_kept_document_is_used_only_while_the_store_has_not_moved_under_it() {
        let tmp = tempfile::tempdir().unwrap();
        let (home, workspace) = new_home(&tmp);
        // Two handles on one file, as a command beside the daemon: each keeps its own copies.
        let daemon = Node::open(&home).unwrap();
        let command = Node::open(&home).unwrap();
        let doc = new_thread(&daemon, workspace, "one").unwrap();
        assert_eq!(daemon.docs().len(), 1, "the stored document is kept");

        // The other handle writes: the kept copy is stale and must not be used.
        retitle(&command, workspace, doc, "two").unwrap();
        retitle(&daemon, workspace, doc, "three").unwrap();
        let loaded = command.load(workspace, doc).unwrap();
        assert_eq!(title(&loaded).as_deref(), Some("three"));
        assert_eq!(
            loaded.get_changes(&[]).len(),
            3,
            "the daemon's edit was made on top of the other handle's"
        );

        // A write that is rolled back after keeping its document, then another handle
        // appending exactly as many records: same length, other content. The hash of the
        // last record tells them apart.
        let rolled_back: Result<()> = daemon.batch(|batch| {
            batch.edit(workspace, doc, |d| {
                let mut tx = d.transaction();
                automerge::transaction::Transactable::put(
                    &mut tx,
                    automerge::ROOT,
                    "title",
                    "never stored",
                )?;
                commit(tx, "retitle");
                Ok(())
            })?;
            anyhow::bail!("the import failed further on")
        });
        assert!(rolled_back.is_err());
        retitle(&command, workspace, doc, "four").unwrap();
        retitle(&daemon, workspace, doc, "five").unwrap();
        let loaded = Node::open(&home).unwrap().load(workspace, doc).unwrap();
        assert_eq!(title(&loaded).as_deref(), Some("five"));
        assert_eq!(loaded.get_changes(&[]).len(), 5);
        let history: Vec<String> = loaded
            .get_changes(&[])
            .iter()
            .filter_map(|c| c.message().map(str::to_string))
            .collect();
        assert_eq!(history.len(), 5, "{history:?}");
    }

    fn checkpoint(node: &Node, doc: Id) -> Option<Checkpoint> {
        let txn = node.db().begin_read().unwrap();
        let table = txn.open_table(CHECKPOINTS).unwrap();
        let bytes = table.get(doc.0).unwrap()?;
        Some(store::decode(bytes.value(), "checkpoint").unwrap())
    }

    #[test]
    fn a_long_document_loads_from_its_checkpoint_and_the_records_after() {
        let tmp = tempfile::tempdir().unwrap();
        let (home, workspace) = new_home(&tmp);
        let node = Node::open(&home).unwrap();
        let thread = new_thread(&node, workspace, "long").unwrap();
        let me = node.member_id();
        // Replies in batches (one transaction each), as an import would make them.
        let replies = |count: usize| {
            node.batch(|batch| {
                for i in 0..count {
                    batch.edit(workspace, thread, |doc| {
                        let mut tx = doc.transaction();
                        crate::discussion::put_comment(
                            &mut tx,
                            &Id::random().hex(),
                            None,
                            &me,
                            now_ms(),
                            &format!("reply {i}"),
                        )?;
                        commit(tx, "reply");
                        Ok(())
                    })?;
                }
                Ok(())
            })
        };
        replies(CHECKPOINT_MIN_CHANGES as usize - 2).unwrap();
        assert!(checkpoint(&node, thread).is_none(), "not yet");
        replies(10).unwrap();
        let saved = checkpoint(&node, thread).expect("a checkpoint once enough records piled up");
        assert_eq!(saved.changes, CHECKPOINT_MIN_CHANGES);
        assert_eq!(saved.next_seq, CHECKPOINT_MIN_CHANGES);
        assert!(saved.deflated, "made at the fastest level, not automerge's");
        let with = node.load(workspace, thread).unwrap();

        // The same document as from every record.
        let txn = node.db().begin_write().unwrap();
        txn.open_table(CHECKPOINTS)
            .unwrap()
            .remove(thread.0)
            .unwrap();
        txn.commit().unwrap();
        let without = node.load(workspace, thread).unwrap();
        assert_eq!(with.get_heads(), without.get_heads());
        assert_eq!(with.save(), without.save());

        // A damaged checkpoint is passed over, not trusted and not fatal.
        let damaged = Checkpoint {
            next_seq: saved.next_seq,
            changes: saved.changes,
            save: vec![0x85, 0x6f, 0x4a, 0x83, 1, 2, 3],
            deflated: false,
        };
        // A deflated one that would inflate to 64 MiB of zeros, from 64 KiB.
        let bomb = {
            use std::io::Write as _;
            let mut deflating =
                flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
            deflating.write_all(&vec![0; 64 << 20]).unwrap();
            Checkpoint {
                save: deflating.finish().unwrap(),
                deflated: true,
                ..damaged.clone()
            }
        };
        // Older builds' checkpoints are automerge's own saves.
        let older = Checkpoint {
            save: saved.saved().unwrap().into_owned(),
            deflated: false,
            ..damaged.clone()
        };
        assert!(bomb.saved().is_err(), "inflated within a bound");
        for checkpoint in [damaged, bomb, older] {
            let txn = node.db().begin_write().unwrap();
            txn.open_table(CHECKPOINTS)
                .unwrap()
                .insert(thread.0, store::encode(&checkpoint).as_slice())
                .unwrap();
            txn.commit().unwrap();
            assert_eq!(
                node.load(workspace, thread).unwrap().get_heads(),
                without.get_heads()
            );
        }
        replies(1).unwrap();
    }
}
