//! The pool file (`config.json`): a JSON object whose `backends` lists URL strings or
//! `{"url": ...}` objects. Read once at start; every entry is validated into a [`Backend`].

use std::fs;
use std::path::Path;

use serde::Deserialize;

use super::error::ConfigError;
use crate::backend::Backend;

/// `config.json` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PoolFile {
    backends: Vec<PoolEntry>,
}

/// A pool entry: a URL string or `{"url": "..."}`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum PoolEntry {
    Url(String),
    Object(PoolObject),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PoolObject {
    url: String,
}

/// Reads and validates the pool: well-formed JSON, at least one backend, valid and distinct URLs.
pub fn load_pool(path: &Path) -> Result<Vec<Backend>, ConfigError> {
    let text = fs::read_to_string(path).map_err(|err| ConfigError::Unreadable {
        file: path.to_path_buf(),
        reason: err.to_string(),
    })?;
    parse_pool(&text).map_err(|(key, problem)| ConfigError::Invalid {
        origin: path.display().to_string(),
        key,
        problem,
    })
}

/// Parses `config.json` text; an error is `(key, problem)`.
pub fn parse_pool(text: &str) -> Result<Vec<Backend>, (String, String)> {
    let file: PoolFile = serde_json::from_str(text).map_err(|err| {
        let problem = format!(
            "not a valid pool file ({err}); expected {{\"backends\": [\"http://host:port\", ...]}}"
        );
        ("backends".to_owned(), problem)
    })?;
    if file.backends.is_empty() {
        return Err((
            "backends".to_owned(),
            "the pool is empty: list at least one backend".to_owned(),
        ));
    }
    let mut pool: Vec<Backend> = Vec::with_capacity(file.backends.len());
    for (id, entry) in file.backends.iter().enumerate() {
        let key = format!("backends[{id}]");
        let url = match entry {
            PoolEntry::Url(url) | PoolEntry::Object(PoolObject { url }) => url,
        };
        let backend = Backend::parse(id, url).map_err(|problem| (key.clone(), problem))?;
        if let Some(twin) = pool.iter().find(|b| b.authority == backend.authority) {
            let problem = format!(
                "{} repeats {} (backends[{}])",
                backend.url, twin.url, twin.id
            );
            return Err((key, problem));
        }
        pool.push(backend);
    }
    Ok(pool)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Strings and objects both work; names follow the file order.
    #[test]
    fn parses_strings_and_objects_in_order() {
        let pool = parse_pool(
            r#"{"backends": ["http://127.0.0.1:9001/", {"url": "http://example.test"}]}"#,
        )
        .expect("valid pool");
        assert_eq!(pool[0].url, "http://127.0.0.1:9001");
        assert_eq!(pool[0].authority, "127.0.0.1:9001");
        assert_eq!(pool[0].name, "backend-1");
        assert_eq!(pool[1].authority, "example.test:80");
        assert_eq!(pool[1].name, "backend-2");
    }

    /// Each kind of bad pool is refused with the entry's key and a reason.
    #[test]
    fn rejects_bad_pools_with_the_key() {
        let cases = [
            ("not json", "backends", "not a valid pool file"),
            (r#"{"backends": []}"#, "backends", "empty"),
            (r#"{"pool": []}"#, "backends", "not a valid pool file"),
            (
                r#"{"backends": ["https://a:1"]}"#,
                "backends[0]",
                "only http://",
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
                r#"{"backends": [{"url": "http://a:1", "weight": 2}]}"#,
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
}
