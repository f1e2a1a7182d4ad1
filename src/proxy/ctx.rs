//! Per-request state, kept across every upstream attempt of one request.

use crate::ir::Usage;
use crate::limits::Holds;
use crate::metrics::InflightGuard;
use crate::routing::Route;
use crate::runtime::Snapshot;
use crate::translate::Dropped;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub struct RequestCtx {
    /// The config this request runs on from start to end (SIGHUP-safe).
    pub snap: Arc<Snapshot>,
    pub start: Instant,
    pub request_id: String,
    pub route: Route,
    pub key_id: Option<String>,
    /// The model the client asked for.
    pub model: String,
    /// Provider and upstream model of the last attempt ("" when none was made).
    pub provider: String,
    pub upstream_model: String,
    pub status: u16,
    pub attempts: u32,
    /// Upstream addresses this request's attempts went to: the next attempt
    /// picks another one while one is left (`providers::balance`).
    pub tried_addrs: Vec<std::net::SocketAddr>,
    /// Time spent waiting on upstreams and on the client, subtracted from the
    /// total to give the gateway's own cost (`aigate_overhead_seconds`).
    pub upstream_wait: Duration,
    pub client_wait: Duration,
    pub first_byte: Option<Instant>,
    pub usage: Option<Usage>,
    /// The usage was (partly) estimated: the answer reported none.
    pub tokens_estimated: bool,
    /// What the answer cost, priced by the upstream model (None: no price known).
    pub cost_usd: Option<f64>,
    /// Short reason for the access log when the request failed.
    pub error: Option<String>,
    pub debug: bool,
    /// Headers for every response to this request (`x-ratelimit-*`, CORS).
    pub extra_headers: Vec<(&'static str, String)>,
    /// What the request holds against the limits: slots, request entries,
    /// token reservations (reconciled with the reported usage in `logging`).
    pub holds: Holds,
    /// Set when a configured route goes through Pingora's proxy phases.
    pub pass: Option<PassState>,
    /// Starts this request's attempts as subrequests (Pingora's, taken from
    /// the session in `request_filter`).
    pub spawner: Option<pingora_proxy::SubrequestSpawner>,
    /// Client paths the last converted body left out (SPEC drop-and-name
    /// rule): `x-aigate-dropped` on every answer, and the access line.
    pub dropped: Dropped,
    /// Set when this is an attempt's subrequest (`subreq`).
    pub sub: Option<Arc<super::subreq::Job>>,
    /// The in-flight gauge's count of this request (none for a subrequest).
    pub inflight: Option<InflightGuard>,
    /// What the running attempt settles on its provider when it answers
    /// (`pipeline::outcome::answered_ok`).
    pub settle: Option<Settle>,
}

impl RequestCtx {
    pub fn new(snap: Arc<Snapshot>) -> Self {
        RequestCtx {
            snap,
            start: Instant::now(),
            request_id: String::new(),
            route: Route::NotFound,
            key_id: None,
            model: String::new(),
            provider: String::new(),
            upstream_model: String::new(),
            status: 0,
            attempts: 0,
            tried_addrs: Vec::new(),
            upstream_wait: Duration::ZERO,
            client_wait: Duration::ZERO,
            first_byte: None,
            usage: None,
            tokens_estimated: false,
            cost_usd: None,
            error: None,
            debug: false,
            extra_headers: Vec::new(),
            holds: Holds::default(),
            pass: None,
            spawner: None,
            dropped: Dropped::default(),
            sub: None,
            inflight: Some(InflightGuard::new()),
            settle: None,
        }
    }
}

/// What a successful attempt settles on its provider: the credential it used,
/// and whether it was the forced (no-alternative) attempt.
#[derive(Clone, Copy, Debug)]
pub struct Settle {
    pub cred: Option<usize>,
    pub forced: bool,
}

/// Per-request state of a proxied route (kept across Pingora's retries).
pub struct PassState {
    /// Index into `snap.routes.routes`.
    pub route: usize,
    /// The path part that goes upstream (`routes::Join`).
    pub rest: String,
    /// The client's query, `key=` removed when credentials are stripped.
    pub query: Option<String>,
    /// The target of the current attempt (index into the route's targets).
    pub(super) target: usize,
    /// The provider credential of the current attempt (index, key).
    pub(super) credential: Option<(usize, String)>,
    /// When the first upstream was picked: everything after is upstream or
    /// client time, not the gateway's (`aigate_overhead_seconds`).
    pub(super) proxy_start: Option<Instant>,
    /// An upstream error answer, held whole so that a credential the upstream
    /// echoes in it is redacted before the client sees it.
    pub(super) held: Option<Vec<u8>>,
    /// The client's body while Pingora streams it (`body_awaited` to its end).
    pub(super) body: Option<super::body_rate::BodyClock>,
}
