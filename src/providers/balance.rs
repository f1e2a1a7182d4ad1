//! A host's addresses as a pingora-load-balancing `LoadBalancer`: discovery
//! resolves the host, the provider's TCP/TLS check marks each address healthy
//! or not, and round-robin selection picks the next address for an attempt.
//! Providers and configured routes' targets both dial through one of these.

use super::Endpoint;
use super::peer::{self, PeerTimeouts, Trust};
use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora_core::protocols::l4::socket::SocketAddr as L4Addr;
use pingora_load_balancing::discovery::ServiceDiscovery;
use pingora_load_balancing::health_check::TcpHealthCheck;
use pingora_load_balancing::selection::RoundRobin;
use pingora_load_balancing::{Backend, LoadBalancer};
use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often a resolved host is resolved again.
const REFRESH: Duration = Duration::from_secs(60);
/// How soon an unresolved host is tried again.
const RETRY: Duration = Duration::from_secs(5);

/// A provider's `health_check`: how often, and the connect timeout.
#[derive(Clone, Copy)]
pub struct CheckSpec {
    pub interval: Duration,
    pub timeout: Duration,
}

/// The addresses of one `Endpoint`, their health and the picker.
pub struct Balancer {
    lb: LoadBalancer<RoundRobin>,
    /// When the next discovery (re-resolution) and health check are due.
    due: Mutex<Due>,
}

struct Due {
    update: Instant,
    check: Option<Instant>,
}

impl Balancer {
    /// Addresses `seed` (resolved at load, off the request path) for `ep`;
    /// with `check`, the TCP (TLS for https) check dials each address with
    /// the options of the peer requests use (`providers::peer`).
    pub fn new(
        ep: &Endpoint,
        seed: Vec<SocketAddr>,
        trust: Trust,
        check: Option<CheckSpec>,
    ) -> Balancer {
        let discovery = HostDiscovery {
            host: ep.host.clone(),
            port: ep.port,
            known: ArcSwap::from_pointee(preferred(seed)),
            seeded: AtomicBool::new(true),
        };
        let backends = pingora_load_balancing::Backends::new(Box::new(discovery));
        let mut lb = LoadBalancer::<RoundRobin>::from_backends(backends);
        lb.update_frequency = Some(REFRESH);
        if let Some(c) = check {
            lb.set_health_check(tcp_check(ep, trust, c.timeout));
            lb.health_check_frequency = Some(c.interval);
            // Addresses of one provider are dialled at once: a dead one costs
            // its timeout, not the sum of them.
            lb.parallel_health_check = true;
        }
        // The first discovery returns the seed without awaiting: one poll
        // fills the balancer, here where no runtime may run yet.
        let waker = std::task::Waker::noop();
        let filled = std::pin::pin!(lb.update())
            .poll(&mut std::task::Context::from_waker(waker))
            .is_ready();
        debug_assert!(filled, "the seeded discovery awaited");
        let now = Instant::now();
        Balancer {
            lb,
            due: Mutex::new(Due {
                update: now + REFRESH,
                check: check.map(|_| now),
            }),
        }
    }

    /// The addresses known now (empty while the host does not resolve).
    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.lb
            .backends()
            .get_backend()
            .iter()
            .filter_map(inet)
            .collect()
    }

    /// Each address known now with its state: true while it passes its
    /// check (always when unchecked).
    pub fn health(&self) -> Vec<(SocketAddr, bool)> {
        let b = self.lb.backends();
        let all = b.get_backend();
        all.iter()
            .filter_map(|x| Some((inet(x)?, b.ready(x))))
            .collect()
    }

    pub fn is_resolved(&self) -> bool {
        !self.lb.backends().get_backend().is_empty()
    }

    /// At least one address passed its last check (all do when unchecked).
    pub fn any_healthy(&self) -> bool {
        let b = self.lb.backends();
        b.get_backend().iter().any(|x| b.ready(x))
    }

    /// The address for an attempt, round-robin: a healthy one not `tried` in
    /// this request; else a healthy one again (every healthy address failed
    /// this request: start over); else an unhealthy one not tried (no address
    /// passes its check: one is tried anyway, as a provider out of health is
    /// when it is the only candidate); else any. None: not resolved.
    pub fn pick(&self, tried: &[SocketAddr]) -> Option<SocketAddr> {
        let fresh = |b: &Backend| inet(b).is_some_and(|a| !tried.contains(&a));
        self.first(|b, healthy| healthy && fresh(b))
            .or_else(|| self.first(|_, healthy| healthy))
            .or_else(|| self.first(|b, _| fresh(b)))
            .or_else(|| self.first(|_, _| true))
            .as_ref()
            .and_then(inet)
    }

    /// pingora's round-robin selection with `accept`. Its iterator draws each
    /// next index from the shared counter, which concurrent requests also
    /// advance, so it can run out of steps before seeing every address: then
    /// the membership is scanned in order, and an acceptable address is
    /// always found when there is one.
    fn first(&self, accept: impl Fn(&Backend, bool) -> bool) -> Option<Backend> {
        let b = self.lb.backends();
        let all = b.get_backend();
        self.lb
            .select_with(b"", 2 * all.len() + 2, &accept)
            .or_else(|| all.iter().find(|x| accept(x, b.ready(x))).cloned())
    }

    /// Re-resolves the host and runs the health check when they are due:
    /// resolution each minute (every 5 s while unresolved), the check at the
    /// provider's interval. True when a check ran.
    pub async fn refresh(&self) -> bool {
        let now = Instant::now();
        let (update, check) = {
            let d = self.due.lock().unwrap_or_else(|e| e.into_inner());
            (d.update <= now, d.check.is_some_and(|t| t <= now))
        };
        if update {
            if let Err(e) = self.lb.update().await {
                log::debug!("address refresh: {e}");
            }
            let wait = if self.is_resolved() {
                self.lb.update_frequency.unwrap_or(REFRESH)
            } else {
                RETRY
            };
            self.due.lock().unwrap_or_else(|e| e.into_inner()).update = now + wait;
        }
        if check {
            self.lb
                .backends()
                .run_health_check(self.lb.parallel_health_check)
                .await;
            let next = now + self.lb.health_check_frequency.unwrap_or(REFRESH);
            self.due.lock().unwrap_or_else(|e| e.into_inner()).check = Some(next);
        }
        check
    }
}

/// The TCP (TLS for https) check, connecting and verifying the certificate
/// as requests do: the options of the peer builder's peer.
fn tcp_check(ep: &Endpoint, trust: Trust, timeout: Duration) -> Box<TcpHealthCheck> {
    let mut check = if ep.tls {
        TcpHealthCheck::new_tls(&ep.host)
    } else {
        TcpHealthCheck::new()
    };
    let t = PeerTimeouts {
        connect: timeout,
        io: None,
    };
    let like = peer::peer(SocketAddr::from(([0, 0, 0, 0], ep.port)), ep, trust, t);
    check.peer_template.options = like.options;
    check
}

fn inet(b: &Backend) -> Option<SocketAddr> {
    match b.addr {
        L4Addr::Inet(a) => Some(a),
        _ => None,
    }
}

/// Discovery by name: the host's addresses from the system resolver. A failed
/// lookup keeps the addresses known before (a DNS blip does not empty a
/// provider); an IP literal is its own address.
struct HostDiscovery {
    host: String,
    port: u16,
    known: ArcSwap<Vec<SocketAddr>>,
    /// The first discovery returns the addresses resolved at load, so the
    /// balancer is filled before any request without awaiting a lookup.
    seeded: AtomicBool,
}

#[async_trait]
impl ServiceDiscovery for HostDiscovery {
    async fn discover(&self) -> pingora_core::Result<(BTreeSet<Backend>, HashMap<u64, bool>)> {
        let literal = self.host.parse::<std::net::IpAddr>().is_ok();
        if !self.seeded.swap(false, Ordering::Relaxed) && !literal {
            match tokio::net::lookup_host((self.host.as_str(), self.port)).await {
                Ok(a) => {
                    let addrs = preferred(a.collect());
                    if !addrs.is_empty() {
                        self.known.store(Arc::new(addrs));
                    }
                }
                Err(e) => log::debug!("dns refresh for {}: {e}", self.host),
            }
        }
        let set = self.known.load().iter().map(|a| backend(*a)).collect();
        Ok((set, HashMap::new()))
    }
}

/// The addresses of the family the resolver lists first. The system resolver
/// orders them by reachability (RFC 6724: IPv6 last on a host without an IPv6
/// route), so round-robin over both families would send part of the traffic
/// to addresses this host cannot reach.
fn preferred(mut addrs: Vec<SocketAddr>) -> Vec<SocketAddr> {
    if let Some(v4) = addrs.first().map(SocketAddr::is_ipv4) {
        addrs.retain(|a| a.is_ipv4() == v4);
    }
    addrs
}

fn backend(a: SocketAddr) -> Backend {
    Backend {
        addr: L4Addr::Inet(a),
        weight: 1,
        ext: Default::default(),
    }
}

/// Resolve `host:port` with the system resolver (blocking: call off the request path).
pub fn resolve(host: &str, port: u16) -> Vec<SocketAddr> {
    use std::net::ToSocketAddrs;
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return vec![SocketAddr::new(ip, port)];
    }
    match (host, port).to_socket_addrs() {
        Ok(a) => a.collect(),
        Err(e) => {
            log::warn!("could not resolve {host}:{port}: {e}; will retry in the background");
            vec![]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep() -> Endpoint {
        Endpoint::parse("http://[::1]:9").unwrap()
    }

    fn addrs(n: u16) -> Vec<SocketAddr> {
        (1..=n)
            .map(|i| SocketAddr::from(([127, 0, 0, i as u8], 9)))
            .collect()
    }

    fn unchecked(seed: Vec<SocketAddr>) -> Balancer {
        Balancer::new(&ep(), seed, Trust::SYSTEM, None)
    }

    #[test]
    fn the_seed_is_there_before_any_lookup() {
        let b = unchecked(addrs(3));
        assert_eq!(b.addrs(), addrs(3));
        assert!(b.is_resolved() && b.any_healthy());
        let empty = unchecked(vec![]);
        assert!(!empty.is_resolved() && !empty.any_healthy());
        assert_eq!(empty.pick(&[]), None);
    }

    #[test]
    fn only_the_family_the_resolver_lists_first_is_kept() {
        let v6: SocketAddr = "[2001:db8::1]:9".parse().unwrap();
        let mut mixed = addrs(2);
        mixed.insert(1, v6);
        assert_eq!(unchecked(mixed.clone()).addrs(), addrs(2));
        mixed.rotate_left(1);
        assert_eq!(unchecked(mixed).addrs(), vec![v6]);
    }

    #[test]
    fn picks_rotate_over_every_address() {
        let b = unchecked(addrs(3));
        let mut seen: Vec<_> = (0..3).map(|_| b.pick(&[]).unwrap()).collect();
        seen.sort();
        assert_eq!(
            seen,
            addrs(3),
            "three picks in a row did not cover three addresses"
        );
    }

    #[test]
    fn addresses_tried_in_this_request_are_skipped_then_wrapped() {
        let b = unchecked(addrs(3));
        let mut tried = vec![];
        for _ in 0..3 {
            let a = b.pick(&tried).unwrap();
            assert!(
                !tried.contains(&a),
                "{a} picked twice before all were tried"
            );
            tried.push(a);
        }
        // Every address failed: start over rather than give up.
        assert!(b.pick(&tried).is_some());
        // One left untried: always that one, whatever the round-robin position.
        let last = addrs(3)[1];
        let others: Vec<_> = addrs(3).into_iter().filter(|a| *a != last).collect();
        for _ in 0..5 {
            assert_eq!(b.pick(&others), Some(last));
        }
    }

    #[test]
    fn unhealthy_addresses_are_skipped_while_a_healthy_one_is_left() {
        let b = unchecked(addrs(3));
        let [a, down, c] = addrs(3)[..] else {
            unreachable!()
        };
        b.lb.backends().set_enable(&backend(down), false);
        assert!(b.any_healthy());
        for _ in 0..6 {
            assert_ne!(b.pick(&[]), Some(down), "an unhealthy address was picked");
        }
        // Both healthy ones failed this request: a healthy one again, not the dead one.
        let again = b.pick(&[a, c]).unwrap();
        assert!(again == a || again == c);
        // None healthy: an untried one anyway, then any.
        for x in [a, c] {
            b.lb.backends().set_enable(&backend(x), false);
        }
        assert!(!b.any_healthy());
        assert_eq!(b.pick(&[a, c]), Some(down));
        assert!(b.pick(&[a, c, down]).is_some());
    }

    #[tokio::test]
    async fn a_refused_address_fails_its_check_and_a_listening_one_passes() {
        let up = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let live = up.local_addr().unwrap();
        // Bound then dropped: nothing listens there.
        let dead = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let ep = Endpoint::parse(&format!("http://127.0.0.1:{}", live.port())).unwrap();
        let spec = CheckSpec {
            interval: Duration::from_secs(3600),
            timeout: Duration::from_millis(500),
        };
        let b = Balancer::new(&ep, vec![live, dead], Trust::SYSTEM, Some(spec));
        assert!(b.refresh().await, "the first check was not due at once");
        assert!(!b.refresh().await, "the next check is an interval away");
        assert!(b.any_healthy());
        for _ in 0..4 {
            assert_eq!(b.pick(&[]), Some(live));
        }
        drop(up);
        let all_dead = Balancer::new(&ep, vec![dead], Trust::SYSTEM, Some(spec));
        all_dead.refresh().await;
        assert!(!all_dead.any_healthy());
        assert_eq!(
            all_dead.pick(&[]),
            Some(dead),
            "no healthy address: tried anyway"
        );
    }
}
