//! The one place an upstream `HttpPeer` is made. AI requests, configured
//! routes and provider passthrough all dial through it, so TLS trust (the
//! provider's `ca_file` and `tls_verify`), the HTTP versions offered (its
//! `http2`), SNI, timeouts and the pool key cannot differ between them.

use super::Endpoint;
use crate::tls::UpstreamCa;
use pingora_core::protocols::ALPN;
use pingora_core::upstreams::peer::HttpPeer;
use std::net::SocketAddr;
use std::time::Duration;

/// How long a pooled upstream connection may sit idle.
pub const POOL_IDLE: Duration = Duration::from_secs(60);

/// How many requests may share one HTTP/2 connection (Pingora's default is
/// 1, which would open a connection per request); the server's own
/// `SETTINGS_MAX_CONCURRENT_STREAMS` still caps it. 100 is the value RFC 9113
/// recommends a server allow at least.
pub const MAX_H2_STREAMS: usize = 100;

/// What is taken on trust about an upstream server: how its TLS is verified,
/// and whether it speaks HTTP/2.
#[derive(Clone, Copy)]
pub struct Trust<'a> {
    /// False only with a provider's `tls_verify: false`.
    pub verify: bool,
    /// A provider's `ca_file`: the roots to chain to (else the system's).
    pub ca: Option<&'a UpstreamCa>,
    /// A provider's `http2: true`. Over TLS, ALPN offers h2 then http/1.1 and
    /// the server picks; over plain http there is nothing to negotiate with,
    /// so it means h2c with prior knowledge (the server must speak it).
    pub http2: bool,
}

impl Trust<'_> {
    /// The system roots, certificate and name verified, HTTP/1.1 (a route's
    /// own `target`).
    pub const SYSTEM: Trust<'static> = Trust {
        verify: true,
        ca: None,
        http2: false,
    };
}

/// The peer's timeouts. `io`: the longest wait for one read or write (routes,
/// whose answer Pingora reads); None where the caller bounds its own reads.
#[derive(Clone, Copy)]
pub struct PeerTimeouts {
    pub connect: Duration,
    pub io: Option<Duration>,
}

/// The peer for `addr`, an address of `ep`: TLS when `ep` is https, SNI and
/// the verified name are its host.
pub fn peer(addr: SocketAddr, ep: &Endpoint, trust: Trust, t: PeerTimeouts) -> HttpPeer {
    let mut peer = HttpPeer::new(addr, ep.tls, ep.host.clone());
    peer.options.connection_timeout = Some(t.connect);
    peer.options.total_connection_timeout = Some(t.connect);
    peer.options.read_timeout = t.io;
    peer.options.write_timeout = t.io;
    peer.options.idle_timeout = Some(POOL_IDLE);
    peer.options.verify_cert = trust.verify;
    peer.options.verify_hostname = trust.verify;
    if let Some(ca) = trust.ca {
        peer.options.ca = Some(ca.certs.clone());
        // The pool key ignores the CA: a connection verified against other
        // roots must not be reused.
        peer.group_key = ca.pool_key;
    }
    if trust.http2 {
        // Pingora's client speaks h2c only when h2 is the least it may use
        // (`ALPN::H2` on a plain peer); with `H2H1` a plain peer stays h1.
        peer.options.alpn = if ep.tls { ALPN::H2H1 } else { ALPN::H2 };
        // Also a different pool key from the HTTP/1.1 peer of the same
        // server, so turning `http2` on or off by reload takes effect at once.
        peer.options.max_h2_streams = MAX_H2_STREAMS;
        // No h2 PING: the AI path bounds a silent upstream by its own first
        // byte and idle timeouts, routes by `io`; and some front ends answer
        // frequent PINGs on an idle connection with GOAWAY.
    }
    peer
}

#[cfg(test)]
mod tests {
    use super::*;
    use pingora_core::upstreams::peer::Peer;
    use std::sync::Arc;

    fn t() -> PeerTimeouts {
        PeerTimeouts {
            connect: Duration::from_millis(700),
            io: Some(Duration::from_secs(9)),
        }
    }

    #[test]
    fn https_peer_takes_the_host_the_trust_and_the_timeouts() {
        let ep = Endpoint::parse("https://llm.internal:8443/v1").unwrap();
        let addr: SocketAddr = "127.0.0.1:8443".parse().unwrap();
        let ca = UpstreamCa {
            certs: Arc::from(Vec::new().into_boxed_slice()),
            pool_key: 77,
        };
        let trust = Trust {
            verify: true,
            ca: Some(&ca),
            http2: false,
        };
        let p = peer(addr, &ep, trust, t());
        assert!(p.is_tls());
        assert_eq!(p.sni(), "llm.internal");
        assert!(p.options.verify_cert && p.options.verify_hostname);
        assert!(p.options.ca.is_some());
        assert_eq!(p.group_key, 77);
        assert_eq!(
            p.options.connection_timeout,
            Some(Duration::from_millis(700))
        );
        assert_eq!(
            p.options.total_connection_timeout,
            Some(Duration::from_millis(700))
        );
        assert_eq!(p.options.read_timeout, Some(Duration::from_secs(9)));
        assert_eq!(p.options.write_timeout, Some(Duration::from_secs(9)));
        assert_eq!(p.options.idle_timeout, Some(POOL_IDLE));
        assert_eq!(p.options.alpn, ALPN::H1);
        // Other roots: another pool key, so no connection is shared.
        let sys = peer(addr, &ep, Trust::SYSTEM, t());
        assert_ne!(sys.reuse_hash(), p.reuse_hash());
        assert!(sys.options.ca.is_none());
    }

    #[test]
    fn tls_verify_false_turns_both_checks_off_and_plain_http_has_no_tls() {
        let ep = Endpoint::parse("https://127.0.0.1:9443").unwrap();
        let addr: SocketAddr = "127.0.0.1:9443".parse().unwrap();
        let off = Trust {
            verify: false,
            ca: None,
            http2: false,
        };
        let p = peer(addr, &ep, off, t());
        assert!(!p.options.verify_cert && !p.options.verify_hostname);
        let plain = Endpoint::parse("http://127.0.0.1:9000/v1").unwrap();
        let p = peer(addr, &plain, Trust::SYSTEM, t());
        assert!(!p.is_tls());
    }

    #[test]
    fn http2_offers_h2_then_h1_over_tls_and_h2c_over_plain_http() {
        let addr: SocketAddr = "127.0.0.1:8443".parse().unwrap();
        let h2 = Trust {
            http2: true,
            ..Trust::SYSTEM
        };
        let tls = Endpoint::parse("https://llm.internal:8443/v1").unwrap();
        let p = peer(addr, &tls, h2, t());
        assert_eq!(p.options.alpn, ALPN::H2H1);
        assert_eq!(p.options.max_h2_streams, MAX_H2_STREAMS);
        assert_eq!(p.options.h2_ping_interval, None);
        // The same server without http2: HTTP/1.1 only, in another pool.
        let h1 = peer(addr, &tls, Trust::SYSTEM, t());
        assert_eq!(h1.options.alpn, ALPN::H1);
        assert_eq!(h1.options.max_h2_streams, 1);
        assert_ne!(h1.reuse_hash(), p.reuse_hash());
        // Plain http: h2 is the least (prior knowledge), Pingora's h2c.
        let plain = Endpoint::parse("http://127.0.0.1:9000/v1").unwrap();
        let p = peer(addr, &plain, h2, t());
        assert!(!p.is_tls());
        assert_eq!(p.options.alpn, ALPN::H2);
        assert_eq!(p.options.alpn.get_min_http_version(), 2);
    }
}
