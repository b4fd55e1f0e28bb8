//! Active health checking: the `HealthChecker` actor probes every backend with
//! `GET {health.path}` every `health.interval_ms` (spread over the interval so probes do not
//! fire together), each probe with its own `health.timeout_ms`, so a hanging backend never
//! delays the others. 2xx and 3xx are healthy; anything else, a refused or reset connection,
//! or a timeout is a failure. Rise/fall counting lives in [`state::HealthState`]; on a flip the
//! checker tells the registry ([`Membership`]), which logs and publishes it.

pub mod state;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

use actix::{Actor, ActorFutureExt, AsyncContext, Context, WrapFuture};
use actix_web::http::header;
use awc::error::SendRequestError;
use awc::Client;

use crate::backend::Backend;
use crate::registry::{Membership, Rotation};
use crate::settings::HealthSettings;
use crate::upstream;
use state::{HealthState, Transition};

/// `User-Agent` of probes, so backends can tell them from traffic.
pub const PROBE_USER_AGENT: &str = "loadbalancer-health-check";

/// The last probe of one backend, for the status API.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProbeReport {
    pub ok: bool,
    pub latency_ms: f64,
    /// Why it failed.
    pub error: Option<String>,
}

/// Last probe per backend id, shared with the status API.
pub type ProbeView = Arc<Vec<Mutex<Option<ProbeReport>>>>;

/// An empty view for `count` backends.
pub fn probe_view(count: usize) -> ProbeView {
    Arc::new((0..count).map(|_| Mutex::new(None)).collect())
}

/// Probes the pool and reports flips to the registry.
pub struct HealthChecker {
    rotation: Arc<Rotation>,
    registry: Membership,
    settings: HealthSettings,
    /// Built on the actor's own thread (an awc Client is not Send); no redirects followed.
    client: Client,
    /// Per backend: rise/fall state.
    states: Vec<HealthState>,
    /// Per backend: a probe is under way (a new one is not started on top of it).
    probing: Vec<bool>,
    /// Per backend: the last failure, for the DOWN line.
    last_error: Vec<String>,
    /// Per backend: the last probe, published for the status API.
    view: ProbeView,
}

impl HealthChecker {
    /// Must be called on the thread the actor will run on (it builds an awc client).
    pub fn new(
        rotation: Arc<Rotation>,
        registry: Membership,
        settings: HealthSettings,
        connect_timeout: Duration,
        view: ProbeView,
    ) -> Self {
        let count = rotation.len();
        let client = upstream::client(connect_timeout.min(settings.timeout), settings.timeout);
        let state = HealthState::new(settings.healthy_threshold, settings.unhealthy_threshold);
        Self {
            rotation,
            registry,
            client,
            states: vec![state; count],
            probing: vec![false; count],
            last_error: vec![String::new(); count],
            settings,
            view,
        }
    }

    fn probe(&mut self, index: usize, ctx: &mut Context<Self>) {
        let Some(backend) = self.rotation.backend(index).cloned() else {
            return;
        };
        if std::mem::replace(&mut self.probing[index], true) {
            return;
        }
        let request = probe_once(self.client.clone(), backend, self.settings.clone());
        let started = Instant::now();
        ctx.spawn(request.into_actor(self).map(move |result, checker, _| {
            checker.publish(index, &result, started.elapsed());
            checker.observe(index, result)
        }));
    }

    fn publish(&self, index: usize, result: &Result<(), String>, took: Duration) {
        if let Some(Ok(mut slot)) = self.view.get(index).map(|m| m.lock()) {
            *slot = Some(ProbeReport {
                ok: result.is_ok(),
                latency_ms: took.as_secs_f64() * 1000.0,
                error: result.as_ref().err().cloned(),
            });
        }
    }

    /// Counts one probe result and reports a flip.
    fn observe(&mut self, index: usize, result: Result<(), String>) {
        self.probing[index] = false;
        let state = &mut self.states[index];
        // Passive ejection may have taken it out meanwhile: then the probes must earn it back.
        if !self.rotation.is_healthy(index) {
            state.force_down();
        }
        if let Err(reason) = &result {
            self.last_error[index].clone_from(reason);
        }
        let reason = match state.record(result.is_ok()) {
            None => return,
            Some(Transition::WentDown) => format!(
                "{} failed probes: {}",
                self.settings.unhealthy_threshold, self.last_error[index]
            ),
            Some(Transition::CameUp) => {
                format!("{} successful probes", self.settings.healthy_threshold)
            }
        };
        self.registry.tell_health(index, result.is_ok(), reason);
    }
}

impl Actor for HealthChecker {
    type Context = Context<Self>;

    /// Starts one probe schedule per backend, offset by `interval × i / n`.
    fn started(&mut self, ctx: &mut Context<Self>) {
        let count = self.states.len() as u32;
        let interval = self.settings.interval;
        for index in 0..self.states.len() {
            let offset = interval * index as u32 / count.max(1);
            ctx.run_later(offset, move |checker, ctx| {
                checker.probe(index, ctx);
                ctx.run_interval(interval, move |checker, ctx| checker.probe(index, ctx));
            });
        }
    }
}

/// One probe: `Ok` for a 2xx or 3xx answer, else why not.
async fn probe_once(
    client: Client,
    backend: Arc<Backend>,
    settings: HealthSettings,
) -> Result<(), String> {
    let url = format!("http://{}{}", backend.authority, settings.path);
    let response = client
        .get(url)
        .insert_header((header::USER_AGENT, PROBE_USER_AGENT))
        .send()
        .await
        .map_err(|err| describe(err, settings.timeout))?;
    let status = response.status();
    if status.is_success() || status.is_redirection() {
        Ok(())
    } else {
        Err(format!("status {}", status.as_u16()))
    }
}

fn describe(err: SendRequestError, timeout: Duration) -> String {
    match err {
        SendRequestError::Timeout => format!("no answer within {} ms", timeout.as_millis()),
        SendRequestError::Connect(e) => format!("connect: {e}"),
        other => other.to_string(),
    }
}
