//! `posternctl quarantine list | show ID | release ID [--to ADDRESS] | delete ID |
//! expire DAYS`: working with the messages postern-scan refused and kept in
//! `quarantine/` (a Maildir: `new/`, and `cur/` once a mail client has looked).
//!
//! A copy is the refused message with `X-Postern-…` header lines in front
//! (docs/postern-scan.md): the decision, the envelope (one `-Envelope-To` per
//! recipient) and the client, values escaped as log values are (`\\`, `\xNN`). `release`
//! takes those lines off, adds one `X-Postern-Released:` line saying what was released
//! and why it had been held, and hands the message to postern-queue directly — not
//! through postern-scan again, or it would be refused again — for the original envelope
//! or the `--to` addresses. The copy is removed only once the queue has it.

use postern_common::atomic::fsync_dir;
use postern_common::logline::printable;
use postern_common::{Error, Result, ResultExt};
use postern_wire::qmail_queue::client;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// The header lines postern-scan puts in front of a copy.
const PREFIX: &str = "X-Postern-";
/// Most bytes of a copy read by `list` (the headers are at the top).
const LIST_READ: u64 = 64 * 1024;
/// Longest subject shown by `list`.
const SUBJECT_WIDTH: usize = 50;

/// One quarantined message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copy {
    /// Its Maildir name without the `:2,…` flags: the ID the commands take.
    pub id: String,
    pub path: PathBuf,
    pub size: u64,
    pub modified: SystemTime,
}

/// What the `X-Postern-` lines say, and where the message itself starts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Held {
    pub reason: String,
    pub detail: String,
    pub sender: Vec<u8>,
    pub recipients: Vec<Vec<u8>>,
    pub client_ip: String,
    /// Offset of the message after the `X-Postern-` lines.
    pub message_at: usize,
}

/// Undo `printable`'s escapes: `\\` and `\xNN`.
fn unescape(text: &str) -> Vec<u8> {
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && b.get(i + 1) == Some(&b'\\') {
            out.push(b'\\');
            i += 2;
        } else if b[i] == b'\\'
            && b.get(i + 1) == Some(&b'x')
            && i + 3 < b.len()
            && b[i + 2].is_ascii_hexdigit()
            && b[i + 3].is_ascii_hexdigit()
        {
            let hex = std::str::from_utf8(&b[i + 2..i + 4]).unwrap_or("3f");
            out.push(u8::from_str_radix(hex, 16).unwrap_or(b'?'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

/// An address from `<…>`.
fn address(value: &str) -> Vec<u8> {
    let v = value.trim();
    let v = v
        .strip_prefix('<')
        .and_then(|v| v.strip_suffix('>'))
        .unwrap_or(v);
    unescape(v)
}

/// Read the `X-Postern-` lines at the top of `bytes`.
pub fn parse(bytes: &[u8]) -> Held {
    let mut held = Held::default();
    let mut at = 0;
    while at < bytes.len() {
        let end = bytes[at..]
            .iter()
            .position(|&b| b == b'\n')
            .map(|p| at + p + 1)
            .unwrap_or(bytes.len());
        let line = String::from_utf8_lossy(&bytes[at..end]);
        let line = line.trim_end_matches(['\n', '\r']);
        let Some(rest) = line.strip_prefix(PREFIX) else {
            break;
        };
        let (name, value) = rest.split_once(':').unwrap_or((rest, ""));
        let value = value.trim();
        match name {
            "Quarantine" => held.reason = value.to_string(),
            "Quarantine-Detail" => held.detail = value.to_string(),
            "Envelope-From" => held.sender = address(value),
            "Envelope-To" => held.recipients.push(address(value)),
            "Client-IP" => held.client_ip = value.to_string(),
            _ => {}
        }
        at = end;
    }
    held.message_at = at;
    held
}

/// Every copy in `quarantine/new` and `quarantine/cur`, oldest first.
pub fn copies(home: &Path) -> Result<Vec<Copy>> {
    let mut all = Vec::new();
    for sub in ["new", "cur"] {
        let dir = home.join("quarantine").join(sub);
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io(format!("unable to read {}", dir.display()), &e)),
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            let Ok(meta) = entry.metadata() else { continue };
            if !meta.is_file() {
                continue;
            }
            all.push(Copy {
                id: name.split(':').next().unwrap_or(&name).to_string(),
                path: entry.path(),
                size: meta.len(),
                modified: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            });
        }
    }
    all.sort_by(|a, b| (a.modified, &a.id).cmp(&(b.modified, &b.id)));
    Ok(all)
}

/// The copy named `id`: its whole ID, or a prefix of one ID only.
pub fn find(home: &Path, id: &str) -> Result<Copy> {
    if id.is_empty() || id.contains('/') {
        return Err(Error::usage(format!(
            "not a quarantine ID: {}",
            printable(id)
        )));
    }
    let all = copies(home)?;
    if let Some(c) = all.iter().find(|c| c.id == id) {
        return Ok(c.clone());
    }
    let matches: Vec<&Copy> = all.iter().filter(|c| c.id.starts_with(id)).collect();
    match matches.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(Error::perm(format!(
            "no quarantined message {} (see posternctl quarantine list)",
            printable(id)
        ))),
        _ => Err(Error::perm(format!(
            "{} matches {} messages: give more of the ID",
            printable(id),
            matches.len()
        ))),
    }
}

fn read_head(path: &Path, limit: u64) -> Result<Vec<u8>> {
    let f = fs::File::open(path).temp(format!("unable to read {}", path.display()))?;
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut std::io::Read::take(f, limit), &mut bytes)
        .temp(format!("unable to read {}", path.display()))?;
    Ok(bytes)
}

/// The message's `Subject:` (first line only), cleaned for a terminal.
fn subject(message: &[u8]) -> String {
    for line in message.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        if line.len() > 8 && line[..8].eq_ignore_ascii_case(b"subject:") {
            let text = printable(String::from_utf8_lossy(&line[8..]).trim().as_bytes());
            return text.chars().take(SUBJECT_WIDTH).collect();
        }
    }
    String::new()
}

fn age(modified: SystemTime, now: SystemTime) -> String {
    let s = now
        .duration_since(modified)
        .unwrap_or(Duration::ZERO)
        .as_secs();
    match s {
        0..=5999 => format!("{}m", s / 60),
        6000..=172_799 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

/// `list`: one line per copy, oldest first, then a summary.
pub fn list(home: &Path, out: &mut impl Write) -> Result<()> {
    let all = copies(home)?;
    let now = SystemTime::now();
    let w = |e: std::io::Error| Error::io("unable to write", &e);
    for c in &all {
        let head = read_head(&c.path, LIST_READ)?;
        let held = parse(&head);
        let rcpt = match held.recipients.as_slice() {
            [] => "-".to_string(),
            [one] => format!("<{}>", printable(one)),
            [first, rest @ ..] => format!("<{}>+{}", printable(first), rest.len()),
        };
        let reason = held
            .reason
            .split_whitespace()
            .next()
            .and_then(|r| r.strip_prefix("reason="))
            .unwrap_or("?")
            .to_string();
        writeln!(
            out,
            "{}  {:>4}  {:<10}  <{}>  {}  {}",
            c.id,
            age(c.modified, now),
            reason,
            printable(&held.sender),
            rcpt,
            subject(&head[held.message_at.min(head.len())..])
        )
        .map_err(w)?;
    }
    let bytes: u64 = all.iter().map(|c| c.size).sum();
    match all.first() {
        None => writeln!(out, "quarantine: empty").map_err(w)?,
        Some(oldest) => writeln!(
            out,
            "quarantine: {} message{}, {} bytes, oldest {}",
            all.len(),
            if all.len() == 1 { "" } else { "s" },
            bytes,
            age(oldest.modified, now)
        )
        .map_err(w)?,
    }
    Ok(())
}

/// `show`: the header section of the copy (postern-scan's lines and the message's own),
/// then the body's size; with `raw`, the whole copy as it is.
pub fn show(home: &Path, id: &str, raw: bool, out: &mut impl Write) -> Result<()> {
    let c = find(home, id)?;
    let bytes = fs::read(&c.path).temp(format!("unable to read {}", c.path.display()))?;
    let w = |e: std::io::Error| Error::io("unable to write", &e);
    if raw {
        return out.write_all(&bytes).map_err(w);
    }
    let body_at = bytes
        .windows(2)
        .position(|w| w == b"\n\n")
        .map(|p| p + 2)
        .or_else(|| {
            bytes
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .map(|p| p + 4)
        })
        .unwrap_or(bytes.len());
    for line in bytes[..body_at].split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        // Printable for the terminal: an escape sequence in a header stays inert.
        writeln!(out, "{}", printable(line)).map_err(w)?;
    }
    writeln!(
        out,
        "\n(body: {} bytes; `posternctl quarantine show --raw {}` prints the whole copy)",
        bytes.len() - body_at,
        c.id
    )
    .map_err(w)
}

/// `release`: queue the message again, without postern-scan's lines, for the original
/// recipients or `to`. Returns how many recipients it was queued for.
pub fn release(home: &Path, id: &str, to: &[String], queue: &Path) -> Result<usize> {
    let c = find(home, id)?;
    let bytes = fs::read(&c.path).temp(format!("unable to read {}", c.path.display()))?;
    let held = parse(&bytes);
    let recipients: Vec<Vec<u8>> = if to.is_empty() {
        held.recipients.clone()
    } else {
        for a in to {
            if !a.contains('@') || a.bytes().any(|b| b <= b' ' || b == b'<' || b == b'>') {
                return Err(Error::usage(format!(
                    "--to needs an address: {}",
                    printable(a)
                )));
            }
        }
        to.iter().map(|a| a.as_bytes().to_vec()).collect()
    };
    if recipients.is_empty() {
        return Err(Error::perm(format!(
            "{}: the copy names no recipient; give --to ADDRESS",
            c.id
        )));
    }
    let stamp = chrono::Utc::now().format("%a, %d %b %Y %H:%M:%S +0000");
    let mut note = format!("X-Postern-Released: {stamp} by posternctl");
    if !held.reason.is_empty() {
        note.push_str(&format!("; held for {}", held.reason));
    }
    note.push('\n');
    let message = &bytes[held.message_at..];
    client::inject(queue, &held.sender, &recipients, |sink| {
        sink.write_all(note.as_bytes())
            .and_then(|_| sink.write_all(message))
            .map_err(|e| Error::io("unable to write the message", &e))
    })
    .map_err(|f| f.into_error().context(format!("{}: not released", c.id)))?;
    fs::remove_file(&c.path).temp(format!(
        "{}: queued, but unable to remove {}",
        c.id,
        c.path.display()
    ))?;
    if let Some(dir) = c.path.parent() {
        let _ = fsync_dir(dir);
    }
    Ok(recipients.len())
}

/// What `posternctl quarantine` can be asked.
#[derive(clap::Subcommand, Debug)]
pub enum Action {
    /// One line per quarantined message, oldest first: ID, age, reason, sender,
    /// recipients, subject.
    List,
    /// The headers of a quarantined message (--raw: the whole copy).
    Show {
        id: String,
        #[arg(long)]
        raw: bool,
    },
    /// Queue a quarantined message again (not scanned again), for its original
    /// recipients or the --to addresses, and remove it from the quarantine.
    Release {
        id: String,
        /// Deliver to this address instead (may be given more than once).
        #[arg(long = "to", value_name = "ADDRESS")]
        to: Vec<String>,
    },
    /// Remove a quarantined message.
    Delete { id: String },
    /// Remove the quarantined messages older than DAYS days.
    Expire { days: u64 },
}

/// `posternctl quarantine ACTION`.
pub fn run(home: &Path, action: Action) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match action {
        Action::List => list(home, &mut out),
        Action::Show { id, raw } => show(home, &id, raw, &mut out),
        Action::Release { id, to } => {
            // postern-queue finds the instance through POSTERN_HOME.
            std::env::set_var("POSTERN_HOME", home);
            let queue = postern_common::sibling::program("postern-queue");
            let c = find(home, &id)?;
            let n = release(home, &c.id, &to, &queue)?;
            println!(
                "posternctl: released {}: queued for {n} recipient{}",
                c.id,
                if n == 1 { "" } else { "s" }
            );
            Ok(())
        }
        Action::Delete { id } => {
            let id = delete(home, &id)?;
            println!("posternctl: deleted {id}");
            Ok(())
        }
        Action::Expire { days } => {
            let (removed, kept) = expire(home, days, SystemTime::now())?;
            println!("posternctl: expired {removed} quarantined message{} older than {days} days; {kept} kept", if removed == 1 { "" } else { "s" });
            Ok(())
        }
    }
}

/// `delete`.
pub fn delete(home: &Path, id: &str) -> Result<String> {
    let c = find(home, id)?;
    fs::remove_file(&c.path).temp(format!("unable to remove {}", c.path.display()))?;
    if let Some(dir) = c.path.parent() {
        let _ = fsync_dir(dir);
    }
    Ok(c.id)
}

/// `expire`: remove the copies older than `days`; returns (removed, kept).
pub fn expire(home: &Path, days: u64, now: SystemTime) -> Result<(usize, usize)> {
    let limit = Duration::from_secs(days.saturating_mul(86_400));
    let mut removed = 0;
    let mut kept = 0;
    for c in copies(home)? {
        if now.duration_since(c.modified).unwrap_or(Duration::ZERO) >= limit {
            fs::remove_file(&c.path).temp(format!("unable to remove {}", c.path.display()))?;
            removed += 1;
        } else {
            kept += 1;
        }
    }
    for sub in ["new", "cur"] {
        let _ = fsync_dir(&home.join("quarantine").join(sub));
    }
    Ok((removed, kept))
}

#[cfg(test)]
mod tests {
    use super::*;

    const COPY: &[u8] = b"X-Postern-Quarantine: reason=attachment rule=.exe (filter.rules:19)\n\
X-Postern-Quarantine-Detail: Executable File (.exe)\n\
X-Postern-Envelope-From: <bad@outside.test>\n\
X-Postern-Envelope-To: <a@example.test>\n\
X-Postern-Envelope-To: <caf\\xc3\\xa9\\\\x@example.test>\n\
X-Postern-Client-IP: 192.0.2.9\n\
From: bad@outside.test\n\
Subject: invoice \x1b[31mred\n\
\n\
body\n";

    #[test]
    fn the_copy_headers_are_read_back_byte_for_byte() {
        let held = parse(COPY);
        assert_eq!(held.reason, "reason=attachment rule=.exe (filter.rules:19)");
        assert_eq!(held.sender, b"bad@outside.test");
        assert_eq!(
            held.recipients,
            vec![
                b"a@example.test".to_vec(),
                "café\\x@example.test".as_bytes().to_vec()
            ]
        );
        assert_eq!(held.client_ip, "192.0.2.9");
        assert!(COPY[held.message_at..].starts_with(b"From: bad@outside.test\n"));
        assert_eq!(subject(&COPY[held.message_at..]), "invoice \\x1b[31mred");
        // A message without the lines starts at 0.
        assert_eq!(parse(b"From: x\n\nhi\n").message_at, 0);
    }

    fn home_with(copies: &[(&str, &str, &[u8], u64)]) -> tempfile::TempDir {
        let home = tempfile::tempdir().unwrap();
        for sub in ["new", "cur", "tmp"] {
            fs::create_dir_all(home.path().join("quarantine").join(sub)).unwrap();
        }
        let now = SystemTime::now();
        for (sub, name, bytes, age_days) in copies {
            let path = home.path().join("quarantine").join(sub).join(name);
            fs::write(&path, bytes).unwrap();
            let f = fs::File::options().write(true).open(&path).unwrap();
            f.set_modified(now - Duration::from_secs(age_days * 86_400))
                .unwrap();
        }
        home
    }

    #[test]
    fn list_find_delete_and_expire() {
        let home = home_with(&[
            ("new", "1700000000.M1P2Q0.host", COPY, 10),
            ("cur", "1700000001.M1P2Q1.host:2,S", COPY, 1),
            ("new", "1700000002.M1P2Q2.host", b"From: x\n\nno lines\n", 0),
        ]);
        let mut out = Vec::new();
        list(home.path(), &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(lines[0].starts_with("1700000000.M1P2Q0.host   10d  attachment  <bad@outside.test>  <a@example.test>+1  invoice"), "{text}");
        assert!(lines[1].starts_with("1700000001.M1P2Q1.host"), "{text}");
        assert!(lines[3].starts_with("quarantine: 3 messages, "), "{text}");
        assert!(lines[3].ends_with("oldest 10d"), "{text}");

        assert_eq!(
            find(home.path(), "1700000001").unwrap().id,
            "1700000001.M1P2Q1.host"
        );
        assert!(find(home.path(), "17000000")
            .unwrap_err()
            .msg
            .contains("matches 3"));
        assert!(find(home.path(), "nope").is_err());
        assert_eq!(
            find(home.path(), "../x").unwrap_err().kind,
            postern_common::Kind::Usage
        );

        let mut out = Vec::new();
        show(home.path(), "1700000000", false, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("X-Postern-Envelope-To: <a@example.test>"),
            "{text}"
        );
        assert!(
            text.contains("Subject: invoice \\x1b[31mred"),
            "no raw escape: {text}"
        );
        assert!(text.contains("(body: 5 bytes;"), "{text}");

        assert_eq!(
            delete(home.path(), "1700000002").unwrap(),
            "1700000002.M1P2Q2.host"
        );
        let (removed, kept) = expire(home.path(), 5, SystemTime::now()).unwrap();
        assert_eq!((removed, kept), (1, 1));
        let mut out = Vec::new();
        list(home.path(), &mut out).unwrap();
        assert!(String::from_utf8(out)
            .unwrap()
            .contains("quarantine: 1 message, "));
    }

    #[test]
    fn release_queues_the_message_without_the_lines_and_removes_the_copy() {
        let home = home_with(&[("new", "1700000000.M1P2Q0.host", COPY, 1)]);
        // A queue program that keeps what it is given.
        let bin = home.path().join("bin");
        fs::create_dir_all(&bin).unwrap();
        let out = home.path().join("queued");
        let script = format!(
            "#!/bin/sh\ncat > {0}.msg\ncat <&1 > {0}.env\n",
            out.display()
        );
        let queue = bin.join("postern-queue");
        fs::write(&queue, script).unwrap();
        fs::set_permissions(&queue, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let n = release(home.path(), "1700000000", &[], &queue).unwrap();
        assert_eq!(n, 2);
        let msg = fs::read_to_string(out.with_extension("msg")).unwrap();
        assert!(msg.starts_with("X-Postern-Released: "), "{msg}");
        assert!(
            msg.contains("by posternctl; held for reason=attachment rule=.exe"),
            "{msg}"
        );
        assert!(!msg.contains("X-Postern-Envelope"), "{msg}");
        assert!(msg.ends_with("From: bad@outside.test\nSubject: invoice \x1b[31mred\n\nbody\n"));
        let env = fs::read(out.with_extension("env")).unwrap();
        assert_eq!(
            env,
            [
                &b"Fbad@outside.test\0Ta@example.test\0T"[..],
                "café\\x@example.test".as_bytes(),
                b"\0\0"
            ]
            .concat()
        );
        assert!(copies(home.path()).unwrap().is_empty(), "the copy is gone");

        // --to, and a queue program that refuses: the copy stays.
        let home = home_with(&[("new", "1700000000.M1P2Q0.host", COPY, 1)]);
        fs::write(&queue, "#!/bin/sh\ncat >/dev/null\nexit 31\n").unwrap();
        let err = release(home.path(), "1700", &["admin@example.test".into()], &queue).unwrap_err();
        assert!(
            err.msg.starts_with("1700000000.M1P2Q0.host: not released"),
            "{}",
            err.msg
        );
        assert_eq!(copies(home.path()).unwrap().len(), 1);
        assert!(release(home.path(), "1700", &["not an address".into()], &queue).is_err());
    }
}
