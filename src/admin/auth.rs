//! Who is asking: the admin token (`Authorization: Bearer`, scripts) or a
//! dashboard session cookie; user logins and their rate limit.

use super::session;
use crate::config::admin::AdminConf;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use subtle::ConstantTimeEq;

/// The admin making a request, for the log and the write metric.
#[derive(Debug, Clone, PartialEq)]
pub enum Admin {
    Token,
    User(String),
}

impl Admin {
    pub fn name(&self) -> &str {
        match self {
            Admin::Token => "token",
            Admin::User(u) => u,
        }
    }

    /// Writes by cookie must carry a JSON body or `x-aigate-csrf` (a form
    /// another site posts cannot); the token is never sent by a browser on
    /// its own.
    pub fn by_cookie(&self) -> bool {
        matches!(self, Admin::User(_))
    }
}

/// Constant time over digests (equal lengths whatever was presented).
fn token_matches(want: &str, presented: &str) -> bool {
    let a: [u8; 32] = Sha256::digest(want.as_bytes()).into();
    let b: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
    a.ct_eq(&b).into()
}

/// The admin behind `authorization` / `cookie`, if any is valid now.
pub fn who(
    conf: &AdminConf,
    authorization: Option<&str>,
    cookie: Option<&str>,
    now_ms: u64,
) -> Option<Admin> {
    if let (Some(want), Some(h)) = (conf.token(), authorization) {
        let h = h.trim();
        let presented = h
            .strip_prefix("Bearer ")
            .or_else(|| h.strip_prefix("bearer "))
            .unwrap_or("")
            .trim();
        if token_matches(want, presented) {
            return Some(Admin::Token);
        }
    }
    let value = cookie.and_then(session::from_cookie_header)?;
    let user = session::verify(value, now_ms)?;
    // A user removed from the config (and reloaded) loses its sessions.
    conf.users
        .iter()
        .any(|u| u.name == user)
        .then_some(Admin::User(user))
}

/// A hash verified for unknown users, so a login takes as long whether the
/// name exists or not (cost 10, as `aigate admin-password` makes them).
static DUMMY: once_cell::sync::Lazy<String> =
    once_cell::sync::Lazy::new(|| bcrypt::hash("not a password", 10).unwrap_or_default());

/// Whether `name` / `password` are a configured user's. Slow (bcrypt): call
/// off the async workers.
pub fn check_password(conf: &AdminConf, name: &str, password: &str) -> bool {
    match conf.users.iter().find(|u| u.name == name) {
        Some(u) => bcrypt::verify(password, &u.password_hash).unwrap_or(false),
        None => {
            let _ = bcrypt::verify(password, &DUMMY);
            false
        }
    }
}

/// Login attempts per client address: at most `max` within `window_ms`.
pub struct LoginLimit {
    max: usize,
    window_ms: u64,
    seen: Mutex<HashMap<IpAddr, Vec<u64>>>,
}

impl LoginLimit {
    pub fn new(max: usize, window_ms: u64) -> Self {
        LoginLimit {
            max,
            window_ms,
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// Count an attempt; `Err(ms)` until the oldest one leaves the window.
    pub fn attempt(&self, ip: IpAddr, now_ms: u64) -> Result<(), u64> {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let window = self.window_ms;
        if seen.len() > 10_000 {
            // Bounded: forget addresses whose attempts are all old.
            seen.retain(|_, t| t.iter().any(|&t| t + window > now_ms));
        }
        let times = seen.entry(ip).or_default();
        times.retain(|&t| t + window > now_ms);
        if times.len() >= self.max {
            return Err(times[0] + window - now_ms);
        }
        times.push(now_ms);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf(token: &str) -> AdminConf {
        AdminConf {
            token: Some(token.into()),
            ..Default::default()
        }
    }

    #[test]
    fn token_and_cookie() {
        let c = conf("0123456789abcdef");
        assert_eq!(
            who(&c, Some("Bearer 0123456789abcdef"), None, 0),
            Some(Admin::Token)
        );
        assert_eq!(who(&c, Some("Bearer 0123456789abcdeX"), None, 0), None);
        assert_eq!(who(&c, Some("0123456789abcdef"), None, 0), None);
        assert_eq!(who(&c, None, None, 0), None);
        // A valid session of a user no longer configured is refused.
        let v = session::sign("gone", u64::MAX);
        let cookie = format!("aigate_session={v}");
        assert_eq!(who(&c, None, Some(&cookie), 0), None);
        let mut with_user = c.clone();
        with_user.users.push(crate::config::admin::AdminUser {
            name: "gone".into(),
            password_hash: String::new(),
        });
        assert_eq!(
            who(&with_user, None, Some(&cookie), 0),
            Some(Admin::User("gone".into()))
        );
    }

    #[test]
    fn logins_are_limited_per_address() {
        let l = LoginLimit::new(2, 1000);
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        assert!(l.attempt(a, 0).is_ok());
        assert!(l.attempt(a, 10).is_ok());
        assert_eq!(l.attempt(a, 20), Err(980));
        assert!(l.attempt(b, 20).is_ok(), "another address");
        assert!(l.attempt(a, 1000).is_ok(), "the first left the window");
    }
}
