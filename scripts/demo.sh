#!/usr/bin/env bash
# Meridian demo: three people in Tokyo, Berlin and Lima write, review and decide a proposal
# with no network at all, converging by passing bundles around (sneakernet), then each
# sees the same result, their own inbox and a verified history.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --quiet --bin meridian
bin="${CARGO_TARGET_DIR:-$PWD/target}/release/meridian"
work=$(mktemp -d -t meridian-demo.XXXXXX)
trap 'rm -rf "$work"' EXIT

ana() { "$bin" --home "$work/ana" "$@"; }
bo() { "$bin" --home "$work/bo" "$@"; }
cy() { "$bin" --home "$work/cy" "$@"; }
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
# send FROM TO: FROM exports everything, TO merges it.
send() {
  "$bin" --home "$work/$1" export --all --format bundle -o "$work/$1.bundle"
  printf '%s → %s: ' "$1" "$2"
  "$bin" --home "$work/$2" merge "$work/$1.bundle"
}

say "Three identities in three time zones"
ana init --name Ana --tz Asia/Tokyo
bo init --name Bo --tz Europe/Berlin --hours 08:00-16:00
cy init --name Cy --tz America/Lima --hours 10:00-18:00

say "Ana creates a workspace and invites Bo and Cy (they join offline)"
ana workspace create acme >/dev/null
bo join "$(ana invite 2>/dev/null)"
cy join "$(ana invite 2>/dev/null)"
send bo ana
send cy ana
ana member list

say "Ana writes an RFC and asks Bo and Cy to respond"
cat >"$work/rfc.md" <<'MD'
# Store workspaces in redb

## Summary

Keep every workspace in one redb file per home.

## Motivation

People read and write with no network.

## Design

Append each change; never save a whole document per edit.
MD
p=$(ana --json proposal new "Store workspaces in redb" --body-file "$work/rfc.md" \
  --decider Ana --decider Bo --ask Bo --ask Cy --urgency high | sed -n 's/.*"id": "\(.*\)".*/\1/p')
ana proposal open "$p" --closes 0m
send ana bo
send ana cy

say "Offline: Bo and Cy edit the same section at the same time, and comment"
printf 'Keep every workspace in one redb file per home, written durably.\n' >"$work/bo.md"
bo proposal edit "$p" --section Summary --file "$work/bo.md"
printf 'Keep every workspace (and its outbox) in one redb file per home.\n' >"$work/cy.md"
cy proposal edit "$p" --section Summary --file "$work/cy.md"
c=$(cy --json reply "$p" -m "What about backups?" | sed -n 's/.*"id": "\(.*\)",*/\1/p' | head -1)
bo proposal approve "$p" -m "Looks right"

say "Bundles travel in any order: Lima → Berlin → Tokyo → everyone"
send cy bo
send bo ana
send ana bo
send ana cy

say "Ana answers Cy and approves; accepting is refused: Cy's edit made Bo's approval stale"
ana reply "$p:${c:0:8}" -m "redb files copy cleanly; add it to the runbook." >/dev/null
ana proposal approve "$p"
ana proposal accept "$p" -m "Deciders agree" || true

say "Bo re-reads, approves the merged text; Ana accepts"
send ana bo
bo proposal approve "$p" -m "Still right with the outbox"
send bo ana
ana proposal accept "$p" -m "Deciders agree"
send ana bo
send ana cy

say "Every node shows the same converged proposal (here from Lima, in Lima time)"
cy show "$p"

say "Inboxes: what each person still has to answer, in their own zone"
for who in ana bo cy; do printf '\n[%s]\n' "$who"; "$bin" --home "$work/$who" inbox; done

say "History with verified authors (as Berlin sees it)"
bo log "$p"

say "Identical heads everywhere"
for who in ana bo cy; do printf '%s: ' "$who"; "$bin" --home "$work/$who" --json proposal list | tr -d ' \n' | sed 's/.*"heads":\[\([^]]*\)\].*/\1/'; echo; done
