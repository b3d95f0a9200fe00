//! The soak test: 64 sessions across three targets doing verified mixed I/O (with UNMAP-free
//! random reads and writes), while other initiators log in and out and an operator changes
//! things through tgtadm. Zero errors, zero mismatches, and the daemon's memory and file
//! descriptors come back to where they were.
//!
//! 60 seconds by default; `GW_SOAK_SECONDS=600` for the nightly run.

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use gw_tests::{fio_path, run, Daemon, LunSpec, TargetSpec};

const MIB: u64 = 1 << 20;
/// Sessions fio opens, across the targets.
const SESSIONS: usize = 64;
/// Bytes of its own each fio job verifies (jobs never overlap).
const JOB_BYTES: u64 = 2 * MIB;

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .expect("VmRSS of the daemon")
}

fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("the daemon's fd table")
        .count()
}

#[test]
fn sixty_four_sessions_churn_and_verify() {
    let seconds: u64 = std::env::var("GW_SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let per_target = SESSIONS.div_ceil(3);
    let lun = LunSpec::new(per_target as u64 * JOB_BYTES + 8 * MIB);
    let d = Daemon::start(
        "soak",
        &[
            TargetSpec::new(vec![lun.clone()]),
            TargetSpec::new(vec![lun.clone()]),
            TargetSpec::new(vec![lun]),
        ],
    );
    let pid = d.pid();
    // Warm up every path once, then take the baseline.
    d.fio(
        0,
        1,
        &["--rw=randrw", "--bs=4k", "--size=1m", "--iodepth=4"],
    );
    std::thread::sleep(Duration::from_millis(200));
    let (rss0, fds0) = (rss_kib(pid), fds(pid));

    // One fio with a job section per target, SESSIONS jobs in all, each a session.
    let mut jobs = format!(
        "[global]\nioengine=libiscsi\nrw=randrw\nrwmixread=60\nbs=4k\niodepth=4\nsize={JOB_BYTES}\noffset_increment={JOB_BYTES}\nverify=crc32c\nverify_fatal=1\ntime_based\nruntime={seconds}\n"
    );
    let mut left = SESSIONS;
    for t in 0..3 {
        let n = left.min(per_target);
        left -= n;
        jobs.push_str(&format!(
            "[t{t}]\nfilename={}\nnumjobs={n}\n",
            d.fio_filename(t, 1)
        ));
    }
    let job_file = d.dir.0.join("soak.fio");
    std::fs::write(&job_file, jobs).unwrap();

    let done = AtomicBool::new(false);
    let (logins, changes) = std::thread::scope(|scope| {
        // Initiators that come and go.
        let churn = scope.spawn(|| {
            let mut n = 0;
            while !done.load(Ordering::Relaxed) {
                let out = run(
                    Command::new("iscsi-inq")
                        .args(["-i", &format!("iqn.2026-11.io.gateway.test:churn-{n}")])
                        .arg(d.url(n % 3, 1)),
                    Duration::from_secs(30),
                );
                assert!(out.ok(), "a login during the soak failed: {}", out.stderr);
                n += 1;
                std::thread::sleep(Duration::from_millis(200));
            }
            n
        });
        // An operator at work.
        let admin = scope.spawn(|| {
            let mut n = 0;
            while !done.load(Ordering::Relaxed) {
                let value = if n % 2 == 0 { "131072" } else { "262144" };
                d.tgtadm(&[
                    "--lld",
                    "iscsi",
                    "--op",
                    "update",
                    "--mode",
                    "target",
                    "--tid",
                    "2",
                    "-n",
                    "MaxBurstLength",
                    "-v",
                    value,
                ]);
                d.tgtadm(&["--lld", "iscsi", "--op", "show", "--mode", "target"]);
                d.tgtadm(&[
                    "--lld", "iscsi", "--op", "show", "--mode", "conn", "--tid", "1",
                ]);
                n += 1;
                std::thread::sleep(Duration::from_millis(500));
            }
            n
        });
        let out = run(
            Command::new(fio_path())
                .current_dir(&d.dir.0)
                .arg(&job_file)
                .arg("--group_reporting"),
            Duration::from_secs(seconds + 300),
        );
        done.store(true, Ordering::Relaxed);
        assert!(
            out.ok() && out.stdout.contains("err= 0"),
            "fio failed:\n{}{}\ndaemon log:\n{}",
            out.stdout,
            out.stderr,
            d.log()
        );
        assert!(!out.stdout.contains("verify"), "{}", out.stdout);
        (churn.join().unwrap(), admin.join().unwrap())
    });
    assert!(logins > 0 && changes > 0);

    // Every session is gone; memory and descriptors are back near the baseline.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while fds(pid) > fds0 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let (rss1, fds1) = (rss_kib(pid), fds(pid));
    println!(
        "soak: {SESSIONS} sessions for {seconds} s, fio errors 0, verify mismatches 0, {logins} logins, {changes} admin rounds; RSS {rss0} -> {rss1} KiB, fds {fds0} -> {fds1}"
    );
    assert_eq!(fds1, fds0, "file descriptors leaked");
    assert!(
        rss1 < rss0 + 64 * 1024,
        "RSS grew from {rss0} KiB to {rss1} KiB"
    );
}
