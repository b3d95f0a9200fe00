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
    let last_inverted = invert && count.is_multiple_of(2);
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
    use crate::testing::sense_of;
    use crate::{Command, LuConfig, NexusId, Target};

    const BS: usize = 512;
    const BLOCKS: u64 = 1024;
    const N: NexusId = NexusId(1);

    fn target() -> Target {
        let mut t = crate::testing::target_with(
            "sanitize",
            LuConfig {
                block_size: BS as u32,
                blocks: BLOCKS,
                naa_id: 7,
                thin: true,
                optimal_xfer_blocks: 8,
                max_xfer_blocks: 1024,
                ..crate::testing::disk()
            },
        );
        t.nexus_added(N, "iqn.2026-11.io.test:one,i,0x000000000001");
        let _ = run(&mut t, &[0u8; 6], &[]); // the power-on unit attention
        t
    }

    fn run(t: &mut Target, cdb: &[u8], data_out: &[u8]) -> Action {
        t.execute(&Command {
            nexus: N,
            lun: 1,
            cdb,
            data_out,
        })
    }

    fn sanitize_cdb(flags: u8, list_len: u16) -> [u8; 10] {
        let [hi, lo] = list_len.to_be_bytes();
        [op::SANITIZE, flags, 0, 0, 0, 0, 0, hi, lo, 0]
    }

    const INVALID_CDB: (u8, u8, u8) = (key::ILLEGAL_REQUEST, 0x24, 0);

    #[test]
    fn overwrite_and_block_erase_cover_the_whole_lu() {
        let mut t = target();
        let l = list(1, &[0xaa; BS], BS as u16);
        let a = run(&mut t, &sanitize_cdb(sa::OVERWRITE, l.len() as u16), &l);
        let Action::WriteSame {
            offset, len, block, ..
        } = a
        else {
            panic!("{a:?}")
        };
        assert_eq!((offset, len), (0, BLOCKS * BS as u64));
        assert_eq!(block, vec![0xaa; BS]);
        let a = run(&mut t, &sanitize_cdb(sa::BLOCK_ERASE, 0), &[]);
        let Action::Unmap { ranges, anchor } = a else {
            panic!("{a:?}")
        };
        assert!(!anchor);
        assert_eq!(
            ranges,
            vec![ByteRange {
                offset: 0,
                len: BLOCKS * BS as u64
            }]
        );
        let a = run(&mut t, &sanitize_cdb(sa::EXIT_FAILURE_MODE, 0), &[]);
        assert!(
            matches!(a, Action::Respond(ref r) if r.sense.is_none()),
            "{a:?}"
        );
    }

    #[test]
    fn bad_cdbs_are_invalid_fields() {
        let mut t = target();
        for service_action in (0..=0x1f).filter(|s| ![1, 2, 0x1f].contains(s)) {
            let a = run(&mut t, &sanitize_cdb(service_action, 0), &[]);
            assert_eq!(
                sense_of(&a),
                INVALID_CDB,
                "service action {service_action:#x}"
            );
        }
        let a = run(&mut t, &sanitize_cdb(sa::BLOCK_ERASE | 0x40, 0), &[]);
        assert_eq!(sense_of(&a), INVALID_CDB, "reserved bit");
        for byte in 2..7 {
            let mut cdb = sanitize_cdb(sa::BLOCK_ERASE, 0);
            cdb[byte] = 1;
            assert_eq!(
                sense_of(&run(&mut t, &cdb, &[])),
                INVALID_CDB,
                "byte {byte}"
            );
        }
        let a = run(&mut t, &sanitize_cdb(sa::BLOCK_ERASE | 0x80, 0), &[]);
        assert_eq!(sense_of(&a), INVALID_CDB, "IMMED");
        for service_action in [sa::BLOCK_ERASE, sa::EXIT_FAILURE_MODE] {
            let a = run(&mut t, &sanitize_cdb(service_action, 8), &[0; 8]);
            assert_eq!(sense_of(&a), INVALID_CDB, "a list for {service_action:#x}");
        }
    }

    #[test]
    fn software_write_protect_refuses_sanitize_and_writes() {
        let mut t = target();
        // MODE SENSE (6) of the control page, then MODE SELECT (6) of it with SWP set.
        let Action::Respond(r) = run(&mut t, &[0x1a, 0x08, 0x0a, 0, 255, 0], &[]) else {
            panic!()
        };
        let mut params = r.data.clone();
        params[0] = 0; // MODE DATA LENGTH is reserved in MODE SELECT
        params[4 + 4] |= 0x08;
        let a = run(&mut t, &[0x15, 0x10, 0, 0, params.len() as u8, 0], &params);
        assert!(
            matches!(a, Action::Respond(ref r) if r.sense.is_none()),
            "{a:?}"
        );
        let Action::Respond(r) = run(&mut t, &[0x1a, 0x08, 0x0a, 0, 255, 0], &[]) else {
            panic!()
        };
        assert_eq!(r.data[2] & 0x80, 0x80, "WP in the mode parameter header");
        let protected = (key::DATA_PROTECT, 0x27, 0);
        let l = list(1, &[0xaa; BS], BS as u16);
        let a = run(&mut t, &sanitize_cdb(sa::OVERWRITE, l.len() as u16), &l);
        assert_eq!(sense_of(&a), protected);
        let a = run(&mut t, &sanitize_cdb(sa::BLOCK_ERASE, 0), &[]);
        assert_eq!(sense_of(&a), protected);
        let a = run(&mut t, &[0x2a, 0, 0, 0, 0, 0, 0, 0, 1, 0], &[0; BS]);
        assert_eq!(sense_of(&a), protected, "WRITE (10)");
        let mut ws = [0u8; 16];
        ws[0] = 0x93;
        ws[13] = 1;
        assert_eq!(
            sense_of(&run(&mut t, &ws, &[0; BS])),
            protected,
            "WRITE SAME (16)"
        );
        // Reads still work.
        let a = run(&mut t, &[0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0], &[]);
        assert!(matches!(a, Action::Read { .. }), "{a:?}");
        params[4 + 4] &= !0x08;
        let a = run(&mut t, &[0x15, 0x10, 0, 0, params.len() as u8, 0], &params);
        assert!(
            matches!(a, Action::Respond(ref r) if r.sense.is_none()),
            "{a:?}"
        );
        let a = run(&mut t, &[0x2a, 0, 0, 0, 0, 0, 0, 0, 1, 0], &[0; BS]);
        assert!(matches!(a, Action::Write { .. }), "{a:?}");
    }

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
