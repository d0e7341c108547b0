//! One alert mail per refused message to `control/alertto` (default `postmaster@` the
//! first domain in `rcpthosts`, else `postmaster@` `me`): what was refused and why, the
//! envelope, the client, the message's headers and where the copy is. Sent with an empty
//! envelope sender so that a failed alert can never bounce back into a loop.

use crate::scan::quarantine::Refusal;
use postern_common::control::Control;
use postern_common::logline::printable;
use postern_common::Result;
use postern_wire::qmail_queue::{client, Envelope};
use std::path::Path;

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
