//! The op table: every operation the kernel may be working on, with the memory it may touch.
//!
//! An entry lives from submission to its last completion (a CQE without `IORING_CQE_F_MORE`,
//! or the end of a resumed short transfer). `user_data` packs kind, generation and slot, so a
//! completion for a slot that was reused is caught instead of corrupting another op.

use std::os::fd::RawFd;

use crate::chain::SendChain;
use crate::iobuf::IoBuf;

/// Identifies one submitted op: kind (8 bits), generation (24 bits), slot (32 bits).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct OpId(pub(crate) u64);

/// Kinds of op, as carried in `user_data`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Kind {
    Accept = 1,
    Recv = 2,
    Send = 3,
    Read = 4,
    Write = 5,
    Fsync = 6,
    EventFd = 7,
    Timeout = 8,
    Fallocate = 9,
}

/// `user_data` of cancel requests: they have no table entry and their CQEs are ignored.
pub(crate) const CANCEL_USER_DATA: u64 = 0xff << 56;

const GEN_MASK: u32 = (1 << 24) - 1;

impl OpId {
    pub(crate) fn new(kind: Kind, gen: u32, slot: usize) -> OpId {
        let slot = u32::try_from(slot).expect("op table slots fit in 32 bits");
        OpId((kind as u64) << 56 | u64::from(gen & GEN_MASK) << 32 | u64::from(slot))
    }

    #[cfg(test)]
    pub(crate) fn kind(self) -> u8 {
        (self.0 >> 56) as u8
    }

    #[cfg(test)]
    pub(crate) fn gen(self) -> u32 {
        (self.0 >> 32) as u32 & GEN_MASK
    }

    pub(crate) fn slot(self) -> usize {
        (self.0 & 0xffff_ffff) as usize
    }
}

/// What an op is doing and the memory it owns.
#[derive(Debug)]
pub(crate) enum State {
    Accept {
        fd: RawFd,
    },
    Recv {
        fd: RawFd,
    },
    Send {
        fd: RawFd,
        chain: SendChain,
        iovecs: Vec<libc::iovec>,
        /// First iovec not fully sent.
        first: usize,
        msghdr: Box<libc::msghdr>,
        sent: usize,
    },
    Read {
        fd: RawFd,
        buf: IoBuf,
        offset: u64,
        len: usize,
        done: usize,
    },
    Write {
        fd: RawFd,
        buf: IoBuf,
        offset: u64,
        len: usize,
        done: usize,
        dsync: bool,
    },
    Fsync {
        fd: RawFd,
    },
    EventFd {
        fd: RawFd,
        scratch: Box<u64>,
    },
    Timeout {
        ts: Box<io_uring::types::Timespec>,
    },
    Fallocate {
        fd: RawFd,
        offset: u64,
        len: u64,
        mode: i32,
    },
}

/// One table entry.
#[derive(Debug)]
pub(crate) struct Op {
    pub id: OpId,
    pub token: u64,
    pub state: State,
    /// A cancel was requested; do not re-arm.
    pub cancelled: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_data_round_trip() {
        let id = OpId::new(Kind::Send, 0x00ab_cdef, 77);
        assert_eq!(id.kind(), Kind::Send as u8);
        assert_eq!(id.gen(), 0x00ab_cdef);
        assert_eq!(id.slot(), 77);
        let wrapped = OpId::new(Kind::Recv, 0x0100_0001, 1);
        assert_eq!(wrapped.gen(), 1, "generations wrap at 24 bits");
        assert_ne!(id.0, CANCEL_USER_DATA);
    }
}
