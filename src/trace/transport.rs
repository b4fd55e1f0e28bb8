//! How the OTLP exporter's requests reach the collector: through awc, the HTTP client the
//! binary has already (with the backends' rustls configuration for `https://` collectors), on
//! the exporting thread. The exporter wants a `Send` client and awc is not, so the exporter's
//! side ([`AwcTransport`]) hands each request to a task on that thread ([`serve`]) and awaits
//! its answer.

use std::sync::Arc;
use std::time::Duration;

use actix_web::http::Method;
use awc::{Client, Connector};
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use rustls::ClientConfig;
use tokio::sync::{mpsc, oneshot};

/// Largest collector answer read (an OTLP answer is a few bytes, or a partial-success message).
const MAX_ANSWER_BYTES: usize = 1 << 20;

type Post = (
    Request<Bytes>,
    oneshot::Sender<Result<Response<Bytes>, HttpError>>,
);

/// The exporter's HTTP client: posts go to [`serve`] on the exporting thread.
#[derive(Debug, Clone)]
pub struct AwcTransport {
    posts: mpsc::UnboundedSender<Post>,
}

impl AwcTransport {
    /// The client and the end [`serve`] reads from.
    pub fn new() -> (Self, mpsc::UnboundedReceiver<Post>) {
        let (posts, receiver) = mpsc::unbounded_channel();
        (Self { posts }, receiver)
    }
}

#[async_trait::async_trait]
impl HttpClient for AwcTransport {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let (answer, answered) = oneshot::channel();
        self.posts
            .send((request, answer))
            .map_err(|_| "the trace exporter's thread has stopped")?;
        answered
            .await
            .map_err(|_| "the trace exporter's thread has stopped")?
    }
}

/// The awc client for the collector: no redirects, no default headers, `timeout` for each post.
/// Built on the thread that uses it (an awc client is not `Send`).
pub fn client(tls: &Arc<ClientConfig>, timeout: Duration) -> Client {
    Client::builder()
        .connector(
            Connector::new()
                .rustls_0_23(Arc::clone(tls))
                .timeout(timeout),
        )
        .disable_redirects()
        .no_default_headers()
        .timeout(timeout)
        .finish()
}

/// Sends each post handed over, one at a time, until the exporter is gone.
pub async fn serve(mut posts: mpsc::UnboundedReceiver<Post>, client: Client) {
    while let Some((request, answer)) = posts.recv().await {
        let _ = answer.send(post(&client, request).await);
    }
}

async fn post(client: &Client, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
    let (parts, body) = request.into_parts();
    let method = Method::from_bytes(parts.method.as_str().as_bytes())?;
    let mut out = client.request(method, parts.uri.to_string());
    for (name, value) in &parts.headers {
        out = out.insert_header((name.as_str(), value.as_bytes()));
    }
    let mut answer = out.send_body(body).await.map_err(|err| err.to_string())?;
    let bytes = answer
        .body()
        .limit(MAX_ANSWER_BYTES)
        .await
        .map_err(|err| err.to_string())?;
    Ok(Response::builder()
        .status(answer.status().as_u16())
        .body(bytes)?)
}
