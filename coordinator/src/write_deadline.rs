//! A connection whose writes make no progress for [`WRITE_STALL_LIMIT`] is
//! closed. hyper has no write timeout: a client that asks for a large answer
//! and never reads it would hold the answer's memory, and its connection
//! slot, for as long as it keeps the socket open. A client reading slowly
//! but steadily is never cut: the clock restarts with every byte written.
//! Waiting to answer (a long-poll) or for the next request on a kept-alive
//! connection is no write, and is bounded elsewhere (`--request-timeout`,
//! `--header-timeout`).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// How long a write may wait for the client to read.
pub(crate) const WRITE_STALL_LIMIT: Duration = Duration::from_secs(30);

/// `S` whose writes fail with `TimedOut` once one has waited `limit`.
pub(crate) struct WriteDeadline<S> {
    inner: S,
    limit: Duration,
    /// Armed while a write waits; dropped as soon as one goes through.
    stalled: Option<Pin<Box<Sleep>>>,
}

impl<S> WriteDeadline<S> {
    pub(crate) fn new(inner: S, limit: Duration) -> Self {
        WriteDeadline { inner, limit, stalled: None }
    }

    /// What a write that is `Pending` comes to: still pending, or timed out
    /// once it has waited `limit` (the timer wakes the task to say so).
    fn waited<T>(&mut self, cx: &mut Context<'_>, polled: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if polled.is_ready() {
            self.stalled = None;
            return polled;
        }
        let limit = self.limit;
        let stalled = self.stalled.get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match stalled.as_mut().poll(cx) {
            Poll::Ready(()) => {
                Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "the client read nothing of its answer")))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for WriteDeadline<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WriteDeadline<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.waited(cx, polled)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.waited(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_flush(cx);
        self.waited(cx, polled)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.waited(cx, polled)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// A reader that takes nothing: the write fails once it has waited the
    /// limit (not before); one that reads a little at a time, each pause
    /// shorter than the limit, gets everything however long it takes.
    #[tokio::test]
    async fn a_write_waiting_on_a_reader_that_takes_nothing_times_out() {
        let limit = Duration::from_millis(300);
        let answer = vec![7u8; 64 * 1024];

        let (server, _idle_client) = tokio::io::duplex(1024);
        let mut server = WriteDeadline::new(server, limit);
        let started = tokio::time::Instant::now();
        let err = server.write_all(&answer).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() >= limit, "cut after {:?}", started.elapsed());

        let (server, mut slow_client) = tokio::io::duplex(1024);
        let mut server = WriteDeadline::new(server, limit);
        let reading = tokio::spawn(async move {
            let mut got = Vec::new();
            let mut chunk = [0u8; 4096];
            loop {
                tokio::time::sleep(Duration::from_millis(5)).await;
                match slow_client.read(&mut chunk).await.unwrap() {
                    0 => return got,
                    n => got.extend_from_slice(&chunk[..n]),
                }
            }
        });
        let started = tokio::time::Instant::now();
        server.write_all(&answer).await.expect("a steady reader is never cut");
        server.shutdown().await.unwrap();
        assert_eq!(reading.await.unwrap(), answer);
        assert!(started.elapsed() > limit, "the whole write took longer than the limit: {:?}", started.elapsed());
    }
}
