//! Status updates as a team reads them: the latest first with what each says, and who
//! has not posted for the week they are in.

use anyhow::Result;

use super::Context;
use crate::doc::{Kind, View};
use crate::id::Id;
use crate::update::{self, Missing, Update};

/// The workspace's status updates, newest first.
pub fn list(cx: &Context) -> Result<Vec<(Id, Update)>> {
    let mut updates = Vec::new();
    for (id, summary) in cx.node.summaries(cx.workspace)? {
        if summary.kind != Kind::Update {
            continue;
        }
        let doc = cx.node.load(cx.workspace, id)?;
        updates.push((id, update::read(View::now(&doc))));
    }
    updates.sort_by(|(a_id, a), (b_id, b)| (b.created, b_id).cmp(&(a.created, a_id)));
    Ok(updates)
}

/// The members who have not posted an update for the week they are in now (in their own
/// zone), by name, with the updates of the workspace already read by [`list`].
pub fn missing(cx: &Context, updates: &[(Id, Update)], now: jiff::Timestamp) -> Vec<Missing> {
    let posted: Vec<(String, String)> = updates
        .iter()
        .map(|(_, u)| (u.author.clone(), u.period.clone()))
        .collect();
    let mut missing = update::missing(&cx.record.state.members, &posted, now);
    missing.sort_by_cached_key(|m| (cx.name(&m.member), m.member.clone()));
    missing
}
