//! INQUIRY, VPD pages and capacities as libiscsi's tools see them.

use std::process::Command;
use std::time::Duration;

use gw_tests::{run, Daemon, LunSpec, TargetSpec};

const MIB: u64 = 1 << 20;

fn inq(url: &str, page: Option<u8>) -> String {
    let mut cmd = Command::new("iscsi-inq");
    if let Some(p) = page {
        cmd.arg("-e").arg("1").arg("-c").arg(p.to_string());
    }
    let out = run(cmd.arg(url), Duration::from_secs(20));
    assert!(
        out.ok(),
        "iscsi-inq {page:?} failed: {}{}",
        out.stdout,
        out.stderr
    );
    out.stdout
}

#[test]
fn standard_inquiry_and_vpd_pages() {
    let mut d = Daemon::start("inq", &[TargetSpec::new(vec![LunSpec::new(32 * MIB)])]);
    let url = d.url(0, 1);
    let std_inq = inq(&url, None);
    assert!(
        std_inq.contains("Peripheral Device Type:DIRECT_ACCESS"),
        "{std_inq}"
    );
    assert!(std_inq.contains("Vendor:GATEWAY"), "{std_inq}");
    let supported = inq(&url, Some(0x00));
    for page in ["0x80", "0x83", "0xb0", "0xb1", "0xb2"] {
        assert!(
            supported.to_lowercase().contains(page),
            "page {page} listed: {supported}"
        );
    }
    let serial = inq(&url, Some(0x80));
    assert!(serial.contains("Unit Serial Number:"), "{serial}");
    let ids = inq(&url, Some(0x83));
    assert!(ids.contains("NAA"), "NAA designator: {ids}");
    assert!(ids.contains(&d.targets[0]), "target port name: {ids}");
    let limits = inq(&url, Some(0xb0));
    assert!(
        limits.to_lowercase().contains("maximum transfer length"),
        "{limits}"
    );
    let chars = inq(&url, Some(0xb1));
    assert!(chars.to_lowercase().contains("rotation"), "{chars}");
    let prov = inq(&url, Some(0xb2));
    assert!(!prov.is_empty());
    // Identity is stable across a restart.
    d.restart();
    assert_eq!(inq(&d.url(0, 1), Some(0x80)), serial);
    assert_eq!(inq(&d.url(0, 1), Some(0x83)), ids);
}

#[test]
fn read_capacity16_reports_blocks_and_block_size() {
    let d = Daemon::start(
        "cap",
        &[TargetSpec::new(vec![
            LunSpec::new(48 * MIB),
            LunSpec::new(40 * MIB).with("block-size 4096"),
        ])],
    );
    for (lun, blocks, bs) in [(1, 48 * MIB / 512, 512), (2, 40 * MIB / 4096, 4096)] {
        let out = run(
            Command::new("iscsi-readcapacity16").arg(d.url(0, lun)),
            Duration::from_secs(20),
        );
        assert!(out.ok(), "{}{}", out.stdout, out.stderr);
        assert!(
            out.stdout
                .contains(&format!("RETURNED LOGICAL BLOCK ADDRESS:{}", blocks - 1)),
            "{}",
            out.stdout
        );
        assert!(
            out.stdout
                .contains(&format!("LOGICAL BLOCK LENGTH IN BYTES:{bs}")),
            "{}",
            out.stdout
        );
    }
}
