//! Retry policy, credential cooldowns and per-provider circuit breaking, as
//! plain state machines over atomics (no locks on the request path), and the
//! rules that turn them into decisions (`verdict`, `gate`, `fallback`).
//!
//! Rests and circuits steer traffic to alternatives; they never leave a
//! request without an attempt when no alternative remains (SPEC "Errors"):
//! the candidate out longest is tried, unless the upstream itself named when
//! to come back (`Retry-After`, `x-ratelimit-reset-*`).

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Milliseconds since the process started: a cheap monotonic clock for atomics.
pub fn now_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64
}

#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Upstream attempts per request, across credentials and targets.
    pub max_attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
    pub multiplier: f64,
    /// Upstream statuses that move on to the next credential / target.
    pub on_status: Vec<u16>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(2000),
            multiplier: 2.0,
            on_status: vec![429, 500, 502, 503, 504, 520, 522, 524, 529],
        }
    }
}

/// `base` with what a `retry:` section sets (`None`: `base` as it is).
pub fn retry_policy(base: &RetryPolicy, c: Option<&crate::config::file::RetryConf>) -> RetryPolicy {
    let Some(c) = c else { return base.clone() };
    RetryPolicy {
        max_attempts: c.max_attempts.unwrap_or(base.max_attempts),
        base_delay: ms(c.base_delay_ms, base.base_delay),
        max_delay: ms(c.max_delay_ms, base.max_delay),
        multiplier: c.multiplier.unwrap_or(base.multiplier),
        on_status: c
            .on_status
            .clone()
            .unwrap_or_else(|| base.on_status.clone()),
    }
}

fn ms(v: Option<u64>, d: Duration) -> Duration {
    v.map(Duration::from_millis).unwrap_or(d)
}

impl RetryPolicy {
    pub fn retries_status(&self, status: u16) -> bool {
        self.on_status.contains(&status)
    }

    /// Exponential backoff with full jitter before retry number `n` (1-based):
    /// uniform in [0, min(max, base * multiplier^(n-1))].
    pub fn backoff(&self, n: u32, unit: f64) -> Duration {
        let exp = self
            .multiplier
            .max(1.0)
            .powi(n.saturating_sub(1).min(30) as i32);
        let cap = (self.base_delay.as_secs_f64() * exp).min(self.max_delay.as_secs_f64());
        Duration::from_secs_f64(cap * unit.clamp(0.0, 1.0))
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CooldownPolicy {
    /// Rest after a 429 that names no reset time: short, since nothing says
    /// how long the limit lasts (LiteLLM and Envoy retry within seconds).
    pub rate_limited: Duration,
    /// Rest after 401/403 while the provider has another usable credential:
    /// the key is likely revoked or out of quota.
    pub auth_failed: Duration,
}

impl Default for CooldownPolicy {
    fn default() -> Self {
        CooldownPolicy {
            rate_limited: Duration::from_secs(5),
            auth_failed: Duration::from_secs(300),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BreakerPolicy {
    /// Consecutive failures that open the circuit (0 = never).
    pub failure_threshold: u32,
    pub open_for: Duration,
}

impl Default for BreakerPolicy {
    fn default() -> Self {
        BreakerPolicy {
            failure_threshold: 5,
            open_for: Duration::from_secs(30),
        }
    }
}

/// When each credential of a provider may be used again, since when it has
/// rested, and whether the upstream named the end of its rest.
#[derive(Debug)]
pub struct CredentialRest {
    until: Vec<AtomicU64>,
    since: Vec<AtomicU64>,
    /// The rest ends when the upstream said (Retry-After, x-ratelimit-reset-*).
    hinted: Vec<AtomicBool>,
    /// Logged once per burst of refusals, not per request.
    logged: Vec<AtomicBool>,
}

impl CredentialRest {
    pub fn new(n: usize) -> Self {
        let flags = || (0..n).map(|_| AtomicBool::new(false)).collect();
        let times = || (0..n).map(|_| AtomicU64::new(0)).collect();
        CredentialRest {
            until: times(),
            since: times(),
            hinted: flags(),
            logged: flags(),
        }
    }

    pub fn resting(&self, i: usize, now: u64) -> bool {
        self.until
            .get(i)
            .is_some_and(|u| u.load(Ordering::Relaxed) > now)
    }

    pub fn resting_count(&self, now: u64) -> usize {
        (0..self.until.len())
            .filter(|&i| self.resting(i, now))
            .count()
    }

    pub fn all_resting(&self, now: u64) -> bool {
        !self.until.is_empty() && self.resting_count(now) == self.until.len()
    }

    /// Whether a credential other than `i` could take a request now.
    pub fn other_usable(&self, i: usize, now: u64) -> bool {
        (0..self.until.len()).any(|j| j != i && !self.resting(j, now))
    }

    /// Rest credential `i` for `d`; `hinted` when the upstream named the time.
    pub fn rest(&self, i: usize, d: Duration, hinted: bool, now: u64) {
        let Some(u) = self.until.get(i) else {
            return;
        };
        let end = now + d.as_millis() as u64;
        let prev = u.fetch_max(end, Ordering::Relaxed);
        if prev <= now {
            self.since[i].store(now, Ordering::Relaxed);
        }
        if end >= prev {
            self.hinted[i].store(hinted, Ordering::Relaxed);
        }
    }

    /// The first refusal of credential `i` since it last worked: worth a log line.
    pub fn news(&self, i: usize) -> bool {
        self.logged
            .get(i)
            .is_some_and(|l| !l.swap(true, Ordering::Relaxed))
    }

    /// Credential `i` answered: the next refusal is news again.
    pub fn ok(&self, i: usize) {
        if let Some(l) = self.logged.get(i) {
            l.store(false, Ordering::Relaxed);
        }
    }

    /// A forced attempt on resting credential `i` worked: its rest is over.
    pub fn lift(&self, i: usize) {
        if let Some(u) = self.until.get(i) {
            u.store(0, Ordering::Relaxed);
        }
    }

    /// The credential for a request: the rotation's choice among those not
    /// resting (`picked`), else the one resting longest, or `Err(until)`
    /// when every rest was named by the upstream (it said when to come back).
    pub fn choose(&self, picked: Option<usize>, now: u64) -> Result<Option<usize>, u64> {
        if picked.is_some() {
            return Ok(picked);
        }
        match self.out(&[], now) {
            Some(Skip {
                wait_until: Some(t),
                ..
            }) => Err(t),
            s => Ok(s.and_then(|s| s.cred)),
        }
    }

    /// When every credential not in `tried` rests: the one to force (the
    /// unhinted one resting longest), else when the first named rest ends.
    pub fn out(&self, tried: &[usize], now: u64) -> Option<Skip> {
        let resting = (0..self.until.len()).filter(|i| !tried.contains(i) && self.resting(*i, now));
        let mut best: Option<Skip> = None;
        for i in resting {
            let hinted = self.hinted[i].load(Ordering::Relaxed);
            let s = Skip {
                since: self.since[i].load(Ordering::Relaxed),
                wait_until: hinted.then(|| self.until[i].load(Ordering::Relaxed)),
                cred: Some(i),
            };
            best = Some(match best {
                None => s,
                Some(b) => b.better(s),
            });
        }
        best
    }
}

/// A candidate passed over without an attempt: what the no-alternative rule
/// (`fallback`) needs to know about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Skip {
    /// Since when it has been out (`now_ms` clock).
    pub since: u64,
    /// The upstream named when to come back: never forced before then.
    pub wait_until: Option<u64>,
    /// The credential to force (None: any free one, or none needed).
    pub cred: Option<usize>,
}

impl Skip {
    fn open(since: u64, cred: Option<usize>) -> Skip {
        Skip {
            since,
            wait_until: None,
            cred,
        }
    }

    /// Of two credentials out, the one to prefer: forceable before named
    /// waits, then out longest (or, among waits, back soonest).
    fn better(self, o: Skip) -> Skip {
        match (self.wait_until, o.wait_until) {
            (None, Some(_)) => self,
            (Some(_), None) => o,
            (Some(a), Some(b)) => {
                if b < a {
                    o
                } else {
                    self
                }
            }
            (None, None) => {
                if o.since < self.since {
                    o
                } else {
                    self
                }
            }
        }
    }

    /// The same candidate out for two reasons: out since the earlier; a wait
    /// the upstream named still holds.
    fn and(self, o: Skip) -> Skip {
        Skip {
            since: self.since.min(o.since),
            wait_until: self.wait_until.max(o.wait_until),
            cred: self.cred.or(o.cred),
        }
    }
}

/// Whether a provider is a candidate for the next attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// Attempt with this credential; `probe`: the circuit's half-open probe.
    Go { cred: Option<usize>, probe: bool },
    /// Passed over (health check failed, circuit open, every credential resting).
    Out(Skip),
    /// Every credential not resting was already tried by this request.
    Spent,
}

/// The gate of one provider: `picked` is the credential rotation's choice
/// among those neither resting nor `tried` (None also when none is needed:
/// `needs_cred` false). The breaker is asked last, so its half-open probe
/// is only taken by a request that will be sent.
pub fn gate(
    health: &Health,
    breaker: &Breaker,
    rest: &CredentialRest,
    needs_cred: bool,
    picked: Option<usize>,
    tried: &[usize],
    now: u64,
) -> Gate {
    let mut out = None;
    if needs_cred && picked.is_none() {
        if !tried.is_empty() {
            return Gate::Spent;
        }
        out = rest.out(tried, now);
    }
    if let Some(since) = health.down_since() {
        let s = Skip::open(since, picked);
        out = Some(out.map_or(s, |o| o.and(s)));
    }
    match out {
        None => match breaker.admit(now) {
            Admit::Open => Gate::Out(Skip::open(breaker.opened_at(), picked)),
            a => Gate::Go {
                cred: picked,
                probe: a == Admit::Probe,
            },
        },
        Some(o) => Gate::Out(match breaker.open_since(now) {
            Some(since) => o.and(Skip::open(since, None)),
            None => o,
        }),
    }
}

/// What to do when every candidate of a request was passed over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fallback {
    /// Attempt candidate `i` anyway: it has been out longest.
    Try(usize),
    /// Only named waits: 429 with `Retry-After` until this time.
    Wait(u64),
    /// Nothing was passed over for resting or failing (e.g. limits, disabled).
    Nothing,
}

/// The no-alternative rule over each candidate's skip, in target order (None:
/// not passed over for health, a circuit or a rest).
pub fn fallback(skips: impl IntoIterator<Item = Option<Skip>>) -> Fallback {
    let mut forceable: Option<(u64, usize)> = None;
    let mut wait: Option<u64> = None;
    for (i, s) in skips.into_iter().enumerate() {
        match s {
            Some(Skip {
                wait_until: None,
                since,
                ..
            }) if forceable.is_none_or(|f| (since, i) < f) => forceable = Some((since, i)),
            Some(Skip {
                wait_until: Some(t),
                ..
            }) => wait = Some(wait.map_or(t, |w| w.min(t))),
            _ => {}
        }
    }
    match (forceable, wait) {
        (Some((_, i)), _) => Fallback::Try(i),
        (None, Some(t)) => Fallback::Wait(t),
        (None, None) => Fallback::Nothing,
    }
}

/// What a failed attempt's answer says about its credential and provider.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Verdict {
    /// Rest the credential this long (`hinted`: the upstream named the time)
    /// and move to the provider's next one.
    Rest { rest: Duration, hinted: bool },
    /// Refused, but it is the provider's last usable credential: resting it
    /// would leave the provider nothing; the next request tries it again.
    Refused,
    /// Counts toward the provider's circuit.
    Fault,
    /// Says nothing about the credential or the provider's health
    /// (400, 404, 413, 422, ...; a failure before anything was sent).
    Neutral,
}

/// How an attempt ended, as far as `verdict` cares.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Ended {
    /// An upstream status, with the reset time it named (429).
    Status(u16, Option<Duration>),
    /// Connect error, timeout, broken answer.
    Transport,
    /// Not sent for a local reason (conversion, unresolved address).
    Local,
}

/// The rest/circuit rule for a failed attempt. `cred`: the attempt carried a
/// credential; `other_usable`: the provider has another not resting.
pub fn verdict(e: Ended, cred: bool, other_usable: bool, c: &CooldownPolicy) -> Verdict {
    match e {
        Ended::Status(429, hint) if cred => Verdict::Rest {
            rest: hint.unwrap_or(c.rate_limited),
            hinted: hint.is_some(),
        },
        Ended::Status(401 | 403, _) if cred && other_usable => Verdict::Rest {
            rest: c.auth_failed,
            hinted: false,
        },
        Ended::Status(401 | 403, _) if cred => Verdict::Refused,
        Ended::Status(s, _) if s >= 500 => Verdict::Fault,
        Ended::Transport => Verdict::Fault,
        Ended::Status(..) | Ended::Local => Verdict::Neutral,
    }
}

/// An active health check's result, with when it last turned bad.
#[derive(Debug, Default)]
pub struct Health {
    /// 0 while healthy (or unchecked).
    down_since: AtomicU64,
}

impl Health {
    pub fn up(&self) -> bool {
        self.down_since.load(Ordering::Relaxed) == 0
    }

    pub fn down_since(&self) -> Option<u64> {
        match self.down_since.load(Ordering::Relaxed) {
            0 => None,
            t => Some(t),
        }
    }

    /// Record a check; true when the state changed.
    pub fn set(&self, ok: bool, now: u64) -> bool {
        let want = if ok { 0 } else { now.max(1) };
        if ok == self.up() {
            return false;
        }
        self.down_since.store(want, Ordering::Relaxed);
        true
    }
}

/// Consecutive-failure circuit breaker with one half-open probe.
#[derive(Debug, Default)]
pub struct Breaker {
    failures: AtomicU32,
    open_until: AtomicU64,
    probing: AtomicBool,
    /// When the circuit last went from closed to open.
    opened_at: AtomicU64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    Closed,
    /// The one request allowed through after the open period.
    Probe,
    Open,
}

impl Breaker {
    pub fn admit(&self, now: u64) -> Admit {
        let until = self.open_until.load(Ordering::Acquire);
        if until == 0 {
            return Admit::Closed;
        }
        if now < until {
            return Admit::Open;
        }
        if self
            .probing
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            Admit::Probe
        } else {
            Admit::Open
        }
    }

    pub fn is_open(&self, now: u64) -> bool {
        let until = self.open_until.load(Ordering::Acquire);
        until != 0 && (now < until || self.probing.load(Ordering::Relaxed))
    }

    /// Since when the circuit is open, if it is.
    pub fn open_since(&self, now: u64) -> Option<u64> {
        self.is_open(now).then(|| self.opened_at())
    }

    pub fn opened_at(&self) -> u64 {
        self.opened_at.load(Ordering::Relaxed)
    }

    /// The half-open probe ended with an answer that says nothing about the
    /// provider's health: the next request may probe.
    pub fn release_probe(&self) {
        self.probing.store(false, Ordering::Release);
    }

    pub fn success(&self) {
        self.failures.store(0, Ordering::Relaxed);
        self.open_until.store(0, Ordering::Release);
        self.probing.store(false, Ordering::Release);
    }

    /// Returns true when this failure opened the circuit.
    pub fn failure(&self, p: &BreakerPolicy, now: u64) -> bool {
        if p.failure_threshold == 0 {
            return false;
        }
        let n = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        let was_probe = self.probing.swap(false, Ordering::AcqRel);
        if n >= p.failure_threshold || was_probe {
            let prev = self
                .open_until
                .swap(now + p.open_for.as_millis() as u64 + 1, Ordering::AcqRel);
            if prev == 0 {
                self.opened_at.store(now, Ordering::Relaxed);
            }
            return true;
        }
        false
    }
}

/// When the upstream said a rate-limited credential may come back:
/// `Retry-After`, else OpenAI's `x-ratelimit-reset-{requests,tokens}` for the
/// limit that is spent (`x-ratelimit-remaining-*: 0`), else the later of them.
pub fn reset_hint<'a>(header: impl Fn(&str) -> Option<&'a str>) -> Option<Duration> {
    if let Some(d) = header("retry-after").and_then(parse_retry_after) {
        return Some(d);
    }
    let reset =
        |kind: &str| header(&format!("x-ratelimit-reset-{kind}")).and_then(parse_go_duration);
    let spent = |kind: &str| header(&format!("x-ratelimit-remaining-{kind}")) == Some("0");
    let (r, t) = (reset("requests"), reset("tokens"));
    match (
        spent("requests").then_some(r).flatten(),
        spent("tokens").then_some(t).flatten(),
    ) {
        (None, None) => r.max(t),
        (a, b) => a.max(b),
    }
}

/// A Go duration as OpenAI sends it in `x-ratelimit-reset-*`: `1s`, `6m0s`,
/// `20ms`, `1h2m3.5s`.
pub fn parse_go_duration(v: &str) -> Option<Duration> {
    let mut rest = v.trim();
    if rest.is_empty() {
        return None;
    }
    let mut secs = 0.0f64;
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .filter(|&n| n > 0)?;
        let value: f64 = rest[..n].parse().ok()?;
        rest = &rest[n..];
        let (unit, scale) = [("ms", 0.001), ("h", 3600.0), ("m", 60.0), ("s", 1.0)]
            .into_iter()
            .find(|(u, _)| rest.starts_with(u))?;
        secs += value * scale;
        rest = &rest[unit.len()..];
    }
    secs.is_finite().then(|| Duration::from_secs_f64(secs))
}

/// Seconds (or an HTTP date we don't parse: then None) from `Retry-After`.
pub fn parse_retry_after(v: &str) -> Option<Duration> {
    let v = v.trim();
    v.parse::<u64>().ok().map(Duration::from_secs).or_else(|| {
        v.parse::<f64>()
            .ok()
            .filter(|s| *s >= 0.0 && s.is_finite())
            .map(Duration::from_secs_f64)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_capped_full_jitter() {
        let p = RetryPolicy::default();
        assert_eq!(p.backoff(1, 1.0), Duration::from_millis(100));
        assert_eq!(p.backoff(2, 1.0), Duration::from_millis(200));
        assert_eq!(p.backoff(10, 1.0), Duration::from_millis(2000));
        assert_eq!(p.backoff(3, 0.0), Duration::ZERO);
        assert_eq!(p.backoff(2, 0.5), Duration::from_millis(100));
        assert!(p.retries_status(529) && !p.retries_status(400));
    }

    #[test]
    fn credentials_rest_and_recover() {
        let r = CredentialRest::new(2);
        assert!(!r.resting(0, 10));
        r.rest(0, Duration::from_millis(100), false, 10);
        assert!(r.news(0) && !r.news(0), "logged once per burst");
        r.ok(0);
        assert!(r.news(0), "a refusal after a success is news again");
        r.rest(0, Duration::from_millis(50), false, 20);
        assert!(
            r.resting(0, 109) && !r.resting(0, 110),
            "a shorter rest never cuts a longer one"
        );
        assert!(!r.all_resting(50) && r.other_usable(0, 50) && !r.other_usable(1, 50));
        r.rest(1, Duration::from_millis(100), false, 10);
        assert!(r.all_resting(50));
        assert_eq!(r.resting_count(200), 0);
        r.rest(1, Duration::from_millis(100), false, 300);
        r.lift(1);
        assert!(
            !r.resting(1, 301),
            "a forced attempt that worked ends the rest"
        );
    }

    /// The credential to force: unhinted before hinted, then out longest.
    #[test]
    fn credential_out_prefers_unhinted_then_longest() {
        let r = CredentialRest::new(3);
        r.rest(0, Duration::from_secs(5), true, 100);
        r.rest(1, Duration::from_secs(5), false, 200);
        r.rest(2, Duration::from_secs(5), false, 300);
        let o = r.out(&[], 400).unwrap();
        assert_eq!((o.cred, o.since, o.wait_until), (Some(1), 200, None));
        assert_eq!(r.out(&[1, 2], 400).unwrap().wait_until, Some(5100));
        // Extending a rest keeps its start: out since the first refusal.
        r.rest(2, Duration::from_secs(9), false, 350);
        assert_eq!(r.out(&[1], 400).unwrap().since, 300);
        assert_eq!(r.out(&[0, 1, 2], 400), None);
        assert_eq!(r.choose(Some(2), 400), Ok(Some(2)));
        assert_eq!(r.choose(None, 400), Ok(Some(1)));
        let named = CredentialRest::new(1);
        named.rest(0, Duration::from_secs(2), true, 0);
        assert_eq!(named.choose(None, 10), Err(2000), "the upstream said when");
    }

    #[test]
    fn verdicts_by_answer() {
        let c = CooldownPolicy::default();
        let hint = Some(Duration::from_secs(7));
        let rest = |s: u64, hinted| Verdict::Rest {
            rest: Duration::from_secs(s),
            hinted,
        };
        assert_eq!(
            verdict(Ended::Status(429, None), true, false, &c),
            rest(5, false)
        );
        assert_eq!(
            verdict(Ended::Status(429, hint), true, false, &c),
            rest(7, true)
        );
        assert_eq!(
            verdict(Ended::Status(401, None), true, true, &c),
            rest(300, false)
        );
        assert_eq!(
            verdict(Ended::Status(403, None), true, false, &c),
            Verdict::Refused
        );
        assert_eq!(
            verdict(Ended::Status(401, None), false, false, &c),
            Verdict::Neutral
        );
        for s in [500, 502, 503, 529] {
            assert_eq!(
                verdict(Ended::Status(s, None), true, true, &c),
                Verdict::Fault
            );
        }
        for s in [400, 404, 408, 413, 422] {
            assert_eq!(
                verdict(Ended::Status(s, None), true, true, &c),
                Verdict::Neutral,
                "{s}"
            );
        }
        assert_eq!(verdict(Ended::Transport, false, false, &c), Verdict::Fault);
        assert_eq!(verdict(Ended::Local, true, true, &c), Verdict::Neutral);
    }

    fn skip(since: u64, wait_until: Option<u64>) -> Option<Skip> {
        Some(Skip {
            since,
            wait_until,
            cred: None,
        })
    }

    /// Every candidate passed over: the one out longest is tried; named
    /// waits only when nothing else is left, then the soonest end.
    #[test]
    fn fallback_tries_the_one_out_longest() {
        assert_eq!(
            fallback([skip(50, None), skip(10, None), skip(30, None)]),
            Fallback::Try(1)
        );
        assert_eq!(
            fallback([skip(1, Some(900)), None, skip(40, None)]),
            Fallback::Try(2)
        );
        assert_eq!(
            fallback([skip(1, Some(900)), skip(2, Some(700))]),
            Fallback::Wait(700)
        );
        assert_eq!(fallback([None, None]), Fallback::Nothing);
        assert_eq!(fallback([]), Fallback::Nothing);
    }

    #[test]
    fn gate_passes_over_and_says_why() {
        let (h, b, r) = (
            Health::default(),
            Breaker::default(),
            CredentialRest::new(1),
        );
        let p = BreakerPolicy {
            failure_threshold: 1,
            open_for: Duration::from_millis(100),
        };
        let go = Gate::Go {
            cred: Some(0),
            probe: false,
        };
        assert_eq!(gate(&h, &b, &r, true, Some(0), &[], 10), go);
        assert_eq!(gate(&h, &b, &r, true, None, &[0], 10), Gate::Spent);
        // Circuit open since 20.
        b.failure(&p, 20);
        assert_eq!(
            gate(&h, &b, &r, true, Some(0), &[], 30),
            Gate::Out(Skip::open(20, Some(0)))
        );
        // Credential resting since 25 as well: out since the earlier, forced on that credential.
        r.rest(0, Duration::from_secs(1), false, 25);
        assert_eq!(
            gate(&h, &b, &r, true, None, &[], 30),
            Gate::Out(Skip::open(20, Some(0)))
        );
        // A named wait holds even with the circuit open.
        r.rest(0, Duration::from_secs(2), true, 26);
        let Gate::Out(s) = gate(&h, &b, &r, true, None, &[], 30) else {
            panic!("resting credential not passed over")
        };
        assert_eq!(s.wait_until, Some(2026));
        // After the open period: the half-open probe, once.
        let (b, r) = (Breaker::default(), CredentialRest::new(0));
        b.failure(&p, 0);
        assert_eq!(
            gate(&h, &b, &r, false, None, &[], 200),
            Gate::Go {
                cred: None,
                probe: true
            }
        );
        assert!(matches!(
            gate(&h, &b, &r, false, None, &[], 200),
            Gate::Out(_)
        ));
        b.release_probe();
        assert_eq!(
            gate(&h, &b, &r, false, None, &[], 201),
            Gate::Go {
                cred: None,
                probe: true
            }
        );
        // A failed health check is a reason too; recovery ends it.
        let b = Breaker::default();
        assert!(h.set(false, 500) && !h.set(false, 600));
        assert_eq!(
            gate(&h, &b, &r, false, None, &[], 700),
            Gate::Out(Skip::open(500, None))
        );
        assert!(h.set(true, 800));
        assert_eq!(
            gate(&h, &b, &r, false, None, &[], 900),
            Gate::Go {
                cred: None,
                probe: false
            }
        );
    }

    #[test]
    fn reset_hints() {
        let h = |pairs: &'static [(&'static str, &'static str)]| {
            reset_hint(move |n| pairs.iter().find(|(k, _)| *k == n).map(|(_, v)| *v))
        };
        assert_eq!(
            h(&[("retry-after", "3"), ("x-ratelimit-reset-requests", "9s")]),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            h(&[
                ("x-ratelimit-reset-requests", "1s"),
                ("x-ratelimit-reset-tokens", "6m0s"),
                ("x-ratelimit-remaining-requests", "0")
            ]),
            Some(Duration::from_secs(1)),
            "the spent limit's reset"
        );
        assert_eq!(
            h(&[
                ("x-ratelimit-reset-requests", "20ms"),
                ("x-ratelimit-reset-tokens", "2s")
            ]),
            Some(Duration::from_secs(2))
        );
        assert_eq!(h(&[]), None);
        assert_eq!(
            parse_go_duration("1h2m3.5s"),
            Some(Duration::from_secs_f64(3723.5))
        );
        assert_eq!(parse_go_duration("20ms"), Some(Duration::from_millis(20)));
        for bad in ["", "5", "s", "1x", "-1s"] {
            assert_eq!(parse_go_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn breaker_opens_probes_and_closes() {
        let p = BreakerPolicy {
            failure_threshold: 2,
            open_for: Duration::from_millis(100),
        };
        let b = Breaker::default();
        assert_eq!(b.admit(0), Admit::Closed);
        assert!(!b.failure(&p, 0));
        assert!(b.failure(&p, 0));
        assert_eq!(b.admit(50), Admit::Open);
        assert_eq!(b.admit(200), Admit::Probe);
        assert_eq!(b.admit(200), Admit::Open, "only one probe");
        assert!(b.failure(&p, 200), "failed probe re-opens");
        assert_eq!(b.admit(250), Admit::Open);
        assert_eq!(b.admit(400), Admit::Probe);
        b.success();
        assert_eq!(b.admit(400), Admit::Closed);
    }

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after("7"), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after("0.5"), Some(Duration::from_millis(500)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
    }
}
