//! The backends API's changes of a pool (add, update, remove). Changes that alter the file's
//! content write it first and apply only if that worked; the actor waits for the write
//! ([`AtomicResponse`]), so two changes never interleave and the file always matches the pools.

use std::sync::Arc;

use actix::{ActorFutureExt, AtomicResponse, Context, Handler, WrapFuture};

use super::actor::Registry;
use super::member::{Member, MemberStatus};
use super::messages::{AddBackend, PoolError, RemoveBackend, UpdateBackend};
use super::pools::PoolsView;
use super::rotation::Rotation;
use crate::backend::BackendSpec;
use crate::discovery::fill_names;
use crate::discovery::{FileEntry, FilePool};
use crate::route::RouteEntry;

/// The pool file's content: its pools and routes.
pub(super) type FileContent = (Vec<FilePool>, Vec<RouteEntry>);

impl Registry {
    /// The pool in service called `pool`.
    pub(super) fn pool(&self, pool: &str) -> Result<Arc<Rotation>, PoolError> {
        self.pools
            .load()
            .named(pool)
            .cloned()
            .ok_or_else(|| PoolError::NotFound(format!("No pool named {pool:?}")))
    }

    /// The member of `pool` called `name` that is not leaving.
    fn staying(&self, pool: &Rotation, name: &str) -> Result<Arc<Member>, PoolError> {
        let member = pool
            .members()
            .into_iter()
            .find(|m| m.backend.name == name)
            .ok_or_else(|| PoolError::NotFound(format!("No backend named {name:?}")))?;
        if member.is_leaving() {
            return Err(PoolError::NotFound(format!(
                "Backend {name:?} is leaving the pool"
            )));
        }
        Ok(member)
    }

    /// Refuses to change what the pool file says about `member` when DNS found it: that is its
    /// entry's (the file's) business.
    fn not_found_by_dns(member: &Member, change: &str) -> Result<(), PoolError> {
        match member.backend.address {
            None => Ok(()),
            Some(_) => Err(PoolError::Duplicate(format!(
                "Backend {:?} was found by DNS for {}: {change} its entry in the pool file instead (draining it works)",
                member.backend.name, member.backend.url
            ))),
        }
    }

    /// The pool file's content for `view`, with `edit` applied to the entries of pool `pool`.
    pub(super) fn file_content(
        view: &PoolsView,
        pool: &str,
        edit: impl FnOnce(&mut Vec<FileEntry>),
    ) -> FileContent {
        let mut edit = Some(edit);
        let pools = view
            .pools()
            .iter()
            .map(|p| {
                let mut entries = file_entries(p);
                if p.name() == pool {
                    if let Some(edit) = edit.take() {
                        edit(&mut entries);
                    }
                }
                FilePool {
                    name: p.name().to_owned(),
                    settings: p.info().written.clone(),
                    entries,
                }
            })
            .collect();
        let routes = view
            .routes()
            .routes()
            .iter()
            .map(|r| r.spec.entry.clone())
            .collect();
        (pools, routes)
    }

    /// Writes `content` to the pool file (if there is one, and something to write) off the
    /// actor's thread; the actor waits for it (see [`AtomicResponse`]), then `apply` runs if
    /// the write succeeded.
    pub(super) fn write_then<T: 'static>(
        &self,
        content: Option<FileContent>,
        apply: impl FnOnce(&mut Self) -> Result<T, PoolError> + 'static,
    ) -> AtomicResponse<Self, Result<T, PoolError>> {
        let file = self.options.file.clone();
        let write = async move {
            let (Some(file), Some((pools, routes))) = (file, content) else {
                return Ok(());
            };
            let shown = file.to_string();
            actix_rt::task::spawn_blocking(move || file.write(&pools, &routes))
                .await
                .map_err(|err| err.to_string())
                .and_then(|written| written.map_err(|err| err.to_string()))
                .map_err(|err| PoolError::Storage(format!("cannot write {shown}: {err}")))
        };
        AtomicResponse::new(Box::pin(write.into_actor(self).map(
            |written, registry, _| {
                written.inspect_err(|err| log::error!("pool change refused: {err}"))?;
                let applied = apply(registry)?;
                registry.tell_pool_file(true);
                Ok(applied)
            },
        )))
    }
}

/// The pool file's entries for `pool`: its members (those not leaving, and not found by DNS)
/// in order, and its DNS entries where the file had them.
pub(super) fn file_entries(pool: &Rotation) -> Vec<FileEntry> {
    let mut entries: Vec<FileEntry> = pool
        .members()
        .iter()
        .filter(|m| !m.is_leaving() && m.backend.address.is_none())
        .map(|m| FileEntry {
            url: m.backend.url.clone(),
            weight: m.weight(),
            name: m.backend.name.clone(),
            max_connections: m.own_max_connections(),
            dns: false,
        })
        .collect();
    for entry in &pool.info().dns {
        let at = entry.position.min(entries.len());
        let written = FileEntry {
            url: entry.spec.url.clone(),
            weight: entry.spec.weight,
            name: entry.name.clone(),
            max_connections: entry.spec.max_connections,
            dns: true,
        };
        entries.insert(at, written);
    }
    entries
}

/// An immediate refusal, in the shape of the handlers that write the file.
pub(super) fn refuse<T: 'static>(err: PoolError) -> AtomicResponse<Registry, Result<T, PoolError>> {
    AtomicResponse::new(Box::pin(actix::fut::ready(Err(err))))
}

/// The name a new backend `spec` gets in `pool`: its own, or `backend-N`; a URL or name already
/// in the pool (leaving members and DNS entries included) is a duplicate.
fn name_for_new(pool: &Rotation, spec: &BackendSpec) -> Result<String, PoolError> {
    let dns = &pool.info().dns;
    if let Some(entry) = dns
        .iter()
        .find(|e| e.spec.authority == spec.authority || spec.name.as_ref() == Some(&e.name))
    {
        return Err(PoolError::Duplicate(format!(
            "{} or its name is already in the pool as the DNS entry {:?}",
            spec.url, entry.name
        )));
    }
    let members = pool.members();
    if let Some(twin) = members
        .iter()
        .find(|m| m.backend.authority == spec.authority)
    {
        let how = if twin.is_leaving() {
            " (still draining out)"
        } else {
            ""
        };
        return Err(PoolError::Duplicate(format!(
            "{} is already in the pool as {:?}{how}",
            spec.url, twin.backend.name
        )));
    }
    if let Some(name) = &spec.name {
        if members.iter().any(|m| &m.backend.name == name) {
            return Err(PoolError::Duplicate(format!(
                "The name {name:?} is already taken"
            )));
        }
    }
    let mut fixed: Vec<Option<String>> = members
        .iter()
        .filter(|m| !m.is_leaving() && m.backend.address.is_none())
        .map(|m| Some(m.backend.name.clone()))
        .chain(dns.iter().map(|e| Some(e.name.clone())))
        .collect();
    fixed.push(spec.name.clone());
    let reserved: Vec<String> = members
        .iter()
        .filter(|m| m.is_leaving())
        .map(|m| m.backend.name.clone())
        .collect();
    fill_names(&fixed, &reserved)
        .ok()
        .and_then(|mut names| names.pop())
        .ok_or_else(|| PoolError::Duplicate("The name is already taken".into()))
}

impl Handler<AddBackend> for Registry {
    type Result = AtomicResponse<Self, Result<MemberStatus, PoolError>>;

    fn handle(&mut self, msg: AddBackend, _: &mut Context<Self>) -> Self::Result {
        let pool = match self.pool(&msg.pool) {
            Ok(pool) => pool,
            Err(err) => return refuse(err),
        };
        let spec = msg.spec;
        let name = match name_for_new(&pool, &spec) {
            Ok(name) => name,
            Err(err) => return refuse(err),
        };
        let entry = FileEntry {
            url: spec.url.clone(),
            weight: spec.weight,
            name: name.clone(),
            max_connections: spec.max_connections,
            dns: false,
        };
        let content = Self::file_content(&self.pools.load(), pool.name(), |e| e.push(entry));
        self.write_then(Some(content), move |registry| {
            let member = registry.new_member(&pool.info().name, &spec, name, false);
            let mut members = pool.members();
            let first_leaving = members.iter().position(|m| m.is_leaving());
            members.insert(first_leaving.unwrap_or(members.len()), Arc::clone(&member));
            pool.publish(members);
            registry.announce_added(&member, "by the API");
            Ok(member.status())
        })
    }
}

impl Handler<UpdateBackend> for Registry {
    type Result = AtomicResponse<Self, Result<MemberStatus, PoolError>>;

    fn handle(&mut self, msg: UpdateBackend, _: &mut Context<Self>) -> Self::Result {
        let found = self
            .pool(&msg.pool)
            .and_then(|pool| Ok((self.staying(&pool, &msg.name)?, pool)));
        let (member, pool) = match found {
            Ok(found) => found,
            Err(err) => return refuse(err),
        };
        let weight = msg.weight.filter(|w| *w != member.weight());
        if let Err(err) = weight.map_or(Ok(()), |_| Self::not_found_by_dns(&member, "weigh")) {
            return refuse(err);
        }
        // Only a new weight changes the file; draining is run-time state.
        let content = weight.map(|weight| {
            Self::file_content(&self.pools.load(), pool.name(), |entries| {
                for entry in entries.iter_mut().filter(|e| e.name == msg.name) {
                    entry.weight = weight;
                }
            })
        });
        self.write_then(content, move |registry| {
            if let Some(weight) = weight {
                member.set_weight(weight);
                registry.announce_weight(&member);
            }
            if let Some(draining) = msg.draining {
                registry.set_draining(&member, draining);
            }
            pool.rebuild();
            Ok(member.status())
        })
    }
}

impl Handler<RemoveBackend> for Registry {
    type Result = AtomicResponse<Self, Result<MemberStatus, PoolError>>;

    fn handle(&mut self, msg: RemoveBackend, _: &mut Context<Self>) -> Self::Result {
        let found = self
            .pool(&msg.pool)
            .and_then(|pool| Ok((self.staying(&pool, &msg.name)?, pool)));
        let (member, pool) = match found {
            Ok(found) => found,
            Err(err) => return refuse(err),
        };
        if let Err(err) = Self::not_found_by_dns(&member, "remove") {
            return refuse(err);
        }
        let content = Self::file_content(&self.pools.load(), pool.name(), |entries| {
            entries.retain(|e| e.name != msg.name);
        });
        self.write_then(Some(content), move |registry| {
            registry.start_leaving(&member, "removed by the API");
            let mut members = pool.members();
            members.retain(|m| m.id() != member.id());
            members.push(Arc::clone(&member));
            pool.publish(members);
            Ok(member.status())
        })
    }
}
