//! EXTENDED COPY (LID1) between two LUNs of one target, end to end through the raw
//! initiator: data lands where the segments say, a copy that fails half way keeps the
//! segments before the failure and says where it stopped, and RECEIVE COPY RESULTS reports it.

use gw_tests::raw::{LoginOptions, RawSession};
use gw_tests::{Daemon, LunSpec, TargetSpec};

const MIB: u64 = 1 << 20;
const BLOCK: usize = 512;
/// Blocks per WRITE(10) or READ(10) here (1 MiB).
const IO_BLOCKS: u16 = 2048;

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| ((i / 7) as u8).wrapping_mul(13).wrapping_add(seed) ^ (i >> 12) as u8)
        .collect()
}

fn rw10(op: u8, lba: u32, blocks: u16) -> [u8; 10] {
    let mut c = [op, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    c[2..6].copy_from_slice(&lba.to_be_bytes());
    c[7..9].copy_from_slice(&blocks.to_be_bytes());
    c
}

fn settle(s: &mut RawSession, lun: u64) {
    for _ in 0..4 {
        if s.scsi(lun, &[0; 6], &[], 0).unwrap().status == 0 {
            return;
        }
    }
    panic!("TEST UNIT READY never succeeded on LUN {lun}");
}

fn write(s: &mut RawSession, lun: u64, lba: u32, data: &[u8]) {
    for (i, chunk) in data.chunks(usize::from(IO_BLOCKS) * BLOCK).enumerate() {
        let at = lba + (i * usize::from(IO_BLOCKS)) as u32;
        let blocks = (chunk.len() / BLOCK) as u16;
        let r = s.scsi(lun, &rw10(0x2a, at, blocks), chunk, 0).unwrap();
        assert_eq!(r.status, 0, "write: sense {:02x?}", r.sense);
    }
}

fn read(s: &mut RawSession, lun: u64, lba: u32, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        let n = (len - out.len()).min(usize::from(IO_BLOCKS) * BLOCK);
        let at = lba + (out.len() / BLOCK) as u32;
        let r = s
            .scsi(lun, &rw10(0x28, at, (n / BLOCK) as u16), &[], n as u32)
            .unwrap();
        assert_eq!(r.status, 0, "read: sense {:02x?}", r.sense);
        out.extend_from_slice(&r.data);
    }
    out
}

/// The LU's NAA designation descriptor, from VPD 0x83.
fn naa(s: &mut RawSession, lun: u64) -> Vec<u8> {
    let r = s.scsi(lun, &[0x12, 1, 0x83, 1, 0, 0], &[], 256).unwrap();
    assert_eq!(r.status, 0);
    let mut at = 4;
    while at + 4 <= r.data.len() {
        let len = usize::from(r.data[at + 3]);
        if r.data[at + 1] & 0x3f == 0x03 {
            return r.data[at..at + 4 + len].to_vec();
        }
        at += 4 + len;
    }
    panic!("no NAA designator on LUN {lun}");
}

fn cscd(designator: &[u8]) -> Vec<u8> {
    let mut d = vec![0u8; 32];
    d[0] = 0xe4;
    d[4..4 + designator.len()].copy_from_slice(designator);
    d[29..32].copy_from_slice(&(BLOCK as u32).to_be_bytes()[1..]);
    d
}

fn segment(src: u16, dst: u16, blocks: u16, src_lba: u64, dst_lba: u64) -> Vec<u8> {
    let mut d = vec![0u8; 28];
    d[0] = 0x02;
    d[2..4].copy_from_slice(&24u16.to_be_bytes());
    d[4..6].copy_from_slice(&src.to_be_bytes());
    d[6..8].copy_from_slice(&dst.to_be_bytes());
    d[10..12].copy_from_slice(&blocks.to_be_bytes());
    d[12..20].copy_from_slice(&src_lba.to_be_bytes());
    d[20..28].copy_from_slice(&dst_lba.to_be_bytes());
    d
}

fn parameter_list(list_id: u8, cscds: &[Vec<u8>], segments: &[Vec<u8>]) -> Vec<u8> {
    let c = cscds.concat();
    let s = segments.concat();
    let mut v = vec![0u8; 16];
    v[0] = list_id; // LIST ID USAGE 00b: hold results
    v[2..4].copy_from_slice(&(c.len() as u16).to_be_bytes());
    v[8..12].copy_from_slice(&(s.len() as u32).to_be_bytes());
    v.extend(c);
    v.extend(s);
    v
}

fn extended_copy(s: &mut RawSession, lun: u64, list: &[u8]) -> gw_tests::raw::ScsiResult {
    let mut cdb = [0u8; 16];
    cdb[0] = 0x83;
    cdb[10..14].copy_from_slice(&(list.len() as u32).to_be_bytes());
    s.scsi(lun, &cdb, list, 0).unwrap()
}

fn receive_copy_results(s: &mut RawSession, lun: u64, sa: u8, list_id: u8) -> Vec<u8> {
    let mut cdb = [0u8; 16];
    cdb[0] = 0x84;
    cdb[1] = sa;
    cdb[2] = list_id;
    cdb[10..14].copy_from_slice(&1024u32.to_be_bytes());
    let r = s.scsi(lun, &cdb, &[], 1024).unwrap();
    assert_eq!(r.status, 0, "RECEIVE COPY RESULTS: sense {:02x?}", r.sense);
    r.data
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes(b[..4].try_into().unwrap())
}

#[test]
fn copies_between_luns_and_stops_at_a_bad_segment() {
    let d = Daemon::start(
        "xcopy",
        &[TargetSpec::new(vec![
            LunSpec::new(16 * MIB),
            LunSpec::new(16 * MIB),
        ])],
    );
    let mut s = RawSession::login(d.portal, &d.targets[0], &LoginOptions::default()).unwrap();
    settle(&mut s, 1);
    settle(&mut s, 2);
    let inquiry = s.scsi(1, &[0x12, 0, 0, 0, 36, 0], &[], 36).unwrap();
    assert_eq!(inquiry.data[5] & 0x08, 0x08, "3PC set");
    let (one, two) = (cscd(&naa(&mut s, 1)), cscd(&naa(&mut s, 2)));

    // 8 MiB from LUN 1 to LUN 2, as two 4 MiB segments.
    let data = pattern(8 * MIB as usize, 5);
    write(&mut s, 1, 0, &data);
    let half = (4 * MIB as usize / BLOCK) as u16;
    let list = parameter_list(
        1,
        &[one.clone(), two.clone()],
        &[
            segment(0, 1, half, 0, 0),
            segment(0, 1, half, u64::from(half), u64::from(half)),
        ],
    );
    let r = extended_copy(&mut s, 1, &list);
    assert_eq!(r.status, 0, "copy: sense {:02x?}", r.sense);
    assert!(
        read(&mut s, 2, 0, data.len()) == data,
        "LUN 2 holds the copy"
    );
    let status = receive_copy_results(&mut s, 1, 0x00, 1);
    assert_eq!(status[4] & 0x7f, 0x01, "completed, good");
    assert_eq!(u16::from_be_bytes([status[5], status[6]]), 2);
    assert_eq!((status[7], be32(&status[8..])), (0, 8 * MIB as u32));

    // The first segment fits, the second runs past the end of LUN 2 (32768 blocks).
    let list = parameter_list(
        2,
        &[one.clone(), two.clone()],
        &[
            segment(0, 1, IO_BLOCKS, 0, 20000),
            segment(0, 1, IO_BLOCKS, 0, 32768 - 10),
        ],
    );
    let r = extended_copy(&mut s, 1, &list);
    assert_eq!(r.status, 0x02, "CHECK CONDITION");
    assert_eq!(r.sense[2] & 0x0f, 0x0a, "COPY ABORTED: {:02x?}", r.sense);
    assert_eq!(be32(&r.sense[8..]), 1, "failed at segment 1");
    assert!(
        read(&mut s, 2, 20000, usize::from(IO_BLOCKS) * BLOCK)
            == data[..usize::from(IO_BLOCKS) * BLOCK],
        "the first segment was copied"
    );
    let status = receive_copy_results(&mut s, 1, 0x00, 2);
    assert_eq!(status[4] & 0x7f, 0x02, "completed with errors");
    assert_eq!(u16::from_be_bytes([status[5], status[6]]), 1);
    let details = receive_copy_results(&mut s, 1, 0x04, 2);
    assert_eq!(details[56], 0x02, "copy command status CHECK CONDITION");
    assert_eq!(details[60 + 2] & 0x0f, 0x0a, "its sense: COPY ABORTED");

    // Overlapping source and destination on one LU: 2 MiB moved up by 512 KiB.
    let list = parameter_list(3, &[one], &[segment(0, 0, 4096, 0, 1024)]);
    let r = extended_copy(&mut s, 1, &list);
    assert_eq!(r.status, 0, "overlapping copy: sense {:02x?}", r.sense);
    assert!(
        read(&mut s, 1, 1024, 2 * MIB as usize) == data[..2 * MIB as usize],
        "the overlapping copy reads as the source did before it"
    );

    // A LU named by a designator this target does not have: UNREACHABLE COPY TARGET.
    let mut stranger = two;
    stranger[15] ^= 0xff;
    let list = parameter_list(4, &[stranger], &[segment(0, 0, 1, 0, 1)]);
    let r = extended_copy(&mut s, 1, &list);
    assert_eq!(r.status, 0x02);
    assert_eq!(
        (r.sense[2] & 0x0f, r.sense[12], r.sense[13]),
        (0x0a, 0x08, 0x04)
    );
}
