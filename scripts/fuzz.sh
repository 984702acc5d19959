#!/usr/bin/env bash
# The coverage-guided fuzzing campaign: cargo-fuzz (libFuzzer) on each target of
# `meridian::fuzz`, the targets `tests/fuzz.rs` runs on stable, from the same seeds.
#
#   ./scripts/fuzz.sh                      # 10 minutes per target
#   FUZZ_SECS=3600 ./scripts/fuzz.sh bundle ingest
#   FUZZ_FLAGS="-s address" RSS_MB=2048 ./scripts/fuzz.sh   # with AddressSanitizer
#
# Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`). Built without a
# sanitizer by default (Rust checks memory itself, and AddressSanitizer's quarantine of
# freed memory, 256 MB, would hide the memory bound), with debug assertions. A crash, an
# input slower than 10 s or a process over 512 MB (the fixture's idle size plus the 256 MiB
# any input may cost a node, with room) is written to `tests/fuzz-regressions/<target>/`, which
# `cargo test --test fuzz` replays on every run: commit it with the fix. What the campaign
# learned is minimised into `fuzz/corpus/<target>/`: commit that too, so every `cargo test`
# replays it and the next campaign starts from it.
set -euo pipefail
cd "$(dirname "$0")/.."

SECS=${FUZZ_SECS:-600}
FLAGS=${FUZZ_FLAGS:--s none}
RSS_MB=${RSS_MB:-512}
# anyhow would capture (and the fuzzer would symbolise) a backtrace for every refused input.
export RUST_BACKTRACE=0 RUST_LIB_BACKTRACE=0
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(frame envelope bundle ingest keyring device)

seeds=target/fuzz-seeds
rm -rf "$seeds"
# The seeds: the hostile corpus of each target's entry points and the stable fuzzer's own
# (the ingest target's plaintexts), written out by the stable harness.
MERIDIAN_FUZZ_SEEDS_TO=$seeds MERIDIAN_FUZZ_SECS=0 cargo test --locked --quiet --test fuzz >&2

found=()
for target in "${TARGETS[@]}"; do
    echo "== $target: ${SECS}s" >&2
    mkdir -p "fuzz/corpus/$target" "tests/fuzz-regressions/$target"
    # A finding ends this target's run; the others still run.
    # shellcheck disable=SC2086 # FLAGS is a list of flags
    (cd fuzz && cargo +nightly fuzz run $FLAGS "$target" "corpus/$target" "../$seeds/$target" -- \
        -max_total_time="$SECS" -timeout=10 -rss_limit_mb="$RSS_MB" -max_len=65536 \
        -artifact_prefix="../tests/fuzz-regressions/$target/" -print_final_stats=1) ||
        found+=("$target")
    # shellcheck disable=SC2086
    (cd fuzz && cargo +nightly fuzz cmin $FLAGS "$target" "corpus/$target" -- \
        -rss_limit_mb="$RSS_MB" -timeout=10 >/dev/null 2>&1)
done
if [ ${#found[@]} -gt 0 ]; then
    echo "findings in: ${found[*]} (tests/fuzz-regressions/<target>/; cargo test --test fuzz replays them)" >&2
    exit 1
fi
