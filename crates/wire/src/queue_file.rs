//! The queue file `queue/mess/ID` (docs/queue.md, *The queue file*): one file holds the
//! envelope and the message, so committing a message costs one file fsync and one
//! directory fsync. postern-queue writes it; postern-send, the deliveries and
//! postern-qread read it, all with this module.
//!
//! ```text
//! "PQ1\n"            magic and format version (4 bytes)
//! u64be E            length of the envelope block
//! envelope block     F<sender>\0 T<rcpt>\0 … \0  I<key>=<value>\0 …  [\0 padding]
//! message            from offset 12 + E to the end of the file
//! ```
//!
//! The block may end in `\0` padding: postern-queue reserves room for the envelope in
//! front of the message before it knows how long the envelope will be (the protocol sends
//! the message first), and pads what it does not use. Every record is length-checked and
//! every byte string round-trips; there is nothing to quote.

use postern_common::{Error, Result, ResultExt};
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;

/// Magic and format version, the file's first 4 bytes.
pub const MAGIC: &[u8; 4] = b"PQ1\n";
/// Bytes before the envelope block: the magic and the u64 length.
pub const PREFIX_LEN: u64 = 12;
/// Longest address, in bytes without its NUL. qmail-queue refuses an address of 1003
/// bytes or more *including* the NUL (exit 11), so 1001 is the most it takes.
pub const MAX_ADDRESS: usize = 1001;
/// Most recipients one message may have.
pub const MAX_RECIPIENTS: usize = 10_000;
/// Most info records one envelope may carry.
pub const MAX_INFO: usize = 64;
/// Longest info record (`key=value`), bytes.
pub const MAX_INFO_RECORD: usize = 1024;
/// Largest envelope block, padding included: enough for [`MAX_RECIPIENTS`] addresses of
/// a realistic length; a reader refuses anything bigger without allocating it.
pub const MAX_ENVELOPE: u64 = 4 * 1024 * 1024;

/// A message's envelope, as postern-queue received it plus what it recorded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Envelope {
    /// The sender, exactly as received (empty = the null sender `<>`).
    pub sender: Vec<u8>,
    /// The recipients, in the order received.
    pub recipients: Vec<Vec<u8>>,
    /// `Iuid=N`: real uid of the process that ran postern-queue.
    pub uid: Option<u32>,
    /// `Itime=N`: unix time of the commit (the message's birth).
    pub time: Option<u64>,
    /// `Ipriority=1`: a trusted caller asked for the priority lane.
    pub priority: bool,
    /// Info records this version does not know, kept as `(key, value)` in order.
    pub extra: Vec<(Vec<u8>, Vec<u8>)>,
}

/// Why an envelope block or queue file is not well-formed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Corrupt(pub String);

impl std::fmt::Display for Corrupt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn corrupt(what: &str) -> Corrupt {
    Corrupt(what.to_string())
}

impl Envelope {
    /// An envelope with a sender and recipients and no info records.
    pub fn new(sender: impl Into<Vec<u8>>, recipients: Vec<Vec<u8>>) -> Self {
        Envelope {
            sender: sender.into(),
            recipients,
            ..Envelope::default()
        }
    }

    /// The envelope block (without padding). Addresses must not contain NUL and info keys
    /// neither NUL nor `=`: [`Envelope::check`] says so before anything is written.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            16 + self.sender.len() + self.recipients.iter().map(|r| r.len() + 2).sum::<usize>(),
        );
        out.push(b'F');
        out.extend_from_slice(&self.sender);
        out.push(0);
        for r in &self.recipients {
            out.push(b'T');
            out.extend_from_slice(r);
            out.push(0);
        }
        out.push(0);
        let mut info = |key: &[u8], value: &[u8]| {
            out.push(b'I');
            out.extend_from_slice(key);
            out.push(b'=');
            out.extend_from_slice(value);
            out.push(0);
        };
        if let Some(uid) = self.uid {
            info(b"uid", uid.to_string().as_bytes());
        }
        if let Some(time) = self.time {
            info(b"time", time.to_string().as_bytes());
        }
        if self.priority {
            info(b"priority", b"1");
        }
        for (k, v) in &self.extra {
            info(k, v);
        }
        out
    }

    /// Whether the envelope can be written and read back unchanged within the limits.
    pub fn check(&self) -> std::result::Result<(), Corrupt> {
        let addr_ok = |a: &[u8]| a.len() <= MAX_ADDRESS && !a.contains(&0);
        if !addr_ok(&self.sender) {
            return Err(corrupt("bad sender address"));
        }
        if self.recipients.is_empty() {
            return Err(corrupt("no recipients"));
        }
        if self.recipients.len() > MAX_RECIPIENTS {
            return Err(corrupt("too many recipients"));
        }
        if !self.recipients.iter().all(|r| addr_ok(r)) {
            return Err(corrupt("bad recipient address"));
        }
        if self.extra.len() + 3 > MAX_INFO {
            return Err(corrupt("too many info records"));
        }
        for (k, v) in &self.extra {
            if k.is_empty() || k.contains(&0) || k.contains(&b'=') || v.contains(&0) {
                return Err(corrupt("bad info record"));
            }
            if k.len() + v.len() + 1 > MAX_INFO_RECORD {
                return Err(corrupt("info record too long"));
            }
        }
        Ok(())
    }

    /// Parse an envelope block (the `E` bytes after the prefix), padding allowed.
    pub fn decode(block: &[u8]) -> std::result::Result<Envelope, Corrupt> {
        let mut at = 0;
        // One NUL-terminated field starting at `at`, at most `max` bytes long.
        let field = |at: &mut usize, max: usize| -> std::result::Result<Vec<u8>, Corrupt> {
            let rest = &block[*at..];
            let end = rest.iter().take(max + 1).position(|&b| b == 0);
            match end {
                Some(n) => {
                    *at += n + 1;
                    Ok(rest[..n].to_vec())
                }
                None if rest.len() <= max => Err(corrupt("envelope block ends inside a record")),
                None => Err(corrupt("envelope record too long")),
            }
        };
        if block.first() != Some(&b'F') {
            return Err(corrupt("envelope does not start with F"));
        }
        at += 1;
        let mut env = Envelope {
            sender: field(&mut at, MAX_ADDRESS)?,
            ..Envelope::default()
        };
        loop {
            match block.get(at) {
                Some(b'T') => {
                    if env.recipients.len() >= MAX_RECIPIENTS {
                        return Err(corrupt("too many recipients"));
                    }
                    at += 1;
                    env.recipients.push(field(&mut at, MAX_ADDRESS)?);
                }
                Some(0) => {
                    at += 1;
                    break;
                }
                Some(_) => return Err(corrupt("envelope record does not start with T")),
                None => return Err(corrupt("envelope block ends inside the recipients")),
            }
        }
        if env.recipients.is_empty() {
            return Err(corrupt("envelope has no recipients"));
        }
        let mut records = 0;
        while at < block.len() && block[at] == b'I' {
            records += 1;
            if records > MAX_INFO {
                return Err(corrupt("too many info records"));
            }
            at += 1;
            let rec = field(&mut at, MAX_INFO_RECORD)?;
            let eq = rec
                .iter()
                .position(|&b| b == b'=')
                .ok_or_else(|| corrupt("info record without ="))?;
            let (key, value) = (&rec[..eq], &rec[eq + 1..]);
            match key {
                b"uid" => env.uid = Some(number(value)?),
                b"time" => env.time = Some(number(value)?),
                b"priority" => env.priority = value == b"1",
                _ => env.extra.push((key.to_vec(), value.to_vec())),
            }
        }
        if block[at..].iter().any(|&b| b != 0) {
            return Err(corrupt("garbage after the info records"));
        }
        Ok(env)
    }
}

fn number<T: std::str::FromStr>(value: &[u8]) -> std::result::Result<T, Corrupt> {
    std::str::from_utf8(value)
        .ok()
        .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| corrupt("info record is not a number"))
}

/// The prefix and envelope block of a queue file, padded with NULs to `min_len` bytes in
/// all (0 = no padding). The message follows at offset `result.len()`.
pub fn header(env: &Envelope, min_len: usize) -> Vec<u8> {
    let mut block = env.encode();
    let want = min_len.saturating_sub(PREFIX_LEN as usize);
    if block.len() < want {
        block.resize(want, 0);
    }
    let mut out = Vec::with_capacity(PREFIX_LEN as usize + block.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(block.len() as u64).to_be_bytes());
    out.extend_from_slice(&block);
    out
}

/// A whole queue file in memory: header then message.
pub fn encode_file(env: &Envelope, message: &[u8]) -> Vec<u8> {
    let mut out = header(env, 0);
    out.extend_from_slice(message);
    out
}

/// Parse a queue file held in memory: the envelope and the message's offset.
pub fn parse(bytes: &[u8]) -> std::result::Result<(Envelope, u64), Corrupt> {
    let e = parse_prefix(
        bytes
            .get(..PREFIX_LEN as usize)
            .ok_or_else(|| corrupt("file shorter than its header"))?,
    )?;
    let end = PREFIX_LEN + e;
    if end > bytes.len() as u64 {
        return Err(corrupt("envelope length runs past the end of the file"));
    }
    Ok((
        Envelope::decode(&bytes[PREFIX_LEN as usize..end as usize])?,
        end,
    ))
}

/// Check the 12-byte prefix; returns `E`.
pub fn parse_prefix(prefix: &[u8]) -> std::result::Result<u64, Corrupt> {
    if prefix.len() < PREFIX_LEN as usize || &prefix[..4] != MAGIC {
        return Err(corrupt("not a postern queue file (bad magic)"));
    }
    let mut len = [0u8; 8];
    len.copy_from_slice(&prefix[4..12]);
    let e = u64::from_be_bytes(len);
    if e > MAX_ENVELOPE {
        return Err(corrupt("envelope length over the limit"));
    }
    Ok(e)
}

/// A queue file opened for reading, positioned at the start of its message.
#[derive(Debug)]
pub struct QueueFile {
    pub file: File,
    pub envelope: Envelope,
    /// Offset of the message (`12 + E`).
    pub message_offset: u64,
    /// Size of the whole file.
    pub file_len: u64,
}

impl QueueFile {
    /// Size of the message alone.
    pub fn message_len(&self) -> u64 {
        self.file_len - self.message_offset
    }
}

/// Read the header of an open queue file, leaving it positioned at the message. I/O
/// errors are temporary; a malformed file is a permanent error whose text starts with
/// `corrupt queue file` (the scheduler moves such a file aside).
pub fn read_header(mut file: File, label: &str) -> Result<QueueFile> {
    let file_len = file
        .metadata()
        .temp(format!("unable to stat {label}"))?
        .len();
    file.seek(SeekFrom::Start(0))
        .temp(format!("unable to read {label}"))?;
    let corrupt_err = |c: Corrupt| Error::perm(format!("corrupt queue file {label}: {c}"));
    let mut prefix = [0u8; PREFIX_LEN as usize];
    read_fully(&mut file, &mut prefix)
        .temp(format!("unable to read {label}"))?
        .then_some(())
        .ok_or_else(|| corrupt_err(corrupt("file shorter than its header")))?;
    let e = parse_prefix(&prefix).map_err(corrupt_err)?;
    if PREFIX_LEN + e > file_len {
        return Err(corrupt_err(corrupt(
            "envelope length runs past the end of the file",
        )));
    }
    let mut block = vec![0u8; e as usize];
    if !read_fully(&mut file, &mut block).temp(format!("unable to read {label}"))? {
        return Err(corrupt_err(corrupt("file shorter than its envelope")));
    }
    let envelope = Envelope::decode(&block).map_err(corrupt_err)?;
    Ok(QueueFile {
        file,
        envelope,
        message_offset: PREFIX_LEN + e,
        file_len,
    })
}

/// Open `path` and read its header (see [`read_header`]).
pub fn open(path: &Path) -> Result<QueueFile> {
    let label = path.display().to_string();
    let file = File::open(path).temp(format!("unable to open {label}"))?;
    read_header(file, &label)
}

/// Fill `buf`; false if the input ended first.
fn read_fully(r: &mut impl Read, buf: &mut [u8]) -> io::Result<bool> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => return Ok(false),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// Write a header at the start of `file` (used after the message has been written
/// behind a reservation).
pub fn write_header_at_start(file: &mut File, header: &[u8]) -> io::Result<()> {
    file.seek(SeekFrom::Start(0))?;
    file.write_all(header)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Envelope {
        Envelope {
            sender: b"a@b.test".to_vec(),
            recipients: vec![
                b"c@d.test".to_vec(),
                b"\xff odd \x01@x".to_vec(),
                Vec::new(),
            ],
            uid: Some(1000),
            time: Some(1_790_000_000),
            priority: true,
            extra: vec![(b"note".to_vec(), b"x=y z".to_vec())],
        }
    }

    #[test]
    fn round_trips_every_byte_string() {
        let env = sample();
        env.check().unwrap();
        let message = b"Received: x\n\nbody\0with nul\n";
        let bytes = encode_file(&env, message);
        let (back, off) = parse(&bytes).unwrap();
        assert_eq!(back, env);
        assert_eq!(&bytes[off as usize..], message);
    }

    #[test]
    fn null_sender_and_no_info_records() {
        let env = Envelope::new(Vec::new(), vec![b"x@y".to_vec()]);
        let bytes = encode_file(&env, b"");
        assert_eq!(&bytes[12..], b"F\0Tx@y\0\0");
        assert_eq!(parse(&bytes).unwrap(), (env, bytes.len() as u64));
    }

    #[test]
    fn padding_is_part_of_the_block() {
        let env = sample();
        let h = header(&env, 4096);
        assert_eq!(h.len(), 4096);
        let mut bytes = h.clone();
        bytes.extend_from_slice(b"msg");
        let (back, off) = parse(&bytes).unwrap();
        assert_eq!((back, off), (env.clone(), 4096));
        // Non-NUL bytes in the padding are corruption.
        bytes[4000] = b'x';
        assert!(parse(&bytes).is_err());
        // A header longer than the reservation is not truncated.
        assert!(header(&env, 10).len() > 10);
    }

    #[test]
    fn every_truncation_is_refused() {
        let env = sample();
        let bytes = encode_file(&env, b"");
        for n in 0..bytes.len() {
            assert!(parse(&bytes[..n]).is_err(), "prefix of {n} bytes accepted");
        }
        // And every truncated block, even with a length field that matches it.
        let block = env.encode();
        let info_start = block.iter().position(|&b| b == b'I').unwrap();
        for n in 0..info_start {
            assert!(
                Envelope::decode(&block[..n]).is_err(),
                "block of {n} bytes accepted"
            );
        }
    }

    #[test]
    fn reading_from_a_file_byte_by_byte_source_agrees() {
        let env = sample();
        let bytes = encode_file(&env, b"hello\n");
        let path = std::env::temp_dir().join(format!("postern-wire-qf-{}", std::process::id()));
        std::fs::write(&path, &bytes).unwrap();
        let mut qf = open(&path).unwrap();
        assert_eq!(qf.envelope, env);
        assert_eq!(qf.message_len(), 6);
        let mut rest = String::new();
        qf.file.read_to_string(&mut rest).unwrap();
        assert_eq!(rest, "hello\n");
        // Truncated on disk: permanent, named "corrupt".
        std::fs::write(&path, &bytes[..20]).unwrap();
        let err = open(&path).unwrap_err();
        assert_eq!(err.kind, postern_common::Kind::Perm);
        assert!(err.msg.starts_with("corrupt queue file"), "{}", err.msg);
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn malformed_blocks() {
        for (block, why) in [
            (&b"X\0T\0\0"[..], "start with F"),
            (b"Fa\0\0", "no recipients"),
            (b"Fa\0Xb\0\0", "does not start with T"),
            (b"Fa\0Tb\0\0Inokey\0", "without ="),
            (b"Fa\0Tb\0\0Iuid=12x\0", "not a number"),
            (b"Fa\0Tb\0\0junk", "garbage"),
        ] {
            let err = Envelope::decode(block).unwrap_err();
            assert!(err.0.contains(why), "{block:?}: {err}");
        }
        let mut long = b"F".to_vec();
        long.extend(std::iter::repeat_n(b'a', MAX_ADDRESS + 1));
        long.extend_from_slice(b"\0Tb\0\0");
        assert!(Envelope::decode(&long).unwrap_err().0.contains("too long"));
        let mut bad_magic = encode_file(&sample(), b"");
        bad_magic[0] = b'X';
        assert!(parse(&bad_magic).unwrap_err().0.contains("magic"));
        let mut huge = encode_file(&sample(), b"");
        huge[4..12].copy_from_slice(&(MAX_ENVELOPE + 1).to_be_bytes());
        assert!(parse(&huge).unwrap_err().0.contains("limit"));
    }

    #[test]
    fn check_enforces_limits() {
        assert!(Envelope::new("a", vec![]).check().is_err());
        assert!(Envelope::new("a\0", vec![b"b".to_vec()]).check().is_err());
        let many = vec![b"x".to_vec(); MAX_RECIPIENTS + 1];
        assert!(Envelope::new("a", many).check().is_err());
        let mut e = Envelope::new("a", vec![b"b".to_vec()]);
        e.extra.push((b"k=".to_vec(), b"v".to_vec()));
        assert!(e.check().is_err());
    }

    mod properties {
        use super::super::*;
        use proptest::collection::vec;
        use proptest::prelude::*;

        fn address() -> impl Strategy<Value = Vec<u8>> {
            vec(1u8.., 0..40)
        }

        fn envelope() -> impl Strategy<Value = Envelope> {
            (
                address(),
                vec(address(), 1..6),
                proptest::option::of(any::<u32>()),
                proptest::option::of(any::<u64>()),
                any::<bool>(),
                vec(
                    (
                        vec(
                            any::<u8>().prop_filter("key byte", |b| *b != 0 && *b != b'='),
                            1..10,
                        ),
                        vec(1u8.., 0..20),
                    ),
                    0..4,
                ),
            )
                .prop_map(|(sender, recipients, uid, time, priority, extra)| {
                    Envelope {
                        sender,
                        recipients,
                        uid,
                        time,
                        priority,
                        // Keys this version reads itself would not come back as `extra`.
                        extra: extra
                            .into_iter()
                            .filter(|(k, _)| !matches!(&k[..], b"uid" | b"time" | b"priority"))
                            .collect(),
                    }
                })
        }

        /// Bytes made of the block's own pieces, which the reader accepts far more often
        /// than random bytes.
        fn near_block() -> impl Strategy<Value = Vec<u8>> {
            let piece = prop_oneof![
                Just(b"T".to_vec()),
                Just(b"I".to_vec()),
                Just(b"\0".to_vec()),
                Just(b"uid=".to_vec()),
                Just(b"time=".to_vec()),
                Just(b"priority=".to_vec()),
                Just(b"=".to_vec()),
                "[0-9a-z@.]{0,6}".prop_map(String::into_bytes),
                vec(any::<u8>(), 0..3),
            ];
            vec(piece, 0..24).prop_map(|pieces| [b"F".to_vec(), pieces.concat()].concat())
        }

        proptest! {
            /// Any envelope within the limits, padded or not, reads back unchanged with its
            /// message.
            #[test]
            fn envelopes_round_trip(env in envelope(), message in vec(any::<u8>(), 0..200), pad in 0usize..600) {
                prop_assert!(env.check().is_ok());
                let mut bytes = header(&env, pad);
                prop_assert!(bytes.len() >= pad);
                let offset = bytes.len() as u64;
                bytes.extend_from_slice(&message);
                let (back, at) = parse(&bytes).unwrap();
                prop_assert_eq!(back, env);
                prop_assert_eq!(at, offset);
                prop_assert_eq!(&bytes[at as usize..], &message[..]);
            }

            /// Whatever bytes a queue file holds: the reader does not panic, and what it
            /// accepts is written back as a file it reads the same.
            #[test]
            fn arbitrary_bytes_read_back_the_same(
                bytes in vec(any::<u8>(), 0..300),
                block in prop_oneof![vec(any::<u8>(), 0..120), near_block()],
            ) {
                if let Ok((env, at)) = parse(&bytes) {
                    prop_assert!(at <= bytes.len() as u64);
                    if env.check().is_ok() {
                        let message = &bytes[at as usize..];
                        let again = encode_file(&env, message);
                        let (back, at) = parse(&again).unwrap();
                        prop_assert_eq!(back, env);
                        prop_assert_eq!(&again[at as usize..], message);
                    }
                }
                let mut file = MAGIC.to_vec();
                file.extend_from_slice(&(block.len() as u64).to_be_bytes());
                file.extend_from_slice(&block);
                if let Ok(env) = Envelope::decode(&block) {
                    let (back, _) = parse(&file).unwrap();
                    prop_assert_eq!(&back, &env);
                    if env.check().is_ok() {
                        prop_assert_eq!(Envelope::decode(&env.encode()).unwrap(), env);
                    }
                } else {
                    prop_assert!(parse(&file).is_err());
                }
            }
        }
    }
}
