//! Sans-IO SCSI target emulation (SPC-4, SBC-3) for the gateway.
//!
//! A [`Target`] holds the LUN 0 controller and the disk LUs of one iSCSI target. It turns a
//! command into an [`Action`]: an immediate [`Response`] for everything it emulates, or a
//! backing-store request (read, write, compare, flush) that the caller performs and reports
//! back through [`Target::complete`] (or, for GET LBA STATUS, [`Target::complete_lba_status`]). It never does I/O itself, so every command is testable
//! without a ring, a socket or a file.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod cdb;
mod inquiry;
mod lu;
mod mode;
mod opcodes;
mod provisioning;
mod reservation;
mod sanitize;
pub mod sense;
mod target;
#[cfg(test)]
mod testing;
mod xcopy;

pub use lu::LuConfig;
pub use provisioning::{
    ByteRange, Provisioned, LBA_STATUS_DESCRIPTORS_MAX, UNMAP_BLOCKS_MAX, UNMAP_DESCRIPTORS_MAX,
    WRITE_SAME_BLOCKS_MAX,
};
pub use reservation::{
    iscsi_initiator_port, StateError, INITIATOR_PORT_BYTES_MAX, PR_OUT_PARAMETER_BYTES_MAX,
    REGISTRATIONS_MAX, STATE_BYTES_MAX,
};
pub use target::{LuStatus, Target, TargetConfig};
pub use xcopy::{
    CopyOutcome, CopyPlan, CopySegment, COPY_RECORDS_MAX, CSCD_DESCRIPTORS_MAX,
    DESCRIPTOR_LIST_BYTES_MAX, SEGMENT_BYTES_MAX, SEGMENT_DESCRIPTORS_MAX,
};

/// The 8-byte LUN field for a LUN number (SAM-5 §4.7: peripheral addressing below 256, flat
/// addressing up to 16383).
pub fn lun_to_wire(lun: u64) -> [u8; 8] {
    let mut raw = [0u8; 8];
    if lun < 256 {
        raw[1] = lun as u8;
    } else {
        raw[0] = 0x40 | ((lun >> 8) as u8 & 0x3f);
        raw[1] = lun as u8;
    }
    raw
}

/// Identity of an I_T nexus (one per iSCSI session). The initiator port behind it, which
/// reservations are kept by, is given to [`Target::nexus_added`].
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub struct NexusId(pub u64);

/// SCSI status codes (SAM-5 §5.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum ScsiStatus {
    /// GOOD.
    Good = 0x00,
    /// CHECK CONDITION: sense data says why.
    CheckCondition = 0x02,
    /// BUSY.
    Busy = 0x08,
    /// RESERVATION CONFLICT.
    ReservationConflict = 0x18,
    /// TASK SET FULL.
    TaskSetFull = 0x28,
}

/// A command's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// Status.
    pub status: ScsiStatus,
    /// Sense data (fixed or descriptor format, per the LU's D_SENSE).
    pub sense: Option<Vec<u8>>,
    /// Data-in, already cut to the CDB's allocation length.
    pub data: Vec<u8>,
}

impl Response {
    /// GOOD with data.
    pub fn good(data: Vec<u8>) -> Response {
        Response {
            status: ScsiStatus::Good,
            sense: None,
            data,
        }
    }
}

/// A command to execute.
#[derive(Debug)]
pub struct Command<'a> {
    /// Who sends it.
    pub nexus: NexusId,
    /// The LUN it addresses.
    pub lun: u64,
    /// The CDB (padded to 16 bytes is fine).
    pub cdb: &'a [u8],
    /// The data-out the initiator sent.
    pub data_out: &'a [u8],
}

/// What the caller must do for a command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Answer now.
    Respond(Response),
    /// Read `len` bytes at byte `offset` of the backing store as data-in.
    Read {
        /// Byte offset.
        offset: u64,
        /// Bytes.
        len: u64,
    },
    /// Write `data_out[..len]` at byte `offset`; durable before status when `fua`.
    Write {
        /// Byte offset.
        offset: u64,
        /// Bytes.
        len: u64,
        /// Force unit access.
        fua: bool,
    },
    /// Read `len` bytes at `offset` and compare them with `data_out[..len]`.
    Compare {
        /// Byte offset.
        offset: u64,
        /// Bytes.
        len: u64,
    },
    /// Make everything written durable.
    Flush,
    /// COMPARE AND WRITE (SBC-3 §5.2): read `len` bytes at `offset`; if they equal
    /// `data_out[..len]`, write `data_out[len..2 * len]` there, atomically with respect to
    /// every other command on the LU; otherwise report the first differing byte.
    CompareAndWrite {
        /// Byte offset.
        offset: u64,
        /// Bytes compared (and written).
        len: u64,
        /// Force unit access for the write.
        fua: bool,
    },
    /// ORWRITE (SBC-3 §5.9): read `len` bytes at `offset`, OR `data_out[..len]` into them and
    /// write the result back, atomically with respect to every other command on the LU.
    OrWrite {
        /// Byte offset.
        offset: u64,
        /// Bytes.
        len: u64,
        /// Force unit access for the write.
        fua: bool,
    },
    /// Deallocate byte ranges (UNMAP, or WRITE SAME with UNMAP of a zero block; SBC-3
    /// §4.7.3.4): afterwards they read as zeros (LBPRZ). Large ranges are the caller's to
    /// split into bounded steps.
    Unmap {
        /// The ranges, in the order the initiator gave them.
        ranges: Vec<ByteRange>,
        /// ANCHOR: keep the ranges' space reserved (zero them) rather than releasing it.
        anchor: bool,
    },
    /// WRITE SAME: write `block` (one logical block) over `len` bytes at `offset`.
    WriteSame {
        /// Byte offset.
        offset: u64,
        /// Bytes (a multiple of the block's length).
        len: u64,
        /// The block to repeat.
        block: Vec<u8>,
        /// Durable before status.
        fua: bool,
    },
    /// GET LBA STATUS: find which extents from `offset` hold data (at most
    /// [`LBA_STATUS_DESCRIPTORS_MAX`] are reported) and answer through
    /// [`Target::complete_lba_status`].
    LbaStatus {
        /// Byte offset of the starting LBA.
        offset: u64,
        /// Bytes from there to the end of the LU.
        len: u64,
        /// The CDB's allocation length, to give back.
        alloc_len: u32,
    },
    /// EXTENDED COPY (SPC-4 §6.4): copy the plan's segments in order between LUs of this
    /// target, in bounded steps, and answer through [`Target::complete_copy`].
    Copy(CopyPlan),
}

/// How a backing-store request ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoOutcome {
    /// It worked.
    Ok,
    /// It failed with this errno.
    Error(i32),
    /// A compare found a difference at this byte offset.
    Miscompare {
        /// Offset of the first differing byte.
        at: u64,
    },
}

/// Configuration errors.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ScsiError {
    /// The LUN is taken.
    #[error("LUN {0} already exists")]
    LunExists(u64),
    /// LUN 0 is the controller.
    #[error("LUN 0 is the controller LU; disk LUNs start at 1")]
    LunZero,
    /// No such LUN.
    #[error("no LUN {0}")]
    NoSuchLun(u64),
    /// Bad block size.
    #[error("block size {0} is not supported (512, 1024, 2048 or 4096)")]
    BlockSize(u32),
    /// Saved reservation state that cannot be restored.
    #[error("LUN {lun}: {source}")]
    ReservationState {
        /// The LU it was for.
        lun: u64,
        /// What is wrong with it.
        source: StateError,
    },
}
