//! `control/smtproutes`: `domain:host[:port]`, `.suffix:host[:port]`, and
//! `:host[:port]` (the smarthost: every domain without a better line goes there — the
//! gateway mode). An empty host means "use MX for this domain" (an exception to a
//! catch-all). IPv6 relays are written in brackets: `x.test:[2001:db8::1]:2525`.
//! Lookup order: the exact domain, each `.suffix` from the longest, then the empty key.
//!
//! After the route, separated by spaces or tabs, a line may carry options (postern's own,
//! docs/postern-remote.md "Routes: TLS policy and credentials"):
//!
//! - `tls=may` (the default: opportunistic STARTTLS), `tls=encrypt` (STARTTLS required,
//!   any certificate), `tls=verify` (STARTTLS required, the certificate verified against
//!   the system's authorities or those of `ca=`, and valid for the route's host name);
//! - `ca=FILE`: the PEM file of the authorities `tls=verify` trusts, instead of the
//!   system's (a relative name is under `control/`);
//! - `auth=NAME`: authenticate (AUTH PLAIN or LOGIN) with the credentials named `NAME` in
//!   `control/smtpauth` ([`super::auth`]) — only ever inside TLS, so `auth=` makes TLS
//!   required whatever `tls=` says.
//!
//! `corp.test:mail.corp.test:25 tls=verify ca=corp-ca.pem auth=corp`, or, MX with a
//! policy: `corp.test: tls=encrypt`. A line without options means what it means to qmail.

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

/// A route's TLS policy (`tls=`), named as Postfix's `smtp_tls_security_level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TlsPolicy {
    /// STARTTLS when offered, any certificate; plain text otherwise (the default).
    #[default]
    May,
    /// STARTTLS required; any certificate.
    Encrypt,
    /// STARTTLS required; the certificate chain verified and valid for the host name.
    Verify,
}

/// The options after a route.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Options {
    pub tls: TlsPolicy,
    /// `ca=`: the authorities `tls=verify` trusts, as written (relative: under control/).
    pub ca: Option<String>,
    /// `auth=`: the name of the credentials in `control/smtpauth`.
    pub auth: Option<String>,
}

impl Options {
    /// Whether the message may only go inside TLS: `tls=encrypt`, `tls=verify`, or
    /// credentials to send (never in the clear).
    pub fn tls_required(&self) -> bool {
        self.tls != TlsPolicy::May || self.auth.is_some()
    }
}

/// One parsed smtproutes line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteLine {
    pub key: String,
    pub route: Route,
    pub options: Options,
}

fn bad(line: &Line, why: &str) -> Error {
    Error::temp(format!(
        "control/smtproutes:{}: {why}: {}",
        line.number,
        postern_common::logline::printable(&line.text)
    ))
}

/// Parse the options after a route (`tls=… ca=… auth=…`, separated by blanks).
fn parse_options(line: &Line, words: &str) -> Result<Options> {
    let mut o = Options::default();
    let (mut tls, mut ca, mut auth) = (false, false, false);
    let once = |seen: &mut bool, name: &str| {
        if std::mem::replace(seen, true) {
            Err(bad(line, &format!("{name}= given twice")))
        } else {
            Ok(())
        }
    };
    for word in words.split_whitespace() {
        let (name, value) = word
            .split_once('=')
            .ok_or_else(|| bad(line, "expected an option NAME=VALUE after the route"))?;
        match name {
            "tls" => {
                once(&mut tls, name)?;
                o.tls = match value {
                    "may" => TlsPolicy::May,
                    "encrypt" => TlsPolicy::Encrypt,
                    "verify" => TlsPolicy::Verify,
                    _ => return Err(bad(line, "tls= must be may, encrypt or verify")),
                };
            }
            "ca" => {
                once(&mut ca, name)?;
                if value.is_empty() || value.chars().any(|c| c.is_control()) {
                    return Err(bad(line, "ca= needs a file name"));
                }
                o.ca = Some(value.to_string());
            }
            "auth" => {
                once(&mut auth, name)?;
                if value.is_empty()
                    || !value
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
                {
                    return Err(bad(
                        line,
                        "auth= needs a name of letters, digits, '-', '.' and '_'",
                    ));
                }
                o.auth = Some(value.to_string());
            }
            _ => {
                return Err(bad(
                    line,
                    &format!(
                        "unknown option {}= (tls=, ca= and auth= are known)",
                        postern_common::logline::printable(name)
                    ),
                ))
            }
        }
    }
    if o.ca.is_some() && o.tls != TlsPolicy::Verify {
        return Err(bad(line, "ca= is only used with tls=verify"));
    }
    Ok(o)
}

/// Parse one line.
pub fn parse_line(line: &Line) -> Result<RouteLine> {
    let (key, rest) = line
        .text
        .split_once(':')
        .ok_or_else(|| bad(line, "expected domain:host[:port]"))?;
    let key = key.trim().to_ascii_lowercase();
    let rest = rest.trim();
    // The route ends at the first blank; options follow. A first word with `=` is an
    // option: the route is empty (MX), as in `corp.test: tls=verify`.
    let (rest, words) = match rest.split_once([' ', '\t']) {
        Some((r, w)) if !r.contains('=') => (r, w),
        _ if rest.contains('=') => ("", rest),
        _ => (rest, ""),
    };
    let options = parse_options(line, words)?;
    if rest.is_empty() {
        return Ok(RouteLine {
            key,
            route: Route::Mx,
            options,
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
        options,
    })
}

/// Parse the whole file.
pub fn parse(lines: &[Line]) -> Result<Vec<RouteLine>> {
    lines.iter().map(parse_line).collect()
}

/// The route for `domain` and its options (none: MX, opportunistic TLS).
pub fn lookup(routes: &[RouteLine], domain: &str) -> (Route, Options) {
    let domain = domain.to_ascii_lowercase();
    let find = |key: &str| {
        routes
            .iter()
            .find(|r| r.key == key)
            .map(|r| (r.route.clone(), r.options.clone()))
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
    find("").unwrap_or((Route::Mx, Options::default()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use postern_common::control::parse_lines;

    fn relay(host: &str, port: u16) -> Route {
        Route::Relay {
            host: host.into(),
            port,
        }
    }

    fn one(text: &str) -> RouteLine {
        parse_line(&parse_lines(text)[0]).unwrap_or_else(|e| panic!("{text}: {}", e.msg))
    }

    #[test]
    fn lines_and_lookup_order() {
        let routes = parse(&parse_lines(
            "x.test:relay.test\n.y.test:10.0.0.1:2525\nmx.y.test:\n:smart.test:587\nv6.test:[::1]:26\n",
        ))
        .unwrap();
        let plain = Options::default();
        assert_eq!(
            lookup(&routes, "X.test"),
            (relay("relay.test", 25), plain.clone())
        );
        assert_eq!(
            lookup(&routes, "a.b.y.test"),
            (relay("10.0.0.1", 2525), plain.clone())
        );
        assert_eq!(lookup(&routes, "mx.y.test"), (Route::Mx, plain.clone()));
        assert_eq!(
            lookup(&routes, "other.test"),
            (relay("smart.test", 587), plain.clone())
        );
        assert_eq!(
            lookup(&routes, "v6.test"),
            (relay("::1", 26), plain.clone())
        );
        assert_eq!(lookup(&routes[..1], "other.test"), (Route::Mx, plain));
    }

    #[test]
    fn qmail_lines_keep_their_meaning_and_no_tls_requirement() {
        for (text, route) in [
            ("x.test:relay.test", relay("relay.test", 25)),
            ("x.test:relay.test:2525", relay("relay.test", 2525)),
            ("x.test: relay.test:26", relay("relay.test", 26)),
            ("x.test:relay.test:", relay("relay.test", 25)),
            ("x.test:[2001:db8::1]:2525", relay("2001:db8::1", 2525)),
            (":smart.test", relay("smart.test", 25)),
            (":10.0.0.5:2525", relay("10.0.0.5", 2525)),
            ("x.test:", Route::Mx),
            ("x.test:  \t", Route::Mx),
        ] {
            let r = one(text);
            assert_eq!(r.route, route, "{text}");
            assert_eq!(r.options, Options::default(), "{text}");
            assert!(!r.options.tls_required(), "{text}");
        }
        assert_eq!(one("X.Test:relay.test").key, "x.test");
        assert_eq!(one(":smart.test").key, "");
    }

    #[test]
    fn tls_option_each_value() {
        for (word, policy, required) in [
            ("may", TlsPolicy::May, false),
            ("encrypt", TlsPolicy::Encrypt, true),
            ("verify", TlsPolicy::Verify, true),
        ] {
            let r = one(&format!("corp.test:mail.corp.test:25 tls={word}"));
            assert_eq!(r.route, relay("mail.corp.test", 25));
            assert_eq!(r.options.tls, policy);
            assert_eq!(r.options.tls_required(), required, "{word}");
        }
    }

    #[test]
    fn ca_and_auth_options_and_blanks() {
        let r = one(
            "corp.test:mail.corp.test:25 tls=verify ca=/var/postern/control/corp-ca.pem auth=corp",
        );
        assert_eq!(r.route, relay("mail.corp.test", 25));
        assert_eq!(
            r.options,
            Options {
                tls: TlsPolicy::Verify,
                ca: Some("/var/postern/control/corp-ca.pem".into()),
                auth: Some("corp".into()),
            }
        );
        // Tabs and several blanks; any order.
        let r = one(":[::1]:587\tauth=smart_host-1.x   tls=encrypt");
        assert_eq!(r.route, relay("::1", 587));
        assert_eq!(r.options.tls, TlsPolicy::Encrypt);
        assert_eq!(r.options.auth.as_deref(), Some("smart_host-1.x"));
        // auth= alone: TLS becomes required (credentials never go in the clear).
        let r = one(":smart.test auth=corp");
        assert_eq!(r.options.tls, TlsPolicy::May);
        assert!(r.options.tls_required());
        // A relative CA file name (under control/).
        assert_eq!(
            one("x.test:h tls=verify ca=tls/x.pem")
                .options
                .ca
                .as_deref(),
            Some("tls/x.pem")
        );
    }

    #[test]
    fn mx_route_with_options() {
        for text in [
            "corp.test: tls=verify",
            "corp.test:tls=verify",
            "corp.test:\ttls=verify auth=a",
        ] {
            let r = one(text);
            assert_eq!(r.route, Route::Mx, "{text}");
            assert_eq!(r.options.tls, TlsPolicy::Verify, "{text}");
        }
        let routes = parse(&parse_lines("corp.test: tls=encrypt\n:smart.test\n")).unwrap();
        let (route, options) = lookup(&routes, "corp.test");
        assert_eq!(route, Route::Mx);
        assert_eq!(options.tls, TlsPolicy::Encrypt);
        assert_eq!(lookup(&routes, "x.test").1, Options::default());
    }

    #[test]
    fn bad_lines_name_the_line() {
        for (bad, why) in [
            ("nocolon", "expected domain:host"),
            ("x.test:h:99999", "bad port"),
            ("x.test:h/x", "bad host"),
            ("x.test:[::1", "unclosed ["),
            ("x.test:h tls=always", "tls= must be may, encrypt or verify"),
            ("x.test:h tls=", "tls= must be"),
            ("x.test:h TLS=verify", "unknown option TLS="),
            ("x.test:h starttls=yes", "unknown option starttls="),
            ("x.test:h tls=verify tls=may", "tls= given twice"),
            ("x.test:h auth=a auth=b", "auth= given twice"),
            ("x.test:h tls=verify ca=a ca=b", "ca= given twice"),
            ("x.test:h verify", "expected an option NAME=VALUE"),
            ("x.test:h :25", "expected an option NAME=VALUE"),
            ("x.test:h ca=/x.pem", "ca= is only used with tls=verify"),
            (
                "x.test:h tls=encrypt ca=/x.pem",
                "ca= is only used with tls=verify",
            ),
            ("x.test:h tls=verify ca=", "ca= needs a file name"),
            ("x.test:h auth=", "auth= needs a name"),
            ("x.test:h auth=a/b", "auth= needs a name"),
            ("x.test:h/x tls=verify", "bad host"),
        ] {
            let e = parse(&parse_lines(&format!("# c\n{bad}\n"))).unwrap_err();
            assert!(
                e.msg.starts_with("control/smtproutes:2: "),
                "{bad}: {}",
                e.msg
            );
            assert!(e.msg.contains(why), "{bad}: {}", e.msg);
            assert!(e.msg.ends_with(bad), "{bad}: {}", e.msg);
        }
    }
}
