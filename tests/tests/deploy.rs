//! Deployment: the install script lays out binary, unit and config; the unit passes
//! `systemd-analyze verify`; the daemon reports readiness the way `Type=notify` expects.

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use gw_tests::{gatewayd_path, run, TempDir};

#[test]
fn install_lays_out_a_unit_systemd_accepts() {
    let root = TempDir::new("install");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/install");
    let out = run(
        Command::new(script)
            .arg("--root")
            .arg(&root.0)
            .arg("--binary")
            .arg(gatewayd_path()),
        Duration::from_secs(60),
    );
    assert!(out.ok(), "install failed: {}{}", out.stdout, out.stderr);
    for f in [
        "usr/local/bin/gatewayd",
        "usr/local/bin/gatewayadm",
        "etc/systemd/system/gatewayd.service",
        "etc/gatewayd/targets.conf",
        "usr/local/share/doc/gatewayd/README.md",
    ] {
        assert!(root.0.join(f).exists(), "{f} installed");
    }
    // Verify the unit as installed, with its paths pointing into the temporary root so the
    // executables it names exist.
    let unit = std::fs::read_to_string(root.0.join("etc/systemd/system/gatewayd.service")).unwrap();
    assert!(unit.contains("Type=notify") && unit.contains("LimitMEMLOCK=infinity"));
    let r = root.0.display().to_string();
    let checked = unit
        .replace(
            "/usr/local/bin/gatewayd",
            &format!("{r}/usr/local/bin/gatewayd"),
        )
        .replace("/etc/gatewayd", &format!("{r}/etc/gatewayd"));
    let dir = root.0.join("check");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("gatewayd.service"), checked).unwrap();
    let out = run(
        Command::new("systemd-analyze")
            .arg("verify")
            .arg("--man=no")
            .arg(dir.join("gatewayd.service")),
        Duration::from_secs(60),
    );
    assert!(
        out.ok(),
        "systemd-analyze verify: {}{}",
        out.stdout,
        out.stderr
    );
}

#[test]
fn readiness_and_stopping_are_notified() {
    let dir = TempDir::new("notify");
    let sock_path = dir.0.join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let conf = dir.0.join("t.conf");
    std::fs::write(
        &conf,
        "<target iqn.2026-11.io.gateway.test:notify>\n  <backing-store n>\n    bs-type null\n  </backing-store>\n</target>\n",
    )
    .unwrap();
    let mut child = Command::new(gatewayd_path())
        .arg("--config")
        .arg(&conf)
        .arg("--portal")
        .arg("127.0.0.1:0")
        .env("NOTIFY_SOCKET", &sock_path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut buf = [0u8; 64];
    let n = sock.recv(&mut buf);
    let ready = n.as_ref().map(|&n| buf[..n].to_vec());
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let stopping = sock.recv(&mut buf).map(|n| buf[..n].to_vec());
    let status = child.wait().unwrap();
    assert_eq!(ready.unwrap(), b"READY=1");
    assert_eq!(stopping.unwrap(), b"STOPPING=1");
    assert!(status.success(), "clean exit on SIGTERM: {status:?}");
}
