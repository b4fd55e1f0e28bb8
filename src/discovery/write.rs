//! Writing the pool back to its file after a change through the backends API, so the file stays
//! the truth and a restart (or a reload) finds the same pool. The text is written to a temporary
//! file in the same folder, flushed to disk and renamed over the old one: a reader (the watch, a
//! crash, an editor) sees the old file or the new one, never half of one. Blocking; callers run
//! it on the blocking thread pool.

use std::fs;
use std::io::{self, Write};
use std::path::Path;

use serde::Serialize;

use std::collections::BTreeMap;

use super::topology::{PoolSettings, DEFAULT_POOL};
use crate::backend::{default_name, HostHeader};
use crate::route::RouteEntry;
use crate::strategy::Strategy;

/// One backend as the file lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    pub url: String,
    pub weight: u32,
    pub name: String,
    pub max_connections: Option<u32>,
    /// `"discovery": "dns"`.
    pub dns: bool,
}

/// One pool as the file lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilePool {
    pub name: String,
    pub settings: PoolSettings,
    pub entries: Vec<FileEntry>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Written<'a> {
    Url(&'a str),
    Object {
        url: &'a str,
        #[serde(skip_serializing_if = "is_one")]
        weight: u32,
        #[serde(skip_serializing_if = "Option::is_none")]
        name: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        max_connections: Option<u32>,
        #[serde(skip_serializing_if = "Option::is_none")]
        discovery: Option<&'static str>,
    },
}

fn is_one(weight: &u32) -> bool {
    *weight == 1
}

/// A pool of `pools` as written: its settings where they are not the defaults.
#[derive(Serialize)]
struct WrittenPool<'a> {
    backends: Vec<Written<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    strategy: Option<Strategy>,
    #[serde(skip_serializing_if = "Option::is_none")]
    health_path: Option<&'a str>,
    #[serde(skip_serializing_if = "is_client")]
    host_header: HostHeader,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_connections: Option<u32>,
}

fn is_client(host_header: &HostHeader) -> bool {
    *host_header == HostHeader::Client
}

/// A pool's entries: a plain URL where weight, name and limit are the defaults, else an object
/// with what differs.
fn written(entries: &[FileEntry]) -> Vec<Written<'_>> {
    entries
        .iter()
        .enumerate()
        .map(|(position, entry)| {
            let own_name = (entry.name != default_name(position)).then_some(entry.name.as_str());
            let plain = entry.weight == 1 && entry.max_connections.is_none() && !entry.dns;
            if plain && own_name.is_none() {
                Written::Url(&entry.url)
            } else {
                Written::Object {
                    url: &entry.url,
                    weight: entry.weight,
                    name: own_name,
                    max_connections: entry.max_connections,
                    discovery: entry.dns.then_some("dns"),
                }
            }
        })
        .collect()
}

/// The file's text. The `default` pool is the top-level `backends`, one entry per line; other
/// pools go under `pools` and the routes under `routes` (omitted when there are none, so a
/// file of one pool keeps its old shape).
pub fn render(pools: &[FilePool], routes: &[RouteEntry]) -> String {
    let mut parts = Vec::new();
    if let Some(default) = pools.iter().find(|p| p.name == DEFAULT_POOL) {
        let lines: Vec<String> = written(&default.entries)
            .iter()
            .map(|w| {
                let line = serde_json::to_string(w).expect("strings and numbers serialize");
                format!("    {line}")
            })
            .collect();
        parts.push(format!("  \"backends\": [\n{}\n  ]", lines.join(",\n")));
    }
    let others: BTreeMap<&str, WrittenPool<'_>> = pools
        .iter()
        .filter(|p| p.name != DEFAULT_POOL)
        .map(|p| {
            let pool = WrittenPool {
                backends: written(&p.entries),
                strategy: p.settings.strategy,
                health_path: p.settings.health_path.as_deref(),
                host_header: p.settings.host_header,
                max_connections: p.settings.max_connections,
            };
            (p.name.as_str(), pool)
        })
        .collect();
    if !others.is_empty() {
        parts.push(format!("  \"pools\": {}", indented(&others)));
    }
    if !routes.is_empty() {
        parts.push(format!("  \"routes\": {}", indented(&routes)));
    }
    format!("{{\n{}\n}}\n", parts.join(",\n"))
}

/// `value` as pretty JSON, its inner lines indented under a top-level key.
fn indented(value: &impl Serialize) -> String {
    serde_json::to_string_pretty(value)
        .expect("strings and numbers serialize")
        .replace('\n', "\n  ")
}

/// Replaces `path` with `text` atomically (temporary file + fsync + rename).
pub fn write_atomically(path: &Path, text: &str) -> io::Result<()> {
    let folder = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a file path"))?;
    let temporary = folder.join(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    let written = (|| {
        let mut file = fs::File::create(&temporary)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        fs::rename(&temporary, path)
    })();
    if written.is_err() {
        let _ = fs::remove_file(&temporary);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discovery::PoolFile;

    fn entry(url: &str, weight: u32, name: &str) -> FileEntry {
        FileEntry {
            url: url.to_owned(),
            weight,
            name: name.to_owned(),
            max_connections: None,
            dns: false,
        }
    }

    /// What is written reads back as the same pool, and defaults stay plain strings.
    #[test]
    fn writes_a_pool_that_reads_back_the_same() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("config.json");
        fs::write(&path, "old").expect("write");
        let entries = [
            entry("http://127.0.0.1:9001", 1, "backend-1"),
            entry("http://127.0.0.1:9002", 3, "backend-2"),
            entry("http://127.0.0.1:9003", 1, "big"),
            FileEntry {
                max_connections: Some(0),
                ..entry("http://127.0.0.1:9004", 1, "backend-4")
            },
            FileEntry {
                dns: true,
                ..entry("http://web.test:9005", 1, "backend-5")
            },
        ];
        let pools = [
            FilePool {
                name: DEFAULT_POOL.to_owned(),
                settings: PoolSettings::default(),
                entries: entries.to_vec(),
            },
            FilePool {
                name: "api".to_owned(),
                settings: PoolSettings {
                    max_connections: Some(50),
                    ..PoolSettings::default()
                },
                entries: entries[..1].to_vec(),
            },
        ];
        let text = render(&pools, &[]);
        assert!(text.contains("    \"http://127.0.0.1:9001\",\n"), "{text}");
        write_atomically(&path, &text).expect("written");
        let topology = PoolFile::new(path).load().expect("valid pool");
        let specs = &topology.pools[0].backends;
        assert_eq!(specs[1].weight, 3);
        assert_eq!(specs[2].name.as_deref(), Some("big"));
        assert_eq!(specs[0].name, None);
        assert_eq!(specs[3].max_connections, Some(0), "0 (no limit) is kept");
        assert_eq!(specs[0].max_connections, None);
        assert!(specs[4].dns && !specs[0].dns, "discovery is kept");
        assert_eq!(topology.pools[1].settings.max_connections, Some(50));
        let leftovers = fs::read_dir(dir.path()).expect("list").count();
        assert_eq!(leftovers, 1, "no temporary file left");
    }

    /// A folder that cannot be written leaves the old file as it was.
    #[test]
    fn a_failed_write_leaves_the_old_file() {
        let missing = Path::new("/nonexistent-folder-for-lb-tests/config.json");
        assert!(write_atomically(missing, "{}").is_err());
    }
}
