//! The limit store on Redis (`limits: {backend: redis}`), so several gateway
//! nodes enforce one limit together. It implements the store interface of the
//! limits (sliding-log windows, concurrency slots, fixed-period counters) with
//! one Lua script per operation: the check and the reservation happen in one
//! atomic step on the server. Reading a count and writing it back later would
//! let N nodes each admit the whole limit.
//!
//! Time is Redis' own (`TIME` inside the scripts), so nodes with skewed clocks
//! agree. Every key has a TTL (windows: the window length; slots: the lease;
//! counters: the period end), so abandoned counters vanish by themselves.
//!
//! Failure handling: a call never takes longer than `timeout` (default 50 ms);
//! a limit check must not stall a request. A timeout or a broken connection
//! marks the store down: from then on calls fail at once with
//! [`StoreError::Unavailable`] (no I/O, no waiting) while one background task
//! reconnects with backoff. The caller turns a [`StoreError`] into fail-open
//! (count on local memory) or fail-closed ([`OnError`]). Going down and coming
//! back are logged once each and shown in `aigate_limits_backend_up` and
//! `aigate_limits_backend_errors_total`.
//!
//! Needs Redis >= 5 (scripts that write after `TIME`) or Valkey. Keys of one
//! name share a hash tag (`{name}`), so they would sit on one cluster slot.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use once_cell::sync::Lazy;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, RedisError, RedisResult, Script};
use tokio::sync::watch;

use crate::metrics::METRICS;

/// Default per-call time limit.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(50);
/// Default key prefix (several gateways can share one Redis with their own).
pub const DEFAULT_PREFIX: &str = "aigate:";
/// A background connection attempt may take this long (the callers never wait
/// on it: they fail fast while the store is down).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// Lua numbers are doubles: integers above 2^53 would lose precision.
const MAX_AMOUNT: u64 = 1 << 53;
/// A counter whose period already ended by Redis' clock (the node's clock is
/// behind) still lives this long, so the reservation is not lost at once.
const COUNTER_GRACE_MS: u64 = 60_000;

/// Outcome of a take: the limits' own type (one store interface).
pub use super::store::Admit;

/// Why a store operation did not happen. The caller decides what that means
/// for the request ([`OnError`]). Messages never contain the URL or password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// The store is known to be down; nothing was sent (a reconnect is under way).
    Unavailable,
    /// No answer within the call timeout. The operation may still have run on
    /// the server (a take then counts there until its window ends: the
    /// error errs on the side of counting too much, never too little).
    Timeout,
    /// The connection failed (refused, reset, closed).
    Connection(String),
    /// Redis answered with an error (out of memory, read-only replica, wrong type...).
    Server(String),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Unavailable => f.write_str("limit store down"),
            StoreError::Timeout => f.write_str("limit store timed out"),
            StoreError::Connection(m) => write!(f, "limit store connection failed: {m}"),
            StoreError::Server(m) => write!(f, "limit store error: {m}"),
        }
    }
}

impl std::error::Error for StoreError {}

impl From<StoreError> for super::store::StoreError {
    fn from(e: StoreError) -> Self {
        super::store::StoreError(e.to_string())
    }
}

/// `limits.on_error`: what a request gets while the shared store fails
/// (`open`: count on this node's memory; `closed`: 503 and not ready).
pub use crate::config::file::OnError;

/// What `/health/ready` and the metrics say about the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// Not used yet (no connection tried).
    Unknown,
    Up,
    Down,
}

const UNKNOWN: u8 = 0;
const UP: u8 = 1;
const DOWN: u8 = 2;

/// The connection as the callers see it.
#[derive(Clone)]
enum Link {
    /// Never connected: the first call waits (within its timeout) for the connector.
    Idle,
    /// Connected; the number tells connections apart, so a failure on an old
    /// one does not drop its replacement.
    Up(u64, MultiplexedConnection),
    /// Broken: calls fail fast until the connector swaps a new one in.
    Down,
}

/// The Redis limit store. Cheap to clone; clones share one connection.
#[derive(Clone)]
pub struct RedisLimits {
    inner: Arc<Inner>,
}

struct Inner {
    client: redis::Client,
    conn_cfg: AsyncConnectionConfig,
    /// host:port/db for logs (never the password).
    addr: String,
    prefix: String,
    timeout: Duration,
    link: watch::Sender<Link>,
    health: AtomicU8,
    connecting: AtomicBool,
    generation: AtomicU64,
}

impl fmt::Debug for RedisLimits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisLimits")
            .field("addr", &self.inner.addr)
            .field("prefix", &self.inner.prefix)
            .field("timeout", &self.inner.timeout)
            .field("health", &self.health())
            .finish()
    }
}

// Keys of one name: `<prefix>{<name>}:<kind>` (the braces are a cluster hash tag).
//   window: `:wt` ZSET ticket -> admission time (ms), `:wa` HASH ticket -> amount, plus
//           field `sum` = total of the amounts;
//   slots:  `:s`  ZSET lease -> expiry time (ms);
//   counter `:c`  integer.

/// Shared by the window scripts: Redis' clock in ms, and eviction of entries
/// at or before `cutoff` (in batches: Lua's `unpack` has a stack limit).
const LUA_PRELUDE: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function evict(z, h, cutoff)
  local sum = tonumber(redis.call('HGET', h, 'sum') or '0')
  local gone = 0
  while true do
    local old = redis.call('ZRANGEBYSCORE', z, '-inf', cutoff, 'LIMIT', 0, 500)
    if #old == 0 then break end
    local amounts = redis.call('HMGET', h, unpack(old))
    for i = 1, #old do gone = gone + (tonumber(amounts[i]) or 0) end
    redis.call('HDEL', h, unpack(old))
    redis.call('ZREM', z, unpack(old))
    if #old < 500 then break end
  end
  if gone > 0 then
    sum = sum - gone
    if sum < 0 or redis.call('ZCARD', z) == 0 then sum = 0 end
    redis.call('HSET', h, 'sum', sum)
  end
  return sum
end
"#;

/// KEYS: wt, wa. ARGV: window_ms, amount, limit, ticket.
/// Returns {1, remaining, reset_ms} or {0, remaining, retry_after_ms}.
const LUA_WINDOW_TAKE: &str = r#"
local win = tonumber(ARGV[1])
local amount = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
local sum = evict(KEYS[1], KEYS[2], now - win)
if sum + amount > limit then
  -- Wait until enough of the oldest entries have left the window; an amount
  -- over the limit never fits: a whole window.
  local wait = win
  if amount <= limit then
    local left = sum
    local start = 0
    local found = false
    while not found do
      local batch = redis.call('ZRANGE', KEYS[1], start, start + 99, 'WITHSCORES')
      if #batch == 0 then break end
      local ids = {}
      for i = 1, #batch, 2 do ids[#ids + 1] = batch[i] end
      local amounts = redis.call('HMGET', KEYS[2], unpack(ids))
      for j = 1, #ids do
        left = left - (tonumber(amounts[j]) or 0)
        if left + amount <= limit then
          wait = tonumber(batch[2 * j]) + win - now
          found = true
          break
        end
      end
      start = start + 100
    end
  end
  if wait < 1 then wait = 1 end
  local rem = limit - sum
  if rem < 0 then rem = 0 end
  return {0, rem, wait}
end
redis.call('ZADD', KEYS[1], now, ARGV[4])
redis.call('HSET', KEYS[2], ARGV[4], ARGV[2])
sum = redis.call('HINCRBY', KEYS[2], 'sum', ARGV[2])
redis.call('PEXPIRE', KEYS[1], win)
redis.call('PEXPIRE', KEYS[2], win)
return {1, limit - sum, win}
"#;

/// KEYS: wt, wa. ARGV: window_ms, ticket, delta. Returns 1 if adjusted, 0 if
/// the entry has left the window (or never was).
const LUA_WINDOW_ADJUST: &str = r#"
evict(KEYS[1], KEYS[2], now - tonumber(ARGV[1]))
local cur = redis.call('HGET', KEYS[2], ARGV[2])
if not cur then return 0 end
local old = tonumber(cur)
local new = old + tonumber(ARGV[3])
if new < 0 then new = 0 end
redis.call('HSET', KEYS[2], ARGV[2], new)
redis.call('HINCRBY', KEYS[2], 'sum', new - old)
return 1
"#;

/// KEYS: s. ARGV: max, lease_ms, lease id. Returns 1 if taken, 0 if full.
const LUA_SLOT_ACQUIRE: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], now + lease, ARGV[3])
if redis.call('PTTL', KEYS[1]) < lease then redis.call('PEXPIRE', KEYS[1], lease) end
return 1
"#;

/// Shared by the counter scripts: when the key expires. A period end already
/// past by Redis' clock (skew) gets a short grace instead of deleting the key.
const LUA_COUNTER_PRELUDE: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function expire(c, at)
  if at <= now then
    redis.call('PEXPIRE', c, tonumber(ARGV[4]))
  else
    redis.call('PEXPIREAT', c, at)
  end
end
"#;

/// KEYS: c. ARGV: expires_at_ms, amount, limit, grace_ms.
/// Returns {1, remaining, reset_ms} or {0, remaining, retry_after_ms}.
const LUA_COUNTER_TAKE: &str = r#"
local at = tonumber(ARGV[1])
local amount = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
local reset = at - now
if reset < 1 then reset = 1 end
if cur + amount > limit then
  local rem = limit - cur
  if rem < 0 then rem = 0 end
  return {0, rem, reset}
end
local v = redis.call('INCRBY', KEYS[1], ARGV[2])
expire(KEYS[1], at)
return {1, limit - v, reset}
"#;

/// KEYS: c. ARGV: expires_at_ms, delta, (unused), grace_ms. Never below 0.
const LUA_COUNTER_ADD: &str = r#"
local v = redis.call('INCRBY', KEYS[1], ARGV[2])
if v < 0 then redis.call('INCRBY', KEYS[1], -v) end
expire(KEYS[1], tonumber(ARGV[1]))
return 1
"#;

static WINDOW_TAKE: Lazy<Script> =
    Lazy::new(|| Script::new(&format!("{LUA_PRELUDE}{LUA_WINDOW_TAKE}")));
static WINDOW_ADJUST: Lazy<Script> =
    Lazy::new(|| Script::new(&format!("{LUA_PRELUDE}{LUA_WINDOW_ADJUST}")));
static SLOT_ACQUIRE: Lazy<Script> = Lazy::new(|| Script::new(LUA_SLOT_ACQUIRE));
static COUNTER_TAKE: Lazy<Script> =
    Lazy::new(|| Script::new(&format!("{LUA_COUNTER_PRELUDE}{LUA_COUNTER_TAKE}")));
static COUNTER_ADD: Lazy<Script> =
    Lazy::new(|| Script::new(&format!("{LUA_COUNTER_PRELUDE}{LUA_COUNTER_ADD}")));

/// `{1|0, remaining, ms}` from a take script.
fn admit(r: (i64, i64, i64), ticket: u64) -> Admit {
    let (ok, remaining, ms) = (r.0 == 1, r.1.max(0) as u64, r.2.max(1) as u64);
    if ok {
        Admit::Yes {
            remaining,
            reset_ms: ms,
            ticket,
        }
    } else {
        Admit::No {
            remaining,
            retry_after_ms: ms,
        }
    }
}

/// Random ids for window entries and slot leases: unique without a shared
/// sequence (which would need a key without TTL), and never reissued to
/// another request when a window's keys expire and start over.
fn fresh_id() -> u64 {
    rand::random::<u64>()
}

impl RedisLimits {
    /// A store for `url` (`redis://[:password@]host[:port][/db]`, or
    /// `redis+unix:///path`). No I/O here: the first operation connects.
    /// The error message never repeats the URL (it may hold a password).
    pub fn new(url: &str, key_prefix: &str) -> Result<Self, String> {
        let client = redis::Client::open(url).map_err(|e| {
            format!(
                // redis' URL errors are fixed texts, without the URL.
                "limits.url is not a usable Redis URL (redis://[:password@]host[:port][/db]): {e}"
            )
        })?;
        let info = client.get_connection_info();
        let addr = format!("{}/{}", info.addr(), info.redis_settings().db());
        let conn_cfg = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            // The call timeout bounds every call from outside.
            .set_response_timeout(None);
        let (link, _) = watch::channel(Link::Idle);
        Ok(RedisLimits {
            inner: Arc::new(Inner {
                client,
                conn_cfg,
                addr,
                prefix: key_prefix.to_string(),
                timeout: DEFAULT_TIMEOUT,
                link,
                health: AtomicU8::new(UNKNOWN),
                connecting: AtomicBool::new(false),
                generation: AtomicU64::new(0),
            }),
        })
    }

    /// Per-call time limit (default [`DEFAULT_TIMEOUT`]). Call before sharing.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.timeout = timeout.max(Duration::from_millis(1));
        }
        self
    }

    /// `host:port/db` of the server, for logs and `/health/ready`.
    pub fn addr(&self) -> &str {
        &self.inner.addr
    }

    pub fn timeout(&self) -> Duration {
        self.inner.timeout
    }

    pub fn health(&self) -> Health {
        match self.inner.health.load(Ordering::Acquire) {
            UP => Health::Up,
            DOWN => Health::Down,
            _ => Health::Unknown,
        }
    }

    /// Start connecting in the background (e.g. at start-up, so health and
    /// metrics are known before the first request). Needs a tokio runtime.
    pub fn connect(&self) {
        if matches!(*self.inner.link.borrow(), Link::Idle | Link::Down) {
            spawn_connector(&self.inner);
        }
    }

    fn key(&self, name: &str, kind: &str) -> String {
        format!("{}{{{}}}:{}", self.inner.prefix, name, kind)
    }

    /// Sliding-log window: admit `amount` if the entries younger than
    /// `window_ms` plus `amount` stay within `limit`.
    pub async fn window_take(
        &self,
        name: &str,
        window_ms: u64,
        amount: u64,
        limit: u64,
    ) -> Result<Admit, StoreError> {
        let (wt, wa) = (self.key(name, "wt"), self.key(name, "wa"));
        let ticket = fresh_id();
        let r: (i64, i64, i64) = self
            .call(async |c| {
                WINDOW_TAKE
                    .key(&wt)
                    .key(&wa)
                    .arg(window_ms.clamp(1, MAX_AMOUNT))
                    .arg(amount.min(MAX_AMOUNT))
                    .arg(limit.min(MAX_AMOUNT))
                    .arg(ticket)
                    .invoke_async(c)
                    .await
            })
            .await?;
        Ok(admit(r, ticket))
    }

    /// Correct an admitted entry by `delta`; an entry already out of the
    /// window is left alone.
    pub async fn window_adjust(
        &self,
        name: &str,
        window_ms: u64,
        ticket: u64,
        delta: i64,
    ) -> Result<(), StoreError> {
        let (wt, wa) = (self.key(name, "wt"), self.key(name, "wa"));
        let delta = delta.clamp(-(MAX_AMOUNT as i64), MAX_AMOUNT as i64);
        let _: i64 = self
            .call(async |c| {
                WINDOW_ADJUST
                    .key(&wt)
                    .key(&wa)
                    .arg(window_ms.clamp(1, MAX_AMOUNT))
                    .arg(ticket)
                    .arg(delta)
                    .invoke_async(c)
                    .await
            })
            .await?;
        Ok(())
    }

    /// Take one of `max` slots as a lease that expires after `lease_ms`
    /// unless released; `None` when all are taken.
    pub async fn slot_acquire(
        &self,
        name: &str,
        max: u64,
        lease_ms: u64,
    ) -> Result<Option<u64>, StoreError> {
        let s = self.key(name, "s");
        let lease = fresh_id();
        let took: i64 = self
            .call(async |c| {
                SLOT_ACQUIRE
                    .key(&s)
                    .arg(max.min(MAX_AMOUNT))
                    .arg(lease_ms.clamp(1, MAX_AMOUNT))
                    .arg(lease)
                    .invoke_async(c)
                    .await
            })
            .await?;
        Ok((took == 1).then_some(lease))
    }

    /// Give a slot back (a no-op when its lease already expired).
    pub async fn slot_release(&self, name: &str, lease: u64) -> Result<(), StoreError> {
        let s = self.key(name, "s");
        // One command is atomic already; no script needed.
        let _: i64 = self
            .call(async |c| redis::cmd("ZREM").arg(&s).arg(lease).query_async(c).await)
            .await?;
        Ok(())
    }

    /// Fixed-period counter: admit `amount` if total + amount <= `limit`;
    /// the counter disappears at `expires_at_unix_ms` (the period end).
    pub async fn counter_take(
        &self,
        name: &str,
        expires_at_unix_ms: u64,
        amount: u64,
        limit: u64,
    ) -> Result<Admit, StoreError> {
        let k = self.key(name, "c");
        let r: (i64, i64, i64) = self
            .call(async |c| {
                COUNTER_TAKE
                    .key(&k)
                    .arg(expires_at_unix_ms.min(MAX_AMOUNT))
                    .arg(amount.min(MAX_AMOUNT))
                    .arg(limit.min(MAX_AMOUNT))
                    .arg(COUNTER_GRACE_MS)
                    .invoke_async(c)
                    .await
            })
            .await?;
        Ok(admit(r, 0))
    }

    /// Add `delta` (negative: give back) without a check; never below zero.
    pub async fn counter_add(
        &self,
        name: &str,
        expires_at_unix_ms: u64,
        delta: i64,
    ) -> Result<(), StoreError> {
        let k = self.key(name, "c");
        let delta = delta.clamp(-(MAX_AMOUNT as i64), MAX_AMOUNT as i64);
        let _: i64 = self
            .call(async |c| {
                COUNTER_ADD
                    .key(&k)
                    .arg(expires_at_unix_ms.min(MAX_AMOUNT))
                    .arg(delta)
                    .arg(0)
                    .arg(COUNTER_GRACE_MS)
                    .invoke_async(c)
                    .await
            })
            .await?;
        Ok(())
    }

    /// Check the store while no request does (called every second), so a
    /// lost or returned Redis shows in `/health/ready` and the metrics before
    /// a request meets it: a `PING` on a live connection (a failure marks the
    /// store down), else make sure the connector runs (it marks it up).
    pub async fn probe(&self) {
        let connected = matches!(*self.inner.link.borrow(), Link::Up(..));
        if connected {
            let _: Result<String, _> = self
                .call(async |c| redis::cmd("PING").query_async(c).await)
                .await;
        } else {
            self.connect();
        }
    }

    /// Run one round trip within the timeout and keep the health state.
    async fn call<T>(
        &self,
        op: impl AsyncFnOnce(&mut MultiplexedConnection) -> RedisResult<T>,
    ) -> Result<T, StoreError> {
        let inner = &self.inner;
        let mut used: Option<u64> = None;
        let attempt = tokio::time::timeout(inner.timeout, async {
            let (generation, mut conn) = connection(inner).await?;
            used = Some(generation);
            op(&mut conn).await.map_err(|e| inner.failed(generation, e))
        })
        .await;
        match attempt {
            Ok(Ok(v)) => {
                inner.mark_up();
                Ok(v)
            }
            Ok(Err(e)) => Err(e),
            Err(_) => {
                // A store that cannot answer in time is as good as down: drop
                // the connection and let the connector make a fresh one.
                inner.count_error("timeout");
                inner.mark_down("no answer within the timeout");
                inner.drop_link(used);
                spawn_connector(inner);
                Err(StoreError::Timeout)
            }
        }
    }
}

/// The connection to use now: the current one; the one being made on first
/// use (the caller's timeout bounds the wait); or an error at once while down.
async fn connection(inner: &Arc<Inner>) -> Result<(u64, MultiplexedConnection), StoreError> {
    if let Link::Up(g, c) = &*inner.link.borrow() {
        return Ok((*g, c.clone()));
    }
    spawn_connector(inner);
    let mut rx = inner.link.subscribe();
    let link = rx
        .wait_for(|l| !matches!(l, Link::Idle))
        .await
        .map_err(|_| StoreError::Unavailable)?
        .clone();
    match link {
        Link::Up(g, c) => Ok((g, c)),
        _ => {
            inner.count_error("down");
            Err(StoreError::Unavailable)
        }
    }
}

/// Start the one background task that (re)connects with backoff, unless it
/// runs already. It holds only a weak reference: dropping the store ends it.
fn spawn_connector(inner: &Arc<Inner>) {
    if inner.connecting.swap(true, Ordering::AcqRel) {
        return;
    }
    let weak: Weak<Inner> = Arc::downgrade(inner);
    tokio::spawn(async move {
        // Should the task be dropped (its runtime shut down), the next
        // failure must still be able to start a connector.
        let running = ClearOnDrop(weak.clone());
        let mut backoff = MIN_BACKOFF;
        loop {
            let Some(inner) = weak.upgrade() else { return };
            let made = tokio::time::timeout(
                CONNECT_TIMEOUT,
                inner
                    .client
                    .get_multiplexed_async_connection_with_config(&inner.conn_cfg),
            )
            .await;
            match made {
                Ok(Ok(conn)) => {
                    let g = inner.generation.fetch_add(1, Ordering::AcqRel) + 1;
                    // Cleared before the swap: a failure on the new connection
                    // right after must be able to start the next connector.
                    drop(running);
                    // Health first, then the link: whoever sees the new link
                    // also sees the health that goes with it.
                    inner.mark_up();
                    inner.link.send_replace(Link::Up(g, conn));
                    return;
                }
                Ok(Err(e)) => {
                    inner.count_error("connection");
                    inner.mark_down(&e.to_string());
                    inner.link.send_replace(Link::Down);
                }
                Err(_) => {
                    inner.count_error("timeout");
                    inner.mark_down("connecting timed out");
                    inner.link.send_replace(Link::Down);
                }
            }
            drop(inner);
            // Jitter, so the nodes of a fleet do not reconnect in step.
            let jitter = rand::random_range(0..=backoff.as_millis() as u64 / 4);
            tokio::time::sleep(backoff + Duration::from_millis(jitter)).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    });
}

struct ClearOnDrop(Weak<Inner>);

impl Drop for ClearOnDrop {
    fn drop(&mut self) {
        if let Some(inner) = self.0.upgrade() {
            inner.connecting.store(false, Ordering::Release);
        }
    }
}

impl Inner {
    /// Classify a failed round trip: connection trouble drops the connection
    /// (a reconnect starts); a server error leaves it (the next call retries).
    fn failed(self: &Arc<Self>, generation: u64, e: RedisError) -> StoreError {
        let message = e.to_string();
        if e.is_io_error()
            || e.is_connection_dropped()
            || e.is_connection_refusal()
            || e.is_timeout()
            || e.is_unrecoverable_error()
        {
            self.count_error("connection");
            self.mark_down(&message);
            self.drop_link(Some(generation));
            spawn_connector(self);
            StoreError::Connection(message)
        } else {
            self.count_error("server");
            self.mark_down(&message);
            StoreError::Server(message)
        }
    }

    /// Forget connection `generation` if it is still the current one; with
    /// none (the first connection did not come in time), stop waiting for it.
    fn drop_link(&self, generation: Option<u64>) {
        self.link.send_if_modified(|l| match (&*l, generation) {
            (Link::Up(g, _), Some(generation)) if *g == generation => {
                *l = Link::Down;
                true
            }
            (Link::Idle, None) => {
                *l = Link::Down;
                true
            }
            _ => false,
        });
    }

    fn count_error(&self, kind: &str) {
        METRICS
            .limits_backend_errors
            .with_label_values(&["redis", kind])
            .inc();
    }

    /// Log once per outage, not per failed call.
    fn mark_down(&self, why: &str) {
        METRICS
            .limits_backend_up
            .with_label_values(&["redis"])
            .set(0);
        if self.health.swap(DOWN, Ordering::AcqRel) != DOWN {
            crate::events::store_state("redis", false);
            log::warn!(
                "limits: Redis at {} is unavailable ({why}); limit checks fall back (limits.on_error) until it recovers",
                self.addr
            );
        }
    }

    fn mark_up(&self) {
        if self.health.load(Ordering::Acquire) == UP {
            return;
        }
        METRICS
            .limits_backend_up
            .with_label_values(&["redis"])
            .set(1);
        if self.health.swap(UP, Ordering::AcqRel) == DOWN {
            crate::events::store_state("redis", true);
            log::warn!(
                "limits: Redis at {} is back; limits are shared again",
                self.addr
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_errors_never_echo_the_password() {
        let e = RedisLimits::new("http://:hunter2@127.0.0.1:6379", "p:").unwrap_err();
        assert!(!e.contains("hunter2"), "{e}");
        assert!(e.contains("limits.url"), "{e}");
        let s = RedisLimits::new("redis://:hunter2@127.0.0.1:6390/3", "p:").unwrap();
        assert_eq!(s.addr(), "127.0.0.1:6390/3");
        assert!(!format!("{s:?}").contains("hunter2"));
        assert_eq!(s.health(), Health::Unknown, "no I/O at construction");
        assert_eq!(s.key("key:team-a:rpm", "wt"), "p:{key:team-a:rpm}:wt");
    }

    #[test]
    fn take_replies_become_admits() {
        assert_eq!(
            admit((1, 4, 60_000), 7),
            Admit::Yes {
                remaining: 4,
                reset_ms: 60_000,
                ticket: 7
            }
        );
        assert_eq!(
            admit((0, -3, 0), 7),
            Admit::No {
                remaining: 0,
                retry_after_ms: 1
            }
        );
    }

    #[test]
    fn on_error_reads_from_config() {
        let v: OnError = serde_yaml::from_str("closed").unwrap();
        assert_eq!(v, OnError::Closed);
        assert_eq!(OnError::default(), OnError::Open);
        assert!(serde_yaml::from_str::<OnError>("maybe").is_err());
    }
}
