//! The end-to-end test harness: starts the real `gatewayd` on an ephemeral loopback port with
//! a generated targets.conf, and runs real initiators (libiscsi's tools, fio) against it.
//!
//! Every external command runs with a timeout and fails the test when it expires; every
//! daemon is stopped when its handle drops, so no process outlives a test.
#![forbid(unsafe_code)]

pub mod conformance;
pub mod fuzzing;
pub mod raw;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long a daemon may take to print `gatewayd: ready`.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// One LUN of a generated configuration.
#[derive(Clone, Debug)]
pub struct LunSpec {
    /// Size in bytes (the file is created sparse).
    pub size: u64,
    /// Extra directives inside its `<backing-store>` block (e.g. `block-size 4096`).
    pub directives: Vec<String>,
}

impl LunSpec {
    /// A plain LUN of `size` bytes.
    pub fn new(size: u64) -> LunSpec {
        LunSpec {
            size,
            directives: Vec::new(),
        }
    }

    /// Adds a directive.
    pub fn with(mut self, directive: &str) -> LunSpec {
        self.directives.push(directive.to_string());
        self
    }
}

/// One target of a generated configuration.
#[derive(Clone, Debug, Default)]
pub struct TargetSpec {
    /// Its LUNs (LUN 1, 2, ...).
    pub luns: Vec<LunSpec>,
    /// Extra target-level directives (ACLs, iSCSI keys).
    pub directives: Vec<String>,
}

impl TargetSpec {
    /// A target with these LUNs.
    pub fn new(luns: Vec<LunSpec>) -> TargetSpec {
        TargetSpec {
            luns,
            directives: Vec::new(),
        }
    }

    /// Adds a target-level directive.
    pub fn with(mut self, directive: &str) -> TargetSpec {
        self.directives.push(directive.to_string());
        self
    }
}

/// A temporary directory removed on drop.
#[derive(Debug)]
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// A fresh, unique directory.
    pub fn new(tag: &str) -> TempDir {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("gw-test-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create a temporary directory");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Where the gatewayd binary is: `$GATEWAYD`, else beside this test's own build.
pub fn gatewayd_path() -> PathBuf {
    if let Some(p) = std::env::var_os("GATEWAYD") {
        return PathBuf::from(p);
    }
    // target/<profile>/deps/<test binary> -> target/<profile>/gatewayd
    // Beside a binary of this crate (target/<profile>/conformance), or one level up from a
    // test (target/<profile>/deps/<test>).
    let exe = std::env::current_exe().expect("current exe");
    let beside = exe.parent().expect("a directory").join("gatewayd");
    if beside.exists() {
        return beside;
    }
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>");
    let p = profile_dir.join("gatewayd");
    assert!(
        p.exists(),
        "{} is missing: build it first (`cargo build -p gateway` with the same profile) or set GATEWAYD",
        p.display()
    );
    p
}

/// A running gatewayd.
#[derive(Debug)]
pub struct Daemon {
    child: Option<Child>,
    /// The working directory (config, LUN files, logs).
    pub dir: TempDir,
    /// The configuration file.
    pub config: PathBuf,
    /// The first listening portal.
    pub portal: SocketAddr,
    /// Every listening portal.
    pub portals: Vec<SocketAddr>,
    /// Target names, in tid order.
    pub targets: Vec<String>,
    /// The metrics endpoint, when started with `--metrics`.
    pub metrics: Option<SocketAddr>,
    args: Vec<String>,
    stderr_log: PathBuf,
}

impl Daemon {
    /// Writes a configuration for `targets` and starts gatewayd on 127.0.0.1, any port.
    pub fn start(tag: &str, targets: &[TargetSpec]) -> Daemon {
        Self::start_with(tag, targets, &[])
    }

    /// As [`Daemon::start`], listening on `portals` (port 0: any free port).
    pub fn start_with(tag: &str, targets: &[TargetSpec], portals: &[&str]) -> Daemon {
        Self::start_full(tag, targets, portals, &[])
    }

    /// As [`Daemon::start_with`], with extra gatewayd arguments.
    pub fn start_full(
        tag: &str,
        targets: &[TargetSpec],
        portals: &[&str],
        args: &[&str],
    ) -> Daemon {
        Self::start_global(tag, &[], targets, portals, args)
    }

    /// As [`Daemon::start_full`], with top-level directives (outside every `<target>`, such
    /// as the discovery CHAP accounts) written first.
    pub fn start_global(
        tag: &str,
        global: &[&str],
        targets: &[TargetSpec],
        portals: &[&str],
        args: &[&str],
    ) -> Daemon {
        let dir = TempDir::new(tag);
        let mut conf = String::new();
        for d in global {
            conf.push_str(&format!("{d}\n"));
        }
        let mut names = Vec::new();
        for (ti, t) in targets.iter().enumerate() {
            let name = format!("iqn.2026-11.io.gateway.test:{tag}-t{}", ti + 1);
            conf.push_str(&format!("<target {name}>\n"));
            for (li, l) in t.luns.iter().enumerate() {
                let path = dir.0.join(format!("t{}-lun{}.img", ti + 1, li + 1));
                let f = std::fs::File::create(&path).expect("create LUN file");
                f.set_len(l.size).expect("size LUN file");
                conf.push_str(&format!("    <backing-store {}>\n", path.display()));
                for d in &l.directives {
                    conf.push_str(&format!("        {d}\n"));
                }
                conf.push_str("    </backing-store>\n");
            }
            for d in &t.directives {
                conf.push_str(&format!("    {d}\n"));
            }
            conf.push_str("</target>\n");
            names.push(name);
        }
        let config = dir.0.join("targets.conf");
        std::fs::write(&config, conf).expect("write targets.conf");
        let stderr_log = dir.0.join("gatewayd.log");
        let mut d = Daemon {
            child: None,
            dir,
            config,
            portal: "127.0.0.1:0".parse().expect("address"),
            portals: if portals.is_empty() {
                vec!["127.0.0.1:0".parse().expect("address")]
            } else {
                portals
                    .iter()
                    .map(|p| p.parse().expect("portal address"))
                    .collect()
            },
            targets: names,
            metrics: None,
            args: args.iter().map(|a| a.to_string()).collect(),
            stderr_log,
        };
        d.spawn();
        d
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.stderr_log)
            .expect("open daemon log");
        let mut child = Command::new(gatewayd_path())
            .arg("--config")
            .arg(&self.config)
            .args(
                self.portals
                    .iter()
                    .flat_map(|p| ["--portal".to_string(), p.to_string()]),
            )
            .args(&self.args)
            .args(
                (!self.args.iter().any(|a| a == "--state-dir"))
                    .then(|| {
                        [
                            "--state-dir".to_string(),
                            self.dir.0.join("state").display().to_string(),
                        ]
                    })
                    .into_iter()
                    .flatten(),
            )
            .env("TGT_IPC_SOCKET", self.admin_socket_base())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("start gatewayd");
        let stdout = child.stdout.take().expect("piped stdout");
        self.child = Some(child);
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut bound = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(addr) = line.strip_prefix("gatewayd: listening on ") {
                        bound.push(addr.parse().expect("listening address"));
                    } else if let Some(url) = line.strip_prefix("gatewayd: metrics on http://") {
                        let addr = url.trim_end_matches("/metrics");
                        self.metrics = Some(addr.parse().expect("metrics address"));
                    } else if line == "gatewayd: ready" {
                        assert_eq!(bound.len(), self.portals.len(), "one line per portal");
                        self.portals = bound;
                        self.portal = self.portals[0];
                        return;
                    }
                }
                Err(_) => panic!(
                    "gatewayd did not become ready within {READY_TIMEOUT:?}; its log:\n{}",
                    self.log()
                ),
            }
        }
    }

    /// The admin socket's path prefix (`$TGT_IPC_SOCKET`): each daemon has its own, so
    /// parallel tests never share a control port.
    pub fn admin_socket_base(&self) -> PathBuf {
        self.dir.0.join("socket")
    }

    /// Runs an admin command (tgt's `tgtadm`, or `gatewayadm`) against this daemon.
    pub fn admin(&self, program: &str, args: &[&str]) -> Output {
        let path = if program == "gatewayadm" {
            gatewayd_path().with_file_name("gatewayadm")
        } else {
            PathBuf::from(program)
        };
        run(
            Command::new(path)
                .env("TGT_IPC_SOCKET", self.admin_socket_base())
                .args(args),
            Duration::from_secs(60),
        )
    }

    /// Runs `tgtadm` and fails the test unless it succeeds; returns its stdout.
    pub fn tgtadm(&self, args: &[&str]) -> String {
        let out = self.admin("tgtadm", args);
        assert!(
            out.ok(),
            "tgtadm {args:?} failed ({:?}): {}{}\ndaemon log:\n{}",
            out.code,
            out.stdout,
            out.stderr,
            self.log()
        );
        out.stdout
    }

    /// The daemon's stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr_log).unwrap_or_default()
    }

    /// Its process ID.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// `iscsi://127.0.0.1:PORT/IQN/LUN` for target `t` (0-based).
    pub fn url(&self, t: usize, lun: u64) -> String {
        format!("iscsi://{}/{}/{}", self.portal, self.targets[t], lun)
    }

    /// fio's filename for target `t` LUN `lun` (colons escaped).
    pub fn fio_filename(&self, t: usize, lun: u64) -> String {
        format!(
            "iscsi\\://{}\\:{}/{}/{}",
            self.portal.ip(),
            self.portal.port(),
            self.targets[t].replace(':', "\\:"),
            lun
        )
    }

    /// Runs one fio job (libiscsi engine) against target `t` LUN `lun`, in this daemon's
    /// directory, and fails the test unless it ends without error.
    pub fn fio(&self, t: usize, lun: u64, args: &[&str]) -> Output {
        let out = run(
            Command::new(fio_path())
                .current_dir(&self.dir.0)
                .arg("--name=job")
                .arg("--ioengine=libiscsi")
                .arg(format!("--filename={}", self.fio_filename(t, lun)))
                .args(args),
            Duration::from_secs(300),
        );
        assert!(
            out.ok() && out.stdout.contains("err= 0"),
            "fio {args:?} failed:\n{}{}",
            out.stdout,
            out.stderr
        );
        out
    }

    /// Stops with SIGTERM (SIGKILL after 10 s) and waits.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("gatewayd did not stop within 10 s of SIGTERM");
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// Waits up to `timeout` for the daemon to exit by itself; true when it did.
    pub fn wait_exit(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(_)) = child.try_wait() {
                    self.child = None;
                    return true;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Kills with SIGKILL.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops and starts again on the same port with the same files.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!("---- gatewayd log ----\n{}", self.log());
        }
    }
}

/// What a finished command printed.
#[derive(Debug)]
pub struct Output {
    /// Exit code (None if killed by a signal).
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
    /// How long it ran.
    pub elapsed: Duration,
}

impl Output {
    /// Whether it exited 0.
    pub fn ok(&self) -> bool {
        self.code == Some(0)
    }
}

/// Runs a command, failing the test if it runs longer than `timeout`.
pub fn run(cmd: &mut Command, timeout: Duration) -> Output {
    let start = Instant::now();
    let program = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e} (run tests/tools/setup first)"));
    let mut out = child.stdout.take().expect("piped");
    let mut err = child.stderr.take().expect("piped");
    // Tools print binary designators: keep what is not UTF-8 as replacement characters.
    let out_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = std::io::Read::read_to_end(&mut out, &mut v);
        String::from_utf8_lossy(&v).into_owned()
    });
    let err_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = std::io::Read::read_to_end(&mut err, &mut v);
        String::from_utf8_lossy(&v).into_owned()
    });
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{program} did not finish within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Output {
        code: status.code(),
        stdout: out_t.join().unwrap_or_default(),
        stderr: err_t.join().unwrap_or_default(),
        elapsed: start.elapsed(),
    }
}

/// The fio with the libiscsi engine: `$FIO`, else what tests/tools/fio-libiscsi builds.
pub fn fio_path() -> PathBuf {
    if let Some(p) = std::env::var_os("FIO") {
        return PathBuf::from(p);
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/fio-libiscsi");
    let out = run(&mut Command::new(script), Duration::from_secs(1200));
    assert!(out.ok(), "tests/tools/fio-libiscsi failed:\n{}", out.stderr);
    PathBuf::from(out.stdout.trim())
}

/// Results of one iscsi-test-cu suite.
#[derive(Debug, Default)]
pub struct SuiteResult {
    /// Tests run.
    pub run: u32,
    /// Tests passed.
    pub passed: u32,
    /// Tests failed.
    pub failed: u32,
    /// Names of failed tests.
    pub failures: Vec<String>,
    /// Lines reporting skips.
    pub skips: Vec<String>,
    /// The whole output.
    pub output: String,
}

/// Runs `iscsi-test-cu --dataloss -t SUITE URL` and parses its CUnit summary.
pub fn iscsi_test_cu(url: &str, suite: &str, extra: &[&str]) -> SuiteResult {
    iscsi_test_cu_paths(&[url], suite, extra)
}

/// As [`iscsi_test_cu`], with a second path (URL) to the same LU for the multipath tests.
pub fn iscsi_test_cu_paths(urls: &[&str], suite: &str, extra: &[&str]) -> SuiteResult {
    let out = run(
        Command::new("iscsi-test-cu")
            .arg("--dataloss")
            .arg("-t")
            .arg(suite)
            .args(extra)
            .args(urls),
        Duration::from_secs(300),
    );
    let text = format!("{}{}", out.stdout, out.stderr);
    let mut r = SuiteResult {
        output: text.clone(),
        ..Default::default()
    };
    let mut current = String::new();
    for line in text.lines() {
        let l = line.trim();
        if let Some(rest) = l.strip_prefix("Test: ") {
            current = rest.split(" ...").next().unwrap_or(rest).to_string();
        }
        if l.ends_with("FAILED") || l == "FAILED" {
            r.failures.push(current.clone());
        }
        if let Some((_, reason)) = l.split_once("[SKIPPED]") {
            // libiscsi prints most skips twice (on the test's line and on its own): keep one.
            let skip = format!("{current}: {}", reason.trim());
            if !r.skips.contains(&skip) {
                r.skips.push(skip);
            }
        }
        if let Some(rest) = l.strip_prefix("tests") {
            let n: Vec<u32> = rest
                .split_whitespace()
                .filter_map(|w| w.parse().ok())
                .collect();
            if n.len() >= 4 {
                r.run = n[1];
                r.passed = n[2];
                r.failed = n[3];
            }
        }
    }
    assert!(
        r.run > 0,
        "iscsi-test-cu ran no test for {suite} (exit {:?}):\n{text}",
        out.code
    );
    r
}

/// Sum of utime+stime ticks of each thread of `pid`, by thread name.
pub fn thread_cpu_ticks(pid: u32) -> Vec<(String, u64, String)> {
    let mut out = Vec::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for t in tasks.flatten() {
        let path = t.path();
        let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        let stat = std::fs::read_to_string(path.join("stat")).unwrap_or_default();
        // Fields after the parenthesised name: state is field 3; utime 14, stime 15.
        let after = stat.rsplit(')').next().unwrap_or("");
        let f: Vec<&str> = after.split_whitespace().collect();
        let ticks = f.get(11).and_then(|u| u.parse::<u64>().ok()).unwrap_or(0)
            + f.get(12).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
        let status = std::fs::read_to_string(path.join("status")).unwrap_or_default();
        let cpus = status
            .lines()
            .find(|l| l.starts_with("Cpus_allowed_list:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .unwrap_or("")
            .to_string();
        out.push((comm.trim().to_string(), ticks, cpus));
    }
    out
}
