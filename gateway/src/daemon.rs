//! Putting the daemon together: configuration to backing stores, SCSI personalities, target
//! threads, portals and the management loop.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::admin::service::AdminSocket;
use crate::backing::Backing;
use crate::config::{Config, LunConf, TargetConf};
use crate::iscsi::params::TargetLimits;
use crate::mgmt::{LunRecord, Mgmt, MgmtSetup, Portal, TargetEntry};
use crate::msg::MgmtMsg;
use crate::stats::TargetStats;
use crate::target::{self, TargetSetup};

/// Listen backlog of every portal.
pub const LISTEN_BACKLOG: i32 = 1024;

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A LUN's store.
    #[error("target {target} LUN {lun}: {source}")]
    Backing {
        /// Target name.
        target: String,
        /// LUN.
        lun: u64,
        /// What went wrong.
        source: crate::backing::BackingError,
    },
    /// A portal could not be bound.
    #[error("cannot listen on {addr}: {source}{hint}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
        /// What to do about it.
        hint: &'static str,
    },
    /// io_uring cannot be used.
    #[error(transparent)]
    Ring(#[from] gw_uring::RingError),
    /// A thread or mailbox could not be created.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// An iSCSI key in the configuration has a bad value.
    #[error("target {target}: {message}")]
    Key {
        /// Target name.
        target: String,
        /// What is wrong.
        message: String,
    },
}

/// One target's stores: (LUN, store, block size).
pub type LunStores = Vec<(u64, Backing, u32)>;

/// Opens every LUN's store, so that a bad path stops the start with its name.
pub fn open_stores(config: &Config) -> Result<Vec<LunStores>, StartError> {
    config
        .targets
        .iter()
        .map(|t| {
            t.luns
                .iter()
                .map(|l| {
                    Backing::open(l)
                        .map(|b| (l.lun, b, l.settings.block_size))
                        .map_err(|source| StartError::Backing {
                            target: t.name.clone(),
                            lun: l.lun,
                            source,
                        })
                })
                .collect()
        })
        .collect()
}

/// A stable 64-bit value from text (FNV-1a), for identifiers that must survive restarts.
fn stable_hash(text: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The SCSI configuration of one LUN of target `target_name`, served by `backing`.
pub fn lu_config(target_name: &str, conf: &LunConf, backing: &Backing) -> gw_scsi::LuConfig {
    lu_config_sized(target_name, conf, backing.size_bytes, backing.write_cache)
}

/// As [`lu_config`], for a store of `size_bytes` whose writes are cached when `write_cache`.
pub fn lu_config_sized(
    target_name: &str,
    conf: &LunConf,
    size_bytes: u64,
    write_cache: bool,
) -> gw_scsi::LuConfig {
    let s = &conf.settings;
    let lun = conf.lun;
    let block_size = s.block_size;
    let id = stable_hash(&format!("{target_name}/{lun}"));
    gw_scsi::LuConfig {
        lun,
        block_size,
        blocks: size_bytes / u64::from(block_size),
        vendor_id: s.vendor_id.clone().unwrap_or_else(|| "GATEWAY".into()),
        product_id: s
            .product_id
            .clone()
            .unwrap_or_else(|| "GATEWAY DISK".into()),
        product_rev: s.product_rev.clone().unwrap_or_else(|| {
            env!("CARGO_PKG_VERSION")
                .replace('.', "")
                .chars()
                .take(4)
                .collect()
        }),
        serial: s
            .scsi_sn
            .clone()
            .unwrap_or_else(|| format!("gw{:08x}{:04x}", id >> 32, lun)),
        device_id: s.scsi_id.clone(),
        naa_id: id,
        readonly: s.readonly,
        removable: s.removable,
        write_cache,
        thin: thin_provisioned(s),
        optimal_xfer_blocks: (256 << 10) / block_size,
        max_xfer_blocks: target::COMMAND_BYTES_MAX / block_size,
    }
}

/// Whether an LU with these settings is thin provisioned: when asked for, on stores that
/// can deallocate (files and block devices punch holes; null stores hold nothing). Other
/// stores stay fully provisioned whatever the configuration says.
pub fn thin_provisioned(s: &crate::config::LunSettings) -> bool {
    use crate::config::BsType;
    s.thin_provisioning && matches!(s.bs_type, BsType::File | BsType::Direct | BsType::Null)
}

/// An empty SCSI personality (the LUN 0 controller only) for target `tid`.
pub fn empty_scsi_target(tid: u32, name: &str) -> gw_scsi::Target {
    gw_scsi::Target::new(gw_scsi::TargetConfig {
        tid,
        target_name: name.to_string(),
        relative_port_id: 1,
        port_group_id: 1,
    })
}

/// The SCSI personality of one target.
pub fn scsi_target(t: &TargetConf, stores: &[(u64, Backing, u32)]) -> gw_scsi::Target {
    let mut scsi = empty_scsi_target(t.tid, &t.name);
    for (conf, (_, backing, _)) in t.luns.iter().zip(stores) {
        scsi.add_lu(lu_config(&t.name, conf, backing))
            .expect("LUN numbers are unique per target (checked by the configuration)");
    }
    scsi
}

/// The initiator-address rules of a configured target: as tgt-admin does, none given means
/// every address may log in.
pub(crate) fn acl_addresses(t: &TargetConf) -> Vec<String> {
    if t.initiator_addresses.is_empty() {
        vec!["ALL".to_string()]
    } else {
        t.initiator_addresses.clone()
    }
}

/// Starts the thread of a target from the configuration (at start or on reload) and returns
/// what the management thread keeps of it.
pub(crate) fn start_configured_target(
    t: &TargetConf,
    stores: LunStores,
    limits: TargetLimits,
    cpu: Option<usize>,
    nop: crate::target::liveness::Nop,
    state_dir: Option<&Path>,
    to_mgmt: gw_uring::MailboxSender<MgmtMsg>,
) -> std::io::Result<TargetEntry> {
    let scsi = scsi_target(t, &stores);
    let lus: Vec<gw_scsi::LuConfig> = t
        .luns
        .iter()
        .filter_map(|l| scsi.lu_status(l.lun).map(|s| s.cfg))
        .collect();
    let records: Vec<(u64, u64, bool)> = stores
        .iter()
        .map(|(lun, b, _)| (*lun, b.size_bytes, b.writable))
        .collect();
    let stats = Arc::new(TargetStats::default());
    let handle = target::spawn(
        TargetSetup {
            tid: t.tid,
            scsi,
            stores,
            cpu,
            stats: stats.clone(),
            pr_dir: state_dir.map(|d| target::aptpl::target_dir(d, &t.name)),
            nop,
        },
        gw_uring::RingOptions::default(),
        to_mgmt,
    )?;
    let mut entry = TargetEntry::new(t.tid, t.name.clone(), limits, handle, stats);
    entry.from_config = true;
    entry.nop = nop;
    entry.addresses = acl_addresses(t);
    entry.initiator_names = t.initiator_names.clone();
    entry.accounts = t.accounts.clone();
    for ((conf, lu), (lun, size_bytes, opened_rw)) in t.luns.iter().zip(lus).zip(records) {
        entry.luns.insert(
            lun,
            LunRecord {
                conf: conf.clone(),
                lu,
                size_bytes,
                opened_rw,
                online: true,
                backing: None,
            },
        );
    }
    Ok(entry)
}

/// Applies a target's iSCSI keys from the configuration to what its logins offer.
pub fn target_limits(t: &TargetConf) -> Result<TargetLimits, StartError> {
    let mut limits = TargetLimits::default();
    for (key, value) in &t.iscsi_keys {
        limits
            .apply_key(key, value)
            .map_err(|message| StartError::Key {
                target: t.name.clone(),
                message,
            })?;
    }
    Ok(limits)
}

/// Binds a portal.
pub fn bind_portal(addr: SocketAddr) -> Result<Portal, StartError> {
    let listen_err = |source: std::io::Error| {
        let hint = match source.kind() {
            std::io::ErrorKind::AddrInUse => {
                "; another target (tgtd?) listens there: stop it or pick another --portal"
            }
            std::io::ErrorKind::PermissionDenied => {
                "; ports below 1024 need root or CAP_NET_BIND_SERVICE"
            }
            std::io::ErrorKind::AddrNotAvailable => "; no interface of this host has that address",
            _ => "",
        };
        StartError::Listen { addr, source, hint }
    };
    let domain = socket2::Domain::for_address(addr);
    let socket = socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))
        .map_err(listen_err)?;
    socket.set_reuse_address(true).map_err(listen_err)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true).map_err(listen_err)?;
    }
    socket.bind(&addr.into()).map_err(listen_err)?;
    socket.listen(LISTEN_BACKLOG).map_err(listen_err)?;
    let listener: TcpListener = socket.into();
    let bound = listener.local_addr().map_err(listen_err)?;
    Ok(Portal {
        listener,
        addr: bound,
        accept: None,
    })
}

/// Creates the embedded default's sparse LUN files when missing.
pub fn prepare_default_files(config: &Config, lun_bytes: u64) -> std::io::Result<()> {
    for t in &config.targets {
        for l in &t.luns {
            if l.settings.bs_type == crate::config::BsType::Curve {
                // The simulated cluster makes its own volume files.
                continue;
            }
            if let Some(dir) = l.path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            if !l.path.exists() {
                let f = std::fs::File::create(&l.path)?;
                f.set_len(lun_bytes)?;
            }
        }
    }
    Ok(())
}

/// The state directory used when none is given.
pub fn default_state_dir() -> PathBuf {
    if rustix_is_root() {
        return PathBuf::from("/var/lib/gatewayd");
    }
    if let Some(dir) = std::env::var_os("XDG_STATE_HOME") {
        return Path::new(&dir).join("gatewayd");
    }
    match std::env::var_os("HOME") {
        Some(home) => Path::new(&home).join(".local/state/gatewayd"),
        None => PathBuf::from("./gatewayd-state"),
    }
}

fn rustix_is_root() -> bool {
    // The effective user ID, from /proc without unsafe code.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

/// A started daemon, ready to run its management loop.
#[derive(Debug)]
pub struct Daemon {
    /// The management thread's state.
    pub mgmt: Mgmt,
    /// The portals' bound addresses.
    pub portals: Vec<SocketAddr>,
    /// Where signals are forwarded from.
    pub mgmt_tx: gw_uring::MailboxSender<MgmtMsg>,
}

/// How to start the daemon besides its configuration.
#[derive(Debug)]
pub struct StartOptions {
    /// Addresses to listen on.
    pub portals: Vec<SocketAddr>,
    /// CPUs target threads are pinned to, round-robin.
    pub cpus: Vec<usize>,
    /// Login and discovery time limits.
    pub timeouts: crate::mgmt::Timeouts,
    /// The tgtadm socket, if any.
    pub admin: Option<AdminSocket>,
    /// The configuration file, re-read on SIGHUP.
    pub config_path: Option<PathBuf>,
    /// Where state that outlives the daemon is kept.
    pub state_dir: Option<PathBuf>,
    /// Where targets are published for metrics.
    pub registry: Arc<crate::metrics::Registry>,
}

/// Starts target threads and binds portals.
pub fn start(config: &Config, opts: StartOptions) -> Result<Daemon, StartError> {
    let StartOptions {
        portals: portal_addrs,
        cpus,
        timeouts,
        admin,
        config_path,
        state_dir,
        registry,
    } = opts;
    gw_uring::probe()?;
    let stores = open_stores(config)?;
    let (mgmt_tx, inbox) = gw_uring::mailbox::<MgmtMsg>()?;
    let mut entries = Vec::with_capacity(config.targets.len());
    for (i, (t, stores)) in config.targets.iter().zip(stores).enumerate() {
        let limits = target_limits(t)?;
        let cpu = t
            .cpu
            .or_else(|| (!cpus.is_empty()).then(|| cpus[i % cpus.len()]));
        let entry = start_configured_target(
            t,
            stores,
            limits,
            cpu,
            t.nop(timeouts.nop),
            state_dir.as_deref(),
            mgmt_tx.clone(),
        )?;
        entries.push(entry);
    }
    let mut portals = Vec::with_capacity(portal_addrs.len());
    for &addr in &portal_addrs {
        portals.push(bind_portal(addr)?);
    }
    let bound = portals.iter().map(|p| p.addr).collect();
    let ring = gw_uring::Ring::new(&gw_uring::RingOptions {
        recv_buf_bytes: 16 << 10,
        recv_buf_count: 64,
        io_buf_count: 0,
        ..Default::default()
    })?;
    let setup = MgmtSetup {
        timeouts,
        admin,
        to_self: mgmt_tx.clone(),
        cpus: cpus.to_vec(),
        config_path,
        state_dir,
        registry,
    };
    let mut mgmt = Mgmt::new(ring, portals, entries, inbox, setup)?;
    mgmt.set_discovery_accounts(config.discovery_accounts.clone());
    Ok(Daemon {
        mgmt,
        portals: bound,
        mgmt_tx,
    })
}
