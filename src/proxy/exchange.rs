//! The upstream exchange for AI routes, driven from `request_filter`.
//!
//! Design decision (README "Design: one request, one subrequest per
//! attempt"): Pingora picks the upstream before it reads the body and replays
//! a pre-read body only from a 64 KiB retry buffer, so AI routes read the
//! whole body here, then make each attempt a Pingora subrequest (`subreq`)
//! with that target's converted body, and relay its answer themselves,
//! converting it chunk by chunk and holding the head until the first content.

use super::ctx::RequestCtx;
use super::head::{self, Body, Marks};
use super::headers::client_response;
use super::pipeline::attempt::{
    Attempt, Failure, MAX_ANSWER_BODY, MAX_ERROR_BODY, attempt, classify, count_outcome,
    failure_text, get_str, judge, next_chunk, outcome_label, read_all, sent, status_failure,
};
use super::pipeline::intake::Ask;
use super::respond;
use super::stream;
use super::subreq::{Answer, ready_now};
use crate::config::file::ProviderKind;
use crate::config::runtime::{Provider, Resolved};
use crate::limits::Holds;
use crate::limits::Limiter;
use crate::providers::Op;
use crate::resilience::{self, Fallback, Gate, Skip};
use crate::sse;
use crate::translate::{self, Format, StreamTranslator};
use bytes::Bytes;
use pingora_core::ErrorType;
use pingora_core::protocols::http::ServerSession as Session;
use pingora_http::ResponseHeader;
use pingora_proxy::SubrequestSpawner;
use serde_json::Value;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

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
pub async fn run(
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
        let Some((hold, cred, probe)) = admit(limiter, p, t, ti, tries, &tried, force, now).await
        else {
            break;
        };
        if tries.prev == Some(t.provider) {
            let n = tries.on_provider[t.provider];
            tokio::time::sleep(p.retry.backoff(n, rand::random::<f64>())).await;
        }
        tries.prev = Some(t.provider);
        turn = Turn::Tried;
        tries.on_provider[t.provider] += 1;
        ctx.provider.clone_from(&p.name);
        ctx.upstream_model.clone_from(&t.model);
        p.inflight.fetch_add(1, Ordering::Relaxed);
        let key = cred.and_then(|i| p.credentials.key(i));
        let r = attempt(spawner, s, ctx, ask, p, t, key).await;
        p.inflight.fetch_sub(1, Ordering::Relaxed);
        settle_hold(limiter, ctx, hold, &r).await;
        let failure = match r {
            Ok(Attempt::Done) => {
                answered(p, cred, force.is_some());
                return Ok(Turn::Answered);
            }
            Ok(Attempt::Failed(f)) => f,
            Err(e) => {
                if probe {
                    p.breaker.release_probe();
                }
                return Err(e);
            }
        };
        crate::metrics::METRICS
            .attempts
            .with_label_values(&[&p.name, outcome_label(&failure)])
            .inc();
        log::debug!(
            "request {} attempt on {} failed: {}",
            ctx.request_id,
            p.name,
            failure_text(&failure)
        );
        let next_credential = judge(p, &snap, &failure, cred, probe, &mut tried);
        if let (true, Some(i)) = (next_credential, cred) {
            tries.refused.push((t.provider, i));
        }
        if matches!(failure, Failure::Convert(_) | Failure::Unusable(_)) {
            tries.per_target[ti].0 = true;
        }
        // A non-retryable answer (a 400 about the request, say) goes
        // straight back: another target would refuse it too. So does a
        // full answer budget: another target's answer needs the same room.
        let final_status = match &failure {
            Failure::Status(st, ..) => {
                // Final unless the policy retries it or another credential may answer.
                !(p.retry.retries_status(*st) || (next_credential && matches!(st, 401 | 403)))
            }
            Failure::Busy(_) => true,
            _ => false,
        };
        if final_status {
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

/// Take the target's own limit and pass its provider's gate: the limit hold,
/// the credential, and whether this attempt is the circuit's half-open probe.
/// None: passed over, and why is recorded in `tries`.
#[allow(clippy::too_many_arguments)]
async fn admit(
    limiter: &Arc<Limiter>,
    p: &Provider,
    t: &Resolved,
    ti: usize,
    tries: &mut Tries,
    tried: &[usize],
    force: Option<Skip>,
    now: u64,
) -> Option<(Option<Holds>, Option<usize>, bool)> {
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
    let needs = !p.credentials.is_empty();
    let picked = || {
        p.credentials
            .pick_where(p.fill_first, |i| {
                !p.rest.resting(i, now) && !tried.contains(&i)
            })
            .map(|(i, _)| i)
    };
    let gate = match force {
        // No alternative is left: tried despite its rest or open circuit,
        // whose probe this attempt then is (a success closes it).
        Some(f) => Gate::Go {
            cred: f.cred.or_else(picked).or(needs.then_some(0)),
            probe: false,
        },
        None => resilience::gate(&p.health, &p.breaker, &p.rest, needs, picked(), tried, now),
    };
    match gate {
        Gate::Go { cred, probe } => Some((hold, cred, probe)),
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

/// The provider answered: its circuit closes, and a forced attempt's
/// credential ends its rest.
fn answered(p: &Provider, cred: Option<usize>, forced: bool) {
    p.breaker.success();
    if let Some(i) = cred {
        p.rest.ok(i);
        if forced {
            p.rest.lift(i);
        }
    }
}

/// The provider whose named wait ends at `until`, for the 429's message.
fn waiting_provider<'a>(
    snap: &'a crate::config::runtime::Snapshot,
    targets: &[Resolved],
    per_target: &[(bool, Option<Skip>)],
    until: u64,
) -> &'a str {
    per_target
        .iter()
        .position(|(_, s)| s.is_some_and(|s| s.wait_until == Some(until)))
        .map_or("", |ti| snap.providers[targets[ti].provider].name.as_str())
}

/// Every candidate rests under the upstream's own reset time: the client
/// gets 429 with the remaining `Retry-After`, since the upstream said when.
async fn upstream_wait(
    s: &mut Session,
    ctx: &mut RequestCtx,
    ingress: Format,
    provider: &str,
    until: u64,
) -> pingora_core::Result<()> {
    let left = Duration::from_millis(until.saturating_sub(resilience::now_ms()));
    let secs = left.as_secs_f64().ceil().max(1.0);
    ctx.extra_headers.push(("retry-after", secs.to_string()));
    let msg =
        format!("provider '{provider}' is rate limited: the upstream asked to retry after {secs}s");
    respond::error(s, ctx, ingress, 429, &msg, None).await
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

/// Every target failed: the last upstream status (converted), else 502/504.
async fn fail(
    s: &mut Session,
    ctx: &mut RequestCtx,
    ingress: Format,
    last: Option<Failure>,
) -> pingora_core::Result<()> {
    let Some(f) = last else {
        return respond::error(
            s,
            ctx,
            ingress,
            502,
            "no upstream target is configured for this model",
            None,
        )
        .await;
    };
    match f {
        Failure::Status(status, header, body, from) => {
            relay_error(s, ctx, ingress, from, status, &header, &body).await
        }
        Failure::Convert(e) => {
            respond::error(s, ctx, ingress, e.status, &e.message, e.param.as_deref()).await
        }
        Failure::Timeout(m) => {
            respond::error(
                s,
                ctx,
                ingress,
                504,
                &format!("upstream timed out ({m})"),
                None,
            )
            .await
        }
        Failure::Unusable(m) | Failure::Busy(m) => {
            respond::error(s, ctx, ingress, 503, &m, None).await
        }
        // Every target is at its limit: 429 with the shortest Retry-After.
        Failure::Limited(r) => respond::refusal(s, ctx, ingress, r).await,
        Failure::Connect(m) | Failure::Io(m) => {
            respond::error(
                s,
                ctx,
                ingress,
                502,
                &format!("upstream unavailable ({m})"),
                None,
            )
            .await
        }
    }
}

/// An upstream error answer, in the client's format, with the upstream status.
async fn relay_error(
    s: &mut Session,
    ctx: &mut RequestCtx,
    ingress: Format,
    from: Format,
    status: u16,
    header: &ResponseHeader,
    body: &[u8],
) -> pingora_core::Result<()> {
    ctx.error = Some(format!("upstream status {status}"));
    let converted = translate::convert_error(from, ingress, status, body);
    let mut extra = vec![];
    if let Some(ra) = get_str(header, "retry-after") {
        extra.push(("retry-after", ra.to_string()));
    }
    respond::send(s, ctx, status, "application/json", converted, &extra).await
}

/// A successful upstream answer (head read, status < 400) to the client, by
/// kind: embeddings converted from Gemini, a token count, a stream, a whole
/// answer.
pub(crate) async fn answer(
    s: &mut Session,
    ctx: &mut RequestCtx,
    up: Answer,
    p: &Provider,
    ask: &Ask,
    to: Format,
) -> pingora_core::Result<Attempt> {
    if let (Op::Embeddings, Format::Gemini, Some(info)) = (ask.op, to, &ask.embeddings) {
        return embeddings_answer(s, ctx, up, p, ask, info).await;
    }
    if ask.op == Op::CountTokens {
        return count_answer(s, ctx, up, p, ask, to).await;
    }
    if ask.stream() {
        return Box::pin(stream_answer(s, ctx, up, p, ask, to)).await;
    }
    whole_answer(s, ctx, up, p, ask, to).await
}

/// A Gemini embeddings answer, read whole and converted to OpenAI's shape.
async fn embeddings_answer(
    s: &mut Session,
    ctx: &mut RequestCtx,
    mut up: Answer,
    p: &Provider,
    ask: &Ask,
    info: &translate::embeddings::EmbeddingsInfo,
) -> pingora_core::Result<Attempt> {
    let status = up.status();
    let (body, _held) = match read_all(&mut up, ctx, p, MAX_ANSWER_BODY).await {
        Ok(b) => b,
        Err(f) => return Ok(Attempt::Failed(f)),
    };
    up.finish().await;
    match translate::embeddings::gemini_to_openai_response(&body, info) {
        Ok(a) => {
            ctx.usage = Some(crate::ir::Usage {
                input: a.prompt_tokens,
                ..Default::default()
            });
            if a.estimated {
                ctx.tokens_estimated = true;
                ctx.error = Some("usage estimated: Gemini reported no token count".into());
            }
            ctx.first_byte = Some(Instant::now());
            count_outcome(p, "ok");
            respond::send(s, ctx, status, "application/json", a.body, &[]).await?;
        }
        Err(e) => {
            let msg = format!("could not convert the upstream answer: {}", e.message);
            respond::error(s, ctx, ask.ingress, 502, &msg, None).await?;
        }
    }
    Ok(Attempt::Done)
}

/// A whole (non-streamed) answer: as it came when the formats match, else
/// converted to the client's format.
async fn whole_answer(
    s: &mut Session,
    ctx: &mut RequestCtx,
    mut up: Answer,
    p: &Provider,
    ask: &Ask,
    to: Format,
) -> pingora_core::Result<Attempt> {
    let status = up.status();
    // The client's head, from the upstream's before the session goes.
    let head = if to == ask.ingress {
        let header = up.head();
        let mut h = client_response(header, status, false, None)?;
        if let Some(ct) = header.headers.get("content-type") {
            h.insert_header("content-type", ct.clone())?;
        }
        Some(h)
    } else {
        None
    };
    // A whole answer is read before anything is sent, so one cut short
    // fails over like any other failed attempt.
    let (body, _held) = match read_all(&mut up, ctx, p, MAX_ANSWER_BODY).await {
        Ok(b) => b,
        Err(f) => return Ok(Attempt::Failed(f)),
    };
    up.finish().await;
    ctx.usage = translate::response_usage(to, &body);
    if let Some(h) = head {
        count_outcome(p, "ok");
        send_whole(s, ctx, h, body).await?;
        return Ok(Attempt::Done);
    }
    count_outcome(p, "ok");
    match translate::convert_response(to, ask.ingress, &body, &ask.resp_opts) {
        Ok(out) => {
            ctx.first_byte = Some(Instant::now());
            respond::send(s, ctx, status, "application/json", out, &[]).await?;
        }
        Err(e) => {
            let msg = format!("could not convert the upstream answer: {}", e.message);
            respond::error(s, ctx, ask.ingress, 502, &msg, None).await?;
        }
    }
    Ok(Attempt::Done)
}

/// A same-format answer read whole: its head completed for that length, then
/// head and body to the client.
async fn send_whole(
    s: &mut Session,
    ctx: &mut RequestCtx,
    mut h: ResponseHeader,
    body: Bytes,
) -> pingora_core::Result<()> {
    head::complete(
        &mut h,
        &Marks::of(ctx),
        Body::Length(body.len()),
        s.is_http2(),
    )?;
    respond::write_head(s, ctx, h).await?;
    write_body(s, ctx, body, true).await
}

/// A counting answer (status < 400) to the client: as it came when the
/// formats match, else its count in the client's shape. Counting uses no
/// tokens, so none are recorded.
#[allow(clippy::too_many_arguments)]
async fn count_answer(
    s: &mut Session,
    ctx: &mut RequestCtx,
    mut up: Answer,
    p: &Provider,
    ask: &Ask,
    from: Format,
) -> pingora_core::Result<Attempt> {
    let status = up.status();
    let head = if from == ask.ingress {
        let mut h = client_response(up.head(), status, false, None)?;
        h.insert_header("content-type", "application/json")?;
        Some(h)
    } else {
        None
    };
    let (body, _held) = match read_all(&mut up, ctx, p, MAX_ERROR_BODY).await {
        Ok(b) => b,
        Err(f) => return Ok(Attempt::Failed(f)),
    };
    up.finish().await;
    count_outcome(p, "ok");
    if let Some(h) = head {
        send_whole(s, ctx, h, body).await?;
        return Ok(Attempt::Done);
    }
    match translate::count::answer_count(from, &body) {
        Some(n) => {
            let out = translate::count::answer_body(ask.ingress, n);
            ctx.first_byte = Some(Instant::now());
            respond::send(s, ctx, status, "application/json", out, &[]).await?;
        }
        None => {
            let msg = "could not read the token count in the upstream answer";
            respond::error(s, ctx, ask.ingress, 502, msg, None).await?;
        }
    }
    Ok(Attempt::Done)
}

/// A count for a target whose API cannot count (OpenAI): estimated from the
/// request converted for it, and marked `x-aigate-estimated: true`. Nothing
/// is sent upstream, so no attempt is made or counted.
async fn estimate_count(
    s: &mut Session,
    ctx: &mut RequestCtx,
    ask: &mut Ask,
    p: &Provider,
    t: &Resolved,
) -> pingora_core::Result<()> {
    let compatible = p.kind == ProviderKind::OpenaiCompatible;
    let body = match ask.count_body_for(p.format, &t.model, compatible) {
        // The estimate is made from the converted body: named like an answer.
        Ok((b, dropped)) => {
            ctx.dropped = dropped;
            b
        }
        Err(e) => {
            return respond::error(
                s,
                ctx,
                ask.ingress,
                e.status,
                &e.message,
                e.param.as_deref(),
            )
            .await;
        }
    };
    let tree: Value = serde_json::from_slice(&body).unwrap_or_default();
    let n = translate::count::estimate(&tree);
    ctx.provider.clone_from(&p.name);
    ctx.upstream_model.clone_from(&t.model);
    let out = translate::count::answer_body(ask.ingress, n);
    ctx.first_byte = Some(Instant::now());
    let mark = [("x-aigate-estimated", "true".to_string())];
    respond::send(s, ctx, 200, "application/json", out, &mark).await
}

async fn write_body(
    s: &mut Session,
    ctx: &mut RequestCtx,
    data: Bytes,
    end: bool,
) -> pingora_core::Result<()> {
    if ctx.first_byte.is_none() && !data.is_empty() {
        ctx.first_byte = Some(Instant::now());
    }
    let t = Instant::now();
    let r = s.write_response_body(data, end).await;
    ctx.client_wait += t.elapsed();
    r
}

/// Gathering stops past this many bytes for the client (the client-side
/// write buffer is 16 KiB; a larger write goes out directly).
const GATHER_LIMIT: usize = 64 * 1024;

/// What the client connection did while we waited on the upstream.
enum Wait {
    Chunk(Result<Option<Bytes>, Failure>),
    Tick,
    ClientGone,
}

/// The next upstream chunk; meanwhile notice a client that disconnects and,
/// every `keepalive`, come back with `Tick` (the chunk read stays pending).
async fn wait_chunk(
    fut: &mut std::pin::Pin<&mut impl std::future::Future<Output = Result<Option<Bytes>, Failure>>>,
    s: &mut Session,
    keepalive: Option<Duration>,
    watch_client: bool,
) -> Wait {
    if !watch_client {
        // A sized answer can be complete for the client before the upstream's
        // end is read; the client may then send its next request on the same
        // connection, which an idle watch would take for a protocol error.
        return Wait::Chunk(fut.as_mut().await);
    }
    let idle = async {
        tokio::select! {
            r = s.read_body_or_idle(true) => match r {
                // Data from a client that sent its whole body is not a disconnect.
                Ok(Some(_)) => std::future::pending().await,
                _ => Wait::ClientGone,
            },
            _ = async {
                match keepalive {
                    // tokio's: pingora's fast sleep would start its clock thread.
                    Some(k) => tokio::time::sleep(k).await,
                    None => std::future::pending().await,
                }
            } => Wait::Tick,
        }
    };
    tokio::select! {
        // Upstream first: when its end is already there as the client hangs
        // up (SDKs close right after `[DONE]`), the answer was complete and
        // counts as such, not as a disconnect.
        biased;
        r = fut.as_mut() => Wait::Chunk(r),
        w = idle => w,
    }
}

/// Send a streamed upstream answer (header already read, status < 400) to the
/// client, passing or converting it chunk by chunk. Before the first real
/// content nothing is sent (for SSE streams), so a failure there returns
/// `Attempt::Failed` and the next target can still answer.
#[allow(clippy::too_many_arguments)]
async fn stream_answer(
    s: &mut Session,
    ctx: &mut RequestCtx,
    mut up: Answer,
    p: &Provider,
    ask: &Ask,
    from: Format,
) -> pingora_core::Result<Attempt> {
    let same = from == ask.ingress;
    let sse = ask.stream() && (ask.ingress != Format::Gemini || ask.resp_opts.gemini_sse);
    // Streamed bodies are re-framed, and may change length (`Body::Streamed`).
    let mut h = if same {
        client_response(up.head(), up.status(), true, None)?
    } else {
        let ct = if sse {
            "text/event-stream"
        } else {
            "application/json"
        };
        let mut h = client_response(up.head(), 200, false, Some(ct))?;
        h.insert_header("cache-control", "no-cache")?;
        h
    };
    // Complete now: a keepalive tick may have to send it before any content.
    head::complete(&mut h, &Marks::of(ctx), Body::Streamed, s.is_http2())?;
    let mut pipe = if same {
        let strip =
            ask.ingress == Format::OpenAiChat && ask.stream() && !ask.resp_opts.include_usage;
        // Legacy completions chunks carry no deltas the chat decoder knows:
        // they go out from the first event (usage is still read).
        let observer = match ask.op {
            Op::Completions { .. } => stream::Observer::committed(ask.ingress),
            _ => stream::Observer::new(ask.ingress),
        };
        stream::Pipe::Pass(observer, strip.then(sse::Parser::default))
    } else {
        stream::Pipe::Convert(StreamTranslator::new(
            from,
            ask.ingress,
            ask.resp_opts.clone(),
        ))
    };
    let keepalive = if sse { ctx.snap.stream_keepalive } else { None };
    let mut header = Some(h);
    let mut pending: Vec<u8> = Vec::with_capacity(4096);
    // An end or failure met while gathering chunks, handled next round.
    let mut carry: Option<Result<Option<Bytes>, Failure>> = None;
    loop {
        let w = if let Some(c) = carry.take() {
            Wait::Chunk(c)
        } else {
            let fut = next_chunk(&mut up, ctx, p);
            tokio::pin!(fut);
            loop {
                match wait_chunk(&mut fut, s, keepalive, ask.stream()).await {
                    Wait::Tick => {
                        // A quiet stream: commit to this upstream (a long
                        // silence is thinking, not failure) and keep
                        // intermediaries from cutting the connection.
                        if let Some(h) = header.take() {
                            // `h` went through `head::complete` above (ctx is
                            // lent to the pending read here).
                            super::drain::close_if_draining(s);
                            s.write_response_header(Box::new(h)).await?;
                        }
                        let mut c = std::mem::take(&mut pending);
                        sse::write_comment(&mut c, "keepalive");
                        s.write_response_body(Bytes::from(c), false).await?;
                    }
                    other => break other,
                }
            }
        };
        match w {
            Wait::Tick => unreachable!("handled above"),
            Wait::ClientGone => {
                // SDKs hang up as soon as they read the final event, which
                // can be before the upstream's own end is in. If that end is
                // all that was still to come, the answer was complete.
                if header.is_none() && pending.is_empty() && upstream_ends(&mut up).await {
                    let mut tail = Vec::new();
                    pipe.finish(&mut tail);
                    if tail.is_empty() {
                        stream_usage(ctx, &pipe, ask);
                        count_outcome(p, "ok");
                        // A client that only half-closed still gets a proper end.
                        let _ = write_body(s, ctx, Bytes::new(), true).await;
                        up.finish().await;
                        return Ok(Attempt::Done);
                    }
                }
                ctx.error = Some("client disconnected".into());
                crate::metrics::METRICS
                    .client_disconnects
                    .with_label_values(&[ask.ingress.as_str()])
                    .inc();
                stream_usage(ctx, &pipe, ask);
                up.shutdown().await;
                return pingora_core::Error::e_explain(
                    ErrorType::ConnectionClosed,
                    "client disconnected mid-answer",
                );
            }
            Wait::Chunk(Ok(Some(chunk))) => {
                // Providers send each event as its own HTTP chunk, several
                // per read: the chunks already received go out in one write
                // (one syscall and one client wake-up, not one per event).
                // Only what is there now: nothing waits for more.
                let mut lone = pipe.feed(&chunk, &mut pending).then_some(chunk);
                while pending.len() < GATHER_LIMIT {
                    // A read that is ready needs no deadline.
                    let Some(r) = ready_now(up.body()) else {
                        break;
                    };
                    let r = r.map_err(|e| classify(&e, "reading upstream body"));
                    match r {
                        Ok(Some(more)) => {
                            if let Some(c) = lone.take() {
                                pending.extend_from_slice(&c);
                            }
                            if pipe.feed(&more, &mut pending) {
                                pending.extend_from_slice(&more);
                            }
                        }
                        other => {
                            carry = Some(other);
                            break;
                        }
                    }
                }
                if header.is_some() && sse {
                    if let Some((status, msg)) = pipe.upstream_error()
                        && !pipe.content_started()
                    {
                        // An error event before any content (e.g. overloaded
                        // inside a 200 stream): fail over like a status.
                        up.shutdown().await;
                        let body = Bytes::from(translate::error_body(from, status, &msg));
                        let head = up.head().clone();
                        return Ok(Attempt::Failed(status_failure(p, status, head, body, from)));
                    }
                    if !pipe.content_started() {
                        continue;
                    }
                }
                if matches!(carry, Some(Ok(None))) {
                    // The end is already here: it goes out with this data.
                    if let Some(c) = lone {
                        pending.extend_from_slice(&c);
                    }
                    continue;
                }
                if let Some(h) = header.take() {
                    respond::write_head(s, ctx, h).await?;
                }
                let data = if let Some(chunk) = lone {
                    Some(chunk)
                } else if !pending.is_empty() {
                    Some(Bytes::from(std::mem::replace(
                        &mut pending,
                        Vec::with_capacity(4096),
                    )))
                } else {
                    None
                };
                if let Some(data) = data
                    && let Err(e) = write_body(s, ctx, data, false).await
                {
                    ctx.error = Some("client disconnected".into());
                    crate::metrics::METRICS
                        .client_disconnects
                        .with_label_values(&[ask.ingress.as_str()])
                        .inc();
                    stream_usage(ctx, &pipe, ask);
                    up.shutdown().await;
                    return Err(e);
                }
            }
            Wait::Chunk(Ok(None)) => {
                if sse && header.is_some() && !pipe.saw_events() {
                    // An empty 200 would read as an answer with no content:
                    // nothing reached the client, so it fails over (and ends
                    // as a 502 in the client's format).
                    up.finish().await;
                    return Ok(Attempt::Failed(Failure::Io(
                        "upstream stream ended with no events".into(),
                    )));
                }
                pipe.finish(&mut pending);
                stream_usage(ctx, &pipe, ask);
                if let Some(h) = header.take() {
                    respond::write_head(s, ctx, h).await?;
                }
                count_outcome(p, "ok");
                write_body(s, ctx, Bytes::from(pending), true).await?;
                up.finish().await;
                return Ok(Attempt::Done);
            }
            Wait::Chunk(Err(f)) => {
                up.shutdown().await;
                if header.is_some() {
                    // Nothing reached the client: another target may answer.
                    return Ok(Attempt::Failed(f));
                }
                let msg = failure_text(&f);
                ctx.error = Some(msg.clone());
                stream_usage(ctx, &pipe, ask);
                if !sse {
                    // A plain body cut short: end the connection so the client
                    // sees it incomplete, never complete.
                    return pingora_core::Error::e_explain(
                        ErrorType::ReadError,
                        "upstream failed mid-answer",
                    );
                }
                pipe.fail(
                    ask.ingress,
                    &format!("upstream failed mid-stream: {msg}"),
                    &mut pending,
                );
                count_outcome(p, "io_error");
                write_body(s, ctx, Bytes::from(pending), true).await?;
                return Ok(Attempt::Done);
            }
        }
    }
}

/// How long a stream's upstream may take to end after its client left, for
/// the answer to count as complete (`stream_answer`).
const END_GRACE: Duration = Duration::from_millis(50);

/// Whether the upstream's end, and nothing else, arrives within `END_GRACE`.
async fn upstream_ends(up: &mut Answer) -> bool {
    matches!(
        tokio::time::timeout(END_GRACE, up.body()).await,
        Ok(Ok(None))
    )
}

/// A stream's usage for accounting: what it reported, with what it did not
/// report estimated (and so marked in the access log).
fn stream_usage(ctx: &mut RequestCtx, pipe: &stream::Pipe, ask: &Ask) {
    let (u, estimated) = pipe.settled_usage((ask.body.len() as u64).div_ceil(4));
    ctx.usage = Some(u);
    ctx.tokens_estimated = estimated;
}
