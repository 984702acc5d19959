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
        /// A TOML file of limits: `meridian-relay config --print-default` prints one with
        /// every key.
        #[arg(long, value_name = "FILE", long_help = config_help())]
        config: Option<PathBuf>,
        /// Serve `/healthz`, `/readyz` and `/metrics` (Prometheus) over plain HTTP on this
        /// address, for the operator's probes and scraper: keep it on loopback or a private
        /// network (off unless given).
        #[arg(long, value_name = "ADDR")]
        admin_listen: Option<SocketAddr>,
        /// How log lines look on stderr: `text` (coloured on a terminal only) or `json`
        /// (one object per line, for a log collector).
        #[arg(long, value_name = "FORMAT", default_value = "text")]
        log_format: LogFormat,
        /// Terminate TLS on the websocket port with this certificate chain (PEM), so members
        /// use wss://; SIGHUP reloads it. Needs --tls-key (or `[tls]` in the config).
        #[arg(long, value_name = "FILE", requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// The private key (PEM) of --tls-cert.
        #[arg(long, value_name = "FILE", requires = "tls_cert")]
        tls_key: Option<PathBuf>,
    },
    /// A consistent copy of the relay's database, made while it serves (through its control
    /// socket), or from the data directory of a stopped relay.
    #[command(
        after_help = "Examples:\n  meridian-relay backup --data /var/lib/meridian-relay -o /backups/relay-$(date +%F).redb"
    )]
    Backup {
        /// The relay's data directory.
        #[arg(long, value_name = "DIR")]
        data: PathBuf,
        /// Where to write the backup (a redb file; written beside it, then renamed).
        #[arg(short = 'o', long = "output", value_name = "FILE")]
        output: PathBuf,
    },
    /// Put a backup in place as the database of a stopped relay, with a new relay id (so
    /// members push again what the relay may lack). Never overwrites a database.
    #[command(
        after_help = "Examples:\n  meridian-relay restore /backups/relay-2026-12-07.redb --data /var/lib/meridian-relay"
    )]
    Restore {
        /// The backup file.
        file: PathBuf,
        /// The data directory to restore into (it must hold no database).
        #[arg(long, value_name = "DIR")]
        data: PathBuf,
    },
    /// The config file: print one with every key and its default, or check one.
    #[command(
        after_help = "Examples:\n  meridian-relay config --print-default > relay.toml\n  meridian-relay config --check relay.toml"
    )]
    Config {
        /// Print a config file setting every key to its default, each explained.
        #[arg(long, conflicts_with = "check")]
        print_default: bool,
        /// Read FILE as the relay would, and say what it sets or what is wrong with it.
        #[arg(long, value_name = "FILE")]
        check: Option<PathBuf>,
    },
}

/// The long help of `--config`: every key, its unit and its default.
fn config_help() -> String {
    let mut text = String::from(
        "A TOML file of limits. Every key is optional; `meridian-relay config --print-default` \
         prints a file with all of them.\n\nKeys (default):",
    );
    for setting in Config::default().settings() {
        text.push_str(&format!(
            "\n  {} = {}  ({}): {}",
            setting.key, setting.value, setting.unit, setting.about
        ));
    }
    text.push_str(
        "\n  [tls] cert = FILE, key = FILE  (PEM, none by default): TLS on the websocket port, \
         as --tls-cert and --tls-key; SIGHUP reloads them",
    );
    text
}

/// Reads and checks a config file.
fn load(path: &std::path::Path) -> Result<Config> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the config file {}", path.display()))?;
    let config = toml::from_str::<Config>(&text)
        .with_context(|| format!("the config file {} is invalid", path.display()))?;
    check(&config).with_context(|| format!("the config file {} is invalid", path.display()))?;
    Ok(config)
}

/// The shape of log lines.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    /// Text for people: coloured on a terminal, plain in a file or journald.
    #[value(alias = "human")]
    Text,
    /// One JSON object per line: time, level, fields, message.
    Json,
}

fn main() {
    let cli = Cli::parse();
    let format = match &cli.command {
        Command::Serve { log_format, .. } => *log_format,
        _ => LogFormat::Text,
    };
    let logs = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(tracing::Level::INFO);
    match format {
        LogFormat::Json => logs.json().init(),
        LogFormat::Text => {
            // Colour only on a terminal: a log file or journald gets plain text.
            let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr())
                && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
            logs.with_ansi(ansi).init();
        }
    }
    if let Err(e) = run(cli) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

/// Reloads the certificate and key on every SIGHUP: new connections take the new ones,
/// open connections keep theirs; a pair that does not load leaves the old one in place.
async fn reload_on_sighup(tls: Option<server::TlsSettings>, files: Option<server::TlsFiles>) {
    let Ok(mut hangups) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
    else {
        tracing::warn!("cannot listen for SIGHUP: the certificate is not reloadable");
        return;
    };
    while hangups.recv().await.is_some() {
        let (Some(tls), Some(files)) = (&tls, &files) else {
            tracing::info!("SIGHUP: nothing to reload (no TLS certificate is configured)");
            continue;
        };
        match server::tls_settings(&files.cert, &files.key) {
            Ok(config) => {
                *tls.write().unwrap_or_else(|e| e.into_inner()) = config;
                tracing::info!("reloaded the certificate {}", files.cert.display());
            }
            Err(e) => tracing::error!("kept the old certificate: {e:#}"),
        }
    }
}

/// The control socket's directory in the data directory, and its name there.
const CONTROL_DIR: &str = "control";
const CONTROL_SOCKET: &str = "admin.sock";

/// The control socket, for the relay's own user only. A socket left by a relay that died
/// is replaced: the database opened, so no other relay uses this directory.
fn control_socket(data: &std::path::Path) -> Result<tokio::net::UnixListener> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    // In a directory only the relay's user may enter, so no one else can reach the socket
    // even in the moment before its own mode is set.
    let dir = data.join(CONTROL_DIR);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .with_context(|| format!("cannot create {}", dir.display()))?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
    let path = dir.join(CONTROL_SOCKET);
    let _ = std::fs::remove_file(&path);
    let listener = tokio::net::UnixListener::bind(&path)
        .with_context(|| format!("cannot create the control socket {}", path.display()))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// `meridian-relay backup`: through the running relay's control socket, or from the
/// database directly when no relay serves it.
fn backup(data: &std::path::Path, output: &std::path::Path) -> Result<()> {
    use std::io::{BufRead, BufReader};
    let output = std::path::absolute(output)
        .with_context(|| format!("cannot resolve {}", output.display()))?;
    if output.exists() {
        anyhow::bail!(
            "{} exists: a backup never overwrites a file; name a new one",
            output.display()
        );
    }
    let held = match std::os::unix::net::UnixStream::connect(
        data.join(CONTROL_DIR).join(CONTROL_SOCKET),
    ) {
        Ok(mut socket) => {
            writeln!(socket, "backup {}", output.display())?;
            let mut answer = String::new();
            BufReader::new(socket).read_line(&mut answer)?;
            let answer = answer.trim_end();
            match answer.strip_prefix("ok ") {
                Some(figures) => {
                    let n: Vec<u64> = figures.split(' ').filter_map(|f| f.parse().ok()).collect();
                    match n.as_slice() {
                        [w, e, b] => (*w, *e, *b, "the running relay"),
                        _ => anyhow::bail!("the relay answered `{answer}`"),
                    }
                }
                None => anyhow::bail!(
                    "the relay could not back up: {}",
                    answer.strip_prefix("error ").unwrap_or(answer)
                ),
            }
        }
        Err(_) => {
            if !data.join("relay.redb").exists() {
                anyhow::bail!(
                    "{} holds no relay database (is --data right?)",
                    data.display()
                );
            }
            let store = RelayStore::open_with(data, Config::default().store())?;
            let b = store.backup_to(&output)?;
            (
                b.workspaces,
                b.entries,
                b.bytes,
                "the stopped relay's database",
            )
        }
    };
    let (workspaces, entries, bytes, from) = held;
    println!(
        "Backed up {from} to {}: {}, {bytes} bytes.",
        output.display(),
        holds(workspaces, entries)
    );
    Ok(())
}

/// "1 workspace, 4 log entries".
fn holds(workspaces: u64, entries: u64) -> String {
    let plural = |n: u64, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    format!(
        "{}, {}",
        plural(workspaces, "workspace", "workspaces"),
        plural(entries, "log entry", "log entries")
    )
}

/// Files the relay holds besides its connections: the database, the listeners, logs.
const SPARE_FILES: u64 = 64;

/// Raises the soft open-file limit to the hard one, and says loudly when even that cannot
/// hold `max_connections` connections: past the limit, accepting fails and members are
/// refused for a reason no log line would otherwise explain.
fn open_files(max_connections: usize) {
    let wanted = max_connections as u64 + SPARE_FILES;
    let (soft, hard) = match rlimit::getrlimit(rlimit::Resource::NOFILE) {
        Ok(limits) => limits,
        Err(e) => {
            tracing::warn!("cannot read the open-file limit: {e}");
            return;
        }
    };
    let raised = if soft < hard {
        match rlimit::setrlimit(rlimit::Resource::NOFILE, hard, hard) {
            Ok(()) => hard,
            Err(e) => {
                tracing::warn!("cannot raise the open-file limit from {soft} to {hard}: {e}");
                soft
            }
        }
    } else {
        soft
    };
    if raised < wanted {
        tracing::warn!(
            "the open-file limit is {raised}, so at most about {} connections can be served, not max_connections = {max_connections}: raise it (LimitNOFILE={wanted} in the systemd unit, or `ulimit -n`), or lower max_connections",
            raised.saturating_sub(SPARE_FILES)
        );
    } else if raised != soft {
        tracing::info!("open-file limit raised from {soft} to {raised}");
    }
}

/// Refuses limits that would make the relay useless or crash it (a semaphore or a channel
/// of 2^64 slots panics or exhausts memory; zero serves nobody).
fn check(config: &Config) -> Result<()> {
    let bounds: [(&str, u64, u64, u64); 10] = [
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
        ("ping_interval_secs", config.ping_interval_secs, 0, 3600),
        ("drain_secs", config.drain_secs, 0, 3600),
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
    let (listen, data, config, admin_listen, tls_files) = match cli.command {
        Command::Serve {
            listen,
            data,
            config,
            admin_listen,
            log_format: _,
            tls_cert,
            tls_key,
        } => {
            let tls = tls_cert
                .zip(tls_key)
                .map(|(cert, key)| server::TlsFiles { cert, key });
            (listen, data, config, admin_listen, tls)
        }
        Command::Backup { data, output } => return backup(&data, &output),
        Command::Restore { file, data } => {
            let (id, held) = meridian_relay::store::restore(&file, &data)?;
            println!(
                "Restored {} ({}) into {} with the new relay id {}: members push what it lacks when they next sync.",
                file.display(),
                holds(held.workspaces, held.entries),
                data.display(),
                hex::encode(&id[..6])
            );
            return Ok(());
        }
        Command::Config {
            print_default,
            check,
        } => {
            let text = match (print_default, check) {
                (_, Some(path)) => {
                    let config = load(&path)?;
                    let mut text =
                        format!("{} is valid; the relay would run with:\n", path.display());
                    for setting in config.settings() {
                        text.push_str(&format!("  {} = {}\n", setting.key, setting.value));
                    }
                    if let Some(tls) = &config.tls {
                        server::tls_settings(&tls.cert, &tls.key).with_context(|| {
                            format!("the config file {} is invalid", path.display())
                        })?;
                        text.push_str(&format!(
                            "  tls: {} with the key {} (both read and matched)\n",
                            tls.cert.display(),
                            tls.key.display()
                        ));
                    }
                    text
                }
                (true, None) => Config::default().commented(),
                (false, None) => anyhow::bail!(
                    "say what to do with the config: `--print-default` prints one with every key, `--check FILE` checks yours"
                ),
            };
            let _ = std::io::stdout().write_all(text.as_bytes());
            return Ok(());
        }
    };
    let mut config = match config {
        Some(path) => load(&path)?,
        None => Config::default(),
    };
    if tls_files.is_some() {
        config.tls = tls_files;
    }
    // A certificate that does not load stops the relay before it listens.
    let tls = match &config.tls {
        Some(files) => Some(std::sync::Arc::new(std::sync::RwLock::new(
            server::tls_settings(&files.cert, &files.key)?,
        ))),
        None => None,
    };
    open_files(config.max_connections);
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
        let scheme = if tls.is_some() { "wss" } else { "ws" };
        let _ = writeln!(std::io::stdout(), "listening on {scheme}://{bound}");
        if bound.ip().is_unspecified() {
            tracing::info!(
                "members add this relay as {scheme}://HOST:{} (HOST: a name or address of this machine they can reach{})",
                bound.port(),
                if tls.is_some() { ", the one its certificate names" } else { "" }
            );
        } else {
            tracing::info!(
                "members add this relay with `meridian workspace relay add {scheme}://{bound}`"
            );
        }
        let control = match control_socket(&data) {
            Ok(control) => Some(control),
            Err(e) => {
                tracing::warn!(
                    "{e:#}: serving without a control socket, so `meridian-relay backup` works only on a stopped relay"
                );
                None
            }
        };
        // Installed whatever the TLS settings: SIGHUP's default would end the relay.
        let (tls_for_reload, files) = (tls.clone(), config.tls.clone());
        tokio::spawn(reload_on_sighup(tls_for_reload, files));
        let admin = match admin_listen {
            Some(addr) => {
                let admin = tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("cannot listen on {addr} for --admin-listen"))?;
                let bound = admin.local_addr()?;
                let _ = writeln!(std::io::stdout(), "admin on http://{bound}");
                tracing::info!(
                    "health on http://{bound}/healthz and /readyz, metrics on http://{bound}/metrics"
                );
                Some(admin)
            }
            None => None,
        };
        // systemd's Type=notify: ready once listening (nothing is sent without NOTIFY_SOCKET).
        if let Err(e) = sd_notify::notify(&[sd_notify::NotifyState::Ready]) {
            tracing::warn!("could not tell systemd the relay is ready: {e}");
        }
        let shutdown = async {
            server::shutdown_signal().await;
            let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
        };
        let admin = server::Admin {
            http: admin,
            control,
            tls,
        };
        let result = server::run_with(listener, admin, store, config, shutdown).await;
        let _ = std::fs::remove_file(data.join(CONTROL_DIR).join(CONTROL_SOCKET));
        result
    })
}
