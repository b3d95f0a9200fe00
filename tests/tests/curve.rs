//! Curve LUNs (`bs-type curve`) end to end: fio with crc32c verification at iodepth 128 over
//! the simulated cluster (reordered completions) and over a fake libcbd compiled here with
//! `cc` (the real dlopen and callback path); an injected volume error reaching the initiator
//! as MEDIUM ERROR on that command alone; and a Curve LUN added through tgtadm.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use gw_tests::raw::{LoginOptions, RawSession};
use gw_tests::{run, Daemon, LunSpec, TargetSpec, TempDir};

const MIB: u64 = 1 << 20;

/// fio: mixed sizes at iodepth 128, every block verified with crc32c.
const VERIFY: [&str; 6] = [
    "--rw=randwrite",
    "--bsrange=512-1m",
    "--iodepth=128",
    "--verify=crc32c",
    "--do_verify=1",
    "--verify_fatal=1",
];

fn curve_lun(spec: &str, bsopts: &str) -> LunSpec {
    LunSpec::on_store(spec)
        .with("bs-type curve")
        .with(&format!("bsopts \"{bsopts}\""))
}

fn fio_verify(d: &Daemon, size: &str) {
    let size = format!("--size={size}");
    let mut args = VERIFY.to_vec();
    args.push(&size);
    let out = d.fio(0, 1, &args);
    let text = format!("{}{}", out.stdout, out.stderr);
    assert!(
        !text.contains("verify: bad"),
        "verification failure\n{text}"
    );
    // Both phases moved data: the writes, then the verifying reads.
    assert!(
        text.contains("WRITE: bw=") && text.contains("READ: bw="),
        "fio wrote and read back\n{text}"
    );
}

#[test]
fn fio_verify_on_the_simulated_cluster_with_reordered_completions() {
    let vols = TempDir::new("curve-sim-vols");
    let d = Daemon::start(
        "curve-sim",
        &[TargetSpec::new(vec![curve_lun(
            "cbd:pool//fio_test_",
            &format!(
                "backend=sim;dir={};size=160M;latency_us=50;reorder_us=400;threads=3",
                vols.0.display()
            ),
        )])],
    );
    fio_verify(&d, "128m");
    assert!(
        vols.0.join("fio_test_.img").exists(),
        "the simulated volume lives in its file"
    );
}

/// Compiles tests/fake-libcbd into `dir`.
fn build_fake_libcbd(dir: &Path) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("fake-libcbd/fake_libcbd.c");
    let lib = dir.join("libcbd-fake.so");
    let out = run(
        Command::new("cc")
            .args(["-shared", "-fPIC", "-O2", "-pthread", "-o"])
            .arg(&lib)
            .arg(&src),
        Duration::from_secs(120),
    );
    assert!(
        out.ok(),
        "compiling the fake libcbd needs a C compiler (apt-get install gcc): {}",
        out.stderr
    );
    lib
}

/// A fake cluster: the library, its client.conf and a volume file of `size` bytes.
fn fake_cluster(tag: &str, size: u64, extra_conf: &str) -> (TempDir, PathBuf, PathBuf) {
    let dir = TempDir::new(tag);
    let lib = build_fake_libcbd(&dir.0);
    std::fs::File::create(dir.0.join("vol_test_"))
        .unwrap()
        .set_len(size)
        .unwrap();
    let conf = dir.0.join("client.conf");
    std::fs::write(
        &conf,
        format!(
            "fake.dir={}\nfake.delay_us=300\n{extra_conf}",
            dir.0.display()
        ),
    )
    .unwrap();
    (dir, lib, conf)
}

#[test]
fn fio_verify_through_a_fake_libcbd_loaded_at_run_time() {
    let (_cluster, lib, conf) = fake_cluster("curve-fake", 160 * MIB, "");
    let d = Daemon::start(
        "curve-fake",
        &[TargetSpec::new(vec![curve_lun(
            "cbd:pool//vol_test_",
            &format!(
                "backend=libcbd;lib={};conf={}",
                lib.display(),
                conf.display()
            ),
        )])],
    );
    fio_verify(&d, "128m");
}

fn read10(lba: u32, blocks: u16) -> [u8; 10] {
    let mut c = [0x28, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    c[2..6].copy_from_slice(&lba.to_be_bytes());
    c[7..9].copy_from_slice(&blocks.to_be_bytes());
    c
}

fn write10(lba: u32, blocks: u16) -> [u8; 10] {
    let mut c = read10(lba, blocks);
    c[0] = 0x2a;
    c
}

/// Sense key of fixed-format sense data.
fn sense_key(sense: &[u8]) -> u8 {
    sense.get(2).map_or(0xff, |b| b & 0x0f)
}

fn settle(s: &mut RawSession) {
    for _ in 0..4 {
        if s.scsi(1, &[0; 6], &[], 0).unwrap().status == 0 {
            return;
        }
    }
    panic!("TEST UNIT READY never succeeded");
}

/// The volume fails I/O at one byte; the initiator gets MEDIUM ERROR for the commands that
/// touch it and nothing else changes: the same session goes on reading and writing.
fn injected_error_is_medium_error_on_that_command_only(d: &Daemon, bad_lba: u32) {
    let mut s = RawSession::login(d.portal, &d.targets[0], &LoginOptions::default()).unwrap();
    settle(&mut s);
    let data: Vec<u8> = (0..8192u32).map(|i| (i * 7) as u8).collect();
    let w = s.scsi(1, &write10(0, 16), &data, 0).unwrap();
    assert_eq!(w.status, 0, "write before the bad block");
    let bad = s.scsi(1, &read10(bad_lba, 8), &[], 4096).unwrap();
    assert_eq!(
        bad.status, 0x02,
        "CHECK CONDITION for the read of the bad block"
    );
    assert_eq!(
        sense_key(&bad.sense),
        0x03,
        "MEDIUM ERROR: {:02x?}",
        bad.sense
    );
    let bad_write = s.scsi(1, &write10(bad_lba, 1), &data[..512], 0).unwrap();
    assert_eq!(
        bad_write.status, 0x02,
        "the write of the bad block fails too"
    );
    let good = s.scsi(1, &read10(0, 16), &[], 8192).unwrap();
    assert_eq!(good.status, 0, "the session still works");
    assert_eq!(good.data, data, "and the data is intact");
}

#[test]
fn injected_error_on_the_simulated_cluster() {
    let vols = TempDir::new("curve-err-vols");
    // Byte 1 MiB is LBA 2048 of a 512-byte-block LUN.
    let d = Daemon::start(
        "curve-err",
        &[TargetSpec::new(vec![curve_lun(
            "cbd:pool//err_test_",
            &format!(
                "backend=sim;dir={};size=8M;error_at=1048576",
                vols.0.display()
            ),
        )])],
    );
    injected_error_is_medium_error_on_that_command_only(&d, 2048);
}

#[test]
fn injected_error_through_the_fake_libcbd() {
    let (_cluster, lib, conf) = fake_cluster("curve-fake-err", 8 * MIB, "fake.error_at=1048576\n");
    let d = Daemon::start(
        "curve-fake-err",
        &[TargetSpec::new(vec![curve_lun(
            "cbd:pool//vol_test_",
            &format!(
                "backend=libcbd;lib={};conf={}",
                lib.display(),
                conf.display()
            ),
        )])],
    );
    injected_error_is_medium_error_on_that_command_only(&d, 2048);
}

#[test]
fn curve_lun_added_and_shown_through_tgtadm() {
    let vols = TempDir::new("curve-adm-vols");
    let d = Daemon::start("curve-adm", &[TargetSpec::new(vec![LunSpec::new(8 * MIB)])]);
    let bsopts = format!("backend=sim;dir={};size=16M;block=4096", vols.0.display());
    d.tgtadm(&[
        "--op",
        "new",
        "--mode",
        "logicalunit",
        "--tid",
        "1",
        "--lun",
        "2",
        "-b",
        "cbd:pool//adm_test_",
        "--bstype",
        "curve",
        "--bsopts",
        &bsopts,
        "--blocksize",
        "4096",
    ]);
    let show = d.tgtadm(&["--op", "show", "--mode", "target"]);
    assert!(show.contains("cbd:pool//adm_test_"), "{show}");
    assert!(show.contains("curve"), "{show}");
    let out = d.fio(
        0,
        2,
        &[
            "--rw=randwrite",
            "--bs=4k-64k",
            "--iodepth=32",
            "--size=8m",
            "--verify=crc32c",
            "--do_verify=1",
            "--verify_fatal=1",
        ],
    );
    assert!(out.ok());
}

#[test]
fn a_hung_volume_stalls_only_its_own_commands() {
    let vols = TempDir::new("curve-hang-vols");
    let mut d = Daemon::start(
        "curve-hang",
        &[TargetSpec::new(vec![
            curve_lun(
                "cbd:pool//hang_test_",
                &format!("backend=sim;dir={};size=8M;hang_at=0", vols.0.display()),
            ),
            LunSpec::new(16 * MIB),
        ])],
    );
    // Session A reads the block that never answers, and waits.
    let mut a = RawSession::login(d.portal, &d.targets[0], &LoginOptions::default()).unwrap();
    settle(&mut a);
    let (tx, rx) = std::sync::mpsc::channel();
    let hung = std::thread::spawn(move || {
        let r = a.scsi(1, &read10(0, 1), &[], 512);
        let _ = tx.send(());
        r
    });
    // Meanwhile the same target thread serves everything else: the file LUN under fio, and
    // the Curve LUN away from the hung block, from another session.
    let isid = [0x80, 0, 0, 0, 0x12, 0x99];
    let o = LoginOptions {
        isid,
        ..Default::default()
    };
    let mut b = RawSession::login(d.portal, &d.targets[0], &o).unwrap();
    settle(&mut b);
    let data = vec![0x5a; 4096];
    assert_eq!(b.scsi(1, &write10(64, 8), &data, 0).unwrap().status, 0);
    let back = b.scsi(1, &read10(64, 8), &[], 4096).unwrap();
    assert_eq!((back.status, back.data), (0, data));
    d.fio(
        0,
        2,
        &["--rw=randrw", "--bs=4k", "--iodepth=16", "--size=8m"],
    );
    assert!(
        rx.try_recv().is_err(),
        "the read of the hung block must still be waiting"
    );
    // Curve has no cancel: the hung request pins its task until the process ends.
    d.kill9();
    let _ = hung.join();
}

/// libiscsi's conformance suites on a Curve LUN over the simulated cluster, with delayed and
/// reordered completions: the data path through the sink gives the same answers as a file.
#[test]
fn libiscsi_suites_on_a_curve_lun() {
    let mut failed = Vec::new();
    for suite in [
        "ALL.Read10",
        "ALL.Read16",
        "ALL.Write10",
        "ALL.Write16",
        "ALL.Verify10",
        "ALL.WriteVerify10",
        "ALL.CompareAndWrite",
        "ALL.Mandatory",
        "iSCSI.iSCSIResiduals",
        "iSCSI.iSCSITMF",
    ] {
        let vols = TempDir::new("curve-cu-vols");
        let tag = format!("curve-cu-{}", suite.replace('.', "-").to_lowercase());
        let d = Daemon::start(
            &tag,
            &[TargetSpec::new(vec![curve_lun(
                "cbd:pool//cu_test_",
                &format!(
                    "backend=sim;dir={};size=64M;latency_us=20;reorder_us=100",
                    vols.0.display()
                ),
            )])],
        );
        let r = gw_tests::iscsi_test_cu(
            &d.url(0, 1),
            suite,
            &[
                "-i",
                "iqn.2007-10.com.github:sahlberg:libiscsi:iscsi-test",
                "-I",
                "iqn.2007-10.com.github:sahlberg:libiscsi:iscsi-test-2",
            ],
        );
        println!(
            "{suite:<28} run {:>3} passed {:>3} failed {:>3}",
            r.run, r.passed, r.failed
        );
        if r.failed > 0 || r.run == 0 {
            failed.push(format!("{suite}: {:?}\n{}", r.failures, r.output));
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}
