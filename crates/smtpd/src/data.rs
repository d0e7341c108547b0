//! The message text of DATA: dot-unstuffing, the end-of-data line, hop counting and
//! the size limit. Lines arrive from [`crate::line`] already checked for framing.
//!
//! Only a line that is exactly `.` ends the data (RFC 5321 §4.1.1.4); a leading dot on
//! any other line is removed (§4.5.2). `Received:` and `Delivered-To:` header lines are
//! counted as hops, as qmail does; more than [`MAX_HOPS`] means a mail loop. The size
//! is counted as the client sent it (CR LF included, before unstuffing), in 64 bits with
//! saturation, so no `databytes` value and no message length can overflow it.

/// Most `Received:` / `Delivered-To:` lines a message may carry (RFC 5321 §6.3).
pub const MAX_HOPS: usize = 100;

/// What one DATA line is.
#[derive(Debug, PartialEq, Eq)]
pub enum Line<'a> {
    /// Message text, unstuffed, without its line end.
    Text(&'a [u8]),
    /// The `.` line: the data is complete.
    End,
}

/// The running state of one DATA transfer.
#[derive(Debug, Clone)]
pub struct Data {
    /// Bytes received so far, CR LF counted.
    pub size: u64,
    /// Hop header lines seen.
    pub hops: usize,
    /// Set when a text line was longer than the limit.
    pub too_long: bool,
    limit: u64,
    in_header: bool,
}

impl Data {
    /// `limit` is the largest message accepted, 0 for none.
    pub fn new(limit: u64) -> Self {
        Data {
            size: 0,
            hops: 0,
            too_long: false,
            limit,
            in_header: true,
        }
    }

    /// Classify one line (as read, without CR LF) and update the counts.
    pub fn line<'a>(&mut self, raw: &'a [u8]) -> Line<'a> {
        if raw == b"." {
            return Line::End;
        }
        self.size = self.size.saturating_add(raw.len() as u64 + 2);
        let text = raw.strip_prefix(b".").unwrap_or(raw);
        if self.in_header {
            if text.is_empty() {
                self.in_header = false;
            } else if starts_with_ignore_case(text, b"received:")
                || starts_with_ignore_case(text, b"delivered-to:")
            {
                self.hops += 1;
            }
        }
        Line::Text(text)
    }

    /// A long line seen (it was consumed, not stored).
    pub fn long_line(&mut self) {
        self.too_long = true;
        self.size = self.size.saturating_add(crate::line::MAX_TEXT as u64);
    }

    pub fn too_big(&self) -> bool {
        self.limit > 0 && self.size > self.limit
    }

    pub fn too_many_hops(&self) -> bool {
        self.hops > MAX_HOPS
    }

    /// Whether anything so far means the message will be refused (stop passing it on).
    pub fn doomed(&self) -> bool {
        self.too_big() || self.too_many_hops() || self.too_long
    }
}

fn starts_with_ignore_case(text: &[u8], prefix: &[u8]) -> bool {
    text.len() >= prefix.len() && text[..prefix.len()].eq_ignore_ascii_case(prefix)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unstuffing_and_the_end() {
        let mut d = Data::new(0);
        assert_eq!(d.line(b"Subject: x"), Line::Text(b"Subject: x"));
        assert_eq!(d.line(b""), Line::Text(b""));
        assert_eq!(d.line(b".."), Line::Text(b"."));
        assert_eq!(d.line(b"..x"), Line::Text(b".x"));
        assert_eq!(d.line(b".x"), Line::Text(b"x"));
        assert_eq!(d.line(b" ."), Line::Text(b" ."));
        assert_eq!(d.line(b"."), Line::End);
    }

    #[test]
    fn hops_are_counted_in_the_header_only() {
        let mut d = Data::new(0);
        for _ in 0..MAX_HOPS {
            d.line(b"Received: from x");
        }
        d.line(b"delivered-to: a@b");
        d.line(b"");
        d.line(b"Received: in the body");
        assert_eq!(d.hops, MAX_HOPS + 1);
        assert!(d.too_many_hops());
    }

    #[test]
    fn size_limit_is_64_bit() {
        let mut d = Data::new(10);
        d.line(b"12345678");
        assert!(!d.too_big(), "8 + CRLF = 10");
        d.line(b"");
        assert!(d.too_big());
        let mut d = Data::new(0);
        d.size = u64::MAX - 1;
        d.line(b"xxxx");
        assert_eq!(d.size, u64::MAX);
        assert!(!d.too_big(), "0 = no limit");
    }
}
