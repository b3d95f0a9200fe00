//! Tests of reservations, run through a whole [`Target`].

use super::state::STATE_HEADER;
use super::*;
use crate::{Action, Command, ScsiStatus, Target};

const A: NexusId = NexusId(1);
const B: NexusId = NexusId(2);
const C: NexusId = NexusId(3);
/// Never registers, so never has unit attentions: it reads the state for the tests.
const O: NexusId = NexusId(4);
const PORT_A: &str = "iqn.2026-11.io.test:a,i,0x23d000000001";
const PORT_B: &str = "iqn.2026-11.io.test:b,i,0x23d000000002";
const PORT_C: &str = "iqn.2026-11.io.test:c,i,0x23d000000003";
const PORT_O: &str = "iqn.2026-11.io.test:o,i,0x23d000000004";

const WE: u8 = 1;
const EA: u8 = 3;
const WE_RO: u8 = 5;
const EA_RO: u8 = 6;
const WE_AR: u8 = 7;
const EA_AR: u8 = 8;
const TYPES: [u8; 6] = [WE, EA, WE_RO, EA_RO, WE_AR, EA_AR];

const TUR: [u8; 6] = [0; 6];
const READ10: [u8; 10] = [0x28, 0, 0, 0, 0, 1, 0, 0, 1, 0];
const WRITE10: [u8; 10] = [0x2a, 0, 0, 0, 0, 1, 0, 0, 1, 0];
const INQUIRY: [u8; 6] = [0x12, 0, 0, 0, 36, 0];
const MODE_SENSE6: [u8; 6] = [0x1a, 0, 0x3f, 0, 255, 0];
const READ_CAPACITY10: [u8; 10] = [0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0];
const RESERVE6: [u8; 6] = [0x16, 0, 0, 0, 0, 0];
const RELEASE6: [u8; 6] = [0x17, 0, 0, 0, 0, 0];

fn target() -> Target {
    let mut t = crate::testing::target_with("t", crate::testing::disk());
    for (n, p) in [(A, PORT_A), (B, PORT_B), (C, PORT_C), (O, PORT_O)] {
        t.nexus_added(n, p);
        drain_ua(&mut t, n);
    }
    t
}

fn run(t: &mut Target, nexus: NexusId, cdb: &[u8], data_out: &[u8]) -> Action {
    t.execute(&Command {
        nexus,
        lun: 1,
        cdb,
        data_out,
    })
}

/// Takes every pending unit attention of a nexus and returns them.
fn drain_ua(t: &mut Target, nexus: NexusId) -> Vec<(u8, u8)> {
    let mut got = Vec::new();
    for _ in 0..16 {
        match sense(&run(t, nexus, &TUR, &[])) {
            Some((6, a, q)) => got.push((a, q)),
            _ => return got,
        }
    }
    panic!("unit attentions never end");
}

fn sense(a: &Action) -> Option<(u8, u8, u8)> {
    let Action::Respond(r) = a else {
        return None;
    };
    let s = r.sense.as_ref()?;
    Some((s[2] & 0xf, s[12], s[13]))
}

fn status(a: &Action) -> ScsiStatus {
    match a {
        Action::Respond(r) => r.status,
        _ => ScsiStatus::Good,
    }
}

fn is_good(a: &Action) -> bool {
    status(a) == ScsiStatus::Good
}

fn is_conflict(a: &Action) -> bool {
    status(a) == ScsiStatus::ReservationConflict
}

fn prout_cdb(sa: u8, kind: u8, len: u32) -> [u8; 10] {
    let mut cdb = [0u8; 10];
    cdb[0] = 0x5f;
    cdb[1] = sa;
    cdb[2] = kind;
    cdb[5..9].copy_from_slice(&len.to_be_bytes());
    cdb
}

fn basic(key: u64, sa_key: u64, flags: u8) -> Vec<u8> {
    let mut p = vec![0u8; 24];
    p[..8].copy_from_slice(&key.to_be_bytes());
    p[8..16].copy_from_slice(&sa_key.to_be_bytes());
    p[20] = flags;
    p
}

fn prout(t: &mut Target, n: NexusId, sa: u8, kind: u8, key: u64, sa_key: u64) -> Action {
    let p = basic(key, sa_key, 0);
    run(t, n, &prout_cdb(sa, kind, 24), &p)
}

fn register(t: &mut Target, n: NexusId, key: u64) {
    let a = prout(t, n, out_sa::REGISTER_AND_IGNORE, 0, 0, key);
    assert!(is_good(&a), "{a:?}");
}

fn prin(t: &mut Target, n: NexusId, sa: u8) -> Action {
    run(t, n, &[0x5e, sa, 0, 0, 0, 0, 0, 0x40, 0, 0], &[])
}

fn prin_data(t: &mut Target, n: NexusId, sa: u8) -> Vec<u8> {
    match prin(t, n, sa) {
        Action::Respond(r) if r.status == ScsiStatus::Good => r.data,
        a => panic!("{a:?}"),
    }
}

fn generation(t: &mut Target) -> u32 {
    let d = prin_data(t, O, in_sa::READ_KEYS);
    u32::from_be_bytes(d[..4].try_into().unwrap())
}

fn keys(t: &mut Target) -> Vec<u64> {
    let d = prin_data(t, O, in_sa::READ_KEYS);
    let len = u32::from_be_bytes(d[4..8].try_into().unwrap()) as usize;
    d[8..8 + len]
        .chunks(8)
        .map(|c| u64::from_be_bytes(c.try_into().unwrap()))
        .collect()
}

/// (key, type) of the persistent reservation, if any.
fn reservation(t: &mut Target) -> Option<(u64, u8)> {
    let d = prin_data(t, O, in_sa::READ_RESERVATION);
    if d[4..8] == [0, 0, 0, 0] {
        return None;
    }
    assert_eq!(&d[4..8], &[0, 0, 0, 16]);
    Some((u64::from_be_bytes(d[8..16].try_into().unwrap()), d[21]))
}

#[test]
fn iscsi_initiator_port_name() {
    assert_eq!(
        iscsi_initiator_port("iqn.2026-11.io.Test:x", [0x23, 0xd0, 0, 0, 0xAB, 1]),
        "iqn.2026-11.io.test:x,i,0x23d00000ab01"
    );
}

#[test]
fn register_unregister_and_generation() {
    let mut t = target();
    assert_eq!((generation(&mut t), keys(&mut t)), (0, vec![]));
    // REGISTER from an unregistered nexus must give reservation key zero.
    assert!(is_conflict(&prout(&mut t, A, out_sa::REGISTER, 0, 5, 0xa)));
    // Unregistering what is not registered does nothing and counts nothing.
    assert!(is_good(&prout(&mut t, A, out_sa::REGISTER, 0, 0, 0)));
    assert_eq!(generation(&mut t), 0);
    assert!(is_good(&prout(&mut t, A, out_sa::REGISTER, 0, 0, 0xa)));
    assert_eq!((generation(&mut t), keys(&mut t)), (1, vec![0xa]));
    // Re-registering with the wrong key conflicts (libiscsi ProutRegister).
    assert!(is_conflict(&prout(&mut t, A, out_sa::REGISTER, 0, 0, 0xb)));
    assert!(is_good(&prout(&mut t, A, out_sa::REGISTER, 0, 0xa, 0xb)));
    assert!(is_good(&prout(
        &mut t,
        A,
        out_sa::REGISTER_AND_IGNORE,
        0,
        0x77,
        0xc
    )));
    register(&mut t, B, 0xd);
    assert_eq!((generation(&mut t), keys(&mut t)), (4, vec![0xc, 0xd]));
    assert!(is_good(&prout(&mut t, A, out_sa::REGISTER, 0, 0xc, 0)));
    assert_eq!((generation(&mut t), keys(&mut t)), (5, vec![0xd]));
}

#[test]
fn parameter_list_and_cdb_checks() {
    let mut t = target();
    for len in [0u32, 23, 25, 32] {
        let p = basic(0, 1, 0);
        let mut data = p.clone();
        data.resize(len as usize, 0);
        let cdb = prout_cdb(out_sa::REGISTER, 0, len);
        assert_eq!(t.data_out_len(1, &cdb), u64::from(len));
        assert_eq!(sense(&run(&mut t, A, &cdb, &data)), Some((5, 0x1a, 0)));
    }
    // Less data than the parameter list length says.
    let cdb = prout_cdb(out_sa::REGISTER, 0, 24);
    assert_eq!(sense(&run(&mut t, A, &cdb, &[0; 10])), Some((5, 0x1a, 0)));
    // SPEC_I_PT is not supported; ALL_TG_PT is.
    let spec = basic(0, 1, 0x08);
    assert_eq!(sense(&run(&mut t, A, &cdb, &spec)), Some((5, 0x26, 0)));
    let all = basic(0, 1, 0x04);
    assert!(is_good(&run(&mut t, A, &cdb, &all)));
    // Unknown service actions are bad CDB fields, not unknown commands.
    let bad_out = prout_cdb(0x08, 0, 24);
    assert_eq!(
        sense(&run(&mut t, A, &bad_out, &basic(1, 0, 0))),
        Some((5, 0x24, 0))
    );
    for sa in 4..0x20 {
        assert_eq!(sense(&prin(&mut t, A, sa)), Some((5, 0x24, 0)), "{sa}");
    }
    for sa in 0..4 {
        assert!(is_good(&prin(&mut t, A, sa)));
    }
    // RESERVE needs a valid type and LU scope.
    for bad in [0x00, 0x02, 0x04, 0x09, 0x0f, 0x11] {
        assert_eq!(
            sense(&prout(&mut t, A, out_sa::RESERVE, bad, 1, 0)),
            Some((5, 0x24, 0)),
            "{bad:#x}"
        );
    }
    // The controller LU has no reservations at all.
    let a = t.execute(&Command {
        nexus: A,
        lun: 0,
        cdb: &[0x5e, 0, 0, 0, 0, 0, 0, 0x40, 0, 0],
        data_out: &[],
    });
    assert_eq!(sense(&a), Some((5, 0x20, 0)));
}

#[test]
fn read_keys_truncated_keeps_additional_length() {
    let mut t = target();
    register(&mut t, A, 0x1234);
    let Action::Respond(r) = run(&mut t, A, &[0x5e, 0, 0, 0, 0, 0, 0, 0, 8, 0], &[]) else {
        panic!()
    };
    assert_eq!(r.data, vec![0, 0, 0, 1, 0, 0, 0, 8]);
}

#[test]
fn reserve_release_each_type() {
    let mut t = target();
    register(&mut t, A, 0xa);
    register(&mut t, B, 0xb);
    let gen = generation(&mut t);
    for kind in TYPES {
        assert!(is_good(&prout(&mut t, A, out_sa::RESERVE, kind, 0xa, 0)));
        let shown = if kind >= WE_AR { 0 } else { 0xa };
        assert_eq!(reservation(&mut t), Some((shown, kind)));
        // Again, same type: nothing changes. Another type: conflict.
        assert!(is_good(&prout(&mut t, A, out_sa::RESERVE, kind, 0xa, 0)));
        let other = if kind == WE { EA } else { WE };
        assert!(is_conflict(&prout(
            &mut t,
            A,
            out_sa::RESERVE,
            other,
            0xa,
            0
        )));
        // Wrong key, or not registered: conflict.
        assert!(is_conflict(&prout(
            &mut t,
            A,
            out_sa::RESERVE,
            kind,
            0xb,
            0
        )));
        assert!(is_conflict(&prout(&mut t, C, out_sa::RESERVE, kind, 0, 0)));
        // Releasing with the wrong type is an invalid release.
        assert_eq!(
            sense(&prout(&mut t, A, out_sa::RELEASE, other, 0xa, 0)),
            Some((5, 0x26, 0x04))
        );
        assert!(is_good(&prout(&mut t, A, out_sa::RELEASE, kind, 0xa, 0)));
        assert_eq!(reservation(&mut t), None);
    }
    // RESERVE and RELEASE do not count as generations.
    assert_eq!(generation(&mut t), gen);
    // Releasing when nothing is reserved, or as a non-holder, is a no-op.
    assert!(is_good(&prout(&mut t, A, out_sa::RELEASE, WE, 0xa, 0)));
    assert!(is_good(&prout(&mut t, A, out_sa::RESERVE, EA, 0xa, 0)));
    drain_ua(&mut t, B);
    assert!(is_good(&prout(&mut t, B, out_sa::RELEASE, EA, 0xb, 0)));
    assert_eq!(reservation(&mut t), Some((0xa, EA)));
    assert!(is_conflict(&prout(&mut t, B, out_sa::RESERVE, EA, 0xb, 0)));
}

/// For each type: (registered non-holder can read, can write, unregistered can read,
/// can write), as SPC-4 §5.9.1 and SBC-3 §4.17 give it (and libiscsi ProutReserveAccess).
#[test]
fn access_by_type() {
    let table = [
        (WE, [true, false, true, false]),
        (EA, [false, false, false, false]),
        (WE_RO, [true, true, true, false]),
        (EA_RO, [true, true, false, false]),
        (WE_AR, [true, true, true, false]),
        (EA_AR, [true, true, false, false]),
    ];
    for (kind, [reg_r, reg_w, unreg_r, unreg_w]) in table {
        let mut t = target();
        register(&mut t, A, 0xa);
        register(&mut t, B, 0xb);
        assert!(is_good(&prout(&mut t, A, out_sa::RESERVE, kind, 0xa, 0)));
        let can = |t: &mut Target, n, cdb: &[u8], data: &[u8]| {
            let a = run(t, n, cdb, data);
            assert!(is_good(&a) || is_conflict(&a), "{a:?}");
            !is_conflict(&a)
        };
        assert!(can(&mut t, A, &READ10, &[]), "{kind}");
        assert!(can(&mut t, A, &WRITE10, &[0; 512]), "{kind}");
        assert!(can(&mut t, A, &MODE_SENSE6, &[]), "{kind}");
        assert_eq!(can(&mut t, B, &READ10, &[]), reg_r, "{kind}");
        assert_eq!(can(&mut t, B, &WRITE10, &[0; 512]), reg_w, "{kind}");
        assert_eq!(can(&mut t, C, &READ10, &[]), unreg_r, "{kind}");
        assert_eq!(can(&mut t, C, &WRITE10, &[0; 512]), unreg_w, "{kind}");
        // Mode pages and cache flushes count as writes for everyone shut out.
        let sync = [0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(can(&mut t, C, &MODE_SENSE6, &[]), unreg_w, "{kind}");
        assert_eq!(can(&mut t, C, &sync, &[]), unreg_w, "{kind}");
        // These always pass.
        for cdb in [&TUR[..], &INQUIRY, &READ_CAPACITY10] {
            assert!(is_good(&run(&mut t, C, cdb, &[])), "{kind} {cdb:?}");
        }
        assert!(is_good(&prin(&mut t, C, in_sa::READ_KEYS)));
        // Unregistered B now is shut out like C.
        assert!(is_good(&prout(&mut t, B, out_sa::REGISTER, 0, 0xb, 0)));
        assert_eq!(can(&mut t, B, &READ10, &[]), unreg_r, "{kind}");
        assert_eq!(can(&mut t, B, &WRITE10, &[0; 512]), unreg_w, "{kind}");
    }
}

/// libiscsi ProutReserveOwnership: a holder that unregisters takes the reservation with
/// it, except for the all-registrants types while registrants remain.
#[test]
fn unregistering_holder() {
    for kind in TYPES {
        let mut t = target();
        register(&mut t, A, 0xa);
        register(&mut t, B, 0xb);
        assert!(is_good(&prout(&mut t, A, out_sa::RESERVE, kind, 0xa, 0)));
        assert!(is_good(&prout(&mut t, A, out_sa::REGISTER, 0, 0xa, 0)));
        let left = reservation(&mut t);
        let uas = drain_ua(&mut t, B);
        if kind >= WE_AR {
            assert_eq!(left, Some((0, kind)));
            assert!(is_good(&prout(&mut t, B, out_sa::RELEASE, kind, 0xb, 0)));
        } else {
            assert_eq!(left, None);
        }
        let released = uas.contains(&asc::RESERVATIONS_RELEASED);
        assert_eq!(released, kind == WE_RO || kind == EA_RO, "{kind}");
    }
    // The last registrant of an all-registrants reservation ends it.
    let mut t = target();
    register(&mut t, A, 0xa);
    assert!(is_good(&prout(&mut t, A, out_sa::RESERVE, EA_AR, 0xa, 0)));
    assert!(is_good(&prout(&mut t, A, out_sa::REGISTER, 0, 0xa, 0)));
    assert_eq!(reservation(&mut t), None);
}

#[test]
fn release_tells_registrants_for_shared_types() {
    for kind in TYPES {
        let mut t = target();
        register(&mut t, A, 0xa);
        register(&mut t, B, 0xb);
        assert!(is_good(&prout(&mut t, A, out_sa::RESERVE, kind, 0xa, 0)));
        assert!(is_good(&prout(&mut t, A, out_sa::RELEASE, kind, 0xa, 0)));
        let b = drain_ua(&mut t, B);
        assert_eq!(b.contains(&asc::RESERVATIONS_RELEASED), kind > EA, "{kind}");
        assert!(drain_ua(&mut t, A).is_empty());
        assert!(drain_ua(&mut t, C).is_empty(), "not registered, not told");
    }
}

#[test]
fn clear_removes_everything_and_tells_registrants() {
    let mut t = target();
    register(&mut t, A, 0xa);
    register(&mut t, B, 0xb);
    assert!(is_good(&prout(&mut t, A, out_sa::RESERVE, EA, 0xa, 0)));
    let gen = generation(&mut t);
    assert!(is_conflict(&prout(&mut t, C, out_sa::CLEAR, 0, 0, 0)));
    assert!(is_conflict(&prout(&mut t, B, out_sa::CLEAR, 0, 0xa, 0)));
    assert!(is_good(&prout(&mut t, B, out_sa::CLEAR, 0, 0xb, 0)));
    assert_eq!(generation(&mut t), gen + 1);
    assert_eq!((keys(&mut t), reservation(&mut t)), (vec![], None));
    assert_eq!(drain_ua(&mut t, A), vec![asc::RESERVATIONS_PREEMPTED]);
    assert!(drain_ua(&mut t, B).is_empty());
    assert!(is_good(&run(&mut t, C, &WRITE10, &[0; 512])));
}

#[test]
fn preempt_registration_without_reservation() {
    let mut t = target();
    register(&mut t, A, 0xa);
    register(&mut t, B, 0xb);
    let gen = generation(&mut t);
    // libiscsi ProutPreempt: B removes A's registration.
    assert!(is_good(&prout(&mut t, B, out_sa::PREEMPT, EA, 0xb, 0xa)));
    assert_eq!((keys(&mut t), generation(&mut t)), (vec![0xb], gen + 1));
    assert_eq!(drain_ua(&mut t, A), vec![asc::REGISTRATIONS_PREEMPTED]);
    assert!(drain_ua(&mut t, B).is_empty());
    // A key nobody has: conflict. Key zero: invalid. Not registered: conflict.
    assert!(is_conflict(&prout(
        &mut t,
        B,
        out_sa::PREEMPT,
        EA,
        0xb,
        0x99
    )));
    assert_eq!(
        sense(&prout(&mut t, B, out_sa::PREEMPT, EA, 0xb, 0)),
        Some((5, 0x26, 0))
    );
    assert!(is_conflict(&prout(
        &mut t,
        A,
        out_sa::PREEMPT,
        EA,
        0xa,
        0xb
    )));
    assert_eq!(reservation(&mut t), None);
}

#[test]
fn preempt_holder_takes_reservation() {
    let mut t = target();
    register(&mut t, A, 0xa);
    register(&mut t, B, 0xb);
    register(&mut t, C, 0xc);
    assert!(is_good(&prout(&mut t, A, out_sa::RESERVE, EA, 0xa, 0)));
    // PREEMPT AND ABORT behaves as PREEMPT; the type changes, so C hears of it.
    assert!(is_good(&prout(
        &mut t,
        B,
        out_sa::PREEMPT_AND_ABORT,
        WE_RO,
        0xb,
        0xa
    )));
    assert_eq!(reservation(&mut t), Some((0xb, WE_RO)));
    assert_eq!(keys(&mut t), vec![0xb, 0xc]);
    assert_eq!(drain_ua(&mut t, A), vec![asc::REGISTRATIONS_PREEMPTED]);
    assert_eq!(drain_ua(&mut t, C), vec![asc::RESERVATIONS_RELEASED]);
    assert!(drain_ua(&mut t, B).is_empty());
    // Preempting a non-holder's key leaves the reservation alone.
    assert!(is_good(&prout(&mut t, B, out_sa::PREEMPT, EA, 0xb, 0xc)));
    assert_eq!(reservation(&mut t), Some((0xb, WE_RO)));
    assert_eq!(keys(&mut t), vec![0xb]);
    // Key zero against a reservation that is not all-registrants is invalid.
    register(&mut t, A, 0xa);
    assert_eq!(
        sense(&prout(&mut t, A, out_sa::PREEMPT, EA, 0xa, 0)),
        Some((5, 0x26, 0))
    );
}

#[test]
fn preempt_all_registrants_with_key_zero() {
    let mut t = target();
    register(&mut t, A, 0xa);
    register(&mut t, B, 0xb);
    register(&mut t, C, 0xc);
    assert!(is_good(&prout(&mut t, A, out_sa::RESERVE, WE_AR, 0xa, 0)));
    assert!(is_good(&prout(&mut t, C, out_sa::PREEMPT, EA, 0xc, 0)));
    assert_eq!(keys(&mut t), vec![0xc]);
    assert_eq!(reservation(&mut t), Some((0xc, EA)));
    assert_eq!(drain_ua(&mut t, A), vec![asc::REGISTRATIONS_PREEMPTED]);
    assert_eq!(drain_ua(&mut t, B), vec![asc::REGISTRATIONS_PREEMPTED]);
    assert!(is_conflict(&run(&mut t, A, &READ10, &[])));
}

fn move_list(key: u64, sa_key: u64, flags: u8, rel_port: u16, port: &str) -> Vec<u8> {
    let tid = transport_id(port);
    let mut p = vec![0u8; 24];
    p[..8].copy_from_slice(&key.to_be_bytes());
    p[8..16].copy_from_slice(&sa_key.to_be_bytes());
    p[17] = flags;
    p[18..20].copy_from_slice(&rel_port.to_be_bytes());
    p[20..24].copy_from_slice(&(tid.len() as u32).to_be_bytes());
    p.extend(tid);
    p
}

fn register_and_move(t: &mut Target, n: NexusId, list: &[u8]) -> Action {
    let cdb = prout_cdb(out_sa::REGISTER_AND_MOVE, WE, list.len() as u32);
    run(t, n, &cdb, list)
}

#[test]
fn register_and_move_hands_over() {
    let mut t = target();
    register(&mut t, A, 0xa);
    register(&mut t, C, 0xc);
    // Not the holder yet.
    let to_b = move_list(0xa, 0xb, 0x02, 1, PORT_B);
    assert!(is_conflict(&register_and_move(&mut t, A, &to_b)));
    assert!(is_good(&prout(&mut t, A, out_sa::RESERVE, EA, 0xa, 0)));
    let gen = generation(&mut t);
    let bad = [
        move_list(0xa, 0, 0, 1, PORT_B),
        move_list(0xa, 0xb, 0, 2, PORT_B),
        move_list(0xa, 0xb, 0, 1, PORT_A),
        move_list(0xa, 0xb, 0, 1, "iqn.2026-11.io.test:b"),
    ];
    for list in bad {
        assert_eq!(
            sense(&register_and_move(&mut t, A, &list)),
            Some((5, 0x26, 0))
        );
    }
    let mut short = to_b.clone();
    short.truncate(30);
    assert_eq!(
        sense(&register_and_move(&mut t, A, &short)),
        Some((5, 0x1a, 0))
    );
    assert!(is_conflict(&register_and_move(
        &mut t,
        A,
        &move_list(0x5, 0xb, 0x02, 1, PORT_B)
    )));
    // The move: B (not connected here as a holder before) holds EA; A is unregistered.
    let upper = move_list(0xa, 0xb, 0x02, 1, "IQN.2026-11.IO.TEST:B,i,0x23D000000002");
    assert!(is_good(&register_and_move(&mut t, A, &upper)));
    assert_eq!(reservation(&mut t), Some((0xb, EA)));
    assert_eq!(keys(&mut t), vec![0xb, 0xc]);
    assert_eq!(generation(&mut t), gen + 1);
    assert!(is_good(&run(&mut t, B, &WRITE10, &[0; 512])));
    assert!(is_conflict(&run(&mut t, A, &READ10, &[])));
    // An all-registrants reservation cannot move.
    assert!(is_good(&prout(&mut t, B, out_sa::RELEASE, EA, 0xb, 0)));
    assert!(is_good(&prout(&mut t, B, out_sa::RESERVE, EA_AR, 0xb, 0)));
    let to_a = move_list(0xb, 0xa, 0, 1, PORT_A);
    assert!(is_conflict(&register_and_move(&mut t, B, &to_a)));
}

#[test]
fn read_full_status_and_capabilities() {
    let mut t = target();
    let caps = prin_data(&mut t, A, in_sa::REPORT_CAPABILITIES);
    assert_eq!(caps, vec![0, 8, 0x05, 0x90, 0xea, 0x01, 0, 0]);
    register(&mut t, A, 0xa);
    let p = basic(0, 0xb, 0x05); // ALL_TG_PT and APTPL
    assert!(is_good(&run(
        &mut t,
        B,
        &prout_cdb(out_sa::REGISTER, 0, 24),
        &p
    )));
    assert_eq!(prin_data(&mut t, A, in_sa::REPORT_CAPABILITIES)[3], 0x91);
    assert!(is_good(&prout(&mut t, B, out_sa::RESERVE, WE_RO, 0xb, 0)));
    let d = prin_data(&mut t, C, in_sa::READ_FULL_STATUS);
    assert_eq!(&d[..4], &generation(&mut t).to_be_bytes());
    let len = u32::from_be_bytes(d[4..8].try_into().unwrap()) as usize;
    assert_eq!(len, d.len() - 8);
    // Two descriptors, by port name: A then B.
    let a = &d[8..];
    assert_eq!(&a[..8], &0xau64.to_be_bytes());
    assert_eq!((a[12], a[13]), (0, 0));
    assert_eq!(&a[18..20], &[0, 1]);
    let tid_len = u32::from_be_bytes(a[20..24].try_into().unwrap()) as usize;
    let tid = &a[24..24 + tid_len];
    assert_eq!(tid[0], 0x45, "format 01b, iSCSI");
    assert_eq!(
        usize::from(u16::from_be_bytes([tid[2], tid[3]])),
        tid_len - 4
    );
    assert_eq!(tid_len % 4, 0);
    assert_eq!(&tid[4..4 + PORT_A.len()], PORT_A.as_bytes());
    assert_eq!(tid[4 + PORT_A.len()], 0);
    let b = &a[24 + tid_len..];
    assert_eq!(&b[..8], &0xbu64.to_be_bytes());
    assert_eq!((b[12], b[13]), (0x03, WE_RO));
    assert_eq!(parse_transport_id(&b[24..]).unwrap(), PORT_B);
}

#[test]
fn spc2_reserve_release() {
    let mut t = target();
    assert!(is_good(&run(&mut t, A, &RESERVE6, &[])));
    assert!(is_good(&run(&mut t, A, &RESERVE6, &[])));
    assert!(is_conflict(&run(&mut t, B, &RESERVE6, &[])));
    // libiscsi Reserve6-2initiators: RELEASE from another nexus is a no-op.
    assert!(is_good(&run(&mut t, B, &RELEASE6, &[])));
    assert!(is_good(&run(&mut t, A, &MODE_SENSE6, &[])));
    for cdb in [&MODE_SENSE6[..], &READ10, &TUR, &READ_CAPACITY10] {
        assert!(is_conflict(&run(&mut t, B, cdb, &[])), "{cdb:?}");
    }
    assert!(is_good(&run(&mut t, B, &INQUIRY, &[])));
    // Persistent reservation commands conflict for everyone (SPC-2 §5.5.1).
    assert!(is_conflict(&prin(&mut t, A, in_sa::READ_KEYS)));
    assert!(is_conflict(&prout(&mut t, A, out_sa::REGISTER, 0, 0, 1)));
    assert!(is_good(&run(&mut t, A, &RELEASE6, &[])));
    let reserve10 = [0x56, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    assert!(is_good(&run(&mut t, B, &reserve10, &[])));
    assert!(is_conflict(&run(&mut t, A, &READ10, &[])));
    // Third-party reservations are not supported.
    let third = [0x56, 0x10, 0, 0, 0, 0, 0, 0, 0, 0];
    assert_eq!(sense(&run(&mut t, B, &third, &[])), Some((5, 0x24, 0)));
    // Losing the nexus releases it.
    t.nexus_removed(B);
    assert!(is_good(&run(&mut t, A, &READ10, &[])));
    // So does a reset.
    assert!(is_good(&run(&mut t, A, &RESERVE6, &[])));
    t.reset(Some(1));
    drain_ua(&mut t, C);
    assert!(is_good(&run(&mut t, C, &RESERVE6, &[])));
    assert!(is_good(&run(&mut t, C, &RELEASE6, &[])));
    // Registrations shut RESERVE and RELEASE out.
    drain_ua(&mut t, A);
    register(&mut t, A, 0xa);
    assert!(is_conflict(&run(&mut t, A, &RESERVE6, &[])));
    assert!(is_conflict(&run(&mut t, C, &RELEASE6, &[])));
}

#[test]
fn registrations_survive_nexus_loss_and_reset() {
    let mut t = target();
    register(&mut t, A, 0xa);
    assert!(is_good(&prout(&mut t, A, out_sa::RESERVE, EA, 0xa, 0)));
    t.nexus_removed(A);
    t.reset(None);
    // The same initiator port logs in again on a new nexus, ISID in upper case.
    let a2 = NexusId(9);
    t.nexus_added(a2, &PORT_A.to_ascii_uppercase());
    drain_ua(&mut t, a2);
    drain_ua(&mut t, B);
    drain_ua(&mut t, O);
    assert_eq!(reservation(&mut t), Some((0xa, EA)));
    assert!(is_good(&run(&mut t, a2, &WRITE10, &[0; 512])));
    assert!(is_conflict(&run(&mut t, B, &READ10, &[])));
}

#[test]
fn unit_attention_comes_before_conflict() {
    let mut t = target();
    register(&mut t, A, 0xa);
    assert!(is_good(&prout(&mut t, A, out_sa::RESERVE, EA, 0xa, 0)));
    t.resize_lu(1, 4096).unwrap();
    assert_eq!(sense(&run(&mut t, B, &READ10, &[])), Some((6, 0x2a, 0x09)));
    assert!(is_conflict(&run(&mut t, B, &READ10, &[])));
}

#[test]
fn supported_opcodes_lists_reservation_commands() {
    let mut t = target();
    for (op, sa) in [(0x5e, 3), (0x5f, 7)] {
        let rsoc = [0xa3, 0x0c, 0x02, op, 0, sa, 0, 0, 1, 0, 0, 0];
        let Action::Respond(r) = run(&mut t, A, &rsoc, &[]) else {
            panic!()
        };
        assert_eq!(r.data[1] & 0x07, 3, "{op:#x}");
        assert_eq!((r.data[4], r.data[5]), (op, sa));
    }
    for op in [0x16, 0x17, 0x56, 0x57] {
        let rsoc = [0xa3, 0x0c, 0x01, op, 0, 0, 0, 0, 1, 0, 0, 0];
        let Action::Respond(r) = run(&mut t, A, &rsoc, &[]) else {
            panic!()
        };
        assert_eq!(r.data[1] & 0x07, 3, "{op:#x}");
    }
}

fn aptpl_register(t: &mut Target, n: NexusId, key: u64, sa_key: u64, aptpl: bool) {
    let p = basic(key, sa_key, u8::from(aptpl));
    let a = run(t, n, &prout_cdb(out_sa::REGISTER, 0, 24), &p);
    assert!(is_good(&a), "{a:?}");
}

#[test]
fn aptpl_state_round_trip() {
    let mut t = target();
    // Without APTPL nothing is saved.
    register(&mut t, A, 0xa);
    assert_eq!(t.take_dirty_reservations(), Vec::<u64>::new());
    assert_eq!(t.reservation_state(1), None);
    aptpl_register(&mut t, B, 0, 0xb, true);
    assert_eq!(t.take_dirty_reservations(), vec![1]);
    assert_eq!(t.take_dirty_reservations(), Vec::<u64>::new());
    assert!(is_good(&prout(&mut t, B, out_sa::RESERVE, WE_RO, 0xb, 0)));
    assert_eq!(t.take_dirty_reservations(), vec![1]);
    let saved = t.reservation_state(1).expect("APTPL is on");
    let before = prin_data(&mut t, A, in_sa::READ_FULL_STATUS);

    // After a restart the same state is back, with APTPL on.
    let mut fresh = target();
    fresh.restore_reservations(1, &saved).unwrap();
    assert_eq!(prin_data(&mut fresh, A, in_sa::READ_FULL_STATUS), before);
    assert_eq!(fresh.reservation_state(1), Some(saved.clone()));
    assert_eq!(
        prin_data(&mut fresh, A, in_sa::REPORT_CAPABILITIES)[3] & 1,
        1
    );
    assert!(is_conflict(&run(&mut fresh, C, &WRITE10, &[0; 512])));
    assert_eq!(
        fresh.restore_reservations(7, &saved),
        Err(crate::ScsiError::NoSuchLun(7))
    );

    // Clearing APTPL: the saved state must become nothing.
    aptpl_register(&mut t, B, 0xb, 0xb, false);
    assert_eq!(t.take_dirty_reservations(), vec![1]);
    assert_eq!(t.reservation_state(1), None);
    // And further changes are not the caller's business.
    assert!(is_good(&prout(&mut t, B, out_sa::RELEASE, WE_RO, 0xb, 0)));
    assert_eq!(t.take_dirty_reservations(), Vec::<u64>::new());
    drain_ua(&mut t, A);
    // The last registration going away ends APTPL too.
    aptpl_register(&mut t, B, 0xb, 0xb, true);
    assert!(is_good(&prout(&mut t, A, out_sa::CLEAR, 0, 0xa, 0)));
    assert_eq!(t.take_dirty_reservations(), vec![1]);
    assert_eq!(t.reservation_state(1), None);
    assert_eq!(prin_data(&mut t, A, in_sa::REPORT_CAPABILITIES)[3] & 1, 0);
}

#[test]
fn aptpl_all_registrants_round_trip() {
    let mut r = Reservations::default();
    r.registrations.insert(
        PORT_A.into(),
        Registration {
            key: u64::MAX,
            all_tg_pt: true,
        },
    );
    r.persistent = Some(Persistent {
        kind: PrType::ExclusiveAccessAllRegistrants,
        holder: None,
    });
    r.generation = u32::MAX;
    r.aptpl = true;
    let saved = r.snapshot().unwrap();
    let mut back = Reservations::default();
    back.restore(&saved).unwrap();
    assert_eq!(back, r);
}

#[test]
fn garbage_state_is_refused() {
    let good = format!(
        "{STATE_HEADER}\ngeneration 3\nregistration 000000000000000a 0 {PORT_A}\n\
         reservation 1 {PORT_A}\nend\n"
    );
    let mut r = Reservations::default();
    r.restore(good.as_bytes()).unwrap();
    let kept = r.clone();
    let cases: Vec<(String, &str)> = vec![
        (String::new(), "empty"),
        (good.replace("v1", "v2"), "version"),
        (good.replace("end\n", ""), "truncated"),
        (good.replace("generation 3", "generation -3"), "generation"),
        (
            good.replace("generation 3", "generation 99999999999"),
            "huge",
        ),
        (
            good.replace("000000000000000a", "00000000000000a"),
            "short key",
        ),
        (good.replace("000000000000000a", "000000000000000g"), "hex"),
        (
            good.replace("000000000000000a", "0000000000000000"),
            "zero key",
        ),
        (good.replace(" 0 iqn", " 2 iqn"), "all_tg_pt"),
        (good.replace("reservation 1", "reservation 2"), "type"),
        (
            good.replace("reservation 1", "reservation 7"),
            "AR with holder",
        ),
        (
            good.replace(&format!("reservation 1 {PORT_A}"), "reservation 1 x"),
            "holder not registered",
        ),
        (good.replace(":a,i", ":A,i"), "not normalised"),
        (good.replace("end\n", "end\nextra\n"), "after end"),
        (good.replace("end\n", "end\n\n"), "blank after end"),
        (good.replace("generation 3\n", ""), "no generation"),
        (
            good.replace("generation 3\n", "generation 3\ngeneration 4\n"),
            "twice",
        ),
        (good.replace("end", "bogus\nend"), "unknown"),
        (good.replace("end", "end now"), "trailing words"),
        (good.replace("\n", "\r\n"), "CRLF"),
        (
            format!("{STATE_HEADER}\ngeneration 1\nend\n"),
            "no registrations",
        ),
        (
            good.replace(
                "reservation",
                &format!("registration 000000000000000b 0 {PORT_A}\nreservation"),
            ),
            "port twice",
        ),
    ];
    for (text, why) in cases {
        assert!(r.restore(text.as_bytes()).is_err(), "{why}: {text:?}");
        assert_eq!(r, kept, "{why}: state must be left alone");
    }
    assert_eq!(r.restore(&[0xff, 0xfe]), Err(StateError::NotText));
    let huge = vec![b'a'; STATE_BYTES_MAX + 1];
    assert_eq!(
        r.restore(&huge),
        Err(StateError::TooLarge(STATE_BYTES_MAX + 1))
    );
    // Too many registrations.
    let mut many = format!("{STATE_HEADER}\ngeneration 1\n");
    for i in 0..=REGISTRATIONS_MAX {
        many.push_str(&format!("registration {:016x} 0 p{i}\n", i + 1));
    }
    many.push_str("end\n");
    assert!(r.restore(many.as_bytes()).is_err());
}

#[test]
fn long_or_unknown_ports_cannot_register() {
    let mut t = target();
    let long = NexusId(20);
    let name = format!("iqn.2026-11.io.test:{}", "x".repeat(220));
    t.nexus_added(long, &iscsi_initiator_port(&name, [0; 6]));
    drain_ua(&mut t, long);
    let a = prout(&mut t, long, out_sa::REGISTER, 0, 0, 0xa);
    assert_eq!(sense(&a), Some((5, 0x55, 0x04)));
    let stranger = NexusId(21);
    let a = prout(&mut t, stranger, out_sa::REGISTER, 0, 0, 0xa);
    assert_eq!(sense(&a), Some((5, 0x55, 0x04)));
    assert_eq!(keys(&mut t), vec![]);
}

#[test]
fn registrations_are_bounded() {
    let mut t = target();
    for i in 0..REGISTRATIONS_MAX as u64 {
        let n = NexusId(100 + i);
        t.nexus_added(n, &format!("iqn.2026-11.io.test:n{i},i,0x000000000001"));
        drain_ua(&mut t, n);
        register(&mut t, n, i + 1);
    }
    let a = prout(&mut t, A, out_sa::REGISTER_AND_IGNORE, 0, 0, 0xa);
    assert_eq!(sense(&a), Some((5, 0x55, 0x04)));
}
