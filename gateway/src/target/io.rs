//! Executing a task: the SCSI emulation decides, the backing store does the I/O on this ring,
//! and the status goes back as Data-In (status collapsed into the last PDU) or a SCSI
//! Response.

use std::sync::atomic::Ordering::Relaxed;

use curve_client::Op;
use gw_scsi::{Action, Command, IoOutcome, Response, ScsiStatus};
use gw_uring::{Errno, IoBuf};

use super::task::{Pending, COMMAND_BYTES_MAX};
use super::{TargetThread, Token};
use crate::backing::StoreKind;
use crate::iscsi::pdu::{DataIn, Residual, ScsiResponse};
use crate::iscsi::writer;

/// Whether writes to page-cached (`rdwr`) stores that need no durability are done on the
/// target thread rather than through the ring (see `start_write`).
const INLINE_BUFFERED_WRITES: bool = true;

/// Where data-in comes from.
enum DataSource<'a> {
    /// Bytes made by the emulation (small; copied into the send chain).
    Bytes(&'a [u8]),
    /// A backing read: the buffer itself goes out, no copy.
    Buf(IoBuf),
}

/// PERSISTENT RESERVE OUT (SPC-4 §6.16), whose changes may have to be saved.
const PERSISTENT_RESERVE_OUT: u8 = 0x5f;

impl TargetThread {
    /// Runs a task whose data-out is complete.
    pub(super) fn execute(&mut self, t: usize) {
        let task = &mut self.tasks[t];
        let conn = &self.conns[task.conn];
        let data_out: &[u8] = match &task.buf {
            Some(b) => &b.as_slice()[..task.got as usize],
            None => &[],
        };
        let action = self.scsi.execute(&Command {
            nexus: conn.nexus,
            lun: task.lun,
            cdb: &task.cdb,
            data_out,
        });
        if task.cdb[0] == PERSISTENT_RESERVE_OUT {
            // Durable before the status leaves (APTPL).
            self.save_reservations();
        }
        match action {
            Action::Respond(response) => self.finish_task(t, response, None),
            Action::Read { offset, len } => self.start_read(t, offset, len, false),
            Action::Compare { offset, len } => self.start_read(t, offset, len, true),
            Action::Write { offset, len, fua } => self.start_write(t, offset, len, fua),
            Action::Flush => self.start_flush(t),
            Action::OrWrite { offset, len, fua } => self.or_write(t, offset, len, fua),
            Action::CompareAndWrite { offset, len, fua } => {
                self.compare_and_write(t, offset, len, fua)
            }
            Action::Unmap { ranges, anchor } => self.start_unmap(t, ranges, anchor),
            Action::WriteSame {
                offset,
                len,
                block,
                fua,
            } => self.start_write_same(t, offset, len, block, fua),
            Action::LbaStatus {
                offset,
                len,
                alloc_len,
            } => self.lba_status(t, offset, len, alloc_len),
            Action::Copy(plan) => self.start_copy(t, plan),
        }
    }

    fn check_condition(key: u8, asc: u8, ascq: u8) -> Response {
        Response {
            status: ScsiStatus::CheckCondition,
            sense: Some(gw_scsi::sense::fixed(key, asc, ascq)),
            data: Vec::new(),
        }
    }

    fn start_read(&mut self, t: usize, offset: u64, len: u64, compare: bool) {
        let lun = self.tasks[t].lun;
        if len > u64::from(COMMAND_BYTES_MAX) {
            // INVALID FIELD IN CDB: more than the block limits VPD allows.
            self.finish_task(t, Self::check_condition(0x05, 0x24, 0x00), None);
            return;
        }
        let len32 = len as u32;
        let mut buf = self.ring.alloc_buf(len as usize);
        buf.set_len(len as usize);
        let store = self
            .stores
            .get(&lun)
            .expect("the emulation only reads LUNs with stores");
        self.tasks[t].pending = if compare {
            Pending::Compare { len: len32 }
        } else {
            Pending::Read { len: len32 }
        };
        if matches!(store.backing.kind, StoreKind::Curve { .. }) {
            return self.curve_submit(t, Op::Read, offset, len as usize, Some(buf));
        }
        match store.raw_fd() {
            None => {
                buf.as_mut_slice().fill(0);
                self.on_read(t, Ok(len as usize), buf);
            }
            Some(fd) => {
                if let Err(e) =
                    self.ring
                        .read_at(fd, Token::Io(t).encode(), buf, offset, len as usize)
                {
                    tracing::error!(tid = self.tid, "cannot submit a read: {e}");
                    let r = self.scsi.complete(lun, IoOutcome::Error(libc::EAGAIN));
                    self.finish_task(t, r, None);
                }
            }
        }
    }

    fn start_write(&mut self, t: usize, offset: u64, len: u64, fua: bool) {
        let task = &mut self.tasks[t];
        let lun = task.lun;
        let block = u64::from(self.stores.get(&lun).map_or(512, |s| s.block_size));
        // When the initiator expects to send less than the CDB describes, write the whole
        // blocks it did send and report the rest as residual overflow (RFC 7143 §11.4.5.1;
        // FCP-4: "process the command normally except that data beyond ... shall not be
        // transferred").
        let len = len.min(u64::from(task.got) / block * block);
        if len == 0 || task.buf.is_none() {
            self.finish_task(t, Response::good(Vec::new()), None);
            return;
        }
        let buf = task.buf.take().expect("checked above");
        task.pending = Pending::Write;
        task.io_len = len;
        let store = self
            .stores
            .get(&lun)
            .expect("the emulation only writes LUNs with stores");
        if matches!(store.backing.kind, StoreKind::Curve { .. }) {
            // Curve acknowledges a write once it is durable: FUA needs nothing more.
            return self.curve_submit(t, Op::Write, offset, len as usize, Some(buf));
        }
        let dsync = fua || !store.backing.write_cache;
        if let (
            false,
            StoreKind::File {
                file,
                direct: false,
            },
        ) = (dsync, &store.backing.kind)
        {
            if INLINE_BUFFERED_WRITES {
                // A buffered write is a copy into the page cache. io_uring cannot do it without
                // blocking on ext4 and hands it to a worker thread, which costs more than the
                // copy itself (bench/RESULTS.md); do it here instead.
                use std::os::unix::fs::FileExt;
                let result = file
                    .write_all_at(&buf.as_slice()[..len as usize], offset)
                    .map(|()| len as usize)
                    .map_err(|e| Errno(e.raw_os_error().unwrap_or(libc::EIO)));
                self.on_written(t, result, buf);
                return;
            }
        }
        match store.raw_fd() {
            None => self.on_written(t, Ok(len as usize), buf),
            Some(fd) => {
                if let Err(e) =
                    self.ring
                        .write_at(fd, Token::Io(t).encode(), buf, offset, len as usize, dsync)
                {
                    tracing::error!(tid = self.tid, "cannot submit a write: {e}");
                    let r = self.scsi.complete(lun, IoOutcome::Error(libc::EAGAIN));
                    self.finish_task(t, r, None);
                }
            }
        }
    }

    /// COMPARE AND WRITE: the compare and the write happen with nothing else on the LU in
    /// between, which is the atomicity VMware's ATS relies on. Its size is bounded (255
    /// blocks), so the thread is held only briefly.
    fn compare_and_write(&mut self, t: usize, offset: u64, len: u64, fua: bool) {
        let lun = self.tasks[t].lun;
        if self.is_curve(lun) {
            return self.curve_refuse(t);
        }
        let len = len as usize;
        let outcome = self.read_modify_write(t, offset, len, fua, |current, data| {
            let (verify, write) = data[..2 * len].split_at(len);
            if let Some(at) = current.iter().zip(verify).position(|(a, b)| a != b) {
                return Some(at);
            }
            // Copied into the aligned buffer: O_DIRECT stores need aligned memory.
            current.copy_from_slice(write);
            None
        });
        let response = self.scsi.complete(lun, outcome);
        self.finish_task(t, response, None);
    }

    /// ORWRITE, atomic per LU as COMPARE AND WRITE; its size is bounded by the LU's maximum
    /// transfer length.
    fn or_write(&mut self, t: usize, offset: u64, len: u64, fua: bool) {
        let lun = self.tasks[t].lun;
        if self.is_curve(lun) {
            return self.curve_refuse(t);
        }
        let outcome = self.read_modify_write(t, offset, len as usize, fua, |current, data| {
            for (c, d) in current.iter_mut().zip(data) {
                *c |= d;
            }
            None
        });
        if outcome == IoOutcome::Ok {
            self.stats.written_bytes.fetch_add(len, Relaxed);
        }
        let response = self.scsi.complete(lun, outcome);
        self.finish_task(t, response, None);
    }

    /// A read-modify-write of `len` bytes at `offset`, done synchronously on this thread so
    /// that no other command on the LU runs between the read and the write. `modify` gets
    /// the current bytes (zeros on a `null` store) and the task's data-out, and either turns
    /// the bytes into what to write or returns where a compare failed (nothing is written).
    /// Curve LUs are refused by the callers.
    fn read_modify_write(
        &mut self,
        t: usize,
        offset: u64,
        len: usize,
        fua: bool,
        modify: impl FnOnce(&mut [u8], &[u8]) -> Option<usize>,
    ) -> IoOutcome {
        use std::os::unix::fs::FileExt;
        let lun = self.tasks[t].lun;
        let mut current = self.ring.alloc_buf(len);
        current.set_len(len);
        let data = self.tasks[t]
            .buf
            .as_ref()
            .expect("the emulation checked the data-out length");
        let store = self
            .stores
            .get(&lun)
            .expect("the emulation only writes LUNs with stores");
        let result = (|| -> std::io::Result<Option<usize>> {
            match &store.backing.kind {
                StoreKind::Null => current.as_mut_slice().fill(0),
                StoreKind::File { file, .. } => {
                    file.read_exact_at(current.as_mut_slice(), offset)?
                }
                StoreKind::Curve { .. } => unreachable!("refused by the callers"),
            }
            if let Some(at) = modify(current.as_mut_slice(), data.as_slice()) {
                return Ok(Some(at));
            }
            if let StoreKind::File { file, .. } = &store.backing.kind {
                file.write_all_at(current.as_slice(), offset)?;
                if fua || !store.backing.write_cache {
                    file.sync_data()?;
                }
            }
            Ok(None)
        })();
        self.ring.free_buf(current);
        match result {
            Ok(None) => IoOutcome::Ok,
            Ok(Some(at)) => IoOutcome::Miscompare { at: at as u64 },
            Err(e) => IoOutcome::Error(e.raw_os_error().unwrap_or(libc::EIO)),
        }
    }

    fn start_flush(&mut self, t: usize) {
        let lun = self.tasks[t].lun;
        self.tasks[t].pending = Pending::Flush;
        let store = self
            .stores
            .get(&lun)
            .expect("the emulation only flushes LUNs with stores");
        if matches!(store.backing.kind, StoreKind::Curve { .. }) {
            return self.curve_submit(t, Op::Flush, 0, 0, None);
        }
        match store.raw_fd() {
            None => self.on_synced(t, Ok(())),
            Some(fd) => {
                if let Err(e) = self.ring.fdatasync(fd, Token::Io(t).encode()) {
                    tracing::error!(tid = self.tid, "cannot submit a flush: {e}");
                    let r = self.scsi.complete(lun, IoOutcome::Error(libc::EAGAIN));
                    self.finish_task(t, r, None);
                }
            }
        }
    }

    /// Drops an aborted task whose I/O just completed.
    pub(super) fn drop_aborted(&mut self, t: usize, buf: Option<IoBuf>) {
        if let Some(b) = buf {
            self.ring.free_buf(b);
        }
        let mut task = self.remove_task(t);
        if let Some(b) = task.buf.take() {
            self.ring.free_buf(b);
        }
        self.maybe_free_conn(task.conn);
    }

    fn outcome(result: Result<usize, Errno>, want: usize) -> IoOutcome {
        match result {
            Ok(n) if n == want => IoOutcome::Ok,
            // A short read or write past the end of the store: the store shrank under us.
            Ok(_) => IoOutcome::Error(libc::EIO),
            Err(e) => IoOutcome::Error(e.raw()),
        }
    }

    pub(super) fn on_read(&mut self, t: usize, result: Result<usize, Errno>, buf: IoBuf) {
        if self.tasks[t].pending == Pending::Copy {
            return self.on_copy_read(t, result, buf);
        }
        if self.tasks[t].aborted {
            return self.drop_aborted(t, Some(buf));
        }
        let task = &mut self.tasks[t];
        let lun = task.lun;
        match task.pending {
            Pending::Read { len } => {
                let outcome = Self::outcome(result, len as usize);
                let response = self.scsi.complete(lun, outcome);
                if response.status == ScsiStatus::Good {
                    self.stats.read_bytes.fetch_add(u64::from(len), Relaxed);
                    self.finish_task(t, response, Some(buf));
                } else {
                    self.ring.free_buf(buf);
                    self.finish_task(t, response, None);
                }
            }
            Pending::Compare { len } => {
                let mut outcome = Self::outcome(result, len as usize);
                if outcome == IoOutcome::Ok {
                    let wanted = task.buf.as_ref().map(|b| b.as_slice()).unwrap_or(&[]);
                    let have = &buf.as_slice()[..len as usize];
                    if let Some(at) = have.iter().zip(wanted).position(|(a, b)| a != b) {
                        outcome = IoOutcome::Miscompare { at: at as u64 };
                    }
                }
                self.ring.free_buf(buf);
                let response = self.scsi.complete(lun, outcome);
                self.finish_task(t, response, None);
            }
            other => panic!("read completion for a task in state {other:?}"),
        }
    }

    pub(super) fn on_written(&mut self, t: usize, result: Result<usize, Errno>, buf: IoBuf) {
        if self.tasks[t].pending == Pending::Provision {
            return self.on_write_same_step(t, result, buf);
        }
        if self.tasks[t].pending == Pending::Copy {
            return self.on_copy_written(t, result, buf);
        }
        if self.tasks[t].aborted {
            return self.drop_aborted(t, Some(buf));
        }
        let lun = self.tasks[t].lun;
        let want = self.tasks[t].io_len;
        let outcome = Self::outcome(result, want as usize);
        if outcome == IoOutcome::Ok {
            self.stats.written_bytes.fetch_add(want, Relaxed);
        }
        self.ring.free_buf(buf);
        let response = self.scsi.complete(lun, outcome);
        self.finish_task(t, response, None);
    }

    pub(super) fn on_synced(&mut self, t: usize, result: Result<(), Errno>) {
        if self.tasks[t].aborted {
            return self.drop_aborted(t, None);
        }
        let lun = self.tasks[t].lun;
        let outcome = match result {
            Ok(()) => IoOutcome::Ok,
            Err(e) => IoOutcome::Error(e.raw()),
        };
        let response = self.scsi.complete(lun, outcome);
        self.finish_task(t, response, None);
    }

    /// Sends a task's status (and data-in), and frees it.
    pub(super) fn finish_task(&mut self, t: usize, response: Response, read: Option<IoBuf>) {
        let mut task = self.remove_task(t);
        if let Some(b) = task.buf.take() {
            self.ring.free_buf(b);
        }
        if task.aborted {
            if let Some(b) = read {
                self.ring.free_buf(b);
            }
            self.maybe_free_conn(task.conn);
            return;
        }
        let c = task.conn;
        self.conns[c].itts.remove(&task.itt);
        if response.status != ScsiStatus::Good {
            self.stats.errors.fetch_add(1, Relaxed);
        }
        self.stats
            .record(task.started.elapsed(), response.sense.as_deref());
        // Residuals (RFC 7143 §11.4.5): what the command would move against what the
        // initiator expected.
        let produced: u64 = match (&read, task.needed) {
            (Some(b), _) => b.len() as u64,
            (None, 0) => response.data.len() as u64,
            (None, needed) => needed,
        };
        let edtl = u64::from(task.edtl);
        // Failed reads report no residual; writes always do, so an initiator learns that its
        // expected length did not match the CDB.
        let residual = if response.status != ScsiStatus::Good && task.needed == 0 {
            Residual::None
        } else if produced < edtl {
            Residual::Under((edtl - produced) as u32)
        } else if produced > edtl {
            Residual::Over((produced - edtl).min(u64::from(u32::MAX)) as u32)
        } else {
            Residual::None
        };
        let status = response.status as u8;
        let send_len = produced.min(edtl) as u32;
        let is_data_in = read.is_some() || (task.needed == 0 && !response.data.is_empty());
        if response.status == ScsiStatus::Good && is_data_in && send_len > 0 {
            let source = match read {
                Some(b) => DataSource::Buf(b),
                None => DataSource::Bytes(&response.data),
            };
            self.queue_data_in(c, &mut task, source, send_len, status, residual);
        } else {
            if let Some(b) = read {
                self.ring.free_buf(b);
            }
            let sense = response.sense.as_deref().unwrap_or(&[]);
            self.queue_response(c, task.itt, status, residual, task.datasn, sense);
        }
        self.maybe_free_conn(c);
    }

    /// A SCSI Response PDU with no task behind it (e.g. TASK SET FULL).
    pub(super) fn respond_status_only(&mut self, c: usize, itt: u32, status: u8, datasn: u32) {
        self.queue_response(c, itt, status, Residual::None, datasn, &[]);
    }

    fn queue_response(
        &mut self,
        c: usize,
        itt: u32,
        status: u8,
        residual: Residual,
        exp_datasn: u32,
        sense: &[u8],
    ) {
        let conn = &mut self.conns[c];
        let mut data = Vec::new();
        if !sense.is_empty() {
            data.reserve(2 + sense.len());
            data.extend_from_slice(&(sense.len() as u16).to_be_bytes());
            data.extend_from_slice(sense);
        }
        let statsn = conn.take_statsn();
        let bhs = ScsiResponse {
            itt,
            response: 0,
            status,
            statsn,
            exp_cmdsn: conn.exp_cmdsn,
            max_cmdsn: conn.max_cmdsn(),
            exp_datasn,
            residual,
            data_segment_len: data.len() as u32,
        }
        .encode();
        conn.queue_pdu(&bhs, &data);
        self.mark_dirty(c);
    }

    /// Queues `len` bytes of data-in as PDUs no longer than the initiator's
    /// MaxRecvDataSegmentLength, sequences no longer than MaxBurstLength, with the status in
    /// the last PDU.
    fn queue_data_in(
        &mut self,
        c: usize,
        task: &mut super::task::Task,
        source: DataSource<'_>,
        len: u32,
        status: u8,
        residual: Residual,
    ) {
        let conn = &mut self.conns[c];
        let segment_max = conn.params.max_xmit_data_segment_len.max(512);
        let burst_max = conn.params.max_burst_len.max(segment_max);
        let digests = conn.digests;
        // Segment lengths: cut at the segment limit and at every burst boundary.
        let mut segments = Vec::with_capacity((len / segment_max + 2) as usize);
        let mut offset = 0u32;
        while offset < len {
            let burst_left = burst_max - offset % burst_max;
            let seg = (len - offset).min(segment_max).min(burst_left);
            segments.push(seg);
            offset += seg;
        }
        // Padding and data digest of each segment, computed while the data is still ours.
        let (bytes, buf) = match source {
            DataSource::Bytes(b) => (Some(b), None),
            DataSource::Buf(b) => (None, Some(b)),
        };
        let data: &[u8] = match (&bytes, &buf) {
            (Some(b), _) => &b[..len as usize],
            (None, Some(b)) => &b.as_slice()[..len as usize],
            (None, None) => unreachable!("data-in has a source"),
        };
        let mut trailers = Vec::with_capacity(segments.len());
        let mut at = 0usize;
        for &seg in &segments {
            trailers.push(writer::data_trailer(&data[at..at + seg as usize], digests));
            at += seg as usize;
        }
        let handle = buf.map(|b| conn.out.attach_buf(b));
        let mut offset = 0u32;
        for (i, &seg) in segments.iter().enumerate() {
            let last = i + 1 == segments.len();
            let end_of_burst = last || (offset + seg).is_multiple_of(burst_max);
            let statsn = if last { conn.take_statsn() } else { 0 };
            let bhs = DataIn {
                final_: end_of_burst,
                status: last.then_some(status),
                lun: task.lun_raw,
                itt: task.itt,
                ttt: super::conn::RESERVED_TAG,
                statsn,
                exp_cmdsn: conn.exp_cmdsn,
                max_cmdsn: conn.max_cmdsn(),
                datasn: task.datasn,
                buffer_offset: offset,
                residual: if last { residual } else { Residual::None },
                data_segment_len: seg,
            }
            .encode();
            task.datasn += 1;
            let (header, header_len) = writer::header_with_digest(&bhs, digests);
            conn.out.push_slice(&header[..header_len]);
            let range = offset as usize..(offset + seg) as usize;
            match (handle, bytes) {
                (Some(h), _) => conn.out.push_buf_range(h, range),
                (None, Some(b)) => conn.out.push_slice(&b[range]),
                (None, None) => unreachable!("data-in has a source"),
            }
            let (trailer, n) = trailers[i];
            if n > 0 {
                conn.out.push_slice(&trailer[..n]);
            }
            offset += seg;
        }
        self.mark_dirty(c);
    }
}
