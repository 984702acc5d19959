//! What the relay sends on one connection, and the forwarding of live entries to it.
//!
//! Every byte the relay writes to a client goes through the connection's [`Outgoing`], under
//! its lock: the connection's task (answers, catch-up frames, and tungstenite's own upgrade
//! response and control frames), and the fan-out thread (live entries). So frames never
//! interleave, and the fan-out needs no help from the task: it writes a live frame, encoded
//! once for every member, straight to the socket with one non-blocking `write(2)` when
//! nothing is queued before it. A push then costs the relay about one system call per
//! member: no task woken, no timer armed, no copy.
//!
//! Only what the socket does not take at once is queued, up to [`QUEUE_BYTES`] of live
//! frames (shared with every other member, not copied), and the connection's task is woken
//! to drain it within the send timeout. A member further behind is paused and reads the log
//! instead, as one whose next batch does not follow its cursor.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::{Mutex, MutexGuard};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use anyhow::{Context as _, Result};
use tokio::io::AsyncWrite;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::Notify;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Bytes;

use super::SEND_BATCH_BYTES;
use crate::handling::{self, Forward};

/// Whether a TLS peer may still send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Opened {
    /// More may come.
    Open,
    /// The peer sent close_notify: the stream has ended.
    Closed,
}

/// A client that took nothing of what was queued for it within the send timeout.
#[derive(Debug, thiserror::Error)]
#[error("the client did not read for {0}s: disconnected")]
pub struct SlowReader(pub u64);

/// New entries of one workspace, as the writer committed them.
pub struct Batch {
    /// The connection that pushed them (it is not sent them back).
    pub origin: u64,
    /// The first entry's sequence number.
    pub first: u64,
    /// The last entry's sequence number.
    pub last: u64,
    /// The websocket message `Entries` with all of them, encoded once for every receiver,
    /// when it is at most [`super::LIVE_FRAME_BYTES`] and a receiver needs it plain;
    /// receivers read larger batches from the log.
    pub frame: Option<Bytes>,
    /// The same `Entries` as a `Deflated` message, compressed once for every receiver that
    /// reads those, when it has several entries and compressing makes it smaller.
    pub deflated: Option<Bytes>,
}

impl Batch {
    /// The message for a receiver that reads `Deflated` frames (`deflate`) or not, if the
    /// batch is kept live for it.
    fn frame_for(&self, deflate: bool) -> Option<&Bytes> {
        match (deflate, &self.deflated) {
            (true, Some(deflated)) => Some(deflated),
            _ => self.frame.as_ref(),
        }
    }
}

/// The most bytes of live frames queued for a member whose socket is full; past that it is
/// paused and reads the log once it drains.
pub const QUEUE_BYTES: usize = SEND_BATCH_BYTES;

/// The most queued frames written by one system call.
const WRITE_SLICES: usize = 64;

/// The write side of one connection, shared by its task, its websocket and the fan-out.
pub struct Outgoing {
    state: Mutex<State>,
    /// Wakes the connection's task: bytes are queued, it must read the log, or the device
    /// was removed. Nothing on the fast path uses it.
    pub wake: Notify,
}

/// The part of [`Outgoing`] under its lock.
pub struct State {
    /// `None` once the connection ended (its socket closes even while the fan-out still
    /// holds this).
    tcp: Option<OwnedWriteHalf>,
    /// Bytes to write before anything else, in order; the front may be a frame's tail.
    queue: VecDeque<Bytes>,
    queued: usize,
    /// Queued pieces written out so far: progress, for the send timeout.
    written: u64,
    /// `None` until the client subscribes; then the sequence number it has been sent (or
    /// queued) every entry up to, besides its own pushes.
    pub cursor: Option<u64>,
    /// The fan-out must not write: the task is reading the log for this member, or waits for
    /// its push to be stored (the client must get `Stored` before any later entry).
    pub paused: bool,
    /// A batch came while paused that the member does not have: read the log.
    pub missed: bool,
    /// The device was removed: nothing more of the workspace may be written.
    pub removed: bool,
    /// The client reads `Deflated` frames (it said so in `Hello`).
    pub deflate: bool,
    /// A write failed; the task ends the connection.
    failed: Option<io::ErrorKind>,
    /// TLS, when the relay terminates it itself: every byte written is sealed here first,
    /// and the reader opens what arrives through the same connection (under this lock).
    tls: Option<Box<rustls::ServerConnection>>,
}

impl Outgoing {
    /// The write side of a new connection (TLS when `tls` is given).
    pub fn new(tcp: OwnedWriteHalf, tls: Option<rustls::ServerConnection>) -> Outgoing {
        let tls = tls.map(|mut tls| {
            // Frames are bounded by the relay's own limits, and a frame must be sealed
            // whole: no second limit inside rustls.
            tls.set_buffer_limit(None);
            Box::new(tls)
        });
        Outgoing {
            state: Mutex::new(State {
                tcp: Some(tcp),
                queue: VecDeque::new(),
                queued: 0,
                written: 0,
                cursor: None,
                paused: false,
                missed: false,
                removed: false,
                deflate: false,
                failed: None,
                tls,
            }),
            wake: Notify::new(),
        }
    }

    /// Takes the lock (a panic elsewhere leaves the state usable: every change to it is a
    /// single assignment or queue operation).
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Forwards committed batches, in commit order, to this member (connection
    /// `connection`; the fan-out thread): the frames of those that directly follow its
    /// cursor go in one system call; otherwise it is left to read the log. True when this
    /// offer left the member behind (it reads the log from now on).
    pub fn offer(&self, connection: u64, batches: &[&Batch]) -> bool {
        let (wake, lagged) = {
            let mut state = self.lock();
            let was_paused = state.paused;
            let wake = state.offer(connection, batches);
            (wake, !was_paused && state.paused)
        };
        if wake {
            self.wake.notify_one();
        }
        lagged
    }

    /// Closes the socket's write side and drops what is queued: the connection ended.
    pub fn close(&self) {
        let mut state = self.lock();
        state.tcp = None;
        state.queue.clear();
        state.queued = 0;
    }

    /// Waits until everything queued is written. Gives up when the client takes nothing of
    /// it for `limit`: no timer is armed unless something is queued.
    pub async fn drained(&self, limit: Duration) -> Result<()> {
        loop {
            let before = {
                let state = self.lock();
                if state.queue.is_empty() && state.failed.is_none() {
                    return Ok(());
                }
                state.written
            };
            let progress = std::future::poll_fn(|cx| {
                let mut state = self.lock();
                match state.poll_drain(cx) {
                    Poll::Pending if state.written != before => Poll::Ready(Ok(())),
                    other => other,
                }
            });
            match timeout(limit, progress).await {
                Ok(result) => result.context("the connection failed")?,
                Err(_) => return Err(SlowReader(limit.as_secs()).into()),
            }
        }
    }

    /// [`AsyncWrite::poll_write`] for the websocket (the upgrade response and control
    /// frames): after what is queued, and all of `buf` or nothing, so what the fan-out
    /// writes next never lands inside it.
    pub fn poll_write(&self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let mut state = self.lock();
        ready!(state.poll_drain(cx))?;
        if state.tls.is_some() {
            // Sealed whole and queued behind nothing (the queue just drained).
            state.send(Bytes::copy_from_slice(buf));
            if let Some(kind) = state.failed {
                return Poll::Ready(Err(kind.into()));
            }
            return Poll::Ready(Ok(buf.len()));
        }
        let tcp = state.tcp.as_mut().ok_or_else(closed)?;
        let written = ready!(Pin::new(tcp).poll_write(cx, buf))?;
        if written < buf.len() {
            state.enqueue(Bytes::copy_from_slice(&buf[written..]));
        }
        Poll::Ready(Ok(buf.len()))
    }

    /// [`AsyncWrite::poll_flush`]: everything queued is written.
    pub fn poll_flush(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.lock().poll_drain(cx)
    }

    /// [`AsyncWrite::poll_shutdown`]: flushed, then the write side shut.
    pub fn poll_shutdown(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut state = self.lock();
        if let Some(tls) = state.tls.as_mut()
            && !tls.is_handshaking()
        {
            tls.send_close_notify();
            let sealed = state.sealed_output();
            state.write_raw(sealed);
        }
        ready!(state.poll_drain(cx))?;
        match state.tcp.as_mut() {
            Some(tcp) => Pin::new(tcp).poll_shutdown(cx),
            None => Poll::Ready(Ok(())),
        }
    }
}

impl State {
    /// Writes `frame` after whatever is queued, without waiting: at once when nothing is
    /// queued and the socket takes it, otherwise (the rest of) it is queued for the task.
    pub fn send(&mut self, frame: Bytes) {
        self.send_all(vec![frame]);
    }

    /// [`State::send`] for several frames, in one system call.
    fn send_all(&mut self, frames: Vec<Bytes>) {
        if self.failed.is_some() || self.tcp.is_none() {
            return;
        }
        let frames = match self.tls.as_mut() {
            None => frames,
            Some(tls) => {
                for frame in &frames {
                    if let Err(e) = std::io::Write::write_all(&mut tls.writer(), frame) {
                        self.failed = Some(e.kind());
                        return;
                    }
                }
                self.sealed_output()
            }
        };
        self.write_raw(frames);
    }

    /// What TLS has to send (records sealed from written frames, handshake messages), as
    /// one piece; nothing without TLS.
    fn sealed_output(&mut self) -> Vec<Bytes> {
        let Some(tls) = self.tls.as_mut() else {
            return Vec::new();
        };
        let mut sealed = Vec::new();
        while tls.wants_write() {
            if let Err(e) = tls.write_tls(&mut sealed) {
                self.failed = Some(e.kind());
                return Vec::new();
            }
        }
        if sealed.is_empty() {
            Vec::new()
        } else {
            vec![Bytes::from(sealed)]
        }
    }

    /// Takes in bytes read from the socket (TLS records) and returns what they open to,
    /// writing whatever TLS answers (its handshake) after what is queued. An error is a
    /// peer that does not speak TLS, or speaks it wrong.
    pub fn open_tls(&mut self, records: &[u8], plain: &mut Vec<u8>) -> io::Result<Opened> {
        let mut records = records;
        let mut opened = Opened::Open;
        while !records.is_empty() {
            let Some(tls) = self.tls.as_mut() else {
                return Err(io::Error::other("not a TLS connection"));
            };
            // Nothing is taken once the peer sent close_notify: what follows is ignored.
            if tls.read_tls(&mut records)? == 0 {
                break;
            }
            if let Err(e) = tls.process_new_packets() {
                // The alert rustls queued says why, before the connection ends.
                let sealed = self.sealed_output();
                self.write_raw(sealed);
                return Err(io::Error::new(io::ErrorKind::InvalidData, e));
            }
            // Emptied at each step, so rustls's bounded plaintext buffer never fills.
            opened = self.read_plaintext(plain)?;
            if opened == Opened::Closed {
                break;
            }
        }
        let sealed = self.sealed_output();
        self.write_raw(sealed);
        Ok(opened)
    }

    /// Moves the plaintext TLS has opened into `plain`, and says whether the peer closed
    /// TLS (close_notify): then nothing more will come.
    pub fn read_plaintext(&mut self, plain: &mut Vec<u8>) -> io::Result<Opened> {
        let Some(tls) = self.tls.as_mut() else {
            return Ok(Opened::Open);
        };
        let mut buffer = [0u8; 16 << 10];
        loop {
            match std::io::Read::read(&mut tls.reader(), &mut buffer) {
                Ok(0) => return Ok(Opened::Closed),
                Ok(n) => plain.extend_from_slice(&buffer[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Opened::Open),
                Err(e) => return Err(e),
            }
        }
    }

    /// Whether this connection is TLS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Writes bytes ready for the socket after whatever is queued, without waiting.
    fn write_raw(&mut self, frames: Vec<Bytes>) {
        if self.failed.is_some() || frames.is_empty() {
            return;
        }
        let Some(tcp) = &self.tcp else {
            return;
        };
        if !self.queue.is_empty() {
            frames.into_iter().for_each(|frame| self.enqueue(frame));
            return;
        }
        let result = match frames.as_slice() {
            [frame] => tcp.try_write(frame),
            frames => {
                let slices: Vec<IoSlice<'_>> = frames.iter().map(|f| IoSlice::new(f)).collect();
                tcp.try_write_vectored(&slices)
            }
        };
        let mut written = match result {
            Ok(written) => written,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
            Err(e) => {
                self.failed = Some(e.kind());
                return;
            }
        };
        for frame in frames {
            if written >= frame.len() {
                written -= frame.len();
            } else {
                self.enqueue(frame.slice(written..));
                written = 0;
            }
        }
    }

    /// Whether something waits to be written (or a write failed): the task has to drain.
    pub fn pending(&self) -> bool {
        !self.queue.is_empty() || self.failed.is_some()
    }

    fn enqueue(&mut self, bytes: Bytes) {
        self.queued += bytes.len();
        self.queue.push_back(bytes);
    }

    /// The fan-out's decisions for one member (see [`Outgoing::offer`]); true when the task
    /// must be woken.
    fn offer(&mut self, connection: u64, batches: &[&Batch]) -> bool {
        if self.removed || self.failed.is_some() || self.tcp.is_none() {
            return false;
        }
        let Some(mut cursor) = self.cursor else {
            // Not subscribed yet: its catch-up reads the log.
            return false;
        };
        let mut frames = Vec::new();
        let mut queued = self.queued;
        let mut wake = false;
        for batch in batches {
            let own = batch.origin == connection;
            let frame = batch.frame_for(self.deflate);
            match (
                handling::forward(batch.first, batch.last, cursor, own, frame.is_some()),
                frame,
            ) {
                (Forward::Nothing, _) => {}
                (Forward::Own, _) => cursor = batch.last,
                (Forward::Send | Forward::CatchUp, _) if self.paused => self.missed = true,
                (Forward::Send, Some(frame)) if queued + frame.len() <= QUEUE_BYTES => {
                    queued += frame.len();
                    frames.push(frame.clone());
                    cursor = batch.last;
                }
                (Forward::Send | Forward::CatchUp, _) => {
                    self.paused = true;
                    self.missed = true;
                    wake = true;
                }
            }
        }
        self.cursor = Some(cursor);
        if !frames.is_empty() {
            let was_idle = !self.pending();
            self.send_all(frames);
            wake |= was_idle && self.pending();
        }
        wake
    }

    /// Writes what is queued, several pieces per system call, until nothing is left (ready)
    /// or the socket is full (pending, and the calling task is woken when it drains).
    pub fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(kind) = self.failed {
            return Poll::Ready(Err(io::Error::new(kind, "an earlier write failed")));
        }
        let State {
            tcp,
            queue,
            queued,
            written,
            ..
        } = self;
        let Some(tcp) = tcp.as_mut() else {
            return Poll::Ready(Err(closed()));
        };
        while !queue.is_empty() {
            let slices: Vec<IoSlice<'_>> = queue
                .iter()
                .take(WRITE_SLICES)
                .map(|piece| IoSlice::new(piece))
                .collect();
            let mut done = match ready!(Pin::new(&mut *tcp).poll_write_vectored(cx, &slices)) {
                Ok(0) => {
                    self.failed = Some(io::ErrorKind::WriteZero);
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                Ok(done) => done,
                Err(e) => {
                    self.failed = Some(e.kind());
                    return Poll::Ready(Err(e));
                }
            };
            *queued -= done;
            while done > 0 {
                let Some(front) = queue.front_mut() else {
                    break;
                };
                if done >= front.len() {
                    done -= front.len();
                    queue.pop_front();
                    *written += 1;
                } else {
                    *front = front.slice(done..);
                    done = 0;
                }
            }
        }
        Poll::Ready(Ok(()))
    }
}

fn closed() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "the connection was closed")
}

/// `payload` as the one binary websocket message a server sends: one unmasked final frame.
pub fn binary_message(payload: &[u8]) -> Bytes {
    let mut bytes = Vec::with_capacity(payload.len() + 10);
    bytes.push(0x82);
    match payload.len() {
        n if n < 126 => bytes.push(n as u8),
        n if n <= usize::from(u16::MAX) => {
            bytes.push(126);
            bytes.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            bytes.push(127);
            bytes.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    bytes.extend_from_slice(payload);
    Bytes::from(bytes)
}

#[cfg(test)]
mod tests {
    use tokio_tungstenite::tungstenite::protocol::frame::Frame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

    use super::*;

    /// Members whose sockets take everything get every live frame in commit order, without
    /// a queue or a wake-up (several queued batches in one write), compressed for those
    /// that read `Deflated` frames; a gap pauses a member for the log; a removed member is
    /// written nothing.
    #[tokio::test]
    async fn live_frames_go_straight_to_the_socket() {
        use tokio::io::AsyncReadExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut members = Vec::new();
        for _ in 0..20 {
            let client = tokio::net::TcpStream::connect(addr).await.unwrap();
            let (server, _) = listener.accept().await.unwrap();
            let (read, write) = server.into_split();
            write.writable().await.unwrap();
            let outgoing = Outgoing::new(write, None);
            outgoing.lock().cursor = Some(0);
            outgoing.lock().deflate = members.len() % 2 == 1;
            members.push((client, read, outgoing));
        }
        let batches: Vec<Batch> = (1..=10u8)
            .map(|seq| Batch {
                origin: 999,
                first: u64::from(seq),
                last: u64::from(seq),
                frame: Some(binary_message(&[seq; 300])),
                deflated: Some(binary_message(&[seq; 30])),
            })
            .collect();
        members.last().unwrap().2.lock().removed = true;
        for (connection, (_, _, outgoing)) in members.iter().enumerate() {
            let connection = connection as u64;
            outgoing.offer(connection, &[&batches[0]]);
            outgoing.offer(connection, &batches[1..].iter().collect::<Vec<_>>());
        }
        let expected = |deflate: bool| -> Vec<u8> {
            batches
                .iter()
                .flat_map(|b| b.frame_for(deflate).unwrap().to_vec())
                .collect()
        };
        let live = members.len() - 1;
        for (client, _, outgoing) in &mut members[..live] {
            let expected = expected(outgoing.lock().deflate);
            let (pending, paused, cursor) = {
                let state = outgoing.lock();
                (state.pending(), state.paused, state.cursor)
            };
            assert!(!pending && !paused, "a member was queued or paused");
            assert_eq!(cursor, Some(10));
            let mut received = vec![0; expected.len()];
            client.read_exact(&mut received).await.unwrap();
            assert_eq!(received, expected);
        }
        let (client, _, outgoing) = members.last_mut().unwrap();
        assert_eq!(
            outgoing.lock().cursor,
            Some(0),
            "the removed member moved on"
        );
        outgoing.close();
        let mut rest = Vec::new();
        client.read_to_end(&mut rest).await.unwrap();
        assert!(
            rest.is_empty(),
            "the removed member got {} bytes",
            rest.len()
        );
        // A batch that does not follow the cursor pauses the member for the log.
        let (_, _, outgoing) = &members[0];
        let gap = Batch {
            origin: 999,
            first: 12,
            last: 12,
            frame: batches[0].frame.clone(),
            deflated: None,
        };
        outgoing.offer(0, &[&gap]);
        let state = outgoing.lock();
        assert!(state.paused && state.missed && state.cursor == Some(10));
    }

    #[test]
    fn messages_are_framed_as_tungstenite_frames_them() {
        for len in [0, 1, 125, 126, 127, 65_535, 65_536, 300_000] {
            let payload = vec![7u8; len];
            let mut expected = Vec::new();
            Frame::message(payload.clone(), OpCode::Data(Data::Binary), true)
                .format(&mut expected)
                .unwrap();
            assert_eq!(
                binary_message(&payload).as_ref(),
                expected.as_slice(),
                "{len} bytes"
            );
        }
    }
}
