//! The `meridian-relay` binary under abuse, its memory read from `/proc`: thousands of
//! connections that never finish the handshake, slow consumers that subscribe and never
//! read while a member pushes a lot, reconnect storms and oversized messages.
//!
//! Throughout, a probe member pushes a small envelope every 20 ms and another member must
//! receive each one: push → delivery latency is measured. The relay's resident memory,
//! sampled every 10 ms, must stay inside the budget [`budget_kib`] derives from its
//! configuration. Each abuse comes in two waves: between them the relay's open files come
//! back to what they were, and the second wave must not need more memory than the first
//! (freed memory is reused, nothing accumulates; glibc keeps freed memory in its arenas, so
//! resident memory does not fall back to the baseline).
//!
//! `MERIDIAN_ABUSE_SCALE` multiplies the abuse (1 in CI).

mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use meridian_relay::Envelope;
use meridian_relay::protocol::{Frame, PROTOCOL_VERSION};
use meridian_relay::server::{Config, HANDSHAKE_BYTES, LIVE_FRAME_BYTES, SEND_BATCH_BYTES};
use support::{Device, FAR, RelayProcess, Socket, figure, handshake, join, next, push, send};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

/// One relay's memory and latency at a time: the tests run one after another.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn scale() -> usize {
    std::env::var("MERIDIAN_ABUSE_SCALE")
        .ok()
        .map(|v| v.parse().expect("MERIDIAN_ABUSE_SCALE is a number"))
        .unwrap_or(1)
}

/// A relay with a workspace its creator registered.
struct Setup {
    relay: RelayProcess,
    ws: [u8; 16],
    creator: Device,
    _dir: tempfile::TempDir,
}

async fn setup(config: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let relay = RelayProcess::start(dir.path(), config);
    let creator = Device::new(7);
    let (ws, register) = creator.workspace([3; 16]);
    let (_, answer) = handshake(&relay.url(), &creator, ws, Some(register)).await;
    assert!(matches!(answer, Frame::Welcome { .. }), "{answer:?}");
    Setup {
        relay,
        ws,
        creator,
        _dir: dir,
    }
}

impl Setup {
    /// Member `n` (device seed 1000 + n), admitted with an invite on its first connection.
    async fn member(&self, n: u64) -> (Device, Socket) {
        let device = Device::new(1000 + n);
        let register = join(&self.creator, self.ws, &device, FAR, 50_000 + n);
        let (socket, answer) = handshake(&self.relay.url(), &device, self.ws, register).await;
        assert!(matches!(answer, Frame::Welcome { .. }), "{answer:?}");
        (device, socket)
    }

    fn rss_kib(&self) -> u64 {
        self.relay.memory_kib().0
    }
}

/// Subscribes from `after` and reads until caught up.
async fn subscribe(socket: &mut Socket, after: u64) {
    send(socket, &Frame::Subscribe { after }).await;
    loop {
        match next(socket).await {
            Some(Frame::CaughtUp { .. }) => return,
            Some(Frame::Entries { .. }) => continue,
            other => panic!("expected entries, got {other:?}"),
        }
    }
}

/// A member pushing a small envelope every 20 ms and another receiving them.
struct Probe {
    stop: Arc<AtomicBool>,
    done: Arc<tokio::sync::Notify>,
    pusher: JoinHandle<u64>,
    reader: JoinHandle<Vec<Duration>>,
    received: Arc<AtomicU64>,
}

/// Probe envelopes carry their number above this in their nonce.
const PROBE: u64 = 1 << 60;

async fn probe(setup: &Setup) -> Probe {
    let (writer, mut out) = setup.member(900_001).await;
    let (_, mut reader) = setup.member(900_002).await;
    subscribe(&mut reader, 0).await;
    let sent: Arc<std::sync::Mutex<HashMap<u64, Instant>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let received = Arc::new(AtomicU64::new(0));
    let done = Arc::new(tokio::sync::Notify::new());
    let ws = setup.ws;
    let pusher = {
        let (sent, stop) = (sent.clone(), stop.clone());
        tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let envelope = writer.envelope(ws, PROBE + n, 200);
                sent.lock().unwrap().insert(PROBE + n, Instant::now());
                match push(&mut out, n, &[envelope]).await {
                    Some(Frame::Stored { id, .. }) if id == n => {}
                    other => panic!("the probe's push was not stored: {other:?}"),
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            n
        })
    };
    let reader = {
        let (received, done) = (received.clone(), done.clone());
        tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let frame = tokio::select! {
                    frame = next(&mut reader) => frame.expect("the probe's reader stays connected"),
                    _ = done.notified() => break,
                };
                let Frame::Entries { entries, .. } = frame else {
                    continue;
                };
                for (_, bytes) in entries {
                    let envelope = Envelope::decode(&bytes).unwrap();
                    let nonce = u64::from_le_bytes(envelope.nonce[..8].try_into().unwrap());
                    if let Some(at) = sent.lock().unwrap().remove(&nonce) {
                        latencies.push(at.elapsed());
                        received.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            latencies
        })
    };
    Probe {
        stop,
        done,
        pusher,
        reader,
        received,
    }
}

impl Probe {
    /// Stops pushing, waits for the last deliveries, and reports the latencies under `name`.
    async fn finish(self, name: &str) -> Vec<Duration> {
        self.stop.store(true, Ordering::Relaxed);
        let pushed = self.pusher.await.expect("the probe's pusher");
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.received.load(Ordering::Relaxed) < pushed && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let received = self.received.load(Ordering::Relaxed);
        assert_eq!(
            received, pushed,
            "{name}: the member received {received} of the {pushed} probe pushes"
        );
        self.done.notify_one();
        let mut latencies = self.reader.await.expect("the probe's reader");
        latencies.sort();
        let at = |q: f64| {
            latencies
                .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
                .copied()
                .unwrap_or_default()
        };
        figure(&format!("abuse.{name}.member_pushes"), pushed);
        figure(
            &format!("abuse.{name}.member_latency_ms.p50"),
            at(0.5).as_millis(),
        );
        figure(
            &format!("abuse.{name}.member_latency_ms.p99"),
            at(0.99).as_millis(),
        );
        figure(
            &format!("abuse.{name}.member_latency_ms.max"),
            at(1.0).as_millis(),
        );
        latencies
    }
}

/// What the relay may hold resident, KiB: what it held before the abuse (`base`), plus its
/// database cache, plus per open connection 16 KiB (measured: about 9 KiB for a connection
/// in its handshake) and the [`HANDSHAKE_BYTES`] a stranger can make it read, plus per
/// connection that stops reading three times [`SEND_BATCH_BYTES`] (the frame it cannot
/// deliver, its copy in the websocket's buffer and what the allocator keeps: about 640 KiB
/// measured), plus the workspace's live buffer, plus 16 MiB for pushes in flight and the
/// runtime (a member pushing 1 MiB frames back to back: about 11 MiB measured).
fn budget_kib(base: u64, config: &Config, connections: usize, stalled: usize) -> u64 {
    let kib = |bytes: usize| bytes as u64 / 1024;
    base + config.cache_mb as u64 * 1024
        + connections as u64 * (16 + kib(HANDSHAKE_BYTES))
        + stalled as u64 * kib(3 * SEND_BATCH_BYTES)
        + config.live_batches as u64 * kib(LIVE_FRAME_BYTES)
        + 16 * 1024
}

/// The relay's highest resident memory while a wave of abuse runs, sampled every 10 ms.
struct Sampler {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<u64>,
}

impl Sampler {
    fn start(pid: u32) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut peak = 0;
                while !stop.load(Ordering::Relaxed) {
                    peak = peak.max(support::memory_kib(pid).0);
                    std::thread::sleep(Duration::from_millis(10));
                }
                peak.max(support::memory_kib(pid).0)
            })
        };
        Sampler { stop, thread }
    }

    fn peak_kib(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("the sampler")
    }
}

/// Polls until the relay holds at most `files` open files; fails after `limit`.
async fn settles(relay: &RelayProcess, files: usize, limit: Duration, what: &str) {
    let deadline = Instant::now() + limit;
    loop {
        let open = relay.open_files();
        if open <= files {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: the relay still holds {open} files after {limit:?} (at most {files} expected)"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs two waves of `abuse` (given the wave's number, it returns how many connections it
/// opened and how many of them stop reading), checking memory against the budget during each and that the
/// relay's files come back after each; reports figures under `name`.
async fn waves<F, Fut>(setup: &Setup, config: &Config, name: &str, mut abuse: F)
where
    F: FnMut(u32) -> Fut,
    Fut: std::future::Future<Output = (usize, usize)>,
{
    let probe = probe(setup).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (files, base) = (setup.relay.open_files(), setup.rss_kib());
    let mut peaks = Vec::new();
    for wave in 1..=2 {
        let sampler = Sampler::start(setup.relay.pid());
        let (connections, stalled) = abuse(wave).await;
        let peak = sampler.peak_kib();
        let budget = budget_kib(base, config, connections, stalled);
        eprintln!(
            "{name} wave {wave}: {connections} connections ({stalled} stalled): RSS {base} KiB before, peak {peak} KiB, budget {budget} KiB"
        );
        assert!(
            peak <= budget,
            "{name} wave {wave}: the relay held {peak} KiB, over its budget of {budget} KiB"
        );
        if wave == 1 {
            figure(&format!("abuse.{name}.budget_mb"), budget / 1024);
        }
        settles(
            &setup.relay,
            files + 2,
            Duration::from_secs(20),
            &format!("{name} wave {wave}"),
        )
        .await;
        peaks.push(peak);
    }
    let after = setup.rss_kib();
    figure(&format!("abuse.{name}.rss_mb.base"), base / 1024);
    figure(&format!("abuse.{name}.rss_mb.peak"), peaks[0] / 1024);
    figure(
        &format!("abuse.{name}.rss_mb.peak_second_wave"),
        peaks[1] / 1024,
    );
    figure(&format!("abuse.{name}.rss_mb.after"), after / 1024);
    assert!(
        peaks[1] <= peaks[0] + peaks[0] / 4 + 4096,
        "{name}: the second wave took more memory ({} KiB) than the first ({} KiB): something accumulates",
        peaks[1],
        peaks[0]
    );
    let latencies = probe.finish(name).await;
    let slowest = latencies.last().copied().unwrap_or_default();
    assert!(
        slowest < Duration::from_secs(2),
        "{name}: a member's push took {slowest:?} to reach another member"
    );
    // And it serves as before: a member connects, pushes and is stored.
    let (member, mut socket) = setup.member(777_000).await;
    let envelope = member.envelope(setup.ws, 1, 100);
    assert!(
        matches!(
            push(&mut socket, 1, &[envelope]).await,
            Some(Frame::Stored { .. })
        ),
        "{name}: the relay does not serve after the abuse"
    );
}

fn config(toml: &str) -> Config {
    toml::from_str(toml).expect("a valid relay config")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_that_never_finish_the_handshake() {
    let _serial = SERIAL.lock().await;
    let toml = "handshake_timeout_secs = 4\n";
    let setup = setup(toml).await;
    let n = 5000 * scale();
    figure("abuse.idle_connections", n);
    let addr = setup.relay.addr.clone();
    let ws = setup.ws;
    let relay = &setup.relay;
    waves(&setup, &config(toml), "idle", |_| {
        let addr = addr.clone();
        async move {
            let base = relay.open_files();
            let mut silent = Vec::new();
            let mut upgraded = Vec::new();
            for i in 0..n {
                let mut tcp = TcpStream::connect(&addr).await.expect("the relay accepts");
                match i % 4 {
                    // TCP only; and half an HTTP request.
                    0 => {}
                    1 => tcp
                        .write_all(b"GET /v1 HTTP/1.1\r\nHost: relay\r\nUpgrade: websocket\r\n")
                        .await
                        .unwrap(),
                    // A websocket that never says Hello; one that never proves.
                    _ => {
                        let (mut socket, _) = tokio_tungstenite::client_async(
                            format!("ws://{addr}/v1"),
                            tokio_tungstenite::MaybeTlsStream::Plain(tcp),
                        )
                        .await
                        .expect("the upgrade");
                        if i % 4 == 3 {
                            send(
                                &mut socket,
                                &Frame::Hello {
                                    version: PROTOCOL_VERSION,
                                    workspace: ws.to_vec(),
                                    key: Device::new(i as u64).public().to_vec(),
                                    deflate: false,
                                },
                            )
                            .await;
                        }
                        upgraded.push(socket);
                        continue;
                    }
                }
                silent.push(tcp);
            }
            // Every connection is open at once.
            let held = relay.open_files();
            assert!(held >= base + n * 9 / 10, "the relay holds {held} files");
            // The relay cuts them off at the handshake timeout.
            tokio::time::sleep(Duration::from_secs(5)).await;
            drop((silent, upgraded));
            (n, 0)
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_consumers_while_a_member_pushes_a_lot() {
    let _serial = SERIAL.lock().await;
    let toml = "send_timeout_secs = 3\n";
    let setup = setup(toml).await;
    let slow = 100 * scale();
    figure("abuse.slow_consumers", slow);
    let setup_ref = &setup;
    waves(&setup, &config(toml), "slow", |wave| {
        let first = u64::from(wave) * 1_000_000;
        async move {
            let mut sleepers = Vec::new();
            for i in 0..slow as u64 {
                let (_, mut socket) = setup_ref.member(first + i).await;
                send(&mut socket, &Frame::Subscribe { after: 0 }).await;
                sleepers.push(socket);
            }
            let (bulk, mut out) = setup_ref.member(first + 900_003).await;
            let started = Instant::now();
            let mut nonce = first << 20;
            let mut pushed = 0;
            while started.elapsed() < Duration::from_secs(4) {
                // Pushes as large as a node makes them: 1000 envelopes, about 1 MiB.
                let envelopes: Vec<Envelope> = (0..1000)
                    .map(|_| {
                        nonce += 1;
                        bulk.envelope(setup_ref.ws, nonce, 1024)
                    })
                    .collect();
                match push(&mut out, nonce, &envelopes).await {
                    Some(Frame::Stored { .. }) => pushed += 1000,
                    other => panic!("the bulk push was not stored: {other:?}"),
                }
            }
            if wave == 1 {
                figure("abuse.slow.envelopes_pushed", pushed);
            }
            // The relay disconnects the sleepers at the send timeout.
            tokio::time::sleep(Duration::from_secs(4)).await;
            drop(sleepers);
            (slow + 1, slow)
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_storms_and_oversized_messages() {
    let _serial = SERIAL.lock().await;
    let setup = setup("").await;
    for i in 0..16 {
        setup.member(i).await;
    }
    let storms = 32 * scale();
    let oversized = 20 * scale();
    let setup_ref = &setup;
    waves(&setup, &Config::default(), "storm", |wave| async move {
        // A reconnect storm: members connect, catch up and leave, over and over.
        let storm = Duration::from_secs(3);
        let handshakes = Arc::new(AtomicU64::new(0));
        let tasks: Vec<JoinHandle<()>> = (0..storms)
            .map(|i| {
                let url = setup_ref.relay.url();
                let ws = setup_ref.ws;
                let handshakes = handshakes.clone();
                tokio::spawn(async move {
                    let device = Device::new(1000 + (i % 16) as u64);
                    let started = Instant::now();
                    while started.elapsed() < storm {
                        let (mut socket, answer) = handshake(&url, &device, ws, None).await;
                        let Frame::Welcome { head, .. } = answer else {
                            panic!("a member was refused: {answer:?}");
                        };
                        subscribe(&mut socket, head).await;
                        handshakes.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        let count = handshakes.load(Ordering::Relaxed);
        if wave == 1 {
            figure("abuse.storm.handshakes_per_s", count / storm.as_secs());
        }

        // Oversized messages: strangers sending 8 MiB before authenticating (the relay reads
        // HANDSHAKE_BYTES of it), and a member sending more than the frame limit.
        let mut tasks = Vec::new();
        for _ in 0..oversized {
            let url = setup_ref.relay.url();
            tasks.push(tokio::spawn(async move {
                let (mut socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
                let _ = socket
                    .send(Message::Binary(vec![0u8; 8 << 20].into()))
                    .await;
                while let Some(Ok(_)) = socket.next().await {}
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        let (_, mut member) = setup_ref.member(3).await;
        let _ = member
            .send(Message::Binary(vec![0u8; 16 << 20].into()))
            .await;
        while let Some(Ok(_)) = member.next().await {}
        (storms + oversized + 1, 0)
    })
    .await;
}
