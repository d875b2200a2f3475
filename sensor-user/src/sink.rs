//! Event sinks for this release: JSON lines on stdout or appended to a file (R-BUS-1 arrives
//! with the Kafka sink).

use std::fs::OpenOptions;
use std::io::{BufWriter, Write};

use anyhow::Context as _;
use apitap_schema::{ApiEvent, encode_event_into};

use crate::config::{SinkKind, SinkSection};

/// A destination for events.
pub struct Sink {
    out: BufWriter<Box<dyn Write + Send>>,
    /// Events written.
    pub events: u64,
    /// Bytes written.
    pub bytes: u64,
    line: Vec<u8>,
}

impl Sink {
    /// Opens the configured destination.
    pub fn open(cfg: &SinkSection) -> anyhow::Result<Sink> {
        let w: Box<dyn Write + Send> = match cfg.kind {
            SinkKind::Stdout => Box::new(std::io::stdout()),
            SinkKind::File => {
                let path = cfg
                    .path
                    .as_ref()
                    .context("sink.path is required for kind = \"file\"")?;
                Box::new(
                    OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(path)
                        .with_context(|| format!("opening event file {}", path.display()))?,
                )
            }
        };
        Ok(Sink {
            out: BufWriter::with_capacity(256 * 1024, w),
            events: 0,
            bytes: 0,
            line: Vec::with_capacity(16 * 1024),
        })
    }

    /// Writes one event as a JSON line.
    pub fn write(&mut self, event: &ApiEvent) -> anyhow::Result<()> {
        self.line.clear();
        encode_event_into(event, &mut self.line);
        self.line.push(b'\n');
        self.out.write_all(&self.line).context("writing an event")?;
        self.events += 1;
        self.bytes += self.line.len() as u64;
        Ok(())
    }

    /// Flushes buffered events.
    pub fn flush(&mut self) -> anyhow::Result<()> {
        self.out.flush().context("flushing events")
    }
}
