//! EXTENDED COPY on the target ring: the emulation's [`CopyPlan`] carried out in bounded
//! steps, like the provisioning jobs.
//!
//! A copy may move gigabytes between two LUs of the target; it must not hold the target
//! thread. So a copy task keeps one op in flight: a read of at most [`COPY_STEP_BYTES`] from
//! the source store into the job's buffer, then the write of that buffer to the destination,
//! then the next chunk, between the other connections' work. The result goes back through
//! [`gw_scsi::Target::complete_copy`], which also keeps it for RECEIVE COPY RESULTS.
//!
//! Stores: a `null` store reads as zeros and drops writes. Curve stores are refused (COPY
//! ABORTED, COPY TARGET DEVICE NOT REACHABLE): their I/O completes on Curve's threads through
//! a different path (`curve_io.rs`), and a copy job would need a second completion route
//! there; VMware falls back to reads and writes of its own when XCOPY is refused.

use std::sync::atomic::Ordering::Relaxed;

use gw_scsi::{CopyOutcome, CopyPlan, CopySegment};
use gw_uring::{Errno, IoBuf};

use super::task::Pending;
use super::{TargetThread, Token};
use crate::backing::StoreKind;

/// Most bytes one step reads and then writes (the job's buffer).
pub const COPY_STEP_BYTES: u64 = 1 << 20;

/// An EXTENDED COPY in progress.
#[derive(Debug)]
pub(crate) struct CopyJob {
    plan: CopyPlan,
    /// Index of the segment being copied.
    segment: usize,
    /// Bytes of it copied so far.
    done: u64,
    /// Bytes written over all segments.
    bytes: u64,
    /// The chunk buffer; lent to the ring while a step is in flight.
    buf: Option<IoBuf>,
    /// The step in flight: offset within the segment and length.
    step: (u64, u64),
}

impl CopyJob {
    /// Whether the copy reads or writes `lun` (whose store must stay open meanwhile).
    pub(crate) fn touches(&self, lun: u64) -> bool {
        self.plan
            .segments
            .iter()
            .any(|s| s.src_lun == lun || s.dst_lun == lun)
    }
}

/// Where the next chunk of `seg` lies (offset within it), copying `remain` of it in
/// `step`-byte chunks: backwards when the destination overlaps the source further on, so no
/// chunk is read after it has been overwritten.
fn chunk_at(seg: &CopySegment, done: u64, step: u64) -> u64 {
    let backward = seg.src_lun == seg.dst_lun
        && seg.dst_offset > seg.src_offset
        && seg.dst_offset < seg.src_offset + seg.len;
    if backward {
        seg.len - done - step
    } else {
        done
    }
}

impl TargetThread {
    /// Starts carrying out `plan` for task `t` (EXTENDED COPY).
    pub(super) fn start_copy(&mut self, t: usize, plan: CopyPlan) {
        let curve = plan.segments.iter().position(|s| {
            [s.src_lun, s.dst_lun].iter().any(|l| {
                self.stores
                    .get(l)
                    .is_some_and(|st| matches!(st.backing.kind, StoreKind::Curve { .. }))
            })
        });
        let job = CopyJob {
            plan,
            segment: 0,
            done: 0,
            bytes: 0,
            buf: None,
            step: (0, 0),
        };
        self.tasks[t].pending = Pending::Copy;
        self.tasks[t].copy = Some(Box::new(job));
        if let Some(segment) = curve {
            return self.end_copy(t, Some((segment, libc::EOPNOTSUPP, false)));
        }
        let mut buf = self.ring.alloc_buf(COPY_STEP_BYTES as usize);
        buf.set_len(COPY_STEP_BYTES as usize);
        self.tasks[t].copy.as_mut().expect("just set").buf = Some(buf);
        self.copy_read(t);
    }

    /// Submits the next chunk's read, or ends the copy when nothing is left.
    fn copy_read(&mut self, t: usize) {
        loop {
            let job = self.tasks[t].copy.as_mut().expect("a copy task has a job");
            let Some(seg) = job.plan.segments.get(job.segment).copied() else {
                return self.end_copy(t, None);
            };
            if job.done == seg.len {
                job.segment += 1;
                job.done = 0;
                continue;
            }
            let step = (seg.len - job.done).min(COPY_STEP_BYTES);
            let at = chunk_at(&seg, job.done, step);
            job.step = (at, step);
            let src = self.stores.get(&seg.src_lun);
            let dst = self.stores.get(&seg.dst_lun);
            let (Some(src), Some(dst)) = (src, dst) else {
                // The LU was removed while the copy ran.
                let segment = job.segment;
                return self.end_copy(t, Some((segment, libc::ENODEV, false)));
            };
            let dst_null = matches!(dst.backing.kind, StoreKind::Null);
            let src_fd = src.raw_fd();
            if dst_null {
                // Nothing to write, so nothing to read.
                job.done += step;
                job.bytes += step;
                continue;
            }
            let mut buf = job.buf.take().expect("the buffer is home between steps");
            buf.set_len(step as usize);
            match src_fd {
                None => {
                    buf.as_mut_slice().fill(0);
                    return self.copy_write(t, buf);
                }
                Some(fd) => {
                    let offset = seg.src_offset + at;
                    let token = Token::Io(t).encode();
                    if let Err(e) = self.ring.read_at(fd, token, buf, offset, step as usize) {
                        tracing::error!(tid = self.tid, "cannot submit a copy read: {e}");
                        let segment = self.tasks[t].copy.as_ref().map_or(0, |j| j.segment);
                        return self.end_copy(t, Some((segment, libc::EAGAIN, false)));
                    }
                    return;
                }
            }
        }
    }

    /// Submits the write of the chunk in `buf`.
    fn copy_write(&mut self, t: usize, buf: IoBuf) {
        let job = self.tasks[t].copy.as_mut().expect("a copy task has a job");
        let seg = job.plan.segments[job.segment];
        let (at, step) = job.step;
        let segment = job.segment;
        let Some(dst) = self.stores.get(&seg.dst_lun) else {
            job.buf = Some(buf);
            return self.end_copy(t, Some((segment, libc::ENODEV, true)));
        };
        let Some(fd) = dst.raw_fd() else {
            unreachable!("null destinations are skipped, Curve ones refused");
        };
        // Durable before status unless the LU has a volatile write cache (then SYNCHRONIZE
        // CACHE is the initiator's to send, as for WRITE).
        let dsync = !dst.backing.write_cache;
        let token = Token::Io(t).encode();
        if let Err(e) =
            self.ring
                .write_at(fd, token, buf, seg.dst_offset + at, step as usize, dsync)
        {
            tracing::error!(tid = self.tid, "cannot submit a copy write: {e}");
            self.end_copy(t, Some((segment, libc::EAGAIN, true)));
        }
    }

    /// A copy read completed.
    pub(super) fn on_copy_read(&mut self, t: usize, result: Result<usize, Errno>, buf: IoBuf) {
        if self.tasks[t].aborted {
            return self.drop_aborted(t, Some(buf));
        }
        let job = self.tasks[t].copy.as_mut().expect("a copy task has a job");
        let step = job.step.1;
        match result {
            Ok(n) if n as u64 == step => {
                self.stats.read_bytes.fetch_add(step, Relaxed);
                self.copy_write(t, buf)
            }
            other => {
                job.buf = Some(buf);
                let errno = other.err().map_or(libc::EIO, |e| e.raw());
                let segment = job.segment;
                self.end_copy(t, Some((segment, errno, false)))
            }
        }
    }

    /// A copy write completed.
    pub(super) fn on_copy_written(&mut self, t: usize, result: Result<usize, Errno>, buf: IoBuf) {
        if self.tasks[t].aborted {
            return self.drop_aborted(t, Some(buf));
        }
        let job = self.tasks[t].copy.as_mut().expect("a copy task has a job");
        job.buf = Some(buf);
        let step = job.step.1;
        match result {
            Ok(n) if n as u64 == step => {
                self.stats.written_bytes.fetch_add(step, Relaxed);
                job.done += step;
                job.bytes += step;
                self.copy_read(t)
            }
            other => {
                let errno = other.err().map_or(libc::EIO, |e| e.raw());
                let segment = job.segment;
                self.end_copy(t, Some((segment, errno, true)))
            }
        }
    }

    /// Answers the EXTENDED COPY: `failed` is (segment, errno, while writing).
    fn end_copy(&mut self, t: usize, failed: Option<(usize, i32, bool)>) {
        let mut job = self.tasks[t].copy.take().expect("a copy task has a job");
        if let Some(b) = job.buf.take() {
            self.ring.free_buf(b);
        }
        let outcome = match failed {
            None => CopyOutcome::Done { bytes: job.bytes },
            Some((segment, errno, writing)) => CopyOutcome::Failed {
                segment: segment as u16,
                bytes: job.bytes,
                errno,
                writing,
            },
        };
        let lun = self.tasks[t].lun;
        let nexus = self.conns[self.tasks[t].conn].nexus;
        let r = self.scsi.complete_copy(nexus, lun, &job.plan, outcome);
        self.finish_task(t, r, None);
    }
}
