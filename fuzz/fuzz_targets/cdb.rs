//! The cdb reader on arbitrary bytes (a damaged or hostile `tcp.smtp.cdb`): header,
//! hash tables and records with lengths and positions that point anywhere; then a
//! client looked up the way postern-tcpserver does.
//!
//! Input: the cdb bytes. Keys tried: every candidate key of a client, and short keys
//! taken from the file itself.
//!
//! Checks: no panic, and a record too large is refused, not allocated.
#![no_main]

use libfuzzer_sys::fuzz_target;
use postern_common::cdb::{self, Reader, Writer};
use postern_ucspi::rules::lookup::{self, Client};

fuzz_target!(|data: &[u8]| {
    let reader = Reader::from_bytes(data);
    let client = Client {
        ip: "192.0.2.7".parse().unwrap(),
        host: Some("mail.example.test"),
        info: Some("ident"),
    };
    let _ = lookup::lookup(&reader, &client);
    for key in data.chunks(7).take(32) {
        if let Ok(values) = reader.find_all(key) {
            for v in &values {
                assert!(v.len() as u64 <= u64::from(cdb::MAX_RECORD));
            }
            assert_eq!(
                reader.find(key).expect("found once").as_ref(),
                values.first()
            );
        }
    }
    let _ = reader.find(b"");

    // The same bytes as the records of a new cdb: everything written is found.
    let mut w = Writer::new();
    let records: Vec<(&[u8], &[u8])> = data
        .split(|&b| b == b'\n')
        .map(|l| match l.iter().position(|&b| b == b':') {
            Some(i) => (&l[..i], &l[i + 1..]),
            None => (l, &b""[..]),
        })
        .collect();
    for (k, v) in &records {
        w.add(k, v).expect("small cdb");
    }
    let built = w.finish().expect("small cdb");
    let r = Reader::from_bytes(&built);
    for (k, v) in &records {
        let first = records
            .iter()
            .find(|(k2, _)| k2 == k)
            .map(|(_, v)| v.to_vec());
        assert_eq!(r.find(k).expect("reads"), first);
        assert!(r.find_all(k).expect("reads").contains(&v.to_vec()));
    }
    assert_eq!(cdb::hash(b""), 5381);
});
