//! One connection, in its own thread of the parent: banner, names, rules, then the
//! program as a child process with fd 0 = fd 1 = the socket, reaped here.
//!
//! The rules are checked here, before any process is created: a denied client is
//! simply closed (classic tcpserver forks first and the child exits 100; the client
//! sees the same thing, minus a process).

use super::limits::{Limits, Slot};
use super::options::{Config, Verbosity};
use super::plain_ip;
use crate::cdb::Reader;
use crate::dns::{Answer, Dns};
use crate::rules::{lookup, Client, Decision};
use postern_common::logline::LogLine;
use std::ffi::OsString;
use std::io::Write;
use std::net::{IpAddr, TcpStream};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

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
) -> EnvChanges {
    let mut env = Vec::new();
    set(&mut env, "PROTO", Some("TCP".into()));
    set(&mut env, "TCPLOCALIP", Some(local.0.to_string()));
    set(&mut env, "TCPLOCALPORT", Some(local.1.to_string()));
    set(&mut env, "TCPLOCALHOST", local_host);
    set(&mut env, "TCPREMOTEIP", Some(remote.0.to_string()));
    set(&mut env, "TCPREMOTEPORT", Some(remote.1.to_string()));
    set(&mut env, "TCPREMOTEHOST", remote_host);
    // IDENT (RFC 1413) is not implemented: TCPREMOTEINFO is never set.
    set(&mut env, "TCPREMOTEINFO", None);
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
        match dns.ips(&name, NAME_LOOKUP_TIMEOUT) {
            Answer::Found(ips) if ips.iter().any(|&a| plain_ip(a) == ip) => {}
            _ => return None,
        }
    }
    Some(name)
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

fn status(limits: &Limits) -> String {
    format!("{}/{}", limits.active(), limits.limit())
}

/// Serve one accepted connection; `slot` is released when this returns.
pub fn handle(
    mut stream: TcpStream,
    config: &Config,
    limits: &Arc<Limits>,
    slot: Slot,
    active: usize,
) {
    let verbose = config.verbosity == Verbosity::Verbose;
    let errors = config.verbosity != Verbosity::Quiet;
    let (Ok(peer), Ok(local)) = (stream.peer_addr(), stream.local_addr()) else {
        return;
    };
    let ip = plain_ip(peer.ip());
    let local_ip = plain_ip(local.ip());
    if !config.banner.is_empty() {
        let _ = stream.set_write_timeout(Some(BANNER_WRITE_TIMEOUT));
        if stream.write_all(&config.banner).is_err() {
            return;
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
    let client = Client {
        ip,
        host: remote_host.as_deref(),
        info: None,
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
            return;
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
        return;
    }
    if config.nodelay {
        let _ = stream.set_nodelay(true);
    }
    let mut env = ucspi_env(
        (local_ip, local.port()),
        (ip, peer.port()),
        local_host,
        remote_host,
    );
    env.extend(
        decision
            .env
            .iter()
            .map(|(k, v)| (k.clone(), Some(v.clone()))),
    );
    let mut cmd = Command::new(&config.program[0]);
    cmd.args(&config.program[1..]);
    for (k, v) in &env {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    let (stdin, stdout) = match (stream.try_clone(), stream.try_clone()) {
        (Ok(a), Ok(b)) => (a, b),
        _ => return,
    };
    cmd.stdin(Stdio::from(std::os::fd::OwnedFd::from(stdin)));
    cmd.stdout(Stdio::from(std::os::fd::OwnedFd::from(stdout)));
    let spawned = cmd.spawn();
    // The child has its own copies; the parent must not keep the connection open.
    drop(cmd);
    drop(stream);
    let mut child = match spawned {
        Ok(c) => c,
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
            return;
        }
    };
    let pid = child.id();
    if verbose {
        LogLine::event("start")
            .kv("ip", ip)
            .kv("port", peer.port())
            .kv("local", local_ip)
            .kv("localport", local.port())
            .kv("pid", pid)
            .kv("rule", decision.rule_name())
            .kv("status", format!("{active}/{}", limits.limit()))
            .emit();
    }
    let exit = child.wait();
    drop(slot);
    if verbose {
        let mut line = LogLine::event("end")
            .kv("pid", pid)
            .kv("status", status(limits));
        match exit {
            Ok(s) => match (s.code(), s.signal()) {
                (Some(code), _) => line.push("exit", code),
                (None, Some(sig)) => line.push("signal", sig),
                _ => line.push("exit", "unknown"),
            },
            Err(e) => line.push("exit", format!("unknown: {e}")),
        }
        line.emit();
    }
}
