//! The sensor's bounded on-disk spool (R-BUS-2): where events wait while the broker is slow or
//! down, to be replayed in order when it is back.
//!
//! Layout: a directory of append-only segment files `<20-digit id>.seg`, read in id order, and
//! a `cursor` file naming the position up to which every record was delivered. A record is
//!
//! ```text
//! magic u32 LE "TASP" | length u32 LE | crc32 u32 LE over (length, payload) | payload
//! payload: version u8 (1) | key_len u16 | key | header_count u16
//!          | { name_len u16 | name | value_len u32 | value }* | value (the rest)
//! ```
//!
//! Robustness: a record whose checksum fails, or that a crash cut short, is skipped; the reader
//! resynchronises on the next valid record (magic + checksum), and each damaged region is
//! counted as one lost event (`apitap_bus_events_dropped_total{cause="spool_corrupt"}`, a lower
//! bound). After a restart the last segment is never appended to again: writing resumes in a
//! fresh segment. Delivered segments are deleted; the cursor is written atomically (temporary
//! file and rename), and a segment is deleted before the cursor moves past it, so a crash can
//! only cause a re-send (deduplicated downstream by `event_id`), never a skip.
//!
//! Bounds: all segments together stay within `max_bytes`. When full, `drop_oldest` deletes the
//! oldest segment and counts its unsent events, `drop_newest` refuses the new event (counted
//! by the caller). Memory use is one record at a time.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

use tracing::{info, warn};

use crate::config::{MAX_RECORD_BYTES, SpoolFullPolicy};

const MAGIC: u32 = u32::from_le_bytes(*b"TASP");
const HEADER_BYTES: u64 = 12;
const PAYLOAD_VERSION: u8 = 1;
/// Ids of segments written in order start here, leaving room below for segments written in
/// front of them (see [`Spool::prepend`]).
const FIRST_ID: u64 = 1 << 32;
const CURSOR_FILE: &str = "cursor";

/// One spooled message: what the producer needs to send it again.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SpoolRecord {
    /// Message key.
    pub key: Vec<u8>,
    /// Message headers (name, value).
    pub headers: Vec<(String, Vec<u8>)>,
    /// Message value (the encoded event).
    pub value: Vec<u8>,
}

/// A place in the spool: a segment id and a byte offset in it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    /// Segment id.
    pub segment: u64,
    /// Byte offset of a record in that segment.
    pub offset: u64,
}

/// Size and policy limits.
#[derive(Debug, Clone, Copy)]
pub struct SpoolLimits {
    /// Cap of all segment files together.
    pub max_bytes: u64,
    /// Size at which a new segment is started.
    pub segment_bytes: u64,
    /// What to drop when full.
    pub on_full: SpoolFullPolicy,
}

/// Spool I/O failures.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// A file operation failed.
    #[error("spool {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A record larger than the spool accepts.
    #[error("a record of {0} bytes is larger than the spool accepts")]
    TooLarge(usize),
    /// The spool in this directory could not be opened and is not in use (see the producer).
    #[error("spool {0} is unavailable (it could not be opened)")]
    Unavailable(PathBuf),
}

fn io_err(path: &Path, source: std::io::Error) -> SpoolError {
    SpoolError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What [`Spool::append`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    /// Written.
    Written {
        /// Unsent events deleted with the oldest segments to make room (`drop_oldest`).
        dropped_oldest: u64,
    },
    /// Not written: the spool is full and the policy is `drop_newest`.
    RefusedFull,
}

/// Counters of damage found while reading.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpoolDamage {
    /// Damaged regions skipped (bad checksum, bad header, cut short).
    pub corrupt_regions: u64,
}

struct Segment {
    id: u64,
    path: PathBuf,
    file: File,
    /// Bytes in the file (for the active segment: written, including buffered bytes).
    len: u64,
    /// Offset where undelivered records start.
    start: u64,
    /// Records not yet read (at or after the read position, or after `start` when the reader
    /// has not reached this segment).
    unread: u64,
}

struct Writer {
    id: u64,
    out: BufWriter<File>,
    dirty: bool,
}

/// The spool. Single owner (the producer's spool thread); not thread-safe by itself.
pub struct Spool {
    dir: PathBuf,
    limits: SpoolLimits,
    segments: VecDeque<Segment>,
    writer: Writer,
    read: Position,
    released: Position,
    total_bytes: u64,
    unread: u64,
    damage: SpoolDamage,
    scratch: Vec<u8>,
}

enum At {
    Record(SpoolRecord, u64),
    End,
    Bad,
}

fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:020}.seg"))
}

/// Encodes `rec` as one framed record into `out` (cleared first).
pub fn encode_record(rec: &SpoolRecord, out: &mut Vec<u8>) -> Result<(), SpoolError> {
    out.clear();
    out.extend_from_slice(&[0; HEADER_BYTES as usize]);
    out.push(PAYLOAD_VERSION);
    let key_len = u16::try_from(rec.key.len()).map_err(|_| SpoolError::TooLarge(rec.key.len()))?;
    out.extend_from_slice(&key_len.to_le_bytes());
    out.extend_from_slice(&rec.key);
    let n =
        u16::try_from(rec.headers.len()).map_err(|_| SpoolError::TooLarge(rec.headers.len()))?;
    out.extend_from_slice(&n.to_le_bytes());
    for (name, value) in &rec.headers {
        let nl = u16::try_from(name.len()).map_err(|_| SpoolError::TooLarge(name.len()))?;
        let vl = u32::try_from(value.len()).map_err(|_| SpoolError::TooLarge(value.len()))?;
        out.extend_from_slice(&nl.to_le_bytes());
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(&vl.to_le_bytes());
        out.extend_from_slice(value);
    }
    out.extend_from_slice(&rec.value);
    let payload_len = out.len() - HEADER_BYTES as usize;
    if payload_len > MAX_RECORD_BYTES {
        return Err(SpoolError::TooLarge(payload_len));
    }
    let len = (payload_len as u32).to_le_bytes();
    let mut h = crc32fast::Hasher::new();
    h.update(&len);
    h.update(&out[HEADER_BYTES as usize..]);
    let crc = h.finalize();
    out[0..4].copy_from_slice(&MAGIC.to_le_bytes());
    out[4..8].copy_from_slice(&len);
    out[8..12].copy_from_slice(&crc.to_le_bytes());
    Ok(())
}

fn decode_payload(p: &[u8]) -> Option<SpoolRecord> {
    fn take<'a>(p: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        if p.len() < n {
            return None;
        }
        let (a, b) = p.split_at(n);
        *p = b;
        Some(a)
    }
    fn u16_of(p: &mut &[u8]) -> Option<usize> {
        take(p, 2).map(|b| u16::from_le_bytes([b[0], b[1]]) as usize)
    }
    let mut p = p;
    if take(&mut p, 1)? != [PAYLOAD_VERSION] {
        return None;
    }
    let kl = u16_of(&mut p)?;
    let key = take(&mut p, kl)?.to_vec();
    let n = u16_of(&mut p)?;
    let mut headers = Vec::with_capacity(n.min(16));
    for _ in 0..n {
        let nl = u16_of(&mut p)?;
        let name = String::from_utf8(take(&mut p, nl)?.to_vec()).ok()?;
        let vb = take(&mut p, 4)?;
        let vl = u32::from_le_bytes([vb[0], vb[1], vb[2], vb[3]]) as usize;
        headers.push((name, take(&mut p, vl)?.to_vec()));
    }
    Some(SpoolRecord {
        key,
        headers,
        value: p.to_vec(),
    })
}

/// Reads the record at `off` of a file of `len` bytes.
fn read_at(file: &File, off: u64, len: u64, buf: &mut Vec<u8>) -> std::io::Result<At> {
    if off >= len {
        return Ok(At::End);
    }
    if off + HEADER_BYTES > len {
        return Ok(At::Bad);
    }
    let mut h = [0u8; HEADER_BYTES as usize];
    file.read_exact_at(&mut h, off)?;
    let magic = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
    let plen = u32::from_le_bytes([h[4], h[5], h[6], h[7]]) as u64;
    let crc = u32::from_le_bytes([h[8], h[9], h[10], h[11]]);
    if magic != MAGIC || plen > MAX_RECORD_BYTES as u64 || off + HEADER_BYTES + plen > len {
        return Ok(At::Bad);
    }
    buf.clear();
    buf.resize(plen as usize, 0);
    file.read_exact_at(buf, off + HEADER_BYTES)?;
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&h[4..8]);
    hasher.update(buf);
    if hasher.finalize() != crc {
        return Ok(At::Bad);
    }
    match decode_payload(buf) {
        Some(rec) => Ok(At::Record(rec, off + HEADER_BYTES + plen)),
        None => Ok(At::Bad),
    }
}

/// Finds the next valid record after a damaged one at `from`, scanning for the magic.
fn resync(file: &File, from: u64, len: u64, buf: &mut Vec<u8>) -> std::io::Result<Option<u64>> {
    const WINDOW: usize = 64 * 1024;
    let magic = MAGIC.to_le_bytes();
    let mut window = vec![0u8; WINDOW];
    let mut pos = from + 1;
    while pos + HEADER_BYTES <= len {
        let n = (len - pos).min(WINDOW as u64) as usize;
        file.read_exact_at(&mut window[..n], pos)?;
        let mut i = 0;
        while i + 4 <= n {
            if window[i..i + 4] == magic {
                let cand = pos + i as u64;
                if let At::Record(..) = read_at(file, cand, len, buf)? {
                    return Ok(Some(cand));
                }
            }
            i += 1;
        }
        // Overlap by 3 bytes so a magic split across windows is found.
        if n < 4 {
            break;
        }
        pos += (n - 3) as u64;
    }
    Ok(None)
}

/// Counts valid records from `from` to the end (damaged regions skipped, not counted).
fn count_records(file: &File, from: u64, len: u64, buf: &mut Vec<u8>) -> std::io::Result<u64> {
    let mut off = from;
    let mut n = 0;
    loop {
        match read_at(file, off, len, buf)? {
            At::Record(_, next) => {
                n += 1;
                off = next;
            }
            At::End => return Ok(n),
            At::Bad => match resync(file, off, len, buf)? {
                Some(next) => off = next,
                None => return Ok(n),
            },
        }
    }
}

fn read_cursor(dir: &Path) -> Option<Position> {
    let b = std::fs::read(dir.join(CURSOR_FILE)).ok()?;
    if b.len() != 20 {
        return None;
    }
    let crc = u32::from_le_bytes([b[16], b[17], b[18], b[19]]);
    if crc32fast::hash(&b[..16]) != crc {
        return None;
    }
    let mut seg = [0u8; 8];
    let mut off = [0u8; 8];
    seg.copy_from_slice(&b[0..8]);
    off.copy_from_slice(&b[8..16]);
    Some(Position {
        segment: u64::from_le_bytes(seg),
        offset: u64::from_le_bytes(off),
    })
}

/// An existing spool directory open to group or others (e.g. made by a package at 0755) is
/// narrowed to its owner: the spool holds captured payloads.
fn tighten_dir(dir: &Path) -> Result<(), SpoolError> {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(dir)
        .map_err(|e| io_err(dir, e))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| io_err(dir, e))?;
        info!(dir = %dir.display(), was = format!("{:o}", mode & 0o777), "spool directory narrowed to 0700");
    }
    Ok(())
}

impl Spool {
    /// Opens (or creates) the spool in `dir`, recovering what a previous run left: undelivered
    /// records are read again from the saved cursor, in order.
    pub fn open(dir: &Path, limits: SpoolLimits) -> Result<Spool, SpoolError> {
        // Events carry captured payloads: the directory is the sensor user's alone (R-OPS-3).
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| io_err(dir, e))?;
        tighten_dir(dir)?;
        let mut ids: Vec<u64> = std::fs::read_dir(dir)
            .map_err(|e| io_err(dir, e))?
            .filter_map(Result::ok)
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let stem = name.strip_suffix(".seg")?;
                (stem.len() == 20).then(|| stem.parse::<u64>().ok())?
            })
            .collect();
        ids.sort_unstable();
        let cursor = read_cursor(dir);
        let mut buf = Vec::new();
        let mut segments = VecDeque::new();
        let mut total_bytes = 0;
        let mut unread = 0;
        for id in &ids {
            let path = segment_path(dir, *id);
            let file = File::open(&path).map_err(|e| io_err(&path, e))?;
            let len = file.metadata().map_err(|e| io_err(&path, e))?.len();
            // Segments below the cursor's were written in front of it (prepended) and are
            // unread; the cursor's own segment resumes at its offset.
            let start = match cursor {
                Some(c) if c.segment == *id => c.offset.min(len),
                _ => 0,
            };
            let n = count_records(&file, start, len, &mut buf).map_err(|e| io_err(&path, e))?;
            if n == 0 {
                drop(file);
                std::fs::remove_file(&path).map_err(|e| io_err(&path, e))?;
                continue;
            }
            total_bytes += len;
            unread += n;
            segments.push_back(Segment {
                id: *id,
                path,
                file,
                len,
                start,
                unread: n,
            });
        }
        let next_id = ids
            .last()
            .copied()
            .max(cursor.map(|c| c.segment))
            .map_or(FIRST_ID, |m| m.max(FIRST_ID - 1) + 1);
        let (writer, seg) = Self::create_segment(dir, next_id)?;
        segments.push_back(seg);
        let first = &segments[0];
        let read = Position {
            segment: first.id,
            offset: first.start,
        };
        if unread > 0 {
            info!(
                events = unread,
                bytes = total_bytes,
                "spool recovered undelivered events"
            );
        }
        let mut spool = Spool {
            dir: dir.to_path_buf(),
            limits,
            segments,
            writer,
            read,
            released: read,
            total_bytes,
            unread,
            damage: SpoolDamage::default(),
            scratch: Vec::with_capacity(4096),
        };
        spool.save_cursor()?;
        Ok(spool)
    }

    fn create_segment(dir: &Path, id: u64) -> Result<(Writer, Segment), SpoolError> {
        let path = segment_path(dir, id);
        let out = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| io_err(&path, e))?;
        let file = File::open(&path).map_err(|e| io_err(&path, e))?;
        Ok((
            Writer {
                id,
                out: BufWriter::with_capacity(256 * 1024, out),
                dirty: false,
            },
            Segment {
                id,
                path,
                file,
                len: 0,
                start: 0,
                unread: 0,
            },
        ))
    }

    /// Records not yet read (waiting to be sent).
    pub fn unread(&self) -> u64 {
        self.unread
    }

    /// True when every record has been read.
    pub fn is_drained(&self) -> bool {
        self.unread == 0
    }

    /// Bytes in all segment files.
    pub fn bytes(&self) -> u64 {
        self.total_bytes
    }

    /// Damage found so far.
    pub fn damage(&self) -> SpoolDamage {
        self.damage
    }

    /// The position up to which everything was released (delivered).
    pub fn released(&self) -> Position {
        self.released
    }

    /// The next position [`Spool::read_next`] reads from.
    pub fn read_position(&self) -> Position {
        self.read
    }

    /// Appends a record at the end, enforcing the size cap per policy.
    pub fn append(&mut self, rec: &SpoolRecord) -> Result<Appended, SpoolError> {
        let mut buf = std::mem::take(&mut self.scratch);
        let r = self.append_encoded(rec, &mut buf);
        self.scratch = buf;
        r
    }

    fn append_encoded(
        &mut self,
        rec: &SpoolRecord,
        buf: &mut Vec<u8>,
    ) -> Result<Appended, SpoolError> {
        encode_record(rec, buf)?;
        let size = buf.len() as u64;
        let mut dropped_oldest = 0;
        while self.total_bytes + size > self.limits.max_bytes {
            if self.limits.on_full == SpoolFullPolicy::DropNewest {
                return Ok(Appended::RefusedFull);
            }
            if self.segments.len() > 1 {
                dropped_oldest += self.drop_oldest()?;
            } else if self.active().len > 0 {
                self.rotate()?;
            } else {
                // A single record larger than the whole spool.
                return Ok(Appended::RefusedFull);
            }
        }
        let active_len = self.active().len;
        if active_len > 0 && active_len + size > self.limits.segment_bytes {
            self.rotate()?;
        }
        let path = self.active().path.clone();
        self.writer
            .out
            .write_all(buf)
            .map_err(|e| io_err(&path, e))?;
        self.writer.dirty = true;
        let seg = self.active_mut();
        seg.len += size;
        seg.unread += 1;
        self.total_bytes += size;
        self.unread += 1;
        Ok(Appended::Written { dropped_oldest })
    }

    fn active(&self) -> &Segment {
        // Invariant: the active segment is always the last one.
        &self.segments[self.segments.len() - 1]
    }

    fn active_mut(&mut self) -> &mut Segment {
        let n = self.segments.len();
        &mut self.segments[n - 1]
    }

    fn rotate(&mut self) -> Result<(), SpoolError> {
        self.flush()?;
        let id = self.writer.id + 1;
        let (writer, seg) = Self::create_segment(&self.dir, id)?;
        self.writer = writer;
        self.segments.push_back(seg);
        Ok(())
    }

    /// Deletes the oldest segment; returns how many unsent events it held.
    fn drop_oldest(&mut self) -> Result<u64, SpoolError> {
        let Some(seg) = self.segments.pop_front() else {
            return Ok(0);
        };
        let lost = seg.unread;
        self.unread -= lost;
        self.total_bytes -= seg.len;
        std::fs::remove_file(&seg.path).map_err(|e| io_err(&seg.path, e))?;
        if lost > 0 {
            warn!(
                events = lost,
                bytes = seg.len,
                "spool full: dropped its oldest segment (kafka.spool.on_full = \"drop_oldest\")"
            );
        }
        let next = &self.segments[0];
        let first = Position {
            segment: next.id,
            offset: next.start,
        };
        if self.read.segment <= seg.id {
            self.read = first;
        }
        if self.released.segment <= seg.id {
            self.released = first;
            self.save_cursor()?;
        }
        Ok(lost)
    }

    /// Writes buffered records to the OS (readers in this process see them).
    pub fn flush(&mut self) -> Result<(), SpoolError> {
        if self.writer.dirty {
            let path = self.active().path.clone();
            self.writer.out.flush().map_err(|e| io_err(&path, e))?;
            self.writer.dirty = false;
        }
        Ok(())
    }

    /// Flushes and fsyncs the active segment (durable across a host crash).
    pub fn sync(&mut self) -> Result<(), SpoolError> {
        self.flush()?;
        let path = self.active().path.clone();
        self.writer
            .out
            .get_ref()
            .sync_data()
            .map_err(|e| io_err(&path, e))
    }

    /// Reads the next record in order, with its position. Damaged records are skipped and
    /// counted in [`Spool::damage`].
    pub fn read_next(&mut self) -> Result<Option<(Position, SpoolRecord)>, SpoolError> {
        loop {
            let Some(idx) = self.segments.iter().position(|s| s.id == self.read.segment) else {
                // The read segment was deleted (drop_oldest): continue at the first one.
                let first = &self.segments[0];
                self.read = Position {
                    segment: first.id,
                    offset: first.start,
                };
                continue;
            };
            let is_active = idx + 1 == self.segments.len();
            if is_active {
                self.flush()?;
            }
            let seg = &self.segments[idx];
            let at = read_at(&seg.file, self.read.offset, seg.len, &mut self.scratch)
                .map_err(|e| io_err(&seg.path, e))?;
            match at {
                At::Record(rec, next) => {
                    let pos = self.read;
                    self.read.offset = next;
                    let seg = &mut self.segments[idx];
                    seg.unread = seg.unread.saturating_sub(1);
                    self.unread = self.unread.saturating_sub(1);
                    return Ok(Some((pos, rec)));
                }
                At::End => {
                    if is_active {
                        return Ok(None);
                    }
                    let next = &self.segments[idx + 1];
                    self.read = Position {
                        segment: next.id,
                        offset: next.start,
                    };
                }
                At::Bad => {
                    self.damage.corrupt_regions += 1;
                    warn!(
                        segment = seg.id,
                        offset = self.read.offset,
                        "spool: damaged record skipped (bad checksum or cut short)"
                    );
                    let found = resync(&seg.file, self.read.offset, seg.len, &mut self.scratch)
                        .map_err(|e| io_err(&seg.path, e))?;
                    self.read.offset = found.unwrap_or(seg.len);
                }
            }
        }
    }

    /// Everything before `upto` has been delivered: deletes fully delivered segments and saves
    /// the cursor. `upto` must not be past the read position.
    pub fn release(&mut self, upto: Position) -> Result<(), SpoolError> {
        if upto <= self.released {
            return Ok(());
        }
        while self.segments.len() > 1 {
            let first = &self.segments[0];
            let done =
                first.id < upto.segment || (first.id == upto.segment && upto.offset >= first.len);
            if !done {
                break;
            }
            let Some(seg) = self.segments.pop_front() else {
                break;
            };
            self.total_bytes -= seg.len;
            // Any record still counted unread there was skipped as damaged.
            self.unread -= seg.unread;
            std::fs::remove_file(&seg.path).map_err(|e| io_err(&seg.path, e))?;
        }
        if let Some(seg) = self.segments.iter_mut().find(|s| s.id == upto.segment) {
            seg.start = upto.offset.min(seg.len);
        }
        self.released = upto;
        self.save_cursor()
    }

    /// Moves the read position back to the first undelivered record (after sends failed).
    pub fn rewind(&mut self) -> Result<(), SpoolError> {
        self.flush()?;
        let mut unread = 0;
        for seg in self.segments.iter_mut() {
            seg.unread = count_records(&seg.file, seg.start, seg.len, &mut self.scratch)
                .map_err(|e| io_err(&seg.path, e))?;
            unread += seg.unread;
        }
        self.unread = unread;
        let first = &self.segments[0];
        self.read = Position {
            segment: first.id,
            offset: first.start,
        };
        Ok(())
    }

    /// Writes `recs` into a new segment placed before every other one, then rewinds: they are
    /// read first. For events that were older than everything spooled (the producer's memory
    /// queue on shutdown).
    pub fn prepend(&mut self, recs: &[SpoolRecord]) -> Result<u64, SpoolError> {
        if recs.is_empty() {
            return Ok(0);
        }
        let id = self.segments[0]
            .id
            .min(self.released.segment)
            .saturating_sub(1);
        let path = segment_path(&self.dir, id);
        let mut out = BufWriter::new(
            OpenOptions::new()
                .create(true)
                .truncate(true)
                .write(true)
                .mode(0o600)
                .open(&path)
                .map_err(|e| io_err(&path, e))?,
        );
        let mut buf = Vec::new();
        let mut len = 0;
        let mut written = 0;
        for r in recs {
            encode_record(r, &mut buf)?;
            out.write_all(&buf).map_err(|e| io_err(&path, e))?;
            len += buf.len() as u64;
            written += 1;
        }
        out.flush().map_err(|e| io_err(&path, e))?;
        drop(out);
        let file = File::open(&path).map_err(|e| io_err(&path, e))?;
        self.segments.push_front(Segment {
            id,
            path,
            file,
            len,
            start: 0,
            unread: written,
        });
        self.total_bytes += len;
        self.rewind()?;
        Ok(written)
    }

    fn save_cursor(&mut self) -> Result<(), SpoolError> {
        let mut b = Vec::with_capacity(20);
        b.extend_from_slice(&self.released.segment.to_le_bytes());
        b.extend_from_slice(&self.released.offset.to_le_bytes());
        let crc = crc32fast::hash(&b);
        b.extend_from_slice(&crc.to_le_bytes());
        let tmp = self.dir.join("cursor.tmp");
        OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .mode(0o600)
            .open(&tmp)
            .and_then(|mut f| f.write_all(&b))
            .map_err(|e| io_err(&tmp, e))?;
        let dst = self.dir.join(CURSOR_FILE);
        std::fs::rename(&tmp, &dst).map_err(|e| io_err(&dst, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(i: u32) -> SpoolRecord {
        SpoolRecord {
            key: format!("k{i}").into_bytes(),
            headers: vec![("apitap-schema-version".into(), b"1.1".to_vec())],
            value: format!("{{\"n\":{i},\"pad\":\"{}\"}}", "x".repeat(200)).into_bytes(),
        }
    }

    fn limits(max_bytes: u64, segment_bytes: u64, on_full: SpoolFullPolicy) -> SpoolLimits {
        SpoolLimits {
            max_bytes,
            segment_bytes,
            on_full,
        }
    }

    fn big() -> SpoolLimits {
        limits(1 << 30, 1 << 20, SpoolFullPolicy::DropOldest)
    }

    fn n_of(r: &SpoolRecord) -> u32 {
        let v: serde_json::Value = serde_json::from_slice(&r.value).unwrap();
        v["n"].as_u64().unwrap() as u32
    }

    fn drain(s: &mut Spool) -> Vec<u32> {
        let mut out = Vec::new();
        while let Some((pos, r)) = s.read_next().unwrap() {
            out.push(n_of(&r));
            let _ = pos;
        }
        out
    }

    fn seg_files(dir: &Path) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "seg"))
            .collect();
        v.sort();
        v
    }

    /// Captured payloads are readable by the sensor's user only (issue 22): the directory is
    /// 0700 (narrowed if it existed wider) and every file in it 0600, whatever the umask.
    #[test]
    fn spool_files_are_private() {
        use std::os::unix::fs::PermissionsExt as _;
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("spool");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let mut s = Spool::open(&dir, limits(1 << 30, 4096, SpoolFullPolicy::DropOldest)).unwrap();
        for i in 0..100 {
            s.append(&rec(i)).unwrap();
        }
        let (_, r) = s.read_next().unwrap().unwrap();
        s.prepend(&[r]).unwrap();
        assert_eq!(mode(&dir), 0o700);
        let files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert!(files.len() > 3, "{files:?}");
        for f in files {
            assert_eq!(mode(&f), 0o600, "{}", f.display());
        }
        let fresh = d.path().join("a/b");
        Spool::open(&fresh, limits(1 << 30, 4096, SpoolFullPolicy::DropOldest)).unwrap();
        assert_eq!(mode(&fresh), 0o700);
    }

    #[test]
    fn records_round_trip_in_order_across_segments() {
        let d = tempfile::tempdir().unwrap();
        let mut s =
            Spool::open(d.path(), limits(1 << 30, 4096, SpoolFullPolicy::DropOldest)).unwrap();
        for i in 0..100 {
            s.append(&rec(i)).unwrap();
        }
        assert!(
            seg_files(d.path()).len() > 3,
            "rotated into several segments"
        );
        assert_eq!(s.unread(), 100);
        let first = s.read_next().unwrap().unwrap().1;
        assert_eq!(first, rec(0));
        let rest = drain(&mut s);
        assert_eq!(rest, (1..100).collect::<Vec<_>>());
        assert!(s.is_drained());
    }

    #[test]
    fn restart_resumes_after_the_released_cursor() {
        let d = tempfile::tempdir().unwrap();
        {
            let mut s =
                Spool::open(d.path(), limits(1 << 30, 4096, SpoolFullPolicy::DropOldest)).unwrap();
            for i in 0..50 {
                s.append(&rec(i)).unwrap();
            }
            // Read 30, but only the first 20 were delivered.
            let mut positions = Vec::new();
            for _ in 0..30 {
                positions.push(s.read_next().unwrap().unwrap().0);
            }
            s.release(positions[20]).unwrap();
            s.flush().unwrap();
        }
        let mut s = Spool::open(d.path(), big()).unwrap();
        assert_eq!(s.unread(), 30);
        assert_eq!(drain(&mut s), (20..50).collect::<Vec<_>>());
        // New records go after the recovered ones, into a fresh segment.
        s.append(&rec(50)).unwrap();
        assert_eq!(drain(&mut s), vec![50]);
    }

    #[test]
    fn fully_released_segments_are_deleted() {
        let d = tempfile::tempdir().unwrap();
        let mut s =
            Spool::open(d.path(), limits(1 << 30, 4096, SpoolFullPolicy::DropOldest)).unwrap();
        for i in 0..100 {
            s.append(&rec(i)).unwrap();
        }
        let before = seg_files(d.path()).len();
        let _ = drain(&mut s);
        s.release(s.read_position()).unwrap();
        assert_eq!(
            seg_files(d.path()).len(),
            1,
            "only the active segment is left"
        );
        assert!(before > 1);
        drop(s);
        let mut s = Spool::open(d.path(), big()).unwrap();
        assert_eq!(s.unread(), 0);
        assert!(s.read_next().unwrap().is_none());
    }

    #[test]
    fn corrupted_record_is_skipped_and_counted() {
        let d = tempfile::tempdir().unwrap();
        let mut s = Spool::open(d.path(), big()).unwrap();
        for i in 0..10 {
            s.append(&rec(i)).unwrap();
        }
        s.flush().unwrap();
        drop(s);
        // Flip a byte inside the payload of the fourth record.
        let f = seg_files(d.path()).pop().unwrap();
        let mut bytes = std::fs::read(&f).unwrap();
        let rec_len = bytes.len() / 10;
        bytes[3 * rec_len + 40] ^= 0xff;
        std::fs::write(&f, &bytes).unwrap();
        let mut s = Spool::open(d.path(), big()).unwrap();
        assert_eq!(s.unread(), 9);
        let got = drain(&mut s);
        assert_eq!(got, vec![0, 1, 2, 4, 5, 6, 7, 8, 9]);
        assert_eq!(s.damage().corrupt_regions, 1);
    }

    #[test]
    fn corrupted_length_field_resynchronises_on_the_next_record() {
        let d = tempfile::tempdir().unwrap();
        let mut s = Spool::open(d.path(), big()).unwrap();
        for i in 0..10 {
            s.append(&rec(i)).unwrap();
        }
        s.flush().unwrap();
        drop(s);
        let f = seg_files(d.path()).pop().unwrap();
        let mut bytes = std::fs::read(&f).unwrap();
        let rec_len = bytes.len() / 10;
        // Length of record 2 claims 100 KiB: would swallow the rest without resync.
        bytes[2 * rec_len + 4..2 * rec_len + 8].copy_from_slice(&(100_000u32).to_le_bytes());
        // And garbage over record 5's magic.
        bytes[5 * rec_len..5 * rec_len + 4].copy_from_slice(b"XXXX");
        std::fs::write(&f, &bytes).unwrap();
        let mut s = Spool::open(d.path(), big()).unwrap();
        let got = drain(&mut s);
        assert_eq!(got, vec![0, 1, 3, 4, 6, 7, 8, 9]);
        assert_eq!(s.damage().corrupt_regions, 2);
    }

    #[test]
    fn truncated_tail_from_a_crash_is_skipped_and_writing_resumes_in_a_new_segment() {
        let d = tempfile::tempdir().unwrap();
        let mut s = Spool::open(d.path(), big()).unwrap();
        for i in 0..5 {
            s.append(&rec(i)).unwrap();
        }
        s.flush().unwrap();
        drop(s);
        let f = seg_files(d.path()).pop().unwrap();
        let bytes = std::fs::read(&f).unwrap();
        std::fs::write(&f, &bytes[..bytes.len() - 17]).unwrap();
        let mut s = Spool::open(d.path(), big()).unwrap();
        assert_eq!(s.unread(), 4);
        s.append(&rec(5)).unwrap();
        assert_eq!(drain(&mut s), vec![0, 1, 2, 3, 5]);
        assert_eq!(s.damage().corrupt_regions, 1);
    }

    #[test]
    fn garbage_and_unknown_files_do_not_break_open() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("00000000004294967296.seg"), b"not a spool").unwrap();
        std::fs::write(d.path().join("cursor"), b"short").unwrap();
        std::fs::write(d.path().join("README"), b"x").unwrap();
        let mut s = Spool::open(d.path(), big()).unwrap();
        assert_eq!(s.unread(), 0);
        s.append(&rec(1)).unwrap();
        assert_eq!(drain(&mut s), vec![1]);
    }

    #[test]
    fn cap_drop_oldest_deletes_whole_old_segments_and_counts_them() {
        let d = tempfile::tempdir().unwrap();
        let seg = 4096;
        let mut s =
            Spool::open(d.path(), limits(4 * seg, seg, SpoolFullPolicy::DropOldest)).unwrap();
        let mut dropped = 0;
        for i in 0..200 {
            match s.append(&rec(i)).unwrap() {
                Appended::Written { dropped_oldest } => dropped += dropped_oldest,
                Appended::RefusedFull => panic!("drop_oldest never refuses"),
            }
            assert!(s.bytes() <= 4 * seg, "cap respected: {}", s.bytes());
        }
        let got = drain(&mut s);
        assert_eq!(
            got.len() as u64 + dropped,
            200,
            "every event delivered or counted"
        );
        // What is left is the newest, in order.
        assert_eq!(*got.last().unwrap(), 199);
        assert!(got.windows(2).all(|w| w[0] + 1 == w[1]));
        assert!(dropped > 0);
    }

    #[test]
    fn cap_drop_newest_refuses_and_keeps_the_oldest() {
        let d = tempfile::tempdir().unwrap();
        let seg = 4096;
        let mut s =
            Spool::open(d.path(), limits(4 * seg, seg, SpoolFullPolicy::DropNewest)).unwrap();
        let mut refused = 0;
        for i in 0..200 {
            if s.append(&rec(i)).unwrap() == Appended::RefusedFull {
                refused += 1;
            }
        }
        let got = drain(&mut s);
        assert_eq!(got.len() as u64 + refused, 200);
        assert_eq!(got[0], 0);
        assert!(got.windows(2).all(|w| w[0] + 1 == w[1]));
        assert!(s.bytes() <= 4 * seg);
    }

    #[test]
    fn drop_oldest_while_reading_moves_the_reader_forward() {
        let d = tempfile::tempdir().unwrap();
        let seg = 4096;
        let mut s =
            Spool::open(d.path(), limits(3 * seg, seg, SpoolFullPolicy::DropOldest)).unwrap();
        for i in 0..20 {
            s.append(&rec(i)).unwrap();
        }
        assert_eq!(n_of(&s.read_next().unwrap().unwrap().1), 0);
        let mut dropped = 0;
        for i in 20..80 {
            if let Appended::Written { dropped_oldest } = s.append(&rec(i)).unwrap() {
                dropped += dropped_oldest;
            }
        }
        let got = drain(&mut s);
        assert_eq!(1 + got.len() as u64 + dropped, 80);
        assert!(got.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn rewind_rereads_undelivered_records() {
        let d = tempfile::tempdir().unwrap();
        let mut s =
            Spool::open(d.path(), limits(1 << 30, 4096, SpoolFullPolicy::DropOldest)).unwrap();
        for i in 0..40 {
            s.append(&rec(i)).unwrap();
        }
        let mut pos = Vec::new();
        for _ in 0..30 {
            pos.push(s.read_next().unwrap().unwrap().0);
        }
        s.release(pos[10]).unwrap();
        s.rewind().unwrap();
        assert_eq!(s.unread(), 30);
        assert_eq!(drain(&mut s), (10..40).collect::<Vec<_>>());
    }

    #[test]
    fn prepended_records_come_first_also_after_restart() {
        let d = tempfile::tempdir().unwrap();
        {
            let mut s = Spool::open(d.path(), big()).unwrap();
            for i in 10..20 {
                s.append(&rec(i)).unwrap();
            }
            let p = s.read_next().unwrap().unwrap().0;
            s.release(p).unwrap();
            let older: Vec<SpoolRecord> = (0..10).map(rec).collect();
            assert_eq!(s.prepend(&older).unwrap(), 10);
            assert_eq!(s.unread(), 20);
            s.flush().unwrap();
        }
        let mut s = Spool::open(d.path(), big()).unwrap();
        assert_eq!(drain(&mut s), (0..20).collect::<Vec<_>>());
    }

    #[test]
    fn oversized_record_is_an_error_not_a_crash() {
        let d = tempfile::tempdir().unwrap();
        let mut s = Spool::open(d.path(), big()).unwrap();
        let r = SpoolRecord {
            key: vec![0; 70_000],
            headers: vec![],
            value: vec![],
        };
        assert!(matches!(s.append(&r), Err(SpoolError::TooLarge(_))));
        assert!(s.is_drained());
    }
}
