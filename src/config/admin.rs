//! `admin:` as written, and its checks (called from `runtime::load`).

use crate::config::problem::Problem;
use serde::Deserialize;
use std::time::Duration;

/// Requests kept by the request log unless `request_log_size` says otherwise.
pub const DEFAULT_REQUEST_LOG_SIZE: usize = 10_000;
const MAX_REQUEST_LOG_SIZE: usize = 1_000_000;
const DEFAULT_SESSION_HOURS: u64 = 12;
/// A token shorter than this is refused: it is the whole admin secret.
const MIN_TOKEN_LEN: usize = 16;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConf {
    /// `Authorization: Bearer <token>` for scripts; empty (its variable
    /// unset) counts as none.
    pub token: Option<String>,
    /// Dashboard users: name and bcrypt hash (`aigate admin-password`).
    #[serde(default)]
    pub users: Vec<AdminUser>,
    /// How long a login session lasts (default 12).
    pub session_hours: Option<u64>,
    /// The same in seconds, over `session_hours` (short sessions for tests).
    pub session_seconds: Option<u64>,
    /// Runtime keys file (default: `aigate-keys.json` next to the config).
    /// Read at start. Unused with `limits.backend: redis` (keys live in Redis).
    pub store: Option<String>,
    /// Finished requests the request log keeps (default 10,000). Read at start.
    pub request_log_size: Option<usize>,
    /// Also append the request log to a file, read back at start (default
    /// false). Read at start.
    #[serde(default)]
    pub request_log_persist: bool,
    /// That file (default: `aigate-requests.jsonl` next to the runtime keys file).
    pub request_log_file: Option<String>,
    /// How long entries stay in the file (`7d` by default; `30s`, `15m`, `12h`).
    pub request_log_retention: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminUser {
    pub name: String,
    pub password_hash: String,
}

impl AdminConf {
    /// The token, when one is set (an unset variable leaves it empty).
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref().filter(|t| !t.is_empty())
    }

    /// Whether `/admin/*` is on: a token or at least one user.
    pub fn enabled(&self) -> bool {
        self.token().is_some() || !self.users.is_empty()
    }

    pub fn session(&self) -> Duration {
        match self.session_seconds {
            Some(s) => Duration::from_secs(s),
            None => Duration::from_secs(3600 * self.session_hours.unwrap_or(DEFAULT_SESSION_HOURS)),
        }
    }

    pub fn request_log_size(&self) -> usize {
        self.request_log_size.unwrap_or(DEFAULT_REQUEST_LOG_SIZE)
    }

    /// The retention in ms (checked by `validate`).
    pub fn request_log_retention_ms(&self) -> u64 {
        self.request_log_retention
            .as_deref()
            .and_then(parse_window)
            .unwrap_or(DEFAULT_RETENTION_MS)
    }
}

const DEFAULT_RETENTION_MS: u64 = 7 * 86_400_000;

/// `30s`, `15m`, `1h`, `7d` -> milliseconds.
pub fn parse_window(s: &str) -> Option<u64> {
    let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit())?);
    let n: u64 = n.parse().ok().filter(|&n| n > 0)?;
    let unit_ms = match unit {
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return None,
    };
    n.checked_mul(unit_ms)
}

fn problem(path: String, message: &str) -> Problem {
    Problem {
        path,
        message: message.into(),
    }
}

/// Semantic checks of `admin:`.
pub fn validate(a: Option<&AdminConf>, problems: &mut Vec<Problem>, warnings: &mut Vec<String>) {
    let Some(a) = a else { return };
    if let Some(t) = a.token() {
        if t.len() < MIN_TOKEN_LEN {
            problems.push(problem(
                "admin.token".into(),
                "must be at least 16 characters (e.g. `openssl rand -hex 32`)",
            ));
        }
    } else if a.token.is_some() && a.users.is_empty() {
        warnings.push(
            "admin.token is empty (its variable unset?) and no admin.users: the admin API is off"
                .into(),
        );
    }
    let mut seen = std::collections::HashSet::new();
    for (i, u) in a.users.iter().enumerate() {
        if u.name.is_empty()
            || u.name.len() > 64
            || !u.name.bytes().all(|b| b.is_ascii_graphic() && b != b'|')
        {
            problems.push(problem(
                format!("admin.users[{i}].name"),
                "must be 1-64 printable ASCII characters without '|'",
            ));
        } else if !seen.insert(u.name.as_str()) {
            problems.push(problem(
                format!("admin.users[{i}].name"),
                "duplicate user name",
            ));
        }
        if u.password_hash.parse::<bcrypt::HashParts>().is_err() {
            problems.push(problem(
                format!("admin.users[{i}].password_hash"),
                "not a bcrypt hash (make one with `aigate admin-password`)",
            ));
        }
    }
    if a.session_hours == Some(0) {
        problems.push(problem("admin.session_hours".into(), "must be at least 1"));
    }
    if a.session_seconds == Some(0) {
        problems.push(problem(
            "admin.session_seconds".into(),
            "must be at least 1",
        ));
    }
    if let Some(n) = a.request_log_size
        && !(1..=MAX_REQUEST_LOG_SIZE).contains(&n)
    {
        problems.push(problem(
            "admin.request_log_size".into(),
            "must be between 1 and 1000000",
        ));
    }
    if let Some(r) = &a.request_log_retention
        && parse_window(r).is_none()
    {
        problems.push(problem(
            "admin.request_log_retention".into(),
            "must be a duration like 12h or 7d (s, m, h, d)",
        ));
    }
    if a.request_log_file.as_deref() == Some("") {
        problems.push(problem(
            "admin.request_log_file".into(),
            "must be a file path (omit it for the default)",
        ));
    }
    if !a.request_log_persist && (a.request_log_file.is_some() || a.request_log_retention.is_some())
    {
        warnings.push(
            "admin.request_log_file/request_log_retention are unused without admin.request_log_persist: true".into(),
        );
    }
    if a.store.as_deref() == Some("") {
        problems.push(problem(
            "admin.store".into(),
            "must be a file path (omit it for the default)",
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::parse_window;
    use crate::runtime::load::parse;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn admin_section_checks() {
        let hash = bcrypt::hash("pw", 4).unwrap();
        let ok = format!(
            "admin: {{token: \"0123456789abcdef\", users: [{{name: ops, password_hash: \"{hash}\"}}], session_seconds: 5}}\n"
        );
        let l = parse(&ok, &no_env).unwrap();
        let a = l.file.settings.admin.unwrap();
        assert!(a.enabled());
        assert_eq!(a.session().as_secs(), 5);
        let p = parse(
            "admin: {token: short, users: [{name: \"a|b\", password_hash: nope}], request_log_size: 0, request_log_persist: true, request_log_retention: 7w, request_log_file: \"\"}\n",
            &no_env,
        )
        .unwrap_err();
        let paths: Vec<_> = p.iter().map(|p| p.path.as_str()).collect();
        for want in [
            "admin.token",
            "admin.users[0].name",
            "admin.users[0].password_hash",
            "admin.request_log_size",
            "admin.request_log_retention",
            "admin.request_log_file",
        ] {
            assert!(paths.contains(&want), "{want} missing in {p:?}");
        }
        let unset = parse("admin: {token: \"${T}\"}\n", &no_env).unwrap();
        assert!(!unset.file.settings.admin.unwrap().enabled());
        assert!(parse("admin: {tokn: x}\n", &no_env).is_err());
    }

    #[test]
    fn windows() {
        assert_eq!(parse_window("1h"), Some(3_600_000));
        assert_eq!(parse_window("30s"), Some(30_000));
        assert_eq!(parse_window("7d"), Some(604_800_000));
        for bad in ["", "h", "0m", "5", "1w", "-1h"] {
            assert_eq!(parse_window(bad), None, "{bad}");
        }
    }
}
