//! Framing PDUs out of a byte stream, checking digests and lengths (RFC 7143 §11.2).

use super::digest::{crc32c, crc32c_append, pad_bytes};
use super::pdu::{Bhs, Opcode, BHS_BYTES, DIGEST_BYTES};

/// Which digests are in use on a connection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Digests {
    /// Header digest (CRC32C).
    pub header: bool,
    /// Data digest (CRC32C).
    pub data: bool,
}

/// A received PDU, padding stripped and digests checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pdu {
    /// The header.
    pub bhs: Bhs,
    /// Additional header segments.
    pub ahs: Vec<u8>,
    /// The data segment.
    pub data: Vec<u8>,
}

/// A PDU borrowed from the reader's buffer: its data is read in place, with no copy, until
/// the reader is used again.
#[derive(Debug)]
pub struct PduRef<'a> {
    /// The header.
    pub bhs: Bhs,
    /// Additional header segments.
    pub ahs: &'a [u8],
    /// The data segment.
    pub data: &'a [u8],
}

impl PduRef<'_> {
    /// An owned copy.
    pub fn to_owned(&self) -> Pdu {
        Pdu {
            bhs: self.bhs,
            ahs: self.ahs.to_vec(),
            data: self.data.to_vec(),
        }
    }
}

/// What is wrong with incoming bytes.
#[derive(Debug, thiserror::Error)]
pub enum PduError {
    /// The header digest is wrong: the header cannot be trusted, the connection must end.
    #[error("header digest mismatch (expected {expected:#010x}, got {got:#010x})")]
    HeaderDigest {
        /// What the bytes hash to.
        expected: u32,
        /// What the PDU carried.
        got: u32,
    },
    /// The data digest is wrong: the PDU is discarded and rejected.
    #[error("data digest mismatch (expected {expected:#010x}, got {got:#010x})")]
    DataDigest {
        /// The PDU's header.
        bhs: Bhs,
        /// What the bytes hash to.
        expected: u32,
        /// What the PDU carried.
        got: u32,
    },
    /// The data segment is longer than this side declared it accepts.
    #[error("data segment of {len} bytes exceeds the negotiated maximum of {max}")]
    DataSegmentTooLong {
        /// The PDU's header.
        bhs: Bhs,
        /// Its DataSegmentLength.
        len: u32,
        /// The limit.
        max: u32,
    },
    /// An opcode an initiator may not send (the PDU was consumed).
    #[error("opcode {opcode:#04x} is not an initiator opcode")]
    BadOpcode {
        /// The PDU's header.
        bhs: Bhs,
        /// The opcode.
        opcode: u8,
    },
}

/// Incremental PDU framer.
#[derive(Debug)]
pub struct PduReader {
    buf: Vec<u8>,
    start: usize,
    max_data: u32,
    digests: Digests,
    /// Frames a target's PDUs (an initiator's reader) instead of an initiator's.
    peer_is_target: bool,
}

impl PduReader {
    /// A reader accepting data segments up to `max_data_segment_bytes`.
    pub fn new(max_data_segment_bytes: u32) -> Self {
        PduReader {
            buf: Vec::new(),
            start: 0,
            max_data: max_data_segment_bytes,
            digests: Digests::default(),
            peer_is_target: false,
        }
    }

    /// Accepts target opcodes instead of initiator ones (for test initiators).
    pub fn set_peer_is_target(&mut self, yes: bool) {
        self.peer_is_target = yes;
    }

    /// Turns digests on or off (after login).
    pub fn set_digests(&mut self, d: Digests) {
        self.digests = d;
    }

    /// Changes the data segment limit.
    pub fn set_max_data_segment_bytes(&mut self, n: u32) {
        self.max_data = n;
    }

    /// Appends received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.start > 0 && self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        } else if self.start > (64 << 10) && self.start * 2 > self.buf.len() {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes buffered and not yet returned as PDUs.
    pub fn buffered_bytes(&self) -> usize {
        self.buf.len() - self.start
    }

    /// Takes every byte not yet returned as a PDU.
    pub fn take_leftover(&mut self) -> Vec<u8> {
        let rest = self.buf[self.start..].to_vec();
        self.buf.clear();
        self.start = 0;
        rest
    }

    /// The next complete PDU, if the buffer holds one.
    pub fn next_pdu(&mut self) -> Result<Option<Pdu>, PduError> {
        Ok(self.next_pdu_ref()?.map(|p| p.to_owned()))
    }

    /// The next complete PDU, borrowed from the buffer (no copy of its data).
    pub fn next_pdu_ref(&mut self) -> Result<Option<PduRef<'_>>, PduError> {
        let start = self.start;
        let avail = &self.buf[start..];
        if avail.len() < BHS_BYTES {
            return Ok(None);
        }
        let bhs = Bhs(avail[..BHS_BYTES].try_into().expect("48 bytes"));
        let ahs_len = bhs.total_ahs_bytes();
        let data_len = bhs.data_segment_len();
        if data_len > self.max_data {
            return Err(PduError::DataSegmentTooLong {
                bhs,
                len: data_len,
                max: self.max_data,
            });
        }
        let data_len = data_len as usize;
        let header_len = BHS_BYTES + ahs_len;
        let hd = if self.digests.header { DIGEST_BYTES } else { 0 };
        let padded = data_len + pad_bytes(data_len);
        let dd = if self.digests.data && data_len > 0 {
            DIGEST_BYTES
        } else {
            0
        };
        let total = header_len + hd + padded + dd;
        if avail.len() < total {
            return Ok(None);
        }
        if self.digests.header {
            let expected = crc32c(&avail[..header_len]);
            let got = u32::from_le_bytes(avail[header_len..header_len + 4].try_into().expect("4"));
            if expected != got {
                return Err(PduError::HeaderDigest { expected, got });
            }
        }
        let data_start = header_len + hd;
        let data_digest = if dd > 0 {
            let expected = crc32c_append(
                crc32c(&avail[data_start..data_start + data_len]),
                &avail[data_start + data_len..data_start + padded],
            );
            let at = data_start + padded;
            let got = u32::from_le_bytes(avail[at..at + 4].try_into().expect("4"));
            (expected != got).then_some((expected, got))
        } else {
            None
        };
        self.start += total;
        if let Some((expected, got)) = data_digest {
            return Err(PduError::DataDigest { bhs, expected, got });
        }
        match Opcode::from_u8(bhs.0[0]) {
            Some(op) if op.is_initiator() != self.peer_is_target => {
                let pdu = &self.buf[start..start + total];
                Ok(Some(PduRef {
                    bhs,
                    ahs: &pdu[BHS_BYTES..header_len],
                    data: &pdu[data_start..data_start + data_len],
                }))
            }
            _ => Err(PduError::BadOpcode {
                bhs,
                opcode: bhs.raw_opcode(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iscsi::pdu::{lun_to_wire, ScsiCommand};
    use crate::iscsi::writer::encode_pdu;

    fn command(len: u32) -> Bhs {
        let mut b = ScsiCommand {
            immediate: false,
            final_: true,
            read: false,
            write: true,
            attr: 0,
            lun: lun_to_wire(1),
            itt: 9,
            expected_len: len,
            cmdsn: 1,
            exp_statsn: 1,
            cdb: [0; 16],
        }
        .encode();
        b.set_data_segment_len(len);
        b
    }

    #[test]
    fn byte_by_byte_and_in_one_chunk() {
        for d in [
            Digests::default(),
            Digests {
                header: true,
                data: true,
            },
        ] {
            let mut wire = Vec::new();
            encode_pdu(&command(5), &[], b"hello", d, &mut wire);
            encode_pdu(&command(0), &[], b"", d, &mut wire);
            let mut r = PduReader::new(8192);
            r.set_digests(d);
            let mut got = Vec::new();
            for b in &wire {
                r.push(std::slice::from_ref(b));
                while let Some(p) = r.next_pdu().unwrap() {
                    got.push(p);
                }
            }
            assert_eq!(got.len(), 2);
            assert_eq!(got[0].data, b"hello");
            assert!(got[1].data.is_empty());
            let mut r = PduReader::new(8192);
            r.set_digests(d);
            r.push(&wire);
            assert_eq!(r.next_pdu().unwrap().unwrap().data, b"hello");
            assert!(r.next_pdu().unwrap().is_some());
            assert!(r.next_pdu().unwrap().is_none());
            assert_eq!(r.buffered_bytes(), 0);
        }
    }

    #[test]
    fn digest_errors() {
        let d = Digests {
            header: true,
            data: true,
        };
        let mut wire = Vec::new();
        encode_pdu(&command(5), &[], b"hello", d, &mut wire);
        let mut bad_data = wire.clone();
        bad_data[52] ^= 1;
        let mut r = PduReader::new(8192);
        r.set_digests(d);
        r.push(&bad_data);
        assert!(matches!(r.next_pdu(), Err(PduError::DataDigest { .. })));
        assert_eq!(r.buffered_bytes(), 0, "the bad PDU is consumed");
        let mut bad_header = wire;
        bad_header[20] ^= 1;
        let mut r = PduReader::new(8192);
        r.set_digests(d);
        r.push(&bad_header);
        assert!(matches!(r.next_pdu(), Err(PduError::HeaderDigest { .. })));
    }

    #[test]
    fn oversized_and_unknown() {
        let mut wire = Vec::new();
        encode_pdu(
            &command(100),
            &[],
            &[0u8; 100],
            Digests::default(),
            &mut wire,
        );
        let mut r = PduReader::new(64);
        r.push(&wire);
        assert!(matches!(
            r.next_pdu(),
            Err(PduError::DataSegmentTooLong { len: 100, .. })
        ));
        let mut b = Bhs::default();
        b.0[0] = 0x21; // a target opcode
        let mut r = PduReader::new(64);
        r.push(&b.0);
        assert!(matches!(
            r.next_pdu(),
            Err(PduError::BadOpcode { opcode: 0x21, .. })
        ));
    }
}
