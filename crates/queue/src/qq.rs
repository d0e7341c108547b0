//! qmail-queue's exit codes (interop §5.2): the interface between postern-queue (or any
//! qmail-queue replacement in `$QMAILQUEUE` position) and the programs that run it.
//! postern-queue exits with these and prints nothing; callers turn them into text with
//! [`describe`]. Codes 11–40 are permanent, every other non-zero code temporary.

/// Queued: on disk, file and directory fsynced.
pub const OK: i32 = 0;
/// An address of 1003 bytes or more (with its NUL).
pub const ADDRESS_TOO_LONG: i32 = 11;
/// Refused for good: the envelope is over postern-queue's limits (too many recipients).
pub const REFUSED: i32 = 31;
/// Out of memory (a replacement may use it; Rust aborts instead).
pub const NO_MEMORY: i32 = 51;
/// The 24-hour alarm went off before the message and envelope were read.
pub const TIMEOUT: i32 = 52;
/// Writing the queue file failed (disk full, quota, I/O error, fsync failed).
pub const WRITE_ERROR: i32 = 53;
/// Reading the message (fd 0) or the envelope (fd 1) failed or ended early.
pub const READ_ERROR: i32 = 54;
/// Trouble with `$POSTERN_HOME` (cannot chdir).
pub const HOME_TROUBLE: i32 = 61;
/// Trouble with `queue/` (cannot chdir).
pub const QUEUE_TROUBLE: i32 = 62;
/// Trouble with `queue/tmp/` (cannot create the file).
pub const TMP_TROUBLE: i32 = 63;
/// Trouble with `queue/new/` (cannot rename into it or fsync it).
pub const NEW_TROUBLE: i32 = 64;
/// Internal bug.
pub const BUG: i32 = 81;
/// Custom error text on fd 6 (notqmail); we never use it, callers may meet it.
pub const CUSTOM: i32 = 82;
/// The envelope is not `F…\0 T…\0 … \0`.
pub const ENVELOPE_FORMAT: i32 = 91;
/// The caller could not run the queue program at all (qmail's convention).
pub const CANNOT_EXEC: i32 = 120;

/// Whether a qmail-queue exit code is a permanent failure (qmail.c: 11–40).
pub fn is_permanent(code: i32) -> bool {
    (11..=40).contains(&code)
}

/// The text a caller shows for an exit code, ending with an RFC 3463 status code as
/// qmail.c's texts do (so it can go into a reply or a bounce unchanged).
pub fn describe(code: i32) -> &'static str {
    match code {
        OK => "ok",
        ADDRESS_TOO_LONG | 115 => "qq address too long (#5.1.3)",
        REFUSED => "qq refused the message: envelope over the limits (#5.3.4)",
        NO_MEMORY => "qq out of memory (#4.3.0)",
        TIMEOUT => "qq timeout (#4.3.0)",
        WRITE_ERROR => "qq write error or disk full (#4.3.0)",
        READ_ERROR => "qq read error (#4.3.0)",
        55 => "qq unable to read a configuration file (#4.3.0)",
        56 => "qq trouble making a network connection (#4.3.0)",
        HOME_TROUBLE => "qq trouble in home directory (#4.3.0)",
        QUEUE_TROUBLE => "qq trouble making the queue directory (#4.3.0)",
        TMP_TROUBLE => "qq trouble in queue/tmp (#4.3.0)",
        NEW_TROUBLE => "qq trouble in queue/new (#4.3.0)",
        65 | 66 => "qq trouble creating files in the queue (#4.3.0)",
        71 => "qq mail server temporarily refuses (#4.3.0)",
        72 => "qq connection to mail server timed out (#4.4.1)",
        73 => "qq connection to mail server rejected (#4.4.1)",
        74 => "qq communication with mail server failed (#4.4.2)",
        BUG => "qq internal bug (#4.3.0)",
        ENVELOPE_FORMAT => "qq envelope format error (#4.3.0)",
        CANNOT_EXEC => "unable to run the queue program (#4.3.0)",
        c if is_permanent(c) => "qq permanent problem (#5.3.0)",
        _ => "qq temporary problem (#4.3.0)",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_follow_qmail_c() {
        assert!(is_permanent(ADDRESS_TOO_LONG) && is_permanent(REFUSED) && is_permanent(40));
        for c in [
            NO_MEMORY,
            TIMEOUT,
            WRITE_ERROR,
            READ_ERROR,
            HOME_TROUBLE,
            ENVELOPE_FORMAT,
            75,
            115,
            120,
        ] {
            assert!(!is_permanent(c), "{c}");
        }
        assert!(describe(ADDRESS_TOO_LONG).ends_with("(#5.1.3)"));
        assert!(describe(77).ends_with("(#4.3.0)"));
        assert!(describe(35).ends_with("(#5.3.0)"));
    }
}
