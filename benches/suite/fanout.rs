//! Scenario 2: relay fan-out. The relay is the `meridian-relay` binary in a process of its
//! own, so its CPU time and memory are its alone; this process plays
//! every member over loopback with lightweight websocket clients (the handshake and
//! `Subscribe` of the protocol, then counting `Entries`), and one pusher that pushes one
//! envelope at a time: first [`PACED`] pushes at the rate of 100,000 deliveries per
//! second (the latency target is at that load), then as fast as the relay stores them, each
//! after the previous one was stored (the throughput and CPU per delivery at full load).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};
use ed25519_dalek::{Signer, SigningKey};
use futures_util::{SinkExt, StreamExt};
use meridian::id::Id;
use meridian::node::{Node, now_ms};
use meridian::workspace::Invite;
use meridian_relay::membership::JoinProof;
use meridian_relay::protocol::{Frame, PROTOCOL_VERSION, Register, auth_message};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::Settings;
use crate::report::{Row, Target, median};
use crate::workload::{self, scratch, sync_round};

const FANOUT: &str = "2. Relay fan-out";

/// The relay process.
struct RelayProcess {
    child: Child,
    url: String,
}

impl RelayProcess {
    /// Starts `meridian-relay serve` on a free loopback port, with its data in `dir` and
    /// room for every member of the largest run, the pusher and the creator's node.
    fn start(dir: &std::path::Path) -> Result<RelayProcess> {
        let binary = relay_binary()?;
        std::fs::create_dir_all(dir)?;
        let config = dir.join("relay.toml");
        std::fs::write(
            &config,
            "max_per_workspace = 20000\nmax_connections = 30000\n",
        )?;
        let mut child = Command::new(&binary)
            .arg("serve")
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--data")
            .arg(dir.join("data"))
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        let stdout = child.stdout.take().context("the relay's stdout")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .map(|url| url.trim_end_matches(meridian_relay::protocol::PATH))
            .with_context(|| format!("the relay process said {line:?}"))?
            .to_string();
        Ok(RelayProcess { url, child })
    }

    /// Resident memory, bytes.
    fn rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<u64>().ok())
            .map(|kb| kb * 1024)
            .unwrap_or(0)
    }

    /// CPU time used so far (user and system, all threads, exited ones included), seconds.
    fn cpu_seconds(&self) -> f64 {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        // Fields after the command name, which is in parentheses and may hold spaces.
        let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks: f64 = [11, 12]
            .iter()
            .filter_map(|i| fields.get(*i).and_then(|f| f.parse::<f64>().ok()))
            .sum();
        ticks / 100.0
    }
}

impl Drop for RelayProcess {
    fn drop(&mut self) {
        // SIGTERM, as a service manager stops it; SIGKILL if it does not stop in time.
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The release `meridian-relay` binary beside this one (`target/release/`), or the one
/// `MERIDIAN_RELAY_BIN` names. `./scripts/bench.sh` builds it first.
fn relay_binary() -> Result<std::path::PathBuf> {
    if let Some(path) = std::env::var_os("MERIDIAN_RELAY_BIN") {
        return Ok(path.into());
    }
    let exe = std::env::current_exe()?;
    // target/release/deps/suite-HASH → target/release/meridian-relay
    let binary = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(|release| release.join("meridian-relay"))
        .context("cannot tell the target directory from this binary's path")?;
    ensure!(
        binary.exists(),
        "the fan-out scenario runs the relay binary, and {} does not exist: build it with \
         `cargo build --release -p meridian-relay` (./scripts/bench.sh does), or set \
         MERIDIAN_RELAY_BIN",
        binary.display()
    );
    Ok(binary)
}

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A member's connection, authenticated and subscribed at the head of the log.
async fn connect(
    url: &str,
    workspace: Id,
    key: &SigningKey,
    register: Option<Register>,
) -> Result<Socket> {
    // Small buffers, as the relay's own, so 10,000 members fit in this process too.
    let config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0);
    let url = format!("{url}{}", meridian_relay::protocol::PATH);
    let (mut socket, _) =
        tokio_tungstenite::connect_async_with_config(url.as_str(), Some(config), true).await?;
    let public = key.verifying_key().to_bytes();
    send(
        &mut socket,
        &Frame::Hello {
            version: PROTOCOL_VERSION,
            workspace: workspace.0.to_vec(),
            key: public.to_vec(),
            deflate: false,
        },
    )
    .await?;
    let Frame::Challenge { nonce, relay } = receive(&mut socket).await? else {
        bail!("expected a challenge");
    };
    let signature = key.sign(&auth_message(&relay, &nonce, &workspace.0, &public));
    send(
        &mut socket,
        &Frame::Prove {
            signature: signature.to_bytes().to_vec(),
            register,
        },
    )
    .await?;
    let Frame::Welcome { head, .. } = receive(&mut socket).await? else {
        bail!("the relay did not admit a member");
    };
    send(&mut socket, &Frame::Subscribe { after: head }).await?;
    loop {
        if let Frame::CaughtUp { .. } = receive(&mut socket).await? {
            return Ok(socket);
        }
    }
}

async fn send(socket: &mut Socket, frame: &Frame) -> Result<()> {
    socket.send(Message::Binary(frame.encode().into())).await?;
    Ok(())
}

async fn receive(socket: &mut Socket) -> Result<Frame> {
    loop {
        match socket.next().await {
            Some(Ok(Message::Binary(bytes))) => return Ok(Frame::decode(&bytes)?),
            Some(Ok(Message::Close(_))) | None => bail!("the relay closed the connection"),
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(e.into()),
        }
    }
}

/// Members: device keys with the invite proofs that admit them.
struct Members {
    keys: Vec<SigningKey>,
    proofs: Vec<JoinProof>,
}

fn members(creator: &Node, workspace: Id, count: usize) -> Result<Members> {
    let (_, record) = creator.workspace(None)?;
    let mut keys = Vec::with_capacity(count);
    let mut proofs = Vec::with_capacity(count);
    for i in 0..count {
        let mut seed = [0u8; 32];
        seed[..8].copy_from_slice(&(i as u64 + 1).to_le_bytes());
        seed[8] = 0xfa;
        let key = SigningKey::from_bytes(&seed);
        let invite = Invite::new(
            creator.key(),
            workspace,
            &record.name,
            &record.key,
            &record.creator,
            vec![],
            now_ms() + 24 * 3_600_000,
        );
        proofs.push(invite.proof_for(&key.verifying_key())?);
        keys.push(key);
    }
    Ok(Members { keys, proofs })
}

/// What one fan-out run measured.
#[derive(Debug)]
struct FanOut {
    deliveries_per_second: f64,
    p50_ms: f64,
    p99_ms: f64,
    cpu_per_delivery_us: f64,
    idle_bytes_per_connection: f64,
    active_bytes_per_connection: f64,
    /// The CPU of one write(2) of a delivery's frame to a loopback socket, µs.
    write_floor_us: f64,
    /// Pushes paced to [`RATE`]: latency quantiles, ms, and relay CPU per delivery, µs.
    paced_p50_ms: f64,
    paced_p99_ms: f64,
    paced_cpu_per_delivery_us: f64,
    /// The floor under a paced push: one write(2) of the frame to each of many sockets whose
    /// readers wait in epoll, as members do: CPU per write, µs, and the time to write to
    /// every member, ms.
    spread_floor_us: f64,
    spread_round_ms: f64,
}

/// Pushes paced to [`RATE`] before the full-load ones.
const PACED: usize = 20;

/// The delivery rate, per second, at which the latency target holds.
const RATE: f64 = 100_000.0;

/// Scenario 2.
pub fn fan_out(settings: &Settings, rows: &mut Vec<Row>) -> Result<()> {
    let sizes: Vec<usize> = if settings.quick {
        vec![100, 1_000]
    } else {
        vec![1_000, 10_000]
    };
    let largest = *sizes.iter().max().unwrap_or(&1);
    let tmp = scratch("meridian-bench-fanout")?;
    let data = tmp.path().join("relay");
    let relay = RelayProcess::start(&data)?;
    let creator = Node::init(&tmp.path().join("creator"), &workload::profile("Ana"))?;
    let workspace = creator.create_workspace("fan-out", vec![relay.url.clone()])?;
    sync_round(&creator, workspace, &relay.url)?;
    let members = members(&creator, workspace, largest)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    // Every member registers once (a durable write on the relay each).
    let started = Instant::now();
    runtime.block_on(register_all(&relay.url, workspace, &members))?;
    eprintln!(
        "  registered {largest} members in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    drop(relay);
    let frame_bytes = entries_frame_len(&creator, workspace)?;
    for size in sizes {
        let pushes = (settings.fanout_deliveries / size).clamp(20, 2_000);
        let mut runs = Vec::new();
        for _ in 0..settings.fanout_runs {
            // A fresh relay process (same data, members stay registered) for each run: an
            // allocator keeps what it freed, so a second run in one process would weigh
            // its connections at nothing.
            let relay = RelayProcess::start(&data)?;
            let mut m =
                runtime.block_on(run(&relay, &creator, workspace, &members, size, pushes))?;
            // Measured in every run, under the same conditions as its deliveries.
            m.write_floor_us = tcp_write_floor(frame_bytes, 100_000)? * 1e6;
            let (per_write, per_round) = spread_write_floor(&runtime, frame_bytes, size)?;
            m.spread_floor_us = per_write * 1e6;
            m.spread_round_ms = per_round * 1e3;
            eprintln!("  {size} members, {pushes} pushes: {m:?}");
            runs.push(m);
        }
        let pick = |f: fn(&FanOut) -> f64| median(&runs.iter().map(f).collect::<Vec<_>>());
        let floor = pick(|m| m.write_floor_us) / 1e6;
        let row = |metric: String, unit, median, target| Row {
            scenario: FANOUT.into(),
            metric,
            unit,
            median,
            runs: runs.len(),
            baseline: None,
            target,
        };
        let name = format!("{size} members, {pushes} live pushes of one envelope");
        let big = size >= 10_000;
        rows.push(row(
            format!("{name}: deliveries per second"),
            "/s",
            pick(|m| m.deliveries_per_second),
            if big {
                Target::AtLeast(100_000.0)
            } else {
                Target::None
            },
        ));
        rows.push(row(
            format!("{name}: p50 latency, push to member"),
            "ms",
            pick(|m| m.p50_ms),
            Target::None,
        ));
        // However the relay is built, the last member of a push waits for a write to each
        // member before it, so no latency quantile near the top beats this.
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        let write_all = (
            format!("{size} writes at the loopback floor on all {cores} cores"),
            size as f64 * floor * 1e3 / cores,
        );
        rows.push(Row {
            baseline: Some(write_all),
            ..row(
                format!("{name}: p99 latency, push to member"),
                "ms",
                pick(|m| m.p99_ms),
                // Pushes come faster than 10,000 members can be written to on this machine,
                // so this is mostly queueing, and grows with the number of pushes: the
                // target is checked at its rate, on the paced row.
                Target::None,
            )
        });
        rows.push(Row {
            baseline: Some((
                format!(
                    "the CPU of one write(2) of the same {frame_bytes}-byte frame to a loopback TCP socket"
                ),
                floor * 1e6,
            )),
            ..row(
                format!("{name}: relay CPU per delivery"),
                "µs",
                pick(|m| m.cpu_per_delivery_us),
                Target::AtMost(2.0),
            )
        });
        let paced = format!(
            "{size} members, {PACED} pushes paced to {} deliveries/s",
            RATE as u64
        );
        rows.push(row(
            format!("{paced}: p50 latency, push to member"),
            "ms",
            pick(|m| m.paced_p50_ms),
            Target::None,
        ));
        rows.push(Row {
            baseline: Some((
                format!("one write(2) to each of the {size} members' sockets, readers in epoll"),
                pick(|m| m.spread_round_ms),
            )),
            ..row(
                format!("{paced}: p99 latency, push to member"),
                "ms",
                pick(|m| m.paced_p99_ms),
                if big {
                    Target::AtMost(10.0)
                } else {
                    Target::None
                },
            )
        });
        rows.push(Row {
            baseline: Some((
                "the CPU of one write(2) of that frame to each of many loopback sockets, readers in epoll".into(),
                pick(|m| m.spread_floor_us),
            )),
            ..row(
                format!("{paced}: relay CPU per delivery"),
                "µs",
                pick(|m| m.paced_cpu_per_delivery_us),
                Target::None,
            )
        });
        rows.push(row(
            format!("{size} members: relay memory per idle connection"),
            "KB",
            pick(|m| m.idle_bytes_per_connection) / 1000.0,
            Target::AtMost(8.0),
        ));
        rows.push(row(
            format!("{size} members: relay memory per active connection"),
            "KB",
            pick(|m| m.active_bytes_per_connection) / 1000.0,
            Target::None,
        ));
    }
    Ok(())
}

/// At most this many handshakes at once: members arriving at a steady pace. A burst (256
/// at once) makes the relay start many blocking threads for admissions, whose stacks and
/// allocator arenas add 3-5 KB to each connection measured.
const CONNECTING: usize = 16;

async fn register_all(url: &str, workspace: Id, members: &Members) -> Result<()> {
    let gate = Arc::new(tokio::sync::Semaphore::new(CONNECTING));
    let mut tasks = tokio::task::JoinSet::new();
    for (key, proof) in members.keys.iter().zip(&members.proofs) {
        let (url, key, proof, gate) = (url.to_string(), key.clone(), proof.clone(), gate.clone());
        tasks.spawn(async move {
            let _permit = gate.acquire_owned().await?;
            let mut socket = connect(&url, workspace, &key, Some(Register::Join(proof))).await?;
            socket.close(None).await?;
            Ok::<(), anyhow::Error>(())
        });
    }
    while let Some(result) = tasks.join_next().await {
        result??;
    }
    Ok(())
}

async fn run(
    relay: &RelayProcess,
    creator: &Node,
    workspace: Id,
    members: &Members,
    size: usize,
    pushes: usize,
) -> Result<FanOut> {
    // Connect `size` members, in two halves; each counts the entries it receives, noting
    // when. The relay is weighed after each half: the second half's growth is what a
    // connection costs, without what the first ones started (threads, caches).
    let epoch = Instant::now();
    let connected = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(tokio::sync::Semaphore::new(CONNECTING));
    let mut tasks = tokio::task::JoinSet::new();
    let deadline = Instant::now() + Duration::from_secs(300);
    let half = size / 2;
    let mut weighed = Vec::new();
    for (from, to) in [(0, half), (half, size)] {
        for key in &members.keys[from..to] {
            let (url, key) = (relay.url.clone(), key.clone());
            let (connected, gate) = (connected.clone(), gate.clone());
            tasks.spawn(async move {
                let socket = {
                    let _permit = gate.acquire_owned().await?;
                    connect(&url, workspace, &key, None).await?
                };
                connected.fetch_add(1, Ordering::SeqCst);
                count_arrivals(socket, epoch, PACED + pushes).await
            });
        }
        while connected.load(Ordering::SeqCst) < to {
            ensure!(Instant::now() < deadline, "members did not connect in time");
            if let Some(Some(Err(e))) = tasks.try_join_next().map(|r| r.ok()) {
                return Err(e.context("a member failed to connect"));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Let the relay settle, then weigh it.
        tokio::time::sleep(Duration::from_millis(500)).await;
        weighed.push(relay.rss());
    }
    let (half_rss, idle_rss) = (weighed[0], weighed[1]);
    let idle_per_connection = idle_rss.saturating_sub(half_rss) as f64 / (size - half) as f64;

    // The pusher: the creator's key on a connection of its own.
    let (_, record) = creator.workspace(None)?;
    let key: meridian::seal::WorkspaceKey = record.key.as_slice().try_into()?;
    let envelopes: Vec<Vec<u8>> = (0..PACED + pushes)
        .map(|i| {
            let plaintext = [i as u8; 150];
            meridian::seal::seal(creator.key(), &key, workspace, Id([3; 16]), &plaintext).encode()
        })
        .collect();
    let mut pusher = connect(&relay.url, workspace, creator.key(), None).await?;
    let sampling = Arc::new(AtomicBool::new(true));
    let peak = {
        let sampling = sampling.clone();
        let pid = relay.child.id();
        std::thread::spawn(move || {
            let mut peak = 0u64;
            while sampling.load(Ordering::SeqCst) {
                let status =
                    std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
                let rss = status
                    .lines()
                    .find(|l| l.starts_with("VmRSS:"))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|kb| kb.parse::<u64>().ok())
                    .unwrap_or(0)
                    * 1024;
                peak = peak.max(rss);
                std::thread::sleep(Duration::from_millis(25));
            }
            peak
        })
    };
    let mut sent: Vec<u32> = Vec::with_capacity(PACED + pushes);
    let mut envelopes = envelopes.into_iter().enumerate();
    // Paced: one push every `size / RATE` seconds, the members idle in between.
    let interval = Duration::from_secs_f64(size as f64 / RATE);
    let paced_cpu_before = relay.cpu_seconds();
    let mut tick = tokio::time::interval(interval);
    for (id, envelope) in envelopes.by_ref().take(PACED) {
        tick.tick().await;
        sent.push(epoch.elapsed().as_micros() as u32);
        push_one(&mut pusher, id, envelope).await?;
    }
    // Long enough for the last paced push to reach everyone (checked below).
    tokio::time::sleep(interval.max(Duration::from_millis(500))).await;
    let cpu_before = relay.cpu_seconds();
    let paced_cpu = cpu_before - paced_cpu_before;
    // Full load: each push as soon as the previous one was stored.
    for (id, envelope) in envelopes {
        sent.push(epoch.elapsed().as_micros() as u32);
        push_one(&mut pusher, id, envelope).await?;
    }
    let mut arrivals = Vec::with_capacity(size);
    while let Some(result) = tokio::time::timeout_at(deadline.into(), tasks.join_next())
        .await
        .map_err(|_| anyhow!("members did not receive every push in time"))?
    {
        arrivals.push(result??);
    }
    let cpu = relay.cpu_seconds() - cpu_before;
    sampling.store(false, Ordering::SeqCst);
    let peak_rss = peak
        .join()
        .map_err(|_| anyhow!("the memory sampler panicked"))?;
    drop(pusher);

    let mut paced: Vec<f64> = Vec::with_capacity(size * PACED);
    let mut latencies: Vec<f64> = Vec::with_capacity(size * pushes);
    let mut last = 0u32;
    let mut last_paced = 0u32;
    for member in &arrivals {
        for (k, at) in member.iter().enumerate() {
            let latency = at.saturating_sub(sent[k]) as f64 / 1000.0;
            if k < PACED {
                paced.push(latency);
                last_paced = last_paced.max(*at);
            } else {
                latencies.push(latency);
                last = last.max(*at);
            }
        }
    }
    ensure!(
        last_paced < sent[PACED],
        "the paced pushes were still arriving when the full load began: lengthen the pause"
    );
    let deliveries = latencies.len() as f64;
    let seconds = last.saturating_sub(sent[PACED]) as f64 / 1e6;
    Ok(FanOut {
        deliveries_per_second: deliveries / seconds,
        p50_ms: quantile(&mut latencies, 0.50),
        p99_ms: quantile(&mut latencies, 0.99),
        cpu_per_delivery_us: cpu * 1e6 / deliveries,
        idle_bytes_per_connection: idle_per_connection,
        // What a connection costs idle, and what pushing to it adds.
        active_bytes_per_connection: idle_per_connection
            + peak_rss.saturating_sub(idle_rss) as f64 / size as f64,
        write_floor_us: 0.0,
        paced_cpu_per_delivery_us: paced_cpu * 1e6 / paced.len() as f64,
        paced_p50_ms: quantile(&mut paced, 0.50),
        paced_p99_ms: quantile(&mut paced, 0.99),
        spread_floor_us: 0.0,
        spread_round_ms: 0.0,
    })
}

/// Pushes one envelope and waits until it is stored.
async fn push_one(pusher: &mut Socket, id: usize, envelope: Vec<u8>) -> Result<()> {
    send(
        pusher,
        &Frame::Push {
            id: id as u64,
            envelopes: vec![serde_bytes::ByteBuf::from(envelope)],
        },
    )
    .await?;
    loop {
        match receive(pusher).await? {
            Frame::Stored { .. } => return Ok(()),
            Frame::Entries { .. } | Frame::CaughtUp { .. } => continue,
            other => bail!("the relay answered a push with {}", other.name()),
        }
    }
}

/// A member's side of a run: the arrival time (µs since `epoch`) of each of `pushes`
/// entries.
async fn count_arrivals(mut socket: Socket, epoch: Instant, pushes: usize) -> Result<Vec<u32>> {
    let mut arrivals: Vec<u32> = Vec::with_capacity(pushes);
    let mut single = None;
    while arrivals.len() < pushes {
        let bytes = match socket.next().await {
            Some(Ok(Message::Binary(bytes))) => bytes,
            Some(Ok(Message::Close(_))) | None => bail!("the relay closed a member"),
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(e.into()),
        };
        let now = epoch.elapsed().as_micros() as u32;
        // A live push arrives as a frame of one entry, all of the same size; only a frame
        // of another size (a catch-up) is decoded to count its entries.
        let entries = if single == Some(bytes.len()) {
            1
        } else {
            match Frame::decode(&bytes)? {
                Frame::Entries { entries, .. } => {
                    if entries.len() == 1 {
                        single = Some(bytes.len());
                    }
                    entries.len()
                }
                _ => 0,
            }
        };
        arrivals.extend(std::iter::repeat_n(now, entries));
    }
    Ok(arrivals)
}

/// The size on the wire of a live delivery: an `Entries` frame of one envelope like the
/// pusher's, with its websocket header.
fn entries_frame_len(creator: &Node, workspace: Id) -> Result<usize> {
    let (_, record) = creator.workspace(None)?;
    let key: meridian::seal::WorkspaceKey = record.key.as_slice().try_into()?;
    let envelope =
        meridian::seal::seal(creator.key(), &key, workspace, Id([3; 16]), &[0; 150]).encode();
    let frame = Frame::Entries {
        entries: vec![(1_000, serde_bytes::ByteBuf::from(envelope))],
        up_to: 1_000,
    };
    Ok(frame.encode().len() + 4)
}

/// The floor under a delivery's CPU: a thread writing `frame` bytes `writes` times to a
/// loopback TCP socket (another thread reads them), CPU seconds of the writer per write.
/// On loopback the writer's system call also carries the receiving side's TCP work, as
/// the relay's do.
fn tcp_write_floor(frame: usize, writes: usize) -> Result<f64> {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let reader = std::thread::spawn(move || -> Result<u64> {
        let (mut socket, _) = listener.accept()?;
        let mut buffer = vec![0u8; 64 * 1024];
        let mut total = 0u64;
        loop {
            match socket.read(&mut buffer)? {
                0 => return Ok(total),
                n => total += n as u64,
            }
        }
    });
    let writer = std::thread::spawn(move || -> Result<f64> {
        let mut socket = std::net::TcpStream::connect(addr)?;
        socket.set_nodelay(true)?;
        let bytes = vec![0x5a; frame];
        let before = thread_cpu()?;
        for _ in 0..writes {
            socket.write_all(&bytes)?;
        }
        Ok((thread_cpu()? - before) / writes as f64)
    });
    let per_write = writer
        .join()
        .map_err(|_| anyhow!("the writer panicked"))??;
    let read = reader
        .join()
        .map_err(|_| anyhow!("the reader panicked"))??;
    ensure!(read == (frame * writes) as u64, "the floor lost bytes");
    Ok(per_write)
}

/// The floor under one paced push: a thread writes `frame` bytes once to each of `members`
/// loopback sockets, per round, whose readers are tasks of `runtime` waiting in epoll
/// between rounds, as the members are. Returns the writer's CPU seconds per write and the
/// seconds one round takes. At most 4,000 sockets are opened (both ends live in this
/// process, beside the members'); the round time is scaled to `members`.
fn spread_write_floor(
    runtime: &tokio::runtime::Runtime,
    frame: usize,
    members: usize,
) -> Result<(f64, f64)> {
    use std::io::Write;
    use tokio::io::AsyncReadExt;
    const ROUNDS: usize = 10;
    let sockets = members.min(4_000);
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let addr = listener.local_addr()?;
    let readers = runtime.spawn(async move {
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..sockets {
            let (mut socket, _) = listener.accept().await?;
            tasks.spawn(async move {
                let mut buffer = vec![0u8; 4096];
                let mut left = frame * ROUNDS;
                while left > 0 {
                    match socket.read(&mut buffer).await? {
                        0 => bail!("the floor's writer closed early"),
                        n => left = left.saturating_sub(n),
                    }
                }
                Ok::<(), anyhow::Error>(())
            });
        }
        while let Some(result) = tasks.join_next().await {
            result??;
        }
        Ok::<(), anyhow::Error>(())
    });
    // One connection at a time, so the listener's backlog never overflows.
    let mut streams = Vec::with_capacity(sockets);
    for _ in 0..sockets {
        let socket = std::net::TcpStream::connect(addr)?;
        socket.set_nodelay(true)?;
        streams.push(socket);
    }
    let writer = std::thread::spawn(move || -> Result<(f64, f64)> {
        let bytes = vec![0x5a; frame];
        let mut cpu = 0.0;
        let mut wall = 0.0;
        for _ in 0..ROUNDS {
            // Readers go back to waiting, as members do between pushes.
            std::thread::sleep(Duration::from_millis(50));
            let (before, started) = (thread_cpu()?, Instant::now());
            for socket in &mut streams {
                socket.write_all(&bytes)?;
            }
            wall += started.elapsed().as_secs_f64();
            cpu += thread_cpu()? - before;
        }
        let writes = (ROUNDS * sockets) as f64;
        Ok((cpu / writes, wall / writes * members as f64))
    });
    let floor = writer
        .join()
        .map_err(|_| anyhow!("the floor's writer panicked"))??;
    runtime.block_on(readers)??;
    Ok(floor)
}

/// CPU time of the calling thread, seconds.
fn thread_cpu() -> Result<f64> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat")?;
    let ns: u64 = stat
        .split_whitespace()
        .next()
        .and_then(|f| f.parse().ok())
        .context("schedstat is unreadable")?;
    Ok(ns as f64 / 1e9)
}

/// A quantile by nearest rank (sorts the samples).
fn quantile(samples: &mut [f64], q: f64) -> f64 {
    samples.sort_by(f64::total_cmp);
    let rank = ((q * samples.len() as f64).ceil() as usize).clamp(1, samples.len());
    samples[rank - 1]
}
