//! Persistent reservations made with APTPL survive a restart of the daemon (Windows failover
//! clustering relies on it); without APTPL they do not.

use gw_tests::raw::{LoginOptions, RawSession};
use gw_tests::{Daemon, LunSpec, TargetSpec};

const MIB: u64 = 1 << 20;
const KEY: u64 = 0x1122_3344_5566_7788;
/// PERSISTENT RESERVE OUT / IN.
const PR_OUT: u8 = 0x5f;
const PR_IN: u8 = 0x5e;
/// Reservation type Write Exclusive.
const WRITE_EXCLUSIVE: u8 = 1;

fn settle(s: &mut RawSession, lun: u64) {
    for _ in 0..4 {
        if s.scsi(lun, &[0; 6], &[], 0).unwrap().status == 0 {
            return;
        }
    }
    panic!("TEST UNIT READY never succeeded");
}

fn prout(s: &mut RawSession, lun: u64, action: u8, kind: u8, key: u64, sa_key: u64, aptpl: bool) {
    let mut cdb = [0u8; 10];
    cdb[0] = PR_OUT;
    cdb[1] = action;
    cdb[2] = kind;
    cdb[8] = 24;
    let mut params = [0u8; 24];
    params[0..8].copy_from_slice(&key.to_be_bytes());
    params[8..16].copy_from_slice(&sa_key.to_be_bytes());
    params[20] = u8::from(aptpl);
    let r = s.scsi(lun, &cdb, &params, 0).unwrap();
    assert_eq!(r.status, 0, "PR OUT {action:#x}: sense {:02x?}", r.sense);
}

fn prin(s: &mut RawSession, lun: u64, action: u8) -> Vec<u8> {
    let cdb = [PR_IN, action, 0, 0, 0, 0, 0, 0x01, 0x00, 0];
    let r = s.scsi(lun, &cdb, &[], 256).unwrap();
    assert_eq!(r.status, 0, "PR IN {action:#x}: sense {:02x?}", r.sense);
    r.data
}

fn keys(s: &mut RawSession, lun: u64) -> Vec<u64> {
    let d = prin(s, lun, 0);
    let len = u32::from_be_bytes(d[4..8].try_into().unwrap()) as usize;
    d[8..8 + len]
        .chunks(8)
        .map(|k| u64::from_be_bytes(k.try_into().unwrap()))
        .collect()
}

#[test]
fn aptpl_reservations_survive_a_restart() {
    let mut d = Daemon::start(
        "aptpl",
        &[TargetSpec::new(vec![
            LunSpec::new(16 * MIB),
            LunSpec::new(16 * MIB),
        ])],
    );
    let opts = LoginOptions::default();
    let mut s = RawSession::login(d.portal, &d.targets[0], &opts).unwrap();
    settle(&mut s, 1);
    settle(&mut s, 2);
    // LUN 1: register with APTPL and reserve; LUN 2: register without APTPL.
    prout(&mut s, 1, 0, 0, 0, KEY, true);
    prout(&mut s, 1, 1, WRITE_EXCLUSIVE, KEY, 0, false);
    prout(&mut s, 2, 0, 0, 0, KEY, false);
    assert_eq!(keys(&mut s, 1), vec![KEY]);
    assert_eq!(keys(&mut s, 2), vec![KEY]);
    drop(s);

    d.restart();
    let mut s = RawSession::login(d.portal, &d.targets[0], &opts).unwrap();
    settle(&mut s, 1);
    settle(&mut s, 2);
    assert_eq!(keys(&mut s, 1), vec![KEY], "APTPL registration kept");
    let r = prin(&mut s, 1, 1);
    assert_eq!(
        u32::from_be_bytes(r[4..8].try_into().unwrap()),
        16,
        "a reservation is held"
    );
    assert_eq!(u64::from_be_bytes(r[8..16].try_into().unwrap()), KEY);
    assert_eq!(r[21] & 0x0f, WRITE_EXCLUSIVE);
    let caps = prin(&mut s, 1, 2);
    assert_ne!(caps[3] & 0x01, 0, "PTPL_A: persistence is active");
    assert!(keys(&mut s, 2).is_empty(), "no APTPL, nothing kept");

    // Clearing drops the saved state: after another restart nothing is left.
    prout(&mut s, 1, 3, 0, KEY, 0, false);
    drop(s);
    d.restart();
    let mut s = RawSession::login(d.portal, &d.targets[0], &opts).unwrap();
    settle(&mut s, 1);
    assert!(keys(&mut s, 1).is_empty());
}
