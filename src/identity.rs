//! This device's identity: its ed25519 key (a file readable only by its owner), the
//! person's profile (name, time zone, working hours) and the automerge actor id derived
//! from the key.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use automerge::ActorId;
use ed25519_dalek::SigningKey;
use serde::{Deserialize, Serialize};

use crate::id::random_bytes;
use crate::norms::{Calendar, WorkingHours, time_zone};

/// Name of the key file inside the home.
pub const KEY_FILE: &str = "device.key";

/// Length of the device public key at the start of every actor id.
pub const KEY_LEN: usize = 32;

/// Who this person is and when they work.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    /// Display name, unique within a workspace in practice.
    pub name: String,
    /// IANA time zone.
    pub tz: String,
    /// Working hours, `HH:MM-HH:MM`.
    pub hours: String,
    /// Working days, `mon-fri`.
    pub days: String,
    /// Days away, each `FROM..TO` (dates in the person's zone).
    #[serde(default)]
    pub away: Vec<String>,
}

impl Profile {
    /// What changed from `before`, as a workspace's log shows it: `profile: hours
    /// 08:00-16:00, away 2026-12-24..2027-01-02`.
    pub fn change_since(&self, before: &Profile) -> String {
        let mut parts = Vec::new();
        if self.name != before.name {
            parts.push(format!("name {} → {}", before.name, self.name));
        }
        for (what, old, new) in [
            ("zone", &before.tz, &self.tz),
            ("hours", &before.hours, &self.hours),
            ("days", &before.days, &self.days),
        ] {
            if old != new {
                parts.push(format!("{what} {new}"));
            }
        }
        for period in self.away.iter().filter(|p| !before.away.contains(p)) {
            parts.push(format!("away {period}"));
        }
        for period in before.away.iter().filter(|p| !self.away.contains(p)) {
            parts.push(format!("no longer away {period}"));
        }
        if parts.is_empty() {
            return "profile unchanged".to_string();
        }
        format!("profile: {}", parts.join(", "))
    }

    /// Checks every field, so a bad zone or hours fail at `init`, not at the first deadline.
    pub fn validate(&self) -> Result<Calendar> {
        if self.name.trim().is_empty() {
            bail!("the name is empty: give the name your team knows you by, like --name Ana");
        }
        if self.name.contains('#') || self.name.chars().any(char::is_control) {
            bail!(
                "a name cannot hold `#` or control characters (`#` tells two members with one name apart): give the name your team knows you by"
            );
        }
        if self.name.chars().count() > 64 {
            bail!("a name is at most 64 characters");
        }
        Ok(Calendar::new(
            time_zone(&self.tz)?,
            WorkingHours::parse(&self.hours, &self.days)?,
        ))
    }
}

/// The automerge actor of a device in one home: its public key, then 8 random bytes chosen
/// when the home was created. The key makes authorship checkable; the suffix keeps a key
/// restored into a new home from reusing (actor, seq) pairs, which would split replicas.
pub fn actor_id(key: &SigningKey, incarnation: &[u8; 8]) -> ActorId {
    let mut bytes = key.verifying_key().to_bytes().to_vec();
    bytes.extend_from_slice(incarnation);
    ActorId::from(bytes)
}

/// The device key an actor id claims, if it has the shape of a device actor.
pub fn actor_key(actor: &ActorId) -> Option<[u8; KEY_LEN]> {
    let bytes = actor.to_bytes();
    (bytes.len() == KEY_LEN + 8).then(|| bytes[..KEY_LEN].try_into().expect("length checked"))
}

/// Writes a new random device key into `home`, readable only by the owner.
pub fn create_key(home: &Path) -> Result<SigningKey> {
    let path = key_path(home);
    if path.exists() {
        bail!(
            "{} already exists: this home already has an identity (use another --home for a second one)",
            path.display()
        );
    }
    let key = SigningKey::from_bytes(&random_bytes());
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(&path)
        .with_context(|| format!("cannot create the key file {}", path.display()))?;
    writeln!(file, "{}", hex::encode(key.to_bytes()))?;
    file.sync_all()?;
    Ok(key)
}

/// Reads the device key from `home`.
pub fn load_key(home: &Path) -> Result<SigningKey> {
    let path = key_path(home);
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => crate::fail!(
            NotFound,
            "no identity in {}: run `meridian init --name NAME` first (or pass the right --home)",
            home.display()
        ),
        Err(e) => {
            return Err(anyhow::Error::new(e).context(format!(
                "cannot read this device's key in {}",
                path.display()
            )));
        }
    };
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut bytes).with_context(|| {
        format!(
            "the key file {} is damaged: it should hold 64 hex digits",
            path.display()
        )
    })?;
    Ok(SigningKey::from_bytes(&bytes))
}

fn key_path(home: &Path) -> PathBuf {
    home.join(KEY_FILE)
}

/// A fresh incarnation suffix for a new home.
pub fn new_incarnation() -> [u8; 8] {
    random_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_profile_change_reads_as_what_changed() {
        let before = Profile {
            name: "Ana".into(),
            tz: "Europe/Berlin".into(),
            hours: "09:00-17:00".into(),
            days: "mon-fri".into(),
            away: vec!["2026-12-01..2026-12-02".into()],
        };
        let mut after = before.clone();
        after.hours = "08:00-16:00".into();
        after.away = vec!["2026-12-24..2027-01-02".into()];
        assert_eq!(
            after.change_since(&before),
            "profile: hours 08:00-16:00, away 2026-12-24..2027-01-02, no longer away 2026-12-01..2026-12-02"
        );
        after = before.clone();
        after.name = "Anna".into();
        assert_eq!(after.change_since(&before), "profile: name Ana → Anna");
    }
}
