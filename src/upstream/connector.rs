//! The one connector to backends: TCP (no Nagle: heads and small bodies should leave at once),
//! and TLS over it for `https://` backends with the one client configuration (SNI and
//! verification for the URL's host — for a member DNS found, the entry's name while the
//! connection goes to the address found), all within `backends.connect_timeout_ms`. Pooled
//! connections for proxied requests and the fresh ones of tunnels both come from here.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use rustls::ClientConfig;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use super::error::UpstreamError;
use super::tls::server_name;
use crate::backend::{Backend, ConnectTo};

/// Opens connections to backends; shared by every worker.
#[derive(Clone)]
pub struct Connector {
    tls: TlsConnector,
    /// TCP connect and TLS handshake together.
    connect_timeout: Duration,
    /// From the first byte of a request to the last byte of its answer's head.
    pub(super) response_timeout: Duration,
}

/// A connection to a backend: plain TCP, or TLS over it.
pub enum Io {
    Plain(TcpStream),
    /// Boxed: rustls's state is large, and most connections are plain.
    Tls(Box<TlsStream<TcpStream>>),
}

impl Connector {
    pub fn new(
        tls: Arc<ClientConfig>,
        connect_timeout: Duration,
        response_timeout: Duration,
    ) -> Self {
        Self {
            tls: TlsConnector::from(tls),
            connect_timeout,
            response_timeout,
        }
    }

    /// A new connection to `backend`, TLS included for `https://`.
    pub async fn connect(&self, backend: &Backend) -> Result<Io, UpstreamError> {
        tokio::time::timeout(self.connect_timeout, self.connect_now(backend))
            .await
            .map_err(|_| UpstreamError::Connect("connect timed out".to_owned()))?
    }

    async fn connect_now(&self, backend: &Backend) -> Result<Io, UpstreamError> {
        let failed = |err: io::Error| UpstreamError::Connect(err.to_string());
        let tcp = match backend.connect_to() {
            ConnectTo::Address(address) => TcpStream::connect(address).await,
            ConnectTo::Name(authority) => TcpStream::connect(authority).await,
        }
        .map_err(failed)?;
        tcp.set_nodelay(true).map_err(failed)?;
        if !backend.tls {
            return Ok(Io::Plain(tcp));
        }
        let name = server_name(backend.authority.host()).map_err(UpstreamError::Connect)?;
        let tls = self.tls.connect(name, tcp).await.map_err(failed)?;
        Ok(Io::Tls(Box::new(tls)))
    }
}

impl Io {
    /// Whether an idle connection is still open with nothing unasked waiting on it. A TLS
    /// connection may have records to process that carry no data (a session ticket): they are
    /// taken in; a close or any byte of data makes it unusable.
    pub fn usable(&mut self) -> bool {
        let mut probe = [0u8; 1];
        match self {
            Io::Plain(tcp) => {
                matches!(tcp.try_read(&mut probe), Err(err) if err.kind() == io::ErrorKind::WouldBlock)
            }
            Io::Tls(tls) => {
                let mut cx = Context::from_waker(Waker::noop());
                let mut buf = ReadBuf::new(&mut probe);
                Pin::new(tls.as_mut())
                    .poll_read(&mut cx, &mut buf)
                    .is_pending()
            }
        }
    }
}

impl AsyncRead for Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(tcp) => Pin::new(tcp).poll_read(cx, buf),
            Io::Tls(tls) => Pin::new(tls.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Io {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Io::Plain(tcp) => Pin::new(tcp).poll_write(cx, data),
            Io::Tls(tls) => Pin::new(tls.as_mut()).poll_write(cx, data),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        parts: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Io::Plain(tcp) => Pin::new(tcp).poll_write_vectored(cx, parts),
            Io::Tls(tls) => Pin::new(tls.as_mut()).poll_write_vectored(cx, parts),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Io::Plain(tcp) => tcp.is_write_vectored(),
            Io::Tls(tls) => tls.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(tcp) => Pin::new(tcp).poll_flush(cx),
            Io::Tls(tls) => Pin::new(tls.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(tcp) => Pin::new(tcp).poll_shutdown(cx),
            Io::Tls(tls) => Pin::new(tls.as_mut()).poll_shutdown(cx),
        }
    }
}
