//! One connection: banner, names, rules, then the program as a child process with
//! fd 0 = fd 1 = the socket. When that can wait on the network ([`may_block`]) it runs
//! in a short-lived thread of the parent (small stack, see [`STACK_SIZE`]), which ends
//! as soon as the program is started and reports the pid (or that no program was
//! started) to the accept loop; otherwise the accept loop does it itself. The loop owns
//! the slots and reaps the children.
//!
//! The rules are checked here, before any process is created: a denied client is
//! simply closed (classic tcpserver forks first and the child exits 100; the client
//! sees the same thing, minus a process).

use super::options::{Config, Verbosity};
use super::plain_ip;
use crate::rules::{lookup, Client, Decision};
use postern_common::cdb::Reader;
use postern_common::logline::LogLine;
use postern_dns::{Answer, Dns};
use std::ffi::OsString;
use std::io::Write;
use std::net::{IpAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::sync::mpsc::Sender;
use std::time::Duration;

/// Stack of a connection thread. Measured on a debug build doing the PTR and `-p`
/// forward lookups (hickory on a tokio runtime): overflows at 48 KiB, runs at 64 KiB.
/// 256 KiB leaves room for lookups that go to the network; at `-c 40` that is 10 MB
/// of address space, and only while 40 connections are being set up at once (the
/// threads end when their program starts), instead of the default 2 MiB per thread
/// for the whole life of each program.
pub const STACK_SIZE: usize = 256 * 1024;

/// Deadline for each name lookup (PTR, and the forward check of -p).
pub const NAME_LOOKUP_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound on a banner write to a client that does not read.
const BANNER_WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// The environment the program gets: `Some` sets, `None` removes.
pub type EnvChanges = Vec<(OsString, Option<OsString>)>;

fn set(env: &mut EnvChanges, k: &str, v: Option<String>) {
    env.push((OsString::from(k), v.map(OsString::from)));
}

/// The UCSPI variables for one connection (before the rule's own variables).
pub fn ucspi_env(
    local: (IpAddr, u16),
    remote: (IpAddr, u16),
    local_host: Option<String>,
    remote_host: Option<String>,
    remote_info: Option<String>,
) -> EnvChanges {
    let mut env = Vec::new();
    set(&mut env, "PROTO", Some("TCP".into()));
    set(&mut env, "TCPLOCALIP", Some(local.0.to_string()));
    set(&mut env, "TCPLOCALPORT", Some(local.1.to_string()));
    set(&mut env, "TCPLOCALHOST", local_host);
    set(&mut env, "TCPREMOTEIP", Some(remote.0.to_string()));
    set(&mut env, "TCPREMOTEPORT", Some(remote.1.to_string()));
    set(&mut env, "TCPREMOTEHOST", remote_host);
    set(&mut env, "TCPREMOTEINFO", remote_info);
    env
}

/// The remote host name: PTR, and with `paranoid` only if the name's addresses
/// include `ip`. Any failure leaves it unset.
fn remote_name(dns: &Dns, ip: IpAddr, paranoid: bool) -> Option<String> {
    let Answer::Found(name) = dns.ptr(ip, NAME_LOOKUP_TIMEOUT) else {
        return None;
    };
    if name.is_empty()
        || name
            .bytes()
            .any(|b| !(b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_'))
    {
        return None;
    }
    if paranoid {
        match dns.a_else_aaaa(&name, NAME_LOOKUP_TIMEOUT) {
            Answer::Found(ips) if ips.iter().any(|&a| plain_ip(a) == ip) => {}
            _ => return None,
        }
    }
    Some(name)
}

/// Longest IDENT answer we read, and longest TCPREMOTEINFO we keep.
pub const MAX_IDENT_ANSWER: u64 = 1024;
pub const MAX_REMOTE_INFO: usize = 256;

/// The user name from an RFC 1413 answer (`PORT , PORT : USERID : OS : NAME`): the text
/// after the third colon, with spaces, tabs and CR removed, cut to [`MAX_REMOTE_INFO`];
/// bytes that could break a log line or a rule key (`:`, `@`, `%`, controls, non-ASCII)
/// become `?`, as classic tcpserver sanitises what it logs. `None` for an error reply.
pub fn parse_ident_answer(line: &[u8]) -> Option<String> {
    let line = line.split(|&b| b == b'\n').next()?;
    let mut fields = line.splitn(4, |&b| b == b':');
    let _ports = fields.next()?;
    let kind = fields.next()?;
    if String::from_utf8_lossy(kind).trim() != "USERID" {
        return None;
    }
    let _os = fields.next()?;
    let name: String = fields
        .next()?
        .iter()
        .filter(|&&b| !matches!(b, b' ' | b'\t' | b'\r'))
        .take(MAX_REMOTE_INFO)
        .map(|&b| match b {
            b'!'..=b'~' if !matches!(b, b':' | b'@' | b'%') => b as char,
            _ => '?',
        })
        .collect();
    (!name.is_empty()).then_some(name)
}

/// Ask the client's identd (port 113) who owns this connection, within `timeout`.
/// Any trouble — nothing listening, a filtered port, a malformed answer — is `None`.
pub fn ident(local_port: u16, remote: std::net::SocketAddr, timeout: Duration) -> Option<String> {
    use std::io::Read;
    let deadline = std::time::Instant::now() + timeout;
    let target = std::net::SocketAddr::new(remote.ip(), 113);
    let mut s = TcpStream::connect_timeout(&target, timeout).ok()?;
    let left = deadline.checked_duration_since(std::time::Instant::now())?;
    s.set_read_timeout(Some(left.max(Duration::from_millis(1))))
        .ok()?;
    s.set_write_timeout(Some(left.max(Duration::from_millis(1))))
        .ok()?;
    s.write_all(format!("{} , {}\r\n", remote.port(), local_port).as_bytes())
        .ok()?;
    let mut answer = Vec::new();
    let mut byte = [0u8; 256];
    while !answer.contains(&b'\n') && (answer.len() as u64) < MAX_IDENT_ANSWER {
        match s.read(&mut byte) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&byte[..n]),
            Err(_) => return None,
        }
    }
    parse_ident_answer(&answer)
}

/// What to do about the rules for this client.
enum RulesOutcome {
    Apply(Decision),
    /// The rules could not be read: drop the connection (fail closed).
    Unreadable(String),
}

fn check_rules(config: &Config, client: &Client) -> RulesOutcome {
    let Some(path) = &config.rules else {
        return RulesOutcome::Apply(Decision::default());
    };
    let reader = match Reader::open(path) {
        Ok(r) => r,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && config.rules_optional => {
            return RulesOutcome::Apply(Decision::default())
        }
        Err(e) => {
            return RulesOutcome::Unreadable(format!("unable to read {}: {e}", path.display()))
        }
    };
    match lookup(&reader, client) {
        Ok(d) => RulesOutcome::Apply(d),
        Err(e) => RulesOutcome::Unreadable(format!("unable to read {}: {e}", path.display())),
    }
}

/// What a connection thread tells the accept loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Report {
    /// The program runs as `pid`; its slot is freed when the loop reaps it.
    Started { pid: u32, ip: IpAddr },
    /// No program was started (denied, dropped, failed): free the slot now.
    Closed { ip: IpAddr },
}

/// What the accept loop shares with the connection threads.
pub struct Shared {
    pub config: Config,
    pub reports: Sender<Report>,
    /// Written after each report, to wake the loop's poll.
    pub wake: UnixStream,
}

impl Shared {
    fn send(&self, report: Report) {
        let _ = self.reports.send(report);
        // Non-blocking: a full pipe already wakes the loop.
        let _ = (&self.wake).write(&[0]);
    }
}

/// Reports `Closed` when dropped without having reported a start: every way out of
/// [`handle`], a panic included, frees the slot.
struct Reporter<'a> {
    shared: &'a Shared,
    ip: IpAddr,
    sent: bool,
}

impl Reporter<'_> {
    fn started(&mut self, pid: u32) {
        self.shared.send(Report::Started { pid, ip: self.ip });
        self.sent = true;
    }
}

impl Drop for Reporter<'_> {
    fn drop(&mut self) {
        if !self.sent {
            self.shared.send(Report::Closed { ip: self.ip });
        }
    }
}

/// Serve one accepted connection from `ip` in a thread of its own (names, IDENT or a
/// banner may take seconds), and report to the accept loop.
pub fn handle_in_thread(stream: TcpStream, shared: &Shared, ip: IpAddr, active: usize) {
    let mut reporter = Reporter {
        shared,
        ip,
        sent: false,
    };
    if let Some(pid) = setup(stream, &shared.config, ip, active) {
        reporter.started(pid);
    }
}

/// Whether setting a connection up can wait on the network (name lookups, IDENT, a
/// banner to a client that does not read): then it gets a thread, so the accept loop
/// never waits. Otherwise ([`setup`] reads only a local cdb) the loop does it itself.
pub fn may_block(config: &Config) -> bool {
    config.remote_host_lookup || config.ident || !config.banner.is_empty()
}

/// Set up one accepted connection from `ip` (whose slot the loop has taken; `active`
/// connections with it, for the log): banner, names, rules, then the program. The pid
/// of the program, or `None` when none was started (denied, dropped, failed).
pub fn setup(mut stream: TcpStream, config: &Config, ip: IpAddr, active: usize) -> Option<u32> {
    let verbose = config.verbosity == Verbosity::Verbose;
    let errors = config.verbosity != Verbosity::Quiet;
    let (Ok(peer), Ok(local)) = (stream.peer_addr(), stream.local_addr()) else {
        return None;
    };
    let local_ip = plain_ip(local.ip());
    if !config.banner.is_empty() {
        let _ = stream.set_write_timeout(Some(BANNER_WRITE_TIMEOUT));
        if stream.write_all(&config.banner).is_err() {
            return None;
        }
        let _ = stream.set_write_timeout(None);
    }
    let dns = if config.remote_host_lookup {
        Dns::from_env().ok()
    } else {
        None
    };
    let remote_host = dns
        .as_ref()
        .and_then(|d| remote_name(d, ip, config.paranoid));
    let local_host = match &config.local_name {
        Some(name) => Some(name.clone()),
        None => dns.as_ref().and_then(|d| remote_name(d, local_ip, false)),
    };
    let remote_info = if config.ident {
        ident(local.port(), peer, config.ident_timeout)
    } else {
        None
    };
    let client = Client {
        ip,
        host: remote_host.as_deref(),
        info: remote_info.as_deref(),
    };
    let decision = match check_rules(config, &client) {
        RulesOutcome::Apply(d) => d,
        RulesOutcome::Unreadable(reason) => {
            if errors {
                LogLine::event("drop")
                    .kv("ip", ip)
                    .kv("reason", reason)
                    .emit();
            }
            return None;
        }
    };
    if decision.deny {
        if verbose {
            LogLine::event("deny")
                .kv("ip", ip)
                .kv("port", peer.port())
                .kv("rule", decision.rule_name())
                .emit();
        }
        return None;
    }
    if config.nodelay {
        let _ = stream.set_nodelay(true);
    }
    let mut env = ucspi_env(
        (local_ip, local.port()),
        (ip, peer.port()),
        local_host,
        remote_host,
        remote_info,
    );
    env.extend(
        decision
            .env
            .iter()
            .map(|(k, v)| (k.clone(), Some(v.clone()))),
    );
    // From a thread, no lock: the accept loop may reap the program before it hears of
    // it, and then frees the slot when the report comes (see `limits`).
    let spawned = spawn_program(&config.program, &env, &stream);
    // The child has its own copies; the parent must not keep the connection open.
    drop(stream);
    let pid = match spawned {
        Ok(pid) => pid,
        Err(e) => {
            if errors {
                LogLine::event("error")
                    .kv("ip", ip)
                    .kv(
                        "reason",
                        format!("unable to run {}: {e}", config.program[0].to_string_lossy()),
                    )
                    .emit();
            }
            return None;
        }
    };
    // Before the report, so this line comes before the loop's `end` line.
    if verbose {
        LogLine::event("start")
            .kv("ip", ip)
            .kv("port", peer.port())
            .kv("local", local_ip)
            .kv("localport", local.port())
            .kv("pid", pid)
            .kv("rule", decision.rule_name())
            .kv("status", format!("{active}/{}", config.limit))
            .emit();
    }
    Some(pid)
}

/// Start `program` with fd 0 = fd 1 = `stream`, our environment changed by `env`, no
/// signal blocked and every signal at its default action (our signalfd keeps TERM and
/// CHLD blocked, and we may have been started with INT and QUIT ignored). posix_spawn,
/// not fork + `pre_exec`: it reports a failed exec itself, whereas std's fork path
/// then waits for the child, which the accept loop may already have reaped.
fn spawn_program(
    program: &[OsString],
    env: &[(OsString, Option<OsString>)],
    stream: &TcpStream,
) -> std::io::Result<u32> {
    use nix::spawn::PosixSpawnFlags as Flags;
    use nix::spawn::{posix_spawn, posix_spawnp, PosixSpawnAttr, PosixSpawnFileActions};
    use nix::sys::signal::{SigSet, Signal};
    use std::ffi::CString;
    use std::os::fd::AsRawFd;
    use std::os::unix::ffi::OsStrExt;
    let io = |e: nix::Error| std::io::Error::from_raw_os_error(e as i32);
    let cstr = |b: &[u8]| {
        CString::new(b).map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))
    };
    let args = program
        .iter()
        .map(|a| cstr(a.as_bytes()))
        .collect::<std::io::Result<Vec<_>>>()?;
    // Our environment, then `env` in order: a later setting of a name replaces an
    // earlier one (rule variables override ours), `None` removes it.
    let mut vars: Vec<(OsString, Option<OsString>)> =
        std::env::vars_os().map(|(k, v)| (k, Some(v))).collect();
    for (k, v) in env {
        match vars.iter_mut().find(|(name, _)| name == k) {
            Some(slot) => slot.1 = v.clone(),
            None => vars.push((k.clone(), v.clone())),
        }
    }
    let vars: Vec<(OsString, OsString)> = vars
        .into_iter()
        .filter_map(|(k, v)| Some((k, v?)))
        .collect();
    let environ = vars
        .iter()
        .map(|(k, v)| cstr(&[k.as_bytes(), b"=", v.as_bytes()].concat()))
        .collect::<std::io::Result<Vec<_>>>()?;
    let mut attr = PosixSpawnAttr::init().map_err(io)?;
    attr.set_sigmask(&SigSet::empty()).map_err(io)?;
    let mut defaults = SigSet::empty();
    for sig in Signal::iterator().filter(|s| !matches!(s, Signal::SIGKILL | Signal::SIGSTOP)) {
        defaults.add(sig);
    }
    attr.set_sigdefault(&defaults).map_err(io)?;
    attr.set_flags(Flags::POSIX_SPAWN_SETSIGMASK | Flags::POSIX_SPAWN_SETSIGDEF)
        .map_err(io)?;
    let mut actions = PosixSpawnFileActions::init().map_err(io)?;
    actions.add_dup2(stream.as_raw_fd(), 0).map_err(io)?;
    actions.add_dup2(stream.as_raw_fd(), 1).map_err(io)?;
    let path = &args[0];
    let pid = if program[0].as_bytes().contains(&b'/') {
        posix_spawn(path.as_c_str(), &actions, &attr, &args, &environ)
    } else {
        posix_spawnp(path, &actions, &attr, &args, &environ)
    }
    .map_err(io)?;
    Ok(pid.as_raw() as u32)
}

#[cfg(test)]
mod ident_tests {
    use super::*;

    #[test]
    fn rfc1413_answers() {
        assert_eq!(
            parse_ident_answer(b"6193, 23 : USERID : UNIX : stjohns\r\n").as_deref(),
            Some("stjohns")
        );
        assert_eq!(
            parse_ident_answer(b"6195, 23 : USERID : OTHER : a b\tc\r\n").as_deref(),
            Some("abc")
        );
        assert_eq!(parse_ident_answer(b"6195, 23 : ERROR : NO-USER\r\n"), None);
        assert_eq!(parse_ident_answer(b"garbage"), None);
        assert_eq!(
            parse_ident_answer(b"1, 2 : USERID : UNIX : x@y:%\x01\xff\r\n").as_deref(),
            Some("x?y????")
        );
        let long = format!("1, 2 : USERID : UNIX : {}\r\n", "a".repeat(1000));
        assert_eq!(
            parse_ident_answer(long.as_bytes()).unwrap().len(),
            MAX_REMOTE_INFO
        );
    }
}
