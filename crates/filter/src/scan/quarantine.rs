//! Keeping a copy of a refused message: `$POSTERN_HOME/quarantine/` is a Maildir, so an
//! admin reads it with any mail client. The copy starts with `X-Postern-…` headers that
//! record the decision, the envelope and the client — values cleaned of control bytes so
//! nothing in them can forge a header (an address byte that is not printable ASCII shows
//! as `\xNN`). Written tmp → fsync → link into new → fsync dir.

use postern_common::atomic::fsync_dir;
use postern_common::logline::printable;
use postern_wire::qmail_queue::Envelope;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Why a message was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Short class for logs and reports: `attachment`, `header`, `virus`, `mime`, `partial`.
    pub reason: String,
    /// What matched: the rule's pattern and line, or `ENGINE:SIGNATURE`.
    pub rule: String,
    /// One line for humans (the rule's description, the signature).
    pub detail: String,
    /// What the sending client is told after `message refused: `: the rule's description
    /// from `filter.rules`, a fixed phrase or the virus's name — never a name or text taken
    /// from the message (smtpd's reply is cleaned again: printable ASCII, bounded).
    pub reply: String,
}

/// One header line's value: CR and LF become spaces, other unprintable bytes `\xNN`.
fn header_value(value: impl AsRef<[u8]>) -> String {
    let one_line: Vec<u8> = value
        .as_ref()
        .iter()
        .map(|&b| if b == b'\r' || b == b'\n' { b' ' } else { b })
        .collect();
    printable(one_line)
}

/// A Maildir unique name: `SECONDS.MMICROSECONDS.PPID.QCOUNT.HOST`.
fn unique_name() -> String {
    static COUNT: AtomicU32 = AtomicU32::new(0);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let host = postern_common::control::system_hostname()
        .replace('/', "\\057")
        .replace(':', "\\072");
    format!(
        "{}.M{}P{}Q{}.{}",
        now.as_secs(),
        now.subsec_micros(),
        std::process::id(),
        COUNT.fetch_add(1, Ordering::Relaxed),
        host
    )
}

/// Store the copy; returns its path relative to the instance (`quarantine/new/NAME`).
pub fn store(
    home: &Path,
    message: &[u8],
    envelope: &Envelope,
    refusal: &Refusal,
    client_ip: &str,
) -> std::io::Result<PathBuf> {
    let dir = home.join("quarantine");
    let name = unique_name();
    let tmp = dir.join("tmp").join(&name);
    let new = dir.join("new").join(&name);
    let mut head = String::new();
    head.push_str(&format!(
        "X-Postern-Quarantine: reason={} rule={}\n",
        header_value(&refusal.reason),
        header_value(&refusal.rule)
    ));
    head.push_str(&format!(
        "X-Postern-Quarantine-Detail: {}\n",
        header_value(&refusal.detail)
    ));
    head.push_str(&format!(
        "X-Postern-Envelope-From: <{}>\n",
        header_value(&envelope.sender)
    ));
    for r in &envelope.recipients {
        head.push_str(&format!("X-Postern-Envelope-To: <{}>\n", header_value(r)));
    }
    head.push_str(&format!(
        "X-Postern-Client-IP: {}\n",
        header_value(client_ip)
    ));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(head.as_bytes())?;
        f.write_all(message)?;
        f.sync_all()?;
        drop(f);
        fs::hard_link(&tmp, &new)?;
        fsync_dir(&dir.join("new"))?;
        fs::remove_file(&tmp)
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(PathBuf::from("quarantine/new").join(name))
}
