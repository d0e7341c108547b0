//! The file names inside a zip archive, read from its central directory — enough to
//! apply the attachment rules to `invoice.zip` carrying `invoice.pdf.exe`, without
//! decompressing anything. Bounded: at most [`MAX_ENTRIES`] names.

/// Most entries we list from one archive.
pub const MAX_ENTRIES: usize = 10_000;

const EOCD_SIG: u32 = 0x0605_4b50;
const CDH_SIG: u32 = 0x0201_4b50;

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}
fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// `(name, uncompressed size)` of every entry, or why the archive can't be read.
pub fn names(zip: &[u8]) -> Result<Vec<(String, u64)>, &'static str> {
    // The end-of-central-directory record is in the last 22 + 65535 bytes.
    let search_from = zip.len().saturating_sub(22 + 65_535);
    let eocd = (search_from..zip.len().saturating_sub(21))
        .rev()
        .find(|&i| u32_at(zip, i) == Some(EOCD_SIG))
        .ok_or("no central directory")?;
    let count = u16_at(zip, eocd + 10).ok_or("truncated")? as usize;
    // Listing only some members would let the rest through unchecked: refuse instead.
    if count > MAX_ENTRIES {
        return Err("too many members");
    }
    let mut at = u32_at(zip, eocd + 16).ok_or("truncated")? as usize;
    let mut out = Vec::new();
    for _ in 0..count {
        if u32_at(zip, at) != Some(CDH_SIG) {
            return Err("bad central directory entry");
        }
        let size = u32_at(zip, at + 24).ok_or("truncated")? as u64;
        let name_len = u16_at(zip, at + 28).ok_or("truncated")? as usize;
        let extra_len = u16_at(zip, at + 30).ok_or("truncated")? as usize;
        let comment_len = u16_at(zip, at + 32).ok_or("truncated")? as usize;
        let name = zip.get(at + 46..at + 46 + name_len).ok_or("truncated")?;
        out.push((String::from_utf8_lossy(name).into_owned(), size));
        at += 46 + name_len + extra_len + comment_len;
    }
    Ok(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A stored (uncompressed) zip with the given files, built by hand.
    pub fn make_zip(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut central = Vec::new();
        for (name, data) in files {
            let offset = out.len() as u32;
            out.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
            out.extend_from_slice(&[20, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
            out.extend_from_slice(&0u32.to_le_bytes()); // crc (not checked by us)
            out.extend_from_slice(&(data.len() as u32).to_le_bytes());
            out.extend_from_slice(&(data.len() as u32).to_le_bytes());
            out.extend_from_slice(&(name.len() as u16).to_le_bytes());
            out.extend_from_slice(&0u16.to_le_bytes());
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(data);
            central.extend_from_slice(&CDH_SIG.to_le_bytes());
            central.extend_from_slice(&[20, 0, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
            central.extend_from_slice(&0u32.to_le_bytes());
            central.extend_from_slice(&(data.len() as u32).to_le_bytes());
            central.extend_from_slice(&(data.len() as u32).to_le_bytes());
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
