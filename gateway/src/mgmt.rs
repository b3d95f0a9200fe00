//! The management thread: portals, logins, discovery sessions and target lifecycle, on its
//! own io_uring.
//!
//! Every connection starts here. Its login is negotiated by the sans-IO [`Login`] machine;
//! a discovery session then stays here for good, while a normal session is handed, socket
//! and leftover bytes together, to its target's thread once the final Login Response has
//! left and the receive armed on it has ended.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::os::fd::{AsRawFd, OwnedFd};

use gw_uring::{Completion, Errno, Mailbox, OpId, RecvBuf, Ring, SendChain};
use slab::Slab;

use crate::admin::service::{AdminConn, AdminSocket, PendingAdmin};
use crate::config::LunConf;
use crate::iscsi::chap::Accounts;
use crate::iscsi::discovery::{DiscoveredTarget, TextExchange};
use crate::iscsi::login::{
    Login, LoginOutcome, LoginRefusal, LoginStep, ResolvedTarget, TargetDirectory,
};
use crate::iscsi::params::{SessionParams, TargetLimits};
use crate::iscsi::pdu::{
    self, Bhs, LogoutRequest, LogoutResponse, NopIn, NopOut, Opcode, Reject, TextRequest,
};
use crate::iscsi::reader::{Digests, Pdu, PduReader};
use crate::iscsi::writer;
use crate::msg::{Handoff, MgmtMsg, TargetMsg};
use crate::stats::TargetStats;
use crate::target::{TargetHandle, SESSIONS_PER_TARGET_MAX};

/// How long shutdown waits for the ring's last operations to end.
pub const QUIESCE_TIME_MAX: std::time::Duration = std::time::Duration::from_secs(2);

/// The signal that reloads the configuration.
pub const SIGHUP: i32 = 1;

/// Connections in login or discovery at once; more are closed at accept.
pub const LOGIN_CONNS_MAX: usize = 1024;
/// Data segment we accept during login and discovery, in bytes (RFC 7143 §12.12 default).
pub const LOGIN_DATA_SEGMENT_BYTES_MAX: u32 = 8192;
/// The portal group every portal belongs to.
pub const PORTAL_GROUP_TAG: u16 = 1;

/// A listening portal.
#[derive(Debug)]
pub struct Portal {
    /// The socket.
    pub listener: TcpListener,
    /// Its bound address (the real port when 0 was asked for).
    pub addr: SocketAddr,
    /// The multishot accept armed on it.
    pub accept: Option<OpId>,
}

/// An initiator-address ACL entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressRule {
    /// Network address.
    pub ip: IpAddr,
    /// Prefix length.
    pub prefix: u8,
}

impl AddressRule {
    /// Parses `IP`, `IP/PREFIX` or `ALL`.
    pub fn parse(text: &str) -> Option<AddressRule> {
        if text.eq_ignore_ascii_case("ALL") {
            return Some(AddressRule {
                ip: IpAddr::from([0, 0, 0, 0]),
                prefix: 0,
            });
        }
        let (ip, prefix) = match text.split_once('/') {
            Some((ip, p)) => (ip, Some(p.parse::<u8>().ok()?)),
            None => (text, None),
        };
        let ip: IpAddr = ip
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .ok()?;
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        (prefix <= max).then_some(AddressRule { ip, prefix })
    }

    /// Whether `peer` falls inside this rule (IPv4-mapped IPv6 peers match IPv4 rules).
    pub fn matches(&self, peer: IpAddr) -> bool {
        if self.prefix == 0 && self.ip.is_unspecified() {
            return true;
        }
        let peer = match peer {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(peer),
            v4 => v4,
        };
        match (self.ip, peer) {
            (IpAddr::V4(a), IpAddr::V4(b)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(a) & mask == u32::from(b) & mask
            }
            (IpAddr::V6(a), IpAddr::V6(b)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(a) & mask == u128::from(b) & mask
            }
            _ => false,
        }
    }
}

/// A LUN as the management thread records it (its configuration; the live state is on the
/// target thread).
#[derive(Debug)]
pub struct LunRecord {
    /// How it was configured.
    pub conf: LunConf,
    /// Its SCSI configuration as last sent to the target thread.
    pub lu: gw_scsi::LuConfig,
    /// Store size in bytes.
    pub size_bytes: u64,
    /// The store is open for writing.
    pub opened_rw: bool,
    /// Online (medium present).
    pub online: bool,
    /// A store on its way to the target thread.
    pub backing: Option<crate::backing::Backing>,
}

/// A logged-in session as the management thread records it.
#[derive(Debug)]
pub struct SessionRecord {
    /// TSIH.
    pub tsih: u16,
    /// Its connection's CID.
    pub cid: u16,
    /// The initiator's address.
    pub peer: SocketAddr,
    /// What was negotiated.
    pub params: SessionParams,
}

/// What the management thread knows of a target.
#[derive(Debug)]
pub struct TargetEntry {
    /// Target ID.
    pub tid: u32,
    /// IQN.
    pub name: String,
    /// initiator-address rules (`ALL`, an address, or ADDRESS/PREFIX), as given; a login
    /// must match one. A target with none refuses everyone, as tgt does.
    pub addresses: Vec<String>,
    /// Allowed initiator names; empty: any name (from an allowed address).
    pub initiator_names: Vec<String>,
    /// What its logins negotiate from.
    pub limits: TargetLimits,
    /// CHAP accounts its logins authenticate with; no incoming account: none required.
    pub accounts: Accounts,
    /// Its thread.
    pub handle: TargetHandle,
    /// Live sessions by (initiator name, ISID).
    pub sessions: HashMap<(String, [u8; 6]), SessionRecord>,
    /// Its disk LUNs.
    pub luns: BTreeMap<u64, LunRecord>,
    /// Taken offline: new logins are refused.
    pub offline: bool,
    /// Its counters.
    pub stats: std::sync::Arc<TargetStats>,
    /// It comes from the configuration file (a reload may change or remove it).
    pub from_config: bool,
    /// A reload removed it: stop the thread once no session is left.
    pub remove_when_idle: bool,
    /// How its thread pings idle connections (as last set; the thread holds the live copy).
    pub nop: crate::target::liveness::Nop,
    next_tsih: u16,
}

impl TargetEntry {
    /// A target entry for a running thread, with no ACL (nobody may log in yet), no LUN
    /// records and no accounts.
    pub fn new(
        tid: u32,
        name: String,
        limits: TargetLimits,
        handle: TargetHandle,
        stats: std::sync::Arc<TargetStats>,
    ) -> TargetEntry {
        TargetEntry {
            tid,
            name,
            addresses: Vec::new(),
            initiator_names: Vec::new(),
            limits,
            accounts: Accounts::default(),
            handle,
            sessions: HashMap::new(),
            luns: BTreeMap::new(),
            offline: false,
            stats,
            from_config: false,
            remove_when_idle: false,
            nop: crate::target::liveness::Nop::DEFAULT,
            next_tsih: 0,
        }
    }

    /// Whether this initiator, from this address, may log in (and see the target): its
    /// address must match an initiator-address rule, and its name an initiator-name rule
    /// when there are any. (tgt lets either match; requiring both makes a name rule mean
    /// something even with `initiator-address ALL`, which tgt-admin adds by default.)
    pub fn allows(&self, initiator: &str, peer: IpAddr) -> bool {
        self.addresses
            .iter()
            .filter_map(|a| AddressRule::parse(a))
            .any(|r| r.matches(peer))
            && (self.initiator_names.is_empty()
                || self
                    .initiator_names
                    .iter()
                    .any(|n| n.eq_ignore_ascii_case(initiator)))
    }

    fn allocate_tsih(&mut self) -> Option<u16> {
        for _ in 0..=u16::MAX as usize {
            self.next_tsih = self.next_tsih.wrapping_add(1);
            if self.next_tsih != 0 && !self.sessions.values().any(|s| s.tsih == self.next_tsih) {
                return Some(self.next_tsih);
            }
        }
        None
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Token {
    Accept(usize),
    AdminAccept,
    AdminRecv(usize),
    AdminSend(usize),
    Recv(usize),
    Send(usize),
    Mailbox,
    /// A connection's deadline: slot and the connection's serial (slots are reused).
    Timer(usize, u32),
}

impl Token {
    pub(crate) fn encode(self) -> u64 {
        let (kind, index) = match self {
            Token::Accept(i) => (1u64, i),
            Token::AdminAccept => (6, 0),
            Token::AdminRecv(i) => (7, i),
            Token::AdminSend(i) => (8, i),
            Token::Recv(i) => (2, i),
            Token::Send(i) => (3, i),
            Token::Mailbox => (4, 0),
            Token::Timer(i, serial) => {
                assert!(i < 1 << 24, "login connection slots stay below 2^24");
                return (5u64 << 56) | (u64::from(serial) << 24) | i as u64;
            }
        };
        (kind << 56) | index as u64
    }

    fn decode(raw: u64) -> Token {
        let index = (raw & ((1 << 56) - 1)) as usize;
        match raw >> 56 {
            1 => Token::Accept(index),
            2 => Token::Recv(index),
            3 => Token::Send(index),
            4 => Token::Mailbox,
            5 => Token::Timer(index & ((1 << 24) - 1), (index >> 24) as u32),
            6 => Token::AdminAccept,
            7 => Token::AdminRecv(index),
            8 => Token::AdminSend(index),
            kind => panic!("management ring token of unknown kind {kind}"),
        }
    }
}

/// Where a connection on the management thread stands.
#[derive(Debug)]
enum Phase {
    /// Negotiating.
    Login(Box<Login>),
    /// The final response is queued; waiting for it to leave and the receive to end.
    HandingOff {
        tid: u32,
        tsih: u16,
        outcome: Box<LoginOutcome>,
    },
    /// A discovery session in full-feature phase.
    Discovery(Box<DiscoverySession>),
    /// Done; close when the output has left.
    Closing,
}

#[derive(Debug)]
struct DiscoverySession {
    params: SessionParams,
    statsn: u32,
    exp_cmdsn: u32,
    text: TextExchange,
}

#[derive(Debug)]
struct LoginConn {
    fd: OwnedFd,
    peer: SocketAddr,
    local: SocketAddr,
    reader: PduReader,
    digests: Digests,
    phase: Phase,
    out: SendChain,
    sending: bool,
    recv: Option<OpId>,
    /// Distinguishes this connection from earlier ones in the same slot.
    serial: u32,
    /// The armed deadline timer.
    timer: Option<OpId>,
    last_activity: std::time::Instant,
}

impl LoginConn {
    fn queue(&mut self, bhs: &Bhs, data: &[u8]) {
        let mut bytes = Vec::with_capacity(pdu::BHS_BYTES + data.len() + 16);
        writer::encode_pdu(bhs, &[], data, self.digests, &mut bytes);
        self.out.push_bytes(bytes);
    }
}

/// The management thread's state.
#[derive(Debug)]
pub struct Mgmt {
    pub(crate) ring: Ring,
    pub(crate) portals: Vec<Option<Portal>>,
    pub(crate) targets: Vec<TargetEntry>,
    conns: Slab<LoginConn>,
    inbox: Mailbox<MgmtMsg>,
    dirty: Vec<usize>,
    next_discovery_tsih: u16,
    pub(crate) stopping: bool,
    next_serial: u32,
    pub(crate) timeouts: Timeouts,
    /// The tgtadm socket, when enabled.
    pub(crate) admin: Option<AdminSocket>,
    /// The accept armed on it.
    pub(crate) admin_accept: Option<OpId>,
    /// The read armed on the mailbox's eventfd.
    watch: Option<OpId>,
    pub(crate) admin_conns: Slab<AdminConn>,
    /// Admin requests waiting for target threads, by sequence number.
    pub(crate) pending: HashMap<u64, PendingAdmin>,
    pub(crate) next_seq: u64,
    /// CHAP accounts (user, secret), newest first as tgt lists them.
    pub(crate) accounts: Vec<(String, String)>,
    /// CHAP accounts of discovery sessions; no incoming account: none required.
    pub(crate) discovery_accounts: Accounts,
    /// `system update State=offline`: new connections are refused.
    pub(crate) system_offline: bool,
    /// The iscsi driver is started (`lld stop` with no target stops it).
    pub(crate) lld_ready: bool,
    /// For target threads started at run time.
    pub(crate) to_self: gw_uring::MailboxSender<MgmtMsg>,
    /// CPUs new target threads are pinned to, round-robin by tid.
    pub(crate) cpus: Vec<usize>,
    /// Deleted targets whose threads are draining: (tid, handle, admin request to answer).
    pub(crate) stopping_targets: Vec<(u32, TargetHandle, Option<u64>)>,
    /// The configuration file, re-read on SIGHUP.
    pub(crate) config_path: Option<std::path::PathBuf>,
    /// Where state that outlives the daemon is kept.
    pub(crate) state_dir: Option<std::path::PathBuf>,
    /// What the metrics endpoint and `--mode stats` report.
    pub(crate) registry: std::sync::Arc<crate::metrics::Registry>,
    /// The tids last published to the registry.
    published: Vec<u32>,
    /// Bounds the log lines peers cause.
    peer_log: crate::lograte::LogLimiter,
}

/// What the management thread is started with besides its ring, portals and targets.
#[derive(Debug)]
pub struct MgmtSetup {
    /// Login and discovery time limits.
    pub timeouts: Timeouts,
    /// The admin socket, if any.
    pub admin: Option<AdminSocket>,
    /// A sender into the management mailbox, for target threads started later.
    pub to_self: gw_uring::MailboxSender<MgmtMsg>,
    /// CPUs for target threads started later.
    pub cpus: Vec<usize>,
    /// The configuration file to re-read on SIGHUP.
    pub config_path: Option<std::path::PathBuf>,
    /// Where state that outlives the daemon is kept (APTPL reservations).
    pub state_dir: Option<std::path::PathBuf>,
    /// Where to publish the targets for metrics.
    pub registry: std::sync::Arc<crate::metrics::Registry>,
}

/// How long connections may take on the management thread.
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    /// From accept to the end of login.
    pub login: std::time::Duration,
    /// Silence after which a discovery session is closed.
    pub discovery_idle: std::time::Duration,
    /// How targets ping idle connections unless their configuration says otherwise.
    pub nop: crate::target::liveness::Nop,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            login: std::time::Duration::from_secs(15),
            discovery_idle: std::time::Duration::from_secs(60),
            nop: crate::target::liveness::Nop::DEFAULT,
        }
    }
}

/// A [`TargetDirectory`] answering for one connection's peer.
struct Directory<'a> {
    targets: &'a [TargetEntry],
    discovery: &'a Accounts,
    peer: IpAddr,
    log: &'a crate::lograte::LogLimiter,
}

impl TargetDirectory for Directory<'_> {
    fn resolve(
        &self,
        target_name: &str,
        initiator_name: &str,
    ) -> Result<ResolvedTarget, LoginRefusal> {
        let entry = self
            .targets
            .iter()
            .find(|t| t.name.eq_ignore_ascii_case(target_name))
            .ok_or(LoginRefusal::NotFound)?;
        if entry.offline {
            if self.log.allow() {
                tracing::info!(target = %entry.name, initiator = initiator_name, peer = %self.peer, "login refused: the target is offline");
            }
            return Err(LoginRefusal::NotFound);
        }
        if !entry.allows(initiator_name, self.peer) {
            if self.log.allow() {
                tracing::warn!(target = %entry.name, initiator = initiator_name, peer = %self.peer, "login refused by ACL");
            }
            return Err(LoginRefusal::NotAuthorized);
        }
        Ok(ResolvedTarget {
            tid: entry.tid,
            tpgt: PORTAL_GROUP_TAG,
            alias: None,
            limits: entry.limits.clone(),
            accounts: entry.accounts.clone(),
        })
    }

    fn discovery_accounts(&self) -> Accounts {
        self.discovery.clone()
    }
}

impl Mgmt {
    /// Sets up the management thread's ring over its portals and targets.
    pub fn new(
        ring: Ring,
        portals: Vec<Portal>,
        targets: Vec<TargetEntry>,
        inbox: Mailbox<MgmtMsg>,
        setup: MgmtSetup,
    ) -> Result<Mgmt, gw_uring::RingError> {
        let mut mgmt = Mgmt {
            ring,
            portals: portals.into_iter().map(Some).collect(),
            targets,
            conns: Slab::new(),
            inbox,
            dirty: Vec::new(),
            next_discovery_tsih: 0,
            stopping: false,
            next_serial: 0,
            timeouts: setup.timeouts,
            admin: setup.admin,
            admin_accept: None,
            watch: None,
            admin_conns: Slab::new(),
            pending: HashMap::new(),
            next_seq: 0,
            accounts: Vec::new(),
            discovery_accounts: Accounts::default(),
            system_offline: false,
            lld_ready: true,
            to_self: setup.to_self,
            cpus: setup.cpus,
            stopping_targets: Vec::new(),
            config_path: setup.config_path,
            state_dir: setup.state_dir,
            registry: setup.registry,
            published: Vec::new(),
            peer_log: crate::lograte::LogLimiter::default(),
        };
        for (i, p) in mgmt.portals.iter_mut().enumerate() {
            let p = p.as_mut().expect("all portals are open at start");
            p.accept = Some(
                mgmt.ring
                    .accept_multi(p.listener.as_raw_fd(), Token::Accept(i).encode())?,
            );
        }
        mgmt.admin_listen()?;
        mgmt.watch = Some(
            mgmt.ring
                .watch_eventfd(mgmt.inbox.eventfd(), Token::Mailbox.encode())?,
        );
        // Published before `ready` is announced, so the first scrape sees every target.
        mgmt.publish_targets();
        Ok(mgmt)
    }

    /// Requires discovery sessions to authenticate with `accounts` (none incoming: no
    /// authentication).
    pub fn set_discovery_accounts(&mut self, accounts: Accounts) {
        self.discovery_accounts = accounts;
        self.list_config_accounts();
    }

    /// Lists every account the configuration names (targets' and discovery's) among the
    /// accounts `tgtadm --mode account --op show` reports.
    pub(crate) fn list_config_accounts(&mut self) {
        let sets = self
            .targets
            .iter()
            .map(|t| &t.accounts)
            .chain(std::iter::once(&self.discovery_accounts));
        for a in sets.flat_map(|s| s.incoming.iter().chain(s.outgoing.as_ref())) {
            if !self.accounts.iter().any(|(u, _)| *u == a.user) {
                self.accounts.push((a.user.clone(), a.secret.clone()));
            }
        }
    }

    /// Runs until a SIGTERM or SIGINT, then stops every target thread and returns.
    pub fn run(&mut self) {
        let _span = tracing::info_span!("mgmt").entered();
        let mut completions = Vec::with_capacity(64);
        while !self.stopping {
            self.publish_targets();
            self.flush_output();
            if let Err(e) = self.ring.submit_and_wait(1) {
                panic!("management ring: submit failed: {e}");
            }
            self.ring.reap(&mut completions);
            for c in completions.drain(..) {
                self.dispatch(c);
            }
        }
        for t in &self.targets {
            let _ = t.handle.tx.send(TargetMsg::Stop);
        }
        self.quiesce();
        let stopping = std::mem::take(&mut self.stopping_targets);
        let handles = self
            .targets
            .iter_mut()
            .map(|t| &mut t.handle)
            .chain(
                stopping
                    .into_iter()
                    .map(|(_, h, _)| h)
                    .collect::<Vec<_>>()
                    .iter_mut(),
            )
            .filter_map(|h| h.join.take().map(|j| (h.tid, j)))
            .collect::<Vec<_>>();
        for (tid, join) in handles {
            if join.join().is_err() {
                tracing::error!(tid, "target thread panicked");
            }
        }
    }

    /// Tells the metrics registry which targets exist, when that has changed.
    fn publish_targets(&mut self) {
        if self.targets.len() == self.published.len()
            && self
                .targets
                .iter()
                .zip(&self.published)
                .all(|(t, &p)| t.tid == p)
        {
            return;
        }
        self.published = self.targets.iter().map(|t| t.tid).collect();
        self.registry.publish(
            self.targets
                .iter()
                .map(|t| crate::metrics::Published {
                    tid: t.tid,
                    name: t.name.clone(),
                    stats: t.stats.clone(),
                })
                .collect(),
        );
    }

    /// Ends everything armed on the ring (accepts, receives, the mailbox read) and waits a
    /// bounded time for the kernel to let go, so the portals and the admin socket are closed
    /// when the process exits, not whenever the kernel tears the ring down.
    fn quiesce(&mut self) {
        let ops = self
            .portals
            .iter()
            .flatten()
            .filter_map(|p| p.accept)
            .chain(self.admin_accept.take())
            .chain(self.watch.take())
            .collect::<Vec<_>>();
        for op in ops {
            let _ = self.ring.cancel(op);
        }
        for (_, conn) in &self.conns {
            let _ = socket2::SockRef::from(&conn.fd).shutdown(std::net::Shutdown::Both);
        }
        self.admin_shutdown_all();
        let deadline = std::time::Instant::now() + QUIESCE_TIME_MAX;
        let mut completions = Vec::new();
        while self.ring.in_flight() > 0 && std::time::Instant::now() < deadline {
            if self.ring.submit_and_wait(0).is_err() {
                break;
            }
            self.ring.reap(&mut completions);
            if completions.is_empty() {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            completions.clear();
        }
    }

    fn dispatch(&mut self, completion: Completion) {
        match completion {
            Completion::Accepted { token, result } => match Token::decode(token) {
                Token::AdminAccept => self.on_admin_accept(result),
                Token::Accept(p) => match (result, &self.portals[p]) {
                    (Ok(fd), Some(_)) => self.on_accept(p, fd),
                    (Err(e), Some(portal)) => {
                        tracing::warn!(portal = %portal.addr, "accept failed: {e}")
                    }
                    // A deleted portal: its accept ending, or a connection it let in.
                    (_, None) => {}
                },
                _ => panic!("accept completion with a foreign token"),
            },
            Completion::Received { token, result } => match Token::decode(token) {
                Token::Recv(c) => self.on_recv(c, result),
                Token::AdminRecv(c) => self.on_admin_recv(c, result),
                _ => panic!("recv completion with a foreign token"),
            },
            Completion::Sent {
                token,
                result,
                mut chain,
            } => {
                for b in chain.clear() {
                    self.ring.free_buf(b);
                }
                match Token::decode(token) {
                    Token::Send(c) => self.on_sent(c, result),
                    Token::AdminSend(c) => self.on_admin_sent(c),
                    _ => panic!("send completion with a foreign token"),
                }
            }
            Completion::Signalled { .. } => self.drain_inbox(),
            Completion::Timer { token } => {
                let Token::Timer(c, serial) = Token::decode(token) else {
                    panic!("timer completion with a foreign token");
                };
                self.on_deadline(c, serial);
            }
            other => tracing::warn!("management ring: unexpected completion {other:?}"),
        }
    }

    fn drain_inbox(&mut self) {
        while let Some(msg) = self.inbox.try_recv() {
            match msg {
                MgmtMsg::SessionClosed { tid, tsih } => {
                    if let Some(t) = self.targets.iter_mut().find(|t| t.tid == tid) {
                        t.sessions.retain(|_, s| s.tsih != tsih);
                    }
                    self.stop_idle_targets();
                }
                MgmtMsg::Reply { seq, tid, result } => self.on_control_reply(seq, tid, result),
                MgmtMsg::TargetStopped { tid } => self.on_target_stopped(tid),
                MgmtMsg::Signal(sig) if sig == SIGHUP => {
                    tracing::info!("SIGHUP: reloading the configuration");
                    self.reload();
                }
                MgmtMsg::Signal(sig) => {
                    tracing::info!(signal = sig, "shutting down");
                    self.stopping = true;
                }
            }
        }
    }

    fn on_accept(&mut self, portal: usize, fd: OwnedFd) {
        let sock = socket2::SockRef::from(&fd);
        let peer = sock.peer_addr().ok().and_then(|a| a.as_socket());
        let local = sock.local_addr().ok().and_then(|a| a.as_socket());
        let (Some(peer), Some(local)) = (peer, local) else {
            return;
        };
        if self.system_offline {
            tracing::info!(%peer, "system is offline; refusing a connection");
            return;
        }
        if self.conns.len() >= LOGIN_CONNS_MAX {
            tracing::warn!(%peer, "too many connections in login; refusing");
            return;
        }
        let _ = sock.set_tcp_nodelay(true);
        let limits = TargetLimits::default();
        let conn = LoginConn {
            fd,
            peer,
            local,
            reader: PduReader::new(LOGIN_DATA_SEGMENT_BYTES_MAX),
            digests: Digests {
                header: false,
                data: false,
            },
            phase: Phase::Login(Box::new(Login::new(limits, PORTAL_GROUP_TAG))),
            out: SendChain::new(),
            sending: false,
            recv: None,
            serial: self.next_serial,
            timer: None,
            last_activity: std::time::Instant::now(),
        };
        self.next_serial = self.next_serial.wrapping_add(1);
        let raw = conn.fd.as_raw_fd();
        let c = self.conns.insert(conn);
        self.arm_deadline(c, self.timeouts.login);
        tracing::debug!(%peer, portal, "connection accepted");
        match self.ring.recv_multi(raw, Token::Recv(c).encode()) {
            Ok(op) => self.conns[c].recv = Some(op),
            Err(e) => {
                tracing::error!("cannot arm a receive: {e}");
                self.conns.remove(c);
            }
        }
    }

    fn on_recv(&mut self, c: usize, result: Result<Option<RecvBuf>, Errno>) {
        match result {
            Ok(Some(buf)) => {
                self.conns[c].last_activity = std::time::Instant::now();
                self.conns[c].reader.push(self.ring.recv_data(&buf));
                self.ring.recycle(buf);
                self.process_input(c);
            }
            Ok(None) | Err(_) => {
                self.conns[c].recv = None;
                if matches!(self.conns[c].phase, Phase::HandingOff { .. }) {
                    self.try_handoff(c);
                } else {
                    self.conns[c].phase = Phase::Closing;
                    self.maybe_free(c);
                }
            }
        }
    }

    fn process_input(&mut self, c: usize) {
        loop {
            let conn = &mut self.conns[c];
            if matches!(conn.phase, Phase::HandingOff { .. } | Phase::Closing) {
                return;
            }
            let pdu = match conn.reader.next_pdu() {
                Ok(Some(p)) => p,
                Ok(None) => return,
                Err(e) => {
                    if self.peer_log.allow() {
                        tracing::warn!(peer = %conn.peer, "protocol error during login or discovery: {e}");
                    }
                    self.close(c);
                    return;
                }
            };
            self.dirty.push(c);
            if matches!(self.conns[c].phase, Phase::Login(_)) {
                self.on_login_pdu(c, pdu);
            } else {
                self.on_discovery_pdu(c, pdu);
            }
        }
    }

    fn on_login_pdu(&mut self, c: usize, pdu: Pdu) {
        let conn = &mut self.conns[c];
        let Phase::Login(login) = &mut conn.phase else {
            unreachable!("checked by the caller");
        };
        let dir = Directory {
            targets: &self.targets,
            discovery: &self.discovery_accounts,
            peer: conn.peer.ip(),
            log: &self.peer_log,
        };
        match login.on_pdu(&pdu, &dir) {
            LoginStep::Continue { bhs, data } => conn.queue(&bhs, &data),
            LoginStep::Fail { bhs, data, reason } => {
                if self.peer_log.allow() {
                    tracing::info!(peer = %conn.peer, "login failed: {reason}");
                }
                conn.queue(&bhs, &data);
                conn.phase = Phase::Closing;
            }
            LoginStep::Ready(outcome) => self.on_login_ready(c, outcome),
        }
    }

    fn on_login_ready(&mut self, c: usize, outcome: Box<LoginOutcome>) {
        match outcome.tid {
            None => {
                self.next_discovery_tsih = self.next_discovery_tsih.wrapping_add(1).max(1);
                let tsih = self.next_discovery_tsih;
                let conn = &mut self.conns[c];
                let Phase::Login(login) = &mut conn.phase else {
                    unreachable!();
                };
                let (bhs, data) = login.finish(tsih);
                conn.queue(&bhs, &data);
                tracing::info!(
                    peer = %conn.peer,
                    initiator = %outcome.params.initiator_name,
                    chap_user = %outcome.chap_user.as_deref().unwrap_or("-"),
                    "discovery session"
                );
                conn.reader
                    .set_max_data_segment_bytes(outcome.params.max_recv_data_segment_len);
                conn.digests = Digests {
                    header: outcome.params.header_digest,
                    data: outcome.params.data_digest,
                };
                conn.reader.set_digests(conn.digests);
                conn.phase = Phase::Discovery(Box::new(DiscoverySession {
                    params: outcome.params.clone(),
                    statsn: outcome.statsn,
                    exp_cmdsn: outcome.exp_cmdsn,
                    text: TextExchange::new(),
                }));
            }
            Some(tid) => self.login_normal(c, tid, outcome),
        }
    }

    fn login_normal(&mut self, c: usize, tid: u32, outcome: Box<LoginOutcome>) {
        let conn = &mut self.conns[c];
        let Some(target) = self.targets.iter_mut().find(|t| t.tid == tid) else {
            conn.phase = Phase::Closing;
            return;
        };
        let key = (
            outcome.params.initiator_name.to_ascii_lowercase(),
            outcome.isid,
        );
        let Phase::Login(login) = &mut conn.phase else {
            unreachable!();
        };
        if outcome.tsih != 0 {
            // Adding a connection to a session: MaxConnections is 1 here.
            let (bhs, data) = login.refuse_too_many_connections();
            conn.queue(&bhs, &data);
            conn.phase = Phase::Closing;
            return;
        }
        if let Some(old) = target.sessions.remove(&key) {
            // Session reinstatement (RFC 7143 §6.3.5): the old session goes first. The
            // target thread handles its mailbox in order, so the close precedes the adopt.
            let _ = target
                .handle
                .tx
                .send(TargetMsg::CloseSession { tsih: old.tsih });
        }
        if target.sessions.len() >= SESSIONS_PER_TARGET_MAX {
            let (bhs, data) = login.refuse_out_of_resources();
            conn.queue(&bhs, &data);
            conn.phase = Phase::Closing;
            return;
        }
        let Some(tsih) = target.allocate_tsih() else {
            let (bhs, data) = login.refuse_out_of_resources();
            conn.queue(&bhs, &data);
            conn.phase = Phase::Closing;
            return;
        };
        target.sessions.insert(
            key,
            SessionRecord {
                tsih,
                cid: outcome.cid,
                peer: conn.peer,
                params: outcome.params.clone(),
            },
        );
        let (bhs, data) = login.finish(tsih);
        conn.queue(&bhs, &data);
        tracing::info!(
            peer = %conn.peer,
            initiator = %outcome.params.initiator_name,
            target = %target.name,
            chap_user = %outcome.chap_user.as_deref().unwrap_or("-"),
            tsih,
            "login"
        );
        conn.phase = Phase::HandingOff { tid, tsih, outcome };
        // Stop receiving here: whatever arrives before the cancel lands is leftover for the
        // target thread, everything after stays in the socket for its ring.
        if let Some(op) = conn.recv {
            let _ = self.ring.cancel(op);
        }
    }

    fn on_discovery_pdu(&mut self, c: usize, p: Pdu) {
        let peer = self.conns[c].peer;
        let local = self.conns[c].local;
        let visible: Vec<DiscoveredTarget> = {
            let conn = &self.conns[c];
            let Phase::Discovery(s) = &conn.phase else {
                return;
            };
            self.targets
                .iter()
                .filter(|t| t.allows(&s.params.initiator_name, peer.ip()))
                .map(|t| DiscoveredTarget {
                    name: t.name.clone(),
                    portals: self
                        .portals
                        .iter()
                        .flatten()
                        .map(|p| {
                            let ip = if p.addr.ip().is_unspecified() {
                                local.ip()
                            } else {
                                p.addr.ip()
                            };
                            (SocketAddr::new(ip, p.addr.port()), PORTAL_GROUP_TAG)
                        })
                        .collect(),
                })
                .collect()
        };
        let conn = &mut self.conns[c];
        let Phase::Discovery(s) = &mut conn.phase else {
            return;
        };
        let max_cmdsn = s
            .exp_cmdsn
            .wrapping_add(crate::iscsi::login::COMMAND_WINDOW - 1);
        match p.bhs.opcode() {
            Some(Opcode::TextReq) => {
                let Ok(req) = TextRequest::parse(&p.bhs) else {
                    self.close(c);
                    return;
                };
                if !req.immediate {
                    s.exp_cmdsn = s.exp_cmdsn.wrapping_add(1);
                }
                let statsn = s.statsn;
                s.statsn = s.statsn.wrapping_add(1);
                let max_xmit = s.params.max_xmit_data_segment_len;
                match s.text.on_request(
                    &req,
                    &p.data,
                    &visible,
                    max_xmit,
                    statsn,
                    s.exp_cmdsn,
                    max_cmdsn,
                ) {
                    Ok((bhs, data)) => conn.queue(&bhs, &data),
                    Err(e) => {
                        tracing::warn!(%peer, "discovery text refused: {e}");
                        self.close(c);
                    }
                }
            }
            Some(Opcode::NopOut) => {
                let Ok(nop) = NopOut::parse(&p.bhs) else {
                    self.close(c);
                    return;
                };
                if !nop.immediate {
                    s.exp_cmdsn = s.exp_cmdsn.wrapping_add(1);
                }
                if nop.itt != 0xffff_ffff {
                    let statsn = s.statsn;
                    s.statsn = s.statsn.wrapping_add(1);
                    let n = p
                        .data
                        .len()
                        .min(s.params.max_xmit_data_segment_len as usize);
                    let bhs = NopIn {
                        lun: nop.lun,
                        itt: nop.itt,
                        ttt: 0xffff_ffff,
                        statsn,
                        exp_cmdsn: s.exp_cmdsn,
                        max_cmdsn,
                        data_segment_len: n as u32,
                    }
                    .encode();
                    conn.queue(&bhs, &p.data[..n]);
                }
            }
            Some(Opcode::LogoutReq) => {
                let Ok(req) = LogoutRequest::parse(&p.bhs) else {
                    self.close(c);
                    return;
                };
                if !req.immediate {
                    s.exp_cmdsn = s.exp_cmdsn.wrapping_add(1);
                }
                let statsn = s.statsn;
                s.statsn = s.statsn.wrapping_add(1);
                let bhs = LogoutResponse {
                    response: 0,
                    itt: req.itt,
                    statsn,
                    exp_cmdsn: s.exp_cmdsn,
                    max_cmdsn,
                    time2wait: 0,
                    time2retain: 0,
                }
                .encode();
                conn.queue(&bhs, &[]);
                conn.phase = Phase::Closing;
            }
            _ => {
                // RFC 7143 §4.4.1: a discovery session carries only Text, NOP and Logout.
                let statsn = s.statsn;
                s.statsn = s.statsn.wrapping_add(1);
                let bhs = Reject {
                    reason: pdu::REJECT_PROTOCOL_ERROR,
                    statsn,
                    exp_cmdsn: s.exp_cmdsn,
                    max_cmdsn,
                    data_segment_len: pdu::BHS_BYTES as u32,
                }
                .encode();
                conn.queue(&bhs, &p.bhs.0);
            }
        }
    }

    fn flush_output(&mut self) {
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
            let raw = conn.fd.as_raw_fd();
            match self.ring.send(raw, Token::Send(c).encode(), chain) {
                Ok(_) => conn.sending = true,
                Err(e) => {
                    tracing::error!("cannot submit a send: {e}");
                    self.close(c);
                }
            }
        }
        dirty.clear();
        self.dirty = dirty;
    }

    fn on_sent(&mut self, c: usize, result: Result<usize, Errno>) {
        let conn = &mut self.conns[c];
        conn.sending = false;
        if let Err(e) = result {
            tracing::debug!(peer = %conn.peer, "send failed: {e}");
            self.close(c);
            return;
        }
        if !conn.out.is_empty() {
            self.dirty.push(c);
            return;
        }
        match conn.phase {
            Phase::HandingOff { .. } => self.try_handoff(c),
            Phase::Closing => self.close(c),
            _ => {}
        }
    }

    /// Hands a logged-in connection to its target thread once nothing of it is left on this
    /// ring.
    fn try_handoff(&mut self, c: usize) {
        let conn = &self.conns[c];
        if conn.sending || conn.recv.is_some() || !conn.out.is_empty() {
            return;
        }
        let mut conn = self.conns.remove(c);
        if let Some(timer) = conn.timer.take() {
            let _ = self.ring.cancel(timer);
        }
        let Phase::HandingOff { tid, tsih, outcome } = conn.phase else {
            unreachable!("checked by the caller");
        };
        let leftover = conn.reader.take_leftover();
        let Some(target) = self.targets.iter_mut().find(|t| t.tid == tid) else {
            return;
        };
        let handoff = Handoff {
            fd: conn.fd,
            peer: conn.peer,
            outcome: *outcome,
            tsih,
            leftover,
        };
        if target
            .handle
            .tx
            .send(TargetMsg::Adopt(Box::new(handoff)))
            .is_err()
        {
            tracing::error!(tid, "target thread is gone; dropping the connection");
            target.sessions.retain(|_, s| s.tsih != tsih);
        }
    }

    fn arm_deadline(&mut self, c: usize, after: std::time::Duration) {
        let serial = self.conns[c].serial;
        match self.ring.timeout(after, Token::Timer(c, serial).encode()) {
            Ok(op) => self.conns[c].timer = Some(op),
            Err(e) => {
                tracing::warn!("cannot arm a login deadline ({e}); closing the connection");
                self.close(c);
            }
        }
    }

    /// A connection's deadline passed: a login that has not finished, a silent discovery
    /// session, or a peer that does not read what it is sent.
    fn on_deadline(&mut self, c: usize, serial: u32) {
        let Some(conn) = self.conns.get_mut(c).filter(|conn| conn.serial == serial) else {
            return;
        };
        conn.timer = None;
        match &conn.phase {
            Phase::Login(_) => {
                tracing::warn!(peer = %conn.peer, "login did not finish in {:?}; closing", self.timeouts.login);
                self.close(c);
            }
            Phase::Discovery(_) => {
                let idle = conn.last_activity.elapsed();
                if idle >= self.timeouts.discovery_idle {
                    tracing::info!(peer = %conn.peer, "discovery session idle for {idle:?}; closing");
                    self.close(c);
                } else {
                    self.arm_deadline(c, self.timeouts.discovery_idle - idle);
                }
            }
            Phase::HandingOff { .. } | Phase::Closing => self.close(c),
        }
    }

    /// Closes a connection: shut the socket so the receive ends, free once nothing is armed.
    fn close(&mut self, c: usize) {
        let conn = &mut self.conns[c];
        conn.phase = Phase::Closing;
        let _ = socket2::SockRef::from(&conn.fd).shutdown(std::net::Shutdown::Both);
        self.maybe_free(c);
    }

    fn maybe_free(&mut self, c: usize) {
        let conn = &self.conns[c];
        if conn.recv.is_none() && !conn.sending {
            if conn.out.is_empty() {
                let conn = self.conns.remove(c);
                if let Some(timer) = conn.timer {
                    let _ = self.ring.cancel(timer);
                }
            } else {
                self.dirty.push(c);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::AddressRule;

    #[test]
    fn address_rules() {
        let r = AddressRule::parse("10.1.0.0/16").unwrap();
        assert!(r.matches("10.1.2.3".parse().unwrap()));
        assert!(!r.matches("10.2.0.1".parse().unwrap()));
        assert!(r.matches("::ffff:10.1.9.9".parse().unwrap()));
        let one = AddressRule::parse("127.0.0.1").unwrap();
        assert!(one.matches("127.0.0.1".parse().unwrap()));
        assert!(!one.matches("127.0.0.2".parse().unwrap()));
        let v6 = AddressRule::parse("[fd00::]/8").unwrap();
        assert!(v6.matches("fd12::1".parse().unwrap()));
        assert!(AddressRule::parse("ALL")
            .unwrap()
            .matches("1.2.3.4".parse().unwrap()));
        assert!(AddressRule::parse("1.2.3.4/33").is_none());
    }
}
