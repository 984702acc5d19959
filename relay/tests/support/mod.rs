//! Helpers shared by the relay's tests and its measurements (`benches/reopen.rs` includes
//! this file): devices and the client side of the handshake, the `meridian-relay` binary as
//! a child process with its memory read from `/proc`, and the figures file.
//!
//! Each including crate uses a part of it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ed25519_dalek::{Signer, SigningKey};
use futures_util::{SinkExt, StreamExt};
use meridian_relay::Envelope;
use meridian_relay::membership::{
    DeviceProof, JoinProof, device_code_message, device_join_message, invite_message, join_message,
    workspace_id,
};
use meridian_relay::protocol::{Frame, PROTOCOL_VERSION, Register, auth_message};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// A client's websocket to the relay.
pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Appends `name<TAB>value` to the file named by `MERIDIAN_FIGURES`, when it is set, and
/// prints it either way.
pub fn figure(name: &str, value: impl std::fmt::Display) {
    eprintln!("figure {name} = {value}");
    let Some(path) = std::env::var_os("MERIDIAN_FIGURES") else {
        return;
    };
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("cannot open the figures file {path:?}: {e}"));
    writeln!(file, "{name}\t{value}").expect("the figures file is writable");
}

/// A device key, from a seed.
pub struct Device {
    /// Its signing key.
    pub key: SigningKey,
}

impl Device {
    /// The device whose secret key is the seed's little-endian bytes, repeated.
    pub fn new(seed: u64) -> Device {
        let mut secret = [0u8; 32];
        for chunk in secret.chunks_mut(8) {
            chunk.copy_from_slice(&seed.to_le_bytes());
        }
        Device {
            key: SigningKey::from_bytes(&secret),
        }
    }

    /// Its public key.
    pub fn public(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }

    /// The workspace this device creates with `salt`, and the registration that creates it.
    pub fn workspace(&self, salt: [u8; 16]) -> ([u8; 16], Register) {
        (
            workspace_id(&self.public(), &salt),
            Register::Create {
                salt: salt.to_vec(),
            },
        )
    }

    /// An envelope of `size` ciphertext bytes for a document of `ws`, unique per `nonce`.
    pub fn envelope(&self, ws: [u8; 16], nonce: u64, size: usize) -> Envelope {
        let mut nonce_bytes = [0u8; 24];
        nonce_bytes[..8].copy_from_slice(&nonce.to_le_bytes());
        Envelope::sign(&self.key, ws, [1; 16], nonce_bytes, |_| {
            let mut ciphertext = vec![0u8; size];
            let mut state = nonce.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
            for byte in &mut ciphertext {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                *byte = state as u8;
            }
            ciphertext
        })
    }
}

/// An invite proof by `inviter` for `member`, with the one-time invite key from `seed`.
pub fn invite(
    inviter: &Device,
    ws: [u8; 16],
    member: &Device,
    expires: i64,
    seed: u64,
) -> JoinProof {
    let invite = Device::new(seed).key;
    let public = invite.verifying_key().to_bytes();
    JoinProof {
        invite_public: public.to_vec(),
        inviter: inviter.public().to_vec(),
        expires,
        inviter_sig: inviter
            .key
            .sign(&invite_message(&ws, &public, expires))
            .to_bytes()
            .to_vec(),
        join_sig: invite
            .sign(&join_message(&ws, &member.public()))
            .to_bytes()
            .to_vec(),
    }
}

/// The registration of `member` with an invite by `inviter` (see [`invite`]).
pub fn join(
    inviter: &Device,
    ws: [u8; 16],
    member: &Device,
    expires: i64,
    seed: u64,
) -> Option<Register> {
    Some(Register::Join(invite(inviter, ws, member, expires, seed)))
}

/// The registration of `device` as another device of `member`, with a one-time code
/// `member` made from `seed` (the node's `device add`).
pub fn device_of(member: &Device, ws: [u8; 16], device: &Device, seed: u64) -> Option<Register> {
    let code = Device::new(seed).key;
    let code_public = code.verifying_key().to_bytes().to_vec();
    let public = member.public().to_vec();
    Some(Register::Device(DeviceProof {
        member: public.clone(),
        by: public.clone(),
        code_public: code_public.clone(),
        expires: FAR,
        by_sig: member
            .key
            .sign(&device_code_message(&ws, &public, &code_public, FAR))
            .to_bytes()
            .to_vec(),
        code_sig: code
            .sign(&device_join_message(&ws, &public, &device.public()))
            .to_bytes()
            .to_vec(),
    }))
}

/// An expiry far in the future.
pub const FAR: i64 = i64::MAX / 2;

/// Sends one frame.
pub async fn send(socket: &mut Socket, frame: &Frame) {
    socket
        .send(Message::Binary(frame.encode().into()))
        .await
        .expect("the frame is sent");
}

/// Pushes the envelopes as one `Push` and returns the relay's next frame (its answer, on a
/// connection that did not subscribe).
pub async fn push(socket: &mut Socket, id: u64, envelopes: &[Envelope]) -> Option<Frame> {
    let envelopes = envelopes
        .iter()
        .map(|e| serde_bytes::ByteBuf::from(e.encode()))
        .collect();
    send(socket, &Frame::Push { id, envelopes }).await;
    next(socket).await
}

/// The next frame, or `None` when the relay closed the connection.
pub async fn next(socket: &mut Socket) -> Option<Frame> {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .expect("the relay answers within 10 s");
        match message {
            Some(Ok(Message::Binary(bytes))) => {
                return Some(Frame::decode(&bytes).expect("the relay sends valid frames"));
            }
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return None,
            Some(Ok(_)) => continue,
        }
    }
}

/// Every frame until the relay closes the connection.
pub async fn drain(socket: &mut Socket) -> Vec<Frame> {
    let mut frames = Vec::new();
    while let Some(frame) = next(socket).await {
        frames.push(frame);
    }
    frames
}

/// Connects and authenticates; returns the socket and the relay's answer to Prove.
pub async fn handshake(
    url: &str,
    device: &Device,
    ws: [u8; 16],
    register: Option<Register>,
) -> (Socket, Frame) {
    try_handshake(url, device, ws, register)
        .await
        .unwrap_or_else(|why| panic!("handshake with {url}: {why}"))
}

/// [`handshake`] by a client that says in `Hello` whether it reads `Deflated` frames.
pub async fn handshake_deflate(
    url: &str,
    device: &Device,
    ws: [u8; 16],
    register: Option<Register>,
    deflate: bool,
) -> (Socket, Frame) {
    try_handshake_with(url, device, ws, register, deflate)
        .await
        .unwrap_or_else(|why| panic!("handshake with {url}: {why}"))
}

/// [`handshake`], failing with a reason instead of panicking (for a relay that is not up).
pub async fn try_handshake(
    url: &str,
    device: &Device,
    ws: [u8; 16],
    register: Option<Register>,
) -> Result<(Socket, Frame), String> {
    try_handshake_with(url, device, ws, register, false).await
}

async fn try_handshake_with(
    url: &str,
    device: &Device,
    ws: [u8; 16],
    register: Option<Register>,
    deflate: bool,
) -> Result<(Socket, Frame), String> {
    let (mut socket, _) = tokio_tungstenite::connect_async(url)
        .await
        .map_err(|e| format!("cannot connect: {e}"))?;
    send(
        &mut socket,
        &Frame::Hello {
            version: PROTOCOL_VERSION,
            workspace: ws.to_vec(),
            key: device.public().to_vec(),
            deflate,
        },
    )
    .await;
    let Some(Frame::Challenge { nonce, relay }) = next(&mut socket).await else {
        return Err("no challenge".into());
    };
    let message = auth_message(&relay, &nonce, &ws, &device.public());
    send(
        &mut socket,
        &Frame::Prove {
            signature: device.key.sign(&message).to_bytes().to_vec(),
            register,
        },
    )
    .await;
    let answer = next(&mut socket).await.ok_or("no answer to Prove")?;
    Ok((socket, answer))
}

/// The `meridian-relay` binary cargo built for this package.
pub fn relay_binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_meridian-relay"))
}

/// (resident, peak resident) memory of a process in KiB, from `/proc/PID/status`.
pub fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .expect("/proc/PID/status is readable");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} in /proc/PID/status"))
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// A `meridian-relay serve` child process on loopback. Killed when dropped.
pub struct RelayProcess {
    child: Option<Child>,
    data: PathBuf,
    config: PathBuf,
    log: PathBuf,
    /// `127.0.0.1:PORT`.
    pub addr: String,
}

impl RelayProcess {
    /// Starts a relay on a free port, its database in `dir/data`, with the config `toml`.
    pub fn start(dir: &Path, toml: &str) -> RelayProcess {
        let config = dir.join("relay.toml");
        std::fs::write(&config, toml).expect("the config file is written");
        let mut relay = RelayProcess {
            child: None,
            data: dir.join("data"),
            config,
            log: dir.join("relay.log"),
            addr: "127.0.0.1:0".into(),
        };
        relay.spawn();
        relay
    }

    /// Spawns the process on `self.addr` and waits for the address it prints (the relay
    /// prints it once its database is open). Returns how long that took.
    fn spawn(&mut self) -> Duration {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("the relay log opens");
        let started = Instant::now();
        let mut child = Command::new(relay_binary())
            .args(["serve", "--listen", &self.addr, "--data"])
            .arg(&self.data)
            .arg("--config")
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("the relay binary runs");
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let _ = tx.send(lines.next().and_then(Result::ok));
            for _ in lines {}
        });
        let line = rx.recv_timeout(Duration::from_secs(600)).ok().flatten();
        let Some(addr) = line.as_deref().and_then(|line| {
            line.strip_prefix("listening on ws://")
                .map(|rest| rest.trim().trim_end_matches("/v1"))
        }) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the relay did not start ({line:?}):\n{}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
        };
        self.addr = addr.to_string();
        self.child = Some(child);
        started.elapsed()
    }

    /// The websocket URL.
    pub fn url(&self) -> String {
        format!("ws://{}/v1", self.addr)
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("the relay runs").id()
    }

    /// The database file.
    pub fn database(&self) -> PathBuf {
        self.data.join("relay.redb")
    }

    /// Everything the relay logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// (resident, peak resident) memory in KiB.
    pub fn memory_kib(&self) -> (u64, u64) {
        memory_kib(self.pid())
    }

    /// Open file descriptors of the process (sockets included).
    pub fn open_files(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .map(|dir| dir.count())
            .unwrap_or(0)
    }

    /// SIGKILL: no chance to finish anything.
    pub fn kill(&mut self) {
        let mut child = self.child.take().expect("the relay runs");
        child.kill().expect("the relay can be killed");
        child.wait().expect("the killed relay is reaped");
    }

    /// SIGTERM, and waits for a clean exit.
    pub fn stop(&mut self) {
        let mut child = self.child.take().expect("the relay runs");
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(status) = child.try_wait().expect("the relay can be waited for") {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "the relay did not stop on SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(10));
        };
        assert!(
            status.success(),
            "the relay exited with {status}:\n{}",
            self.log()
        );
    }

    /// Starts it again on the same port and data; returns how long until it listened.
    pub fn restart(&mut self) -> Duration {
        assert!(self.child.is_none(), "stop or kill the relay first");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            // The old port may linger for a moment.
            if std::net::TcpListener::bind(&self.addr).is_ok() || Instant::now() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.spawn()
    }
}

impl Drop for RelayProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!("--- relay log ---\n{}", self.log());
        }
    }
}
