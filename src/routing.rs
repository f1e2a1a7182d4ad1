//! Which client endpoint a request is for (SPEC "Client-facing endpoints").

use crate::translate::Format;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// A chat request in `format`. Gemini carries model and streaming in the path.
    Chat {
        format: Format,
        gemini: Option<GeminiPath>,
    },
    Embeddings,
    /// Token counting: Anthropic `/v1/messages/count_tokens` or Gemini
    /// `:countTokens` (model in `gemini`, never streaming).
    CountTokens {
        format: Format,
        gemini: Option<GeminiPath>,
    },
    /// Legacy OpenAI `/v1/completions`: passed to OpenAI-kind targets only.
    Completions,
    /// `GET /v1/models`: OpenAI's list, or Anthropic's with `anthropic-version`.
    Models,
    /// `GET /v1/models/{id}` (the id as it came in the path, still escaped).
    Model(String),
    /// `GET /v1beta/models`: Gemini's list.
    GeminiModels,
    /// `GET /v1beta/models/{model}`.
    GeminiModel(String),
    Health,
    Ready,
    Metrics,
    /// A configured route or provider passthrough (`crate::routes`).
    Pass(crate::routes::Kind),
    /// A known path with the wrong method.
    MethodNotAllowed,
    NotFound,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeminiPath {
    pub model: String,
    pub stream: bool,
}

impl Route {
    /// The label for the `ingress` metric dimension.
    pub fn ingress(&self) -> &'static str {
        match self {
            Route::Chat { format, .. } => format.as_str(),
            Route::Embeddings => "embeddings",
            Route::CountTokens { .. } => "count_tokens",
            Route::Completions => "completions",
            Route::Models | Route::Model(_) | Route::GeminiModels | Route::GeminiModel(_) => {
                "models"
            }
            Route::Health | Route::Ready => "health",
            Route::Metrics => "metrics",
            Route::Pass(k) => k.as_str(),
            Route::MethodNotAllowed | Route::NotFound => "other",
        }
    }

    /// The format errors are written in: the client's own, else OpenAI's.
    pub fn error_format(&self, path: &str) -> Format {
        match self {
            Route::Chat { format, .. } | Route::CountTokens { format, .. } => *format,
            _ if path.starts_with("/v1beta/") => Format::Gemini,
            _ => Format::OpenAiChat,
        }
    }
}

pub fn route(method: &str, path: &str) -> Route {
    let post = method == "POST";
    let get = method == "GET" || method == "HEAD";
    let pick = |ok: bool, r: Route| if ok { r } else { Route::MethodNotAllowed };
    match path {
        "/v1/chat/completions" | "/chat/completions" => pick(
            post,
            Route::Chat {
                format: Format::OpenAiChat,
                gemini: None,
            },
        ),
        "/v1/responses" | "/responses" => pick(
            post,
            Route::Chat {
                format: Format::OpenAiResponses,
                gemini: None,
            },
        ),
        "/v1/messages" => pick(
            post,
            Route::Chat {
                format: Format::Anthropic,
                gemini: None,
            },
        ),
        "/v1/messages/count_tokens" => pick(
            post,
            Route::CountTokens {
                format: Format::Anthropic,
                gemini: None,
            },
        ),
        "/v1/completions" | "/completions" => pick(post, Route::Completions),
        "/v1/embeddings" | "/embeddings" => pick(post, Route::Embeddings),
        "/v1/models" | "/models" => pick(get, Route::Models),
        "/v1beta/models" => pick(get, Route::GeminiModels),
        "/health" | "/health/live" => pick(get, Route::Health),
        "/health/ready" => pick(get, Route::Ready),
        "/metrics" => pick(get, Route::Metrics),
        _ => model_path(path, post, get),
    }
}

/// `/v1beta/models/{rest}` and `/v1/models/{rest}`: a Gemini operation when
/// `rest` ends in one (POST), else one model's details (GET). Model names may
/// hold `:` (`llama3.1:8b`), so only a known operation makes an operation.
fn model_path(path: &str, post: bool, get: bool) -> Route {
    let (rest, beta) = match path.strip_prefix("/v1beta/models/") {
        Some(r) => (r, true),
        None => match path.strip_prefix("/v1/models/") {
            Some(r) => (r, false),
            None => return Route::NotFound,
        },
    };
    if let Some(op) = gemini(rest) {
        return if post { op } else { Route::MethodNotAllowed };
    }
    // Other methods (OpenAI's DELETE of a fine-tuned model) stay unrouted, so
    // a configured prefix route can still take them.
    match (rest.is_empty(), get, beta) {
        (false, true, true) => Route::GeminiModel(rest.to_string()),
        (false, true, false) => Route::Model(rest.to_string()),
        _ => Route::NotFound,
    }
}

/// The longest model name accepted (provider names run to ~100 characters).
pub const MAX_MODEL_NAME: usize = 256;

/// Whether `name` can be a model name: the characters providers use in them
/// (`gpt-4o`, `llama3.1:8b`, `meta-llama/Llama-3-8B`, `@cf/meta/x`,
/// `anthropic/claude-3.5-sonnet:beta`), no `.`/`..` or empty segment, at most
/// [`MAX_MODEL_NAME`] bytes. Anything else (whitespace, controls, `?`, `#`,
/// `%`, quotes) is refused before it can reach a URL, a header or a log line.
pub fn check_model_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("`model` must not be empty".into());
    }
    if name.len() > MAX_MODEL_NAME {
        return Err(format!("`model` is longer than {MAX_MODEL_NAME} bytes"));
    }
    let allowed = |b: u8| b.is_ascii_alphanumeric() || b"-._:/@+=~".contains(&b);
    if let Some(c) = name.chars().find(|c| !c.is_ascii() || !allowed(*c as u8)) {
        return Err(format!(
            "`model` contains {c:?}, which no provider uses in model names \
             (letters, digits and - . _ : / @ + = ~ are allowed)"
        ));
    }
    if name
        .split('/')
        .any(|seg| seg.is_empty() || seg == "." || seg == "..")
    {
        return Err("`model` must not contain empty, '.' or '..' path segments".into());
    }
    Ok(())
}

/// `{model}:{operation}` for the operations aigate serves.
fn gemini(rest: &str) -> Option<Route> {
    let (model, op) = rest.rsplit_once(':')?;
    if model.is_empty() {
        return None;
    }
    let path = |stream| {
        Some(GeminiPath {
            model: model.to_string(),
            stream,
        })
    };
    let format = Format::Gemini;
    match op {
        "generateContent" => Some(Route::Chat {
            format,
            gemini: path(false),
        }),
        "streamGenerateContent" => Some(Route::Chat {
            format,
            gemini: path(true),
        }),
        "countTokens" => Some(Route::CountTokens {
            format,
            gemini: path(false),
        }),
        _ => None,
    }
}

/// A path segment with its `%XX` escapes decoded (SDKs escape `/` in model
/// ids); `None` when an escape is malformed or decodes to invalid UTF-8.
pub fn percent_decode(s: &str) -> Option<String> {
    if !s.contains('%') {
        return Some(s.to_string());
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b.get(i + 1..i + 3)?;
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_names() {
        for ok in [
            "gpt-4o",
            "claude-3-5-sonnet-20241022",
            "llama3.1:8b",
            "meta-llama/Llama-3-8B-Instruct",
            "@cf/meta/llama-3-8b",
            "anthropic/claude-3.5-sonnet:beta",
            "deepseek/deepseek-chat",
            "gemini-2.5-flash",
        ] {
            assert_eq!(check_model_name(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "gem-x/../../../v1/evil",
            "gemini/x/../../../upload/v1beta/files?alt=json&",
            "gpt-4o\r\nX-Evil: 1",
            "a\0b",
            "a b",
            "a#b",
            "a%2Fb",
            "a?b",
            "/abs",
            "a//b",
            "./a",
            "\"quoted\"",
            "modèle",
        ] {
            assert!(check_model_name(bad).is_err(), "{bad:?} accepted");
        }
        assert!(check_model_name(&"a".repeat(MAX_MODEL_NAME)).is_ok());
        assert!(check_model_name(&"a".repeat(MAX_MODEL_NAME + 1)).is_err());
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%2Fb").as_deref(), Some("a/b"));
        assert_eq!(percent_decode("plain").as_deref(), Some("plain"));
        assert_eq!(percent_decode("a%2"), None);
        assert_eq!(percent_decode("a%zz"), None);
        assert_eq!(percent_decode("a%+1"), None);
        assert_eq!(percent_decode("%FF"), None);
    }

    #[test]
    fn routes() {
        assert_eq!(route("POST", "/v1/messages").ingress(), "anthropic");
        assert_eq!(route("GET", "/v1/messages"), Route::MethodNotAllowed);
        assert_eq!(route("GET", "/v1/models"), Route::Models);
        assert_eq!(route("GET", "/health/ready"), Route::Ready);
        assert_eq!(route("GET", "/nope"), Route::NotFound);
        match route(
            "POST",
            "/v1beta/models/gemini-2.5-flash:streamGenerateContent",
        ) {
            Route::Chat {
                format: Format::Gemini,
                gemini: Some(g),
            } => {
                assert_eq!(g.model, "gemini-2.5-flash");
                assert!(g.stream);
            }
            r => panic!("{r:?}"),
        }
        assert_eq!(
            route("POST", "/v1beta/models/x:embedContent"),
            Route::NotFound
        );
        assert_eq!(
            route("POST", "/v1beta/models/g:countTokens"),
            Route::CountTokens {
                format: Format::Gemini,
                gemini: Some(GeminiPath {
                    model: "g".into(),
                    stream: false
                })
            }
        );
        assert_eq!(
            route("POST", "/v1/messages/count_tokens").error_format("/v1/messages/count_tokens"),
            Format::Anthropic
        );
        assert_eq!(route("POST", "/v1/completions"), Route::Completions);
        assert_eq!(route("GET", "/v1/completions"), Route::MethodNotAllowed);
        assert_eq!(
            route("GET", "/v1/models/llama3.1:8b"),
            Route::Model("llama3.1:8b".into())
        );
        assert_eq!(
            route("GET", "/v1beta/models/gemini-2.5-flash"),
            Route::GeminiModel("gemini-2.5-flash".into())
        );
        assert_eq!(route("GET", "/v1beta/models"), Route::GeminiModels);
        assert_eq!(route("POST", "/v1beta/models"), Route::MethodNotAllowed);
        assert_eq!(
            route("GET", "/v1beta/models/g:generateContent"),
            Route::MethodNotAllowed
        );
        assert_eq!(route("DELETE", "/v1/models/x"), Route::NotFound);
        assert_eq!(route("GET", "/v1/models/"), Route::NotFound);
        assert_eq!(
            route("POST", "/v1beta/x").error_format("/v1beta/x"),
            Format::Gemini
        );
    }
}
