//! The `supervise/status` record, as a fixed-size pack/unpack pair.
//!
//! daemontools 0.76 writes 18 bytes: a TAI64N stamp (big-endian, the time of the last
//! pid change), the pid (**little-endian**, 0 = not running), a paused flag and the
//! wanted state (`u`, `d`, or 0 after `svc -o`). We write exactly that, so djb's svstat
//! reads our supervise. When reading we also accept the 20-byte records of
//! daemontools-encore and runit (two extra bytes whose meaning differs between them, kept
//! raw) and encore's 40-byte file (a second 20-byte record for the log service).

use postern_common::tai64n::Tai64n;
use std::fs;
use std::io::{self, Read};
use std::path::Path;

/// Length of the classic daemontools 0.76 record, the one we write.
pub const CLASSIC_LEN: usize = 18;
/// Length of an encore or runit record: the classic one plus two bytes.
pub const EXTENDED_LEN: usize = 20;
/// Length of encore's file with a second record for the log service.
pub const WITH_LOG_LEN: usize = 2 * EXTENDED_LEN;

/// Byte 17 when the service should be up.
pub const WANT_UP: u8 = b'u';
/// Byte 17 when the service should be down.
pub const WANT_DOWN: u8 = b'd';
/// Byte 17 after `svc -o`: run once, do not restart.
pub const WANT_ONCE: u8 = 0;

/// One status record, as the classic 18 bytes describe it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    /// When the pid last changed (process started or exited, or supervise started).
    pub stamp: Tai64n,
    /// The running process, 0 when none runs.
    pub pid: u32,
    /// A `p` is in force (only meaningful while a process runs).
    pub paused: bool,
    /// [`WANT_UP`], [`WANT_DOWN`] or [`WANT_ONCE`] (other bytes are kept as read).
    pub want: u8,
}

impl Status {
    /// The 18 bytes supervise writes. The paused byte is forced to 0 when pid is 0,
    /// as daemontools does.
    pub fn pack(&self) -> [u8; CLASSIC_LEN] {
        let mut out = [0u8; CLASSIC_LEN];
        out[..12].copy_from_slice(&self.stamp.pack());
        out[12..16].copy_from_slice(&self.pid.to_le_bytes());
        out[16] = u8::from(self.pid != 0 && self.paused);
        out[17] = self.want;
        out
    }

    /// Read the 18 classic bytes. Only bytes 0..12 are the stamp (djb's TAI64NA is
    /// overwritten by the pid from byte 12 on).
    pub fn unpack(bytes: &[u8; CLASSIC_LEN]) -> Status {
        let mut stamp = [0u8; 12];
        stamp.copy_from_slice(&bytes[..12]);
        let mut pid = [0u8; 4];
        pid.copy_from_slice(&bytes[12..16]);
        Status {
            stamp: Tai64n::unpack(&stamp),
            pid: u32::from_le_bytes(pid),
            paused: bytes[16] != 0,
            want: bytes[17],
        }
    }
}

/// A 20-byte record: the classic status and two more bytes (encore: state and 0;
/// runit: got-TERM flag and state). Their meaning depends on who wrote them, so they
/// are kept raw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extended {
    pub status: Status,
    pub extra: [u8; 2],
}

impl Extended {
    pub fn pack(&self) -> [u8; EXTENDED_LEN] {
        let mut out = [0u8; EXTENDED_LEN];
        out[..CLASSIC_LEN].copy_from_slice(&self.status.pack());
        out[CLASSIC_LEN..].copy_from_slice(&self.extra);
        out
    }

    pub fn unpack(bytes: &[u8; EXTENDED_LEN]) -> Extended {
        let mut classic = [0u8; CLASSIC_LEN];
        classic.copy_from_slice(&bytes[..CLASSIC_LEN]);
        Extended {
            status: Status::unpack(&classic),
            extra: [bytes[CLASSIC_LEN], bytes[CLASSIC_LEN + 1]],
        }
    }
}

/// A whole status file in one of the layouts we read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusFile {
    /// daemontools 0.76 (and ours): 18 bytes.
    Classic(Status),
    /// encore or runit: 20 bytes.
    Extended(Extended),
    /// encore with a log service under the same supervise: 40 bytes.
    WithLog { main: Extended, log: Extended },
}

/// A status file too short to hold a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadFormat;

impl StatusFile {
    /// Parse what was read from `supervise/status`. Like the classic svstat, anything
    /// from 18 bytes on is accepted; the longest layout that fits is used.
    pub fn parse(bytes: &[u8]) -> Result<StatusFile, BadFormat> {
        if let (Some(main), Some(log)) = (
            bytes.get(..EXTENDED_LEN),
            bytes.get(EXTENDED_LEN..WITH_LOG_LEN),
        ) {
            return Ok(StatusFile::WithLog {
                main: Extended::unpack(main.try_into().map_err(|_| BadFormat)?),
                log: Extended::unpack(log.try_into().map_err(|_| BadFormat)?),
            });
        }
        if let Some(ext) = bytes.get(..EXTENDED_LEN) {
            return Ok(StatusFile::Extended(Extended::unpack(
                ext.try_into().map_err(|_| BadFormat)?,
            )));
        }
        match bytes.get(..CLASSIC_LEN) {
            Some(c) => Ok(StatusFile::Classic(Status::unpack(
                c.try_into().map_err(|_| BadFormat)?,
            ))),
            None => Err(BadFormat),
        }
    }

    /// The bytes of this file, in its own layout.
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            StatusFile::Classic(s) => s.pack().to_vec(),
            StatusFile::Extended(e) => e.pack().to_vec(),
            StatusFile::WithLog { main, log } => [main.pack(), log.pack()].concat(),
        }
    }

    /// The main service's record.
    pub fn main(&self) -> Status {
        match self {
            StatusFile::Classic(s) => *s,
            StatusFile::Extended(e) | StatusFile::WithLog { main: e, .. } => e.status,
        }
    }

    /// The log service's record, in encore's 40-byte layout.
    pub fn log(&self) -> Option<Status> {
        match self {
            StatusFile::WithLog { log, .. } => Some(log.status),
            _ => None,
        }
    }
}

/// Read a status file: at most [`WITH_LOG_LEN`] bytes are looked at.
pub fn read(path: &Path) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::with_capacity(WITH_LOG_LEN);
    fs::File::open(path)?
        .take(WITH_LOG_LEN as u64)
        .read_to_end(&mut bytes)?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(pid: u32, paused: bool, want: u8) -> Status {
        Status {
            stamp: Tai64n::from_unix(1_700_000_000, 123_456_789),
            pid,
            paused,
            want,
        }
    }

    #[test]
    fn classic_layout_is_byte_exact() {
        let bytes = sample(0x0102_0304, true, WANT_DOWN).pack();
        assert_eq!(
            &bytes[..8],
            &((1u64 << 62) + 10 + 1_700_000_000).to_be_bytes()
        );
        assert_eq!(&bytes[8..12], &123_456_789u32.to_be_bytes());
        assert_eq!(&bytes[12..16], &[4, 3, 2, 1], "pid is little-endian");
        assert_eq!(bytes[16], 1);
        assert_eq!(bytes[17], b'd');
    }

    #[test]
    fn paused_is_zero_without_a_process() {
        assert_eq!(sample(0, true, WANT_UP).pack()[16], 0);
    }

    #[test]
    fn classic_round_trip() {
        for s in [
            sample(0, false, WANT_UP),
            sample(4242, true, WANT_DOWN),
            sample(7, false, WANT_ONCE),
        ] {
            assert_eq!(Status::unpack(&s.pack()), s);
            assert_eq!(StatusFile::parse(&s.pack()), Ok(StatusFile::Classic(s)));
            assert_eq!(StatusFile::Classic(s).to_bytes(), s.pack());
        }
    }

    #[test]
    fn extended_round_trip() {
        let e = Extended {
            status: sample(99, false, WANT_UP),
            extra: [3, 0],
        };
        assert_eq!(Extended::unpack(&e.pack()), e);
        let file = StatusFile::Extended(e);
        let bytes = file.to_bytes();
        assert_eq!(bytes.len(), EXTENDED_LEN);
        assert_eq!(StatusFile::parse(&bytes), Ok(file));
        assert_eq!(file.main(), e.status);
        assert_eq!(file.log(), None);
    }

    #[test]
    fn with_log_round_trip() {
        let main = Extended {
            status: sample(10, true, WANT_UP),
            extra: [3, 0],
        };
        let log = Extended {
            status: sample(11, false, WANT_DOWN),
            extra: [2, 0],
        };
        let file = StatusFile::WithLog { main, log };
        let bytes = file.to_bytes();
        assert_eq!(bytes.len(), WITH_LOG_LEN);
        assert_eq!(StatusFile::parse(&bytes), Ok(file));
        assert_eq!(file.log(), Some(log.status));
    }

    #[test]
    fn short_files_are_bad_and_odd_lengths_use_what_fits() {
        assert_eq!(StatusFile::parse(&[0u8; 17]), Err(BadFormat));
        assert_eq!(StatusFile::parse(&[]), Err(BadFormat));
        assert!(matches!(
            StatusFile::parse(&[0u8; 19]),
            Ok(StatusFile::Classic(_))
        ));
        assert!(matches!(
            StatusFile::parse(&[0u8; 39]),
            Ok(StatusFile::Extended(_))
        ));
    }
}
