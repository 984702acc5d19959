//! The law of the data model: whatever edits happen on 2–4 nodes, and in whatever order
//! and groupings their bundles are merged, every node ends with identical documents.

use meridian::bundle;
use meridian::discussion;
use meridian::doc::View;
use meridian::id::Id;
use meridian::identity::Profile;
use meridian::ingest::Limits;
use meridian::node::{Node, commit, now_ms};
use meridian::proposal::{self, NewProposal};
use meridian::workspace::Invite;
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Edit {
    /// Insert text at a fraction of the section's length.
    Insert {
        section: usize,
        at: u8,
        text: String,
    },
    /// Delete a few characters at a fraction of the section's length.
    Delete {
        section: usize,
        at: u8,
        len: u8,
    },
    Reply {
        parent: Option<u8>,
        text: String,
    },
    Title(String),
    Approve,
    /// A lifecycle transition after the ones this node sees (it may break a rule: then
    /// every node must ignore it the same way).
    Transition(usize),
}

const TRANSITIONS: [&str; 6] = [
    "open",
    "final-comment",
    "accept",
    "reject",
    "withdraw",
    "reopen",
];

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        4 => (0..3usize, any::<u8>(), "[a-z ]{1,8}").prop_map(|(section, at, text)| Edit::Insert { section, at, text }),
        2 => (0..3usize, any::<u8>(), 1..6u8).prop_map(|(section, at, len)| Edit::Delete { section, at, len }),
        2 => (proptest::option::of(any::<u8>()), "[a-z]{1,6}").prop_map(|(parent, text)| Edit::Reply { parent, text }),
        1 => "[A-Z][a-z]{0,6}".prop_map(Edit::Title),
        1 => Just(Edit::Approve),
        2 => (0..TRANSITIONS.len()).prop_map(Edit::Transition),
    ]
}

/// A step: someone edits, or one node's bundle reaches another.
#[derive(Clone, Debug)]
enum Step {
    Edit(usize, Edit),
    Send(usize, usize),
}

fn steps() -> impl Strategy<Value = (usize, Vec<Step>)> {
    (2..=4usize).prop_flat_map(|nodes| {
        let step = prop_oneof![
            3 => (0..nodes, edit()).prop_map(|(n, e)| Step::Edit(n, e)),
            1 => (0..nodes, 0..nodes).prop_map(|(a, b)| Step::Send(a, b)),
        ];
        (Just(nodes), proptest::collection::vec(step, 1..40))
    })
}

const SECTIONS: [&str; 3] = ["Context", "Decision", "Consequences"];

fn apply(node: &Node, workspace: Id, doc: Id, edit: &Edit) {
    let me = node.member_id();
    node.edit(workspace, doc, |am| {
        let view = View::now(am);
        // A decided proposal's text is final: people edit it only while it is undecided.
        let text_edit = matches!(
            edit,
            Edit::Insert { .. } | Edit::Delete { .. } | Edit::Title(_)
        );
        if text_edit && proposal::is_decided(view) {
            return Ok(());
        }
        match edit {
            Edit::Insert { section, at, text } => {
                let name = SECTIONS[*section];
                let current = proposal::sections(view)
                    .into_iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, t)| t)
                    .unwrap_or_default();
                let chars: Vec<char> = current.chars().collect();
                let pos = chars.len() * *at as usize / 256;
                let updated: String = chars[..pos]
                    .iter()
                    .chain(text.chars().collect::<Vec<_>>().iter())
                    .chain(chars[pos..].iter())
                    .collect();
                let mut tx = am.transaction();
                proposal::set_section(&mut tx, name, &updated)?;
                commit(tx, "insert");
            }
            Edit::Delete { section, at, len } => {
                let name = SECTIONS[*section];
                let current = proposal::sections(view)
                    .into_iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, t)| t)
                    .unwrap_or_default();
                let chars: Vec<char> = current.chars().collect();
                let pos = chars.len() * *at as usize / 256;
                let end = (pos + *len as usize).min(chars.len());
                let updated: String = chars[..pos].iter().chain(chars[end..].iter()).collect();
                let mut tx = am.transaction();
                proposal::set_section(&mut tx, name, &updated)?;
                commit(tx, "delete");
            }
            Edit::Reply { parent, text } => {
                let comments = discussion::comments(view);
                let parent = parent.and_then(|p| {
                    comments
                        .get(p as usize % comments.len().max(1))
                        .map(|c| c.id.clone())
                });
                let mut tx = am.transaction();
                discussion::put_comment(
                    &mut tx,
                    &Id::random().hex(),
                    parent.as_deref(),
                    &me,
                    now_ms(),
                    text,
                )?;
                commit(tx, "reply");
            }
            Edit::Title(title) => {
                let mut tx = am.transaction();
                automerge::transaction::Transactable::put(
                    &mut tx,
                    automerge::ROOT,
                    "title",
                    title.as_str(),
                )?;
                commit(tx, "title");
            }
            Edit::Transition(kind) => {
                let heads = am.get_heads();
                let mut entry = discussion::Entry::new(TRANSITIONS[*kind], &me, now_ms());
                entry.prev = proposal::read(view).lifecycle.tips;
                entry.closes = Some(0);
                let mut tx = am.transaction();
                discussion::put_entry(&mut tx, &entry, &heads)?;
                commit(tx, TRANSITIONS[*kind]);
            }
            Edit::Approve => {
                let heads = am.get_heads();
                let entry = discussion::Entry::new("approve", &me, now_ms());
                let mut tx = am.transaction();
                discussion::put_entry(&mut tx, &entry, &heads)?;
                commit(tx, "approve");
            }
        }
        Ok(())
    })
    .unwrap();
}

fn send(from: &Node, to: &Node, workspace: Id, docs: &[Id]) {
    let bytes = bundle::export(from, workspace, docs).unwrap();
    bundle::merge(to, &bytes, &Limits::default()).unwrap();
}

/// Everything observable about the proposal on a node.
fn observe(node: &Node, workspace: Id, doc: Id) -> (Vec<automerge::ChangeHash>, String) {
    let am = node.load(workspace, doc).unwrap();
    let mut heads = am.get_heads();
    heads.sort();
    let p = proposal::read(View::now(&am));
    let rendered = serde_json::to_string(&(
        p.title,
        p.sections,
        p.comments,
        p.approvals.len(),
        p.lifecycle,
    ))
    .unwrap();
    (heads, rendered)
}

proptest! {
    // 64 cases by default; PROPTEST_CASES=5000 for a long run.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(64),
        ..ProptestConfig::default()
    })]

    #[test]
    fn any_edits_merged_in_any_order_converge((nodes, steps) in steps()) {
        let tmp = tempfile::tempdir().unwrap();
        let homes: Vec<Node> = (0..nodes)
            .map(|i| {
                let profile = Profile { name: format!("n{i}"), tz: "UTC".into(), hours: "09:00-17:00".into(), days: "mon-fri".into(), away: Vec::new() };
                Node::init(&tmp.path().join(format!("n{i}")), &profile).unwrap()
            })
            .collect();
        let workspace = homes[0].create_workspace("w", vec![]).unwrap();
        for home in &homes[1..] {
            let (_, record) = homes[0].workspace(None).unwrap();
            let invite = Invite::new(homes[0].key(), workspace, "w", &record.key, &record.creator, vec![], i64::MAX);
            home.join(&invite).unwrap();
        }
        let doc = Id::random();
        let new = NewProposal {
            id: doc, workspace, title: "P".into(), template: "adr".into(),
            sections: SECTIONS.iter().map(|s| (s.to_string(), "base text".to_string())).collect(),
            deciders: vec![homes[0].member_id()], asks: vec![], urgency: "normal".into(),
            author: homes[0].member_id(), at: now_ms(),
        };
        homes[0].edit(workspace, doc, |am| {
            let mut tx = am.transaction();
            proposal::create(&mut tx, &new)?;
            commit(tx, "new");
            Ok(())
        }).unwrap();
        let docs = [workspace, doc];
        // Everyone gets the workspace document and the proposal before editing.
        for _ in 0..2 {
            for a in 0..nodes {
                for b in 0..nodes {
                    if a != b {
                        send(&homes[a], &homes[b], workspace, &docs);
                    }
                }
            }
        }
        for step in &steps {
            match step {
                Step::Edit(n, edit) => apply(&homes[*n], workspace, doc, edit),
                Step::Send(a, b) if a != b => send(&homes[*a], &homes[*b], workspace, &docs),
                Step::Send(..) => {}
            }
        }
        // Final exchange: a ring twice reaches everyone.
        for _ in 0..2 {
            for a in 0..nodes {
                send(&homes[a], &homes[(a + 1) % nodes], workspace, &docs);
            }
        }
        let reference = observe(&homes[0], workspace, doc);
        for home in &homes[1..] {
            prop_assert_eq!(&observe(home, workspace, doc), &reference);
        }
    }
}
