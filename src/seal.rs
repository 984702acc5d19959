//! Sealing and opening envelopes: XChaCha20-Poly1305 with the workspace key, ed25519
//! signatures with the device key. The envelope type itself lives in the relay crate,
//! which can check signatures but has no cipher to open them with.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use ed25519_dalek::SigningKey;
use meridian_relay::Envelope;
use meridian_relay::envelope::NONCE_LEN;

use meridian_relay::envelope::EPOCH_ID_LEN;

use crate::id::{Id, random_bytes};
use crate::keyring::{EpochHash, Sealing, Secret};
use crate::store::WorkspaceRecord;

/// A workspace's symmetric key.
pub type WorkspaceKey = [u8; 32];

/// The first byte of a plaintext that holds a run of changes compressed together: the tag,
/// then a raw DEFLATE stream (RFC 1951) of the concatenated automerge change chunks. An
/// automerge chunk starts with 0x85, so the tag tells the two forms apart. Automerge
/// compresses each change alone, if at all; a run of changes by one actor (the same actor
/// id, the same kinds of operation, one after the other) shrinks to a fraction together.
pub const DEFLATED_CHANGES: u8 = 0x01;

/// The first byte of a shared envelope's plaintext: the tag, then a raw DEFLATE stream of
/// one part per document the envelope lists, in its order, each a LEB128 length and that
/// document's concatenated automerge change chunks. `ingest::plaintext_parts` reads it.
pub const DEFLATED_PARTS: u8 = 0x02;

/// The plaintext of an envelope carrying `changes` (concatenated automerge change chunks)
/// as one compressed run: [`DEFLATED_CHANGES`], then their raw DEFLATE stream.
/// `ingest::plaintext_changes` reads it back.
pub fn deflate_changes(changes: &[u8]) -> Vec<u8> {
    deflate_tagged(DEFLATED_CHANGES, changes)
}

/// The plaintext of a shared envelope whose documents' changes are `parts`, in the order
/// the envelope lists the documents: [`DEFLATED_PARTS`], then one DEFLATE stream.
pub fn shared_plaintext(parts: &[&[u8]]) -> Vec<u8> {
    let total: usize = parts.iter().map(|p| p.len() + 5).sum();
    let mut raw = Vec::with_capacity(total);
    for part in parts {
        let mut len = part.len() as u64;
        loop {
            let byte = (len & 0x7f) as u8;
            len >>= 7;
            if len == 0 {
                raw.push(byte);
                break;
            }
            raw.push(byte | 0x80);
        }
        raw.extend_from_slice(part);
    }
    deflate_tagged(DEFLATED_PARTS, &raw)
}

/// `tag`, then the raw DEFLATE stream of `bytes`.
fn deflate_tagged(tag: u8, changes: &[u8]) -> Vec<u8> {
    thread_local! {
        // Setting up a compressor's tables costs about 100 µs, more than compressing an
        // edit: each thread keeps one. Level 3, not the default 6: on 10,000 typed edits'
        // changes (1 MB) it is as small (0.447 of the input at both) in 8.0 ms, not 12.2.
        static COMPRESSOR: std::cell::RefCell<flate2::Compress> =
            std::cell::RefCell::new(flate2::Compress::new(flate2::Compression::new(3), false));
    }
    COMPRESSOR.with_borrow_mut(|compressor| {
        compressor.reset();
        let mut out = Vec::with_capacity(changes.len() / 2 + 64);
        out.push(tag);
        loop {
            let read = compressor.total_in() as usize;
            if out.capacity() == out.len() {
                out.reserve(changes.len() / 4 + 64);
            }
            let status = compressor
                .compress_vec(&changes[read..], &mut out, flate2::FlushCompress::Finish)
                .expect("compressing into memory cannot fail");
            if status == flate2::Status::StreamEnd {
                return out;
            }
        }
    })
}

/// The plaintext of an envelope carrying `changes` (concatenated automerge change chunks,
/// as automerge made them, uncompressed): compressed together when that makes it smaller.
/// Automerge's own compression deflates each column of each change apart, which cost
/// 0.4 ms for a new proposal; one stream over the whole edit costs a fraction of that and
/// compresses better.
pub fn changes_plaintext(changes: &[u8]) -> Vec<u8> {
    // Above a piece it is one change automerge compressed already (`node::sealing_groups`).
    if (256..=crate::node::MAX_SEALED_BYTES).contains(&changes.len()) {
        let run = deflate_changes(changes);
        if run.len() < changes.len() {
            return run;
        }
    }
    changes.to_vec()
}

/// Encrypts `plaintext` (automerge change bytes) for `doc` and signs the envelope.
pub fn seal(
    device: &SigningKey,
    key: &WorkspaceKey,
    workspace: Id,
    doc: Id,
    plaintext: &[u8],
) -> Envelope {
    seal_with_nonce(device, key, workspace, doc, random_bytes(), plaintext)
}

/// [`seal`] with a given nonce, for deterministic test inputs (the hostile corpus). A nonce
/// must never be reused with one key for different plaintexts: everything else uses [`seal`].
pub fn seal_with_nonce(
    device: &SigningKey,
    key: &WorkspaceKey,
    workspace: Id,
    doc: Id,
    nonce: [u8; NONCE_LEN],
    plaintext: &[u8],
) -> Envelope {
    Envelope::sign(device, workspace.0, doc.0, nonce, |aad| {
        encrypt(key, &nonce, aad, plaintext)
    })
}

/// Encrypts the plaintext of a shared envelope ([`shared_plaintext`]) of the changes to
/// `docs` (at least two, in increasing order, each once) and signs it.
pub fn seal_shared(
    device: &SigningKey,
    key: &WorkspaceKey,
    workspace: Id,
    docs: &[Id],
    plaintext: &[u8],
) -> Envelope {
    seal_shared_with_nonce(device, key, workspace, docs, random_bytes(), plaintext)
}

/// [`seal_shared`] with a given nonce, for deterministic test inputs (as [`seal_with_nonce`]).
/// It signs whatever document list it is given, so tests can make malformed ones.
pub fn seal_shared_with_nonce(
    device: &SigningKey,
    key: &WorkspaceKey,
    workspace: Id,
    docs: &[Id],
    nonce: [u8; NONCE_LEN],
    plaintext: &[u8],
) -> Envelope {
    let docs: Vec<[u8; 16]> = docs.iter().map(|d| d.0).collect();
    Envelope::sign_shared(device, workspace.0, &docs, nonce, |aad| {
        encrypt(key, &nonce, aad, plaintext)
    })
}

/// The epoch a node holds the secret of, as its workspace record keeps it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EpochKey {
    /// The epoch's hash.
    #[serde(with = "serde_bytes")]
    pub hash: Vec<u8>,
    /// Its secret.
    #[serde(with = "serde_bytes")]
    pub secret: Vec<u8>,
    /// Its distance from the first epoch (the longest chain of parents).
    pub depth: u32,
    /// Taken from a wrap in a record not adopted yet (or walked back from such a secret):
    /// the secret is the epoch's (its commitment, pinned by the epoch's hash, says so), so
    /// it opens, but nothing is sealed under it until the epoch's record is adopted.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unchecked: bool,
}

impl EpochKey {
    /// Its hash and secret, unless the record holding them is damaged.
    pub fn pair(&self) -> Option<(EpochHash, Secret)> {
        Some((
            self.hash.as_slice().try_into().ok()?,
            self.secret.as_slice().try_into().ok()?,
        ))
    }
}

/// Why a change cannot be sealed: someone was removed and this node holds no key epoch
/// started after it.
#[derive(Debug, thiserror::Error)]
#[error(
    "a member was removed and this device holds no key written after the removal yet; `meridian sync` fetches it (or starts one)"
)]
pub struct NoSafeEpoch;

/// What a node seals under, resolved from its workspace record once for many envelopes.
#[derive(Clone)]
pub enum Sealer {
    /// The workspace key, as version 1 and 2 envelopes: nobody was ever removed.
    First(WorkspaceKey),
    /// An epoch (hash, secret), as version 3 and 4 envelopes.
    Epoch(EpochHash, Secret),
}

impl Sealer {
    /// What `record` says to seal under: the workspace key while nobody was removed, else
    /// the chosen epoch; [`NoSafeEpoch`] when there is none.
    pub fn of(record: &WorkspaceRecord) -> anyhow::Result<Sealer> {
        match &record.sealing {
            Sealing::First => {
                Ok(Sealer::First(record.key.as_slice().try_into().map_err(
                    |_| anyhow::anyhow!("the workspace key is damaged"),
                )?))
            }
            Sealing::Epoch(hash) => record
                .epochs
                .iter()
                .find(|e| e.hash == hash.as_slice())
                .and_then(|e| e.pair())
                .map(|(hash, secret)| Sealer::Epoch(hash, secret))
                .ok_or_else(|| {
                    anyhow::anyhow!("the key this workspace seals under is missing or damaged")
                }),
            Sealing::Waiting => Err(NoSafeEpoch.into()),
        }
    }

    /// Seals `plaintext`, the changes to `docs` (one, or several in increasing order).
    pub fn seal(
        &self,
        device: &SigningKey,
        workspace: Id,
        docs: &[Id],
        plaintext: &[u8],
    ) -> Envelope {
        match self {
            Sealer::First(key) => match docs {
                [doc] => seal(device, key, workspace, *doc, plaintext),
                _ => seal_shared(device, key, workspace, docs, plaintext),
            },
            Sealer::Epoch(hash, secret) => {
                let mut nonce: [u8; NONCE_LEN] = random_bytes();
                nonce[..EPOCH_ID_LEN].copy_from_slice(&hash[..EPOCH_ID_LEN]);
                seal_in_epoch(device, (*hash, *secret), workspace, docs, nonce, plaintext)
            }
        }
    }

    /// Whether `envelope` is sealed under this (an outbox entry sealed under an older epoch
    /// is sealed again before it is pushed).
    pub fn sealed(&self, envelope: &Envelope) -> bool {
        match self {
            Sealer::First(_) => envelope.epoch_id().is_none() && !envelope.is_keyring(),
            Sealer::Epoch(hash, _) => envelope.epoch_id() == hash[..EPOCH_ID_LEN].try_into().ok(),
        }
    }
}

/// Seals under an epoch (hash, secret) with `nonce`, whose first bytes must name it.
pub fn seal_in_epoch(
    device: &SigningKey,
    (hash, secret): (EpochHash, Secret),
    workspace: Id,
    docs: &[Id],
    nonce: [u8; NONCE_LEN],
    plaintext: &[u8],
) -> Envelope {
    let ids: Vec<[u8; 16]> = docs.iter().map(|d| d.0).collect();
    let key = crate::keyring::seal_key(workspace, &secret, &ids);
    Envelope::sign_in_epoch(device, workspace.0, &ids, nonce, |aad| {
        encrypt(&key, &nonce, &[aad, &hash].concat(), plaintext)
    })
}

/// An envelope sealed under an epoch this node does not hold (yet): it is held until a
/// keyring record brings the key.
#[derive(Debug, thiserror::Error)]
#[error("it is sealed under a key this device has not received (epoch {})", hex::encode(.0))]
pub struct UnknownEpoch(pub [u8; EPOCH_ID_LEN]);

/// Whether the workspace record holds the key `envelope` is sealed under (always, for the
/// workspace key's versions), without opening it.
pub fn holds_epoch(record: &WorkspaceRecord, envelope: &Envelope) -> bool {
    envelope.epoch_id().is_none_or(|id| {
        record
            .epochs
            .iter()
            .any(|e| e.hash.get(..EPOCH_ID_LEN) == Some(id.as_slice()))
    })
}

/// Decrypts a verified envelope with the keys the workspace record holds: the workspace
/// key for versions 1 and 2, the named epoch's key for the document(s) otherwise.
pub fn open_with(record: &WorkspaceRecord, envelope: &Envelope) -> anyhow::Result<Vec<u8>> {
    let Some(id) = envelope.epoch_id() else {
        if envelope.is_keyring() {
            anyhow::bail!("a keyring record is not sealed changes");
        }
        let key: WorkspaceKey = record
            .key
            .as_slice()
            .try_into()
            .map_err(|_| anyhow::anyhow!("the workspace key is damaged"))?;
        return open(&key, envelope);
    };
    let docs = envelope.doc_ids();
    let workspace = Id(envelope.workspace_id());
    let mut named = record
        .epochs
        .iter()
        .filter(|e| e.hash.get(..EPOCH_ID_LEN) == Some(id.as_slice()))
        .filter_map(EpochKey::pair)
        .peekable();
    if named.peek().is_none() {
        return Err(UnknownEpoch(id).into());
    }
    let aad = envelope.associated_data();
    for (hash, secret) in named {
        let key = crate::keyring::seal_key(workspace, &secret, &docs);
        if let Some(plaintext) = decrypt(&key, envelope, &[aad.as_slice(), &hash].concat()) {
            return Ok(plaintext);
        }
    }
    let docs: Vec<String> = docs.iter().map(hex::encode).collect();
    anyhow::bail!(
        "an envelope for document {} does not decrypt with the key of the epoch it names: it was altered",
        docs.join(", ")
    )
}

/// What opens one envelope and no other: XChaCha20's subkey for its nonce
/// (HChaCha20 of the sealing key and the nonce's first 16 bytes) and, for an envelope sealed
/// under a key epoch, the epoch's full hash its associated data binds. A verifiable export
/// carries one for each envelope (`meridian verify`): HChaCha20 is a pseudorandom
/// function, so subkeys for some nonces say nothing of the key or of any other nonce's.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Disclosed {
    /// The subkey.
    #[serde(with = "serde_bytes")]
    pub subkey: Vec<u8>,
    /// The epoch hash, for versions 3 and 4.
    #[serde(default, with = "serde_bytes", skip_serializing_if = "Option::is_none")]
    pub epoch: Option<Vec<u8>>,
}

/// The [`Disclosed`] key of an envelope this record opens.
pub fn disclose(record: &WorkspaceRecord, envelope: &Envelope) -> anyhow::Result<Disclosed> {
    let subkey = |key: &[u8; 32]| {
        let input =
            chacha20::cipher::generic_array::GenericArray::from_slice(&envelope.nonce[..16]);
        chacha20::hchacha::<chacha20::cipher::consts::U10>(key.into(), input).to_vec()
    };
    let Some(id) = envelope.epoch_id() else {
        let key: WorkspaceKey = record
            .key
            .as_slice()
            .try_into()
            .map_err(|_| anyhow::anyhow!("the workspace key is damaged"))?;
        return Ok(Disclosed {
            subkey: subkey(&key),
            epoch: None,
        });
    };
    let docs = envelope.doc_ids();
    let workspace = Id(envelope.workspace_id());
    let aad = envelope.associated_data();
    for (hash, secret) in record
        .epochs
        .iter()
        .filter(|e| e.hash.get(..EPOCH_ID_LEN) == Some(id.as_slice()))
        .filter_map(EpochKey::pair)
    {
        let key = crate::keyring::seal_key(workspace, &secret, &docs);
        if decrypt(&key, envelope, &[aad.as_slice(), &hash].concat()).is_some() {
            return Ok(Disclosed {
                subkey: subkey(&key),
                epoch: Some(hash.to_vec()),
            });
        }
    }
    Err(UnknownEpoch(id).into())
}

/// Opens an envelope with its [`Disclosed`] key (what `meridian verify` does, with no
/// home): `None` if it does not authenticate.
pub fn open_disclosed(envelope: &Envelope, disclosed: &Disclosed) -> Option<Vec<u8>> {
    use chacha20poly1305::ChaCha20Poly1305;
    let subkey: [u8; 32] = disclosed.subkey.as_slice().try_into().ok()?;
    if envelope.epoch_id().is_some() != disclosed.epoch.is_some() || envelope.is_keyring() {
        return None;
    }
    let mut aad = envelope.associated_data();
    aad.extend_from_slice(disclosed.epoch.as_deref().unwrap_or_default());
    let mut nonce = [0u8; 12];
    nonce[4..].copy_from_slice(envelope.nonce.get(16..24)?);
    ChaCha20Poly1305::new(&subkey.into())
        .decrypt(
            chacha20poly1305::Nonce::from_slice(&nonce),
            Payload {
                msg: &envelope.ciphertext,
                aad: &aad,
            },
        )
        .ok()
}

fn encrypt(key: &WorkspaceKey, nonce: &[u8; NONCE_LEN], aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
    XChaCha20Poly1305::new(key.into())
        .encrypt(
            XNonce::from_slice(nonce),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .expect("encryption into memory cannot fail")
}

/// Decrypts a verified envelope with the workspace key.
pub fn open(key: &WorkspaceKey, envelope: &Envelope) -> anyhow::Result<Vec<u8>> {
    decrypt(key, envelope, &envelope.associated_data()).ok_or_else(|| {
        let docs: Vec<String> = envelope.doc_ids().iter().map(hex::encode).collect();
        anyhow::anyhow!(
            "an envelope for document {} does not decrypt with this workspace's key: it was made for another workspace or altered",
            docs.join(", ")
        )
    })
}

/// The plaintext of `envelope`'s ciphertext under `key` with associated data `aad`, if the
/// tag verifies.
fn decrypt(key: &[u8; 32], envelope: &Envelope, aad: &[u8]) -> Option<Vec<u8>> {
    XChaCha20Poly1305::new(key.into())
        .decrypt(
            XNonce::from_slice(&envelope.nonce),
            Payload {
                msg: &envelope.ciphertext,
                aad,
            },
        )
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_then_open_round_trips_and_binds_the_document() {
        let device = SigningKey::from_bytes(&[1; 32]);
        let key = [9; 32];
        let envelope = seal(&device, &key, Id([1; 16]), Id([2; 16]), b"changes");
        envelope.verify().unwrap();
        assert_eq!(open(&key, &envelope).unwrap(), b"changes");
        assert!(open(&[8; 32], &envelope).is_err());
        let mut moved = envelope.clone();
        moved.doc = vec![3; 16];
        assert!(open(&key, &moved).is_err());
    }

    #[test]
    fn a_disclosed_key_opens_its_envelope_and_no_other() {
        let device = SigningKey::from_bytes(&[1; 32]);
        let (workspace, doc) = (Id([1; 16]), Id([2; 16]));
        let mut record = WorkspaceRecord::with_key(&[9; 32]);
        let sealer = Sealer::of(&record).unwrap();
        let one = sealer.seal(&device, workspace, &[doc], b"one");
        let two = sealer.seal(&device, workspace, &[doc], b"two");
        let key = disclose(&record, &one).unwrap();
        assert_eq!(open_disclosed(&one, &key).unwrap(), b"one");
        assert!(
            open_disclosed(&two, &key).is_none(),
            "another nonce, another key"
        );
        assert_ne!(key.subkey, record.key, "the workspace key is not disclosed");
        let mut moved = one.clone();
        moved.doc = vec![3; 16];
        assert!(
            open_disclosed(&moved, &key).is_none(),
            "bound to its document"
        );
        // Under an epoch, the disclosure names the epoch the associated data binds.
        record.epochs.push(EpochKey {
            hash: vec![7; 32],
            secret: vec![5; 32],
            depth: 1,
            unchecked: false,
        });
        record.sealing = Sealing::Epoch(serde_bytes::ByteBuf::from(vec![7; 32]));
        let three = Sealer::of(&record)
            .unwrap()
            .seal(&device, workspace, &[doc], b"three");
        let key = disclose(&record, &three).unwrap();
        assert_eq!(key.epoch.as_deref(), Some(&[7; 32][..]));
        assert_eq!(open_disclosed(&three, &key).unwrap(), b"three");
        let mut wrong = key.clone();
        wrong.epoch = Some(vec![8; 32]);
        assert!(open_disclosed(&three, &wrong).is_none());
    }

    #[test]
    fn an_epoch_envelope_names_its_epoch_in_the_nonce_and_opens_only_with_its_key() {
        let device = SigningKey::from_bytes(&[1; 32]);
        let (workspace, doc) = (Id([1; 16]), Id([2; 16]));
        let hash = [7; 32];
        let mut record = WorkspaceRecord::with_key(&[9; 32]);
        let first = Sealer::of(&record)
            .unwrap()
            .seal(&device, workspace, &[doc], b"before");
        assert_eq!(first.version, meridian_relay::envelope::ENVELOPE_VERSION);
        record.epochs.push(EpochKey {
            hash: hash.to_vec(),
            secret: vec![5; 32],
            depth: 1,
            unchecked: false,
        });
        record.sealing = Sealing::Epoch(serde_bytes::ByteBuf::from(hash.to_vec()));
        let sealer = Sealer::of(&record).unwrap();
        let envelope = sealer.seal(&device, workspace, &[doc], b"after");
        envelope.verify().unwrap();
        assert_eq!(envelope.version, meridian_relay::envelope::EPOCH_VERSION);
        assert_eq!(envelope.epoch_id(), Some([7; 8]));
        assert_eq!(
            envelope.encode().len(),
            first.encode().len() - b"before".len() + b"after".len(),
            "naming the epoch costs no byte"
        );
        assert!(sealer.sealed(&envelope) && !sealer.sealed(&first));
        assert_eq!(open_with(&record, &envelope).unwrap(), b"after");
        assert_eq!(open_with(&record, &first).unwrap(), b"before");
        // Moved to another document, it does not open: the key is the document's.
        let mut moved = envelope.clone();
        moved.doc = vec![3; 16];
        assert!(open_with(&record, &moved).is_err());
        // The same id with another secret or hash (a forged epoch) does not open it.
        let mut other = record.clone();
        other.epochs[0].secret = vec![6; 32];
        assert!(open_with(&other, &envelope).is_err());
        other.epochs[0].secret = vec![5; 32];
        other.epochs[0].hash[31] ^= 1;
        assert!(open_with(&other, &envelope).is_err());
        // Not held at all: it waits, it is not refused.
        other.epochs.clear();
        assert!(
            open_with(&other, &envelope)
                .unwrap_err()
                .is::<UnknownEpoch>()
        );
        // Someone removed and no epoch to seal under: a clear refusal.
        other.sealing = Sealing::Waiting;
        assert!(Sealer::of(&other).err().unwrap().is::<NoSafeEpoch>());
    }

    fn inflate(plaintext: &[u8]) -> anyhow::Result<Vec<u8>> {
        let mut budget = 1 << 30;
        crate::ingest::plaintext_changes(plaintext, &mut budget).map(|c| c.into_owned())
    }

    #[test]
    fn a_compressed_run_reads_back_and_plain_changes_pass_through() {
        let changes: Vec<u8> = (0..200u32)
            .flat_map(|i| {
                [
                    &crate::ingest::AUTOMERGE_MAGIC[..],
                    &i.to_le_bytes(),
                    &[7; 60],
                ]
                .concat()
            })
            .collect();
        let run = deflate_changes(&changes);
        assert_eq!(run[0], DEFLATED_CHANGES);
        assert_ne!(DEFLATED_CHANGES, crate::ingest::AUTOMERGE_MAGIC[0]);
        assert!(
            run.len() * 4 < changes.len(),
            "{} of {}",
            run.len(),
            changes.len()
        );
        assert_eq!(inflate(&run).unwrap(), changes);
        assert_eq!(
            inflate(&changes).unwrap(),
            changes,
            "raw chunks as they are"
        );
        let mut budget = 1 << 30;
        crate::ingest::plaintext_changes(&run, &mut budget).unwrap();
        assert_eq!(budget, (1 << 30) - changes.len() as u64, "inflation counts");
    }

    #[test]
    fn hostile_compressed_runs_are_refused_with_a_reason() {
        let run = deflate_changes(&[0x85; 5000]);
        let check = |plaintext: &[u8], expect: &str| {
            let error = format!("{:#}", inflate(plaintext).unwrap_err());
            assert!(error.contains(expect), "{error}");
        };
        check(&run[..run.len() / 2], "truncated");
        check(&[DEFLATED_CHANGES], "truncated");
        check(&[&run[..], &[0, 1]].concat(), "stray bytes");
        check(&[DEFLATED_CHANGES, 0xff, 0xff, 0xff], "corrupt");
        // A bomb: more than an envelope may carry, and more than the budget left.
        let bomb = deflate_changes(&vec![0; (4 << 20) + 1]);
        check(&bomb, "decompression bomb");
        let mut budget = 1000;
        let error = crate::ingest::plaintext_changes(&run, &mut budget).unwrap_err();
        assert!(format!("{error:#}").contains("1000 bytes"), "{error:#}");
    }
}
