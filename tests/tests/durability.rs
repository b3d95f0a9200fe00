//! What gatewayd acknowledged as durable survives its sudden death, and a full backing store
//! fails only the command that hit it.

use std::time::{Duration, Instant};

use gw_tests::raw::{LoginOptions, RawSession};
use gw_tests::{Daemon, LunSpec, TargetSpec};

const MIB: u64 = 1 << 20;
const BLOCK: usize = 512;
/// Blocks each round writes at most.
const BLOCKS_PER_ROUND: u32 = 4096;

fn settle(s: &mut RawSession) {
    for _ in 0..4 {
        if s.scsi(1, &[0; 6], &[], 0).map(|r| r.status) == Ok(0) {
            return;
        }
    }
    panic!("TEST UNIT READY never succeeded");
}

fn cdb10(op: u8, flags: u8, lba: u32, blocks: u16) -> [u8; 10] {
    let mut c = [op, flags, 0, 0, 0, 0, 0, 0, 0, 0];
    c[2..6].copy_from_slice(&lba.to_be_bytes());
    c[7..9].copy_from_slice(&blocks.to_be_bytes());
    c
}

/// The content of block `lba` as written in `round`.
fn block(round: u32, lba: u32) -> Vec<u8> {
    let mut b = vec![0u8; BLOCK];
    for (i, chunk) in b.chunks_mut(8).enumerate() {
        chunk[..4].copy_from_slice(&round.to_be_bytes());
        chunk[4..].copy_from_slice(&(lba ^ i as u32).to_be_bytes());
    }
    b
}

/// Writes blocks until the daemon dies; returns what was acknowledged as durable (with FUA,
/// or by a SYNCHRONIZE CACHE that followed).
fn write_until_killed(d: &Daemon, round: u32, fua: bool) -> Vec<u32> {
    // The kill may come at any point, even before the login or the first command.
    let Ok(mut s) = RawSession::login(d.portal, &d.targets[0], &LoginOptions::default()) else {
        return Vec::new();
    };
    let mut settled = false;
    for _ in 0..4 {
        match s.scsi(1, &[0; 6], &[], 0) {
            Ok(r) if r.status == 0 => {
                settled = true;
                break;
            }
            Ok(_) => {}
            Err(_) => return Vec::new(),
        }
    }
    assert!(settled, "TEST UNIT READY never succeeded");
    let mut durable = Vec::new();
    let mut pending = Vec::new();
    for lba in 0..BLOCKS_PER_ROUND {
        let flags = if fua { 0x08 } else { 0 };
        match s.scsi(1, &cdb10(0x2a, flags, lba, 1), &block(round, lba), 0) {
            Ok(r) if r.status == 0 => pending.push(lba),
            _ => break,
        }
        if fua {
            durable.append(&mut pending);
        } else if lba % 16 == 15 {
            match s.scsi(1, &cdb10(0x35, 0, 0, 0), &[], 0) {
                Ok(r) if r.status == 0 => durable.append(&mut pending),
                _ => break,
            }
        }
    }
    durable
}

#[test]
fn acknowledged_writes_survive_sigkill() {
    let mut d = Daemon::start(
        "durability",
        &[TargetSpec::new(vec![LunSpec::new(16 * MIB)])],
    );
    // Twenty pseudo-random kill points in a row, the same every run.
    let delays_ms = [
        7u64, 31, 3, 55, 18, 90, 12, 44, 1, 67, 25, 9, 80, 36, 15, 5, 59, 22, 41, 73,
    ];
    let mut checked = 0;
    for (round, &delay) in delays_ms.iter().enumerate() {
        let round = round as u32 + 1;
        let fua = round % 2 == 1;
        let pid = d.pid();
        let durable = std::thread::scope(|scope| {
            let writer = scope.spawn(|| write_until_killed(&d, round, fua));
            std::thread::sleep(Duration::from_millis(delay));
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            writer.join().expect("writer thread")
        });
        d.kill9();
        d.restart();
        let mut s = RawSession::login(d.portal, &d.targets[0], &LoginOptions::default()).unwrap();
        settle(&mut s);
        for &lba in &durable {
            let r = s
                .scsi(1, &cdb10(0x28, 0, lba, 1), &[], BLOCK as u32)
                .unwrap();
            assert_eq!(r.status, 0);
            assert!(
                r.data == block(round, lba),
                "round {round} ({}): block {lba} acknowledged as durable was lost",
                if fua { "FUA" } else { "SYNCHRONIZE CACHE" }
            );
        }
        checked += durable.len();
    }
    assert!(
        checked > 0,
        "the daemon was killed before any write was acknowledged"
    );
    println!(
        "verified {checked} acknowledged blocks across {} kills",
        delays_ms.len()
    );
}

#[test]
fn a_full_store_fails_only_the_write_that_hit_it() {
    // A 1 MiB tmpfs holding a 16 MiB sparse LUN file: writes past the first MiB find no space.
    let dir = gw_tests::TempDir::new("enospc-mount");
    let mnt = dir.0.join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(&mnt)
        .status()
        .expect("run mount");
    assert!(mounted.success(), "mounting a small tmpfs needs root");
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(mnt.clone());
    let lun = mnt.join("lun.img");
    std::fs::File::create(&lun)
        .and_then(|f| f.set_len(16 * MIB))
        .unwrap();
    let d = Daemon::start_full(
        "enospc",
        &[TargetSpec::new(vec![LunSpec::new(MIB)])
            .with(&format!("backing-store {}", lun.display()))],
        &[],
        &[],
    );
    let mut s = RawSession::login(d.portal, &d.targets[0], &LoginOptions::default()).unwrap();
    settle(&mut s);
    // LUN 2 is the tmpfs file (LUN 1 is the harness's own).
    let lun2 = |s: &mut RawSession, cdb: &[u8], data: &[u8], read: u32| {
        let mut r = s.scsi(2, cdb, data, read).unwrap();
        if r.status == 2 && r.sense.get(2).map(|k| k & 0x0f) == Some(6) {
            r = s.scsi(2, cdb, data, read).unwrap();
        }
        r
    };
    let chunk = vec![0x5au8; 256 * 1024];
    let mut failed = None;
    let deadline = Instant::now() + Duration::from_secs(30);
    for i in 0..64u32 {
        assert!(Instant::now() < deadline);
        let r = lun2(&mut s, &cdb10(0x2a, 0, i * 512, 512), &chunk, 0);
        if r.status != 0 {
            failed = Some((i, r));
            break;
        }
    }
    let (at, r) = failed.expect("a 1 MiB filesystem took 16 MiB of writes");
    assert!(at >= 1, "the first write fit");
    assert_eq!(r.status, 2, "CHECK CONDITION");
    let (key, asc, ascq) = (r.sense[2] & 0x0f, r.sense[12], r.sense[13]);
    assert_eq!(
        (key, asc, ascq),
        (0x07, 0x27, 0x07),
        "DATA PROTECT, SPACE ALLOCATION FAILED WRITE PROTECT: {:02x?}",
        r.sense
    );
    // The session goes on: what was written reads back, and the other LUN still writes.
    let back = lun2(&mut s, &cdb10(0x28, 0, 0, 512), &[], 256 * 1024);
    assert_eq!(back.status, 0);
    assert!(back.data == chunk);
    let ok = s.scsi(1, &cdb10(0x2a, 0, 0, 1), &[1u8; BLOCK], 0).unwrap();
    assert_eq!(ok.status, 0);
}
