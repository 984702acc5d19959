//! Adding a device to one's own devices: the code an existing device makes, and the new
//! device joining with it and registering with the relays before it says it joined.

use anyhow::Result;

use super::invite::Joined;
use crate::device::DeviceCode;
use crate::fail;
use crate::node::Node;
use crate::store::WorkspaceRecord;
use crate::sync::net::RefusedError;

/// A code that adds a device to this device's member in `workspace`, valid until
/// `expires` (ms), carrying the key epoch this device seals under.
pub fn code(
    node: &Node,
    workspace: crate::id::Id,
    record: &WorkspaceRecord,
    expires: i64,
) -> Result<DeviceCode> {
    let me = node.member_id();
    if !record.state.active_members().any(|m| m.id == me) {
        fail!(
            Refused,
            "this device is not (yet) a verified member of workspace `{}`: sync first, then add devices",
            record.name
        );
    }
    // The member's `devices` map exists before another device writes under it.
    node.publish_device_key(workspace)?;
    let member = hex::decode(&me)?;
    let code = DeviceCode::new(
        node.key(),
        &member,
        workspace,
        &record.name,
        &record.key,
        &record.creator,
        record.relays.clone(),
        expires,
    );
    Ok(match crate::seal::Sealer::of(record) {
        Ok(crate::seal::Sealer::Epoch(hash, secret)) => code.with_epoch(&hash, &secret),
        _ => code,
    })
}

/// Joins the workspace of `code` as another device of its member, at `now` (ms): registers
/// with its relays, then writes this device's entry once the member's has arrived.
pub fn join(node: &Node, code: &DeviceCode, now: i64) -> Result<Joined> {
    if code.expires < now {
        fail!(
            Refused,
            "this device code has expired: make a new one with `meridian device add` on one of your devices"
        );
    }
    let id = node.join_as_device(code)?;
    let round = |node: &Node| super::invite::first_round(node, id, &code.relays);
    let mut joined = Joined {
        id,
        name: code.name.clone(),
        relays: code.relays.clone(),
        again: false,
        rounds: round(node),
    };
    let refusals: Vec<String> = joined
        .rounds
        .iter()
        .filter_map(|(relay, r)| {
            let refused = r.as_ref().err()?.downcast_ref::<RefusedError>()?;
            Some(format!(
                "the relay {relay} refused this device ({})",
                refused.reason
            ))
        })
        .collect();
    if !joined.admitted() && !refusals.is_empty() {
        node.forget_workspace(id)?;
        fail!(
            Refused,
            "could not add this device to workspace `{}`: {}. Nothing was kept: make a new code with `meridian device add` on one of your devices and run `meridian device join` with it",
            code.name,
            refusals.join("; ")
        );
    }
    if node.write_device_entry(id)? && joined.admitted() && !joined.relays.is_empty() {
        // The entry goes out now, so the others count this device as yours at once.
        for (relay, result) in round(node) {
            if let Some(first) = joined.rounds.iter_mut().find(|(r, _)| *r == relay)
                && let (Ok(report), Ok(more)) = (&mut first.1, result)
            {
                report.absorb(more);
            }
        }
    }
    Ok(joined)
}
