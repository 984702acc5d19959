//! Joining a workspace with an invite code, and learning before saying so whether the
//! workspace's relays admit this device.
//!
//! A code admits one device, once, before it expires, and only while its inviter is a
//! member; only a relay can tell whether those hold. So `join` registers with the relays
//! the code names before it reports success. A join that every reachable relay refused
//! leaves nothing behind (a fresh code then joins as if the first had never been tried);
//! a join with no reachable relay is kept, and registers on the next sync.

use anyhow::{Result, bail};
use meridian_relay::protocol::RefusedCode;

use crate::id::Id;
use crate::node::Node;
use crate::sync::net::{self, RefusedError, RoundReport};
use crate::workspace::Invite;

/// What `join` did.
pub struct Joined {
    /// The workspace.
    pub id: Id,
    /// Its name.
    pub name: String,
    /// The relays the code names.
    pub relays: Vec<String>,
    /// This device had joined before without any relay admitting it, and joined again with
    /// this code.
    pub again: bool,
    /// The first sync round with each relay.
    pub rounds: Vec<(String, Result<RoundReport>)>,
}

impl Joined {
    /// Whether some relay admitted the device (or the code names none).
    pub fn admitted(&self) -> bool {
        self.relays.is_empty() || self.rounds.iter().any(|(_, r)| r.is_ok())
    }
}

/// Joins the workspace of `invite` at `now` (ms) and registers with its relays.
pub fn join(node: &Node, invite: &Invite, now: i64) -> Result<Joined> {
    if invite.expires < now {
        bail!("this invite has expired: ask a member for a new one (`meridian invite`)");
    }
    let id = invite.workspace_id()?;
    let known = node.workspaces()?.into_iter().find(|(w, _)| *w == id);
    let earlier = known.as_ref().and_then(|(_, record)| record.proof.clone());
    let again = match &known {
        None => {
            node.join(invite)?;
            false
        }
        Some((_, record)) if record.creator == node.key().verifying_key().to_bytes() => {
            bail!(
                "you created workspace `{}`: this device is its first member",
                record.name
            )
        }
        Some((_, record)) if record.relays.is_empty() || node.admitted_anywhere(id)? => {
            bail!(
                "this device is already a member of workspace `{}`",
                record.name
            )
        }
        Some(_) => {
            node.rejoin(invite)?;
            true
        }
    };
    let rounds = match invite.relays.as_slice() {
        [] => Vec::new(),
        relays => match net::sync_once(node, id, relays) {
            Ok(rounds) => rounds,
            Err(e) => vec![(relays[0].clone(), Err(e))],
        },
    };
    let joined = Joined {
        id,
        name: invite.name.clone(),
        relays: invite.relays.clone(),
        again,
        rounds,
    };
    let refusals: Vec<(&String, &RefusedError)> = joined
        .rounds
        .iter()
        .filter_map(|(relay, r)| Some((relay, r.as_ref().err()?.downcast_ref::<RefusedError>()?)))
        .collect();
    if joined.admitted() || refusals.is_empty() {
        return Ok(joined);
    }
    match (again, earlier) {
        (false, _) => node.forget_workspace(id)?,
        // The refused code is no better than the one this device had: keep that one.
        (true, Some(earlier)) => node.set_join_proof(id, &earlier, &[])?,
        (true, None) => {}
    }
    let why: Vec<String> = refusals
        .iter()
        .map(|(relay, refused)| {
            format!("the relay {relay} refused this device ({})", refused.reason)
        })
        .collect();
    let what_to_do = if refusals
        .iter()
        .any(|(_, r)| r.code == RefusedCode::UnknownWorkspace)
    {
        "the workspace's creator has not synced with it yet: run `meridian join CODE` again once they have"
    } else {
        "ask a member for a new code (`meridian invite`) and run `meridian join` with it"
    };
    let kept = if again {
        "This device stays joined with its earlier invite"
    } else {
        "Nothing was kept"
    };
    bail!(
        "could not join workspace `{}`: {}. {kept}: {what_to_do}",
        invite.name,
        why.join("; ")
    )
}
