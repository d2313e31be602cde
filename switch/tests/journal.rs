//! Goal: the journal gives back exactly the records whose append returned, whatever a crash
//! left at its tail, and refuses to start, changing nothing, on damage anywhere else
//! (docs/design.md, "The journal").
//!
//! Method: records of varied sizes appended across several small segments, then the files
//! damaged the ways a crash or a disk can: the last segment cut at every byte offset inside
//! its last record, a torn write whose later sectors reached the disk and first did not, a
//! flipped bit in a middle record, a zeroed sector in a middle record, a missing segment.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::as_conversions
)]

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use switch::journal::{frame_len, Journal, JournalError, Record, HEADER, SECTOR};

const SEGMENT: u64 = 64 << 10;

fn payload(seq: u64) -> Vec<u8> {
    // Sizes from a few bytes to several sectors, content that differs per record.
    let len = usize::try_from((seq * 397) % 3_000 + 1).unwrap();
    (0..len)
        .map(|i| u8::try_from((i as u64 * 31 + seq) % 251).unwrap())
        .collect()
}

/// A journal of `n` records; returns the directory.
fn journal_of(n: u64) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let mut journal = Journal::open(dir.path(), SEGMENT, 0).unwrap().journal;
    for seq in 1..=n {
        assert_eq!(journal.append(&payload(seq)).unwrap(), seq);
    }
    dir
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    paths.sort();
    paths
}

/// Every segment's bytes, to show that a refused open changed nothing.
fn contents(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    segments(dir)
        .into_iter()
        .map(|p| (p.clone(), fs::read(p).unwrap()))
        .collect()
}

/// Offsets of every record in a segment, read the way the journal writes them.
fn record_offsets(bytes: &[u8]) -> Vec<(usize, u64)> {
    let mut out = Vec::new();
    let mut at = SECTOR;
    while at + HEADER <= bytes.len() {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        let seq = u64::from_le_bytes(bytes[at + 8..at + 16].try_into().unwrap());
        if len == 0 && seq == 0 {
            break;
        }
        out.push((at, seq));
        at += usize::try_from(frame_len(len)).unwrap();
    }
    out
}

fn seqs(records: &[Record]) -> Vec<u64> {
    records.iter().map(|r| r.seq).collect()
}

#[test]
fn records_come_back_in_order_across_segments_and_after_the_applied_one() {
    let dir = journal_of(120);
    assert!(segments(dir.path()).len() >= 3, "small segments roll");
    let opened = Journal::open(dir.path(), SEGMENT, 0).unwrap();
    assert_eq!(seqs(&opened.records), (1..=120).collect::<Vec<_>>());
    for record in &opened.records {
        assert_eq!(record.payload, payload(record.seq));
    }
    assert!(opened.torn.is_none());
    drop(opened);
    let opened = Journal::open(dir.path(), SEGMENT, 100).unwrap();
    assert_eq!(seqs(&opened.records), (101..=120).collect::<Vec<_>>());
    // Appending continues the sequence.
    let mut journal = opened.journal;
    assert_eq!(journal.append(b"next").unwrap(), 121);
    drop(journal);
    let opened = Journal::open(dir.path(), SEGMENT, 120).unwrap();
    assert_eq!(seqs(&opened.records), vec![121]);
    assert_eq!(opened.records[0].payload, b"next");
}

#[test]
fn projected_segments_are_removed_and_the_rest_still_opens() {
    let dir = journal_of(120);
    let before = segments(dir.path()).len();
    let mut journal = Journal::open(dir.path(), SEGMENT, 0).unwrap().journal;
    journal.release_through(90);
    // The helper thread unlinks: wait for it.
    for _ in 0..200 {
        if segments(dir.path()).len() < before {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    drop(journal);
    let after = segments(dir.path());
    assert!(
        after.len() < before,
        "{before} segments, still {}",
        after.len()
    );
    let opened = Journal::open(dir.path(), SEGMENT, 90).unwrap();
    assert_eq!(seqs(&opened.records), (91..=120).collect::<Vec<_>>());
    // A record the database has not applied must never be lost to removal.
    assert!(
        Journal::open(dir.path(), SEGMENT, 0).is_err(),
        "records 1.. are gone: opening at 0 must say so"
    );
}

#[test]
fn a_cut_at_every_offset_inside_the_last_record_recovers_exactly_the_complete_records() {
    let dir = journal_of(30);
    let last = segments(dir.path()).pop().unwrap();
    let pristine = fs::read(&last).unwrap();
    let offsets = record_offsets(&pristine);
    let &(start, seq) = offsets.last().unwrap();
    assert_eq!(seq, 30);
    let len = u32::from_le_bytes(pristine[start..start + 4].try_into().unwrap()) as usize;
    let end = start + HEADER + len;
    for cut in start..end {
        fs::write(&last, &pristine[..cut]).unwrap();
        let opened =
            Journal::open(dir.path(), SEGMENT, 0).unwrap_or_else(|e| panic!("cut at {cut}: {e}"));
        assert_eq!(
            seqs(&opened.records),
            (1..=29).collect::<Vec<_>>(),
            "cut at {cut}"
        );
        if cut > start {
            assert_eq!(
                opened.torn.as_ref().map(|t| t.1),
                Some(start as u64),
                "cut at {cut}"
            );
        }
        // The next append takes the torn record's place and number, and reads back.
        let mut journal = opened.journal;
        assert_eq!(
            journal.append(b"after the crash").unwrap(),
            30,
            "cut at {cut}"
        );
        drop(journal);
        let opened = Journal::open(dir.path(), SEGMENT, 28).unwrap();
        assert_eq!(seqs(&opened.records), vec![29, 30], "cut at {cut}");
        assert_eq!(opened.records[1].payload, b"after the crash");
    }
}

#[test]
fn a_torn_write_whose_first_sector_never_reached_the_disk_is_a_torn_tail() {
    let dir = journal_of(10);
    let last = segments(dir.path()).pop().unwrap();
    let mut bytes = fs::read(&last).unwrap();
    let &(start, _) = record_offsets(&bytes).last().unwrap();
    // Append one more large record by hand, then lose its first sector only.
    let mut journal = Journal::open(dir.path(), SEGMENT, 0).unwrap().journal;
    journal.append(&vec![7_u8; 3 * SECTOR]).unwrap();
    drop(journal);
    bytes = fs::read(&last).unwrap();
    let offsets = record_offsets(&bytes);
    let &(torn, seq) = offsets.last().unwrap();
    assert_eq!(seq, 11);
    assert!(torn > start);
    bytes[torn..torn + SECTOR].fill(0);
    fs::write(&last, &bytes).unwrap();
    let opened = Journal::open(dir.path(), SEGMENT, 0).unwrap();
    assert_eq!(seqs(&opened.records), (1..=10).collect::<Vec<_>>());
}

#[test]
fn a_flipped_bit_in_a_middle_record_refuses_to_open_and_changes_nothing() {
    let dir = journal_of(60);
    let middle = segments(dir.path())[0].clone();
    let mut bytes = fs::read(&middle).unwrap();
    let offsets = record_offsets(&bytes);
    let (at, _) = offsets[offsets.len() / 2];
    bytes[at + HEADER + 1] ^= 0x10;
    fs::write(&middle, &bytes).unwrap();
    let before = contents(dir.path());
    let error = Journal::open(dir.path(), SEGMENT, 0).unwrap_err();
    match &error {
        JournalError::Corrupt {
            segment, offset, ..
        } => {
            assert_eq!(segment, &middle);
            assert_eq!(*offset, at as u64);
        }
        other => panic!("expected corruption, got {other}"),
    }
    let message = error.to_string();
    assert!(message.contains(&middle.display().to_string()), "{message}");
    assert!(message.contains(&format!("offset {at}")), "{message}");
    assert_eq!(
        contents(dir.path()),
        before,
        "a refused open changed the journal"
    );
}

#[test]
fn a_flipped_bit_in_the_last_segment_before_its_tail_is_corruption_too() {
    let dir = journal_of(30);
    let last = segments(dir.path()).pop().unwrap();
    let mut bytes = fs::read(&last).unwrap();
    let offsets = record_offsets(&bytes);
    assert!(offsets.len() >= 3);
    let (at, _) = offsets[offsets.len() - 2];
    bytes[at + 5] ^= 0x01; // the checksum itself
    fs::write(&last, &bytes).unwrap();
    let before = contents(dir.path());
    assert!(matches!(
        Journal::open(dir.path(), SEGMENT, 0),
        Err(JournalError::Corrupt { offset, .. }) if offset == at as u64
    ));
    assert_eq!(contents(dir.path()), before);
}

#[test]
fn a_zeroed_sector_in_a_middle_record_is_corruption_not_the_end() {
    let dir = journal_of(60);
    let middle = segments(dir.path())[0].clone();
    let mut bytes = fs::read(&middle).unwrap();
    let offsets = record_offsets(&bytes);
    let (at, _) = offsets[2];
    bytes[at..at + SECTOR].fill(0);
    fs::write(&middle, &bytes).unwrap();
    assert!(matches!(
        Journal::open(dir.path(), SEGMENT, 0),
        Err(JournalError::Corrupt { offset, .. }) if offset == at as u64
    ));
}

#[test]
fn a_missing_segment_is_corruption() {
    let dir = journal_of(120);
    let all = segments(dir.path());
    assert!(all.len() >= 3);
    fs::remove_file(&all[1]).unwrap();
    let error = Journal::open(dir.path(), SEGMENT, 0).unwrap_err();
    assert!(matches!(error, JournalError::Corrupt { .. }), "{error}");
}

#[test]
fn segments_and_their_folder_are_private_to_the_switch() {
    use std::os::unix::fs::PermissionsExt;
    let dir = journal_of(3);
    let journal = dir.path().join("nested");
    drop(Journal::open(&journal, SEGMENT, 0).unwrap());
    let mode = |path: &Path| fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&journal), 0o700);
    for segment in segments(dir.path()) {
        assert_eq!(mode(&segment), 0o600, "{}", segment.display());
    }
}

/// The sizes of the spares in `dir`.
fn spare_sizes(dir: &Path) -> Vec<(PathBuf, u64)> {
    let mut out: Vec<(PathBuf, u64)> = fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "spare"))
        .map(|path| {
            let size = fs::metadata(&path).unwrap().len();
            (path, size)
        })
        .collect();
    out.sort();
    out
}

/// Dropping a journal stops its helper before the drop returns, even while the helper is
/// still zeroing a large spare: nothing writes in the directory afterwards. A journal opened
/// again in the same process (the simulation's crashes, the tests' restarts) once shared its
/// directory with the helper of the one before, which, still zeroing its first spare under
/// the name the new helper had just used, wiped the header and records of the segment the
/// new journal had made of it.
#[test]
fn dropping_a_journal_stops_its_helper() {
    let dir = tempfile::tempdir().unwrap();
    for _ in 0..3 {
        // 64 MiB: the spare's zeros take a while, so the helper is busy at the drop.
        let journal = Journal::open(dir.path(), 64 << 20, 0).unwrap().journal;
        drop(journal);
        let at_drop = spare_sizes(dir.path());
        std::thread::sleep(std::time::Duration::from_millis(300));
        assert_eq!(spare_sizes(dir.path()), at_drop, "written after the drop");
    }
    let mut journal = Journal::open(dir.path(), SEGMENT, 0).unwrap().journal;
    assert_eq!(journal.append(&payload(1)).unwrap(), 1);
    drop(journal);
    let opened = Journal::open(dir.path(), SEGMENT, 0).unwrap();
    assert_eq!(opened.records.len(), 1);
}
