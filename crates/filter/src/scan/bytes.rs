//! Byte searches for the MIME walk, the zip scan and the rules: memchr's portable
//! word-at-a-time routines (`memchr::arch::all`), not its SIMD ones. Those ask the CPU
//! what it supports at their first call, and in a virtual machine every `cpuid` traps
//! to the hypervisor: on the machine of docs/performance.md that first call cost more
//! than all the searches of a small message together.

use memchr::arch::all::memchr::One;
use memchr::arch::all::twoway::Finder;

/// Where `byte` first is in `haystack`.
pub fn find(byte: u8, haystack: &[u8]) -> Option<usize> {
    One::new(byte).find(haystack)
}

/// Every place of `byte` in `haystack`, the last first.
pub fn rfind_all(byte: u8, haystack: &[u8]) -> impl Iterator<Item = usize> + '_ {
    let one = One::new(byte);
    let mut end = haystack.len();
    std::iter::from_fn(move || {
        let at = one.rfind(&haystack[..end])?;
        end = at;
        Some(at)
    })
}

/// Whether `needle` is in `haystack` (Two-Way: linear, whatever the two are).
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.len() >= needle.len() && Finder::new(needle).find(haystack, needle).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn searches_agree_with_the_obvious_loops() {
        let hay = b"PK\x05\x06 ab\nPK\x05\x06\n\nxyz\x06".repeat(7);
        for byte in [b'\n', 0x06, b'P', b'q'] {
            assert_eq!(find(byte, &hay), hay.iter().position(|&b| b == byte));
            let ours: Vec<usize> = rfind_all(byte, &hay).collect();
            let obvious: Vec<usize> = (0..hay.len()).rev().filter(|&i| hay[i] == byte).collect();
            assert_eq!(ours, obvious);
        }
        for needle in [&b""[..], b"P", b"\nPK", b"xyz\x06PK", b"absent", &hay[..]] {
            let obvious = needle.is_empty() || hay.windows(needle.len()).any(|w| w == needle);
            assert_eq!(contains(&hay, needle), obvious, "{needle:?}");
        }
        assert!(!contains(b"ab", b"abc"));
    }
}
