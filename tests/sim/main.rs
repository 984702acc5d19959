//! A deterministic simulation of a team: nodes and relays that edit, connect, lose frames,
//! crash and rejoin, driven by one seed.
//!
//! Nodes are the real thing: a home with a redb file, edits made by the CLI's own
//! `cli::run`, and sync by the real sans-IO [`Session`] and the driver's `begin`/`carry_out`,
//! which write to the store exactly as `meridian sync` does. Relays keep their log in the
//! real [`RelayStore`] (admission, dedupe, append, read); the few lines of protocol handling
//! around it mirror `meridian_relay::server`. Only the transport is simulated: per connection
//! two frame queues, which the scheduler delivers, duplicates, reorders, delays or cuts.
//! Randomness and the clock come from the seed (see `meridian_relay::determinism`), so a
//! failing run replays exactly.
//!
//! After every run the network heals and the scheduler delivers until nothing moves; then
//! every replica must have the same documents, heads and derived state, every outbox must
//! be empty, and every change any relay acknowledged must be in every replica.
//!
//! `MERIDIAN_SIM_SEEDS=N` runs N seeds (default 300) from `MERIDIAN_SIM_FIRST` (default 1);
//! `MERIDIAN_SIM_SEED=S` runs one, and `MERIDIAN_SIM_TRACE=1` prints every step it takes.

mod harness;

use harness::{Sim, figure};

const DEFAULT_SEEDS: u64 = 300;

fn seeds() -> Vec<u64> {
    if let Ok(seed) = std::env::var("MERIDIAN_SIM_SEED") {
        return vec![seed.parse().expect("MERIDIAN_SIM_SEED is a number")];
    }
    let count = std::env::var("MERIDIAN_SIM_SEEDS")
        .ok()
        .map(|n| n.parse().expect("MERIDIAN_SIM_SEEDS is a number"))
        .unwrap_or(DEFAULT_SEEDS);
    let first = std::env::var("MERIDIAN_SIM_FIRST")
        .ok()
        .map(|n| n.parse().expect("MERIDIAN_SIM_FIRST is a number"))
        .unwrap_or(1);
    (first..first + count).collect()
}

#[test]
fn every_seed_converges_and_loses_nothing() {
    let seeds = seeds();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
    let started = std::time::Instant::now();
    let chunks: Vec<Vec<u64>> = (0..threads)
        .map(|t| seeds.iter().copied().skip(t).step_by(threads).collect())
        .collect();
    let results: Vec<Vec<(u64, Result<harness::Outcome, String>)>> = std::thread::scope(|s| {
        let handles: Vec<_> = chunks
            .into_iter()
            .map(|chunk| {
                s.spawn(move || {
                    chunk
                        .into_iter()
                        .map(|seed| (seed, Sim::run(seed)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut failures = Vec::new();
    let mut total = harness::Outcome::default();
    for (seed, result) in results.into_iter().flatten() {
        match result {
            Ok(outcome) => total.add(&outcome),
            Err(why) => failures.push(format!(
                "seed {seed} failed: {why}\n  replay: MERIDIAN_SIM_SEED={seed} cargo test --test sim -- --nocapture"
            )),
        }
    }
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "simulated {} seeds in {secs:.1}s: {total}",
        seeds.len() - failures.len()
    );
    figure("sim.seeds", seeds.len());
    figure("sim.seconds", format!("{secs:.1}"));
    total.figures();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_seed_replays_exactly() {
    let first = Sim::run(4242).expect("seed 4242 passes");
    let second = Sim::run(4242).expect("seed 4242 passes again");
    assert_eq!(
        first.digest, second.digest,
        "the same seed must give the same final state, byte for byte"
    );
    let other = Sim::run(4243).expect("seed 4243 passes");
    assert_ne!(first.digest, other.digest, "another seed, another history");
}
