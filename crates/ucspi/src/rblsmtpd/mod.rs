//! `postern-rblsmtpd`: the DNS blocklist gate in front of an SMTP server.
//!
//! `$RBLSMTPD` decides first (empty = pass, `-text` = 553, `text` = 451). Otherwise the
//! zones are asked in command-line order and the first answer that decides sticks:
//! `-r ZONE` blocks when a TXT record exists for the reversed address (its text is the
//! reason), `-a ZONE` passes when an A record exists. A failed lookup makes every later
//! block temporary (451) and, with `-c`, blocks at once. Not blocked: exec PROGRAM.
//! Blocked: talk SMTP ([`dialogue`]) and never run it.

pub mod dialogue;

use postern_common::logline::LogLine;
use postern_common::{getopt, Error, Result};
use postern_dns::{reverse_name, Answer, Dns};
use std::ffi::OsString;
use std::net::IpAddr;
use std::os::fd::AsFd;
use std::os::unix::process::CommandExt;
use std::time::{Duration, Instant};

pub const PROG: &str = "postern-rblsmtpd";
pub const USAGE: &str = "postern-rblsmtpd [ -b ] [ -B ] [ -c ] [ -C ] [ -t timeout ] -r base [ -r base ... ] [ -a base ... ] program";
/// Default dialogue timeout, which also bounds the DNS lookups (classic: 60).
pub const DEFAULT_TIMEOUT: u64 = 60;
/// DNS budget when `-t 0` asks for a one-line reply without a dialogue.
pub const NO_DIALOGUE_DNS_BUDGET: Duration = Duration::from_secs(60);
/// Largest -t.
pub const MAX_TIMEOUT: u64 = 86_400;
/// Most zones on one command line.
pub const MAX_ZONES: usize = 64;
/// The reason given when a lookup failed and -c asks to fail closed.
pub const LOOKUP_ERROR_REASON: &str = "temporary RBL lookup error";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Zone {
    /// -r: a TXT record blocks.
    Block(String),
    /// -a: an A record passes.
    Allow(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub zones: Vec<Zone>,
    /// -b: block permanently (553) rather than temporarily (451).
    pub bounce: bool,
    /// -c: a failed lookup blocks (451) instead of being ignored.
    pub fail_closed: bool,
    pub timeout: u64,
    pub program: Vec<OsString>,
}

pub fn parse(args: &[OsString]) -> Result<Config> {
    let (opts, program) = getopt::parse(args, "bBcCt:r:a:", USAGE)?;
    let mut c = Config {
        zones: Vec::new(),
        bounce: false,
        fail_closed: false,
        timeout: DEFAULT_TIMEOUT,
        program,
    };
    for o in &opts {
        match o.letter {
            'b' => c.bounce = true,
            'B' => c.bounce = false,
            'c' => c.fail_closed = true,
            'C' => c.fail_closed = false,
            't' => {
                c.timeout = o.number()?;
                if c.timeout > MAX_TIMEOUT {
                    return Err(Error::usage(format!("-t is at most {MAX_TIMEOUT}")));
                }
            }
            'r' | 'a' => {
                let zone = o.text()?.trim_end_matches('.').to_string();
                if zone.is_empty()
                    || zone
                        .bytes()
                        .any(|b| !(b.is_ascii_alphanumeric() || b"-._".contains(&b)))
                {
                    return Err(Error::usage(format!("-{} needs a DNS zone name", o.letter)));
                }
                c.zones.push(if o.letter == 'r' {
                    Zone::Block(zone)
                } else {
                    Zone::Allow(zone)
                });
            }
            _ => return Err(Error::usage(USAGE)),
        }
    }
    if c.zones.is_empty() || c.zones.len() > MAX_ZONES || c.program.is_empty() {
        return Err(Error::usage(USAGE));
    }
    Ok(c)
}

/// What to do with the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Block { code: u16, reason: String },
}

/// The lookups, as a trait so the decision logic is tested without a DNS server.
pub trait Lookups {
    fn txt(&mut self, name: &str) -> Answer<Vec<u8>>;
    fn a(&mut self, name: &str) -> Answer<usize>;
}

fn log(ip: &str, zone: &str, result: &str) -> LogLine {
    LogLine::event("rbl")
        .kv("ip", ip)
        .kv("zone", zone)
        .kv("result", result)
}

/// Decide for `ip` (None when TCPREMOTEIP is missing or not an address), given the
/// `$RBLSMTPD` value. Emits one `event=rbl` line per zone asked.
pub fn decide(
    c: &Config,
    ip: Option<IpAddr>,
    ip_text: &str,
    rblsmtpd: Option<&[u8]>,
    dns: &mut dyn Lookups,
) -> Verdict {
    if let Some(value) = rblsmtpd {
        let verdict = match value {
            [] => Verdict::Pass,
            [b'-', rest @ ..] => Verdict::Block {
                code: 553,
                reason: dialogue::sanitise(rest),
            },
            text => Verdict::Block {
                code: 451,
                reason: dialogue::sanitise(text),
            },
        };
        let line = log(
            ip_text,
            "RBLSMTPD",
            if verdict == Verdict::Pass {
                "allow"
            } else {
                "listed"
            },
        );
        emit(line, &verdict);
        return verdict;
    }
    let mut must_not_bounce = false;
    let code = |must_not_bounce: bool| {
        if c.bounce && !must_not_bounce {
            553
        } else {
            451
        }
    };
    for zone in &c.zones {
        let (name, is_block) = match zone {
            Zone::Block(z) => (z, true),
            Zone::Allow(z) => (z, false),
        };
        let answer = match ip {
            Some(ip) => {
                let q = reverse_name(ip, name);
                if is_block {
                    match dns.txt(&q) {
                        Answer::Found(t) => Answer::Found(t),
                        Answer::NotFound => Answer::NotFound,
                        Answer::Failed(e) => Answer::Failed(e),
                    }
                } else {
                    match dns.a(&q) {
                        Answer::Found(n) if n > 0 => Answer::Found(Vec::new()),
                        Answer::Found(_) | Answer::NotFound => Answer::NotFound,
                        Answer::Failed(e) => Answer::Failed(e),
                    }
                }
            }
            None => Answer::Failed("TCPREMOTEIP is not an IP address".to_string()),
        };
        match answer {
            Answer::Found(text) if is_block => {
                if text.is_empty() {
                    // An empty TXT decides nothing, as in classic rblsmtpd.
                    log(ip_text, name, "clear").emit();
                    continue;
                }
                let verdict = Verdict::Block {
                    code: code(must_not_bounce),
                    reason: dialogue::sanitise(&text),
                };
                emit(log(ip_text, name, "listed"), &verdict);
                return verdict;
            }
            Answer::Found(_) => {
                log(ip_text, name, "allow").emit();
                return Verdict::Pass;
            }
            Answer::NotFound => log(ip_text, name, "clear").emit(),
            Answer::Failed(why) => {
                must_not_bounce = true;
                let line =
                    log(ip_text, name, "error").kv("reason", dialogue::sanitise(why.as_bytes()));
                if c.fail_closed {
                    let verdict = Verdict::Block {
                        code: 451,
                        reason: LOOKUP_ERROR_REASON.to_string(),
                    };
                    emit(line, &verdict);
                    return verdict;
                }
                line.emit();
            }
        }
    }
    Verdict::Pass
}

fn emit(mut line: LogLine, verdict: &Verdict) {
    if let Verdict::Block { code, reason } = verdict {
        line.push("code", code);
        line.push("text", reason);
    }
    line.emit();
}

/// The real lookups: one resolver, every lookup within the remaining budget.
struct Resolver {
    dns: Dns,
    deadline: Instant,
}

impl Resolver {
    fn left(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }
}

impl Lookups for Resolver {
    fn txt(&mut self, name: &str) -> Answer<Vec<u8>> {
        self.dns.txt(name, self.left())
    }
    fn a(&mut self, name: &str) -> Answer<usize> {
        match self.dns.a(name, self.left()) {
            Answer::Found(v) => Answer::Found(v.len()),
            Answer::NotFound => Answer::NotFound,
            Answer::Failed(e) => Answer::Failed(e),
        }
    }
}

/// A lookup source that always fails (no usable resolver configuration).
struct Broken(String);

impl Lookups for Broken {
    fn txt(&mut self, _: &str) -> Answer<Vec<u8>> {
        Answer::Failed(self.0.clone())
    }
    fn a(&mut self, _: &str) -> Answer<usize> {
        Answer::Failed(self.0.clone())
    }
}

pub fn main() -> Result<()> {
    let c = parse(&getopt::args())?;
    let ip_text = std::env::var("TCPREMOTEIP").unwrap_or_default();
    let ip = ip_text
        .parse::<IpAddr>()
        .ok()
        .map(crate::tcpserver::plain_ip);
    let rblsmtpd = std::env::var_os("RBLSMTPD").map(std::os::unix::ffi::OsStringExt::into_vec);
    let budget = if c.timeout == 0 {
        NO_DIALOGUE_DNS_BUDGET
    } else {
        Duration::from_secs(c.timeout)
    };
    let verdict = if rblsmtpd.is_some() {
        decide(
            &c,
            ip,
            &ip_text,
            rblsmtpd.as_deref(),
            &mut Broken(String::new()),
        )
    } else {
        match Dns::from_env() {
            Ok(dns) => decide(
                &c,
                ip,
                &ip_text,
                None,
                &mut Resolver {
                    dns,
                    deadline: Instant::now() + budget,
                },
            ),
            Err(e) => decide(&c, ip, &ip_text, None, &mut Broken(e.msg)),
        }
    };
    match verdict {
        Verdict::Pass => {
            let err = postern_common::sys::with_default_signals(&mut std::process::Command::new(
                &c.program[0],
            ))
            .args(&c.program[1..])
            .exec();
            Err(Error::temp(format!(
                "unable to run {}: {}",
                c.program[0].to_string_lossy(),
                postern_common::exit::describe_io(&err)
            )))
        }
        Verdict::Block { code, reason } => {
            block(&dialogue::reply(code, &reason), c.timeout);
            Ok(())
        }
    }
}

/// Answer a blocked client: with `-t 0` just the reply line, else the dialogue for at
/// most `timeout` seconds. Write errors end it quietly: the client has gone.
fn block(reply: &[u8], timeout: u64) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if timeout == 0 {
        let _ = out.write_all(reply).and_then(|_| out.flush());
        return;
    }
    let deadline = Instant::now() + Duration::from_secs(timeout);
    let Ok(fd) = std::io::stdin().as_fd().try_clone_to_owned() else {
        return;
    };
    let input = std::fs::File::from(fd);
    let ready = || {
        postern_common::deadline::wait_until(
            std::io::stdin(),
            nix::poll::PollFlags::POLLIN,
            deadline,
        )
        .unwrap_or(false)
    };
    let _ = dialogue::session(input, &mut out, reply, ready);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn args(s: &str) -> Vec<OsString> {
        s.split_whitespace().map(OsString::from).collect()
    }

    #[derive(Default)]
    struct Fake {
        txt: HashMap<String, Answer<Vec<u8>>>,
        a: HashMap<String, Answer<usize>>,
        asked: Vec<String>,
    }

    impl Lookups for Fake {
        fn txt(&mut self, name: &str) -> Answer<Vec<u8>> {
            self.asked.push(name.to_string());
            self.txt.get(name).cloned().unwrap_or(Answer::NotFound)
        }
        fn a(&mut self, name: &str) -> Answer<usize> {
            self.asked.push(name.to_string());
            self.a.get(name).cloned().unwrap_or(Answer::NotFound)
        }
    }

    fn verdict(cmd: &str, ip: &str, env: Option<&str>, fake: &mut Fake) -> Verdict {
        let c = parse(&args(cmd)).unwrap();
        decide(&c, ip.parse().ok(), ip, env.map(str::as_bytes), fake)
    }

    fn block(code: u16, reason: &str) -> Verdict {
        Verdict::Block {
            code,
            reason: reason.to_string(),
        }
    }

    #[test]
    fn options() {
        let c = parse(&args("-b -c -t5 -r zen.test -a ok.test. prog -r x")).unwrap();
        assert_eq!(
            c.zones,
            vec![
                Zone::Block("zen.test".into()),
                Zone::Allow("ok.test".into())
            ]
        );
        assert!(c.bounce && c.fail_closed);
        assert_eq!(c.timeout, 5);
        assert_eq!(c.program, args("prog -r x"));
        for bad in [
            "prog",
            "-r zen.test",
            "-x -r z prog",
            "-r bad/zone prog",
            "-t x -r z prog",
        ] {
            assert!(parse(&args(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn txt_blocks_with_its_text() {
        let mut f = Fake::default();
        f.txt.insert(
            "2.0.0.127.zen.test.".into(),
            Answer::Found(b"listed\r\nhere".to_vec()),
        );
        assert_eq!(
            verdict("-r zen.test p", "127.0.0.2", None, &mut f),
            block(451, "listed??here")
        );
        assert_eq!(
            verdict("-b -r zen.test p", "127.0.0.2", None, &mut f),
            block(553, "listed??here")
        );
        assert_eq!(
            verdict("-r zen.test p", "127.0.0.3", None, &mut f),
            Verdict::Pass
        );
    }

    #[test]
    fn first_decision_sticks() {
        let mut f = Fake::default();
        f.txt
            .insert("2.0.0.127.zen.test.".into(), Answer::Found(b"x".to_vec()));
        f.a.insert("2.0.0.127.ok.test.".into(), Answer::Found(1));
        assert_eq!(
            verdict("-a ok.test -r zen.test p", "127.0.0.2", None, &mut f),
            Verdict::Pass
        );
        assert_eq!(f.asked, ["2.0.0.127.ok.test."]);
        assert_eq!(
            verdict("-r zen.test -a ok.test p", "127.0.0.2", None, &mut f),
            block(451, "x")
        );
    }

    #[test]
    fn failures_fail_open_but_never_bounce_and_c_fails_closed() {
        let mut f = Fake::default();
        f.txt.insert(
            "2.0.0.127.down.test.".into(),
            Answer::Failed("timed out".into()),
        );
        f.txt
            .insert("2.0.0.127.zen.test.".into(), Answer::Found(b"x".to_vec()));
        assert_eq!(
            verdict("-r down.test p", "127.0.0.2", None, &mut f),
            Verdict::Pass
        );
        assert_eq!(
            verdict("-b -r down.test -r zen.test p", "127.0.0.2", None, &mut f),
            block(451, "x")
        );
        assert_eq!(
            verdict("-c -r down.test -r zen.test p", "127.0.0.2", None, &mut f),
            block(451, LOOKUP_ERROR_REASON)
        );
        assert_eq!(
            verdict("-c -r zen.test p", "not-an-ip", None, &mut f),
            block(451, LOOKUP_ERROR_REASON)
        );
    }

    #[test]
    fn the_rblsmtpd_variable_comes_first() {
        let mut f = Fake::default();
        f.txt
            .insert("2.0.0.127.zen.test.".into(), Answer::Found(b"x".to_vec()));
        assert_eq!(
            verdict("-r zen.test p", "127.0.0.2", Some(""), &mut f),
            Verdict::Pass
        );
        assert_eq!(
            verdict("-r zen.test p", "127.0.0.9", Some("-go away"), &mut f),
            block(553, "go away")
        );
        assert_eq!(
            verdict("-b -r zen.test p", "127.0.0.9", Some("busy\n"), &mut f),
            block(451, "busy?")
        );
        assert!(f.asked.is_empty());
    }

    #[test]
    fn ipv6_is_asked_by_nibbles() {
        let mut f = Fake::default();
        verdict("-r zen.test p", "2001:db8::1", None, &mut f);
        assert_eq!(
            f.asked[0],
            reverse_name("2001:db8::1".parse().unwrap(), "zen.test")
        );
    }
}
