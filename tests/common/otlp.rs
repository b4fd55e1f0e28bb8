//! A real OTLP/HTTP trace receiver: an HTTP server on `127.0.0.1:0` taking
//! `POST /v1/traces` with `application/x-protobuf` bodies, decoded with the protocol's own
//! generated types (`opentelemetry-proto`), each span kept flattened for the tests to look at.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use prost::Message;

/// One received span, its ids as lowercase hex.
#[derive(Debug, Clone)]
pub struct Span {
    pub trace_id: String,
    pub span_id: String,
    /// Empty for a root span.
    pub parent_span_id: String,
    pub name: String,
    /// 2 = SERVER, 3 = CLIENT.
    pub kind: i32,
    /// Attribute values as text (`"200"`, `"true"`, `"GET"`).
    pub attributes: HashMap<String, String>,
    /// The resource's `service.name`.
    pub service: String,
    /// 0 unset, 1 ok, 2 error.
    pub status: i32,
}

impl Span {
    pub fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }
}

/// The receiver; its server runs inside the current actix system.
pub struct Receiver {
    pub addr: SocketAddr,
    state: Arc<State>,
}

#[derive(Default)]
struct State {
    spans: Mutex<Vec<Span>>,
    /// Requests that were not OTLP protobuf (a wrong content type, an undecodable body).
    refused: Mutex<Vec<String>>,
    /// Every post's headers, as name and value.
    headers: Mutex<Vec<(String, String)>>,
    /// Posts still to be answered 503 Service Unavailable, unread.
    unavailable: AtomicUsize,
}

impl Receiver {
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let state = Arc::new(State::default());
        let data = web::Data::from(Arc::clone(&state));
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .app_data(web::PayloadConfig::new(16 << 20))
                .route("/v1/traces", web::post().to(export))
        })
        .workers(1)
        .disable_signals()
        .listen(listener)
        .expect("listen")
        .run();
        actix_rt::spawn(server);
        Self { addr, state }
    }

    /// The endpoint for `tracing.otlp_endpoint`.
    pub fn endpoint(&self) -> String {
        format!("http://{}/v1/traces", self.addr)
    }

    pub fn spans(&self) -> Vec<Span> {
        self.state.spans.lock().expect("lock").clone()
    }

    /// Requests that were not OTLP protobuf.
    pub fn refused(&self) -> Vec<String> {
        self.state.refused.lock().expect("lock").clone()
    }

    /// The values of header `name` on every post so far.
    pub fn header_values(&self, name: &str) -> Vec<String> {
        let headers = self.state.headers.lock().expect("lock");
        let named = headers.iter().filter(|(header, _)| header == name);
        named.map(|(_, value)| value.clone()).collect()
    }

    /// The next `posts` posts are answered 503, as a collector that is busy.
    pub fn answer_unavailable(&self, posts: usize) {
        self.state.unavailable.store(posts, Ordering::SeqCst);
    }

    /// The spans of one trace.
    pub fn trace(&self, trace_id: &str) -> Vec<Span> {
        let spans = self.spans();
        spans
            .into_iter()
            .filter(|s| s.trace_id == trace_id)
            .collect()
    }
}

async fn export(req: HttpRequest, body: web::Bytes, state: web::Data<State>) -> HttpResponse {
    state
        .headers
        .lock()
        .expect("lock")
        .extend(req.headers().iter().map(|(name, value)| {
            (
                name.to_string(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        }));
    let busy = state
        .unavailable
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
            left.checked_sub(1)
        });
    if busy.is_ok() {
        return HttpResponse::ServiceUnavailable().finish();
    }
    let content_type = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if content_type != "application/x-protobuf" {
        state
            .refused
            .lock()
            .expect("lock")
            .push(format!("content type {content_type:?}"));
        return HttpResponse::UnsupportedMediaType().finish();
    }
    let request = match ExportTraceServiceRequest::decode(body.as_ref()) {
        Ok(request) => request,
        Err(err) => {
            state
                .refused
                .lock()
                .expect("lock")
                .push(format!("undecodable: {err}"));
            return HttpResponse::BadRequest().finish();
        }
    };
    let mut spans = state.spans.lock().expect("lock");
    for resource_spans in request.resource_spans {
        let resource = resource_spans.resource.unwrap_or_default().attributes;
        let service = texts(&resource).remove("service.name").unwrap_or_default();
        for scope_spans in resource_spans.scope_spans {
            for span in scope_spans.spans {
                spans.push(Span {
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent_span_id: hex(&span.parent_span_id),
                    name: span.name,
                    kind: span.kind,
                    attributes: texts(&span.attributes),
                    service: service.clone(),
                    status: span.status.map_or(0, |s| s.code),
                });
            }
        }
    }
    HttpResponse::Ok()
        .content_type("application/x-protobuf")
        .body(ExportTraceServiceResponse::default().encode_to_vec())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn texts(attributes: &[KeyValue]) -> HashMap<String, String> {
    let text = |value: &Option<AnyValue>| match value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::IntValue(n)) => n.to_string(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::DoubleValue(d)) => d.to_string(),
        other => format!("{other:?}"),
    };
    attributes
        .iter()
        .map(|kv| (kv.key.clone(), text(&kv.value)))
        .collect()
}
