//! A problem found in a config file. Its own module so the modules that check
//! their part of the file (`payload`, `routes`) report in the same shape
//! without depending on the loader that calls them.

/// One thing wrong with a config file, located by its YAML path.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}
