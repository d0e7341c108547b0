//! Every program finds its instance through `POSTERN_HOME` (DESIGN §4).

use std::path::PathBuf;

/// Where a system install lives when `POSTERN_HOME` is not set.
pub const DEFAULT_HOME: &str = "/var/postern";

/// The instance directory: `$POSTERN_HOME`, or [`DEFAULT_HOME`].
pub fn postern_home() -> PathBuf {
    match std::env::var_os("POSTERN_HOME") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => PathBuf::from(DEFAULT_HOME),
    }
}
