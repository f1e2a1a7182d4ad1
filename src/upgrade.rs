//! SIGHUP as the graceful upgrade (SPEC "Signals"): when the executable on
//! disk was replaced since start, or a new config moves the listeners, the
//! new executable validates the config (`--test`), is started with
//! `--upgrade`, and this process hands it the listening sockets (Pingora's
//! SIGQUIT path, triggered from inside) and drains.

use async_trait::async_trait;
use pingora_core::server::{ShutdownSignal, ShutdownSignalWatch};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::Notify;

/// Identity of the executable file as it was when this process started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExeStamp {
    pub path: PathBuf,
    ino: u64,
    dev: u64,
    mtime: i64,
    size: u64,
}

impl ExeStamp {
    pub fn now() -> Option<ExeStamp> {
        let path = std::env::current_exe().ok()?;
        Self::of(path)
    }

    fn of(path: PathBuf) -> Option<ExeStamp> {
        let m = std::fs::metadata(&path).ok()?;
        Some(ExeStamp {
            path,
            ino: m.ino(),
            dev: m.dev(),
            mtime: m.mtime(),
            size: m.size(),
        })
    }

    /// The file at the same path is no longer the one this process runs.
    pub fn replaced(&self) -> bool {
        Self::of(self.path.clone()).is_some_and(|now| now != *self)
    }
}

static DRAINING: AtomicBool = AtomicBool::new(false);

/// This process is handing over or shutting down: every response from now on
/// carries `Connection: close` (see `proxy::drain`).
///
/// Why: on an upgrade Pingora keeps the old process accepting for 5 s, then
/// closes its listeners and, at once, every idle keep-alive connection. A
/// client that sends its next request on such a connection at that instant
/// gets a reset, not an answer (seen under load: 1-2 per upgrade with 8
/// busy keep-alive clients). Closing each connection after its current
/// answer during those 5 s moves the clients to the new process first.
pub fn draining() -> bool {
    DRAINING.load(Ordering::Relaxed)
}

fn start_draining(why: &str) {
    if !DRAINING.swap(true, Ordering::Relaxed) {
        log::info!("{why}: draining, answers now close their connections");
    }
}

/// Pingora's shutdown watch (SIGQUIT upgrade, SIGTERM drain, SIGINT fast)
/// plus an in-process trigger for the SIGHUP-initiated upgrade.
pub struct Signals {
    pub upgrade: Arc<Notify>,
}

#[async_trait]
impl ShutdownSignalWatch for Signals {
    async fn recv(&self) -> ShutdownSignal {
        let (Ok(mut quit), Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::quit()),
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            log::error!("cannot watch shutdown signals");
            return std::future::pending().await;
        };
        let s = tokio::select! {
            _ = quit.recv() => ShutdownSignal::GracefulUpgrade,
            _ = self.upgrade.notified() => ShutdownSignal::GracefulUpgrade,
            _ = term.recv() => ShutdownSignal::GracefulTerminate,
            _ = int.recv() => ShutdownSignal::FastShutdown,
        };
        match s {
            ShutdownSignal::GracefulUpgrade => start_draining("handing the listeners over"),
            ShutdownSignal::GracefulTerminate => start_draining("SIGTERM"),
            _ => {}
        }
        s
    }
}

/// Validate the config with the executable now on disk, start it with
/// `--upgrade`, and ask this process to hand over its sockets.
pub async fn hand_over(
    exe: &std::path::Path,
    config: Option<&str>,
    daemon: bool,
    trigger: &Notify,
) -> Result<u32, String> {
    let mut args: Vec<String> = vec![];
    if let Some(c) = config {
        args.push("-c".into());
        args.push(c.into());
    }
    let test = tokio::process::Command::new(exe)
        .args(&args)
        .arg("--test")
        .output()
        .await
        .map_err(|e| format!("cannot run {} --test: {e}", exe.display()))?;
    if !test.status.success() {
        return Err(format!(
            "{} --test rejected the config: {}",
            exe.display(),
            String::from_utf8_lossy(&test.stderr).trim()
        ));
    }
    let mut cmd = std::process::Command::new(exe);
    cmd.args(&args).arg("--upgrade");
    if daemon {
        cmd.arg("--daemon");
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", exe.display()))?;
    // The new process binds the upgrade socket at start; Pingora's sender
    // also retries, so a short head start is enough.
    tokio::time::sleep(Duration::from_millis(300)).await;
    // It waits for the sockets in the foreground (even with --daemon): gone
    // already means it failed, and Pingora's sender would give up and stop
    // this process anyway, leaving no one to serve.
    if let Ok(Some(status)) = child.try_wait() {
        return Err(format!(
            "{} --upgrade exited at start ({status})",
            exe.display()
        ));
    }
    // Set here too, so a SIGHUP racing the signal watch cannot start a second successor.
    start_draining("handing the listeners over");
    trigger.notify_one();
    Ok(child.id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_a_replaced_file() {
        let dir = std::env::temp_dir().join(format!("aigate-exe-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("bin");
        std::fs::write(&p, b"one").unwrap();
        let s = ExeStamp::of(p.clone()).unwrap();
        assert!(!s.replaced());
        // Installers replace by rename: a new inode at the same path.
        let tmp = dir.join("bin.new");
        std::fs::write(&tmp, b"two!").unwrap();
        std::fs::rename(&tmp, &p).unwrap();
        assert!(s.replaced());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
