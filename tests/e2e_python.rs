//! Runs the Python end-to-end suite (`tests/e2e/`) against the `aigate` binary that
//! cargo just built, so `cargo test --release` runs everything.
//!
//! 1. `tests/e2e/setup_venv.sh` creates `target/e2e-venv` with the pinned SDKs
//!    (openai, anthropic, google-genai, pytest, httpx, pyyaml); it is a no-op when the
//!    venv already matches `tests/e2e/requirements.txt`.
//! 2. `tests/e2e/setup_agents.sh` installs the pinned agent CLIs (Claude Code, Codex,
//!    Gemini CLI) from the npm registry into `target/e2e-agents` for
//!    `tests/e2e/test_agents.py`; a no-op when they are already there.
//! 3. `python -m pytest tests/e2e -v` with `AIGATE_BIN` = this build's binary. pytest's
//!    output goes straight to the terminal (not captured by libtest), so its per-test
//!    lines and summary appear in the log.
//!
//! A missing Python or Node, a venv or CLIs that cannot be installed: a failure, never
//! a skip.
//! Extra pytest arguments: `AIGATE_PYTEST_ARGS="-k mock -x" cargo test --release --test e2e_python`.

use std::path::Path;
use std::process::Command;

#[test]
fn python_e2e_suite() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    run_setup(root, "tests/e2e/setup_venv.sh", "the Python venv");
    run_setup(root, "tests/e2e/setup_agents.sh", "the agent CLIs");

    let venv = std::env::var_os("AIGATE_E2E_VENV")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| root.join("target/e2e-venv"));
    let python = venv.join("bin/python");
    let mut cmd = Command::new(&python);
    cmd.args(["-m", "pytest", "tests/e2e", "-v"])
        .current_dir(root)
        .env("AIGATE_BIN", env!("CARGO_BIN_EXE_aigate"))
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("PYTHONUNBUFFERED", "1");
    if let Ok(extra) = std::env::var("AIGATE_PYTEST_ARGS") {
        cmd.args(extra.split_whitespace());
    }
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
    assert!(
        status.success(),
        "the Python e2e suite failed ({status}); see pytest's report above"
    );
}

/// Run one of the suite's set-up scripts; `what` names what it could not set up.
fn run_setup(root: &Path, script: &str, what: &str) {
    let setup = root.join(script);
    let status = Command::new("bash")
        .arg(&setup)
        .current_dir(root)
        .status()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", setup.display()));
    assert!(
        status.success(),
        "{} failed ({status}): {what} for the e2e suite could not be set up",
        setup.display()
    );
}
