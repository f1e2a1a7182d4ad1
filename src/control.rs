//! `aigate stop | status | reload`: the signals, for operators without a
//! service manager. The running process is the pid in `pid_file`; whether a
//! reload took is read from its `aigate_config_reloads_total` on the admin
//! listener (else a plain-HTTP `listen` address).
//!
//! The config is read leniently here (only the keys these commands need),
//! so `reload` still finds the process when the edited file is invalid, and
//! then says why the process refused it.

use crate::cli::Command;
use rustix::process::{Pid, Signal, kill_process, test_kill_process};
use serde_yaml::Value;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// Exit code of `status` for "not running" (as LSB init scripts use 3).
const NOT_RUNNING: i32 = 3;

/// What these commands need from the config.
struct Target {
    pid_file: String,
    /// A plain-HTTP address serving `/metrics`.
    probe: Option<SocketAddr>,
    /// How long a stop may take: grace period + runtime shutdown.
    stop_within: Duration,
}

pub fn run(cmd: &Command, config: Option<&str>) -> i32 {
    let target = match target(config) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("aigate: {e}");
            return 1;
        }
    };
    match cmd {
        Command::Stop => stop(&target),
        Command::Status => status(&target),
        Command::Reload => reload(&target, config),
        Command::AdminPassword => crate::admin::password::run(),
    }
}

fn target(config: Option<&str>) -> Result<Target, String> {
    let text = match config {
        None => crate::config::EMBEDDED_DEFAULT.to_string(),
        Some(p) => std::fs::read_to_string(p).map_err(|e| format!("cannot read {p}: {e}"))?,
    };
    // A file that is not YAML at all still has the default pid file.
    let mut root: Value = serde_yaml::from_str(&text).unwrap_or(Value::Null);
    crate::config::env::interpolate(&mut root, &|v| std::env::var(v).ok(), &mut vec![]);
    let str_of = |k: &str| root.get(k).and_then(Value::as_str).map(str::to_string);
    let num_of = |k: &str, d: u64| root.get(k).and_then(Value::as_u64).unwrap_or(d);
    let listen = match root.get("listen") {
        Some(Value::Sequence(s)) => s.first().and_then(Value::as_str).map(str::to_string),
        Some(v) => v.as_str().map(str::to_string),
        None => Some(crate::config::file::DEFAULT_LISTEN.to_string()),
    };
    // The main listener answers /metrics too, unless it speaks TLS.
    let plain_listen = listen.filter(|_| root.get("tls").is_none_or(Value::is_null));
    let probe = str_of("admin_listen")
        .or(plain_listen)
        .and_then(|a| a.parse::<SocketAddr>().ok())
        .map(reachable);
    Ok(Target {
        pid_file: str_of("pid_file").unwrap_or_else(|| "/tmp/aigate.pid".into()),
        probe,
        stop_within: Duration::from_secs(
            num_of("grace_period_seconds", 30) + num_of("graceful_shutdown_timeout_seconds", 5),
        ),
    })
}

/// A wildcard listen address is reached on loopback.
fn reachable(mut a: SocketAddr) -> SocketAddr {
    if a.ip().is_unspecified() {
        a.set_ip(match a {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    a
}

/// The pid in the pid file, if that process is alive.
fn running(pid_file: &str) -> Result<Pid, String> {
    let text = std::fs::read_to_string(pid_file)
        .map_err(|e| format!("not running (no pid file {pid_file}: {e})"))?;
    let pid = text
        .trim()
        .parse::<i32>()
        .ok()
        .and_then(Pid::from_raw)
        .ok_or_else(|| format!("not running (pid file {pid_file} holds no pid)"))?;
    if alive(pid) {
        Ok(pid)
    } else {
        Err(format!(
            "not running (stale pid file {pid_file}: no process {})",
            pid.as_raw_nonzero()
        ))
    }
}

/// The process exists (ours to signal or not) and has not exited: a zombie
/// its parent has not reaped yet is gone.
fn alive(pid: Pid) -> bool {
    match test_kill_process(pid) {
        Ok(()) | Err(rustix::io::Errno::PERM) => {}
        Err(_) => return false,
    }
    let stat = procfs::process::Process::new(pid.as_raw_nonzero().get()).and_then(|p| p.stat());
    stat.ok().is_none_or(|s| s.state != 'Z')
}

fn signal(pid: Pid, sig: Signal) -> Result<(), String> {
    kill_process(pid, sig)
        .map_err(|e| format!("cannot signal process {}: {e}", pid.as_raw_nonzero()))
}

fn status(t: &Target) -> i32 {
    match running(&t.pid_file) {
        Ok(pid) => {
            let up = crate::process::uptime_of(pid.as_raw_nonzero().get())
                .map_or_else(|| "unknown".to_string(), |d| human(d.as_secs()));
            println!("aigate is running: pid {}, up {up}", pid.as_raw_nonzero());
            0
        }
        Err(e) => {
            println!("aigate is {e}");
            NOT_RUNNING
        }
    }
}

fn stop(t: &Target) -> i32 {
    let pid = match running(&t.pid_file) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("aigate is {e}");
            return NOT_RUNNING;
        }
    };
    if let Err(e) = signal(pid, Signal::Term) {
        eprintln!("aigate: {e}");
        return 1;
    }
    println!(
        "sent SIGTERM to {}: draining the requests in flight",
        pid.as_raw_nonzero()
    );
    // The drain ends with its last request; the grace period bounds it.
    let deadline = Instant::now() + t.stop_within + Duration::from_secs(5);
    while Instant::now() < deadline {
        if !alive(pid) {
            println!("aigate stopped");
            return 0;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!(
        "aigate: process {} still runs after {}s",
        pid.as_raw_nonzero(),
        t.stop_within.as_secs() + 5
    );
    1
}

/// Reload counters by result (`ok`, `error`, `upgrade`).
type Reloads = [u64; 3];

fn reload(t: &Target, config: Option<&str>) -> i32 {
    let pid = match running(&t.pid_file) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("aigate is {e}");
            return NOT_RUNNING;
        }
    };
    let before = t.probe.and_then(reloads);
    if let Err(e) = signal(pid, Signal::Hup) {
        eprintln!("aigate: {e}");
        return 1;
    }
    let (Some(probe), Some(before)) = (t.probe, before) else {
        println!(
            "sent SIGHUP to {}; cannot tell whether it took: no plain-HTTP listener answers /metrics (set admin_listen)",
            pid.as_raw_nonzero()
        );
        return 0;
    };
    // A reload takes milliseconds; an upgrade validates and starts the new
    // executable first.
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        if let Some(code) = reload_outcome(t, pid, probe, before, config) {
            return code;
        }
    }
    eprintln!(
        "aigate: sent SIGHUP to {}, but no reload was counted within 10s",
        pid.as_raw_nonzero()
    );
    1
}

/// The outcome once the process counted the reload, else None (look again).
fn reload_outcome(
    t: &Target,
    pid: Pid,
    probe: SocketAddr,
    before: Reloads,
    config: Option<&str>,
) -> Option<i32> {
    // An upgrade's new process writes its pid and starts its counters at zero.
    let now_pid = running(&t.pid_file).ok();
    if now_pid.is_some_and(|p| p != pid) {
        let new = now_pid.map_or(0, |p| p.as_raw_nonzero().get());
        println!("reloaded by a graceful upgrade: process {new} took over the listeners");
        return Some(0);
    }
    let after = reloads(probe)?;
    if after[0] > before[0] {
        println!("config reloaded (process {})", pid.as_raw_nonzero());
        Some(0)
    } else if after[1] > before[1] {
        eprintln!("aigate: reload rejected, the running config keeps serving");
        if let Err(problems) = crate::runtime::read(config) {
            for p in problems {
                eprintln!("config error: {p}");
            }
        } else {
            eprintln!("(see the gateway's log for why)");
        }
        Some(1)
    } else {
        // Nothing yet, or `upgrade`: counted before the handover, the pid
        // file changes next.
        None
    }
}

/// `aigate_config_reloads_total` by result, read from `/metrics`.
fn reloads(addr: SocketAddr) -> Option<Reloads> {
    let body = get(addr, "/metrics")?;
    let mut r = [0u64; 3];
    for line in body.lines() {
        let Some(rest) = line.strip_prefix("aigate_config_reloads_total{") else {
            continue;
        };
        let Some((labels, value)) = rest.split_once("} ") else {
            continue;
        };
        let n = value.trim().parse::<f64>().unwrap_or(0.0) as u64;
        for (i, result) in ["ok", "error", "upgrade"].iter().enumerate() {
            if labels.contains(&format!("result=\"{result}\"")) {
                r[i] = n;
            }
        }
    }
    Some(r)
}

/// A plain HTTP/1.0 GET (the server closes when done); the body, on 200.
fn get(addr: SocketAddr, path: &str) -> Option<String> {
    let addr = addr.to_socket_addrs().ok()?.next()?;
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    let ok = head.starts_with("HTTP/1.1 200") || head.starts_with("HTTP/1.0 200");
    ok.then(|| body.to_string())
}

/// 3725 -> "1h2m5s".
fn human(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m{s}s"),
        (0, _, _) => format!("{h}h{m}m{s}s"),
        _ => format!("{d}d{h}h{m}m{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uptime_reads_as_people_write_it() {
        assert_eq!(human(5), "5s");
        assert_eq!(human(65), "1m5s");
        assert_eq!(human(3725), "1h2m5s");
        assert_eq!(human(90061), "1d1h1m1s");
    }

    #[test]
    fn wildcard_listeners_are_reached_on_loopback() {
        assert_eq!(
            reachable("0.0.0.0:8080".parse().unwrap()),
            "127.0.0.1:8080".parse().unwrap()
        );
        assert_eq!(
            reachable("[::]:1".parse().unwrap()),
            "[::1]:1".parse().unwrap()
        );
        assert_eq!(
            reachable("10.1.2.3:9".parse().unwrap()),
            "10.1.2.3:9".parse().unwrap()
        );
    }
}
