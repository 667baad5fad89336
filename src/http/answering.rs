//! The connection otpd's HTTP/1.1 is spoken over. actix-http answers some
//! requests itself, before any middleware or handler runs: 400 to one it
//! cannot parse (a control byte in a header, Transfer-Encoding with
//! Content-Length …), 431 to too many or too large headers, 408 to headers
//! that do not arrive in time; with an empty body and no request id, then
//! it closes the connection. Every answer of otpd's App carries
//! `X-Request-Id` (`observe`), so an error head without one is
//! actix-http's: `Answering` writes a problem document with a request id in
//! its place, and counts and logs it as a refusal.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::observe::RejectionLog;
use super::problem::{Kind, Problem, CONTENT_TYPE};
use crate::metrics::Metrics;

/// Where refusals that never reached the App are counted and logged.
#[derive(Clone)]
pub struct Refusals {
    pub metrics: Metrics,
    pub log: Arc<RejectionLog>,
}

/// A connection whose actix-http error answers become problems.
pub struct Answering<S> {
    inner: S,
    refusals: Refusals,
    /// The problem answer written in place of actix-http's, and how much of
    /// it has gone out.
    replacement: Vec<u8>,
    written: usize,
}

impl<S> Answering<S> {
    pub fn new(inner: S, refusals: Refusals) -> Self {
        Answering {
            inner,
            refusals,
            replacement: Vec::new(),
            written: 0,
        }
    }
}

/// The status of `buf` if it begins with a complete error head that has no
/// request id.
fn own_error(buf: &[u8]) -> Option<u16> {
    let rest = buf.strip_prefix(b"HTTP/1.")?;
    let status = std::str::from_utf8(rest.get(2..5)?).ok()?.parse().ok()?;
    if status < 400 {
        return None;
    }
    let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = buf[..head_end].to_ascii_lowercase();
    let has_id = head.windows(15).any(|w| w == b"\r\nx-request-id:");
    (!has_id).then_some(status)
}

/// The problem answer in place of actix-http's `status`, with a fresh
/// request id.
fn problem_answer(status: u16, request_id: &str) -> Vec<u8> {
    let problem = match status {
        408 => Problem::new(
            Kind::RequestTimeout,
            "request-timeout",
            "the headers did not arrive in time",
        ),
        431 => Problem::new(
            Kind::HeadersTooLarge,
            "headers-too-large",
            "too many headers, or too large",
        ),
        _ => Problem::bad_request(
            "malformed-request",
            "not a valid HTTP/1.1 request (a control character in a header, \
             Transfer-Encoding with Content-Length, a bad request line …)",
        ),
    };
    let status = super::problem::status(problem.kind());
    let body = super::problem::body(&problem);
    let mut answer = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: {CONTENT_TYPE}\r\ncontent-length: {}\r\n\
         x-request-id: {request_id}\r\nconnection: close\r\n\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or("Error"),
        body.len()
    )
    .into_bytes();
    answer.extend_from_slice(body.as_bytes());
    answer
}

impl<S: AsyncWrite + Unpin> Answering<S> {
    /// Writes what is left of the replacement.
    fn drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.replacement.len() {
            let rest = &self.replacement[self.written..];
            match ready!(Pin::new(&mut self.inner).poll_write(cx, rest))? {
                0 => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                n => self.written += n,
            }
        }
        Poll::Ready(Ok(()))
    }

    fn replace(&mut self, status: u16) {
        let request_id = crate::config::random_token(12);
        self.replacement = problem_answer(status, &request_id);
        self.written = 0;
        self.refusals.metrics.http_unparsed(status);
        tracing::warn_span!("request", request_id = %request_id, route = "unparsed")
            .in_scope(|| self.refusals.log.record(status));
    }
}

/// Reads pass through untouched.
impl<S: AsyncRead + Unpin> AsyncRead for Answering<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        to: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let inner = &mut self.get_mut().inner;
        Pin::new(inner).poll_read(cx, to)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Answering<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.drain(cx))?;
        if let Some(status) = own_error(buf) {
            // actix-http's head (its body is empty) is taken whole and the
            // problem goes out instead, now or at the next flush.
            this.replace(status);
            let _ = this.drain(cx)?;
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.drain(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.drain(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_error_heads_without_a_request_id_are_actix_https() {
        let own = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
        assert_eq!(own_error(own), Some(400));
        let app = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 2\r\nx-request-id: abc\r\n\r\n{}";
        assert_eq!(own_error(app), None);
        assert_eq!(
            own_error(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"),
            None
        );
        assert_eq!(own_error(b"{\"HTTP/1.1 400\"}"), None);
        assert_eq!(
            own_error(b"HTTP/1.1 431 Request"),
            None,
            "an incomplete head"
        );
    }

    #[test]
    fn the_replacement_is_a_problem_with_an_id() {
        let answer = String::from_utf8(problem_answer(431, "req-1")).expect("utf-8");
        let (head, body) = answer.split_once("\r\n\r\n").expect("head and body");
        assert!(head.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"));
        assert!(head.contains(&format!("content-length: {}", body.len())));
        assert!(head.contains("x-request-id: req-1"));
        assert!(body.contains("\"code\":\"headers-too-large\""));
    }
}
