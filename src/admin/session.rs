//! Dashboard sessions: a cookie `aigate_session=<user>|<expiry ms>.<HMAC>`,
//! HMAC-SHA256 with a key drawn at process start. A SIGHUP reload keeps the
//! key (same process), a restart or binary upgrade draws a new one: every
//! session ends and users log in again (nothing to configure or leak).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{Hmac, Mac};
use once_cell::sync::Lazy;
use sha2::Sha256;

pub const COOKIE: &str = "aigate_session";

static KEY: Lazy<[u8; 32]> = Lazy::new(rand::random);

fn mac(key: &[u8], payload: &[u8]) -> Hmac<Sha256> {
    let mut m = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
    m.update(payload);
    m
}

/// A signed session value for `user` ending at `expires_ms` (unix ms).
pub fn sign_with(key: &[u8], user: &str, expires_ms: u64) -> String {
    let payload = format!("{user}|{expires_ms}");
    let tag = mac(key, payload.as_bytes()).finalize().into_bytes();
    format!("{}.{}", B64.encode(payload), B64.encode(tag))
}

/// The user of a valid, unexpired session value.
pub fn verify_with(key: &[u8], value: &str, now_ms: u64) -> Option<String> {
    let (payload, tag) = value.split_once('.')?;
    let payload = B64.decode(payload).ok()?;
    let tag = B64.decode(tag).ok()?;
    // Constant-time comparison (hmac's verify_slice).
    mac(key, &payload).verify_slice(&tag).ok()?;
    let payload = String::from_utf8(payload).ok()?;
    let (user, expires) = payload.rsplit_once('|')?;
    (expires.parse::<u64>().ok()? > now_ms).then(|| user.to_string())
}

pub fn sign(user: &str, expires_ms: u64) -> String {
    sign_with(&*KEY, user, expires_ms)
}

pub fn verify(value: &str, now_ms: u64) -> Option<String> {
    verify_with(&*KEY, value, now_ms)
}

/// The session cookie's value in a `Cookie` header.
pub fn from_cookie_header(h: &str) -> Option<&str> {
    h.split(';').find_map(|c| {
        let (k, v) = c.trim().split_once('=')?;
        (k == COOKIE).then_some(v)
    })
}

/// `Set-Cookie` for a new session (`Max-Age` in seconds).
pub fn set_cookie(value: &str, max_age_s: u64) -> String {
    format!("{COOKIE}={value}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age_s}")
}

/// `Set-Cookie` ending the session.
pub fn clear_cookie() -> String {
    format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_expiring_and_tamper_proof() {
        let k = [7u8; 32];
        let v = sign_with(&k, "ops", 1_000);
        assert_eq!(verify_with(&k, &v, 999).as_deref(), Some("ops"));
        assert_eq!(verify_with(&k, &v, 1_000), None, "expired at its end");
        assert_eq!(verify_with(&[8u8; 32], &v, 0), None, "another key");
        // A changed user or expiry breaks the signature.
        let (_, tag) = v.split_once('.').unwrap();
        let forged = format!("{}.{tag}", B64.encode("root|999999"));
        assert_eq!(verify_with(&k, &forged, 0), None);
        assert_eq!(verify_with(&k, "garbage", 0), None);
        assert_eq!(verify_with(&k, "a.b", 0), None);
    }

    #[test]
    fn cookie_parsing() {
        assert_eq!(
            from_cookie_header("a=1; aigate_session=xyz.abc; b=2"),
            Some("xyz.abc")
        );
        assert_eq!(from_cookie_header("a=1"), None);
        let c = set_cookie("v", 60);
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Strict") && c.contains("Path=/"));
    }
}
