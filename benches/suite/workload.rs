//! Workloads shared by the benchmark suite and the CI regression test: homes full of
//! documents, a long document typed change by change, a team of nodes sharing a workspace,
//! an in-process relay whose CPU time can be read, a TCP proxy that counts the bytes on the
//! wire, and a sync driver built on the node's own session (`begin`/`carry_out`) that counts
//! the frames it sends.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use automerge::ReadDoc;
use automerge::transaction::Transactable;
use futures_util::{FutureExt, SinkExt, StreamExt};
use meridian::discussion;
use meridian::doc::View;
use meridian::id::Id;
use meridian::identity::Profile;
use meridian::node::{Node, commit, now_ms};
use meridian::proposal::{self, NewProposal};
use meridian::sync::net::{RoundReport, begin, carry_out};
use meridian::thread::{self, NewThread};
use meridian::workspace::Invite;
use meridian_relay::protocol::Frame;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;

/// A profile for a benchmark person.
pub fn profile(name: &str) -> Profile {
    Profile {
        name: name.into(),
        tz: "Europe/Berlin".into(),
        hours: "09:00-17:00".into(),
        days: "mon-fri".into(),
        away: Vec::new(),
    }
}

/// A deterministic generator (SplitMix64), so every run types the same text.
pub struct Rng(pub u64);

impl Rng {
    /// The next number.
    pub fn next(&mut self) -> u64 {
        meridian_relay::determinism::splitmix(&mut self.0)
    }

    /// A number below `n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// The documents `populate` made that scenarios touch.
pub struct Populated {
    /// A proposal with a few changes.
    pub proposal: Id,
    /// A thread with one change.
    pub thread: Id,
    /// Every document made.
    pub docs: Vec<Id>,
}

/// Fills a workspace with `docs` documents, a thousand per transaction: half proposals
/// (created and replied to: two changes), half threads (one change), a tenth asking for
/// this person's response.
pub fn populate(node: &Node, workspace: Id, docs: usize) -> Result<Populated> {
    let me = node.member_id();
    let mut made = Populated {
        proposal: Id::random(),
        thread: Id::random(),
        docs: Vec::with_capacity(docs),
    };
    for chunk in 0..docs.div_ceil(1000) {
        node.batch(|batch| {
            for i in chunk * 1000..((chunk + 1) * 1000).min(docs) {
                let id = Id::random();
                let asks = if i % 10 == 0 {
                    vec![me.clone()]
                } else {
                    vec![]
                };
                if i % 2 == 0 {
                    let new = NewProposal {
                        id,
                        workspace,
                        title: format!("Proposal {i}: a change to subsystem {}", i % 37),
                        template: "adr".into(),
                        sections: vec![
                            ("Context".into(), "Some context paragraph. ".repeat(8)),
                            ("Decision".into(), "We will do the thing.".into()),
                            ("Consequences".into(), "Things change.".into()),
                        ],
                        deciders: vec![me.clone()],
                        asks,
                        urgency: "normal".into(),
                        author: me.clone(),
                        at: now_ms(),
                    };
                    batch.edit(workspace, id, |doc| {
                        let mut tx = doc.transaction();
                        proposal::create(&mut tx, &new)?;
                        commit(tx, "new proposal");
                        let mut tx = doc.transaction();
                        discussion::put_comment(
                            &mut tx,
                            &Id::random().hex(),
                            None,
                            &me,
                            now_ms(),
                            "Looks fine",
                        )?;
                        commit(tx, "reply");
                        Ok(())
                    })?;
                    made.proposal = id;
                } else {
                    let new = NewThread {
                        id,
                        workspace,
                        title: format!("Thread {i}"),
                        body: "What do we think?".into(),
                        asks,
                        urgency: "high".into(),
                        author: me.clone(),
                        at: now_ms(),
                    };
                    batch.edit(workspace, id, |doc| {
                        let mut tx = doc.transaction();
                        thread::create(&mut tx, &new)?;
                        commit(tx, "new thread");
                        Ok(())
                    })?;
                    made.thread = id;
                }
                made.docs.push(id);
            }
            Ok(())
        })?;
    }
    Ok(made)
}

/// What a proposal with one empty section, `Body`, is made of.
pub fn text_proposal(node: &Node, workspace: Id, title: &str) -> NewProposal {
    let me = node.member_id();
    NewProposal {
        id: Id::random(),
        workspace,
        title: title.into(),
        template: "rfc".into(),
        sections: vec![("Body".into(), String::new())],
        deciders: vec![me.clone()],
        asks: vec![],
        urgency: "normal".into(),
        author: me,
        at: now_ms(),
    }
}

/// Creates `new` in `edit` (a node's or a batch's).
pub fn create_proposal(
    new: &NewProposal,
    edit: impl FnOnce(Id, &mut dyn FnMut(&mut automerge::Automerge) -> Result<()>) -> Result<()>,
) -> Result<Id> {
    edit(new.id, &mut |doc| {
        let mut tx = doc.transaction();
        proposal::create(&mut tx, new)?;
        commit(tx, "new proposal");
        Ok(())
    })?;
    Ok(new.id)
}

/// Creates a thread titled `title` in `edit` (a node's or a batch's).
pub fn create_thread(
    node: &Node,
    title: &str,
    edit: impl FnOnce(Id, &mut dyn FnMut(&mut automerge::Automerge) -> Result<()>) -> Result<()>,
    workspace: Id,
) -> Result<Id> {
    let new = NewThread {
        id: Id::random(),
        workspace,
        title: title.into(),
        body: "Where should the relay keep envelopes? Say what you measured.".into(),
        asks: vec![],
        urgency: "normal".into(),
        author: node.member_id(),
        at: now_ms(),
    };
    edit(new.id, &mut |doc| {
        let mut tx = doc.transaction();
        thread::create(&mut tx, &new)?;
        commit(tx, "new thread");
        Ok(())
    })?;
    Ok(new.id)
}

/// A new proposal with one empty section, `Body`, in its own durable edit.
pub fn new_text_document(node: &Node, workspace: Id, title: &str) -> Result<Id> {
    let new = text_proposal(node, workspace, title);
    create_proposal(&new, |id, f| node.edit(workspace, id, f))
}

/// The `Body` text object of a document made by [`new_text_document`].
pub fn body(doc: &automerge::Automerge) -> Result<automerge::ObjId> {
    let view = View::now(doc);
    let sections = view
        .map(&automerge::ROOT, "sections")
        .context("the document has no sections")?;
    view.text_obj(&sections, "Body")
        .context("the document has no Body section")
}

/// Types `edits` single-character edits into a text, one change each, the way a person
/// types: mostly inserting at a cursor that sometimes jumps, about one edit in four a
/// deletion (the "automerge paper" trace has 182k insertions and 77k deletions).
pub fn type_into(doc: &mut automerge::Automerge, edits: usize, rng: &mut Rng) -> Result<()> {
    let text = body(doc)?;
    let mut len = doc.length(&text);
    let mut cursor = len;
    const LETTERS: &[u8] = b"etaoin shrdlu cmfwyp vbgkqjxz,.";
    for _ in 0..edits {
        if rng.below(40) == 0 {
            cursor = rng.below(len + 1);
        }
        let mut tx = doc.transaction();
        if cursor > 0 && rng.below(100) < 28 {
            tx.splice_text(&text, cursor - 1, 1, "")?;
            cursor -= 1;
            len -= 1;
        } else {
            let c = LETTERS[rng.below(LETTERS.len())] as char;
            tx.splice_text(&text, cursor, 0, &c.to_string())?;
            cursor += 1;
            len += 1;
        }
        commit(tx, "edit");
    }
    Ok(())
}

/// A proposal typed change by change: `changes` changes in all, stored in one durable
/// transaction (the way a batch import writes).
pub fn long_document(node: &Node, workspace: Id, changes: usize, seed: u64) -> Result<Id> {
    let id = new_text_document(node, workspace, "A long document")?;
    node.edit(workspace, id, |doc| {
        type_into(doc, changes.saturating_sub(1), &mut Rng(seed))
    })?;
    Ok(id)
}

/// A bundle of the workspace document's records and `changes`, each change sealed by
/// `node` into an envelope of its own: what a history typed one command at a time looks
/// like (an edit's changes are otherwise sealed together).
pub fn single_change_bundle(
    node: &Node,
    workspace: Id,
    changes: &[(Id, Vec<automerge::Change>)],
) -> Result<Vec<u8>> {
    let (_, record) = node.workspace(Some(&workspace.hex()))?;
    let key: meridian::seal::WorkspaceKey = record.key.as_slice().try_into()?;
    let mut envelopes: Vec<serde_bytes::ByteBuf> = node
        .envelopes(&[workspace])?
        .into_iter()
        .map(serde_bytes::ByteBuf::from)
        .collect();
    for (doc, changes) in changes {
        for change in changes {
            let envelope =
                meridian::seal::seal(node.key(), &key, workspace, *doc, change.raw_bytes());
            envelopes.push(serde_bytes::ByteBuf::from(envelope.encode()));
        }
    }
    let bundle = meridian::bundle::Bundle {
        version: meridian::bundle::BUNDLE_VERSION,
        workspace: workspace.0.to_vec(),
        envelopes,
        docs: None,
        disclosure: None,
    };
    let mut bytes = meridian::bundle::BUNDLE_MAGIC.to_vec();
    ciborium::into_writer(&bundle, &mut bytes)?;
    Ok(bytes)
}

/// Every change of a document, for [`single_change_bundle`].
pub fn all_changes(node: &Node, workspace: Id, doc: Id) -> Result<(Id, Vec<automerge::Change>)> {
    Ok((doc, node.load(workspace, doc)?.get_changes(&[])))
}

/// Writes `count` replies into a document, one change each, the way people reply: mostly
/// to the document, one in four to an earlier comment, each a sentence or two long.
pub fn reply_into(
    doc: &mut automerge::Automerge,
    me: &str,
    count: usize,
    rng: &mut Rng,
) -> Result<()> {
    const WORDS: &[&str] = &[
        "the",
        "relay",
        "should",
        "keep",
        "every",
        "envelope",
        "until",
        "we",
        "agree",
        "on",
        "retention",
        "I",
        "think",
        "this",
        "breaks",
        "offline",
        "merges",
        "when",
        "two",
        "people",
        "edit",
        "same",
        "section",
        "agreed",
        "let's",
        "measure",
        "first",
    ];
    let mut ids: Vec<String> = Vec::new();
    for _ in 0..count {
        let words = 8 + rng.below(16);
        let body: Vec<&str> = (0..words).map(|_| WORDS[rng.below(WORDS.len())]).collect();
        let parent =
            (!ids.is_empty() && rng.below(4) == 0).then(|| ids[rng.below(ids.len())].clone());
        let id = format!("{:016x}{:016x}", rng.next(), rng.next());
        let mut tx = doc.transaction();
        discussion::put_comment(
            &mut tx,
            &id,
            parent.as_deref(),
            me,
            now_ms(),
            &body.join(" "),
        )?;
        commit(tx, "reply");
        ids.push(id);
    }
    Ok(())
}

/// What each edit of [`edit_by_edit`] is.
#[derive(Clone, Copy, Debug)]
pub enum Edits {
    /// A character typed into the `Body` section of a text proposal.
    Typing,
    /// A reply to a thread or proposal.
    Replies,
}

/// Makes edits as a person typing offline, one command per edit: `edits` lists how many
/// edits go to which document; each change is stored sealed on its own, and queued for the
/// relays, in one transaction (by merging the node's own single-change bundle).
pub fn type_edit_by_edit(
    node: &Node,
    workspace: Id,
    edits: &[(Id, usize)],
    rng: &mut Rng,
) -> Result<()> {
    edit_by_edit(node, workspace, edits, Edits::Typing, rng)
}

/// [`type_edit_by_edit`] for edits of either kind.
pub fn edit_by_edit(
    node: &Node,
    workspace: Id,
    edits: &[(Id, usize)],
    kind: Edits,
    rng: &mut Rng,
) -> Result<()> {
    let me = node.member_id();
    let mut changes = Vec::new();
    for (doc, count) in edits {
        let mut loaded = node.load(workspace, *doc)?;
        loaded.set_actor(node.actor());
        let before = loaded.get_heads();
        match kind {
            Edits::Typing => type_into(&mut loaded, *count, rng)?,
            Edits::Replies => reply_into(&mut loaded, &me, *count, rng)?,
        }
        changes.push((*doc, loaded.get_changes(&before)));
    }
    let bundle = single_change_bundle(node, workspace, &changes)?;
    meridian::bundle::merge(node, &bundle, &meridian::ingest::Limits::default())?;
    Ok(())
}

/// Several people sharing a workspace, each with a home under one directory.
pub struct Team {
    /// The nodes, the workspace's creator first.
    pub nodes: Vec<Node>,
    /// The shared workspace.
    pub workspace: Id,
}

impl Team {
    /// The creator makes a workspace listing `relays`; `members - 1` others join with
    /// invites (offline: nothing reaches a relay yet).
    pub fn new(dir: &Path, members: usize, relays: Vec<String>) -> Result<Team> {
        let creator = Node::init(&dir.join("n0"), &profile("n0"))?;
        let workspace = creator.create_workspace("bench", relays)?;
        let mut nodes = vec![creator];
        for i in 1..members {
            let node = new_member(&nodes[0], workspace, &dir.join(format!("n{i}")))?;
            nodes.push(node);
        }
        Ok(Team { nodes, workspace })
    }

    /// Registers everyone with the relay and spreads the membership: the creator first,
    /// then each member, then everyone once more so each knows all the others.
    pub fn introduce(&self, relay: &str) -> Result<()> {
        for node in &self.nodes {
            sync_round(node, self.workspace, relay)?;
        }
        for node in &self.nodes {
            sync_round(node, self.workspace, relay)?;
        }
        Ok(())
    }
}

/// A new person in `home` who joins `inviter`'s workspace with an invite (offline).
pub fn new_member(inviter: &Node, workspace: Id, home: &Path) -> Result<Node> {
    let (_, record) = inviter.workspace(Some(&workspace.hex()))?;
    let invite = Invite::new(
        inviter.key(),
        workspace,
        &record.name,
        &record.key,
        &record.creator,
        record.relays.clone(),
        now_ms() + 30 * 24 * 3600 * 1000,
    );
    let name = home
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "member".into());
    let node = Node::init(home, &profile(&name))?;
    node.join(&invite)?;
    Ok(node)
}

/// A reply to a document, in a durable edit of its own.
pub fn reply(node: &Node, workspace: Id, doc: Id, text: &str) -> Result<()> {
    let me = node.member_id();
    node.edit(workspace, doc, |doc| {
        let mut tx = doc.transaction();
        discussion::put_comment(&mut tx, &Id::random().hex(), None, &me, now_ms(), text)?;
        commit(tx, "reply");
        Ok(())
    })
}

/// What a sync connection did, seen from the node.
#[derive(Debug, Default)]
pub struct Round {
    /// The name of every frame the node sent, in order.
    pub sent: Vec<&'static str>,
    /// Frames received.
    pub received: usize,
    /// Bytes of the frames the node sent and received (websocket payloads).
    pub payload_up: u64,
    /// See `payload_up`.
    pub payload_down: u64,
    /// Bytes by kind of frame, both ways.
    pub by_frame: std::collections::BTreeMap<&'static str, u64>,
    /// What the store writes did.
    pub report: RoundReport,
    /// From connecting to done.
    pub seconds: f64,
}

impl Round {
    /// Frames that ask the relay for something: everything the node sends but `Hello`
    /// and `Prove` (the authentication) — a catch-up's round trips.
    pub fn requests(&self) -> usize {
        self.sent
            .iter()
            .filter(|name| !matches!(**name, "Hello" | "Prove"))
            .count()
    }
}

/// One sync round with a relay, like `meridian sync`.
pub fn sync_round(node: &Node, workspace: Id, relay: &str) -> Result<Round> {
    sync_until(node, workspace, relay, Duration::from_secs(600), |_, _| {
        Ok(true)
    })
}

/// Syncs with a relay until the round is done and `done` says the node has what it
/// waits for (it sees what the store writes did so far); live entries keep arriving
/// meanwhile, as in the daemon.
pub fn sync_until(
    node: &Node,
    workspace: Id,
    relay: &str,
    patience: Duration,
    done: impl FnMut(&Node, &RoundReport) -> Result<bool>,
) -> Result<Round> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(drive(node, workspace, relay, patience, done))
}

async fn drive(
    node: &Node,
    workspace: Id,
    relay: &str,
    patience: Duration,
    mut done: impl FnMut(&Node, &RoundReport) -> Result<bool>,
) -> Result<Round> {
    let started = Instant::now();
    let deadline = started + patience;
    let url = meridian::sync::net::endpoint(relay)?;
    let (socket, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .with_context(|| format!("cannot connect to {relay}"))?;
    let (mut sink, mut source) = socket.split();
    let mut round = Round::default();
    let (mut session, mut outputs) = begin(node, workspace, relay, Instant::now())?;
    loop {
        let mut frames = Vec::new();
        let mut send = |frame: Frame| {
            frames.push(frame);
            Ok(())
        };
        carry_out(
            node,
            workspace,
            relay,
            &mut session,
            std::mem::take(&mut outputs),
            &mut send,
            &mut round.report,
            &mut |_| {},
        )?;
        for frame in frames {
            round.sent.push(frame.name());
            let bytes = frame.encode();
            round.payload_up += bytes.len() as u64;
            *round.by_frame.entry(frame.name()).or_default() += bytes.len() as u64;
            sink.send(Message::Binary(bytes.into())).await?;
        }
        if session.is_closed() {
            bail!("the session with {relay} ended");
        }
        if session.is_idle() {
            // As `meridian sync` does: what was written meanwhile, then snapshots due.
            outputs = meridian::sync::net::when_idle(
                node,
                workspace,
                relay,
                &mut session,
                Instant::now(),
            )?;
            if !outputs.is_empty() {
                continue;
            }
            if done(node, &round.report)? {
                break;
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let mut message = Some(
            tokio::time::timeout(left, source.next())
                .await
                .map_err(|_| anyhow!("{relay}: nothing arrived within {patience:?}"))?,
        );
        // As `meridian`'s driver does: frames that already arrived are taken in together.
        let mut taken = 0;
        while let Some(next) = message.take() {
            let frame = match next {
                Some(Ok(Message::Binary(bytes))) => {
                    round.payload_down += bytes.len() as u64;
                    let frame = Frame::decode(&bytes)?;
                    *round.by_frame.entry(frame.name()).or_default() += bytes.len() as u64;
                    Some(frame)
                }
                Some(Ok(Message::Close(_))) | None => bail!("{relay} closed the connection"),
                Some(Ok(_)) => None,
                Some(Err(e)) => return Err(e.into()),
            };
            if let Some(frame) = frame {
                round.received += 1;
                outputs.extend(session.receive(frame, Instant::now()));
            }
            taken += 1;
            if taken < 64 {
                message = source.next().now_or_never();
            }
        }
    }
    let _ = sink.close().await;
    round.seconds = started.elapsed().as_secs_f64();
    Ok(round)
}

/// A relay served in this process on loopback, on its own runtime, whose threads are all
/// named `relay…` so their CPU time can be told apart from the nodes'.
pub struct Relay {
    /// `ws://127.0.0.1:PORT`.
    pub url: String,
    /// Where it listens.
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<()>>>,
}

impl Relay {
    /// Starts a relay keeping its data in `dir`.
    pub fn start(dir: &Path) -> Result<Relay> {
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let dir = dir.to_path_buf();
        let thread = std::thread::Builder::new()
            .name("relay-main".into())
            .spawn(move || -> Result<()> {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .thread_name("relay-worker")
                    .enable_all()
                    .build()?;
                runtime.block_on(async move {
                    let listener = TcpListener::bind("127.0.0.1:0").await?;
                    addr_tx.send(listener.local_addr()?)?;
                    meridian_relay::server::serve(
                        listener,
                        &dir,
                        meridian_relay::server::Config::default(),
                        async {
                            let _ = stopped.await;
                        },
                    )
                    .await
                })
            })?;
        let addr = addr_rx
            .recv_timeout(Duration::from_secs(30))
            .context("the relay did not start")?;
        Ok(Relay {
            url: format!("ws://{addr}"),
            addr,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// CPU time the relay's threads have used so far, seconds.
    pub fn cpu_seconds(&self) -> f64 {
        thread_cpu_seconds(|name| name.starts_with("relay"))
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            match thread.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => eprintln!("the relay failed: {e:#}"),
                Err(_) => eprintln!("the relay panicked"),
            }
        }
    }
}

/// CPU time of this process's live threads whose name matches, seconds (from
/// `/proc/self/task/*/schedstat`, in nanoseconds).
pub fn thread_cpu_seconds(matches: impl Fn(&str) -> bool) -> f64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0.0;
    };
    let mut total = 0u64;
    for task in tasks.flatten() {
        let path = task.path();
        let name = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        if !matches(name.trim()) {
            continue;
        }
        let stat = std::fs::read_to_string(path.join("schedstat")).unwrap_or_default();
        total += stat
            .split_whitespace()
            .next()
            .and_then(|ns| ns.parse::<u64>().ok())
            .unwrap_or(0);
    }
    total as f64 / 1e9
}

/// A TCP proxy on loopback that counts the bytes going each way: what is on the wire
/// (HTTP upgrade, websocket framing and frames), TCP/IP headers aside.
pub struct Proxy {
    /// `ws://127.0.0.1:PORT`, to give a node instead of the relay's URL.
    pub url: String,
    up: Arc<AtomicU64>,
    down: Arc<AtomicU64>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Proxy {
    /// Starts a proxy to `upstream`.
    pub fn start(upstream: SocketAddr) -> Result<Proxy> {
        let up = Arc::new(AtomicU64::new(0));
        let down = Arc::new(AtomicU64::new(0));
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let (up2, down2) = (up.clone(), down.clone());
        let thread = std::thread::Builder::new()
            .name("proxy".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a runtime for the proxy");
                runtime.block_on(async move {
                    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
                    let _ = addr_tx.send(listener.local_addr().expect("an address"));
                    loop {
                        tokio::select! {
                            _ = &mut stopped => break,
                            accepted = listener.accept() => {
                                let Ok((client, _)) = accepted else { continue };
                                let (up, down) = (up2.clone(), down2.clone());
                                tokio::spawn(async move {
                                    if let Ok(server) = TcpStream::connect(upstream).await {
                                        let _ = client.set_nodelay(true);
                                        let _ = server.set_nodelay(true);
                                        let (cr, cw) = client.into_split();
                                        let (sr, sw) = server.into_split();
                                        let _ = tokio::join!(pipe(cr, sw, up), pipe(sr, cw, down));
                                    }
                                });
                            }
                        }
                    }
                });
            })?;
        let addr: SocketAddr = addr_rx.recv_timeout(Duration::from_secs(30))?;
        Ok(Proxy {
            url: format!("ws://{addr}"),
            up,
            down,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Bytes (client → relay, relay → client) since the last call.
    pub fn take(&self) -> (u64, u64) {
        (
            self.up.swap(0, Ordering::SeqCst),
            self.down.swap(0, Ordering::SeqCst),
        )
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    count: Arc<AtomicU64>,
) {
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        match from.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                count.fetch_add(n as u64, Ordering::SeqCst);
                if to.write_all(&buffer[..n]).await.is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown().await;
}

/// A fresh temporary directory on the disk (not tmpfs: durable commits cost what they cost).
pub fn scratch(prefix: &str) -> Result<tempfile::TempDir> {
    let base = std::env::var_os("MERIDIAN_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    std::fs::create_dir_all(&base)?;
    Ok(tempfile::Builder::new().prefix(prefix).tempdir_in(base)?)
}

/// The number of changes the node stores for a document.
pub fn changes_of(node: &Node, workspace: Id, doc: Id) -> Result<u64> {
    Ok(node.resolve(workspace, &doc.hex())?.1.changes)
}
