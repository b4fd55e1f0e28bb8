//! The crate's layering, read from its source: which file imports which (`crate::` and `super::`
//! paths outside comments and unit-test modules). Dependencies must point one way: no cycle
//! between files, and none between folders (a top-level folder and everything in it counts as
//! one unit, as does each file at the top of `src/`), so no folder imports a folder that imports
//! it back; only `src/http/` and the start-up (`src/startup/`) import `http::`, nothing imports
//! the start-up, and `settings` (beside `discovery/`) imports only leaf files (files that import
//! nothing from the crate).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// Module path (`["limiter", "map"]`) of every library file under `src/`.
fn modules(src: &Path) -> BTreeMap<Vec<String>, PathBuf> {
    let mut found = BTreeMap::new();
    let mut dirs = vec![src.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in fs::read_dir(&dir).expect("read src/") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            // `tests.rs` files are unit tests, compiled only for `cargo test`.
            if path.extension().is_none_or(|e| e != "rs") || path.ends_with("tests.rs") {
                continue;
            }
            let relative = path.strip_prefix(src).expect("under src/");
            let mut segments: Vec<String> = relative
                .with_extension("")
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            match segments.last().map(String::as_str) {
                Some("main") if segments.len() == 1 => continue,
                Some("lib") if segments.len() == 1 => segments.clear(),
                Some("mod") => {
                    segments.pop();
                }
                _ => {}
            }
            found.insert(segments, path);
        }
    }
    found
}

/// The file's code without comments and without its `#[cfg(test)]` unit-test module.
fn production_code(path: &Path) -> String {
    let text = fs::read_to_string(path).expect("read source file");
    let mut code = String::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let trimmed = line.trim_start();
        if trimmed == "#[cfg(test)]" && lines.peek().is_some_and(|l| l.trim() == "mod tests {") {
            break;
        }
        if trimmed.starts_with("//") {
            continue;
        }
        code.push_str(line.split(" // ").next().unwrap_or(line));
        code.push('\n');
    }
    code
}

/// Every `crate::a::b` / `super::a` path in `code`, made absolute from module `own`.
fn paths(code: &str, own: &[String]) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    // A folder's mod.rs names its children bare (`use shard::BucketStore`).
    let children: Vec<String> = code
        .lines()
        .filter_map(|l| l.trim().strip_suffix(';'))
        .filter_map(|l| l.strip_prefix("pub ").unwrap_or(l).strip_prefix("mod "))
        .map(str::to_owned)
        .collect();
    for child in &children {
        let needle = format!("{child}::");
        let mut from = 0;
        while let Some(at) = code[from..].find(&needle) {
            let begin = from + at;
            from = begin + needle.len();
            let before = code[..begin].chars().next_back();
            if before.is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '_' || c == ':')) {
                let mut path = own.to_vec();
                path.push(child.clone());
                found.push(path);
            }
        }
    }
    let bytes = code.as_bytes();
    for start in ["crate::", "super::"] {
        let mut from = 0;
        while let Some(at) = code[from..].find(start) {
            let begin = from + at;
            from = begin + start.len();
            let boundary = begin == 0
                || !(bytes[begin - 1].is_ascii_alphanumeric()
                    || bytes[begin - 1] == b'_'
                    || bytes[begin - 1] == b':');
            if !boundary {
                continue;
            }
            let rest: String = code[begin..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            let mut segments: Vec<String> = rest
                .split("::")
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect();
            let mut base: Vec<String> = Vec::new();
            if segments.first().is_some_and(|s| s == "crate") {
                segments.remove(0);
            } else {
                base = own.to_vec();
                while segments.first().is_some_and(|s| s == "super") {
                    segments.remove(0);
                    base.pop();
                }
            }
            base.extend(segments);
            found.push(base);
        }
    }
    found
}

/// Which files each file imports.
fn graph(src: &Path) -> BTreeMap<PathBuf, BTreeSet<PathBuf>> {
    let modules = modules(src);
    let mut edges = BTreeMap::new();
    for (module, path) in &modules {
        let code = production_code(path);
        let mut targets = BTreeSet::new();
        for mut target in paths(&code, module) {
            while !target.is_empty() && !modules.contains_key(&target) {
                target.pop();
            }
            if target.is_empty() || &target == module {
                continue;
            }
            targets.insert(modules[&target].clone());
        }
        edges.insert(path.clone(), targets);
    }
    edges
}

/// Groups of nodes that import each other, directly or through others (the strongly
/// connected components with more than one node).
fn cycles<N: Ord + Clone>(graph: &BTreeMap<N, BTreeSet<N>>) -> Vec<BTreeSet<N>> {
    let reach = |from: &N| {
        let mut seen = BTreeSet::new();
        let mut todo = vec![from.clone()];
        while let Some(node) = todo.pop() {
            for next in graph.get(&node).into_iter().flatten() {
                if seen.insert(next.clone()) {
                    todo.push(next.clone());
                }
            }
        }
        seen
    };
    let reachable: BTreeMap<&N, BTreeSet<N>> =
        graph.keys().map(|node| (node, reach(node))).collect();
    let mut groups: Vec<BTreeSet<N>> = Vec::new();
    for (node, from_node) in &reachable {
        if !from_node.contains(*node) || groups.iter().any(|g| g.contains(*node)) {
            continue;
        }
        let group = from_node
            .iter()
            .filter(|other| reachable[other].contains(*node))
            .cloned()
            .collect();
        groups.push(group);
    }
    groups
}

/// The unit a file belongs to: its top-level folder under `src/` (`registry` for
/// `src/registry/plan.rs`), or the file itself at the top (`backend` for `src/backend.rs`).
fn unit(src: &Path, file: &Path) -> String {
    let relative = file.strip_prefix(src).unwrap_or(file);
    let first = relative
        .components()
        .next()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .unwrap_or_default();
    first.trim_end_matches(".rs").to_owned()
}

/// Which units import which, from the file graph (`lib.rs`, which declares them all, left out).
fn folder_graph(
    src: &Path,
    files: &BTreeMap<PathBuf, BTreeSet<PathBuf>>,
) -> BTreeMap<String, BTreeSet<String>> {
    let lib = src.join("lib.rs");
    let mut units: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (file, targets) in files.iter().filter(|(file, _)| **file != lib) {
        let from = unit(src, file);
        let imports = units.entry(from.clone()).or_default();
        for target in targets {
            let to = unit(src, target);
            if to != from {
                imports.insert(to);
            }
        }
    }
    units
}

/// The cycles of `graph`, one line each (`a <-> b`).
fn describe<N: Ord + Clone + std::fmt::Debug>(groups: &[BTreeSet<N>]) -> String {
    let lines: Vec<String> = groups
        .iter()
        .map(|group| {
            let names: Vec<String> = group.iter().map(|n| format!("{n:?}")).collect();
            names.join(" <-> ")
        })
        .collect();
    lines.join("\n")
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// No two files of the library import each other, directly or through others.
#[test]
fn no_import_cycle_between_files() {
    let graph = graph(&src());
    assert!(graph.len() > 20, "found only {} files", graph.len());
    let groups = cycles(&graph);
    assert!(
        groups.is_empty(),
        "{} groups of files import each other:\n{}",
        groups.len(),
        describe(&groups)
    );
}

/// No folder imports a folder (or top-level file) that imports it back, directly or through
/// others: the folders form layers.
#[test]
fn no_import_cycle_between_folders() {
    let src = src();
    let units = folder_graph(&src, &graph(&src));
    assert!(units.len() > 10, "found only {} units", units.len());
    let groups = cycles(&units);
    assert!(
        groups.is_empty(),
        "{} groups of folders import each other:\n{}",
        groups.len(),
        describe(&groups)
    );
}

/// The checks above can fail: a file cycle is found, and so is a folder back-arrow made of
/// files that form no cycle among themselves.
#[test]
fn the_checks_catch_a_file_cycle_and_a_folder_back_arrow() {
    let src = PathBuf::from("/s");
    let file = |name: &str| src.join(name);
    let edges = |list: &[(&str, &[&str])]| -> BTreeMap<PathBuf, BTreeSet<PathBuf>> {
        list.iter()
            .map(|(from, to)| (file(from), to.iter().map(|t| file(t)).collect()))
            .collect()
    };
    let file_cycle = edges(&[("a/x.rs", &["b/y.rs"]), ("b/y.rs", &["a/x.rs"])]);
    assert_eq!(cycles(&file_cycle).len(), 1);
    // a/x -> b/y and b/z -> a/w: no file imports itself back, but folder b imports folder a
    // back.
    let back_arrow = edges(&[
        ("a/x.rs", &["b/y.rs"]),
        ("b/y.rs", &[]),
        ("b/z.rs", &["a/w.rs"]),
        ("a/w.rs", &["leaf.rs"]),
        ("leaf.rs", &[]),
    ]);
    assert!(cycles(&back_arrow).is_empty(), "no file cycle");
    let units = folder_graph(&src, &back_arrow);
    let groups = cycles(&units);
    assert_eq!(groups.len(), 1, "{units:?}");
    assert_eq!(
        groups[0],
        ["a".to_owned(), "b".to_owned()].into_iter().collect()
    );
    // Layers that point one way pass.
    let layered = edges(&[
        ("a/x.rs", &["b/y.rs"]),
        ("b/y.rs", &["leaf.rs"]),
        ("leaf.rs", &[]),
    ]);
    assert!(cycles(&folder_graph(&src, &layered)).is_empty());
}

/// Only the HTTP layer and the start-up (the wiring, which knows every part) import the HTTP
/// layer, and nothing imports the start-up; the pool file's owner (`discovery/`) imports only
/// leaf files, and the settings only leaf files and `discovery/` (the pool at start).
#[test]
fn layers_point_one_way() {
    let src = src();
    let graph = graph(&src);
    let http = src.join("http");
    let startup = src.join("startup");
    let settings = src.join("settings");
    let discovery = src.join("discovery");
    let leaves: BTreeSet<&PathBuf> = graph
        .iter()
        .filter(|(_, targets)| targets.is_empty())
        .map(|(file, _)| file)
        .collect();
    assert!(leaves.len() >= 4, "leaf files: {leaves:?}");
    let lib = src.join("lib.rs");
    for (file, targets) in &graph {
        if *file == lib {
            continue;
        }
        for target in targets {
            assert!(
                file.starts_with(&http) || file.starts_with(&startup) || !target.starts_with(&http),
                "{} imports {}",
                file.display(),
                target.display()
            );
            assert!(
                file.starts_with(&startup) || !target.starts_with(&startup),
                "{} imports the start-up ({})",
                file.display(),
                target.display()
            );
            let own_folder = [&settings, &discovery]
                .into_iter()
                .find(|folder| file.starts_with(folder));
            let allowed = match own_folder {
                None => true,
                Some(folder) => {
                    target.starts_with(folder)
                        || leaves.contains(target)
                        || (folder == &settings && target.starts_with(&discovery))
                }
            };
            assert!(
                allowed,
                "{} imports {}, which is below neither it nor the leaf files",
                file.display(),
                target.display()
            );
        }
    }
}
