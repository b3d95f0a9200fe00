//! Thin provisioning end to end: a 1 TiB sparse LUN takes a full-range UNMAP and a
//! full-range WRITE SAME(16) with UNMAP, its file gives the space back, and another session
//! on the same target (same target thread) keeps completing I/O throughout.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gw_tests::raw::{LoginOptions, RawSession};
use gw_tests::{Daemon, LunSpec, TargetSpec};

const MIB: u64 = 1 << 20;
const TIB: u64 = 1 << 40;
const BLOCK: u64 = 512;
/// Blocks of the 1 TiB LUN (2^31: one UNMAP descriptor or WRITE SAME(16) covers them all).
const BLOCKS: u64 = TIB / BLOCK;
/// Longest a full-range UNMAP or WRITE SAME may take.
const BIG_COMMAND_MAX: Duration = Duration::from_secs(60);
/// Longest the other session may wait for any one of its commands.
const OTHER_COMMAND_MAX: Duration = Duration::from_secs(2);

/// Clears the power-on unit attentions.
fn settle(s: &mut RawSession, lun: u64) {
    for _ in 0..4 {
        if s.scsi(lun, &[0; 6], &[], 0).unwrap().status == 0 {
            return;
        }
    }
    panic!("TEST UNIT READY never succeeded");
}

fn write16(lba: u64, blocks: u32) -> [u8; 16] {
    let mut c = [0u8; 16];
    c[0] = 0x8a;
    c[2..10].copy_from_slice(&lba.to_be_bytes());
    c[10..14].copy_from_slice(&blocks.to_be_bytes());
    c
}

fn read16(lba: u64, blocks: u32) -> [u8; 16] {
    let mut c = write16(lba, blocks);
    c[0] = 0x88;
    c
}

fn unmap_all() -> ([u8; 10], Vec<u8>) {
    let mut list = vec![0u8; 24];
    list[..2].copy_from_slice(&22u16.to_be_bytes());
    list[2..4].copy_from_slice(&16u16.to_be_bytes());
    list[8..16].copy_from_slice(&0u64.to_be_bytes());
    list[16..20].copy_from_slice(&(BLOCKS as u32).to_be_bytes());
    let cdb = [0x42, 0, 0, 0, 0, 0, 0, 0, 24, 0];
    (cdb, list)
}

fn write_same16_unmap_all() -> [u8; 16] {
    let mut c = [0u8; 16];
    c[0] = 0x93;
    c[1] = 0x08; // UNMAP
    c[10..14].copy_from_slice(&(BLOCKS as u32).to_be_bytes());
    c
}

fn get_lba_status(lba: u64) -> [u8; 16] {
    let mut c = [0u8; 16];
    c[0] = 0x9e;
    c[1] = 0x12;
    c[2..10].copy_from_slice(&lba.to_be_bytes());
    c[10..14].copy_from_slice(&24u32.to_be_bytes());
    c
}

/// Where 1 MiB of data is put before each deallocation: 32 places spread over the LUN and
/// its last MiB, so a deallocation alternates between skipping holes and punching data.
fn spots() -> Vec<u64> {
    (0..32)
        .map(|i| i * (BLOCKS / 32) + i * 8)
        .chain([BLOCKS - 2048])
        .collect()
}

fn fill_spots(s: &mut RawSession, file: &Path) {
    let data = vec![0x5au8; MIB as usize];
    for lba in spots() {
        let r = s.scsi(1, &write16(lba, 2048), &data, 0).unwrap();
        assert_eq!(r.status, 0, "write at {lba}: sense {:02x?}", r.sense);
    }
    let used = std::fs::metadata(file).unwrap().blocks() * 512;
    assert!(used >= 33 * MIB, "the writes allocated {used} bytes");
}

fn assert_deallocated(s: &mut RawSession, file: &Path) {
    let used = std::fs::metadata(file).unwrap().blocks() * 512;
    assert!(used < MIB, "the 1 TiB file still uses {used} bytes");
    for lba in spots() {
        let r = s.scsi(1, &read16(lba, 2048), &[], MIB as u32).unwrap();
        assert_eq!(r.status, 0);
        assert!(r.data.iter().all(|&b| b == 0), "LBA {lba} reads as zeros");
        let st = s.scsi(1, &get_lba_status(lba), &[], 24).unwrap();
        assert_eq!(st.status, 0, "GET LBA STATUS: sense {:02x?}", st.sense);
        assert_eq!(
            &st.data[8..16],
            &lba.to_be_bytes(),
            "starts at the LBA asked"
        );
        assert_eq!(st.data[20] & 0x0f, 1, "LBA {lba} is deallocated");
    }
}

/// Runs `cmd` while the other session keeps working; returns how long it took and how many
/// of the other session's commands completed meanwhile.
fn timed(
    name: &str,
    s: &mut RawSession,
    cdb: &[u8],
    data_out: &[u8],
    completions: &std::sync::Mutex<Vec<Instant>>,
) -> (Duration, usize) {
    let start = Instant::now();
    let r = s.scsi(1, cdb, data_out, 0).unwrap();
    let took = start.elapsed();
    assert_eq!(r.status, 0, "{name}: sense {:02x?}", r.sense);
    assert!(took < BIG_COMMAND_MAX, "{name} took {took:?}");
    let during = completions
        .lock()
        .unwrap()
        .iter()
        .filter(|&&t| t > start && t < start + took)
        .count();
    println!(
        "{name}: {took:?}, other session completed {during} commands meanwhile (of {})",
        completions.lock().unwrap().len()
    );
    (took, during)
}

#[test]
fn full_range_unmap_and_write_same_on_a_1_tib_lun_while_another_session_works() {
    let d = Daemon::start(
        "thin-1tib",
        &[TargetSpec::new(vec![
            LunSpec::new(TIB).with("params thin_provisioning=1"),
            LunSpec::new(64 * MIB),
        ])],
    );
    let file = d.dir.0.join("t1-lun1.img");
    let o = LoginOptions::default();
    let mut big = RawSession::login(d.portal, &d.targets[0], &o).expect("login");
    settle(&mut big, 1);

    // The other session: write and read back 64 KiB on LUN 2, over and over, noting when
    // each command completes and the longest wait.
    let other_opts = LoginOptions {
        isid: [0x80, 0, 0, 0, 0x42, 0x42],
        ..LoginOptions::default()
    };
    let mut other = RawSession::login(d.portal, &d.targets[0], &other_opts).expect("login");
    settle(&mut other, 2);
    let stop = Arc::new(AtomicBool::new(false));
    let completions = Arc::new(std::sync::Mutex::new(Vec::new()));
    let worker = {
        let stop = stop.clone();
        let completions = completions.clone();
        std::thread::spawn(move || {
            let mut longest = Duration::ZERO;
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let lba = (i * 128) % (64 * MIB / BLOCK - 128);
                let data = vec![(i % 251) as u8; 64 << 10];
                let t0 = Instant::now();
                let w = other.scsi(2, &write16(lba, 128), &data, 0).unwrap();
                assert_eq!(w.status, 0);
                let r = other.scsi(2, &read16(lba, 128), &[], 64 << 10).unwrap();
                assert_eq!(r.status, 0);
                assert!(r.data == data, "the other session reads what it wrote");
                longest = longest.max(t0.elapsed());
                completions.lock().unwrap().push(Instant::now());
                i += 1;
            }
            (i, longest)
        })
    };

    fill_spots(&mut big, &file);
    let (cdb, list) = unmap_all();
    let unmap = timed("full-range UNMAP", &mut big, &cdb, &list, &completions);
    assert_deallocated(&mut big, &file);

    fill_spots(&mut big, &file);
    let ws = timed(
        "full-range WRITE SAME(16) with UNMAP",
        &mut big,
        &write_same16_unmap_all(),
        &[0u8; BLOCK as usize],
        &completions,
    );
    assert_deallocated(&mut big, &file);

    stop.store(true, Ordering::Relaxed);
    let (done, longest) = worker.join().expect("the other session kept working");
    println!("other session: {done} write+read pairs, longest {longest:?}");
    assert!(done > 0);
    assert!(
        longest < OTHER_COMMAND_MAX,
        "the other session waited {longest:?} for one command"
    );
    // Where a big command lasted long enough to matter, the other session was served
    // during it, not only after.
    for (took, during) in [unmap, ws] {
        if took > Duration::from_millis(200) {
            assert!(during > 0, "no other I/O completed during {took:?}");
        }
    }
}

#[test]
fn thin_provisioning_is_off_by_default_and_tgtadm_turns_it_on() {
    let d = Daemon::start(
        "thin-tgtadm",
        &[TargetSpec::new(vec![LunSpec::new(16 * MIB)])],
    );
    let o = LoginOptions::default();
    let mut s = RawSession::login(d.portal, &d.targets[0], &o).expect("login");
    settle(&mut s, 1);
    let vpd_b2 = [0x12, 0x01, 0xb2, 0, 64, 0];
    let r = s.scsi(1, &vpd_b2, &[], 64).unwrap();
    assert_eq!(r.status, 0);
    assert_eq!(r.data[5] & 0x80, 0, "LBPU clear by default");
    let (cdb, list) = unmap_all();
    let refused = s.scsi(1, &cdb, &list, 0).unwrap();
    assert_eq!(refused.status, 2, "UNMAP refused on a fully provisioned LU");

    d.tgtadm(&[
        "--lld",
        "iscsi",
        "--op",
        "update",
        "--mode",
        "logicalunit",
        "--tid",
        "1",
        "--lun",
        "1",
        "--params",
        "thin_provisioning=1",
    ]);
    let show = d.tgtadm(&["--lld", "iscsi", "--op", "show", "--mode", "target"]);
    assert!(show.contains("Thin-provisioning: Yes"), "{show}");
    settle(&mut s, 1);
    let r = s.scsi(1, &vpd_b2, &[], 64).unwrap();
    assert_eq!(r.data[5] & 0xe4, 0xe4, "LBPU, LBPWS, LBPWS10, LBPRZ");
    let mut one = [0u8; 24];
    one[..2].copy_from_slice(&22u16.to_be_bytes());
    one[2..4].copy_from_slice(&16u16.to_be_bytes());
    one[16..20].copy_from_slice(&8u32.to_be_bytes());
    let r = s.scsi(1, &cdb, &one, 0).unwrap();
    assert_eq!(r.status, 0, "UNMAP accepted: sense {:02x?}", r.sense);
}

#[test]
fn write_same_repeats_its_block_across_steps_and_anchor_keeps_space() {
    let d = Daemon::start(
        "thin-steps",
        &[TargetSpec::new(vec![
            LunSpec::new(64 * MIB).with("params thin_provisioning=1")
        ])],
    );
    let file = d.dir.0.join("t1-lun1.img");
    let o = LoginOptions::default();
    let mut s = RawSession::login(d.portal, &d.targets[0], &o).expect("login");
    settle(&mut s, 1);

    // 3 MiB and one block: several 1 MiB write steps and a short last one.
    let blocks = 3 * 2048 + 1;
    let block: Vec<u8> = (0..BLOCK).map(|i| (i % 253) as u8 + 1).collect();
    let mut ws = [0u8; 16];
    ws[0] = 0x93;
    ws[2..10].copy_from_slice(&100u64.to_be_bytes());
    ws[10..14].copy_from_slice(&(blocks as u32).to_be_bytes());
    let r = s.scsi(1, &ws, &block, 0).unwrap();
    assert_eq!(r.status, 0, "WRITE SAME: sense {:02x?}", r.sense);
    let len = (blocks + 2) * BLOCK;
    let r = s
        .scsi(1, &read16(99, blocks as u32 + 2), &[], len as u32)
        .unwrap();
    assert_eq!(r.status, 0);
    let (before, rest) = r.data.split_at(BLOCK as usize);
    let (written, after) = rest.split_at((blocks * BLOCK) as usize);
    assert!(before.iter().all(|&b| b == 0) && after.iter().all(|&b| b == 0));
    for (i, chunk) in written.chunks(BLOCK as usize).enumerate() {
        assert!(
            chunk == &block[..],
            "block {i} of the range holds the pattern"
        );
    }

    // UNMAP with ANCHOR: the range reads as zeros and keeps its space (ZERO_RANGE).
    let used_before = std::fs::metadata(&file).unwrap().blocks() * 512;
    let mut list = vec![0u8; 24];
    list[..2].copy_from_slice(&22u16.to_be_bytes());
    list[2..4].copy_from_slice(&16u16.to_be_bytes());
    list[8..16].copy_from_slice(&104u64.to_be_bytes());
    list[16..20].copy_from_slice(&2048u32.to_be_bytes());
    let r = s
        .scsi(1, &[0x42, 0x01, 0, 0, 0, 0, 0, 0, 24, 0], &list, 0)
        .unwrap();
    assert_eq!(r.status, 0, "UNMAP ANCHOR: sense {:02x?}", r.sense);
    let r = s.scsi(1, &read16(104, 2048), &[], MIB as u32).unwrap();
    assert!(
        r.data.iter().all(|&b| b == 0),
        "anchored blocks read as zeros"
    );
    let used_after = std::fs::metadata(&file).unwrap().blocks() * 512;
    assert!(
        used_after + 4096 >= used_before,
        "anchoring kept the space: {used_before} -> {used_after} bytes"
    );
    // Without ANCHOR the same range gives its space back.
    let r = s
        .scsi(1, &[0x42, 0, 0, 0, 0, 0, 0, 0, 24, 0], &list, 0)
        .unwrap();
    assert_eq!(r.status, 0);
    let used_unmapped = std::fs::metadata(&file).unwrap().blocks() * 512;
    assert!(
        used_unmapped + MIB - 8192 <= used_after,
        "unmapping freed the range: {used_after} -> {used_unmapped} bytes"
    );
}

#[test]
fn an_aborted_write_same_stops_between_steps() {
    use gateway::iscsi::pdu::{self, Bhs, ScsiCommand};

    const LUN_BYTES: u64 = 2 << 30;
    let d = Daemon::start(
        "thin-abort",
        &[TargetSpec::new(vec![
            LunSpec::new(LUN_BYTES).with("params thin_provisioning=1")
        ])],
    );
    let file = d.dir.0.join("t1-lun1.img");
    let o = LoginOptions::default();
    let mut s = RawSession::login(d.portal, &d.targets[0], &o).expect("login");
    settle(&mut s, 1);

    // WRITE SAME(16) of a non-zero block over all 2 GiB, without UNMAP: 2048 write steps.
    // The block goes as immediate data, so the target starts it on receipt.
    let mut cdb = [0u8; 16];
    cdb[0] = 0x93;
    cdb[10..14].copy_from_slice(&((LUN_BYTES / BLOCK) as u32).to_be_bytes());
    let itt = 0x7000_0001;
    let cmdsn = s.take_cmdsn();
    let mut cmd = ScsiCommand {
        immediate: false,
        final_: true,
        read: false,
        write: true,
        attr: 1,
        lun: pdu::lun_to_wire(1),
        itt,
        expected_len: BLOCK as u32,
        cmdsn,
        exp_statsn: s.exp_statsn(),
        cdb,
    }
    .encode();
    cmd.set_data_segment_len(BLOCK as u32);
    s.send(&cmd, &[0xc3; BLOCK as usize]).unwrap();

    // ABORT TASK right behind it: the target reads both in order, so the job is under way
    // (one step in flight) when the abort arrives.
    let mut tmf = Bhs::default();
    tmf.0[0] = 0x40 | 0x02; // immediate Task Management Function Request
    tmf.0[1] = 0x80 | 0x01; // ABORT TASK
    tmf.0[8..16].copy_from_slice(&pdu::lun_to_wire(1));
    tmf.0[16..20].copy_from_slice(&0x7000_0002u32.to_be_bytes());
    tmf.0[20..24].copy_from_slice(&itt.to_be_bytes());
    tmf.0[24..28].copy_from_slice(&s.cmdsn().to_be_bytes());
    tmf.0[28..32].copy_from_slice(&s.exp_statsn().to_be_bytes());
    tmf.0[32..36].copy_from_slice(&cmdsn.to_be_bytes());
    s.send(&tmf, &[]).unwrap();
    let r = s.recv().unwrap();
    assert_eq!(
        r.bhs.raw_opcode(),
        0x22,
        "a TMF response, not the WRITE SAME's status"
    );
    assert_eq!(r.bhs.0[2], 0, "function complete");

    // The session goes on, and the rest of the LU was never written.
    let tur = s.scsi(1, &[0; 6], &[], 0).unwrap();
    assert_eq!(tur.status, 0);
    // An absence is checked over a while: a job that went on would write hundreds of MiB
    // in that time (about 1 MiB per ring turn).
    let used = std::fs::metadata(&file).unwrap().blocks() * 512;
    std::thread::sleep(Duration::from_millis(300));
    let later = std::fs::metadata(&file).unwrap().blocks() * 512;
    assert!(
        used < LUN_BYTES / 8 && later == used,
        "the aborted WRITE SAME went on: {used} then {later} bytes allocated"
    );
}
