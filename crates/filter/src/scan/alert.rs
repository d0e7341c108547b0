//! Telling the admin about a refused message, at `control/alertto` (default
//! `postmaster@` the first domain in `rcpthosts`, else `postmaster@` `me`).
//!
//! A refusal in an SMTP session is logged (`event=quarantine`, in the smtpd or
//! submission log), and postern-ratelimit, which follows those logs, mails it in its
//! alert digest: at most one mail per `alertinterval` (`control/ratelimit`, default 300
//! seconds), listing every event — a spam or virus storm is one mail, not thousands.
//! postern-scan mails each refusal itself, at once, when `alertinterval` is 0 or when it
//! was not started by an SMTP session (no `TCPREMOTEIP`: postern-inject's mail, whose
//! log postern-ratelimit does not read): what was refused and why, the envelope, the
//! client, the message's headers and where the copy is. Alerts go out with an empty
//! envelope sender so that a failed alert can never bounce back into a loop.

use crate::scan::quarantine::Refusal;
use postern_common::control::Control;
use postern_common::logline::printable;
use postern_common::Result;
use postern_wire::qmail_queue::{client, Envelope};
use std::path::Path;

/// Whether postern-scan mails this refusal itself (see the module's text); a
/// `control/ratelimit` that cannot be read means yes, so no refusal goes untold.
pub fn mail_each(control: &Control) -> bool {
    if std::env::var_os("TCPREMOTEIP").is_none_or(|ip| ip.is_empty()) {
        return true;
    }
    match crate::ratelimit::policy::Settings::load(control) {
        Ok(s) => s.alertinterval == 0,
        Err(_) => true,
    }
}

/// Who gets alerts.
pub fn recipient(control: &Control) -> Result<String> {
    if let Some(to) = control.value("alertto")? {
        return Ok(to);
    }
    let domain = match control
        .list("rcpthosts")?
        .into_iter()
        .find(|l| !l.text.starts_with('.'))
    {
        Some(l) => l.text,
        None => control.value_or("me", &postern_common::control::system_hostname())?,
    };
    Ok(format!("postmaster@{domain}"))
}

/// The header block of `message` (up to the first empty line), at most 32 KiB.
fn headers_of(message: &[u8]) -> String {
    let end = message
        .windows(2)
        .position(|w| w == b"\n\n")
        .or_else(|| message.windows(4).position(|w| w == b"\r\n\r\n"))
        .unwrap_or(message.len())
        .min(32 * 1024);
    String::from_utf8_lossy(&message[..end]).replace('\r', "")
}

/// The alert message text.
pub fn compose(
    me: &str,
    to: &str,
    refusal: &Refusal,
    envelope: &Envelope,
    client_ip: &str,
    copy: &Path,
    message: &[u8],
) -> String {
    let date = chrono::Local::now().to_rfc2822();
    let id = format!(
        "<{}.{}.scan@{me}>",
        chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0),
        std::process::id()
    );
    let rcpts: Vec<String> = envelope
        .recipients
        .iter()
        .map(|r| format!("<{}>", printable(r)))
        .collect();
    format!(
        "From: postern-scan <MAILER-DAEMON@{me}>\nTo: <{to}>\nSubject: [postern] message quarantined: {reason}\nDate: {date}\nMessage-ID: {id}\nAuto-Submitted: auto-generated\nContent-Type: text/plain; charset=utf-8\n\n\
postern-scan on {me} refused a message before it was accepted (the client got 554),\n\
and kept a copy.\n\n\
Reason:     {reason}\nRule:       {rule}\nDetail:     {detail}\nClient IP:  {ip}\nSender:     <{sender}>\nRecipients: {rcpts}\nCopy:       {copy}\n\n\
Release it by re-injecting the copy (see docs/postern-scan.md).\n\n\
--- Headers of the refused message:\n\n{headers}\n",
        reason = printable(&refusal.reason),
        rule = printable(&refusal.rule),
        detail = printable(&refusal.detail),
        ip = printable(client_ip),
        sender = printable(&envelope.sender),
        rcpts = rcpts.join(", "),
        copy = copy.display(),
        headers = headers_of(message),
    )
}

/// Queue the alert through postern-queue (message and envelope in temporary files).
/// Failure is reported to the caller, who logs it: the refusal stands.
pub fn send(to: &str, text: &str) -> std::result::Result<(), String> {
    let envelope = Envelope::new(b"", &[to]);
    let status = client::command_with_files(
        &client::postern_queue(),
        &[text.as_bytes()],
        &envelope,
        tempfile::tempfile,
    )
    .and_then(|mut c| c.status())
    .map_err(|e| e.to_string())?;
    match status.code() {
        Some(0) => Ok(()),
        other => Err(format!("postern-queue exited {other:?}")),
    }
}
