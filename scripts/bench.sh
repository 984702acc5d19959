#!/bin/sh
# Runs the benchmark suite (release build) and writes its tables into BENCHMARKS.md,
# between the generated-block markers; the commentary around them is kept.
#
#   ./scripts/bench.sh              every scenario at the issue's sizes
#   ./scripts/bench.sh --quick      small sizes, for development (a minute or two)
#   ./scripts/bench.sh --only 5,6   some scenarios only
#   ./scripts/bench.sh --quick --out /tmp/quick.md   tables elsewhere, BENCHMARKS.md untouched
#
# Take the numbers you publish on a quiet machine: the table notes the load average.
set -eu
cd "$(dirname "$0")/.."
# The fan-out scenario runs the relay binary as deployed.
cargo build --release --quiet -p meridian-relay --bin meridian-relay
# Scenario 8 runs automerge-repo and its sync server on Node.js, at the versions the lock
# file pins. Without Node.js the suite says in its table that it skipped the row.
if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then
    if [ ! -d benches/automerge-repo/node_modules/@automerge/automerge-repo-sync-server ]; then
        (cd benches/automerge-repo && npm ci --no-audit --no-fund --loglevel=error)
    fi
else
    echo "bench.sh: Node.js is not installed, so scenario 8 (automerge-repo side by side) will be skipped" >&2
fi
# BENCHMARKS.md unless the arguments name another file with --out.
case " $* " in
*" --out "*) exec cargo bench --bench suite -- "$@" ;;
*) exec cargo bench --bench suite -- --out BENCHMARKS.md "$@" ;;
esac
