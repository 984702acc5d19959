//! Scenario 7: long discussions. A thread and a proposal with 100, 1,000 and 10,000
//! comments, written by a second person and received by bundle, in a home of their own;
//! then each command a person runs on them as a fresh process (a reply, an approval, `show`,
//! `log`, `inbox` with ten new replies unread), against the floor under it: process start and
//! opening the home (`whoami`) plus what automerge itself pays for that document (load it,
//! make the one change, save it). And the received side: replies applied to the long
//! thread by `merge`, against automerge applying the same changes.

use std::path::Path;
use std::time::Instant;

use anyhow::{Result, ensure};
use automerge::transaction::Transactable as _;
use automerge::{Automerge, ReadDoc as _};
use meridian::bundle;
use meridian::discussion;
use meridian::id::Id;
use meridian::ingest::Limits;
use meridian::node::{Node, commit, now_ms};

use crate::Settings;
use crate::local::{args, process};
use crate::report::{Row, Target, median};
use crate::workload::{self, Edits, Rng, scratch};

const SCENARIO: &str = "7. Long discussions";

/// Replies that arrive at once in the received-side measurement.
const RECEIVED: usize = 300;

/// New replies the person has not read when `inbox` runs.
const UNREAD: usize = 10;

/// The comment counts measured.
pub fn sizes(settings: &Settings) -> Vec<usize> {
    if settings.quick {
        vec![100, 1_000]
    } else {
        vec![100, 1_000, 10_000]
    }
}

/// Scenario 7.
pub fn run(settings: &Settings, rows: &mut Vec<Row>) -> Result<()> {
    for size in sizes(settings) {
        let tmp = scratch("meridian-bench-discussion")?;
        let started = Instant::now();
        let made = Discussion::new(tmp.path(), size)?;
        eprintln!(
            "  {size} comments written and received in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        commands(settings, rows, &made, size)?;
        received(settings, rows, tmp.path(), &made, size)?;
        if std::env::var_os("MERIDIAN_BENCH_KEEP").is_some() {
            eprintln!("  kept {}", tmp.keep().display());
        }
    }
    Ok(())
}

/// A home (Ana's) holding a thread and an open proposal (Ana decides it) with `size`
/// comments each, all but the last ten read; Bo wrote the comments, one change each.
pub struct Discussion {
    /// Ana's home.
    pub home: std::path::PathBuf,
    /// The workspace.
    pub workspace: Id,
    /// The thread.
    pub thread: Id,
    /// The proposal.
    pub proposal: Id,
    /// Bo, who wrote the comments (closed; reopen with `Node::open`).
    pub bo: std::path::PathBuf,
}

impl Discussion {
    /// Makes it under `dir`.
    pub fn new(dir: &Path, size: usize) -> Result<Discussion> {
        let home = dir.join("ana");
        let ana = Node::init(&home, &workload::profile("Ana"))?;
        let workspace = ana.create_workspace("bench", vec![])?;
        let bo_home = dir.join("bo");
        let bo = workload::new_member(&ana, workspace, &bo_home)?;
        let thread = workload::create_thread(
            &ana,
            "Where should the relay keep envelopes?",
            |id, f| ana.edit(workspace, id, f),
            workspace,
        )?;
        let proposal = workload::new_text_document(&ana, workspace, "Keep envelopes on disk")?;
        ana.edit(workspace, proposal, |doc| {
            let body = workload::body(doc)?;
            let mut tx = doc.transaction();
            tx.splice_text(&body, 0, 0, "The relay keeps every envelope in redb.")?;
            commit(tx, "edit");
            Ok(())
        })?;
        let docs = [workspace, thread, proposal];
        bundle::merge(
            &bo,
            &bundle::export(&ana, workspace, &docs)?,
            &Limits::default(),
        )?;
        let mut rng = Rng(size as u64);
        let write = |count: usize, rng: &mut Rng| -> Result<()> {
            workload::edit_by_edit(
                &bo,
                workspace,
                &[(thread, count), (proposal, count)],
                Edits::Replies,
                rng,
            )?;
            bundle::merge(
                &ana,
                &bundle::export(&bo, workspace, &docs)?,
                &Limits::default(),
            )?;
            Ok(())
        };
        write(size - UNREAD, &mut rng)?;
        for id in [thread, proposal] {
            let heads = ana.resolve(workspace, &id.hex())?.1.heads;
            ana.mark_read(id, &heads)?;
        }
        write(UNREAD, &mut rng)?;
        drop(ana);
        drop(bo);
        process(
            &home,
            &args(&["proposal", "open", &proposal.hex(), "--closes", "30d"]),
        )?;
        Ok(Discussion {
            home,
            workspace,
            thread,
            proposal,
            bo: bo_home,
        })
    }
}

/// What automerge pays for one edit of a stored document: load its save, make one change
/// (a comment), save it again. Seconds.
fn automerge_edit(save: &[u8]) -> Result<f64> {
    let started = Instant::now();
    let mut doc = Automerge::load(save)?;
    let mut tx = doc.transaction();
    discussion::put_comment(
        &mut tx,
        &Id::random().hex(),
        None,
        "me",
        now_ms(),
        "A reply",
    )?;
    tx.commit();
    let saved = doc.save();
    let seconds = started.elapsed().as_secs_f64();
    ensure!(saved.len() > save.len(), "the save did not grow");
    Ok(seconds)
}

/// Seconds automerge takes to load a save.
fn automerge_load(save: &[u8]) -> Result<f64> {
    let started = Instant::now();
    let doc = Automerge::load(save)?;
    let seconds = started.elapsed().as_secs_f64();
    drop(doc);
    Ok(seconds)
}

fn commands(
    settings: &Settings,
    rows: &mut Vec<Row>,
    made: &Discussion,
    size: usize,
) -> Result<()> {
    let home = &made.home;
    let (thread, proposal) = (made.thread.hex(), made.proposal.hex());
    let saves = {
        let node = Node::open(home)?;
        [
            node.load(made.workspace, made.thread)?.save(),
            node.load(made.workspace, made.proposal)?.save(),
        ]
    };
    // `inbox` runs in a copy of the home where Ana wrote nothing since she read: her own
    // replies below would otherwise be the latest change, and nothing would be unread.
    let reader = home.with_file_name("reader");
    copy_home(home, &reader)?;
    let cases: Vec<(&str, Vec<String>)> = vec![
        ("whoami", args(&["whoami"])),
        (
            "reply",
            args(&["reply", &thread, "-m", "Agreed, let's measure first."]),
        ),
        ("approve", args(&["proposal", "approve", &proposal])),
        ("show", args(&["show", &thread])),
        ("log", args(&["log", &thread, "-n", "20"])),
        ("inbox", args(&["inbox"])),
    ];
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); cases.len()];
    let mut edit_floor = [Vec::new(), Vec::new()];
    let mut load_floor = Vec::new();
    for _ in 0..settings.process_runs {
        for (i, (name, args)) in cases.iter().enumerate() {
            let home = if *name == "inbox" { &reader } else { home };
            samples[i].push(process(home, args)?);
        }
        process(home, &args(&["proposal", "unapprove", &proposal]))?;
        for (floor, save) in edit_floor.iter_mut().zip(&saves) {
            floor.push(automerge_edit(save)?);
        }
        load_floor.push(automerge_load(&saves[0])?);
    }
    let ms = |s: &[f64]| median(s) * 1000.0;
    let whoami = ms(&samples[0]);
    let row = |metric: String, median: f64, baseline: (String, f64), target| Row {
        scenario: SCENARIO.into(),
        metric,
        unit: "ms",
        median,
        runs: settings.process_runs,
        baseline: Some(baseline),
        target,
    };
    let floor = |what: &str, seconds: &[f64]| {
        (
            format!("`whoami` + automerge: {what}"),
            whoami + ms(seconds),
        )
    };
    rows.push(row(
        format!("`reply` to a thread of {size} comments"),
        ms(&samples[1]),
        floor("load the thread, add a comment, save", &edit_floor[0]),
        Target::RatioAtMost(2.0),
    ));
    rows.push(row(
        format!("`proposal approve` of a proposal with {size} comments"),
        ms(&samples[2]),
        floor("load the proposal, add a comment, save", &edit_floor[1]),
        Target::RatioAtMost(2.0),
    ));
    let load = floor("load the thread", &load_floor);
    for (i, name) in [(3, "show"), (4, "log -n 20"), (5, "inbox")] {
        let what = if name == "inbox" {
            format!("`inbox`: {UNREAD} unread replies in a thread of {size}")
        } else {
            format!("`{name}` of a thread of {size} comments")
        };
        rows.push(row(what, ms(&samples[i]), load.clone(), Target::None));
    }
    // Load time against the document's size: what a node pays to read the thread from its
    // home (its checkpoint and the records after it), against automerge loading its save.
    let node = Node::open(home)?;
    let mut loads = Vec::new();
    for _ in 0..settings.process_runs {
        let started = Instant::now();
        let doc = node.load(made.workspace, made.thread)?;
        loads.push(started.elapsed().as_secs_f64());
        ensure!(!doc.get_heads().is_empty(), "the thread loaded empty");
    }
    rows.push(row(
        format!(
            "loading a thread of {size} comments ({} KB saved) in a running node: checkpoint and records after it",
            saves[0].len() / 1000
        ),
        ms(&loads),
        ("automerge loading its save".into(), ms(&load_floor)),
        Target::None,
    ));
    Ok(())
}

/// Bo writes [`RECEIVED`] more replies; a copy of Ana's home merges them, against
/// automerge applying the same changes to a loaded copy of the thread.
fn received(
    settings: &Settings,
    rows: &mut Vec<Row>,
    dir: &Path,
    made: &Discussion,
    size: usize,
) -> Result<()> {
    let bo = Node::open(&made.bo)?;
    let workspace = made.workspace;
    workload::edit_by_edit(
        &bo,
        workspace,
        &[(made.thread, RECEIVED)],
        Edits::Replies,
        &mut Rng(77),
    )?;
    let changes = bo.load(workspace, made.thread)?.get_changes(&[]);
    let before = {
        let ana = Node::open(&made.home)?;
        ana.load(workspace, made.thread)?.save()
    };
    let new: Vec<automerge::Change> = {
        let had = Automerge::load(&before)?;
        changes
            .into_iter()
            .filter(|c| had.get_change_by_hash(&c.hash()).is_none())
            .collect()
    };
    // An envelope per reply, as a relay delivers them.
    let incoming = workload::single_change_bundle(&bo, workspace, &[(made.thread, new.clone())])?;
    drop(bo);
    ensure!(
        new.len() >= RECEIVED,
        "expected {RECEIVED} new replies, found {}",
        new.len()
    );
    let runs = settings.process_runs.min(7);
    let mut rates = Vec::new();
    let mut floor = Vec::new();
    for run in 0..runs {
        let copy = dir.join(format!("received{run}"));
        copy_home(&made.home, &copy)?;
        let ana = Node::open(&copy)?;
        // A node that has been running holds the thread loaded (an edit that changes
        // nothing keeps it in the node's cache).
        ana.edit(workspace, made.thread, |_| Ok(()))?;
        let started = Instant::now();
        let (_, report) = bundle::merge(&ana, &incoming, &Limits::default())?;
        let seconds = started.elapsed().as_secs_f64();
        ensure!(
            report.applied >= RECEIVED,
            "the merge applied {} changes, expected {RECEIVED}",
            report.applied
        );
        let mut doc = Automerge::load(&before)?;
        let started = Instant::now();
        doc.apply_changes(new.iter().cloned())?;
        let automerge = started.elapsed().as_secs_f64();
        floor.push(new.len() as f64 / automerge);
        rates.push(new.len() as f64 / (seconds - automerge).max(1e-6));
        drop(ana);
        std::fs::remove_dir_all(&copy)?;
    }
    rows.push(Row {
        scenario: SCENARIO.into(),
        metric: format!(
            "{RECEIVED} received replies applied to a thread of {size} (`merge`), automerge's own apply time taken out"
        ),
        unit: "changes/s",
        median: median(&rates),
        runs,
        baseline: Some((
            "automerge applying the same changes to the loaded thread".into(),
            median(&floor),
        )),
        target: Target::AtLeast(20_000.0),
    });
    Ok(())
}

/// Copies a (closed) home directory.
fn copy_home(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name()))?;
        }
    }
    Ok(())
}
