//! SANITIZE (SBC-3 §5.30): OVERWRITE and BLOCK ERASE, plus EXIT FAILURE MODE.
//!
//! Both sanitize operations reach every LBA of the LU, so they reuse the bounded-step jobs of
//! logical block provisioning: OVERWRITE is a WRITE SAME of the initialization pattern over
//! the whole LU, BLOCK ERASE an UNMAP of the whole LU (on a thin LU; a fully provisioned one
//! is written with zeros instead). CRYPTO ERASE is not offered: a file or block device behind
//! the LU has no media encryption key to change.
//!
//! The operation runs with IMMED clear only: the command completes when every LBA has been
//! sanitized. IMMED set is refused, since accepting it would oblige the LU to answer other
//! commands with SANITIZE IN PROGRESS until a background job ends.

use crate::cdb::{op, u16_at};
use crate::lu::Lu;
use crate::provisioning::ByteRange;
use crate::sense::{asc, key, Sense};
use crate::{Action, Response};

/// SANITIZE service actions (SBC-3 §5.30.1 Table 85).
pub(crate) mod sa {
    /// Overwrite every LBA with an initialization pattern.
    pub const OVERWRITE: u8 = 0x01;
    /// Erase (deallocate) every LBA.
    pub const BLOCK_ERASE: u8 = 0x02;
    /// Leave the sanitize failure mode.
    pub const EXIT_FAILURE_MODE: u8 = 0x1f;
}

/// Bytes of the OVERWRITE parameter list header (SBC-3 §5.30.3 Table 86).
const OVERWRITE_HEADER_BYTES: usize = 4;

/// Data-out bytes of a SANITIZE CDB: its PARAMETER LIST LENGTH.
pub(crate) fn data_out_len(cdb: &[u8]) -> u64 {
    debug_assert_eq!(cdb[0], op::SANITIZE);
    u64::from(u16_at(cdb, 7))
}

/// A decoded OVERWRITE parameter list.
#[derive(Debug, PartialEq, Eq)]
struct Overwrite {
    /// One logical block of what the last pass leaves on the medium.
    block: Vec<u8>,
}

/// Decodes an OVERWRITE parameter list (SBC-3 §5.30.3) for an LU of `block_size`-byte
/// blocks. The list must be longer than its header and at most the header plus one block; the
/// OVERWRITE COUNT and the INITIALIZATION PATTERN LENGTH must be non-zero and the pattern
/// must fit in the list and in one block. A shorter pattern is repeated to fill the block.
fn overwrite_list(list_len: usize, list: &[u8], block_size: usize) -> Result<Overwrite, Sense> {
    if list_len <= OVERWRITE_HEADER_BYTES || list_len > block_size + OVERWRITE_HEADER_BYTES {
        return Err(Sense::invalid_cdb_field(7, None));
    }
    if list.len() < list_len {
        return Err(Sense::parameter_list_length());
    }
    let invert = list[0] & 0x80 != 0;
    let count = list[0] & 0x1f;
    if list[0] & 0x60 != 0 || list[1] != 0 {
        return Err(Sense::invalid_parameter_field(
            if list[1] != 0 { 1 } else { 0 },
            None,
        ));
    }
    let pattern_len = usize::from(u16_at(list, 2));
    if count == 0 {
        return Err(Sense::invalid_cdb_field(7, None));
    }
    if pattern_len == 0
        || pattern_len > block_size
        || OVERWRITE_HEADER_BYTES + pattern_len > list_len
    {
        return Err(Sense::invalid_cdb_field(7, None));
    }
    let pattern = &list[OVERWRITE_HEADER_BYTES..OVERWRITE_HEADER_BYTES + pattern_len];
    // With INVERT the pattern is inverted between consecutive passes (SBC-3 §5.30.3), so
    // an even number of passes ends with the inverted pattern on the medium. Only the last
    // pass is written: the LBAs of a file-backed LU are not fixed places on a medium that
    // earlier passes could scrub further, and each pass replaces every byte the last wrote.
    let last_inverted = invert && count % 2 == 0;
    let block = pattern
        .iter()
        .cycle()
        .take(block_size)
        .map(|&b| if last_inverted { !b } else { b })
        .collect();
    Ok(Overwrite { block })
}

impl Lu {
    /// SANITIZE (SBC-3 §5.30).
    pub(crate) fn sanitize(&self, cdb: &[u8], data_out: &[u8]) -> Result<Action, Sense> {
        let service_action = cdb[1] & 0x1f;
        if cdb[1] & 0x40 != 0 {
            return Err(Sense::invalid_cdb_field(1, Some(6)));
        }
        if let Some(i) = (2..7).find(|&i| cdb[i] != 0) {
            return Err(Sense::invalid_cdb_field(i as u16, None));
        }
        if cdb[1] & 0x80 != 0 {
            // IMMED: see the module documentation.
            return Err(Sense::invalid_cdb_field(1, Some(7)));
        }
        if !self.medium_present {
            return Err(Sense::new(key::NOT_READY, asc::MEDIUM_NOT_PRESENT));
        }
        let list_len = usize::from(u16_at(cdb, 7));
        match service_action {
            sa::OVERWRITE => {
                let bs = self.cfg.block_size as usize;
                let o = overwrite_list(list_len, data_out, bs)?;
                self.refuse_if_write_protected()?;
                Ok(Action::WriteSame {
                    offset: 0,
                    len: self.lu_bytes(),
                    block: o.block,
                    fua: true,
                })
            }
            sa::BLOCK_ERASE => {
                if list_len != 0 {
                    return Err(Sense::invalid_cdb_field(7, None));
                }
                self.refuse_if_write_protected()?;
                let len = self.lu_bytes();
                Ok(if self.cfg.thin {
                    Action::Unmap {
                        ranges: vec![ByteRange { offset: 0, len }],
                        anchor: false,
                    }
                } else {
                    Action::WriteSame {
                        offset: 0,
                        len,
                        block: vec![0; self.cfg.block_size as usize],
                        fua: true,
                    }
                })
            }
            sa::EXIT_FAILURE_MODE => {
                if list_len != 0 {
                    return Err(Sense::invalid_cdb_field(7, None));
                }
                // A sanitize that fails here reports its error and leaves no failure mode
                // behind, so there is never one to exit.
                Ok(Action::Respond(Response::good(Vec::new())))
            }
            _ => Err(Sense::invalid_cdb_field(1, Some(4))),
        }
    }

    fn refuse_if_write_protected(&self) -> Result<(), Sense> {
        if self.write_protected() {
            return Err(Sense::new(key::DATA_PROTECT, asc::WRITE_PROTECTED));
        }
        Ok(())
    }

    fn lu_bytes(&self) -> u64 {
        self.cfg.blocks * u64::from(self.cfg.block_size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BS: usize = 512;

    fn list(count: u8, pattern: &[u8], declared: u16) -> Vec<u8> {
        let mut v = vec![count, 0];
        v.extend_from_slice(&declared.to_be_bytes());
        v.extend_from_slice(pattern);
        v
    }

    fn is_invalid_cdb(r: Result<Overwrite, Sense>) -> bool {
        matches!(r, Err(s) if s.code == asc::INVALID_FIELD_IN_CDB)
    }

    #[test]
    fn overwrite_repeats_a_short_pattern() {
        let l = list(1, &[1, 2, 3, 4], 4);
        let o = overwrite_list(l.len(), &l, BS).unwrap();
        assert_eq!(o.block.len(), BS);
        assert!(o.block.chunks(4).all(|c| c == [1, 2, 3, 4]));
        let l = list(1, &[0xaa; BS], BS as u16);
        assert_eq!(
            overwrite_list(l.len(), &l, BS).unwrap().block,
            vec![0xaa; BS]
        );
    }

    #[test]
    fn overwrite_inverts_after_an_even_count() {
        let l = list(0x80 | 2, &[0x0f], 1);
        assert_eq!(
            overwrite_list(l.len(), &l, BS).unwrap().block,
            vec![0xf0; BS]
        );
        let l = list(0x80 | 3, &[0x0f], 1);
        assert_eq!(
            overwrite_list(l.len(), &l, BS).unwrap().block,
            vec![0x0f; BS]
        );
    }

    #[test]
    fn overwrite_list_rules() {
        let good = list(1, &[0xaa; BS], BS as u16);
        for len in 0..=4 {
            assert!(
                is_invalid_cdb(overwrite_list(len, &good, BS)),
                "length {len}"
            );
        }
        let mut long = good.clone();
        long.push(0);
        assert!(is_invalid_cdb(overwrite_list(BS + 5, &long, BS)));
        let zero_count = list(0, &[0xaa; BS], BS as u16);
        assert!(is_invalid_cdb(overwrite_list(
            zero_count.len(),
            &zero_count,
            BS
        )));
        let zero_pattern = list(1, &[0xaa; BS], 0);
        assert!(is_invalid_cdb(overwrite_list(
            zero_pattern.len(),
            &zero_pattern,
            BS
        )));
        let too_long = list(1, &[0xaa; BS], BS as u16 + 4);
        assert!(is_invalid_cdb(overwrite_list(
            too_long.len(),
            &too_long,
            BS
        )));
        assert!(
            overwrite_list(good.len() - 1, &good, BS).is_err(),
            "pattern past the list"
        );
        assert!(
            overwrite_list(good.len(), &good[..10], BS).is_err(),
            "short data-out"
        );
    }
}
