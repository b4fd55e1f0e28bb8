//! The pool file's content (`config.json`): a JSON object whose `backends` lists URL strings or
//! `{"url": ..., "weight": ..., "name": ...}` objects. Every entry is validated into a
//! [`BackendSpec`], and [`resolve`] names them for the start.

use serde::Deserialize;

use crate::backend::{fill_names, Backend, BackendSpec, PoolEntry};

/// `config.json` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PoolFile {
    backends: Vec<RawEntry>,
}

/// A pool entry: a URL string or an object.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawEntry {
    Url(String),
    Object(RawObject),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawObject {
    url: String,
    weight: Option<u64>,
    name: Option<String>,
}

/// Parses `config.json` text: well-formed JSON, at least one backend, valid entries, distinct
/// URLs (by `host:port`) and distinct explicit names; an error is `(key, problem)`.
pub fn parse_pool(text: &str) -> Result<Vec<BackendSpec>, (String, String)> {
    let file: PoolFile = serde_json::from_str(text).map_err(|err| {
        let problem = format!(
            "not a valid pool file ({err}); expected {{\"backends\": [\"http://host:port\", {{\"url\": \"http://host:port\", \"weight\": 3, \"name\": \"big\"}}, ...]}}"
        );
        ("backends".to_owned(), problem)
    })?;
    if file.backends.is_empty() {
        return Err((
            "backends".to_owned(),
            "the pool is empty: list at least one backend".to_owned(),
        ));
    }
    let mut pool: Vec<BackendSpec> = Vec::with_capacity(file.backends.len());
    for (index, entry) in file.backends.iter().enumerate() {
        let key = format!("backends[{index}]");
        let spec = match entry {
            RawEntry::Url(url) => BackendSpec::parse(url, None, None),
            RawEntry::Object(o) => BackendSpec::parse(&o.url, o.weight, o.name.as_deref()),
        }
        .map_err(|(field, problem)| match entry {
            RawEntry::Url(_) => (key.clone(), problem),
            RawEntry::Object(_) => (format!("{key}.{field}"), problem),
        })?;
        if let Some(twin) = pool.iter().position(|b| b.authority == spec.authority) {
            let problem = format!("{} repeats {} (backends[{twin}])", spec.url, pool[twin].url);
            return Err((key, problem));
        }
        pool.push(spec);
    }
    Ok(pool)
}

/// Names the entries (their own name, else `backend-N` by position) and numbers them in file
/// order; two entries with one name are an error.
pub fn resolve(specs: Vec<BackendSpec>) -> Result<Vec<PoolEntry>, (String, String)> {
    let fixed: Vec<Option<String>> = specs.iter().map(|s| s.name.clone()).collect();
    let names = fill_names(&fixed, &[]).map_err(|(first, second)| {
        let problem = format!(
            "the name {:?} is already used by backends[{first}]",
            fixed[second].as_deref().unwrap_or_default()
        );
        (format!("backends[{second}].name"), problem)
    })?;
    Ok(specs
        .iter()
        .zip(names)
        .enumerate()
        .map(|(id, (spec, name))| PoolEntry {
            backend: Backend::from_spec(id, spec, name),
            weight: spec.weight,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Strings and objects both work; names follow the file order.
    #[test]
    fn parses_strings_and_objects_in_order() {
        let specs = parse_pool(
            r#"{"backends": ["http://127.0.0.1:9001/", {"url": "http://example.test"},
                {"url": "http://c:3", "weight": 3, "name": "backend-1"}]}"#,
        )
        .expect("valid pool");
        let pool = resolve(specs).expect("distinct names");
        assert_eq!(pool[0].backend.url, "http://127.0.0.1:9001");
        assert_eq!(pool[0].backend.authority, "127.0.0.1:9001");
        assert_eq!(
            pool[0].backend.name, "backend-3",
            "backend-1 is taken by name"
        );
        assert_eq!(pool[1].backend.authority, "example.test:80");
        assert_eq!(pool[1].backend.name, "backend-2");
        assert_eq!(
            (pool[2].backend.name.as_str(), pool[2].weight),
            ("backend-1", 3)
        );
        assert_eq!(pool[2].backend.id, 2);
    }

    /// Each kind of bad pool is refused with the entry's key and a reason.
    #[test]
    fn rejects_bad_pools_with_the_key() {
        let cases = [
            ("not json", "backends", "not a valid pool file"),
            (r#"{"backends": []}"#, "backends", "empty"),
            (r#"{"pool": []}"#, "backends", "not a valid pool file"),
            (
                r#"{"backends": ["ftp://a:1"]}"#,
                "backends[0]",
                "https://host",
            ),
            (r#"{"backends": ["http://a:1/x"]}"#, "backends[0]", "path"),
            (
                r#"{"backends": ["127.0.0.1:9001"]}"#,
                "backends[0]",
                "http://",
            ),
            (
                r#"{"backends": ["http://a:1", "http://a:1/"]}"#,
                "backends[1]",
                "repeats",
            ),
            (
                r#"{"backends": ["http://Shop.test", "http://shop.TEST:80"]}"#,
                "backends[1]",
                "repeats",
            ),
            (r#"{"backends": ["http://a:0"]}"#, "backends[0]", "port 0"),
            (
                r#"{"backends": [{"url": "http://a:1", "weight": 0}]}"#,
                "backends[0].weight",
                "1 to 1000",
            ),
            (
                r#"{"backends": [{"url": "http://a:1", "name": "a/b"}]}"#,
                "backends[0].name",
                "not a backend name",
            ),
            (
                r#"{"backends": [{"url": "http://a:1", "colour": "red"}]}"#,
                "backends",
                "not a valid",
            ),
        ];
        for (text, key, problem) in cases {
            let (got_key, got_problem) = parse_pool(text).expect_err(text);
            assert_eq!(got_key, key, "{text}");
            assert!(got_problem.contains(problem), "{text}: {got_problem}");
        }
    }

    /// Two entries may not share a name.
    #[test]
    fn rejects_a_repeated_name() {
        let specs = parse_pool(
            r#"{"backends": [{"url": "http://a:1", "name": "x"}, {"url": "http://b:1", "name": "x"}]}"#,
        )
        .expect("each entry is valid");
        let (key, problem) = resolve(specs).expect_err("same name");
        assert_eq!(key, "backends[1].name");
        assert!(problem.contains("backends[0]"), "{problem}");
    }
}
