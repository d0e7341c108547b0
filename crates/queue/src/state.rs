//! Reading postern-send's `state/ID` files (docs/queue.md, *The state file*) for
//! postern-qread. Only postern-send writes them; this reader is tolerant: unknown keys
//! are ignored, and a line it cannot use is skipped rather than failing the listing.

use postern_common::logline;
use std::io::Read;

/// Largest state file read, bytes (about [`crate::file::MAX_RECIPIENTS`] lines).
pub const MAX_STATE: u64 = 16 * 1024 * 1024;

/// One recipient's line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rcpt {
    pub addr: String,
    pub kind: String,
    pub status: String,
    pub tries: String,
    pub last: String,
}

/// A parsed state file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct State {
    pub tries: Option<u64>,
    pub next: Option<u64>,
    pub priority: bool,
    pub rcpts: Vec<Rcpt>,
}

impl State {
    /// The recipient line for `addr`, if any.
    pub fn rcpt(&self, addr: &str) -> Option<&Rcpt> {
        self.rcpts.iter().find(|r| r.addr == addr)
    }
}

/// Parse the text of a state file.
pub fn parse(text: &str) -> State {
    let mut state = State::default();
    for line in text.lines() {
        let fields = logline::parse(line);
        let get = |k: &str| logline::get(&fields, k).map(str::to_string);
        if let Some(addr) = get("rcpt") {
            let addr = addr
                .strip_prefix('<')
                .and_then(|a| a.strip_suffix('>'))
                .map(str::to_string)
                .unwrap_or(addr);
            state.rcpts.push(Rcpt {
                addr,
                kind: get("kind").unwrap_or_default(),
                status: get("status").unwrap_or_default(),
                tries: get("tries").unwrap_or_default(),
                last: get("last").unwrap_or_default(),
            });
        } else if get("v").is_some() {
            state.tries = get("tries").and_then(|t| t.parse().ok());
            state.next = get("next").and_then(|t| t.parse().ok());
            state.priority = get("priority").as_deref() == Some("1");
        }
    }
    state
}

/// Read and parse a state file; `None` if it is missing or unreadable.
pub fn read(path: &std::path::Path) -> Option<State> {
    let file = std::fs::File::open(path).ok()?;
    let mut text = String::new();
    file.take(MAX_STATE).read_to_string(&mut text).ok()?;
    Some(parse(&text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_documented_shape() {
        let text = "v=1 birth=100 tries=2 next=500 priority=1\n\
                    rcpt=<a@x.test> kind=local status=done tries=1 last=\"delivered\"\n\
                    rcpt=\"<b c@y.test>\" kind=remote status=deferred tries=2 last=\"451 try later\"\n\
                    garbage\n";
        let s = parse(text);
        assert_eq!((s.tries, s.next, s.priority), (Some(2), Some(500), true));
        assert_eq!(s.rcpts.len(), 2);
        assert_eq!(s.rcpt("b c@y.test").unwrap().last, "451 try later");
        assert_eq!(s.rcpt("a@x.test").unwrap().status, "done");
    }
}
