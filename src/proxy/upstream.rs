//! Upstream connections for the AI routes: pingora-core's pooled HTTP/1.1
//! connector, asked for a pooled connection before it is asked to connect.
//!
//! Why not `connectors::http::Connector::get_http_session`: that one future
//! holds every state of a new connection (TCP, TLS handshake, h2 set-up),
//! ~9 KB, and it is built and boxed (a ~9 KB copy) on every request, also
//! when the pool has a connection ready. Looking in the pool first is a
//! ~200-byte future; the connecting one is built only when the pool is empty.
//!
//! Every provider peer is HTTP/1.1 (no ALPN is offered upstream), so the
//! HTTP/1 connector and its pool are the whole story.

use pingora_core::connectors::http::v1::Connector;
use pingora_core::protocols::http::client::HttpSession;
use pingora_core::protocols::http::v1::client::HttpSession as H1;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_core::{Error, ErrorType, Result};
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// Bodies up to this size leave in the same write as the head.
const ONE_WRITE: usize = 64 * 1024;

pub struct Upstream {
    h1: Connector,
}

impl Default for Upstream {
    fn default() -> Self {
        Upstream {
            h1: Connector::new(None),
        }
    }
}

impl Upstream {
    /// A pooled connection to `peer` when one is idle, else a new one
    /// (connect and TLS timeouts from the peer's options).
    pub async fn session(&self, peer: &HttpPeer) -> Result<HttpSession> {
        if let Some(h1) = self.h1.reused_http_session(peer).await {
            return Ok(HttpSession::H1(h1));
        }
        // Boxed: inline, this rarely taken path would make every enclosing
        // future as large as the connect states.
        let (h1, _) = Box::pin(self.h1.get_http_session(peer)).await?;
        Ok(HttpSession::H1(h1))
    }

    /// Write a whole request on `session`'s connection: `head` (from
    /// `headers::upstream_request_head`) and `body`, in one write when the
    /// body is small. Pingora's client flushes the head by itself, so the
    /// upstream got two packets per request, and the gateway and the
    /// upstream each paid for both. Returns a session that reads the answer.
    ///
    /// The returned session has no record of the request; that only matters
    /// for HEAD, upgrades and `Connection: close` requests, none of which the
    /// AI routes send.
    pub async fn send(
        session: HttpSession,
        peer: &HttpPeer,
        mut head: Vec<u8>,
        body: &[u8],
        timeout: Duration,
    ) -> Result<HttpSession> {
        let HttpSession::H1(h1) = session else {
            return Error::e_explain(ErrorType::InternalError, "upstream session is not HTTP/1");
        };
        let mut stream = h1.into_inner();
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
        match session {
            HttpSession::H1(h1) => self.h1.release_http_session(h1, peer, idle).await,
            mut other => other.shutdown().await,
        }
    }
}
