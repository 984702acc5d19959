//! `meridian daemon --notify / --on-inbox CMD`: tells the person what newly waits for them,
//! when `notify::plan` says to (in their working hours, held overnight into a digest; the
//! levels the workspace's norms say interrupt quiet hours, `urgent` by default, at once).
//!
//! Every two seconds the daemon asks; when no document changed, nothing held is due and
//! the last look is less than five minutes old, nothing is read. What was delivered is kept in `HOME/notified.json`, so a restarted
//! daemon does not tell the same thing twice; an item no longer waiting (answered,
//! withdrawn) is forgotten, and comes again if it waits again later.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::PathBuf;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::{Value as Json, json};

use super::{Out, Style};
use crate::app::inbox::{Options, inbox};
use crate::inbox::{Item, Need};
use crate::node::Node;
use crate::notify::{Pending, plan};

/// How often what waits is read again when nothing was written (escalations and closing
/// periods come with time alone), ms.
const RECHECK_MS: i64 = 5 * 60 * 1000;

/// What the daemon remembers of each item.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Seen {
    /// When it was first seen waiting, ms.
    first_seen: i64,
    /// It was delivered.
    delivered: bool,
}

/// The delivery side of the daemon.
pub struct Notifier {
    desktop: bool,
    command: Option<String>,
    path: PathBuf,
    seen: BTreeMap<String, Seen>,
    /// The write generation last looked at.
    generation: Option<u64>,
    /// When something held is due, ms.
    due: Option<i64>,
    out: Out,
}

impl Notifier {
    /// A notifier, or none when neither `--notify` nor `--on-inbox` was given. Says at once
    /// when desktop notifications cannot be posted here.
    pub fn new(node: &Node, desktop: bool, command: Option<String>) -> Result<Option<Notifier>> {
        if !desktop && command.is_none() {
            return Ok(None);
        }
        if desktop && which("notify-send").is_none() {
            crate::fail!(
                Usage,
                "--notify posts through notify-send, which is not installed here (on Debian and Ubuntu: `apt install libnotify-bin`; it needs a desktop session); --on-inbox CMD works without it"
            );
        }
        let path = node.home().join("notified.json");
        let seen = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                tracing::warn!("{} is damaged ({e}); starting afresh", path.display());
                BTreeMap::new()
            }),
            Err(_) => BTreeMap::new(),
        };
        let tz = crate::norms::display_zone(&node.profile()?.tz).unwrap_or(jiff::tz::TimeZone::UTC);
        let style = Style {
            quiet: true,
            verbose: false,
            color: super::ColorChoice::Never,
        };
        Ok(Some(Notifier {
            desktop,
            command,
            path,
            seen,
            generation: None,
            due: None,
            out: Out::new(true, tz, style),
        }))
    }

    /// Looks at what waits, and delivers what is due.
    pub fn tick(&mut self, node: &Node) -> Result<()> {
        let now = crate::node::now_ms();
        let generation = crate::search::generation(node)?;
        let due = self.due.is_some_and(|d| d <= now);
        if self.generation == Some(generation) && !due {
            return Ok(());
        }
        // What waits also changes with time alone (a request escalates when a deadline
        // passes, a period closes): looked at again at least every few minutes.
        let mut next_due = now.saturating_add(RECHECK_MS);
        let me = node.member_id();
        let waiting = inbox(
            node,
            &me,
            &Options {
                workspace: None,
                kind: None,
                limit: None,
                now,
            },
        )?;
        let mut current: BTreeMap<String, ()> = BTreeMap::new();
        for w in &waiting.workspaces {
            let record = node.workspace(Some(&w.id.hex()))?.1;
            let calendar = record
                .state
                .member(&me)
                .map(|m| m.calendar())
                .unwrap_or_else(|| {
                    crate::norms::Calendar::new(jiff::tz::TimeZone::UTC, Default::default())
                });
            let mut pending: Vec<(&Item, Pending, String)> = Vec::new();
            for item in &w.waiting_for_you {
                let key = key(item);
                current.insert(key.clone(), ());
                let seen = self.seen.entry(key.clone()).or_insert(Seen {
                    first_seen: now,
                    delivered: false,
                });
                if !seen.delivered {
                    pending.push((
                        item,
                        Pending {
                            urgency: item.urgency.clone().unwrap_or_default(),
                            arrived: seen.first_seen,
                        },
                        key,
                    ));
                }
            }
            if pending.is_empty() {
                continue;
            }
            let items: Vec<Pending> = pending.iter().map(|(_, p, _)| p.clone()).collect();
            let norms = record.state.norms();
            let decided = plan(&items, &calendar, &|level| norms.interrupts(level), now);
            let values: Vec<Json> = pending
                .iter()
                .map(|(item, _, _)| {
                    let mut value = super::inbox::item_json(&self.out, &record.state, item);
                    value["workspace"] = json!({ "id": w.id.hex(), "name": w.name });
                    value
                })
                .collect();
            let as_json = |i: usize| values[i].clone();
            // Each delivery is recorded as soon as it is made, so a failure later in this
            // round does not tell it again.
            for &i in &decided.each {
                self.deliver(&as_json(i), &pending[i].0.title, &need_text(pending[i].0))?;
                self.delivered(&pending[i].2)?;
            }
            if !decided.digest.is_empty() {
                let items: Vec<Json> = decided.digest.iter().map(|&i| as_json(i)).collect();
                let summary = digest_text(decided.digest.iter().map(|&i| pending[i].0));
                self.deliver(
                    &json!({ "digest": items, "summary": summary, "workspace": { "id": w.id.hex(), "name": w.name } }),
                    &format!("{} while you were away", summary),
                    &w.name,
                )?;
                for &i in &decided.digest {
                    self.delivered(&pending[i].2)?;
                }
            }
            if let Some(wake) = decided.wake {
                next_due = next_due.min(wake);
            }
        }
        // Answered, withdrawn or gone: forgotten.
        self.seen.retain(|key, _| current.contains_key(key));
        self.save()?;
        // Only now is this round done: a failure above looks again at the next tick.
        self.generation = Some(generation);
        self.due = Some(next_due);
        Ok(())
    }

    fn delivered(&mut self, key: &str) -> Result<()> {
        if let Some(seen) = self.seen.get_mut(key) {
            seen.delivered = true;
        }
        self.save()
    }

    fn deliver(&self, value: &Json, title: &str, body: &str) -> Result<()> {
        if let Some(command) = &self.command {
            let text = serde_json::to_string(value)?;
            let mut child = std::process::Command::new("sh")
                .arg("-c")
                .arg(command)
                .stdin(std::process::Stdio::piped())
                .spawn()
                .with_context(|| format!("cannot run --on-inbox `{command}`"))?;
            if let Some(mut stdin) = child.stdin.take() {
                let _ = stdin.write_all(text.as_bytes());
                let _ = stdin.write_all(b"\n");
            }
            // Reaped beside the daemon, which does not wait for a slow command.
            let command = command.clone();
            std::thread::spawn(move || match child.wait() {
                Ok(status) if !status.success() => {
                    tracing::warn!("--on-inbox `{command}` exited with {status}")
                }
                _ => {}
            });
        }
        if self.desktop {
            let status = std::process::Command::new("notify-send")
                .args(["--app-name=Meridian", "--", title, body])
                .status();
            if !matches!(status, Ok(s) if s.success()) {
                tracing::warn!(
                    "notify-send could not post a notification (is a desktop session running?)"
                );
            }
        }
        tracing::info!("told you: {title}");
        Ok(())
    }

    fn save(&self) -> Result<()> {
        let tmp = self.path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_vec(&self.seen)?)
            .and_then(|()| std::fs::rename(&tmp, &self.path))
            .with_context(|| format!("cannot write {}", self.path.display()))
    }
}

/// One item's identity across ticks: the document and what it needs (a new request, a new
/// concern, a reopened period are new items).
fn key(item: &Item) -> String {
    format!(
        "{}:{}",
        item.id.hex(),
        serde_json::to_string(&item.need).unwrap_or_default()
    )
}

/// What an item asks, in a few words, for a notification's body.
fn need_text(item: &Item) -> String {
    match &item.need {
        Need::Ask {
            escalated_from: Some(_),
            ..
        } => "A request passed on to you".into(),
        Need::Ask { .. } => "Asks for your response".into(),
        Need::Approve { stale: true, .. } => "Your approval is stale: approve again".into(),
        Need::Approve { .. } => "Waits for your approval".into(),
        Need::Concern { message, .. } => format!("Blocking concern: {message}"),
        Need::Accept => "You can accept it now".into(),
        Need::Conflict => "Decisions in conflict: settle it".into(),
        Need::Declined { .. } => "Your request was declined".into(),
    }
}

/// "3 asks, 1 decision": what a digest holds, counted by kind of need.
fn digest_text<'a>(items: impl Iterator<Item = &'a Item>) -> String {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for item in items {
        let what = match item.need {
            Need::Ask { .. } => "ask",
            Need::Approve { .. } => "approval",
            Need::Concern { .. } => "concern",
            Need::Accept | Need::Conflict => "decision",
            Need::Declined { .. } => "declined request",
        };
        *counts.entry(what).or_default() += 1;
    }
    counts
        .iter()
        .map(|(what, n)| format!("{n} {what}{}", if *n == 1 { "" } else { "s" }))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The path of a program on PATH.
fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(program))
            .find(|path| path.is_file())
    })
}
