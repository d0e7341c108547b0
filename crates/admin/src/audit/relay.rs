//! Not an open relay: the live probe and the rules behind it.
//!
//! The probe connects to the instance's own smtpd **as an outside client** and tries the
//! classic relay tricks at RCPT (a foreign domain, the `%` hack, a bang path, a quoted
//! local part with `@`, a source route, a double `@`, an IP literal), then QUITs — it
//! never sends DATA, so no message can ever leave. A relay trick is refused when RCPT
//! gets a 5xx; a 2xx is an open relay.
//!
//! From loopback, the default `tcp.smtp` gives `127.0.0.1` `RELAYCLIENT`, so a probe
//! from there would test nothing. The probe binds its socket to another loopback address
//! (Linux routes all of 127/8 to `lo`) that the rules neither deny nor let relay,
//! trying 127.0.0.200 … 254 first (blocklists list 127.0.0.2 as their test entry, and
//! rblsmtpd would turn that one away). The address used is reported. When the rules let
//! every loopback address relay through a default rule, the relayed tricks show the open
//! relay; through a narrower rule (`127.`), the probe says it could not test as an
//! outsider. The rules item reads `tcp.smtp` itself for rules that hand `RELAYCLIENT` to
//! everyone (FAIL), to wide public ranges or by PTR name (WARN).
//!
//! The same session gives the banner check its greeting and EHLO answer, and the
//! recipient check its answer for an unlikely local part.

use super::{gives_relay, Finding};
use postern_common::control::Control;
use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::Duration;

/// Longest wait to connect to smtpd.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for one reply (smtpd may pause after unknown recipients).
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest reply line kept.
pub const MAX_REPLY_LINE: usize = 1000;
/// Most lines in one reply.
pub const MAX_REPLY_LINES: usize = 100;
/// The domain the tricks try to relay to (RFC 2606: never a real destination).
pub const FOREIGN: &str = "relaytest.example.net";
/// The local part used in every probe address.
pub const PROBE_LOCAL: &str = "postern-audit";
/// The name the probe gives in EHLO (`posternctl report` knows the probe by it).
pub const PROBE_HELO: &str = "audit.example.net";
/// The item names.
pub const ITEM_PROBE: &str = "open relay";
pub const ITEM_RULES: &str = "relay rules";

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

/// One SMTP reply: its code and its lines' text (after the code).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub lines: Vec<String>,
}

impl Reply {
    pub fn first(&self) -> String {
        format!(
            "{} {}",
            self.code,
            self.lines.first().map(|s| s.as_str()).unwrap_or("")
        )
    }
}

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
    let Some(reader) = super::rules(control, rules) else {
        return (first, None);
    };
    for ip in probe_sources() {
        match super::decide(&reader, ip) {
            Some(d) if !d.deny && !gives_relay(&d) => return (ip, None),
            _ => {}
        }
    }
    let relays = super::decide(&reader, first)
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
    let hosted = super::recipients::hosted_for_tricks(control);
    let unknown = super::recipients::probe_domain(home, control)
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

/// Read one (possibly multi-line) reply.
pub fn read_reply(r: &mut impl BufRead) -> Result<Reply, String> {
    let mut lines = Vec::new();
    loop {
        let mut buf = Vec::new();
        let n = std::io::Read::take(&mut *r, MAX_REPLY_LINE as u64)
            .read_until(b'\n', &mut buf)
            .map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err("connection closed".to_string());
        }
        let text = String::from_utf8_lossy(&buf);
        let text = text.trim_end_matches(['\r', '\n']);
        let code: u16 = text.get(..3).and_then(|c| c.parse().ok()).ok_or_else(|| {
            format!(
                "not an SMTP reply: {}",
                postern_common::logline::printable(text)
            )
        })?;
        lines.push(text.get(4..).unwrap_or("").to_string());
        if text.as_bytes().get(3) != Some(&b'-') {
            return Ok(Reply { code, lines });
        }
        if lines.len() >= MAX_REPLY_LINES {
            return Err("reply too long".to_string());
        }
    }
}

/// The probe item and the rules item.
pub fn findings(control: &Control, s: &Session) -> Vec<Finding> {
    vec![probe_finding(s), rules_finding(control, s)]
}

fn probe_finding(s: &Session) -> Finding {
    let fix_start = "start the smtpd service, or name it: posternctl audit --smtp IP:PORT";
    let Some(target) = s.target else {
        return Finding::warn(
            ITEM_PROBE,
            "not probed: no service/smtpd/run with a tcpserver line, and no --smtp",
            fix_start,
        );
    };
    let from = s
        .source
        .map(|ip| format!("from {ip} to {target}"))
        .unwrap_or_else(|| format!("to {target}"));
    if let Some(e) = &s.connect_error {
        return Finding::warn(
            ITEM_PROBE,
            format!("not probed: connecting {from} failed: {e}"),
            fix_start,
        );
    }
    let Some(t) = &s.transcript else {
        return Finding::warn(ITEM_PROBE, "not probed", fix_start);
    };
    if let Some(key) = s
        .source_relays
        .as_deref()
        .filter(|k| breadth(k) != Breadth::Everyone)
    {
        return Finding::warn(
            ITEM_PROBE,
            format!(
                "not a test from outside: rule {key} of control/{} gives every loopback probe \
                 address RELAYCLIENT ({from})",
                s.rules
            ),
            "leave one loopback address without RELAYCLIENT (127.0.0.1:allow,RELAYCLIENT=\"\" \
             rather than 127.), or probe from another host with --smtp",
        );
    }
    let accepted: Vec<String> = t
        .tricks
        .iter()
        .filter(|(_, _, r)| r.as_ref().map(|r| r.code / 100 == 2).unwrap_or(false))
        .map(|(name, rcpt, _)| format!("{name} RCPT TO:{rcpt}"))
        .collect();
    if !accepted.is_empty() {
        return Finding::fail(
            ITEM_PROBE,
            format!(
                "OPEN RELAY: accepted {} ({from}, outside client)",
                super::list(&accepted)
            ),
            format!(
                "give RELAYCLIENT only to your own networks in control/{} and run posternctl \
                 cdb; list only your domains in control/rcpthosts",
                s.rules
            ),
        );
    }
    let refused = t
        .tricks
        .iter()
        .filter(|(_, _, r)| r.as_ref().map(|r| r.code / 100 == 5).unwrap_or(false))
        .count();
    if refused == TRICKS.len() {
        return Finding::pass(
            ITEM_PROBE,
            format!("all {refused} relay tricks refused with 5xx at RCPT ({from})"),
        );
    }
    let why = t.trouble.clone().unwrap_or_else(|| {
        let other: Vec<String> = t
            .tricks
            .iter()
            .filter_map(|(n, _, r)| {
                r.as_ref()
                    .filter(|r| r.code / 100 != 5)
                    .map(|r| format!("{n}: {}", r.first()))
            })
            .collect();
        format!("not refused outright: {}", super::list(&other))
    });
    Finding::warn(
        ITEM_PROBE,
        format!(
            "only {refused} of {} relay tricks answered 5xx ({from}): {why}",
            TRICKS.len()
        ),
        "make sure the probe address reaches smtpd itself (tcp.smtp, rblsmtpd), then audit again",
    )
}

/// How much of the address space a rule key covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Breadth {
    /// Every client (the default rule, `=`, a /0).
    Everyone,
    /// A large public range.
    Wide,
    /// Chosen by the client's PTR name, which whoever owns the address controls.
    Name,
    Narrow,
}

/// Classify a rule key.
pub fn breadth(key: &str) -> Breadth {
    if key.is_empty() || key == "=" {
        return Breadth::Everyone;
    }
    if key.contains('@') {
        return Breadth::Narrow; // IDENT rules never match postern-tcpserver clients
    }
    if key.starts_with('=') {
        return Breadth::Name;
    }
    if let Some((net, len)) = key.split_once('/') {
        let (Ok(ip), Ok(len)) = (net.parse::<IpAddr>(), len.parse::<u8>()) else {
            return Breadth::Narrow;
        };
        let private = match ip {
            IpAddr::V4(v4) => v4.is_private() || v4.is_loopback(),
            IpAddr::V6(v6) => v6.is_loopback() || (v6.segments()[0] & 0xfe00) == 0xfc00,
        };
        let (everyone, wide) = if ip.is_ipv4() { (8, 16) } else { (16, 48) };
        return if len < everyone {
            Breadth::Everyone
        } else if len < wide && !private {
            Breadth::Wide
        } else {
            Breadth::Narrow
        };
    }
    if key.ends_with('.') && key.matches('.').count() == 1 {
        return match key {
            "10." | "127." => Breadth::Narrow,
            _ => Breadth::Wide,
        };
    }
    if key.ends_with(':') && key.matches(':').count() <= 2 {
        return Breadth::Wide;
    }
    Breadth::Narrow
}

fn rules_finding(control: &Control, s: &Session) -> Finding {
    let name = &s.rules;
    let Ok(source) = std::fs::read(control.path(name)) else {
        return Finding::pass(
            ITEM_RULES,
            format!("control/{name} not present: nobody gets RELAYCLIENT"),
        );
    };
    let (mut everyone, mut wide, mut names, mut narrow) = (vec![], vec![], vec![], vec![]);
    for (i, line) in source.split(|&b| b == b'\n').enumerate() {
        let Ok(Some(rule)) = postern_ucspi::rules::parse_line(line) else {
            continue;
        };
        for key in rule.keys {
            let d = postern_ucspi::rules::lookup::decode(key.clone(), &rule.value);
            if !gives_relay(&d) {
                continue;
            }
            let k = String::from_utf8_lossy(&key).into_owned();
            let shown = format!(
                "{} (line {})",
                if k.is_empty() {
                    "the default rule".to_string()
                } else {
                    k.clone()
                },
                i + 1
            );
            match breadth(&k) {
                Breadth::Everyone => everyone.push(shown),
                Breadth::Wide => wide.push(shown),
                Breadth::Name => names.push(shown),
                Breadth::Narrow => narrow.push(k),
            }
        }
    }
    let fix = format!(
        "set RELAYCLIENT only on rules for your own addresses in control/{name}, then posternctl cdb"
    );
    if !everyone.is_empty() {
        return Finding::fail(
            ITEM_RULES,
            format!(
                "RELAYCLIENT for everyone: {} — an open relay by the rules",
                super::list(&everyone)
            ),
            fix,
        );
    }
    if !wide.is_empty() || !names.is_empty() {
        let mut what = Vec::new();
        if !wide.is_empty() {
            what.push(format!("wide public ranges: {}", super::list(&wide)));
        }
        if !names.is_empty() {
            what.push(format!(
                "by PTR name, which the address owner controls: {}",
                super::list(&names)
            ));
        }
        return Finding::warn(
            ITEM_RULES,
            format!("RELAYCLIENT for {}", what.join("; ")),
            fix,
        );
    }
    if narrow.is_empty() {
        Finding::pass(
            ITEM_RULES,
            format!("control/{name}: no rule sets RELAYCLIENT"),
        )
    } else {
        Finding::pass(
            ITEM_RULES,
            format!(
                "control/{name}: RELAYCLIENT only for {}",
                super::list(&narrow)
            ),
        )
    }
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

    #[test]
    fn rule_keys_are_classified() {
        assert_eq!(breadth(""), Breadth::Everyone);
        assert_eq!(breadth("="), Breadth::Everyone);
        assert_eq!(breadth("0.0.0.0/0"), Breadth::Everyone);
        assert_eq!(breadth("::/0"), Breadth::Everyone);
        assert_eq!(breadth("=.example.org"), Breadth::Name);
        assert_eq!(breadth("64.0.0.0/10"), Breadth::Wide);
        assert_eq!(breadth("10.0.0.0/8"), Breadth::Narrow);
        assert_eq!(breadth("192.168.0.0/16"), Breadth::Narrow);
        assert_eq!(breadth("203.0.113.0/24"), Breadth::Narrow);
        assert_eq!(breadth("62."), Breadth::Wide);
        assert_eq!(breadth("127."), Breadth::Narrow);
        assert_eq!(breadth("127.0.0.1"), Breadth::Narrow);
        assert_eq!(breadth("2001:"), Breadth::Wide);
        assert_eq!(breadth("2001:db8::/32"), Breadth::Wide);
        assert_eq!(breadth("fd12:3456::/32"), Breadth::Narrow);
        assert_eq!(breadth("fd00::/8"), Breadth::Everyone);
    }
}

#[cfg(test)]
mod probe_tests {
    use super::*;

    fn relayed(source_relays: Option<&str>) -> Finding {
        let ok = Reply {
            code: 250,
            lines: vec!["2.1.5 ok".into()],
        };
        let s = Session {
            target: Some("127.0.0.1:25".parse().unwrap()),
            source: Some("127.0.0.200".parse().unwrap()),
            source_relays: source_relays.map(String::from),
            transcript: Some(Transcript {
                tricks: vec![("foreign domain".into(), "<a@b.test>".into(), Some(ok))],
                ..Transcript::default()
            }),
            rules: "tcp.smtp".into(),
            ..Session::default()
        };
        probe_finding(&s)
    }

    #[test]
    fn an_accepted_trick_is_an_open_relay_unless_loopback_may_relay() {
        assert_eq!(relayed(None).status, super::super::Status::Fail);
        assert_eq!(relayed(Some("")).status, super::super::Status::Fail);
        let narrow = relayed(Some("127."));
        assert_eq!(narrow.status, super::super::Status::Warn);
        assert!(
            narrow.detail.contains("not a test from outside: rule 127."),
            "{}",
            narrow.detail
        );
    }
}
