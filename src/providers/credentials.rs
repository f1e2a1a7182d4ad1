//! Credential rotation: smooth weighted round-robin (nginx's algorithm), with
//! the sequence precomputed at config load so a pick is one atomic add.

use std::sync::atomic::{AtomicUsize, Ordering};

#[derive(Debug)]
pub struct Credentials {
    keys: Vec<String>,
    /// Indices into `keys`, one full weighted cycle, smoothly interleaved.
    order: Vec<usize>,
    next: AtomicUsize,
}

impl Credentials {
    /// `(key, weight)` pairs; empty keys (unset variables) are dropped.
    pub fn new(list: &[(String, u32)]) -> Credentials {
        let list: Vec<_> = list
            .iter()
            .filter(|(k, _)| !k.is_empty())
            .cloned()
            .collect();
        let keys = list.iter().map(|(k, _)| k.clone()).collect();
        let weights: Vec<i64> = list.iter().map(|(_, w)| i64::from((*w).max(1))).collect();
        let total: i64 = weights.iter().sum();
        let mut current = vec![0i64; weights.len()];
        let mut order = Vec::with_capacity(total as usize);
        for _ in 0..total {
            for (c, w) in current.iter_mut().zip(&weights) {
                *c += w;
            }
            let (best, _) = current
                .iter()
                .enumerate()
                .max_by_key(|&(i, c)| (*c, std::cmp::Reverse(i)))
                .expect("non-empty");
            current[best] -= total;
            order.push(best);
        }
        Credentials {
            keys,
            order,
            next: AtomicUsize::new(0),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// `body` with every one of these credentials replaced by `[REDACTED]`, or
    /// None when none appears (the common case: no copy). Upstreams echo the
    /// key they were sent in auth errors (`Incorrect API key provided: sk-…`);
    /// such a body must not reach the client. Keys under 6 bytes are not
    /// searched: they would match ordinary text and are no secret anyway.
    pub fn redact(&self, body: &[u8]) -> Option<Vec<u8>> {
        let keys = self.keys.iter().filter(|k| k.len() >= 6);
        let mut out: Option<Vec<u8>> = None;
        for k in keys {
            let k = k.as_bytes();
            let cur = out.as_deref().unwrap_or(body);
            if memchr::memmem::find(cur, k).is_none() {
                continue;
            }
            let mut next = Vec::with_capacity(cur.len());
            let mut rest = cur;
            while let Some(i) = memchr::memmem::find(rest, k) {
                next.extend_from_slice(&rest[..i]);
                next.extend_from_slice(b"[REDACTED]");
                rest = &rest[i + k.len()..];
            }
            next.extend_from_slice(rest);
            out = Some(next);
        }
        out
    }

    /// Credential `i`'s key.
    pub fn key(&self, i: usize) -> Option<&str> {
        self.keys.get(i).map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// The next credential in rotation, with its index.
    pub fn pick(&self) -> Option<(usize, &str)> {
        self.pick_where(false, |_| true)
    }

    /// The next usable credential: in weighted rotation, or with `fill_first`
    /// the first usable one in config order (spill to the next only when it rests).
    pub fn pick_where(
        &self,
        fill_first: bool,
        usable: impl Fn(usize) -> bool,
    ) -> Option<(usize, &str)> {
        if self.order.is_empty() {
            return None;
        }
        if fill_first {
            return (0..self.keys.len())
                .find(|&i| usable(i))
                .map(|i| (i, self.keys[i].as_str()));
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        (0..self.order.len())
            .map(|k| self.order[(start + k) % self.order.len()])
            .find(|&i| usable(i))
            .map(|i| (i, self.keys[i].as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_every_credential_in_a_body() {
        let c = Credentials::new(&[
            ("sk-live-0123456789".to_string(), 1),
            ("other-key-abc".to_string(), 1),
            ("short".to_string(), 1),
        ]);
        let body = br#"{"error":{"message":"Incorrect API key provided: sk-live-0123456789. Also other-key-abc and sk-live-0123456789; short"}}"#;
        let out = String::from_utf8(c.redact(body).unwrap()).unwrap();
        assert_eq!(
            out,
            r#"{"error":{"message":"Incorrect API key provided: [REDACTED]. Also [REDACTED] and [REDACTED]; short"}}"#
        );
        assert_eq!(c.redact(br#"{"error":"bad request"}"#), None);
    }

    #[test]
    fn weighted_and_smooth() {
        let c = Credentials::new(&[("a".into(), 1), ("b".into(), 2), ("".into(), 5)]);
        assert_eq!(c.len(), 2);
        let picks: Vec<_> = (0..6).map(|_| c.pick().unwrap().1.to_string()).collect();
        assert_eq!(picks, ["b", "a", "b", "b", "a", "b"]);
        let c = Credentials::new(&[("x".into(), 1), ("y".into(), 1)]);
        let picks: Vec<_> = (0..4).map(|_| c.pick().unwrap().1.to_string()).collect();
        assert_eq!(picks, ["x", "y", "x", "y"]);
        assert!(Credentials::new(&[]).pick().is_none());
        let c = Credentials::new(&[("x".into(), 1), ("y".into(), 1), ("z".into(), 1)]);
        assert_eq!(c.pick_where(true, |i| i != 0).unwrap().1, "y");
        assert_eq!(c.pick_where(false, |i| i == 2).unwrap().1, "z");
        assert!(c.pick_where(false, |_| false).is_none());
    }
}
