//! Backing stores other than buffered files: O_DIRECT files, block devices, null.

use std::process::Command;
use std::time::Duration;

use gw_tests::{fio_path, run, Daemon, LunSpec, TargetSpec, TempDir};

const MIB: u64 = 1 << 20;

fn fio_verify(d: &Daemon, t: usize, size: &str, bs: &str) {
    let out = run(
        Command::new(fio_path()).current_dir(&d.dir.0).args([
            "--name=v",
            "--ioengine=libiscsi",
            "--rw=randwrite",
            &format!("--bs={bs}"),
            "--iodepth=16",
            &format!("--size={size}"),
            "--verify=crc32c",
            "--do_verify=1",
            "--verify_fatal=1",
            &format!("--filename={}", d.fio_filename(t, 1)),
        ]),
        Duration::from_secs(300),
    );
    assert!(
        out.ok() && out.stdout.contains("err= 0"),
        "{}{}",
        out.stdout,
        out.stderr
    );
}

#[test]
fn direct_io_file_lun() {
    let d = Daemon::start(
        "aio",
        &[TargetSpec::new(vec![LunSpec::new(64 * MIB)
            .with("bs-type aio")
            .with("block-size 4096")])],
    );
    fio_verify(&d, 0, "32m", "4k-256k");
}

#[test]
fn block_device_lun_through_a_loop_device() {
    let dir = TempDir::new("loop");
    let img = dir.0.join("dev.img");
    std::fs::File::create(&img)
        .unwrap()
        .set_len(48 * MIB)
        .unwrap();
    let out = run(
        Command::new("losetup").arg("--show").arg("-f").arg(&img),
        Duration::from_secs(20),
    );
    assert!(
        out.ok(),
        "losetup (root, loop devices) is needed: {}",
        out.stderr
    );
    let dev = out.stdout.trim().to_string();
    struct Detach(String);
    impl Drop for Detach {
        fn drop(&mut self) {
            let _ = Command::new("losetup").arg("-d").arg(&self.0).status();
        }
    }
    let _detach = Detach(dev.clone());
    let targets = [TargetSpec::new(vec![LunSpec::new(MIB)]).with(&format!("backing-store {dev}"))];
    let d = Daemon::start("blockdev", &targets);
    // LUN 2 is the block device: its size comes from the device, not a file length.
    let out = run(
        Command::new("iscsi-readcapacity16").arg(d.url(0, 2)),
        Duration::from_secs(20),
    );
    assert!(out.ok(), "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains(&format!("Total size:{}", 48 * MIB)),
        "{}",
        out.stdout
    );
    let out = run(
        Command::new(fio_path()).current_dir(&d.dir.0).args([
            "--name=v",
            "--ioengine=libiscsi",
            "--rw=randwrite",
            "--bs=4k-128k",
            "--iodepth=16",
            "--size=32m",
            "--verify=crc32c",
            "--do_verify=1",
            "--verify_fatal=1",
            &format!("--filename={}", d.fio_filename(0, 2)),
        ]),
        Duration::from_secs(300),
    );
    assert!(
        out.ok() && out.stdout.contains("err= 0"),
        "{}{}",
        out.stdout,
        out.stderr
    );
}

#[test]
fn null_lun_reads_zeros_and_takes_writes() {
    let d = Daemon::start(
        "null",
        &[TargetSpec::new(vec![LunSpec::new(MIB)
            .with("bs-type null")
            .with("size 4G")])],
    );
    let out = run(
        Command::new("iscsi-readcapacity16").arg(d.url(0, 1)),
        Duration::from_secs(20),
    );
    assert!(out.ok(), "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains(&format!("Total size:{}", 4u64 << 30)),
        "{}",
        out.stdout
    );
    let out = run(
        Command::new(fio_path()).current_dir(&d.dir.0).args([
            "--name=n",
            "--ioengine=libiscsi",
            "--rw=randrw",
            "--bs=64k",
            "--iodepth=16",
            "--size=256m",
            &format!("--filename={}", d.fio_filename(0, 1)),
        ]),
        Duration::from_secs(120),
    );
    assert!(
        out.ok() && out.stdout.contains("err= 0"),
        "{}{}",
        out.stdout,
        out.stderr
    );
}
