//! The application layer: what a person does in a workspace (write, ask, decide, reply,
//! settle a conflict, catch up), as functions over a [`Context`] that return structured
//! results. The command line parses arguments, calls these and prints what they return;
//! a second face (a web UI) calls the same functions, so both show the same semantics.
//!
//! Everything here that decides something is checked again by the document rules on
//! every replica (`rules`); the checks here exist to refuse early with a message that
//! says what to do, before anything is written.

pub mod comment;
pub mod conflicts;
pub mod decision;
pub mod device;
pub mod draft;
pub mod inbox;
pub mod invite;
pub mod records;
pub mod request;
pub mod sync;
pub mod team;
pub mod updates;

use anyhow::Result;
use jiff::tz::TimeZone;

use crate::id::Id;
use crate::index::DocSummary;
use crate::node::Node;
use crate::store::WorkspaceRecord;

/// A person acting in one workspace on this node.
pub struct Context {
    /// The node.
    pub node: Node,
    /// The workspace.
    pub workspace: Id,
    /// What the node knows of it (members, norms, relays).
    pub record: WorkspaceRecord,
    /// The person's member id (their device key, hex).
    pub me: String,
    /// The zone times are shown in (the person's, or the one they asked for).
    pub tz: TimeZone,
}

impl Context {
    /// A member's display name.
    pub fn name(&self, id: &str) -> String {
        self.record.state.name_of(id)
    }

    /// A time for people, in the reader's zone: `Tue 2026-11-24 09:00 -05`.
    pub fn time(&self, ms: i64) -> String {
        crate::norms::show_time(ms, &self.tz)
    }

    /// The document a unique id prefix names in this workspace.
    pub fn document(&self, prefix: &str) -> Result<(Id, DocSummary)> {
        self.node.resolve(self.workspace, prefix)
    }
}

#[cfg(test)]
mod tests {
    //! The index summaries a node keeps up to date from each batch of changes alone
    //! (`node::reindex`) against deriving them from the whole document, over random
    //! histories of two people writing offline and trading bundles.

    use super::*;
    use crate::doc::View;
    use crate::node::tests::{invite, profile};
    use proptest::prelude::*;

    #[derive(Clone, Debug)]
    enum Action {
        Reply { on_proposal: bool, to_first: bool },
        Ask { on_proposal: bool },
        Answer { on_proposal: bool, ack: bool },
        React { on_proposal: bool },
        EditComment { on_proposal: bool, delete: bool },
        EditSection,
        Approve,
        Concern { blocking: bool },
        Open,
        Sync,
    }

    fn action() -> impl Strategy<Value = (usize, Action)> {
        let b = any::<bool>;
        let action = prop_oneof![
            5 => (b(), b()).prop_map(|(on_proposal, to_first)| Action::Reply { on_proposal, to_first }),
            2 => b().prop_map(|on_proposal| Action::Ask { on_proposal }),
            2 => (b(), b()).prop_map(|(on_proposal, ack)| Action::Answer { on_proposal, ack }),
            2 => b().prop_map(|on_proposal| Action::React { on_proposal }),
            1 => (b(), b()).prop_map(|(on_proposal, delete)| Action::EditComment { on_proposal, delete }),
            2 => Just(Action::EditSection),
            1 => Just(Action::Approve),
            1 => b().prop_map(|blocking| Action::Concern { blocking }),
            1 => Just(Action::Open),
            3 => Just(Action::Sync),
        ];
        (0..2usize, action)
    }

    fn context(node: Node, workspace: Id) -> Context {
        let (_, record) = node.workspace(Some(&workspace.hex())).unwrap();
        let me = node.member_id();
        Context {
            node,
            workspace,
            record,
            me,
            tz: TimeZone::UTC,
        }
    }

    /// Every stored summary of the node against the one derived from its whole document.
    fn check(cx: &Context) -> std::result::Result<(), TestCaseError> {
        for (id, stored) in cx.node.summaries(cx.workspace).unwrap() {
            let doc = cx.node.load(cx.workspace, id).unwrap();
            let whole = crate::index::summarize(
                View::now(&doc),
                stored.kind,
                &cx.workspace.0,
                stored.updated,
                &stored.last_author,
                stored.changes,
            );
            prop_assert_eq!(&stored, &whole, "document {}", id.short());
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        #[test]
        fn summaries_kept_from_each_batch_equal_those_derived_from_the_whole_document(
            actions in proptest::collection::vec(action(), 1..40)
        ) {
            let tmp = tempfile::tempdir().unwrap();
            let ana = Node::init(&tmp.path().join("ana"), &profile("Ana")).unwrap();
            let workspace = ana.create_workspace("w", vec![]).unwrap();
            let bo = Node::init(&tmp.path().join("bo"), &profile("Bo")).unwrap();
            bo.join(&invite(&ana, workspace)).unwrap();
            let trade = |from: &Node, to: &Node| {
                let docs: Vec<Id> = std::iter::once(workspace)
                    .chain(from.summaries(workspace).unwrap().into_iter().map(|(id, _)| id))
                    .collect();
                let bundle = crate::bundle::export(from, workspace, &docs).unwrap();
                crate::bundle::merge(to, &bundle, &crate::ingest::Limits::default()).unwrap();
            };
            trade(&bo, &ana);
            let author = context(ana, workspace);
            let proposal = draft::new_proposal(&author, draft::ProposalDraft {
                title: "Keep envelopes on disk".into(),
                template: "rfc".into(),
                body: None,
                sections: vec![("Summary".into(), "The relay keeps envelopes.".into())],
                new_sections: vec![],
                asks: vec![],
                deciders: vec!["Ana".into(), "Bo".into()],
                urgency: None,
            }).unwrap().id;
            let bo_name = vec!["Bo".to_string()];
            let thread = draft::new_thread(&author, "Where?", "Disk or memory?", &bo_name, None).unwrap().id;
            trade(&author.node, &bo);
            let people = [context(author.node, workspace), context(bo, workspace)];
            for (who, action) in actions {
                let cx = &people[who];
                let other = &people[1 - who];
                let doc = |on_proposal: bool| if on_proposal { proposal } else { thread };
                let first_comment = |id: Id| {
                    let doc = cx.node.load(workspace, id).unwrap();
                    crate::discussion::comments(View::now(&doc)).into_iter().next().map(|c| c.id)
                };
                let mine = |id: Id| {
                    let doc = cx.node.load(workspace, id).unwrap();
                    crate::discussion::comments(View::now(&doc)).into_iter().find(|c| c.by == cx.me).map(|c| c.id)
                };
                // Refusals (asking twice, approving a draft) are part of the history too.
                let _ = match action {
                    Action::Reply { on_proposal, to_first } => {
                        let id = doc(on_proposal);
                        let target = match first_comment(id).filter(|_| to_first) {
                            Some(c) => format!("{}:{}", id.hex(), c),
                            None => id.hex(),
                        };
                        comment::reply(cx, &target, "a reply").map(|_| ())
                    }
                    Action::Ask { on_proposal } => {
                        request::ask(cx, doc(on_proposal), &[cx.name(&other.me)], None).map(|_| ())
                    }
                    Action::Answer { on_proposal, ack } => {
                        request::answer(cx, doc(on_proposal), ack, Some("later".into())).map(|_| ())
                    }
                    Action::React { on_proposal } => match first_comment(doc(on_proposal)) {
                        Some(c) => comment::react(cx, &format!("{}:{c}", doc(on_proposal).hex()), "+1", false).map(|_| ()),
                        None => Ok(()),
                    },
                    Action::EditComment { on_proposal, delete } => match mine(doc(on_proposal)) {
                        Some(c) if delete => comment::delete(cx, &format!("{}:{c}", doc(on_proposal).hex())).map(|_| ()),
                        Some(c) => comment::edit(cx, &format!("{}:{c}", doc(on_proposal).hex()), "edited").map(|_| ()),
                        None => Ok(()),
                    },
                    Action::EditSection => draft::edit_proposal(cx, proposal, vec![draft::TextEdit::Section {
                        name: "Summary".into(),
                        text: format!("The relay keeps envelopes, said {}.", cx.name(&cx.me)),
                    }]).map(|_| ()),
                    Action::Approve => decision::approve(cx, proposal, None).map(|_| ()),
                    Action::Concern { blocking } => decision::concern(cx, proposal, "too slow", blocking).map(|_| ()),
                    Action::Open => decision::open(cx, proposal, "2w", false).map(|_| ()),
                    Action::Sync => {
                        trade(&cx.node, &other.node);
                        Ok(())
                    }
                };
                check(cx)?;
                check(other)?;
            }
        }
    }
}
