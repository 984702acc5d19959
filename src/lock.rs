//! Removals that hold: which of a removed member's changes every replica still takes.
//!
//! When the creator removes a member it records, in the same change, what it had of
//! them: per document, per actor of theirs (a device and one of its incarnations), the
//! highest change `seq` it held. An actor's changes to a document form a chain, so "seq at
//! most N" is exactly "an ancestor of the heads the remover had seen" for that writer.
//! Every replica then takes a change of theirs only if it is within that record (a *lock*,
//! Keyhive's "whiteout" by causality), whatever carried it: a relay that missed the
//! removal, a bundle, a snapshot another member made.
//!
//! One exception keeps replicas converging: a change beyond the lock that another,
//! not-removed writer's change depends on is taken with it. A member whose node applied
//! the change before it heard of the removal has built on it, or endorses it (an empty
//! change on top, [`unendorsed_heads`]) when the removal reaches it; refusing it anywhere
//! would leave that member's later changes waiting for ever and split the document. This
//! is the integrity window, the mirror of the confidentiality one: what reached a member
//! before the removal did stays; what reaches them after is refused.
//!
//! Pure: no IO, no clock.

use std::collections::{BTreeMap, HashMap, HashSet};

use anyhow::{Context, Result, bail};
use automerge::{ActorId, Automerge, Change, ChangeHash};
use serde::{Deserialize, Serialize};

use crate::id::Id;
use crate::workspace::WorkspaceState;

/// The most bytes a lock may take in the workspace document: a removed member who wrote in
/// 50,000 documents from 4 devices each fits, and decoding one is bounded by it.
pub const MAX_LOCK_BYTES: usize = 8 << 20;

/// What the remover had of a removed member: per document and actor, the last `seq`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Lock {
    seen: BTreeMap<(Id, ActorId), u64>,
}

/// The wire form (CBOR, in the creator's member entry: PROTOCOL.md "Removals that hold").
#[derive(Serialize, Deserialize)]
struct Wire {
    /// Format version, 1.
    v: u8,
    docs: Vec<WireDoc>,
}

#[derive(Serialize, Deserialize)]
struct WireDoc {
    #[serde(with = "serde_bytes")]
    doc: Vec<u8>,
    actors: Vec<WireActor>,
}

#[derive(Serialize, Deserialize)]
struct WireActor {
    #[serde(with = "serde_bytes")]
    actor: Vec<u8>,
    seq: u64,
}

impl Lock {
    /// Adds what `doc` holds of the writers whose device keys are `keys`.
    pub fn add_document(&mut self, doc_id: Id, doc: &Automerge, keys: &HashSet<[u8; 32]>) {
        for meta in doc.get_changes_meta(&[]) {
            let Some(key) = crate::identity::actor_key(&meta.actor) else {
                continue;
            };
            if !keys.contains(&key) {
                continue;
            }
            let seq = self
                .seen
                .entry((doc_id, meta.actor.into_owned()))
                .or_default();
            *seq = (*seq).max(meta.seq);
        }
    }

    /// Whether the remover had the change `seq` of `actor` in `doc`.
    pub fn holds(&self, doc: Id, actor: &ActorId, seq: u64) -> bool {
        self.seen
            .get(&(doc, actor.clone()))
            .is_some_and(|last| seq <= *last)
    }

    /// How many (document, actor) pairs it names.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// Whether it names nothing (the remover had no change of theirs).
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    /// The bytes written in the workspace document.
    pub fn encode(&self) -> Vec<u8> {
        let mut docs: Vec<WireDoc> = Vec::new();
        for ((doc, actor), seq) in &self.seen {
            let wire = WireActor {
                actor: actor.to_bytes().to_vec(),
                seq: *seq,
            };
            match docs.last_mut() {
                Some(last) if last.doc == doc.0 => last.actors.push(wire),
                _ => docs.push(WireDoc {
                    doc: doc.0.to_vec(),
                    actors: vec![wire],
                }),
            }
        }
        crate::store::encode(&Wire { v: 1, docs })
    }

    /// Reads a lock from the workspace document's bytes.
    pub fn decode(bytes: &[u8]) -> Result<Lock> {
        if bytes.len() > MAX_LOCK_BYTES {
            bail!(
                "a removal's record is {} bytes, more than the limit of {MAX_LOCK_BYTES}",
                bytes.len()
            );
        }
        let wire: Wire = meridian_relay::cbor::from_slice(bytes)
            .map_err(|e| anyhow::anyhow!("a removal's record is damaged: {e}"))?;
        if wire.v != 1 {
            bail!(
                "a removal's record is of version {}, which this meridian does not read: upgrade meridian",
                wire.v
            );
        }
        let mut seen = BTreeMap::new();
        for doc in wire.docs {
            let doc_id = Id::from_slice(&doc.doc)
                .context("a removal's record names a damaged document id")?;
            for actor in doc.actors {
                seen.insert((doc_id, ActorId::from(actor.actor)), actor.seq);
            }
        }
        Ok(Lock { seen })
    }
}

/// The removed members whose removal holds, by device key: who they are, and the lock
/// (`None` when the record does not decode: then nothing of theirs beyond what a replica
/// already has is taken).
#[derive(Clone, Debug, Default)]
pub struct Locks {
    by_key: HashMap<[u8; 32], (String, Option<std::sync::Arc<Lock>>)>,
    /// The keys of revoked devices (the rest are removed members').
    revoked: std::collections::HashSet<[u8; 32]>,
}

impl Locks {
    /// The locks of a workspace's removed members. A removal made by a build from before
    /// locks has none, and that member's changes are taken as before (ARCHITECTURE.md).
    pub fn of(state: &WorkspaceState) -> Locks {
        let mut by_key = HashMap::new();
        let mut revoked = std::collections::HashSet::new();
        // A revoked device: what the device that revoked it had of it.
        for member in state.members.iter().filter(|m| m.verified) {
            for device in member.devices.iter().filter(|d| !d.active()) {
                let lock = device
                    .lock
                    .as_deref()
                    .and_then(|bytes| Lock::decode(bytes).ok())
                    .map(std::sync::Arc::new);
                if let Ok(key) = <[u8; 32]>::try_from(hex::decode(&device.key).unwrap_or_default())
                {
                    by_key.insert(key, (member.id.clone(), lock));
                    revoked.insert(key);
                }
            }
        }
        for member in state.members.iter().filter(|m| m.removed && m.verified) {
            let Some(bytes) = &member.lock else {
                continue;
            };
            let lock = Lock::decode(bytes).ok().map(std::sync::Arc::new);
            for key in &member.keys {
                if let Ok(key) = <[u8; 32]>::try_from(hex::decode(key).unwrap_or_default()) {
                    by_key.insert(key, (member.id.clone(), lock.clone()));
                }
            }
        }
        Locks { by_key, revoked }
    }

    /// Whether this change's writer is a revoked device (not a removed member).
    pub fn is_revoked_device(&self, actor: &ActorId) -> bool {
        crate::identity::actor_key(actor).is_some_and(|key| self.revoked.contains(&key))
    }

    /// Whether no removal holds anything: nothing to check.
    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    /// The removed member (id) whose change this is, when it is beyond their lock.
    pub fn late(&self, doc: Id, actor: &ActorId, seq: u64) -> Option<&str> {
        let key = crate::identity::actor_key(actor)?;
        let (member, lock) = self.by_key.get(&key)?;
        let held = lock.as_ref().is_some_and(|l| l.holds(doc, actor, seq));
        (!held).then_some(member.as_str())
    }
}

/// The changes among `fresh` (new to a replica of `doc`) that the removals refuse: beyond
/// a removed member's lock, and not an ancestor, within `fresh`, of a change that is not
/// itself refused. With who wrote each (member id).
pub fn refused<'a>(locks: &Locks, doc: Id, fresh: &[&'a Change]) -> Vec<(&'a Change, String)> {
    if locks.is_empty() {
        return Vec::new();
    }
    let late: HashMap<ChangeHash, (&Change, &str)> = fresh
        .iter()
        .filter_map(|c| Some((c.hash(), (*c, locks.late(doc, c.actor_id(), c.seq())?))))
        .collect();
    if late.is_empty() {
        return Vec::new();
    }
    // Walk back from every change that is not late: the late ones it reaches are taken.
    let by_hash: HashMap<ChangeHash, &Change> = fresh.iter().map(|c| (c.hash(), *c)).collect();
    let mut taken: HashSet<ChangeHash> = HashSet::new();
    let mut stack: Vec<ChangeHash> = fresh
        .iter()
        .filter(|c| !late.contains_key(&c.hash()))
        .flat_map(|c| c.deps().iter().copied())
        .collect();
    while let Some(hash) = stack.pop() {
        if !late.contains_key(&hash) {
            // Not late: either already walked from, or not in this batch.
            continue;
        }
        if taken.insert(hash)
            && let Some(change) = by_hash.get(&hash)
        {
            stack.extend(change.deps().iter().copied());
        }
    }
    let mut refused: Vec<(&Change, String)> = late
        .into_iter()
        .filter(|(hash, _)| !taken.contains(hash))
        .map(|(_, (change, member))| (change, member.to_string()))
        .collect();
    refused.sort_by_key(|(c, _)| (c.actor_id().clone(), c.seq()));
    refused
}

/// The heads of `doc` that are a removed member's changes beyond their lock: a replica that
/// holds such heads took them before it heard of the removal, and an empty change of its
/// own on top (which depends on them) makes every other replica take them too.
pub fn unendorsed_heads(locks: &Locks, doc_id: Id, doc: &Automerge) -> Vec<ChangeHash> {
    if locks.is_empty() {
        return Vec::new();
    }
    doc.get_heads()
        .into_iter()
        .filter(|head| {
            doc.get_change_meta_by_hash(head)
                .is_some_and(|meta| locks.late(doc_id, &meta.actor, meta.seq).is_some())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use automerge::transaction::Transactable;
    use automerge::{ROOT, ReadDoc};
    use ed25519_dalek::SigningKey;

    use super::*;
    use crate::workspace::Member;

    fn actor(seed: u8) -> (SigningKey, ActorId) {
        let key = SigningKey::from_bytes(&[seed; 32]);
        let actor = crate::identity::actor_id(&key, &[0; 8]);
        (key, actor)
    }

    fn write(doc: &mut Automerge, actor: &ActorId, text: &str) -> Change {
        doc.set_actor(actor.clone());
        let mut tx = doc.transaction();
        tx.put(ROOT, "title", text).unwrap();
        tx.commit();
        doc.get_last_local_change().unwrap()
    }

    fn state_with_lock(cy: &SigningKey, lock: Option<&Lock>) -> WorkspaceState {
        let id = hex::encode(cy.verifying_key().to_bytes());
        let mut member = Member::for_test(&id, "Cy", "UTC");
        member.removed = true;
        member.lock = lock.map(Lock::encode);
        WorkspaceState {
            members: vec![member],
            ..WorkspaceState::default()
        }
    }

    #[test]
    fn a_removed_members_changes_beyond_the_lock_are_refused_unless_another_writer_built_on_them() {
        let doc_id = Id([1; 16]);
        let (cy, cy_actor) = actor(3);
        let (bo, bo_actor) = actor(2);
        let mut doc = Automerge::new();
        let before = write(&mut doc, &cy_actor, "before the removal");
        let mut lock = Lock::default();
        lock.add_document(
            doc_id,
            &doc,
            &HashSet::from([cy.verifying_key().to_bytes()]),
        );
        assert_eq!(lock.len(), 1);
        let lock = Lock::decode(&lock.encode()).unwrap();
        let locks = Locks::of(&state_with_lock(&cy, Some(&lock)));

        let mut later = doc.fork();
        let late = write(&mut later, &cy_actor, "after the removal");
        // What the remover had is taken; what Cy wrote after is refused...
        assert!(refused(&locks, doc_id, &[&before]).is_empty());
        let got = refused(&locks, doc_id, &[&late]);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0.hash(), late.hash());
        // ...in another document too, where the remover had nothing of theirs...
        assert_eq!(refused(&locks, Id([2; 16]), &[&before]).len(), 1);
        // ...unless Bo's change in the same batch depends on it.
        let endorsed = write(&mut later, &bo_actor, "Bo on top");
        let _ = bo;
        assert!(refused(&locks, doc_id, &[&late, &endorsed]).is_empty());
        assert_eq!(unendorsed_heads(&locks, doc_id, &later), Vec::new());

        // A replica holding Cy's late change as a head endorses it.
        let mut held = doc.fork();
        held.apply_changes([late.clone()]).unwrap();
        assert_eq!(unendorsed_heads(&locks, doc_id, &held), vec![late.hash()]);
        held.set_actor(bo_actor.clone());
        held.empty_commit(Default::default());
        let endorsement = held.get_last_local_change().unwrap();
        assert!(endorsement.deps().contains(&late.hash()));
        assert!(refused(&locks, doc_id, &[&late, &endorsement]).is_empty());
        assert_eq!(
            held.get(ROOT, "title").unwrap().unwrap().0.to_string(),
            "\"after the removal\""
        );
    }

    #[test]
    fn a_removal_without_a_lock_takes_everything_and_a_damaged_one_takes_nothing_new() {
        let doc_id = Id([1; 16]);
        let (cy, cy_actor) = actor(3);
        let mut doc = Automerge::new();
        let change = write(&mut doc, &cy_actor, "text");
        let none = Locks::of(&state_with_lock(&cy, None));
        assert!(none.is_empty());
        assert!(refused(&none, doc_id, &[&change]).is_empty());
        let mut state = state_with_lock(&cy, None);
        state.members[0].lock = Some(b"not cbor".to_vec());
        let damaged = Locks::of(&state);
        assert_eq!(refused(&damaged, doc_id, &[&change]).len(), 1);
        assert!(Lock::decode(b"not cbor").is_err());
        assert!(Lock::decode(&vec![0; MAX_LOCK_BYTES + 1]).is_err());
    }
}
