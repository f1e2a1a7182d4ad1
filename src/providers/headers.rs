//! Header rules between client and upstream, as plain functions: what passes
//! each way, and the provider's own (auth header, `anthropic-version`).

use super::Provider;
use super::{auth_header, default_version};
use http::{HeaderName, HeaderValue, header};
use pingora_core::OrErr;
use pingora_http::{RequestHeader, ResponseHeader};

/// Client headers never forwarded upstream: hop-by-hop headers, framing the
/// gateway recomputes, and every place a client puts its gateway key.
fn never_forward(name: &str) -> bool {
    matches!(
        name,
        "host"
            | "content-length"
            | "transfer-encoding"
            | "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "upgrade"
            | "expect"
            | "authorization"
            | "x-api-key"
            | "x-goog-api-key"
            | "api-key"
            | "accept-encoding"
            | "cookie"
    ) || name.starts_with("x-aigate-")
}

/// Provider-specific client headers that mean nothing (or something else) to
/// another provider's API; kept only when the client and upstream formats match.
fn provider_specific(name: &str) -> bool {
    name.starts_with("anthropic-") || name.starts_with("openai-") || name.starts_with("x-goog-")
}

pub struct UpstreamRequest<'a> {
    pub provider: &'a Provider,
    pub credential: Option<&'a str>,
    pub path: &'a str,
    pub body_len: usize,
    pub request_id: &'a str,
    pub same_format: bool,
    pub stream: bool,
}

/// The request head sent upstream (the subrequest's `upstream_request_filter`
/// puts it in place of the client's).
///
/// Client headers pass unless never forwarded (or provider-specific across
/// formats); the gateway's own headers replace any the client sent.
///
/// Built in an `http` header map and turned into a case-less
/// `RequestHeader` once: pingora's `append_header` takes a name by its bytes
/// and parses it again (a `HeaderName` is first rendered in title case), per
/// header. The names here are `HeaderName`s already (the client's parsed,
/// the provider's checked at config load, the gateway's constants).
pub fn upstream_request_head(
    client: &RequestHeader,
    u: &UpstreamRequest,
) -> pingora_core::Result<RequestHeader> {
    let auth = u.credential.map(|key| auth_header(u.provider.kind, key));
    let ours = |n: &str| {
        matches!(
            n,
            "host" | "content-type" | "content-length" | "accept-encoding" | "x-request-id"
        ) || (u.stream && n == "accept")
            || auth
                .as_ref()
                .is_some_and(|(a, _)| a.eq_ignore_ascii_case(n))
            || u.provider.headers.iter().any(|(k, _)| k.as_str() == n)
    };
    if !u.path.starts_with('/') || !u.path.bytes().all(|b| b.is_ascii_graphic()) {
        return bad_head("request path");
    }
    let mut parts: http::request::Parts =
        RequestHeader::build_no_case("POST", u.path.as_bytes(), None)?.into();
    let h = &mut parts.headers;
    h.reserve(client.headers.len() + 8 + u.provider.headers.len());
    h.append(
        header::HOST,
        value(u.provider.endpoint.authority.as_bytes())?,
    );
    // The client's own version header wins over the default.
    let version = default_version(u.provider.kind);
    let mut has_version = false;
    for (name, v) in client.headers.iter() {
        let n = name.as_str();
        if never_forward(n) || (!u.same_format && provider_specific(n)) || ours(n) {
            continue;
        }
        has_version |= version.is_some_and(|(v, _)| n == v);
        h.append(name.clone(), v.clone());
    }
    h.append(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.append(header::CONTENT_LENGTH, HeaderValue::from(u.body_len));
    // The gateway reads answers to convert and account them: no compression.
    h.append(
        header::ACCEPT_ENCODING,
        HeaderValue::from_static("identity"),
    );
    if u.stream {
        h.append(
            header::ACCEPT,
            HeaderValue::from_static("text/event-stream"),
        );
    }
    h.append(X_REQUEST_ID, value(u.request_id.as_bytes())?);
    if let Some((name, v)) = &auth {
        h.append(HeaderName::from_static(name), value(v.as_bytes())?);
    }
    if let Some((name, v)) = version
        && !has_version
        && !u.provider.headers.iter().any(|(k, _)| k == name)
    {
        h.append(HeaderName::from_static(name), HeaderValue::from_static(v));
    }
    for (k, v) in &u.provider.headers {
        h.append(k.clone(), v.clone());
    }
    Ok(RequestHeader::from(parts))
}

const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// A header value from the config or the client: no CR, LF or NUL (nor
/// other controls but tab), so nothing can end the head early.
fn value(v: &[u8]) -> pingora_core::Result<HeaderValue> {
    HeaderValue::from_bytes(v).or_else(|_| bad_head("header value"))
}

fn bad_head<T>(what: &str) -> pingora_core::Result<T> {
    pingora_core::Error::e_explain(
        pingora_core::ErrorType::InvalidHTTPHeader,
        format!("invalid {what} for the upstream request"),
    )
}

fn hop_by_hop(name: &str) -> bool {
    matches!(
        name,
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "transfer-encoding"
            | "te"
            | "trailer"
            | "upgrade"
    )
}

/// The client's response header for an upstream answer. `keep_length`: the
/// body passes unchanged, so the upstream's Content-Length still holds.
///
/// Built without pingora's case map: names go out in their usual spelling
/// (`Content-Type`; unknown ones lower-case), and the head costs one map.
pub fn client_response(
    upstream: &ResponseHeader,
    status: u16,
    keep_length: bool,
    content_type: Option<&str>,
) -> pingora_core::Result<ResponseHeader> {
    let mut parts = http::Response::new(()).into_parts().0;
    parts.status = http::StatusCode::from_u16(status).or_err(
        pingora_core::ErrorType::InvalidHTTPHeader,
        "invalid upstream status",
    )?;
    parts.headers.reserve(upstream.headers.len() + 4);
    for (name, value) in upstream.headers.iter() {
        let n = name.as_str();
        if hop_by_hop(n)
            || (!keep_length
                && (n == "content-length" || n == "content-type" || n == "content-encoding"))
        {
            continue;
        }
        parts.headers.append(name.clone(), value.clone());
    }
    let mut h = ResponseHeader::from(parts);
    if let Some(ct) = content_type {
        h.insert_header("content-type", ct)?;
    }
    Ok(h)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::load::parse;

    fn provider(kind: &str, extra: &str) -> crate::runtime::Snapshot {
        let yaml = format!(
            "keys: [{{id: a, key: ka}}]\nproviders:\n  - {{name: p, kind: {kind}, base_url: \"http://127.0.0.1:9/v1\", credentials: [{{key: up-key}}]{extra}}}\n"
        );
        let l = parse(&yaml, &|_| None).unwrap_or_else(|p| panic!("{p:?}"));
        crate::runtime::Snapshot::compile(&l).unwrap()
    }

    /// Header lines of a head, lower-cased names, in order.
    fn lines(head: &RequestHeader) -> (String, Vec<(String, String)>) {
        let version = if head.version == http::Version::HTTP_11 {
            "HTTP/1.1"
        } else {
            "?"
        };
        let mut wire = format!("{} {} {version}\r\n", head.method, head.uri).into_bytes();
        head.header_to_h1_wire(&mut wire);
        wire.extend_from_slice(b"\r\n");
        let text = std::str::from_utf8(&wire).unwrap();
        assert!(text.ends_with("\r\n\r\n"), "{text:?}");
        let mut it = text[..text.len() - 4].split("\r\n");
        let first = it.next().unwrap().to_string();
        let hs = it
            .map(|l| {
                let (n, v) = l.split_once(": ").unwrap();
                (n.to_ascii_lowercase(), v.to_string())
            })
            .collect();
        (first, hs)
    }

    fn client(headers: &[(&str, &str)]) -> RequestHeader {
        let mut h = RequestHeader::build("POST", b"/v1/chat/completions", None).unwrap();
        for (n, v) in headers {
            h.append_header(n.to_string(), *v).unwrap();
        }
        h
    }

    #[test]
    fn head_replaces_the_gateway_key_and_framing_and_keeps_the_rest() {
        let snap = provider("anthropic", "");
        let p = &snap.providers[0];
        let c = client(&[
            ("Host", "gw"),
            ("x-api-key", "gateway-key"),
            ("API-Key", "gateway-key-2"),
            ("content-length", "999"),
            ("x-aigate-debug", "1"),
            ("x-custom", "a"),
            ("x-custom", "b"),
            ("anthropic-beta", "tools"),
            ("x-request-id", "client-id"),
            ("accept", "*/*"),
        ]);
        let u = UpstreamRequest {
            provider: p,
            credential: Some("up-key"),
            path: "/v1/messages",
            body_len: 12,
            request_id: "rid",
            same_format: true,
            stream: true,
        };
        let (first, hs) = lines(&upstream_request_head(&c, &u).unwrap());
        assert_eq!(first, "POST /v1/messages HTTP/1.1");
        let get = |n: &str| -> Vec<&str> {
            hs.iter()
                .filter(|(k, _)| k == n)
                .map(|(_, v)| v.as_str())
                .collect()
        };
        assert_eq!(get("host"), ["127.0.0.1:9"]);
        assert_eq!(get("x-api-key"), ["up-key"]);
        assert!(get("api-key").is_empty(), "a gateway key went upstream");
        assert_eq!(get("content-length"), ["12"]);
        assert_eq!(get("x-request-id"), ["rid"]);
        assert_eq!(get("accept"), ["text/event-stream"]);
        assert_eq!(get("x-custom"), ["a", "b"]);
        assert_eq!(get("anthropic-beta"), ["tools"]);
        assert_eq!(get("anthropic-version"), ["2023-06-01"]);
        assert_eq!(get("accept-encoding"), ["identity"]);
        assert!(get("x-aigate-debug").is_empty());
        assert!(
            !format!("{:?}", lines(&upstream_request_head(&c, &u).unwrap()))
                .contains("gateway-key")
        );

        // Across formats provider-specific headers stay behind, and a
        // client's own anthropic-version is kept when it reaches Anthropic.
        let c = client(&[("anthropic-version", "2024-01-01"), ("openai-beta", "x")]);
        let u = UpstreamRequest {
            same_format: false,
            stream: false,
            ..u
        };
        let (_, hs) = lines(&upstream_request_head(&c, &u).unwrap());
        assert!(!hs.iter().any(|(k, _)| k == "openai-beta" || k == "accept"));
        assert!(
            hs.iter()
                .any(|(k, v)| k == "anthropic-version" && v == "2023-06-01")
        );
        let u = UpstreamRequest {
            same_format: true,
            ..u
        };
        let (_, hs) = lines(&upstream_request_head(&c, &u).unwrap());
        let versions: Vec<_> = hs
            .iter()
            .filter(|(k, _)| k == "anthropic-version")
            .collect();
        assert_eq!(versions.len(), 1);
        assert_eq!(versions[0].1, "2024-01-01");
    }

    #[test]
    fn configured_headers_win_and_nothing_can_end_the_head_early() {
        let snap = provider("openai", ", headers: {x-org: acme, x-custom: ours}");
        let p = &snap.providers[0];
        let c = client(&[("x-custom", "theirs")]);
        let u = UpstreamRequest {
            provider: p,
            credential: Some("up-key"),
            path: "/v1/chat/completions",
            body_len: 0,
            request_id: "rid",
            same_format: true,
            stream: false,
        };
        let (_, hs) = lines(&upstream_request_head(&c, &u).unwrap());
        let custom: Vec<_> = hs.iter().filter(|(k, _)| k == "x-custom").collect();
        assert_eq!(custom.len(), 1);
        assert_eq!(custom[0].1, "ours");
        assert!(
            hs.iter()
                .any(|(k, v)| k == "authorization" && v == "Bearer up-key")
        );
        assert!(hs.iter().any(|(k, v)| k == "x-org" && v == "acme"));

        // A model name (part of Gemini paths) with a space or CR/LF, a
        // credential with a line break: refused, never written.
        for path in ["/v1/models/a b:generate", "/v1/x\r\nEvil: 1", "v1/no-slash"] {
            let u = UpstreamRequest { path, ..u };
            assert!(upstream_request_head(&c, &u).is_err(), "{path:?}");
        }
        let u = UpstreamRequest {
            credential: Some("k\r\nEvil: 1"),
            ..u
        };
        assert!(upstream_request_head(&c, &u).is_err());
    }

    fn answer_head(headers: &[(&str, &str)]) -> ResponseHeader {
        let mut h = ResponseHeader::build(200, None).unwrap();
        for (n, v) in headers {
            h.append_header(n.to_string(), *v).unwrap();
        }
        h
    }

    #[test]
    fn client_head_drops_hop_by_hop_and_framing_it_cannot_keep() {
        let up = answer_head(&[
            ("Content-Type", "application/json"),
            ("Content-Length", "12"),
            ("Connection", "keep-alive"),
            ("Keep-Alive", "timeout=5"),
            ("Transfer-Encoding", "chunked"),
            ("X-Req", "a"),
            ("x-req", "b"),
            ("OpenAI-Processing-Ms", "7"),
        ]);
        let h = client_response(&up, 200, true, None).unwrap();
        let got: Vec<(String, String)> = h
            .headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_string()))
            .collect();
        let want = [
            ("content-type", "application/json"),
            ("content-length", "12"),
            ("x-req", "a"),
            ("x-req", "b"),
            ("openai-processing-ms", "7"),
        ];
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        assert_eq!(got, want);
        let h = client_response(&up, 201, false, Some("text/event-stream")).unwrap();
        assert_eq!(h.status.as_u16(), 201);
        assert!(h.headers.get("content-length").is_none());
        assert_eq!(h.headers["content-type"], "text/event-stream");
        let mut wire = vec![];
        h.header_to_h1_wire(&mut wire);
        assert!(
            String::from_utf8(wire)
                .unwrap()
                .contains("Content-Type: text/event-stream\r\n")
        );
    }

    #[test]
    fn values_are_accepted_exactly_when_clean() {
        for b in 0..=255u8 {
            let clean = b == b'\t' || (b >= 0x20 && b != 0x7f);
            // The byte alone and amid a long clean value.
            let mut long = vec![b'a'; 70];
            long[41] = b;
            assert_eq!(value(&[b]).is_ok(), clean, "value byte {b:#x}");
            assert_eq!(
                value(&long).is_ok(),
                clean,
                "value byte {b:#x} in a long value"
            );
        }
    }
}
