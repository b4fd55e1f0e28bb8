//! Who a request comes from, as the rate limiter counts it: its API key
//! (`rate_limit.api_key_header`) when that names a registered client, else its address — the
//! peer's IP, or, when the peer is one of `rate_limit.trusted_proxies`, the right-most
//! `X-Forwarded-For` address that is not a trusted proxy (RFC 7239 §5.2's reasoning: every hop
//! left of the first untrusted one could have been written by the client).

use std::net::{IpAddr, Ipv4Addr};

use actix_web::http::header::HeaderName;
use actix_web::HttpRequest;

use crate::client::ClientKey;
use crate::http::proxy::headers::X_FORWARDED_FOR;
use crate::limiter::Limiter;
use crate::net::{canonical, Cidr};
use crate::registry::hash_bytes;
use crate::settings::RateLimitSettings;

/// The rules for telling clients apart.
pub struct ClientIdentity {
    api_key_header: HeaderName,
    trusted_proxies: Vec<Cidr>,
}

impl ClientIdentity {
    pub fn new(settings: &RateLimitSettings) -> Self {
        Self {
            api_key_header: settings.api_key_header.clone(),
            trusted_proxies: settings.trusted_proxies.clone(),
        }
    }

    /// Who `req` counts against.
    pub fn identify(&self, req: &HttpRequest, limiter: &Limiter) -> ClientKey {
        let api_key = req
            .headers()
            .get(&self.api_key_header)
            .and_then(|v| v.to_str().ok());
        limiter.key_for(api_key, self.client_ip(req))
    }

    /// Where `consistent_hash` places the client: its API-key header's value when present
    /// (registered or not), else its address under the trusted-proxy rules.
    pub fn affinity(&self, req: &HttpRequest) -> u64 {
        match req.headers().get(&self.api_key_header) {
            Some(key) => hash_bytes(key.as_bytes()),
            None => match self.client_ip(req) {
                IpAddr::V4(ip) => hash_bytes(&ip.octets()),
                IpAddr::V6(ip) => hash_bytes(&ip.octets()),
            },
        }
    }

    /// The client's address under the trusted-proxy rules.
    pub fn client_ip(&self, req: &HttpRequest) -> IpAddr {
        let peer = req
            .peer_addr()
            .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |a| canonical(a.ip()));
        if !self.is_trusted(peer) {
            return peer;
        }
        let chain: Vec<IpAddr> = req
            .headers()
            .get_all(X_FORWARDED_FOR)
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|hop| hop.trim().parse::<IpAddr>().ok().map(canonical))
            .collect();
        chain
            .iter()
            .rev()
            .find(|ip| !self.is_trusted(**ip))
            .or(chain.first())
            .copied()
            .unwrap_or(peer)
    }

    fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted_proxies.iter().any(|net| net.contains(ip))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    fn identity(trusted: &[&str]) -> ClientIdentity {
        ClientIdentity {
            api_key_header: HeaderName::from_static("x-api-key"),
            trusted_proxies: trusted.iter().map(|c| c.parse().expect("cidr")).collect(),
        }
    }

    fn request(peer: &str, xff: Option<&str>) -> HttpRequest {
        let mut req = TestRequest::default().peer_addr(peer.parse().expect("peer"));
        if let Some(xff) = xff {
            req = req.insert_header(("X-Forwarded-For", xff));
        }
        req.to_http_request()
    }

    /// X-Forwarded-For counts only from a trusted peer, and then its right-most untrusted hop.
    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let lb = identity(&["10.0.0.0/8"]);
        let direct = request("192.0.2.9:1000", Some("203.0.113.5"));
        assert_eq!(
            lb.client_ip(&direct),
            "192.0.2.9".parse::<IpAddr>().expect("ip")
        );
        let proxied = request("10.0.0.2:1000", Some("198.51.100.1, 203.0.113.5, 10.0.0.7"));
        assert_eq!(
            lb.client_ip(&proxied),
            "203.0.113.5".parse::<IpAddr>().expect("ip")
        );
        let all_trusted = request("10.0.0.2:1000", Some("10.0.0.9, 10.0.0.7"));
        assert_eq!(
            lb.client_ip(&all_trusted),
            "10.0.0.9".parse::<IpAddr>().expect("ip")
        );
        let garbage = request("10.0.0.2:1000", Some("not an address"));
        assert_eq!(
            lb.client_ip(&garbage),
            "10.0.0.2".parse::<IpAddr>().expect("ip")
        );
    }
}
