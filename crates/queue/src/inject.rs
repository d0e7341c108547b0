//! postern-inject: the sendmail-compatible way for cron jobs and scripts to send mail
//! (docs/postern-inject.md). Reads a message on stdin, adds `Date:`, `Message-ID:` and
//! `From:` when missing, drops `Bcc:`, and hands it to the queue program with the
//! qmail-queue protocol ([`postern_wire::qmail_queue::inject`]). Called as `sendmail` (a
//! symlink), it is the same program under that name. `-bs` runs a minimal SMTP dialogue
//! ([`crate::inject_smtp`]).

use crate::header::{self, CrlfToLf, Header};
use postern_common::control::{system_hostname, Control};
use postern_common::getopt;
use postern_common::{Error, Result};
use postern_wire::qmail_queue::{client, MessageSink};
use postern_wire::queue_file::MAX_ADDRESS;
use std::ffi::OsString;
use std::io::{BufRead, Write};
use std::os::unix::ffi::OsStrExt;

/// One-line usage, under the name the program was called by.
pub fn usage(prog: &str) -> String {
    format!("{prog} [-t] [-i] [-f sender] [-F name] [-oX] [--] [recipient ...] | {prog} -bs")
}
/// getopt letters: ours and the harmless sendmail ones we accept and ignore.
const SPEC: &str = "tivnUf:r:F:o:b:B:N:R:V:h:O:L:";
/// Header fields whose addresses `-t` reads.
const RECIPIENT_FIELDS: &[&str] = &["To", "Cc", "Bcc"];
/// Header fields never passed on.
const DROPPED_FIELDS: &[&str] = &["Bcc", "Resent-Bcc"];

/// What the command line asked for.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Options {
    /// `-t`: recipients from To/Cc/Bcc, added to those on the command line.
    pub from_header: bool,
    /// `-f ADDR` / `-r ADDR`: the envelope sender (`<>` or empty = the null sender).
    pub sender: Option<String>,
    /// `-F NAME`: the full name for an added `From:`.
    pub full_name: Option<String>,
    pub recipients: Vec<String>,
    /// `-bs`: speak SMTP on stdin/stdout ([`crate::inject_smtp`]).
    pub smtp: bool,
}

/// The program name to use in messages: `sendmail` when called by that name.
pub fn program_name() -> &'static str {
    let argv0 = std::env::args_os().next().unwrap_or_default();
    if argv0.as_bytes().ends_with(b"sendmail") {
        "sendmail"
    } else {
        "postern-inject"
    }
}

/// Parse the command line (without the program name).
pub fn parse_args(prog: &str, args: &[OsString]) -> Result<Options> {
    let (opts, operands) = getopt::parse(args, SPEC, &usage(prog))?;
    let mut o = Options::default();
    for opt in opts {
        match opt.letter {
            't' => o.from_header = true,
            'f' | 'r' => o.sender = Some(opt.text()?.to_string()),
            'F' => o.full_name = Some(opt.text()?.to_string()),
            'b' => match opt.text()? {
                "m" => {}
                "s" => o.smtp = true,
                "p" => return Err(Error::usage("-bp: use postern-qread to list the queue")),
                other => {
                    return Err(Error::usage(format!(
                        "-b{other} is not supported; {}",
                        usage(prog)
                    )))
                }
            },
            // -i/-oi (dots are never special here), -v, -n, -U, -oX, -B, -N, -R, -V, -h,
            // -O, -L: accepted for compatibility, no effect.
            _ => {}
        }
    }
    for op in operands {
        let text = op
            .to_str()
            .ok_or_else(|| Error::usage("a recipient is not valid UTF-8"))?;
        o.recipients.push(text.to_string());
    }
    if !o.from_header && !o.smtp && o.recipients.is_empty() {
        return Err(Error::usage(format!(
            "no recipients (give them, or use -t); {}",
            usage(prog)
        )));
    }
    Ok(o)
}

/// The local user's name: `$LOGNAME`, `$USER`, else the password database.
pub(crate) fn local_user() -> String {
    for var in ["LOGNAME", "USER"] {
        if let Some(v) = std::env::var(var)
            .ok()
            .filter(|v| !v.is_empty() && !v.contains(['@', '\n', '\r', '\0']))
        {
            return v;
        }
    }
    let uid = nix::unistd::getuid().as_raw();
    postern_common::privilege::account_of(uid)
        .map(|a| a.name)
        .unwrap_or_else(|| format!("uid{uid}"))
}

/// Check an address for the envelope and add `@host` when it has no `@`.
pub(crate) fn qualify(addr: &str, host: &str) -> Result<Vec<u8>> {
    let addr = addr.trim();
    let addr = addr
        .strip_prefix('<')
        .and_then(|a| a.strip_suffix('>'))
        .unwrap_or(addr);
    if addr.bytes().any(|b| matches!(b, 0 | b'\r' | b'\n')) {
        return Err(Error::perm(format!(
            "bad address: {}",
            postern_common::logline::printable(addr.as_bytes())
        )));
    }
    let full = if addr.is_empty() || addr.contains('@') {
        addr.to_string()
    } else {
        format!("{addr}@{host}")
    };
    if full.len() > MAX_ADDRESS {
        return Err(Error::perm(format!(
            "address longer than {MAX_ADDRESS} bytes"
        )));
    }
    Ok(full.into_bytes())
}

/// A display name made safe for a header: no line breaks, quoted.
fn quoted_name(name: &str) -> String {
    let clean: String = name.chars().filter(|c| !c.is_control()).collect();
    format!("\"{}\"", clean.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The fields postern-inject adds when they are missing.
pub fn added_fields(
    h: &Header,
    opts: &Options,
    sender: &[u8],
    host: &str,
    now: std::time::SystemTime,
) -> Vec<u8> {
    let mut out = Vec::new();
    if !h.has("From") {
        let addr = String::from_utf8_lossy(sender);
        let addr = if addr.is_empty() {
            format!("{}@{host}", local_user())
        } else {
            addr.into_owned()
        };
        match &opts.full_name {
            Some(name) => out.extend(format!("From: {} <{addr}>\n", quoted_name(name)).bytes()),
            None => out.extend(format!("From: {addr}\n").bytes()),
        }
    }
    if !h.has("Date") {
        let date = chrono::DateTime::<chrono::Local>::from(now).to_rfc2822();
        out.extend(format!("Date: {date}\n").bytes());
    }
    if !h.has("Message-ID") {
        let id = crate::layout::Id::generate();
        out.extend(format!("Message-ID: <{id}@{host}>\n").bytes());
    }
    out
}

/// The program.
pub fn main() -> Result<()> {
    let opts = parse_args(program_name(), &getopt::args())?;
    let host = Control::from_env()
        .value("me")?
        .unwrap_or_else(system_hostname);
    let sender = match &opts.sender {
        Some(s) => qualify(s, &host)?,
        None => format!("{}@{host}", local_user()).into_bytes(),
    };
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    if opts.smtp {
        let stdout = std::io::stdout();
        let session = crate::inject_smtp::Session {
            host: &host,
            opts: &opts,
            default_sender: &sender,
        };
        return session.run(
            &mut input,
            &mut stdout.lock(),
            &client::queue_program().into_os_string(),
        );
    }
    let h = header::read(&mut input)?;
    let mut recipients = Vec::new();
    for r in &opts.recipients {
        recipients.push(qualify(r, &host)?);
    }
    if opts.from_header {
        for r in header::addresses(&h, RECIPIENT_FIELDS)? {
            recipients.push(qualify(&r, &host)?);
        }
    }
    if recipients.is_empty() {
        return Err(Error::perm("no recipients"));
    }
    let added = added_fields(&h, &opts, &sender, &host, std::time::SystemTime::now());
    let program = client::queue_program();
    client::inject(&program, &sender, &recipients, |sink| {
        write_message(sink, &h, &added, &mut input)
    })
    .map_err(|f| f.into_error())
}

/// The message as it goes to the queue: the kept fields, the added ones, a blank line,
/// the body with CRLF turned into LF.
pub(crate) fn write_message(
    sink: &mut MessageSink,
    h: &Header,
    added: &[u8],
    input: &mut impl BufRead,
) -> Result<()> {
    let mut head = Vec::new();
    for f in h
        .fields
        .iter()
        .filter(|f| !DROPPED_FIELDS.iter().any(|d| f.is(d)))
    {
        head.extend_from_slice(&f.raw);
    }
    head.extend_from_slice(added);
    head.push(b'\n');
    head.extend_from_slice(&h.body_start);
    let _ = sink.write_all(&head);
    if h.ended {
        return Ok(());
    }
    let mut conv = CrlfToLf::default();
    let mut buf = vec![0u8; 64 * 1024];
    let mut out = Vec::with_capacity(buf.len());
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::io("unable to read the message", &e)),
        };
        out.clear();
        conv.feed(&buf[..n], &mut out);
        let _ = sink.write_all(&out);
    }
    out.clear();
    conv.finish(&mut out);
    let _ = sink.write_all(&out);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<OsString> {
        s.split_whitespace().map(OsString::from).collect()
    }

    #[test]
    fn sendmail_options() {
        let o = parse_args(
            "sendmail",
            &args("-t -i -oi -oem -odb -f bob@x.test -F Bob"),
        )
        .unwrap();
        assert!(o.from_header);
        assert_eq!(o.sender.as_deref(), Some("bob@x.test"));
        assert_eq!(o.full_name.as_deref(), Some("Bob"));
        let o = parse_args("sendmail", &args("-fbob -- a@x.test b")).unwrap();
        assert_eq!(o.recipients, ["a@x.test", "b"]);
        assert!(parse_args("sendmail", &args("-bs")).unwrap().smtp);
        for bad in ["", "-bp", "-bi", "-q", "-f"] {
            assert_eq!(
                parse_args("sendmail", &args(bad)).unwrap_err().kind,
                postern_common::Kind::Usage,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn addresses_are_checked_and_qualified() {
        assert_eq!(qualify("<a@b>", "h").unwrap(), b"a@b");
        assert_eq!(qualify("root", "h.test").unwrap(), b"root@h.test");
        assert_eq!(qualify("<>", "h").unwrap(), b"");
        assert!(qualify("a\nb@c", "h").is_err());
        assert!(qualify(&"a".repeat(MAX_ADDRESS + 1), "h").is_err());
    }

    #[test]
    fn names_cannot_break_the_header() {
        assert_eq!(
            quoted_name("Bob \"B\"\r\nBcc: x"),
            "\"Bob \\\"B\\\"Bcc: x\""
        );
        let h = Header::default();
        let o = Options {
            full_name: Some("A\nB".into()),
            ..Options::default()
        };
        let added = String::from_utf8(added_fields(
            &h,
            &o,
            b"a@b",
            "h",
            std::time::SystemTime::now(),
        ))
        .unwrap();
        assert!(added.starts_with("From: \"AB\" <a@b>\nDate: "), "{added}");
        assert_eq!(added.lines().count(), 3);
    }
}
