//! The `meridian-relay` binary: `meridian-relay serve --listen ADDR --data DIR`.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use meridian_relay::server::{self, Config};
use meridian_relay::store::RelayStore;

/// The Meridian relay: stores and forwards sealed, signed changes it cannot read.
#[derive(Debug, Parser)]
#[command(name = "meridian-relay", version, max_term_width = 100)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve websocket connections until SIGTERM or ctrl-c.
    Serve {
        /// Address to listen on (port 0 picks a free port; the address is printed).
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:7070")]
        listen: SocketAddr,
        /// Directory of the relay's database.
        #[arg(long, value_name = "DIR")]
        data: PathBuf,
        /// A TOML file of limits (see `Config`: max_connections, max_per_workspace,
        /// max_per_device, handshake_timeout_secs, send_timeout_secs, max_frame_bytes,
        /// live_batches, recovery, cache_mb).
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
}

fn main() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(tracing::Level::INFO)
        .init();
    if let Err(e) = run(Cli::parse()) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

/// Refuses limits that would make the relay useless or crash it (a semaphore or a channel
/// of 2^64 slots panics or exhausts memory; zero serves nobody).
fn check(config: &Config) -> Result<()> {
    let bounds: [(&str, u64, u64, u64); 8] = [
        (
            "max_connections",
            config.max_connections as u64,
            1,
            1_000_000,
        ),
        (
            "max_per_workspace",
            config.max_per_workspace as u64,
            1,
            1_000_000,
        ),
        (
            "handshake_timeout_secs",
            config.handshake_timeout_secs,
            1,
            3600,
        ),
        ("send_timeout_secs", config.send_timeout_secs, 1, 3600),
        (
            "max_frame_bytes",
            config.max_frame_bytes as u64,
            1024,
            1 << 30,
        ),
        ("live_batches", config.live_batches as u64, 1, 65_536),
        ("max_per_device", config.max_per_device as u64, 1, 1_000_000),
        ("cache_mb", config.cache_mb as u64, 1, 1 << 20),
    ];
    for (name, value, low, high) in bounds {
        if !(low..=high).contains(&value) {
            anyhow::bail!(
                "the config sets {name} = {value}: it must be at least {low} and at most {high}"
            );
        }
    }
    Ok(())
}

fn run(cli: Cli) -> Result<()> {
    let Command::Serve {
        listen,
        data,
        config,
    } = cli.command;
    let config = match config {
        Some(path) => {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read the config file {}", path.display()))?;
            toml::from_str::<Config>(&text)
                .with_context(|| format!("the config file {} is invalid", path.display()))?
        }
        None => Config::default(),
    };
    check(&config)?;
    // The database opens (and, after a crash, repairs) before the relay listens, so a
    // client that can connect is served at once.
    let store = RelayStore::open_with(&data, config.store())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .max_blocking_threads(8)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
        let bound = listener.local_addr()?;
        // The first line of stdout is the address, for scripts that asked for port 0. A
        // stdout nobody reads (closed, or a full disk) is no reason not to serve, and
        // `println!` would panic on it.
        let _ = writeln!(
            std::io::stdout(),
            "listening on ws://{bound}{}",
            meridian_relay::protocol::PATH
        );
        server::run(listener, store, config, server::shutdown_signal()).await
    })
}
