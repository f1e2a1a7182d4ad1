//! Per-request cost of the limit checks (criterion). Run:
//!   CARGO_TARGET_DIR=<dir> cargo bench --bench redis_limits
//! - `redis/*`: one round trip of each store operation against a local
//!   `redis-server` (started here on a free loopback port, killed at the end;
//!   needs `redis-server` on PATH) — what a limited request pays per check;
//!
//! The in-memory store's figures are in `benches/limits.rs`.

#[path = "../tests/redis_server/mod.rs"]
mod redis_server;

use aigate::limits::redis::RedisLimits;
use criterion::{Criterion, criterion_group, criterion_main};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn redis(c: &mut Criterion) {
    let srv = redis_server::RedisServer::start();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let store = RedisLimits::new(&srv.url(), "bench:")
        .unwrap()
        .with_timeout(Duration::from_secs(1));
    let end = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
        + 3_600_000;
    let limit = 1 << 50; // never refuses: every iteration is a full take
    let mut g = c.benchmark_group("redis");
    g.bench_function("window_take", |b| {
        b.iter(|| {
            rt.block_on(store.window_take("key:bench:rpm", 60_000, 1, limit))
                .unwrap()
        })
    });
    g.bench_function("window_take_then_adjust", |b| {
        b.iter(|| {
            rt.block_on(async {
                let a = store
                    .window_take("key:bench:tpm", 60_000, 500, limit)
                    .await
                    .unwrap();
                let aigate::limits::redis::Admit::Yes { ticket, .. } = a else {
                    unreachable!()
                };
                store
                    .window_adjust("key:bench:tpm", 60_000, ticket, -200)
                    .await
                    .unwrap()
            })
        })
    });
    g.bench_function("slot_acquire_release", |b| {
        b.iter(|| {
            rt.block_on(async {
                let l = store
                    .slot_acquire("key:bench:conc", 1000, 60_000)
                    .await
                    .unwrap()
                    .unwrap();
                store.slot_release("key:bench:conc", l).await.unwrap()
            })
        })
    });
    g.bench_function("counter_take", |b| {
        b.iter(|| {
            rt.block_on(store.counter_take("key:bench:usd:day", end, 1, limit))
                .unwrap()
        })
    });
    g.finish();
    drop(srv);
}

criterion_group!(benches, redis);
criterion_main!(benches);
