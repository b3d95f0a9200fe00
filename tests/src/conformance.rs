//! The conformance runner: every suite of libiscsi's `iscsi-test-cu` against a freshly
//! started gatewayd (a fresh LU per suite, shaped as the suite needs it), one process per
//! suite, summarised as a table of passed, failed and skipped-with-reason.
//!
//! A skip is not a pass: the table shows each one with libiscsi's reason, and marks the skips
//! that mean the target lacks a feature.

use std::fmt::Write as _;
use std::process::Command;
use std::time::Duration;

use crate::{iscsi_test_cu_paths, run, Daemon, LunSpec, TargetSpec};

const MIB: u64 = 1 << 20;

/// The initiator names the suites log in with (some suites need two).
pub const INITIATORS: [&str; 2] = [
    "iqn.2007-10.com.github:sahlberg:libiscsi:iscsi-test",
    "iqn.2007-10.com.github:sahlberg:libiscsi:iscsi-test-2",
];

/// The LU a suite needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LuKind {
    /// A plain 64 MiB disk.
    Plain,
    /// A removable medium (PreventAllow, StartStopUnit, NoMedia).
    Removable,
    /// A read-only LU (ReadOnly).
    ReadOnly,
    /// A thin-provisioned LU (Unmap, WriteSame, Sanitize, whose BLOCK ERASE needs LBPME,
    /// GetLBAStatus, and the read-only and
    /// no-medium suites, whose UNMAP, WRITE SAME and GET LBA STATUS checks need one). 16 MiB:
    /// under 65536 blocks, so WriteSame16.Unmap skips its step that WRITE(16)s 32 MiB at once,
    /// twice the MAXIMUM TRANSFER LENGTH VPD 0xB0 advertises.
    Thin,
    /// Thin with 4096-byte blocks, one logical block per physical block: GetLBAStatus's
    /// UnmapSingle asks for LBA i+1 yet expects the answer to start at i+LBPPB, which holds
    /// only when LBPPB is 1 (a thin LU of 512-byte blocks has 8 per 4 KiB physical block).
    Thin4k,
}

/// The LU kind each suite runs against.
pub fn lu_kind(suite: &str) -> LuKind {
    let name = suite.rsplit('.').next().unwrap_or(suite);
    match name {
        "PreventAllow" | "StartStopUnit" | "NoMedia" => LuKind::Removable,
        "ReadOnly" => LuKind::ReadOnly,
        "Unmap" | "WriteSame10" | "WriteSame16" | "MultipathIO" | "Sanitize" => LuKind::Thin,
        "GetLBAStatus" => LuKind::Thin4k,
        _ => LuKind::Plain,
    }
}

/// Every top-level suite of `iscsi-test-cu --list` in the ALL and iSCSI families.
pub fn list_suites() -> Vec<String> {
    let out = run(
        Command::new("iscsi-test-cu").arg("--list"),
        Duration::from_secs(30),
    );
    assert!(out.ok(), "iscsi-test-cu --list: {}", out.stderr);
    out.stdout
        .lines()
        .map(str::trim)
        .filter(|l| l.split('.').count() == 2)
        .filter(|l| l.starts_with("ALL.") || l.starts_with("iSCSI."))
        .map(String::from)
        .collect()
}

/// One suite's outcome.
#[derive(Debug, Clone)]
pub struct Row {
    /// Suite name.
    pub suite: String,
    /// Tests run.
    pub run: u32,
    /// Tests passed.
    pub passed: u32,
    /// Names of failed tests.
    pub failures: Vec<String>,
    /// Skips with libiscsi's reason.
    pub skips: Vec<String>,
    /// The whole output, for diagnosis.
    pub output: String,
}

impl Row {
    /// Skips whose reason says the target lacks a feature (as opposed to a test that does
    /// not apply to this LU or this initiator).
    pub fn feature_gaps(&self) -> Vec<&String> {
        self.skips
            .iter()
            .filter(|s| {
                let l = s.to_ascii_lowercase();
                l.contains("not implemented")
                    || l.contains("not supported")
                    || l.contains("does not support")
                    || l.contains("is not available")
            })
            .collect()
    }
}

/// tgt's directive for a thin-provisioned LU.
pub const THIN: &str = "params thin_provisioning=1";

/// Runs one suite against a fresh daemon.
pub fn run_suite(suite: &str) -> Row {
    let size = 64 * MIB;
    let lun = match lu_kind(suite) {
        LuKind::Plain => LunSpec::new(size),
        LuKind::Removable => LunSpec::new(size).with("removable 1").with(THIN),
        LuKind::ReadOnly => LunSpec::new(size).with("readonly 1").with(THIN),
        LuKind::Thin => LunSpec::new(16 * MIB).with(THIN),
        LuKind::Thin4k => LunSpec::new(size).with("block-size 4096").with(THIN),
    };
    run_suite_on(suite, lun)
}

/// Runs one suite against a fresh daemon serving `lun`.
pub fn run_suite_on(suite: &str, lun: LunSpec) -> Row {
    // A list of tests ("A.B.c,A.B.d") is tagged by its first, to keep the name short.
    let first = suite.split(',').next().unwrap_or(suite);
    let tag = format!("cu-{}", first.replace('.', "-").to_lowercase());
    // Two portals, so MultipathIO has a second path to the same LU.
    let d = Daemon::start_with(
        &tag,
        &[TargetSpec::new(vec![lun])],
        &["127.0.0.1:0", "127.0.0.1:0"],
    );
    let first = d.url(0, 1);
    let second = format!("iscsi://{}/{}/1", d.portals[1], d.targets[0]);
    let urls: Vec<&str> = if suite.ends_with(".MultipathIO") {
        vec![&first, &second]
    } else {
        vec![&first]
    };
    let args = ["-i", INITIATORS[0], "-I", INITIATORS[1], "--allow-sanitize"];
    let r = iscsi_test_cu_paths(&urls, suite, &args);
    Row {
        suite: suite.to_string(),
        run: r.run,
        passed: r.passed,
        failures: r.failures,
        skips: r.skips,
        output: r.output,
    }
}

/// The table: one line per suite, then every failure and skip with its reason.
pub fn table(rows: &[Row]) -> String {
    let mut out = format!(
        "{:<34} {:>4} {:>6} {:>6} {:>7} {:>5}\n",
        "suite", "run", "passed", "failed", "skipped", "gaps"
    );
    for r in rows {
        let _ = writeln!(
            out,
            "{:<34} {:>4} {:>6} {:>6} {:>7} {:>5}",
            r.suite,
            r.run,
            r.passed,
            r.failures.len(),
            r.skips.len(),
            r.feature_gaps().len()
        );
    }
    let (run, passed, failed, skipped, gaps) = rows.iter().fold((0, 0, 0, 0, 0), |a, r| {
        (
            a.0 + r.run,
            a.1 + r.passed,
            a.2 + r.failures.len(),
            a.3 + r.skips.len(),
            a.4 + r.feature_gaps().len(),
        )
    });
    let _ = writeln!(
        out,
        "{:<34} {run:>4} {passed:>6} {failed:>6} {skipped:>7} {gaps:>5}",
        "total"
    );
    for r in rows {
        for f in &r.failures {
            let _ = writeln!(out, "FAILED   {}: {f}", r.suite);
        }
        for s in &r.skips {
            let kind = if r.feature_gaps().contains(&s) {
                "GAP    "
            } else {
                "SKIPPED"
            };
            let _ = writeln!(out, "{kind}  {}: {s}", r.suite);
        }
    }
    out
}
