//! The config requests run on: a file loaded (`load`: read, parse, every
//! module's checks) and compiled (`snapshot`: globs built, keys hashed, URLs
//! parsed, addresses resolved). It sits above the modules whose pieces it
//! compiles (providers, routes, payload, prices, limits, keys), which import
//! only the file's types from `config`.

pub mod load;
pub mod snapshot;

pub use load::{parse, parse_text, read};
pub use snapshot::Snapshot;
