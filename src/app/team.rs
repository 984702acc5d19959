//! The workspace's people and settings: its norms (urgency levels), escalation ladder and
//! templates, who administers them, members' removal, and each person's own profile.
//!
//! Norms and the ladder are the creator's and the admins' to change: the document rules
//! check it on every replica, and these functions refuse early with what to do.

use anyhow::{Context as _, Result};
use automerge::ROOT;
use serde::Serialize;

use super::Context;
use crate::doc::View;
use crate::fail;
use crate::node::{commit, now_ms};
use crate::norms::ResponseTime;
use crate::workspace::{self, builtin_template};

/// Refuses unless the person may change the norms.
fn check_may_set_norms(cx: &Context) -> Result<()> {
    if cx.record.state.may_set_norms(&cx.me, &cx.record.creator) {
        return Ok(());
    }
    let creator = cx.name(&hex::encode(&cx.record.creator));
    fail!(
        Refused,
        "only the workspace's creator ({creator}) and the admins they name change the norms and the ladder: ask {creator} to make you one (`meridian member admin {}`)",
        cx.name(&cx.me)
    )
}

/// Whether the person created this workspace.
fn is_creator(cx: &Context) -> bool {
    hex::encode(&cx.record.creator) == cx.me
}

/// What `workspace norm` changes of a level: its response time, whether its requests
/// interrupt quiet hours, or both.
#[derive(Clone, Debug, Default)]
pub struct LevelChange<'a> {
    /// The response time (`30m`, `4h`, `2d`, `none`); a new level needs one.
    pub within: Option<&'a str>,
    /// Whether requests of the level reach people in their quiet hours.
    pub interrupts: Option<bool>,
    /// The level is one the workspace does not have yet.
    pub new: bool,
}

/// Changes an urgency level (a level the workspace lacks needs `new`) and returns it as it
/// then is: its response time and whether it interrupts quiet hours.
pub fn set_level(cx: &Context, level: &str, change: LevelChange) -> Result<(ResponseTime, bool)> {
    check_may_set_norms(cx)?;
    let within = change.within.map(ResponseTime::parse).transpose()?;
    let level = level.trim();
    let norms = cx.record.state.norms();
    let known = norms.levels.contains_key(level);
    if !known && !change.new {
        let levels: Vec<String> = norms.levels.into_keys().collect();
        fail!(
            Usage,
            "`{level}` is not an urgency level of this workspace (it has {}): add it with --new",
            levels.join(", ")
        );
    }
    if known && change.new {
        fail!(
            Usage,
            "`{level}` is a level already: leave out --new to change it"
        );
    }
    if level.is_empty() || level.contains(char::is_whitespace) || level.contains(':') {
        fail!(
            Usage,
            "`{level}` is not a level name: one word without `:`, like blocker"
        );
    }
    let Some(within) = within.or_else(|| norms.levels.get(level).copied()) else {
        fail!(
            Usage,
            "a new level needs its response time: `meridian workspace norm {level} 4h --new`"
        );
    };
    let interrupts = change.interrupts.unwrap_or(norms.interrupts(level));
    let mut said = Vec::new();
    if change.within.is_some() {
        said.push(format!("respond within {within}"));
    }
    match change.interrupts {
        Some(true) => said.push("interrupts quiet hours".to_string()),
        Some(false) => said.push("waits for working hours".to_string()),
        None => {}
    }
    cx.node.edit(cx.workspace, cx.workspace, |doc| {
        let mut tx = doc.transaction();
        if change.within.is_some() {
            workspace::put_level(&mut tx, level, within)?;
        }
        if let Some(interrupts) = change.interrupts {
            workspace::put_level_interrupts(&mut tx, level, interrupts)?;
        }
        commit(tx, &format!("urgency {level}: {}", said.join(", ")));
        Ok(())
    })?;
    Ok((within, interrupts))
}

/// Replaces the escalation ladder.
pub fn set_ladder(cx: &Context, names: &[String]) -> Result<Vec<String>> {
    check_may_set_norms(cx)?;
    let ids = cx.record.state.find_active(names, "on the ladder")?;
    let shown: Vec<String> = ids.iter().map(|id| cx.name(id)).collect();
    cx.node.edit(cx.workspace, cx.workspace, |doc| {
        let mut tx = doc.transaction();
        workspace::put_ladder(&mut tx, &ids)?;
        commit(tx, &format!("escalation ladder: {}", shown.join(" → ")));
        Ok(())
    })?;
    Ok(ids)
}

/// Adds or replaces a custom proposal template.
pub fn set_template(cx: &Context, name: &str, sections: &[String]) -> Result<()> {
    if builtin_template(name).is_some() {
        fail!(
            Usage,
            "`{name}` is a built-in template: choose another name"
        );
    }
    let sections = crate::proposal::merge_sections(
        sections
            .iter()
            .map(|s| (s.clone(), String::new()))
            .collect(),
    )?;
    let sections: Vec<String> = sections.into_iter().map(|(n, _)| n).collect();
    cx.node.edit(cx.workspace, cx.workspace, |doc| {
        let mut tx = doc.transaction();
        workspace::put_template(&mut tx, name, &sections)?;
        commit(tx, &format!("template {name}: {}", sections.join(", ")));
        Ok(())
    })
}

/// Names a member admin, or no longer (the creator only).
pub fn set_admin(cx: &Context, name: &str, admin: bool) -> Result<String> {
    if !is_creator(cx) {
        fail!(Refused, "only the workspace's creator names admins");
    }
    let member = cx.record.state.find(name)?.clone();
    if member.id == cx.me {
        fail!(
            Usage,
            "you created this workspace: you may change its norms already"
        );
    }
    if member.removed {
        fail!(Refused, "{} was removed from the workspace", member.name);
    }
    if member.admin == admin {
        fail!(
            Usage,
            "{} is {} an admin",
            member.name,
            if admin { "already" } else { "not" }
        );
    }
    cx.node.edit(cx.workspace, cx.workspace, |doc| {
        let view = View::now(doc);
        let entry = view
            .map(&ROOT, "members")
            .and_then(|members| view.map(&members, &member.id))
            .context("the member has no entry in the workspace document")?;
        let mut tx = doc.transaction();
        workspace::put_admin(&mut tx, &entry, admin.then(now_ms))?;
        let verb = if admin { "admin" } else { "no longer admin" };
        commit(tx, &format!("{verb}: {}", member.name));
        Ok(())
    })?;
    Ok(member.id)
}

/// The norms as people read them: levels from most to least urgent, the ladder, the
/// admins and every template with its sections.
#[derive(Clone, Debug, Serialize)]
pub struct NormsView {
    /// Levels most urgent first (no response expected last).
    pub levels: Vec<LevelView>,
    /// The ladder, member ids in order.
    pub ladder: Vec<String>,
    /// Who may change the norms: the creator, then the admins.
    pub admins: Vec<String>,
    /// Templates, built-in first, each with its sections.
    pub templates: Vec<(String, Vec<String>)>,
}

/// An urgency level as `workspace norms` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct LevelView {
    /// Its name.
    pub name: String,
    /// Its response time in the responder's working time (`4h`, `2d`, `none`).
    pub within: String,
    /// Whether its requests reach people in their quiet hours.
    pub interrupts: bool,
}

/// The workspace's norms, for `workspace norms`.
pub fn norms(cx: &Context) -> NormsView {
    let norms = cx.record.state.norms();
    let levels = norms
        .levels_by_urgency()
        .into_iter()
        .map(|name| LevelView {
            name: name.to_string(),
            within: norms.levels[name].to_string(),
            interrupts: norms.interrupts(name),
        })
        .collect();
    let mut admins = vec![hex::encode(&cx.record.creator)];
    admins.extend(
        cx.record
            .state
            .active_members()
            .filter(|m| m.admin)
            .map(|m| m.id.clone()),
    );
    let mut templates: Vec<(String, Vec<String>)> = ["rfc", "adr", "decision"]
        .iter()
        .filter_map(|name| Some((name.to_string(), builtin_template(name)?)))
        .collect();
    templates.extend(
        cx.record
            .state
            .templates
            .iter()
            .map(|(n, s)| (n.clone(), s.clone())),
    );
    NormsView {
        levels,
        ladder: norms.ladder,
        admins,
        templates,
    }
}

/// Refuses a display name another member of any of this node's workspaces already uses
/// (ignoring case), suggesting a form that tells the two apart.
pub fn check_name_free(node: &crate::node::Node, name: &str, tz: &str) -> Result<()> {
    let me = node.member_id();
    let city = tz.rsplit('/').next().unwrap_or(tz).replace('_', " ");
    for (_, record) in node.workspaces()? {
        if let Some(other) = record
            .state
            .active_members()
            .find(|m| m.id != me && m.name.to_lowercase() == name.trim().to_lowercase())
        {
            let name = name.trim();
            fail!(
                Refused,
                "`{name}` is taken in workspace {} (the member with key {}): choose a name that tells you apart, like `{name} ({city})` or your name with an initial",
                record.name,
                crate::id::prefix(&other.id, 8),
            );
        }
    }
    Ok(())
}

/// Changes this person's profile (`change` edits a copy), here and in their member entry
/// of every workspace, so others' deadlines for them follow.
pub fn update_profile(
    node: &crate::node::Node,
    change: impl FnOnce(&mut crate::identity::Profile) -> Result<()>,
) -> Result<crate::identity::Profile> {
    let before = node.profile()?;
    let mut profile = before.clone();
    change(&mut profile)?;
    profile.name = profile.name.trim().to_string();
    profile.validate()?;
    for period in &profile.away {
        crate::norms::parse_away(period)?;
    }
    if profile == before {
        return Ok(profile);
    }
    if !profile.name.eq_ignore_ascii_case(&before.name) {
        check_name_free(node, &profile.name, &profile.tz)?;
    }
    let me = node.member_id();
    for (workspace, _) in node.workspaces()? {
        node.edit(workspace, workspace, |doc| {
            let view = View::now(doc);
            let Some(entry) = view
                .map(&ROOT, "members")
                .and_then(|members| view.map(&members, &me))
            else {
                return Ok(());
            };
            let mut tx = doc.transaction();
            workspace::put_profile(&mut tx, &entry, &profile)?;
            commit(tx, &profile.change_since(&before));
            Ok(())
        })?;
    }
    node.set_profile(&profile)?;
    Ok(profile)
}

/// Adds a period away (`2026-12-24..2027-01-02`, or one day), from today on in the person's
/// zone: a past day would change deadlines that already passed.
pub fn add_away(
    node: &crate::node::Node,
    text: &str,
    now: jiff::Timestamp,
) -> Result<crate::identity::Profile> {
    update_profile(node, |p| {
        let (from, to) = crate::norms::parse_away(text)?;
        let today = now
            .to_zoned_datetime(crate::norms::time_zone(&p.tz)?)
            .date();
        if to < today {
            fail!(
                Usage,
                "{text} is over: days away are today or later (in your zone, {})",
                p.tz
            );
        }
        let from = from.max(today);
        match crate::norms::add_away_period(&p.away, (from, to)) {
            Ok(periods) => p.away = periods,
            Err(covering) => fail!(Usage, "you are away then already ({covering})"),
        }
        Ok(())
    })
}

/// Whom a change to a workspace's relays reaches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reach {
    /// Every member: the relay list in the workspace document changed (the creator and
    /// admins), and each member's node follows it at its next sync.
    Everyone,
    /// This device only.
    ThisDevice,
}

/// Adds a relay (a canonical URL) to a workspace: shared with every member when this
/// person may change the norms, otherwise for this device only.
pub fn add_relay(node: &crate::node::Node, workspace: crate::id::Id, url: &str) -> Result<Reach> {
    let (_, record) = node.workspace(Some(&workspace.hex()))?;
    node.edit_record(workspace, |record| {
        if !record.relays.iter().any(|r| r == url) {
            record.relays.push(url.to_string());
        }
        record.dropped.retain(|r| r != url);
        // Added here: this device's own, whatever the workspace shares later.
        record.followed.retain(|r| r != url);
    })?;
    let me = node.member_id();
    if !record.state.may_set_norms(&me, &record.creator) {
        return Ok(Reach::ThisDevice);
    }
    if !record.state.relays.iter().any(|r| r == url) {
        let mut shared = record.state.relays.clone();
        shared.push(url.to_string());
        share_relays(node, workspace, &shared, &format!("share relay {url}"))?;
    }
    Ok(Reach::Everyone)
}

/// Stops using a relay (a canonical URL the workspace lists): for every member when this
/// person may change the norms, otherwise for this device only (which then ignores it
/// even while the workspace shares it).
pub fn remove_relay(
    node: &crate::node::Node,
    workspace: crate::id::Id,
    url: &str,
) -> Result<Reach> {
    let (_, record) = node.workspace(Some(&workspace.hex()))?;
    let shared = record.state.relays.iter().any(|r| r == url);
    let me = node.member_id();
    let everyone = shared && record.state.may_set_norms(&me, &record.creator);
    if everyone {
        let rest: Vec<String> = record
            .state
            .relays
            .iter()
            .filter(|r| *r != url)
            .cloned()
            .collect();
        share_relays(node, workspace, &rest, &format!("stop sharing relay {url}"))?;
    }
    node.edit_record(workspace, |record| {
        record.relays.retain(|r| r != url);
        record.followed.retain(|r| r != url);
        if shared && !everyone && !record.dropped.iter().any(|r| r == url) {
            record.dropped.push(url.to_string());
        }
    })?;
    Ok(if everyone {
        Reach::Everyone
    } else {
        Reach::ThisDevice
    })
}

/// Makes `relays` the workspace's shared relays, in one change with `message`.
fn share_relays(
    node: &crate::node::Node,
    workspace: crate::id::Id,
    relays: &[String],
    message: &str,
) -> Result<()> {
    node.edit(workspace, workspace, |doc| {
        let mut tx = doc.transaction();
        workspace::put_relays(&mut tx, relays)?;
        commit(tx, message);
        Ok(())
    })
}
