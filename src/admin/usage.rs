//! Each key's use today and this month (UTC): requests, tokens, cost, for
//! `GET /admin/keys`. Counted in memory on the request path (one small
//! entry per key) and kept off it by [`UsageSync`], every second and when
//! the process stops:
//! - `limits.backend: memory`: the totals in `aigate-usage.json` next to the
//!   runtime keys file (0600, replaced atomically), read back at start;
//! - `limits.backend: redis`: added to one Redis hash per key and period
//!   (`<key_prefix>admin:usage:<id>:<2026-12-07|2026-12>`, expiring a week
//!   after the period), shared by every node; read when keys are listed.

use super::store::RedisKeys;
use crate::limits::period::Period;
use async_trait::async_trait;
use once_cell::sync::{Lazy, OnceCell};
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

#[derive(Debug, Default, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Tally {
    pub requests: u64,
    pub tokens: u64,
    pub cost_usd: f64,
}

impl Tally {
    fn add(&mut self, o: &Tally) {
        self.requests += o.requests;
        self.tokens += o.tokens;
        self.cost_usd += o.cost_usd;
    }
}

/// (period start, tally) for the day and the month.
type KeyUse = [(u64, Tally); 2];
type Map = HashMap<String, KeyUse>;

const PERIODS: [Period; 2] = [Period::Day, Period::Month];
/// Redis hashes outlive their period by this much (then expire).
const KEEP_AFTER_MS: u64 = 7 * 86_400_000;

/// This node's totals (with a file store: since the file began).
static USAGE: Lazy<Mutex<Map>> = Lazy::new(Default::default);
/// With Redis: counted here, not yet added to Redis.
static PENDING: Lazy<Mutex<Map>> = Lazy::new(Default::default);
/// With Redis: the totals last read from Redis.
static SHARED: Lazy<Mutex<Map>> = Lazy::new(Default::default);
static DIRTY: AtomicBool = AtomicBool::new(false);
static SINK: OnceCell<Sink> = OnceCell::new();

enum Sink {
    File(PathBuf),
    Redis {
        redis: Box<RedisKeys>,
        prefix: String,
    },
}

fn lock(m: &Mutex<Map>) -> std::sync::MutexGuard<'_, Map> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Add `t` to `key`'s current periods in `m` (a new period starts at zero).
fn bump(m: &mut Map, key: &str, now_ms: u64, t: &Tally) {
    if !m.contains_key(key) {
        m.insert(key.to_string(), Default::default());
    }
    let u = m.get_mut(key).expect("inserted");
    for (slot, p) in u.iter_mut().zip(PERIODS) {
        let start = p.bounds(now_ms).0;
        if slot.0 != start {
            *slot = (start, Tally::default());
        }
        slot.1.add(t);
    }
}

fn current(m: &Map, key: &str, now_ms: u64) -> [Tally; 2] {
    let Some(u) = m.get(key) else {
        return Default::default();
    };
    [0, 1].map(|i| {
        if u[i].0 == PERIODS[i].bounds(now_ms).0 {
            u[i].1
        } else {
            Tally::default()
        }
    })
}

pub fn add(key: &str, now_ms: u64, tokens: u64, cost_usd: f64) {
    let t = Tally {
        requests: 1,
        tokens,
        cost_usd,
    };
    bump(&mut lock(&USAGE), key, now_ms, &t);
    if let Some(Sink::Redis { .. }) = SINK.get() {
        bump(&mut lock(&PENDING), key, now_ms, &t);
    }
    DIRTY.store(true, Ordering::Relaxed);
}

/// Today's and this month's use of `key`: with Redis, every node's as last
/// read (see [`refresh`]) plus what this node has not added yet. Costs
/// rounded to nano-dollars (sums of floats otherwise differ in the last digit).
pub fn get(key: &str, now_ms: u64) -> [Tally; 2] {
    let mut t = current(&lock(&USAGE), key, now_ms);
    if let Some(Sink::Redis { .. }) = SINK.get() {
        t = current(&lock(&SHARED), key, now_ms);
        let pending = current(&lock(&PENDING), key, now_ms);
        for (s, p) in t.iter_mut().zip(&pending) {
            s.add(p);
        }
    }
    t.map(|mut t| {
        t.cost_usd = (t.cost_usd * 1e9).round() / 1e9;
        t
    })
}

/// At start, with a file store: read the totals back (a missing file is
/// none; an unreadable one is reported and counting starts again).
pub fn use_file(path: PathBuf) {
    match std::fs::read(&path) {
        Ok(b) => match serde_json::from_slice::<Map>(&b) {
            Ok(m) => *lock(&USAGE) = m,
            Err(e) => log::warn!(
                "key usage: {} is unreadable ({e}); counting from zero",
                path.display()
            ),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => log::warn!("key usage: cannot read {}: {e}", path.display()),
    }
    let _ = SINK.set(Sink::File(path));
}

/// At start, with `limits.backend: redis`.
pub fn use_redis(url: &str, prefix: &str) -> Result<(), String> {
    let redis = Box::new(RedisKeys::new(url, prefix)?);
    let _ = SINK.set(Sink::Redis {
        redis,
        prefix: prefix.to_string(),
    });
    Ok(())
}

fn hash_name(prefix: &str, id: &str, p: Period, start: u64) -> String {
    format!("{prefix}admin:usage:{id}:{}", p.label(start))
}

/// Before keys are listed, with Redis: read `ids`' totals (one round trip).
/// A failure keeps the last read (logged at debug: the key listing still answers).
pub async fn refresh(ids: &[String]) {
    let Some(Sink::Redis { redis, prefix }) = SINK.get() else {
        return;
    };
    let now = crate::limits::store::unix_ms();
    let starts = PERIODS.map(|p| p.bounds(now).0);
    let mut pipe = redis::pipe();
    for id in ids {
        for (p, s) in PERIODS.iter().zip(starts) {
            pipe.hgetall(hash_name(prefix, id, *p, s));
        }
    }
    let got: Result<Vec<HashMap<String, i64>>, String> =
        redis.run(async |c| pipe.query_async(c).await).await;
    let got = match got {
        Ok(g) => g,
        Err(e) => {
            log::debug!("key usage: cannot read Redis: {e}");
            return;
        }
    };
    let mut shared = lock(&SHARED);
    for (id, h) in ids.iter().zip(got.chunks(2)) {
        let tally = |m: &HashMap<String, i64>| {
            let f = |k: &str| m.get(k).copied().unwrap_or(0).max(0) as u64;
            Tally {
                requests: f("requests"),
                tokens: f("tokens"),
                cost_usd: f("cost_nano_usd") as f64 / 1e9,
            }
        };
        shared.insert(
            id.clone(),
            [(starts[0], tally(&h[0])), (starts[1], tally(&h[1]))],
        );
    }
}

fn write_file(path: &std::path::Path) {
    let body = serde_json::to_vec(&*lock(&USAGE)).unwrap_or_default();
    if let Err(e) = super::store::write_private(path, &body) {
        DIRTY.store(true, Ordering::Relaxed);
        log::warn!("key usage: {e}");
    }
}

/// The Redis commands adding `batch` to the shared totals.
fn additions(prefix: &str, batch: &Map) -> redis::Pipeline {
    let mut pipe = redis::pipe();
    for (id, u) in batch {
        for ((start, t), p) in u.iter().zip(PERIODS) {
            if t.requests == 0 {
                continue;
            }
            let h = hash_name(prefix, id, p, *start);
            pipe.hincr(&h, "requests", t.requests)
                .ignore()
                .hincr(&h, "tokens", t.tokens)
                .ignore()
                .hincr(&h, "cost_nano_usd", (t.cost_usd * 1e9).round() as i64)
                .ignore()
                .pexpire_at(&h, (p.bounds(*start).1 + KEEP_AFTER_MS) as i64)
                .ignore();
        }
    }
    pipe
}

/// Last words before `process::exit` (the drain's end, `shutdown::leave`):
/// the background flush may not get its turn. Blocking, one short attempt.
pub fn flush_at_exit() {
    if !DIRTY.swap(false, Ordering::Relaxed) {
        return;
    }
    match SINK.get() {
        None => {}
        Some(Sink::File(path)) => write_file(path),
        Some(Sink::Redis { redis, prefix }) => {
            let batch = std::mem::take(&mut *lock(&PENDING));
            if batch.is_empty() {
                return;
            }
            let r = redis
                .client()
                .get_connection_with_timeout(Duration::from_secs(1))
                .and_then(|mut c| {
                    c.set_write_timeout(Some(Duration::from_secs(1)))?;
                    c.set_read_timeout(Some(Duration::from_secs(1)))?;
                    additions(prefix, &batch).query::<()>(&mut c)
                });
            if let Err(e) = r {
                log::warn!("key usage: the last counts could not be added to Redis: {e}");
            }
        }
    }
}

/// Write what changed since the last flush.
async fn flush() {
    if !DIRTY.swap(false, Ordering::Relaxed) {
        return;
    }
    match SINK.get() {
        None => {}
        Some(Sink::File(path)) => write_file(path),
        Some(Sink::Redis { redis, prefix }) => {
            let batch = std::mem::take(&mut *lock(&PENDING));
            if batch.is_empty() {
                return;
            }
            let pipe = additions(prefix, &batch);
            let r: Result<(), String> = redis.run(async |c| pipe.query_async(c).await).await;
            if let Err(e) = r {
                // Put it back for the next second (a period that ended meanwhile is dropped).
                let mut pending = lock(&PENDING);
                for (id, u) in batch {
                    let slot = pending.entry(id).or_insert([(0, Tally::default()); 2]);
                    for i in 0..2 {
                        if slot[i].0 <= u[i].0 {
                            let t = if slot[i].0 == u[i].0 {
                                slot[i].1
                            } else {
                                Tally::default()
                            };
                            slot[i] = (u[i].0, u[i].1);
                            slot[i].1.add(&t);
                        }
                    }
                }
                DIRTY.store(true, Ordering::Relaxed);
                log::debug!("key usage: cannot write Redis: {e}");
            }
        }
    }
}

/// Writes usage every second and once more when the process stops (and
/// [`flush_at_exit`] when it exits before this task's turn).
pub struct UsageSync;

#[async_trait]
impl BackgroundService for UsageSync {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => flush().await,
                _ = shutdown.changed() => {
                    flush().await;
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_roll_over() {
        let day = 86_400_000;
        let t0 = 20_000 * day + 5;
        add("usage-test", t0, 10, 0.5);
        add("usage-test", t0 + 1, 5, 0.25);
        let [d, m] = get("usage-test", t0 + 2);
        assert_eq!((d.requests, d.tokens, d.cost_usd), (2, 15, 0.75));
        assert_eq!(m.requests, 2);
        let [d, _] = get("usage-test", t0 + day);
        assert_eq!(d, Tally::default(), "a new day starts at zero");
        assert_eq!(get("nobody", t0), [Tally::default(); 2]);
    }

    #[test]
    fn totals_round_trip_through_json() {
        let mut m = Map::new();
        bump(
            &mut m,
            "k",
            1_000,
            &Tally {
                requests: 1,
                tokens: 3,
                cost_usd: 0.5,
            },
        );
        let back: Map = serde_json::from_slice(&serde_json::to_vec(&m).unwrap()).unwrap();
        assert_eq!(current(&back, "k", 2_000)[1].tokens, 3);
        assert_eq!(
            hash_name("aigate:", "k", Period::Month, 0),
            "aigate:admin:usage:k:1970-01"
        );
    }
}
