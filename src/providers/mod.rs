//! Provider kinds: where their API lives, which wire format they speak, how
//! credentials and the API version are presented upstream, how an upstream
//! is dialled (`peer`), which of its addresses (`balance`) and which headers
//! pass each way (`headers`); a configured provider compiled (`provider`).

pub mod balance;
pub mod credentials;
pub mod headers;
pub mod peer;
pub mod provider;

use crate::config::file::{OpenAiApi, ProviderKind};
use crate::translate::Format;

pub use provider::{Provider, Timeouts};

/// A parsed `base_url`: scheme, authority and the path prefix requests extend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub tls: bool,
    pub host: String,
    pub port: u16,
    /// Path prefix without a trailing slash ("" for an origin, "/v1", "/openai/v1").
    pub prefix: String,
    /// The `Host` header value (host, plus the port when not the scheme default).
    pub authority: String,
}

impl Endpoint {
    pub fn parse(url: &str) -> Result<Endpoint, String> {
        let uri: http::Uri = url
            .parse()
            .map_err(|e| format!("'{url}' is not a URL: {e}"))?;
        let tls = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(format!("'{url}' must start with http:// or https://")),
        };
        let host = uri
            .host()
            .ok_or_else(|| format!("'{url}' has no host"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let default_port = if tls { 443 } else { 80 };
        let port = uri.port_u16().unwrap_or(default_port);
        if uri.query().is_some() {
            return Err(format!("'{url}' must not have a query string"));
        }
        let prefix = uri.path().trim_end_matches('/').to_string();
        let authority = uri
            .authority()
            .map(|a| a.as_str().to_string())
            .unwrap_or_default();
        Ok(Endpoint {
            tls,
            host,
            port,
            prefix,
            authority,
        })
    }
}

/// The documented default `base_url` per kind (SPEC "Config").
pub fn default_base_url(kind: ProviderKind) -> Option<&'static str> {
    match kind {
        ProviderKind::Openai => Some("https://api.openai.com/v1"),
        ProviderKind::Anthropic => Some("https://api.anthropic.com"),
        ProviderKind::Gemini => Some("https://generativelanguage.googleapis.com"),
        ProviderKind::OpenaiCompatible => None,
    }
}

/// The chat wire format a provider speaks.
pub fn chat_format(kind: ProviderKind, api: OpenAiApi) -> Format {
    match (kind, api) {
        (ProviderKind::Anthropic, _) => Format::Anthropic,
        (ProviderKind::Gemini, _) => Format::Gemini,
        (_, OpenAiApi::Responses) => Format::OpenAiResponses,
        (_, OpenAiApi::Chat) => Format::OpenAiChat,
    }
}

/// What the request asks the provider to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Chat {
        stream: bool,
    },
    Embeddings,
    /// Token counting (Anthropic and Gemini have an endpoint for it).
    CountTokens,
    /// Legacy OpenAI completions (OpenAI kinds only).
    Completions {
        stream: bool,
    },
}

/// Upstream path and query for an operation. `client_query` is the Gemini
/// client's own query (e.g. `alt=sse`), kept on same-format Gemini routes.
pub fn upstream_path(
    ep: &Endpoint,
    format: Format,
    op: Op,
    model: &str,
    gemini_query: Option<&str>,
) -> String {
    let p = &ep.prefix;
    // The model is one path segment for Gemini: a name from a body, a config or
    // a glob never adds segments, a query or a fragment to the upstream URL.
    let model = &path_segment(model.strip_prefix("models/").unwrap_or(model));
    match (format, op) {
        // Only OpenAI kinds are sent these (the request passes as it came).
        (_, Op::Completions { .. }) => format!("{p}/completions"),
        (Format::Anthropic, Op::CountTokens) => format!("{p}/v1/messages/count_tokens"),
        (Format::Gemini, Op::CountTokens) => format!("{p}/v1beta/models/{model}:countTokens"),
        // OpenAI has no counting endpoint: such counts are estimated and
        // never sent (`pipeline::plan::run` estimates them); the arm only completes the match.
        (Format::OpenAiChat | Format::OpenAiResponses, Op::CountTokens) => {
            format!("{p}/chat/completions")
        }
        (Format::OpenAiChat, Op::Chat { .. }) => format!("{p}/chat/completions"),
        (Format::OpenAiResponses, Op::Chat { .. }) => format!("{p}/responses"),
        (Format::OpenAiChat | Format::OpenAiResponses, Op::Embeddings) => format!("{p}/embeddings"),
        (Format::Anthropic, _) => format!("{p}/v1/messages"),
        (Format::Gemini, Op::Chat { stream: false }) => {
            format!("{p}/v1beta/models/{model}:generateContent")
        }
        (Format::Gemini, Op::Chat { stream: true }) => match gemini_query {
            Some(q) if !q.is_empty() => {
                format!("{p}/v1beta/models/{model}:streamGenerateContent?{q}")
            }
            Some(_) => format!("{p}/v1beta/models/{model}:streamGenerateContent"),
            None => format!("{p}/v1beta/models/{model}:streamGenerateContent?alt=sse"),
        },
        (Format::Gemini, Op::Embeddings) => format!("{p}/v1beta/models/{model}:batchEmbedContents"),
    }
}

/// `s` percent-encoded as one URL path segment: every byte outside RFC 3986's
/// unreserved set is escaped (`/`, `?`, `#`, `%`, `:`, space, controls), and a
/// `.` or `..` segment has its dots escaped so no resolver treats it as one.
pub fn path_segment(s: &str) -> std::borrow::Cow<'_, str> {
    let plain = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~');
    let dots = s == "." || s == "..";
    if !dots && s.bytes().all(plain) {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if plain(b) && !(dots && b == b'.') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Headers carrying the provider credential, per kind (SPEC "Config").
pub fn auth_header(kind: ProviderKind, key: &str) -> (&'static str, String) {
    match kind {
        ProviderKind::Openai | ProviderKind::OpenaiCompatible => {
            ("authorization", format!("Bearer {key}"))
        }
        ProviderKind::Anthropic => ("x-api-key", key.to_string()),
        ProviderKind::Gemini => ("x-goog-api-key", key.to_string()),
    }
}

/// The `anthropic-version` an Anthropic request gets when neither the client
/// nor the provider's `headers:` set one (SPEC: routes and passthrough too).
pub const ANTHROPIC_VERSION: &str = "2023-06-01";

/// The API version header a request to `kind` must carry, when it has none.
pub fn default_version(kind: ProviderKind) -> Option<(&'static str, &'static str)> {
    (kind == ProviderKind::Anthropic).then_some(("anthropic-version", ANTHROPIC_VERSION))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credential_and_version_headers_per_kind() {
        assert_eq!(
            auth_header(ProviderKind::OpenaiCompatible, "k"),
            ("authorization", "Bearer k".to_string())
        );
        assert_eq!(auth_header(ProviderKind::Anthropic, "k").0, "x-api-key");
        assert_eq!(auth_header(ProviderKind::Gemini, "k").0, "x-goog-api-key");
        assert_eq!(
            default_version(ProviderKind::Anthropic),
            Some(("anthropic-version", "2023-06-01"))
        );
        for k in [
            ProviderKind::Openai,
            ProviderKind::OpenaiCompatible,
            ProviderKind::Gemini,
        ] {
            assert_eq!(default_version(k), None);
        }
    }

    #[test]
    fn endpoints() {
        let e = Endpoint::parse("https://api.groq.com/openai/v1/").unwrap();
        assert_eq!(
            (e.tls, e.host.as_str(), e.port, e.prefix.as_str()),
            (true, "api.groq.com", 443, "/openai/v1")
        );
        assert_eq!(e.authority, "api.groq.com");
        let e = Endpoint::parse("http://127.0.0.1:11434/v1").unwrap();
        assert_eq!(
            (e.tls, e.port, e.authority.as_str()),
            (false, 11434, "127.0.0.1:11434")
        );
        let e = Endpoint::parse("http://[::1]:9000").unwrap();
        assert_eq!((e.host.as_str(), e.prefix.as_str()), ("::1", ""));
        assert!(Endpoint::parse("ftp://x").is_err());
        assert!(Endpoint::parse("api.openai.com").is_err());
    }

    #[test]
    fn gemini_models_stay_one_segment() {
        let g = Endpoint::parse("https://generativelanguage.googleapis.com").unwrap();
        let chat = Op::Chat { stream: false };
        for (model, want) in [
            (
                "gem-x/../../../v1/evil",
                "/v1beta/models/gem-x%2F..%2F..%2F..%2Fv1%2Fevil:generateContent",
            ),
            (
                "x/../../../upload/v1beta/files?alt=json&",
                "/v1beta/models/x%2F..%2F..%2F..%2Fupload%2Fv1beta%2Ffiles%3Falt%3Djson%26:generateContent",
            ),
            ("..", "/v1beta/models/%2E%2E:generateContent"),
            (
                "a#b %c\r\n",
                "/v1beta/models/a%23b%20%25c%0D%0A:generateContent",
            ),
            (
                "m:streamGenerateContent",
                "/v1beta/models/m%3AstreamGenerateContent:generateContent",
            ),
            (
                "models/gemini-2.5-pro",
                "/v1beta/models/gemini-2.5-pro:generateContent",
            ),
            (
                "gemini-2.5-flash",
                "/v1beta/models/gemini-2.5-flash:generateContent",
            ),
        ] {
            let path = upstream_path(&g, Format::Gemini, chat, model, None);
            assert_eq!(path, want, "model {model:?}");
            // Whatever the name, the URL parses with exactly that path and no query.
            let uri: http::Uri = path.parse().unwrap();
            assert_eq!(uri.path(), want);
            assert_eq!(uri.query(), None);
            assert_eq!(
                uri.path().matches('/').count(),
                3,
                "{model:?} added a segment"
            );
        }
        let e = upstream_path(&g, Format::Gemini, Op::Embeddings, "a/b", None);
        assert_eq!(e, "/v1beta/models/a%2Fb:batchEmbedContents");
    }

    #[test]
    fn paths() {
        let o = Endpoint::parse("https://api.openai.com/v1").unwrap();
        let g = Endpoint::parse("https://generativelanguage.googleapis.com").unwrap();
        assert_eq!(
            upstream_path(&o, Format::OpenAiChat, Op::Chat { stream: true }, "m", None),
            "/v1/chat/completions"
        );
        assert_eq!(
            upstream_path(
                &o,
                Format::OpenAiResponses,
                Op::Chat { stream: false },
                "m",
                None
            ),
            "/v1/responses"
        );
        assert_eq!(
            upstream_path(
                &g,
                Format::Gemini,
                Op::Chat { stream: true },
                "gemini-2.5-flash",
                None
            ),
            "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
        );
        assert_eq!(
            upstream_path(&g, Format::Gemini, Op::Chat { stream: true }, "g", Some("")),
            "/v1beta/models/g:streamGenerateContent"
        );
        let a = Endpoint::parse("https://api.anthropic.com").unwrap();
        assert_eq!(
            upstream_path(&a, Format::Anthropic, Op::Chat { stream: false }, "c", None),
            "/v1/messages"
        );
        assert_eq!(
            upstream_path(&a, Format::Anthropic, Op::CountTokens, "c", None),
            "/v1/messages/count_tokens"
        );
        assert_eq!(
            upstream_path(&g, Format::Gemini, Op::CountTokens, "a/b", None),
            "/v1beta/models/a%2Fb:countTokens"
        );
        assert_eq!(
            upstream_path(
                &o,
                Format::OpenAiChat,
                Op::Completions { stream: true },
                "m",
                None
            ),
            "/v1/completions"
        );
    }
}
