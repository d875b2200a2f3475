//! The background writer: the analyzer hands records over a bounded queue and never waits
//! for the disk or the database; a full queue drops the record and counts it, and so does a
//! failed write (an unreachable PostgreSQL is retried with a pause, never in the analysis).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use crate::TraceSink;
use crate::record::AccessRecord;

/// Records written per transaction at most.
const BATCH_MAX: usize = 4096;
/// Longest a record waits in a partial batch.
const BATCH_WAIT: Duration = Duration::from_millis(250);
/// How often partitions are rotated and retention applied.
const MAINTAIN_EVERY: Duration = Duration::from_secs(1);

/// Counters of the writer (Prometheus `apitap_trace_*`).
#[derive(Debug, Default)]
pub struct WriterStats {
    /// Records stored.
    pub records_written: AtomicU64,
    /// Records dropped because the queue was full (the disk could not keep up).
    pub records_dropped_queue_full: AtomicU64,
    /// Records lost because a write failed (disk full, I/O error, database unreachable).
    pub records_dropped_write_failed: AtomicU64,
    /// Records left out because their time is outside what retention keeps (PostgreSQL,
    /// whose day partitions cover `retention_days` back and a day ahead).
    pub records_dropped_outside_retention: AtomicU64,
    /// Sensitive values left out of records over the analyzer's per-record cap.
    pub values_dropped_record_cap: AtomicU64,
    /// Partitions deleted by retention.
    pub partitions_evicted: AtomicU64,
    /// Records those partitions held.
    pub records_evicted: AtomicU64,
    /// Records held now.
    pub records_held: AtomicU64,
    /// Bytes on disk now.
    pub bytes_held: AtomicU64,
}

/// The sending side; dropping it (or [`TraceWriter::finish`]) flushes and stops the thread.
#[derive(Debug)]
pub struct TraceWriter {
    tx: Option<SyncSender<AccessRecord>>,
    thread: Option<JoinHandle<()>>,
    stats: Arc<WriterStats>,
}

impl TraceWriter {
    /// Starts the writer thread over an opened store, with a queue of `queue` records.
    pub fn start<S: TraceSink>(store: S, queue: usize) -> std::io::Result<TraceWriter> {
        let (tx, rx) = std::sync::mpsc::sync_channel(queue.max(1));
        let stats = Arc::new(WriterStats::default());
        let (r, h) = store.usage();
        stats.records_held.store(r, Ordering::Relaxed);
        stats.bytes_held.store(h, Ordering::Relaxed);
        let st = Arc::clone(&stats);
        let thread = std::thread::Builder::new()
            .name("trace-writer".into())
            .spawn(move || run(store, rx, &st))?;
        Ok(TraceWriter {
            tx: Some(tx),
            thread: Some(thread),
            stats,
        })
    }

    /// Hands a record over without waiting; a full queue drops it (counted).
    pub fn record(&self, record: AccessRecord) {
        let Some(tx) = &self.tx else { return };
        match tx.try_send(record) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.stats
                    .records_dropped_queue_full
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// The counters.
    pub fn stats(&self) -> Arc<WriterStats> {
        Arc::clone(&self.stats)
    }

    /// Writes what is queued and stops the thread.
    pub fn finish(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take()
            && t.join().is_err()
        {
            tracing::error!("trace writer thread panicked");
        }
    }
}

impl Drop for TraceWriter {
    fn drop(&mut self) {
        self.stop();
    }
}

fn run<S: TraceSink>(mut store: S, rx: Receiver<AccessRecord>, stats: &WriterStats) {
    let mut batch = Vec::with_capacity(BATCH_MAX);
    let mut last_maintain = Instant::now();
    let mut logged_failure = false;
    loop {
        let open = match rx.recv_timeout(BATCH_WAIT) {
            Ok(r) => {
                batch.push(r);
                while batch.len() < BATCH_MAX {
                    match rx.try_recv() {
                        Ok(r) => batch.push(r),
                        Err(_) => break,
                    }
                }
                true
            }
            Err(RecvTimeoutError::Timeout) => true,
            Err(RecvTimeoutError::Disconnected) => false,
        };
        if !batch.is_empty() {
            match store.append_batch(&batch) {
                Ok(outside) => {
                    let outside = outside.min(batch.len() as u64);
                    stats
                        .records_written
                        .fetch_add(batch.len() as u64 - outside, Ordering::Relaxed);
                    stats
                        .records_dropped_outside_retention
                        .fetch_add(outside, Ordering::Relaxed);
                    logged_failure = false;
                }
                Err(e) => {
                    stats
                        .records_dropped_write_failed
                        .fetch_add(batch.len() as u64, Ordering::Relaxed);
                    // Once per outage, not once per batch; the cause names no stored content.
                    if !logged_failure {
                        tracing::error!(error = %e, "trace store write failed; records are counted as dropped");
                        logged_failure = true;
                    }
                }
            }
            batch.clear();
        }
        if !open || last_maintain.elapsed() >= MAINTAIN_EVERY {
            last_maintain = Instant::now();
            match store.maintain(SystemTime::now()) {
                Ok(ev) => {
                    stats
                        .partitions_evicted
                        .fetch_add(ev.partitions, Ordering::Relaxed);
                    stats
                        .records_evicted
                        .fetch_add(ev.records, Ordering::Relaxed);
                }
                Err(e) => tracing::warn!(error = %e, "trace store maintenance failed"),
            }
            let (r, b) = store.usage();
            stats.records_held.store(r, Ordering::Relaxed);
            stats.bytes_held.store(b, Ordering::Relaxed);
        }
        if !open {
            return;
        }
    }
}
