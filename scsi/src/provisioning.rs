//! Logical block provisioning (SBC-3 §4.7): UNMAP (§5.28), WRITE SAME (10) and (16)
//! (§5.41, §5.42) and GET LBA STATUS (§5.5).
//!
//! A thin-provisioned LU deallocates blocks on UNMAP and on WRITE SAME with the UNMAP bit;
//! deallocated blocks read back as zeros (LBPRZ). The emulation only decides which byte
//! ranges to deallocate, write or inspect; the caller does it, in bounded steps.

use crate::cdb::{op, u16_at, u32_at, u64_at};
use crate::lu::Lu;
use crate::sense::{asc, key, Sense};
use crate::{Action, Response};

/// MAXIMUM UNMAP BLOCK DESCRIPTOR COUNT of VPD 0xB0: descriptors one UNMAP may carry.
pub const UNMAP_DESCRIPTORS_MAX: u32 = 256;
/// MAXIMUM UNMAP LBA COUNT of VPD 0xB0, in blocks; FFFF_FFFFh means "no limit" (SBC-3
/// §6.6.4), which is true: the caller deallocates in bounded steps whatever the count.
pub const UNMAP_BLOCKS_MAX: u32 = u32::MAX;
/// MAXIMUM WRITE SAME LENGTH of VPD 0xB0, in blocks: as many as WRITE SAME (16) can name.
pub const WRITE_SAME_BLOCKS_MAX: u64 = u32::MAX as u64;
/// Most LBA status descriptors one GET LBA STATUS returns.
pub const LBA_STATUS_DESCRIPTORS_MAX: u32 = 64;
/// Allocation unit of the filesystems files live on, in bytes: the OPTIMAL UNMAP GRANULARITY
/// we advertise, since a smaller hole only zeroes and frees nothing.
const UNMAP_GRANULARITY_BYTES: u32 = 4096;

/// A byte range of the backing store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ByteRange {
    /// Byte offset.
    pub offset: u64,
    /// Bytes.
    pub len: u64,
}

/// One extent of the backing store as the caller found it for GET LBA STATUS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Provisioned {
    /// Byte offset where it starts.
    pub offset: u64,
    /// Bytes.
    pub len: u64,
    /// Holds data (false: deallocated, reads as zeros).
    pub mapped: bool,
}

/// LOGICAL BLOCKS PER PHYSICAL BLOCK EXPONENT of a thin LU (READ CAPACITY 16): the
/// filesystem's allocation unit is what a hole can free, so it is the physical block.
pub(crate) fn physical_block_exponent(block_size: u32) -> u8 {
    unmap_granularity_blocks(block_size).trailing_zeros() as u8
}

/// OPTIMAL UNMAP GRANULARITY in blocks for a block size.
pub(crate) fn unmap_granularity_blocks(block_size: u32) -> u32 {
    (UNMAP_GRANULARITY_BYTES / block_size).max(1)
}

/// Data-out bytes of a provisioning command, or None when `cdb` is not one.
pub(crate) fn data_out_len(cdb: &[u8], block_size: u32) -> Option<u64> {
    match cdb[0] {
        op::UNMAP => Some(u64::from(u16_at(cdb, 7))),
        op::WRITE_SAME_10 => Some(u64::from(block_size)),
        // NDOB: no data-out, the block is zeros.
        op::WRITE_SAME_16 if cdb[1] & 0x01 != 0 => Some(0),
        op::WRITE_SAME_16 => Some(u64::from(block_size)),
        _ => None,
    }
}

fn lba_out_of_range() -> Sense {
    Sense::new(key::ILLEGAL_REQUEST, asc::LBA_OUT_OF_RANGE)
}

fn good() -> Action {
    Action::Respond(Response::good(Vec::new()))
}

impl Lu {
    fn ready_for_write(&self) -> Result<(), Sense> {
        if !self.medium_present {
            return Err(Sense::new(key::NOT_READY, asc::MEDIUM_NOT_PRESENT));
        }
        Ok(())
    }

    /// UNMAP (SBC-3 §5.28): deallocates the ranges of the parameter list.
    pub(crate) fn unmap(&self, cdb: &[u8], data_out: &[u8]) -> Result<Action, Sense> {
        self.ready_for_write()?;
        if !self.cfg.thin {
            // Not advertised (LBPU is clear) and not in REPORT SUPPORTED OPERATION CODES.
            return Err(Sense::new(key::ILLEGAL_REQUEST, asc::INVALID_OPCODE));
        }
        let anchor = cdb[1] & 0x01 != 0;
        if self.write_protected() {
            return Err(Sense::new(key::DATA_PROTECT, asc::WRITE_PROTECTED));
        }
        let list_len = usize::from(u16_at(cdb, 7));
        if list_len == 0 {
            return Ok(good());
        }
        let list = &data_out[..list_len.min(data_out.len())];
        if list.len() < 8 {
            return Err(Sense::parameter_list_length());
        }
        // An incomplete last descriptor is ignored (SBC-3 §5.28.2).
        let described = usize::from(u16_at(list, 2)).min(list.len() - 8);
        let count = described / 16;
        if count > UNMAP_DESCRIPTORS_MAX as usize {
            return Err(Sense::invalid_parameter_field(2, None));
        }
        let bs = u64::from(self.cfg.block_size);
        let mut ranges = Vec::with_capacity(count);
        for i in 0..count {
            let d = &list[8 + 16 * i..8 + 16 * (i + 1)];
            let lba = u64_at(d, 0);
            let blocks = u32_at(d, 8);
            if lba
                .checked_add(u64::from(blocks))
                .is_none_or(|end| end > self.cfg.blocks)
            {
                return Err(Sense {
                    information: Some(lba),
                    ..lba_out_of_range()
                });
            }
            // Never true while the limit is FFFF_FFFFh; kept so that lowering it keeps the
            // check (SBC-3 §5.28.2: INVALID FIELD IN PARAMETER LIST).
            if u64::from(blocks) > u64::from(UNMAP_BLOCKS_MAX) {
                return Err(Sense::invalid_parameter_field(
                    (8 + 16 * i + 8) as u16,
                    None,
                ));
            }
            if blocks > 0 {
                ranges.push(ByteRange {
                    offset: lba * bs,
                    len: u64::from(blocks) * bs,
                });
            }
        }
        if ranges.is_empty() {
            return Ok(good());
        }
        Ok(Action::Unmap { ranges, anchor })
    }

    /// WRITE SAME (10) and (16) (SBC-3 §5.41, §5.42): one block written over a range, or the
    /// range deallocated when the UNMAP bit asks for it on a thin LU and the block is zeros.
    pub(crate) fn write_same(&self, cdb: &[u8], data_out: &[u8]) -> Result<Action, Sense> {
        self.ready_for_write()?;
        let flags = cdb[1];
        let sixteen = cdb[0] == op::WRITE_SAME_16;
        let (lba, blocks, count_byte) = if sixteen {
            (u64_at(cdb, 2), u64::from(u32_at(cdb, 10)), 10)
        } else {
            (u64::from(u32_at(cdb, 2)), u64::from(u16_at(cdb, 7)), 7)
        };
        let ndob = sixteen && flags & 0x01 != 0;
        let unmap = flags & 0x08 != 0;
        let anchor = flags & 0x10 != 0;
        if flags >> 5 != 0 {
            // WRPROTECT: no protection information on these LUs (SBC-3 §4.22).
            return Err(Sense::invalid_cdb_field(1, Some(7)));
        }
        if self.write_protected() {
            // Before the provisioning checks: a write-protected LU refuses every WRITE SAME.
            return Err(Sense::new(key::DATA_PROTECT, asc::WRITE_PROTECTED));
        }
        if !sixteen && flags & 0x06 != 0 {
            // PBDATA and LBDATA: protection information again.
            return Err(Sense::invalid_cdb_field(1, Some(2)));
        }
        if anchor && (!unmap || !self.cfg.thin) {
            // ANCHOR needs UNMAP, and anchoring only exists where ANC_SUP is set.
            return Err(Sense::invalid_cdb_field(1, Some(4)));
        }
        if unmap && !self.cfg.thin {
            // LBPWS and LBPWS10 are clear: unmapping is not offered here.
            return Err(Sense::invalid_cdb_field(1, Some(3)));
        }
        if lba > self.cfg.blocks {
            return Err(lba_out_of_range());
        }
        // WSNZ is clear: zero blocks means "to the last LBA" (SBC-3 §5.42).
        let blocks = if blocks == 0 {
            self.cfg.blocks - lba
        } else {
            blocks
        };
        if lba + blocks > self.cfg.blocks {
            return Err(lba_out_of_range());
        }
        if blocks > WRITE_SAME_BLOCKS_MAX {
            return Err(Sense::invalid_cdb_field(count_byte, None));
        }
        let bs = self.cfg.block_size as usize;
        // The data-out is exactly one block, or nothing with NDOB (SBC-3 §5.42); any other
        // length means the initiator and this LU disagree about the block size.
        if data_out.len() != if ndob { 0 } else { bs } {
            return Err(Sense::new(key::ILLEGAL_REQUEST, asc::INVALID_FIELD_IN_CDB));
        }
        let block = if ndob {
            vec![0u8; bs]
        } else {
            data_out.to_vec()
        };
        if blocks == 0 {
            return Ok(good());
        }
        let offset = lba * bs as u64;
        let len = blocks * bs as u64;
        // With UNMAP set the range is deallocated, whatever the block holds (SBC-3 §5.42):
        // afterwards it reads as zeros (LBPRZ), which is what initiators that discard with
        // WRITE SAME expect, and what libiscsi's conformance suite checks.
        if unmap {
            return Ok(Action::Unmap {
                ranges: vec![ByteRange { offset, len }],
                anchor,
            });
        }
        Ok(Action::WriteSame {
            offset,
            len,
            block,
            fua: !self.mode.wce,
        })
    }

    /// GET LBA STATUS (SBC-3 §5.5): asks the caller for the extents from the starting LBA.
    pub(crate) fn get_lba_status(&self, cdb: &[u8]) -> Result<Action, Sense> {
        if !self.medium_present {
            return Err(Sense::new(key::NOT_READY, asc::MEDIUM_NOT_PRESENT));
        }
        let lba = u64_at(cdb, 2);
        let alloc_len = u32_at(cdb, 10);
        if lba >= self.cfg.blocks {
            return Err(lba_out_of_range());
        }
        let bs = u64::from(self.cfg.block_size);
        let offset = lba * bs;
        let len = (self.cfg.blocks - lba) * bs;
        if alloc_len == 0 {
            return Ok(good());
        }
        if !self.cfg.thin {
            // Fully provisioned: everything is mapped.
            let all = [Provisioned {
                offset,
                len,
                mapped: true,
            }];
            return Ok(Action::Respond(Response::good(
                self.lba_status_data(offset, alloc_len, &all),
            )));
        }
        Ok(Action::LbaStatus {
            offset,
            len,
            alloc_len,
        })
    }

    /// GET LBA STATUS parameter data (SBC-3 §5.5.2) from extents that start at `offset`
    /// (adjacent extents of the same status are merged), cut to `alloc_len`.
    pub(crate) fn lba_status_data(
        &self,
        offset: u64,
        alloc_len: u32,
        extents: &[Provisioned],
    ) -> Vec<u8> {
        let bs = u64::from(self.cfg.block_size);
        let mut descriptors: Vec<(u64, u64, bool)> = Vec::new();
        let mut next = offset / bs;
        for e in extents {
            let end = e
                .offset
                .saturating_add(e.len)
                .div_ceil(bs)
                .min(self.cfg.blocks);
            if end <= next {
                continue;
            }
            match descriptors.last_mut() {
                Some((_, blocks, mapped)) if *mapped == e.mapped => *blocks += end - next,
                _ => descriptors.push((next, end - next, e.mapped)),
            }
            next = end;
        }
        let mut v = vec![0u8; 8];
        for &(lba, blocks, mapped) in descriptors.iter().take(LBA_STATUS_DESCRIPTORS_MAX as usize) {
            let mut d = [0u8; 16];
            d[..8].copy_from_slice(&lba.to_be_bytes());
            // A longer extent is reported in part; the initiator asks again from its end.
            d[8..12].copy_from_slice(&(blocks.min(u64::from(u32::MAX)) as u32).to_be_bytes());
            d[12] = if mapped { 0 } else { 1 };
            v.extend_from_slice(&d);
        }
        let len = (v.len() - 4) as u32;
        v[..4].copy_from_slice(&len.to_be_bytes());
        v.truncate(alloc_len as usize);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::sense_of;
    use crate::{Command, LuConfig, NexusId, Target};

    const N: NexusId = NexusId(1);
    const BLOCKS: u64 = 2048;

    fn target(thin: bool) -> Target {
        let mut t = crate::testing::target_with(
            "thin",
            LuConfig {
                naa_id: 7,
                thin,
                ..crate::testing::disk()
            },
        );
        t.nexus_added(N, "iqn.2026-11.io.test:one,i,0x000000000001");
        // Consume the power-on unit attention.
        let _ = run(&mut t, &[0u8; 6], &[]);
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

    fn data_of(a: Action) -> Vec<u8> {
        match a {
            Action::Respond(r) if r.sense.is_none() => r.data,
            other => panic!("{other:?}"),
        }
    }

    fn unmap_list(descriptors: &[(u64, u32)]) -> Vec<u8> {
        let mut v = vec![0u8; 8];
        for &(lba, n) in descriptors {
            v.extend_from_slice(&lba.to_be_bytes());
            v.extend_from_slice(&n.to_be_bytes());
            v.extend_from_slice(&[0; 4]);
        }
        let total = v.len();
        v[..2].copy_from_slice(&((total - 2) as u16).to_be_bytes());
        v[2..4].copy_from_slice(&((total - 8) as u16).to_be_bytes());
        v
    }

    fn unmap_cdb(len: usize, anchor: bool) -> [u8; 10] {
        let [hi, lo] = (len as u16).to_be_bytes();
        [0x42, u8::from(anchor), 0, 0, 0, 0, 0, hi, lo, 0]
    }

    fn ws16(lba: u64, blocks: u32, flags: u8) -> [u8; 16] {
        let mut c = [0u8; 16];
        c[0] = 0x93;
        c[1] = flags;
        c[2..10].copy_from_slice(&lba.to_be_bytes());
        c[10..14].copy_from_slice(&blocks.to_be_bytes());
        c
    }

    #[test]
    fn vpd_and_capacity_tell_the_truth() {
        let mut t = target(true);
        let b2 = data_of(run(&mut t, &[0x12, 1, 0xb2, 0, 64, 0], &[]));
        assert_eq!(
            b2[5],
            0x80 | 0x40 | 0x20 | 0x04 | 0x02,
            "LBPU LBPWS LBPWS10 LBPRZ ANC_SUP"
        );
        assert_eq!(b2[6] & 0x07, 2, "thin");
        let b0 = data_of(run(&mut t, &[0x12, 1, 0xb0, 0, 64, 0], &[]));
        assert_eq!(u32_at(&b0, 20), UNMAP_BLOCKS_MAX);
        assert_eq!(u32_at(&b0, 24), UNMAP_DESCRIPTORS_MAX);
        assert_eq!(u32_at(&b0, 28), 8, "4 KiB granularity in 512-byte blocks");
        assert_eq!(u64_at(&b0, 36), WRITE_SAME_BLOCKS_MAX);
        assert_eq!(b0[4] & 1, 0, "WSNZ clear");
        let rc16 = [0x9e, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0];
        assert_eq!(
            data_of(run(&mut t, &rc16, &[]))[14] & 0xc0,
            0xc0,
            "LBPME LBPRZ"
        );

        let mut full = target(false);
        let b2 = data_of(run(&mut full, &[0x12, 1, 0xb2, 0, 64, 0], &[]));
        assert_eq!(b2[5], 0);
        let rc16 = data_of(run(&mut full, &rc16, &[]));
        assert_eq!(rc16[14] & 0xc0, 0);
        let list = unmap_list(&[(0, 1)]);
        assert_eq!(
            sense_of(&run(&mut full, &unmap_cdb(list.len(), false), &list)),
            (5, 0x20, 0),
            "no UNMAP on a fully provisioned LU"
        );
        let rsoc = [0xa3, 0x0c, 0x01, 0x42, 0, 0, 0, 0, 1, 0, 0, 0];
        assert_eq!(
            data_of(run(&mut full, &rsoc, &[]))[1] & 7,
            1,
            "not supported"
        );
        assert_eq!(data_of(run(&mut t, &rsoc, &[]))[1] & 7, 3, "supported");
    }

    #[test]
    fn unmap_parameter_list_checks() {
        let mut t = target(true);
        let list = unmap_list(&[(0, 8), (100, 0), (BLOCKS - 1, 1)]);
        assert_eq!(t.data_out_len(1, &unmap_cdb(list.len(), false)), 56);
        assert_eq!(
            run(&mut t, &unmap_cdb(list.len(), false), &list),
            Action::Unmap {
                ranges: vec![
                    ByteRange {
                        offset: 0,
                        len: 4096
                    },
                    ByteRange {
                        offset: (BLOCKS - 1) * 512,
                        len: 512
                    }
                ],
                anchor: false
            }
        );
        // No parameter list, or no descriptors: nothing to do.
        assert_eq!(
            run(&mut t, &unmap_cdb(0, false), &[]),
            Action::Respond(Response::good(vec![]))
        );
        let empty = unmap_list(&[]);
        assert_eq!(
            run(&mut t, &unmap_cdb(empty.len(), false), &empty),
            Action::Respond(Response::good(vec![]))
        );
        // Zero blocks at the end of the LU is fine; one block past it is not.
        let end = unmap_list(&[(BLOCKS, 0)]);
        assert_eq!(
            run(&mut t, &unmap_cdb(end.len(), false), &end),
            Action::Respond(Response::good(vec![]))
        );
        let past = unmap_list(&[(BLOCKS - 1, 2)]);
        assert_eq!(
            sense_of(&run(&mut t, &unmap_cdb(past.len(), false), &past)),
            (5, 0x21, 0)
        );
        let wrap = unmap_list(&[(u64::MAX, 2)]);
        assert_eq!(
            sense_of(&run(&mut t, &unmap_cdb(wrap.len(), false), &wrap)),
            (5, 0x21, 0)
        );
        // A list shorter than its header.
        assert_eq!(
            sense_of(&run(&mut t, &unmap_cdb(4, false), &[0, 2, 0, 0])),
            (5, 0x1a, 0)
        );
        // More descriptors than VPD 0xB0 allows.
        let many: Vec<(u64, u32)> = (0..=u64::from(UNMAP_DESCRIPTORS_MAX))
            .map(|i| (i, 1))
            .collect();
        let many = unmap_list(&many);
        assert_eq!(
            sense_of(&run(&mut t, &unmap_cdb(many.len(), false), &many)),
            (5, 0x26, 0)
        );
        // An incomplete last descriptor is ignored.
        let mut partial = unmap_list(&[(4, 4)]);
        partial.extend_from_slice(&[0; 8]);
        partial[2..4].copy_from_slice(&24u16.to_be_bytes());
        assert!(matches!(
            run(&mut t, &unmap_cdb(partial.len(), true), &partial),
            Action::Unmap { ref ranges, anchor: true } if ranges.len() == 1
        ));
    }

    #[test]
    fn write_same_unmaps_zeros_and_writes_the_rest() {
        let mut t = target(true);
        let zero = vec![0u8; 512];
        let ones = vec![0xffu8; 512];
        assert_eq!(t.data_out_len(1, &ws16(0, 8, 0x08)), 512);
        assert_eq!(t.data_out_len(1, &ws16(0, 8, 0x09)), 0, "NDOB");
        assert_eq!(
            run(&mut t, &ws16(8, 8, 0x08), &zero),
            Action::Unmap {
                ranges: vec![ByteRange {
                    offset: 4096,
                    len: 4096
                }],
                anchor: false
            }
        );
        assert!(matches!(
            run(&mut t, &ws16(8, 8, 0x08), &ones),
            Action::Unmap { .. }
        ));
        assert!(matches!(
            run(&mut t, &ws16(8, 8, 0), &ones),
            Action::WriteSame { offset: 4096, len: 4096, ref block, .. } if block == &ones
        ));
        assert!(matches!(
            run(&mut t, &ws16(0, 1, 0x09), &[]),
            Action::Unmap { .. }
        ));
        // One block of data-out, no more and no less.
        assert_eq!(
            sense_of(&run(&mut t, &ws16(0, 1, 0x08), &zero[..256])),
            (5, 0x24, 0)
        );
        assert_eq!(
            sense_of(&run(&mut t, &ws16(0, 1, 0x08), &[0; 1024])),
            (5, 0x24, 0)
        );
        assert!(matches!(
            run(&mut t, &ws16(0, 1, 0x18), &zero),
            Action::Unmap { anchor: true, .. }
        ));
        // ANCHOR without UNMAP.
        assert_eq!(
            sense_of(&run(&mut t, &ws16(0, 1, 0x10), &zero)),
            (5, 0x24, 0)
        );
        // Zero blocks: to the end of the LU (WSNZ is clear).
        assert!(matches!(
            run(&mut t, &ws16(BLOCKS - 4, 0, 0), &ones),
            Action::WriteSame { len: 2048, .. }
        ));
        assert_eq!(
            sense_of(&run(&mut t, &ws16(BLOCKS + 1, 0, 0), &ones)),
            (5, 0x21, 0)
        );
        assert_eq!(
            sense_of(&run(&mut t, &ws16(u64::MAX, 1, 0), &ones)),
            (5, 0x21, 0)
        );
        let ws10 = [0x41, 0x08, 0, 0, 0, 4, 0, 0, 2, 0];
        assert!(matches!(run(&mut t, &ws10, &zero), Action::Unmap { .. }));
        // A fully provisioned LU refuses UNMAP and ANCHOR (LBPWS is clear) and writes.
        let mut full = target(false);
        assert_eq!(
            sense_of(&run(&mut full, &ws16(0, 4, 0x08), &zero)),
            (5, 0x24, 0)
        );
        assert!(matches!(
            run(&mut full, &ws16(0, 4, 0), &zero),
            Action::WriteSame { .. }
        ));
        assert_eq!(
            sense_of(&run(&mut full, &ws16(0, 1, 0x18), &zero)),
            (5, 0x24, 0)
        );
    }

    #[test]
    fn get_lba_status_reports_extents_from_the_starting_lba() {
        let mut t = target(true);
        let mut cdb = [0u8; 16];
        cdb[0] = 0x9e;
        cdb[1] = 0x12;
        cdb[2..10].copy_from_slice(&10u64.to_be_bytes());
        cdb[10..14].copy_from_slice(&1024u32.to_be_bytes());
        let Action::LbaStatus {
            offset,
            len,
            alloc_len,
        } = run(&mut t, &cdb, &[])
        else {
            panic!()
        };
        assert_eq!((offset, len, alloc_len), (5120, (BLOCKS - 10) * 512, 1024));
        // The store says: data to 8 KiB, a hole to 12 KiB, another hole to 16 KiB, data on.
        let extents = [
            Provisioned {
                offset: 5120,
                len: 8192 - 5120,
                mapped: true,
            },
            Provisioned {
                offset: 8192,
                len: 4096,
                mapped: false,
            },
            Provisioned {
                offset: 12288,
                len: 4096,
                mapped: false,
            },
            Provisioned {
                offset: 16384,
                len: u64::MAX - 16384,
                mapped: true,
            },
        ];
        let r = t.complete_lba_status(1, offset, alloc_len, Ok(&extents));
        let d = r.data;
        assert_eq!(u32_at(&d, 0), 4 + 3 * 16);
        let desc = |i: usize| {
            (
                u64_at(&d, 8 + 16 * i),
                u32_at(&d, 16 + 16 * i),
                d[20 + 16 * i],
            )
        };
        assert_eq!(desc(0), (10, 6, 0));
        assert_eq!(desc(1), (16, 16, 1));
        assert_eq!(desc(2), (32, BLOCKS as u32 - 32, 0));
        cdb[2..10].copy_from_slice(&BLOCKS.to_be_bytes());
        assert_eq!(sense_of(&run(&mut t, &cdb, &[])), (5, 0x21, 0));
        // A fully provisioned LU answers at once: all mapped.
        let mut full = target(false);
        cdb[2..10].copy_from_slice(&0u64.to_be_bytes());
        let d = data_of(run(&mut full, &cdb, &[]));
        assert_eq!(
            (u64_at(&d, 8), u32_at(&d, 16), d[20]),
            (0, BLOCKS as u32, 0)
        );
    }

    /// Random parameter lists and CDBs (a cheap stand-in for a fuzzer): nothing panics, and
    /// whatever is asked of the backing store lies inside the LU.
    #[test]
    fn random_unmap_lists_and_write_same_cdbs_stay_inside_the_lu() {
        let mut t = target(true);
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let capacity = BLOCKS * 512;
        let inside = |a: &Action| match a {
            Action::Unmap { ranges, .. } => ranges
                .iter()
                .all(|r| r.len > 0 && r.offset + r.len <= capacity),
            Action::WriteSame {
                offset, len, block, ..
            } => offset + len <= capacity && block.len() == 512,
            Action::Respond(_) => true,
            other => panic!("unexpected {other:?}"),
        };
        for _ in 0..20_000 {
            let n = (next() % 5) as usize;
            let mut descriptors = Vec::new();
            for _ in 0..n {
                let lba = match next() % 3 {
                    0 => next() % (BLOCKS + 2),
                    1 => next(),
                    _ => BLOCKS - next() % 4,
                };
                descriptors.push((lba, (next() % 5000) as u32));
            }
            let mut list = unmap_list(&descriptors);
            if next() % 4 == 0 {
                let at = (next() % list.len() as u64) as usize;
                list[at] = next() as u8;
            }
            if next() % 4 == 0 {
                list.truncate((next() % (list.len() as u64 + 1)) as usize);
            }
            let cdb_len = if next() % 5 == 0 {
                (next() % 64) as usize
            } else {
                list.len()
            };
            let a = run(&mut t, &unmap_cdb(cdb_len, next() % 2 == 0), &list);
            assert!(inside(&a), "{a:?}");

            let mut cdb = ws16(next() % (BLOCKS + 4), (next() % 3000) as u32, next() as u8);
            if next() % 2 == 0 {
                cdb[0] = 0x41;
            }
            let data = vec![(next() % 2) as u8; [0, 512, 512, 1024][(next() % 4) as usize]];
            let a = run(&mut t, &cdb, &data);
            assert!(inside(&a), "{a:?}");
        }
    }
}
