//! Pingora log lines that report normal operation at error level, kept out
//! of aigate's log (README "Logs").
//!
//! "failed to acquire reusable stream" (pingora-core connectors/mod.rs): an
//! idle upstream connection was taken from the pool while its idle watcher,
//! on another worker thread, had not yet let go of it. Pingora then opens a
//! new connection; the request is unaffected. With `threads` above 1 it
//! happens now and then under steady keep-alive traffic, which made an
//! ERROR line out of an ordinary pool miss.

/// Whether a record of `target` saying `msg` is one of these.
pub fn is_noise(target: &str, msg: &str) -> bool {
    target == "pingora_core::connectors" && msg == "failed to acquire reusable stream"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_pool_miss_is_noise() {
        assert!(is_noise(
            "pingora_core::connectors",
            "failed to acquire reusable stream"
        ));
        // Other connector errors and the same words elsewhere still show.
        assert!(!is_noise(
            "pingora_core::connectors",
            "failed to connect: refused"
        ));
        assert!(!is_noise(
            "aigate::proxy",
            "failed to acquire reusable stream"
        ));
    }
}
