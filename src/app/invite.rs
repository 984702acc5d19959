//! Joining a workspace with an invite code, and learning before saying so whether the
//! workspace's relays admit this device.
//!
//! A code admits one device, once, before it expires, and only while its inviter is a
//! member; only a relay can tell whether those hold. So `join` registers with the relays
//! the code names before it reports success. A join that every reachable relay refused
//! leaves nothing behind (a fresh code then joins as if the first had never been tried);
//! a join with no reachable relay is kept, and registers on the next sync.

use anyhow::Result;
use meridian_relay::protocol::RefusedCode;

use crate::fail;
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

/// One sync round of a device just joined with the relays its code names (none: nothing).
pub(super) fn first_round(
    node: &Node,
    id: Id,
    relays: &[String],
) -> Vec<(String, Result<RoundReport>)> {
    match relays {
        [] => Vec::new(),
        relays => match net::sync_once(node, id, relays) {
            Ok(rounds) => rounds,
            Err(e) => vec![(relays[0].clone(), Err(e))],
        },
    }
}

/// Joins the workspace of `invite` at `now` (ms) and registers with its relays.
///
/// The member entry is written once the relays have answered: so a refused join leaves
/// nothing, and a name another member already has is refused before anyone sees it.
pub fn join(node: &Node, invite: &Invite, now: i64) -> Result<Joined> {
    if invite.expires < now {
        fail!(
            Refused,
            "this invite has expired: ask a member for a new one (`meridian invite`)"
        );
    }
    let id = invite.workspace_id()?;
    let me = node.member_id();
    let known = node.workspaces()?.into_iter().find(|(w, _)| *w == id);
    let has_entry = |node: &Node| -> Result<bool> {
        Ok(node
            .workspaces()?
            .into_iter()
            .any(|(w, r)| w == id && r.state.members.iter().any(|m| m.id == me)))
    };
    let earlier = known.as_ref().and_then(|(_, record)| record.proof.clone());
    let again = match &known {
        None => {
            node.join_pending(invite)?;
            false
        }
        Some((_, record)) if record.creator == node.key().verifying_key().to_bytes() => {
            fail!(
                Usage,
                "you created workspace `{}`: this device is its first member",
                record.name
            )
        }
        Some((_, record))
            if (record.relays.is_empty() || node.admitted_anywhere(id)?) && has_entry(node)? =>
        {
            fail!(
                Usage,
                "this device is already a member of workspace `{}`",
                record.name
            )
        }
        // A join that stopped before its member entry: finish it.
        Some(_) if node.admitted_anywhere(id)? => true,
        Some(_) => {
            node.rejoin(invite)?;
            true
        }
    };
    let round = |node: &Node| first_round(node, id, &invite.relays);
    let mut joined = Joined {
        id,
        name: invite.name.clone(),
        relays: invite.relays.clone(),
        again,
        rounds: round(node),
    };
    let refusals: Vec<(&String, &RefusedError)> = joined
        .rounds
        .iter()
        .filter_map(|(relay, r)| Some((relay, r.as_ref().err()?.downcast_ref::<RefusedError>()?)))
        .collect();
    if !joined.admitted() && !refusals.is_empty() {
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
        fail!(
            Refused,
            "could not join workspace `{}`: {}. {kept}: {what_to_do}",
            invite.name,
            why.join("; ")
        );
    }
    if !has_entry(node)? {
        // What the relays brought says who is a member already: one name, one person.
        let profile = node.profile()?;
        let (_, record) = node
            .workspaces()?
            .into_iter()
            .find(|(w, _)| *w == id)
            .ok_or_else(|| anyhow::anyhow!("the workspace vanished while joining"))?;
        if let Some(other) = record
            .state
            .active_members()
            .find(|m| m.id != me && m.name.to_lowercase() == profile.name.to_lowercase())
        {
            if !again {
                node.forget_workspace(id)?;
            }
            let city = profile
                .tz
                .rsplit('/')
                .next()
                .unwrap_or(&profile.tz)
                .replace('_', " ");
            fail!(
                Refused,
                "workspace `{}` has a member called {} already (key {}): choose a name that tells you apart, like `meridian profile set --name '{} ({city})'`, then run `meridian join` with the same code again (it stays valid for this device)",
                invite.name,
                other.name,
                crate::id::prefix(&other.id, 8),
                profile.name
            );
        }
        node.write_member_entry(id)?;
        if joined.admitted() && !joined.relays.is_empty() {
            // The entry goes out now, so the others learn of the new member at once.
            let second = round(node);
            for (relay, result) in second {
                if let Some(first) = joined.rounds.iter_mut().find(|(r, _)| *r == relay)
                    && let (Ok(report), Ok(more)) = (&mut first.1, result)
                {
                    report.absorb(more);
                }
            }
        }
    }
    Ok(joined)
}
