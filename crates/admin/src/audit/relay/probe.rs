//! The live relay probe: where smtpd listens (`--smtp` or `service/smtpd/run`), the
//! loopback address the probe comes from, and the SMTP dialogue — greeting, EHLO, MAIL,
//! the unlikely recipient, the relay tricks at RCPT, QUIT; never DATA. Replies are read
//! by the one strict SMTP reply reader, [`postern_wire::smtp_reply`].

use crate::audit::gives_relay;
use postern_common::control::Control;
use postern_wire::smtp_reply::{self, Reply};
use std::io::{self, BufRead, BufReader, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::Duration;

/// Longest wait to connect to smtpd.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for one reply (smtpd may pause after unknown recipients).
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(30);
/// The domain the tricks try to relay to (RFC 2606: never a real destination).
pub const FOREIGN: &str = "relaytest.example.net";
/// The local part used in every probe address.
pub const PROBE_LOCAL: &str = "postern-audit";
/// The name the probe gives in EHLO (`posternctl report` knows the probe by it).
pub const PROBE_HELO: &str = "audit.example.net";
/// The classic relay tricks: a name, and the RCPT address with `{H}` for a hosted domain.
pub const TRICKS: &[(&str, &str)] = &[
    ("foreign domain", "<postern-audit@relaytest.example.net>"),
    ("percent hack", "<postern-audit%relaytest.example.net@{H}>"),
    ("bang path", "<relaytest.example.net!postern-audit@{H}>"),
    (
        "quoted local part with @",
        "<\"postern-audit@relaytest.example.net\"@{H}>",
    ),
    ("source route", "<@{H}:postern-audit@relaytest.example.net>"),
    ("double @", "<postern-audit@relaytest.example.net@{H}>"),
    ("IP literal", "<postern-audit@[192.0.2.25]>"),
];

/// What the probe saw.
#[derive(Debug, Clone, Default)]
pub struct Transcript {
    pub greeting: Option<Reply>,
    pub ehlo: Option<Reply>,
    /// (trick name, RCPT address, reply or None when the session ended first).
    pub tricks: Vec<(String, String, Option<Reply>)>,
    /// The unlikely recipient at a hosted domain and its reply.
    pub unknown: Option<(String, Option<Reply>)>,
    /// Why the session ended early, if it did.
    pub trouble: Option<String>,
}

/// The probe: where, from where, and what happened.
#[derive(Debug, Clone, Default)]
pub struct Session {
    /// The smtpd address; `None` when none was found.
    pub target: Option<SocketAddr>,
    /// How the address was found (`--smtp`, `service/smtpd/run`).
    pub found_in: String,
    /// The rules file smtpd checks clients against (e.g. `tcp.smtp`).
    pub rules: String,
    /// The source address used.
    pub source: Option<IpAddr>,
    /// The rule key that gives the probe's source address RELAYCLIENT (`""` for the
    /// default rule), when no loopback address is free of it.
    pub source_relays: Option<String>,
    /// Could not connect: why.
    pub connect_error: Option<String>,
    pub transcript: Option<Transcript>,
}

/// Where smtpd listens, from `service/smtpd/run`: (address, rules file name).
pub fn from_run_script(home: &Path) -> Option<(SocketAddr, Option<String>)> {
    let text = std::fs::read_to_string(home.join("service/smtpd/run")).ok()?;
    parse_run_script(&text)
}

/// Find the tcpserver command in a run script and take its host, port and `-x` file.
pub fn parse_run_script(text: &str) -> Option<(SocketAddr, Option<String>)> {
    let joined = text.replace("\\\n", " ");
    for line in joined.lines() {
        let words: Vec<String> = line
            .split_whitespace()
            .map(|w| w.trim_matches(|c| c == '"' || c == '\'').to_string())
            .collect();
        let Some(at) = words.iter().position(|w| w.ends_with("tcpserver")) else {
            continue;
        };
        if let Some(found) = tcpserver_args(&words[at + 1..]) {
            return Some(found);
        }
    }
    None
}

/// tcpserver's options: flags, and the letters that take an argument.
const TCPSERVER_FLAGS: &str = "1UXpPhHrRoOdDqQv";
const TCPSERVER_ARGS: &str = "cCxBMgublt";

fn tcpserver_args(words: &[String]) -> Option<(SocketAddr, Option<String>)> {
    let mut rules = None;
    let mut i = 0;
    while i < words.len() {
        let w = &words[i];
        if w.starts_with('$') && !w.contains(char::is_whitespace) {
            // A variable holding more options (the run scripts' `$drop`, `-u`/`-g`).
            i += 1;
            continue;
        }
        let Some(letters) = w.strip_prefix('-').filter(|l| !l.is_empty()) else {
            break;
        };
        i += 1;
        for (n, c) in letters.char_indices() {
            if TCPSERVER_FLAGS.contains(c) {
                continue;
            }
            if !TCPSERVER_ARGS.contains(c) {
                return None;
            }
            let rest = &letters[n + c.len_utf8()..];
            let value = if rest.is_empty() {
                i += 1;
                words.get(i - 1)?.clone()
            } else {
                rest.to_string()
            };
            if c == 'x' {
                rules = Path::new(&value)
                    .file_name()
                    .map(|n| n.to_string_lossy().trim_end_matches(".cdb").to_string());
            }
            break;
        }
    }
    let host = words.get(i)?;
    let port: u16 = match words.get(i + 1)?.as_str() {
        "smtp" => 25,
        p => p.parse().ok()?,
    };
    let ip: IpAddr = match host.as_str() {
        "0" | "" | "0.0.0.0" | "::" => IpAddr::V4(Ipv4Addr::LOCALHOST),
        h => h.parse().ok()?,
    };
    Some((SocketAddr::new(ip, port), rules))
}

/// The loopback addresses the probe may come from, in the order tried: 127.0.0.200 and
/// up first, because DNS blocklists list 127.0.0.2 (and a few low ones) as test entries,
/// so with rblsmtpd in the chain a probe from there would be turned away before smtpd.
fn probe_sources() -> impl Iterator<Item = IpAddr> {
    (200..=254u8)
        .chain(3..200)
        .chain(2..3)
        .map(|last| IpAddr::V4(Ipv4Addr::new(127, 0, 0, last)))
}

/// The first probe source the rules neither deny nor let relay; when every one relays,
/// the first, with the rule key that lets it relay.
fn choose_source(control: &Control, rules: &str) -> (IpAddr, Option<String>) {
    let first = probe_sources()
        .next()
        .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let Some(reader) = crate::audit::rules(control, rules) else {
        return (first, None);
    };
    for ip in probe_sources() {
        match crate::audit::decide(&reader, ip) {
            Some(d) if !d.deny && !gives_relay(&d) => return (ip, None),
            _ => {}
        }
    }
    let relays = crate::audit::decide(&reader, first)
        .filter(gives_relay)
        .map(|d| d.rule_name());
    (first, relays)
}

/// Run the probe (nothing when no smtpd address is known).
pub fn probe(home: &Path, control: &Control, smtp: Option<SocketAddr>) -> Session {
    let mut s = Session {
        rules: "tcp.smtp".to_string(),
        ..Session::default()
    };
    match smtp {
        Some(addr) => {
            s.target = Some(addr);
            s.found_in = "--smtp".to_string();
        }
        None => {
            if let Some((addr, rules)) = from_run_script(home) {
                s.target = Some(addr);
                s.found_in = "service/smtpd/run".to_string();
                if let Some(r) = rules {
                    s.rules = r;
                }
            }
        }
    }
    let Some(target) = s.target else { return s };
    let stream = if target.ip().is_loopback() && target.is_ipv4() {
        let (source, relays) = choose_source(control, &s.rules);
        s.source = Some(source);
        s.source_relays = relays;
        connect_from(source, target)
    } else {
        TcpStream::connect_timeout(&target, CONNECT_TIMEOUT).map_err(|e| e.to_string())
    };
    let stream = match stream {
        Ok(st) => st,
        Err(e) => {
            s.connect_error = Some(e);
            return s;
        }
    };
    if let Ok(local) = stream.local_addr() {
        s.source = Some(local.ip());
    }
    let hosted = crate::audit::recipients::hosted_for_tricks(control);
    let unknown = crate::audit::recipients::probe_domain(home, control)
        .map(|d| format!("<{PROBE_LOCAL}-{}@{d}>", unlikely_suffix()));
    s.transcript = Some(dialogue(stream, &hosted, unknown));
    s
}

/// A socket bound to `source`, connected to `target`.
fn connect_from(source: IpAddr, target: SocketAddr) -> Result<TcpStream, String> {
    use nix::sys::socket::{bind, connect, socket, AddressFamily, SockFlag, SockType, SockaddrIn};
    let (IpAddr::V4(src), SocketAddr::V4(dst)) = (source, target) else {
        return Err("IPv4 only".to_string());
    };
    let fd = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|e| format!("socket: {}", e.desc()))?;
    bind(
        fd.as_raw_fd(),
        &SockaddrIn::from(std::net::SocketAddrV4::new(src, 0)),
    )
    .map_err(|e| format!("unable to bind {src}: {}", e.desc()))?;
    // Loopback: the connect is answered at once (accepted or refused).
    connect(fd.as_raw_fd(), &SockaddrIn::from(dst))
        .map_err(|e| format!("unable to connect to {dst}: {}", e.desc().to_lowercase()))?;
    Ok(TcpStream::from(fd))
}

/// A suffix no admin would give a mailbox.
fn unlikely_suffix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{:x}{:x}", nanos & 0xffff_ffff, std::process::id())
}

/// The SMTP dialogue: greeting, EHLO, MAIL, the unlikely recipient, the tricks, QUIT.
fn dialogue(stream: TcpStream, hosted: &str, unknown: Option<String>) -> Transcript {
    let mut t = Transcript::default();
    let _ = stream.set_read_timeout(Some(REPLY_TIMEOUT));
    let _ = stream.set_write_timeout(Some(REPLY_TIMEOUT));
    let Ok(mut writer) = stream.try_clone() else {
        t.trouble = Some("unable to use the socket".to_string());
        return t;
    };
    let mut reader = BufReader::new(stream);
    t.greeting = match read_reply(&mut reader) {
        Ok(r) => Some(r),
        Err(e) => {
            t.trouble = Some(format!("no greeting: {e}"));
            return t;
        }
    };
    if t.greeting.as_ref().map(|g| g.code) != Some(220) {
        t.trouble = Some(format!(
            "greeting was {}",
            t.greeting.as_ref().map(|g| g.first()).unwrap_or_default()
        ));
        return t;
    }
    let mut say = |cmd: &str| -> Result<Reply, String> {
        writer
            .write_all(format!("{cmd}\r\n").as_bytes())
            .map_err(|e| format!("write: {e}"))?;
        read_reply(&mut reader)
    };
    let steps: Result<(), String> = (|| {
        let ehlo = say(&format!("EHLO {PROBE_HELO}"))?;
        t.ehlo = Some(ehlo.clone());
        if ehlo.code != 250 {
            return Err(format!("EHLO got {}", ehlo.first()));
        }
        let mail = say(&format!("MAIL FROM:<{PROBE_LOCAL}@{FOREIGN}>"))?;
        if mail.code != 250 {
            return Err(format!("MAIL got {}", mail.first()));
        }
        if let Some(rcpt) = &unknown {
            t.unknown = Some((rcpt.clone(), None));
            let r = say(&format!("RCPT TO:{rcpt}"))?;
            t.unknown = Some((rcpt.clone(), Some(r)));
        }
        for (name, template) in TRICKS {
            let rcpt = template.replace("{H}", hosted);
            t.tricks.push((name.to_string(), rcpt.clone(), None));
            let r = say(&format!("RCPT TO:{rcpt}"))?;
            let closing = r.code == 421;
            if let Some(last) = t.tricks.last_mut() {
                last.2 = Some(r);
            }
            if closing {
                return Err("smtpd closed the session (421)".to_string());
            }
        }
        Ok(())
    })();
    if let Err(e) = steps {
        t.trouble = Some(e);
    }
    let _ = say("QUIT");
    t
}

/// Read one (possibly multi-line) reply; the error says why there is none.
pub fn read_reply(r: &mut impl BufRead) -> Result<Reply, String> {
    smtp_reply::read(r).map_err(|e| match smtp_reply::malformed(&e) {
        Some(why) => format!("not an SMTP reply: {why}"),
        None if e.kind() == io::ErrorKind::UnexpectedEof => "connection closed".to_string(),
        None => format!("read: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_port_comes_from_the_tcpserver_line() {
        let script = "#!/bin/sh\nexec \"$bin/postern-softlimit\" -m 64000000 \\\n  \
            \"$bin/postern-tcpserver\" -v -R -H -l \"$me\" -c 40 -C 10 \\\n    \
            -x \"$POSTERN_HOME/control/tcp.smtp.cdb\" -u 998 -g 997 0 2525 \\\n  \
            \"$bin/postern-tlsd\" \\\n  \"$bin/postern-smtpd\" x true\n";
        let (addr, rules) = parse_run_script(script).unwrap();
        assert_eq!(addr, "127.0.0.1:2525".parse().unwrap());
        assert_eq!(rules.as_deref(), Some("tcp.smtp"));
        let (addr, rules) =
            parse_run_script("tcpserver -vRHl0 -xrules.cdb 192.0.2.1 smtp qmail-smtpd\n").unwrap();
        assert_eq!(addr, "192.0.2.1:25".parse().unwrap());
        assert_eq!(rules.as_deref(), Some("rules"));
        assert!(parse_run_script("exec postern-send\n").is_none());
        // The shipped run scripts, as init renders them.
        let values = crate::templates::Values {
            home: "/var/postern".into(),
            domain: "example.test".into(),
            listen: "0".into(),
            smtp_port: 25,
            submission_port: 587,
            pop3_port: 110,
            submissions_port: 465,
            pop3s_port: 995,
            net_account: "postern-net".into(),
            log_runas: String::new(),
            send_runas: String::new(),
            ratelimit_runas: String::new(),
        };
        for (service, port, cdb) in [
            ("smtpd", 25, "tcp.smtp"),
            ("submission", 587, "tcp.submission"),
            ("submissions", 465, "tcp.submission"),
            ("pop3s", 995, "tcp.pop3"),
        ] {
            let t = crate::templates::SERVICES
                .iter()
                .chain(crate::templates::SUBMISSIONS)
                .chain(crate::templates::POP3S)
                .find(|t| t.path == format!("service/{service}/run"))
                .unwrap();
            let (addr, rules) = parse_run_script(&crate::templates::render(t.contents, &values))
                .unwrap_or_else(|| panic!("{service}: no tcpserver line found"));
            assert_eq!(addr, SocketAddr::from(([127, 0, 0, 1], port)), "{service}");
            assert_eq!(rules.as_deref(), Some(cdb), "{service}");
        }
        assert!(parse_run_script("tcpserver -Z 0 25 x\n").is_none());
    }

    #[test]
    fn replies_are_read_whole() {
        let mut input: &[u8] = b"250-mx.test\r\n250-PIPELINING\r\n250 SIZE 100\r\n220 next\r\n";
        let r = read_reply(&mut input).unwrap();
        assert_eq!(r.code, 250);
        assert_eq!(r.lines, vec!["mx.test", "PIPELINING", "SIZE 100"]);
        assert_eq!(read_reply(&mut input).unwrap().first(), "220 next");
        assert!(read_reply(&mut input).is_err());
        let mut bad: &[u8] = b"hello\r\n";
        assert!(read_reply(&mut bad).is_err());
    }
}
