//! The checks a request goes through: the gateway-wide limits, its key's
//! (concurrency, rpm, tpm, budgets) and each attempt's target limits, with
//! the names, refusals and `x-ratelimit-*` headers they produce.

use std::sync::Arc;
use std::time::Duration;

use super::period::{Period, PeriodName};
use super::{Admit, Holds, Limiter, store};

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
    pub(super) limits: [Option<u64>; 4],
    pub(super) names: [Arc<str>; 4],
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
    pub(super) fn refusal(self) -> Refusal {
        Refusal {
            status: 503,
            message: "the rate-limit store is unavailable; try again shortly".into(),
            retry_after: Duration::from_secs(1),
        }
    }
}

/// Gateway-wide limits (`limits: {rpm, max_concurrent}`).
#[derive(Debug, Clone, Copy, Default)]
pub struct GlobalLimits {
    pub rpm: Option<u64>,
    pub max_concurrent: Option<u64>,
}
impl Limiter {
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
