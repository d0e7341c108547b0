//! Cutting the input into lines the way multilog sees them: the first
//! [`HEAD_LIMIT`] bytes of a line (the timestamp included) are its *head*, which decides
//! selection and feeds `e` and `=`; the rest of an overlong line is its *tail*, streamed
//! to the selected directories without being held in memory. Memory stays bounded
//! whatever the input.
//!
//! The splitter is fed arbitrary chunks and calls a [`Sink`] for each piece, so feeding
//! byte by byte gives the same calls (joined) as feeding everything at once.

/// Bytes of a line that selection sees (stamp included, newline excluded).
pub const HEAD_LIMIT: usize = 1000;

/// Where the pieces of each line go, in this order: one `head`, any `tail`s, one `end`.
pub trait Sink {
    /// The line's head (at most [`HEAD_LIMIT`] bytes, no newline).
    fn head(&mut self, head: &[u8]);
    /// More bytes of an overlong line (no newline).
    fn tail(&mut self, bytes: &[u8]);
    /// The line ended (its newline, or end of input).
    fn end(&mut self);
}

/// Where the splitter is within a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Between lines.
    Boundary,
    /// Collecting the head.
    Head,
    /// Head delivered; streaming the tail.
    Tail,
}

/// The line splitter. `stamp` gives the prefix for a new line (empty without `t`); it is
/// called when the line's first byte arrives.
#[derive(Debug)]
pub struct Splitter {
    head: Vec<u8>,
    state: State,
}

impl Default for Splitter {
    fn default() -> Self {
        Splitter {
            head: Vec::with_capacity(HEAD_LIMIT),
            state: State::Boundary,
        }
    }
}

impl Splitter {
    /// Whether the splitter is between lines (nothing of a line read yet).
    pub fn at_boundary(&self) -> bool {
        self.state == State::Boundary
    }

    /// Feed a chunk of input.
    pub fn feed(
        &mut self,
        mut data: &[u8],
        stamp: &mut dyn FnMut() -> Vec<u8>,
        sink: &mut dyn Sink,
    ) {
        while !data.is_empty() {
            match self.state {
                State::Boundary => {
                    self.head.clear();
                    let prefix = stamp();
                    self.head
                        .extend_from_slice(&prefix[..prefix.len().min(HEAD_LIMIT)]);
                    self.state = State::Head;
                    self.head_full(sink);
                }
                State::Head => {
                    let room = HEAD_LIMIT - self.head.len();
                    let take = &data[..data.len().min(room)];
                    match take.iter().position(|&b| b == b'\n') {
                        Some(nl) => {
                            self.head.extend_from_slice(&take[..nl]);
                            data = &data[nl + 1..];
                            sink.head(&self.head);
                            sink.end();
                            self.state = State::Boundary;
                        }
                        None => {
                            self.head.extend_from_slice(take);
                            data = &data[take.len()..];
                            self.head_full(sink);
                        }
                    }
                }
                State::Tail => match data.iter().position(|&b| b == b'\n') {
                    Some(nl) => {
                        if nl > 0 {
                            sink.tail(&data[..nl]);
                        }
                        sink.end();
                        data = &data[nl + 1..];
                        self.state = State::Boundary;
                    }
                    None => {
                        sink.tail(data);
                        data = &[];
                    }
                },
            }
        }
    }

    /// End of input: a final line without a newline gets one.
    pub fn finish(&mut self, sink: &mut dyn Sink) {
        match self.state {
            State::Boundary => {}
            State::Head => {
                sink.head(&self.head);
                sink.end();
            }
            State::Tail => sink.end(),
        }
        self.state = State::Boundary;
    }

    /// A head that reached the limit is delivered at once; the rest is tail.
    fn head_full(&mut self, sink: &mut dyn Sink) {
        if self.head.len() >= HEAD_LIMIT {
            sink.head(&self.head);
            self.state = State::Tail;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records the calls as text: `H(...)`, `T(...)`, `E`.
    #[derive(Default)]
    struct Record(Vec<u8>);

    impl Sink for Record {
        fn head(&mut self, head: &[u8]) {
            self.0.extend_from_slice(b"H(");
            self.0.extend_from_slice(head);
            self.0.push(b')');
        }
        fn tail(&mut self, bytes: &[u8]) {
            self.0.extend_from_slice(b"T(");
            self.0.extend_from_slice(bytes);
            self.0.push(b')');
        }
        fn end(&mut self) {
            self.0.push(b'E');
        }
    }

    /// Merge adjacent tails so chunked and whole feeding compare equal.
    fn normalise(calls: &[u8]) -> Vec<u8> {
        let text = String::from_utf8_lossy(calls).replace(")T(", "");
        text.into_bytes()
    }

    fn run(input: &[u8], chunk: usize, stamp: &[u8]) -> Vec<u8> {
        let mut s = Splitter::default();
        let mut rec = Record::default();
        let mut st = || stamp.to_vec();
        for piece in input.chunks(chunk.max(1)) {
            s.feed(piece, &mut st, &mut rec);
        }
        s.finish(&mut rec);
        normalise(&rec.0)
    }

    #[test]
    fn short_lines_are_one_head_each() {
        assert_eq!(run(b"a\nbc\n\n", 100, b""), b"H(a)EH(bc)EH()E");
    }

    #[test]
    fn the_stamp_starts_every_line_and_counts_in_the_head() {
        assert_eq!(run(b"a\n\n", 100, b"@x "), b"H(@x a)EH(@x )E");
    }

    #[test]
    fn a_final_line_without_newline_gets_one() {
        assert_eq!(run(b"a\nlast", 100, b""), b"H(a)EH(last)E");
        assert_eq!(run(b"", 100, b"@x "), b"");
    }

    #[test]
    fn long_lines_split_into_head_and_tail() {
        let mut input = vec![b'x'; 1500];
        input.push(b'\n');
        input.extend_from_slice(b"next\n");
        let out = run(&input, 4096, b"@s ");
        let mut want = b"H(@s ".to_vec();
        want.extend(std::iter::repeat_n(b'x', 997));
        want.extend_from_slice(b")T(");
        want.extend(std::iter::repeat_n(b'x', 503));
        want.extend_from_slice(b")EH(@s next)E");
        assert_eq!(out, normalise(&want));
    }

    #[test]
    fn a_line_of_exactly_the_limit_has_no_tail() {
        let mut input = vec![b'y'; HEAD_LIMIT];
        input.push(b'\n');
        let mut want = b"H(".to_vec();
        want.extend(std::iter::repeat_n(b'y', HEAD_LIMIT));
        want.extend_from_slice(b")E");
        assert_eq!(run(&input, 7, b""), want);
    }

    #[test]
    fn byte_at_a_time_gives_the_same_calls_as_whole_input() {
        let mut input = b"one\ntwo\n\nthree".to_vec();
        input.extend(std::iter::repeat_n(b'z', 2500));
        input.extend_from_slice(b"\nfour\n");
        let whole = run(&input, input.len(), b"@t ");
        for chunk in [1, 2, 3, 999, 1000, 1001] {
            assert_eq!(run(&input, chunk, b"@t "), whole, "chunk {chunk}");
        }
    }

    #[test]
    fn the_stamp_is_taken_at_the_first_byte_of_each_line() {
        let mut s = Splitter::default();
        let mut rec = Record::default();
        let mut n = 0;
        let mut st = || {
            n += 1;
            format!("{n} ").into_bytes()
        };
        s.feed(b"a\nb", &mut st, &mut rec);
        assert!(!s.at_boundary());
        s.feed(b"\n", &mut st, &mut rec);
        assert!(s.at_boundary());
        assert_eq!(rec.0, b"H(1 a)EH(2 b)E");
    }
}
