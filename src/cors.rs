//! CORS for browser clients: which origins may call, and the preflight answer.

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CorsConf {
    /// Exact origins (`https://app.example.com`) or `*`.
    pub allowed_origins: Vec<String>,
    /// Request headers a browser may send; default: the ones SDKs use.
    pub allowed_headers: Option<Vec<String>>,
    #[serde(default = "day")]
    pub max_age_seconds: u64,
}

fn day() -> u64 {
    86400
}

const DEFAULT_HEADERS: &str = "authorization, content-type, x-api-key, x-goog-api-key, api-key, anthropic-version, anthropic-beta, \
openai-organization, openai-project, x-request-id, x-aigate-debug, x-stainless-arch, x-stainless-lang, \
x-stainless-os, x-stainless-package-version, x-stainless-retry-count, x-stainless-runtime, \
x-stainless-runtime-version, x-stainless-timeout, anthropic-dangerous-direct-browser-access";

/// Response headers a browser script may read.
const EXPOSED: &str = "x-request-id, retry-after, x-ratelimit-limit-requests, x-ratelimit-remaining-requests, \
x-ratelimit-reset-requests, x-ratelimit-limit-tokens, x-ratelimit-remaining-tokens, x-ratelimit-reset-tokens, \
x-aigate-provider, x-aigate-model, x-aigate-attempts, x-aigate-estimated";

impl CorsConf {
    /// The `Access-Control-Allow-Origin` value for `origin`, if it is allowed.
    pub fn allow(&self, origin: &str) -> Option<String> {
        if self.allowed_origins.iter().any(|o| o == "*") {
            return Some("*".into());
        }
        self.allowed_origins
            .iter()
            .any(|o| o == origin)
            .then(|| origin.to_string())
    }

    /// Headers on every response to an allowed origin.
    pub fn response_headers(&self, origin: &str) -> Vec<(&'static str, String)> {
        match self.allow(origin) {
            None => vec![],
            Some(o) => vec![
                ("access-control-allow-origin", o),
                ("access-control-expose-headers", EXPOSED.to_string()),
                ("vary", "Origin".to_string()),
            ],
        }
    }

    /// The preflight answer's headers, or None when the origin is not allowed.
    pub fn preflight(&self, origin: &str) -> Option<Vec<(&'static str, String)>> {
        let o = self.allow(origin)?;
        let headers = self
            .allowed_headers
            .as_ref()
            .map(|h| h.join(", "))
            .unwrap_or_else(|| DEFAULT_HEADERS.to_string());
        Some(vec![
            ("access-control-allow-origin", o),
            (
                "access-control-allow-methods",
                "GET, POST, OPTIONS".to_string(),
            ),
            ("access-control-allow-headers", headers),
            ("access-control-max-age", self.max_age_seconds.to_string()),
            ("vary", "Origin".to_string()),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins() {
        let c = CorsConf {
            allowed_origins: vec!["https://a.example".into()],
            allowed_headers: None,
            max_age_seconds: 60,
        };
        assert_eq!(
            c.allow("https://a.example").as_deref(),
            Some("https://a.example")
        );
        assert!(c.allow("https://b.example").is_none());
        assert!(c.preflight("https://b.example").is_none());
        let p = c.preflight("https://a.example").unwrap();
        assert!(
            p.iter()
                .any(|(k, v)| *k == "access-control-allow-headers" && v.contains("x-api-key"))
        );
        let any = CorsConf {
            allowed_origins: vec!["*".into()],
            allowed_headers: Some(vec!["authorization".into()]),
            max_age_seconds: 1,
        };
        assert_eq!(any.allow("https://z").as_deref(), Some("*"));
        assert!(
            any.response_headers("https://z")
                .iter()
                .any(|(k, _)| *k == "access-control-expose-headers")
        );
    }
}
