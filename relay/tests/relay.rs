//! The relay over real loopback websockets, served in-process: authentication and the
//! access matrix, pushes that are durable, deduplicated and forwarded, bounds on bad input,
//! and graceful shutdown.
//!
//! The access matrix: a non-member, an unknown workspace, a claim to create someone else's
//! workspace, a workspace id not derived from the key, the wrong workspace (a member of
//! another workspace on the same relay, with or without that workspace's invite, and a
//! member of this one into the other), a stolen invite used a second time, an expired
//! invite, an invite for another workspace or made by a non-member, another member's
//! invite proof, a replayed authentication (`a_replayed_authentication_is_refused`) and a
//! removed member (connected at the removal, and reconnecting). Each is refused with
//! nothing but the refusal after `Prove`, checked against canary envelopes in the log.

mod support;

use std::time::Duration;

use ed25519_dalek::Signer;
use futures_util::{SinkExt, StreamExt};
use meridian_relay::Envelope;
use meridian_relay::membership::workspace_id;
use meridian_relay::protocol::{
    Frame, MAX_VOUCHES, PROTOCOL_VERSION, PushResult, RefusedCode, Register, VouchResult, Vouchee,
    auth_message,
};
use meridian_relay::server::{Config, HANDSHAKE_BYTES, LIVE_FRAME_BYTES, SEND_BATCH_BYTES, serve};
use support::{Device, FAR, Socket, device_of, drain, handshake, invite, join, next, push, send};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::Message;

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
    assert!(
        matches!(answer, Frame::Welcome { head: 0, .. }),
        "{answer:?}"
    );
    let envelope = Envelope::sign(&creator.key, ws, [1; 16], [2; 24], |_| CANARY.to_vec());
    assert_eq!(
        push(&mut socket, 1, &[envelope]).await,
        Some(Frame::Stored {
            id: 1,
            results: vec![PushResult::Stored(1)]
        })
    );
    (ws, socket)
}

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
    holds(frames, CANARY)
}

fn holds(frames: &[Frame], needle: &[u8]) -> bool {
    frames
        .iter()
        .any(|f| f.encode().windows(needle.len()).any(|w| w == needle))
}

/// What a refused connection received after `Prove`: exactly the refusal, then the relay
/// closed it, whatever the device sent next. The `Challenge` before holds only a nonce and
/// the relay's id, so not one byte of the workspace reached the device.
async fn assert_nothing_after_refusal(
    what: &str,
    mut socket: Socket,
    answer: Frame,
    code: RefusedCode,
) {
    assert_refused(&answer, code);
    let mut frames = vec![answer];
    send(&mut socket, &Frame::Subscribe { after: 0 }).await;
    frames.extend(drain(&mut socket).await);
    assert!(!holds_canary(&frames), "{what}: received workspace data");
    assert_eq!(frames.len(), 1, "{what}: more than the refusal: {frames:?}");
}

#[tokio::test]
async fn every_refused_access_gets_nothing_of_the_workspace() {
    let relay = start(Config::default()).await;
    let ana = Device::new(1);
    let (ws, _ana_socket) = workspace_with_canary(&relay.url, &ana).await;

    // The control: an invited member gets the canary.
    let bo = Device::new(2);
    let (mut socket, answer) = handshake(&relay.url, &bo, ws, join(&ana, ws, &bo, FAR, 50)).await;
    assert!(matches!(answer, Frame::Welcome { .. }), "{answer:?}");
    send(&mut socket, &Frame::Subscribe { after: 0 }).await;
    let entries = next(&mut socket).await.unwrap();
    assert!(holds_canary(&[entries]), "a member receives the log");

    // Another workspace on the same relay, with a member of its own.
    let dee = Device::new(20);
    let (other, _dee_socket) = workspace_with_canary(&relay.url, &dee).await;
    let eve = Device::new(21);
    let (_eve_socket, answer) =
        handshake(&relay.url, &eve, other, join(&dee, other, &eve, FAR, 60)).await;
    assert!(matches!(answer, Frame::Welcome { .. }), "{answer:?}");

    let stranger = Device::new(3);
    let cases: Vec<Case> = vec![
        (
            "wrong workspace: the creator of another workspace",
            Device::new(20),
            ws,
            None,
            RefusedCode::NotMember,
        ),
        (
            "wrong workspace: a member of another, with that workspace's invite",
            Device::new(21),
            ws,
            join(&dee, other, &Device::new(21), FAR, 60),
            RefusedCode::BadProof,
        ),
        (
            "wrong workspace: a member of this one, into another",
            Device::new(2),
            other,
            None,
            RefusedCode::NotMember,
        ),
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
            join(&ana, ws, &Device::new(4), FAR, 50),
            RefusedCode::InviteUsed,
        ),
        (
            "expired invite",
            Device::new(5),
            ws,
            join(&ana, ws, &Device::new(5), 1, 51),
            RefusedCode::InviteExpired,
        ),
        (
            "invite for another workspace",
            Device::new(6),
            ws,
            join(&ana, [7; 16], &Device::new(6), FAR, 52),
            RefusedCode::BadProof,
        ),
        (
            "invite made by a non-member",
            Device::new(7),
            ws,
            join(&stranger, ws, &Device::new(7), FAR, 53),
            RefusedCode::BadProof,
        ),
        (
            "another member's invite proof, replayed for this key",
            Device::new(8),
            ws,
            join(&ana, ws, &bo, FAR, 54),
            RefusedCode::BadProof,
        ),
    ];
    // The cells below: the removed member (live and reconnecting).
    support::figure("access.cells", cases.len() + 2);
    for (what, device, ws, register, code) in cases {
        let (socket, answer) = handshake(&relay.url, &device, ws, register).await;
        assert_nothing_after_refusal(what, socket, answer, code).await;
    }

    // Bo's phone, admitted as Bo's device by his proof: the creator's node may never have
    // heard of it, and it goes with Bo.
    let phone = Device::new(11);
    let (mut phone_socket, answer) =
        handshake(&relay.url, &phone, ws, device_of(&bo, ws, &phone, 56)).await;
    assert!(matches!(answer, Frame::Welcome { .. }), "{answer:?}");
    send(&mut phone_socket, &Frame::Subscribe { after: 0 }).await;
    assert!(holds_canary(&[next(&mut phone_socket).await.unwrap()]));
    assert_eq!(
        next(&mut phone_socket).await,
        Some(Frame::CaughtUp { head: 1 })
    );

    // A removed member: disconnected at once with nothing more, even what is pushed right
    // after the removal, and refused from then on, on every device of theirs.
    let (ana_socket, _) = handshake(&relay.url, &ana, ws, None).await;
    let mut ana_socket = ana_socket;
    assert_eq!(next(&mut socket).await, Some(Frame::CaughtUp { head: 1 }));
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
    let after: &[u8] = b"CANARY-pushed-after-the-removal";
    let envelope = Envelope::sign(&ana.key, ws, [1; 16], [3; 24], |_| after.to_vec());
    assert!(matches!(
        push(&mut ana_socket, 2, &[envelope]).await,
        Some(Frame::Stored { .. })
    ));
    let closing = drain(&mut socket).await;
    assert!(
        !holds(&closing, after),
        "the removed member got {closing:?}"
    );
    assert!(
        matches!(
            closing.as_slice(),
            [Frame::Refused {
                code: RefusedCode::Removed,
                ..
            }]
        ),
        "{closing:?}"
    );
    let (socket, answer) = handshake(&relay.url, &bo, ws, None).await;
    assert_nothing_after_refusal("removed member", socket, answer, RefusedCode::Removed).await;
    let closing = drain(&mut phone_socket).await;
    assert!(
        !holds(&closing, after),
        "the removed member's phone got {closing:?}"
    );
    let (socket, answer) = handshake(&relay.url, &phone, ws, None).await;
    assert_nothing_after_refusal(
        "removed member's device",
        socket,
        answer,
        RefusedCode::Removed,
    )
    .await;
    // What a member forwards of theirs (taken before the removal reached it) is stored: the
    // nodes take it or refuse it by the removal's lock.
    let forwarded = Envelope::sign(&bo.key, ws, [1; 16], [9; 24], |_| b"forwarded".to_vec());
    let answer = push(&mut ana_socket, 3, &[forwarded]).await;
    assert!(
        matches!(&answer, Some(Frame::Stored { results, .. }) if matches!(results[..], [PushResult::Stored(_)])),
        "{answer:?}"
    );

    // Only the creator revokes.
    let cy = Device::new(10);
    let (mut cy_socket, answer) =
        handshake(&relay.url, &cy, ws, join(&ana, ws, &cy, FAR, 55)).await;
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

/// The creator's word admits members a relay has never seen, whatever their invite's
/// expiry: their envelopes, pushed by anyone, are stored, and they connect without showing
/// a registration. Nobody else's word counts, a proof must be for the key it names, an
/// invite admits one device, and a removal stands.
#[tokio::test]
async fn the_creator_vouches_for_members_a_relay_has_not_met() {
    let relay = start(Config::default()).await;
    let ana = Device::new(1);
    let (ws, mut ana_socket) = workspace_with_canary(&relay.url, &ana).await;
    let (bo, cy, dee, eve) = (
        Device::new(2),
        Device::new(3),
        Device::new(4),
        Device::new(5),
    );
    // Bo's invite expired long ago; his own registration is refused.
    let expired = invite(&ana, ws, &bo, 1, 60);
    let (socket, answer) =
        handshake(&relay.url, &bo, ws, Some(Register::Join(expired.clone()))).await;
    assert_nothing_after_refusal("expired invite", socket, answer, RefusedCode::InviteExpired)
        .await;
    // Only the creator vouches: Cy, admitted with an invite, cannot.
    let (mut cy_socket, answer) =
        handshake(&relay.url, &cy, ws, join(&ana, ws, &cy, FAR, 61)).await;
    assert!(
        matches!(answer, Frame::Welcome { vouch: true, .. }),
        "{answer:?}"
    );
    let bo_vouchee = Vouchee {
        key: bo.public().to_vec(),
        proof: expired.clone(),
    };
    send(
        &mut cy_socket,
        &Frame::Vouch {
            id: 1,
            members: vec![bo_vouchee.clone()],
        },
    )
    .await;
    assert!(
        matches!(
            next(&mut cy_socket).await,
            Some(Frame::Vouched { id: 1, results }) if matches!(results[..], [VouchResult::Refused(_)])
        ),
        "a member's word does not admit"
    );
    let (socket, answer) = handshake(&relay.url, &bo, ws, None).await;
    assert_nothing_after_refusal(
        "vouched by a member",
        socket,
        answer,
        RefusedCode::NotMember,
    )
    .await;
    // An envelope of Bo's, pushed by Ana before she vouches, is refused...
    let bos = Envelope::sign(&bo.key, ws, [6; 16], [7; 24], |_| b"by Bo".to_vec());
    assert!(matches!(
        push(&mut ana_socket, 2, std::slice::from_ref(&bos)).await,
        Some(Frame::Stored { results, .. }) if matches!(results[..], [PushResult::Rejected(_)])
    ));
    // ... and stored once she has. The proof of another key (Cy's), an invite already used
    // by another device (Cy's again) and a too-long list are refused; Cy is known.
    let cy_proof = invite(&ana, ws, &cy, FAR, 61);
    let reused = Vouchee {
        key: dee.public().to_vec(),
        proof: invite(&ana, ws, &dee, FAR, 61),
    };
    let wrong_key = Vouchee {
        key: eve.public().to_vec(),
        proof: cy_proof.clone(),
    };
    let known = Vouchee {
        key: cy.public().to_vec(),
        proof: cy_proof,
    };
    send(
        &mut ana_socket,
        &Frame::Vouch {
            id: 3,
            members: vec![bo_vouchee.clone(), reused, wrong_key, known],
        },
    )
    .await;
    let Some(Frame::Vouched { id: 3, results }) = next(&mut ana_socket).await else {
        panic!("the creator's vouch is answered");
    };
    assert!(
        matches!(
            results[..],
            [
                VouchResult::Admitted,
                VouchResult::Refused(_),
                VouchResult::Refused(_),
                VouchResult::Known
            ]
        ),
        "{results:?}"
    );
    assert_eq!(
        push(&mut ana_socket, 4, std::slice::from_ref(&bos)).await,
        Some(Frame::Stored {
            id: 4,
            results: vec![PushResult::Stored(2)]
        })
    );
    send(
        &mut ana_socket,
        &Frame::Vouch {
            id: 5,
            members: vec![bo_vouchee.clone(); MAX_VOUCHES + 1],
        },
    )
    .await;
    assert!(matches!(
        next(&mut ana_socket).await,
        Some(Frame::Vouched { id: 5, results })
            if results.len() == MAX_VOUCHES + 1
                && results.iter().all(|r| matches!(r, VouchResult::Refused(_)))
    ));
    // Bo connects without a registration, and his invite admits nobody else.
    let (_bo_socket, answer) = handshake(&relay.url, &bo, ws, None).await;
    assert!(matches!(answer, Frame::Welcome { .. }), "{answer:?}");
    let (socket, answer) = handshake(&relay.url, &eve, ws, join(&ana, ws, &eve, FAR, 60)).await;
    assert_nothing_after_refusal("Bo's invite again", socket, answer, RefusedCode::InviteUsed)
        .await;
    // A removal stands: vouching again for a removed member does not undo it.
    send(
        &mut ana_socket,
        &Frame::Revoke {
            member: bo.public().to_vec(),
        },
    )
    .await;
    assert!(matches!(
        next(&mut ana_socket).await,
        Some(Frame::Revoked { .. })
    ));
    send(
        &mut ana_socket,
        &Frame::Vouch {
            id: 6,
            members: vec![bo_vouchee],
        },
    )
    .await;
    assert_eq!(
        next(&mut ana_socket).await,
        Some(Frame::Vouched {
            id: 6,
            results: vec![VouchResult::Known]
        })
    );
    let (socket, answer) = handshake(&relay.url, &bo, ws, None).await;
    assert_nothing_after_refusal(
        "removed, then vouched for",
        socket,
        answer,
        RefusedCode::Removed,
    )
    .await;
    // Nor does the creator's word admit someone the removed member invited.
    let fay = Device::new(6);
    send(
        &mut ana_socket,
        &Frame::Vouch {
            id: 7,
            members: vec![Vouchee {
                key: fay.public().to_vec(),
                proof: invite(&bo, ws, &fay, FAR, 62),
            }],
        },
    )
    .await;
    assert!(matches!(
        next(&mut ana_socket).await,
        Some(Frame::Vouched { id: 7, results }) if matches!(results[..], [VouchResult::Refused(_)])
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
        deflate: false,
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
    assert_eq!(frames.len(), 1, "more than the refusal: {frames:?}");
    relay.shutdown().await;
}

#[tokio::test]
async fn pushes_are_deduplicated_forwarded_and_checked() {
    let relay = start(Config::default()).await;
    let ana = Device::new(1);
    let (ws, mut ana_socket) = workspace_with_canary(&relay.url, &ana).await;
    let bo = Device::new(2);
    let (mut bo_socket, _) = handshake(&relay.url, &bo, ws, join(&ana, ws, &bo, FAR, 50)).await;
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
    let mixed = Frame::Push {
        id: 2,
        envelopes: [&good, &forged, &elsewhere, &stranger, &good]
            .iter()
            .map(|e| serde_bytes::ByteBuf::from(e.encode()))
            .chain([serde_bytes::ByteBuf::from(vec![0xff; 10])])
            .collect(),
    };
    send(&mut ana_socket, &mixed).await;
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
    assert!(matches!(
        push(&mut bo_socket, 1, &[again]).await,
        Some(Frame::Stored { .. })
    ));
    relay.shutdown().await;
}

#[tokio::test]
async fn large_commits_reach_live_readers_from_the_log_in_bounded_frames() {
    let relay = start(Config::default()).await;
    let ana = Device::new(1);
    let (ws, mut ana_socket) = workspace_with_canary(&relay.url, &ana).await;
    let bo = Device::new(2);
    let (mut bo_socket, _) = handshake(&relay.url, &bo, ws, join(&ana, ws, &bo, FAR, 50)).await;
    send(&mut bo_socket, &Frame::Subscribe { after: 1 }).await;
    assert_eq!(
        next(&mut bo_socket).await,
        Some(Frame::CaughtUp { head: 1 })
    );
    // One commit larger than the live buffer keeps and than one frame the relay sends.
    let envelopes: Vec<Envelope> = (0..300).map(|n| ana.envelope(ws, n, 2048)).collect();
    let size: usize = envelopes.iter().map(|e| e.encode().len()).sum();
    assert!(
        size > 2 * SEND_BATCH_BYTES.max(LIVE_FRAME_BYTES),
        "{size} bytes"
    );
    assert!(matches!(
        push(&mut ana_socket, 2, &envelopes).await,
        Some(Frame::Stored { .. })
    ));
    let mut seqs = Vec::new();
    let mut frames = 0;
    while seqs.last() != Some(&301) {
        let Some(Frame::Entries { entries, up_to }) = next(&mut bo_socket).await else {
            panic!("expected entries");
        };
        frames += 1;
        let bytes: usize = entries.iter().map(|(_, e)| e.len()).sum();
        assert!(bytes <= SEND_BATCH_BYTES, "a frame of {bytes} bytes");
        assert_eq!(up_to, entries.last().unwrap().0);
        for (seq, bytes) in entries {
            assert_eq!(
                bytes.as_slice(),
                envelopes[seq as usize - 2].encode().as_slice()
            );
            seqs.push(seq);
        }
    }
    assert_eq!(
        seqs,
        (2..=301).collect::<Vec<u64>>(),
        "every entry, in order, once"
    );
    assert!(frames >= 3, "{frames} frames");
    relay.shutdown().await;
}

#[tokio::test]
async fn strangers_and_greedy_devices_are_bounded() {
    let relay = start(Config {
        max_per_device: 2,
        ..Config::default()
    })
    .await;
    // Before authenticating, a client may send HANDSHAKE_BYTES, far below the frame limit:
    // the relay stops reading a bloated Hello and says why (a short one would be refused
    // for its key instead).
    let (mut socket, _) = tokio_tungstenite::connect_async(relay.url.as_str())
        .await
        .unwrap();
    let hello = Frame::Hello {
        version: PROTOCOL_VERSION,
        workspace: vec![1; 16],
        key: vec![2; 4 * HANDSHAKE_BYTES],
        deflate: false,
    };
    let _ = socket.send(Message::Binary(hello.encode().into())).await;
    let frames = drain(&mut socket).await;
    assert!(
        matches!(
            frames.as_slice(),
            [Frame::Refused { code: RefusedCode::Protocol, reason }]
                if reason.contains("before it is authenticated")
        ),
        "cut off at the allowance: {frames:?}"
    );
    // A device holds at most `max_per_device` connections to a workspace.
    let ana = Device::new(1);
    let (ws, _first) = workspace_with_canary(&relay.url, &ana).await;
    let (_second, answer) = handshake(&relay.url, &ana, ws, None).await;
    assert!(matches!(answer, Frame::Welcome { .. }), "{answer:?}");
    let (third, answer) = handshake(&relay.url, &ana, ws, None).await;
    assert_nothing_after_refusal("a third connection", third, answer, RefusedCode::Busy).await;
    let bo = Device::new(2);
    let (_bo, answer) = handshake(&relay.url, &bo, ws, join(&ana, ws, &bo, FAR, 50)).await;
    assert!(
        matches!(answer, Frame::Welcome { .. }),
        "another device: {answer:?}"
    );
    relay.shutdown().await;
}

#[tokio::test]
async fn a_plain_http_request_is_told_what_this_is() {
    let relay = start(Config::default()).await;
    let addr = relay
        .url
        .trim_start_matches("ws://")
        .trim_end_matches("/v1");
    for (request, status) in [
        ("GET / HTTP/1.1\r\nHost: relay\r\n\r\n", "HTTP/1.1 200 OK"),
        (
            "POST / HTTP/1.1\r\nHost: relay\r\nContent-Length: 0\r\n\r\n",
            "HTTP/1.1 405",
        ),
    ] {
        let answer = exchange(addr.parse().unwrap(), request).await;
        assert!(answer.starts_with(status), "{answer}");
        assert!(answer.contains("This is a Meridian relay"), "{answer}");
    }
    relay.shutdown().await;
}

#[tokio::test]
async fn members_are_pinged_and_a_silent_one_is_dropped() {
    let relay = start(Config {
        ping_interval_secs: 1,
        ..Config::default()
    })
    .await;
    let ana = Device::new(1);
    let (_, mut socket) = workspace_with_canary(&relay.url, &ana).await;
    // A member that reads answers the pings (tungstenite does) and stays connected.
    let mut pings = 0;
    let until = tokio::time::Instant::now() + Duration::from_millis(3500);
    while let Ok(message) = tokio::time::timeout_at(until, socket.next()).await {
        match message {
            Some(Ok(Message::Ping(_))) => pings += 1,
            Some(Ok(_)) => {}
            other => panic!("the connection ended: {other:?}"),
        }
    }
    assert!(pings >= 3, "{pings} pings in 3.5 s");
    // One that stops answering is dropped after two silent intervals.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match socket.next().await {
                Some(Ok(Message::Ping(_))) => continue,
                other => return other,
            }
        }
    })
    .await
    .expect("the relay dropped the silent member");
    assert!(!matches!(ended, Some(Ok(Message::Binary(_)))), "{ended:?}");
    relay.shutdown().await;
}

/// Sends `request` and reads the answer until the server closes the connection.
async fn exchange(addr: std::net::SocketAddr, request: &str) -> String {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut tcp, request.as_bytes())
        .await
        .unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(
        Duration::from_secs(5),
        tokio::io::AsyncReadExt::read_to_end(&mut tcp, &mut answer),
    )
    .await
    .expect("the server answers and closes")
    .unwrap();
    String::from_utf8(answer).unwrap()
}

/// `GET path` on the admin listener: the status code and the body.
async fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let answer = exchange(addr, &format!("GET {path} HTTP/1.1\r\nHost: relay\r\n\r\n")).await;
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, body.to_string())
}

/// The value of the sample `name` (with its labels, as printed) in a Prometheus text page,
/// after checking every sample line parses.
fn sample(page: &str, name: &str) -> Option<f64> {
    let mut found = None;
    for line in page
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (key, value) = line.rsplit_once(' ').unwrap();
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("{line}"));
        assert!(key.starts_with("meridian_relay_"), "{line}");
        if key == name {
            found = Some(value);
        }
    }
    found
}

#[tokio::test]
async fn health_readiness_and_metrics_follow_the_relay() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        drain_secs: 2,
        ..Config::default()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/v1", listener.local_addr().unwrap());
    let admin = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin_addr = admin.local_addr().unwrap();
    let store = meridian_relay::store::RelayStore::open_with(dir.path(), config.store()).unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let relay = tokio::spawn(meridian_relay::server::run_with(
        listener,
        meridian_relay::server::Admin {
            http: Some(admin),
            control: None,
            tls: None,
        },
        store,
        config,
        async {
            let _ = stopped.await;
        },
    ));
    assert_eq!(http_get(admin_addr, "/healthz").await, (200, "ok\n".into()));
    assert_eq!(
        http_get(admin_addr, "/readyz").await,
        (200, "ready\n".into())
    );
    assert_eq!(http_get(admin_addr, "/nothing").await.0, 404);
    let (status, page) = http_get(admin_addr, "/metrics").await;
    assert_eq!(status, 200);
    assert_eq!(
        sample(&page, "meridian_relay_envelopes_stored_total"),
        Some(0.0)
    );
    // A member creates a workspace and pushes; a stranger is refused.
    let ana = Device::new(1);
    let (_ws, mut socket) = workspace_with_canary(&url, &ana).await;
    let stranger = Device::new(3);
    let (_, answer) = handshake(&url, &stranger, [9; 16], None).await;
    assert_refused(&answer, RefusedCode::UnknownWorkspace);
    let page = support_poll_metrics(admin_addr, |page| {
        sample(page, "meridian_relay_handshakes_total{outcome=\"refused\"}") == Some(1.0)
    })
    .await;
    for (name, value) in [
        ("meridian_relay_connections_open", 1.0),
        ("meridian_relay_envelopes_stored_total", 1.0),
        ("meridian_relay_handshakes_total{outcome=\"admitted\"}", 1.0),
        (
            "meridian_relay_connections_refused_total{reason=\"unknown_workspace\"}",
            1.0,
        ),
        ("meridian_relay_workspaces", 1.0),
        ("meridian_relay_commit_duration_seconds_count", 1.0),
    ] {
        assert_eq!(sample(&page, name), Some(value), "{name} in:\n{page}");
    }
    assert!(sample(&page, "meridian_relay_stored_bytes_total").unwrap() > 0.0);
    assert!(sample(&page, "meridian_relay_store_size_bytes").unwrap() > 0.0);
    // Shutdown: not ready at once, while the member is still connected; then it is told
    // to reconnect elsewhere within the drain window.
    stop.send(()).unwrap();
    let mut readiness = http_get(admin_addr, "/readyz").await;
    for _ in 0..50 {
        if readiness.0 == 503 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        readiness = http_get(admin_addr, "/readyz").await;
    }
    assert_eq!(
        readiness,
        (
            503,
            "not ready: draining: the relay is shutting down\n".into()
        )
    );
    assert!(
        futures_util::FutureExt::now_or_never(socket.next()).is_none(),
        "not ready before the member is told"
    );
    let frames = drain(&mut socket).await;
    assert!(
        matches!(
            frames.as_slice(),
            [
                ..,
                Frame::Refused {
                    code: RefusedCode::ShuttingDown,
                    ..
                }
            ]
        ),
        "{frames:?}"
    );
    tokio::time::timeout(Duration::from_secs(15), relay)
        .await
        .expect("the relay stops")
        .unwrap()
        .unwrap();
}

/// The metrics page once `ready` says it shows what the test waits for (counters move
/// after the connection that moved them has ended).
async fn support_poll_metrics(addr: std::net::SocketAddr, ready: impl Fn(&str) -> bool) -> String {
    let until = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, page) = http_get(addr, "/metrics").await;
        if ready(&page) || tokio::time::Instant::now() > until {
            return page;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
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
    assert_eq!(
        answer,
        Frame::Welcome {
            head: 1,
            shared: true,
            vouch: true,
        }
    );
    send(&mut socket, &Frame::Subscribe { after: 0 }).await;
    assert!(holds_canary(&[next(&mut socket).await.unwrap()]));
    let _ = stop.send(());
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_new_member_gets_a_documents_snapshot_in_place_of_its_entries() {
    let relay = start(Config::default()).await;
    let ana = Device::new(1);
    // Log: 1 canary (document [1; 16]); 2–6 document D; 7 document E; 8–9 document D.
    let (ws, mut ana_socket) = workspace_with_canary(&relay.url, &ana).await;
    let d = [0xd; 16];
    let e = [0xe; 16];
    let entry = |doc: [u8; 16], n: u8| {
        Envelope::sign(&ana.key, ws, doc, [n; 24], |_| {
            format!("entry {n}").into_bytes()
        })
    };
    let mut log = vec![
        entry(d, 2),
        entry(d, 3),
        entry(d, 4),
        entry(d, 5),
        entry(d, 6),
    ];
    log.push(entry(e, 7));
    assert!(matches!(
        push(&mut ana_socket, 1, &log).await,
        Some(Frame::Stored { .. })
    ));
    let later = [entry(d, 8), entry(d, 9)];
    assert!(matches!(
        push(&mut ana_socket, 2, &later).await,
        Some(Frame::Stored { .. })
    ));
    let snapshot = Envelope::sign(&ana.key, ws, d, [99; 24], |_| b"SNAPSHOT of D".to_vec());
    let put = |id, covers, envelope: &Envelope| Frame::Snapshot {
        id,
        covers,
        envelope: serde_bytes::ByteBuf::from(envelope.encode()),
        shared: true,
    };
    // What the relay will not keep: a position past the log, one before the document
    // starts, a member who is not the creator.
    let bo = Device::new(2);
    let (mut bo_socket, _) = handshake(&relay.url, &bo, ws, join(&ana, ws, &bo, FAR, 50)).await;
    let by_bo = Envelope::sign(&bo.key, ws, d, [98; 24], |_| b"bo's".to_vec());
    for (by_ana, frame) in [
        (true, put(3, 10, &snapshot)),
        (true, put(4, 1, &snapshot)),
        (false, put(5, 6, &by_bo)),
    ] {
        let socket = if by_ana {
            &mut ana_socket
        } else {
            &mut bo_socket
        };
        send(socket, &frame).await;
        let answer = next(socket).await;
        assert!(
            matches!(&answer, Some(Frame::Stored { results, .. }) if matches!(results[..], [PushResult::Rejected(_)])),
            "{frame:?} → {answer:?}"
        );
    }
    // Kept when it covers entries 2–6 of D (and 7 belongs to E); an older one is not
    // taken over it.
    send(&mut ana_socket, &put(6, 6, &snapshot)).await;
    assert_eq!(
        next(&mut ana_socket).await,
        Some(Frame::Stored {
            id: 6,
            results: vec![PushResult::Stored(6)]
        })
    );
    send(&mut ana_socket, &put(7, 4, &snapshot)).await;
    assert_eq!(
        next(&mut ana_socket).await,
        Some(Frame::Stored {
            id: 7,
            results: vec![PushResult::Duplicate(6)]
        })
    );

    // A member subscribing from the start: the snapshot at D's first position, D's other
    // covered positions skipped, everything else as it is.
    let (mut cy_socket, skipped, got, up_to) = new_member_catch_up(&relay.url, &ana, ws).await;
    assert_eq!((skipped, up_to), (vec![(3, 6)], 9));
    let expected_tail: Vec<(u64, Vec<u8>)> = vec![
        (2, snapshot.encode()),
        (7, log[5].encode()),
        (8, later[0].encode()),
        (9, later[1].encode()),
    ];
    assert_eq!(got[1..], expected_tail[..]);
    assert_eq!(got[0].0, 1, "the canary of another document comes as it is");
    assert_eq!(
        next(&mut cy_socket).await,
        Some(Frame::CaughtUp { head: 9 })
    );

    // A member who has some of D already gets D's entries, not the snapshot.
    send(&mut bo_socket, &Frame::Subscribe { after: 3 }).await;
    let Some(Frame::Entries { entries, up_to: 9 }) = next(&mut bo_socket).await else {
        panic!("expected plain entries");
    };
    assert_eq!(
        entries.iter().map(|(seq, _)| *seq).collect::<Vec<_>>(),
        vec![4, 5, 6, 7, 8, 9]
    );
    relay.shutdown().await;
}

#[tokio::test]
async fn a_shared_envelope_is_skipped_only_when_snapshots_hold_all_its_documents() {
    let relay = start(Config::default()).await;
    let ana = Device::new(1);
    // Log: 1 canary; 2 D; 3 G; 4 shared [D, E] (E's first entry); 5 shared [D, G]; 6 D.
    let (ws, mut ana_socket) = workspace_with_canary(&relay.url, &ana).await;
    let (d, e, g) = ([0xd; 16], [0xe; 16], [0xf; 16]);
    let one = |doc: [u8; 16], n: u8| {
        Envelope::sign(&ana.key, ws, doc, [n; 24], |_| {
            format!("entry {n}").into_bytes()
        })
    };
    let shared = |docs: &[[u8; 16]], n: u8| {
        Envelope::sign_shared(&ana.key, ws, docs, [n; 24], |_| {
            format!("shared {n}").into_bytes()
        })
    };
    let log = vec![
        one(d, 2),
        one(g, 3),
        shared(&[d, e], 4),
        shared(&[d, g], 5),
        one(d, 6),
    ];
    assert!(matches!(
        push(&mut ana_socket, 1, &log).await,
        Some(Frame::Stored { .. })
    ));
    let snapshot = |doc: [u8; 16], n: u8| {
        Envelope::sign(&ana.key, ws, doc, [n; 24], |_| {
            format!("snapshot {n}").into_bytes()
        })
    };
    let (of_d, of_e, of_g) = (snapshot(d, 90), snapshot(e, 91), snapshot(g, 92));
    let put = |id, covers, envelope: &Envelope, shared| Frame::Snapshot {
        id,
        covers,
        envelope: serde_bytes::ByteBuf::from(envelope.encode()),
        shared,
    };
    let refused = |answer: Option<Frame>, why: &str| {
        assert!(
            matches!(&answer, Some(Frame::Stored { results, .. }) if matches!(&results[..], [PushResult::Rejected(r)] if r.contains(why))),
            "{answer:?}"
        );
    };
    // A node that cannot read shared envelopes may lack their changes: no snapshot of its.
    send(&mut ana_socket, &put(2, 6, &of_d, false)).await;
    refused(next(&mut ana_socket).await, "update meridian");
    for (id, covers, envelope) in [(3, 6, &of_d), (4, 4, &of_e), (5, 5, &of_g)] {
        send(&mut ana_socket, &put(id, covers, envelope, true)).await;
        assert_eq!(
            next(&mut ana_socket).await,
            Some(Frame::Stored {
                id,
                results: vec![PushResult::Stored(covers)]
            })
        );
    }
    // A shared envelope is no snapshot.
    send(&mut ana_socket, &put(6, 5, &shared(&[d, g], 93), true)).await;
    refused(next(&mut ana_socket).await, "shared envelope");

    // From the start: D and G from their snapshots; entry 4 as it is, since E's first
    // entry is shared and so never replaced; entries 5 and 6 skipped, their every
    // document held by a snapshot sent.
    let (_, skipped, got, up_to) = new_member_catch_up(&relay.url, &ana, ws).await;
    assert_eq!((skipped, up_to), (vec![(5, 6)], 6));
    assert_eq!(
        got[1..],
        [(2, of_d.encode()), (3, of_g.encode()), (4, log[2].encode()),][..]
    );
    relay.shutdown().await;
}

/// A new member, Cy (invited by Ana), subscribes from the start: the socket, the ranges the
/// catch-up's `Skipped` announced, then its first `Entries` frame's entries and `up_to`.
async fn new_member_catch_up(
    url: &str,
    ana: &Device,
    ws: [u8; 16],
) -> (Socket, Vec<(u64, u64)>, Vec<(u64, Vec<u8>)>, u64) {
    let cy = Device::new(3);
    let (mut socket, _) = handshake(url, &cy, ws, join(ana, ws, &cy, FAR, 51)).await;
    send(&mut socket, &Frame::Subscribe { after: 0 }).await;
    let Some(Frame::Skipped { ranges }) = next(&mut socket).await else {
        panic!("expected the catch-up to announce skipped positions");
    };
    let Some(Frame::Entries { entries, up_to }) = next(&mut socket).await else {
        panic!("expected the catch-up's entries");
    };
    let entries = entries
        .into_iter()
        .map(|(seq, bytes)| (seq, bytes.into_vec()))
        .collect();
    (socket, ranges, entries, up_to)
}

/// The entries of an `Entries` frame, or of the one a `Deflated` frame carries, its
/// `up_to`, and whether it came compressed.
fn entries_of(frame: &Frame) -> (Vec<(u64, Vec<u8>)>, u64, bool) {
    let (frame, deflated) = match frame {
        Frame::Deflated { frame } => (Frame::inflate(frame).expect("the relay's own"), true),
        other => (other.clone(), false),
    };
    let Frame::Entries { entries, up_to } = frame else {
        panic!("expected entries, got {}", frame.name());
    };
    let entries = entries
        .into_iter()
        .map(|(s, e)| (s, e.into_vec()))
        .collect();
    (entries, up_to, deflated)
}

/// Frames up to and including `CaughtUp`.
async fn until_caught_up(socket: &mut Socket) -> Vec<Frame> {
    let mut frames = Vec::new();
    loop {
        let frame = next(socket).await.expect("the relay answers");
        let done = matches!(frame, Frame::CaughtUp { .. });
        frames.push(frame);
        if done {
            return frames;
        }
    }
}

/// A member whose `Hello` says it reads `Deflated` frames gets its catch-up and its live
/// batches of several entries compressed, and the same entries as one that did not ask
/// (whose `Hello` is byte for byte an older node's), which gets them plain. A lone entry
/// goes plain to both: it does not compress.
#[tokio::test]
async fn a_member_that_asks_gets_entries_compressed_and_one_that_does_not_gets_them_plain() {
    let relay = start(Config::default()).await;
    let ana = Device::new(1);
    let (ws, mut ana_socket) = workspace_with_canary(&relay.url, &ana).await;
    let envelopes: Vec<Envelope> = (0..40).map(|i| ana.envelope(ws, 100 + i, 120)).collect();
    let Some(Frame::Stored { results, .. }) = push(&mut ana_socket, 2, &envelopes).await else {
        panic!("expected Stored");
    };
    assert_eq!(results.last(), Some(&PushResult::Stored(41)));
    let (bo, cy) = (Device::new(2), Device::new(3));
    let bo_join = join(&ana, ws, &bo, FAR, 51);
    let (mut bo_socket, _) = support::handshake_deflate(&relay.url, &bo, ws, bo_join, true).await;
    let cy_join = join(&ana, ws, &cy, FAR, 52);
    let (mut cy_socket, _) = support::handshake_deflate(&relay.url, &cy, ws, cy_join, false).await;
    send(&mut bo_socket, &Frame::Subscribe { after: 0 }).await;
    send(&mut cy_socket, &Frame::Subscribe { after: 0 }).await;
    let bo_frames = until_caught_up(&mut bo_socket).await;
    let cy_frames = until_caught_up(&mut cy_socket).await;
    let read = |frames: &[Frame]| {
        let mut all = Vec::new();
        let (mut compressed, mut bytes) = (0, 0);
        for frame in &frames[..frames.len() - 1] {
            let (entries, _, deflated) = entries_of(frame);
            all.extend(entries);
            compressed += usize::from(deflated);
            bytes += frame.encode().len();
        }
        (all, compressed, bytes)
    };
    let (bo_entries, bo_compressed, bo_bytes) = read(&bo_frames);
    let (cy_entries, cy_compressed, cy_bytes) = read(&cy_frames);
    assert_eq!(bo_entries.len(), 41);
    assert_eq!(bo_entries, cy_entries, "the same entries either way");
    assert_eq!((bo_compressed, cy_compressed), (1, 0));
    assert!(
        bo_bytes * 10 < cy_bytes * 9,
        "compressed {bo_bytes} B, plain {cy_bytes} B"
    );

    // Live: a push of several envelopes goes compressed to Bo only; a lone one plain.
    let batch: Vec<Envelope> = (0..5).map(|i| ana.envelope(ws, 200 + i, 120)).collect();
    assert!(matches!(
        push(&mut ana_socket, 3, &batch).await,
        Some(Frame::Stored { .. })
    ));
    let bo_live = next(&mut bo_socket).await.expect("a live frame");
    let cy_live = next(&mut cy_socket).await.expect("a live frame");
    let (bo_entries, bo_up_to, bo_deflated) = entries_of(&bo_live);
    let (cy_entries, cy_up_to, cy_deflated) = entries_of(&cy_live);
    assert_eq!((bo_deflated, cy_deflated), (true, false));
    assert_eq!((bo_up_to, cy_up_to), (46, 46));
    assert_eq!(bo_entries, cy_entries);
    let expected: Vec<(u64, Vec<u8>)> = (42..).zip(batch.iter().map(Envelope::encode)).collect();
    assert_eq!(bo_entries, expected);
    let lone = ana.envelope(ws, 300, 120);
    assert!(matches!(
        push(&mut ana_socket, 4, std::slice::from_ref(&lone)).await,
        Some(Frame::Stored { .. })
    ));
    for socket in [&mut bo_socket, &mut cy_socket] {
        let frame = next(socket).await.expect("a live frame");
        assert!(
            matches!(&frame, Frame::Entries { up_to: 47, .. }),
            "{frame:?}"
        );
    }
    relay.shutdown().await;
}

/// A member can push envelopes whose ciphertext is all zeros (the relay cannot read it).
/// Compressed, their frame would look like a bomb to every reader and break each one's
/// connection for good; the relay sends it plain, and readers that asked for compression
/// still get it.
#[tokio::test]
async fn envelopes_that_compress_too_well_reach_members_plain() {
    let relay = start(Config::default()).await;
    let ana = Device::new(1);
    let (ws, mut ana_socket) = workspace_with_canary(&relay.url, &ana).await;
    // 240,000 bytes of zeros in one catch-up frame (the relay sends at most 256 KiB in one).
    let zeros: Vec<Envelope> = (0..16u8)
        .map(|i| Envelope::sign(&ana.key, ws, [1; 16], [i + 10; 24], |_| vec![0; 15_000]))
        .collect();
    let Some(Frame::Stored { results, .. }) = push(&mut ana_socket, 2, &zeros).await else {
        panic!("expected Stored");
    };
    assert_eq!(results.last(), Some(&PushResult::Stored(17)));
    let bo = Device::new(2);
    let bo_join = join(&ana, ws, &bo, FAR, 51);
    let (mut bo_socket, _) = support::handshake_deflate(&relay.url, &bo, ws, bo_join, true).await;
    send(&mut bo_socket, &Frame::Subscribe { after: 0 }).await;
    let frames = until_caught_up(&mut bo_socket).await;
    let mut received = Vec::new();
    for frame in &frames[..frames.len() - 1] {
        let (entries, _, deflated) = entries_of(frame);
        assert!(!deflated || entries.len() < 2, "{} entries", entries.len());
        received.extend(entries);
    }
    let expected: Vec<Vec<u8>> = zeros.iter().map(Envelope::encode).collect();
    let got: Vec<Vec<u8>> = received.into_iter().skip(1).map(|(_, e)| e).collect();
    assert_eq!(got, expected);
    relay.shutdown().await;
}

/// `meridian-relay` run as a command: its output.
fn relay_command(args: &[&str]) -> std::process::Output {
    std::process::Command::new(support::relay_binary())
        .args(args)
        .output()
        .expect("the relay binary runs")
}

/// `config --print-default` prints a file the relay reads back as its defaults, naming
/// every key; `config --check` names what is wrong with a bad one.
#[test]
fn the_default_config_is_printed_and_checked() {
    let output = relay_command(&["config", "--print-default"]);
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).unwrap();
    let parsed: Config = toml::from_str(&text).expect("the printed default parses");
    let defaults = Config::default().settings();
    for (printed, default) in parsed.settings().iter().zip(&defaults) {
        assert_eq!(printed.value, default.value, "{}", printed.key);
        assert!(text.contains(&format!("\n{} = ", default.key)), "{text}");
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("relay.toml");
    std::fs::write(&file, &text).unwrap();
    let checked = relay_command(&["config", "--check", file.to_str().unwrap()]);
    assert!(checked.status.success());
    for (contents, named) in [
        ("max_per_device = 0\n", "max_per_device = 0"),
        ("cache = 3\n", "unknown field `cache`"),
        ("recovery = \"fast\"\n", "unknown variant `fast`"),
    ] {
        std::fs::write(&file, contents).unwrap();
        let checked = relay_command(&["config", "--check", file.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&checked.stderr);
        assert_eq!(checked.status.code(), Some(1), "{contents}: {stderr}");
        assert!(stderr.contains(named), "{contents}: {stderr}");
    }
    let help = relay_command(&["serve", "--help"]);
    let help = String::from_utf8_lossy(&help.stdout);
    for setting in &defaults {
        assert!(
            help.contains(&format!("{} = {}", setting.key, setting.value)),
            "serve --help lacks {}: {help}",
            setting.key
        );
    }
}

/// The relay's first line is the URL members use (no protocol path), and its log, written
/// to a file, carries no terminal colour codes.
#[test]
fn the_startup_line_and_a_plain_log() {
    let dir = tempfile::tempdir().unwrap();
    let relay = support::RelayProcess::start(dir.path(), "");
    // The log line follows the address on stdout: wait for it.
    let wanted = format!("meridian workspace relay add ws://{}`", relay.addr);
    let started = std::time::Instant::now();
    let mut log = relay.log();
    while !log.contains(&wanted) && started.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
        log = relay.log();
    }
    assert!(log.contains(&wanted), "{log}");
    assert!(
        !log.contains('\u{1b}'),
        "colour codes in a log file: {log:?}"
    );
}

/// `meridian-relay serve` under `sh -c 'ulimit …; exec relay serve …'`, with systemd's
/// notification socket at `notify`: the child, its first stdout line, and its stderr file.
fn serve_limited(
    ulimit: &str,
    dir: &std::path::Path,
    notify: &std::path::Path,
) -> (std::process::Child, String, std::path::PathBuf) {
    use std::io::BufRead;
    let log = dir.join("relay.log");
    let mut child = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{ulimit}; exec \"$0\" serve --listen 127.0.0.1:0 --data \"$1\""
        ))
        .arg(support::relay_binary())
        .arg(dir.join("data"))
        .env("NOTIFY_SOCKET", notify)
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    (child, line, log)
}

#[test]
fn startup_raises_the_open_file_limit_and_tells_systemd_it_is_ready() {
    let dir = tempfile::tempdir().unwrap();
    let notify = dir.path().join("notify.sock");
    let socket = std::os::unix::net::UnixDatagram::bind(&notify).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let hard: u64 = String::from_utf8(
        std::process::Command::new("sh")
            .args(["-c", "ulimit -Hn"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
    .trim()
    .parse()
    .unwrap_or(u64::MAX);
    // A soft limit below the hard one is raised to it.
    let (mut child, line, _) = serve_limited("ulimit -Sn 256", dir.path(), &notify);
    assert!(line.starts_with("listening on ws://"), "{line}");
    let mut message = [0u8; 256];
    let read = socket
        .recv(&mut message)
        .expect("the relay notifies systemd");
    assert_eq!(&message[..read], b"READY=1\n");
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", child.id())).unwrap();
    let open_files = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let soft: u64 = open_files
        .split_whitespace()
        .nth(3)
        .unwrap()
        .parse()
        .unwrap_or(u64::MAX);
    assert_eq!(soft, hard, "{open_files}");
    child.kill().unwrap();
    child.wait().unwrap();
    // A hard limit below max_connections is said, loudly.
    let (mut child, _, log) = serve_limited("ulimit -n 200", dir.path(), &notify);
    let _ = socket.recv(&mut message);
    child.kill().unwrap();
    child.wait().unwrap();
    let said = std::fs::read_to_string(log).unwrap();
    assert!(
        said.contains("the open-file limit is 200, so at most about 136 connections")
            && said.contains("LimitNOFILE="),
        "{said}"
    );
}

#[test]
fn a_stopped_relay_is_backed_up_from_its_files_and_restored_with_a_new_id() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let first_id = meridian_relay::store::RelayStore::open_with(&data, Config::default().store())
        .unwrap()
        .id();
    let backup = dir.path().join("backup.redb");
    let path = |p: &std::path::Path| p.to_str().unwrap().to_string();
    let made = relay_command(&["backup", "--data", &path(&data), "-o", &path(&backup)]);
    assert!(made.status.success(), "{made:?}");
    assert!(
        String::from_utf8_lossy(&made.stdout).starts_with("Backed up the stopped relay's database"),
        "{made:?}"
    );
    let again = relay_command(&["backup", "--data", &path(&data), "-o", &path(&backup)]);
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("never overwrites"),
        "{again:?}"
    );
    let elsewhere = dir.path().join("restored");
    let restored = relay_command(&["restore", &path(&backup), "--data", &path(&elsewhere)]);
    assert!(restored.status.success(), "{restored:?}");
    let new_id =
        meridian_relay::store::RelayStore::open_with(&elsewhere, Config::default().store())
            .unwrap()
            .id();
    assert_ne!(new_id, first_id, "a restored relay has a new id");
    let junk = dir.path().join("junk");
    std::fs::write(&junk, b"not a database").unwrap();
    let refused = relay_command(&[
        "restore",
        &path(&junk),
        "--data",
        &path(&dir.path().join("x")),
    ]);
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("is not a relay backup"),
        "{refused:?}"
    );
    assert!(
        !dir.path().join("x/relay.redb.partial").exists(),
        "a failed restore leaves nothing behind"
    );
}

#[tokio::test]
async fn refusals_are_logged_once_with_the_peer_and_as_json_on_request() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("relay.log");
    let mut child = std::process::Command::new(support::relay_binary())
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--log-format",
            "json",
            "--data",
        ])
        .arg(dir.path().join("data"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = format!("{}/v1", line.trim().trim_start_matches("listening on "));
    let (_, answer) = handshake(&url, &Device::new(7), [9; 16], None).await;
    assert_refused(&answer, RefusedCode::UnknownWorkspace);
    let mut refusals = Vec::new();
    for _ in 0..100 {
        let text = std::fs::read_to_string(&log).unwrap();
        refusals = text
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap_or_else(|e| panic!("{l}: {e}"))
            })
            .filter(|v| {
                v["fields"]["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("refused"))
            })
            .collect();
        if !refusals.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(refusals.len(), 1, "{refusals:?}");
    assert_eq!(refusals[0]["fields"]["code"], "UnknownWorkspace");
    assert!(
        refusals[0]["fields"]["peer"]
            .as_str()
            .is_some_and(|p| p.starts_with("127.0.0.1:")),
        "{refusals:?}"
    );
}

/// A TLS client that ends TLS (close_notify) and then sends one more byte: the relay must
/// end that connection, not spin on bytes TLS will no longer take (which, on this test's
/// single-threaded runtime, would stop it serving anyone).
#[tokio::test]
async fn a_tls_peer_that_closes_and_keeps_sending_is_let_go() {
    use std::io::Write;
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    let tls = meridian_relay::server::tls_settings(&cert_path, &key_path).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let store = meridian_relay::store::RelayStore::open_with(
        &dir.path().join("data"),
        Config::default().store(),
    )
    .unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let relay = tokio::spawn(meridian_relay::server::run_with(
        listener,
        meridian_relay::server::Admin {
            http: None,
            control: None,
            tls: Some(Arc::new(std::sync::RwLock::new(tls))),
        },
        store,
        Config::default(),
        async {
            let _ = stopped.await;
        },
    ));
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.der().clone()).unwrap();
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let client = Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    );
    // On a thread of its own: the handshake, close_notify, then one more byte.
    let peer = std::thread::spawn({
        let client = client.clone();
        move || {
            let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
            let mut conn = rustls::ClientConnection::new(client, name).unwrap();
            let mut tcp = std::net::TcpStream::connect(addr).unwrap();
            while conn.is_handshaking() {
                conn.complete_io(&mut tcp).unwrap();
            }
            conn.send_close_notify();
            while conn.wants_write() {
                conn.write_tls(&mut tcp).unwrap();
            }
            tcp.write_all(b"x").unwrap();
            tcp
        }
    });
    let _tcp = tokio::task::spawn_blocking(move || peer.join().unwrap())
        .await
        .unwrap();
    // The relay still answers a plain HTTP request over TLS, at once.
    let answered = tokio::task::spawn_blocking(move || {
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let mut conn = rustls::ClientConnection::new(client, name).unwrap();
        let mut tcp = std::net::TcpStream::connect(addr).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut stream = rustls::Stream::new(&mut conn, &mut tcp);
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .unwrap();
        let mut answer = Vec::new();
        let _ = std::io::Read::read_to_end(&mut stream, &mut answer);
        String::from_utf8_lossy(&answer).into_owned()
    });
    let answer = tokio::time::timeout(Duration::from_secs(10), answered)
        .await
        .expect("the relay still serves")
        .unwrap();
    assert!(answer.contains("This is a Meridian relay"), "{answer}");
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(15), relay)
        .await
        .expect("the relay stops")
        .unwrap()
        .unwrap();
}
