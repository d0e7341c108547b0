//! djb's constant database, the one implementation of it in postern: the
//! format tcprules writes and tcpserver reads, and that of `users.cdb`, `aliases.cdb`,
//! `recipients.cdb` and `relayrecipients.cdb`. A 2048-byte header of 256 `(table_pos, slots)` pairs, the records
//! (`klen, dlen, key, data`), then 256 open-addressing hash tables; every integer is a
//! little-endian u32. [`Writer`] builds one in memory in insertion order (so duplicate
//! keys keep their order, and the first wins on lookup); [`Reader`] looks keys up with
//! positioned reads, so a large file is never read whole.
//!
//! Written here rather than taken from a crate: the format is a page long, we need
//! byte-for-byte agreement with tinycdb and ucspi-tcp (which the tests check), and the
//! reader must turn a damaged file into an error — never a panic, a huge allocation or a
//! SIGBUS (docs/architecture.md, "One cdb").

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// Size of the header: 256 pairs of u32.
const HEADER: usize = 2048;
/// A cdb must stay under 4 GiB: every position is a u32.
pub const MAX_CDB: u64 = u32::MAX as u64;
/// Largest key or value a reader accepts, so a corrupt length cannot exhaust memory.
pub const MAX_RECORD: u32 = 16 * 1024 * 1024;

/// The cdb hash: h = 5381; h = (h * 33) ^ byte, mod 2^32 (not case-folded).
pub fn hash(key: &[u8]) -> u32 {
    key.iter()
        .fold(5381u32, |h, &c| (h << 5).wrapping_add(h) ^ u32::from(c))
}

/// A cdb being built in memory.
#[derive(Debug, Default)]
pub struct Writer {
    out: Vec<u8>,
    /// (hash, record position) per record, in insertion order.
    entries: Vec<(u32, u32)>,
}

fn too_big() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, "cdb would exceed 4 GiB")
}

fn u32_of(n: usize) -> io::Result<u32> {
    u32::try_from(n).map_err(|_| too_big())
}

impl Writer {
    pub fn new() -> Self {
        Writer {
            out: vec![0; HEADER],
            entries: Vec::new(),
        }
    }

    /// Add a record; duplicates are kept in order.
    pub fn add(&mut self, key: &[u8], data: &[u8]) -> io::Result<()> {
        let pos = u32_of(self.out.len())?;
        let end = self.out.len() as u64 + 8 + key.len() as u64 + data.len() as u64;
        if end >= MAX_CDB {
            return Err(too_big());
        }
        self.out
            .extend_from_slice(&u32_of(key.len())?.to_le_bytes());
        self.out
            .extend_from_slice(&u32_of(data.len())?.to_le_bytes());
        self.out.extend_from_slice(key);
        self.out.extend_from_slice(data);
        self.entries.push((hash(key), pos));
        Ok(())
    }

    /// Append the hash tables, fill in the header, and return the file's bytes.
    pub fn finish(mut self) -> io::Result<Vec<u8>> {
        let mut counts = [0usize; 256];
        for &(h, _) in &self.entries {
            counts[(h & 255) as usize] += 1;
        }
        let tables_size = 16 * self.entries.len() as u64;
        if self.out.len() as u64 + tables_size >= MAX_CDB {
            return Err(too_big());
        }
        let mut header = Vec::with_capacity(HEADER);
        for (i, &count) in counts.iter().enumerate() {
            let slots = 2 * count;
            let table_pos = u32_of(self.out.len())?;
            let mut table = vec![(0u32, 0u32); slots];
            for &(h, pos) in self.entries.iter().filter(|(h, _)| (h & 255) as usize == i) {
                let mut s = (h >> 8) as usize % slots;
                while table[s].1 != 0 {
                    s = (s + 1) % slots;
                }
                table[s] = (h, pos);
            }
            for (h, pos) in table {
                self.out.extend_from_slice(&h.to_le_bytes());
                self.out.extend_from_slice(&pos.to_le_bytes());
            }
            header.extend_from_slice(&table_pos.to_le_bytes());
            header.extend_from_slice(&u32_of(slots)?.to_le_bytes());
        }
        self.out[..HEADER].copy_from_slice(&header);
        Ok(self.out)
    }
}

/// Where a reader's bytes come from: an open file or a slice.
pub trait Source {
    fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<()>;
}

impl Source for File {
    fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<()> {
        self.read_exact_at(buf, pos)
    }
}

impl Source for [u8] {
    fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<()> {
        let start = usize::try_from(pos).map_err(|_| truncated())?;
        let end = start.checked_add(buf.len()).ok_or_else(truncated)?;
        let src = self.get(start..end).ok_or_else(truncated)?;
        buf.copy_from_slice(src);
        Ok(())
    }
}

fn truncated() -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, "truncated cdb")
}

/// Looks keys up in a cdb.
pub struct Reader<S: Source + ?Sized> {
    src: Box<S>,
}

impl Reader<File> {
    pub fn open(path: &std::path::Path) -> io::Result<Self> {
        Ok(Reader::from_file(File::open(path)?))
    }

    /// A reader of a file already open (so what was checked is what is read).
    pub fn from_file(file: File) -> Self {
        Reader {
            src: Box::new(file),
        }
    }
}

impl Reader<[u8]> {
    pub fn from_bytes(bytes: &[u8]) -> Self {
        Reader {
            src: bytes.to_vec().into_boxed_slice(),
        }
    }
}

impl<S: Source + ?Sized> Reader<S> {
    fn pair(&self, pos: u64) -> io::Result<(u32, u32)> {
        let mut b = [0u8; 8];
        self.src.read_at(&mut b, pos)?;
        Ok((
            u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            u32::from_le_bytes([b[4], b[5], b[6], b[7]]),
        ))
    }

    /// Every value stored under `key`, in insertion order.
    pub fn find_all(&self, key: &[u8]) -> io::Result<Vec<Vec<u8>>> {
        let h = hash(key);
        let (table, slots) = self.pair(u64::from(h & 255) * 8)?;
        let mut found = Vec::new();
        if slots == 0 {
            return Ok(found);
        }
        let mut s = (h >> 8) % slots;
        for _ in 0..slots {
            let (sh, pos) = self.pair(u64::from(table) + 8 * u64::from(s))?;
            if pos == 0 {
                break;
            }
            if sh == h {
                let (klen, dlen) = self.pair(u64::from(pos))?;
                if klen > MAX_RECORD || dlen > MAX_RECORD {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "cdb record too large",
                    ));
                }
                if klen as usize == key.len() {
                    let mut k = vec![0u8; key.len()];
                    self.src.read_at(&mut k, u64::from(pos) + 8)?;
                    if k == key {
                        let mut d = vec![0u8; dlen as usize];
                        self.src
                            .read_at(&mut d, u64::from(pos) + 8 + u64::from(klen))?;
                        found.push(d);
                    }
                }
            }
            s = (s + 1) % slots;
        }
        Ok(found)
    }

    /// The first value stored under `key`.
    pub fn find(&self, key: &[u8]) -> io::Result<Option<Vec<u8>>> {
        // find_all reads every duplicate; rules files have few, so this stays cheap.
        Ok(self.find_all(key)?.into_iter().next())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_matches_djb() {
        assert_eq!(hash(b""), 5381);
        // 5381*33 ^ 'a'
        assert_eq!(hash(b"a"), (5381u32 * 33) ^ 97);
    }

    #[test]
    fn empty_cdb_is_just_the_header() {
        let bytes = Writer::new().finish().unwrap();
        assert_eq!(bytes.len(), 2048);
        // every table points at the end with zero slots
        assert_eq!(&bytes[0..8], &[0, 8, 0, 0, 0, 0, 0, 0]);
        let r = Reader::from_bytes(&bytes);
        assert_eq!(r.find(b"x").unwrap(), None);
    }

    #[test]
    fn round_trip_with_duplicates_in_order() {
        let mut w = Writer::new();
        for i in 0..500u32 {
            w.add(format!("key{i}").as_bytes(), &i.to_le_bytes())
                .unwrap();
        }
        w.add(b"dup", b"first").unwrap();
        w.add(b"", b"empty key").unwrap();
        w.add(b"dup", b"second").unwrap();
        let bytes = w.finish().unwrap();
        let r = Reader::from_bytes(&bytes);
        for i in 0..500u32 {
            assert_eq!(
                r.find(format!("key{i}").as_bytes()).unwrap(),
                Some(i.to_le_bytes().to_vec())
            );
        }
        assert_eq!(
            r.find_all(b"dup").unwrap(),
            vec![b"first".to_vec(), b"second".to_vec()]
        );
        assert_eq!(r.find(b"").unwrap(), Some(b"empty key".to_vec()));
        assert_eq!(r.find(b"key500").unwrap(), None);
    }

    #[test]
    fn truncated_files_are_errors_not_panics() {
        let mut w = Writer::new();
        w.add(b"k", b"v").unwrap();
        let bytes = w.finish().unwrap();
        for cut in [10, 2048, 2050, bytes.len() - 1] {
            let r = Reader::from_bytes(&bytes[..cut]);
            assert!(r.find(b"k").is_err() || r.find(b"k").unwrap().is_none());
        }
    }
}
