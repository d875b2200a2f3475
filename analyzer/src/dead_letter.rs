//! Events whose analysis failed (issue 22): isolated, counted, and kept for the developers.
//!
//! A panic while analysing one event is a bug that event triggers. Offsets are committed
//! only after processing (R-BUS-1), so letting it take the process down would redeliver the
//! same event after every restart: a crash loop, and a blind analyzer, caused by one message
//! anyone who can reach the monitored API can send. [`crate::ingest::Ingestor`] therefore
//! runs each event under `catch_unwind`; a failed event is skipped, counted, logged by its
//! `event_id` only, and appended here. It is not retried: analysis is deterministic, so a
//! second attempt on the same state fails the same way, after applying its partial effects
//! twice — N is 1.
//!
//! The file holds whole events (the same data as the events topic), so it is created 0600,
//! bounded in bytes, and belongs in the analyzer's state directory.

use std::fs::{File, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use apitap_schema::{ApiEvent, encode_event_into};

use crate::error::Error;

/// What became of one failed event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kept {
    /// Appended to the file.
    Written,
    /// Not written: the byte limit is reached or the write failed.
    Dropped,
}

/// The dead-letter file: JSON lines of failed events, appended, at most `max_bytes`.
#[derive(Debug)]
pub struct DeadLetter {
    path: PathBuf,
    file: File,
    written: u64,
    max_bytes: u64,
    line: Vec<u8>,
}

impl DeadLetter {
    /// Opens (or creates) `path` for appending, owner-only: an existing file with group or
    /// other permission bits is tightened to 0600.
    pub fn open(path: &Path, max_bytes: u64) -> Result<DeadLetter, Error> {
        let output_error = |source| Error::Output {
            what: "dead letters (ingest.dead_letter_path)",
            path: path.to_path_buf(),
            source,
        };
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)
            .map_err(output_error)?;
        let meta = file.metadata().map_err(output_error)?;
        if meta.permissions().mode() & 0o077 != 0 {
            file.set_permissions(std::fs::Permissions::from_mode(0o600))
                .map_err(output_error)?;
        }
        Ok(DeadLetter {
            path: path.to_path_buf(),
            file,
            written: meta.len(),
            max_bytes,
            line: Vec::new(),
        })
    }

    /// Appends `event` as one JSON line, unless that would pass the byte limit.
    pub fn keep(&mut self, event: &ApiEvent) -> Kept {
        self.line.clear();
        encode_event_into(event, &mut self.line);
        self.line.push(b'\n');
        let len = self.line.len() as u64;
        if self.written.saturating_add(len) > self.max_bytes {
            return Kept::Dropped;
        }
        match self.append() {
            Ok(()) => {
                self.written += len;
                Kept::Written
            }
            Err(e) => {
                tracing::warn!(
                    path = %self.path.display(),
                    error = %e,
                    "cannot write a dead letter; the event is only counted"
                );
                Kept::Dropped
            }
        }
    }

    fn append(&mut self) -> io::Result<()> {
        self.file.write_all(&self.line)?;
        self.file.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::summary::tests::event;

    #[test]
    fn letters_are_private_appended_and_bounded() {
        let dir = std::env::temp_dir().join(format!("apitap-dl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("dead.jsonl");
        std::fs::write(&path, b"").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let ev = event(Some("api.example"), "GET", "/a");
        let one = {
            let mut v = Vec::new();
            encode_event_into(&ev, &mut v);
            v.len() as u64 + 1
        };
        let mut dl = DeadLetter::open(&path, 2 * one).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(dl.keep(&ev), Kept::Written);
        drop(dl);
        // Reopened: the limit counts what is already there.
        let mut dl = DeadLetter::open(&path, 2 * one).unwrap();
        assert_eq!(dl.keep(&ev), Kept::Written);
        assert_eq!(dl.keep(&ev), Kept::Dropped);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 2);
        assert!(apitap_schema::decode_event(text.lines().next().unwrap().as_bytes()).is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
