//! One attempt: the target's address, body and request head, the subrequest
//! that carries them, and the answer's head, handed to `respond` when it is a
//! success (its outcome judged in `outcome`).

use super::intake::Ask;
use super::outcome::{Attempt, Failure, classify, status_failure};
use super::read::{MAX_ERROR_BODY, read_all};
use super::respond;
use crate::config::file::ProviderKind;
use crate::providers::Provider;
use crate::providers::headers::{UpstreamRequest, upstream_request_head};
use crate::providers::{Op, peer, upstream_path};
use crate::proxy::ctx::RequestCtx;
use crate::proxy::subreq::{self, Answer};
use crate::runtime::snapshot::Resolved;
use crate::translate::{self, Format};
use bytes::Bytes;
use pingora_core::ErrorType;
use pingora_core::protocols::http::ServerSession as Session;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_proxy::SubrequestSpawner;
use std::net::SocketAddr;
use std::time::Instant;

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
    let job = subreq::Job::new(build_peer(p, addr), head, body.len());
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
