//! The failure simulation: with `simulation.enabled`, every backend in `config.json` (all on
//! loopback) is served in-process by a [`server::SimulatedBackend`], and the `Simulator` actor
//! moves them between up and failing on the seeded [`schedule::FaultSchedule`], or when an
//! operator says so ([`Fail`], [`Recover`] from `/lb/api/simulation/...`). Each change is
//! logged and published as an event; health checks then see it like any real outage. It follows
//! the pool ([`PoolChanged`] from the registry, handled in [`follow`]): loopback backends that
//! join are simulated too, and those that leave stop being served.

mod follow;
pub mod schedule;
pub mod server;

use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use actix::{
    Actor, ActorContext, Addr, AsyncContext, Context, Handler, MailboxError, Message, WrapFuture,
};
use serde::Serialize;

use crate::backend::{Backend, BackendId, PoolEntry};
use crate::events::{Events, LbEvent};
use crate::fault::FaultMode;
use crate::registry::PoolChanged;
use crate::settings::SimulationSettings;
use schedule::{Change, FaultSchedule};
use server::{same_server, SimState, SimulatedBackend};

/// How often the schedule is consulted.
const TICK: Duration = Duration::from_millis(100);

/// Why a simulation command was refused.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("No simulated backend {0:?} (use its name, e.g. backend-1, with ?pool=NAME outside the default pool, or its id: its index in config.json from 0, pool after pool)")]
    UnknownBackend(String),
    #[error("{backend:?} names backends in several pools ({pools}): add ?pool=NAME")]
    Ambiguous { backend: String, pools: String },
}

/// Which simulated backend a command is for: a name (in `pool`, when given) or an id.
#[derive(Debug, Clone, PartialEq)]
pub struct SimTarget {
    pub backend: String,
    pub pool: Option<String>,
}

/// A simulated backend's state, as the API reports it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct SimStatus {
    pub backend: String,
    pub pool: String,
    pub url: String,
    /// `up`, `refuse`, `error` or `hang`.
    pub state: &'static str,
    /// Under manual control (the random schedule is paused for it).
    pub manual: bool,
}

/// From the API: make a backend fail in `mode` until [`Recover`].
#[derive(Debug, Message)]
#[rtype(result = "Result<SimStatus, SimError>")]
pub struct Fail {
    pub target: SimTarget,
    pub mode: FaultMode,
}

/// From the API: bring a backend back up and return it to the random schedule.
#[derive(Debug, Message)]
#[rtype(result = "Result<SimStatus, SimError>")]
pub struct Recover {
    pub target: SimTarget,
}

/// From the shutdown hook: stop every simulated server.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct StopAll;

/// The shared, read-only view of each simulated backend's state, by backend id.
#[derive(Debug, Clone, Default)]
pub struct SimulationView(Arc<RwLock<HashMap<BackendId, SimState>>>);

impl SimulationView {
    fn set(&self, id: BackendId, state: Option<SimState>) {
        if let Ok(mut map) = self.0.write() {
            match state {
                Some(state) => map.insert(id, state),
                None => map.remove(&id),
            };
        }
    }
}

/// The handlers' way to a running simulation: its controls and the view of its states.
#[derive(Clone)]
pub struct Simulation {
    actor: Addr<Simulator>,
    view: SimulationView,
}

impl Simulation {
    /// Fails `target` (a name or index) in `mode` until [`Self::recover`]; `Err` when the
    /// simulation has stopped.
    pub async fn fail(
        &self,
        target: SimTarget,
        mode: FaultMode,
    ) -> Result<Result<SimStatus, SimError>, MailboxError> {
        self.actor.send(Fail { target, mode }).await
    }

    /// Brings `target` back and returns it to the random schedule.
    pub async fn recover(
        &self,
        target: SimTarget,
    ) -> Result<Result<SimStatus, SimError>, MailboxError> {
        self.actor.send(Recover { target }).await
    }

    /// Stops every simulated server (the shutdown hook).
    pub async fn stop(&self) {
        let _ = self.actor.send(StopAll).await;
    }

    /// `up` or the failure mode of the simulated backend with this id.
    pub fn label(&self, id: BackendId) -> Option<&'static str> {
        self.view.0.read().ok()?.get(&id).map(SimState::label)
    }

    /// Where the registry tells the simulation about backends that join or leave.
    pub fn follower(&self) -> actix::Recipient<PoolChanged> {
        self.actor.clone().recipient()
    }
}

/// Owns the simulated backends and their schedule.
pub struct Simulator {
    /// By schedule slot; `None` once its backend left the pool.
    backends: Vec<Option<SimulatedBackend>>,
    /// Shared with the status API.
    view: SimulationView,
    schedule: FaultSchedule,
    started: Instant,
    /// Set by [`Simulator::run`] before the actor starts.
    events: Option<Events>,
}

impl Simulator {
    /// Binds every backend's address and starts serving. Must run inside an actix system;
    /// an address in use is an error naming the backend and the address.
    /// A URL in several pools is one simulated server: its later members share the first's
    /// state.
    pub fn start_backends<'a>(
        pool: impl IntoIterator<Item = &'a PoolEntry>,
        settings: &SimulationSettings,
    ) -> io::Result<Self> {
        let mut backends: Vec<Option<SimulatedBackend>> = Vec::new();
        let view = SimulationView::default();
        for entry in pool {
            if let Some(twin) = same_server(&mut backends, &entry.backend.authority) {
                view.set(entry.backend.id, Some(twin.state.clone()));
                twin.also.push(Arc::new(entry.backend.clone()));
                continue;
            }
            let backend = Arc::new(entry.backend.clone());
            let simulated =
                SimulatedBackend::start(backend, resolve(entry.backend.authority.as_str())?)?;
            view.set(entry.backend.id, Some(simulated.state.clone()));
            backends.push(Some(simulated));
        }
        let seed = settings.seed.unwrap_or_else(|| fastrand::u64(1..));
        log::info!(
            "simulation: serving {} backends in-process (seed {seed}; set simulation.seed = {seed} to replay this schedule)",
            backends.len()
        );
        Ok(Self {
            schedule: FaultSchedule::new(
                backends.len(),
                settings.plan.clone(),
                seed,
                Duration::ZERO,
            ),
            backends,
            view,
            started: Instant::now(),
            events: None,
        })
    }

    /// Starts the actor, publishing its changes to `events`.
    pub fn run(mut self, events: Events) -> Simulation {
        self.events = Some(events);
        let view = self.view.clone();
        Simulation {
            actor: self.start(),
            view,
        }
    }

    /// The slot of the server of the backend `target` names (in its pool, if it names one),
    /// or with `target` as its id; a name in several pools needs the pool.
    fn find(&self, target: &SimTarget) -> Result<usize, SimError> {
        let id = target.backend.parse::<BackendId>().ok();
        let named = |b: &Backend| {
            (b.name == target.backend && target.pool.as_deref().is_none_or(|p| *b.pool == *p))
                || Some(b.id) == id
        };
        let slots: Vec<(usize, &SimulatedBackend)> = (self.backends.iter().enumerate())
            .filter_map(|(slot, b)| Some((slot, b.as_ref()?)))
            .filter(|(_, b)| named(&b.backend) || b.also.iter().any(|m| named(m)))
            .collect();
        match slots.as_slice() {
            [] => Err(SimError::UnknownBackend(target.backend.clone())),
            [(slot, _)] => Ok(*slot),
            several => {
                let pools: Vec<&str> = several.iter().map(|(_, b)| &*b.backend.pool).collect();
                Err(SimError::Ambiguous {
                    backend: target.backend.clone(),
                    pools: pools.join(", "),
                })
            }
        }
    }

    fn simulated(&self, index: usize) -> &SimulatedBackend {
        self.backends[index]
            .as_ref()
            .expect("find() returns slots of backends still in the pool")
    }

    fn status(&self, index: usize) -> SimStatus {
        let simulated = self.simulated(index);
        SimStatus {
            backend: simulated.backend.name.clone(),
            pool: simulated.backend.pool.to_string(),
            url: simulated.backend.url.clone(),
            state: simulated.state.label(),
            manual: self.schedule.is_paused(index),
        }
    }

    /// Puts backend `index` in `state`, logs and publishes it.
    fn apply(
        &mut self,
        index: usize,
        state: Option<FaultMode>,
        manual: bool,
        ctx: &mut Context<Self>,
    ) {
        let Some(simulated) = self.backends[index].as_mut() else {
            return;
        };
        if simulated.state.get() == state {
            return;
        }
        let how = if manual { "by request" } else { "scheduled" };
        match state {
            Some(mode) => log::info!(
                "simulation: {} ({}) starts failing: {mode} ({how})",
                simulated.backend.name,
                simulated.backend.url
            ),
            None => log::info!(
                "simulation: {} ({}) recovers ({how})",
                simulated.backend.name,
                simulated.backend.url
            ),
        }
        match simulated.switch(state) {
            // Wait for the listener to close before anything else happens here, so a quick
            // recovery cannot race the close and find the port still taken.
            Ok(Some(server)) => {
                ctx.wait(async move { server.stop(false).await }.into_actor(self));
            }
            Ok(None) => {}
            Err(err) => log::error!("simulation: {err}"),
        }
        let simulated = self.simulated(index);
        let Some(events) = &self.events else {
            return;
        };
        events.publish(LbEvent::Simulation {
            backend: simulated.backend.name.clone(),
            pool: simulated.backend.pool.to_string(),
            url: simulated.backend.url.clone(),
            state: simulated.state.label().to_owned(),
            manual,
        });
    }
}

fn resolve(authority: &str) -> io::Result<SocketAddr> {
    authority.to_socket_addrs()?.next().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("{authority} has no address"),
        )
    })
}

impl Actor for Simulator {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(TICK, |simulator, ctx| {
            let now = simulator.started.elapsed();
            for Change { backend, to } in simulator.schedule.due(now) {
                simulator.apply(backend, to, false, ctx);
            }
        });
    }
}

impl Handler<Fail> for Simulator {
    type Result = Result<SimStatus, SimError>;

    fn handle(&mut self, msg: Fail, ctx: &mut Context<Self>) -> Self::Result {
        let index = self.find(&msg.target)?;
        self.schedule.hold_failing(index, msg.mode);
        self.apply(index, Some(msg.mode), true, ctx);
        Ok(self.status(index))
    }
}

impl Handler<Recover> for Simulator {
    type Result = Result<SimStatus, SimError>;

    fn handle(&mut self, msg: Recover, ctx: &mut Context<Self>) -> Self::Result {
        let index = self.find(&msg.target)?;
        self.schedule.resume(index, self.started.elapsed());
        self.apply(index, None, true, ctx);
        Ok(self.status(index))
    }
}

impl Handler<StopAll> for Simulator {
    type Result = ();

    fn handle(&mut self, _: StopAll, ctx: &mut Context<Self>) {
        ctx.stop();
        for simulated in self.backends.iter_mut().flatten() {
            if let Some(server) = simulated.stop() {
                actix_rt::spawn(async move { server.stop(false).await });
            }
        }
    }
}
