#!/usr/bin/env bash
# Meridian demo: a relay on loopback and three people in Tokyo, Berlin and Lima who are
# never online together. They write, review and decide a proposal partly offline, sync
# through a relay that only ever holds ciphertext, and end with the same result, their own
# inbox and a verified history. Lima runs the daemon and sees the decision arrive by itself.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --quiet -p meridian -p meridian-relay
target="${CARGO_TARGET_DIR:-$PWD/target}/release"
bin="$target/meridian"
work=$(mktemp -d -t meridian-demo.XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

ana() { "$bin" --home "$work/ana" "$@"; }
bo() { "$bin" --home "$work/bo" "$@"; }
cy() { "$bin" --home "$work/cy" "$@"; }
# Headings in bold on a terminal only (and never with NO_COLOR).
if [ -t 1 ] && [ -z "${NO_COLOR:-}" ]; then
  say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
else
  say() { printf '\n== %s\n' "$*"; }
fi

say "A relay on loopback (it stores and forwards sealed changes it cannot read)"
"$target/meridian-relay" serve --listen 127.0.0.1:0 --data "$work/relay" \
  >"$work/relay.out" 2>"$work/relay.log" &
pids+=($!)
for _ in $(seq 100); do [ -s "$work/relay.out" ] && break; sleep 0.05; done
relay=$(sed -n 's/^listening on \(ws:\/\/[^/]*\).*/\1/p' "$work/relay.out")
echo "relay at $relay"

say "Three identities in three time zones"
ana init --name Ana --tz Asia/Tokyo
bo init --name Bo --tz Europe/Berlin --hours 08:00-16:00
cy init --name Cy --tz America/Lima --hours 10:00-18:00

say "Ana creates a workspace on the relay and invites Bo and Cy"
ana workspace create acme --relay "$relay"
bo join "$(ana invite 2>/dev/null)"
cy join "$(ana invite 2>/dev/null)"
ana sync
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
ana sync
bo sync
cy sync

say "Offline: Bo and Cy edit the same section at the same time, and comment"
printf 'Keep every workspace in one redb file per home, written durably.\n' >"$work/bo.md"
bo proposal edit "$p" --section Summary --file "$work/bo.md"
printf 'Keep every workspace (and its outbox) in one redb file per home.\n' >"$work/cy.md"
cy proposal edit "$p" --section Summary --file "$work/cy.md"
c=$(cy --json reply "$p" -m "What about backups?" | sed -n 's/.*"comment_id": "\([0-9a-f]*\)".*/\1/p')
bo proposal approve "$p" -m "Looks right"

say "Each comes online at a different time: Lima, then Berlin, then Tokyo"
cy sync
bo sync
ana sync

say "Ana answers Cy and approves; accepting is refused: Cy's edit made Bo's approval stale"
ana reply "$p:${c:0:8}" -m "redb files copy cleanly; add it to the runbook." >/dev/null
ana proposal approve "$p"
ana proposal accept "$p" -m "Deciders agree" || true
ana sync

say "Lima starts the daemon; Berlin re-reads, approves the merged text; Tokyo accepts"
"$bin" --home "$work/cy" daemon >/dev/null 2>"$work/cy-daemon.log" &
pids+=($!)
bo sync
bo proposal approve "$p" -m "Still right with the outbox"
bo sync
ana sync
ana proposal accept "$p" -m "Deciders agree"
ana sync
echo 'Lima, without running a command (its daemon applied the acceptance):'
for _ in $(seq 100); do
  cy --json proposal list | grep -q '"state": "accepted"' && break
  sleep 0.1
done
cy proposal list
bo sync >/dev/null

say "Every node shows the same converged proposal (here from Lima, in Lima time)"
cy show "$p"

say "Inboxes: what each person still has to answer, in their own zone"
for who in ana bo cy; do printf '\n[%s]\n' "$who"; "$bin" --home "$work/$who" inbox; done

say "History with verified authors (as Berlin sees it)"
bo log "$p"

say "Identical heads everywhere"
for who in ana bo cy; do printf '%s: ' "$who"; "$bin" --home "$work/$who" --json proposal list | tr -d ' \n' | sed 's/.*"heads":\[\([^]]*\)\].*/\1/'; echo; done

say "The relay holds only ciphertext"
if grep -rqa "redb file per home" "$work/relay"; then
  echo "PLAINTEXT FOUND in the relay's data" >&2
  exit 1
fi
echo "$(du -sh "$work/relay" | cut -f1) of sealed envelopes; no plaintext of any document"
