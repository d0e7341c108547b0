//! The command line of `postern-tcpserver`, classic letters plus `-C` and `-M`.

use postern_common::getopt::{self, Opt};
use postern_common::{Error, Result};
use std::ffi::OsString;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, ToSocketAddrs};
use std::path::PathBuf;

pub const USAGE: &str = "postern-tcpserver [ -1UXpPhHrRoOdDqQv ] [ -c limit ] [ -C perip ] \
[ -x rules.cdb ] [ -B banner ] [ -M message ] [ -g gid ] [ -u uid ] [ -b backlog ] [ -l localname ] \
[ -t timeout ] host port program";
const SPEC: &str = "1UXpPhHrRoOdDqQvc:C:x:B:M:g:u:b:l:t:";

/// Default most simultaneous children (classic: 40).
pub const DEFAULT_LIMIT: u64 = 40;
/// Default listen backlog (classic: 20).
pub const DEFAULT_BACKLOG: u64 = 20;
/// Default IDENT timeout in seconds (classic: 26).
pub const DEFAULT_IDENT_TIMEOUT: u64 = 26;
/// Largest -c / -C accepted.
pub const MAX_LIMIT: u64 = 100_000;
/// Longest -B banner.
pub const MAX_BANNER: usize = 4096;
/// Longest -M message (one line; CR LF is added).
pub const MAX_FULL_MESSAGE: usize = 510;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verbosity {
    Quiet,
    Errors,
    Verbose,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub host: IpAddr,
    pub port: u16,
    pub program: Vec<OsString>,
    pub limit: usize,
    /// 0 = no per-IP limit.
    pub per_ip: usize,
    pub rules: Option<PathBuf>,
    /// -X: a missing rules file allows everything instead of dropping every connection.
    pub rules_optional: bool,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub verbosity: Verbosity,
    pub remote_host_lookup: bool,
    pub paranoid: bool,
    pub local_name: Option<String>,
    pub backlog: i32,
    pub nodelay: bool,
    pub banner: Vec<u8>,
    /// -M: the line (with CR LF) written to a client turned away at the `-c` or `-C`
    /// limit; empty: classic behaviour (stop accepting at `-c`, close at `-C`).
    pub full_message: Vec<u8>,
    pub print_port: bool,
    /// -r (default) / -R: ask the client's identd (RFC 1413) for TCPREMOTEINFO.
    pub ident: bool,
    /// -t: how long the IDENT query may take.
    pub ident_timeout: std::time::Duration,
}

fn number(o: &Opt, max: u64) -> Result<u64> {
    let n = o.number()?;
    if n > max {
        return Err(Error::usage(format!("-{} is at most {max}", o.letter)));
    }
    Ok(n)
}

fn id(o: &Opt) -> Result<u32> {
    u32::try_from(o.number()?).map_err(|_| Error::usage(USAGE))
}

fn env_id(name: &str) -> Result<u32> {
    let v = std::env::var(name).map_err(|_| Error::perm(format!("${name} is not set")))?;
    v.parse()
        .map_err(|_| Error::perm(format!("${name} is not a number: {v}")))
}

/// The `-M` line: its text without a line end (one given is dropped), then CR LF.
fn full_message(o: &Opt) -> Result<Vec<u8>> {
    let raw = std::os::unix::ffi::OsStringExt::into_vec(o.arg.clone().unwrap_or_default());
    let mut text: &[u8] = &raw;
    if let Some(t) = text.strip_suffix(b"\n") {
        text = t;
    }
    if let Some(t) = text.strip_suffix(b"\r") {
        text = t;
    }
    if text.is_empty() {
        return Err(Error::usage("-M needs a message"));
    }
    if text.iter().any(|&b| matches!(b, b'\r' | b'\n' | 0)) {
        return Err(Error::usage("-M is one line: no CR, LF or NUL inside"));
    }
    if text.len() > MAX_FULL_MESSAGE {
        return Err(Error::usage(format!(
            "-M is at most {MAX_FULL_MESSAGE} bytes"
        )));
    }
    Ok([text, b"\r\n"].concat())
}

/// Parse the command line.
pub fn parse(args: &[OsString]) -> Result<Config> {
    let (opts, operands) = getopt::parse(args, SPEC, USAGE)?;
    let mut c = Config {
        host: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        port: 0,
        program: Vec::new(),
        limit: DEFAULT_LIMIT as usize,
        per_ip: 0,
        rules: None,
        rules_optional: false,
        uid: None,
        gid: None,
        verbosity: Verbosity::Errors,
        remote_host_lookup: true,
        paranoid: false,
        local_name: None,
        backlog: DEFAULT_BACKLOG as i32,
        nodelay: false,
        banner: Vec::new(),
        full_message: Vec::new(),
        print_port: false,
        ident: true,
        ident_timeout: std::time::Duration::from_secs(DEFAULT_IDENT_TIMEOUT),
    };
    for o in &opts {
        match o.letter {
            '1' => c.print_port = true,
            'U' => {
                c.uid = Some(env_id("UID")?);
                c.gid = Some(env_id("GID")?);
            }
            'X' => c.rules_optional = true,
            'p' => c.paranoid = true,
            'P' => c.paranoid = false,
            'h' => c.remote_host_lookup = true,
            'H' => c.remote_host_lookup = false,
            'r' => c.ident = true,
            'R' => c.ident = false,
            // IP options are never forwarded by Linux for TCP: nothing to keep or kill.
            'o' | 'O' => {}
            'd' => c.nodelay = false,
            'D' => c.nodelay = true,
            'q' => c.verbosity = Verbosity::Quiet,
            'Q' => c.verbosity = Verbosity::Errors,
            'v' => c.verbosity = Verbosity::Verbose,
            'c' => c.limit = number(o, MAX_LIMIT)?.max(1) as usize,
            'C' => c.per_ip = number(o, MAX_LIMIT)? as usize,
            'x' => c.rules = o.arg.clone().map(PathBuf::from),
            'B' => {
                let b = o.arg.clone().unwrap_or_default();
                c.banner = std::os::unix::ffi::OsStringExt::into_vec(b);
                if c.banner.len() > MAX_BANNER {
                    return Err(Error::usage(format!("-B is at most {MAX_BANNER} bytes")));
                }
            }
            'M' => c.full_message = full_message(o)?,
            'g' => c.gid = Some(id(o)?),
            'u' => c.uid = Some(id(o)?),
            'b' => c.backlog = number(o, i32::MAX as u64)?.max(1) as i32,
            'l' => c.local_name = Some(o.text()?.to_string()),
            't' => c.ident_timeout = std::time::Duration::from_secs(number(o, 3600)?),
            _ => return Err(Error::usage(USAGE)),
        }
    }
    let [host, port, program @ ..] = operands.as_slice() else {
        return Err(Error::usage(USAGE));
    };
    if program.is_empty() {
        return Err(Error::usage(USAGE));
    }
    c.host = parse_host(&host.to_string_lossy())?;
    c.port = parse_port(&port.to_string_lossy())?;
    c.program = program.to_vec();
    Ok(c)
}

/// `0` or empty = 0.0.0.0, `::` = IPv6 any, an address, or a name resolved by the
/// system (first address).
pub fn parse_host(host: &str) -> Result<IpAddr> {
    if host.is_empty() || host == "0" {
        return Ok(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    }
    if host == "::" {
        return Ok(IpAddr::V6(Ipv6Addr::UNSPECIFIED));
    }
    if let Ok(ip) = host.parse() {
        return Ok(ip);
    }
    (host, 0)
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .map(|sa| sa.ip())
        .ok_or_else(|| Error::temp(format!("unable to figure out IP address for {host}")))
}

/// A decimal port or a service name from /etc/services.
pub fn parse_port(port: &str) -> Result<u16> {
    if let Ok(n) = port.parse() {
        return Ok(n);
    }
    let services = std::fs::read_to_string("/etc/services").unwrap_or_default();
    services
        .lines()
        .filter_map(|l| {
            let l = l.split('#').next()?;
            let mut w = l.split_whitespace();
            let name = w.next()?;
            let (num, proto) = w.next()?.split_once('/')?;
            let aliases: Vec<&str> = w.collect();
            (proto == "tcp" && (name == port || aliases.contains(&port)))
                .then(|| num.parse().ok())
                .flatten()
        })
        .next()
        .ok_or_else(|| Error::perm(format!("unable to figure out port number for {port}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<OsString> {
        s.split_whitespace().map(OsString::from).collect()
    }

    #[test]
    fn defaults_and_options() {
        let c = parse(&args("0 25 prog -x")).unwrap();
        assert_eq!(c.limit, 40);
        assert_eq!(c.port, 25);
        assert!(c.remote_host_lookup);
        assert_eq!(c.program, args("prog -x"));
        let c = parse(&args(
            "-vHD -c 2 -C1 -x r.cdb -u 65534 -g 65534 -B hi :: smtp p",
        ))
        .unwrap();
        assert_eq!(
            (c.limit, c.per_ip, c.uid, c.gid),
            (2, 1, Some(65534), Some(65534))
        );
        assert_eq!(c.host, "::".parse::<IpAddr>().unwrap());
        assert_eq!(c.port, 25);
        assert!(!c.remote_host_lookup && c.nodelay);
        assert_eq!(c.verbosity, Verbosity::Verbose);
        assert_eq!(c.banner, b"hi");
        assert!(c.full_message.is_empty(), "no -M: classic");
    }

    #[test]
    fn m_is_one_line_ended_by_crlf() {
        let with = |m: &str| {
            let mut a = args("-c 2");
            a.extend(["-M".into(), OsString::from(m)]);
            a.extend(args("0 25 p"));
            parse(&a).map(|c| c.full_message)
        };
        let line = b"421 4.3.2 too many connections, try again later\r\n".to_vec();
        assert_eq!(
            with("421 4.3.2 too many connections, try again later").unwrap(),
            line
        );
        assert_eq!(
            with("421 4.3.2 too many connections, try again later\r\n").unwrap(),
            line
        );
        assert_eq!(with("-ERR busy\n").unwrap(), b"-ERR busy\r\n");
        for bad in ["", "\r\n", "a\r\nb", "a\nb", "a\0b", &"x".repeat(511)] {
            assert!(with(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn usage_errors() {
        for bad in [
            "",
            "0 25",
            "-z 0 25 p",
            "-c x 0 25 p",
            "-u",
            "0 nosuchservice-postern p",
        ] {
            assert!(parse(&args(bad)).is_err(), "{bad}");
        }
    }
}
