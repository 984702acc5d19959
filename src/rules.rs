//! Who may write what: every operation of every change, local or foreign, is checked
//! against the schema of its document before it is stored.
//!
//! A signature proves who wrote a change, not that they were allowed to. Automerge lets any
//! writer put, overwrite or delete anything, so without these rules a member could rewrite
//! someone else's approval, delete a blocking concern, change the deciders, or add a key to
//! another member's entry. The rules make the shared structures append-only where the
//! derived state depends on them: entries, comments and asks are created once by their
//! author and never changed; member entries are written only by their own member; the
//! fields that say what a document is are written only in its first change. Collaborative
//! fields (titles, section text, norms, templates) stay open to every member.

use std::collections::HashMap;

use anyhow::{Result, bail};
use automerge::legacy::{Key, ObjectId, Op, OpId, OpType};
use automerge::{Automerge, Change, ExpandedChange, ObjType, Prop, ReadDoc};

use crate::doc::Kind;
use crate::identity;

/// Root fields that say what a document is: written in its first change only.
const IDENTITY: [&str; 6] = ["id", "kind", "workspace", "author", "created", "creator"];

/// Root fields any member may set.
const COLLABORATIVE: [&str; 5] = ["title", "urgency", "template", "period", "name"];

/// Root containers, created in the first change only.
const CONTAINERS: [&str; 9] = [
    "sections",
    "order",
    "deciders",
    "entries",
    "comments",
    "asks",
    "links",
    "members",
    "templates",
];

/// Root text fields written only by the document's author (a thread's opening text, the
/// parts of a status update).
const AUTHOR_TEXT: [&str; 4] = ["body", "done", "next", "blockers"];

/// What a batch of changes touched, as the rules check saw each operation's place: what the
/// index summary needs read again (`node::reindex`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Touched {
    /// Something other than the elements of texts and lists and the comments: the summary
    /// is derived again from the whole document.
    pub other: bool,
    /// Elements of texts and lists (typing into a section). No field of a summary is read
    /// from a text or a list but a proposal's approvals and late edits, whose staleness
    /// compares texts.
    pub sequences: bool,
    /// The comments the changes made, by id. A new comment can answer a request (the
    /// summary's `responded`); an edit of a comment's text, its deletion and reactions
    /// change nothing a summary holds.
    pub comments: Vec<String>,
}

impl Touched {
    /// Anything at all.
    pub fn anything() -> Touched {
        Touched {
            other: true,
            ..Touched::default()
        }
    }

    /// What two batches touched together.
    pub fn and(mut self, other: Touched) -> Touched {
        self.other |= other.other;
        self.sequences |= other.sequences;
        self.comments.extend(other.comments);
        self
    }
}

/// Checks every operation of `change` against the rules of a document of `kind`, looking
/// at the document after the change was applied. `first` says whether this change may
/// create the document (it has no dependencies and the document had no changes before).
pub fn check_change(doc: &Automerge, kind: Kind, change: &Change, first: bool) -> Result<()> {
    check_changes(doc, kind, std::slice::from_ref(change), |_| first, None).map(|_| ())
}

/// Checks several changes that were all applied to `doc`, as [`check_change`] does each
/// one; `first` says which of them may create the document. Says what they touched.
///
/// What the changes have in common is looked up once: the path from the root to each object
/// they touch, its creator, and the document's author. A batch of edits to one text (an
/// import, typing replayed) would otherwise walk that text's ancestors again for every
/// change, half the cost of checking it.
///
/// A change is its member's, whichever of their devices wrote it: `members` (the
/// workspace's state, for a workspace document the state the changes lead to) says whose
/// each device is; without it, a device is its own member (its first device).
pub fn check_changes(
    doc: &Automerge,
    kind: Kind,
    changes: &[Change],
    first: impl Fn(&Change) -> bool,
    members: Option<&crate::workspace::WorkspaceState>,
) -> Result<Touched> {
    let expanded: Vec<ExpandedChange> = changes.iter().map(Change::decode).collect();
    let changes: Vec<&Change> = changes.iter().collect();
    check_decoded(doc, kind, &changes, &expanded, first, members)
}

/// [`check_changes`] of changes the caller has already decoded, `expanded[i]` being
/// `changes[i].decode()`.
pub fn check_decoded(
    doc: &Automerge,
    kind: Kind,
    changes: &[&Change],
    expanded: &[ExpandedChange],
    first: impl Fn(&Change) -> bool,
    members: Option<&crate::workspace::WorkspaceState>,
) -> Result<Touched> {
    let author = doc_author(doc);
    let mut objects = Objects::new();
    let mut touched = Touched::default();
    let mut made_comments: std::collections::HashSet<OpId> = Default::default();
    let decisions = std::cell::OnceCell::new();
    // A batch has few writers: each one's key is written out once, not once per change.
    let mut writers: HashMap<&automerge::ActorId, Option<String>> = HashMap::new();
    for (change, expanded) in changes.iter().zip(expanded) {
        let actor = change.actor_id();
        let writer = writers.entry(actor).or_insert_with(|| {
            let key = hex::encode(identity::actor_key(actor)?);
            Some(match members.and_then(|s| s.member_of_device(&key)) {
                Some(member) => member.to_string(),
                None => key,
            })
        });
        let Some(writer) = writer.as_deref() else {
            bail!("a change's actor is not a Meridian device");
        };
        check_one(
            doc,
            kind,
            (change, expanded),
            (writer, first(change)),
            author.as_deref(),
            (&mut objects, &mut touched, &mut made_comments),
            &decisions,
        )?;
    }
    Ok(touched)
}

/// Whether a proposal holds any decision at all (accept, reject, withdraw, supersede):
/// without one, no change can come after a decision, and nothing more is read.
fn has_decisions(doc: &Automerge) -> bool {
    let view = crate::doc::View::now(doc);
    let author = view.string(&automerge::ROOT, "author");
    let deciders = crate::proposal::deciders(view);
    crate::discussion::entries(view).iter().any(|e| {
        matches!(
            e.kind.as_str(),
            "accept" | "reject" | "withdraw" | "supersede"
        ) && (e.by == author || deciders.contains(&e.by))
    })
}

/// Each object an operation targets: its path from the root and its creator's device key.
type Objects = HashMap<OpId, (Vec<String>, Option<String>)>;

fn check_one(
    doc: &Automerge,
    kind: Kind,
    (change, expanded): (&Change, &ExpandedChange),
    (writer, first): (&str, bool),
    author: Option<&str>,
    (objects, touched, made_comments): (
        &mut Objects,
        &mut Touched,
        &mut std::collections::HashSet<OpId>,
    ),
    decisions: &std::cell::OnceCell<bool>,
) -> Result<()> {
    // A document has exactly one change without dependencies: the one that created it.
    // Another would let its writer pick the empty document as the context of an entry
    // ("accepted, with no deciders and no concerns") or race the real creation elsewhere.
    if change.deps().is_empty() && !first {
        bail!(
            "change {} claims to start the {} over (it has no dependencies)",
            crate::id::prefix(&change.hash().to_string(), 12),
            kind.as_str()
        );
    }
    let ctx = OpContext {
        doc,
        change,
        kind,
        writer,
        author,
        first,
        decisions,
        text_final: std::cell::OnceCell::new(),
    };
    // Entries this change creates (by the counter of the op that makes them), and those
    // it gives `heads`: every entry says which document it was written on.
    let mut made_entries: Vec<u64> = Vec::new();
    let mut entries_with_heads: Vec<u64> = Vec::new();
    let start_op = change.start_op().get();
    for (index, op) in expanded.operations.iter().enumerate() {
        let (path, creator): (&[String], Option<&str>) = match &op.obj {
            ObjectId::Root => (&[], None),
            ObjectId::Id(id) => {
                if !objects.contains_key(id) {
                    let path = path_of(doc, &format!("{}@{}", id.0, id.1.to_hex_string()))?;
                    let creator = identity::actor_key(&id.1).map(hex::encode);
                    objects.insert(id.clone(), (path, creator));
                }
                let (path, creator) = &objects[id];
                (path, creator.as_deref())
            }
        };
        match (path, &op.action, &op.key, &op.obj) {
            ([c], OpType::Make(ObjType::Map), _, _) if c == "entries" => {
                made_entries.push(start_op + index as u64);
            }
            ([c, _], OpType::Put(_), Key::Map(key), ObjectId::Id(id))
                if c == "entries" && key == "heads" =>
            {
                entries_with_heads.push(id.0);
            }
            _ => {}
        }
        note_touched(
            (op, path),
            OpId(start_op + index as u64, change.actor_id().clone()),
            touched,
            made_comments,
        );
        let verdict = ctx
            .check(op, path, creator)
            .and_then(|()| shadows(doc, op, path));
        if let Err(reason) = verdict {
            bail!(
                "change {} breaks a rule of this {}: {reason}",
                crate::id::prefix(&change.hash().to_string(), 12),
                kind.as_str()
            );
        }
        // An object made at a map key lies at its parent's path and that key (objects never
        // move), so later operations on it need no walk up automerge's parents: a reply
        // makes a comment and writes into it, and that walk was two thirds of the check.
        // One made in a list is left to `path_of`, which refuses it where it is used.
        if let (OpType::Make(_), Key::Map(key)) = (&op.action, &op.key) {
            let made = OpId(start_op + index as u64, change.actor_id().clone());
            let mut at = path.to_vec();
            at.push(key.to_string());
            #[cfg(debug_assertions)]
            {
                let walked = path_of(doc, &format!("{}@{}", made.0, made.1.to_hex_string()));
                debug_assert_eq!(walked.ok().as_ref(), Some(&at), "the path of a new object");
            }
            objects.insert(made, (at, Some(writer.to_owned())));
        }
    }
    if made_entries.iter().any(|e| !entries_with_heads.contains(e)) {
        bail!(
            "change {} breaks a rule of this {}: an entry must say the heads it was written on",
            crate::id::prefix(&change.hash().to_string(), 12),
            kind.as_str()
        );
    }
    Ok(())
}

/// Notes what one operation (whose own id is `id`) touched.
fn note_touched(
    (op, path): (&Op, &[String]),
    id: OpId,
    touched: &mut Touched,
    made_comments: &mut std::collections::HashSet<OpId>,
) {
    let path: Vec<&str> = path.iter().map(String::as_str).collect();
    match (path.as_slice(), &op.key, &op.obj) {
        (_, Key::Seq(_), _) => touched.sequences = true,
        (["comments"], Key::Map(key), _) if matches!(op.action, OpType::Make(ObjType::Map)) => {
            touched.comments.push(key.to_string());
            made_comments.insert(id);
        }
        (["comments", _], Key::Map(key), _)
            if matches!(key.as_str(), "body" | "edited" | "deleted" | "reactions") => {}
        // Who wrote a comment and when are read by the summary: fine in a comment made in
        // this batch (which is listed), anything else otherwise.
        (["comments", _], Key::Map(_), ObjectId::Id(obj)) if made_comments.contains(obj) => {}
        (["comments", _, "reactions"], _, _) => {}
        _ => touched.other = true,
    }
}

/// A record (entry, comment, ask, member entry) is created at a fresh key: a second object
/// made at the same key would win or lose by op id, hiding or replacing the first.
fn shadows(doc: &Automerge, op: &Op, path: &[String]) -> Verdict {
    let (OpType::Make(_), Key::Map(key), ObjectId::Id(obj)) = (&op.action, &op.key, &op.obj) else {
        return Ok(());
    };
    let record = matches!(path, [c] if matches!(c.as_str(), "entries" | "comments" | "asks" | "members"))
        || matches!(path, [c, _] if c == "comments" && key == "reactions")
        || matches!(path, [m, _, d] if m == "members" && d == "devices");
    if !record {
        return Ok(());
    }
    let Ok(id) = doc.import_obj(&format!("{}@{}", obj.0, obj.1.to_hex_string())) else {
        return deny("an operation targets an object that does not exist");
    };
    if doc.get_all(&id, key.as_str()).map(|v| v.len()).unwrap_or(0) > 1 {
        return deny(format!(
            "`{}` already exists: records are never replaced",
            crate::id::prefix(key, 16)
        ));
    }
    Ok(())
}

fn doc_author(doc: &Automerge) -> Option<String> {
    root_str(doc, "author")
}

fn root_str(doc: &Automerge, key: &str) -> Option<String> {
    match doc.get(automerge::ROOT, key).ok().flatten()? {
        (automerge::Value::Scalar(s), _) => s.as_str().map(str::to_string),
        _ => None,
    }
}

/// The map keys from the root to an object.
fn path_of(doc: &Automerge, obj: &str) -> Result<Vec<String>> {
    let Ok(id) = doc.import_obj(obj) else {
        bail!("an operation targets an object that does not exist");
    };
    let Ok(parents) = doc.parents(&id) else {
        bail!("an operation targets an object that does not exist");
    };
    parents
        .path()
        .into_iter()
        .map(|(_, prop)| match prop {
            Prop::Map(key) => Ok(key),
            Prop::Seq(_) => bail!("objects inside lists are not part of any Meridian document"),
        })
        .collect()
}

struct OpContext<'a> {
    doc: &'a Automerge,
    change: &'a Change,
    kind: Kind,
    writer: &'a str,
    author: Option<&'a str>,
    first: bool,
    /// Whether the document holds any decision (computed once per batch, when needed).
    decisions: &'a std::cell::OnceCell<bool>,
    /// Whether the proposal was decided as this change's author saw it.
    text_final: std::cell::OnceCell<bool>,
}

type Verdict = std::result::Result<(), String>;

fn deny(reason: impl Into<String>) -> Verdict {
    Err(reason.into())
}

impl OpContext<'_> {
    fn check(&self, op: &Op, path: &[String], creator: Option<&str>) -> Verdict {
        let key = match &op.key {
            Key::Map(key) => Some(key.as_str()),
            Key::Seq(_) => None,
        };
        let fresh = op.pred.is_empty();
        let path: Vec<&str> = path.iter().map(String::as_str).collect();
        if matches!(
            op.action,
            OpType::Increment(_) | OpType::MarkBegin(_) | OpType::MarkEnd(_)
        ) {
            return deny("counters and marks are not used by Meridian documents");
        }
        match (path.as_slice(), key) {
            ([], Some(key)) => self.root(op, key),
            // Section text, proposal order: collaborative, but nothing is deleted from the order.
            // A section is replaced only to settle concurrent creations of it, whose text
            // objects the replacement names all of (`meridian resolve ID "section NAME"`).
            // Any member removes a section (its text stays in the history).
            (["sections"], Some(_)) => match op.action {
                OpType::Make(ObjType::Text) if fresh || op.pred.len() >= 2 => Ok(()),
                OpType::Delete => Ok(()),
                _ => deny("sections are added or removed, never replaced"),
            },
            (["sections", _], None) => Ok(()),
            (["order"], None) => match op.action {
                OpType::Put(_) if op.insert => Ok(()),
                OpType::Delete => Ok(()),
                _ => deny("the section order takes names and loses them, nothing else"),
            },
            ([text], None) if AUTHOR_TEXT.contains(text) => self.by_author(&format!("`{text}`")),
            (["links"], None) => self.by_author("the links"),
            (["deciders"], Some(_)) => self.by_author("the deciders"),
            // Append-only records: created once, by their author, never changed.
            ([container], Some(_)) if matches!(*container, "entries" | "comments" | "asks") => {
                match op.action {
                    OpType::Make(ObjType::Map) if fresh => Ok(()),
                    _ => deny(format!("{container} are never replaced or deleted")),
                }
            }
            ([container, _], Some(field))
                if matches!(*container, "entries" | "comments" | "asks") =>
            {
                if creator != Some(self.writer) {
                    return deny(format!(
                        "only its author writes inside one of the {container}"
                    ));
                }
                // A comment's author may edit its text or delete it later (its earlier text
                // stays in the history); everything else in a record is written once.
                let revision = *container == "comments"
                    && match field {
                        "body" => matches!(&op.action, OpType::Put(v) if v.as_str().is_some()),
                        "edited" | "deleted" => {
                            matches!(&op.action, OpType::Put(v) if v.as_i64().is_some())
                        }
                        _ => false,
                    };
                if revision {
                    return Ok(());
                }
                if !fresh || !matches!(op.action, OpType::Put(_) | OpType::Make(ObjType::Map)) {
                    return deny(format!("{container} are written once"));
                }
                self.record_field(op, field)
            }
            (["comments", _, "reactions"], Some(key)) => {
                if key.rsplit_once(' ').map(|(_, member)| member) != Some(self.writer) {
                    return deny("a reaction names the member who made it");
                }
                Ok(())
            }
            // The workspace: each member writes only their own entry.
            (["members"], Some(member)) => {
                if member != self.writer || !matches!(op.action, OpType::Make(ObjType::Map)) {
                    return deny("each member writes only their own entry");
                }
                // Made once: a new entry over the old one would drop `removed` and `admin`.
                if !fresh {
                    return deny("a member entry is made once, never replaced");
                }
                Ok(())
            }
            // The creator removes a member by marking their entry, and nothing else there.
            (["members", member], Some("removed"))
                if *member != self.writer
                    && root_str(self.doc, "creator").as_deref() == Some(self.writer)
                    && matches!(&op.action, OpType::Put(v) if v.as_i64().is_some()) =>
            {
                Ok(())
            }
            (["members", _], Some("removed")) => {
                deny("only the workspace's creator removes members")
            }
            // The creator names (and unnames) the admins who may change the norms.
            (["members", member], Some("admin"))
                if *member != self.writer
                    && root_str(self.doc, "creator").as_deref() == Some(self.writer)
                    && (matches!(&op.action, OpType::Put(v) if v.as_i64().is_some())
                        || matches!(op.action, OpType::Delete)) =>
            {
                Ok(())
            }
            (["members", _], Some("admin")) => deny("only the workspace's creator names admins"),
            // A revocation stands, and a device's entry stays (revoke it instead).
            (["members", _, "devices", _], Some("revoked" | "lock"))
                if matches!(op.action, OpType::Delete) =>
            {
                deny("a device's revocation is never taken back")
            }
            (["members", _, "devices"], Some(_)) if matches!(op.action, OpType::Delete) => {
                deny("a device's entry is never deleted: revoke the device instead")
            }
            (["members", member, ..], _) => {
                if *member != self.writer {
                    return deny("each member writes only their own entry");
                }
                Ok(())
            }
            // The norms: the creator's and the admins' to change.
            (["norms", ..], _) if !self.may_set_norms() => {
                deny("only the workspace's creator and its admins change the norms, the ladder and the shared relays")
            }
            (["norms"], Some("levels"))
                if matches!(op.action, OpType::Make(ObjType::Map)) && fresh =>
            {
                Ok(())
            }
            (["norms"], Some("ladder")) if matches!(op.action, OpType::Make(ObjType::List)) => {
                Ok(())
            }
            (["norms"], Some("relays")) if matches!(op.action, OpType::Make(ObjType::List)) => {
                Ok(())
            }
            (["norms", "levels"], Some(_)) if matches!(op.action, OpType::Put(_)) => Ok(()),
            (["norms", "ladder" | "relays"], None) => Ok(()),
            (["templates"], Some(_)) if matches!(op.action, OpType::Make(ObjType::List)) => Ok(()),
            (["templates", _], None) => Ok(()),
            _ => deny(format!(
                "nothing may be written at {}",
                describe(&path, key)
            )),
        }
        .and_then(|()| self.kind_allows(&path))
        .and_then(|()| self.not_final(&path, key))
    }

    /// A decided proposal's title and sections are final: a change whose history holds the
    /// decision may not edit them (one made without seeing it is kept, and shown as a late
    /// edit beside the decided text). Judged at the change's own dependencies, so every
    /// replica decides alike whatever order changes arrive in.
    fn not_final(&self, path: &[&str], key: Option<&str>) -> Verdict {
        let text = match (path, key) {
            ([], Some(key)) => key == "title",
            ([first, ..], _) => matches!(*first, "sections" | "order" | "deciders"),
            _ => false,
        };
        if self.kind != Kind::Proposal || !text || self.first {
            return Ok(());
        }
        let decided = *self.decisions.get_or_init(|| has_decisions(self.doc))
            && *self
                .text_final
                .get_or_init(|| crate::proposal::text_is_final(self.doc, self.change.deps()));
        if decided {
            return deny(
                "the proposal was decided before this change: its title, sections and deciders are final",
            );
        }
        Ok(())
    }

    fn kind_allows(&self, path: &[&str]) -> Verdict {
        let workspace_only = matches!(path.first(), Some(&"members" | &"norms" | &"templates"));
        if workspace_only != (self.kind == Kind::Workspace) && !path.is_empty() {
            return deny(format!(
                "{} does not belong in a {}",
                path[0],
                self.kind.as_str()
            ));
        }
        Ok(())
    }

    fn root(&self, op: &Op, key: &str) -> Verdict {
        if self.kind == Kind::Workspace && key == "name" && matches!(op.action, OpType::Put(_)) {
            return Ok(());
        }
        if COLLABORATIVE.contains(&key) && key != "name" {
            return match op.action {
                OpType::Put(_) if self.kind != Kind::Workspace => Ok(()),
                _ => deny(format!("`{key}` is a value, not deleted")),
            };
        }
        if IDENTITY.contains(&key)
            || CONTAINERS.contains(&key)
            || AUTHOR_TEXT.contains(&key)
            || key == "norms"
        {
            if self.first && op.pred.is_empty() && !matches!(op.action, OpType::Delete) {
                if key == "author"
                    && !matches!(&op.action, OpType::Put(v) if v.as_str() == Some(self.writer))
                {
                    return deny("a document's author is the member who creates it");
                }
                if AUTHOR_TEXT.contains(&key) && !matches!(op.action, OpType::Make(ObjType::Text)) {
                    return deny(format!("`{key}` is text"));
                }
                return Ok(());
            }
            return deny(format!(
                "`{key}` is written only when the document is created"
            ));
        }
        deny(format!(
            "`{key}` is not a field of a {}",
            self.kind.as_str()
        ))
    }

    /// Whether the writer may change the norms: the creator, or a member the creator named
    /// admin, as the change's own history shows it (so every replica judges alike).
    fn may_set_norms(&self) -> bool {
        root_str(self.doc, "creator").as_deref() == Some(self.writer)
            || crate::workspace::is_admin(
                crate::doc::View::at(self.doc, self.change.deps()),
                self.writer,
            )
    }

    fn by_author(&self, what: &str) -> Verdict {
        if self.author == Some(self.writer) {
            Ok(())
        } else {
            deny(format!("only the document's author changes {what}"))
        }
    }

    /// Fields of entries, comments and asks that name their author or context must be true.
    fn record_field(&self, op: &Op, field: &str) -> Verdict {
        let value = match &op.action {
            OpType::Put(value) => value.as_str().map(str::to_string),
            _ => None,
        };
        match field {
            "by" if value.as_deref() != Some(self.writer) => {
                deny("`by` must name the change's own author")
            }
            "heads" => {
                // The heads the author saw are the change's dependencies, give or take the
                // author's own previous change, which automerge may list or leave implicit.
                let heads: Vec<String> = value
                    .unwrap_or_default()
                    .split(',')
                    .filter(|h| !h.is_empty())
                    .map(str::to_string)
                    .collect();
                let own_previous = |head: &String| -> bool {
                    let Ok(hash) = head.parse::<automerge::ChangeHash>() else {
                        return false;
                    };
                    self.doc.get_change_meta_by_hash(&hash).is_some_and(|c| {
                        *c.actor == *self.change.actor_id() && c.seq + 1 == self.change.seq()
                    })
                };
                // An empty context would be the empty document: no deciders, no concerns.
                if heads.is_empty() {
                    return deny("`heads` must name the document heads the change was made on");
                }
                let deps: Vec<String> = self.change.deps().iter().map(|d| d.to_string()).collect();
                let missing = deps.iter().filter(|d| !heads.contains(d));
                let extra = heads.iter().filter(|h| !deps.contains(h));
                if !missing.chain(extra).all(own_previous) {
                    return deny("`heads` must be the document heads the change was made on");
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

fn describe(path: &[&str], key: Option<&str>) -> String {
    let mut parts: Vec<String> = path
        .iter()
        .map(|p| crate::id::prefix(p, 16).to_string())
        .collect();
    if let Some(key) = key {
        parts.push(crate::id::prefix(key, 16).to_string());
    }
    if parts.is_empty() {
        "the root".into()
    } else {
        parts.join(".")
    }
}

#[cfg(test)]
mod tests {
    use automerge::transaction::Transactable;
    use ed25519_dalek::SigningKey;

    use super::*;
    use crate::id::Id;

    /// A thread by Ana, her comment on it, then Bo rewriting that comment's body.
    fn thread_with_forged_comment() -> (Automerge, Vec<Change>) {
        let (ana, bo) = (
            SigningKey::from_bytes(&[1; 32]),
            SigningKey::from_bytes(&[2; 32]),
        );
        let ana_id = hex::encode(ana.verifying_key().to_bytes());
        let mut doc = Automerge::new();
        doc.set_actor(identity::actor_id(&ana, &[0; 8]));
        let thread = crate::thread::NewThread {
            id: Id([7; 16]),
            workspace: Id([8; 16]),
            title: "Release".into(),
            body: "When?".into(),
            asks: vec![],
            urgency: "normal".into(),
            author: ana_id.clone(),
            at: 1,
        };
        let mut tx = doc.transaction();
        crate::thread::create(&mut tx, &thread).unwrap();
        tx.commit();
        let mut tx = doc.transaction();
        crate::discussion::put_comment(&mut tx, "c1", None, &ana_id, 2, "Friday").unwrap();
        tx.commit();
        doc.set_actor(identity::actor_id(&bo, &[0; 8]));
        let comment = crate::discussion::comment_obj(crate::doc::View::now(&doc), "c1").unwrap();
        let mut tx = doc.transaction();
        tx.put(&comment, "body", "Monday").unwrap();
        tx.commit();
        let changes = doc.get_changes(&[]);
        (doc, changes)
    }

    #[test]
    fn a_batch_is_judged_as_its_changes_are_one_by_one() {
        let (doc, changes) = thread_with_forged_comment();
        let first = |c: &Change| c.deps().is_empty();
        for (i, change) in changes.iter().enumerate() {
            let alone = check_change(&doc, Kind::Thread, change, first(change));
            assert_eq!(alone.is_ok(), i < 2, "change {i} alone: {alone:?}");
        }
        check_changes(&doc, Kind::Thread, &changes[..2], first, None).unwrap();
        let error = check_changes(&doc, Kind::Thread, &changes, first, None).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("only its author writes inside one of the comments")
                && error
                    .to_string()
                    .contains(&changes[2].hash().to_string()[..12]),
            "{error:#}"
        );
        // A second document creation is refused inside a batch as it is alone.
        let error = check_changes(&doc, Kind::Thread, &changes[..2], |_| false, None).unwrap_err();
        assert!(error.to_string().contains("claims to start"), "{error:#}");
    }
}
