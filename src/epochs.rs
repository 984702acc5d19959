//! Key epochs in the store; the pure rules and formats are [`crate::keyring`].
//!
//! A node keeps every keyring record of a workspace it has seen (table `keyring`), adopts
//! each once what it names has arrived (its parent epochs, the workspace-document heads of
//! its basis) and it passes the rules, and keeps the secrets it can open in the workspace
//! record ([`WorkspaceRecord::epochs`]), with the epoch it seals under
//! ([`WorkspaceRecord::sealing`]). An envelope sealed under an epoch it does not hold yet
//! waits in `held_epoch` until one of its records brings the key.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context, Result};
use automerge::{Automerge, ChangeHash, ReadDoc};
use ed25519_dalek::SigningKey;
use meridian_relay::Envelope;
use redb::{ReadableTable, ReadableTableMetadata, WriteTransaction};

use crate::doc::View;
use crate::id::Id;
use crate::ingest::Rejected;
use crate::keyring::{self, Candidate, EpochHash, Kind, Reason, Record, Refusal, Secret};
use crate::seal::EpochKey;
use crate::store::{self, HELD_EPOCH, KEYRING, WORKSPACES, WorkspaceRecord};

/// The most keyring records a node keeps (one per removal, repair or share: a team makes a
/// handful a year; a hostile member could make more).
pub const MAX_RECORDS: u64 = 10_000;

/// A keyring record as the store keeps it.
struct Kept {
    /// The envelope's hash (the table key).
    key: [u8; 32],
    adopted: bool,
    author: [u8; 32],
    record: Record,
    /// The epoch it starts (`Kind::Epoch`), the hash of its body.
    starts: Option<EpochHash>,
    envelope: Vec<u8>,
}

impl Kept {
    /// The epoch it starts or shares.
    fn epoch(&self) -> Option<EpochHash> {
        match &self.record.kind {
            Kind::Epoch { .. } => self.starts,
            Kind::Share { epoch } => epoch.as_slice().try_into().ok(),
        }
    }

    fn parents(&self) -> Vec<EpochHash> {
        match &self.record.kind {
            Kind::Epoch { parents, .. } => parents
                .iter()
                .filter_map(|p| p.as_slice().try_into().ok())
                .collect(),
            Kind::Share { .. } => Vec::new(),
        }
    }

    fn commit(&self) -> Option<[u8; 32]> {
        match &self.record.kind {
            Kind::Epoch { commit, .. } => commit.as_slice().try_into().ok(),
            Kind::Share { .. } => None,
        }
    }
}

/// Every keyring record of `workspace` the store keeps, in table order.
fn kept(txn: &WriteTransaction, workspace: Id) -> Result<Vec<Kept>> {
    kept_in(&txn.open_table(KEYRING)?, workspace)
}

fn kept_in(
    table: &impl ReadableTable<([u8; 16], [u8; 32]), &'static [u8]>,
    workspace: Id,
) -> Result<Vec<Kept>> {
    let mut all = Vec::new();
    for entry in table.range((workspace.0, [0; 32])..=(workspace.0, [0xff; 32]))? {
        let (key, value) = entry?;
        let value = value.value();
        let Some((&adopted, envelope)) = value.split_first() else {
            continue;
        };
        // Checked when it was received; a damaged row is passed over.
        let Ok(decoded) = Envelope::decode_stored(envelope) else {
            continue;
        };
        let Ok(record) = Record::decode(&decoded.ciphertext, workspace) else {
            continue;
        };
        let Ok(author) = decoded.author.as_slice().try_into() else {
            continue;
        };
        let starts = matches!(record.kind, Kind::Epoch { .. })
            .then(|| keyring::epoch_hash(&decoded.ciphertext));
        all.push(Kept {
            key: key.value().1,
            adopted: adopted == 1,
            author,
            record,
            starts,
            envelope: envelope.to_vec(),
        });
    }
    Ok(all)
}

/// Keeps a keyring record that arrived (its signature checked by the caller), to be
/// adopted by [`settle`]. Whether it is new; an error if it is malformed.
pub fn receive(txn: &WriteTransaction, workspace: Id, envelope: &Envelope) -> Result<bool> {
    Record::decode(&envelope.ciphertext, workspace)?;
    let encoded = envelope.encode();
    let key = (
        workspace.0,
        meridian_relay::envelope::content_hash(&encoded),
    );
    let mut table = txn.open_table(KEYRING)?;
    if table.get(key)?.is_some() {
        return Ok(false);
    }
    if table.len()? >= MAX_RECORDS {
        anyhow::bail!(
            "this node keeps {MAX_RECORDS} keyring records already, more than removals and newcomers make: the record was not kept"
        );
    }
    table.insert(key, [&[0][..], &encoded].concat().as_slice())?;
    Ok(true)
}

/// Every keyring record of `workspace` this node adopted, encoded, for a bundle: whoever
/// merges it needs them to open what it carries. None from a home written before keyring
/// records existed.
pub fn adopted_envelopes(txn: &redb::ReadTransaction, workspace: Id) -> Result<Vec<Vec<u8>>> {
    Ok(kept_read(txn, workspace)?
        .into_iter()
        .filter(|k| k.adopted)
        .map(|k| k.envelope)
        .collect())
}

/// What [`settle`] did.
#[derive(Debug, Default)]
pub struct Settled {
    /// Records refused for good (and dropped).
    pub refused: Vec<Rejected>,
}

/// Adopts what can be adopted of the kept keyring records, takes the secrets wrapped to
/// `device` (and their parents'), and chooses again what to seal under. Writes the
/// workspace record when anything changed.
pub fn settle(
    txn: &WriteTransaction,
    device: &SigningKey,
    workspace: Id,
    record: &mut WorkspaceRecord,
) -> Result<Settled> {
    let mut settled = Settled::default();
    let before = (record.sealing.clone(), record.epochs.clone());
    let mut all = kept(txn, workspace)?;
    let first = first_hash(workspace, record)?;
    // The secrets first: the workspace changes a record's rules are checked against may
    // be sealed under the epochs they open.
    take_secrets(device, workspace, record, &all, first)?;
    let mut adopted_any = false;
    let doc = if all.iter().any(|k| !k.adopted) {
        // A workspace change sealed under an epoch not held yet leaves every record
        // waiting, to be tried again when more arrives.
        workspace_document(txn, workspace, record).ok()
    } else {
        None
    };
    if let Some(doc) = doc {
        let mut dropped = BTreeSet::new();
        loop {
            let mut progress = false;
            let known: BTreeSet<EpochHash> = all
                .iter()
                .filter(|k| k.adopted)
                .filter_map(|k| k.starts)
                .collect();
            for kept in all.iter_mut().filter(|k| !k.adopted) {
                match check(kept, &known, first, &doc, record) {
                    Ok(()) => {
                        kept.adopted = true;
                        mark_adopted(txn, workspace, kept)?;
                        adopted_any = true;
                        progress = true;
                    }
                    Err(Refusal::Waiting(_)) => {}
                    Err(Refusal::Broken(reason)) => {
                        dropped.insert(kept.key);
                        txn.open_table(KEYRING)?.remove((workspace.0, kept.key))?;
                        settled.refused.push(Rejected {
                            doc: hex::encode(meridian_relay::envelope::KEYRING_DOC),
                            signer: hex::encode(kept.author),
                            reason: format!("a keyring record was refused: {reason}"),
                        });
                    }
                }
            }
            all.retain(|k| !dropped.contains(&k.key));
            if !progress {
                break;
            }
        }
    }
    if adopted_any {
        // Wraps in the records just adopted.
        take_secrets(device, workspace, record, &all, first)?;
    }
    let adopted: Vec<&Kept> = all.iter().filter(|k| k.adopted).collect();
    record.sealing = choice(record, &adopted);
    if before != (record.sealing.clone(), record.epochs.clone()) {
        put_record(txn, workspace, record)?;
    }
    Ok(settled)
}

/// Chooses again what to seal under after the workspace state changed (a removal arrived):
/// no record is adopted here.
pub fn rechoose(txn: &WriteTransaction, workspace: Id, record: &mut WorkspaceRecord) -> Result<()> {
    let all = kept(txn, workspace)?;
    let adopted: Vec<&Kept> = all.iter().filter(|k| k.adopted).collect();
    record.sealing = choice(record, &adopted);
    Ok(())
}

fn first_hash(workspace: Id, record: &WorkspaceRecord) -> Result<EpochHash> {
    let key: Secret = record
        .key
        .as_slice()
        .try_into()
        .context("the workspace key is damaged")?;
    Ok(keyring::first_epoch(workspace, &key))
}

fn put_record(txn: &WriteTransaction, workspace: Id, record: &WorkspaceRecord) -> Result<()> {
    txn.open_table(WORKSPACES)?
        .insert(workspace.0, store::encode(record).as_slice())?;
    Ok(())
}

fn mark_adopted(txn: &WriteTransaction, workspace: Id, kept: &Kept) -> Result<()> {
    txn.open_table(KEYRING)?.insert(
        (workspace.0, kept.key),
        [&[1][..], &kept.envelope].concat().as_slice(),
    )?;
    Ok(())
}

/// The workspace document as this node has it.
fn workspace_document(
    txn: &WriteTransaction,
    workspace: Id,
    record: &WorkspaceRecord,
) -> Result<Automerge> {
    Ok(crate::node::load_doc(
        &txn.open_table(store::RECORDS)?,
        &txn.open_table(store::CHECKPOINTS)?,
        record,
        workspace,
        workspace,
    )?
    .doc)
}

/// The rules a record must pass to be adopted, given the adopted epochs (`known`).
fn check(
    kept: &Kept,
    known: &BTreeSet<EpochHash>,
    first: EpochHash,
    doc: &Automerge,
    record: &WorkspaceRecord,
) -> std::result::Result<(), Refusal> {
    match &kept.record.kind {
        Kind::Epoch { basis, .. } => {
            if let Some(parent) = kept
                .parents()
                .into_iter()
                .find(|p| *p != first && !known.contains(p))
            {
                return Err(Refusal::Waiting(format!(
                    "epoch {}",
                    hex::encode(&parent[..8])
                )));
            }
            let heads: Vec<ChangeHash> = basis
                .iter()
                .filter_map(|h| Some(ChangeHash(h.as_slice().try_into().ok()?)))
                .collect();
            if heads.iter().any(|h| doc.get_change_by_hash(h).is_none()) {
                return Err(Refusal::Waiting("workspace changes".into()));
            }
            let at = doc
                .fork_at(&heads)
                .map_err(|e| Refusal::Broken(e.to_string()))?;
            let state = crate::workspace::read_state(View::now(&at), &record.creator);
            keyring::check_epoch(&kept.record, &kept.author, &state, &record.creator)
        }
        Kind::Share { epoch } => {
            let epoch: EpochHash = epoch
                .as_slice()
                .try_into()
                .map_err(|_| Refusal::Broken("a malformed epoch".into()))?;
            if !known.contains(&epoch) {
                return Err(Refusal::Waiting(format!(
                    "epoch {}",
                    hex::encode(&epoch[..8])
                )));
            }
            let author = hex::encode(kept.author);
            if record.state.removal(&author, &record.creator).is_some() {
                return Err(Refusal::Broken(format!(
                    "a key was shared by {}, who was removed",
                    record.state.name_of(&author)
                )));
            }
            if record
                .state
                .member(&author)
                .is_some_and(|m| m.devices.iter().any(|d| d.key == author && !d.active()))
            {
                return Err(Refusal::Broken(format!(
                    "a key was shared by a device of {}'s that was revoked",
                    record.state.name_of(&author)
                )));
            }
            // A member this node has not seen verified yet may be one: wait for their entry.
            if record.state.active_device_member(&author).is_none() {
                return Err(Refusal::Waiting(format!(
                    "the membership of {}",
                    record.state.name_of(&author)
                )));
            }
            Ok(())
        }
    }
}

/// Takes the secrets wrapped to this device, and walks each epoch it holds back to the
/// first through the parents' secrets its record carries. An epoch's hash pins its record
/// (and the parents it names), and each record commits to its secret, so a secret that
/// matches the commitment is the epoch's whoever handed it over: it opens what was sealed
/// under it before the record is adopted. A newcomer needs that to read the workspace
/// changes the records' rules are checked against (an invite's epoch, or a share by a
/// device whose own entry was sealed under the epoch it shares). A secret that reached
/// this device only through records not adopted yet is kept `unchecked`: nothing is sealed
/// under it until its epoch's record is adopted.
fn take_secrets(
    device: &SigningKey,
    workspace: Id,
    record: &mut WorkspaceRecord,
    all: &[Kept],
    first: EpochHash,
) -> Result<()> {
    let starts: BTreeMap<EpochHash, &Kept> =
        all.iter().filter_map(|k| Some((k.starts?, k))).collect();
    // Each held secret, and whether it is unchecked.
    let mut held: BTreeMap<EpochHash, (Secret, bool)> = record
        .epochs
        .iter()
        .filter_map(|e| e.pair().map(|(hash, secret)| (hash, (secret, e.unchecked))))
        .collect();
    // Adopted records first, so that a secret they give is checked.
    let mut ordered: Vec<&Kept> = all.iter().collect();
    ordered.sort_by_key(|k| !k.adopted);
    for kept in ordered {
        let Some(epoch) = kept.epoch() else { continue };
        if held
            .get(&epoch)
            .is_some_and(|(_, unchecked)| !unchecked || !kept.adopted)
        {
            continue;
        }
        let Some(commit) = starts.get(&epoch).and_then(|k| k.commit()) else {
            continue;
        };
        // A wrap that does not open, or opens to a secret other than the epoch's, is
        // passed over: another record may carry a good one.
        if let Some(Ok(secret)) = kept.record.unwrap_for(device, &commit) {
            held.insert(epoch, (secret, !kept.adopted));
        }
    }
    let mut queue: Vec<EpochHash> = held.keys().copied().collect();
    while let Some(epoch) = queue.pop() {
        let (Some(kept), Some((secret, unchecked))) =
            (starts.get(&epoch), held.get(&epoch).copied())
        else {
            continue;
        };
        let Ok(parents) = keyring::open_parents(workspace, &secret, &kept.record) else {
            continue;
        };
        for (parent, parent_secret) in parents {
            if parent == first || held.get(&parent).is_some_and(|(_, u)| *u <= unchecked) {
                continue;
            }
            let committed = starts.get(&parent).and_then(|k| k.commit());
            if committed == Some(keyring::commit(workspace, &parent_secret)) {
                held.insert(parent, (parent_secret, unchecked));
                queue.push(parent);
            }
        }
    }
    let depths = depths(&starts, first);
    record.epochs = held
        .into_iter()
        .map(|(hash, (secret, unchecked))| EpochKey {
            hash: hash.to_vec(),
            secret: secret.to_vec(),
            depth: depths.get(&hash).copied().unwrap_or(1),
            unchecked,
        })
        .collect();
    Ok(())
}

/// Each adopted epoch's distance from the first: one more than its deepest parent.
fn depths(starts: &BTreeMap<EpochHash, &Kept>, first: EpochHash) -> BTreeMap<EpochHash, u32> {
    fn depth(
        epoch: EpochHash,
        starts: &BTreeMap<EpochHash, &Kept>,
        first: EpochHash,
        memo: &mut BTreeMap<EpochHash, u32>,
        guard: usize,
    ) -> u32 {
        if epoch == first || guard > starts.len() {
            return 0;
        }
        if let Some(d) = memo.get(&epoch) {
            return *d;
        }
        let d = 1 + starts.get(&epoch).map_or(0, |k| {
            k.parents()
                .into_iter()
                .map(|p| depth(p, starts, first, memo, guard + 1))
                .max()
                .unwrap_or(0)
        });
        memo.insert(epoch, d);
        d
    }
    let mut memo = BTreeMap::new();
    for epoch in starts.keys() {
        depth(*epoch, starts, first, &mut memo, 0);
    }
    memo
}

/// Every device each epoch's secret went to, by its record and the shares of it: the
/// devices wrapped to, and each record's author, who held the secret to wrap it.
fn recipients_of(adopted: &[&Kept]) -> BTreeMap<EpochHash, BTreeSet<[u8; 32]>> {
    let mut all: BTreeMap<EpochHash, BTreeSet<[u8; 32]>> = BTreeMap::new();
    for kept in adopted {
        if let Some(epoch) = kept.epoch() {
            let reached = all.entry(epoch).or_default();
            reached.extend(kept.record.devices());
            reached.insert(kept.author);
        }
    }
    all
}

fn choice(record: &WorkspaceRecord, adopted: &[&Kept]) -> keyring::Sealing {
    let recipients = recipients_of(adopted);
    let empty = BTreeSet::new();
    let adopted_starts: BTreeSet<EpochHash> = adopted.iter().filter_map(|k| k.starts).collect();
    let hashes: Vec<(EpochHash, u32)> = record
        .epochs
        .iter()
        .filter_map(|e| Some((e.hash.as_slice().try_into().ok()?, e.depth, e.unchecked)))
        .filter(|(hash, _, unchecked)| !unchecked || adopted_starts.contains(hash))
        .map(|(hash, depth, _)| (hash, depth))
        .collect();
    let candidates: Vec<Candidate<'_>> = hashes
        .iter()
        .map(|(hash, depth)| Candidate {
            hash,
            depth: *depth,
            recipients: recipients.get(hash).unwrap_or(&empty),
        })
        .collect();
    keyring::choose(&candidates, &keyring::removed_devices(&record.state))
}

/// The epochs this node holds that no other epoch it holds follows (the first epoch when
/// it holds no other), with their secrets.
fn tips(
    txn: &WriteTransaction,
    workspace: Id,
    record: &WorkspaceRecord,
) -> Result<Vec<(EpochHash, Secret, u32)>> {
    let all = kept(txn, workspace)?;
    let followed: BTreeSet<EpochHash> = all
        .iter()
        .filter(|k| k.adopted)
        .flat_map(|k| k.parents())
        .collect();
    let mut tips: Vec<(EpochHash, Secret, u32)> = record
        .epochs
        .iter()
        .filter_map(|e| e.pair().map(|(hash, secret)| (hash, secret, e.depth)))
        .filter(|(hash, _, _)| !followed.contains(hash))
        .collect();
    if tips.is_empty() {
        let key: Secret = record
            .key
            .as_slice()
            .try_into()
            .context("the workspace key is damaged")?;
        tips.push((keyring::first_epoch(workspace, &key), key, 0));
    }
    Ok(tips)
}

/// Starts an epoch for `reason` in the caller's transaction, after every epoch this node
/// holds that nothing follows, for the members of `record`'s state (which must be the
/// workspace document's at `basis`), and seals under it from now on. Its record goes to the
/// outbox like an edit.
pub fn start(
    txn: &WriteTransaction,
    device: &SigningKey,
    workspace: Id,
    record: &mut WorkspaceRecord,
    reason: Reason,
    basis: &[ChangeHash],
) -> Result<EpochHash> {
    let tips = tips(txn, workspace, record)?;
    let parents: Vec<(EpochHash, Secret)> = tips.iter().map(|(h, s, _)| (*h, *s)).collect();
    let depth = 1 + tips.iter().map(|t| t.2).max().unwrap_or(0);
    let basis: Vec<[u8; 32]> = basis.iter().map(|h| h.0).collect();
    let recipients = keyring::recipients(&record.state);
    let new = keyring::new_epoch(workspace, &parents, &basis, reason, &recipients)?;
    publish(txn, device, workspace, new.body, true)?;
    record.epochs.push(EpochKey {
        hash: new.hash.to_vec(),
        secret: new.secret.to_vec(),
        depth,
        unchecked: false,
    });
    rechoose(txn, workspace, record)?;
    put_record(txn, workspace, record)?;
    Ok(new.hash)
}

/// Signs a record, keeps it as adopted and puts it in the outbox.
fn publish(
    txn: &WriteTransaction,
    device: &SigningKey,
    workspace: Id,
    body: Vec<u8>,
    adopted: bool,
) -> Result<()> {
    let encoded = Envelope::sign_keyring(device, workspace.0, body).encode();
    let key = (
        workspace.0,
        meridian_relay::envelope::content_hash(&encoded),
    );
    txn.open_table(KEYRING)?.insert(
        key,
        [&[u8::from(adopted)][..], &encoded].concat().as_slice(),
    )?;
    crate::node::append_outbox(txn, workspace, &encoded)
}

/// Wraps each epoch this node holds that nothing follows to the current members' devices
/// it has not reached (a member who joined after it was started): one share record per
/// epoch. How many records were published.
pub fn share_missing(
    txn: &WriteTransaction,
    device: &SigningKey,
    workspace: Id,
    record: &WorkspaceRecord,
) -> Result<usize> {
    if record.epochs.is_empty() {
        return Ok(0);
    }
    let me = hex::encode(device.verifying_key().to_bytes());
    if !record.state.active_members().any(|m| m.keys.contains(&me)) {
        return Ok(0);
    }
    let all = kept(txn, workspace)?;
    let adopted: Vec<&Kept> = all.iter().filter(|k| k.adopted).collect();
    let reached = recipients_of(&adopted);
    let current = keyring::recipients(&record.state);
    let mut published = 0;
    for (epoch, secret, _) in tips(txn, workspace, record)? {
        if record.epochs.iter().all(|e| e.hash != epoch) {
            continue;
        }
        let own = device.verifying_key().to_bytes();
        let missing: BTreeMap<[u8; 32], [u8; 32]> = current
            .iter()
            .filter(|(other, _)| **other != own)
            .filter(|(other, _)| reached.get(&epoch).is_none_or(|r| !r.contains(*other)))
            .map(|(d, e)| (*d, *e))
            .collect();
        if missing.is_empty() {
            continue;
        }
        let body = keyring::share(workspace, &epoch, &secret, &missing)?;
        publish(txn, device, workspace, body, true)?;
        published += 1;
    }
    Ok(published)
}

/// Keeps an envelope sealed under an epoch this node does not hold yet.
pub fn hold(txn: &WriteTransaction, workspace: Id, envelope: &[u8]) -> Result<()> {
    let mut table = txn.open_table(HELD_EPOCH)?;
    if table.len()? >= crate::ingest::MAX_HELD {
        anyhow::bail!(
            "more than {} envelopes wait for a key this device has not received",
            crate::ingest::MAX_HELD
        );
    }
    let next = crate::node::next_seq(&table, workspace.0)?;
    table.insert((workspace.0, next), envelope)?;
    Ok(())
}

/// The envelopes held for an epoch, with their positions.
pub fn held(txn: &WriteTransaction, workspace: Id) -> Result<Vec<(u64, Vec<u8>)>> {
    let table = txn.open_table(HELD_EPOCH)?;
    let mut held = Vec::new();
    for entry in table.range((workspace.0, 0)..=(workspace.0, u64::MAX))? {
        let (key, value) = entry?;
        held.push((key.value().1, value.value().to_vec()));
    }
    Ok(held)
}

/// Drops held envelopes (that opened).
pub fn release(txn: &WriteTransaction, workspace: Id, positions: &[u64]) -> Result<()> {
    let mut table = txn.open_table(HELD_EPOCH)?;
    for position in positions {
        table.remove((workspace.0, *position))?;
    }
    Ok(())
}

/// Whether `workspace` has no keyring record and no envelope held for a key here: nobody
/// was ever removed, and there is nothing to settle (checked before a write transaction).
pub fn untouched(txn: &redb::ReadTransaction, workspace: Id) -> Result<bool> {
    let records = match txn.open_table(KEYRING) {
        Ok(table) => table
            .range((workspace.0, [0; 32])..=(workspace.0, [0xff; 32]))?
            .next()
            .is_none(),
        Err(redb::TableError::TableDoesNotExist(_)) => true,
        Err(e) => return Err(e.into()),
    };
    Ok(records && held_count(txn, workspace)? == 0)
}

/// [`kept`] in a read transaction; none from a home written before keyring records existed.
fn kept_read(txn: &redb::ReadTransaction, workspace: Id) -> Result<Vec<Kept>> {
    match txn.open_table(KEYRING) {
        Ok(table) => kept_in(&table, workspace),
        Err(redb::TableError::TableDoesNotExist(_)) => Ok(Vec::new()),
        Err(e) => Err(e.into()),
    }
}

/// How many envelopes of `workspace` wait for a key.
fn held_count(txn: &redb::ReadTransaction, workspace: Id) -> Result<usize> {
    match txn.open_table(HELD_EPOCH) {
        Ok(table) => Ok(table
            .range((workspace.0, 0)..=(workspace.0, u64::MAX))?
            .count()),
        Err(redb::TableError::TableDoesNotExist(_)) => Ok(0),
        Err(e) => Err(e.into()),
    }
}

/// Starts a repair epoch when this node has nothing safe to seal under (concurrent
/// removals, a removal made by an older build, or one whose epoch has not reached it yet):
/// any current member may, and the deterministic choice makes every node agree on one.
pub fn repair(
    txn: &WriteTransaction,
    device: &SigningKey,
    workspace: Id,
    record: &mut WorkspaceRecord,
) -> Result<()> {
    let me = hex::encode(device.verifying_key().to_bytes());
    if let Some(removal) = record.state.removal(&me, &record.creator) {
        crate::fail!(
            Refused,
            "{} removed you from this workspace: nothing you write here reaches its members",
            record.state.name_of(&removal.by)
        );
    }
    if let Some(member) = record
        .state
        .member(&me)
        .filter(|m| m.devices.iter().any(|d| d.key == me && !d.active()))
    {
        crate::fail!(
            Refused,
            "this device was revoked from {}'s devices in this workspace: nothing it writes here reaches the members",
            member.name
        );
    }
    if record.state.active_device_member(&me).is_none() {
        // A newcomer whose membership this node has not seen verified yet (an invite made
        // before a removal) may not start an epoch, and its first entry must reach the
        // members who will verify it and wrap it the current key: the workspace key it
        // was given, as before any removal (ARCHITECTURE.md, the window).
        record.sealing = keyring::Sealing::First;
        return Ok(());
    }
    let doc = workspace_document(txn, workspace, record)?;
    start(
        txn,
        device,
        workspace,
        record,
        Reason::Repair,
        &doc.get_heads(),
    )?;
    Ok(())
}

/// One keyring record as a node keeps it, for inspection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordStatus {
    /// The epoch it starts or shares (hash).
    pub epoch: Option<EpochHash>,
    /// Whether it starts an epoch (else it shares one).
    pub starts: bool,
    /// Whether it was checked and adopted.
    pub adopted: bool,
    /// Its signer's device key.
    pub author: [u8; 32],
    /// The devices it wraps to.
    pub devices: Vec<[u8; 32]>,
    /// Why the epoch was started (`None` for a share).
    pub reason: Option<Reason>,
}

/// What a node holds of a workspace's keys: `meridian workspace keys`.
#[derive(Clone, Debug)]
pub struct Keys {
    /// Every epoch this node knows of (its records, oldest first as adopted), with whether
    /// this device holds its secret.
    pub epochs: Vec<EpochStatus>,
    /// What it seals under.
    pub sealing: keyring::Sealing,
    /// Keyring records not adopted yet.
    pub waiting_records: usize,
    /// Envelopes held for a key this device has not received.
    pub waiting_envelopes: usize,
}

/// One epoch as [`Keys`] lists it.
#[derive(Clone, Debug)]
pub struct EpochStatus {
    /// Its hash.
    pub hash: EpochHash,
    /// Who started it (device key).
    pub author: [u8; 32],
    /// Why.
    pub reason: Reason,
    /// Every device its secret reached, by its record and the shares of it.
    pub devices: usize,
    /// Whether this device holds its secret.
    pub held: bool,
    /// Whether it was checked and adopted.
    pub adopted: bool,
}

/// What this node holds of `workspace`'s keys.
pub fn keys(txn: &redb::ReadTransaction, workspace: Id, record: &WorkspaceRecord) -> Result<Keys> {
    let all = records(txn, workspace)?;
    let mut epochs: Vec<EpochStatus> = Vec::new();
    for status in all.iter().filter(|s| s.starts) {
        let (Some(hash), Some(reason)) = (status.epoch, status.reason.clone()) else {
            continue;
        };
        let reached: BTreeSet<[u8; 32]> = all
            .iter()
            .filter(|s| s.epoch == Some(hash))
            .flat_map(|s| s.devices.iter().copied())
            .collect();
        epochs.push(EpochStatus {
            hash,
            author: status.author,
            reason,
            devices: reached.len(),
            held: record.epochs.iter().any(|e| e.hash == hash),
            adopted: status.adopted,
        });
    }
    let depth = |hash: &EpochHash| {
        record
            .epochs
            .iter()
            .find(|e| e.hash == hash)
            .map_or(0, |e| e.depth)
    };
    epochs.sort_by_key(|e| (std::cmp::Reverse(depth(&e.hash)), e.hash));
    let waiting_envelopes = held_count(txn, workspace)?;
    Ok(Keys {
        epochs,
        sealing: record.sealing.clone(),
        waiting_records: all.iter().filter(|s| !s.adopted).count(),
        waiting_envelopes,
    })
}

/// Every keyring record of `workspace` this node keeps.
pub fn records(txn: &redb::ReadTransaction, workspace: Id) -> Result<Vec<RecordStatus>> {
    Ok(kept_read(txn, workspace)?
        .into_iter()
        .map(|k| RecordStatus {
            epoch: k.epoch(),
            starts: k.starts.is_some(),
            adopted: k.adopted,
            author: k.author,
            devices: k.record.devices().collect(),
            reason: match &k.record.kind {
                Kind::Epoch { reason, .. } => Some(reason.clone()),
                Kind::Share { .. } => None,
            },
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_epochs_author_counts_among_the_devices_it_reached() {
        let workspace = Id([5; 16]);
        let bo = [2; 32];
        let laptop = [4; 32];
        let recipients: BTreeMap<[u8; 32], [u8; 32]> = [(bo, [3; 32])].into();
        let first = (keyring::first_epoch(workspace, &[9; 32]), [9; 32]);
        let new = keyring::new_epoch(workspace, &[first], &[[7; 32]], Reason::Repair, &recipients)
            .unwrap();
        let kept = Kept {
            key: [0; 32],
            adopted: true,
            author: laptop,
            record: Record::decode(&new.body, workspace).unwrap(),
            starts: Some(new.hash),
            envelope: Vec::new(),
        };
        let reached = &recipients_of(&[&kept])[&new.hash];
        assert!(reached.contains(&bo), "the device wrapped to");
        assert!(
            reached.contains(&laptop),
            "the author held the secret: revoked, the epoch is not sealed under"
        );
    }
}
