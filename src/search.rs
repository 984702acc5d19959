//! Full-text search over every workspace of a home: titles, sections, thread texts,
//! comments, concerns and status updates, ranked (BM25, tantivy), each hit with its
//! document, kind, state and the line that matched.
//!
//! The index lives in `HOME/search/` beside the redb file and is derived data, like the
//! index summaries: `meridian search --reindex` rebuilds it from the documents, and a
//! missing or damaged index is rebuilt the same way. Every write that changes a document
//! appends it to [`SEARCH_QUEUE`] in the same redb transaction ([`enqueue`]), so a
//! document is never written without being queued. The search index's commit records the
//! queue generation it has reached (tantivy's commit payload); [`Search::catch_up`]
//! indexes what lies beyond it before a query. A crash anywhere leaves either the queue
//! entry (indexed again at the next search) or both: no hit goes missing for good, and
//! indexing adds no fsync to an edit or a sync batch.
//!
//! One tantivy document per part of a Meridian document (its title, each section, the
//! thread's or update's text, each comment, each concern), so a hit points at the text
//! that matched; a changed document is indexed again whole.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use redb::{ReadableTable, WriteTransaction};
use tantivy::collector::TopDocs;
use tantivy::query::{BooleanQuery, Occur, Query, QueryParser, RangeQuery, TermQuery};
use tantivy::schema::{
    FAST, Field, INDEXED, IndexRecordOption, STORED, STRING, Schema, TEXT, TantivyDocument, Value,
};
use tantivy::{Index, IndexReader, IndexWriter, Term, doc};

use crate::doc::{Kind, View};
use crate::id::Id;
use crate::node::Node;
use crate::store::{META, SEARCH_QUEUE};
use crate::{discussion, proposal, thread, update};

/// The directory of the index, in a home.
pub const DIR: &str = "search";

/// The most documents a search returns.
pub const MAX_HITS: usize = 10_000;

/// The META key of the next queue generation.
const NEXT: &str = "search_next";

/// The next queue generation, as the META table holds it (0 before the first write).
fn next_generation(meta: &impl ReadableTable<&'static str, &'static [u8]>) -> Result<u64> {
    Ok(meta
        .get(NEXT)?
        .and_then(|v| v.value().try_into().ok().map(u64::from_le_bytes))
        .unwrap_or(0))
}

/// Bumped when what is indexed changes: an index of another version is rebuilt.
const VERSION: u32 = 1;

/// Queues a written document for the search index, in the write's own transaction.
pub fn enqueue(txn: &WriteTransaction, workspace: Id, doc: Id) -> Result<()> {
    let mut meta = txn.open_table(META)?;
    let next = next_generation(&meta)?;
    meta.insert(NEXT, next.wrapping_add(1).to_le_bytes().as_slice())?;
    drop(meta);
    let mut key = [0u8; 32];
    key[..16].copy_from_slice(&workspace.0);
    key[16..].copy_from_slice(&doc.0);
    txn.open_table(SEARCH_QUEUE)?.insert(next, key)?;
    Ok(())
}

/// How many document writes the queue has seen: it changes whenever any document of the
/// home changed, locally or from another node (the daemon's notifier looks at it).
pub fn generation(node: &Node) -> Result<u64> {
    let txn = node.db().begin_read()?;
    next_generation(&txn.open_table(META)?)
}

/// One searchable piece of a document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Part {
    /// What it is: `title`, `section NAME`, `opening text` (a thread's), `comment`,
    /// `concern`, `done`, `next`, `blockers`.
    pub what: String,
    /// Who wrote it (member id).
    pub by: String,
    /// When it was written, ms (a document's title and sections: its last change).
    pub at: i64,
    /// The text.
    pub text: String,
}

/// What a document says, as searchable parts. Pure.
pub fn parts(view: View<'_>, kind: Kind, updated: i64) -> Vec<Part> {
    let part = |what: &str, by: &str, at: i64, text: &str| Part {
        what: what.into(),
        by: by.into(),
        at,
        text: text.into(),
    };
    let mut parts = Vec::new();
    let comments = |parts: &mut Vec<Part>, comments: &[discussion::Comment]| {
        for c in comments.iter().filter(|c| !c.deleted) {
            parts.push(part("comment", &c.by, c.edited.unwrap_or(c.at), &c.body));
        }
    };
    match kind {
        Kind::Proposal => {
            let p = proposal::read(view);
            parts.push(part("title", &p.author, updated, &p.title));
            for (name, text) in &p.sections {
                parts.push(part(&format!("section {name}"), &p.author, updated, text));
            }
            for c in &p.concerns {
                parts.push(part("concern", &c.entry.by, c.entry.at, &c.entry.message));
            }
            comments(&mut parts, &p.comments);
        }
        Kind::Thread => {
            let t = thread::read(view);
            parts.push(part("title", &t.author, updated, &t.title));
            parts.push(part("opening text", &t.author, t.created, &t.body));
            comments(&mut parts, &t.comments);
        }
        Kind::Update => {
            let u = update::read(view);
            parts.push(part("title", &u.author, updated, &u.title));
            for (what, text) in [
                ("done", &u.done),
                ("next", &u.next),
                ("blockers", &u.blockers),
            ] {
                parts.push(part(what, &u.author, u.created, text));
            }
            comments(&mut parts, &u.comments);
        }
        Kind::Workspace => {}
    }
    parts.retain(|p| !p.text.trim().is_empty());
    parts
}

#[derive(Clone, Copy)]
struct Fields {
    doc: Field,
    workspace: Field,
    kind: Field,
    state: Field,
    title: Field,
    author: Field,
    what: Field,
    by: Field,
    at: Field,
    text: Field,
}

fn schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let fields = Fields {
        doc: b.add_text_field("doc", STRING | STORED),
        workspace: b.add_text_field("workspace", STRING | STORED),
        kind: b.add_text_field("kind", STRING | STORED),
        state: b.add_text_field("state", STRING | STORED),
        title: b.add_text_field("title", STORED),
        author: b.add_text_field("author", STRING | STORED),
        what: b.add_text_field("what", STORED),
        by: b.add_text_field("by", STRING | STORED),
        at: b.add_i64_field("at", INDEXED | FAST | STORED),
        text: b.add_text_field("text", TEXT | STORED),
    };
    (b.build(), fields)
}

/// What narrows a search.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    /// Only this workspace.
    pub workspace: Option<Id>,
    /// Only documents of this kind.
    pub kind: Option<Kind>,
    /// Only documents in this state.
    pub state: Option<String>,
    /// Only text written by one of these members (ids; none: anyone).
    pub by: Vec<String>,
    /// Only text written at or after this moment, ms.
    pub since: Option<i64>,
}

/// A document that matched, with its best part.
#[derive(Clone, Debug, PartialEq)]
pub struct Hit {
    /// The document.
    pub doc: Id,
    /// Its workspace.
    pub workspace: Id,
    /// Its kind.
    pub kind: Kind,
    /// Its state (`posted` for an update).
    pub state: String,
    /// Its title.
    pub title: String,
    /// Relevance of its best part (higher is better).
    pub score: f32,
    /// The best part: what it is, who wrote it, when.
    pub what: String,
    /// Who wrote that part (member id).
    pub by: String,
    /// When, ms.
    pub at: i64,
    /// The line of that part that matched, and the byte ranges in it that matched.
    pub line: String,
    /// Byte ranges of `line` that matched the query.
    pub highlighted: Vec<std::ops::Range<usize>>,
    /// How many parts of the document matched.
    pub matches: usize,
}

/// Another process holds the index's writer lock (another `search` bringing it up to
/// date): the index can still be read as it is.
#[derive(Debug, thiserror::Error)]
#[error("another meridian process is updating the search index: try again in a moment")]
pub struct Busy;

/// A home's search index.
pub struct Search {
    index: Index,
    fields: Fields,
    path: PathBuf,
}

/// The index's state, in its commit payload: `v1 gen N`.
fn payload(generation: u64) -> String {
    format!("v{VERSION} gen {generation}")
}

fn parse_payload(payload: Option<&str>) -> Option<u64> {
    let rest = payload?.strip_prefix(&format!("v{VERSION} gen "))?;
    rest.parse().ok()
}

impl Search {
    /// Opens the index of a home, creating it when missing. A damaged one (or one of
    /// another version) is removed and made again, empty: [`Search::catch_up`] then
    /// indexes every document.
    pub fn open(home: &Path) -> Result<Search> {
        let path = home.join(DIR);
        let (schema, fields) = schema();
        let open = || -> Result<Index> {
            std::fs::create_dir_all(&path)
                .with_context(|| format!("cannot create {}", path.display()))?;
            let dir = tantivy::directory::MmapDirectory::open(&path)?;
            let index = Index::open_or_create(dir, schema.clone())?;
            // An index whose schema is not ours is another version's.
            anyhow::ensure!(index.schema() == schema, "the index has another schema");
            Ok(index)
        };
        let index = match open() {
            Ok(index) => index,
            Err(e) => {
                tracing::warn!(
                    "the search index in {} cannot be read ({e:#}); building it again",
                    path.display()
                );
                std::fs::remove_dir_all(&path)
                    .with_context(|| format!("cannot remove {}", path.display()))?;
                open()?
            }
        };
        Ok(Search {
            index,
            fields,
            path,
        })
    }

    /// The index's size on disk, bytes.
    pub fn size(&self) -> u64 {
        std::fs::read_dir(&self.path)
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok()?.metadata().ok())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0)
    }

    fn writer(&self) -> Result<IndexWriter> {
        self.index
            .writer_with_num_threads(1, 32 << 20)
            .map_err(|e| match e {
                tantivy::TantivyError::LockFailure(..) => Busy.into(),
                e => e.into(),
            })
    }

    /// The queue generation the index has reached: `None` when it was never built (or
    /// by another version).
    fn reached(&self) -> Result<Option<u64>> {
        let metas = self.index.load_metas()?;
        Ok(parse_payload(metas.payload.as_deref()))
    }

    /// Indexes the documents written since the index's last commit (every document when it
    /// was never built), then forgets the queue up to there. Returns how many documents
    /// were indexed.
    pub fn catch_up(&self, node: &Node) -> Result<usize> {
        let reached = self.reached()?;
        let (pending, end) = queued(node, reached.unwrap_or(0))?;
        let indexed = match reached {
            None => self.rebuild_to(node, end)?,
            Some(_) if pending.is_empty() => return Ok(0),
            Some(_) => {
                let mut writer = self.writer()?;
                for (workspace, doc) in &pending {
                    self.index_doc(&mut writer, node, *workspace, *doc)?;
                }
                self.commit(writer, end)?;
                pending.len()
            }
        };
        forget(node, end)?;
        Ok(indexed)
    }

    /// Builds the index again from every document of every workspace.
    pub fn rebuild(&self, node: &Node) -> Result<usize> {
        let (_, end) = queued(node, u64::MAX)?;
        let indexed = self.rebuild_to(node, end)?;
        forget(node, end)?;
        Ok(indexed)
    }

    fn rebuild_to(&self, node: &Node, end: u64) -> Result<usize> {
        let mut writer = self.writer()?;
        writer.delete_all_documents()?;
        let mut count = 0;
        for (workspace, _) in node.workspaces()? {
            for (doc, _) in node.summaries(workspace)? {
                self.index_doc(&mut writer, node, workspace, doc)?;
                count += 1;
            }
        }
        self.commit(writer, end)?;
        Ok(count)
    }

    fn commit(&self, mut writer: IndexWriter, end: u64) -> Result<()> {
        let mut prepared = writer.prepare_commit()?;
        prepared.set_payload(&payload(end));
        prepared.commit()?;
        writer.wait_merging_threads()?;
        Ok(())
    }

    fn index_doc(
        &self,
        writer: &mut IndexWriter,
        node: &Node,
        workspace: Id,
        id: Id,
    ) -> Result<()> {
        let f = self.fields;
        writer.delete_term(Term::from_field_text(f.doc, &id.hex()));
        let Ok((_, summary)) = node.resolve(workspace, &id.hex()) else {
            return Ok(());
        };
        let doc = node.load(workspace, id)?;
        let state = if summary.kind == Kind::Update {
            "posted".to_string()
        } else {
            summary.state.clone()
        };
        for part in parts(View::now(&doc), summary.kind, summary.updated) {
            writer.add_document(doc!(
                f.doc => id.hex(),
                f.workspace => workspace.hex(),
                f.kind => summary.kind.as_str(),
                f.state => state.as_str(),
                f.title => summary.title.as_str(),
                f.author => summary.author.as_str(),
                f.what => part.what,
                f.by => part.by,
                f.at => part.at,
                f.text => part.text,
            ))?;
        }
        Ok(())
    }

    fn reader(&self) -> Result<IndexReader> {
        Ok(self
            .index
            .reader_builder()
            .reload_policy(tantivy::ReloadPolicy::Manual)
            .try_into()?)
    }

    /// Documents matching `query` (words, `"a phrase"`, `-word`, `title OR text`), best
    /// first, at most `limit`.
    pub fn query(&self, query: &str, filter: &Filter, limit: usize) -> Result<Vec<Hit>> {
        let f = self.fields;
        // tantivy reserves room for what it may return: a limit from the command line is
        // held to what a person reads.
        let limit = limit.clamp(1, MAX_HITS);
        let reader = self.reader()?;
        let searcher = reader.searcher();
        let mut parser = QueryParser::for_index(&self.index, vec![f.text]);
        parser.set_conjunction_by_default();
        let parsed = parser.parse_query(query).map_err(|e| {
            crate::error::failure(
                crate::error::ErrorKind::Usage,
                format!("cannot read the query `{query}`: {e}; quote a phrase with \"…\""),
            )
        })?;
        let mut must: Vec<(Occur, Box<dyn Query>)> = vec![(Occur::Must, parsed.box_clone())];
        let term = |field: Field, value: &str| -> (Occur, Box<dyn Query>) {
            (
                Occur::Must,
                Box::new(TermQuery::new(
                    Term::from_field_text(field, value),
                    IndexRecordOption::Basic,
                )),
            )
        };
        if let Some(w) = filter.workspace {
            must.push(term(f.workspace, &w.hex()));
        }
        if let Some(kind) = filter.kind {
            must.push(term(f.kind, kind.as_str()));
        }
        if let Some(state) = &filter.state {
            must.push(term(f.state, state));
        }
        if !filter.by.is_empty() {
            let any: Vec<(Occur, Box<dyn Query>)> = filter
                .by
                .iter()
                .map(|by| (Occur::Should, term(f.by, by).1))
                .collect();
            must.push((Occur::Must, Box::new(BooleanQuery::new(any))));
        }
        if let Some(since) = filter.since {
            must.push((
                Occur::Must,
                Box::new(RangeQuery::new(
                    std::ops::Bound::Included(Term::from_field_i64(f.at, since)),
                    std::ops::Bound::Unbounded,
                )),
            ));
        }
        let combined = BooleanQuery::new(must);
        // Parts, best first; enough of them to fill `limit` documents in most cases.
        let top = searcher.search(
            &combined,
            &TopDocs::with_limit(limit.saturating_mul(20)).order_by_score(),
        )?;
        let mut snippets = tantivy::snippet::SnippetGenerator::create(&searcher, &*parsed, f.text)?;
        snippets.set_max_num_chars(10_000);
        let mut hits: Vec<Hit> = Vec::new();
        let mut by_doc: BTreeMap<String, usize> = BTreeMap::new();
        for (score, address) in top {
            let stored: TantivyDocument = searcher.doc(address)?;
            let text = |field: Field| -> String {
                stored
                    .get_first(field)
                    .and_then(|v| v.as_str())
                    .unwrap_or_default()
                    .to_string()
            };
            let doc_hex = text(f.doc);
            if let Some(&i) = by_doc.get(&doc_hex) {
                hits[i].matches += 1;
                continue;
            }
            let (Ok(doc), Ok(workspace)) = (Id::parse(&doc_hex), Id::parse(&text(f.workspace)))
            else {
                continue;
            };
            let kind = match text(f.kind).as_str() {
                "proposal" => Kind::Proposal,
                "thread" => Kind::Thread,
                _ => Kind::Update,
            };
            // The snippet of the stored text itself: `snippet_from_doc` trims the text
            // first, which would shift every offset by its leading whitespace.
            let body = text(f.text);
            let snippet = snippets.snippet(&body);
            let (line, highlighted) =
                matching_line(&body, snippet.fragment_range().start, snippet.highlighted());
            by_doc.insert(doc_hex, hits.len());
            hits.push(Hit {
                doc,
                workspace,
                kind,
                state: text(f.state),
                title: text(f.title),
                score,
                what: text(f.what),
                by: text(f.by),
                at: stored.get_first(f.at).and_then(|v| v.as_i64()).unwrap_or(0),
                line,
                highlighted,
                matches: 1,
            });
        }
        hits.truncate(limit);
        Ok(hits)
    }
}

/// The documents queued from generation `from` on (each once), and the next generation,
/// read in one transaction. A home where no document was written since this build has no
/// queue yet.
fn queued(node: &Node, from: u64) -> Result<(Vec<(Id, Id)>, u64)> {
    let txn = node.db().begin_read()?;
    let end = next_generation(&txn.open_table(META)?)?;
    let queue = match txn.open_table(SEARCH_QUEUE) {
        Ok(queue) => queue,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok((Vec::new(), end)),
        Err(e) => return Err(e.into()),
    };
    let mut pending = Vec::new();
    let mut seen = HashSet::new();
    for item in queue.range(from..)? {
        let (_, v) = item?;
        let v = v.value();
        let (mut w, mut d) = ([0u8; 16], [0u8; 16]);
        w.copy_from_slice(&v[..16]);
        d.copy_from_slice(&v[16..]);
        if seen.insert(d) {
            pending.push((Id(w), Id(d)));
        }
    }
    Ok((pending, end))
}

/// Forgets the queue below `end`: those documents are in the index.
fn forget(node: &Node, end: u64) -> Result<()> {
    let any = {
        let txn = node.db().begin_read()?;
        match txn.open_table(SEARCH_QUEUE) {
            Ok(queue) => queue.first()?.is_some_and(|(k, _)| k.value() < end),
            Err(redb::TableError::TableDoesNotExist(_)) => false,
            Err(e) => return Err(e.into()),
        }
    };
    if !any {
        return Ok(());
    }
    let txn = node.db().begin_write()?;
    {
        let mut queue = txn.open_table(SEARCH_QUEUE)?;
        queue.retain_in(..end, |_: u64, _: [u8; 32]| false)?;
    }
    txn.commit()?;
    Ok(())
}

/// The line of `text` holding the first highlighted range of a snippet (whose fragment
/// starts at byte `offset` of `text`), with the ranges that fall in that line, relative to
/// it. The whole text's first line when nothing is highlighted (a filter-only match).
fn matching_line(
    text: &str,
    offset: usize,
    highlighted: &[std::ops::Range<usize>],
) -> (String, Vec<std::ops::Range<usize>>) {
    let Some(first) = highlighted.first() else {
        let line = text
            .lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or_default();
        return (line.trim().to_string(), Vec::new());
    };
    let at = offset + first.start;
    // Offsets come from tantivy's tokenizer over this very text; a range that does not
    // fall on characters of it is dropped rather than trusted.
    if at > text.len() || !text.is_char_boundary(at) {
        let line = text
            .lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or_default();
        return (line.trim().to_string(), Vec::new());
    }
    let start = text[..at].rfind('\n').map_or(0, |i| i + 1);
    let end = text[at..].find('\n').map_or(text.len(), |i| at + i);
    let line = &text[start..end];
    let ranges = highlighted
        .iter()
        .map(|r| (offset + r.start, offset + r.end))
        .filter(|(s, e)| {
            *s >= start
                && *e <= end
                && s < e
                && text.is_char_boundary(*s)
                && text.is_char_boundary(*e)
        })
        .map(|(s, e)| (s - start)..(e - start))
        .collect();
    (line.to_string(), ranges)
}
