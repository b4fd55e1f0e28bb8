//! What a reload changes: the pool file's entries matched against the running members by
//! `host:port`. Matched members are kept (health, counters and in-flight requests with them;
//! a new weight applies at once); the others leave by draining; new entries join. Names stay
//! with their URL; new unnamed entries take `backend-N` by position unless a running or leaving
//! member has it. A `"discovery": "dns"` entry is planned as one thing (its members follow
//! it) and matches only such an entry. Plain and synchronous, so every rule is tested without a
//! pool.

use crate::backend::{BackendId, BackendSpec};
use crate::discovery::fill_names;

/// A member of the running pool as the plan sees it.
#[derive(Debug, Clone)]
pub struct Running {
    pub id: BackendId,
    /// `host:port`, the identity of a URL.
    pub authority: String,
    pub name: String,
    pub weight: u32,
    /// Its own `max_connections`, as written.
    pub max_connections: Option<u32>,
    /// Already on its way out (it comes back if the file lists it again).
    pub leaving: bool,
    /// A `"discovery": "dns"` entry (its id is the entry's): it matches only such an entry.
    pub dns: bool,
}

/// One entry of the new pool, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Planned {
    /// A running member stays, with this weight and own limit.
    Keep {
        id: BackendId,
        weight: u32,
        max_connections: Option<u32>,
    },
    /// A new member.
    Add { spec: BackendSpec, name: String },
}

/// The whole change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub entries: Vec<Planned>,
    /// Running members the file no longer lists (they drain, then leave).
    pub removed: Vec<BackendId>,
    /// Kept members whose weight or own limit changes, or that were leaving and come back.
    pub changed: Vec<BackendId>,
}

/// Matches `specs` (the new file) against `running`; `Err` is `(key, problem)` and means nothing
/// may change.
pub fn plan(running: &[Running], specs: &[BackendSpec]) -> Result<Plan, (String, String)> {
    let matched: Vec<Option<&Running>> = specs
        .iter()
        .map(|spec| {
            running
                .iter()
                .find(|r| r.authority == spec.authority.as_str() && r.dns == spec.dns)
        })
        .collect();
    check_renames(specs, &matched)?;
    let names = names(running, specs, &matched)?;
    let mut plan = Plan {
        entries: Vec::with_capacity(specs.len()),
        removed: Vec::new(),
        changed: Vec::new(),
    };
    for ((spec, found), name) in specs.iter().zip(&matched).zip(names) {
        plan.entries.push(match found {
            Some(running) => {
                if running.weight != spec.weight
                    || running.max_connections != spec.max_connections
                    || running.leaving
                {
                    plan.changed.push(running.id);
                }
                Planned::Keep {
                    id: running.id,
                    weight: spec.weight,
                    max_connections: spec.max_connections,
                }
            }
            None => Planned::Add {
                spec: spec.clone(),
                name,
            },
        });
    }
    plan.removed = running
        .iter()
        .filter(|r| !r.leaving && !matched.iter().flatten().any(|m| m.id == r.id))
        .map(|r| r.id)
        .collect();
    Ok(plan)
}

/// A name stays with its URL: an entry matched to a running member may not rename it.
fn check_renames(
    specs: &[BackendSpec],
    matched: &[Option<&Running>],
) -> Result<(), (String, String)> {
    for (index, (spec, found)) in specs.iter().zip(matched).enumerate() {
        if let (Some(name), Some(running)) = (&spec.name, found) {
            if *name != running.name {
                let problem = format!(
                    "{} runs as {:?}: a name stays with its URL (remove the entry and add it again to rename it)",
                    spec.url, running.name
                );
                return Err((format!("backends[{index}].name"), problem));
            }
        }
    }
    Ok(())
}

/// Every entry's name: a matched member's own, else the entry's, else `backend-N`; never the
/// name of a member that is leaving.
fn names(
    running: &[Running],
    specs: &[BackendSpec],
    matched: &[Option<&Running>],
) -> Result<Vec<String>, (String, String)> {
    let fixed: Vec<Option<String>> = specs
        .iter()
        .zip(matched)
        .map(|(spec, found)| found.map(|r| r.name.clone()).or_else(|| spec.name.clone()))
        .collect();
    let leaving_names: Vec<String> = running
        .iter()
        .filter(|r| !matched.iter().flatten().any(|m| m.id == r.id))
        .map(|r| r.name.clone())
        .collect();
    let taken_by_leaving = fixed.iter().enumerate().find_map(|(i, n)| {
        n.as_ref()
            .filter(|n| matched[i].is_none() && leaving_names.contains(n))
            .map(|n| (i, n))
    });
    if let Some((index, name)) = taken_by_leaving {
        let problem = format!("the name {name:?} belongs to a backend that is leaving the pool");
        return Err((format!("backends[{index}].name"), problem));
    }
    fill_names(&fixed, &leaving_names).map_err(|(first, second)| {
        let problem = format!(
            "the name {:?} is already used by backends[{first}]",
            fixed[second].as_deref().unwrap_or_default()
        );
        (format!("backends[{second}].name"), problem)
    })
}

impl Plan {
    /// Whether applying it would change nothing.
    pub fn is_empty(&self) -> bool {
        self.removed.is_empty()
            && self.changed.is_empty()
            && self
                .entries
                .iter()
                .all(|e| matches!(e, Planned::Keep { .. }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn running(list: &[(&str, &str, u32)]) -> Vec<Running> {
        list.iter()
            .enumerate()
            .map(|(id, (authority, name, weight))| Running {
                id,
                authority: (*authority).to_owned(),
                name: (*name).to_owned(),
                weight: *weight,
                max_connections: None,
                leaving: false,
                dns: false,
            })
            .collect()
    }

    fn specs(list: &[(&str, u64, Option<&str>)]) -> Vec<BackendSpec> {
        list.iter()
            .map(|(url, weight, name)| {
                BackendSpec::parse(url, Some(*weight), *name).expect("valid")
            })
            .collect()
    }

    /// Kept URLs keep their id and name; a new weight is a change; a missing URL is removed;
    /// a new URL gets the default name of its position unless a leaving backend has it.
    #[test]
    fn keeps_adds_removes_and_reweights() {
        let now = running(&[
            ("a:1", "backend-1", 1),
            ("b:1", "backend-2", 1),
            ("c:1", "x", 1),
        ]);
        let plan = plan(
            &now,
            &specs(&[
                ("http://a:1", 3, None),
                ("http://d:1", 1, None),
                ("http://c:1", 1, None),
            ]),
        )
        .expect("valid");
        assert_eq!(plan.removed, [1]);
        assert_eq!(plan.changed, [0]);
        assert_eq!(
            plan.entries[0],
            Planned::Keep {
                id: 0,
                weight: 3,
                max_connections: None
            }
        );
        let Planned::Add { name, .. } = &plan.entries[1] else {
            panic!("d is new");
        };
        assert_eq!(name, "backend-3", "backend-2 still drains out");
        assert_eq!(
            plan.entries[2],
            Planned::Keep {
                id: 2,
                weight: 1,
                max_connections: None
            }
        );
        assert!(!plan.is_empty());
    }

    /// The same file again is no change.
    #[test]
    fn the_same_pool_is_an_empty_plan() {
        let now = running(&[("a:1", "backend-1", 1), ("b:1", "big", 2)]);
        let same = specs(&[("http://a:1", 1, None), ("http://b:1", 2, Some("big"))]);
        assert!(plan(&now, &same).expect("valid").is_empty());
    }

    /// Renaming a running URL, reusing a leaving name, or two entries with one name: refused
    /// with the entry's key.
    #[test]
    fn refuses_renames_and_clashing_names() {
        let now = running(&[("a:1", "backend-1", 1), ("b:1", "backend-2", 1)]);
        let rename = plan(&now, &specs(&[("http://a:1", 1, Some("other"))]));
        assert_eq!(rename.expect_err("rename").0, "backends[0].name");
        let reuse = plan(
            &now,
            &specs(&[
                ("http://a:1", 1, None),
                ("http://z:1", 1, Some("backend-2")),
            ]),
        );
        assert!(reuse.expect_err("leaving name").1.contains("leaving"));
        let clash = plan(
            &now,
            &specs(&[
                ("http://a:1", 1, None),
                ("http://z:1", 1, Some("backend-1")),
            ]),
        );
        assert_eq!(clash.expect_err("clash").0, "backends[1].name");
    }

    /// A URL that becomes a DNS entry is a new entry (and the old backend leaves), keeping
    /// nothing of the backend it was.
    #[test]
    fn a_url_turned_dns_entry_is_new() {
        let now = running(&[("a:1", "backend-1", 1)]);
        let mut turned = specs(&[("http://a:1", 1, None)]);
        turned[0].dns = true;
        let plan = plan(&now, &turned).expect("ok");
        assert_eq!(plan.removed, [0]);
        let Planned::Add { spec, name } = &plan.entries[0] else {
            panic!("a DNS entry is new");
        };
        assert!(spec.dns);
        assert_eq!(name, "backend-2", "backend-1 still drains out");
    }

    /// A leaving backend listed again comes back (as a change), keeping its name.
    #[test]
    fn a_leaving_backend_listed_again_stays() {
        let mut now = running(&[("a:1", "backend-1", 1), ("b:1", "backend-2", 1)]);
        now[1].leaving = true;
        let plan = plan(
            &now,
            &specs(&[("http://a:1", 1, None), ("http://b:1", 1, None)]),
        )
        .expect("ok");
        assert_eq!(plan.changed, [1]);
        assert!(plan.removed.is_empty());
    }
}
