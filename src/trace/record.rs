//! A finished span as the workers hand it to the exporting thread: the ids, the times, the
//! name and the contract's attributes, nothing else (no events, links or scope, which the
//! balancer never records), so that building and queueing one costs little.

use std::time::SystemTime;

/// What the span stood for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A proxied request, as the balancer served it.
    Server,
    /// One attempt at a backend.
    Client,
}

/// An attribute's value.
#[derive(Debug, Clone, PartialEq)]
pub enum Attribute {
    Text(String),
    Int(i64),
    Bool(bool),
}

/// A span, ended.
#[derive(Debug)]
pub struct FinishedSpan {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    /// The parent span, and whether it is the client's (a remote parent).
    pub parent: Option<([u8; 8], bool)>,
    /// The W3C trace flags (sampled, since only sampled spans are built).
    pub flags: u8,
    pub kind: Kind,
    pub name: String,
    pub started: SystemTime,
    pub ended: SystemTime,
    pub attributes: Vec<(&'static str, Attribute)>,
    /// The status's description when the span is an error (else its status is unset).
    pub error: Option<String>,
}
