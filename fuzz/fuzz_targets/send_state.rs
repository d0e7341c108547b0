//! The delivery state file `state/ID` that postern-send writes and reads back after a
//! crash or restart, read by postern-send (strictly) and by postern-qread (tolerantly):
//! `key=value` words with the log-line quoting and `\xNN` escapes.
//!
//! Round trips: a state file postern-send accepts renders to text it parses to the same
//! state (`last=` cut at its documented limit), and postern-qread reads the same
//! recipients, statuses and counts from that text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use postern_common::logline;
use postern_wire::send_state::{State, Summary, MAX_LAST};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = Summary::parse(&text);
    for line in text.lines().take(8) {
        let _ = logline::parse(line);
    }
    let Ok(mut st) = State::parse(&text) else {
        return;
    };
    let rendered = st.render();
    let back = State::parse(&rendered)
        .unwrap_or_else(|e| panic!("rendered state does not parse: {e}\n{rendered}"));
    for r in &mut st.rcpts {
        if r.last.len() > MAX_LAST {
            let mut cut = MAX_LAST;
            while !r.last.is_char_boundary(cut) {
                cut -= 1;
            }
            r.last.truncate(cut);
        }
    }
    assert_eq!(back, st, "state changed through render+parse:\n{rendered}");

    let q = Summary::parse(&rendered);
    assert_eq!(q.tries, Some(u64::from(st.tries)));
    assert_eq!(q.next, Some(st.next));
    assert_eq!(q.priority, st.priority);
    assert_eq!(q.rcpts.len(), st.rcpts.len());
    for (a, b) in q.rcpts.iter().zip(&st.rcpts) {
        assert_eq!(a.addr, b.addr);
        assert_eq!(a.kind, b.channel.name());
        assert_eq!(a.status, b.status.name());
        assert_eq!(a.tries, b.tries.to_string());
        assert_eq!(a.last, b.last);
    }
});
