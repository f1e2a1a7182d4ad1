//! This process as `/health/live` and `aigate status` describe it: uptime and
//! resident memory, read from /proc (Linux).

use once_cell::sync::Lazy;
use std::time::{Duration, Instant};

static STARTED: Lazy<Instant> = Lazy::new(Instant::now);

/// Call once at start: uptime counts from here.
pub fn mark_start() {
    Lazy::force(&STARTED);
}

pub fn uptime() -> Duration {
    STARTED.elapsed()
}

/// Resident set size in bytes, when /proc can tell.
pub fn resident_bytes() -> Option<u64> {
    let statm = procfs::process::Process::myself().ok()?.statm().ok()?;
    Some(statm.resident * procfs::page_size())
}

/// How long the process `pid` has run, from its start time in /proc.
pub fn uptime_of(pid: i32) -> Option<Duration> {
    let start_ticks = procfs::process::Process::new(pid)
        .ok()?
        .stat()
        .ok()?
        .starttime;
    let tps = procfs::ticks_per_second();
    let boot = procfs::boot_time_secs().ok()?;
    let started = Duration::from_secs(boot) + Duration::from_millis(start_ticks * 1000 / tps);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?;
    Some(now.saturating_sub(started))
}

/// Wall-clock milliseconds since the Unix epoch (event times, calendar periods).
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    #[test]
    fn this_process_is_measured() {
        super::mark_start();
        assert!(super::resident_bytes().is_some_and(|b| b > 1024 * 1024));
        let up = super::uptime_of(std::process::id() as i32).expect("own uptime");
        assert!(up < std::time::Duration::from_secs(24 * 3600));
    }
}
