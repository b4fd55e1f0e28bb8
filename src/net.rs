//! An IP network in CIDR notation (`10.0.0.0/8`, `::1/128`, or a bare address), used for
//! `rate_limit.trusted_proxies`: only peers inside one of these may set `X-Forwarded-For`.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// An address prefix; IPv4-mapped IPv6 peers are compared as IPv4.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    /// The network address with host bits cleared.
    network: IpAddr,
    /// Prefix length in bits (0..=32 for IPv4, 0..=128 for IPv6).
    prefix_len: u8,
}

impl Cidr {
    /// Whether `addr` lies inside this network.
    pub fn contains(&self, addr: IpAddr) -> bool {
        match (self.network, canonical(addr)) {
            (IpAddr::V4(net), IpAddr::V4(a)) => {
                mask_v4(u32::from(a), self.prefix_len) == u32::from(net)
            }
            (IpAddr::V6(net), IpAddr::V6(a)) => {
                mask_v6(u128::from(a), self.prefix_len) == u128::from(net)
            }
            _ => false,
        }
    }
}

/// `::ffff:a.b.c.d` is the IPv4 peer `a.b.c.d` seen through a dual-stack socket.
pub fn canonical(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

/// Keeps the top `prefix_len` bits (a shift by the full width means "no bits").
fn mask_v4(bits: u32, prefix_len: u8) -> u32 {
    bits & u32::MAX
        .checked_shl(32 - u32::from(prefix_len))
        .unwrap_or(0)
}

fn mask_v6(bits: u128, prefix_len: u8) -> u128 {
    let mask = u128::MAX
        .checked_shl(128 - u32::from(prefix_len))
        .unwrap_or(0);
    bits & mask
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (addr_text, len_text) = match text.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (text, None),
        };
        let addr: IpAddr = addr_text
            .trim()
            .parse()
            .map_err(|_| format!("{text:?} is not an IP address or CIDR network"))?;
        let addr = canonical(addr);
        let max_len = if addr.is_ipv4() { 32 } else { 128 };
        let prefix_len = match len_text {
            None => max_len,
            Some(l) => l
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|l| *l <= max_len)
                .ok_or_else(|| format!("{text:?}: prefix length must be 0..={max_len}"))?,
        };
        let network = match addr {
            IpAddr::V4(a) => IpAddr::V4(mask_v4(u32::from(a), prefix_len).into()),
            IpAddr::V6(a) => IpAddr::V6(mask_v6(u128::from(a), prefix_len).into()),
        };
        Ok(Self {
            network,
            prefix_len,
        })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix_len)
    }
}

/// `localhost`, `127.x.y.z` or `[::1]`, with a port.
pub fn is_loopback_authority(authority: &str) -> bool {
    let host = authority
        .rsplit_once(':')
        .map_or(authority, |(host, _)| host);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| canonical(ip).is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("test address")
    }

    /// A /8 holds its own addresses and nothing next to it.
    #[test]
    fn ipv4_prefix_contains_only_its_range() {
        let net: Cidr = "10.0.0.0/8".parse().expect("valid");
        assert!(net.contains(ip("10.255.1.2")));
        assert!(!net.contains(ip("11.0.0.1")));
        assert!(!net.contains(ip("::1")));
    }

    /// A bare address is a /32 and a /0 holds every IPv4 address.
    #[test]
    fn bare_address_and_zero_prefix() {
        let one: Cidr = "127.0.0.1".parse().expect("valid");
        assert!(one.contains(ip("127.0.0.1")));
        assert!(!one.contains(ip("127.0.0.2")));
        let all: Cidr = "0.0.0.0/0".parse().expect("valid");
        assert!(all.contains(ip("203.0.113.9")));
    }

    /// IPv6 prefixes work, and an IPv4-mapped peer matches an IPv4 network.
    #[test]
    fn ipv6_and_mapped_addresses() {
        let net: Cidr = "fd00::/8".parse().expect("valid");
        assert!(net.contains(ip("fd12::1")));
        assert!(!net.contains(ip("fe80::1")));
        let v4: Cidr = "192.168.0.0/16".parse().expect("valid");
        assert!(v4.contains(ip("::ffff:192.168.3.4")));
    }

    /// Garbage and out-of-range prefixes are rejected with the text in the message.
    #[test]
    fn rejects_bad_networks() {
        for bad in ["", "10.0.0.0/33", "::/129", "host/8", "10.0.0.0/x"] {
            let err = bad.parse::<Cidr>().expect_err(bad);
            assert!(err.contains(bad), "{err}");
        }
    }
}
