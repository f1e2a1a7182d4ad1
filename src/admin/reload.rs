//! `POST /admin/reload`: asks the config reloader (the one SIGHUP drives, so
//! reloads never overlap) and waits for its result; reload counting.

use once_cell::sync::OnceCell;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::{mpsc, oneshot};

/// Ok(what happened) or every problem (`path: message`).
pub type Outcome = Result<String, Vec<String>>;
pub type Ask = oneshot::Sender<Outcome>;

static TX: OnceCell<mpsc::Sender<Ask>> = OnceCell::new();
static RELOADS: AtomicU64 = AtomicU64::new(0);

/// For the reloader: where reload requests arrive (once per process).
pub fn requests() -> Option<mpsc::Receiver<Ask>> {
    let (tx, rx) = mpsc::channel(8);
    TX.set(tx).ok().map(|_| rx)
}

/// Reload now, as SIGHUP does.
pub async fn run() -> Outcome {
    let Some(tx) = TX.get() else {
        return Err(vec!["the config reloader is not running".into()]);
    };
    let (ask, answer) = oneshot::channel();
    if tx.send(ask).await.is_err() {
        return Err(vec!["the config reloader is not running".into()]);
    }
    answer
        .await
        .unwrap_or_else(|_| Err(vec!["the reload was interrupted".into()]))
}

/// For the reloader: one reload finished (SIGHUP, file watch or admin).
pub fn done(outcome: &Outcome) {
    if outcome.is_ok() {
        RELOADS.fetch_add(1, Ordering::Relaxed);
    }
    crate::events::emit("reload", || match outcome {
        Ok(m) => serde_json::json!({"ok": true, "message": m}),
        Err(p) => serde_json::json!({"ok": false, "problems": p}),
    });
}

/// Successful reloads since start.
pub fn count() -> u64 {
    RELOADS.load(Ordering::Relaxed)
}
