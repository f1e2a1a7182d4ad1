//! The one place an upstream `HttpPeer` is made. AI requests, configured
//! routes and provider passthrough all dial through it, so TLS trust (the
//! provider's `ca_file` and `tls_verify`), SNI, timeouts and the pool key
//! cannot differ between them.

use super::Endpoint;
use crate::tls::UpstreamCa;
use pingora_core::upstreams::peer::HttpPeer;
use std::net::SocketAddr;
use std::time::Duration;

/// How long a pooled upstream connection may sit idle.
pub const POOL_IDLE: Duration = Duration::from_secs(60);

/// How an https upstream is trusted.
#[derive(Clone, Copy)]
pub struct Trust<'a> {
    /// False only with a provider's `tls_verify: false`.
    pub verify: bool,
    /// A provider's `ca_file`: the roots to chain to (else the system's).
    pub ca: Option<&'a UpstreamCa>,
}

impl Trust<'_> {
    /// The system roots, certificate and name verified (a route's own `target`).
    pub const SYSTEM: Trust<'static> = Trust {
        verify: true,
        ca: None,
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
        };
        let p = peer(addr, &ep, off, t());
        assert!(!p.options.verify_cert && !p.options.verify_hostname);
        let plain = Endpoint::parse("http://127.0.0.1:9000/v1").unwrap();
        let p = peer(addr, &plain, Trust::SYSTEM, t());
        assert!(!p.is_tls());
    }
}
