//! Response deadlines: counted in the responder's working hours and zone, shown in the
//! reader's zone, correct across daylight-saving changes.

use jiff::Timestamp;
use meridian::id::Id;
use meridian::inbox;
use meridian::index::{AskSummary, DocSummary};
use meridian::norms::{Calendar, ResponseTime, WorkingHours, time_zone};
use meridian::workspace::{Member, WorkspaceState};

use crate::support::{World, sync_pair};

fn ms(text: &str) -> i64 {
    text.parse::<Timestamp>().unwrap().as_millisecond()
}

fn member(id: &str, tz: &str, hours: &str, days: &str) -> Member {
    Member {
        id: id.into(),
        name: id.into(),
        keys: vec![id.into()],
        tz: tz.into(),
        hours: hours.into(),
        days: days.into(),
        verified: true,
        invited_by: None,
        removed: false,
        removed_at: None,
        lock: None,
        devices: Vec::new(),
        encryption: None,
        joined: None,
        admin: false,
        away: Vec::new(),
        shown: String::new(),
    }
}

fn thread_asking(member: &str, by: &str, urgency: &str, at: i64) -> (Id, DocSummary) {
    let summary = DocSummary {
        workspace: vec![0; 16],
        kind: meridian::doc::Kind::Thread,
        title: "Question".into(),
        state: "open".into(),
        closes: None,
        author: by.into(),
        created: at,
        updated: at,
        last_author: by.into(),
        heads: vec![],
        changes: 1,
        asks: vec![AskSummary {
            member: member.into(),
            urgency: urgency.into(),
            at,
            by: by.into(),
            responded: None,
            declined: None,
        }],
        ..DocSummary::empty(meridian::doc::Kind::Thread)
    };
    (Id([7; 16]), summary)
}

/// Each row: asked at (instant), urgency, the New York responder's deadline.
#[test]
fn a_tokyo_asker_and_a_new_york_responder_over_the_dst_weekend() {
    let state = WorkspaceState {
        members: vec![
            member("tokyo", "Asia/Tokyo", "09:00-18:00", "mon-fri"),
            member("nyc", "America/New_York", "09:00-17:00", "mon-fri"),
        ],
        ..Default::default()
    };
    let cases = [
        // Friday 10:00 in Tokyo is Thursday 21:00 in New York (EDT): Friday 09:00 + 4h.
        (
            "2026-10-30T10:00:00+09:00",
            "high",
            "2026-10-30T13:00:00-04:00",
        ),
        // Friday 16:00 EDT + 4h of work: 1h on Friday, then 3h on Monday, now EST.
        (
            "2026-10-30T16:00:00-04:00",
            "high",
            "2026-11-02T12:00:00-05:00",
        ),
        // Saturday, the night the clocks go back: nothing counts until Monday 09:00 EST.
        (
            "2026-10-31T23:00:00-04:00",
            "urgent",
            "2026-11-02T10:00:00-05:00",
        ),
        // Two working days from Friday noon EDT: Tuesday noon EST.
        (
            "2026-10-30T12:00:00-04:00",
            "normal",
            "2026-11-03T12:00:00-05:00",
        ),
    ];
    for (asked, urgency, expected) in cases {
        let docs = vec![thread_asking("nyc", "tokyo", urgency, ms(asked))];
        let requests = inbox::requests("nyc", &docs, &state, ms(asked));
        assert_eq!(requests.len(), 1);
        assert_eq!(
            requests[0].deadline,
            Some(ms(expected)),
            "asked {asked} ({urgency})"
        );
        assert!(!requests[0].overdue);
        let late = inbox::requests("nyc", &docs, &state, ms(expected) + 1);
        assert!(late[0].overdue, "overdue one millisecond after {expected}");
    }
    // fyi asks for no response by any time.
    let docs = vec![thread_asking(
        "nyc",
        "tokyo",
        "fyi",
        ms("2026-10-30T10:00:00Z"),
    )];
    assert!(
        inbox::requests("nyc", &docs, &state, 0).is_empty(),
        "fyi waits for nobody"
    );
}

#[test]
fn the_same_instant_in_every_readers_zone() {
    let deadline = Calendar::new(
        time_zone("America/New_York").unwrap(),
        WorkingHours::parse("09:00-17:00", "mon-fri").unwrap(),
    )
    .deadline(
        "2026-03-06T16:00:00-05:00".parse().unwrap(),
        ResponseTime::WorkingMinutes(120),
    )
    .unwrap();
    // Spring forward on 2026-03-08: Monday 10:00 is EDT.
    assert_eq!(
        deadline,
        "2026-03-09T10:00:00-04:00".parse::<Timestamp>().unwrap()
    );
    let shown = |zone: &str| {
        deadline
            .to_zoned_datetime(time_zone(zone).unwrap())
            .strftime("%Y-%m-%d %H:%M %:z")
            .to_string()
    };
    assert_eq!(shown("Asia/Tokyo"), "2026-03-09 23:00 +09:00");
    assert_eq!(shown("Europe/Berlin"), "2026-03-09 15:00 +01:00");
    assert_eq!(shown("America/Lima"), "2026-03-09 09:00 -05:00");
}

#[test]
fn inbox_deadlines_through_the_cli_use_the_responders_calendar_and_the_readers_zone() {
    let world = World::new();
    let homes = world.team(&[("Ana", "Asia/Tokyo"), ("Bo", "America/New_York")]);
    let (ana, bo) = (&homes[0], &homes[1]);
    let t = ana.create(&[
        "thread",
        "new",
        "Which port?",
        "-m",
        "8080 or 9090",
        "--ask",
        "Bo",
        "--urgency",
        "high",
    ]);
    sync_pair(&world, ana, bo);
    let inbox = bo.json(&["inbox"]);
    let request = &waiting(&inbox)[0];
    assert_eq!(request["id"], t.as_str());
    assert_eq!(request["need"]["asked_by"]["name"], "Ana");
    assert_eq!(request["urgency"], "high");
    let asked: Timestamp = request["need"]["asked_at"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let deadline: Timestamp = request["deadline"].as_str().unwrap().parse().unwrap();
    let nyc = Calendar::new(
        time_zone("America/New_York").unwrap(),
        WorkingHours::default(),
    );
    assert_eq!(
        deadline,
        nyc.deadline(asked, ResponseTime::WorkingMinutes(240))
            .unwrap()
    );
    let offset = |text: &str| text[text.len() - 6..].to_string();
    assert!(
        ["-05:00", "-04:00"].contains(&offset(request["deadline"].as_str().unwrap()).as_str()),
        "Bo reads New York time"
    );
    // Ana reads the same deadline in Tokyo time.
    let shown = ana.json(&["show", &t]);
    let ana_deadline = shown["asks"][0]["deadline"].as_str().unwrap();
    assert_eq!(offset(ana_deadline), "+09:00");
    assert_eq!(ana_deadline.parse::<Timestamp>().unwrap(), deadline);
    assert!(
        waiting(&ana.json(&["inbox"])).is_empty(),
        "Ana was not asked"
    );
    // Once Bo replies, the request leaves his inbox on both nodes.
    bo.ok(&["reply", &t, "-m", "9090"]);
    assert!(waiting(&bo.json(&["inbox"])).is_empty());
    sync_pair(&world, bo, ana);
    assert!(ana.json(&["show", &t])["asks"][0]["responded"].is_string());
}

#[test]
fn norms_and_the_escalation_ladder_are_workspace_settings() {
    let world = World::new();
    let homes = world.team(&[("Ana", "Asia/Tokyo"), ("Bo", "America/Lima")]);
    let ana = &homes[0];
    ana.ok(&["workspace", "norm", "high", "2h"]);
    ana.ok(&["workspace", "norm", "blocker", "30m", "--new"]);
    ana.ok(&["workspace", "ladder", "Bo", "Ana"]);
    assert!(
        ana.err(&["workspace", "norm", "high", "soon"])
            .contains("not a response time")
    );
    let norms = ana.json(&["workspace", "norms"]);
    let within = |name: &str| {
        norms["levels"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["name"] == name)
            .unwrap()["within"]
            .clone()
    };
    assert_eq!(within("high"), "2h");
    assert_eq!(within("blocker"), "30m");
    assert_eq!(within("normal"), "2d");
    let ladder: Vec<&str> = norms["ladder"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(ladder, ["Bo", "Ana"]);
    ana.ok(&[
        "thread",
        "new",
        "Outage",
        "-m",
        "db down",
        "--ask",
        "Bo",
        "--urgency",
        "blocker",
    ]);
}

#[test]
fn a_missed_deadline_escalates_along_the_ladder_in_every_inbox() {
    let world = World::new();
    let homes = world.team(&[
        ("Ana", "Asia/Tokyo"),
        ("Bo", "America/Lima"),
        ("Cy", "Europe/Berlin"),
    ]);
    let (ana, bo, cy) = (&homes[0], &homes[1], &homes[2]);
    ana.ok(&["workspace", "ladder", "Cy"]);
    let t = ana.create(&[
        "thread",
        "new",
        "Prod is down",
        "-m",
        "Can you look?",
        "--ask",
        "Bo",
        "--urgency",
        "urgent",
    ]);
    for home in [bo, cy] {
        sync_pair(&world, ana, home);
    }
    let now = waiting(&bo.json(&["inbox"]));
    assert_eq!(now[0]["id"], t.as_str());
    assert_eq!(now[0]["overdue"], false);
    assert!(
        waiting(&cy.json(&["inbox"])).is_empty(),
        "not escalated yet"
    );
    // A week later Bo has not answered: overdue for him, escalated to Cy with a fresh
    // deadline in Cy's working hours.
    let later = waiting(&bo.json(&["inbox", "--at", "7d"]));
    assert_eq!(later[0]["overdue"], true);
    let cy_later = waiting(&cy.json(&["inbox", "--at", "7d"]));
    let request = &cy_later[0];
    assert_eq!(request["id"], t.as_str());
    assert_eq!(request["need"]["escalated_from"]["name"], "Bo");
    let deadline = request["deadline"].as_str().unwrap();
    assert!(
        deadline.ends_with("+01:00") || deadline.ends_with("+02:00"),
        "Cy reads Berlin time: {request}"
    );
    assert!(
        cy.ok(&["inbox", "--at", "7d"])
            .contains("ESCALATED to you: Bo did not answer")
    );
    // Bo's reply settles it for everyone.
    bo.ok(&["reply", &t, "-m", "on it"]);
    sync_pair(&world, bo, cy);
    assert!(waiting(&cy.json(&["inbox", "--at", "7d"])).is_empty());
}

/// What waits for the person, from `inbox --json`, across workspaces.
fn waiting(inbox: &serde_json::Value) -> Vec<serde_json::Value> {
    inbox["workspaces"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|w| w["waiting_for_you"].as_array().unwrap().clone())
        .collect()
}
