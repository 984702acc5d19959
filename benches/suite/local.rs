//! Scenarios 5 (local writes) and 6 (cold start and reads): one home holding a workspace
//! of many small documents and one long document typed change by change.

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, ensure};
use meridian::bundle;
use meridian::id::Id;
use meridian::ingest::Limits;
use meridian::node::Node;
use redb::{Database, ReadableDatabase, TableDefinition};

use crate::report::{Row, Target, median};
use crate::workload::{self, Rng, populate, scratch};
use crate::{Settings, time_it};

const COLD: &str = "6. Cold start and reads";
const WRITES: &str = "5. Local writes";

/// Runs both scenarios on one home.
pub fn run(settings: &Settings, rows: &mut Vec<Row>, want: impl Fn(u32) -> bool) -> Result<()> {
    let tmp = scratch("meridian-bench-local")?;
    let home = tmp.path().join("home");
    let node = Node::init(&home, &workload::profile("Ana"))?;
    let workspace = node.create_workspace("bench", vec![])?;
    let started = Instant::now();
    let made = populate(&node, workspace, settings.docs)?;
    let populate_seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "  populated {} documents in {populate_seconds:.1} s",
        settings.docs
    );
    let started = Instant::now();
    let long = workload::long_document(&node, workspace, settings.long_changes, 7)?;
    eprintln!(
        "  typed a {}-change document in {:.1} s",
        settings.long_changes,
        started.elapsed().as_secs_f64()
    );
    // Fresh processes must find the file closed.
    drop(node);
    if want(6) {
        cold_start(settings, rows, &home, &made, long)?;
    }
    if want(5) {
        local_writes(
            settings,
            rows,
            tmp.path(),
            &home,
            workspace,
            populate_seconds,
        )?;
    }
    Ok(())
}

/// Times a fresh `meridian` process from start to exit.
pub fn process(home: &Path, args: &[String]) -> Result<f64> {
    let started = Instant::now();
    let output = Command::new(env!("CARGO_BIN_EXE_meridian"))
        .args(args)
        .env("MERIDIAN_HOME", home)
        .stdin(Stdio::null())
        .output()?;
    let elapsed = started.elapsed().as_secs_f64();
    ensure!(
        output.status.success(),
        "meridian {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(elapsed)
}

/// Owned arguments.
pub fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn cold_start(
    settings: &Settings,
    rows: &mut Vec<Row>,
    home: &Path,
    made: &workload::Populated,
    long: Id,
) -> Result<()> {
    let docs = settings.docs;
    let changes = settings.long_changes;
    let git = GitBaseline::new(changes).ok();
    // Each run takes every case once, so slow moments of a noisy machine spread evenly.
    let cases: Vec<(&str, Vec<String>)> = vec![
        ("whoami", args(&["whoami"])),
        ("inbox", args(&["inbox"])),
        ("proposal list", args(&["proposal", "list"])),
        ("thread list", args(&["thread", "list"])),
        ("show", args(&["show", &made.proposal.hex()])),
        ("log -n 20", args(&["log", &long.hex(), "-n", "20"])),
        ("log", args(&["log", &long.hex()])),
    ];
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); cases.len()];
    let mut git_tail = Vec::new();
    let mut git_full = Vec::new();
    let mut replies = Vec::new();
    let threads: Vec<Id> = made.docs.iter().skip(1).step_by(2).copied().collect();
    for run in 0..settings.process_runs {
        for (i, (_, args)) in cases.iter().enumerate() {
            samples[i].push(process(home, args)?);
        }
        if let Some(git) = &git {
            git_tail.push(git.time(&["log", "-n", "20"])?);
            git_full.push(git.time(&["log"])?);
        }
        // A different thread each time, so each reply is a first edit of an unloaded one.
        let thread = threads[run % threads.len()];
        replies.push(process(
            home,
            &args(&["reply", &thread.hex(), "-m", "A reply"]),
        )?);
    }
    let ms = |s: &[f64]| median(s) * 1000.0;
    let whoami = ms(&samples[0]);
    let open = (
        "process start + open the home (`whoami`)".to_string(),
        whoami,
    );
    let row = |metric: String, median: f64, baseline: Option<(String, f64)>, target| Row {
        scenario: COLD.into(),
        metric,
        unit: "ms",
        median,
        runs: settings.process_runs,
        baseline,
        target,
    };
    rows.push(row(
        "`whoami`: process start and opening the home".into(),
        whoami,
        None,
        Target::None,
    ));
    for (i, name) in [(1, "inbox"), (2, "proposal list"), (3, "thread list")] {
        rows.push(row(
            format!("`{name}` with {docs} documents"),
            ms(&samples[i]),
            Some(open.clone()),
            Target::AtMost(50.0),
        ));
    }
    rows.push(row(
        "`show` of an unloaded proposal".into(),
        ms(&samples[4]),
        Some(open.clone()),
        Target::None,
    ));
    rows.push(row(
        "`reply`: first durable edit of an unloaded thread, whole command".into(),
        ms(&replies),
        Some(open.clone()),
        Target::None,
    ));
    let (tail_base, full_base) = match &git {
        Some(_) => (
            (format!("`git log -n 20`, {changes} commits"), ms(&git_tail)),
            (format!("`git log`, {changes} commits"), ms(&git_full)),
        ),
        None => (open.clone(), open.clone()),
    };
    rows.push(row(
        format!("`log -n 20` on a {changes}-change document"),
        ms(&samples[5]),
        Some(tail_base),
        Target::AtMost(15.0),
    ));
    rows.push(row(
        format!("`log` (all {changes} lines)"),
        ms(&samples[6]),
        Some(full_base),
        Target::AtMost(150.0),
    ));
    first_edit_in_process(settings, rows, home, &threads, long, changes)?;
    Ok(())
}

/// The first edit of an unloaded document inside an open node, against a bare durable redb
/// commit of the same size next to it: the fsync every durable edit pays.
fn first_edit_in_process(
    settings: &Settings,
    rows: &mut Vec<Row>,
    home: &Path,
    threads: &[Id],
    long: Id,
    changes: usize,
) -> Result<()> {
    let node = Node::open(home)?;
    let (workspace, _) = node.workspace(None)?;
    let bare = BareStore::new(&home.join("bare.redb"))?;
    let mut edits = Vec::new();
    let mut commits = Vec::new();
    // Threads from the end were not replied to by the process runs. Documents the node
    // stored are kept loaded (`meridian::cache`): forgotten before each timed edit, so each
    // loads its document as a command does.
    for (i, thread) in threads.iter().rev().take(settings.edit_runs).enumerate() {
        node.docs().clear();
        edits.push(time_it(|| {
            workload::reply(&node, workspace, *thread, "ok")
        })?);
        commits.push(time_it(|| bare.commit(i as u64, &[0x5a; 700]))?);
    }
    // The same on the long document: each edit loads it first, as every command does.
    let mut long_edits = Vec::new();
    let mut rng = workload::Rng(11);
    for _ in 0..settings.edit_runs {
        node.docs().clear();
        long_edits.push(time_it(|| {
            node.edit(workspace, long, |doc| workload::type_into(doc, 1, &mut rng))
        })?);
    }
    // And in a process that keeps running (the daemon, an import): the document stays loaded.
    let mut kept_edits = Vec::new();
    for _ in 0..settings.edit_runs {
        kept_edits.push(time_it(|| {
            node.edit(workspace, long, |doc| workload::type_into(doc, 1, &mut rng))
        })?);
    }
    // Each against the fsync every durable edit pays.
    let fsync = median(&commits) * 1000.0;
    let row = |metric: String, times: &[f64], target| Row {
        scenario: COLD.into(),
        metric,
        unit: "ms",
        median: median(times) * 1000.0,
        runs: times.len(),
        baseline: Some((
            "a bare durable redb commit of 700 bytes (its fsync)".into(),
            fsync,
        )),
        target,
    };
    rows.push(row(
        format!(
            "a durable edit of the {changes}-change document in a running process (kept loaded)"
        ),
        &kept_edits,
        Target::None,
    ));
    rows.push(row(
        format!("first durable edit of the {changes}-change document, in process"),
        &long_edits,
        Target::None,
    ));
    rows.push(row(
        "first durable edit of an unloaded document, in process".into(),
        &edits,
        Target::AtMost(fsync + 2.0),
    ));
    Ok(())
}

/// A redb file with one table, the floor under every store write.
pub struct BareStore {
    db: Database,
}

const BARE: TableDefinition<u64, &[u8]> = TableDefinition::new("bare");

impl BareStore {
    /// Creates the file.
    pub fn new(path: &Path) -> Result<BareStore> {
        Ok(BareStore {
            db: Database::create(path)?,
        })
    }

    /// One durable transaction holding one value.
    pub fn commit(&self, key: u64, value: &[u8]) -> Result<()> {
        let txn = self.db.begin_write()?;
        txn.open_table(BARE)?.insert(key, value)?;
        txn.commit()?;
        Ok(())
    }

    /// One durable transaction holding `count` values of `size` bytes from `first` on.
    pub fn commit_many(&self, first: u64, count: u64, size: usize) -> Result<()> {
        let value = vec![0x5a; size];
        let txn = self.db.begin_write()?;
        {
            let mut table = txn.open_table(BARE)?;
            for key in first..first + count {
                table.insert(key, value.as_slice())?;
            }
        }
        txn.commit()?;
        Ok(())
    }
}

/// `git` over a repository of as many commits as the long document has changes: what a
/// person would use instead to read a long history.
struct GitBaseline {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
}

impl GitBaseline {
    fn new(commits: usize) -> Result<GitBaseline> {
        let dir = scratch("meridian-bench-git")?;
        let path = dir.path().to_path_buf();
        let status = Command::new("git")
            .args(["init", "-q", "-b", "main"])
            .current_dir(&path)
            .status()?;
        ensure!(status.success(), "git init failed");
        let mut import = Command::new("git")
            .args(["fast-import", "--quiet"])
            .current_dir(&path)
            .stdin(Stdio::piped())
            .spawn()?;
        {
            let mut stream = std::io::BufWriter::new(import.stdin.take().context("stdin")?);
            for i in 0..commits {
                let message = "edit\n";
                writeln!(
                    stream,
                    "commit refs/heads/main\ncommitter Ana <ana@example.org> {} +0000\ndata {}\n{message}",
                    1_700_000_000 + i,
                    message.len()
                )?;
            }
        }
        ensure!(import.wait()?.success(), "git fast-import failed");
        Ok(GitBaseline { _dir: dir, path })
    }

    fn time(&self, args: &[&str]) -> Result<f64> {
        let started = Instant::now();
        let output = Command::new("git")
            .args(args)
            .current_dir(&self.path)
            .env("GIT_PAGER", "cat")
            .output()?;
        ensure!(output.status.success(), "git {args:?} failed");
        Ok(started.elapsed().as_secs_f64())
    }
}

fn local_writes(
    settings: &Settings,
    rows: &mut Vec<Row>,
    dir: &Path,
    home: &Path,
    workspace: Id,
    populate_seconds: f64,
) -> Result<()> {
    let node = Node::open(home)?;
    let bare = BareStore::new(&dir.join("bare-writes.redb"))?;
    let row = Row::of(WRITES);

    // An interactive history: one edit per durable transaction, as commands write them.
    let interactive = workload::new_text_document(&node, workspace, "Typed one edit at a time")?;
    let mut rng = Rng(11);
    let mut edit_times = Vec::new();
    let mut commit_times = Vec::new();
    for i in 0..settings.interactive_edits {
        // Each command loads the document: none is kept loaded between them.
        node.docs().clear();
        edit_times.push(time_it(|| {
            node.edit(workspace, interactive, |doc| {
                workload::type_into(doc, 1, &mut rng)
            })
        })?);
        commit_times.push(time_it(|| bare.commit(1_000_000 + i as u64, &[0x5a; 600]))?);
    }
    rows.push(row(
        format!(
            "durable edits per second, one edit per transaction ({} edits to one document)",
            settings.interactive_edits
        ),
        "edits/s",
        1.0 / median(&edit_times),
        edit_times.len(),
        Some((
            "bare durable redb commits of 600 bytes".into(),
            1.0 / median(&commit_times),
        )),
        Target::None,
    ));

    // Batch import of local edits: typed into one document in one transaction.
    let edits = settings.import_edits;
    let mut typed = Vec::new();
    let mut in_memory = Vec::new();
    let mut floor = Vec::new();
    let mut imported = interactive;
    for run in 0..settings.import_runs {
        let doc = workload::new_text_document(&node, workspace, "Imported")?;
        // What automerge alone takes to make the same edits, in memory.
        let mut alone = node.load(workspace, doc)?;
        alone.set_actor(node.actor());
        in_memory.push(
            edits as f64
                / time_it(|| workload::type_into(&mut alone, edits, &mut Rng(100 + run as u64)))?,
        );
        let seconds = time_it(|| {
            node.edit(workspace, doc, |doc| {
                workload::type_into(doc, edits, &mut Rng(100 + run as u64))
            })
        })?;
        typed.push(edits as f64 / seconds);
        let change = mean_change_bytes(&node.load(workspace, doc)?);
        // The floor: each edit's change bytes in a row of its own, one durable transaction.
        floor.push(
            edits as f64
                / time_it(|| {
                    bare.commit_many(10_000_000 * (run as u64 + 1), edits as u64, change as usize)
                })?,
        );
        imported = doc;
    }
    let floor_name = "bare redb: each edit's change bytes in a row, one durable transaction";
    rows.push(row(
        format!("batch import of local edits ({edits} typed into one document, one transaction)"),
        "edits/s",
        median(&typed),
        typed.len(),
        Some((
            "automerge making the same edits in memory, nothing stored".into(),
            median(&in_memory),
        )),
        Target::AtLeast(50_000.0),
    ));
    rows.push(row(
        format!(
            "populate: {} small documents in transactions of 1000, once",
            settings.docs
        ),
        "docs/s",
        settings.docs as f64 / populate_seconds,
        1,
        None,
        Target::None,
    ));

    // Batch import of a member's edits: `merge` of a bundle into a new member's node, in
    // two shapes: as the batch import stored them, and as a history typed edit by edit
    // (an envelope, so a signature to verify, per change).
    let stored = bundle::export(&node, workspace, &[workspace, imported])?;
    let per_change = workload::single_change_bundle(
        &node,
        workspace,
        &[workload::all_changes(&node, workspace, imported)?],
    )?;
    let verify = verify_seconds(&per_change)?;
    let mut member = 0;
    let mut merge = |bytes: &[u8]| -> Result<f64> {
        member += 1;
        let member_node =
            workload::new_member(&node, workspace, &dir.join(format!("member{member}")))?;
        let started = Instant::now();
        let (_, report) = bundle::merge(&member_node, bytes, &Limits::default())?;
        let seconds = started.elapsed().as_secs_f64();
        ensure!(
            report.applied > edits,
            "the merge applied {} changes, expected more than {edits}",
            report.applied
        );
        Ok(report.applied as f64 / seconds)
    };
    let mut merged_stored = Vec::new();
    let mut merged_single = Vec::new();
    for _ in 0..settings.import_runs {
        merged_stored.push(merge(&stored)?);
        merged_single.push(merge(&per_change)?);
    }
    rows.push(row(
        format!(
            "batch import of a member's edits: `merge` of that document's bundle ({edits} edits)"
        ),
        "edits/s",
        median(&merged_stored),
        merged_stored.len(),
        Some((floor_name.into(), median(&floor))),
        Target::AtLeast(50_000.0),
    ));
    rows.push(row(
        "`merge` of the same edits as a history typed edit by edit (an envelope per edit)".into(),
        "edits/s",
        median(&merged_single),
        merged_single.len(),
        Some((
            "checking one ed25519 signature per envelope on every core, and nothing else".into(),
            1.0 / verify,
        )),
        Target::AtLeast(50_000.0),
    ));

    // What an edit costs on disk: a document's rows alone, compacted.
    let change = mean_change_bytes(&node.load(workspace, interactive)?);
    let saved = node.load(workspace, imported)?.save().len() as f64;
    let imported_change = mean_change_bytes(&node.load(workspace, imported)?);
    drop(node);
    let interactive_size = compacted_size(home, dir, interactive)?;
    rows.push(row(
        "storage per edit, typed edit by edit (records and history lines, compacted)".into(),
        "B",
        interactive_size / (settings.interactive_edits + 1) as f64,
        1,
        Some(("automerge's own change bytes per edit".into(), change)),
        Target::None,
    ));
    let imported_size = compacted_size(home, dir, imported)?;
    rows.push(row(
        "storage per edit, batch import".into(),
        "B",
        imported_size / (edits + 1) as f64,
        1,
        Some((
            "automerge's own change bytes per edit".into(),
            imported_change,
        )),
        Target::None,
    ));
    rows.push(row(
        format!("storage of the {edits}-edit document after compaction"),
        "KB",
        imported_size / 1000.0,
        1,
        Some(("a full automerge save of it".into(), saved / 1000.0)),
        Target::None,
    ));
    Ok(())
}

/// The mean size of a document's changes as automerge encodes them.
fn mean_change_bytes(doc: &automerge::Automerge) -> f64 {
    let changes = doc.get_changes(&[]);
    let total: usize = changes.iter().map(|c| c.raw_bytes().len()).sum();
    total as f64 / changes.len().max(1) as f64
}

/// Seconds per envelope to decode and verify a bundle's envelopes on every core, split
/// evenly between them and nothing else done: the most a merge of them could reach.
fn verify_seconds(bundle_bytes: &[u8]) -> Result<f64> {
    let body = &bundle_bytes[bundle::BUNDLE_MAGIC.len()..];
    let bundle: bundle::Bundle = ciborium::from_reader(body)?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let per_core = bundle.envelopes.len().div_ceil(cores).max(1);
    let started = Instant::now();
    std::thread::scope(|scope| {
        let checks: Vec<_> = bundle
            .envelopes
            .chunks(per_core)
            .map(|part| {
                scope.spawn(move || {
                    // Each author's key parsed once, as the merge does.
                    let mut keys = meridian_relay::AuthorKeys::default();
                    part.iter().try_for_each(|e| {
                        meridian_relay::Envelope::decode_with(e, &mut keys).map(drop)
                    })
                })
            })
            .collect();
        checks
            .into_iter()
            .try_for_each(|check| check.join().expect("a verifying thread panicked"))
    })?;
    Ok(started.elapsed().as_secs_f64() / bundle.envelopes.len() as f64)
}

/// The size of a redb file holding one document's records and history, compacted: the
/// document's rows are copied out of the home into a file of their own.
fn compacted_size(home: &Path, dir: &Path, doc: Id) -> Result<f64> {
    use meridian::store::{HISTORY, RECORDS};
    let source = meridian::store::open_database(&home.join(meridian::node::DB_FILE))?;
    let path = dir.join(format!("document-{}.redb", doc.short()));
    let mut target = Database::create(&path)?;
    {
        let read = source.begin_read()?;
        let write = target.begin_write()?;
        for table in [RECORDS, HISTORY] {
            let from = read.open_table(table)?;
            let mut to = write.open_table(table)?;
            for item in from.range((doc.0, 0)..=(doc.0, u64::MAX))? {
                let (key, value) = item?;
                to.insert(key.value(), value.value())?;
            }
        }
        write.commit()?;
    }
    while target.compact()? {}
    drop(target);
    Ok(std::fs::metadata(&path)?.len() as f64)
}
