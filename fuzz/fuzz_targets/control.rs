//! Control files as every program reads them (`control::parse_lines`: comments, blank
//! lines, trailing white space, CRLF), and the one-value-per-line formats built on them
//! that have their own parser: `control/resolvers` (`ip`, `ip:port`, `[ipv6]:port`) and
//! /etc/resolv.conf's `nameserver` lines.
//!
//! Checks: every line kept is non-empty, trimmed, not a comment, and its number points
//! at the input line it came from, in increasing order.
#![no_main]

use libfuzzer_sys::fuzz_target;
use postern_common::control::parse_lines;
use postern_common::resolvers::{parse_resolv_conf, parse_server, MAX_SERVERS};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let raw: Vec<&str> = text.split('\n').collect();
    let lines = parse_lines(&text);
    let mut last = 0;
    for l in &lines {
        assert!(l.number > last, "line numbers go backwards");
        last = l.number;
        assert!(!l.text.is_empty());
        assert!(!l.text.starts_with('#'));
        assert!(!l.text.starts_with([' ', '\t']) && !l.text.ends_with([' ', '\t', '\r']));
        assert!(!l.text.contains('\n'));
        assert!(raw[l.number - 1].contains(l.text.as_str()));
        if let Some(sa) = parse_server(&l.text) {
            // What the file says is what is used: the address parses back the same.
            assert_eq!(parse_server(&sa.to_string()), Some(sa));
        }
    }
    // A line dropped is blank or a comment.
    let kept: Vec<usize> = lines.iter().map(|l| l.number).collect();
    for (i, r) in raw.iter().enumerate() {
        if !kept.contains(&(i + 1)) {
            let t = r.trim_matches([' ', '\t', '\r']);
            assert!(
                t.is_empty() || t.starts_with('#'),
                "line {} dropped: {r:?}",
                i + 1
            );
        }
    }
    let servers = parse_resolv_conf(&text);
    assert!(servers.len() <= MAX_SERVERS);
    assert!(servers.iter().all(|s| s.port() == 53));
});
