//! An OTLP/HTTP export request's body: a batch of finished spans under one resource
//! (`service.name`) and one instrumentation scope, written straight into protobuf's wire format
//! (field numbers from `opentelemetry/proto/trace/v1/trace.proto` and its imports). Our two
//! span shapes are all there is to encode, and building the generated message types first
//! (an allocation per id, key and string, then prost's nested lengths) cost more per span than
//! the rest of tracing together; the tests decode what is written with those generated types.

use std::time::{SystemTime, UNIX_EPOCH};

use super::record::{Attribute, FinishedSpan, Kind};

/// Wire types.
const VARINT: u32 = 0;
const FIXED64: u32 = 1;
const LEN: u32 = 2;
const FIXED32: u32 = 5;

/// `Span.flags`: the parent's remoteness is known; it is remote.
const HAS_IS_REMOTE: u32 = 0x100;
const IS_REMOTE: u32 = 0x200;

/// `Status.code` ERROR.
const STATUS_ERROR: u64 = 2;

/// The body posted for `spans`, from service `service`.
pub fn export_body(spans: &[FinishedSpan], service: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + spans.len() * 192);
    // ExportTraceServiceRequest.resource_spans
    nested(&mut out, 1, |out| {
        // ResourceSpans.resource: Resource.attributes
        nested(out, 1, |out| {
            key_value(out, 1, "service.name", &Attribute::Text(service.to_owned()))
        });
        // ResourceSpans.scope_spans
        nested(out, 2, |out| {
            // ScopeSpans.scope: InstrumentationScope.name, .version
            nested(out, 1, |out| {
                text(out, 1, "loadbalancer");
                text(out, 2, env!("CARGO_PKG_VERSION"));
            });
            for finished in spans {
                nested(out, 2, |out| span(out, finished));
            }
        });
    });
    out
}

/// One `Span`'s fields.
fn span(out: &mut Vec<u8>, span: &FinishedSpan) {
    bytes(out, 1, &span.trace_id);
    bytes(out, 2, &span.span_id);
    let mut flags = u32::from(span.flags) | HAS_IS_REMOTE;
    if let Some((parent, remote)) = &span.parent {
        bytes(out, 4, parent);
        if *remote {
            flags |= IS_REMOTE;
        }
    }
    text(out, 5, &span.name);
    let kind = match span.kind {
        Kind::Server => 2,
        Kind::Client => 3,
    };
    key(out, 6, VARINT);
    varint(out, kind);
    key(out, 7, FIXED64);
    out.extend_from_slice(&unix_nanos(span.started).to_le_bytes());
    key(out, 8, FIXED64);
    out.extend_from_slice(&unix_nanos(span.ended).to_le_bytes());
    for (name, value) in &span.attributes {
        key_value(out, 9, name, value);
    }
    if let Some(message) = &span.error {
        // Span.status: Status.message, .code
        nested(out, 15, |out| {
            text(out, 2, message);
            key(out, 3, VARINT);
            varint(out, STATUS_ERROR);
        });
    }
    key(out, 16, FIXED32);
    out.extend_from_slice(&flags.to_le_bytes());
}

/// A `KeyValue` as field `field`: its key, and an `AnyValue` holding `value`.
fn key_value(out: &mut Vec<u8>, field: u32, name: &str, value: &Attribute) {
    nested(out, field, |out| {
        text(out, 1, name);
        nested(out, 2, |out| match value {
            Attribute::Text(value) => text(out, 1, value),
            Attribute::Bool(flag) => {
                key(out, 2, VARINT);
                varint(out, u64::from(*flag));
            }
            Attribute::Int(number) => {
                key(out, 3, VARINT);
                // int64 on the wire: two's complement, as 64 bits.
                varint(out, *number as u64);
            }
        });
    });
}

/// Field `field` holding the message `body` writes: its length goes before it once known.
fn nested(out: &mut Vec<u8>, field: u32, body: impl FnOnce(&mut Vec<u8>)) {
    key(out, field, LEN);
    let start = out.len();
    body(out);
    let (length, used) = varint_bytes((out.len() - start) as u64);
    out.splice(start..start, length[..used].iter().copied());
}

fn text(out: &mut Vec<u8>, field: u32, value: &str) {
    bytes(out, field, value.as_bytes());
}

fn bytes(out: &mut Vec<u8>, field: u32, value: &[u8]) {
    key(out, field, LEN);
    varint(out, value.len() as u64);
    out.extend_from_slice(value);
}

fn key(out: &mut Vec<u8>, field: u32, wire: u32) {
    varint(out, u64::from(field << 3 | wire));
}

fn varint(out: &mut Vec<u8>, value: u64) {
    let (bytes, used) = varint_bytes(value);
    out.extend_from_slice(&bytes[..used]);
}

/// Seven bits a byte, least significant first, the top bit set on all but the last; and how
/// many bytes that took.
fn varint_bytes(mut value: u64) -> ([u8; 10], usize) {
    let mut bytes = [0; 10];
    let mut used = 0;
    while value >= 0x80 {
        bytes[used] = (value & 0x7f) as u8 | 0x80;
        value >>= 7;
        used += 1;
    }
    bytes[used] = value as u8;
    (bytes, used + 1)
}

fn unix_nanos(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |since| {
        u64::try_from(since.as_nanos()).unwrap_or(u64::MAX)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::any_value;
    use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
    use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
    use prost::Message;

    /// What the body decodes to, as a collector reads it: the resource, the scope, and each
    /// span's ids, flags, kind, times, attributes and status.
    #[test]
    fn a_batch_decodes_to_what_was_recorded() {
        let started = UNIX_EPOCH + Duration::from_nanos(1_700_000_000_123_456_789);
        let span = FinishedSpan {
            trace_id: [7; 16],
            span_id: [8; 8],
            parent: Some(([9; 8], true)),
            flags: 1,
            kind: Kind::Server,
            name: "GET api".to_owned(),
            started,
            ended: started + Duration::from_micros(250),
            attributes: vec![
                ("url.path", Attribute::Text("/a".to_owned())),
                ("http.response.status_code", Attribute::Int(502)),
                ("lb.rate_limited", Attribute::Bool(false)),
            ],
            error: Some("status 502".to_owned()),
        };
        let body = export_body(&[span], "edge");
        let request = ExportTraceServiceRequest::decode(body.as_slice()).expect("protobuf");
        let resource = &request.resource_spans[0];
        let service = &resource.resource.as_ref().expect("resource").attributes[0];
        assert_eq!(service.key, "service.name");
        let scope = &resource.scope_spans[0];
        assert_eq!(scope.scope.as_ref().expect("scope").name, "loadbalancer");
        let span = &scope.spans[0];
        assert_eq!(
            (span.trace_id.as_slice(), span.span_id.as_slice()),
            (&[7; 16][..], &[8; 8][..])
        );
        assert_eq!(span.parent_span_id, vec![9; 8]);
        assert_eq!(span.flags, 0x301, "sampled, with a remote parent");
        assert_eq!(span.kind, SpanKind::Server as i32);
        assert_eq!(span.start_time_unix_nano, 1_700_000_000_123_456_789);
        assert_eq!(span.end_time_unix_nano - span.start_time_unix_nano, 250_000);
        let keys: Vec<_> = span.attributes.iter().map(|kv| kv.key.as_str()).collect();
        assert_eq!(
            keys,
            ["url.path", "http.response.status_code", "lb.rate_limited"]
        );
        let code = span.attributes[1]
            .value
            .as_ref()
            .and_then(|v| v.value.clone());
        assert_eq!(code, Some(any_value::Value::IntValue(502)));
        let status = span.status.as_ref().expect("status");
        assert_eq!(
            (status.code, status.message.as_str()),
            (StatusCode::Error as i32, "status 502")
        );
    }

    /// A new trace's SERVER span has no parent and, without an error, no status; values of
    /// every kind survive, a negative number too.
    #[test]
    fn a_root_span_without_error() {
        let now = SystemTime::now();
        let span = FinishedSpan {
            trace_id: [1; 16],
            span_id: [2; 8],
            parent: None,
            flags: 1,
            kind: Kind::Client,
            name: "GET".to_owned(),
            started: now,
            ended: now,
            attributes: vec![
                ("a", Attribute::Int(-5)),
                ("b", Attribute::Bool(true)),
                ("c", Attribute::Text(String::new())),
            ],
            error: None,
        };
        let body = export_body(&[span], "");
        let request = ExportTraceServiceRequest::decode(body.as_slice()).expect("protobuf");
        let span = &request.resource_spans[0].scope_spans[0].spans[0];
        assert!(span.parent_span_id.is_empty());
        assert_eq!(
            span.flags, 0x101,
            "sampled, the parent's remoteness known: none"
        );
        assert_eq!(span.kind, SpanKind::Client as i32);
        assert_eq!(span.status, None);
        let values: Vec<_> = span
            .attributes
            .iter()
            .map(|kv| kv.value.as_ref().and_then(|v| v.value.clone()))
            .collect();
        assert_eq!(
            values,
            [
                Some(any_value::Value::IntValue(-5)),
                Some(any_value::Value::BoolValue(true)),
                Some(any_value::Value::StringValue(String::new())),
            ]
        );
    }
}
