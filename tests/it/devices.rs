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

#[test]
fn a_revoked_device_reads_nothing_written_after_and_what_it_writes_is_refused() {
    let team = Team::new(&FOUR[..3]);
    let [ana, bo] = [&team.homes[0], &team.homes[1]];
    let thread = ana.create(&["thread", "new", "Launch", "-m", "when?"]);
    team.sync_until_quiet(&[ana, bo]);
    let laptop = new_device(&team, ana, "ana-laptop");
    let before = unique("BeforeRevocation");
    laptop.ok(&["reply", &thread, "-m", &before]);
    push(&laptop);
    team.sync_until_quiet(&[ana, bo]);
    assert!(comment_bodies(bo, &thread).contains(&before));

    // The laptop is lost: Ana revokes it from her first device.
    let key = laptop.json(&["device", "list"])["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["this"] == true)
        .unwrap()["key"]
        .as_str()
        .unwrap()
        .to_string();
    let said = ana.ok(&["device", "revoke", &key[..8]]);
    assert!(said.contains("Revoked device"), "{said}");
    push(ana);
    sync(bo);
    let after = unique("AfterRevocation");
    bo.ok(&["reply", &thread, "-m", &after]);
    push(bo);
    let listed = ana.json(&["device", "list"]);
    assert!(
        listed["devices"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["key"] == key.as_str() && d["revoked"].is_string()),
        "{listed}"
    );

    // What the laptop writes now is refused, by bundle or relay.
    let late = unique("FromTheRevokedLaptop");
    laptop.ok(&["reply", &thread, "-m", &late]);
    let bundle = team.world.file("laptop.bundle");
    let bundle = bundle.to_str().unwrap();
    laptop.ok(&["export", "--all", "--format", "bundle", "-o", bundle]);
    let refused = bo.err(&["merge", bundle]);
    assert!(
        refused.contains("by a device of Ana's after it was revoked"),
        "{refused}"
    );
    let said = laptop.run(&["sync"]);
    let said = String::from_utf8_lossy(&said.stderr);
    assert!(
        said.contains("revoked"),
        "the relay refuses the laptop: {said}"
    );
    sync(bo);
    assert!(!comment_bodies(bo, &thread).contains(&late));

    // With every key it holds and the relay's data, it reads nothing written after.
    let workspace =
        meridian::id::Id::parse(ana.json(&["workspace", "list"])[0]["id"].as_str().unwrap())
            .unwrap();
    let mut relay = team.relay;
    relay.stop();
    let logged = crate::epochs::relay_envelopes(&relay, workspace);
    let reads = crate::epochs::readable(&laptop, &logged);
    assert!(
        reads.contains(&before),
        "control: it reads what came before"
    );
    assert!(
        !reads.contains(&after),
        "the revoked laptop decrypted Bo's reply"
    );
}

#[test]
fn concurrent_removals_by_the_creators_two_devices_converge_and_neither_removed_member_reads_on() {
    let team = Team::new(&FOUR);
    let [ana, bo, cy, dee] = [
        &team.homes[0],
        &team.homes[1],
        &team.homes[2],
        &team.homes[3],
    ];
    let thread = ana.create(&["thread", "new", "Plans", "-m", "what next?"]);
    team.sync_until_quiet(&[ana, bo, cy, dee]);
    let laptop = new_device(&team, ana, "ana-laptop");
    team.sync_until_quiet(&[&laptop, ana, bo]);

    // Offline, each of Ana's devices removes someone.
    ana.ok(&["member", "remove", "Cy"]);
    laptop.ok(&["member", "remove", "Dee"]);
    push(ana);
    push(&laptop);
    team.sync_until_quiet(&[ana, &laptop, bo, ana, &laptop, bo]);
    for home in [ana, &laptop, bo] {
        let members = home.json(&["member", "list"]);
        let removed: Vec<&str> = members
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["removed"] == true)
            .map(|m| m["name"].as_str().unwrap())
            .collect();
        assert_eq!(removed.len(), 2, "{}: {members}", home.name());
    }
    let after = unique("AfterBothRemovals");
    bo.ok(&["reply", &thread, "-m", &after]);
    push(bo);
    team.sync_until_quiet(&[ana, &laptop]);
    assert!(comment_bodies(ana, &thread).contains(&after));
    assert!(comment_bodies(&laptop, &thread).contains(&after));
    let workspace =
        meridian::id::Id::parse(ana.json(&["workspace", "list"])[0]["id"].as_str().unwrap())
            .unwrap();
    let mut relay = team.relay;
    relay.stop();
    let logged = crate::epochs::relay_envelopes(&relay, workspace);
    for removed in [cy, dee] {
        let reads = crate::epochs::readable(removed, &logged);
        assert!(
            !reads.contains(&after),
            "{} decrypted what Bo wrote after both removals",
            removed.name()
        );
    }
}

/// A newcomer whose key reached them only from a device added after a rotation: that
/// device's own entry is sealed under the key it shares, so the newcomer opens it with the
/// secret before it can check who shared it (the secret is the epoch's: its record commits
/// to it), then counts the device, adopts the share, and writes under the new key.
#[test]
fn a_newcomer_whose_key_came_from_a_device_added_after_a_rotation_reads_and_writes() {
    let team = Team::new(&FOUR[..3]);
    let [ana, bo] = [&team.homes[0], &team.homes[1]];
    // Bo invites Dee before anyone is removed: the code carries no key epoch.
    let code = bo.ok(&["invite"]);
    ana.ok(&["member", "remove", "Cy"]);
    let after = unique("AfterCyLeft");
    ana.create(&["thread", "new", &after, "-m", "under the new key"]);
    push(ana);
    let laptop = new_device(&team, ana, "ana-laptop");
    push(&laptop);

    let dee = team.world.person("Dee", "Africa/Nairobi");
    dee.ok(&["join", code.trim()]);
    push(&dee);
    // The laptop is the first to see Dee: the new key reaches Dee from it alone.
    sync(&laptop);
    push(&laptop);
    sync(&dee);
    let seen = titles(&dee);
    assert!(
        seen.contains(&after),
        "Dee reads what was written under the key the laptop shared: {seen:?}"
    );
    let keys = dee.json(&["workspace", "keys"]);
    assert!(
        !["first", "waiting"].contains(&keys["sealing"].as_str().unwrap()),
        "Dee seals under the new key: {keys}"
    );
    let thread = dee.create(&["thread", "new", "Hello from Dee", "-m", "hi"]);
    push(&dee);
    sync(bo);
    assert!(
        titles(bo).contains(&"Hello from Dee".to_string()),
        "{thread}"
    );
}

#[test]
fn the_creators_second_device_removes_a_member_at_the_relay_too() {
    let team = Team::new(&FOUR[..3]);
    let [ana, cy] = [&team.homes[0], &team.homes[2]];
    let laptop = new_device(&team, ana, "ana-laptop");
    team.sync_until_quiet(&[&laptop, ana]);
    // Ana's first device stays offline: the laptop alone tells the relay.
    laptop.ok(&["member", "remove", "Cy"]);
    push(&laptop);
    let said = cy.run(&["sync"]);
    let said = String::from_utf8_lossy(&said.stderr);
    assert!(said.contains("removed"), "the relay refuses Cy: {said}");
}
