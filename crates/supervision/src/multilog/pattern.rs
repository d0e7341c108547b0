//! multilog's pattern language, byte for byte as daemontools 0.76 matches:
//! a pattern is matched against the whole line (timestamp included); `*` matches the
//! shortest run of bytes up to the next pattern byte, a trailing `*` matches the rest of
//! the line, and every other byte matches itself. There is no backtracking, so `*a`
//! does not match `aXa` (the `*` stops at the first `a`), exactly as the classic tool.

/// Whether `line` (without its newline) matches `pattern`.
pub fn matches(pattern: &[u8], line: &[u8]) -> bool {
    let mut p = 0;
    let mut l = 0;
    loop {
        let Some(&ch) = pattern.get(p) else {
            return l == line.len();
        };
        p += 1;
        if ch == b'*' {
            // The byte after the star is the one to stop at; none means "anything".
            let Some(&stop) = pattern.get(p) else {
                return true;
            };
            match line[l..].iter().position(|&b| b == stop) {
                Some(skip) => l += skip,
                None => return false,
            }
            continue;
        }
        if line.get(l) != Some(&ch) {
            return false;
        }
        l += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn plain_bytes_match_the_whole_line_only() {
        assert!(matches(b"abc", b"abc"));
        assert!(!matches(b"abc", b"abcd"));
        assert!(!matches(b"abcd", b"abc"));
        assert!(matches(b"", b""));
        assert!(!matches(b"", b"x"));
    }

    #[test]
    fn trailing_star_matches_anything() {
        assert!(matches(b"*", b""));
        assert!(matches(b"*", b"anything at all"));
        assert!(matches(b"fatal: *", b"fatal: disk on fire"));
        assert!(!matches(b"fatal: *", b"warning: fatal: x"));
    }

    #[test]
    fn star_stops_at_the_first_occurrence_of_the_next_byte() {
        assert!(matches(b"* fatal: *", b"@400000005f000000 fatal: x"));
        assert!(matches(b"*error*", b"an error here"));
        assert!(!matches(b"*error*", b"no problem"));
        // No backtracking: the star stops at the first 'a', leaving "Xa" unmatched.
        assert!(!matches(b"*a", b"aXa"));
        assert!(matches(b"*a", b"XXa"));
        // "*x" needs an x and the line to end right there.
        assert!(!matches(b"*x", b"axb"));
    }

    #[test]
    fn a_star_after_a_star_is_a_literal_stop_byte() {
        // As in 0.76: the first star scans for the byte '*', the second matches the rest.
        assert!(matches(b"**", b"a*b"));
        assert!(!matches(b"**", b"ab"));
    }

    #[test]
    fn bytes_are_not_text() {
        assert!(matches(b"*\xff*", b"a\xffb"));
        assert!(matches(b"a\0*", b"a\0zzz"));
    }
}
