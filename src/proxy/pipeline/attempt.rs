//! One attempt: the target's body and request head, the subrequest that
//! carries them, and what its outcome says (`Failure`, `classify`, `judge`).

use super::intake::Ask;
use super::respond;
use crate::config::file::ProviderKind;
use crate::config::runtime::{Provider, Resolved};
use crate::providers::headers::{UpstreamRequest, upstream_request_head};
use crate::providers::{Op, peer, upstream_path};
use crate::proxy::budget::{BUFFERED, Held};
use crate::proxy::ctx::RequestCtx;
use crate::proxy::subreq::{self, Answer};
use crate::resilience::{self, Ended, Verdict};
use crate::translate::{self, Format};
use bytes::{Bytes, BytesMut};
use pingora_core::ErrorType;
use pingora_core::protocols::http::ServerSession as Session;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_http::ResponseHeader;
use pingora_proxy::SubrequestSpawner;
use std::net::SocketAddr;
use std::time::Instant;

/// Why an attempt did not produce the answer.
#[derive(Debug)]
pub(crate) enum Failure {
    /// No usable address or credential.
    Unusable(String),
    Connect(String),
    Timeout(String),
    Io(String),
    /// A retryable status from the upstream; body kept to relay if it is the last.
    Status(u16, Box<ResponseHeader>, Bytes, Format),
    /// The request cannot be expressed in this target's format.
    Convert(translate::TranslateError),
    /// The target is at one of its own limits (skipped, not tried).
    Limited(crate::limits::Refusal),
    /// The process's answer buffer budget is spent (`budget.rs`): 503, and
    /// no other target is tried (it would need the same memory).
    Busy(String),
}

pub(crate) enum Attempt {
    /// The client got its answer (or the stream ended); its outcome is counted.
    Done,
    Failed(Failure),
}

/// An upstream error answer as a failure, with any credential of the provider
/// that the upstream echoed in it (auth errors do) redacted: this body may be
/// relayed to the client.
pub(crate) fn status_failure(
    p: &Provider,
    status: u16,
    head: ResponseHeader,
    body: Bytes,
    from: Format,
) -> Failure {
    let body = p.credentials.redact(&body).map_or(body, Bytes::from);
    Failure::Status(status, Box::new(head), body, from)
}

pub(crate) fn outcome_label(f: &Failure) -> &'static str {
    match f {
        Failure::Unusable(_) => "unusable",
        Failure::Connect(_) => "connect_error",
        Failure::Timeout(_) => "timeout",
        Failure::Io(_) => "io_error",
        Failure::Status(429, ..) => "http_429",
        Failure::Status(s, ..) if *s >= 500 => "http_5xx",
        Failure::Status(..) => "http_4xx",
        Failure::Convert(_) => "convert_error",
        Failure::Limited(_) => "limited",
        Failure::Busy(_) => "buffer_full",
    }
}

/// Whether the upstream may have received the request (its quota counts it).
pub(crate) fn sent(f: &Failure) -> bool {
    !matches!(
        f,
        Failure::Unusable(_) | Failure::Convert(_) | Failure::Connect(_) | Failure::Limited(_)
    )
}

pub(crate) fn classify(e: &pingora_core::Error, during: &str) -> Failure {
    let msg = format!("{during}: {}", e.etype().as_str());
    match e.etype() {
        ErrorType::ConnectTimedout | ErrorType::ReadTimedout | ErrorType::WriteTimedout => {
            Failure::Timeout(msg)
        }
        ErrorType::ConnectRefused
        | ErrorType::ConnectNoRoute
        | ErrorType::ConnectError
        | ErrorType::TLSHandshakeFailure => Failure::Connect(msg),
        _ if during == "connect" => Failure::Connect(msg),
        _ => Failure::Io(msg),
    }
}

/// Apply what a failed attempt says about its credential (rest) and its
/// provider (circuit), per `resilience::verdict`. Returns whether the
/// provider's next credential may answer instead.
pub(crate) fn judge(
    p: &Provider,
    snap: &crate::config::runtime::Snapshot,
    f: &Failure,
    cred: Option<usize>,
    probe: bool,
    tried: &mut Vec<usize>,
) -> bool {
    let now = resilience::now_ms();
    let other = cred.is_some_and(|i| p.rest.other_usable(i, now));
    let v = resilience::verdict(ended(f), cred.is_some(), other, &snap.cooldown);
    apply(p, snap, f, v, cred, probe, now);
    match (v, cred) {
        (Verdict::Rest { .. } | Verdict::Refused, Some(i)) => {
            tried.push(i);
            true
        }
        _ => false,
    }
}

/// How a failed attempt ended, for `resilience::verdict`.
fn ended(f: &Failure) -> Ended {
    match f {
        Failure::Status(st, h, ..) => Ended::Status(
            *st,
            (*st == 429)
                .then(|| resilience::reset_hint(|n| get_str(h, n)))
                .flatten(),
        ),
        Failure::Connect(_) | Failure::Timeout(_) | Failure::Io(_) => Ended::Transport,
        Failure::Convert(_) | Failure::Unusable(_) | Failure::Limited(_) | Failure::Busy(_) => {
            Ended::Local
        }
    }
}

/// Rest the credential, count a fault against the circuit, or give back the
/// half-open probe, as the verdict says.
fn apply(
    p: &Provider,
    snap: &crate::config::runtime::Snapshot,
    f: &Failure,
    v: Verdict,
    cred: Option<usize>,
    probe: bool,
    now: u64,
) {
    match (v, cred) {
        (Verdict::Rest { rest, hinted }, Some(i)) => {
            p.rest.rest(i, rest, hinted, now);
            crate::events::credential_resting(&p.name, i, rest);
            if let Failure::Status(st @ (401 | 403), ..) = f
                && p.rest.news(i)
            {
                log::warn!(
                    "provider '{}' credential #{} rejected with {st}: resting it for {}s",
                    p.name,
                    i + 1,
                    rest.as_secs()
                );
            }
        }
        (Verdict::Refused, Some(i)) => {
            if let Failure::Status(st, ..) = f
                && p.rest.news(i)
            {
                log::warn!(
                    "provider '{}' credential #{} rejected with {st}: not resting it, it is the provider's last usable one (logged once until it works)",
                    p.name,
                    i + 1
                );
            }
        }
        (Verdict::Fault, _) => {
            if p.breaker.failure(&snap.breaker, now) {
                crate::events::circuit_opened(&p.name);
                log::warn!(
                    "provider '{}' circuit opened after repeated failures",
                    p.name
                );
            }
        }
        _ => {
            if probe {
                p.breaker.release_probe();
            }
        }
    }
}

/// What a successful attempt settles on its provider: the credential it used,
/// and whether it was the forced (no-alternative) attempt.
#[derive(Clone, Copy, Debug)]
pub struct Settle {
    pub cred: Option<usize>,
    pub forced: bool,
}

/// The attempt succeeded: counted, its provider's circuit closed and its
/// credential's rest ended, all before the answer's last bytes go to the
/// client: a client that reads the metrics or sends its next request as soon
/// as it has its answer finds the provider settled.
pub(crate) fn answered_ok(ctx: &mut RequestCtx, p: &Provider) {
    count_outcome(p, "ok");
    if let Some(s) = ctx.settle.take() {
        provider_answered(p, s);
    }
}

/// The provider answered: its circuit closes, and a forced attempt's
/// credential ends its rest.
pub(crate) fn provider_answered(p: &Provider, s: Settle) {
    p.breaker.success();
    if let Some(i) = s.cred {
        p.rest.ok(i);
        if s.forced {
            p.rest.lift(i);
        }
    }
}

/// Count an attempt's outcome before the client sees the answer, so a client
/// that reads the metrics right after its answer finds it counted.
pub(crate) fn count_outcome(p: &Provider, outcome: &'static str) {
    crate::metrics::METRICS
        .attempts
        .with_label_values(&[&p.name, outcome])
        .inc();
}

pub(crate) fn failure_text(f: &Failure) -> String {
    match f {
        Failure::Unusable(m)
        | Failure::Connect(m)
        | Failure::Timeout(m)
        | Failure::Io(m)
        | Failure::Busy(m) => m.clone(),
        Failure::Status(s, ..) => format!("upstream status {s}"),
        Failure::Convert(e) => e.message.clone(),
        Failure::Limited(r) => r.message.clone(),
    }
}

/// A header of an upstream answer, if it is text.
pub(crate) fn get_str<'a>(h: &'a ResponseHeader, name: &str) -> Option<&'a str> {
    h.headers.get(name).and_then(|v| v.to_str().ok())
}

/// The AI path bounds its own reads (first byte, idle, total): no peer I/O timeout.
pub(crate) fn build_peer(p: &Provider, addr: SocketAddr) -> HttpPeer {
    let t = peer::PeerTimeouts {
        connect: p.timeouts.connect,
        io: None,
    };
    peer::peer(addr, &p.endpoint, p.trust(), t)
}

/// One upstream attempt. Returns `Err` only when the client connection failed.
pub(crate) async fn attempt(
    spawner: &SubrequestSpawner,
    s: &mut Session,
    ctx: &mut RequestCtx,
    ask: &mut Ask,
    p: &Provider,
    t: &Resolved,
    credential: Option<&str>,
) -> pingora_core::Result<Attempt> {
    let Some(addr) = p.balancer.pick(&ctx.tried_addrs) else {
        return Ok(Attempt::Failed(Failure::Unusable(format!(
            "provider '{}': address of {} not resolved",
            p.name, p.endpoint.host
        ))));
    };
    let to = match target_format(ask, p, &t.model) {
        Ok(to) => to,
        Err(f) => return Ok(Attempt::Failed(f)),
    };
    let body = match target_body(ctx, ask, p, t, to) {
        Ok(b) => b,
        Err(e) => return Ok(Attempt::Failed(Failure::Convert(e))),
    };
    let head = request_head(s, ctx, ask, p, &t.model, to, credential, body.len())?;
    ctx.attempts += 1;
    ctx.tried_addrs.push(addr);
    let up = match send(spawner, s, ctx, ask.ingress, p, addr, head, body).await? {
        Ok(up) => up,
        Err(f) => return Ok(Attempt::Failed(f)),
    };
    if up.status() >= 400 {
        return Ok(Attempt::Failed(error_answer(up, ctx, p, to).await));
    }
    respond::answer(s, ctx, up, p, ask, to).await
}

/// The format this target is spoken to in, or why it cannot serve the request.
fn target_format(ask: &Ask, p: &Provider, model: &str) -> Result<Format, Failure> {
    Ok(match ask.op {
        Op::Embeddings => match p.format {
            Format::Gemini => Format::Gemini,
            _ => Format::OpenAiChat,
        },
        Op::Chat { .. } | Op::CountTokens => p.format,
        // Legacy completions pass as they came, to OpenAI kinds only.
        Op::Completions { .. } => match p.kind {
            ProviderKind::Openai | ProviderKind::OpenaiCompatible => ask.ingress,
            other => {
                return Err(Failure::Convert(translate::TranslateError::bad_request(
                    format!(
                        "/v1/completions is served only by providers of kind openai or \
                         openai-compatible; model '{}' goes to provider '{}' of kind {}",
                        ask.peeked.model.as_deref().unwrap_or(model),
                        p.name,
                        other.as_str()
                    ),
                    Some("model"),
                )));
            }
        },
    })
}

/// The body this target gets: converted for `to`, then edited by the target's
/// payload rules (without rules it is untouched).
fn target_body(
    ctx: &mut RequestCtx,
    ask: &mut Ask,
    p: &Provider,
    t: &Resolved,
    to: Format,
) -> Result<Bytes, translate::TranslateError> {
    let model = t.model.as_str();
    let compatible = p.kind == ProviderKind::OpenaiCompatible;
    let (b, dropped) = if ask.op == Op::CountTokens {
        ask.count_body_for(to, model, compatible)
    } else {
        ask.body_for(to, model, compatible)
    }?;
    // Named on every answer to this attempt (x-aigate-dropped, access line).
    ctx.dropped = dropped;
    // Not a count's: rules set generation fields (`max_tokens`) that the
    // counting endpoints refuse.
    Ok(match &t.payload {
        Some(rules) if ask.op != Op::CountTokens => rules.apply_bytes(b),
        _ => b,
    })
}

/// The upstream request head for this target: path, credential, headers.
#[allow(clippy::too_many_arguments)]
fn request_head(
    s: &Session,
    ctx: &RequestCtx,
    ask: &Ask,
    p: &Provider,
    model: &str,
    to: Format,
    credential: Option<&str>,
    body_len: usize,
) -> pingora_core::Result<pingora_http::RequestHeader> {
    let same = to == ask.ingress;
    let gemini_query = if same {
        ask.gemini_query.as_deref()
    } else {
        None
    };
    let path = upstream_path(&p.endpoint, to, ask.op, model, gemini_query);
    let spec = UpstreamRequest {
        provider: p,
        credential,
        path: &path,
        body_len,
        request_id: &ctx.request_id,
        same_format: same,
        stream: ask.stream(),
    };
    upstream_request_head(s.req_header(), &spec)
}

/// Send the request as a subrequest and wait for the answer's head. The
/// inner `Err` is a failed attempt; the outer one, a client that left.
#[allow(clippy::too_many_arguments)]
async fn send(
    spawner: &SubrequestSpawner,
    s: &mut Session,
    ctx: &mut RequestCtx,
    ingress: Format,
    p: &Provider,
    addr: SocketAddr,
    head: pingora_http::RequestHeader,
    body: Bytes,
) -> pingora_core::Result<Result<Answer, Failure>> {
    // A request once written is never written again on this attempt: the
    // upstream may have acted on it (a replayed POST is a second, billed
    // call). A failure here is a failed attempt, and the retry policy decides.
    let job = subreq::Job::new(build_peer(p, addr), head, body.len(), &p.name);
    let pending = subreq::start(spawner, s, job.clone(), body);
    let t = Instant::now();
    let sent = {
        let answer = pending.head(p.timeouts.connect, p.timeouts.first_byte);
        tokio::pin!(answer);
        // A client that leaves while the upstream thinks ends the attempt.
        tokio::select! {
            r = &mut answer => Some(r),
            r = s.read_body_or_idle(true) => match r {
                Ok(Some(_)) => answer.await.into(),
                _ => None,
            },
        }
    };
    ctx.upstream_wait += t.elapsed();
    match sent {
        Some(Ok(up)) => Ok(Ok(up)),
        Some(Err(e)) => {
            if e.etype() == &ErrorType::TLSHandshakeFailure {
                // The reason (unknown issuer, name mismatch) is only in the error's context.
                log::warn!("provider '{}': TLS with {addr} failed: {e}", p.name);
            }
            let during = if job.connected() {
                "upstream"
            } else {
                "connect"
            };
            Ok(Err(classify(&e, during)))
        }
        None => {
            // The subrequest was aborted (its connection closed) with the wait.
            ctx.error = Some("client disconnected".into());
            crate::metrics::METRICS
                .client_disconnects
                .with_label_values(&[ingress.as_str()])
                .inc();
            pingora_core::Error::e_explain(
                ErrorType::ConnectionClosed,
                "client disconnected before the answer",
            )
        }
    }
}

/// An upstream error answer (status >= 400), read whole, as the attempt's failure.
async fn error_answer(mut up: Answer, ctx: &mut RequestCtx, p: &Provider, to: Format) -> Failure {
    let status = up.status();
    let header = up.head().clone();
    let (body, _held) = match read_all(&mut up, ctx, p, MAX_ERROR_BODY).await {
        Ok(b) => b,
        Err(f) => return f,
    };
    up.finish().await;
    status_failure(p, status, header, body, to)
}

/// Upstream error bodies and non-streaming answers are read whole; cap them.
pub(crate) const MAX_ERROR_BODY: usize = 1024 * 1024;

pub(crate) const MAX_ANSWER_BODY: usize = 64 * 1024 * 1024;

/// Read a whole upstream body (bounded by `cap`), with the idle and total
/// timeouts, held in the process's buffer budget (`max_buffered_bytes`) until
/// the returned hold is dropped.
pub(crate) async fn read_all(
    up: &mut Answer,
    ctx: &mut RequestCtx,
    p: &Provider,
    cap: usize,
) -> Result<(Bytes, Held), Failure> {
    let limit = ctx.snap.max_buffered_bytes;
    let mut held = BUFFERED.hold();
    let too_large = || Failure::Io(format!("upstream body larger than {cap} bytes"));
    // A declared length is taken from the budget (and allocated) at once: no
    // regrowth copies, and a refusal before the body is read.
    let declared = get_str(up.head(), "content-length").and_then(|v| v.trim().parse::<u64>().ok());
    if let Some(n) = declared {
        if n > cap as u64 {
            return Err(too_large());
        }
        if !held.grow_to(n, limit) {
            return Err(over_budget(limit));
        }
    }
    // Most answers come in one read: that chunk is the body, uncopied.
    let mut first: Option<Bytes> = None;
    let mut buf = BytesMut::new();
    loop {
        match next_chunk(up, ctx, p).await? {
            Some(chunk) => {
                let held_now = first.as_ref().map_or(0, Bytes::len);
                let total = held_now + buf.len() + chunk.len();
                if total > cap {
                    return Err(too_large());
                }
                if !held.grow_to(total as u64, limit) {
                    return Err(over_budget(limit));
                }
                match first.take() {
                    None if buf.is_empty() => first = Some(chunk),
                    held_chunk => {
                        if buf.is_empty() {
                            buf.reserve(declared.map_or(0, |n| n as usize).max(total));
                        }
                        if let Some(h) = held_chunk {
                            buf.extend_from_slice(&h);
                        }
                        buf.extend_from_slice(&chunk);
                    }
                }
            }
            None => return Ok((first.unwrap_or_else(|| buf.freeze()), held)),
        }
    }
}

pub(crate) fn over_budget(limit: u64) -> Failure {
    Failure::Busy(format!(
        "the gateway is holding its limit of {limit} bytes of buffered answers; retry shortly"
    ))
}

/// The next upstream body chunk, bounded by the idle timeout and the total deadline.
pub(crate) async fn next_chunk(
    up: &mut Answer,
    ctx: &mut RequestCtx,
    p: &Provider,
) -> Result<Option<Bytes>, Failure> {
    let left = p.timeouts.total.saturating_sub(ctx.start.elapsed());
    let limit = p.timeouts.idle.min(left);
    let t = Instant::now();
    let r = pingora_timeout::timeout(limit, up.body()).await;
    ctx.upstream_wait += t.elapsed();
    match r {
        Err(_) => Err(Failure::Timeout("waiting for the upstream body".into())),
        Ok(Err(e)) => Err(classify(&e, "reading upstream body")),
        Ok(Ok(b)) => Ok(b),
    }
}
