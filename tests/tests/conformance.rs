//! libiscsi's conformance suite (iscsi-test-cu) against a fresh gatewayd per suite.

use gw_tests::{iscsi_test_cu, Daemon, LunSpec, TargetSpec};

const MIB: u64 = 1 << 20;

fn suite(name: &str, removable: bool) {
    let mut lun = LunSpec::new(64 * MIB);
    if removable {
        // PreventAllow, StartStopUnit and NoMedia exercise a removable medium.
        lun = lun.with("removable 1");
    }
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
    ($($test:ident => $name:literal, $removable:literal;)*) => {
        $(
            #[test]
            fn $test() {
                suite($name, $removable);
            }
        )*
    };
}

suites! {
    inquiry => "ALL.Inquiry", false;
    read_capacity10 => "ALL.ReadCapacity10", false;
    read_capacity16 => "ALL.ReadCapacity16", false;
    read6 => "ALL.Read6", false;
    read10 => "ALL.Read10", false;
    read12 => "ALL.Read12", false;
    read16 => "ALL.Read16", false;
    write10 => "ALL.Write10", false;
    write12 => "ALL.Write12", false;
    write16 => "ALL.Write16", false;
    verify10 => "ALL.Verify10", false;
    verify16 => "ALL.Verify16", false;
    test_unit_ready => "ALL.TestUnitReady", false;
    report_supported_opcodes => "ALL.ReportSupportedOpcodes", false;
    mode_sense6 => "ALL.ModeSense6", false;
    mandatory => "ALL.Mandatory", false;
    iscsi_cmdsn => "iSCSI.iSCSIcmdsn", false;
    iscsi_datasn => "iSCSI.iSCSIdatasn", false;
    prevent_allow => "ALL.PreventAllow", true;
    start_stop_unit => "ALL.StartStopUnit", true;
    no_media => "ALL.NoMedia", true;
    compare_and_write => "ALL.CompareAndWrite", false;
    write_verify10 => "ALL.WriteVerify10", false;
    write_verify12 => "ALL.WriteVerify12", false;
    write_verify16 => "ALL.WriteVerify16", false;
    prefetch10 => "ALL.Prefetch10", false;
    prefetch16 => "ALL.Prefetch16", false;
    verify12 => "ALL.Verify12", false;
    iscsi_residuals => "iSCSI.iSCSIResiduals", false;
    iscsi_tmf => "iSCSI.iSCSITMF", false;
}
