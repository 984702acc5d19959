//! Hostile files given to `merge`: each gets a clear error and leaves the store exactly as
//! it was (the full export and the index are byte-for-byte unchanged).

use automerge::transaction::{CommitOptions, Transactable};
use automerge::{ActorId, Automerge, ObjType, ROOT};
use ed25519_dalek::SigningKey;
use meridian::bundle::{BUNDLE_MAGIC, BUNDLE_VERSION, Bundle};
use meridian::id::Id;
use meridian::ingest::{self, Limits};
use meridian::workspace::Invite;
use serde_bytes::ByteBuf;

use crate::support::{Home, World, sync_pair};

/// A team of two with a proposal, and what an attacker with a member's key could build.
struct Fixture {
    world: World,
    ana: Home,
    bo: Home,
    workspace: Id,
    key: [u8; 32],
    proposal: String,
}

fn fixture() -> Fixture {
    let world = World::new();
    let homes = world.team(&[("Ana", "Asia/Tokyo"), ("Bo", "Europe/Berlin")]);
    let mut homes = homes.into_iter();
    let (ana, bo) = (homes.next().unwrap(), homes.next().unwrap());
    let proposal = ana.create(&["proposal", "new", "Target", "--section", "Summary=Original"]);
    sync_pair(&world, &ana, &bo);
    let invite = Invite::decode(ana.ok(&["invite"]).trim()).unwrap();
    Fixture {
        workspace: invite.workspace_id().unwrap(),
        key: invite.key.as_slice().try_into().unwrap(),
        world,
        ana,
        bo,
        proposal,
    }
}

fn device_key(home: &Home) -> SigningKey {
    let text = std::fs::read_to_string(home.path().join("device.key")).unwrap();
    let mut bytes = [0; 32];
    hex::decode_to_slice(text.trim(), &mut bytes).unwrap();
    SigningKey::from_bytes(&bytes)
}

fn actor_of(key: &SigningKey) -> ActorId {
    let mut bytes = key.verifying_key().to_bytes().to_vec();
    bytes.extend_from_slice(&[0xee; 8]);
    ActorId::from(bytes)
}

fn bundle_of(workspace: Id, envelopes: Vec<ByteBuf>) -> Vec<u8> {
    let mut bytes = BUNDLE_MAGIC.to_vec();
    ciborium::into_writer(
        &Bundle {
            version: BUNDLE_VERSION,
            workspace: workspace.0.to_vec(),
            envelopes,
            docs: None,
            disclosure: None,
        },
        &mut bytes,
    )
    .unwrap();
    bytes
}

/// Change bytes for `doc` written by `actor`, each transaction a change.
fn changes(actor: ActorId, build: impl FnOnce(&mut Automerge)) -> Vec<Vec<u8>> {
    let mut doc = Automerge::new().with_actor(actor);
    build(&mut doc);
    doc.get_changes(&[])
        .into_iter()
        .map(|c| c.raw_bytes().to_vec())
        .collect()
}

fn sealed(f: &Fixture, signer: &SigningKey, doc: Id, plaintext: &[u8]) -> ByteBuf {
    ByteBuf::from(meridian::seal::seal(signer, &f.key, f.workspace, doc, plaintext).encode())
}

/// Merges `bytes` into Bo's node and checks the error and that nothing changed.
#[track_caller]
fn refused(f: &Fixture, name: &str, bytes: &[u8], expected: &str) {
    refused_by(&f.bo, f, name, bytes, expected)
}

/// Merges `bytes` into `home`'s node and checks the error and that nothing changed.
#[track_caller]
fn refused_by(home: &Home, f: &Fixture, name: &str, bytes: &[u8], expected: &str) {
    let before = (home.snapshot(), home.ok(&["--json", "proposal", "list"]));
    let path = f.world.file(name);
    std::fs::write(&path, bytes).unwrap();
    let error = home.err(&["merge", path.to_str().unwrap()]);
    assert!(
        error.contains(expected),
        "{name}: expected `{expected}` in: {error}"
    );
    let after = (home.snapshot(), home.ok(&["--json", "proposal", "list"]));
    assert!(before == after, "{name}: the store changed");
}

fn simple_change(f: &Fixture, actor: ActorId) -> Vec<u8> {
    let doc_id = Id::parse(&f.proposal).unwrap();
    // A change on top of the real proposal as Bo's node holds it.
    let node = meridian::node::Node::open(f.bo.path()).unwrap();
    let mut loaded = node.load(f.workspace, doc_id).unwrap();
    drop(node);
    loaded.set_actor(actor);
    let before = loaded.get_heads();
    let mut tx = loaded.transaction();
    tx.put(ROOT, "title", "Hijacked").unwrap();
    tx.commit_with(CommitOptions::default().with_message("evil").with_time(1));
    loaded.get_changes(&before)[0].raw_bytes().to_vec()
}

#[test]
fn garbage_truncated_and_empty_files() {
    let f = fixture();
    let good = f.ana.snapshot();
    refused(&f, "empty", b"", "the file is empty");
    refused(
        &f,
        "garbage",
        b"\x00\x01hello world, not a bundle",
        "neither a Meridian bundle nor a saved automerge document",
    );
    refused(
        &f,
        "truncated",
        &good[..good.len() / 2],
        "damaged or truncated",
    );
    refused(&f, "magic-only", BUNDLE_MAGIC, "damaged or truncated");
    let mut version = BUNDLE_MAGIC.to_vec();
    ciborium::into_writer(
        &Bundle {
            version: 99,
            workspace: f.workspace.0.to_vec(),
            envelopes: vec![],
            docs: None,
            disclosure: None,
        },
        &mut version,
    )
    .unwrap();
    refused(
        &f,
        "version",
        &version,
        "bundle version 99 is not supported",
    );
    refused(
        &f,
        "other-workspace",
        &bundle_of(Id([9; 16]), vec![]),
        "which this node has not joined",
    );
    refused(
        &f,
        "automerge-garbage",
        &[0x85, 0x6f, 0x4a, 0x83, 1, 2, 3, 4, 0, 200, 1],
        "saved document is damaged",
    );
    // A bundle with one altered byte inside an envelope's ciphertext.
    let bundle: Bundle = ciborium::from_reader(&good[BUNDLE_MAGIC.len()..]).unwrap();
    let mut envelopes = bundle.envelopes;
    let mut envelope = meridian_relay::Envelope::decode(&envelopes[0]).unwrap();
    envelope.ciphertext[3] ^= 0x40;
    envelopes[0] = ByteBuf::from(envelope.encode());
    refused(
        &f,
        "flipped",
        &bundle_of(f.workspace, envelopes),
        "signature does not verify",
    );
}

#[test]
fn forged_changes_are_rejected_and_never_applied() {
    let f = fixture();
    let ana = device_key(&f.ana);
    let bo = device_key(&f.bo);
    let doc = Id::parse(&f.proposal).unwrap();
    // Ana signs a change whose actor claims to be Bo.
    let as_bo = simple_change(&f, actor_of(&bo));
    refused(
        &f,
        "actor",
        &bundle_of(f.workspace, vec![sealed(&f, &ana, doc, &as_bo)]),
        "forged change",
    );
    // A stranger with the workspace key but no membership.
    let eve = SigningKey::from_bytes(&[42; 32]);
    let by_eve = simple_change(&f, actor_of(&eve));
    refused(
        &f,
        "stranger",
        &bundle_of(f.workspace, vec![sealed(&f, &eve, doc, &by_eve)]),
        "not a verified member",
    );
    // An envelope sealed for one document, relabelled to another, does not decrypt.
    let by_ana = simple_change(&f, actor_of(&ana));
    let mut moved = meridian::seal::seal(&ana, &f.key, f.workspace, doc, &by_ana);
    moved.doc = Id([3; 16]).0.to_vec();
    moved.signature = vec![0; 64];
    refused(
        &f,
        "moved",
        &bundle_of(f.workspace, vec![ByteBuf::from(moved.encode())]),
        "signature does not verify",
    );
    // A saved automerge document written by the stranger: unsigned, and not a member's.
    let mut saved = Automerge::new().with_actor(actor_of(&eve));
    let mut tx = saved.transaction();
    tx.put(ROOT, "id", Id::random().hex()).unwrap();
    tx.put(ROOT, "kind", "thread").unwrap();
    tx.put(ROOT, "workspace", f.workspace.hex()).unwrap();
    tx.commit();
    refused(&f, "stranger-saved", &saved.save(), "carry no signatures");
    // The real thing goes through, so the refusals above were about the forgery.
    let path = f.world.file("fine.bundle");
    std::fs::write(
        &path,
        bundle_of(f.workspace, vec![sealed(&f, &ana, doc, &by_ana)]),
    )
    .unwrap();
    f.bo.ok(&["merge", path.to_str().unwrap()]);
    assert_eq!(f.bo.json(&["show", &f.proposal])["title"], "Hijacked");
}

#[test]
fn absurd_nesting_and_missing_dependencies_are_refused() {
    let f = fixture();
    let ana = device_key(&f.ana);
    let deep_doc = Id::random();
    let deep = changes(actor_of(&ana), |doc| {
        let mut tx = doc.transaction();
        let mut obj = ROOT;
        for _ in 0..5000 {
            obj = tx.put_object(&obj, "x", ObjType::Map).unwrap();
        }
        tx.commit();
    });
    refused(
        &f,
        "deep",
        &bundle_of(f.workspace, vec![sealed(&f, &ana, deep_doc, &deep[0])]),
        "more than 64 levels deep",
    );

    // Thousands of changes whose first dependency never arrives.
    let orphans = changes(actor_of(&ana), |doc| {
        for i in 0..3000 {
            let mut tx = doc.transaction();
            tx.put(ROOT, "n", i as i64).unwrap();
            tx.commit();
        }
    });
    let records = vec![sealed(&f, &ana, Id::random(), &orphans[1..].concat())];
    refused(
        &f,
        "orphans",
        &bundle_of(f.workspace, records),
        "depend on changes this node does not have",
    );
}

#[test]
fn decompression_bombs_are_stopped_at_the_budget() {
    // A compressed change chunk that inflates to 64 MiB, against an 8 MiB budget.
    let payload = vec![0u8; 64 << 20];
    let mut encoder = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut encoder, &payload).unwrap();
    let compressed = encoder.finish().unwrap();
    assert!(
        compressed.len() < 1 << 20,
        "the bomb is small: {} bytes",
        compressed.len()
    );
    let mut chunk = ingest::AUTOMERGE_MAGIC.to_vec();
    chunk.extend_from_slice(&[0, 0, 0, 0, 2]);
    let mut len = compressed.len();
    loop {
        let byte = (len & 0x7f) as u8;
        len >>= 7;
        chunk.push(if len == 0 { byte } else { byte | 0x80 });
        if len == 0 {
            break;
        }
    }
    chunk.extend_from_slice(&compressed);
    // Sixteen times its size and the batch's 4 MiB of slack are far less than 64 MiB.
    let mut budget = ingest::Budget::new(&Limits::default());
    let error = budget
        .open(chunk.len(), |left| ingest::chunks(&chunk, left, false))
        .unwrap_err()
        .to_string();
    assert!(error.contains("decompression bomb"), "{error}");
    let generous = Limits {
        inflation: 1 << 10,
        ..Limits::default()
    };
    ingest::Budget::new(&generous)
        .open(chunk.len(), |left| ingest::chunks(&chunk, left, false))
        .expect("within a larger budget the same bytes are only large");
}

/// Bo, a member who signs honestly, makes one change on his copy of `doc` that breaks a
/// document rule; sealed and bundled for Ana.
fn forged_by_bo(f: &Fixture, doc: Id, build: impl FnOnce(&mut Automerge)) -> Vec<u8> {
    let bo = device_key(&f.bo);
    let node = meridian::node::Node::open(f.bo.path()).unwrap();
    let mut am = node.load(f.workspace, doc).unwrap();
    drop(node);
    am.set_actor(actor_of(&bo));
    let before = am.get_heads();
    build(&mut am);
    let change = am
        .get_changes(&before)
        .pop()
        .expect("the forgery made a change");
    bundle_of(f.workspace, vec![sealed(f, &bo, doc, change.raw_bytes())])
}

#[test]
fn a_member_cannot_rewrite_what_others_wrote() {
    use meridian::doc::View;
    let f = fixture();
    let doc = Id::parse(&f.proposal).unwrap();
    f.ana.ok(&["proposal", "approve", &f.proposal]);
    let concern = f.ana.json(&[
        "proposal",
        "concern",
        &f.proposal,
        "-m",
        "Mine",
        "--blocking",
    ])["entry_id"]
        .as_str()
        .unwrap()
        .to_string();
    f.ana.ok(&["reply", &f.proposal, "-m", "Ana's words"]);
    sync_pair(&f.world, &f.ana, &f.bo);
    let ana_id = hex::encode(device_key(&f.ana).verifying_key().to_bytes());
    let bo_id = hex::encode(device_key(&f.bo).verifying_key().to_bytes());
    let entry = |am: &Automerge, id: &str| {
        View::now(am)
            .map(&View::now(am).map(&ROOT, "entries").unwrap(), id)
            .unwrap()
    };
    let approval = {
        let node = meridian::node::Node::open(f.bo.path()).unwrap();
        let am = node.load(f.workspace, doc).unwrap();
        meridian::discussion::entries(View::now(&am))
            .into_iter()
            .find(|e| e.kind == "approve")
            .unwrap()
            .id
    };
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "rewrite-approval",
            forged_by_bo(&f, doc, |am| {
                let obj = entry(am, &approval);
                let mut tx = am.transaction();
                tx.put(&obj, "kind", "concern").unwrap();
                tx.commit();
            }),
        ),
        (
            "delete-concern",
            forged_by_bo(&f, doc, |am| {
                let entries = View::now(am).map(&ROOT, "entries").unwrap();
                let mut tx = am.transaction();
                tx.delete(&entries, concern.as_str()).unwrap();
                tx.commit();
            }),
        ),
        (
            "entry-in-anas-name",
            forged_by_bo(&f, doc, |am| {
                let heads = am.get_heads();
                let mut entry = meridian::discussion::Entry::new("approve", &ana_id, 1);
                entry.heads = meridian::doc::heads_hex(&heads);
                let mut tx = am.transaction();
                meridian::discussion::put_entry(&mut tx, &entry, &heads).unwrap();
                tx.commit();
            }),
        ),
        (
            "edit-anas-comment",
            forged_by_bo(&f, doc, |am| {
                let comments = View::now(am).map(&ROOT, "comments").unwrap();
                let id = View::now(am).keys(&comments)[0].clone();
                let comment = View::now(am).map(&comments, &id).unwrap();
                let mut tx = am.transaction();
                tx.put(&comment, "body", "Bo's words").unwrap();
                tx.commit();
            }),
        ),
        (
            "add-self-as-decider",
            forged_by_bo(&f, doc, |am| {
                let deciders = View::now(am).map(&ROOT, "deciders").unwrap();
                let mut tx = am.transaction();
                tx.put(&deciders, bo_id.as_str(), true).unwrap();
                tx.commit();
            }),
        ),
        (
            "become-author",
            forged_by_bo(&f, doc, |am| {
                let mut tx = am.transaction();
                tx.put(ROOT, "author", bo_id.as_str()).unwrap();
                tx.commit();
            }),
        ),
        // What a document is, said again later: a receiver takes a stored document's
        // kind from its index entry, trusting that no later change can rewrite it.
        (
            "become-a-thread",
            forged_by_bo(&f, doc, |am| {
                let mut tx = am.transaction();
                tx.put(ROOT, "kind", "thread").unwrap();
                tx.commit();
            }),
        ),
        (
            "move-to-another-workspace",
            forged_by_bo(&f, doc, |am| {
                let mut tx = am.transaction();
                tx.put(ROOT, "workspace", Id::random().hex()).unwrap();
                tx.commit();
            }),
        ),
        (
            "another-id",
            forged_by_bo(&f, doc, |am| {
                let mut tx = am.transaction();
                tx.put(ROOT, "id", Id::random().hex()).unwrap();
                tx.commit();
            }),
        ),
        (
            "key-in-anas-entry",
            forged_by_bo(&f, f.workspace, |am| {
                let members = View::now(am).map(&ROOT, "members").unwrap();
                let ana = View::now(am).map(&members, &ana_id).unwrap();
                let keys = View::now(am).map(&ana, "keys").unwrap();
                let mut tx = am.transaction();
                tx.put(&keys, bo_id.as_str(), true).unwrap();
                tx.commit();
            }),
        ),
        (
            "remove-ana",
            forged_by_bo(&f, f.workspace, |am| {
                let members = View::now(am).map(&ROOT, "members").unwrap();
                let mut tx = am.transaction();
                tx.delete(&members, ana_id.as_str()).unwrap();
                tx.commit();
            }),
        ),
        // Every entry says the document it was written on: none, or the empty document,
        // would make an acceptance see no deciders and no concerns.
        (
            "entry-without-heads",
            forged_by_bo(&f, doc, |am| {
                let entries = View::now(am).map(&ROOT, "entries").unwrap();
                let mut tx = am.transaction();
                let obj = tx
                    .put_object(
                        &entries,
                        Id::random().hex().as_str(),
                        automerge::ObjType::Map,
                    )
                    .unwrap();
                tx.put(&obj, "kind", "approve").unwrap();
                tx.put(&obj, "by", bo_id.as_str()).unwrap();
                tx.commit();
            }),
        ),
        // A member entry is made once: made again, it would shed `removed` and `admin`.
        (
            "member-entry-made-again",
            forged_by_bo(&f, f.workspace, |am| {
                let members = View::now(am).map(&ROOT, "members").unwrap();
                let mut tx = am.transaction();
                let again = tx
                    .put_object(&members, bo_id.as_str(), automerge::ObjType::Map)
                    .unwrap();
                tx.put(&again, "name", "Bo").unwrap();
                tx.commit();
            }),
        ),
        // Norms are the creator's and the admins' to change; nobody names themself admin.
        (
            "norms-by-a-member",
            forged_by_bo(&f, f.workspace, |am| {
                let mut tx = am.transaction();
                meridian::workspace::put_level(
                    &mut tx,
                    "urgent",
                    meridian::norms::ResponseTime::WorkingDays(30),
                )
                .unwrap();
                tx.commit();
            }),
        ),
        (
            "self-made-admin",
            forged_by_bo(&f, f.workspace, |am| {
                let members = View::now(am).map(&ROOT, "members").unwrap();
                let bo = View::now(am).map(&members, &bo_id).unwrap();
                let mut tx = am.transaction();
                tx.put(&bo, "admin", 1).unwrap();
                tx.commit();
            }),
        ),
    ];
    let mut cases = cases;
    // Shadowing: a record made at the concern's key on a copy from before the concern, so
    // automerge sees no predecessor and would let the newer object hide the concern.
    let before_concern = {
        let node = meridian::node::Node::open(f.bo.path()).unwrap();
        let am = node.load(f.workspace, doc).unwrap();
        let concern_hash = am
            .get_changes(&[])
            .into_iter()
            .find(|c| c.message().is_some_and(|m| m.starts_with("concern")))
            .unwrap();
        concern_hash.deps().to_vec()
    };
    cases.push((
        "shadow-concern",
        forged_by_bo(&f, doc, |am| {
            let mut old = am.fork_at(&before_concern).unwrap();
            old.set_actor(am.get_actor().clone());
            let entries = View::now(&old).map(&ROOT, "entries").unwrap();
            let heads = old.get_heads();
            let mut tx = old.transaction();
            let obj = tx
                .put_object(&entries, concern.as_str(), automerge::ObjType::Map)
                .unwrap();
            tx.put(&obj, "kind", "approve").unwrap();
            tx.put(&obj, "by", bo_id.as_str()).unwrap();
            tx.put(&obj, "heads", meridian::doc::heads_hex(&heads).join(","))
                .unwrap();
            tx.commit();
            let change = old.get_last_local_change().unwrap();
            am.apply_changes([change]).unwrap();
        }),
    ));
    // A second change without dependencies: "the proposal as an empty document".
    cases.push((
        "second-root",
        forged_by_bo(&f, doc, |am| {
            let mut fresh = Automerge::new().with_actor(am.get_actor().clone());
            let mut tx = fresh.transaction();
            tx.put(ROOT, "title", "Start over").unwrap();
            tx.commit();
            let change = fresh.get_last_local_change().unwrap();
            am.apply_changes([change]).unwrap();
        }),
    ));
    // A decided proposal's text is final for everyone who saw the decision.
    let decided = {
        let p = f
            .ana
            .create(&["proposal", "new", "Decided", "--decider", "Ana"]);
        f.ana.ok(&["proposal", "open", &p, "--closes", "0m"]);
        f.ana.ok(&["proposal", "approve", &p]);
        f.ana.ok(&["proposal", "accept", &p]);
        sync_pair(&f.world, &f.ana, &f.bo);
        Id::parse(&p).unwrap()
    };
    cases.push((
        "rewrite-after-acceptance",
        forged_by_bo(&f, decided, |am| {
            let mut tx = am.transaction();
            tx.put(ROOT, "title", "Something else").unwrap();
            tx.commit();
        }),
    ));
    // With his own change the document's only head, Bo's entry could leave it out of its
    // heads (automerge implies it) and so name no heads at all: the empty document.
    f.bo.ok(&["reply", &f.proposal, "-m", "Bo's own words"]);
    sync_pair(&f.world, &f.bo, &f.ana);
    cases.push((
        "entry-on-the-empty-document",
        forged_by_bo(&f, doc, |am| {
            let entry = meridian::discussion::Entry::new("approve", &bo_id, 1);
            let mut tx = am.transaction();
            meridian::discussion::put_entry(&mut tx, &entry, &[]).unwrap();
            tx.commit();
        }),
    ));
    for (name, bytes) in cases {
        let expected = match name {
            "second-root" => "start the proposal over",
            "shadow-concern" => "already exists: records are never replaced",
            _ => "breaks a rule",
        };
        refused_by(&f.ana, &f, name, &bytes, expected);
    }
    // Bo's own reply through the same path is accepted: the refusals were about the rules.
    let fine = forged_by_bo(&f, doc, |am| {
        let mut tx = am.transaction();
        meridian::discussion::put_comment(
            &mut tx,
            &Id::random().hex(),
            None,
            &bo_id,
            1,
            "Bo's own words",
        )
        .unwrap();
        tx.commit();
    });
    let path = f.world.file("fine.bundle");
    std::fs::write(&path, fine).unwrap();
    f.ana.ok(&["merge", path.to_str().unwrap()]);
}
