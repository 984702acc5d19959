//! `wss://` relays: a node syncing through TLS with a CA of the relay's own, and each way a
//! certificate can be wrong refused with words that say what to do.
//!
//! The TLS end here is a real `meridian-relay` on loopback given a certificate made with
//! rcgen (`--tls-cert`, `--tls-key`); `proxy.rs` puts a real nginx in front of a relay
//! instead.

use std::net::SocketAddr;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, date_time_ymd,
};

use crate::relays::{Relay, poll};
use crate::support::{Home, World};

/// A certificate authority of a relay's own.
pub struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A server certificate and its key.
pub struct Leaf {
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
            pem: format!("{}{}", cert.pem(), self.issuer.pem()),
            key_pem: key.serialize_pem(),
        }
    }
}

/// A relay terminating TLS itself with `leaf`, its files written under `name` in the
/// shared directory; and its `wss://localhost:PORT` URL.
fn tls_relay(world: &World, name: &str, leaf: &Leaf) -> (Relay, String) {
    let (cert, key) = (
        world.file(&format!("{name}-cert.pem")),
        world.file(&format!("{name}-key.pem")),
    );
    std::fs::write(&cert, &leaf.pem).unwrap();
    std::fs::write(&key, &leaf.key_pem).unwrap();
    let relay = Relay::start_with(
        &world.file(name),
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    let url = relay.url().replace("ws://127.0.0.1", "wss://localhost");
    (relay, url)
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
fn each_wrong_certificate_is_refused_with_what_to_do() {
    let world = World::new();
    let relay = Relay::start(&world.file("relay"));
    let ca = Ca::new("Acme relay CA");
    let (_good, url) = tls_relay(&world, "good", &ca.leaf(&["localhost"], None));
    let (_other, other_host) = tls_relay(&world, "other", &ca.leaf(&["relay.example.org"], None));
    let (_expired, expired) = tls_relay(
        &world,
        "expired",
        &ca.leaf(&["localhost"], Some((2020, 2021))),
    );
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
    ana.ok(&["workspace", "relay", "add", &other_host, "--ca", &ca_pem]);
    let output = ana.run(&["sync"]);
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(
        said.contains("its certificate is not for localhost (it names relay.example.org)"),
        "{said}"
    );
    ana.ok(&["workspace", "relay", "remove", &other_host]);
    ana.ok(&["workspace", "relay", "add", &expired, "--ca", &ca_pem]);
    let output = ana.run(&["sync"]);
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(
        said.contains("certificate has expired (2021-01-01 00:00 UTC)"),
        "{said}"
    );
    ana.ok(&["workspace", "relay", "remove", &expired]);
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
    // A large message both ways: a push of many TLS records, and a live frame sealed for
    // one member.
    let long = "All of this, sealed. ".repeat(11_000);
    let body = world.file("long.md");
    std::fs::write(&body, &long).unwrap();
    let t = ana.create(&[
        "thread",
        "new",
        "Reloaded",
        "--file",
        body.to_str().unwrap(),
    ]);
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
    let shown = bo.json(&["show", &t]);
    assert_eq!(shown["body"].as_str().map(str::len), Some(long.len()));
    assert!(
        !crate::relays::read_log(&log).contains("reconnecting"),
        "the daemon kept its connection across both reloads:\n{}",
        crate::relays::read_log(&log)
    );
}
