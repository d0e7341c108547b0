//! TAI64N stamps as daemontools writes them: 8 bytes of TAI64 seconds
//! (2^62 + 10 + unix seconds — djb's fixed offset, no leap-second table, so that djb's
//! `tai64nlocal` reads ours and ours reads theirs) and 4 bytes of nanoseconds, both
//! big-endian. The external label is `@` + 24 lowercase hex digits.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// TAI64 label of the unix epoch: 2^62 + 10.
pub const UNIX_EPOCH_LABEL: u64 = (1 << 62) + 10;

/// A TAI64N moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Tai64n {
    /// TAI64 seconds (label value, including the 2^62 + 10 offset).
    pub secs: u64,
    /// Nanoseconds, 0..1_000_000_000.
    pub nanos: u32,
}

impl Tai64n {
    pub fn now() -> Self {
        Self::from_system(SystemTime::now())
    }

    pub fn from_system(t: SystemTime) -> Self {
        match t.duration_since(UNIX_EPOCH) {
            Ok(d) => Tai64n {
                secs: UNIX_EPOCH_LABEL + d.as_secs(),
                nanos: d.subsec_nanos(),
            },
            Err(e) => {
                let d = e.duration();
                let mut secs = UNIX_EPOCH_LABEL - d.as_secs();
                let mut nanos = 0;
                if d.subsec_nanos() > 0 {
                    secs -= 1;
                    nanos = 1_000_000_000 - d.subsec_nanos();
                }
                Tai64n { secs, nanos }
            }
        }
    }

    pub fn from_unix(secs: i64, nanos: u32) -> Self {
        Tai64n {
            secs: UNIX_EPOCH_LABEL.wrapping_add_signed(secs),
            nanos,
        }
    }

    /// Seconds since the unix epoch (negative before it).
    pub fn unix_secs(&self) -> i64 {
        self.secs.wrapping_sub(UNIX_EPOCH_LABEL) as i64
    }

    pub fn to_system(&self) -> SystemTime {
        let s = self.unix_secs();
        if s >= 0 {
            UNIX_EPOCH + Duration::new(s as u64, self.nanos)
        } else {
            UNIX_EPOCH - Duration::from_secs(s.unsigned_abs())
                + Duration::from_nanos(self.nanos as u64)
        }
    }

    /// The 12-byte packed form (8 seconds + 4 nanoseconds, big-endian).
    pub fn pack(&self) -> [u8; 12] {
        let mut out = [0u8; 12];
        out[..8].copy_from_slice(&self.secs.to_be_bytes());
        out[8..].copy_from_slice(&self.nanos.to_be_bytes());
        out
    }

    pub fn unpack(bytes: &[u8; 12]) -> Self {
        let mut secs = [0u8; 8];
        secs.copy_from_slice(&bytes[..8]);
        let mut nanos = [0u8; 4];
        nanos.copy_from_slice(&bytes[8..]);
        Tai64n {
            secs: u64::from_be_bytes(secs),
            nanos: u32::from_be_bytes(nanos),
        }
    }

    /// `@` + 24 lowercase hex digits.
    pub fn label(&self) -> String {
        format!("@{:016x}{:08x}", self.secs, self.nanos)
    }

    /// Parse the 25-byte label at the start of `text`, if there is one.
    pub fn parse_label(text: &[u8]) -> Option<Self> {
        if text.len() < 25 || text[0] != b'@' {
            return None;
        }
        let hex = std::str::from_utf8(&text[1..25]).ok()?;
        if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let secs = u64::from_str_radix(&hex[..16], 16).ok()?;
        let nanos = u32::from_str_radix(&hex[16..], 16).ok()?;
        Some(Tai64n { secs, nanos })
    }

    /// Local time as `YYYY-MM-DD HH:MM:SS.NNNNNNNNN`, the form `tai64nlocal` prints.
    pub fn format_local(&self) -> String {
        use chrono::{Local, TimeZone};
        match Local
            .timestamp_opt(self.unix_secs(), self.nanos.min(999_999_999))
            .single()
        {
            Some(t) => t.format("%Y-%m-%d %H:%M:%S%.9f").to_string(),
            None => self.label(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_label_matches_djb() {
        assert_eq!(Tai64n::from_unix(0, 0).label(), "@400000000000000a00000000");
    }

    #[test]
    fn pack_unpack_round_trip() {
        let t = Tai64n::from_unix(1_700_000_000, 123_456_789);
        assert_eq!(Tai64n::unpack(&t.pack()), t);
        assert_eq!(Tai64n::parse_label(t.label().as_bytes()), Some(t));
        assert_eq!(t.unix_secs(), 1_700_000_000);
    }

    #[test]
    fn system_time_round_trip() {
        let now = SystemTime::now();
        assert_eq!(Tai64n::from_system(now).to_system(), now);
        let before = UNIX_EPOCH - Duration::new(5, 250);
        assert_eq!(Tai64n::from_system(before).to_system(), before);
    }

    #[test]
    fn labels_sort_in_time_order() {
        let a = Tai64n::from_unix(100, 999_999_999).label();
        let b = Tai64n::from_unix(101, 0).label();
        assert!(a < b);
    }

    #[test]
    fn bad_labels_are_refused() {
        assert_eq!(Tai64n::parse_label(b"@4000"), None);
        assert_eq!(Tai64n::parse_label(b"#400000000000000a00000000"), None);
        assert_eq!(Tai64n::parse_label(b"@40000000000g000a00000000"), None);
    }
}
