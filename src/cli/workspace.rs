//! Identity and workspace commands: init, whoami, workspace, invite, join, member.

use std::path::Path;

use anyhow::{Context, Result, bail};
use serde_json::json;

use super::table::{Cell, Table};
use super::{Ctx, Out, RelayCommand, Tone, WorkspaceCommand};
use crate::app::team::Reach;
use crate::id::Id;
use crate::identity::Profile;
use crate::node::{Node, now_ms};
use crate::norms::{parse_moment, time_zone};
use crate::workspace::Invite;

pub fn init(
    home: &Path,
    name: &str,
    tz: Option<&str>,
    hours: &str,
    days: &str,
    out: &Out,
) -> Result<()> {
    let tz = match tz {
        Some(tz) => tz.to_string(),
        // The system's zone, by a name every member's build reads the same way: a zone
        // file under `posix/` is the plain one.
        None => jiff::tz::TimeZone::try_system()
            .ok()
            .and_then(|tz| tz.iana_name().map(str::to_string))
            .map(|name| name.strip_prefix("posix/").unwrap_or(&name).to_string())
            .filter(|name| time_zone(name).is_ok())
            .unwrap_or_else(|| "UTC".into()),
    };
    let profile = Profile {
        name: name.trim().to_string(),
        tz,
        hours: hours.to_string(),
        days: days.to_string(),
        away: Vec::new(),
    };
    let node = Node::init(home, &profile)?;
    if out.json {
        out.print_json(
            &json!({"id": node.member_id(), "name": profile.name, "tz": profile.tz, "home": home}),
        )?;
    } else {
        said!(
            out,
            "Created identity {} for {} ({}, {} {}) in {}",
            &node.member_id()[..12],
            profile.name,
            profile.tz,
            profile.days,
            profile.hours,
            home.display()
        );
        said!(
            out,
            "Next: `meridian workspace create NAME` to start a workspace, or `meridian join CODE` with an invite from a member."
        );
    }
    Ok(())
}

/// `meridian` with no command and no identity yet: how to start.
pub fn getting_started(home: &Path, out: &Out) -> Result<()> {
    if out.json {
        crate::fail!(
            NotFound,
            "{} holds no identity yet: run `meridian init --name NAME`",
            home.display()
        );
    }
    say!(
        out,
        "Meridian: proposals, decisions, threads and status updates that work offline."
    );
    say!(out);
    say!(
        out,
        "There is no identity in {} yet. To start:",
        home.display()
    );
    say!(
        out,
        "  meridian init --name NAME --tz ZONE       your name, time zone and working hours"
    );
    say!(
        out,
        "  meridian workspace create NAME            a workspace of your own (--relay URL to sync)"
    );
    say!(
        out,
        "  meridian join CODE                        or join one with an invite from a member"
    );
    say!(out);
    say!(
        out,
        "Then `meridian` shows your inbox; `meridian --help` lists every command."
    );
    Ok(())
}

pub fn whoami(node: &Node, out: &Out) -> Result<()> {
    let profile = node.profile()?;
    let workspaces: Vec<(crate::id::Id, String)> = node
        .workspaces()?
        .into_iter()
        .map(|(id, w)| (id, w.name))
        .collect();
    let names: Vec<&str> = workspaces.iter().map(|(_, n)| n.as_str()).collect();
    if out.json {
        out.print_json(&json!({
            "id": node.member_id(), "name": profile.name, "tz": profile.tz,
            "hours": profile.hours, "days": profile.days,
            "workspaces": workspaces.iter().map(|(id, name)| json!({"id": id.hex(), "name": name})).collect::<Vec<_>>(),
            "home": node.home(),
        }))?;
    } else {
        say!(out, "{} ({})", profile.name, &node.member_id()[..12]);
        say!(out, "time zone  {}", profile.tz);
        say!(out, "works      {} {}", profile.days, profile.hours);
        say!(out, "home       {}", node.home().display());
        if !names.is_empty() {
            say!(out, "workspaces {}", names.join(", "));
        }
    }
    Ok(())
}

/// `meridian profile set`: the profile here and in every workspace's member entry.
pub fn profile_set(
    node: &Node,
    (name, zone, hours, days): (
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
    ),
    out: &Out,
) -> Result<()> {
    if name.is_none() && zone.is_none() && hours.is_none() && days.is_none() {
        bail!("nothing to change: give --name, --tz, --hours or --days");
    }
    let profile = crate::app::team::update_profile(node, |p| {
        if let Some(name) = name {
            p.name = name;
        }
        if let Some(zone) = zone {
            time_zone(&zone)?;
            p.tz = zone;
        }
        if let Some(hours) = hours {
            p.hours = hours;
        }
        if let Some(days) = days {
            p.days = days;
        }
        Ok(())
    })?;
    if out.json {
        return out.print_json(&json!({
            "name": profile.name, "tz": profile.tz, "hours": profile.hours, "days": profile.days,
        }));
    }
    said!(
        out,
        "Your profile is now {} ({}, {} {}); every workspace gets it with your next sync.",
        profile.name,
        profile.tz,
        profile.days,
        profile.hours
    );
    Ok(())
}

/// `meridian away [FROM..TO | --clear]`
pub fn away(node: &Node, period: Option<String>, clear: bool, out: &Out) -> Result<()> {
    let profile = match (period, clear) {
        (None, false) => node.profile()?,
        (Some(period), _) => crate::app::team::add_away(node, &period, crate::node::now())?,
        (None, true) => crate::app::team::update_profile(node, |p| {
            p.away.clear();
            Ok(())
        })?,
    };
    if out.json {
        return out.print_json(&json!({"away": profile.away}));
    }
    if profile.away.is_empty() {
        say!(out, "You are not away on any day.");
    } else {
        say!(out, "You are away (in {}):", profile.tz);
        for period in &profile.away {
            say!(out, "  {period}");
        }
    }
    Ok(())
}

pub fn workspace(
    node: &Node,
    selector: Option<&str>,
    command: WorkspaceCommand,
    out: &Out,
) -> Result<()> {
    match command {
        WorkspaceCommand::Create { name, relays, ca } => {
            let mut canonical: Vec<String> = Vec::new();
            for relay in &relays {
                crate::sync::net::endpoint(relay)?;
                let relay = crate::sync::net::relay_url(relay)?;
                if !canonical.contains(&relay) {
                    canonical.push(relay);
                }
            }
            let relays = canonical;
            trust_ca(node, &relays, ca.as_deref(), out)?;
            let id = node.create_workspace(&name, relays.clone())?;
            // The creator's relays are the workspace's: every member follows them.
            for relay in &relays {
                crate::app::team::add_relay(node, id, relay)?;
            }
            said!(out, "Created workspace {name} ({}).", id.short());
            switch_to(node, id, &name, out)?;
            let rounds = super::sync::first_contact(node, id, &relays, out)?;
            out.done(json!({"id": id.hex(), "name": name, "sync": rounds}))?;
            if relays.is_empty() {
                said!(
                    out,
                    "Next: `meridian workspace relay add URL` to sync through a relay, then `meridian invite` for each teammate."
                );
            } else {
                said!(
                    out,
                    "Next: `meridian invite` makes a code for each teammate to `meridian join`."
                );
            }
            Ok(())
        }
        WorkspaceCommand::Relay(command) => relay(node, selector, command, out),
        WorkspaceCommand::Use { name } => {
            let (id, record) = node.workspace(Some(&name))?;
            node.set_current_workspace(id)?;
            if !out.json {
                say!(out, "Now in workspace {} ({}).", record.name, id.short());
            }
            out.done(json!({"id": id.hex(), "name": record.name}))
        }
        WorkspaceCommand::List => {
            let all = node.workspaces()?;
            if out.json {
                let current = node.current_workspace()?;
                let list: Vec<_> = all
                    .iter()
                    .map(|(id, w)| json!({
                        "id": id.hex(), "name": w.name, "members": w.state.active_members().count(),
                        "relays": w.relays, "current": current == Some(*id) || all.len() == 1,
                    }))
                    .collect();
                out.print_json(&json!(list))?;
            } else {
                let current = node.current_workspace()?;
                if all.is_empty() {
                    say!(
                        out,
                        "No workspaces yet: `meridian workspace create NAME` starts one, `meridian join CODE` joins a teammate's."
                    );
                    return Ok(());
                }
                let mut table = Table::new(&["ID", "NAME", "MEMBERS", "RELAYS", ""]);
                let one = all.len() == 1;
                for (id, w) in all {
                    let relays = match w.relays.as_slice() {
                        [] => "none".to_string(),
                        [one] => one.clone(),
                        [first, rest @ ..] => format!("{first} and {} more", rest.len()),
                    };
                    let mark = if current == Some(id) || one {
                        "(current)"
                    } else {
                        ""
                    };
                    table.row(vec![
                        Cell::toned(id.short(), Tone::Id),
                        Cell::new(&w.name),
                        Cell::new(w.state.active_members().count().to_string()),
                        Cell::new(relays),
                        Cell::toned(mark, Tone::Good),
                    ]);
                }
                table.print(out)?;
            }
            Ok(())
        }
        WorkspaceCommand::Template { .. }
        | WorkspaceCommand::Norm { .. }
        | WorkspaceCommand::Ladder { .. }
        | WorkspaceCommand::Norms
        | WorkspaceCommand::Log { .. }
        | WorkspaceCommand::Keys => unreachable!("dispatched with a workspace chosen"),
    }
}

/// The `workspace` commands that work on one workspace's settings.
pub fn settings(ctx: &Ctx, command: WorkspaceCommand) -> Result<()> {
    let out = &ctx.out;
    match command {
        WorkspaceCommand::Keys => keys(ctx),
        WorkspaceCommand::Template { name, sections } => {
            crate::app::team::set_template(ctx, &name, &sections)?;
            said!(out, "Template {name}: {}.", sections.join(", "));
            out.done(json!({"template": name, "sections": sections}))
        }
        WorkspaceCommand::Norm {
            level,
            within,
            new,
            interrupts,
            no_interrupts,
        } => {
            let change = crate::app::team::LevelChange {
                within: within.as_deref(),
                interrupts: (interrupts || no_interrupts).then_some(interrupts),
                new,
            };
            let (within, interrupts) = crate::app::team::set_level(ctx, &level, change)?;
            let when = if interrupts {
                "they reach people at once, in quiet hours too"
            } else {
                "they wait for each person's working hours"
            };
            said!(
                out,
                "Requests of urgency {level} are due within {within} of the responder's working time; {when}."
            );
            out.done(
                json!({"level": level, "within": within.to_string(), "interrupts": interrupts}),
            )
        }
        WorkspaceCommand::Ladder { members } => {
            let ids = crate::app::team::set_ladder(ctx, &members)?;
            let names: Vec<String> = ids.iter().map(|id| ctx.name(id)).collect();
            said!(
                out,
                "A missed or declined request now escalates to {}.",
                names.join(", then ")
            );
            let people: Vec<_> = ids
                .iter()
                .map(|id| json!({"id": id, "name": ctx.name(id)}))
                .collect();
            out.done(json!({"ladder": people}))
        }
        WorkspaceCommand::Norms => norms(ctx, out),
        WorkspaceCommand::Log { limit } => super::history::print_log(ctx, ctx.workspace, limit),
        _ => unreachable!("dispatched without a workspace"),
    }
}

/// `meridian workspace norms`.
fn norms(cx: &crate::app::Context, out: &Out) -> Result<()> {
    let view = crate::app::team::norms(cx);
    let person = |id: &String| json!({"id": id, "name": cx.name(id)});
    if out.json {
        return out.print_json(&json!({
            "levels": view.levels,
            "ladder": view.ladder.iter().map(person).collect::<Vec<_>>(),
            "admins": view.admins.iter().map(person).collect::<Vec<_>>(),
            "templates": view.templates.iter().map(|(n, s)| json!({"name": n, "sections": s})).collect::<Vec<_>>(),
        }));
    }
    say!(
        out,
        "Urgency levels, most urgent first (response time in the responder's working time):"
    );
    for level in &view.levels {
        let within = if level.within == "none" {
            "no response expected"
        } else {
            &level.within
        };
        let interrupts = if level.interrupts {
            "  interrupts quiet hours"
        } else {
            ""
        };
        say!(out, "  {:<8} {within}{interrupts}", level.name);
    }
    let names = |ids: &[String]| -> String {
        ids.iter()
            .map(|id| cx.name(id))
            .collect::<Vec<_>>()
            .join(", ")
    };
    say!(
        out,
        "Escalation ladder: {}",
        if view.ladder.is_empty() {
            "none (a missed deadline stays with the person asked)".to_string()
        } else {
            view.ladder
                .iter()
                .map(|id| cx.name(id))
                .collect::<Vec<_>>()
                .join(" → ")
        }
    );
    say!(out, "Who changes these: {}", names(&view.admins));
    say!(out, "Templates:");
    for (name, sections) in &view.templates {
        say!(out, "  {name:<10} {}", sections.join(", "));
    }
    Ok(())
}

pub fn invite(ctx: &Ctx, relays: Vec<String>, expires: &str) -> Result<()> {
    let expires = parse_moment(expires, crate::node::now(), &ctx.out.tz)?.as_millisecond();
    if expires <= now_ms() {
        bail!("the invite would already have expired: give a future date or a duration like 7d");
    }
    let mut all_relays = ctx.record.relays.clone();
    for relay in relays {
        crate::sync::net::endpoint(&relay)?;
        let relay = crate::sync::net::relay_url(&relay)?;
        if !all_relays.iter().any(|r| same_relay(r, &relay)) {
            all_relays.push(relay);
        }
    }
    let invite = Invite::new(
        ctx.node.key(),
        ctx.workspace,
        &ctx.record.name,
        &ctx.record.key,
        &ctx.record.creator,
        all_relays,
        expires,
    );
    let invite = match crate::seal::Sealer::of(&ctx.record) {
        Ok(crate::seal::Sealer::Epoch(hash, secret)) => invite.with_epoch(&hash, &secret),
        _ => invite,
    };
    let code = invite.encode();
    if ctx.out.json {
        ctx.out.print_json(&json!({
            "code": code, "workspace": {"id": ctx.workspace.hex(), "name": ctx.record.name},
            "expires": ctx.out.rfc3339(expires),
        }))?;
    } else {
        say!(ctx.out, "{code}");
        warn!(
            ctx.out,
            "This code carries the workspace key: share it privately. It expires {}.",
            ctx.out.time(expires)
        );
    }
    Ok(())
}

pub fn join(node: &Node, code: &str, ca: Option<&Path>, out: &Out) -> Result<()> {
    let invite = Invite::decode(code)?;
    trust_ca(node, &invite.relays, ca, out)?;
    let joined = crate::app::invite::join(node, &invite, now_ms())?;
    let id = joined.id;
    let rounds = super::sync::rounds_json(&joined.rounds);
    if out.json {
        switch_to(node, id, &joined.name, out)?;
        out.print_json(&json!({
            "id": id.hex(), "name": joined.name, "relays": joined.relays,
            "admitted": joined.admitted(), "again": joined.again, "sync": rounds,
        }))?;
        return Ok(());
    }
    if joined.relays.is_empty() {
        say!(
            out,
            "Joined {} ({}). Merge a bundle from a member to see its documents, or add a relay with `meridian workspace relay add URL`.",
            joined.name,
            id.short()
        );
    } else if joined.admitted() {
        say!(out, "Joined {} ({}).", joined.name, id.short());
        let state = node.workspace(Some(&id.hex()))?.1.state;
        super::sync::contact(out, &joined.rounds, &state)?;
        // Two people may pick one name offline: say how the others see this one.
        let (_, record) = node.workspace(Some(&id.hex()))?;
        if let Some(me) = record.state.member(&node.member_id())
            && !me.shown.is_empty()
            && me.shown != me.name
        {
            warn!(
                out,
                "Another member is also called {}: the others see you as {} until you choose another name (`meridian profile set --name NAME`).",
                me.name,
                me.shown
            );
        }
    } else {
        // Unreachable relays mean offline; anything else (a certificate, a refusal) is a
        // problem to fix first, said by `contact` below.
        let offline = joined.rounds.iter().all(|(_, r)| {
            r.as_ref()
                .err()
                .is_some_and(|e| crate::error::kind_of(e) == crate::error::ErrorKind::Unreachable)
        });
        if offline {
            say!(
                out,
                "Joined {} ({}) offline: no relay could be reached, so this device registers with them on the next `meridian sync`.",
                joined.name,
                id.short()
            );
        } else {
            say!(
                out,
                "Joined {} ({}) on this device, but no relay admitted it yet: once the problem below is solved, `meridian sync` registers it.",
                joined.name,
                id.short()
            );
        }
        let state = node.workspace(Some(&id.hex()))?.1.state;
        super::sync::contact(out, &joined.rounds, &state)?;
    }
    switch_to(node, id, &joined.name, out)?;
    Ok(())
}

/// `meridian device add`: a one-time code that adds another device of this member.
pub fn device_add(ctx: &Ctx, expires: &str) -> Result<()> {
    let expires = parse_moment(expires, crate::node::now(), &ctx.out.tz)?.as_millisecond();
    if expires <= now_ms() {
        bail!("the code would already have expired: give a future date or a duration like 1d");
    }
    let code = crate::app::device::code(&ctx.node, ctx.workspace, &ctx.record, expires)?;
    let text = code.encode();
    if ctx.out.json {
        return ctx.out.print_json(&json!({
            "code": text, "workspace": {"id": ctx.workspace.hex(), "name": ctx.record.name},
            "expires": ctx.out.rfc3339(expires),
        }));
    }
    say!(ctx.out, "{text}");
    warn!(
        ctx.out,
        "On your new device: `meridian init --name NAME`, then `meridian device join CODE`. The code adds a device that writes as you and holds the workspace key: use it on your own device only. It expires {}.",
        ctx.out.time(expires)
    );
    Ok(())
}

/// `meridian device join CODE`, on the new device.
pub fn device_join(node: &Node, code: &str, ca: Option<&Path>, out: &Out) -> Result<()> {
    let code = crate::device::DeviceCode::decode(code)?;
    trust_ca(node, &code.relays, ca, out)?;
    let joined = crate::app::device::join(node, &code, now_ms())?;
    let id = joined.id;
    let (_, record) = node.workspace(Some(&id.hex()))?;
    let whose = record
        .state
        .member(&node.member_id())
        .map(|m| format!("{}'s", m.name))
        .unwrap_or_else(|| "your".to_string());
    if out.json {
        switch_to(node, id, &joined.name, out)?;
        return out.print_json(&json!({
            "id": id.hex(), "name": joined.name, "relays": joined.relays,
            "member": node.member_id(), "device": node.device_id(),
            "admitted": joined.admitted(), "sync": super::sync::rounds_json(&joined.rounds),
        }));
    }
    if joined.admitted() && !joined.relays.is_empty() {
        say!(
            out,
            "Added this device to {whose} devices in {} ({}): it reads everything there and writes as you.",
            joined.name,
            id.short()
        );
        super::sync::contact(out, &joined.rounds, &record.state)?;
    } else {
        say!(
            out,
            "Added this device to {whose} devices in {} ({}), offline: it registers with the relays on the next `meridian sync` (or merge a bundle from your other device with `meridian merge FILE`).",
            joined.name,
            id.short()
        );
        if !joined.relays.is_empty() {
            super::sync::contact(out, &joined.rounds, &record.state)?;
        }
    }
    switch_to(node, id, &joined.name, out)?;
    Ok(())
}

/// The member this device belongs to, as the workspace shows it.
fn own_member(ctx: &Ctx) -> Result<&crate::workspace::Member> {
    match ctx.record.state.member(&ctx.node.member_id()) {
        Some(member) => Ok(member),
        None => crate::fail!(
            NotFound,
            "this device is not a member of workspace `{}` yet: sync first (`meridian sync`)",
            ctx.record.name
        ),
    }
}

/// `meridian device revoke DEVICE`.
pub fn revoke_device(ctx: &Ctx, prefix: &str) -> Result<()> {
    let this = ctx.node.device_id();
    let member = own_member(ctx)?;
    let prefix = prefix.trim().to_lowercase();
    let matching: Vec<&crate::workspace::Device> = member
        .devices
        .iter()
        .filter(|d| d.key.starts_with(&prefix))
        .collect();
    let device = match matching.as_slice() {
        [one] => *one,
        [] => crate::fail!(
            NotFound,
            "no device of yours starts with `{prefix}`: `meridian device list` shows them"
        ),
        _ => crate::fail!(
            Usage,
            "`{prefix}` starts the keys of {} of your devices: give more of it",
            matching.len()
        ),
    };
    if device.key == this {
        crate::fail!(
            Usage,
            "this is the device you are using: revoke it from another of your devices"
        );
    }
    if device.by.is_none() {
        crate::fail!(
            Refused,
            "{} is your first device, the key your membership stands on: it cannot be revoked (the workspace's creator can remove a member)",
            crate::id::prefix(&device.key, 12)
        );
    }
    if !device.active() {
        crate::fail!(
            Usage,
            "{} was revoked already",
            crate::id::prefix(&device.key, 12)
        );
    }
    ctx.node
        .revoke_device(ctx.workspace, &device.key, now_ms())?;
    ctx.out
        .done(json!({"device": device.key, "revoked": true}))?;
    said!(
        ctx.out,
        "Revoked device {}: what you write from now on is sealed under a new key it does not hold, and what it writes after this is refused by every member's node. Relays refuse it once you sync (`meridian sync`).",
        crate::id::prefix(&device.key, 12)
    );
    Ok(())
}

/// `meridian device list`: this member's devices.
pub fn devices(ctx: &Ctx) -> Result<()> {
    let this = ctx.node.device_id();
    let member = own_member(ctx)?;
    let mut devices = member.devices.clone();
    if devices.is_empty() {
        devices.push(crate::workspace::Device {
            key: member.id.clone(),
            encryption: member.encryption.clone(),
            by: None,
            revoked: None,
            lock: None,
        });
    }
    let listed = devices.iter().any(|d| d.key == this);
    if ctx.out.json {
        let rows: Vec<serde_json::Value> = devices
            .iter()
            .map(|d| {
                json!({
                    "key": d.key, "this": d.key == this, "first": d.by.is_none(),
                    "added_by": d.by, "encryption": d.encryption.is_some(),
                    "revoked": d.revoked.map(|at| ctx.out.rfc3339(at)),
                })
            })
            .collect();
        return ctx.out.print_json(&json!({
            "member": {"id": member.id, "name": ctx.record.state.name_of(&member.id)},
            "devices": rows,
            "this_listed": listed,
        }));
    }
    say!(
        ctx.out,
        "{}'s devices in {}:",
        ctx.record.state.name_of(&member.id),
        ctx.record.name
    );
    for device in &devices {
        let mut words = Vec::new();
        words.push(match &device.by {
            None => "first device".to_string(),
            Some(by) => format!("added by {}", crate::id::prefix(by, 12)),
        });
        if let Some(at) = device.revoked {
            words.push(format!("revoked {}", ctx.out.time(at)));
        } else if device.encryption.is_none() {
            words.push("its key for new epochs not published yet".to_string());
        }
        say!(
            ctx.out,
            "  {}  {}{}",
            ctx.out.paint(Tone::Id, crate::id::prefix(&device.key, 12)),
            words.join(", "),
            if device.key == this {
                " (this device)"
            } else {
                ""
            }
        );
    }
    if !listed {
        warn!(
            ctx.out,
            "This device ({}) is not listed yet: its entry reaches the others with the next `meridian sync`.",
            crate::id::prefix(&this, 12)
        );
    }
    Ok(())
}

/// Makes a workspace just created or joined the current one when the node has others
/// (otherwise commands would ask which one is meant), and says how to go back.
fn switch_to(node: &Node, id: Id, name: &str, out: &Out) -> Result<()> {
    let all = node.workspaces()?;
    if all.len() < 2 {
        return Ok(());
    }
    let before = node
        .current_workspace()?
        .and_then(|current| all.iter().find(|(w, _)| *w == current))
        .map(|(_, record)| record.name.clone());
    node.set_current_workspace(id)?;
    match before {
        Some(before) if before != name => said!(
            out,
            "Commands now use {name}; `meridian workspace use {before}` goes back (or pass -w)."
        ),
        _ => said!(
            out,
            "Commands now use {name}; `meridian workspace use NAME` picks another (or pass -w)."
        ),
    }
    Ok(())
}

/// Whether two spellings name one relay (`ws://h:7070` and `ws://H:7070/v1/`).
fn same_relay(a: &str, b: &str) -> bool {
    a == b
        || matches!(
            (crate::sync::net::relay_url(a), crate::sync::net::relay_url(b)),
            (Ok(a), Ok(b)) if a == b
        )
}

/// `meridian workspace relay add|remove|list`
fn relay(node: &Node, selector: Option<&str>, command: RelayCommand, out: &Out) -> Result<()> {
    let (id, record) = node.workspace(selector)?;
    match command {
        RelayCommand::Add { url, ca } => {
            crate::sync::net::endpoint(&url)?;
            let url = crate::sync::net::relay_url(&url)?;
            if let Some(known) = record.relays.iter().find(|r| same_relay(r, &url)) {
                if ca.is_some() {
                    trust_ca(node, std::slice::from_ref(known), ca.as_deref(), out)?;
                    return out.done(json!({"relay": known}));
                }
                bail!("workspace `{}` already syncs with {known}", record.name);
            }
            trust_ca(node, std::slice::from_ref(&url), ca.as_deref(), out)?;
            let reach = crate::app::team::add_relay(node, id, &url)?;
            out.done(json!({"relay": url, "shared": reach == Reach::Everyone}))?;
            match reach {
                Reach::Everyone => said!(
                    out,
                    "Workspace {} now syncs with {url}, for every member: their nodes start using it at their next sync. `meridian sync` sends it everything.",
                    record.name
                ),
                Reach::ThisDevice => said!(
                    out,
                    "This device now syncs {} with {url}. Only the creator and admins share a relay with every member: ask {} to add it too.",
                    record.name,
                    record.state.name_of(&hex::encode(&record.creator))
                ),
            }
        }
        RelayCommand::Remove { url } => {
            // A shared relay this device dropped can still be unshared by an admin here.
            let listed = record.relays.iter().chain(&record.state.relays);
            let Some(url) = listed.into_iter().find(|r| same_relay(r, &url)).cloned() else {
                let listed = if record.relays.is_empty() {
                    "it lists none".to_string()
                } else {
                    format!("it syncs with {}", record.relays.join(", "))
                };
                crate::fail!(
                    NotFound,
                    "workspace `{}` does not sync with {url}: {listed}",
                    record.name
                );
            };
            let left = record.relays.iter().filter(|r| **r != url).count();
            let reach = crate::app::team::remove_relay(node, id, &url)?;
            out.done(json!({"relay": url, "shared": reach == Reach::Everyone}))?;
            let whom = match reach {
                Reach::Everyone => "for every member",
                Reach::ThisDevice => "on this device",
            };
            if left == 0 {
                said!(
                    out,
                    "Workspace {} no longer syncs with {url} {whom}, and lists no relay now: what you write stays here until you add one.",
                    record.name
                );
            } else {
                said!(
                    out,
                    "Workspace {} no longer syncs with {url} {whom}.",
                    record.name
                );
            }
        }
        RelayCommand::List => {
            let mut rows = Vec::new();
            for relay in &record.relays {
                let cursor = crate::sync::cursor(node, id, relay)?;
                rows.push((relay, cursor));
            }
            let waiting = crate::sync::outbox(node, id, 0, usize::MAX)?.len();
            if out.json {
                let list: Vec<_> = rows
                    .iter()
                    .map(|(relay, c)| json!({"relay": relay, "pulled": c.pulled, "pushed": c.pushed}))
                    .collect();
                out.print_json(&json!({"relays": list, "outbox": waiting}))?;
            } else {
                if rows.is_empty() {
                    say!(
                        out,
                        "Workspace {} lists no relay: add one with `meridian workspace relay add URL`.",
                        record.name
                    );
                }
                for (relay, cursor) in rows {
                    if out.verbose {
                        say!(
                            out,
                            "{relay}  (pulled up to log entry {}, pushed up to outbox entry {})",
                            cursor.pulled,
                            cursor.pushed
                        );
                    } else {
                        say!(out, "{relay}");
                    }
                }
                match waiting {
                    0 => said!(out, "Nothing waits to be sent."),
                    n => said!(
                        out,
                        "{n} {} waiting to be sent: `meridian sync` sends {}.",
                        if n == 1 { "edit" } else { "edits" },
                        if n == 1 { "it" } else { "them" }
                    ),
                }
            }
        }
    }
    Ok(())
}

/// `meridian member remove NAME`
pub fn remove_member(ctx: &Ctx, name: &str) -> Result<()> {
    // The creator, from any of their devices.
    if hex::encode(&ctx.record.creator) != ctx.me {
        crate::fail!(
            Refused,
            "only the workspace's creator ({}) can remove members",
            ctx.record.state.name_of(&hex::encode(&ctx.record.creator))
        );
    }
    let member = ctx.record.state.find(name)?.clone();
    if member.id == ctx.me {
        bail!("you created this workspace: you cannot remove yourself");
    }
    if member.removed {
        bail!("{} was already removed", member.name);
    }
    ctx.node.remove_member(ctx.workspace, &member, now_ms())?;
    ctx.out
        .done(json!({"member": ctx.person(&member.id), "removed": true}))?;
    if !ctx.out.json {
        warn!(
            ctx.out,
            "{} is removed, and what you write from now on is sealed under a new key their device does not hold. Relays refuse their devices once you sync (`meridian sync`).",
            member.name
        );
    }
    Ok(())
}

/// `meridian member admin NAME [--remove]`
pub fn admin(ctx: &Ctx, name: &str, remove: bool) -> Result<()> {
    let id = crate::app::team::set_admin(ctx, name, !remove)?;
    if remove {
        said!(ctx.out, "{} no longer changes the norms.", ctx.name(&id));
    } else {
        said!(
            ctx.out,
            "{} may change the norms and the ladder from your next sync.",
            ctx.name(&id)
        );
    }
    ctx.out
        .done(json!({"member": {"id": id, "name": ctx.name(&id)}, "admin": !remove}))
}

/// The zone a member's times are shown in: theirs, UTC if their entry holds nonsense.
fn calendar_tz(member: &crate::workspace::Member) -> jiff::tz::TimeZone {
    member.calendar().tz
}

pub fn members(ctx: &Ctx) -> Result<()> {
    let now = crate::node::now();
    let mut rows = Vec::new();
    for member in &ctx.record.state.members {
        // The zone their deadlines are computed in: UTC if their entry holds nonsense.
        let calendar = member.calendar();
        let local = now.to_zoned_datetime(calendar.tz.clone());
        let working = calendar.add_working_minutes(now, 0) == Some(now);
        rows.push((member, local, working));
    }
    // By name, as people look for them; removed members last.
    rows.sort_by_cached_key(|(m, _, _)| (m.removed, ctx.name(&m.id).to_lowercase(), m.id.clone()));
    if ctx.out.json {
        let list: Vec<_> = rows
            .iter()
            .map(|(m, local, working)| {
                json!({
                    "id": m.id, "name": m.name, "shown": ctx.name(&m.id), "keys": m.keys, "tz": m.tz, "hours": m.hours, "days": m.days,
                    "away": m.away,
                    "verified": m.verified, "removed": m.removed,
                    "removal": super::removal_json(ctx, &m.id),
                    "admin": m.admin || ctx.record.creator == hex::decode(&m.id).unwrap_or_default(),
                    "invited_by": m.invited_by.as_ref().map(|i| ctx.person(i)),
                    "local_time": super::rfc3339_in(local.timestamp().as_millisecond(), &calendar_tz(m)),
                    "working_now": working,
                })
            })
            .collect();
        ctx.out.print_json(&json!(list))?;
    } else {
        let mut table = Table::new(&["NAME", "KEY", "TIME ZONE", "WORKS", "THEIR TIME NOW", ""]);
        for (m, local, working) in rows {
            let removed = super::removal_text(ctx, &m.id);
            let (status, tone) = match (m.verified, removed, working) {
                (_, Some(removed), _) => (removed, Tone::Alarm),
                (false, _, _) => ("UNVERIFIED".to_string(), Tone::Alarm),
                (true, None, true) => ("working".to_string(), Tone::Good),
                (true, None, false) => (String::new(), Tone::Plain),
            };
            let admin = if m.admin { " (admin)" } else { "" };
            table.row(vec![
                Cell::new(format!("{}{admin}", ctx.name(&m.id))),
                Cell::toned(crate::id::prefix(&m.id, 12), Tone::Id),
                Cell::new(&m.tz),
                Cell::new(format!("{} {}", m.days, m.hours)),
                Cell::new(local.strftime("%a %H:%M").to_string()),
                Cell::toned(status, tone),
            ]);
        }
        table.print(&ctx.out)?;
    }
    Ok(())
}

/// Trusts the CA certificate in `file` (PEM) for the `wss://` relays among `relays`, after
/// checking it holds a certificate.
fn trust_ca(node: &Node, relays: &[String], file: Option<&Path>, out: &Out) -> Result<()> {
    let Some(file) = file else {
        return Ok(());
    };
    let secure: Vec<&String> = relays.iter().filter(|r| r.starts_with("wss://")).collect();
    if secure.is_empty() {
        crate::fail!(
            Usage,
            "--ca is for wss:// relays, and none is named here: a ws:// relay uses no TLS"
        );
    }
    let pem = std::fs::read(file)
        .with_context(|| format!("cannot read the CA certificate {}", file.display()))?;
    crate::error::typed(|| crate::sync::tls::ca_certificates(&pem, &file.display().to_string()))?;
    for relay in secure {
        node.set_relay_ca(relay, &pem)?;
        said!(
            out,
            "Trusting the CA in {} for {relay}, beside the system's roots.",
            file.display()
        );
    }
    Ok(())
}

/// `meridian workspace keys`
fn keys(ctx: &Ctx) -> Result<()> {
    use serde_json::Value as Json;
    let keys = crate::epochs::keys(&ctx.node.db().begin_read()?, ctx.workspace, &ctx.record)?;
    let short = |hash: &[u8; 32]| hex::encode(&hash[..4]);
    let sealing = match &keys.sealing {
        crate::keyring::Sealing::First => "first".to_string(),
        crate::keyring::Sealing::Epoch(hash) => hex::encode(&hash[..4.min(hash.len())]),
        crate::keyring::Sealing::Waiting => "waiting".to_string(),
    };
    let why = |reason: &crate::keyring::Reason| match reason {
        crate::keyring::Reason::Removal { member } => format!("removal of {}", ctx.name(member)),
        crate::keyring::Reason::Repair => "repair".to_string(),
    };
    if ctx.out.json {
        let epochs: Vec<Json> = keys
            .epochs
            .iter()
            .map(|e| {
                let (reason, removed) = match &e.reason {
                    crate::keyring::Reason::Removal { member } => ("removal", ctx.person(member)),
                    crate::keyring::Reason::Repair => ("repair", Json::Null),
                };
                json!({
                    "id": short(&e.hash),
                    "started_by": ctx.person(&hex::encode(e.author)),
                    "reason": reason,
                    "removed": removed,
                    "devices": e.devices,
                    "held": e.held,
                    "adopted": e.adopted,
                })
            })
            .collect();
        return ctx.out.print_json(&json!({
            "sealing": sealing,
            "epochs": epochs,
            "waiting_records": keys.waiting_records,
            "waiting_envelopes": keys.waiting_envelopes,
        }));
    }
    let out = &ctx.out;
    match &keys.sealing {
        crate::keyring::Sealing::First => said!(
            out,
            "Nobody was removed from {}: everything is sealed under the workspace key every member received with their invite.",
            ctx.record.name
        ),
        crate::keyring::Sealing::Epoch(_) => said!(
            out,
            "New edits in {} are sealed under key {sealing}, which no removed member's device holds.",
            ctx.record.name
        ),
        crate::keyring::Sealing::Waiting => said!(
            out,
            "Someone was removed from {} and this device holds no key started after it yet: `meridian sync` fetches it (or starts one).",
            ctx.record.name
        ),
    }
    if !keys.epochs.is_empty() {
        said!(out, "");
        let mut table = Table::new(&["KEY", "STARTED BY", "WHY", "DEVICES", "HERE"]);
        for e in &keys.epochs {
            let here = match (e.held, e.adopted) {
                (true, _) if short(&e.hash) == sealing => "sealing under it",
                (true, true) => "held",
                (true, false) => "held, record checked later",
                (false, true) => "not received",
                (false, false) => "not received, record waiting",
            };
            table.row(vec![
                Cell::new(short(&e.hash)),
                Cell::new(ctx.name(&hex::encode(e.author))),
                Cell::new(why(&e.reason)),
                Cell::new(e.devices.to_string()),
                Cell::new(here),
            ]);
        }
        table.print(out)?;
    }
    if keys.waiting_envelopes > 0 {
        said!(
            out,
            "{} {} for a key this device has not received: a member who holds it sends it at their next sync.",
            keys.waiting_envelopes,
            if keys.waiting_envelopes == 1 {
                "edit waits"
            } else {
                "edits wait"
            }
        );
    }
    Ok(())
}
