//! Giving memory back after a peak. The global allocator is mimalloc (v3):
//! a freed large block goes back to mimalloc's arena, and the arena returns
//! its pages to the OS `purge_delay` (default 1 s) later — but only when some
//! thread next takes mimalloc's slow path. A gateway that served a burst of
//! large answers and then went quiet kept them resident (six 64 MiB answers:
//! over 500 MB until the process was replaced). With a purge delay of 0 a
//! freed block's pages go back at once (one `madvise` per freed arena range).
//!
//! mimalloc reads its options from the environment when the process starts,
//! and setting an option from Rust takes `unsafe` FFI (or an `unsafe`
//! `set_var`), so the binary re-executes itself once with the variable set,
//! unless the operator set it.

use std::ffi::OsString;

/// The variable, and the value aigate runs with unless told otherwise.
pub const PURGE_DELAY: (&str, &str) = ("MIMALLOC_PURGE_DELAY", "0");

/// Whether to re-execute: the variable is not set yet.
pub fn needs_reexec(current: Option<OsString>) -> bool {
    current.is_none()
}

/// Re-execute this binary with `PURGE_DELAY` set; returns only if that
/// failed (the process then runs with mimalloc's default).
#[cfg(unix)]
pub fn tune_allocator() {
    use std::os::unix::process::CommandExt;
    let (name, value) = PURGE_DELAY;
    if !needs_reexec(std::env::var_os(name)) {
        return;
    }
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let err = std::process::Command::new(exe)
        .args(std::env::args_os().skip(1))
        .env(name, value)
        .exec();
    eprintln!(
        "aigate: could not re-execute with {name}={value} ({err}); freed memory may stay resident"
    );
}

#[cfg(not(unix))]
pub fn tune_allocator() {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_operators_setting_is_kept() {
        assert!(needs_reexec(None));
        assert!(!needs_reexec(Some("1000".into())));
        assert!(!needs_reexec(Some("".into())));
    }
}
