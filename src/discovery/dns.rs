//! Lookups for `"discovery": "dns"` entries with `hickory-resolver`: every entry's host is
//! asked for its A and AAAA records when the entry appears and every `backends.dns_refresh_secs`
//! after, each lookup a task of its own so a slow resolver delays no other entry. What to look
//! up comes from a `targets` function (the running pools) and every outcome goes to `deliver`
//! (the registry), which decides what an answer means for the pool. The resolver keeps no
//! cache: the refresh period, not the records' TTL, says how old an answer may be.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::time::{Duration, Instant};

use hickory_resolver::config::{LookupIpStrategy, NameServerConfig, ResolverConfig};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::xfer::Protocol;
use hickory_resolver::proto::ProtoErrorKind;
use hickory_resolver::{ResolveError, TokioResolver};

use crate::backend::BackendId;

/// How often the running entries are looked at for new ones and due lookups.
const TICK: Duration = Duration::from_millis(100);

/// How long one query waits for a server, and how often it is sent.
const QUERY_TIMEOUT: Duration = Duration::from_secs(2);
const QUERY_ATTEMPTS: usize = 2;

/// An entry to look up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsTarget {
    pub entry: BackendId,
    /// The host of the entry's URL.
    pub host: String,
}

/// One lookup's outcome for `entry`: its addresses (never an empty list), or why there are none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lookup {
    pub entry: BackendId,
    pub outcome: Result<Vec<IpAddr>, String>,
}

/// The resolver for `servers` (UDP), or the system's configuration when there are none.
pub fn resolver(servers: &[SocketAddr]) -> Result<TokioResolver, String> {
    let mut builder = if servers.is_empty() {
        TokioResolver::builder_tokio()
            .map_err(|err| format!("cannot read the system's DNS configuration: {err}"))?
    } else {
        let mut config = ResolverConfig::new();
        for server in servers {
            config.add_name_server(NameServerConfig::new(*server, Protocol::Udp));
        }
        TokioResolver::builder_with_config(config, TokioConnectionProvider::default())
    };
    let options = builder.options_mut();
    options.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
    options.cache_size = 0;
    options.timeout = QUERY_TIMEOUT;
    options.attempts = QUERY_ATTEMPTS;
    Ok(builder.build())
}

/// Looks up `targets()` at once and every `refresh` after, for as long as the current arbiter
/// runs; every outcome goes to `deliver` (without a `resolver`, why not).
pub fn keep_resolving(
    resolver: Result<TokioResolver, String>,
    refresh: Duration,
    targets: impl Fn() -> Vec<DnsTarget> + 'static,
    deliver: impl Fn(Lookup) + 'static,
) {
    let deliver = Rc::new(deliver);
    actix_rt::spawn(async move {
        let mut due: HashMap<BackendId, Instant> = HashMap::new();
        loop {
            let now = Instant::now();
            let targets = targets();
            due.retain(|entry, _| targets.iter().any(|t| t.entry == *entry));
            for target in targets {
                let next = due.entry(target.entry).or_insert(now);
                if *next > now {
                    continue;
                }
                *next = now + refresh;
                let (resolver, deliver) = (resolver.clone(), Rc::clone(&deliver));
                actix_rt::spawn(async move {
                    deliver(match resolver {
                        Ok(resolver) => look_up(&resolver, target).await,
                        Err(problem) => Lookup {
                            entry: target.entry,
                            outcome: Err(problem),
                        },
                    })
                });
            }
            actix_rt::time::sleep(TICK).await;
        }
    });
}

/// One lookup of `target`'s A and AAAA records.
async fn look_up(resolver: &TokioResolver, target: DnsTarget) -> Lookup {
    let outcome = match resolver.lookup_ip(target.host.as_str()).await {
        Ok(found) => {
            let mut addresses: Vec<IpAddr> = found.iter().collect();
            addresses.sort_unstable();
            addresses.dedup();
            if addresses.is_empty() {
                Err(format!("{} has no A or AAAA record", target.host))
            } else {
                Ok(addresses)
            }
        }
        Err(err) => Err(describe(&target.host, &err)),
    };
    Lookup {
        entry: target.entry,
        outcome,
    }
}

/// Why a lookup of `host` found nothing, in the DNS's own words: the answer's code (`NXDOMAIN`,
/// `SERVFAIL`, …), an empty answer, or the resolver's error (a timeout).
fn describe(host: &str, err: &ResolveError) -> String {
    let code = err.proto().and_then(|proto| match proto.kind() {
        ProtoErrorKind::NoRecordsFound { response_code, .. } => Some(*response_code),
        _ => None,
    });
    match code {
        Some(ResponseCode::NoError) => format!("{host} has no A or AAAA record"),
        Some(code) => format!(
            "{host}: the DNS server answered {} ({code:?})",
            code.to_str()
        ),
        None => format!("looking up {host} failed: {err}"),
    }
}
