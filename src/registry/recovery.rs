//! How the [`Registry`] takes a sick backend out and lets a recovered one back in gently:
//! outlier ejection (a backend that answers `health.eject_consecutive_5xx` 5xx in a row is out
//! of rotation for a while that grows with each ejection, within `health.max_ejected_percent` of
//! its pool; probes go on deciding its health) and slow start (a backend that comes up, joins or
//! returns from an ejection takes 10% of its weight, growing to all of it over
//! `health.slow_start_secs`). The arithmetic of ejections is in [`super::outlier`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::{AsyncContext, Context, Handler};

use super::actor::Registry;
use super::member::{Member, FULL_RAMP};
use super::messages::ReportOutlier;
use super::rotation::Rotation;
use crate::backend::BackendId;
use crate::events::LbEvent;

/// Tenths of its weight a backend takes `elapsed` into a slow start `over` this long: 1 at
/// once, rising evenly to 10 at the end.
pub fn ramp_tenths(elapsed: Duration, over: Duration) -> u32 {
    if elapsed >= over {
        return FULL_RAMP;
    }
    let steps = (FULL_RAMP - 1) as f64 * elapsed.as_secs_f64() / over.as_secs_f64();
    1 + steps as u32
}

/// How often the slow starts under way are stepped: twenty times per `slow_start_secs`.
fn ramp_tick(over: Duration) -> Duration {
    (over / 20).max(Duration::from_millis(50))
}

impl Registry {
    /// Starts the slow-start ticks, when slow start is on.
    pub(super) fn start_ramps(&self, ctx: &mut Context<Self>) {
        if let Some(over) = self.options.slow_start {
            ctx.run_interval(ramp_tick(over), |registry, _| registry.step_ramps());
        }
    }

    /// `member` (of `pool`) came back into rotation: with slow start on, it starts at a tenth
    /// of its weight.
    pub(super) fn start_ramp(&mut self, pool: &Rotation, member: &Member) {
        if self.options.slow_start.is_none() {
            return;
        }
        member.set_ramp(1);
        self.ramping.insert(member.id(), Instant::now());
        pool.rebuild();
    }

    /// Moves every slow start under way one step on; a pool is rebuilt when a share changed.
    fn step_ramps(&mut self) {
        let Some(over) = self.options.slow_start else {
            return;
        };
        if self.ramping.is_empty() {
            return;
        }
        let view = self.pools.load();
        let now = Instant::now();
        self.ramping.retain(|id, since| {
            let Some((pool, member)) = view.member(*id) else {
                return false;
            };
            let tenths = ramp_tenths(now.duration_since(*since), over);
            if member.set_ramp(tenths) {
                pool.rebuild();
            }
            tenths < FULL_RAMP
        });
    }

    /// Ejects `id` (answered 5xx `run` times in a row) unless it is out already or its pool
    /// has ejected all it may; logs and publishes either way, and schedules its return.
    fn eject(&mut self, id: BackendId, run: u32, ctx: &mut Context<Self>) {
        let view = self.pools.load();
        let (Some(outliers), Some((pool, member))) = (self.outliers.as_mut(), view.member(id))
        else {
            return;
        };
        if !member.takes_requests() {
            return;
        }
        let members: Vec<Arc<Member>> = pool
            .members()
            .into_iter()
            .filter(|m| !m.is_leaving())
            .collect();
        let ejected = members.iter().filter(|m| m.is_ejected()).count();
        let backend = &member.backend;
        if !outliers.room(members.len(), ejected) {
            log::warn!(
                "backend {backend} answered {run} 5xx in a row but stays: {ejected} of the {} backends of pool {} are ejected already (health.max_ejected_percent = {})",
                members.len(),
                backend.pool,
                outliers.settings.max_percent
            );
            return;
        }
        let (lasts, times) = outliers.eject(id, Instant::now());
        member.set_ejected(true);
        pool.rebuild();
        let reason = format!(
            "{run} 5xx answers in a row; out for {} s (ejection {times} in a row)",
            lasts.as_secs()
        );
        log::warn!("backend {backend} EJECTED: {reason}");
        self.announce_ejection(&member, true, reason);
        ctx.run_later(lasts, move |registry, _| registry.end_ejection(id, lasts));
    }

    /// `id`'s ejection is over: back in rotation (if probes still find it healthy), slowly.
    fn end_ejection(&mut self, id: BackendId, lasted: Duration) {
        if let Some(outliers) = self.outliers.as_mut() {
            outliers.ended(id, Instant::now());
        }
        let view = self.pools.load();
        let Some((pool, member)) = view.member(id) else {
            return;
        };
        if !member.set_ejected(false) {
            return;
        }
        pool.rebuild();
        let health = if member.is_healthy() {
            "in rotation again"
        } else {
            "still down by its probes"
        };
        let reason = format!("ejection of {} s over; {health}", lasted.as_secs());
        log::info!("backend {} is back: {reason}", member.backend);
        self.announce_ejection(&member, false, reason);
        if member.is_healthy() {
            self.start_ramp(pool, &member);
        }
    }

    fn announce_ejection(&self, member: &Member, ejected: bool, reason: String) {
        let backend = &member.backend;
        self.events.publish(LbEvent::BackendEjected {
            pool: backend.pool.to_string(),
            backend: backend.name.clone(),
            url: backend.url.clone(),
            ejected,
            reason,
        });
    }
}

impl Handler<ReportOutlier> for Registry {
    type Result = ();

    fn handle(&mut self, msg: ReportOutlier, ctx: &mut Context<Self>) {
        self.eject(msg.backend, msg.run, ctx);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tenth at once, all of it at the end, evenly between.
    #[test]
    fn a_slow_start_rises_from_a_tenth_to_all() {
        let over = Duration::from_secs(9);
        let at = |secs: f64| ramp_tenths(Duration::from_secs_f64(secs), over);
        assert_eq!(at(0.0), 1);
        assert_eq!(at(1.0), 2);
        assert_eq!(at(4.5), 5);
        assert_eq!(at(8.99), 9);
        assert_eq!(at(9.0), 10);
        assert_eq!(at(60.0), 10);
        assert_eq!(ramp_tick(Duration::from_secs(1)), Duration::from_millis(50));
        assert_eq!(ramp_tick(Duration::from_secs(60)), Duration::from_secs(3));
    }
}
