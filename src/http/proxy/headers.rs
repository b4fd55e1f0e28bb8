//! Header rewriting between client and backend. Hop-by-hop headers (RFC 9110 §7.6.1) are
//! dropped in both directions, together with every header the `Connection` header names;
//! `X-Forwarded-For` is appended to and `X-Forwarded-Proto` / `-Host` are set (RFC 7239 §1 for
//! the de-facto headers these stand for). The client's `Host` is kept, so virtual-hosted
//! backends see the name the client asked for. `Expect: 100-continue` is not forwarded: the
//! server has already answered the client's `100 Continue` when the request head arrived (and
//! nginx does not forward it either), so the body is streamed at once rather than after a
//! second wait for the backend's `100`; any other expectation is forwarded for the backend to
//! judge.

use std::fmt;
use std::net::IpAddr;

use actix_web::http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// `X-Forwarded-For`: the chain of client addresses.
pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// `X-Forwarded-Proto`: the scheme the client used (`https` on the TLS listener).
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
/// `X-Forwarded-Host`: the `Host` the client sent.
pub const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Connection-specific headers that a proxy must not forward (RFC 9110 §7.6.1), plus the
/// legacy `Proxy-Connection`. `Content-Length` is not here: framing is rebuilt from the body
/// by the HTTP encoder, which writes its own length or chunking.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "proxy-authorization"
            | "proxy-authenticate"
    )
}

/// Whether `Connection` (any of its values) names `name`, as in `Connection: close, X-Secret`;
/// `Host` is never dropped this way. Compared in place: nothing is parsed into a `HeaderName`
/// (a non-standard name would be an allocation per response, and nginx answers with
/// `Connection: keep-alive` every time).
fn named_by_connection(headers: &HeaderMap, name: &HeaderName) -> bool {
    *name != header::HOST
        && headers
            .get_all(header::CONNECTION)
            .filter_map(|value| value.to_str().ok())
            .flat_map(|list| list.split(','))
            .any(|token| token.trim().eq_ignore_ascii_case(name.as_str()))
}

/// Copies every end-to-end header of `source`, keeping repeated headers repeated, and skipping
/// `also_skip` as well as hop-by-hop ones.
fn copy_end_to_end(source: &HeaderMap, extra: usize, also_skip: &[HeaderName]) -> HeaderMap {
    let has_connection = source.contains_key(header::CONNECTION);
    let mut out = HeaderMap::with_capacity(source.len() + extra);
    for (name, value) in source.iter() {
        if is_hop_by_hop(name)
            || also_skip.contains(name)
            || (has_connection && named_by_connection(source, name))
        {
            continue;
        }
        out.append(name.clone(), value.clone());
    }
    out
}

/// Client headers not copied to the backend besides hop-by-hop ones: the framing is the
/// encoder's, the forwarding headers are set anew, and the last, `Expect`, only when it asks
/// for `100-continue` (see the module's notes).
const NOT_COPIED: [HeaderName; 5] = [
    header::CONTENT_LENGTH,
    X_FORWARDED_FOR,
    X_FORWARDED_PROTO,
    X_FORWARDED_HOST,
    header::EXPECT,
];

/// The headers sent to the backend for a client request from `peer`.
pub fn to_backend(client: &HeaderMap, peer: Option<IpAddr>, via_tls: bool) -> HeaderMap {
    let continues = client
        .get(header::EXPECT)
        .is_some_and(|value| value.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let skip = if continues {
        &NOT_COPIED[..]
    } else {
        &NOT_COPIED[..NOT_COPIED.len() - 1]
    };
    let mut out = copy_end_to_end(client, 3, skip);
    if let Some(xff) = forwarded_for(client, peer) {
        out.insert(X_FORWARDED_FOR, xff);
    }
    let proto = if via_tls { "https" } else { "http" };
    out.insert(X_FORWARDED_PROTO, HeaderValue::from_static(proto));
    if let Some(host) = client.get(header::HOST) {
        out.insert(X_FORWARDED_HOST, host.clone());
    }
    out
}

/// The headers sent to the client for a backend response. `Content-Length` is kept: the encoder
/// replaces it with the body's own size, except on 304 where it is the representation's.
pub fn to_client(backend: &HeaderMap) -> HeaderMap {
    copy_end_to_end(backend, 0, &[])
}

/// Existing `X-Forwarded-For` values (all of them, in order) followed by the peer's address,
/// written into one buffer.
fn forwarded_for(client: &HeaderMap, peer: Option<IpAddr>) -> Option<HeaderValue> {
    use std::fmt::Write as _;
    // Room for what usually comes: one earlier hop or none, and an address.
    let mut chain = String::with_capacity(64);
    let mut push = |item: fmt::Arguments<'_>| {
        if !chain.is_empty() {
            chain.push_str(", ");
        }
        // Writing to a String cannot fail.
        let _ = chain.write_fmt(item);
    };
    for value in client.get_all(X_FORWARDED_FOR) {
        let Ok(text) = value.to_str() else { continue };
        let text = text.trim();
        if !text.is_empty() {
            push(format_args!("{text}"));
        }
    }
    if let Some(peer) = peer {
        push(format_args!("{}", crate::net::canonical(peer)));
    }
    HeaderValue::try_from(chain).ok().filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(
                HeaderName::try_from(*name).expect("name"),
                HeaderValue::try_from(*value).expect("value"),
            );
        }
        headers
    }

    fn peer() -> Option<IpAddr> {
        Some("192.0.2.7".parse().expect("ip"))
    }

    /// Hop-by-hop headers and those named in Connection stay behind; others pass, repeats kept.
    #[test]
    fn drops_hop_by_hop_and_connection_named_headers() {
        let client = map(&[
            ("host", "shop.test"),
            ("connection", "keep-alive, X-Secret, host"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("upgrade", "websocket"),
            ("proxy-authorization", "Basic eA=="),
            ("proxy-connection", "keep-alive"),
            ("x-secret", "1"),
            ("content-length", "3"),
            ("accept", "a"),
            ("accept", "b"),
        ]);
        let out = to_backend(&client, peer(), false);
        for gone in [
            "connection",
            "keep-alive",
            "te",
            "upgrade",
            "proxy-authorization",
            "proxy-connection",
            "x-secret",
            "content-length",
        ] {
            assert!(!out.contains_key(gone), "{gone} was forwarded");
        }
        assert_eq!(out.get_all("accept").count(), 2);
        assert_eq!(out.get("host").expect("host kept"), "shop.test");
        assert_eq!(out.get("x-forwarded-host").expect("xfh"), "shop.test");
        assert_eq!(out.get("x-forwarded-proto").expect("xfp"), "http");
        let tls = to_backend(&client, peer(), true);
        assert_eq!(tls.get("x-forwarded-proto").expect("xfp"), "https");
    }

    /// The peer is appended to every existing X-Forwarded-For value, in order.
    #[test]
    fn appends_peer_to_existing_forwarded_for() {
        let client = map(&[
            ("x-forwarded-for", "203.0.113.1"),
            ("x-forwarded-for", "198.51.100.2, 10.0.0.1"),
        ]);
        let out = to_backend(&client, peer(), false);
        assert_eq!(
            out.get("x-forwarded-for").expect("xff"),
            "203.0.113.1, 198.51.100.2, 10.0.0.1, 192.0.2.7"
        );
        let out = to_backend(
            &HeaderMap::new(),
            Some("::ffff:10.1.2.3".parse().expect("ip")),
            false,
        );
        assert_eq!(out.get("x-forwarded-for").expect("xff"), "10.1.2.3");
    }

    /// `Expect: 100-continue` (in any case) is answered by the server, not forwarded; any
    /// other expectation is the backend's to judge.
    #[test]
    fn expect_continue_stays_here_other_expectations_go_on() {
        let continues = to_backend(&map(&[("expect", "100-Continue")]), peer(), false);
        assert!(!continues.contains_key("expect"));
        let other = to_backend(&map(&[("expect", "x-special")]), peer(), false);
        assert_eq!(other.get("expect").expect("forwarded"), "x-special");
    }

    /// Responses lose hop-by-hop headers but keep Set-Cookie twice and Content-Length.
    #[test]
    fn response_keeps_repeats_and_length() {
        let backend = map(&[
            ("set-cookie", "a=1"),
            ("set-cookie", "b=2"),
            ("transfer-encoding", "chunked"),
            ("connection", "close"),
            ("content-length", "10"),
        ]);
        let out = to_client(&backend);
        assert_eq!(out.get_all("set-cookie").count(), 2);
        assert!(!out.contains_key("transfer-encoding"));
        assert!(!out.contains_key("connection"));
        assert_eq!(out.get("content-length").expect("length"), "10");
    }
}
