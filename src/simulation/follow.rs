//! The simulation follows the pools ([`PoolChanged`] from the registry): loopback backends
//! that join are served (a URL already served for another pool shares that server), real ones
//! are left alone, and backends that leave stop being served — unless a member of another pool
//! at the same address is still there, which then takes the server over.

use std::sync::Arc;

use actix::{Context, Handler};

use super::server::{same_server, SimulatedBackend};
use super::{resolve, Simulator};
use crate::backend::Backend;
use crate::net::is_loopback_authority;
use crate::registry::PoolChanged;

impl Simulator {
    /// Stops simulating `backend`, which left its pool: a member of another pool at the same
    /// address takes its place on the server; without one the server stops.
    fn forget(&mut self, backend: &Backend) {
        self.view.set(backend.id, None);
        let serves = |b: &SimulatedBackend| {
            b.backend.id == backend.id || b.also.iter().any(|m| m.id == backend.id)
        };
        let Some(index) = (self.backends.iter()).position(|b| b.as_ref().is_some_and(serves))
        else {
            return;
        };
        let Some(simulated) = self.backends[index].as_mut() else {
            return;
        };
        if let Some(at) = simulated.also.iter().position(|m| m.id == backend.id) {
            simulated.also.remove(at);
            return;
        }
        if !simulated.also.is_empty() {
            simulated.backend = simulated.also.remove(0);
            return;
        }
        self.schedule.retire(index);
        if let Some(server) = self.backends[index].take().and_then(|mut b| b.stop()) {
            actix_rt::spawn(async move { server.stop(false).await });
        }
    }
}

impl Handler<PoolChanged> for Simulator {
    type Result = ();

    /// Serves loopback backends that joined (others are real and left alone); stops serving
    /// those that left.
    fn handle(&mut self, msg: PoolChanged, _: &mut Context<Self>) {
        for backend in msg.removed {
            self.forget(&backend);
        }
        for backend in msg.added {
            if let Some(twin) = same_server(&mut self.backends, &backend.authority) {
                self.view.set(backend.id, Some(twin.state.clone()));
                twin.also.push(backend);
                continue;
            }
            if !is_loopback_authority(backend.authority.as_str()) {
                log::info!(
                    "simulation: {} ({}) is not on this machine, so it is not simulated",
                    backend.name,
                    backend.url
                );
                continue;
            }
            let started = resolve(backend.authority.as_str())
                .and_then(|addr| SimulatedBackend::start(Arc::clone(&backend), addr));
            match started {
                Ok(simulated) => {
                    log::info!("simulation: serving {} ({}) too", backend.name, backend.url);
                    self.view.set(backend.id, Some(simulated.state.clone()));
                    let slot = self.schedule.add(self.started.elapsed());
                    debug_assert_eq!(slot, self.backends.len());
                    self.backends.push(Some(simulated));
                }
                Err(err) => log::warn!("simulation: not serving {}: {err}", backend.name),
            }
        }
    }
}
