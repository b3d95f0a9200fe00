//! Connection liveness: the target pings idle sessions with NOP-In (RFC 7143 §11.19), keeps
//! those that answer, and drops those that do not after `nop_count` pings, freeing the session
//! while other sessions' I/O goes on. The policy comes from targets.conf, from gatewayd's
//! flags, or from tgtadm at run time.

use std::time::{Duration, Instant};

use gw_tests::raw::{is_ping, LoginOptions, RawSession};
use gw_tests::{Daemon, LunSpec, TargetSpec};

const MIB: u64 = 1 << 20;

fn session(d: &Daemon, isid_tail: u8) -> RawSession {
    let o = LoginOptions {
        isid: [0x80, 0, 0, 0, 0x6e, isid_tail],
        ..Default::default()
    };
    let mut s = RawSession::login(d.portal, &d.targets[0], &o).expect("login");
    for _ in 0..4 {
        if s.scsi(1, &[0; 6], &[], 0).unwrap().status == 0 {
            return s;
        }
    }
    panic!("TEST UNIT READY never succeeded");
}

/// A write and read-back.
fn io_round(s: &mut RawSession, round: u8) {
    let data: Vec<u8> = (0..4096).map(|i| (i as u8) ^ round).collect();
    let mut w = [0x2a, 0, 0, 0, 0, 0x10, 0, 0, 8, 0];
    assert_eq!(s.scsi(1, &w, &data, 0).unwrap().status, 0);
    w[0] = 0x28;
    assert_eq!(s.scsi(1, &w, &[], 4096).unwrap().data, data);
}

/// Sessions the target lists in `tgtadm --op show --mode target`.
fn nexuses(d: &Daemon) -> usize {
    d.tgtadm(&["--lld", "iscsi", "--op", "show", "--mode", "target"])
        .matches("I_T nexus: ")
        .count()
}

/// Waits (bounded) until the target lists `n` sessions: the management thread learns of a
/// closed session by message, a moment after the socket closes.
fn wait_nexuses(d: &Daemon, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = nexuses(d);
        if now == n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{now} sessions listed, {n} expected\n{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_session_that_answers_pings_stays_up() {
    let d = Daemon::start_full(
        "nop-answer",
        &[TargetSpec::new(vec![LunSpec::new(4 * MIB)])],
        &[],
        &["--nop-interval", "1", "--nop-count", "2"],
    );
    let mut s = session(&d, 1);
    // Idle for several times interval × count, answering every ping.
    let start = Instant::now();
    let mut pings = 0;
    while start.elapsed() < Duration::from_secs(7) {
        let left = Duration::from_secs(7).saturating_sub(start.elapsed());
        match s.recv_within(left).expect("the session stays open") {
            Some(p) if is_ping(&p) => {
                // RFC 7143 §11.19: no ITT, a TTT to echo, and the next StatSN, not taken.
                assert_eq!(p.bhs.itt(), 0xffff_ffff);
                assert_eq!(p.bhs.u32_at(24), s.exp_statsn(), "StatSN not advanced");
                assert_eq!(p.bhs.flags() & 0x80, 0x80, "F bit");
                pings += 1;
                s.answer_ping(&p).unwrap();
            }
            Some(p) => panic!("unexpected PDU {:?}", p.bhs.opcode()),
            None => {}
        }
    }
    assert!(
        pings >= 3,
        "an idle session is pinged every interval: {pings} pings"
    );
    io_round(&mut s, 1);
    assert_eq!(nexuses(&d), 1);
}

#[test]
fn a_silent_session_is_dropped_while_others_keep_working() {
    // The policy from targets.conf this time.
    let d = Daemon::start(
        "nop-silent",
        &[TargetSpec::new(vec![LunSpec::new(4 * MIB)])
            .with("nop_interval 1")
            .with("nop_count 2")],
    );
    let mut good = session(&d, 1);
    let mut bad = session(&d, 2);
    wait_nexuses(&d, 2);
    bad.set_answer_pings(false);
    let started = Instant::now();
    let silent = std::thread::spawn(move || {
        let took = bad.wait_closed(Duration::from_secs(15));
        (took, bad.pings())
    });
    // I/O on the other session goes on while the silent one is pinged and dropped.
    let mut rounds = 0u32;
    while !silent.is_finished() {
        io_round(&mut good, rounds as u8);
        rounds += 1;
    }
    let (took, pings) = silent.join().unwrap();
    let took = took.expect("the silent session is dropped");
    assert_eq!(pings, 2, "dropped after nop_count unanswered pings");
    // One interval of silence, a ping per interval, one more interval: about 3 s, plus the
    // tick's granularity.
    assert!(
        took >= Duration::from_secs(2) && started.elapsed() < Duration::from_secs(8),
        "dropped after {took:?}"
    );
    assert!(
        rounds > 10,
        "only {rounds} I/O rounds while the other session was dropped"
    );
    wait_nexuses(&d, 1);
    io_round(&mut good, 0xee);
    // Its ISID logs in afresh.
    let mut again = session(&d, 2);
    io_round(&mut again, 0xef);
}

#[test]
fn tgtadm_turns_pings_on_live() {
    let d = Daemon::start_full(
        "nop-tgtadm",
        &[TargetSpec::new(vec![LunSpec::new(4 * MIB)])],
        &[],
        &["--nop-interval", "0"],
    );
    let show = |d: &Daemon| d.tgtadm(&["--lld", "iscsi", "--op", "show", "--mode", "target"]);
    let params = |d: &Daemon| {
        d.tgtadm(&[
            "--lld", "iscsi", "--op", "show", "--mode", "target", "--tid", "1",
        ])
    };
    assert!(!show(&d).contains("Nop interval"), "{}", show(&d));
    assert!(params(&d).contains("nop_interval=0\n"), "{}", params(&d));

    let mut s = session(&d, 1);
    s.set_answer_pings(false);
    // Pings off: an idle session hears nothing.
    assert!(
        s.recv_within(Duration::from_millis(2500))
            .unwrap()
            .is_none(),
        "pinged with pings off"
    );

    let update = |name: &str, value: &str| {
        d.tgtadm(&[
            "--lld", "iscsi", "--op", "update", "--mode", "target", "--tid", "1", "-n", name, "-v",
            value,
        ])
    };
    update("nop_count", "2");
    update("nop_interval", "1");
    let shown = show(&d);
    assert!(
        shown.contains("        State: ready\n        Nop interval: 1\n        Nop count: 2\n"),
        "{shown}"
    );
    let p = params(&d);
    assert!(p.contains("nop_interval=1\nnop_count=2\n"), "{p}");

    // The session already open is pinged now, and dropped when it stays silent.
    let took = s
        .wait_closed(Duration::from_secs(10))
        .expect("dropped once pings are on");
    assert_eq!(s.pings(), 2);
    assert!(took < Duration::from_secs(8), "dropped after {took:?}");
    wait_nexuses(&d, 0);

    // Out-of-range values are refused and change nothing.
    for (name, value) in [("nop_count", "0"), ("nop_interval", "100000")] {
        let out = d.admin(
            "tgtadm",
            &[
                "--lld", "iscsi", "--op", "update", "--mode", "target", "--tid", "1", "-n", name,
                "-v", value,
            ],
        );
        assert!(!out.ok(), "{name}={value} accepted");
    }
    assert!(params(&d).contains("nop_interval=1\nnop_count=2\n"));

    // And off again: a new session is left alone.
    update("nop_interval", "0");
    assert!(!show(&d).contains("Nop interval"));
    let mut quiet = session(&d, 2);
    quiet.set_answer_pings(false);
    assert!(quiet
        .recv_within(Duration::from_millis(2500))
        .unwrap()
        .is_none());
    io_round(&mut quiet, 3);
}

#[test]
fn sighup_applies_a_new_ping_policy_to_open_sessions() {
    let d = Daemon::start(
        "nop-reload",
        &[TargetSpec::new(vec![LunSpec::new(4 * MIB)]).with("nop_interval 0")],
    );
    let mut s = session(&d, 1);
    s.set_answer_pings(false);
    let conf = std::fs::read_to_string(&d.config).expect("read targets.conf");
    assert!(conf.contains("nop_interval 0"), "{conf}");
    std::fs::write(
        &d.config,
        conf.replace("nop_interval 0", "nop_interval 1\n    nop_count 2"),
    )
    .expect("rewrite targets.conf");
    let out = gw_tests::run(
        std::process::Command::new("kill").args(["-HUP", &d.pid().to_string()]),
        Duration::from_secs(5),
    );
    assert!(out.ok(), "{}", out.stderr);
    let took = s
        .wait_closed(Duration::from_secs(20))
        .expect("dropped once the file turns pings on");
    assert_eq!(s.pings(), 2);
    assert!(took < Duration::from_secs(15), "dropped after {took:?}");
    let shown = d.tgtadm(&["--lld", "iscsi", "--op", "show", "--mode", "target"]);
    assert!(
        shown.contains("Nop interval: 1\n        Nop count: 2\n"),
        "{shown}"
    );
}
