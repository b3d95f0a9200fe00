//! fio (libiscsi engine) writes with crc32c verification on three targets at once, block
//! sizes 512 B to 1 MiB at iodepth 128, then re-reads and verifies after a daemon restart.

use std::process::Command;
use std::time::Duration;

use gw_tests::{fio_path, run, Daemon, LunSpec, TargetSpec};

const MIB: u64 = 1 << 20;

fn fio_job(d: &Daemon, verify_only: bool) -> Command {
    let mut cmd = Command::new(fio_path());
    // fio leaves verify state files in its working directory.
    cmd.current_dir(&d.dir.0);
    cmd.args([
        "--ioengine=libiscsi",
        "--rw=write",
        "--size=256m",
        "--bsrange=512-1m",
        "--iodepth=128",
        "--verify=crc32c",
        "--do_verify=1",
        "--verify_fatal=1",
        "--group_reporting=0",
    ]);
    if verify_only {
        cmd.arg("--verify_only");
    }
    for t in 0..d.targets.len() {
        cmd.arg(format!("--name=t{}", t + 1));
        cmd.arg(format!("--filename={}", d.fio_filename(t, 1)));
    }
    cmd
}

fn check(out: &gw_tests::Output, what: &str) {
    let text = format!("{}{}", out.stdout, out.stderr);
    assert!(out.ok(), "{what}: fio failed\n{text}");
    let jobs = text.matches("err= 0").count();
    assert_eq!(jobs, 3, "{what}: three jobs without error\n{text}");
    assert!(
        !text.contains("verify: bad"),
        "{what}: verification failure\n{text}"
    );
}

fn write_restart_verify(tag: &str, directives: &[&str]) {
    let targets: Vec<TargetSpec> = (0..3)
        .map(|_| {
            let mut t = TargetSpec::new(vec![LunSpec::new(288 * MIB)]);
            for d in directives {
                t = t.with(d);
            }
            t
        })
        .collect();
    let mut d = Daemon::start(tag, &targets);
    let out = run(&mut fio_job(&d, false), Duration::from_secs(300));
    check(&out, "write and verify");
    d.restart();
    let out = run(&mut fio_job(&d, true), Duration::from_secs(300));
    check(&out, "verify after restart");
}

#[test]
fn write_verify_restart_verify_three_targets() {
    write_restart_verify("fio", &[]);
}

#[test]
fn write_verify_restart_verify_with_header_digests() {
    // The targets accept only CRC32C header digests, so a login without them would fail:
    // passing proves the digests were in use. (Debian's libiscsi 1.19 offers DataDigest=None
    // only, so data digests cannot be negotiated by this initiator.)
    write_restart_verify("fio-digest", &["HeaderDigest CRC32C"]);
}
