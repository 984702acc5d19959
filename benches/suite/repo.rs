//! What users would pick instead of Meridian: automerge-repo with its reference sync server
//! (`@automerge/automerge-repo-sync-server`), run on the machine's Node.js by the harness in
//! `benches/automerge-repo/` (its README says what it measures and how). The same
//! offline-then-converge workload as scenario 1's one-document configurations: N peers each
//! make E edits while the server is down, then all reconnect; the time until every peer
//! has all N×E edits, and the bytes on the wire.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::workload::Edits;

/// One run of the harness.
#[derive(Debug)]
pub struct Run {
    /// From reconnecting to every peer holding every edit.
    pub seconds: f64,
    /// All bytes through the proxy in both directions while converging.
    pub bytes: u64,
    /// What ran, e.g. `@automerge/automerge-repo-sync-server@0.2.8, automerge 2.2.9`.
    pub what: String,
}

/// The harness's runs, or why they could not be made.
pub enum Outcome {
    /// It ran.
    Ran(Vec<Run>),
    /// Node.js or the harness's packages are missing: the row says so.
    Skipped(String),
}

fn harness() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("benches/automerge-repo")
}

/// Runs the harness `runs` times with `peers` peers making `edits` edits each.
pub fn converge(peers: usize, edits: usize, kind: Edits, runs: usize) -> Result<Outcome> {
    let dir = harness();
    let node = match Command::new("node").arg("--version").output() {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).trim().to_string(),
        _ => {
            return Ok(Outcome::Skipped(
                "Node.js is not installed here (`node` is not on PATH): install Node.js 20 or later and run `./scripts/bench.sh` again".into(),
            ));
        }
    };
    if !dir
        .join("node_modules/@automerge/automerge-repo-sync-server")
        .is_dir()
    {
        return Ok(Outcome::Skipped(format!(
            "the harness's npm packages are not installed: run `npm ci` in {} (`./scripts/bench.sh` does)",
            dir.display()
        )));
    }
    let kind = match kind {
        Edits::Typing => "text",
        Edits::Replies => "replies",
    };
    eprintln!("  automerge-repo ({node}): {peers} peers × {edits} {kind} edits, {runs} runs…");
    let output = Command::new("node")
        .current_dir(&dir)
        .args(["converge.mjs", "--peers", &peers.to_string()])
        .args(["--edits", &edits.to_string(), "--kind", kind])
        .args(["--runs", &runs.to_string(), "--timeout", "1200"])
        .output()
        .context("cannot run the automerge-repo harness")?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(12).collect();
        bail!(
            "the automerge-repo harness failed:\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
    let mut measured = Vec::new();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let json: serde_json::Value = serde_json::from_str(line)
            .with_context(|| format!("the harness printed something else than JSON: {line}"))?;
        let field = |name: &str| {
            json.get(name)
                .with_context(|| format!("the harness's line has no `{name}`: {line}"))
        };
        measured.push(Run {
            seconds: field("seconds")?
                .as_f64()
                .context("`seconds` is not a number")?,
            bytes: field("bytes")?
                .as_u64()
                .context("`bytes` is not a number")?,
            what: format!(
                "{} with automerge {} clients",
                field("server")?.as_str().unwrap_or("?"),
                field("automerge")?.as_str().unwrap_or("?")
            ),
        });
    }
    if measured.len() != runs {
        bail!(
            "the automerge-repo harness reported {} runs, expected {runs}",
            measured.len()
        );
    }
    Ok(Outcome::Ran(measured))
}
