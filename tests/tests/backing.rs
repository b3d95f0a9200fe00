//! Backing stores other than buffered files: O_DIRECT files, block devices, null.

use std::process::Command;
use std::time::Duration;

use gw_tests::{run, Daemon, LunSpec, TargetSpec, TempDir};

const MIB: u64 = 1 << 20;

/// Random writes verified with crc32c.
const VERIFY: [&str; 5] = [
    "--rw=randwrite",
    "--iodepth=16",
    "--verify=crc32c",
    "--do_verify=1",
    "--verify_fatal=1",
];

fn fio_verify(d: &Daemon, t: usize, lun: u64, size: &str, bs: &str) {
    let (size, bs) = (format!("--size={size}"), format!("--bs={bs}"));
    let mut args = VERIFY.to_vec();
    args.extend([size.as_str(), bs.as_str()]);
    d.fio(t, lun, &args);
}

#[test]
fn direct_io_file_lun() {
    let d = Daemon::start(
        "aio",
        &[TargetSpec::new(vec![LunSpec::new(64 * MIB)
            .with("bs-type aio")
            .with("block-size 4096")])],
    );
    fio_verify(&d, 0, 1, "32m", "4k-256k");
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
    fio_verify(&d, 0, 2, "32m", "4k-128k");
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
    d.fio(
        0,
        1,
        &["--rw=randrw", "--bs=64k", "--iodepth=16", "--size=256m"],
    );
}

/// A mounted block device is refused, as tgt-admin refuses it, unless `allow-in-use yes`.
#[test]
fn a_device_in_use_is_refused_unless_allowed() {
    let dir = TempDir::new("inuse");
    let img = dir.0.join("dev.img");
    std::fs::File::create(&img)
        .unwrap()
        .set_len(32 * MIB)
        .unwrap();
    let out = run(
        Command::new("losetup").arg("--show").arg("-f").arg(&img),
        Duration::from_secs(20),
    );
    assert!(out.ok(), "losetup: {}", out.stderr);
    let dev = out.stdout.trim().to_string();
    let mnt = dir.0.join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    struct Cleanup(String, std::path::PathBuf);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.1).status();
            let _ = Command::new("losetup").arg("-d").arg(&self.0).status();
        }
    }
    let _cleanup = Cleanup(dev.clone(), mnt.clone());
    let mkfs = run(
        Command::new("mkfs.ext4").args(["-q", "-F", &dev]),
        Duration::from_secs(60),
    );
    assert!(mkfs.ok(), "mkfs.ext4: {}", mkfs.stderr);
    let mount = run(
        Command::new("mount").arg(&dev).arg(&mnt),
        Duration::from_secs(30),
    );
    assert!(mount.ok(), "mount: {}", mount.stderr);
    let check = |extra: &str| {
        let conf = dir.0.join("t.conf");
        std::fs::write(
            &conf,
            format!("<target iqn.2026-11.io.gateway.test:inuse>\n    <backing-store {dev}>\n{extra}    </backing-store>\n</target>\n"),
        )
        .unwrap();
        run(
            Command::new(gw_tests::gatewayd_path())
                .args(["--check-config", "--config"])
                .arg(&conf),
            Duration::from_secs(30),
        )
    };
    let refused = check("");
    assert!(!refused.ok());
    assert!(
        refused.stderr.contains("is in use") && refused.stderr.contains("allow-in-use yes"),
        "{}",
        refused.stderr
    );
    let allowed = check("        allow-in-use yes\n");
    assert!(allowed.ok(), "{}{}", allowed.stdout, allowed.stderr);
}
