//! The `meridian` command line: argument definitions, the shared context of a command and
//! the printing of text and JSON. Each command is a function in a submodule named after
//! what it works on.

/// Writes one line of a command's text output through an [`Out`], like `println!`, and
/// returns from the enclosing function with [`ReaderGone`] when the reader has gone.
macro_rules! say {
    ($out:expr) => {
        $out.line(format_args!(""))?
    };
    ($out:expr, $($arg:tt)*) => {
        $out.line(format_args!($($arg)*))?
    };
}

/// Writes the line that says what a command did, like `say!`, unless quiet or JSON.
macro_rules! said {
    ($out:expr, $($arg:tt)*) => {
        $out.said(format_args!($($arg)*))?
    };
}

/// Writes one line to stderr through an [`Out`], after the text printed before it, like
/// `eprintln!`.
macro_rules! warn {
    ($out:expr, $($arg:tt)*) => {
        $out.warn(format_args!($($arg)*))
    };
}

mod history;
mod inbox;
mod notifier;
mod read;
pub mod search;
mod sync;
mod table;
mod workspace;
mod write;

use std::cell::RefCell;
use std::io::{BufWriter, IsTerminal, Stdout, Write};
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use jiff::Timestamp;
use jiff::tz::TimeZone;
use serde_json::Value as Json;

use crate::id::Id;
use crate::node::Node;
use crate::norms::display_zone;

/// Local-first asynchronous team communication: proposals, decisions, threads and status
/// updates that work offline and merge without conflicts.
#[derive(Debug, Parser)]
#[command(
    name = "meridian",
    version,
    propagate_version = true,
    max_term_width = 100,
    after_help = TOP_AFTER_HELP
)]
pub struct Cli {
    /// Where this node keeps its database and key.
    #[arg(long, global = true, env = "MERIDIAN_HOME", value_name = "DIR", help_heading = GLOBAL)]
    pub home: Option<PathBuf>,
    /// Which workspace (name or id prefix); optional when there is one, or a current one.
    #[arg(short = 'w', long, global = true, value_name = "NAME|ID", help_heading = GLOBAL)]
    pub workspace: Option<String>,
    /// Print machine-readable JSON on stdout (errors as JSON on stderr); `meridian schema`
    /// prints its JSON Schema.
    #[arg(long, global = true, help_heading = GLOBAL)]
    pub json: bool,
    /// Show times in this IANA time zone instead of yours (for `init` and `profile set`:
    /// the zone you work in).
    #[arg(long, global = true, value_name = "ZONE", help_heading = GLOBAL)]
    pub tz: Option<String>,
    /// Say less: no line saying what a command did.
    #[arg(short = 'q', long, global = true, help_heading = GLOBAL)]
    pub quiet: bool,
    /// Say more: the details behind a summary (sync's envelopes and log positions).
    #[arg(short = 'v', long, global = true, help_heading = GLOBAL)]
    pub verbose: bool,
    /// When to colour the output: auto (on a terminal, unless NO_COLOR is set), always, never.
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto, value_name = "WHEN", help_heading = GLOBAL)]
    pub color: ColorChoice,
    /// The command (with none: the inbox, or how to start).
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// What `meridian --help` ends with: a first session, and what the exit codes mean.
const TOP_AFTER_HELP: &str = "\
Getting started:
  meridian init --name Ana --tz Asia/Tokyo
  meridian workspace create acme --relay ws://relay.example.org:7070
  meridian invite                      # a code for each teammate: meridian join CODE
  meridian proposal new \"Store workspaces in redb\" --decider Bo
  meridian sync && meridian inbox

Exit codes: 0 done, 1 failed, 2 usage (a mistyped command, flag or value), 3 not found,
4 refused (by the workspace's rules or a relay), 5 relay unreachable, 6 ambiguous (an id
prefix, or several workspaces and none chosen). Under --json an error is also printed on
stderr as {\"error\": TEXT, \"kind\": KIND}.";

/// The JSON Schema of every command's `--json` output, as `docs/json/meridian.schema.json`
/// holds it (the contract tests validate every command against that file).
const SCHEMA: &str = include_str!("../../docs/json/meridian.schema.json");

/// What `meridian proposal --help` ends with: the lifecycle, and what each step needs.
const PROPOSAL_LIFECYCLE: &str = "\
Lifecycle: draft → open → final-comment (optional) → accepted | rejected | withdrawn | superseded

  draft          Anyone edits it; `open` starts the comment period.
  open           Members comment, approve and raise concerns until the period closes;
                 `close` ends it early.
  final-comment  An optional last, announced period: `final-comment`.
  accepted       `accept`, once the period is over, every decider approved the current
                 text, and no blocking concern is unresolved. Title and sections are
                 final from then on.
  rejected       `reject`, once the period is over.
  withdrawn      `withdraw`, from draft or during a period.
  superseded     `supersede --by ID`: another proposal replaces it.

Each step is taken by the author or a decider. An edit after an approval makes it stale:
that decider approves again. `reopen` takes a decided proposal back to draft, and every
approval goes stale. Decisions made offline at the same time show as state `conflict`:
`meridian resolve ID state STATE` settles it.

Examples:
  meridian proposal new \"Store workspaces in redb\" --decider Bo
  meridian proposal open 1a2b --closes 3d
  meridian proposal approve 1a2b -m \"Looks right.\"
  meridian proposal accept 1a2b";

/// The help heading of the options every command takes.
const GLOBAL: &str = "Global options";

/// When to colour the output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    /// On a terminal, unless `NO_COLOR` is set (or `TERM` is `dumb`).
    Auto,
    /// Always, even into a pipe or a file.
    Always,
    /// Never.
    Never,
}

/// Every command.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create this device's identity: a key, your name, time zone and working hours.
    #[command(
        after_help = "Examples:\n  meridian init --name Ana --tz Asia/Tokyo\n  meridian init --name Bo --tz Europe/Berlin --hours 08:00-16:00 --days mon-thu\n  meridian init --name Cy --hours 22:00-06:00          # a night shift"
    )]
    Init {
        /// The name your team knows you by.
        #[arg(long)]
        name: String,
        /// Working hours in your zone.
        #[arg(long, default_value = "09:00-17:00", value_name = "HH:MM-HH:MM")]
        hours: String,
        /// Working days.
        #[arg(long, default_value = "mon-fri", value_name = "DAYS")]
        days: String,
    },
    /// Show this device's identity.
    Whoami,
    /// Your profile: name, time zone, working hours and days (every workspace follows).
    #[command(subcommand)]
    Profile(ProfileCommand),
    /// Days you are away (holidays, leave): deadlines skip them, and requests to you say so
    /// or pass on along the escalation ladder. With no period, lists them.
    #[command(
        after_help = "Examples:\n  meridian away 2026-12-24..2027-01-02\n  meridian away 2026-12-31\n  meridian away                     # list them\n  meridian away --clear"
    )]
    Away {
        /// A day (2026-12-25) or a period (2026-12-24..2027-01-02), in your time zone.
        #[arg(value_name = "FROM..TO", conflicts_with = "clear")]
        period: Option<String>,
        /// The last day, for `away FROM TO` (the same as `away FROM..TO`).
        #[arg(value_name = "TO", requires = "period", hide = true)]
        to: Option<String>,
        /// Forget every period.
        #[arg(long)]
        clear: bool,
    },
    /// Create, list and configure workspaces.
    #[command(subcommand)]
    Workspace(WorkspaceCommand),
    /// Print an invite code for a new member (it carries the workspace key: share it privately).
    ///
    /// A code admits one device, once, before it expires: each person (and each of their
    /// devices) needs a code of their own. `meridian join CODE` registers with the relays
    /// the code names and fails if they refuse it (used, expired, or its inviter removed).
    #[command(
        after_help = "Examples:\n  meridian invite\n  meridian invite --expires 2d\n  meridian invite --relay ws://backup.example.org:7070"
    )]
    Invite {
        /// A relay URL to include besides the workspace's (repeatable).
        #[arg(long = "relay", value_name = "URL")]
        relays: Vec<String>,
        /// How long the code stays valid (a duration like 7d, or a date).
        #[arg(long, default_value = "7d")]
        expires: String,
    },
    /// Join a workspace with an invite code.
    ///
    /// The relays the code names are asked to admit this device first: if they refuse,
    /// nothing is kept and `join` fails with their reason. With no relay reachable the
    /// join works offline and registers on the next `meridian sync`.
    #[command(
        after_help = "Examples:\n  meridian join meridian-invite-1-…   # the whole code, as `meridian invite` printed it"
    )]
    Join {
        /// The code from `meridian invite`.
        code: String,
        /// A CA certificate (PEM) to trust for the invite's wss:// relays, for a relay
        /// whose certificate comes from a CA of its own.
        #[arg(long, value_name = "FILE")]
        ca: Option<PathBuf>,
    },
    /// Members of the workspace.
    #[command(subcommand)]
    Member(MemberCommand),
    /// Your devices: add another (a laptop, a phone), list them.
    #[command(subcommand)]
    Device(DeviceCommand),
    /// Write and decide proposals (RFCs, ADRs, decisions).
    #[command(after_long_help = PROPOSAL_LIFECYCLE)]
    #[command(subcommand)]
    Proposal(ProposalCommand),
    /// Discussion threads.
    #[command(subcommand)]
    Thread(ThreadCommand),
    /// Reply to a thread, a proposal, an update, one comment or a concern (ID:COMMENT).
    #[command(
        after_help = "Examples:\n  meridian reply 1a2b -m \"Friday works for me.\"\n  meridian reply 1a2b:3c4d -m \"Agreed.\"      # answer one comment\n  meridian reply 1a2b:3c4d --edit -m \"Agreed, with a caveat.\"\n  meridian reply 1a2b --file notes.md"
    )]
    Reply {
        /// Document id, or document:comment ids.
        target: String,
        /// The reply (with --edit: the comment's new text).
        #[command(flatten)]
        text: Text,
        /// Replace the text of your own comment ID:COMMENT (the history keeps the earlier
        /// text; others see it was edited).
        #[arg(long, conflicts_with = "delete")]
        edit: bool,
        /// Delete your own comment ID:COMMENT (replies to it stay).
        #[arg(long)]
        delete: bool,
    },
    /// React to a comment, or take your reaction back.
    #[command(
        after_help = "Examples:\n  meridian react 1a2b:3c4d 👍\n  meridian react 1a2b:3c4d 👍 --remove"
    )]
    React {
        /// document:comment ids.
        target: String,
        /// The reaction.
        emoji: String,
        /// Take the reaction back.
        #[arg(long)]
        remove: bool,
    },
    /// Ask members to respond to a proposal or thread (or cancel a request with --cancel).
    #[command(
        after_help = "Examples:\n  meridian ask 1a2b Bo Cy --urgency high\n  meridian ask 1a2b --cancel Cy"
    )]
    Ask {
        /// Document id (prefix).
        id: String,
        /// The members to ask.
        #[arg(value_name = "NAME", required_unless_present = "cancel")]
        names: Vec<String>,
        /// Urgency of the request (the workspace's levels: `meridian workspace norms`).
        #[arg(long, value_name = "LEVEL")]
        urgency: Option<String>,
        /// Cancel the request to this member (you asked them, or the document is yours).
        #[arg(long, value_name = "NAME", conflicts_with_all = ["names", "urgency"])]
        cancel: Option<String>,
    },
    /// Decline a request to respond: it goes back to whoever asked, or on along the
    /// escalation ladder.
    #[command(
        after_help = "Examples:\n  meridian decline 1a2b -m \"Out this week: Cy knows this area.\""
    )]
    Decline {
        /// Document id (prefix).
        id: String,
        /// Why (the asker reads it).
        #[command(flatten)]
        why: Note,
    },
    /// Acknowledge a request: seen, no reply needed (it counts as your response).
    Ack {
        /// Document id (prefix).
        id: String,
    },
    /// Status updates.
    #[command(subcommand)]
    Update(UpdateCommand),
    /// Show a document as it is, or as it was.
    #[command(
        after_help = "Examples:\n  meridian show 1a2b\n  meridian show 1a2b --at 2d             # as it was two days ago\n  meridian show 1a2b --at 9f3c           # at a revision from `meridian log`"
    )]
    Show {
        /// Document id (prefix).
        id: String,
        /// A revision (change hash prefix), a date, or a duration ago (`2d`).
        #[arg(long, value_name = "REV|DATE")]
        at: Option<String>,
        /// Do not mark the document read.
        #[arg(long)]
        no_mark: bool,
    },
    /// What waits for you, what you wait on, and what happened since you last read it, in
    /// every workspace (unless -w).
    #[command(
        after_help = "Examples:\n  meridian inbox\n  meridian inbox --at 2d                 # what will be due or overdue in two days\n  meridian inbox -w acme --kind proposal --limit 5"
    )]
    Inbox {
        /// Look ahead: the inbox as it will stand at DATE, or after a duration (`2d`).
        #[arg(long, value_name = "DATE|DURATION")]
        at: Option<String>,
        /// At most N entries in each part of each workspace.
        #[arg(long, value_name = "N")]
        limit: Option<usize>,
        /// Only documents of this kind: proposal, thread or update.
        #[arg(long, value_name = "KIND")]
        kind: Option<String>,
    },
    /// Search titles, sections, comments, concerns and updates of every workspace (unless
    /// -w): documents ranked best first, each with the line that matched.
    #[command(
        after_help = "Words must all appear (in one title, section, comment, concern or update part); \"a phrase\" in quotes; -word excludes; a OR b.\n\nExamples:\n  meridian search backups\n  meridian search \"key rotation\" --kind proposal --state accepted\n  meridian search relay --author Cy --since 2w\n  meridian search --reindex              # rebuild the index from the documents"
    )]
    Search(search::Args),
    /// Mark documents as read (`show` marks what it shows, too).
    #[command(
        after_help = "Examples:\n  meridian read 1a2b 5e6f\n  meridian read --all --kind update"
    )]
    Read {
        /// Document ids (prefixes).
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        ids: Vec<String>,
        /// Every document (of the workspace with -w, else of every workspace).
        #[arg(long)]
        all: bool,
        /// With --all: only documents of this kind (proposal, thread, update).
        #[arg(long, value_name = "KIND", requires = "all")]
        kind: Option<String>,
    },
    /// A document's changes: hash, verified author, local time, message.
    #[command(after_help = "Examples:\n  meridian log 1a2b\n  meridian log 1a2b -n 10")]
    Log {
        /// Document id (prefix).
        id: String,
        /// Show only the newest N.
        #[arg(short = 'n', value_name = "N")]
        limit: Option<usize>,
    },
    /// Field-by-field and text diff between two points (the second defaults to now).
    #[command(
        after_help = "Examples:\n  meridian diff 1a2b 2d                 # what changed in two days\n  meridian diff 1a2b 9f3c 0e1d           # between two revisions"
    )]
    Diff {
        /// Document id (prefix).
        id: String,
        /// From: a revision or date.
        from: String,
        /// To: a revision or date.
        to: Option<String>,
    },
    /// Fields with concurrent values, and who wrote each.
    #[command(after_help = "Examples:\n  meridian conflicts 1a2b")]
    Conflicts {
        /// Document id (prefix).
        id: String,
    },
    /// Settle a conflict with either concurrent value, or a new one (`state` takes a state
    /// name, `"section NAME"` the section's text).
    #[command(
        after_help = "Examples:\n  meridian resolve 1a2b title \"Store workspaces in redb\"\n  meridian resolve 1a2b \"section Summary\" \"The merged text.\"\n  meridian resolve 1a2b state accepted"
    )]
    Resolve {
        /// Document id (prefix).
        id: String,
        /// The field, as `conflicts` names it.
        field: String,
        /// The value to keep.
        value: String,
    },
    /// Export a document as Markdown (a proposal as its decision record), JSON or a
    /// bundle; or the whole workspace as a bundle, or its decision records as a directory.
    #[command(
        after_help = "A proposal's Markdown is its decision record: state, who decided and when, deciders and their approvals (the version approved, stale ones marked), concerns and their resolutions, supersession and history. Times are in UTC, so a record reads the same whoever exports it.\n\nExamples:\n  meridian export 1a2b > rfc.md\n  meridian export 1a2b --discussion -o rfc.md     # with the comments\n  meridian export 1a2b --format json\n  meridian export --all --format markdown -o docs/decisions   # one file per proposal and index.md\n  meridian export --all --format bundle -o acme.bundle"
    )]
    Export {
        /// Document id (prefix).
        id: Option<String>,
        /// Every document of the workspace: a bundle, or every proposal's decision record
        /// into the directory -o names.
        #[arg(long)]
        all: bool,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Markdown)]
        format: Format,
        /// Write to FILE (a directory with --all --format markdown) instead of stdout.
        #[arg(short = 'o', long = "output", value_name = "FILE")]
        output: Option<PathBuf>,
        /// Markdown of a proposal: include its comments.
        #[arg(long)]
        discussion: bool,
        /// A bundle of one document that anyone can check with `meridian verify`, with no
        /// home: it carries the key of each of its envelopes (and of no other), so whoever
        /// has the file reads that document and the workspace's member list.
        #[arg(long, requires = "id")]
        verifiable: bool,
    },
    /// Check a verifiable export, with no home, and print its record.
    ///
    /// Every signature, every key, every change against its document's rules and every
    /// writer's membership back to the workspace's creator; then the record (for a
    /// proposal: who approved which version, who decided and when).
    #[command(
        after_help = "The file comes from `meridian export ID --format bundle --verifiable -o FILE`. Exit code 0 means every check held; the record printed is derived from the checked changes the way every member's node derives it.\n\nExamples:\n  meridian verify store-workspaces-in-redb.bundle\n  meridian verify --json rfc.bundle | jq .state"
    )]
    Verify {
        /// The bundle `export ID --format bundle --verifiable` wrote.
        file: PathBuf,
    },
    /// Merge a bundle or a saved automerge document from another node.
    #[command(after_help = "Examples:\n  meridian merge acme.bundle")]
    Merge {
        /// The file.
        file: PathBuf,
    },
    /// One sync round with the workspace's relays: push local changes, pull everything new.
    #[command(
        after_help = "Examples:\n  meridian sync\n  meridian sync -v                       # each relay's figures\n  meridian sync --relay ws://backup.example.org:7070"
    )]
    Sync {
        /// Sync with this relay instead of the workspace's list (repeatable).
        #[arg(long = "relay", value_name = "URL")]
        relays: Vec<String>,
    },
    /// Stay connected to the relays of every workspace: push edits as they are made, apply
    /// remote ones as they arrive, reconnect with backoff. Other commands keep working.
    #[command(
        after_help = "With --notify or --on-inbox, what newly waits for you (an ask, an escalation, an approval to give or renew, a concern on your proposal, a proposal you can accept, a decision in conflict) is delivered in your working hours, in your zone: what arrives while you are off is held, and two or more held items come as one digest when your day starts; requests of a level that interrupts quiet hours (`urgent`, unless the workspace's norms say otherwise) come at once.\n\nExamples:\n  meridian daemon 2>> ~/.local/state/meridian.log &\n  meridian daemon --notify\n  meridian daemon --on-inbox 'jq -r .title >> ~/waiting.txt'"
    )]
    Daemon {
        /// Post a desktop notification (notify-send) for what waits for you.
        #[arg(long)]
        notify: bool,
        /// Run CMD (with `sh -c`) for what waits for you, the item as JSON on its stdin.
        #[arg(long, value_name = "CMD")]
        on_inbox: Option<String>,
    },
    /// Print a completion script for a shell.
    ///
    /// bash: `meridian completions bash > ~/.local/share/bash-completion/completions/meridian`;
    /// zsh: `meridian completions zsh > ~/.zfunc/_meridian`; fish: `meridian completions fish >
    /// ~/.config/fish/completions/meridian.fish`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff): `meridian man | man -l -`, or install it with
    /// `meridian man > ~/.local/share/man/man1/meridian.1`.
    Man,
    /// Print the JSON Schema of what every command prints under --json (one definition
    /// per command's output, under `$defs`), for scripts to validate against.
    #[command(
        after_help = "Examples:\n  meridian schema > meridian.schema.json\n  meridian schema | jq '.[\"$defs\"].inbox'"
    )]
    Schema,
}

/// `meridian profile …`
#[derive(Debug, Subcommand)]
pub enum ProfileCommand {
    /// Change your name, time zone (--tz ZONE), working hours or days.
    Set {
        /// The name your team knows you by (unique in your workspaces).
        #[arg(long)]
        name: Option<String>,
        /// Working hours in your zone.
        #[arg(long, value_name = "HH:MM-HH:MM")]
        hours: Option<String>,
        /// Working days.
        #[arg(long, value_name = "DAYS")]
        days: Option<String>,
    },
}

/// Export formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Readable Markdown.
    Markdown,
    /// The document as JSON.
    Json,
    /// A signed bundle for `merge`.
    Bundle,
    /// A saved automerge document (unsigned), for other automerge tools.
    Automerge,
}

/// `meridian workspace …`
#[derive(Debug, Subcommand)]
pub enum WorkspaceCommand {
    /// Create a workspace with you as its first member.
    #[command(
        after_help = "Examples:\n  meridian workspace create acme --relay ws://relay.example.org:7070\n  meridian workspace create scratch     # no relay: bundles only, or add one later"
    )]
    Create {
        /// Its name.
        name: String,
        /// A relay URL, like ws://relay.example.org:7070 or wss://relay.example.org
        /// (repeatable).
        #[arg(long = "relay", value_name = "URL")]
        relays: Vec<String>,
        /// A CA certificate (PEM) to trust for the wss:// relays named here, for a relay
        /// whose certificate comes from a CA of its own.
        #[arg(long, value_name = "FILE", requires = "relays")]
        ca: Option<PathBuf>,
    },
    /// List your workspaces.
    List,
    /// The keys this device holds: the key epoch it seals under, who started each one and
    /// why (a removal), how many devices it reached, and what waits for a key.
    #[command(
        after_help = "A removal starts a new key that the removed member's device never receives; what members write after they hear of it is sealed under that key. A member who joined later receives it from any member who holds it, at that member's next sync.\n\nExamples:\n  meridian workspace keys\n  meridian workspace keys --json"
    )]
    Keys,
    /// Make a workspace the current one: commands use it when several are here and none is
    /// named with -w (a document's id finds its own workspace either way).
    Use {
        /// Its name or id prefix.
        name: String,
    },
    /// Add or replace a custom proposal template.
    #[command(
        after_help = "Examples:\n  meridian workspace template postmortem Summary Timeline \"Root cause\" \"Action items\""
    )]
    Template {
        /// Template name.
        name: String,
        /// Its section names, in order.
        #[arg(required = true)]
        sections: Vec<String>,
    },
    /// Set an urgency level's response time (working time of the responder: 30m, 4h, 2d,
    /// none) and whether its requests interrupt quiet hours. The creator and admins only.
    #[command(
        after_help = "A level that interrupts quiet hours is delivered by `meridian daemon --notify` at once, at night or while someone is away; the others wait for the person's working day. Only `urgent` does unless the workspace says otherwise.\n\nExamples:\n  meridian workspace norm high 2h\n  meridian workspace norm critical 30m --new --interrupts\n  meridian workspace norm urgent --no-interrupts\n  meridian workspace norm fyi none"
    )]
    Norm {
        /// Level name.
        level: String,
        /// Response time.
        #[arg(required_unless_present_any = ["interrupts", "no_interrupts"])]
        within: Option<String>,
        /// Add a level the workspace does not have yet.
        #[arg(long)]
        new: bool,
        /// Its requests reach people at once, in their quiet hours too.
        #[arg(long, conflicts_with = "no_interrupts")]
        interrupts: bool,
        /// Its requests wait for each person's working hours.
        #[arg(long)]
        no_interrupts: bool,
    },
    /// Set the escalation ladder: the members a missed deadline escalates to, in order. The
    /// creator and admins only.
    #[command(after_help = "Examples:\n  meridian workspace ladder Bo Ana")]
    Ladder {
        /// Member names.
        members: Vec<String>,
    },
    /// Show the norms: urgency levels (most urgent first), ladder, admins and templates.
    Norms,
    /// Every change to the workspace: members, norms, ladder, admins, templates; who and when.
    Log {
        /// Show only the newest N.
        #[arg(short = 'n', value_name = "N")]
        limit: Option<usize>,
    },
    /// The relays the workspace syncs through.
    #[command(subcommand)]
    Relay(RelayCommand),
}

impl WorkspaceCommand {
    /// Whether the command works on one workspace's settings (the others create, list or
    /// choose workspaces, or name theirs themselves).
    fn needs_workspace(&self) -> bool {
        matches!(
            self,
            WorkspaceCommand::Template { .. }
                | WorkspaceCommand::Norm { .. }
                | WorkspaceCommand::Ladder { .. }
                | WorkspaceCommand::Norms
                | WorkspaceCommand::Log { .. }
                | WorkspaceCommand::Keys
        )
    }
}

/// `meridian workspace relay …`
#[derive(Debug, Subcommand)]
pub enum RelayCommand {
    /// Add a relay (the creator registers the workspace with it at the next sync).
    #[command(
        after_help = "Examples:\n  meridian workspace relay add ws://relay.example.org:7070\n  meridian workspace relay add wss://relay.example.org\n  meridian workspace relay add wss://relay.internal:8443 --ca relay-ca.pem   # its own CA"
    )]
    Add {
        /// Its URL, like ws://relay.example.org:7070 or wss://relay.example.org.
        url: String,
        /// A CA certificate (PEM) to trust for this wss:// relay, beside the system's roots
        /// (for a relay whose certificate comes from a CA of its own). Given for a relay
        /// already listed, it replaces the one trusted before.
        #[arg(long, value_name = "FILE")]
        ca: Option<PathBuf>,
    },
    /// Stop syncing with a relay.
    Remove {
        /// Its URL.
        url: String,
    },
    /// List the relays and how far sync got with each.
    List,
}

/// `meridian device …`
#[derive(Debug, Subcommand)]
pub enum DeviceCommand {
    /// Print a one-time code that adds another device of yours to the workspace: it reads
    /// everything, writes as you, and the others see one person.
    #[command(
        after_help = "On the new device: `meridian init --name NAME`, then `meridian device join CODE`.\n\nExamples:\n  meridian device add\n  meridian device add --expires 1h"
    )]
    Add {
        /// How long the code stays valid (a duration like 1d, or a date).
        #[arg(long, default_value = "1d")]
        expires: String,
    },
    /// On the new device: join with a code from `meridian device add` on one of yours.
    ///
    /// Works offline: with no relay reachable, the device registers on the next `meridian
    /// sync`, or reads a bundle from your other device (`meridian merge`).
    Join {
        /// The code from `meridian device add`.
        code: String,
        /// A CA certificate (PEM) to trust for the code's wss:// relays.
        #[arg(long, value_name = "FILE")]
        ca: Option<PathBuf>,
    },
    /// Your devices in the workspace, and who added each.
    List,
    /// Revoke another device of yours (lost, sold): it gets no key for what is written
    /// from now on, relays refuse it, and what it writes after this is refused everywhere.
    #[command(after_help = "Examples:\n  meridian device list\n  meridian device revoke 5e185e8c")]
    Revoke {
        /// The device's key (a prefix, as `device list` shows it).
        device: String,
    },
}

/// `meridian member …`
#[derive(Debug, Subcommand)]
pub enum MemberCommand {
    /// Name, keys, time zone, working hours and local time of every member.
    List,
    /// Remove a member (workspace creator only): what you write from now on is sealed under
    /// a new key their device never receives, and relays refuse their devices from the next
    /// sync on. What they wrote before stays.
    Remove {
        /// The member's name or id prefix.
        name: String,
    },
    /// Name a member admin (workspace creator only): admins change the norms and the ladder.
    Admin {
        /// The member's name or id prefix.
        name: String,
        /// No longer an admin.
        #[arg(long)]
        remove: bool,
    },
}

/// `meridian proposal …`
#[derive(Debug, Subcommand)]
pub enum ProposalCommand {
    /// Write a new proposal.
    #[command(
        after_help = "Examples:\n  meridian proposal new \"Store workspaces in redb\" --decider Bo --decider Cy\n  meridian proposal new \"Adopt jiff\" --template adr --section Context=\"We juggle zones.\"\n  meridian proposal new \"Q3 roadmap\" --body-file roadmap.md --ask Cy --urgency high"
    )]
    New {
        /// Title.
        title: String,
        /// rfc, adr, decision, or a custom template.
        #[arg(long, default_value = "rfc")]
        template: String,
        /// Initial text of a section of the template (or of --body-file); repeatable.
        #[arg(long = "section", value_name = "NAME=TEXT")]
        sections: Vec<String>,
        /// A section beyond the template's, with its initial text; repeatable.
        #[arg(long = "new-section", value_name = "NAME=TEXT")]
        new_sections: Vec<String>,
        /// Markdown whose `## Heading`s are the sections.
        #[arg(long, value_name = "FILE")]
        body_file: Option<PathBuf>,
        /// Ask a member to respond (repeatable: --ask Bo --ask Cy).
        #[arg(long = "ask", value_name = "NAME")]
        asks: Vec<String>,
        /// A member whose approval acceptance needs (default: you); repeatable.
        #[arg(long = "decider", value_name = "NAME")]
        deciders: Vec<String>,
        /// Urgency of the asks.
        #[arg(long, value_name = "LEVEL")]
        urgency: Option<String>,
    },
    /// List proposals.
    #[command(
        after_help = "Examples:\n  meridian proposal list\n  meridian proposal list --state open"
    )]
    List {
        /// Only those in this state.
        #[arg(long)]
        state: Option<String>,
    },
    /// Edit a section (or every section) from a file, or in $EDITOR.
    #[command(
        after_help = "Examples:\n  meridian proposal edit 1a2b                       # every section in $EDITOR\n  meridian proposal edit 1a2b --section Summary --file summary.md\n  meridian proposal edit 1a2b --new-section Risks --file -\n  meridian proposal edit 1a2b --title \"Store workspaces and keys in redb\""
    )]
    Edit {
        /// Proposal id.
        id: String,
        /// The section to edit: one the proposal has (any case); `NAME=TEXT` sets its text
        /// without a file or an editor.
        #[arg(long, value_name = "NAME", group = "which")]
        section: Option<String>,
        /// Add a section with this name (`NAME=TEXT`: with its text).
        #[arg(long, value_name = "NAME", group = "which")]
        new_section: Option<String>,
        /// Remove a section (its text stays in the history).
        #[arg(long, value_name = "NAME", group = "which")]
        remove_section: Option<String>,
        /// Read the new text from FILE (`-` for stdin): one section's text with --section
        /// or --new-section, else Markdown with a `## Heading` per section to set (the
        /// sections it lacks stay). With no file, $EDITOR opens the whole proposal, where
        /// deleting a section's heading removes the section.
        #[arg(long, value_name = "FILE", conflicts_with = "remove_section")]
        file: Option<PathBuf>,
        /// Change the title.
        #[arg(long)]
        title: Option<String>,
    },
    /// Open the comment period.
    #[command(
        after_help = "Examples:\n  meridian proposal open 1a2b\n  meridian proposal open 1a2b --closes 2026-12-15\n  meridian proposal open 1a2b --closes now       # no period: decide now"
    )]
    Open {
        /// Proposal id.
        id: String,
        /// When it closes: a date, a duration in each responder's working time, or `now`.
        #[arg(long, default_value = "5d", value_name = "DATE|DURATION")]
        closes: String,
    },
    /// Start the final, announced comment period.
    FinalComment {
        /// Proposal id.
        id: String,
        /// When it closes: a date, a duration in each responder's working time, or `now`.
        #[arg(long, default_value = "2d", value_name = "DATE|DURATION")]
        closes: String,
    },
    /// Approve the current text.
    #[command(after_help = "Examples:\n  meridian proposal approve 1a2b -m \"Looks right.\"")]
    Approve {
        /// Proposal id.
        id: String,
        /// A message.
        #[command(flatten)]
        message: Note,
    },
    /// Retract your approval.
    Unapprove {
        /// Proposal id.
        id: String,
    },
    /// Raise a concern (reply to one with `meridian reply ID:CONCERN`).
    #[command(
        after_help = "Examples:\n  meridian proposal concern 1a2b -m \"No rollback plan.\" --blocking"
    )]
    Concern {
        /// Proposal id.
        id: String,
        /// The concern.
        #[command(flatten)]
        text: Text,
        /// It blocks acceptance until resolved.
        #[arg(long)]
        blocking: bool,
    },
    /// Mark a concern resolved: whoever raised it may, and the proposal's author may with
    /// a note saying why (shown beside the concern and reported to whoever raised it).
    #[command(
        after_help = "Examples:\n  meridian proposal resolve 1a2b 3c4d                 # your own concern\n  meridian proposal resolve 1a2b 3c4d -m \"Rollback is in Risks now.\""
    )]
    Resolve {
        /// Proposal id.
        id: String,
        /// Concern id (prefix).
        concern: String,
        /// Why it is resolved (required when it is not your own concern).
        #[command(flatten)]
        note: Note,
    },
    /// Replace the deciders (the author, while undecided): whose approval acceptance needs.
    Deciders {
        /// Proposal id.
        id: String,
        /// The deciders.
        #[arg(value_name = "NAME", required = true)]
        names: Vec<String>,
    },
    /// End the current comment period now (author or decider).
    Close {
        /// Proposal id.
        id: String,
    },
    /// Move a decided proposal back to draft (author or decider): its text may change
    /// again, and every approval goes stale.
    Reopen {
        /// Proposal id.
        id: String,
        /// Why it is reopened.
        #[command(flatten)]
        text: Text,
    },
    /// Accept (needs the deciders' approval and no unresolved blocking concern).
    #[command(after_help = "Examples:\n  meridian proposal accept 1a2b -m \"Deciders agree.\"")]
    Accept(Decision),
    /// Reject.
    Reject(Decision),
    /// Withdraw.
    Withdraw(Decision),
    /// Mark as superseded by another proposal.
    #[command(after_help = "Examples:\n  meridian proposal supersede 1a2b --by 5e6f")]
    Supersede {
        /// Proposal id.
        id: String,
        /// The proposal that replaces it.
        #[arg(long)]
        by: String,
    },
}

/// Text for a command: `-m TEXT`, `--file FILE` (`-` reads stdin for either), or $EDITOR
/// when neither is given.
#[derive(Debug, Default, clap::Args)]
pub struct Text {
    /// The text (`-` reads it from stdin); $EDITOR opens when neither this nor --file is given.
    #[arg(short = 'm', long = "message", value_name = "TEXT")]
    pub message: Option<String>,
    /// Read the text from FILE (`-` for stdin).
    #[arg(long = "file", value_name = "FILE", conflicts_with = "message")]
    pub file: Option<PathBuf>,
}

/// An optional message: `-m TEXT` or `--file FILE` (`-` reads stdin for either); no editor
/// opens when neither is given.
#[derive(Debug, Default, clap::Args)]
pub struct Note {
    /// The message (`-` reads it from stdin).
    #[arg(short = 'm', long = "message", value_name = "TEXT")]
    pub message: Option<String>,
    /// Read the message from FILE (`-` for stdin).
    #[arg(long = "file", value_name = "FILE", conflicts_with = "message")]
    pub file: Option<PathBuf>,
}

impl Note {
    /// The message given, if any.
    pub fn read(self) -> Result<Option<String>> {
        let text = match (self.message, self.file) {
            (Some(m), _) if m == "-" => read_text(std::path::Path::new("-"))?,
            (Some(m), _) => m,
            (None, Some(path)) => read_text(&path)?,
            (None, None) => return Ok(None),
        };
        Ok(Some(text.trim().to_string()).filter(|t| !t.is_empty()))
    }
}

/// Arguments of accept, reject, withdraw.
#[derive(Debug, clap::Args)]
pub struct Decision {
    /// Proposal id.
    pub id: String,
    /// A message.
    #[command(flatten)]
    pub message: Note,
}

/// `meridian thread …`
#[derive(Debug, Subcommand)]
pub enum ThreadCommand {
    /// Start a thread.
    #[command(
        after_help = "Examples:\n  meridian thread new \"Release date?\" -m \"Friday or Monday?\" --ask Bo --ask Cy\n  meridian thread new \"Incident review\" --file notes.md --urgency urgent --ask Bo"
    )]
    New {
        /// Title.
        title: String,
        /// Opening text.
        #[command(flatten)]
        body: Text,
        /// Ask a member to respond (repeatable: --ask Bo --ask Cy).
        #[arg(long = "ask", value_name = "NAME")]
        asks: Vec<String>,
        /// Urgency of the asks.
        #[arg(long, value_name = "LEVEL")]
        urgency: Option<String>,
    },
    /// List threads.
    List,
    /// Mark a thread resolved.
    Resolve {
        /// Thread id.
        id: String,
    },
    /// Reopen a resolved thread.
    Reopen {
        /// Thread id.
        id: String,
    },
}

/// `meridian update …`
#[derive(Debug, Subcommand)]
pub enum UpdateCommand {
    /// Post a status update.
    #[command(
        after_help = "Each of --done, --next and --blockers can repeat: several items become a list. A blocker that names a member (@Cy) asks them to respond: the update waits in their inbox.\n\nExamples:\n  meridian update new --done \"Shipped sync v2\" --done \"Fixed the inbox\" --next \"Benchmarks\"\n  meridian update new --next \"Rotate the keys\" --blockers \"Waiting on @Cy for the relay's address\"\n  meridian update new --done \"Reviewed 1a2b\" --link 1a2b"
    )]
    New {
        /// What you did (repeatable).
        #[arg(long, value_name = "TEXT")]
        done: Vec<String>,
        /// What you will do next (repeatable).
        #[arg(long, value_name = "TEXT")]
        next: Vec<String>,
        /// What blocks you (repeatable; @Name asks that member to respond).
        #[arg(long, value_name = "TEXT")]
        blockers: Vec<String>,
        /// A proposal or thread it concerns (repeatable).
        #[arg(long = "link", value_name = "ID")]
        links: Vec<String>,
        /// The period it covers (default: this ISO week).
        #[arg(long)]
        period: Option<String>,
    },
    /// Status updates, newest first, with what each says.
    #[command(
        after_help = "On a terminal each part is a wrapped excerpt; `meridian show ID` has the whole update.\n\nExamples:\n  meridian update list\n  meridian update list --limit 5\n  meridian update list --json"
    )]
    List {
        /// At most N updates.
        #[arg(long, value_name = "N")]
        limit: Option<usize>,
    },
    /// Members who have not posted an update for the week they are in (in their own zone).
    #[command(
        after_help = "Examples:\n  meridian update missing\n  meridian update missing --json"
    )]
    Missing,
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    let home = match &cli.home {
        Some(home) => home.clone(),
        None => default_home()?,
    };
    let reader_tz = |node: Option<&Node>| -> Result<TimeZone> {
        match (&cli.tz, node) {
            (Some(tz), _) => display_zone(tz),
            (None, Some(node)) => display_zone(&node.profile()?.tz),
            (None, None) => Ok(TimeZone::UTC),
        }
    };
    let style = Style {
        quiet: cli.quiet,
        verbose: cli.verbose,
        color: cli.color,
    };
    // Completions and the man page need no home.
    match &cli.command {
        Some(Command::Completions { shell }) => {
            let mut command = <Cli as clap::CommandFactory>::command();
            let mut bytes = Vec::new();
            clap_complete::generate(*shell, &mut command, "meridian", &mut bytes);
            let out = Out::new(false, TimeZone::UTC, style);
            let result = out.bytes(&bytes);
            return finish(result, &out);
        }
        Some(Command::Verify { file }) => {
            let out = Out::new(cli.json, TimeZone::UTC, style);
            let result = history::verify(file, &out);
            return finish(result, &out);
        }
        Some(Command::Schema) => {
            let out = Out::new(false, TimeZone::UTC, style);
            let result = out.bytes(SCHEMA.as_bytes());
            return finish(result, &out);
        }
        Some(Command::Man) => {
            let command = <Cli as clap::CommandFactory>::command();
            let mut bytes = Vec::new();
            clap_mangen::Man::new(command)
                .render(&mut bytes)
                .context("cannot render the manual page")?;
            let out = Out::new(false, TimeZone::UTC, style);
            let result = out.bytes(&bytes);
            return finish(result, &out);
        }
        _ => {}
    }
    if let Some(Command::Init { name, hours, days }) = &cli.command {
        let out = Out::new(cli.json, reader_tz(None)?, style);
        let result = workspace::init(&home, name, cli.tz.as_deref(), hours, days, &out);
        return finish(result, &out);
    }
    // With no command: the inbox once there is an identity, else how to start.
    let command = match cli.command {
        Some(command) => command,
        None if home.join(crate::identity::KEY_FILE).exists() => Command::Inbox {
            at: None,
            limit: None,
            kind: None,
        },
        None => {
            let out = Out::new(cli.json, TimeZone::UTC, style);
            let result = workspace::getting_started(&home, &out);
            return finish(result, &out);
        }
    };
    let node = Node::open(&home)?;
    let out = Out::new(cli.json, reader_tz(Some(&node))?, style);
    let selector = cli.workspace.as_deref();
    // Each arm gives back the printer, whose buffered text `finish` writes out.
    let (result, out) = match command {
        Command::Init { .. } => unreachable!("handled above"),
        Command::Completions { .. } | Command::Man | Command::Schema | Command::Verify { .. } => {
            unreachable!("handled above")
        }
        Command::Whoami => (workspace::whoami(&node, &out), out),
        Command::Profile(ProfileCommand::Set { name, hours, days }) => (
            workspace::profile_set(&node, (name, cli.tz.clone(), hours, days), &out),
            out,
        ),
        Command::Away { period, to, clear } => {
            let period = match to {
                Some(to) => period.map(|from| format!("{from}..{to}")),
                None => period,
            };
            (workspace::away(&node, period, clear, &out), out)
        }
        Command::Workspace(command) if !command.needs_workspace() => {
            (workspace::workspace(&node, selector, command, &out), out)
        }
        Command::Join { code, ca } => (workspace::join(&node, &code, ca.as_deref(), &out), out),
        Command::Device(DeviceCommand::Join { code, ca }) => (
            workspace::device_join(&node, &code, ca.as_deref(), &out),
            out,
        ),
        Command::Daemon { notify, on_inbox } => {
            (sync::daemon(&node, style.color, notify, on_inbox), out)
        }
        Command::Inbox { at, limit, kind } => (
            inbox::inbox(
                &node,
                selector,
                (at.as_deref(), limit, kind.as_deref()),
                &out,
            ),
            out,
        ),
        Command::Search(args) => (search::search(&node, selector, args, &out), out),
        Command::Read {
            ids,
            all: true,
            kind,
        } if ids.is_empty() => (
            inbox::mark_all_read(&node, selector, kind.as_deref(), &out),
            out,
        ),
        command => {
            let (id, record) = choose_workspace(&node, selector, document_of(&command))?;
            let ctx = Ctx {
                app: crate::app::Context {
                    me: node.member_id(),
                    node,
                    workspace: id,
                    record,
                    tz: out.tz.clone(),
                },
                out,
            };
            (dispatch(&ctx, command), ctx.out)
        }
    };
    let result = finish(result, &out);
    if result.is_ok() {
        // A running daemon pushes what this command wrote now rather than at its next poll.
        crate::sync::net::wake_daemon(&home);
    }
    result
}

/// Reports an error on stderr: `error: what was wrong: why`, or under `--json` one JSON
/// object `{"error": MESSAGE, "kind": KIND}`.
pub fn print_error(error: &anyhow::Error, kind: &str, json: bool) {
    let message = crate::error::describe(error);
    if json {
        let value = serde_json::json!({"error": message.trim_end(), "kind": kind});
        eprintln!("{value}");
    } else {
        eprintln!("error: {}", message.trim_end());
    }
}

/// Writes out what a command printed. A reader that stopped early (`meridian log | head`)
/// is not an error: what the command stored before it stopped printing stays stored.
fn finish(result: Result<()>, out: &Out) -> Result<()> {
    let flushed = out.flush();
    match result.and(flushed) {
        Err(error) if error.is::<ReaderGone>() => Ok(()),
        result => result,
    }
}

fn dispatch(ctx: &Ctx, command: Command) -> Result<()> {
    match command {
        Command::Invite { relays, expires } => workspace::invite(ctx, relays, &expires),
        Command::Member(MemberCommand::List) => workspace::members(ctx),
        Command::Device(DeviceCommand::Add { expires }) => workspace::device_add(ctx, &expires),
        Command::Device(DeviceCommand::List) => workspace::devices(ctx),
        Command::Device(DeviceCommand::Revoke { device }) => workspace::revoke_device(ctx, &device),
        Command::Workspace(command) => workspace::settings(ctx, command),
        Command::Proposal(command) => write::proposal(ctx, command),
        Command::Thread(command) => write::thread(ctx, command),
        Command::Reply {
            target,
            text,
            edit,
            delete,
        } => write::reply(ctx, &target, text, edit, delete),
        Command::React {
            target,
            emoji,
            remove,
        } => write::react(ctx, &target, &emoji, remove),
        Command::Update(command) => write::update(ctx, command),
        Command::Ask {
            id,
            names,
            urgency,
            cancel,
        } => write::ask(ctx, &id, &names, urgency, cancel),
        Command::Decline { id, why } => write::answer(ctx, &id, false, why.read()?),
        Command::Ack { id } => write::answer(ctx, &id, true, None),
        Command::Show { id, at, no_mark } => read::show(ctx, &id, at.as_deref(), !no_mark),
        Command::Read { ids, .. } => read::mark_read(ctx, &ids),
        Command::Log { id, limit } => history::log(ctx, &id, limit),
        Command::Diff { id, from, to } => history::diff(ctx, &id, &from, to.as_deref()),
        Command::Conflicts { id } => history::conflicts(ctx, &id),
        Command::Resolve { id, field, value } => history::resolve(ctx, &id, &field, &value),
        Command::Export {
            id,
            all,
            format,
            output,
            discussion,
            verifiable,
        } => history::export(
            ctx,
            id.as_deref(),
            all,
            history::Export {
                format,
                output,
                discussion,
                verifiable,
            },
        ),
        Command::Merge { file } => history::merge(ctx, &file),
        Command::Sync { relays } => sync::sync(ctx, relays),
        Command::Member(MemberCommand::Remove { name }) => workspace::remove_member(ctx, &name),
        Command::Member(MemberCommand::Admin { name, remove }) => {
            workspace::admin(ctx, &name, remove)
        }
        Command::Init { .. }
        | Command::Whoami
        | Command::Profile(_)
        | Command::Away { .. }
        | Command::Join { .. }
        | Command::Device(DeviceCommand::Join { .. })
        | Command::Inbox { .. }
        | Command::Search(_)
        | Command::Completions { .. }
        | Command::Man
        | Command::Schema
        | Command::Verify { .. }
        | Command::Daemon { .. } => {
            unreachable!("handled before a workspace is chosen")
        }
    }
}

/// The document id (prefix) a command acts on, if it names one: it finds its workspace
/// when none is chosen.
fn document_of(command: &Command) -> Option<&str> {
    let prefix: Option<&String> = match command {
        Command::Show { id, .. }
        | Command::Log { id, .. }
        | Command::Diff { id, .. }
        | Command::Conflicts { id }
        | Command::Resolve { id, .. } => Some(id),
        Command::Export { id, .. } => id.as_ref(),
        Command::Read { ids, .. } => ids.first(),
        Command::Reply { target, .. } | Command::React { target, .. } => Some(target),
        Command::Ask { id, .. } | Command::Decline { id, .. } | Command::Ack { id } => Some(id),
        Command::Proposal(command) => match command {
            ProposalCommand::New { .. } | ProposalCommand::List { .. } => None,
            ProposalCommand::Edit { id, .. }
            | ProposalCommand::Open { id, .. }
            | ProposalCommand::FinalComment { id, .. }
            | ProposalCommand::Close { id }
            | ProposalCommand::Deciders { id, .. }
            | ProposalCommand::Approve { id, .. }
            | ProposalCommand::Unapprove { id }
            | ProposalCommand::Concern { id, .. }
            | ProposalCommand::Resolve { id, .. }
            | ProposalCommand::Supersede { id, .. }
            | ProposalCommand::Reopen { id, .. } => Some(id),
            ProposalCommand::Accept(d)
            | ProposalCommand::Reject(d)
            | ProposalCommand::Withdraw(d) => Some(&d.id),
        },
        Command::Thread(ThreadCommand::Resolve { id } | ThreadCommand::Reopen { id }) => Some(id),
        _ => None,
    };
    // `DOC:COMMENT` names the document before the colon.
    prefix.map(|p| p.split(':').next().unwrap_or(p))
}

/// The workspace a command works in: the one `-w` names; else the one holding the
/// document it names; else the current one (`workspace use`), or the only one.
fn choose_workspace(
    node: &Node,
    selector: Option<&str>,
    document: Option<&str>,
) -> Result<(Id, crate::store::WorkspaceRecord)> {
    if selector.is_none()
        && let Some(prefix) = document
        && let Some(workspace) = node.locate(prefix)?
    {
        return node.workspace(Some(&workspace.hex()));
    }
    node.workspace(selector)
}

/// The platform data directory for Meridian.
fn default_home() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir).join("meridian"));
    }
    let home = std::env::var_os("HOME")
        .context("no --home given and $HOME is not set: pass --home DIR")?;
    let home = PathBuf::from(home);
    if cfg!(target_os = "macos") {
        Ok(home.join("Library/Application Support/meridian"))
    } else {
        Ok(home.join(".local/share/meridian"))
    }
}

/// What every workspace command has at hand: the person acting in the chosen workspace,
/// and the printer.
pub struct Ctx {
    /// The person, the node and the workspace.
    pub app: crate::app::Context,
    /// Printing.
    pub out: Out,
}

impl std::ops::Deref for Ctx {
    type Target = crate::app::Context;

    fn deref(&self) -> &crate::app::Context {
        &self.app
    }
}

/// How results are printed: text or JSON, times in the reader's zone.
///
/// Text goes through one buffer: `thread list` of 10,000 documents was 5,000 `write(2)`
/// calls through `println!`, two thirds of the command's system time. A terminal still gets
/// each line as it is written, and what goes to stderr goes through [`Out::warn`], which
/// writes out the text before it, so `2>&1` keeps the order too.
pub struct Out {
    /// JSON instead of text.
    pub json: bool,
    /// The reader's time zone.
    pub tz: TimeZone,
    /// Whether text is coloured.
    pub color: bool,
    /// `-q`: no line saying what a command did.
    pub quiet: bool,
    /// `-v`: the details behind summaries.
    pub verbose: bool,
    text: RefCell<BufWriter<Stdout>>,
    terminal: bool,
}

/// How the person wants output to look: the global `-q`, `-v` and `--color`.
#[derive(Clone, Copy, Debug)]
pub struct Style {
    /// `-q`.
    pub quiet: bool,
    /// `-v`.
    pub verbose: bool,
    /// `--color`.
    pub color: ColorChoice,
}

/// What a piece of text says, for its colour.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tone {
    /// Needs attention: OVERDUE, STALE, CONFLICT, BLOCKING.
    Alarm,
    /// A line a diff removes.
    Removed,
    /// A line a diff adds.
    Added,
    /// Done, fine, ready.
    Good,
    /// A document or record id.
    Id,
    /// Less important: times, bylines.
    Dim,
    /// A heading.
    Heading,
    /// No colour.
    Plain,
}

/// A spinner on stderr saying what a slow command is doing (syncing with a relay, merging
/// a bundle), shown only when stderr is a terminal and the person asked neither for JSON
/// nor quiet; cleared when the command ends.
pub struct Spinner(Option<indicatif::ProgressBar>);

impl Spinner {
    /// Starts one with `message`.
    pub fn start(out: &Out, message: &str) -> Spinner {
        if out.json || out.quiet || !std::io::stderr().is_terminal() {
            return Spinner(None);
        }
        let bar = indicatif::ProgressBar::new_spinner();
        bar.set_message(message.to_string());
        bar.enable_steady_tick(std::time::Duration::from_millis(100));
        Spinner(Some(bar))
    }

    /// Changes what it says.
    pub fn say(&self, message: String) {
        if let Some(bar) = &self.0 {
            bar.set_message(message);
        }
    }

    /// Clears it.
    pub fn done(&self) {
        if let Some(bar) = &self.0 {
            bar.finish_and_clear();
        }
    }
}

/// Standard output was closed by its reader (`meridian log | head`): the command stops
/// there, and `meridian` exits as if it had printed everything.
#[derive(Debug, thiserror::Error)]
#[error("standard output was closed by its reader")]
pub struct ReaderGone;

impl ColorChoice {
    /// Whether text written to a stream is coloured: `always`, or `auto` on a terminal
    /// without `NO_COLOR` (or `TERM=dumb`).
    pub fn applies(self, terminal: bool) -> bool {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty())
            || std::env::var("TERM").is_ok_and(|t| t == "dumb");
        match self {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => terminal && !no_color,
        }
    }
}

impl Out {
    fn new(json: bool, tz: TimeZone, style: Style) -> Out {
        let stdout = std::io::stdout();
        let terminal = stdout.is_terminal();
        Out {
            json,
            tz,
            terminal,
            color: !json && style.color.applies(terminal),
            quiet: style.quiet,
            verbose: style.verbose,
            text: RefCell::new(BufWriter::with_capacity(64 * 1024, stdout)),
        }
    }

    /// Writes the line that says what a command did (and what comes next), unless the
    /// person asked for quiet or for JSON.
    pub fn said(&self, args: std::fmt::Arguments<'_>) -> Result<()> {
        if self.quiet || self.json {
            return Ok(());
        }
        self.line(args)
    }

    /// Whether stdout is a terminal (not a pipe or a file).
    pub fn is_terminal(&self) -> bool {
        self.terminal
    }

    /// The terminal's width in columns (`unknown` when it does not say), or `None` when
    /// the output is not a terminal.
    pub fn width(&self, unknown: usize) -> Option<usize> {
        self.terminal
            .then(|| terminal_size::terminal_size().map_or(unknown, |(w, _)| w.0 as usize))
    }

    /// `text` in a tone, when the output is coloured.
    pub fn paint(&self, tone: Tone, text: &str) -> String {
        if !self.color || tone == Tone::Plain {
            return text.to_string();
        }
        use anstyle::{AnsiColor, Style};
        let style = match tone {
            Tone::Alarm => Style::new().fg_color(Some(AnsiColor::Red.into())).bold(),
            Tone::Removed => Style::new().fg_color(Some(AnsiColor::Red.into())),
            Tone::Added | Tone::Good => Style::new().fg_color(Some(AnsiColor::Green.into())),
            Tone::Id | Tone::Dim => Style::new().dimmed(),
            Tone::Heading => Style::new().bold(),
            Tone::Plain => Style::new(),
        };
        format!("{style}{text}{style:#}")
    }

    /// Writes one line of text: what `say!` calls.
    pub fn line(&self, args: std::fmt::Arguments<'_>) -> Result<()> {
        let mut text = self.text.borrow_mut();
        text.write_fmt(args)
            .and_then(|()| text.write_all(b"\n"))
            .and_then(|()| if self.terminal { text.flush() } else { Ok(()) })
            .map_err(not_written)
    }

    /// Writes bytes as they are (an export to stdout), through the same buffer.
    pub fn bytes(&self, bytes: &[u8]) -> Result<()> {
        self.text.borrow_mut().write_all(bytes).map_err(not_written)
    }

    /// Writes one line to stderr, after writing out the text printed before it: what
    /// `warn!` calls. A failure to write that text is reported when the command ends.
    pub fn warn(&self, args: std::fmt::Arguments<'_>) {
        let _ = self.text.borrow_mut().flush();
        eprintln!("{args}");
    }

    /// Writes out what is buffered; `run` does it when a command ends.
    pub fn flush(&self) -> Result<()> {
        self.text.borrow_mut().flush().map_err(not_written)
    }

    /// A time for people: `Tue 2026-11-24 09:00 -05`.
    pub fn time(&self, ms: i64) -> String {
        crate::norms::show_time(ms, &self.tz)
    }

    /// A time for JSON: RFC 3339 with the reader's offset.
    pub fn rfc3339(&self, ms: i64) -> Json {
        rfc3339_in(ms, &self.tz)
    }

    /// Prints `value` in JSON mode; text mode stays quiet on success.
    pub fn done(&self, value: Json) -> Result<()> {
        if self.json {
            self.print_json(&value)?;
        }
        Ok(())
    }

    /// Prints a JSON value.
    pub fn print_json(&self, value: &Json) -> Result<()> {
        let text = serde_json::to_string_pretty(value).expect("JSON values always serialize");
        self.line(format_args!("{text}"))
    }
}

/// A time for JSON in `tz`: RFC 3339 to the second, with the zone's offset
/// (`2026-11-24T09:00:00-05:00`); `null` for a time out of range.
pub fn rfc3339_in(ms: i64, tz: &TimeZone) -> Json {
    match Timestamp::from_millisecond(ms.div_euclid(1000) * 1000) {
        Ok(t) => Json::String(
            t.to_zoned_datetime(tz.clone())
                .strftime("%Y-%m-%dT%H:%M:%S%:z")
                .to_string(),
        ),
        Err(_) => Json::Null,
    }
}

impl Ctx {
    /// A member's name, or `you` for the reader, as [`crate::proposal::Obstacle::describe`]
    /// addresses them.
    pub fn reader_name(&self, id: &str) -> String {
        if id == self.me {
            crate::proposal::YOU.to_string()
        } else {
            self.name(id)
        }
    }

    /// A member as JSON: `{"id": KEY, "name": NAME}`, the one shape of a person.
    pub fn person(&self, id: &str) -> Json {
        serde_json::json!({"id": id, "name": self.name(id)})
    }

    /// The removal of the member with this id or device key, if they were removed.
    fn removal(&self, id_or_key: &str) -> Option<crate::workspace::Removal> {
        self.record.state.removal(id_or_key, &self.record.creator)
    }
}

/// A member's removal as JSON: `{"at": TIME, "by": PERSON}` (`at` is `null` when this home
/// does not know it), or `null` for a member who was not removed.
pub fn removal_json(ctx: &Ctx, id_or_key: &str) -> Json {
    match ctx.removal(id_or_key) {
        Some(removal) => serde_json::json!({
            "at": removal.at.map_or(Json::Null, |at| ctx.out.rfc3339(at)),
            "by": ctx.person(&removal.by),
        }),
        None => Json::Null,
    }
}

/// A member's removal in words, `removed Mon 2026-12-07 14:02 CET by Ana`, or `None`.
pub fn removal_text(ctx: &Ctx, id_or_key: &str) -> Option<String> {
    let removal = ctx.removal(id_or_key)?;
    let when = removal
        .at
        .map(|at| format!(" {}", ctx.out.time(at)))
        .unwrap_or_default();
    Some(format!("removed{when} by {}", ctx.name(&removal.by)))
}

/// A failed write to stdout: [`ReaderGone`] when the reader has closed it, else the cause.
fn not_written(error: std::io::Error) -> anyhow::Error {
    if error.kind() == std::io::ErrorKind::BrokenPipe {
        ReaderGone.into()
    } else {
        anyhow::Error::new(error).context("could not write to standard output")
    }
}

/// Text from a document shown on one line of a terminal: control characters (a newline, an
/// escape sequence another member wrote) become `?`.
pub fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    if text.chars().any(char::is_control) {
        text.chars()
            .map(|c| if c.is_control() { '?' } else { c })
            .collect::<String>()
            .into()
    } else {
        text.into()
    }
}

/// Reads text from a file, or from stdin for `-`.
pub fn read_text(path: &std::path::Path) -> Result<String> {
    if path.as_os_str() == "-" {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
            .context("cannot read stdin")?;
        return Ok(text);
    }
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

/// The text a command was given (`-m`, `--file`, `-` for stdin), or what the person writes
/// in $EDITOR when neither was given. An empty text aborts the command, as in git.
pub fn text(given: Text, what: &str) -> Result<String> {
    let text = match (given.message, given.file) {
        (Some(m), _) if m == "-" => read_text(std::path::Path::new("-"))?,
        (Some(m), _) => m,
        (None, Some(path)) => read_text(&path)?,
        (None, None) => edit_in_editor("", what)?,
    };
    if text.trim().is_empty() {
        anyhow::bail!("aborting: the {what} is empty, so nothing was written");
    }
    Ok(text)
}

/// Lets the person edit `initial` in $EDITOR (or $VISUAL) and returns the result.
pub fn edit_in_editor(initial: &str, what: &str) -> Result<String> {
    let editor = std::env::var("VISUAL")
        .or_else(|_| std::env::var("EDITOR"))
        .map_err(|_| anyhow::anyhow!("no text given and $EDITOR is not set: pass the text with -m or --file, or set EDITOR"))?;
    let dir = std::env::temp_dir().join(format!("meridian-edit-{}", Id::random().short()));
    std::fs::create_dir_all(&dir)?;
    // The file is named after what is edited (a section's name, from a document): only
    // letters, digits and dashes, so no name can point outside the directory.
    let stem: String = what
        .chars()
        .map(|c| if c.is_alphanumeric() { c } else { '-' })
        .take(40)
        .collect();
    let path = dir.join(format!("{stem}.md"));
    std::fs::write(&path, initial)?;
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("{editor} \"$1\""))
        .arg("sh")
        .arg(&path)
        .status()
        .with_context(|| format!("cannot start the editor `{editor}`"))?;
    let text = std::fs::read_to_string(&path);
    let _ = std::fs::remove_dir_all(&dir);
    if !status.success() {
        anyhow::bail!("the editor `{editor}` exited with {status}: nothing was changed");
    }
    Ok(text?)
}
