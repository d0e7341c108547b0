//! Finding the programs postern runs: next to the running executable first (an install
//! keeps them together in `bin/`, and so does cargo's target directory), else the bare
//! name for `$PATH` to resolve. One lookup for every program that starts another.

use std::path::PathBuf;

/// The directory the running executable is in, if the system says.
pub fn own_dir() -> Option<PathBuf> {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.to_path_buf()))
}

/// `name` beside the running executable if it is a file there, else `name` itself.
pub fn program(name: &str) -> PathBuf {
    own_dir()
        .map(|dir| dir.join(name))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from(name))
}

/// The qmail-queue program a message goes to: `$QMAILQUEUE` (one path, no arguments,
/// as qmail's), else `postern-queue` found by [`program`].
pub fn queue_program() -> PathBuf {
    match std::env::var_os("QMAILQUEUE").filter(|q| !q.is_empty()) {
        Some(q) => PathBuf::from(q),
        None => program("postern-queue"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_sibling_is_left_to_path() {
        assert_eq!(
            program("postern-no-such-program"),
            PathBuf::from("postern-no-such-program")
        );
        let me = std::env::current_exe().unwrap();
        let name = me.file_name().unwrap().to_str().unwrap();
        assert_eq!(program(name), me);
    }
}
