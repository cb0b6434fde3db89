//! The Internet checksum (RFC 1071): one's-complement sum of 16-bit big-endian words.

/// Adds the 16-bit big-endian words of `bytes` to a 32-bit accumulator.
#[inline(always)]
pub fn add_bytes<const N: usize>(mut acc: u32, bytes: &[u8; N]) -> u32 {
    let mut i = 0;
    while i + 1 < N {
        acc += u16::from_be_bytes([bytes[i], bytes[i + 1]]) as u32;
        i += 2;
    }
    if N % 2 == 1 {
        acc += (bytes[N - 1] as u32) << 8;
    }
    acc
}

/// Folds the carries of a 32-bit accumulator and complements it.
#[inline(always)]
pub fn finish(mut acc: u32) -> u16 {
    acc = (acc & 0xffff) + (acc >> 16);
    acc = (acc & 0xffff) + (acc >> 16);
    !(acc as u16)
}
