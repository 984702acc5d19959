//! The relay over real loopback websockets, served in-process: authentication and the
//! access matrix (every refusal sends nothing of the workspace), pushes that are durable,
//! deduplicated and forwarded, bounds on bad input, and graceful shutdown.

use std::time::Duration;

use ed25519_dalek::{Signer, SigningKey};
use futures_util::{SinkExt, StreamExt};
use meridian_relay::Envelope;
use meridian_relay::membership::{JoinProof, invite_message, join_message, workspace_id};
use meridian_relay::protocol::{
    Frame, PROTOCOL_VERSION, PushResult, RefusedCode, Register, auth_message,
};
use meridian_relay::server::{Config, serve};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

const CANARY: &[u8] = b"CANARY-7f3a9e-the-relay-must-not-send-this";

struct Relay {
    url: String,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    _dir: tempfile::TempDir,
}

async fn start(config: Config) -> Relay {
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/v1", listener.local_addr().unwrap());
    let (stop, stopped) = oneshot::channel::<()>();
    let data = dir.path().to_path_buf();
    let task = tokio::spawn(async move {
        serve(listener, &data, config, async {
            let _ = stopped.await;
        })
        .await
    });
    Relay {
        url,
        stop: Some(stop),
        task,
        _dir: dir,
    }
}

impl Relay {
    async fn shutdown(mut self) -> tempfile::TempDir {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(15), &mut self.task)
            .await
            .expect("the relay stops")
            .unwrap()
            .unwrap();
        self._dir
    }
}

struct Device {
    key: SigningKey,
}

impl Device {
    fn new(seed: u8) -> Device {
        Device {
            key: SigningKey::from_bytes(&[seed; 32]),
        }
    }

    fn public(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }
}

async fn send(socket: &mut Socket, frame: &Frame) {
    socket
        .send(Message::Binary(frame.encode().into()))
        .await
        .unwrap();
}

/// The next frame, or `None` when the relay closed the connection.
async fn next(socket: &mut Socket) -> Option<Frame> {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .expect("the relay answers within 10 s");
        match message {
            Some(Ok(Message::Binary(bytes))) => return Some(Frame::decode(&bytes).unwrap()),
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return None,
            Some(Ok(_)) => continue,
        }
    }
}

/// Every frame until the relay closes the connection.
async fn drain(socket: &mut Socket) -> Vec<Frame> {
    let mut frames = Vec::new();
    while let Some(frame) = next(socket).await {
        frames.push(frame);
    }
    frames
}

/// Connects and authenticates; returns the socket and the relay's answer to Prove.
async fn handshake(
    url: &str,
    device: &Device,
    ws: [u8; 16],
    register: Option<Register>,
) -> (Socket, Frame) {
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    send(
        &mut socket,
        &Frame::Hello {
            version: PROTOCOL_VERSION,
            workspace: ws.to_vec(),
            key: device.public().to_vec(),
        },
    )
    .await;
    let Some(Frame::Challenge { nonce, relay }) = next(&mut socket).await else {
        panic!("expected a challenge");
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
    let answer = next(&mut socket).await.expect("an answer to Prove");
    (socket, answer)
}

/// A workspace created by `creator` on the relay, holding one canary envelope.
async fn workspace_with_canary(url: &str, creator: &Device) -> ([u8; 16], Socket) {
    let salt = [4u8; 16];
    let ws = workspace_id(&creator.public(), &salt);
    let (mut socket, answer) = handshake(
        url,
        creator,
        ws,
        Some(Register::Create {
            salt: salt.to_vec(),
        }),
    )
    .await;
    assert!(matches!(answer, Frame::Welcome { head: 0 }), "{answer:?}");
    let envelope = Envelope::sign(&creator.key, ws, [1; 16], [2; 24], |_| CANARY.to_vec());
    send(
        &mut socket,
        &Frame::Push {
            id: 1,
            envelopes: vec![serde_bytes::ByteBuf::from(envelope.encode())],
        },
    )
    .await;
    assert_eq!(
        next(&mut socket).await,
        Some(Frame::Stored {
            id: 1,
            results: vec![PushResult::Stored(1)]
        })
    );
    (ws, socket)
}

fn invite(inviter: &Device, ws: [u8; 16], member: &Device, expires: i64, seed: u8) -> JoinProof {
    let invite = SigningKey::from_bytes(&[seed; 32]);
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

const FAR: i64 = i64::MAX / 2;

/// A refused access: what it is, who tries, for which workspace, with what, and the refusal.
type Case = (
    &'static str,
    Device,
    [u8; 16],
    Option<Register>,
    RefusedCode,
);

fn assert_refused(answer: &Frame, expected: RefusedCode) {
    match answer {
        Frame::Refused { code, reason } => {
            assert_eq!(*code, expected, "{reason}");
            assert!(!reason.is_empty());
        }
        other => panic!("expected a refusal ({expected:?}), got {other:?}"),
    }
}

fn holds_canary(frames: &[Frame]) -> bool {
    frames
        .iter()
        .any(|f| f.encode().windows(CANARY.len()).any(|w| w == CANARY))
}

#[tokio::test]
async fn every_refused_access_gets_nothing_of_the_workspace() {
    let relay = start(Config::default()).await;
    let ana = Device::new(1);
    let (ws, _ana_socket) = workspace_with_canary(&relay.url, &ana).await;

    // The control: an invited member gets the canary.
    let bo = Device::new(2);
    let (mut socket, answer) = handshake(
        &relay.url,
        &bo,
        ws,
        Some(Register::Join(invite(&ana, ws, &bo, FAR, 50))),
    )
    .await;
    assert!(matches!(answer, Frame::Welcome { .. }), "{answer:?}");
    send(&mut socket, &Frame::Subscribe { after: 0 }).await;
    let entries = next(&mut socket).await.unwrap();
    assert!(holds_canary(&[entries]), "a member receives the log");

    let stranger = Device::new(3);
    let cases: Vec<Case> = vec![
        (
            "non-member",
            Device::new(3),
            ws,
            None,
            RefusedCode::NotMember,
        ),
        (
            "unknown workspace",
            Device::new(3),
            [9; 16],
            None,
            RefusedCode::UnknownWorkspace,
        ),
        (
            "claims to create someone else's workspace",
            Device::new(3),
            ws,
            Some(Register::Create { salt: vec![4; 16] }),
            RefusedCode::NotMember,
        ),
        (
            "creates a workspace id not derived from its key",
            Device::new(3),
            [8; 16],
            Some(Register::Create { salt: vec![4; 16] }),
            RefusedCode::BadProof,
        ),
        (
            "stolen invite used a second time",
            Device::new(4),
            ws,
            Some(Register::Join(invite(&ana, ws, &Device::new(4), FAR, 50))),
            RefusedCode::InviteUsed,
        ),
        (
            "expired invite",
            Device::new(5),
            ws,
            Some(Register::Join(invite(&ana, ws, &Device::new(5), 1, 51))),
            RefusedCode::InviteExpired,
        ),
        (
            "invite for another workspace",
            Device::new(6),
            ws,
            Some(Register::Join(invite(
                &ana,
                [7; 16],
                &Device::new(6),
                FAR,
                52,
            ))),
            RefusedCode::BadProof,
        ),
        (
            "invite made by a non-member",
            Device::new(7),
            ws,
            Some(Register::Join(invite(
                &stranger,
                ws,
                &Device::new(7),
                FAR,
                53,
            ))),
            RefusedCode::BadProof,
        ),
        (
            "another member's invite proof, replayed for this key",
            Device::new(8),
            ws,
            Some(Register::Join(invite(&ana, ws, &bo, FAR, 54))),
            RefusedCode::BadProof,
        ),
    ];
    for (what, device, ws, register, code) in cases {
        let (mut socket, answer) = handshake(&relay.url, &device, ws, register).await;
        assert_refused(&answer, code);
        let mut frames = vec![answer];
        // Whatever the refused device sends next, nothing more comes back.
        send(&mut socket, &Frame::Subscribe { after: 0 }).await;
        frames.extend(drain(&mut socket).await);
        assert!(!holds_canary(&frames), "{what}: received workspace data");
        assert!(
            frames
                .iter()
                .all(|f| !matches!(f, Frame::Entries { .. } | Frame::Welcome { .. })),
            "{what}: {frames:?}"
        );
    }

    // A removed member: refused from then on, and disconnected at once if connected.
    let (ana_socket, _) = handshake(&relay.url, &ana, ws, None).await;
    let mut ana_socket = ana_socket;
    send(
        &mut ana_socket,
        &Frame::Revoke {
            member: bo.public().to_vec(),
        },
    )
    .await;
    assert_eq!(
        next(&mut ana_socket).await,
        Some(Frame::Revoked {
            member: bo.public().to_vec()
        })
    );
    let closing = drain(&mut socket).await;
    assert!(
        closing.iter().any(|f| matches!(
            f,
            Frame::Refused {
                code: RefusedCode::Removed,
                ..
            }
        )),
        "{closing:?}"
    );
    let (mut socket, answer) = handshake(&relay.url, &bo, ws, None).await;
    assert_refused(&answer, RefusedCode::Removed);
    assert!(!holds_canary(&drain(&mut socket).await));

    // Only the creator revokes.
    let cy = Device::new(10);
    let (mut cy_socket, answer) = handshake(
        &relay.url,
        &cy,
        ws,
        Some(Register::Join(invite(&ana, ws, &cy, FAR, 55))),
    )
    .await;
    assert!(matches!(answer, Frame::Welcome { .. }));
    send(
        &mut cy_socket,
        &Frame::Revoke {
            member: ana.public().to_vec(),
        },
    )
    .await;
    assert!(matches!(
        next(&mut cy_socket).await,
        Some(Frame::Error { .. })
    ));
    relay.shutdown().await;
}

#[tokio::test]
async fn a_replayed_authentication_is_refused() {
    let relay = start(Config::default()).await;
    let ana = Device::new(1);
    let (ws, _socket) = workspace_with_canary(&relay.url, &ana).await;
    // Record Ana's proof for one challenge...
    let (mut first, _) = tokio_tungstenite::connect_async(relay.url.as_str())
        .await
        .unwrap();
    let hello = Frame::Hello {
        version: PROTOCOL_VERSION,
        workspace: ws.to_vec(),
        key: ana.public().to_vec(),
    };
    send(&mut first, &hello).await;
    let Some(Frame::Challenge { nonce, relay: id }) = next(&mut first).await else {
        panic!()
    };
    let signature = ana.key.sign(&auth_message(&id, &nonce, &ws, &ana.public()));
    // ...and replay it on another connection, which gets another challenge.
    let (mut second, _) = tokio_tungstenite::connect_async(relay.url.as_str())
        .await
        .unwrap();
    send(&mut second, &hello).await;
    let Some(Frame::Challenge { .. }) = next(&mut second).await else {
        panic!()
    };
    send(
        &mut second,
        &Frame::Prove {
            signature: signature.to_bytes().to_vec(),
            register: None,
        },
    )
    .await;
    let frames = drain(&mut second).await;
    assert_refused(&frames[0], RefusedCode::BadProof);
    assert!(!holds_canary(&frames));
    relay.shutdown().await;
}

#[tokio::test]
async fn pushes_are_deduplicated_forwarded_and_checked() {
    let relay = start(Config::default()).await;
    let ana = Device::new(1);
    let (ws, mut ana_socket) = workspace_with_canary(&relay.url, &ana).await;
    let bo = Device::new(2);
    let (mut bo_socket, _) = handshake(
        &relay.url,
        &bo,
        ws,
        Some(Register::Join(invite(&ana, ws, &bo, FAR, 50))),
    )
    .await;
    send(&mut bo_socket, &Frame::Subscribe { after: 1 }).await;
    assert_eq!(
        next(&mut bo_socket).await,
        Some(Frame::CaughtUp { head: 1 })
    );

    let good = Envelope::sign(&ana.key, ws, [1; 16], [3; 24], |_| b"second".to_vec());
    let mut forged = Envelope::sign(&ana.key, ws, [1; 16], [4; 24], |_| b"forged".to_vec());
    forged.ciphertext[0] ^= 1;
    let elsewhere = Envelope::sign(&ana.key, [7; 16], [1; 16], [5; 24], |_| b"x".to_vec());
    let stranger = Envelope::sign(&Device::new(9).key, ws, [1; 16], [6; 24], |_| b"y".to_vec());
    let push = Frame::Push {
        id: 2,
        envelopes: [&good, &forged, &elsewhere, &stranger, &good]
            .iter()
            .map(|e| serde_bytes::ByteBuf::from(e.encode()))
            .chain([serde_bytes::ByteBuf::from(vec![0xff; 10])])
            .collect(),
    };
    send(&mut ana_socket, &push).await;
    let Some(Frame::Stored { id: 2, results }) = next(&mut ana_socket).await else {
        panic!("expected Stored")
    };
    assert_eq!(results[0], PushResult::Stored(2));
    for (i, result) in results.iter().enumerate().skip(1) {
        if i == 4 {
            assert_eq!(
                *result,
                PushResult::Duplicate(2),
                "the same envelope twice is stored once"
            );
        } else {
            assert!(matches!(result, PushResult::Rejected(_)), "{i}: {result:?}");
        }
    }
    // Bo receives exactly the new envelope, live.
    match next(&mut bo_socket).await {
        Some(Frame::Entries { entries, up_to: 2 }) => {
            assert_eq!(entries.len(), 1);
            assert_eq!(entries[0].1.as_slice(), good.encode().as_slice());
        }
        other => panic!("expected the live entry, got {other:?}"),
    }
    // Garbage after the handshake closes that connection only.
    ana_socket
        .send(Message::Binary(vec![0xff, 0x00].into()))
        .await
        .unwrap();
    let frames = drain(&mut ana_socket).await;
    assert!(
        matches!(
            frames.as_slice(),
            [Frame::Refused {
                code: RefusedCode::Protocol,
                ..
            }]
        ),
        "{frames:?}"
    );
    let again = Envelope::sign(&bo.key, ws, [1; 16], [7; 24], |_| b"third".to_vec());
    send(
        &mut bo_socket,
        &Frame::Push {
            id: 1,
            envelopes: vec![serde_bytes::ByteBuf::from(again.encode())],
        },
    )
    .await;
    assert!(matches!(
        next(&mut bo_socket).await,
        Some(Frame::Stored { .. })
    ));
    relay.shutdown().await;
}

#[tokio::test]
async fn silent_and_oversized_clients_are_cut_off() {
    let config = Config {
        handshake_timeout_secs: 1,
        max_frame_bytes: 64 * 1024,
        ..Config::default()
    };
    let relay = start(config).await;
    let addr = relay
        .url
        .trim_start_matches("ws://")
        .trim_end_matches("/v1")
        .to_string();
    // A TCP connection that never upgrades is closed after the handshake timeout.
    let mut silent = TcpStream::connect(&addr).await.unwrap();
    let mut buffer = [0u8; 16];
    let read = tokio::time::timeout(
        Duration::from_secs(5),
        tokio::io::AsyncReadExt::read(&mut silent, &mut buffer),
    )
    .await
    .expect("the relay closes a silent connection");
    assert!(matches!(read, Ok(0) | Err(_)));
    // A websocket that never says Hello gets a Timeout refusal.
    let (mut socket, _) = tokio_tungstenite::connect_async(relay.url.as_str())
        .await
        .unwrap();
    let frames = drain(&mut socket).await;
    assert!(matches!(
        frames.as_slice(),
        [Frame::Refused {
            code: RefusedCode::Timeout,
            ..
        }]
    ));
    // An oversized message closes the connection.
    let (mut socket, _) = tokio_tungstenite::connect_async(relay.url.as_str())
        .await
        .unwrap();
    let _ = socket
        .send(Message::Binary(vec![0; 128 * 1024].into()))
        .await;
    assert!(drain(&mut socket).await.is_empty());
    // The relay still serves others.
    let ana = Device::new(1);
    let _ = workspace_with_canary(&relay.url, &ana).await;
    relay.shutdown().await;
}

#[tokio::test]
async fn the_log_survives_a_restart() {
    let relay = start(Config::default()).await;
    let ana = Device::new(1);
    let (ws, socket) = workspace_with_canary(&relay.url, &ana).await;
    drop(socket);
    let dir = relay.shutdown().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/v1", listener.local_addr().unwrap());
    let data = dir.path().to_path_buf();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        serve(listener, &data, Config::default(), async {
            let _ = stopped.await;
        })
        .await
    });
    let (mut socket, answer) = handshake(&url, &ana, ws, None).await;
    assert_eq!(answer, Frame::Welcome { head: 1 });
    send(&mut socket, &Frame::Subscribe { after: 0 }).await;
    assert!(holds_canary(&[next(&mut socket).await.unwrap()]));
    let _ = stop.send(());
    task.await.unwrap().unwrap();
}
