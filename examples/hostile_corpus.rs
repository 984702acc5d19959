//! Writes the hostile-input corpus: `cargo run --example hostile_corpus -- tests/corpus`.
//!
//! Deterministic: keys, documents, nonces and random bytes all come from fixed seeds
//! (`meridian::fuzz::World`, `meridian::fuzz::Rng`), so running it again rewrites the same
//! bytes. Every case is one file under `<dir>/<entry point>/`, listed in `<dir>/MANIFEST.tsv`
//! with its category, what the error must say, and a description. `tests/corpus.rs` runs every
//! case through its real entry point; `tests/fuzz.rs` starts its mutations from them.
//!
//! Conventions the corpus test follows:
//! - `expect` is a substring the error must contain, `*` for any clear error, or for relay
//!   frames `refused:CODE`, `rejected:TEXT`, `duplicate`, `error:TEXT`, `closed`; for node
//!   frames and envelopes also `rejected:TEXT`, `held`, `known` or `applied`.
//! - Files in category `oversized` hold only the start of a frame: the test pads them with
//!   zeros to one byte over the frame limit (9 MiB), to keep the repository small.
//! - `.seq` files are a CBOR array of messages sent one after another.
//! - `relay-frames/<phase>/` and `node-frames/<phase>/` name when the message is sent:
//!   `first` (instead of Hello), `prove` (instead of Prove), `session` (after Welcome), `text`
//!   (after Welcome, as a text message); `challenge` (instead of Challenge), `session` (after
//!   the node's Subscribe).
//! - `cli-args/` files are the arguments separated by NUL bytes (argv cannot carry a NUL).
//! - `home/redb/` files are recipes applied to a fresh home's database: `truncate N`,
//!   `zero N`, `flip OFFSET`, `garbage N`.

use std::io::Write;
use std::path::{Path, PathBuf};

use automerge::transaction::Transactable;
use automerge::{ActorId, Automerge, ObjType, ROOT};
use ciborium::Value;
use ed25519_dalek::SigningKey;
use meridian::fuzz::{self, Rng, T0, World};
use meridian::id::Id;
use meridian::ingest::AUTOMERGE_MAGIC;
use meridian_relay::Envelope;
use meridian_relay::protocol::{
    Frame, MAX_VOUCHES, PROTOCOL_VERSION, PushResult, RefusedCode, VouchResult, Vouchee,
};

struct Corpus {
    dir: PathBuf,
    rows: Vec<[String; 5]>,
}

impl Corpus {
    fn add(&mut self, path: &str, category: &str, expect: &str, what: &str, bytes: &[u8]) {
        let file = self.dir.join(path);
        std::fs::create_dir_all(file.parent().expect("a case is in a folder"))
            .expect("the corpus folder can be written");
        std::fs::write(&file, bytes).expect("the corpus can be written");
        let entry = path.split('/').next().expect("a path has a first part");
        assert!(
            !self.rows.iter().any(|r| r[0] == path),
            "two cases are called {path}"
        );
        self.rows.push([
            path.to_string(),
            entry.to_string(),
            category.to_string(),
            expect.to_string(),
            what.replace(['\t', '\n'], " "),
        ]);
    }
}

fn main() {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "tests/corpus".into());
    let dir = PathBuf::from(dir);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).expect("the old corpus can be removed");
    }
    let mut corpus = Corpus {
        dir: dir.clone(),
        rows: Vec::new(),
    };
    let world = World::new();
    let hostile = Hostile::new(&world);
    fixture(&dir, &world);
    relay_frames(&mut corpus, &world, &hostile);
    node_frames(&mut corpus, &world, &hostile);
    envelopes(&mut corpus, &world, &hostile);
    bundles(&mut corpus, &world, &hostile);
    saved_docs(&mut corpus, &world, &hostile);
    cli_args(&mut corpus, &world);
    configs(&mut corpus);
    home_files(&mut corpus);
    let mut manifest = std::fs::File::create(dir.join("MANIFEST.tsv")).expect("manifest");
    writeln!(manifest, "file\tentry\tcategory\texpect\tdescription").expect("manifest");
    for row in &corpus.rows {
        writeln!(manifest, "{}", row.join("\t")).expect("manifest");
    }
    println!("{} cases in {}", corpus.rows.len(), dir.display());
}

/// What a node joins to hold the world: Bo's invite code and the base bundle.
fn fixture(dir: &Path, world: &World) {
    let fixture = dir.join("fixture");
    std::fs::create_dir_all(&fixture).expect("fixture folder");
    std::fs::write(
        fixture.join("invite.txt"),
        world.invite(fuzz::BO_INVITE).encode(),
    )
    .expect("invite");
    std::fs::write(
        fixture.join("base.bundle"),
        world.bundle(world.base_envelopes()),
    )
    .expect("base bundle");
}

/// Hostile envelopes and change bytes, built once and used by several entry points.
struct Hostile {
    /// (name, category, expect in sync, expect in merge, description, envelope bytes)
    envelopes: Vec<(String, String, String, String, String, Vec<u8>)>,
}

fn uleb(mut n: u64, out: &mut Vec<u8>) {
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        out.push(if n == 0 { byte } else { byte | 0x80 });
        if n == 0 {
            return;
        }
    }
}

/// A raw automerge chunk: magic, a checksum (whatever it is), type, length, data.
fn chunk(kind: u8, data: &[u8]) -> Vec<u8> {
    let mut bytes = AUTOMERGE_MAGIC.to_vec();
    bytes.extend_from_slice(&[0, 0, 0, 0, kind]);
    uleb(data.len() as u64, &mut bytes);
    bytes.extend_from_slice(data);
    bytes
}

/// Deflate of `total` zero bytes.
fn deflated_zeros(total: u64) -> Vec<u8> {
    let mut encoder = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
    let block = vec![0u8; 1 << 20];
    let mut left = total;
    while left > 0 {
        let n = left.min(block.len() as u64) as usize;
        encoder.write_all(&block[..n]).expect("deflate into memory");
        left -= n as u64;
    }
    encoder.finish().expect("deflate into memory")
}

/// One change made to a document.
type Edit = Box<dyn FnOnce(&mut Automerge)>;

/// One alteration of a signed envelope.
type Alter = fn(&mut Envelope);

/// Changes by `key` on a fresh document, each closure a change.
fn fresh_changes(key: &SigningKey, edits: Vec<Edit>) -> Vec<Vec<u8>> {
    let mut doc = Automerge::new().with_actor(World::actor(key));
    for edit in edits {
        edit(&mut doc);
    }
    doc.get_changes(&[])
        .into_iter()
        .map(|mut c| c.bytes().to_vec())
        .collect()
}

fn nested(levels: usize) -> Edit {
    Box::new(move |doc: &mut Automerge| {
        let mut tx = doc.transaction();
        let mut obj = ROOT;
        for _ in 0..levels {
            obj = tx.put_object(&obj, "x", ObjType::Map).expect("nesting");
        }
        tx.commit();
    })
}

impl Hostile {
    fn new(world: &World) -> Hostile {
        let mut list = Vec::new();
        let mut add =
            |name: &str, category: &str, sync: &str, merge: &str, what: &str, bytes: Vec<u8>| {
                list.push((
                    name.to_string(),
                    category.to_string(),
                    sync.to_string(),
                    merge.to_string(),
                    what.to_string(),
                    bytes,
                ))
            };
        let proposal = world.proposal_doc();
        let on_proposal =
            |key: &SigningKey,
             time: i64,
             f: &dyn Fn(&mut automerge::transaction::Transaction<'_>)| {
                let mut doc = proposal.fork();
                fuzz::edit(&mut doc, key, time, "hostile", |tx| {
                    f(tx);
                    Ok(())
                })
            };
        let title = |text: &'static str| {
            move |tx: &mut automerge::transaction::Transaction<'_>| {
                tx.put(ROOT, "title", text).expect("put");
            }
        };
        // Authorship.
        let as_cy = {
            let mut doc = proposal.fork();
            fuzz::edit(&mut doc, &world.cy, T0 + 10, "as Cy", |tx| {
                tx.put(ROOT, "title", "Hijacked")?;
                Ok(())
            })
        };
        add(
            "actor-not-signer",
            "forged-actor",
            "rejected:forged change",
            "forged change",
            "Ana signs a change whose actor is Cy's device",
            world.seal(&world.ana, world.proposal, &as_cy),
        );
        let foreign_actor = {
            let mut doc = proposal.fork();
            doc.set_actor(ActorId::from(vec![7u8; 16]));
            let before = doc.get_heads();
            let mut tx = doc.transaction();
            tx.put(ROOT, "title", "x").expect("put");
            tx.commit();
            doc.get_changes(&before)[0].raw_bytes().to_vec()
        };
        add(
            "actor-not-a-device",
            "forged-actor",
            "rejected:not a Meridian device",
            "not a Meridian device",
            "a change whose actor id is 16 bytes, no device's",
            world.seal(&world.ana, world.proposal, &foreign_actor),
        );
        let genesis =
            meridian::workspace::genesis(world.workspace, &world.ana.verifying_key().to_bytes());
        add(
            "genesis-transmitted",
            "forged-actor",
            "rejected:not a Meridian device",
            "not a Meridian device",
            "the workspace's genesis change, which is never transmitted",
            world.seal(&world.ana, world.workspace, &genesis),
        );
        let by_eve = {
            let mut doc = proposal.fork();
            fuzz::edit(&mut doc, &world.eve, T0 + 10, "Eve", |tx| {
                tx.put(ROOT, "title", "Eve was here")?;
                Ok(())
            })
        };
        add(
            "stranger",
            "not-member",
            "held",
            "not a verified member",
            "a change signed by Eve, who has the key but is no member",
            world.seal(&world.eve, world.proposal, &by_eve),
        );
        // Signatures and shape.
        let good = world.seal(
            &world.ana,
            world.proposal,
            &on_proposal(&world.ana, T0 + 20, &title("Renamed")),
        );
        let envelope = Envelope::decode(&good).expect("a good envelope");
        let other = Envelope::decode(&world.seal(
            &world.ana,
            world.proposal,
            &on_proposal(&world.ana, T0 + 21, &title("Other")),
        ))
        .expect("a good envelope");
        let fields: [(&str, Alter); 7] = [
            ("workspace", |e| e.workspace[0] ^= 1),
            ("doc", |e| e.doc[5] ^= 0x10),
            ("author", |e| e.author[31] ^= 0x01),
            ("nonce", |e| e.nonce[23] ^= 0x80),
            ("ciphertext", |e| e.ciphertext[7] ^= 0x04),
            ("signature", |e| e.signature[0] ^= 0x01),
            ("signature-end", |e| e.signature[63] ^= 0x40),
        ];
        for (field, alter) in fields {
            let mut bad = envelope.clone();
            alter(&mut bad);
            let expect = if field == "author" {
                "envelope"
            } else {
                "signature does not verify"
            };
            add(
                &format!("flipped-{field}"),
                "bad-signature",
                &format!("rejected:{expect}"),
                expect,
                &format!("one bit of the envelope's {field} flipped after signing"),
                bad.encode(),
            );
        }
        let mut swapped = envelope.clone();
        swapped.signature = other.signature.clone();
        add(
            "swapped-signature",
            "bad-signature",
            "rejected:signature does not verify",
            "signature does not verify",
            "the signature of another envelope by the same author",
            swapped.encode(),
        );
        let mut resigned = envelope.clone();
        resigned.author = world.cy.verifying_key().to_bytes().to_vec();
        add(
            "swapped-author",
            "bad-signature",
            "rejected:signature does not verify",
            "signature does not verify",
            "Cy's key as author over Ana's signature",
            resigned.encode(),
        );
        let mut zero = envelope.clone();
        zero.signature = vec![0; 64];
        add(
            "zero-signature",
            "bad-signature",
            "rejected:signature does not verify",
            "signature does not verify",
            "a signature of zeros",
            zero.encode(),
        );
        for (name, len) in [
            ("nonce-23", 23usize),
            ("nonce-25", 25),
            ("doc-15", 15),
            ("doc-17", 17),
            ("workspace-0", 0),
            ("author-31", 31),
            ("signature-63", 63),
            ("signature-65", 65),
        ] {
            let mut bad = envelope.clone();
            let field = match name.split('-').next().expect("a name") {
                "nonce" => &mut bad.nonce,
                "doc" => &mut bad.doc,
                "workspace" => &mut bad.workspace,
                "author" => &mut bad.author,
                _ => &mut bad.signature,
            };
            field.resize(len, 0xAB);
            add(
                &format!("length-{name}"),
                "bad-shape",
                "rejected:has",
                "bytes, expected",
                &format!("an envelope field of the wrong length ({name})"),
                bad.encode(),
            );
        }
        for version in [0u8, 6, 255] {
            let mut bad = envelope.clone();
            bad.version = version;
            add(
                &format!("envelope-version-{version}"),
                "wrong-version",
                "rejected:not supported",
                "not supported",
                &format!("envelope version {version}"),
                bad.encode(),
            );
        }
        // Shared envelopes: several documents' changes, signed once.
        let mut pair = [world.workspace, world.proposal];
        pair.sort();
        let part = on_proposal(&world.ana, T0 + 22, &title("Shared"));
        let shared = |parts: &[&[u8]]| {
            world.seal_shared(&world.ana, &pair, &meridian::seal::shared_plaintext(parts))
        };
        let big = vec![0; (4 << 20) + 1];
        let whole = proposal.save();
        for (name, category, expect, what, bytes) in [
            (
                "missing-part",
                "truncated",
                "part length is malformed",
                "one part for two documents",
                shared(&[&part]),
            ),
            (
                "empty-part",
                "garbage-changes",
                "empty part",
                "an empty part for a listed document",
                shared(&[&part, b""]),
            ),
            (
                "stray-part",
                "garbage-changes",
                "stray bytes",
                "three parts for two documents",
                shared(&[&part, &part, &part]),
            ),
            (
                "plain-changes",
                "garbage-changes",
                "not a compressed list of parts",
                "changes as an envelope of one document carries them",
                world.seal_shared(&world.ana, &pair, &part),
            ),
            (
                "whole-document",
                "garbage-changes",
                "whole document",
                "a part that is a whole saved document",
                shared(&[&part, &whole]),
            ),
            (
                "forged-part",
                "forged-actor",
                "forged change",
                "Ana signs a part whose change is Cy's",
                shared(&[&part, &as_cy]),
            ),
            (
                "bomb",
                "decompression-bomb",
                "decompression bomb",
                "parts inflating past what an envelope may carry",
                shared(&[&part, &big]),
            ),
        ] {
            add(
                &format!("shared-{name}"),
                category,
                &format!("rejected:{expect}"),
                expect,
                &format!("a shared envelope: {what}"),
                bytes,
            );
        }
        let listing = |docs: &[Id]| {
            world.seal_shared(
                &world.ana,
                docs,
                &meridian::seal::shared_plaintext(&[&part, &part]),
            )
        };
        let [low, high] = pair;
        for (name, what, bytes) in [
            ("one-document", "lists one document", listing(&[high])),
            (
                "unordered",
                "lists its documents out of order",
                listing(&[high, low]),
            ),
            ("repeated", "lists one document twice", listing(&[low, low])),
        ] {
            add(
                &format!("shared-{name}"),
                "bad-shape",
                "rejected:document list is malformed",
                "document list is malformed",
                &format!("a shared envelope that {what}"),
                bytes,
            );
        }
        let mut with_doc = Envelope::decode(&shared(&[&part, &part])).expect("a shared envelope");
        with_doc.doc = world.proposal.0.to_vec();
        add(
            "shared-with-doc",
            "bad-shape",
            "rejected:has",
            "bytes, expected",
            "a shared envelope that also names one document",
            with_doc.encode(),
        );
        let mut not_point = envelope.clone();
        not_point.author = vec![0xff; 32];
        add(
            "author-not-a-point",
            "bad-shape",
            "rejected:envelope",
            "envelope",
            "an author key that is not a curve point",
            not_point.encode(),
        );
        let elsewhere = meridian::seal::seal_with_nonce(
            &world.ana,
            &world.key,
            Id([9; 16]),
            world.proposal,
            [1; 24],
            b"x",
        )
        .encode();
        add(
            "other-workspace",
            "wrong-workspace",
            "rejected:another workspace",
            "another workspace",
            "a well-signed envelope of another workspace",
            elsewhere,
        );
        let other_key = meridian::seal::seal_with_nonce(
            &world.ana,
            &[3; 32],
            world.workspace,
            world.proposal,
            [2; 24],
            &as_cy,
        )
        .encode();
        add(
            "other-key",
            "bad-decryption",
            "rejected:does not decrypt",
            "does not decrypt",
            "sealed with another workspace key",
            other_key,
        );
        let moved = Envelope::sign(
            &world.ana,
            world.workspace.0,
            [0x66; 16],
            envelope.nonce.clone().try_into().expect("24"),
            |_| envelope.ciphertext.clone(),
        )
        .encode();
        add(
            "relabelled-doc",
            "bad-decryption",
            "rejected:does not decrypt",
            "does not decrypt",
            "a ciphertext moved to another document and signed again",
            moved,
        );
        for (name, bytes) in [
            ("empty", Vec::new()),
            ("garbage", vec![0xff; 40]),
            ("cbor-int", vec![0x18, 0x2a]),
            ("cbor-map-empty", vec![0xa0]),
        ] {
            add(
                &format!("envelope-{name}"),
                "garbage-cbor",
                "rejected:envelope",
                "envelope",
                &format!("envelope bytes that are not an envelope ({name})"),
                bytes,
            );
        }
        // Plaintext: automerge chunks.
        let mut rng = Rng::new(7);
        for i in 0..6 {
            let n = [0usize, 1, 8, 9, 64, 4096][i];
            let (sync, merge) = if n == 0 {
                ("known", "ok")
            } else {
                ("rejected:", "")
            };
            add(
                &format!("plaintext-random-{n}"),
                "garbage-changes",
                sync,
                merge,
                &format!("{n} random bytes sealed as changes"),
                world.seal(&world.ana, world.proposal, &rng.bytes(n)),
            );
        }
        let mut huge_len = AUTOMERGE_MAGIC.to_vec();
        huge_len.extend_from_slice(&[0, 0, 0, 0, 1]);
        huge_len.extend_from_slice(&[0xff; 9]);
        huge_len.push(0x01);
        add(
            "chunk-length-2-64",
            "garbage-changes",
            "rejected:truncated",
            "truncated",
            "a change chunk whose length field says 2^64 - 1",
            world.seal(&world.ana, world.proposal, &huge_len),
        );
        let mut overlong = AUTOMERGE_MAGIC.to_vec();
        overlong.extend_from_slice(&[0, 0, 0, 0, 1]);
        overlong.extend_from_slice(&[0x80; 12]);
        add(
            "chunk-length-overlong",
            "garbage-changes",
            "rejected:malformed",
            "malformed",
            "a length field of 12 continuation bytes",
            world.seal(&world.ana, world.proposal, &overlong),
        );
        for kind in [3u8, 7, 255] {
            add(
                &format!("chunk-type-{kind}"),
                "garbage-changes",
                "rejected:unsupported automerge chunk",
                "unsupported automerge chunk",
                &format!("a chunk of unknown type {kind}"),
                world.seal(&world.ana, world.proposal, &chunk(kind, b"abc")),
            );
        }
        let valid = on_proposal(&world.ana, T0 + 30, &title("Valid"));
        for cut in [10usize, 20, valid.len() / 2, valid.len() - 1] {
            add(
                &format!("change-truncated-{cut}"),
                "truncated",
                "rejected:",
                "",
                &format!("a change cut at byte {cut}"),
                world.seal(&world.ana, world.proposal, &valid[..cut]),
            );
        }
        let mut trailing = valid.clone();
        trailing.extend_from_slice(&[0x85, 0x6f]);
        add(
            "change-trailing-bytes",
            "truncated",
            "rejected:bad chunk header",
            "bad chunk header",
            "a change followed by two stray bytes",
            world.seal(&world.ana, world.proposal, &trailing),
        );
        let whole = proposal.save();
        add(
            "document-in-envelope",
            "wrong-kind",
            "rejected:whole document",
            "whole document",
            "a whole saved document of another member's changes, sealed by a member who is not the creator (only the creator vouches for others' changes)",
            world.seal(&world.cy, world.proposal, &whole),
        );
        let mut two = whole.clone();
        two.extend_from_slice(&whole);
        add(
            "snapshot-two-documents",
            "wrong-kind",
            "rejected:more than one document",
            "more than one document",
            "a creator's snapshot holding two whole documents",
            world.seal(&world.ana, world.proposal, &two),
        );
        let not_a_device = {
            let mut doc = proposal.fork();
            doc.set_actor(ActorId::from(vec![0x11; 16]));
            let mut tx = doc.transaction();
            tx.put(ROOT, "title", "Nobody's").expect("put");
            tx.commit();
            doc.save()
        };
        add(
            "snapshot-actor-not-a-device",
            "forged-actor",
            "rejected:not a Meridian device",
            "not a Meridian device",
            "a creator's snapshot holding a change whose actor is no device's",
            world.seal(&world.ana, world.proposal, &not_a_device),
        );
        // Decompression bombs.
        let bomb = chunk(2, &deflated_zeros((1 << 30) + (1 << 20)));
        add(
            "bomb-1gib",
            "decompression-bomb",
            "rejected:decompression bomb",
            "decompression bomb",
            "a 1 MiB compressed change that inflates to 1 GiB + 1 MiB",
            world.seal(&world.ana, world.proposal, &bomb),
        );
        // Under the gigabyte a batch could once inflate to, where that budget was itself
        // the bomb: automerge took 2 GB to load what the budget let through.
        let bomb = chunk(2, &deflated_zeros((1 << 30) - (1 << 20)));
        add(
            "bomb-under-1gib",
            "decompression-bomb",
            "rejected:decompression bomb",
            "decompression bomb",
            "a 1 MiB compressed change that inflates to 1 GiB - 1 MiB",
            world.seal(&world.ana, world.proposal, &bomb),
        );
        let corrupt = chunk(2, &[0xff; 64]);
        add(
            "compressed-corrupt",
            "decompression-bomb",
            "rejected:corrupt",
            "corrupt",
            "a compressed change chunk that is not deflate data",
            world.seal(&world.ana, world.proposal, &corrupt),
        );
        // The compressed plaintext of a coalesced push: a tag, then a DEFLATE stream of
        // change chunks (`seal::deflate_changes`), inflated within the same budget.
        let known_run: Vec<u8> = proposal
            .get_changes(&[])
            .iter()
            .flat_map(|c| c.raw_bytes().to_vec())
            .collect();
        let run = meridian::seal::deflate_changes(&known_run);
        add(
            "run-known",
            "duplicate",
            "known",
            "ok",
            "a compressed run of the changes the node has",
            world.seal(&world.ana, world.proposal, &run),
        );
        let mut run_bomb = vec![meridian::seal::DEFLATED_CHANGES];
        run_bomb.extend(deflated_zeros(16 << 20));
        add(
            "run-bomb-16mib",
            "decompression-bomb",
            "rejected:decompression bomb",
            "decompression bomb",
            "a compressed run of 16 KiB that inflates to 16 MiB, past the 4 MiB an envelope may carry",
            world.seal(&world.ana, world.proposal, &run_bomb),
        );
        add(
            "run-truncated",
            "truncated",
            "rejected:truncated",
            "truncated",
            "a compressed run cut in half",
            world.seal(&world.ana, world.proposal, &run[..run.len() / 2]),
        );
        add(
            "run-tag-only",
            "truncated",
            "rejected:truncated",
            "truncated",
            "the compressed-run tag and no stream",
            world.seal(
                &world.ana,
                world.proposal,
                &[meridian::seal::DEFLATED_CHANGES],
            ),
        );
        let mut run_trailing = run.clone();
        run_trailing.extend_from_slice(&[0x85, 0x6f]);
        add(
            "run-trailing-bytes",
            "truncated",
            "rejected:stray bytes",
            "stray bytes",
            "a compressed run followed by two stray bytes",
            world.seal(&world.ana, world.proposal, &run_trailing),
        );
        let mut run_garbage = vec![meridian::seal::DEFLATED_CHANGES];
        run_garbage.extend_from_slice(&[0xff; 64]);
        add(
            "run-garbage",
            "decompression-bomb",
            "rejected:corrupt",
            "corrupt",
            "the compressed-run tag followed by bytes that are not deflate data",
            world.seal(&world.ana, world.proposal, &run_garbage),
        );
        add(
            "run-not-changes",
            "garbage-changes",
            "rejected:bad chunk header",
            "bad chunk header",
            "a compressed run that inflates to text, not automerge changes",
            world.seal(
                &world.ana,
                world.proposal,
                &meridian::seal::deflate_changes(b"not automerge changes at all"),
            ),
        );
        add(
            "run-in-run",
            "garbage-changes",
            "rejected:bad chunk header",
            "bad chunk header",
            "a compressed run that inflates to another compressed run",
            world.seal(
                &world.ana,
                world.proposal,
                &meridian::seal::deflate_changes(&run),
            ),
        );
        // Nesting, dependencies, duplicates, size.
        let deep_doc = Id([0x44; 16]);
        for levels in [65usize, 5000, 100_000] {
            let changes = fresh_changes(&world.ana, vec![nested(levels)]);
            add(
                &format!("nested-{levels}"),
                "deep-nesting",
                "rejected:levels deep",
                "levels deep",
                &format!("a document nested {levels} levels deep"),
                world.seal(&world.ana, deep_doc, &changes[0]),
            );
        }
        let orphans = fresh_changes(
            &world.ana,
            (0..3000)
                .map(|i| -> Edit {
                    Box::new(move |doc: &mut Automerge| {
                        let mut tx = doc.transaction();
                        tx.put(ROOT, "n", i as i64).expect("put");
                        tx.commit();
                    })
                })
                .collect(),
        );
        add(
            "orphans-2999",
            "missing-deps",
            "held",
            "depend on changes this node does not have",
            "2999 changes whose first dependency never arrives",
            world.seal(&world.ana, Id([0x45; 16]), &orphans[1..].concat()),
        );
        let known = proposal
            .get_changes(&[])
            .last()
            .expect("a change")
            .raw_bytes()
            .to_vec();
        add(
            "same-change-twice",
            "duplicate",
            "known",
            "ok",
            "a change the node has, twice in one envelope",
            world.seal(&world.ana, world.proposal, &[known.clone(), known].concat()),
        );
        let equivocation = {
            let first = proposal.get_changes(&[])[0].hash();
            let mut old = proposal.fork_at(&[first]).expect("the first change");
            fuzz::edit(&mut old, &world.ana, T0 + 40, "equivocation", |tx| {
                tx.put(ROOT, "title", "Other history")?;
                Ok(())
            })
        };
        add(
            "equivocation",
            "duplicate",
            "rejected:duplicate seq",
            "duplicate seq",
            "a second, different change with an (actor, seq) the node already has",
            world.seal(&world.ana, world.proposal, &equivocation),
        );
        let base = world.base_envelopes();
        add(
            "known-envelope",
            "duplicate",
            "known",
            "",
            "an envelope the node already has",
            base[base.len() - 1].clone(),
        );
        let second_root = {
            let mut doc =
                Automerge::new().with_actor(meridian::identity::actor_id(&world.ana, &[0x22; 8]));
            let mut tx = doc.transaction();
            tx.put(ROOT, "title", "Start over").expect("put");
            tx.commit();
            vec![doc.get_changes(&[])[0].raw_bytes().to_vec()]
        };
        add(
            "second-root",
            "rules",
            "rejected:start the proposal over",
            "start the proposal over",
            "a second change without dependencies to an existing proposal",
            world.seal(&world.ana, world.proposal, &second_root[0]),
        );
        let unknown_kind = fresh_changes(
            &world.ana,
            vec![Box::new(|doc: &mut Automerge| {
                let mut tx = doc.transaction();
                tx.put(ROOT, "kind", "spaceship").expect("put");
                tx.commit();
            })],
        );
        add(
            "unknown-kind",
            "rules",
            "rejected:unknown kind",
            "unknown kind",
            "a new document of an unknown kind",
            world.seal(&world.ana, Id([0x46; 16]), &unknown_kind[0]),
        );
        let huge = fresh_changes(
            &world.ana,
            vec![Box::new(|doc: &mut Automerge| {
                let mut tx = doc.transaction();
                let text = tx.put_object(ROOT, "x", ObjType::Text).expect("text");
                tx.splice_text(&text, 0, 0, &"all work and no play ".repeat(50_000))
                    .expect("splice");
                tx.commit();
            })],
        );
        add(
            "huge-text-1mb",
            "huge-text",
            "rejected:operations",
            "operations",
            "1 MB of text in one change, in a document of no known kind",
            world.seal(&world.ana, Id([0x47; 16]), &huge[0]),
        );
        Hostile { envelopes: list }
    }
}

// ---------------------------------------------------------------------------------------
// Relay frames.

fn hello(world: &World) -> Frame {
    Frame::Hello {
        version: PROTOCOL_VERSION,
        workspace: world.workspace.0.to_vec(),
        key: world.ana.verifying_key().to_bytes().to_vec(),
        deflate: false,
    }
}

/// Every kind of frame once, valid in shape.
fn every_frame(world: &World, envelope: &[u8]) -> Vec<Frame> {
    vec![
        hello(world),
        Frame::Challenge {
            nonce: vec![1; 32],
            relay: vec![2; 16],
        },
        Frame::Prove {
            signature: vec![3; 64],
            register: Some(world.register_ana()),
        },
        Frame::Welcome {
            head: 0,
            shared: false,
            vouch: false,
        },
        Frame::Refused {
            code: RefusedCode::Busy,
            reason: "busy".into(),
        },
        Frame::Subscribe { after: 0 },
        Frame::Entries {
            entries: vec![(1, serde_bytes::ByteBuf::from(envelope.to_vec()))],
            up_to: 1,
        },
        Frame::Deflated {
            frame: serde_bytes::ByteBuf::from(deflate_raw(
                &Frame::Entries {
                    entries: vec![(1, serde_bytes::ByteBuf::from(envelope.to_vec()))],
                    up_to: 1,
                }
                .encode(),
            )),
        },
        Frame::CaughtUp { head: 0 },
        Frame::Push {
            id: 1,
            envelopes: vec![serde_bytes::ByteBuf::from(envelope.to_vec())],
        },
        Frame::Stored {
            id: 1,
            results: vec![PushResult::Stored(1)],
        },
        Frame::Revoke {
            member: world.cy.verifying_key().to_bytes().to_vec(),
        },
        Frame::Revoked {
            member: world.cy.verifying_key().to_bytes().to_vec(),
        },
        Frame::Vouch {
            id: 2,
            members: vec![cy_vouchee(world)],
        },
        Frame::Vouched {
            id: 2,
            results: vec![VouchResult::Known],
        },
        Frame::Error {
            reason: "no".into(),
        },
    ]
}

/// Cy, with the proof Cy joined with, as the creator vouches for them.
fn cy_vouchee(world: &World) -> Vouchee {
    let meridian_relay::protocol::Register::Join(proof) = world.register_cy() else {
        unreachable!("Cy joins with an invite");
    };
    Vouchee {
        key: world.cy.verifying_key().to_bytes().to_vec(),
        proof,
    }
}

/// A raw DEFLATE stream of `bytes`, at the best level (the smallest bombs).
fn deflate_raw(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(bytes).expect("compressing into memory");
    encoder.finish().expect("compressing into memory")
}

fn deflated(stream: Vec<u8>) -> Frame {
    Frame::Deflated {
        frame: serde_bytes::ByteBuf::from(stream),
    }
}

fn cbor(value: &Value) -> Vec<u8> {
    let mut bytes = Vec::new();
    ciborium::into_writer(value, &mut bytes).expect("CBOR into memory");
    bytes
}

fn text(s: &str) -> Value {
    Value::Text(s.into())
}

fn variant(name: &str, fields: Vec<(&str, Value)>) -> Value {
    Value::Map(vec![(
        text(name),
        Value::Map(fields.into_iter().map(|(k, v)| (text(k), v)).collect()),
    )])
}

/// CBOR that is not a frame: wrong shapes, absurd lengths, deep nesting.
fn garbage_cbor(rng: &mut Rng) -> Vec<(String, Vec<u8>, String)> {
    let mut cases: Vec<(String, Vec<u8>, String)> = vec![
        ("empty".into(), vec![], "empty message".into()),
        (
            "int".into(),
            cbor(&Value::Integer(42.into())),
            "a CBOR integer".into(),
        ),
        (
            "text".into(),
            cbor(&text("Hello")),
            "a CBOR text string".into(),
        ),
        (
            "array".into(),
            cbor(&Value::Array(vec![text("Hello")])),
            "a CBOR array".into(),
        ),
        ("null".into(), vec![0xf6], "CBOR null".into()),
        (
            "float-nan".into(),
            vec![0xf9, 0x7e, 0x00],
            "a half-float NaN".into(),
        ),
        (
            "unknown-variant".into(),
            cbor(&variant("Launch", vec![])),
            "a frame variant that does not exist".into(),
        ),
        (
            "two-variants".into(),
            cbor(&Value::Map(vec![
                (
                    text("Subscribe"),
                    Value::Map(vec![(text("after"), Value::Integer(0.into()))]),
                ),
                (text("Push"), Value::Map(vec![])),
            ])),
            "a map with two variants".into(),
        ),
        (
            "missing-fields".into(),
            cbor(&variant("Hello", vec![])),
            "Hello without fields".into(),
        ),
        (
            "wrong-type".into(),
            cbor(&variant("Subscribe", vec![("after", text("zero"))])),
            "Subscribe whose after is text".into(),
        ),
        (
            "negative".into(),
            cbor(&variant(
                "Subscribe",
                vec![("after", Value::Integer((-1).into()))],
            )),
            "Subscribe after -1".into(),
        ),
        (
            "float-seq".into(),
            cbor(&variant("Subscribe", vec![("after", Value::Float(1.5))])),
            "Subscribe after 1.5".into(),
        ),
        (
            "bignum".into(),
            vec![
                0xa1, 0x69, b'S', b'u', b'b', b's', b'c', b'r', b'i', b'b', b'e', 0xa1, 0x65, b'a',
                b'f', b't', b'e', b'r', 0xc2, 0x49, 1, 0, 0, 0, 0, 0, 0, 0, 0,
            ],
            "Subscribe after 2^64 as a bignum".into(),
        ),
        (
            "tagged".into(),
            vec![0xd8, 0x20, 0xa0],
            "a tagged empty map".into(),
        ),
        (
            "bytes-2-63".into(),
            vec![0x5b, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00],
            "a byte string claiming 2^63 bytes".into(),
        ),
        (
            "array-2-63".into(),
            vec![0x9b, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
            "an array claiming 2^63 items".into(),
        ),
        (
            "map-2-32".into(),
            vec![0xba, 0xff, 0xff, 0xff, 0xff, 0x01],
            "a map claiming 2^32 entries".into(),
        ),
        (
            "text-bad-utf8".into(),
            vec![0xa1, 0x62, 0xff, 0xfe, 0xa0],
            "a variant name that is not UTF-8".into(),
        ),
        (
            "indefinite-unclosed".into(),
            vec![0xbf, 0x65, b'H', b'e', b'l', b'l', b'o', 0xbf],
            "indefinite maps never closed".into(),
        ),
        ("break-alone".into(), vec![0xff], "a lone CBOR break".into()),
        (
            "reserved-info".into(),
            vec![0x1c],
            "a reserved additional-information value".into(),
        ),
        (
            "nested-arrays-100k".into(),
            vec![0x81; 100_000],
            "100,000 nested arrays".into(),
        ),
        (
            "nested-maps-50k".into(),
            [0xa1u8, 0x60].repeat(50_000),
            "50,000 nested maps".into(),
        ),
        (
            "nested-indefinite-100k".into(),
            vec![0x9f; 100_000],
            "100,000 nested indefinite arrays".into(),
        ),
        (
            "nested-tags-100k".into(),
            [0xd8u8, 0x20].repeat(50_000),
            "50,000 nested tags".into(),
        ),
        (
            "entries-million-empty".into(),
            {
                let mut b = vec![0xa1, 0x67];
                b.extend_from_slice(b"Entries");
                b.extend_from_slice(&[0xa2, 0x67]);
                b.extend_from_slice(b"entries");
                b.extend_from_slice(&[0x9a, 0x00, 0x0f, 0x42, 0x40]);
                b
            },
            "Entries claiming a million entries, with none".into(),
        ),
    ];
    for i in 0..40 {
        let n = [1usize, 2, 3, 7, 16, 100, 1000, 10_000][i % 8];
        cases.push((
            format!("random-{i}-{n}"),
            rng.bytes(n),
            format!("{n} random bytes"),
        ));
    }
    cases
}

fn relay_frames(corpus: &mut Corpus, world: &World, hostile: &Hostile) {
    let canary = world.seal(&world.ana, world.proposal, b"corpus canary");
    let frames = every_frame(world, &canary);
    let prove = Frame::Prove {
        signature: vec![3; 64],
        register: Some(world.register_cy()),
    };
    let push = Frame::Push {
        id: 7,
        envelopes: vec![serde_bytes::ByteBuf::from(canary.clone())],
    };
    // Truncations at every byte (or every few bytes for long frames).
    for (phase, frame) in [
        ("first", hello(world)),
        ("prove", prove.clone()),
        ("session", Frame::Subscribe { after: 3 }),
        ("session", push.clone()),
        (
            "session",
            Frame::Revoke {
                member: vec![5; 32],
            },
        ),
    ] {
        let bytes = frame.encode();
        let step = (bytes.len() / 60).max(1);
        for cut in (0..bytes.len()).step_by(step) {
            corpus.add(
                &format!("relay-frames/{phase}/truncated-{}-{cut}.bin", frame.name()),
                "truncated",
                "refused:Protocol",
                &format!("{} cut to {cut} of {} bytes", frame.name(), bytes.len()),
                &bytes[..cut],
            );
        }
    }
    // Bit flips in a frame's structure.
    let mut rng = Rng::new(11);
    for (phase, frame) in [
        ("first", hello(world)),
        ("session", Frame::Subscribe { after: 3 }),
    ] {
        let bytes = frame.encode();
        for i in 0..20 {
            let mut flipped = bytes.clone();
            let at = rng.below(flipped.len());
            flipped[at] ^= 1 << rng.below(8);
            corpus.add(
                &format!("relay-frames/{phase}/flipped-{}-{i}.bin", frame.name()),
                "bit-flip",
                "*",
                &format!("{} with bit flipped at byte {at}", frame.name()),
                &flipped,
            );
        }
    }
    // Garbage CBOR, as the first frame and after the handshake.
    for phase in ["first", "session"] {
        for (name, bytes, what) in garbage_cbor(&mut Rng::new(13)) {
            corpus.add(
                &format!("relay-frames/{phase}/garbage-{name}.bin"),
                "garbage-cbor",
                "refused:Protocol",
                &what,
                &bytes,
            );
        }
    }
    // Versions.
    for version in [0u32, 2, 7, 1 << 31, u32::MAX] {
        let frame = Frame::Hello {
            version,
            workspace: world.workspace.0.to_vec(),
            key: world.ana.verifying_key().to_bytes().to_vec(),
            deflate: false,
        };
        corpus.add(
            &format!("relay-frames/first/version-{version}.bin"),
            "wrong-version",
            "refused:Version",
            &format!("Hello with protocol version {version}"),
            &frame.encode(),
        );
    }
    let version_text = cbor(&variant(
        "Hello",
        vec![
            ("version", text("1")),
            ("workspace", Value::Bytes(world.workspace.0.to_vec())),
            ("key", Value::Bytes(vec![1; 32])),
        ],
    ));
    corpus.add(
        "relay-frames/first/version-text.bin",
        "wrong-version",
        "refused:Protocol",
        "Hello whose version is a string",
        &version_text,
    );
    let version_negative = cbor(&variant(
        "Hello",
        vec![
            ("version", Value::Integer((-1).into())),
            ("workspace", Value::Bytes(world.workspace.0.to_vec())),
            ("key", Value::Bytes(vec![1; 32])),
        ],
    ));
    corpus.add(
        "relay-frames/first/version-negative.bin",
        "wrong-version",
        "refused:Protocol",
        "Hello with version -1",
        &version_negative,
    );
    // Bad fields in the handshake.
    for (name, workspace, key) in [
        ("workspace-0", 0usize, 32usize),
        ("workspace-15", 15, 32),
        ("workspace-17", 17, 32),
        ("key-0", 16, 0),
        ("key-31", 16, 31),
        ("key-33", 16, 33),
        ("workspace-4096", 4096, 32),
    ] {
        let frame = Frame::Hello {
            version: PROTOCOL_VERSION,
            workspace: vec![7; workspace],
            key: vec![9; key],
            deflate: false,
        };
        corpus.add(
            &format!("relay-frames/first/hello-{name}.bin"),
            "bad-fields",
            "refused:Protocol",
            &format!("Hello with a field of the wrong length ({name})"),
            &frame.encode(),
        );
    }
    let not_point = Frame::Hello {
        version: PROTOCOL_VERSION,
        workspace: world.workspace.0.to_vec(),
        key: vec![0xff; 32],
        deflate: false,
    };
    corpus.add(
        "relay-frames/first/hello-key-not-a-point.bin",
        "bad-fields",
        "*",
        "Hello with a key that is not a curve point (the proof cannot verify)",
        &not_point.encode(),
    );
    for (name, signature) in [
        ("empty", vec![]),
        ("63", vec![1; 63]),
        ("65", vec![1; 65]),
        ("zeros", vec![0; 64]),
        ("ones", vec![0xff; 64]),
    ] {
        let frame = Frame::Prove {
            signature,
            register: Some(world.register_cy()),
        };
        corpus.add(
            &format!("relay-frames/prove/signature-{name}.bin"),
            "bad-signature",
            "refused:BadProof",
            &format!("Prove with a bad signature ({name})"),
            &frame.encode(),
        );
    }
    // A salt past the handshake allowance is cut off before it is read.
    for (name, salt, expect) in [
        ("empty", vec![], "refused:BadProof"),
        ("15", vec![0x5a; 15], "refused:BadProof"),
        ("huge", vec![0x5a; 100_000], "refused:Protocol"),
    ] {
        let frame = Frame::Prove {
            signature: vec![1; 64],
            register: Some(meridian_relay::protocol::Register::Create { salt }),
        };
        corpus.add(
            &format!("relay-frames/prove/salt-{name}.bin"),
            "bad-fields",
            expect,
            &format!("Prove registering with a salt of the wrong length ({name})"),
            &frame.encode(),
        );
    }
    // Valid frames in the wrong order.
    for frame in &frames {
        if frame.name() != "Hello" {
            corpus.add(
                &format!("relay-frames/first/order-{}.bin", frame.name()),
                "wrong-order",
                "refused:Protocol",
                &format!("{} instead of Hello", frame.name()),
                &frame.encode(),
            );
        }
        if frame.name() != "Prove" {
            corpus.add(
                &format!("relay-frames/prove/order-{}.bin", frame.name()),
                "wrong-order",
                "refused:Protocol",
                &format!("{} instead of Prove", frame.name()),
                &frame.encode(),
            );
        }
        if !["Subscribe", "Push", "Revoke", "Vouch"].contains(&frame.name()) {
            corpus.add(
                &format!("relay-frames/session/order-{}.bin", frame.name()),
                "wrong-order",
                "refused:Protocol",
                &format!("{} after the handshake", frame.name()),
                &frame.encode(),
            );
        }
    }
    // Requests with bad contents after the handshake.
    for (name, member) in [("empty", vec![]), ("31", vec![1; 31])] {
        let frame = Frame::Revoke { member };
        corpus.add(
            &format!("relay-frames/session/revoke-{name}.bin"),
            "bad-fields",
            "error:",
            &format!("Revoke of a bad member key ({name}), by the creator"),
            &frame.encode(),
        );
    }
    // Vouches the relay refuses, member by member, without closing the connection.
    let cy = cy_vouchee(world);
    let short_key = Vouchee {
        key: vec![1; 31],
        ..cy.clone()
    };
    let mut forged = cy.clone();
    forged.proof.join_sig = vec![0; 64];
    let mut junk_key = cy.clone();
    junk_key.proof.inviter = vec![0xff; 3];
    for (name, members, expect, what) in [
        (
            "key-31",
            vec![short_key],
            "32 bytes",
            "a member key of 31 bytes",
        ),
        (
            "forged-proof",
            vec![forged],
            "invite proof is invalid",
            "an invite proof whose signature does not verify",
        ),
        (
            "bad-inviter-key",
            vec![junk_key],
            "invite proof is invalid",
            "an invite proof with a 3-byte inviter key",
        ),
        (
            "too-many",
            vec![cy; MAX_VOUCHES + 1],
            "at most",
            "more members than one vouch may name",
        ),
    ] {
        corpus.add(
            &format!("relay-frames/session/vouch-{name}.bin"),
            "bad-fields",
            &format!("vouch-refused:{expect}"),
            &format!("Vouch naming {what}, by the creator"),
            &Frame::Vouch { id: 4, members }.encode(),
        );
    }
    corpus.add(
        "relay-frames/session/subscribe-max.bin",
        "huge-numbers",
        "*",
        "Subscribe after u64::MAX",
        &Frame::Subscribe { after: u64::MAX }.encode(),
    );
    // Pushes of hostile envelopes: the relay checks shape, signature, workspace, member.
    for (name, category, _, merge, what, bytes) in &hostile.envelopes {
        let relay_checks = [
            "bad-signature",
            "bad-shape",
            "wrong-version",
            "wrong-workspace",
            "garbage-cbor",
            "not-member",
        ];
        if relay_checks.contains(&category.as_str()) {
            let frame = Frame::Push {
                id: 9,
                envelopes: vec![serde_bytes::ByteBuf::from(bytes.clone())],
            };
            let expect = if category == "not-member" {
                "rejected:not a member".to_string()
            } else {
                format!("rejected:{merge}")
            };
            corpus.add(
                &format!("relay-frames/session/push-{name}.bin"),
                category,
                &expect,
                &format!("Push of {what}"),
                &frame.encode(),
            );
        }
    }
    let many = Frame::Push {
        id: u64::MAX,
        envelopes: (0..20_000)
            .map(|i| serde_bytes::ByteBuf::from(vec![i as u8; 3]))
            .collect(),
    };
    corpus.add(
        "relay-frames/session/push-20000-garbage.bin",
        "garbage-cbor",
        "rejected:envelope",
        "a push of 20,000 garbage envelopes",
        &many.encode(),
    );
    let dupes = Frame::Push {
        id: 3,
        envelopes: vec![serde_bytes::ByteBuf::from(canary.clone()); 500],
    };
    corpus.add(
        "relay-frames/session/push-known-500.bin",
        "duplicate",
        "duplicate",
        "the relay's canary envelope pushed 500 times",
        &dupes.encode(),
    );
    let empty = Frame::Push {
        id: 4,
        envelopes: vec![],
    };
    corpus.add(
        "relay-frames/session/push-empty.bin",
        "bad-fields",
        "stored-none",
        "a push of no envelopes",
        &empty.encode(),
    );
    // Oversized frames (padded to 9 MiB + 1 at test time).
    for phase in ["first", "session"] {
        let mut start = vec![0x5a, 0x00, 0x90, 0x00, 0x01];
        start.extend_from_slice(b"padding");
        corpus.add(
            &format!("relay-frames/{phase}/oversized-bytes.bin"),
            "oversized",
            "closed",
            "a byte string one byte over the frame limit",
            &start,
        );
        corpus.add(
            &format!("relay-frames/{phase}/oversized-push.bin"),
            "oversized",
            "closed",
            "a push whose frame is one byte over the limit",
            &push.encode()[..20],
        );
    }
    // Text messages.
    for (name, bytes) in [
        ("hello-as-text", b"{\"Hello\":{}}".to_vec()),
        ("empty", vec![]),
        ("ansi", b"\x1b[2J\x1b[31mowned".to_vec()),
    ] {
        corpus.add(
            &format!("relay-frames/text/{name}.txt"),
            "text-message",
            "refused:Protocol",
            &format!("a text message ({name})"),
            &bytes,
        );
    }
}

// ---------------------------------------------------------------------------------------
// Frames a hostile relay sends to a node.

fn seq(messages: Vec<Vec<u8>>) -> Vec<u8> {
    cbor(&Value::Array(
        messages.into_iter().map(Value::Bytes).collect(),
    ))
}

fn entries(list: Vec<(u64, Vec<u8>)>, up_to: u64) -> Frame {
    Frame::Entries {
        entries: list
            .into_iter()
            .map(|(s, b)| (s, serde_bytes::ByteBuf::from(b)))
            .collect(),
        up_to,
    }
}

fn node_frames(corpus: &mut Corpus, world: &World, hostile: &Hostile) {
    let canary = world.seal(&world.ana, world.proposal, b"corpus canary");
    let frames = every_frame(world, &canary);
    let challenge = Frame::Challenge {
        nonce: vec![1; 32],
        relay: vec![2; 16],
    };
    for (phase, frame) in [
        ("challenge", challenge.clone()),
        (
            "session",
            entries(vec![(1, world.base_envelopes()[0].clone())], 1),
        ),
        ("session", Frame::CaughtUp { head: 4 }),
    ] {
        let bytes = frame.encode();
        let step = (bytes.len() / 40).max(1);
        for cut in (0..bytes.len()).step_by(step) {
            corpus.add(
                &format!("node-frames/{phase}/truncated-{}-{cut}.bin", frame.name()),
                "truncated",
                "cannot read",
                &format!("{} cut to {cut} of {} bytes", frame.name(), bytes.len()),
                &bytes[..cut],
            );
        }
    }
    for phase in ["challenge", "session"] {
        for (name, bytes, what) in garbage_cbor(&mut Rng::new(17)).into_iter().step_by(2) {
            corpus.add(
                &format!("node-frames/{phase}/garbage-{name}.bin"),
                "garbage-cbor",
                "cannot read",
                &what,
                &bytes,
            );
        }
    }
    for frame in &frames {
        if !["Challenge", "Refused", "Error"].contains(&frame.name()) {
            corpus.add(
                &format!("node-frames/challenge/order-{}.bin", frame.name()),
                "wrong-order",
                "out of turn",
                &format!("{} instead of Challenge", frame.name()),
                &frame.encode(),
            );
        }
        if [
            "Hello",
            "Challenge",
            "Prove",
            "Welcome",
            "Subscribe",
            "Push",
            "Revoke",
            "Vouch",
        ]
        .contains(&frame.name())
        {
            corpus.add(
                &format!("node-frames/session/order-{}.bin", frame.name()),
                "wrong-order",
                "out of turn",
                &format!("{} after Subscribe", frame.name()),
                &frame.encode(),
            );
        }
    }
    corpus.add(
        "node-frames/session/vouched-unasked.bin",
        "wrong-order",
        "did not send",
        "Vouched answering a vouch the node never sent",
        &Frame::Vouched {
            id: 1,
            results: vec![VouchResult::Admitted],
        }
        .encode(),
    );
    corpus.add(
        "node-frames/challenge/error-before-challenge.bin",
        "wrong-order",
        "out of turn",
        "Error instead of Challenge",
        &Frame::Error { reason: "x".into() }.encode(),
    );
    for (name, relay) in [("relay-0", 0usize), ("relay-15", 15), ("relay-17", 17)] {
        let frame = Frame::Challenge {
            nonce: vec![1; 32],
            relay: vec![2; relay],
        };
        corpus.add(
            &format!("node-frames/challenge/challenge-{name}.bin"),
            "bad-fields",
            "malformed challenge",
            &format!("a challenge with a relay id of the wrong length ({name})"),
            &frame.encode(),
        );
    }
    let long_reason = "A".repeat(64 << 10);
    for (name, reason) in [
        ("ansi", "\x1b[2J\x1b[1;31mYOUR DISK IS FULL\x07".to_string()),
        ("64k", long_reason.clone()),
        ("empty", String::new()),
        ("newlines", "line\nerror: forged\r\n".repeat(50)),
    ] {
        let refused = Frame::Refused {
            code: RefusedCode::NotMember,
            reason: reason.clone(),
        };
        corpus.add(
            &format!("node-frames/challenge/refused-{name}.bin"),
            "hostile-text",
            "refused the connection",
            &format!("a refusal whose reason is hostile text ({name})"),
            &refused.encode(),
        );
        let error = Frame::Error { reason };
        corpus.add(
            &format!("node-frames/session/error-{name}.bin"),
            "hostile-text",
            "relay-error",
            &format!("an Error whose reason is hostile text ({name})"),
            &error.encode(),
        );
    }
    corpus.add(
        "node-frames/session/entries-past-up-to.bin",
        "wrong-order",
        "out of order",
        "an entry numbered after up_to",
        &entries(vec![(5, canary.clone())], 4).encode(),
    );
    corpus.add(
        "node-frames/session/entries-going-back.seq",
        "wrong-order",
        "out of order",
        "a second Entries whose up_to goes back",
        &seq(vec![
            entries(vec![(9, world.base_envelopes()[0].clone())], 9).encode(),
            entries(vec![], 3).encode(),
        ]),
    );
    corpus.add(
        "node-frames/session/stored-unknown-push.bin",
        "wrong-order",
        "a push that was not sent",
        "Stored for a push never sent",
        &Frame::Stored {
            id: 999,
            results: vec![],
        }
        .encode(),
    );
    corpus.add(
        "node-frames/session/entries-empty-max.bin",
        "huge-numbers",
        "ok",
        "empty Entries up to u64::MAX",
        &entries(vec![], u64::MAX).encode(),
    );
    corpus.add(
        "node-frames/session/caughtup-max.bin",
        "huge-numbers",
        "ok",
        "CaughtUp at u64::MAX",
        &Frame::CaughtUp { head: u64::MAX }.encode(),
    );
    for (name, category, sync, _, what, bytes) in &hostile.envelopes {
        if [
            "bomb-1gib",
            "bomb-under-1gib",
            "huge-text-1mb",
            "nested-100000",
            "orphans-2999",
        ]
        .contains(&name.as_str())
        {
            continue; // large: the envelope cases carry them.
        }
        corpus.add(
            &format!("node-frames/session/entries-{name}.bin"),
            category,
            sync,
            &format!("Entries holding {what}"),
            &entries(vec![(1, bytes.clone())], 1).encode(),
        );
    }
    let mixed: Vec<(u64, Vec<u8>)> = hostile
        .envelopes
        .iter()
        .filter(|e| e.5.len() < 100_000)
        .enumerate()
        .map(|(i, e)| (i as u64 + 1, e.5.clone()))
        .collect();
    let n = mixed.len() as u64;
    corpus.add(
        "node-frames/session/entries-all-hostile.bin",
        "mixed",
        "rejected:",
        "every small hostile envelope in one Entries frame",
        &entries(mixed, n).encode(),
    );
    // Compressed entries: the stream and what it inflates to are both hostile.
    let two = entries(
        world.base_envelopes()[..2]
            .iter()
            .cloned()
            .zip(1..)
            .map(|(e, s)| (s, e))
            .collect(),
        2,
    )
    .encode();
    let valid = deflate_raw(&two);
    let mut stray = valid.clone();
    stray.extend_from_slice(b"stray");
    let nested = deflated(valid.clone()).encode();
    let limit = meridian_relay::protocol::MAX_FRAME_BYTES;
    let mut bomb_entries = entries(vec![(1, vec![0; limit])], 1).encode();
    bomb_entries.truncate(limit + 1);
    for (name, expect, what, stream) in [
        (
            "valid",
            "ok",
            "two base envelopes, compressed",
            valid.clone(),
        ),
        (
            "bomb-zeros",
            "decompression bomb",
            "a stream of one byte more than the frame limit of zeros",
            deflate_raw(&vec![0; limit + 1]),
        ),
        (
            "bomb-entries",
            "decompression bomb",
            "an Entries frame one byte over the frame limit, compressed",
            deflate_raw(&bomb_entries),
        ),
        (
            "truncated",
            "truncated",
            "a valid stream cut before its end",
            valid[..valid.len() / 2].to_vec(),
        ),
        ("empty", "truncated", "an empty stream", Vec::new()),
        (
            "garbage",
            "corrupt",
            "bytes that are not DEFLATE",
            vec![0xff; 64],
        ),
        (
            "stray",
            "stray bytes",
            "a valid stream and bytes after it",
            stray,
        ),
        (
            "nested",
            "holds Deflated",
            "a compressed frame inside a compressed frame",
            deflate_raw(&nested),
        ),
        (
            "caughtup",
            "holds CaughtUp",
            "a compressed CaughtUp",
            deflate_raw(&Frame::CaughtUp { head: 2 }.encode()),
        ),
        (
            "not-a-frame",
            "not a frame",
            "compressed text that is not CBOR",
            deflate_raw(b"not a frame at all"),
        ),
        (
            "entries-past-up-to",
            "out of order",
            "compressed Entries with an entry after up_to",
            deflate_raw(&entries(vec![(5, canary.clone())], 4).encode()),
        ),
    ] {
        corpus.add(
            &format!("node-frames/session/deflated-{name}.bin"),
            "deflated",
            expect,
            &format!("Deflated: {what}"),
            &deflated(stream).encode(),
        );
    }
    for phase in ["challenge", "session"] {
        let mut start = vec![0x5a, 0x00, 0x90, 0x00, 0x01];
        start.extend_from_slice(b"padding");
        corpus.add(
            &format!("node-frames/{phase}/oversized.bin"),
            "oversized",
            "cannot read",
            "a frame one byte over the limit",
            &start,
        );
    }
}

// ---------------------------------------------------------------------------------------
// Envelopes, bundles and saved documents.

fn envelopes(corpus: &mut Corpus, world: &World, hostile: &Hostile) {
    for (name, category, sync, _, what, bytes) in &hostile.envelopes {
        corpus.add(
            &format!("envelopes/{name}.env"),
            category,
            sync,
            what,
            bytes,
        );
    }
    let good = Envelope::decode(&world.base_envelopes()[2]).expect("a base envelope");
    let bytes = good.encode();
    let mut rng = Rng::new(19);
    for i in 0..60 {
        let mut flipped = bytes.clone();
        let at = rng.below(flipped.len());
        flipped[at] ^= 1 << rng.below(8);
        corpus.add(
            &format!("envelopes/flip-{i}-at-{at}.env"),
            "bit-flip",
            "rejected:",
            &format!("a base envelope with one bit flipped at byte {at}"),
            &flipped,
        );
    }
    for cut in (0..bytes.len()).step_by((bytes.len() / 30).max(1)) {
        corpus.add(
            &format!("envelopes/truncated-{cut}.env"),
            "truncated",
            "rejected:",
            &format!("a base envelope cut to {cut} bytes"),
            &bytes[..cut],
        );
    }
}

fn bundles(corpus: &mut Corpus, world: &World, hostile: &Hostile) {
    for (name, category, _, merge, what, bytes) in &hostile.envelopes {
        if name == "known-envelope" || name == "nested-100000" {
            continue;
        }
        let expect = if merge.is_empty() {
            "*"
        } else {
            merge.as_str()
        };
        corpus.add(
            &format!("bundles/{name}.bundle"),
            category,
            expect,
            &format!("a bundle holding {what}"),
            &world.bundle(vec![bytes.clone()]),
        );
    }
    let base = world.bundle(world.base_envelopes());
    let step = (base.len() / 50).max(1);
    for cut in (BUNDLE_START..base.len()).step_by(step) {
        corpus.add(
            &format!("bundles/truncated-{cut}.bundle"),
            "truncated",
            "damaged or truncated",
            &format!("the base bundle cut to {cut} bytes"),
            &base[..cut],
        );
    }
    let mut rng = Rng::new(23);
    for i in 0..30 {
        let mut flipped = base.clone();
        let at = BUNDLE_START + rng.below(base.len() - BUNDLE_START);
        flipped[at] ^= 1 << rng.below(8);
        corpus.add(
            &format!("bundles/flip-{i}-at-{at}.bundle"),
            "bit-flip",
            "*",
            &format!("the base bundle with one bit flipped at byte {at}"),
            &flipped,
        );
    }
    for version in [0u32, 2, u32::MAX] {
        corpus.add(
            &format!("bundles/version-{version}.bundle"),
            "wrong-version",
            "is not supported",
            &format!("bundle version {version}"),
            &fuzz::bundle_bytes(version, &world.workspace.0, world.base_envelopes()),
        );
    }
    corpus.add(
        "bundles/bundle-other-workspace.bundle",
        "wrong-workspace",
        "has not joined",
        "a bundle of a workspace the node never joined",
        &fuzz::bundle_bytes(1, &[9; 16], vec![]),
    );
    corpus.add(
        "bundles/workspace-15.bundle",
        "bad-fields",
        "workspace id is damaged",
        "a bundle whose workspace id has 15 bytes",
        &fuzz::bundle_bytes(1, &[9; 15], vec![]),
    );
    corpus.add(
        "bundles/magic-only.bundle",
        "truncated",
        "damaged or truncated",
        "the magic line alone",
        meridian::bundle::BUNDLE_MAGIC,
    );
    corpus.add(
        "bundles/magic-no-newline.bundle",
        "garbage",
        "neither a Meridian bundle",
        "the magic without its newline",
        b"MERIDIAN-BUNDLE",
    );
    corpus.add(
        "bundles/empty.bundle",
        "garbage",
        "the file is empty",
        "an empty file",
        b"",
    );
    for (name, bytes, what) in garbage_cbor(&mut Rng::new(29)).into_iter().step_by(3) {
        let mut file = meridian::bundle::BUNDLE_MAGIC.to_vec();
        file.extend_from_slice(&bytes);
        corpus.add(
            &format!("bundles/garbage-{name}.bundle"),
            "garbage-cbor",
            "damaged or truncated",
            &format!("the magic, then {what}"),
            &file,
        );
    }
    let small = world
        .base_envelopes()
        .into_iter()
        .min_by_key(Vec::len)
        .expect("a base envelope");
    corpus.add(
        "bundles/duplicated-1000.bundle",
        "duplicate",
        "ok",
        "one envelope the node has, 1000 times",
        &world.bundle(vec![small; 1000]),
    );
    for (name, expect, what, envelopes) in meridian::fuzz::forged_membership(world) {
        corpus.add(
            &format!("bundles/forged-{name}.bundle"),
            "forged-membership",
            &expect,
            &what,
            &world.bundle(envelopes),
        );
    }
    let mut swapped = world.base_envelopes();
    swapped.reverse();
    corpus.add(
        "bundles/reversed.bundle",
        "wrong-order",
        "ok",
        "the base envelopes in reverse order (all known)",
        &world.bundle(swapped),
    );
}

/// Bytes before a bundle's CBOR body.
const BUNDLE_START: usize = 16;

fn saved_docs(corpus: &mut Corpus, world: &World, _hostile: &Hostile) {
    let saved = world.proposal_doc().save();
    let mut newer = world.proposal_doc();
    fuzz::edit(&mut newer, &world.ana, T0 + 50, "newer", |tx| {
        tx.put(ROOT, "title", "Newer")?;
        Ok(())
    });
    corpus.add(
        "saved-docs/others-changes.automerge",
        "not-signed",
        "carry no signatures",
        "a saved proposal holding a change by Ana new to the node",
        &newer.save(),
    );
    let step = (saved.len() / 40).max(1);
    for cut in (9..saved.len()).step_by(step) {
        corpus.add(
            &format!("saved-docs/truncated-{cut}.automerge"),
            "truncated",
            "*",
            &format!("a saved document cut to {cut} bytes"),
            &saved[..cut],
        );
    }
    let mut rng = Rng::new(31);
    for i in 0..30 {
        let mut flipped = saved.clone();
        let at = 4 + rng.below(saved.len() - 4);
        flipped[at] ^= 1 << rng.below(8);
        corpus.add(
            &format!("saved-docs/flip-{i}-at-{at}.automerge"),
            "bit-flip",
            "*",
            &format!("a saved document with one bit flipped at byte {at}"),
            &flipped,
        );
    }
    for levels in [65usize, 5000, 50_000] {
        let mut doc = Automerge::new().with_actor(World::actor(&world.ana));
        nested(levels)(&mut doc);
        corpus.add(
            &format!("saved-docs/nested-{levels}.automerge"),
            "deep-nesting",
            "levels deep",
            &format!("a saved document nested {levels} levels deep"),
            &doc.save(),
        );
    }
    // A million operations in 1.2 KB: run-length encoding (one insert of the same letter a
    // million times) expands in automerge's memory, not in any compressed stream.
    {
        let mut doc = Automerge::new().with_actor(World::actor(&world.ana));
        let mut tx = doc.transaction();
        tx.put(ROOT, "kind", "thread").expect("a field");
        tx.put(ROOT, "id", Id([0x5a; 16]).hex()).expect("a field");
        tx.put(ROOT, "workspace", world.workspace.hex())
            .expect("a field");
        let body = tx.put_object(ROOT, "body", ObjType::Text).expect("text");
        tx.splice_text(&body, 0, 0, &"a".repeat(1_000_000))
            .expect("a long text");
        tx.commit();
        corpus.add(
            "saved-docs/rle-ops-1m.automerge",
            "decompression-bomb",
            "operations, more than the limit",
            "a saved document of 1.2 KB whose run-length encoded columns hold a million operations",
            &doc.save(),
        );
    }
    // A document chunk whose one compressed column inflates past the budget.
    let mut data = Vec::new();
    uleb(1, &mut data);
    uleb(16, &mut data);
    data.extend_from_slice(&[1; 16]);
    uleb(0, &mut data);
    let column = deflated_zeros((1 << 30) + (1 << 20));
    uleb(1, &mut data);
    uleb(0b1000 | (1 << 4), &mut data);
    uleb(column.len() as u64, &mut data);
    uleb(0, &mut data);
    data.extend_from_slice(&column);
    corpus.add(
        "saved-docs/column-bomb.automerge",
        "decompression-bomb",
        "decompression bomb",
        "a document whose compressed column inflates to 1 GiB + 1 MiB",
        &chunk(0, &data),
    );
    corpus.add(
        "saved-docs/change-bomb-under-1gib.automerge",
        "decompression-bomb",
        "decompression bomb",
        "a 1 MiB saved change whose compression inflates to 1 GiB - 1 MiB, which a fixed budget of a gigabyte let through to automerge",
        &chunk(2, &deflated_zeros((1 << 30) - (1 << 20))),
    );
    let mut absurd = Vec::new();
    uleb(u64::MAX, &mut absurd);
    corpus.add(
        "saved-docs/actors-2-64.automerge",
        "huge-numbers",
        "truncated",
        "a document claiming 2^64 - 1 actors",
        &chunk(0, &absurd),
    );
    let mut heads = Vec::new();
    uleb(0, &mut heads);
    uleb(1 << 58, &mut heads);
    corpus.add(
        "saved-docs/heads-2-58.automerge",
        "huge-numbers",
        "truncated",
        "a document claiming 2^58 heads",
        &chunk(0, &heads),
    );
    let mut columns = Vec::new();
    uleb(0, &mut columns);
    uleb(0, &mut columns);
    uleb(u64::MAX, &mut columns);
    corpus.add(
        "saved-docs/columns-2-64.automerge",
        "huge-numbers",
        "truncated",
        "a document claiming 2^64 - 1 columns",
        &chunk(0, &columns),
    );
    corpus.add(
        "saved-docs/magic-only.automerge",
        "truncated",
        "damaged",
        "the automerge magic alone",
        &AUTOMERGE_MAGIC,
    );
    corpus.add(
        "saved-docs/chunk-type-9.automerge",
        "garbage",
        "unsupported automerge chunk",
        "a chunk of type 9",
        &chunk(9, b"x"),
    );
    let mut no_id = Automerge::new().with_actor(World::actor(&world.ana));
    let mut tx = no_id.transaction();
    tx.put(ROOT, "title", "no id").expect("put");
    tx.commit();
    corpus.add(
        "saved-docs/no-id.automerge",
        "not-meridian",
        "not a Meridian document",
        "a saved document with no id",
        &no_id.save(),
    );
    let mut bad_ws = Automerge::new().with_actor(World::actor(&world.ana));
    let mut tx = bad_ws.transaction();
    tx.put(ROOT, "id", Id([1; 16]).hex()).expect("put");
    tx.put(ROOT, "workspace", "not hex").expect("put");
    tx.commit();
    corpus.add(
        "saved-docs/bad-workspace-id.automerge",
        "not-meridian",
        "workspace id is damaged",
        "a saved document whose workspace id is not hex",
        &bad_ws.save(),
    );
    let mut elsewhere = Automerge::new().with_actor(World::actor(&world.ana));
    let mut tx = elsewhere.transaction();
    tx.put(ROOT, "id", Id([1; 16]).hex()).expect("put");
    tx.put(ROOT, "workspace", Id([2; 16]).hex()).expect("put");
    tx.commit();
    corpus.add(
        "saved-docs/other-workspace.automerge",
        "wrong-workspace",
        "has not joined",
        "a saved document of another workspace",
        &elsewhere.save(),
    );
    let changes: Vec<u8> = world
        .proposal_doc()
        .get_changes(&[])
        .into_iter()
        .skip(1)
        .flat_map(|c| c.raw_bytes().to_vec())
        .collect();
    corpus.add(
        "saved-docs/missing-first-change.automerge",
        "missing-deps",
        "*",
        "change chunks whose first dependency is absent",
        &changes,
    );
}

// ---------------------------------------------------------------------------------------
// Command-line arguments, config files, home files.

fn args(parts: &[&[u8]]) -> Vec<u8> {
    parts.join(&0u8)
}

fn cli_args(corpus: &mut Corpus, world: &World) {
    let bad_utf8: &[u8] = b"caf\xe9\xff";
    let long_hex = "a".repeat(100_000);
    let long_text = "x".repeat(100_000);
    let (short_hex, short_text) = (&long_hex[..2000], &long_text[..2000]);
    let id_commands: [&[&str]; 9] = [
        &["show"],
        &["log"],
        &["read"],
        &["conflicts"],
        &["diff"],
        &["proposal", "approve"],
        &["proposal", "open"],
        &["thread", "resolve"],
        &["reply"],
    ];
    for command in id_commands {
        let name = command.join("-");
        for (label, id, expect) in [
            ("utf8", bad_utf8, "invalid UTF-8"),
            (
                "long-hex",
                if name == "show" {
                    long_hex.as_bytes()
                } else {
                    short_hex.as_bytes()
                },
                "no document",
            ),
            (
                "long-text",
                if name == "show" {
                    long_text.as_bytes()
                } else {
                    short_text.as_bytes()
                },
                "not a document id",
            ),
            ("empty", b"".as_slice(), "*"),
            ("not-hex", b"zz-top".as_slice(), "not a document id"),
            ("path", b"../../etc/passwd".as_slice(), "not a document id"),
            (
                "unicode-digits",
                "\u{661}\u{662}".as_bytes(),
                "not a document id",
            ),
            ("dash", b"-".as_slice(), "*"),
        ] {
            let mut parts: Vec<&[u8]> = command.iter().map(|s| s.as_bytes()).collect();
            parts.push(id);
            if name == "diff" {
                parts.push(b"2026-01-01");
            }
            if name == "reply" {
                parts.push(b"-m");
                parts.push(b"hi");
            }
            corpus.add(
                &format!("cli-args/id-{name}-{label}.args"),
                "bad-id",
                expect,
                &format!("`{}` with a bad id ({label})", command.join(" ")),
                &args(&parts),
            );
        }
    }
    let proposal = world.proposal.hex();
    let dates: [(&str, &str); 16] = [
        ("month-13", "2026-13-01"),
        ("feb-30", "2026-02-30"),
        ("year-99999", "99999-01-01"),
        ("year-1", "0001-01-01"),
        ("negative-days", "-5d"),
        ("huge-days", "1000000000000d"),
        ("huge-ms", "9223372036854775807ms"),
        ("iso-period", "P1Y"),
        ("words", "next tuesday"),
        ("empty", ""),
        ("space", " "),
        ("hour-25", "2026-01-01T25:00"),
        ("exponent", "1e9d"),
        ("unit-only", "d"),
        ("overflow-hours", "99999999999999999999h"),
        (
            "long",
            "2026-01-01xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
        ),
    ];
    for (label, date) in dates {
        for (command, arg) in [
            (vec!["inbox", "--at"], date),
            (vec!["show", &proposal, "--at"], date),
            (vec!["proposal", "open", &proposal, "--closes"], date),
            (vec!["invite", "--expires"], date),
        ] {
            let mut parts: Vec<&[u8]> = command.iter().map(|s| s.as_bytes()).collect();
            parts.push(arg.as_bytes());
            let name = command[0..command.len().min(2)]
                .join("-")
                .replace(&proposal, "id");
            let expect = if label == "year-1" { "any" } else { "*" };
            corpus.add(
                &format!("cli-args/date-{name}-{label}.args"),
                "bad-date",
                expect,
                &format!(
                    "`{}` with a bad date ({label})",
                    command.join(" ").replace(&proposal, "ID")
                ),
                &args(&parts),
            );
        }
    }
    corpus.add(
        "cli-args/log-n-negative.args",
        "huge-numbers",
        "unexpected argument",
        "`log -n -1`",
        &args(&[b"log", proposal.as_bytes(), b"-n", b"-1"]),
    );
    for (label, n) in [
        ("2-64", "18446744073709551616"),
        ("huge", "99999999999999999999999999"),
        ("text", "ten"),
        ("float", "1.5"),
        ("utf8", "\u{0661}"),
    ] {
        corpus.add(
            &format!("cli-args/log-n-{label}.args"),
            "huge-numbers",
            "invalid value",
            &format!("`log -n {n}`"),
            &args(&[b"log", proposal.as_bytes(), b"-n", n.as_bytes()]),
        );
    }
    for (label, tz) in [
        ("unknown", "Mars/Olympus"),
        ("utf8", "Europe/\u{00e9}"),
        ("long", &long_text[..10_000]),
        ("path", "../../../etc/passwd"),
        ("posix", "EST5EDT,M3.2.0,M11.1.0x"),
    ] {
        corpus.add(
            &format!("cli-args/tz-{label}.args"),
            "bad-tz",
            "*",
            &format!("`--tz` {label}"),
            &args(&[b"--tz", tz.as_bytes(), b"inbox"]),
        );
    }
    corpus.add(
        "cli-args/tz-invalid-utf8.args",
        "bad-tz",
        "invalid UTF-8",
        "`--tz` not UTF-8",
        &args(&[b"--tz", bad_utf8, b"inbox"]),
    );
    for (label, hours, days) in [
        ("hours-25", "25:00-26:00", "mon-fri"),
        ("hours-empty", "09:00-09:00", "mon-fri"),
        ("hours-text", "nine-five", "mon-fri"),
        ("days-bad", "09:00-17:00", "mon-sun-fri"),
        ("days-empty", "09:00-17:00", ""),
        ("hours-huge", "99999999999:00-1:00", "mon-fri"),
    ] {
        corpus.add(
            &format!("cli-args/init-{label}.args"),
            "bad-hours",
            "*",
            &format!("`init` with bad working time ({label})"),
            &args(&[
                b"init",
                b"--name",
                b"Zed",
                b"--hours",
                hours.as_bytes(),
                b"--days",
                days.as_bytes(),
            ]),
        );
    }
    corpus.add(
        "cli-args/init-name-blank.args",
        "bad-fields",
        "the name is empty",
        "`init --name` of spaces",
        &args(&[b"init", b"--name", b"   "]),
    );
    for (label, code) in [
        ("garbage", "hello"),
        ("prefix-only", "meridian-invite-1-"),
        ("bad-base64", "meridian-invite-1-!!!!"),
        ("long", &format!("meridian-invite-1-{long_hex}")),
        ("tampered", &tamper(&world.invite(0xB7).encode())),
    ] {
        corpus.add(
            &format!("cli-args/join-{label}.args"),
            "bad-invite",
            "*",
            &format!("`join` with a bad invite code ({label})"),
            &args(&[b"join", code.as_bytes()]),
        );
    }
    for (label, url) in [
        ("no-scheme", "relay.example.org"),
        ("wss", "wss://relay.example.org"),
        ("http", "http://127.0.0.1:1"),
        ("long", &format!("ws://{long_text}")),
        ("utf8", "ws://\u{00e9}:1"),
        ("port-huge", "ws://127.0.0.1:99999"),
        ("empty", ""),
    ] {
        corpus.add(
            &format!("cli-args/sync-relay-{label}.args"),
            "bad-url",
            "*",
            &format!("`sync --relay` {label}"),
            &args(&[b"sync", b"--relay", url.as_bytes()]),
        );
    }
    for (label, parts) in [
        ("unknown-command", vec!["frobnicate"]),
        ("unknown-flag", vec!["inbox", "--frob"]),
        ("missing-arg", vec!["show"]),
        ("workspace-unknown", vec!["-w", "nope", "inbox"]),
        ("workspace-long", vec!["-w", &long_text, "inbox"]),
        (
            "merge-missing-file",
            vec!["merge", "/nonexistent/file.bundle"],
        ),
        ("merge-directory", vec!["merge", "/"]),
        (
            "export-bad-format",
            vec!["export", "--all", "--format", "pdf"],
        ),
        ("norm-negative", vec!["workspace", "norm", "urgent", "-5h"]),
        (
            "norm-huge",
            vec!["workspace", "norm", "urgent", "999999999999999d"],
        ),
        ("ladder-unknown", vec!["workspace", "ladder", "Nobody"]),
        (
            "edit-missing-file",
            vec!["proposal", "edit", &proposal, "--file", "/nonexistent"],
        ),
        ("react-bad-target", vec!["react", "zz:zz", "x"]),
        (
            "reply-bad-comment",
            vec!["reply", &format!("{proposal}:zz"), "-m", "x"],
        ),
        (
            "resolve-bad-field",
            vec!["resolve", &proposal, "nonsense", "x"],
        ),
        ("member-remove-unknown", vec!["member", "remove", "Nobody"]),
    ] {
        let parts: Vec<&[u8]> = parts.iter().map(|s| s.as_bytes()).collect();
        corpus.add(
            &format!("cli-args/misc-{label}.args"),
            "bad-command",
            "*",
            &format!("meridian {label}"),
            &args(&parts),
        );
    }
    corpus.add(
        "cli-args/merge-path-utf8.args",
        "bad-path",
        "cannot read",
        "`merge` of a path that is not UTF-8 and does not exist",
        &args(&[b"merge", b"/tmp/\xff\xfe-nope"]),
    );
}

fn tamper(code: &str) -> String {
    let mut bytes = code.as_bytes().to_vec();
    let at = bytes.len() - 10;
    bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
    String::from_utf8(bytes).expect("base64 is ASCII")
}

fn configs(corpus: &mut Corpus) {
    let fields = [
        "max_connections",
        "max_per_workspace",
        "handshake_timeout_secs",
        "send_timeout_secs",
        "max_frame_bytes",
        "live_batches",
    ];
    for field in fields {
        for (label, value, expect) in [
            ("zero", "0", "at least"),
            ("negative", "-1", "invalid value"),
            ("u64-max", "18446744073709551615", "at most"),
            ("text", "\"ten\"", "invalid type"),
            ("float", "1.5", "invalid type"),
            ("huge", "1e300", "invalid type"),
            ("array", "[1]", "invalid type"),
        ] {
            corpus.add(
                &format!("config/relay-toml/{field}-{label}.toml"),
                "bad-value",
                expect,
                &format!("{field} = {value}"),
                format!("{field} = {value}\n").as_bytes(),
            );
        }
    }
    let cases: [(&str, Vec<u8>, &str); 12] = [
        (
            "unknown-field",
            b"max_conections = 10\n".to_vec(),
            "unknown field",
        ),
        ("garbage", b"\x00\x01\x02 not toml [[[".to_vec(), "*"),
        (
            "invalid-utf8",
            b"max_connections = 1 # \xff\xfe\n".to_vec(),
            "*",
        ),
        (
            "duplicate-key",
            b"max_connections = 1\nmax_connections = 2\n".to_vec(),
            "*",
        ),
        (
            "table",
            b"[max_connections]\nx = 1\n".to_vec(),
            "invalid type",
        ),
        (
            "nested-arrays",
            format!("x = {}{}\n", "[".repeat(100_000), "]".repeat(100_000)).into_bytes(),
            "*",
        ),
        (
            "nested-tables",
            format!("x = {}{}\n", "{a=".repeat(50_000), "}".repeat(50_000)).into_bytes(),
            "*",
        ),
        (
            "long-comment",
            format!("# {}\nmax_connections = 0\n", "x".repeat(100_000)).into_bytes(),
            "at least",
        ),
        ("nul-bytes", b"max_connections = 1\x00\n".to_vec(), "*"),
        ("bom", b"\xef\xbb\xbfmax_connections = 0\n".to_vec(), "*"),
        (
            "long-key",
            format!("{} = 1\n", "k".repeat(100_000)).into_bytes(),
            "unknown field",
        ),
        ("unterminated-string", b"x = \"abc\n".to_vec(), "*"),
    ];
    for (label, bytes, expect) in cases {
        corpus.add(
            &format!("config/relay-toml/{label}.toml"),
            "bad-file",
            expect,
            &format!("a relay config file: {label}"),
            &bytes,
        );
    }
}

fn home_files(corpus: &mut Corpus) {
    let cases: [(&str, Vec<u8>); 12] = [
        ("empty", vec![]),
        ("63-hex", b"a".repeat(63)),
        ("65-hex", b"a".repeat(65)),
        ("not-hex", b"z".repeat(64)),
        ("invalid-utf8", vec![0xff; 64]),
        ("nul", vec![0; 64]),
        ("64k", b"a".repeat(64 << 10)),
        ("newlines", b"\n\n\n".to_vec()),
        (
            "bom",
            [b"\xef\xbb\xbf".as_slice(), &b"a".repeat(64)].concat(),
        ),
        ("spaces-inside", b"aaaa aaaa".repeat(7)),
        ("unicode", "\u{0661}".repeat(32).into_bytes()),
        ("json", b"{\"key\": \"aaaa\"}".to_vec()),
    ];
    for (label, bytes) in cases {
        corpus.add(
            &format!("home/device-key/{label}.key"),
            "bad-key-file",
            "*",
            &format!("a device.key file: {label}"),
            &bytes,
        );
    }
    for recipe in [
        "truncate 0",
        "truncate 100",
        "truncate 4096",
        "truncate 70000",
        "zero 4096",
        "zero 1000000",
        "flip 0",
        "flip 600",
        "flip 5000",
        "flip 20000",
        "garbage 100000",
        "garbage 10",
    ] {
        corpus.add(
            &format!("home/redb/{}.recipe", recipe.replace(' ', "-")),
            "corrupt-database",
            "*",
            &format!("the home's database file after `{recipe}`"),
            recipe.as_bytes(),
        );
    }
}
