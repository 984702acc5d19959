//! How long a relay with a large log takes to serve again after a SIGKILL, and what each
//! redb recovery setting ([`Recovery`]) costs per commit: the evidence behind the relay's
//! default (`ARCHITECTURE.md`, "Crash recovery").
//!
//! ```text
//! cargo bench -p meridian-relay --bench reopen -- [--entries N] [--size BYTES] [--rounds R] [--dir DIR]
//! ```
//!
//! 1. Builds a log of `N` envelope-sized entries (default 1,000,000 of 1 KiB: a 2.3 GB
//!    file) through the store's own append, in commits of 1000 (or reuses the one in `DIR`).
//! 2. Per setting, on that file: the cost of a commit of one envelope (the worst case, one
//!    push alone) and of 1000 envelopes (a busy relay's group commit).
//! 3. Starts the real `meridian-relay` with each setting, pushes to it over a websocket,
//!    SIGKILLs it mid-push (at a different moment each round), restarts it and times the
//!    restart until a client is welcomed, with the file in the page cache (warm) and after
//!    dropping it from the cache (cold, `dd iflag=nocache`). Every push the relay
//!    acknowledged before the kill must be in the log after the restart, and the relay
//!    must have repaired the file exactly when its setting says it has to.
//!
//! The settings take turns in every step, so load from other processes hits each alike.
//!
//! Figures (`MERIDIAN_FIGURES`): `relay.reopen.entries`, `relay.reopen.file_mb`,
//! `relay.reopen.build_s`, `relay.commit_us.<setting>.single`,
//! `relay.commit_envelopes_per_s.<setting>.batch`, `relay.reopen_ms.<setting>.clean`,
//! `relay.reopen_ms.<setting>` (warm, median), `relay.reopen_ms.<setting>.cold` (median).

#[path = "../tests/support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use meridian_relay::protocol::{Frame, PushResult, Register};
use meridian_relay::store::{Incoming, Options, Recovery, RelayStore};
use sha2::{Digest, Sha256};
use support::{Device, RelayProcess, figure, next, send, try_handshake};

struct Args {
    entries: u64,
    size: usize,
    rounds: usize,
    dir: Option<PathBuf>,
}

fn args() -> Result<Args> {
    let mut args = Args {
        entries: 1_000_000,
        size: 1024,
        rounds: 3,
        dir: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--entries" => args.entries = value()?.parse()?,
            "--size" => args.size = value()?.parse()?,
            "--rounds" => args.rounds = value()?.parse()?,
            "--dir" => args.dir = Some(value()?.into()),
            // What cargo passes to every bench.
            "--bench" => {}
            other => bail!("unknown argument {other}"),
        }
    }
    Ok(args)
}

fn main() -> Result<()> {
    let args = args()?;
    let tmp = tempfile::tempdir()?;
    let dir = args.dir.clone().unwrap_or_else(|| tmp.path().to_path_buf());
    let creator = Device::new(7);
    let (ws, register) = creator.workspace([3; 16]);

    // The log, built once; a `--dir` that holds one from an earlier run is reused.
    let data = dir.join("data");
    let file = data.join("relay.redb");
    if file.exists() {
        eprintln!("reusing {}", file.display());
    } else {
        let started = Instant::now();
        build(&data, ws, &creator, &register, args.entries, args.size)?;
        figure("relay.reopen.entries", args.entries);
        figure(
            "relay.reopen.build_s",
            format!("{:.1}", started.elapsed().as_secs_f64()),
        );
    }
    figure(
        "relay.reopen.file_mb",
        std::fs::metadata(&file)?.len() / 1_000_000,
    );

    // Nonces (which make entries unique) start from the log's head, so a run on a reused
    // log never pushes an entry an earlier run stored: that would measure deduplication.
    let start = RelayStore::open(&data)?.head(&ws)?;

    // Commit costs, the settings taking turns so that load on the machine hits each alike.
    let mut singles: Vec<Vec<Duration>> = vec![Vec::new(); Recovery::ALL.len()];
    let mut batches = vec![Duration::ZERO; Recovery::ALL.len()];
    let mut nonce = (1u64 << 50) + start;
    for _ in 0..args.rounds * 2 {
        for (i, recovery) in Recovery::ALL.into_iter().enumerate() {
            let store = RelayStore::open_with(
                &data,
                Options {
                    recovery,
                    ..Options::default()
                },
            )?;
            singles[i].extend(commit_singles(&store, ws, &creator, &mut nonce, 40)?);
            batches[i] += commit_batches(&store, ws, &creator, &mut nonce, 3)?;
        }
    }
    for (i, recovery) in Recovery::ALL.into_iter().enumerate() {
        let name = recovery.name();
        figure(
            &format!("relay.commit_us.{name}.single"),
            median(&mut singles[i]).as_micros(),
        );
        let envelopes = (args.rounds * 2 * 3 * 1000) as f64;
        figure(
            &format!("relay.commit_envelopes_per_s.{name}.batch"),
            (envelopes / batches[i].as_secs_f64()) as u64,
        );
    }

    // Restarts of the real relay: clean, and after a SIGKILL mid-push with the file in the
    // page cache (warm) or dropped from it (cold). Settings take turns here too.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut times: Vec<[Vec<Duration>; 3]> = vec![Default::default(); Recovery::ALL.len()];
    let mut nonce = (1u64 << 40) + start;
    for round in 0..args.rounds * 2 {
        for (i, recovery) in Recovery::ALL.into_iter().enumerate() {
            let name = recovery.name();
            let started = Instant::now();
            let mut relay = RelayProcess::start(&dir, &format!("recovery = \"{name}\"\n"));
            let logged = relay.log().len();
            times[i][0].push(runtime.block_on(welcomed(&relay, started, ws, &creator))?);
            let pushing = Duration::from_millis(300 + 150 * ((round + i) as u64 % 4));
            let acked = runtime.block_on(push_then_kill(
                &mut relay, ws, &creator, &mut nonce, pushing,
            ))?;
            let cold = round % 2 == 1;
            if cold {
                drop_from_cache(&file)?;
            }
            let started = Instant::now();
            relay.restart();
            let took = runtime.block_on(welcomed(&relay, started, ws, &creator))?;
            let head = runtime.block_on(head(&relay, ws, &creator))?;
            if head < acked {
                bail!("{name}: the relay acknowledged entry {acked} but its log ends at {head}");
            }
            let repaired = relay.log()[logged..].contains("repairing");
            if repaired != (recovery != Recovery::Quick) {
                bail!("{name}: repaired = {repaired}:\n{}", relay.log());
            }
            eprintln!(
                "{name} round {round}: killed at entry {acked}, serving again in {} ms ({})",
                took.as_millis(),
                if cold { "cold" } else { "warm" }
            );
            times[i][if cold { 2 } else { 1 }].push(took);
            relay.stop();
        }
    }
    for (i, recovery) in Recovery::ALL.into_iter().enumerate() {
        let name = recovery.name();
        for (which, suffix) in [(0, ".clean"), (1, ""), (2, ".cold")] {
            figure(
                &format!("relay.reopen_ms.{name}{suffix}"),
                median(&mut times[i][which]).as_millis(),
            );
        }
    }
    Ok(())
}

fn median(times: &mut [Duration]) -> Duration {
    times.sort();
    times.get(times.len() / 2).copied().unwrap_or_default()
}

/// A synthetic entry: unique hash, the creator as author, `size` bytes.
fn incoming(creator: &Device, n: u64, size: usize) -> Incoming {
    let hash: [u8; 32] = Sha256::digest(n.to_le_bytes()).into();
    let mut bytes = vec![0u8; size];
    for (i, chunk) in bytes.chunks_mut(32).enumerate() {
        let block: [u8; 32] = Sha256::digest([hash.as_slice(), &i.to_le_bytes()].concat()).into();
        chunk.copy_from_slice(&block[..chunk.len()]);
    }
    Incoming {
        docs: vec![[7; 16]],
        hash,
        author: creator.public(),
        bytes,
        forwarded: false,
    }
}

/// Creates a relay database holding one workspace with `entries` entries.
fn build(
    dir: &Path,
    ws: [u8; 16],
    creator: &Device,
    register: &Register,
    entries: u64,
    size: usize,
) -> Result<()> {
    let store = RelayStore::open(dir)?;
    if let Err(refusal) = store.admit(&ws, &creator.public(), Some(register), 0)? {
        bail!("the creator is refused: {refusal:?}");
    }
    let mut n = 0;
    let started = Instant::now();
    while n < entries {
        let batch: Vec<Incoming> = (n..(n + 1000).min(entries))
            .map(|i| incoming(creator, i, size))
            .collect();
        n += batch.len() as u64;
        store.append(&[(ws, batch)])?;
        if n % 100_000 == 0 {
            eprintln!(
                "built {n} entries in {:.1}s",
                started.elapsed().as_secs_f64()
            );
        }
    }
    Ok(())
}

/// The duration of each of `count` commits of one envelope (the worst case: a push alone).
fn commit_singles(
    store: &RelayStore,
    ws: [u8; 16],
    creator: &Device,
    nonce: &mut u64,
    count: usize,
) -> Result<Vec<Duration>> {
    let mut times = Vec::with_capacity(count);
    for _ in 0..count {
        let one = vec![incoming(creator, *nonce, 1024)];
        *nonce += 1;
        let started = Instant::now();
        let appended = store.append(&[(ws, one)])?;
        times.push(started.elapsed());
        stored(&appended)?;
    }
    Ok(times)
}

/// The total duration of `count` commits of 1000 envelopes (a busy relay's group commit).
fn commit_batches(
    store: &RelayStore,
    ws: [u8; 16],
    creator: &Device,
    nonce: &mut u64,
    count: usize,
) -> Result<Duration> {
    let mut total = Duration::ZERO;
    for _ in 0..count {
        let batch: Vec<Incoming> = (*nonce..*nonce + 1000)
            .map(|i| incoming(creator, i, 1024))
            .collect();
        *nonce += 1000;
        let started = Instant::now();
        let appended = store.append(&[(ws, batch)])?;
        total += started.elapsed();
        stored(&appended)?;
    }
    Ok(total)
}

/// Fails unless every entry was new: a duplicate costs no write.
fn stored(appended: &[meridian_relay::store::Appended]) -> Result<()> {
    for result in appended.iter().flat_map(|a| &a.results) {
        if !matches!(result, PushResult::Stored(_)) {
            bail!("an entry was not stored as new: {result:?}");
        }
    }
    Ok(())
}

/// How long from `started` (just before the relay was spawned) until it welcomed a client.
async fn welcomed(
    relay: &RelayProcess,
    started: Instant,
    ws: [u8; 16],
    creator: &Device,
) -> Result<Duration> {
    let url = relay.url();
    loop {
        if let Ok((_, Frame::Welcome { .. })) = try_handshake(&url, creator, ws, None).await {
            return Ok(started.elapsed());
        }
        if started.elapsed() > Duration::from_secs(600) {
            bail!(
                "the relay did not serve within 10 minutes:\n{}",
                relay.log()
            );
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// The head of the workspace log, as the relay announces it.
async fn head(relay: &RelayProcess, ws: [u8; 16], creator: &Device) -> Result<u64> {
    match try_handshake(&relay.url(), creator, ws, None).await {
        Ok((_, Frame::Welcome { head, .. })) => Ok(head),
        other => bail!("no welcome: {:?}", other.map(|(_, frame)| frame)),
    }
}

/// Pushes batches of 200 envelopes for `pushing`, then SIGKILLs the relay while a push is
/// in flight. Returns the highest sequence number the relay acknowledged.
async fn push_then_kill(
    relay: &mut RelayProcess,
    ws: [u8; 16],
    creator: &Device,
    nonce: &mut u64,
    pushing: Duration,
) -> Result<u64> {
    let (mut socket, answer) = try_handshake(&relay.url(), creator, ws, None)
        .await
        .map_err(anyhow::Error::msg)?;
    if !matches!(answer, Frame::Welcome { .. }) {
        bail!("not welcomed: {answer:?}");
    }
    let started = Instant::now();
    let mut acked = 0;
    for id in 0.. {
        let envelopes = (0..200)
            .map(|_| {
                *nonce += 1;
                serde_bytes::ByteBuf::from(creator.envelope(ws, *nonce, 1024).encode())
            })
            .collect();
        send(&mut socket, &Frame::Push { id, envelopes }).await;
        if started.elapsed() >= pushing {
            // The push is on its way: the kill lands while the relay reads, checks or
            // commits it.
            tokio::time::sleep(Duration::from_millis(id % 7)).await;
            relay.kill();
            break;
        }
        match next(&mut socket).await {
            Some(Frame::Stored { results, .. }) => {
                for result in results {
                    if let PushResult::Stored(seq) = result {
                        acked = acked.max(seq);
                    }
                }
            }
            other => bail!("expected Stored, got {other:?}"),
        }
    }
    if acked == 0 {
        bail!("the relay stored nothing before it was killed: the kill measured no write");
    }
    Ok(acked)
}

/// Drops the file's pages from the page cache, so the next open reads the disk.
fn drop_from_cache(file: &Path) -> Result<()> {
    let status = std::process::Command::new("dd")
        .arg(format!("if={}", file.display()))
        .args(["iflag=nocache", "count=0", "status=none"])
        .status()
        .context("dd runs")?;
    if !status.success() {
        bail!("dd iflag=nocache failed: {status}");
    }
    Ok(())
}
