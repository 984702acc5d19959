//! Each device's encryption key, and the wraps that carry a secret to one device: the
//! ground of key epochs (ARCHITECTURE.md, "Membership that protects what is written").
//!
//! HPKE (RFC 9180) in base mode with DHKEM(X25519, HKDF-SHA256), HKDF-SHA256 and
//! ChaCha20-Poly1305, from the `hpke` crate: no key encapsulation of our own. A device's
//! X25519 key is its own, never its ed25519 signing key converted: RFC 9180's DeriveKeyPair
//! from the device's seed under a label of ours, so the home keeps one secret file and the
//! two keys share nothing a curve could relate. The device signs its encryption key for a
//! workspace, so a member entry can only name a key its device holds.
//!
//! Key epochs. An epoch is a random 32-byte secret; the first is the workspace key every
//! member was given with their invite. A removal starts a new one: a keyring [`Record`]
//! (signed, not sealed, in the relay log like any envelope) names its parent epochs and the
//! workspace-document heads whose membership defines its recipients, wraps the new secret
//! to each recipient device, and carries its parents' secrets sealed under it, so a device
//! that opens the newest epoch walks back to the first. A [`Kind::Share`] record wraps an
//! existing epoch to devices that joined after it. Sealing keys are derived per document
//! with HKDF ([`seal_key`]); the secret itself seals nothing.
//!
//! Pure: no IO, no clock. `crate::epochs` stores records and secrets.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context, Result, bail};
use chacha20poly1305::aead::{Aead as _, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Nonce};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use hpke::kem::X25519HkdfSha256;
use hpke::{Deserializable, Kem as _, OpModeR, OpModeS, Serializable};
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;
use sha2::{Digest, Sha256};

use crate::id::Id;
use crate::workspace::WorkspaceState;

type Kem = X25519HkdfSha256;
type Kdf = hpke::kdf::HkdfSha256;
type Aead = hpke::aead::ChaCha20Poly1305;

/// What a device signs to say an encryption key is its own in a workspace: this label,
/// then the workspace id, the device's ed25519 key and the X25519 key.
const CERTIFICATE: &[u8] = b"meridian/device-encryption/v1\0";

/// The label of the input DeriveKeyPair takes the device's X25519 key from.
const DERIVE: &[u8] = b"meridian/device-x25519/v1\0";

/// A device's encryption key pair.
pub struct DeviceKey {
    secret: <Kem as hpke::Kem>::PrivateKey,
    public: [u8; 32],
}

impl DeviceKey {
    /// The encryption key of the device whose signing key this is.
    pub fn of(device: &SigningKey) -> DeviceKey {
        let ikm = [DERIVE, device.as_bytes().as_slice()].concat();
        let (secret, public) = Kem::derive_keypair(&ikm);
        DeviceKey {
            secret,
            public: public.to_bytes().into(),
        }
    }

    /// The public half, as member entries carry it.
    pub fn public(&self) -> [u8; 32] {
        self.public
    }

    /// Opens a secret wrapped to this device in `context` (what the wrap is for: the same
    /// bytes [`wrap`] was given).
    pub fn unwrap(&self, context: &[u8], wrap: &Wrap) -> Result<[u8; 32]> {
        let encapped = <Kem as hpke::Kem>::EncappedKey::from_bytes(&wrap.encapped)
            .map_err(|_| anyhow::anyhow!("a key wrap is malformed"))?;
        let opened = hpke::single_shot_open::<Aead, Kdf, Kem>(
            &OpModeR::Base,
            &self.secret,
            &encapped,
            context,
            &wrap.ciphertext,
            &[],
        )
        .map_err(|_| {
            anyhow::anyhow!("a key wrap does not open with this device's key: it is for another device, another purpose, or damaged")
        })?;
        match <[u8; 32]>::try_from(opened.as_slice()) {
            Ok(secret) => Ok(secret),
            Err(_) => bail!(
                "a key wrap holds {} bytes, not a 32-byte secret",
                opened.len()
            ),
        }
    }
}

/// Signs `encryption` as `device`'s own key in `workspace`.
pub fn certify(device: &SigningKey, workspace: Id, encryption: &[u8; 32]) -> [u8; 64] {
    let statement = certificate(workspace, &device.verifying_key().to_bytes(), encryption);
    device.sign(&statement).to_bytes()
}

/// Whether `signature` is `device`'s certificate of `encryption` in `workspace`.
pub fn is_certified(
    device: &[u8; 32],
    workspace: Id,
    encryption: &[u8; 32],
    signature: &[u8; 64],
) -> bool {
    let Ok(key) = VerifyingKey::from_bytes(device) else {
        return false;
    };
    key.verify(
        &certificate(workspace, device, encryption),
        &Signature::from_bytes(signature),
    )
    .is_ok()
}

fn certificate(workspace: Id, device: &[u8; 32], encryption: &[u8; 32]) -> Vec<u8> {
    [CERTIFICATE, &workspace.0, device, encryption].concat()
}

/// A 32-byte secret wrapped to one device's encryption key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Wrap {
    /// HPKE's encapsulated key (the sender's ephemeral X25519 key).
    pub encapped: [u8; 32],
    /// The secret, sealed (32 bytes and a 16-byte tag).
    pub ciphertext: Vec<u8>,
}

/// Wraps `secret` to the device whose encryption key is `recipient`, for `context` (what it
/// is for, bound into the key schedule: a wrap made for one epoch and device opens for no
/// other).
pub fn wrap(recipient: &[u8; 32], context: &[u8], secret: &[u8; 32]) -> Result<Wrap> {
    let recipient = <Kem as hpke::Kem>::PublicKey::from_bytes(recipient)
        .map_err(|_| anyhow::anyhow!("a device's encryption key is malformed"))?;
    let (encapped, ciphertext) =
        hpke::single_shot_seal::<Aead, Kdf, Kem>(&OpModeS::Base, &recipient, context, secret, &[])
            .map_err(|_| anyhow::anyhow!("a device's encryption key is not a usable X25519 key"))?;
    Ok(Wrap {
        encapped: encapped.to_bytes().into(),
        ciphertext,
    })
}

/// An epoch's hash: what envelopes (by its first 8 bytes) and child epochs name it by.
pub type EpochHash = [u8; 32];

/// A 32-byte epoch secret.
pub type Secret = [u8; 32];

const FIRST_EPOCH: &[u8] = b"meridian/epoch-first/v1\0";
const EPOCH: &[u8] = b"meridian/epoch/v1\0";
const COMMIT: &[u8] = b"meridian/epoch-commit/v1\0";
const WRAP: &[u8] = b"meridian/epoch-wrap/v1\0";
const PARENTS: &[u8] = b"meridian/epoch-parents/v1\0";
const SEAL: &[u8] = b"meridian/seal/v2\0";

/// The most wraps one record may carry: a recipient's wrap is 125 bytes encoded, so this
/// keeps a record of every wrap inside an envelope's 4 MiB.
pub const MAX_WRAPS: usize = 30_000;

/// The hash of a workspace's first epoch, whose secret is the workspace key.
pub fn first_epoch(workspace: Id, key: &Secret) -> EpochHash {
    Sha256::new()
        .chain_update(FIRST_EPOCH)
        .chain_update(workspace.0)
        .chain_update(key)
        .finalize()
        .into()
}

/// The hash of the epoch a record (its encoded bytes, as signed) starts.
pub fn epoch_hash(body: &[u8]) -> EpochHash {
    Sha256::new()
        .chain_update(EPOCH)
        .chain_update(body)
        .finalize()
        .into()
}

/// What an epoch record commits its secret with: a recipient checks the secret it
/// unwrapped against it, so an author cannot hand different devices different secrets.
pub fn commit(workspace: Id, secret: &Secret) -> [u8; 32] {
    Sha256::new()
        .chain_update(COMMIT)
        .chain_update(workspace.0)
        .chain_update(secret)
        .finalize()
        .into()
}

/// HKDF-SHA256 of `secret` with the workspace id as salt, for `info`.
fn derive(workspace: Id, secret: &Secret, info: &[&[u8]]) -> [u8; 32] {
    let hkdf = hkdf::Hkdf::<sha2_11::Sha256>::new(Some(&workspace.0), secret);
    let mut out = [0; 32];
    hkdf.expand_multi_info(info, &mut out)
        .expect("32 bytes is a valid HKDF-SHA256 output length");
    out
}

/// The key that seals the changes to `docs` (one document, or a shared envelope's list)
/// under an epoch: a key per document, so a key handed out for one document (a verifiable
/// export) opens nothing else.
pub fn seal_key(workspace: Id, secret: &Secret, docs: &[[u8; 16]]) -> [u8; 32] {
    let docs: Vec<&[u8]> = docs.iter().map(|d| d.as_slice()).collect();
    derive(workspace, secret, &[&[SEAL], docs.as_slice()].concat())
}

/// The context a wrap of an epoch's secret to `device` is made in.
fn wrap_context(workspace: Id, commit: &[u8; 32], device: &[u8; 32]) -> Vec<u8> {
    [WRAP, &workspace.0, commit, device].concat()
}

/// A keyring record: the body of a [`meridian_relay::envelope::KEYRING_VERSION`] envelope,
/// whose signature is the record's.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The workspace (the envelope's, repeated so the epoch hash binds it).
    pub workspace: ByteBuf,
    /// A new epoch, or wraps of an existing one.
    pub kind: Kind,
    /// The secret, wrapped to each recipient device.
    pub wraps: Vec<WrapEntry>,
}

/// What a keyring record does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Kind {
    /// Starts an epoch.
    Epoch {
        /// The epochs it follows (their hashes), at least one.
        parents: Vec<ByteBuf>,
        /// The workspace-document heads whose membership defines the recipients.
        basis: Vec<ByteBuf>,
        /// Why.
        reason: Reason,
        /// [`commit`] of the new secret.
        commit: ByteBuf,
        /// Each parent's secret, sealed under the new one (same order as `parents`).
        sealed_parents: Vec<ByteBuf>,
    },
    /// Wraps an existing epoch's secret to devices that had none.
    Share {
        /// The epoch's hash.
        epoch: ByteBuf,
    },
}

/// Why an epoch was started.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reason {
    /// The creator removed this member (id).
    Removal {
        /// The removed member's id.
        member: String,
    },
    /// A member found no epoch it could seal under (concurrent removals, or a removal an
    /// older build made): a fresh one for everyone current.
    Repair,
}

/// One recipient's wrap. Its fields are named by one letter on the wire: a record for
/// 10,000 devices is 10,000 of these.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WrapEntry {
    /// The device's ed25519 key.
    #[serde(rename = "d")]
    pub device: ByteBuf,
    /// HPKE's encapsulated key.
    #[serde(rename = "e")]
    pub encapped: ByteBuf,
    /// The sealed secret.
    #[serde(rename = "c")]
    pub ciphertext: ByteBuf,
}

impl Record {
    /// Encodes the record (the bytes the envelope carries and the epoch hash covers).
    pub fn encode(&self) -> Vec<u8> {
        let mut bytes = Vec::new();
        ciborium::into_writer(self, &mut bytes).expect("writing CBOR to a Vec cannot fail");
        bytes
    }

    /// Parses a record a keyring envelope carries, checking its shape for `workspace`.
    pub fn decode(body: &[u8], workspace: Id) -> Result<Record> {
        let record: Record = meridian_relay::cbor::from_slice(body)
            .map_err(|e| anyhow::anyhow!("a keyring record is malformed: {e}"))?;
        if record.workspace.as_slice() != workspace.0 {
            bail!("a keyring record names another workspace");
        }
        if record.wraps.len() > MAX_WRAPS {
            bail!("a keyring record carries more than {MAX_WRAPS} wraps");
        }
        let mut devices = BTreeSet::new();
        for wrap in &record.wraps {
            if wrap.device.len() != 32 || wrap.encapped.len() != 32 || wrap.ciphertext.len() != 48 {
                bail!("a keyring record's wrap is malformed");
            }
            if !devices.insert(wrap.device.as_slice()) {
                bail!("a keyring record wraps its secret twice to one device");
            }
        }
        match &record.kind {
            Kind::Epoch {
                parents,
                basis,
                commit,
                sealed_parents,
                ..
            } => {
                let hashes = parents.iter().chain(basis).chain([commit]);
                if parents.is_empty()
                    || parents.len() > 64
                    || basis.len() > 1024
                    || hashes.into_iter().any(|h| h.len() != 32)
                    || sealed_parents.len() != parents.len()
                    || sealed_parents.iter().any(|p| p.len() != 48)
                {
                    bail!("a keyring record's epoch is malformed");
                }
            }
            Kind::Share { epoch } => {
                if epoch.len() != 32 {
                    bail!("a keyring record's epoch is malformed");
                }
            }
        }
        Ok(record)
    }

    /// The devices it wraps to.
    pub fn devices(&self) -> impl Iterator<Item = [u8; 32]> + '_ {
        self.wraps
            .iter()
            .filter_map(|w| w.device.as_slice().try_into().ok())
    }

    /// The secret wrapped to `device`, if the record has a wrap for it, checked against
    /// `commit` (the epoch's).
    pub fn unwrap_for(
        &self,
        device: &SigningKey,
        commit_of_epoch: &[u8; 32],
    ) -> Option<Result<Secret>> {
        let workspace = Id(self.workspace.as_slice().try_into().ok()?);
        let public = device.verifying_key().to_bytes();
        let entry = self.wraps.iter().find(|w| w.device.as_slice() == public)?;
        let wrap = Wrap {
            encapped: entry.encapped.as_slice().try_into().ok()?,
            ciphertext: entry.ciphertext.to_vec(),
        };
        let context = wrap_context(workspace, commit_of_epoch, &public);
        Some(
            DeviceKey::of(device)
                .unwrap(&context, &wrap)
                .and_then(|secret| {
                    if commit(workspace, &secret) != *commit_of_epoch {
                        bail!(
                            "a keyring record wrapped this device a secret that is not its epoch's"
                        );
                    }
                    Ok(secret)
                }),
        )
    }
}

/// The devices an epoch started at a workspace state must wrap to: every verified member
/// not removed who has published a certified encryption key, by device key.
pub fn recipients(state: &WorkspaceState) -> BTreeMap<[u8; 32], [u8; 32]> {
    let pair = |device: &str, encryption: Option<&String>| -> Option<([u8; 32], [u8; 32])> {
        let device: [u8; 32] = hex::decode(device).ok()?.try_into().ok()?;
        let encryption: [u8; 32] = hex::decode(encryption?).ok()?.try_into().ok()?;
        Some((device, encryption))
    };
    state
        .active_members()
        .flat_map(|m| {
            // Every device of theirs; a state cached before devices were read lists none,
            // and is the first device's alone.
            let devices: Vec<_> = if m.devices.is_empty() {
                pair(&m.id, m.encryption.as_ref()).into_iter().collect()
            } else {
                m.devices
                    .iter()
                    .filter(|d| d.active())
                    .filter_map(|d| pair(&d.key, d.encryption.as_ref()))
                    .collect()
            };
            devices
        })
        .collect()
}

/// The device keys of removed members: an epoch whose secret went to any of them no longer
/// protects anything.
pub fn removed_devices(state: &WorkspaceState) -> BTreeSet<[u8; 32]> {
    let removed = state
        .members
        .iter()
        .filter(|m| m.removed)
        .flat_map(|m| &m.keys);
    let revoked = state
        .members
        .iter()
        .flat_map(|m| &m.devices)
        .filter(|d| !d.active())
        .map(|d| &d.key);
    removed
        .chain(revoked)
        .filter_map(|k| hex::decode(k).ok()?.try_into().ok())
        .collect()
}

/// A new epoch, made by [`new_epoch`]: its secret, and the record to sign and publish.
pub struct NewEpoch {
    /// The epoch's hash.
    pub hash: EpochHash,
    /// Its secret.
    pub secret: Secret,
    /// The encoded record.
    pub body: Vec<u8>,
}

/// Starts an epoch after `parents` (hashes and secrets), for the members of the workspace
/// document at `basis` (its heads): `recipients` ([`recipients`] of that state).
pub fn new_epoch(
    workspace: Id,
    parents: &[(EpochHash, Secret)],
    basis: &[[u8; 32]],
    reason: Reason,
    recipients: &BTreeMap<[u8; 32], [u8; 32]>,
) -> Result<NewEpoch> {
    let secret: Secret = crate::id::random_bytes();
    let committed = commit(workspace, &secret);
    let wraps = wraps_to(workspace, &committed, &secret, recipients)?;
    let cipher = ChaCha20Poly1305::new(&derive(workspace, &secret, &[PARENTS]).into());
    let sealed_parents = parents
        .iter()
        .enumerate()
        .map(|(i, (hash, parent))| {
            let sealed = cipher
                .encrypt(
                    &parent_nonce(i),
                    Payload {
                        msg: parent,
                        aad: hash,
                    },
                )
                .expect("encryption into memory cannot fail");
            ByteBuf::from(sealed)
        })
        .collect();
    let record = Record {
        workspace: ByteBuf::from(workspace.0.to_vec()),
        kind: Kind::Epoch {
            parents: parents
                .iter()
                .map(|(h, _)| ByteBuf::from(h.to_vec()))
                .collect(),
            basis: basis.iter().map(|h| ByteBuf::from(h.to_vec())).collect(),
            reason,
            commit: ByteBuf::from(committed.to_vec()),
            sealed_parents,
        },
        wraps,
    };
    let body = record.encode();
    Ok(NewEpoch {
        hash: epoch_hash(&body),
        secret,
        body,
    })
}

/// A record wrapping an existing epoch (its hash, secret) to `recipients`.
pub fn share(
    workspace: Id,
    epoch: &EpochHash,
    secret: &Secret,
    recipients: &BTreeMap<[u8; 32], [u8; 32]>,
) -> Result<Vec<u8>> {
    let wraps = wraps_to(workspace, &commit(workspace, secret), secret, recipients)?;
    Ok(Record {
        workspace: ByteBuf::from(workspace.0.to_vec()),
        kind: Kind::Share {
            epoch: ByteBuf::from(epoch.to_vec()),
        },
        wraps,
    }
    .encode())
}

fn wraps_to(
    workspace: Id,
    committed: &[u8; 32],
    secret: &Secret,
    recipients: &BTreeMap<[u8; 32], [u8; 32]>,
) -> Result<Vec<WrapEntry>> {
    if recipients.len() > MAX_WRAPS {
        bail!("a workspace of more than {MAX_WRAPS} devices cannot start a key epoch");
    }
    recipients
        .iter()
        .map(|(device, encryption)| {
            let made = wrap(
                encryption,
                &wrap_context(workspace, committed, device),
                secret,
            )?;
            Ok(WrapEntry {
                device: ByteBuf::from(device.to_vec()),
                encapped: ByteBuf::from(made.encapped.to_vec()),
                ciphertext: ByteBuf::from(made.ciphertext),
            })
        })
        .collect()
}

fn parent_nonce(i: usize) -> Nonce {
    let mut nonce = [0; 12];
    nonce[..8].copy_from_slice(&(i as u64).to_le_bytes());
    nonce.into()
}

/// The secrets of an epoch's parents, opened with its secret; each is checked against the
/// parent's hash by the caller (a parent's commit, or [`first_epoch`]).
pub fn open_parents(
    workspace: Id,
    secret: &Secret,
    record: &Record,
) -> Result<Vec<(EpochHash, Secret)>> {
    let Kind::Epoch {
        parents,
        sealed_parents,
        ..
    } = &record.kind
    else {
        return Ok(Vec::new());
    };
    let cipher = ChaCha20Poly1305::new(&derive(workspace, secret, &[PARENTS]).into());
    parents
        .iter()
        .zip(sealed_parents)
        .enumerate()
        .map(|(i, (hash, sealed))| {
            let opened = cipher
                .decrypt(
                    &parent_nonce(i),
                    Payload {
                        msg: sealed,
                        aad: hash,
                    },
                )
                .map_err(|_| anyhow::anyhow!("an epoch's parent secret does not open"))?;
            Ok((
                hash.as_slice().try_into().context("a parent hash")?,
                opened.as_slice().try_into().context("a parent secret")?,
            ))
        })
        .collect()
}

/// Why a keyring record is not adopted.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// It breaks a rule: never adopted.
    #[error("{0}")]
    Broken(String),
    /// It names epochs or workspace changes this node does not have yet.
    #[error("it waits for {0}")]
    Waiting(String),
}

/// Checks an epoch record (`Kind::Epoch`) by `author` against the workspace `state` at its
/// basis: a removal's epoch is the creator's and its member removed at the basis; a repair
/// is any current member's; and its wraps go to exactly [`recipients`] of that state.
pub fn check_epoch(
    record: &Record,
    author: &[u8; 32],
    state: &WorkspaceState,
    creator: &[u8],
) -> std::result::Result<(), Refusal> {
    let Kind::Epoch { reason, .. } = &record.kind else {
        return Err(Refusal::Broken("not an epoch record".into()));
    };
    let author_hex = hex::encode(author);
    match reason {
        Reason::Removal { member } => {
            // The creator's, from any device of theirs.
            let creator_hex = hex::encode(creator);
            let by_creator = state
                .active_device_member(&author_hex)
                .is_some_and(|m| m.id == creator_hex);
            if !by_creator {
                return Err(Refusal::Broken(format!(
                    "an epoch for a removal was signed by {}, not the workspace's creator",
                    state.name_of(&author_hex)
                )));
            }
            if state.member(member).is_none_or(|m| !m.removed) {
                return Err(Refusal::Broken(
                    "an epoch names a removal its basis does not hold".into(),
                ));
            }
        }
        Reason::Repair => {
            if state.active_device_member(&author_hex).is_none() {
                return Err(Refusal::Broken(format!(
                    "an epoch was signed by {}, not by a device of a current member (removed members and revoked devices start none)",
                    state.name_of(&author_hex)
                )));
            }
        }
    }
    let expected: BTreeSet<[u8; 32]> = recipients(state).into_keys().collect();
    let wrapped: BTreeSet<[u8; 32]> = record.devices().collect();
    if let Some(extra) = wrapped.difference(&expected).next() {
        return Err(Refusal::Broken(format!(
            "an epoch wraps its secret to {}, who is not a current member with a published key at its basis",
            state.name_of(&hex::encode(extra))
        )));
    }
    if let Some(missing) = expected.difference(&wrapped).next() {
        return Err(Refusal::Broken(format!(
            "an epoch leaves out {}, a current member at its basis",
            state.name_of(&hex::encode(missing))
        )));
    }
    Ok(())
}

/// What a node seals new changes under.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Sealing {
    /// The workspace key (the first epoch): nobody was ever removed.
    #[default]
    First,
    /// This epoch (hash).
    Epoch(ByteBuf),
    /// No epoch this node holds is safe: someone was removed and every epoch it can open
    /// went to a removed device. A new one must be started before anything is sealed.
    Waiting,
}

/// An epoch a node can open, as [`choose`] weighs it.
pub struct Candidate<'a> {
    /// Its hash.
    pub hash: &'a EpochHash,
    /// Its distance from the first epoch (the longest chain of parents).
    pub depth: u32,
    /// Every device its secret was wrapped to, by its record and shares of it.
    pub recipients: &'a BTreeSet<[u8; 32]>,
}

/// The epoch to seal under: the greatest (deepest, then greatest hash) of the epochs this
/// node can open that went to no removed device; the first epoch while nobody was removed.
/// Every node that holds the same epochs and knows the same removals chooses the same.
pub fn choose(candidates: &[Candidate<'_>], removed: &BTreeSet<[u8; 32]>) -> Sealing {
    candidates
        .iter()
        .filter(|c| c.recipients.is_disjoint(removed))
        .max_by_key(|c| (c.depth, *c.hash))
        .map(|c| Sealing::Epoch(ByteBuf::from(c.hash.to_vec())))
        .unwrap_or(if removed.is_empty() {
            Sealing::First
        } else {
            Sealing::Waiting
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex32(text: &str) -> [u8; 32] {
        hex::decode(text).unwrap().try_into().unwrap()
    }

    /// An RNG that hands out fixed bytes: HPKE's ephemeral key is DeriveKeyPair of 32 of
    /// them, so the known answer's `ikmE` reproduces its `enc`.
    struct Fixed(Vec<u8>);

    impl hpke::rand_core::TryRng for Fixed {
        type Error = std::convert::Infallible;
        fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
            unreachable!("HPKE draws whole keys")
        }
        fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
            unreachable!("HPKE draws whole keys")
        }
        fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
            let taken: Vec<u8> = self.0.drain(..dst.len()).collect();
            dst.copy_from_slice(&taken);
            Ok(())
        }
    }

    impl hpke::rand_core::TryCryptoRng for Fixed {}

    #[test]
    fn the_suite_is_rfc_9180s_x25519_sha256_chacha20poly1305() {
        // RFC 9180, appendix A.2.1 (base mode), as the hpke crate's test vectors carry it.
        let (secret, public) = Kem::derive_keypair(
            &hex::decode("1ac01f181fdf9f352797655161c58b75c656a6cc2716dcb66372da835542e1df")
                .unwrap(),
        );
        let public: [u8; 32] = public.to_bytes().into();
        assert_eq!(
            public,
            hex32("4310ee97d88cc1f088a5576c77ab0cf5c3ac797f3d95139c6c84b5429c59662a")
        );
        let info = hex::decode("4f6465206f6e2061204772656369616e2055726e").unwrap();
        let aad = hex::decode("436f756e742d30").unwrap();
        let plaintext =
            hex::decode("4265617574792069732074727574682c20747275746820626561757479").unwrap();
        let mut rng = Fixed(
            hex::decode("909a9b35d3dc4713a5e72a4da274b55d3d3821a37e5d099e74a647db583a904b")
                .unwrap(),
        );
        let recipient = <Kem as hpke::Kem>::PublicKey::from_bytes(&public).unwrap();
        let (encapped, ciphertext) = hpke::single_shot_seal_with_rng::<Aead, Kdf, Kem>(
            &OpModeS::Base,
            &recipient,
            &info,
            &plaintext,
            &aad,
            &mut rng,
        )
        .unwrap();
        let encapped: [u8; 32] = encapped.to_bytes().into();
        assert_eq!(
            encapped,
            hex32("1afa08d3dec047a643885163f1180476fa7ddb54c6a8029ea33f95796bf2ac4a")
        );
        assert_eq!(
            hex::encode(&ciphertext),
            "1c5250d8034ec2b784ba2cfd69dbdb8af406cfe3ff938e131f0def8c8b60b4db21993c62ce81883d2dd1b51a28"
        );
        let opened = hpke::single_shot_open::<Aead, Kdf, Kem>(
            &OpModeR::Base,
            &secret,
            &<Kem as hpke::Kem>::EncappedKey::from_bytes(&encapped).unwrap(),
            &info,
            &ciphertext,
            &aad,
        )
        .unwrap();
        assert_eq!(opened, plaintext);
    }

    #[test]
    fn a_wrap_opens_for_its_device_and_context_only() {
        let ana = DeviceKey::of(&SigningKey::from_bytes(&[1; 32]));
        let bo = DeviceKey::of(&SigningKey::from_bytes(&[2; 32]));
        let secret = [7; 32];
        let wrapped = wrap(&ana.public(), b"epoch 1 for ana", &secret).unwrap();
        assert_eq!(ana.unwrap(b"epoch 1 for ana", &wrapped).unwrap(), secret);
        assert!(bo.unwrap(b"epoch 1 for ana", &wrapped).is_err());
        assert!(ana.unwrap(b"epoch 2 for ana", &wrapped).is_err());
        let mut damaged = wrapped.clone();
        damaged.ciphertext[0] ^= 1;
        assert!(ana.unwrap(b"epoch 1 for ana", &damaged).is_err());
        // Fresh randomness each time: two wraps of one secret share nothing.
        let again = wrap(&ana.public(), b"epoch 1 for ana", &secret).unwrap();
        assert_ne!(again.encapped, wrapped.encapped);
    }

    #[test]
    fn the_encryption_key_is_the_devices_own_and_certified_by_it() {
        let device = SigningKey::from_bytes(&[3; 32]);
        let key = DeviceKey::of(&device);
        assert_eq!(
            key.public(),
            DeviceKey::of(&device).public(),
            "derived, not drawn"
        );
        assert_ne!(key.public(), device.verifying_key().to_bytes());
        assert_ne!(
            key.public(),
            DeviceKey::of(&SigningKey::from_bytes(&[4; 32])).public()
        );
        let workspace = Id([9; 16]);
        let me = device.verifying_key().to_bytes();
        let signature = certify(&device, workspace, &key.public());
        assert!(is_certified(&me, workspace, &key.public(), &signature));
        assert!(!is_certified(&me, Id([8; 16]), &key.public(), &signature));
        let other = DeviceKey::of(&SigningKey::from_bytes(&[4; 32])).public();
        assert!(!is_certified(&me, workspace, &other, &signature));
        let stranger = SigningKey::from_bytes(&[5; 32]).verifying_key().to_bytes();
        assert!(!is_certified(
            &stranger,
            workspace,
            &key.public(),
            &signature
        ));
    }

    /// Ana (creator), Bo and Cy, each with a published encryption key; Cy removed.
    fn team() -> (Vec<SigningKey>, WorkspaceState) {
        let keys: Vec<SigningKey> = (1..=3u8)
            .map(|i| SigningKey::from_bytes(&[i; 32]))
            .collect();
        let mut state = WorkspaceState::default();
        for (key, name) in keys.iter().zip(["Ana", "Bo", "Cy"]) {
            let id = hex::encode(key.verifying_key().to_bytes());
            let mut member = crate::workspace::Member::for_test(&id, name, "UTC");
            member.encryption = Some(hex::encode(DeviceKey::of(key).public()));
            state.members.push(member);
        }
        state.members[2].removed = true;
        (keys, state)
    }

    const WORKSPACE: Id = Id([5; 16]);

    fn removal(recipients: &BTreeMap<[u8; 32], [u8; 32]>) -> (NewEpoch, Record) {
        let first = [9; 32];
        let new = new_epoch(
            WORKSPACE,
            &[(first_epoch(WORKSPACE, &first), first)],
            &[[7; 32]],
            Reason::Removal {
                member: hex::encode(SigningKey::from_bytes(&[3; 32]).verifying_key().to_bytes()),
            },
            recipients,
        )
        .unwrap();
        let record = Record::decode(&new.body, WORKSPACE).unwrap();
        (new, record)
    }

    #[test]
    fn an_epoch_wraps_to_exactly_the_current_devices_and_walks_back_to_the_first() {
        let (keys, state) = team();
        let creator = keys[0].verifying_key().to_bytes();
        let (new, record) = removal(&recipients(&state));
        assert_eq!(record.wraps.len(), 2, "Ana and Bo, not Cy");
        check_epoch(&record, &creator, &state, &creator).unwrap();
        let Kind::Epoch { commit: c, .. } = &record.kind else {
            panic!()
        };
        let c: [u8; 32] = c.as_slice().try_into().unwrap();
        for key in &keys[..2] {
            assert_eq!(record.unwrap_for(key, &c).unwrap().unwrap(), new.secret);
        }
        assert!(record.unwrap_for(&keys[2], &c).is_none(), "no wrap for Cy");
        let parents = open_parents(WORKSPACE, &new.secret, &record).unwrap();
        assert_eq!(parents, vec![(first_epoch(WORKSPACE, &[9; 32]), [9; 32])]);
        assert!(open_parents(WORKSPACE, &[1; 32], &record).is_err());
        // The per-document keys differ by document and by epoch.
        let a = seal_key(WORKSPACE, &new.secret, &[[1; 16]]);
        assert_ne!(a, seal_key(WORKSPACE, &new.secret, &[[2; 16]]));
        assert_ne!(a, seal_key(WORKSPACE, &[9; 32], &[[1; 16]]));
    }

    #[test]
    fn forged_epochs_are_refused_wrong_signer_missing_or_extra_wrap_wrong_secret() {
        let (keys, state) = team();
        let creator = keys[0].verifying_key().to_bytes();
        let bo = keys[1].verifying_key().to_bytes();
        let (_, genuine) = removal(&recipients(&state));
        // Bo signs a removal: only the creator may.
        let refused = check_epoch(&genuine, &bo, &state, &creator).unwrap_err();
        assert!(
            refused.to_string().contains("not the workspace's creator"),
            "{refused}"
        );
        // Bo left out.
        let mut fewer = recipients(&state);
        fewer.remove(&bo);
        let (_, missing) = removal(&fewer);
        let refused = check_epoch(&missing, &creator, &state, &creator).unwrap_err();
        assert!(refused.to_string().contains("leaves out Bo"), "{refused}");
        // Cy, removed, wrapped anyway.
        let mut more = recipients(&state);
        let cy = keys[2].verifying_key().to_bytes();
        more.insert(cy, DeviceKey::of(&keys[2]).public());
        let (_, extra) = removal(&more);
        let refused = check_epoch(&extra, &creator, &state, &creator).unwrap_err();
        assert!(
            refused.to_string().contains("wraps its secret to Cy"),
            "{refused}"
        );
        // A removal its basis does not hold.
        let mut kept = state.clone();
        kept.members[2].removed = false;
        let refused = check_epoch(&genuine, &creator, &kept, &creator).unwrap_err();
        assert!(refused.to_string().contains("does not hold"), "{refused}");
        // A wrap of another secret than the one the record commits to opens, and is refused.
        let (other, _) = removal(&recipients(&state));
        let mut swapped = genuine.clone();
        let Kind::Epoch { commit, .. } = &other_record(&other).kind else {
            panic!()
        };
        let foreign: [u8; 32] = commit.as_slice().try_into().unwrap();
        let Kind::Epoch { commit, .. } = &genuine.kind else {
            panic!()
        };
        let own: [u8; 32] = commit.as_slice().try_into().unwrap();
        swapped.wraps = other_record(&other).wraps;
        assert!(swapped.unwrap_for(&keys[1], &own).unwrap().is_err());
        assert!(swapped.unwrap_for(&keys[1], &foreign).unwrap().is_ok());
        // Malformed records do not decode.
        let mut twice = genuine.clone();
        twice.wraps.push(twice.wraps[0].clone());
        assert!(Record::decode(&twice.encode(), WORKSPACE).is_err());
        assert!(Record::decode(&genuine.encode(), Id([6; 16])).is_err());
        assert!(Record::decode(b"\xa0", WORKSPACE).is_err());
    }

    #[test]
    fn a_revoked_device_starts_no_epoch_and_one_its_author_holds_is_not_sealed_under() {
        let (keys, mut state) = team();
        let creator = keys[0].verifying_key().to_bytes();
        // Bo's laptop, revoked by Bo.
        let laptop = SigningKey::from_bytes(&[4; 32]);
        let laptop_id = hex::encode(laptop.verifying_key().to_bytes());
        let bo = &mut state.members[1];
        bo.devices = vec![
            crate::workspace::Device {
                key: bo.id.clone(),
                encryption: bo.encryption.clone(),
                by: None,
                revoked: None,
                lock: None,
            },
            crate::workspace::Device {
                key: laptop_id.clone(),
                encryption: Some(hex::encode(DeviceKey::of(&laptop).public())),
                by: Some(bo.id.clone()),
                revoked: Some(1),
                lock: None,
            },
        ];
        bo.keys = vec![bo.id.clone(), laptop_id];
        let repair = new_epoch(
            WORKSPACE,
            &[(first_epoch(WORKSPACE, &[9; 32]), [9; 32])],
            &[[7; 32]],
            Reason::Repair,
            &recipients(&state),
        )
        .unwrap();
        let record = Record::decode(&repair.body, WORKSPACE).unwrap();
        let by_laptop = check_epoch(
            &record,
            &laptop.verifying_key().to_bytes(),
            &state,
            &creator,
        );
        assert!(
            by_laptop.is_err_and(|e| e.to_string().contains("revoked devices start none")),
            "a repair by a revoked device is refused"
        );
        check_epoch(
            &record,
            &keys[1].verifying_key().to_bytes(),
            &state,
            &creator,
        )
        .unwrap();
        assert!(
            !record
                .devices()
                .any(|d| d == laptop.verifying_key().to_bytes()),
            "no wrap for the revoked laptop"
        );
        // Whoever wrote a record held its secret: an epoch whose record a removed device
        // wrote reached it, wrapped to it or not.
        let removed = removed_devices(&state);
        assert!(removed.contains(&laptop.verifying_key().to_bytes()));
    }

    fn other_record(new: &NewEpoch) -> Record {
        Record::decode(&new.body, WORKSPACE).unwrap()
    }

    #[test]
    fn the_sealing_epoch_is_the_deepest_that_reached_no_removed_device() {
        let cy = [3; 32];
        let (a, b, c) = ([1; 32], [2; 32], [4; 32]);
        let clean: BTreeSet<[u8; 32]> = [[1; 32], [2; 32]].into();
        let spoiled: BTreeSet<[u8; 32]> = [[1; 32], cy].into();
        let candidate = |hash, depth, recipients| Candidate {
            hash,
            depth,
            recipients,
        };
        let removed: BTreeSet<[u8; 32]> = [cy].into();
        assert_eq!(choose(&[], &BTreeSet::new()), Sealing::First);
        assert_eq!(choose(&[], &removed), Sealing::Waiting);
        let pick = choose(
            &[
                candidate(&a, 1, &clean),
                candidate(&b, 2, &spoiled),
                candidate(&c, 1, &clean),
            ],
            &removed,
        );
        assert_eq!(
            pick,
            Sealing::Epoch(ByteBuf::from(c.to_vec())),
            "deepest clean, then greatest hash"
        );
        assert_eq!(
            choose(&[candidate(&b, 2, &spoiled)], &removed),
            Sealing::Waiting
        );
    }
}
