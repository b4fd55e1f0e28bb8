//! A `/clients` body, parsed and validated: `client_id` (or `id`), `name` (optional),
//! `capacity` (or `rate_limit`; an integer 1..=10^9), `rate_per_sec` (a number in (0, 10^9])
//! and `routes` (see [`super::client_routes`]). Each invalid field is an error naming it.

use serde_json::Value;

use crate::http::client_routes::{self, RouteChanges};

/// Longest client id, in bytes.
pub const MAX_ID_BYTES: usize = 128;
/// Upper bound of `capacity` and `rate_per_sec`.
pub const MAX_LIMIT: f64 = 1e9;
/// Path segments taken by the seed's routes, so they cannot be client ids.
const RESERVED_IDS: [&str; 2] = ["register", "update"];

/// A parsed body; absent fields are `None`.
#[derive(Debug, Default, PartialEq)]
pub struct ClientInput {
    pub client_id: Option<String>,
    /// `Some(None)`: `"name": null`.
    pub name: Option<Option<String>>,
    pub capacity: Option<u64>,
    pub rate_per_sec: Option<f64>,
    pub routes: Option<RouteChanges>,
}

/// Validates a client body; the error names the field.
pub fn parse_input(body: &[u8]) -> Result<ClientInput, String> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| format!("body: malformed JSON ({e})"))?;
    let Value::Object(fields) = value else {
        return Err("body: must be a JSON object".into());
    };
    let mut input = ClientInput::default();
    for (key, value) in &fields {
        match key.as_str() {
            "client_id" | "id" => {
                if input.client_id.is_some() {
                    return Err(format!("{key}: give client_id or id, not both"));
                }
                input.client_id = Some(client_id(key, value)?);
            }
            "name" => input.name = Some(name(value)?),
            "capacity" | "rate_limit" => {
                if input.capacity.is_some() {
                    return Err(format!("{key}: give capacity or rate_limit, not both"));
                }
                input.capacity = Some(capacity(key, value)?);
            }
            "rate_per_sec" => input.rate_per_sec = Some(rate(value)?),
            "routes" => input.routes = Some(client_routes::parse(value)?),
            other => return Err(format!("{}: unknown field", truncate(other))),
        }
    }
    if fields.is_empty() {
        Err("body: empty object".into())
    } else {
        Ok(input)
    }
}

fn client_id(key: &str, value: &Value) -> Result<String, String> {
    let id = value
        .as_str()
        .ok_or_else(|| format!("{key}: must be a string"))?;
    let valid_chars = id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'@' | b'-'));
    match () {
        _ if id.is_empty() => Err(format!("{key}: must not be empty")),
        _ if id.len() > MAX_ID_BYTES => Err(format!("{key}: longer than {MAX_ID_BYTES} bytes")),
        _ if !valid_chars => Err(format!(
            "{key}: only letters, digits and . _ : @ - are allowed"
        )),
        _ if RESERVED_IDS.contains(&id) => {
            Err(format!("{key}: {id:?} is reserved by the API's routes"))
        }
        _ => Ok(id.to_owned()),
    }
}

fn name(value: &Value) -> Result<Option<String>, String> {
    match value {
        Value::Null => Ok(None),
        Value::String(text) if text.len() <= 256 => Ok(Some(text.clone())),
        Value::String(_) => Err("name: longer than 256 bytes".into()),
        _ => Err("name: must be a string or null".into()),
    }
}

fn capacity(key: &str, value: &Value) -> Result<u64, String> {
    let number = value
        .as_f64()
        .ok_or_else(|| format!("{key}: must be an integer"))?;
    match value.as_u64() {
        Some(n) if n >= 1 && n as f64 <= MAX_LIMIT => Ok(n),
        Some(_) => Err(format!("{key}: must be between 1 and 1000000000")),
        None if number.fract() != 0.0 => Err(format!("{key}: must be an integer")),
        None => Err(format!("{key}: must be between 1 and 1000000000")),
    }
}

fn rate(value: &Value) -> Result<f64, String> {
    let rate = value.as_f64().ok_or("rate_per_sec: must be a number")?;
    if rate.is_finite() && rate > 0.0 && rate <= MAX_LIMIT {
        Ok(rate)
    } else {
        Err("rate_per_sec: must be greater than 0 and at most 1000000000".into())
    }
}

fn truncate(text: &str) -> String {
    text.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(body: &str) -> String {
        parse_input(body.as_bytes()).expect_err(body)
    }

    /// Both shapes give the same input.
    #[test]
    fn accepts_both_shapes() {
        let a = parse_input(
            br#"{"client_id": "a-1", "capacity": 5, "rate_per_sec": 2.5, "name": "A"}"#,
        )
        .expect("valid");
        let b = parse_input(br#"{"id": "a-1", "rate_limit": 5, "rate_per_sec": 2.5, "name": "A"}"#)
            .expect("valid");
        assert_eq!(a, b);
        assert_eq!(a.capacity, Some(5));
    }

    /// Every invalid field is refused with its name in the message.
    #[test]
    fn names_the_bad_field() {
        let cases = [
            ("{", "malformed JSON"),
            ("[]", "JSON object"),
            ("{}", "empty"),
            (r#"{"client_id": 5}"#, "client_id: must be a string"),
            (r#"{"client_id": ""}"#, "client_id: must not be empty"),
            (r#"{"client_id": "a b"}"#, "client_id: only"),
            (r#"{"client_id": "register"}"#, "reserved"),
            (r#"{"client_id": "a", "id": "b"}"#, "not both"),
            (r#"{"capacity": 0}"#, "capacity: must be between"),
            (r#"{"capacity": -3}"#, "capacity: must be between"),
            (r#"{"capacity": 1.5}"#, "capacity: must be an integer"),
            (r#"{"capacity": "5"}"#, "capacity: must be an integer"),
            (r#"{"rate_limit": 1e12}"#, "rate_limit: must be between"),
            (r#"{"rate_per_sec": 0}"#, "rate_per_sec: must be greater"),
            (r#"{"rate_per_sec": -1}"#, "rate_per_sec: must be greater"),
            (r#"{"rate_per_sec": 2e9}"#, "rate_per_sec: must be greater"),
            (
                r#"{"rate_per_sec": "fast"}"#,
                "rate_per_sec: must be a number",
            ),
            (r#"{"name": 7}"#, "name: must be a string"),
            (r#"{"colour": "red"}"#, "colour: unknown field"),
        ];
        for (body, expected) in cases {
            let message = err(body);
            assert!(message.contains(expected), "{body}: {message}");
        }
        assert!(
            err(&format!(r#"{{"client_id": "{}"}}"#, "x".repeat(129))).contains("longer than 128")
        );
    }
}
