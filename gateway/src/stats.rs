//! Per-target counters. Each target thread is the only writer of its own counters (relaxed
//! atomics on a structure no other target touches); the management side and the metrics
//! endpoint only read them.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Upper bounds of the command latency histogram's buckets, in microseconds (the last,
/// unbounded bucket is implied).
pub const LATENCY_BUCKETS_US: [u64; 14] = [
    25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 500_000, 1_000_000,
];

/// SCSI sense keys (SPC-4 §4.5.6), by value, for labels.
pub const SENSE_KEY_NAMES: [&str; 16] = [
    "NO SENSE",
    "RECOVERED ERROR",
    "NOT READY",
    "MEDIUM ERROR",
    "HARDWARE ERROR",
    "ILLEGAL REQUEST",
    "UNIT ATTENTION",
    "DATA PROTECT",
    "BLANK CHECK",
    "VENDOR SPECIFIC",
    "COPY ABORTED",
    "ABORTED COMMAND",
    "RESERVED",
    "VOLUME OVERFLOW",
    "MISCOMPARE",
    "COMPLETED",
];

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
    /// CHECK CONDITIONs by sense key.
    pub errors_by_sense_key: [AtomicU64; 16],
    /// Sessions open now.
    pub sessions: AtomicU64,
    /// Commands in flight now.
    pub in_flight: AtomicU64,
    /// Commands completed, by latency bucket ([`LATENCY_BUCKETS_US`], then the rest).
    pub latency_buckets: [AtomicU64; LATENCY_BUCKETS_US.len() + 1],
    /// Sum of completed commands' latencies, in nanoseconds.
    pub latency_sum_ns: AtomicU64,
    /// The target ring's submissions.
    pub ring_submitted: AtomicU64,
    /// The target ring's completions.
    pub ring_completed: AtomicU64,
    /// The target ring's completion queue overflows.
    pub ring_cq_overflows: AtomicU64,
    /// The target ring's receives re-armed after running out of buffers.
    pub ring_enobufs_rearms: AtomicU64,
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
    /// CHECK CONDITIONs by sense key.
    pub errors_by_sense_key: [u64; 16],
    /// Sessions open.
    pub sessions: u64,
    /// Commands in flight.
    pub in_flight: u64,
    /// Completed commands by latency bucket.
    pub latency_buckets: [u64; LATENCY_BUCKETS_US.len() + 1],
    /// Sum of latencies in nanoseconds.
    pub latency_sum_ns: u64,
    /// Ring counters.
    pub ring: gw_uring::RingCounters,
}

impl TargetStats {
    /// Counts a completed command: its latency, and its sense key when it failed.
    pub fn record(&self, latency: Duration, sense: Option<&[u8]>) {
        let us = latency.as_micros() as u64;
        let bucket = LATENCY_BUCKETS_US
            .iter()
            .position(|&b| us <= b)
            .unwrap_or(LATENCY_BUCKETS_US.len());
        self.latency_buckets[bucket].fetch_add(1, Relaxed);
        self.latency_sum_ns
            .fetch_add(latency.as_nanos() as u64, Relaxed);
        if let Some(key) = sense.and_then(sense_key) {
            self.errors_by_sense_key[usize::from(key)].fetch_add(1, Relaxed);
        }
    }

    /// Publishes the ring's counters and the tasks in flight (once per loop turn).
    pub fn publish(&self, ring: gw_uring::RingCounters, in_flight: usize) {
        self.ring_submitted.store(ring.submitted, Relaxed);
        self.ring_completed.store(ring.completed, Relaxed);
        self.ring_cq_overflows.store(ring.cq_overflows, Relaxed);
        self.ring_enobufs_rearms.store(ring.enobufs_rearms, Relaxed);
        self.in_flight.store(in_flight as u64, Relaxed);
    }

    /// Reads every counter.
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            commands: self.commands.load(Relaxed),
            read_bytes: self.read_bytes.load(Relaxed),
            written_bytes: self.written_bytes.load(Relaxed),
            errors: self.errors.load(Relaxed),
            errors_by_sense_key: std::array::from_fn(|i| self.errors_by_sense_key[i].load(Relaxed)),
            sessions: self.sessions.load(Relaxed),
            in_flight: self.in_flight.load(Relaxed),
            latency_buckets: std::array::from_fn(|i| self.latency_buckets[i].load(Relaxed)),
            latency_sum_ns: self.latency_sum_ns.load(Relaxed),
            ring: gw_uring::RingCounters {
                submitted: self.ring_submitted.load(Relaxed),
                completed: self.ring_completed.load(Relaxed),
                cq_overflows: self.ring_cq_overflows.load(Relaxed),
                enobufs_rearms: self.ring_enobufs_rearms.load(Relaxed),
            },
        }
    }
}

/// The sense key of fixed (0x70/0x71) or descriptor (0x72/0x73) sense data.
pub fn sense_key(sense: &[u8]) -> Option<u8> {
    match sense.first()? & 0x7f {
        0x70 | 0x71 => sense.get(2).map(|b| b & 0x0f),
        0x72 | 0x73 => sense.get(1).map(|b| b & 0x0f),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_lands_in_its_bucket_and_sense_keys_are_counted() {
        let s = TargetStats::default();
        s.record(Duration::from_micros(30), None);
        s.record(
            Duration::from_secs(3),
            Some(&[0x70, 0, 0x03, 0, 0, 0, 0, 10]),
        );
        s.record(Duration::from_micros(1), Some(&[0x72, 0x05, 0x24, 0]));
        let snap = s.snapshot();
        assert_eq!(snap.latency_buckets[0], 1, "1 µs");
        assert_eq!(snap.latency_buckets[1], 1, "30 µs");
        assert_eq!(snap.latency_buckets[LATENCY_BUCKETS_US.len()], 1, "3 s");
        assert_eq!(snap.errors_by_sense_key[3], 1, "MEDIUM ERROR");
        assert_eq!(snap.errors_by_sense_key[5], 1, "ILLEGAL REQUEST");
        assert_eq!(sense_key(&[0x00]), None);
    }
}
