//! The `Registry` actor owns the backend pool: membership, health flags, counters and the
//! round-robin cursor. The proxy sends it [`Pick`] and [`ReportOutcome`]; the health checker
//! sends [`SetHealth`]; the status API sends [`Snapshot`]. The rules live in [`pool::Pool`].

mod messages;
pub mod pool;

use std::sync::Arc;

use actix::{Actor, Context, Handler, MessageResult};

use crate::backend::Backend;
pub use messages::{Pick, ReportOutcome, SetHealth, Snapshot};
pub use pool::{BackendStats, FailureKind, Member, Outcome, Pool};

/// Actor shell around [`Pool`].
pub struct Registry {
    pool: Pool,
}

impl Registry {
    pub fn new(backends: Vec<Backend>) -> Self {
        Self {
            pool: Pool::new(backends),
        }
    }
}

impl Actor for Registry {
    type Context = Context<Self>;
}

impl Handler<Pick> for Registry {
    type Result = Option<Arc<Backend>>;

    fn handle(&mut self, msg: Pick, _: &mut Context<Self>) -> Self::Result {
        self.pool.pick(&msg.exclude)
    }
}

impl Handler<ReportOutcome> for Registry {
    type Result = ();

    fn handle(&mut self, msg: ReportOutcome, _: &mut Context<Self>) {
        self.pool.report(msg.backend, msg.outcome);
    }
}

impl Handler<SetHealth> for Registry {
    type Result = bool;

    /// Only the transition is logged, once; repeating the current state is silent.
    fn handle(&mut self, msg: SetHealth, _: &mut Context<Self>) -> bool {
        let changed = self.pool.set_health(msg.backend, msg.healthy);
        if changed {
            if let Some(member) = self.pool.members().get(msg.backend) {
                let healthy = self.pool.healthy_count();
                let total = self.pool.members().len();
                match msg.healthy {
                    true => log::info!(
                        "backend {} is UP again ({}); {healthy}/{total} backends in rotation",
                        member.backend,
                        msg.reason
                    ),
                    false => log::warn!(
                        "backend {} is DOWN ({}); traffic goes to the other {healthy}/{total}",
                        member.backend,
                        msg.reason
                    ),
                }
            }
        }
        changed
    }
}

impl Handler<Snapshot> for Registry {
    type Result = MessageResult<Snapshot>;

    fn handle(&mut self, _: Snapshot, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.pool.members().to_vec())
    }
}
