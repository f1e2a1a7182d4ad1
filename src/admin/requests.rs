//! The request log: the last N finished AI requests (the access line's
//! fields, never a prompt or a key), in a bounded ring, newest last.
//! Each entry is about 370 bytes (`Entry::bytes`, measured by a test
//! below): 10,000 entries take about 3.7 MB.

use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Entry {
    /// Position in this process's log (paging cursor; renumbered on load).
    #[serde(default)]
    pub seq: u64,
    /// When the request started, unix ms.
    pub time_ms: u64,
    pub request_id: String,
    pub key: Option<String>,
    /// Borrowed when logged, owned when read back from the log file.
    pub ingress: Cow<'static, str>,
    pub provider: Option<String>,
    pub model: Option<String>,
    pub upstream_model: Option<String>,
    pub status: u16,
    pub attempts: u32,
    pub duration_ms: f64,
    pub ttfb_ms: Option<f64>,
    pub tokens_in: u64,
    pub tokens_out: u64,
    pub tokens_estimated: bool,
    pub cost_usd: Option<f64>,
    pub error: Option<String>,
}

impl Entry {
    pub fn failed(&self) -> bool {
        self.status >= 400 || self.status == 0
    }

    /// Bytes this entry holds in the ring: itself, its `Arc` and ring slot,
    /// and its strings' heap (capacity, as allocated).
    pub fn bytes(&self) -> usize {
        let s = |o: &Option<String>| o.as_ref().map_or(0, String::capacity);
        let ingress = match &self.ingress {
            Cow::Borrowed(_) => 0,
            Cow::Owned(o) => o.capacity(),
        };
        std::mem::size_of::<Entry>()
            + 2 * std::mem::size_of::<usize>() // Arc counts
            + std::mem::size_of::<Arc<Entry>>() // ring slot
            + self.request_id.capacity()
            + ingress
            + s(&self.key)
            + s(&self.provider)
            + s(&self.model)
            + s(&self.upstream_model)
            + s(&self.error)
    }
}

pub struct RequestLog {
    cap: usize,
    ring: Mutex<(u64, VecDeque<Arc<Entry>>)>,
}

impl RequestLog {
    pub fn new(cap: usize) -> Self {
        RequestLog {
            cap: cap.max(1),
            ring: Mutex::new((0, VecDeque::new())),
        }
    }

    pub fn capacity(&self) -> usize {
        self.cap
    }

    /// Add an entry (its `seq` is set here); the oldest goes when full.
    pub fn push(&self, mut e: Entry) -> Arc<Entry> {
        let mut g = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        g.0 += 1;
        e.seq = g.0;
        let e = Arc::new(e);
        if g.1.len() == self.cap {
            g.1.pop_front();
        }
        g.1.push_back(e.clone());
        e
    }

    /// The entries, oldest first (cheap clones, the lock held briefly).
    pub fn all(&self) -> Vec<Arc<Entry>> {
        let g = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        g.1.iter().cloned().collect()
    }

    pub fn len(&self) -> usize {
        self.ring.lock().unwrap_or_else(|e| e.into_inner()).1.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// `GET /admin/requests` filters.
#[derive(Debug, Default, Clone)]
pub struct Filter {
    pub key: Option<String>,
    /// The asked or the upstream model.
    pub model: Option<String>,
    pub provider: Option<String>,
    /// `429`, or a class: `4xx`, `5xx`.
    pub status: Option<String>,
    pub since_ms: Option<u64>,
    pub until_ms: Option<u64>,
    /// Entries older than this `seq` only (the next page's cursor).
    pub before: Option<u64>,
}

impl Filter {
    pub fn matches(&self, e: &Entry) -> bool {
        let eq = |want: &Option<String>, have: Option<&str>| {
            want.as_deref().is_none_or(|w| have == Some(w))
        };
        eq(&self.key, e.key.as_deref())
            && eq(&self.provider, e.provider.as_deref())
            && (self.model.is_none()
                || eq(&self.model, e.model.as_deref())
                || eq(&self.model, e.upstream_model.as_deref()))
            && self
                .status
                .as_deref()
                .is_none_or(|s| status_matches(s, e.status))
            && self.since_ms.is_none_or(|t| e.time_ms >= t)
            && self.until_ms.is_none_or(|t| e.time_ms < t)
            && self.before.is_none_or(|b| e.seq < b)
    }
}

fn status_matches(want: &str, status: u16) -> bool {
    match want.as_bytes() {
        [c, b'x', b'x'] | [c, b'X', b'X'] if c.is_ascii_digit() => {
            u16::from(c - b'0') == status / 100
        }
        _ => want.parse::<u16>() == Ok(status),
    }
}

/// Whether a `status` filter is well formed.
pub fn valid_status(s: &str) -> bool {
    s.parse::<u16>().is_ok()
        || matches!(s.as_bytes(), [c, b'x' | b'X', b'x' | b'X'] if c.is_ascii_digit())
}

/// One page, newest first: the entries and how many matched in all.
pub fn page(entries: &[Arc<Entry>], f: &Filter, limit: usize) -> (Vec<Arc<Entry>>, usize) {
    let mut matched = 0;
    let mut out = vec![];
    for e in entries.iter().rev().filter(|e| f.matches(e)) {
        matched += 1;
        if out.len() < limit {
            out.push(e.clone());
        }
    }
    (out, matched)
}

#[cfg(test)]
pub(crate) fn entry(key: &str, model: &str, status: u16, ms: f64) -> Entry {
    Entry {
        seq: 0,
        time_ms: 1_000,
        request_id: "r".into(),
        key: Some(key.into()),
        ingress: "openai-chat".into(),
        provider: Some("p".into()),
        model: Some(model.into()),
        upstream_model: Some(format!("up-{model}")),
        status,
        attempts: 1,
        duration_ms: ms,
        ttfb_ms: None,
        tokens_in: 10,
        tokens_out: 5,
        tokens_estimated: false,
        cost_usd: Some(0.001),
        error: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_is_bounded_and_keeps_the_newest() {
        let log = RequestLog::new(3);
        for i in 0..10 {
            log.push(entry("k", &format!("m{i}"), 200, 1.0));
        }
        let all = log.all();
        assert_eq!(all.len(), 3);
        assert_eq!(
            all.iter().map(|e| e.seq).collect::<Vec<_>>(),
            [8, 9, 10],
            "oldest dropped, seq keeps counting"
        );
        assert_eq!(all[2].model.as_deref(), Some("m9"));
    }

    /// The README's figure: 10,000 entries as real traffic makes them (a 32-hex
    /// request id, short names, one in ten failed with an upstream message).
    #[test]
    fn ten_thousand_entries_take_under_four_megabytes() {
        let log = RequestLog::new(10_000);
        for i in 0..10_000u32 {
            let mut e = entry("team-analytics", "gpt-4o-mini", 200, 812.4);
            e.request_id = format!("{:032x}", u128::from(i) * 0x9e37_79b9_7f4a_7c15);
            e.provider = Some("openai-eu".into());
            e.upstream_model = Some("gpt-4o-mini-2024-07-18".into());
            if i % 10 == 0 {
                e.status = 429;
                e.error = Some("upstream 429: Rate limit reached for gpt-4o-mini in organization org-xxxxxxxx on requests per min (RPM): Limit 500, Used 500, Requested 1.".into());
            }
            log.push(e);
        }
        let total: usize = log.all().iter().map(|e| e.bytes()).sum();
        let per = total / 10_000;
        println!(
            "request log: 10,000 entries = {total} bytes ({per} per entry), Entry itself {} bytes",
            std::mem::size_of::<Entry>()
        );
        assert!(
            (300..450).contains(&per),
            "{per} bytes per entry: update the README"
        );
        assert!(total < 4_000_000);
    }

    #[test]
    fn filters_and_paging() {
        let log = RequestLog::new(100);
        log.push(entry("a", "gpt", 200, 1.0));
        log.push(entry("b", "gpt", 429, 1.0));
        log.push(entry("a", "claude", 502, 1.0));
        log.push(entry("a", "gpt", 200, 1.0));
        let all = log.all();
        let f = |f: Filter| {
            page(&all, &f, 10)
                .0
                .iter()
                .map(|e| e.seq)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            f(Filter {
                key: Some("a".into()),
                ..Default::default()
            }),
            [4, 3, 1]
        );
        assert_eq!(
            f(Filter {
                model: Some("up-claude".into()),
                ..Default::default()
            }),
            [3]
        );
        assert_eq!(
            f(Filter {
                status: Some("5xx".into()),
                ..Default::default()
            }),
            [3]
        );
        assert_eq!(
            f(Filter {
                status: Some("429".into()),
                ..Default::default()
            }),
            [2]
        );
        assert_eq!(
            f(Filter {
                before: Some(3),
                ..Default::default()
            }),
            [2, 1]
        );
        let (items, matched) = page(&all, &Filter::default(), 2);
        assert_eq!((items.len(), matched), (2, 4));
        assert!(valid_status("5xx") && valid_status("200") && !valid_status("5x"));
    }
}
