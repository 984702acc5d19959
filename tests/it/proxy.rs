//! A relay behind a real nginx terminating TLS, as README's "Run a relay" sets it up: the
//! node syncs over `wss://` with the operator's CA, and an idle daemon stays connected past
//! the proxy's idle timeout because of its pings.
//!
//! nginx comes from the distribution (`.ci/run` installs it); without it these tests fail
//! and say how to install it, never pass silently. `MERIDIAN_NGINX` names another binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::relays::{Guard, Relay, poll, read_log, signal, start_daemon, wait_for};
use crate::support::World;
use crate::tls::{Ca, Leaf, ca_file, relay_addr};

/// The nginx binary, or a failure saying how to get one.
fn nginx() -> PathBuf {
    if let Some(path) = std::env::var_os("MERIDIAN_NGINX") {
        return PathBuf::from(path);
    }
    for candidate in ["/usr/sbin/nginx", "/usr/bin/nginx", "/usr/local/sbin/nginx"] {
        if Path::new(candidate).exists() {
            return PathBuf::from(candidate);
        }
    }
    panic!(
        "nginx is not installed, and these tests need a real reverse proxy: `apt-get install nginx-light` (what .ci/run does), or point MERIDIAN_NGINX at one"
    );
}

/// A free port on loopback (bound, then released for nginx to take).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// nginx in the foreground with README's proxy settings, in front of `backend`, its idle
/// timeout cut to `idle_secs`.
struct Nginx {
    port: u16,
    process: Guard,
    dir: PathBuf,
}

impl Nginx {
    fn start(world: &World, leaf: &Leaf, backend: std::net::SocketAddr, idle_secs: u64) -> Nginx {
        let dir = world.file("nginx");
        std::fs::create_dir_all(dir.join("tmp")).unwrap();
        std::fs::write(dir.join("cert.pem"), &leaf.pem).unwrap();
        std::fs::write(dir.join("key.pem"), &leaf.key_pem).unwrap();
        let port = free_port();
        let d = dir.display();
        // The location block is the one README gives operators.
        let config = format!(
            r#"daemon off;
pid {d}/nginx.pid;
error_log {d}/error.log info;
worker_processes 1;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {d}/tmp; proxy_temp_path {d}/tmp; fastcgi_temp_path {d}/tmp;
    uwsgi_temp_path {d}/tmp; scgi_temp_path {d}/tmp;
    map $http_upgrade $connection_upgrade {{ default upgrade; '' close; }}
    server {{
        listen 127.0.0.1:{port} ssl;
        server_name localhost;
        ssl_certificate {d}/cert.pem;
        ssl_certificate_key {d}/key.pem;
        location / {{
            proxy_pass http://{backend};
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_read_timeout {idle_secs}s;
            proxy_send_timeout {idle_secs}s;
        }}
    }}
}}
"#
        );
        let conf = dir.join("nginx.conf");
        std::fs::write(&conf, config).unwrap();
        let test = Command::new(nginx())
            .args(["-t", "-p"])
            .arg(&dir)
            .arg("-c")
            .arg(&conf)
            .output()
            .unwrap();
        assert!(test.status.success(), "nginx -t: {test:?}");
        let process = Guard(Some(
            Command::new(nginx())
                .arg("-p")
                .arg(&dir)
                .arg("-c")
                .arg(&conf)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        ));
        poll(Duration::from_secs(10), "nginx listens", || {
            std::net::TcpStream::connect(("127.0.0.1", port))
                .ok()
                .map(|_| ())
        });
        Nginx { port, process, dir }
    }

    fn url(&self) -> String {
        format!("wss://localhost:{}", self.port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    /// SIGTERM to the master, which stops its workers (SIGKILL would orphan them); SIGKILL
    /// only if it does not stop.
    fn drop(&mut self) {
        if let Some(mut child) = self.process.0.take() {
            signal(child.id(), "TERM");
            if wait_for(&mut child, Duration::from_secs(5)).is_none() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

#[test]
fn an_idle_daemon_stays_connected_through_nginx_by_its_pings() {
    const IDLE: u64 = 2;
    let world = World::new();
    let relay = Relay::start(&world.file("relay"));
    let ca = Ca::new("Acme relay CA");
    let proxy = Nginx::start(
        &world,
        &ca.leaf(&["localhost"], None),
        relay_addr(&relay),
        IDLE,
    );
    let ca_pem = ca_file(&world, &ca, "acme-ca.pem");
    let ca_pem = ca_pem.as_str();
    let ana = world.person("Ana", "Asia/Tokyo");
    let bo = world.person("Bo", "Europe/Berlin");
    let said = ana.ok(&[
        "workspace",
        "create",
        "acme",
        "--relay",
        &proxy.url(),
        "--ca",
        ca_pem,
    ]);
    assert!(said.contains("Synced with"), "{said}\n{}", proxy.log());
    let code = ana.ok(&["invite"]);
    bo.ok(&["join", code.trim(), "--ca", ca_pem]);
    // Bo's daemon pings every half second; the proxy cuts a connection idle for 2 s.
    let log = world.file("bo-daemon.log");
    let _daemon = start_daemon(&bo, &log, &[("MERIDIAN_PING_SECS", "0.5")]);
    let daemon_log = || read_log(&log);
    poll(Duration::from_secs(15), "Bo's daemon connects", || {
        daemon_log().contains("connected to wss://").then_some(())
    });
    std::thread::sleep(Duration::from_secs(3 * IDLE));
    // Still the first connection, and live: Ana's thread arrives without a command on Bo.
    let t = ana.create(&["thread", "new", "Quiet hours", "-m", "Anyone there?"]);
    ana.ok(&["sync"]);
    poll(
        Duration::from_secs(15),
        "Bo's daemon applies Ana's thread",
        || {
            bo.json(&["thread", "list"])
                .as_array()
                .unwrap()
                .iter()
                .any(|d| d["id"] == t.as_str())
                .then_some(())
        },
    );
    let said = daemon_log();
    assert!(
        !said.contains("reconnecting"),
        "the daemon lost its connection through the proxy:\n{said}"
    );
}
