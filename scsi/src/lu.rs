//! A logical unit: its configuration, its state (mode parameters, medium, prevention, unit
//! attentions) and the block commands of SBC-3.

use std::collections::{BTreeSet, HashMap, VecDeque};

use crate::cdb::{op, u16_at, u32_at, u64_at};
use crate::mode::ModeState;
use crate::reservation::Reservations;
use crate::sense::{asc, key, Sense};
use crate::{Action, NexusId};

/// Most blocks one COMPARE AND WRITE may cover (VPD 0xB0 MAXIMUM COMPARE AND WRITE LENGTH).
pub const COMPARE_AND_WRITE_BLOCKS_MAX: u8 = 255;

/// Unit attentions queued per nexus per LU, at most; older ones are dropped.
pub const UNIT_ATTENTIONS_MAX: usize = 8;

/// What an LU is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LuConfig {
    /// LUN (1 and up).
    pub lun: u64,
    /// Logical block size.
    pub block_size: u32,
    /// Capacity in blocks.
    pub blocks: u64,
    /// INQUIRY vendor (8 characters).
    pub vendor_id: String,
    /// INQUIRY product (16 characters).
    pub product_id: String,
    /// INQUIRY revision (4 characters).
    pub product_rev: String,
    /// Unit serial number.
    pub serial: String,
    /// Device identification text (tgt's `scsi_id`): the vendor-specific part of the T10
    /// vendor ID designator in VPD 0x83; the serial number when None.
    pub device_id: Option<String>,
    /// Stable 64-bit identity for the NAA designator.
    pub naa_id: u64,
    /// Writes are refused.
    pub readonly: bool,
    /// The medium is removable.
    pub removable: bool,
    /// Writes may sit in a volatile cache until a flush.
    pub write_cache: bool,
    /// Thin provisioned.
    pub thin: bool,
    /// Optimal transfer length in blocks.
    pub optimal_xfer_blocks: u32,
    /// Maximum transfer length in blocks.
    pub max_xfer_blocks: u32,
}

/// The state of an LU.
#[derive(Debug)]
pub(crate) struct Lu {
    pub cfg: LuConfig,
    pub mode: ModeState,
    pub default_mode: ModeState,
    pub medium_present: bool,
    /// Nexuses that hold a PREVENT MEDIUM REMOVAL.
    pub prevent: BTreeSet<NexusId>,
    pub ua: HashMap<NexusId, VecDeque<(u8, u8)>>,
    /// Persistent and SPC-2 reservations.
    pub reservations: Reservations,
}

/// A decoded read, write or verify.
struct Transfer {
    lba: u64,
    blocks: u64,
    fua: bool,
    protect: u8,
    bytchk: u8,
}

fn decode_transfer(cdb: &[u8]) -> Option<Transfer> {
    let t = |lba, blocks, fua: bool, protect, bytchk| {
        Some(Transfer {
            lba,
            blocks,
            fua,
            protect,
            bytchk,
        })
    };
    let flags = cdb[1];
    match cdb[0] {
        op::READ_6 | op::WRITE_6 => {
            let lba = u64::from(u32::from_be_bytes([0, cdb[1] & 0x1f, cdb[2], cdb[3]]));
            let blocks = if cdb[4] == 0 { 256 } else { u64::from(cdb[4]) };
            t(lba, blocks, false, 0, 0)
        }
        op::READ_10 | op::WRITE_10 | op::VERIFY_10 | op::WRITE_VERIFY_10 => t(
            u64::from(u32_at(cdb, 2)),
            u64::from(u16_at(cdb, 7)),
            flags & 0x08 != 0,
            flags >> 5,
            (flags >> 1) & 3,
        ),
        op::READ_12 | op::WRITE_12 | op::VERIFY_12 | op::WRITE_VERIFY_12 => t(
            u64::from(u32_at(cdb, 2)),
            u64::from(u32_at(cdb, 6)),
            flags & 0x08 != 0,
            flags >> 5,
            (flags >> 1) & 3,
        ),
        op::READ_16 | op::WRITE_16 | op::VERIFY_16 | op::WRITE_VERIFY_16 | op::ORWRITE_16 => t(
            u64_at(cdb, 2),
            u64::from(u32_at(cdb, 10)),
            flags & 0x08 != 0,
            flags >> 5,
            (flags >> 1) & 3,
        ),
        op::PRE_FETCH_10 => t(
            u64::from(u32_at(cdb, 2)),
            u64::from(u16_at(cdb, 7)),
            false,
            0,
            0,
        ),
        op::PRE_FETCH_16 => t(u64_at(cdb, 2), u64::from(u32_at(cdb, 10)), false, 0, 0),
        op::SYNCHRONIZE_CACHE_10 => t(
            u64::from(u32_at(cdb, 2)),
            u64::from(u16_at(cdb, 7)),
            false,
            0,
            0,
        ),
        op::SYNCHRONIZE_CACHE_16 => t(u64_at(cdb, 2), u64::from(u32_at(cdb, 10)), false, 0, 0),
        op::COMPARE_AND_WRITE => t(
            u64_at(cdb, 2),
            u64::from(cdb[13]),
            flags & 0x08 != 0,
            flags >> 5,
            0,
        ),
        _ => None,
    }
}

fn is_write(opcode: u8) -> bool {
    matches!(
        opcode,
        op::WRITE_6
            | op::WRITE_10
            | op::WRITE_12
            | op::WRITE_16
            | op::ORWRITE_16
            | op::COMPARE_AND_WRITE
            | op::WRITE_VERIFY_10
            | op::WRITE_VERIFY_12
            | op::WRITE_VERIFY_16
    )
}

/// WRITE AND VERIFY (SBC-3 §5.40): the written data must be on the medium before status.
fn is_write_verify(opcode: u8) -> bool {
    matches!(
        opcode,
        op::WRITE_VERIFY_10 | op::WRITE_VERIFY_12 | op::WRITE_VERIFY_16
    )
}

fn is_verify(opcode: u8) -> bool {
    matches!(opcode, op::VERIFY_10 | op::VERIFY_12 | op::VERIFY_16)
}

impl Lu {
    pub(crate) fn new(cfg: LuConfig) -> Lu {
        let mode = ModeState {
            wce: cfg.write_cache,
            d_sense: false,
            dexcpt: false,
            swp: false,
        };
        Lu {
            cfg,
            mode,
            default_mode: mode,
            medium_present: true,
            prevent: BTreeSet::new(),
            ua: HashMap::new(),
            reservations: Reservations::default(),
        }
    }

    /// Writes are refused: the LU is configured read-only, or software write protect is set
    /// in the control mode page (SPC-4 §7.5.8). Either way commands that would change the
    /// medium get DATA PROTECT, WRITE PROTECTED.
    pub(crate) fn write_protected(&self) -> bool {
        self.cfg.readonly || self.mode.swp
    }

    /// Queues a unit attention for one nexus.
    pub(crate) fn add_ua(&mut self, nexus: NexusId, code: (u8, u8)) {
        let q = self.ua.entry(nexus).or_default();
        if q.contains(&code) {
            return;
        }
        if q.len() >= UNIT_ATTENTIONS_MAX {
            q.pop_front();
        }
        q.push_back(code);
    }

    /// Takes the next unit attention for a nexus.
    pub(crate) fn take_ua(&mut self, nexus: NexusId) -> Option<(u8, u8)> {
        self.ua.get_mut(&nexus).and_then(|q| q.pop_front())
    }

    /// Data-out bytes a block command carries.
    pub(crate) fn data_out_len(&self, cdb: &[u8]) -> u64 {
        let Some(t) = decode_transfer(cdb) else {
            return 0;
        };
        if cdb[0] == op::COMPARE_AND_WRITE {
            // The verify data, then the write data.
            2 * t.blocks * u64::from(self.cfg.block_size)
        } else if is_write(cdb[0]) || (is_verify(cdb[0]) && t.bytchk == 1) {
            t.blocks.saturating_mul(u64::from(self.cfg.block_size))
        } else {
            0
        }
    }

    /// Executes a read, write, verify or synchronize-cache command.
    pub(crate) fn block_command(&mut self, cdb: &[u8], data_out: &[u8]) -> Result<Action, Sense> {
        let opcode = cdb[0];
        let t = decode_transfer(cdb).expect("dispatched only for block commands");
        if !self.medium_present {
            return Err(Sense::new(key::NOT_READY, asc::MEDIUM_NOT_PRESENT));
        }
        if t.protect != 0 {
            // No protection information on these LUs (SBC-3 §4.22).
            return Err(Sense::invalid_cdb_field(1, Some(7)));
        }
        if is_verify(opcode) && t.bytchk > 1 {
            return Err(Sense::invalid_cdb_field(1, Some(2)));
        }
        let end = t.lba.checked_add(t.blocks);
        if end.is_none_or(|e| e > self.cfg.blocks) || t.lba > self.cfg.blocks {
            return Err(Sense::new(key::ILLEGAL_REQUEST, asc::LBA_OUT_OF_RANGE));
        }
        if opcode == op::COMPARE_AND_WRITE && t.blocks > u64::from(COMPARE_AND_WRITE_BLOCKS_MAX) {
            return Err(Sense::invalid_cdb_field(13, None));
        }
        let synchronize = matches!(
            opcode,
            op::SYNCHRONIZE_CACHE_10
                | op::SYNCHRONIZE_CACHE_16
                | op::PRE_FETCH_10
                | op::PRE_FETCH_16
        );
        if !synchronize && t.blocks > u64::from(self.cfg.max_xfer_blocks) {
            return Err(Sense::invalid_cdb_field(
                if opcode == op::READ_6 || opcode == op::WRITE_6 {
                    4
                } else {
                    7
                },
                None,
            ));
        }
        if is_write(opcode) && self.write_protected() {
            return Err(Sense::new(key::DATA_PROTECT, asc::WRITE_PROTECTED));
        }
        let bs = u64::from(self.cfg.block_size);
        let offset = t.lba * bs;
        let len = t.blocks * bs;
        if matches!(opcode, op::PRE_FETCH_10 | op::PRE_FETCH_16) {
            // Recently read data is in the page cache already; reading ahead on the target
            // thread gains nothing, and GOOD is a valid answer (SBC-3 §5.8).
            return Ok(Action::Respond(crate::Response::good(Vec::new())));
        }
        if synchronize {
            return Ok(Action::Flush);
        }
        if opcode == op::COMPARE_AND_WRITE && data_out.len() as u64 != 2 * len {
            // The data-out must hold exactly the verify and the write data (SBC-3 §5.2).
            return Err(Sense::invalid_cdb_field(13, None));
        }
        if len == 0 {
            return Ok(Action::Respond(crate::Response::good(Vec::new())));
        }
        Ok(if opcode == op::ORWRITE_16 {
            Action::OrWrite {
                offset,
                len,
                fua: t.fua || !self.mode.wce,
            }
        } else if opcode == op::COMPARE_AND_WRITE {
            Action::CompareAndWrite {
                offset,
                len,
                fua: t.fua || !self.mode.wce,
            }
        } else if is_write(opcode) {
            Action::Write {
                offset,
                len,
                fua: t.fua || !self.mode.wce || is_write_verify(opcode),
            }
        } else if is_verify(opcode) {
            if t.bytchk == 1 {
                Action::Compare { offset, len }
            } else {
                Action::Respond(crate::Response::good(Vec::new()))
            }
        } else {
            Action::Read { offset, len }
        })
    }

    /// START STOP UNIT (SBC-3 §5.25) for removable media: LOEJ ejects or loads.
    pub(crate) fn start_stop(&mut self, cdb: &[u8]) -> Result<(), Sense> {
        let power_condition = cdb[4] >> 4;
        let loej = cdb[4] & 0x02 != 0;
        let start = cdb[4] & 0x01 != 0;
        if power_condition != 0 || !loej || !self.cfg.removable {
            return Ok(());
        }
        if !self.prevent.is_empty() {
            return Err(Sense::new(
                key::ILLEGAL_REQUEST,
                asc::MEDIUM_REMOVAL_PREVENTED,
            ));
        }
        self.medium_present = start;
        Ok(())
    }

    /// PREVENT ALLOW MEDIUM REMOVAL (SBC-3 §5.12).
    pub(crate) fn prevent_allow(&mut self, nexus: NexusId, cdb: &[u8]) -> Result<(), Sense> {
        match cdb[4] & 0x03 {
            0 => {
                self.prevent.remove(&nexus);
            }
            1 => {
                self.prevent.insert(nexus);
            }
            _ => return Err(Sense::invalid_cdb_field(4, Some(1))),
        }
        Ok(())
    }

    /// READ CAPACITY (10) data.
    pub(crate) fn capacity10(&self) -> Vec<u8> {
        let last = self.cfg.blocks.saturating_sub(1);
        let mut v = Vec::with_capacity(8);
        v.extend_from_slice(&(last.min(u64::from(u32::MAX)) as u32).to_be_bytes());
        v.extend_from_slice(&self.cfg.block_size.to_be_bytes());
        v
    }

    /// READ CAPACITY (16) data.
    pub(crate) fn capacity16(&self) -> Vec<u8> {
        let mut v = vec![0u8; 32];
        v[..8].copy_from_slice(&self.cfg.blocks.saturating_sub(1).to_be_bytes());
        v[8..12].copy_from_slice(&self.cfg.block_size.to_be_bytes());
        if self.cfg.thin {
            v[13] = crate::provisioning::physical_block_exponent(self.cfg.block_size);
            v[14] = 0x80 | 0x40; // LBPME, LBPRZ (SBC-3 §5.16.2)
        }
        v
    }
}
