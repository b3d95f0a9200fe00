//! SCSI command tasks: intake, the data-out phase (immediate data, unsolicited Data-Out,
//! R2T-solicited Data-Out), and task management.
//!
//! A task is one SCSI command from its Command PDU to its status. Its data-out lands in one
//! I/O buffer at the offsets the PDUs name; every offset, length and DataSN is checked before
//! a byte is copied, so a peer can never write outside the buffer it was given.

use gw_uring::IoBuf;

use super::conn::RESERVED_TAG;
use super::TargetThread;
use crate::iscsi::pdu::Bhs;
use crate::iscsi::pdu::{self, DataOut, R2t, ScsiCommand, TaskMgmtRequest, TaskMgmtResponse};
use crate::iscsi::reader::Pdu;

/// Largest data transfer one command may ask for, in bytes; VPD 0xB0 advertises it.
pub const COMMAND_BYTES_MAX: u32 = 16 << 20;
/// Write data one target thread holds for commands in flight, in bytes; past it new writes
/// get TASK SET FULL, so a flood of large writes cannot exhaust memory.
pub const DATA_OUT_BYTES_MAX: usize = 1 << 30;

/// SCSI status TASK SET FULL (SAM-5 §5.3.1).
const STATUS_TASK_SET_FULL: u8 = 0x28;

/// Task management function codes (RFC 7143 §11.5.1).
mod tmf {
    pub const ABORT_TASK: u8 = 1;
    pub const ABORT_TASK_SET: u8 = 2;
    pub const CLEAR_TASK_SET: u8 = 3;
    pub const LOGICAL_UNIT_RESET: u8 = 5;
    pub const TARGET_WARM_RESET: u8 = 6;
    pub const TARGET_COLD_RESET: u8 = 7;
    /// Response codes (RFC 7143 §11.6.1).
    pub const COMPLETE: u8 = 0;
    pub const NO_TASK: u8 = 1;
    pub const NOT_SUPPORTED: u8 = 5;
}

/// An R2T the initiator has not fully answered yet.
#[derive(Debug)]
pub(crate) struct R2tSlot {
    pub ttt: u32,
    pub offset: u32,
    pub len: u32,
    pub received: u32,
    pub next_datasn: u32,
}

/// What the backing store is doing for a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pending {
    /// Collecting data-out.
    DataOut,
    /// Reading `len` bytes for data-in.
    Read { len: u32 },
    /// Writing.
    Write,
    /// Flushing.
    Flush,
    /// Reading `len` bytes to compare with the data-out.
    Compare { len: u32 },
    /// Deallocating or writing in steps (UNMAP, WRITE SAME); the task's `job` says what.
    Provision,
    /// Copying between LUs in steps (EXTENDED COPY); the task's `copy` says what.
    Copy,
}

/// One SCSI command in flight.
#[derive(Debug)]
pub(crate) struct Task {
    pub conn: usize,
    pub itt: u32,
    pub lun: u64,
    pub lun_raw: [u8; 8],
    pub cdb: [u8; 16],
    pub edtl: u32,
    /// Data-out bytes the CDB itself asks for.
    pub needed: u64,
    /// The data-out buffer (None when discarding, or before allocation).
    pub buf: Option<IoBuf>,
    /// Data-out bytes to receive before executing.
    pub want: u32,
    /// Data-out bytes received.
    pub got: u32,
    /// Unsolicited data ends here (offsets below it are never solicited by R2T).
    pub unsolicited_end: u32,
    pub unsolicited_next: u32,
    pub unsolicited_datasn: u32,
    /// Next offset to solicit with an R2T.
    pub solicit_next: u32,
    pub r2ts: Vec<R2tSlot>,
    pub r2tsn: u32,
    /// Response to give once the unsolicited data has been swallowed (refused commands).
    pub refusal: Option<gw_scsi::Response>,
    pub pending: Pending,
    /// Aborted: the initiator gets no status; the task lives until its I/O completes.
    pub aborted: bool,
    /// Data-In PDUs and R2Ts sent (ExpDataSN of the response).
    pub datasn: u32,
    /// Data-out buffer bytes this task counts against the target's budget.
    pub held_bytes: usize,
    /// Bytes of the backing-store write in flight.
    pub io_len: u64,
    /// When the command arrived (for the latency histogram).
    pub started: std::time::Instant,
    /// The UNMAP or WRITE SAME in progress (Pending::Provision).
    pub job: Option<Box<super::provisioning::Job>>,
    /// The EXTENDED COPY in progress (Pending::Copy).
    pub copy: Option<Box<super::copy::CopyJob>>,
}

impl TargetThread {
    pub(super) fn on_scsi_command(&mut self, c: usize, p: Pdu) {
        let Ok(cmd) = ScsiCommand::parse(&p.bhs) else {
            self.reject(c, pdu::REJECT_INVALID_PDU_FIELD, &p.bhs);
            return;
        };
        if !self.accept_cmdsn(c, cmd.immediate, cmd.cmdsn) {
            return;
        }
        self.stats
            .commands
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let conn = &self.conns[c];
        if conn.itts.contains_key(&cmd.itt) || cmd.itt == RESERVED_TAG {
            self.reject(c, pdu::REJECT_INVALID_PDU_FIELD, &p.bhs);
            return;
        }
        let params = &conn.params;
        let immediate_len = p.data.len() as u32;
        if immediate_len > 0
            && (!cmd.write
                || !params.immediate_data
                || immediate_len > params.first_burst_len
                || immediate_len > cmd.expected_len)
        {
            tracing::warn!(
                tid = self.tid,
                "immediate data breaks the negotiated rules; closing"
            );
            self.close_conn(c);
            return;
        }
        let lun = pdu::lun_from_wire(cmd.lun);
        let needed = if cmd.write {
            self.scsi.data_out_len(lun, &cmd.cdb)
        } else {
            0
        };
        let unsolicited_end = if cmd.write && !params.initial_r2t {
            params.first_burst_len.min(cmd.expected_len)
        } else {
            immediate_len
        }
        .max(immediate_len);
        let mut task = Task {
            conn: c,
            itt: cmd.itt,
            lun,
            lun_raw: cmd.lun,
            cdb: cmd.cdb,
            edtl: cmd.expected_len,
            needed,
            buf: None,
            want: 0,
            got: 0,
            unsolicited_end,
            unsolicited_next: immediate_len,
            unsolicited_datasn: 0,
            solicit_next: unsolicited_end,
            r2ts: Vec::new(),
            r2tsn: 0,
            refusal: None,
            pending: Pending::DataOut,
            aborted: false,
            datasn: 0,
            held_bytes: 0,
            io_len: 0,
            started: std::time::Instant::now(),
            job: None,
            copy: None,
        };
        if cmd.write && cmd.expected_len > 0 {
            let over_budget = self.data_out_bytes + cmd.expected_len as usize > DATA_OUT_BYTES_MAX;
            if over_budget && cmd.expected_len <= COMMAND_BYTES_MAX {
                // Too much write data is already held on this target: refuse for now, the
                // initiator retries (SAM-5 §5.3.1 TASK SET FULL).
                task.refusal = Some(gw_scsi::Response {
                    status: gw_scsi::ScsiStatus::TaskSetFull,
                    sense: None,
                    data: Vec::new(),
                });
                task.want = unsolicited_end;
                task.solicit_next = unsolicited_end;
            } else if cmd.expected_len > COMMAND_BYTES_MAX {
                // Swallow what the initiator sends unasked, solicit nothing, then refuse.
                task.refusal = Some(gw_scsi::Response {
                    status: gw_scsi::ScsiStatus::CheckCondition,
                    sense: Some(gw_scsi::sense::fixed(0x05, 0x24, 0x00)),
                    data: Vec::new(),
                });
                task.want = unsolicited_end;
                task.solicit_next = unsolicited_end;
            } else {
                let mut buf = self.ring.alloc_buf(cmd.expected_len as usize);
                buf.set_len(cmd.expected_len as usize);
                buf.as_mut_slice()[..p.data.len()].copy_from_slice(&p.data);
                task.buf = Some(buf);
                task.want = cmd.expected_len;
                task.held_bytes = cmd.expected_len as usize;
                self.data_out_bytes += task.held_bytes;
            }
            task.got = immediate_len;
        }
        if self.conns[c].itts.len() as u32 >= super::conn::TASKS_PER_SESSION_MAX {
            // The window should have prevented this; only immediate commands get here.
            if let Some(buf) = task.buf.take() {
                self.ring.free_buf(buf);
            }
            self.data_out_bytes -= task.held_bytes;
            self.respond_status_only(c, cmd.itt, STATUS_TASK_SET_FULL, 0);
            return;
        }
        let t = self.tasks.insert(task);
        self.conns[c].itts.insert(cmd.itt, t);
        self.advance_data_out(t);
    }

    /// Executes the task if all its data-out is in, otherwise solicits more.
    fn advance_data_out(&mut self, t: usize) {
        let task = &self.tasks[t];
        if task.got >= task.want {
            match self.tasks[t].refusal.take() {
                Some(response) => self.finish_task(t, response, None),
                None => self.execute(t),
            }
            return;
        }
        self.send_r2ts(t);
    }

    /// Issues R2Ts for unsolicited ranges while fewer than MaxOutstandingR2T are open.
    fn send_r2ts(&mut self, t: usize) {
        let c = self.tasks[t].conn;
        let (max_burst, max_outstanding) = {
            let p = &self.conns[c].params;
            (p.max_burst_len, p.max_outstanding_r2t.max(1))
        };
        loop {
            let task = &self.tasks[t];
            if task.solicit_next >= task.want || task.r2ts.len() as u32 >= max_outstanding {
                return;
            }
            let offset = task.solicit_next;
            let len = (task.want - offset).min(max_burst);
            let conn = &mut self.conns[c];
            let ttt = conn.ttt();
            let task = &mut self.tasks[t];
            let bhs = R2t {
                lun: task.lun_raw,
                itt: task.itt,
                ttt,
                statsn: conn.statsn,
                exp_cmdsn: conn.exp_cmdsn,
                max_cmdsn: conn.max_cmdsn(),
                r2tsn: task.r2tsn,
                buffer_offset: offset,
                desired_len: len,
            }
            .encode();
            task.r2tsn += 1;
            task.datasn += 1;
            task.solicit_next += len;
            task.r2ts.push(R2tSlot {
                ttt,
                offset,
                len,
                received: 0,
                next_datasn: 0,
            });
            conn.queue_pdu(&bhs, &[]);
            self.mark_dirty(c);
        }
    }

    /// A Data-Out PDU; its data is read where the PDU reader holds it and copied once, into
    /// the command's buffer.
    pub(super) fn on_data_out(&mut self, c: usize, bhs: &Bhs, data: &[u8]) {
        let Ok(d) = DataOut::parse(bhs) else {
            self.reject(c, pdu::REJECT_INVALID_PDU_FIELD, bhs);
            return;
        };
        let Some(&t) = self.conns[c].itts.get(&d.itt) else {
            // A Data-Out for a task we do not have (finished, aborted or never seen).
            self.reject(c, pdu::REJECT_INVALID_PDU_FIELD, bhs);
            return;
        };
        let len = data.len() as u32;
        let task = &mut self.tasks[t];
        if task.pending != Pending::DataOut {
            self.reject(c, pdu::REJECT_PROTOCOL_ERROR, bhs);
            return;
        }
        let end = d.buffer_offset.checked_add(len);
        if !matches!(end, Some(e) if e <= task.edtl) || task.got + len > task.edtl {
            // Data outside the command's buffer: a broken or hostile initiator.
            tracing::warn!(
                tid = self.tid,
                itt = d.itt,
                offset = d.buffer_offset,
                len,
                "Data-Out past the expected data transfer length; closing the connection"
            );
            self.close_conn(c);
            return;
        }
        if task.refusal.is_some() {
            // Already failed: count the bytes the initiator still owes, store nothing.
            task.got += len;
            self.advance_data_out(t);
            return;
        }
        let ok = if d.ttt == RESERVED_TAG {
            // Unsolicited: in order, inside the first burst.
            let ok = d.datasn == task.unsolicited_datasn
                && d.buffer_offset == task.unsolicited_next
                && d.buffer_offset + len <= task.unsolicited_end;
            if ok {
                task.unsolicited_datasn += 1;
                task.unsolicited_next += len;
            }
            ok
        } else {
            match task.r2ts.iter_mut().position(|r| r.ttt == d.ttt) {
                Some(i) => {
                    let r = &mut task.r2ts[i];
                    let ok = d.datasn == r.next_datasn
                        && d.buffer_offset == r.offset + r.received
                        && r.received + len <= r.len;
                    if ok {
                        r.next_datasn += 1;
                        r.received += len;
                        if r.received == r.len {
                            task.r2ts.remove(i);
                        }
                    }
                    ok
                }
                None => false,
            }
        };
        if !ok {
            // A DataSN, offset or TTT out of sequence. At ErrorRecoveryLevel 0 the command
            // cannot be recovered (RFC 7143 §7.1.4): take what the initiator is already
            // committed to send, solicit nothing more, then fail the command alone.
            tracing::warn!(
                tid = self.tid,
                itt = d.itt,
                datasn = d.datasn,
                offset = d.buffer_offset,
                len,
                "Data-Out out of sequence; failing the command"
            );
            task.refusal = Some(gw_scsi::Response {
                status: gw_scsi::ScsiStatus::CheckCondition,
                sense: Some(gw_scsi::sense::fixed(
                    gw_scsi::sense::key::ABORTED_COMMAND,
                    0x4b,
                    0x00,
                )),
                data: Vec::new(),
            });
            task.want = task.solicit_next.max(task.unsolicited_end).min(task.edtl);
            task.got += len;
            self.advance_data_out(t);
            return;
        }
        if let Some(buf) = task.buf.as_mut() {
            let start = d.buffer_offset as usize;
            buf.as_mut_slice()[start..start + len as usize].copy_from_slice(data);
        }
        task.got += len;
        self.advance_data_out(t);
    }

    pub(super) fn on_task_mgmt(&mut self, c: usize, p: Pdu) {
        let Ok(req) = TaskMgmtRequest::parse(&p.bhs) else {
            self.reject(c, pdu::REJECT_INVALID_PDU_FIELD, &p.bhs);
            return;
        };
        if !self.accept_cmdsn(c, req.immediate, req.cmdsn) {
            return;
        }
        let lun = pdu::lun_from_wire(req.lun);
        let response = match req.function {
            tmf::ABORT_TASK => match self.conns[c].itts.remove(&req.referenced_itt) {
                Some(t) => {
                    self.abort_task(t);
                    tmf::COMPLETE
                }
                None => tmf::NO_TASK,
            },
            tmf::ABORT_TASK_SET
            | tmf::CLEAR_TASK_SET
            | tmf::LOGICAL_UNIT_RESET
            | tmf::TARGET_WARM_RESET
            | tmf::TARGET_COLD_RESET => {
                let whole_target = matches!(
                    req.function,
                    tmf::TARGET_WARM_RESET | tmf::TARGET_COLD_RESET
                );
                // Task set functions act on this session's tasks; resets on every
                // session's (SAM-5 §7.6, §7.7).
                let every_session = matches!(
                    req.function,
                    tmf::LOGICAL_UNIT_RESET | tmf::TARGET_WARM_RESET | tmf::TARGET_COLD_RESET
                );
                let victims: Vec<(usize, u32, usize)> = self
                    .conns
                    .iter()
                    .filter(|(k, _)| every_session || *k == c)
                    .flat_map(|(k, conn)| conn.itts.iter().map(move |(&itt, &t)| (k, itt, t)))
                    .filter(|&(_, _, t)| whole_target || self.tasks[t].lun == lun)
                    .collect();
                for (k, itt, t) in victims {
                    self.conns[k].itts.remove(&itt);
                    self.abort_task(t);
                }
                match req.function {
                    tmf::LOGICAL_UNIT_RESET => self.scsi.reset(Some(lun)),
                    tmf::TARGET_WARM_RESET | tmf::TARGET_COLD_RESET => self.scsi.reset(None),
                    _ => {}
                }
                tmf::COMPLETE
            }
            _ => tmf::NOT_SUPPORTED,
        };
        let conn = &mut self.conns[c];
        let statsn = conn.take_statsn();
        let bhs = TaskMgmtResponse {
            response,
            itt: req.itt,
            statsn,
            exp_cmdsn: conn.exp_cmdsn,
            max_cmdsn: conn.max_cmdsn(),
        }
        .encode();
        conn.queue_pdu(&bhs, &[]);
        self.mark_dirty(c);
    }

    /// Aborts a task already removed from its connection's ITT map: it never answers. If the
    /// backing store still works on it, it lives on until that completes.
    pub(super) fn abort_task(&mut self, t: usize) {
        let task = &mut self.tasks[t];
        task.aborted = true;
        if task.pending == Pending::DataOut {
            let mut task = self.remove_task(t);
            if let Some(buf) = task.buf.take() {
                self.ring.free_buf(buf);
            }
        }
    }

    /// Takes a task out of the table, returning its data-out budget.
    pub(super) fn remove_task(&mut self, t: usize) -> Task {
        let task = self.tasks.remove(t);
        self.data_out_bytes -= task.held_bytes;
        task
    }
}
