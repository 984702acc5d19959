//! The inbox: what asks for my response, with deadlines counted in each responder's working
//! time and escalated along the ladder when missed, and what changed since I last read it.
//!
//! Computed from the index and the cached workspace state alone, with `now` passed in, so
//! every node derives the same deadlines and no server runs a timer.

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::Serialize;

use crate::doc::Kind;
use crate::id::Id;
use crate::index::{AskSummary, DocSummary};
use crate::workspace::WorkspaceState;

/// One step of a request's escalation: who holds it and until when.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Rung {
    /// The member expected to respond.
    pub member: String,
    /// Their deadline, ms.
    pub deadline: i64,
}

/// Who holds a request now, after escalation, or `None` if no response is expected.
pub fn escalation(ask: &AskSummary, state: &WorkspaceState, now: i64) -> Vec<Rung> {
    let norms = state.norms();
    let Ok(within) = norms.level(&ask.urgency) else {
        return Vec::new();
    };
    let deadline_for = |member: &str, from: i64| -> Option<i64> {
        let calendar = state.member(member)?.calendar();
        let from = Timestamp::from_millisecond(from).ok()?;
        calendar.deadline(from, within).map(|t| t.as_millisecond())
    };
    let Some(first) = deadline_for(&ask.member, ask.at) else {
        return Vec::new();
    };
    let mut rungs = vec![Rung {
        member: ask.member.clone(),
        deadline: first,
    }];
    for next in norms.ladder.iter().filter(|m| **m != ask.member) {
        let last = rungs.last().expect("one rung at least").deadline;
        if now <= last {
            break;
        }
        let Some(deadline) = deadline_for(next, last) else {
            break;
        };
        rungs.push(Rung {
            member: next.clone(),
            deadline,
        });
    }
    rungs
}

/// One request for my response.
#[derive(Clone, Debug, Serialize)]
pub struct Request {
    /// The document.
    pub id: Id,
    /// Its kind.
    pub kind: Kind,
    /// Its title.
    pub title: String,
    /// Urgency level.
    pub urgency: String,
    /// Who asked.
    pub asked_by: String,
    /// When, ms.
    pub asked_at: i64,
    /// My deadline, ms, if a response is expected by a time.
    pub deadline: Option<i64>,
    /// The deadline has passed.
    pub overdue: bool,
    /// The member whose missed deadline escalated this to me.
    pub escalated_from: Option<String>,
}

/// What asks for `me` to respond, soonest deadline first.
pub fn requests(
    me: &str,
    summaries: &[(Id, DocSummary)],
    state: &WorkspaceState,
    now: i64,
) -> Vec<Request> {
    let mut requests = Vec::new();
    for (id, summary) in summaries {
        if matches!(
            summary.state.as_str(),
            "accepted" | "rejected" | "withdrawn" | "superseded" | "resolved"
        ) {
            continue;
        }
        for ask in summary.asks.iter().filter(|a| a.responded.is_none()) {
            let rungs = escalation(ask, state, now);
            let mine = rungs.iter().position(|r| r.member == me);
            let direct = ask.member == me;
            let Some(position) = mine.or(direct.then_some(0)) else {
                continue;
            };
            // Once escalated past me, it is no longer mine to answer (unless I was asked).
            if !direct && position + 1 != rungs.len() {
                continue;
            }
            let deadline = rungs.get(position).map(|r| r.deadline);
            requests.push(Request {
                id: *id,
                kind: summary.kind,
                title: summary.title.clone(),
                urgency: ask.urgency.clone(),
                asked_by: ask.by.clone(),
                asked_at: ask.at,
                deadline,
                overdue: deadline.is_some_and(|d| now > d),
                escalated_from: (!direct && position > 0)
                    .then(|| rungs[position - 1].member.clone()),
            });
        }
    }
    requests.sort_by_key(|r| (r.deadline.unwrap_or(i64::MAX), r.asked_at));
    requests
}

/// Documents changed by someone else since I last marked them read, newest first.
pub fn changed<'a>(
    me: &str,
    summaries: &'a [(Id, DocSummary)],
    markers: &BTreeMap<Id, Vec<String>>,
) -> Vec<&'a (Id, DocSummary)> {
    let mut changed: Vec<&(Id, DocSummary)> = summaries
        .iter()
        .filter(|(id, summary)| {
            let mut heads = summary.heads.clone();
            heads.sort();
            let read = markers.get(id).map(|m| {
                let mut m = m.clone();
                m.sort();
                m
            });
            read.as_ref() != Some(&heads) && summary.last_author != me
        })
        .collect();
    changed.sort_by_key(|(_, s)| std::cmp::Reverse(s.updated));
    changed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workspace::Member;

    fn member(id: &str, tz: &str) -> Member {
        Member {
            id: id.into(),
            name: id.into(),
            keys: vec![id.into()],
            tz: tz.into(),
            hours: "09:00-17:00".into(),
            days: "mon-fri".into(),
            verified: true,
            invited_by: None,
            removed: false,
        }
    }

    fn ms(text: &str) -> i64 {
        text.parse::<Timestamp>().unwrap().as_millisecond()
    }

    #[test]
    fn a_missed_deadline_escalates_to_the_next_rung_in_their_own_hours() {
        let state = WorkspaceState {
            members: vec![
                member("lima", "America/Lima"),
                member("tokyo", "Asia/Tokyo"),
            ],
            ladder: vec!["tokyo".into()],
            ..Default::default()
        };
        let ask = AskSummary {
            member: "lima".into(),
            urgency: "urgent".into(),
            at: ms("2026-11-24T10:00:00-05:00"),
            by: "tokyo".into(),
            responded: None,
        };
        let before = escalation(&ask, &state, ms("2026-11-24T10:30:00-05:00"));
        assert_eq!(before.len(), 1);
        assert_eq!(before[0].deadline, ms("2026-11-24T11:00:00-05:00"));
        let after = escalation(&ask, &state, ms("2026-11-24T11:30:00-05:00"));
        assert_eq!(after.len(), 2);
        // 11:00 in Lima is 01:00 in Tokyo: Tokyo's hour starts at 09:00 their time.
        assert_eq!(after[1].deadline, ms("2026-11-25T10:00:00+09:00"));

        let summary = DocSummary {
            workspace: vec![0; 16],
            kind: Kind::Thread,
            title: "t".into(),
            state: "open".into(),
            closes: None,
            author: "tokyo".into(),
            created: 0,
            updated: 0,
            last_author: String::new(),
            heads: vec![],
            changes: 1,
            asks: vec![ask],
        };
        let docs = vec![(Id([1; 16]), summary)];
        let now = ms("2026-11-24T11:30:00-05:00");
        let lima = requests("lima", &docs, &state, now);
        assert!(lima[0].overdue);
        let tokyo = requests("tokyo", &docs, &state, now);
        assert_eq!(tokyo[0].escalated_from.as_deref(), Some("lima"));
        assert!(!tokyo[0].overdue);
    }
}
