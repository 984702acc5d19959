//! Integration tests: real `meridian` processes over real redb files in temporary homes.
//!
//! Contents:
//! - `flows`: the single-user and two-user flows of the CLI, one test per capability
//!   (identity, workspaces, proposals and their lifecycle, threads, updates, history,
//!   export), plus the errors people meet.
//! - `daily`: the daily loop (write, ask, decide, reply, catch up) as a team of three meets
//!   it: settling conflicts, joining, naming people, removed members, frozen decisions,
//!   text input, the inbox. Each test fails on a build from before its fix.
//! - `offline`: three people in Tokyo, Berlin and Lima editing the same proposal and thread
//!   offline and converging through bundles exchanged in different orders.
//! - `deadlines`: response deadlines in each responder's working hours, shown in the
//!   reader's zone, across a daylight-saving change.
//! - `durability`: concurrent commands on one home, and writers killed mid-write.
//! - `hostile`: garbage, truncated, forged, bomb, deeply nested and dependency-less input to
//!   `merge`: a clear error, and the store exactly as it was.
//! - `help`: a snapshot of every `--help` page (the CLI is an interface).
//! - `contract`: the command line as a contract for scripts: exit codes by kind of failure,
//!   errors as JSON under `--json`, one JSON model across commands, suggestions.
//! - `convergence`: a property test over the library: random edits on 2–4 nodes, merged in
//!   random orders and groupings, converge to identical documents.
//! - `sync`: nodes syncing through a real `meridian-relay` process on loopback: convergence,
//!   a relay stopped, killed and restarted and syncs killed mid-flight, no plaintext on the
//!   relay, refused strangers, forged envelopes, the daemon (`relays` holds the helpers).
//! - `crash`: seeded SIGKILL trials of write commands, syncs, the daemon and the relay on
//!   one team: databases always open, no acknowledged edit is lost, everyone converges.

mod contract;
mod convergence;
mod crash;
mod daily;
mod deadlines;
mod devices;
mod durability;
mod epochs;
mod flows;
mod help;
mod hostile;
mod notify;
mod offline;
mod proxy;
mod records;
mod relays;
mod removals;
mod screens;
mod search;
mod support;
mod sync;
mod tls;
mod updates;
