//! Thin provisioning on the target ring: UNMAP and WRITE SAME done in bounded steps, and
//! GET LBA STATUS answered from the file's holes.
//!
//! A full-range UNMAP of a 1 TiB LU, or a WRITE SAME over all of it, must not hold the
//! target thread, nor the file, for long: other sessions on the target keep being served.
//! So each such command is a job that keeps at most one op in flight — a hole punch of at
//! most [`DEALLOCATE_STEP_BYTES`], or a write of at most [`WRITE_SAME_STEP_BYTES`] — and
//! submits the next step when the last one completes, between the other connections' work.
//! Holes need no punching: a step starts at the next data (SEEK_DATA), so deallocating a
//! sparse LU costs steps in proportion to what it holds, not to its size.

use std::collections::VecDeque;
use std::os::fd::AsFd;
use std::sync::atomic::Ordering::Relaxed;

use gw_scsi::{ByteRange, IoOutcome, Provisioned, LBA_STATUS_DESCRIPTORS_MAX};
use gw_uring::{allocation_at, Errno, Fallocate, IoBuf};

use super::task::Pending;
use super::{TargetThread, Token};
use crate::backing::StoreKind;

/// Most bytes one fallocate step deallocates (or zeroes, for ANCHOR). Punching a hole holds
/// the file's lock for time proportional to the extents it frees; 256 MiB keeps a step short
/// on ext4 and XFS while a full 1 TiB UNMAP still takes only 4096 steps.
pub const DEALLOCATE_STEP_BYTES: u64 = 256 << 20;
/// Size of the buffer WRITE SAME repeats its block into, and so the most bytes one write step
/// writes.
pub const WRITE_SAME_STEP_BYTES: usize = 1 << 20;

/// What a provisioning job does to its ranges.
#[derive(Debug)]
enum Work {
    /// Punch holes (or, anchored, zero ranges and keep their space).
    Deallocate { anchor: bool },
    /// Write `buf` (the block repeated) over the ranges.
    Write { dsync: bool },
}

/// A provisioning command in progress: what is left, one step in flight at a time.
#[derive(Debug)]
pub(crate) struct Job {
    ranges: VecDeque<ByteRange>,
    work: Work,
    /// The repeated block (writes only); lent to the ring while a write is in flight.
    buf: Option<IoBuf>,
    /// Bytes of the step in flight.
    step: u64,
}

impl TargetThread {
    /// Starts deallocating `ranges` of task `t`'s LU (UNMAP, WRITE SAME with UNMAP).
    pub(super) fn start_unmap(&mut self, t: usize, ranges: Vec<ByteRange>, anchor: bool) {
        let job = Job {
            ranges: ranges.into(),
            work: Work::Deallocate { anchor },
            buf: None,
            step: 0,
        };
        self.start_job(t, job);
    }

    /// Starts writing `block` over `len` bytes at `offset` (WRITE SAME).
    pub(super) fn start_write_same(
        &mut self,
        t: usize,
        offset: u64,
        len: u64,
        block: Vec<u8>,
        fua: bool,
    ) {
        let lun = self.tasks[t].lun;
        let write_cache = self.stores.get(&lun).is_some_and(|s| s.backing.write_cache);
        assert!(
            !block.is_empty() && WRITE_SAME_STEP_BYTES.is_multiple_of(block.len()),
            "WRITE SAME block of {} bytes",
            block.len()
        );
        let fill = (len.min(WRITE_SAME_STEP_BYTES as u64)) as usize;
        let mut buf = self.ring.alloc_buf(fill);
        buf.set_len(fill);
        for chunk in buf.as_mut_slice().chunks_mut(block.len()) {
            chunk.copy_from_slice(&block[..chunk.len()]);
        }
        let job = Job {
            ranges: VecDeque::from([ByteRange { offset, len }]),
            work: Work::Write {
                dsync: fua || !write_cache,
            },
            buf: Some(buf),
            step: 0,
        };
        self.start_job(t, job);
    }

    fn start_job(&mut self, t: usize, job: Job) {
        let lun = self.tasks[t].lun;
        let null = self
            .stores
            .get(&lun)
            .is_some_and(|s| matches!(s.backing.kind, StoreKind::Null));
        if null {
            // No storage behind the LU: nothing to deallocate or write.
            if let Some(b) = job.buf {
                self.ring.free_buf(b);
            }
            let r = self.scsi.complete(lun, IoOutcome::Ok);
            self.finish_task(t, r, None);
            return;
        }
        self.tasks[t].pending = Pending::Provision;
        self.tasks[t].job = Some(Box::new(job));
        self.next_step(t);
    }

    /// Submits the job's next step, or finishes the task when nothing is left.
    fn next_step(&mut self, t: usize) {
        let lun = self.tasks[t].lun;
        let Some(fd) = self.stores.get(&lun).and_then(|s| s.raw_fd()) else {
            // No file: the LUN was removed while the job ran (its old store waits in
            // `retired` until this task is done), or its store has no descriptor to punch or
            // write through. Fail rather than report work that was not done.
            self.end_job(t, IoOutcome::Error(libc::ENODEV));
            return;
        };
        let file = match self.stores.get(&lun).map(|s| &s.backing.kind) {
            Some(StoreKind::File { file, .. }) => Some(file),
            _ => None,
        };
        let job = self.tasks[t]
            .job
            .as_mut()
            .expect("a provisioning task has a job");
        // Punching a hole where there is one already is work for nothing: skip holes (one
        // lseek each, at most one per range per step), so a sparse 1 TiB LU costs steps for
        // its data only. Anchoring must reach holes too (ZERO_RANGE allocates them).
        let mut data_end = u64::MAX;
        if let (Work::Deallocate { anchor: false }, Some(file)) = (&job.work, file) {
            while let Some(range) = job.ranges.front_mut() {
                match allocation_at(file.as_fd(), range.offset) {
                    Ok(Some(a)) if !a.mapped => {
                        let skip = a.end.saturating_sub(range.offset).min(range.len);
                        range.offset += skip;
                        range.len -= skip;
                    }
                    Ok(Some(a)) => {
                        data_end = a.end;
                        break;
                    }
                    // The file cannot tell, or will not: punch blindly.
                    Ok(None) | Err(_) => break,
                }
                if range.len > 0 {
                    break;
                }
                job.ranges.pop_front();
            }
        }
        let Some(range) = job.ranges.front_mut() else {
            self.end_job(t, IoOutcome::Ok);
            return;
        };
        let token = Token::Io(t).encode();
        let submitted = match job.work {
            Work::Deallocate { anchor } => {
                let step = range
                    .len
                    .min(DEALLOCATE_STEP_BYTES)
                    .min(data_end.saturating_sub(range.offset).max(1));
                job.step = step;
                let what = if anchor {
                    Fallocate::ZeroRange
                } else {
                    Fallocate::PunchHole
                };
                self.ring.fallocate(fd, token, range.offset, step, what)
            }
            Work::Write { dsync } => {
                let buf = job
                    .buf
                    .take()
                    .expect("the write buffer is home between steps");
                let step = range.len.min(buf.len() as u64);
                job.step = step;
                self.ring
                    .write_at(fd, token, buf, range.offset, step as usize, dsync)
            }
        };
        if let Err(e) = submitted {
            tracing::error!(tid = self.tid, "cannot submit a provisioning step: {e}");
            self.end_job(t, IoOutcome::Error(libc::EAGAIN));
        }
    }

    /// The step in flight is done: move on, or fail the command.
    fn step_done(&mut self, t: usize, result: Result<(), Errno>) {
        let job = self.tasks[t]
            .job
            .as_mut()
            .expect("a provisioning task has a job");
        match result {
            Ok(()) => {
                let range = job.ranges.front_mut().expect("a step covers a range");
                range.offset += job.step;
                range.len -= job.step;
                if range.len == 0 {
                    job.ranges.pop_front();
                }
                self.next_step(t);
            }
            Err(e) if e.raw() == libc::EOPNOTSUPP => match job.work {
                // The filesystem cannot zero a range: a hole reads as zeros too.
                Work::Deallocate { anchor: true } => {
                    job.work = Work::Deallocate { anchor: false };
                    self.next_step(t);
                }
                // It cannot punch holes either: deallocated blocks must still read as zeros
                // (LBPRZ), so write them.
                Work::Deallocate { anchor: false } => {
                    let mut buf = self.ring.alloc_buf(WRITE_SAME_STEP_BYTES);
                    buf.set_len(WRITE_SAME_STEP_BYTES);
                    buf.as_mut_slice().fill(0);
                    let job = self.tasks[t].job.as_mut().expect("checked above");
                    job.buf = Some(buf);
                    job.work = Work::Write { dsync: false };
                    self.next_step(t);
                }
                Work::Write { .. } => self.end_job(t, IoOutcome::Error(e.raw())),
            },
            Err(e) => self.end_job(t, IoOutcome::Error(e.raw())),
        }
    }

    fn end_job(&mut self, t: usize, outcome: IoOutcome) {
        if let Some(mut job) = self.tasks[t].job.take() {
            if let Some(b) = job.buf.take() {
                self.ring.free_buf(b);
            }
        }
        let lun = self.tasks[t].lun;
        let r = self.scsi.complete(lun, outcome);
        self.finish_task(t, r, None);
    }

    /// A hole punch (or zero range) of a provisioning job completed.
    pub(super) fn on_fallocated(&mut self, t: usize, result: Result<(), Errno>) {
        if self.tasks[t].aborted {
            return self.drop_aborted(t, None);
        }
        self.step_done(t, result);
    }

    /// A WRITE SAME step completed; `buf` is the job's buffer, given back.
    pub(super) fn on_write_same_step(
        &mut self,
        t: usize,
        result: Result<usize, Errno>,
        buf: IoBuf,
    ) {
        if self.tasks[t].aborted {
            return self.drop_aborted(t, Some(buf));
        }
        let job = self.tasks[t]
            .job
            .as_mut()
            .expect("a provisioning task has a job");
        job.buf = Some(buf);
        let step = job.step;
        let result = match result {
            Ok(n) if n as u64 == step => {
                self.stats.written_bytes.fetch_add(step, Relaxed);
                Ok(())
            }
            // Short only past the end of the store: it shrank under us.
            Ok(_) => Err(Errno(libc::EIO)),
            Err(e) => Err(e),
        };
        self.step_done(t, result);
    }

    /// GET LBA STATUS: the extents from `offset`, found with SEEK_DATA / SEEK_HOLE. A few
    /// lseeks on this thread cost less than a trip through the ring, and their number is
    /// bounded by the descriptors one answer carries.
    pub(super) fn lba_status(&mut self, t: usize, offset: u64, len: u64, alloc_len: u32) {
        let lun = self.tasks[t].lun;
        let end = offset.saturating_add(len);
        let mut extents: Vec<Provisioned> = Vec::new();
        let mut error = None;
        if let Some(StoreKind::File { file, .. }) = self.stores.get(&lun).map(|s| &s.backing.kind) {
            let mut at = offset;
            while at < end && extents.len() < LBA_STATUS_DESCRIPTORS_MAX as usize {
                match allocation_at(file.as_fd(), at) {
                    Ok(Some(a)) => {
                        let stop = a.end.clamp(at + 1, end);
                        extents.push(Provisioned {
                            offset: at,
                            len: stop - at,
                            mapped: a.mapped,
                        });
                        at = stop;
                    }
                    // The file cannot tell: report data, never a hole that is not one.
                    Ok(None) => break,
                    Err(e) => {
                        error = Some(e.raw_os_error().unwrap_or(libc::EIO));
                        break;
                    }
                }
            }
            if error.is_none() && extents.is_empty() {
                extents.push(Provisioned {
                    offset,
                    len,
                    mapped: true,
                });
            }
        } else {
            extents.push(Provisioned {
                offset,
                len,
                mapped: false,
            });
        }
        let r = match error {
            None => self
                .scsi
                .complete_lba_status(lun, offset, alloc_len, Ok(&extents)),
            Some(errno) => self
                .scsi
                .complete_lba_status(lun, offset, alloc_len, Err(errno)),
        };
        self.finish_task(t, r, None);
    }
}
