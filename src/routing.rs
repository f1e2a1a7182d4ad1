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
    Models,
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
            Route::Models => "models",
            Route::Health | Route::Ready => "health",
            Route::Metrics => "metrics",
            Route::Pass(k) => k.as_str(),
            Route::MethodNotAllowed | Route::NotFound => "other",
        }
    }

    /// The format errors are written in: the client's own, else OpenAI's.
    pub fn error_format(&self, path: &str) -> Format {
        match self {
            Route::Chat { format, .. } => *format,
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
        "/v1/embeddings" | "/embeddings" => pick(post, Route::Embeddings),
        "/v1/models" | "/models" => pick(get, Route::Models),
        "/health" | "/health/live" => pick(get, Route::Health),
        "/health/ready" => pick(get, Route::Ready),
        "/metrics" => pick(get, Route::Metrics),
        _ => gemini(path).map_or(Route::NotFound, |g| pick(post, g)),
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

fn gemini(path: &str) -> Option<Route> {
    let rest = path
        .strip_prefix("/v1beta/models/")
        .or_else(|| path.strip_prefix("/v1/models/"))?;
    let (model, op) = rest.rsplit_once(':')?;
    let stream = match op {
        "generateContent" => false,
        "streamGenerateContent" => true,
        _ => return None,
    };
    if model.is_empty() {
        return None;
    }
    Some(Route::Chat {
        format: Format::Gemini,
        gemini: Some(GeminiPath {
            model: model.to_string(),
            stream,
        }),
    })
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
            route("POST", "/v1beta/models/x:countTokens"),
            Route::NotFound
        );
        assert_eq!(
            route("POST", "/v1beta/x").error_format("/v1beta/x"),
            Format::Gemini
        );
    }
}
