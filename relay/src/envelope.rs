//! The sealed, signed change envelope: the only form in which a change leaves a node.
//!
//! An envelope carries automerge change bytes encrypted with the workspace key (the node
//! seals and opens them; this crate never can) and an ed25519 signature by the device that
//! wrote them. Anyone can check the signature and the shape; only members can read the
//! plaintext. The relay stores envelopes exactly as they arrive, and bundles are lists of them.

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The format version of an envelope of one document's changes.
pub const ENVELOPE_VERSION: u8 = 1;

/// The format version of a shared envelope: the changes of several documents, written by
/// one device and signed once. Its `doc` is empty and `docs` lists the documents, in
/// increasing order, each once; its plaintext holds one part per listed document.
pub const SHARED_VERSION: u8 = 2;

/// The format version of an envelope of one document sealed under a key epoch (the
/// workspace's keys after a removal): as [`ENVELOPE_VERSION`], but the first
/// [`EPOCH_ID_LEN`] bytes of its nonce name the epoch, and its ciphertext is sealed with a
/// key derived from that epoch for this document alone.
pub const EPOCH_VERSION: u8 = 3;

/// The format version of a shared envelope sealed under a key epoch: as
/// [`SHARED_VERSION`], with the epoch named as in [`EPOCH_VERSION`].
pub const EPOCH_SHARED_VERSION: u8 = 4;

/// The format version of a keyring record: signed, not sealed. Its `doc` is
/// [`KEYRING_DOC`], its nonce is zeros, and its `ciphertext` field holds the record in the
/// clear (the node's `keyring` module reads it): a device must be able to read the key
/// wrapped to it before it holds any key.
pub const KEYRING_VERSION: u8 = 5;

/// The document id every keyring record names, which no document has (a relay indexes
/// records under it like any document's envelopes).
pub const KEYRING_DOC: [u8; ID_LEN] = [0xff; ID_LEN];

/// How many leading bytes of an epoch envelope's nonce name its epoch (the rest is random).
pub const EPOCH_ID_LEN: usize = 8;

/// The most documents one shared envelope may carry.
pub const MAX_DOCS: usize = 1024;

/// The largest encoded envelope accepted from a file or the network (4 MiB).
pub const MAX_ENVELOPE_BYTES: usize = 4 << 20;

/// Length of workspace and document ids.
pub const ID_LEN: usize = 16;

/// Length of an XChaCha20-Poly1305 nonce.
pub const NONCE_LEN: usize = 24;

/// Domain separation for envelope signatures, so a signature made here cannot be replayed
/// as a signature over anything else the device key signs.
const SIGNING_CONTEXT: &[u8] = b"meridian/envelope/v1\0";

/// Why an envelope was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EnvelopeError {
    /// The bytes were larger than [`MAX_ENVELOPE_BYTES`].
    #[error("envelope is {0} bytes, more than the limit of {MAX_ENVELOPE_BYTES}")]
    TooLarge(usize),
    /// The bytes were not a CBOR envelope.
    #[error("envelope is not valid CBOR: {0}")]
    Malformed(String),
    /// The envelope was written by a newer or unknown format.
    #[error(
        "envelope version {0} is not supported (this build reads versions {ENVELOPE_VERSION} to {KEYRING_VERSION}); update meridian (or the relay)"
    )]
    Version(u8),
    /// A shared envelope's document list is empty, too long, unordered or repeats a document.
    #[error("envelope document list is malformed: {0}")]
    Documents(&'static str),
    /// A fixed-size field had the wrong length.
    #[error("envelope field `{field}` has {got} bytes, expected {expected}")]
    FieldLength {
        /// The field name.
        field: &'static str,
        /// Its length.
        got: usize,
        /// The length it must have.
        expected: usize,
    },
    /// The author key is not a valid ed25519 point.
    #[error("envelope author key is not a valid ed25519 public key")]
    BadKey,
    /// The signature does not match the contents and the author key.
    #[error("envelope signature does not verify: it was forged or altered")]
    BadSignature,
}

/// A sealed batch of automerge changes to one document ([`ENVELOPE_VERSION`]) or to several
/// ([`SHARED_VERSION`]), signed by its author's device.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// Format version, [`ENVELOPE_VERSION`].
    pub version: u8,
    /// The workspace the document belongs to.
    #[serde(with = "serde_bytes")]
    pub workspace: Vec<u8>,
    /// The document the changes apply to (empty in a shared envelope).
    #[serde(with = "serde_bytes")]
    pub doc: Vec<u8>,
    /// The documents a shared envelope's changes apply to, in increasing order (absent from
    /// an envelope of one document, whose encoding is unchanged by this field).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub docs: Vec<serde_bytes::ByteBuf>,
    /// The ed25519 public key of the device that wrote and signed the changes.
    #[serde(with = "serde_bytes")]
    pub author: Vec<u8>,
    /// The XChaCha20-Poly1305 nonce.
    #[serde(with = "serde_bytes")]
    pub nonce: Vec<u8>,
    /// The encrypted change bytes, with the AEAD tag.
    #[serde(with = "serde_bytes")]
    pub ciphertext: Vec<u8>,
    /// The author's signature over everything above.
    #[serde(with = "serde_bytes")]
    pub signature: Vec<u8>,
}

impl Envelope {
    /// Builds and signs an envelope. `encrypt` receives the associated data that binds the
    /// ciphertext to this envelope's workspace, document and author, and returns the ciphertext.
    pub fn sign(
        key: &SigningKey,
        workspace: [u8; ID_LEN],
        doc: [u8; ID_LEN],
        nonce: [u8; NONCE_LEN],
        encrypt: impl FnOnce(&[u8]) -> Vec<u8>,
    ) -> Envelope {
        let envelope = Envelope::unsigned(
            ENVELOPE_VERSION,
            key,
            workspace,
            doc.to_vec(),
            Vec::new(),
            nonce.to_vec(),
        );
        envelope.finish(key, encrypt)
    }

    /// Builds and signs a shared envelope of the changes to `docs` (at least two, in
    /// increasing order, each once: [`Envelope::check_shape`] refuses anything else).
    /// `encrypt` receives the associated data binding the ciphertext to the workspace, the
    /// document list and the author.
    pub fn sign_shared(
        key: &SigningKey,
        workspace: [u8; ID_LEN],
        docs: &[[u8; ID_LEN]],
        nonce: [u8; NONCE_LEN],
        encrypt: impl FnOnce(&[u8]) -> Vec<u8>,
    ) -> Envelope {
        let envelope = Envelope::unsigned(
            SHARED_VERSION,
            key,
            workspace,
            Vec::new(),
            doc_list(docs),
            nonce.to_vec(),
        );
        envelope.finish(key, encrypt)
    }

    /// An envelope of `version` by `key`'s device, before its ciphertext and signature.
    fn unsigned(
        version: u8,
        key: &SigningKey,
        workspace: [u8; ID_LEN],
        doc: Vec<u8>,
        docs: Vec<serde_bytes::ByteBuf>,
        nonce: Vec<u8>,
    ) -> Envelope {
        Envelope {
            version,
            workspace: workspace.to_vec(),
            doc,
            docs,
            author: key.verifying_key().to_bytes().to_vec(),
            nonce,
            ciphertext: Vec::new(),
            signature: Vec::new(),
        }
    }

    fn finish(mut self, key: &SigningKey, encrypt: impl FnOnce(&[u8]) -> Vec<u8>) -> Envelope {
        self.ciphertext = encrypt(&self.associated_data());
        self.signature = key.sign(&self.signed_bytes()).to_bytes().to_vec();
        self
    }

    /// Whether this is a shared envelope, of several documents.
    pub fn is_shared(&self) -> bool {
        matches!(self.version, SHARED_VERSION | EPOCH_SHARED_VERSION)
    }

    /// Whether this is a keyring record ([`KEYRING_VERSION`]), not sealed changes.
    pub fn is_keyring(&self) -> bool {
        self.version == KEYRING_VERSION
    }

    /// The id of the key epoch the envelope is sealed under, for the versions that name one
    /// (call after [`Envelope::check_shape`]); `None` for the workspace's first key.
    pub fn epoch_id(&self) -> Option<[u8; EPOCH_ID_LEN]> {
        matches!(self.version, EPOCH_VERSION | EPOCH_SHARED_VERSION)
            .then(|| self.nonce.get(..EPOCH_ID_LEN)?.try_into().ok())
            .flatten()
    }

    /// Builds and signs a keyring record carrying `body` in the clear.
    pub fn sign_keyring(key: &SigningKey, workspace: [u8; ID_LEN], body: Vec<u8>) -> Envelope {
        let envelope = Envelope::unsigned(
            KEYRING_VERSION,
            key,
            workspace,
            KEYRING_DOC.to_vec(),
            Vec::new(),
            vec![0; NONCE_LEN],
        );
        envelope.finish(key, |_| body)
    }

    /// Builds and signs an envelope sealed under a key epoch: as [`Envelope::sign`] or
    /// [`Envelope::sign_shared`] (one document when `docs` has one), with `nonce` (whose
    /// first [`EPOCH_ID_LEN`] bytes are the epoch's id). `encrypt` receives the associated
    /// data, to which the caller adds the epoch's full hash.
    pub fn sign_in_epoch(
        key: &SigningKey,
        workspace: [u8; ID_LEN],
        docs: &[[u8; ID_LEN]],
        nonce: [u8; NONCE_LEN],
        encrypt: impl FnOnce(&[u8]) -> Vec<u8>,
    ) -> Envelope {
        let (version, doc, list) = match docs {
            [doc] => (EPOCH_VERSION, doc.to_vec(), Vec::new()),
            _ => (EPOCH_SHARED_VERSION, Vec::new(), doc_list(docs)),
        };
        let envelope = Envelope::unsigned(version, key, workspace, doc, list, nonce.to_vec());
        envelope.finish(key, encrypt)
    }

    /// The document list of a shared envelope, concatenated (empty for one document).
    fn docs_concatenated(&self) -> Vec<u8> {
        self.docs.iter().flat_map(|d| d.iter().copied()).collect()
    }

    /// The bytes the signature covers: every field but the signature, length-prefixed.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(SIGNING_CONTEXT.len() + 100 + self.ciphertext.len());
        bytes.extend_from_slice(SIGNING_CONTEXT);
        bytes.push(self.version);
        let docs = self.docs_concatenated();
        let mut fields = vec![&self.workspace, &self.doc];
        if self.is_shared() {
            // Version 1 signs exactly the five fields it always did.
            fields.push(&docs);
        }
        fields.extend([&self.author, &self.nonce, &self.ciphertext]);
        for field in fields {
            bytes.extend_from_slice(&(field.len() as u64).to_le_bytes());
            bytes.extend_from_slice(field);
        }
        bytes
    }

    /// Additional authenticated data for the AEAD: binds the ciphertext to its workspace,
    /// document (or a shared envelope's document list) and author, so it cannot be moved to
    /// another document and still decrypt. Every part has a fixed length (ids of 16 bytes,
    /// a key of 32), so the concatenation is unambiguous.
    pub fn associated_data(&self) -> Vec<u8> {
        let mut aad = Vec::with_capacity(ID_LEN * (2 + self.docs.len()) + 33);
        aad.push(self.version);
        aad.extend_from_slice(&self.workspace);
        aad.extend_from_slice(&self.doc);
        aad.extend_from_slice(&self.docs_concatenated());
        aad.extend_from_slice(&self.author);
        aad
    }

    /// Checks the shape of every field and the signature. Says nothing about membership.
    pub fn verify(&self) -> Result<(), EnvelopeError> {
        self.check_shape()?;
        self.signed_by(&author_key(&self.author)?)
    }

    /// [`Envelope::verify`], taking the author's parsed key from `keys` when an earlier
    /// envelope had the same author.
    pub fn verify_with(&self, keys: &mut AuthorKeys) -> Result<(), EnvelopeError> {
        self.check_shape()?;
        self.signed_by(keys.get(&self.author)?)
    }

    /// Whether the signature is `key`'s over everything else.
    fn signed_by(&self, key: &VerifyingKey) -> Result<(), EnvelopeError> {
        let signature =
            Signature::from_slice(&self.signature).map_err(|_| EnvelopeError::BadSignature)?;
        key.verify(&self.signed_bytes(), &signature)
            .map_err(|_| EnvelopeError::BadSignature)
    }

    /// Checks the version and the length of every fixed-size field, not the signature.
    pub fn check_shape(&self) -> Result<(), EnvelopeError> {
        match self.version {
            ENVELOPE_VERSION | EPOCH_VERSION | KEYRING_VERSION => {
                check_len("doc", &self.doc, ID_LEN)?;
                if !self.docs.is_empty() {
                    return Err(EnvelopeError::Documents(
                        "an envelope of one document lists others",
                    ));
                }
            }
            SHARED_VERSION | EPOCH_SHARED_VERSION => {
                check_len("doc", &self.doc, 0)?;
                if self.docs.len() < 2 {
                    return Err(EnvelopeError::Documents(
                        "a shared envelope lists fewer than two documents",
                    ));
                }
                if self.docs.len() > MAX_DOCS {
                    return Err(EnvelopeError::Documents(
                        "a shared envelope lists more than 1024 documents",
                    ));
                }
                for doc in &self.docs {
                    check_len("docs", doc, ID_LEN)?;
                }
                if self.docs.windows(2).any(|w| w[0] >= w[1]) {
                    return Err(EnvelopeError::Documents(
                        "the documents are not in increasing order, or one repeats",
                    ));
                }
            }
            other => return Err(EnvelopeError::Version(other)),
        }
        if (self.version == KEYRING_VERSION) != (self.doc == KEYRING_DOC) {
            return Err(EnvelopeError::Documents(
                "only a keyring record may name the keyring, and it must",
            ));
        }
        check_len("workspace", &self.workspace, ID_LEN)?;
        check_len("author", &self.author, 32)?;
        check_len("nonce", &self.nonce, NONCE_LEN)?;
        check_len("signature", &self.signature, 64)
    }

    /// The workspace id as a fixed array (call after [`Envelope::verify`]).
    pub fn workspace_id(&self) -> [u8; ID_LEN] {
        fixed(&self.workspace)
    }

    /// The document id as a fixed array (call after [`Envelope::verify`]); zeros for a
    /// shared envelope, whose documents are [`Envelope::doc_ids`].
    pub fn doc_id(&self) -> [u8; ID_LEN] {
        fixed(&self.doc)
    }

    /// Every document the envelope carries changes to (call after [`Envelope::verify`]).
    pub fn doc_ids(&self) -> Vec<[u8; ID_LEN]> {
        if self.is_shared() {
            self.docs.iter().map(|d| fixed(d)).collect()
        } else {
            vec![fixed(&self.doc)]
        }
    }

    /// The content hash that identifies this envelope (relays deduplicate by it).
    pub fn hash(&self) -> [u8; 32] {
        content_hash(&self.encode())
    }

    /// Encodes as CBOR.
    pub fn encode(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(self.ciphertext.len() + 200);
        ciborium::into_writer(self, &mut bytes).expect("writing CBOR to a Vec cannot fail");
        bytes
    }

    /// Decodes CBOR bytes, refusing oversized input, then checks shape and signature.
    pub fn decode(bytes: &[u8]) -> Result<Envelope, EnvelopeError> {
        let envelope = Envelope::decode_stored(bytes)?;
        envelope.verify()?;
        Ok(envelope)
    }

    /// [`Envelope::decode`] of one of many envelopes, with the authors' keys parsed once
    /// ([`AuthorKeys`]).
    pub fn decode_with(bytes: &[u8], keys: &mut AuthorKeys) -> Result<Envelope, EnvelopeError> {
        let envelope = Envelope::decode_stored(bytes)?;
        envelope.verify_with(keys)?;
        Ok(envelope)
    }

    /// Decodes an envelope that was verified when it was stored (by this process's own
    /// store): the shape is checked, the signature is not (about 30 µs saved). Its
    /// ciphertext is still bound to the workspace, document and author by the AEAD, so a
    /// damaged field fails to open rather than passing for something else.
    pub fn decode_stored(bytes: &[u8]) -> Result<Envelope, EnvelopeError> {
        if bytes.len() > MAX_ENVELOPE_BYTES {
            return Err(EnvelopeError::TooLarge(bytes.len()));
        }
        let envelope: Envelope =
            crate::cbor::from_slice(bytes).map_err(|e| EnvelopeError::Malformed(e.to_string()))?;
        envelope.check_shape()?;
        Ok(envelope)
    }
}

/// Authors' public keys, parsed once for many envelopes.
///
/// Parsing a key decompresses a curve point: 4 µs of the 41 µs that parsing and checking
/// took together on the machine of BENCHMARKS.md. A sync batch or a bundle holds runs of
/// envelopes by the same few devices, so most checks skip it.
#[derive(Default)]
pub struct AuthorKeys {
    parsed: std::collections::HashMap<[u8; 32], VerifyingKey>,
}

impl AuthorKeys {
    /// More distinct authors than any workspace has devices: past it, the cache starts over
    /// rather than grow with what a hostile peer sends.
    const MOST: usize = 4096;

    /// The parsed key of `author`, which must be 32 bytes and a valid point.
    fn get(&mut self, author: &[u8]) -> Result<&VerifyingKey, EnvelopeError> {
        let bytes = author_bytes(author)?;
        if !self.parsed.contains_key(&bytes) {
            let key = author_key(author)?;
            if self.parsed.len() >= Self::MOST {
                self.parsed.clear();
            }
            self.parsed.insert(bytes, key);
        }
        Ok(&self.parsed[&bytes])
    }
}

/// The hash of an encoded envelope ([`Envelope::hash`] without encoding it again).
pub fn content_hash(encoded: &[u8]) -> [u8; 32] {
    Sha256::digest(encoded).into()
}

/// An author field as a key's 32 bytes.
fn author_bytes(author: &[u8]) -> Result<[u8; 32], EnvelopeError> {
    author.try_into().map_err(|_| EnvelopeError::FieldLength {
        field: "author",
        got: author.len(),
        expected: 32,
    })
}

/// An author field parsed as an ed25519 public key (a point decompressed).
fn author_key(author: &[u8]) -> Result<VerifyingKey, EnvelopeError> {
    VerifyingKey::from_bytes(&author_bytes(author)?).map_err(|_| EnvelopeError::BadKey)
}

/// The documents of an encoded envelope the relay stored, without decoding the rest or
/// checking the signature (it was checked when it was stored). `None` if it does not parse.
pub fn peek_docs(bytes: &[u8]) -> Option<Vec<[u8; ID_LEN]>> {
    #[derive(Deserialize)]
    struct DocsOnly {
        #[serde(with = "serde_bytes")]
        doc: Vec<u8>,
        #[serde(default)]
        docs: Vec<serde_bytes::ByteBuf>,
    }
    let only: DocsOnly = crate::cbor::from_slice(bytes).ok()?;
    if only.docs.is_empty() {
        return Some(vec![only.doc.as_slice().try_into().ok()?]);
    }
    only.docs
        .iter()
        .map(|d| d.as_slice().try_into().ok())
        .collect()
}

/// A shared envelope's `docs` field.
fn doc_list(docs: &[[u8; ID_LEN]]) -> Vec<serde_bytes::ByteBuf> {
    docs.iter()
        .map(|d| serde_bytes::ByteBuf::from(d.to_vec()))
        .collect()
}

fn check_len(field: &'static str, bytes: &[u8], expected: usize) -> Result<(), EnvelopeError> {
    if bytes.len() == expected {
        Ok(())
    } else {
        Err(EnvelopeError::FieldLength {
            field,
            got: bytes.len(),
            expected,
        })
    }
}

fn fixed(bytes: &[u8]) -> [u8; ID_LEN] {
    let mut id = [0; ID_LEN];
    let n = bytes.len().min(ID_LEN);
    id[..n].copy_from_slice(&bytes[..n]);
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn sample() -> Envelope {
        Envelope::sign(&key(7), [1; 16], [2; 16], [3; 24], |_| b"secret".to_vec())
    }

    #[test]
    fn round_trips_and_verifies() {
        let envelope = sample();
        let decoded = Envelope::decode(&envelope.encode()).unwrap();
        assert_eq!(decoded, envelope);
        assert_eq!(decoded.hash(), envelope.hash());
    }

    #[test]
    fn keys_parsed_once_give_the_verdicts_of_keys_parsed_each_time() {
        let by = |seed: u8| Envelope::sign(&key(seed), [1; 16], [2; 16], [3; 24], |_| vec![seed]);
        let mut forged = by(7);
        forged.ciphertext[0] ^= 1;
        // Signed by 8 but naming 7, whose key is parsed by then.
        let mut impostor = by(8);
        impostor.author = key(7).verifying_key().to_bytes().to_vec();
        let not_a_point = (0..=u8::MAX)
            .map(|b| [b; 32])
            .find(|b| VerifyingKey::from_bytes(b).is_err())
            .unwrap();
        let mut pointless = by(9);
        pointless.author = not_a_point.to_vec();
        let mut short = by(9);
        short.author.pop();
        let sequence = [
            by(7),
            forged,
            by(8),
            impostor,
            by(7),
            pointless,
            short,
            by(9),
        ];
        let mut keys = AuthorKeys::default();
        let verdicts: Vec<_> = sequence
            .iter()
            .map(|e| Envelope::decode_with(&e.encode(), &mut keys).map(|_| ()))
            .collect();
        let fresh: Vec<_> = sequence
            .iter()
            .map(|e| Envelope::decode(&e.encode()).map(|_| ()))
            .collect();
        assert_eq!(verdicts, fresh);
        let bad = || Err(EnvelopeError::BadSignature);
        assert_eq!(verdicts[..5], [Ok(()), bad(), Ok(()), bad(), Ok(())]);
        assert_eq!(verdicts[5], Err(EnvelopeError::BadKey));
        assert!(matches!(
            verdicts[6],
            Err(EnvelopeError::FieldLength { .. })
        ));
        assert_eq!(verdicts[7], Ok(()));

        // Past its bound the cache starts over, and still gives the same verdicts.
        for i in 0..=AuthorKeys::MOST as u64 {
            let mut seed = [0; 32];
            seed[..8].copy_from_slice(&(i + 1000).to_le_bytes());
            let public = SigningKey::from_bytes(&seed).verifying_key().to_bytes();
            keys.get(&public).unwrap();
        }
        assert!(keys.parsed.len() <= AuthorKeys::MOST);
        let mut forged = by(7);
        forged.signature[0] ^= 1;
        assert_eq!(
            forged.verify_with(&mut keys),
            Err(EnvelopeError::BadSignature)
        );
        assert_eq!(by(7).verify_with(&mut keys), Ok(()));
    }

    #[test]
    fn any_altered_field_breaks_the_signature() {
        let alterations: [fn(&mut Envelope); 5] = [
            |e| e.workspace[0] ^= 1,
            |e| e.doc[0] ^= 1,
            |e| e.nonce[0] ^= 1,
            |e| e.ciphertext[0] ^= 1,
            |e| e.signature[0] ^= 1,
        ];
        for alter in alterations {
            let mut envelope = sample();
            alter(&mut envelope);
            assert_eq!(envelope.verify(), Err(EnvelopeError::BadSignature));
        }
    }

    fn shared() -> Envelope {
        Envelope::sign_shared(&key(7), [1; 16], &[[2; 16], [5; 16]], [3; 24], |_| {
            b"secret".to_vec()
        })
    }

    #[test]
    fn a_shared_envelope_round_trips_and_binds_its_document_list() {
        let envelope = shared();
        let decoded = Envelope::decode(&envelope.encode()).unwrap();
        assert_eq!(decoded, envelope);
        assert_eq!(decoded.doc_ids(), vec![[2; 16], [5; 16]]);
        assert_eq!(peek_docs(&envelope.encode()), Some(vec![[2; 16], [5; 16]]));
        assert_eq!(peek_docs(&sample().encode()), Some(vec![[2; 16]]));
        // Another document list, or the same documents signed as one: not what was signed.
        let mut other = envelope.clone();
        other.docs[1][0] = 6;
        assert_eq!(other.verify(), Err(EnvelopeError::BadSignature));
        assert_ne!(other.associated_data(), envelope.associated_data());
        let mut demoted = envelope.clone();
        demoted.version = ENVELOPE_VERSION;
        demoted.doc = demoted.docs[0].to_vec();
        demoted.docs.clear();
        assert_eq!(demoted.verify(), Err(EnvelopeError::BadSignature));
    }

    #[test]
    fn a_shared_envelope_lists_two_or_more_documents_in_order_once() {
        let listing = |docs: &[[u8; 16]]| {
            let mut envelope = shared();
            envelope.docs = docs
                .iter()
                .map(|d| serde_bytes::ByteBuf::from(d.to_vec()))
                .collect();
            Envelope::decode(&envelope.encode()).map(|_| ())
        };
        let malformed =
            |r: Result<(), EnvelopeError>| matches!(r, Err(EnvelopeError::Documents(_)));
        assert!(malformed(listing(&[[2; 16]])), "one document");
        assert!(malformed(listing(&[])), "none");
        assert!(malformed(listing(&[[5; 16], [2; 16]])), "out of order");
        assert!(malformed(listing(&[[2; 16], [2; 16]])), "repeated");
        assert!(malformed(listing(&vec![[0; 16]; MAX_DOCS + 1])));
        let mut both = shared();
        both.doc = vec![2; 16];
        assert!(matches!(
            Envelope::decode(&both.encode()),
            Err(EnvelopeError::FieldLength { field: "doc", .. })
        ));
        let mut listed = sample();
        listed.docs = shared().docs;
        assert!(malformed(Envelope::decode(&listed.encode()).map(|_| ())));
        let mut short = shared();
        short.docs[0].pop();
        assert!(matches!(
            Envelope::decode(&short.encode()),
            Err(EnvelopeError::FieldLength { field: "docs", .. })
        ));
    }

    #[test]
    fn re_signed_by_another_key_is_a_different_author() {
        let mut envelope = sample();
        envelope.author = key(8).verifying_key().to_bytes().to_vec();
        assert_eq!(envelope.verify(), Err(EnvelopeError::BadSignature));
    }

    #[test]
    fn malformed_input_is_an_error() {
        assert!(matches!(
            Envelope::decode(b""),
            Err(EnvelopeError::Malformed(_))
        ));
        assert!(matches!(
            Envelope::decode(&[0xff; 64]),
            Err(EnvelopeError::Malformed(_))
        ));
        let mut short = sample();
        short.nonce.pop();
        assert_eq!(
            Envelope::decode(&short.encode()),
            Err(EnvelopeError::FieldLength {
                field: "nonce",
                got: 23,
                expected: 24
            })
        );
        assert_eq!(
            Envelope::decode(&vec![0; MAX_ENVELOPE_BYTES + 1]),
            Err(EnvelopeError::TooLarge(MAX_ENVELOPE_BYTES + 1))
        );
    }
}
