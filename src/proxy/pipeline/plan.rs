//! Plan: the targets a request may go to, in order, and the loop that
//! tries them: per target the gates (its own limit, disabled provider,
//! credential rest, circuit), then an attempt (`attempt`), and what its
//! failure says about the next one.

use super::attempt::attempt;
use super::intake::Ask;
use super::outcome::{
    Attempt, Failure, failure_text, judge, outcome_label, provider_answered, sent,
};
use super::respond::{estimate_count, fail, upstream_wait};
use super::{Step, answered};
use crate::auth::GatewayKey;
use crate::limits::Holds;
use crate::limits::Limiter;
use crate::providers::Op;
use crate::providers::Provider;
use crate::proxy::ctx::{RequestCtx, Settle};
use crate::proxy::respond;
use crate::resilience::{self, Fallback, Gate, Skip};
use crate::runtime::Snapshot;
use crate::runtime::snapshot::Resolved;
use crate::translate::{self, Format};
use pingora_core::protocols::http::ServerSession as Session;
use pingora_proxy::SubrequestSpawner;
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// Per-request state of the attempt loop, shared by its steps.
struct Tries {
    last: Option<Failure>,
    /// Per target: it cannot serve this request at all (conversion
    /// impossible), and why it was passed over without an attempt (for
    /// `resilience::fallback`). One vector: one allocation per request.
    per_target: Vec<(bool, Option<Skip>)>,
    on_provider: Vec<u32>,
    prev: Option<usize>,
    /// (provider, credential) refused or rate limited during this request:
    /// not tried again by it, resting or not.
    refused: Vec<(usize, usize)>,
    /// What a target's tpm reserves per attempt, like a key's.
    estimate: u64,
    /// A token count: target limits are not taken (README "Limits").
    counting: bool,
}

/// How one target's turn ended.
enum Turn {
    /// The client has its answer.
    Answered,
    Tried,
    Skipped,
}

/// Run attempts over `targets` until one answers, per the retry policy:
/// a credential-specific failure (429, 401, 403) moves to the provider's next
/// credential, a provider failure (connect, timeout, 5xx, 529) to the next
/// target; rounds repeat over the targets (with backoff on the same provider)
/// until `retry.max_attempts`. Resting credentials and open circuits are
/// skipped, not waited for; when that leaves the request without any attempt,
/// the candidate out longest is tried anyway (`resilience::fallback`). On
/// total failure the client gets the last error.
pub(crate) async fn run(
    spawner: &SubrequestSpawner,
    limiter: &Arc<Limiter>,
    s: &mut Session,
    ctx: &mut RequestCtx,
    ask: &mut Ask,
    targets: Vec<Resolved>,
) -> pingora_core::Result<()> {
    let budget = ctx.snap.retry.max_attempts;
    let mut tries = Tries {
        last: None,
        per_target: vec![(false, None); targets.len()],
        on_provider: vec![0; ctx.snap.providers.len()],
        prev: None,
        refused: Vec::new(),
        estimate: crate::limits::estimate_tokens(ask.body.len(), ask.peeked.max_output),
        // Counting is free at the providers and limited apart from generation:
        // it takes nothing from a target's limits (README "Limits").
        counting: ask.op == Op::CountTokens,
    };
    loop {
        let mut progressed = false;
        for (ti, t) in targets.iter().enumerate() {
            if tries.per_target[ti].0 {
                continue;
            }
            let p = &ctx.snap.providers[t.provider];
            if tries.counting && !translate::count::has_endpoint(p.format) {
                let snap = ctx.snap.clone();
                return estimate_count(s, ctx, ask, &snap.providers[t.provider], t).await;
            }
            match turn(spawner, limiter, s, ctx, ask, t, ti, &mut tries, None).await? {
                Turn::Answered => return Ok(()),
                Turn::Tried => progressed = true,
                Turn::Skipped => {}
            }
        }
        if !progressed || ctx.attempts >= budget {
            break;
        }
    }
    if ctx.attempts == 0 {
        match resilience::fallback(tries.per_target.iter().map(|t| t.1)) {
            Fallback::Try(ti) => {
                let force = tries.per_target[ti].1;
                let t = &targets[ti];
                if let Turn::Answered =
                    turn(spawner, limiter, s, ctx, ask, t, ti, &mut tries, force).await?
                {
                    return Ok(());
                }
            }
            Fallback::Wait(until) => {
                let snap = ctx.snap.clone();
                let name = waiting_provider(&snap, &targets, &tries.per_target, until);
                return upstream_wait(s, ctx, ask.ingress, name, until).await;
            }
            Fallback::Nothing => {}
        }
    }
    fail(s, ctx, ask.ingress, tries.last).await
}

/// One target's turn: attempts on its provider's credentials until one
/// answers or the failure says to move on. `force`: the no-alternative
/// attempt, made once despite a rest or an open circuit.
#[allow(clippy::too_many_arguments)]
async fn turn(
    spawner: &SubrequestSpawner,
    limiter: &Arc<Limiter>,
    s: &mut Session,
    ctx: &mut RequestCtx,
    ask: &mut Ask,
    t: &Resolved,
    ti: usize,
    tries: &mut Tries,
    force: Option<Skip>,
) -> pingora_core::Result<Turn> {
    let snap = ctx.snap.clone();
    let p = &snap.providers[t.provider];
    let mut tried: Vec<usize> = tries
        .refused
        .iter()
        .filter(|(pi, _)| *pi == t.provider)
        .map(|(_, c)| *c)
        .collect();
    let mut turn = Turn::Skipped;
    while ctx.attempts < snap.retry.max_attempts
        && tries.on_provider[t.provider] < p.retry.max_attempts
    {
        let now = resilience::now_ms();
        let Some(go) = gate(limiter, p, t, ti, tries, &tried, force, now).await else {
            break;
        };
        turn = Turn::Tried;
        let (cred, probe) = (go.cred, go.probe);
        let r = try_once(
            spawner,
            limiter,
            s,
            ctx,
            ask,
            p,
            t,
            tries,
            go,
            force.is_some(),
        );
        let Some(failure) = r.await? else {
            return Ok(Turn::Answered);
        };
        note_failure(ctx, p, &failure);
        let next_credential = judge(p, &snap, &failure, cred, probe, &mut tried);
        if let (true, Some(i)) = (next_credential, cred) {
            tries.refused.push((t.provider, i));
        }
        if matches!(failure, Failure::Convert(_) | Failure::Unusable(_)) {
            tries.per_target[ti].0 = true;
        }
        if is_final(p, &failure, next_credential) {
            fail(s, ctx, ask.ingress, Some(failure)).await?;
            return Ok(Turn::Answered);
        }
        tries.last = Some(failure);
        if !next_credential || force.is_some() {
            break;
        }
    }
    Ok(turn)
}

/// What passing a target's gate gives an attempt.
struct Go {
    /// The target's limit hold, settled after the attempt.
    hold: Option<Holds>,
    cred: Option<usize>,
    /// This attempt is the circuit's half-open probe.
    probe: bool,
}

/// One attempt with the gate's credential, after the backoff that a repeat
/// on the same provider waits; the limit hold settled after it. `None`: the
/// client has its answer.
#[allow(clippy::too_many_arguments)]
async fn try_once(
    spawner: &SubrequestSpawner,
    limiter: &Arc<Limiter>,
    s: &mut Session,
    ctx: &mut RequestCtx,
    ask: &mut Ask,
    p: &Provider,
    t: &Resolved,
    tries: &mut Tries,
    go: Go,
    forced: bool,
) -> pingora_core::Result<Option<Failure>> {
    if tries.prev == Some(t.provider) {
        let n = tries.on_provider[t.provider];
        tokio::time::sleep(p.retry.backoff(n, rand::random::<f64>())).await;
    }
    tries.prev = Some(t.provider);
    tries.on_provider[t.provider] += 1;
    ctx.provider.clone_from(&p.name);
    ctx.upstream_model.clone_from(&t.model);
    p.inflight.fetch_add(1, Ordering::Relaxed);
    let key = go.cred.and_then(|i| p.credentials.key(i));
    ctx.settle = Some(Settle {
        cred: go.cred,
        forced,
    });
    let r = attempt(spawner, s, ctx, ask, p, t, key).await;
    // Settled by the answer already (`answered_ok`), unless it failed.
    let settle = ctx.settle.take();
    p.inflight.fetch_sub(1, Ordering::Relaxed);
    settle_hold(limiter, ctx, go.hold, &r).await;
    match r {
        Ok(Attempt::Done) => {
            if let Some(st) = settle {
                provider_answered(p, st);
            }
            Ok(None)
        }
        Ok(Attempt::Failed(f)) => Ok(Some(f)),
        Err(e) => {
            if go.probe {
                p.breaker.release_probe();
            }
            Err(e)
        }
    }
}

/// A failed attempt, counted by outcome and logged.
fn note_failure(ctx: &RequestCtx, p: &Provider, f: &Failure) {
    crate::metrics::METRICS
        .attempts
        .with_label_values(&[&p.name, outcome_label(f)])
        .inc();
    log::debug!(
        "request {} attempt on {} failed: {}",
        ctx.request_id,
        p.name,
        failure_text(f)
    );
}

/// A non-retryable answer (a 400 about the request, say) goes straight back:
/// another target would refuse it too. So does a full answer budget: another
/// target's answer needs the same room.
fn is_final(p: &Provider, f: &Failure, next_credential: bool) -> bool {
    match f {
        Failure::Status(st, ..) => {
            // Final unless the policy retries it or another credential may answer.
            !(p.retry.retries_status(*st) || (next_credential && matches!(st, 401 | 403)))
        }
        Failure::Busy(_) => true,
        _ => false,
    }
}

/// Take the target's own limit and pass its provider's gate.
/// None: passed over, and why is recorded in `tries`.
#[allow(clippy::too_many_arguments)]
async fn gate(
    limiter: &Arc<Limiter>,
    p: &Provider,
    t: &Resolved,
    ti: usize,
    tries: &mut Tries,
    tried: &[usize],
    force: Option<Skip>,
    now: u64,
) -> Option<Go> {
    if p.disabled {
        set_unusable(
            &mut tries.last,
            Failure::Unusable(format!(
                "provider '{}' is disabled: no credential key is set",
                p.name
            )),
        );
        return None;
    }
    // A target at its own limit is skipped, not hit; taken before the gate,
    // whose half-open probe must not be wasted on it.
    let mut hold = match &t.limits {
        None => None,
        Some(_) if tries.counting => None,
        Some(tl) => match limiter.admit_target(tl, tries.estimate).await {
            Ok(h) => Some(h),
            Err(r) => {
                set_unusable(&mut tries.last, Failure::Limited(r));
                return None;
            }
        },
    };
    match provider_gate(p, tried, force, now) {
        Gate::Go { cred, probe } => Some(Go { hold, cred, probe }),
        Gate::Out(skip) => {
            if let Some(h) = &mut hold {
                limiter.give_back(h).await;
            }
            if tried.is_empty() {
                log::debug!("provider '{}' passed over: {skip:?}", p.name);
                tries.per_target[ti].1 = Some(skip);
            }
            None
        }
        Gate::Spent => {
            if let Some(h) = &mut hold {
                limiter.give_back(h).await;
            }
            None
        }
    }
}

/// The provider's gate: a credential that is not resting nor already tried
/// by this request, and its circuit.
fn provider_gate(p: &Provider, tried: &[usize], force: Option<Skip>, now: u64) -> Gate {
    let needs = !p.credentials.is_empty();
    let picked = || {
        p.credentials
            .pick_where(p.fill_first, |i| {
                !p.rest.resting(i, now) && !tried.contains(&i)
            })
            .map(|(i, _)| i)
    };
    match force {
        // No alternative is left: tried despite its rest or open circuit,
        // whose probe this attempt then is (a success closes it).
        Some(f) => Gate::Go {
            cred: f.cred.or_else(picked).or(needs.then_some(0)),
            probe: false,
        },
        None => resilience::gate(&p.health, &p.breaker, &p.rest, needs, picked(), tried, now),
    }
}

/// Settle a target's limit hold after an attempt.
async fn settle_hold(
    limiter: &Arc<Limiter>,
    ctx: &mut RequestCtx,
    hold: Option<Holds>,
    r: &pingora_core::Result<Attempt>,
) {
    let Some(mut h) = hold else {
        return;
    };
    match r {
        // A failed attempt used no tokens; one never sent took no request
        // from the upstream's quota either.
        Ok(Attempt::Failed(f)) if sent(f) => limiter.reconcile(&mut h, None, None, true).await,
        Ok(Attempt::Failed(_)) => limiter.give_back(&mut h).await,
        // Settled with the reported usage when the request ends.
        _ => ctx.holds.absorb(h),
    }
}

/// The provider whose named wait ends at `until`, for the 429's message.
fn waiting_provider<'a>(
    snap: &'a crate::runtime::Snapshot,
    targets: &[Resolved],
    per_target: &[(bool, Option<Skip>)],
    until: u64,
) -> &'a str {
    per_target
        .iter()
        .position(|(_, s)| s.is_some_and(|s| s.wait_until == Some(until)))
        .map_or("", |ti| snap.providers[targets[ti].provider].name.as_str())
}

/// Record that a target could not be tried, unless a real upstream failure
/// is already known (that one says more to the client). A target at its limit
/// outranks an unusable one (the client learns when to come back), and among
/// those the soonest to have room wins.
fn set_unusable(last: &mut Option<Failure>, f: Failure) {
    let replace = match (&*last, &f) {
        (None | Some(Failure::Unusable(_)), _) => true,
        (Some(Failure::Limited(a)), Failure::Limited(b)) => b.retry_after < a.retry_after,
        _ => false,
    };
    if replace {
        *last = Some(f);
    }
}

/// The targets of the models asked for, in order, each tried once; `None`
/// when the client has its answer (a model the key may not use, or one not
/// configured).
pub async fn targets(
    s: &mut Session,
    ctx: &mut RequestCtx,
    snap: &Snapshot,
    key: Option<&GatewayKey>,
    efmt: Format,
    models: &[String],
) -> Step<Vec<Resolved>> {
    let mut targets: Vec<Resolved> = vec![];
    for model in models {
        if let Some(k) = key
            && !k.allows(model)
        {
            let msg = format!("gateway key '{}' may not use model '{}'", k.id, model);
            return answered(respond::error(s, ctx, efmt, 403, &msg, Some("model")).await);
        }
        let Some(t) = snap.resolve_model(model) else {
            let msg = format!("model '{model}' is not configured on this gateway");
            return answered(respond::error(s, ctx, efmt, 404, &msg, Some("model")).await);
        };
        for r in t {
            // The same target under two names is tried once.
            if !targets
                .iter()
                .any(|x| x.provider == r.provider && x.model == r.model)
            {
                targets.push(r);
            }
        }
    }
    Ok(Some(targets))
}
