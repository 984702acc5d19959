//! The relay's redb file: per workspace an append-only log of sealed envelopes, a hash index
//! that makes pushes idempotent, members and used invites. Nothing in it is plaintext of a
//! document: envelopes are stored as their authors sealed them.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, RepairSession, TableDefinition,
    WriteTransaction,
};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::envelope::ID_LEN;
use crate::membership::workspace_id;
use crate::protocol::{MAX_VOUCHES, PushResult, RefusedCode, Register, VouchResult, Vouchee};

type Ws = [u8; ID_LEN];
type Key = [u8; 32];
type Doc = [u8; ID_LEN];

const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// Workspace id → [`WorkspaceInfo`].
const WORKSPACES: TableDefinition<Ws, &[u8]> = TableDefinition::new("workspaces");
/// (workspace, device key) → [`MemberInfo`].
const MEMBERS: TableDefinition<(Ws, Key), &[u8]> = TableDefinition::new("members");
/// (workspace, invite public key) → the device key it admitted.
const INVITES: TableDefinition<(Ws, Key), Key> = TableDefinition::new("invites");
/// (workspace, sequence number) → encoded envelope. Sequence numbers start at 1.
const LOG: TableDefinition<(Ws, u64), &[u8]> = TableDefinition::new("log");
/// (workspace, envelope hash) → sequence number.
const HASHES: TableDefinition<(Ws, Key), u64> = TableDefinition::new("hashes");
/// (workspace, document id) → the sequence number of the document's first entry.
const FIRST: TableDefinition<(Ws, Doc), u64> = TableDefinition::new("first");
/// (workspace, document id) → [`Snapshot`]: the latest snapshot of the document.
const SNAPSHOTS: TableDefinition<(Ws, Doc), &[u8]> = TableDefinition::new("snapshots");

/// What a backup holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backup {
    /// Workspaces.
    pub workspaces: u64,
    /// Log entries, across workspaces.
    pub entries: u64,
    /// Size of the backup file.
    pub bytes: u64,
}

/// Copies every row of `table` from `read` into `write`; returns how many.
fn copy_table<K: redb::Key + 'static, V: redb::Value + 'static>(
    read: &redb::ReadTransaction,
    write: &redb::WriteTransaction,
    table: TableDefinition<K, V>,
) -> Result<u64> {
    let from = read.open_table(table)?;
    let mut to = write.open_table(table)?;
    let mut rows = 0;
    for row in from.iter()? {
        let (key, value) = row?;
        to.insert(key.value(), value.value())?;
        rows += 1;
    }
    Ok(rows)
}

/// `FILE.partial` beside `FILE`: where a file is written before it is renamed into place.
fn partial_path(target: &Path) -> std::path::PathBuf {
    let mut name = target.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    target.with_file_name(name)
}

/// Puts the finished file `partial` at `target` unless something is there already (a
/// hard link fails on an existing name, where a rename would replace it), durably.
fn publish(partial: &Path, target: &Path) -> Result<()> {
    std::fs::hard_link(partial, target).with_context(|| {
        format!(
            "cannot put the file at {} (a file there is never replaced)",
            target.display()
        )
    })?;
    std::fs::remove_file(partial)?;
    sync_parent(target);
    Ok(())
}

/// Makes a rename in `path`'s directory durable (best effort: not every system can).
fn sync_parent(path: &Path) {
    if let Some(parent) = path.parent()
        && let Ok(dir) = std::fs::File::open(if parent.as_os_str().is_empty() {
            Path::new(".")
        } else {
            parent
        })
    {
        let _ = dir.sync_all();
    }
}

/// Puts the backup `backup` in place as the database of the relay in `dir`, with a new
/// relay id, so members notice the relay may lack what they pushed after the backup and
/// push it again. Never overwrites a database: `dir` must not hold one. Returns the new id
/// and what the backup holds.
pub fn restore(backup: &Path, dir: &Path) -> Result<([u8; 16], Backup)> {
    let target = dir.join("relay.redb");
    if target.exists() {
        bail!(
            "{} already holds a relay database: restore never overwrites one; stop the relay and move {} away first",
            dir.display(),
            target.display()
        );
    }
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the data directory {}", dir.display()))?;
    let partial = partial_path(&target);
    let result = restore_into(backup, &partial, &target);
    if result.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    result
}

fn restore_into(backup: &Path, partial: &Path, target: &Path) -> Result<([u8; 16], Backup)> {
    std::fs::copy(backup, partial)
        .with_context(|| format!("cannot read the backup {}", backup.display()))?;
    let (id, figures) = {
        let db = Database::open(partial).with_context(|| {
            format!(
                "{} is not a relay backup (`meridian-relay backup` writes one)",
                backup.display()
            )
        })?;
        let mut id = [0u8; 16];
        crate::determinism::fill(&mut id)
            .map_err(|e| anyhow::anyhow!("the system random source failed: {e}"))?;
        let mut txn = db.begin_write()?;
        txn.set_durability(Durability::Immediate)?;
        let figures = {
            use redb::ReadableTableMetadata;
            let mut meta = txn.open_table(META).with_context(|| {
                format!(
                    "{} is not a relay backup: it has no relay id",
                    backup.display()
                )
            })?;
            if meta.get("relay_id")?.is_none() {
                bail!(
                    "{} is not a relay backup: it has no relay id",
                    backup.display()
                );
            }
            meta.insert("relay_id", id.as_slice())?;
            Backup {
                workspaces: txn.open_table(WORKSPACES)?.len()?,
                entries: txn.open_table(LOG)?.len()?,
                bytes: std::fs::metadata(backup)?.len(),
            }
        };
        txn.commit()?;
        (id, figures)
    };
    std::fs::File::open(partial)?.sync_all()?;
    publish(partial, target)?;
    Ok((id, figures))
}

/// A workspace this relay serves.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WorkspaceInfo {
    /// The creator's device key: the only one who may revoke members.
    #[serde(with = "serde_bytes")]
    pub creator: Vec<u8>,
    /// When it was registered, ms since the epoch.
    pub registered: i64,
}

/// A device admitted to a workspace.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MemberInfo {
    /// Who invited it (absent for the creator).
    pub invited_by: Option<serde_bytes::ByteBuf>,
    /// When it was admitted, ms since the epoch.
    pub admitted: i64,
    /// Whether the creator revoked it.
    pub removed: bool,
    /// The member it is a device of, when it was added by one of their devices (absent for
    /// a member's first device).
    #[serde(default)]
    pub of: Option<serde_bytes::ByteBuf>,
}

/// A refusal to admit a device, as sent to it.
#[derive(Debug, PartialEq, Eq)]
pub struct Refusal {
    /// Machine-readable reason.
    pub code: RefusedCode,
    /// What was wrong and what to do.
    pub reason: String,
}

fn refuse<T>(code: RefusedCode, reason: impl Into<String>) -> Result<T, Refusal> {
    Err(Refusal {
        code,
        reason: reason.into(),
    })
}

/// The verdict for a device admitted before: welcome, unless the creator removed it.
fn admitted(member: &MemberInfo) -> Result<(), Refusal> {
    if member.removed {
        refuse(
            RefusedCode::Removed,
            "this device was removed from the workspace (by its creator, or revoked by its member)",
        )
    } else {
        Ok(())
    }
}

/// One envelope of a push, already decoded and signature-checked.
pub struct Incoming {
    /// Its content hash.
    pub hash: Key,
    /// Its signer's device key.
    pub author: Key,
    /// The documents it carries changes to: one, or several for a shared envelope.
    pub docs: Vec<Doc>,
    /// The encoded envelope.
    pub bytes: Vec<u8>,
    /// Pushed by another device than its signer (a member forwarding what a removed
    /// member wrote before their removal reached it: PROTOCOL.md "Removals that hold").
    pub forwarded: bool,
}

/// How the relay's database commits, and so what reopening it after a crash costs
/// (`recovery` in the relay's config file). `ARCHITECTURE.md` ("Crash recovery") has the
/// measurements behind the default.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Recovery {
    /// redb's quick-repair: every commit is two-phase and records the allocator state, so
    /// the first open after a crash loads that record instead of reading the whole file.
    #[default]
    Quick,
    /// Two-phase commits without the allocator record: the open after a crash still reads
    /// the whole file to rebuild the allocator state, but trusts the primary commit slot.
    TwoPhase,
    /// redb's default: one-phase commits; the open after a crash verifies the checksum of
    /// every page and rebuilds the allocator state, reading the whole file.
    Full,
}

impl Recovery {
    /// Every setting, for measurements.
    pub const ALL: [Recovery; 3] = [Recovery::Quick, Recovery::TwoPhase, Recovery::Full];

    /// The name used in config files.
    pub fn name(self) -> &'static str {
        match self {
            Recovery::Quick => "quick",
            Recovery::TwoPhase => "two-phase",
            Recovery::Full => "full",
        }
    }
}

/// How the relay opens its database.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// How it commits and recovers from a crash.
    pub recovery: Recovery,
    /// Memory for redb's page cache (reads and writes not yet flushed), bytes. The
    /// operating system's page cache still holds the file: a small cache costs system calls,
    /// not disk reads.
    pub cache_bytes: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            recovery: Recovery::default(),
            cache_bytes: 32 << 20,
        }
    }
}

/// The relay's database.
pub struct RelayStore {
    db: Database,
    id: [u8; 16],
    recovery: Recovery,
    path: std::path::PathBuf,
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let mut bytes = Vec::new();
    ciborium::into_writer(value, &mut bytes).expect("writing CBOR to a Vec cannot fail");
    bytes
}

fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T> {
    ciborium::from_reader(bytes).with_context(|| format!("the stored {what} is corrupt"))
}

impl RelayStore {
    /// Opens (or creates) `relay.redb` in `dir` with the default [`Options`].
    pub fn open(dir: &Path) -> Result<RelayStore> {
        RelayStore::open_with(dir, Options::default())
    }

    /// Opens (or creates) `relay.redb` in `dir`. After an unclean shutdown the open repairs
    /// the file first (unless [`Recovery::Quick`] made that unnecessary), logging progress.
    pub fn open_with(dir: &Path, options: Options) -> Result<RelayStore> {
        let recovery = options.recovery;
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the data directory {}", dir.display()))?;
        let path = dir.join("relay.redb");
        let started = Instant::now();
        let repaired = Arc::new(AtomicBool::new(false));
        let mut builder = Database::builder();
        builder.set_cache_size(options.cache_bytes);
        {
            let repaired = repaired.clone();
            builder.set_repair_callback(move |session: &mut RepairSession| {
                if !repaired.swap(true, Ordering::Relaxed) {
                    warn!("the relay did not shut down cleanly: repairing its database");
                }
                info!("repair {:.0}% done", session.progress() * 100.0);
            });
        }
        let db = builder.create(&path).with_context(|| {
            format!(
                "cannot open {} (is another meridian-relay using this data directory?)",
                path.display()
            )
        })?;
        if repaired.load(Ordering::Relaxed) {
            info!("database repaired in {} ms", started.elapsed().as_millis());
        }
        let store = RelayStore {
            db,
            id: [0; 16],
            recovery,
            path: path.clone(),
        };
        let txn = store.begin_write()?;
        let id = {
            let mut meta = txn.open_table(META)?;
            let existing = meta.get("relay_id")?.map(|v| v.value().to_vec());
            match existing {
                Some(id) => id
                    .as_slice()
                    .try_into()
                    .context("the stored relay id is corrupt")?,
                None => {
                    let mut id = [0u8; 16];
                    crate::determinism::fill(&mut id)
                        .map_err(|e| anyhow::anyhow!("the system random source failed: {e}"))?;
                    meta.insert("relay_id", id.as_slice())?;
                    id
                }
            }
        };
        txn.open_table(WORKSPACES)?;
        txn.open_table(MEMBERS)?;
        txn.open_table(INVITES)?;
        txn.open_table(LOG)?;
        txn.open_table(HASHES)?;
        txn.open_table(FIRST)?;
        txn.open_table(SNAPSHOTS)?;
        txn.commit()?;
        info!(
            "database {} opened in {} ms ({} recovery)",
            path.display(),
            started.elapsed().as_millis(),
            recovery.name()
        );
        Ok(RelayStore { id, ..store })
    }

    /// A durable write transaction committing as the [`Recovery`] setting says.
    fn begin_write(&self) -> Result<WriteTransaction> {
        let mut txn = self.db.begin_write()?;
        txn.set_durability(Durability::Immediate)?;
        match self.recovery {
            Recovery::Quick => txn.set_quick_repair(true),
            Recovery::TwoPhase => txn.set_two_phase_commit(true),
            Recovery::Full => {}
        }
        Ok(txn)
    }

    /// Writes a consistent copy of the whole database to `target` (a new redb file), read
    /// in one read transaction while the relay goes on serving: written beside `target`,
    /// made durable, then renamed into place. The copy keeps this relay's id; a restore
    /// gives it a new one.
    pub fn backup_to(&self, target: &Path) -> Result<Backup> {
        if target.exists() {
            bail!(
                "{} exists: a backup never overwrites a file; name a new one",
                target.display()
            );
        }
        let partial = partial_path(target);
        let _ = std::fs::remove_file(&partial);
        let result = self.write_backup(&partial, target);
        if result.is_err() {
            let _ = std::fs::remove_file(&partial);
        }
        result
    }

    fn write_backup(&self, partial: &Path, target: &Path) -> Result<Backup> {
        let read = self.db.begin_read()?;
        let copy = Database::create(partial)
            .with_context(|| format!("cannot create the backup file {}", partial.display()))?;
        let mut write = copy.begin_write()?;
        write.set_durability(Durability::Immediate)?;
        copy_table(&read, &write, META)?;
        let workspaces = copy_table(&read, &write, WORKSPACES)?;
        copy_table(&read, &write, MEMBERS)?;
        copy_table(&read, &write, INVITES)?;
        let entries = copy_table(&read, &write, LOG)?;
        copy_table(&read, &write, HASHES)?;
        copy_table(&read, &write, FIRST)?;
        copy_table(&read, &write, SNAPSHOTS)?;
        write.commit()?;
        drop(copy);
        std::fs::File::open(partial)?.sync_all()?;
        publish(partial, target)?;
        Ok(Backup {
            workspaces,
            entries,
            bytes: std::fs::metadata(target)?.len(),
        })
    }

    /// How many workspaces the relay stores.
    pub fn workspaces(&self) -> Result<u64> {
        use redb::ReadableTableMetadata;
        let txn = self.db.begin_read()?;
        Ok(txn.open_table(WORKSPACES)?.len()?)
    }

    /// The size of the database file, bytes.
    pub fn size(&self) -> Result<u64> {
        Ok(std::fs::metadata(&self.path)?.len())
    }

    /// This relay's id: random, fixed for the life of the data directory, so nodes notice
    /// when a relay's log was replaced and its sequence numbers mean something else.
    pub fn id(&self) -> [u8; 16] {
        self.id
    }

    /// The last sequence number of a workspace's log (0 when empty).
    pub fn head(&self, ws: &Ws) -> Result<u64> {
        let txn = self.db.begin_read()?;
        let log = txn.open_table(LOG)?;
        last_seq(&log, ws)
    }

    /// The workspace's record, if this relay serves it.
    pub fn workspace(&self, ws: &Ws) -> Result<Option<WorkspaceInfo>> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(WORKSPACES)?;
        table
            .get(ws)?
            .map(|v| decode(v.value(), "workspace"))
            .transpose()
    }

    /// A device's membership record.
    pub fn member(&self, ws: &Ws, key: &Key) -> Result<Option<MemberInfo>> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(MEMBERS)?;
        table
            .get((*ws, *key))?
            .map(|v| decode(v.value(), "member"))
            .transpose()
    }

    /// Decides whether an authenticated device may use a workspace, registering the
    /// workspace or the device first when `register` allows it.
    pub fn admit(
        &self,
        ws: &Ws,
        key: &Key,
        register: Option<&Register>,
        now: i64,
    ) -> Result<Result<(), Refusal>> {
        if let Some(known) = self.known_device(ws, key)? {
            return Ok(known);
        }
        let txn = self.begin_write()?;
        let verdict = {
            let mut workspaces = txn.open_table(WORKSPACES)?;
            let mut members = txn.open_table(MEMBERS)?;
            let mut invites = txn.open_table(INVITES)?;
            if workspaces.get(ws)?.is_none() {
                match register {
                    Some(Register::Create { salt }) => {
                        let salt: Option<[u8; 16]> = salt.as_slice().try_into().ok();
                        if salt.is_some_and(|salt| workspace_id(key, &salt) == *ws) {
                            let info = WorkspaceInfo {
                                creator: key.to_vec(),
                                registered: now,
                            };
                            workspaces.insert(ws, encode(&info).as_slice())?;
                            let member = MemberInfo {
                                invited_by: None,
                                admitted: now,
                                removed: false,
                                of: None,
                            };
                            members.insert((*ws, *key), encode(&member).as_slice())?;
                            Ok(())
                        } else {
                            refuse(
                                RefusedCode::BadProof,
                                "the workspace id is not derived from this device's key: only the workspace's creator can register it with a relay",
                            )
                        }
                    }
                    _ => refuse(
                        RefusedCode::UnknownWorkspace,
                        "this relay does not serve that workspace: its creator registers it by syncing with this relay first",
                    ),
                }
            } else {
                let existing: Option<MemberInfo> = members
                    .get((*ws, *key))?
                    .map(|v| decode(v.value(), "member"))
                    .transpose()?;
                match (existing, register) {
                    (Some(member), _) => admitted(&member),
                    (None, Some(Register::Join(proof))) => {
                        let inviter: Option<Key> = proof.inviter.as_slice().try_into().ok();
                        let invite: Option<Key> = proof.invite_public.as_slice().try_into().ok();
                        let inviter_ok = match inviter {
                            Some(inviter) => members
                                .get((*ws, inviter))?
                                .map(|v| decode::<MemberInfo>(v.value(), "member"))
                                .transpose()?
                                .is_some_and(|m| !m.removed),
                            None => false,
                        };
                        let used_by = match invite {
                            Some(invite) => invites.get((*ws, invite))?.map(|v| v.value()),
                            None => None,
                        };
                        if let Err(e) = proof.verify(ws, key) {
                            refuse(
                                RefusedCode::BadProof,
                                format!("the invite proof is invalid: {e}"),
                            )
                        } else if proof.expires < now {
                            refuse(
                                RefusedCode::InviteExpired,
                                "the invite expired before this device registered with the relay: ask a member for a new invite",
                            )
                        } else if !inviter_ok {
                            refuse(
                                RefusedCode::BadProof,
                                "the invite was made by someone who is not a member on this relay (never synced with it, or removed)",
                            )
                        } else if used_by.is_some_and(|k| k != *key) {
                            refuse(
                                RefusedCode::InviteUsed,
                                "this invite was already used by another device: each invite admits one device; ask for a new one",
                            )
                        } else {
                            let member = MemberInfo {
                                invited_by: inviter.map(|k| serde_bytes::ByteBuf::from(k.to_vec())),
                                admitted: now,
                                removed: false,
                                of: None,
                            };
                            members.insert((*ws, *key), encode(&member).as_slice())?;
                            if let Some(invite) = invite {
                                invites.insert((*ws, invite), *key)?;
                            }
                            Ok(())
                        }
                    }
                    (None, Some(Register::Device(proof))) => {
                        let by: Option<Key> = proof.by.as_slice().try_into().ok();
                        let code: Option<Key> = proof.code_public.as_slice().try_into().ok();
                        // The adding device is the member's first device or another of
                        // theirs, admitted here and not removed.
                        let by_ok = match by {
                            Some(by) => members
                                .get((*ws, by))?
                                .map(|v| decode::<MemberInfo>(v.value(), "member"))
                                .transpose()?
                                .is_some_and(|m| {
                                    !m.removed
                                        && (proof.by == proof.member
                                            || m.of.as_deref() == Some(&proof.member))
                                }),
                            None => false,
                        };
                        let used_by = match code {
                            Some(code) => invites.get((*ws, code))?.map(|v| v.value()),
                            None => None,
                        };
                        if let Err(e) = proof.verify(ws, key) {
                            refuse(
                                RefusedCode::BadProof,
                                format!("the device proof is invalid: {e}"),
                            )
                        } else if proof.expires < now {
                            refuse(
                                RefusedCode::InviteExpired,
                                "the device code expired before this device registered with the relay: make a new one with `meridian device add` on a device already in the workspace",
                            )
                        } else if !by_ok {
                            refuse(
                                RefusedCode::BadProof,
                                "the device code was made by a device that is not that member's on this relay (never synced with it, or removed)",
                            )
                        } else if used_by.is_some_and(|k| k != *key) {
                            refuse(
                                RefusedCode::InviteUsed,
                                "this device code was already used by another device: each code adds one device; make a new one with `meridian device add`",
                            )
                        } else {
                            let member = MemberInfo {
                                invited_by: by.map(|k| serde_bytes::ByteBuf::from(k.to_vec())),
                                admitted: now,
                                removed: false,
                                of: Some(serde_bytes::ByteBuf::from(proof.member.clone())),
                            };
                            members.insert((*ws, *key), encode(&member).as_slice())?;
                            if let Some(code) = code {
                                invites.insert((*ws, code), *key)?;
                            }
                            Ok(())
                        }
                    }
                    (None, _) => refuse(
                        RefusedCode::NotMember,
                        "this device is not a member of the workspace on this relay: join with an invite code",
                    ),
                }
            }
        };
        if verdict.is_ok() {
            txn.commit()?;
        } else {
            txn.abort()?;
        }
        Ok(verdict)
    }

    /// The verdict for a device already admitted to a served workspace (`None` for any
    /// other), from a read transaction: every reconnection takes this path, and a write
    /// transaction would cost an fsync per connection (a reconnect storm would queue them in
    /// front of pushes).
    pub fn known_device(&self, ws: &Ws, key: &Key) -> Result<Option<Result<(), Refusal>>> {
        let txn = self.db.begin_read()?;
        if txn.open_table(WORKSPACES)?.get(ws)?.is_none() {
            return Ok(None);
        }
        let member: Option<MemberInfo> = txn
            .open_table(MEMBERS)?
            .get((*ws, *key))?
            .map(|v| decode(v.value(), "member"))
            .transpose()?;
        Ok(member.map(|member| admitted(&member)))
    }

    /// Marks a member (or a device) removed: the workspace's creator may remove anyone but
    /// themselves, and a member their own other devices. A member's removal is every one
    /// of their devices': those admitted here as theirs go with it, whether or not the
    /// remover's node knew of them. The keys removed (`member` first).
    pub fn revoke(
        &self,
        ws: &Ws,
        by: &Key,
        member: &Key,
        now: i64,
    ) -> Result<Result<Vec<Key>, String>> {
        let txn = self.begin_write()?;
        let result = {
            let workspaces = txn.open_table(WORKSPACES)?;
            let mut members = txn.open_table(MEMBERS)?;
            let info: Option<WorkspaceInfo> = workspaces
                .get(ws)?
                .map(|v| decode(v.value(), "workspace"))
                .transpose()?;
            let known = |key: &Key| -> Result<Option<MemberInfo>> {
                members
                    .get((*ws, *key))?
                    .map(|v| decode::<MemberInfo>(v.value(), "member"))
                    .transpose()
            };
            let revoker = known(by)?.filter(|revoker| !revoker.removed);
            // A member revokes one of their other devices: the target was admitted as the
            // member's device, and `by` is the member's first device or another of theirs.
            let sibling = match (known(member)?, &revoker) {
                (Some(target), Some(revoker)) => target.of.as_ref().is_some_and(|of| {
                    of.as_slice() == by.as_slice() || revoker.of.as_ref() == Some(of)
                }),
                _ => false,
            };
            // The creator removes members from their first device or any other admitted
            // here as theirs.
            let creator_key = info.as_ref().map(|info| info.creator.as_slice());
            let creator = creator_key.is_some_and(|creator| {
                creator == by.as_slice()
                    || revoker
                        .as_ref()
                        .and_then(|r| r.of.as_ref())
                        .is_some_and(|of| of.as_slice() == creator)
            });
            if !creator && !sibling {
                Err("only the workspace's creator can remove members, and a member only their own other devices".to_string())
            } else if member == by || creator_key == Some(member.as_slice()) {
                Err("the creator cannot remove themselves".to_string())
            } else {
                let existing: Option<MemberInfo> = members
                    .get((*ws, *member))?
                    .map(|v| decode(v.value(), "member"))
                    .transpose()?;
                // The creator asks again on every connection: only a new removal costs a
                // durable commit.
                let new = existing.as_ref().is_none_or(|m| !m.removed);
                let mut record = existing.unwrap_or(MemberInfo {
                    invited_by: None,
                    admitted: now,
                    removed: true,
                    of: None,
                });
                record.removed = true;
                members.insert((*ws, *member), encode(&record).as_slice())?;
                let mut removed = vec![*member];
                if record.of.is_none() {
                    let devices: Vec<(Key, MemberInfo)> = members
                        .range((*ws, [0; 32])..=(*ws, [0xff; 32]))?
                        .map(|item| {
                            let (k, v) = item?;
                            Ok((k.value().1, decode::<MemberInfo>(v.value(), "member")?))
                        })
                        .collect::<Result<Vec<_>>>()?
                        .into_iter()
                        .filter(|(_, m)| {
                            !m.removed && m.of.as_ref().is_some_and(|of| of.as_slice() == member)
                        })
                        .collect();
                    for (key, mut device) in devices {
                        device.removed = true;
                        members.insert((*ws, key), encode(&device).as_slice())?;
                        removed.push(key);
                    }
                }
                Ok((new || removed.len() > 1, removed))
            }
        };
        match result {
            Ok((true, _)) => txn.commit()?,
            _ => txn.abort()?,
        }
        Ok(result.map(|(_, removed)| removed))
    }

    /// Admits the members the workspace's creator `by` vouches for, one result each (all
    /// refused when `by` is not the creator, or names more than [`MAX_VOUCHES`]). The
    /// creator's node vouches for the members its copy of the workspace shows verified and
    /// not removed, with the invite proof of each: the relay checks that the proof is for
    /// that key, but not its expiry (the creator's word covers when the join happened),
    /// nor that the inviter is a member here (they may never have synced with this relay).
    /// A known device stays as it is (a removal is not undone), and an invite that admitted
    /// another device here refuses its vouchee.
    pub fn vouch(
        &self,
        ws: &Ws,
        by: &Key,
        vouchees: &[Vouchee],
        now: i64,
    ) -> Result<Vec<VouchResult>> {
        let creator = {
            let txn = self.db.begin_read()?;
            txn.open_table(WORKSPACES)?
                .get(ws)?
                .map(|v| decode::<WorkspaceInfo>(v.value(), "workspace"))
                .transpose()?
                .map(|info| info.creator)
        };
        let refuse_all = |reason: String| Ok(vec![VouchResult::Refused(reason); vouchees.len()]);
        if creator.is_none_or(|creator| creator != by) {
            return refuse_all("only the workspace's creator can vouch for members".into());
        }
        if vouchees.len() > MAX_VOUCHES {
            return refuse_all(format!(
                "a vouch names at most {MAX_VOUCHES} members, and this one names {}",
                vouchees.len()
            ));
        }
        // Signatures are checked before the write lock is taken.
        let checked: Vec<Result<(Key, Key, Key), String>> = vouchees
            .iter()
            .map(|vouchee| {
                let key: Key = vouchee
                    .key
                    .as_slice()
                    .try_into()
                    .map_err(|_| "a member key is 32 bytes".to_string())?;
                vouchee
                    .proof
                    .verify(ws, &key)
                    .map_err(|e| format!("the invite proof is invalid: {e}"))?;
                // `verify` took both keys as curve points, so they are 32 bytes.
                let invite: Key = vouchee
                    .proof
                    .invite_public
                    .as_slice()
                    .try_into()
                    .unwrap_or_default();
                let inviter: Key = vouchee
                    .proof
                    .inviter
                    .as_slice()
                    .try_into()
                    .unwrap_or_default();
                Ok((key, invite, inviter))
            })
            .collect();
        let txn = self.begin_write()?;
        let mut results = Vec::with_capacity(checked.len());
        let mut admitted_any = false;
        {
            let mut members = txn.open_table(MEMBERS)?;
            let mut invites = txn.open_table(INVITES)?;
            for check in checked {
                let (key, invite, inviter) = match check {
                    Ok(checked) => checked,
                    Err(reason) => {
                        results.push(VouchResult::Refused(reason));
                        continue;
                    }
                };
                if members.get((*ws, key))?.is_some() {
                    results.push(VouchResult::Known);
                    continue;
                }
                let inviter_removed = members
                    .get((*ws, inviter))?
                    .map(|v| decode::<MemberInfo>(v.value(), "member"))
                    .transpose()?
                    .is_some_and(|m| m.removed);
                if inviter_removed {
                    results.push(VouchResult::Refused(
                        "the member's inviter was removed from the workspace on this relay".into(),
                    ));
                    continue;
                }
                let used_by = invites.get((*ws, invite))?.map(|v| v.value());
                if used_by.is_some_and(|k| k != key) {
                    results.push(VouchResult::Refused(
                        "the member's invite already admitted another device on this relay".into(),
                    ));
                    continue;
                }
                let member = MemberInfo {
                    invited_by: Some(serde_bytes::ByteBuf::from(inviter.to_vec())),
                    admitted: now,
                    removed: false,
                    of: None,
                };
                members.insert((*ws, key), encode(&member).as_slice())?;
                invites.insert((*ws, invite), key)?;
                admitted_any = true;
                results.push(VouchResult::Admitted);
            }
        }
        if admitted_any {
            txn.commit()?;
        } else {
            txn.abort()?;
        }
        Ok(results)
    }

    /// Appends the envelopes of several pushes in one durable transaction (one fsync for
    /// all of them), deduplicating by hash. Each author must be an admitted member of the
    /// workspace when the transaction runs, and not removed unless another member
    /// forwards the envelope. Returns, per push, a result per
    /// envelope, and the entries that are new, for forwarding.
    pub fn append(&self, pushes: &[(Ws, Vec<Incoming>)]) -> Result<Vec<Appended>> {
        let txn = self.begin_write()?;
        let mut out = Vec::with_capacity(pushes.len());
        {
            let mut log = txn.open_table(LOG)?;
            let mut hashes = txn.open_table(HASHES)?;
            let mut first = txn.open_table(FIRST)?;
            let members = txn.open_table(MEMBERS)?;
            for (ws, envelopes) in pushes {
                let mut next = last_seq(&log, ws)? + 1;
                let mut appended = Appended::default();
                for incoming in envelopes {
                    if let Some(seq) = hashes.get((*ws, incoming.hash))? {
                        appended.results.push(PushResult::Duplicate(seq.value()));
                        continue;
                    }
                    let member: Option<MemberInfo> = members
                        .get((*ws, incoming.author))?
                        .map(|v| decode(v.value(), "member"))
                        .transpose()?;
                    match member {
                        Some(m) if !m.removed => {}
                        // A removed member's device is refused; what a member forwards
                        // of theirs is stored, for the nodes to take or refuse by the
                        // removal's lock.
                        Some(_) if incoming.forwarded => {}
                        Some(_) => {
                            appended.results.push(PushResult::Rejected(
                                "its author was removed from the workspace".into(),
                            ));
                            continue;
                        }
                        None => {
                            appended.results.push(PushResult::Rejected(
                                "its author is not a member of the workspace on this relay".into(),
                            ));
                            continue;
                        }
                    }
                    log.insert((*ws, next), incoming.bytes.as_slice())?;
                    hashes.insert((*ws, incoming.hash), next)?;
                    for doc in &incoming.docs {
                        if first.get((*ws, *doc))?.is_none() {
                            first.insert((*ws, *doc), next)?;
                        }
                    }
                    appended.results.push(PushResult::Stored(next));
                    appended.entries.push((next, incoming.bytes.clone()));
                    next += 1;
                }
                out.push(appended);
            }
        }
        txn.commit()?;
        Ok(out)
    }

    /// Reads entries after `after`, at most `max_entries` of them and about `max_bytes`
    /// (always at least one, when there is one).
    pub fn read(
        &self,
        ws: &Ws,
        after: u64,
        max_entries: usize,
        max_bytes: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>> {
        let mut plan = CatchUp::live();
        Ok(self
            .read_for(ws, after, &mut plan, max_entries, max_bytes)?
            .entries)
    }

    /// Reads the entries after `after` for a catch-up, at most `max_entries` of them and
    /// about `max_bytes` (always at least one, when there is one).
    ///
    /// A catch-up that starts with none of a document (its cursor is before the document's
    /// first entry) gets the document's snapshot, when there is one, at the position of that
    /// first entry, and skips the document's entries the snapshot covers. The snapshot used
    /// for a document is chosen once per catch-up, in `plan`, so a newer snapshot pushed
    /// meanwhile cannot make it skip entries the first one lacks.
    pub fn read_for(
        &self,
        ws: &Ws,
        after: u64,
        plan: &mut CatchUp,
        max_entries: usize,
        max_bytes: usize,
    ) -> Result<Read> {
        let txn = self.db.begin_read()?;
        let log = txn.open_table(LOG)?;
        let snapshots = txn.open_table(SNAPSHOTS)?;
        let first = txn.open_table(FIRST)?;
        let substitute = plan.since.is_some()
            && snapshots
                .range((*ws, [0; ID_LEN])..=(*ws, [0xff; ID_LEN]))?
                .next()
                .is_some();
        let mut read = Read {
            up_to: after,
            ..Read::default()
        };
        let mut bytes = 0;
        let mut examined = 0;
        for item in log.range((*ws, after.saturating_add(1))..=(*ws, u64::MAX))? {
            let (key, value) = item?;
            let seq = key.value().1;
            let value = value.value();
            if substitute && examined < MAX_EXAMINED {
                examined += 1;
                let docs = crate::envelope::peek_docs(value).unwrap_or_default();
                if let [doc] = docs[..]
                    && let Some(step) = plan.step(seq, doc, &first, &snapshots, ws)?
                {
                    match step {
                        Step::Skip => {
                            match read.skipped.last_mut() {
                                Some((_, end)) if *end + 1 == seq => *end = seq,
                                _ => read.skipped.push((seq, seq)),
                            }
                            read.up_to = seq;
                            continue;
                        }
                        Step::Replace(snapshot) => {
                            if !read.entries.is_empty()
                                && (read.entries.len() >= max_entries
                                    || bytes + snapshot.len() > max_bytes)
                            {
                                break;
                            }
                            bytes += snapshot.len();
                            read.entries.push((seq, snapshot));
                            read.up_to = seq;
                            plan.confirm(doc);
                            continue;
                        }
                    }
                } else if docs.len() > 1 && plan.covers_all(seq, &docs) {
                    match read.skipped.last_mut() {
                        Some((_, end)) if *end + 1 == seq => *end = seq,
                        _ => read.skipped.push((seq, seq)),
                    }
                    read.up_to = seq;
                    continue;
                }
            } else if substitute {
                // Enough examined for one call: the next call goes on from here.
                break;
            }
            if !read.entries.is_empty()
                && (read.entries.len() >= max_entries || bytes + value.len() > max_bytes)
            {
                break;
            }
            bytes += value.len();
            read.entries.push((seq, value.to_vec()));
            read.up_to = seq;
        }
        Ok(read)
    }

    /// Keeps a snapshot of a document, holding every entry of the document up to `covers`. Only the workspace creator's snapshots are kept: a member
    /// who gets one takes the changes in it on the snapshot's signature alone, so the
    /// signer must be the one every member already trusts with membership.
    pub fn put_snapshot(&self, ws: &Ws, snapshot: &Incoming, covers: u64) -> Result<PushResult> {
        let Incoming {
            author,
            docs,
            bytes,
            ..
        } = snapshot;
        let &[doc] = docs.as_slice() else {
            return Ok(PushResult::Rejected(
                "a snapshot is of one document, not a shared envelope".into(),
            ));
        };
        let doc = &doc;
        let txn = self.begin_write()?;
        let result = {
            let workspaces = txn.open_table(WORKSPACES)?;
            let log = txn.open_table(LOG)?;
            let first = txn.open_table(FIRST)?;
            let mut snapshots = txn.open_table(SNAPSHOTS)?;
            let creator = match workspaces.get(ws)? {
                Some(v) => decode::<WorkspaceInfo>(v.value(), "workspace")?.creator,
                None => Vec::new(),
            };
            let head = last_seq(&log, ws)?;
            let start = first.get((*ws, *doc))?.map(|v| v.value());
            let existing = snapshots
                .get((*ws, *doc))?
                .map(|v| decode::<Snapshot>(v.value(), "snapshot"))
                .transpose()?;
            if creator.as_slice() != author.as_slice() {
                PushResult::Rejected(
                    "only the workspace creator's snapshots are kept by the relay".into(),
                )
            } else if covers > head {
                PushResult::Rejected(format!(
                    "the snapshot says it covers log position {covers}, past the log's end ({head})"
                ))
            } else if start.is_none_or(|start| start > covers) {
                PushResult::Rejected(
                    "the snapshot covers none of the document's entries in this relay's log".into(),
                )
            } else if let Some(existing) = existing.filter(|e| e.covers >= covers) {
                PushResult::Duplicate(existing.covers)
            } else {
                let record = Snapshot {
                    covers,
                    envelope: serde_bytes::ByteBuf::from(bytes.to_vec()),
                };
                snapshots.insert((*ws, *doc), encode(&record).as_slice())?;
                PushResult::Stored(covers)
            }
        };
        if matches!(result, PushResult::Stored(_)) {
            txn.commit()?;
        } else {
            txn.abort()?;
        }
        Ok(result)
    }
}

/// The most log entries one catch-up read examines for snapshot substitution, so a long run
/// of skipped entries does not hold one read for long.
const MAX_EXAMINED: usize = 100_000;

/// A stored document snapshot.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Snapshot {
    /// The last log position whose entry of the document the snapshot holds.
    covers: u64,
    /// The sealed envelope.
    envelope: serde_bytes::ByteBuf,
}

/// What one catch-up read found.
#[derive(Debug, Default)]
pub struct Read {
    /// (sequence number, encoded envelope): log entries, and snapshots in place of a
    /// document's first entry.
    pub entries: Vec<(u64, Vec<u8>)>,
    /// Inclusive ranges of positions skipped because a snapshot sent holds their entries.
    pub skipped: Vec<(u64, u64)>,
    /// The last position this read accounted for (the `after` it was given when none).
    pub up_to: u64,
}

/// One catch-up's choice of snapshots: per document, the `covers` of the snapshot it sent.
#[derive(Debug, Default)]
pub struct CatchUp {
    /// The subscriber's cursor when it subscribed; `None` for a live subscriber falling
    /// behind, which gets plain entries.
    since: Option<u64>,
    /// Documents whose snapshot this catch-up sent, with what it covers.
    sent: std::collections::HashMap<Doc, u64>,
    /// Documents examined and found to need no snapshot.
    plain: std::collections::HashSet<Doc>,
    /// The snapshot chosen for a document at its first entry, until it goes out.
    pending: Option<(Doc, u64)>,
}

enum Step {
    Skip,
    Replace(Vec<u8>),
}

impl CatchUp {
    /// The catch-up after `Subscribe { after }`.
    pub fn subscribe(after: u64) -> CatchUp {
        CatchUp {
            since: Some(after),
            ..CatchUp::default()
        }
    }

    /// A live subscriber reading the log after falling behind: no substitution (it may
    /// have had a document's first entries live already).
    pub fn live() -> CatchUp {
        CatchUp::default()
    }

    fn step(
        &mut self,
        seq: u64,
        doc: Doc,
        first: &impl ReadableTable<(Ws, Doc), u64>,
        snapshots: &impl ReadableTable<(Ws, Doc), &'static [u8]>,
        ws: &Ws,
    ) -> Result<Option<Step>> {
        let Some(since) = self.since else {
            return Ok(None);
        };
        if let Some(covers) = self.sent.get(&doc) {
            return Ok((seq <= *covers).then_some(Step::Skip));
        }
        if self.plain.contains(&doc) {
            return Ok(None);
        }
        let start = first.get((*ws, doc))?.map(|v| v.value());
        let snapshot = match start {
            // The subscriber has none of the document, and this is its first entry.
            Some(start) if start > since && start == seq => snapshots
                .get((*ws, doc))?
                .map(|v| decode::<Snapshot>(v.value(), "snapshot"))
                .transpose()?,
            _ => None,
        };
        let Some(snapshot) = snapshot.filter(|s| s.covers >= seq) else {
            self.plain.insert(doc);
            return Ok(None);
        };
        self.pending = Some((doc, snapshot.covers));
        Ok(Some(Step::Replace(snapshot.envelope.into_vec())))
    }

    /// Whether the snapshots this catch-up sent hold every document of a shared envelope at
    /// `seq`, so the entry can be skipped. A shared envelope is never replaced by a
    /// snapshot: the documents it is the first entry of are sent plain from there on.
    fn covers_all(&mut self, seq: u64, docs: &[Doc]) -> bool {
        if self.since.is_none() {
            return false;
        }
        let mut all = true;
        for doc in docs {
            match self.sent.get(doc) {
                Some(covers) if seq <= *covers => {}
                Some(_) => all = false,
                None => {
                    self.plain.insert(*doc);
                    all = false;
                }
            }
        }
        all
    }

    /// The snapshot chosen for `doc` went into the read.
    fn confirm(&mut self, doc: Doc) {
        if let Some((pending, covers)) = self.pending.take()
            && pending == doc
        {
            self.sent.insert(doc, covers);
        }
    }
}

/// What one push appended.
#[derive(Debug, Default)]
pub struct Appended {
    /// One result per envelope of the push.
    pub results: Vec<PushResult>,
    /// The new entries: (sequence number, encoded envelope).
    pub entries: Vec<(u64, Vec<u8>)>,
}

fn last_seq(log: &impl ReadableTable<(Ws, u64), &'static [u8]>, ws: &Ws) -> Result<u64> {
    Ok(log
        .range((*ws, 0)..=(*ws, u64::MAX))?
        .next_back()
        .transpose()?
        .map(|(k, _)| k.value().1)
        .unwrap_or(0))
}
