//! The user database sources an admin edits: `control/domains`, `control/users`
//! (`address:hash:quota[:directory]`) and `control/aliases` (`address: target, target`
//! or `@domain: target`), each read through the control-file line reader, parsed line by
//! line and checked against each other.
//!
//! Input: the three files, separated by `==` lines (missing ones are empty).
//!
//! Round trips: a parsed users or aliases line written back the way postern-user writes
//! it parses to the same entry; the address and domain normalisers are idempotent.
#![no_main]

use libfuzzer_sys::fuzz_target;
use postern_common::control::parse_lines;
use postern_mailstore::{address, userdb};

fuzz_target!(|data: &[u8]| {
    let parts = postern_fuzz::parts(data);
    let text =
        |i: usize| String::from_utf8_lossy(parts.get(i).copied().unwrap_or(b"")).into_owned();
    let (domains, users, aliases) = (
        parse_lines(&text(0)),
        parse_lines(&text(1)),
        parse_lines(&text(2)),
    );

    for l in &domains {
        if let Ok(d) = address::domain(&l.text) {
            assert_eq!(
                address::domain(&d).ok().as_ref(),
                Some(&d),
                "domain not idempotent"
            );
        }
        if let Ok(a) = address::normalise(&l.text) {
            assert_eq!(
                address::normalise(&a).ok().as_ref(),
                Some(&a),
                "address not idempotent"
            );
        }
    }
    for l in &users {
        let Ok((addr, hash, quota, dir)) = userdb::parse_user_line(&l.text) else {
            continue;
        };
        assert!(!dir.starts_with('/') && !dir.split('/').any(|c| c == ".."));
        let q = quota.unwrap_or(0);
        let line = format!("{addr}:{hash}:{q}:{dir}");
        let again = userdb::parse_user_line(&line)
            .unwrap_or_else(|e| panic!("{line:?} (from {:?}) does not parse: {}", l.text, e.msg));
        assert_eq!(again, (addr, hash, quota, dir));
    }
    for l in &aliases {
        let Ok((key, targets)) = userdb::parse_alias_line(&l.text) else {
            continue;
        };
        let line = format!("{}: {}", key.key(), targets.join(", "));
        let again = userdb::parse_alias_line(&line)
            .unwrap_or_else(|e| panic!("{line:?} (from {:?}) does not parse: {}", l.text, e.msg));
        assert_eq!(again, (key, targets));
    }
    if let Ok(s) = userdb::Sources::parse(&domains, &users, &aliases) {
        for u in &s.users {
            assert!(s.user(&u.address).is_some());
            let domain = u.address.rsplit_once('@').map(|(_, d)| d).unwrap_or("");
            assert!(s.hosts(domain), "a user of a domain not hosted");
        }
    }
});
