//! Working hours, urgency norms and response deadlines.
//!
//! A deadline is counted in the *responder's* working time: their IANA time zone, their
//! working days and hours. Wall-clock working windows are resolved to instants day by day
//! with jiff, so a day on which the clocks move still has its full working hours. The time
//! zone database is bundled into the binary, so every node computes the same instants.
//! Nothing here reads the clock: `now` is always passed in.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use anyhow::{Context, Result, bail};
use jiff::civil::{Date, Time, Weekday};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};

/// Days a deadline search walks forward before it gives up (a calendar with no working time).
const MAX_DAYS_SEARCHED: i32 = 3 * 366;

/// Working days and hours of one person, in their own time zone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WorkingHours {
    /// Minutes after midnight when work starts.
    pub start: u16,
    /// Minutes after midnight when work ends (after `start`).
    pub end: u16,
    /// Working weekdays as a bit set, bit 0 for Monday.
    pub days: u8,
}

const DAY_NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

impl Default for WorkingHours {
    fn default() -> Self {
        WorkingHours {
            start: 9 * 60,
            end: 17 * 60,
            days: 0b001_1111,
        }
    }
}

impl WorkingHours {
    /// Parses `09:00-17:00` and `mon-fri` (or `mon,wed,fri`, or a mix: `mon-wed,fri`).
    ///
    /// Hours that end before they start are a night shift: `22:00-06:00` starts on each
    /// working day at 22:00 and ends at 06:00 the next morning.
    pub fn parse(hours: &str, days: &str) -> Result<WorkingHours> {
        crate::error::typed(|| {
            let advice =
                "use 24-hour HH:MM-HH:MM, e.g. 09:00-17:00 (or 22:00-06:00 for a night shift)";
            let (start, end) = hours
                .split_once('-')
                .filter(|(a, b)| a.contains(':') && b.contains(':'))
                .with_context(|| {
                    format!("working hours `{hours}` are not a range of times: {advice}")
                })?;
            let start = parse_clock(start)?;
            let end = parse_clock(end)?;
            if end == start || (start == 0 && end == 24 * 60) {
                bail!("working hours `{hours}` last no time or all day: {advice}");
            }
            Ok(WorkingHours {
                start,
                end,
                days: parse_days(days)?,
            })
        })
    }

    /// The hours as `HH:MM-HH:MM`.
    pub fn hours_text(&self) -> String {
        format!("{}-{}", clock_text(self.start), clock_text(self.end))
    }

    /// The days as `mon-fri` or a comma list.
    pub fn days_text(&self) -> String {
        let on: Vec<usize> = (0..7).filter(|d| self.days & (1 << d) != 0).collect();
        let contiguous = on.windows(2).all(|w| w[1] == w[0] + 1);
        match on.as_slice() {
            [] => "none".into(),
            [one] => DAY_NAMES[*one].into(),
            [first, .., last] if contiguous => {
                format!("{}-{}", DAY_NAMES[*first], DAY_NAMES[*last])
            }
            _ => on
                .iter()
                .map(|d| DAY_NAMES[*d])
                .collect::<Vec<_>>()
                .join(","),
        }
    }

    /// Minutes of work in one working day (a night shift's, across midnight).
    pub fn minutes_per_day(&self) -> u32 {
        if self.end > self.start {
            u32::from(self.end - self.start)
        } else {
            u32::from(24 * 60 - self.start + self.end)
        }
    }

    /// Whether the hours run past midnight into the next day.
    pub fn overnight(&self) -> bool {
        self.end < self.start
    }

    fn works_on(&self, weekday: Weekday) -> bool {
        let index = Weekday::Monday.until(weekday);
        self.days & (1 << index) != 0
    }
}

fn parse_clock(text: &str) -> Result<u16> {
    let text = text.trim();
    let (h, m) = text.split_once(':').unwrap_or((text, "0"));
    match (h.parse::<u16>(), m.parse::<u16>()) {
        (Ok(h), Ok(m)) if h <= 24 && m < 60 && h * 60 + m <= 24 * 60 => Ok(h * 60 + m),
        _ => bail!("`{text}` is not a time of day: use HH:MM, like 09:30"),
    }
}

fn clock_text(minutes: u16) -> String {
    format!("{:02}:{:02}", minutes / 60, minutes % 60)
}

fn parse_days(text: &str) -> Result<u8> {
    let day = |name: &str| -> Result<u8> {
        let name = name.trim().to_ascii_lowercase();
        // A day is named by at least its first three letters: "mon", "mond", "monday"; a
        // prefix match the other way round would read "sun-fri" as "sun".
        const FULL: [&str; 7] = [
            "monday",
            "tuesday",
            "wednesday",
            "thursday",
            "friday",
            "saturday",
            "sunday",
        ];
        FULL.iter()
            .position(|d| name.len() >= 3 && d.starts_with(name.as_str()))
            .map(|i| i as u8)
            .with_context(|| {
                format!("`{name}` is not a weekday: use mon, tue, wed, thu, fri, sat, sun")
            })
    };
    let mut days = 0u8;
    for part in text.split(',').filter(|p| !p.trim().is_empty()) {
        match part.split_once('-') {
            Some((from, to)) => {
                let (from, to) = (day(from)?, day(to)?);
                let mut d = from;
                loop {
                    days |= 1 << d;
                    if d == to {
                        break;
                    }
                    d = (d + 1) % 7;
                }
            }
            None => days |= 1 << day(part)?,
        }
    }
    if days == 0 {
        bail!("no working days in `{text}`: give days like mon-fri");
    }
    Ok(days)
}

/// Looks up an IANA time zone name, with a message that says what to do, in the copy of
/// the time zone database built into Meridian only.
///
/// Every member's deadlines are computed from their zone on every node, so every node of
/// one version has to read a name the same way: a system's tzdata differs by machine, and
/// names only a system knows (`posix/Europe/Berlin`, a zone newer than the built-in copy)
/// would be read as UTC by everyone else. It is also quick: about 30 µs, where jiff's first
/// lookup in the system database lists every directory under `/usr/share/zoneinfo`, 0.8
/// to 1 ms, a quarter of every command's start.
pub fn time_zone(name: &str) -> Result<TimeZone> {
    let database = jiff::tz::TimeZoneDatabase::bundled();
    database.get(name).map_err(|_| {
        let names: Vec<String> = database
            .available()
            .map(|n| n.as_str().to_string())
            .collect();
        let advice = match crate::error::closest(name, names.iter().map(String::as_str)) {
            Some(near) => format!("did you mean {near}?"),
            None => "use a name like Europe/Berlin, America/Lima or Asia/Tokyo".into(),
        };
        crate::error::failure(
            crate::error::ErrorKind::Usage,
            format!("`{name}` is not a known IANA time zone: {advice}"),
        )
    })
}

/// A time zone to show times in (`--tz`, or the profile's): [`time_zone`], or the system's
/// database for a name only it knows, such as one an older build accepted at `init`.
pub fn display_zone(name: &str) -> Result<TimeZone> {
    time_zone(name).or_else(|unknown| TimeZone::get(name).map_err(|_| unknown))
}

/// Where and when one person works.
#[derive(Clone, Debug)]
pub struct Calendar {
    /// Their time zone.
    pub tz: TimeZone,
    /// Their working days and hours.
    pub hours: WorkingHours,
    /// Days they are away (holidays, leave), first and last day included, in their zone.
    pub away: Vec<(Date, Date)>,
}

/// Parses an away period as typed or stored: `2026-12-24..2027-01-02`, or one day.
pub fn parse_away(text: &str) -> Result<(Date, Date)> {
    crate::error::typed(|| {
        let text = text.trim();
        let (from, to) = text.split_once("..").unwrap_or((text, text));
        let date = |d: &str| -> Result<Date> {
            d.trim().parse::<Date>().with_context(|| {
                format!(
                    "`{}` is not a date: use 2026-12-24, or a period like 2026-12-24..2027-01-02",
                    d.trim()
                )
            })
        };
        let (from, to) = (date(from)?, date(to)?);
        if to < from {
            bail!("the period {text} ends before it starts");
        }
        if from
            .until(to)
            .map(|span| span.get_days())
            .unwrap_or(i32::MAX)
            > 366
        {
            bail!("the period {text} is longer than a year");
        }
        Ok((from, to))
    })
}

/// Adds the period `from..=to` to the periods away: overlapping or adjacent periods become
/// one, the list is sorted and each is written as [`parse_away`] reads it. Unreadable
/// periods stay as they were. `Err` names the period that already holds every day of the
/// new one.
pub fn add_away_period(
    periods: &[String],
    (from, to): (Date, Date),
) -> std::result::Result<Vec<String>, String> {
    let mut parsed: Vec<(Date, Date)> = Vec::new();
    let mut unreadable = Vec::new();
    for period in periods {
        match parse_away(period) {
            Ok((a, b)) if a <= from && to <= b => return Err(period.clone()),
            Ok(span) => parsed.push(span),
            Err(_) => unreadable.push(period.clone()),
        }
    }
    parsed.push((from, to));
    parsed.sort();
    let mut merged: Vec<(Date, Date)> = Vec::new();
    for (a, b) in parsed {
        match merged.last_mut() {
            Some(last) if last.1.tomorrow().is_ok_and(|next| a <= next) => last.1 = last.1.max(b),
            _ => merged.push((a, b)),
        }
    }
    let written = merged.into_iter().map(|(a, b)| {
        if a == b {
            a.to_string()
        } else {
            format!("{a}..{b}")
        }
    });
    Ok(written.chain(unreadable).collect())
}

/// The days away a member entry lists, as far as a deadline search can look past them: at
/// most 366 days in all (later periods, in the order listed, are left out), so a calendar
/// full of absences cannot make every deadline vanish.
pub fn away_periods(listed: &[String]) -> Vec<(Date, Date)> {
    let mut periods = Vec::new();
    let mut days: i32 = 0;
    for (from, to) in listed.iter().filter_map(|p| parse_away(p).ok()) {
        let length = from
            .until(to)
            .map_or(i32::MAX, |span| span.get_days())
            .saturating_add(1);
        if days.saturating_add(length) > 366 {
            break;
        }
        days += length;
        periods.push((from, to));
    }
    periods
}

impl Calendar {
    /// A calendar with no days away.
    pub fn new(tz: TimeZone, hours: WorkingHours) -> Calendar {
        Calendar {
            tz,
            hours,
            away: Vec::new(),
        }
    }

    /// Whether the person is away on `date` (in their zone).
    pub fn away_on(&self, date: Date) -> bool {
        self.away
            .iter()
            .any(|(from, to)| *from <= date && date <= *to)
    }

    /// Whether the person is away at `at`, and if so the last day of that absence.
    pub fn away_at(&self, at: Timestamp) -> Option<Date> {
        let date = at.to_zoned_datetime(self.tz.clone()).date();
        self.away
            .iter()
            .filter(|(from, to)| *from <= date && date <= *to)
            .map(|(_, to)| *to)
            .max()
    }

    /// The working windows `[start, end)` of one civil date in this calendar, if it is a working day.
    fn window(&self, date: Date) -> Option<(Timestamp, Timestamp)> {
        if !self.hours.works_on(date.weekday()) || self.away_on(date) {
            return None;
        }
        let at = |date: Date, minutes: u16| -> Option<Timestamp> {
            let time = if minutes >= 24 * 60 {
                return date
                    .tomorrow()
                    .ok()?
                    .to_datetime(Time::midnight())
                    .to_zoned_datetime(self.tz.clone())
                    .ok()
                    .map(|z| z.timestamp());
            } else {
                Time::new((minutes / 60) as i8, (minutes % 60) as i8, 0, 0).ok()?
            };
            // A wall-clock time skipped by a DST gap resolves to the instant after the gap
            // (jiff's "compatible" disambiguation), the same on every node.
            date.to_datetime(time)
                .to_zoned_datetime(self.tz.clone())
                .ok()
                .map(|z| z.timestamp())
        };
        // A night shift ends on the next day.
        let end_date = if self.hours.overnight() {
            date.tomorrow().ok()?
        } else {
            date
        };
        Some((at(date, self.hours.start)?, at(end_date, self.hours.end)?))
    }

    /// Adds `minutes` of this person's working time to `start`.
    ///
    /// Time outside their working windows does not count: a request made on Friday evening
    /// starts counting on Monday morning in their zone.
    pub fn add_working_minutes(&self, start: Timestamp, minutes: u32) -> Option<Timestamp> {
        let mut remaining = SignedDuration::from_mins(i64::from(minutes));
        let mut date = start.to_zoned_datetime(self.tz.clone()).date();
        // Start a day early: the person's previous working window may still be open.
        date = date.yesterday().ok()?;
        for _ in 0..MAX_DAYS_SEARCHED {
            if let Some((open, close)) = self.window(date) {
                let from = open.max(start);
                if from < close {
                    let available = close.duration_since(from);
                    if remaining <= available {
                        return from.checked_add(remaining).ok();
                    }
                    remaining -= available;
                }
            }
            date = date.tomorrow().ok()?;
        }
        None
    }

    /// The working window `[open, close)` that holds `at`, if the person is at work then.
    pub fn window_at(&self, at: Timestamp) -> Option<(Timestamp, Timestamp)> {
        let date = at.to_zoned_datetime(self.tz.clone()).date();
        // Yesterday's window is still open at `at` for a night shift.
        [date.yesterday().ok()?, date]
            .into_iter()
            .filter_map(|d| self.window(d))
            .find(|(open, close)| *open <= at && at < *close)
    }

    /// When the person's next working window opens, at or after `at` (`at` itself when
    /// they are at work): the first day that is a working day and not away.
    pub fn next_open(&self, at: Timestamp) -> Option<Timestamp> {
        if self.window_at(at).is_some() {
            return Some(at);
        }
        let mut date = at.to_zoned_datetime(self.tz.clone()).date();
        for _ in 0..MAX_DAYS_SEARCHED {
            if let Some((open, _)) = self.window(date)
                && open >= at
            {
                return Some(open);
            }
            date = date.tomorrow().ok()?;
        }
        None
    }

    /// The deadline for a response expected within `within`, counted from `start`.
    pub fn deadline(&self, start: Timestamp, within: ResponseTime) -> Option<Timestamp> {
        match within {
            ResponseTime::None => None,
            ResponseTime::WorkingMinutes(m) => self.add_working_minutes(start, m),
            ResponseTime::WorkingDays(d) => {
                self.add_working_minutes(start, d * self.hours.minutes_per_day())
            }
        }
    }
}

/// How soon a response is expected, in the responder's working time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResponseTime {
    /// No response expected (for your information).
    None,
    /// Working minutes.
    WorkingMinutes(u32),
    /// Working days (each as long as the responder's working day).
    WorkingDays(u32),
}

impl ResponseTime {
    /// Parses `none`, `30m`, `4h` or `2d` (working minutes, hours, days).
    pub fn parse(text: &str) -> Result<ResponseTime> {
        crate::error::typed(|| {
            let text = text.trim();
            if text == "none" || text == "0" {
                return Ok(ResponseTime::None);
            }
            let (number, unit) = split_unit(text);
            let n: u32 = number.parse().ok().filter(|n| *n > 0 && *n <= 10_000).with_context(|| {
            format!("`{text}` is not a response time: use none, or a number with m, h or d (working minutes, hours, days), like 4h")
        })?;
            match unit {
                "m" => Ok(ResponseTime::WorkingMinutes(n)),
                "h" => Ok(ResponseTime::WorkingMinutes(n * 60)),
                "d" => Ok(ResponseTime::WorkingDays(n)),
                _ => bail!(
                    "`{text}` is not a response time: use none, or a number with m, h or d, like 2d"
                ),
            }
        })
    }
}

impl fmt::Display for ResponseTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResponseTime::None => f.write_str("none"),
            ResponseTime::WorkingMinutes(m) if m % 60 == 0 => write!(f, "{}h", m / 60),
            ResponseTime::WorkingMinutes(m) => write!(f, "{m}m"),
            ResponseTime::WorkingDays(d) => write!(f, "{d}d"),
        }
    }
}

/// The workspace's norms: urgency levels and the escalation ladder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Norms {
    /// Urgency level name to the response time it expects.
    pub levels: BTreeMap<String, ResponseTime>,
    /// Member ids to escalate to, in order, when a deadline is missed.
    pub ladder: Vec<String>,
    /// The levels whose requests are delivered at once, even in the person's quiet hours
    /// or while they are away (others wait for their working day).
    pub interrupting: BTreeSet<String>,
}

/// The level that interrupts quiet hours unless a workspace's norms say otherwise.
pub const DEFAULT_INTERRUPTING: &str = "urgent";

/// The urgency used when an item names responders but no level.
pub const DEFAULT_URGENCY: &str = "normal";

impl Default for Norms {
    fn default() -> Self {
        let levels = [
            ("fyi", ResponseTime::None),
            ("low", ResponseTime::WorkingDays(5)),
            ("normal", ResponseTime::WorkingDays(2)),
            ("high", ResponseTime::WorkingMinutes(4 * 60)),
            ("urgent", ResponseTime::WorkingMinutes(60)),
        ];
        Norms {
            levels: levels
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
            ladder: Vec::new(),
            interrupting: BTreeSet::from([DEFAULT_INTERRUPTING.to_string()]),
        }
    }
}

impl Norms {
    /// Whether a request of this level is delivered at once, in quiet hours too.
    pub fn interrupts(&self, level: &str) -> bool {
        self.interrupting.contains(level)
    }

    /// The response time of a level, or an error listing the levels there are.
    pub fn level(&self, name: &str) -> Result<ResponseTime> {
        crate::error::typed(|| match self.levels.get(name) {
            Some(time) => Ok(*time),
            None => bail!(
                "`{name}` is not an urgency level of this workspace: use one of {}",
                self.levels_by_urgency().join(", ")
            ),
        })
    }

    /// The level names, most urgent first (a working day counted as eight hours to
    /// compare minutes with days; `none` last).
    pub fn levels_by_urgency(&self) -> Vec<&str> {
        let mut names: Vec<(&str, ResponseTime)> =
            self.levels.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        names.sort_by_key(|(name, time)| {
            let minutes = match time {
                ResponseTime::WorkingMinutes(m) => u64::from(*m),
                ResponseTime::WorkingDays(d) => u64::from(*d) * 8 * 60,
                ResponseTime::None => u64::MAX,
            };
            (minutes, *name)
        });
        names.into_iter().map(|(name, _)| name).collect()
    }
}

/// Parses a moment given on the command line: an RFC 3339 timestamp, a date or date and
/// time in the reader's zone (`2026-12-01`, `2026-12-01 17:00`), or a duration from now
/// (`3d`, `36h`, `2w`, `90m`).
pub fn parse_moment(text: &str, now: Timestamp, tz: &TimeZone) -> Result<Timestamp> {
    crate::error::typed(|| match Moment::parse(text, tz)? {
        Moment::After(duration) => now
            .checked_add(duration)
            .with_context(|| format!("`{}` is too far in the future", text.trim())),
        Moment::At(timestamp) => Ok(timestamp),
    })
}

/// A time for people, in `tz`: `Tue 2026-11-24 09:00 -05`.
pub fn show_time(ms: i64, tz: &TimeZone) -> String {
    match Timestamp::from_millisecond(ms) {
        Ok(t) => t
            .to_zoned_datetime(tz.clone())
            .strftime("%a %Y-%m-%d %H:%M %Z")
            .to_string(),
        Err(_) => "(invalid time)".into(),
    }
}

/// A moment as typed: a time, or a duration whose direction depends on the command (from
/// now for a deadline, ago for a history command).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Moment {
    /// An absolute time.
    At(Timestamp),
    /// A duration (`3d`, `36h`, `2w`, `90m`).
    After(SignedDuration),
}

impl Moment {
    /// Parses an RFC 3339 timestamp, a date or date and time in `tz`, or a duration.
    pub fn parse(text: &str, tz: &TimeZone) -> Result<Moment> {
        crate::error::typed(|| {
            let text = text.trim();
            if text.eq_ignore_ascii_case("now") {
                return Ok(Moment::After(SignedDuration::ZERO));
            }
            if let Some(duration) = parse_duration(text) {
                return Ok(Moment::After(duration));
            }
            parse_time(text, tz).map(Moment::At)
        })
    }
}

/// A moment in the past for a history command (`show --at`, `diff`): a duration means that
/// long *ago*, and a time still to come is refused.
pub fn parse_past(text: &str, now: Timestamp, tz: &TimeZone) -> Result<Timestamp> {
    crate::error::typed(|| {
        let at = match Moment::parse(text, tz)? {
            Moment::After(duration) => now
                .checked_sub(duration)
                .with_context(|| format!("`{}` is too far in the past", text.trim()))?,
            Moment::At(at) => at,
        };
        if at > now {
            bail!(
                "`{}` is in the future: history reaches up to now (a duration like 2d means 2 days ago)",
                text.trim()
            );
        }
        Ok(at)
    })
}

/// When a comment period given as `text` closes, opened at `now` for people with these
/// calendars: a duration is counted in each one's own working time and the period closes
/// when every one of them has had it (`0m` closes it at once); a time is absolute and must
/// not be past.
pub fn period_end(
    text: &str,
    now: Timestamp,
    tz: &TimeZone,
    responders: &[Calendar],
) -> Result<Timestamp> {
    crate::error::typed(|| {
        match Moment::parse(text, tz)? {
            Moment::At(at) if at < now => bail!(
                "`{}` is in the past: a comment period closes at a later time (or give a duration like 3d)",
                text.trim()
            ),
            Moment::At(at) => Ok(at),
            Moment::After(duration) if duration.is_zero() => Ok(now),
            Moment::After(duration) => {
                let minutes = u32::try_from(duration.as_mins()).unwrap_or(u32::MAX);
                let unit = text.trim().chars().last();
                let mut end = now;
                for calendar in responders {
                    // Days and weeks are their working days; minutes and hours their working time.
                    let theirs = match unit {
                        Some('d') => (minutes / (24 * 60)) * calendar.hours.minutes_per_day(),
                        Some('w') => {
                            (minutes / (7 * 24 * 60))
                                * calendar.hours.days.count_ones()
                                * calendar.hours.minutes_per_day()
                        }
                        _ => minutes,
                    };
                    let closes = calendar.add_working_minutes(now, theirs).with_context(|| {
                    "a responder's calendar has no working time: give the period an end date instead"
                })?;
                    end = end.max(closes);
                }
                if responders.is_empty() {
                    end = now.checked_add(duration)?;
                }
                Ok(end)
            }
        }
    })
}

fn parse_time(text: &str, tz: &TimeZone) -> Result<Timestamp> {
    if let Ok(timestamp) = text.parse::<Timestamp>() {
        return Ok(timestamp);
    }
    let civil = text.parse::<jiff::civil::DateTime>().or_else(|_| {
        text.parse::<Date>()
            .map(|d| d.to_datetime(Time::midnight()))
    });
    match civil {
        Ok(datetime) => Ok(datetime
            .to_zoned_datetime(tz.clone())
            .with_context(|| format!("`{text}` does not exist in your time zone"))?
            .timestamp()),
        Err(_) => bail!(
            "`{text}` is not a date or duration: use a date (YYYY-MM-DD), a date and time (YYYY-MM-DDTHH:MM) in your zone, an RFC 3339 time, `now`, or a duration like 3d, 36h, 2w"
        ),
    }
}

/// Splits `12h` into `("12", "h")`; the unit is the last character, whatever its width.
fn split_unit(text: &str) -> (&str, &str) {
    match text.char_indices().last() {
        Some((at, _)) => text.split_at(at),
        None => ("", ""),
    }
}

fn parse_duration(text: &str) -> Option<SignedDuration> {
    let (number, unit) = split_unit(text);
    let n: i64 = number.parse().ok().filter(|n| *n >= 0 && *n <= 100_000)?;
    let minutes = match unit {
        "m" => n,
        "h" => n * 60,
        "d" => n * 24 * 60,
        "w" => n * 7 * 24 * 60,
        _ => return None,
    };
    Some(SignedDuration::from_mins(minutes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn calendar(zone: &str, hours: &str, days: &str) -> Calendar {
        Calendar::new(
            time_zone(zone).unwrap(),
            WorkingHours::parse(hours, days).unwrap(),
        )
    }

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    #[test]
    fn periods_away_merge_when_they_touch() {
        let day = |d: &str| d.parse::<Date>().unwrap();
        let have = [
            "2026-12-24..2027-01-02".to_string(),
            "2026-11-02".to_string(),
        ];
        assert_eq!(
            add_away_period(&have, (day("2026-12-25"), day("2026-12-25"))),
            Err("2026-12-24..2027-01-02".to_string())
        );
        assert_eq!(
            add_away_period(&have, (day("2026-12-20"), day("2026-12-26"))).unwrap(),
            ["2026-11-02", "2026-12-20..2027-01-02"]
        );
        // The day after a period joins it; a day's gap does not.
        assert_eq!(
            add_away_period(&have, (day("2026-11-03"), day("2026-11-03"))).unwrap(),
            ["2026-11-02..2026-11-03", "2026-12-24..2027-01-02"]
        );
        assert_eq!(
            add_away_period(&have, (day("2026-11-04"), day("2026-11-04"))).unwrap(),
            ["2026-11-02", "2026-11-04", "2026-12-24..2027-01-02"]
        );
    }

    #[test]
    fn an_unknown_urgency_lists_the_levels_most_urgent_first() {
        let norms = Norms::default();
        assert_eq!(
            norms.levels_by_urgency(),
            ["urgent", "high", "normal", "low", "fyi"]
        );
        let error = norms.level("soon").unwrap_err().to_string();
        assert!(
            error.ends_with("use one of urgent, high, normal, low, fyi"),
            "{error}"
        );
    }

    /// Each row: calendar, start, response time, expected deadline.
    #[test]
    fn deadlines_count_working_time_in_the_responders_zone() {
        let cases = [
            // Within one working day.
            (
                "Europe/Berlin",
                "2026-11-24T09:00:00+01:00",
                "4h",
                "2026-11-24T13:00:00+01:00",
            ),
            // Asked in the evening: counting starts next morning.
            (
                "Europe/Berlin",
                "2026-11-24T19:00:00+01:00",
                "1h",
                "2026-11-25T10:00:00+01:00",
            ),
            // Asked on Friday afternoon: runs over the weekend into Monday.
            (
                "Europe/Berlin",
                "2026-11-27T15:00:00+01:00",
                "4h",
                "2026-11-30T11:00:00+01:00",
            ),
            // Two working days from Thursday noon: Monday noon.
            (
                "Europe/Berlin",
                "2026-11-26T12:00:00+01:00",
                "2d",
                "2026-11-30T12:00:00+01:00",
            ),
            // New York leaves DST on Sunday 2026-11-01: a Friday afternoon ask with 4 working
            // hours lands at 11:00 EST on Monday, not 10:00 or 12:00.
            (
                "America/New_York",
                "2026-10-30T15:00:00-04:00",
                "4h",
                "2026-11-02T11:00:00-05:00",
            ),
            // And enters DST on 2026-03-08.
            (
                "America/New_York",
                "2026-03-06T16:00:00-05:00",
                "2h",
                "2026-03-09T10:00:00-04:00",
            ),
        ];
        for (zone, start, within, expected) in cases {
            let deadline = calendar(zone, "09:00-17:00", "mon-fri")
                .deadline(at(start), ResponseTime::parse(within).unwrap())
                .unwrap();
            assert_eq!(deadline, at(expected), "{zone} {start} + {within}");
        }
    }

    #[test]
    fn an_asker_in_tokyo_and_a_responder_in_new_york_across_the_dst_weekend() {
        // Asked at 09:00 Monday in Tokyo = 19:00 Sunday in New York (still EST after the
        // change): the responder's clock starts at 09:00 Monday EST.
        let asked = at("2026-11-02T09:00:00+09:00");
        let responder = calendar("America/New_York", "09:00-17:00", "mon-fri");
        let deadline = responder
            .deadline(asked, ResponseTime::WorkingMinutes(60))
            .unwrap();
        assert_eq!(deadline, at("2026-11-02T10:00:00-05:00"));
        let tokyo = time_zone("Asia/Tokyo").unwrap();
        assert_eq!(
            deadline
                .to_zoned_datetime(tokyo)
                .strftime("%Y-%m-%d %H:%M")
                .to_string(),
            "2026-11-03 00:00"
        );
    }

    #[test]
    fn fyi_has_no_deadline_and_an_empty_calendar_gives_up() {
        let c = calendar("Asia/Tokyo", "09:00-17:00", "mon-fri");
        assert_eq!(
            c.deadline(at("2026-11-24T00:00:00Z"), ResponseTime::None),
            None
        );
    }

    #[test]
    fn working_hours_parse_and_print() {
        let h = WorkingHours::parse("08:30-16:00", "sun-thu").unwrap();
        assert_eq!(h.hours_text(), "08:30-16:00");
        assert_eq!(h.days_text(), "mon,tue,wed,thu,sun");
        assert_eq!(
            WorkingHours::parse("9:00-17:00", "mon,wed")
                .unwrap()
                .days_text(),
            "mon,wed"
        );
        // A night shift runs past midnight; `9-5` says how to write hours.
        let night = WorkingHours::parse("22:00-06:00", "mon-fri").unwrap();
        assert_eq!(night.minutes_per_day(), 8 * 60);
        let unclear = WorkingHours::parse("9-5", "mon").unwrap_err().to_string();
        assert!(unclear.contains("24-hour HH:MM-HH:MM"), "{unclear}");
        for (hours, days) in [
            ("09:00-09:00", "mon-fri"),
            ("9-17", "mon"),
            ("9am", "mon"),
            ("09:00-17:00", "funday"),
            ("25:00-26:00", "mon"),
        ] {
            assert!(WorkingHours::parse(hours, days).is_err(), "{hours} {days}");
        }
    }

    #[test]
    fn moments_parse_in_the_readers_zone() {
        let now = at("2026-11-24T12:00:00Z");
        let lima = time_zone("America/Lima").unwrap();
        assert_eq!(
            parse_moment("3d", now, &lima).unwrap(),
            at("2026-11-27T12:00:00Z")
        );
        assert_eq!(
            parse_moment("2026-12-01", now, &lima).unwrap(),
            at("2026-12-01T00:00:00-05:00")
        );
        assert_eq!(
            parse_moment("2026-12-01T17:00", now, &lima).unwrap(),
            at("2026-12-01T17:00:00-05:00")
        );
        assert!(parse_moment("next tuesday", now, &lima).is_err());
        assert!(time_zone("Mars/Olympus").is_err());
        // Names only a system's tzdata may have are refused, not read differently by
        // different machines; the built-in copy takes any case, as the system's does.
        assert!(time_zone("posix/Europe/Berlin").is_err());
        assert!(time_zone("right/Asia/Tokyo").is_err());
        assert_eq!(
            time_zone("europe/berlin").unwrap().iana_name(),
            Some("Europe/Berlin")
        );
        assert!(display_zone("Mars/Olympus").is_err());
        assert!(ResponseTime::parse("4x").is_err());
        assert!(ResponseTime::parse("1é").is_err());
        assert!(ResponseTime::parse("").is_err());
        assert!(parse_moment("1é", now, &lima).is_err());
    }

    #[test]
    fn a_period_closes_when_every_responder_has_had_that_much_of_their_own_time() {
        let tokyo = calendar("Asia/Tokyo", "09:00-17:00", "mon-fri");
        let lima = calendar("America/Lima", "09:00-17:00", "mon-fri");
        let utc = TimeZone::UTC;
        // Monday 10:00 in Tokyo is Sunday 20:00 in Lima. Lima's working day starts Monday
        // 09:00 there and ends 17:00 (Tuesday 07:00 in Tokyo); Tokyo's 8 working hours from
        // 10:00 run into Tuesday 10:00. The period closes when both have had theirs.
        let now = at("2026-11-23T10:00:00+09:00");
        let both = [tokyo.clone(), lima.clone()];
        assert_eq!(
            period_end("1d", now, &utc, std::slice::from_ref(&lima)).unwrap(),
            at("2026-11-23T17:00:00-05:00")
        );
        assert_eq!(
            period_end("1d", now, &utc, std::slice::from_ref(&tokyo)).unwrap(),
            at("2026-11-24T10:00:00+09:00")
        );
        assert_eq!(
            period_end("1d", now, &utc, &both).unwrap(),
            at("2026-11-24T10:00:00+09:00")
        );
        // Hours are working hours too; a week is a working week.
        assert_eq!(
            period_end("4h", now, &utc, std::slice::from_ref(&lima)).unwrap(),
            at("2026-11-23T13:00:00-05:00")
        );
        assert_eq!(
            period_end("1w", now, &utc, std::slice::from_ref(&lima)).unwrap(),
            at("2026-11-27T17:00:00-05:00")
        );
        // Days away do not count.
        let mut away = lima.clone();
        away.away
            .push(parse_away("2026-11-23..2026-11-24").unwrap());
        assert_eq!(
            period_end("1d", now, &utc, std::slice::from_ref(&away)).unwrap(),
            at("2026-11-25T17:00:00-05:00")
        );
        // `0m` closes at once; a date is absolute, and the past is refused.
        assert_eq!(period_end("0m", now, &utc, &both).unwrap(), now);
        assert_eq!(
            period_end("2026-12-01", now, &utc, &both).unwrap(),
            at("2026-12-01T00:00:00Z")
        );
        let past = period_end("2026-11-01", now, &utc, &both).unwrap_err();
        assert!(past.to_string().contains("in the past"), "{past}");
        // With no responder, a duration is wall-clock time.
        assert_eq!(
            period_end("2d", now, &utc, &[]).unwrap(),
            at("2026-11-25T10:00:00+09:00")
        );
    }

    #[test]
    fn history_reads_a_duration_as_ago_and_refuses_the_future() {
        let now = at("2026-11-24T12:00:00Z");
        let utc = TimeZone::UTC;
        assert_eq!(
            parse_past("1m", now, &utc).unwrap(),
            at("2026-11-24T11:59:00Z")
        );
        assert_eq!(
            parse_past("2d", now, &utc).unwrap(),
            at("2026-11-22T12:00:00Z")
        );
        assert!(parse_past("2026-11-25", now, &utc).is_err());
        assert!(parse_away("2026-12-02..2026-12-01").is_err());
        assert!(parse_away("2026-12-24..2028-01-02").is_err());
        assert_eq!(
            parse_away("2026-12-25").unwrap(),
            ("2026-12-25".parse().unwrap(), "2026-12-25".parse().unwrap())
        );
    }

    #[test]
    fn a_night_shift_counts_its_hours_across_midnight() {
        let night = calendar("Europe/Berlin", "22:00-06:00", "mon-fri");
        // Asked Monday 21:00: the shift starts at 22:00, four hours in is Tuesday 02:00.
        assert_eq!(
            night.add_working_minutes(at("2026-11-23T21:00:00+01:00"), 4 * 60),
            Some(at("2026-11-24T02:00:00+01:00"))
        );
        // Asked Tuesday 05:00, inside Monday's shift: one hour left there, three on Tuesday's.
        assert_eq!(
            night.add_working_minutes(at("2026-11-24T05:00:00+01:00"), 4 * 60),
            Some(at("2026-11-25T01:00:00+01:00"))
        );
        // Asked Friday 23:00: Friday's shift runs into Saturday, then Monday night.
        assert_eq!(
            night.add_working_minutes(at("2026-11-27T23:00:00+01:00"), 8 * 60),
            Some(at("2026-11-30T23:00:00+01:00"))
        );
    }
}
