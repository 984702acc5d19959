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

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow, bail};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, broadcast, mpsc, oneshot, watch};
use tokio::task::JoinSet;
use tokio::time::timeout;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tracing::{debug, info, warn};

use crate::envelope::Envelope;
use crate::protocol::{
    Frame, MAX_BATCH_BYTES, MAX_BATCH_ENTRIES, MAX_FRAME_BYTES, PROTOCOL_VERSION, PushResult,
    RefusedCode, auth_message,
};
use crate::store::{Incoming, RelayStore};

type Ws = [u8; 16];
type Key = [u8; 32];
type Sink = SplitSink<WebSocketStream<TcpStream>, Message>;
type Source = SplitStream<WebSocketStream<TcpStream>>;

/// Limits and timeouts of a relay. Every field has a default; a config file sets any of them.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Most open connections; more are closed as soon as they are accepted.
    pub max_connections: usize,
    /// Most authenticated connections to one workspace.
    pub max_per_workspace: usize,
    /// Seconds a client has to finish the websocket upgrade and the authentication.
    pub handshake_timeout_secs: u64,
    /// Seconds one frame may take to leave; a client that reads slower is disconnected.
    pub send_timeout_secs: u64,
    /// Largest frame accepted, bytes.
    pub max_frame_bytes: usize,
    /// Batches of new entries kept per workspace for live forwarding; a connection further
    /// behind reads the log instead.
    pub live_batches: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_connections: 20_000,
            max_per_workspace: 10_000,
            handshake_timeout_secs: 10,
            send_timeout_secs: 30,
            max_frame_bytes: MAX_FRAME_BYTES,
            live_batches: 256,
        }
    }
}

impl Config {
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

/// New entries of one workspace, as the writer committed them.
struct Batch {
    /// The connection that pushed them (it is not sent them back).
    origin: u64,
    first: u64,
    last: u64,
    entries: Vec<(u64, Arc<Vec<u8>>)>,
    /// `Entries` with all of them, encoded once for every receiver.
    frame: Vec<u8>,
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
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Serves the relay on an already-bound listener until `shutdown` completes, then closes
/// every connection and returns once commits in flight are durable.
pub async fn serve(
    listener: TcpListener,
    data: &Path,
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let store = Arc::new(RelayStore::open(data)?);
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
        let rooms = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let Some(room) = rooms.get(&ws) else {
            return;
        };
        let entries: Vec<(u64, Arc<Vec<u8>>)> = entries
            .into_iter()
            .map(|(seq, bytes)| (seq, Arc::new(bytes)))
            .collect();
        let frame = Frame::Entries {
            entries: entries
                .iter()
                .map(|(seq, bytes)| (*seq, serde_bytes::ByteBuf::from(bytes.as_slice())))
                .collect(),
            up_to: last,
        }
        .encode();
        let _ = room.live.send(Arc::new(Batch {
            origin,
            first,
            last,
            entries,
            frame,
        }));
    }

    /// Adds an authenticated connection to its workspace's room, unless the room is full.
    fn join(
        &self,
        ws: Ws,
        key: Key,
        connection: u64,
        config: &Config,
    ) -> Option<(broadcast::Receiver<Arc<Batch>>, watch::Receiver<bool>)> {
        let mut rooms = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let room = rooms.entry(ws).or_insert_with(|| Room {
            live: broadcast::channel(config.live_batches.max(1)).0,
            members: HashMap::new(),
        });
        if room.members.len() >= config.max_per_workspace {
            return None;
        }
        let (kick_tx, kick_rx) = watch::channel(false);
        room.members.insert(connection, (key, kick_tx));
        Some((room.live.subscribe(), kick_rx))
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

    /// Closes every connection of a revoked device.
    fn kick(&self, ws: Ws, key: &Key) {
        let rooms = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(room) = rooms.get(&ws) {
            for (member, kick) in room.members.values() {
                if member == key {
                    let _ = kick.send(true);
                }
            }
        }
    }
}

/// Sends one frame, giving up after the send timeout (a reader that does not drain).
async fn send(sink: &mut Sink, bytes: Vec<u8>, limit: Duration) -> Result<()> {
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
            Message::Text(_) => bail!("text messages are not part of the protocol"),
        }
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
    let upgrade = tokio::select! {
        result = timeout(
            handshake_limit,
            tokio_tungstenite::accept_async_with_config(tcp, Some(config.websocket())),
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
    let Some((mut live, mut kick)) = shared
        .rooms
        .join(session.ws, session.key, session.id, config)
    else {
        return Err(refuse(
            &mut sink,
            RefusedCode::Busy,
            "the workspace has too many connections on this relay: try again later",
            send_limit,
        )
        .await);
    };
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
    let (ws, key) = match recv(source).await? {
        Some(Frame::Hello {
            version,
            workspace,
            key,
        }) => {
            if version != PROTOCOL_VERSION {
                return Err(refuse(
                    sink,
                    RefusedCode::Version,
                    &format!(
                        "this relay speaks protocol version {PROTOCOL_VERSION}, the client {version}: upgrade the older side"
                    ),
                    limit,
                )
                .await);
            }
            let (Ok(ws), Ok(key)) = (
                <Ws>::try_from(workspace.as_slice()),
                <Key>::try_from(key.as_slice()),
            ) else {
                return Err(refuse(
                    sink,
                    RefusedCode::Protocol,
                    "Hello needs a 16-byte workspace id and a 32-byte key",
                    limit,
                )
                .await);
            };
            (ws, key)
        }
        Some(other) => {
            return Err(refuse(
                sink,
                RefusedCode::Protocol,
                &format!("expected Hello, got {}", other.name()),
                limit,
            )
            .await);
        }
        None => bail!("closed before Hello"),
    };
    let mut nonce = [0u8; 32];
    getrandom::getrandom(&mut nonce)
        .map_err(|e| anyhow!("the system random source failed: {e}"))?;
    let relay = shared.store.id();
    let challenge = Frame::Challenge {
        nonce: nonce.to_vec(),
        relay: relay.to_vec(),
    };
    send(sink, challenge.encode(), limit).await?;
    let (signature, register) = match recv(source).await? {
        Some(Frame::Prove {
            signature,
            register,
        }) => (signature, register),
        Some(other) => {
            return Err(refuse(
                sink,
                RefusedCode::Protocol,
                &format!("expected Prove, got {}", other.name()),
                limit,
            )
            .await);
        }
        None => bail!("closed before Prove"),
    };
    let message = auth_message(&relay, &nonce, &ws, &key);
    if crate::membership::verify_signature(&key, &message, &signature, "authentication").is_err() {
        return Err(refuse(
            sink,
            RefusedCode::BadProof,
            "the authentication signature does not verify for this key",
            limit,
        )
        .await);
    }
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
                        catch_up(shared, session.ws, &mut cursor, sink, limit).await?;
                        send(sink, Frame::CaughtUp { head: cursor }.encode(), limit).await?;
                        sent_up_to = Some(cursor);
                    }
                    Frame::Push { id, envelopes } => {
                        let results = push(shared, session, envelopes).await?;
                        send(sink, Frame::Stored { id, results }.encode(), limit).await?;
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
    loop {
        let after = *cursor;
        let entries = blocking(shared, move |store| {
            store.read(&ws, after, MAX_BATCH_ENTRIES, MAX_BATCH_BYTES)
        })
        .await?;
        let Some(&(last, _)) = entries.last() else {
            return Ok(());
        };
        let frame = Frame::Entries {
            entries: entries
                .into_iter()
                .map(|(seq, bytes)| (seq, serde_bytes::ByteBuf::from(bytes)))
                .collect(),
            up_to: last,
        };
        send(sink, frame.encode(), limit).await?;
        *cursor = last;
    }
}

/// Forwards a live batch, or reads the log when the batch does not follow the cursor.
async fn forward(
    shared: &Arc<Shared>,
    session: &Session,
    batch: &Batch,
    cursor: &mut u64,
    sink: &mut Sink,
    limit: Duration,
) -> Result<()> {
    if batch.last <= *cursor {
        return Ok(());
    }
    if batch.first > *cursor + 1 {
        return catch_up(shared, session.ws, cursor, sink, limit).await;
    }
    if batch.origin == session.id {
        // The client knows its own entries from `Stored`.
    } else if batch.first == *cursor + 1 {
        send(sink, batch.frame.clone(), limit).await?;
    } else {
        let frame = Frame::Entries {
            entries: batch
                .entries
                .iter()
                .filter(|(seq, _)| *seq > *cursor)
                .map(|(seq, bytes)| (*seq, serde_bytes::ByteBuf::from(bytes.as_slice())))
                .collect(),
            up_to: batch.last,
        };
        send(sink, frame.encode(), limit).await?;
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
    let mut results: Vec<Option<PushResult>> = Vec::with_capacity(envelopes.len());
    let mut incoming = Vec::new();
    for bytes in envelopes {
        match Envelope::decode(&bytes) {
            Err(e) => results.push(Some(PushResult::Rejected(e.to_string()))),
            Ok(envelope) if envelope.workspace_id() != session.ws => results.push(Some(
                PushResult::Rejected("the envelope belongs to another workspace".into()),
            )),
            Ok(envelope) => {
                let mut author = [0; 32];
                author.copy_from_slice(&envelope.author);
                incoming.push(Incoming {
                    hash: envelope.hash(),
                    author,
                    bytes: envelope.encode(),
                });
                results.push(None);
            }
        }
    }
    let mut stored = if incoming.is_empty() {
        Vec::new().into_iter()
    } else {
        let (reply, answer) = oneshot::channel();
        shared
            .writer
            .send(WriteJob {
                ws: session.ws,
                origin: session.id,
                incoming,
                reply,
            })
            .await
            .map_err(|_| anyhow!("the relay is shutting down"))?;
        answer
            .await
            .map_err(|_| anyhow!("the relay's writer stopped"))??
            .into_iter()
    };
    Ok(results
        .into_iter()
        .map(|r| {
            r.or_else(|| stored.next())
                .unwrap_or_else(|| PushResult::Rejected("lost by the relay".into()))
        })
        .collect())
}

async fn revoke(shared: &Arc<Shared>, session: &Session, member: Vec<u8>) -> Result<Frame> {
    let Ok(member_key) = <Key>::try_from(member.as_slice()) else {
        return Ok(Frame::Error {
            reason: "Revoke needs a 32-byte member key".into(),
        });
    };
    let (ws, by) = (session.ws, session.key);
    let result = blocking(shared, move |store| {
        store.revoke(&ws, &by, &member_key, now_ms())
    })
    .await?;
    Ok(match result {
        Ok(()) => {
            shared.rooms.kick(ws, &member_key);
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
