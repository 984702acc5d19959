//! Several devices per person: the one-time code a member's device makes to add another
//! (`meridian device add`), and what the new device proves with it (`meridian device join`).
//!
//! The code carries what an invite does (the workspace, its key, the current key epoch,
//! the relays) and a one-time signing key that the adding device certified for this
//! member. The new device signs its own key with it: that proof
//! ([`meridian_relay::membership::DeviceProof`]) goes into the new device's entry under
//! the member's, beside its encryption key (certified by its own signing key, which is its
//! countersignature); every node counts the device as the member's once the proof leads
//! back to the member's first device, and a relay admits it on the same proof.
//!
//! Pure: no store, no clock.

use anyhow::{Context, Result, bail};
use base64::Engine as _;
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use meridian_relay::membership::{
    DeviceProof, device_code_message, device_join_message, verify_signature,
};
use serde::{Deserialize, Serialize};

use crate::id::{Id, random_bytes};

/// What every device code starts with.
pub const DEVICE_PREFIX: &str = "meridian-device-1-";

/// A one-time code that adds a device to a member's devices.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DeviceCode {
    /// The workspace id.
    #[serde(with = "serde_bytes")]
    pub workspace: Vec<u8>,
    /// Its display name.
    pub name: String,
    /// The workspace key.
    #[serde(with = "serde_bytes")]
    pub key: Vec<u8>,
    /// The creator's device key.
    #[serde(with = "serde_bytes")]
    pub creator: Vec<u8>,
    /// Relay URLs.
    pub relays: Vec<String>,
    /// The member (their first device's key).
    #[serde(with = "serde_bytes")]
    pub member: Vec<u8>,
    /// The device that made the code.
    #[serde(with = "serde_bytes")]
    pub by: Vec<u8>,
    /// The one-time code secret key.
    #[serde(with = "serde_bytes")]
    pub secret: Vec<u8>,
    /// Expiry, ms since the epoch.
    pub expires: i64,
    /// `by`'s signature of the code's public key for this member.
    #[serde(with = "serde_bytes")]
    pub by_sig: Vec<u8>,
    /// The key epoch the adding device seals under (hash, secret), when someone was
    /// removed before: the new device reads everything from it back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<(serde_bytes::ByteBuf, serde_bytes::ByteBuf)>,
}

impl DeviceCode {
    /// A code made by `by`, a device of `member`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        by: &SigningKey,
        member: &[u8],
        workspace: Id,
        name: &str,
        key: &[u8],
        creator: &[u8],
        relays: Vec<String>,
        expires: i64,
    ) -> DeviceCode {
        let secret = SigningKey::from_bytes(&random_bytes());
        let public = secret.verifying_key().to_bytes();
        let by_sig = by.sign(&device_code_message(&workspace.0, member, &public, expires));
        DeviceCode {
            workspace: workspace.0.to_vec(),
            name: name.to_string(),
            key: key.to_vec(),
            creator: creator.to_vec(),
            relays,
            member: member.to_vec(),
            by: by.verifying_key().to_bytes().to_vec(),
            secret: secret.to_bytes().to_vec(),
            expires,
            by_sig: by_sig.to_bytes().to_vec(),
            epoch: None,
        }
    }

    /// The code, carrying the epoch (hash, secret) the adding device seals under.
    pub fn with_epoch(mut self, hash: &[u8], secret: &[u8]) -> DeviceCode {
        self.epoch = Some((
            serde_bytes::ByteBuf::from(hash.to_vec()),
            serde_bytes::ByteBuf::from(secret.to_vec()),
        ));
        self
    }

    /// The text to pass to `meridian device join`.
    pub fn encode(&self) -> String {
        let bytes = crate::store::encode(self);
        format!(
            "{DEVICE_PREFIX}{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
        )
    }

    /// Parses and checks a code.
    pub fn decode(code: &str) -> Result<DeviceCode> {
        crate::error::typed(|| {
            let code = code.trim();
            if code.starts_with(crate::workspace::INVITE_PREFIX) {
                bail!(
                    "this is an invite code, which makes a new member: pass it to `meridian join`. A device code comes from `meridian device add` on one of your own devices"
                );
            }
            let body = code.strip_prefix(DEVICE_PREFIX).with_context(|| {
                format!("this is not a Meridian device code: codes start with `{DEVICE_PREFIX}` (`meridian device add` on one of your devices makes one)")
            })?;
            let mut code: DeviceCode = crate::workspace::code_body(body, "device code")?;
            code.relays = crate::workspace::one_spelling(&code.relays);
            let workspace = code.workspace_id()?;
            let epoch_ok = code
                .epoch
                .as_ref()
                .is_none_or(|(hash, secret)| hash.len() == 32 && secret.len() == 32);
            if code.key.len() != 32
                || code.secret.len() != 32
                || code.creator.len() != 32
                || code.member.len() != 32
                || !epoch_ok
            {
                bail!("the device code is damaged: a key has the wrong length");
            }
            verify_signature(
                &code.by,
                &device_code_message(&workspace.0, &code.member, &code.public_key(), code.expires),
                &code.by_sig,
                "the adding device's signature",
            )
            .context("the device code's signature does not verify: it was altered")?;
            Ok(code)
        })
    }

    /// The workspace id.
    pub fn workspace_id(&self) -> Result<Id> {
        Id::from_slice(&self.workspace).context("the device code is damaged: bad workspace id")
    }

    fn signing_key(&self) -> SigningKey {
        let bytes: [u8; 32] = self.secret.as_slice().try_into().unwrap_or([0; 32]);
        SigningKey::from_bytes(&bytes)
    }

    fn public_key(&self) -> [u8; 32] {
        self.signing_key().verifying_key().to_bytes()
    }

    /// The proof that `device` is the member's, made with the code.
    pub fn proof_for(&self, device: &VerifyingKey) -> Result<DeviceProof> {
        let workspace = self.workspace_id()?;
        Ok(DeviceProof {
            member: self.member.clone(),
            by: self.by.clone(),
            code_public: self.public_key().to_vec(),
            expires: self.expires,
            by_sig: self.by_sig.clone(),
            code_sig: self
                .signing_key()
                .sign(&device_join_message(
                    &workspace.0,
                    &self.member,
                    &device.to_bytes(),
                ))
                .to_bytes()
                .to_vec(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_device_code_round_trips_and_its_proof_is_for_the_device_that_joins() {
        let ana = SigningKey::from_bytes(&[1; 32]);
        let member = ana.verifying_key().to_bytes();
        let code = DeviceCode::new(
            &ana,
            &member,
            Id([5; 16]),
            "Acme",
            &[9; 32],
            &member,
            vec!["ws://relay.example:7070".into()],
            100,
        );
        let decoded = DeviceCode::decode(&code.encode()).unwrap();
        let laptop = SigningKey::from_bytes(&[2; 32]).verifying_key();
        let proof = decoded.proof_for(&laptop).unwrap();
        assert!(proof.verify(&[5; 16], &laptop.to_bytes()).is_ok());
        assert!(proof.verify(&[5; 16], &[3; 32]).is_err());
        // Altered: refused with a clear word.
        let mut altered = code.clone();
        altered.member = vec![7; 32];
        let error = DeviceCode::decode(&altered.encode())
            .unwrap_err()
            .to_string();
        assert!(error.contains("does not verify"), "{error}");
        let error = DeviceCode::decode("meridian-invite-1-abc")
            .unwrap_err()
            .to_string();
        assert!(error.contains("meridian join"), "{error}");
    }
}
