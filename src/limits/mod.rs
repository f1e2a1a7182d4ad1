//! Limits: per-key requests and tokens per minute, concurrency, budgets.
//! Every counter goes through a [`LimitStore`] by name (`backend.rs`: local
//! memory in `memory.rs`, or Redis in `redis.rs`, both speaking `store.rs`),
//! so the same checks run on one node or many; names are built once, when
//! the config is compiled, never per request. State lives outside the config
//! snapshot, so a reload keeps the counts. `admit.rs` holds the checks a
//! request goes through, `holds.rs` what it keeps until it ends.

mod admit;
pub mod backend;
mod holds;
pub mod memory;
pub mod period;
pub mod redis;
pub mod store;
#[cfg(test)]
mod tests;

pub use admit::{
    Estimate, GlobalLimits, KeyLimits, KeyNames, Refusal, TARGET_UNITS, TargetLimits,
    estimate_tokens, reset_text,
};
pub use backend::LimitStore;
pub use holds::{Holds, SlotGuard};
pub use memory::MemoryStore;
pub use store::{Admit, StoreError};

use admit::StoreDown;
use holds::{CounterHold, WindowHold};

use self::redis::RedisLimits;
use crate::config::file::{LimitBackend, LimitsConf, OnError};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// A slot lease outlives any sane request; a shared store reclaims the slots
/// of a node that died after this long.
const SLOT_LEASE_MS: u64 = 30 * 60 * 1000;

fn on_error_text(e: OnError) -> &'static str {
    match e {
        OnError::Open => "open",
        OnError::Closed => "closed",
    }
}

/// Whether a reload changed what is read only at start (the store and
/// `on_error`): the running store stays until a restart or upgrade.
pub fn store_conf_changed(old: &LimitsConf, new: &LimitsConf) -> bool {
    (
        old.backend,
        &old.url,
        &old.key_prefix,
        old.timeout_ms,
        old.on_error,
    ) != (
        new.backend,
        &new.url,
        &new.key_prefix,
        new.timeout_ms,
        new.on_error,
    )
}

/// Every limit check of the gateway, over one store (plus local counters to
/// fall back on when the store fails and `on_error: open`).
pub struct Limiter {
    store: LimitStore,
    fallback: MemoryStore,
    on_error: OnError,
    /// The "minute" of rpm/tpm (`rate_limit_window_seconds`).
    pub minute_ms: u64,
    /// The store is failing (logged once per change).
    down: AtomicBool,
    global_rpm: Arc<str>,
    global_concurrent: Arc<str>,
}

/// An answer from the store or, when it failed and `on_error: open`, from
/// the local fallback.
struct Taken<T> {
    value: T,
    local: bool,
}

impl Limiter {
    pub fn new(store: LimitStore, on_error: OnError, minute: Duration) -> Self {
        Limiter {
            store,
            fallback: MemoryStore::default(),
            on_error,
            minute_ms: minute.as_millis().max(1) as u64,
            down: AtomicBool::new(false),
            global_rpm: "global:rpm".into(),
            global_concurrent: "global:concurrent".into(),
        }
    }

    /// The store `limits:` names (read at start). No I/O here: with Redis,
    /// [`Limiter::probe_store`] (every second, from a runtime) connects.
    pub fn from_conf(conf: &LimitsConf, minute: Duration) -> Result<Self, String> {
        let store = match conf.backend {
            LimitBackend::Memory => LimitStore::Memory(MemoryStore::default()),
            LimitBackend::Redis => {
                let url = conf
                    .url
                    .as_deref()
                    .ok_or("limits.url: `backend: redis` needs a url")?;
                let prefix = conf.key_prefix.as_deref().unwrap_or(redis::DEFAULT_PREFIX);
                let timeout = conf
                    .timeout_ms
                    .map_or(redis::DEFAULT_TIMEOUT, Duration::from_millis);
                LimitStore::Redis(RedisLimits::new(url, prefix)?.with_timeout(timeout))
            }
        };
        Ok(Self::new(store, conf.on_error, minute))
    }

    /// Where the counters live, for the start-up log (never the password).
    pub fn describe(&self) -> String {
        match &self.store {
            LimitStore::Redis(r) => format!(
                "in Redis at {} (timeout {} ms, on_error: {})",
                r.addr(),
                r.timeout().as_millis(),
                on_error_text(self.on_error)
            ),
            _ => "in memory (this node only)".into(),
        }
    }

    /// Whether the store is shared and needs [`Limiter::probe_store`].
    pub fn is_shared(&self) -> bool {
        matches!(self.store, LimitStore::Redis(_))
    }

    /// Keep a shared store's state known while idle (see `RedisLimits::probe`).
    pub async fn probe_store(&self) {
        if let LimitStore::Redis(r) = &self.store {
            r.probe().await;
        }
    }

    /// The store as `/health/ready` reports it: whether this node is ready as
    /// far as the limits go, and a line saying how they are counted.
    pub fn health(&self) -> (bool, String) {
        let down = match &self.store {
            LimitStore::Redis(r) => match r.health() {
                redis::Health::Up => return (true, "redis".into()),
                redis::Health::Unknown => "redis not connected yet",
                redis::Health::Down => "redis unreachable",
            },
            _ if self.degraded() => "store failing",
            _ => return (true, "memory".into()),
        };
        match self.on_error {
            OnError::Open => (true, format!("degraded: {down}, counting locally")),
            OnError::Closed => (
                false,
                format!("unavailable: {down}, limited requests refused (on_error: closed)"),
            ),
        }
    }

    /// In memory, with the default (60 s) minute.
    pub fn memory(minute: Duration) -> Self {
        Self::new(
            LimitStore::Memory(MemoryStore::default()),
            OnError::Open,
            minute,
        )
    }

    /// Whether the store is failing now (the fallback is in use).
    pub fn degraded(&self) -> bool {
        self.down.load(Ordering::Relaxed)
    }

    /// Turn a store result into an answer, falling back per `on_error`.
    fn settle<T>(
        &self,
        r: Result<T, StoreError>,
        local: impl FnOnce(&MemoryStore) -> T,
    ) -> Result<Taken<T>, StoreDown> {
        match r {
            Ok(value) => {
                // Read first: no shared write per check while all is well.
                if self.down.load(Ordering::Relaxed) && self.down.swap(false, Ordering::Relaxed) {
                    log::warn!("rate-limit store is answering again");
                }
                Ok(Taken {
                    value,
                    local: false,
                })
            }
            Err(e) => {
                if !self.down.swap(true, Ordering::Relaxed) {
                    match self.on_error {
                        OnError::Open => log::error!(
                            "rate-limit store failed ({e}): counting on local memory until it answers (on_error: open)"
                        ),
                        OnError::Closed => log::error!(
                            "rate-limit store failed ({e}): refusing limited requests until it answers (on_error: closed)"
                        ),
                    }
                }
                match self.on_error {
                    OnError::Open => Ok(Taken {
                        value: local(&self.fallback),
                        local: true,
                    }),
                    OnError::Closed => Err(StoreDown),
                }
            }
        }
    }

    async fn window_take(
        &self,
        name: &Arc<str>,
        window_ms: u64,
        amount: u64,
        limit: u64,
    ) -> Result<(Admit, Option<WindowHold>), StoreDown> {
        let r = self.store.window_take(name, window_ms, amount, limit).await;
        let t = self.settle(r, |m| {
            m.window_take_at(store::now_ms(), name, window_ms, amount, limit)
        })?;
        let hold = t.value.ticket().map(|ticket| WindowHold {
            name: name.clone(),
            window_ms,
            ticket,
            amount,
            local: t.local,
        });
        Ok((t.value, hold))
    }

    async fn window_adjust(&self, h: &WindowHold, delta: i64) {
        if delta == 0 {
            return;
        }
        if h.local {
            self.fallback
                .window_adjust_at(store::now_ms(), &h.name, h.window_ms, h.ticket, delta);
            return;
        }
        if let Err(e) = self
            .store
            .window_adjust(&h.name, h.window_ms, h.ticket, delta)
            .await
        {
            log::debug!("rate-limit store: adjusting {} failed: {e}", h.name);
        }
    }

    async fn counter_take(
        &self,
        name: &Arc<str>,
        expires_at: u64,
        amount: u64,
        limit: u64,
    ) -> Result<(Admit, Option<CounterHold>), StoreDown> {
        let r = self
            .store
            .counter_take(name, expires_at, amount, limit)
            .await;
        let t = self.settle(r, |m| {
            m.counter_take_at(store::unix_ms(), name, expires_at, amount, limit)
        })?;
        let hold = t.value.ticket().map(|_| CounterHold {
            name: name.clone(),
            expires_at,
            amount,
            local: t.local,
        });
        Ok((t.value, hold))
    }

    async fn counter_add(&self, h: &CounterHold, delta: i64) {
        if delta == 0 {
            return;
        }
        if h.local {
            self.fallback
                .counter_add_at(store::unix_ms(), &h.name, h.expires_at, delta);
            return;
        }
        if let Err(e) = self.store.counter_add(&h.name, h.expires_at, delta).await {
            log::debug!("rate-limit store: adding to {} failed: {e}", h.name);
        }
    }

    async fn slot(
        self: &Arc<Self>,
        name: &Arc<str>,
        max: u64,
    ) -> Result<Option<SlotGuard>, StoreDown> {
        let r = self.store.slot_acquire(name, max, SLOT_LEASE_MS).await;
        let t = self.settle(r, |m| m.slot_acquire(name, max, SLOT_LEASE_MS))?;
        Ok(t.value.map(|lease| SlotGuard {
            limiter: self.clone(),
            name: name.clone(),
            lease,
            local: t.local,
        }))
    }

    fn release_slot(self: &Arc<Self>, name: Arc<str>, lease: u64, local: bool) {
        if local {
            self.fallback.slot_release(&name, lease);
        } else if let Some(m) = self.store.as_memory() {
            m.slot_release(&name, lease);
        } else if let Ok(rt) = tokio::runtime::Handle::try_current() {
            // A shared store answers asynchronously; the guard drops in sync code.
            let me = self.clone();
            rt.spawn(async move {
                if let Err(e) = me.store.slot_release(&name, lease).await {
                    log::debug!(
                        "rate-limit store: releasing {name} failed: {e} (the lease expires)"
                    );
                }
            });
        }
    }

    /// Give back everything `holds` took (a request refused after all).
    pub async fn give_back(&self, holds: &mut Holds) {
        holds.slots.clear();
        for h in std::mem::take(&mut holds.requests)
            .iter()
            .chain(&std::mem::take(&mut holds.tokens))
        {
            self.window_adjust(h, -(h.amount as i64)).await;
        }
        for h in std::mem::take(&mut holds.money) {
            self.counter_add(&h, -(h.amount as i64)).await;
        }
    }

    /// Reconcile reservations when the request ends: tokens with the tokens
    /// it used, budgets with what it cost (micro-USD), when known; a failed
    /// request gives its reservations back; an answer that reported nothing
    /// keeps its estimate.
    pub async fn reconcile(
        &self,
        holds: &mut Holds,
        used_tokens: Option<u64>,
        cost_micro_usd: Option<u64>,
        failed: bool,
    ) {
        let delta = |used: Option<u64>, amount: u64| match used {
            Some(u) => u as i64 - amount as i64,
            None if failed => -(amount as i64),
            None => 0,
        };
        for h in std::mem::take(&mut holds.tokens) {
            self.window_adjust(&h, delta(used_tokens, h.amount)).await;
        }
        for h in std::mem::take(&mut holds.money) {
            self.counter_add(&h, delta(cost_micro_usd, h.amount)).await;
        }
    }
}
