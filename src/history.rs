//! Looking back: a document at a revision or date, field-by-field diffs between two points,
//! and the fields where concurrent writes left more than one value.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::Result;
use automerge::{Automerge, ChangeHash, ObjId, ROOT, ScalarValue, Value};
use serde::Serialize;

use crate::discussion;
use crate::doc::{Kind, View};
use crate::id::resolve_prefix;
use crate::proposal;
use crate::update;

/// The heads of a document at a revision (change hash prefix) or at a moment (ms).
pub fn heads_at_rev(doc: &Automerge, rev: &str) -> Result<Vec<ChangeHash>> {
    let hashes = doc.get_changes(&[]).into_iter().map(|c| {
        let hash = c.hash();
        (hash.to_string(), hash)
    });
    Ok(vec![resolve_prefix("revision", rev, hashes)?])
}

/// The heads of the changes made at or before `ms` (by their authors' clocks), keeping only
/// changes whose dependencies are also included.
pub fn heads_at_time(doc: &Automerge, ms: i64) -> Vec<ChangeHash> {
    let mut included: BTreeSet<ChangeHash> = BTreeSet::new();
    let mut depended: BTreeSet<ChangeHash> = BTreeSet::new();
    // `get_changes` returns changes in causal order, so dependencies are seen first.
    for change in doc.get_changes(&[]) {
        if change.timestamp() <= ms && change.deps().iter().all(|d| included.contains(d)) {
            included.insert(change.hash());
            depended.extend(change.deps().iter().copied());
        }
    }
    included.difference(&depended).copied().collect()
}

/// A document flattened to named fields, for diffs, in the order a reader meets them:
/// title and settings, sections (or body, or an update's parts), then entries, comments
/// and requests as the document holds them. `name` turns a member id into a name.
pub fn fields(view: View<'_>, name: &dyn Fn(&str) -> String) -> Vec<(String, String)> {
    let mut fields = Vec::new();
    let mut put = |k: String, v: String| {
        if !v.is_empty() {
            fields.push((k, v));
        }
    };
    put("title".into(), view.title());
    for key in ["urgency", "template", "period"] {
        put(key.into(), view.string(&ROOT, key));
    }
    match view.kind() {
        Some(Kind::Proposal) => {
            for (name, text) in proposal::sections(view) {
                put(format!("section {name}"), text);
            }
            let deciders = view
                .map(&ROOT, "deciders")
                .map(|m| view.keys(&m))
                .unwrap_or_default();
            let deciders: Vec<String> = deciders.iter().map(|d| name(d)).collect();
            put("deciders".into(), deciders.join(", "));
        }
        Some(Kind::Thread) => put("body".into(), view.string(&ROOT, "body")),
        Some(Kind::Update) => {
            for part in update::PARTS {
                put(part.into(), view.string(&ROOT, part));
            }
            put("links".into(), view.str_list(&ROOT, "links").join(", "));
        }
        _ => {}
    }
    for entry in discussion::entries(view) {
        let what = match entry.kind.as_str() {
            "open" | "final-comment" if entry.closes.is_some_and(|c| c <= entry.at) => {
                "comment period closed"
            }
            "open" => "opened for comments",
            "final-comment" => "final comment period",
            "approve" => "approved",
            "unapprove" => "approval taken back",
            "concern" if entry.blocking => "blocking concern",
            "concern" => "concern",
            "resolve-concern" => "concern resolved",
            "accept" => "accepted",
            "reject" => "rejected",
            "withdraw" => "withdrawn",
            "supersede" => "superseded",
            "reopen" => "reopened",
            "resolve" => "resolved",
            "ask" => "asked",
            "decline" => "declined",
            "ack" => "acknowledged",
            other => other,
        };
        let mut text = format!("{what} by {}", name(&entry.by));
        if !entry.message.is_empty() {
            text.push_str(&format!(": {}", entry.message));
        }
        put(format!("entry {}", crate::id::prefix(&entry.id, 8)), text);
    }
    for comment in discussion::comments(view) {
        put(
            format!("comment {}", crate::id::prefix(&comment.id, 8)),
            format!("{}: {}", name(&comment.by), comment.body),
        );
    }
    for ask in discussion::asks(view) {
        put(format!("ask {}", name(&ask.member)), ask.urgency);
    }
    fields
}

/// One changed field.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FieldChange {
    /// The field name.
    pub field: String,
    /// The value before, if it existed.
    pub before: Option<String>,
    /// The value after, if it exists.
    pub after: Option<String>,
}

/// The fields that differ between two flattenings: in the order of `after`, then those
/// only `before` had, in its order.
pub fn diff(before: &[(String, String)], after: &[(String, String)]) -> Vec<FieldChange> {
    let then: BTreeMap<&str, &str> = before
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let now: BTreeMap<&str, &str> = after
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let mut changes: Vec<FieldChange> = after
        .iter()
        .filter(|(k, v)| then.get(k.as_str()) != Some(&v.as_str()))
        .map(|(k, v)| FieldChange {
            field: k.clone(),
            before: then.get(k.as_str()).map(|b| b.to_string()),
            after: Some(v.clone()),
        })
        .collect();
    changes.extend(
        before
            .iter()
            .filter(|(k, _)| !now.contains_key(k.as_str()))
            .map(|(k, v)| FieldChange {
                field: k.clone(),
                before: Some(v.clone()),
                after: None,
            }),
    );
    changes
}

/// A unified line diff of two texts, with `-`/`+` markers.
pub fn text_diff(before: &str, after: &str) -> String {
    let diff = similar::TextDiff::from_lines(before, after);
    let mut out = String::new();
    for change in diff.iter_all_changes() {
        let sign = match change.tag() {
            similar::ChangeTag::Delete => '-',
            similar::ChangeTag::Insert => '+',
            similar::ChangeTag::Equal => ' ',
        };
        out.push(sign);
        out.push_str(change.value());
        if !change.value().ends_with('\n') {
            out.push('\n');
        }
    }
    out
}

/// One of several concurrent values of a field.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Candidate {
    /// The value, as text.
    pub value: String,
    /// The device key (hex) that wrote it.
    pub author: String,
}

/// A field with concurrent values.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Conflict {
    /// The field name, as `resolve` takes it.
    pub field: String,
    /// The values, the one shown first.
    pub values: Vec<Candidate>,
}

/// The fields a person may settle with `resolve`.
pub const RESOLVABLE: [&str; 4] = ["title", "urgency", "template", "period"];

/// Every field with concurrent values, including the lifecycle state.
pub fn conflicts(view: View<'_>) -> Vec<Conflict> {
    let mut conflicts = field_conflicts(view);
    let state = match view.kind() {
        Some(Kind::Proposal) => Some(proposal::state(view)),
        Some(Kind::Thread) => Some(crate::thread::lifecycle(&discussion::entries(view))),
        _ => None,
    };
    if let Some(discussion::State::Conflict { candidates }) = state.map(|l| l.state) {
        let entries = discussion::entries(view);
        conflicts.push(Conflict {
            field: "state".into(),
            values: candidates
                .into_iter()
                .map(|(state, entry)| Candidate {
                    value: state,
                    author: entries
                        .iter()
                        .find(|e| e.id == entry)
                        .map(|e| e.by.clone())
                        .unwrap_or_default(),
                })
                .collect(),
        });
    }
    conflicts
}

/// The fields with concurrent values, leaving out the lifecycle state.
pub fn field_conflicts(view: View<'_>) -> Vec<Conflict> {
    let mut conflicts = Vec::new();
    for field in RESOLVABLE {
        let values = view.get_all(&ROOT, field);
        if values.len() > 1 {
            conflicts.push(Conflict {
                field: field.to_string(),
                values: values
                    .iter()
                    .map(|(v, id)| candidate(view.doc, v, id))
                    .collect(),
            });
        }
    }
    if let Some(sections) = view.map(&ROOT, "sections") {
        for name in view.keys(&sections) {
            let values = view.get_all(&sections, &name);
            if values.len() > 1 {
                conflicts.push(Conflict {
                    field: format!("section {name}"),
                    values: values
                        .iter()
                        .map(|(_, id)| Candidate {
                            value: view.text_of(id).unwrap_or_default(),
                            author: writer(id),
                        })
                        .collect(),
                });
            }
        }
    }
    conflicts
}

fn candidate(_doc: &Automerge, value: &Value<'_>, id: &ObjId) -> Candidate {
    let value = match value {
        Value::Scalar(s) => match s.as_ref() {
            ScalarValue::Str(s) => s.to_string(),
            other => other.to_string(),
        },
        Value::Object(t) => format!("({t})"),
    };
    Candidate {
        value,
        author: writer(id),
    }
}

/// The device key that wrote an op, from its id.
fn writer(id: &ObjId) -> String {
    match id {
        ObjId::Id(_, actor, _) => crate::identity::actor_key(actor)
            .map(hex::encode)
            .unwrap_or_else(|| actor.to_hex_string()),
        ObjId::Root => String::new(),
    }
}

/// Checks that `field` can be settled by `resolve`.
pub fn check_resolvable(field: &str) -> Result<()> {
    if RESOLVABLE.contains(&field) || field == "state" || field.starts_with("section ") {
        return Ok(());
    }
    crate::fail!(
        Usage,
        "`{field}` cannot be resolved by value: resolve one of {}, state, or `section NAME`, as `meridian conflicts` names them",
        RESOLVABLE.join(", ")
    )
}
