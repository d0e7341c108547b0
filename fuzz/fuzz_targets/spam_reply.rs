//! The score engines' answers as postern-scan reads them: rspamd's HTTP reply with its
//! JSON body (`/checkv2`), spamd's `SPAMD/1.1` reply with `Spam:` and its symbols, and
//! the JSON parser alone (depth-limited).
//!
//! Checks: no panic, no overflow, no unbounded work; a score that reads is a number (not
//! NaN) and its symbols are sorted; a JSON value that parses nests no deeper than the
//! limit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use postern_filter::scan::{json, rspamd, spamd};

fn depth(v: &json::Value) -> usize {
    match v {
        json::Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        json::Value::Object(members) => 1 + members.iter().map(|(_, v)| depth(v)).max().unwrap_or(0),
        _ => 0,
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(v) = json::parse(data) {
        assert!(depth(&v) <= json::MAX_DEPTH + 1);
    }
    for score in [rspamd::parse_reply(data), spamd::parse_reply(data)].into_iter().flatten() {
        assert!(!score.score.is_nan() && !score.required.is_nan());
        assert!(score.symbols.windows(2).all(|w| w[0] <= w[1]), "{:?}", score.symbols);
    }
});
