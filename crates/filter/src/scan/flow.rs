//! postern-scan's flow, in `$QMAILQUEUE` position: read the message (fd 0) and the
//! envelope (fd 1) as postern-queue would, decide, then either hand both to
//! postern-queue unchanged (`exec`, so its exit code is ours) or refuse — smtpd answers
//! 554 before the client ever got 250, so no bounce is needed — after keeping a copy in
//! quarantine and alerting the admin. The refusal says what was refused: when the caller
//! gave a pipe as fd 6 (postern-smtpd, notqmail), `D5.7.1 message refused: <the rule's
//! description>` goes there and the exit is 82 (qmail-queue's custom error); otherwise
//! exit 31, qmail's plain "permanently rejected". A scanner error is exit 71 (451)
//! unless `control/scanfailopen` says to let the mail through.
//!
//! The envelope is read and passed on as bytes ([`postern_wire::qmail_queue`]): an
//! address that is not UTF-8 reaches postern-queue unchanged; only the rules and the log
//! lines see it decoded. Every end but the `exec` is an error with its qmail-queue code
//! for `postern_common::exit::run`: `postern-scan: fatal: …` for a failure, nothing for
//! a refusal.

use crate::scan::quarantine::Refusal;
use crate::scan::{alert, engines, mime, policy, quarantine, rules, spam};
use postern_common::control::Control;
use postern_common::custom_error;
use postern_common::logline::LogLine;
use postern_common::{Error, Result};
use postern_wire::qmail_queue::{client, exit_code as qq, Envelope};
use std::io::{BufReader, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::process::CommandExt;

/// Largest message we scan; bigger ones are refused (smtpd's databytes is far below).
pub const MAX_MESSAGE: u64 = 256 * 1024 * 1024;
/// Largest envelope we read.
pub const MAX_ENVELOPE: u64 = 16 * 1024 * 1024;

/// A failure: its qmail-queue exit code, and the reason for a `postern-scan: fatal:`
/// line.
fn fatal(code: i32, msg: impl std::fmt::Display) -> Error {
    Error::code(code, msg.to_string())
}

/// A refusal, told by the exit code alone (and fd 6) as qmail-queue's answers are.
fn refused(code: i32) -> Error {
    Error::code(code, "")
}

/// Read fd 0 (message) and fd 1 (envelope).
fn read_input() -> Result<(Vec<u8>, Envelope)> {
    let mut message = Vec::new();
    let stdin = std::io::stdin();
    stdin
        .lock()
        .take(MAX_MESSAGE + 1)
        .read_to_end(&mut message)
        .map_err(|e| fatal(qq::READ_ERROR, format!("unable to read message: {e}")))?;
    if message.len() as u64 > MAX_MESSAGE {
        return Err(fatal(qq::REFUSED, "message too large to scan"));
    }
    // fd 1 is the envelope, opened for reading by our caller.
    let stdout = std::io::stdout();
    let fd = stdout
        .as_fd()
        .try_clone_to_owned()
        .map_err(|e| fatal(qq::READ_ERROR, format!("unable to read envelope: {e}")))?;
    let mut input = BufReader::new(std::fs::File::from(fd).take(MAX_ENVELOPE));
    let envelope = Envelope::read(&mut input).map_err(|e| fatal(e.exit_code(), &e))?;
    // postern-queue would queue nothing; we say so.
    if envelope.recipients.is_empty() {
        return Err(fatal(qq::ENVELOPE_FORMAT, "envelope format error"));
    }
    Ok((message, envelope))
}

/// An address as text, for the rules and the log lines (which are text); what goes to
/// the queue, the quarantine copy and the alert stays bytes.
fn text(address: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(address)
}

/// The rules in force: `filter.rules.active` (written by `posternctl cdb` after a
/// successful check), else `filter.rules`, else the shipped policy.
pub fn load_rules(control: &Control) -> Result<Vec<rules::Rule>> {
    for name in ["filter.rules.active", "filter.rules"] {
        if let Some(text) = control.read(name)? {
            return rules::parse(&text).map_err(|e| e.context("unable to use the filter rules"));
        }
    }
    rules::parse(rules::DEFAULT_RULES)
}

/// Whether the sender is on `control/goodmailfrom` (`addr` or `@domain`).
fn good_sender(control: &Control, sender: &str) -> Result<bool> {
    let sender = sender.to_ascii_lowercase();
    let domain = sender.rsplit_once('@').map(|(_, d)| format!("@{d}"));
    Ok(control.list("goodmailfrom")?.iter().any(|l| {
        let entry = l.text.to_ascii_lowercase();
        entry == sender || Some(&entry) == domain.as_ref()
    }))
}

/// The reply text for a refusal: `5.7.1 message refused: …` (RFC 3463 5.7.1: delivery
/// not authorized, message refused).
pub fn refusal_text(r: &Refusal) -> String {
    format!("5.7.1 message refused: {}", r.reply)
}

/// postern-scan's whole run. It ends in `exec` of postern-queue (whose exit code is
/// then ours) or in an error carrying a qmail-queue exit code, for
/// `postern_common::exit::run`.
pub fn run() -> Result<()> {
    // First, before any scanner runs: fd 6 becomes close-on-exec here.
    let mut reason_pipe = custom_error::take_pipe();
    let (message, envelope) = read_input()?;
    let home = postern_common::home::postern_home();
    let control = Control::for_home(&home);
    let client_ip = std::env::var("TCPREMOTEIP").unwrap_or_else(|_| "local".into());
    let sender = text(&envelope.sender);
    let log = |event: &str| {
        LogLine::event(event)
            .kv("ip", &client_ip)
            .kv("from", format!("<{sender}>"))
            .kv("rcpts", envelope.recipients.len())
    };

    let settings = (|| -> Result<_> {
        let rules = load_rules(&control)?;
        let engines = engines::parse(&control.list("scanners")?)?;
        let good = good_sender(&control, &sender)?;
        Ok((
            rules,
            engines,
            good,
            control.flag("allowpartial")?,
            control.flag("scanfailopen")?,
        ))
    })();
    let (rules, engines, good, allow_partial, fail_open) = match settings {
        Ok(s) => s,
        Err(e) => {
            log("scanerror").kv("error", &e.msg).emit();
            return Err(fatal(qq::CONFIG_ERROR, e.msg));
        }
    };

    // SPF, DKIM and DMARC for mail from outside (control/authchecks; scan/auth.rs).
    let message = crate::scan::auth::check(&control, message, &envelope.sender, &mut reason_pipe)?;

    // Content rules (skipped for goodmailfrom senders; the virus scan never is).
    let mut refusal = None;
    if !good {
        let analysis = mime::analyse(&message);
        let cx = policy::Context {
            envelope: &envelope,
            client_ip: &client_ip,
            allow_partial,
        };
        refusal = policy::check(&analysis, &rules, &cx);
    }
    let mut engine_names = Vec::new();
    if refusal.is_none() && !engines.is_empty() {
        // A named file (mode 0600, removed on drop) for command: scanners, made only
        // when there is one: clamd reads the message from its socket.
        let needs_file = engines
            .iter()
            .any(|e| matches!(e, engines::Engine::Command(_)));
        let file = needs_file
            .then(|| {
                tempfile::NamedTempFile::new()
                    .and_then(|mut f| f.write_all(&message).and(f.flush()).map(|_| f))
            })
            .transpose()
            .map_err(|e| {
                fatal(
                    qq::WRITE_ERROR,
                    format!("unable to write a temporary file: {e}"),
                )
            })?;
        // Only command: engines look at the path, and they have the file.
        let path = file.as_ref().map_or(std::path::Path::new(""), |f| f.path());
        for engine in engines.iter().filter(|e| !e.is_score()) {
            engine_names.push(engine.name());
            match engines::scan(engine, &message, path) {
                Ok(engines::Verdict::Clean) => {}
                Ok(engines::Verdict::Infected(sig)) => {
                    refusal = Some(Refusal {
                        reason: "virus".into(),
                        rule: format!("{}:{sig}", engine.name()),
                        reply: format!("virus found: {sig}"),
                        detail: sig,
                    });
                    break;
                }
                Err(why) => {
                    log("scanerror")
                        .kv("engine", engine.name())
                        .kv("error", &why)
                        .kv("failopen", fail_open)
                        .emit();
                    if !fail_open {
                        return Err(fatal(
                            qq::TEMP_REFUSED,
                            format!("virus scanner failed: {why}"),
                        ));
                    }
                }
            }
        }
    }

    // Spam scores, after the virus scan: a virus is refused whatever it scores.
    let spam = match refusal {
        Some(_) => spam::Outcome::default(),
        None => spam::check(
            &control, &engines, &message, &envelope, good, fail_open, &log,
        )?,
    };
    engine_names.extend(spam.engines.iter().cloned());
    match refusal.or(spam.refusal.clone()) {
        Some(r) => {
            refuse(&home, &control, &message, &envelope, &r, &client_ip)?;
            // Say what was refused, when the caller listens on fd 6.
            let record = custom_error::record(custom_error::Class::Permanent, &refusal_text(&r));
            match reason_pipe.map(|mut p| p.write_all(&record)) {
                Some(Ok(())) => Err(refused(qq::CUSTOM_ERROR)),
                _ => Err(refused(qq::REFUSED)),
            }
        }
        None => {
            let engines_text = if engine_names.is_empty() {
                "none".to_string()
            } else {
                engine_names.join(",")
            };
            log("scan")
                .kv("result", "clean")
                .kv("engines", &engines_text)
                .kv("goodmailfrom", good)
                .emit();
            Err(accept(
                &control,
                &spam.message(&message),
                &envelope,
                &engines_text,
            ))
        }
    }
}

/// Quarantine, alert, log. An error (temporary) when no copy could be kept: without a
/// copy we must not refuse for good.
fn refuse(
    home: &std::path::Path,
    control: &Control,
    message: &[u8],
    envelope: &Envelope,
    r: &Refusal,
    ip: &str,
) -> Result<()> {
    let copy = quarantine::store(home, message, envelope, r, ip).map_err(|e| {
        fatal(
            qq::WRITE_ERROR,
            format!("unable to store the quarantine copy: {e}"),
        )
    })?;
    LogLine::event("quarantine")
        .kv("ip", ip)
        .kv("from", format!("<{}>", text(&envelope.sender)))
        .kv("rcpts", envelope.recipients.len())
        .kv("reason", &r.reason)
        .kv("rule", &r.rule)
        .kv("detail", &r.detail)
        .kv("copy", copy.display())
        .emit();
    if !alert::mail_each(control) {
        // postern-ratelimit mails it from the log line above, in its digest.
        return Ok(());
    }
    let me = control
        .value_or("me", &postern_common::control::system_hostname())
        .unwrap_or_else(|_| "localhost".into());
    match alert::recipient(control) {
        Ok(to) => {
            let text = alert::compose(&me, &to, r, envelope, ip, &copy, message);
            if let Err(why) = alert::send(&to, &text) {
                LogLine::event("alertfail")
                    .kv("to", &to)
                    .kv("error", why)
                    .emit();
            }
        }
        Err(e) => LogLine::event("alertfail").kv("error", e.msg).emit(),
    }
    Ok(())
}

/// Hand the message to postern-queue (`exec`), with `X-Postern-Scanned:` first if
/// `control/scanheader` is set, and the envelope byte for byte as it came. Returns only
/// what went wrong.
fn accept(control: &Control, message: &[u8], envelope: &Envelope, engines: &str) -> Error {
    let header = match control.flag("scanheader") {
        Ok(true) => format!("X-Postern-Scanned: clean; engines={engines}\n"),
        Ok(false) => String::new(),
        Err(e) => return fatal(qq::CONFIG_ERROR, e.msg),
    };
    let program = client::postern_queue();
    let parts = [header.as_bytes(), message];
    match client::command_with_files(&program, &parts, envelope, queue_file) {
        Ok(mut cmd) => {
            let err = cmd.exec();
            fatal(
                qq::CANNOT_EXEC,
                format!("unable to run postern-queue: {err}"),
            )
        }
        Err(e) => fatal(
            qq::WRITE_ERROR,
            format!("unable to write a temporary file: {e}"),
        ),
    }
}

/// An unnamed file for postern-queue's fd 0 or fd 1: in memory (`memfd_create`), so no
/// inode is allocated and freed on the disk's file system for every message
/// (docs/performance.md). A kernel without memfd gets an unnamed temporary file.
fn queue_file() -> std::io::Result<std::fs::File> {
    use nix::sys::memfd::{memfd_create, MFdFlags};
    match memfd_create(c"postern-scan", MFdFlags::MFD_CLOEXEC) {
        Ok(fd) => Ok(std::fs::File::from(fd)),
        Err(_) => tempfile::tempfile(),
    }
}
