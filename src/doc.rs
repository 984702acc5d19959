//! Reading and writing automerge documents: a read view that can look at any point in
//! history, and the fields every Meridian document has at its root.
//!
//! Reads never recurse over a document's structure: they follow known paths, so a hostile
//! document nested thousands of levels deep costs nothing here (see `ingest` for the check).

use automerge::iter::DocItem;
use automerge::transaction::Transactable;
use automerge::{
    Automerge, ChangeHash, ObjId, ObjType, ROOT, ReadDoc, ScalarValue, ScalarValueRef, Value,
    ValueRef,
};
use serde::{Deserialize, Serialize};

/// What a document is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Members, norms and templates of a workspace.
    Workspace,
    /// An RFC, ADR, decision or custom-template proposal.
    Proposal,
    /// A discussion thread.
    Thread,
    /// A status update.
    Update,
}

impl Kind {
    /// The name stored in documents and shown to people.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Workspace => "workspace",
            Kind::Proposal => "proposal",
            Kind::Thread => "thread",
            Kind::Update => "update",
        }
    }

    /// Parses a stored kind name.
    pub fn parse(text: &str) -> Option<Kind> {
        match text {
            "workspace" => Some(Kind::Workspace),
            "proposal" => Some(Kind::Proposal),
            "thread" => Some(Kind::Thread),
            "update" => Some(Kind::Update),
            _ => None,
        }
    }
}

/// A read-only look at a document, now or at some heads in its past.
#[derive(Clone, Copy)]
pub struct View<'a> {
    /// The document.
    pub doc: &'a Automerge,
    /// `None` for the current state.
    pub heads: Option<&'a [ChangeHash]>,
}

impl<'a> View<'a> {
    /// The document as it is now.
    pub fn now(doc: &'a Automerge) -> View<'a> {
        View { doc, heads: None }
    }

    /// The document as it was at `heads`.
    pub fn at(doc: &'a Automerge, heads: &'a [ChangeHash]) -> View<'a> {
        View {
            doc,
            heads: Some(heads),
        }
    }

    /// The winning value at `key`.
    pub fn get(&self, obj: &ObjId, key: &str) -> Option<(Value<'a>, ObjId)> {
        match self.heads {
            Some(heads) => self.doc.get_at(obj, key, heads),
            None => self.doc.get(obj, key),
        }
        .ok()
        .flatten()
    }

    /// Every concurrent value at `key` (more than one is a conflict).
    pub fn get_all(&self, obj: &ObjId, key: &str) -> Vec<(Value<'a>, ObjId)> {
        match self.heads {
            Some(heads) => self.doc.get_all_at(obj, key, heads),
            None => self.doc.get_all(obj, key),
        }
        .unwrap_or_default()
    }

    /// A string field, or `None` when absent or of another type.
    pub fn str(&self, obj: &ObjId, key: &str) -> Option<String> {
        match self.get(obj, key)? {
            (Value::Scalar(s), _) => match s.as_ref() {
                ScalarValue::Str(s) => Some(s.to_string()),
                _ => None,
            },
            (Value::Object(ObjType::Text), id) => self.text_of(&id),
            _ => None,
        }
    }

    /// A string field, or the empty string.
    pub fn string(&self, obj: &ObjId, key: &str) -> String {
        self.str(obj, key).unwrap_or_default()
    }

    /// An integer field.
    pub fn int(&self, obj: &ObjId, key: &str) -> Option<i64> {
        match self.get(obj, key)? {
            (Value::Scalar(s), _) => match s.as_ref() {
                ScalarValue::Int(i) | ScalarValue::Timestamp(i) => Some(*i),
                ScalarValue::Uint(u) => i64::try_from(*u).ok(),
                _ => None,
            },
            _ => None,
        }
    }

    /// A bytes field.
    pub fn bytes(&self, obj: &ObjId, key: &str) -> Option<Vec<u8>> {
        match self.get(obj, key)? {
            (Value::Scalar(s), _) => match s.as_ref() {
                ScalarValue::Bytes(b) => Some(b.clone()),
                _ => None,
            },
            _ => None,
        }
    }

    /// A boolean field (absent is false).
    pub fn bool(&self, obj: &ObjId, key: &str) -> bool {
        matches!(self.get(obj, key), Some((Value::Scalar(s), _)) if matches!(s.as_ref(), ScalarValue::Boolean(true)))
    }

    /// The map object at `key`.
    pub fn map(&self, obj: &ObjId, key: &str) -> Option<ObjId> {
        match self.get(obj, key)? {
            (Value::Object(ObjType::Map), id) => Some(id),
            _ => None,
        }
    }

    /// The text object at `key`.
    pub fn text_obj(&self, obj: &ObjId, key: &str) -> Option<ObjId> {
        match self.get(obj, key)? {
            (Value::Object(ObjType::Text), id) => Some(id),
            _ => None,
        }
    }

    /// The content of a text object.
    pub fn text_of(&self, obj: &ObjId) -> Option<String> {
        match self.heads {
            Some(heads) => self.doc.text_at(obj, heads),
            None => self.doc.text(obj),
        }
        .ok()
    }

    /// The keys of a map, sorted.
    pub fn keys(&self, obj: &ObjId) -> Vec<String> {
        match self.heads {
            Some(heads) => self.doc.keys_at(obj, heads).collect(),
            None => self.doc.keys(obj).collect(),
        }
    }

    /// The string items of the list at `key`.
    pub fn str_list(&self, obj: &ObjId, key: &str) -> Vec<String> {
        let Some((Value::Object(ObjType::List), list)) = self.get(obj, key) else {
            return Vec::new();
        };
        let len = match self.heads {
            Some(heads) => self.doc.length_at(&list, heads),
            None => self.doc.length(&list),
        };
        (0..len)
            .filter_map(|i| {
                let value = match self.heads {
                    Some(heads) => self.doc.get_at(&list, i, heads),
                    None => self.doc.get(&list, i),
                };
                match value.ok().flatten()? {
                    (Value::Scalar(s), _) => s.as_str().map(str::to_string),
                    _ => None,
                }
            })
            .collect()
    }

    /// Every record of the map at `key` that is itself a map (a comment, an entry), with
    /// its fields, in one walk over the map and what is under it: one seek per field
    /// through automerge's columns costs fifteen times more. Fields named in `children`
    /// that hold maps come with their keys (a comment's reactions); deeper objects are
    /// not read.
    pub fn records(&self, obj: &ObjId, key: &str, children: &[&str]) -> Vec<Record> {
        let Some(map) = self.map(obj, key) else {
            return Vec::new();
        };
        let mut records: Vec<Record> = Vec::new();
        let mut record_of: std::collections::HashMap<ObjId, usize> = Default::default();
        let mut child_of: std::collections::HashMap<ObjId, (usize, usize)> = Default::default();
        for item in self.doc.iter_at(&map, self.heads) {
            let DocItem::Map(field) = item.item else {
                continue;
            };
            if *item.obj == map {
                if field.value == ValueRef::Object(ObjType::Map) {
                    record_of.insert(field.id(), records.len());
                    records.push(Record {
                        id: field.key.into_owned(),
                        fields: Vec::new(),
                    });
                }
            } else if let Some(&r) = record_of.get(&*item.obj) {
                let value = match field.value {
                    ValueRef::Scalar(ScalarValueRef::Str(s)) => Field::Str(s.into_owned()),
                    ValueRef::Scalar(ScalarValueRef::Int(i) | ScalarValueRef::Timestamp(i)) => {
                        Field::Int(i)
                    }
                    ValueRef::Scalar(ScalarValueRef::Uint(u)) => {
                        i64::try_from(u).map_or(Field::Other, Field::Int)
                    }
                    ValueRef::Scalar(ScalarValueRef::Boolean(b)) => Field::Bool(b),
                    // Rare (our writers put strings), so read on its own.
                    ValueRef::Object(ObjType::Text) => {
                        self.text_of(&field.id()).map_or(Field::Other, Field::Str)
                    }
                    ValueRef::Object(ObjType::Map) if children.contains(&&*field.key) => {
                        let fields = &mut records[r].fields;
                        child_of.insert(field.id(), (r, fields.len()));
                        Field::Keys(Vec::new())
                    }
                    _ => Field::Other,
                };
                records[r].fields.push((field.key.into_owned(), value));
            } else if let Some(&(r, f)) = child_of.get(&*item.obj)
                && let Field::Keys(keys) = &mut records[r].fields[f].1
            {
                keys.push(field.key.into_owned());
            }
        }
        records
    }

    /// The root's `kind`.
    pub fn kind(&self) -> Option<Kind> {
        Kind::parse(&self.str(&ROOT, "kind")?)
    }

    /// The root's `title`.
    pub fn title(&self) -> String {
        self.string(&ROOT, "title")
    }
}

/// A map of a document read whole by [`View::records`].
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    /// Its key in the map that holds it.
    pub id: String,
    /// Its fields, in key order: the winning value of each.
    pub fields: Vec<(String, Field)>,
}

/// A field of a [`Record`].
#[derive(Clone, Debug, PartialEq)]
pub enum Field {
    /// A string, or the content of a text object.
    Str(String),
    /// An integer or timestamp.
    Int(i64),
    /// A boolean.
    Bool(bool),
    /// The keys of a child map the caller asked for.
    Keys(Vec<String>),
    /// Anything else.
    Other,
}

impl Record {
    fn field(&self, key: &str) -> Option<&Field> {
        self.fields.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// A string field, as [`View::str`] reads it.
    pub fn str(&self, key: &str) -> Option<&str> {
        match self.field(key)? {
            Field::Str(s) => Some(s),
            _ => None,
        }
    }

    /// A string field, or the empty string.
    pub fn string(&self, key: &str) -> String {
        self.str(key).unwrap_or_default().to_string()
    }

    /// An integer field, as [`View::int`] reads it.
    pub fn int(&self, key: &str) -> Option<i64> {
        match self.field(key)? {
            Field::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// A boolean field (absent is false), as [`View::bool`] reads it.
    pub fn bool(&self, key: &str) -> bool {
        matches!(self.field(key), Some(Field::Bool(true)))
    }

    /// The keys of the child map at `key`, if it was asked for and is a map.
    pub fn keys(&self, key: &str) -> Option<&[String]> {
        match self.field(key)? {
            Field::Keys(keys) => Some(keys),
            _ => None,
        }
    }
}

/// Puts a list of strings at `key`, replacing what was there.
pub fn put_str_list<T: Transactable>(
    tx: &mut T,
    obj: &ObjId,
    key: &str,
    items: &[String],
) -> Result<(), automerge::AutomergeError> {
    let list = tx.put_object(obj, key, ObjType::List)?;
    for (i, item) in items.iter().enumerate() {
        tx.insert(&list, i, item.as_str())?;
    }
    Ok(())
}

/// Puts a text object at `key` holding `content`.
pub fn put_text<T: Transactable>(
    tx: &mut T,
    obj: &ObjId,
    key: &str,
    content: &str,
) -> Result<ObjId, automerge::AutomergeError> {
    let text = tx.put_object(obj, key, ObjType::Text)?;
    tx.splice_text(&text, 0, 0, content)?;
    Ok(text)
}

/// Gets the map at `key`, creating it if absent.
pub fn ensure_map<T: Transactable + ReadDoc>(
    tx: &mut T,
    obj: &ObjId,
    key: &str,
) -> Result<ObjId, automerge::AutomergeError> {
    match tx.get(obj, key)? {
        Some((Value::Object(ObjType::Map), id)) => Ok(id),
        _ => tx.put_object(obj, key, ObjType::Map),
    }
}

/// Converts a change hash list to hex strings.
pub fn heads_hex(heads: &[ChangeHash]) -> Vec<String> {
    heads.iter().map(|h| h.to_string()).collect()
}

/// Parses hex change hashes, skipping malformed ones (they come from documents).
pub fn parse_heads(items: &[String]) -> Vec<ChangeHash> {
    items.iter().filter_map(|h| h.parse().ok()).collect()
}
