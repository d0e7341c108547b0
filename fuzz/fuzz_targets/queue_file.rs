//! Queue files and envelopes: the `PQ1` queue file (prefix, envelope block with `F`, `T`
//! and `I` records, padding, message offset) that postern-send and postern-qread read
//! from disk; the qmail-queue protocol envelope that postern-queue and postern-scan read
//! on fd 1 (one reader, `postern_wire::qmail_queue::Envelope::read`).
//!
//! Round trips: a decoded envelope that passes `check` encodes (with or without padding)
//! to a file that decodes to the same envelope; a protocol envelope, whatever its bytes,
//! re-encodes to exactly the bytes it was read from — what postern-scan hands on to
//! postern-queue is what it was given.
#![no_main]

use libfuzzer_sys::fuzz_target;
use postern_wire::qmail_queue::Envelope as ProtocolEnvelope;
use postern_wire::queue_file::{self as file, Envelope};

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

    // The qmail-queue protocol on fd 1, as postern-queue and postern-scan read it.
    let mut input = data;
    if let Ok(env) = ProtocolEnvelope::read(&mut input) {
        let consumed = data.len() - input.len();
        assert_eq!(
            env.encode(),
            &data[..consumed],
            "the envelope re-encodes to itself"
        );
        let again = ProtocolEnvelope::read(&mut &data[..consumed]).expect("re-read");
        assert_eq!(again, env);
        assert!(env.sender.len() <= file::MAX_ADDRESS && !env.sender.contains(&0));
        assert!(env
            .recipients
            .iter()
            .all(|r| r.len() <= file::MAX_ADDRESS && !r.contains(&0)));
        assert!(env.recipients.len() <= file::MAX_RECIPIENTS);
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
