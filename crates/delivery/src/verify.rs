//! postern-verify: ask the next hop whether a recipient exists (docs/postern-verify.md).
//! `postern-verify ADDRESS` prints one line, `RESULT CACHED TEXT` — `pass|fail|tempfail`,
//! `yes|no`, the next hop's reply or why there was none — and exits 0.
//!
//! postern-smtpd runs it for a recipient of a `control/verifyrecipients` domain whose
//! answer is not in the cache ([`postern_mailstore::verifycache`]); it runs as the
//! network account, reads `control/` and talks SMTP to the domain's route only:
//! `EHLO`, `MAIL FROM:<>`, `RCPT TO:<ADDRESS>`, `RSET`, `QUIT` — never `DATA`. The route
//! and its addresses come from postern-remote's code ([`remote::route`], [`remote::dns`],
//! [`remote::drop_self`]), replies are read by the strict reader postern-remote uses
//! ([`postern_wire::smtp_reply`]), and the route's TLS policy is honoured as
//! postern-remote honours it ([`remote::tls`]):
//! a route that requires TLS is probed inside TLS or not at all. A route with `auth=` is
//! never probed (the credentials are postern-remote's alone): its recipients get
//! `tempfail`. One probe, connections and replies included, has `verifytimeout` seconds.

use crate::remote::smtp::Conn;
use crate::remote::{self, dns, route, tls, Target};
use postern_common::control::Control;
use postern_common::{getopt, Error, Result};
use postern_mailstore::verify::Settings;
use postern_mailstore::verifycache::{self, Cache, Outcome};
use postern_wire::smtp_reply::{self as reply, Reply};
use std::io::{self, BufRead, BufReader, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

pub const PROG: &str = "postern-verify";
const USAGE: &str = "postern-verify address";
/// Longest address probed (a 64-byte local part, `@`, a 255-byte domain).
pub const MAX_ADDRESS: usize = 320;
/// Beyond `verifytimeout`, how long the process may live at all (a DNS lookup has its
/// own deadlines): then it exits 111 (`sys::exit_on_alarm`).
const GRACE: u64 = 10;

/// The address as smtpd queues it: `local@domain`, printable ASCII, no `<`, `>`; a bad
/// one is a usage error.
pub fn check_address(addr: &str) -> Result<&str> {
    let bad = || Error::usage(format!("{USAGE}: not an address"));
    let (local, domain) = addr.rsplit_once('@').ok_or_else(bad)?;
    if local.is_empty()
        || addr.len() > MAX_ADDRESS
        || local.starts_with('-')
        || !addr
            .bytes()
            .all(|b| (0x20..0x7f).contains(&b) && b != b'<' && b != b'>')
        || postern_mailstore::address::domain(domain).is_err()
    {
        return Err(bad());
    }
    Ok(addr)
}

/// postern-verify's main.
pub fn main() -> Result<()> {
    let (_, args) = getopt::parse(&getopt::args(), "", USAGE)?;
    let [addr] = args.as_slice() else {
        return Err(Error::usage(USAGE));
    };
    let addr = check_address(addr.to_str().ok_or_else(|| Error::usage(USAGE))?)?;
    let home = postern_common::home::postern_home();
    let control = Control::for_home(&home);
    let settings = Settings::load(&control)?;
    postern_common::sys::exit_on_alarm((settings.timeout.as_secs() + GRACE) as u32, 111)
        .map_err(|e| Error::io("unable to set an alarm", &e))?;
    // In a system install scripts/install makes run/verify (the network account's);
    // a single-user instance gets it here.
    Cache::prepare(&home, None)?;
    let cache = Cache::for_home(&home);
    let answer = verifycache::verify(&cache, addr, &settings, |left| probe(&control, addr, left))?;
    let mut out = io::stdout().lock();
    writeln!(
        out,
        "{} {} {}",
        answer.outcome.as_str(),
        if answer.cached { "yes" } else { "no" },
        answer.text
    )
    .and_then(|_| out.flush())
    .map_err(|e| Error::io("unable to write the answer", &e))
}

/// Probe `addr` at its domain's route within `left`: what the next hop said to its RCPT,
/// or why nothing could be learnt (a temporary result).
pub fn probe(control: &Control, addr: &str, left: Duration) -> (Outcome, String) {
    let deadline = Instant::now() + left;
    let temp = |text: String| (Outcome::TempFail, text);
    let domain = addr
        .rsplit_once('@')
        .map(|(_, d)| d.trim_end_matches('.').to_ascii_lowercase())
        .unwrap_or_default();
    let routes = match control
        .list("smtproutes")
        .and_then(|lines| route::parse(&lines))
    {
        Ok(r) => r,
        Err(e) => return temp(e.msg),
    };
    let (route, options) = route::lookup(&routes, &domain);
    if let Some(name) = &options.auth {
        return temp(format!(
            "the route of {domain} authenticates (auth={name}): postern-verify has no \
             credentials and does not probe it"
        ));
    }
    let policy = match tls::policy(control, &domain, &options) {
        Ok(p) => p,
        Err(text) => return temp(text),
    };
    let helo = match control.value("helohost").and_then(|h| match h {
        Some(h) => Ok(h),
        None => control.value_or("me", &postern_common::control::system_hostname()),
    }) {
        Ok(h) => h,
        Err(e) => return temp(e.msg),
    };
    let connect_timeout = match control.number("timeoutconnect", 60) {
        Ok(n) => Duration::from_secs(n.max(1)),
        Err(e) => return temp(e.msg),
    };
    let list = match targets(control, &domain, route) {
        Ok(l) => l,
        Err(text) => return temp(text),
    };
    let mut last = format!("no host to verify {domain} at");
    for t in list.iter().take(remote::MAX_TRIES) {
        let mut starttls = true;
        loop {
            if Instant::now() >= deadline {
                return temp(format!("no answer within verifytimeout; last: {last}"));
            }
            let p = Params {
                helo: &helo,
                target: t,
                connect_timeout,
                deadline,
                starttls,
                tls: &policy,
            };
            match attempt(&p, addr) {
                Step::Done(outcome, text) => return (outcome, text),
                Step::TlsFailed(why) if starttls && policy.required.is_none() => {
                    last = why;
                    starttls = false;
                }
                Step::TlsFailed(why) | Step::NextHost(why) => {
                    last = why;
                    break;
                }
            }
        }
    }
    temp(last)
}

/// The servers of `domain` by `route`, as postern-remote finds them: a relay host (an
/// IP literal, else its A/AAAA), or the MX hosts by preference (without this host and
/// those behind it), else the domain's own A/AAAA.
fn targets(
    control: &Control,
    domain: &str,
    route: route::Route,
) -> std::result::Result<Vec<Target>, String> {
    let dns = || -> std::result::Result<dns::Dns, String> {
        let servers = dns::servers(control).map_err(|e| e.msg)?;
        dns::Dns::new(&servers).map_err(|e| e.msg)
    };
    let addrs_of = |d: &dns::Dns, host: &str, port: u16| match d.ips(host) {
        dns::Answer::Found(ips) => Ok(ips
            .into_iter()
            .map(|ip| Target {
                host: host.to_string(),
                addr: SocketAddr::new(ip, port),
            })
            .collect::<Vec<_>>()),
        dns::Answer::NotFound => Err(format!("no host named {host}")),
        dns::Answer::Failed(e) => Err(format!("lookup of {host} failed: {e}")),
    };
    match route {
        route::Route::Relay { host, port } => match host.parse::<IpAddr>() {
            Ok(ip) => Ok(vec![Target {
                host,
                addr: SocketAddr::new(ip, port),
            }]),
            Err(_) => addrs_of(&dns()?, &host, port),
        },
        route::Route::Mx => {
            let d = dns()?;
            match d.mx(domain) {
                dns::Answer::Found(mx) if mx.is_empty() || mx.iter().all(|(_, h)| h == ".") => {
                    Err(format!("{domain} has a null MX"))
                }
                dns::Answer::Found(mx) => {
                    let me = control
                        .value_or("me", &postern_common::control::system_hostname())
                        .map_err(|e| e.msg)?;
                    let mx = remote::drop_self(mx, &me).ok_or_else(|| {
                        format!("this host is the best MX of {domain} and has no route for it")
                    })?;
                    let mut out = Vec::new();
                    let mut last = None;
                    for (_, host) in mx {
                        match addrs_of(&d, &host, route::DEFAULT_PORT) {
                            Ok(t) => out.extend(t),
                            Err(e) => last = Some(e),
                        }
                    }
                    match (out.is_empty(), last) {
                        (true, Some(e)) => Err(e),
                        _ => Ok(out),
                    }
                }
                dns::Answer::NotFound => addrs_of(&d, domain, route::DEFAULT_PORT),
                dns::Answer::Failed(e) => Err(format!("MX lookup of {domain} failed: {e}")),
            }
        }
    }
}

struct Params<'a> {
    helo: &'a str,
    target: &'a Target,
    connect_timeout: Duration,
    deadline: Instant,
    starttls: bool,
    tls: &'a tls::Policy,
}

/// How one connection ended.
enum Step {
    /// The next hop answered the RCPT (or refused the probe itself).
    Done(Outcome, String),
    /// Nothing learnt from this server: try the next.
    NextHost(String),
    /// The TLS handshake failed: try this server again without TLS (opportunistic only).
    TlsFailed(String),
}

struct Session {
    io: BufReader<Conn>,
    host: String,
    deadline: Instant,
}

impl Session {
    /// Bound the next read or write by what is left of the probe's time.
    fn arm(&self) -> io::Result<()> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "verifytimeout reached",
            ));
        }
        let tcp = match self.io.get_ref() {
            Conn::Plain(t) => t,
            Conn::Tls(s) => &s.sock,
        };
        tcp.set_read_timeout(Some(left))?;
        tcp.set_write_timeout(Some(left))
    }

    fn reply(&mut self) -> io::Result<Reply> {
        self.arm()?;
        reply::read(&mut self.io as &mut dyn BufRead)
    }

    /// Send one command line and read its reply.
    fn command(&mut self, line: &str) -> io::Result<Reply> {
        self.arm()?;
        let w = self.io.get_mut();
        w.write_all(format!("{line}\r\n").as_bytes())?;
        w.flush()?;
        self.reply()
    }

    fn lost(&self, when: &str, e: &io::Error) -> String {
        match reply::malformed(e) {
            Some(why) => format!("malformed reply from {} {when}: {why}", self.host),
            None => format!(
                "{} {when}: {}",
                self.host,
                postern_common::exit::describe_io(e)
            ),
        }
    }

    fn said(&self, r: &Reply) -> String {
        format!("{} said: {}", self.host, r.text().replace('\n', " "))
    }

    /// RSET and QUIT, their replies read if they come in time.
    fn close(&mut self) {
        for cmd in ["RSET", "QUIT"] {
            if self.command(cmd).is_err() {
                return;
            }
        }
    }
}

fn offers(ext: &[String], word: &str) -> bool {
    ext.iter()
        .any(|l| l.split_whitespace().next() == Some(word))
}

/// EHLO, else HELO: the extension keywords (upper-case).
fn greet(s: &mut Session, helo: &str) -> std::result::Result<Vec<String>, String> {
    let r = s
        .command(&format!("EHLO {helo}"))
        .map_err(|e| s.lost("during EHLO", &e))?;
    if r.class() == 2 {
        return Ok(r
            .lines
            .iter()
            .skip(1)
            .map(|l| l.to_ascii_uppercase())
            .collect());
    }
    let r = s
        .command(&format!("HELO {helo}"))
        .map_err(|e| s.lost("during HELO", &e))?;
    if r.class() == 2 {
        Ok(Vec::new())
    } else {
        Err(format!("{} refused HELO: {}", s.host, r.text()))
    }
}

fn attempt(p: &Params, addr: &str) -> Step {
    let left = p.deadline.saturating_duration_since(Instant::now());
    let tcp = match TcpStream::connect_timeout(
        &p.target.addr,
        p.connect_timeout.min(left).max(Duration::from_millis(1)),
    ) {
        Ok(t) => t,
        Err(e) => {
            return Step::NextHost(format!(
                "unable to connect to {}: {}",
                p.target.addr,
                postern_common::exit::describe_io(&e)
            ))
        }
    };
    let _ = tcp.set_nodelay(true);
    let mut s = Session {
        io: BufReader::new(Conn::Plain(tcp)),
        host: format!("{} ({})", p.target.host, p.target.addr.ip()),
        deadline: p.deadline,
    };
    match s.reply() {
        Ok(r) if r.code == 220 => {}
        Ok(r) => return Step::NextHost(format!("{} greeted with {}", s.host, r.text())),
        Err(e) => return Step::NextHost(s.lost("before the greeting", &e)),
    }
    let ext = match greet(&mut s, p.helo) {
        Ok(e) => e,
        Err(why) => return Step::NextHost(why),
    };
    let required = p.tls.required.as_deref();
    if p.starttls && offers(&ext, "STARTTLS") {
        match s.command("STARTTLS") {
            Ok(r) if r.code == 220 => {
                let failed = |why: String| match required {
                    Some(_) => Step::NextHost(why),
                    None => Step::TlsFailed(why),
                };
                if !s.io.buffer().is_empty() {
                    return failed(format!("{} sent data after its STARTTLS reply", s.host));
                }
                let (host, deadline) = (s.host.clone(), s.deadline);
                let Conn::Plain(tcp) = s.io.into_inner() else {
                    return failed("TLS twice".into());
                };
                let stream = match tls::start(
                    tcp,
                    p.tls.config.clone(),
                    tls::server_name(&p.target.host, p.target.addr.ip()),
                    &host,
                ) {
                    Ok(stream) => stream,
                    Err(why) => return failed(why),
                };
                s = Session {
                    io: BufReader::new(Conn::Tls(stream)),
                    host,
                    deadline,
                };
                if let Err(why) = greet(&mut s, p.helo) {
                    return Step::NextHost(why);
                }
            }
            Ok(r) => {
                if let Some(req) = required {
                    s.close();
                    return Step::NextHost(format!(
                        "{req}, but {} refused STARTTLS: {}",
                        s.host,
                        r.text()
                    ));
                }
            }
            Err(e) => return Step::NextHost(s.lost("during STARTTLS", &e)),
        }
    }
    if let (Some(req), Conn::Plain(_)) = (required, s.io.get_ref()) {
        s.close();
        return Step::NextHost(format!("{req}, but {} did not offer STARTTLS", s.host));
    }
    let mail = match s.command("MAIL FROM:<>") {
        Ok(r) => r,
        Err(e) => return Step::NextHost(s.lost("during MAIL", &e)),
    };
    if mail.class() != 2 {
        // The probe itself is refused: that says nothing about the recipient.
        s.close();
        return Step::Done(
            Outcome::TempFail,
            format!("MAIL FROM:<> refused: {}", s.said(&mail)),
        );
    }
    let rcpt = match s.command(&format!("RCPT TO:<{addr}>")) {
        Ok(r) => r,
        Err(e) => return Step::NextHost(s.lost("during RCPT", &e)),
    };
    s.close();
    let outcome = match rcpt.class() {
        2 => Outcome::Pass,
        5 => Outcome::Fail,
        _ => Outcome::TempFail,
    };
    Step::Done(outcome, s.said(&rcpt))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_checked() {
        for good in [
            "alice@corp.test",
            "\"john doe\"@corp.test",
            "o'brien@Corp.TEST",
        ] {
            assert!(check_address(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "alice",
            "@corp.test",
            "-x@corp.test",
            "a@bad_domain",
            "a>@corp.test",
            "a\r\nRCPT TO:<b>@corp.test",
        ] {
            assert!(check_address(bad).is_err(), "{bad:?}");
        }
        assert!(check_address(&format!("{}@corp.test", "a".repeat(320))).is_err());
    }
}
