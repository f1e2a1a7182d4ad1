//! An attempt's outcome: why it failed (`Failure`), how a transport error
//! is classified, and what the outcome says about the provider — a failure
//! judged into a credential rest or a circuit fault (`judge`), a success
//! settling both (`answered_ok`) — counted by outcome.

use crate::providers::Provider;
use crate::proxy::ctx::{RequestCtx, Settle};
use crate::resilience::{self, Ended, Verdict};
use crate::translate::{self, Format};
use bytes::Bytes;
use pingora_core::ErrorType;
use pingora_http::ResponseHeader;

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
    snap: &crate::runtime::Snapshot,
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
    snap: &crate::runtime::Snapshot,
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
