//! Access lines off the workers: a bounded queue to one writer thread, which appends them to
//! `log.access_path` (or stderr) through a buffer written out when full or at most
//! [`FLUSH_AFTER`] after its oldest line (one write for many lines under load). A worker never
//! waits: a line that does not fit the queue is dropped and counted
//! (`lb_access_log_dropped_total`). SIGUSR1 asks for the file to be opened again by its path,
//! after logrotate has renamed it.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;

/// Lines the queue holds before new ones are dropped.
const QUEUE_LINES: usize = 16_384;

/// How often an idle writer looks whether it should reopen the file.
const IDLE_CHECK: Duration = Duration::from_millis(100);

/// Longest a line waits in the writer's buffer before it is written to the file.
const FLUSH_AFTER: Duration = Duration::from_millis(100);

/// The writer's buffer: one write for many lines under load.
const BUFFER_BYTES: usize = 64 * 1024;

/// How long a busy writer pauses after emptying the queue. A worker's send wakes a writer that
/// waits on the queue — a system call and a context switch for nearly every line under load,
/// measured as the JSON log's largest cost — but not one that sleeps.
const BUSY_PAUSE: Duration = Duration::from_millis(5);

enum Message {
    Line(String),
    /// Flush, then answer.
    Flush(mpsc::Sender<()>),
}

/// The handle workers write through; cheap to clone.
#[derive(Clone)]
pub struct LineWriter {
    queue: SyncSender<Message>,
    reopen: Arc<AtomicBool>,
    dropped: Counter,
}

impl LineWriter {
    /// Opens `path` (appending; created if missing) or takes stderr, and starts the thread.
    pub fn start(path: Option<PathBuf>, dropped: Counter) -> io::Result<Self> {
        let output = match path {
            Some(path) => Output::File {
                file: BufWriter::with_capacity(BUFFER_BYTES, open(&path)?),
                path,
            },
            None => Output::Stderr(BufWriter::with_capacity(BUFFER_BYTES, io::stderr())),
        };
        let (queue, lines) = mpsc::sync_channel(QUEUE_LINES);
        let reopen = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&reopen);
        thread::Builder::new()
            .name("access-log".into())
            .spawn(move || run(lines, output, &flag))?;
        Ok(Self {
            queue,
            reopen,
            dropped,
        })
    }

    /// Queues one line (without its newline), or drops and counts it when the queue is full.
    pub fn write(&self, line: String) {
        match self.queue.try_send(Message::Line(line)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.dropped.inc();
            }
            // The writer is gone (only at exit): nothing to do.
            Err(TrySendError::Disconnected(_)) => {}
        }
    }

    /// Asks for the file to be opened again by its path (SIGUSR1); lines queued after this
    /// call go to the new file.
    pub fn reopen(&self) {
        self.reopen.store(true, Ordering::Relaxed);
    }

    /// Waits, at most `within`, until every line queued so far is written (at shutdown).
    pub fn flush(&self, within: Duration) {
        let (done, wait) = mpsc::channel();
        if self.queue.send(Message::Flush(done)).is_ok() {
            let _ = wait.recv_timeout(within);
        }
    }
}

fn open(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|err| {
            io::Error::new(
                err.kind(),
                format!("cannot open log.access_path {}: {err}", path.display()),
            )
        })
}

enum Output {
    Stderr(BufWriter<io::Stderr>),
    File {
        path: PathBuf,
        file: BufWriter<File>,
    },
}

impl Output {
    fn line(&mut self, line: &str) -> io::Result<()> {
        let out: &mut dyn Write = match self {
            Self::Stderr(out) => out,
            Self::File { file, .. } => file,
        };
        out.write_all(line.as_bytes())?;
        out.write_all(b"\n")
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Self::Stderr(out) => out.flush(),
            Self::File { file, .. } => file.flush(),
        }
    }

    /// Writes what is buffered to the old file, then continues in a new one at the path; if
    /// that cannot be opened, the old one is kept.
    fn reopen(&mut self) {
        let Self::File { path, file } = self else {
            return;
        };
        let _ = file.flush();
        match open(path) {
            Ok(new) => {
                *file = BufWriter::with_capacity(BUFFER_BYTES, new);
                log::info!("access log reopened: {}", path.display());
            }
            Err(err) => log::error!("{err}; still writing to the file opened before"),
        }
    }
}

/// The writer thread: lines into the buffer as they come; the buffer goes to the file when it
/// is full, [`FLUSH_AFTER`] after its oldest line, or when asked. An idle writer waits on the
/// queue; a busy one pauses [`BUSY_PAUSE`] whenever it has emptied the queue and looks again,
/// going back to waiting only when a look finds nothing.
fn run(lines: Receiver<Message>, mut output: Output, reopen: &AtomicBool) {
    let mut writer = Writer {
        output: &mut output,
        reopen,
        unflushed: None,
        failing: false,
    };
    loop {
        let wait =
            (writer.unflushed).map_or(IDLE_CHECK, |at| FLUSH_AFTER.saturating_sub(at.elapsed()));
        let mut next = match lines.recv_timeout(wait) {
            Ok(message) => Some(message),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => break,
        };
        if next.is_none() {
            writer.take(None);
        }
        while let Some(message) = next {
            writer.take(Some(message));
            next = lines.try_recv().ok().or_else(|| {
                thread::sleep(BUSY_PAUSE);
                lines.try_recv().ok()
            });
        }
    }
    let _ = output.flush();
}

/// The writer thread's state between messages.
struct Writer<'a> {
    output: &'a mut Output,
    reopen: &'a AtomicBool,
    /// When the oldest line not yet flushed was buffered.
    unflushed: Option<Instant>,
    /// Whether the last write failed (one line in the process log per run of failures).
    failing: bool,
}

impl Writer<'_> {
    /// Handles one message (or a wake-up without one): the reopen flag is looked at first, so a
    /// line queued after `reopen` returned goes to the new file (the queue orders the flag's
    /// store before the line); the buffer is flushed when due.
    fn take(&mut self, message: Option<Message>) {
        if self.reopen.swap(false, Ordering::Relaxed) {
            self.output.reopen();
        }
        let mut result = match message {
            Some(Message::Line(line)) => {
                self.unflushed.get_or_insert_with(Instant::now);
                self.output.line(&line)
            }
            Some(Message::Flush(done)) => {
                let flushed = self.output.flush();
                self.unflushed = None;
                let _ = done.send(());
                flushed
            }
            None => Ok(()),
        };
        if self.unflushed.is_some_and(|at| at.elapsed() >= FLUSH_AFTER) {
            result = result.and(self.output.flush());
            self.unflushed = None;
        }
        match result {
            Err(err) if !self.failing => {
                log::error!("cannot write the access log: {err}");
                self.failing = true;
            }
            Ok(()) => self.failing = false,
            Err(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lines reach the file in order; after a rename and a reopen, new lines go to a new file
    /// at the path and the renamed one keeps what it had.
    #[test]
    fn writes_in_order_and_reopens_after_a_rename() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("access.log");
        let writer = LineWriter::start(Some(path.clone()), Counter::default()).expect("start");
        writer.write("one".into());
        writer.write("two".into());
        writer.flush(Duration::from_secs(5));
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "one\ntwo\n");
        let rotated = dir.path().join("access.log.1");
        std::fs::rename(&path, &rotated).expect("rename");
        writer.reopen();
        writer.write("three".into());
        writer.flush(Duration::from_secs(5));
        assert_eq!(
            std::fs::read_to_string(&rotated).expect("read"),
            "one\ntwo\n"
        );
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "three\n");
    }

    /// A full queue drops and counts instead of waiting.
    #[test]
    fn a_full_queue_drops_and_counts() {
        let (queue, _held) = mpsc::sync_channel(1);
        let dropped = Counter::default();
        let writer = LineWriter {
            queue,
            reopen: Arc::new(AtomicBool::new(false)),
            dropped: dropped.clone(),
        };
        for n in 0..5 {
            writer.write(format!("line {n}"));
        }
        assert_eq!(dropped.get(), 4);
    }
}
