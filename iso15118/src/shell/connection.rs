//! V2GTP over a byte stream: bounded reassembly, read and write deadlines.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::{Error, ShellConfig};
use crate::v2gtp::{self, PayloadType, Reassembler};

/// Opens a TCP connection to an SECC within `timeout` (`TCP_NODELAY` on:
/// V2G messages are small and each waits for its answer).
///
/// # Errors
///
/// [`Error::ConnectTimeout`], or [`Error::Io`] when the connect fails.
pub async fn connect(addr: SocketAddr, timeout: Duration) -> Result<TcpStream, Error> {
    let stream = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(Error::io(format!("connect {addr}"), e)),
        Err(_) => return Err(Error::ConnectTimeout(addr)),
    };
    stream
        .set_nodelay(true)
        .map_err(|e| Error::io("set TCP_NODELAY", e))?;
    Ok(stream)
}

/// A stream carrying V2GTP messages of payload type `0x8001` (EXI) and
/// the ISO 15118-20 message streams (`0x8002`-`0x8004`).
#[derive(Debug)]
pub(crate) struct Framed<S> {
    stream: S,
    reassembler: Reassembler,
    config: ShellConfig,
    /// When the last byte arrived (or the connection started).
    last_rx: Instant,
    /// When the first byte of the message being reassembled arrived.
    partial_since: Option<Instant>,
    buf: Vec<u8>,
    pub(crate) sent: u32,
    pub(crate) received: u32,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Framed<S> {
    pub(crate) fn new(stream: S, config: &ShellConfig) -> Self {
        Self {
            stream,
            reassembler: Reassembler::new(config.max_payload),
            config: *config,
            last_rx: Instant::now(),
            partial_since: None,
            buf: vec![0; 4096],
            sent: 0,
            received: 0,
        }
    }

    /// The next EXI payload and its payload type. Cancel safe: bytes read
    /// before a cancellation stay in the reassembler.
    pub(crate) async fn read(&mut self) -> Result<(PayloadType, Vec<u8>), Error> {
        loop {
            if let Some(packet) = self.reassembler.next_packet()? {
                self.partial_since = (self.reassembler.buffered() > 0).then_some(self.last_rx);
                if !matches!(
                    packet.payload_type,
                    PayloadType::EXI
                        | PayloadType::ISO20_MAIN
                        | PayloadType::ISO20_AC
                        | PayloadType::ISO20_DC
                ) {
                    return Err(Error::UnexpectedPayloadType(packet.payload_type));
                }
                self.received += 1;
                return Ok((packet.payload_type, packet.payload));
            }
            let idle = self.last_rx + self.config.idle_timeout;
            let (deadline, what) = match self.partial_since {
                Some(t) if t + self.config.frame_timeout < idle => (
                    t + self.config.frame_timeout,
                    "a V2GTP message was not completed in time",
                ),
                _ => (idle, "the peer sent nothing for too long"),
            };
            let n = match tokio::time::timeout_at(deadline, self.stream.read(&mut self.buf)).await {
                Err(_) => return Err(Error::ReadTimeout(what)),
                Ok(Err(e)) => return Err(Error::io("read", e)),
                Ok(Ok(0)) => return Err(Error::Closed),
                Ok(Ok(n)) => n,
            };
            let now = Instant::now();
            self.last_rx = now;
            if self.partial_since.is_none() {
                self.partial_since = Some(now);
            }
            self.reassembler.push(&self.buf[..n]);
        }
    }

    /// Writes one EXI payload in a V2GTP header of this payload type.
    pub(crate) async fn write(
        &mut self,
        payload_type: PayloadType,
        exi: &[u8],
    ) -> Result<(), Error> {
        let mut frame = Vec::with_capacity(v2gtp::HEADER_LEN + exi.len());
        v2gtp::encode(payload_type, exi, &mut frame)?;
        let limit = self.config.write_timeout;
        match tokio::time::timeout(limit, async {
            self.stream.write_all(&frame).await?;
            self.stream.flush().await
        })
        .await
        {
            Ok(Ok(())) => {
                self.sent += 1;
                Ok(())
            }
            Ok(Err(e)) => Err(Error::io("write", e)),
            Err(_) => Err(Error::WriteTimeout(limit)),
        }
    }

    /// Ends the connection politely: FIN, then what the peer still sends
    /// is read and dropped until it closes too (at most `linger`), so that
    /// our last message is not lost to a reset.
    pub(crate) async fn close(mut self, linger: Duration) {
        let _ = tokio::time::timeout(linger, async {
            let _ = self.stream.shutdown().await;
            while let Ok(n) = self.stream.read(&mut self.buf).await {
                if n == 0 {
                    break;
                }
            }
        })
        .await;
    }
}
