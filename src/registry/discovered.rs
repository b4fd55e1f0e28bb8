//! The members of `"discovery": "dns"` entries: each address the entry's host resolves to is a
//! member `{entry}@{ip}`. A new address joins on its first good probe, a vanished one drains
//! out (and stays if it comes back before it left); a failed or empty lookup changes nothing,
//! so the last good set keeps serving, and is logged and announced once until lookups work
//! again. Reloads keep an entry (and its members) by `host:port` like any other entry.

use std::net::SocketAddr;
use std::sync::Arc;

use actix::{Context, Handler};

use super::actor::Registry;
use super::member::Member;
use super::messages::Resolved;
use super::rotation::Rotation;
use crate::backend::{Backend, BackendSpec};
use crate::discovery::DnsEntry;
use crate::events::LbEvent;

/// A pool's members after a reload's plan, the new ones among them, and its DNS entries.
#[derive(Default)]
pub(super) struct Applied {
    pub(super) members: Vec<Arc<Member>>,
    pub(super) added: Vec<Arc<Member>>,
    pub(super) dns: Vec<DnsEntry>,
}

/// The members of `members` that DNS found for the entry `spec` (leaving ones included).
pub(super) fn entry_members<'a>(
    members: &'a [Arc<Member>],
    spec: &'a BackendSpec,
) -> impl Iterator<Item = &'a Arc<Member>> + 'a {
    members
        .iter()
        .filter(move |m| m.backend.address.is_some() && m.backend.authority == spec.authority)
}

impl Registry {
    /// A running entry the new file keeps at `position` with `(weight, max_connections)`: its
    /// members stay (put in `applied`) and take them.
    pub(super) fn keep_entry(
        &mut self,
        running: &DnsEntry,
        position: usize,
        (weight, max_connections): (u32, Option<u32>),
        current: &[Arc<Member>],
        applied: &mut Applied,
    ) -> DnsEntry {
        let mut entry = running.clone();
        entry.spec.weight = weight;
        entry.spec.max_connections = max_connections;
        entry.position = position;
        for member in entry_members(current, &running.spec).filter(|m| !m.is_leaving()) {
            self.keep(member, weight, max_connections);
            applied.members.push(Arc::clone(member));
        }
        entry
    }

    /// A new entry: numbered from the backends' sequence; its members come with its first
    /// lookup.
    pub(super) fn new_entry(
        &mut self,
        spec: &BackendSpec,
        name: &str,
        position: usize,
    ) -> DnsEntry {
        self.next_id += 1;
        DnsEntry {
            id: self.next_id - 1,
            name: name.to_owned(),
            spec: spec.clone(),
            position,
        }
    }

    /// A lookup failed or found nothing: the members stay; said once until one works again.
    fn dns_failed(&mut self, pool: &Rotation, entry: &DnsEntry, problem: String) {
        if !self.dns_failing.insert(entry.id) {
            log::debug!("DNS for backend {} still fails: {problem}", entry.name);
            return;
        }
        let members = pool.members();
        let addresses = addresses_of(&members, &entry.spec);
        log::warn!(
            "DNS for backend {} of pool {} ({}): {problem}; its members at {addresses:?} stay",
            entry.name,
            pool.name(),
            entry.spec.url
        );
        self.announce_dns(pool, entry, addresses, Some(problem));
    }

    /// A lookup found `found`: members for new addresses, those of vanished ones drain out.
    fn dns_answered(&mut self, pool: &Rotation, entry: &DnsEntry, found: &[SocketAddr]) {
        let recovered = self.dns_failing.remove(&entry.id);
        let members = pool.members();
        let known: Vec<Arc<Member>> = entry_members(&members, &entry.spec).cloned().collect();
        let mut changed = false;
        for member in &known {
            let wanted = member.backend.address.is_some_and(|a| found.contains(&a));
            if wanted && member.is_leaving() {
                self.keep(member, entry.spec.weight, entry.spec.max_connections);
                changed = true;
            } else if !wanted && !member.is_leaving() {
                let why = format!("its address left DNS for {}", entry.spec.authority.host());
                self.start_leaving(member, &why);
                changed = true;
            }
        }
        let added: Vec<Arc<Member>> = found
            .iter()
            .filter(|a| !known.iter().any(|m| m.backend.address == Some(**a)))
            .map(|address| self.found_member(pool, entry, *address))
            .collect();
        if !changed && added.is_empty() {
            if recovered {
                log::info!("DNS for backend {} answers again", entry.name);
                self.announce_dns(pool, entry, addresses_of(&members, &entry.spec), None);
            }
            return;
        }
        let (staying, leaving): (Vec<_>, Vec<_>) =
            members.into_iter().partition(|m| !m.is_leaving());
        pool.publish(
            staying
                .into_iter()
                .chain(added.iter().cloned())
                .chain(leaving)
                .collect(),
        );
        for member in &added {
            self.announce_added(member, "found by DNS");
        }
        let addresses: Vec<String> = found.iter().map(ToString::to_string).collect();
        log::info!(
            "DNS for backend {} of pool {} ({}): members at {addresses:?}",
            entry.name,
            pool.name(),
            entry.spec.url
        );
        self.announce_dns(pool, entry, addresses, None);
    }

    /// The member of `entry` at `address`, waiting for its first good probe.
    fn found_member(
        &mut self,
        pool: &Rotation,
        entry: &DnsEntry,
        address: SocketAddr,
    ) -> Arc<Member> {
        let id = self.next_id;
        self.next_id += 1;
        let backend = Backend::found_at(id, &entry.spec, &entry.name, &pool.info().name, address);
        let member = Member::new(backend, entry.spec.weight, false);
        Arc::new(member.with_own_limit(entry.spec.max_connections))
    }

    fn announce_dns(
        &self,
        pool: &Rotation,
        entry: &DnsEntry,
        addresses: Vec<String>,
        error: Option<String>,
    ) {
        self.events.publish(LbEvent::Dns {
            pool: pool.name().to_owned(),
            backend: entry.name.clone(),
            url: entry.spec.url.clone(),
            ok: error.is_none(),
            addresses,
            error,
        });
    }
}

/// The addresses `spec`'s members (not leaving) are at.
fn addresses_of(members: &[Arc<Member>], spec: &BackendSpec) -> Vec<String> {
    entry_members(members, spec)
        .filter(|m| !m.is_leaving())
        .filter_map(|m| m.backend.address.map(|a| a.to_string()))
        .collect()
}

impl Handler<Resolved> for Registry {
    type Result = ();

    fn handle(&mut self, Resolved(lookup): Resolved, _: &mut Context<Self>) {
        let view = self.pools.load();
        let Some((pool, entry)) = view.dns_entry(lookup.entry) else {
            return;
        };
        let (pool, entry) = (Arc::clone(pool), entry.clone());
        match lookup.outcome {
            Ok(ips) => {
                let port = entry.spec.authority.port_u16().unwrap_or_default();
                let found: Vec<SocketAddr> =
                    ips.iter().map(|ip| SocketAddr::new(*ip, port)).collect();
                self.dns_answered(&pool, &entry, &found);
            }
            Err(problem) => self.dns_failed(&pool, &entry, problem),
        }
    }
}
