//! Header rules between client and upstream, as plain functions.

use crate::config::file::ProviderKind;
use crate::config::runtime::Provider;
use crate::providers::auth_header;
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

/// The request header sent upstream.
pub fn upstream_request(
    client: &RequestHeader,
    u: &UpstreamRequest,
) -> pingora_core::Result<RequestHeader> {
    let mut h = RequestHeader::build("POST", u.path.as_bytes(), Some(client.headers.len() + 6))?;
    for (name, value) in client.headers.iter() {
        let n = name.as_str();
        if never_forward(n) || (!u.same_format && provider_specific(n)) {
            continue;
        }
        h.append_header(name.clone(), value.clone())?;
    }
    h.insert_header("host", &u.provider.endpoint.authority)?;
    h.insert_header("content-type", "application/json")?;
    h.insert_header("content-length", u.body_len.to_string())?;
    // The gateway reads answers to convert and account them: no compression.
    h.insert_header("accept-encoding", "identity")?;
    if u.stream {
        h.insert_header("accept", "text/event-stream")?;
    }
    h.insert_header("x-request-id", u.request_id)?;
    if let Some(key) = u.credential {
        let (name, value) = auth_header(u.provider.kind, key);
        h.insert_header(name, value)?;
    }
    if u.provider.kind == ProviderKind::Anthropic && h.headers.get("anthropic-version").is_none() {
        h.insert_header("anthropic-version", "2023-06-01")?;
    }
    for (k, v) in &u.provider.headers {
        h.insert_header(k.clone(), v.clone())?;
    }
    Ok(h)
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
pub fn client_response(
    upstream: &ResponseHeader,
    status: u16,
    keep_length: bool,
    content_type: Option<&str>,
) -> pingora_core::Result<ResponseHeader> {
    let mut h = ResponseHeader::build(status, Some(upstream.headers.len() + 4))?;
    for (name, value) in upstream.headers.iter() {
        let n = name.as_str();
        if hop_by_hop(n)
            || (!keep_length
                && (n == "content-length" || n == "content-type" || n == "content-encoding"))
        {
            continue;
        }
        h.append_header(name.clone(), value.clone())?;
    }
    if let Some(ct) = content_type {
        h.insert_header("content-type", ct)?;
    }
    Ok(h)
}
