//! Who belongs to a workspace, in the terms both the node and the relay can check without
//! the workspace key: the creator's claim on a workspace id, and invite proofs.
//!
//! A workspace id is derived from its creator's device key and a random salt, so nobody but
//! the creator can register a workspace with a relay, even knowing its id. Everyone else
//! joins with an invite: the inviter signs a one-time invite key, and the invite key signs
//! the new member's device key. The node writes that proof into the member's entry of the
//! workspace document; the relay checks the same proof once, when the device first
//! registers, and then remembers the invite as used.

use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::envelope::ID_LEN;

/// Why a membership proof was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProofError {
    /// A key had the wrong length or is not a curve point.
    #[error("a key in the proof is not a valid ed25519 key")]
    BadKey,
    /// A signature did not verify.
    #[error("a signature in the proof does not verify: {0}")]
    BadSignature(&'static str),
}

/// The workspace id a creator with `creator` key and `salt` owns.
pub fn workspace_id(creator: &[u8; 32], salt: &[u8; 16]) -> [u8; ID_LEN] {
    let mut hasher = Sha256::new();
    hasher.update(b"meridian/workspace/v1\0");
    hasher.update(creator);
    hasher.update(salt);
    let digest = hasher.finalize();
    let mut id = [0; ID_LEN];
    id.copy_from_slice(&digest[..ID_LEN]);
    id
}

/// What an inviter signs: the one-time invite key, for one workspace, until `expires`.
pub fn invite_message(workspace: &[u8; ID_LEN], invite_public: &[u8], expires: i64) -> Vec<u8> {
    let mut message = b"meridian/invite/v1\0".to_vec();
    message.extend_from_slice(workspace);
    message.extend_from_slice(invite_public);
    message.extend_from_slice(&expires.to_le_bytes());
    message
}

/// What the invite key signs: the new member's device key.
pub fn join_message(workspace: &[u8; ID_LEN], member_key: &[u8]) -> Vec<u8> {
    let mut message = b"meridian/join/v1\0".to_vec();
    message.extend_from_slice(workspace);
    message.extend_from_slice(member_key);
    message
}

/// Checks an ed25519 signature given as raw bytes.
pub fn verify_signature(
    key: &[u8],
    message: &[u8],
    signature: &[u8],
    what: &'static str,
) -> Result<(), ProofError> {
    let key: [u8; 32] = key.try_into().map_err(|_| ProofError::BadKey)?;
    let key = VerifyingKey::from_bytes(&key).map_err(|_| ProofError::BadKey)?;
    let signature = Signature::from_slice(signature).map_err(|_| ProofError::BadSignature(what))?;
    key.verify(message, &signature)
        .map_err(|_| ProofError::BadSignature(what))
}

/// The proof that someone holding an invite admitted a device key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinProof {
    /// The one-time invite public key.
    #[serde(with = "serde_bytes")]
    pub invite_public: Vec<u8>,
    /// The inviter's device key.
    #[serde(with = "serde_bytes")]
    pub inviter: Vec<u8>,
    /// When the invite expires, ms since the epoch.
    pub expires: i64,
    /// The inviter's signature over the invite key.
    #[serde(with = "serde_bytes")]
    pub inviter_sig: Vec<u8>,
    /// The invite key's signature over the new member's device key.
    #[serde(with = "serde_bytes")]
    pub join_sig: Vec<u8>,
}

impl JoinProof {
    /// Checks both signatures for the member with device key `member`. Expiry is the
    /// caller's business: the node checks it when joining, the relay when registering.
    pub fn verify(&self, workspace: &[u8; ID_LEN], member: &[u8]) -> Result<(), ProofError> {
        verify_signature(
            &self.inviter,
            &invite_message(workspace, &self.invite_public, self.expires),
            &self.inviter_sig,
            "the inviter's signature",
        )?;
        verify_signature(
            &self.invite_public,
            &join_message(workspace, member),
            &self.join_sig,
            "the invite's signature over the member key",
        )
    }
}

/// What a member's existing device signs to add another device of the same member: a
/// one-time device code key, for one workspace and one member, until `expires`. Distinct
/// from an invite, so neither can be taken for the other.
pub fn device_code_message(
    workspace: &[u8; ID_LEN],
    member: &[u8],
    code_public: &[u8],
    expires: i64,
) -> Vec<u8> {
    let mut message = b"meridian/device-code/v1\0".to_vec();
    message.extend_from_slice(workspace);
    message.extend_from_slice(member);
    message.extend_from_slice(code_public);
    message.extend_from_slice(&expires.to_le_bytes());
    message
}

/// What the device code key signs: the new device's key, as the member's.
pub fn device_join_message(workspace: &[u8; ID_LEN], member: &[u8], device: &[u8]) -> Vec<u8> {
    let mut message = b"meridian/device-join/v1\0".to_vec();
    message.extend_from_slice(workspace);
    message.extend_from_slice(member);
    message.extend_from_slice(device);
    message
}

/// The proof that one of a member's devices (`by`) added another: `by` signed a one-time
/// device code key, and the code key signed the new device's key. The node writes it into
/// the new device's entry under the member's; a relay checks it once, when the device first
/// registers, and admits the device as that member's.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceProof {
    /// The member (their first device key, the member id).
    #[serde(with = "serde_bytes")]
    pub member: Vec<u8>,
    /// The device that added it: the member's first device or another of theirs.
    #[serde(with = "serde_bytes")]
    pub by: Vec<u8>,
    /// The one-time device code public key.
    #[serde(with = "serde_bytes")]
    pub code_public: Vec<u8>,
    /// When the code expires, ms since the epoch.
    pub expires: i64,
    /// `by`'s signature of [`device_code_message`].
    #[serde(with = "serde_bytes")]
    pub by_sig: Vec<u8>,
    /// The code key's signature of [`device_join_message`].
    #[serde(with = "serde_bytes")]
    pub code_sig: Vec<u8>,
}

impl DeviceProof {
    /// Checks both signatures for `device` in `workspace` (not who `by` is, nor expiry).
    pub fn verify(&self, workspace: &[u8; ID_LEN], device: &[u8]) -> Result<(), ProofError> {
        verify_signature(
            &self.by,
            &device_code_message(workspace, &self.member, &self.code_public, self.expires),
            &self.by_sig,
            "the adding device's signature",
        )?;
        verify_signature(
            &self.code_public,
            &device_join_message(workspace, &self.member, device),
            &self.code_sig,
            "the device code's signature over the new device's key",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};

    #[test]
    fn a_device_proof_is_for_one_member_and_one_device() {
        let ws = [1; ID_LEN];
        let ana = SigningKey::from_bytes(&[1; 32]);
        let code = SigningKey::from_bytes(&[2; 32]);
        let laptop = [3u8; 32];
        let member = ana.verifying_key().to_bytes().to_vec();
        let code_public = code.verifying_key().to_bytes().to_vec();
        let proof = DeviceProof {
            member: member.clone(),
            by: member.clone(),
            code_public: code_public.clone(),
            expires: 10,
            by_sig: ana
                .sign(&device_code_message(&ws, &member, &code_public, 10))
                .to_bytes()
                .to_vec(),
            code_sig: code
                .sign(&device_join_message(&ws, &member, &laptop))
                .to_bytes()
                .to_vec(),
        };
        assert!(proof.verify(&ws, &laptop).is_ok());
        assert!(proof.verify(&ws, &[4; 32]).is_err(), "another device");
        assert!(
            proof.verify(&[2; ID_LEN], &laptop).is_err(),
            "another workspace"
        );
        let mut other = proof.clone();
        other.member = vec![9; 32];
        assert!(other.verify(&ws, &laptop).is_err(), "another member");
        // An invite's signature is not a device code's.
        let mut invite = proof.clone();
        invite.by_sig = ana
            .sign(&invite_message(&ws, &code_public, 10))
            .to_bytes()
            .to_vec();
        assert!(invite.verify(&ws, &laptop).is_err());
    }

    fn proof(workspace: &[u8; 16], inviter: &SigningKey, member: &[u8]) -> JoinProof {
        let invite = SigningKey::from_bytes(&[9; 32]);
        let public = invite.verifying_key().to_bytes();
        JoinProof {
            invite_public: public.to_vec(),
            inviter: inviter.verifying_key().to_bytes().to_vec(),
            expires: 10,
            inviter_sig: inviter
                .sign(&invite_message(workspace, &public, 10))
                .to_bytes()
                .to_vec(),
            join_sig: invite
                .sign(&join_message(workspace, member))
                .to_bytes()
                .to_vec(),
        }
    }

    #[test]
    fn workspace_ids_bind_the_creator() {
        let salt = [1; 16];
        assert_eq!(workspace_id(&[2; 32], &salt), workspace_id(&[2; 32], &salt));
        assert_ne!(workspace_id(&[2; 32], &salt), workspace_id(&[3; 32], &salt));
    }

    #[test]
    fn proofs_bind_workspace_member_and_expiry() {
        let inviter = SigningKey::from_bytes(&[3; 32]);
        let good = proof(&[5; 16], &inviter, &[7; 32]);
        good.verify(&[5; 16], &[7; 32]).unwrap();
        assert!(good.verify(&[6; 16], &[7; 32]).is_err());
        assert!(good.verify(&[5; 16], &[8; 32]).is_err());
        let mut later = good.clone();
        later.expires += 1;
        assert!(later.verify(&[5; 16], &[7; 32]).is_err());
        let mut junk = good;
        junk.inviter = vec![1, 2, 3];
        assert_eq!(junk.verify(&[5; 16], &[7; 32]), Err(ProofError::BadKey));
    }
}
