//! A pipelined LSTI-1 connection: many requests in flight, responses matched by MTI and STAN.

use std::collections::HashMap;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use protocol::frame;
use protocol::response::{Response, ResponseError};
use protocol::{Mti, RawMessage, Stan, WorkingKeys};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Why an exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The socket failed.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// The switch closed the connection.
    #[error("connection closed by the switch")]
    Closed,
    /// No response within the timeout.
    #[error("timed out")]
    Timeout,
    /// A frame or response that does not parse.
    #[error("bad response: {0}")]
    Bad(String),
}

impl From<ResponseError> for ClientError {
    fn from(error: ResponseError) -> ClientError {
        ClientError::Bad(error.to_string())
    }
}

/// One connection to the switch.
pub struct Client {
    stream: TcpStream,
    buf: BytesMut,
    waiting: HashMap<(Mti, Stan), Bytes>,
    timeout: Duration,
}

impl Client {
    /// Connects.
    ///
    /// # Errors
    /// [`ClientError::Io`] when the switch cannot be reached.
    pub async fn connect(addr: std::net::SocketAddr) -> Result<Client, ClientError> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Client {
            stream,
            buf: BytesMut::with_capacity(8192),
            waiting: HashMap::new(),
            timeout: Duration::from_secs(10),
        })
    }

    /// Sets how long [`Client::receive`] waits.
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// Frames and sends one message.
    ///
    /// # Errors
    /// [`ClientError`] when the message cannot be framed or sent.
    pub async fn send(&mut self, message: &[u8]) -> Result<(), ClientError> {
        let mut out = BytesMut::with_capacity(message.len() + 2);
        frame::encode(message, &mut out).map_err(|e| ClientError::Bad(e.to_string()))?;
        self.stream.write_all(&out).await?;
        Ok(())
    }

    /// Sends bytes as they are (malformed frames for tests).
    ///
    /// # Errors
    /// [`ClientError::Io`].
    pub async fn send_raw(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        self.stream.write_all(bytes).await?;
        Ok(())
    }

    /// The next message from the wire.
    ///
    /// # Errors
    /// [`ClientError::Closed`], [`ClientError::Timeout`] or a bad frame.
    pub async fn receive(&mut self) -> Result<Bytes, ClientError> {
        loop {
            if let Some(message) =
                frame::decode(&mut self.buf).map_err(|e| ClientError::Bad(e.to_string()))?
            {
                return Ok(message);
            }
            let read =
                tokio::time::timeout(self.timeout, self.stream.read_buf(&mut self.buf)).await;
            match read {
                Err(_) => return Err(ClientError::Timeout),
                Ok(Ok(0)) => return Err(ClientError::Closed),
                Ok(Ok(_)) => {}
                Ok(Err(error)) => return Err(error.into()),
            }
        }
    }

    /// The response with this MTI and STAN, keeping others that arrive first.
    ///
    /// # Errors
    /// As [`Client::receive`].
    pub async fn wait_for(&mut self, mti: Mti, stan: Stan) -> Result<Bytes, ClientError> {
        loop {
            if let Some(message) = self.waiting.remove(&(mti, stan)) {
                return Ok(message);
            }
            let message = self.receive().await?;
            let raw =
                RawMessage::parse(message.clone()).map_err(|e| ClientError::Bad(e.to_string()))?;
            let got_mti =
                Mti::parse(&raw.mti_bytes()).ok_or_else(|| ClientError::Bad("mti".into()))?;
            let got_stan = raw
                .field(protocol::spec::STAN)
                .and_then(|s| Stan::parse(s).ok())
                .ok_or_else(|| ClientError::Bad("stan".into()))?;
            self.waiting.insert((got_mti, got_stan), message);
        }
    }

    /// Sends a request and waits for its response, checking the response MAC when `keys` is
    /// given and the response carries one.
    ///
    /// # Errors
    /// As [`Client::receive`], or a response that does not parse or verify.
    pub async fn exchange(
        &mut self,
        message: &[u8],
        mti: Mti,
        stan: Stan,
        keys: Option<&WorkingKeys>,
    ) -> Result<(Response, Bytes), ClientError> {
        self.send(message).await?;
        let response_mti = mti
            .response()
            .ok_or_else(|| ClientError::Bad("not a request".into()))?;
        let bytes = self.wait_for(response_mti, stan).await?;
        let raw = RawMessage::parse(bytes.clone()).map_err(|e| ClientError::Bad(e.to_string()))?;
        Ok((Response::parse(&raw, keys)?, bytes))
    }

    /// True when the switch closes the connection within `timeout`.
    pub async fn closed_within(&mut self, timeout: Duration) -> bool {
        let mut scratch = [0_u8; 4096];
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, self.stream.read(&mut scratch)).await {
                Err(_) => return false,
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(_)) => {}
            }
        }
    }
}
