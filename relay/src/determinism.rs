//! Randomness and wall-clock time, which the deterministic simulation replaces.
//!
//! Everything in Meridian that draws random bytes (keys, salts, nonces, relay ids) or reads
//! the wall clock for a stored timestamp goes through this module. Normally it reads the
//! operating system. A simulation run calls [`simulate`] on its thread: from then on that
//! thread, and only that thread, draws from a generator seeded by the run's seed and reads
//! a clock the simulation moves, so a failing run replays byte for byte from its seed.
//!
//! The seeded generator is SplitMix64: fine for reproducing a schedule, worthless as a
//! secret. It never leaves the thread that asked for it, and nothing outside the tests
//! calls [`simulate`].

use std::cell::RefCell;
use std::time::{SystemTime, UNIX_EPOCH};

struct Simulated {
    state: u64,
    now_ms: i64,
}

thread_local! {
    static SIMULATED: RefCell<Option<Simulated>> = const { RefCell::new(None) };
}

/// Fills `bytes` with random bytes: from the operating system, or from the simulation's
/// generator on a simulated thread.
pub fn fill(bytes: &mut [u8]) -> Result<(), getrandom::Error> {
    let simulated = SIMULATED.with_borrow_mut(|sim| {
        let Some(sim) = sim else { return false };
        for chunk in bytes.chunks_mut(8) {
            let word = splitmix(&mut sim.state).to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
        true
    });
    if simulated {
        Ok(())
    } else {
        getrandom::getrandom(bytes)
    }
}

/// Milliseconds since the Unix epoch: the system clock, or the simulation's.
pub fn now_ms() -> i64 {
    SIMULATED
        .with_borrow(|sim| sim.as_ref().map(|s| s.now_ms))
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or(0)
        })
}

/// Makes this thread deterministic: random bytes come from `seed`, and the clock starts at
/// `start_ms` and moves only by [`advance`]. For the simulation only.
#[doc(hidden)]
pub fn simulate(seed: u64, start_ms: i64) {
    SIMULATED.set(Some(Simulated {
        state: seed,
        now_ms: start_ms,
    }));
}

/// Moves this thread's simulated clock forward.
#[doc(hidden)]
pub fn advance(ms: i64) {
    SIMULATED.with_borrow_mut(|sim| {
        if let Some(sim) = sim {
            sim.now_ms += ms;
        }
    });
}

/// Returns this thread to the system's randomness and clock.
#[doc(hidden)]
pub fn stop_simulating() {
    SIMULATED.set(None);
}

/// One step of SplitMix64: the generator behind the simulation's randomness, and the one
/// the simulation, the crash trials, the fuzzer and the benchmarks draw their schedules from.
pub fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_simulated_thread_repeats_itself_and_others_do_not_notice() {
        let draw = || {
            let mut bytes = [0u8; 20];
            fill(&mut bytes).unwrap();
            bytes
        };
        simulate(7, 1_000);
        let (a, b) = (draw(), draw());
        assert_ne!(a, b);
        assert_eq!(now_ms(), 1_000);
        advance(500);
        assert_eq!(now_ms(), 1_500);
        simulate(7, 1_000);
        assert_eq!(draw(), a, "the same seed gives the same bytes");
        let other = std::thread::spawn(move || (now_ms(), draw()))
            .join()
            .unwrap();
        assert!(
            other.0 > 1_600_000_000_000,
            "other threads keep the real clock"
        );
        assert_ne!(other.1, a);
        stop_simulating();
        assert!(now_ms() > 1_600_000_000_000);
    }
}
