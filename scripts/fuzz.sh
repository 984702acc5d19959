#!/usr/bin/env bash
# The coverage-guided fuzzing campaign: cargo-fuzz (libFuzzer) on each target of
# `meridian::fuzz`, the targets `tests/fuzz.rs` runs on stable, from the same seeds.
#
#   ./scripts/fuzz.sh                      # 10 minutes per target
#   FUZZ_SECS=3600 ./scripts/fuzz.sh bundle ingest
#   FUZZ_FLAGS=-O ./scripts/fuzz.sh        # without debug assertions (cargo-fuzz's default has them)
#
# Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`). A crash, a leak,
# an input slower than 10 s or a process over 512 MB (the node's idle size plus the 256 MiB
# any input may cost it, with room) is written to `tests/fuzz-regressions/<target>/`, which
# `cargo test --test fuzz` replays on every run: commit it with the fix. What the campaign
# learned is minimised into `fuzz/corpus/<target>/`: commit that too, so every `cargo test`
# replays it and the next campaign starts from it.
set -euo pipefail
cd "$(dirname "$0")/.."

SECS=${FUZZ_SECS:-600}
FLAGS=${FUZZ_FLAGS:-}
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(frame envelope bundle ingest)

seeds=target/fuzz-seeds
rm -rf "$seeds"
# The seeds: the hostile corpus of each target's entry points and the stable fuzzer's own
# (the ingest target's plaintexts), written out by the stable harness.
MERIDIAN_FUZZ_SEEDS_TO=$seeds MERIDIAN_FUZZ_SECS=0 cargo test --locked --quiet --test fuzz >&2

for target in "${TARGETS[@]}"; do
    echo "== $target: ${SECS}s" >&2
    mkdir -p "fuzz/corpus/$target" "tests/fuzz-regressions/$target"
    (
        cd fuzz
        # shellcheck disable=SC2086 # FLAGS is a list of flags
        cargo +nightly fuzz run $FLAGS "$target" "corpus/$target" "../$seeds/$target" -- \
            -max_total_time="$SECS" -timeout=10 -rss_limit_mb=512 -max_len=65536 \
            -artifact_prefix="../tests/fuzz-regressions/$target/" -print_final_stats=1
        # shellcheck disable=SC2086
        cargo +nightly fuzz cmin $FLAGS "$target" "corpus/$target" -- -rss_limit_mb=512 >/dev/null
    )
done
