//! gatewayd: the iSCSI gateway daemon.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Parser;
use gateway::config::Config;
use gateway::daemon;
use gateway::msg::MgmtMsg;

/// Size of each LUN file of the embedded default.
const DEFAULT_LUN_BYTES: u64 = 1 << 30;

#[derive(Debug, Parser)]
#[command(
    name = "gatewayd",
    version,
    about = "A shared-nothing io_uring iSCSI target: one pinned thread and ring per target.",
    after_help = "\
With no --config, gatewayd serves an embedded default, the seed's setup: three
targets (iqn.2026-11.io.gateway:target1..3) on 127.0.0.1:3260; target1 serves the
Curve volume cbd:pool//iscsi_test_ from the simulated cluster (1 GiB, in
curve-sim/ of the state directory), target2 and target3 a sparse 1 GiB file LUN
each in the state directory.

Examples:
  gatewayd                                   # the embedded default
  gatewayd --config /etc/tgt/targets.conf    # tgt's targets.conf, on 0.0.0.0:3260
  gatewayd --config t.conf --portal 127.0.0.1:3260 --portal [::1]:3260
  gatewayd --portal 127.0.0.1:0              # any free port; printed on stdout

Once every portal listens, stdout has one `gatewayd: listening on ADDR` line per
portal, then `gatewayd: ready`. Logs go to stderr; RUST_LOG=debug (or e.g.
RUST_LOG=gateway=debug) sets their detail. SIGTERM or SIGINT stop it cleanly;
SIGHUP re-reads --config and applies only what changed (targets added or removed,
ACLs, iSCSI keys, LUNs); a file with an error changes nothing.

Curve volumes: a LUN whose backing store is a volume spec, with bs-type curve and
bsopts choosing the backend (`;`-separated key=value):
  <backing-store cbd:pool//iscsi_test_>
      bs-type curve
      bsopts \"backend=libcbd;lib=/usr/lib/libcbd.so;conf=/etc/curve/client.conf\"
  </backing-store>
backend=libcbd (default) loads Curve's client library at run time; backend=sim
serves a simulated cluster from local files for tests and demos:
  bsopts \"backend=sim;dir=/var/lib/curve-sim;size=10G;latency_us=100\"
  (also block=512|4096, reorder_us, threads, error_every, error_at, hang_at, seed).
Over tgtadm: --op new --mode logicalunit ... -b cbd:pool//vol_owner_ --bstype curve
  --bsopts \"backend=sim;dir=/var/lib/curve-sim\". See deploy/curve.md.

Management: tgt's own tools work unchanged against the admin socket, e.g.
  tgtadm --lld iscsi --op new --mode target --tid 4 -T iqn.2026-11.io.example:t4
  tgtadm --lld iscsi --op new --mode logicalunit --tid 4 --lun 1 -b /dev/sdb
  tgtadm --lld iscsi --op bind --mode target --tid 4 -I ALL
  tgtadm --lld iscsi --op show --mode target
gatewayadm takes the same options."
)]
struct Args {
    /// Address to listen on, ADDR:PORT (IPv6 as [ADDR]:PORT). Repeat for more portals.
    /// Default: 127.0.0.1:3260 for the embedded default, 0.0.0.0:3260 with --config.
    #[arg(long = "portal", value_name = "ADDR:PORT")]
    portals: Vec<SocketAddr>,

    /// targets.conf in tgt's syntax (`<target IQN>`, backing-store, bs-type, lun,
    /// initiator-address, initiator-name, iSCSI keys ...).
    #[arg(long, short = 'c', value_name = "FILE")]
    config: Option<PathBuf>,

    /// Where the embedded default keeps its LUN files, and every configuration its state
    /// that outlives the daemon (persistent reservations with APTPL, under reservations/).
    /// Default: /var/lib/gatewayd as root, else $XDG_STATE_HOME/gatewayd or ~/.local/state/gatewayd.
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,

    /// CPUs target threads are pinned to, round-robin (e.g. 0,1 or 2-5).
    /// Default: every CPU this process may run on.
    #[arg(long, value_name = "LIST", value_parser = parse_cpu_list)]
    cpus: Option<Vec<usize>>,

    /// Seconds a connection may take from accept to the end of its login before it is closed.
    #[arg(long, value_name = "SECS", default_value_t = 15, value_parser = clap::value_parser!(u64).range(1..=3600))]
    login_timeout: u64,

    /// Seconds of silence after which a discovery session is closed.
    #[arg(long, value_name = "SECS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=86400))]
    discovery_idle_timeout: u64,

    /// Seconds a session may be silent before the target pings it with a NOP-In (RFC 7143
    /// §11.19); 0 turns pings off. A target's `nop_interval` in targets.conf, or tgtadm's
    /// `--op update --mode target -n nop_interval -v N`, overrides it.
    #[arg(long, value_name = "SECS", default_value_t = gateway::target::liveness::Nop::DEFAULT.interval_secs)]
    nop_interval: u32,

    /// Pings left unanswered before the connection is closed, its tasks aborted and its
    /// session ended (what frees a dead initiator's reservations). Overridden per target by
    /// `nop_count`.
    #[arg(long, value_name = "N", default_value_t = gateway::target::liveness::Nop::DEFAULT.count)]
    nop_count: u32,

    /// Control port: the admin socket is /var/run/tgtd/socket.N (or $TGT_IPC_SOCKET.N),
    /// where tgt's tgtadm and tgt-admin, and gatewayadm, find it with the same -C N.
    #[arg(long, short = 'C', value_name = "N", default_value_t = 0)]
    control_port: u16,

    /// Serve Prometheus metrics over HTTP at ADDR:PORT/metrics (given alone: 127.0.0.1:9860).
    /// Off by default.
    #[arg(long, value_name = "ADDR:PORT", num_args = 0..=1, default_missing_value = gateway::metrics::DEFAULT_ADDR)]
    metrics: Option<SocketAddr>,

    /// Run without the admin socket (no tgtadm management).
    #[arg(long)]
    no_admin_socket: bool,

    /// Validate the configuration and exit.
    #[arg(long)]
    check_config: bool,
}

fn parse_cpu_list(text: &str) -> Result<Vec<usize>, String> {
    let mut cpus = Vec::new();
    for part in text.split(',') {
        let part = part.trim();
        let bad = || format!("`{part}` is not a CPU number or range (write e.g. 0,2-3)");
        match part.split_once('-') {
            Some((a, b)) => {
                let a: usize = a.parse().map_err(|_| bad())?;
                let b: usize = b.parse().map_err(|_| bad())?;
                if a > b {
                    return Err(bad());
                }
                cpus.extend(a..=b);
            }
            None => cpus.push(part.parse().map_err(|_| bad())?),
        }
    }
    Ok(cpus)
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Colours only on a terminal: journald and log files get plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();

    let embedded = args.config.is_none();
    let config = match &args.config {
        Some(path) => Config::load(path)?,
        None => {
            let dir = args
                .state_dir
                .clone()
                .unwrap_or_else(daemon::default_state_dir);
            let config = Config::embedded_default(&dir);
            if !args.check_config {
                daemon::prepare_default_files(&config, DEFAULT_LUN_BYTES).with_context(|| {
                    format!(
                        "cannot create the default LUN files in {}; pass --state-dir DIR",
                        dir.display()
                    )
                })?;
            }
            config
        }
    };
    if config.targets.is_empty() && args.no_admin_socket {
        bail!("the configuration declares no <target> and --no-admin-socket leaves no way to add one: there is nothing to serve");
    }
    if args.check_config {
        daemon::open_stores(&config)?;
        for t in &config.targets {
            daemon::target_limits(t)?;
        }
        println!(
            "gatewayd: configuration OK: {} targets, {} LUNs",
            config.targets.len(),
            config.targets.iter().map(|t| t.luns.len()).sum::<usize>()
        );
        return Ok(());
    }
    let portals = if args.portals.is_empty() {
        vec![if embedded {
            "127.0.0.1:3260".parse()?
        } else {
            "0.0.0.0:3260".parse()?
        }]
    } else {
        args.portals.clone()
    };
    let cpus = args.cpus.clone().unwrap_or_else(gw_uring::allowed_cpus);

    let timeouts = gateway::mgmt::Timeouts {
        login: std::time::Duration::from_secs(args.login_timeout),
        discovery_idle: std::time::Duration::from_secs(args.discovery_idle_timeout),
        nop: gateway::target::liveness::Nop::new(args.nop_interval, args.nop_count)
            .context("--nop-interval / --nop-count")?,
    };
    let admin = if args.no_admin_socket {
        None
    } else {
        Some(
            gateway::admin::service::AdminSocket::bind(args.control_port)
                .context("pass --no-admin-socket to run without tgtadm management")?,
        )
    };
    let admin_path = admin.as_ref().map(|a| a.path.clone());
    let registry = std::sync::Arc::new(gateway::metrics::Registry::default());
    let mut d = daemon::start(
        &config,
        daemon::StartOptions {
            portals,
            cpus,
            timeouts,
            admin,
            config_path: args.config.clone(),
            state_dir: Some(
                args.state_dir
                    .clone()
                    .unwrap_or_else(daemon::default_state_dir),
            ),
            registry: registry.clone(),
        },
    )?;
    if let Some(addr) = args.metrics {
        let bound = gateway::metrics::serve(addr, registry)
            .with_context(|| format!("cannot serve metrics on {addr}"))?;
        println!("gatewayd: metrics on http://{bound}/metrics");
    }

    let tx = d.mgmt_tx.clone();
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGHUP,
    ])
    .context("cannot install signal handlers")?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                if tx.send(MgmtMsg::Signal(sig)).is_err() {
                    break;
                }
            }
        })
        .context("cannot start the signal thread")?;

    for addr in &d.portals {
        println!("gatewayd: listening on {addr}");
    }
    if let Some(path) = admin_path {
        println!(
            "gatewayd: admin socket {} (tgtadm -C {} ...)",
            path.display(),
            args.control_port
        );
    }
    if config.targets.is_empty() {
        println!("gatewayd: no targets yet; add them with tgtadm or gatewayadm");
    }
    if embedded {
        let portal = d.portals[0];
        for t in &config.targets {
            println!("gatewayd: target {} (tid {})", t.name, t.tid);
        }
        println!("gatewayd: try  iscsi-ls -s iscsi://{portal}");
        println!(
            "gatewayd: or   fio --ioengine=libiscsi --filename='iscsi\\://{}\\:{}/{}/1' --rw=randread --bs=16k --iodepth=128 --runtime=30 --time_based --name=seed",
            portal.ip(),
            portal.port(),
            config.targets[0].name
        );
    }
    println!("gatewayd: ready");
    use std::io::Write;
    std::io::stdout().flush().ok();
    if let Err(e) = gateway::notify::notify("READY=1") {
        tracing::warn!("cannot tell systemd the daemon is ready: {e}");
    }
    d.mgmt.run();
    let _ = gateway::notify::notify("STOPPING=1");
    tracing::info!("stopped");
    Ok(())
}
