//! The `tokio_util::codec` adapter over [`crate::frame`] (docs/design.md section 2): a thin shell,
//! all logic stays in the plain functions.

use bytes::{Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use crate::frame::{self, FrameError};

/// Frames LSTI-1 messages on a byte stream.
#[derive(Debug, Clone, Copy, Default)]
pub struct FrameCodec;

/// A codec error: a bad length prefix, or the stream's I/O error.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The length prefix cannot be honoured; close the stream.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The underlying stream failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl Decoder for FrameCodec {
    type Item = Bytes;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, CodecError> {
        Ok(frame::decode(src)?)
    }
}

impl Encoder<&[u8]> for FrameCodec {
    type Error = CodecError;

    fn encode(&mut self, item: &[u8], dst: &mut BytesMut) -> Result<(), CodecError> {
        Ok(frame::encode(item, dst)?)
    }
}

impl Encoder<Bytes> for FrameCodec {
    type Error = CodecError;

    fn encode(&mut self, item: Bytes, dst: &mut BytesMut) -> Result<(), CodecError> {
        Ok(frame::encode(&item, dst)?)
    }
}
