//! qmail-queue's exit codes, the whole answer of a queue program:
//! postern-queue and postern-scan exit with these, their callers read them. 11–40 are
//! permanent, every other non-zero code temporary (qmail.c). A caller that is a program
//! says what a code means with [`describe`] (postern-inject, bounces); an SMTP server
//! answers with [`smtp_reply`] (qmail-smtpd's table) — two texts, both interfaces.

/// Queued: on disk, file and directory fsynced.
pub const OK: i32 = 0;
/// An address of 1003 bytes or more (with its NUL).
pub const ADDRESS_TOO_LONG: i32 = 11;
/// "Mail server permanently refuses": postern-queue for an envelope or message over its
/// limits; postern-scan for a refused message when the caller gave no pipe as fd 6.
pub const REFUSED: i32 = 31;
/// Out of memory (a replacement may use it; Rust aborts instead).
pub const NO_MEMORY: i32 = 51;
/// The 24-hour alarm went off before the message and envelope were read.
pub const TIMEOUT: i32 = 52;
/// Writing failed (disk full, quota, I/O error, fsync failed; postern-scan's temporary
/// files and quarantine copy).
pub const WRITE_ERROR: i32 = 53;
/// Reading the message (fd 0) or the envelope (fd 1) failed or ended early.
pub const READ_ERROR: i32 = 54;
/// "Unable to read a configuration file": postern-scan's broken filter.rules or scanners.
pub const CONFIG_ERROR: i32 = 55;
/// Trouble making a network connection (a replacement may use it).
pub const NETWORK_TROUBLE: i32 = 56;
/// Trouble with `$POSTERN_HOME` (cannot chdir, control/databytes unreadable).
pub const HOME_TROUBLE: i32 = 61;
/// Trouble with `queue/` (cannot chdir).
pub const QUEUE_TROUBLE: i32 = 62;
/// Trouble with `queue/tmp/` (cannot create the file).
pub const TMP_TROUBLE: i32 = 63;
/// Trouble with `queue/new/` (cannot rename into it or fsync it).
pub const NEW_TROUBLE: i32 = 64;
/// "Mail server temporarily refuses": postern-scan's virus scanner failed.
pub const TEMP_REFUSED: i32 = 71;
/// Internal bug.
pub const BUG: i32 = 81;
/// The reason is on fd 6 (notqmail's custom error, `postern_common::custom_error`).
pub const CUSTOM_ERROR: i32 = postern_common::custom_error::EXIT;
/// The envelope is not `F…\0 T…\0 … \0`.
pub const ENVELOPE_FORMAT: i32 = 91;
/// The queue program could not be run at all (qmail's convention; postern-scan when
/// postern-queue will not start).
pub const CANNOT_EXEC: i32 = 120;

/// Whether a qmail-queue exit code is a permanent failure (qmail.c: 11–40).
pub fn is_permanent(code: i32) -> bool {
    (11..=40).contains(&code)
}

/// The text a calling program shows for an exit code, ending with an RFC 3463 status
/// code as qmail.c's texts do (so it can go into an error line or a bounce unchanged).
pub fn describe(code: i32) -> &'static str {
    match code {
        OK => "ok",
        ADDRESS_TOO_LONG | 115 => "qq address too long (#5.1.3)",
        REFUSED => "qq refused the message: envelope over the limits (#5.3.4)",
        NO_MEMORY => "qq out of memory (#4.3.0)",
        TIMEOUT => "qq timeout (#4.3.0)",
        WRITE_ERROR => "qq write error or disk full (#4.3.0)",
        READ_ERROR => "qq read error (#4.3.0)",
        CONFIG_ERROR => "qq unable to read a configuration file (#4.3.0)",
        NETWORK_TROUBLE => "qq trouble making a network connection (#4.3.0)",
        HOME_TROUBLE => "qq trouble in home directory (#4.3.0)",
        QUEUE_TROUBLE => "qq trouble making the queue directory (#4.3.0)",
        TMP_TROUBLE => "qq trouble in queue/tmp (#4.3.0)",
        NEW_TROUBLE => "qq trouble in queue/new (#4.3.0)",
        65 | 66 => "qq trouble creating files in the queue (#4.3.0)",
        TEMP_REFUSED => "qq mail server temporarily refuses (#4.3.0)",
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

/// The SMTP reply for a queue program's exit code (qmail-smtpd's table in qmail.c;
/// 11–40 permanent, anything else temporary). `None` is a crash. Exit 82 with a good
/// record on fd 6 is answered by `custom_error::reply` instead; without one it is
/// temporary, as any code not in the table.
pub fn smtp_reply(code: Option<i32>) -> &'static str {
    let Some(code) = code else {
        return "451 4.3.0 qq crashed";
    };
    match code {
        ADDRESS_TOO_LONG | 115 => "554 5.1.3 envelope address too long for qq",
        REFUSED => "554 5.3.0 mail server permanently rejected message",
        NO_MEMORY => "451 4.3.0 qq out of memory",
        TIMEOUT => "451 4.3.0 qq timeout",
        WRITE_ERROR => "451 4.3.0 qq write error or disk full",
        READ_ERROR => "451 4.3.0 qq read error",
        CONFIG_ERROR => "451 4.3.0 qq unable to read configuration",
        NETWORK_TROUBLE => "451 4.4.3 qq trouble making network connection",
        HOME_TROUBLE => "451 4.3.0 qq trouble in home directory",
        62..=66 => "451 4.3.0 qq trouble in the queue directory",
        TEMP_REFUSED => "451 4.3.0 mail server temporarily rejected message",
        72 => "451 4.4.1 connection to mail server timed out",
        73 => "451 4.4.1 connection to mail server rejected",
        74 => "451 4.4.2 communication with mail server failed",
        BUG => "451 4.3.0 qq internal bug",
        ENVELOPE_FORMAT => "451 4.3.0 qq envelope format error",
        CANNOT_EXEC => "451 4.3.0 unable to exec qq",
        12..=40 => "554 5.3.0 qq permanent problem",
        _ => "451 4.3.0 qq temporary problem",
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

    #[test]
    fn smtp_replies_follow_qmail_smtpd() {
        assert!(smtp_reply(Some(11)).starts_with("554 5.1.3"));
        assert!(smtp_reply(Some(31)).starts_with("554 5.3.0"));
        assert!(smtp_reply(Some(25)).starts_with("554 5.3.0"));
        assert!(smtp_reply(Some(53)).starts_with("451 4.3.0"));
        assert!(smtp_reply(Some(71)).starts_with("451 4.3.0"));
        assert!(
            smtp_reply(Some(75)).starts_with("451 4.3.0"),
            "undefined codes are temporary"
        );
        assert!(smtp_reply(Some(1)).starts_with("451"));
        assert!(
            smtp_reply(Some(100)).starts_with("451"),
            "100 is not in 11-40"
        );
        assert!(smtp_reply(Some(CUSTOM_ERROR)).starts_with("451"));
        assert!(smtp_reply(None).starts_with("451 4.3.0"));
    }

    /// Both texts agree with the class of every code but 115, which qmail answers as
    /// 11 (address too long) although it is outside 11–40.
    #[test]
    fn the_two_texts_agree_on_the_class() {
        for code in (1..=255).filter(|&c| c != 115) {
            let permanent = smtp_reply(Some(code)).starts_with('5');
            assert_eq!(permanent, is_permanent(code), "{code}");
            assert_eq!(
                describe(code).contains("(#5."),
                is_permanent(code),
                "{code}"
            );
        }
    }
}
