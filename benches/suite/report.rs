//! Results: one row per measured metric (median of repeated runs, the baseline measured in
//! the same run, their ratio, the target), the machine they were taken on, and the Markdown
//! that goes into `BENCHMARKS.md` between two markers, so the commentary around it survives
//! a re-run.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

/// What a metric should reach.
#[derive(Clone, Debug)]
pub enum Target {
    /// No target: the row informs.
    None,
    /// The median must be at most this (in the row's unit).
    AtMost(f64),
    /// The median must be at least this (in the row's unit).
    AtLeast(f64),
    /// The ratio to the baseline must be at most this.
    RatioAtMost(f64),
}

/// What a row is compared with, and that baseline's median.
pub type Baseline = Option<(String, f64)>;

/// One measured metric.
#[derive(Clone, Debug)]
pub struct Row {
    /// The scenario, e.g. `6. Cold start and reads`.
    pub scenario: String,
    /// What was measured.
    pub metric: String,
    /// The unit of `median` and of the baseline.
    pub unit: &'static str,
    /// Median over the runs.
    pub median: f64,
    /// How many runs the median is over.
    pub runs: usize,
    /// What it is compared with, and that baseline's median in the same unit.
    pub baseline: Option<(String, f64)>,
    /// What it should reach.
    pub target: Target,
}

impl Row {
    /// A row maker for one scenario: `(metric, unit, median, runs, baseline, target)`.
    pub fn of(
        scenario: &str,
    ) -> impl Fn(String, &'static str, f64, usize, Baseline, Target) -> Row + '_ {
        move |metric, unit, median, runs, baseline, target| Row {
            scenario: scenario.into(),
            metric,
            unit,
            median,
            runs,
            baseline,
            target,
        }
    }

    /// The ratio of the median to the baseline.
    pub fn ratio(&self) -> Option<f64> {
        self.baseline
            .as_ref()
            .filter(|(_, b)| *b > 0.0)
            .map(|(_, b)| self.median / b)
    }

    /// Whether the target is met (`None` when there is none).
    pub fn met(&self) -> Option<bool> {
        match self.target {
            Target::None => None,
            Target::AtMost(x) => Some(self.median <= x),
            Target::AtLeast(x) => Some(self.median >= x),
            Target::RatioAtMost(x) => self.ratio().map(|r| r <= x),
        }
    }

    fn target_text(&self) -> String {
        match self.target {
            Target::None => "—".into(),
            Target::AtMost(x) => format!("≤ {} {}", number(x), self.unit),
            Target::AtLeast(x) => format!("≥ {} {}", number(x), self.unit),
            Target::RatioAtMost(x) => format!("ratio ≤ {x}"),
        }
    }
}

/// The median of some samples (the upper one of the middle two).
pub fn median(samples: &[f64]) -> f64 {
    assert!(!samples.is_empty(), "a median needs samples");
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[sorted.len() / 2]
}

/// A number for a table: three significant digits, thousands separated.
pub fn number(x: f64) -> String {
    if x == 0.0 {
        return "0".into();
    }
    let digits = if x.abs() >= 100.0 {
        0
    } else if x.abs() >= 10.0 {
        1
    } else if x.abs() >= 1.0 {
        2
    } else {
        3
    };
    let text = format!("{x:.digits$}");
    let (int, frac) = match text.split_once('.') {
        Some((i, f)) => (i.to_string(), Some(f.to_string())),
        None => (text, None),
    };
    let (sign, int) = match int.strip_prefix('-') {
        Some(rest) => ("-", rest.to_string()),
        None => ("", int),
    };
    let mut grouped = String::new();
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    match frac {
        Some(f) => format!("{sign}{grouped}.{f}"),
        None => format!("{sign}{grouped}"),
    }
}

/// The machine a run was taken on.
pub struct Machine {
    /// Processors available.
    pub cores: usize,
    /// CPU model name.
    pub cpu: String,
    /// Total memory, GiB.
    pub memory_gib: f64,
    /// `rustc --version`.
    pub rustc: String,
    /// Load averages (1, 5 minutes) when the run started.
    pub load_before: (f64, f64),
    /// The git commit measured.
    pub commit: String,
}

impl Machine {
    /// Looks at this machine.
    pub fn detect() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split(':').nth(1))
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|| "unknown CPU".into());
        let memory_gib = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                m.lines()
                    .find(|l| l.starts_with("MemTotal:"))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|kb| kb.parse::<f64>().ok())
            })
            .map(|kb| kb / (1024.0 * 1024.0))
            .unwrap_or(0.0);
        Machine {
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu,
            memory_gib,
            rustc: command_line("rustc", &["--version"]),
            load_before: load(),
            commit: command_line("git", &["rev-parse", "--short=12", "HEAD"]),
        }
    }
}

/// The 1- and 5-minute load averages.
pub fn load() -> (f64, f64) {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut fields = text.split_whitespace().map(|f| f.parse().unwrap_or(0.0));
    (fields.next().unwrap_or(0.0), fields.next().unwrap_or(0.0))
}

fn command_line(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

/// Renders the machine note and the table.
pub fn markdown(machine: &Machine, rows: &[Row], settings: &str, seconds: f64) -> String {
    let load_after = load();
    let busy = machine.load_before.0.max(load_after.0) > 0.5 * machine.cores as f64;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Machine: {} cores, {}, {:.0} GiB memory; {}; commit {}.  ",
        machine.cores, machine.cpu, machine.memory_gib, machine.rustc, machine.commit
    );
    let _ = writeln!(
        out,
        "Load average (1 min) {:.2} before and {:.2} after the run{}.  ",
        machine.load_before.0,
        load_after.0,
        if busy {
            ": **the machine was busy with other work, so times are noisy**"
        } else {
            ": a quiet machine"
        }
    );
    let _ = writeln!(
        out,
        "Settings: {settings}. The whole run took {seconds:.0} s.\n"
    );
    out.push_str("| scenario | metric | median | baseline | ratio | target | met? | runs |\n");
    out.push_str("|---|---|---:|---|---:|---|---|---:|\n");
    for row in rows {
        let baseline = match &row.baseline {
            Some((name, value)) => format!("{name}: {} {}", number(*value), row.unit),
            None => "—".into(),
        };
        let ratio = row
            .ratio()
            .map(|r| format!("{}×", number(r)))
            .unwrap_or_else(|| "—".into());
        let met = match row.met() {
            None => "",
            Some(true) => "yes",
            Some(false) => "**no**",
        };
        if row.median.is_nan() {
            let _ = writeln!(
                out,
                "| {} | {} | skipped | — | — | — |  | 0 |",
                row.scenario, row.metric
            );
            continue;
        }
        let _ = writeln!(
            out,
            "| {} | {} | {} {} | {baseline} | {ratio} | {} | {met} | {} |",
            row.scenario,
            row.metric,
            number(row.median),
            row.unit,
            row.target_text(),
            row.runs
        );
    }
    out
}

/// The markers between which the suite writes; everything else in the file is left alone.
pub const BEGIN: &str = "<!-- bench suite: generated from here -->";
/// See [`BEGIN`].
pub const END: &str = "<!-- bench suite: generated up to here -->";

/// Writes the generated part into `path`, keeping whatever surrounds the markers.
pub fn write_into(path: &Path, generated: &str) -> std::io::Result<()> {
    let existing = std::fs::read_to_string(path).unwrap_or_default();
    let block = format!("{BEGIN}\n{generated}{END}");
    let text = match (existing.find(BEGIN), existing.find(END)) {
        (Some(start), Some(end)) if start < end => format!(
            "{}{block}{}",
            &existing[..start],
            &existing[end + END.len()..]
        ),
        _ if existing.trim().is_empty() => format!("# Benchmarks\n\n{block}\n"),
        _ => format!("{}\n\n{block}\n", existing.trim_end()),
    };
    std::fs::write(path, text)
}
