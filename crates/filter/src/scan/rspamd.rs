//! rspamd's HTTP protocol, by hand: `POST /checkv2` to its normal worker with the message
//! as the body and what the MTA knows in request headers — `IP`, `Helo`, `Hostname`,
//! `From`, one `Rcpt` per recipient, `User` (the authenticated user) and, for outbound
//! settings, `Settings-ID` — and a JSON answer: `score`, `required_score`, `action`,
//! `symbols`. HTTP/1.1 with `Connection: close`, so the answer ends where the connection
//! does; `Content-Length` bounds it when given.

use crate::scan::engines::Endpoint;
use crate::scan::json::{self, Value};
use crate::scan::spam::{Facts, Score};
use std::io::{Read, Write};
use std::time::Duration;

/// Longest answer we read (rspamd's with every symbol described is a few KiB).
pub const MAX_REPLY: u64 = 1024 * 1024;

/// A request header's value as bytes on one line: CR, LF and NUL become `?` (an address
/// from the envelope cannot break the request).
fn header_value(value: &[u8]) -> Vec<u8> {
    value
        .iter()
        .map(|&b| {
            if matches!(b, b'\r' | b'\n' | 0) {
                b'?'
            } else {
                b
            }
        })
        .collect()
}

/// The request's head: request line and headers, up to the empty line.
pub fn request_head(host: &str, message_len: usize, facts: &Facts) -> Vec<u8> {
    let mut head = format!(
        "POST /checkv2 HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: {message_len}\r\n"
    )
    .into_bytes();
    let mut header = |name: &str, value: &[u8]| {
        head.extend_from_slice(name.as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(&header_value(value));
        head.extend_from_slice(b"\r\n");
    };
    if let Some(ip) = facts.client_ip {
        header("IP", ip.as_bytes());
    }
    if let Some(helo) = facts.helo {
        header("Helo", helo.as_bytes());
    }
    if let Some(host) = facts.client_host {
        header("Hostname", host.as_bytes());
    }
    if facts.sender.is_empty() {
        header("From", b"<>");
    } else {
        header("From", facts.sender);
    }
    for r in facts.recipients {
        header("Rcpt", r);
    }
    if let Some(user) = facts.auth_user {
        header("User", user.as_bytes());
    }
    if let Some(id) = facts.settings {
        header("Settings-ID", id.as_bytes());
    }
    head.extend_from_slice(b"\r\n");
    head
}

/// Ask rspamd at `endpoint` about `message`, within `limit` for each step.
pub fn check(
    endpoint: &Endpoint,
    message: &[u8],
    facts: &Facts,
    limit: Duration,
) -> Result<Score, String> {
    let io = |e: std::io::Error| postern_common::exit::describe_io(&e);
    let host = match endpoint {
        Endpoint::Tcp(addr) => addr.as_str(),
        Endpoint::Unix(_) => "localhost",
    };
    let mut s = endpoint.connect(limit).map_err(io)?;
    s.write_all(&request_head(host, message.len(), facts))
        .map_err(io)?;
    s.write_all(message).map_err(io)?;
    s.flush().map_err(io)?;
    let mut reply = Vec::new();
    s.take(MAX_REPLY + 1).read_to_end(&mut reply).map_err(io)?;
    if reply.len() as u64 > MAX_REPLY {
        return Err(format!("answer longer than {MAX_REPLY} bytes"));
    }
    parse_reply(&reply)
}

/// The HTTP answer: status 200, then the JSON body.
pub fn parse_reply(reply: &[u8]) -> Result<Score, String> {
    let shown = |b: &[u8]| postern_common::logline::printable(&b[..b.len().min(200)]);
    let Some(end) = reply.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Err(format!("no HTTP answer: {}", shown(reply)));
    };
    let head = String::from_utf8_lossy(&reply[..end]);
    let mut body = &reply[end + 4..];
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or("");
    let code = status
        .strip_prefix("HTTP/1.")
        .and_then(|r| r.get(2..5))
        .and_then(|c| c.parse::<u16>().ok());
    if code != Some(200) {
        return Err(format!(
            "rspamd answered {}: {}",
            shown(status.as_bytes()),
            shown(body)
        ));
    }
    for line in lines {
        if let Some((name, value)) = line.split_once(':') {
            let name = name.trim();
            if name.eq_ignore_ascii_case("content-length") {
                let n: usize = value.trim().parse().map_err(|_| "bad Content-Length")?;
                if n > body.len() {
                    return Err("answer shorter than its Content-Length".into());
                }
                body = &body[..n];
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                return Err(format!("unexpected Transfer-Encoding: {}", value.trim()));
            }
        }
    }
    score(&json::parse(body)?)
}

/// The fields we use from the JSON answer.
pub fn score(v: &Value) -> Result<Score, String> {
    if let Some(e) = v.get("error").and_then(Value::as_str) {
        return Err(format!("rspamd: {}", postern_common::logline::printable(e)));
    }
    let number = |key: &str| {
        v.get(key)
            .and_then(Value::as_f64)
            .ok_or_else(|| format!("answer without {key}"))
    };
    let mut symbols: Vec<String> = match v.get("symbols") {
        Some(Value::Object(members)) => members.iter().map(|(k, _)| k.clone()).collect(),
        _ => Vec::new(),
    };
    symbols.sort();
    Ok(Score {
        score: number("score")?,
        required: number("required_score")?,
        action: Some(
            v.get("action")
                .and_then(Value::as_str)
                .ok_or("answer without action")?
                .to_string(),
        ),
        symbols,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts<'a>(recipients: &'a [Vec<u8>]) -> Facts<'a> {
        Facts {
            sender: b"",
            recipients,
            client_ip: Some("192.0.2.7"),
            client_host: None,
            helo: Some("mx.outside.test"),
            auth_user: None,
            settings: None,
        }
    }

    #[test]
    fn the_request_carries_the_envelope_one_header_each() {
        let rcpts = vec![b"a@example.test".to_vec(), b"b@exa\r\nmple.test".to_vec()];
        let mut f = facts(&rcpts);
        let head = String::from_utf8(request_head("127.0.0.1:11333", 42, &f)).unwrap();
        assert_eq!(
            head,
            "POST /checkv2 HTTP/1.1\r\nHost: 127.0.0.1:11333\r\nConnection: close\r\nContent-Length: 42\r\nIP: 192.0.2.7\r\nHelo: mx.outside.test\r\nFrom: <>\r\nRcpt: a@example.test\r\nRcpt: b@exa??mple.test\r\n\r\n"
        );
        f.sender = b"me@example.test";
        f.auth_user = Some("me");
        f.settings = Some("outbound");
        let head = String::from_utf8(request_head("x", 0, &f)).unwrap();
        assert!(head.contains("From: me@example.test\r\n"), "{head}");
        assert!(
            head.ends_with("User: me\r\nSettings-ID: outbound\r\n\r\n"),
            "{head}"
        );
    }

    #[test]
    fn reads_the_answer() {
        let body = r#"{"is_skipped":true,"score":15.0,"required_score":15.0,"action":"reject","symbols":{"GTUBE":{"name":"GTUBE","score":0.0},"A":{}},"messages":{"smtp_message":"Gtube pattern"}}"#;
        let reply = format!(
            "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: {}\r\nContent-Type: application/json\r\n\r\n{body}",
            body.len()
        );
        let s = parse_reply(reply.as_bytes()).unwrap();
        assert_eq!(s.score, 15.0);
        assert_eq!(s.required, 15.0);
        assert_eq!(s.action.as_deref(), Some("reject"));
        assert_eq!(s.symbols, vec!["A", "GTUBE"]);
    }

    #[test]
    fn anything_else_is_an_error() {
        for bad in [
            "",
            "HTTP/1.1 200 OK\r\n",
            "HTTP/1.1 500 Internal\r\n\r\n{\"error\":\"x\"}",
            "HTTP/1.1 200 OK\r\n\r\n{\"error\":\"cannot parse\"}",
            "HTTP/1.1 200 OK\r\n\r\n{\"score\":1.0}",
            "HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n{}",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
            "SPAMD/1.1 0 EX_OK\r\n\r\n",
        ] {
            assert!(parse_reply(bad.as_bytes()).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_silent_or_missing_rspamd_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let none = Endpoint::Unix(dir.path().join("none.sock"));
        assert!(check(&none, b"x", &facts(&[]), Duration::from_secs(1)).is_err());
        // Accepts and never answers: the read timeout ends it.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = Endpoint::Tcp(listener.local_addr().unwrap().to_string());
        let started = std::time::Instant::now();
        let err = check(&addr, b"x", &facts(&[]), Duration::from_millis(300)).unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(10), "{err}");
        drop(listener);
    }
}
