//! The gateway pipeline for AI requests, driven from `request_filter`, one
//! module a step: intake (body, `Ask`), plan (target order, gates), attempt
//! (one upstream try), respond (the answer to the client).
//!
//! Design decision (README "Design: one request, one subrequest per
//! attempt"): Pingora picks the upstream before it reads the body and replays
//! a pre-read body only from a 64 KiB retry buffer, so AI routes read the
//! whole body here, then make each attempt a Pingora subrequest (`subreq`)
//! with that target's converted body, and relay its answer themselves,
//! converting it chunk by chunk and holding the head until the first content.

pub mod attempt;
pub mod intake;
pub mod plan;
pub mod respond;
