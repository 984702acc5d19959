//! Scenario 10: key rotation. What a removal costs at 1,000 and 10,000 devices: the time
//! to start an epoch (a fresh secret wrapped with HPKE to every remaining device, the
//! parents sealed under it) and sign its record, the record's bytes, and what each device
//! pays to adopt it (decode, check the recipients against the membership, unwrap its own
//! wrap). Baselines: the same number of bare HPKE seals of a 32-byte secret (the floor of
//! any scheme that wraps to each device), and their bytes. And the bytes of an edit sealed
//! under an epoch against the same edit under the workspace key: the epoch is named in the
//! nonce, so envelopes do not grow.

use std::time::Instant;

use anyhow::Result;
use ed25519_dalek::SigningKey;
use meridian::id::Id;
use meridian::keyring::{self, DeviceKey, Reason, Record};
use meridian::seal::Sealer;
use meridian::workspace::{Member, WorkspaceState};

use crate::Settings;
use crate::report::{Row, Target, median};

const SCENARIO: &str = "10. Key rotation";

const WORKSPACE: Id = Id([7; 16]);

/// A workspace of `devices` members, each with a published encryption key; the last removed.
fn team(devices: usize) -> (Vec<SigningKey>, WorkspaceState) {
    let keys: Vec<SigningKey> = (0..devices)
        .map(|i| {
            let mut seed = [0; 32];
            seed[..8].copy_from_slice(&(i as u64 + 1).to_le_bytes());
            SigningKey::from_bytes(&seed)
        })
        .collect();
    let mut state = WorkspaceState::default();
    for (i, key) in keys.iter().enumerate() {
        let id = hex::encode(key.verifying_key().to_bytes());
        state.members.push(Member {
            id: id.clone(),
            name: format!("m{i}"),
            keys: vec![id],
            tz: "UTC".into(),
            hours: "09:00-17:00".into(),
            days: "mon-fri".into(),
            verified: true,
            invited_by: None,
            removed: i + 1 == devices,
            removed_at: None,
            lock: None,
            devices: Vec::new(),
            joined: None,
            admin: false,
            encryption: Some(hex::encode(DeviceKey::of(key).public())),
            away: Vec::new(),
            shown: format!("m{i}"),
        });
    }
    (keys, state)
}

/// Scenario 10.
pub fn run(settings: &Settings, rows: &mut Vec<Row>) -> Result<()> {
    let row = Row::of(SCENARIO);
    let runs = if settings.quick { 3 } else { 7 };
    for devices in [1_000usize, 10_000] {
        let (keys, state) = team(devices);
        let creator = keys[0].verifying_key().to_bytes();
        let recipients = keyring::recipients(&state);
        let first = [9; 32];
        let parents = [(keyring::first_epoch(WORKSPACE, &first), first)];
        let removed = hex::encode(keys[devices - 1].verifying_key().to_bytes());
        let mut start = Vec::new();
        let mut floor = Vec::new();
        let mut adopt = Vec::new();
        let mut bytes = 0;
        for _ in 0..runs {
            let began = Instant::now();
            let new = keyring::new_epoch(
                WORKSPACE,
                &parents,
                &[[1; 32]],
                Reason::Removal {
                    member: removed.clone(),
                },
                &recipients,
            )?;
            let envelope =
                meridian_relay::Envelope::sign_keyring(&keys[0], WORKSPACE.0, new.body.clone())
                    .encode();
            start.push(began.elapsed().as_secs_f64() * 1000.0);
            bytes = envelope.len();

            let began = Instant::now();
            let record = Record::decode(&new.body, WORKSPACE)?;
            keyring::check_epoch(&record, &creator, &state, &creator)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let commit = keyring::commit(WORKSPACE, &new.secret);
            let secret = record
                .unwrap_for(&keys[devices / 2], &commit)
                .expect("a wrap for every current device")?;
            anyhow::ensure!(secret == new.secret, "the wrap opens to the epoch's secret");
            adopt.push(began.elapsed().as_secs_f64() * 1000.0);

            let began = Instant::now();
            for encryption in recipients.values() {
                keyring::wrap(encryption, b"floor", &new.secret)?;
            }
            floor.push(began.elapsed().as_secs_f64() * 1000.0);
        }
        let wraps = recipients.len();
        rows.push(row(
            format!("start an epoch for a removal: wrap to {wraps} devices, sign the record"),
            "ms",
            median(&start),
            runs,
            Some((
                format!("{wraps} bare HPKE seals of 32 bytes"),
                median(&floor),
            )),
            Target::None,
        ));
        rows.push(row(
            format!("the keyring record for {wraps} devices"),
            "KB",
            bytes as f64 / 1000.0,
            1,
            Some((
                format!("{wraps} × (32-byte ephemeral key + 48-byte sealed secret)"),
                (wraps * 80) as f64 / 1000.0,
            )),
            Target::None,
        ));
        rows.push(row(
            format!("adopt it on one device: decode, check {wraps} recipients, unwrap its own"),
            "ms",
            median(&adopt),
            runs,
            None,
            Target::None,
        ));
    }

    // An edit's envelope under the workspace key and under an epoch.
    let device = SigningKey::from_bytes(&[3; 32]);
    let edit = vec![0x85; 300];
    let first = Sealer::First([9; 32]).seal(&device, WORKSPACE, &[Id([1; 16])], &edit);
    let epoch = Sealer::Epoch([5; 32], [6; 32]).seal(&device, WORKSPACE, &[Id([1; 16])], &edit);
    rows.push(row(
        "an edit's envelope (300 bytes of changes) sealed under an epoch".into(),
        "bytes",
        epoch.encode().len() as f64,
        1,
        Some((
            "the same under the workspace key".into(),
            first.encode().len() as f64,
        )),
        Target::RatioAtMost(1.0),
    ));
    Ok(())
}
