//! A full-feature-phase connection on its target thread: PDUs in, PDUs out.
//!
//! Receive is one multishot recv over the ring's provided buffers feeding a [`PduReader`];
//! output is queued in one [`SendChain`] per connection, and at most one chain is in flight so
//! PDUs never reorder. Each session has exactly one connection (MaxConnections=1), so the
//! session's command window lives here too.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};

use gw_scsi::NexusId;
use gw_uring::{Errno, RecvBuf, SendChain};

use super::liveness::{Due, Liveness};
use super::{TargetThread, Token};
use crate::iscsi::discovery::TextExchange;
use crate::iscsi::params::SessionParams;
use crate::iscsi::pdu::{
    self, Bhs, LogoutRequest, LogoutResponse, NopIn, NopOut, Opcode, Reject, TextRequest,
};
use crate::iscsi::reader::{Digests, PduError, PduReader};
use crate::iscsi::writer;
use crate::msg::{Handoff, MgmtMsg};

/// Commands one session may have in flight; the CmdSN window never offers more.
pub const TASKS_PER_SESSION_MAX: u32 = crate::iscsi::login::COMMAND_WINDOW;
/// The ITT and TTT value meaning "none" (RFC 7143 §11.2.1.5).
pub const RESERVED_TAG: u32 = 0xffff_ffff;

/// Logout reason codes (RFC 7143 §11.14.1).
const LOGOUT_CLOSE_SESSION: u8 = 0;
const LOGOUT_CLOSE_CONNECTION: u8 = 1;
/// Logout response codes (RFC 7143 §11.15.1).
const LOGOUT_OK: u8 = 0;
const LOGOUT_CID_NOT_FOUND: u8 = 1;
const LOGOUT_RECOVERY_UNSUPPORTED: u8 = 2;

/// One connection (and its session).
#[derive(Debug)]
pub(crate) struct Conn {
    pub fd: OwnedFd,
    pub peer: SocketAddr,
    pub reader: PduReader,
    pub params: SessionParams,
    pub digests: Digests,
    pub tsih: u16,
    pub cid: u16,
    pub nexus: NexusId,
    /// Next StatSN to assign.
    pub statsn: u32,
    /// Next CmdSN expected.
    pub exp_cmdsn: u32,
    /// Tasks of this session by ITT.
    pub itts: HashMap<u32, usize>,
    /// Output queued since the last send was submitted.
    pub out: SendChain,
    /// A send chain is in flight.
    pub sending: bool,
    /// The multishot recv is still armed.
    pub recv_live: bool,
    /// Closing: input is ignored, and the connection is freed once nothing is in flight.
    pub closing: bool,
    /// Close once the queued output has left (after a Logout Response).
    pub close_after_send: bool,
    pub next_ttt: u32,
    pub text: TextExchange,
    /// When the initiator was last heard from, and the pings it owes.
    pub liveness: Liveness,
}

impl Conn {
    /// MaxCmdSN as offered now: the window shrinks by each task in flight, so a session never
    /// has more than [`TASKS_PER_SESSION_MAX`] commands, and it never moves backwards.
    pub fn max_cmdsn(&self) -> u32 {
        let free = TASKS_PER_SESSION_MAX.saturating_sub(self.itts.len() as u32);
        self.exp_cmdsn.wrapping_add(free).wrapping_sub(1)
    }

    /// Takes the next StatSN.
    pub fn take_statsn(&mut self) -> u32 {
        let s = self.statsn;
        self.statsn = self.statsn.wrapping_add(1);
        s
    }

    /// Queues a whole PDU whose data is small (copied into the chain).
    pub fn queue_pdu(&mut self, bhs: &Bhs, data: &[u8]) {
        let mut bytes = Vec::with_capacity(pdu::BHS_BYTES + 8 + data.len() + 8);
        writer::encode_pdu(bhs, &[], data, self.digests, &mut bytes);
        self.out.push_bytes(bytes);
    }

    fn allocate_ttt(&mut self) -> u32 {
        self.next_ttt = self.next_ttt.wrapping_add(1);
        if self.next_ttt == RESERVED_TAG {
            self.next_ttt = 1;
        }
        self.next_ttt
    }

    /// A fresh target transfer tag for an R2T.
    pub fn ttt(&mut self) -> u32 {
        self.allocate_ttt()
    }
}

impl TargetThread {
    /// Takes over a connection handed off by the management thread.
    pub(super) fn adopt(&mut self, h: Handoff) {
        let params = h.outcome.params.clone();
        let digests = Digests {
            header: params.header_digest,
            data: params.data_digest,
        };
        let mut reader = PduReader::new(params.max_recv_data_segment_len);
        reader.set_digests(digests);
        reader.push(&h.leftover);
        self.next_nexus += 1;
        let nexus = NexusId(self.next_nexus);
        let initiator_port = gw_scsi::iscsi_initiator_port(&params.initiator_name, h.outcome.isid);
        self.scsi.nexus_added(nexus, &initiator_port);
        let fd_raw = h.fd.as_raw_fd();
        let conn = Conn {
            fd: h.fd,
            peer: h.peer,
            reader,
            digests,
            tsih: h.tsih,
            cid: h.outcome.cid,
            nexus,
            statsn: h.outcome.statsn,
            exp_cmdsn: h.outcome.exp_cmdsn,
            itts: HashMap::new(),
            out: SendChain::new(),
            sending: false,
            recv_live: false,
            closing: false,
            close_after_send: false,
            next_ttt: 0,
            text: TextExchange::new(),
            params,
            liveness: Liveness::new(std::time::Instant::now()),
        };
        tracing::info!(
            tid = self.tid,
            initiator = %conn.params.initiator_name,
            peer = %conn.peer,
            tsih = conn.tsih,
            "session started"
        );
        let key = self.conns.insert(conn);
        self.stats
            .sessions
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        match self.ring.recv_multi(fd_raw, Token::Recv(key).encode()) {
            Ok(_) => self.conns[key].recv_live = true,
            Err(e) => {
                tracing::error!(tid = self.tid, "cannot arm receive: {e}");
                self.close_conn(key);
                return;
            }
        }
        // Commands may already sit in the leftover bytes.
        self.process_input(key);
    }

    pub(super) fn on_recv(&mut self, c: usize, result: Result<Option<RecvBuf>, Errno>) {
        match result {
            Ok(Some(buf)) => {
                let conn = &mut self.conns[c];
                if !conn.closing {
                    conn.reader.push(self.ring.recv_data(&buf));
                    conn.liveness.on_bytes(std::time::Instant::now());
                }
                self.ring.recycle(buf);
                self.process_input(c);
            }
            Ok(None) => {
                self.conns[c].recv_live = false;
                tracing::debug!(tid = self.tid, "connection closed by the initiator");
                self.close_conn(c);
            }
            Err(e) => {
                self.conns[c].recv_live = false;
                if !self.conns[c].closing {
                    tracing::info!(
                        tid = self.tid,
                        "receive failed: {e}; closing the connection"
                    );
                }
                self.close_conn(c);
            }
        }
    }

    /// Handles every complete PDU buffered on a connection. Data-Out PDUs, the bulk of a
    /// write, are handled where the reader holds them; the others are taken out first.
    fn process_input(&mut self, c: usize) {
        // The reader is moved out while its PDUs are handled, so their data can be borrowed
        // while the handlers change the rest of the thread.
        let mut reader = std::mem::replace(&mut self.conns[c].reader, PduReader::new(0));
        loop {
            if self.conns.get(c).is_none_or(|conn| conn.closing) {
                break;
            }
            match reader.next_pdu_ref() {
                Ok(Some(pdu)) => {
                    self.conns[c].liveness.on_pdu(std::time::Instant::now());
                    if pdu.bhs.opcode() == Some(Opcode::DataOut) {
                        self.on_data_out(c, &pdu.bhs, pdu.data);
                    } else {
                        let owned = pdu.to_owned();
                        self.on_pdu(c, owned);
                    }
                    self.mark_dirty(c);
                }
                Ok(None) => break,
                Err(e) => self.on_framing_error(c, e),
            }
        }
        if let Some(conn) = self.conns.get_mut(c) {
            conn.reader = reader;
        }
    }

    fn on_framing_error(&mut self, c: usize, e: PduError) {
        match e {
            PduError::DataDigest { bhs, .. } => {
                // RFC 7143 §7.8: a data digest error discards the PDU; at ErrorRecoveryLevel 0
                // the command it belongs to cannot complete, so tell the initiator.
                tracing::warn!(tid = self.tid, "data digest error; rejecting the PDU");
                self.reject(c, pdu::REJECT_DATA_DIGEST, &bhs);
            }
            PduError::BadOpcode { bhs, .. } => {
                self.reject(c, pdu::REJECT_COMMAND_NOT_SUPPORTED, &bhs);
            }
            other => {
                tracing::warn!(tid = self.tid, peer = %self.conns[c].peer, "protocol error: {other}; closing the connection");
                self.close_conn(c);
            }
        }
    }

    /// Queues a Reject carrying the offending header.
    pub(super) fn reject(&mut self, c: usize, reason: u8, bad: &Bhs) {
        let conn = &mut self.conns[c];
        let statsn = conn.take_statsn();
        let bhs = Reject {
            reason,
            statsn,
            exp_cmdsn: conn.exp_cmdsn,
            max_cmdsn: conn.max_cmdsn(),
            data_segment_len: pdu::BHS_BYTES as u32,
        }
        .encode();
        conn.queue_pdu(&bhs, &bad.0);
        self.mark_dirty(c);
    }

    fn on_pdu(&mut self, c: usize, pdu: crate::iscsi::reader::Pdu) {
        let opcode = match pdu.bhs.opcode() {
            Some(op) => op,
            None => {
                self.reject(c, pdu::REJECT_COMMAND_NOT_SUPPORTED, &pdu.bhs);
                return;
            }
        };
        match opcode {
            Opcode::ScsiCommand => self.on_scsi_command(c, pdu),
            Opcode::DataOut => self.on_data_out(c, &pdu.bhs, &pdu.data),
            Opcode::NopOut => self.on_nop_out(c, pdu),
            Opcode::TextReq => self.on_text(c, pdu),
            Opcode::LogoutReq => self.on_logout(c, pdu),
            Opcode::TaskMgmtReq => self.on_task_mgmt(c, pdu),
            _ => self.reject(c, pdu::REJECT_COMMAND_NOT_SUPPORTED, &pdu.bhs),
        }
    }

    /// Checks a non-data PDU's CmdSN against the window and advances it. Returns false when the
    /// PDU must be silently ignored (RFC 7143 §4.2.2.1).
    pub(super) fn accept_cmdsn(&mut self, c: usize, immediate: bool, cmdsn: u32) -> bool {
        let conn = &mut self.conns[c];
        if immediate {
            return true;
        }
        if cmdsn != conn.exp_cmdsn {
            tracing::debug!(
                tid = self.tid,
                cmdsn,
                exp = conn.exp_cmdsn,
                "CmdSN outside the window; ignored"
            );
            return false;
        }
        conn.exp_cmdsn = conn.exp_cmdsn.wrapping_add(1);
        true
    }

    fn on_nop_out(&mut self, c: usize, p: crate::iscsi::reader::Pdu) {
        let Ok(nop) = NopOut::parse(&p.bhs) else {
            self.reject(c, pdu::REJECT_INVALID_PDU_FIELD, &p.bhs);
            return;
        };
        if !self.accept_cmdsn(c, nop.immediate, nop.cmdsn) {
            return;
        }
        if nop.itt == RESERVED_TAG {
            // A reply to our own NOP-In (any whole PDU already counted as one), or a ping
            // that wants no answer.
            return;
        }
        let conn = &mut self.conns[c];
        let statsn = conn.take_statsn();
        let data_len = p
            .data
            .len()
            .min(conn.params.max_xmit_data_segment_len as usize);
        let bhs = NopIn {
            lun: nop.lun,
            itt: nop.itt,
            ttt: RESERVED_TAG,
            statsn,
            exp_cmdsn: conn.exp_cmdsn,
            max_cmdsn: conn.max_cmdsn(),
            data_segment_len: data_len as u32,
        }
        .encode();
        conn.queue_pdu(&bhs, &p.data[..data_len]);
    }

    fn on_text(&mut self, c: usize, p: crate::iscsi::reader::Pdu) {
        let Ok(req) = TextRequest::parse(&p.bhs) else {
            self.reject(c, pdu::REJECT_INVALID_PDU_FIELD, &p.bhs);
            return;
        };
        if !self.accept_cmdsn(c, req.immediate, req.cmdsn) {
            return;
        }
        let targets = self.discovery_view(c);
        let conn = &mut self.conns[c];
        let statsn = conn.take_statsn();
        let exp_cmdsn = conn.exp_cmdsn;
        let max_cmdsn = conn.max_cmdsn();
        let max_xmit = conn.params.max_xmit_data_segment_len;
        match conn.text.on_request(
            &req, &p.data, &targets, max_xmit, statsn, exp_cmdsn, max_cmdsn,
        ) {
            Ok((bhs, data)) => conn.queue_pdu(&bhs, &data),
            Err(e) => {
                tracing::warn!(tid = self.tid, "text request refused: {e}");
                self.reject(c, pdu::REJECT_PROTOCOL_ERROR, &p.bhs);
            }
        }
    }

    /// What SendTargets answers inside a normal session: this target only, on the portal the
    /// session came in through.
    fn discovery_view(&self, c: usize) -> Vec<crate::iscsi::discovery::DiscoveredTarget> {
        let conn = &self.conns[c];
        let local = socket2::SockRef::from(&conn.fd)
            .local_addr()
            .ok()
            .and_then(|a| a.as_socket());
        let name = conn.params.target_name.clone().unwrap_or_default();
        vec![crate::iscsi::discovery::DiscoveredTarget {
            name,
            portals: local
                .map(|a| vec![(a, conn.params.target_portal_group_tag)])
                .unwrap_or_default(),
        }]
    }

    fn on_logout(&mut self, c: usize, p: crate::iscsi::reader::Pdu) {
        let Ok(req) = LogoutRequest::parse(&p.bhs) else {
            self.reject(c, pdu::REJECT_INVALID_PDU_FIELD, &p.bhs);
            return;
        };
        if !self.accept_cmdsn(c, req.immediate, req.cmdsn) {
            return;
        }
        let conn = &mut self.conns[c];
        let response = match req.reason {
            LOGOUT_CLOSE_SESSION => LOGOUT_OK,
            LOGOUT_CLOSE_CONNECTION if req.cid == conn.cid => LOGOUT_OK,
            LOGOUT_CLOSE_CONNECTION => LOGOUT_CID_NOT_FOUND,
            _ => LOGOUT_RECOVERY_UNSUPPORTED,
        };
        let statsn = conn.take_statsn();
        let bhs = LogoutResponse {
            response,
            itt: req.itt,
            statsn,
            exp_cmdsn: conn.exp_cmdsn,
            max_cmdsn: conn.max_cmdsn(),
            time2wait: 0,
            time2retain: 0,
        }
        .encode();
        conn.queue_pdu(&bhs, &[]);
        if response == LOGOUT_OK {
            tracing::info!(tid = self.tid, initiator = %conn.params.initiator_name, peer = %conn.peer, tsih = conn.tsih, "logout");
            conn.close_after_send = true;
            conn.closing = true;
        }
    }

    /// The liveness tick: pings quiet connections and closes those that stopped answering.
    pub(super) fn on_tick(&mut self) {
        let now = std::time::Instant::now();
        let nop = self.nop;
        let keys: Vec<usize> = self
            .conns
            .iter()
            .filter(|(_, conn)| !conn.closing)
            .map(|(c, _)| c)
            .collect();
        for c in keys {
            let conn = &mut self.conns[c];
            let partial = conn.reader.buffered_bytes() > 0;
            match conn.liveness.tick(now, nop, partial) {
                Due::Nothing => {}
                Due::Ping => self.ping(c),
                Due::Unanswered => {
                    tracing::warn!(
                        tid = self.tid,
                        initiator = %conn.params.initiator_name,
                        peer = %conn.peer,
                        tsih = conn.tsih,
                        pings = conn.liveness.unanswered(),
                        "initiator stopped answering NOP-In pings; closing the connection"
                    );
                    self.close_conn(c);
                }
                Due::Stalled => {
                    tracing::warn!(
                        tid = self.tid,
                        peer = %conn.peer,
                        tsih = conn.tsih,
                        buffered = conn.reader.buffered_bytes(),
                        "a PDU stopped half way; closing the connection"
                    );
                    self.close_conn(c);
                }
            }
        }
    }

    /// Queues a NOP-In ping (RFC 7143 §11.19): a fresh TTT the initiator must echo in a
    /// NOP-Out, no ITT, and the next StatSN without taking it.
    fn ping(&mut self, c: usize) {
        let conn = &mut self.conns[c];
        let ttt = conn.allocate_ttt();
        let bhs = NopIn {
            lun: [0; 8],
            itt: RESERVED_TAG,
            ttt,
            statsn: conn.statsn,
            exp_cmdsn: conn.exp_cmdsn,
            max_cmdsn: conn.max_cmdsn(),
            data_segment_len: 0,
        }
        .encode();
        conn.queue_pdu(&bhs, &[]);
        tracing::debug!(tid = self.tid, tsih = conn.tsih, ttt, "NOP-In ping");
        self.mark_dirty(c);
    }

    pub(super) fn mark_dirty(&mut self, c: usize) {
        self.dirty.push(c);
    }

    /// Submits queued output: one send chain per connection at a time.
    pub(super) fn flush_output(&mut self) {
        let mut dirty = std::mem::take(&mut self.dirty);
        dirty.sort_unstable();
        dirty.dedup();
        for &c in &dirty {
            let Some(conn) = self.conns.get_mut(c) else {
                continue;
            };
            if conn.sending || conn.out.is_empty() {
                continue;
            }
            let chain = std::mem::replace(&mut conn.out, SendChain::new());
            tracing::trace!(tid = self.tid, bytes = chain.len_bytes(), "send");
            let fd = conn.fd.as_raw_fd();
            match self.ring.send(fd, Token::Send(c).encode(), chain) {
                Ok(_) => self.conns[c].sending = true,
                Err(e) => {
                    tracing::error!(tid = self.tid, "cannot submit a send: {e}");
                    self.close_conn(c);
                }
            }
        }
        dirty.clear();
        self.dirty = dirty;
    }

    pub(super) fn on_sent(&mut self, c: usize, result: Result<usize, Errno>, mut chain: SendChain) {
        for buf in chain.clear() {
            self.ring.free_buf(buf);
        }
        let conn = &mut self.conns[c];
        conn.sending = false;
        if let Err(e) = result {
            if !conn.closing {
                tracing::info!(tid = self.tid, "send failed: {e}; closing the connection");
            }
            // The peer is gone: queued output can never be delivered.
            for buf in conn.out.clear() {
                self.ring.free_buf(buf);
            }
            self.close_conn(c);
            return;
        }
        if conn.close_after_send && conn.out.is_empty() {
            self.close_conn(c);
            return;
        }
        if !conn.out.is_empty() {
            self.mark_dirty(c);
        }
        self.maybe_free_conn(c);
    }

    /// Starts closing a connection: stop reading, shut the socket so the armed receive ends,
    /// abort its tasks. It is freed when its last op completes.
    pub(super) fn close_conn(&mut self, c: usize) {
        let Some(conn) = self.conns.get_mut(c) else {
            return;
        };
        conn.closing = true;
        let _ = socket2::SockRef::from(&conn.fd).shutdown(std::net::Shutdown::Both);
        let itts: Vec<usize> = conn.itts.drain().map(|(_, t)| t).collect();
        for t in itts {
            self.abort_task(t);
        }
        self.maybe_free_conn(c);
    }

    /// Frees a closing connection once the kernel holds nothing of it.
    pub(super) fn maybe_free_conn(&mut self, c: usize) {
        let Some(conn) = self.conns.get(c) else {
            return;
        };
        if !conn.closing || conn.recv_live || conn.sending {
            return;
        }
        if self.tasks.iter().any(|(_, t)| t.conn == c) {
            return;
        }
        let mut conn = self.conns.remove(c);
        for buf in conn.out.clear() {
            self.ring.free_buf(buf);
        }
        self.scsi.nexus_removed(conn.nexus);
        self.stats
            .sessions
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        tracing::info!(tid = self.tid, initiator = %conn.params.initiator_name, tsih = conn.tsih, "session ended");
        let _ = self.to_mgmt.send(MgmtMsg::SessionClosed {
            tid: self.tid,
            tsih: conn.tsih,
        });
    }
}
