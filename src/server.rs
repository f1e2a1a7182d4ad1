//! Process assembly: Pingora server, listeners, admin listener, and the
//! background services (config reload on SIGHUP, upstream addresses and health
//! checks, limit store).

use crate::cli::Cli;
use crate::config::{self, Loaded};
use crate::limits::Limiter;
use crate::metrics::METRICS;
use crate::proxy::Gateway;
use crate::runtime::{self, Snapshot};
use crate::shutdown::Tracked;
use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora_core::listeners::{L4BufferSettings, ListenerConfig};
use pingora_core::server::configuration::ServerConf;
use pingora_core::server::{Server, ShutdownWatch};
use pingora_core::services::background::{BackgroundService, background_service};
use std::sync::Arc;
use std::time::Duration;

/// Print problems for `--test` or a failed start.
fn report(problems: &[config::Problem]) {
    for p in problems {
        eprintln!("config error: {p}");
    }
}

fn server_conf(s: &Snapshot, daemon: bool) -> ServerConf {
    // Timeouts of a second or more on tokio's timer (Pingora's default: its
    // own 10 ms clock thread below 15 min). Every request arms a keep-alive
    // and a read timeout, so that thread never sleeps and wakes a worker 100
    // times a second; tokio's wheel costs no more per timer and sleeps when
    // nothing is due (figures: benches/README.md, "Measurements behind code
    // choices").
    let mut c = ServerConf {
        fast_timeout_to_tokio_threshold_seconds: Some(0),
        ..ServerConf::default()
    };
    if let Some(t) = s.threads {
        c.threads = t;
    }
    c.pid_file = s
        .pid_file
        .clone()
        .unwrap_or_else(|| "/tmp/aigate.pid".into());
    c.upgrade_sock = s
        .upgrade_sock
        .clone()
        .unwrap_or_else(|| "/tmp/aigate_upgrade.sock".into());
    c.grace_period_seconds = Some(s.grace_period_seconds.unwrap_or(30));
    c.graceful_shutdown_timeout_seconds = Some(s.graceful_shutdown_timeout_seconds.unwrap_or(5));
    c.daemon = daemon;
    c
}

/// Validate (`--test`) or run. Returns the process exit code for `--test` and errors.
/// Client connections buffer up to 16 KiB of writes (Pingora's default is
/// one MSS, next to a 64 KiB read buffer): the head and body of an answer up
/// to that size leave in one syscall instead of two. Streams are unaffected:
/// Pingora flushes a head without Content-Length and every chunked write.
fn client_buffers() -> L4BufferSettings {
    L4BufferSettings {
        read: None,
        write: Some(16 * 1024),
    }
}

pub fn main(cli: Cli) -> i32 {
    if let Some(crate::cli::Command::AdminPassword) = &cli.command {
        return crate::admin::password::run();
    }
    if let Some(cmd) = &cli.command {
        return crate::control::run(cmd, cli.config.as_deref());
    }
    crate::process::mark_start();
    // Stamped before reading, so a change made meanwhile is still noticed.
    let stamp = cli
        .config
        .as_deref()
        .and_then(|p| crate::watch::FileStamp::of(p.as_ref()));
    let loaded = match runtime::read(cli.config.as_deref()) {
        Ok(l) => l,
        Err(problems) => {
            report(&problems);
            return 1;
        }
    };
    for w in &loaded.warnings {
        log::warn!("{w}");
    }
    if cli.test {
        println!(
            "config {} is valid",
            cli.config.as_deref().unwrap_or("(embedded default)")
        );
        return 0;
    }
    let snap = match Snapshot::compile(&loaded) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("config error: {e}");
            return 1;
        }
    };
    if snap.watch_config && cli.config.is_none() {
        log::warn!("watch_config needs a config file (-c): nothing to watch");
    }
    run(cli, snap, stamp)
}

fn run(cli: Cli, snap: Snapshot, stamp: Option<crate::watch::FileStamp>) -> i32 {
    let conf = server_conf(&snap, cli.daemon);
    let listen = snap.listen.clone();
    let admin_listen = snap.admin_listen.clone();
    // One resolver for every TLS listener: a reload swaps the certificate in it.
    let tls = snap.tls.as_ref().map(|t| {
        log::info!(
            "TLS certificate from {}: {}",
            t.conf.cert_file,
            t.cert.about
        );
        (
            crate::tls::CertResolver::new(t.cert.key.clone()),
            t.conf.http2,
        )
    });
    // One limiter for both listeners: one store (one Redis connection), one
    // health. The store is chosen here, at start; a reload keeps it.
    let limiter = match Limiter::from_conf(&snap.limit_store, snap.rate_limit_window) {
        Ok(l) => Arc::new(l),
        Err(e) => {
            log::error!("{e}");
            return 1;
        }
    };
    log::info!("limit counters {}", limiter.describe());
    if let Err(e) = crate::admin::start(&snap, cli.config.as_deref()) {
        log::error!("runtime keys: {e}");
        return 1;
    }
    let shared = Arc::new(ArcSwap::from_pointee(snap));

    let pid_file = conf.pid_file.clone();
    let mut server = Server::new_with_opt_and_conf(cli.pingora_opt(), conf);
    server.bootstrap();
    if !cli.daemon {
        // Pingora writes the pid file only when daemonizing; SPEC wants it
        // always (and the new process's after an upgrade).
        if let Err(e) = std::fs::write(&pid_file, format!("{}\n", std::process::id())) {
            log::warn!("cannot write pid file {pid_file}: {e}");
        }
    }
    let upgrade = Arc::new(tokio::sync::Notify::new());

    // Every request goes through Pingora's proxy; `proxy::front` only reads
    // HTTP/1 heads whole first (client_header_timeout).
    let admin_api: Arc<dyn crate::proxy::AdminApi> = Arc::new(crate::admin::Api);
    let gateway = Gateway::new(shared.clone(), limiter.clone(), false, admin_api.clone());
    let proxy = pingora_proxy::http_proxy(&server.configuration, gateway.clone());
    let mut svc = pingora_core::services::listening::Service::new(
        "aigate".to_string(),
        Tracked::new(crate::proxy::front::Front::new(gateway, proxy)),
    );
    for l in &listen {
        let mut endpoint = ListenerConfig::tcp(l.as_str()).l4_buffer(client_buffers());
        if let Some((resolver, h2)) = &tls {
            endpoint = endpoint.tls(crate::tls::listener_settings(resolver.clone(), *h2));
        }
        svc.add_listener(endpoint);
    }
    server.add_service(svc);
    if let Some(a) = &admin_listen {
        let proxy = pingora_proxy::http_proxy(
            &server.configuration,
            Gateway::new(shared.clone(), limiter.clone(), true, admin_api),
        );
        let mut admin = pingora_core::services::listening::Service::new(
            "aigate-admin".to_string(),
            Tracked::new(proxy),
        );
        admin.add_tcp(a);
        server.add_service(admin);
    }
    server.add_service(background_service(
        "config reload",
        Reloader {
            path: cli.config.clone(),
            shared: shared.clone(),
            exe: crate::upgrade::ExeStamp::now(),
            daemon: cli.daemon,
            upgrade: upgrade.clone(),
            cert: tls.as_ref().map(|(r, _)| r.clone()),
            read_stamp: stamp,
        },
    ));
    server.add_service(background_service("upstreams", Upstreams { shared }));
    server.add_service(background_service(
        "key usage",
        crate::admin::usage::UsageSync,
    ));
    if limiter.is_shared() {
        server.add_service(background_service("admin keys", crate::admin::KeySync));
        server.add_service(background_service("limit store", StoreProbe { limiter }));
    }
    log::info!(
        "aigate listening on {}{}",
        listen.join(", "),
        match &tls {
            Some((_, true)) => " (TLS, HTTP/2 and HTTP/1.1)",
            Some((_, false)) => " (TLS, HTTP/1.1)",
            None => "",
        }
    );
    server.add_service(background_service(
        "drain watch",
        crate::shutdown::DrainWatch::new(server.watch_execution_phase(), pid_file.clone()),
    ));
    server.run(pingora_core::server::RunArgs {
        shutdown_signal: Box::new(crate::upgrade::Signals { upgrade }),
    });
    crate::admin::usage::flush_at_exit();
    crate::shutdown::remove_pid_file(&pid_file);
    0
}

/// SIGHUP, or a change of the file with `watch_config: true`: re-read the
/// config; a valid one replaces the snapshot atomically (requests in flight
/// keep the one they started with), an invalid one is logged and counted
/// while the old config keeps serving.
pub struct Reloader {
    pub path: Option<String>,
    pub shared: Arc<ArcSwap<Snapshot>>,
    /// The executable as started, to notice a replaced binary.
    pub exe: Option<crate::upgrade::ExeStamp>,
    pub daemon: bool,
    pub upgrade: Arc<tokio::sync::Notify>,
    /// The TLS listeners' certificate, when they serve TLS.
    pub cert: Option<Arc<crate::tls::CertResolver>>,
    /// The config file as it was when read at start.
    pub read_stamp: Option<crate::watch::FileStamp>,
}

impl Reloader {
    /// Reload, and tell the watch which version of the file that read.
    async fn reload_watched(
        &self,
        watch: &mut crate::watch::Watch,
    ) -> crate::admin::reload::Outcome {
        let path = self.path.as_deref().map(std::path::Path::new);
        let stamp = path.and_then(crate::watch::FileStamp::of);
        let outcome = self.reload().await;
        watch.was_read(stamp);
        outcome
    }

    fn watching(&self) -> bool {
        self.path.is_some() && self.shared.load().watch_config
    }

    /// Hand the listeners to a new process running the executable on disk.
    async fn upgrade(&self, why: &str) -> bool {
        let Some(exe) = &self.exe else {
            log::error!("{why}, but this process cannot locate its executable: restart it instead");
            return false;
        };
        log::info!(
            "{why}: starting a graceful upgrade with {}",
            exe.path.display()
        );
        match crate::upgrade::hand_over(&exe.path, self.path.as_deref(), self.daemon, &self.upgrade)
            .await
        {
            Ok(pid) => {
                METRICS.config_reloads.with_label_values(&["upgrade"]).inc();
                log::info!("new process {pid} is taking over the listeners; this one drains");
                true
            }
            Err(e) => {
                METRICS.config_reloads.with_label_values(&["error"]).inc();
                log::error!("graceful upgrade refused, keeping this process: {e}");
                false
            }
        }
    }

    /// One reload attempt: what happened, or why the config was refused.
    pub async fn reload(&self) -> crate::admin::reload::Outcome {
        let outcome = self.try_reload().await;
        crate::admin::reload::done(&outcome);
        outcome
    }

    async fn try_reload(&self) -> crate::admin::reload::Outcome {
        let path = self.path.clone();
        let compiled =
            tokio::task::spawn_blocking(move || -> Result<(Loaded, Snapshot), Vec<String>> {
                let loaded = runtime::read(path.as_deref())
                    .map_err(|ps| ps.iter().map(ToString::to_string).collect::<Vec<_>>())?;
                let snap = Snapshot::compile(&loaded).map_err(|e| vec![e])?;
                Ok((loaded, snap))
            })
            .await
            .map_err(|e| vec![e.to_string()])
            .and_then(|r| r);
        match compiled {
            Ok((loaded, snap)) => {
                for w in &loaded.warnings {
                    log::warn!("{w}");
                }
                let old = self.shared.load();
                if crate::limits::store_conf_changed(&old.limit_store, &snap.limit_store) {
                    log::warn!(
                        "limits: backend, url, key_prefix, timeout_ms or on_error changed; the limit store is chosen at start, so the running one stays until a restart or upgrade"
                    );
                }
                let moved = old.listen != snap.listen
                    || old.admin_listen != snap.admin_listen
                    || listener_tls_changed(&old, &snap);
                let replaced = self.exe.as_ref().is_some_and(|e| e.replaced());
                if moved && let Err(e) = can_listen(&old, &snap) {
                    // The new process would fail only after taking the sockets.
                    METRICS.config_reloads.with_label_values(&["error"]).inc();
                    log::error!("config reload rejected, keeping the running config: {e}");
                    return Err(vec![e]);
                }
                if moved || replaced {
                    let why = if replaced {
                        "the executable was replaced"
                    } else {
                        "the listeners changed"
                    };
                    return if self.upgrade(why).await {
                        Ok(format!("{why}: a new process is taking over"))
                    } else {
                        Err(vec![format!(
                            "{why}, but the graceful upgrade was refused (see the log)"
                        )])
                    };
                }
                if let (Some(r), Some(t)) = (&self.cert, &snap.tls) {
                    // Files re-read and checked by compile: new handshakes get this one.
                    r.set(t.cert.key.clone());
                    if old.tls.as_ref().map(|o| &o.cert.fingerprint) != Some(&t.cert.fingerprint) {
                        log::info!(
                            "TLS certificate from {}: {}",
                            t.conf.cert_file,
                            t.cert.about
                        );
                    }
                }
                self.shared.store(Arc::new(snap));
                METRICS.config_reloads.with_label_values(&["ok"]).inc();
                log::info!("config reloaded");
                Ok("config reloaded".into())
            }
            Err(e) => {
                METRICS.config_reloads.with_label_values(&["error"]).inc();
                log::error!(
                    "config reload rejected, keeping the running config: {}",
                    e.join("; ")
                );
                Err(e)
            }
        }
    }
}

/// TLS turned on or off, or its ALPN changed: fixed in the listeners' acceptor,
/// so the new config needs new listeners (the graceful upgrade). A new
/// certificate alone does not: the resolver swaps it in place.
fn listener_tls_changed(old: &Snapshot, new: &Snapshot) -> bool {
    old.tls.as_ref().map(|t| t.conf.http2) != new.tls.as_ref().map(|t| t.conf.http2)
}

/// Addresses a new config listens on that this process does not: can they be
/// bound now? (A port in use would otherwise surface only in the new process,
/// after this one handed over its sockets.)
fn can_listen(old: &Snapshot, new: &Snapshot) -> Result<(), String> {
    let held: Vec<&String> = old.listen.iter().chain(old.admin_listen.iter()).collect();
    for a in new.listen.iter().chain(new.admin_listen.iter()) {
        if held.contains(&a) {
            continue;
        }
        std::net::TcpListener::bind(a.as_str())
            .map_err(|e| format!("cannot listen on {a}: {e}"))?;
    }
    Ok(())
}

#[async_trait]
impl BackgroundService for Reloader {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => {
                log::error!("cannot watch SIGHUP: {e}");
                return;
            }
        };
        use crate::watch::{FileStamp, POLL, Step, Watch};
        let mut watch = Watch::new(self.read_stamp);
        let mut next_look = POLL;
        // `POST /admin/reload` asks here, so its reloads queue with SIGHUP's.
        let mut asks = crate::admin::reload::requests();
        loop {
            let watching = self.watching();
            tokio::select! {
                Some(ask) = async { match asks.as_mut() { Some(r) => r.recv().await, None => std::future::pending().await } } => {
                    let outcome = if crate::upgrade::draining() {
                        Err(vec!["this process is draining (a new one took or is taking over)".to_string()])
                    } else {
                        self.reload_watched(&mut watch).await
                    };
                    let _ = ask.send(outcome);
                }
                _ = hup.recv() => {
                    if crate::upgrade::draining() {
                        log::warn!("SIGHUP ignored: this process is draining (a new one took or is taking over)");
                        continue;
                    }
                    let _ = self.reload_watched(&mut watch).await;
                }
                _ = tokio::time::sleep(next_look), if watching && !crate::upgrade::draining() => {
                    let path = std::path::Path::new(self.path.as_deref().unwrap_or_default());
                    next_look = match watch.observe(FileStamp::of(path)) {
                        Step::Wait(d) => d,
                        Step::Reload => {
                            log::info!("config file {} changed: reloading", path.display());
                            let _ = self.reload_watched(&mut watch).await;
                            POLL
                        }
                    };
                }
                _ = shutdown.changed() => return,
            }
        }
    }
}

/// Keeps every upstream's addresses current off the request path: each
/// provider's and route target's `Balancer` (pingora-load-balancing) re-resolves
/// its host and, for providers with `health_check`, runs its TCP/TLS check when
/// due. A provider none of whose addresses passes is unhealthy: skipped by
/// routing while another candidate exists, shown in `/health/ready`.
pub struct Upstreams {
    pub shared: Arc<ArcSwap<Snapshot>>,
}

#[async_trait]
impl BackgroundService for Upstreams {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        loop {
            let snap = self.shared.load_full();
            for p in snap.providers.iter().filter(|p| !p.disabled) {
                if !p.balancer.refresh().await {
                    continue;
                }
                let ok = p.balancer.any_healthy();
                if p.health.set(ok, crate::resilience::now_ms()) {
                    log::warn!(
                        "provider '{}' health check: {}",
                        p.name,
                        if ok { "healthy again" } else { "unhealthy" }
                    );
                }
            }
            for u in snap.routes.upstreams() {
                u.balancer.refresh().await;
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(250)) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}

/// Connects the shared limit store at start and probes it every second, so
/// `/health/ready` and `aigate_limits_backend_up` follow Redis while idle.
pub struct StoreProbe {
    pub limiter: Arc<Limiter>,
}

#[async_trait]
impl BackgroundService for StoreProbe {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        loop {
            self.limiter.probe_store().await;
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}
