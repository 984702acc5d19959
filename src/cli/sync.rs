//! `sync`, `daemon`, and the relay set-up that `workspace create` and `join` do.

use anyhow::{Result, bail};
use serde_json::json;

use super::{Ctx, Out, Spinner, Tone, printable};
use crate::app::sync::Synced;
use crate::doc::Kind;
use crate::id::Id;
use crate::node::Node;
use crate::sync::net::{self, RoundReport};
use crate::workspace::WorkspaceState;
use meridian_relay::protocol::RefusedCode;

/// `meridian sync [--relay URL]...`
pub fn sync(ctx: &Ctx, relays: Vec<String>) -> Result<()> {
    let relays = if relays.is_empty() {
        ctx.record.relays.clone()
    } else {
        relays
            .iter()
            .map(|r| net::relay_url(r))
            .collect::<Result<Vec<_>>>()?
    };
    if relays.is_empty() {
        bail!(
            "workspace `{}` lists no relay: add one with `meridian workspace relay add URL`, or pass --relay URL",
            ctx.record.name
        );
    }
    let spinner = Spinner::start(&ctx.out, "Syncing");
    let synced = crate::app::sync::sync(&ctx.node, ctx.workspace, &relays, &mut |p| {
        let mut message = format!("Syncing with {}", p.relay);
        if p.sent + p.received > 0 {
            message.push_str(&format!(": sent {} · received {}", p.sent, p.received));
        }
        spinner.say(message);
    });
    spinner.done();
    let synced = synced?;
    let results = &synced.rounds;
    let refusals: Vec<(&String, &net::RefusedError)> = results
        .iter()
        .filter_map(|(relay, r)| {
            Some((
                relay,
                r.as_ref().err()?.downcast_ref::<net::RefusedError>()?,
            ))
        })
        .collect();
    let state = &ctx.node.workspace(Some(&ctx.workspace.hex()))?.1.state;
    // Scripts get every relay's answer; people get one sentence when every relay refused.
    if ctx.out.json {
        ctx.out.print_json(&json!({
            "sent": synced.sent,
            "received_total": synced.received_total,
            "received": synced.received.iter()
                .map(|h| super::inbox::happened_json(&ctx.out, state, &ctx.me, h))
                .collect::<Vec<_>>(),
            "joined": synced.joined.iter().map(|m| ctx.person(m)).collect::<Vec<_>>(),
            "relays": rounds_list(results, state),
        }))?;
    }
    if refusals.iter().any(|(_, r)| r.code == RefusedCode::Removed) {
        // Revoked by its member (a device added with a code), or its member removed.
        let revoked = ctx
            .record
            .state
            .members
            .iter()
            .flat_map(|m| &m.devices)
            .any(|d| d.key == ctx.node.device_id() && !d.active());
        let by = if revoked || ctx.record.device_proof.is_some() {
            "(revoked by its member, or its member removed by the creator)"
        } else {
            "by its creator"
        };
        crate::fail!(
            Refused,
            "this device was removed from workspace `{}` {by}: relays no longer take its changes, and nothing written here reaches the others (what you wrote before stays with them)",
            ctx.record.name
        );
    }
    if !refusals.is_empty() && refusals.len() == results.len() {
        let why: Vec<String> = refusals
            .iter()
            .map(|(relay, r)| format!("{relay}: {}", r.reason))
            .collect();
        let invite_refused = refusals.iter().all(|(_, r)| {
            matches!(
                r.code,
                RefusedCode::InviteUsed
                    | RefusedCode::InviteExpired
                    | RefusedCode::BadProof
                    | RefusedCode::NotMember
            )
        });
        if invite_refused && !ctx.node.admitted_anywhere(ctx.workspace)? {
            crate::fail!(
                Refused,
                "the relays refused the invite this device joined `{}` with ({}): ask a member for a new code and run `meridian join CODE` with it; this device joins again and keeps what you wrote",
                ctx.record.name,
                why.join("; ")
            );
        }
        crate::fail!(
            Refused,
            "every relay refused this device ({}); your edits wait here until one takes them",
            why.join("; ")
        );
    }
    let failed = results.iter().filter(|(_, r)| r.is_err()).count();
    if !ctx.out.json {
        if ctx.out.verbose {
            print_rounds(&ctx.out, results, state)?;
        } else {
            for (relay, result) in results {
                if let Err(e) = result {
                    warn!(ctx.out, "{relay}: {}", relay_error(relay, e));
                }
            }
        }
        if failed < results.len() {
            tell(&ctx.out, &synced, state, &ctx.me)?;
        }
    }
    if failed == results.len() {
        let unreachable = results.iter().all(|(_, r)| {
            r.as_ref()
                .err()
                .is_some_and(|e| crate::error::kind_of(e) == crate::error::ErrorKind::Unreachable)
        });
        let kind = if unreachable {
            crate::error::ErrorKind::Unreachable
        } else {
            crate::error::ErrorKind::Other
        };
        return Err(crate::error::failure(
            kind,
            "could not sync with any relay; your edits wait here until one answers (`meridian sync` again later)",
        ));
    } else if failed > 0 {
        bail!(
            "could not sync with {failed} of {} relays (the others are up to date)",
            results.len()
        );
    }
    Ok(())
}

/// Why a relay's round failed, after its URL: without the URL again, and a relay that is
/// not answering said in words, with what to check.
fn relay_error(relay: &str, error: &anyhow::Error) -> String {
    if crate::error::kind_of(error) == crate::error::ErrorKind::Unreachable {
        return "not answering (is it running, and is the address right?); your edits wait here until it does".to_string();
    }
    let text = crate::error::describe(error);
    if let Some(rest) = text.strip_prefix(&format!("cannot connect to {relay}: ")) {
        return format!("cannot connect: {rest}");
    }
    // After the URL, "URL's certificate …" reads "its certificate …".
    if let Some(rest) = text.strip_prefix(&format!("{relay}'s ")) {
        return format!("its {rest}");
    }
    text.strip_prefix(&format!("{relay} "))
        .map(str::to_string)
        .unwrap_or(text)
}

/// How many documents' news a sync lists before pointing at the inbox.
const RECEIVED_SHOWN: usize = 10;

/// What a sync did, in the person's words (nothing with `-q` but what was refused): `Sent 3 edits · received 2 replies on "Release
/// date?"`, then each document that changed with what happened in it.
fn tell(out: &Out, synced: &Synced, state: &WorkspaceState, me: &str) -> Result<()> {
    use crate::app::sync::{Gist, gist};
    let late: usize = synced.ok().map(|r| r.refused_late).sum();
    if late > 0 {
        warn!(
            out,
            "Refused {late} {} removed members wrote after their removal: no member's node takes them",
            plural(late, "change", "changes")
        );
    }
    if synced.up_to_date() {
        let held: usize = synced
            .ok()
            .map(|r| r.held - r.refused_late.min(r.held))
            .sum();
        if held == 0 {
            said!(out, "{}", out.paint(Tone::Good, "Up to date"));
        } else {
            said!(
                out,
                "Up to date, but for {held} {} still on the way: they apply when what they wait for arrives: the edits before them, or the key they are sealed under",
                plural(held, "change", "changes")
            );
        }
        return Ok(());
    }
    let mut parts = Vec::new();
    if synced.sent > 0 {
        parts.push(format!(
            "Sent {} {}",
            synced.sent,
            plural(synced.sent, "edit", "edits")
        ));
    }
    let quoted = |title: &str| format!("\"{}\"", printable(&shorten(title, 40)));
    let phrases: Vec<String> = synced
        .received
        .iter()
        .map(|h| match gist(h) {
            Gist::New(kind) => format!("a new {} {}", kind.as_str(), quoted(&h.title)),
            Gist::Decision => format!("a decision on {}", quoted(&h.title)),
            Gist::Replies(n) => format!(
                "{n} {} on {}",
                plural(n, "reply", "replies"),
                quoted(&h.title)
            ),
            Gist::Approvals(n) => format!(
                "{n} {} of {}",
                plural(n, "approval", "approvals"),
                quoted(&h.title)
            ),
            Gist::Changes => format!("changes to {}", quoted(&h.title)),
        })
        .collect();
    let received = match (phrases.len(), synced.received_total) {
        (0, 0) => Vec::new(),
        (1..=3, total) if total == phrases.len() => phrases,
        (_, total) => vec![format!("news in {total} documents")],
    };
    if !received.is_empty() {
        let verb = if parts.is_empty() {
            "Received"
        } else {
            "received"
        };
        parts.push(format!("{verb} {}", received.join(", ")));
    }
    if !synced.joined.is_empty() {
        let names: Vec<String> = synced.joined.iter().map(|m| state.name_of(m)).collect();
        parts.push(format!("{} joined", names_and(&names)));
    }
    if parts.is_empty() {
        // Changes came in, but only from this person's other devices.
        let applied = synced.applied();
        parts.push(format!(
            "Received {applied} {} from your other devices",
            plural(applied, "edit", "edits")
        ));
    }
    said!(out, "{}", parts.join(" · "));
    for h in synced.received.iter().take(RECEIVED_SHOWN) {
        let words: Vec<String> = h
            .events
            .iter()
            .map(|e| {
                let text = super::inbox::event_text(state, me, h.kind, e);
                match e {
                    // A proposal new here may have been decided before it arrived.
                    crate::inbox::Event::Created { .. }
                        if h.kind == Kind::Proposal && h.state != "conflict" =>
                    {
                        format!("{text} ({})", h.state)
                    }
                    _ => text,
                }
            })
            .collect();
        let mut words = if words.is_empty() {
            format!("changed by {}", state.name_of(&h.last_author))
        } else {
            words.join(" · ")
        };
        if h.state == "conflict" {
            words.push_str(&format!(
                " · {}: decided two ways at once (`meridian show {}` says how to settle it)",
                out.paint(Tone::Alarm, "CONFLICT"),
                h.id.short()
            ));
        }
        said!(
            out,
            "  {} {} {}: {words}",
            out.paint(Tone::Id, &h.id.short()),
            h.kind.as_str(),
            quoted(&h.title)
        );
    }
    let shown = synced.received.len().min(RECEIVED_SHOWN);
    if synced.received_total > shown {
        said!(
            out,
            "  … and {} more: `meridian inbox` lists them",
            synced.received_total - shown
        );
    }
    for report in synced.ok() {
        for rejected in &report.rejected {
            warn!(
                out,
                "Refused an edit by {} to {}: {}",
                state.name_of(&rejected.signer),
                crate::id::prefix(&rejected.doc, 8),
                rejected.reason
            );
        }
        for error in &report.errors {
            warn!(out, "{} refused a request: {error}", report.relay);
        }
    }
    Ok(())
}

/// `Ana`, `Ana and Bo`, `Ana, Bo and Cy`.
pub(crate) fn names_and(names: &[String]) -> String {
    match names {
        [] => String::new(),
        [one] => one.clone(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    }
}

fn plural<'a>(n: usize, one: &'a str, many: &'a str) -> &'a str {
    if n == 1 { one } else { many }
}

/// `text` cut to `width` characters, with `…` when cut.
fn shorten(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        text.to_string()
    } else {
        let cut: String = text.chars().take(width - 1).collect();
        format!("{}…", cut.trim_end())
    }
}

/// Prints each relay's round; returns how many failed.
pub fn print_rounds(
    out: &Out,
    results: &[(String, Result<RoundReport>)],
    state: &crate::workspace::WorkspaceState,
) -> Result<usize> {
    let failed = results.iter().filter(|(_, r)| r.is_err()).count();
    if out.json {
        out.print_json(&rounds_list(results, state))?;
        return Ok(failed);
    }
    for (relay, result) in results {
        match result {
            Ok(report) => {
                say!(
                    out,
                    "{relay}: pushed {}, pulled {}: {} change(s) to {} document(s)",
                    report.pushed,
                    report.pulled,
                    report.applied,
                    report.documents.len()
                );
                if report.held > report.refused_late {
                    say!(
                        out,
                        "  {} change(s) held until what they depend on arrives",
                        report.held - report.refused_late
                    );
                }
                if report.refused_late > 0 {
                    say!(
                        out,
                        "  {} change(s) refused: written by removed members after their removal",
                        report.refused_late
                    );
                }
                for error in &report.errors {
                    say!(out, "  the relay refused a request: {error}");
                }
                for rejected in &report.rejected {
                    say!(
                        out,
                        "  REJECTED from {}: {}",
                        state.name_of(&rejected.signer),
                        rejected.reason
                    );
                }
            }
            Err(e) => warn!(out, "{relay}: {}", relay_error(relay, e)),
        }
    }
    Ok(failed)
}

/// Each relay's round as JSON, the developer's view: envelopes pushed, log entries pulled,
/// changes applied, documents touched, what was refused or held.
pub fn rounds_list(
    results: &[(String, Result<RoundReport>)],
    state: &crate::workspace::WorkspaceState,
) -> serde_json::Value {
    json!(results
        .iter()
        .map(|(relay, result)| match result {
            Ok(report) => json!({
                "relay": relay, "ok": true, "pushed": report.pushed, "pulled": report.pulled,
                "applied": report.applied, "documents": report.documents,
                "rejected": report.rejected.iter().map(|r| json!({
                    "id": r.doc, "by": {"id": r.signer, "name": state.name_of(&r.signer)},
                    "reason": r.reason,
                })).collect::<Vec<_>>(),
                "held": report.held, "refused_late": report.refused_late, "errors": report.errors,
            }),
            Err(e) => json!({"relay": relay, "ok": false, "error": crate::error::describe(e), "kind": crate::error::kind_of(e).name()}),
        })
        .collect::<Vec<_>>())
}

/// Registers with the workspace's relays right after `workspace create` or `join`, and pulls
/// what they have. Being offline is fine: the next `sync` does it. Returns the rounds as
/// JSON, for the command's own JSON output.
pub fn first_contact(
    node: &Node,
    workspace: Id,
    relays: &[String],
    out: &Out,
) -> Result<serde_json::Value> {
    if relays.is_empty() {
        return Ok(json!([]));
    }
    let results = match net::sync_once(node, workspace, relays) {
        Ok(results) => results,
        Err(e) => vec![(relays[0].clone(), Err(e))],
    };
    let rounds = rounds_json(&results);
    if !out.json {
        let state = node.workspace(Some(&workspace.hex()))?.1.state;
        contact(out, &results, &state)?;
    }
    Ok(rounds)
}

/// What a first round with the relays did (after `workspace create` or `join`), in a
/// person's words; each relay's figures with `-v`.
pub fn contact(
    out: &Out,
    results: &[(String, Result<RoundReport>)],
    state: &crate::workspace::WorkspaceState,
) -> Result<()> {
    let failed = if out.verbose {
        print_rounds(out, results, state)?
    } else {
        let mut failed = 0;
        for (relay, result) in results {
            match result {
                Ok(report) if !report.documents.is_empty() => {
                    let n = report.documents.len();
                    say!(
                        out,
                        "Synced with {relay}: {n} {}.",
                        plural(n, "document", "documents")
                    );
                }
                Ok(_) => say!(out, "Synced with {relay}."),
                Err(e) => {
                    failed += 1;
                    warn!(out, "{relay}: {}", relay_error(relay, e));
                }
            }
        }
        failed
    };
    if failed > 0 {
        warn!(
            out,
            "Could not reach {failed} {}: what you write waits here; `meridian sync` sends it once the problem above is solved.",
            plural(failed, "relay", "relays")
        );
    }
    Ok(())
}

/// First-contact rounds as JSON: whether each relay answered, and what moved.
pub fn rounds_json(results: &[(String, Result<RoundReport>)]) -> serde_json::Value {
    json!(results
        .iter()
        .map(|(relay, result)| match result {
            Ok(report) => json!({"relay": relay, "ok": true, "pulled": report.pulled, "pushed": report.pushed}),
            Err(e) => json!({"relay": relay, "ok": false, "error": crate::error::describe(e), "kind": crate::error::kind_of(e).name()}),
        })
        .collect::<Vec<_>>())
}

/// `meridian daemon`
///
/// Its log goes to stderr, coloured only on a terminal (never in a log file).
pub fn daemon(
    node: &Node,
    color: super::ColorChoice,
    notify: bool,
    on_inbox: Option<String>,
) -> Result<()> {
    use std::io::IsTerminal;
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(color.applies(std::io::stderr().is_terminal()))
        .with_max_level(tracing::Level::INFO)
        .try_init();
    let mut notifier = super::notifier::Notifier::new(node, notify, on_inbox)?;
    let mut indexed = None;
    net::daemon(node, &mut |node| {
        if let Some(notifier) = notifier.as_mut()
            && let Err(e) = notifier.tick(node)
        {
            tracing::warn!("cannot tell you what waits: {e:#}");
        }
        keep_search_current(node, &mut indexed);
    })
}

/// Brings the search index up to date when documents changed, so the next `search` finds
/// nothing to index: only in a home whose person has searched (one that never did pays
/// nothing). Another process holding the index (a `search` catching up) is left to it.
fn keep_search_current(node: &Node, indexed: &mut Option<u64>) {
    if !node.home().join(crate::search::DIR).is_dir() {
        return;
    }
    let Ok(generation) = crate::search::generation(node) else {
        return;
    };
    if *indexed == Some(generation) {
        return;
    }
    let caught_up = crate::search::Search::open(node.home()).and_then(|index| index.catch_up(node));
    match caught_up {
        Ok(_) => *indexed = Some(generation),
        Err(e) if e.downcast_ref::<crate::search::Busy>().is_some() => {}
        Err(e) => tracing::warn!("cannot bring the search index up to date: {e:#}"),
    }
}
