//! Discovery and login with libiscsi's tools: every target and LUN listed with its size, and
//! wrong names refused quickly.

use std::process::Command;
use std::time::Duration;

use gw_tests::{run, Daemon, LunSpec, TargetSpec};

const MIB: u64 = 1 << 20;

/// What iscsi-ls prints as a LUN's size: (last LBA * block size) in MiB, rounded down.
fn ls_size(bytes: u64, block: u64) -> String {
    format!("Size:{}M", (bytes / block - 1) * block / MIB)
}

#[test]
fn iscsi_ls_lists_every_target_and_lun_with_sizes() {
    let targets: Vec<TargetSpec> = (0..3u64)
        .map(|t| {
            TargetSpec::new(vec![
                LunSpec::new((16 + 8 * t) * MIB),
                LunSpec::new((64 + 8 * t) * MIB),
            ])
        })
        .collect();
    let d = Daemon::start("ls", &targets);
    let out = run(
        Command::new("iscsi-ls")
            .arg("-s")
            .arg(format!("iscsi://{}", d.portal)),
        Duration::from_secs(30),
    );
    assert!(out.ok(), "iscsi-ls failed: {}{}", out.stdout, out.stderr);
    for (t, name) in d.targets.iter().enumerate() {
        let block: Vec<&str> = out
            .stdout
            .split("Target:")
            .filter(|b| b.starts_with(name.as_str()))
            .collect();
        assert_eq!(block.len(), 1, "{name} listed once in:\n{}", out.stdout);
        let b = block[0];
        assert!(
            b.contains(&format!("Portal:{},1", d.portal)),
            "portal with TPGT in {b}"
        );
        assert!(
            b.contains("Lun:0") && b.contains("STORAGE_ARRAY_CONTROLLER"),
            "{b}"
        );
        let t = t as u64;
        for (lun, size) in [(1, (16 + 8 * t) * MIB), (2, (64 + 8 * t) * MIB)] {
            let line = b
                .lines()
                .find(|l| l.starts_with(&format!("Lun:{lun} ")))
                .unwrap_or_else(|| panic!("LUN {lun} of {name} missing in {b}"));
            assert!(line.contains("DIRECT_ACCESS"), "{line}");
            assert!(
                line.contains(&ls_size(size, 512)),
                "{line}: expected {}",
                ls_size(size, 512)
            );
        }
    }
}

#[test]
fn ipv6_portal_serves_discovery_and_login() {
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        panic!("this machine has no IPv6 loopback; the IPv6 portal cannot be tested");
    }
    let d = Daemon::start_with(
        "v6",
        &[TargetSpec::new(vec![LunSpec::new(16 * MIB)])],
        &["127.0.0.1:0", "[::1]:0"],
    );
    let v6 = d.portals[1];
    let out = run(
        Command::new("iscsi-ls")
            .arg("-s")
            .arg(format!("iscsi://{v6}")),
        Duration::from_secs(30),
    );
    assert!(out.ok(), "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains(&d.targets[0]), "{}", out.stdout);
    // SendTargets lists both portals.
    assert!(
        out.stdout.contains(&format!("Portal:{v6},1"))
            || out.stdout.contains(&format!("Portal:{},1", d.portal)),
        "{}",
        out.stdout
    );
    let out = run(
        Command::new("iscsi-readcapacity16").arg(format!("iscsi://{v6}/{}/1", d.targets[0])),
        Duration::from_secs(30),
    );
    assert!(out.ok(), "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("Total size:16777216"), "{}", out.stdout);
}

#[test]
fn wrong_target_and_lun_fail_fast() {
    let d = Daemon::start("wrong", &[TargetSpec::new(vec![LunSpec::new(16 * MIB)])]);
    let out = run(
        Command::new("iscsi-inq").arg(format!(
            "iscsi://{}/iqn.2026-11.io.gateway.test:nonexistent/1",
            d.portal
        )),
        Duration::from_secs(20),
    );
    assert!(!out.ok(), "login to a missing target must fail");
    assert!(
        out.elapsed < Duration::from_secs(10),
        "refused quickly, took {:?}",
        out.elapsed
    );
    assert!(
        format!("{}{}", out.stdout, out.stderr)
            .to_lowercase()
            .contains("not found")
            || format!("{}{}", out.stdout, out.stderr).contains("0x0203")
            || format!("{}{}", out.stdout, out.stderr)
                .to_lowercase()
                .contains("login"),
        "a login error is reported: {}{}",
        out.stdout,
        out.stderr
    );
    let out = run(
        Command::new("iscsi-readcapacity16").arg(d.url(0, 7)),
        Duration::from_secs(20),
    );
    assert!(!out.ok(), "a missing LUN must fail: {}", out.stdout);
    assert!(
        out.elapsed < Duration::from_secs(10),
        "answered quickly, took {:?}",
        out.elapsed
    );
    // The daemon still serves the good LUN afterwards.
    let out = run(
        Command::new("iscsi-readcapacity16").arg(d.url(0, 1)),
        Duration::from_secs(20),
    );
    assert!(out.ok(), "{}{}", out.stdout, out.stderr);
}
