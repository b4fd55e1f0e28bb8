//! A request's host as routes compare it: from HTTP/2's `:authority` (the URI's) or HTTP/1.1's
//! `Host`, lowercased, without a port or a trailing dot.

use std::borrow::Cow;

use actix_web::http::header::HOST;
use actix_web::HttpRequest;

/// The request's host, normalised; `None` without one.
pub fn of_request(req: &HttpRequest) -> Option<Cow<'_, str>> {
    let written = match req.uri().authority() {
        Some(authority) => authority.as_str(),
        None => req.headers().get(HOST)?.to_str().ok()?,
    };
    Some(normalise(written))
}

/// `Api.Example.com:8080` → `api.example.com`; `[::1]:80` → `[::1]`; `example.com.` →
/// `example.com`. Borrows when there is nothing to change.
pub fn normalise(written: &str) -> Cow<'_, str> {
    let host = match written.strip_prefix('[') {
        Some(rest) => rest.find(']').map_or(written, |end| &written[..end + 2]),
        None => written.split(':').next().unwrap_or_default(),
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(host.to_ascii_lowercase())
    } else {
        Cow::Borrowed(host)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_port_case_and_trailing_dot() {
        let cases = [
            ("api.example.com", "api.example.com"),
            ("API.Example.COM", "api.example.com"),
            ("api.example.com:8080", "api.example.com"),
            ("Api.Example.com.:443", "api.example.com"),
            ("[::1]:8080", "[::1]"),
            ("[::1]", "[::1]"),
            ("127.0.0.1:80", "127.0.0.1"),
            ("", ""),
        ];
        for (written, host) in cases {
            assert_eq!(normalise(written), host, "{written}");
        }
        assert!(matches!(normalise("a.b:1"), Cow::Borrowed(_)));
    }
}
