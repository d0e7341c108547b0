//! What postern-checkpassword reads on descriptor 3 (the checkpassword interface):
//! `user NUL password NUL [timestamp NUL]`, at most 512 bytes.
//!
//! Round trip: a request written back in the interface's form parses to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use postern_mailstore::checkpassword::{parse_request, MAX_INPUT};

fuzz_target!(|data: &[u8]| {
    let input = &data[..data.len().min(MAX_INPUT)];
    let Some(req) = parse_request(input) else {
        return;
    };
    assert!(!req.user.contains(&0) && !req.password.contains(&0));
    let mut again = req.user.clone();
    again.push(0);
    again.extend_from_slice(&req.password);
    again.push(0);
    assert_eq!(parse_request(&again), Some(req.clone()));
    again.extend_from_slice(b"<1.2@example.test>\0");
    assert_eq!(parse_request(&again), Some(req));
});
