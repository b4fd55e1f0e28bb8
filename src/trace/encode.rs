//! An OTLP/HTTP export request's body: a batch of finished spans as the protocol's protobuf
//! messages (`opentelemetry-proto`'s generated types), under one resource (`service.name`) and
//! one instrumentation scope, encoded by prost.

use std::time::{SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, SpanFlags, Status};
use prost::Message;

use super::record::{Attribute, FinishedSpan, Kind};

/// The body posted for `spans`, from service `service`.
pub fn export_body(spans: Vec<FinishedSpan>, service: &str) -> Vec<u8> {
    let scope = InstrumentationScope {
        name: "loadbalancer".to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        ..Default::default()
    };
    let resource = Resource {
        attributes: vec![key_value(
            "service.name",
            Attribute::Text(service.to_owned()),
        )],
        ..Default::default()
    };
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(resource),
            scope_spans: vec![ScopeSpans {
                scope: Some(scope),
                spans: spans.into_iter().map(span).collect(),
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
    .encode_to_vec()
}

fn span(finished: FinishedSpan) -> Span {
    let (parent_span_id, remote) = match finished.parent {
        Some((id, remote)) => (id.to_vec(), remote),
        None => (Vec::new(), false),
    };
    let mut flags = u32::from(finished.flags) | SpanFlags::ContextHasIsRemoteMask as u32;
    if remote {
        flags |= SpanFlags::ContextIsRemoteMask as u32;
    }
    let status = match finished.error {
        Some(message) => Status {
            message,
            code: StatusCode::Error as i32,
        },
        None => Status::default(),
    };
    let kind = match finished.kind {
        Kind::Server => SpanKind::Server,
        Kind::Client => SpanKind::Client,
    };
    Span {
        trace_id: finished.trace_id.to_vec(),
        span_id: finished.span_id.to_vec(),
        parent_span_id,
        flags,
        name: finished.name,
        kind: kind as i32,
        start_time_unix_nano: unix_nanos(finished.started),
        end_time_unix_nano: unix_nanos(finished.ended),
        attributes: finished
            .attributes
            .into_iter()
            .map(|(key, value)| key_value(key, value))
            .collect(),
        status: Some(status),
        ..Default::default()
    }
}

fn key_value(key: &str, value: Attribute) -> KeyValue {
    let value = match value {
        Attribute::Text(text) => any_value::Value::StringValue(text),
        Attribute::Int(number) => any_value::Value::IntValue(number),
        Attribute::Bool(flag) => any_value::Value::BoolValue(flag),
    };
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
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
        let body = export_body(vec![span], "edge");
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
}
