//! Encoding PDUs for the wire: header (and its digest), data, padding, data digest.

use super::digest::{crc32c, pad_bytes, to_wire};
use super::pdu::{Bhs, BHS_BYTES, DIGEST_BYTES};
use super::reader::Digests;

/// Appends a whole PDU to `out`.
pub fn encode_pdu(bhs: &Bhs, ahs: &[u8], data: &[u8], d: Digests, out: &mut Vec<u8>) {
    debug_assert_eq!(
        bhs.data_segment_len() as usize,
        data.len(),
        "BHS length matches data"
    );
    let start = out.len();
    out.extend_from_slice(&bhs.0);
    out.extend_from_slice(ahs);
    if d.header {
        let crc = crc32c(&out[start..]);
        out.extend_from_slice(&to_wire(crc));
    }
    if !data.is_empty() {
        out.extend_from_slice(data);
        let (trailer, n) = data_trailer(data, d);
        out.extend_from_slice(&trailer[..n]);
    }
}

/// The header followed by its digest when enabled; returns the bytes and how many are used.
pub fn header_with_digest(bhs: &Bhs, d: Digests) -> ([u8; BHS_BYTES + DIGEST_BYTES], usize) {
    let mut out = [0u8; BHS_BYTES + DIGEST_BYTES];
    out[..BHS_BYTES].copy_from_slice(&bhs.0);
    if d.header {
        out[BHS_BYTES..].copy_from_slice(&to_wire(crc32c(&bhs.0)));
        (out, BHS_BYTES + DIGEST_BYTES)
    } else {
        (out, BHS_BYTES)
    }
}

/// What follows a data segment: padding, then the data digest (over data and padding) when
/// enabled. Returns the bytes and how many are used.
pub fn data_trailer(data: &[u8], d: Digests) -> ([u8; 8], usize) {
    let mut out = [0u8; 8];
    let pad = pad_bytes(data.len());
    if d.data && !data.is_empty() {
        let crc = super::digest::crc32c_append(crc32c(data), &[0u8; 3][..pad]);
        out[pad..pad + 4].copy_from_slice(&to_wire(crc));
        (out, pad + 4)
    } else {
        (out, pad)
    }
}
