//! Scenario 9: search. A home of 10,000 documents with 100,000 comments (1,000 and 10,000
//! in quick runs); `meridian search` as a fresh process against `whoami`; building the index
//! from scratch; its size beside the redb file's; and what indexing adds to a durable edit:
//! the queue entry written in the edit's transaction (against the same bare redb commit
//! without it), and the catch-up the next search pays for that edit.

use std::path::Path;
use std::time::Instant;

use anyhow::{Result, ensure};
use meridian::discussion;
use meridian::id::Id;
use meridian::node::{Node, commit, now_ms};
use redb::{Database, ReadableTable as _, TableDefinition};

use crate::Settings;
use crate::local::{args, process};
use crate::report::{Row, Target, median};
use crate::workload::{self, Rng, scratch};

const SCENARIO: &str = "9. Search";

/// Comments written into each document.
const COMMENTS_PER_DOC: usize = 10;

/// Words the comments are made of; `vacuum` is rare (about one comment in 500).
const WORDS: [&str; 24] = [
    "relay",
    "backup",
    "storage",
    "redb",
    "sync",
    "offline",
    "deadline",
    "review",
    "release",
    "schema",
    "migration",
    "latency",
    "budget",
    "ticket",
    "incident",
    "rollback",
    "metric",
    "index",
    "cache",
    "quota",
    "token",
    "archive",
    "policy",
    "shard",
];

/// Scenario 9.
pub fn run(settings: &Settings, rows: &mut Vec<Row>) -> Result<()> {
    let docs = if settings.quick { 1_000 } else { 10_000 };
    let tmp = scratch("meridian-bench-search")?;
    let home = tmp.path().join("ana");
    let started = Instant::now();
    let node = Node::init(&home, &workload::profile("Ana"))?;
    let workspace = node.create_workspace("bench", vec![])?;
    let made = workload::populate(&node, workspace, docs)?;
    write_comments(&node, workspace, &made.docs)?;
    let thread = made.thread;
    drop(node);
    eprintln!(
        "  {docs} documents with {} comments written in {:.1} s",
        docs * COMMENTS_PER_DOC,
        started.elapsed().as_secs_f64()
    );
    let row = Row::of(SCENARIO);
    let comments = docs * COMMENTS_PER_DOC;

    // Building the index from every document, once.
    let reindex = process(&home, &args(&["search", "--reindex"]))?;
    rows.push(row(
        format!("build the index of {docs} documents with {comments} comments (`search --reindex`, once)"),
        "s",
        reindex,
        1,
        None,
        Target::None,
    ));
    let index_bytes = meridian::search::Search::open(&home)?.size();
    let redb_bytes = std::fs::metadata(home.join(meridian::node::DB_FILE))?.len();
    rows.push(row(
        "size of the search index".into(),
        "KB",
        index_bytes as f64 / 1000.0,
        1,
        Some(("the home's redb file".into(), redb_bytes as f64 / 1000.0)),
        Target::None,
    ));

    // Queries as fresh processes.
    let runs = settings.process_runs;
    let mut whoami = Vec::new();
    let mut queries: Vec<(&str, Vec<String>, Vec<f64>)> = vec![
        ("a common word", args(&["search", "backup"]), Vec::new()),
        ("a rare word", args(&["search", "vacuum"]), Vec::new()),
        (
            "two words, a kind and a writer",
            args(&[
                "search",
                "relay latency",
                "--kind",
                "proposal",
                "--author",
                "Ana",
            ]),
            Vec::new(),
        ),
    ];
    for _ in 0..runs {
        whoami.push(process(&home, &args(&["whoami"]))?);
        for (_, args, times) in queries.iter_mut() {
            times.push(process(&home, args)?);
        }
    }
    let whoami_ms = median(&whoami) * 1000.0;
    for (what, _, times) in &queries {
        rows.push(row(
            format!("`search`: {what}, over {docs} documents with {comments} comments"),
            "ms",
            median(times) * 1000.0,
            runs,
            Some(("process start + open the home (`whoami`)".into(), whoami_ms)),
            Target::AtMost(50.0),
        ));
    }

    // What indexing adds to a durable edit. The edit writes one queue entry in its own
    // transaction: measured as the same bare redb commit with and without those writes.
    let (plain, queued) = queue_entry_cost(tmp.path(), settings.edit_runs * 20)?;
    rows.push(row(
        "a durable commit with the search queue's entry (the meta counter and one row)".into(),
        "ms",
        queued * 1000.0,
        settings.edit_runs * 20,
        Some((
            "the same bare durable redb commit without them".into(),
            plain * 1000.0,
        )),
        Target::RatioAtMost(1.2),
    ));
    // And the catch-up the next search pays: a reply in a running node, then the index
    // brought up to date for it.
    let node = Node::open(&home)?;
    let search = meridian::search::Search::open(&home)?;
    search.catch_up(&node)?;
    let mut replies = Vec::new();
    let mut catch_ups = Vec::new();
    workload::reply(&node, workspace, thread, "Loaded.")?;
    search.catch_up(&node)?;
    for i in 0..settings.edit_runs.min(30) {
        let started = Instant::now();
        workload::reply(
            &node,
            workspace,
            thread,
            &format!("Reply {i} about the relay."),
        )?;
        replies.push(started.elapsed().as_secs_f64());
        let started = Instant::now();
        let indexed = search.catch_up(&node)?;
        catch_ups.push(started.elapsed().as_secs_f64());
        ensure!(
            indexed == 1,
            "the catch-up indexed {indexed} documents, not 1"
        );
    }
    rows.push(row(
        "indexing one edited document, paid by the next `search` (tantivy commit included)".into(),
        "ms",
        median(&catch_ups) * 1000.0,
        catch_ups.len(),
        Some((
            "the durable reply itself, in a running node".into(),
            median(&replies) * 1000.0,
        )),
        Target::None,
    ));
    if std::env::var_os("MERIDIAN_BENCH_KEEP").is_some() {
        eprintln!("  kept {}", tmp.keep().display());
    }
    Ok(())
}

/// Ten comments in each document, a thousand documents per transaction, drawn from
/// [`WORDS`] (and now and then `vacuum`).
fn write_comments(node: &Node, workspace: Id, docs: &[Id]) -> Result<()> {
    let me = node.member_id();
    let mut rng = Rng(9);
    for chunk in docs.chunks(1000) {
        node.batch(|batch| {
            for &id in chunk {
                batch.edit(workspace, id, |doc| {
                    for _ in 0..COMMENTS_PER_DOC {
                        let mut text = Vec::new();
                        for _ in 0..12 {
                            text.push(if rng.below(6000) == 0 {
                                "vacuum"
                            } else {
                                WORDS[rng.below(WORDS.len())]
                            });
                        }
                        let mut tx = doc.transaction();
                        discussion::put_comment(
                            &mut tx,
                            &Id::random().hex(),
                            None,
                            &me,
                            now_ms(),
                            &text.join(" "),
                        )?;
                        commit(tx, "reply");
                    }
                    Ok(())
                })?;
            }
            Ok(())
        })?;
    }
    Ok(())
}

const VALUES: TableDefinition<u64, &[u8]> = TableDefinition::new("values");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const QUEUE: TableDefinition<u64, [u8; 32]> = TableDefinition::new("queue");

/// Seconds of a bare durable redb commit of a 700-byte value, without and with what
/// `search::enqueue` adds (read and bump a counter in a meta table, insert a queue row),
/// alternating, medians.
fn queue_entry_cost(dir: &Path, runs: usize) -> Result<(f64, f64)> {
    let db = Database::create(dir.join("queue-cost.redb"))?;
    let value = vec![7u8; 700];
    let (mut plain, mut queued) = (Vec::new(), Vec::new());
    for i in 0..runs as u64 {
        for with_queue in [false, true] {
            let started = Instant::now();
            let txn = db.begin_write()?;
            txn.open_table(VALUES)?
                .insert(i * 2 + u64::from(with_queue), value.as_slice())?;
            if with_queue {
                let mut meta = txn.open_table(META)?;
                let next = meta
                    .get("next")?
                    .and_then(|v| v.value().try_into().ok().map(u64::from_le_bytes))
                    .unwrap_or(0);
                meta.insert("next", (next + 1).to_le_bytes().as_slice())?;
                drop(meta);
                txn.open_table(QUEUE)?.insert(next, [1u8; 32])?;
            }
            txn.commit()?;
            let seconds = started.elapsed().as_secs_f64();
            if with_queue {
                queued.push(seconds);
            } else {
                plain.push(seconds);
            }
        }
    }
    Ok((median(&plain), median(&queued)))
}
