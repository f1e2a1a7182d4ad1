//! What one request holds against the limits until it ends (slots, window
//! entries, budget reservations); `Limiter` gives them back or reconciles them.

use std::sync::Arc;

use super::Limiter;

/// An admitted amount in a window, to reconcile or give back.
#[derive(Debug)]
pub(super) struct WindowHold {
    pub(super) name: Arc<str>,
    pub(super) window_ms: u64,
    pub(super) ticket: u64,
    pub(super) amount: u64,
    /// Taken from the local fallback, not the configured store.
    pub(super) local: bool,
}

/// Micro-USD reserved in a budget period, to reconcile with the real cost.
#[derive(Debug)]
pub(super) struct CounterHold {
    pub(super) name: Arc<str>,
    pub(super) expires_at: u64,
    pub(super) amount: u64,
    pub(super) local: bool,
}

/// Releases a concurrency slot when dropped (however the request ends).
pub struct SlotGuard {
    pub(super) limiter: Arc<Limiter>,
    pub(super) name: Arc<str>,
    pub(super) lease: u64,
    pub(super) local: bool,
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        self.limiter
            .release_slot(self.name.clone(), self.lease, self.local);
    }
}

/// What one request holds against the limits until it ends: slots (released
/// on drop), request entries (given back if the request is refused after all)
/// and token reservations (reconciled with the reported usage).
#[derive(Default)]
pub struct Holds {
    pub(super) slots: Vec<SlotGuard>,
    pub(super) requests: Vec<WindowHold>,
    pub(super) tokens: Vec<WindowHold>,
    pub(super) money: Vec<CounterHold>,
}

impl std::fmt::Debug for Holds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Holds")
            .field("slots", &self.slots.len())
            .field("requests", &self.requests)
            .field("tokens", &self.tokens)
            .field("money", &self.money)
            .finish()
    }
}

impl Holds {
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
            && self.requests.is_empty()
            && self.tokens.is_empty()
            && self.money.is_empty()
    }

    /// Keep `other`'s slots and token reservations until this request ends
    /// (its request entries have nothing left to settle).
    pub fn absorb(&mut self, other: Holds) {
        self.slots.extend(other.slots);
        self.tokens.extend(other.tokens);
        self.money.extend(other.money);
    }
}
