//! The dashboard: three files compiled into the binary (no build step, no
//! CDN: it works offline), served at `/ui/` on the admin listener when the
//! admin API is on. The page holds no data; it asks `/admin/*` with its
//! session cookie.

use crate::proxy::ctx::RequestCtx;
use crate::proxy::respond;
use pingora_core::protocols::http::ServerSession;

const INDEX: &str = include_str!("ui/index.html");
const APP: &str = include_str!("ui/app.js");
const STYLE: &str = include_str!("ui/style.css");

/// Only this listener's own files; no inline script, no framing.
const CSP: &str = "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// The dashboard's paths: `/` and `/ui/...`.
pub fn owns(path: &str) -> bool {
    path == "/" || path == "/ui" || path.starts_with("/ui/")
}

/// A dashboard file, or None for a path that is not one.
pub fn file(path: &str) -> Option<(&'static str, &'static str)> {
    match path {
        "/ui/" | "/ui/index.html" => Some(("text/html; charset=utf-8", INDEX)),
        "/ui/app.js" => Some(("text/javascript; charset=utf-8", APP)),
        "/ui/style.css" => Some(("text/css; charset=utf-8", STYLE)),
        _ => None,
    }
}

pub async fn serve(
    s: &mut ServerSession,
    ctx: &mut RequestCtx,
    method: &str,
    path: &str,
) -> pingora_core::Result<()> {
    if path == "/" || path == "/ui" {
        let h = [("location", "/ui/".to_string())];
        return respond::send(s, ctx, 302, "text/plain", vec![], &h).await;
    }
    let Some((ct, body)) = file(path).filter(|_| method == "GET" || method == "HEAD") else {
        let msg = format!("no route for {method} {path}");
        return respond::error(
            s,
            ctx,
            crate::translate::Format::OpenAiChat,
            404,
            &msg,
            None,
        )
        .await;
    };
    let h = [
        ("content-security-policy", CSP.to_string()),
        ("x-content-type-options", "nosniff".to_string()),
        ("cache-control", "no-cache".to_string()),
        ("referrer-policy", "no-referrer".to_string()),
    ];
    respond::send(s, ctx, 200, ct, body.as_bytes().to_vec(), &h).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_self_contained() {
        for p in ["/ui/", "/ui/app.js", "/ui/style.css"] {
            let (_, body) = file(p).unwrap();
            // No request leaves for another host.
            assert!(
                !body.contains("http://") && !body.contains("https://"),
                "{p}"
            );
        }
        assert!(file("/ui/../etc/passwd").is_none());
        assert!(owns("/") && owns("/ui/app.js") && !owns("/uix") && !owns("/metrics"));
    }
}
