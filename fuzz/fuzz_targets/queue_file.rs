//! Queue files and envelopes: the `PQ1` queue file (prefix, envelope block with `F`, `T`
//! and `I` records, padding, message offset) that postern-send and postern-qread read
//! from disk; the qmail-queue protocol envelope that postern-queue reads on fd 1; and the
//! same envelope as postern-scan parses it.
//!
//! Round trips: a decoded envelope that passes `check` encodes (with or without padding)
//! to a file that decodes to the same envelope; a protocol envelope re-encodes to
//! itself; postern-scan's envelope (UTF-8 addresses) re-encodes to the bytes it came from.
#![no_main]

use libfuzzer_sys::fuzz_target;
use postern_filter::scan::envelope::Envelope as ScanEnvelope;
use postern_wire::queue_file::{self as file, Envelope};
use postern_queue::protocol;

fuzz_target!(|data: &[u8]| {
    // A whole queue file, and the same bytes as a bare envelope block.
    if let Ok((env, offset)) = file::parse(data) {
        assert!(offset <= data.len() as u64);
        round_trip(&env, &data[offset as usize..]);
    }
    if let Ok(env) = Envelope::decode(data) {
        round_trip(&env, b"Subject: x\n\nbody\n");
    }
    let _ = file::parse_prefix(data);

    // The qmail-queue protocol on fd 1.
    let mut input = data;
    if let Ok((sender, rcpts)) = protocol::read_envelope(&mut input) {
        let consumed = data.len() - input.len();
        let bytes = protocol::encode_envelope(&sender, &rcpts);
        assert_eq!(
            bytes,
            &data[..consumed],
            "the envelope re-encodes to itself"
        );
        assert!(sender.len() <= file::MAX_ADDRESS);
        assert!(rcpts
            .iter()
            .all(|r| r.len() <= file::MAX_ADDRESS && !r.contains(&0)));
        assert!(rcpts.len() <= file::MAX_RECIPIENTS);
    }

    // postern-scan's reading of the same protocol. It holds the addresses as text and
    // passes `to_bytes()` on to the queue: byte for byte the envelope it was given, as
    // long as every address is UTF-8. (Other bytes become U+FFFD: an open finding, see
    // docs/security.md, Fuzzing.)
    if let Ok(env) = ScanEnvelope::parse(data) {
        assert!(!env.recipients.is_empty());
        let utf8 = data
            .split(|&b| b == 0)
            .take(1 + env.recipients.len())
            .all(|r| std::str::from_utf8(r).is_ok());
        if utf8 {
            let bytes = env.to_bytes();
            assert!(
                data.starts_with(&bytes),
                "postern-scan changes the envelope"
            );
            let again = ScanEnvelope::parse(&bytes).expect("re-encoded envelope parses");
            assert_eq!(again, env);
        }
    }
});

fn round_trip(env: &Envelope, message: &[u8]) {
    if env.check().is_err() {
        return;
    }
    let whole = file::encode_file(env, message);
    let (back, offset) = file::parse(&whole).expect("an encoded queue file parses");
    assert_eq!(&back, env);
    assert_eq!(&whole[offset as usize..], message);
    let padded = file::header(env, 4096);
    assert!(padded.len() >= 4096);
    let (back, offset) = file::parse(&padded).expect("a padded header parses");
    assert_eq!(&back, env);
    assert_eq!(offset as usize, padded.len());
}
