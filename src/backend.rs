//! A backend is an immutable value: where it is and what it is called. Its weight, health and
//! counters live in the registry; the pool file is read by the settings. Also here: the small
//! values both sides share — a validated pool-file entry ([`BackendSpec`]), how names default,
//! and a probe's report.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use actix_web::http::uri::Authority;
use actix_web::http::Uri;
use serde::Serialize;

/// A backend's identity for as long as the process runs: the backends of the pool file at
/// start are 0, 1, 2, … in file order; each one added later gets the next number, never reused.
pub type BackendId = usize;

/// The pool the pool file's top-level `backends` makes, and the one requests no route takes go
/// to.
pub const DEFAULT_POOL: &str = "default";

/// Largest `weight` of a pool entry.
pub const MAX_WEIGHT: u32 = 1000;

/// Largest `max_connections` of a pool, a backend entry or `backends.max_connections`.
pub const MAX_CONNECTIONS: u32 = 1_000_000;

/// Longest backend name (names appear in URLs, metrics labels and log lines).
pub const MAX_NAME_LEN: usize = 64;

/// One upstream server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backend {
    /// Identity while the process runs: 0, 1, 2, … in pool-file order at start, then the next
    /// number for each backend added.
    pub id: BackendId,
    /// The URL as written in `config.json`, without a trailing slash.
    pub url: String,
    /// `host:port` to connect to (port 80, or 443 for `https://`, when the URL has none), parsed
    /// once so that each upstream request's URI is put together from parts rather than
    /// formatted and re-parsed.
    pub authority: Authority,
    /// `https://`: reached over TLS, its certificate verified for the URL's host.
    pub tls: bool,
    /// Short stable name for logs, the API and the status page: `backend-1`, `backend-2`, … or
    /// the one the pool file gives; unique within its pool.
    pub name: String,
    /// The pool it is a member of (a URL in two pools is two backends).
    pub pool: Arc<str>,
    /// A member found by DNS (`"discovery": "dns"`): the address it was found at, which
    /// connections go to; `authority` stays the DNS name (TLS verifies and sends it, and it is
    /// the backend's `Host`). `None`: connect to `authority`.
    pub address: Option<SocketAddr>,
}

impl Backend {
    /// Parses an `http://host[:port]` URL; any path, query, user info or other scheme is refused.
    /// The name is the default one for position `id` (`backend-{id + 1}`).
    pub fn parse(id: BackendId, text: &str) -> Result<Self, String> {
        let (url, authority, tls) = parse_url(text)?;
        Ok(Self {
            id,
            url,
            authority,
            tls,
            name: default_name(id),
            pool: Arc::from(DEFAULT_POOL),
            address: None,
        })
    }

    /// The backend a validated entry describes, under `id` and `name`, in `pool`.
    pub fn from_spec(id: BackendId, spec: &BackendSpec, name: String, pool: &Arc<str>) -> Self {
        Self {
            id,
            url: spec.url.clone(),
            authority: spec.authority.clone(),
            tls: spec.tls,
            name,
            pool: Arc::clone(pool),
            address: None,
        }
    }

    /// The member of DNS entry `entry` (called `entry_name`) found at `address`: named
    /// `{entry_name}@{ip}`.
    pub fn found_at(
        id: BackendId,
        entry: &BackendSpec,
        entry_name: &str,
        pool: &Arc<str>,
        address: SocketAddr,
    ) -> Self {
        let name = format!("{entry_name}@{}", address.ip());
        Self {
            address: Some(address),
            ..Self::from_spec(id, entry, name, pool)
        }
    }

    /// Where connections go: the found address, else `authority` (resolved by the system).
    pub fn connect_to(&self) -> ConnectTo<'_> {
        match self.address {
            Some(address) => ConnectTo::Address(address),
            None => ConnectTo::Name(self.authority.as_str()),
        }
    }
}

/// Where a connection to a backend goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectTo<'a> {
    Address(SocketAddr),
    /// `host:port`.
    Name(&'a str),
}

/// The URL without a trailing slash, the `host:port` to connect to, and whether it is
/// `https://`; `Err` says why not.
fn parse_url(text: &str) -> Result<(String, Authority, bool), String> {
    let url = text.trim().trim_end_matches('/');
    let uri: Uri = url
        .parse()
        .map_err(|_| format!("{text:?} is not a URL of the form http://host:port"))?;
    let tls = match uri.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        _ => {
            return Err(format!(
                "{text:?}: a backend URL is http://host[:port] or https://host[:port]"
            ))
        }
    };
    let authority = uri
        .authority()
        .filter(|a| !a.host().is_empty())
        .ok_or_else(|| format!("{text:?} has no host (expected http://host:port)"))?;
    if authority.as_str().contains('@') {
        return Err(format!(
            "{text:?}: user info (user:password@) is not allowed in a backend URL"
        ));
    }
    if uri.path_and_query().is_some_and(|pq| pq.as_str() != "/") {
        return Err(format!(
            "{text:?}: a backend URL may not have a path or query (expected http://host:port)"
        ));
    }
    let port = match &authority.as_str()[authority.host().len()..] {
        "" => {
            if tls {
                443
            } else {
                80
            }
        }
        written => {
            let port = &written[1..];
            port_number(port).ok_or_else(|| {
                let port = if port.is_empty() { "(empty)" } else { port };
                format!("{text:?}: port {port} is not a port number from 1 to 65535")
            })?
        }
    };
    let authority = Authority::try_from(format!("{}:{port}", authority.host()))
        .map_err(|err| format!("{text:?}: {err}"))?;
    Ok((url.to_owned(), authority, tls))
}

/// A port as written after the host's `:`: 1 to 5 digits making 1–65535 (`port_u16` alone
/// would read `:80abc` or `:99999` as no port at all, and so as the scheme's default).
fn port_number(written: &str) -> Option<u16> {
    let digits =
        !written.is_empty() && written.len() <= 5 && written.bytes().all(|b| b.is_ascii_digit());
    digits
        .then(|| written.parse::<u32>().ok())
        .flatten()
        .and_then(|port| u16::try_from(port).ok())
        .filter(|port| *port != 0)
}

/// `backend-{position + 1}`: the name of an entry that gives none.
pub fn default_name(position: usize) -> String {
    format!("backend-{}", position + 1)
}

/// A name is 1–64 letters, digits, `-`, `_` or `.`: it goes into URL paths and metric labels.
pub fn check_name(name: &str) -> Result<(), String> {
    let fine = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if name.is_empty() || name.len() > MAX_NAME_LEN || !name.chars().all(fine) {
        return Err(format!(
            "{name:?} is not a backend name: use 1 to {MAX_NAME_LEN} letters, digits, '-', '_' or '.'"
        ));
    }
    Ok(())
}

/// A weight is 1–[`MAX_WEIGHT`].
pub fn check_weight(weight: u64) -> Result<u32, String> {
    u32::try_from(weight)
        .ok()
        .filter(|w| (1..=MAX_WEIGHT).contains(w))
        .ok_or_else(|| {
            format!("{weight} is not a weight: use a whole number from 1 to {MAX_WEIGHT}")
        })
}

/// A `max_connections` is 0 (no limit) to [`MAX_CONNECTIONS`].
pub fn check_max_connections(limit: u64) -> Result<u32, String> {
    u32::try_from(limit)
        .ok()
        .filter(|l| *l <= MAX_CONNECTIONS)
        .ok_or_else(|| {
            format!("{limit} is not a connection limit: use a whole number from 0 (no limit) to {MAX_CONNECTIONS}")
        })
}

/// One validated entry of the pool file (or of a `POST /lb/api/backends` body), before the
/// registry gives it an id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendSpec {
    /// As written, without a trailing slash.
    pub url: String,
    /// `host:port`: two entries with the same one are the same backend.
    pub authority: Authority,
    /// `https://`.
    pub tls: bool,
    /// 1–[`MAX_WEIGHT`].
    pub weight: u32,
    /// `None`: the default ([`default_name`] of its position, if free).
    pub name: Option<String>,
    /// Its own limit of requests in flight (0 = none); `None`: its pool's.
    pub max_connections: Option<u32>,
    /// `"discovery": "dns"`: not one backend but one per address the host resolves to.
    pub dns: bool,
}

impl BackendSpec {
    /// Validates a URL, a weight and a name; `Err` is `(field, problem)`.
    pub fn parse(
        url: &str,
        weight: Option<u64>,
        name: Option<&str>,
    ) -> Result<Self, (&'static str, String)> {
        let (url, authority, tls) = parse_url(url).map_err(|p| ("url", p))?;
        let weight = weight
            .map_or(Ok(1), check_weight)
            .map_err(|p| ("weight", p))?;
        if let Some(name) = name {
            check_name(name).map_err(|p| ("name", p))?;
        }
        Ok(Self {
            url,
            authority,
            tls,
            weight,
            name: name.map(str::to_owned),
            max_connections: None,
            dns: false,
        })
    }

    /// The entry with its own `max_connections`, validated; `Err` is `(field, problem)`.
    pub fn with_max_connections(
        mut self,
        limit: Option<u64>,
    ) -> Result<Self, (&'static str, String)> {
        self.max_connections = limit
            .map(check_max_connections)
            .transpose()
            .map_err(|p| ("max_connections", p))?;
        Ok(self)
    }

    /// The entry with its `discovery` (`"dns"`, or none), validated; `Err` is `(field, problem)`.
    pub fn with_discovery(
        mut self,
        discovery: Option<&str>,
    ) -> Result<Self, (&'static str, String)> {
        match discovery {
            None => {}
            Some("dns") => self.dns = true,
            Some(other) => {
                let problem = format!("{other:?} is not a discovery: the one there is is \"dns\"");
                return Err(("discovery", problem));
            }
        }
        Ok(self)
    }
}

/// A backend of the pool at start, with its weight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolEntry {
    pub backend: Backend,
    pub weight: u32,
    /// Its own limit of requests in flight; `None`: its pool's.
    pub max_connections: Option<u32>,
}

impl PoolEntry {
    /// Weight 1.
    pub fn new(backend: Backend) -> Self {
        Self {
            backend,
            weight: 1,
            max_connections: None,
        }
    }
}

/// Which `Host` a pool's backends receive (`host_header` of a pool).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HostHeader {
    /// The client's, as it came (without one, the backend's `host:port`).
    #[default]
    Client,
    /// The backend's `host:port`.
    Backend,
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
    /// Its share relative to the others (1–1000).
    pub weight: u32,
    /// Taking no new requests (by hand, or on its way out of the pool).
    pub draining: bool,
    /// Out of rotation for a while for answering 5xx in a row (outlier ejection).
    pub ejected: bool,
    /// Attempts sent to it since start.
    pub requests: u64,
    /// Attempts that failed before a response.
    pub failures: u64,
    /// Attempts under way now.
    pub in_flight: u64,
}

/// The last probe of one backend, for the status API.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProbeReport {
    pub ok: bool,
    pub latency_ms: f64,
    /// Why it failed.
    pub error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A port is 1 to 65535 written in digits; anything else is refused rather than read as
    /// the scheme's default port, and user info is named as such.
    #[test]
    fn urls_with_bad_ports_or_user_info_are_refused() {
        for (url, authority) in [
            ("http://127.0.0.1:1", "127.0.0.1:1"),
            ("http://127.0.0.1:65535/", "127.0.0.1:65535"),
            ("http://h:00080", "h:80"),
            ("https://h", "h:443"),
            ("http://[::1]:8080", "[::1]:8080"),
            ("http://[::1]", "[::1]:80"),
        ] {
            let backend = Backend::parse(0, url).expect(url);
            assert_eq!(backend.authority.as_str(), authority, "{url}");
        }
        for url in [
            "http://127.0.0.1:notaport",
            "http://127.0.0.1:99999",
            "http://127.0.0.1:80abc",
            "http://127.0.0.1:65536",
            "http://127.0.0.1:0",
            "http://127.0.0.1:",
            "http://127.0.0.1:-1",
            "http://[::1]:x",
            "http://h:123456",
        ] {
            let problem = Backend::parse(0, url).expect_err(url);
            assert!(
                problem.contains("port") && problem.contains("1 to 65535"),
                "{url}: {problem}"
            );
        }
        let problem = Backend::parse(0, "http://user:pw@host:80").expect_err("user info");
        assert!(problem.contains("user info"), "{problem}");
    }

    /// Specs refuse bad weights and names with the field named.
    #[test]
    fn specs_name_the_bad_field() {
        assert_eq!(
            BackendSpec::parse("http://a:1", Some(0), None)
                .expect_err("0")
                .0,
            "weight"
        );
        assert_eq!(
            BackendSpec::parse("http://a:1", Some(1001), None)
                .expect_err("big")
                .0,
            "weight"
        );
        assert_eq!(
            BackendSpec::parse("http://a:1", None, Some("a b"))
                .expect_err("space")
                .0,
            "name"
        );
        assert_eq!(
            BackendSpec::parse("ftp://a:1", None, None)
                .expect_err("scheme")
                .0,
            "url"
        );
        let spec = BackendSpec::parse("http://a:1/", Some(1000), Some("big.1")).expect("valid");
        assert_eq!((spec.url.as_str(), spec.weight), ("http://a:1", 1000));
        let secure = BackendSpec::parse("https://a", None, None).expect("https");
        assert_eq!((secure.authority.as_str(), secure.tls), ("a:443", true));
    }
}
