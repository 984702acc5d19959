//! `meridian search`: its arguments, the index brought up to date, the query, the hits.

use std::collections::BTreeMap;

use anyhow::Result;
use serde_json::{Value as Json, json};

use super::{Out, Tone};
use crate::id::Id;
use crate::node::Node;
use crate::search::{Filter, Hit, Search};
use crate::store::WorkspaceRecord;

/// What `search` was given.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// What to look for.
    #[arg(required_unless_present = "reindex")]
    pub query: Option<String>,
    /// Only documents of this kind: proposal, thread or update.
    #[arg(long, value_name = "KIND")]
    pub kind: Option<String>,
    /// Only text this member wrote.
    #[arg(long, value_name = "NAME")]
    pub author: Option<String>,
    /// Only documents in this state (open, accepted, resolved, …).
    #[arg(long, value_name = "STATE")]
    pub state: Option<String>,
    /// Only text written since DATE, or a duration ago (`2w`).
    #[arg(long, value_name = "DATE|DURATION")]
    pub since: Option<String>,
    /// At most N documents.
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub limit: usize,
    /// Build the index again from every document.
    #[arg(long)]
    pub reindex: bool,
}

/// Runs `meridian search`.
pub fn search(node: &Node, selector: Option<&str>, args: Args, out: &Out) -> Result<()> {
    let workspaces: BTreeMap<Id, WorkspaceRecord> = node.workspaces()?.into_iter().collect();
    if workspaces.is_empty() {
        crate::fail!(
            Usage,
            "this node belongs to no workspace yet: `meridian workspace create NAME` or `meridian join CODE`"
        );
    }
    let index = Search::open(node.home())?;
    if args.reindex {
        let indexed = index.rebuild(node)?;
        // With a query, the search's own output follows.
        if args.query.is_none() {
            let bytes = index.size();
            out.done(json!({ "indexed": indexed, "bytes": bytes }))?;
            said!(
                out,
                "Indexed {indexed} document{} of {} workspace{} ({} KiB in {}).",
                if indexed == 1 { "" } else { "s" },
                workspaces.len(),
                if workspaces.len() == 1 { "" } else { "s" },
                bytes.div_ceil(1024),
                node.home().join(crate::search::DIR).display()
            );
            return Ok(());
        }
    }
    let Some(query) = args.query.as_deref() else {
        crate::fail!(Usage, "say what to look for: `meridian search WORDS`");
    };
    let workspace = match selector {
        Some(selector) => Some(node.workspace(Some(selector))?.0),
        None => None,
    };
    let by = match &args.author {
        None => Vec::new(),
        Some(name) => {
            let ids: Vec<String> = workspaces
                .iter()
                .filter(|(id, _)| workspace.is_none_or(|w| w == **id))
                .filter_map(|(_, r)| {
                    r.state
                        .find_active(std::slice::from_ref(name), "searched for")
                        .ok()
                })
                .flatten()
                .collect();
            if ids.is_empty() {
                crate::fail!(
                    NotFound,
                    "nobody named `{name}` is a member{}: `meridian member list` shows who is",
                    if workspace.is_some() {
                        " of this workspace"
                    } else {
                        " of your workspaces"
                    }
                );
            }
            ids
        }
    };
    let filter = Filter {
        workspace,
        kind: args
            .kind
            .as_deref()
            .map(super::inbox::parse_kind)
            .transpose()?,
        state: args.state.map(|s| s.trim().to_ascii_lowercase()),
        by,
        since: args
            .since
            .as_deref()
            .map(|s| crate::norms::parse_past(s, crate::node::now(), &out.tz))
            .transpose()?
            .map(|t| t.as_millisecond()),
    };
    // Another search bringing the index up to date holds its lock: read it as it is.
    if let Err(e) = index.catch_up(node) {
        if e.downcast_ref::<crate::search::Busy>().is_none() {
            return Err(e);
        }
        warn!(
            out,
            "note: another meridian process is updating the search index; the newest edits may be missing"
        );
    }
    let hits = index.query(query, &filter, args.limit)?;
    let person = |hit: &Hit, member: &str| -> (String, Json) {
        let name = workspaces.get(&hit.workspace).map_or_else(
            || crate::id::prefix(member, 8).to_string(),
            |r| r.state.name_of(member),
        );
        let json = json!({ "id": member, "name": name });
        (name, json)
    };
    if out.json {
        let list: Vec<Json> = hits
            .iter()
            .map(|hit| {
                json!({
                    "id": hit.doc.hex(), "kind": hit.kind.as_str(), "title": hit.title,
                    "state": hit.state,
                    "workspace": {
                        "id": hit.workspace.hex(),
                        "name": workspaces.get(&hit.workspace).map(|r| r.name.as_str()),
                    },
                    "score": hit.score, "part": hit.what, "by": person(hit, &hit.by).1,
                    "time": out.rfc3339(hit.at), "line": hit.line,
                    "highlights": hit.highlighted.iter().map(|r| [r.start, r.end]).collect::<Vec<_>>(),
                    "matches": hit.matches,
                })
            })
            .collect();
        return out.print_json(&json!(list));
    }
    if hits.is_empty() {
        say!(
            out,
            "Nothing matches `{query}`{}.",
            if filter.kind.is_some()
                || filter.state.is_some()
                || !filter.by.is_empty()
                || filter.since.is_some()
            {
                " with those filters"
            } else {
                ""
            }
        );
        return Ok(());
    }
    let several = workspace.is_none() && workspaces.len() > 1;
    let width = out.width(100).unwrap_or(100).clamp(40, 160);
    for (i, hit) in hits.iter().enumerate() {
        if i > 0 {
            say!(out);
        }
        let mut head = format!(
            "{}  {}  {}  {}",
            out.paint(Tone::Id, &hit.doc.short()),
            hit.kind.as_str(),
            out.paint(super::read::state_tone(&hit.state), &hit.state),
            out.paint(Tone::Heading, &hit.title),
        );
        if several && let Some(record) = workspaces.get(&hit.workspace) {
            head.push_str(&out.paint(Tone::Dim, &format!("  ({})", record.name)));
        }
        say!(out, "{head}");
        let mut byline = format!(
            "{}, {}, {}",
            hit.what,
            person(hit, &hit.by).0,
            out.time(hit.at)
        );
        match hit.matches {
            0 | 1 => {}
            2 => byline.push_str(" · 1 more match"),
            n => byline.push_str(&format!(" · {} more matches", n - 1)),
        }
        say!(out, "  {}", out.paint(Tone::Dim, &byline));
        say!(
            out,
            "  {}",
            excerpt(out, &hit.line, &hit.highlighted, width - 4)
        );
    }
    Ok(())
}

/// The matched line, cut to `width` characters around its first match, matches in bold.
fn excerpt(out: &Out, line: &str, highlighted: &[std::ops::Range<usize>], width: usize) -> String {
    let line = line.trim_end();
    let chars: Vec<(usize, char)> = line.char_indices().collect();
    // Where the window starts: a third of the width before the first match.
    let first = highlighted.first().map_or(0, |r| r.start);
    let first_char = chars.iter().position(|(b, _)| *b >= first).unwrap_or(0);
    let start_char = if chars.len() <= width {
        0
    } else {
        first_char
            .saturating_sub(width / 3)
            .min(chars.len() - width)
    };
    let end_char = (start_char + width).min(chars.len());
    let byte = |c: usize| chars.get(c).map_or(line.len(), |(b, _)| *b);
    let (start, end) = (byte(start_char), byte(end_char));
    let mut text = String::new();
    if start > 0 {
        text.push('…');
    }
    let mut at = start;
    for r in highlighted
        .iter()
        .filter(|r| r.start >= start && r.end <= end)
    {
        let whole = line.is_char_boundary(r.start) && line.is_char_boundary(r.end);
        if r.start < at || r.start >= r.end || !whole {
            continue;
        }
        text.push_str(&line[at..r.start]);
        text.push_str(&out.paint(Tone::Heading, &line[r.start..r.end]));
        at = r.end;
    }
    text.push_str(&line[at..end]);
    if end < line.len() {
        text.push('…');
    }
    text
}
