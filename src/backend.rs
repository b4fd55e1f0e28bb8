//! A backend is an immutable value: where it is and what it is called. Its health and counters
//! live in the registry; the pool file is read by the settings.

use std::fmt;

use actix_web::http::uri::Authority;
use actix_web::http::Uri;
use serde::Serialize;

/// Index of a backend in the pool (its position in `config.json`).
pub type BackendId = usize;

/// One upstream server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backend {
    /// Position in the pool.
    pub id: BackendId,
    /// The URL as written in `config.json`, without a trailing slash.
    pub url: String,
    /// `host:port` to connect to (port 80 when the URL has none), parsed once so that each
    /// upstream request's URI is put together from parts rather than formatted and re-parsed.
    pub authority: Authority,
    /// Short stable name for logs and the status page: `backend-1`, `backend-2`, …
    pub name: String,
}

impl Backend {
    /// Parses an `http://host[:port]` URL; any path, query, user info or other scheme is refused.
    pub fn parse(id: BackendId, text: &str) -> Result<Self, String> {
        let url = text.trim().trim_end_matches('/');
        let uri: Uri = url
            .parse()
            .map_err(|_| format!("{text:?} is not a URL of the form http://host:port"))?;
        if uri.scheme_str() != Some("http") {
            return Err(format!(
                "{text:?}: only http:// backends are supported (TLS to backends is not)"
            ));
        }
        let authority = uri
            .authority()
            .filter(|a| !a.host().is_empty() && !a.as_str().contains('@'))
            .ok_or_else(|| format!("{text:?} has no host (expected http://host:port)"))?;
        if uri.path_and_query().is_some_and(|pq| pq.as_str() != "/") {
            return Err(format!(
                "{text:?}: a backend URL may not have a path or query (expected http://host:port)"
            ));
        }
        let port = authority.port_u16().unwrap_or(80);
        if port == 0 {
            return Err(format!("{text:?}: port 0 is not a valid backend port"));
        }
        let authority = Authority::try_from(format!("{}:{port}", authority.host()))
            .map_err(|err| format!("{text:?}: {err}"))?;
        Ok(Self {
            id,
            url: url.to_owned(),
            authority,
            name: format!("backend-{}", id + 1),
        })
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.url)
    }
}

/// Whether a backend is in rotation, as the API and the event stream spell it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendState {
    Up,
    Down,
}

impl BackendState {
    pub fn from_healthy(healthy: bool) -> Self {
        if healthy {
            Self::Up
        } else {
            Self::Down
        }
    }
}

/// A backend's state and counters, as both `/lb/api/status` and the `stats` event show them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct BackendCounters {
    pub state: BackendState,
    /// Attempts sent to it since start.
    pub requests: u64,
    /// Attempts that failed before a response.
    pub failures: u64,
    /// Attempts under way now.
    pub in_flight: u64,
}
