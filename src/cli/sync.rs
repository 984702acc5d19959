//! `sync`, `daemon`, and the relay set-up that `workspace create` and `join` do.

use anyhow::{Result, bail};
use serde_json::json;

use super::{Ctx, Out};
use crate::id::Id;
use crate::node::Node;
use crate::sync::net::{self, RoundReport};
use meridian_relay::protocol::RefusedCode;

/// `meridian sync [--relay URL]...`
pub fn sync(ctx: &Ctx, relays: Vec<String>) -> Result<()> {
    let relays = if relays.is_empty() {
        ctx.record.relays.clone()
    } else {
        relays
    };
    if relays.is_empty() {
        bail!(
            "workspace `{}` lists no relay: add one with `meridian workspace relay add URL`, or pass --relay URL",
            ctx.record.name
        );
    }
    let results = net::sync_once(&ctx.node, ctx.workspace, &relays)?;
    let refusals: Vec<(&String, &net::RefusedError)> = results
        .iter()
        .filter_map(|(relay, r)| {
            Some((
                relay,
                r.as_ref().err()?.downcast_ref::<net::RefusedError>()?,
            ))
        })
        .collect();
    // Scripts get every relay's answer; people get one sentence when every relay refused.
    if ctx.out.json {
        print_rounds(&ctx.out, &results, &ctx.record.state)?;
    }
    if refusals.iter().any(|(_, r)| r.code == RefusedCode::Removed) {
        crate::fail!(
            Refused,
            "this device was removed from workspace `{}` by its creator: relays no longer take its changes, and nothing written here reaches the others (what you wrote before stays with them)",
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
            "every relay refused this device ({}); your changes wait in the outbox",
            why.join("; ")
        );
    }
    let failed = if ctx.out.json {
        results.iter().filter(|(_, r)| r.is_err()).count()
    } else {
        print_rounds(&ctx.out, &results, &ctx.record.state)?
    };
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
            "sync failed with every relay; local changes stay in the outbox until a relay takes them",
        ));
    } else if failed > 0 {
        bail!("sync failed with {failed} of {} relays", results.len());
    }
    Ok(())
}

/// Prints each relay's round; returns how many failed.
pub fn print_rounds(
    out: &Out,
    results: &[(String, Result<RoundReport>)],
    state: &crate::workspace::WorkspaceState,
) -> Result<usize> {
    let failed = results.iter().filter(|(_, r)| r.is_err()).count();
    if out.json {
        let list: Vec<_> = results
            .iter()
            .map(|(relay, result)| match result {
                Ok(report) => json!({
                    "relay": relay, "ok": true, "pushed": report.pushed, "pulled": report.pulled,
                    "applied": report.applied, "documents": report.documents,
                    "rejected": report.rejected.iter().map(|r| json!({
                        "id": r.doc, "by": {"id": r.signer, "name": state.name_of(&r.signer)},
                        "reason": r.reason,
                    })).collect::<Vec<_>>(),
                    "held": report.held, "errors": report.errors,
                }),
                Err(e) => json!({"relay": relay, "ok": false, "error": crate::error::describe(e), "kind": crate::error::kind_of(e).name()}),
            })
            .collect();
        out.print_json(&json!(list))?;
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
                if report.held > 0 {
                    say!(
                        out,
                        "  {} change(s) held until what they depend on arrives",
                        report.held
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
            Err(e) => warn!(out, "{relay}: {}", crate::error::describe(e)),
        }
    }
    Ok(failed)
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
        let failed = print_rounds(out, &results, &state)?;
        if failed > 0 {
            warn!(
                out,
                "Could not sync with {failed} relay(s): your changes wait in the outbox; run `meridian sync` once the problem above is solved."
            );
        }
    }
    Ok(rounds)
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
pub fn daemon(node: &Node) -> Result<()> {
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(tracing::Level::INFO)
        .try_init();
    net::daemon(node)
}
