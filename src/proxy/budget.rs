//! The process-wide budget for whole upstream answers held in memory
//! (`max_buffered_bytes`). Non-streamed answers are read whole before they go
//! out (so one cut short can fail over), and upstream error bodies are read
//! whole to be converted; each is bounded per request, and this bounds their
//! sum, so a burst of large answers cannot take the host's memory.

use std::sync::atomic::{AtomicU64, Ordering};

pub struct Budget {
    used: AtomicU64,
}

/// The process's one budget (both listeners share it).
pub static BUFFERED: Budget = Budget::new();

impl Budget {
    pub const fn new() -> Self {
        Budget {
            used: AtomicU64::new(0),
        }
    }

    /// An empty hold on this budget, to grow as an answer arrives.
    pub fn hold(&'static self) -> Held {
        Held {
            budget: self,
            bytes: 0,
        }
    }

    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }
}

impl Default for Budget {
    fn default() -> Self {
        Budget::new()
    }
}

/// Bytes taken from a budget, given back when dropped.
pub struct Held {
    budget: &'static Budget,
    bytes: u64,
}

impl Held {
    /// Hold at least `total` bytes, if the budget (`limit` over all holds)
    /// has room; false leaves the hold as it was.
    pub fn grow_to(&mut self, total: u64, limit: u64) -> bool {
        let Some(more) = total.checked_sub(self.bytes).filter(|m| *m > 0) else {
            return true;
        };
        let took = self
            .budget
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |used| {
                used.checked_add(more).filter(|n| *n <= limit)
            });
        if took.is_ok() {
            self.bytes = total;
        }
        took.is_ok()
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_share_the_limit_and_give_back_on_drop() {
        static B: Budget = Budget::new();
        let mut a = B.hold();
        let mut b = B.hold();
        assert!(a.grow_to(60, 100));
        assert!(!b.grow_to(50, 100), "60 + 50 is over 100");
        assert_eq!(
            (b.bytes(), B.used()),
            (0, 60),
            "a refused grow takes nothing"
        );
        assert!(b.grow_to(40, 100));
        assert!(
            a.grow_to(60, 100),
            "holding as much again takes nothing more"
        );
        assert!(a.grow_to(10, 100), "a smaller total never shrinks a hold");
        assert_eq!(B.used(), 100);
        drop(a);
        assert_eq!(B.used(), 40);
        assert!(b.grow_to(100, 100));
        drop(b);
        assert_eq!(B.used(), 0);
    }
}
