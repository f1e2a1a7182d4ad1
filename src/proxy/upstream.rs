//! Upstream connections for the AI routes: pingora-core's transport connector
//! and its pool (under its HTTP/1 connector), asked for a pooled connection
//! before it is asked to connect.
//!
//! Why not `connectors::http::Connector::get_http_session`: that one future
//! holds every state of a new connection (TCP, TLS handshake, h2 set-up),
//! ~9 KB, and it is built and boxed (a ~9 KB copy) on every request, also
//! when the pool has a connection ready. Looking in the pool first is a
//! ~200-byte future; the connecting one is built only when the pool is empty.
//!
//! Every provider peer is HTTP/1.1 (no ALPN is offered upstream): the pooled
//! streams carry a request head written by `headers.rs` and an answer read by
//! `answer.rs`.

use super::answer::Answer;
use crate::providers::peer::POOL_IDLE;
use pingora_core::connectors::TransportConnector;
use pingora_core::protocols::Stream;
use pingora_core::upstreams::peer::{HttpPeer, Peer};
use pingora_core::{Error, ErrorType, Result};
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// Bodies up to this size leave in the same write as the head.
const ONE_WRITE: usize = 64 * 1024;

/// The upstream connection a client connection keeps for its next request
/// (the front door's keep-alive loop; `front.rs`).
///
/// Why: a connection released to pingora's pool gets an idle-watch task
/// spawned, and taking it back wakes that task and waits for it to let go:
/// ~4k instructions and two task switches per request. A client sending
/// request after request on one connection to one provider reuses the same
/// upstream connection here instead. It is checked before use (an upstream
/// that closed it is noticed, as the pool does), and the front door hands it
/// to the pool once the client is idle for a moment, so no connection sits
/// unwatched for long or away from the other clients.
#[derive(Default)]
pub struct Kept(Option<(u64, Stream)>);

impl Kept {
    pub fn is_some(&self) -> bool {
        self.0.is_some()
    }

    /// The kept connection if it goes to the peer with `hash` and is still
    /// usable (no end and no stray bytes from the upstream since).
    fn take_for(&mut self, hash: u64) -> Option<Stream> {
        match &self.0 {
            Some((h, _)) if *h == hash => {}
            _ => return None,
        }
        let (_, mut stream) = self.0.take()?;
        idle_and_open(&mut stream).then_some(stream)
    }
}

/// Whether nothing (no data, no end) has arrived on an idle connection: a
/// read that is not ready now, as pingora's pool checks its connections.
fn idle_and_open(stream: &mut Stream) -> bool {
    use tokio::io::AsyncReadExt;
    let mut byte = [0u8; 1];
    // Unconstrained: tokio's budget could make a ready read look pending.
    ready_now(tokio::task::unconstrained(stream.read(&mut byte))).is_none()
}

/// The output of `f` if it is ready at its first poll, else `None` (and `f`
/// is dropped). For reads that keep their progress outside the future
/// (`Answer::body`, a socket read): nothing is lost when one is dropped.
pub fn ready_now<F: std::future::Future>(f: F) -> Option<F::Output> {
    let mut f = std::pin::pin!(f);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match f.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(v) => Some(v),
        std::task::Poll::Pending => None,
    }
}

pub struct Upstream {
    /// Pingora's connector and pool under its HTTP/1 one: that one wraps a
    /// pooled stream in a session only for `send` to unwrap it again.
    transport: TransportConnector,
}

impl Default for Upstream {
    fn default() -> Self {
        Upstream {
            transport: TransportConnector::new(None),
        }
    }
}

impl Upstream {
    /// The client connection's kept connection to `peer`, else a pooled one
    /// when one is idle, else a new one (connect and TLS timeouts from the
    /// peer's options).
    pub async fn stream(&self, peer: &HttpPeer, kept: Option<&mut Kept>) -> Result<Stream> {
        if let Some(stream) = kept.and_then(|k| k.take_for(peer.reuse_hash())) {
            return Ok(stream);
        }
        if let Some(stream) = self.transport.reused_stream(peer).await {
            return Ok(stream);
        }
        // Boxed: inline, this rarely taken path would make every enclosing
        // future as large as the connect states.
        Box::pin(self.transport.new_stream(peer)).await
    }

    /// Write a whole request on `stream`: `head` (from
    /// `headers::upstream_request_head`) and `body`, in one write when the
    /// body is small (one packet, not a head and then a body). The answer is
    /// read with `answer::Answer::read`.
    pub async fn send(
        mut stream: Stream,
        mut head: Vec<u8>,
        body: &[u8],
        timeout: Duration,
    ) -> Result<Stream> {
        let write = async {
            if body.len() <= ONE_WRITE {
                head.extend_from_slice(body);
                stream.write_all(&head).await?;
            } else {
                stream.write_all(&head).await?;
                stream.write_all(body).await?;
            }
            stream.flush().await
        };
        match pingora_timeout::timeout(timeout, write).await {
            Ok(Ok(())) => Ok(stream),
            Ok(Err(e)) => Err(Error::because(
                ErrorType::WriteError,
                "while writing the request",
                e,
            )),
            Err(_) => Error::e_explain(ErrorType::WriteTimedout, "while writing the request"),
        }
    }

    /// When the exchange left the connection reusable (whole answer read,
    /// keep-alive): kept for the client connection's next request if it has
    /// room, else back to the pool. Else closed.
    pub async fn release(&self, answer: Answer, peer: &HttpPeer, kept: Option<&mut Kept>) {
        let Some(stream) = answer.into_reusable().await else {
            return;
        };
        match kept {
            Some(k) if !k.is_some() => k.0 = Some((peer.reuse_hash(), stream)),
            _ => self
                .transport
                .release_stream(stream, peer.reuse_hash(), Some(POOL_IDLE)),
        }
    }

    /// A kept connection goes to the pool (the client went idle, or away).
    pub fn pool(&self, kept: &mut Kept) {
        if let Some((hash, stream)) = kept.0.take() {
            self.transport.release_stream(stream, hash, Some(POOL_IDLE));
        }
    }
}
