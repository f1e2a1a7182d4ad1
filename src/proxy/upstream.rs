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
use pingora_core::connectors::TransportConnector;
use pingora_core::protocols::Stream;
use pingora_core::upstreams::peer::{HttpPeer, Peer};
use pingora_core::{Error, ErrorType, Result};
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// Bodies up to this size leave in the same write as the head.
const ONE_WRITE: usize = 64 * 1024;

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
    /// A pooled connection to `peer` when one is idle, else a new one
    /// (connect and TLS timeouts from the peer's options).
    pub async fn stream(&self, peer: &HttpPeer) -> Result<Stream> {
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

    /// Back to the pool when the exchange left the connection reusable
    /// (whole answer read, keep-alive), else closed.
    pub async fn release(&self, answer: Answer, peer: &HttpPeer, idle: Option<Duration>) {
        if let Some(stream) = answer.into_reusable().await {
            self.transport
                .release_stream(stream, peer.reuse_hash(), idle);
        }
    }
}
