//! The benchmark suite's regression subset, run by `cargo test`: each check compares
//! Meridian with a baseline measured in the same run and fails only on a clear regression
//! of the ratio (shared CI machines are too noisy for absolute times). Margins are wide:
//! each threshold sits several times above what a healthy build measures and far below
//! what the regression it guards against would give. `MERIDIAN_PERF_VERBOSE=1` prints the
//! ratios. The full suite is `./scripts/bench.sh`.
//!
//! - `log_reads_only_the_tail`: `log -n 20` on a long document against opening the home.
//! - `lists_read_the_index_not_the_documents`: listing 2,000 documents against reading the
//!   same index rows raw, and against loading a tenth of the documents.
//! - `a_reconnect_is_one_request_carrying_little_more_than_the_changes`: frames sent and
//!   bytes received against the changed envelopes themselves, for two workspace sizes.
//! - `storage_per_edit_stays_near_the_change_itself`: stored bytes per edit against
//!   automerge's own change bytes, for a history typed edit by edit and for a batch import.
//! - `edits_to_many_documents_travel_under_one_signature`: replies to 200 documents
//!   pushed together arrive as one envelope, in fewer bytes than their envelopes one by one.
//! - `a_new_member_downloads_about_one_save_of_a_long_document`: the bytes a new member's
//!   first sync receives against one compressed save of the long document it brings.
//! - `a_batch_import_costs_no_more_per_edit_as_it_grows`: merging a bundle of ten times more
//!   single-change envelopes costs about ten times more, not a hundred.
//! - `a_reply_to_a_long_thread_costs_what_a_reply_to_a_short_one_does`: a reply in a running
//!   node to a thread of 2,000 comments against one to a thread of 20.

#[path = "../../benches/suite/workload.rs"]
#[allow(dead_code)]
mod workload;

use std::time::Instant;

use anyhow::Result;
use meridian::id::Id;
use meridian::ingest::Limits;
use meridian::node::Node;
use redb::{ReadableTable, ReadableTableMetadata};
use workload::{Relay, Rng, Team, scratch, sync_round};

/// The median of `runs` timings of `f`, seconds.
fn median_time(runs: usize, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let started = Instant::now();
        f()?;
        times.push(started.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

/// Fails when `ratio` passes `limit`, saying what was compared.
fn check(what: &str, ratio: f64, limit: f64) {
    if std::env::var_os("MERIDIAN_PERF_VERBOSE").is_some() {
        eprintln!("{what}: {ratio:.2} (limit {limit})");
    }
    assert!(
        ratio <= limit,
        "{what}: the ratio is {ratio:.2}, above the limit of {limit}: a performance regression \
         (run ./scripts/bench.sh to see where)"
    );
}

fn home(dir: &std::path::Path) -> Result<(Node, Id)> {
    let node = Node::init(&dir.join("home"), &workload::profile("Ana"))?;
    let workspace = node.create_workspace("perf", vec![])?;
    Ok((node, workspace))
}

#[test]
fn log_reads_only_the_tail() -> Result<()> {
    let tmp = scratch("meridian-perf")?;
    let (node, workspace) = home(tmp.path())?;
    let long = workload::long_document(&node, workspace, 5_000, 1)?;
    let path = tmp.path().join("home");
    drop(node);
    // Interleaved, so a slow moment of the machine hits both sides alike.
    let mut open = Vec::new();
    let mut tail = Vec::new();
    for _ in 0..15 {
        open.push(median_time(1, || {
            Node::open(&path)?.profile()?;
            Ok(())
        })?);
        tail.push(median_time(1, || {
            let node = Node::open(&path)?;
            node.resolve(workspace, &long.hex())?;
            anyhow::ensure!(node.history_tail(long, 20)?.len() == 20);
            Ok(())
        })?);
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    // Healthy: about 1.5 (20 lines and one index row more than opening). Reading the whole
    // history of 5,000 changes gives well over 20.
    check(
        "log -n 20 on a 5000-change document / opening the home",
        median(tail) / median(open),
        6.0,
    );
    Ok(())
}

#[test]
fn lists_read_the_index_not_the_documents() -> Result<()> {
    let tmp = scratch("meridian-perf")?;
    let (node, workspace) = home(tmp.path())?;
    let made = workload::populate(&node, workspace, 2_000)?;
    let raw = || -> Result<()> {
        let txn = node.db().begin_read()?;
        let table = txn.open_table(meridian::store::DOCS)?;
        let mut bytes = 0;
        for item in table.iter()? {
            bytes += item?.1.value().len();
        }
        anyhow::ensure!(bytes > 0);
        Ok(())
    };
    let list = || -> Result<()> {
        anyhow::ensure!(node.summaries(workspace)?.len() == 2_000);
        Ok(())
    };
    let load_tenth = || -> Result<()> {
        for id in made.docs.iter().step_by(10) {
            node.load(workspace, *id)?;
        }
        Ok(())
    };
    let raw_time = median_time(9, raw)?;
    let list_time = median_time(9, list)?;
    let load_time = median_time(3, load_tenth)?;
    // Decoding a summary costs more than reading its bytes, but listing must stay far
    // cheaper than loading documents: loading a tenth of them already costs several times
    // the whole list.
    check(
        "listing 2000 documents / reading their index rows raw",
        list_time / raw_time,
        400.0,
    );
    check(
        "listing 2000 documents / loading 200 of them",
        list_time / load_time,
        0.5,
    );
    Ok(())
}

/// A reconnect after ten documents changed in a workspace of `docs`: (requests after
/// authentication, frame bytes both ways / the changed envelopes' bytes).
fn reconnect(docs: usize) -> Result<(usize, f64)> {
    let tmp = scratch("meridian-perf")?;
    let relay = Relay::start(&tmp.path().join("relay"))?;
    let team = Team::new(tmp.path(), 2, vec![relay.url.clone()])?;
    let (ana, bo) = (&team.nodes[0], &team.nodes[1]);
    let workspace = team.workspace;
    let made = workload::populate(ana, workspace, docs)?;
    team.introduce(&relay.url)?;
    let pushed = meridian::sync::cursor(ana, workspace, &relay.url)?.pushed;
    for doc in made.docs.iter().take(10) {
        workload::reply(ana, workspace, *doc, "back")?;
    }
    let changed: usize = meridian::sync::outbox(ana, workspace, pushed, 100)?
        .iter()
        .map(|(_, e)| e.len())
        .sum();
    sync_round(ana, workspace, &relay.url)?;
    let round = sync_round(bo, workspace, &relay.url)?;
    anyhow::ensure!(round.report.applied == 10, "the reconnect missed changes");
    let bytes = (round.payload_up + round.payload_down) as f64;
    Ok((round.requests(), bytes / changed as f64))
}

#[test]
fn a_reconnect_is_one_request_carrying_little_more_than_the_changes() -> Result<()> {
    let (small_requests, small_bytes) = reconnect(20)?;
    let (large_requests, large_bytes) = reconnect(400)?;
    // One Subscribe, whatever the number of documents.
    assert_eq!(
        (small_requests, large_requests),
        (1, 1),
        "catching up must take one request after authentication"
    );
    // Healthy: about 1.15 (the handshake frames); the workspace's size must not show.
    check(
        "reconnect frame bytes / changed envelopes, 400 documents",
        large_bytes,
        1.5,
    );
    check(
        "reconnect frame bytes, 400 documents / 20 documents",
        large_bytes / small_bytes,
        1.1,
    );
    Ok(())
}

#[test]
fn edits_to_many_documents_travel_under_one_signature() -> Result<()> {
    let tmp = scratch("meridian-perf")?;
    let relay = Relay::start(&tmp.path().join("relay"))?;
    let team = Team::new(tmp.path(), 2, vec![relay.url.clone()])?;
    let (ana, bo) = (&team.nodes[0], &team.nodes[1]);
    let workspace = team.workspace;
    let made = workload::populate(ana, workspace, 200)?;
    team.introduce(&relay.url)?;
    let pushed = meridian::sync::cursor(ana, workspace, &relay.url)?.pushed;
    // A reply to each document, a command each: an outbox entry each, one push.
    for doc in &made.docs {
        workload::reply(ana, workspace, *doc, "seen")?;
    }
    let changed: usize = meridian::sync::outbox(ana, workspace, pushed, 1000)?
        .iter()
        .map(|(_, e)| e.len())
        .sum();
    sync_round(ana, workspace, &relay.url)?;
    let round = sync_round(bo, workspace, &relay.url)?;
    anyhow::ensure!(round.report.applied == 200, "Bo missed replies");
    let shared = {
        let txn = bo.db().begin_read()?;
        txn.open_table(meridian::store::ENVELOPES)?.len()?
    };
    // One signature for the push: 200 envelopes would cost Bo 200 verifications.
    assert_eq!(shared, 1, "the 200 replies arrive as one shared envelope");
    // Healthy: about 0.2 (a compressed change and a document id per edit); an envelope per
    // edit, even compressed in `Deflated` frames, gives about 0.8.
    check(
        "bytes received for edits to 200 documents / their envelopes one by one",
        round.payload_down as f64 / changed as f64,
        0.6,
    );
    Ok(())
}

#[test]
fn a_new_member_downloads_about_one_save_of_a_long_document() -> Result<()> {
    let tmp = scratch("meridian-perf")?;
    let relay = Relay::start(&tmp.path().join("relay"))?;
    let team = Team::new(tmp.path(), 2, vec![relay.url.clone()])?;
    let (ana, bo) = (&team.nodes[0], &team.nodes[1]);
    let workspace = team.workspace;
    let long = workload::new_text_document(ana, workspace, "Long")?;
    workload::type_edit_by_edit(ana, workspace, &[(long, 2_000)], &mut Rng(5))?;
    // The creator's round pushes the edits, then the document's snapshot.
    sync_round(ana, workspace, &relay.url)?;
    let round = sync_round(bo, workspace, &relay.url)?;
    anyhow::ensure!(
        workload::changes_of(bo, workspace, long)? == 2_001,
        "the new member did not get the whole document"
    );
    let save = ana.load(workspace, long)?.save().len() as f64;
    // Healthy: about 1.5 (the workspace document's entries and the frames come on top);
    // the document's 2,000 envelopes instead of its snapshot give about 90.
    check(
        "first copy bytes received / one compressed save of the document",
        round.payload_down as f64 / save,
        4.0,
    );
    Ok(())
}

#[test]
fn storage_per_edit_stays_near_the_change_itself() -> Result<()> {
    let tmp = scratch("meridian-perf")?;
    let (node, workspace) = home(tmp.path())?;
    // Edit by edit, as commands make them: a sealed envelope per change.
    let mut rng = Rng(3);
    let typed = stored_per_change_byte(&node, workspace, "typed", |doc| {
        for _ in 0..120 {
            node.edit(workspace, doc, |doc| workload::type_into(doc, 1, &mut rng))?;
        }
        Ok(())
    })?;
    // Healthy: about 4 (a signed, sealed envelope and a history line per change). A
    // document saved whole with every edit gives hundreds.
    check(
        "stored bytes per edit / automerge change bytes per edit",
        typed,
        12.0,
    );
    // A batch import: one edit of many changes, sealed as the document's save, its history
    // lines in runs.
    let imported = stored_per_change_byte(&node, workspace, "imported", |doc| {
        node.edit(workspace, doc, |doc| {
            workload::type_into(doc, 2_000, &mut Rng(4))
        })
    })?;
    // Healthy: about 0.3 (a history line of about 36 bytes per change, the save a
    // fortieth of the changes). A history row per change, as before runs, gives 1.3.
    check(
        "stored bytes per edit of a batch import / automerge change bytes per edit",
        imported,
        1.0,
    );
    Ok(())
}

/// The bytes `edit` adds to the store for a new text document, against automerge's own
/// bytes of the changes it made.
fn stored_per_change_byte(
    node: &Node,
    workspace: Id,
    title: &str,
    edit: impl FnOnce(Id) -> Result<()>,
) -> Result<f64> {
    let doc = workload::new_text_document(node, workspace, title)?;
    let before = stored_bytes(node)?;
    edit(doc)?;
    let stored = (stored_bytes(node)? - before) as f64;
    let changes: usize = node
        .load(workspace, doc)?
        .get_changes(&[])
        .iter()
        .skip(1)
        .map(|c| c.raw_bytes().len())
        .sum();
    Ok(stored / changes as f64)
}

/// Bytes of the rows a document keeps for good (its records and history lines; the
/// outbox empties once a relay has them), counting 24 bytes for each key.
fn stored_bytes(node: &Node) -> Result<usize> {
    use meridian::store::{HISTORY, RECORDS};
    let txn = node.db().begin_read()?;
    let mut bytes = 0;
    for table in [RECORDS, HISTORY] {
        let table = txn.open_table(table)?;
        for item in table.iter()? {
            bytes += 24 + item?.1.value().len();
        }
    }
    Ok(bytes)
}

#[test]
fn a_batch_import_costs_no_more_per_edit_as_it_grows() -> Result<()> {
    let tmp = scratch("meridian-perf")?;
    let (node, workspace) = home(tmp.path())?;
    // A history typed edit by edit: an envelope per change.
    let bundle = |edits: usize| -> Result<Vec<u8>> {
        let doc = workload::new_text_document(&node, workspace, "imported")?;
        node.edit(workspace, doc, |d| {
            workload::type_into(d, edits, &mut Rng(9))
        })?;
        workload::single_change_bundle(
            &node,
            workspace,
            &[workload::all_changes(&node, workspace, doc)?],
        )
    };
    let (small, large) = (bundle(200)?, bundle(2_000)?);
    let mut member = 0;
    let mut merge = |bytes: &[u8]| -> Result<f64> {
        member += 1;
        let node_b = workload::new_member(
            &node,
            workspace,
            &tmp.path().join(format!("member{member}")),
        )?;
        let started = Instant::now();
        meridian::bundle::merge(&node_b, bytes, &Limits::default())?;
        Ok(started.elapsed().as_secs_f64())
    };
    let mut small_times = Vec::new();
    let mut large_times = Vec::new();
    for _ in 0..3 {
        small_times.push(merge(&small)?);
        large_times.push(merge(&large)?);
    }
    small_times.sort_by(f64::total_cmp);
    large_times.sort_by(f64::total_cmp);
    // Healthy: about 10 (linear). Loading the document again for every envelope is
    // quadratic and gives a hundred or more.
    check(
        "merging 2000 envelopes / merging 200",
        large_times[1] / small_times[1],
        30.0,
    );
    Ok(())
}

#[test]
fn a_reply_to_a_long_thread_costs_what_a_reply_to_a_short_one_does() -> Result<()> {
    let tmp = scratch("meridian-perf")?;
    let (node, workspace) = home(tmp.path())?;
    // Threads of 20 and 2,000 comments, each comment its own change.
    let thread = |comments: usize| -> Result<Id> {
        let id = workload::create_thread(
            &node,
            "A thread",
            |id, f| node.edit(workspace, id, f),
            workspace,
        )?;
        workload::edit_by_edit(
            &node,
            workspace,
            &[(id, comments)],
            workload::Edits::Replies,
            &mut Rng(comments as u64),
        )?;
        Ok(id)
    };
    let (short, long) = (thread(20)?, thread(2_000)?);
    // The first edit of each loads it; the node keeps it for the next ones.
    for id in [short, long] {
        workload::reply(&node, workspace, id, "Loaded.")?;
    }
    let mut short_times = Vec::new();
    let mut long_times = Vec::new();
    for _ in 0..15 {
        short_times.push(median_time(1, || {
            workload::reply(&node, workspace, short, "Agreed.")
        })?);
        long_times.push(median_time(1, || {
            workload::reply(&node, workspace, long, "Agreed.")
        })?);
    }
    short_times.sort_by(f64::total_cmp);
    long_times.sort_by(f64::total_cmp);
    // Healthy: about 1 (the fsync and the new change, whatever the thread's length).
    // Deriving the thread's summary from every comment again at each reply gives tens.
    check(
        "a reply to a thread of 2000 comments / to a thread of 20",
        long_times[7] / short_times[7],
        4.0,
    );
    Ok(())
}
