//! CRC32C digests (RFC 7143 §13.1, Appendix B) and padding.

/// CRC32C of `bytes` (hardware-accelerated by the crc32c crate where the CPU has it).
pub fn crc32c(bytes: &[u8]) -> u32 {
    crc32c::crc32c(bytes)
}

/// CRC32C continued over more bytes.
pub fn crc32c_append(crc: u32, bytes: &[u8]) -> u32 {
    crc32c::crc32c_append(crc, bytes)
}

/// The digest as it travels: least significant byte first (RFC 7143 Appendix B).
pub fn to_wire(crc: u32) -> [u8; 4] {
    crc.to_le_bytes()
}

/// Bytes of padding after a segment of `len` bytes (segments end on 4-byte boundaries).
pub fn pad_bytes(len: usize) -> usize {
    (4 - len % 4) % 4
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_7143_appendix_b_vectors() {
        // 32 bytes of zeros, of ones, incrementing and decrementing, as transmitted.
        assert_eq!(to_wire(crc32c(&[0u8; 32])), [0xaa, 0x36, 0x91, 0x8a]);
        assert_eq!(to_wire(crc32c(&[0xffu8; 32])), [0x43, 0xab, 0xa8, 0x62]);
        let inc: Vec<u8> = (0..32).collect();
        assert_eq!(to_wire(crc32c(&inc)), [0x4e, 0x79, 0xdd, 0x46]);
        let dec: Vec<u8> = (0..32).rev().collect();
        assert_eq!(to_wire(crc32c(&dec)), [0x5c, 0xdb, 0x3f, 0x11]);
    }

    #[test]
    fn padding() {
        assert_eq!(pad_bytes(0), 0);
        assert_eq!(pad_bytes(1), 3);
        assert_eq!(pad_bytes(4), 0);
        assert_eq!(pad_bytes(7), 1);
    }
}
