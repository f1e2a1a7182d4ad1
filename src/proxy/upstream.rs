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
//! Every provider peer is HTTP/1.1 (no ALPN is offered upstream), so the
//! pooled streams and pingora's HTTP/1 client session (which reads and frames
//! the answer) are the whole story.

use pingora_core::connectors::TransportConnector;
use pingora_core::protocols::Stream;
use pingora_core::protocols::http::client::HttpSession;
use pingora_core::protocols::http::v1::client::HttpSession as H1;
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
    /// body is small. Pingora's client flushes the head by itself, so the
    /// upstream got two packets per request, and the gateway and the
    /// upstream each paid for both. Returns a session that reads the answer.
    ///
    /// The returned session has no record of the request; that only matters
    /// for HEAD, upgrades and `Connection: close` requests, none of which the
    /// AI routes send.
    pub async fn send(
        mut stream: Stream,
        peer: &HttpPeer,
        mut head: Vec<u8>,
        body: &[u8],
        timeout: Duration,
    ) -> Result<HttpSession> {
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
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                return Err(Error::because(
                    ErrorType::WriteError,
                    "while writing the request",
                    e,
                ));
            }
            Err(_) => {
                return Error::e_explain(ErrorType::WriteTimedout, "while writing the request");
            }
        }
        Ok(HttpSession::H1(H1::new_with_options(stream, peer)))
    }

    /// Back to the pool when the exchange left the connection reusable
    /// (whole answer read, keep-alive), else closed.
    pub async fn release(&self, session: HttpSession, peer: &HttpPeer, idle: Option<Duration>) {
        // As pingora's `Connector::release_http_session`.
        match session {
            HttpSession::H1(mut h1) => {
                h1.respect_keepalive();
                if let Some(stream) = h1.reuse().await {
                    self.transport
                        .release_stream(stream, peer.reuse_hash(), idle);
                }
            }
            mut other => other.shutdown().await,
        }
    }
}
