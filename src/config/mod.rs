//! Configuration: the YAML file (`file`), `${VAR}` interpolation (`env`),
//! parsing with every problem located (`load`, reporting `problem`s), the
//! compiled snapshot requests read (`runtime`), and the embedded default.

pub mod env;
pub mod file;
pub mod load;
pub mod problem;
pub mod runtime;

pub use load::Loaded;
pub use problem::Problem;
pub use runtime::Snapshot;

/// `conf/aigate.yaml`, used when no `--config` is given.
pub const EMBEDDED_DEFAULT: &str = include_str!("../../conf/aigate.yaml");

fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Parse config text against the process environment.
pub fn parse_text(text: &str) -> Result<Loaded, Vec<Problem>> {
    load::parse(text, &process_env)
}

/// Read and parse a file, or the embedded default when `path` is None.
pub fn read(path: Option<&str>) -> Result<Loaded, Vec<Problem>> {
    match path {
        None => parse_text(EMBEDDED_DEFAULT),
        Some(p) => match std::fs::read_to_string(p) {
            Ok(text) => parse_text(&text),
            Err(e) => Err(vec![Problem {
                path: p.to_string(),
                message: format!("cannot read: {e}"),
            }]),
        },
    }
}
