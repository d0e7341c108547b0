//! postern-scan's flow, in `$QMAILQUEUE` position: read the message (fd 0) and the
//! envelope (fd 1) as postern-queue would, decide, then either hand both to
//! postern-queue unchanged (`exec`, so its exit code is ours) or refuse — smtpd answers
//! 554 before the client ever got 250, so no bounce is needed — after keeping a copy in
//! quarantine and alerting the admin. The refusal says what was refused: when the caller
//! gave a pipe as fd 6 (postern-smtpd, notqmail), `D5.7.1 message refused: <the rule's
//! description>` goes there and the exit is 82 (qmail-queue's custom error); otherwise
//! exit 31, qmail's plain "permanently rejected". A scanner error is exit 71 (451)
//! unless `control/scanfailopen` says to let the mail through.

use crate::scan::envelope::{Envelope, EnvelopeError};
use crate::scan::quarantine::Refusal;
use crate::scan::{alert, engines, mime, policy, qq, quarantine, rules};
use postern_common::control::Control;
use postern_common::custom_error;
use postern_common::logline::LogLine;
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::process::CommandExt;

/// Largest message we scan; bigger ones are refused (smtpd's databytes is far below).
pub const MAX_MESSAGE: u64 = 256 * 1024 * 1024;
/// Largest envelope we read.
pub const MAX_ENVELOPE: u64 = 16 * 1024 * 1024;

fn fatal(code: i32, msg: impl std::fmt::Display) -> i32 {
    eprintln!("postern-scan: fatal: {msg}");
    code
}

/// Read fd 0 (message) and fd 1 (envelope).
fn read_input() -> Result<(Vec<u8>, Envelope), i32> {
    let mut message = Vec::new();
    let stdin = std::io::stdin();
    stdin
        .lock()
        .take(MAX_MESSAGE + 1)
        .read_to_end(&mut message)
        .map_err(|e| fatal(qq::READ_ERROR, format!("unable to read message: {e}")))?;
    if message.len() as u64 > MAX_MESSAGE {
        return Err(fatal(qq::PERM_REFUSE, "message too large to scan"));
    }
    // fd 1 is the envelope, opened for reading by our caller.
    let stdout = std::io::stdout();
    let fd = stdout
        .as_fd()
        .try_clone_to_owned()
        .map_err(|e| fatal(qq::READ_ERROR, format!("unable to read envelope: {e}")))?;
    let mut raw = Vec::new();
    std::fs::File::from(fd)
        .take(MAX_ENVELOPE)
        .read_to_end(&mut raw)
        .map_err(|e| fatal(qq::READ_ERROR, format!("unable to read envelope: {e}")))?;
    let envelope = Envelope::parse(&raw).map_err(|e| match e {
        EnvelopeError::Truncated => fatal(qq::READ_ERROR, "envelope ended early"),
        EnvelopeError::Format => fatal(qq::ENVELOPE_FORMAT, "envelope format error"),
        EnvelopeError::TooLong => fatal(qq::ADDRESS_TOO_LONG, "address too long"),
    })?;
    Ok((message, envelope))
}

/// The rules in force: `filter.rules.active` (written by `posternctl cdb` after a
/// successful check), else `filter.rules`, else the shipped policy.
pub fn load_rules(control: &Control) -> postern_common::Result<Vec<rules::Rule>> {
    for name in ["filter.rules.active", "filter.rules"] {
        if let Some(text) = control.read(name)? {
            return rules::parse(&text).map_err(|e| e.context("unable to use the filter rules"));
        }
    }
    rules::parse(rules::DEFAULT_RULES)
}

/// Whether the sender is on `control/goodmailfrom` (`addr` or `@domain`).
fn good_sender(control: &Control, sender: &str) -> postern_common::Result<bool> {
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

/// postern-scan's whole run; returns the exit code (a qmail-queue code).
pub fn run() -> i32 {
    // First, before any scanner runs: fd 6 becomes close-on-exec here.
    let reason_pipe = custom_error::take_pipe();
    let (message, envelope) = match read_input() {
        Ok(x) => x,
        Err(code) => return code,
    };
    let home = postern_common::home::postern_home();
    let control = Control::for_home(&home);
    let client_ip = std::env::var("TCPREMOTEIP").unwrap_or_else(|_| "local".into());
    let log = |event: &str| {
        LogLine::event(event)
            .kv("ip", &client_ip)
            .kv("from", format!("<{}>", envelope.sender))
            .kv("rcpts", envelope.recipients.len())
    };

    let settings = (|| -> postern_common::Result<_> {
        let rules = load_rules(&control)?;
        let engines = engines::parse(&control.list("scanners")?)?;
        let good = good_sender(&control, &envelope.sender)?;
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
            return fatal(qq::CONFIG_ERROR, e.msg);
        }
    };

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
        // A named file (mode 0600, removed on drop) for command: scanners.
        let file = match tempfile::NamedTempFile::new()
            .and_then(|mut f| f.write_all(&message).and(f.flush()).map(|_| f))
        {
            Ok(f) => f,
            Err(e) => {
                return fatal(
                    qq::WRITE_ERROR,
                    format!("unable to write a temporary file: {e}"),
                )
            }
        };
        for engine in &engines {
            engine_names.push(engine.name());
            match engines::scan(engine, &message, file.path()) {
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
                        return fatal(qq::TEMP_REFUSE, format!("virus scanner failed: {why}"));
                    }
                }
            }
        }
    }

    match refusal {
        Some(r) => {
            let code = refuse(&home, &control, &message, &envelope, &r, &client_ip);
            if code != qq::PERM_REFUSE {
                return code;
            }
            // Say what was refused, when the caller listens on fd 6.
            let record = custom_error::record(custom_error::Class::Permanent, &refusal_text(&r));
            match reason_pipe.map(|mut p| p.write_all(&record)) {
                Some(Ok(())) => custom_error::EXIT,
                _ => qq::PERM_REFUSE,
            }
        }
        None => {
            let engines_text = if engines.is_empty() {
                "none".to_string()
            } else {
                engine_names.join(",")
            };
            log("scan")
                .kv("result", "clean")
                .kv("engines", &engines_text)
                .kv("goodmailfrom", good)
                .emit();
            accept(&control, &message, &envelope, &engines_text)
        }
    }
}

/// Quarantine, alert, log; 31 when refused (or a temporary code when no copy could be
/// kept).
fn refuse(
    home: &std::path::Path,
    control: &Control,
    message: &[u8],
    envelope: &Envelope,
    r: &Refusal,
    ip: &str,
) -> i32 {
    let copy = match quarantine::store(home, message, envelope, r, ip) {
        Ok(p) => p,
        // Without a copy we must not refuse for good: try again later.
        Err(e) => {
            return fatal(
                qq::WRITE_ERROR,
                format!("unable to store the quarantine copy: {e}"),
            )
        }
    };
    LogLine::event("quarantine")
        .kv("ip", ip)
        .kv("from", format!("<{}>", envelope.sender))
        .kv("rcpts", envelope.recipients.len())
        .kv("reason", &r.reason)
        .kv("rule", &r.rule)
        .kv("detail", &r.detail)
        .kv("copy", copy.display())
        .emit();
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
    qq::PERM_REFUSE
}

/// Hand the message to postern-queue, with `X-Postern-Scanned:` first if
/// `control/scanheader` is set.
fn accept(control: &Control, message: &[u8], envelope: &Envelope, engines: &str) -> i32 {
    let header = match control.flag("scanheader") {
        Ok(true) => format!("X-Postern-Scanned: clean; engines={engines}\n"),
        Ok(false) => String::new(),
        Err(e) => return fatal(qq::CONFIG_ERROR, e.msg),
    };
    let file = match qq::temp_with(&[header.as_bytes(), message]) {
        Ok(f) => f,
        Err(e) => {
            return fatal(
                qq::WRITE_ERROR,
                format!("unable to write a temporary file: {e}"),
            )
        }
    };
    match qq::queue_command(file, envelope) {
        Ok(mut cmd) => {
            let err = cmd.exec();
            fatal(qq::NO_EXEC, format!("unable to run postern-queue: {err}"))
        }
        Err(e) => fatal(
            qq::WRITE_ERROR,
            format!("unable to write a temporary file: {e}"),
        ),
    }
}
