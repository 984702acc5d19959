#!/usr/bin/env bash
# Runs every reliability check at the scale given and writes RELIABILITY.md from the figures
# the checks report (each appends `name<TAB>value` lines to $MERIDIAN_FIGURES). Nothing in
# the report is typed by hand: a check that fails stops the script and the report is not
# written.
#
#   ./scripts/reliability.sh                # the full run (about 30 minutes on 2 cores)
#   SIM_SEEDS=300 CRASH_TRIALS=200 FUZZ_SECS=3 REOPEN_ENTRIES=0 ./scripts/reliability.sh  # CI scale
#
# Scales: SIM_SEEDS (simulation seeds, default 2000), CRASH_TRIALS (SIGKILL trials, 500),
# FUZZ_SECS (seconds per fuzz target, 60), ABUSE_SCALE (multiplier of the abuse tests, 1),
# REOPEN_ENTRIES (log entries for the reopen measurement, 1000000; 0 skips it).
set -euo pipefail
cd "$(dirname "$0")/.."

SIM_SEEDS=${SIM_SEEDS:-2000}
CRASH_TRIALS=${CRASH_TRIALS:-500}
FUZZ_SECS=${FUZZ_SECS:-60}
ABUSE_SCALE=${ABUSE_SCALE:-1}
REOPEN_ENTRIES=${REOPEN_ENTRIES:-1000000}

figures=$(mktemp)
trap 'rm -f "$figures"' EXIT
export MERIDIAN_FIGURES=$figures
started=$(date +%s)

step() {
    echo "== $*" >&2
    local t0
    t0=$(date +%s)
    "$@" >&2
    printf 'time.%s\t%s\n' "$STEP" "$(($(date +%s) - t0))" >>"$figures"
}

cargo build --workspace --tests --locked --quiet
STEP=sim step env MERIDIAN_SIM_SEEDS="$SIM_SEEDS" MERIDIAN_SIM_FIRST=1 \
    cargo test --locked --quiet --test sim
STEP=crash step env MERIDIAN_CRASH_TRIALS="$CRASH_TRIALS" \
    cargo test --locked --quiet --test it crash::
STEP=epochs step cargo test --locked --quiet --test it epochs::
STEP=removals step cargo test --locked --quiet --test it -- removals:: devices::
STEP=corpus step cargo test --locked --quiet --test corpus
STEP=fuzz step env MERIDIAN_FUZZ_SECS="$FUZZ_SECS" \
    cargo test --locked --quiet --test fuzz
STEP=abuse step env MERIDIAN_ABUSE_SCALE="$ABUSE_SCALE" \
    cargo test --locked --quiet -p meridian-relay --test abuse
STEP=access step cargo test --locked --quiet -p meridian-relay --test relay
if [ "$REOPEN_ENTRIES" != 0 ]; then
    STEP=reopen step cargo bench --locked --quiet -p meridian-relay --bench reopen -- \
        --entries "$REOPEN_ENTRIES"
fi

export SIM_SEEDS CRASH_TRIALS FUZZ_SECS ABUSE_SCALE REOPEN_ENTRIES
export ELAPSED=$(($(date +%s) - started))
export COMMIT=$(git rev-parse --short HEAD)$(git diff --quiet HEAD || echo "+changes")
python3 scripts/reliability_report.py "$figures" >RELIABILITY.md
echo "wrote RELIABILITY.md" >&2
