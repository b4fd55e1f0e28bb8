//! Active health checking: the `HealthChecker` actor probes every member of every pool with
//! `GET {health_path}` every `health.interval_ms` (the start's members spread over the interval
//! so probes do not fire together; a backend that joins later is probed at once), each probe with
//! its own `health.timeout_ms`, so a hanging backend never delays the others. 2xx and 3xx are
//! healthy; anything else, a refused or reset connection, or a timeout is a failure. A probe is
//! one awc request ([`probe`]); rise/fall counting lives in [`state::HealthState`]; on a flip the
//! checker tells the registry ([`Membership`]), which logs and publishes it. The checker follows
//! the pools by reading the shared [`Pools`] on each tick, so reloads need no message. Each
//! pool's backends are probed on that pool's `health_path`.

mod probe;
pub mod state;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::{Actor, ActorFutureExt, AsyncContext, Context, WrapFuture};
use awc::Client;

use crate::backend::{Backend, BackendId, ProbeReport};
use crate::registry::{Membership, Pools};
use crate::settings::HealthSettings;
pub use probe::PROBE_USER_AGENT;
use probe::{probe_once, prober};
use state::{HealthState, Transition};

/// How often the checker looks for due probes and new members.
const TICK: Duration = Duration::from_millis(20);

/// One member's probing.
struct Probed {
    state: HealthState,
    /// A probe is under way (a new one is not started on top of it).
    probing: bool,
    /// The last failure, for the DOWN line.
    last_error: String,
    next_at: Instant,
}

/// Probes the pool and reports flips to the registry.
pub struct HealthChecker {
    pools: Arc<Pools>,
    registry: Membership,
    settings: HealthSettings,
    /// Built on the actor's own thread (an awc Client is not Send); no redirects followed.
    prober: Client,
    /// The same for members DNS found, apart so that a probe of one never takes a kept-alive
    /// connection of a backend with the same `host:port` (awc's pool key).
    found_prober: Client,
    /// Per member.
    probed: HashMap<BackendId, Probed>,
    /// Members seen at the first tick are spread over the interval; later ones are probed at once.
    started: bool,
}

impl HealthChecker {
    /// Must be called on the thread the actor will run on (it builds an awc client).
    pub fn new(
        pools: Arc<Pools>,
        registry: Membership,
        settings: HealthSettings,
        connect_timeout: Duration,
        tls: &Arc<rustls::ClientConfig>,
    ) -> Self {
        let connect_timeout = connect_timeout.min(settings.timeout);
        Self {
            pools,
            registry,
            prober: prober(connect_timeout, settings.timeout, tls),
            found_prober: prober(connect_timeout, settings.timeout, tls),
            probed: HashMap::new(),
            started: false,
            settings,
        }
    }

    /// Starts the probes that are due; takes in new members and forgets those that left.
    fn tick(&mut self, ctx: &mut Context<Self>) {
        let now = Instant::now();
        let view = self.pools.load();
        let members: Vec<_> = view
            .every_pool()
            .flat_map(|pool| {
                let path = Arc::clone(&pool.info().health_path);
                pool.members()
                    .into_iter()
                    .map(move |m| (m, Arc::clone(&path)))
            })
            .collect();
        self.probed
            .retain(|id, _| members.iter().any(|(m, _)| m.id() == *id));
        let count = members.len().max(1) as u32;
        for (index, (member, path)) in members.iter().enumerate() {
            let interval = self.settings.interval;
            let (healthy_threshold, unhealthy_threshold) = (
                self.settings.healthy_threshold,
                self.settings.unhealthy_threshold,
            );
            let first_tick = !self.started;
            let probed = self.probed.entry(member.id()).or_insert_with(|| Probed {
                // A member waiting to join comes up on its first good probe.
                state: if member.is_joining() {
                    HealthState::joining(healthy_threshold, unhealthy_threshold)
                } else {
                    HealthState::new(healthy_threshold, unhealthy_threshold)
                },
                probing: false,
                last_error: String::new(),
                next_at: if first_tick {
                    now + interval * index as u32 / count
                } else {
                    now
                },
            });
            if probed.probing || probed.next_at > now {
                continue;
            }
            probed.probing = true;
            probed.next_at = now + interval;
            self.probe(Arc::clone(&member.backend), path, ctx);
        }
        self.started = true;
    }

    fn probe(&mut self, backend: Arc<Backend>, path: &str, ctx: &mut Context<Self>) {
        let id = backend.id;
        let mut settings = self.settings.clone();
        path.clone_into(&mut settings.path);
        let prober = match backend.address {
            Some(_) => self.found_prober.clone(),
            None => self.prober.clone(),
        };
        let request = probe_once(prober, backend, settings);
        let started = Instant::now();
        ctx.spawn(request.into_actor(self).map(move |result, checker, _| {
            if let Some((_, member)) = checker.pools.load().member(id) {
                member.set_probe(ProbeReport {
                    ok: result.is_ok(),
                    latency_ms: started.elapsed().as_secs_f64() * 1000.0,
                    error: result.as_ref().err().cloned(),
                });
            }
            checker.observe(id, result);
        }));
    }

    /// Counts one probe result and reports a flip.
    fn observe(&mut self, id: BackendId, result: Result<(), String>) {
        let Some(probed) = self.probed.get_mut(&id) else {
            return;
        };
        probed.probing = false;
        let state = &mut probed.state;
        // Passive ejection may have taken it out meanwhile: then the probes must earn it back.
        if !self.pools.is_healthy(id) {
            state.force_down();
        }
        if let Err(reason) = &result {
            probed.last_error.clone_from(reason);
        }
        let reason = match state.record(result.is_ok()) {
            None => return,
            Some(Transition::WentDown) => format!(
                "{} failed probes: {}",
                self.settings.unhealthy_threshold, probed.last_error
            ),
            Some(Transition::CameUp) if state.joined_now() => "first successful probe".to_owned(),
            Some(Transition::CameUp) => {
                format!("{} successful probes", self.settings.healthy_threshold)
            }
        };
        self.registry.tell_health(id, result.is_ok(), reason);
    }
}

impl Actor for HealthChecker {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.tick(ctx);
        ctx.run_interval(TICK, |checker, ctx| checker.tick(ctx));
    }
}
