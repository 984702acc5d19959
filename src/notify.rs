//! When to tell a person that something waits for them: in their working hours, in their
//! own zone, unless it is urgent enough to interrupt; and a morning digest instead of a
//! notification per item for what arrived while they were off.
//!
//! Pure: the items waiting to be delivered, the person's calendar, which urgency levels
//! break through quiet hours, and `now` in; what to deliver now, how, and when to look
//! again out. The daemon (or a script) keeps what was delivered; this decides.

use jiff::Timestamp;

use crate::norms::Calendar;

/// Something new waiting for the person, not yet delivered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pending {
    /// Its urgency level (`urgent`, `high`, `normal`, …; empty for none).
    pub urgency: String,
    /// When it arrived on this node, ms.
    pub arrived: i64,
}

/// What to do with the pending items now (indices into them).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Delivered now, one notification each.
    pub each: Vec<usize>,
    /// Delivered now as one digest ("3 asks, 1 decision while you were away").
    pub digest: Vec<usize>,
    /// Kept for later.
    pub held: Vec<usize>,
    /// When to plan again for what is held (the start of the next working window), ms.
    pub wake: Option<i64>,
}

/// Plans the delivery of `pending` at `now` for a person with `calendar`; `breaks_through`
/// says which urgency levels are delivered outside working hours and while away.
///
/// - At work (inside a working window, not away): everything is delivered. What arrived
///   before this window opened was held, and if there are two or more of those they go
///   as one digest; the rest one by one.
/// - Off (outside the window, a day off, away): items whose level breaks through are
///   delivered one by one; the rest are held until the next window opens.
pub fn plan(
    pending: &[Pending],
    calendar: &Calendar,
    breaks_through: &dyn Fn(&str) -> bool,
    now: i64,
) -> Plan {
    let mut plan = Plan::default();
    let Ok(at) = Timestamp::from_millisecond(now) else {
        plan.each = (0..pending.len()).collect();
        return plan;
    };
    match calendar.window_at(at) {
        Some((open, _)) => {
            let open = open.as_millisecond();
            let (before, during): (Vec<usize>, Vec<usize>) =
                (0..pending.len()).partition(|&i| pending[i].arrived < open);
            if before.len() >= 2 {
                plan.digest = before;
            } else {
                plan.each.extend(before);
            }
            plan.each.extend(during);
        }
        None => {
            for (i, item) in pending.iter().enumerate() {
                if breaks_through(&item.urgency) {
                    plan.each.push(i);
                } else {
                    plan.held.push(i);
                }
            }
            if !plan.held.is_empty() {
                plan.wake = calendar.next_open(at).map(|t| t.as_millisecond());
            }
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::norms::WorkingHours;

    fn calendar(zone: &str, hours: &str, days: &str, away: &[&str]) -> Calendar {
        Calendar {
            tz: crate::norms::time_zone(zone).unwrap(),
            hours: WorkingHours::parse(hours, days).unwrap(),
            away: crate::norms::away_periods(
                &away.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
            ),
        }
    }

    fn ms(text: &str) -> i64 {
        text.parse::<Timestamp>().unwrap().as_millisecond()
    }

    fn item(urgency: &str, arrived: &str) -> Pending {
        Pending {
            urgency: urgency.into(),
            arrived: ms(arrived),
        }
    }

    fn urgent(level: &str) -> bool {
        level == "urgent"
    }

    #[test]
    fn at_work_everything_goes_and_what_waited_overnight_goes_as_one_digest() {
        let cy = calendar("America/Lima", "09:00-17:00", "mon-fri", &[]);
        // Tuesday 2026-12-08 09:30 in Lima (UTC-5).
        let now = ms("2026-12-08T14:30:00Z");
        let pending = [
            item("normal", "2026-12-08T03:00:00Z"), // 22:00 Monday, Lima
            item("high", "2026-12-08T11:00:00Z"),   // 06:00 Tuesday
            item("normal", "2026-12-08T14:10:00Z"), // 09:10, at work
        ];
        let plan = plan(&pending, &cy, &urgent, now);
        assert_eq!(plan.digest, [0, 1]);
        assert_eq!(plan.each, [2]);
        assert!(plan.held.is_empty() && plan.wake.is_none());
        // A single item held overnight is just delivered.
        let one = super::plan(&pending[1..], &cy, &urgent, now);
        assert_eq!((one.each, one.digest), (vec![0, 1], vec![]));
    }

    #[test]
    fn off_hours_hold_all_but_what_breaks_through_until_the_next_morning_in_their_zone() {
        let ana = calendar("Asia/Tokyo", "09:00-17:00", "mon-fri", &[]);
        // Friday 2026-12-11 20:00 in Tokyo: off until Monday 09:00 (00:00 UTC).
        let now = ms("2026-12-11T11:00:00Z");
        let pending = [
            item("normal", "2026-12-11T10:30:00Z"),
            item("urgent", "2026-12-11T10:45:00Z"),
        ];
        let plan = plan(&pending, &ana, &urgent, now);
        assert_eq!(plan.each, [1]);
        assert_eq!(plan.held, [0]);
        assert_eq!(plan.wake, Some(ms("2026-12-14T00:00:00Z")));
        // The same moment is Friday 12:00 in Berlin: delivered at once.
        let bo = calendar("Europe/Berlin", "09:00-17:00", "mon-fri", &[]);
        let at_work = super::plan(&pending, &bo, &urgent, now);
        assert_eq!(at_work.each, [0, 1]);
    }

    #[test]
    fn away_days_hold_until_the_first_working_day_after_them() {
        let bo = calendar(
            "Europe/Berlin",
            "09:00-17:00",
            "mon-fri",
            &["2026-12-24..2027-01-01"],
        );
        // Monday 2026-12-28 10:00 in Berlin, a working hour, but Bo is away.
        let now = ms("2026-12-28T09:00:00Z");
        let plan = plan(&[item("high", "2026-12-28T08:00:00Z")], &bo, &urgent, now);
        assert_eq!(plan.held, [0]);
        // Back Monday 2027-01-04 09:00 (Friday the 1st is away, then a weekend).
        assert_eq!(plan.wake, Some(ms("2027-01-04T08:00:00Z")));
    }

    #[test]
    fn the_morning_after_a_change_of_clocks_is_the_local_morning() {
        let bo = calendar("Europe/Berlin", "09:00-17:00", "mon-fri", &[]);
        // Saturday 2026-03-28 evening; clocks go forward on Sunday the 29th, so Monday
        // 09:00 is 07:00 UTC (it was 08:00 UTC the Monday before).
        let plan = plan(
            &[item("normal", "2026-03-28T18:00:00Z")],
            &bo,
            &urgent,
            ms("2026-03-28T19:00:00Z"),
        );
        assert_eq!(plan.wake, Some(ms("2026-03-30T07:00:00Z")));
        // A night shift that started yesterday is still at work after midnight.
        let night = calendar("America/Lima", "22:00-06:00", "mon-fri", &[]);
        // Tuesday 2026-12-08 02:00 in Lima: Monday's shift.
        let at = super::plan(
            &[item("normal", "2026-12-08T06:30:00Z")],
            &night,
            &urgent,
            ms("2026-12-08T07:00:00Z"),
        );
        assert_eq!(at.each, [0]);
    }
}
