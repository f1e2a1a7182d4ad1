//! The limit store the config names: local memory or Redis, behind one enum
//! so the same limiter runs on either.

use super::memory::MemoryStore;
use super::redis::RedisLimits;
use super::store::{Admit, StoreError, now_ms, unix_ms};

/// Every counter backend. Enum dispatch: the in-memory path is a plain call,
/// no boxed future per check.
pub enum LimitStore {
    Memory(MemoryStore),
    /// Shared by every node (`limits: {backend: redis}`), `redis.rs`.
    Redis(RedisLimits),
    /// Always fails: lets tests drive the limiter's `on_error` handling.
    #[cfg(test)]
    Failing,
}

#[cfg(test)]
fn failing<T>() -> Result<T, StoreError> {
    Err(StoreError("store down (test)".into()))
}

impl LimitStore {
    /// The in-memory store, when this is one (its operations never wait, so
    /// e.g. a slot can be given back from `Drop`).
    pub fn as_memory(&self) -> Option<&MemoryStore> {
        match self {
            LimitStore::Memory(m) => Some(m),
            LimitStore::Redis(_) => None,
            #[cfg(test)]
            LimitStore::Failing => None,
        }
    }

    /// Sliding-log window: admit `amount` if the total of entries younger than
    /// `window_ms` plus `amount` stays <= `limit`. Atomic check-and-reserve.
    pub async fn window_take(
        &self,
        name: &str,
        window_ms: u64,
        amount: u64,
        limit: u64,
    ) -> Result<Admit, StoreError> {
        match self {
            LimitStore::Memory(m) => Ok(m.window_take_at(now_ms(), name, window_ms, amount, limit)),
            LimitStore::Redis(r) => Ok(r.window_take(name, window_ms, amount, limit).await?),
            #[cfg(test)]
            LimitStore::Failing => failing(),
        }
    }

    /// What a window has left under `limit`, taking nothing (the admin API's
    /// quota view). Redis: a take of more than the limit, which its script
    /// refuses without recording anything but answers with what is left.
    pub async fn window_left(
        &self,
        name: &str,
        window_ms: u64,
        limit: u64,
    ) -> Result<u64, StoreError> {
        match self {
            LimitStore::Memory(m) => Ok(m.window_left_at(now_ms(), name, window_ms, limit)),
            LimitStore::Redis(r) => Ok(r
                .window_take(name, window_ms, limit.saturating_add(1), limit)
                .await?
                .remaining()),
            #[cfg(test)]
            LimitStore::Failing => failing(),
        }
    }

    /// Correct an admitted entry by `delta` (reported usage minus estimate; a
    /// failed request gives back its whole reservation). An entry already out
    /// of the window is left alone.
    pub async fn window_adjust(
        &self,
        name: &str,
        window_ms: u64,
        ticket: u64,
        delta: i64,
    ) -> Result<(), StoreError> {
        match self {
            LimitStore::Memory(m) => {
                m.window_adjust_at(now_ms(), name, window_ms, ticket, delta);
                Ok(())
            }
            LimitStore::Redis(r) => Ok(r.window_adjust(name, window_ms, ticket, delta).await?),
            #[cfg(test)]
            LimitStore::Failing => failing(),
        }
    }

    /// Take one of `max` slots; `None` when all are taken. A slot is a lease
    /// that expires after `lease_ms` unless released (memory ignores expiry:
    /// its slots die with the process).
    pub async fn slot_acquire(
        &self,
        name: &str,
        max: u64,
        lease_ms: u64,
    ) -> Result<Option<u64>, StoreError> {
        match self {
            LimitStore::Memory(m) => Ok(m.slot_acquire(name, max, lease_ms)),
            LimitStore::Redis(r) => Ok(r.slot_acquire(name, max, lease_ms).await?),
            #[cfg(test)]
            LimitStore::Failing => failing(),
        }
    }

    pub async fn slot_release(&self, name: &str, lease: u64) -> Result<(), StoreError> {
        match self {
            LimitStore::Memory(m) => {
                m.slot_release(name, lease);
                Ok(())
            }
            LimitStore::Redis(r) => Ok(r.slot_release(name, lease).await?),
            #[cfg(test)]
            LimitStore::Failing => failing(),
        }
    }

    /// Fixed-period counter: admit `amount` if total + amount <= limit; the
    /// counter disappears at `expires_at_unix_ms` (the period's end).
    pub async fn counter_take(
        &self,
        name: &str,
        expires_at_unix_ms: u64,
        amount: u64,
        limit: u64,
    ) -> Result<Admit, StoreError> {
        match self {
            LimitStore::Memory(m) => {
                Ok(m.counter_take_at(unix_ms(), name, expires_at_unix_ms, amount, limit))
            }
            LimitStore::Redis(r) => Ok(r
                .counter_take(name, expires_at_unix_ms, amount, limit)
                .await?),
            #[cfg(test)]
            LimitStore::Failing => failing(),
        }
    }

    /// Add (or with a negative delta give back) without a check.
    pub async fn counter_add(
        &self,
        name: &str,
        expires_at_unix_ms: u64,
        delta: i64,
    ) -> Result<(), StoreError> {
        match self {
            LimitStore::Memory(m) => {
                m.counter_add_at(unix_ms(), name, expires_at_unix_ms, delta);
                Ok(())
            }
            LimitStore::Redis(r) => Ok(r.counter_add(name, expires_at_unix_ms, delta).await?),
            #[cfg(test)]
            LimitStore::Failing => failing(),
        }
    }
}
