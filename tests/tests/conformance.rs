//! libiscsi's conformance suite (iscsi-test-cu) against a fresh gatewayd per suite.

use gw_tests::{iscsi_test_cu, Daemon, LunSpec, TargetSpec};

const MIB: u64 = 1 << 20;

/// What the suite's LU must be.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Lu {
    Plain,
    /// PreventAllow, StartStopUnit and NoMedia exercise a removable medium.
    Removable,
    /// ReadOnly checks every write-type command is refused.
    ReadOnly,
    /// Thin provisioned (tgt's `params thin_provisioning=1`): UNMAP, WRITE SAME with UNMAP
    /// and GET LBA STATUS are only tested where VPD 0xB2 and LBPME say they are supported.
    Thin,
    /// Thin with 4096-byte blocks: one logical block per physical block. GetLBAStatus's
    /// UnmapSingle asks for LBA i+1 and expects the answer to start at i+LBPPB, which holds
    /// only when LBPPB is 1 (with 512-byte blocks a thin LU has 8 per 4 KiB physical block).
    Thin4k,
    /// Read-only and thin: ReadOnlySBC checks UNMAP is refused too.
    ReadOnlyThin,
    /// Thin on an O_DIRECT store (tgt's `aio`): holes are punched the same way.
    ThinDirect,
}

fn suite(name: &str, kind: Lu) {
    let lun = match kind {
        Lu::Plain => LunSpec::new(64 * MIB),
        Lu::Removable => LunSpec::new(64 * MIB).with("removable 1"),
        Lu::ReadOnly => LunSpec::new(64 * MIB).with("readonly 1"),
        // 16 MiB: under 65536 blocks, so WriteSame16.Unmap skips its step that WRITE(16)s
        // 32 MiB at once, twice the MAXIMUM TRANSFER LENGTH VPD 0xB0 advertises.
        Lu::Thin => LunSpec::new(16 * MIB).with("params thin_provisioning=1"),
        Lu::ReadOnlyThin => LunSpec::new(64 * MIB)
            .with("readonly 1")
            .with("params thin_provisioning=1"),
        Lu::ThinDirect => LunSpec::new(16 * MIB)
            .with("bs-type aio")
            .with("params thin_provisioning=1"),
        Lu::Thin4k => LunSpec::new(64 * MIB)
            .with("block-size 4096")
            .with("params thin_provisioning=1"),
    };
    let tag = name.replace('.', "-").to_lowercase();
    let d = Daemon::start(&tag, &[TargetSpec::new(vec![lun])]);
    let r = iscsi_test_cu(
        &d.url(0, 1),
        name,
        &[
            "-i",
            "iqn.2007-10.com.github:sahlberg:libiscsi:iscsi-test",
            "-I",
            "iqn.2007-10.com.github:sahlberg:libiscsi:iscsi-test-2",
        ],
    );
    println!(
        "{name:<32} run {:>3}  passed {:>3}  failed {:>3}  skip notes {}",
        r.run,
        r.passed,
        r.failed,
        r.skips.len()
    );
    for s in &r.skips {
        println!("    skipped: {s}");
    }
    assert_eq!(
        r.failed, 0,
        "{name}: failed tests {:?}\n{}",
        r.failures, r.output
    );
    assert_eq!(r.passed, r.run);
}

macro_rules! suites {
    ($($test:ident => $name:literal, $kind:ident;)*) => {
        $(
            #[test]
            fn $test() {
                suite($name, Lu::$kind);
            }
        )*
    };
}

suites! {
    inquiry => "ALL.Inquiry", Plain;
    read_capacity10 => "ALL.ReadCapacity10", Plain;
    read_capacity16 => "ALL.ReadCapacity16", Plain;
    read6 => "ALL.Read6", Plain;
    read10 => "ALL.Read10", Plain;
    read12 => "ALL.Read12", Plain;
    read16 => "ALL.Read16", Plain;
    write10 => "ALL.Write10", Plain;
    write12 => "ALL.Write12", Plain;
    write16 => "ALL.Write16", Plain;
    verify10 => "ALL.Verify10", Plain;
    verify16 => "ALL.Verify16", Plain;
    test_unit_ready => "ALL.TestUnitReady", Plain;
    report_supported_opcodes => "ALL.ReportSupportedOpcodes", Plain;
    mode_sense6 => "ALL.ModeSense6", Plain;
    mandatory => "ALL.Mandatory", Plain;
    iscsi_cmdsn => "iSCSI.iSCSIcmdsn", Plain;
    iscsi_datasn => "iSCSI.iSCSIdatasn", Plain;
    prevent_allow => "ALL.PreventAllow", Removable;
    start_stop_unit => "ALL.StartStopUnit", Removable;
    no_media => "ALL.NoMedia", Removable;
    compare_and_write => "ALL.CompareAndWrite", Plain;
    write_verify10 => "ALL.WriteVerify10", Plain;
    write_verify12 => "ALL.WriteVerify12", Plain;
    write_verify16 => "ALL.WriteVerify16", Plain;
    prefetch10 => "ALL.Prefetch10", Plain;
    prefetch16 => "ALL.Prefetch16", Plain;
    verify12 => "ALL.Verify12", Plain;
    read_only => "ALL.ReadOnly", ReadOnly;
    iscsi_residuals => "iSCSI.iSCSIResiduals", Plain;
    iscsi_tmf => "iSCSI.iSCSITMF", Plain;
    prin_read_keys => "ALL.PrinReadKeys", Plain;
    prin_serviceaction_range => "ALL.PrinServiceactionRange", Plain;
    prin_report_capabilities => "ALL.PrinReportCapabilities", Plain;
    prout_register => "ALL.ProutRegister", Plain;
    prout_reserve => "ALL.ProutReserve", Plain;
    prout_clear => "ALL.ProutClear", Plain;
    prout_preempt => "ALL.ProutPreempt", Plain;
    reserve6 => "ALL.Reserve6", Plain;
    unmap => "ALL.Unmap", Thin;
    write_same10_thin => "ALL.WriteSame10", Thin;
    write_same16_thin => "ALL.WriteSame16", Thin;
    write_same10_plain => "ALL.WriteSame10", Plain;
    write_same16_plain => "ALL.WriteSame16", Plain;
    get_lba_status => "ALL.GetLBAStatus", Thin4k;
    unmap_plain => "ALL.Unmap", Plain;
    read_capacity16_thin => "ALL.ReadCapacity16", Thin;
    report_supported_opcodes_thin => "ALL.ReportSupportedOpcodes", Thin;
    inquiry_thin => "ALL.Inquiry", Thin;
    read_only_thin => "ALL.ReadOnly", ReadOnlyThin;
    unmap_direct => "ALL.Unmap", ThinDirect;
    write_same16_direct => "ALL.WriteSame16", ThinDirect;
}
