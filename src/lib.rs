//! aigate: an AI API gateway on Pingora. See README.md for the design.

pub mod auth;
pub mod cli;
pub mod config;
pub mod cors;
pub mod ir;
pub mod limits;
pub mod metrics;
pub mod providers;
pub mod proxy;
pub mod resilience;
pub mod routing;
pub mod server;
pub mod sse;
pub mod translate;
pub mod upgrade;
pub mod watch;
