//! The admin socket on the management thread: accepting tgtadm clients, reading one request
//! each, running it against the management state and the target threads, and answering.
//!
//! Requests that only touch what the management thread owns (ACLs, accounts, iSCSI keys,
//! portals) are answered at once. Requests that touch a target thread's LUs (add, remove,
//! update, and `show`, which reports their live state) go to that thread as a
//! [`TargetMsg::Control`]; the client waits until every thread involved has replied. Target
//! threads are never blocked on, and no state is shared with them.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{File, OpenOptions};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::sync::Arc;

use gw_uring::{Errno, OpId, RecvBuf, SendChain};

use super::show::{self, LunView, NexusView, TargetView};
use super::wire::{self, AdmErr, Mode, Op, Request, GLOBAL_TID, NO_LUN, REQ_BYTES};
use crate::backing::Backing;
use crate::config::{BsType, LunConf, LunSettings};
use crate::iscsi::chap::Account;
use crate::iscsi::params::TargetLimits;
use crate::mgmt::{AddressRule, LunRecord, Mgmt, TargetEntry, Token, PORTAL_GROUP_TAG};
use crate::msg::{Control, TargetMsg, TargetReport};
use crate::stats::TargetStats;
use crate::target::liveness::Nop;
use crate::target::{self, TargetSetup};

/// Admin clients connected at once; more are closed at accept.
pub const ADMIN_CONNS_MAX: usize = 64;
/// Accounts the daemon holds.
pub const ACCOUNTS_MAX: usize = 1024;
/// Where tgt puts its admin socket when `TGT_IPC_SOCKET` is not set.
pub const DEFAULT_SOCKET_BASE: &str = "/var/run/tgtd/socket";

/// The socket path for a control port: `$TGT_IPC_SOCKET.<port>` when that variable is set
/// (as tgtadm reads it), else `/var/run/tgtd/socket.<port>`.
pub fn socket_path(control_port: u16) -> PathBuf {
    let base = std::env::var_os("TGT_IPC_SOCKET")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET_BASE));
    let mut path = base.into_os_string();
    path.push(format!(".{control_port}"));
    PathBuf::from(path)
}

/// Why the admin socket could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum AdminSocketError {
    /// The directory or lock file could not be created or opened.
    #[error("cannot create the admin socket {path}: {source}; run as root, or set TGT_IPC_SOCKET to a writable path prefix")]
    Io {
        /// The path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Another daemon holds the lock.
    #[error("control port {port} is in use: another tgtd or gatewayd holds {lock}; stop it or pick another --control-port")]
    InUse {
        /// The control port.
        port: u16,
        /// The lock file.
        lock: PathBuf,
    },
}

/// Whether a daemon answers on `path` (an `lld show` within a second).
fn socket_answers(path: &std::path::Path) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::os::unix::net::UnixStream::connect(path) else {
        return false;
    };
    let timeout = Some(std::time::Duration::from_secs(1));
    if s.set_read_timeout(timeout).is_err() || s.set_write_timeout(timeout).is_err() {
        return false;
    }
    let req = Request::new(Mode::Lld, Op::Show).encode();
    let mut header = [0u8; wire::RSP_BYTES];
    s.write_all(&req).is_ok() && s.read_exact(&mut header).is_ok()
}

/// The listening admin socket and its lock file.
#[derive(Debug)]
pub struct AdminSocket {
    /// The listener.
    pub listener: UnixListener,
    /// Its path.
    pub path: PathBuf,
    _lock: File,
}

impl AdminSocket {
    /// Locks `<socket>.lock` (as tgtd does, so two daemons never share a control port) and
    /// listens on the socket. Anyone may connect; only the daemon's own user (root) is served,
    /// by the peer credentials of each connection, and others get an error reply.
    pub fn bind(control_port: u16) -> Result<AdminSocket, AdminSocketError> {
        let path = socket_path(control_port);
        let io = |path: &PathBuf| {
            let path = path.clone();
            move |source| AdminSocketError::Io { path, source }
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io(&dir.to_path_buf()))?;
        }
        let mut lock_path = path.clone().into_os_string();
        lock_path.push(".lock");
        let lock_path = PathBuf::from(lock_path);
        let lock = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(io(&lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(AdminSocketError::InUse {
                    port: control_port,
                    lock: lock_path,
                })
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(&lock_path)(e)),
        }
        // tgtd locks with lockf, which does not see our lock: a socket that still answers a
        // request belongs to a live daemon, and must not be taken over.
        if socket_answers(&path) {
            return Err(AdminSocketError::InUse {
                port: control_port,
                lock: lock_path,
            });
        }
        // A socket file left by a daemon that ended: nobody serves it now.
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&path)(e)),
        }
        let listener = UnixListener::bind(&path).map_err(io(&path))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666))
            .map_err(io(&path))?;
        Ok(AdminSocket {
            listener,
            path,
            _lock: lock,
        })
    }
}

// The socket file stays when the daemon exits, as tgtd's does: tgtadm waits after
// `system delete` until connecting is refused, and a missing file would never refuse.

/// The daemon's effective user ID (the owner of /proc/self), the only one it serves.
fn daemon_uid() -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").map_or(0, |m| m.uid())
}

/// The connection of a pending request made by the daemon itself (a reload).
pub(crate) const NO_CONN: usize = usize::MAX;

/// One admin client.
#[derive(Debug)]
pub(crate) struct AdminConn {
    fd: OwnedFd,
    input: Vec<u8>,
    recv: Option<OpId>,
    sending: bool,
    /// The request has been read (more input is ignored).
    answered: bool,
    closing: bool,
    /// `system delete`: stop the daemon once the answer has left.
    shutdown_after: bool,
    /// The client's user ID (SO_PEERCRED), when the kernel told it.
    peer_uid: Option<u32>,
}

/// A request waiting for target threads.
#[derive(Debug)]
pub(crate) struct PendingAdmin {
    pub(crate) conn: usize,
    pub(crate) kind: PendingKind,
}

#[derive(Debug)]
pub(crate) enum PendingKind {
    /// `show` of every target: waiting for these targets' reports.
    ShowTargets {
        waiting: BTreeSet<u32>,
        reports: BTreeMap<u32, TargetReport>,
    },
    /// A LUN was sent to its thread; record it on success.
    LunAdd { tid: u32, record: Box<LunRecord> },
    /// A LUN removal.
    LunRemove { tid: u32, lun: u64 },
    /// A LUN update; record the new state on success.
    LunUpdate { tid: u32, record: Box<LunRecord> },
    /// A target thread is stopping; answer when it has.
    TargetStop { tid: u32 },
    /// New NOP-In settings for a target thread; answer once it applies them.
    NopUpdate {
        tid: u32,
        nop: crate::target::liveness::Nop,
    },
}

/// What running a request leads to.
enum Flow {
    /// Answer now.
    Reply(Result<String, AdmErr>),
    /// Answer when the pending request completes.
    Wait(PendingKind),
}

fn bool_param(value: &str) -> Result<bool, AdmErr> {
    match value {
        "1" | "on" | "yes" | "Yes" => Ok(true),
        "0" | "off" | "no" | "No" => Ok(false),
        _ => Err(AdmErr::InvalidRequest),
    }
}

/// The WCE bit of a caching mode page given as tgt writes mode pages
/// (`PAGE:SUBPAGE:LENGTH:BYTE...`, bytes from byte 2 of the page on; tgt-admin's
/// `write-cache off` sends `8:0:18:0x10:...`). Other pages are not settable here.
fn caching_page_wce(text: &str) -> Result<bool, AdmErr> {
    let fields: Vec<u32> = text
        .split(':')
        .map(|f| match f.strip_prefix("0x") {
            Some(hex) => u32::from_str_radix(hex, 16),
            None => f.parse(),
        })
        .collect::<Result<_, _>>()
        .map_err(|_| AdmErr::InvalidRequest)?;
    match fields.as_slice() {
        [8, 0, _len, flags, ..] => Ok(flags & 0x04 != 0),
        _ => {
            tracing::warn!(
                mode_page = text,
                "admin: only the caching page (8) can be set"
            );
            Err(AdmErr::UnknownParam)
        }
    }
}

fn ascii_field(value: &str, max: usize) -> Result<String, AdmErr> {
    if value.len() > max || !value.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        tracing::warn!(
            value,
            max,
            "admin: value must be printable ASCII of at most {max} characters"
        );
        return Err(AdmErr::InvalidRequest);
    }
    Ok(value.to_string())
}

impl Mgmt {
    /// Arms the multishot accept on the admin socket.
    pub(crate) fn admin_listen(&mut self) -> Result<(), gw_uring::RingError> {
        if let Some(admin) = &self.admin {
            self.admin_accept = Some(
                self.ring
                    .accept_multi(admin.listener.as_raw_fd(), Token::AdminAccept.encode())?,
            );
        }
        Ok(())
    }

    pub(crate) fn on_admin_accept(&mut self, result: Result<OwnedFd, Errno>) {
        let fd = match result {
            Ok(fd) => fd,
            Err(e) => {
                tracing::warn!("admin socket: accept failed: {e}");
                return;
            }
        };
        if self.admin_conns.len() >= ADMIN_CONNS_MAX {
            tracing::warn!("admin socket: {ADMIN_CONNS_MAX} clients already; refusing one");
            return;
        }
        let raw = fd.as_raw_fd();
        let peer_uid = gw_uring::peer_uid(std::os::fd::AsFd::as_fd(&fd)).ok();
        let c = self.admin_conns.insert(AdminConn {
            fd,
            input: Vec::new(),
            recv: None,
            sending: false,
            answered: false,
            closing: false,
            shutdown_after: false,
            peer_uid,
        });
        match self.ring.recv_multi(raw, Token::AdminRecv(c).encode()) {
            Ok(op) => self.admin_conns[c].recv = Some(op),
            Err(e) => {
                tracing::error!("admin socket: cannot arm a receive: {e}");
                self.admin_conns.remove(c);
            }
        }
    }

    pub(crate) fn on_admin_recv(&mut self, c: usize, result: Result<Option<RecvBuf>, Errno>) {
        let buf = match result {
            Ok(Some(buf)) => buf,
            Ok(None) | Err(_) => {
                self.admin_conns[c].recv = None;
                if !self.admin_conns[c].answered {
                    self.admin_close(c);
                }
                self.admin_maybe_free(c);
                return;
            }
        };
        let conn = &mut self.admin_conns[c];
        if !conn.answered {
            conn.input.extend_from_slice(self.ring.recv_data(&buf));
        }
        self.ring.recycle(buf);
        let conn = &mut self.admin_conns[c];
        if conn.answered || conn.input.len() < REQ_BYTES {
            return;
        }
        let header: [u8; REQ_BYTES] = conn.input[..REQ_BYTES].try_into().expect("length checked");
        let body_len = match Request::body_len(&header) {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!("admin socket: bad request: {e}");
                conn.answered = true;
                conn.input = Vec::new();
                self.admin_reply(c, Err(AdmErr::InvalidRequest));
                return;
            }
        };
        if conn.input.len() < REQ_BYTES + body_len {
            return;
        }
        conn.answered = true;
        let req = Request::decode(&header, &conn.input[REQ_BYTES..REQ_BYTES + body_len]);
        conn.input = Vec::new();
        let own_uid = daemon_uid();
        match req {
            Ok(req) if self.admin_conns[c].peer_uid != Some(own_uid) => {
                tracing::warn!(
                    peer_uid = ?self.admin_conns[c].peer_uid,
                    mode = ?req.mode,
                    op = ?req.op,
                    "admin request refused: only user {own_uid} may manage gatewayd"
                );
                self.admin_reply(c, Err(AdmErr::InvalidRequest));
            }
            Ok(req) => self.admin_run(c, req),
            Err(e) => {
                tracing::warn!("admin socket: bad request: {e}");
                self.admin_reply(c, Err(AdmErr::InvalidRequest));
            }
        }
    }

    fn admin_run(&mut self, c: usize, req: Request) {
        tracing::debug!(?req, "admin request");
        let flow = self.admin_execute(&req);
        match flow {
            Flow::Reply(result) => {
                if let Err(e) = &result {
                    tracing::info!(mode = ?req.mode, op = ?req.op, tid = req.tid, "admin request refused: {e}");
                }
                let shutdown = result.is_ok() && req.mode == Mode::System && req.op == Op::Delete;
                self.admin_reply(c, result);
                if shutdown {
                    tracing::info!("system delete: shutting down");
                    if let Some(conn) = self.admin_conns.get_mut(c) {
                        conn.shutdown_after = true;
                    }
                }
            }
            Flow::Wait(kind) => {
                self.next_seq += 1;
                let seq = self.next_seq;
                self.pending.insert(seq, PendingAdmin { conn: c, kind });
                self.pending_start(seq);
            }
        }
    }

    /// Sends what a just-registered pending request needs to the target threads.
    pub(crate) fn pending_start(&mut self, seq: u64) {
        let Some(p) = self.pending.get_mut(&seq) else {
            return;
        };
        let msg = match &mut p.kind {
            PendingKind::ShowTargets { waiting, .. } => {
                let tids: Vec<u32> = waiting.iter().copied().collect();
                for tid in tids {
                    self.send_control(seq, tid, Control::Report);
                }
                None
            }
            PendingKind::TargetStop { tid } => {
                let tid = *tid;
                let Some(i) = self.targets.iter().position(|t| t.tid == tid) else {
                    self.on_control_reply(seq, tid, Err(AdmErr::NoTarget));
                    return;
                };
                let entry = self.targets.remove(i);
                let _ = entry.handle.tx.send(TargetMsg::Stop);
                self.stopping_targets.push((tid, entry.handle, Some(seq)));
                None
            }
            PendingKind::LunAdd { tid, record } => {
                let Some(backing) = record.backing.take() else {
                    return;
                };
                Some((
                    *tid,
                    Control::AddLun {
                        cfg: record.lu.clone(),
                        backing,
                    },
                ))
            }
            PendingKind::LunRemove { tid, lun } => Some((*tid, Control::RemoveLun { lun: *lun })),
            PendingKind::NopUpdate { tid, nop } => Some((*tid, Control::SetNop(*nop))),
            PendingKind::LunUpdate { tid, record } => Some((
                *tid,
                Control::UpdateLun {
                    cfg: record.lu.clone(),
                    online: record.online,
                    backing: record.backing.take(),
                },
            )),
        };
        if let Some((tid, req)) = msg {
            self.send_control(seq, tid, req);
        }
    }

    fn send_control(&mut self, seq: u64, tid: u32, req: Control) {
        let sent = self.targets.iter().find(|t| t.tid == tid).is_some_and(|t| {
            t.handle
                .tx
                .send(TargetMsg::Control {
                    seq,
                    req: Box::new(req),
                })
                .is_ok()
        });
        if !sent {
            self.on_control_reply(seq, tid, Err(AdmErr::NoTarget));
        }
    }

    /// A target thread answered a control message.
    pub(crate) fn on_control_reply(
        &mut self,
        seq: u64,
        tid: u32,
        result: Result<TargetReport, AdmErr>,
    ) {
        let Some(mut p) = self.pending.remove(&seq) else {
            return;
        };
        let answer = match &mut p.kind {
            PendingKind::ShowTargets { waiting, reports } => {
                waiting.remove(&tid);
                if let Ok(r) = result {
                    reports.insert(tid, r);
                }
                if !waiting.is_empty() {
                    self.pending.insert(seq, p);
                    return;
                }
                let reports = std::mem::take(reports);
                Ok(self.render_targets(&reports))
            }
            PendingKind::LunAdd { tid, record } => result.map(|_| {
                if let Some(t) = self.targets.iter_mut().find(|t| t.tid == *tid) {
                    let record = std::mem::replace(record, Box::new(LunRecord::placeholder()));
                    t.luns.insert(record.conf.lun, *record);
                }
                String::new()
            }),
            PendingKind::LunRemove { tid, lun } => result.map(|_| {
                if let Some(t) = self.targets.iter_mut().find(|t| t.tid == *tid) {
                    t.luns.remove(lun);
                }
                String::new()
            }),
            PendingKind::LunUpdate { tid, record } => result.map(|_| {
                if let Some(t) = self.targets.iter_mut().find(|t| t.tid == *tid) {
                    let record = std::mem::replace(record, Box::new(LunRecord::placeholder()));
                    t.luns.insert(record.conf.lun, *record);
                }
                String::new()
            }),
            PendingKind::TargetStop { .. } | PendingKind::NopUpdate { .. } => {
                result.map(|_| String::new())
            }
        };
        if let Err(e) = &answer {
            tracing::info!(tid, "admin request refused by the target: {e}");
        }
        self.admin_reply(p.conn, answer);
    }

    /// A target thread ended after a delete.
    pub(crate) fn on_target_stopped(&mut self, tid: u32) {
        let Some(i) = self.stopping_targets.iter().position(|(t, _, _)| *t == tid) else {
            return;
        };
        let (_, mut handle, seq) = self.stopping_targets.swap_remove(i);
        if let Some(join) = handle.join.take() {
            if join.join().is_err() {
                tracing::error!(tid, "target thread panicked");
            }
        }
        tracing::info!(tid, "target deleted");
        if let Some(seq) = seq {
            self.on_control_reply(seq, tid, Ok(TargetReport::default()));
        }
    }

    fn admin_reply(&mut self, c: usize, result: Result<String, AdmErr>) {
        let Some(conn) = self.admin_conns.get_mut(c) else {
            return;
        };
        let mut chain = SendChain::new();
        chain.push_bytes(wire::encode_response(&result));
        match self
            .ring
            .send(conn.fd.as_raw_fd(), Token::AdminSend(c).encode(), chain)
        {
            Ok(_) => conn.sending = true,
            Err(e) => {
                tracing::error!("admin socket: cannot send: {e}");
                self.admin_close(c);
            }
        }
    }

    pub(crate) fn on_admin_sent(&mut self, c: usize) {
        self.admin_conns[c].sending = false;
        if self.admin_conns[c].shutdown_after {
            self.stopping = true;
        }
        self.admin_close(c);
    }

    /// Shuts every admin client's socket (at exit).
    pub(crate) fn admin_shutdown_all(&mut self) {
        for (_, conn) in &self.admin_conns {
            let _ = socket2::SockRef::from(&conn.fd).shutdown(std::net::Shutdown::Both);
        }
    }

    fn admin_close(&mut self, c: usize) {
        let conn = &mut self.admin_conns[c];
        conn.closing = true;
        let _ = socket2::SockRef::from(&conn.fd).shutdown(std::net::Shutdown::Both);
        self.admin_maybe_free(c);
    }

    fn admin_maybe_free(&mut self, c: usize) {
        let conn = &self.admin_conns[c];
        if conn.closing && conn.recv.is_none() && !conn.sending {
            self.admin_conns.remove(c);
        }
    }

    fn target_mut(&mut self, tid: i32) -> Result<&mut TargetEntry, AdmErr> {
        self.targets
            .iter_mut()
            .find(|t| i64::from(t.tid) == i64::from(tid))
            .ok_or(AdmErr::NoTarget)
    }

    fn admin_execute(&mut self, req: &Request) -> Flow {
        if !req.lld.is_empty() && req.lld != "iscsi" {
            return Flow::Reply(Err(AdmErr::NoDriver));
        }
        if !self.lld_ready && req.mode != Mode::Lld {
            return Flow::Reply(Err(AdmErr::NoDriver));
        }
        let result = match req.mode {
            Mode::System => self.admin_system(req),
            Mode::Target => return self.admin_target(req),
            Mode::Device => return self.admin_lun(req),
            Mode::Account => self.admin_account(req),
            Mode::Session | Mode::Connection => self.admin_session(req),
            Mode::Portal => self.admin_portal(req),
            Mode::Lld => self.admin_lld(req),
            Mode::Stats => match req.op {
                Op::Show | Op::Stats => Ok(crate::metrics::table(&self.registry.snapshot())),
                _ => Err(AdmErr::InvalidRequest),
            },
        };
        Flow::Reply(result)
    }

    fn admin_system(&mut self, req: &Request) -> Result<String, AdmErr> {
        match req.op {
            Op::Show => Ok(show::system(
                if self.system_offline {
                    "offline"
                } else {
                    "ready"
                },
                false,
            )),
            Op::Update => {
                let (name, value) = req.body.split_once('=').ok_or(AdmErr::InvalidRequest)?;
                match name {
                    "State" | "state" => {
                        self.system_offline = match value {
                            "offline" => true,
                            "ready" => false,
                            _ => return Err(AdmErr::InvalidRequest),
                        };
                        tracing::info!(state = value, "system state changed");
                        Ok(String::new())
                    }
                    _ => Err(AdmErr::UnknownParam),
                }
            }
            Op::Delete => {
                if self.targets.is_empty() {
                    Ok(String::new())
                } else {
                    Err(AdmErr::InvalidRequest)
                }
            }
            Op::Stats => Ok(self.render_stats()),
            _ => Err(AdmErr::InvalidRequest),
        }
    }

    fn admin_target(&mut self, req: &Request) -> Flow {
        let result = match req.op {
            Op::New => self.target_new(req),
            Op::Delete => return self.target_delete(req),
            Op::Show if req.tid < 0 => {
                let waiting: BTreeSet<u32> = self.targets.iter().map(|t| t.tid).collect();
                if waiting.is_empty() {
                    Ok(String::new())
                } else {
                    return Flow::Wait(PendingKind::ShowTargets {
                        waiting,
                        reports: BTreeMap::new(),
                    });
                }
            }
            Op::Show => self
                .target_mut(req.tid)
                .map(|t| show::target_params((t.nop.interval_secs, t.nop.count), &t.limits.keys())),
            Op::Bind | Op::Unbind => self.target_bind(req),
            Op::Update => match self.target_update(req) {
                Ok(Some(kind)) => return Flow::Wait(kind),
                Ok(None) => Ok(String::new()),
                Err(e) => Err(e),
            },
            Op::Stats => self.target_mut(req.tid).map(|t| {
                let s = t.stats.snapshot();
                format!(
                    "tid commands read_bytes written_bytes errors sessions\n{} {} {} {} {} {}\n",
                    t.tid, s.commands, s.read_bytes, s.written_bytes, s.errors, s.sessions
                )
            }),
            _ => Err(AdmErr::InvalidRequest),
        };
        Flow::Reply(result)
    }

    fn target_new(&mut self, req: &Request) -> Result<String, AdmErr> {
        let name = req.param("targetname").ok_or(AdmErr::InvalidRequest)?;
        if req.tid <= 0 {
            return Err(AdmErr::InvalidRequest);
        }
        let tid = req.tid as u32;
        let taken = self.targets.iter().any(|t| t.tid == tid)
            || self.stopping_targets.iter().any(|(t, _, _)| *t == tid);
        if taken
            || self
                .targets
                .iter()
                .any(|t| t.name.eq_ignore_ascii_case(&name))
        {
            return Err(AdmErr::TargetExists);
        }
        if name.is_empty() || name.len() > 223 || name.contains(char::is_whitespace) {
            return Err(AdmErr::InvalidRequest);
        }
        let stats = Arc::new(TargetStats::default());
        let cpu = (!self.cpus.is_empty()).then(|| self.cpus[tid as usize % self.cpus.len()]);
        let handle = target::spawn(
            TargetSetup {
                tid,
                scsi: crate::daemon::empty_scsi_target(tid, &name),
                stores: Vec::new(),
                cpu,
                stats: stats.clone(),
                pr_dir: self
                    .state_dir
                    .as_deref()
                    .map(|d| target::aptpl::target_dir(d, &name)),
                nop: self.timeouts.nop,
            },
            gw_uring::RingOptions::default(),
            self.to_self.clone(),
        )
        .map_err(|e| {
            tracing::error!(tid, "cannot start the target thread: {e}");
            AdmErr::Unknown
        })?;
        tracing::info!(tid, target = %name, "target created");
        let mut entry = TargetEntry::new(tid, name, TargetLimits::default(), handle, stats);
        entry.nop = self.timeouts.nop;
        self.targets.push(entry);
        Ok(String::new())
    }

    fn target_delete(&mut self, req: &Request) -> Flow {
        let Some(i) = self
            .targets
            .iter()
            .position(|t| i64::from(t.tid) == i64::from(req.tid))
        else {
            return Flow::Reply(Err(AdmErr::NoTarget));
        };
        if !self.targets[i].sessions.is_empty() && !req.force {
            return Flow::Reply(Err(AdmErr::TargetActive));
        }
        let tid = self.targets[i].tid;
        tracing::info!(tid, force = req.force, "deleting target");
        Flow::Wait(PendingKind::TargetStop { tid })
    }

    fn target_bind(&mut self, req: &Request) -> Result<String, AdmErr> {
        let bind = req.op == Op::Bind;
        let address = req.param("initiator-address");
        let name = req.param("initiator-name");
        if address.is_none() && name.is_none() {
            return Err(AdmErr::Unsupported);
        }
        let t = self.target_mut(req.tid)?;
        if let Some(a) = address {
            if AddressRule::parse(&a).is_none() {
                tracing::warn!(address = %a, "initiator-address must be ALL, an IP address or ADDRESS/PREFIX");
                return Err(AdmErr::InvalidRequest);
            }
            let at = t.addresses.iter().position(|x| x.eq_ignore_ascii_case(&a));
            match (bind, at) {
                (true, Some(_)) => return Err(AdmErr::AclExists),
                (true, None) => t.addresses.push(a),
                (false, Some(i)) => {
                    t.addresses.remove(i);
                }
                (false, None) => return Err(AdmErr::AclNotFound),
            }
        }
        if let Some(n) = name {
            let at = t
                .initiator_names
                .iter()
                .position(|x| x.eq_ignore_ascii_case(&n));
            match (bind, at) {
                (true, Some(_)) => return Err(AdmErr::AclExists),
                (true, None) => t.initiator_names.push(n),
                (false, Some(i)) => {
                    t.initiator_names.remove(i);
                }
                (false, None) => return Err(AdmErr::AclNotFound),
            }
        }
        Ok(String::new())
    }

    /// `--op update --mode target -n NAME -v VALUE`; NOP-In settings go on to the target
    /// thread, and the answer waits until it has them.
    fn target_update(&mut self, req: &Request) -> Result<Option<PendingKind>, AdmErr> {
        let (name, value) = req.body.split_once('=').ok_or(AdmErr::InvalidRequest)?;
        let t = self.target_mut(req.tid)?;
        match name {
            "nop_interval" | "nop_count" => {
                let n: u32 = value.parse().map_err(|_| AdmErr::InvalidRequest)?;
                let (interval, count) = match name {
                    "nop_interval" => (n, t.nop.count),
                    _ => (t.nop.interval_secs, n),
                };
                // Pings turned on where the count is still tgt's 0 take the standard count.
                let count = match count {
                    0 if name == "nop_interval" && n != 0 => Nop::DEFAULT.count,
                    c => c,
                };
                let nop = Nop::new(interval, count).map_err(|e| {
                    tracing::warn!(tid = t.tid, "admin: {e}");
                    AdmErr::InvalidRequest
                })?;
                t.nop = nop;
                tracing::info!(
                    tid = t.tid,
                    interval_secs = nop.interval_secs,
                    count = nop.count,
                    "NOP-In pings updated"
                );
                return Ok(Some(PendingKind::NopUpdate { tid: t.tid, nop }));
            }
            "state" | "State" => {
                t.offline = match value {
                    "offline" => true,
                    "ready" => false,
                    _ => return Err(AdmErr::InvalidRequest),
                };
                tracing::info!(tid = t.tid, state = value, "target state changed");
            }
            "RedirectAddress" | "RedirectPort" | "RedirectReason" | "RedirectCallback" => {
                tracing::warn!(key = name, "admin: {name} is not supported by gatewayd yet");
                return Err(AdmErr::Unsupported);
            }
            _ => {
                if let Err(message) = t.limits.apply_key(name, value) {
                    tracing::warn!(tid = t.tid, "admin: {message}");
                    return Err(AdmErr::InvalidRequest);
                }
                tracing::info!(
                    tid = t.tid,
                    key = name,
                    value,
                    "target key updated (applies to new logins)"
                );
            }
        }
        Ok(None)
    }

    fn admin_lun(&mut self, req: &Request) -> Flow {
        if req.lun == NO_LUN {
            return Flow::Reply(Err(AdmErr::InvalidRequest));
        }
        let result = match req.op {
            Op::New => self.lun_new(req),
            Op::Delete => {
                let tid = match self.target_mut(req.tid) {
                    Ok(t) if t.luns.contains_key(&req.lun) => t.tid,
                    Ok(_) => return Flow::Reply(Err(AdmErr::NoLun)),
                    Err(e) => return Flow::Reply(Err(e)),
                };
                return Flow::Wait(PendingKind::LunRemove { tid, lun: req.lun });
            }
            Op::Update => self.lun_update(req),
            _ => Err(AdmErr::InvalidRequest),
        };
        match result {
            Ok(kind) => Flow::Wait(kind),
            Err(e) => Flow::Reply(Err(e)),
        }
    }

    fn lun_new(&mut self, req: &Request) -> Result<PendingKind, AdmErr> {
        if req.device_type != 0 {
            tracing::warn!(
                device_type = req.device_type,
                "admin: only disk LUs (device type 0) are served"
            );
            return Err(AdmErr::Unsupported);
        }
        let t = self.target_mut(req.tid)?;
        if req.lun == 0 || t.luns.contains_key(&req.lun) {
            return Err(AdmErr::LunExists);
        }
        if req.lun > 16383 {
            return Err(AdmErr::InvalidRequest);
        }
        let mut settings = LunSettings::default();
        let mut path = None;
        for (k, v) in req.params() {
            match k.as_str() {
                "path" => path = Some(PathBuf::from(v)),
                "bstype" => {
                    settings.bs_type = match v.as_str() {
                        "rdwr" => BsType::File,
                        "aio" => BsType::Direct,
                        "null" => BsType::Null,
                        "curve" => BsType::Curve,
                        other => {
                            tracing::warn!(
                                bstype = other,
                                "admin: backing store types are rdwr, aio, null and curve"
                            );
                            return Err(AdmErr::Unsupported);
                        }
                    }
                }
                "bsoflags" => {
                    for flag in v.split(':') {
                        match flag {
                            "direct" => settings.bs_type = BsType::Direct,
                            "" => {}
                            other => {
                                tracing::warn!(flag = other, "admin: the only bsoflags is direct");
                                return Err(AdmErr::Unsupported);
                            }
                        }
                    }
                }
                "blocksize" => {
                    settings.block_size = match v.parse::<u32>() {
                        Ok(n @ (512 | 1024 | 2048 | 4096)) => n,
                        _ => return Err(AdmErr::InvalidRequest),
                    }
                }
                "bsopts" if v.is_empty() => {}
                "bsopts" => {
                    let text = v.trim().trim_matches('"');
                    if let Err(e) = curve_client::BackendOptions::parse(text) {
                        tracing::warn!("admin: {e}");
                        return Err(AdmErr::InvalidRequest);
                    }
                    settings.bs_opts = Some(text.to_string());
                }
                other => {
                    tracing::warn!(param = other, "admin: unknown logical unit parameter");
                    return Err(AdmErr::UnknownParam);
                }
            }
        }
        let path = match (path, settings.bs_type) {
            (Some(p), _) => p,
            (None, BsType::Null) => PathBuf::from("None"),
            (None, _) => return Err(AdmErr::InvalidRequest),
        };
        let conf = LunConf {
            lun: req.lun,
            path,
            settings,
        };
        let backing = Backing::open(&conf).map_err(|e| {
            tracing::warn!("admin: {e}");
            AdmErr::InvalidRequest
        })?;
        let lu = crate::daemon::lu_config(&t.name, &conf, &backing);
        let record = LunRecord::new(conf, lu, backing);
        Ok(PendingKind::LunAdd {
            tid: t.tid,
            record: Box::new(record),
        })
    }

    fn lun_update(&mut self, req: &Request) -> Result<PendingKind, AdmErr> {
        let t = self.target_mut(req.tid)?;
        let tid = t.tid;
        let old = t.luns.get(&req.lun).ok_or(AdmErr::NoLun)?;
        let mut conf = old.conf.clone();
        let mut lu = old.lu.clone();
        let mut online = old.online;
        for (k, v) in req.params() {
            match k.as_str() {
                "vendor_id" => lu.vendor_id = ascii_field(&v, 8)?,
                "product_id" => lu.product_id = ascii_field(&v, 16)?,
                "product_rev" => lu.product_rev = ascii_field(&v, 4)?,
                "scsi_sn" => lu.serial = ascii_field(&v, 36)?,
                "scsi_id" => conf.settings.scsi_id = Some(ascii_field(&v, 24)?),
                "removable" => lu.removable = bool_param(&v)?,
                "readonly" => lu.readonly = bool_param(&v)?,
                "online" => online = bool_param(&v)?,
                "thin_provisioning" => {
                    conf.settings.thin_provisioning = bool_param(&v)?;
                    lu.thin = crate::daemon::thin_provisioned(&conf.settings);
                }
                "mode_page" => lu.write_cache = caching_page_wce(&v)?,
                other => {
                    tracing::warn!(param = other, value = %v, "admin: logical unit parameter not supported");
                    return Err(AdmErr::UnknownParam);
                }
            }
        }
        conf.settings.readonly = lu.readonly;
        conf.settings.removable = lu.removable;
        // A store opened read-only must be reopened for writing.
        let backing = if !lu.readonly && !old.opened_rw {
            Some(Backing::open(&conf).map_err(|e| {
                tracing::warn!("admin: {e}");
                AdmErr::InvalidRequest
            })?)
        } else {
            None
        };
        let mut record = LunRecord {
            conf,
            lu,
            size_bytes: old.size_bytes,
            opened_rw: old.opened_rw || backing.is_some(),
            online,
            backing: None,
        };
        record.backing = backing;
        Ok(PendingKind::LunUpdate {
            tid,
            record: Box::new(record),
        })
    }

    fn admin_account(&mut self, req: &Request) -> Result<String, AdmErr> {
        let user = req.param("user");
        match req.op {
            Op::New => {
                let user = user.ok_or(AdmErr::InvalidRequest)?;
                let password = req.param("password").ok_or(AdmErr::InvalidRequest)?;
                if self.accounts.iter().any(|(u, _)| *u == user) {
                    return Err(AdmErr::UserExists);
                }
                if self.accounts.len() >= ACCOUNTS_MAX {
                    return Err(AdmErr::TooManyUsers);
                }
                self.accounts.insert(0, (user, password));
                Ok(String::new())
            }
            Op::Delete => {
                let user = user.ok_or(AdmErr::InvalidRequest)?;
                let i = self
                    .accounts
                    .iter()
                    .position(|(u, _)| *u == user)
                    .ok_or(AdmErr::NoUser)?;
                self.accounts.remove(i);
                let sets = self
                    .targets
                    .iter_mut()
                    .map(|t| &mut t.accounts)
                    .chain(std::iter::once(&mut self.discovery_accounts));
                for a in sets {
                    a.incoming.retain(|x| x.user != user);
                    if a.outgoing.as_ref().is_some_and(|x| x.user == user) {
                        a.outgoing = None;
                    }
                }
                Ok(String::new())
            }
            Op::Bind | Op::Unbind => {
                let user = user.ok_or(AdmErr::InvalidRequest)?;
                let secret = self
                    .accounts
                    .iter()
                    .find(|(u, _)| *u == user)
                    .map(|(_, s)| s.clone())
                    .ok_or(AdmErr::NoUser)?;
                let outgoing = req.ac_dir == 1;
                let set = if req.tid == GLOBAL_TID {
                    &mut self.discovery_accounts
                } else {
                    &mut self.target_mut(req.tid)?.accounts
                };
                let account = Account { user, secret };
                match (req.op == Op::Bind, outgoing) {
                    (true, false) => {
                        if set.incoming.iter().any(|a| a.user == account.user) {
                            return Err(AdmErr::UserExists);
                        }
                        set.incoming.push(account);
                    }
                    (true, true) => {
                        if set.outgoing.is_some() {
                            return Err(AdmErr::OutAccountExists);
                        }
                        set.outgoing = Some(account);
                    }
                    (false, false) => {
                        let i = set
                            .incoming
                            .iter()
                            .position(|a| a.user == account.user)
                            .ok_or(AdmErr::NoUser)?;
                        set.incoming.remove(i);
                    }
                    (false, true) => {
                        if set.outgoing.as_ref().map(|a| a.user.as_str())
                            != Some(account.user.as_str())
                        {
                            return Err(AdmErr::NoUser);
                        }
                        set.outgoing = None;
                    }
                }
                Ok(String::new())
            }
            Op::Show => {
                let users: Vec<String> = self.accounts.iter().map(|(u, _)| u.clone()).collect();
                Ok(show::accounts(&users))
            }
            _ => Err(AdmErr::Unsupported),
        }
    }

    fn admin_session(&mut self, req: &Request) -> Result<String, AdmErr> {
        let t = self.target_mut(req.tid)?;
        let nexuses = t.nexus_views();
        match req.op {
            Op::Show if req.mode == Mode::Connection => Ok(show::connections(&nexuses)),
            Op::Show if req.sid == 0 => Ok(show::connections(&nexuses)),
            Op::Show => {
                let s = t
                    .sessions
                    .values()
                    .find(|s| u64::from(s.tsih) == req.sid)
                    .ok_or(AdmErr::NoSession)?;
                Ok(show::target_params((0, 0), &s.params.keys()))
            }
            Op::Delete => {
                let s = t
                    .sessions
                    .values()
                    .find(|s| u64::from(s.tsih) == req.sid)
                    .ok_or(AdmErr::NoSession)?;
                if req.mode == Mode::Connection && u32::from(s.cid) != req.cid {
                    return Err(AdmErr::NoConnection);
                }
                let tsih = s.tsih;
                tracing::info!(tid = t.tid, tsih, "admin: closing session");
                let _ = t.handle.tx.send(TargetMsg::CloseSession { tsih });
                Ok(String::new())
            }
            _ => Err(AdmErr::InvalidRequest),
        }
    }

    fn admin_portal(&mut self, req: &Request) -> Result<String, AdmErr> {
        match req.op {
            Op::Show => {
                let addrs: Vec<_> = self
                    .portals
                    .iter()
                    .flatten()
                    .map(|p| (p.addr, PORTAL_GROUP_TAG))
                    .collect();
                Ok(show::portals(&addrs))
            }
            Op::New | Op::Delete => {
                let text = req.param("portal").ok_or(AdmErr::InvalidRequest)?;
                let addr: std::net::SocketAddr = text
                    .parse()
                    .or_else(|_| {
                        text.parse::<std::net::IpAddr>()
                            .map(|ip| std::net::SocketAddr::new(ip, 3260))
                    })
                    .map_err(|_| AdmErr::InvalidRequest)?;
                let at = self
                    .portals
                    .iter()
                    .position(|p| p.as_ref().is_some_and(|p| p.addr == addr));
                if req.op == Op::Delete {
                    let i = at.ok_or(AdmErr::InvalidRequest)?;
                    let portal = self.portals[i].take().expect("found above");
                    if let Some(op) = portal.accept {
                        let _ = self.ring.cancel(op);
                    }
                    tracing::info!(portal = %addr, "portal removed");
                    return Ok(String::new());
                }
                if at.is_some() {
                    return Err(AdmErr::BindingExists);
                }
                let mut portal = crate::daemon::bind_portal(addr).map_err(|e| {
                    tracing::warn!("admin: {e}");
                    AdmErr::InvalidRequest
                })?;
                let i = self.portals.len();
                let op = self
                    .ring
                    .accept_multi(portal.listener.as_raw_fd(), Token::Accept(i).encode())
                    .map_err(|_| AdmErr::Unknown)?;
                portal.accept = Some(op);
                tracing::info!(portal = %portal.addr, "portal added");
                self.portals.push(Some(portal));
                Ok(String::new())
            }
            _ => Err(AdmErr::InvalidRequest),
        }
    }

    fn admin_lld(&mut self, req: &Request) -> Result<String, AdmErr> {
        match req.op {
            Op::Show => {
                let targets: Vec<(u32, String)> = self
                    .targets
                    .iter()
                    .map(|t| (t.tid, t.name.clone()))
                    .collect();
                Ok(show::llds(self.lld_ready, &targets))
            }
            Op::Start => {
                self.lld_ready = true;
                Ok(String::new())
            }
            Op::Stop => {
                if self.targets.is_empty() {
                    self.lld_ready = false;
                    Ok(String::new())
                } else {
                    Err(AdmErr::DriverActive)
                }
            }
            _ => Err(AdmErr::InvalidRequest),
        }
    }

    fn render_stats(&self) -> String {
        let mut s = String::from("tid commands read_bytes written_bytes errors sessions\n");
        for t in &self.targets {
            let x = t.stats.snapshot();
            s.push_str(&format!(
                "{} {} {} {} {} {}\n",
                t.tid, x.commands, x.read_bytes, x.written_bytes, x.errors, x.sessions
            ));
        }
        s
    }

    fn render_targets(&self, reports: &BTreeMap<u32, TargetReport>) -> String {
        let mut views = Vec::new();
        for t in &self.targets {
            let Some(report) = reports.get(&t.tid) else {
                continue;
            };
            let luns = report
                .lus
                .iter()
                .map(|st| {
                    let cfg = &st.cfg;
                    let record = t.luns.get(&cfg.lun);
                    let controller = cfg.lun == 0;
                    LunView {
                        lun: cfg.lun,
                        kind: if controller { "controller" } else { "disk" },
                        scsi_id: record
                            .and_then(|r| r.conf.settings.scsi_id.clone())
                            .unwrap_or_else(|| format!("{:<8}{}", cfg.vendor_id, cfg.serial)),
                        scsi_sn: cfg.serial.clone(),
                        size_bytes: cfg.blocks * u64::from(cfg.block_size),
                        block_size: if controller { 1 } else { cfg.block_size },
                        online: st.online,
                        removable: cfg.removable,
                        prevent_removal: st.prevent_removal,
                        readonly: cfg.readonly,
                        swp: false,
                        thin: cfg.thin,
                        bs_type: record
                            .map_or("null".into(), |r| r.conf.settings.bs_type.to_string()),
                        path: record
                            .filter(|r| r.conf.settings.bs_type != BsType::Null)
                            .map(|r| r.conf.path.display().to_string()),
                        bs_flags: match record.map(|r| &r.conf.settings.bs_type) {
                            Some(BsType::Direct) => "direct".into(),
                            _ => String::new(),
                        },
                    }
                })
                .collect();
            views.push(TargetView {
                tid: t.tid,
                name: t.name.clone(),
                state: if t.offline { "offline" } else { "ready" },
                nop: report
                    .nop
                    .is_on()
                    .then_some((report.nop.interval_secs, report.nop.count)),
                nexuses: t.nexus_views(),
                luns,
                accounts_in: t.accounts.incoming.iter().map(|a| a.user.clone()).collect(),
                account_out: t.accounts.outgoing.as_ref().map(|a| a.user.clone()),
                acl_addresses: t.addresses.clone(),
                acl_names: t.initiator_names.clone(),
            });
        }
        show::targets(&views)
    }
}

impl TargetEntry {
    fn nexus_views(&self) -> Vec<NexusView> {
        let mut v: Vec<NexusView> = self
            .sessions
            .iter()
            .map(|((initiator, _), s)| NexusView {
                tsih: s.tsih,
                initiator: s.params.initiator_name.clone().if_empty(initiator),
                alias: s.params.initiator_alias.clone(),
                cid: s.cid,
                ip: s.peer.ip().to_string(),
            })
            .collect();
        v.sort_by_key(|n| n.tsih);
        v
    }
}

trait IfEmpty {
    fn if_empty(self, other: &str) -> String;
}

impl IfEmpty for String {
    fn if_empty(self, other: &str) -> String {
        if self.is_empty() {
            other.to_string()
        } else {
            self
        }
    }
}

impl LunRecord {
    /// A record for a LUN just opened.
    pub(crate) fn new(conf: LunConf, lu: gw_scsi::LuConfig, backing: Backing) -> LunRecord {
        LunRecord {
            size_bytes: backing.size_bytes,
            opened_rw: backing.writable,
            online: true,
            conf,
            lu,
            backing: Some(backing),
        }
    }

    fn placeholder() -> LunRecord {
        LunRecord {
            conf: LunConf {
                lun: 0,
                path: PathBuf::new(),
                settings: LunSettings::default(),
            },
            lu: crate::daemon::empty_scsi_target(0, "")
                .lu_status(0)
                .expect("LUN 0 always exists")
                .cfg,
            size_bytes: 0,
            opened_rw: false,
            online: false,
            backing: None,
        }
    }
}
