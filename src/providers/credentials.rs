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

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// The next credential in rotation, with its index.
    pub fn pick(&self) -> Option<(usize, &str)> {
        if self.order.is_empty() {
            return None;
        }
        let n = self.next.fetch_add(1, Ordering::Relaxed) % self.order.len();
        let i = self.order[n];
        Some((i, &self.keys[i]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    }
}
