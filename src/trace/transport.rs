//! How export requests reach the collector: posted through awc, the HTTP client the binary has
//! already (with the backends' rustls configuration for `https://` collectors), on the
//! exporting thread, retried while the collector says it is busy or cannot be reached.

use std::sync::Arc;
use std::time::Duration;

use actix_web::http::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use actix_web::http::StatusCode;
use awc::{Client, Connector};
use rustls::ClientConfig;
use tokio::time::Instant;

/// Retries of one post after the first try.
const RETRIES: u32 = 3;

/// The wait before the first retry, doubled before each next one.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);

/// Where and how batches are posted.
pub struct Collector {
    client: Client,
    endpoint: String,
    /// From `OTEL_EXPORTER_OTLP_TRACES_HEADERS` or `OTEL_EXPORTER_OTLP_HEADERS`.
    headers: Vec<(HeaderName, HeaderValue)>,
    /// Longest one post, with its retries, may take.
    timeout: Duration,
}

impl Collector {
    /// Built on the thread that uses it (an awc client is not `Send`).
    pub fn new(
        tls: &Arc<ClientConfig>,
        endpoint: String,
        headers: Vec<(HeaderName, HeaderValue)>,
        timeout: Duration,
    ) -> Self {
        let client = Client::builder()
            .connector(
                Connector::new()
                    .rustls_0_23(Arc::clone(tls))
                    .timeout(timeout),
            )
            .disable_redirects()
            .no_default_headers()
            .timeout(timeout)
            .finish();
        Self {
            client,
            endpoint,
            headers,
            timeout,
        }
    }

    /// Posts `body`, retrying (100, 200, 400 ms apart) while the collector cannot be reached,
    /// times out, or answers 429, 502, 503 or 504; `Err` says why the last try failed.
    pub async fn post(&self, body: Vec<u8>) -> Result<(), String> {
        let body = actix_web::web::Bytes::from(body);
        let deadline = Instant::now() + self.timeout;
        let mut backoff = FIRST_BACKOFF;
        let mut tries = 0;
        loop {
            let failure = match self.try_post(body.clone()).await {
                Ok(()) => return Ok(()),
                Err(failure) => failure,
            };
            tries += 1;
            if !failure.retry || tries > RETRIES || Instant::now() + backoff >= deadline {
                return Err(failure.why);
            }
            tokio::time::sleep(backoff).await;
            backoff *= 2;
        }
    }

    async fn try_post(&self, body: actix_web::web::Bytes) -> Result<(), Failure> {
        let mut request = self
            .client
            .post(&self.endpoint)
            .insert_header((CONTENT_TYPE, "application/x-protobuf"));
        for (name, value) in &self.headers {
            request = request.insert_header((name.clone(), value.clone()));
        }
        let mut answer = request.send_body(body).await.map_err(|err| Failure {
            why: err.to_string(),
            retry: true,
        })?;
        // The answer's body (empty, or a partial-success message) is read so the connection
        // can carry the next post.
        let _ = answer.body().limit(1 << 20).await;
        let status = answer.status();
        if status.is_success() {
            return Ok(());
        }
        Err(Failure {
            why: format!("the collector answered {status}"),
            retry: matches!(
                status,
                StatusCode::TOO_MANY_REQUESTS
                    | StatusCode::BAD_GATEWAY
                    | StatusCode::SERVICE_UNAVAILABLE
                    | StatusCode::GATEWAY_TIMEOUT
            ),
        })
    }
}

struct Failure {
    why: String,
    retry: bool,
}

/// The headers every post carries, from `OTEL_EXPORTER_OTLP_TRACES_HEADERS` or else
/// `OTEL_EXPORTER_OTLP_HEADERS`: `name=value` pairs separated by commas, values
/// percent-encoded, as the OpenTelemetry specification has it.
pub fn headers_from_env() -> Result<Vec<(HeaderName, HeaderValue)>, String> {
    for variable in [
        "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
        "OTEL_EXPORTER_OTLP_HEADERS",
    ] {
        if let Ok(list) = std::env::var(variable) {
            return parse_headers(&list).map_err(|why| format!("{variable}: {why}"));
        }
    }
    Ok(Vec::new())
}

fn parse_headers(list: &str) -> Result<Vec<(HeaderName, HeaderValue)>, String> {
    let pairs = list.split(',').filter(|pair| !pair.trim().is_empty());
    pairs
        .map(|pair| {
            let (name, value) = pair
                .split_once('=')
                .ok_or_else(|| format!("`{}` is not name=value", pair.trim()))?;
            let name = HeaderName::from_bytes(name.trim().as_bytes())
                .map_err(|_| format!("`{}` is not a header name", name.trim()))?;
            let value = percent_decoded(value.trim())
                .and_then(|value| HeaderValue::from_bytes(&value).ok())
                .ok_or_else(|| format!("the value of `{name}` is not a header value"))?;
            Ok((name, value))
        })
        .collect()
}

/// `%XX` sequences turned into their bytes; `None` when one is cut short or not hex.
fn percent_decoded(text: &str) -> Option<Vec<u8>> {
    let mut bytes = Vec::with_capacity(text.len());
    let mut rest = text.as_bytes();
    while let Some((&first, tail)) = rest.split_first() {
        if first == b'%' {
            let hex = std::str::from_utf8(tail.get(..2)?).ok()?;
            bytes.push(u8::from_str_radix(hex, 16).ok()?);
            rest = &tail[2..];
        } else {
            bytes.push(first);
            rest = tail;
        }
    }
    Some(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_pairs_with_percent_encoded_values() {
        let headers = parse_headers(" api-key = a%20b%2Cc ,x-tenant=blue,").expect("valid");
        let shown: Vec<_> = headers
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_bytes()))
            .collect();
        assert_eq!(
            shown,
            [("api-key", &b"a b,c"[..]), ("x-tenant", &b"blue"[..])]
        );
        assert!(parse_headers("").expect("empty").is_empty());
    }

    #[test]
    fn bad_headers_name_what_is_wrong() {
        assert_eq!(
            parse_headers("api-key").unwrap_err(),
            "`api-key` is not name=value"
        );
        assert_eq!(
            parse_headers("bad name=1").unwrap_err(),
            "`bad name` is not a header name"
        );
        let cut = parse_headers("key=%4").unwrap_err();
        assert_eq!(cut, "the value of `key` is not a header value");
        assert!(parse_headers("key=%zz").is_err());
        assert!(parse_headers("key=a%0Ab").is_err(), "a newline in a value");
    }
}
