//! Which headers a proxied route passes, each way.
//!
//! Defaults: every request header but hop-by-hop ones, `Host` (set to the
//! upstream's), `x-aigate-*`, and — when the route checks gateway keys or
//! injects a provider credential — the client's credential headers; every
//! response header but hop-by-hop ones. An allow-list replaces the default,
//! but the headers that frame or describe the body always pass (a body
//! without its `Content-Length` or `Content-Encoding` would be corrupt).

/// Header names, lowercase; an entry ending in `*` is a prefix.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NameList {
    exact: Vec<String>,
    prefixes: Vec<String>,
}

impl NameList {
    pub fn new(names: &[String]) -> NameList {
        let mut l = NameList::default();
        for n in names {
            let n = n.to_ascii_lowercase();
            match n.strip_suffix('*') {
                Some(p) => l.prefixes.push(p.to_string()),
                None => l.exact.push(n),
            }
        }
        l
    }

    pub fn contains(&self, name: &str) -> bool {
        self.exact.iter().any(|n| n == name) || self.prefixes.iter().any(|p| name.starts_with(p))
    }
}

/// Where clients put their key (SPEC "Client-facing endpoints").
pub fn is_credential(name: &str) -> bool {
    matches!(
        name,
        "authorization" | "x-api-key" | "x-goog-api-key" | "api-key"
    )
}

fn hop_by_hop(name: &str) -> bool {
    matches!(
        name,
        "connection" | "keep-alive" | "proxy-connection" | "te" | "trailer" | "upgrade"
    )
}

/// Framing and body description: always passed (request and response).
fn body_header(name: &str) -> bool {
    matches!(
        name,
        "content-length" | "transfer-encoding" | "content-type" | "content-encoding"
    )
}

/// Does a client request header go upstream?
pub fn forward_request(name: &str, allow: Option<&NameList>, strip_credentials: bool) -> bool {
    if hop_by_hop(name) || name == "host" || name.starts_with("x-aigate-") {
        return false;
    }
    if is_credential(name) {
        // Only a route with no key check and no injected credential can pass
        // one, and only when its allow-list names it.
        return !strip_credentials && allow.is_some_and(|a| a.contains(name));
    }
    if body_header(name) || name == "expect" {
        return true;
    }
    if name == "proxy-authorization" {
        return allow.is_some_and(|a| a.contains(name));
    }
    allow.is_none_or(|a| a.contains(name))
}

/// Does an upstream response header go to the client?
pub fn forward_response(name: &str, allow: Option<&NameList>) -> bool {
    if hop_by_hop(name) {
        return false;
    }
    body_header(name) || allow.is_none_or(|a| a.contains(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_defaults_and_allow_lists() {
        for n in [
            "content-type",
            "accept",
            "openai-beta",
            "cookie",
            "content-length",
        ] {
            assert!(forward_request(n, None, true), "{n}");
        }
        for n in [
            "authorization",
            "x-api-key",
            "x-goog-api-key",
            "api-key",
            "host",
            "connection",
            "te",
            "x-aigate-debug",
            "proxy-authorization",
        ] {
            assert!(!forward_request(n, None, true), "{n}");
            assert!(!forward_request(n, None, false), "{n}");
        }
        let allow = NameList::new(&[
            "Accept".into(),
            "x-stainless-*".into(),
            "authorization".into(),
        ]);
        assert!(forward_request("accept", Some(&allow), true));
        assert!(forward_request("x-stainless-os", Some(&allow), true));
        assert!(!forward_request("openai-beta", Some(&allow), true));
        // Framing always passes; credentials only without key check or provider.
        assert!(forward_request("transfer-encoding", Some(&allow), true));
        assert!(forward_request("expect", Some(&allow), true));
        assert!(!forward_request("authorization", Some(&allow), true));
        assert!(forward_request("authorization", Some(&allow), false));
        assert!(!forward_request("x-api-key", Some(&allow), false));
    }

    #[test]
    fn response_defaults_and_allow_lists() {
        assert!(forward_response("x-upstream", None));
        assert!(!forward_response("connection", None));
        assert!(!forward_response("keep-alive", None));
        let allow = NameList::new(&["x-keep".into()]);
        assert!(forward_response("x-keep", Some(&allow)));
        assert!(!forward_response("x-upstream", Some(&allow)));
        assert!(forward_response("content-encoding", Some(&allow)));
        assert!(forward_response("transfer-encoding", Some(&allow)));
    }
}
