//! Removals that hold: a removed member's changes written after the creator's view of them
//! are refused by every node, however they travel; what a member took before the removal
//! reached them is kept by everyone (the documented window), so the documents converge.

use crate::relays::{Relay, Team, comment_bodies, push, sync, unique};
use crate::support::Home;

const FOUR: [(&str, &str); 4] = [
    ("Ana", "Asia/Tokyo"),
    ("Bo", "Europe/Berlin"),
    ("Cy", "America/Lima"),
    ("Dee", "Africa/Nairobi"),
];

/// One `meridian sync` that may fail with some relay (one is down, or refuses the device).
fn sync_any(home: &Home) -> String {
    let output = home.run(&["sync"]);
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Exports everything a home has as a bundle file; its path.
fn bundle_of(team: &Team, home: &Home, name: &str) -> String {
    let path = team.world.file(name);
    let path = path.to_str().unwrap().to_string();
    home.ok(&["export", "--all", "--format", "bundle", "-o", &path]);
    path
}

#[test]
fn a_removed_members_later_changes_are_refused_from_a_bundle_and_from_a_relay_that_missed_the_removal()
 {
    let team = Team::new(&FOUR);
    let [ana, bo, cy, dee] = [
        &team.homes[0],
        &team.homes[1],
        &team.homes[2],
        &team.homes[3],
    ];
    let mut second = Relay::start(&team.world.file("relay-two"));
    ana.ok(&["workspace", "relay", "add", &second.url()]);
    team.sync_until_quiet(&[ana, bo, cy, dee, ana, bo, cy, dee]);
    let thread = ana.create(&["thread", "new", "Release plan", "-m", "Who ships what?"]);
    let before = unique("CyBefore");
    team.sync_until_quiet(&[ana, cy]);
    cy.ok(&["reply", &thread, "-m", &before]);
    team.sync_until_quiet(&[cy, ana, bo, dee]);

    // The second relay is down while Ana removes Cy and the others hear of it: it misses
    // the removal.
    second.stop();
    ana.ok(&["member", "remove", "Cy"]);
    for home in [ana, bo, dee] {
        sync_any(home);
    }
    // Cy, who has not heard, keeps writing. The first relay refuses her; the second, back
    // up, has not heard either and takes her reply.
    let late = unique("CyLate");
    cy.ok(&["reply", &thread, "-m", &late]);
    second.restart();
    let said = sync_any(cy);
    assert!(said.contains("removed"), "the first relay tells Cy: {said}");
    let bundle = bundle_of(&team, cy, "cy-late.bundle");

    // Handed to Bo as a bundle: refused, and nothing of it merged.
    let refused = bo.err(&["merge", &bundle]);
    assert!(
        refused.contains("written by Cy after they were removed"),
        "the merge says why: {refused}"
    );
    // Forwarded by the relay that missed the removal: refused by every node.
    for home in [ana, bo, dee] {
        sync_any(home);
        sync_any(home);
        let bodies = comment_bodies(home, &thread);
        assert!(
            bodies.contains(&before),
            "{} keeps Cy's earlier reply",
            home.name()
        );
        assert!(
            !bodies.contains(&late),
            "{} took Cy's reply written after her removal: {bodies:?}",
            home.name()
        );
    }
    // The others still write and converge.
    let after = unique("BoAfter");
    bo.ok(&["reply", &thread, "-m", &after]);
    team.sync_until_quiet(&[bo, ana, dee]);
    let bodies = comment_bodies(ana, &thread);
    assert!(bodies.contains(&after));
    assert_eq!(bodies, comment_bodies(dee, &thread));
    assert_eq!(bodies, comment_bodies(bo, &thread));
}

#[test]
fn what_a_member_took_before_hearing_of_a_removal_is_kept_by_everyone_and_nothing_after() {
    let team = Team::new(&FOUR);
    let [ana, bo, cy, dee] = [
        &team.homes[0],
        &team.homes[1],
        &team.homes[2],
        &team.homes[3],
    ];
    let thread = ana.create(&["thread", "new", "Hiring", "-m", "Who do we need?"]);
    team.sync_until_quiet(&[ana, bo, cy, dee]);

    ana.ok(&["member", "remove", "Cy"]);
    push(ana);
    sync(bo);
    // Dee is offline and has not heard; Cy hands her a bundle with a reply written after.
    let window = unique("CyWindow");
    cy.ok(&["reply", &thread, "-m", &window]);
    let bundle = bundle_of(&team, cy, "cy-window.bundle");
    dee.ok(&["merge", &bundle]);
    assert!(comment_bodies(dee, &thread).contains(&window));

    // Dee hears of the removal: her node keeps what it took and passes it on, so Ana and
    // Bo take it too. Everyone converges on the same discussion: the window.
    push(dee);
    for home in [ana, bo] {
        sync(home);
    }
    let bodies = comment_bodies(dee, &thread);
    for home in [ana, bo] {
        assert_eq!(
            comment_bodies(home, &thread),
            bodies,
            "{} converges with Dee",
            home.name()
        );
    }
    assert!(bodies.contains(&window));

    // What Cy writes after that is refused by Dee too, who now knows.
    let after = unique("CyAfter");
    cy.ok(&["reply", &thread, "-m", &after]);
    let bundle = bundle_of(&team, cy, "cy-after.bundle");
    let refused = dee.err(&["merge", &bundle]);
    assert!(refused.contains("after they were removed"), "{refused}");
    assert!(!comment_bodies(dee, &thread).contains(&after));
}
