//! The journal: the switch's commit point in journal mode (docs/design.md, "The journal").
//!
//! An append-only sequence of records in segment files, one directory. The committer appends
//! each batch's effects as one record with one `write` and one `fdatasync`; a response leaves
//! only after the sync of its record has returned. The database is a projection of the
//! journal, written behind the hot path ([`crate::committer::journaled`]).
//!
//! Layout, all integers little-endian:
//! - a segment is a file `<first seq, 20 digits>.seg` of a fixed size, written with zeros
//!   before it is used (a spare is kept ready by a helper thread), so a record's sync writes
//!   data only, never the file's size or block map;
//! - its first sector holds [`SEGMENT_MAGIC`], [`FORMAT_VERSION`], the first sequence number
//!   and a CRC32C of those 20 bytes;
//! - then records, each starting on a sector boundary: payload length (u32), CRC32C (u32) of
//!   the sequence number, the length and the payload, sequence number (u64), payload, zeros to
//!   the next sector.
//!
//! Reading it back ([`Journal::open`]): records must carry consecutive sequence numbers. A
//! record that is short, has a wrong length or a wrong checksum is the torn tail of a crash
//! mid-append (that batch was never answered) when it is in the last segment and no valid
//! record follows it; the tail is then cut off. Anywhere else it is corruption: opening fails
//! with the segment and offset, and nothing is changed.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread;

use tracing::{info, warn};

/// Records start on a boundary of this many bytes: a torn write is told from corruption by
/// looking for a valid record on a later boundary.
pub const SECTOR: usize = 512;
/// Bytes before a record's payload.
pub const HEADER: usize = 16;
/// A segment's first sector starts with this.
pub const SEGMENT_MAGIC: &[u8; 8] = b"LSWJRNL\0";
/// The record format. A journal of another version is refused while it holds records not
/// yet projected (upgrade after a clean stop, which projects everything).
pub const FORMAT_VERSION: u32 = 1;
/// The largest payload of one record. A batch is far smaller (512 requests are ~300 KiB).
pub const RECORD_MAX: usize = 16 << 20;
/// The default segment size.
pub const SEGMENT_BYTES_DEFAULT: u64 = 64 << 20;
/// The smallest segment size allowed: one largest record and the header sector fit.
pub const SEGMENT_BYTES_MIN: u64 = 64 << 10;

/// Why the journal cannot be opened or written.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// The file system failed.
    #[error("journal {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A record or segment header that is not a torn tail is wrong.
    #[error("journal corrupt: segment {segment}, offset {offset}: {what}; nothing was changed")]
    Corrupt {
        /// The segment file.
        segment: PathBuf,
        /// The byte offset of the bad record or header.
        offset: u64,
        /// What is wrong.
        what: String,
    },
    /// A record is larger than [`RECORD_MAX`].
    #[error("journal record of {0} bytes is over the limit")]
    TooLarge(usize),
    /// An earlier write failed and could not be undone: nothing more is written.
    #[error("journal unusable after a failed write; restart the switch")]
    Failed,
}

/// One record read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Its sequence number.
    pub seq: u64,
    /// Its payload.
    pub payload: Vec<u8>,
}

/// What opening found.
#[derive(Debug)]
pub struct Opened {
    /// The journal, ready to append after the last valid record.
    pub journal: Journal,
    /// The records after the sequence number the caller has applied, in order.
    pub records: Vec<Record>,
    /// Where a torn tail was cut off, if there was one.
    pub torn: Option<(PathBuf, u64)>,
}

#[derive(Debug)]
struct Segment {
    first_seq: u64,
    path: PathBuf,
}

/// The journal, open for appending. One writer (the committer's journal thread).
#[derive(Debug)]
pub struct Journal {
    dir: PathBuf,
    segment_bytes: u64,
    segments: VecDeque<Segment>,
    file: Option<File>,
    offset: u64,
    next_seq: u64,
    failed: bool,
    buf: Vec<u8>,
    helper: Helper,
}

impl Journal {
    /// Opens (creating it if needed) the journal in `dir`, checks every segment, cuts off a
    /// torn tail and returns the records after `applied`.
    ///
    /// # Errors
    /// [`JournalError::Corrupt`] (nothing changed) or [`JournalError::Io`].
    pub fn open(dir: &Path, segment_bytes: u64, applied: u64) -> Result<Opened, JournalError> {
        let segment_bytes = segment_bytes.max(SEGMENT_BYTES_MIN);
        // Transactions and balances: readable by the switch's user only.
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io(dir))?;
        let mut names = Vec::new();
        for entry in fs::read_dir(dir).map_err(io(dir))? {
            let path = entry.map_err(io(dir))?.path();
            match path.extension().and_then(|e| e.to_str()) {
                Some("seg") => {
                    let first = path
                        .file_stem()
                        .and_then(|s| s.to_str())
                        .and_then(|s| s.parse::<u64>().ok())
                        .ok_or_else(|| {
                            corrupt(&path, 0, "segment name is not a sequence number")
                        })?;
                    names.push((first, path));
                }
                Some("spare") => {
                    // A spare being written when the process stopped: made again on demand.
                    let _ = fs::remove_file(&path);
                }
                _ => {}
            }
        }
        names.sort();
        // Read and check everything first: a corrupt journal must change nothing.
        let mut scans = Vec::with_capacity(names.len());
        let count = names.len();
        let mut expected: Option<u64> = None;
        for (index, (first_seq, path)) in names.into_iter().enumerate() {
            let last = index + 1 == count;
            let scan = scan_segment(&path, first_seq, last, expected)?;
            if let Some(seq) = scan.records.last().map(|r| r.seq) {
                expected = Some(seq + 1);
            } else if !scan.empty_leftover {
                expected = Some(first_seq);
            }
            scans.push((first_seq, path, scan));
        }
        if let Some((first_seq, path, _)) = scans.first() {
            if *first_seq > applied.saturating_add(1) {
                return Err(corrupt(
                    path,
                    0,
                    &format!("records {} to {} are missing", applied + 1, first_seq - 1),
                ));
            }
        }
        let mut segments = VecDeque::new();
        let mut records = Vec::new();
        let mut torn = None;
        let mut file = None;
        let mut offset = 0;
        let mut next_seq = applied + 1;
        for (first_seq, path, scan) in scans {
            if scan.empty_leftover {
                // The crash came between a spare's rename and its header's sync.
                fs::remove_file(&path).map_err(io(&path))?;
                continue;
            }
            if let Some(last) = scan.records.last() {
                next_seq = next_seq.max(last.seq + 1);
            } else {
                next_seq = next_seq.max(first_seq);
            }
            records.extend(scan.records.into_iter().filter(|r| r.seq > applied));
            let handle = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .map_err(io(&path))?;
            if let Some(at) = scan.torn_at {
                // Cut the torn record off and give the segment back its zeros.
                handle.set_len(at).map_err(io(&path))?;
                handle.set_len(segment_bytes.max(at)).map_err(io(&path))?;
                handle.sync_all().map_err(io(&path))?;
                warn!(segment = %path.display(), offset = at, "journal: torn tail cut off (a crash mid-append; that batch was never answered)");
                torn = Some((path.clone(), at));
            }
            offset = scan.end;
            file = Some(handle);
            segments.push_back(Segment { first_seq, path });
        }
        let helper = Helper::start(dir.to_path_buf(), segment_bytes);
        let journal = Journal {
            dir: dir.to_path_buf(),
            segment_bytes,
            segments,
            file,
            offset,
            next_seq,
            failed: false,
            buf: Vec::with_capacity(1 << 20),
            helper,
        };
        info!(
            dir = %dir.display(),
            segments = journal.segments.len(),
            unprojected = records.len(),
            next_seq,
            "journal opened"
        );
        Ok(Opened {
            journal,
            records,
            torn,
        })
    }

    /// The sequence number the next record gets.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Segment files on disk.
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Appends one record with one write and one `fdatasync`; returns its sequence number once
    /// it is durable. A failed write is undone (the region is zeroed again) before the error
    /// returns; if even that fails the journal refuses every later append.
    ///
    /// # Errors
    /// [`JournalError`]; the record is not in the journal.
    pub fn append(&mut self, payload: &[u8]) -> Result<u64, JournalError> {
        if self.failed {
            return Err(JournalError::Failed);
        }
        if payload.len() > RECORD_MAX {
            return Err(JournalError::TooLarge(payload.len()));
        }
        let frame = frame_len(payload.len());
        if self.file.is_none() || self.offset + frame > self.segment_bytes {
            self.roll()?;
        }
        let seq = self.next_seq;
        encode(&mut self.buf, seq, payload);
        debug_assert_eq!(to_u64(self.buf.len()), frame);
        let (Some(file), Some(segment)) = (self.file.as_ref(), self.segments.back()) else {
            return Err(JournalError::Failed);
        };
        let written = file
            .write_all_at(&self.buf, self.offset)
            .and_then(|()| file.sync_data());
        if let Err(source) = written {
            // Undo: zeros where the record went, so a later record is not read as garbage.
            self.buf.iter_mut().for_each(|b| *b = 0);
            let undone = file
                .write_all_at(&self.buf, self.offset)
                .and_then(|()| file.sync_data());
            if undone.is_err() {
                self.failed = true;
            }
            return Err(JournalError::Io {
                path: segment.path.clone(),
                source,
            });
        }
        self.offset += frame;
        self.next_seq += 1;
        Ok(seq)
    }

    /// Starts a new segment: takes the spare the helper prepared, names it after the next
    /// sequence number, writes its header and makes the name durable.
    fn roll(&mut self) -> Result<(), JournalError> {
        let spare = self.helper.take()?;
        let path = self.dir.join(format!("{:020}.seg", self.next_seq));
        if let Err(source) = fs::rename(&spare, &path) {
            // The spare stays ready for the next try.
            self.helper.keep(spare);
            return Err(JournalError::Io { path, source });
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io(&path))?;
        let header = segment_header(self.next_seq);
        file.write_all_at(&header, 0)
            .and_then(|()| file.sync_data())
            .map_err(io(&path))?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io(&self.dir))?;
        self.segments.push_back(Segment {
            first_seq: self.next_seq,
            path,
        });
        self.file = Some(file);
        self.offset = to_u64(SECTOR);
        // Only now: the next spare's writes would otherwise hold up this roll's syncs.
        self.helper.prepare_next();
        Ok(())
    }

    /// Removes the segments every record of which is at or before `applied` (projected),
    /// except the one being written. The helper thread unlinks them.
    pub fn release_through(&mut self, applied: u64) {
        while self.segments.len() > 1 {
            let Some(next_first) = self.segments.get(1).map(|s| s.first_seq) else {
                break;
            };
            if next_first.saturating_sub(1) > applied {
                break;
            }
            if let Some(done) = self.segments.pop_front() {
                self.helper.remove(done.path);
            }
        }
    }
}

/// The bytes of a record with its header and padding, built in `buf`.
fn encode(buf: &mut Vec<u8>, seq: u64, payload: &[u8]) {
    buf.clear();
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    buf.extend_from_slice(&len.to_le_bytes());
    buf.extend_from_slice(&checksum(seq, len, payload).to_le_bytes());
    buf.extend_from_slice(&seq.to_le_bytes());
    buf.extend_from_slice(payload);
    let padded = buf.len().div_ceil(SECTOR) * SECTOR;
    buf.resize(padded, 0);
}

fn checksum(seq: u64, len: u32, payload: &[u8]) -> u32 {
    let mut head = [0_u8; 12];
    head[..8].copy_from_slice(&seq.to_le_bytes());
    head[8..].copy_from_slice(&len.to_le_bytes());
    crc32c::crc32c_append(crc32c::crc32c(&head), payload)
}

/// Bytes a record of `payload` bytes takes on disk.
pub fn frame_len(payload: usize) -> u64 {
    to_u64((HEADER + payload).div_ceil(SECTOR) * SECTOR)
}

fn segment_header(first_seq: u64) -> [u8; SECTOR] {
    let mut header = [0_u8; SECTOR];
    header[..8].copy_from_slice(SEGMENT_MAGIC);
    header[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    header[12..20].copy_from_slice(&first_seq.to_le_bytes());
    let crc = crc32c::crc32c(&header[..20]);
    header[20..24].copy_from_slice(&crc.to_le_bytes());
    header
}

/// What a segment holds.
struct Scan {
    records: Vec<Record>,
    /// The offset after the last valid record.
    end: u64,
    /// Where a torn tail starts.
    torn_at: Option<u64>,
    /// A last segment that is all zeros: a spare renamed just before a crash.
    empty_leftover: bool,
}

/// A record parsed at `at`: its sequence number, payload range and frame length, or what is
/// wrong with it.
fn parse(data: &[u8], at: usize) -> Result<(u64, std::ops::Range<usize>, usize), &'static str> {
    let Some(head) = data.get(at..at + HEADER) else {
        return Err("short record header");
    };
    let field = |range: std::ops::Range<usize>| head.get(range).unwrap_or(&[]);
    let len = u32::from_le_bytes(field(0..4).try_into().unwrap_or([0; 4]));
    let crc = u32::from_le_bytes(field(4..8).try_into().unwrap_or([0; 4]));
    let seq = u64::from_le_bytes(field(8..16).try_into().unwrap_or([0; 8]));
    if len == 0 && crc == 0 && seq == 0 {
        return Err("no record");
    }
    let size = usize::try_from(len).unwrap_or(usize::MAX);
    if size > RECORD_MAX {
        return Err("record length over the limit");
    }
    let body = at + HEADER..at + HEADER + size;
    let Some(payload) = data.get(body.clone()) else {
        return Err("short record");
    };
    if checksum(seq, len, payload) != crc {
        return Err("record checksum mismatch");
    }
    Ok((seq, body, (HEADER + size).div_ceil(SECTOR) * SECTOR))
}

/// Whether a valid record starts on any sector boundary after `at`.
fn valid_record_after(data: &[u8], at: usize) -> bool {
    let mut pos = (at / SECTOR + 1) * SECTOR;
    while pos + HEADER <= data.len() {
        if parse(data, pos).is_ok() {
            return true;
        }
        pos += SECTOR;
    }
    false
}

fn scan_segment(
    path: &Path,
    first_seq: u64,
    last: bool,
    expected: Option<u64>,
) -> Result<Scan, JournalError> {
    let mut data = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut data))
        .map_err(io(path))?;
    let head = data.get(..24).unwrap_or(&[]);
    if head.iter().all(|b| *b == 0) && last && !valid_record_after(&data, 0) {
        return Ok(Scan {
            records: Vec::new(),
            end: to_u64(SECTOR),
            torn_at: None,
            empty_leftover: true,
        });
    }
    if head.len() < 24 || head.get(..8) != Some(SEGMENT_MAGIC.as_slice()) {
        return Err(corrupt(path, 0, "not a journal segment"));
    }
    let word = |range: std::ops::Range<usize>| head.get(range).unwrap_or(&[]).to_vec();
    let version = u32::from_le_bytes(word(8..12).try_into().unwrap_or([0; 4]));
    let named = u64::from_le_bytes(word(12..20).try_into().unwrap_or([0; 8]));
    let crc = u32::from_le_bytes(word(20..24).try_into().unwrap_or([0; 4]));
    if crc32c::crc32c(head.get(..20).unwrap_or(&[])) != crc {
        return Err(corrupt(path, 0, "segment header checksum mismatch"));
    }
    if version != FORMAT_VERSION {
        return Err(corrupt(
            path,
            0,
            &format!("format version {version}, this switch reads {FORMAT_VERSION}"),
        ));
    }
    if named != first_seq {
        return Err(corrupt(
            path,
            0,
            "segment header names another sequence number",
        ));
    }
    if let Some(expected) = expected {
        if first_seq != expected {
            return Err(corrupt(
                path,
                0,
                &format!("segment starts at record {first_seq}, record {expected} expected"),
            ));
        }
    }
    let mut records = Vec::new();
    let mut at = SECTOR;
    let mut next = first_seq;
    let mut torn_at = None;
    while at + HEADER <= data.len() {
        match parse(&data, at) {
            Ok((seq, body, frame)) if seq == next => {
                records.push(Record {
                    seq,
                    payload: data.get(body).unwrap_or(&[]).to_vec(),
                });
                next += 1;
                at += frame;
            }
            Ok((seq, _, _)) => {
                return Err(corrupt(
                    path,
                    to_u64(at),
                    &format!("record {seq} where record {next} was expected"),
                ));
            }
            Err(what) => {
                if valid_record_after(&data, at) {
                    return Err(corrupt(path, to_u64(at), what));
                }
                if what != "no record" {
                    if !last {
                        return Err(corrupt(path, to_u64(at), what));
                    }
                    torn_at = Some(to_u64(at));
                }
                break;
            }
        }
    }
    if at + HEADER > data.len() && at < data.len() && last {
        // A tail shorter than a header: a record cut inside its header.
        torn_at = Some(to_u64(at));
    }
    Ok(Scan {
        records,
        end: to_u64(at),
        torn_at,
        empty_leftover: false,
    })
}

/// The journal's helper thread: keeps a zero-filled spare segment ready and unlinks projected
/// segments, so neither ever runs on the committer's path.
#[derive(Debug)]
struct Helper {
    commands: mpsc::Sender<Command>,
    /// The thread, joined when the journal is dropped: a journal reopened in the same process
    /// (a restart in the tests and the simulation) must never share its directory with the
    /// helper of the one before, still zeroing a spare.
    thread: Option<thread::JoinHandle<()>>,
    ready: mpsc::Receiver<Result<PathBuf, JournalError>>,
    /// A spare taken and not used (its rename failed).
    kept: Option<PathBuf>,
    /// A spare was asked for and not yet taken.
    asked: bool,
}

enum Command {
    Prepare,
    Remove(PathBuf),
    /// Finish what was asked before, then end.
    Stop,
}

/// Numbers each helper of this process, so two helpers never name a spare alike.
static HELPERS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl Helper {
    fn start(dir: PathBuf, segment_bytes: u64) -> Helper {
        let (commands, command_rx) = mpsc::channel();
        let (ready_tx, ready) = mpsc::channel();
        let instance = HELPERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let spawned = thread::Builder::new()
            .name("lsw-journal-helper".to_owned())
            .spawn(move || helper_loop(&dir, instance, segment_bytes, &command_rx, &ready_tx));
        let thread = match spawned {
            Ok(thread) => Some(thread),
            Err(cause) => {
                warn!(%cause, "journal helper thread not started; no segment can be added");
                None
            }
        };
        let mut helper = Helper {
            commands,
            thread,
            ready,
            kept: None,
            asked: false,
        };
        helper.prepare_next();
        helper
    }

    /// The prepared spare, waiting for it if the helper is still writing it.
    fn take(&mut self) -> Result<PathBuf, JournalError> {
        if let Some(spare) = self.kept.take() {
            return Ok(spare);
        }
        self.prepare_next();
        self.asked = false;
        match self.ready.try_recv() {
            Ok(spare) => spare,
            Err(_) => {
                warn!("journal: the next segment was not ready; the append waits for it");
                self.ready.recv().map_err(|_| JournalError::Failed)?
            }
        }
    }

    /// Asks for the next spare, unless one is already asked for.
    fn prepare_next(&mut self) {
        if !self.asked {
            self.asked = true;
            let _ = self.commands.send(Command::Prepare);
        }
    }

    fn keep(&mut self, spare: PathBuf) {
        self.kept = Some(spare);
    }

    fn remove(&self, path: PathBuf) {
        let _ = self.commands.send(Command::Remove(path));
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        let _ = self.commands.send(Command::Stop);
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                warn!("journal: the helper thread panicked");
            }
        }
    }
}

fn helper_loop(
    dir: &Path,
    instance: u64,
    segment_bytes: u64,
    commands: &mpsc::Receiver<Command>,
    ready: &mpsc::Sender<Result<PathBuf, JournalError>>,
) {
    let mut made = 0_u64;
    while let Ok(command) = commands.recv() {
        match command {
            Command::Stop => return,
            Command::Prepare => {
                made += 1;
                let path = dir.join(format!("{instance}-{made}.spare"));
                if ready.send(prepare(&path, segment_bytes)).is_err() {
                    // The journal is gone and will not rename it; the next open removes it.
                    return;
                }
            }
            Command::Remove(path) => {
                if let Err(cause) = fs::remove_file(&path) {
                    warn!(%cause, segment = %path.display(), "journal: cannot remove a projected segment");
                }
            }
        }
    }
}

/// Bytes of zeros the helper writes between two syncs: little dirty data at any time, so the
/// file system never has much to flush ahead of a record's sync.
const PREPARE_SYNC_BYTES: u64 = 4 << 20;

/// Writes a spare segment of zeros and syncs it, a few MiB at a time.
fn prepare(path: &Path, segment_bytes: u64) -> Result<PathBuf, JournalError> {
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(io(path))?;
    let zeros = vec![0_u8; 1 << 20];
    let mut at = 0;
    while at < segment_bytes {
        let n = (segment_bytes - at).min(to_u64(zeros.len()));
        let chunk = zeros.get(..usize::try_from(n).unwrap_or(0)).unwrap_or(&[]);
        file.write_all_at(chunk, at).map_err(io(path))?;
        at += n;
        if at % PREPARE_SYNC_BYTES == 0 {
            file.sync_data().map_err(io(path))?;
        }
    }
    file.sync_all().map_err(io(path))?;
    Ok(path.to_path_buf())
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> JournalError + '_ {
    move |source| JournalError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn corrupt(path: &Path, offset: u64, what: &str) -> JournalError {
    JournalError::Corrupt {
        segment: path.to_path_buf(),
        offset,
        what: what.to_owned(),
    }
}

fn to_u64(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}
