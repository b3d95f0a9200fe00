//! initiator-name and initiator-address ACLs: a refused initiator neither logs in nor sees
//! the target in discovery; an allowed one does both.

use std::process::Command;
use std::time::Duration;

use gw_tests::{run, Daemon, LunSpec, TargetSpec};

const MIB: u64 = 1 << 20;
const ALLOWED: &str = "iqn.2026-11.io.gateway.test:allowed";
const OTHER: &str = "iqn.2026-11.io.gateway.test:other";

#[test]
fn acls_filter_login_and_discovery() {
    let d = Daemon::start(
        "acl",
        &[
            TargetSpec::new(vec![LunSpec::new(16 * MIB)])
                .with(&format!("initiator-name {ALLOWED}")),
            TargetSpec::new(vec![LunSpec::new(16 * MIB)]).with("initiator-address 10.9.9.0/24"),
            TargetSpec::new(vec![LunSpec::new(16 * MIB)]).with("initiator-address 127.0.0.0/8"),
        ],
    );
    let ls = |initiator: &str| {
        let out = run(
            Command::new("iscsi-ls")
                .arg("-i")
                .arg(initiator)
                .arg(format!("iscsi://{}", d.portal)),
            Duration::from_secs(20),
        );
        assert!(out.ok(), "{}{}", out.stdout, out.stderr);
        out.stdout
    };
    let seen = ls(ALLOWED);
    assert!(
        seen.contains(&d.targets[0]),
        "allowed name sees target 1: {seen}"
    );
    assert!(
        !seen.contains(&d.targets[1]),
        "address ACL hides target 2: {seen}"
    );
    assert!(
        seen.contains(&d.targets[2]),
        "loopback may see target 3: {seen}"
    );
    let seen = ls(OTHER);
    assert!(
        !seen.contains(&d.targets[0]),
        "other name does not see target 1: {seen}"
    );
    assert!(seen.contains(&d.targets[2]), "{seen}");

    let inq = |initiator: &str, t: usize| {
        run(
            Command::new("iscsi-inq")
                .arg("-i")
                .arg(initiator)
                .arg(d.url(t, 1)),
            Duration::from_secs(20),
        )
    };
    assert!(inq(ALLOWED, 0).ok(), "allowed initiator logs in");
    assert!(!inq(OTHER, 0).ok(), "refused initiator cannot log in");
    assert!(
        !inq(ALLOWED, 1).ok(),
        "address outside the ACL cannot log in"
    );
    assert!(inq(OTHER, 2).ok());
    assert!(
        d.log().contains("login refused by ACL"),
        "refusals are logged"
    );
}

/// A peer retrying refused logins in a loop cannot flood the log: the first lines are kept,
/// the rest are counted.
#[test]
fn refused_logins_are_logged_at_a_bounded_rate() {
    let d = Daemon::start(
        "acl-flood",
        &[TargetSpec::new(vec![LunSpec::new(16 * MIB)]).with("initiator-address 10.9.9.0/24")],
    );
    let opts = gw_tests::raw::LoginOptions::default();
    for _ in 0..200 {
        assert!(gw_tests::raw::RawSession::login(d.portal, &d.targets[0], &opts).is_err());
    }
    // One more after the window, so the count of dropped lines is written.
    std::thread::sleep(Duration::from_millis(1100));
    assert!(gw_tests::raw::RawSession::login(d.portal, &d.targets[0], &opts).is_err());
    let log = d.log();
    let refused = log.matches("login refused by ACL").count();
    assert!(refused >= 1, "{log}");
    assert!(
        refused <= 2 * 20 + 1,
        "{refused} refusal lines for 201 attempts"
    );
    assert!(log.contains("log lines about peers were dropped"), "{log}");
}
