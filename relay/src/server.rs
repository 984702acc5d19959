//! The websocket server: authenticates devices, appends their pushes to the workspace log
//! and forwards new entries to every connected member.
//!
//! One task per connection, one writer thread for the whole relay. Pushes from every
//! connection queue up for the writer, which commits whatever has gathered in one durable
//! transaction (one fsync) and only then answers and forwards, so nothing is acknowledged
//! or forwarded before it is on disk. Forwarding goes through a bounded broadcast channel
//! per workspace holding pre-encoded frames; a connection that falls behind it reads the
//! log instead, so a slow reader costs the relay nothing but its own socket, and a reader
//! that does not drain its socket within `send_timeout` is disconnected.
//!
//! Memory is bounded per connection: before authentication a client can make the relay
//! read at most [`HANDSHAKE_BYTES`]; afterwards a reader pins at most one frame of
//! [`SEND_BATCH_BYTES`] (or one larger envelope) while it does not read; each workspace's
//! live buffer holds at most `live_batches` frames of [`LIVE_FRAME_BYTES`].

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll, ready};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, broadcast, mpsc, oneshot, watch};
use tokio::task::JoinSet;
use tokio::time::timeout;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Bytes, Message};
use tracing::{debug, info, warn};

use crate::handling::{self, Forward};
use crate::protocol::{Frame, MAX_BATCH_ENTRIES, MAX_FRAME_BYTES, PushResult, RefusedCode};
use crate::store::{self, CatchUp, Incoming, Recovery, RelayStore};

type Ws = [u8; 16];
type Key = [u8; 32];
type Sink = SplitSink<WebSocketStream<Inbound>, Message>;
type Source = SplitStream<WebSocketStream<Inbound>>;

/// The most bytes a client may send before it is authenticated: the websocket upgrade,
/// `Hello` and `Prove` take well under a kilobyte.
pub const HANDSHAKE_BYTES: usize = 16 << 10;

/// The most envelope bytes the relay puts in one `Entries` frame (a larger envelope goes
/// alone): what a reader that stopped reading pins in the relay's memory, besides its socket.
pub const SEND_BATCH_BYTES: usize = 256 << 10;

/// The largest frame of new entries kept in a workspace's live buffer; larger commits are
/// read from the log by each receiver.
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
    /// Batches of new entries kept per workspace for live forwarding; a connection further
    /// behind reads the log instead.
    pub live_batches: usize,
    /// How the database commits and recovers from a crash.
    pub recovery: Recovery,
    /// Memory for the database's page cache, MiB.
    pub cache_mb: usize,
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
        }
    }
}

impl Config {
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

/// A client's TCP stream, which reads at most [`HANDSHAKE_BYTES`] until the client is
/// authenticated: a stranger cannot make the relay buffer a message of `max_frame_bytes`.
struct Inbound {
    tcp: TcpStream,
    /// Bytes the client may still send; `usize::MAX` once authenticated.
    allowance: Arc<AtomicUsize>,
}

impl AsyncRead for Inbound {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let allowance = this.allowance.load(Ordering::Relaxed);
        if allowance == usize::MAX {
            return Pin::new(&mut this.tcp).poll_read(cx, buf);
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
        Pin::new(&mut self.get_mut().tcp).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_shutdown(cx)
    }
}

/// New entries of one workspace, as the writer committed them.
struct Batch {
    /// The connection that pushed them (it is not sent them back).
    origin: u64,
    first: u64,
    last: u64,
    /// `Entries` with all of them, encoded once for every receiver, when it is at most
    /// [`LIVE_FRAME_BYTES`]; receivers read larger batches from the log.
    frame: Option<Bytes>,
}

/// The connected members of one workspace.
struct Room {
    live: broadcast::Sender<Arc<Batch>>,
    /// Connection id → (device key, a signal that closes it).
    members: HashMap<u64, (Key, watch::Sender<bool>)>,
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
}

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
    let store = Arc::new(store);
    let (writer_tx, writer_rx) = mpsc::channel::<WriteJob>(1024);
    let rooms = Arc::new(Rooms::default());
    let writer = {
        let store = store.clone();
        let rooms = rooms.clone();
        std::thread::Builder::new()
            .name("relay-writer".into())
            .spawn(move || write_loop(&store, &rooms, writer_rx))
            .context("cannot start the writer thread")?
    };
    let shared = Arc::new(Shared {
        store,
        config: config.clone(),
        rooms,
        writer: writer_tx,
        next_connection: AtomicU64::new(1),
    });
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
                        continue;
                    };
                    let _ = tcp.set_nodelay(true);
                    let shared = shared.clone();
                    let stop = stop_rx.clone();
                    tasks.spawn(async move {
                        if let Err(e) = connection(&shared, tcp, peer, stop).await {
                            debug!(%peer, "connection ended: {e:#}");
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
    info!("shutting down: closing connections");
    drop(listener);
    let _ = stop_tx.send(true);
    if timeout(Duration::from_secs(10), async {
        while tasks.join_next().await.is_some() {}
    })
    .await
    .is_err()
    {
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
    }
    // The last handle on the writer's queue goes with `shared`: the writer commits what is
    // queued, then stops.
    drop(shared);
    tokio::task::spawn_blocking(move || writer.join())
        .await
        .context("the writer thread could not be joined")?
        .map_err(|_| anyhow!("the writer thread panicked"))?;
    info!("stopped");
    Ok(())
}

/// The writer thread: commits queued pushes in groups, then forwards and answers them.
fn write_loop(store: &RelayStore, rooms: &Rooms, mut jobs: mpsc::Receiver<WriteJob>) {
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
        match store.append(&pushes) {
            Ok(appended) => {
                for (job, appended) in group.into_iter().zip(appended) {
                    rooms.publish(job.ws, job.origin, appended.entries);
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

impl Rooms {
    /// Forwards committed entries to the workspace's connections.
    fn publish(&self, ws: Ws, origin: u64, entries: Vec<(u64, Vec<u8>)>) {
        let (Some(first), Some(last)) = (entries.first(), entries.last()) else {
            return;
        };
        let (first, last) = (first.0, last.0);
        // About 16 bytes of CBOR per entry besides the envelope.
        let size: usize = entries.iter().map(|(_, bytes)| bytes.len() + 16).sum();
        let frame = (size <= LIVE_FRAME_BYTES).then(|| {
            Bytes::from(
                Frame::Entries {
                    entries: entries
                        .into_iter()
                        .map(|(seq, bytes)| (seq, serde_bytes::ByteBuf::from(bytes)))
                        .collect(),
                    up_to: last,
                }
                .encode(),
            )
        });
        let rooms = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(room) = rooms.get(&ws) {
            let _ = room.live.send(Arc::new(Batch {
                origin,
                first,
                last,
                frame,
            }));
        }
    }

    /// Adds an authenticated connection to its workspace's room, unless the room or the
    /// device's share of it is full (then says why).
    fn join(
        &self,
        ws: Ws,
        key: Key,
        connection: u64,
        config: &Config,
    ) -> Result<(broadcast::Receiver<Arc<Batch>>, watch::Receiver<bool>), &'static str> {
        let mut rooms = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let room = rooms.entry(ws).or_insert_with(|| Room {
            live: broadcast::channel(config.live_batches.max(1)).0,
            members: HashMap::new(),
        });
        if room.members.len() >= config.max_per_workspace {
            return Err("the workspace has too many connections on this relay: try again later");
        }
        if room.members.values().filter(|(k, _)| *k == key).count() >= config.max_per_device {
            return Err(
                "this device has too many connections to the workspace on this relay: close some",
            );
        }
        let (kick_tx, kick_rx) = watch::channel(false);
        room.members.insert(connection, (key, kick_tx));
        Ok((room.live.subscribe(), kick_rx))
    }

    fn leave(&self, ws: Ws, connection: u64) {
        let mut rooms = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(room) = rooms.get_mut(&ws) {
            room.members.remove(&connection);
            if room.members.is_empty() {
                rooms.remove(&ws);
            }
        }
    }

    /// Runs `revoke` (the store's removal of `key`) and, when it succeeds, closes every
    /// connection of that device, all under the lock that publishing takes too: an entry
    /// committed after the removal is published only once the device's connections were
    /// told to close, and they obey that first.
    fn revoke(
        &self,
        ws: Ws,
        key: &Key,
        revoke: impl FnOnce() -> Result<Result<(), String>>,
    ) -> Result<Result<(), String>> {
        let rooms = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let result = revoke()?;
        if let (Ok(()), Some(room)) = (&result, rooms.get(&ws)) {
            for (member, kick) in room.members.values() {
                if member == key {
                    let _ = kick.send(true);
                }
            }
        }
        Ok(result)
    }
}

/// Sends one frame, giving up after the send timeout (a reader that does not drain).
async fn send(sink: &mut Sink, bytes: impl Into<Bytes>, limit: Duration) -> Result<()> {
    match timeout(limit, sink.send(Message::Binary(bytes.into()))).await {
        Ok(result) => result.context("the connection failed"),
        Err(_) => bail!(
            "the client did not read for {}s: disconnected",
            limit.as_secs()
        ),
    }
}

/// Receives the next frame; `None` when the client closed the connection.
async fn recv(source: &mut Source) -> Result<Option<Frame>> {
    loop {
        let Some(message) = source.next().await else {
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
    sink: &mut Sink,
    received: Result<Option<Frame>>,
    limit: Duration,
) -> Result<Option<Frame>> {
    match received {
        Err(e) if e.is::<crate::protocol::FrameError>() => {
            Err(refuse(sink, RefusedCode::Protocol, &format!("{e}"), limit).await)
        }
        Err(e) if HandshakeTooLong::caused(&e) => Err(refuse(
            sink,
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
    sink: &mut Sink,
    code: RefusedCode,
    reason: &str,
    limit: Duration,
) -> anyhow::Error {
    let frame = Frame::Refused {
        code,
        reason: reason.to_string(),
    };
    let _ = send(sink, frame.encode(), limit).await;
    let _ = timeout(limit, sink.close()).await;
    anyhow!("refused ({code:?}): {reason}")
}

/// An authenticated connection.
struct Session {
    ws: Ws,
    key: Key,
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
    let inbound = Inbound {
        tcp,
        allowance: allowance.clone(),
    };
    let upgrade = tokio::select! {
        result = timeout(
            handshake_limit,
            tokio_tungstenite::accept_async_with_config(inbound, Some(config.websocket())),
        ) => result,
        _ = stop.changed() => return Ok(()),
    };
    let socket = upgrade
        .context("the websocket upgrade timed out")?
        .context("the websocket upgrade failed")?;
    let (mut sink, mut source) = socket.split();
    let handshake = tokio::select! {
        result = timeout(handshake_limit, handshake(shared, &mut sink, &mut source)) => result,
        _ = stop.changed() => return Ok(()),
    };
    let session = match handshake {
        Ok(result) => result?,
        Err(_) => {
            return Err(refuse(
                &mut sink,
                RefusedCode::Timeout,
                "the handshake took too long",
                send_limit,
            )
            .await);
        }
    };
    allowance.store(usize::MAX, Ordering::Relaxed);
    let (mut live, mut kick) = match shared
        .rooms
        .join(session.ws, session.key, session.id, config)
    {
        Ok(joined) => joined,
        Err(reason) => {
            return Err(refuse(&mut sink, RefusedCode::Busy, reason, send_limit).await);
        }
    };
    // A removal that committed after admission but before the device joined its room
    // kicked nobody: look again now that a later one would find the connection.
    let (ws, key) = (session.ws, session.key);
    let verdict = blocking(shared, move |store| store.known_device(&ws, &key)).await?;
    if let Some(Err(refusal)) = verdict {
        shared.rooms.leave(session.ws, session.id);
        return Err(refuse(&mut sink, refusal.code, &refusal.reason, send_limit).await);
    }
    debug!(%peer, key = %hex::encode(&session.key[..6]), "authenticated");
    let head = blocking(shared, move |store| store.head(&session.ws)).await?;
    let result = async {
        send(&mut sink, Frame::Welcome { head }.encode(), send_limit).await?;
        serve_session(
            shared,
            &session,
            &mut sink,
            &mut source,
            &mut live,
            &mut kick,
            &mut stop,
        )
        .await
    }
    .await;
    shared.rooms.leave(session.ws, session.id);
    result
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
async fn handshake(shared: &Arc<Shared>, sink: &mut Sink, source: &mut Source) -> Result<Session> {
    let limit = Duration::from_secs(shared.config.send_timeout_secs);
    let Some(frame) = refuse_bad_frame(sink, recv(source).await, limit).await? else {
        bail!("closed before Hello");
    };
    let (ws, key) = match handling::hello(frame) {
        Ok(hello) => hello,
        Err(r) => return Err(refuse(sink, r.code, &r.reason, limit).await),
    };
    let relay = shared.store.id();
    let (nonce, challenge) =
        handling::challenge(relay).map_err(|e| anyhow!("the system random source failed: {e}"))?;
    send(sink, challenge.encode(), limit).await?;
    let Some(frame) = refuse_bad_frame(sink, recv(source).await, limit).await? else {
        bail!("closed before Prove");
    };
    let register = match handling::prove(frame, relay, &nonce, &ws, &key) {
        Ok(register) => register,
        Err(r) => return Err(refuse(sink, r.code, &r.reason, limit).await),
    };
    let verdict = blocking(shared, move |store| {
        store.admit(&ws, &key, register.as_ref(), now_ms())
    })
    .await?;
    if let Err(refusal) = verdict {
        return Err(refuse(sink, refusal.code, &refusal.reason, limit).await);
    }
    Ok(Session {
        ws,
        key,
        id: shared.next_connection.fetch_add(1, Ordering::Relaxed),
    })
}

/// The authenticated part of a connection.
async fn serve_session(
    shared: &Arc<Shared>,
    session: &Session,
    sink: &mut Sink,
    source: &mut Source,
    live: &mut broadcast::Receiver<Arc<Batch>>,
    kick: &mut watch::Receiver<bool>,
    stop: &mut watch::Receiver<bool>,
) -> Result<()> {
    let limit = Duration::from_secs(shared.config.send_timeout_secs);
    // `None` until the client subscribes; then the sequence number it has everything up to.
    let mut sent_up_to: Option<u64> = None;
    loop {
        // Removal and shutdown win over anything else ready at the same moment, so a removed
        // member never gets a batch written after the removal.
        tokio::select! {
            biased;
            _ = kick.changed() => {
                return Err(refuse(sink, RefusedCode::Removed, "this device was removed from the workspace by its creator", limit).await);
            }
            _ = stop.changed() => {
                refuse(sink, RefusedCode::ShuttingDown, "the relay is shutting down: reconnect later", limit).await;
                return Ok(());
            }
            frame = recv(source) => {
                let frame = match frame {
                    Ok(Some(frame)) => frame,
                    Ok(None) => return Ok(()),
                    Err(e) if e.is::<crate::protocol::FrameError>() => {
                        return Err(refuse(sink, RefusedCode::Protocol, &format!("{e}"), limit).await);
                    }
                    Err(e) => return Err(e),
                };
                match frame {
                    Frame::Subscribe { after } => {
                        let mut cursor = after;
                        let plan = CatchUp::subscribe(after);
                        catch_up_with(shared, session.ws, &mut cursor, plan, sink, limit).await?;
                        send(sink, Frame::CaughtUp { head: cursor }.encode(), limit).await?;
                        sent_up_to = Some(cursor);
                    }
                    Frame::Push { id, envelopes } => {
                        let results = push(shared, session, envelopes).await?;
                        send(sink, Frame::Stored { id, results }.encode(), limit).await?;
                    }
                    Frame::Snapshot { id, covers, envelope } => {
                        let result = snapshot(shared, session, covers, envelope).await?;
                        send(sink, Frame::Stored { id, results: vec![result] }.encode(), limit).await?;
                    }
                    Frame::Revoke { member } => {
                        let answer = revoke(shared, session, member).await?;
                        send(sink, answer.encode(), limit).await?;
                    }
                    other => {
                        let reason = format!("{} is not expected after the handshake", other.name());
                        return Err(refuse(sink, RefusedCode::Protocol, &reason, limit).await);
                    }
                }
            }
            batch = live.recv(), if sent_up_to.is_some() => {
                let Some(cursor) = sent_up_to.as_mut() else {
                    continue;
                };
                match batch {
                    Ok(batch) => forward(shared, session, &batch, cursor, sink, limit).await?,
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        catch_up(shared, session.ws, cursor, sink, limit).await?;
                    }
                    Err(broadcast::error::RecvError::Closed) => return Ok(()),
                }
            }
        }
    }
}

/// Sends every entry after `cursor`, in bounded batches, advancing it.
async fn catch_up(
    shared: &Arc<Shared>,
    ws: Ws,
    cursor: &mut u64,
    sink: &mut Sink,
    limit: Duration,
) -> Result<()> {
    catch_up_with(shared, ws, cursor, CatchUp::live(), sink, limit).await
}

/// Sends every entry after `cursor` as `plan` says (snapshots in place of whole documents
/// after a `Subscribe`), in bounded batches, advancing it.
async fn catch_up_with(
    shared: &Arc<Shared>,
    ws: Ws,
    cursor: &mut u64,
    plan: CatchUp,
    sink: &mut Sink,
    limit: Duration,
) -> Result<()> {
    let mut plan = Some(plan);
    loop {
        let after = *cursor;
        let mut taken = plan.take().expect("the plan comes back after every read");
        let (read, back) = blocking(shared, move |store| {
            let read = store.read_for(&ws, after, &mut taken, MAX_BATCH_ENTRIES, SEND_BATCH_BYTES);
            read.map(|read| (read, taken))
        })
        .await?;
        plan = Some(back);
        if read.up_to <= after {
            return Ok(());
        }
        if !read.skipped.is_empty() {
            let skipped = Frame::Skipped {
                ranges: read.skipped,
            };
            send(sink, skipped.encode(), limit).await?;
        }
        // Only the encoded frame stays in memory while a slow reader takes it.
        let frame = Frame::Entries {
            entries: read
                .entries
                .into_iter()
                .map(|(seq, bytes)| (seq, serde_bytes::ByteBuf::from(bytes)))
                .collect(),
            up_to: read.up_to,
        }
        .encode();
        send(sink, frame, limit).await?;
        *cursor = read.up_to;
    }
}

/// Forwards a live batch, or reads the log when the batch does not directly follow the
/// cursor or was too large to keep in memory.
async fn forward(
    shared: &Arc<Shared>,
    session: &Session,
    batch: &Batch,
    cursor: &mut u64,
    sink: &mut Sink,
    limit: Duration,
) -> Result<()> {
    let own = batch.origin == session.id;
    match handling::forward(batch.first, batch.last, *cursor, own, batch.frame.is_some()) {
        Forward::Nothing => return Ok(()),
        Forward::CatchUp => return catch_up(shared, session.ws, cursor, sink, limit).await,
        Forward::Own => {}
        Forward::Send => {
            if let Some(frame) = &batch.frame {
                send(sink, frame.clone(), limit).await?;
            }
        }
    }
    *cursor = batch.last;
    Ok(())
}

/// Checks a push's envelopes and hands the good ones to the writer.
async fn push(
    shared: &Arc<Shared>,
    session: &Session,
    envelopes: Vec<serde_bytes::ByteBuf>,
) -> Result<Vec<PushResult>> {
    let mut sorted = handling::sort_push(&session.ws, envelopes);
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
) -> Result<PushResult> {
    let snapshot = match handling::sort_snapshot(&session.ws, &envelope) {
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
        rooms.revoke(ws, &member_key, || {
            store.revoke(&ws, &by, &member_key, now_ms())
        })
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
