//! Gateway keys: where clients put them, and a constant-time match against the
//! configured ones (only SHA-256 digests are kept in memory).

use crate::config::file::KeyConf;
use arc_swap::ArcSwap;
use globset::{Glob, GlobSet, GlobSetBuilder};
use once_cell::sync::Lazy;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use subtle::ConstantTimeEq;

/// A configured gateway key as requests check it.
pub struct GatewayKey {
    pub id: String,
    pub sha256: [u8; 32],
    pub models: Option<GlobSet>,
    pub rpm: Option<u64>,
    pub tpm: Option<u64>,
    pub max_concurrent: Option<u64>,
    /// Its counter names, built once.
    pub names: crate::limits::KeyNames,
    /// Daily and monthly budgets in micro-USD.
    pub budgets: [Option<u64>; 2],
}

impl GatewayKey {
    /// Compile a validated `keys:` entry: only its digest is kept.
    pub fn compile(k: &KeyConf) -> Result<GatewayKey, String> {
        let sha256 = match (&k.key, &k.sha256) {
            (Some(key), _) => Sha256::digest(key.as_bytes()).into(),
            (None, Some(h)) => {
                let mut out = [0u8; 32];
                hex::decode_to_slice(h, &mut out).map_err(|e| format!("keys: {e}"))?;
                out
            }
            (None, None) => return Err(format!("key '{}' has no key", k.id)),
        };
        Ok(GatewayKey::new(
            &k.id,
            sha256,
            k.models.as_deref(),
            [k.rpm, k.tpm, k.max_concurrent],
            [k.budget_usd_daily, k.budget_usd_monthly],
        ))
    }

    /// A key from its parts, from the config file or the admin API's store:
    /// `limits` are rpm, tpm and max_concurrent; `budgets_usd` daily and
    /// monthly, kept in micro-USD.
    pub fn new(
        id: &str,
        sha256: [u8; 32],
        models: Option<&[String]>,
        limits: [Option<u64>; 3],
        budgets_usd: [Option<f64>; 2],
    ) -> GatewayKey {
        let [rpm, tpm, max_concurrent] = limits;
        GatewayKey {
            id: id.to_string(),
            sha256,
            models: models.map(glob_set),
            rpm,
            tpm,
            max_concurrent,
            names: crate::limits::KeyNames::new(id),
            budgets: budgets_usd.map(|b| b.map(|usd| (usd * 1e6).round() as u64)),
        }
    }

    pub fn limits(&self) -> crate::limits::KeyLimits<'_> {
        crate::limits::KeyLimits {
            id: &self.id,
            rpm: self.rpm,
            tpm: self.tpm,
            max_concurrent: self.max_concurrent,
            budgets: self.budgets,
            names: &self.names,
        }
    }

    pub fn allows(&self, model: &str) -> bool {
        self.models.as_ref().is_none_or(|g| g.is_match(model))
    }
}

fn glob_set(globs: &[String]) -> GlobSet {
    let mut b = GlobSetBuilder::new();
    for g in globs {
        // Validated in `runtime::load`.
        if let Ok(g) = Glob::new(g) {
            b.add(g);
        }
    }
    b.build().unwrap_or_else(|_| GlobSet::empty())
}

/// Enabled runtime keys by digest: what requests read. `admin::keys` owns
/// them and hands each new set here, so the check needs nothing of admin.
static RUNTIME: Lazy<ArcSwap<HashMap<[u8; 32], Arc<GatewayKey>>>> =
    Lazy::new(|| ArcSwap::from_pointee(HashMap::new()));
/// Any runtime key enabled: with none (the common case) a request skips the lookup.
static ANY_RUNTIME: AtomicBool = AtomicBool::new(false);

/// The enabled runtime keys from now on (`admin::keys` after every change).
pub fn set_runtime_keys(live: HashMap<[u8; 32], Arc<GatewayKey>>) {
    ANY_RUNTIME.store(!live.is_empty(), Ordering::Relaxed);
    RUNTIME.store(Arc::new(live));
}

/// Whether requests need a key because runtime keys exist.
fn any_runtime() -> bool {
    ANY_RUNTIME.load(Ordering::Relaxed)
}

/// The enabled runtime key `presented` is.
fn runtime_lookup(presented: &str) -> Option<Arc<GatewayKey>> {
    if !any_runtime() {
        return None;
    }
    let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
    let k = RUNTIME.load().get(&digest).cloned()?;
    bool::from(k.sha256.ct_eq(&digest)).then_some(k)
}

/// The key a client presented: `Authorization: Bearer`, `x-api-key`,
/// `x-goog-api-key`, `api-key` (Azure OpenAI's header, which OpenAI-style
/// tools send), or `?key=` in the query — the places each SDK uses.
pub fn presented_key<'a>(
    header: &dyn Fn(&str) -> Option<&'a str>,
    query: Option<&'a str>,
) -> Option<&'a str> {
    if let Some(v) = header("authorization") {
        let v = v.trim();
        let token = v
            .strip_prefix("Bearer ")
            .or_else(|| v.strip_prefix("bearer "))
            .unwrap_or(v)
            .trim();
        if !token.is_empty() {
            return Some(token);
        }
    }
    for h in ["x-api-key", "x-goog-api-key", "api-key"] {
        if let Some(v) = header(h).map(str::trim).filter(|v| !v.is_empty()) {
            return Some(v);
        }
    }
    query.and_then(|q| query_param(q, "key"))
}

/// A raw query parameter value (no percent-decoding: keys are URL-safe).
pub fn query_param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == name && !v.is_empty()).then_some(v)
    })
}

/// The query string without `key=...`, so a client key never travels upstream.
pub fn strip_key_param(query: &str) -> String {
    query
        .split('&')
        .filter(|kv| !kv.is_empty() && !kv.starts_with("key=") && *kv != "key")
        .collect::<Vec<_>>()
        .join("&")
}

/// A gateway key found for a request: the config's, or a runtime key
/// (made by `admin::keys`, shared by reference with its table here).
pub enum Found<'k> {
    Config(&'k GatewayKey),
    Runtime(Arc<GatewayKey>),
}

impl std::ops::Deref for Found<'_> {
    type Target = GatewayKey;
    fn deref(&self) -> &GatewayKey {
        match self {
            Found::Config(k) => k,
            Found::Runtime(k) => k,
        }
    }
}

/// Whether requests must present a gateway key: the config has some, or
/// runtime keys were made (making one turns authentication on).
pub fn keys_required(keys: &[GatewayKey]) -> bool {
    !keys.is_empty() || any_runtime()
}

/// The config key, else the runtime key, `presented` is.
pub fn lookup<'k>(keys: &'k [GatewayKey], presented: &str) -> Option<Found<'k>> {
    find_key(keys, presented)
        .map(Found::Config)
        .or_else(|| runtime_lookup(presented).map(Found::Runtime))
}

/// The configured key matching `presented`. Every configured digest is compared
/// in constant time, so timing reveals neither which key matched nor how much.
pub fn find_key<'k>(keys: &'k [GatewayKey], presented: &str) -> Option<&'k GatewayKey> {
    let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
    let mut found = None;
    for k in keys {
        if bool::from(k.sha256.ct_eq(&digest)) && found.is_none() {
            found = Some(k);
        }
    }
    found
}

/// The gateway key check every path makes (AI endpoints, routes,
/// passthrough): the key (config, then runtime) the request presents, or the
/// 401 message.
pub fn check<'k, 'a>(
    keys: &'k [GatewayKey],
    header: &dyn Fn(&str) -> Option<&'a str>,
    query: Option<&'a str>,
) -> Result<Found<'k>, &'static str> {
    let presented = presented_key(header, query).ok_or("missing gateway key")?;
    lookup(keys, presented).ok_or("invalid gateway key")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: &str, secret: &str) -> GatewayKey {
        GatewayKey {
            id: id.into(),
            sha256: Sha256::digest(secret.as_bytes()).into(),
            models: None,
            rpm: None,
            tpm: None,
            max_concurrent: None,
            names: crate::limits::KeyNames::new(id),
            budgets: [None; 2],
        }
    }

    #[test]
    fn extraction_order_and_forms() {
        let h = |n: &str| match n {
            "authorization" => Some("Bearer sk-a"),
            _ => None,
        };
        assert_eq!(presented_key(&h, None), Some("sk-a"));
        let h = |n: &str| (n == "x-goog-api-key").then_some("g");
        assert_eq!(presented_key(&h, Some("alt=sse")), Some("g"));
        let h = |n: &str| (n == "api-key").then_some(" az ");
        assert_eq!(presented_key(&h, None), Some("az"));
        let none = |_: &str| None;
        assert_eq!(presented_key(&none, Some("alt=sse&key=q1")), Some("q1"));
        assert_eq!(presented_key(&none, Some("key=")), None);
        assert_eq!(presented_key(&none, None), None);
        assert_eq!(strip_key_param("alt=sse&key=q1"), "alt=sse");
        assert_eq!(strip_key_param("key=q1"), "");
    }

    #[test]
    fn matches_only_exact_key() {
        let keys = vec![key("a", "sk-a"), key("b", "sk-b")];
        assert_eq!(find_key(&keys, "sk-b").map(|k| k.id.as_str()), Some("b"));
        assert!(find_key(&keys, "sk-").is_none());
        assert!(find_key(&keys, "sk-bb").is_none());
    }

    #[test]
    fn check_says_missing_or_invalid() {
        let loaded = crate::runtime::parse_text("keys: [{id: a, key: sk-a}]\n").unwrap();
        let snap = crate::runtime::Snapshot::compile(&loaded).unwrap();
        let snap = &snap.keys[..];
        let none = |_: &str| None;
        assert_eq!(check(snap, &none, None).err(), Some("missing gateway key"));
        assert_eq!(
            check(snap, &none, Some("key=sk-x")).err(),
            Some("invalid gateway key")
        );
        let h = |n: &str| (n == "x-api-key").then_some("sk-a");
        assert_eq!(check(snap, &h, None).map(|k| k.id.clone()), Ok("a".into()));
    }
}
