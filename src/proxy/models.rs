//! The model list and model details, in each client's own shape: OpenAI's,
//! Anthropic's (a request with `anthropic-version` on `/v1/models`), and
//! Gemini's (`/v1beta/models`). A key sees only the models it may use.

use super::ctx::RequestCtx;
use super::respond;
use crate::auth::GatewayKey;
use crate::routing::{Route, check_model_name, percent_decode};
use crate::runtime::Snapshot;
use crate::translate::Format;
use pingora_core::protocols::http::ServerSession as Session;
use serde_json::{Value, json};

/// Which client's shape an answer takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    OpenAi,
    Anthropic,
    Gemini,
}

impl Shape {
    /// The shape for a models route; `None` for other routes. Anthropic's
    /// SDK shares `/v1/models` with OpenAI's and says so by its version header
    /// (looked up only on those routes, not per chat request).
    pub fn of(route: &Route, anthropic_version: impl Fn() -> bool) -> Option<Shape> {
        match route {
            Route::Models | Route::Model(_) if anthropic_version() => Some(Shape::Anthropic),
            Route::Models | Route::Model(_) => Some(Shape::OpenAi),
            Route::GeminiModels | Route::GeminiModel(_) => Some(Shape::Gemini),
            _ => None,
        }
    }

    /// The format of errors on these routes.
    pub fn error_format(self) -> Format {
        match self {
            Shape::OpenAi => Format::OpenAiChat,
            Shape::Anthropic => Format::Anthropic,
            Shape::Gemini => Format::Gemini,
        }
    }
}

/// Anthropic dates every model; aigate knows no release date (the epoch is
/// what Anthropic's API documents for an unknown one).
const UNKNOWN_DATE: &str = "1970-01-01T00:00:00Z";

/// One model in `shape`.
pub fn model_json(shape: Shape, name: &str) -> Value {
    match shape {
        Shape::OpenAi => json!({"id": name, "object": "model", "created": 0, "owned_by": "aigate"}),
        Shape::Anthropic => json!({"type": "model", "id": name, "display_name": name,
            "created_at": UNKNOWN_DATE}),
        Shape::Gemini => json!({"name": format!("models/{name}"), "displayName": name,
            "supportedGenerationMethods": ["generateContent", "streamGenerateContent", "countTokens"]}),
    }
}

/// A whole list in `shape` (one page: every model fits).
pub fn list_json(shape: Shape, names: &[&str]) -> Value {
    let data: Vec<Value> = names.iter().map(|n| model_json(shape, n)).collect();
    match shape {
        Shape::OpenAi => json!({"object": "list", "data": data}),
        Shape::Anthropic => json!({"data": data, "has_more": false,
            "first_id": names.first(), "last_id": names.last()}),
        Shape::Gemini => json!({"models": data}),
    }
}

/// The configured model names (not globs) `key` may use, in config order.
pub fn listed<'s>(snap: &'s Snapshot, key: Option<&GatewayKey>) -> Vec<&'s str> {
    snap.models
        .iter()
        .filter(|m| !m.is_glob && key.is_none_or(|k| k.allows(&m.name)))
        .map(|m| m.name.as_str())
        .collect()
}

/// The model a details path names, when `key` may use it and the gateway
/// routes it (a listed name, one a glob matches, or `provider/model`).
pub fn known(snap: &Snapshot, key: Option<&GatewayKey>, raw: &str) -> Option<String> {
    let id = percent_decode(raw)?;
    let id = id
        .strip_prefix("models/")
        .map_or(id.clone(), str::to_string);
    check_model_name(&id).ok()?;
    if key.is_some_and(|k| !k.allows(&id)) {
        return None;
    }
    snap.resolve_model(&id).map(|_| id)
}

/// Answer a models route (the key already checked).
pub async fn answer(
    s: &mut Session,
    ctx: &mut RequestCtx,
    key: Option<&GatewayKey>,
    shape: Shape,
) -> pingora_core::Result<()> {
    let snap = ctx.snap.clone();
    let raw = match &ctx.route {
        Route::Model(raw) | Route::GeminiModel(raw) => raw.clone(),
        _ => {
            let body = list_json(shape, &listed(&snap, key));
            return respond::json(s, ctx, 200, &body).await;
        }
    };
    match known(&snap, key, &raw) {
        Some(id) => respond::json(s, ctx, 200, &model_json(shape, &id)).await,
        // A model the key may not use is as unknown to it as one not configured.
        None => {
            let msg = format!("model '{raw}' is not available on this gateway");
            respond::error(s, ctx, shape.error_format(), 404, &msg, None).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        let a = list_json(Shape::Anthropic, &["a", "b"]);
        assert_eq!(a["first_id"], "a");
        assert_eq!(a["last_id"], "b");
        assert_eq!(a["has_more"], false);
        assert_eq!(a["data"][1]["type"], "model");
        let empty = list_json(Shape::Anthropic, &[]);
        assert_eq!(empty["first_id"], Value::Null);
        let g = list_json(Shape::Gemini, &["g"]);
        assert_eq!(g["models"][0]["name"], "models/g");
        let o = model_json(Shape::OpenAi, "m");
        assert_eq!(o["object"], "model");
        assert_eq!(
            Shape::of(&Route::Model("x".into()), || true),
            Some(Shape::Anthropic)
        );
        assert_eq!(Shape::of(&Route::Models, || false), Some(Shape::OpenAi));
        assert_eq!(
            Shape::of(&Route::GeminiModels, || true),
            Some(Shape::Gemini)
        );
        assert_eq!(
            Shape::of(&Route::Completions, || panic!("header read")),
            None
        );
    }
}
