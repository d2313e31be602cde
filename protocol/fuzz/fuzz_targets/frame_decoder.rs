//! Goal: no byte stream makes the frame decoder panic, return a frame over the cap, buffer more
//! than one frame, or answer differently depending on how the stream was split into reads.
//!
//! Method: the input is the byte stream of one connection. It is decoded twice: in one read,
//! and in reads of a fixed cycle of sizes (1 byte up to a few hundred). Both must give the same
//! frames and the same closing error; each frame is then parsed as a message.
#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use protocol::frame::{self, FrameError, FRAME_BYTES_MAX, PREFIX_BYTES};
use protocol::RawMessage;

/// Read sizes, cycled: a socket hands over whatever has arrived.
const READS: [usize; 8] = [1, 7, 2, 64, 3, 300, 1, 2100];

fuzz_target!(|data: &[u8]| {
    let whole = read(data, &[data.len().max(1)]);
    let chunked = read(data, &READS);
    assert_eq!(whole, chunked);
    for message in whole.0 {
        let _ = RawMessage::parse(message);
    }
});

/// The frames of `stream` read in chunks of `sizes` (cycled), then the error that closed it.
fn read(stream: &[u8], sizes: &[usize]) -> (Vec<Bytes>, Option<FrameError>) {
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    let mut rest = stream;
    let mut sizes = sizes.iter().cycle();
    while !rest.is_empty() {
        let size = (*sizes.next().unwrap_or(&1)).min(rest.len());
        let (chunk, tail) = rest.split_at(size);
        rest = tail;
        buf.extend_from_slice(chunk);
        loop {
            match frame::decode(&mut buf) {
                Ok(Some(message)) => {
                    assert!(!message.is_empty() && message.len() <= FRAME_BYTES_MAX);
                    frames.push(message);
                }
                Ok(None) => {
                    assert!(buf.len() < PREFIX_BYTES + FRAME_BYTES_MAX);
                    break;
                }
                Err(error) => return (frames, Some(error)),
            }
        }
    }
    (frames, None)
}
