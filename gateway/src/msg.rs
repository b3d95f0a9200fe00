//! Messages between the management thread and the target threads.
//!
//! Nothing is shared between threads but these messages: a logged-in connection moves to its
//! target thread as a [`Handoff`], control requests go the same way, and target threads tell
//! the management thread when a session has ended so its registry stays true.

use std::net::SocketAddr;
use std::os::fd::OwnedFd;

use crate::backing::Backing;
use crate::iscsi::login::LoginOutcome;

/// A connection that finished its login and enters full-feature phase on a target thread.
#[derive(Debug)]
pub struct Handoff {
    /// The connection's socket; the management ring has nothing armed on it any more.
    pub fd: OwnedFd,
    /// The initiator's address.
    pub peer: SocketAddr,
    /// Negotiated parameters and the session's identity.
    pub outcome: LoginOutcome,
    /// The session's TSIH as the management thread assigned it.
    pub tsih: u16,
    /// Bytes the management thread read past the last Login PDU.
    pub leftover: Vec<u8>,
}

/// A request to a target thread.
#[derive(Debug)]
pub enum TargetMsg {
    /// Serve this connection.
    Adopt(Box<Handoff>),
    /// Close the session with this TSIH (reinstatement by a new login with the same ISID).
    CloseSession {
        /// The session to close.
        tsih: u16,
    },
    /// Close every connection, drain what is in flight, and end the thread (which then
    /// reports [`MgmtMsg::TargetStopped`]).
    Stop,
    /// A management request; answered by [`MgmtMsg::Reply`] with the same `seq`.
    Control {
        /// Matches the reply to the request.
        seq: u64,
        /// What to do (boxed: LU configurations are large).
        req: Box<Control>,
    },
}

/// A management request to a target thread.
#[derive(Debug)]
pub enum Control {
    /// Add a disk LU served by `backing`.
    AddLun {
        /// Its SCSI configuration.
        cfg: gw_scsi::LuConfig,
        /// Its store, opened by the management thread.
        backing: Backing,
    },
    /// Remove a disk LU (refused while some nexus prevents medium removal).
    RemoveLun {
        /// The LUN.
        lun: u64,
    },
    /// Change a disk LU's identity and flags; with a new store when it must be reopened
    /// (a read-only LU made writable).
    UpdateLun {
        /// The new configuration (capacity and block size are kept).
        cfg: gw_scsi::LuConfig,
        /// Online (medium present).
        online: bool,
        /// A replacement store.
        backing: Option<Backing>,
    },
    /// Ping idle connections with this policy from now on.
    SetNop(crate::target::liveness::Nop),
    /// Report the LUs' state.
    Report,
}

/// What a target thread reports of itself.
#[derive(Debug, Default)]
pub struct TargetReport {
    /// Every LU, LUN 0 first.
    pub lus: Vec<gw_scsi::LuStatus>,
    /// How idle connections are pinged.
    pub nop: crate::target::liveness::Nop,
}

/// A report from a target thread (or the signal watcher) to the management thread.
#[derive(Debug)]
pub enum MgmtMsg {
    /// A session of this target has ended; its TSIH is free again.
    SessionClosed {
        /// Target ID.
        tid: u32,
        /// The session's TSIH.
        tsih: u16,
    },
    /// A signal arrived (SIGTERM, SIGINT: shut down).
    Signal(i32),
    /// The answer to a [`TargetMsg::Control`].
    Reply {
        /// The request's `seq`.
        seq: u64,
        /// The target that answers.
        tid: u32,
        /// What happened.
        result: Result<TargetReport, crate::admin::wire::AdmErr>,
    },
    /// A target thread has drained everything after [`TargetMsg::Stop`] and is ending.
    TargetStopped {
        /// Target ID.
        tid: u32,
    },
}
