//! SIGHUP re-reads targets.conf and applies only the difference, live; a broken file changes
//! nothing.

use std::process::Command;
use std::time::{Duration, Instant};

use gw_tests::{run, Daemon, LunSpec, TargetSpec};

const MIB: u64 = 1 << 20;

fn hup(d: &Daemon) {
    let out = run(
        Command::new("kill").args(["-HUP", &d.pid().to_string()]),
        Duration::from_secs(5),
    );
    assert!(out.ok(), "{}", out.stderr);
}

/// Polls `tgtadm --op show` until `pred` holds.
fn wait_show(d: &Daemon, what: &str, pred: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let show = d.tgtadm(&["--lld", "iscsi", "--op", "show", "--mode", "target"]);
        if pred(&show) {
            return show;
        }
        assert!(
            Instant::now() < deadline,
            "{what} did not happen; show:\n{show}\nlog:\n{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn inq_ok(url: &str) -> bool {
    run(Command::new("iscsi-inq").arg(url), Duration::from_secs(20)).ok()
}

fn sparse(path: &std::path::Path, size: u64) {
    std::fs::File::create(path)
        .and_then(|f| f.set_len(size))
        .expect("create a LUN file");
}

#[test]
fn sighup_applies_the_smallest_change() {
    let d = Daemon::start(
        "reload",
        &[
            TargetSpec::new(vec![LunSpec::new(16 * MIB)]),
            TargetSpec::new(vec![LunSpec::new(16 * MIB)]),
        ],
    );
    let (t1, t2) = (d.targets[0].clone(), d.targets[1].clone());
    let t3 = "iqn.2026-11.io.gateway.test:reload-t3".to_string();
    let dir = &d.dir.0;
    let lun1 = dir.join("t1-lun1.img");
    let extra = dir.join("t1-lun2.img");
    let new3 = dir.join("t3.img");
    sparse(&extra, 8 * MIB);
    sparse(&new3, 8 * MIB);
    // Target 1 gains a LUN and a vendor, target 2 goes, target 3 comes.
    std::fs::write(
        &d.config,
        format!(
            "<target {t1}>\n    <backing-store {}>\n        vendor_id RELOADED\n    </backing-store>\n    backing-store {}\n</target>\n<target {t3}>\n    backing-store {}\n</target>\n",
            lun1.display(),
            extra.display(),
            new3.display()
        ),
    )
    .expect("rewrite targets.conf");
    hup(&d);
    let show = wait_show(&d, "target 3 starting", |s| {
        s.contains(&t3) && !s.contains(&t2)
    });
    let block1 = &show[show.find(&t1).expect("target 1 stays")..show.find(&t3).expect("t3")];
    assert!(block1.contains("LUN: 2"), "{block1}");
    assert!(inq_ok(&format!("iscsi://{}/{t3}/1", d.portal)));
    assert!(!inq_ok(&d.url(1, 1)), "target 2 is gone");
    let inq = run(
        Command::new("iscsi-inq").arg(d.url(0, 1)),
        Duration::from_secs(20),
    );
    assert!(
        inq.stdout.contains("RELOADED"),
        "{}{}",
        inq.stdout,
        inq.stderr
    );

    // An ACL change reaches the next login.
    std::fs::write(
        &d.config,
        format!(
            "<target {t1}>\n    <backing-store {}>\n        vendor_id RELOADED\n    </backing-store>\n    backing-store {}\n    initiator-address 10.0.0.0/8\n</target>\n<target {t3}>\n    backing-store {}\n</target>\n",
            lun1.display(),
            extra.display(),
            new3.display()
        ),
    )
    .expect("rewrite targets.conf");
    hup(&d);
    wait_show(&d, "the ACL change", |s| s.contains("10.0.0.0/8"));
    assert!(!inq_ok(&d.url(0, 1)), "loopback is no longer allowed");

    // A file with an error changes nothing.
    std::fs::write(
        &d.config,
        format!(
            "<target {t3}>\n    backing-store {}/missing.img\n</target>\n",
            dir.display()
        ),
    )
    .expect("rewrite targets.conf");
    hup(&d);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !d.log().contains("nothing was changed") {
        assert!(Instant::now() < deadline, "no error logged:\n{}", d.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    let show = d.tgtadm(&["--lld", "iscsi", "--op", "show", "--mode", "target"]);
    assert!(show.contains(&t1) && show.contains(&t3), "{show}");
    assert!(inq_ok(&format!("iscsi://{}/{t3}/1", d.portal)));
}
