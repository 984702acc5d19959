//! Key epochs: what a removed member can read, with every key and byte they can get, and
//! what members (old and new) can.

use std::collections::BTreeSet;

use meridian::bundle::{BUNDLE_MAGIC, Bundle};
use meridian::id::Id;
use meridian::keyring::{self, Kind, Record};
use meridian::node::Node;
use meridian::seal::{self, EpochKey};
use meridian::store::WorkspaceRecord;
use meridian_relay::Envelope;
use meridian_relay::store::RelayStore;

use crate::relays::{Relay, Team, figure, push, sync, titles, unique};
use crate::support::Home;

const ZONES: [(&str, &str); 3] = [
    ("Ana", "Asia/Tokyo"),
    ("Bo", "Europe/Berlin"),
    ("Cy", "America/Lima"),
];

const FOUR: [(&str, &str); 4] = [
    ("Ana", "Asia/Tokyo"),
    ("Bo", "Europe/Berlin"),
    ("Cy", "America/Lima"),
    ("Dee", "Africa/Nairobi"),
];

/// The homes of a team of [`FOUR`].
fn four(homes: &[Home]) -> [&Home; 4] {
    [&homes[0], &homes[1], &homes[2], &homes[3]]
}

/// Every text an envelope's plaintext holds, as automerge's changes spell them out.
fn texts(envelope: &Envelope, plaintext: &[u8]) -> String {
    let mut budget = 1 << 30;
    let parts = if envelope.is_shared() {
        meridian::ingest::plaintext_parts(plaintext, envelope.doc_ids().len(), &mut budget).unwrap()
    } else {
        vec![
            meridian::ingest::plaintext_changes(plaintext, &mut budget)
                .unwrap()
                .into_owned(),
        ]
    };
    let mut out = String::new();
    for part in parts {
        if meridian::ingest::is_whole_document(&part) {
            let doc = automerge::Automerge::load(&part).unwrap();
            for change in doc.get_changes(&[]) {
                out += &format!("{:?}", change.decode());
            }
            continue;
        }
        let chunks = meridian::ingest::chunks(&part, &mut budget, false).unwrap();
        for change in meridian::ingest::parse_changes(&chunks).unwrap() {
            out += &format!("{:?}", change.decode());
        }
    }
    out
}

/// Every envelope (encoded) in a relay's data directory (the relay stopped).
pub(crate) fn relay_envelopes(relay: &Relay, workspace: Id) -> Vec<Vec<u8>> {
    let store = RelayStore::open(relay.data()).unwrap();
    store
        .read(&workspace.0, 0, usize::MAX, usize::MAX)
        .unwrap()
        .into_iter()
        .map(|(_, bytes)| bytes)
        .collect()
}

/// Every envelope in a bundle file.
fn bundle_envelopes(bytes: &[u8]) -> Vec<Vec<u8>> {
    let body = bytes.strip_prefix(BUNDLE_MAGIC).unwrap();
    let bundle: Bundle = ciborium::from_reader(body).unwrap();
    bundle.envelopes.into_iter().map(|e| e.into_vec()).collect()
}

/// Everything one home's keys open among `envelopes`, attacking with every key it holds:
/// the workspace key, the epoch secrets its record keeps, and whatever its device key
/// unwraps from any keyring record among them (walking parents too). Each secret is tried
/// as the secret of every epoch named anywhere, not only the one it came for.
pub(crate) fn readable(home: &Home, envelopes: &[Vec<u8>]) -> Readable {
    let node = Node::open(home.path()).unwrap();
    let (workspace, record) = node.workspace(None).unwrap();
    let first: [u8; 32] = record.key.as_slice().try_into().unwrap();
    let mut secrets: BTreeSet<[u8; 32]> = BTreeSet::from([first]);
    secrets.extend(
        record
            .epochs
            .iter()
            .map(|e| <[u8; 32]>::try_from(e.secret.as_slice()).unwrap()),
    );
    let mut hashes = BTreeSet::from([keyring::first_epoch(workspace, &first)]);
    let records: Vec<(Envelope, Record)> = envelopes
        .iter()
        .filter_map(|bytes| Envelope::decode(bytes).ok())
        .filter(|e| e.is_keyring())
        .map(|e| {
            let record = Record::decode(&e.ciphertext, workspace).unwrap();
            (e, record)
        })
        .collect();
    let mut commits = Vec::new();
    for (envelope, record) in &records {
        if let Kind::Epoch { commit, .. } = &record.kind {
            hashes.insert(keyring::epoch_hash(&envelope.ciphertext));
            commits.push(<[u8; 32]>::try_from(commit.as_slice()).unwrap());
        }
    }
    for _ in 0..3 {
        for (envelope, record) in &records {
            for commit in &commits {
                if let Some(Ok(secret)) = record.unwrap_for(node.key(), commit) {
                    secrets.insert(secret);
                }
            }
            if matches!(record.kind, Kind::Epoch { .. }) {
                let _ = envelope;
                for secret in secrets.clone() {
                    if let Ok(parents) = keyring::open_parents(workspace, &secret, record) {
                        secrets.extend(parents.into_iter().map(|(_, s)| s));
                    }
                }
            }
        }
    }
    let attacker = WorkspaceRecord {
        epochs: hashes
            .iter()
            .flat_map(|hash| {
                secrets.iter().map(|secret| EpochKey {
                    hash: hash.to_vec(),
                    secret: secret.to_vec(),
                    depth: 1,
                    unchecked: false,
                })
            })
            .collect(),
        ..record
    };
    let mut out = Readable {
        keys: secrets.len() * hashes.len() + secrets.len(),
        ..Readable::default()
    };
    for bytes in envelopes {
        let Ok(envelope) = Envelope::decode(bytes) else {
            continue;
        };
        if envelope.is_keyring() {
            continue;
        }
        out.sealed += 1;
        let mut opened = seal::open_with(&attacker, &envelope).ok();
        if opened.is_none() && envelope.epoch_id().is_none() {
            for secret in &secrets {
                opened = opened.or_else(|| seal::open(secret, &envelope).ok());
            }
        }
        if let Some(plaintext) = opened {
            out.opened += 1;
            out.text += &texts(&envelope, &plaintext);
        }
    }
    out
}

/// What one home's keys opened: the texts, how many envelopes of how many, with how many
/// (epoch, secret) pairs and workspace keys tried.
#[derive(Default)]
pub(crate) struct Readable {
    text: String,
    opened: usize,
    sealed: usize,
    keys: usize,
}

impl Readable {
    pub(crate) fn contains(&self, canary: &str) -> bool {
        self.text.contains(canary)
    }
}

#[test]
fn a_removed_member_with_every_key_and_byte_reads_nothing_written_after_the_removal() {
    let team = Team::new(&ZONES);
    let [ana, bo, cy] = [&team.homes[0], &team.homes[1], &team.homes[2]];
    let mut second = Relay::start(&team.world.file("relay-two"));
    ana.ok(&["workspace", "relay", "add", &second.url()]);
    team.sync_until_quiet(&[ana, bo, cy, ana, bo, cy]);

    let before = unique("CanaryBefore");
    ana.create(&["thread", "new", &before, "-m", &before]);
    team.sync_until_quiet(&[ana, bo, cy]);
    assert!(titles(cy).contains(&before), "Cy read it while a member");

    ana.ok(&["member", "remove", "Cy"]);
    let from_ana = unique("CanaryAna");
    let thread = ana.create(&["thread", "new", &from_ana, "-m", &from_ana]);
    push(ana);
    sync(bo);
    let from_bo = unique("CanaryBo");
    bo.ok(&["reply", &thread, "-m", &from_bo]);
    push(bo);
    sync(ana);
    assert!(
        crate::relays::comment_bodies(ana, &thread).contains(&from_bo),
        "control: Ana reads Bo's reply"
    );
    let bundle = team.world.file("after.bundle");
    ana.ok(&[
        "export",
        "--all",
        "--format",
        "bundle",
        "-o",
        bundle.to_str().unwrap(),
    ]);
    let workspace = Id::parse(ana.json(&["workspace", "list"])[0]["id"].as_str().unwrap()).unwrap();

    // Cy is given everything: both relays' data, the bundle, every key in her home.
    let mut relay = team.relay;
    relay.stop();
    second.stop();
    let mut everything = relay_envelopes(&relay, workspace);
    everything.extend(relay_envelopes(&second, workspace));
    everything.extend(bundle_envelopes(&std::fs::read(&bundle).unwrap()));
    assert!(
        everything
            .iter()
            .any(|e| Envelope::decode(e).unwrap().is_keyring()),
        "the relays hold the keyring record"
    );

    let cy_reads = readable(cy, &everything);
    let leaked = [&from_ana, &from_bo]
        .iter()
        .filter(|canary| cy_reads.contains(canary))
        .count();
    figure("epochs.canary.envelopes_given", cy_reads.sealed);
    figure("epochs.canary.keys_tried", cy_reads.keys);
    figure("epochs.canary.envelopes_opened", cy_reads.opened);
    figure(
        "epochs.canary.before_read",
        u8::from(cy_reads.contains(&before)),
    );
    figure("epochs.canary.after_read", leaked);
    assert!(
        cy_reads.contains(&before),
        "control: Cy opens what came before"
    );
    for canary in [&from_ana, &from_bo] {
        assert!(
            !cy_reads.contains(canary.as_str()),
            "Cy decrypted {canary}, written after the removal"
        );
    }
    let bo_reads = readable(bo, &everything);
    for canary in [&before, &from_ana, &from_bo] {
        assert!(
            bo_reads.contains(canary.as_str()),
            "control: Bo's keys open {canary}"
        );
    }
}

#[test]
fn a_newcomer_after_two_removals_reads_the_whole_history() {
    let team = Team::new(&FOUR);
    let [ana, bo, cy, dee] = four(&team.homes);
    let first = unique("First");
    ana.create(&["thread", "new", &first, "-m", "before anyone left"]);
    team.sync_until_quiet(&[ana, bo, cy, dee]);
    ana.ok(&["member", "remove", "Cy"]);
    let second = unique("Second");
    ana.create(&["thread", "new", &second, "-m", "after Cy left"]);
    team.sync_until_quiet(&[ana, bo, dee]);
    ana.ok(&["member", "remove", "Dee"]);
    push(ana);
    sync(bo);
    let third = unique("Third");
    bo.create(&["thread", "new", &third, "-m", "after Dee left"]);
    push(bo);

    let eve = team.world.person("Eve", "Australia/Sydney");
    let code = ana.ok(&["invite"]);
    eve.ok(&["join", code.trim()]);
    // Ana's node wraps the current key to Eve once it knows her.
    team.sync_until_quiet(&[ana, bo, &eve, ana, &eve]);
    let mut seen = titles(&eve);
    seen.sort();
    let mut all = vec![first.clone(), second.clone(), third.clone()];
    all.sort();
    assert_eq!(seen, all, "Eve reads everything");
    let fourth = unique("Fourth");
    eve.create(&["thread", "new", &fourth, "-m", "from the newcomer"]);
    team.sync_until_quiet(&[&eve, ana, bo]);
    assert!(titles(ana).contains(&fourth) && titles(bo).contains(&fourth));
    let cy_has = titles(cy);
    assert!(!cy_has.contains(&second) && !cy_has.contains(&third) && !cy_has.contains(&fourth));
}

#[test]
fn a_removal_concurrent_with_offline_edits_converges_and_leaks_only_the_documented_window() {
    let team = Team::new(&FOUR);
    let [ana, bo, cy, dee] = four(&team.homes);
    // Bo and Dee write offline, not knowing what Ana is about to do.
    let bo_unaware = unique("BoUnaware");
    bo.create(&["thread", "new", &bo_unaware, "-m", &bo_unaware]);
    let dee_unaware = unique("DeeUnaware");
    dee.create(&["thread", "new", &dee_unaware, "-m", &dee_unaware]);
    ana.ok(&["member", "remove", "Cy"]);
    let ana_after = unique("AnaAfter");
    ana.create(&["thread", "new", &ana_after, "-m", &ana_after]);
    push(ana);
    // Bo learns of the removal from a bundle before his edit leaves his device: it is
    // sealed again under the new key when he pushes. Then he writes knowing of it.
    crate::support::sync_pair(&team.world, ana, bo);
    let bo_aware = unique("BoAware");
    bo.create(&["thread", "new", &bo_aware, "-m", &bo_aware]);
    // Dee pushes before she has heard of it: the window.
    team.sync_until_quiet(&[dee, bo, ana, dee, bo, ana]);
    let everyone = [&bo_unaware, &dee_unaware, &ana_after, &bo_aware];
    for home in [ana, bo, dee] {
        let has = titles(home);
        for title in everyone {
            assert!(has.contains(title), "{} has {title}: {has:?}", home.name());
        }
    }
    let workspace = Id::parse(ana.json(&["workspace", "list"])[0]["id"].as_str().unwrap()).unwrap();
    let mut relay = team.relay;
    relay.stop();
    let logged = relay_envelopes(&relay, workspace);
    let cy_reads = readable(cy, &logged);
    figure(
        "epochs.window.unaware_read",
        u8::from(cy_reads.contains(&dee_unaware)),
    );
    figure(
        "epochs.window.aware_read",
        [&bo_unaware, &ana_after, &bo_aware]
            .iter()
            .filter(|c| cy_reads.contains(c))
            .count(),
    );
    assert!(
        cy_reads.contains(dee_unaware.as_str()),
        "the documented window: Dee sealed before she knew, under the key Cy holds"
    );
    for canary in [&bo_unaware, &ana_after, &bo_aware] {
        assert!(
            !cy_reads.contains(canary.as_str()),
            "Cy decrypted {canary}, sealed by a writer who knew of the removal"
        );
    }
}

#[test]
fn a_removal_made_before_key_epochs_starts_a_repair_epoch_at_the_next_sync() {
    let team = Team::new(&ZONES);
    let [ana, bo, cy] = [&team.homes[0], &team.homes[1], &team.homes[2]];
    let workspace = Id::parse(ana.json(&["workspace", "list"])[0]["id"].as_str().unwrap()).unwrap();
    {
        // What a build from before key epochs did: the removal alone, and a record that
        // still seals under the workspace key.
        let node = Node::open(ana.path()).unwrap();
        let (_, record) = node.workspace(None).unwrap();
        let cy_id = record.state.find("Cy").unwrap().id.clone();
        node.edit(workspace, workspace, |doc| {
            let view = meridian::doc::View::now(doc);
            let members = view.map(&automerge::ROOT, "members").unwrap();
            let entry = view.map(&members, &cy_id).unwrap();
            let mut tx = doc.transaction();
            meridian::workspace::put_removed(&mut tx, &entry, 1).unwrap();
            meridian::node::commit(tx, "remove member Cy");
            Ok(())
        })
        .unwrap();
        node.edit_record(workspace, |record| {
            record.sealing = keyring::Sealing::First;
        })
        .unwrap();
    }
    let written = unique("WrittenAfterUpgrade");
    ana.create(&["thread", "new", &written, "-m", &written]);
    push(ana);
    sync(bo);
    assert!(titles(bo).contains(&written), "Bo reads it");
    let mut relay = team.relay;
    relay.stop();
    let logged = relay_envelopes(&relay, workspace);
    let records: Vec<Record> = logged
        .iter()
        .map(|bytes| Envelope::decode(bytes).unwrap())
        .filter(|e| e.is_keyring())
        .map(|e| Record::decode(&e.ciphertext, workspace).unwrap())
        .collect();
    assert!(
        matches!(
            records.as_slice(),
            [Record {
                kind: Kind::Epoch {
                    reason: keyring::Reason::Repair,
                    ..
                },
                ..
            }]
        ),
        "one repair epoch: {records:?}"
    );
    let cy_reads = readable(cy, &logged);
    assert!(
        !cy_reads.contains(&written),
        "Cy decrypted what Ana wrote after the upgrade"
    );
}
