#!/usr/bin/env python3
"""Renders RELIABILITY.md from the figures file scripts/reliability.sh collected.

Every number comes from the figures file or from the environment the script set; a figure
a check did not report shows as "not run".
"""
import os
import platform
import subprocess
import sys
from datetime import datetime, timezone

figures = {}
with open(sys.argv[1]) as f:
    for line in f:
        name, _, value = line.rstrip("\n").partition("\t")
        figures[name] = value  # a later value of the same name wins


def fig(name, unit=""):
    value = figures.get(name)
    return f"{value}{unit}" if value is not None else "not run"


def env(name):
    return os.environ.get(name, "?")


def machine():
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    rustc = subprocess.run(["rustc", "--version"], capture_output=True, text=True).stdout.strip()
    return f"{os.cpu_count()} × {cpu}, {platform.system()} {platform.release()}, {rustc}"


out = []
w = out.append
w("# Reliability")
w("")
w("What Meridian guarantees when things go wrong, the test that checks each guarantee, the")
w("command that runs it, and the figures of the latest run. This file is written by")
w("`./scripts/reliability.sh` from what the checks report; do not edit it by hand.")
w("")
w(f"- Run: {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}, commit `{env('COMMIT')}`, "
  f"{int(env('ELAPSED')) // 60} min {int(env('ELAPSED')) % 60} s in all")
w(f"- Machine: {machine()}")
w(f"- Scale: `SIM_SEEDS={env('SIM_SEEDS')} CRASH_TRIALS={env('CRASH_TRIALS')} "
  f"FUZZ_SECS={env('FUZZ_SECS')} ABUSE_SCALE={env('ABUSE_SCALE')} "
  f"REOPEN_ENTRIES={env('REOPEN_ENTRIES')}` (CI runs the same tests at their defaults: "
  "300 seeds, 200 trials, 3 s per fuzz target, scale 1, no reopen measurement)")
w("")
w("Every check below passed in this run: the script stops at the first failure and writes")
w("nothing.")
w("")

w("## Convergence under chaos")
w("")
w("**Guarantee.** Whatever the network does — connections cut at any frame, frames")
w("duplicated, reordered or delayed past timeouts, partitions, nodes and relays crashing and")
w("restarting from their redb files, members joining late and being removed — once it heals")
w("every replica has the same documents, heads and derived state (proposal states,")
w("deadlines, asks, conflicts, members), nothing is held back or rejected, every outbox is")
w("empty, every envelope any relay acknowledged is in every replica, and every relay refuses")
w("the removed members.")
w("")
w("**Check.** `tests/sim`: a deterministic simulation over real homes (CLI edits, redb),")
w("the real sync session and relay store; the transport and scheduler are simulated from one")
w("seed, and randomness and the clock come from it too, so a failing seed replays byte for")
w("byte (`sim::a_seed_replays_exactly` checks that). A failure prints")
w("`MERIDIAN_SIM_SEED=N cargo test --test sim` to replay it, and `MERIDIAN_SIM_TRACE=1`")
w("prints every step.")
w("")
w(f"**Command.** `MERIDIAN_SIM_SEEDS={env('SIM_SEEDS')} cargo test --test sim`")
w("")
w("| figure | value |")
w("| --- | --- |")
for label, name in [
    ("seeds run", "sim.seeds"),
    ("seconds", "sim.seconds"),
    ("scheduler steps", "sim.steps"),
    ("edits made (CLI commands that succeeded)", "sim.edits"),
    ("commands the rules refused", "sim.edits_refused_by_rules"),
    ("frames delivered", "sim.frames"),
    ("frames duplicated", "sim.frames_duplicated"),
    ("frames reordered", "sim.frames_reordered"),
    ("connections cut", "sim.connections_cut"),
    ("sessions that ended (protocol break detected, timeout, refusal, cut)", "sim.sessions_failed"),
    ("node crashes", "sim.node_crashes"),
    ("relay crashes and restarts", "sim.relay_crashes"),
    ("partitions", "sim.partitions"),
    ("members who joined mid-run", "sim.late_joins"),
    ("devices added to a member mid-run (device codes)", "sim.device_adds"),
    ("members removed mid-run", "sim.removals"),
    ("changes removed members wrote after their removal: refused by every node", "sim.late_changes_refused"),
    ("... and kept by every node (a member took them before hearing of the removal)", "sim.late_changes_kept"),
    ("keyring records (key epochs started and shared) on the relays", "sim.keyring_records"),
    ("envelopes checked present on every replica", "sim.envelopes_checked"),
]:
    w(f"| {label} | {fig(name)} |")
w("")

w("## A removed member reads nothing written after the removal")
w("")
w("**Guarantee.** A member removed by the creator, given both relays' data directories, a")
w("bundle exported after the removal and every key in their own home, decrypts nothing a")
w("writer sealed after it knew of the removal; what was written before stays readable to")
w("them. The one window: a writer who had not yet heard of the removal seals under the key")
w("the removed member holds (ARCHITECTURE.md, key epochs).")
w("")
w("**Check.** `tests/it/epochs.rs`, with the keys directly (not the removed node's own")
w("refusal): every secret in the removed member's home, everything their device key unwraps")
w("from any keyring record, each tried as the secret of every epoch named anywhere, against")
w("every envelope; canary strings searched in automerge's decoded changes. The simulation")
w("checks the same per run (above: a removed node opens no envelope sealed under an epoch;")
w("every current node opens every one).")
w("")
w("**Command.** `cargo test --test it epochs::`")
w("")
w("| figure | value |")
w("| --- | --- |")
w(f"| envelopes given to the removed member (both relays and a bundle) | {fig('epochs.canary.envelopes_given')} |")
w(f"| keys and (epoch, secret) pairs tried | {fig('epochs.canary.keys_tried')} |")
w(f"| envelopes they opened (all from before the removal) | {fig('epochs.canary.envelopes_opened')} |")
w(f"| canary written before the removal read (control, expect 1) | {fig('epochs.canary.before_read')} |")
w(f"| canaries written after the removal read (expect 0) | {fig('epochs.canary.after_read')} |")
w(f"| window: an edit pushed by a writer unaware of the removal read (documented, 1) | {fig('epochs.window.unaware_read')} |")
w(f"| edits by writers aware of it read, one re-sealed before its push (expect 0) | {fig('epochs.window.aware_read')} |")
w("")

w("## Crashes: SIGKILL at random moments")
w("")
w("**Guarantee.** A node or relay killed at any moment during writes and sync leaves no")
w("corrupt database and loses no acknowledged edit: a write command that exited 0 is in its")
w("node; an edit a relay acknowledged to a `meridian sync` is in the relay's log after the")
w("relay is killed and restarted, and reaches every node; every restart opens and resumes;")
w("at the end all nodes are identical.")
w("")
w("**Check.** `tests/it/crash.rs`: seeded trials over the real `meridian` and")
w("`meridian-relay` binaries on loopback, each killing one of a write command, a `sync`, the")
w("daemon or the relay. A failure prints the command that replays its trial.")
w("")
w(f"**Command.** `MERIDIAN_CRASH_TRIALS={env('CRASH_TRIALS')} cargo test --test it crash::`")
w("")
w("| figure | value |")
w("| --- | --- |")
w(f"| trials | {fig('crash.trials')} |")
w(f"| seconds | {fig('crash.seconds')} |")
for target in ["write", "sync", "daemon", "relay"]:
    w(f"| kills of a {target}: mid-run / after it finished | "
      f"{fig('crash.kills.' + target)} / {fig('crash.finished.' + target)} |")
w(f"| edits whose command exited 0, all found after the kills | {fig('crash.acknowledged_edits')} |")
w(f"| edits a relay acknowledged, all found in its log after its kills | {fig('crash.relay_acknowledged_edits')} |")
w(f"| slowest relay restart after a kill | {fig('crash.relay_restart_ms.max', ' ms')} |")
w("")

w("## Crash recovery time of the relay")
w("")
w("**Guarantee.** A relay killed with a large log serves again in milliseconds, not in time")
w("proportional to its log. redb's recovery setting was chosen on these figures: `quick`")
w("(quick-repair, the default, config key `recovery`) costs a second fsync per commit and")
w("removes a full-file repair after a crash.")
w("")
w(f"**Command.** `cargo bench -p meridian-relay --bench reopen -- --entries {env('REOPEN_ENTRIES')}`")
if env("REOPEN_ENTRIES") == "0":
    w("(not run this time: `REOPEN_ENTRIES=0`)")
else:
    w(f"(log file {fig('relay.reopen.file_mb', ' MB')}; building it took {fig('relay.reopen.build_s', ' s')})")
w("")
w("| setting | commit of one envelope | group commit (envelopes/s) | back after SIGTERM | after SIGKILL, warm cache | after SIGKILL, cold cache |")
w("| --- | --- | --- | --- | --- | --- |")
for name in ["quick", "two-phase", "full"]:
    w(f"| {name} | {fig('relay.commit_us.' + name + '.single', ' µs')} | "
      f"{fig('relay.commit_envelopes_per_s.' + name + '.batch')} | "
      f"{fig('relay.reopen_ms.' + name + '.clean', ' ms')} | "
      f"{fig('relay.reopen_ms.' + name, ' ms')} | {fig('relay.reopen_ms.' + name + '.cold', ' ms')} |")
w("")

w("## Hostile input")
w("")
w("**Guarantee.** Every malformed input at every entry point gets a clear error (what was")
w("wrong, in words: not empty, not a debug dump), with no panic, abort or stack overflow,")
w("within 20 s and 256 MiB over what the same process takes for honest input; the relay keeps serving a legitimate member throughout and its log")
w("holds exactly the legitimate entries afterwards; nothing already stored changes (full")
w("exports and stored records compared before and after).")
w("")
w("**Check.** `tests/corpus.rs` runs every case of the committed corpus `tests/corpus/`")
w("(described one per line in `tests/corpus/MANIFEST.tsv`), written by")
w("`cargo run --example hostile_corpus -- tests/corpus`: truncated, oversized and bit-flipped")
w("frames, wrong versions, garbage CBOR, frames out of order, bad and swapped signatures,")
w("changes whose actor is not the signer, a 1 MiB change inflating to 1 GiB (and to just")
w("under it), a 1.2 KB document claiming a million operations, documents")
w("nested 100,000 deep, thousands of changes missing their dependencies, duplicates, huge")
w("text, absurd command-line arguments, relay config files and damaged home files.")
w("")
w("**Command.** `cargo test --test corpus`")
w("")
w("| entry point | cases | slowest case | peak memory |")
w("| --- | --- | --- | --- |")
for label, name in [
    ("relay: websocket frames and config files (real relay process)", "relay"),
    ("node: frames from a hostile relay (decoder and session)", "node_frames"),
    ("node: sealed envelopes (sync ingest)", "envelopes"),
    ("`merge`: bundles and saved automerge documents", "merge"),
    ("command-line arguments", "cli"),
    ("damaged home files", "home"),
]:
    memory = fig('corpus.' + name + '.max_rss_mb', ' MB')
    if name == "node_frames":
        memory = "in the test process, not measured apart"
    w(f"| {label} | {fig('corpus.' + name + '.cases')} | {fig('corpus.' + name + '.max_case_ms', ' ms')} | {memory} |")
w("")
w("Decompression and run-length bombs given to `meridian merge` (the real binary; peak memory sampled every")
w("millisecond from `/proc/PID/status`, over the peak of the same command merging an honest")
w(f"bundle, {fig('corpus.merge.idle_rss_mb', ' MB')}). What compressed input may inflate to is")
w("16 times its size plus 4 MiB shared by a batch (`ingest::Budget`); a fixed budget of 1 GiB")
w("per batch let the 1 GiB − 1 MiB cases through to automerge, which took 2.1 GB and 5 to 9 s.")
w("")
w("| case | what it is | peak memory over idle | time |")
w("| --- | --- | --- | --- |")
for name in sorted(n for n in figures if n.startswith("corpus.bomb.")):
    over, ms, what = (figures[name].split("\t", 2) + ["", "", ""])[:3]
    w(f"| `{name[len('corpus.bomb.'):]}` | {what} | {over} MB | {ms} ms |")
w("")

w("## Fuzzing")
w("")
w("**Guarantee.** The frame decoder, the envelope opener, the bundle reader and the")
w("change-ingest path return an error for any input, never panic, and take under 10 s each.")
w("")
w("**Check.** `tests/fuzz.rs`, a seeded mutational fuzzer on the stable toolchain, started")
w("from the corpus. A finding is saved under `tests/fuzz-regressions/<target>/` with the")
w("command that replays it; every saved input is replayed on every run.")
w("")
w(f"**Command.** `MERIDIAN_FUZZ_SECS={env('FUZZ_SECS')} cargo test --test fuzz`")
w("")
w("| target | executions | seconds |")
w("| --- | --- | --- |")
# Every target the run reported, so a new one shows up without an edit here.
FUZZ_TARGETS = sorted({name.split(".")[1] for name in figures if name.startswith("fuzz.") and name.endswith(".execs")})
for target in FUZZ_TARGETS:
    w(f"| {target} | {fig('fuzz.' + target + '.execs')} | {fig('fuzz.' + target + '.secs')} |")
w("")
w("The coverage-guided campaign (`scripts/fuzz.sh`: cargo-fuzz, libFuzzer, on nightly; not")
w("run by this script, see `fuzz/README.md`) keeps what it learned in `fuzz/corpus/` and its")
w("findings in `tests/fuzz-regressions/`; the run above replays both. In the repository now:")
w("")
w("| target | corpus inputs | findings kept (each fixed) |")
w("| --- | --- | --- |")


def files(path):
    try:
        return len([f for f in os.listdir(path) if not f.startswith(".")])
    except FileNotFoundError:
        return 0


for target in sorted(os.listdir("fuzz/corpus")) if os.path.isdir("fuzz/corpus") else []:
    w(f"| {target} | {files('fuzz/corpus/' + target)} | {files('tests/fuzz-regressions/' + target)} |")
w("")

w("## The relay under abuse")
w("")
w("**Guarantee.** Connections that never finish the handshake, readers that never read while")
w("a member pushes, reconnect storms and oversized messages keep the relay's resident")
w("memory inside a budget derived from its config; a legitimate member keeps pushing and")
w("receiving throughout; afterwards connections return to the baseline, a second wave")
w("needs no more memory than the first, and the relay serves normally.")
w("")
w(f"**Check.** `relay/tests/abuse.rs` over the real relay binary, memory read from")
w("`/proc/<pid>/status` every 10 ms.")
w("")
w(f"**Command.** `MERIDIAN_ABUSE_SCALE={env('ABUSE_SCALE')} cargo test -p meridian-relay --test abuse`")
w("")
w("| abuse | budget | memory before / peak / second wave / after | member push→delivery p50 / p99 / max |")
w("| --- | --- | --- | --- |")
for label, name in [
    (f"{fig('abuse.idle_connections')} connections that never finish the handshake", "idle"),
    (f"{fig('abuse.slow_consumers')} readers that never read while a member pushes", "slow"),
    (f"reconnect storm ({fig('abuse.storm.handshakes_per_s')} handshakes/s) and oversized messages", "storm"),
]:
    p = f"abuse.{name}."
    w(f"| {label} | {fig(p + 'budget_mb', ' MB')} | {fig(p + 'rss_mb.base')} / {fig(p + 'rss_mb.peak')} / "
      f"{fig(p + 'rss_mb.peak_second_wave')} / {fig(p + 'rss_mb.after')} MB | "
      f"{fig(p + 'member_latency_ms.p50')} / {fig(p + 'member_latency_ms.p99')} / {fig(p + 'member_latency_ms.max')} ms |")
w("")

w("## Access matrix")
w("")
w("**Guarantee.** A non-member, a removed member (connected at the removal, and")
w("reconnecting), a device of another workspace, a replayed authentication or invite proof,")
w("an invite used twice, an expired invite, an invite for another workspace or made by a")
w("non-member: every one is refused and receives nothing of the workspace — exactly one")
w("frame, the refusal, checked against canary envelopes.")
w("")
w("**Check.** `relay/tests/relay.rs` (`every_refused_access_gets_nothing_of_the_workspace`,")
w("`a_replayed_authentication_is_refused`), and at the node level `tests/it/sync.rs`")
w("(unauthorised access over real processes).")
w("")
w("**Command.** `cargo test -p meridian-relay --test relay`")
w("")
w(f"Cells refused with nothing sent: {fig('access.cells')}.")
w("")

w("## Time per check in this run")
w("")
w("| check | seconds |")
w("| --- | --- |")
for step in ["sim", "crash", "corpus", "fuzz", "abuse", "access", "reopen"]:
    w(f"| {step} | {fig('time.' + step)} |")
print("\n".join(out))
