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
//! A panic is caught; a crash is not (an abort, a stack overflow, the OOM killer). The event
//! being analysed when the process died is redelivered after the restart, and would kill it
//! again. [`InFlight`] keeps, in a small memory-mapped file beside the dead-letter file, the
//! id of the event under analysis and how many processes died on it: the mapping is shared
//! with the page cache, so it survives the process at the cost of two memory stores per
//! event, no system call. An event that has killed [`IngestConfig::max_event_crashes`]
//! processes is dead-lettered unanalysed when it comes again, and counted.
//!
//! The file holds whole events (the same data as the events topic), so it is created 0600,
//! bounded in bytes, and belongs in the analyzer's state directory.
//!
//! [`IngestConfig::max_event_crashes`]: crate::config::IngestConfig::max_event_crashes

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

/// Bytes of the in-flight record: state (1), crash count (1), id length (1), id (up to 61).
const IN_FLIGHT_BYTES: usize = 64;
const ID_MAX: usize = IN_FLIGHT_BYTES - 3;
/// State byte: no event under analysis.
const IDLE: u8 = b'0';
/// State byte: the event in the record is under analysis.
const BUSY: u8 = b'1';

/// The event under analysis, in a memory-mapped file that outlives the process (see the
/// module docs).
pub struct InFlight {
    map: *mut u8,
    /// The event a previous process died on, and how many died on it.
    crashed: Option<(Vec<u8>, u8)>,
}

// SAFETY: the mapping is owned by this value alone and only accessed through `&mut self`.
unsafe impl Send for InFlight {}

impl std::fmt::Debug for InFlight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InFlight").finish_non_exhaustive()
    }
}

impl InFlight {
    /// Opens (or creates, 0600) the marker at `path` and reads what a previous process left.
    pub fn open(path: &Path) -> Result<InFlight, Error> {
        use std::os::fd::AsRawFd as _;
        let output_error = |source| Error::Output {
            what: "the in-flight marker (beside ingest.dead_letter_path)",
            path: path.to_path_buf(),
            source,
        };
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .mode(0o600)
            .open(path)
            .map_err(output_error)?;
        file.set_len(IN_FLIGHT_BYTES as u64).map_err(output_error)?;
        // SAFETY: a shared read-write mapping of the whole (just sized) file, not aliased by
        // any Rust reference; the file may be closed after mapping.
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                IN_FLIGHT_BYTES,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if map == libc::MAP_FAILED {
            return Err(output_error(io::Error::last_os_error()));
        }
        let mut marker = InFlight {
            map: map.cast(),
            crashed: None,
        };
        let record = marker.read();
        if record[0] == BUSY {
            let len = usize::from(record[2]).min(ID_MAX);
            marker.crashed = Some((record[3..3 + len].to_vec(), record[1]));
        }
        marker.write_state(IDLE);
        Ok(marker)
    }

    fn read(&self) -> [u8; IN_FLIGHT_BYTES] {
        let mut out = [0u8; IN_FLIGHT_BYTES];
        // SAFETY: `map` points to IN_FLIGHT_BYTES mapped bytes (see `open`).
        unsafe { std::ptr::copy_nonoverlapping(self.map, out.as_mut_ptr(), IN_FLIGHT_BYTES) };
        out
    }

    fn write_state(&mut self, state: u8) {
        // SAFETY: offset 0 is inside the mapping; volatile so the store is not elided.
        unsafe { std::ptr::write_volatile(self.map, state) };
    }

    /// Marks `event_id` as under analysis and returns how many processes already died on it.
    pub fn begin(&mut self, event_id: &str) -> u8 {
        let id = &event_id.as_bytes()[..event_id.len().min(ID_MAX)];
        let crashes = match &self.crashed {
            Some((crashed_id, n)) if crashed_id.as_slice() == id => *n,
            _ => 0,
        };
        let mut record = [0u8; IN_FLIGHT_BYTES];
        record[0] = BUSY;
        record[1] = crashes.saturating_add(1);
        record[2] = id.len() as u8;
        record[3..3 + id.len()].copy_from_slice(id);
        // SAFETY: `map` points to IN_FLIGHT_BYTES mapped bytes. The record is written
        // whole; a process killed in the middle leaves a record whose id does not match any
        // event, which only resets the count.
        unsafe { std::ptr::copy_nonoverlapping(record.as_ptr(), self.map, IN_FLIGHT_BYTES) };
        crashes
    }

    /// The event is analysed (or skipped): nothing is under analysis.
    pub fn end(&mut self) {
        self.write_state(IDLE);
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `open`, unmapped once.
        unsafe { libc::munmap(self.map.cast(), IN_FLIGHT_BYTES) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::summary::tests::event;

    #[test]
    fn the_marker_counts_processes_that_died_on_one_event() {
        let dir = std::env::temp_dir().join(format!("apitap-inflight-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("dead.jsonl.inflight");
        let poison = POISON;
        for died_before in 0..3u8 {
            let mut m = InFlight::open(&path).unwrap();
            assert_eq!(m.begin("ffffffffffffffffffffffffffffffff"), 0);
            m.end();
            assert_eq!(m.begin(poison), died_before);
            // The process dies during the analysis: the mapping is not told.
            drop(m);
        }
        // A clean analysis ends the count.
        let mut m = InFlight::open(&path).unwrap();
        assert_eq!(m.begin(poison), 3);
        m.end();
        drop(m);
        let mut m = InFlight::open(&path).unwrap();
        assert_eq!(m.begin(poison), 0);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    const POISON: &str = "0123456789abcdef0123456789abcdef";

    /// The child of [`the_marker_survives_a_real_abort`]: a process that dies (abort, not
    /// panic) while an event is under analysis.
    #[test]
    #[ignore = "child process: run (with --ignored) by the_marker_survives_a_real_abort"]
    fn abort_while_analysing() {
        let path = std::env::var_os("APITAP_INFLIGHT_PATH").expect("run by the parent test");
        let mut m = InFlight::open(Path::new(&path)).unwrap();
        m.begin(POISON);
        std::process::abort();
    }

    /// A real abort (no unwinding, no destructors, no munmap) leaves the marker set: the
    /// shared mapping's page belongs to the page cache, not to the process.
    #[test]
    fn the_marker_survives_a_real_abort() {
        let dir = std::env::temp_dir().join(format!("apitap-abort-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("dead.jsonl.inflight");
        let exe = std::env::current_exe().unwrap();
        for _ in 0..2 {
            let out = std::process::Command::new(&exe)
                .args([
                    "--ignored",
                    "--exact",
                    "dead_letter::tests::abort_while_analysing",
                    "--test-threads=1",
                ])
                .env("APITAP_INFLIGHT_PATH", &path)
                .output()
                .unwrap();
            use std::os::unix::process::ExitStatusExt as _;
            assert_eq!(out.status.signal(), Some(libc::SIGABRT), "{out:?}");
        }
        let mut m = InFlight::open(&path).unwrap();
        assert_eq!(m.begin(POISON), 2, "two processes died on the event");
        std::fs::remove_dir_all(&dir).unwrap();
    }

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
