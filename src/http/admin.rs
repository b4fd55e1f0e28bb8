//! Access to the balancer's own API (`/lb/api/*`, and `/clients` later): with `admin.token`
//! set, a request needs `Authorization: Bearer <token>`; with it empty, only loopback peers
//! are let in. One function decides, and its errors are the JSON 401/403 answers.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpRequest, HttpResponse, ResponseError};

use crate::http::error::json_response;
use crate::net::canonical;
use crate::settings::AdminSettings;

/// Why an admin request is refused.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("Unauthorized: a valid bearer token is required")]
    Unauthorized,
    #[error("Forbidden: the admin API only answers loopback clients when no admin token is set")]
    Forbidden,
}

impl ResponseError for AdminError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::Forbidden => StatusCode::FORBIDDEN,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut res = json_response(self.status_code(), &self.to_string());
        if let Self::Unauthorized = self {
            res.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        res
    }
}

/// Lets the request through or says why not.
pub fn authorize(req: &HttpRequest, admin: &AdminSettings) -> Result<(), AdminError> {
    match &admin.token {
        Some(token) => {
            let presented = req
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(str::trim);
            match presented {
                Some(given) if token_matches(given, token) => Ok(()),
                _ => Err(AdminError::Unauthorized),
            }
        }
        None => match req.peer_addr().map(|a| canonical(a.ip())) {
            Some(ip) if ip.is_loopback() => Ok(()),
            _ => Err(AdminError::Forbidden),
        },
    }
}

/// Whether `given` is the admin token (constant time).
pub fn token_matches(given: &str, token: &str) -> bool {
    constant_time_eq(given.as_bytes(), token.as_bytes())
}

/// Compares without stopping at the first difference, so timing does not reveal the prefix
/// that matched (the length is not secret).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    fn admin(token: Option<&str>) -> AdminSettings {
        AdminSettings {
            token: token.map(str::to_owned),
        }
    }

    /// With a token: the right bearer passes, a wrong or missing one is 401.
    #[test]
    fn token_rules() {
        let settings = admin(Some("s3cret"));
        let good = TestRequest::default()
            .insert_header(("Authorization", "Bearer s3cret"))
            .to_http_request();
        assert!(authorize(&good, &settings).is_ok());
        for value in ["Bearer s3cre", "Bearer s3cret2", "Basic s3cret", ""] {
            let req = TestRequest::default()
                .insert_header(("Authorization", value))
                .to_http_request();
            assert!(
                matches!(authorize(&req, &settings), Err(AdminError::Unauthorized)),
                "{value}"
            );
        }
    }

    /// Without a token: loopback (v4, v6, mapped) passes, anything else is 403.
    #[test]
    fn loopback_rules() {
        let settings = admin(None);
        for (peer, ok) in [
            ("127.0.0.1:5000", true),
            ("[::1]:5000", true),
            ("[::ffff:127.0.0.1]:5000", true),
            ("192.0.2.1:5000", false),
        ] {
            let req = TestRequest::default()
                .peer_addr(peer.parse().expect("addr"))
                .to_http_request();
            assert_eq!(authorize(&req, &settings).is_ok(), ok, "{peer}");
        }
    }
}
