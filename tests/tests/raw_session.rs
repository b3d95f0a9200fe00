//! Behaviour no libiscsi tool reaches: data digests, reinstatement by ISID, broken PDUs.

use gw_tests::raw::{LoginOptions, RawSession};
use gw_tests::{Daemon, LunSpec, TargetSpec};

const MIB: u64 = 1 << 20;

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn write10(lba: u32, blocks: u16) -> [u8; 10] {
    let mut c = [0x2a, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    c[2..6].copy_from_slice(&lba.to_be_bytes());
    c[7..9].copy_from_slice(&blocks.to_be_bytes());
    c
}

fn read10(lba: u32, blocks: u16) -> [u8; 10] {
    let mut c = write10(lba, blocks);
    c[0] = 0x28;
    c
}

/// Clears the power-on unit attention.
fn settle(s: &mut RawSession) {
    for _ in 0..4 {
        if s.scsi(1, &[0; 6], &[], 0).unwrap().status == 0 {
            return;
        }
    }
    panic!("TEST UNIT READY never succeeded");
}

#[test]
fn header_and_data_digests_carry_writes_and_reads_intact() {
    let d = Daemon::start(
        "digests",
        &[TargetSpec::new(vec![LunSpec::new(16 * MIB)])
            .with("HeaderDigest CRC32C")
            .with("DataDigest CRC32C")],
    );
    let o = LoginOptions {
        header_digest: true,
        data_digest: true,
        max_recv: 16384,
        ..Default::default()
    };
    let mut s = RawSession::login(d.portal, &d.targets[0], &o).expect("login with digests");
    settle(&mut s);
    // 300 KiB: immediate data, unsolicited Data-Out, then R2T-solicited Data-Out, all with
    // data digests; read back as Data-In split at our 16 KiB MaxRecvDataSegmentLength.
    let data = pattern(300 * 1024, 7);
    let w = s.scsi(1, &write10(100, 600), &data, 0).unwrap();
    assert_eq!(w.status, 0, "write: sense {:02x?}", w.sense);
    let r = s
        .scsi(1, &read10(100, 600), &[], data.len() as u32)
        .unwrap();
    assert_eq!(r.status, 0);
    assert!(r.data == data, "read back what was written");

    // A NOP-Out whose data digest is wrong is rejected (reason 0x02) and the session goes on.
    let mut nop = gateway::iscsi::pdu::Bhs::default();
    nop.0[0] = 0x40; // immediate NOP-Out
    nop.0[1] = 0x80;
    nop.0[16..20].copy_from_slice(&77u32.to_be_bytes());
    nop.0[20..24].copy_from_slice(&0xffff_ffffu32.to_be_bytes());
    nop.0[24..28].copy_from_slice(&s.cmdsn().to_be_bytes());
    nop.set_data_segment_len(4);
    let mut wire = Vec::new();
    gateway::iscsi::writer::encode_pdu(&nop, &[], b"ping", s.digests(), &mut wire);
    let last = wire.len() - 1;
    wire[last] ^= 0xff;
    s.send_raw(&wire).unwrap();
    let reject = s.recv().unwrap();
    assert_eq!(reject.bhs.raw_opcode(), 0x3f, "a Reject");
    assert_eq!(reject.bhs.0[2], 0x02, "reason: data digest error");
    let r = s.scsi(1, &read10(100, 1), &[], 512).unwrap();
    assert_eq!(r.status, 0);
    assert_eq!(&r.data[..], &data[..512]);
}

#[test]
fn a_login_with_the_same_isid_reinstates_the_session() {
    let d = Daemon::start(
        "reinstate",
        &[TargetSpec::new(vec![LunSpec::new(16 * MIB)])],
    );
    let o = LoginOptions::default();
    let mut first = RawSession::login(d.portal, &d.targets[0], &o).unwrap();
    settle(&mut first);
    let mut second = RawSession::login(d.portal, &d.targets[0], &o).unwrap();
    // The old session's connection is closed by the target.
    let gone = first.recv();
    assert!(gone.is_err(), "old session must be closed, got {gone:?}");
    settle(&mut second);
    let data = pattern(4096, 3);
    assert_eq!(second.scsi(1, &write10(8, 8), &data, 0).unwrap().status, 0);
    assert_eq!(second.scsi(1, &read10(8, 8), &[], 4096).unwrap().data, data);
    // A different ISID is a separate session: both live.
    let other = LoginOptions {
        isid: [0x80, 0, 0, 0, 0x99, 0x99],
        ..LoginOptions::default()
    };
    let mut third = RawSession::login(d.portal, &d.targets[0], &other).unwrap();
    settle(&mut third);
    assert_eq!(second.scsi(1, &[0; 6], &[], 0).unwrap().status, 0);
    // The operator's log has one line for it, naming the initiator and its address.
    let log = d.log();
    let line = log
        .lines()
        .find(|l| l.contains("session reinstated"))
        .unwrap_or_else(|| panic!("no reinstatement line:\n{log}"));
    assert!(
        line.contains("initiator=") && line.contains("peer=127.0.0.1"),
        "{line}"
    );
}
