//! The operator's console backend: the JSON admin API under `/admin/` on
//! `admin_listen` (README "Admin console"). One job per file: `conf` (the
//! `admin:` section), `auth` (token, sessions, logins), `session` (signed
//! cookies), `api` (read answers), `keys` + `store` (runtime keys),
//! `requests` (request log), `stats`, `usage`, `events` (live feed),
//! `reload`, `redact`. `serve` is the one entry, from the admin listener.

pub mod api;
pub mod auth;
pub mod events;
pub mod keys;
pub mod password;
pub mod persist;
pub mod reload;
pub mod requests;
pub mod session;
pub mod stats;
pub mod store;
pub mod ui;
pub mod usage;

use crate::limits::Limiter;
use crate::proxy::ctx::RequestCtx;
use crate::proxy::pipeline::intake;
use crate::proxy::respond;
use crate::runtime::Snapshot;
use crate::translate::Format;
use async_trait::async_trait;
use auth::Admin;
use once_cell::sync::{Lazy, OnceCell};
use pingora_core::protocols::http::ServerSession;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use prometheus::{IntCounterVec, Opts};
use requests::{Entry, RequestLog};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

struct State {
    log: RequestLog,
    /// The log file's writer (`admin.request_log_persist`).
    file: Option<persist::Writer>,
    /// The config file, for `/admin/config`.
    source: String,
}

static STATE: OnceCell<State> = OnceCell::new();
/// 5 logins a minute per client address.
static LOGINS: Lazy<auth::LoginLimit> = Lazy::new(|| auth::LoginLimit::new(5, 60_000));

static WRITES: Lazy<IntCounterVec> = Lazy::new(|| {
    let c = IntCounterVec::new(
        Opts::new(
            "aigate_admin_writes_total",
            "Admin API writes by action (key_create, key_update, key_delete, reload, login)",
        ),
        &["action"],
    )
    .expect("metric");
    let _ = crate::metrics::METRICS
        .registry
        .register(Box::new(c.clone()));
    c
});

/// At start: the request log and the runtime key store (a file store is
/// read now; a Redis one by [`KeySync`] once the runtime runs). `Err`:
/// the key file cannot be read, and the process must not start without
/// the keys it holds.
pub fn start(snap: &Snapshot, config: Option<&str>) -> Result<(), String> {
    let a = &snap.admin;
    let backend = match snap.limit_store.backend {
        crate::config::file::LimitBackend::Redis => {
            let url = snap.limit_store.url.as_deref().unwrap_or_default();
            let prefix = snap
                .limit_store
                .key_prefix
                .as_deref()
                .unwrap_or(crate::limits::redis::DEFAULT_PREFIX);
            usage::use_redis(url, prefix)?;
            store::Backend::Redis(Box::new(store::RedisKeys::new(url, prefix)?))
        }
        crate::config::file::LimitBackend::Memory => {
            let keys = key_file(a, config);
            usage::use_file(sibling(&keys, "aigate-usage.json"));
            store::Backend::File(keys)
        }
    };
    let records = match &backend {
        store::Backend::File(p) => store::read_file(p)?,
        store::Backend::Redis(_) => Default::default(),
    };
    let n = records.len();
    let k = keys::install(backend, records);
    let log = RequestLog::new(a.request_log_size());
    let file = a.request_log_persist.then(|| {
        let c = persist::Conf {
            path: match &a.request_log_file {
                Some(p) => p.into(),
                None => sibling(&key_file(a, config), "aigate-requests.jsonl"),
            },
            retention_ms: a.request_log_retention_ms(),
            keep: a.request_log_size(),
        };
        let back = persist::load(&c, crate::limits::store::unix_ms());
        log::info!(
            "request log: {} entries read back from {}",
            back.len(),
            c.path.display()
        );
        let (lines, oldest) = (back.len(), back.first().map(|e| e.time_ms));
        for e in back {
            log.push(e);
        }
        persist::Writer::start(c, lines, oldest)
    });
    let _ = STATE.set(State {
        log,
        file,
        source: config.unwrap_or("(embedded default)").to_string(),
    });
    Lazy::force(&WRITES);
    if a.enabled() {
        log::info!(
            "admin API on {} under /admin/ ({} runtime keys {}; request log of {})",
            snap.admin_listen
                .as_deref()
                .unwrap_or("(no admin_listen: unreachable)"),
            n,
            k.describe(),
            a.request_log_size()
        );
    } else {
        log::info!(
            "admin API off: set admin.token (e.g. \"${{AIGATE_ADMIN_TOKEN}}\") or admin.users (hashes from `aigate admin-password`) and admin_listen to turn it on"
        );
    }
    Ok(())
}

/// The runtime keys file: `admin.store`, else `aigate-keys.json` next to
/// the config (also where the request log file goes by default).
fn key_file(a: &crate::config::admin::AdminConf, config: Option<&str>) -> std::path::PathBuf {
    match (&a.store, config) {
        (Some(p), _) => p.into(),
        (None, Some(c)) => sibling(std::path::Path::new(c), "aigate-keys.json"),
        (None, None) => "aigate-keys.json".into(),
    }
}

fn sibling(p: &std::path::Path, name: &str) -> std::path::PathBuf {
    p.parent().unwrap_or(std::path::Path::new(".")).join(name)
}

/// The admin API as the proxy calls it (`proxy::AdminApi`).
pub struct Api;

#[async_trait]
impl crate::proxy::AdminApi for Api {
    fn owns(&self, path: &str) -> bool {
        owns(path)
    }

    /// Everything under `/admin` on the admin listener.
    async fn serve(
        &self,
        limiter: &Limiter,
        s: &mut ServerSession,
        ctx: &mut RequestCtx,
        method: &str,
        path: &str,
        query: Option<&str>,
    ) -> pingora_core::Result<()> {
        let snap = ctx.snap.clone();
        let Some(st) = STATE.get().filter(|_| snap.admin.enabled()) else {
            return fail(s, ctx, 404, &format!("no route for {method} {path}")).await;
        };
        if ui::owns(path) {
            return ui::serve(s, ctx, method, path).await;
        }
        let now = crate::limits::store::unix_ms();
        let rest = path.trim_start_matches("/admin").trim_start_matches('/');
        if rest == "login" && method == "POST" {
            return login(s, ctx, &snap).await;
        }
        if rest == "logout" && method == "POST" {
            let h = [("set-cookie", session::clear_cookie())];
            return answer(s, ctx, 200, &json!({"ok": true}), &h).await;
        }
        let Some(who) = auth::who(
            &snap.admin,
            header(s, "authorization"),
            header(s, "cookie"),
            now,
        ) else {
            return fail(s, ctx, 401, "admin authentication required: `Authorization: Bearer <admin token>` or a session from POST /admin/login").await;
        };
        let write = method != "GET" && method != "HEAD";
        if write && who.by_cookie() {
            // CSRF: a cross-site form cannot send JSON or a custom header.
            let json = header(s, "content-type").is_some_and(|c| c.starts_with("application/json"));
            if !json && header(s, "x-aigate-csrf").is_none() {
                return fail(s, ctx, 403, "admin writes from a session need `Content-Type: application/json` or an `x-aigate-csrf` header").await;
            }
        }
        let q = api::query_pairs(query);
        let keys = keys::get().expect("installed with the state");
        let (seg, id) = match rest.split_once('/') {
            Some((a, b)) => (a, Some(b)),
            None => (rest, None),
        };
        match (method, seg, id) {
            ("GET", "session", None) => {
                answer(s, ctx, 200, &json!({"admin": who.name()}), &[]).await
            }
            ("GET", "config", None) => {
                answer(s, ctx, 200, &api::config(&snap, &st.source), &[]).await
            }
            ("GET", "models", None) => {
                answer(s, ctx, 200, &api::models(&snap, limiter).await, &[]).await
            }
            ("GET", "providers", None) => {
                answer(s, ctx, 200, &api::providers(&snap, &st.log, limiter), &[]).await
            }
            ("GET", "keys", None) => {
                let list = keys.list();
                let ids: Vec<String> = (snap.keys.iter().map(|k| k.id.to_string()))
                    .chain(list.iter().map(|r| r.id.clone()))
                    .collect();
                usage::refresh(&ids).await;
                answer(s, ctx, 200, &api::keys(&snap, &list), &[]).await
            }
            ("GET", "requests", None) => match api::requests(&st.log, &q) {
                Ok(v) => answer(s, ctx, 200, &v, &[]).await,
                Err(e) => fail(s, ctx, 400, &e).await,
            },
            ("GET", "stats", None) => match api::stats(&st.log, &q) {
                Ok(v) => answer(s, ctx, 200, &v, &[]).await,
                Err(e) => fail(s, ctx, 400, &e).await,
            },
            ("GET", "events", None) => {
                let authz = header(s, "authorization").map(str::to_owned);
                let cookie = header(s, "cookie").map(str::to_owned);
                let admin = snap.clone();
                let allowed = move || {
                    let now = crate::limits::store::unix_ms();
                    auth::who(&admin.admin, authz.as_deref(), cookie.as_deref(), now).is_some()
                };
                events::stream(s, ctx, allowed).await
            }
            ("POST", "reload", None) => {
                let outcome = reload::run().await;
                wrote(
                    &who,
                    "reload",
                    "config",
                    if outcome.is_ok() { 200 } else { 422 },
                );
                match outcome {
                    Ok(m) => answer(s, ctx, 200, &json!({"ok": true, "message": m}), &[]).await,
                    Err(p) => answer(s, ctx, 422, &json!({"ok": false, "problems": p}), &[]).await,
                }
            }
            ("POST", "keys", None) => {
                let Ok(c) = body::<keys::Changes>(s, ctx).await? else {
                    return Ok(());
                };
                let ids: Vec<&str> = snap.keys.iter().map(|k| k.id.as_str()).collect();
                match keys.create(&c, &ids, who.name()).await {
                    Ok((r, secret)) => {
                        wrote(&who, "key_create", &r.id, 201);
                        crate::events::emit("key", || json!({"action": "create", "id": r.id}));
                        let mut v = api::runtime_key(&r);
                        v["key"] = json!(secret);
                        answer(s, ctx, 201, &v, &[]).await
                    }
                    Err((st, m)) => {
                        wrote(&who, "key_create", c.id.as_deref().unwrap_or("-"), st);
                        fail(s, ctx, st, &m).await
                    }
                }
            }
            ("PATCH" | "DELETE", "keys", Some(id)) => {
                let action = if method == "PATCH" {
                    "key_update"
                } else {
                    "key_delete"
                };
                if snap.keys.iter().any(|k| k.id == id) {
                    wrote(&who, action, id, 403);
                    let m = format!(
                        "key '{id}' comes from the config file and is read-only here: edit the file and reload"
                    );
                    return fail(s, ctx, 403, &m).await;
                }
                let r = if method == "PATCH" {
                    let Ok(c) = body::<keys::Changes>(s, ctx).await? else {
                        return Ok(());
                    };
                    keys.update(id, &c).await.map(|r| api::runtime_key(&r))
                } else {
                    keys.delete(id)
                        .await
                        .map(|_| json!({"id": id, "deleted": true}))
                };
                match r {
                    Ok(v) => {
                        wrote(&who, action, id, 200);
                        crate::events::emit("key", || json!({"action": action, "id": id}));
                        answer(s, ctx, 200, &v, &[]).await
                    }
                    Err((st, m)) => {
                        wrote(&who, action, id, st);
                        fail(s, ctx, st, &m).await
                    }
                }
            }
            ("GET", "keys", Some(id)) => {
                usage::refresh(&[id.to_string()]).await;
                if let Some(r) = keys.one(id) {
                    return answer(s, ctx, 200, &api::runtime_key(&r), &[]).await;
                }
                let v = api::keys(&snap, &[]);
                match v["keys"]
                    .as_array()
                    .and_then(|l| l.iter().find(|k| k["id"] == id))
                {
                    Some(k) => answer(s, ctx, 200, k, &[]).await,
                    None => fail(s, ctx, 404, &format!("no key '{id}'")).await,
                }
            }
            (
                _,
                "config" | "models" | "providers" | "keys" | "requests" | "stats" | "events"
                | "reload" | "session",
                _,
            ) if id.is_none() || seg == "keys" => {
                fail(
                    s,
                    ctx,
                    405,
                    &format!("method {method} not allowed on {path}"),
                )
                .await
            }
            _ => fail(s, ctx, 404, &format!("no route for {method} {path}")).await,
        }
    }

    fn observe(&self, ctx: &RequestCtx, ingress: &'static str, total: Duration) {
        observe(ctx, ingress, total)
    }
}

/// One finished AI request, from the place the access line is written.
pub fn observe(ctx: &RequestCtx, ingress: &'static str, total: Duration) {
    if !ctx.snap.admin.enabled() {
        return;
    }
    let Some(st) = STATE.get() else { return };
    let now = crate::limits::store::unix_ms();
    let opt = |s: &str| (!s.is_empty()).then(|| s.to_string());
    let tokens = ctx.usage.map_or((0, 0), |u| (u.input, u.output));
    let e = Entry {
        seq: 0,
        time_ms: now.saturating_sub(total.as_millis() as u64),
        request_id: ctx.request_id.clone(),
        key: ctx.key_id.clone(),
        ingress: ingress.into(),
        provider: opt(&ctx.provider),
        model: opt(&ctx.model),
        upstream_model: opt(&ctx.upstream_model),
        status: ctx.status,
        attempts: ctx.attempts,
        duration_ms: (total.as_secs_f64() * 1e4).round() / 10.0,
        ttfb_ms: ctx
            .first_byte
            .map(|fb| ((fb - ctx.start).as_secs_f64() * 1e4).round() / 10.0),
        tokens_in: tokens.0,
        tokens_out: tokens.1,
        tokens_estimated: ctx.tokens_estimated,
        cost_usd: ctx.cost_usd.map(|c| (c * 1e9).round() / 1e9),
        error: ctx.error.as_ref().map(|e| {
            let mut cut = e.len().min(1024);
            while !e.is_char_boundary(cut) {
                cut -= 1;
            }
            e[..cut].to_string()
        }),
    };
    if let Some(k) = &ctx.key_id {
        usage::add(k, now, tokens.0 + tokens.1, ctx.cost_usd.unwrap_or(0.0));
    }
    let e = st.log.push(e);
    if let Some(w) = &st.file {
        w.send(e.clone());
    }
    crate::events::count_request(e.status >= 400 || e.status == 0, tokens.0 + tokens.1);
    if crate::events::listening() && crate::events::request_event_allowed(now) {
        crate::events::emit("request", || serde_json::to_value(&*e).unwrap_or_default());
    }
}

/// Whether `path` is the admin API's or the dashboard's.
pub fn owns(path: &str) -> bool {
    path == "/admin" || path.starts_with("/admin/") || ui::owns(path)
}

fn header<'s>(s: &'s ServerSession, name: &str) -> Option<&'s str> {
    s.req_header()
        .headers
        .get(name)
        .and_then(|v| v.to_str().ok())
}

async fn answer(
    s: &mut ServerSession,
    ctx: &mut RequestCtx,
    status: u16,
    v: &Value,
    extra: &[(&'static str, String)],
) -> pingora_core::Result<()> {
    let mut h = vec![("cache-control", "no-store".to_string())];
    h.extend_from_slice(extra);
    let body = serde_json::to_vec(v).unwrap_or_default();
    respond::send(s, ctx, status, "application/json", body, &h).await
}

async fn fail(
    s: &mut ServerSession,
    ctx: &mut RequestCtx,
    status: u16,
    msg: &str,
) -> pingora_core::Result<()> {
    respond::error(s, ctx, Format::OpenAiChat, status, msg, None).await
}

/// The request body as JSON `T` (`Err`: answered already).
async fn body<T: serde::de::DeserializeOwned + Default>(
    s: &mut ServerSession,
    ctx: &mut RequestCtx,
) -> pingora_core::Result<Result<T, ()>> {
    let b = match intake::read_body(s, ctx, 64 * 1024).await? {
        intake::ClientBody::Whole(b) => b,
        intake::ClientBody::TooLarge => {
            fail(s, ctx, 413, "admin request bodies are at most 64 KiB").await?;
            return Ok(Err(()));
        }
        intake::ClientBody::Refused(st, m) => {
            fail(s, ctx, st, &m).await?;
            return Ok(Err(()));
        }
    };
    if b.iter().all(u8::is_ascii_whitespace) {
        return Ok(Ok(T::default()));
    }
    match serde_json::from_slice(&b) {
        Ok(v) => Ok(Ok(v)),
        Err(e) => {
            fail(s, ctx, 400, &format!("request body: {e}")).await?;
            Ok(Err(()))
        }
    }
}

/// An admin write: in the log with its admin, and counted.
fn wrote(who: &Admin, action: &str, target: &str, status: u16) {
    WRITES.with_label_values(&[action]).inc();
    log::info!(target: "admin", "admin={} action={action} target={target} status={status}", who.name());
}

#[derive(Default, serde::Deserialize)]
struct Login {
    name: String,
    password: String,
}

async fn login(
    s: &mut ServerSession,
    ctx: &mut RequestCtx,
    snap: &Arc<Snapshot>,
) -> pingora_core::Result<()> {
    let ip = s
        .client_addr()
        .and_then(|a| a.as_inet())
        .map_or(std::net::IpAddr::from([0, 0, 0, 0]), |a| a.ip());
    if let Err(wait_ms) = LOGINS.attempt(ip, crate::limits::store::unix_ms()) {
        ctx.extra_headers
            .push(("retry-after", wait_ms.div_ceil(1000).max(1).to_string()));
        return fail(
            s,
            ctx,
            429,
            "too many login attempts from this address; try again later",
        )
        .await;
    }
    let Ok(l) = body::<Login>(s, ctx).await? else {
        return Ok(());
    };
    let conf = snap.admin.clone();
    let name = l.name.clone();
    let ok = tokio::task::spawn_blocking(move || auth::check_password(&conf, &l.name, &l.password))
        .await
        .unwrap_or(false);
    let who = Admin::User(name.clone());
    WRITES.with_label_values(&["login"]).inc();
    if !ok {
        log::warn!(target: "admin", "admin login refused for user={name:?} from {ip}");
        return fail(s, ctx, 401, "wrong user name or password").await;
    }
    log::info!(target: "admin", "admin={} action=login from {ip}", who.name());
    let life = snap.admin.session();
    let expires = crate::limits::store::unix_ms() + life.as_millis() as u64;
    let cookie = session::set_cookie(&session::sign(&name, expires), life.as_secs());
    answer(
        s,
        ctx,
        200,
        &json!({"admin": name, "expires_ms": expires}),
        &[("set-cookie", cookie)],
    )
    .await
}

/// With a shared (Redis) key store: read it at start, then every second,
/// so keys made or revoked on another node apply here within a second.
pub struct KeySync;

#[async_trait]
impl BackgroundService for KeySync {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let Some(k) = keys::get().filter(|k| k.is_shared()) else {
            return;
        };
        let mut failing = false;
        loop {
            match k.refresh().await {
                Ok(_) if failing => {
                    failing = false;
                    log::info!("runtime keys: {} reachable again", k.describe());
                }
                Ok(_) => {}
                Err(e) if !failing => {
                    failing = true;
                    log::warn!(
                        "runtime keys: cannot read {}: {e}; keeping the last known keys",
                        k.describe()
                    );
                }
                Err(_) => {}
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}
