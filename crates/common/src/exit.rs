//! Exit codes are an interface: 0 success, 100 permanent failure or bad usage, 111
//! temporary failure. Some programs speak an older interface with codes of its own
//! (qmail-queue's 11–91, checkpassword's 1 and 2, postern-pop3d's refusal to run as
//! root): those are [`Kind::Code`], carried the same way. Library code returns [`Error`]
//! with a [`Kind`]; only a binary's `main` turns it into a process exit, through [`run`],
//! so every program ends in one place and words its last line one way.

use std::fmt;
use std::io;

/// Success.
pub const EXIT_OK: i32 = 0;
/// Permanent failure: bad usage, bad input. Retrying will not help.
pub const EXIT_PERM: i32 = 100;
/// Temporary failure: try again later (disk full, DNS down, a lock held).
pub const EXIT_TEMP: i32 = 111;

/// What kind of failure, which decides the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The command line was wrong: exit 100, message starts with `usage:`.
    Usage,
    /// Permanent failure: exit 100.
    Perm,
    /// Temporary failure: exit 111.
    Temp,
    /// An interface's own exit code (qmail-queue, checkpassword, …). The message, when
    /// not empty, is printed as a `fatal:` line; an empty message exits silently (a
    /// checkpassword refusal is an answer, not an error).
    Code(i32),
}

impl Kind {
    pub fn code(self) -> i32 {
        match self {
            Kind::Usage | Kind::Perm => EXIT_PERM,
            Kind::Temp => EXIT_TEMP,
            Kind::Code(code) => code,
        }
    }
}

/// A failure with its kind and a one-line, human-readable reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub kind: Kind,
    pub msg: String,
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn usage(msg: impl Into<String>) -> Self {
        Error {
            kind: Kind::Usage,
            msg: msg.into(),
        }
    }
    pub fn perm(msg: impl Into<String>) -> Self {
        Error {
            kind: Kind::Perm,
            msg: msg.into(),
        }
    }
    pub fn temp(msg: impl Into<String>) -> Self {
        Error {
            kind: Kind::Temp,
            msg: msg.into(),
        }
    }
    /// Exit with an interface's own `code`, printing `msg` (if any) as a `fatal:` line.
    pub fn code(code: i32, msg: impl Into<String>) -> Self {
        Error {
            kind: Kind::Code(code),
            msg: msg.into(),
        }
    }
    /// An I/O error while doing `what`: temporary, as the DJB tools treat them.
    pub fn io(what: impl fmt::Display, err: &io::Error) -> Self {
        Error::temp(format!("{what}: {}", describe_io(err)))
    }
    /// Put more context in front of the reason: `what: reason`.
    pub fn context(mut self, what: impl fmt::Display) -> Self {
        self.msg = format!("{what}: {}", self.msg);
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.msg)
    }
}

impl std::error::Error for Error {}

/// `io::Error`'s Display adds "(os error N)"; the classic tools print only the text.
pub fn describe_io(err: &io::Error) -> String {
    let text = err.to_string();
    match text.find(" (os error ") {
        Some(at) => text[..at].to_lowercase(),
        None => text,
    }
}

/// Attach a kind and context to `io::Result`s in one call.
pub trait ResultExt<T> {
    /// I/O trouble while doing `what`: temporary.
    fn temp(self, what: impl fmt::Display) -> Result<T>;
    /// I/O trouble while doing `what`, but retrying will not help: permanent.
    fn perm(self, what: impl fmt::Display) -> Result<T>;
}

impl<T> ResultExt<T> for io::Result<T> {
    fn temp(self, what: impl fmt::Display) -> Result<T> {
        self.map_err(|e| Error::io(what, &e))
    }
    fn perm(self, what: impl fmt::Display) -> Result<T> {
        self.map_err(|e| Error::perm(format!("{what}: {}", describe_io(&e))))
    }
}

impl<T> ResultExt<T> for nix::Result<T> {
    fn temp(self, what: impl fmt::Display) -> Result<T> {
        self.map_err(|e| Error::temp(format!("{what}: {}", e.desc().to_lowercase())))
    }
    fn perm(self, what: impl fmt::Display) -> Result<T> {
        self.map_err(|e| Error::perm(format!("{what}: {}", e.desc().to_lowercase())))
    }
}

/// The one line a program prints for an error, e.g. `postern-svc: fatal: unable to …`.
pub fn error_line(prog: &str, err: &Error) -> String {
    match err.kind {
        Kind::Usage => format!("{prog}: usage: {}", err.msg),
        Kind::Perm | Kind::Temp | Kind::Code(_) => format!("{prog}: fatal: {}", err.msg),
    }
}

/// Print a warning line: `postern-NAME: warning: msg`.
pub fn warn(prog: &str, msg: impl fmt::Display) {
    eprintln!("{prog}: warning: {msg}");
}

/// The funnel every `main` goes through: run `body`, and on error print one line on
/// stderr and exit with the error's code. Success exits 0.
pub fn run(prog: &str, body: impl FnOnce() -> Result<()>) -> ! {
    match body() {
        Ok(()) => std::process::exit(EXIT_OK),
        Err(err) => {
            if !(matches!(err.kind, Kind::Code(_)) && err.msg.is_empty()) {
                eprintln!("{}", error_line(prog, &err));
            }
            std::process::exit(err.kind.code())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_map_to_the_documented_codes() {
        assert_eq!(Kind::Usage.code(), 100);
        assert_eq!(Kind::Perm.code(), 100);
        assert_eq!(Kind::Temp.code(), 111);
        assert_eq!(Kind::Code(81).code(), 81);
        assert_eq!(Kind::Code(1).code(), 1);
    }

    #[test]
    fn error_lines_follow_the_convention() {
        let e = Error::temp("unable to open x").context("svc");
        assert_eq!(
            error_line("postern-svc", &e),
            "postern-svc: fatal: svc: unable to open x"
        );
        let u = Error::usage("postern-svc [-udo] dir");
        assert_eq!(
            error_line("postern-svc", &u),
            "postern-svc: usage: postern-svc [-udo] dir"
        );
    }

    #[test]
    fn interface_codes_keep_their_code_and_the_fatal_wording() {
        let e = Error::code(1, "refusing to run as root");
        assert_eq!(e.kind.code(), 1);
        assert_eq!(
            error_line("postern-pop3d", &e),
            "postern-pop3d: fatal: refusing to run as root"
        );
        // A checkpassword refusal is an answer: no message, only the code.
        let refusal = Error::code(1, "");
        assert!(refusal.msg.is_empty());
        assert_eq!(refusal.kind, Kind::Code(1));
    }

    #[test]
    fn io_errors_lose_the_os_error_suffix() {
        let e = io::Error::from_raw_os_error(libc::ENOENT);
        assert_eq!(describe_io(&e), "no such file or directory");
        let r: io::Result<()> = Err(e);
        let err = r.temp("unable to open control/me").unwrap_err();
        assert_eq!(err.kind, Kind::Temp);
        assert_eq!(
            err.msg,
            "unable to open control/me: no such file or directory"
        );
    }
}
