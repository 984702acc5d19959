//! Documents kept loaded between write transactions.
//!
//! Loading a document (its checkpoint, then every later record opened and applied) is the
//! largest cost of applying a few changes to it: a third of a sync's applies, and most of an
//! edit of a long document. A node that writes the same documents again and again (a sync
//! connection applying batch after batch, the daemon, an import) keeps the documents it
//! stored last, and takes one back instead of loading it.
//!
//! The store stays the source of truth. Records are only ever appended, so a document is
//! described by where its records end and what the last one is. A cached copy is used only
//! if the records still end where they ended when it was kept, with the same last record
//! (by hash); otherwise it is dropped and the document is loaded. That covers every way the
//! store can move under the cache: another `meridian` process writing the same file, a
//! transaction that stored a document and then rolled back, a failed apply. A copy is
//! *taken* out of the cache for a write and put back only once the write has stored it, so
//! a document changed in memory and then refused is never seen again.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use anyhow::Result;
use redb::ReadableTable;
use sha2::{Digest, Sha256};

use crate::id::Id;
use crate::node::Loaded;

/// How much the cache may hold, in changes of the documents in it. A loaded document takes
/// about 0.37 KB per change (a 100,000-change text 36 MB, a 260,000-change one 95 MB,
/// measured with `Automerge::load`), so this is about 110 MB at most; a document larger
/// than that is loaded for each write.
const BUDGET: u64 = 300_000;

/// Each document also counts this much, so many tiny documents are bounded too.
const PER_DOCUMENT: u64 = 64;

/// The records table, as a write or read transaction opens it.
pub trait Records: ReadableTable<([u8; 16], u64), &'static [u8]> {}

impl<T: ReadableTable<([u8; 16], u64), &'static [u8]>> Records for T {}

/// Documents kept loaded, least recently stored evicted first.
#[derive(Default)]
pub struct DocCache {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    docs: HashMap<Id, Kept>,
    /// Documents by the tick they were stored at, oldest first.
    order: BTreeMap<u64, Id>,
    weight: u64,
    tick: u64,
}

struct Kept {
    workspace: Id,
    loaded: Loaded,
    /// The hash of the document's last record when it was kept.
    last: [u8; 32],
    tick: u64,
    weight: u64,
}

impl DocCache {
    /// Takes the document out of the cache if the store has not moved since it was kept.
    pub fn take(&self, workspace: Id, doc: Id, records: &impl Records) -> Result<Option<Loaded>> {
        let kept = {
            let mut inner = self.lock();
            let Some(kept) = inner.docs.remove(&doc) else {
                return Ok(None);
            };
            inner.order.remove(&kept.tick);
            inner.weight -= kept.weight;
            kept
        };
        let fresh = kept.workspace == workspace
            && kept.loaded.next_seq > 0
            && last_record(records, doc, kept.loaded.next_seq)? == Some(kept.last)
            && records
                .range((doc.0, kept.loaded.next_seq)..=(doc.0, u64::MAX))?
                .next()
                .is_none();
        Ok(fresh.then_some(kept.loaded))
    }

    /// Keeps a document that was just stored: its records end at `loaded.next_seq`, and it
    /// has `changes` changes.
    pub fn put(
        &self,
        workspace: Id,
        doc: Id,
        loaded: Loaded,
        changes: u64,
        records: &impl Records,
    ) -> Result<()> {
        let Some(last) = last_record(records, doc, loaded.next_seq)? else {
            return Ok(());
        };
        self.put_hashed(workspace, doc, loaded, changes, last)
    }

    /// [`DocCache::put`] by the writer of the document's last record, which knows its hash
    /// (of the record's bytes, as stored) without reading it back.
    pub fn put_hashed(
        &self,
        workspace: Id,
        doc: Id,
        loaded: Loaded,
        changes: u64,
        last: [u8; 32],
    ) -> Result<()> {
        let weight = changes + PER_DOCUMENT;
        if weight > BUDGET {
            return Ok(());
        }
        let mut inner = self.lock();
        if let Some(old) = inner.docs.remove(&doc) {
            inner.order.remove(&old.tick);
            inner.weight -= old.weight;
        }
        while inner.weight + weight > BUDGET {
            let Some((_, oldest)) = inner.order.pop_first() else {
                break;
            };
            if let Some(evicted) = inner.docs.remove(&oldest) {
                inner.weight -= evicted.weight;
            }
        }
        inner.tick += 1;
        let tick = inner.tick;
        inner.order.insert(tick, doc);
        inner.weight += weight;
        inner.docs.insert(
            doc,
            Kept {
                workspace,
                loaded,
                last,
                tick,
                weight,
            },
        );
        Ok(())
    }

    /// Forgets every document.
    pub fn clear(&self) {
        *self.lock() = Inner::default();
    }

    /// How many documents are kept.
    pub fn len(&self) -> usize {
        self.lock().docs.len()
    }

    /// Whether no document is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic halfway through an update may have left the counts wrong: start afresh,
        // which costs only loads.
        self.inner.lock().unwrap_or_else(|poisoned| {
            let mut inner = poisoned.into_inner();
            *inner = Inner::default();
            inner
        })
    }
}

/// The hash of the record just before `next_seq`, if there is one.
fn last_record(records: &impl Records, doc: Id, next_seq: u64) -> Result<Option<[u8; 32]>> {
    let Some(seq) = next_seq.checked_sub(1) else {
        return Ok(None);
    };
    Ok(records
        .get((doc.0, seq))?
        .map(|bytes| Sha256::digest(bytes.value()).into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::RECORDS;
    use automerge::Automerge;

    fn loaded(next_seq: u64) -> Loaded {
        Loaded {
            doc: Automerge::new(),
            next_seq,
            checkpointed: 0,
        }
    }

    #[test]
    fn the_least_recently_stored_documents_go_first_and_none_over_the_budget_stays() {
        let db = redb::Database::builder()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .unwrap();
        let txn = db.begin_write().unwrap();
        let mut records = txn.open_table(RECORDS).unwrap();
        let (workspace, docs) = (Id([9; 16]), [Id([1; 16]), Id([2; 16]), Id([3; 16])]);
        for (i, doc) in docs.iter().enumerate() {
            records.insert((doc.0, 0), [i as u8; 8].as_slice()).unwrap();
        }
        let cache = DocCache::default();
        let half = BUDGET / 2;
        cache
            .put(workspace, docs[0], loaded(1), half, &records)
            .unwrap();
        cache
            .put(
                workspace,
                docs[1],
                loaded(1),
                half - 2 * PER_DOCUMENT,
                &records,
            )
            .unwrap();
        assert_eq!(cache.len(), 2);
        // A third document pushes out the oldest only.
        cache
            .put(workspace, docs[2], loaded(1), 10, &records)
            .unwrap();
        assert_eq!(cache.len(), 2);
        assert!(cache.take(workspace, docs[0], &records).unwrap().is_none());
        assert!(cache.take(workspace, docs[1], &records).unwrap().is_some());
        // Taking removes: a second take finds nothing.
        assert!(cache.take(workspace, docs[1], &records).unwrap().is_none());
        // Larger than the whole budget: not kept at all.
        cache
            .put(workspace, docs[0], loaded(1), BUDGET, &records)
            .unwrap();
        assert!(cache.take(workspace, docs[0], &records).unwrap().is_none());
        // Asked for under another workspace: not handed out.
        assert!(
            cache
                .take(Id([8; 16]), docs[2], &records)
                .unwrap()
                .is_none()
        );
    }
}
