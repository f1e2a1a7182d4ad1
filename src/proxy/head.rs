//! The gateway's header set on an answer head. Every kind of answer goes
//! through [`complete`]: the gateway's own (errors, health, static routes),
//! upstream answers relayed or converted, streams (also one whose head a
//! keepalive tick sends), and proxied routes. So no kind can miss what
//! another carries (SPEC "Headers"; README "Headers").

use super::ctx::RequestCtx;
use crate::translate::Dropped;
use pingora_http::ResponseHeader;

/// How the answer's body is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    /// A whole body of this many bytes.
    Length(usize),
    /// Sent as it comes, its length unknown: chunked on HTTP/1 (without a
    /// length an HTTP/1.1 answer would be close-delimited and the client
    /// would lose keep-alive); HTTP/2 frames it itself.
    Streamed,
    /// Relayed by Pingora's proxy, framed as the upstream framed it.
    Proxied,
}

/// What one request adds to each of its answers.
pub struct Marks<'a> {
    pub request_id: &'a str,
    /// Client paths the conversion left out (`x-aigate-dropped`).
    pub dropped: &'a Dropped,
    /// With `x-aigate-debug: true`: the attempts made, and the provider and
    /// upstream model once known.
    pub debug: Option<Debug<'a>>,
    /// `x-ratelimit-*`, CORS, `Retry-After`, `Allow`.
    pub extra: &'a [(&'static str, String)],
}

pub struct Debug<'a> {
    pub provider: &'a str,
    pub model: &'a str,
    pub attempts: u32,
}

impl<'a> Marks<'a> {
    pub fn of(ctx: &'a RequestCtx) -> Self {
        Marks {
            request_id: &ctx.request_id,
            dropped: &ctx.dropped,
            debug: ctx.debug.then_some(Debug {
                provider: &ctx.provider,
                model: &ctx.upstream_model,
                attempts: ctx.attempts,
            }),
            extra: &ctx.extra_headers,
        }
    }
}

/// Frame `h` for `body` and add the request's header set. The gateway's
/// headers replace any of the same name the upstream sent.
pub fn complete(
    h: &mut ResponseHeader,
    m: &Marks,
    body: Body,
    http2: bool,
) -> pingora_core::Result<()> {
    match body {
        Body::Length(n) => {
            h.remove_header("transfer-encoding");
            h.insert_header("content-length", n.to_string())?;
        }
        Body::Streamed => {
            h.remove_header("content-length");
            if http2 {
                h.remove_header("transfer-encoding");
            } else {
                h.insert_header("transfer-encoding", "chunked")?;
            }
        }
        Body::Proxied => {}
    }
    if !m.request_id.is_empty() {
        h.insert_header("x-request-id", m.request_id)?;
    }
    if !m.dropped.is_empty() {
        h.insert_header("x-aigate-dropped", m.dropped.header_value())?;
    }
    if let Some(d) = &m.debug {
        if !d.provider.is_empty() {
            h.insert_header("x-aigate-provider", d.provider)?;
        }
        // None on passthrough: the body, and with it the model, is not read.
        if !d.model.is_empty() {
            h.insert_header("x-aigate-model", d.model)?;
        }
        h.insert_header("x-aigate-attempts", d.attempts.to_string())?;
    }
    for (k, v) in m.extra {
        h.insert_header(*k, v)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get<'h>(h: &'h ResponseHeader, n: &str) -> Option<&'h str> {
        h.headers.get(n).and_then(|v| v.to_str().ok())
    }

    fn marks<'a>(dropped: &'a Dropped, extra: &'a [(&'static str, String)]) -> Marks<'a> {
        Marks {
            request_id: "rid-1",
            dropped,
            debug: Some(Debug {
                provider: "oa",
                model: "gpt-up",
                attempts: 2,
            }),
            extra,
        }
    }

    #[test]
    fn every_framing_gets_the_same_set() {
        let mut dropped = Dropped::default();
        dropped.push("seed");
        let extra = [
            ("x-ratelimit-limit-requests", "5".to_string()),
            (
                "access-control-allow-origin",
                "https://app.example".to_string(),
            ),
        ];
        for body in [Body::Length(7), Body::Streamed, Body::Proxied] {
            for http2 in [false, true] {
                let mut h = ResponseHeader::build(200, None).unwrap();
                // An upstream's own request id and limits are replaced.
                h.insert_header("x-request-id", "upstream").unwrap();
                h.insert_header("x-ratelimit-limit-requests", "10000")
                    .unwrap();
                complete(&mut h, &marks(&dropped, &extra), body, http2).unwrap();
                let want = [
                    ("x-request-id", "rid-1"),
                    ("x-aigate-dropped", "seed"),
                    ("x-aigate-provider", "oa"),
                    ("x-aigate-model", "gpt-up"),
                    ("x-aigate-attempts", "2"),
                    ("x-ratelimit-limit-requests", "5"),
                    ("access-control-allow-origin", "https://app.example"),
                ];
                for (n, v) in want {
                    assert_eq!(get(&h, n), Some(v), "{n} on {body:?}, http2 {http2}");
                }
            }
        }
    }

    #[test]
    fn framing_follows_the_body_and_the_protocol() {
        let none = Dropped::default();
        let m = marks(&none, &[]);
        let frame = |body, http2, upstream: &[(&str, &str)]| {
            let mut h = ResponseHeader::build(200, None).unwrap();
            for (k, v) in upstream {
                h.insert_header(k.to_string(), v.to_string()).unwrap();
            }
            complete(&mut h, &m, body, http2).unwrap();
            (
                get(&h, "content-length").map(str::to_string),
                get(&h, "transfer-encoding").map(str::to_string),
            )
        };
        let chunked = [("transfer-encoding", "chunked")];
        let sized = [("content-length", "99")];
        assert_eq!(
            frame(Body::Length(3), false, &chunked),
            (Some("3".into()), None)
        );
        assert_eq!(
            frame(Body::Streamed, false, &sized),
            (None, Some("chunked".into()))
        );
        assert_eq!(frame(Body::Streamed, true, &sized), (None, None));
        // A proxied answer keeps the upstream's framing.
        assert_eq!(
            frame(Body::Proxied, false, &sized),
            (Some("99".into()), None)
        );
        assert_eq!(frame(Body::Proxied, false, &[]), (None, None));
    }

    #[test]
    fn debug_only_when_asked_and_attempts_even_without_a_provider() {
        let none = Dropped::default();
        let mut m = marks(&none, &[]);
        m.debug = Some(Debug {
            provider: "",
            model: "",
            attempts: 0,
        });
        let mut h = ResponseHeader::build(401, None).unwrap();
        complete(&mut h, &m, Body::Length(0), false).unwrap();
        assert_eq!(get(&h, "x-aigate-attempts"), Some("0"));
        assert_eq!(get(&h, "x-aigate-provider"), None);
        m.debug = None;
        let mut h = ResponseHeader::build(200, None).unwrap();
        complete(&mut h, &m, Body::Length(0), false).unwrap();
        for n in ["x-aigate-attempts", "x-aigate-provider", "x-aigate-dropped"] {
            assert_eq!(get(&h, n), None, "{n}");
        }
        assert_eq!(get(&h, "x-request-id"), Some("rid-1"));
    }
}
