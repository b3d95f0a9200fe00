//! gatewayadm: gatewayd's admin CLI, with tgtadm's options, messages and exit codes, so that
//! scripts written for tgtadm keep working (tgt's own tgtadm works against gatewayd too).

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::process::ExitCode;

use clap::Parser;
use gateway::admin::service::socket_path;
use gateway::admin::wire::{self, AdmErr, Mode, Op, Request, GLOBAL_TID, RSP_BYTES};

/// tgtadm exits with EINVAL for bad arguments and refused requests.
const EXIT_EINVAL: u8 = 22;
/// And with ENOTCONN when it cannot reach the daemon.
const EXIT_ENOTCONN: u8 = 107;

#[derive(Debug, Parser)]
#[command(
    name = "gatewayadm",
    infer_long_args = true,
    version,
    about = "Manage a running gatewayd (tgtadm's options; tgt's tgtadm works too).",
    after_help = "\
Examples:
  gatewayadm --lld iscsi --op new --mode target --tid 1 -T iqn.2026-11.io.example:disk1
  gatewayadm --lld iscsi --op new --mode logicalunit --tid 1 --lun 1 -b /var/lib/disk1.img
  gatewayadm --lld iscsi --op new --mode logicalunit --tid 1 --lun 2 -b /dev/nvme0n1 -E aio
  gatewayadm --lld iscsi --op bind --mode target --tid 1 -I 10.0.0.0/8
  gatewayadm --lld iscsi --op bind --mode target --tid 1 -Q iqn.1994-05.com.redhat:host1
  gatewayadm --lld iscsi --op update --mode logicalunit --tid 1 --lun 1 --params readonly=1
  gatewayadm --lld iscsi --op update --mode target --tid 1 -n MaxBurstLength -v 1048576
  gatewayadm --lld iscsi --op new --mode account --user alice --password s3cret-s3cret
  gatewayadm --lld iscsi --op bind --mode account --tid 1 --user alice
  gatewayadm --lld iscsi --op show --mode target
  gatewayadm --lld iscsi --op show --mode conn --tid 1
  gatewayadm --lld iscsi --op delete --mode conn --tid 1 --sid 2 --cid 0
  gatewayadm --lld iscsi --op delete --mode target --tid 1 [--force]
  gatewayadm --op stat --mode system          # per-target counters tgt lacks
  gatewayadm --op delete --mode system        # stop gatewayd (once no target is left)

Modes: system|sys, target|tgt, logicalunit|lu, portal|pt, session|sess,
connection|conn, account, lld. Ops: new, delete, show, bind, unbind, update,
stat, start, stop. The socket is /var/run/tgtd/socket.N for -C N (default 0), or
$TGT_IPC_SOCKET.N. Exit status: 0 on success, 22 when the request is refused or
malformed (the reason is printed as tgtadm prints it), 107 when gatewayd cannot
be reached."
)]
struct Args {
    /// Print the request before sending it.
    #[arg(short = 'd', long)]
    debug: bool,
    /// Low-level driver (iscsi).
    #[arg(short = 'L', long, value_name = "DRIVER")]
    lld: Option<String>,
    /// Operation: new, delete, show, bind, unbind, update, stat, start, stop.
    #[arg(short = 'o', long, value_name = "OP")]
    op: Option<String>,
    /// Mode: system, target, logicalunit, portal, session, connection, account, lld.
    #[arg(short = 'm', long, value_name = "MODE")]
    mode: Option<String>,
    /// Target ID.
    #[arg(short = 't', long, value_name = "ID")]
    tid: Option<i32>,
    /// Session ID (the TSIH, as `show` prints it).
    #[arg(short = 's', long, value_name = "ID")]
    sid: Option<u64>,
    /// Connection ID.
    #[arg(short = 'c', long, value_name = "ID")]
    cid: Option<u32>,
    /// Logical unit number.
    #[arg(short = 'l', long, value_name = "LUN")]
    lun: Option<u64>,
    /// Parameter name (with --value): target keys, `state`, system `State`.
    #[arg(short = 'n', long, value_name = "NAME")]
    name: Option<String>,
    /// Parameter value.
    #[arg(short = 'v', long, value_name = "VALUE")]
    value: Option<String>,
    /// Backing store: a file or block device.
    #[arg(short = 'b', long = "backing-store", value_name = "PATH")]
    backing_store: Option<String>,
    /// Backing store type: rdwr (page cache), aio (O_DIRECT), null.
    #[arg(short = 'E', long, value_name = "TYPE")]
    bstype: Option<String>,
    /// Backing store options.
    #[arg(short = 'S', long, value_name = "OPTS")]
    bsopts: Option<String>,
    /// Backing store open flags (direct).
    #[arg(short = 'f', long, value_name = "FLAGS")]
    bsoflags: Option<String>,
    /// Logical block size (512, 1024, 2048, 4096).
    #[arg(short = 'y', long, value_name = "BYTES")]
    blocksize: Option<String>,
    /// Target name (IQN).
    #[arg(short = 'T', long, value_name = "NAME")]
    targetname: Option<String>,
    /// Initiator address rule: ALL, an address, or ADDRESS/PREFIX.
    #[arg(short = 'I', long = "initiator-address", value_name = "ADDRESS")]
    initiator_address: Option<String>,
    /// Initiator name rule.
    #[arg(short = 'Q', long = "initiator-name", value_name = "NAME")]
    initiator_name: Option<String>,
    /// CHAP account user.
    #[arg(short = 'u', long, value_name = "USER")]
    user: Option<String>,
    /// CHAP account secret.
    #[arg(short = 'p', long, value_name = "SECRET")]
    password: Option<String>,
    /// SCSI host number (not used by iSCSI).
    #[arg(short = 'H', long, value_name = "N")]
    host: Option<u32>,
    /// Delete even when in use.
    #[arg(short = 'F', long)]
    force: bool,
    /// Parameters, `name=value[,name=value...]` (logical unit update, portal new/delete).
    #[arg(short = 'P', long, value_name = "LIST")]
    params: Option<String>,
    /// Bus (not used by iSCSI).
    #[arg(short = 'B', long, value_name = "BUS")]
    bus: Option<String>,
    /// Device type: disk (the only one served).
    #[arg(short = 'Y', long = "device-type", value_name = "TYPE")]
    device_type: Option<String>,
    /// Bind or unbind the account as the target's outgoing (mutual CHAP) account.
    #[arg(short = 'O', long)]
    outgoing: bool,
    /// Control port of the daemon.
    #[arg(
        short = 'C',
        long = "control-port",
        value_name = "N",
        default_value_t = 0
    )]
    control_port: u16,
}

fn fail(message: &str) -> ExitCode {
    eprintln!("tgtadm: {message}");
    ExitCode::from(EXIT_EINVAL)
}

fn build(args: &Args) -> Result<Request, ExitCode> {
    let op_word = args
        .op
        .as_deref()
        .ok_or_else(|| fail("specify the operation type"))?;
    let op =
        Op::from_word(op_word).ok_or_else(|| fail(&format!("unknown operation: {op_word}")))?;
    let mode_word = args
        .mode
        .as_deref()
        .ok_or_else(|| fail("specify the mode"))?;
    let mode =
        Mode::from_word(mode_word).ok_or_else(|| fail(&format!("unknown mode: {mode_word}")))?;
    let mut req = Request::new(mode, op);
    req.lld = args.lld.clone().unwrap_or_default();
    req.tid = args.tid.unwrap_or(-1);
    req.sid = args.sid.unwrap_or(0);
    req.cid = args.cid.unwrap_or(0);
    req.lun = args.lun.unwrap_or(wire::NO_LUN);
    req.host_no = args.host.unwrap_or(0);
    req.force = args.force;
    req.ac_dir = u32::from(args.outgoing);
    req.device_type = match args.device_type.as_deref() {
        None | Some("disk") => 0,
        Some(other) => return Err(fail(&format!("unknown target type: {other}"))),
    };
    match mode {
        Mode::Target => {
            if req.tid <= 0 && op != Op::Show {
                return Err(fail(if req.tid == 0 {
                    "'tid' cannot be 0"
                } else {
                    "'tid' option is necessary"
                }));
            }
            if op == Op::New && args.targetname.is_none() {
                return Err(fail(
                    "creating new target requires a name, use --targetname",
                ));
            }
            if matches!(op, Op::Bind | Op::Unbind)
                && args.initiator_address.is_none()
                && args.initiator_name.is_none()
            {
                return Err(fail(&format!(
                    "{op_word} operation requires initiator-address, initiator-nameor bus"
                )));
            }
            if op == Op::Update && (args.name.is_none() || args.value.is_none()) {
                return Err(fail("update operation requires 'name' and 'value' options"));
            }
        }
        Mode::Device => {
            if req.tid <= 0 {
                return Err(fail(if req.tid == 0 {
                    "'tid' must not be 0"
                } else {
                    "'tid' option is necessary"
                }));
            }
            if args.lun.is_none() {
                return Err(fail("'lun' option is necessary"));
            }
        }
        Mode::Account => {
            if op == Op::New && (args.user.is_none() || args.password.is_none()) {
                return Err(fail("'user' and 'password' options are required"));
            }
            if matches!(op, Op::Bind | Op::Unbind) {
                if args.user.is_none() {
                    return Err(fail("'user' option is necessary"));
                }
                if req.tid == -1 {
                    req.tid = GLOBAL_TID;
                }
            }
        }
        Mode::Portal if matches!(op, Op::New | Op::Delete) && args.params.is_none() => {
            return Err(fail("you must specify --param portal=<portal>"));
        }
        Mode::System if op == Op::Update && (args.name.is_none() || args.value.is_none()) => {
            return Err(fail("update operation requires 'name' and 'value' options"));
        }
        _ => {}
    }
    // The parameter text, item for item as tgtadm builds it.
    let mut items: Vec<String> = Vec::new();
    if let Some(name) = &args.name {
        items.push(format!("{name}={}", args.value.as_deref().unwrap_or("")));
    }
    let pairs = [
        ("path", &args.backing_store),
        ("bstype", &args.bstype),
        ("bsopts", &args.bsopts),
        ("bsoflags", &args.bsoflags),
        ("blocksize", &args.blocksize),
        ("targetname", &args.targetname),
        ("initiator-address", &args.initiator_address),
        ("initiator-name", &args.initiator_name),
        ("user", &args.user),
        ("password", &args.password),
    ];
    for (key, value) in pairs {
        if let Some(v) = value {
            items.push(format!("{key}={v}"));
        }
    }
    if let Some(p) = &args.params {
        let prefix = if mode == Mode::Portal {
            "portalOps"
        } else {
            "targetOps"
        };
        items.push(format!("{prefix} {p},"));
    }
    req.body = items.join(",");
    Ok(req)
}

fn main() -> ExitCode {
    let args = Args::parse();
    let req = match build(&args) {
        Ok(r) => r,
        Err(code) => return code,
    };
    if args.debug {
        eprintln!("gatewayadm: {req:?}");
    }
    let path = socket_path(args.control_port);
    let mut sock = match UnixStream::connect(&path) {
        Ok(s) => s,
        Err(e) => {
            eprintln!(
                "tgtadm: can't connect to the daemon at {}: {e}; is gatewayd (or tgtd) running with -C {}?",
                path.display(),
                args.control_port
            );
            return ExitCode::from(EXIT_ENOTCONN);
        }
    };
    if let Err(e) = sock.write_all(&req.encode()) {
        eprintln!("tgtadm: failed to send the request: {e}");
        return ExitCode::from(EXIT_ENOTCONN);
    }
    let mut header = [0u8; RSP_BYTES];
    if let Err(e) = sock.read_exact(&mut header) {
        eprintln!("tgtadm: can't get the response, {e}");
        return ExitCode::from(EXIT_ENOTCONN);
    }
    let (err, body_len) = wire::decode_response_header(&header);
    if err != 0 {
        let text = AdmErr::from_code(err)
            .map_or_else(|| "(unknown tgtadm_errno)".to_string(), |e| e.to_string());
        return fail(&text);
    }
    let mut body = vec![0u8; body_len];
    if let Err(e) = sock.read_exact(&mut body) {
        eprintln!("tgtadm: failed to read from the daemon: {e}");
        return ExitCode::from(EXIT_ENOTCONN);
    }
    let end = body.iter().position(|&b| b == 0).unwrap_or(body.len());
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(&body[..end]);
    let _ = out.flush();
    if req.mode == Mode::System && req.op == Op::Delete {
        // As tgtadm: return once the daemon has let go of its socket.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while UnixStream::connect(&path).is_ok() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
    ExitCode::SUCCESS
}
