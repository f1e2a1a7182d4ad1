//! A drain (SIGTERM, or the old process of an upgrade) ends when the last
//! client connection does, not when `grace_period_seconds` runs out; a second
//! SIGTERM or SIGINT during it exits at once (nginx's `quit`, then `stop`).
//!
//! Why here: Pingora's graceful shutdown stops accepting, then sleeps the
//! whole grace period on its main thread whatever is in flight, and nothing
//! listens for signals after the first (STYLE P8). So a thread of ours
//! follows Pingora's execution phases, counts open connections (`Tracked`
//! wraps each listening service's app) and ends the process itself. The
//! grace period stays the upper bound: Pingora exits when it runs out.

use async_trait::async_trait;
use pingora_core::apps::ServerApp;
use pingora_core::protocols::Stream;
use pingora_core::server::{ExecutionPhase, ShutdownWatch};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::broadcast;

/// Client connections being served, on every listener.
static OPEN: AtomicUsize = AtomicUsize::new(0);

/// How often a drain looks at the count; it ends after two looks in a row
/// find none (a connection accepted as listening stopped is counted by then).
const LOOK: Duration = Duration::from_millis(50);

struct Open;

impl Open {
    fn enter() -> Open {
        OPEN.fetch_add(1, Ordering::AcqRel);
        Open
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        OPEN.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A listening service's app whose connections a drain waits for.
pub struct Tracked<A>(Arc<A>);

impl<A> Tracked<A> {
    pub fn new(app: A) -> Self {
        Tracked(Arc::new(app))
    }
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for Tracked<A> {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let _open = Open::enter();
        self.0.process_new(stream, shutdown).await
    }

    async fn cleanup(&self) {
        self.0.cleanup().await
    }
}

/// Starts `supervise` once the server runs: in the daemon, not in the
/// process that forked it (a thread does not survive `fork`).
pub struct DrainWatch {
    args: std::sync::Mutex<Option<(broadcast::Receiver<ExecutionPhase>, String)>>,
}

impl DrainWatch {
    pub fn new(phases: broadcast::Receiver<ExecutionPhase>, pid_file: String) -> Self {
        DrainWatch {
            args: std::sync::Mutex::new(Some((phases, pid_file))),
        }
    }
}

#[async_trait]
impl pingora_core::services::background::BackgroundService for DrainWatch {
    async fn start(&self, _shutdown: ShutdownWatch) {
        let args = self.args.lock().ok().and_then(|mut a| a.take());
        if let Some((phases, pid_file)) = args {
            supervise(phases, pid_file);
        }
    }
}

/// Follow the server's phases on a thread of its own; `pid_file` is removed
/// at exit while it still names this process (after an upgrade it names
/// the new one).
fn supervise(phases: broadcast::Receiver<ExecutionPhase>, pid_file: String) {
    let spawned = std::thread::Builder::new()
        .name("aigate-drain".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            match rt {
                Ok(rt) => rt.block_on(drain(phases, &pid_file)),
                Err(e) => log::error!("drain watch: {e}"),
            }
        });
    if let Err(e) = spawned {
        log::error!("cannot start the drain watch: {e}");
    }
}

/// Wait for a drain to begin; then exit once no connection is open after
/// listening stopped, or at once on a second stop signal.
async fn drain(mut phases: broadcast::Receiver<ExecutionPhase>, pid_file: &str) {
    if !drain_begins(&mut phases).await {
        return;
    }
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        log::error!("drain watch: cannot watch signals");
        return;
    };
    let mut stopped_listening = false;
    let mut idle_looks = 0;
    loop {
        tokio::select! {
            _ = term.recv() => exit_now("SIGTERM", pid_file),
            _ = int.recv() => exit_now("SIGINT", pid_file),
            p = phases.recv(), if !stopped_listening => match p {
                Ok(ExecutionPhase::ShutdownStarted | ExecutionPhase::ShutdownGracePeriod) => {
                    stopped_listening = true;
                }
                Err(broadcast::error::RecvError::Closed) => return,
                _ => {}
            },
            _ = tokio::time::sleep(LOOK), if stopped_listening => {
                idle_looks = if OPEN.load(Ordering::Acquire) == 0 { idle_looks + 1 } else { 0 };
                if idle_looks >= 2 {
                    log::info!("drained: no connection left, exiting");
                    leave(pid_file, 0);
                }
            }
        }
    }
}

/// True when a graceful stop or upgrade starts; false when the process
/// ends another way (SIGINT) first.
async fn drain_begins(phases: &mut broadcast::Receiver<ExecutionPhase>) -> bool {
    loop {
        match phases.recv().await {
            Ok(
                ExecutionPhase::GracefulTerminate | ExecutionPhase::GracefulUpgradeTransferringFds,
            ) => {
                return true;
            }
            Ok(ExecutionPhase::ShutdownStarted | ExecutionPhase::Terminated)
            | Err(broadcast::error::RecvError::Closed) => return false,
            _ => {}
        }
    }
}

fn exit_now(signal: &str, pid_file: &str) -> ! {
    log::warn!(
        "{signal} during the drain: exiting now, cutting {} open connection(s)",
        OPEN.load(Ordering::Acquire)
    );
    leave(pid_file, 0)
}

fn leave(pid_file: &str, code: i32) -> ! {
    remove_pid_file(pid_file);
    crate::admin::usage::flush_at_exit();
    std::process::exit(code)
}

/// Remove the pid file if it still holds this process's pid.
pub fn remove_pid_file(pid_file: &str) {
    let ours = std::fs::read_to_string(pid_file)
        .is_ok_and(|s| s.trim().parse::<u32>() == Ok(std::process::id()));
    if ours {
        let _ = std::fs::remove_file(pid_file);
    }
}
