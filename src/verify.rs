//! `meridian verify FILE`: a decision record anyone can check, with no home and no key but
//! those a verifiable export discloses (`meridian export ID --format bundle --verifiable`).
//!
//! The file carries the document's and the workspace document's envelopes exactly as their
//! writers signed them, and for each the one key that opens it and no other
//! ([`crate::seal::Disclosed`]). Checking rebuilds both documents from nothing but that:
//! every signature, every change written by the device that signed it, every change
//! allowed by its document's rules (the rules every node applies: who may approve, accept,
//! edit what), every writer a member whose invites lead back to the workspace's creator,
//! and no change a removal refuses. What it then says (who approved which version, who
//! accepted and when) is derived from the checked documents the way every node derives it.
//!
//! Pure: the file's bytes in, the checked documents out; no store, no clock.

use std::collections::BTreeSet;

use anyhow::{Context, Result, bail};
use automerge::{Automerge, Change, ReadDoc};

use crate::bundle::{BUNDLE_MAGIC, BUNDLE_VERSION, Bundle};
use crate::doc::{Kind, View};
use crate::id::Id;
use crate::ingest::{self, Budget, Limits};
use crate::workspace::{self, WorkspaceState};

/// A checked verifiable export.
pub struct Verified {
    /// The workspace.
    pub workspace: Id,
    /// Its creator's device key, hex: the root every membership was checked from.
    pub creator: String,
    /// Whether the workspace id is derived from that key (the creator exported the file):
    /// otherwise the reader compares the key with the one they know.
    pub creator_bound: bool,
    /// The document the record is of.
    pub id: Id,
    /// Its kind.
    pub kind: Kind,
    /// The document, rebuilt from the file's changes alone.
    pub doc: Automerge,
    /// The workspace's members as its document says, checked.
    pub state: WorkspaceState,
    /// Envelopes checked (signature, key, changes).
    pub envelopes: usize,
    /// Changes applied and checked, of both documents.
    pub changes: usize,
    /// Who signed the document's changes (member ids).
    pub writers: BTreeSet<String>,
    /// Documents other than these two whose changes the file discloses (envelopes that
    /// carry several documents' changes open whole).
    pub others: usize,
    /// The workspace's name.
    pub workspace_name: String,
}

impl Verified {
    /// The document's title.
    pub fn title(&self) -> String {
        View::now(&self.doc).title()
    }

    /// Its state as every node derives it (`accepted`, `open`, …).
    pub fn state_name(&self) -> String {
        let view = View::now(&self.doc);
        match self.kind {
            Kind::Proposal => crate::proposal::state(view).state.name().to_string(),
            Kind::Thread => crate::thread::read(view).lifecycle.state.name().to_string(),
            _ => "posted".to_string(),
        }
    }

    /// The record, as `meridian export ID` writes it: for a proposal its decision record
    /// (who approved which version, who decided and when, concerns and their resolution).
    pub fn record(&self) -> String {
        let view = View::now(&self.doc);
        let names = |member: &str| self.state.name_of(member);
        match self.kind {
            Kind::Proposal => crate::record::proposal(
                &crate::proposal::read(view),
                &crate::record::Context {
                    names: &names,
                    superseded_by: None,
                    supersedes: Vec::new(),
                    discussion: false,
                },
            ),
            Kind::Thread => crate::record::thread(&crate::thread::read(view), &names),
            _ => crate::record::update(&crate::update::read(view), &names),
        }
    }
}

/// Checks a verifiable export.
pub fn verify(bytes: &[u8], limits: &Limits) -> Result<Verified> {
    if bytes.len() > limits.max_input {
        bail!(
            "the file is {} bytes, more than the limit of {} bytes",
            bytes.len(),
            limits.max_input
        );
    }
    let Some(body) = bytes.strip_prefix(BUNDLE_MAGIC) else {
        bail!(
            "this is not a Meridian bundle: `meridian export ID --format bundle --verifiable -o FILE` makes one anyone can check"
        );
    };
    let bundle: Bundle = meridian_relay::cbor::from_slice(body)
        .map_err(|e| anyhow::anyhow!("the bundle is damaged or truncated ({e})"))?;
    if bundle.version != BUNDLE_VERSION {
        bail!(
            "bundle version {} is not supported by this meridian (it reads version {BUNDLE_VERSION}): upgrade meridian",
            bundle.version
        );
    }
    let Some(disclosure) = bundle.disclosure else {
        bail!(
            "this bundle carries no keys, so only a member can open it: its sender makes one anyone can check with `meridian export ID --format bundle --verifiable -o FILE`"
        );
    };
    let workspace =
        Id::from_slice(&bundle.workspace).context("the bundle's workspace id is damaged")?;
    let creator: [u8; 32] = disclosure
        .creator
        .as_slice()
        .try_into()
        .map_err(|_| anyhow::anyhow!("the bundle's creator key is damaged"))?;
    let creator_bound = match &disclosure.salt {
        None => false,
        Some(salt) => {
            let salt: [u8; 16] = salt
                .as_slice()
                .try_into()
                .map_err(|_| anyhow::anyhow!("the bundle's workspace salt is damaged"))?;
            if meridian_relay::membership::workspace_id(&creator, &salt) != workspace.0 {
                bail!(
                    "the workspace id is not derived from the creator key the bundle names: it was altered"
                );
            }
            true
        }
    };
    let docs: Vec<Id> = bundle
        .docs
        .unwrap_or_default()
        .iter()
        .filter_map(|d| Id::from_slice(d))
        .collect();
    let id = match docs.as_slice() {
        [w, id] if *w == workspace && *id != workspace => *id,
        _ => bail!(
            "a verifiable export is of one document and its workspace's document; this bundle names {} documents",
            docs.len()
        ),
    };
    if disclosure.keys.len() != bundle.envelopes.len() {
        bail!(
            "the bundle discloses {} keys for {} envelopes: it was altered",
            disclosure.keys.len(),
            bundle.envelopes.len()
        );
    }

    // Every envelope: its signature, the key that opens it, the changes it holds.
    let mut budget = Budget::new(limits);
    let mut workspace_changes: Vec<(Change, [u8; 32])> = Vec::new();
    let mut doc_changes: Vec<(Change, [u8; 32])> = Vec::new();
    let mut others = BTreeSet::new();
    let mut envelopes = 0;
    let encoded: Vec<&[u8]> = bundle.envelopes.iter().map(|e| e.as_slice()).collect();
    ingest::each_verified(&encoded, |i, envelope| {
        let envelope = envelope
            .map_err(anyhow::Error::from)
            .with_context(|| format!("envelope {} of the bundle does not verify", i + 1))?;
        if envelope.is_keyring() {
            return Ok(());
        }
        if envelope.workspace_id() != workspace.0 {
            bail!("envelope {} belongs to another workspace", i + 1);
        }
        let Some(key) = &disclosure.keys[i] else {
            bail!("the bundle discloses no key for its envelope {}", i + 1);
        };
        let Some(plaintext) = crate::seal::open_disclosed(&envelope, key) else {
            bail!(
                "envelope {} does not open with the key the bundle discloses for it: it was altered",
                i + 1
            );
        };
        let len = envelope.ciphertext.len();
        let items = budget
            .open(len, |left| {
                ingest::items_of_plaintext(envelope, &plaintext, &creator, left)
            })
            .with_context(|| format!("envelope {} of the bundle is refused", i + 1))?;
        envelopes += 1;
        for item in items {
            let into = if item.doc == workspace {
                &mut workspace_changes
            } else if item.doc == id {
                &mut doc_changes
            } else {
                others.insert(item.doc);
                continue;
            };
            into.extend(item.changes.into_iter().map(|c| (c, item.signer)));
        }
        Ok(())
    })?;

    // The workspace document from its deterministic first change: who the members are.
    let mut ws_doc = Automerge::new();
    let genesis = Change::from_bytes(workspace::genesis(workspace, &creator))
        .context("the workspace's first change does not build")?;
    ws_doc
        .apply_changes([genesis])
        .context("the workspace's first change does not apply")?;
    let (ws_applied, ws_signers) = apply(
        &mut ws_doc,
        workspace,
        Kind::Workspace,
        workspace_changes,
        limits,
        (None, &creator),
    )?;
    let state = workspace::read_state(View::now(&ws_doc), &creator);
    check_writers(&state, &ws_signers, "the workspace document")?;
    check_locks(&state, workspace, &ws_applied)?;

    let mut doc = Automerge::new();
    let view_kind = |doc: &Automerge| View::now(doc).kind();
    let kind = {
        // The kind is written in the document's first change: read it once applied.
        let mut probe = Automerge::new();
        let firsts: Vec<Change> = doc_changes
            .iter()
            .filter(|(c, _)| c.deps().is_empty())
            .map(|(c, _)| c.clone())
            .collect();
        crate::ingest::guard(|| probe.apply_changes(firsts))
            .context("the document's first change does not apply")?;
        view_kind(&probe)
            .context("the document says no kind it is of: it is not a Meridian document")?
    };
    if kind == Kind::Workspace {
        bail!(
            "the bundle's document is a workspace document: a record is of a proposal, a thread or an update"
        );
    }
    let (applied, signers) = apply(
        &mut doc,
        id,
        kind,
        doc_changes,
        limits,
        (Some(&state), &creator),
    )?;
    let view = View::now(&doc);
    if view.str(&automerge::ROOT, "id").as_deref() != Some(id.hex().as_str())
        || view.str(&automerge::ROOT, "workspace").as_deref() != Some(workspace.hex().as_str())
    {
        bail!(
            "document {} does not say it is that document of this workspace: it was altered",
            id.short()
        );
    }
    check_writers(&state, &signers, "the document")?;
    check_locks(&state, id, &applied)?;
    let writers = signers
        .iter()
        .filter_map(|key| state.member(&hex::encode(key)).map(|m| m.id.clone()))
        .collect();
    Ok(Verified {
        workspace,
        creator: hex::encode(creator),
        creator_bound,
        id,
        kind,
        doc,
        state,
        envelopes,
        changes: ws_applied.len() + applied.len(),
        writers,
        others: others.len(),
        workspace_name: View::now(&ws_doc).string(&automerge::ROOT, "name"),
    })
}

/// Applies one document's changes and checks them as a node checks what it receives: all
/// present, within the limits, allowed by the document's rules. How many, and who signed
/// them.
fn apply(
    doc: &mut Automerge,
    id: Id,
    kind: Kind,
    changes: Vec<(Change, [u8; 32])>,
    limits: &Limits,
    (members, creator): (Option<&WorkspaceState>, &[u8]),
) -> Result<(Vec<Change>, BTreeSet<[u8; 32]>)> {
    let mut seen = BTreeSet::new();
    let mut fresh: Vec<Change> = Vec::new();
    let mut signers = BTreeSet::new();
    for (change, signer) in changes {
        if doc.get_change_meta_by_hash(&change.hash()).is_none() && seen.insert(change.hash()) {
            signers.insert(signer);
            fresh.push(change);
        }
    }
    let ops: usize = fresh.iter().map(|c| c.len()).sum();
    if ops > limits.max_document_ops {
        bail!(
            "document {} holds {ops} operations, more than the limit of {}",
            id.short(),
            limits.max_document_ops
        );
    }
    let roots = fresh.iter().filter(|c| c.deps().is_empty()).count();
    let new_document = kind != Kind::Workspace && roots == 1;
    crate::ingest::guard(|| doc.apply_changes(fresh.clone()))
        .with_context(|| format!("the changes to document {} do not apply", id.short()))?;
    let missing = doc.get_missing_deps(&[]);
    if !missing.is_empty() {
        bail!(
            "document {} lacks {} change(s) its others depend on: the bundle is incomplete",
            id.short(),
            missing.len()
        );
    }
    ingest::check_depth(doc, limits.max_depth)?;
    let first = |change: &Change| new_document && change.deps().is_empty();
    let after = (kind == Kind::Workspace).then(|| workspace::read_state(View::now(doc), creator));
    let members = after.as_ref().or(members);
    crate::ingest::guard(|| crate::rules::check_changes(doc, kind, &fresh, first, members))
        .with_context(|| format!("document {} breaks its rules", id.short()))?;
    Ok((fresh, signers))
}

/// No change a removal refuses (`crate::lock`): a node would not have taken it.
fn check_locks(state: &WorkspaceState, doc: Id, changes: &[Change]) -> Result<()> {
    let locks = crate::lock::Locks::of(state);
    let changes: Vec<&Change> = changes.iter().collect();
    if let Some((_, writer)) = crate::lock::refused(&locks, doc, &changes).first() {
        bail!(
            "document {} holds changes {} wrote after they were removed from the workspace",
            doc.short(),
            state.name_of(writer)
        );
    }
    Ok(())
}

/// Every signer a verified member (a removed one's changes before their removal count).
fn check_writers(state: &WorkspaceState, signers: &BTreeSet<[u8; 32]>, what: &str) -> Result<()> {
    for key in signers {
        if !state.is_member_key(key) {
            bail!(
                "{what} holds changes signed by {}, who is not a member whose invites lead back to the creator",
                state.name_of(&hex::encode(key))
            );
        }
    }
    Ok(())
}
