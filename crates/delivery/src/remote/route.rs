//! `control/smtproutes` (interop §6.3): `domain:host[:port]`, `.suffix:host[:port]`, and
//! `:host[:port]` (the smarthost: every domain without a better line goes there — the
//! gateway mode). An empty host means "use MX for this domain" (an exception to a
//! catch-all). IPv6 relays are written in brackets: `x.test:[2001:db8::1]:2525`.
//! Lookup order: the exact domain, each `.suffix` from the longest, then the empty key.

use postern_common::control::Line;
use postern_common::{Error, Result};

/// The SMTP port when a route gives none.
pub const DEFAULT_PORT: u16 = 25;

/// Where mail for a domain goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Look up MX (then A/AAAA) for the domain.
    Mx,
    /// A fixed relay host (name or IP literal) and port.
    Relay { host: String, port: u16 },
}

/// One parsed smtproutes line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteLine {
    pub key: String,
    pub route: Route,
}

fn bad(line: &Line, why: &str) -> Error {
    Error::temp(format!(
        "control/smtproutes:{}: {why}: {}",
        line.number,
        postern_common::logline::printable(&line.text)
    ))
}

/// Parse one line.
pub fn parse_line(line: &Line) -> Result<RouteLine> {
    let (key, rest) = line
        .text
        .split_once(':')
        .ok_or_else(|| bad(line, "expected domain:host[:port]"))?;
    let key = key.trim().to_ascii_lowercase();
    let rest = rest.trim();
    if rest.is_empty() {
        return Ok(RouteLine {
            key,
            route: Route::Mx,
        });
    }
    let (host, port) = if let Some(inner) = rest.strip_prefix('[') {
        let (h, after) = inner
            .split_once(']')
            .ok_or_else(|| bad(line, "unclosed ["))?;
        (h.to_string(), after.strip_prefix(':'))
    } else {
        match rest.split_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (rest.to_string(), None),
        }
    };
    let port = match port {
        None | Some("") => DEFAULT_PORT,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|&p| p != 0)
            .ok_or_else(|| bad(line, "bad port"))?,
    };
    if host.is_empty()
        || !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:_".contains(&b))
    {
        return Err(bad(line, "bad host"));
    }
    Ok(RouteLine {
        key,
        route: Route::Relay { host, port },
    })
}

/// Parse the whole file.
pub fn parse(lines: &[Line]) -> Result<Vec<RouteLine>> {
    lines.iter().map(parse_line).collect()
}

/// The route for `domain`.
pub fn lookup(routes: &[RouteLine], domain: &str) -> Route {
    let domain = domain.to_ascii_lowercase();
    let find = |key: &str| {
        routes
            .iter()
            .find(|r| r.key == key)
            .map(|r| r.route.clone())
    };
    if let Some(r) = find(&domain) {
        return r;
    }
    let mut rest = domain.as_str();
    while let Some(dot) = rest.find('.') {
        let suffix = &rest[dot..];
        if let Some(r) = find(suffix) {
            return r;
        }
        rest = &rest[dot + 1..];
    }
    find("").unwrap_or(Route::Mx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use postern_common::control::parse_lines;

    #[test]
    fn lines_and_lookup_order() {
        let routes = parse(&parse_lines(
            "x.test:relay.test\n.y.test:10.0.0.1:2525\nmx.y.test:\n:smart.test:587\nv6.test:[::1]:26\n",
        ))
        .unwrap();
        assert_eq!(
            lookup(&routes, "X.test"),
            Route::Relay {
                host: "relay.test".into(),
                port: 25
            }
        );
        assert_eq!(
            lookup(&routes, "a.b.y.test"),
            Route::Relay {
                host: "10.0.0.1".into(),
                port: 2525
            }
        );
        assert_eq!(lookup(&routes, "mx.y.test"), Route::Mx);
        assert_eq!(
            lookup(&routes, "other.test"),
            Route::Relay {
                host: "smart.test".into(),
                port: 587
            }
        );
        assert_eq!(
            lookup(&routes, "v6.test"),
            Route::Relay {
                host: "::1".into(),
                port: 26
            }
        );
        assert_eq!(lookup(&routes[..1], "other.test"), Route::Mx);
    }

    #[test]
    fn bad_lines_name_the_line() {
        for bad in ["nocolon", "x.test:h:99999", "x.test:h/x", "x.test:[::1"] {
            let e = parse(&parse_lines(&format!("# c\n{bad}\n"))).unwrap_err();
            assert!(e.msg.starts_with("control/smtproutes:2:"), "{}", e.msg);
        }
    }
}
