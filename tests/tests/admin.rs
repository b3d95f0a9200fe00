//! The management plane driven by tgt's own tools: `tgtadm` and `tgt-admin` (Debian's `tgt`)
//! create, change and delete targets, LUNs, ACLs and accounts on a running gatewayd, and
//! libiscsi initiators see every change; `gatewayadm` takes the same options.

use std::process::Command;
use std::time::Duration;

use gw_tests::raw::{LoginOptions, RawSession};
use gw_tests::{run, Daemon, LunSpec, Output, TargetSpec};

const MIB: u64 = 1 << 20;
const IQN: &str = "iqn.2026-11.io.gateway.test:admin-new";

fn inq(url: &str, args: &[&str]) -> Output {
    run(
        Command::new("iscsi-inq").args(args).arg(url),
        Duration::from_secs(20),
    )
}

fn url(d: &Daemon, iqn: &str, lun: u64) -> String {
    format!("iscsi://{}/{iqn}/{lun}", d.portal)
}

/// Creates a target with tgtadm as an operator would and checks each step from an initiator.
#[test]
fn tgtadm_builds_a_target_live() {
    let d = Daemon::start(
        "admin-live",
        &[TargetSpec::new(vec![LunSpec::new(16 * MIB)])],
    );
    let img = d.dir.0.join("new.img");
    std::fs::File::create(&img)
        .and_then(|f| f.set_len(64 * MIB))
        .expect("create a LUN file");
    let img = img.to_str().expect("UTF-8 path");

    d.tgtadm(&[
        "--lld", "iscsi", "--op", "new", "--mode", "target", "--tid", "7", "-T", IQN,
    ]);
    d.tgtadm(&[
        "--lld",
        "iscsi",
        "--op",
        "new",
        "--mode",
        "logicalunit",
        "--tid",
        "7",
        "--lun",
        "1",
        "-b",
        img,
    ]);
    // As in tgt, a target nobody is bound to refuses every login.
    let refused = inq(&url(&d, IQN, 1), &[]);
    assert!(
        !refused.ok(),
        "login before bind must fail: {}",
        refused.stdout
    );
    d.tgtadm(&[
        "--lld", "iscsi", "--op", "bind", "--mode", "target", "--tid", "7", "-I", "ALL",
    ]);
    let ok = inq(&url(&d, IQN, 1), &[]);
    assert!(ok.ok(), "login after bind: {}{}", ok.stdout, ok.stderr);

    // LU parameters reach INQUIRY.
    d.tgtadm(&[
        "--lld",
        "iscsi",
        "--op",
        "update",
        "--mode",
        "logicalunit",
        "--tid",
        "7",
        "--lun",
        "1",
        "--params",
        "vendor_id=ACME,product_id=Widget,product_rev=0042",
    ]);
    let std_inq = inq(&url(&d, IQN, 1), &[]);
    assert!(
        std_inq.stdout.contains("ACME") && std_inq.stdout.contains("Widget"),
        "{}",
        std_inq.stdout
    );

    // readonly=1 refuses writes; readonly=0 accepts them again.
    d.tgtadm(&[
        "--lld",
        "iscsi",
        "--op",
        "update",
        "--mode",
        "logicalunit",
        "--tid",
        "7",
        "--lun",
        "1",
        "--params",
        "readonly=1",
    ]);
    let show = d.tgtadm(&["--lld", "iscsi", "--op", "show", "--mode", "target"]);
    let block = &show[show.find(IQN).expect("new target shown")..];
    assert!(block.contains("Readonly: Yes"), "{block}");
    d.tgtadm(&[
        "--lld",
        "iscsi",
        "--op",
        "update",
        "--mode",
        "logicalunit",
        "--tid",
        "7",
        "--lun",
        "1",
        "--params",
        "readonly=0",
    ]);

    // A second LUN, then its removal; REPORT LUNS follows.
    d.tgtadm(&[
        "--lld",
        "iscsi",
        "--op",
        "new",
        "--mode",
        "logicalunit",
        "--tid",
        "7",
        "--lun",
        "2",
        "--bstype",
        "null",
    ]);
    let ls = run(
        Command::new("iscsi-ls").args(["-s", &format!("iscsi://{}", d.portal)]),
        Duration::from_secs(20),
    );
    assert!(ls.stdout.contains("Lun:2"), "{}", ls.stdout);
    d.tgtadm(&[
        "--lld",
        "iscsi",
        "--op",
        "delete",
        "--mode",
        "logicalunit",
        "--tid",
        "7",
        "--lun",
        "2",
    ]);

    // Errors are tgtadm's, word for word, with its exit status.
    let dup = d.admin(
        "tgtadm",
        &[
            "--lld", "iscsi", "--op", "new", "--mode", "target", "--tid", "7", "-T", IQN,
        ],
    );
    assert_eq!(dup.code, Some(22));
    assert!(
        dup.stderr.contains("tgtadm: this target already exists"),
        "{}",
        dup.stderr
    );
    let missing = d.admin(
        "tgtadm",
        &[
            "--lld", "iscsi", "--op", "delete", "--mode", "target", "--tid", "99",
        ],
    );
    assert!(
        missing.stderr.contains("can't find the target"),
        "{}",
        missing.stderr
    );
    let lun_dup = d.admin(
        "tgtadm",
        &[
            "--lld",
            "iscsi",
            "--op",
            "new",
            "--mode",
            "logicalunit",
            "--tid",
            "7",
            "--lun",
            "1",
            "-b",
            img,
        ],
    );
    assert!(
        lun_dup
            .stderr
            .contains("this logical unit number already exists"),
        "{}",
        lun_dup.stderr
    );

    // The target's iSCSI keys: a bad value is refused, a good one shows.
    let bad = d.admin(
        "tgtadm",
        &[
            "--lld",
            "iscsi",
            "--op",
            "update",
            "--mode",
            "target",
            "--tid",
            "7",
            "-n",
            "MaxBurstLength",
            "-v",
            "7",
        ],
    );
    assert_eq!(bad.code, Some(22));
    d.tgtadm(&[
        "--lld",
        "iscsi",
        "--op",
        "update",
        "--mode",
        "target",
        "--tid",
        "7",
        "-n",
        "MaxBurstLength",
        "-v",
        "65536",
    ]);
    let params = d.tgtadm(&[
        "--lld", "iscsi", "--op", "show", "--mode", "target", "--tid", "7",
    ]);
    assert!(params.contains("MaxBurstLength=65536"), "{params}");

    // Unbinding ALL shuts the door again; deleting the target makes it vanish.
    d.tgtadm(&[
        "--lld", "iscsi", "--op", "unbind", "--mode", "target", "--tid", "7", "-I", "ALL",
    ]);
    assert!(!inq(&url(&d, IQN, 1), &[]).ok());
    d.tgtadm(&[
        "--lld", "iscsi", "--op", "delete", "--mode", "target", "--tid", "7",
    ]);
    let show = d.tgtadm(&["--lld", "iscsi", "--op", "show", "--mode", "target"]);
    assert!(!show.contains(IQN), "{show}");
    // The configured target kept serving all along.
    assert!(inq(&d.url(0, 1), &[]).ok());
}

/// A target with a session is not deleted without --force; with it, the session is closed.
#[test]
fn delete_refuses_active_targets_unless_forced() {
    let d = Daemon::start(
        "admin-force",
        &[TargetSpec::new(vec![LunSpec::new(16 * MIB)])],
    );
    // iscsi-perf holds a session open until it is killed (bounded by the test's timeout).
    let mut perf = Command::new("iscsi-perf")
        .args(["-i", "iqn.2026-11.io.gateway.test:holder"])
        .arg(d.url(0, 1))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start iscsi-perf");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let conns = loop {
        let conns = d.tgtadm(&[
            "--lld", "iscsi", "--op", "show", "--mode", "conn", "--tid", "1",
        ]);
        if conns.contains("iqn.2026-11.io.gateway.test:holder") {
            break conns;
        }
        assert!(std::time::Instant::now() < deadline, "no session appeared");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(conns.contains("IP Address: 127.0.0.1"), "{conns}");
    let show = d.tgtadm(&["--lld", "iscsi", "--op", "show", "--mode", "target"]);
    assert!(
        show.contains("Initiator: iqn.2026-11.io.gateway.test:holder alias: none"),
        "{show}"
    );

    let refused = d.admin(
        "tgtadm",
        &[
            "--lld", "iscsi", "--op", "delete", "--mode", "target", "--tid", "1",
        ],
    );
    assert!(
        refused.stderr.contains("this target is still active"),
        "{}",
        refused.stderr
    );
    d.tgtadm(&[
        "--lld", "iscsi", "--op", "delete", "--mode", "target", "--tid", "1", "--force",
    ]);
    let _ = perf.kill();
    let _ = perf.wait();
    let show = d.tgtadm(&["--lld", "iscsi", "--op", "show", "--mode", "target"]);
    assert!(show.is_empty(), "{show}");
}

/// tgt-admin reads a targets.conf and applies it through tgtadm; --dump reads it back.
#[test]
fn tgt_admin_applies_and_dumps_a_config() {
    let d = Daemon::start("admin-tgtadmin", &[]);
    let a = d.dir.0.join("a.img");
    let b = d.dir.0.join("b.img");
    for p in [&a, &b] {
        std::fs::File::create(p)
            .and_then(|f| f.set_len(32 * MIB))
            .expect("create LUN file");
    }
    let conf = d.dir.0.join("tgt-admin.conf");
    std::fs::write(
        &conf,
        format!(
            "<target {IQN}>\n    backing-store {}\n    backing-store {}\n    initiator-address 127.0.0.1\n    vendor_id ACME\n    write-cache off\n    MaxBurstLength 131072\n</target>\n",
            a.display(),
            b.display()
        ),
    )
    .expect("write config");
    let out = run(
        Command::new("tgt-admin")
            .env("TGT_IPC_SOCKET", d.admin_socket_base())
            .args(["-e", "-c"])
            .arg(&conf),
        Duration::from_secs(60),
    );
    assert!(
        out.ok(),
        "tgt-admin -e: {}{}\n{}",
        out.stdout,
        out.stderr,
        d.log()
    );
    let inq2 = inq(&url(&d, IQN, 2), &[]);
    assert!(
        inq2.ok() && inq2.stdout.contains("ACME"),
        "{}{}",
        inq2.stdout,
        inq2.stderr
    );
    let dump = run(
        Command::new("tgt-admin")
            .env("TGT_IPC_SOCKET", d.admin_socket_base())
            .arg("--dump"),
        Duration::from_secs(60),
    );
    assert!(dump.ok(), "{}", dump.stderr);
    assert!(
        dump.stdout.contains(&format!("<target {IQN}>")),
        "{}",
        dump.stdout
    );
    assert!(
        dump.stdout
            .contains(&format!("backing-store {}", b.display())),
        "{}",
        dump.stdout
    );
    assert!(
        dump.stdout.contains("initiator-address 127.0.0.1"),
        "{}",
        dump.stdout
    );
    // `write-cache off` reached the caching mode page: WCE is clear.
    let mut s = RawSession::login(d.portal, IQN, &LoginOptions::default()).unwrap();
    let sense = [0x1a, 0x08, 0x08, 0, 0xff, 0];
    let r = (0..4)
        .map(|_| s.scsi(1, &sense, &[], 255).unwrap())
        .find(|r| r.status == 0)
        .expect("MODE SENSE succeeds once the unit attention is consumed");
    assert_eq!(r.data[4] & 0x3f, 0x08, "caching page: {:02x?}", r.data);
    assert_eq!(r.data[6] & 0x04, 0, "WCE off: {:02x?}", r.data);
}

/// Management changes on targets 2..20 never disturb I/O on target 1, and leave no thread
/// or file descriptor behind.
#[test]
fn changes_are_live_and_leave_other_targets_alone() {
    let d = Daemon::start(
        "admin-busy",
        &[TargetSpec::new(vec![LunSpec::new(64 * MIB)])],
    );
    let img = d.dir.0.join("churn.img");
    std::fs::File::create(&img)
        .and_then(|f| f.set_len(16 * MIB))
        .expect("create a LUN file");
    let img = img.to_str().expect("UTF-8 path").to_string();
    let pid = d.pid();
    let count = |what: &str| {
        std::fs::read_dir(format!("/proc/{pid}/{what}"))
            .expect("the daemon's /proc entry")
            .count()
    };
    let (threads0, fds0) = (count("task"), count("fd"));
    let adm = |args: &[&str]| {
        let mut full = vec!["--lld", "iscsi"];
        full.extend_from_slice(args);
        d.tgtadm(&full)
    };
    std::thread::scope(|scope| {
        let io = scope.spawn(|| {
            d.fio(
                0,
                1,
                &[
                    "--rw=randrw",
                    "--bs=4k",
                    "--iodepth=16",
                    "--size=64m",
                    "--verify=crc32c",
                    "--runtime=6",
                    "--time_based",
                ],
            )
        });
        let mut rounds = 0;
        while !io.is_finished() || rounds == 0 {
            for tid in 2..=20 {
                let (t, iqn) = (tid.to_string(), format!("{IQN}-{rounds}-{tid}"));
                adm(&["--op", "new", "--mode", "target", "--tid", &t, "-T", &iqn]);
                adm(&[
                    "--op",
                    "new",
                    "--mode",
                    "logicalunit",
                    "--tid",
                    &t,
                    "--lun",
                    "1",
                    "-b",
                    &img,
                ]);
                adm(&["--op", "bind", "--mode", "target", "--tid", &t, "-I", "ALL"]);
                adm(&[
                    "--op",
                    "update",
                    "--mode",
                    "logicalunit",
                    "--tid",
                    &t,
                    "--lun",
                    "1",
                    "--params",
                    "vendor_id=CHURN",
                ]);
            }
            // A session on target 2, then a forced delete under it.
            let iqn2 = format!("{IQN}-{rounds}-2");
            let mut holder = Command::new("iscsi-perf")
                .args(["-i", "iqn.2026-11.io.gateway.test:holder"])
                .arg(url(&d, &iqn2, 1))
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("start iscsi-perf");
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            while !adm(&["--op", "show", "--mode", "conn", "--tid", "2"]).contains("holder") {
                assert!(
                    std::time::Instant::now() < deadline,
                    "no session on target 2"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
            adm(&["--op", "show", "--mode", "target"]);
            adm(&[
                "--op", "delete", "--mode", "target", "--tid", "2", "--force",
            ]);
            for tid in 3..=20 {
                adm(&[
                    "--op",
                    "delete",
                    "--mode",
                    "logicalunit",
                    "--tid",
                    &tid.to_string(),
                    "--lun",
                    "1",
                ]);
                adm(&[
                    "--op",
                    "delete",
                    "--mode",
                    "target",
                    "--tid",
                    &tid.to_string(),
                ]);
            }
            let _ = holder.kill();
            let _ = holder.wait();
            rounds += 1;
        }
        let out = io.join().expect("fio thread");
        assert!(out.stdout.contains("err= 0"), "{}", out.stdout);
    });
    // Every deleted target's thread is joined and its fds closed (with a short wait for the
    // last session's socket to go).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while (count("task"), count("fd")) != (threads0, fds0) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(count("task"), threads0, "threads leaked");
    assert_eq!(count("fd"), fds0, "file descriptors leaked");
}

/// gatewayadm takes tgtadm's options and gives its answers; accounts and portals.
#[test]
fn gatewayadm_speaks_like_tgtadm() {
    let d = Daemon::start(
        "admin-gwadm",
        &[TargetSpec::new(vec![LunSpec::new(16 * MIB)])],
    );
    let gw = |args: &[&str]| d.admin("gatewayadm", args);
    let out = gw(&[
        "--op",
        "new",
        "--mode",
        "account",
        "--user",
        "alice",
        "--password",
        "0123456789ab",
    ]);
    assert!(out.ok(), "{}", out.stderr);
    let out = gw(&[
        "--op", "bind", "--mode", "account", "--tid", "1", "--user", "alice",
    ]);
    assert!(out.ok(), "{}", out.stderr);
    let out = gw(&["--op", "show", "--mode", "account"]);
    assert_eq!(out.stdout, "Account list:\n    alice\n");
    let show = gw(&["--op", "show", "--mode", "target"]).stdout;
    assert!(
        show.contains("    Account information:\n        alice\n"),
        "{show}"
    );
    // Bound, the account is required: CHAP logins only.
    assert!(!inq(&d.url(0, 1), &[]).ok(), "login without CHAP refused");
    let chap = format!("iscsi://alice%0123456789ab@{}/{}/1", d.portal, d.targets[0]);
    let ok = inq(&chap, &[]);
    assert!(ok.ok(), "CHAP login: {}{}", ok.stdout, ok.stderr);
    let out = gw(&[
        "--op", "unbind", "--mode", "account", "--tid", "1", "--user", "alice",
    ]);
    assert!(out.ok(), "{}", out.stderr);
    assert!(inq(&d.url(0, 1), &[]).ok(), "no account bound: no CHAP");
    let out = gw(&[
        "--op", "bind", "--mode", "account", "--tid", "1", "--user", "bob",
    ]);
    assert_eq!(out.code, Some(22));
    assert_eq!(out.stderr.trim(), "tgtadm: can't find the account");
    let out = gw(&[
        "--op", "new", "--mode", "target", "--tid", "0", "-T", "iqn.x:y",
    ]);
    assert_eq!(out.stderr.trim(), "tgtadm: 'tid' cannot be 0");
    let out = gw(&["--mode", "target"]);
    assert_eq!(out.stderr.trim(), "tgtadm: specify the operation type");

    // A second portal, added and removed live.
    let free = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = free.local_addr().expect("addr").port();
    drop(free);
    let portal = format!("127.0.0.1:{port}");
    let out = gw(&[
        "--op",
        "new",
        "--mode",
        "portal",
        "--param",
        &format!("portal={portal}"),
    ]);
    assert!(out.ok(), "{}", out.stderr);
    let listed = gw(&["--op", "show", "--mode", "portal"]).stdout;
    assert!(listed.contains(&format!("Portal: {portal},1")), "{listed}");
    let via = format!("iscsi://{portal}/{}/1", d.targets[0]);
    assert!(inq(&via, &[]).ok());
    let out = gw(&[
        "--op",
        "delete",
        "--mode",
        "portal",
        "--param",
        &format!("portal={portal}"),
    ]);
    assert!(out.ok(), "{}", out.stderr);
    assert!(!inq(&via, &[]).ok());

    // Without a daemon on that control port: tgtadm's exit status.
    let out = gw(&["-C", "9", "--op", "show", "--mode", "target"]);
    assert_eq!(out.code, Some(107), "{}", out.stderr);
}

/// `system delete` stops the daemon once no target is left, as tgtadm expects.
#[test]
fn system_delete_stops_the_daemon() {
    let mut d = Daemon::start(
        "admin-sysdel",
        &[TargetSpec::new(vec![LunSpec::new(16 * MIB)])],
    );
    let refused = d.admin("tgtadm", &["--op", "delete", "--mode", "system"]);
    assert_eq!(refused.code, Some(22), "targets remain: {}", refused.stderr);
    d.tgtadm(&[
        "--lld", "iscsi", "--op", "delete", "--mode", "target", "--tid", "1",
    ]);
    d.tgtadm(&["--op", "delete", "--mode", "system"]);
    assert!(d.wait_exit(Duration::from_secs(10)), "gatewayd still runs");
}

/// A malformed request, or one from a user other than the daemon's, gets an error reply; the
/// daemon goes on serving.
#[test]
fn bad_requests_and_strangers_get_an_error() {
    use std::io::{Read, Write};
    let d = Daemon::start(
        "admin-bad",
        &[TargetSpec::new(vec![LunSpec::new(16 * MIB)])],
    );
    let path = d.admin_socket_base().with_extension("0");
    let ask = |bytes: &[u8]| {
        let mut s = std::os::unix::net::UnixStream::connect(&path).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(bytes).unwrap();
        let mut reply = [0u8; 8];
        s.read_exact(&mut reply).expect("an error reply");
        u32::from_ne_bytes(reply[..4].try_into().unwrap())
    };
    // A length below the header size, an unknown mode, a body of garbage.
    let mut header = [0u8; 120];
    header[72..76].copy_from_slice(&10u32.to_ne_bytes());
    assert_ne!(ask(&header), 0);
    let mut header = [0u8; 120];
    header[0..4].copy_from_slice(&99u32.to_ne_bytes());
    header[72..76].copy_from_slice(&120u32.to_ne_bytes());
    assert_ne!(ask(&header), 0);
    let mut req = [0u8; 124];
    req[0..4].copy_from_slice(&1u32.to_ne_bytes());
    req[4..8].copy_from_slice(&5u32.to_ne_bytes());
    req[72..76].copy_from_slice(&124u32.to_ne_bytes());
    req[76..80].copy_from_slice(&1i32.to_ne_bytes());
    req[120..124].copy_from_slice(&[0xff, 0xfe, 0x3d, 0xff]);
    assert_ne!(ask(&req), 0);
    // A user other than root.
    let stranger = run(
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "tgtadm"])
            .args([
                "--lld", "iscsi", "--op", "delete", "--mode", "target", "--tid", "1",
            ])
            .env("TGT_IPC_SOCKET", d.admin_socket_base()),
        Duration::from_secs(20),
    );
    assert_eq!(
        stranger.code,
        Some(22),
        "{}{}",
        stranger.stdout,
        stranger.stderr
    );
    assert!(
        stranger.stderr.contains("tgtadm: invalid request"),
        "{}",
        stranger.stderr
    );
    // Still serving, and target 1 was not deleted.
    let show = d.tgtadm(&["--lld", "iscsi", "--op", "show", "--mode", "target"]);
    assert!(show.contains(&d.targets[0]), "{show}");
    assert!(inq(&d.url(0, 1), &[]).ok());
}

/// The same sequence of requests through tgtadm and through gatewayadm, against two daemons
/// set up alike, prints the same text and exits with the same codes.
#[test]
fn gatewayadm_and_tgtadm_answer_alike() {
    let shared = gw_tests::TempDir::new("admin-alike-img");
    let img = shared.0.join("lun.img");
    std::fs::File::create(&img)
        .and_then(|f| f.set_len(16 * MIB))
        .expect("create a LUN file");
    let img = img.to_str().expect("UTF-8 path").to_string();
    let sequence: Vec<Vec<&str>> = vec![
        vec!["--op", "new", "--mode", "target", "--tid", "3", "-T", IQN],
        vec!["--op", "new", "--mode", "target", "--tid", "3", "-T", IQN],
        vec![
            "--op",
            "new",
            "--mode",
            "logicalunit",
            "--tid",
            "3",
            "--lun",
            "1",
            "-b",
            &img,
        ],
        vec![
            "--op",
            "new",
            "--mode",
            "logicalunit",
            "--tid",
            "3",
            "--lun",
            "1",
            "-b",
            &img,
        ],
        vec![
            "--op",
            "bind",
            "--mode",
            "target",
            "--tid",
            "3",
            "-I",
            "10.0.0.0/8",
        ],
        vec![
            "--op", "bind", "--mode", "target", "--tid", "3", "-Q", "iqn.x:y",
        ],
        vec![
            "--op",
            "unbind",
            "--mode",
            "target",
            "--tid",
            "3",
            "-I",
            "192.168.0.1",
        ],
        vec![
            "--op",
            "new",
            "--mode",
            "account",
            "--user",
            "u1",
            "--password",
            "0123456789abc",
        ],
        vec![
            "--op", "bind", "--mode", "account", "--tid", "3", "--user", "u1",
        ],
        vec![
            "--op", "bind", "--mode", "account", "--tid", "3", "--user", "nobody",
        ],
        vec!["--op", "show", "--mode", "account"],
        vec!["--op", "show", "--mode", "target"],
        vec!["--op", "show", "--mode", "target", "--tid", "3"],
        vec!["--op", "show", "--mode", "target", "--tid", "9"],
        vec![
            "--op",
            "update",
            "--mode",
            "target",
            "--tid",
            "3",
            "-n",
            "MaxBurstLength",
            "-v",
            "1",
        ],
        vec![
            "--op",
            "delete",
            "--mode",
            "logicalunit",
            "--tid",
            "3",
            "--lun",
            "7",
        ],
        vec!["--op", "delete", "--mode", "target", "--tid", "3"],
        vec!["--op", "delete", "--mode", "target"],
        vec!["--mode", "target"],
        vec!["--op", "show", "--mode", "lld"],
    ];
    let run_all = |program: &str, tag: &str| {
        let d = Daemon::start(tag, &[TargetSpec::new(vec![LunSpec::new(16 * MIB)])]);
        sequence
            .iter()
            .map(|args| {
                let mut full = vec!["--lld", "iscsi"];
                full.extend_from_slice(args);
                let out = d.admin(program, &full);
                // The first target's name and file differ between the two daemons.
                let local = |t: &str| {
                    t.replace(&d.targets[0], "TARGET1")
                        .replace(&d.dir.0.display().to_string(), "DIR")
                };
                (args.join(" "), out.code, local(&out.stdout), out.stderr)
            })
            .collect::<Vec<_>>()
    };
    let by_tgtadm = run_all("tgtadm", "admin-alike");
    let by_gatewayadm = run_all("gatewayadm", "admin-alike");
    for (a, b) in by_tgtadm.iter().zip(&by_gatewayadm) {
        assert_eq!(a, b, "tgtadm and gatewayadm differ");
    }
    assert!(
        by_tgtadm.iter().any(|r| r.1 == Some(22)),
        "the sequence has refusals"
    );
}
