//! Status updates: what I did, what I will do next, what blocks me, with links to the
//! proposals and threads they concern.

use anyhow::Result;
use automerge::transaction::Transactable;
use automerge::{ObjType, ROOT, ReadDoc};
use serde::Serialize;

use crate::discussion::{self, Comment};
use crate::doc::{View, put_str_list, put_text};
use crate::id::Id;

/// The three parts of an update.
pub const PARTS: [&str; 3] = ["done", "next", "blockers"];

/// What `update new` writes.
pub struct NewUpdate {
    /// The new document's id.
    pub id: Id,
    /// Its workspace.
    pub workspace: Id,
    /// Title shown in lists.
    pub title: String,
    /// The period it covers (ISO week by default).
    pub period: String,
    /// Done / next / blockers.
    pub parts: [String; 3],
    /// Linked document ids.
    pub links: Vec<String>,
    /// Author member id.
    pub author: String,
    /// Created, ms.
    pub at: i64,
    /// Members the blockers name (`@Cy`): asked to respond.
    pub asks: Vec<String>,
    /// The urgency of those asks.
    pub urgency: String,
}

/// Writes a new update into an empty document.
pub fn create<T: Transactable + ReadDoc>(tx: &mut T, new: &NewUpdate) -> Result<()> {
    tx.put(ROOT, "id", new.id.hex())?;
    tx.put(ROOT, "kind", "update")?;
    tx.put(ROOT, "workspace", new.workspace.hex())?;
    tx.put(ROOT, "title", new.title.as_str())?;
    tx.put(ROOT, "author", new.author.as_str())?;
    tx.put(ROOT, "created", new.at)?;
    tx.put(ROOT, "period", new.period.as_str())?;
    for (name, text) in PARTS.iter().zip(&new.parts) {
        put_text(tx, &ROOT, name, text)?;
    }
    put_str_list(tx, &ROOT, "links", &new.links)?;
    tx.put_object(ROOT, "comments", ObjType::Map)?;
    if !new.asks.is_empty() {
        discussion::put_asks(tx, &new.asks, &new.urgency, &new.author, new.at)?;
    }
    Ok(())
}

/// Everything shown about an update.
#[derive(Clone, Debug, Serialize)]
pub struct Update {
    /// Id.
    pub id: String,
    /// Title.
    pub title: String,
    /// Author member id.
    pub author: String,
    /// Created, ms.
    pub created: i64,
    /// Period.
    pub period: String,
    /// What was done.
    pub done: String,
    /// What comes next.
    pub next: String,
    /// What blocks.
    pub blockers: String,
    /// Linked documents.
    pub links: Vec<String>,
    /// Replies.
    pub comments: Vec<Comment>,
}

/// Reads an update.
pub fn read(view: View<'_>) -> Update {
    Update {
        id: view.string(&ROOT, "id"),
        title: view.title(),
        author: view.string(&ROOT, "author"),
        created: view.int(&ROOT, "created").unwrap_or(0),
        period: view.string(&ROOT, "period"),
        done: view.string(&ROOT, "done"),
        next: view.string(&ROOT, "next"),
        blockers: view.string(&ROOT, "blockers"),
        links: view.str_list(&ROOT, "links"),
        comments: discussion::comments(view),
    }
}

/// The ISO week a moment falls in, in a zone: `2026-W50`. An update's default period is
/// its author's week when they post it.
pub fn week_of(at: jiff::Timestamp, tz: &jiff::tz::TimeZone) -> String {
    let week = at.to_zoned_datetime(tz.clone()).date().iso_week_date();
    format!("{}-W{:02}", week.year(), week.week())
}

/// Someone who has not posted an update for their current week.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Missing {
    /// Their member id.
    pub member: String,
    /// Their week now, in their own zone.
    pub period: String,
    /// They are away today (their own zone's date), so no update is expected of them.
    pub away: bool,
}

/// The members (current, verified) who have posted no update for the week they are in now,
/// in their own zone: on a Monday morning in Tokyo a new week has begun for Ana while it is
/// still Sunday for Cy in Lima. `posted` holds each update's author and period.
pub fn missing(
    members: &[crate::workspace::Member],
    posted: &[(String, String)],
    now: jiff::Timestamp,
) -> Vec<Missing> {
    members
        .iter()
        .filter(|m| m.verified && !m.removed)
        .filter_map(|m| {
            let calendar = m.calendar();
            let period = week_of(now, &calendar.tz);
            let has = posted
                .iter()
                .any(|(author, p)| (author == &m.id || m.keys.contains(author)) && *p == period);
            (!has).then(|| Missing {
                member: m.id.clone(),
                away: calendar.away_at(now).is_some(),
                period,
            })
        })
        .collect()
}

/// The text of a part given as several items (`--done A --done B`): one item as it is,
/// several as a Markdown list.
pub fn join_items(items: &[String]) -> String {
    let items: Vec<&str> = items
        .iter()
        .map(|i| i.trim())
        .filter(|i| !i.is_empty())
        .collect();
    match items.as_slice() {
        [] => String::new(),
        [one] => one.to_string(),
        many => many
            .iter()
            .map(|i| format!("- {i}"))
            .collect::<Vec<_>>()
            .join("\n"),
    }
}

/// The members a blockers text names with `@Name` (a member's name as shown, any case),
/// each once, in the order named: they are asked to respond to the update.
pub fn named_in(text: &str, members: &[crate::workspace::Member]) -> Vec<String> {
    let mut named: Vec<String> = Vec::new();
    for (at, _) in text.match_indices('@') {
        // `@` starts a mention at the start or after a non-word character (not in an e-mail).
        if text[..at]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '.')
        {
            continue;
        }
        let rest = &text[at + 1..];
        // The longest name that follows, ending at a non-word character: the name others
        // see (`Bo#b0e2` when two chose `Bo`) or the member's own, when only one has it.
        let follows = |name: &str| {
            !name.is_empty()
                && rest.len() >= name.len()
                && rest.is_char_boundary(name.len())
                && rest[..name.len()].eq_ignore_ascii_case(name)
                && !rest[name.len()..]
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_alphanumeric() || c == '_')
        };
        let matches: Vec<(usize, &crate::workspace::Member)> = members
            .iter()
            .filter(|m| !m.removed)
            .filter_map(|m| {
                [m.shown.as_str(), m.name.as_str()]
                    .into_iter()
                    .filter(|n| follows(n))
                    .map(str::len)
                    .max()
                    .map(|len| (len, m))
            })
            .collect();
        let longest = matches.iter().map(|(len, _)| *len).max();
        let mut at_longest = matches.iter().filter(|(len, _)| Some(*len) == longest);
        let found = match (at_longest.next(), at_longest.next()) {
            (Some((_, m)), None) => Some(*m),
            _ => None,
        };
        if let Some(m) = found
            && !named.contains(&m.id)
        {
            named.push(m.id.clone());
        }
    }
    named
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workspace::Member;

    fn member(id: &str, name: &str, tz: &str) -> Member {
        Member::for_test(id, name, tz)
    }

    fn at(text: &str) -> jiff::Timestamp {
        text.parse().unwrap()
    }

    #[test]
    fn the_week_an_update_is_missing_for_is_each_members_own() {
        let team = [
            member("a", "Ana", "Asia/Tokyo"),
            member("c", "Cy", "America/Lima"),
        ];
        // Monday 2026-12-07 08:00 in Tokyo is Sunday 18:00 in Lima.
        let now = at("2026-12-06T23:00:00Z");
        assert_eq!(week_of(now, &team[0].calendar().tz), "2026-W50");
        assert_eq!(week_of(now, &team[1].calendar().tz), "2026-W49");
        // Both posted for week 49: Ana owes one for her new week, Cy does not yet.
        let posted = vec![
            ("a".into(), "2026-W49".into()),
            ("c".into(), "2026-W49".into()),
        ];
        let owed = missing(&team, &posted, now);
        assert_eq!(
            owed,
            vec![Missing {
                member: "a".into(),
                period: "2026-W50".into(),
                away: false
            }]
        );
        // A day later both are in week 50.
        let later = missing_ids(&team, &posted, at("2026-12-07T23:00:00Z"));
        assert_eq!(later, ["a", "c"]);
        // Removed or unverified members owe nothing; one away is listed as away.
        let mut away = team.clone();
        away[0].away = vec!["2026-12-07..2026-12-11".into()];
        away[1].removed = true;
        let owed = missing(&away, &[], at("2026-12-07T23:00:00Z"));
        assert_eq!(owed.len(), 1);
        assert!(owed[0].away);
    }

    fn missing_ids(
        team: &[Member],
        posted: &[(String, String)],
        now: jiff::Timestamp,
    ) -> Vec<String> {
        missing(team, posted, now)
            .into_iter()
            .map(|m| m.member)
            .collect()
    }

    #[test]
    fn the_iso_week_crosses_years_and_daylight_saving_in_the_members_zone() {
        let berlin = member("b", "Bo", "Europe/Berlin").calendar().tz;
        // 2026-01-01 is a Thursday: week 1 of 2026; 2027-01-01 a Friday: week 53 of 2026.
        assert_eq!(week_of(at("2026-01-01T12:00:00Z"), &berlin), "2026-W01");
        assert_eq!(week_of(at("2027-01-01T12:00:00Z"), &berlin), "2026-W53");
        // Sunday 2026-03-29, the night clocks go forward: 23:30 local is still week 13.
        assert_eq!(week_of(at("2026-03-29T21:30:00Z"), &berlin), "2026-W13");
        assert_eq!(week_of(at("2026-03-29T22:30:00Z"), &berlin), "2026-W14");
    }

    #[test]
    fn several_items_are_a_list_and_mentions_name_members() {
        assert_eq!(join_items(&["Shipped sync".into()]), "Shipped sync");
        assert_eq!(
            join_items(&["Shipped sync".into(), " ".into(), "Wrote docs".into()]),
            "- Shipped sync\n- Wrote docs"
        );
        let team = [
            member("a", "Ana", "Asia/Tokyo"),
            member("c", "Cy", "America/Lima"),
            member("cy2", "Cyra", "America/Lima"),
        ];
        assert_eq!(
            named_in(
                "Waiting on @Cy for the key, and @cyra. Mail ops@Ana.example",
                &team
            ),
            ["c", "cy2"]
        );
        assert_eq!(named_in("@Cy @cy", &team), ["c"]);
        assert!(named_in("no one @Nobody", &team).is_empty());
    }
}
