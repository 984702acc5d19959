//! Sync through a real relay on loopback: `meridian` processes and a `meridian-relay`
//! process, stopped, killed and restarted mid-scenario; what the relay stores; who it lets
//! in; forged envelopes; the daemon.

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use meridian::id::Id;
use meridian::node::{Node, append_outbox};
use meridian::seal;
use meridian::store::Record;
use meridian::workspace::Invite;
use meridian_relay::Envelope;
use meridian_relay::store::RelayStore;
use serde_json::json;

use crate::relays::{
    Guard, Team, comment_bodies, meridian, outbox, poll, push, rejected, relay_binary, signal,
    state, sync, sync_fails, titles, total, unique, wait_for, write_file,
};
use crate::support::Home;

const ZONES: [(&str, &str); 3] = [
    ("Ana", "Asia/Tokyo"),
    ("Bo", "Europe/Berlin"),
    ("Cy", "America/Lima"),
];

#[test]
fn three_nodes_converge_through_a_relay() {
    let team = Team::new(&ZONES);
    let [ana, bo, cy] = [&team.homes[0], &team.homes[1], &team.homes[2]];
    let base = "Nodes exchange sealed envelopes through a relay.\n";
    let p = ana.create(&[
        "proposal",
        "new",
        "Relay design",
        "--template",
        "rfc",
        "--decider",
        "Ana",
        "--decider",
        "Bo",
        "--section",
        &format!("Summary={base}"),
    ]);
    push(ana);
    for home in [bo, cy] {
        let reports = sync(home);
        assert!(
            reports[0]["documents"]
                .as_array()
                .unwrap()
                .contains(&p.as_str().into()),
            "{} received the proposal: {reports}",
            home.name()
        );
        assert_eq!(state(home, &p), state(ana, &p));
    }

    // Offline: everyone edits the same section and replies; Bo approves.
    let lines = [
        (ana, "Ana", "Tokyo: the relay never sees plaintext."),
        (
            bo,
            "Bo",
            "Berlin: pushes are durable before they are acknowledged.",
        ),
        (cy, "Cy", "Lima: a node resumes where it stopped."),
    ];
    for (home, name, line) in lines {
        let file = write_file(
            &team.world,
            &format!("{}-summary.md", home.name()),
            &format!("{base}{line}\n"),
        );
        home.ok(&[
            "proposal",
            "edit",
            &p,
            "--section",
            "Summary",
            "--file",
            &file,
        ]);
        home.ok(&["reply", &p, "-m", &format!("{name} has read it")]);
    }
    bo.ok(&["proposal", "approve", &p, "-m", "ship it"]);
    assert!(
        !ana.ok(&["show", &p]).contains("Berlin:"),
        "nothing travels without a sync"
    );

    // Sync in a scrambled order, Lima first, until nothing moves.
    team.sync_until_quiet(&[cy, ana, bo, ana, cy, bo]);

    let reference = state(ana, &p);
    assert_eq!(state(bo, &p), reference, "Berlin converged with Tokyo");
    assert_eq!(state(cy, &p), reference, "Lima converged with Tokyo");
    let summary = reference.1["sections"][0]["text"].as_str().unwrap();
    assert!(summary.starts_with(base), "{summary}");
    for (_, _, line) in lines {
        assert!(
            summary.contains(line),
            "every concurrent edit survives: {summary}"
        );
    }
    let mut replies: Vec<&str> = reference.1["comments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["body"].as_str().unwrap())
        .collect();
    replies.sort();
    assert_eq!(
        replies,
        ["Ana has read it", "Bo has read it", "Cy has read it"]
    );
    let approvals = reference.1["approvals"].as_array().unwrap();
    assert_eq!(approvals.len(), 1);
    assert_eq!(approvals[0]["by"]["name"], "Bo");
    for home in [ana, bo, cy] {
        let log = home.json(&["log", &p]);
        let authors: BTreeSet<&str> = log
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                assert_eq!(e["verified"], true, "{}: {e}", home.name());
                e["author"]["name"].as_str().unwrap()
            })
            .collect();
        assert_eq!(
            authors,
            BTreeSet::from(["Ana", "Bo", "Cy"]),
            "{}",
            home.name()
        );
        assert_eq!(outbox(home), 0, "{} pushed everything", home.name());
    }
}

#[test]
fn relay_restart_and_node_kill_mid_scenario() {
    let mut team = Team::new(&ZONES);
    let homes: Vec<&Home> = team.homes.iter().collect();
    let [ana, bo, cy] = [homes[0], homes[1], homes[2]];
    let t = ana.create(&["thread", "new", "Outage drill", "-m", "Who is on call?"]);
    let mut written = Vec::new();
    push(ana);
    sync(bo);
    bo.ok(&["reply", &t, "-m", "bo before the restart"]);
    written.push("bo before the restart".to_string());
    assert_eq!(total(&push(bo), "pushed"), 1);

    // The relay stops gracefully; nodes keep working offline and sync fails clearly.
    team.relay.stop();
    ana.ok(&["reply", &t, "-m", "ana while the relay is down"]);
    written.push("ana while the relay is down".to_string());
    let errors = sync_fails(ana);
    assert!(
        errors[0].contains("cannot connect"),
        "a clear error: {errors:?}"
    );
    assert_eq!(outbox(ana), 1, "the edit waits in the outbox");
    team.relay.restart();
    assert_eq!(total(&push(ana), "pushed"), 1);
    assert_eq!(outbox(ana), 0);
    // The restarted relay is the same relay (same log, same id): Cy pulls only what is new.
    let reports = sync(cy);
    assert!(total(&reports, "applied") >= 3, "{reports}");
    assert_eq!(
        total(&reports, "pulled"),
        total(&reports, "applied"),
        "{reports}"
    );
    assert!(comment_bodies(cy, &t).contains(&"ana while the relay is down".to_string()));

    // `meridian sync` killed at different points of its life: before it connects, during
    // the handshake, mid-push, mid-apply, after it finished. First, how long one takes.
    cy.ok(&["reply", &t, "-m", "cy timing"]);
    written.push("cy timing".to_string());
    let started = Instant::now();
    sync(cy);
    let span = started.elapsed().as_micros() as u64;
    let rounds = 12u64;
    let mut killed = 0;
    let mut finished = 0;
    for i in 0..=rounds + 1 {
        let home = homes[i as usize % 3];
        let body = format!("{} kill {i}", home.name());
        home.ok(&["reply", &t, "-m", &body]);
        written.push(body.clone());
        let mut child = Guard(Some(
            meridian(home, &["--json", "sync"])
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        ));
        // Denser early on, up to three times as long as a sync takes.
        std::thread::sleep(Duration::from_micros(span * 3 * i * i / (rounds * rounds)));
        let _ = child.child().kill();
        let output = child.take().wait_with_output().unwrap();
        if output.status.success() {
            finished += 1;
            let reports: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
            assert_eq!(reports["relays"][0]["ok"], true, "{reports}");
        } else {
            killed += 1;
        }
        // The killed node's store opens and holds its edit.
        assert!(
            comment_bodies(home, &t).contains(&body),
            "{} lost `{body}` after a killed sync",
            home.name()
        );
    }
    eprintln!("sync: {killed} killed, {finished} finished (span {span} µs)");
    assert!(
        killed > 0,
        "no sync was killed mid-flight; the test proved nothing"
    );

    // Several syncs of one home at once, with edits in between: they share the store.
    let children: Vec<Guard> = (0..3)
        .map(|i| {
            let body = format!("ana concurrent {i}");
            ana.ok(&["reply", &t, "-m", &body]);
            written.push(body);
            Guard(Some(
                meridian(ana, &["sync"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap(),
            ))
        })
        .collect();
    for mut child in children {
        let output = child.take().wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "concurrent sync: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    // The relay is killed (SIGKILL) right after acknowledging a push: what it acknowledged
    // survives, because it answers only once the push is durable.
    team.sync_until_quiet(&[ana, bo, cy]);
    ana.ok(&["reply", &t, "-m", "ana before the relay dies"]);
    written.push("ana before the relay dies".to_string());
    assert_eq!(total(&push(ana), "pushed"), 1);
    team.relay.kill();
    team.relay.restart();
    let reports = sync(cy);
    assert_eq!(total(&reports, "applied"), 1, "{reports}");
    assert!(comment_bodies(cy, &t).contains(&"ana before the relay dies".to_string()));

    // And killed while a sync is in flight: the sync ends (it does not hang), nothing is lost.
    bo.ok(&["reply", &t, "-m", "bo while the relay dies"]);
    written.push("bo while the relay dies".to_string());
    let mut child = Guard(Some(
        meridian(bo, &["sync"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    ));
    std::thread::sleep(Duration::from_micros(span / 3));
    team.relay.kill();
    let status = wait_for(child.child(), Duration::from_secs(20));
    assert!(status.is_some(), "a sync whose relay died must end");
    team.relay.restart();

    team.sync_until_quiet(&[cy, bo, ana]);
    let reference = state(ana, &t);
    for home in [ana, bo, cy] {
        let bodies = comment_bodies(home, &t);
        for body in &written {
            assert!(
                bodies.contains(body),
                "{} misses `{body}`; it has {bodies:?}",
                home.name()
            );
        }
        assert_eq!(bodies.len(), written.len(), "{}: {bodies:?}", home.name());
        assert_eq!(state(home, &t), reference, "{} converged", home.name());
        assert_eq!(outbox(home), 0, "{} pushed everything", home.name());
    }
}

/// Every file under `dir`, recursively.
fn files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files(&path));
        } else {
            out.push(path);
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn relay_never_stores_plaintext() {
    let mut team = Team::new(&ZONES[..2]);
    let [ana, bo] = [&team.homes[0], &team.homes[1]];
    let title = unique("CanaryTitle");
    let section = unique("CanarySection");
    let reply = unique("CanaryReply");
    let p = ana.create(&[
        "proposal",
        "new",
        &title,
        "--section",
        &format!("Summary=The secret word is {section}."),
    ]);
    push(ana);
    sync(bo);
    bo.ok(&["reply", &p, "-m", &format!("And mine is {reply}")]);
    push(bo);
    sync(ana);
    // It travelled through the relay: the other node shows it.
    let shown = bo.ok(&["show", &p]);
    assert!(
        shown.contains(&title) && shown.contains(&section),
        "{shown}"
    );
    assert!(ana.ok(&["show", &p]).contains(&reply));
    team.relay.stop();

    // What the relay stored, opened with the workspace key: the sealed plaintexts, which
    // (decompressed) hold the canaries. This proves the scans below could find them.
    let invite = Invite::decode(ana.ok(&["invite"]).trim()).unwrap();
    let workspace = invite.workspace_id().unwrap();
    let key: seal::WorkspaceKey = invite.key.as_slice().try_into().unwrap();
    let mut sealed = Vec::new();
    let mut inflated = Vec::new();
    {
        let store = RelayStore::open(team.relay.data()).unwrap();
        let entries = store.read(&workspace.0, 0, usize::MAX, usize::MAX).unwrap();
        assert!(entries.len() >= 4, "{} entries", entries.len());
        for (_, bytes) in entries {
            let envelope = Envelope::decode(&bytes).unwrap();
            let opened = seal::open(&key, &envelope).unwrap();
            let mut budget = 1 << 30;
            let changes = meridian::ingest::plaintext_changes(&opened, &mut budget).unwrap();
            let chunks = meridian::ingest::chunks(&changes, &mut budget, false).unwrap();
            for change in meridian::ingest::parse_changes(&chunks).unwrap() {
                inflated.extend_from_slice(change.raw_bytes());
            }
            sealed.push(opened);
        }
    }
    for canary in [&title, &section, &reply] {
        assert!(
            contains(&inflated, canary.as_bytes()),
            "the opened log holds `{canary}`"
        );
    }

    // Nothing on the relay's disk is readable: no canary as text, and none of the exact
    // bytes that were sealed (automerge compresses larger changes, so the canaries alone
    // would miss a plaintext store).
    let mut scanned = 0;
    let mut paths = files(team.relay.data());
    paths.push(team.relay.log_path().to_path_buf());
    for path in &paths {
        let bytes = std::fs::read(path).unwrap();
        if path.starts_with(team.relay.data()) {
            scanned += bytes.len();
        }
        for canary in [&title, &section, &reply] {
            assert!(
                !contains(&bytes, canary.as_bytes()),
                "{} holds `{canary}` in plaintext",
                path.display()
            );
        }
        for (i, plaintext) in sealed.iter().enumerate() {
            assert!(
                !contains(&bytes, plaintext),
                "{} holds the plaintext of log entry {} ({} bytes)",
                path.display(),
                i + 1,
                plaintext.len()
            );
        }
    }
    assert!(
        scanned > 4096,
        "the relay's data directory holds the log ({scanned} bytes in {paths:?})"
    );
}

#[test]
fn unauthorised_access_gets_nothing() {
    let mut team = Team::new(&[("Ana", "Asia/Tokyo"), ("Cy", "America/Lima")]);
    let url = team.relay.url();
    let (ana, cy) = (&team.homes[0], &team.homes[1]);
    let secret = unique("SecretPlan");
    ana.create(&[
        "proposal",
        "new",
        &secret,
        "--section",
        &format!("Summary={secret}"),
    ]);
    push(ana);
    assert!(titles(cy).is_empty());
    sync(cy);
    assert_eq!(
        titles(cy),
        [secret.as_str()],
        "control: a member receives it"
    );

    // (a) One invite, two devices: the relay admits the first and refuses the second.
    let code = ana.ok(&["invite"]);
    let bo = team.world.person("Bo", "Europe/Berlin");
    bo.ok(&["join", code.trim()]);
    assert_eq!(
        titles(&bo),
        [secret.as_str()],
        "Bo's join pulled the workspace"
    );
    let dee = team.world.person("Dee", "Africa/Nairobi");
    let said = dee.err(&["join", code.trim()]);
    assert!(
        said.contains("already used"),
        "the join learns the relay's refusal: {said}"
    );
    let workspaces = |home: &crate::support::Home| home.json(&["workspace", "list"]);
    assert_eq!(workspaces(&dee), json!([]), "Dee kept and received nothing");

    // (a') A stranger who even holds the workspace key signs an invite for herself: the
    // relay refuses an inviter who is not a member.
    let eve = team.world.person("Eve", "Europe/Lisbon");
    let eve_key = Node::open(eve.path()).unwrap().key().clone();
    let genuine = Invite::decode(code.trim()).unwrap();
    let forged = Invite::new(
        &eve_key,
        genuine.workspace_id().unwrap(),
        &genuine.name,
        &genuine.key,
        &genuine.creator,
        vec![url],
        jiff::Timestamp::now().as_millisecond() + 3_600_000,
    );
    let said = eve.err(&["join", &forged.encode()]);
    assert!(said.contains("not a member"), "{said}");
    assert_eq!(workspaces(&eve), json!([]), "Eve kept and received nothing");

    // (b) An expired invite: `join` refuses it; a device that joined while the relay was
    // unreachable is refused by the relay once the invite has expired.
    let gus = team.world.person("Gus", "Asia/Kolkata");
    team.relay.stop();
    let expiry = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(4);
    let short = ana.ok(&["invite", "--expires", &expiry.to_string()]);
    gus.ok(&["join", short.trim()]);
    assert!(
        jiff::Timestamp::now() < expiry,
        "the machine is too slow for this test"
    );
    let wait = expiry.duration_since(jiff::Timestamp::now());
    if wait.is_positive() {
        std::thread::sleep(wait.unsigned_abs() + Duration::from_millis(200));
    }
    let fay = team.world.person("Fay", "Australia/Sydney");
    let said = fay.err(&["join", short.trim()]);
    assert!(said.contains("expired"), "{said}");
    team.relay.restart();
    let errors = sync_fails(&gus);
    assert!(errors[0].contains("expired"), "{errors:?}");
    assert!(titles(&gus).is_empty(), "Gus received nothing");

    // (c) A removed member: refused from the creator's next sync on, and gets nothing new.
    ana.ok(&["member", "remove", "Cy"]);
    push(ana);
    let errors = sync_fails(cy);
    assert!(errors[0].contains("removed"), "{errors:?}");
    let after = unique("AfterCyLeft");
    ana.create(&["thread", "new", &after, "-m", &after]);
    push(ana);
    assert!(sync_fails(cy)[0].contains("removed"));
    assert_eq!(titles(cy), [secret.as_str()], "Cy got nothing new");
    sync(&bo);
    assert!(
        titles(&bo).contains(&after),
        "control: a member receives it"
    );
    let _ = gus.run(&["sync"]);
    assert!(titles(&gus).is_empty(), "Gus still received nothing");
}

#[test]
fn forged_envelopes_are_rejected() {
    let team = Team::new(&ZONES);
    let [ana, bo, cy] = [&team.homes[0], &team.homes[1], &team.homes[2]];
    let p = ana.create(&[
        "proposal",
        "new",
        "Forgery target",
        "--section",
        "Summary=Original text.\n",
    ]);
    team.sync_until_quiet(&[ana, bo, cy]);
    // Ana's genuine edit, not synced yet.
    let file = write_file(&team.world, "genuine.md", "Text only Ana wrote.\n");
    ana.ok(&[
        "proposal",
        "edit",
        &p,
        "--section",
        "Summary",
        "--file",
        &file,
    ]);
    let cy_before = state(cy, &p);

    let doc = Id::parse(&p).unwrap();
    let (workspace, key, ana_key, change) = {
        let node = Node::open(ana.path()).unwrap();
        let (workspace, record) = node.workspace(None).unwrap();
        let key: seal::WorkspaceKey = record.key.as_slice().try_into().unwrap();
        let Some(Record::Sealed(last)) = node.records(doc).unwrap().pop() else {
            panic!("Ana's own edit is stored as she sealed it");
        };
        let envelope = Envelope::decode(&last).unwrap();
        let ana_key = node.key().verifying_key().to_bytes();
        assert_eq!(envelope.author, ana_key);
        (
            workspace,
            key,
            ana_key,
            seal::open(&key, &envelope).unwrap(),
        )
    };
    let bo_key = {
        let node = Node::open(bo.path()).unwrap();
        // (i) Ana's change, sealed and signed by Bo; (ii) the same, signed by Bo but naming
        // Ana as its author, so its signature cannot verify.
        let resigned = seal::seal(node.key(), &key, workspace, doc, &change);
        let mut altered = seal::seal(node.key(), &key, workspace, doc, &change);
        altered.author = ana_key.to_vec();
        let txn = node.db().begin_write().unwrap();
        append_outbox(&txn, workspace, &resigned.encode()).unwrap();
        append_outbox(&txn, workspace, &altered.encode()).unwrap();
        txn.commit().unwrap();
        node.key().verifying_key().to_bytes()
    };
    assert_ne!(ana_key, bo_key);

    // The relay checks signatures, not authorship: it stores (i) and refuses (ii).
    let reports = push(bo);
    assert_eq!(total(&reports, "pushed"), 1, "{reports}");
    let refused = rejected(&reports);
    assert_eq!(refused.len(), 1, "{reports}");
    assert!(
        refused[0]["reason"]
            .as_str()
            .unwrap()
            .contains("signature does not verify"),
        "{reports}"
    );
    assert_eq!(outbox(bo), 0);

    // Members check authorship: the change's actor is Ana, its signer Bo.
    let reports = sync(cy);
    let refused = rejected(&reports);
    assert_eq!(refused.len(), 1, "{reports}");
    assert_eq!(refused[0]["id"], p.as_str());
    assert_eq!(refused[0]["by"]["id"], hex::encode(bo_key));
    let reason = refused[0]["reason"].as_str().unwrap();
    assert!(reason.contains("forged"), "{reason}");
    assert!(reason.contains(&hex::encode(ana_key)[..12]), "{reason}");
    assert_eq!(total(&reports, "applied"), 0, "{reports}");
    assert_eq!(state(cy, &p), cy_before, "Cy's document is unchanged");
    assert!(!cy.ok(&["show", &p]).contains("Text only Ana wrote"));

    // The same change, signed by its author, is taken.
    let reports = push(ana);
    assert_eq!(
        rejected(&reports).len(),
        1,
        "Ana refuses the forgery too: {reports}"
    );
    sync(cy);
    assert!(cy.ok(&["show", &p]).contains("Text only Ana wrote"));
    team.sync_until_quiet(&[ana, bo, cy]);
    let reference = state(ana, &p);
    assert_eq!(state(bo, &p), reference);
    assert_eq!(state(cy, &p), reference);
}

#[test]
fn daemon_delivers_without_commands() {
    let mut team = Team::new(&ZONES[..2]);
    let (ana, bo) = (&team.homes[0], &team.homes[1]);
    let log = team.world.file("bo-daemon.log");
    let mut daemon = crate::relays::start_daemon(bo, &log, &[]);
    let daemon_log = || crate::relays::read_log(&log);
    poll(Duration::from_secs(10), "the daemon listens", || {
        bo.path().join("daemon.sock").exists().then_some(())
    });
    let has_thread = |id: &str| {
        bo.json(&["thread", "list"])
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["id"] == id)
            .then_some(())
    };
    let reaches_ana = |t: &str, body: &str| {
        sync(ana);
        comment_bodies(ana, t)
            .contains(&body.to_string())
            .then_some(())
    };

    let t = ana.create(&["thread", "new", "Deploy window", "-m", "Friday?"]);
    push(ana);
    poll(
        Duration::from_secs(15),
        "the daemon applies Ana's thread without a command on Bo",
        || has_thread(&t),
    );
    // Bo writes while the daemon holds the database; it pushes without a sync on Bo.
    bo.ok(&["reply", &t, "-m", "Thursday is better"]);
    poll(
        Duration::from_secs(15),
        "Bo's reply reaches Ana through the daemon",
        || reaches_ana(&t, "Thursday is better"),
    );

    // The relay restarts under the daemon: Bo writes while it is down, the daemon
    // reconnects by itself, pushes that and receives what Ana writes next.
    team.relay.stop();
    bo.ok(&["reply", &t, "-m", "Written while the relay was down"]);
    team.relay.restart();
    let u = ana.create(&["thread", "new", "After the restart", "-m", "Still there?"]);
    push(ana);
    poll(
        Duration::from_secs(20),
        "the daemon reconnects and applies Ana's new thread",
        || has_thread(&u),
    );
    poll(
        Duration::from_secs(15),
        "the reply Bo wrote while the relay was down reaches Ana",
        || reaches_ana(&t, "Written while the relay was down"),
    );
    assert!(
        daemon.child().try_wait().unwrap().is_none(),
        "the daemon still runs:\n{}",
        daemon_log()
    );

    signal(daemon.child().id(), "TERM");
    let status = wait_for(daemon.child(), Duration::from_secs(10));
    assert!(
        status.is_some_and(|s| s.success()),
        "the daemon stops cleanly on SIGTERM ({status:?}):\n{}",
        daemon_log()
    );
    daemon.take().wait().unwrap();
    assert!(
        !bo.path().join("daemon.sock").exists(),
        "the daemon removes its socket"
    );
    assert_eq!(outbox(bo), 0, "the daemon pushed everything");
}

/// Product bug: a relay added to a workspace later (or one whose data was lost) receives
/// only changes made from then on, never the history: envelopes leave the outbox once the
/// relays listed at the time answered, and nothing pushes the stored records again.
#[test]
fn a_relay_added_later_receives_the_history() {
    let team = Team::new(&ZONES[..2]);
    let (ana, bo) = (&team.homes[0], &team.homes[1]);
    ana.create(&[
        "proposal",
        "new",
        "Before the move",
        "--section",
        "Summary=x",
    ]);
    team.sync_until_quiet(&[ana, bo]);
    // The team moves to a new relay: Ana moves the workspace, and Bo's node follows the
    // workspace's relays as it syncs.
    let new = crate::relays::Relay::start(&team.world.file("relay2"));
    ana.ok(&["workspace", "relay", "add", &new.url()]);
    sync(ana);
    ana.ok(&["workspace", "relay", "remove", &team.relay.url()]);
    sync(ana);
    sync(bo);
    sync(bo);
    let listed = bo.json(&["workspace", "relay", "list"]);
    assert_eq!(listed["relays"].as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed["relays"][0]["relay"], new.url().as_str(), "{listed}");
    let code = ana.ok(&["invite"]);
    let cy = team.world.person("Cy", "America/Lima");
    cy.ok(&["join", code.trim()]);
    sync(&cy);
    assert_eq!(
        titles(&cy),
        ["Before the move"],
        "a member joining through the new relay sees what was written before the move"
    );
}

/// Product bug: a relay admits the authors of pushed envelopes only once they registered
/// with it themselves, so the creator's backfill of a relay added later lost every change
/// of members who had not synced with it yet, and a newcomer joining there never saw them.
#[test]
fn a_relay_added_later_keeps_the_history_of_members_who_never_met_it() {
    let team = Team::new(&ZONES[..2]);
    let (ana, bo) = (&team.homes[0], &team.homes[1]);
    bo.create(&["thread", "new", "Written by Bo", "-m", "before the move"]);
    team.sync_until_quiet(&[ana, bo]);
    // Only the creator meets the new relay; Bo is away.
    let new = crate::relays::Relay::start(&team.world.file("relay2"));
    ana.ok(&["workspace", "relay", "add", &new.url()]);
    sync(ana);
    ana.ok(&["workspace", "relay", "remove", &team.relay.url()]);
    sync(ana);
    let code = ana.ok(&["invite"]);
    let cy = team.world.person("Cy", "America/Lima");
    cy.ok(&["join", code.trim()]);
    sync(&cy);
    assert_eq!(
        titles(&cy),
        ["Written by Bo"],
        "a member joining through the new relay sees what a member who never synced with it wrote"
    );
}

/// Product bug: a relay checks the invite's expiry when a device first registers with it,
/// so a member whose invite has since expired could never use a relay added later.
#[test]
fn a_member_whose_invite_expired_can_use_a_relay_added_later() {
    let team = Team::new(&ZONES[..1]);
    let ana = &team.homes[0];
    let expiry = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(2);
    let code = ana.ok(&["invite", "--expires", &expiry.to_string()]);
    let bo = team.world.person("Bo", "Europe/Berlin");
    bo.ok(&["join", code.trim()]);
    team.sync_until_quiet(&[ana, &bo]);
    let wait = expiry.duration_since(jiff::Timestamp::now());
    if wait.is_positive() {
        std::thread::sleep(wait.unsigned_abs() + Duration::from_millis(200));
    }
    let new = crate::relays::Relay::start(&team.world.file("relay2"));
    for home in [ana, &bo] {
        home.ok(&["workspace", "relay", "add", &new.url()]);
    }
    sync(ana);
    let output = bo.run(&["--json", "sync"]);
    let reports: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    for report in reports["relays"].as_array().unwrap() {
        assert_eq!(
            report["ok"], true,
            "a member who joined in time is refused by the new relay: {}",
            report["error"]
        );
    }
}

/// Product bug: `meridian sync` reads the outbox only on its poll timer's first tick, and a
/// round ends as soon as it is caught up with nothing queued, so a round that catches up
/// before that tick pushes nothing and still succeeds. Rare on an idle machine (about one
/// sync in a few hundred here), more frequent under load.
#[test]
fn every_sync_pushes_the_outbox() {
    let team = Team::new(&ZONES[..2]);
    let (ana, bo) = (&team.homes[0], &team.homes[1]);
    let t = ana.create(&["thread", "new", "Race", "-m", "Who pushes?"]);
    push(ana);
    sync(bo);
    // Busy threads make the timer's first tick lose the race more often.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let burners: Vec<_> = (0..2)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    std::hint::spin_loop();
                }
            })
        })
        .collect();
    let _stop = scopeguard(move || {
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for burner in burners {
            let _ = burner.join();
        }
    });
    // 25 rounds in CI; the race this guards against showed about once in a few hundred
    // idle rounds, so look harder with MERIDIAN_SYNC_RACE_ROUNDS=300.
    let rounds: usize = std::env::var("MERIDIAN_SYNC_RACE_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(25);
    for i in 0..rounds {
        bo.ok(&["reply", &t, "-m", &format!("reply {i}")]);
        let reports = sync(bo);
        assert_eq!(
            (total(&reports, "pushed"), outbox(bo)),
            (1, 0),
            "sync {i} succeeded without pushing the reply written before it: {reports}"
        );
    }
}

/// Runs `f` when dropped.
fn scopeguard(f: impl FnOnce()) -> impl Drop {
    struct Guard<F: FnOnce()>(Option<F>);
    impl<F: FnOnce()> Drop for Guard<F> {
        fn drop(&mut self) {
            if let Some(f) = self.0.take() {
                f();
            }
        }
    }
    Guard(Some(f))
}

#[test]
fn an_envelope_ahead_of_its_dependencies_is_held_then_applied() {
    let team = Team::new(&ZONES[..2]);
    let (ana, bo) = (&team.homes[0], &team.homes[1]);
    let t = ana.create(&["thread", "new", "Order", "-m", "First things first"]);
    team.sync_until_quiet(&[ana, bo]);
    ana.ok(&["reply", &t, "-m", "one"]);
    ana.ok(&["reply", &t, "-m", "two"]);
    let doc = Id::parse(&t).unwrap();
    let records = Node::open(ana.path()).unwrap().records(doc).unwrap();
    let [.., Record::Sealed(one), Record::Sealed(two)] = records.as_slice() else {
        panic!("Ana has both replies");
    };
    let node = Node::open(bo.path()).unwrap();
    let (workspace, _) = node.workspace(None).unwrap();
    // The second reply alone, as a relay holding only it would deliver it.
    let report =
        meridian::sync::apply(&node, workspace, "test", vec![(1, two.clone())], 1).unwrap();
    assert_eq!((report.applied, report.held), (0, 1), "{report:?}");
    assert!(report.rejected.is_empty(), "{report:?}");
    // The first arrives: both apply.
    let report =
        meridian::sync::apply(&node, workspace, "test", vec![(2, one.clone())], 2).unwrap();
    assert_eq!((report.applied, report.held), (2, 0), "{report:?}");
}

#[test]
fn a_late_member_starts_from_the_creators_snapshot_and_carries_on_from_there() {
    let team = Team::new(&ZONES[..2]);
    let [ana, bo] = [&team.homes[0], &team.homes[1]];
    // Bo writes a long thread, a reply per command: an envelope each in the relay's log.
    let t = bo.create(&["thread", "new", "Long discussion", "-m", "opening"]);
    for i in 0..30 {
        bo.ok(&["reply", &t, "-m", &format!("reply {i}")]);
    }
    push(bo);
    // Ana, the creator, takes them in; idle afterwards, her node hands the relay a snapshot.
    sync(ana);
    let ana_key = Node::open(ana.path())
        .unwrap()
        .key()
        .verifying_key()
        .to_bytes();

    let cy = team.world.person("Cy", "America/Lima");
    let code = ana.ok(&["invite"]);
    cy.ok(&["join", code.trim()]);
    sync(&cy);
    assert_eq!(comment_bodies(&cy, &t), comment_bodies(ana, &t));
    let log = |home: &crate::support::Home| home.json(&["--tz", "UTC", "log", &t]);
    assert_eq!(log(&cy), log(ana), "the same history, authors verified");
    // Cy holds the thread as one record, Ana's sealed snapshot, not Bo's 31 envelopes.
    let records = Node::open(cy.path())
        .unwrap()
        .records(Id::parse(&t).unwrap())
        .unwrap();
    assert_eq!(records.len(), 1, "the snapshot alone");
    let Record::Sealed(bytes) = &records[0] else {
        panic!("a snapshot is an envelope of its own");
    };
    assert_eq!(Envelope::decode(bytes).unwrap().author, ana_key.to_vec());

    // Later replies, from anyone, go on top of it, both ways.
    cy.ok(&["reply", &t, "-m", "from Lima, after the snapshot"]);
    bo.ok(&["reply", &t, "-m", "from Berlin, after the snapshot"]);
    team.sync_until_quiet(&[&cy, bo, ana, &cy]);
    for home in [ana, bo] {
        assert_eq!(comment_bodies(home, &t), comment_bodies(&cy, &t));
    }
    assert_eq!(
        comment_bodies(&cy, &t).len(),
        32,
        "30 replies and the 2 after"
    );
}

/// A node shows a relay its join proof only until that relay welcomed it; a relay that
/// forgot the member since (its database restored from an old backup, say) answers
/// `NotMember` to the proof-less `Prove`, and the node connects once more with the proof.
#[test]
fn a_relay_that_forgot_a_member_gets_the_join_proof_again() {
    const MEMBERS: redb::TableDefinition<([u8; 16], [u8; 32]), &[u8]> =
        redb::TableDefinition::new("members");
    let mut team = Team::new(&ZONES[..2]);
    let t = team.homes[0].create(&["thread", "new", "Forgetful", "-m", "Hello"]);
    team.sync_until_quiet(&[&team.homes[0], &team.homes[1]]);
    let (workspace, bo_key) = {
        let node = Node::open(team.homes[1].path()).unwrap();
        (
            node.workspace(None).unwrap().0,
            node.key().verifying_key().to_bytes(),
        )
    };
    team.relay.stop();
    {
        let db = redb::Database::open(team.relay.data().join("relay.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut members = txn.open_table(MEMBERS).unwrap();
            let removed = members.remove((workspace.0, bo_key)).unwrap();
            assert!(removed.is_some(), "the relay had admitted Bo");
        }
        txn.commit().unwrap();
    }
    team.relay.restart();
    let (ana, bo) = (&team.homes[0], &team.homes[1]);
    bo.ok(&["reply", &t, "-m", "Still here"]);
    sync(bo);
    sync(ana);
    assert!(
        comment_bodies(ana, &t).contains(&"Still here".to_string()),
        "Bo's reply went through the relay that forgot him"
    );
}

/// The hash of the last shared envelope a document has a part of.
fn last_part(home: &Home, doc: &str) -> Option<Vec<u8>> {
    let records = Node::open(home.path())
        .unwrap()
        .records(Id::parse(doc).unwrap())
        .unwrap();
    records.iter().rev().find_map(|record| match record {
        Record::Part { envelope, .. } => Some(envelope.clone()),
        Record::Sealed(_) => None,
    })
}

#[test]
fn a_push_across_documents_travels_as_one_shared_envelope() {
    let team = Team::new(&ZONES);
    let [ana, bo, cy] = [&team.homes[0], &team.homes[1], &team.homes[2]];
    let threads: Vec<String> = (0..3)
        .map(|i| ana.create(&["thread", "new", &format!("Topic {i}"), "-m", "opening"]))
        .collect();
    team.sync_until_quiet(&[ana, bo, cy]);
    // Offline, a reply to each: three commands, three outbox entries, one push.
    for (i, t) in threads.iter().enumerate() {
        ana.ok(&["reply", t, "-m", &format!("reply {i}")]);
    }
    push(ana);
    assert_eq!(outbox(ana), 0);
    let reports = sync(bo);
    assert_eq!(total(&reports, "applied"), 3, "{reports}");
    let parts: Vec<Option<Vec<u8>>> = threads.iter().map(|t| last_part(bo, t)).collect();
    assert!(parts[0].is_some(), "Bo keeps each thread's part");
    assert!(parts.windows(2).all(|w| w[0] == w[1]), "of one envelope");
    for t in &threads {
        assert_eq!(comment_bodies(bo, t), comment_bodies(ana, t));
        assert_eq!(state(bo, t), state(ana, t));
    }

    // What a new relay gets from Bo: each thread's creation before the shared envelope,
    // which comes once (a new member fed one frame at a time holds nothing).
    let backfill: Vec<Envelope> = {
        let node = Node::open(bo.path()).unwrap();
        let (workspace, _) = node.workspace(None).unwrap();
        meridian::sync::all_envelopes(&node, workspace)
            .unwrap()
            .iter()
            .map(|bytes| Envelope::decode(bytes).unwrap())
            .collect()
    };
    let shared_at: Vec<usize> = (0..backfill.len())
        .filter(|i| backfill[*i].is_shared())
        .collect();
    assert_eq!(shared_at.len(), 1, "the shared envelope once");
    for t in &threads {
        let doc = Id::parse(t).unwrap().0;
        let created = backfill.iter().position(|e| e.doc_id() == doc).unwrap();
        assert!(created < shared_at[0], "a thread's creation comes first");
    }

    // A bundle of one thread from Bo carries the shared envelope whole; a merge takes
    // that thread's part only.
    let (workspace, first) = {
        let node = Node::open(bo.path()).unwrap();
        (
            node.workspace(None).unwrap().0,
            Id::parse(&threads[0]).unwrap(),
        )
    };
    let bundle =
        meridian::bundle::export(&Node::open(bo.path()).unwrap(), workspace, &[first]).unwrap();
    let node = Node::open(cy.path()).unwrap();
    let (_, report) =
        meridian::bundle::merge(&node, &bundle, &meridian::ingest::Limits::default()).unwrap();
    drop(node);
    assert_eq!(report.applied, 1, "{report:?}");
    assert!(comment_bodies(cy, &threads[0]).contains(&"reply 0".to_string()));
    assert!(!comment_bodies(cy, &threads[1]).contains(&"reply 1".to_string()));

    // Everyone converges, Bo and Cy writing on top of the parts.
    bo.ok(&["reply", &threads[1], "-m", "from Bo"]);
    team.sync_until_quiet(&[ana, bo, cy, ana]);
    for t in &threads {
        assert_eq!(state(cy, t), state(ana, t));
        assert_eq!(state(bo, t), state(ana, t));
    }
}

/// Ana replies twice to `t2` and once to `t1`, offline; returns a shared envelope of the
/// last reply to each (its part for `t2` depends on the first reply) and the first reply's
/// own envelope.
fn waiting_part(ana: &Home, t1: &str, t2: &str) -> (Vec<u8>, Vec<u8>) {
    ana.ok(&["reply", t2, "-m", "earlier"]);
    ana.ok(&["reply", t2, "-m", "later"]);
    ana.ok(&["reply", t1, "-m", "elsewhere"]);
    let (d1, d2) = (Id::parse(t1).unwrap(), Id::parse(t2).unwrap());
    let node = Node::open(ana.path()).unwrap();
    let (workspace, record) = node.workspace(None).unwrap();
    let key: seal::WorkspaceKey = record.key.as_slice().try_into().unwrap();
    let changes = |doc: Id, back: usize| {
        let records = node.records(doc).unwrap();
        let Record::Sealed(bytes) = &records[records.len() - back] else {
            panic!("Ana's own records are as she sealed them");
        };
        let envelope = Envelope::decode(bytes).unwrap();
        let mut budget = u64::MAX;
        let plaintext = seal::open(&key, &envelope).unwrap();
        let changes = meridian::ingest::plaintext_changes(&plaintext, &mut budget).unwrap();
        (changes.into_owned(), bytes.clone())
    };
    let (elsewhere, _) = changes(d1, 1);
    let (later, _) = changes(d2, 1);
    let (_, earlier) = changes(d2, 2);
    let mut parts = [(d1, elsewhere), (d2, later)];
    parts.sort();
    let docs: Vec<Id> = parts.iter().map(|(d, _)| *d).collect();
    let bodies: Vec<&[u8]> = parts.iter().map(|(_, c)| c.as_slice()).collect();
    let plaintext = seal::shared_plaintext(&bodies);
    let envelope = seal::seal_shared(node.key(), &key, workspace, &docs, &plaintext);
    (envelope.encode(), earlier)
}

/// Ana and Bo, with two threads of Ana's that both have.
fn two_threads() -> (Team, String, String) {
    let team = Team::new(&ZONES[..2]);
    let (ana, bo) = (&team.homes[0], &team.homes[1]);
    let t1 = ana.create(&["thread", "new", "First", "-m", "one"]);
    let t2 = ana.create(&["thread", "new", "Second", "-m", "two"]);
    team.sync_until_quiet(&[ana, bo]);
    (team, t1, t2)
}

#[test]
fn a_part_that_waits_is_held_until_its_dependency_arrives() {
    let (team, t1, t2) = two_threads();
    let (ana, bo) = (&team.homes[0], &team.homes[1]);
    let (shared, earlier) = waiting_part(ana, &t1, &t2);
    let node = Node::open(bo.path()).unwrap();
    let (workspace, _) = node.workspace(None).unwrap();
    // The shared envelope alone: the first thread's part applies, the second's waits.
    let report = meridian::sync::apply(&node, workspace, "test", vec![(1, shared)], 1).unwrap();
    assert_eq!((report.applied, report.held), (1, 1), "{report:?}");
    assert!(report.rejected.is_empty(), "{report:?}");
    drop(node);
    assert!(last_part(bo, &t1).is_some());
    assert!(comment_bodies(bo, &t1).contains(&"elsewhere".to_string()));
    assert!(!comment_bodies(bo, &t2).contains(&"later".to_string()));
    // What it waited for arrives: both replies apply.
    let node = Node::open(bo.path()).unwrap();
    let report = meridian::sync::apply(&node, workspace, "test", vec![(2, earlier)], 2).unwrap();
    assert_eq!((report.applied, report.held), (2, 0), "{report:?}");
    drop(node);
    assert_eq!(
        last_part(bo, &t2),
        last_part(bo, &t1),
        "one envelope, kept once"
    );
    assert_eq!(comment_bodies(bo, &t2), comment_bodies(ana, &t2));
}

#[test]
fn a_home_restored_from_a_backup_pushes_its_own_shared_envelopes_again() {
    let (team, t1, t2) = two_threads();
    let ana = &team.homes[0];
    // A copy of Ana's home as it stands, restored later; meanwhile she writes on.
    let backup = team.world.tmp.path().join("ana-backup");
    let copied = std::process::Command::new("cp")
        .arg("-r")
        .arg(ana.path())
        .arg(&backup)
        .status()
        .unwrap();
    assert!(copied.success());
    // The part that waits is the first one tried (documents go in order of their ids).
    let (waits, applies) = if t1 < t2 { (t1, t2) } else { (t2, t1) };
    let (shared, earlier) = waiting_part(ana, &applies, &waits);
    // The restored home pulls her envelopes back from a relay, the shared one first (one
    // of its parts waits): each goes to the outbox once, for relays that may lack them.
    let node = Node::open(&backup).unwrap();
    let (workspace, _) = node.workspace(None).unwrap();
    let pushed_from = meridian::sync::outbox(&node, workspace, 0, 1000)
        .unwrap()
        .len();
    let report =
        meridian::sync::apply(&node, workspace, "test", vec![(1, shared.clone())], 1).unwrap();
    assert_eq!((report.applied, report.held), (1, 1), "{report:?}");
    let report =
        meridian::sync::apply(&node, workspace, "test", vec![(2, earlier.clone())], 2).unwrap();
    assert_eq!((report.applied, report.held), (2, 0), "{report:?}");
    let outbox: Vec<Vec<u8>> = meridian::sync::outbox(&node, workspace, 0, 1000)
        .unwrap()
        .into_iter()
        .skip(pushed_from)
        .map(|(_, envelope)| envelope)
        .collect();
    assert_eq!(outbox, vec![shared, earlier]);
}

#[test]
fn a_received_text_edit_keeps_the_index_as_a_full_rebuild_would_make_it() {
    use meridian::doc::View;
    let team = Team::new(&ZONES[..2]);
    let (ana, bo) = (&team.homes[0], &team.homes[1]);
    let p = ana.create(&[
        "proposal",
        "new",
        "Store workspaces in redb",
        "--section",
        "Summary=We need offline storage",
        "--ask",
        "Bo",
        "--decider",
        "Bo",
    ]);
    ana.ok(&["proposal", "open", &p, "--closes", "3d"]);
    team.sync_until_quiet(&[ana, bo]);
    bo.ok(&["proposal", "approve", &p, "-m", "LGTM"]);
    bo.ok(&["reply", &p, "-m", "One question"]);
    team.sync_until_quiet(&[bo, ana]);
    // Bo rewrites the section: operations on its text alone.
    let text = write_file(
        &team.world,
        "summary.txt",
        "We need offline storage that survives crashes",
    );
    bo.ok(&[
        "proposal",
        "edit",
        &p,
        "--section",
        "Summary",
        "--file",
        &text,
    ]);
    let doc = Id::parse(&p).unwrap();
    {
        let node = Node::open(bo.path()).unwrap();
        let (workspace, _) = node.workspace(None).unwrap();
        let am = node.load(workspace, doc).unwrap();
        let last = am.get_changes(&[]).pop().unwrap();
        let decoded = last.decode();
        assert!(!decoded.operations.is_empty());
        assert!(
            decoded
                .operations
                .iter()
                .all(|op| matches!(op.key, automerge::legacy::Key::Seq(_))),
            "the edit touches the text only"
        );
    }
    let reports = sync(bo);
    assert!(total(&reports, "applied") == 0, "{reports}");
    let reports = sync(ana);
    assert_eq!(total(&reports, "applied"), 1, "{reports}");
    let node = Node::open(ana.path()).unwrap();
    let (workspace, _) = node.workspace(None).unwrap();
    let stored = node
        .summaries(workspace)
        .unwrap()
        .into_iter()
        .find(|(id, _)| *id == doc)
        .unwrap()
        .1;
    let am = node.load(workspace, doc).unwrap();
    let rebuilt = meridian::index::summarize(
        View::now(&am),
        stored.kind,
        &workspace.0,
        stored.updated,
        &stored.last_author,
        stored.changes,
    );
    assert_eq!(stored, rebuilt);
    assert_eq!(stored.heads, meridian::doc::heads_hex(&am.get_heads()));
    assert_eq!(stored.changes, am.get_changes(&[]).len() as u64);
    let bo_key = {
        let bo_node = Node::open(bo.path()).unwrap();
        hex::encode(bo_node.key().verifying_key().to_bytes())
    };
    assert_eq!(stored.last_author, bo_key, "the edit is the latest change");
}

/// A relay backed up while members push, then lost and restored from the backup: the
/// restored relay has a new id, so members push again what it lacks, and everyone ends
/// with everything, what was written after the backup included.
#[test]
fn a_relay_backed_up_under_load_and_restored_loses_nothing() {
    let mut team = Team::new(&ZONES);
    let [ana, bo, cy] = [&team.homes[0], &team.homes[1], &team.homes[2]];
    let backup = team.world.file("relay-backup.redb");
    let data = team.relay.data().to_path_buf();
    let backup_run = {
        let (data, backup) = (data.clone(), backup.clone());
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            Command::new(relay_binary())
                .args(["backup", "--data"])
                .arg(&data)
                .arg("-o")
                .arg(&backup)
                .output()
                .unwrap()
        })
    };
    let mut written = Vec::new();
    for i in 0..12 {
        let title = format!("Before or during the backup {i}");
        bo.create(&["thread", "new", &title, "-m", "load"]);
        push(bo);
        written.push(title);
    }
    let output = backup_run.join().unwrap();
    let said = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    assert!(
        said.starts_with("Backed up the running relay to") && said.contains("1 workspace, "),
        "{said}"
    );
    // Written after the backup: the restored relay will not have these.
    for (home, title) in [(ana, "After the backup, Ana"), (cy, "After the backup, Cy")] {
        home.create(&["thread", "new", title, "-m", "late"]);
        push(home);
        written.push(title.to_string());
    }
    // The relay's disk is lost.
    team.relay.kill();
    std::fs::remove_dir_all(&data).unwrap();
    let restore = || {
        Command::new(relay_binary())
            .arg("restore")
            .arg(&backup)
            .arg("--data")
            .arg(&data)
            .output()
            .unwrap()
    };
    let restored = restore();
    assert!(restored.status.success(), "{restored:?}");
    assert!(
        String::from_utf8_lossy(&restored.stdout).contains("with the new relay id"),
        "{restored:?}"
    );
    // Restoring over a database is refused.
    let again = restore();
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("never overwrites"),
        "{again:?}"
    );
    team.relay.restart();
    team.sync_until_quiet(&[ana, bo, cy, ana, bo, cy]);
    for home in [ana, bo, cy] {
        let have = titles(home);
        for title in &written {
            assert!(
                have.contains(title),
                "{} lacks {title}: {have:?}",
                home.name()
            );
        }
    }
}

/// A relay the creator adds reaches every member through the workspace document: their
/// nodes use it from their next sync, a running daemon connects to it without a restart,
/// and it carries the team when the first relay is gone. Removing it reaches everyone the
/// same way. A member who is not an admin adds a relay for their own device only.
#[test]
fn a_relay_the_creator_shares_reaches_every_member() {
    let mut team = Team::new(&ZONES);
    let [ana, bo, cy] = [&team.homes[0], &team.homes[1], &team.homes[2]];
    let second = crate::relays::Relay::start(&team.world.file("relay-b"));
    let url = second.url();
    let log = team.world.file("cy-daemon.log");
    let _daemon = crate::relays::start_daemon(cy, &log, &[]);
    let daemon_log = || crate::relays::read_log(&log);
    poll(Duration::from_secs(10), "Cy's daemon connects", || {
        daemon_log().contains("connected to").then_some(())
    });
    // Bo is no admin: his relay is his device's alone.
    let said = bo.ok(&["workspace", "relay", "add", &url]);
    assert!(
        said.contains("This device now syncs acme with") && said.contains("ask Ana"),
        "{said}"
    );
    bo.ok(&["workspace", "relay", "remove", &url]);
    // Ana shares it; Bo's node follows at its next sync, Cy's daemon on its own.
    let said = ana.ok(&["workspace", "relay", "add", &url]);
    assert!(said.contains("for every member"), "{said}");
    sync(ana);
    sync(bo);
    let listed = bo.json(&["workspace", "relay", "list"]);
    assert!(
        listed["relays"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["relay"] == url.as_str()),
        "{listed}"
    );
    let daemon_says = |what: &str, text: &str| {
        poll(Duration::from_secs(15), what, || {
            daemon_log().contains(text).then_some(())
        })
    };
    daemon_says(
        "Cy's daemon connects to the new relay",
        &format!("connected to {url}"),
    );
    // The first relay is lost: the shared one carries Bo's thread to Cy.
    team.relay.kill();
    let t = bo.create(&["thread", "new", "Through the second relay", "-m", "hello"]);
    let output = bo.run(&["sync"]);
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("could not sync with 1 of 2 relays"),
        "{output:?}"
    );
    poll(
        Duration::from_secs(20),
        "Cy's daemon applies Bo's thread",
        || {
            cy.json(&["thread", "list"])
                .as_array()
                .unwrap()
                .iter()
                .any(|d| d["id"] == t.as_str())
                .then_some(())
        },
    );
    // Ana stops sharing it: every member stops using it.
    team.relay.restart();
    let said = ana.ok(&["workspace", "relay", "remove", &url]);
    assert!(said.contains("for every member"), "{said}");
    sync(ana);
    sync(bo);
    let listed = bo.json(&["workspace", "relay", "list"]);
    assert_eq!(listed["relays"].as_array().unwrap().len(), 1, "{listed}");
    daemon_says(
        "Cy's daemon leaves the relay",
        &format!("{url} is no longer among the workspace's relays"),
    );
}

/// Two large edits of one document are more operations than a node applies in one batch:
/// a member syncing them takes them an envelope at a time, and has both.
#[test]
fn a_document_larger_than_one_batch_arrives_whole_by_relay() {
    let team = crate::relays::Team::new(&[("Ana", "Asia/Tokyo"), ("Bo", "Europe/Berlin")]);
    let [ana, bo] = [&team.homes[0], &team.homes[1]];
    let p = ana.create(&["proposal", "new", "Corpus", "--section", "Summary=short"]);
    let text = team.world.file("part.md");
    std::fs::write(&text, "word ".repeat(30_000)).unwrap();
    let text = text.to_str().unwrap();
    for section in ["Design", "Drawbacks"] {
        ana.ok(&["proposal", "edit", &p, "--section", section, "--file", text]);
    }
    crate::relays::push(ana);
    let reports = crate::relays::sync(bo);
    assert_eq!(
        crate::relays::rejected(&reports),
        Vec::<serde_json::Value>::new()
    );
    let shown = bo.json(&["show", &p]).to_string();
    assert_eq!(
        shown.matches("word").count(),
        60_000,
        "Bo has both sections"
    );
}
