//! Meridian's benchmark suite: each scenario measured where users feel it, against a
//! baseline measured in the same run (what they would use instead, or the lower bound under
//! it), as medians over repeated runs.
//!
//! `./scripts/bench.sh` runs it and writes the tables into `BENCHMARKS.md`. Directly:
//! `cargo bench --bench suite -- [--quick] [--only 3,5,6] [--runs N] [--configs 2] [--out FILE]`
//! (`--configs` picks convergence configurations, run once each). The
//! fan-out scenario runs the release `meridian-relay` binary as its relay process: build it
//! first with `cargo build --release -p meridian-relay` (the script does).
//! `--quick` uses small sizes for development; the numbers in `BENCHMARKS.md` come from a
//! full run on a quiet machine.

mod discussion;
mod fanout;
mod keyring;
mod local;
mod repo;
mod report;
mod search;
mod sync;
mod workload;

/// The allocator of the `meridian` binary (see `src/main.rs`), so the nodes this process
/// plays allocate as real ones do. The fan-out scenario's relay is the `meridian-relay`
/// binary itself, on the system allocator as deployed.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::time::Instant;

use anyhow::{Context, Result};

use report::{Machine, Row};

/// Sizes and repetitions.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Small documents in the home of scenarios 5 and 6, and in the workspace of 3.
    pub docs: usize,
    /// Changes of the long document whose history `log` reads.
    pub long_changes: usize,
    /// Fresh processes per command.
    pub process_runs: usize,
    /// In-process single edits.
    pub edit_runs: usize,
    /// Edits of the history typed one durable transaction at a time.
    pub interactive_edits: usize,
    /// Edits per batch import.
    pub import_edits: usize,
    /// Batch imports.
    pub import_runs: usize,
    /// Reconnects after a week offline.
    pub reconnect_runs: usize,
    /// Repetitions of each convergence configuration.
    pub convergence_runs: usize,
    /// Scale of the convergence configurations (1.0 is the sizes).
    pub convergence_scale: f64,
    /// Changes of the largest document of scenario 4.
    pub first_copy_changes: usize,
    /// Deliveries per fan-out run (pushes × members).
    pub fanout_deliveries: usize,
    /// Fan-out runs per size.
    pub fanout_runs: usize,
    /// Whether this is the small development run.
    pub quick: bool,
    /// Which convergence configurations to run (1-based; all when empty).
    pub convergence_only: Vec<usize>,
}

impl Settings {
    fn full() -> Settings {
        Settings {
            docs: 10_000,
            long_changes: 100_000,
            process_runs: 15,
            edit_runs: 15,
            interactive_edits: 500,
            import_edits: 20_000,
            import_runs: 3,
            reconnect_runs: 7,
            convergence_runs: 3,
            convergence_scale: 1.0,
            first_copy_changes: 260_000,
            fanout_deliveries: 1_000_000,
            fanout_runs: 3,
            quick: false,
            convergence_only: Vec::new(),
        }
    }

    fn quick() -> Settings {
        Settings {
            docs: 1_000,
            long_changes: 10_000,
            process_runs: 5,
            edit_runs: 5,
            interactive_edits: 100,
            import_edits: 5_000,
            import_runs: 2,
            reconnect_runs: 3,
            convergence_runs: 1,
            convergence_scale: 0.1,
            first_copy_changes: 26_000,
            fanout_deliveries: 100_000,
            fanout_runs: 1,
            quick: true,
            convergence_only: Vec::new(),
        }
    }

    fn describe(&self) -> String {
        format!(
            "{}{} small documents, a {}-change document for `log`, {} fresh processes per command, batch imports of {} edits",
            if self.quick {
                "**quick run (small sizes)**: "
            } else {
                ""
            },
            self.docs,
            self.long_changes,
            self.process_runs,
            self.import_edits
        )
    }
}

/// Seconds `f` took.
pub fn time_it<T>(f: impl FnOnce() -> Result<T>) -> Result<f64> {
    let started = Instant::now();
    f()?;
    Ok(started.elapsed().as_secs_f64())
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |name: &str| -> Option<String> {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let mut settings = if args.iter().any(|a| a == "--quick") {
        Settings::quick()
    } else {
        Settings::full()
    };
    if let Some(runs) = value("--runs") {
        settings.process_runs = runs.parse().context("--runs takes a number")?;
    }
    if let Some(list) = value("--configs") {
        settings.convergence_only = list
            .split(',')
            .map(|n| {
                n.trim()
                    .parse()
                    .context("--configs takes configuration numbers")
            })
            .collect::<Result<_>>()?;
        settings.convergence_runs = 1;
    }
    let only: Option<Vec<u32>> = value("--only")
        .map(|list| {
            list.split(',')
                .map(|n| n.trim().parse().context("--only takes scenario numbers"))
                .collect::<Result<_>>()
        })
        .transpose()?;
    let want = |n: u32| only.as_ref().is_none_or(|list| list.contains(&n));
    let machine = Machine::detect();
    let started = Instant::now();
    let mut rows: Vec<Row> = Vec::new();
    let mut run = |name: &str, f: &mut dyn FnMut(&mut Vec<Row>) -> Result<()>| -> Result<()> {
        let begun = Instant::now();
        eprintln!("{name}…");
        f(&mut rows).with_context(|| format!("scenario {name} failed"))?;
        eprintln!("{name}: {:.0} s", begun.elapsed().as_secs_f64());
        Ok(())
    };
    if want(1) {
        run("1. convergence", &mut |rows| {
            sync::convergence(&settings, rows)
        })?;
    }
    if want(2) {
        run("2. fan-out", &mut |rows| fanout::fan_out(&settings, rows))?;
    }
    if want(3) {
        run("3. reconnect", &mut |rows| sync::reconnect(&settings, rows))?;
    }
    if want(4) {
        run("4. first copy", &mut |rows| {
            sync::first_copy(&settings, rows)
        })?;
    }
    if want(5) || want(6) {
        run("5 and 6. local", &mut |rows| {
            local::run(&settings, rows, want)
        })?;
    }
    if want(7) {
        run("7. long discussions", &mut |rows| {
            discussion::run(&settings, rows)
        })?;
    }
    if want(9) {
        run("9. search", &mut |rows| search::run(&settings, rows))?;
    }
    if want(10) {
        run("10. key rotation", &mut |rows| {
            keyring::run(&settings, rows)
        })?;
    }
    rows.sort_by(|a, b| a.scenario.cmp(&b.scenario));
    let text = report::markdown(
        &machine,
        &rows,
        &settings.describe(),
        started.elapsed().as_secs_f64(),
    );
    println!("{text}");
    if let Some(out) = value("--out") {
        report::write_into(std::path::Path::new(&out), &text)
            .with_context(|| format!("cannot write {out}"))?;
        eprintln!("wrote {out}");
    }
    Ok(())
}
