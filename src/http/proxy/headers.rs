//! What of a client's request reaches the backend: the target (its path and query only, so an
//! absolute-form target never chooses the host), and the headers, rewritten between client
//! and backend. Hop-by-hop headers (RFC 9110 §7.6.1) are dropped in both directions, together
//! with every header the `Connection` header names; `X-Forwarded-For` is appended to and
//! `X-Forwarded-Proto` / `-Host` are set (RFC 7239 §1 for the de-facto headers these stand
//! for). The client's `Host` is kept, so virtual-hosted
//! backends see the name the client asked for. `Expect: 100-continue` is not forwarded: the
//! server has already answered the client's `100 Continue` when the request head arrived, so
//! the body is streamed at once rather than after a second wait for the backend's `100`; any
//! other expectation is forwarded for the backend to judge. Nothing else is added: a `Date`,
//! say, reaches the backend only when the client sent one.

use std::net::IpAddr;

use actix_web::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use actix_web::http::uri::PathAndQuery;
use actix_web::web::BytesMut;
use actix_web::HttpRequest;

use crate::digits::push_ip;
use crate::routing::Route;
use crate::trace::{Traceparent, TRACEPARENT};

/// `X-Forwarded-For`: the chain of client addresses.
pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// `X-Forwarded-Proto`: the scheme the client used (`https` on the TLS listener).
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
/// `X-Forwarded-Host`: the `Host` the client sent.
pub const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Connection-specific headers that a proxy must not forward (RFC 9110 §7.6.1), plus the
/// legacy `Proxy-Connection`. `Content-Length` is not here: framing is rebuilt from the body
/// by the HTTP encoder, which writes its own length or chunking.
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authorization",
    "proxy-authenticate",
];

fn is_hop_by_hop(name: &HeaderName) -> bool {
    HOP_BY_HOP.contains(&name.as_str())
}

/// Whether `Connection` names any header besides the hop-by-hop ones (dropped anyway). For the
/// usual `Connection: keep-alive` it does not, and no header needs checking against it.
fn connection_names_others(headers: &HeaderMap) -> bool {
    connection_tokens(headers).any(|token| {
        !token.is_empty()
            && !HOP_BY_HOP
                .iter()
                .any(|name| token.eq_ignore_ascii_case(name))
    })
}

/// The options of every `Connection` header, trimmed, as in `Connection: close, X-Secret`.
fn connection_tokens(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(header::CONNECTION)
        .filter_map(|value| value.to_str().ok())
        .flat_map(|list| list.split(','))
        .map(str::trim)
}

/// Whether `Connection` (any of its values) names `name`; `Host` is never dropped this way.
/// Compared in place: nothing is parsed into a `HeaderName` (a non-standard name would be an
/// allocation per message).
fn named_by_connection(headers: &HeaderMap, name: &HeaderName) -> bool {
    *name != header::HOST
        && connection_tokens(headers).any(|token| token.eq_ignore_ascii_case(name.as_str()))
}

/// Every end-to-end header of `source` in order, repeated headers repeated, skipping
/// `also_skip` as well as hop-by-hop ones.
fn end_to_end<'a>(
    source: &'a HeaderMap,
    also_skip: &'a [HeaderName],
) -> impl Iterator<Item = (&'a HeaderName, &'a HeaderValue)> + 'a {
    let names_others = connection_names_others(source);
    source.iter().filter(move |(name, _)| {
        !(is_hop_by_hop(name)
            || also_skip.contains(name)
            || (names_others && named_by_connection(source, name)))
    })
}

/// [`end_to_end`] copied into a map with room for `extra` more.
fn copy_end_to_end(source: &HeaderMap, extra: usize, also_skip: &[HeaderName]) -> HeaderMap {
    let mut out = HeaderMap::with_capacity(source.len() + extra);
    for (name, value) in end_to_end(source, also_skip) {
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

/// The request's target for the backend: its path and query, without the route's prefix when
/// the route strips it.
pub fn target(req: &HttpRequest, route: Option<&Route>) -> PathAndQuery {
    let written = req
        .uri()
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    match route.filter(|r| r.spec.strip_prefix) {
        Some(route) => PathAndQuery::try_from(route.forwarded_path(written.as_str()).as_ref())
            .unwrap_or(written),
        None => written,
    }
}

/// The headers for the backend of a client request from `peer`, written straight into the
/// request head as `name: value` lines (no map is built only to be written out again). `host`
/// is the backend's `host:port` and whether the client's `Host` goes to it (the pool's
/// `host_header`); the backend's goes when the client's does not, or when it sent none. With
/// tracing on, `traceparent` (the attempt's span) replaces the client's.
pub fn write_to_backend(
    client: &HeaderMap,
    peer: Option<IpAddr>,
    via_tls: bool,
    (backend_host, client_host): (&str, bool),
    traceparent: Option<&Traceparent>,
    out: &mut BytesMut,
) {
    let mut line = |name: &[u8], value: &[u8]| {
        out.extend_from_slice(name);
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    };
    each_to_backend(client, peer, via_tls, |name, value| {
        let ours = (!client_host && name == header::HOST)
            || (traceparent.is_some() && name == TRACEPARENT);
        if !ours {
            line(name.as_str().as_bytes(), value.as_bytes());
        }
    });
    if !client_host || !client.contains_key(header::HOST) {
        line(b"host", backend_host.as_bytes());
    }
    if let Some(traceparent) = traceparent {
        line(TRACEPARENT.as_str().as_bytes(), &traceparent[..]);
    }
}

/// Hands each header for the backend to `emit`: the client's end-to-end ones, then the
/// forwarding headers (never copied from the client, so each comes once).
fn each_to_backend(
    client: &HeaderMap,
    peer: Option<IpAddr>,
    via_tls: bool,
    mut emit: impl FnMut(&HeaderName, &HeaderValue),
) {
    let continues = client
        .get(header::EXPECT)
        .is_some_and(|value| value.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let skip = if continues {
        &NOT_COPIED[..]
    } else {
        &NOT_COPIED[..NOT_COPIED.len() - 1]
    };
    for (name, value) in end_to_end(client, skip) {
        emit(name, value);
    }
    if let Some(xff) = forwarded_for(client, peer) {
        emit(&X_FORWARDED_FOR, &xff);
    }
    let proto = if via_tls { "https" } else { "http" };
    emit(&X_FORWARDED_PROTO, &HeaderValue::from_static(proto));
    if let Some(host) = client.get(header::HOST) {
        emit(&X_FORWARDED_HOST, host);
    }
}

/// The headers sent to the client for a backend response. `Content-Length` is kept: the encoder
/// replaces it with the body's own size, except on 304 where it is the representation's.
pub fn to_client(backend: &HeaderMap) -> HeaderMap {
    copy_end_to_end(backend, 0, &[])
}

/// Existing `X-Forwarded-For` values (all of them, in order) followed by the peer's address,
/// written into one buffer (without the formatting machinery: this runs for every request).
fn forwarded_for(client: &HeaderMap, peer: Option<IpAddr>) -> Option<HeaderValue> {
    // Room for what usually comes: one earlier hop or none, and an address.
    let mut chain = String::with_capacity(64);
    let separate = |chain: &mut String| {
        if !chain.is_empty() {
            chain.push_str(", ");
        }
    };
    for value in client.get_all(X_FORWARDED_FOR) {
        let Ok(text) = value.to_str() else { continue };
        let text = text.trim();
        if !text.is_empty() {
            separate(&mut chain);
            chain.push_str(text);
        }
    }
    if let Some(peer) = peer {
        separate(&mut chain);
        push_ip(&mut chain, crate::net::canonical(peer));
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

    /// The headers for the backend as a map, to look into.
    fn to_backend(client: &HeaderMap, peer: Option<IpAddr>, via_tls: bool) -> HeaderMap {
        let mut out = HeaderMap::new();
        each_to_backend(client, peer, via_tls, |name, value| {
            out.append(name.clone(), value.clone());
        });
        out
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

    /// `Connection: keep-alive` (the usual) names nothing beyond hop-by-hop headers, so all the
    /// others pass; an option that is not hop-by-hop drops its header, in any case.
    #[test]
    fn connection_options_drop_only_what_they_name() {
        let backend = map(&[
            ("connection", "Keep-Alive"),
            ("keep-alive", "timeout=5"),
            ("close", "kept"),
            ("x-a", "1"),
        ]);
        let out = to_client(&backend);
        assert!(!out.contains_key("keep-alive"));
        assert_eq!(out.get("close").expect("not named"), "kept");
        assert_eq!(out.get("x-a").expect("not named"), "1");
        let named = map(&[("connection", "close, X-A"), ("close", "1"), ("x-a", "1")]);
        let out = to_client(&named);
        assert!(!out.contains_key("close"));
        assert!(!out.contains_key("x-a"));
    }

    /// The lines written carry the headers each one is handed, and the backend's address as
    /// `Host` only when the client sent none.
    #[test]
    fn written_lines_carry_what_the_map_does() {
        let lines = |client: &HeaderMap| {
            let mut out = BytesMut::new();
            write_to_backend(
                client,
                peer(),
                true,
                ("10.0.0.1:8080", true),
                None,
                &mut out,
            );
            let text = String::from_utf8(out.to_vec()).expect("ascii");
            let mut pairs: Vec<(String, String)> = text
                .split_terminator("\r\n")
                .map(|line| {
                    let (name, value) = line.split_once(": ").expect("a header line");
                    (name.to_owned(), value.to_owned())
                })
                .collect();
            pairs.sort();
            pairs
        };
        let client = map(&[
            ("host", "shop.test"),
            ("connection", "keep-alive, x-secret"),
            ("x-secret", "1"),
            ("accept", "a"),
            ("accept", "b"),
            ("x-forwarded-for", "203.0.113.1"),
        ]);
        let mut from_map: Vec<(String, String)> = to_backend(&client, peer(), true)
            .iter()
            .map(|(name, value)| {
                let value = value.to_str().expect("ascii").to_owned();
                (name.as_str().to_owned(), value)
            })
            .collect();
        from_map.sort();
        assert_eq!(lines(&client), from_map);
        let hostless = lines(&map(&[("accept", "a")]));
        assert!(hostless.contains(&("host".to_owned(), "10.0.0.1:8080".to_owned())));
        assert!(!hostless.iter().any(|(name, _)| name == "x-forwarded-host"));
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
