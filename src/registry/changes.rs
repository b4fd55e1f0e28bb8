//! The changes of the pool the [`Registry`] makes for the backends API and for reloads alike:
//! a new member, a member on its way out, a drain by hand, a new weight, each logged and
//! published once. The API's handlers are in [`super::api`], reloads in [`super::reload`].

use std::sync::Arc;
use std::time::Instant;

use super::actor::Registry;
use super::member::Member;
use crate::backend::{Backend, BackendSpec};
use crate::events::LbEvent;

impl Registry {
    /// A new member of `pool` for `spec`: waiting for its first good probe when it joins a
    /// running pool, in rotation at once (like the pools at start) when its pool is new, so
    /// that a route moved to a new pool loses no request.
    pub(super) fn new_member(
        &mut self,
        pool: &Arc<str>,
        spec: &BackendSpec,
        name: String,
        new_pool: bool,
    ) -> Arc<Member> {
        let id = self.next_id;
        self.next_id += 1;
        let member = Member::new(
            Backend::from_spec(id, spec, name, pool),
            spec.weight,
            new_pool,
        );
        Arc::new(member.with_own_limit(spec.max_connections))
    }

    /// Starts `member` on its way out: drains now, leaves when idle or after the grace.
    pub(super) fn start_leaving(&mut self, member: &Member, why: &str) {
        member.mark_leaving();
        self.leaving
            .insert(member.id(), Instant::now() + self.options.drain_grace);
        log::info!(
            "backend {} ({}) drains out of the pool ({why}); {} requests in flight",
            member.backend.name,
            member.backend.url,
            member.in_flight()
        );
        self.events.publish(LbEvent::BackendDraining {
            pool: member.backend.pool.to_string(),
            backend: member.backend.name.clone(),
            url: member.backend.url.clone(),
            draining: true,
        });
    }

    pub(super) fn announce_added(&self, member: &Member, why: &str) {
        let joins = if member.is_joining() {
            "it joins on its first good probe"
        } else {
            "in rotation with its new pool"
        };
        log::info!(
            "backend {} ({}) added to pool {} with weight {} ({why}); {joins}",
            member.backend.name,
            member.backend.url,
            member.backend.pool,
            member.weight()
        );
        self.events.publish(LbEvent::BackendAdded {
            pool: member.backend.pool.to_string(),
            backend: member.backend.name.clone(),
            url: member.backend.url.clone(),
            weight: member.weight(),
        });
        self.tell_follower(vec![Arc::clone(&member.backend)], Vec::new());
    }

    /// Drains `member` by hand, or stops draining it; says so when that is a change.
    pub(super) fn set_draining(&self, member: &Member, draining: bool) {
        if !member.set_draining(draining) {
            return;
        }
        let what = if draining {
            "drains: no new requests"
        } else {
            "takes requests again"
        };
        log::info!(
            "backend {} ({}) {what} (by the API)",
            member.backend.name,
            member.backend.url
        );
        self.events.publish(LbEvent::BackendDraining {
            pool: member.backend.pool.to_string(),
            backend: member.backend.name.clone(),
            url: member.backend.url.clone(),
            draining,
        });
    }

    pub(super) fn announce_weight(&self, member: &Member) {
        log::info!(
            "backend {} ({}) now has weight {}",
            member.backend.name,
            member.backend.url,
            member.weight()
        );
        self.events.publish(LbEvent::BackendWeight {
            pool: member.backend.pool.to_string(),
            backend: member.backend.name.clone(),
            url: member.backend.url.clone(),
            weight: member.weight(),
        });
    }
}
