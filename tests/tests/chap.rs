//! CHAP with libiscsi's tools: a target with `incominguser` admits the right secret and no
//! other, mutual CHAP proves the target to the initiator, and a top-level (discovery) account
//! guards SendTargets.
//!
//! libiscsi takes the initiator's account in the URL (`iscsi://USER%SECRET@portal/...`) and
//! the target's account for mutual CHAP from `LIBISCSI_CHAP_TARGET_USERNAME` and
//! `LIBISCSI_CHAP_TARGET_PASSWORD`. Without an account in the URL it skips the security stage,
//! which a target with accounts must refuse.

use std::process::Command;
use std::time::Duration;

use gw_tests::{run, Daemon, LunSpec, Output, TargetSpec};

const MIB: u64 = 1 << 20;
const USER: &str = "alice";
const SECRET: &str = "alice-secret-1";
const TARGET_USER: &str = "gateway";
const TARGET_SECRET: &str = "target-secret-1";
const DISCOVERY_USER: &str = "finder";
const DISCOVERY_SECRET: &str = "discovery-secret";

/// Target 1: one-way CHAP; target 2: mutual CHAP; target 3: no authentication. Discovery
/// is guarded when `discovery` is set.
fn start(tag: &str, discovery: bool) -> Daemon {
    let incoming = format!("incominguser {USER} {SECRET}");
    let global = format!("incominguser {DISCOVERY_USER} {DISCOVERY_SECRET}");
    let globals: Vec<&str> = if discovery { vec![&global] } else { vec![] };
    Daemon::start_global(
        tag,
        &globals,
        &[
            TargetSpec::new(vec![LunSpec::new(16 * MIB)]).with(&incoming),
            TargetSpec::new(vec![LunSpec::new(16 * MIB)])
                .with(&incoming)
                .with("incominguser bob bob-secret-12")
                .with(&format!("outgoinguser {TARGET_USER} {TARGET_SECRET}")),
            TargetSpec::new(vec![LunSpec::new(16 * MIB)]),
        ],
        &[],
        &[],
    )
}

/// `iscsi-inq` against target `t` LUN 1, as `account` (USER%SECRET), optionally asking the
/// target to prove itself with `target_account` (user, secret).
fn inq(
    d: &Daemon,
    t: usize,
    account: Option<&str>,
    target_account: Option<(&str, &str)>,
) -> Output {
    let creds = account.map(|a| format!("{a}@")).unwrap_or_default();
    let url = format!("iscsi://{creds}{}/{}/1", d.portal, d.targets[t]);
    let mut cmd = Command::new("iscsi-inq");
    cmd.arg(url)
        .env_remove("LIBISCSI_CHAP_USERNAME")
        .env_remove("LIBISCSI_CHAP_PASSWORD")
        .env_remove("LIBISCSI_CHAP_TARGET_USERNAME")
        .env_remove("LIBISCSI_CHAP_TARGET_PASSWORD");
    if let Some((user, secret)) = target_account {
        cmd.env("LIBISCSI_CHAP_TARGET_USERNAME", user)
            .env("LIBISCSI_CHAP_TARGET_PASSWORD", secret);
    }
    run(&mut cmd, Duration::from_secs(20))
}

fn ls(d: &Daemon, account: Option<&str>) -> Output {
    let creds = account.map(|a| format!("{a}@")).unwrap_or_default();
    run(
        Command::new("iscsi-ls")
            .arg(format!("iscsi://{creds}{}", d.portal))
            .env_remove("LIBISCSI_CHAP_USERNAME")
            .env_remove("LIBISCSI_CHAP_PASSWORD"),
        Duration::from_secs(20),
    )
}

fn text(o: &Output) -> String {
    format!("{}{}", o.stdout, o.stderr)
}

#[test]
fn one_way_chap_admits_the_right_secret_only() {
    let d = start("chap1", false);
    let right = format!("{USER}%{SECRET}");
    let out = inq(&d, 0, Some(&right), None);
    assert!(out.ok(), "the right secret logs in: {}", text(&out));
    assert!(
        out.stdout.contains("DIRECT_ACCESS") || out.stdout.contains("Peripheral"),
        "{}",
        text(&out)
    );

    let out = inq(&d, 0, Some(&format!("{USER}%not-the-secret")), None);
    assert!(!out.ok(), "a wrong secret is refused: {}", text(&out));
    let out = inq(&d, 0, Some(&format!("mallory%{SECRET}")), None);
    assert!(!out.ok(), "an unknown user is refused: {}", text(&out));
    let out = inq(&d, 0, None, None);
    assert!(
        !out.ok() && text(&out).contains("Authentication failure"),
        "no credentials are refused with status 0x0201: {}",
        text(&out)
    );
    assert!(
        out.elapsed < Duration::from_secs(10),
        "refused at once, took {:?}",
        out.elapsed
    );
    // A target without accounts still needs none.
    let out = inq(&d, 2, None, None);
    assert!(out.ok(), "{}", text(&out));

    let log = d.log();
    assert!(log.contains("wrong CHAP response"), "{log}");
    assert!(log.contains("no incoming account \"mallory\""), "{log}");
    assert!(log.contains("requires CHAP"), "{log}");
    assert!(!log.contains(SECRET), "secrets stay out of the log");
    assert!(
        log.lines()
            .any(|l| l.contains("chap_user") && l.contains("alice") && l.contains("chap1-t1")),
        "the login names the CHAP account: {log}"
    );
}

#[test]
fn mutual_chap_proves_the_target() {
    let d = start("chap2", false);
    let right = format!("{USER}%{SECRET}");
    let out = inq(&d, 1, Some(&right), Some((TARGET_USER, TARGET_SECRET)));
    assert!(out.ok(), "mutual CHAP logs in: {}", text(&out));
    let out = inq(
        &d,
        1,
        Some("bob%bob-secret-12"),
        Some((TARGET_USER, TARGET_SECRET)),
    );
    assert!(out.ok(), "a second incoming account: {}", text(&out));
    // The initiator checks the target's answer: expecting another secret fails.
    let out = inq(&d, 1, Some(&right), Some((TARGET_USER, "other-secret-1")));
    assert!(
        !out.ok() && text(&out).contains("CHAP_R"),
        "the initiator rejects a wrong target response: {}",
        text(&out)
    );
    // Target 1 has no outgoing account: mutual CHAP is refused.
    let out = inq(&d, 0, Some(&right), Some((TARGET_USER, TARGET_SECRET)));
    assert!(!out.ok(), "no outgoinguser, no mutual CHAP: {}", text(&out));
    assert!(d.log().contains("no outgoinguser"), "{}", d.log());
}

#[test]
fn discovery_account_guards_send_targets() {
    let d = start("chapd", true);
    let out = ls(&d, Some(&format!("{DISCOVERY_USER}%{DISCOVERY_SECRET}")));
    assert!(out.ok(), "discovery with the account: {}", text(&out));
    for name in &d.targets {
        assert!(
            out.stdout.contains(name.as_str()),
            "{name} listed: {}",
            out.stdout
        );
    }
    let out = ls(&d, None);
    assert!(
        !out.ok() && !out.stdout.contains(&d.targets[0]),
        "discovery without credentials: {}",
        text(&out)
    );
    let out = ls(&d, Some(&format!("{DISCOVERY_USER}%wrong-secret-12")));
    assert!(
        !out.ok() && !out.stdout.contains(&d.targets[0]),
        "{}",
        text(&out)
    );
    // The target's own account is not a discovery account.
    let out = ls(&d, Some(&format!("{USER}%{SECRET}")));
    assert!(!out.ok(), "{}", text(&out));
    // Without a discovery account, discovery stays open.
    let open = start("chapo", false);
    let out = ls(&open, None);
    assert!(
        out.ok() && out.stdout.contains(&open.targets[0]),
        "{}",
        text(&out)
    );
}
