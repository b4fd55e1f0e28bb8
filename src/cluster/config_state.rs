//! What this instance knows of the cluster's configuration (`cluster.share_config`): the pool
//! file's text as the registry last told it, whether it changed here, and the cluster's version
//! it runs. Pure state; [`super::config`] talks to Redis.

use std::sync::Mutex;

/// This instance's side of the shared configuration.
#[derive(Debug, Default)]
pub struct SharedConfig {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// The pool file as the registry writes it, latest; `None` until the registry said.
    local: Option<String>,
    /// `local` was changed here and is not the cluster's yet.
    changed_here: bool,
    /// The cluster's version this instance runs (0: none yet), and its text.
    version: u64,
    shared: Option<String>,
}

/// What one round of the agent does.
#[derive(Debug, PartialEq)]
pub enum Step {
    Publish(String),
    /// Ask Redis whether it has a version newer than `running`; with none at all, publish
    /// `local`.
    Look {
        running: u64,
        local: String,
    },
}

impl SharedConfig {
    /// The registry's news: the pool file's text now, and whether it changed here.
    pub fn tell(&self, text: String, changed_here: bool) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        if changed_here && state.shared.as_ref() != Some(&text) {
            state.changed_here = true;
        }
        state.local = Some(text);
    }

    pub fn version(&self) -> Option<u64> {
        let version = self.state.lock().ok()?.version;
        (version > 0).then_some(version)
    }

    /// A change made here goes out; else look for a newer version. Nothing before the
    /// registry has told its text.
    pub fn next_step(&self) -> Option<Step> {
        let state = self.state.lock().ok()?;
        let local = state.local.clone()?;
        Some(if state.changed_here {
            Step::Publish(local)
        } else {
            Step::Look {
                running: state.version,
                local,
            }
        })
    }

    /// `text` is the cluster's `version` now (published here, or taken): answers whether this
    /// instance must apply it.
    pub fn settle(&self, version: u64, text: String, published: bool) -> bool {
        let Ok(mut state) = self.state.lock() else {
            return false;
        };
        if published {
            // A change made after the one published stays to publish.
            state.changed_here = state.local.as_ref() != Some(&text);
        } else {
            state.changed_here = false;
        }
        state.version = version;
        let apply = !published && state.local.as_ref() != Some(&text);
        state.shared = Some(text);
        apply
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Nothing happens before the registry told its text; a change made here is published,
    /// one applied from the cluster is not published back, and a change made after a publish
    /// stays to publish.
    #[test]
    fn changes_made_here_go_out_and_the_clusters_come_in() {
        let shared = SharedConfig::default();
        assert_eq!(shared.next_step(), None);
        shared.tell("a".into(), false);
        let look = |running: u64, local: &str| {
            Some(Step::Look {
                running,
                local: local.to_owned(),
            })
        };
        assert_eq!(shared.next_step(), look(0, "a"));
        assert!(
            shared.settle(3, "b".into(), false),
            "another text: apply it"
        );
        shared.tell("b".into(), false);
        assert_eq!(shared.next_step(), look(3, "b"));
        shared.tell("b".into(), true);
        assert_eq!(
            shared.next_step(),
            look(3, "b"),
            "the same text: nothing new"
        );
        shared.tell("c".into(), true);
        assert_eq!(shared.next_step(), Some(Step::Publish("c".into())));
        shared.tell("d".into(), true);
        assert!(!shared.settle(4, "c".into(), true));
        assert_eq!(shared.next_step(), Some(Step::Publish("d".into())));
        assert!(!shared.settle(5, "d".into(), false), "already runs it");
        assert_eq!(shared.version(), Some(5));
    }
}
