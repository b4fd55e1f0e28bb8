//! Routing: which route (and so which pool) takes a request. The pool file's routes are
//! compiled once per file into a [`RouteTable`] built for the contract's order — priority, then
//! exact host over wildcard host over no host, then the longer path prefix, then more
//! conditions, then file order — so that a request costs a few hash lookups, never a scan of
//! every route. [`host`] puts a request's host into the form routes compare.

mod compiled;
pub mod host;
mod table;

pub use compiled::Route;
pub use table::{in_selection_order, RouteTable, Target};
