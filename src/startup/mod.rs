//! Start-up, the only module that knows every part: [`start`] opens the database, starts the
//! domain's actors ([`domain`]) and hands the HTTP layer what it serves from, on listeners
//! already bound (so tests bind `127.0.0.1:0`); [`run`] is what the binary does, signals
//! included ([`signals`]). [`BalancerHandle`] controls a running balancer.

mod domain;
mod handle;
mod notify;
mod run;
mod signals;
mod start;

pub use handle::{Balancer, BalancerHandle, ShutdownHook};
pub use run::run;
pub use start::{start, start_listeners, StartError};
