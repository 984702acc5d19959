//! The hostile-input harness: a deterministic world of keys and documents, and one function
//! per entry point that must never panic whatever bytes it is given.
//!
//! Shared by the corpus generator (`examples/hostile_corpus.rs`), the corpus test
//! (`tests/corpus.rs`), the stable fuzz driver (`tests/fuzz.rs`) and the cargo-fuzz targets
//! (`fuzz/`). It is not part of Meridian's interface, so it is hidden from the docs.
//!
//! A target returns normally for every input, accepted or refused; a refusal's message must
//! be clear (see [`unclear`]). Anything else, a panic or a broken invariant, is a finding.

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};
use automerge::transaction::{CommitOptions, Transaction};
use automerge::{ActorId, Automerge, ROOT};
use ed25519_dalek::{Signer, SigningKey};
use meridian_relay::Frame;
use meridian_relay::envelope::NONCE_LEN;
use meridian_relay::membership::invite_message;
use meridian_relay::protocol::Register;
use sha2::{Digest, Sha256};

use crate::bundle::{self, BUNDLE_MAGIC, BUNDLE_VERSION, Bundle};
use crate::doc::View;
use crate::id::Id;
use crate::identity::{self, Profile};
use crate::ingest::{self, Limits};
use crate::node::Node;
use crate::proposal::{self, NewProposal};
use crate::seal::{self, WorkspaceKey};
use crate::store::WorkspaceRecord;
use crate::sync::session::{Output, Session};
use crate::workspace::{self, Invite};

/// Expiry of the corpus's invites: 2100-01-01, so the committed corpus keeps working.
pub const FAR_FUTURE: i64 = 4_102_444_800_000;

/// The time of the first corpus change: 2026-01-01 UTC.
pub const T0: i64 = 1_767_225_600_000;

/// The seed of the invite the test node (Bo) joins with.
pub const BO_INVITE: u8 = 0xB0;

/// A workspace built from fixed seeds: the same bytes on every run and every machine, so a
/// committed corpus of signed, sealed inputs stays valid for a node that joins it.
///
/// Ana created it; Cy joined with Ana's invite; Eve holds the workspace key but is no member.
pub struct World {
    /// The creator's device key.
    pub ana: SigningKey,
    /// A member invited by Ana.
    pub cy: SigningKey,
    /// A stranger who somehow has the workspace key.
    pub eve: SigningKey,
    /// The salt of the workspace id.
    pub salt: [u8; 16],
    /// The workspace id, derived from Ana's key and the salt.
    pub workspace: Id,
    /// The workspace key.
    pub key: WorkspaceKey,
    /// Ana's proposal.
    pub proposal: Id,
}

impl Default for World {
    fn default() -> Self {
        World::new()
    }
}

impl World {
    /// The world.
    pub fn new() -> World {
        let ana = SigningKey::from_bytes(&[0xA1; 32]);
        let salt = [0x5A; 16];
        let workspace = Id(meridian_relay::membership::workspace_id(
            &ana.verifying_key().to_bytes(),
            &salt,
        ));
        World {
            ana,
            cy: SigningKey::from_bytes(&[0xC1; 32]),
            eve: SigningKey::from_bytes(&[0xE1; 32]),
            salt,
            workspace,
            key: [0x77; 32],
            proposal: Id([0x50; 16]),
        }
    }

    /// The automerge actor of a device of this world (its key, then a fixed suffix).
    pub fn actor(key: &SigningKey) -> ActorId {
        identity::actor_id(key, &[0x11; 8])
    }

    /// A member id (hex device key).
    pub fn member(key: &SigningKey) -> String {
        hex::encode(key.verifying_key().to_bytes())
    }

    /// An invite by Ana whose one-time key comes from `seed`.
    pub fn invite(&self, seed: u8) -> Invite {
        let secret = SigningKey::from_bytes(&[seed; 32]);
        let public = secret.verifying_key().to_bytes();
        Invite {
            workspace: self.workspace.0.to_vec(),
            name: "acme".into(),
            key: self.key.to_vec(),
            creator: self.ana.verifying_key().to_bytes().to_vec(),
            relays: Vec::new(),
            secret: secret.to_bytes().to_vec(),
            inviter: self.ana.verifying_key().to_bytes().to_vec(),
            expires: FAR_FUTURE,
            inviter_sig: self
                .ana
                .sign(&invite_message(&self.workspace.0, &public, FAR_FUTURE))
                .to_bytes()
                .to_vec(),
            epoch: None,
        }
    }

    /// Registration of Ana with a relay (she creates the workspace there).
    pub fn register_ana(&self) -> Register {
        Register::Create {
            salt: self.salt.to_vec(),
        }
    }

    /// Registration of Cy with a relay, with the proof of Ana's invite.
    pub fn register_cy(&self) -> Register {
        let proof = self
            .invite(0xC0)
            .proof_for(&self.cy.verifying_key())
            .expect("the world's invite is well formed");
        Register::Join(proof)
    }

    fn profile(name: &str) -> Profile {
        Profile {
            name: name.into(),
            tz: "UTC".into(),
            hours: "09:00-17:00".into(),
            days: "mon-fri".into(),
            away: Vec::new(),
        }
    }

    /// The workspace document: genesis, Ana's member entry and name, Cy's member entry.
    pub fn workspace_doc(&self) -> Automerge {
        let genesis = workspace::genesis(self.workspace, &self.ana.verifying_key().to_bytes());
        let mut doc = Automerge::load(&genesis).expect("the genesis change loads");
        let members = View::now(&doc)
            .map(&ROOT, "members")
            .expect("the genesis has members");
        edit(&mut doc, &self.ana, T0, "create workspace acme", |tx| {
            workspace::put_name(tx, "acme")?;
            workspace::put_member(
                tx,
                &members,
                &self.ana.verifying_key(),
                &World::profile("Ana"),
                T0,
                None,
            )
        });
        let proof = match self.register_cy() {
            Register::Join(proof) => proof,
            _ => unreachable!("Cy joins"),
        };
        edit(&mut doc, &self.cy, T0 + 1, "Cy joins", |tx| {
            workspace::put_member(
                tx,
                &members,
                &self.cy.verifying_key(),
                &World::profile("Cy"),
                T0 + 1,
                Some(&proof),
            )
        });
        doc
    }

    /// Ana's proposal, created and then edited once.
    pub fn proposal_doc(&self) -> Automerge {
        let mut doc = Automerge::new();
        let new = NewProposal {
            id: self.proposal,
            workspace: self.workspace,
            title: "Target".into(),
            template: "rfc".into(),
            sections: vec![("Summary".into(), "Original".into())],
            deciders: vec![World::member(&self.ana)],
            asks: Vec::new(),
            urgency: "normal".into(),
            author: World::member(&self.ana),
            at: T0 + 2,
        };
        edit(&mut doc, &self.ana, T0 + 2, "new proposal: Target", |tx| {
            proposal::create(tx, &new)
        });
        edit(&mut doc, &self.ana, T0 + 3, "edit Summary", |tx| {
            proposal::set_section(tx, "Summary", "Original text, edited")
        });
        doc
    }

    /// Seals `plaintext` for `doc` as `signer`, with a nonce derived from the content, so
    /// the same input always gives the same envelope.
    pub fn seal(&self, signer: &SigningKey, doc: Id, plaintext: &[u8]) -> Vec<u8> {
        let mut hasher = Sha256::new();
        hasher.update(b"meridian/corpus-nonce\0");
        hasher.update(signer.verifying_key().to_bytes());
        hasher.update(doc.0);
        hasher.update(plaintext);
        let digest = hasher.finalize();
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&digest[..NONCE_LEN]);
        seal::seal_with_nonce(signer, &self.key, self.workspace, doc, nonce, plaintext).encode()
    }

    /// A shared envelope of `docs` (in the order given, which a well-formed one has
    /// increasing) whose plaintext is `plaintext`, signed by `signer`, nonce derived as in
    /// [`World::seal`].
    pub fn seal_shared(&self, signer: &SigningKey, docs: &[Id], plaintext: &[u8]) -> Vec<u8> {
        let mut hasher = Sha256::new();
        hasher.update(b"meridian/corpus-nonce/shared\0");
        hasher.update(signer.verifying_key().to_bytes());
        for doc in docs {
            hasher.update(doc.0);
        }
        hasher.update(plaintext);
        let digest = hasher.finalize();
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&digest[..NONCE_LEN]);
        seal::seal_shared_with_nonce(signer, &self.key, self.workspace, docs, nonce, plaintext)
            .encode()
    }

    /// Every change of `doc` but the genesis, each sealed by the device that wrote it.
    pub fn envelopes_of(&self, doc_id: Id, doc: &Automerge) -> Vec<Vec<u8>> {
        doc.get_changes(&[])
            .into_iter()
            .filter(|c| !workspace::is_genesis_actor(self.workspace, c.actor_id()))
            .map(|c| {
                let signer = self.signer_of(c.actor_id());
                self.seal(signer, doc_id, c.raw_bytes())
            })
            .collect()
    }

    fn signer_of(&self, actor: &ActorId) -> &SigningKey {
        [&self.ana, &self.cy, &self.eve]
            .into_iter()
            .find(|k| World::actor(k) == *actor)
            .unwrap_or(&self.ana)
    }

    /// What a node must merge to hold the world: the workspace document and the proposal.
    pub fn base_envelopes(&self) -> Vec<Vec<u8>> {
        let mut envelopes = self.envelopes_of(self.workspace, &self.workspace_doc());
        envelopes.extend(self.envelopes_of(self.proposal, &self.proposal_doc()));
        envelopes
    }

    /// A bundle file of the given envelopes in this workspace.
    pub fn bundle(&self, envelopes: Vec<Vec<u8>>) -> Vec<u8> {
        bundle_bytes(BUNDLE_VERSION, &self.workspace.0, envelopes)
    }
}

/// The bytes of a bundle file.
pub fn bundle_bytes(version: u32, workspace: &[u8], envelopes: Vec<Vec<u8>>) -> Vec<u8> {
    let mut bytes = BUNDLE_MAGIC.to_vec();
    let bundle = Bundle {
        version,
        workspace: workspace.to_vec(),
        envelopes: envelopes
            .into_iter()
            .map(serde_bytes::ByteBuf::from)
            .collect(),
        docs: None,
        disclosure: None,
    };
    ciborium::into_writer(&bundle, &mut bytes).expect("writing CBOR to a Vec cannot fail");
    bytes
}

/// Makes one change to `doc` as `key`'s device at `time`; returns its bytes.
pub fn edit(
    doc: &mut Automerge,
    key: &SigningKey,
    time: i64,
    message: &str,
    f: impl FnOnce(&mut Transaction<'_>) -> Result<()>,
) -> Vec<u8> {
    doc.set_actor(World::actor(key));
    let mut tx = doc.transaction();
    f(&mut tx).expect("the corpus's own edits are valid");
    tx.commit_with(
        CommitOptions::default()
            .with_message(message)
            .with_time(time),
    );
    doc.get_last_local_change()
        .expect("the edit made a change")
        .raw_bytes()
        .to_vec()
}

/// Why an error message is not clear enough to show a person, if it is not: empty, a panic,
/// or a Rust `Debug` dump instead of words.
pub fn unclear(message: &str) -> Option<&'static str> {
    let message = message.trim();
    if message.is_empty() {
        return Some("the message is empty");
    }
    if message.contains("panicked") || message.contains("RUST_BACKTRACE") {
        return Some("the message is a panic");
    }
    const DEBUG: [&str; 8] = [
        "Error {",
        "Os {",
        "{ kind:",
        "Semantic(",
        "Syntax(",
        "Io(",
        "Some(",
        "\\\"",
    ];
    // What a message quotes between backticks is the input's (an unknown variant's name, as
    // it came, cut short), not the message's own words: a name may read `toIo(t`.
    let own: String = message
        .split('`')
        .step_by(2)
        .collect::<Vec<_>>()
        .join("`…`");
    if DEBUG.iter().any(|marker| own.contains(marker)) {
        return Some("the message is a Debug dump");
    }
    None
}

/// Panics (a finding) when an error message is not clear.
#[track_caller]
pub fn assert_clear(error: &impl std::fmt::Display) {
    let message = format!("{error:#}");
    if let Some(why) = unclear(&message) {
        panic!("unclear error message ({why}): {message}");
    }
}

/// Appends `name<TAB>value` to the file named by `MERIDIAN_FIGURES`, when it is set.
pub fn figure(name: &str, value: impl std::fmt::Display) {
    let Some(path) = std::env::var_os("MERIDIAN_FIGURES") else {
        return;
    };
    let line = format!("{name}\t{value}\n");
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut file| file.write_all(line.as_bytes()));
    if let Err(e) = written {
        eprintln!("cannot append to MERIDIAN_FIGURES ({e}): {line}");
    }
}

/// A node (Bo) that joined the world and merged its base: what the targets that need a
/// store run against.
pub struct Fixture {
    /// Bo's node.
    pub node: Node,
    /// The world it joined.
    pub world: World,
    /// Its record of the world's workspace.
    pub record: WorkspaceRecord,
}

impl Fixture {
    /// Creates Bo's node in `home` (an empty directory).
    pub fn new(home: &Path) -> Result<Fixture> {
        let world = World::new();
        let node = Node::init(home, &World::profile("Bo"))?;
        node.join(&world.invite(BO_INVITE))?;
        bundle::merge(
            &node,
            &world.bundle(world.base_envelopes()),
            &Limits::default(),
        )
        .context("the world's base does not merge")?;
        let (_, record) = node.workspace(Some(&world.workspace.hex()))?;
        Ok(Fixture {
            node,
            world,
            record,
        })
    }
}

/// The node's protocol session in each state a relay's frame can find it in.
fn sessions(now: Instant) -> Vec<Session> {
    let key = SigningKey::from_bytes(&[0xB1; 32]);
    let fresh = || Session::new(key.clone(), [3; 16], None, None, 5, 0);
    let mut waiting = fresh();
    waiting.start(now);
    let mut proving = fresh();
    proving.start(now);
    proving.receive(
        Frame::Challenge {
            nonce: vec![1; 32],
            relay: vec![2; 16],
        },
        now,
    );
    let mut ready = fresh();
    ready.start(now);
    ready.receive(
        Frame::Challenge {
            nonce: vec![1; 32],
            relay: vec![2; 16],
        },
        now,
    );
    ready.receive(
        Frame::Welcome {
            head: 9,
            shared: true,
            vouch: true,
        },
        now,
    );
    ready.local(vec![(0, vec![1, 2, 3]), (1, vec![4])], now);
    // A vouch in flight, for an answer to find.
    ready.vouch(
        vec![meridian_relay::protocol::Vouchee {
            key: vec![7; 32],
            proof: meridian_relay::membership::JoinProof {
                invite_public: vec![8; 32],
                inviter: vec![9; 32],
                expires: 0,
                inviter_sig: vec![0; 64],
                join_sig: vec![0; 64],
            },
        }],
        now,
    );
    vec![waiting, proving, ready]
}

/// The frame decoder, and the node's session fed whatever it decodes, in every state.
pub fn frame(bytes: &[u8]) {
    let frame = match Frame::decode(bytes) {
        Ok(frame) => frame,
        Err(error) => return assert_clear(&error),
    };
    let again = Frame::decode(&frame.encode());
    assert_eq!(again.as_ref(), Ok(&frame), "a frame re-encodes to itself");
    let now = Instant::now();
    for mut session in sessions(now) {
        for output in session.receive(frame.clone(), now) {
            match output {
                Output::Acked { results, .. } => {
                    assert!(results.len() <= 2, "acknowledged more than was pushed");
                }
                Output::Vouched { results, .. } => {
                    assert_eq!(results.len(), 1, "answered for members not vouched for");
                }
                Output::Apply { entries, up_to } => {
                    assert!(
                        entries.iter().all(|(seq, _)| *seq <= up_to),
                        "entries past up_to"
                    );
                }
                _ => {}
            }
        }
    }
}

/// The envelope opener: decode, shape, signature, workspace, decryption, bounded
/// decompression, change parsing and the actor check.
pub fn envelope(fixture: &Fixture, bytes: &[u8]) {
    let mut budget = ingest::Budget::new(&Limits::default());
    match ingest::open_sealed(bytes, fixture.world.workspace, &fixture.record, &mut budget) {
        Ok(items) => {
            for item in items {
                for change in &item.changes {
                    assert_eq!(
                        identity::actor_key(change.actor_id()),
                        Some(item.signer),
                        "an opened change is the signer's"
                    );
                }
            }
        }
        Err(error) => assert_clear(&error),
    }
}

/// The bundle reader (and the saved-document reader behind the same `merge`), then the
/// all-or-nothing apply, in a transaction that is dropped, so the store never changes.
pub fn bundle(fixture: &Fixture, bytes: &[u8]) {
    let limits = Limits::default();
    let opened = match bundle::open(&fixture.node, bytes, &limits) {
        Ok(opened) => opened,
        Err(error) => return assert_clear(&error),
    };
    let txn = match fixture.node.db().begin_write() {
        Ok(txn) => txn,
        Err(error) => panic!("the fixture's database failed: {error}"),
    };
    let applied = ingest::apply_in(&txn, &fixture.node, opened.workspace, opened.items, &limits);
    drop(txn);
    if let Err(error) = applied {
        assert_clear(&error);
    }
}

/// `meridian verify` of a file from anyone: it checks or refuses with a clear error, never
/// panics, and needs no store.
pub fn verify(bytes: &[u8]) {
    if let Err(error) = crate::verify::verify(bytes, &Limits::default()) {
        assert_clear(&error);
    }
}

/// A verifiable export of every document of the fixture's world: what the `verify` target
/// mutates.
pub fn verify_seeds(fixture: &Fixture) -> Vec<Vec<u8>> {
    let workspace = fixture.world.workspace;
    let Ok(summaries) = fixture.node.summaries(workspace) else {
        return Vec::new();
    };
    summaries
        .into_iter()
        .filter_map(|(doc, _)| bundle::export_verifiable(&fixture.node, workspace, doc).ok())
        .map(|(bytes, _)| bytes)
        .collect()
}

/// The change-ingest path of sync: the first byte picks the document and the signer, the
/// rest is the plaintext, sealed as that member and applied as received envelopes are (in a
/// transaction rolled back at the end, so the store never changes). With bit 0x40 of the
/// first byte set, the rest travels as a compressed run (`seal::deflate_changes`), so
/// mutations of the changes reach the parser behind the run's decoder too.
pub fn ingest(fixture: &Fixture, bytes: &[u8]) {
    let Some((&choice, plaintext)) = bytes.split_first() else {
        return;
    };
    let run;
    let plaintext = if choice & 0x40 != 0 {
        run = crate::seal::deflate_changes(plaintext);
        &run
    } else {
        plaintext
    };
    let world = &fixture.world;
    let doc = match choice % 3 {
        0 => world.workspace,
        1 => world.proposal,
        _ => Id([choice; 16]),
    };
    let signer = if choice & 0x80 == 0 {
        &world.ana
    } else {
        &world.cy
    };
    let sealed = world.seal(signer, doc, plaintext);
    let mut budget = ingest::Budget::new(&Limits::default());
    let items = match ingest::open_sealed(&sealed, world.workspace, &fixture.record, &mut budget) {
        Ok(items) => items,
        Err(error) => return assert_clear(&error),
    };
    let mut outcome = None;
    let result = ingest::apply_received(
        &fixture.node,
        world.workspace,
        items,
        &Limits::default(),
        |_, report| {
            outcome = Some((report.applied, report.held, report.rejected.clone()));
            Err(anyhow::anyhow!("rolled back"))
        },
    );
    match (result, outcome) {
        (Err(error), Some((_, _, rejected))) if error.to_string() == "rolled back" => {
            for rejected in rejected {
                assert_clear(&rejected.reason);
            }
        }
        (Err(error), _) => assert_clear(&error),
        (Ok(_), _) => panic!("the transaction was to be rolled back"),
    }
}

/// The keyring-record reader and its rules: the bytes decoded as a record of the fixture's
/// workspace, checked as an epoch against its members, unwrapped with Bo's device and its
/// parents opened; then, signed by Ana (the creator), kept and settled by the store as a
/// record from the network would be, in a transaction dropped at the end.
pub fn keyring(fixture: &Fixture, bytes: &[u8]) {
    let world = &fixture.world;
    match crate::keyring::Record::decode(bytes, world.workspace) {
        Ok(record) => {
            let creator = world.ana.verifying_key().to_bytes();
            if let Err(refused) =
                crate::keyring::check_epoch(&record, &creator, &fixture.record.state, &creator)
            {
                assert_clear(&refused);
            }
            for commit in [[0; 32], crate::keyring::commit(world.workspace, &world.key)] {
                if let Some(Err(error)) = record.unwrap_for(fixture.node.key(), &commit) {
                    assert_clear(&error);
                }
            }
            if let Err(error) = crate::keyring::open_parents(world.workspace, &world.key, &record) {
                assert_clear(&error);
            }
        }
        Err(error) => assert_clear(&error),
    }
    let envelope =
        meridian_relay::Envelope::sign_keyring(&world.ana, world.workspace.0, bytes.to_vec());
    let txn = match fixture.node.db().begin_write() {
        Ok(txn) => txn,
        Err(error) => panic!("the fixture's database failed: {error}"),
    };
    match crate::epochs::receive(&txn, world.workspace, &envelope) {
        Ok(_) => {
            let mut record = fixture.record.clone();
            match crate::epochs::settle(&txn, fixture.node.key(), world.workspace, &mut record) {
                Ok(settled) => {
                    for refused in settled.refused {
                        assert_clear(&refused.reason);
                    }
                }
                Err(error) => assert_clear(&error),
            }
        }
        Err(error) => assert_clear(&error),
    }
    drop(txn);
}

/// Keyring records to start [`keyring`] from: an epoch after the first for a removal and a
/// repair, with wraps to Ana and Cy, and a share of it (deterministic bytes, not genuine
/// wraps: the shapes and the rules are what they exercise).
pub fn keyring_seeds(world: &World) -> Vec<Vec<u8>> {
    use crate::keyring::{Kind, Reason, Record, WrapEntry};
    use serde_bytes::ByteBuf;
    let bytes = |n: usize, b: u8| ByteBuf::from(vec![b; n]);
    let wraps: Vec<WrapEntry> = [&world.ana, &world.cy]
        .iter()
        .enumerate()
        .map(|(i, key)| WrapEntry {
            device: ByteBuf::from(key.verifying_key().to_bytes().to_vec()),
            encapped: bytes(32, i as u8 + 1),
            ciphertext: bytes(48, i as u8 + 3),
        })
        .collect();
    let first = crate::keyring::first_epoch(world.workspace, &world.key);
    let epoch = |reason| Record {
        workspace: ByteBuf::from(world.workspace.0.to_vec()),
        kind: Kind::Epoch {
            parents: vec![ByteBuf::from(first.to_vec())],
            basis: vec![bytes(32, 7)],
            reason,
            commit: bytes(32, 9),
            sealed_parents: vec![bytes(48, 5)],
        },
        wraps: wraps.clone(),
    };
    let removal = epoch(Reason::Removal {
        member: hex::encode(world.cy.verifying_key().to_bytes()),
    })
    .encode();
    let share = Record {
        workspace: ByteBuf::from(world.workspace.0.to_vec()),
        kind: Kind::Share {
            epoch: ByteBuf::from(crate::keyring::epoch_hash(&removal).to_vec()),
        },
        wraps: wraps[..1].to_vec(),
    };
    vec![removal, epoch(Reason::Repair).encode(), share.encode()]
}

/// Device codes and device proofs: the bytes as a code's text (`meridian device join`),
/// then as a proof's CBOR checked for the world's workspace and a device, as a relay
/// checks a registration; every refusal clear.
pub fn device(bytes: &[u8]) {
    if let Ok(text) = std::str::from_utf8(bytes)
        && let Err(error) = crate::device::DeviceCode::decode(text)
    {
        assert_clear(&error);
    }
    let world = World::new();
    match meridian_relay::cbor::from_slice::<meridian_relay::membership::DeviceProof>(bytes) {
        Ok(proof) => {
            let device = world.eve.verifying_key().to_bytes();
            if let Err(error) = proof.verify(&world.workspace.0, &device) {
                assert_clear(&error);
            }
        }
        Err(error) => assert_clear(&error),
    }
}

/// Seeds for [`device`]: a genuine code Ana makes, and the proof of Eve as Ana's device.
pub fn device_seeds(world: &World) -> Vec<Vec<u8>> {
    let member = world.ana.verifying_key().to_bytes();
    let code = crate::device::DeviceCode::new(
        &world.ana,
        &member,
        world.workspace,
        "acme",
        &world.key,
        &member,
        vec!["wss://relay.example.org".into()],
        FAR_FUTURE,
    );
    let secret: [u8; 32] = code.secret.as_slice().try_into().expect("a 32-byte secret");
    let code_key = SigningKey::from_bytes(&secret);
    let proof = eve_as_device_of(world, &member, &code_key, code.by_sig.clone());
    vec![code.encode().into_bytes(), crate::store::encode(&proof)]
}

/// The proof of Eve's key as a device of `member`, with the one-time `code` key whose
/// signature (by the adding device) is `by_sig`.
fn eve_as_device_of(
    world: &World,
    member: &[u8],
    code: &SigningKey,
    by_sig: Vec<u8>,
) -> meridian_relay::membership::DeviceProof {
    meridian_relay::membership::DeviceProof {
        member: member.to_vec(),
        by: member.to_vec(),
        code_public: code.verifying_key().to_bytes().to_vec(),
        expires: FAR_FUTURE,
        by_sig,
        code_sig: code
            .sign(&meridian_relay::membership::device_join_message(
                &world.workspace.0,
                member,
                &world.eve.verifying_key().to_bytes(),
            ))
            .to_bytes()
            .to_vec(),
    }
}

/// A forged membership case: (name, what a merge of it must say, description, the
/// envelopes of its bundle).
pub type Forged = (String, String, String, Vec<Vec<u8>>);

/// Keyring records and device entries a member or a stranger could forge, each with the
/// envelopes that carry it, every one genuine but for the forgery: epochs on the world's
/// workspace document (its heads as their basis) signed by the wrong device, naming a
/// removal that never happened, or with a wrap left out or added; a device claimed for Cy
/// with a proof no device of hers signed, then writing as her. A merge must refuse each
/// whole, saying why. The wraps are real HPKE (their ephemeral keys are random: these
/// bytes differ on every generation, their verdicts do not).
pub fn forged_membership(world: &World) -> Vec<Forged> {
    use crate::keyring::{self, DeviceKey, Reason};
    // Ana and Cy publish their encryption keys (genuine changes, carried by every case).
    let mut doc = world.workspace_doc();
    let members = View::now(&doc)
        .map(&ROOT, "members")
        .expect("the genesis has members");
    let published: Vec<Vec<u8>> = [(&world.ana, T0 + 2), (&world.cy, T0 + 3)]
        .into_iter()
        .map(|(key, at)| {
            let change = edit(&mut doc, key, at, "publish an encryption key", |tx| {
                workspace::put_device_key(tx, &members, key, world.workspace)
            });
            world.seal(key, world.workspace, &change)
        })
        .collect();
    let basis: Vec<[u8; 32]> = doc.get_heads().iter().map(|h| h.0).collect();
    let state = workspace::read_state(View::now(&doc), &world.ana.verifying_key().to_bytes());
    let recipients = keyring::recipients(&state);
    let first = [(keyring::first_epoch(world.workspace, &world.key), world.key)];
    let record = |signer: &SigningKey,
                  reason: Reason,
                  to: &std::collections::BTreeMap<[u8; 32], [u8; 32]>| {
        let new = keyring::new_epoch(world.workspace, &first, &basis, reason, to)
            .expect("an epoch is made");
        let mut envelopes = published.clone();
        envelopes.push(
            meridian_relay::Envelope::sign_keyring(signer, world.workspace.0, new.body).encode(),
        );
        envelopes
    };
    let cy = hex::encode(world.cy.verifying_key().to_bytes());
    let removal = || Reason::Removal { member: cy.clone() };
    let mut missing = recipients.clone();
    missing.remove(&world.cy.verifying_key().to_bytes());
    let mut extra = recipients.clone();
    extra.insert(
        world.eve.verifying_key().to_bytes(),
        DeviceKey::of(&world.eve).public(),
    );
    let mut cases: Vec<Forged> = vec![
        (
            "removal-signed-by-a-member".into(),
            "not the workspace's creator".into(),
            "an epoch for Cy's removal signed by Cy, a member but not the creator".into(),
            record(&world.cy, removal(), &recipients),
        ),
        (
            "removal-that-never-happened".into(),
            "does not hold".into(),
            "an epoch signed by the creator for a removal its basis does not hold".into(),
            record(&world.ana, removal(), &recipients),
        ),
        (
            "repair-signed-by-a-stranger".into(),
            "not by a device of a current member".into(),
            "a repair epoch signed by Eve, who holds the workspace key but is no member".into(),
            record(&world.eve, Reason::Repair, &recipients),
        ),
        (
            "repair-missing-a-wrap".into(),
            "leaves out Cy".into(),
            "a repair epoch by the creator that leaves Cy out".into(),
            record(&world.ana, Reason::Repair, &missing),
        ),
        (
            "repair-extra-wrap".into(),
            "wraps its secret to".into(),
            "a repair epoch by the creator that also wraps to Eve, no member".into(),
            record(&world.ana, Reason::Repair, &extra),
        ),
    ];
    // Cy's entry gains a device, Eve's key, with a code Eve signed herself; then Eve writes
    // as Cy's device.
    let mut forged = doc.clone();
    let code = SigningKey::from_bytes(&[0xC0; 32]);
    let member = world.cy.verifying_key().to_bytes().to_vec();
    let code_public = code.verifying_key().to_bytes().to_vec();
    let by_sig = world
        .eve
        .sign(&meridian_relay::membership::device_code_message(
            &world.workspace.0,
            &member,
            &code_public,
            FAR_FUTURE,
        ))
        .to_bytes()
        .to_vec();
    let proof = eve_as_device_of(world, &member, &code, by_sig);
    let entry = View::now(&forged)
        .map(&ROOT, "members")
        .and_then(|members| View::now(&forged).map(&members, &cy))
        .expect("Cy has an entry");
    let claim = edit(&mut forged, &world.cy, T0 + 4, "Cy claims a device", |tx| {
        workspace::put_new_device(tx, &entry, &world.eve, &proof, world.workspace)
    });
    let write = edit(&mut forged, &world.eve, T0 + 5, "Eve writes as Cy", |tx| {
        workspace::put_name(tx, "taken")
    });
    cases.push((
        "device-with-a-forged-proof".into(),
        "not a verified member".into(),
        "Cy's entry claims Eve's key as her device with a code Eve signed, then Eve renames the workspace".into(),
        published
            .iter()
            .cloned()
            .chain([
                world.seal(&world.cy, world.workspace, &claim),
                world.seal(&world.eve, world.workspace, &write),
            ])
            .collect(),
    ));
    cases
}

/// A small seeded random source (splitmix64): the same seed gives the same corpus and the
/// same fuzzing run everywhere.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A source started from `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        meridian_relay::determinism::splitmix(&mut self.0)
    }

    /// A number below `n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }

    /// `n` random bytes.
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next_u64() as u8).collect()
    }
}
