//! The agent's on-disk spool: every point is appended here before it counts as
//! collected, and removed only after the store confirmed it.
//!
//! Layout: a directory of segment files `<id>.seg` (ids increase, 16 hex digits)
//! and one position file per consumer (`ack`, or `ack.<name>` per sink; see
//! [`Spool::open_cursors`]). A segment is a sequence of records
//! `[len: u32 LE][crc32(payload): u32 LE][payload]`, one record per point, the
//! payload being the point's line protocol without the newline. The spool does not
//! know where its records go: the output can change between runs and the backlog
//! drains to the new one (nothing is stranded by a config change).
//!
//! Why it is shaped like this:
//! - **Acknowledged position.** Each position file holds `segment offset index`:
//!   everything before it is confirmed by that consumer. It is replaced atomically (write a temporary file, rename), so a
//!   restart resends only what was not confirmed: at most the batch that was in flight
//!   when the process died. Such a resend is harmless because InfluxDB overwrites a
//!   point with the same series and timestamp.
//! - **Torn tail.** A crash (kill -9, power loss) can leave a half-written last
//!   record. On open every segment is scanned; at the first record whose length runs
//!   past the end of the file or whose checksum does not match, the file is cut back
//!   to the last good record and the cut is counted ([`SpoolStats::truncated_bytes`]).
//!   Records are appended whole, so a valid record is never lost this way.
//! - **Size bound.** When the segments on disk exceed `max_bytes`, the oldest segments
//!   are deleted whole (segment size is an eighth of the bound, so the spool never
//!   holds more than about 9/8 of it) and the unconfirmed records in them are counted
//!   as dropped. Newest data wins: after a long outage the most recent history is kept.
//! - **fsync policy** ([`FsyncPolicy`]): `always` (default) syncs the segment after
//!   every append, before the points count as collected, and the directory when a
//!   segment is created; `interval` syncs at the first append after the interval has
//!   passed (and at shutdown); `never` leaves it to the kernel. A killed *process*
//!   loses nothing under any policy (written data is in the page cache); the policy
//!   only matters for power loss and kernel crashes.
//! - **Full disk.** A failed append (ENOSPC, EIO) is cut back to the last whole
//!   record (or, when even that fails, appends move to a new segment) and returned as
//!   an error; the caller counts and logs it and goes on. Tested for real by making
//!   the segment file `/dev/full`. Acknowledging on a full disk still works and
//!   frees the space: confirmed segments are deleted before the position is written,
//!   the position is rewritten in place when no new file can be written (its text is
//!   fixed-width and the file exists from open), and after a failed append the
//!   fully confirmed active segment is replaced by a new one so it can be deleted
//!   too. Collection resumes with the next append. Tested with `/dev/full` and on a
//!   real 256 KiB tmpfs (`tests/spool_disk_full.rs`).

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A record larger than this is treated as corruption when scanning.
const MAX_RECORD_BYTES: u32 = 16 << 20;
const HEADER_BYTES: u64 = 8;
const ACK_FILE: &str = "ack";

/// When appended records are forced to stable storage. See the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FsyncPolicy {
    #[default]
    Always,
    Interval(Duration),
    Never,
}

impl std::str::FromStr for FsyncPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "always" => Ok(FsyncPolicy::Always),
            "never" => Ok(FsyncPolicy::Never),
            other => crate::config::parse_duration(other)
                .map(FsyncPolicy::Interval)
                .map_err(|_| format!("fsync must be \"always\", \"never\" or an interval like \"1s\", not `{other}`")),
        }
    }
}

impl<'de> serde::Deserialize<'de> for FsyncPolicy {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A place in the spool: a segment, a byte offset in it, and how many records of
/// that segment lie before the offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Position {
    pub segment: u64,
    pub offset: u64,
    pub index: u64,
}

/// Records read for shipping; pass `end` to [`Spool::ack`] once the store confirmed them.
#[derive(Debug, Default)]
pub struct Batch {
    /// Line protocol, one record per line, newline-terminated.
    pub body: String,
    pub records: u64,
    pub end: Position,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpoolStats {
    /// Unconfirmed records deleted by the size bound since open.
    pub dropped_records: u64,
    /// Bytes cut from torn or corrupt segment tails when the spool was opened or read.
    pub truncated_bytes: u64,
}

/// One consumer's acknowledged position, kept in its own file.
#[derive(Debug)]
struct Cursor {
    file: String,
    ack: Position,
    dropped: u64,
}

/// The position file of a cursor: `ack` for the unnamed one (and every spool
/// written before cursors had names), `ack.<name>` otherwise.
fn cursor_file(name: &str) -> String {
    if name.is_empty() {
        ACK_FILE.to_string()
    } else {
        format!("{ACK_FILE}.{name}")
    }
}

#[derive(Debug)]
struct Segment {
    id: u64,
    bytes: u64,
    records: u64,
}

#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    segment_bytes: u64,
    fsync: FsyncPolicy,
    last_sync: Instant,
    segments: VecDeque<Segment>,
    active: File,
    /// One acknowledged position per consumer (sink); see [`Spool::open_cursors`].
    cursors: Vec<Cursor>,
    stats: SpoolStats,
    /// The last append failed (full disk): the next acknowledgement that confirms
    /// the whole active segment also replaces it, so its space comes back.
    append_failed: bool,
}

fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:016x}.seg"))
}

impl Spool {
    /// Opens (or creates) the spool in `dir`, recovering from a crash: torn tails are
    /// cut, the acknowledged position is read back, fully confirmed segments removed.
    pub fn open(dir: &Path, max_bytes: u64, fsync: FsyncPolicy) -> io::Result<Spool> {
        Spool::open_cursors(dir, max_bytes, fsync, &[String::new()])
    }

    /// Opens the spool with one cursor per name (one per sink), each with its own
    /// acknowledged position: a record is deleted once every cursor has passed it,
    /// and one slow consumer does not hold the others back. A cursor without a file
    /// yet starts where the unnamed `ack` says (the single output of older configs),
    /// else at the oldest record kept. Methods taking `c` index `names`.
    pub fn open_cursors(dir: &Path, max_bytes: u64, fsync: FsyncPolicy, names: &[String]) -> io::Result<Spool> {
        assert!(!names.is_empty(), "a spool needs at least one cursor");
        fs::create_dir_all(dir).map_err(|e| annotate(e, "cannot create spool directory", dir))?;
        let mut ids = Vec::new();
        for entry in fs::read_dir(dir).map_err(|e| annotate(e, "cannot list spool directory", dir))? {
            let name = entry?.file_name();
            let name = name.to_string_lossy();
            if let Some(hex) = name.strip_suffix(".seg") {
                if let Ok(id) = u64::from_str_radix(hex, 16) {
                    // Only regular files hold records; anything else is not ours to read.
                    if dir.join(&*name).metadata().is_ok_and(|m| m.is_file()) {
                        ids.push(id);
                    } else {
                        tracing::warn!(file = %name, "ignoring a spool entry that is not a regular file");
                    }
                }
            }
        }
        ids.sort_unstable();
        let mut stats = SpoolStats::default();
        let mut segments = VecDeque::new();
        for id in ids {
            let path = segment_path(dir, id);
            let (good_bytes, records, file_len) = scan_segment(&path)?;
            if good_bytes < file_len {
                tracing::warn!(segment = %path.display(), kept_bytes = good_bytes, cut_bytes = file_len - good_bytes,
                    "spool segment ends in a torn or corrupt record; cutting it back to the last whole record");
                OpenOptions::new().write(true).open(&path)?.set_len(good_bytes)?;
                stats.truncated_bytes += file_len - good_bytes;
            }
            segments.push_back(Segment { id, bytes: good_bytes, records });
        }

        let legacy = read_ack(dir, ACK_FILE).unwrap_or_default();
        let mut cursors: Vec<Cursor> = names
            .iter()
            .map(|n| {
                let file = cursor_file(n);
                let ack = read_ack(dir, &file).unwrap_or(legacy);
                Cursor { file, ack, dropped: 0 }
            })
            .collect();
        // Segments before every acknowledged one are confirmed; remove leftovers.
        let oldest = cursors.iter().map(|c| c.ack.segment).min().expect("one cursor");
        while segments.front().is_some_and(|s| s.id < oldest) {
            let s = segments.pop_front().expect("checked");
            remove_file_logged(&segment_path(dir, s.id));
        }
        for c in &mut cursors {
            let ack = &mut c.ack;
            match segments.iter().find(|s| s.id >= ack.segment) {
                Some(seg) if seg.id == ack.segment && (ack.offset > seg.bytes || ack.index > seg.records) => {
                    *ack = Position { segment: seg.id, offset: seg.bytes, index: seg.records };
                }
                Some(seg) if seg.id == ack.segment => {}
                Some(seg) => *ack = Position { segment: seg.id, offset: 0, index: 0 },
                None => {}
            }
        }

        // Appends always go to a fresh segment, so a recovered file is never written again.
        let next_id = segments.back().map_or(oldest.max(1), |s| s.id + 1);
        let active = create_segment(dir, next_id, fsync)?;
        for c in &mut cursors {
            if c.ack.segment < next_id && !segments.iter().any(|s| s.id >= c.ack.segment) {
                c.ack = Position { segment: next_id, offset: 0, index: 0 };
            }
        }
        segments.push_back(Segment { id: next_id, bytes: 0, records: 0 });
        // The position files exist from the start, at their full fixed width, so
        // that they can be rewritten in place when the disk is full (see `write_ack`).
        for c in &cursors {
            if let Err(e) = write_ack(dir, &c.file, c.ack, fsync) {
                tracing::warn!(error = %e, "cannot write the spool position file");
            }
        }
        let segment_bytes = (max_bytes / 8).clamp(4096, 64 << 20);
        let spool = Spool {
            dir: dir.to_owned(),
            max_bytes,
            segment_bytes,
            fsync,
            last_sync: Instant::now(),
            segments,
            active,
            cursors,
            stats,
            append_failed: false,
        };
        Ok(spool)
    }

    /// Appends one record per line. Returns how many older unconfirmed records the
    /// size bound dropped to make room. On an I/O error nothing of this call is kept.
    pub fn append<S: AsRef<str>>(&mut self, lines: &[S]) -> io::Result<u64> {
        if lines.is_empty() {
            return Ok(0);
        }
        let mut buf = Vec::with_capacity(lines.iter().map(|l| l.as_ref().len() + 8).sum());
        for line in lines {
            let payload = line.as_ref().as_bytes();
            buf.extend_from_slice(&(payload.len() as u32).to_le_bytes());
            buf.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
            buf.extend_from_slice(payload);
        }
        let before = self.active_segment().bytes;
        let written = self.active.write_all(&buf).and_then(|_| match self.fsync {
            FsyncPolicy::Always => self.active.sync_data(),
            FsyncPolicy::Interval(d) if self.last_sync.elapsed() >= d => {
                self.last_sync = Instant::now();
                self.active.sync_data()
            }
            _ => Ok(()),
        });
        self.append_failed = written.is_err();
        if let Err(e) = written {
            // Keep the segment a sequence of whole records.
            if let Err(cut) = self.active.set_len(before).and_then(|_| self.active.seek(SeekFrom::End(0)).map(|_| ())) {
                tracing::error!(error = %cut, "cannot cut a failed spool append back; starting a new segment");
                if let Err(new) = self.start_segment() {
                    tracing::error!(error = %new, "cannot start a new spool segment");
                }
            }
            return Err(e);
        }
        let seg = self.segments.back_mut().expect("active segment");
        seg.bytes += buf.len() as u64;
        seg.records += lines.len() as u64;
        if seg.bytes >= self.segment_bytes {
            self.rotate()?;
        }
        Ok(self.enforce_bound())
    }

    /// Reads up to `max_records` unconfirmed records (and stops early past
    /// `max_bytes`), oldest first, starting at the acknowledged position.
    pub fn read_batch(&mut self, max_records: u64, max_bytes: u64) -> io::Result<Batch> {
        self.read_batch_for(0, max_records, max_bytes)
    }

    /// [`Spool::read_batch`] for cursor `c`.
    pub fn read_batch_for(&mut self, c: usize, max_records: u64, max_bytes: u64) -> io::Result<Batch> {
        let start = self.cursors[c].ack;
        let mut batch = Batch { end: start, ..Batch::default() };
        let mut pos = start;
        let mut seg_idx = match self.segments.iter().position(|s| s.id == pos.segment) {
            Some(i) => i,
            None => return Ok(batch),
        };
        'segments: while seg_idx < self.segments.len() {
            let (id, bytes) = (self.segments[seg_idx].id, self.segments[seg_idx].bytes);
            if pos.offset < bytes {
                let mut file = File::open(segment_path(&self.dir, id))?;
                file.seek(SeekFrom::Start(pos.offset))?;
                let mut reader = BufReader::with_capacity(64 << 10, file.take(bytes - pos.offset));
                while pos.offset < bytes {
                    if batch.records >= max_records || batch.body.len() as u64 >= max_bytes {
                        break 'segments;
                    }
                    match read_record(&mut reader)? {
                        Some(payload) => {
                            batch.body.push_str(&String::from_utf8_lossy(&payload));
                            batch.body.push('\n');
                            batch.records += 1;
                            pos.offset += HEADER_BYTES + payload.len() as u64;
                            pos.index += 1;
                        }
                        None => {
                            // Changed on disk since it was scanned: skip the rest of it.
                            tracing::error!(
                                segment = id,
                                offset = pos.offset,
                                "spool segment is corrupt past this offset; skipping the rest of it"
                            );
                            self.stats.truncated_bytes += bytes - pos.offset;
                            self.stats.dropped_records += self.segments[seg_idx].records.saturating_sub(pos.index);
                            self.segments[seg_idx].records = pos.index;
                            self.segments[seg_idx].bytes = pos.offset;
                            break;
                        }
                    }
                }
            }
            if seg_idx + 1 == self.segments.len() {
                break;
            }
            seg_idx += 1;
            pos = Position { segment: self.segments[seg_idx].id, offset: 0, index: 0 };
        }
        batch.end = pos;
        Ok(batch)
    }

    /// Marks everything before `end` as confirmed: persists the position and deletes
    /// segments that are now fully confirmed. A position older than the current one
    /// (its records were dropped meanwhile) is ignored.
    pub fn ack(&mut self, end: Position) -> io::Result<()> {
        self.ack_for(0, end)
    }

    /// [`Spool::ack`] for cursor `c`; segments go once every cursor has passed them.
    pub fn ack_for(&mut self, c: usize, end: Position) -> io::Result<()> {
        if end <= self.cursors[c].ack {
            return Ok(());
        }
        self.cursors[c].ack = end;
        let active = self.active_segment();
        let all_done = self.cursors.iter().all(|k| k.ack.segment == active.id && k.ack.index >= active.records);
        if self.append_failed && all_done && active.bytes > 0 {
            // Everything is confirmed and the disk was full: move appends to a new,
            // empty segment so that the loop below can delete the old one too.
            match self.start_segment() {
                Ok(()) => {
                    self.append_failed = false;
                    let id = self.active_segment().id;
                    for k in &mut self.cursors {
                        k.ack = Position { segment: id, offset: 0, index: 0 };
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot start a new spool segment to free a confirmed one"),
            }
        }
        // Confirmed segments go first: on a full disk, deleting them is what frees
        // the space the positions (and new points) need.
        let oldest = self.oldest_ack().segment;
        while self.segments.len() > 1 && self.segments.front().is_some_and(|s| s.id < oldest) {
            let s = self.segments.pop_front().expect("checked");
            remove_file_logged(&segment_path(&self.dir, s.id));
        }
        let mut result = Ok(());
        for k in &self.cursors {
            // Every cursor moved by a rotation above must reach the disk too.
            if let Err(e) = write_ack(&self.dir, &k.file, k.ack, self.fsync) {
                result = Err(e);
            }
        }
        result
    }

    fn oldest_ack(&self) -> Position {
        self.cursors.iter().map(|k| k.ack).min().expect("one cursor")
    }

    /// Forces appended data to disk (used at shutdown and by the `interval` policy).
    pub fn sync(&mut self) -> io::Result<()> {
        self.last_sync = Instant::now();
        self.active.sync_data()
    }

    /// Unconfirmed records on disk: those some cursor has not confirmed yet.
    pub fn pending_records(&self) -> u64 {
        (0..self.cursors.len()).map(|c| self.pending_for(c)).max().unwrap_or(0)
    }

    /// Records cursor `c` has not confirmed yet.
    pub fn pending_for(&self, c: usize) -> u64 {
        let ack = self.cursors[c].ack;
        self.segments
            .iter()
            .filter(|s| s.id >= ack.segment)
            .map(|s| if s.id == ack.segment { s.records - ack.index.min(s.records) } else { s.records })
            .sum()
    }

    /// `(pending, dropped)` of every cursor, in the order of the names at open.
    pub fn cursor_stats(&self) -> Vec<(u64, u64)> {
        (0..self.cursors.len()).map(|c| (self.pending_for(c), self.dropped_for(c))).collect()
    }

    /// Records the size bound deleted before cursor `c` confirmed them.
    pub fn dropped_for(&self, c: usize) -> u64 {
        self.cursors[c].dropped
    }

    /// Bytes of all segment files (confirmed records of a partly confirmed segment included).
    pub fn disk_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.bytes).sum()
    }

    pub fn stats(&self) -> SpoolStats {
        self.stats
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn active_segment(&self) -> &Segment {
        self.segments.back().expect("active segment")
    }

    fn rotate(&mut self) -> io::Result<()> {
        if self.fsync != FsyncPolicy::Never {
            self.active.sync_data()?;
        }
        self.start_segment()
    }

    fn start_segment(&mut self) -> io::Result<()> {
        let id = self.active_segment().id + 1;
        self.active = create_segment(&self.dir, id, self.fsync)?;
        self.segments.push_back(Segment { id, bytes: 0, records: 0 });
        Ok(())
    }

    /// Deletes the oldest segments while the spool is over its bound; returns the
    /// number of unconfirmed records deleted.
    fn enforce_bound(&mut self) -> u64 {
        let mut dropped = 0;
        while self.segments.len() > 1 && self.disk_bytes() > self.max_bytes {
            let s = self.segments.pop_front().expect("checked");
            remove_file_logged(&segment_path(&self.dir, s.id));
            let next = self.segments.front().expect("len > 1").id;
            // A point counts once however many sinks missed it; each sink keeps its own count.
            let mut lost = 0;
            let several = self.cursors.len() > 1;
            for k in &mut self.cursors {
                let unconfirmed = if k.ack.segment > s.id {
                    0
                } else if k.ack.segment == s.id {
                    s.records - k.ack.index.min(s.records)
                } else {
                    s.records
                };
                k.dropped += unconfirmed;
                if unconfirmed > 0 && several {
                    tracing::warn!(cursor = %k.file, dropped_records = unconfirmed, "a sink had not confirmed the dropped points");
                }
                lost = lost.max(unconfirmed);
                if k.ack.segment < next {
                    k.ack = Position { segment: next, offset: 0, index: 0 };
                    if let Err(e) = write_ack(&self.dir, &k.file, k.ack, self.fsync) {
                        tracing::warn!(error = %e, "cannot persist the spool position after dropping a segment");
                    }
                }
            }
            dropped += lost;
        }
        if dropped > 0 {
            tracing::warn!(
                dropped_records = dropped,
                max_bytes = self.max_bytes,
                "spool is full; dropped the oldest unconfirmed points"
            );
        }
        self.stats.dropped_records += dropped;
        dropped
    }
}

fn annotate(e: io::Error, what: &str, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()))
}

fn remove_file_logged(path: &Path) {
    if let Err(e) = fs::remove_file(path) {
        if e.kind() != io::ErrorKind::NotFound {
            tracing::warn!(file = %path.display(), error = %e, "cannot remove spool segment");
        }
    }
}

fn create_segment(dir: &Path, id: u64, fsync: FsyncPolicy) -> io::Result<File> {
    let path = segment_path(dir, id);
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| annotate(e, "cannot create spool segment", &path))?;
    if fsync == FsyncPolicy::Always {
        File::open(dir)?.sync_all()?;
    }
    Ok(file)
}

/// Reads one record; `None` when the data is torn or does not match its checksum.
fn read_record(r: &mut impl Read) -> io::Result<Option<Vec<u8>>> {
    let mut header = [0u8; 8];
    if !read_full(r, &mut header)? {
        return Ok(None);
    }
    let len = u32::from_le_bytes(header[..4].try_into().expect("4 bytes"));
    let crc = u32::from_le_bytes(header[4..].try_into().expect("4 bytes"));
    if len > MAX_RECORD_BYTES {
        return Ok(None);
    }
    let mut payload = vec![0u8; len as usize];
    if !read_full(r, &mut payload)? || crc32fast::hash(&payload) != crc {
        return Ok(None);
    }
    Ok(Some(payload))
}

/// Fills `buf`; false when the input ends first.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<bool> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => return Ok(false),
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// Returns (bytes of whole valid records, record count, file length).
fn scan_segment(path: &Path) -> io::Result<(u64, u64, u64)> {
    let file = File::open(path).map_err(|e| annotate(e, "cannot open spool segment", path))?;
    let len = file.metadata()?.len();
    let mut reader = BufReader::with_capacity(256 << 10, file);
    let (mut good, mut records) = (0u64, 0u64);
    while good < len {
        match read_record(&mut reader)? {
            Some(p) => {
                good += HEADER_BYTES + p.len() as u64;
                records += 1;
            }
            None => break,
        }
    }
    Ok((good, records, len))
}

/// `None` when the file does not exist; a damaged file reads as the start.
fn read_ack(dir: &Path, file: &str) -> Option<Position> {
    let path = dir.join(file);
    let raw = match fs::read_to_string(&path) {
        Ok(raw) => raw,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!(file = %path.display(), error = %e, "cannot read the spool position; resending the whole spool");
            return Some(Position::default());
        }
    };
    let nums: Vec<u64> = raw.split_whitespace().filter_map(|w| w.parse().ok()).collect();
    match nums[..] {
        [segment, offset, index] => Some(Position { segment, offset, index }),
        _ => {
            tracing::warn!(file = %path.display(), "spool position file is unreadable; resending the whole spool");
            Some(Position::default())
        }
    }
}

/// Persists the position: a temporary file renamed over `ack` (atomic), or, when
/// that cannot be written (no free space), the same bytes written over the existing
/// `ack` file in place. The text is fixed-width, so the in-place write never grows
/// the file and needs no new blocks; a restart after a stale or torn position only
/// resends points, which the stores overwrite.
fn write_ack(dir: &Path, file: &str, pos: Position, fsync: FsyncPolicy) -> io::Result<()> {
    let text = format!("{:020} {:020} {:020}\n", pos.segment, pos.offset, pos.index);
    let tmp = dir.join(format!("{file}.tmp"));
    let renamed = File::create(&tmp)
        .and_then(|mut f| {
            f.write_all(text.as_bytes())?;
            if fsync == FsyncPolicy::Always {
                f.sync_data()?;
            }
            Ok(())
        })
        .and_then(|()| fs::rename(&tmp, dir.join(file)));
    let Err(e) = renamed else { return Ok(()) };
    let path = dir.join(file);
    // An older, shorter position text grows only within the file's last block.
    let in_place = OpenOptions::new().write(true).open(&path).and_then(|mut f| {
        f.write_all(text.as_bytes())?;
        if fsync == FsyncPolicy::Always {
            f.sync_data()?;
        }
        Ok(())
    });
    match in_place {
        Ok(()) => {
            tracing::debug!(error = %e, "spool position written in place (the temporary file could not be written)");
            Ok(())
        }
        Err(e2) => {
            Err(io::Error::new(e2.kind(), format!("{e}; rewriting {} in place failed too: {e2}", path.display())))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(range: std::ops::Range<u32>) -> Vec<String> {
        range.map(|i| format!("m,host=h v={i}i {i}")).collect()
    }

    fn drain(spool: &mut Spool) -> Vec<String> {
        let mut out = Vec::new();
        loop {
            let b = spool.read_batch(7, 1 << 20).unwrap();
            if b.records == 0 {
                return out;
            }
            out.extend(b.body.lines().map(str::to_owned));
            spool.ack(b.end).unwrap();
        }
    }

    #[test]
    fn appends_read_back_in_order_and_ack_removes() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 1 << 20, FsyncPolicy::Always).unwrap();
        s.append(&lines(0..10)).unwrap();
        s.append(&lines(10..20)).unwrap();
        assert_eq!(s.pending_records(), 20);
        assert_eq!(drain(&mut s), lines(0..20));
        assert_eq!(s.pending_records(), 0);
        assert_eq!(s.read_batch(10, 1 << 20).unwrap().records, 0);
    }

    #[test]
    fn unacked_batch_is_read_again() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 1 << 20, FsyncPolicy::Never).unwrap();
        s.append(&lines(0..5)).unwrap();
        let a = s.read_batch(3, 1 << 20).unwrap();
        let b = s.read_batch(3, 1 << 20).unwrap();
        assert_eq!(a.body, b.body);
        assert_eq!(a.records, 3);
    }

    #[test]
    fn restart_resends_only_unconfirmed_records() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut s = Spool::open(dir.path(), 1 << 20, FsyncPolicy::Always).unwrap();
            s.append(&lines(0..10)).unwrap();
            let b = s.read_batch(4, 1 << 20).unwrap();
            s.ack(b.end).unwrap();
            // Read but never confirmed: must come back after the restart.
            let _in_flight = s.read_batch(3, 1 << 20).unwrap();
        }
        let mut s = Spool::open(dir.path(), 1 << 20, FsyncPolicy::Always).unwrap();
        assert_eq!(s.pending_records(), 6);
        s.append(&lines(10..12)).unwrap();
        assert_eq!(drain(&mut s), lines(4..12));
        drop(s);
        let mut s = Spool::open(dir.path(), 1 << 20, FsyncPolicy::Always).unwrap();
        assert_eq!(s.pending_records(), 0);
        assert!(drain(&mut s).is_empty());
    }

    #[test]
    fn torn_last_record_is_cut_and_the_rest_kept() {
        let dir = tempfile::tempdir().unwrap();
        let seg;
        {
            let mut s = Spool::open(dir.path(), 1 << 20, FsyncPolicy::Always).unwrap();
            s.append(&lines(0..3)).unwrap();
            seg = segment_path(dir.path(), s.active_segment().id);
        }
        // A crash in the middle of the fourth record: header and half the payload.
        let payload = b"m,host=h v=3i 3";
        let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
        f.write_all(&(payload.len() as u32).to_le_bytes()).unwrap();
        f.write_all(&crc32fast::hash(payload).to_le_bytes()).unwrap();
        f.write_all(&payload[..6]).unwrap();
        drop(f);
        let mut s = Spool::open(dir.path(), 1 << 20, FsyncPolicy::Always).unwrap();
        assert_eq!(s.stats().truncated_bytes, 14);
        assert_eq!(s.pending_records(), 3);
        s.append(&lines(3..5)).unwrap();
        assert_eq!(drain(&mut s), lines(0..5));
    }

    #[test]
    fn flipped_bit_fails_the_checksum() {
        let dir = tempfile::tempdir().unwrap();
        let seg;
        {
            let mut s = Spool::open(dir.path(), 1 << 20, FsyncPolicy::Always).unwrap();
            s.append(&lines(0..3)).unwrap();
            seg = segment_path(dir.path(), s.active_segment().id);
        }
        let mut bytes = fs::read(&seg).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0x01;
        fs::write(&seg, bytes).unwrap();
        let mut s = Spool::open(dir.path(), 1 << 20, FsyncPolicy::Always).unwrap();
        assert_eq!(drain(&mut s), lines(0..2));
    }

    #[test]
    fn size_bound_drops_oldest_and_counts_them() {
        let dir = tempfile::tempdir().unwrap();
        let max = 32 * 1024;
        let mut s = Spool::open(dir.path(), max, FsyncPolicy::Never).unwrap();
        let mut dropped = 0;
        for i in 0..200 {
            dropped += s.append(&lines(i * 20..(i + 1) * 20)).unwrap();
        }
        assert!(dropped > 0);
        assert_eq!(s.stats().dropped_records, dropped);
        assert!(s.disk_bytes() <= max + max / 8, "{} bytes on disk", s.disk_bytes());
        let kept = drain(&mut s);
        assert_eq!(kept.len() as u64 + dropped, 4000);
        // What is kept is the newest, contiguous and in order.
        assert_eq!(kept, lines(4000 - kept.len() as u32..4000));
    }

    #[test]
    fn drop_while_a_batch_is_in_flight_keeps_the_position_sane() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 16 * 1024, FsyncPolicy::Never).unwrap();
        s.append(&lines(0..50)).unwrap();
        let stale = s.read_batch(10, 1 << 20).unwrap();
        let mut dropped = 0;
        for i in 1..100 {
            dropped += s.append(&lines(i * 50..(i + 1) * 50)).unwrap();
        }
        assert!(dropped >= 50);
        s.ack(stale.end).unwrap();
        let kept = drain(&mut s);
        assert_eq!(kept.len() as u64 + dropped, 5000);
    }

    /// A full disk, for real: the segment the spool opens next is `/dev/full`, where
    /// every write fails with ENOSPC.
    #[test]
    fn full_disk_fails_the_append_and_the_spool_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/dev/full", segment_path(dir.path(), 1)).unwrap();
        let mut s = Spool::open(dir.path(), 1 << 20, FsyncPolicy::Always).unwrap();
        let err = s.append(&lines(0..3)).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(28), "ENOSPC: {err}");
        assert_eq!(s.pending_records(), 0);
        s.append(&lines(3..6)).unwrap();
        assert_eq!(drain(&mut s), lines(3..6));
    }

    /// Issue: after a disk-full episode the position could not be written and the
    /// confirmed segments were never deleted, so the disk stayed full. `ack.tmp` as
    /// `/dev/full` makes every new file write fail with ENOSPC, as on a full disk.
    #[test]
    fn ack_on_a_full_disk_still_deletes_confirmed_segments_and_persists() {
        let dir = tempfile::tempdir().unwrap();
        let max = 64 * 1024;
        let mut s = Spool::open(dir.path(), max, FsyncPolicy::Always).unwrap();
        let mut dropped = 0;
        for i in 0..20 {
            dropped += s.append(&lines(i * 100..(i + 1) * 100)).unwrap();
        }
        assert_eq!(dropped, 0);
        let segs = |d: &Path| {
            fs::read_dir(d)
                .unwrap()
                .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "seg"))
                .count()
        };
        let before = (s.disk_bytes(), segs(dir.path()));
        assert!(before.1 > 2, "{before:?}");
        std::os::unix::fs::symlink("/dev/full", dir.path().join("ack.tmp")).unwrap();
        // Ship everything while the disk is full.
        let shipped = drain(&mut s);
        assert_eq!(shipped, lines(0..2000));
        assert!(
            s.disk_bytes() < before.0 / 4,
            "confirmed segments stay on disk: {} of {} bytes",
            s.disk_bytes(),
            before.0
        );
        assert_eq!(segs(dir.path()), 1);
        // The position reached the disk although no new file could be written.
        drop(s);
        let mut s = Spool::open(dir.path(), max, FsyncPolicy::Always).unwrap();
        assert_eq!(s.pending_records(), 0, "a restart would resend the backlog");
        // Space is back: collection and shipping go on, nothing new is dropped.
        fs::remove_file(dir.path().join("ack.tmp")).unwrap();
        for i in 20..25 {
            assert_eq!(s.append(&lines(i * 100..(i + 1) * 100)).unwrap(), 0);
        }
        assert_eq!(drain(&mut s), lines(2000..2500));
        assert_eq!(s.stats().dropped_records, 0);
        assert!(!dir.path().join("ack.tmp").exists());
    }

    #[test]
    fn two_cursors_advance_apart_and_segments_go_when_both_passed() {
        let dir = tempfile::tempdir().unwrap();
        let names = ["a".to_string(), "b".to_string()];
        let mut s = Spool::open_cursors(dir.path(), 64 * 1024, FsyncPolicy::Never, &names).unwrap();
        for i in 0..20 {
            s.append(&lines(i * 100..(i + 1) * 100)).unwrap();
        }
        let full = s.disk_bytes();
        // `a` ships everything; `b` is down.
        let mut got_a = Vec::new();
        loop {
            let b = s.read_batch_for(0, 300, 1 << 20).unwrap();
            if b.records == 0 {
                break;
            }
            got_a.extend(b.body.lines().map(str::to_owned));
            s.ack_for(0, b.end).unwrap();
        }
        assert_eq!(got_a, lines(0..2000));
        assert_eq!((s.pending_for(0), s.pending_for(1), s.pending_records()), (0, 2000, 2000));
        assert_eq!(s.disk_bytes(), full, "b still needs every segment");
        // A restart keeps both positions.
        drop(s);
        let mut s = Spool::open_cursors(dir.path(), 64 * 1024, FsyncPolicy::Never, &names).unwrap();
        assert_eq!((s.pending_for(0), s.pending_for(1)), (0, 2000));
        // `b` comes back and catches up on the whole backlog, in order.
        let mut got_b = Vec::new();
        loop {
            let b = s.read_batch_for(1, 300, 1 << 20).unwrap();
            if b.records == 0 {
                break;
            }
            got_b.extend(b.body.lines().map(str::to_owned));
            s.ack_for(1, b.end).unwrap();
        }
        assert_eq!(got_b, lines(0..2000));
        assert!(s.disk_bytes() < full / 4, "{} of {full} bytes left", s.disk_bytes());
        // Past the bound, only the cursor that lags loses points, and it is counted.
        for i in 20..80 {
            s.append(&lines(i * 100..(i + 1) * 100)).unwrap();
            let b = s.read_batch_for(0, 1000, 1 << 20).unwrap();
            s.ack_for(0, b.end).unwrap();
        }
        assert_eq!(s.dropped_for(0), 0);
        assert!(s.dropped_for(1) > 0);
        assert_eq!(s.stats().dropped_records, s.dropped_for(1));
        assert_eq!(s.pending_for(1) + s.dropped_for(1), 6000);
    }

    #[test]
    fn a_new_cursor_starts_at_the_old_single_position() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut s = Spool::open(dir.path(), 1 << 20, FsyncPolicy::Never).unwrap();
            s.append(&lines(0..10)).unwrap();
            let b = s.read_batch(4, 1 << 20).unwrap();
            s.ack(b.end).unwrap();
        }
        let mut s = Spool::open_cursors(dir.path(), 1 << 20, FsyncPolicy::Never, &["x".to_string()]).unwrap();
        assert_eq!(s.pending_for(0), 6);
        let b = s.read_batch_for(0, 100, 1 << 20).unwrap();
        assert_eq!(b.body.lines().collect::<Vec<_>>(), lines(4..10));
    }

    #[test]
    fn fsync_policy_parses() {
        assert_eq!("always".parse::<FsyncPolicy>().unwrap(), FsyncPolicy::Always);
        assert_eq!("never".parse::<FsyncPolicy>().unwrap(), FsyncPolicy::Never);
        assert_eq!("2s".parse::<FsyncPolicy>().unwrap(), FsyncPolicy::Interval(Duration::from_secs(2)));
        assert!("sometimes".parse::<FsyncPolicy>().unwrap_err().contains("sometimes"));
    }
}
