//! TAI64N as the supervision tools and postern's log readers meet it: `@` + 24 hex
//! labels at the start of log lines (multilog, posternctl report, the rate limiter),
//! the 12-byte packed stamp, the `supervise/status` record in its 18-, 20- and 40-byte
//! layouts (ours, daemontools-encore, runit) with svstat's description, and
//! postern-tai64nlocal's streaming converter.
//!
//! Round trips: label -> stamp -> label (lower-case), pack/unpack, status file
//! parse/to_bytes; the converter gives the same output whether fed at once or in pieces.
#![no_main]

use libfuzzer_sys::fuzz_target;
use postern_common::tai64n::Tai64n;
use postern_supervision::status::{StatusFile, CLASSIC_LEN, EXTENDED_LEN, WITH_LOG_LEN};
use postern_supervision::svstat;
use postern_supervision::tai64nlocal::Converter;

fuzz_target!(|data: &[u8]| {
    if let Some(t) = Tai64n::parse_label(data) {
        let label = t.label();
        assert_eq!(label.as_bytes(), data[..25].to_ascii_lowercase());
        assert_eq!(Tai64n::parse_label(label.as_bytes()), Some(t));
        let _ = t.format_local();
        let _ = t.unix_secs();
    }
    if let Some(b) = data.first_chunk::<12>() {
        let t = Tai64n::unpack(b);
        assert_eq!(&t.pack(), b);
        assert_eq!(Tai64n::parse_label(t.label().as_bytes()), Some(t));
        assert_eq!(Tai64n::from_unix(t.unix_secs(), t.nanos), t);
    }

    match StatusFile::parse(data) {
        Ok(f) => {
            let bytes = f.to_bytes();
            let want = if data.len() >= WITH_LOG_LEN {
                WITH_LOG_LEN
            } else if data.len() >= EXTENDED_LEN {
                EXTENDED_LEN
            } else {
                CLASSIC_LEN
            };
            assert_eq!(bytes.len(), want);
            // Only the paused byte may change (forced to 0 without a process).
            let again = StatusFile::parse(&bytes).expect("written status parses");
            assert_eq!(again.to_bytes(), bytes);
            let now = Tai64n::unpack(data[data.len() - 12..].try_into().unwrap());
            let _ = svstat::describe(&f.main(), data[0] & 1 != 0, now);
            if let Some(log) = f.log() {
                let _ = svstat::describe(&log, true, now);
            }
        }
        Err(_) => assert!(data.len() < CLASSIC_LEN),
    }

    let mut whole = Vec::new();
    let mut c = Converter::default();
    c.feed(data, &mut whole);
    c.finish(&mut whole);
    let cut = 1 + data.last().copied().unwrap_or(0) as usize % 13;
    let mut pieces = Vec::new();
    let mut c = Converter::default();
    for p in data.chunks(cut) {
        c.feed(p, &mut pieces);
    }
    c.finish(&mut pieces);
    assert_eq!(whole, pieces, "tai64nlocal depends on the reads");
    // Lines that do not start with a label pass through byte for byte.
    if !data.contains(&b'@') {
        assert_eq!(whole, data);
    }
});
