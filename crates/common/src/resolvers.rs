//! Which DNS servers to ask: `$POSTERN_HOME/control/resolvers` — one `ip`, `ip:port`,
//! bare IPv6 `::1` or `[ipv6]:port` per line — or, when that file is missing, the
//! `nameserver` lines of /etc/resolv.conf. Shared by every program that resolves
//! (postern-tcpserver, postern-rblsmtpd, postern-remote, posternctl); each builds its own
//! resolver from the list, so this module needs no DNS library.

use crate::control::Control;
use crate::exit::{Error, Result, ResultExt};
use std::net::{IpAddr, SocketAddr};

/// The system's resolver configuration, used when control/resolvers is missing.
pub const RESOLV_CONF: &str = "/etc/resolv.conf";
/// Most servers used from either file.
pub const MAX_SERVERS: usize = 16;

/// Parse one `control/resolvers` line.
pub fn parse_server(text: &str) -> Option<SocketAddr> {
    if let Ok(sa) = text.parse::<SocketAddr>() {
        return Some(sa);
    }
    text.parse::<IpAddr>()
        .ok()
        .map(|ip| SocketAddr::new(ip, 53))
}

/// The servers named in the instance's control/resolvers, else in /etc/resolv.conf. A
/// bad line is temporary trouble naming `control/resolvers:LINE`.
pub fn servers(control: &Control) -> Result<Vec<SocketAddr>> {
    if let Some(lines) = control.lines("resolvers")? {
        let mut out = Vec::new();
        for line in lines.iter().take(MAX_SERVERS) {
            let sa = parse_server(&line.text).ok_or_else(|| {
                Error::temp(format!(
                    "control/resolvers:{}: not ip[:port]: {}",
                    line.number,
                    crate::logline::printable(&line.text)
                ))
            })?;
            out.push(sa);
        }
        return Ok(out);
    }
    let text = match std::fs::read_to_string(RESOLV_CONF) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).temp(format!("unable to read {RESOLV_CONF}")),
    };
    Ok(parse_resolv_conf(&text))
}

/// The `nameserver` lines of a resolv.conf (scoped IPv6 addresses are skipped).
pub fn parse_resolv_conf(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            (words.next() == Some("nameserver"))
                .then(|| words.next())
                .flatten()
        })
        .filter_map(|w| w.parse::<IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 53))
        .take(MAX_SERVERS)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_lines() {
        assert_eq!(
            parse_server("127.0.0.1"),
            Some("127.0.0.1:53".parse().unwrap())
        );
        assert_eq!(
            parse_server("127.0.0.1:5353"),
            Some("127.0.0.1:5353".parse().unwrap())
        );
        assert_eq!(
            parse_server("[::1]:5353"),
            Some("[::1]:5353".parse().unwrap())
        );
        assert_eq!(parse_server("::1"), Some("[::1]:53".parse().unwrap()));
        assert_eq!(parse_server("dns.example"), None);
    }

    #[test]
    fn resolv_conf() {
        let s = parse_resolv_conf(
            "# x\nsearch a.test\nnameserver 10.0.0.1\nnameserver fe80::1%eth0\nnameserver ::1\n",
        );
        assert_eq!(
            s,
            vec!["10.0.0.1:53".parse().unwrap(), "[::1]:53".parse().unwrap()]
        );
    }

    #[test]
    fn bad_resolvers_line_is_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("resolvers"), "127.0.0.1:53\nnot-an-ip\n").unwrap();
        let err = servers(&Control::at(dir.path())).unwrap_err();
        assert_eq!(err.msg, "control/resolvers:2: not ip[:port]: not-an-ip");
    }
}
