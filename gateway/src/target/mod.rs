//! A target thread: one per target, pinned to a core, owning its own io_uring, its sessions,
//! its LUNs and their backing stores. Nothing here is shared with any other thread; the
//! management thread reaches it only through its mailbox.

pub mod aptpl;
mod conn;
mod copy;
mod curve_io;
mod io;
pub mod liveness;
mod provisioning;
mod task;

pub use task::COMMAND_BYTES_MAX;

use std::collections::HashMap;
use std::os::fd::AsRawFd;
use std::thread::JoinHandle;

use gw_uring::{Completion, Mailbox, MailboxSender, Ring, RingOptions};
use slab::Slab;

use crate::admin::wire::AdmErr;
use crate::backing::{Backing, StoreKind};
use crate::msg::{Control, MgmtMsg, TargetMsg, TargetReport};
use crate::stats::TargetStats;
use conn::Conn;
use task::Task;

/// Sessions one target serves at once; logins past it are refused by the management thread.
pub const SESSIONS_PER_TARGET_MAX: usize = 256;

/// How long a target thread keeps polling its ring after the last completion before it
/// sleeps in the kernel.
pub const POLL_BEFORE_SLEEP: std::time::Duration = std::time::Duration::from_micros(50);

/// Most completions in one turn for which the thread still polls before sleeping.
pub const POLL_BATCH_MAX: usize = 2;

/// What a target thread is started with.
#[derive(Debug)]
pub struct TargetSetup {
    /// Target ID.
    pub tid: u32,
    /// Its SCSI personality (LUN 0 controller plus the disk LUs).
    pub scsi: gw_scsi::Target,
    /// Backing stores by LUN.
    pub stores: crate::daemon::LunStores,
    /// Core to pin to.
    pub cpu: Option<usize>,
    /// Shared counters this thread updates (read by the admin side).
    pub stats: std::sync::Arc<TargetStats>,
    /// Where persistent reservations with APTPL are kept (None: not kept).
    pub pr_dir: Option<std::path::PathBuf>,
    /// How idle connections are pinged.
    pub nop: liveness::Nop,
}

/// A running target thread.
#[derive(Debug)]
pub struct TargetHandle {
    /// Target ID.
    pub tid: u32,
    /// Its mailbox.
    pub tx: MailboxSender<TargetMsg>,
    /// The thread.
    pub join: Option<JoinHandle<Option<()>>>,
}

/// Starts the thread `tgt/<tid>`.
pub fn spawn(
    setup: TargetSetup,
    ring_options: RingOptions,
    to_mgmt: MailboxSender<MgmtMsg>,
) -> std::io::Result<TargetHandle> {
    let (tx, inbox) = gw_uring::mailbox::<TargetMsg>()?;
    let tid = setup.tid;
    let cpu = setup.cpu;
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let join = gw_uring::spawn_pinned(format!("tgt/{tid}"), cpu, move || {
        // The ring is created on this thread: SINGLE_ISSUER rings refuse other threads.
        let ring = match Ring::new(&ring_options) {
            Ok(ring) => ring,
            Err(e) => {
                let _ = ready_tx.send(Err(e.to_string()));
                return;
            }
        };
        let curve_sink = match curve_client::CompletionSink::new() {
            Ok(sink) => sink,
            Err(e) => {
                let _ = ready_tx.send(Err(format!(
                    "cannot create the Curve completion eventfd: {e}"
                )));
                return;
            }
        };
        let _ = ready_tx.send(Ok(()));
        let mut thread = TargetThread::new(setup, ring, inbox, to_mgmt, curve_sink);
        thread.run();
    })?;
    match ready_rx.recv() {
        Ok(Ok(())) => Ok(TargetHandle {
            tid,
            tx,
            join: Some(join),
        }),
        Ok(Err(message)) => {
            let _ = join.join();
            Err(std::io::Error::other(format!("target {tid}: {message}")))
        }
        Err(_) => Err(std::io::Error::other(format!(
            "target {tid}: thread ended before its ring was ready"
        ))),
    }
}

/// What a ring token refers to: the kind sits in the top byte, the index below.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Token {
    Mailbox,
    Recv(usize),
    Send(usize),
    Io(usize),
    /// The periodic liveness tick (one per thread).
    Tick,
    /// The Curve completion sink's eventfd.
    Curve,
}

impl Token {
    const KIND_SHIFT: u32 = 56;

    pub(crate) fn encode(self) -> u64 {
        let (kind, index) = match self {
            Token::Mailbox => (1u64, 0usize),
            Token::Recv(i) => (2, i),
            Token::Send(i) => (3, i),
            Token::Io(i) => (4, i),
            Token::Tick => (8, 0),
            Token::Curve => (5, 0),
        };
        (kind << Self::KIND_SHIFT) | index as u64
    }

    pub(crate) fn decode(raw: u64) -> Token {
        let index = (raw & ((1 << Self::KIND_SHIFT) - 1)) as usize;
        match raw >> Self::KIND_SHIFT {
            1 => Token::Mailbox,
            2 => Token::Recv(index),
            3 => Token::Send(index),
            4 => Token::Io(index),
            8 => Token::Tick,
            5 => Token::Curve,
            kind => panic!("ring token of unknown kind {kind}: the op table is corrupt"),
        }
    }
}

/// A LUN's store as the data path sees it.
#[derive(Debug)]
pub(crate) struct Store {
    pub backing: Backing,
    pub block_size: u32,
}

impl Store {
    pub(crate) fn raw_fd(&self) -> Option<i32> {
        match &self.backing.kind {
            StoreKind::File { file, .. } => Some(file.as_raw_fd()),
            StoreKind::Null | StoreKind::Curve { .. } => None,
        }
    }
}

/// The state of one target thread.
pub(crate) struct TargetThread {
    pub tid: u32,
    pub ring: Ring,
    pub scsi: gw_scsi::Target,
    pub stores: HashMap<u64, Store>,
    /// Stores of removed or replaced LUs, kept open until no I/O of their LUN is in flight.
    retired: Vec<(u64, Store)>,
    pub conns: Slab<Conn>,
    pub tasks: Slab<Task>,
    inbox: Mailbox<TargetMsg>,
    pub to_mgmt: MailboxSender<MgmtMsg>,
    /// Connections with output queued since the last flush.
    pub dirty: Vec<usize>,
    pub next_nexus: u64,
    /// Write data held by tasks (see `DATA_OUT_BYTES_MAX`).
    pub data_out_bytes: usize,
    stopping: bool,
    /// Where this target's Curve requests complete, from Curve's threads.
    pub curve_sink: std::sync::Arc<curve_client::CompletionSink>,
    /// Curve requests submitted and not yet completed.
    pub curve_in_flight: usize,
    /// Completions being handled (kept to reuse its allocation).
    curve_done: Vec<curve_client::Completion>,
    pub stats: std::sync::Arc<TargetStats>,
    pr_dir: Option<std::path::PathBuf>,
    /// How idle connections are pinged (changed live by [`Control::SetNop`]).
    pub nop: liveness::Nop,
    /// The armed liveness tick, if any.
    tick: Option<gw_uring::OpId>,
}

impl std::fmt::Debug for TargetThread {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TargetThread")
            .field("tid", &self.tid)
            .field("conns", &self.conns.len())
            .field("tasks", &self.tasks.len())
            .finish()
    }
}

impl TargetThread {
    fn new(
        setup: TargetSetup,
        ring: Ring,
        inbox: Mailbox<TargetMsg>,
        to_mgmt: MailboxSender<MgmtMsg>,
        curve_sink: std::sync::Arc<curve_client::CompletionSink>,
    ) -> TargetThread {
        let stores = setup
            .stores
            .into_iter()
            .map(|(lun, backing, block_size)| {
                (
                    lun,
                    Store {
                        backing,
                        block_size,
                    },
                )
            })
            .collect();
        TargetThread {
            tid: setup.tid,
            ring,
            scsi: setup.scsi,
            stores,
            retired: Vec::new(),
            conns: Slab::new(),
            tasks: Slab::new(),
            inbox,
            to_mgmt,
            dirty: Vec::new(),
            next_nexus: u64::from(setup.tid) << 32,
            data_out_bytes: 0,
            stopping: false,
            curve_sink,
            curve_in_flight: 0,
            curve_done: Vec::new(),
            stats: setup.stats,
            pr_dir: setup.pr_dir,
            nop: setup.nop,
            tick: None,
        }
    }

    fn run(&mut self) {
        let efd = self.inbox.eventfd();
        let watch = self
            .ring
            .watch_eventfd(efd, Token::Mailbox.encode())
            .expect("a fresh ring has room for its mailbox watch");
        let curve_watch = self
            .ring
            .watch_eventfd(self.curve_sink.eventfd(), Token::Curve.encode())
            .expect("a fresh ring has room for the Curve sink watch");
        let _span = tracing::info_span!("target", tid = self.tid).entered();
        let mut completions = Vec::with_capacity(256);
        for lun in self.scsi.luns() {
            self.restore_reservations(lun);
        }
        tracing::info!(tid = self.tid, "target thread running");
        // When work just ended, keep polling the ring for a short while before sleeping: on
        // a loaded host, waking a sleeping thread costs far more than the next request takes
        // to arrive (bench/RESULTS.md, the queue-depth-1 profile).
        let mut busy_until = None::<std::time::Instant>;
        loop {
            self.flush_output();
            if self.tick.is_none() && !self.stopping {
                self.arm_tick();
            }
            if !self.retired.is_empty() {
                self.drop_retired();
            }
            if self.stopping && self.conns.is_empty() && self.tasks.is_empty() {
                break;
            }
            let polling = busy_until.is_some_and(|t| std::time::Instant::now() < t);
            if polling {
                // Give the CPU to anything else runnable here (an initiator, another target).
                std::thread::yield_now();
            }
            if let Err(e) = self.ring.submit_and_wait(if polling { 0 } else { 1 }) {
                panic!("target {}: io_uring submit failed: {e}", self.tid);
            }
            self.ring.reap(&mut completions);
            if completions.is_empty() {
                if !polling {
                    busy_until = None;
                }
                continue;
            }
            // Poll only at low load (a handful of completions per turn): under load the next
            // completions are already queued, and polling would take CPU the initiators need.
            if completions.len() <= POLL_BATCH_MAX && !self.conns.is_empty() {
                busy_until = Some(std::time::Instant::now() + POLL_BEFORE_SLEEP);
            }
            for completion in completions.drain(..) {
                self.dispatch(completion);
            }
            // Counters change only when something completed: not on every polling turn.
            self.stats.publish(self.ring.counters(), self.tasks.len());
        }
        assert_eq!(
            self.data_out_bytes, 0,
            "write data budget leaked with no task left"
        );
        // The mailbox watch is the last op: end it and wait for the kernel to let go, so a
        // deleted target leaves nothing behind.
        let _ = self.ring.cancel(watch);
        if let Some(tick) = self.tick.take() {
            let _ = self.ring.cancel(tick);
        }
        let _ = self.ring.cancel(curve_watch);
        while self.ring.in_flight() > 0 {
            if let Err(e) = self.ring.submit_and_wait(1) {
                tracing::warn!(tid = self.tid, "draining the ring: {e}");
                break;
            }
            self.ring.reap(&mut completions);
            completions.clear();
        }
        self.retired.clear();
        let _ = self.to_mgmt.send(MgmtMsg::TargetStopped { tid: self.tid });
        tracing::info!(
            tid = self.tid,
            curve_wakeups = self.curve_sink.wakeups(),
            "target thread stopped"
        );
    }

    /// Closes retired stores once no task of their LUN has I/O in flight: the kernel may
    /// still be using the file until then.
    fn drop_retired(&mut self) {
        let tasks = &self.tasks;
        self.retired.retain(|(lun, _)| {
            tasks.iter().any(|(_, t)| {
                let uses = t.lun == *lun || t.copy.as_ref().is_some_and(|c| c.touches(*lun));
                uses && t.pending != task::Pending::DataOut
            })
        });
    }

    fn control(&mut self, req: Control) -> Result<TargetReport, AdmErr> {
        match req {
            Control::AddLun { cfg, backing } => {
                let lun = cfg.lun;
                let block_size = cfg.block_size;
                self.scsi.add_lu(cfg).map_err(|e| match e {
                    gw_scsi::ScsiError::LunExists(_) | gw_scsi::ScsiError::LunZero => {
                        AdmErr::LunExists
                    }
                    _ => AdmErr::InvalidRequest,
                })?;
                self.stores.insert(
                    lun,
                    Store {
                        backing,
                        block_size,
                    },
                );
                self.restore_reservations(lun);
                tracing::info!(tid = self.tid, lun, "LUN added");
            }
            Control::RemoveLun { lun } => {
                let status = self.scsi.lu_status(lun).ok_or(AdmErr::NoLun)?;
                if status.prevent_removal {
                    return Err(AdmErr::PreventRemoval);
                }
                self.scsi.remove_lu(lun).map_err(|_| AdmErr::NoLun)?;
                if let Some(store) = self.stores.remove(&lun) {
                    self.retired.push((lun, store));
                }
                tracing::info!(tid = self.tid, lun, "LUN removed");
            }
            Control::UpdateLun {
                cfg,
                online,
                backing,
            } => {
                let lun = cfg.lun;
                self.scsi
                    .reconfigure_lu(cfg, online)
                    .map_err(|_| AdmErr::NoLun)?;
                if let Some(backing) = backing {
                    let block_size = self.stores.get(&lun).map_or(512, |s| s.block_size);
                    let new = Store {
                        backing,
                        block_size,
                    };
                    if let Some(old) = self.stores.insert(lun, new) {
                        self.retired.push((lun, old));
                    }
                }
                tracing::info!(tid = self.tid, lun, "LUN updated");
            }
            Control::SetNop(nop) => {
                self.nop = nop;
                tracing::info!(
                    tid = self.tid,
                    interval_secs = nop.interval_secs,
                    count = nop.count,
                    "NOP-In pings changed"
                );
            }
            Control::Report => {}
        }
        let mut report = TargetReport {
            nop: self.nop,
            ..TargetReport::default()
        };
        for lun in std::iter::once(0).chain(self.scsi.luns()) {
            report.lus.extend(self.scsi.lu_status(lun));
        }
        Ok(report)
    }

    fn dispatch(&mut self, completion: Completion) {
        match completion {
            Completion::Signalled { token } => match Token::decode(token) {
                Token::Curve => self.drain_curve(),
                _ => self.drain_inbox(),
            },
            Completion::Received { token, result } => match Token::decode(token) {
                Token::Recv(c) => self.on_recv(c, result),
                t => panic!("recv completion with token {t:?}"),
            },
            Completion::Sent {
                token,
                result,
                chain,
            } => match Token::decode(token) {
                Token::Send(c) => self.on_sent(c, result, chain),
                t => panic!("send completion with token {t:?}"),
            },
            Completion::Read { token, result, buf } => match Token::decode(token) {
                Token::Io(t) => self.on_read(t, result, buf),
                t => panic!("read completion with token {t:?}"),
            },
            Completion::Written { token, result, buf } => match Token::decode(token) {
                Token::Io(t) => self.on_written(t, result, buf),
                t => panic!("write completion with token {t:?}"),
            },
            Completion::Fallocated { token, result } => match Token::decode(token) {
                Token::Io(t) => self.on_fallocated(t, result),
                t => panic!("fallocate completion with token {t:?}"),
            },
            Completion::Synced { token, result } => match Token::decode(token) {
                Token::Io(t) => self.on_synced(t, result),
                t => panic!("sync completion with token {t:?}"),
            },
            Completion::Timer { token } => match Token::decode(token) {
                Token::Tick => {
                    // The run loop arms the next one.
                    self.tick = None;
                    if !self.stopping {
                        self.on_tick();
                    }
                }
                t => panic!("timer completion with token {t:?}"),
            },
            other => tracing::warn!(tid = self.tid, "unexpected completion {other:?}"),
        }
    }

    /// Arms the next liveness tick. Only one is ever armed, so a completion is never stale
    /// (a connection closed since is simply not among those the tick looks at).
    fn arm_tick(&mut self) {
        assert!(self.tick.is_none(), "a second liveness tick armed");
        match self.ring.timeout(liveness::TICK, Token::Tick.encode()) {
            Ok(op) => self.tick = Some(op),
            // The ring refuses only when its op table is full; the run loop tries again on
            // its next turn, when completions have made room.
            Err(e) => tracing::warn!(tid = self.tid, "cannot arm the liveness tick yet: {e}"),
        }
    }

    fn drain_inbox(&mut self) {
        while let Some(msg) = self.inbox.try_recv() {
            match msg {
                TargetMsg::Adopt(handoff) => {
                    if self.stopping {
                        continue;
                    }
                    self.adopt(*handoff);
                }
                TargetMsg::CloseSession { tsih } => {
                    let found: Vec<usize> = self
                        .conns
                        .iter()
                        .filter(|(_, c)| c.tsih == tsih)
                        .map(|(k, _)| k)
                        .collect();
                    for c in found {
                        let old = &self.conns[c];
                        tracing::info!(
                            tid = self.tid,
                            tsih,
                            initiator = %old.params.initiator_name,
                            peer = %old.peer,
                            "session reinstated: closing the old one"
                        );
                        self.close_conn(c);
                    }
                }
                TargetMsg::Control { seq, req } => {
                    let result = self.control(*req);
                    let _ = self.to_mgmt.send(MgmtMsg::Reply {
                        seq,
                        tid: self.tid,
                        result,
                    });
                }
                TargetMsg::Stop => {
                    self.stopping = true;
                    let all: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
                    for c in all {
                        self.close_conn(c);
                    }
                }
            }
        }
    }
}
