//! A mutational fuzzer on the stable toolchain, one test per target of `meridian::fuzz`.
//!
//! Each target starts from the corpus of its entry point (`tests/corpus/`), mutates inputs
//! (bit flips, truncation, splicing, interesting integers, duplicated chunks, CBOR length
//! fields) with a seeded generator and runs for `MERIDIAN_FUZZ_SECS` seconds (3 by default;
//! `MERIDIAN_FUZZ_SEED` picks another sequence). A panic, or an input slower than
//! `SLOW`, is saved under `tests/fuzz-regressions/<target>/` and fails the test with the
//! command that replays it; every saved input is replayed first on every run. The input being
//! run is also written to `target/fuzz-current-<target>`, so a stack overflow (which aborts
//! the process) still leaves it behind.
//!
//! Long run: `MERIDIAN_FUZZ_SECS=600 cargo test --release --test fuzz -- --test-threads 1`.
//! The coverage-guided campaign (cargo-fuzz, libFuzzer, nightly) runs the same targets from
//! the same seeds: `scripts/fuzz.sh`; what it keeps (`fuzz/corpus/`) and the crashes it
//! finds (written to `tests/fuzz-regressions/<target>/`) are replayed here on every run.

use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use meridian::fuzz::{self, Fixture, Rng, figure};

/// An input slower than this is a finding (debug build).
const SLOW: Duration = Duration::from_secs(10);

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The inputs under `dirs` (paths from the repository's root), each at most 64 KiB.
fn seeds(dirs: &[PathBuf]) -> Vec<Vec<u8>> {
    let mut seeds = Vec::new();
    for dir in dirs {
        let mut stack = vec![repo().join(dir)];
        while let Some(dir) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
            paths.sort();
            for path in paths {
                if path.is_dir() {
                    stack.push(path);
                } else if let Ok(bytes) = std::fs::read(&path) {
                    // Large seeds (bombs) make every mutation slow: the corpus test has them.
                    if bytes.len() <= 64 << 10 {
                        seeds.push(bytes);
                    }
                }
            }
        }
    }
    seeds
}

const INTERESTING: [u64; 12] = [
    0,
    1,
    0x7f,
    0x80,
    0xff,
    0x100,
    0xffff,
    0x1_0000,
    0x7fff_ffff,
    0xffff_ffff,
    0x7fff_ffff_ffff_ffff,
    u64::MAX,
];

/// Offsets of CBOR item heads, found by walking the bytes as a sequence of items.
fn cbor_heads(bytes: &[u8]) -> Vec<usize> {
    let mut heads = Vec::new();
    let mut at = 0;
    while at < bytes.len() && heads.len() < 4096 {
        heads.push(at);
        let major = bytes[at] >> 5;
        let info = bytes[at] & 0x1f;
        let (len, size) = match info {
            0..=23 => (u64::from(info), 1),
            24..=27 => {
                let n = 1usize << (info - 24);
                let Some(arg) = bytes.get(at + 1..at + 1 + n) else {
                    break;
                };
                (
                    arg.iter().fold(0u64, |a, b| (a << 8) | u64::from(*b)),
                    1 + n,
                )
            }
            _ => (0, 1),
        };
        at += size;
        if major == 2 || major == 3 {
            at = at.saturating_add(len.min(bytes.len() as u64) as usize);
        }
    }
    heads
}

/// One mutation of `input`, possibly with material from `other`.
fn mutate(rng: &mut Rng, input: &[u8], other: &[u8]) -> Vec<u8> {
    let mut out = input.to_vec();
    let rounds = 1 + rng.below(4);
    for _ in 0..rounds {
        let len = out.len();
        match rng.below(9) {
            0 if len > 0 => {
                let at = rng.below(len);
                out[at] ^= 1 << rng.below(8);
            }
            1 if len > 0 => out.truncate(rng.below(len)),
            2 if len > 0 => {
                let at = rng.below(len);
                out[at] = INTERESTING[rng.below(INTERESTING.len())] as u8;
            }
            3 if len >= 8 => {
                let at = rng.below(len - 7);
                let value = INTERESTING[rng.below(INTERESTING.len())];
                let width = [2usize, 4, 8][rng.below(3)];
                out[at..at + width].copy_from_slice(&value.to_be_bytes()[8 - width..]);
            }
            4 if len > 0 => {
                let from = rng.below(len);
                let to = (from + 1 + rng.below(64)).min(len);
                let chunk = out[from..to].to_vec();
                let at = rng.below(len);
                out.splice(at..at, chunk);
            }
            5 if len > 0 => {
                let from = rng.below(len);
                let to = (from + 1 + rng.below(64)).min(len);
                out.drain(from..to);
            }
            6 if !other.is_empty() => {
                let cut = rng.below(len + 1);
                let from = rng.below(other.len());
                out.truncate(cut);
                out.extend_from_slice(&other[from..]);
            }
            7 => {
                let at = rng.below(len + 1);
                let n = 1 + rng.below(16);
                let bytes = rng.bytes(n);
                out.splice(at..at, bytes);
            }
            _ => {
                // CBOR-aware: give one item head an interesting argument.
                let heads = cbor_heads(&out);
                if heads.is_empty() {
                    continue;
                }
                let at = heads[rng.below(heads.len())];
                let major = out[at] & 0xe0;
                let value = INTERESTING[rng.below(INTERESTING.len())];
                let mut head = vec![major | 27];
                head.extend_from_slice(&value.to_be_bytes());
                let old = match out[at] & 0x1f {
                    24 => 2,
                    25 => 3,
                    26 => 5,
                    27 => 9,
                    _ => 1,
                }
                .min(out.len() - at);
                out.splice(at..at + old, head);
            }
        }
    }
    out.truncate(1 << 20);
    out
}

/// Saves a finding and returns the command that replays it.
fn save(target: &str, input: &[u8]) -> String {
    let dir = repo().join("tests/fuzz-regressions").join(target);
    std::fs::create_dir_all(&dir).expect("the regressions folder");
    let name = format!("{}.bin", &hex::encode(sha2_digest(input))[..16]);
    std::fs::write(dir.join(&name), input).expect("the finding is saved");
    format!("cargo test --test fuzz {target} (replays tests/fuzz-regressions/{target}/{name})")
}

fn sha2_digest(input: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(input).into()
}

fn current_file(target: &str) -> PathBuf {
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target"));
    target_dir.join(format!("fuzz-current-{target}"))
}

/// Runs one input; `Err` with why when it is a finding.
fn exec(target: &str, run: &dyn Fn(&[u8]), input: &[u8]) -> Result<(), String> {
    let _ = std::fs::write(current_file(target), input);
    let started = Instant::now();
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| run(input)));
    let elapsed = started.elapsed();
    match outcome {
        Err(panic) => {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            Err(format!("panicked: {message}"))
        }
        Ok(()) if elapsed > SLOW => Err(format!("took {elapsed:?}")),
        Ok(()) => Ok(()),
    }
}

/// Replays the saved regressions, then fuzzes for the configured time.
fn fuzz_target(target: &str, corpus: &[&str], extra: Vec<Vec<u8>>, run: &dyn Fn(&[u8])) {
    let mut failures = Vec::new();
    let regressions = repo().join("tests/fuzz-regressions").join(target);
    if let Ok(entries) = std::fs::read_dir(&regressions) {
        let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        paths.sort();
        for path in paths {
            let input = std::fs::read(&path).expect("a saved input");
            if let Err(why) = exec(target, run, &input) {
                failures.push(format!("{}: {why}", path.display()));
            }
        }
    }
    let secs: f64 = std::env::var("MERIDIAN_FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3.0);
    let seed: u64 = std::env::var("MERIDIAN_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let mut rng = Rng::new(seed ^ fxhash(target));
    // The hostile corpus of the target's entry points, then what cargo-fuzz's campaigns
    // kept (`fuzz/corpus/<target>`, committed minimised), replayed on every run.
    let mut dirs: Vec<PathBuf> = corpus
        .iter()
        .map(|dir| Path::new("tests/corpus").join(dir))
        .collect();
    dirs.push(Path::new("fuzz/corpus").join(target));
    let mut pool = seeds(&dirs);
    pool.extend(extra);
    pool.push(Vec::new());
    // `scripts/fuzz.sh` starts cargo-fuzz from the same seeds.
    if let Some(to) = std::env::var_os("MERIDIAN_FUZZ_SEEDS_TO") {
        let to = Path::new(&to).join(target);
        std::fs::create_dir_all(&to).expect("the seed directory");
        for input in &pool {
            let name: String = sha2_digest(input)[..8]
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            std::fs::write(to.join(name), input).expect("a seed");
        }
    }
    let started = Instant::now();
    let mut execs = 0u64;
    for input in pool.clone() {
        execs += 1;
        if let Err(why) = exec(target, run, &input) {
            failures.push(format!("{why}; replay: {}", save(target, &input)));
        }
    }
    while started.elapsed().as_secs_f64() < secs && failures.len() < 5 {
        let base = &pool[rng.below(pool.len())];
        let other = &pool[rng.below(pool.len())];
        let input = mutate(&mut rng, base, other);
        execs += 1;
        if let Err(why) = exec(target, run, &input) {
            failures.push(format!("{why}; replay: {}", save(target, &input)));
        }
        if pool.len() < 4096 && rng.below(64) == 0 {
            pool.push(input);
        }
    }
    let _ = std::fs::remove_file(current_file(target));
    figure(&format!("fuzz.{target}.execs"), execs);
    figure(
        &format!("fuzz.{target}.secs"),
        format!("{:.1}", started.elapsed().as_secs_f64()),
    );
    assert!(
        failures.is_empty(),
        "{target} found {} problem(s):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

fn fxhash(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

fn fixture(dir: &Path) -> Fixture {
    Fixture::new(&dir.join("bo")).expect("the fuzz fixture")
}

#[test]
fn frame_decoder() {
    fuzz_target(
        "frame",
        &["relay-frames", "node-frames"],
        Vec::new(),
        &fuzz::frame,
    );
}

#[test]
fn envelope_opener() {
    let tmp = tempfile::tempdir().expect("a temporary directory");
    let fixture = fixture(tmp.path());
    fuzz_target("envelope", &["envelopes"], Vec::new(), &|bytes| {
        fuzz::envelope(&fixture, bytes)
    });
}

#[test]
fn bundle_reader() {
    let tmp = tempfile::tempdir().expect("a temporary directory");
    let fixture = fixture(tmp.path());
    fuzz_target("bundle", &["bundles", "saved-docs"], Vec::new(), &|bytes| {
        fuzz::bundle(&fixture, bytes)
    });
}

#[test]
fn keyring_records() {
    let tmp = tempfile::tempdir().expect("a temporary directory");
    let fixture = fixture(tmp.path());
    let seeds = fuzz::keyring_seeds(&fixture.world);
    fuzz_target("keyring", &[], seeds, &|bytes| {
        fuzz::keyring(&fixture, bytes)
    });
}

#[test]
fn device_codes_and_proofs() {
    let seeds = fuzz::device_seeds(&fuzz::World::new());
    fuzz_target("device", &[], seeds, &fuzz::device);
}

#[test]
fn verifiable_exports() {
    let tmp = tempfile::tempdir().expect("a temporary directory");
    let fixture = fixture(tmp.path());
    let seeds = fuzz::verify_seeds(&fixture);
    assert!(!seeds.is_empty(), "the fixture exports verifiable records");
    for seed in &seeds {
        assert!(
            meridian::verify::verify(seed, &meridian::ingest::Limits::default()).is_ok(),
            "control: an untouched export verifies"
        );
    }
    fuzz_target("verify", &[], seeds, &|bytes| fuzz::verify(bytes));
}

#[test]
fn change_ingest() {
    let tmp = tempfile::tempdir().expect("a temporary directory");
    let fixture = fixture(tmp.path());
    // Seeds: the plaintexts of the world's own changes, prefixed by a document choice.
    let world = &fixture.world;
    let mut extra = Vec::new();
    for (choice, doc) in [(0u8, world.workspace_doc()), (1, world.proposal_doc())] {
        let mut run = Vec::new();
        for change in doc.get_changes(&[]) {
            extra.push([vec![choice], change.raw_bytes().to_vec()].concat());
            run.extend_from_slice(change.raw_bytes());
        }
        // A run of them: compressed by the target (bit 0x40), and already compressed.
        extra.push([vec![choice | 0x40], run.clone()].concat());
        extra.push([vec![choice], meridian::seal::deflate_changes(&run)].concat());
    }
    fuzz_target("ingest", &[], extra, &|bytes| fuzz::ingest(&fixture, bytes));
}
