//! What an operator watches: counters and gauges in Prometheus's text format (the
//! prometheus-client crate), served with health and readiness by the admin listener
//! (`server::admin`), and the relay's draining flag that readiness reports.
//!
//! Metric names follow Prometheus's conventions: `meridian_relay_` first, counters ending
//! in `_total`, units in the name (`_seconds`, `_bytes`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

/// A label set of one label.
type Label = Vec<(&'static str, String)>;

/// The relay's metrics and its health.
pub struct Metrics {
    registry: Registry,
    /// Connections open now (before and after authentication).
    pub connections_open: Gauge,
    /// Connections closed at once or refused, by reason (`connection_limit`, or the
    /// refusal's code: `unauthorized`, `busy`, `timeout`, …).
    connections_refused: Family<Label, Counter>,
    /// Handshakes by outcome: `admitted` or `refused`.
    handshakes: Family<Label, Counter>,
    /// Envelopes appended to workspace logs (duplicates are not appended).
    pub envelopes_stored: Counter,
    /// Bytes of the envelopes appended.
    pub stored_bytes: Counter,
    /// Batches of new entries written or queued to a member by the fan-out.
    pub deliveries: Counter,
    /// Members the fan-out could not keep up with, left to read the log instead.
    pub slow_readers_lagging: Counter,
    /// Members disconnected for not reading within the send timeout.
    pub slow_readers_disconnected: Counter,
    /// Pushes committed together in one durable transaction.
    pub commit_pushes: Histogram,
    /// Time of one group commit, seconds.
    pub commit_seconds: Histogram,
    workspaces: Gauge,
    store_bytes: Gauge,
    uptime_seconds: Gauge,
    started: Instant,
    draining: AtomicBool,
    /// Why the last commit failed, while it is the latest outcome.
    commit_failure: Mutex<Option<String>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Every metric at zero, registered under `meridian_relay_`.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("meridian_relay");
        let connections_open = Gauge::default();
        let connections_refused = Family::<Label, Counter>::default();
        let handshakes = Family::<Label, Counter>::default();
        let envelopes_stored = Counter::default();
        let stored_bytes = Counter::default();
        let deliveries = Counter::default();
        let slow_readers_lagging = Counter::default();
        let slow_readers_disconnected = Counter::default();
        let commit_pushes = Histogram::new(exponential_buckets(1.0, 2.0, 9));
        let commit_seconds = Histogram::new(exponential_buckets(0.0005, 2.0, 14));
        let workspaces = Gauge::default();
        let store_bytes = Gauge::default();
        let uptime_seconds = Gauge::default();
        registry.register(
            "connections_open",
            "Connections open now",
            connections_open.clone(),
        );
        registry.register(
            "connections_refused",
            "Connections closed at once or refused, by reason",
            connections_refused.clone(),
        );
        registry.register(
            "handshakes",
            "Handshakes by outcome (admitted, refused)",
            handshakes.clone(),
        );
        registry.register(
            "envelopes_stored",
            "Envelopes appended to workspace logs",
            envelopes_stored.clone(),
        );
        registry.register_with_unit(
            "stored",
            "Bytes of envelopes appended to workspace logs",
            Unit::Bytes,
            stored_bytes.clone(),
        );
        registry.register(
            "deliveries",
            "Batches of new entries the fan-out wrote or queued to a member",
            deliveries.clone(),
        );
        registry.register(
            "slow_readers_lagging",
            "Members the fan-out left behind to read the log instead",
            slow_readers_lagging.clone(),
        );
        registry.register(
            "slow_readers_disconnected",
            "Members disconnected for not reading within the send timeout",
            slow_readers_disconnected.clone(),
        );
        registry.register(
            "commit_pushes",
            "Pushes committed together in one durable transaction",
            commit_pushes.clone(),
        );
        registry.register_with_unit(
            "commit_duration",
            "Time of one group commit",
            Unit::Seconds,
            commit_seconds.clone(),
        );
        registry.register(
            "workspaces",
            "Workspaces the relay stores",
            workspaces.clone(),
        );
        registry.register_with_unit(
            "store_size",
            "Size of the relay's database file",
            Unit::Bytes,
            store_bytes.clone(),
        );
        registry.register_with_unit(
            "uptime",
            "Time since the relay started",
            Unit::Seconds,
            uptime_seconds.clone(),
        );
        let build = Family::<Label, Gauge>::default();
        build
            .get_or_create(&vec![("version", env!("CARGO_PKG_VERSION").to_string())])
            .set(1);
        registry.register("build_info", "The relay's version", build);
        Metrics {
            registry,
            connections_open,
            connections_refused,
            handshakes,
            envelopes_stored,
            stored_bytes,
            deliveries,
            slow_readers_lagging,
            slow_readers_disconnected,
            commit_pushes,
            commit_seconds,
            workspaces,
            store_bytes,
            uptime_seconds,
            started: Instant::now(),
            draining: AtomicBool::new(false),
            commit_failure: Mutex::new(None),
        }
    }

    /// Counts a connection refused or closed at once, for `reason`.
    pub fn refused(&self, reason: &str) {
        self.connections_refused
            .get_or_create(&vec![("reason", reason.to_string())])
            .inc();
    }

    /// Counts a handshake's outcome.
    pub fn handshake(&self, admitted: bool) {
        let outcome = if admitted { "admitted" } else { "refused" };
        self.handshakes
            .get_or_create(&vec![("outcome", outcome.to_string())])
            .inc();
    }

    /// Notes a group commit's outcome: a failure makes the relay not ready until a commit
    /// succeeds again.
    pub fn committed(&self, outcome: Result<(), String>) {
        *self
            .commit_failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = outcome.err();
    }

    /// From now on the relay is draining: not ready.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// Whether the relay takes new members: `Err` says why not.
    pub fn ready(&self) -> Result<(), String> {
        if self.draining.load(Ordering::SeqCst) {
            return Err("draining: the relay is shutting down".into());
        }
        match &*self
            .commit_failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
        {
            Some(why) => Err(format!("the last commit failed: {why}")),
            None => Ok(()),
        }
    }

    /// Every metric in Prometheus's text format, with the gauges read now set to
    /// `workspaces` and `store_bytes`.
    pub fn render(&self, workspaces: u64, store_bytes: u64) -> String {
        self.workspaces
            .set(i64::try_from(workspaces).unwrap_or(i64::MAX));
        self.store_bytes
            .set(i64::try_from(store_bytes).unwrap_or(i64::MAX));
        self.uptime_seconds
            .set(i64::try_from(self.started.elapsed().as_secs()).unwrap_or(i64::MAX));
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut text, &self.registry);
        text
    }
}

/// `RefusedCode::ShuttingDown` as `shutting_down`: a refusal's code as a label value.
pub fn snake_case(name: &str) -> String {
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_render_with_conventional_names() {
        let metrics = Metrics::new();
        metrics.refused("connection_limit");
        metrics.handshake(true);
        metrics.envelopes_stored.inc_by(3);
        metrics.commit_seconds.observe(0.002);
        let text = metrics.render(2, 4096);
        for line in [
            "meridian_relay_connections_refused_total{reason=\"connection_limit\"} 1",
            "meridian_relay_handshakes_total{outcome=\"admitted\"} 1",
            "meridian_relay_envelopes_stored_total 3",
            "meridian_relay_workspaces 2",
            "meridian_relay_store_size_bytes 4096",
            "meridian_relay_commit_duration_seconds_count 1",
            "meridian_relay_build_info{version=",
        ] {
            assert!(text.contains(line), "{line} in:\n{text}");
        }
        assert_eq!(snake_case("ShuttingDown"), "shutting_down");
        assert!(metrics.ready().is_ok());
        metrics.committed(Err("disk full".into()));
        assert!(metrics.ready().unwrap_err().contains("disk full"));
        metrics.committed(Ok(()));
        metrics.start_draining();
        assert!(metrics.ready().unwrap_err().contains("draining"));
    }
}
