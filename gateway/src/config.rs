//! `targets.conf` in tgt's syntax, read natively, and the embedded default used when no
//! configuration is given.
//!
//! The grammar is tgt-admin's: `<target NAME> ... </target>` blocks holding directives, one per
//! line, `#` comments, `include GLOB` and `default-driver iscsi` at top level, and nested
//! `<backing-store PATH> ... </backing-store>` (or `direct-store`) blocks whose directives
//! apply to that LUN only. Directives written at target level apply to every LUN of the
//! target. Anything not understood is an error naming the file, the line and what to write
//! instead: nothing is half applied.
//!
//! Curve volumes are LUNs with `bs-type curve` whose backing store is a Curve volume spec,
//! `cbd:<pool>//<volume>_<owner>_[:<client.conf>]`, and whose `bsopts "..."` selects the
//! backend as `key=value` pairs separated by `;`:
//!
//! ```text
//! <backing-store cbd:pool//iscsi_test_>
//!     bs-type curve
//!     bsopts "backend=libcbd;lib=/usr/lib/libcbd.so;conf=/etc/curve/client.conf"
//! </backing-store>
//! ```
//!
//! `backend=libcbd` (the default) loads Curve's client library at run time (`lib=`, default
//! `libcbd.so` through the dynamic linker's path; `conf=`, default the spec's suffix, else
//! `/etc/curve/client.conf`). `backend=sim` serves the volume from a simulated cluster for
//! tests and demos: `dir=` (required), `size=`, `block=512|4096`, `latency_us=`,
//! `reorder_us=`, `threads=`, `error_every=`, `error_at=`, `hang_at=`, `seed=` (see
//! `curve_client::options`). Curve writes are durable once acknowledged, so a Curve LUN
//! reports no volatile write cache unless `write-cache on` says otherwise.
//!
//! CHAP (RFC 7143 §12.1.3) is configured as tgt-admin knows it: `incominguser USER SECRET`
//! (repeatable) lists the initiators' accounts, and once one is given every login must pass
//! CHAP; `outgoinguser USER SECRET` (at most once) is what the target answers with when an
//! initiator asks for mutual CHAP. Inside a `<target>` block they protect that target; at top
//! level they protect discovery sessions (tgt's discovery account). Secrets are 12 to 255
//! characters: 12 to 16 is what Windows initiators accept, and shorter secrets fall to offline
//! guessing from one captured exchange. An outgoing secret may not repeat an incoming one
//! (RFC 7143 §12.1.3: a secret authenticates in one direction only).
//!
//! Connection liveness is a gateway extension (tgt sets it only with tgtadm): `nop_interval
//! SECS` inside a `<target>` block pings connections idle that long with a NOP-In (0 turns
//! pings off), and `nop_count N` closes a connection after N pings in a row go unanswered.
//! Either one left out takes the daemon's default (`gatewayd --nop-interval`, `--nop-count`).

use std::fmt;
use std::path::{Path, PathBuf};

use crate::iscsi::chap::{Account, Accounts, SECRET_CHARS_MAX, SECRET_CHARS_MIN, USER_BYTES_MAX};
use crate::target::liveness::{Nop, NOP_COUNT_MAX, NOP_INTERVAL_SECS_MAX};

/// Most targets one configuration may declare.
pub const TARGETS_MAX: usize = 256;
/// Most LUNs one target may carry.
pub const LUNS_PER_TARGET_MAX: usize = 255;
/// Deepest chain of `include`s followed.
pub const INCLUDE_DEPTH_MAX: usize = 8;
/// Longest configuration file read, in bytes.
pub const FILE_BYTES_MAX: u64 = 4 << 20;

/// A configuration error: where it is and what to do about it.
#[derive(Debug, thiserror::Error)]
#[error("{file}:{line}: {message}")]
pub struct ConfigError {
    /// File the error is in.
    pub file: PathBuf,
    /// 1-based line number (0 when the file itself could not be read).
    pub line: usize,
    /// What is wrong and what to write instead.
    pub message: String,
}

/// How a LUN's data is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BsType {
    /// A regular file or block device through the page cache (tgt's `rdwr`).
    File,
    /// A regular file or block device opened with O_DIRECT (tgt's `aio`).
    Direct,
    /// No storage: reads return zeros, writes are dropped (protocol-only measurements).
    Null,
    /// A Curve volume, through libcbd or the simulated cluster (`bsopts`).
    Curve,
}

impl BsType {
    fn parse(value: &str) -> Option<BsType> {
        match value {
            "rdwr" | "file" | "mmap" | "sync" => Some(BsType::File),
            "aio" | "direct" => Some(BsType::Direct),
            "null" => Some(BsType::Null),
            "curve" => Some(BsType::Curve),
            _ => None,
        }
    }
}

impl fmt::Display for BsType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BsType::File => "rdwr",
            BsType::Direct => "aio",
            BsType::Null => "null",
            BsType::Curve => "curve",
        })
    }
}

/// Per-LUN settings; the same fields serve as the target-level defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LunSettings {
    /// Storage kind.
    pub bs_type: BsType,
    /// Logical block size in bytes (512 or 4096).
    pub block_size: u32,
    /// Refuse writes.
    pub readonly: bool,
    /// Report a removable medium (RMB), as tgt's `params removable=1`.
    pub removable: bool,
    /// Override the write-cache report (`write-cache on|off`); None: decided by the backing.
    pub write_cache: Option<bool>,
    /// INQUIRY vendor identification.
    pub vendor_id: Option<String>,
    /// INQUIRY product identification.
    pub product_id: Option<String>,
    /// INQUIRY product revision.
    pub product_rev: Option<String>,
    /// Unit serial number (VPD 0x80).
    pub scsi_sn: Option<String>,
    /// Device identifier text (VPD 0x83 T10 vendor designator).
    pub scsi_id: Option<String>,
    /// Size of a `null` LUN in bytes.
    pub null_size_bytes: Option<u64>,
    /// Backend options of a `curve` LUN (`bsopts`), validated when parsed.
    pub bs_opts: Option<String>,
    /// Thin provisioning (tgt's `params thin_provisioning=1`): UNMAP and WRITE SAME with
    /// UNMAP punch holes in the file, and the LU says so (VPD 0xB2, READ CAPACITY 16 LBPME).
    /// Off unless asked for, as in tgt: a drop-in must not change what initiators see, and
    /// punching holes in a preallocated image fragments it.
    pub thin_provisioning: bool,
    /// Serve a block device another program holds (tgt-admin's `allow-in-use yes`).
    pub allow_in_use: bool,
}

impl Default for LunSettings {
    fn default() -> Self {
        LunSettings {
            bs_type: BsType::File,
            block_size: 512,
            readonly: false,
            removable: false,
            write_cache: None,
            vendor_id: None,
            product_id: None,
            product_rev: None,
            scsi_sn: None,
            scsi_id: None,
            null_size_bytes: None,
            bs_opts: None,
            thin_provisioning: false,
            allow_in_use: false,
        }
    }
}

/// One LUN of a target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LunConf {
    /// LUN number (1 and up; LUN 0 is the controller).
    pub lun: u64,
    /// Backing file or device (for `null`, a name only).
    pub path: PathBuf,
    /// Its settings.
    pub settings: LunSettings,
}

/// One target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetConf {
    /// Target ID, 1 and up, in file order.
    pub tid: u32,
    /// The iSCSI qualified name.
    pub name: String,
    /// Its LUNs in LUN order.
    pub luns: Vec<LunConf>,
    /// Initiator addresses allowed to log in (IP or CIDR); empty: any.
    pub initiator_addresses: Vec<String>,
    /// Initiator names allowed to log in; empty: any.
    pub initiator_names: Vec<String>,
    /// iSCSI keys set for this target, by their RFC 7143 names.
    pub iscsi_keys: Vec<(String, String)>,
    /// CPU the target thread is pinned to (gateway extension `cpu N`).
    pub cpu: Option<usize>,
    /// CHAP accounts (`incominguser`, `outgoinguser`); no incoming account: no CHAP.
    pub accounts: Accounts,
    /// `nop_interval SECS` (gateway extension): NOP-In pings after this much silence.
    pub nop_interval: Option<u32>,
    /// `nop_count N` (gateway extension): unanswered pings before a connection is closed.
    pub nop_count: Option<u32>,
}

impl TargetConf {
    /// The ping policy: what the file says, the daemon's `default` for what it leaves out.
    /// Pings turned on by the file under a default that has them off take the standard
    /// count ([`Nop::DEFAULT`]).
    pub fn nop(&self, default: Nop) -> Nop {
        let interval_secs = self.nop_interval.unwrap_or(default.interval_secs);
        let count = match self.nop_count.unwrap_or(default.count) {
            0 if interval_secs != 0 => Nop::DEFAULT.count,
            n => n,
        };
        Nop {
            interval_secs,
            count,
        }
    }
}

/// A whole configuration.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Config {
    /// Targets in file order.
    pub targets: Vec<TargetConf>,
    /// CHAP accounts of discovery sessions (top-level `incominguser`, `outgoinguser`).
    pub discovery_accounts: Accounts,
}

/// The iSCSI keys a target block may set, as tgt-admin passes them to tgtadm.
pub const ISCSI_KEYS: &[&str] = &[
    "MaxRecvDataSegmentLength",
    "MaxXmitDataSegmentLength",
    "HeaderDigest",
    "DataDigest",
    "InitialR2T",
    "MaxOutstandingR2T",
    "ImmediateData",
    "FirstBurstLength",
    "MaxBurstLength",
    "DataPDUInOrder",
    "DataSequenceInOrder",
    "ErrorRecoveryLevel",
    "DefaultTime2Wait",
    "DefaultTime2Retain",
    "MaxConnections",
    "TargetAlias",
];

impl Config {
    /// Reads and validates a configuration file (and what it includes).
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let mut parser = Parser::default();
        parser.file(path, 0)?;
        parser.finish()
    }

    /// Parses configuration text; `origin` names it in errors.
    pub fn parse(origin: &Path, text: &str) -> Result<Config, ConfigError> {
        let mut parser = Parser::default();
        parser.text(origin, text, 0)?;
        parser.finish()
    }

    /// The embedded default, the seed's setup: three targets with one LUN each; target 1
    /// serves Curve volume `cbd:pool//iscsi_test_` from the simulated cluster (its file in
    /// `state_dir/curve-sim`), targets 2 and 3 a sparse file LUN in `state_dir`.
    pub fn embedded_default(state_dir: &Path) -> Config {
        let targets = (1..=3)
            .map(|tid| TargetConf {
                tid,
                name: format!("iqn.2026-11.io.gateway:target{tid}"),
                luns: vec![if tid == 1 {
                    LunConf {
                        lun: 1,
                        path: PathBuf::from("cbd:pool//iscsi_test_"),
                        settings: LunSettings {
                            bs_type: BsType::Curve,
                            bs_opts: Some(format!(
                                "backend=sim;dir={};size=1G",
                                state_dir.join("curve-sim").display()
                            )),
                            ..LunSettings::default()
                        },
                    }
                } else {
                    LunConf {
                        lun: 1,
                        path: state_dir.join(format!("target{tid}-lun1.img")),
                        settings: LunSettings::default(),
                    }
                }],
                initiator_addresses: Vec::new(),
                initiator_names: Vec::new(),
                iscsi_keys: Vec::new(),
                cpu: None,
                accounts: Accounts::default(),
                nop_interval: None,
                nop_count: None,
            })
            .collect();
        Config {
            targets,
            discovery_accounts: Accounts::default(),
        }
    }
}

/// Where a LUN block being parsed stands.
#[derive(Debug)]
struct PendingLun {
    path: PathBuf,
    lun: Option<u64>,
    settings: Option<LunSettings>,
    line: usize,
}

#[derive(Debug)]
struct PendingTarget {
    conf: TargetConf,
    defaults: LunSettings,
    /// LUN blocks in order; settings None means "use the target defaults".
    luns: Vec<PendingLun>,
    file: PathBuf,
    line: usize,
    /// Where the `outgoinguser` is, for errors found when the block closes.
    outgoing_at: Option<(PathBuf, usize)>,
}

#[derive(Debug, Default)]
struct Parser {
    targets: Vec<TargetConf>,
    target: Option<PendingTarget>,
    lun_block: Option<PendingLun>,
    discovery_accounts: Accounts,
    /// Where the top-level `outgoinguser` is.
    discovery_outgoing_at: Option<(PathBuf, usize)>,
}

fn err(file: &Path, line: usize, message: impl Into<String>) -> ConfigError {
    ConfigError {
        file: file.to_path_buf(),
        line,
        message: message.into(),
    }
}

fn parse_bool(value: &str) -> Option<bool> {
    match value.to_ascii_lowercase().as_str() {
        "1" | "yes" | "on" | "true" => Some(true),
        "0" | "no" | "off" | "false" => Some(false),
        _ => None,
    }
}

/// Parses a size such as `1073741824`, `512M`, `1G`, `2T` (binary units).
pub fn parse_size(value: &str) -> Option<u64> {
    let value = value.trim();
    let (digits, shift) = match value.char_indices().last()? {
        (i, 'k' | 'K') => (&value[..i], 10),
        (i, 'm' | 'M') => (&value[..i], 20),
        (i, 'g' | 'G') => (&value[..i], 30),
        (i, 't' | 'T') => (&value[..i], 40),
        _ => (value, 0),
    };
    let n: u64 = digits.parse().ok()?;
    n.checked_mul(1u64 << shift)
}

impl Parser {
    fn file(&mut self, path: &Path, depth: usize) -> Result<(), ConfigError> {
        let meta = std::fs::metadata(path)
            .map_err(|e| err(path, 0, format!("cannot read the configuration: {e}")))?;
        if meta.len() > FILE_BYTES_MAX {
            return Err(err(
                path,
                0,
                format!("file is larger than {FILE_BYTES_MAX} bytes; is it really a targets.conf?"),
            ));
        }
        let text = std::fs::read_to_string(path)
            .map_err(|e| err(path, 0, format!("cannot read the configuration: {e}")))?;
        self.text(path, &text, depth)
    }

    fn text(&mut self, file: &Path, text: &str, depth: usize) -> Result<(), ConfigError> {
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let content = match raw.find('#') {
                Some(at) => &raw[..at],
                None => raw,
            }
            .trim();
            if content.is_empty() {
                continue;
            }
            self.line(file, line, content, depth)?;
        }
        if depth == 0 {
            if let Some(t) = &self.target {
                return Err(err(
                    &t.file,
                    t.line,
                    format!("<target {}> is never closed: add </target>", t.conf.name),
                ));
            }
        }
        Ok(())
    }

    fn line(
        &mut self,
        file: &Path,
        line: usize,
        content: &str,
        depth: usize,
    ) -> Result<(), ConfigError> {
        if let Some(inner) = content.strip_prefix('<') {
            let inner = inner
                .strip_suffix('>')
                .ok_or_else(|| err(file, line, format!("`{content}` has no closing `>`")))?;
            return self.tag(file, line, inner.trim());
        }
        let (key, value) = match content.split_once(char::is_whitespace) {
            Some((k, v)) => (k, v.trim()),
            None => (content, ""),
        };
        if self.target.is_none() {
            return self.top_level(file, line, key, value, depth);
        }
        self.directive(file, line, key, value)
    }

    fn top_level(
        &mut self,
        file: &Path,
        line: usize,
        key: &str,
        value: &str,
        depth: usize,
    ) -> Result<(), ConfigError> {
        match key {
            "default-driver" => {
                if value != "iscsi" {
                    return Err(err(
                        file,
                        line,
                        format!("default-driver `{value}` is not served here; write `default-driver iscsi`"),
                    ));
                }
                Ok(())
            }
            "include" => {
                if depth + 1 > INCLUDE_DEPTH_MAX {
                    return Err(err(
                        file,
                        line,
                        format!("includes nest deeper than {INCLUDE_DEPTH_MAX}; is there a loop?"),
                    ));
                }
                let base = file.parent().unwrap_or(Path::new("."));
                let pattern = if Path::new(value).is_absolute() {
                    PathBuf::from(value)
                } else {
                    base.join(value)
                };
                for path in expand_glob(&pattern)
                    .map_err(|m| err(file, line, format!("include {value}: {m}")))?
                {
                    self.file(&path, depth + 1)?;
                }
                Ok(())
            }
"incominguser" | "outgoinguser" => {
                let at = (file.to_path_buf(), line);
                add_account(
                    &mut self.discovery_accounts,
                    &mut self.discovery_outgoing_at,
                    at,
                    key,
                    value,
                )
            }
            "ignore-errors" | "control-port" | "iSNSServerIP" | "iSNSServerPort"
            | "iSNSAccessControl" | "iSNS" => Err(err(
                file,
                line,
                format!("`{key}` is a tgt-admin global that gatewayd does not use; remove it"),
            )),
            _ => Err(err(
                file,
                line,
                format!("`{key}` outside a <target> block; only `include`, `default-driver`, `incominguser` and `outgoinguser` (discovery CHAP) belong here"),
            )),
        }
    }

    fn tag(&mut self, file: &Path, line: usize, inner: &str) -> Result<(), ConfigError> {
        let (tag, arg) = match inner.split_once(char::is_whitespace) {
            Some((t, a)) => (t, a.trim()),
            None => (inner, ""),
        };
        match tag {
            "target" => {
                if self.target.is_some() {
                    return Err(err(file, line, "<target> inside another <target>: close the first with </target>"));
                }
                if !valid_target_name(arg) {
                    return Err(err(
                        file,
                        line,
                        format!("`{arg}` is not a valid iSCSI name; write e.g. <target iqn.2026-11.com.example:disk1>"),
                    ));
                }
                if self.targets.iter().any(|t| t.name.eq_ignore_ascii_case(arg)) {
                    return Err(err(file, line, format!("target {arg} is declared twice")));
                }
                if self.targets.len() >= TARGETS_MAX {
                    return Err(err(file, line, format!("more than {TARGETS_MAX} targets")));
                }
                self.target = Some(PendingTarget {
                    conf: TargetConf {
                        tid: self.targets.len() as u32 + 1,
                        name: arg.to_ascii_lowercase(),
                        luns: Vec::new(),
                        initiator_addresses: Vec::new(),
                        initiator_names: Vec::new(),
                        iscsi_keys: Vec::new(),
                        cpu: None,
                        accounts: Accounts::default(),
                        nop_interval: None,
                        nop_count: None,
                    },
                    defaults: LunSettings::default(),
                    luns: Vec::new(),
                    file: file.to_path_buf(),
                    line,
                    outgoing_at: None,
                });
                Ok(())
            }
            "/target" => {
                if self.lun_block.is_some() {
                    return Err(err(file, line, "</target> while a <backing-store> block is open: close it first"));
                }
                let pending = self
                    .target
                    .take()
                    .ok_or_else(|| err(file, line, "</target> without a <target>"))?;
                let target = finish_target(pending)?;
                self.targets.push(target);
                Ok(())
            }
            "backing-store" | "direct-store" => {
                let target = self.target.as_mut().ok_or_else(|| {
                    err(file, line, format!("<{tag}> outside a <target> block"))
                })?;
                if self.lun_block.is_some() {
                    return Err(err(file, line, format!("<{tag}> inside another LUN block")));
                }
                if arg.is_empty() {
                    return Err(err(file, line, format!("<{tag}> needs a path: <{tag} /dev/sdb>")));
                }
                self.lun_block = Some(PendingLun {
                    path: PathBuf::from(arg),
                    lun: None,
                    settings: Some(target.defaults.clone()),
                    line,
                });
                Ok(())
            }
            "/backing-store" | "/direct-store" => {
                let block = self
                    .lun_block
                    .take()
                    .ok_or_else(|| err(file, line, format!("<{tag}> without its opening tag")))?;
                let target = self.target.as_mut().expect("LUN blocks open only inside targets");
                target.luns.push(block);
                Ok(())
            }
            _ => Err(err(
                file,
                line,
                format!("unknown block <{tag}>; blocks are <target>, <backing-store> and <direct-store>"),
            )),
        }
    }

    fn directive(
        &mut self,
        file: &Path,
        line: usize,
        key: &str,
        value: &str,
    ) -> Result<(), ConfigError> {
        let need = |what: &str| -> Result<(), ConfigError> {
            if value.is_empty() {
                Err(err(file, line, format!("`{key}` needs {what}")))
            } else {
                Ok(())
            }
        };
        let in_lun = self.lun_block.is_some();
        let target = self
            .target
            .as_mut()
            .expect("directives are parsed inside targets");
        let settings = match self.lun_block.as_mut() {
            Some(block) => block.settings.as_mut().expect("LUN blocks carry settings"),
            None => &mut target.defaults,
        };
        match key {
            "backing-store" | "direct-store" => {
                need("a path")?;
                if in_lun {
                    return Err(err(file, line, format!("`{key}` inside a LUN block")));
                }
                target.luns.push(PendingLun {
                    path: PathBuf::from(value),
                    lun: None,
                    settings: None,
                    line,
                });
            }
            "lun" => {
                let n: u64 = value.parse().map_err(|_| {
                    err(
                        file,
                        line,
                        format!("lun `{value}` is not a number; write e.g. `lun 1`"),
                    )
                })?;
                if n == 0 || n > 16383 {
                    return Err(err(
                        file,
                        line,
                        format!("lun {n} is out of range: LUN 0 is the controller, use 1 to 16383"),
                    ));
                }
                match self.lun_block.as_mut() {
                    Some(block) => block.lun = Some(n),
                    None => return Err(err(
                        file,
                        line,
                        "`lun` belongs inside a <backing-store PATH> ... </backing-store> block",
                    )),
                }
            }
            "bs-type" => {
                settings.bs_type = BsType::parse(value).ok_or_else(|| {
                    err(
                        file,
                        line,
                        format!("bs-type `{value}` is not known; use rdwr (buffered file), aio (O_DIRECT), null or curve"),
                    )
                })?;
            }
            "bsopts" => {
                need("backend options, e.g. \"backend=sim;dir=/var/lib/curve-sim\"")?;
                let text = value.trim().trim_matches('"');
                curve_client::BackendOptions::parse(text).map_err(|e| {
                    err(file, line, format!("{e} (bsopts applies to bs-type curve)"))
                })?;
                settings.bs_opts = Some(text.to_string());
            }
            "bsoflags" => {
                // tgt's open flags: `direct` is O_DIRECT (our `aio` store); `sync` (O_SYNC)
                // is not offered: `write-cache off` makes every write durable instead.
                for flag in value.split(':').map(str::trim).filter(|f| !f.is_empty()) {
                    match flag {
                        "direct" => settings.bs_type = BsType::Direct,
                        other => {
                            return Err(err(
                                file,
                                line,
                                format!("bsoflags `{other}` is not supported; write `direct`, or use `write-cache off` for synchronous writes"),
                            ))
                        }
                    }
                }
            }
            "driver" => {
                if value != "iscsi" {
                    return Err(err(
                        file,
                        line,
                        format!("driver `{value}` is not served here; write `driver iscsi`"),
                    ));
                }
            }
            "device-type" => {
                if value != "disk" {
                    return Err(err(
                        file,
                        line,
                        format!("device-type `{value}` is not served; gatewayd serves disks (`device-type disk`)"),
                    ));
                }
            }
            "allow-in-use" => {
                // tgt-admin refuses a device another program holds unless this is yes;
                // gatewayd opens block devices with O_EXCL unless it is (see backing.rs).
                settings.allow_in_use = parse_bool(value).ok_or_else(|| {
                    err(
                        file,
                        line,
                        format!("allow-in-use `{value}`: write yes or no"),
                    )
                })?;
            }
            "mode_page" => {
                // tgt-admin's form PAGE:SUBPAGE:LENGTH:BYTE...; the caching page (8) is the
                // one settable here (its WCE bit, as `write-cache`).
                let fields: Option<Vec<u32>> = value
                    .split(':')
                    .map(|f| match f.trim().strip_prefix("0x") {
                        Some(hex) => u32::from_str_radix(hex, 16).ok(),
                        None => f.trim().parse().ok(),
                    })
                    .collect();
                match fields.as_deref() {
                    Some([8, 0, _len, flags, ..]) => settings.write_cache = Some(flags & 0x04 != 0),
                    _ => {
                        return Err(err(
                            file,
                            line,
                            format!("mode_page `{value}`: only the caching page is settable, e.g. `mode_page 8:0:18:0x10:...` (or use `write-cache on|off`)"),
                        ))
                    }
                }
            }
            "block-size" => {
                let n: u32 = value.parse().unwrap_or(0);
                if !matches!(n, 512 | 1024 | 2048 | 4096) {
                    return Err(err(
                        file,
                        line,
                        format!(
                            "block-size `{value}` is not supported; use 512, 1024, 2048 or 4096"
                        ),
                    ));
                }
                settings.block_size = n;
            }
            "readonly" => {
                settings.readonly = parse_bool(value)
                    .ok_or_else(|| err(file, line, format!("readonly `{value}`: write 0 or 1")))?;
            }
            "removable" => {
                settings.removable = parse_bool(value)
                    .ok_or_else(|| err(file, line, format!("removable `{value}`: write 0 or 1")))?;
            }
            "thin_provisioning" => {
                settings.thin_provisioning = parse_bool(value).ok_or_else(|| {
                    err(
                        file,
                        line,
                        format!("thin_provisioning `{value}`: write 0 or 1"),
                    )
                })?;
            }
            "write-cache" => {
                settings.write_cache = Some(parse_bool(value).ok_or_else(|| {
                    err(
                        file,
                        line,
                        format!("write-cache `{value}`: write on or off"),
                    )
                })?);
            }
            "vendor_id" => {
                need("a value")?;
                settings.vendor_id = Some(value.to_string());
            }
            "product_id" => {
                need("a value")?;
                settings.product_id = Some(value.to_string());
            }
            "product_rev" => {
                need("a value")?;
                settings.product_rev = Some(value.to_string());
            }
            "scsi_sn" => {
                need("a value")?;
                settings.scsi_sn = Some(value.to_string());
            }
            "scsi_id" => {
                need("a value")?;
                settings.scsi_id = Some(value.to_string());
            }
            "size" => {
                settings.null_size_bytes = Some(parse_size(value).ok_or_else(|| {
                    err(
                        file,
                        line,
                        format!("size `{value}`: write bytes or e.g. 16G"),
                    )
                })?);
            }
            "params" => {
                for pair in value.split(',') {
                    let (k, v) = pair.split_once('=').ok_or_else(|| {
                        err(file, line, format!("params `{pair}`: write name=value"))
                    })?;
                    let b = || {
                        parse_bool(v.trim()).ok_or_else(|| {
                            err(file, line, format!("params {k}=`{v}`: write 0 or 1"))
                        })
                    };
                    match k.trim() {
                        "removable" => settings.removable = b()?,
                        "readonly" => settings.readonly = b()?,
                        "thin_provisioning" => settings.thin_provisioning = b()?,
                        "vendor_id" => settings.vendor_id = Some(v.trim().to_string()),
                        "product_id" => settings.product_id = Some(v.trim().to_string()),
                        "product_rev" => settings.product_rev = Some(v.trim().to_string()),
                        "scsi_sn" => settings.scsi_sn = Some(v.trim().to_string()),
                        "scsi_id" => settings.scsi_id = Some(v.trim().to_string()),
                        other => {
                            return Err(err(
                                file,
                                line,
                                format!("params `{other}` is not supported; known: removable, readonly, thin_provisioning, vendor_id, product_id, product_rev, scsi_sn, scsi_id"),
                            ))
                        }
                    }
                }
            }
            "initiator-address" if !in_lun => {
                need("an address or CIDR")?;
                validate_address(value).map_err(|m| err(file, line, m))?;
                target.conf.initiator_addresses.push(value.to_string());
            }
            "initiator-name" if !in_lun => {
                need("an initiator name")?;
                target.conf.initiator_names.push(value.to_string());
            }
            "cpu" if !in_lun => {
                target.conf.cpu = Some(value.parse().map_err(|_| {
                    err(
                        file,
                        line,
                        format!("cpu `{value}`: write a CPU number such as `cpu 1`"),
                    )
                })?);
            }
            "nop_interval" if !in_lun => {
                let secs = value
                    .parse::<u32>()
                    .ok()
                    .filter(|s| *s <= NOP_INTERVAL_SECS_MAX)
                    .ok_or_else(|| {
                        err(
                            file,
                            line,
                            format!("nop_interval `{value}`: write seconds from 0 (no pings) to {NOP_INTERVAL_SECS_MAX}, e.g. `nop_interval 30`"),
                        )
                    })?;
                target.conf.nop_interval = Some(secs);
            }
            "nop_count" if !in_lun => {
                let count = value
                    .parse::<u32>()
                    .ok()
                    .filter(|n| (1..=NOP_COUNT_MAX).contains(n))
                    .ok_or_else(|| {
                        err(
                            file,
                            line,
                            format!("nop_count `{value}`: write how many unanswered pings close a connection, 1 to {NOP_COUNT_MAX}, e.g. `nop_count 3`"),
                        )
                    })?;
                target.conf.nop_count = Some(count);
            }
            _ if !in_lun && ISCSI_KEYS.iter().any(|k| k.eq_ignore_ascii_case(key)) => {
                need("a value")?;
                let canonical = ISCSI_KEYS
                    .iter()
                    .find(|k| k.eq_ignore_ascii_case(key))
                    .expect("matched above");
                target
                    .conf
                    .iscsi_keys
                    .push((canonical.to_string(), value.to_string()));
            }
            "incominguser" | "outgoinguser" if !in_lun => {
                let at = (file.to_path_buf(), line);
                add_account(
                    &mut target.conf.accounts,
                    &mut target.outgoing_at,
                    at,
                    key,
                    value,
                )?;
            }
            _ => {
                return Err(err(
                    file,
                    line,
                    format!(
                        "unknown directive `{key}`{}",
                        if in_lun { " in a LUN block" } else { "" }
                    ),
                ))
            }
        }
        Ok(())
    }

    fn finish(self) -> Result<Config, ConfigError> {
        check_accounts(
            &self.discovery_accounts,
            self.discovery_outgoing_at.as_ref(),
            "discovery (top level)",
        )?;
        Ok(Config {
            targets: self.targets,
            discovery_accounts: self.discovery_accounts,
        })
    }
}

/// Parses `incominguser USER SECRET` or `outgoinguser USER SECRET` into `accounts`.
fn add_account(
    accounts: &mut Accounts,
    outgoing_at: &mut Option<(PathBuf, usize)>,
    at: (PathBuf, usize),
    key: &str,
    value: &str,
) -> Result<(), ConfigError> {
    let (file, line) = (&at.0, at.1);
    let fields: Vec<&str> = value.split_whitespace().collect();
    let [user, secret] = fields[..] else {
        return Err(err(
            file,
            line,
            format!("`{key}` takes a user and a secret: write `{key} USER SECRET` (no spaces inside either)"),
        ));
    };
    if user.len() > USER_BYTES_MAX {
        return Err(err(
            file,
            line,
            format!("{key}: the user name is longer than {USER_BYTES_MAX} bytes; shorten it"),
        ));
    }
    let n = secret.chars().count();
    if !(SECRET_CHARS_MIN..=SECRET_CHARS_MAX).contains(&n) {
        return Err(err(
            file,
            line,
            format!(
                "{key} {user}: the secret has {n} characters; write {SECRET_CHARS_MIN} to {SECRET_CHARS_MAX} (12 to 16 if Windows initiators log in)"
            ),
        ));
    }
    let account = Account {
        user: user.to_string(),
        secret: secret.to_string(),
    };
    if key == "incominguser" {
        if accounts.incoming.iter().any(|a| a.user == user) {
            return Err(err(
                file,
                line,
                format!("incominguser {user} is declared twice; keep one"),
            ));
        }
        accounts.incoming.push(account);
    } else {
        if accounts.outgoing.is_some() {
            return Err(err(
                file,
                line,
                "a second `outgoinguser`: the target answers mutual CHAP with one account; keep one",
            ));
        }
        accounts.outgoing = Some(account);
        *outgoing_at = Some(at);
    }
    Ok(())
}

/// Checks what only a whole block shows: an outgoing account needs incoming ones, and its
/// secret must differ from theirs.
fn check_accounts(
    accounts: &Accounts,
    outgoing_at: Option<&(PathBuf, usize)>,
    whose: &str,
) -> Result<(), ConfigError> {
    let (Some(outgoing), Some((file, line))) = (&accounts.outgoing, outgoing_at) else {
        return Ok(());
    };
    if accounts.incoming.is_empty() {
        return Err(err(
            file,
            *line,
            format!("outgoinguser for {whose} without an incominguser: mutual CHAP first authenticates the initiator; add `incominguser USER SECRET`"),
        ));
    }
    if accounts
        .incoming
        .iter()
        .any(|a| a.secret == outgoing.secret)
    {
        return Err(err(
            file,
            *line,
            format!("outgoinguser for {whose} reuses an incominguser's secret; RFC 7143 §12.1.3 forbids one secret in both directions: choose another"),
        ));
    }
    Ok(())
}

fn finish_target(pending: PendingTarget) -> Result<TargetConf, ConfigError> {
    let PendingTarget {
        mut conf,
        defaults,
        luns,
        file,
        line: _,
        outgoing_at,
    } = pending;
    check_accounts(
        &conf.accounts,
        outgoing_at.as_ref(),
        &format!("<target {}>", conf.name),
    )?;
    let mut next = 1;
    for block in luns {
        let lun = block.lun.unwrap_or(next);
        if conf.luns.iter().any(|l| l.lun == lun) {
            return Err(err(
                &file,
                block.line,
                format!("LUN {lun} of {} is declared twice", conf.name),
            ));
        }
        if conf.luns.len() >= LUNS_PER_TARGET_MAX {
            return Err(err(
                &file,
                block.line,
                format!("more than {LUNS_PER_TARGET_MAX} LUNs"),
            ));
        }
        next = next.max(lun + 1);
        conf.luns.push(LunConf {
            lun,
            path: block.path,
            settings: block.settings.unwrap_or_else(|| defaults.clone()),
        });
    }
    conf.luns.sort_by_key(|l| l.lun);
    Ok(conf)
}

/// RFC 7143 §4.2.7: `iqn.` or `eui.` or `naa.` names, printable, no spaces, at most 223 bytes.
pub fn valid_target_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    (lower.starts_with("iqn.") || lower.starts_with("eui.") || lower.starts_with("naa."))
        && name.len() <= 223
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':'))
}

fn validate_address(value: &str) -> Result<(), String> {
    if value.eq_ignore_ascii_case("ALL") {
        return Ok(());
    }
    let (ip, prefix) = match value.split_once('/') {
        Some((ip, p)) => (ip, Some(p)),
        None => (value, None),
    };
    let ip = ip.trim_start_matches('[').trim_end_matches(']');
    let addr: std::net::IpAddr = ip
        .parse()
        .map_err(|_| format!("initiator-address `{value}` is not an IP address or CIDR"))?;
    if let Some(p) = prefix {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        match p.parse::<u8>() {
            Ok(n) if n <= max => {}
            _ => {
                return Err(format!(
                    "initiator-address `{value}`: prefix must be 0 to {max}"
                ))
            }
        }
    }
    Ok(())
}

/// Expands `*` and `?` in the last path component (what `include /etc/tgt/conf.d/*.conf`
/// needs); a pattern without wildcards must name an existing file.
fn expand_glob(pattern: &Path) -> Result<Vec<PathBuf>, String> {
    let name = pattern
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or("not a file name")?;
    if !name.contains(['*', '?']) {
        return Ok(vec![pattern.to_path_buf()]);
    }
    let dir = pattern.parent().unwrap_or(Path::new("."));
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(format!("{}: {e}", dir.display())),
    };
    for entry in entries.flatten() {
        if let Some(n) = entry.file_name().to_str() {
            if wildcard_match(name.as_bytes(), n.as_bytes()) {
                out.push(entry.path());
            }
        }
    }
    out.sort();
    Ok(out)
}

fn wildcard_match(pattern: &[u8], name: &[u8]) -> bool {
    match (pattern.first(), name.first()) {
        (None, None) => true,
        (Some(b'*'), _) => {
            wildcard_match(&pattern[1..], name)
                || (!name.is_empty() && wildcard_match(pattern, &name[1..]))
        }
        (Some(b'?'), Some(_)) => wildcard_match(&pattern[1..], &name[1..]),
        (Some(p), Some(n)) if p == n => wildcard_match(&pattern[1..], &name[1..]),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("t.conf"), text)
    }

    #[test]
    fn targets_and_luns_in_order() {
        let c = parse(
            "default-driver iscsi\n\
             <target iqn.2026-11.io.gateway:a>\n  backing-store /a1 # first\n  backing-store /a2\n  bs-type aio\n  initiator-address 127.0.0.1\n  HeaderDigest CRC32C\n</target>\n\
             <target iqn.2026-11.io.gateway:b>\n  <backing-store /b5>\n    lun 5\n    block-size 4096\n  </backing-store>\n  cpu 1\n</target>\n",
        )
        .unwrap();
        assert_eq!(c.targets.len(), 2);
        let a = &c.targets[0];
        assert_eq!((a.tid, a.luns.len()), (1, 2));
        assert_eq!(a.luns[1].lun, 2);
        assert_eq!(
            a.luns[0].settings.bs_type,
            BsType::Direct,
            "target defaults apply"
        );
        assert_eq!(a.iscsi_keys, vec![("HeaderDigest".into(), "CRC32C".into())]);
        let b = &c.targets[1];
        assert_eq!(b.luns[0].lun, 5);
        assert_eq!(b.luns[0].settings.block_size, 4096);
        assert_eq!(b.cpu, Some(1));
    }

    #[test]
    fn thin_provisioning_as_params_or_directive() {
        let c = parse(
            "<target iqn.2026-11.x:a>\n <backing-store /a1>\n  params thin_provisioning=1,removable=1\n </backing-store>\n <backing-store /a2>\n  thin_provisioning 1\n </backing-store>\n backing-store /a3\n</target>\n",
        )
        .unwrap();
        let luns = &c.targets[0].luns;
        assert!(luns[0].settings.thin_provisioning && luns[0].settings.removable);
        assert!(luns[1].settings.thin_provisioning);
        assert!(
            !luns[2].settings.thin_provisioning,
            "off by default, as in tgt"
        );
        let e = parse("<target iqn.2026-11.x:a>\n backing-store /a\n params thin_provisioning=maybe\n</target>\n")
            .unwrap_err();
        assert!(e.to_string().contains("write 0 or 1"), "{e}");
    }

    #[test]
    fn nop_directives_override_the_daemon_default() {
        let c = parse(
            "<target iqn.2026-11.io.gateway:a>\n  nop_interval 5\n  nop_count 2\n</target>\n\
             <target iqn.2026-11.io.gateway:b>\n  nop_interval 0\n</target>\n\
             <target iqn.2026-11.io.gateway:c>\n  nop_interval 7\n</target>\n\
             <target iqn.2026-11.io.gateway:d>\n</target>\n",
        )
        .unwrap();
        let nop = |i: usize, default: Nop| c.targets[i].nop(default);
        assert_eq!(nop(0, Nop::DEFAULT), Nop::new(5, 2).unwrap());
        assert_eq!(nop(1, Nop::DEFAULT), Nop::new(0, 3).unwrap());
        assert!(!nop(1, Nop::DEFAULT).is_on());
        assert_eq!(nop(2, Nop::OFF), Nop::new(7, Nop::DEFAULT.count).unwrap());
        assert_eq!(nop(3, Nop::OFF), Nop::OFF);
        assert_eq!(nop(3, Nop::DEFAULT), Nop::DEFAULT);
        for bad in [
            "nop_interval -1",
            "nop_interval 3601",
            "nop_count 0",
            "nop_count x",
        ] {
            let e = parse(&format!("<target iqn.2026-11.x:a>\n  {bad}\n</target>\n")).unwrap_err();
            assert!(e.to_string().contains(":2"), "{bad}: {e}");
        }
    }

    #[test]
    fn errors_name_line_and_fix() {
        let e = parse("<target iqn.2026-11.x:a>\n  frobnicate 1\n</target>\n").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(
            e.to_string().contains("unknown directive `frobnicate`"),
            "{e}"
        );
        let e = parse("<target iqn.2026-11.x:a>\n bs-type tape\n</target>\n").unwrap_err();
        assert!(e.to_string().contains("rdwr"), "{e}");
        let e = parse("<target iqn.2026-11.x:a>\n").unwrap_err();
        assert!(e.to_string().contains("never closed"), "{e}");
        let e = parse("<target bad name>\n</target>\n").unwrap_err();
        assert_eq!(e.line, 1);
        let e = parse(
            "<target iqn.2026-11.x:a>\n <backing-store /x>\n lun 0\n </backing-store>\n</target>",
        )
        .unwrap_err();
        assert!(e.to_string().contains("controller"), "{e}");
    }

    #[test]
    fn chap_accounts() {
        let c = parse(
            "incominguser disco discovery-secret\n\
             <target iqn.2026-11.x:a>\n backing-store /a\n incominguser alice alice-secret-1\n incominguser bob bob-secret-123\n outgoinguser tgt target-secret-1\n</target>\n\
             <target iqn.2026-11.x:b>\n backing-store /b\n</target>\n",
        )
        .unwrap();
        assert_eq!(c.discovery_accounts.incoming.len(), 1);
        assert_eq!(c.discovery_accounts.incoming[0].user, "disco");
        assert!(c.discovery_accounts.outgoing.is_none());
        let a = &c.targets[0].accounts;
        assert_eq!(
            a.incoming
                .iter()
                .map(|x| x.user.as_str())
                .collect::<Vec<_>>(),
            ["alice", "bob"]
        );
        assert_eq!(a.incoming[1].secret, "bob-secret-123");
        assert_eq!(a.outgoing.as_ref().unwrap().user, "tgt");
        assert!(!c.targets[1].accounts.required());

        let target = |body: &str| parse(&format!("<target iqn.2026-11.x:a>\n{body}</target>\n"));
        let cases = [
            (" incominguser alice short\n", 2, "write 12 to 255"),
            (" incominguser alice\n", 2, "USER SECRET"),
            (" incominguser alice a-secret-1234 extra\n", 2, "USER SECRET"),
            (
                " incominguser alice a-secret-1234\n incominguser alice b-secret-1234\n",
                3,
                "declared twice",
            ),
            (
                " incominguser alice a-secret-1234\n outgoinguser t t-secret-12345\n outgoinguser u u-secret-12345\n",
                4,
                "second `outgoinguser`",
            ),
            (" outgoinguser t t-secret-12345\n", 2, "without an incominguser"),
            (
                " outgoinguser t same-secret-123\n incominguser alice same-secret-123\n",
                2,
                "reuses",
            ),
            (
                " <backing-store /x>\n incominguser alice a-secret-1234\n </backing-store>\n",
                3,
                "in a LUN block",
            ),
        ];
        for (body, line, says) in cases {
            let e = target(body).unwrap_err();
            assert_eq!(e.line, line, "{body}: {e}");
            assert!(e.to_string().contains(says), "{body}: {e}");
        }
        let long = "s".repeat(SECRET_CHARS_MAX + 1);
        assert!(target(&format!(" incominguser alice {long}\n")).is_err());
        let e = parse("outgoinguser t t-secret-12345\n").unwrap_err();
        assert!(e.to_string().contains("discovery"), "{e}");
        assert_eq!(e.line, 1);
    }

    #[test]
    fn sizes_and_globs() {
        assert_eq!(parse_size("1G"), Some(1 << 30));
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size("x"), None);
        assert!(wildcard_match(b"*.conf", b"a.conf"));
        assert!(!wildcard_match(b"*.conf", b"a.conf~"));
    }

    #[test]
    fn tgt_admin_lun_directives() {
        let c = parse(
            "<target iqn.2026-11.io.t:d>\ndriver iscsi\n<backing-store /dev/sdz>\nbsoflags direct\ndevice-type disk\nallow-in-use yes\nmode_page 8:0:18:0x10:0:0xff:0xff:0:0:0xff:0xff:0xff:0xff:0x80:0x14:0:0:0:0:0:0\n</backing-store>\n</target>\n",
        )
        .unwrap();
        let s = &c.targets[0].luns[0].settings;
        assert_eq!(s.bs_type, BsType::Direct);
        assert!(s.allow_in_use);
        assert_eq!(s.write_cache, Some(false));
        for bad in [
            "bsoflags sync",
            "device-type tape",
            "mode_page 10:0:10:0",
            "allow-in-use maybe",
        ] {
            let text = format!("<target iqn.2026-11.io.t:d>\n<backing-store /x>\n{bad}\n</backing-store>\n</target>\n");
            let e = parse(&text).unwrap_err().to_string();
            assert!(e.contains(":3:"), "{bad}: {e}");
        }
        assert!(parse("<target iqn.2026-11.io.t:d>\ndriver iser\n</target>\n").is_err());
    }

    #[test]
    fn shipped_example_parses() {
        let c = parse(include_str!("../../deploy/targets.conf")).unwrap();
        assert_eq!(c.targets.len(), 3);
        assert!(c.targets.iter().all(|t| t.luns.len() == 1));
    }

    #[test]
    fn default_has_three_targets() {
        let c = Config::embedded_default(Path::new("/tmp/s"));
        assert_eq!(c.targets.len(), 3);
        assert_eq!(c.targets[2].name, "iqn.2026-11.io.gateway:target3");
        let curve = &c.targets[0].luns[0];
        assert_eq!(curve.settings.bs_type, BsType::Curve);
        let opts = curve_client::BackendOptions::parse(curve.settings.bs_opts.as_deref().unwrap());
        assert!(matches!(opts, Ok(curve_client::BackendOptions::Sim(_))));
        assert_eq!(c.targets[1].luns[0].settings.bs_type, BsType::File);
    }

    #[test]
    fn curve_lun_with_bsopts() {
        let c = parse(
            "<target iqn.2026-11.io.t:c>\n<backing-store cbd:pool//vol_owner_>\nbs-type curve\nbsopts \"backend=sim;dir=/tmp/v;latency_us=10\"\n</backing-store>\n</target>\n",
        )
        .unwrap();
        let l = &c.targets[0].luns[0];
        assert_eq!(l.settings.bs_type, BsType::Curve);
        assert_eq!(
            l.settings.bs_opts.as_deref(),
            Some("backend=sim;dir=/tmp/v;latency_us=10")
        );
        let e = parse("<target iqn.2026-11.io.t:c>\n<backing-store cbd:pool//v_o_>\nbs-type curve\nbsopts \"backend=ceph\"\n</backing-store>\n</target>\n")
            .unwrap_err();
        assert_eq!(e.line, 4);
        assert!(e.to_string().contains("libcbd"), "{e}");
    }
}
