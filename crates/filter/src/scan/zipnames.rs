//! The file names inside a zip archive — enough to apply the attachment rules to
//! `invoice.zip` carrying `invoice.pdf.exe` — read the way zip tools read them, so that
//! no tool sees a name this module missed:
//!
//! - The end-of-central-directory record is searched backwards from the end, within the
//!   last 64 KiB + 22 bytes, as unzip and Python's zipfile do; so a zip behind other
//!   bytes (a "JPEG" with a zip appended, a self-extractor) is found ([`is_zip`]). When
//!   bytes were put in front, the central directory is where the record says **and**
//!   where its size puts it; both are read when they differ.
//! - Every member's name in the central directory **and** in its local file header (the
//!   two can differ; streaming extractors use the local one), and the names of local
//!   file headers that no central directory entry points at.
//! - Members that are themselves zips (stored or deflated; whatever their names) are
//!   opened in turn, to [`MAX_ZIP_DEPTH`] levels.
//!
//! Everything is bounded: [`MAX_ENTRIES`] names per archive, [`MAX_MEMBER_INFLATED`]
//! bytes inflated per member and [`MAX_INFLATED`] per message (a decompression bomb is
//! refused, never inflated into memory: members are inflated in 64 KiB pieces and only a
//! nested zip of at most [`MAX_NESTED_ZIP`] bytes is kept whole).

use miniz_oxide::inflate::stream::{inflate, InflateState};
use miniz_oxide::{DataFormat, MZError, MZFlush, MZStatus};
use std::borrow::Cow;
use std::collections::HashSet;

/// Most entries we list from one archive.
pub const MAX_ENTRIES: usize = 10_000;
/// Deepest zip nesting we follow: the archive in the message is level 1, a zip inside it
/// level 2, one inside that level 3. A zip found deeper is refused (it cannot be checked).
pub const MAX_ZIP_DEPTH: usize = 3;
/// Largest inflated member kept in memory to be opened as a nested zip; a nested zip
/// bigger than this is refused.
pub const MAX_NESTED_ZIP: usize = 8 * 1024 * 1024;
/// Most bytes one member may inflate to (each deflated member is inflated, as a stream,
/// to see whether it is a zip); more is refused as a decompression bomb.
pub const MAX_MEMBER_INFLATED: u64 = 128 * 1024 * 1024;
/// Most bytes inflated for one message, all members of all archives together.
pub const MAX_INFLATED: u64 = 256 * 1024 * 1024;

/// Where zip readers look for the end-of-central-directory record: its 22 bytes plus a
/// comment of up to 65 535.
const EOCD_SEARCH: usize = 22 + 65_535;
const LFH_SIG: u32 = 0x0403_4b50;
const EOCD_SIG: u32 = 0x0605_4b50;
const CDH_SIG: u32 = 0x0201_4b50;
/// Inflated in pieces of this size.
const CHUNK: usize = 64 * 1024;

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(
        b.get(at..at.checked_add(2)?)?.try_into().ok()?,
    ))
}
fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        b.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}

/// A name found in an archive (or in one nested in it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    /// Uncompressed size as the archive states it.
    pub size: u64,
    /// The archive it is in: `outer.zip`, or `outer.zip/inner.zip` for a nested one.
    pub archive: String,
}

/// How much inflating one message has cost so far (bounded by [`MAX_INFLATED`]).
#[derive(Debug, Default)]
pub struct Budget {
    inflated: u64,
}

struct Member<'a> {
    /// The central directory's name, then the local header's if it differs.
    names: Vec<String>,
    size: u64,
    method: u16,
    encrypted: bool,
    /// The compressed data.
    data: &'a [u8],
}

struct Archive<'a> {
    members: Vec<Member<'a>>,
    /// Local file headers no central directory entry points at: (name, size).
    hidden: Vec<(String, u64)>,
}

/// Whether the record at `at` reads as one a zip tool would use: a single-disk archive
/// (or a zip64 marker) whose entry counts agree. Its comment length is not checked:
/// Python's zipfile and unzip accept a record whose comment runs past the end.
fn plausible_eocd(zip: &[u8], at: usize) -> bool {
    let field = |off| u16_at(zip, at + off);
    let (Some(disk), Some(cd_disk), Some(on_disk), Some(total)) =
        (field(4), field(6), field(8), field(10))
    else {
        return false;
    };
    (disk == 0 || disk == 0xffff) && (cd_disk == 0 || cd_disk == 0xffff) && on_disk == total
}

/// Where an end-of-central-directory signature is, searched backwards from the end as
/// zip readers do (the last 64 KiB + 22 bytes): by the signature's last byte, a word at
/// a time — every part of every message is searched.
fn eocd_candidates(zip: &[u8]) -> impl Iterator<Item = usize> + '_ {
    let last = zip.len().checked_sub(22);
    let first = zip.len().saturating_sub(EOCD_SEARCH);
    let [.., sig_last] = EOCD_SIG.to_le_bytes();
    crate::scan::bytes::rfind_all(sig_last, &zip[first..])
        .filter_map(move |j| (first + j).checked_sub(3).filter(|&i| i >= first))
        .filter(move |&i| last.is_some_and(|last| i <= last) && u32_at(zip, i) == Some(EOCD_SIG))
}

/// The end-of-central-directory record, the last one first. `strict`: only a record
/// whose fields make sense (so that four stray bytes in a picture are not taken for
/// one).
fn find_eocd(zip: &[u8], strict: bool) -> Option<usize> {
    eocd_candidates(zip).find(|&i| !strict || plausible_eocd(zip, i))
}

/// Whether zip tools would open `data` as a zip: it starts with a local file header, or
/// ends (within 64 KiB + 22 bytes) with an end-of-central-directory record — whatever
/// comes before it — that reads as one or leads to a central directory that reads.
pub fn is_zip(data: &[u8]) -> bool {
    if data.starts_with(b"PK\x03\x04") {
        return true;
    }
    // One pass: a plausible record, else any record whose directory reads.
    let mut any = false;
    for at in eocd_candidates(data) {
        if plausible_eocd(data, at) {
            return true;
        }
        any = true;
    }
    any && read_archive(data).is_ok()
}

/// One central directory, at `start`; local header offsets shifted by `delta`.
fn read_cd(
    zip: &[u8],
    start: usize,
    count: usize,
    delta: i64,
) -> Result<Vec<(usize, Member<'_>)>, &'static str> {
    let mut at = start;
    let mut out = Vec::new();
    let mut read = 0;
    loop {
        // Python's zipfile reads entries for as long as the directory's size says, not
        // the count: entries past the count are read too, while there are more.
        if read >= count && u32_at(zip, at) != Some(CDH_SIG) {
            break;
        }
        if read >= MAX_ENTRIES {
            return Err("too many members");
        }
        if u32_at(zip, at) != Some(CDH_SIG) {
            return Err("bad central directory entry");
        }
        let field16 = |off| u16_at(zip, at + off).ok_or("truncated");
        let field32 = |off| u32_at(zip, at + off).ok_or("truncated");
        let flags = field16(8)?;
        let method = field16(10)?;
        let csize = field32(20)? as usize;
        let size = field32(24)? as u64;
        let name_len = field16(28)? as usize;
        let extra_len = field16(30)? as usize;
        let comment_len = field16(32)? as usize;
        let offset = field32(42)? as i64;
        let name = zip.get(at + 46..at + 46 + name_len).ok_or("truncated")?;
        let local = usize::try_from(offset + delta).map_err(|_| "bad local header offset")?;
        // The local header names the member too, and streaming extractors go by it.
        if u32_at(zip, local) != Some(LFH_SIG) {
            return Err("bad local file header");
        }
        let l_name_len = u16_at(zip, local + 26).ok_or("truncated")? as usize;
        let l_extra_len = u16_at(zip, local + 28).ok_or("truncated")? as usize;
        let l_name = zip
            .get(local + 30..local + 30 + l_name_len)
            .ok_or("truncated")?;
        let data_start = local + 30 + l_name_len + l_extra_len;
        let data = zip
            .get(data_start..data_start + csize)
            .ok_or("truncated member")?;
        let mut names = vec![String::from_utf8_lossy(name).into_owned()];
        if l_name != name {
            names.push(String::from_utf8_lossy(l_name).into_owned());
        }
        out.push((
            local,
            Member {
                names,
                size,
                method,
                encrypted: flags & 1 != 0,
                data,
            },
        ));
        at += 46 + name_len + extra_len + comment_len;
        read += 1;
    }
    Ok(out)
}

/// Local file headers outside every member's data that no central directory entry
/// points at (a streaming extractor still unpacks them).
fn hidden_entries(
    zip: &[u8],
    referenced: &HashSet<usize>,
    members: &[Member<'_>],
) -> Vec<(String, u64)> {
    let base = zip.as_ptr() as usize;
    let mut covered: Vec<(usize, usize)> = members
        .iter()
        .map(|m| {
            let start = m.data.as_ptr() as usize - base;
            (start, start + m.data.len())
        })
        .collect();
    covered.sort_unstable();
    let mut out = Vec::new();
    let mut at = 0;
    let mut ranges = covered.into_iter().peekable();
    while at + 30 <= zip.len() {
        // Skip any member's data we are in.
        while let Some(&(start, end)) = ranges.peek() {
            if end <= at {
                ranges.next();
            } else if start <= at {
                at = end;
                ranges.next();
            } else {
                break;
            }
        }
        if at + 30 > zip.len() {
            break;
        }
        if u32_at(zip, at) == Some(LFH_SIG) && !referenced.contains(&at) {
            let name_len = u16_at(zip, at + 26).unwrap_or(0) as usize;
            if let Some(name) = zip
                .get(at + 30..at + 30 + name_len)
                .filter(|n| !n.is_empty())
            {
                let size = u32_at(zip, at + 22).unwrap_or(0) as u64;
                out.push((String::from_utf8_lossy(name).into_owned(), size));
            }
        }
        at += 1;
    }
    out
}

fn read_archive(zip: &[u8]) -> Result<Archive<'_>, &'static str> {
    let eocd = find_eocd(zip, true)
        .or_else(|| find_eocd(zip, false))
        .ok_or("no central directory")?;
    let count = u16_at(zip, eocd + 10).ok_or("truncated")? as usize;
    let cd_size = u32_at(zip, eocd + 12).ok_or("truncated")?;
    let cd_offset = u32_at(zip, eocd + 16).ok_or("truncated")?;
    if count == 0xffff || cd_size == 0xffff_ffff || cd_offset == 0xffff_ffff {
        return Err("zip64 archives are not read");
    }
    // Listing only some members would let the rest through unchecked: refuse instead.
    if count > MAX_ENTRIES {
        return Err("too many members");
    }
    // The central directory is where the record says, and where its size puts it: they
    // differ when bytes were put in front of the archive (unzip and Python's zipfile then
    // go by the second). A tool may read either, so both are read.
    let mut starts = vec![(cd_offset as usize, 0i64)];
    if let Some(real) = eocd.checked_sub(cd_size as usize) {
        if real != cd_offset as usize {
            starts.push((real, real as i64 - cd_offset as i64));
        }
    }
    let mut members = Vec::new();
    let mut referenced = HashSet::new();
    let mut first_error = None;
    let mut read_one = false;
    for (start, delta) in starts {
        match read_cd(zip, start, count, delta) {
            Ok(found) => {
                read_one = true;
                for (local, member) in found {
                    if referenced.insert(local) {
                        members.push(member);
                    }
                }
            }
            Err(why) => {
                first_error.get_or_insert(why);
            }
        }
    }
    if !read_one {
        return Err(first_error.unwrap_or("bad central directory"));
    }
    let hidden = hidden_entries(zip, &referenced, &members);
    if members.len() + hidden.len() > MAX_ENTRIES {
        return Err("too many members");
    }
    Ok(Archive { members, hidden })
}

/// `(name, uncompressed size)` of every entry of this one archive (nested archives are
/// not opened: see [`list`]), or why the archive can't be read.
pub fn names(zip: &[u8]) -> Result<Vec<(String, u64)>, &'static str> {
    let archive = read_archive(zip)?;
    let mut out: Vec<(String, u64)> = archive
        .members
        .iter()
        .flat_map(|m| m.names.iter().map(move |n| (n.clone(), m.size)))
        .collect();
    out.extend(archive.hidden);
    Ok(out)
}

/// Every name in the archive `zip` (called `outer` in the message) and in the zips
/// nested in it, or — as one line for the log — why it cannot be checked: damaged,
/// nested too deep, too big to inflate.
pub fn list(zip: &[u8], outer: &str, budget: &mut Budget) -> Result<Vec<Entry>, String> {
    let mut out = Vec::new();
    walk(zip, outer, outer, 1, budget, &mut out)?;
    Ok(out)
}

fn walk(
    zip: &[u8],
    label: &str,
    top: &str,
    level: usize,
    budget: &mut Budget,
    out: &mut Vec<Entry>,
) -> Result<(), String> {
    let archive = read_archive(zip).map_err(|why| format!("damaged zip archive {label}: {why}"))?;
    for m in &archive.members {
        for name in &m.names {
            out.push(Entry {
                name: name.clone(),
                size: m.size,
                archive: label.to_string(),
            });
        }
    }
    for (name, size) in &archive.hidden {
        out.push(Entry {
            name: name.clone(),
            size: *size,
            archive: label.to_string(),
        });
    }
    // A member that is itself a zip is opened, whatever it is called.
    for m in &archive.members {
        if m.encrypted {
            continue;
        }
        let inner = format!("{label}/{}", m.names[0]);
        let content: Cow<[u8]> = match m.method {
            0 => Cow::Borrowed(m.data),
            8 => match inflate_member(m.data, &inner, budget)? {
                Some(bytes) => Cow::Owned(bytes),
                None => continue,
            },
            // Other methods (bzip2, LZMA, …) are not unpacked here; the virus engines may.
            _ => continue,
        };
        if !is_zip(&content) {
            continue;
        }
        if level >= MAX_ZIP_DEPTH {
            return Err(format!(
                "zip archives nested deeper than {MAX_ZIP_DEPTH} in {top}"
            ));
        }
        walk(&content, &inner, top, level + 1, budget, out)?;
    }
    Ok(())
}

/// Inflate one deflated member as a stream, counting against the budget. The whole
/// content when it is at most [`MAX_NESTED_ZIP`] bytes; `None` when it is bigger and not
/// a zip; an error when it is bigger and a zip, or inflates past the limits.
fn inflate_member(
    data: &[u8],
    label: &str,
    budget: &mut Budget,
) -> Result<Option<Vec<u8>>, String> {
    let damaged = |why: &str| format!("damaged zip archive {label}: {why}");
    let mut state = InflateState::new_boxed(DataFormat::Raw);
    let mut buf = vec![0u8; CHUNK];
    let mut input = data;
    let mut whole: Option<Vec<u8>> = Some(Vec::new());
    let mut head = Vec::new();
    let mut tail: Vec<u8> = Vec::new();
    let mut total: u64 = 0;
    loop {
        let r = inflate(&mut state, input, &mut buf, MZFlush::None);
        input = &input[r.bytes_consumed..];
        let piece = &buf[..r.bytes_written];
        total += piece.len() as u64;
        budget.inflated += piece.len() as u64;
        if total > MAX_MEMBER_INFLATED {
            return Err(format!(
                "zip member {label} inflates to more than {MAX_MEMBER_INFLATED} bytes"
            ));
        }
        if budget.inflated > MAX_INFLATED {
            return Err(format!(
                "zip members inflate to more than {MAX_INFLATED} bytes in all"
            ));
        }
        match &mut whole {
            Some(w) if w.len() + piece.len() <= MAX_NESTED_ZIP => {
                w.try_reserve(piece.len())
                    .map_err(|_| damaged("out of memory"))?;
                w.extend_from_slice(piece);
            }
            Some(w) => {
                // Too big to keep: from here on only its first bytes and its end.
                head = w[..w.len().min(4)].to_vec();
                let keep = w.len().saturating_sub(EOCD_SEARCH);
                tail = w.split_off(keep);
                tail.extend_from_slice(piece);
                whole = None;
            }
            None => {
                tail.extend_from_slice(piece);
                if tail.len() > 2 * EOCD_SEARCH {
                    tail.drain(..tail.len() - EOCD_SEARCH);
                }
            }
        }
        match r.status {
            Ok(MZStatus::StreamEnd) => break,
            Ok(_) if r.bytes_consumed > 0 || r.bytes_written > 0 => {}
            Ok(_) | Err(MZError::Buf) => return Err(damaged("truncated deflate data")),
            Err(_) => return Err(damaged("bad deflate data")),
        }
    }
    match whole {
        Some(w) => Ok(Some(w)),
        None if head.starts_with(b"PK\x03\x04") || find_eocd(&tail, true).is_some() => Err(
            format!("nested zip archive {label} is larger than {MAX_NESTED_ZIP} bytes"),
        ),
        None => Ok(None),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The record search as a byte-by-byte loop, to hold the fast one against.
    fn find_eocd_obvious(zip: &[u8], strict: bool) -> Option<usize> {
        let last = zip.len().checked_sub(22)?;
        let first = zip.len().saturating_sub(EOCD_SEARCH);
        (first..=last)
            .rev()
            .find(|&i| u32_at(zip, i) == Some(EOCD_SIG) && (!strict || plausible_eocd(zip, i)))
    }

    #[test]
    fn the_record_is_found_where_a_byte_by_byte_search_finds_it() {
        let sig = EOCD_SIG.to_le_bytes();
        let zip = make_zip(&[("a.txt", b"hello")]);
        let mut inputs: Vec<Vec<u8>> = vec![vec![], sig.to_vec(), zip.clone()];
        // Stray and real signatures at the edges of the searched window, in short and
        // long data, with and without a record that makes sense.
        for len in [
            21,
            22,
            25,
            100,
            EOCD_SEARCH - 1,
            EOCD_SEARCH,
            EOCD_SEARCH + 50,
        ] {
            for at in [
                0,
                1,
                3,
                len.saturating_sub(26),
                len.saturating_sub(22),
                len.saturating_sub(4),
                len / 2,
            ] {
                let mut data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
                if at + 4 <= len {
                    data[at..at + 4].copy_from_slice(&sig);
                }
                inputs.push(data.clone());
                if at + 22 <= len {
                    data[at + 4..at + 22].fill(0);
                    inputs.push(data);
                }
            }
        }
        let mut with_comment = zip.clone();
        with_comment.extend_from_slice(&sig);
        with_comment.extend_from_slice(&[0x06; 30]);
        inputs.push(with_comment);
        for data in &inputs {
            for strict in [true, false] {
                assert_eq!(
                    find_eocd(data, strict),
                    find_eocd_obvious(data, strict),
                    "len {} strict {strict}",
                    data.len()
                );
            }
            let obvious = data.starts_with(b"PK\x03\x04")
                || find_eocd_obvious(data, true).is_some()
                || (find_eocd_obvious(data, false).is_some() && read_archive(data).is_ok());
            assert_eq!(is_zip(data), obvious, "len {}", data.len());
        }
    }

    /// A stored (uncompressed) zip with the given files, built by hand.
    pub fn make_zip(files: &[(&str, &[u8])]) -> Vec<u8> {
        let raw: Vec<(&str, u16, &[u8], u32)> = files
            .iter()
            .map(|&(name, data)| (name, 0, data, data.len() as u32))
            .collect();
        make_zip_raw(&raw)
    }

    /// A zip of `(name, method, data as stored, uncompressed size)`, built by hand.
    pub fn make_zip_raw(files: &[(&str, u16, &[u8], u32)]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut central = Vec::new();
        for &(name, method, data, size) in files {
            let offset = out.len() as u32;
            out.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
            out.extend_from_slice(&[20, 0, 0, 0]);
            out.extend_from_slice(&method.to_le_bytes());
            out.extend_from_slice(&[0, 0, 0, 0]);
            out.extend_from_slice(&0u32.to_le_bytes()); // crc (not checked by us)
            out.extend_from_slice(&(data.len() as u32).to_le_bytes());
            out.extend_from_slice(&size.to_le_bytes());
            out.extend_from_slice(&(name.len() as u16).to_le_bytes());
            out.extend_from_slice(&0u16.to_le_bytes());
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(data);
            central.extend_from_slice(&CDH_SIG.to_le_bytes());
            central.extend_from_slice(&[20, 0, 20, 0, 0, 0]);
            central.extend_from_slice(&method.to_le_bytes());
            central.extend_from_slice(&[0, 0, 0, 0]);
            central.extend_from_slice(&0u32.to_le_bytes());
            central.extend_from_slice(&(data.len() as u32).to_le_bytes());
            central.extend_from_slice(&size.to_le_bytes());
            central.extend_from_slice(&(name.len() as u16).to_le_bytes());
            central.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
            central.extend_from_slice(&offset.to_le_bytes());
            central.extend_from_slice(name.as_bytes());
        }
        let cd_offset = out.len() as u32;
        out.extend_from_slice(&central);
        out.extend_from_slice(&EOCD_SIG.to_le_bytes());
        out.extend_from_slice(&[0, 0, 0, 0]);
        out.extend_from_slice(&(files.len() as u16).to_le_bytes());
        out.extend_from_slice(&(files.len() as u16).to_le_bytes());
        out.extend_from_slice(&(central.len() as u32).to_le_bytes());
        out.extend_from_slice(&cd_offset.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out
    }

    fn deflate(data: &[u8]) -> Vec<u8> {
        miniz_oxide::deflate::compress_to_vec(data, 6)
    }

    /// A raw deflate stream of `1 + 258 * runs` zero bytes in about `runs * 13 / 8`
    /// bytes (fixed Huffman codes: a literal 0, then length 258 at distance 1 repeated).
    fn zeros_deflated(runs: usize) -> Vec<u8> {
        struct Bits {
            out: Vec<u8>,
            acc: u64,
            n: u32,
        }
        impl Bits {
            fn put(&mut self, value: u64, n: u32) {
                self.acc |= value << self.n;
                self.n += n;
                while self.n >= 8 {
                    self.out.push(self.acc as u8);
                    self.acc >>= 8;
                    self.n -= 8;
                }
            }
            /// A Huffman code goes most significant bit first.
            fn code(&mut self, code: u64, n: u32) {
                let reversed = (0..n).fold(0, |r, i| r | ((code >> i) & 1) << (n - 1 - i));
                self.put(reversed, n);
            }
        }
        let mut b = Bits {
            out: Vec::new(),
            acc: 0,
            n: 0,
        };
        b.put(1, 1); // final block
        b.put(1, 2); // fixed Huffman codes
        b.code(0x30, 8); // literal 0
        for _ in 0..runs {
            b.code(0xc5, 8); // length code 285: 258 bytes
            b.code(0, 5); // distance code 0: distance 1
        }
        b.code(0, 7); // end of block
        b.put(0, 7);
        b.out
    }

    fn inflated(data: &[u8]) -> Vec<u8> {
        miniz_oxide::inflate::decompress_to_vec(data).unwrap()
    }

    fn list_of(zip: &[u8]) -> Result<Vec<(String, String)>, String> {
        Ok(list(zip, "a.zip", &mut Budget::default())?
            .into_iter()
            .map(|e| (e.name, e.archive))
            .collect())
    }

    fn pair(name: &str, archive: &str) -> (String, String) {
        (name.to_string(), archive.to_string())
    }

    #[test]
    fn the_zero_bomb_helper_is_right() {
        assert_eq!(inflated(&zeros_deflated(4)), vec![0u8; 1 + 4 * 258]);
    }

    #[test]
    fn entries_past_the_count_and_hidden_local_headers_are_read() {
        let mut zip = make_zip(&[("a.txt", b"hello"), ("b.exe", b"MZ")]);
        // The end record says one entry; the directory holds two.
        let eocd = zip.len() - 22;
        zip[eocd + 8..eocd + 12].copy_from_slice(&[1, 0, 1, 0]);
        let names: Vec<String> = super::names(&zip)
            .unwrap()
            .into_iter()
            .map(|n| n.0)
            .collect();
        assert_eq!(names, vec!["a.txt", "b.exe"]);

        // A local header that no directory entry points at still counts.
        let good = make_zip(&[("a.txt", b"hello")]);
        let cd = good.len() - 22 - (46 + 5);
        let mut zip = good[..cd].to_vec();
        let hidden = make_zip(&[("c.exe", b"MZ")]);
        let hidden_local = &hidden[..30 + 5 + 2];
        zip.extend_from_slice(hidden_local);
        let cd_offset = zip.len() as u32;
        zip.extend_from_slice(&good[cd..good.len() - 22]);
        zip.extend_from_slice(&good[good.len() - 22..good.len() - 6]);
        zip.extend_from_slice(&cd_offset.to_le_bytes());
        zip.extend_from_slice(&[0, 0]);
        let names: Vec<String> = super::names(&zip)
            .unwrap()
            .into_iter()
            .map(|n| n.0)
            .collect();
        assert_eq!(names, vec!["a.txt", "c.exe"]);
    }

    #[test]
    fn a_zip_is_found_by_its_end_behind_anything() {
        let zip = make_zip(&[("c.exe", b"MZ")]);
        let mut jpeg = b"\xff\xd8\xff\xe0JFIF".to_vec();
        jpeg.extend(std::iter::repeat_n(0u8, 4096));
        jpeg.extend_from_slice(&zip);
        assert!(is_zip(&jpeg));
        assert_eq!(list_of(&jpeg).unwrap(), vec![pair("c.exe", "a.zip")]);
        // A comment that runs past the end (zip tools still open it).
        let eocd = jpeg.len() - 22;
        jpeg[eocd + 20..eocd + 22].copy_from_slice(&[0xff, 0xff]);
        assert!(is_zip(&jpeg));
        // Not zips: text, and a picture with four stray bytes in it.
        assert!(!is_zip(b"just some text, nothing else"));
        let mut stray = vec![7u8; 1000];
        stray[500..504].copy_from_slice(b"PK\x05\x06");
        assert!(!is_zip(&stray));
    }

    #[test]
    fn nested_zips_stored_or_deflated_are_opened_to_the_depth_limit() {
        let inner = make_zip(&[("c.exe", b"MZ")]);
        let packed = deflate(&inner);
        let outer = make_zip_raw(&[
            ("notes.txt", 0, b"hi", 2),
            ("x.dat", 8, &packed, inner.len() as u32),
        ]);
        assert_eq!(
            list_of(&outer).unwrap(),
            vec![
                pair("notes.txt", "a.zip"),
                pair("x.dat", "a.zip"),
                pair("c.exe", "a.zip/x.dat")
            ]
        );
        // Three levels are opened; a fourth is refused.
        let mut deep = inner.clone();
        for level in 0..MAX_ZIP_DEPTH - 1 {
            let packed = deflate(&deep);
            deep = make_zip_raw(&[(&format!("l{level}.zip"), 8, &packed, deep.len() as u32)]);
        }
        let listed = list_of(&deep).unwrap();
        assert_eq!(
            listed.last().unwrap(),
            &pair("c.exe", "a.zip/l1.zip/l0.zip")
        );
        let deeper = make_zip(&[("l2.zip", &deep)]);
        assert_eq!(
            list_of(&deeper),
            Err(format!(
                "zip archives nested deeper than {MAX_ZIP_DEPTH} in a.zip"
            ))
        );
    }

    #[test]
    fn inflating_is_bounded_per_member_and_per_message() {
        // One member of 1 + 258 * 600 000 bytes (about 148 MiB) in under 1 MiB.
        let bomb = zeros_deflated(600_000);
        let zip = make_zip_raw(&[("zeros.bin", 8, &bomb, 1000)]);
        assert_eq!(
            list_of(&zip),
            Err(format!(
                "zip member a.zip/zeros.bin inflates to more than {MAX_MEMBER_INFLATED} bytes"
            ))
        );
        // Members under the per-member limit add up to the per-message one.
        let third = zeros_deflated((MAX_INFLATED / 3 / 258) as usize + 1);
        let zip = make_zip_raw(&[
            ("1.bin", 8, &third, 0),
            ("2.bin", 8, &third, 0),
            ("3.bin", 8, &third, 0),
        ]);
        assert_eq!(
            list_of(&zip),
            Err(format!(
                "zip members inflate to more than {MAX_INFLATED} bytes in all"
            ))
        );
        // The budget is per message: a second archive counts on from the first.
        let mut budget = Budget::default();
        let two = make_zip_raw(&[("1.bin", 8, &third, 0), ("2.bin", 8, &third, 0)]);
        assert!(list(&two, "x.zip", &mut budget).is_ok());
        assert!(list(&two, "y.zip", &mut budget).is_err());
    }

    #[test]
    fn a_nested_zip_too_big_to_keep_is_refused_a_big_file_is_not() {
        let big = vec![0u8; MAX_NESTED_ZIP + 1];
        let inner = make_zip(&[("c.exe", &big)]);
        let zip = make_zip_raw(&[("big.zip", 8, &deflate(&inner), inner.len() as u32)]);
        assert_eq!(
            list_of(&zip),
            Err(format!(
                "nested zip archive a.zip/big.zip is larger than {MAX_NESTED_ZIP} bytes"
            ))
        );
        // The same bytes that are not a zip: listed, not kept.
        let zip = make_zip_raw(&[("big.bin", 8, &deflate(&big), big.len() as u32)]);
        assert_eq!(list_of(&zip).unwrap(), vec![pair("big.bin", "a.zip")]);
    }

    #[test]
    fn damaged_deflate_data_is_an_error() {
        let packed = deflate(b"some text that compresses, some text that compresses");
        let zip = make_zip_raw(&[("t.txt", 8, &packed[..packed.len() / 2], 53)]);
        assert_eq!(
            list_of(&zip),
            Err("damaged zip archive a.zip/t.txt: truncated deflate data".to_string())
        );
    }

    #[test]
    fn lists_names_and_sizes() {
        let zip = make_zip(&[("a.txt", b"hello"), ("dir/b.exe", b"MZ")]);
        assert_eq!(
            names(&zip).unwrap(),
            vec![("a.txt".to_string(), 5), ("dir/b.exe".to_string(), 2)]
        );
    }

    #[test]
    fn too_many_members_is_an_error_not_a_partial_list() {
        let names: Vec<String> = (0..=MAX_ENTRIES).map(|i| format!("f{i}.txt")).collect();
        let files: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), &b""[..])).collect();
        assert_eq!(super::names(&make_zip(&files)), Err("too many members"));
        assert_eq!(
            super::names(&make_zip(&files[..MAX_ENTRIES]))
                .unwrap()
                .len(),
            MAX_ENTRIES
        );
    }

    #[test]
    fn damaged_archives_are_errors_not_panics() {
        let zip = make_zip(&[("a.txt", b"hello")]);
        for cut in 0..zip.len() {
            let _ = names(&zip[..cut]);
        }
        assert!(names(b"PK\x03\x04garbage").is_err());
    }
}
