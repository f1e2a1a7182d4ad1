//! Limits: per-key requests and tokens per minute, concurrency. Every counter
//! goes through a [`LimitStore`] (`store.rs`) by name, so the same checks run
//! on local memory or on a shared store; names are built once, when the
//! config is compiled, never per request. State lives outside the config
//! snapshot, so a reload keeps the counts.

pub mod period;
pub mod store;

pub use store::{Admit, LimitStore, MemoryStore, StoreError};

use period::{Period, PeriodName};

use crate::config::file::{LimitBackend, LimitsConf, OnError};
use crate::redis_limits::{self, RedisLimits};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// A slot lease outlives any sane request; a shared store reclaims the slots
/// of a node that died after this long.
const SLOT_LEASE_MS: u64 = 30 * 60 * 1000;

/// Counter names of one gateway key, built at config load (budget names
/// once per UTC day or month).
#[derive(Debug)]
pub struct KeyNames {
    pub rpm: Arc<str>,
    pub tpm: Arc<str>,
    pub concurrent: Arc<str>,
    /// `key:<id>:usd:day:<date>`, `key:<id>:usd:month:<month>`.
    pub budgets: [PeriodName; 2],
}

impl KeyNames {
    pub fn new(id: &str) -> Self {
        KeyNames {
            rpm: format!("key:{id}:rpm").into(),
            tpm: format!("key:{id}:tpm").into(),
            concurrent: format!("key:{id}:concurrent").into(),
            budgets: [
                PeriodName::new(format!("key:{id}:usd:day:"), Period::Day),
                PeriodName::new(format!("key:{id}:usd:month:"), Period::Month),
            ],
        }
    }
}

/// The limits of one gateway key, as the request check needs them.
pub struct KeyLimits<'a> {
    pub id: &'a str,
    pub rpm: Option<u64>,
    pub tpm: Option<u64>,
    pub max_concurrent: Option<u64>,
    /// Daily and monthly budgets in micro-USD.
    pub budgets: [Option<u64>; 2],
    pub names: &'a KeyNames,
}

impl KeyLimits<'_> {
    pub fn has_budget(&self) -> bool {
        self.budgets.iter().any(Option::is_some)
    }
}

/// Limits of one model target, with its counter names (built at load).
#[derive(Debug)]
pub struct TargetLimits {
    /// `provider/model`, for messages.
    pub label: String,
    /// rpm, rph, rpd, tpm.
    limits: [Option<u64>; 4],
    names: [Arc<str>; 4],
}

pub const TARGET_UNITS: [&str; 4] = ["rpm", "rph", "rpd", "tpm"];

impl TargetLimits {
    /// `None` when the target has no limit.
    pub fn new(label: String, limits: [Option<u64>; 4]) -> Option<Self> {
        if limits.iter().all(Option::is_none) {
            return None;
        }
        let names = TARGET_UNITS.map(|u| Arc::from(format!("target:{label}:{u}")));
        Some(TargetLimits {
            label,
            limits,
            names,
        })
    }
}

/// A request the limits refuse: 429 (or 503 when the store is down and
/// `on_error: closed`), in the client's format.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub status: u16,
    pub message: String,
    pub retry_after: Duration,
}

/// The store failed and `on_error: closed` says not to guess.
#[derive(Debug)]
pub struct StoreDown;

impl StoreDown {
    fn refusal(self) -> Refusal {
        Refusal {
            status: 503,
            message: "the rate-limit store is unavailable; try again shortly".into(),
            retry_after: Duration::from_secs(1),
        }
    }
}

/// An admitted amount in a window, to reconcile or give back.
#[derive(Debug)]
struct WindowHold {
    name: Arc<str>,
    window_ms: u64,
    ticket: u64,
    amount: u64,
    /// Taken from the local fallback, not the configured store.
    local: bool,
}

/// Micro-USD reserved in a budget period, to reconcile with the real cost.
#[derive(Debug)]
struct CounterHold {
    name: Arc<str>,
    expires_at: u64,
    amount: u64,
    local: bool,
}

/// Releases a concurrency slot when dropped (however the request ends).
pub struct SlotGuard {
    limiter: Arc<Limiter>,
    name: Arc<str>,
    lease: u64,
    local: bool,
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        self.limiter
            .release_slot(self.name.clone(), self.lease, self.local);
    }
}

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

/// What one request holds against the limits until it ends: slots (released
/// on drop), request entries (given back if the request is refused after all)
/// and token reservations (reconciled with the reported usage).
#[derive(Default)]
pub struct Holds {
    slots: Vec<SlotGuard>,
    requests: Vec<WindowHold>,
    tokens: Vec<WindowHold>,
    money: Vec<CounterHold>,
}

impl std::fmt::Debug for Holds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Holds")
            .field("slots", &self.slots.len())
            .field("requests", &self.requests)
            .field("tokens", &self.tokens)
            .field("money", &self.money)
            .finish()
    }
}

impl Holds {
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
            && self.requests.is_empty()
            && self.tokens.is_empty()
            && self.money.is_empty()
    }

    /// Keep `other`'s slots and token reservations until this request ends
    /// (its request entries have nothing left to settle).
    pub fn absorb(&mut self, other: Holds) {
        self.slots.extend(other.slots);
        self.tokens.extend(other.tokens);
        self.money.extend(other.money);
    }
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

/// Gateway-wide limits (`limits: {rpm, max_concurrent}`).
#[derive(Debug, Clone, Copy, Default)]
pub struct GlobalLimits {
    pub rpm: Option<u64>,
    pub max_concurrent: Option<u64>,
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
                let prefix = conf
                    .key_prefix
                    .as_deref()
                    .unwrap_or(redis_limits::DEFAULT_PREFIX);
                let timeout = conf
                    .timeout_ms
                    .map_or(redis_limits::DEFAULT_TIMEOUT, Duration::from_millis);
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
                redis_limits::Health::Up => return (true, "redis".into()),
                redis_limits::Health::Unknown => "redis not connected yet",
                redis_limits::Health::Down => "redis unreachable",
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

    /// Apply a key's limits (concurrency, rpm, tpm reserving `estimate`
    /// tokens) to one request. Fills the `x-ratelimit-*` headers either way;
    /// on refusal everything taken is given back.
    pub async fn admit_key(
        self: &Arc<Self>,
        k: &KeyLimits<'_>,
        estimate: Estimate,
        headers: &mut Vec<(&'static str, String)>,
        holds: &mut Holds,
    ) -> Result<(), Refusal> {
        let r = self.admit_key_inner(k, estimate, headers, holds).await;
        if r.is_err() {
            self.give_back(holds).await;
        }
        r
    }

    /// Apply the gateway-wide limits to one request; on refusal what it took
    /// is given back (the key's holds too: the request never runs).
    pub async fn admit_global(
        self: &Arc<Self>,
        g: GlobalLimits,
        holds: &mut Holds,
    ) -> Result<(), Refusal> {
        let r = self.admit_global_inner(g, holds).await;
        if r.is_err() {
            self.give_back(holds).await;
        }
        r
    }

    async fn admit_global_inner(
        self: &Arc<Self>,
        g: GlobalLimits,
        holds: &mut Holds,
    ) -> Result<(), Refusal> {
        if let Some(max) = g.max_concurrent {
            match self
                .slot(&self.global_concurrent, max)
                .await
                .map_err(StoreDown::refusal)?
            {
                Some(s) => holds.slots.push(s),
                None => {
                    return Err(Refusal {
                        status: 429,
                        message: format!("the gateway has {max} requests in flight, its limit"),
                        retry_after: Duration::from_secs(1),
                    });
                }
            }
        }
        if let Some(rpm) = g.rpm {
            let (a, hold) = self
                .window_take(&self.global_rpm, self.minute_ms, 1, rpm)
                .await
                .map_err(StoreDown::refusal)?;
            match hold {
                Some(h) => holds.requests.push(h),
                None => {
                    return Err(Refusal {
                        status: 429,
                        message: format!(
                            "the gateway reached its limit of {rpm} requests per minute"
                        ),
                        retry_after: Duration::from_millis(a.reset_ms()),
                    });
                }
            }
        }
        Ok(())
    }

    /// A target's limits and what each has left now (rpm, rph, rpd, tpm; `None`
    /// where unset), for the admin API. Read-only; a failing store leaves
    /// `left` unknown (`None`) rather than guessing from the local fallback.
    pub async fn target_left(&self, t: &TargetLimits) -> [Option<(u64, Option<u64>)>; 4] {
        let lens = self.target_windows();
        let mut out = [None; 4];
        for i in 0..4 {
            let Some(limit) = t.limits[i] else { continue };
            let left = self
                .store
                .window_left(&t.names[i], lens[i], limit)
                .await
                .ok();
            out[i] = Some((limit, left));
        }
        out
    }

    /// Window lengths of rpm, rph, rpd, tpm.
    fn target_windows(&self) -> [u64; 4] {
        [
            self.minute_ms,
            self.minute_ms * 60,
            self.minute_ms * 1440,
            self.minute_ms,
        ]
    }

    /// Take one attempt's share of a target's limits: a request in each of
    /// its minute / hour / day windows and `estimate` tokens. Refused: nothing
    /// is kept, and the refusal says when the target has room again.
    pub async fn admit_target(&self, t: &TargetLimits, estimate: u64) -> Result<Holds, Refusal> {
        let mut holds = Holds::default();
        let lens = self.target_windows();
        let what = [
            "requests per minute",
            "requests per hour",
            "requests per day",
            "tokens per minute",
        ];
        for i in 0..4 {
            let Some(limit) = t.limits[i] else { continue };
            let amount = if i == 3 { estimate } else { 1 };
            let taken = self.window_take(&t.names[i], lens[i], amount, limit).await;
            let refusal = match taken {
                Ok((_, Some(h))) => {
                    if i == 3 {
                        holds.tokens.push(h);
                    } else {
                        holds.requests.push(h);
                    }
                    continue;
                }
                Ok((a, None)) => Refusal {
                    status: 429,
                    message: format!(
                        "target '{}' reached its limit of {limit} {}",
                        t.label, what[i]
                    ),
                    retry_after: Duration::from_millis(a.reset_ms()),
                },
                Err(down) => down.refusal(),
            };
            self.give_back(&mut holds).await;
            return Err(refusal);
        }
        Ok(holds)
    }

    async fn admit_key_inner(
        self: &Arc<Self>,
        k: &KeyLimits<'_>,
        estimate: Estimate,
        headers: &mut Vec<(&'static str, String)>,
        holds: &mut Holds,
    ) -> Result<(), Refusal> {
        if let Some(max) = k.max_concurrent {
            match self
                .slot(&k.names.concurrent, max)
                .await
                .map_err(StoreDown::refusal)?
            {
                Some(g) => holds.slots.push(g),
                None => {
                    return Err(Refusal {
                        status: 429,
                        message: format!(
                            "gateway key '{}' has {max} requests in flight, its limit",
                            k.id
                        ),
                        retry_after: Duration::from_secs(1),
                    });
                }
            }
        }
        let mut refused = None;
        if let Some(rpm) = k.rpm {
            let (a, hold) = self
                .window_take(&k.names.rpm, self.minute_ms, 1, rpm)
                .await
                .map_err(StoreDown::refusal)?;
            push_quota(headers, "requests", rpm, &a);
            match hold {
                Some(h) => holds.requests.push(h),
                None => {
                    refused = Some(Refusal {
                        status: 429,
                        message: format!(
                            "gateway key '{}' reached its limit of {rpm} requests per minute",
                            k.id
                        ),
                        retry_after: Duration::from_millis(a.reset_ms()),
                    })
                }
            }
        }
        if let Some(tpm) = k.tpm {
            // Already refused: take nothing, only read the window for the headers.
            let amount = if refused.is_some() {
                0
            } else {
                estimate.tokens
            };
            let (a, hold) = self
                .window_take(&k.names.tpm, self.minute_ms, amount, tpm)
                .await
                .map_err(StoreDown::refusal)?;
            push_quota(headers, "tokens", tpm, &a);
            match hold {
                Some(_) if refused.is_some() => {}
                Some(h) => holds.tokens.push(h),
                None if refused.is_none() => {
                    refused = Some(Refusal {
                        status: 429,
                        message: format!(
                            "gateway key '{}' reached its limit of {tpm} tokens per minute",
                            k.id
                        ),
                        retry_after: Duration::from_millis(a.reset_ms()),
                    })
                }
                None => {}
            }
        }
        if let Some(r) = refused {
            return Err(r);
        }
        for (i, names) in k.names.budgets.iter().enumerate() {
            let Some(limit) = k.budgets[i] else { continue };
            self.admit_budget(k.id, names, limit, estimate.cost_micro_usd, holds)
                .await?;
        }
        Ok(())
    }

    /// Reserve a request's estimated cost in a budget period. Spent means no
    /// micro-dollar left: an estimate larger than what is left (a generous
    /// `max_tokens`) reserves the rest rather than locking the key out.
    async fn admit_budget(
        &self,
        id: &str,
        names: &PeriodName,
        limit: u64,
        estimate: u64,
        holds: &mut Holds,
    ) -> Result<(), Refusal> {
        let (name, end) = names.at(store::unix_ms());
        let take = |amount| self.counter_take(&name, end, amount, limit);
        let mut r = take(estimate.max(1)).await.map_err(StoreDown::refusal)?;
        if let (Admit::No { remaining, .. }, None) = r
            && remaining > 0
        {
            r = take(remaining).await.map_err(StoreDown::refusal)?;
        }
        match r {
            (_, Some(h)) => {
                holds.money.push(h);
                Ok(())
            }
            (a, None) => {
                let (word, unit) = match names.period() {
                    Period::Day => ("daily", "day"),
                    Period::Month => ("monthly", "month"),
                };
                Err(Refusal {
                    status: 429,
                    message: format!(
                        "gateway key '{id}' has spent its {word} budget of ${} (USD); it renews when the UTC {unit} ends",
                        limit as f64 / 1e6
                    ),
                    retry_after: Duration::from_millis(a.reset_ms()),
                })
            }
        }
    }
}

/// What a request is expected to use, reserved before it runs.
#[derive(Debug, Clone, Copy, Default)]
pub struct Estimate {
    pub tokens: u64,
    pub cost_micro_usd: u64,
}

/// The `x-ratelimit-{limit,remaining,reset}-<what>` trio.
fn push_quota(headers: &mut Vec<(&'static str, String)>, what: &str, limit: u64, a: &Admit) {
    let (l, r, s) = if what == "requests" {
        (
            "x-ratelimit-limit-requests",
            "x-ratelimit-remaining-requests",
            "x-ratelimit-reset-requests",
        )
    } else {
        (
            "x-ratelimit-limit-tokens",
            "x-ratelimit-remaining-tokens",
            "x-ratelimit-reset-tokens",
        )
    };
    headers.push((l, limit.to_string()));
    headers.push((r, a.remaining().to_string()));
    headers.push((s, reset_text(Duration::from_millis(a.reset_ms()))));
}

/// Tokens a request may use, reserved before it runs: its size in tokens
/// (about 4 bytes each) plus the output it allows itself.
pub fn estimate_tokens(body_len: usize, max_output: Option<u64>) -> u64 {
    (body_len as u64).div_ceil(4) + max_output.unwrap_or(0)
}

/// `x-ratelimit-reset-*` value in OpenAI's style ("1s", "6m0s").
pub fn reset_text(d: Duration) -> String {
    let s = d.as_secs_f64().ceil() as u64;
    if s >= 60 {
        format!("{}m{}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key<'a>(names: &'a KeyNames) -> KeyLimits<'a> {
        KeyLimits {
            id: "a",
            rpm: Some(2),
            tpm: Some(100),
            max_concurrent: Some(1),
            budgets: [None; 2],
            names,
        }
    }

    fn tok(tokens: u64) -> Estimate {
        Estimate {
            tokens,
            cost_micro_usd: 0,
        }
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
    }

    #[test]
    fn key_checks_take_reconcile_and_give_back() {
        rt().block_on(async {
            let l = Arc::new(Limiter::memory(Duration::from_secs(60)));
            let names = KeyNames::new("a");
            let k = key(&names);
            let mut h1 = Holds::default();
            let mut hdr = vec![];
            l.admit_key(&k, tok(80), &mut hdr, &mut h1).await.unwrap();
            assert!(hdr.contains(&("x-ratelimit-remaining-requests", "1".into())));
            assert!(hdr.contains(&("x-ratelimit-remaining-tokens", "20".into())));
            // The slot is held: a second request is refused, and takes nothing.
            let mut h2 = Holds::default();
            let r = l
                .admit_key(&k, tok(10), &mut vec![], &mut h2)
                .await
                .unwrap_err();
            assert!(r.message.contains("in flight"), "{r:?}");
            assert!(h2.is_empty());
            // The first used 30 tokens; its slot comes back when its holds drop.
            l.reconcile(&mut h1, Some(30), None, false).await;
            drop(h1);
            let mut h3 = Holds::default();
            let mut hdr = vec![];
            l.admit_key(&k, tok(60), &mut hdr, &mut h3).await.unwrap();
            assert!(hdr.contains(&("x-ratelimit-remaining-requests", "0".into())));
            assert!(
                hdr.contains(&("x-ratelimit-remaining-tokens", "10".into())),
                "{hdr:?}"
            );
            // A failed request gives its reservation back.
            l.reconcile(&mut h3, None, None, true).await;
            drop(h3);
            // rpm 2 reached: refused, and the tpm window is only read.
            let mut h4 = Holds::default();
            let mut hdr = vec![];
            let r = l
                .admit_key(&k, tok(50), &mut hdr, &mut h4)
                .await
                .unwrap_err();
            assert_eq!(r.status, 429);
            assert!(r.message.contains("2 requests per minute"), "{r:?}");
            assert!(
                hdr.contains(&("x-ratelimit-remaining-tokens", "70".into())),
                "{hdr:?}"
            );
        });
    }

    #[test]
    fn tpm_refusal_gives_the_request_entry_back() {
        rt().block_on(async {
            let l = Arc::new(Limiter::memory(Duration::from_secs(60)));
            let names = KeyNames::new("b");
            let k = KeyLimits {
                id: "b",
                rpm: Some(1),
                tpm: Some(100),
                max_concurrent: None,
                budgets: [None; 2],
                names: &names,
            };
            let mut h = Holds::default();
            let r = l
                .admit_key(&k, tok(500), &mut vec![], &mut h)
                .await
                .unwrap_err();
            assert!(r.message.contains("tokens per minute"), "{r:?}");
            let mut h = Holds::default();
            l.admit_key(&k, tok(50), &mut vec![], &mut h)
                .await
                .expect("the refused request's rpm entry was given back");
        });
    }

    #[test]
    fn store_failure_falls_back_or_refuses() {
        rt().block_on(async {
            let names = KeyNames::new("c");
            let k = KeyLimits {
                id: "c",
                rpm: Some(1),
                tpm: None,
                max_concurrent: Some(1),
                budgets: [None; 2],
                names: &names,
            };
            let open = Arc::new(Limiter::new(
                LimitStore::Failing,
                OnError::Open,
                Duration::from_secs(60),
            ));
            let mut h = Holds::default();
            open.admit_key(&k, tok(0), &mut vec![], &mut h)
                .await
                .unwrap();
            assert!(open.degraded());
            // Local counters still hold the limit.
            let r = open
                .admit_key(&k, tok(0), &mut vec![], &mut Holds::default())
                .await
                .unwrap_err();
            assert_eq!(r.status, 429);
            drop(h);
            assert_eq!(open.fallback.slots_in_use("key:c:concurrent"), 0);

            let closed = Arc::new(Limiter::new(
                LimitStore::Failing,
                OnError::Closed,
                Duration::from_secs(60),
            ));
            let r = closed
                .admit_key(&k, tok(0), &mut vec![], &mut Holds::default())
                .await
                .unwrap_err();
            assert_eq!(r.status, 503);
        });
    }

    #[test]
    fn global_limits_and_giving_back_the_key() {
        rt().block_on(async {
            let l = Arc::new(Limiter::memory(Duration::from_secs(60)));
            let names = KeyNames::new("g");
            let k = KeyLimits {
                id: "g",
                rpm: Some(10),
                tpm: None,
                max_concurrent: None,
                budgets: [None; 2],
                names: &names,
            };
            let g = GlobalLimits {
                rpm: Some(2),
                max_concurrent: Some(1),
            };
            let mut a = Holds::default();
            l.admit_key(&k, tok(0), &mut vec![], &mut a).await.unwrap();
            l.admit_global(g, &mut a).await.unwrap();
            let mut b = Holds::default();
            let mut hdr = vec![];
            l.admit_key(&k, tok(0), &mut hdr, &mut b).await.unwrap();
            assert!(hdr.contains(&("x-ratelimit-remaining-requests", "8".into())));
            let r = l.admit_global(g, &mut b).await.unwrap_err();
            assert!(r.message.contains("1 requests in flight"), "{r:?}");
            drop(a);
            // b's key entry came back with the refusal: still 8 left after this one.
            let mut c = Holds::default();
            let mut hdr = vec![];
            l.admit_key(&k, tok(0), &mut hdr, &mut c).await.unwrap();
            assert!(
                hdr.contains(&("x-ratelimit-remaining-requests", "8".into())),
                "{hdr:?}"
            );
            l.admit_global(g, &mut c).await.unwrap();
            drop(c);
            let r = l.admit_global(g, &mut Holds::default()).await.unwrap_err();
            assert!(r.message.contains("2 requests per minute"), "{r:?}");
            assert!(r.retry_after > Duration::from_secs(59), "{r:?}");
        });
    }

    #[test]
    fn target_windows_scale_with_the_minute() {
        rt().block_on(async {
            // A 1 s "minute": the hour is 60 s, the day 1440 s.
            let l = Limiter::memory(Duration::from_secs(1));
            let t =
                TargetLimits::new("p/m".into(), [Some(5), Some(2), Some(3), Some(100)]).unwrap();
            let mut a = l.admit_target(&t, 60).await.unwrap();
            let r = l.admit_target(&t, 60).await.unwrap_err();
            assert!(r.message.contains("100 tokens per minute"), "{r:?}");
            // The refused attempt kept nothing: after a's tokens come back, two fit.
            l.reconcile(&mut a, None, None, true).await;
            let _b = l.admit_target(&t, 10).await.unwrap();
            let r = l.admit_target(&t, 10).await.unwrap_err();
            assert_eq!(
                r.message,
                "target 'p/m' reached its limit of 2 requests per hour"
            );
            assert!(
                r.retry_after > Duration::from_secs(59) && r.retry_after <= Duration::from_secs(60),
                "{r:?}"
            );
            assert!(TargetLimits::new("x".into(), [None; 4]).is_none());
            assert_eq!(&*t.names[2], "target:p/m:rpd");
        });
    }

    #[test]
    fn target_left_reads_without_taking() {
        rt().block_on(async {
            let l = Limiter::memory(Duration::from_secs(60));
            let t = TargetLimits::new("p/m".into(), [Some(5), None, Some(3), Some(100)]).unwrap();
            let full = [
                Some((5, Some(5))),
                None,
                Some((3, Some(3))),
                Some((100, Some(100))),
            ];
            assert_eq!(l.target_left(&t).await, full);
            // Reading again took nothing.
            assert_eq!(l.target_left(&t).await, full);
            let _h = l.admit_target(&t, 40).await.unwrap();
            assert_eq!(
                l.target_left(&t).await,
                [
                    Some((5, Some(4))),
                    None,
                    Some((3, Some(2))),
                    Some((100, Some(60)))
                ]
            );
            let f = Limiter::new(LimitStore::Failing, OnError::Open, Duration::from_secs(60));
            assert_eq!(f.target_left(&t).await[0], Some((5, None)));
        });
    }

    #[test]
    fn budgets_reserve_reconcile_and_refuse_until_the_period_ends() {
        rt().block_on(async {
            let l = Arc::new(Limiter::memory(Duration::from_secs(60)));
            let names = KeyNames::new("d");
            let k = KeyLimits {
                id: "d",
                rpm: None,
                tpm: None,
                max_concurrent: None,
                budgets: [Some(50_000), Some(1_000_000)],
                names: &names,
            };
            let est = |c| Estimate {
                tokens: 0,
                cost_micro_usd: c,
            };
            // An estimate larger than the budget still gets what is left.
            let mut a = Holds::default();
            l.admit_key(&k, est(80_000), &mut vec![], &mut a)
                .await
                .unwrap();
            // Meanwhile the reservation blocks another request.
            let r = l
                .admit_key(&k, est(1), &mut vec![], &mut Holds::default())
                .await
                .unwrap_err();
            assert!(
                r.message.contains("spent its daily budget of $0.05"),
                "{r:?}"
            );
            // It cost 30_000: 20_000 left; b reserves 15_000 and costs 30_000.
            l.reconcile(&mut a, Some(1), Some(30_000), false).await;
            let mut b = Holds::default();
            l.admit_key(&k, est(15_000), &mut vec![], &mut b)
                .await
                .unwrap();
            l.reconcile(&mut b, Some(1), Some(30_000), false).await;
            let r = l
                .admit_key(&k, est(0), &mut vec![], &mut Holds::default())
                .await
                .unwrap_err();
            let (_, day_end) = names.budgets[0].at(store::unix_ms());
            let left = day_end - store::unix_ms();
            assert!(
                r.retry_after.as_millis() as u64 <= left
                    && r.retry_after.as_millis() as u64 + 5_000 >= left,
                "Retry-After {:?} is not until the UTC day ends ({left} ms)",
                r.retry_after
            );
            // The monthly counter holds what was spent, and a refused daily
            // check took nothing from it.
            let (month, _) = names.budgets[1].at(store::unix_ms());
            let m = l.store.as_memory().unwrap();
            assert_eq!(m.counter_total_at(store::unix_ms(), &month), 60_000);
            // A failed request gives its reservation back.
            let names2 = KeyNames::new("e");
            let k2 = KeyLimits {
                names: &names2,
                id: "e",
                ..k
            };
            let mut c = Holds::default();
            l.admit_key(&k2, est(40_000), &mut vec![], &mut c)
                .await
                .unwrap();
            l.reconcile(&mut c, None, None, true).await;
            let (day, _) = names2.budgets[0].at(store::unix_ms());
            assert_eq!(m.counter_total_at(store::unix_ms(), &day), 0);
        });
    }

    #[test]
    fn health_says_how_limits_count() {
        rt().block_on(async {
            let mem = Limiter::memory(Duration::from_secs(60));
            assert_eq!(mem.health(), (true, "memory".into()));
            let names = KeyNames::new("h");
            let k = KeyLimits {
                id: "h",
                rpm: Some(5),
                tpm: None,
                max_concurrent: None,
                budgets: [None; 2],
                names: &names,
            };
            for (on_error, ready, text) in [
                (OnError::Open, true, "degraded: store failing, counting locally"),
                (OnError::Closed, false, "unavailable: store failing"),
            ] {
                let l = Arc::new(Limiter::new(
                    LimitStore::Failing,
                    on_error,
                    Duration::from_secs(60),
                ));
                let _ = l.admit_key(&k, tok(0), &mut vec![], &mut Holds::default()).await;
                let (ok, said) = l.health();
                assert_eq!(ok, ready);
                assert!(said.starts_with(text), "{said}");
            }
            // Redis: built without I/O; not ready with `closed` until connected.
            let conf: LimitsConf = serde_yaml::from_str(
                "{backend: redis, url: \"redis://:pw@127.0.0.1:1/2\", on_error: closed, timeout_ms: 7}",
            )
            .unwrap();
            let l = Limiter::from_conf(&conf, Duration::from_secs(60)).unwrap();
            assert!(l.is_shared());
            assert_eq!(
                l.describe(),
                "in Redis at 127.0.0.1:1/2 (timeout 7 ms, on_error: closed)"
            );
            let (ok, said) = l.health();
            assert!(!ok && said.contains("not connected yet"), "{said}");
            let mut other = conf.clone();
            other.rpm = Some(3);
            assert!(!store_conf_changed(&conf, &other), "limits follow reloads");
            other.timeout_ms = None;
            assert!(store_conf_changed(&conf, &other));
        });
    }

    #[test]
    fn helpers() {
        assert_eq!(estimate_tokens(4001, Some(100)), 1101);
        assert_eq!(reset_text(Duration::from_millis(61_500)), "1m2s");
        assert_eq!(reset_text(Duration::from_millis(200)), "1s");
    }
}
