//! The sealed, signed change envelope: the only form in which a change leaves a node.
//!
//! An envelope carries automerge change bytes encrypted with the workspace key (the node
//! seals and opens them; this crate never can) and an ed25519 signature by the device that
//! wrote them. Anyone can check the signature and the shape; only members can read the
//! plaintext. The relay stores envelopes exactly as they arrive, and bundles are lists of them.

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The envelope format version this code writes and accepts.
pub const ENVELOPE_VERSION: u8 = 1;

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
    #[error("envelope version {0} is not supported (this build reads version {ENVELOPE_VERSION})")]
    Version(u8),
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

/// A sealed batch of automerge changes to one document, signed by its author's device.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// Format version, [`ENVELOPE_VERSION`].
    pub version: u8,
    /// The workspace the document belongs to.
    #[serde(with = "serde_bytes")]
    pub workspace: Vec<u8>,
    /// The document the changes apply to.
    #[serde(with = "serde_bytes")]
    pub doc: Vec<u8>,
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
        let mut envelope = Envelope {
            version: ENVELOPE_VERSION,
            workspace: workspace.to_vec(),
            doc: doc.to_vec(),
            author: key.verifying_key().to_bytes().to_vec(),
            nonce: nonce.to_vec(),
            ciphertext: Vec::new(),
            signature: Vec::new(),
        };
        envelope.ciphertext = encrypt(&envelope.associated_data());
        envelope.signature = key.sign(&envelope.signed_bytes()).to_bytes().to_vec();
        envelope
    }

    /// The bytes the signature covers: every field but the signature, length-prefixed.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(SIGNING_CONTEXT.len() + 100 + self.ciphertext.len());
        bytes.extend_from_slice(SIGNING_CONTEXT);
        bytes.push(self.version);
        for field in [
            &self.workspace,
            &self.doc,
            &self.author,
            &self.nonce,
            &self.ciphertext,
        ] {
            bytes.extend_from_slice(&(field.len() as u64).to_le_bytes());
            bytes.extend_from_slice(field);
        }
        bytes
    }

    /// Additional authenticated data for the AEAD: binds the ciphertext to its workspace,
    /// document and author, so it cannot be moved to another document and still decrypt.
    pub fn associated_data(&self) -> Vec<u8> {
        let mut aad = Vec::with_capacity(ID_LEN * 2 + 33);
        aad.push(self.version);
        aad.extend_from_slice(&self.workspace);
        aad.extend_from_slice(&self.doc);
        aad.extend_from_slice(&self.author);
        aad
    }

    /// Checks the shape of every field and the signature. Says nothing about membership.
    pub fn verify(&self) -> Result<(), EnvelopeError> {
        self.check_shape()?;
        let key = self.author_key()?;
        let signature =
            Signature::from_slice(&self.signature).map_err(|_| EnvelopeError::BadSignature)?;
        key.verify(&self.signed_bytes(), &signature)
            .map_err(|_| EnvelopeError::BadSignature)
    }

    /// Checks the version and the length of every fixed-size field, not the signature.
    pub fn check_shape(&self) -> Result<(), EnvelopeError> {
        if self.version != ENVELOPE_VERSION {
            return Err(EnvelopeError::Version(self.version));
        }
        check_len("workspace", &self.workspace, ID_LEN)?;
        check_len("doc", &self.doc, ID_LEN)?;
        check_len("author", &self.author, 32)?;
        check_len("nonce", &self.nonce, NONCE_LEN)?;
        check_len("signature", &self.signature, 64)
    }

    /// The author's public key.
    pub fn author_key(&self) -> Result<VerifyingKey, EnvelopeError> {
        let bytes: [u8; 32] =
            self.author
                .as_slice()
                .try_into()
                .map_err(|_| EnvelopeError::FieldLength {
                    field: "author",
                    got: self.author.len(),
                    expected: 32,
                })?;
        VerifyingKey::from_bytes(&bytes).map_err(|_| EnvelopeError::BadKey)
    }

    /// The workspace id as a fixed array (call after [`Envelope::verify`]).
    pub fn workspace_id(&self) -> [u8; ID_LEN] {
        fixed(&self.workspace)
    }

    /// The document id as a fixed array (call after [`Envelope::verify`]).
    pub fn doc_id(&self) -> [u8; ID_LEN] {
        fixed(&self.doc)
    }

    /// The content hash that identifies this envelope (relays deduplicate by it).
    pub fn hash(&self) -> [u8; 32] {
        Sha256::digest(self.encode()).into()
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

/// The document id of an encoded envelope the relay stored, without decoding the rest or
/// checking the signature (it was checked when it was stored). `None` if it does not parse.
pub fn peek_doc(bytes: &[u8]) -> Option<[u8; ID_LEN]> {
    #[derive(Deserialize)]
    struct DocOnly {
        #[serde(with = "serde_bytes")]
        doc: Vec<u8>,
    }
    let only: DocOnly = crate::cbor::from_slice(bytes).ok()?;
    only.doc.as_slice().try_into().ok()
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
