//! The Redis limit store against a real `redis-server` (started here on a free
//! loopback port; a missing binary fails the tests). Two `RedisLimits` values
//! on one server stand for two gateway nodes. Tests run one at a time (each on
//! its own runtime): they read process-wide metrics and logs.

mod redis_server;

use std::future::Future;
use std::sync::{Mutex, MutexGuard, Once};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aigate::limits::redis::{Admit, Health, RedisLimits, StoreError};
use aigate::metrics::METRICS;
use redis_server::{RedisServer, free_port};
use tokio::task::JoinSet;

static SERIAL: Mutex<()> = Mutex::new(());

/// Taken first by every test, before it picks ports and starts servers (a
/// port freed by one test must not be picked by another meanwhile).
fn serial() -> MutexGuard<'static, ()> {
    let g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    capture_logs();
    g
}

fn run<F: Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// Every log line of the process, to count the outage warnings.
static LOGS: Mutex<Vec<String>> = Mutex::new(Vec::new());

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, m: &log::Metadata) -> bool {
        m.level() <= log::Level::Warn
    }
    fn log(&self, r: &log::Record) {
        if self.enabled(r.metadata()) {
            LOGS.lock().unwrap_or_else(|e| e.into_inner()).push(format!(
                "{} {}",
                r.level(),
                r.args()
            ));
        }
    }
    fn flush(&self) {}
}

fn capture_logs() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        log::set_boxed_logger(Box::new(Capture)).unwrap();
        log::set_max_level(log::LevelFilter::Warn);
    });
}

fn log_lines_with(a: &str, b: &str) -> usize {
    LOGS.lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .filter(|l| l.contains(a) && l.contains(b))
        .count()
}

fn node(url: &str, prefix: &str) -> RedisLimits {
    // Generous for the correctness tests: the machine is small and shared.
    RedisLimits::new(url, prefix)
        .unwrap()
        .with_timeout(Duration::from_secs(2))
}

fn yes(a: Admit) -> (u64, u64, u64) {
    match a {
        Admit::Yes {
            remaining,
            reset_ms,
            ticket,
        } => (remaining, reset_ms, ticket),
        other => panic!("expected Yes, got {other:?}"),
    }
}

fn no(a: Admit) -> (u64, u64) {
    match a {
        Admit::No {
            remaining,
            retry_after_ms,
        } => (remaining, retry_after_ms),
        other => panic!("expected No, got {other:?}"),
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn backend_up() -> i64 {
    METRICS
        .limits_backend_up
        .with_label_values(&["redis"])
        .get()
}

fn backend_errors() -> u64 {
    ["timeout", "connection", "server", "down"]
        .iter()
        .map(|k| {
            METRICS
                .limits_backend_errors
                .with_label_values(&["redis", k])
                .get()
        })
        .sum()
}

#[test]
fn window_admits_exactly_the_limit_across_two_nodes() {
    let _serial = serial();
    let srv = RedisServer::start();
    run(async {
        let (a, b) = (node(&srv.url(), "t1:"), node(&srv.url(), "t1:"));
        let mut tasks = JoinSet::new();
        for i in 0..200 {
            let s = if i % 2 == 0 { a.clone() } else { b.clone() };
            tasks.spawn(async move { s.window_take("key:team-a:rpm", 60_000, 1, 50).await });
        }
        let mut remaining_seen = Vec::new();
        let mut refused = 0;
        while let Some(r) = tasks.join_next().await {
            match r.unwrap().unwrap() {
                Admit::Yes {
                    remaining,
                    reset_ms,
                    ..
                } => {
                    assert_eq!(reset_ms, 60_000);
                    remaining_seen.push(remaining);
                }
                Admit::No {
                    remaining,
                    retry_after_ms,
                } => {
                    assert_eq!(remaining, 0);
                    assert!((1..=60_000).contains(&retry_after_ms), "{retry_after_ms}");
                    refused += 1;
                }
            }
        }
        assert_eq!(remaining_seen.len(), 50, "exactly the limit admitted");
        assert_eq!(refused, 150);
        // Each take saw the one before it: every remaining count exactly once.
        remaining_seen.sort();
        assert_eq!(remaining_seen, (0..50).collect::<Vec<u64>>());

        // Token-sized amounts: 100 takes of 7 against 100 -> 14 fit (98).
        let mut tasks = JoinSet::new();
        for i in 0..100 {
            let s = if i % 2 == 0 { a.clone() } else { b.clone() };
            tasks.spawn(async move { s.window_take("key:team-a:tpm", 60_000, 7, 100).await });
        }
        let mut admitted = 0;
        while let Some(r) = tasks.join_next().await {
            if matches!(r.unwrap().unwrap(), Admit::Yes { .. }) {
                admitted += 1;
            }
        }
        assert_eq!(admitted, 14);
        let (rem, _) = no(a
            .window_take("key:team-a:tpm", 60_000, 3, 100)
            .await
            .unwrap());
        assert_eq!(rem, 2);
        assert_eq!(a.health(), Health::Up);
    });
}

#[test]
fn window_slides_and_reopens_after_its_length() {
    let _serial = serial();
    let srv = RedisServer::start();
    run(async {
        let (a, b) = (node(&srv.url(), "t2:"), node(&srv.url(), "t2:"));
        let w = |s: &RedisLimits, amount| {
            let s = s.clone();
            async move { s.window_take("global:rpm", 1000, amount, 2).await.unwrap() }
        };
        assert_eq!(yes(w(&a, 1).await).0, 1);
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(yes(w(&b, 1).await).0, 0);
        let (rem, retry) = no(w(&a, 1).await);
        assert_eq!(rem, 0);
        // The first entry leaves 1000 ms after it came, ~500 ms from now.
        assert!((1..=500).contains(&retry), "{retry}");
        tokio::time::sleep(Duration::from_millis(retry + 50)).await;
        yes(w(&b, 1).await);
        // The second entry (taken at ~500 ms) still counts: a sliding window,
        // not a bucket that empties at once.
        let (_, retry) = no(w(&a, 1).await);
        assert!(retry <= 500, "{retry}");
        tokio::time::sleep(Duration::from_millis(1100)).await;
        assert_eq!(yes(w(&a, 2).await).0, 0, "the whole window is free again");
    });
}

#[test]
fn adjust_corrects_a_reservation_from_any_node() {
    let _serial = serial();
    let srv = RedisServer::start();
    run(async {
        let (a, b) = (node(&srv.url(), "t3:"), node(&srv.url(), "t3:"));
        let name = "key:team-a:tpm";
        let (rem, _, t) = yes(a.window_take(name, 60_000, 800, 1000).await.unwrap());
        assert_eq!(rem, 200);
        assert_eq!(
            no(b.window_take(name, 60_000, 300, 1000).await.unwrap()).0,
            200
        );
        // The answer used 200, not 800; the other node reconciles.
        b.window_adjust(name, 60_000, t, -600).await.unwrap();
        assert_eq!(
            yes(a.window_take(name, 60_000, 300, 1000).await.unwrap()).0,
            500
        );
        let (_, _, big) = yes(a.window_take(name, 60_000, 500, 1000).await.unwrap());
        // A failed request gives its whole reservation back.
        a.window_adjust(name, 60_000, big, -500).await.unwrap();
        assert_eq!(
            yes(b.window_take(name, 60_000, 500, 1000).await.unwrap()).0,
            0
        );
        // Usage above the estimate counts too (and never below zero).
        a.window_adjust(name, 60_000, t, 100).await.unwrap();
        assert_eq!(no(a.window_take(name, 60_000, 1, 1000).await.unwrap()).0, 0);
        a.window_adjust(name, 60_000, t, -1_000_000).await.unwrap();
        assert_eq!(
            yes(a.window_take(name, 60_000, 200, 1000).await.unwrap()).0,
            0
        );
        // Unknown tickets are ignored.
        a.window_adjust(name, 60_000, 12345, -1000).await.unwrap();
        assert_eq!(no(a.window_take(name, 60_000, 1, 1000).await.unwrap()).0, 0);
        // More than the limit never fits: retry after a whole window.
        let (_, retry) = no(a.window_take("other", 60_000, 2000, 1000).await.unwrap());
        assert_eq!(retry, 60_000);

        // An entry that has left the window is left alone.
        let (_, _, t2) = yes(a.window_take("short", 200, 5, 10).await.unwrap());
        tokio::time::sleep(Duration::from_millis(250)).await;
        a.window_adjust("short", 200, t2, 100).await.unwrap();
        assert_eq!(yes(b.window_take("short", 200, 10, 10).await.unwrap()).0, 0);
    });
}

#[test]
fn slots_cap_concurrency_across_nodes_and_expire() {
    let _serial = serial();
    let srv = RedisServer::start();
    run(async {
        let (a, b) = (node(&srv.url(), "t4:"), node(&srv.url(), "t4:"));
        let n = "key:team-a:concurrent";
        let l1 = a.slot_acquire(n, 3, 60_000).await.unwrap().unwrap();
        let _l2 = b.slot_acquire(n, 3, 60_000).await.unwrap().unwrap();
        let _l3 = a.slot_acquire(n, 3, 60_000).await.unwrap().unwrap();
        assert_eq!(b.slot_acquire(n, 3, 60_000).await.unwrap(), None);
        b.slot_release(n, l1).await.unwrap(); // released by the other node
        assert!(b.slot_acquire(n, 3, 60_000).await.unwrap().is_some());
        assert_eq!(a.slot_acquire(n, 3, 60_000).await.unwrap(), None);

        // Many at once: exactly `max` get in.
        let mut tasks = JoinSet::new();
        for i in 0..40 {
            let s = if i % 2 == 0 { a.clone() } else { b.clone() };
            tasks.spawn(async move { s.slot_acquire("global:concurrent", 10, 60_000).await });
        }
        let mut leases = Vec::new();
        while let Some(r) = tasks.join_next().await {
            leases.extend(r.unwrap().unwrap());
        }
        assert_eq!(leases.len(), 10);
        for l in &leases {
            a.slot_release("global:concurrent", *l).await.unwrap();
        }
        for _ in 0..10 {
            assert!(
                b.slot_acquire("global:concurrent", 10, 60_000)
                    .await
                    .unwrap()
                    .is_some()
            );
        }

        // A node that dies without releasing: its lease runs out.
        let dead = a.slot_acquire("lease", 1, 300).await.unwrap().unwrap();
        assert_eq!(b.slot_acquire("lease", 1, 300).await.unwrap(), None);
        tokio::time::sleep(Duration::from_millis(350)).await;
        let l = b.slot_acquire("lease", 1, 300).await.unwrap().unwrap();
        a.slot_release("lease", dead).await.unwrap(); // late release: harmless
        assert_eq!(a.slot_acquire("lease", 1, 300).await.unwrap(), None);
        b.slot_release("lease", l).await.unwrap();
        assert!(a.slot_acquire("lease", 1, 300).await.unwrap().is_some());
    });
}

#[test]
fn counters_honour_the_limit_and_expire_at_the_period_end() {
    let _serial = serial();
    let srv = RedisServer::start();
    run(async {
        let (a, b) = (node(&srv.url(), "t5:"), node(&srv.url(), "t5:"));
        let n = "key:team-a:usd:day:2026-11-23";
        let end = now_ms() + 800;
        let (rem, reset, _) = yes(a.counter_take(n, end, 5, 10).await.unwrap());
        assert_eq!(rem, 5);
        assert!((1..=800).contains(&reset), "{reset}");
        let (rem, retry) = no(b.counter_take(n, end, 6, 10).await.unwrap());
        assert_eq!(rem, 5);
        assert!((1..=800).contains(&retry), "{retry}");
        // Reconcile: the real cost was 3 less than reserved.
        b.counter_add(n, end, -3).await.unwrap();
        assert_eq!(yes(a.counter_take(n, end, 6, 10).await.unwrap()).0, 2);
        a.counter_add(n, end, 4).await.unwrap();
        assert_eq!(no(a.counter_take(n, end, 1, 10).await.unwrap()).0, 0);
        a.counter_add(n, end, -100).await.unwrap(); // never below zero
        assert_eq!(yes(b.counter_take(n, end, 10, 10).await.unwrap()).0, 0);
        // The period ends: the counter is gone.
        tokio::time::sleep(Duration::from_millis(end.saturating_sub(now_ms()) + 100)).await;
        assert_eq!(yes(a.counter_take(n, end, 10, 10).await.unwrap()).0, 0);

        // Many at once across nodes: 30 takes of 1 against 12.
        let mut tasks = JoinSet::new();
        let end = now_ms() + 60_000;
        for i in 0..30 {
            let s = if i % 2 == 0 { a.clone() } else { b.clone() };
            tasks.spawn(async move { s.counter_take("key:b:usd:month", end, 1, 12).await });
        }
        let mut admitted = 0;
        while let Some(r) = tasks.join_next().await {
            admitted += matches!(r.unwrap().unwrap(), Admit::Yes { .. }) as u32;
        }
        assert_eq!(admitted, 12);
    });
}

#[test]
fn every_key_has_a_ttl() {
    let _serial = serial();
    let srv = RedisServer::start();
    run(async {
        let a = node(&srv.url(), "t6:");
        let end = now_ms() + 3_600_000;
        let (_, _, t) = yes(a.window_take("w", 60_000, 5, 10).await.unwrap());
        a.window_adjust("w", 60_000, t, 1).await.unwrap();
        a.slot_acquire("s", 2, 30_000).await.unwrap().unwrap();
        yes(a.counter_take("c", end, 1, 10).await.unwrap());
        a.counter_add("d", end, 3).await.unwrap();
        // A period already over by Redis' clock (the node's clock is behind):
        // the counter still lives a short grace, not forever, not zero.
        yes(a
            .counter_take("late", now_ms() - 5_000, 1, 10)
            .await
            .unwrap());

        let mut raw = redis::Client::open(srv.url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let mut keys: Vec<String> = redis::cmd("KEYS")
            .arg("t6:*")
            .query_async(&mut raw)
            .await
            .unwrap();
        keys.sort();
        assert_eq!(
            keys,
            [
                "t6:{c}:c",
                "t6:{d}:c",
                "t6:{late}:c",
                "t6:{s}:s",
                "t6:{w}:wa",
                "t6:{w}:wt"
            ]
        );
        for k in &keys {
            let pttl: i64 = redis::cmd("PTTL")
                .arg(k)
                .query_async(&mut raw)
                .await
                .unwrap();
            let max = match k.as_str() {
                "t6:{c}:c" | "t6:{d}:c" => 3_600_000,
                "t6:{late}:c" => 60_000,
                "t6:{s}:s" => 30_000,
                _ => 60_000,
            };
            assert!(pttl > 0 && pttl <= max, "{k}: PTTL {pttl}");
        }
    });
}

#[test]
fn killed_redis_fails_fast_and_comes_back_on_the_same_port() {
    let _serial = serial();
    let srv = RedisServer::start();
    let port = srv.port;
    run(async move {
        let s = RedisLimits::new(&srv.url(), "t7:").unwrap(); // default 50 ms timeout
        let timeout = s.timeout();
        assert_eq!(timeout, Duration::from_millis(50));
        let addr = s.addr().to_string();
        yes(s.window_take("w", 60_000, 1, 100).await.unwrap());
        assert_eq!(s.health(), Health::Up);
        assert_eq!(backend_up(), 1);
        let errors_before = backend_errors();

        srv.kill();
        let t0 = Instant::now();
        let e = s.window_take("w", 60_000, 1, 100).await.unwrap_err();
        assert!(
            t0.elapsed() <= timeout + Duration::from_millis(100),
            "{e:?} after {:?}",
            t0.elapsed()
        );
        assert_eq!(s.health(), Health::Down);
        assert_eq!(backend_up(), 0);
        // While down every operation fails at once, without waiting.
        let t0 = Instant::now();
        let mut unavailable = 0;
        for i in 0..100u64 {
            let r = match i % 5 {
                0 => s.window_take("w", 60_000, 1, 100).await.map(|_| ()),
                1 => s.window_adjust("w", 60_000, 1, 1).await,
                2 => s.slot_acquire("s", 1, 1000).await.map(|_| ()),
                3 => s
                    .counter_take("c", now_ms() + 1000, 1, 10)
                    .await
                    .map(|_| ()),
                _ => s.counter_add("c", now_ms() + 1000, 1).await,
            };
            unavailable += (r.unwrap_err() == StoreError::Unavailable) as u32;
        }
        assert!(
            t0.elapsed() < timeout * 4,
            "100 calls while down took {:?}",
            t0.elapsed()
        );
        assert!(unavailable >= 90, "{unavailable} of 100 failed fast");
        assert!(backend_errors() > errors_before);
        assert_eq!(
            log_lines_with(&addr, "unavailable"),
            1,
            "one warning per outage"
        );

        let srv = RedisServer::start_on(port);
        let t0 = Instant::now();
        loop {
            match s.window_take("w", 60_000, 1, 100).await {
                Ok(a) => {
                    // A new, empty server: counting starts over.
                    assert_eq!(yes(a).0, 99);
                    break;
                }
                Err(_) => {
                    assert!(t0.elapsed() < Duration::from_secs(10), "no recovery");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
        assert_eq!(s.health(), Health::Up);
        assert_eq!(backend_up(), 1);
        assert_eq!(log_lines_with(&addr, "is back"), 1);
        assert_eq!(log_lines_with(&addr, "unavailable"), 1);
        drop(srv);
    });
}

#[test]
fn frozen_redis_times_out_within_the_call_timeout() {
    let _serial = serial();
    let srv = RedisServer::start();
    run(async {
        let s = RedisLimits::new(&srv.url(), "t8:")
            .unwrap()
            .with_timeout(Duration::from_millis(80));
        yes(s.counter_take("c", now_ms() + 60_000, 1, 10).await.unwrap());
        srv.signal("STOP"); // open sockets, no answers
        let t0 = Instant::now();
        let e = s.counter_take("c", now_ms() + 60_000, 1, 10).await;
        let took = t0.elapsed();
        assert_eq!(e, Err(StoreError::Timeout));
        assert!(
            took >= Duration::from_millis(80) && took < Duration::from_millis(300),
            "{took:?}"
        );
        let t0 = Instant::now();
        assert_eq!(
            s.slot_acquire("s", 1, 1000).await,
            Err(StoreError::Unavailable)
        );
        assert!(t0.elapsed() < Duration::from_millis(80));
        srv.signal("CONT");
        let t0 = Instant::now();
        loop {
            if let Ok(a) = s.counter_take("c", now_ms() + 60_000, 1, 10).await {
                // The frozen take never ran or ran once: 2 or 3 counted.
                assert!(matches!(yes(a).0, 7 | 8), "{a:?}");
                break;
            }
            assert!(t0.elapsed() < Duration::from_secs(10), "no recovery");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(s.health(), Health::Up);
    });
}

#[test]
fn unreachable_from_the_start_fails_within_the_timeout() {
    let _serial = serial();
    let port = free_port(); // nobody listens here
    run(async move {
        let s = RedisLimits::new(&format!("redis://127.0.0.1:{port}"), "t9:").unwrap();
        assert_eq!(s.health(), Health::Unknown);
        for _ in 0..3 {
            let t0 = Instant::now();
            let e = s.window_take("w", 1000, 1, 1).await.unwrap_err();
            assert!(
                t0.elapsed() <= s.timeout() + Duration::from_millis(100),
                "{e:?} after {:?}",
                t0.elapsed()
            );
        }
        assert_eq!(s.health(), Health::Down);
        // A server that appears later is picked up by the background connector.
        let srv = RedisServer::start_on(port);
        let t0 = Instant::now();
        while s.window_take("w", 1000, 1, 1).await.is_err() {
            assert!(t0.elapsed() < Duration::from_secs(10), "no recovery");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(s.health(), Health::Up);
        drop(srv);
    });
}
