//! Spans off the workers: a bounded queue to one thread, which posts them to the collector in
//! batches (at most [`MAX_BATCH`], or what arrived within [`BATCH_DELAY`] of the first) as
//! OTLP/HTTP protobuf ([`super::encode`]). A worker never waits: a span that does not fit is
//! dropped and counted in `lb_trace_spans_dropped_total`, as are the spans of a batch the
//! collector did not take (after [`Collector::post`]'s retries).

use std::sync::{mpsc, Arc};
use std::thread;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use rustls::ClientConfig;
use tokio::sync::mpsc::{error::TrySendError, Receiver, Sender};
use tokio::time::Instant;

use super::encode::export_body;
use super::record::FinishedSpan;
use super::transport::{headers_from_env, Collector};
use crate::settings::TracingSettings;

/// Spans the queue holds before new ones are dropped (the SDK's batch processor's default).
const QUEUE_SPANS: usize = 2048;

/// Most spans in one export request.
const MAX_BATCH: usize = 512;

/// Longest a span waits for others to fill its batch.
const BATCH_DELAY: Duration = Duration::from_secs(1);

/// How long the exporting thread sleeps between looks at the queue while it gathers a batch.
const BUSY_PAUSE: Duration = Duration::from_millis(5);

/// Longest one post (with its retries) may take.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why tracing could not start.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error("tracing: {0}")]
    Headers(String),
    #[error("cannot start the trace exporter's thread: {0}")]
    Thread(#[from] std::io::Error),
}

enum Message {
    Span(FinishedSpan),
    /// Export what came before, then answer.
    Flush(mpsc::Sender<()>),
}

/// The workers' end of the queue.
pub struct Queue {
    sender: Sender<Message>,
    dropped: Counter,
}

impl Queue {
    pub fn push(&self, span: FinishedSpan) {
        match self.sender.try_send(Message::Span(span)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.dropped.inc();
            }
            // The thread is gone (only at exit): nothing to do.
            Err(TrySendError::Closed(_)) => {}
        }
    }

    pub fn flush(&self, within: Duration) {
        let (done, wait) = mpsc::channel();
        if self.sender.try_send(Message::Flush(done)).is_ok() {
            let _ = wait.recv_timeout(within);
        }
    }
}

/// Starts the exporting thread, posting to `settings.otlp_endpoint` (through `tls` for an
/// `https://` collector).
pub fn start(
    settings: &TracingSettings,
    tls: &Arc<ClientConfig>,
    dropped: Counter,
) -> Result<Queue, TraceError> {
    let headers = headers_from_env().map_err(TraceError::Headers)?;
    let (sender, spans) = tokio::sync::mpsc::channel(QUEUE_SPANS);
    let tls = Arc::clone(tls);
    let failed = dropped.clone();
    let (endpoint, service) = (
        settings.otlp_endpoint.clone(),
        settings.service_name.clone(),
    );
    thread::Builder::new()
        .name("trace-export".into())
        .spawn(move || {
            actix_rt::System::new().block_on(async move {
                let collector = Collector::new(&tls, endpoint, headers, EXPORT_TIMEOUT);
                run(spans, collector, &service, failed).await;
            });
        })?;
    Ok(Queue { sender, dropped })
}

/// A batch begun by `first`: what else arrives until it is full, a flush is asked for, or
/// [`BATCH_DELAY`] has passed. The queue is looked at every [`BUSY_PAUSE`] rather than waited
/// on: a span sent to a waiting receiver wakes its thread, one system call per span.
async fn gather(
    first: Message,
    spans: &mut Receiver<Message>,
) -> (Vec<FinishedSpan>, Vec<mpsc::Sender<()>>) {
    let (mut batch, mut flushes) = (Vec::with_capacity(MAX_BATCH), Vec::new());
    let deadline = Instant::now() + BATCH_DELAY;
    let mut next = Some(first);
    loop {
        while let Some(message) = next.take() {
            match message {
                Message::Span(span) => batch.push(span),
                Message::Flush(done) => flushes.push(done),
            }
            if batch.len() < MAX_BATCH {
                next = spans.try_recv().ok();
            }
        }
        let now = Instant::now();
        if batch.len() >= MAX_BATCH || !flushes.is_empty() || now >= deadline {
            return (batch, flushes);
        }
        tokio::time::sleep(BUSY_PAUSE.min(deadline - now)).await;
        next = spans.try_recv().ok();
    }
}

/// The exporting loop: batches until every sender is gone.
async fn run(mut spans: Receiver<Message>, collector: Collector, service: &str, dropped: Counter) {
    let mut failing = false;
    while let Some(first) = spans.recv().await {
        let (batch, flushes) = gather(first, &mut spans).await;
        if !batch.is_empty() {
            let count = batch.len() as u64;
            match collector.post(export_body(&batch, service)).await {
                Ok(()) => failing = false,
                Err(err) => {
                    dropped.inc_by(count);
                    // One line in the process log per run of failures.
                    if !failing {
                        log::warn!("cannot export {count} spans: {err}; dropping until it works");
                        failing = true;
                    }
                }
            }
        }
        for done in flushes {
            let _ = done.send(());
        }
    }
}
