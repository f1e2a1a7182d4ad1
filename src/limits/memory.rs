//! The limit store of one process: the three primitives (sliding-log
//! windows, concurrency slots, fixed-period counters) in local memory.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};

use super::store::Admit;

/// Counters of one process. Maps are read-locked on the hot path (a name is
/// inserted once); each window has its own mutex.
#[derive(Debug, Default)]
pub struct MemoryStore {
    windows: RwLock<HashMap<Box<str>, Window>>,
    slots: RwLock<HashMap<Box<str>, AtomicU64>>,
    counters: Mutex<HashMap<Box<str>, Counter>>,
}

#[derive(Debug, Clone, Copy)]
struct Counter {
    total: u64,
    expires_at: u64,
}

impl MemoryStore {
    fn with_window<R>(&self, name: &str, f: impl FnOnce(&Window) -> R) -> R {
        if let Some(w) = self
            .windows
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
        {
            return f(w);
        }
        let mut map = self.windows.write().unwrap_or_else(|e| e.into_inner());
        f(map.entry(name.into()).or_default())
    }

    pub fn window_take_at(
        &self,
        now: u64,
        name: &str,
        window_ms: u64,
        amount: u64,
        limit: u64,
    ) -> Admit {
        self.with_window(name, |w| w.take(now, window_ms, amount, limit))
    }

    /// Read-only: a window never used is full (and is not created).
    pub fn window_left_at(&self, now: u64, name: &str, window_ms: u64, limit: u64) -> u64 {
        self.windows
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .map_or(limit, |w| w.left(now, window_ms, limit))
    }

    pub fn window_adjust_at(&self, now: u64, name: &str, window_ms: u64, ticket: u64, delta: i64) {
        if let Some(w) = self
            .windows
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
        {
            w.adjust(now, window_ms, ticket, delta);
        }
    }

    pub fn slot_acquire(&self, name: &str, max: u64, _lease_ms: u64) -> Option<u64> {
        let take = |n: &AtomicU64| {
            n.fetch_update(Ordering::AcqRel, Ordering::Relaxed, |v| {
                (v < max).then_some(v + 1)
            })
            .is_ok()
        };
        let known = {
            let map = self.slots.read().unwrap_or_else(|e| e.into_inner());
            map.get(name).map(take)
        };
        let got = known.unwrap_or_else(|| {
            let mut map = self.slots.write().unwrap_or_else(|e| e.into_inner());
            take(map.entry(name.into()).or_default())
        });
        // One counter per name: the lease id carries nothing in memory.
        got.then_some(0)
    }

    pub fn slot_release(&self, name: &str, _lease: u64) {
        if let Some(n) = self
            .slots
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
        {
            let _ = n.fetch_update(Ordering::AcqRel, Ordering::Relaxed, |v| v.checked_sub(1));
        }
    }

    /// Slots of `name` in use.
    #[cfg(test)]
    pub fn slots_in_use(&self, name: &str) -> u64 {
        self.slots
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .map_or(0, |n| n.load(Ordering::Relaxed))
    }

    fn counter<'m>(
        map: &'m mut HashMap<Box<str>, Counter>,
        now: u64,
        name: &str,
        expires_at: u64,
    ) -> &'m mut Counter {
        if !map.contains_key(name) {
            // A new name is a new period: forget the ended ones.
            map.retain(|_, c| c.expires_at > now);
        }
        let c = map.entry(name.into()).or_insert(Counter {
            total: 0,
            expires_at,
        });
        if c.expires_at <= now {
            *c = Counter {
                total: 0,
                expires_at,
            };
        }
        c
    }

    pub fn counter_take_at(
        &self,
        now: u64,
        name: &str,
        expires_at: u64,
        amount: u64,
        limit: u64,
    ) -> Admit {
        let mut map = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        let c = Self::counter(&mut map, now, name, expires_at);
        let left = c.expires_at.saturating_sub(now).max(1);
        if c.total.saturating_add(amount) > limit {
            return Admit::No {
                remaining: limit.saturating_sub(c.total),
                retry_after_ms: left,
            };
        }
        c.total += amount;
        Admit::Yes {
            remaining: limit - c.total,
            reset_ms: left,
            ticket: 0,
        }
    }

    pub fn counter_add_at(&self, now: u64, name: &str, expires_at: u64, delta: i64) {
        if expires_at <= now {
            return;
        }
        let mut map = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        let c = Self::counter(&mut map, now, name, expires_at);
        c.total = c.total.saturating_add_signed(delta);
    }

    /// A counter's total now (0 when absent or ended).
    #[cfg(test)]
    pub fn counter_total_at(&self, now: u64, name: &str) -> u64 {
        self.counters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .filter(|c| c.expires_at > now)
            .map_or(0, |c| c.total)
    }
}

/// A sliding log: every admitted amount is kept with its time until it is
/// older than the window, so no window of that length ever holds more than
/// the limit, wherever it starts. Memory: one entry per admission in the window.
#[derive(Debug, Default)]
pub struct Window {
    state: Mutex<Log>,
}

#[derive(Debug, Default)]
struct Log {
    /// (time admitted, ticket, amount), oldest first.
    entries: VecDeque<(u64, u64, u64)>,
    total: u64,
    next_ticket: u64,
}

impl Log {
    fn evict(&mut self, now: u64, len: u64) {
        while let Some(&(t, _, a)) = self.entries.front() {
            if t + len > now {
                break;
            }
            self.total -= a;
            self.entries.pop_front();
        }
    }
}

impl Window {
    /// Take `amount` if the window of `len_ms` stays within `limit`.
    pub fn take(&self, now: u64, len_ms: u64, amount: u64, limit: u64) -> Admit {
        let len = len_ms.max(1);
        let mut log = self.state.lock().unwrap_or_else(|e| e.into_inner());
        log.evict(now, len);
        if log.total + amount > limit {
            // Wait until enough of the oldest entries have left the window.
            let mut left = log.total;
            let mut until = now;
            for &(t, _, a) in &log.entries {
                if left + amount <= limit {
                    break;
                }
                left -= a;
                until = t + len;
            }
            let wait = if left + amount <= limit {
                until - now
            } else {
                len
            };
            return Admit::No {
                remaining: limit.saturating_sub(log.total),
                retry_after_ms: wait.max(1),
            };
        }
        let ticket = log.next_ticket;
        log.next_ticket += 1;
        log.entries.push_back((now, ticket, amount));
        log.total += amount;
        Admit::Yes {
            remaining: limit - log.total,
            reset_ms: len,
            ticket,
        }
    }

    /// `limit` minus the total of entries still in the window; nothing taken.
    pub fn left(&self, now: u64, len_ms: u64, limit: u64) -> u64 {
        let mut log = self.state.lock().unwrap_or_else(|e| e.into_inner());
        log.evict(now, len_ms.max(1));
        limit.saturating_sub(log.total)
    }

    /// Correct an admitted entry by `delta`; one already out of the window is
    /// left alone.
    pub fn adjust(&self, now: u64, len_ms: u64, ticket: u64, delta: i64) {
        let mut log = self.state.lock().unwrap_or_else(|e| e.into_inner());
        log.evict(now, len_ms.max(1));
        if let Ok(i) = log.entries.binary_search_by_key(&ticket, |e| e.1) {
            let old = log.entries[i].2;
            let new = old.saturating_add_signed(delta);
            log.entries[i].2 = new;
            log.total = log.total - old + new;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yes(a: Admit) -> (u64, u64) {
        match a {
            Admit::Yes {
                remaining, ticket, ..
            } => (remaining, ticket),
            Admit::No { .. } => panic!("refused: {a:?}"),
        }
    }

    #[test]
    fn sliding_window_holds_the_limit_in_every_window() {
        let w = Window::default();
        let len = 60_000;
        for i in 0..10 {
            yes(w.take(59_000 + i, len, 1, 10));
        }
        let e = w.take(59_500, len, 1, 10);
        // The oldest leaves at 59_000 + 60s: that is the Retry-After.
        assert_eq!(
            e,
            Admit::No {
                remaining: 0,
                retry_after_ms: 59_000 + 60_000 - 59_500
            }
        );
        // Across the minute boundary the old requests still count.
        assert!(w.take(100_000, len, 1, 10).ticket().is_none());
        assert!(
            w.take(119_000, len, 1, 10).ticket().is_some(),
            "the first entry has left"
        );
        assert!(w.take(119_000, len, 1, 10).ticket().is_none());
        assert_eq!(yes(w.take(200_000, len, 10, 10)).0, 0);
    }

    #[test]
    fn tokens_reserve_then_reconcile() {
        let w = Window::default();
        let (_, t) = yes(w.take(0, 60_000, 800, 1000));
        assert!(
            w.take(0, 60_000, 300, 1000).ticket().is_none(),
            "reservation counts at once"
        );
        w.adjust(0, 60_000, t, -600); // the answer used 200, not 800
        assert_eq!(yes(w.take(0, 60_000, 300, 1000)).0, 500);
        let (_, big) = yes(w.take(1, 60_000, 500, 1000));
        w.adjust(2, 60_000, big, -500); // a failed request gives it all back
        assert_eq!(yes(w.take(3, 60_000, 500, 1000)).0, 0);
        // An entry that has left the window is not touched.
        w.adjust(70_000, 60_000, t, 5_000);
        assert_eq!(yes(w.take(70_000, 60_000, 1000, 1000)).0, 0);
    }

    #[test]
    fn windows_by_name_and_length() {
        let m = MemoryStore::default();
        assert!(m.window_take_at(0, "a", 1000, 1, 1).ticket().is_some());
        assert!(m.window_take_at(0, "a", 1000, 1, 1).ticket().is_none());
        assert!(m.window_take_at(0, "b", 1000, 1, 1).ticket().is_some());
        assert!(m.window_take_at(1000, "a", 1000, 1, 1).ticket().is_some());
        // An hour window at 1 s granularity still holds its entry after a minute.
        assert!(m.window_take_at(0, "h", 3_600_000, 1, 1).ticket().is_some());
        let no = m.window_take_at(60_000, "h", 3_600_000, 1, 1);
        assert_eq!(no.reset_ms(), 3_540_000);
        assert!(
            m.window_take_at(3_600_000, "h", 3_600_000, 1, 1)
                .ticket()
                .is_some()
        );
        // Adjusting an unknown name is a no-op.
        m.window_adjust_at(0, "zz", 1000, 0, -5);
    }

    #[test]
    fn slots_count_and_come_back() {
        let m = MemoryStore::default();
        assert_eq!(m.slot_acquire("s", 2, 0), Some(0));
        assert_eq!(m.slot_acquire("s", 2, 0), Some(0));
        assert_eq!(m.slot_acquire("s", 2, 0), None);
        assert_eq!(m.slots_in_use("s"), 2);
        m.slot_release("s", 0);
        assert_eq!(m.slot_acquire("s", 2, 0), Some(0));
        m.slot_release("s", 0);
        m.slot_release("s", 0);
        m.slot_release("s", 0); // never below zero
        assert_eq!(m.slots_in_use("s"), 0);
    }

    #[test]
    fn counters_check_add_and_expire() {
        let m = MemoryStore::default();
        let end = 10_000;
        assert_eq!(
            m.counter_take_at(0, "d1", end, 600, 1000),
            Admit::Yes {
                remaining: 400,
                reset_ms: 10_000,
                ticket: 0
            }
        );
        assert_eq!(
            m.counter_take_at(4_000, "d1", end, 500, 1000),
            Admit::No {
                remaining: 400,
                retry_after_ms: 6_000
            }
        );
        m.counter_add_at(4_000, "d1", end, -500); // the answer cost 100
        assert_eq!(m.counter_total_at(4_000, "d1"), 100);
        assert!(
            m.counter_take_at(4_000, "d1", end, 900, 1000)
                .ticket()
                .is_some()
        );
        m.counter_add_at(5_000, "d1", end, 50); // over the limit after the fact
        assert_eq!(m.counter_take_at(5_000, "d1", end, 0, 1000).remaining(), 0);
        // The period ends: a new one starts empty, and ended names are dropped.
        assert_eq!(m.counter_total_at(10_000, "d1"), 0);
        assert!(
            m.counter_take_at(10_000, "d2", 20_000, 1000, 1000)
                .ticket()
                .is_some()
        );
        assert_eq!(m.counters.lock().unwrap().len(), 1);
        // Adding to an already ended period does nothing.
        m.counter_add_at(30_000, "d2", 20_000, 5);
        assert_eq!(m.counter_total_at(30_000, "d2"), 0);
    }
}
