//! How a proxied attempt on a backend ended, as the pool counts it.

/// Why a proxied attempt on a backend failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// Connection refused, unreachable, or the connect timed out.
    Connect,
    /// Connected, but the connection broke before a response head arrived.
    Reset,
    /// No response head within `backends.response_timeout_ms`.
    Timeout,
}

impl FailureKind {
    /// Short label for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Connect => "connect",
            FailureKind::Reset => "reset",
            FailureKind::Timeout => "timeout",
        }
    }
}

/// How an attempt on a backend ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A response head arrived (whatever its status).
    Responded,
    Failed(FailureKind),
}
