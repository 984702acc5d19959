//! Sealing and opening envelopes: XChaCha20-Poly1305 with the workspace key, ed25519
//! signatures with the device key. The envelope type itself lives in the relay crate,
//! which can check signatures but has no cipher to open them with.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use ed25519_dalek::SigningKey;
use meridian_relay::Envelope;
use meridian_relay::envelope::NONCE_LEN;

use crate::id::{Id, random_bytes};

/// A workspace's symmetric key.
pub type WorkspaceKey = [u8; 32];

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
        XChaCha20Poly1305::new(key.into())
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .expect("encryption into memory cannot fail")
    })
}

/// Decrypts a verified envelope with the workspace key.
pub fn open(key: &WorkspaceKey, envelope: &Envelope) -> anyhow::Result<Vec<u8>> {
    let cipher = XChaCha20Poly1305::new(key.into());
    let aad = envelope.associated_data();
    cipher
        .decrypt(
            XNonce::from_slice(&envelope.nonce),
            Payload { msg: &envelope.ciphertext, aad: &aad },
        )
        .map_err(|_| {
            anyhow::anyhow!(
                "an envelope for document {} does not decrypt with this workspace's key: it was made for another workspace or altered",
                hex::encode(&envelope.doc)
            )
        })
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
}
