//! The watch on the pool file: an inotify watch (through `notify`) on the file's folder — not on
//! the file, because editors and our own atomic writes replace it by rename, which would end a
//! watch on the old inode — that calls back whenever an event names the file. The caller (the
//! registry) debounces the calls into one reload.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};

/// A running watch; dropping it stops it.
pub struct FileWatch {
    _watcher: RecommendedWatcher,
}

impl FileWatch {
    /// Watches `file`'s folder and calls `touched` (on the watch's own thread) for each event
    /// that concerns `file`.
    pub fn start(file: &Path, touched: impl Fn() + Send + 'static) -> notify::Result<Self> {
        let folder: PathBuf = file
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
        let name: OsString = file.file_name().map(OsString::from).unwrap_or_default();
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                let Ok(event) = event else { return };
                let relevant = matches!(
                    event.kind,
                    EventKind::Create(_) | EventKind::Modify(_) | EventKind::Remove(_)
                ) && event
                    .paths
                    .iter()
                    .any(|p| p.file_name() == Some(name.as_os_str()));
                if relevant {
                    touched();
                }
            })?;
        watcher.watch(&folder, RecursiveMode::NonRecursive)?;
        Ok(Self { _watcher: watcher })
    }
}
