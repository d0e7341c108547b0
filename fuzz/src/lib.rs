//! Helpers shared by the fuzz targets.

/// The separator between the parts of an input that carries several (a rules source and
/// a client to look up, the three user-database files, a multilog script and its input):
/// a line holding only `==`.
pub const SEPARATOR: &[u8] = b"\n==\n";

/// `data` cut at every [`SEPARATOR`]; always at least one part.
pub fn parts(data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut rest = data;
    while let Some(at) = rest.windows(SEPARATOR.len()).position(|w| w == SEPARATOR) {
        out.push(&rest[..at]);
        rest = &rest[at + SEPARATOR.len()..];
    }
    out.push(rest);
    out
}

/// `data` cut into pieces of `size` bytes (the last may be shorter); `size` 0 is one
/// piece. For checking that a streaming parser gives the same result whatever the reads.
pub fn chunks(data: &[u8], size: usize) -> Vec<&[u8]> {
    if size == 0 || data.is_empty() {
        return vec![data];
    }
    data.chunks(size).collect()
}

/// A reader that returns at most `size` bytes per read.
pub struct Trickle<'a> {
    pub data: &'a [u8],
    pub size: usize,
}

impl std::io::Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.data.len().min(buf.len()).min(self.size.max(1));
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}
