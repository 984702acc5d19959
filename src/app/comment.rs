//! Replies and reactions: a reply to a document, to one comment, or to a concern; editing
//! and deleting one's own comment; reacting and taking a reaction back.

use anyhow::{Context as _, Result};
use serde::Serialize;

use super::Context;
use crate::discussion;
use crate::doc::{Kind, View};
use crate::fail;
use crate::id::{Id, resolve_prefix};
use crate::node::{commit, now_ms};

/// A reply written.
#[derive(Clone, Debug, Serialize)]
pub struct Replied {
    /// The document.
    pub id: Id,
    /// Its kind.
    pub kind: Kind,
    /// Its title.
    pub title: String,
    /// The new comment's id.
    pub comment_id: String,
    /// The comment or concern it answers, if any.
    pub parent: Option<String>,
}

/// Splits `DOC[:COMMENT]`.
pub fn split_target(target: &str) -> (&str, Option<&str>) {
    match target.split_once(':') {
        Some((doc, comment)) => (doc, Some(comment)),
        None => (target, None),
    }
}

/// Replies to a document, or (`DOC:ID`) to one of its comments or concerns.
pub fn reply(cx: &Context, target: &str, body: &str) -> Result<Replied> {
    if body.trim().is_empty() {
        fail!(
            Usage,
            "aborting: the reply is empty, so nothing was written"
        );
    }
    let (doc_prefix, parent_prefix) = split_target(target);
    let (id, summary) = cx.document(doc_prefix)?;
    let me = cx.me.clone();
    let comment_id = Id::random().hex();
    let parent = cx.node.edit(cx.workspace, id, |doc| {
        let view = View::now(doc);
        let parent = match parent_prefix {
            Some(prefix) => Some(answerable(view, prefix)?),
            None => None,
        };
        let mut tx = doc.transaction();
        discussion::put_comment(&mut tx, &comment_id, parent.as_deref(), &me, now_ms(), body)?;
        let first_line = body.lines().next().unwrap_or_default();
        commit(
            tx,
            &format!("reply: {}", first_line.chars().take(60).collect::<String>()),
        );
        Ok(parent)
    })?;
    Ok(Replied {
        id,
        kind: summary.kind,
        title: summary.title,
        comment_id,
        parent,
    })
}

/// The comment or concern a prefix names: what a reply may answer.
fn answerable(view: View<'_>, prefix: &str) -> Result<String> {
    let comments = discussion::comments(view).into_iter().map(|c| c.id);
    let concerns = discussion::entries(view)
        .into_iter()
        .filter(|e| e.kind == "concern")
        .map(|e| e.id);
    resolve_prefix(
        "comment or concern",
        prefix,
        comments.chain(concerns).map(|id| (id.clone(), id)),
    )
}

/// One's own comment, by `DOC:COMMENT`: the document and the comment's full id.
fn own_comment(cx: &Context, target: &str) -> Result<(Id, String)> {
    let (doc_prefix, Some(comment_prefix)) = split_target(target) else {
        fail!(
            Usage,
            "name the comment as DOCUMENT:COMMENT, as `meridian show` lists them"
        );
    };
    let (id, _) = cx.document(doc_prefix)?;
    let doc = cx.node.load(cx.workspace, id)?;
    let comments = discussion::comments(View::now(&doc));
    let comment = resolve_prefix(
        "comment",
        comment_prefix,
        comments.into_iter().map(|c| (c.id.clone(), c)),
    )?;
    if comment.by != cx.me {
        fail!(
            Refused,
            "that comment is {}'s: only its author edits or deletes it",
            cx.name(&comment.by)
        );
    }
    if comment.deleted {
        fail!(NotFound, "that comment was deleted");
    }
    Ok((id, comment.id))
}

/// Replaces the text of one's own comment; the history keeps the earlier text, and others
/// see that it was edited.
pub fn edit(cx: &Context, target: &str, body: &str) -> Result<(Id, String)> {
    if body.trim().is_empty() {
        fail!(
            Usage,
            "aborting: the new text is empty (to remove the comment, use --delete)"
        );
    }
    let (id, comment) = own_comment(cx, target)?;
    cx.node.edit(cx.workspace, id, |doc| {
        let obj = discussion::comment_obj(View::now(doc), &comment)
            .context("the comment is missing from the document")?;
        let mut tx = doc.transaction();
        discussion::put_comment_edit(&mut tx, &obj, Some(body), now_ms())?;
        commit(
            tx,
            &format!("edit comment {}", crate::id::prefix(&comment, 8)),
        );
        Ok(())
    })?;
    Ok((id, comment))
}

/// Deletes one's own comment: its text is gone from the document as it stands (the history
/// keeps it), and replies to it stay.
pub fn delete(cx: &Context, target: &str) -> Result<(Id, String)> {
    let (id, comment) = own_comment(cx, target)?;
    cx.node.edit(cx.workspace, id, |doc| {
        let obj = discussion::comment_obj(View::now(doc), &comment)
            .context("the comment is missing from the document")?;
        let mut tx = doc.transaction();
        discussion::put_comment_edit(&mut tx, &obj, None, now_ms())?;
        commit(
            tx,
            &format!("delete comment {}", crate::id::prefix(&comment, 8)),
        );
        Ok(())
    })?;
    Ok((id, comment))
}

/// Adds (or, with `remove`, takes back) one's reaction to a comment.
pub fn react(cx: &Context, target: &str, emoji: &str, remove: bool) -> Result<(Id, String)> {
    let (doc_prefix, Some(comment_prefix)) = split_target(target) else {
        fail!(
            Usage,
            "react to one comment: give DOCUMENT:COMMENT, as `meridian show` lists them"
        );
    };
    if emoji.trim().is_empty() || emoji.chars().count() > 16 || emoji.contains(' ') {
        fail!(
            Usage,
            "`{emoji}` is not a reaction: give one emoji or a short word without spaces"
        );
    }
    let (id, _) = cx.document(doc_prefix)?;
    let me = cx.me.clone();
    let comment = cx.node.edit(cx.workspace, id, |doc| {
        let view = View::now(doc);
        let comments = discussion::comments(view);
        let comment = resolve_prefix(
            "comment",
            comment_prefix,
            comments.into_iter().map(|c| (c.id.clone(), c)),
        )?;
        let obj = discussion::comment_obj(view, &comment.id).context("the comment vanished")?;
        let mine = comment
            .reactions
            .get(emoji)
            .is_some_and(|who| who.contains(&me));
        let mut tx = doc.transaction();
        if remove {
            if !mine {
                fail!(NotFound, "you have not reacted {emoji} to that comment");
            }
            discussion::remove_reaction(&mut tx, &obj, emoji, &me)?;
            commit(tx, &format!("take back {emoji}"));
        } else {
            if mine {
                fail!(Refused, "you reacted {emoji} to that comment already");
            }
            discussion::put_reaction(&mut tx, &obj, emoji, &me, now_ms())?;
            commit(tx, &format!("react {emoji}"));
        }
        Ok(comment.id)
    })?;
    Ok((id, comment))
}
