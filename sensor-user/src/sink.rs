//! Event sinks: JSON lines on stdout or appended to a file, or the event bus (`apitap-bus`):
//! Kafka through the on-disk spool (R-BUS-1, R-BUS-2), or the in-memory channel of the
//! embedded single-process mode. Writing never waits for the network: the bus publisher hands
//! the event to a memory queue or to the spool thread and returns.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt as _;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use apitap_bus::{BusMetrics, CloseReport, EventPublisher, KafkaEventPublisher};
use apitap_schema::{ApiEvent, encode_event_into};
use tracing::info;

use crate::config::{Config, SinkKind, SinkSection};

/// Bytes of JSON lines gathered before one `write` to the destination.
const LINES_BUFFER_BYTES: usize = 256 * 1024;

enum Out {
    /// Events are encoded straight into `buf` (no intermediate line buffer), which is written
    /// out whenever it holds [`LINES_BUFFER_BYTES`], and on every flush.
    Lines {
        dest: Box<dyn Write + Send>,
        buf: Vec<u8>,
    },
    Bus(Box<dyn EventPublisher>),
}

/// A destination for events.
pub struct Sink {
    out: Out,
    /// Events written (handed to the bus, for the bus sink).
    pub events: u64,
    close_timeout: Duration,
}

impl Sink {
    /// Opens a JSON-lines destination (`stdout` or `file`); `kafka` needs [`Sink::from_config`].
    pub fn open(cfg: &SinkSection) -> anyhow::Result<Sink> {
        let w: Box<dyn Write + Send> = match cfg.kind {
            SinkKind::Stdout => Box::new(std::io::stdout()),
            SinkKind::File => {
                let path = cfg
                    .path
                    .as_ref()
                    .context("sink.path is required for kind = \"file\"")?;
                Box::new(
                    // Events carry captured payloads: the owner's alone (R-OPS-3).
                    OpenOptions::new()
                        .create(true)
                        .append(true)
                        .mode(0o600)
                        .open(path)
                        .with_context(|| format!("opening event file {}", path.display()))?,
                )
            }
            SinkKind::Kafka => {
                anyhow::bail!("sink.kind = \"kafka\" needs the [kafka] section (Sink::from_config)")
            }
        };
        Ok(Sink::with_out(Out::Lines {
            dest: w,
            buf: Vec::with_capacity(LINES_BUFFER_BYTES + 64 * 1024),
        }))
    }

    /// Opens the configured destination; for `kafka`, starts the producer and its spool (an
    /// unreachable broker is not an error: events spool until it is back).
    pub fn from_config(cfg: &Config, sensor_id: &str) -> anyhow::Result<Sink> {
        if cfg.sink.kind != SinkKind::Kafka {
            return Sink::open(&cfg.sink);
        }
        let kafka = cfg
            .kafka
            .as_ref()
            .context("sink.kind = \"kafka\" needs a [kafka] section")?;
        let publisher =
            KafkaEventPublisher::start(kafka, sensor_id, Arc::new(BusMetrics::default()))
                .context("starting the kafka event producer")?;
        let mut sink = Sink::from_publisher(Box::new(publisher));
        sink.close_timeout = Duration::from_millis(kafka.producer.close_timeout_ms);
        Ok(sink)
    }

    /// A sink over any bus publisher: the embedded mode passes the in-memory channel's
    /// (`apitap_bus::memory::channel`).
    pub fn from_publisher(publisher: Box<dyn EventPublisher>) -> Sink {
        Sink::with_out(Out::Bus(publisher))
    }

    fn with_out(out: Out) -> Sink {
        Sink {
            out,
            events: 0,
            close_timeout: Duration::from_secs(5),
        }
    }

    /// Writes one event. For the bus this never blocks; events it loses are counted in its
    /// metrics (`apitap_bus_events_dropped_total`), not reported here.
    pub fn write(&mut self, event: &ApiEvent) -> anyhow::Result<()> {
        match &mut self.out {
            Out::Lines { dest, buf } => {
                encode_event_into(event, buf);
                buf.push(b'\n');
                if buf.len() >= LINES_BUFFER_BYTES {
                    write_out(dest, buf)?;
                }
            }
            Out::Bus(p) => {
                p.publish(event);
            }
        }
        self.events += 1;
        Ok(())
    }

    /// Flushes buffered events (JSON lines; the bus flushes by itself).
    pub fn flush(&mut self) -> anyhow::Result<()> {
        match &mut self.out {
            Out::Lines { dest, buf } => flush_lines(dest, buf),
            Out::Bus(_) => Ok(()),
        }
    }

    /// The bus's counters, when this sink is the bus.
    pub fn bus_metrics(&self) -> Option<Arc<BusMetrics>> {
        match &self.out {
            Out::Lines { .. } => None,
            Out::Bus(p) => Some(p.metrics()),
        }
    }

    /// Flushes and, for the bus, delivers for up to `kafka.producer.close_timeout_ms` and
    /// spools the rest for the next start.
    pub fn close(&mut self) -> anyhow::Result<Option<CloseReport>> {
        match &mut self.out {
            Out::Lines { dest, buf } => {
                flush_lines(dest, buf)?;
                Ok(None)
            }
            Out::Bus(p) => {
                let report = p
                    .close(self.close_timeout)
                    .context("closing the event bus")?;
                info!(
                    delivered = report.delivered,
                    left_in_spool = report.left_in_spool,
                    dropped = report.dropped,
                    "event bus closed"
                );
                Ok(Some(report))
            }
        }
    }
}

/// Writes the buffered lines to the destination and empties the buffer.
fn write_out(dest: &mut Box<dyn Write + Send>, buf: &mut Vec<u8>) -> anyhow::Result<()> {
    dest.write_all(buf).context("writing events")?;
    buf.clear();
    Ok(())
}

fn flush_lines(dest: &mut Box<dyn Write + Send>, buf: &mut Vec<u8>) -> anyhow::Result<()> {
    if !buf.is_empty() {
        write_out(dest, buf)?;
    }
    dest.flush().context("flushing events")
}

impl Drop for Sink {
    /// JSON lines still buffered are written out, as `BufWriter` would (`close` is the path
    /// that reports errors).
    fn drop(&mut self) {
        if let Out::Lines { dest, buf } = &mut self.out
            && let Err(e) = flush_lines(dest, buf)
        {
            tracing::warn!(error = %format!("{e:#}"), "writing buffered events at shutdown");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The event file holds captured payloads: created 0600 whatever the umask (issue 22).
    #[test]
    fn event_file_is_private() {
        use std::os::unix::fs::PermissionsExt as _;
        let path = std::env::temp_dir().join(format!("apitap-sink-mode-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let cfg = SinkSection {
            kind: SinkKind::File,
            path: Some(path.clone()),
        };
        let mut sink = Sink::open(&cfg).unwrap();
        sink.close().unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        std::fs::remove_file(&path).unwrap();
        assert_eq!(mode, 0o600);
    }
}
