//! aigate: an AI API gateway on Pingora. See README.md for the design.

pub mod access_log;
pub mod auth;
pub mod cli;
pub mod client_addr;
pub mod config;
pub mod control;
pub mod cors;
pub mod ir;
pub mod limits;
pub mod metrics;
pub mod payload;
pub mod pricing;
pub mod process;
pub mod providers;
pub mod proxy;
pub mod redis_limits;
pub mod resilience;
pub mod routes;
pub mod routing;
pub mod server;
pub mod shutdown;
pub mod sse;
pub mod tls;
pub mod translate;
pub mod upgrade;
pub mod watch;
