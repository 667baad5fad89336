//! The gRPC listener's connections: at most `grpc.max_connections` at once
//! (each holds a permit until it closes, and none is accepted while none is
//! free: further clients wait in the kernel's accept queue), over TLS when
//! `[tls]` is set, each handshake bounded by `grpc.request_timeout` and run
//! beside the others. tonic bounds each connection's age and each call's
//! time.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::{Stream, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::server::TlsStream;
use tokio_util::either::Either;
use tonic::transport::server::{Connected, TcpConnectInfo};

use crate::tls::Tls;

/// A connection, plaintext or TLS, that counts against the limit while it
/// is open.
pub struct Counted {
    inner: Either<TcpStream, TlsStream<TcpStream>>,
    info: TcpConnectInfo,
    _permit: OwnedSemaphorePermit,
}

/// The connections of `listener`, at most `max` open at once.
pub fn accept_counted(
    listener: TcpListener,
    max: usize,
    tls: Option<Arc<Tls>>,
    handshake_within: Duration,
) -> impl Stream<Item = io::Result<Counted>> {
    let permits = Arc::new(Semaphore::new(max));
    let accepted =
        futures_util::stream::unfold((listener, permits), |(listener, permits)| async move {
            let permit = Arc::clone(&permits)
                .acquire_owned()
                .await
                .expect("the semaphore is never closed");
            let accepted = listener.accept().await.map(|(stream, _)| (stream, permit));
            Some((accepted, (listener, permits)))
        });
    accepted
        .map(move |accepted| {
            let tls = tls.clone();
            async move {
                let (stream, permit) = accepted?;
                let info = TcpConnectInfo {
                    local_addr: stream.local_addr().ok(),
                    remote_addr: stream.peer_addr().ok(),
                };
                let inner = match tls {
                    None => Either::Left(stream),
                    Some(tls) => Either::Right(tls.accept(stream, handshake_within).await?),
                };
                Ok(Counted {
                    inner,
                    info,
                    _permit: permit,
                })
            }
        })
        .buffer_unordered(max)
        .filter(|connection| {
            if let Err(error) = connection {
                tracing::debug!(%error, "gRPC connection not taken");
            }
            std::future::ready(connection.is_ok())
        })
}

impl Connected for Counted {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.info.clone()
    }
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
