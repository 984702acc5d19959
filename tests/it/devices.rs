//! Several devices per person: a device added with a one-time code reads everything (also
//! after key rotations), writes as its member, and the others see one person.

use crate::relays::{Team, comment_bodies, push, sync, titles, unique};
use crate::support::Home;

const FOUR: [(&str, &str); 4] = [
    ("Ana", "Asia/Tokyo"),
    ("Bo", "Europe/Berlin"),
    ("Cy", "America/Lima"),
    ("Dee", "Africa/Nairobi"),
];

/// A fresh home on a new device of the person `of` is.
fn new_device(team: &Team, of: &Home, dir: &str) -> Home {
    let home = team.world.home_in(dir, "Ana", "Asia/Tokyo");
    let code = of.ok(&["device", "add"]);
    home.ok(&["device", "join", code.trim()]);
    home
}

#[test]
fn a_device_added_after_a_rotation_reads_everything_writes_as_its_member_and_gets_the_next_key() {
    let team = Team::new(&FOUR);
    let [ana, bo, _cy, dee] = [
        &team.homes[0],
        &team.homes[1],
        &team.homes[2],
        &team.homes[3],
    ];
    let before = unique("BeforeAnyRemoval");
    let thread = ana.create(&["thread", "new", &before, "-m", "from the start"]);
    team.sync_until_quiet(&[ana, bo, dee]);
    ana.ok(&["member", "remove", "Cy"]);
    let after = unique("AfterCyLeft");
    ana.create(&["thread", "new", &after, "-m", "under the new key"]);
    push(ana);

    // Ana's laptop joins with a code from her first device.
    let laptop = new_device(&team, ana, "ana-laptop");
    let seen = titles(&laptop);
    assert!(
        seen.contains(&before) && seen.contains(&after),
        "the laptop reads everything: {seen:?}"
    );
    let listed = laptop.json(&["device", "list"]);
    assert_eq!(listed["devices"].as_array().unwrap().len(), 2, "{listed}");
    assert_eq!(listed["member"]["name"], "Ana");

    // It writes as Ana: the others see Ana, one person.
    let from_laptop = unique("FromTheLaptop");
    laptop.ok(&["reply", &thread, "-m", &from_laptop]);
    push(&laptop);
    sync(bo);
    let shown = bo.json(&["show", &thread]);
    let reply = shown["comments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["body"] == from_laptop.as_str())
        .expect("Bo has the laptop's reply");
    assert_eq!(reply["by"]["name"], "Ana", "{reply}");
    let members = bo.json(&["member", "list"]);
    assert_eq!(
        members
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["name"] == "Ana")
            .count(),
        1,
        "one person: {members}"
    );

    // Ana removes Dee from her first device: the new key reaches the laptop too.
    sync(ana);
    ana.ok(&["member", "remove", "Dee"]);
    push(ana);
    sync(bo);
    let later = unique("AfterDeeLeft");
    bo.ok(&["reply", &thread, "-m", &later]);
    push(bo);
    sync(&laptop);
    assert!(
        comment_bodies(&laptop, &thread).contains(&later),
        "the laptop reads what Bo wrote under the key made after it joined"
    );
    // A code adds one device: a second device with the same code is refused.
    let code = ana.ok(&["device", "add"]);
    let tablet = team.world.home_in("ana-tablet", "Ana", "Asia/Tokyo");
    let desk = team.world.home_in("ana-desk", "Ana", "Asia/Tokyo");
    tablet.ok(&["device", "join", code.trim()]);
    let refused = desk.err(&["device", "join", code.trim()]);
    assert!(refused.contains("already used"), "{refused}");
}
