//! The configuration file as written: its types (`file`, `admin`),
//! `${VAR}` interpolation (`env`), parsing with every problem located
//! (`parse`, reporting `problem`s), the redacted copy the admin API shows
//! (`redact`), and the embedded default. It imports none of the modules that
//! use it; validating and compiling the file is `runtime`'s job.

pub mod admin;
pub mod env;
pub mod file;
pub mod parse;
pub mod problem;
pub mod redact;

pub use parse::Loaded;
pub use problem::Problem;

/// `conf/aigate.yaml`, used when no `--config` is given.
pub const EMBEDDED_DEFAULT: &str = include_str!("../../conf/aigate.yaml");
