//! The tcprules source (`control/tcp.smtp` and friends): `ADDRESS:allow|deny,VAR="v"`
//! lines with IPv4 and IPv6 addresses, prefixes, ranges, CIDR, `=host`, `info@`; compiled
//! to cdb records, written with the cdb writer, read back with the cdb reader, and a
//! client looked up as postern-tcpserver does.
//!
//! Input: the rules source, then optionally a `==` line and `IP [HOST [INFO]]` for the
//! client to look up.
//!
//! Round trips: every compiled record is found under its key in the cdb (the first one
//! for a duplicated key); a record's value decodes to the deny flag and the variables
//! its line set.
#![no_main]

use libfuzzer_sys::fuzz_target;
use postern_common::cdb::{Reader, Writer};
use postern_ucspi::rules::lookup::{self, Client};
use postern_ucspi::rules::source;
use std::net::IpAddr;

fuzz_target!(|data: &[u8]| {
    let parts = postern_fuzz::parts(data);
    let src = parts[0];
    for line in src.split(|&b| b == b'\n') {
        if let Ok(Some(rule)) = source::parse_line(line) {
            assert!(!rule.keys.is_empty());
            let d = lookup::decode(rule.keys[0].clone(), &rule.value);
            let sets = rule
                .value
                .split(|&b| b == 0)
                .filter(|e| e.first() == Some(&b'+'));
            assert_eq!(d.env.len(), sets.count());
        }
    }
    let Ok(records) = source::compile(src) else {
        return;
    };
    let mut w = Writer::new();
    for (k, v) in &records {
        w.add(k, v).expect("small cdb");
    }
    let bytes = w.finish().expect("small cdb");
    let reader = Reader::from_bytes(&bytes);
    for (k, _) in &records {
        let all = reader.find_all(k).expect("our own cdb reads");
        let want: Vec<&Vec<u8>> = records
            .iter()
            .filter(|(k2, _)| k2 == k)
            .map(|(_, v)| v)
            .collect();
        assert_eq!(all.iter().collect::<Vec<_>>(), want, "key {k:?}");
    }

    let spec = parts
        .get(1)
        .map(|p| String::from_utf8_lossy(p).into_owned());
    let mut words = spec.as_deref().unwrap_or("").split(' ');
    let ip: IpAddr = words
        .next()
        .and_then(|w| w.parse().ok())
        .unwrap_or_else(|| "192.0.2.7".parse().unwrap());
    let host = words.next();
    let info = words.next();
    let client = Client { ip, host, info };
    let decision = lookup::lookup(&reader, &client).expect("our own cdb reads");
    if let Some(key) = &decision.key {
        assert!(
            lookup::candidate_keys(&client).contains(key),
            "matched a key that is not a candidate"
        );
        assert!(records.iter().any(|(k, _)| k == key));
    }
});
