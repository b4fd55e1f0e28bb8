//! Writing the pool back to its file after a change through the backends API, so the file stays
//! the truth and a restart (or a reload) finds the same pool. The text is written to a temporary
//! file in the same folder, flushed to disk and renamed over the old one: a reader (the watch, a
//! crash, an editor) sees the old file or the new one, never half of one. Blocking; callers run
//! it on the blocking thread pool.

use std::fs;
use std::io::{self, Write};
use std::path::Path;

use serde::Serialize;

use crate::backend::default_name;

/// One backend as the file lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    pub url: String,
    pub weight: u32,
    pub name: String,
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
    },
}

fn is_one(weight: &u32) -> bool {
    *weight == 1
}

/// `{"backends": [...]}`, one entry per line: a plain URL where weight and name are the
/// defaults, else an object with what differs.
pub fn render(entries: &[FileEntry]) -> String {
    let lines: Vec<String> = entries
        .iter()
        .enumerate()
        .map(|(position, entry)| {
            let own_name = (entry.name != default_name(position)).then_some(entry.name.as_str());
            let written = if entry.weight == 1 && own_name.is_none() {
                Written::Url(&entry.url)
            } else {
                Written::Object {
                    url: &entry.url,
                    weight: entry.weight,
                    name: own_name,
                }
            };
            format!(
                "    {}",
                serde_json::to_string(&written).expect("strings and numbers serialize")
            )
        })
        .collect();
    format!("{{\n  \"backends\": [\n{}\n  ]\n}}\n", lines.join(",\n"))
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
        ];
        let text = render(&entries);
        assert!(text.contains("    \"http://127.0.0.1:9001\",\n"), "{text}");
        write_atomically(&path, &text).expect("written");
        let specs = PoolFile::new(path).load().expect("valid pool");
        assert_eq!(specs[1].weight, 3);
        assert_eq!(specs[2].name.as_deref(), Some("big"));
        assert_eq!(specs[0].name, None);
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
