//! Per-target counters. Each target thread is the only writer of its own counters (relaxed
//! atomics on a structure no other target touches); the management side only reads them.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Counters of one target.
#[derive(Debug, Default)]
pub struct TargetStats {
    /// SCSI commands received.
    pub commands: AtomicU64,
    /// Bytes read from backing stores and sent as data-in.
    pub read_bytes: AtomicU64,
    /// Bytes written to backing stores.
    pub written_bytes: AtomicU64,
    /// Commands that ended with a status other than GOOD.
    pub errors: AtomicU64,
    /// Sessions open now.
    pub sessions: AtomicU64,
}

/// A point-in-time copy of [`TargetStats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StatsSnapshot {
    /// SCSI commands received.
    pub commands: u64,
    /// Bytes read.
    pub read_bytes: u64,
    /// Bytes written.
    pub written_bytes: u64,
    /// Commands with a non-GOOD status.
    pub errors: u64,
    /// Sessions open.
    pub sessions: u64,
}

impl TargetStats {
    /// Reads every counter.
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            commands: self.commands.load(Relaxed),
            read_bytes: self.read_bytes.load(Relaxed),
            written_bytes: self.written_bytes.load(Relaxed),
            errors: self.errors.load(Relaxed),
            sessions: self.sessions.load(Relaxed),
        }
    }
}
