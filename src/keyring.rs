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
//! Pure: no IO, no clock.

use anyhow::{Result, bail};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use hpke::kem::X25519HkdfSha256;
use hpke::{Deserializable, Kem as _, OpModeR, OpModeS, Serializable};

use crate::id::Id;

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
}
