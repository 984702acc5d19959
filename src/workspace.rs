//! The workspace document: members with their keys, time zones and working hours, the
//! norms for response times, and custom templates; plus invite codes.
//!
//! Membership is checkable offline from the document alone. The creator's key is the root;
//! every other member entry carries an invite proof: the inviter's signature over a one-time
//! invite key, and the invite key's signature over the new member's device key. A member
//! entry whose proof does not lead back to the creator is shown as unverified and its
//! author's changes are refused. The workspace document starts from a deterministic genesis
//! change that every node can build from the workspace id and creator key, so a member who
//! joins offline edits the same maps as everyone else instead of a concurrent copy of them.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context, Result, bail};
use automerge::transaction::{CommitOptions, Transactable};
use automerge::{ActorId, Automerge, ObjId, ObjType, ROOT};
use base64::Engine as _;
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
pub use meridian_relay::membership::JoinProof;
use meridian_relay::membership::{invite_message, join_message, verify_signature};
use serde::{Deserialize, Serialize};

use crate::doc::{View, ensure_map, put_str_list};
use crate::id::{Id, random_bytes};
use crate::identity::Profile;
use crate::norms::{Calendar, Norms, ResponseTime, WorkingHours, time_zone};

/// The prefix of every invite code.
pub const INVITE_PREFIX: &str = "meridian-invite-1-";

/// The sections of the built-in templates.
pub fn builtin_template(name: &str) -> Option<Vec<String>> {
    let sections: &[&str] = match name {
        "rfc" => &[
            "Summary",
            "Motivation",
            "Design",
            "Drawbacks",
            "Alternatives",
            "Unresolved questions",
        ],
        "adr" => &["Context", "Decision", "Consequences"],
        "decision" => &["Decision", "Rationale"],
        _ => return None,
    };
    Some(sections.iter().map(|s| s.to_string()).collect())
}

/// A member as the workspace document describes them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// The member id: the hex device key they joined with.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Every device key of this member, hex.
    pub keys: Vec<String>,
    /// IANA time zone.
    pub tz: String,
    /// Working hours `HH:MM-HH:MM`.
    pub hours: String,
    /// Working days `mon-fri`.
    pub days: String,
    /// Whether their membership proof leads back to the workspace creator.
    pub verified: bool,
    /// Who invited them (member id), if not the creator.
    pub invited_by: Option<String>,
    /// Whether the creator removed them: relays refuse them from then on. Their changes
    /// made before stay valid everywhere, so every replica keeps accepting the same set.
    #[serde(default)]
    pub removed: bool,
    /// When the creator removed them, ms by the creator's clock (the value of their entry's
    /// `removed`).
    #[serde(default)]
    pub removed_at: Option<i64>,
    /// What the creator had of them when removing them ([`crate::lock::Lock`], encoded):
    /// their changes beyond it are refused. `None` for a removal made by a build from
    /// before locks.
    #[serde(default, with = "serde_bytes")]
    pub lock: Option<Vec<u8>>,
    /// When they joined, ms (by their own clock).
    #[serde(default)]
    pub joined: Option<i64>,
    /// The creator named them admin: they may change the norms and the ladder.
    #[serde(default)]
    pub admin: bool,
    /// The encryption key their device published and certified (hex X25519), which key
    /// epochs will wrap their secrets to; `None` until their device has published one.
    #[serde(default)]
    pub encryption: Option<String>,
    /// Their devices: the first (the member id) and every one it, or another of theirs,
    /// added (`meridian device add`), with each one's certified encryption key.
    #[serde(default)]
    pub devices: Vec<Device>,
    /// Days they are away, as `FROM..TO` (their own zone's dates).
    #[serde(default)]
    pub away: Vec<String>,
    /// The name others see: their own, or with a distinguishing suffix when another
    /// member chose the same name (`Bo#b0e2`).
    #[serde(default)]
    pub shown: String,
}

/// One device of a member.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
    /// Its device key, hex.
    pub key: String,
    /// Its certified encryption key (hex X25519), once published.
    pub encryption: Option<String>,
    /// The device of the same member that added it (`None` for the first).
    pub by: Option<String>,
    /// When a device of the same member revoked it (ms by that device's clock): its key
    /// gets no new key epoch, relays refuse it, and its changes after the revoker's view
    /// of it are refused like a removed member's (`lock`).
    #[serde(default)]
    pub revoked: Option<i64>,
    /// What the revoker had of it ([`crate::lock::Lock`], encoded).
    #[serde(default, with = "serde_bytes")]
    pub lock: Option<Vec<u8>>,
}

impl Device {
    /// Whether it still counts (not revoked).
    pub fn active(&self) -> bool {
        self.revoked.is_none()
    }
}

impl Member {
    /// A verified member working 09:00-17:00 Monday to Friday in `tz`, for tests.
    #[cfg(test)]
    pub(crate) fn for_test(id: &str, name: &str, tz: &str) -> Member {
        Member {
            id: id.into(),
            name: name.into(),
            keys: vec![id.into()],
            tz: tz.into(),
            hours: "09:00-17:00".into(),
            days: "mon-fri".into(),
            verified: true,
            invited_by: None,
            removed: false,
            removed_at: None,
            lock: None,
            encryption: None,
            devices: Vec::new(),
            joined: None,
            admin: false,
            away: Vec::new(),
            shown: name.into(),
        }
    }

    /// Their calendar, falling back to UTC office hours if the document holds nonsense.
    pub fn calendar(&self) -> Calendar {
        Calendar {
            tz: time_zone(&self.tz).unwrap_or(jiff::tz::TimeZone::UTC),
            hours: WorkingHours::parse(&self.hours, &self.days).unwrap_or_default(),
            away: crate::norms::away_periods(&self.away),
        }
    }
}

/// What the node caches of a workspace document, so lists and the inbox need not load it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkspaceState {
    /// Everyone with a member entry, verified or not.
    pub members: Vec<Member>,
    /// Urgency levels that override the defaults: name → response time (`2d`, `4h`, `none`),
    /// and `NAME:interrupts` → `yes` or `no` for whether the level's requests reach people
    /// in their quiet hours (see [`INTERRUPTS`]).
    pub levels: BTreeMap<String, String>,
    /// The escalation ladder, member ids in order.
    pub ladder: Vec<String>,
    /// Custom templates: name → section names.
    pub templates: BTreeMap<String, Vec<String>>,
    /// The relays the creator and admins share with every member (canonical URLs).
    #[serde(default)]
    pub relays: Vec<String>,
}

/// A member's removal, as `member list`, `log` and `show` tell it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Removal {
    /// The removed member's id.
    pub member: String,
    /// When, ms by the remover's clock (unknown only for a home summarised before it was
    /// kept, until the workspace document changes).
    pub at: Option<i64>,
    /// Who removed them (member id).
    pub by: String,
}

impl WorkspaceState {
    /// The norms in force: defaults overlaid with the workspace's own levels.
    pub fn norms(&self) -> Norms {
        let mut norms = Norms::default();
        for (name, value) in &self.levels {
            if let Some(level) = name.strip_suffix(INTERRUPTS) {
                match value.as_str() {
                    "yes" => norms.interrupting.insert(level.to_string()),
                    "no" => norms.interrupting.remove(level),
                    _ => false,
                };
            } else if let Ok(time) = ResponseTime::parse(value) {
                norms.levels.insert(name.clone(), time);
            }
        }
        norms.ladder = self.ladder.clone();
        norms
    }

    /// Whether `member` may change the norms and the ladder: the creator, or an admin.
    pub fn may_set_norms(&self, member: &str, creator: &[u8]) -> bool {
        hex::encode(creator) == member
            || self
                .members
                .iter()
                .any(|m| m.id == member && m.admin && !m.removed)
    }

    /// Who removed the verified member with this id or device key, and when, if they were
    /// removed: the creator, the only one the rules let remove anyone.
    pub fn removal(&self, id_or_key: &str, creator: &[u8]) -> Option<Removal> {
        let member = self.member(id_or_key).filter(|m| m.removed)?;
        Some(Removal {
            member: member.id.clone(),
            at: member.removed_at,
            by: hex::encode(creator),
        })
    }

    /// The verified members who were not removed.
    pub fn active_members(&self) -> impl Iterator<Item = &Member> {
        self.members.iter().filter(|m| m.verified && !m.removed)
    }

    /// The current member (verified, not removed) whose device this key is, while that
    /// device is not revoked: who may write key records now.
    pub fn active_device_member(&self, key: &str) -> Option<&Member> {
        self.active_members().find(|m| {
            m.keys.iter().any(|k| k == key)
                && !m.devices.iter().any(|d| d.key == key && !d.active())
        })
    }

    /// The verified member with this id or device key.
    pub fn member(&self, id_or_key: &str) -> Option<&Member> {
        self.members
            .iter()
            .find(|m| m.verified && (m.id == id_or_key || m.keys.iter().any(|k| k == id_or_key)))
    }

    /// The member (id) whose device this key is, when it is another device than their
    /// first (whose key is the member id).
    pub fn member_of_device(&self, key: &str) -> Option<&str> {
        self.members
            .iter()
            .find(|m| m.id != key && m.keys.iter().any(|k| k == key))
            .map(|m| m.id.as_str())
    }

    /// Whether a device key belongs to a verified member.
    pub fn is_member_key(&self, key: &[u8]) -> bool {
        self.member(&hex::encode(key)).is_some()
    }

    /// The display name for a member id or key, or a short key when unknown.
    pub fn name_of(&self, id_or_key: &str) -> String {
        match self
            .members
            .iter()
            .find(|m| m.id == id_or_key || m.keys.iter().any(|k| k == id_or_key))
        {
            Some(m) if m.verified && !m.shown.is_empty() => m.shown.clone(),
            Some(m) if m.verified => m.name.clone(),
            Some(m) => format!("{} (unverified)", m.name),
            None => format!("unknown key {}", id_or_key.get(..12).unwrap_or(id_or_key)),
        }
    }

    /// Finds a verified member by name (case-insensitive), or by id prefix.
    pub fn find(&self, name: &str) -> Result<&Member> {
        let verified = || self.members.iter().filter(|m| m.verified);
        // The name others see (`Bo#b0e2`) names one member even when two chose `Bo`.
        let same = |a: &str| a.to_lowercase() == name.trim().to_lowercase();
        let shown: Vec<&Member> = verified()
            .filter(|m| !m.shown.is_empty() && same(&m.shown))
            .collect();
        if let [one] = shown.as_slice() {
            return Ok(one);
        }
        let by_name: Vec<&Member> = verified().filter(|m| same(&m.name)).collect();
        match by_name.as_slice() {
            [one] => return Ok(one),
            [] => {}
            several => crate::fail!(
                Ambiguous,
                "several members are called `{name}`: name one as {}",
                several
                    .iter()
                    .map(|m| format!("`{}`", m.shown))
                    .collect::<Vec<_>>()
                    .join(" or ")
            ),
        }
        let by_key: Vec<&Member> = verified()
            .filter(|m| !name.is_empty() && m.id.starts_with(&name.to_ascii_lowercase()))
            .collect();
        match by_key.as_slice() {
            [one] => Ok(one),
            _ => {
                let names: Vec<&str> = self
                    .active_members()
                    .map(|m| {
                        if m.shown.is_empty() {
                            m.name.as_str()
                        } else {
                            m.shown.as_str()
                        }
                    })
                    .collect();
                let hint = crate::error::closest(name, names.iter().copied())
                    .map(|n| format!(" (did you mean {n}?)"))
                    .unwrap_or_default();
                crate::fail!(
                    NotFound,
                    "no member is called `{name}`{hint}: members are {}",
                    names.join(", ")
                )
            }
        }
    }

    /// The members named, each once and in the order first named, for a role such as
    /// "asked" or "a decider": naming someone twice is naming them once, and a removed
    /// member is refused with who removed them.
    pub fn find_active(&self, names: &[String], role: &str) -> Result<Vec<String>> {
        let mut ids: Vec<String> = Vec::new();
        for name in names {
            let member = self.find(name)?;
            if member.removed {
                bail!(
                    "{} was removed from the workspace and cannot be {role}: `meridian member list` shows who can",
                    self.name_of(&member.id)
                );
            }
            if !ids.contains(&member.id) {
                ids.push(member.id.clone());
            }
        }
        Ok(ids)
    }

    /// The section names of a template, built-in or custom.
    pub fn template(&self, name: &str) -> Result<Vec<String>> {
        if let Some(sections) = self.templates.get(name) {
            return Ok(sections.clone());
        }
        builtin_template(name).ok_or_else(|| {
            let mut names: BTreeSet<String> = ["rfc", "adr", "decision"].map(String::from).into();
            names.extend(self.templates.keys().cloned());
            crate::error::failure(
                crate::error::ErrorKind::Usage,
                format!(
                    "`{name}` is not a template: use one of {}, or add one with `meridian workspace template NAME SECTION...`",
                    names.into_iter().collect::<Vec<_>>().join(", ")
                ),
            )
        })
    }
}

/// The deterministic first change of a workspace document, as change bytes.
///
/// Its actor is the workspace id itself and its time is zero, so every node that knows the
/// id and the creator's key builds the byte-identical change with the same hash.
pub fn genesis(workspace: Id, creator: &[u8]) -> Vec<u8> {
    let mut doc = Automerge::new().with_actor(ActorId::from(workspace.0.to_vec()));
    let mut tx = doc.transaction();
    let build = |tx: &mut automerge::transaction::Transaction<'_>| -> Result<(), automerge::AutomergeError> {
        tx.put(ROOT, "kind", "workspace")?;
        tx.put(ROOT, "id", workspace.hex())?;
        tx.put(ROOT, "creator", hex::encode(creator))?;
        tx.put_object(ROOT, "members", ObjType::Map)?;
        tx.put_object(ROOT, "norms", ObjType::Map)?;
        tx.put_object(ROOT, "templates", ObjType::Map)?;
        Ok(())
    };
    build(&mut tx).expect("building the genesis change on an empty document cannot fail");
    tx.commit_with(
        CommitOptions::default()
            .with_message("create workspace")
            .with_time(0),
    );
    doc.get_last_local_change()
        .expect("the genesis change was just made")
        .raw_bytes()
        .to_vec()
}

/// Whether an actor id is the genesis actor of this workspace.
pub fn is_genesis_actor(workspace: Id, actor: &ActorId) -> bool {
    actor.to_bytes() == workspace.0
}

/// Writes the caller's own member entry.
pub fn put_member<T: Transactable + automerge::ReadDoc>(
    tx: &mut T,
    members: &ObjId,
    key: &VerifyingKey,
    profile: &Profile,
    joined: i64,
    proof: Option<&JoinProof>,
) -> Result<()> {
    let id = hex::encode(key.to_bytes());
    let member = tx.put_object(members, id.as_str(), ObjType::Map)?;
    tx.put(&member, "name", profile.name.as_str())?;
    tx.put(&member, "tz", profile.tz.as_str())?;
    tx.put(&member, "hours", profile.hours.as_str())?;
    tx.put(&member, "days", profile.days.as_str())?;
    tx.put(&member, "joined", joined)?;
    if !profile.away.is_empty() {
        put_str_list(tx, &member, "away", &profile.away)?;
    }
    let keys = tx.put_object(&member, "keys", ObjType::Map)?;
    tx.put(&keys, id.as_str(), true)?;
    if let Some(proof) = proof {
        put_invite(tx, &member, proof)?;
    }
    Ok(())
}

/// Publishes this device's encryption key in its own member entry, certified by the device
/// (`devices.<device key>` = `{encryption, certificate}`, hex): what a key epoch's wraps
/// will be sealed to. Every node's rules let a member write their own entry.
pub fn put_device_key<T: Transactable + automerge::ReadDoc>(
    tx: &mut T,
    members: &ObjId,
    device: &ed25519_dalek::SigningKey,
    workspace: Id,
) -> Result<()> {
    let id = hex::encode(device.verifying_key().to_bytes());
    let Some((automerge::Value::Object(ObjType::Map), member)) = tx.get(members, id.as_str())?
    else {
        bail!("this device has no member entry in the workspace to publish its key in");
    };
    let key = crate::keyring::DeviceKey::of(device).public();
    let certificate = crate::keyring::certify(device, workspace, &key);
    let devices = crate::doc::ensure_map(tx, &member, "devices")?;
    let entry = tx.put_object(&devices, id.as_str(), ObjType::Map)?;
    tx.put(&entry, "encryption", hex::encode(key))?;
    tx.put(&entry, "certificate", hex::encode(certificate))?;
    Ok(())
}

/// The encryption key a member's device published in `entry`, if its certificate holds.
fn device_key(view: View<'_>, entry: &ObjId, device: &str, workspace: Id) -> Option<String> {
    let published = view
        .map(entry, "devices")
        .and_then(|d| view.map(&d, device))?;
    let hex32 =
        |text: Option<String>| -> Option<[u8; 32]> { hex::decode(text?).ok()?.try_into().ok() };
    let key = hex32(view.str(&published, "encryption"))?;
    let device_key = hex32(Some(device.to_string()))?;
    let certificate: [u8; 64] = hex::decode(view.str(&published, "certificate")?)
        .ok()?
        .try_into()
        .ok()?;
    crate::keyring::is_certified(&device_key, workspace, &key, &certificate)
        .then(|| hex::encode(key))
}

/// The devices a member's entry names with a proof that verifies (not yet who made it):
/// (device key, the device that added it), sorted.
fn device_candidates(
    view: View<'_>,
    entry: &ObjId,
    id: &str,
    workspace: Id,
) -> Vec<(String, String)> {
    let Some(map) = view.map(entry, "devices") else {
        return Vec::new();
    };
    let member = hex::decode(id).unwrap_or_default();
    let mut candidates: Vec<(String, String)> = Vec::new();
    for key in view.keys(&map) {
        if key == id {
            continue;
        }
        let Some(device) = view.map(&map, &key) else {
            continue;
        };
        let field = |k: &str| hex::decode(view.string(&device, k)).unwrap_or_default();
        let proof = meridian_relay::membership::DeviceProof {
            member: member.clone(),
            by: field("by"),
            code_public: field("code"),
            expires: view.int(&device, "expires").unwrap_or(0),
            by_sig: field("by_sig"),
            code_sig: field("code_sig"),
        };
        let Ok(device_key) = hex::decode(&key) else {
            continue;
        };
        if proof.verify(&workspace.0, &device_key).is_ok() {
            candidates.push((key, hex::encode(&proof.by)));
        }
    }
    candidates.sort();
    candidates
}

/// A member's devices: the first (the member id) and each candidate whose proof was signed
/// by a device of theirs already counted, in the order they chain (then by key), each with
/// its certified encryption key. An `excluded` key (claimed by two members) counts for
/// nobody, nor does anything it added.
fn chain_devices(
    view: View<'_>,
    entry: &ObjId,
    id: &str,
    workspace: Id,
    mut candidates: Vec<(String, String)>,
    excluded: &BTreeSet<String>,
) -> Vec<Device> {
    let mut devices = vec![Device {
        key: id.to_string(),
        encryption: device_key(view, entry, id, workspace),
        by: None,
        revoked: None,
        lock: None,
    }];
    let map = view.map(entry, "devices");
    let field = |key: &str, name: &str| {
        map.as_ref()
            .and_then(|m| view.map(m, key))
            .map(|d| (view.int(&d, name), view.bytes(&d, name)))
    };
    candidates.retain(|(key, _)| !excluded.contains(key));
    loop {
        let known: BTreeSet<&str> = devices.iter().map(|d| d.key.as_str()).collect();
        // A device a revoked one added before its revocation stays (a revocation's lock
        // refuses what the revoked device signs after).
        let next = candidates
            .iter()
            .position(|(key, by)| !known.contains(key.as_str()) && known.contains(by.as_str()));
        let Some(next) = next else {
            return devices;
        };
        let (key, by) = candidates.remove(next);
        let revoked = field(&key, "revoked").and_then(|(at, _)| at);
        let lock = field(&key, "lock").and_then(|(_, bytes)| bytes);
        devices.push(Device {
            encryption: device_key(view, entry, &key, workspace),
            key,
            by: Some(by),
            revoked,
            lock,
        });
    }
}

/// Writes a new device's entry under its member's, with the proof that one of the member's
/// devices added it and its certified encryption key: the new device writes it itself.
pub fn put_new_device<T: Transactable + automerge::ReadDoc>(
    tx: &mut T,
    member: &ObjId,
    device: &ed25519_dalek::SigningKey,
    proof: &meridian_relay::membership::DeviceProof,
    workspace: Id,
) -> Result<()> {
    let id = hex::encode(device.verifying_key().to_bytes());
    let key = crate::keyring::DeviceKey::of(device).public();
    let certificate = crate::keyring::certify(device, workspace, &key);
    let devices = crate::doc::ensure_map(tx, member, "devices")?;
    let entry = tx.put_object(&devices, id.as_str(), ObjType::Map)?;
    tx.put(&entry, "encryption", hex::encode(key))?;
    tx.put(&entry, "certificate", hex::encode(certificate))?;
    tx.put(&entry, "by", hex::encode(&proof.by))?;
    tx.put(&entry, "code", hex::encode(&proof.code_public))?;
    tx.put(&entry, "expires", proof.expires)?;
    tx.put(&entry, "by_sig", hex::encode(&proof.by_sig))?;
    tx.put(&entry, "code_sig", hex::encode(&proof.code_sig))?;
    Ok(())
}

/// Writes (or replaces) the invite proof in one's own member entry.
pub fn put_invite(tx: &mut impl Transactable, member: &ObjId, proof: &JoinProof) -> Result<()> {
    let invite = tx.put_object(member, "invite", ObjType::Map)?;
    tx.put(&invite, "public", hex::encode(&proof.invite_public))?;
    tx.put(&invite, "inviter", hex::encode(&proof.inviter))?;
    tx.put(&invite, "expires", proof.expires)?;
    tx.put(&invite, "inviter_sig", hex::encode(&proof.inviter_sig))?;
    tx.put(&invite, "join_sig", hex::encode(&proof.join_sig))?;
    Ok(())
}

/// Whether `member` is an admin as `view` shows the workspace: the creator named them and
/// has not removed them (the creator is not listed: it may do everything admins may).
pub fn is_admin(view: View<'_>, member: &str) -> bool {
    let Some(entry) = view
        .map(&ROOT, "members")
        .and_then(|members| view.map(&members, member))
    else {
        return false;
    };
    view.int(&entry, "admin").is_some() && view.int(&entry, "removed").is_none()
}

/// Names a member admin (`Some(at)`), or no longer (`None`): the creator's decision.
pub fn put_admin(tx: &mut impl Transactable, member: &ObjId, at: Option<i64>) -> Result<()> {
    match at {
        Some(at) => tx.put(member, "admin", at)?,
        None => tx.delete(member, "admin")?,
    }
    Ok(())
}

/// Writes one's own profile into one's member entry: name, zone, hours, days, away periods.
pub fn put_profile<T: Transactable + automerge::ReadDoc>(
    tx: &mut T,
    member: &ObjId,
    profile: &Profile,
) -> Result<()> {
    tx.put(member, "name", profile.name.as_str())?;
    tx.put(member, "tz", profile.tz.as_str())?;
    tx.put(member, "hours", profile.hours.as_str())?;
    tx.put(member, "days", profile.days.as_str())?;
    put_str_list(tx, member, "away", &profile.away)?;
    Ok(())
}

/// Marks a member removed (the creator's decision; the rules refuse it from anyone else).
pub fn put_removed(tx: &mut impl Transactable, member: &ObjId, at: i64) -> Result<()> {
    tx.put(member, "removed", at)?;
    Ok(())
}

/// Records, in the creator's own entry, what the creator had of a member it removes
/// ([`crate::lock::Lock`], encoded): their changes beyond it are refused everywhere. In
/// the creator's entry rather than beside `removed`, because every build's rules let the
/// creator write its own entry, where a new field in the removed member's would be refused
/// by older ones.
pub fn put_lock<T: Transactable + automerge::ReadDoc>(
    tx: &mut T,
    creator_entry: &ObjId,
    member: &str,
    lock: &[u8],
) -> Result<()> {
    let removals = ensure_map(tx, creator_entry, "removals")?;
    tx.put(
        &removals,
        member,
        automerge::ScalarValue::Bytes(lock.to_vec()),
    )?;
    Ok(())
}

/// Sets the workspace's display name.
pub fn put_name(tx: &mut impl Transactable, name: &str) -> Result<()> {
    tx.put(ROOT, "name", name)?;
    Ok(())
}

/// Adds or replaces a custom template.
pub fn put_template<T: Transactable + automerge::ReadDoc>(
    tx: &mut T,
    name: &str,
    sections: &[String],
) -> Result<()> {
    let templates = ensure_map(tx, &ROOT, "templates")?;
    put_str_list(tx, &templates, name, sections)?;
    Ok(())
}

/// The suffix of a level's key in `norms.levels` that says whether its requests interrupt
/// quiet hours (value `yes` or `no`). Kept beside the response times rather than in a map of
/// its own because every node's rules already accept any key there, and a node built before
/// it reads the value as a response time that does not parse and passes over it, keeping the
/// level's time.
pub const INTERRUPTS: &str = ":interrupts";

/// Sets whether an urgency level's requests reach people in their quiet hours.
pub fn put_level_interrupts<T: Transactable + automerge::ReadDoc>(
    tx: &mut T,
    name: &str,
    interrupts: bool,
) -> Result<()> {
    let value = if interrupts { "yes" } else { "no" };
    put_in_levels(tx, &format!("{name}{INTERRUPTS}"), value)
}

/// Sets an urgency level's response time.
pub fn put_level<T: Transactable + automerge::ReadDoc>(
    tx: &mut T,
    name: &str,
    within: ResponseTime,
) -> Result<()> {
    put_in_levels(tx, name, &within.to_string())
}

/// Puts `key` = `value` in the norms' `levels` map, making the maps it lives in if needed.
fn put_in_levels<T: Transactable + automerge::ReadDoc>(
    tx: &mut T,
    key: &str,
    value: &str,
) -> Result<()> {
    let norms = ensure_map(tx, &ROOT, "norms")?;
    let levels = ensure_map(tx, &norms, "levels")?;
    tx.put(&levels, key, value)?;
    Ok(())
}

/// The most relays a workspace shares (more in its document are left out).
pub const MAX_SHARED_RELAYS: usize = 16;

/// Makes the relays shared with every member `relays`, editing the list in place (deleting
/// what goes, appending what comes), so that two admins' concurrent additions both stay.
pub fn put_relays<T: Transactable + automerge::ReadDoc>(
    tx: &mut T,
    relays: &[String],
) -> Result<()> {
    use automerge::Value;
    let norms = ensure_map(tx, &ROOT, "norms")?;
    let list = match tx.get(&norms, "relays")? {
        Some((Value::Object(ObjType::List), id)) => id,
        _ => tx.put_object(&norms, "relays", ObjType::List)?,
    };
    let item = |tx: &T, i: usize| -> Option<String> {
        match tx.get(&list, i).ok().flatten() {
            Some((Value::Scalar(s), _)) => s.as_str().map(str::to_string),
            _ => None,
        }
    };
    for i in (0..tx.length(&list)).rev() {
        if !item(tx, i).is_some_and(|r| relays.contains(&r)) {
            tx.delete(&list, i)?;
        }
    }
    let present: Vec<String> = (0..tx.length(&list)).filter_map(|i| item(tx, i)).collect();
    for relay in relays.iter().filter(|r| !present.contains(r)) {
        let end = tx.length(&list);
        tx.insert(&list, end, relay.as_str())?;
    }
    Ok(())
}

/// Replaces the escalation ladder.
pub fn put_ladder<T: Transactable + automerge::ReadDoc>(
    tx: &mut T,
    ladder: &[String],
) -> Result<()> {
    let norms = ensure_map(tx, &ROOT, "norms")?;
    put_str_list(tx, &norms, "ladder", ladder)?;
    Ok(())
}

/// The invite proof in each member entry that has one, by member id, as written (checked
/// by [`read_state`], not here).
pub fn member_proofs(view: View<'_>) -> BTreeMap<String, JoinProof> {
    let mut proofs = BTreeMap::new();
    let Some(map) = view.map(&ROOT, "members") else {
        return proofs;
    };
    for id in view.keys(&map) {
        let Some(invite) = view
            .map(&map, &id)
            .and_then(|entry| view.map(&entry, "invite"))
        else {
            continue;
        };
        let field = |k: &str| hex::decode(view.string(&invite, k)).unwrap_or_default();
        proofs.insert(
            id,
            JoinProof {
                invite_public: field("public"),
                inviter: field("inviter"),
                expires: view.int(&invite, "expires").unwrap_or(0),
                inviter_sig: field("inviter_sig"),
                join_sig: field("join_sig"),
            },
        );
    }
    proofs
}

/// Derives the cached state from the workspace document.
pub fn read_state(view: View<'_>, creator: &[u8]) -> WorkspaceState {
    let workspace = view.str(&ROOT, "id").and_then(|h| Id::parse(&h).ok());
    let creator = hex::encode(creator);
    let mut members = Vec::new();
    let proofs = member_proofs(view);
    if let Some(map) = view.map(&ROOT, "members") {
        for id in view.keys(&map) {
            let Some(entry) = view.map(&map, &id) else {
                continue;
            };
            members.push(Member {
                name: view.string(&entry, "name"),
                tz: view.string(&entry, "tz"),
                hours: view.string(&entry, "hours"),
                days: view.string(&entry, "days"),
                // Extra device keys would need a proof signed by the member's first key;
                // until that exists, a member is exactly their first key.
                keys: vec![id.clone()],
                verified: id == creator,
                invited_by: None,
                removed: id != creator && view.int(&entry, "removed").is_some(),
                removed_at: view.int(&entry, "removed").filter(|_| id != creator),
                lock: None,
                encryption: workspace.and_then(|w| device_key(view, &entry, &id, w)),
                devices: Vec::new(),
                joined: view.int(&entry, "joined"),
                admin: view.int(&entry, "admin").is_some(),
                away: view.str_list(&entry, "away"),
                shown: String::new(),
                id,
            });
        }
    }
    // A device key is one member's: one claimed twice, or a member's own id claimed as
    // someone's device, counts for nobody (nor does any device it added).
    if let (Some(workspace), Some(map)) = (workspace, view.map(&ROOT, "members")) {
        let candidates: Vec<Vec<(String, String)>> = members
            .iter()
            .map(|m| {
                view.map(&map, &m.id)
                    .map(|entry| device_candidates(view, &entry, &m.id, workspace))
                    .unwrap_or_default()
            })
            .collect();
        let mut claims: BTreeMap<&str, usize> = BTreeMap::new();
        for (member, candidates) in members.iter().zip(&candidates) {
            *claims.entry(member.id.as_str()).or_default() += 1;
            let mut mine: BTreeSet<&str> = BTreeSet::new();
            for (key, _) in candidates {
                if mine.insert(key.as_str()) {
                    *claims.entry(key.as_str()).or_default() += 1;
                }
            }
        }
        let excluded: BTreeSet<String> = claims
            .into_iter()
            .filter(|(_, n)| *n > 1)
            .map(|(k, _)| k.to_string())
            .collect();
        for (member, candidates) in members.iter_mut().zip(candidates) {
            let Some(entry) = view.map(&map, &member.id) else {
                continue;
            };
            member.devices =
                chain_devices(view, &entry, &member.id, workspace, candidates, &excluded);
            member.keys = member.devices.iter().map(|d| d.key.clone()).collect();
        }
    }
    // The creator's record of what it had of each member it removed (`crate::lock`).
    if let Some(removals) = view
        .map(&ROOT, "members")
        .and_then(|map| view.map(&map, &creator))
        .and_then(|entry| view.map(&entry, "removals"))
    {
        for member in members.iter_mut().filter(|m| m.removed) {
            member.lock = view.bytes(&removals, &member.id);
        }
    }
    // Verify invite chains outward from the creator, each proof once: a member is verified
    // when their inviter is.
    if let Some(workspace) = workspace {
        let mut invited: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (i, member) in members.iter().enumerate() {
            if let Some(proof) = proofs.get(&member.id) {
                invited
                    .entry(hex::encode(&proof.inviter))
                    .or_default()
                    .push(i);
            }
        }
        // Any device of a verified member may have made the invite: each key, with whose.
        let mut queue: std::collections::VecDeque<(String, String)> = members
            .iter()
            .filter(|m| m.verified)
            .flat_map(|m| m.keys.iter().map(|k| (k.clone(), m.id.clone())))
            .collect();
        while let Some((inviter, whose)) = queue.pop_front() {
            for i in invited.remove(&inviter).unwrap_or_default() {
                let member = &mut members[i];
                let key = hex::decode(&member.id).unwrap_or_default();
                if !member.verified && proofs[&member.id].verify(&workspace.0, &key).is_ok() {
                    member.verified = true;
                    member.invited_by = Some(whose.clone());
                    let id = member.id.clone();
                    queue.extend(member.keys.iter().map(|k| (k.clone(), id.clone())));
                }
            }
        }
    }
    distinguish(&mut members);
    let mut levels = BTreeMap::new();
    let mut ladder = Vec::new();
    let mut relays = Vec::new();
    if let Some(norms) = view.map(&ROOT, "norms") {
        // Only URLs a node would store: anything else in the list is left out.
        for relay in view.str_list(&norms, "relays") {
            if let Ok(relay) = crate::sync::net::relay_url(&relay)
                && !relays.contains(&relay)
            {
                relays.push(relay);
            }
        }
        // A node connects to each: a bound, whatever an admin's node wrote.
        relays.truncate(MAX_SHARED_RELAYS);
        if let Some(map) = view.map(&norms, "levels") {
            for name in view.keys(&map) {
                levels.insert(name.clone(), view.string(&map, &name));
            }
        }
        ladder = view.str_list(&norms, "ladder");
    }
    let mut templates = BTreeMap::new();
    if let Some(map) = view.map(&ROOT, "templates") {
        for name in view.keys(&map) {
            templates.insert(name.clone(), view.str_list(&map, &name));
        }
    }
    WorkspaceState {
        members,
        levels,
        ladder,
        templates,
        relays,
    }
}

/// Gives every verified member the name others see: their own, unless another verified
/// member chose the same one (ignoring case), in which case each of them gets `#` and the
/// shortest prefix of their key that tells them apart, the same on every node.
fn distinguish(members: &mut [Member]) {
    // Names come from documents: control characters, and the `#` that tells members
    // apart (a name may not hold one), are shown as `?`.
    let odd = |c: char| c.is_control() || c == '#';
    for m in members.iter_mut() {
        if m.name.chars().any(odd) {
            m.name = m
                .name
                .chars()
                .map(|c| if odd(c) { '?' } else { c })
                .collect();
        }
    }
    let lower: Vec<String> = members.iter().map(|m| m.name.to_lowercase()).collect();
    for i in 0..members.len() {
        let twins: Vec<usize> = (0..members.len())
            .filter(|j| *j != i && members[*j].verified && lower[*j] == lower[i])
            .collect();
        members[i].shown = if twins.is_empty() || !members[i].verified {
            members[i].name.clone()
        } else {
            // Ids come from documents: sliced by character, never by byte.
            let id = &members[i].id;
            let len = (4..=id.chars().count())
                .find(|n| {
                    twins
                        .iter()
                        .all(|j| !members[*j].id.starts_with(crate::id::prefix(id, *n)))
                })
                .unwrap_or(id.len());
            format!("{}#{}", members[i].name, crate::id::prefix(id, len))
        };
    }
}

/// Everything a new member needs, passed privately (it holds the workspace key).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invite {
    /// The workspace id.
    #[serde(with = "serde_bytes")]
    pub workspace: Vec<u8>,
    /// Its display name.
    pub name: String,
    /// The symmetric workspace key.
    #[serde(with = "serde_bytes")]
    pub key: Vec<u8>,
    /// The creator's device key (root of membership, input of the genesis change).
    #[serde(with = "serde_bytes")]
    pub creator: Vec<u8>,
    /// Relay URLs.
    pub relays: Vec<String>,
    /// The one-time invite secret key.
    #[serde(with = "serde_bytes")]
    pub secret: Vec<u8>,
    /// The inviter's device key.
    #[serde(with = "serde_bytes")]
    pub inviter: Vec<u8>,
    /// Expiry, ms since the epoch.
    pub expires: i64,
    /// The inviter's signature over the invite public key.
    #[serde(with = "serde_bytes")]
    pub inviter_sig: Vec<u8>,
    /// The key epoch the inviter sealed under when it made the invite (hash, then secret),
    /// when someone was removed before: the newcomer writes under it from the start, and
    /// walks back from it to everything before. Absent while the workspace key is the one
    /// key (and from codes older builds made).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<(serde_bytes::ByteBuf, serde_bytes::ByteBuf)>,
}

/// The value a code's text after its prefix holds (base64 of CBOR), with a clear word for
/// each way it can be damaged; `what` names the code (`invite code`).
pub(crate) fn code_body<T: serde::de::DeserializeOwned>(body: &str, what: &str) -> Result<T> {
    if body.len() > 16 * 1024 {
        bail!("the {what} is too long to be genuine");
    }
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(body)
        .with_context(|| format!("the {what} is damaged (not base64): copy it again, whole"))?;
    meridian_relay::cbor::from_slice(bytes.as_slice())
        .with_context(|| format!("the {what} is damaged: copy it again, whole"))
}

/// One spelling per relay, whatever the node that made a code wrote.
pub(crate) fn one_spelling(relays: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for relay in relays {
        let relay = crate::sync::net::relay_url(relay).unwrap_or_else(|_| relay.clone());
        if !out.contains(&relay) {
            out.push(relay);
        }
    }
    out
}

impl Invite {
    /// Makes an invite signed by `inviter`.
    pub fn new(
        inviter: &SigningKey,
        workspace: Id,
        name: &str,
        key: &[u8],
        creator: &[u8],
        relays: Vec<String>,
        expires: i64,
    ) -> Invite {
        let secret = SigningKey::from_bytes(&random_bytes());
        let public = secret.verifying_key().to_bytes();
        let inviter_sig = inviter.sign(&invite_message(&workspace.0, &public, expires));
        Invite {
            workspace: workspace.0.to_vec(),
            name: name.to_string(),
            key: key.to_vec(),
            creator: creator.to_vec(),
            relays,
            secret: secret.to_bytes().to_vec(),
            inviter: inviter.verifying_key().to_bytes().to_vec(),
            expires,
            inviter_sig: inviter_sig.to_bytes().to_vec(),
            epoch: None,
        }
    }

    /// The invite, carrying the epoch (hash, secret) the inviter seals under.
    pub fn with_epoch(mut self, hash: &[u8], secret: &[u8]) -> Invite {
        self.epoch = Some((
            serde_bytes::ByteBuf::from(hash.to_vec()),
            serde_bytes::ByteBuf::from(secret.to_vec()),
        ));
        self
    }

    /// The code to pass to `meridian join`.
    pub fn encode(&self) -> String {
        let bytes = crate::store::encode(self);
        format!(
            "{INVITE_PREFIX}{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
        )
    }

    /// Parses and checks a code.
    pub fn decode(code: &str) -> Result<Invite> {
        crate::error::typed(|| {
            let code = code.trim();
            let body = code.strip_prefix(INVITE_PREFIX).with_context(|| {
                format!("this is not a Meridian invite code: codes start with `{INVITE_PREFIX}`")
            })?;
            let mut invite: Invite = code_body(body, "invite code")?;
            invite.relays = one_spelling(&invite.relays);
            let workspace = invite.workspace_id()?;
            let epoch_ok = invite
                .epoch
                .as_ref()
                .is_none_or(|(hash, secret)| hash.len() == 32 && secret.len() == 32);
            if invite.key.len() != 32
                || invite.secret.len() != 32
                || invite.creator.len() != 32
                || !epoch_ok
            {
                bail!("the invite code is damaged: a key has the wrong length");
            }
            verify_signature(
                &invite.inviter,
                &invite_message(&workspace.0, &invite.public_key(), invite.expires),
                &invite.inviter_sig,
                "the inviter's signature",
            )
            .context("the invite code's signature does not verify: it was altered")?;
            Ok(invite)
        })
    }

    /// The workspace id.
    pub fn workspace_id(&self) -> Result<Id> {
        Id::from_slice(&self.workspace).context("the invite code is damaged: bad workspace id")
    }

    fn signing_key(&self) -> SigningKey {
        let bytes: [u8; 32] = self.secret.as_slice().try_into().unwrap_or([0; 32]);
        SigningKey::from_bytes(&bytes)
    }

    fn public_key(&self) -> [u8; 32] {
        self.signing_key().verifying_key().to_bytes()
    }

    /// The proof a new member with `member` key writes into their entry.
    pub fn proof_for(&self, member: &VerifyingKey) -> Result<JoinProof> {
        let workspace = self.workspace_id()?;
        Ok(JoinProof {
            invite_public: self.public_key().to_vec(),
            inviter: self.inviter.clone(),
            expires: self.expires,
            inviter_sig: self.inviter_sig.clone(),
            join_sig: self
                .signing_key()
                .sign(&join_message(&workspace.0, &member.to_bytes()))
                .to_bytes()
                .to_vec(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn genesis_is_identical_on_every_node() {
        let workspace = Id([5; 16]);
        let a = genesis(workspace, &[1; 32]);
        let b = genesis(workspace, &[1; 32]);
        assert_eq!(a, b);
        assert_ne!(a, genesis(workspace, &[2; 32]));
    }

    #[test]
    fn invite_codes_round_trip_and_reject_tampering() {
        let inviter = SigningKey::from_bytes(&[3; 32]);
        let invite = Invite::new(&inviter, Id([5; 16]), "team", &[9; 32], &[3; 32], vec![], 1);
        let code = invite.encode();
        assert_eq!(Invite::decode(&code).unwrap(), invite);
        assert!(Invite::decode("hello").is_err());
        assert!(Invite::decode(&format!("{INVITE_PREFIX}!!!")).is_err());
        let mut forged = invite.clone();
        forged.expires += 1;
        assert!(Invite::decode(&forged.encode()).is_err());
    }

    #[test]
    fn join_proofs_bind_the_member_key() {
        let inviter = SigningKey::from_bytes(&[3; 32]);
        let workspace = Id([5; 16]);
        let invite = Invite::new(&inviter, workspace, "team", &[9; 32], &[3; 32], vec![], 1);
        let member = SigningKey::from_bytes(&[4; 32]).verifying_key();
        let proof = invite.proof_for(&member).unwrap();
        proof.verify(&workspace.0, &member.to_bytes()).unwrap();
        let other = SigningKey::from_bytes(&[6; 32]).verifying_key();
        assert!(proof.verify(&workspace.0, &other.to_bytes()).is_err());
    }

    #[test]
    fn a_level_interrupts_quiet_hours_as_the_norms_say_and_keeps_its_time() {
        let levels = |pairs: &[(&str, &str)]| WorkspaceState {
            levels: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..WorkspaceState::default()
        };
        let norms = WorkspaceState::default().norms();
        assert!(norms.interrupts("urgent") && !norms.interrupts("high"));

        let norms = levels(&[
            ("urgent:interrupts", "no"),
            ("high:interrupts", "yes"),
            ("high", "2h"),
            ("critical", "30m"),
            ("critical:interrupts", "yes"),
            ("low:interrupts", "maybe"),
        ])
        .norms();
        let interrupting: Vec<&str> = norms.interrupting.iter().map(String::as_str).collect();
        assert_eq!(interrupting, ["critical", "high"]);
        assert_eq!(norms.levels["high"], ResponseTime::WorkingMinutes(120));
        assert_eq!(norms.levels["urgent"], ResponseTime::WorkingMinutes(60));
        assert!(
            !norms.levels.keys().any(|k| k.contains(':')),
            "a setting is not a level: {:?}",
            norms.levels.keys()
        );
    }

    #[test]
    fn a_device_counts_as_its_member_only_with_a_proof_that_leads_back_to_the_member() {
        use crate::device::DeviceCode;
        let workspace = Id([5; 16]);
        let ana = SigningKey::from_bytes(&[3; 32]);
        let bo = SigningKey::from_bytes(&[4; 32]);
        let laptop = SigningKey::from_bytes(&[7; 32]);
        let phone = SigningKey::from_bytes(&[8; 32]);
        let stranger = SigningKey::from_bytes(&[9; 32]);
        let creator = ana.verifying_key().to_bytes();
        let mut doc = Automerge::load(&genesis(workspace, &creator)).unwrap();
        let members = View::now(&doc).map(&ROOT, "members").unwrap();
        let profile = Profile {
            name: "Ana".into(),
            tz: "UTC".into(),
            hours: "09:00-17:00".into(),
            days: "mon-fri".into(),
            away: Vec::new(),
        };
        let mut tx = doc.transaction();
        put_member(&mut tx, &members, &ana.verifying_key(), &profile, 1, None).unwrap();
        put_member(&mut tx, &members, &bo.verifying_key(), &profile, 1, None).unwrap();
        tx.commit();
        let ana_id = hex::encode(creator);
        let entry = |doc: &Automerge, id: &str| View::now(doc).map(&members, id).unwrap();
        let code = |by: &SigningKey, member: &[u8; 32]| {
            DeviceCode::new(
                by,
                member,
                workspace,
                "acme",
                &[1; 32],
                &creator,
                Vec::new(),
                10,
            )
        };
        let keys_of = |doc: &Automerge| {
            read_state(View::now(doc), &creator)
                .members
                .iter()
                .find(|m| m.id == ana_id)
                .unwrap()
                .keys
                .clone()
        };
        let hex_of = |k: &SigningKey| hex::encode(k.verifying_key().to_bytes());
        // Ana adds her laptop; the laptop adds her phone: both are hers.
        let laptop_proof = code(&ana, &creator)
            .proof_for(&laptop.verifying_key())
            .unwrap();
        let phone_proof = code(&laptop, &creator)
            .proof_for(&phone.verifying_key())
            .unwrap();
        let ana_entry = entry(&doc, &ana_id);
        let mut tx = doc.transaction();
        put_new_device(&mut tx, &ana_entry, &phone, &phone_proof, workspace).unwrap();
        tx.commit();
        assert_eq!(
            keys_of(&doc),
            vec![ana_id.clone()],
            "the phone's adder is not hers yet"
        );
        let mut tx = doc.transaction();
        put_new_device(&mut tx, &ana_entry, &laptop, &laptop_proof, workspace).unwrap();
        tx.commit();
        assert_eq!(
            keys_of(&doc),
            vec![ana_id.clone(), hex_of(&laptop), hex_of(&phone)]
        );
        let state = read_state(View::now(&doc), &creator);
        assert_eq!(
            state.member_of_device(&hex_of(&phone)),
            Some(ana_id.as_str())
        );
        assert_eq!(state.name_of(&hex_of(&phone)), "Ana");
        // Bo cannot add a device of his to Ana's, nor a stranger with a code Bo made.
        let bogus = code(&bo, &creator)
            .proof_for(&stranger.verifying_key())
            .unwrap();
        let mut tx = doc.transaction();
        put_new_device(&mut tx, &ana_entry, &stranger, &bogus, workspace).unwrap();
        tx.commit();
        assert!(!keys_of(&doc).contains(&hex_of(&stranger)));
        // A device claimed by two members counts for neither.
        let bo_id = hex_of(&bo);
        let bo_entry = entry(&doc, &bo_id);
        let twice = code(&bo, &bo.verifying_key().to_bytes())
            .proof_for(&laptop.verifying_key())
            .unwrap();
        let mut tx = doc.transaction();
        put_new_device(&mut tx, &bo_entry, &laptop, &twice, workspace).unwrap();
        tx.commit();
        assert!(!keys_of(&doc).contains(&hex_of(&laptop)));
        assert!(
            !keys_of(&doc).contains(&hex_of(&phone)),
            "the phone's chain went through the laptop"
        );
    }

    #[test]
    fn a_device_key_is_read_only_with_its_devices_certificate_for_this_workspace() {
        let workspace = Id([5; 16]);
        let ana = SigningKey::from_bytes(&[3; 32]);
        let bo = SigningKey::from_bytes(&[4; 32]);
        let mut doc =
            Automerge::load(&genesis(workspace, &ana.verifying_key().to_bytes())).unwrap();
        let members = View::now(&doc).map(&ROOT, "members").unwrap();
        let profile = Profile {
            name: "Ana".into(),
            tz: "UTC".into(),
            hours: "09:00-17:00".into(),
            days: "mon-fri".into(),
            away: Vec::new(),
        };
        let mut tx = doc.transaction();
        put_member(&mut tx, &members, &ana.verifying_key(), &profile, 1, None).unwrap();
        put_member(&mut tx, &members, &bo.verifying_key(), &profile, 1, None).unwrap();
        put_device_key(&mut tx, &members, &ana, workspace).unwrap();
        put_device_key(&mut tx, &members, &bo, workspace).unwrap();
        tx.commit();
        let ana_id = hex::encode(ana.verifying_key().to_bytes());
        let bo_id = hex::encode(bo.verifying_key().to_bytes());
        let encryption = |doc: &Automerge, id: &str| {
            read_state(View::now(doc), &ana.verifying_key().to_bytes())
                .members
                .iter()
                .find(|m| m.id == id)
                .unwrap()
                .encryption
                .clone()
        };
        let ana_key = hex::encode(crate::keyring::DeviceKey::of(&ana).public());
        assert_eq!(encryption(&doc, &ana_id), Some(ana_key.clone()));
        assert!(encryption(&doc, &bo_id).is_some());

        // A member's one device's published entry.
        let published = |doc: &Automerge, id: &str| {
            let view = View::now(doc);
            view.map(&members, id)
                .and_then(|e| view.map(&e, "devices"))
                .and_then(|d| view.map(&d, id))
                .unwrap()
        };
        // Bo's entry naming Ana's key (one he cannot open) with his own certificate of
        // another key, or with Ana's certificate, is read as no key at all.
        let bo_entry = published(&doc, &bo_id);
        let mut tx = doc.transaction();
        tx.put(&bo_entry, "encryption", ana_key.clone()).unwrap();
        tx.commit();
        assert_eq!(encryption(&doc, &bo_id), None);
        let ana_certificate = crate::keyring::certify(
            &ana,
            workspace,
            &crate::keyring::DeviceKey::of(&ana).public(),
        );
        let mut tx = doc.transaction();
        tx.put(&bo_entry, "certificate", hex::encode(ana_certificate))
            .unwrap();
        tx.commit();
        assert_eq!(encryption(&doc, &bo_id), None);
        // A certificate for another workspace does not carry over either.
        let elsewhere = crate::keyring::certify(
            &ana,
            Id([6; 16]),
            &crate::keyring::DeviceKey::of(&ana).public(),
        );
        let ana_entry = published(&doc, &ana_id);
        let mut tx = doc.transaction();
        tx.put(&ana_entry, "certificate", hex::encode(elsewhere))
            .unwrap();
        tx.commit();
        assert_eq!(encryption(&doc, &ana_id), None);
    }
}
