//! The websocket server: authenticates devices, appends their pushes to the workspace log
//! and forwards new entries to every connected member.
//!
//! One task per connection, one writer thread and one fan-out thread for the whole relay.
//! Pushes from every connection queue up for the writer, which commits whatever has
//! gathered in one durable transaction (one fsync) and only then answers and forwards, so
//! nothing is acknowledged or forwarded before it is on disk. Forwarding encodes a commit's
//! `Entries` frame once and hands it to the fan-out thread, which writes it to each member's
//! socket without waking the member's task (`server/outgoing.rs`); a member whose socket does not
//! take it at once has it queued, and one further behind reads the log instead, so a slow
//! reader costs the relay nothing but its own socket, and a reader that does not drain its
//! socket within `send_timeout` is disconnected.
//!
//! Memory is bounded per connection: before authentication a client can make the relay
//! read at most [`HANDSHAKE_BYTES`]; afterwards a reader pins at most one frame of
//! [`SEND_BATCH_BYTES`] (or one larger envelope) while it does not read, or as many bytes of
//! live frames shared with the other members; the fan-out holds at most `live_batches`
//! frames of [`LIVE_FRAME_BYTES`] per workspace.

mod outgoing;

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc as std_mpsc};
use std::task::{Context as TaskContext, Poll, ready};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use futures_util::StreamExt;
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc, oneshot, watch};
use tokio::task::JoinSet;
use tokio::time::timeout;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tracing::{debug, info, warn};

use crate::handling;
use crate::metrics::Metrics;
use crate::protocol::{
    Frame, MAX_BATCH_ENTRIES, MAX_FRAME_BYTES, PushResult, RefusedCode, VouchResult, Vouchee,
};
use crate::store::{self, CatchUp, Incoming, Recovery, RelayStore};
use outgoing::{Batch, Opened, Outgoing, SlowReader, binary_message};

type Ws = [u8; 16];
type Key = [u8; 32];
type Socket = WebSocketStream<Inbound>;

/// The most bytes a client may send before it is authenticated: the websocket upgrade,
/// `Hello` and `Prove` take well under a kilobyte.
pub const HANDSHAKE_BYTES: usize = 16 << 10;

/// The most envelope bytes the relay puts in one `Entries` frame (a larger envelope goes
/// alone): what a reader that stopped reading pins in the relay's memory, besides its socket.
pub const SEND_BATCH_BYTES: usize = 256 << 10;

/// The largest frame of new entries the fan-out writes to members; larger commits are read
/// from the log by each receiver.
pub const LIVE_FRAME_BYTES: usize = 64 << 10;

/// Limits and timeouts of a relay. Every field has a default; a config file sets any of them.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Most open connections; more are closed as soon as they are accepted.
    pub max_connections: usize,
    /// Most authenticated connections to one workspace.
    pub max_per_workspace: usize,
    /// Most authenticated connections of one device to one workspace.
    pub max_per_device: usize,
    /// Seconds a client has to finish the websocket upgrade and the authentication.
    pub handshake_timeout_secs: u64,
    /// Seconds one frame may take to leave; a client that reads slower is disconnected.
    pub send_timeout_secs: u64,
    /// Largest frame accepted, bytes.
    pub max_frame_bytes: usize,
    /// Committed batches of new entries waiting for the fan-out (all workspaces) before the
    /// writer waits for it; a connection the fan-out cannot write to reads the log instead.
    pub live_batches: usize,
    /// How the database commits and recovers from a crash.
    pub recovery: Recovery,
    /// Memory for the database's page cache, MiB.
    pub cache_mb: usize,
    /// Seconds between websocket pings to an authenticated client (0: none). A client that
    /// sends nothing, pongs included, for two intervals is disconnected as dead; the pings
    /// also keep proxies that cut idle connections from cutting idle members.
    pub ping_interval_secs: u64,
    /// Seconds over which shutdown spreads telling members to reconnect elsewhere.
    pub drain_secs: u64,
    /// TLS on the websocket port, when no proxy terminates it: `[tls] cert = FILE,
    /// key = FILE` (PEM; SIGHUP reloads both).
    pub tls: Option<TlsFiles>,
}

/// A certificate chain and its private key, PEM files.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// The certificate chain, the server's first.
    pub cert: std::path::PathBuf,
    /// Its private key.
    pub key: std::path::PathBuf,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_connections: 20_000,
            max_per_workspace: 10_000,
            max_per_device: 8,
            handshake_timeout_secs: 10,
            send_timeout_secs: 30,
            max_frame_bytes: MAX_FRAME_BYTES,
            live_batches: 256,
            recovery: Recovery::default(),
            cache_mb: store::Options::default().cache_bytes >> 20,
            ping_interval_secs: 25,
            drain_secs: 5,
            tls: None,
        }
    }
}

/// One key of the relay's config file: its name, its value in this config, its unit and
/// what it limits. The help of `serve --config` and `config --print-default` are made from
/// these, so they name every key with its default.
#[derive(Clone, Debug)]
pub struct Setting {
    /// The key.
    pub key: &'static str,
    /// The value, as TOML.
    pub value: String,
    /// The unit (`connections`, `seconds`, `bytes`, `MiB`, …).
    pub unit: &'static str,
    /// What it does.
    pub about: &'static str,
}

impl Config {
    /// Every key of the config file, with this config's values.
    pub fn settings(&self) -> Vec<Setting> {
        let n = |v: usize| v.to_string();
        vec![
            Setting {
                key: "max_connections",
                value: n(self.max_connections),
                unit: "connections",
                about: "most open connections; more are closed as soon as they are accepted",
            },
            Setting {
                key: "max_per_workspace",
                value: n(self.max_per_workspace),
                unit: "connections",
                about: "most authenticated connections to one workspace",
            },
            Setting {
                key: "max_per_device",
                value: n(self.max_per_device),
                unit: "connections",
                about: "most connections of one device to one workspace",
            },
            Setting {
                key: "handshake_timeout_secs",
                value: self.handshake_timeout_secs.to_string(),
                unit: "seconds",
                about: "time a client has to upgrade to websocket and authenticate",
            },
            Setting {
                key: "send_timeout_secs",
                value: self.send_timeout_secs.to_string(),
                unit: "seconds",
                about: "time one frame may take to leave; a slower reader is disconnected",
            },
            Setting {
                key: "max_frame_bytes",
                value: n(self.max_frame_bytes),
                unit: "bytes",
                about: "largest frame accepted",
            },
            Setting {
                key: "live_batches",
                value: n(self.live_batches),
                unit: "batches",
                about: "committed batches waiting for the fan-out before the writer waits",
            },
            Setting {
                key: "recovery",
                value: format!("\"{}\"", self.recovery.name()),
                unit: "quick | two-phase | full",
                about: "how the database commits, and so what reopening it after a crash costs",
            },
            Setting {
                key: "cache_mb",
                value: n(self.cache_mb),
                unit: "MiB",
                about: "memory for the database's page cache",
            },
            Setting {
                key: "ping_interval_secs",
                value: self.ping_interval_secs.to_string(),
                unit: "seconds",
                about: "time between pings to a member (0: none); one silent for two is dropped",
            },
            Setting {
                key: "drain_secs",
                value: self.drain_secs.to_string(),
                unit: "seconds",
                about: "time over which shutdown spreads telling members to reconnect",
            },
        ]
    }

    /// A config file that sets every key to this config's value, each with a comment
    /// saying what it does: what `meridian-relay config --print-default` prints.
    pub fn commented(&self) -> String {
        let mut text = String::from(
            "# meridian-relay config: pass it with `meridian-relay serve --config FILE`.\n\
             # Every key is optional; a key left out keeps the value shown here.\n",
        );
        for setting in self.settings() {
            let mut about = setting.about.chars();
            let first = about.next().map(|c| c.to_ascii_uppercase());
            text.push_str(&format!(
                "\n# {}{} ({}).\n{} = {}\n",
                first.unwrap_or_default(),
                about.as_str(),
                setting.unit,
                setting.key,
                setting.value
            ));
        }
        text.push_str(
            "\n# TLS on the websocket port, when no reverse proxy terminates it (PEM files; SIGHUP\n\
             # reloads them without dropping connections). Or --tls-cert and --tls-key.\n\
             # [tls]\n\
             # cert = \"/etc/meridian-relay/fullchain.pem\"\n\
             # key = \"/etc/meridian-relay/privkey.pem\"\n",
        );
        text
    }

    /// How the relay opens its database.
    pub fn store(&self) -> store::Options {
        store::Options {
            recovery: self.recovery,
            cache_bytes: self.cache_mb.saturating_mul(1 << 20),
        }
    }

    fn websocket(&self) -> WebSocketConfig {
        // Small buffers: tungstenite's defaults cost about 140 KB per idle connection. The
        // read buffer is allocated and zeroed for the life of the connection: at 1 KB an idle
        // connection costs about 5 KB, at 4 KB about 8 (benches/suite, fan-out). A large push
        // is read in more system calls, which its durable commit dwarfs.
        WebSocketConfig::default()
            .read_buffer_size(1024)
            .write_buffer_size(0)
            .max_write_buffer_size(self.max_frame_bytes.saturating_mul(2))
            .max_message_size(Some(self.max_frame_bytes))
            .max_frame_size(Some(self.max_frame_bytes))
    }
}

/// A client sent more than [`HANDSHAKE_BYTES`] before authenticating.
#[derive(Debug, thiserror::Error)]
#[error(
    "a client may send at most {HANDSHAKE_BYTES} bytes before it is authenticated: Hello and Prove are far smaller"
)]
struct HandshakeTooLong;

impl HandshakeTooLong {
    /// Whether `error` (from reading a frame) is this one.
    fn caused(error: &anyhow::Error) -> bool {
        error.chain().any(|cause| {
            let io = match cause.downcast_ref::<tokio_tungstenite::tungstenite::Error>() {
                Some(tokio_tungstenite::tungstenite::Error::Io(io)) => Some(io),
                _ => cause.downcast_ref::<std::io::Error>(),
            };
            io.and_then(|io| io.get_ref())
                .is_some_and(|inner| inner.is::<HandshakeTooLong>())
        })
    }
}

/// A client's TCP stream as the websocket sees it. Reads take at most [`HANDSHAKE_BYTES`]
/// until the client is authenticated: a stranger cannot make the relay buffer a message of
/// `max_frame_bytes`. Writes go through the connection's [`Outgoing`], after anything the
/// relay queued there.
struct Inbound {
    tcp: OwnedReadHalf,
    /// Bytes the client may still send; `usize::MAX` once authenticated.
    allowance: Arc<AtomicUsize>,
    outgoing: Arc<Outgoing>,
    /// The connection is TLS: what is read is opened by the `Outgoing`'s TLS session.
    tls: bool,
    /// Plaintext TLS opened that the websocket has not read yet.
    plain: Vec<u8>,
    /// The TLS peer sent close_notify.
    closed: bool,
    /// When a byte last arrived (pongs and the middle of a long frame included).
    heard: Heard,
}

/// When a connection last received anything, shared by its reader and its task: a client
/// in the middle of uploading a large frame is alive, though no message has ended yet.
#[derive(Clone, Debug)]
struct Heard(Arc<AtomicU64>);

impl Heard {
    fn new() -> Heard {
        let heard = Heard(Arc::new(AtomicU64::new(0)));
        heard.mark();
        heard
    }

    /// Microseconds since the relay's first connection, for comparisons only.
    fn clock() -> u64 {
        static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
        let start = START.get_or_init(std::time::Instant::now);
        u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    fn mark(&self) {
        self.0.store(Heard::clock(), Ordering::Relaxed);
    }

    /// Whether anything arrived at or after `stamp` (a [`Heard::clock`] reading).
    fn since(&self, stamp: u64) -> bool {
        self.0.load(Ordering::Relaxed) >= stamp
    }
}

impl Inbound {
    /// [`AsyncRead::poll_read`] through TLS: records read from the socket (within the
    /// allowance) are opened under the `Outgoing`'s lock, whose TLS session also answers the
    /// handshake.
    fn poll_read_tls(
        &mut self,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        loop {
            if !self.plain.is_empty() {
                let n = self.plain.len().min(buf.remaining());
                buf.put_slice(&self.plain[..n]);
                self.plain.drain(..n);
                if self.plain.is_empty() {
                    // An idle connection keeps no buffer.
                    self.plain = Vec::new();
                }
                return Poll::Ready(Ok(()));
            }
            if self.closed {
                return Poll::Ready(Ok(()));
            }
            {
                let mut state = self.outgoing.lock();
                self.closed = state.read_plaintext(&mut self.plain)? == Opened::Closed;
                if !self.plain.is_empty() || self.closed {
                    continue;
                }
                // Handshake bytes the socket did not take at once are written as it drains.
                if let Poll::Ready(Err(e)) = state.poll_drain(cx) {
                    return Poll::Ready(Err(e));
                }
            }
            let allowance = self.allowance.load(Ordering::Relaxed);
            if allowance == 0 {
                return Poll::Ready(Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    HandshakeTooLong,
                )));
            }
            let mut chunk = [0u8; 16 << 10];
            let limit = allowance.min(chunk.len());
            let mut records = ReadBuf::new(&mut chunk[..limit]);
            ready!(Pin::new(&mut self.tcp).poll_read(cx, &mut records))?;
            let read = records.filled();
            if read.is_empty() {
                return Poll::Ready(Ok(()));
            }
            self.heard.mark();
            if allowance != usize::MAX {
                self.allowance
                    .store(allowance - read.len(), Ordering::Relaxed);
            }
            self.closed = self.outgoing.lock().open_tls(read, &mut self.plain)? == Opened::Closed;
        }
    }
}

impl AsyncRead for Inbound {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if this.tls {
            return this.poll_read_tls(cx, buf);
        }
        let allowance = this.allowance.load(Ordering::Relaxed);
        if allowance == usize::MAX {
            let before = buf.filled().len();
            ready!(Pin::new(&mut this.tcp).poll_read(cx, buf))?;
            if buf.filled().len() > before {
                this.heard.mark();
            }
            return Poll::Ready(Ok(()));
        }
        if allowance == 0 {
            return Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                HandshakeTooLong,
            )));
        }
        // Reading through a small buffer keeps this free of unsafe code; it only runs for
        // the few hundred bytes of a handshake.
        let mut chunk = [0u8; 4096];
        let limit = allowance.min(buf.remaining()).min(chunk.len());
        let mut limited = ReadBuf::new(&mut chunk[..limit]);
        ready!(Pin::new(&mut this.tcp).poll_read(cx, &mut limited))?;
        let read = limited.filled();
        buf.put_slice(read);
        this.allowance
            .store(allowance - read.len(), Ordering::Relaxed);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Inbound {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.outgoing.poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        self.outgoing.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        self.outgoing.poll_shutdown(cx)
    }
}

/// Connections of a room, by id, as the fan-out iterates them.
type Members = Arc<Vec<(u64, Arc<Outgoing>)>>;

/// A batch and the connections it goes to, for the fan-out thread.
struct Delivery {
    batch: Batch,
    members: Members,
}

/// An authenticated connection in its workspace's room.
struct Member {
    key: Key,
    deflate: bool,
    outgoing: Arc<Outgoing>,
}

/// The connected members of one workspace, by connection id.
struct Room {
    members: HashMap<u64, Member>,
    /// `members` as a list for the fan-out, made again after a join or leave: a push
    /// shares it instead of copying 10,000 handles.
    listed: Option<Members>,
    /// How many members read `Deflated` frames.
    deflating: usize,
}

struct WriteJob {
    ws: Ws,
    origin: u64,
    incoming: Vec<Incoming>,
    reply: oneshot::Sender<Result<Vec<PushResult>>>,
}

/// Every workspace with connected members.
#[derive(Default)]
struct Rooms(Mutex<HashMap<Ws, Room>>);

struct Shared {
    store: Arc<RelayStore>,
    config: Config,
    rooms: Arc<Rooms>,
    writer: mpsc::Sender<WriteJob>,
    next_connection: AtomicU64,
    metrics: Arc<Metrics>,
    /// TLS settings when the relay terminates TLS itself; replaced on SIGHUP.
    tls: Option<TlsSettings>,
}

/// The TLS settings new connections take: replaced whole when the certificate is reloaded,
/// while connections made before keep theirs.
pub type TlsSettings = Arc<std::sync::RwLock<Arc<rustls::ServerConfig>>>;

/// Milliseconds since the epoch.
fn now_ms() -> i64 {
    crate::determinism::now_ms()
}

/// Opens the database in `data` and serves the relay on an already-bound listener until
/// `shutdown` completes (see [`run`]).
pub async fn serve(
    listener: TcpListener,
    data: &Path,
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let store = RelayStore::open_with(data, config.store())?;
    run(listener, store, config, shutdown).await
}

/// Serves the relay from an open database on an already-bound listener until `shutdown`
/// completes, then closes every connection and returns once commits in flight are durable.
pub async fn run(
    listener: TcpListener,
    store: RelayStore,
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    run_with(listener, Admin::default(), store, config, shutdown).await
}

/// The relay's listeners for its operator, besides the websocket one.
#[derive(Debug, Default)]
pub struct Admin {
    /// HTTP: `/healthz`, `/readyz`, `/metrics`.
    pub http: Option<TcpListener>,
    /// The control socket in the data directory (`admin.sock`, the relay's user only):
    /// `meridian-relay backup` asks the running relay for a consistent copy through it.
    pub control: Option<tokio::net::UnixListener>,
    /// TLS on the websocket listener (see [`tls_settings`]).
    pub tls: Option<TlsSettings>,
}

/// The TLS settings of a certificate chain and its key, both PEM files: rustls with the
/// ring provider named explicitly.
pub fn tls_settings(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let chain = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("cannot read the certificate {}", cert.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{} is not a PEM certificate chain", cert.display()))?;
    if chain.is_empty() {
        bail!("{} holds no certificate", cert.display());
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("cannot read a PEM private key from {}", key.display()))?;
    #[allow(deprecated)] // ring, named explicitly: see the node's `sync::tls`.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .context("the certificate and the key do not go together")?;
    Ok(Arc::new(config))
}

/// [`run`], with the admin listeners given.
///
/// Shutdown drains: `/readyz` turns 503 at once, the listener stops accepting, and each
/// member is told to reconnect elsewhere (`Refused{ShuttingDown}`) at its own moment spread
/// over `drain_secs`, so that they do not all come back to the next relay in the same
/// second; commits in flight finish before the writer stops.
pub async fn run_with(
    listener: TcpListener,
    admin: Admin,
    store: RelayStore,
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let store = Arc::new(store);
    let metrics = Arc::new(Metrics::new());
    let (writer_tx, writer_rx) = mpsc::channel::<WriteJob>(1024);
    // The writer waits when the fan-out is this many batches behind.
    let (fan_out_tx, fan_out_rx) = std_mpsc::sync_channel::<Delivery>(config.live_batches.max(1));
    let rooms = Arc::new(Rooms::default());
    let fan_out = std::thread::Builder::new()
        .name("relay-fan-out".into())
        .spawn({
            let metrics = metrics.clone();
            move || fan_out_loop(fan_out_rx, &metrics)
        })
        .context("cannot start the fan-out thread")?;
    let writer = {
        let store = store.clone();
        let rooms = rooms.clone();
        std::thread::Builder::new()
            .name("relay-writer".into())
            .spawn({
                let metrics = metrics.clone();
                move || write_loop(&store, &rooms, writer_rx, &fan_out_tx, &metrics)
            })
            .context("cannot start the writer thread")?
    };
    let shared = Arc::new(Shared {
        store,
        config: config.clone(),
        rooms,
        writer: writer_tx,
        next_connection: AtomicU64::new(1),
        metrics: metrics.clone(),
        tls: admin.tls.clone(),
    });
    let control = admin
        .control
        .map(|listener| tokio::spawn(serve_control(listener, shared.clone())));
    let admin = admin
        .http
        .map(|listener| tokio::spawn(serve_admin(listener, shared.clone())));
    let permits = Arc::new(Semaphore::new(config.max_connections));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    let Ok(permit) = permits.clone().try_acquire_owned() else {
                        debug!(%peer, "connection limit reached: closing");
                        metrics.refused("connection_limit");
                        continue;
                    };
                    let _ = tcp.set_nodelay(true);
                    let shared = shared.clone();
                    let stop = stop_rx.clone();
                    tasks.spawn(async move {
                        // Counted down when the task ends, even when shutdown aborts it.
                        let _open = OpenConnection::new(&shared.metrics);
                        if let Err(e) = connection(&shared, tcp, peer, stop).await {
                            count_end(&shared.metrics, &e);
                            match e.downcast_ref::<Refusal>() {
                                // Refusals are what an operator looks for: once each, with
                                // the peer and the reason (never a key or an envelope).
                                // Malformed or slow handshakes, which anyone can send, stay
                                // at debug (the metrics count them) so they cannot flood it.
                                Some(r)
                                    if !matches!(
                                        r.code,
                                        RefusedCode::ShuttingDown
                                            | RefusedCode::Timeout
                                            | RefusedCode::Protocol
                                    ) =>
                                {
                                    info!(%peer, code = ?r.code, "refused: {}", r.reason);
                                }
                                _ => debug!(%peer, "connection ended: {e:#}"),
                            }
                        }
                        drop(permit);
                    });
                }
                Err(e) => {
                    // Out of file descriptors, most likely: wait instead of spinning.
                    warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
        while tasks.try_join_next().is_some() {}
    }
    metrics.start_draining();
    let window = Duration::from_secs(config.drain_secs);
    info!(
        "shutting down: not ready, and closing connections over {}s",
        window.as_secs()
    );
    drop(listener);
    let _ = stop_tx.send(true);
    if timeout(window + Duration::from_secs(10), async {
        while tasks.join_next().await.is_some() {}
    })
    .await
    .is_err()
    {
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
    }
    for task in [admin, control].into_iter().flatten() {
        task.abort();
    }
    // The last handle on the writer's queue goes with `shared`: the writer commits what is
    // queued, then stops, and the fan-out with it.
    drop(shared);
    tokio::task::spawn_blocking(move || (writer.join(), fan_out.join()))
        .await
        .context("the writer thread could not be joined")
        .and_then(|(writer, fan_out)| {
            writer.map_err(|_| anyhow!("the writer thread panicked"))?;
            fan_out.map_err(|_| anyhow!("the fan-out thread panicked"))
        })?;
    info!("stopped");
    Ok(())
}

/// The writer thread: commits queued pushes in groups, then forwards and answers them.
fn write_loop(
    store: &RelayStore,
    rooms: &Rooms,
    mut jobs: mpsc::Receiver<WriteJob>,
    fan_out: &std_mpsc::SyncSender<Delivery>,
    metrics: &Metrics,
) {
    while let Some(first) = jobs.blocking_recv() {
        let mut group = vec![first];
        while group.len() < 256 {
            match jobs.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        let pushes: Vec<(Ws, Vec<Incoming>)> = group
            .iter_mut()
            .map(|job| (job.ws, std::mem::take(&mut job.incoming)))
            .collect();
        let started = std::time::Instant::now();
        let outcome = store.append(&pushes);
        metrics
            .commit_seconds
            .observe(started.elapsed().as_secs_f64());
        metrics.commit_pushes.observe(pushes.len() as f64);
        metrics.committed(match &outcome {
            Ok(_) => Ok(()),
            Err(e) => Err(format!("{e:#}")),
        });
        match outcome {
            Ok(appended) => {
                for done in &appended {
                    metrics.envelopes_stored.inc_by(done.entries.len() as u64);
                    let bytes: usize = done.entries.iter().map(|(_, e)| e.len()).sum();
                    metrics.stored_bytes.inc_by(bytes as u64);
                }
                for (job, appended) in group.into_iter().zip(appended) {
                    if let Some(delivery) = rooms.publish(job.ws, job.origin, appended.entries) {
                        // The fan-out stops only after this thread, which holds its queue.
                        let _ = fan_out.send(delivery);
                    }
                    let _ = job.reply.send(Ok(appended.results));
                }
            }
            Err(e) => {
                warn!("appending to the log failed: {e:#}");
                for job in group {
                    let _ = job
                        .reply
                        .send(Err(anyhow!("the relay could not store the push: {e}")));
                }
            }
        }
    }
}

/// The most deliveries the fan-out takes together: a member gets their frames in one
/// system call.
const FAN_OUT_RUN: usize = 64;

/// The fan-out thread: writes each committed batch to its workspace's members, in commit
/// order, never waiting on a socket. When batches queued up while it wrote (pushes come
/// faster than one round of writes to every member), it takes them together, and each
/// member gets all of its frames in one system call.
fn fan_out_loop(deliveries: std_mpsc::Receiver<Delivery>, metrics: &Metrics) {
    while let Ok(first) = deliveries.recv() {
        let mut run = vec![first];
        while run.len() < FAN_OUT_RUN {
            match deliveries.try_recv() {
                Ok(delivery) => run.push(delivery),
                Err(_) => break,
            }
        }
        let delivered: usize = run.iter().map(|d| d.members.len()).sum();
        metrics.deliveries.inc_by(delivered as u64);
        if let [delivery] = run.as_slice() {
            for (connection, outgoing) in delivery.members.iter() {
                if outgoing.offer(*connection, &[&delivery.batch]) {
                    metrics.slow_readers_lagging.inc();
                }
            }
            continue;
        }
        let mut members: HashMap<u64, (&Arc<Outgoing>, Vec<&Batch>)> = HashMap::new();
        for delivery in &run {
            for (connection, outgoing) in delivery.members.iter() {
                members
                    .entry(*connection)
                    .or_insert_with(|| (outgoing, Vec::new()))
                    .1
                    .push(&delivery.batch);
            }
        }
        for (connection, (outgoing, batches)) in members {
            if outgoing.offer(connection, &batches) {
                metrics.slow_readers_lagging.inc();
            }
        }
    }
}

impl Rooms {
    /// The delivery of committed entries to the workspace's connections, if any: its frame
    /// encoded once, and the members as they are now. Taken under the lock that revocation
    /// holds, so a device removed before these entries were committed is marked removed
    /// before the fan-out looks at it.
    ///
    /// The frame is encoded once for every member, and compressed once for every member
    /// that reads `Deflated` frames when there are several entries; the plain frame is
    /// kept only when a member needs it.
    fn publish(&self, ws: Ws, origin: u64, entries: Vec<(u64, Vec<u8>)>) -> Option<Delivery> {
        let (first, last) = (entries.first()?.0, entries.last()?.0);
        let (members, (plain_readers, deflate_readers)) = {
            let mut rooms = self.0.lock().unwrap_or_else(|e| e.into_inner());
            let room = rooms.get_mut(&ws)?;
            let members = room
                .listed
                .get_or_insert_with(|| {
                    Arc::new(
                        room.members
                            .iter()
                            .map(|(connection, member)| (*connection, member.outgoing.clone()))
                            .collect(),
                    )
                })
                .clone();
            // Who will read the frame, plain and compressed: the member that pushed is in
            // the list but is sent nothing.
            let pusher = room.members.get(&origin).map(|member| member.deflate);
            let deflate_readers = room.deflating - usize::from(pusher == Some(true));
            let plain_readers =
                room.members.len() - room.deflating - usize::from(pusher == Some(false));
            (members, (plain_readers, deflate_readers))
        };
        let mut batch = Batch {
            origin,
            first,
            last,
            frame: None,
            deflated: None,
        };
        // About 16 bytes of CBOR per entry besides the envelope.
        let size: usize = entries.iter().map(|(_, bytes)| bytes.len() + 16).sum();
        if size <= LIVE_FRAME_BYTES && plain_readers + deflate_readers > 0 {
            let count = entries.len();
            let plain = Frame::Entries {
                entries: entries
                    .into_iter()
                    .map(|(seq, bytes)| (seq, serde_bytes::ByteBuf::from(bytes)))
                    .collect(),
                up_to: last,
            }
            .encode();
            if deflate_readers > 0 && handling::worth_deflating(count) {
                batch.deflated = Frame::deflate(&plain).map(|frame| binary_message(&frame));
            }
            if batch.deflated.is_none() || plain_readers > 0 {
                batch.frame = Some(binary_message(&plain));
            }
        }
        Some(Delivery { batch, members })
    }

    /// Adds an authenticated connection to its workspace's room, unless the room or the
    /// device's share of it is full (then says why).
    fn join(
        &self,
        session: &Session,
        outgoing: &Arc<Outgoing>,
        config: &Config,
    ) -> Result<(), &'static str> {
        let Session {
            ws,
            key,
            deflate,
            id: connection,
        } = *session;
        let mut rooms = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let room = rooms.entry(ws).or_insert_with(|| Room {
            members: HashMap::new(),
            listed: None,
            deflating: 0,
        });
        if room.members.len() >= config.max_per_workspace {
            return Err("the workspace has too many connections on this relay: try again later");
        }
        if room.members.values().filter(|m| m.key == key).count() >= config.max_per_device {
            return Err(
                "this device has too many connections to the workspace on this relay: close some",
            );
        }
        room.listed = None;
        room.deflating += usize::from(deflate);
        room.members.insert(
            connection,
            Member {
                key,
                deflate,
                outgoing: outgoing.clone(),
            },
        );
        Ok(())
    }

    fn leave(&self, ws: Ws, connection: u64) {
        let mut rooms = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(room) = rooms.get_mut(&ws) {
            if let Some(member) = room.members.remove(&connection) {
                room.deflating -= usize::from(member.deflate);
            }
            room.listed = None;
            if room.members.is_empty() {
                rooms.remove(&ws);
            }
        }
    }

    /// Runs `revoke` (the store's removal of a key, which returns every key it removed)
    /// and, when it succeeds, marks every connection of those devices removed and wakes
    /// it, all under the lock that publishing takes too: an entry committed after the
    /// removal is published only once the devices' connections are marked, and neither the
    /// fan-out nor the connection writes a workspace frame to a removed one.
    fn revoke(
        &self,
        ws: Ws,
        revoke: impl FnOnce() -> Result<Result<Vec<Key>, String>>,
    ) -> Result<Result<(), String>> {
        let rooms = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let result = revoke()?;
        if let (Ok(removed), Some(room)) = (&result, rooms.get(&ws)) {
            for member in room.members.values() {
                if removed.contains(&member.key) {
                    member.outgoing.lock().removed = true;
                    member.outgoing.wake.notify_one();
                }
            }
        }
        Ok(result.map(|_| ()))
    }
}

/// Sends one frame, giving up after the send timeout (a reader that does not drain).
async fn send(outgoing: &Outgoing, frame: &Frame, limit: Duration) -> Result<()> {
    outgoing.lock().send(binary_message(&frame.encode()));
    outgoing.drained(limit).await
}

/// Receives the next frame; `None` when the client closed the connection.
/// When, within a drain window of `window`, connection `id` is told the relay is shutting
/// down: spread evenly (the golden ratio's fractions) rather than all at once.
fn drain_offset(id: u64, window: Duration) -> Duration {
    let fraction = (id as f64 * 0.618_033_988_749_895).fract();
    window.mul_f64(fraction)
}

/// One open connection in the `connections_open` gauge, for as long as it lives.
struct OpenConnection(prometheus_client::metrics::gauge::Gauge);

impl OpenConnection {
    fn new(metrics: &Metrics) -> OpenConnection {
        metrics.connections_open.inc();
        OpenConnection(metrics.connections_open.clone())
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Counts how a connection ended, when it ended in a refusal or a slow reader.
fn count_end(metrics: &Metrics, error: &anyhow::Error) {
    for cause in error.chain() {
        if let Some(refusal) = cause.downcast_ref::<Refusal>() {
            metrics.refused(&crate::metrics::snake_case(&format!("{:?}", refusal.code)));
            return;
        }
        if cause.is::<SlowReader>() {
            metrics.slow_readers_disconnected.inc();
            return;
        }
    }
}

/// The admin listener: `GET /healthz` (the process serves), `GET /readyz` (the store takes
/// commits and the relay is not draining; 503 otherwise) and `GET /metrics` (Prometheus's
/// text format). One short request per connection; anything else is a 404.
async fn serve_admin(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((mut tcp, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let Ok(Ok(path)) = timeout(Duration::from_secs(5), read_request_path(&mut tcp)).await
            else {
                return;
            };
            let (status, kind, body) = admin_answer(&shared, &path).await;
            let head = format!(
                "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = timeout(Duration::from_secs(5), async {
                tokio::io::AsyncWriteExt::write_all(&mut tcp, head.as_bytes()).await?;
                tokio::io::AsyncWriteExt::write_all(&mut tcp, body.as_bytes()).await?;
                tokio::io::AsyncWriteExt::shutdown(&mut tcp).await
            })
            .await;
        });
    }
}

/// The control socket: one request line per connection, `backup PATH`, answered with one
/// line, `ok WORKSPACES ENTRIES BYTES` or `error MESSAGE`.
async fn serve_control(listener: tokio::net::UnixListener, shared: Arc<Shared>) {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
    loop {
        let Ok((socket, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let (read, mut write) = socket.into_split();
            let mut line = String::new();
            let mut reader = tokio::io::BufReader::new(read.take(4096));
            if timeout(Duration::from_secs(5), reader.read_line(&mut line))
                .await
                .is_err()
            {
                return;
            }
            let answer = match line.trim_end().split_once(' ') {
                Some(("backup", path)) => {
                    let target = std::path::PathBuf::from(path);
                    info!("backing up to {}", target.display());
                    match blocking(&shared, move |store| store.backup_to(&target)).await {
                        Ok(b) => format!("ok {} {} {}\n", b.workspaces, b.entries, b.bytes),
                        Err(e) => format!("error {e:#}\n"),
                    }
                }
                _ => "error the control socket takes `backup PATH`\n".to_string(),
            };
            let _ = write.write_all(answer.as_bytes()).await;
        });
    }
}

/// The path of a `GET` request (query left out), reading at most 8 KiB of its head.
async fn read_request_path(tcp: &mut TcpStream) -> Result<String> {
    let mut head = Vec::new();
    let mut buffer = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let read = tokio::io::AsyncReadExt::read(tcp, &mut buffer).await?;
        if read == 0 || head.len() + read > 8192 {
            bail!("not an HTTP request");
        }
        head.extend_from_slice(&buffer[..read]);
    }
    let line = head.split(|b| *b == b'\r').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    match line.split(' ').collect::<Vec<_>>().as_slice() {
        ["GET", target, _version] => Ok(target.split('?').next().unwrap_or("").to_string()),
        _ => Ok(String::new()),
    }
}

async fn admin_answer(shared: &Arc<Shared>, path: &str) -> (&'static str, &'static str, String) {
    const TEXT: &str = "text/plain; charset=utf-8";
    match path {
        "/healthz" => ("200 OK", TEXT, "ok\n".into()),
        "/readyz" => match shared.metrics.ready() {
            Ok(()) if !shared.writer.is_closed() => ("200 OK", TEXT, "ready\n".into()),
            Ok(()) => (
                "503 Service Unavailable",
                TEXT,
                "not ready: the writer has stopped\n".into(),
            ),
            Err(why) => (
                "503 Service Unavailable",
                TEXT,
                format!("not ready: {why}\n"),
            ),
        },
        "/metrics" => {
            let figures = blocking(shared, |store| Ok((store.workspaces()?, store.size()?))).await;
            let (workspaces, size) = figures.unwrap_or_default();
            (
                "200 OK",
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                shared.metrics.render(workspaces, size),
            )
        }
        _ => (
            "404 Not Found",
            TEXT,
            "the admin listener serves /healthz, /readyz and /metrics\n".into(),
        ),
    }
}

/// A websocket ping from the server: FIN, opcode 9, no payload (servers do not mask).
const PING: [u8; 2] = [0x89, 0x00];

/// The next frame from the client (pings and pongs are passed over; the reader notes
/// every byte that arrives, see [`Heard`]).
async fn recv(socket: &mut Socket) -> Result<Option<Frame>> {
    loop {
        let Some(message) = socket.next().await else {
            return Ok(None);
        };
        match message.context("the connection failed")? {
            Message::Binary(bytes) => return Ok(Some(Frame::decode(&bytes)?)),
            Message::Close(_) => return Ok(None),
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => continue,
            Message::Text(_) => {
                return Err(crate::protocol::FrameError::Malformed(
                    "text messages are not part of the protocol: send binary CBOR frames".into(),
                )
                .into());
            }
        }
    }
}

/// Answers a frame that does not decode with a `Protocol` refusal, so the client learns why.
async fn refuse_bad_frame(
    link: &mut Link,
    received: Result<Option<Frame>>,
    limit: Duration,
) -> Result<Option<Frame>> {
    match received {
        Err(e) if e.is::<crate::protocol::FrameError>() => {
            Err(refuse(link, RefusedCode::Protocol, &format!("{e}"), limit).await)
        }
        Err(e) if HandshakeTooLong::caused(&e) => Err(refuse(
            link,
            RefusedCode::Protocol,
            &HandshakeTooLong.to_string(),
            limit,
        )
        .await),
        other => other,
    }
}

/// Tells the client why it is refused and closes the connection; the error is for the log.
async fn refuse(
    link: &mut Link,
    code: RefusedCode,
    reason: &str,
    limit: Duration,
) -> anyhow::Error {
    let frame = Frame::Refused {
        code,
        reason: reason.to_string(),
    };
    if send(&link.outgoing, &frame, limit).await.is_ok() {
        let _ = timeout(limit, link.socket.close(None)).await;
    }
    anyhow!(Refusal {
        code,
        reason: reason.to_string()
    })
}

/// A connection the relay refused, for the log and the metrics.
#[derive(Debug, thiserror::Error)]
#[error("refused ({code:?}): {reason}")]
struct Refusal {
    code: RefusedCode,
    reason: String,
}

/// One connection's websocket (which reads) and its [`Outgoing`] (which everything writes
/// through). Dropping it closes the socket, even while the fan-out still holds the
/// `Outgoing`.
struct Link {
    socket: Socket,
    outgoing: Arc<Outgoing>,
}

impl Drop for Link {
    fn drop(&mut self) {
        self.outgoing.close();
    }
}

/// An authenticated connection.
struct Session {
    ws: Ws,
    key: Key,
    /// The client reads `Deflated` frames.
    deflate: bool,
    id: u64,
}

/// Runs one connection from the TCP accept to its end.
async fn connection(
    shared: &Arc<Shared>,
    tcp: TcpStream,
    peer: SocketAddr,
    mut stop: watch::Receiver<bool>,
) -> Result<()> {
    let config = &shared.config;
    let handshake_limit = Duration::from_secs(config.handshake_timeout_secs);
    let send_limit = Duration::from_secs(config.send_timeout_secs);
    let allowance = Arc::new(AtomicUsize::new(HANDSHAKE_BYTES));
    let (read, write) = tcp.into_split();
    let tls = match &shared.tls {
        Some(tls) => {
            let config = tls.read().unwrap_or_else(|e| e.into_inner()).clone();
            Some(rustls::ServerConnection::new(config).context("cannot start TLS")?)
        }
        None => None,
    };
    let outgoing = Arc::new(Outgoing::new(write, tls));
    let heard = Heard::new();
    let inbound = Inbound {
        tcp: read,
        allowance: allowance.clone(),
        outgoing: outgoing.clone(),
        tls: outgoing.lock().is_tls(),
        plain: Vec::new(),
        closed: false,
        heard: heard.clone(),
    };
    let upgrade = tokio::select! {
        result = timeout(
            handshake_limit,
            tokio_tungstenite::accept_async_with_config(inbound, Some(config.websocket())),
        ) => result,
        _ = stop.changed() => return Ok(()),
    };
    let socket = match upgrade.context("the websocket upgrade timed out")? {
        Ok(socket) => socket,
        Err(tokio_tungstenite::tungstenite::Error::Protocol(problem)) => {
            // A browser, curl or a health check that is not a websocket: tell it what this
            // is, rather than hang up without a word.
            let answer = not_a_websocket(&problem);
            outgoing.lock().send(answer.into());
            let _ = outgoing.drained(send_limit).await;
            bail!("not a websocket request ({problem})");
        }
        Err(e) => return Err(anyhow!(e).context("the websocket upgrade failed")),
    };
    let mut link = Link { socket, outgoing };
    let handshake = tokio::select! {
        result = timeout(handshake_limit, handshake(shared, &mut link)) => result,
        _ = stop.changed() => return Ok(()),
    };
    let session = match handshake {
        Ok(Ok(session)) => session,
        Ok(Err(e)) => {
            shared.metrics.handshake(false);
            return Err(e);
        }
        Err(_) => {
            shared.metrics.handshake(false);
            return Err(refuse(
                &mut link,
                RefusedCode::Timeout,
                "the handshake took too long",
                send_limit,
            )
            .await);
        }
    };
    allowance.store(usize::MAX, Ordering::Relaxed);
    link.outgoing.lock().deflate = session.deflate;
    if let Err(reason) = shared.rooms.join(&session, &link.outgoing, config) {
        shared.metrics.handshake(false);
        return Err(refuse(&mut link, RefusedCode::Busy, reason, send_limit).await);
    }
    // A removal that committed after admission but before the device joined its room
    // marked nobody: look again now that a later one would find the connection.
    let (ws, key) = (session.ws, session.key);
    let verdict = blocking(shared, move |store| store.known_device(&ws, &key)).await?;
    if let Some(Err(refusal)) = verdict {
        shared.rooms.leave(session.ws, session.id);
        shared.metrics.handshake(false);
        return Err(refuse(&mut link, refusal.code, &refusal.reason, send_limit).await);
    }
    shared.metrics.handshake(true);
    debug!(%peer, key = %hex::encode(&session.key[..6]), "authenticated");
    let head = blocking(shared, move |store| store.head(&session.ws)).await?;
    let result = async {
        send(
            &link.outgoing,
            &Frame::Welcome {
                head,
                shared: true,
                vouch: true,
            },
            send_limit,
        )
        .await?;
        serve_session(shared, &session, &mut link, &mut stop, &heard).await
    }
    .await;
    shared.rooms.leave(session.ws, session.id);
    result
}

/// The HTTP answer to a request on the websocket port that is not a websocket upgrade: a
/// few lines for the person (or probe) who sent it.
fn not_a_websocket(problem: &tokio_tungstenite::tungstenite::error::ProtocolError) -> Vec<u8> {
    use tokio_tungstenite::tungstenite::error::ProtocolError;
    let status = match problem {
        ProtocolError::WrongHttpMethod => "405 Method Not Allowed",
        ProtocolError::MissingConnectionUpgradeHeader
        | ProtocolError::MissingUpgradeWebSocketHeader => "200 OK",
        _ => "400 Bad Request",
    };
    let body = "This is a Meridian relay: it speaks websockets, not web pages.\n\
                Members add it with `meridian workspace relay add wss://this-host` (with TLS, \
                here or at a proxy) or `ws://this-host:port`; `meridian-relay serve` prints the \
                address.\n";
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Runs a store call off the async threads.
async fn blocking<T: Send + 'static>(
    shared: &Arc<Shared>,
    f: impl FnOnce(&RelayStore) -> Result<T> + Send + 'static,
) -> Result<T> {
    let store = shared.store.clone();
    tokio::task::spawn_blocking(move || f(&store))
        .await
        .context("a store task failed")?
}

/// Hello → Challenge → Prove, then admission.
async fn handshake(shared: &Arc<Shared>, link: &mut Link) -> Result<Session> {
    let limit = Duration::from_secs(shared.config.send_timeout_secs);
    let received = recv(&mut link.socket).await;
    let Some(frame) = refuse_bad_frame(link, received, limit).await? else {
        bail!("closed before Hello");
    };
    let handling::Hello { ws, key, deflate } = match handling::hello(frame) {
        Ok(hello) => hello,
        Err(r) => return Err(refuse(link, r.code, &r.reason, limit).await),
    };
    let relay = shared.store.id();
    let (nonce, challenge) =
        handling::challenge(relay).map_err(|e| anyhow!("the system random source failed: {e}"))?;
    send(&link.outgoing, &challenge, limit).await?;
    let received = recv(&mut link.socket).await;
    let Some(frame) = refuse_bad_frame(link, received, limit).await? else {
        bail!("closed before Prove");
    };
    let register = match handling::prove(frame, relay, &nonce, &ws, &key) {
        Ok(register) => register,
        Err(r) => return Err(refuse(link, r.code, &r.reason, limit).await),
    };
    let verdict = blocking(shared, move |store| {
        store.admit(&ws, &key, register.as_ref(), now_ms())
    })
    .await?;
    if let Err(refusal) = verdict {
        return Err(refuse(link, refusal.code, &refusal.reason, limit).await);
    }
    Ok(Session {
        ws,
        key,
        deflate,
        id: shared.next_connection.fetch_add(1, Ordering::Relaxed),
    })
}

/// What the authenticated connection's task wakes up for.
enum Event {
    Stop,
    Wake,
    Ping,
    Received(Result<Option<Frame>>),
}

/// The authenticated part of a connection. Live entries reach the client without this task
/// (see `server/outgoing.rs`); it wakes for the client's frames, for what the fan-out could not
/// write at once, for a removal, and for shutdown.
async fn serve_session(
    shared: &Arc<Shared>,
    session: &Session,
    link: &mut Link,
    stop: &mut watch::Receiver<bool>,
    heard: &Heard,
) -> Result<()> {
    let limit = Duration::from_secs(shared.config.send_timeout_secs);
    let outgoing = link.outgoing.clone();
    // Shutdown reaches this member at its own moment of the drain window.
    let window = Duration::from_secs(shared.config.drain_secs);
    let stopped = async {
        let _ = stop.changed().await;
        tokio::time::sleep(drain_offset(session.id, window)).await;
    };
    tokio::pin!(stopped);
    let mut woken = std::pin::pin!(outgoing.wake.notified());
    let ping_every = Duration::from_secs(shared.config.ping_interval_secs);
    let mut pings = (!ping_every.is_zero()).then(|| {
        let mut pings =
            tokio::time::interval_at(tokio::time::Instant::now() + ping_every, ping_every);
        pings.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        pings
    });
    // When the last ping went out: a peer silent since a ping at least an interval old is
    // gone (a busy moment of this task's own is not the peer's silence).
    let mut pinged: Option<(tokio::time::Instant, u64)> = None;
    loop {
        // Shutdown and removal win over anything else ready at the same moment; a removed
        // member is written nothing of the workspace either way (`Outgoing` checks).
        let event = tokio::select! {
            biased;
            _ = &mut stopped => Event::Stop,
            _ = woken.as_mut() => {
                woken.set(outgoing.wake.notified());
                Event::Wake
            }
            frame = recv(&mut link.socket) => Event::Received(frame),
            _ = async {
                match pings.as_mut() {
                    Some(pings) => pings.tick().await,
                    None => std::future::pending().await,
                }
            } => Event::Ping,
        };
        let frame = match event {
            Event::Stop => {
                refuse(
                    link,
                    RefusedCode::ShuttingDown,
                    "the relay is shutting down: reconnect later",
                    limit,
                )
                .await;
                return Ok(());
            }
            Event::Ping => {
                let silent_since_ping = pinged
                    .is_some_and(|(at, stamp)| at.elapsed() >= ping_every && !heard.since(stamp));
                if silent_since_ping {
                    debug!(
                        key = %hex::encode(&session.key[..6]),
                        "nothing since a ping an interval ago: closing the connection"
                    );
                    return Ok(());
                }
                // Stamped before it leaves: the answer cannot come earlier.
                pinged = Some((tokio::time::Instant::now(), Heard::clock()));
                outgoing
                    .lock()
                    .send(tokio_tungstenite::tungstenite::Bytes::from_static(&PING));
                outgoing.drained(limit).await?;
                continue;
            }
            Event::Wake => {
                let (removed, behind) = {
                    let state = outgoing.lock();
                    (state.removed, state.paused && state.missed)
                };
                if removed {
                    return Err(removed_refusal(link, limit).await);
                }
                outgoing.drained(limit).await?;
                if behind {
                    catch_up(shared, session.ws, &outgoing, limit, false).await?;
                }
                continue;
            }
            Event::Received(Ok(Some(frame))) => frame,
            Event::Received(Ok(None)) => return Ok(()),
            Event::Received(Err(e)) if e.is::<crate::protocol::FrameError>() => {
                return Err(refuse(link, RefusedCode::Protocol, &format!("{e}"), limit).await);
            }
            Event::Received(Err(e)) => return Err(e),
        };
        match frame {
            Frame::Subscribe { after } => {
                {
                    let mut state = outgoing.lock();
                    state.cursor = Some(after);
                    state.paused = true;
                }
                catch_up(shared, session.ws, &outgoing, limit, true).await?;
            }
            Frame::Push { id, envelopes } => {
                // Nothing committed after this push may reach the client before `Stored`
                // says which positions are its own.
                outgoing.lock().paused = true;
                let results = push(shared, session, envelopes).await?;
                let missed = {
                    let mut state = outgoing.lock();
                    state.send(binary_message(&Frame::Stored { id, results }.encode()));
                    state.paused = state.missed;
                    state.missed
                };
                outgoing.drained(limit).await?;
                if missed {
                    catch_up(shared, session.ws, &outgoing, limit, false).await?;
                }
            }
            Frame::Snapshot {
                id,
                covers,
                envelope,
                shared: reads_shared,
            } => {
                let result = snapshot(shared, session, covers, envelope, reads_shared).await?;
                let answer = Frame::Stored {
                    id,
                    results: vec![result],
                };
                send(&outgoing, &answer, limit).await?;
            }
            Frame::Revoke { member } => {
                let answer = revoke(shared, session, member).await?;
                send(&outgoing, &answer, limit).await?;
            }
            Frame::Vouch { id, members } => {
                let answer = vouch(shared, session, id, members).await?;
                send(&outgoing, &answer, limit).await?;
            }
            other => {
                let reason = format!("{} is not expected after the handshake", other.name());
                return Err(refuse(link, RefusedCode::Protocol, &reason, limit).await);
            }
        }
    }
}

async fn removed_refusal(link: &mut Link, limit: Duration) -> anyhow::Error {
    refuse(
        link,
        RefusedCode::Removed,
        "this device was removed from the workspace (by its creator, or revoked by its member)",
        limit,
    )
    .await
}

/// Sends every entry after the cursor from the log, in bounded batches, advancing it, while
/// the fan-out is paused for this connection; then resumes the fan-out, after `CaughtUp`
/// when `subscribed` (the answer to `Subscribe`). Reads again when the fan-out skipped a
/// batch meanwhile, so nothing committed is missed between the last read and the resume.
async fn catch_up(
    shared: &Arc<Shared>,
    ws: Ws,
    outgoing: &Outgoing,
    limit: Duration,
    subscribed: bool,
) -> Result<()> {
    // After `Subscribe`, a document the client has none of may come as its snapshot; the
    // plan keeps the snapshots chosen for the whole catch-up.
    let (cursor, deflate) = {
        let state = outgoing.lock();
        (state.cursor, state.deflate)
    };
    let mut plan = Some(match (subscribed, cursor) {
        (true, Some(after)) => CatchUp::subscribe(after),
        _ => CatchUp::live(),
    });
    loop {
        let mut cursor = {
            let mut state = outgoing.lock();
            if state.removed {
                // The task is woken to refuse it.
                return Ok(());
            }
            state.missed = false;
            state.cursor.unwrap_or(0)
        };
        loop {
            let after = cursor;
            let mut taken = plan.take().expect("the plan comes back after every read");
            // Encoded (and compressed) off the async threads; only the encoded frames stay in
            // memory while a slow reader takes them.
            let (last, frames, back) = blocking(shared, move |store| {
                let read =
                    store.read_for(&ws, after, &mut taken, MAX_BATCH_ENTRIES, SEND_BATCH_BYTES)?;
                let last = read.up_to;
                let frames: Vec<_> = if last <= after {
                    Vec::new()
                } else {
                    handling::catch_up_frames(read)
                        .iter()
                        .map(|frame| binary_message(&handling::encode_for(frame, deflate)))
                        .collect()
                };
                Ok((last, frames, taken))
            })
            .await?;
            plan = Some(back);
            if last <= after {
                break;
            }
            {
                let mut state = outgoing.lock();
                if state.removed {
                    return Ok(());
                }
                for frame in frames {
                    state.send(frame);
                }
                state.cursor = Some(last);
            }
            cursor = last;
            outgoing.drained(limit).await?;
        }
        {
            let mut state = outgoing.lock();
            if state.removed {
                return Ok(());
            }
            if !state.missed {
                if subscribed {
                    state.send(binary_message(&Frame::CaughtUp { head: cursor }.encode()));
                }
                state.paused = false;
                break;
            }
        }
    }
    outgoing.drained(limit).await
}

/// Checks a push's envelopes and hands the good ones to the writer.
async fn push(
    shared: &Arc<Shared>,
    session: &Session,
    envelopes: Vec<serde_bytes::ByteBuf>,
) -> Result<Vec<PushResult>> {
    let mut sorted = handling::sort_push(&session.ws, &session.key, envelopes);
    let stored = if sorted.incoming.is_empty() {
        Vec::new()
    } else {
        let (reply, answer) = oneshot::channel();
        shared
            .writer
            .send(WriteJob {
                ws: session.ws,
                origin: session.id,
                incoming: std::mem::take(&mut sorted.incoming),
                reply,
            })
            .await
            .map_err(|_| anyhow!("the relay is shutting down"))?;
        answer
            .await
            .map_err(|_| anyhow!("the relay's writer stopped"))??
    };
    Ok(sorted.answers(stored))
}

/// Checks a pushed snapshot and keeps it if the store agrees.
async fn snapshot(
    shared: &Arc<Shared>,
    session: &Session,
    covers: u64,
    envelope: serde_bytes::ByteBuf,
    reads_shared: bool,
) -> Result<PushResult> {
    let snapshot = match handling::sort_snapshot(&session.ws, &envelope, reads_shared) {
        Ok(checked) => checked,
        Err(answer) => return Ok(answer),
    };
    let ws = session.ws;
    blocking(shared, move |store| {
        store.put_snapshot(&ws, &snapshot, covers)
    })
    .await
}

async fn revoke(shared: &Arc<Shared>, session: &Session, member: Vec<u8>) -> Result<Frame> {
    let Ok(member_key) = <Key>::try_from(member.as_slice()) else {
        return Ok(Frame::Error {
            reason: "Revoke needs a 32-byte member key".into(),
        });
    };
    let (ws, by) = (session.ws, session.key);
    let rooms = shared.rooms.clone();
    let result = blocking(shared, move |store| {
        rooms.revoke(ws, || store.revoke(&ws, &by, &member_key, now_ms()))
    })
    .await?;
    Ok(match result {
        Ok(()) => {
            info!(member = %hex::encode(&member_key[..6]), "member revoked");
            Frame::Revoked { member }
        }
        Err(reason) => Frame::Error { reason },
    })
}

/// Admits the members the creator vouches for ([`RelayStore::vouch`]).
async fn vouch(
    shared: &Arc<Shared>,
    session: &Session,
    id: u64,
    members: Vec<Vouchee>,
) -> Result<Frame> {
    let (ws, by) = (session.ws, session.key);
    let results = blocking(shared, move |store| {
        store.vouch(&ws, &by, &members, now_ms())
    })
    .await?;
    let admitted = results
        .iter()
        .filter(|r| matches!(r, VouchResult::Admitted))
        .count();
    if admitted > 0 {
        info!(admitted, "members admitted on the creator's word");
    }
    Ok(Frame::Vouched { id, results })
}

/// Completes on ctrl-c or SIGTERM: the shutdown signal of the relay and of the node's daemon.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        if let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
