//! Curve LUNs on the data path. A backing read, write or flush of a Curve LUN is submitted to
//! its volume without blocking; Curve answers on its own threads into this target's
//! completion sink, whose eventfd the ring keeps a read posted on (`Token::Curve`). Draining
//! the sink completes the tasks through the same `on_read` / `on_written` / `on_synced` as
//! the file path, so sense data, residuals and aborted tasks are handled in one place.
//!
//! Buffers: a request owns its `IoBuf` from submission to its single completion, which hands
//! it back; an aborted or reset task therefore keeps its buffer alive until Curve is done
//! with it (the task stays in the table, marked aborted, until that completion arrives). A
//! volume that never answers leaves only its own tasks waiting: the target thread never
//! blocks on Curve.

use curve_client::{Op, Request};
use gw_uring::{Errno, IoBuf};

use super::TargetThread;
use crate::backing::StoreKind;

/// INVALID COMMAND OPERATION CODE (SPC-4 table F.2), for commands Curve LUNs do not serve.
const INVALID_COMMAND_OPCODE: (u8, u8, u8) = (0x05, 0x20, 0x00);

impl TargetThread {
    /// Whether `lun` is served by a Curve volume.
    pub(super) fn is_curve(&self, lun: u64) -> bool {
        self.stores
            .get(&lun)
            .is_some_and(|s| matches!(s.backing.kind, StoreKind::Curve { .. }))
    }

    /// Submits task `t`'s backing I/O to its LUN's Curve volume; the task's `pending` state
    /// is already set. The answer comes back through [`Self::drain_curve`].
    pub(super) fn curve_submit(
        &mut self,
        t: usize,
        op: Op,
        offset: u64,
        len: usize,
        buf: Option<IoBuf>,
    ) {
        let lun = self.tasks[t].lun;
        let Some(StoreKind::Curve { volume }) = self.stores.get(&lun).map(|s| &s.backing.kind)
        else {
            panic!("Curve I/O for LUN {lun}, which is not a Curve LUN");
        };
        self.curve_in_flight += 1;
        volume.submit(
            Request {
                token: t as u64,
                op,
                offset,
                len,
                buf,
            },
            &self.curve_sink,
        );
    }

    /// COMPARE AND WRITE is done synchronously on file LUNs to make it atomic; a Curve
    /// volume cannot be read without blocking, so it is refused.
    pub(super) fn curve_refuse(&mut self, t: usize) {
        let (key, asc, ascq) = INVALID_COMMAND_OPCODE;
        let response = gw_scsi::Response {
            status: gw_scsi::ScsiStatus::CheckCondition,
            sense: Some(gw_scsi::sense::fixed(key, asc, ascq)),
            data: Vec::new(),
        };
        self.finish_task(t, response, None);
    }

    /// Completes every task whose Curve request has been answered.
    pub(super) fn drain_curve(&mut self) {
        let mut done = std::mem::take(&mut self.curve_done);
        self.curve_sink.drain(&mut done);
        for c in done.drain(..) {
            let t = c.token as usize;
            assert!(
                self.curve_in_flight > 0 && self.tasks.contains(t),
                "Curve completion for task {t} with none in flight: the sink answered twice"
            );
            self.curve_in_flight -= 1;
            let result = c.result.map_err(|e| {
                tracing::warn!(tid = self.tid, lun = self.tasks[t].lun, op = ?c.op, "Curve I/O failed: {e}");
                Errno(e.errno())
            });
            match c.op {
                Op::Read => {
                    let buf = c.buf.expect("a Curve read hands its buffer back");
                    self.on_read(t, result, buf);
                }
                Op::Write => {
                    let buf = c.buf.expect("a Curve write hands its buffer back");
                    self.on_written(t, result, buf);
                }
                Op::Flush | Op::Discard => self.on_synced(t, result.map(|_| ())),
            }
        }
        self.curve_done = done;
    }
}
