//! `wss://` relays: a node syncing through TLS with a CA of the relay's own, and each way a
//! certificate can be wrong refused with words that say what to do.
//!
//! The TLS end here is a terminator in the test process (tokio-rustls, certificates made
//! with rcgen) in front of a real `meridian-relay` on loopback, as a reverse proxy would
//! stand in front of one; `proxy.rs` does the same through a real nginx.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, date_time_ymd,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::relays::{Relay, poll};
use crate::support::{Home, World};

/// A certificate authority of a relay's own.
pub struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A server certificate and its key.
pub struct Leaf {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivatePkcs8KeyDer<'static>,
    /// The chain in PEM, as a proxy's `ssl_certificate` reads it.
    pub pem: String,
    /// The key in PEM.
    pub key_pem: String,
}

impl Ca {
    pub fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        Ca { issuer }
    }

    /// The CA's certificate in PEM, as an operator hands it to members.
    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A certificate for `names`, valid now, or only over `years` when given.
    pub fn leaf(&self, names: &[&str], years: Option<(i32, i32)>) -> Leaf {
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        params.distinguished_name.push(DnType::CommonName, names[0]);
        if let Some((from, to)) = years {
            params.not_before = date_time_ymd(from, 1, 1);
            params.not_after = date_time_ymd(to, 1, 1);
        }
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            chain: vec![cert.der().clone(), self.issuer.der().clone()],
            key: PrivatePkcs8KeyDer::from(key.serialize_der()),
            pem: format!("{}{}", cert.pem(), self.issuer.pem()),
            key_pem: key.serialize_pem(),
        }
    }
}

/// A TLS terminator on loopback that forwards every connection to `backend`, until
/// dropped.
pub struct TlsFront {
    pub addr: SocketAddr,
    _runtime: tokio::runtime::Runtime,
}

impl TlsFront {
    pub fn start(leaf: &Leaf, backend: SocketAddr) -> TlsFront {
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                leaf.chain.clone(),
                PrivateKeyDer::Pkcs8(leaf.key.clone_key()),
            )
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        runtime.spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let Ok(mut relay) = tokio::net::TcpStream::connect(backend).await else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut relay).await;
                });
            }
        });
        TlsFront {
            addr,
            _runtime: runtime,
        }
    }

    /// The `wss://` URL of this front under `host` (which must resolve to loopback).
    pub fn url(&self, host: &str) -> String {
        format!("wss://{host}:{}", self.addr.port())
    }
}

/// The address a relay listens on, from its URL.
pub fn relay_addr(relay: &Relay) -> SocketAddr {
    relay
        .url()
        .trim_start_matches("ws://")
        .trim_end_matches("/v1")
        .parse()
        .unwrap()
}

/// The CA's certificate written to `name` in the shared directory; its path.
pub fn ca_file(world: &World, ca: &Ca, name: &str) -> String {
    let path = world.file(name);
    std::fs::write(&path, ca.pem()).unwrap();
    path.to_str().unwrap().to_string()
}

fn thread_titles(home: &Home) -> Vec<String> {
    let list = home.json(&["thread", "list"]);
    list.as_array()
        .unwrap()
        .iter()
        .map(|t| t["title"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_team_syncs_through_a_wss_relay_with_a_ca_of_its_own() {
    let world = World::new();
    let relay = Relay::start(&world.file("relay"));
    let ca = Ca::new("Acme relay CA");
    let front = TlsFront::start(&ca.leaf(&["localhost"], None), relay_addr(&relay));
    let url = front.url("localhost");
    let ca_pem = ca_file(&world, &ca, "acme-ca.pem");
    let ana = world.person("Ana", "Asia/Tokyo");
    let said = ana.ok(&[
        "workspace",
        "create",
        "acme",
        "--relay",
        &url,
        "--ca",
        &ca_pem,
    ]);
    assert!(
        said.contains(&format!("Trusting the CA in {ca_pem} for {url}"))
            && said.contains(&format!("Synced with {url}")),
        "{said}"
    );
    let bo = world.person("Bo", "Europe/Berlin");
    let code = ana.ok(&["invite"]);
    bo.ok(&["join", code.trim(), "--ca", &ca_pem]);
    bo.ok(&["thread", "new", "Over TLS", "-m", "Does this arrive?"]);
    bo.ok(&["sync"]);
    poll(Duration::from_secs(20), "Ana receives Bo's thread", || {
        ana.ok(&["sync"]);
        thread_titles(&ana)
            .contains(&"Over TLS".to_string())
            .then_some(())
    });
    // The relay only ever saw the plaintext websocket from the terminator: still sealed.
    let listed = ana.json(&["workspace", "relay", "list"]);
    assert_eq!(listed["relays"][0]["relay"], url, "{listed}");
}

#[test]
fn each_wrong_certificate_is_refused_with_what_to_do() {
    let world = World::new();
    let relay = Relay::start(&world.file("relay"));
    let ca = Ca::new("Acme relay CA");
    let backend = relay_addr(&relay);
    let good = TlsFront::start(&ca.leaf(&["localhost"], None), backend);
    let other_host = TlsFront::start(&ca.leaf(&["relay.example.org"], None), backend);
    let expired = TlsFront::start(&ca.leaf(&["localhost"], Some((2020, 2021))), backend);
    let ca_pem = ca_file(&world, &ca, "acme-ca.pem");
    let ana = world.person("Ana", "Asia/Tokyo");
    ana.ok(&["workspace", "create", "acme"]);
    let fails = |url: &str| -> String {
        let output = ana.run(&["workspace", "relay", "add", url]);
        assert!(output.status.success(), "{output:?}");
        let output = ana.run(&["sync"]);
        assert!(!output.status.success(), "sync with {url} must fail");
        ana.ok(&["workspace", "relay", "remove", url]);
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    // No CA given: the issuer is unknown, and the message says how to trust it.
    let url = good.url("localhost");
    let said = fails(&url);
    assert!(
        said.contains("from an issuer this device does not trust")
            && said.contains(&format!("meridian workspace relay add {url} --ca")),
        "{said}"
    );
    // The wrong CA is no better.
    let stranger = Ca::new("Someone else");
    let wrong = ca_file(&world, &stranger, "wrong-ca.pem");
    ana.ok(&["workspace", "relay", "add", &url, "--ca", &wrong]);
    let output = ana.run(&["sync"]);
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(said.contains("does not trust"), "{said}");
    // Given the right one for a relay already listed, it replaces the wrong one.
    let said = ana.ok(&["workspace", "relay", "add", &url, "--ca", &ca_pem]);
    assert!(said.contains("Trusting the CA"), "{said}");
    ana.ok(&["sync"]);
    ana.ok(&["workspace", "relay", "remove", &url]);
    // A certificate for another host, and an expired one.
    ana.ok(&[
        "workspace",
        "relay",
        "add",
        &other_host.url("localhost"),
        "--ca",
        &ca_pem,
    ]);
    let output = ana.run(&["sync"]);
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(
        said.contains("its certificate is not for localhost (it names relay.example.org)"),
        "{said}"
    );
    ana.ok(&["workspace", "relay", "remove", &other_host.url("localhost")]);
    ana.ok(&[
        "workspace",
        "relay",
        "add",
        &expired.url("localhost"),
        "--ca",
        &ca_pem,
    ]);
    let output = ana.run(&["sync"]);
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(
        said.contains("certificate has expired (2021-01-01 00:00 UTC)"),
        "{said}"
    );
    ana.ok(&["workspace", "relay", "remove", &expired.url("localhost")]);
    // wss:// to a relay that speaks plain websockets.
    let plain = relay.url().replace("ws://", "wss://");
    let said = fails(&plain);
    assert!(
        said.contains("does not answer in TLS on that port"),
        "{said}"
    );
    // --ca for a ws:// relay, or a file with no certificate, is a usage error.
    let output = ana.run(&["workspace", "relay", "add", &relay.url(), "--ca", &ca_pem]);
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let junk = world.file("junk.pem");
    std::fs::write(&junk, "not a certificate").unwrap();
    let output = ana.run(&[
        "workspace",
        "relay",
        "add",
        &url,
        "--ca",
        junk.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("holds no certificate"),
        "{output:?}"
    );
}

/// The relay terminating TLS itself: a team syncs over `wss://` with the relay's CA; a
/// certificate reloaded on SIGHUP is what new connections get, while a daemon connected
/// before keeps its connection and keeps receiving.
#[test]
fn a_relay_with_its_own_tls_reloads_its_certificate_on_sighup() {
    let world = World::new();
    let ca = Ca::new("Acme relay CA");
    let write_leaf = |leaf: &Leaf| {
        std::fs::write(world.file("cert.pem"), &leaf.pem).unwrap();
        std::fs::write(world.file("key.pem"), &leaf.key_pem).unwrap();
    };
    write_leaf(&ca.leaf(&["localhost"], None));
    let (cert, key) = (world.file("cert.pem"), world.file("key.pem"));
    let relay = Relay::start_with(
        &world.file("relay"),
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    let url = relay.url().replace("ws://127.0.0.1", "wss://localhost");
    let ca_pem = ca_file(&world, &ca, "acme-ca.pem");
    let ana = world.person("Ana", "Asia/Tokyo");
    ana.ok(&[
        "workspace",
        "create",
        "acme",
        "--relay",
        &url,
        "--ca",
        &ca_pem,
    ]);
    let bo = world.person("Bo", "Europe/Berlin");
    let code = ana.ok(&["invite"]);
    bo.ok(&["join", code.trim(), "--ca", &ca_pem]);
    let log = world.file("bo-daemon.log");
    let _daemon = crate::relays::start_daemon(&bo, &log, &[]);
    poll(Duration::from_secs(15), "Bo's daemon connects", || {
        crate::relays::read_log(&log)
            .contains("connected to wss://")
            .then_some(())
    });
    // A certificate for another name, reloaded: new connections are refused for it…
    write_leaf(&ca.leaf(&["relay.example.org"], None));
    crate::relays::signal(relay.pid().unwrap(), "HUP");
    let refused = poll(
        Duration::from_secs(10),
        "the new certificate is served",
        || {
            let output = ana.run(&["sync"]);
            let said = String::from_utf8_lossy(&output.stderr).into_owned();
            said.contains("is not for localhost").then_some(said)
        },
    );
    assert!(refused.contains("relay.example.org"), "{refused}");
    // …while Bo's daemon, connected before, still receives.
    write_leaf(&ca.leaf(&["localhost"], None));
    crate::relays::signal(relay.pid().unwrap(), "HUP");
    poll(
        Duration::from_secs(10),
        "the right certificate is back",
        || ana.run(&["sync"]).status.success().then_some(()),
    );
    ana.create(&["thread", "new", "Reloaded", "-m", "still there?"]);
    ana.ok(&["sync"]);
    poll(
        Duration::from_secs(15),
        "Bo's daemon applies the thread",
        || {
            thread_titles(&bo)
                .contains(&"Reloaded".to_string())
                .then_some(())
        },
    );
    assert!(
        !crate::relays::read_log(&log).contains("reconnecting"),
        "the daemon kept its connection across both reloads:\n{}",
        crate::relays::read_log(&log)
    );
}
