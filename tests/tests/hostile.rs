//! Broken and hostile traffic gets the RFC's answer (Reject, login failure, a dropped
//! connection) while another session keeps doing verified I/O and the daemon stays up.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use gateway::iscsi::pdu::{self, Bhs, DataOut, LoginRequest};
use gateway::iscsi::text;
use gw_tests::raw::{LoginOptions, RawSession};
use gw_tests::{Daemon, LunSpec, TargetSpec};

const MIB: u64 = 1 << 20;

fn daemon(tag: &str) -> Daemon {
    Daemon::start_full(
        tag,
        &[TargetSpec::new(vec![LunSpec::new(16 * MIB)])],
        &[],
        &["--login-timeout", "1"],
    )
}

fn session(d: &Daemon, isid_tail: u8) -> RawSession {
    let o = LoginOptions {
        isid: [0x80, 0, 0, 0, 0x55, isid_tail],
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

/// Runs `body` while fio does verified random writes on another part of the same LU (its
/// own session), and fails unless fio ends with no error and no mismatch.
fn beside_fio_verify(d: &Daemon, body: impl FnOnce()) {
    std::thread::scope(|scope| {
        let fio = scope.spawn(|| {
            d.fio(
                0,
                1,
                &[
                    "--rw=randwrite",
                    "--bs=4k",
                    "--iodepth=8",
                    "--offset=1m",
                    "--size=8m",
                    "--verify=crc32c",
                    "--verify_fatal=1",
                    "--runtime=6",
                    "--time_based",
                ],
            )
        });
        body();
        let out = fio.join().expect("fio thread");
        assert!(out.stdout.contains("err= 0"), "{}", out.stdout);
    });
}

/// A write and read-back on a healthy session: it must keep working through everything.
fn still_serving(good: &mut RawSession, round: u8) {
    let data: Vec<u8> = (0..8192).map(|i| (i as u8) ^ round).collect();
    let mut w = [0x2a, 0, 0, 0, 0, 0x40, 0, 0, 16, 0];
    assert_eq!(good.scsi(1, &w, &data, 0).unwrap().status, 0);
    w[0] = 0x28;
    assert_eq!(good.scsi(1, &w, &[], 8192).unwrap().data, data);
}

/// Whether the peer closed the connection within `within`.
fn closed_within(sock: &mut TcpStream, within: Duration) -> bool {
    sock.set_read_timeout(Some(within)).unwrap();
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        match sock.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue, // a login reject or reject PDU may come first
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return start.elapsed() < within,
        }
    }
}

fn login_request(data_len: u32) -> Bhs {
    LoginRequest {
        transit: true,
        continue_: false,
        csg: 1,
        nsg: 3,
        version_max: 0,
        version_min: 0,
        isid: [0x80, 0, 0, 0, 1, 1],
        tsih: 0,
        itt: 0,
        cid: 0,
        cmdsn: 1,
        exp_statsn: 0,
    }
    .encode(data_len)
}

#[test]
fn broken_logins_are_refused_or_dropped() {
    let d = daemon("hostile-login");
    beside_fio_verify(&d, || {
        let mut good = session(&d, 1);

        // Half a PDU, then silence: the login deadline closes it.
        let mut s = TcpStream::connect(d.portal).unwrap();
        s.write_all(&[0x43, 0x87, 0, 0, 0, 0, 0, 10]).unwrap();
        assert!(
            closed_within(&mut s, Duration::from_secs(10)),
            "stalled login closed"
        );
        still_serving(&mut good, 1);

        // A 64 KiB value, and thousands of keys.
        for body in [
            {
                let mut t = Vec::new();
                text::push(&mut t, "InitiatorName", &"x".repeat(64 << 10));
                t
            },
            (0..4000)
                .flat_map(|i| format!("X-k{i}=v\0").into_bytes())
                .collect(),
        ] {
            let mut s = TcpStream::connect(d.portal).unwrap();
            let bhs = login_request(body.len() as u32);
            let mut wire = bhs.0.to_vec();
            wire.extend_from_slice(&body);
            wire.resize(
                wire.len() + gateway::iscsi::digest::pad_bytes(body.len()),
                0,
            );
            let _ = s.write_all(&wire);
            assert!(
                closed_within(&mut s, Duration::from_secs(10)),
                "oversized login text refused"
            );
        }
        still_serving(&mut good, 2);

        // A full-feature PDU before any login.
        let mut s = TcpStream::connect(d.portal).unwrap();
        let mut b = Bhs::default();
        b.0[0] = 0x01;
        s.write_all(&b.0).unwrap();
        assert!(
            closed_within(&mut s, Duration::from_secs(10)),
            "SCSI command during login refused"
        );
        still_serving(&mut good, 3);
    });
}

#[test]
fn broken_full_feature_pdus_get_rejects_or_drops() {
    let d = daemon("hostile-ff");
    beside_fio_verify(&d, || {
        let mut good = session(&d, 1);

        // An opcode no initiator may send: Reject (command not supported), session goes on.
        let mut bad = session(&d, 2);
        let mut b = Bhs::default();
        b.0[0] = 0x1c;
        b.0[1] = 0x80;
        bad.send(&b, &[]).unwrap();
        let r = bad.recv().unwrap();
        assert_eq!(
            (r.bhs.raw_opcode(), r.bhs.0[2]),
            (0x3f, pdu::REJECT_COMMAND_NOT_SUPPORTED)
        );
        assert_eq!(bad.scsi(1, &[0; 6], &[], 0).unwrap().status, 0);

        // Data-Out for a task that does not exist: Reject, session goes on.
        let d_out = DataOut {
            final_: true,
            lun: pdu::lun_to_wire(1),
            itt: 0xdead,
            ttt: 0xffff_ffff,
            exp_statsn: bad.exp_statsn(),
            datasn: 0,
            buffer_offset: 0,
        };
        bad.send(&d_out.encode(512), &[0u8; 512]).unwrap();
        let r = bad.recv().unwrap();
        assert_eq!(
            (r.bhs.raw_opcode(), r.bhs.0[2]),
            (0x3f, pdu::REJECT_INVALID_PDU_FIELD)
        );
        assert_eq!(bad.scsi(1, &[0; 6], &[], 0).unwrap().status, 0);
        still_serving(&mut good, 1);

        // A data segment longer than the target declared: the connection is dropped.
        let mut huge = Bhs::default();
        huge.0[0] = 0x00;
        huge.0[1] = 0x80;
        huge.set_data_segment_len(8 << 20);
        bad.send_raw(&huge.0).unwrap();
        bad.send_raw(&vec![0u8; 1 << 20]).ok();
        assert!(
            bad.recv().is_err(),
            "oversized data segment ends the connection"
        );
        still_serving(&mut good, 2);

        // Data-Out past the command's expected length: the connection is dropped.
        let mut bad = session(&d, 3);
        let itt = 0x77;
        let mut cmd = pdu::ScsiCommand {
            immediate: false,
            final_: false,
            read: false,
            write: true,
            attr: 1,
            lun: pdu::lun_to_wire(1),
            itt,
            expected_len: 1024,
            cmdsn: bad.take_cmdsn(),
            exp_statsn: bad.exp_statsn(),
            cdb: [0x2a, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0],
        }
        .encode();
        cmd.set_data_segment_len(0);
        bad.send(&cmd, &[]).unwrap();
        let past = DataOut {
            final_: true,
            lun: pdu::lun_to_wire(1),
            itt,
            ttt: 0xffff_ffff,
            exp_statsn: bad.exp_statsn(),
            datasn: 0,
            buffer_offset: 4096,
        };
        bad.send(&past.encode(512), &[0u8; 512]).unwrap();
        assert!(
            bad.recv().is_err(),
            "Data-Out outside the buffer ends the connection"
        );
        still_serving(&mut good, 3);

        // A connection that drops mid-PDU frees its session: the same ISID logs in again.
        let mut bad = session(&d, 4);
        bad.send_raw(&[0x01, 0x80, 0, 0]).unwrap();
        drop(bad);
        let mut again = session(&d, 4);
        still_serving(&mut again, 4);
        still_serving(&mut good, 5);
    });
}

/// A peer that sends part of a PDU and then stalls, or dribbles the rest a byte at a time,
/// never finishes a PDU, so it cannot answer a NOP-In ping: it is dropped after `nop_count`
/// pings and its session freed, while another session's I/O goes on.
#[test]
fn a_pdu_stalled_half_way_is_dropped() {
    let d = Daemon::start_full(
        "hostile-stall",
        &[TargetSpec::new(vec![LunSpec::new(16 * MIB)])],
        &[],
        &["--nop-interval", "1", "--nop-count", "2"],
    );
    let mut good = session(&d, 1);
    let mut stalled = session(&d, 2);
    let mut dribbler = session(&d, 3);

    // Half a SCSI Command header, then silence with the socket open.
    let mut cmd = Bhs::default();
    cmd.0[0] = 0x01;
    cmd.0[1] = 0x80;
    stalled.send_raw(&cmd.0[..24]).unwrap();
    let stalled = std::thread::spawn(move || stalled.wait_closed(Duration::from_secs(15)));

    // A NOP-Out announcing 4 KiB of ping data, sent a byte every 200 ms.
    let mut nop = Bhs::default();
    nop.0[0] = 0x40;
    nop.0[1] = 0x80;
    nop.set_data_segment_len(4096);
    dribbler.send_raw(&nop.0).unwrap();
    let dribbler = std::thread::spawn(move || {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(15) {
            if dribbler.send_raw(&[0]).is_err() {
                return Ok(start.elapsed());
            }
            match dribbler.recv_within(Duration::from_millis(200)) {
                Err(_) => return Ok(start.elapsed()),
                Ok(_) => continue, // pings, unanswered
            }
        }
        Err("a dribbling peer was never dropped".to_string())
    });

    let mut round = 0u8;
    while !(stalled.is_finished() && dribbler.is_finished()) {
        still_serving(&mut good, round);
        round = round.wrapping_add(1);
    }
    for (what, took) in [
        ("stalled", stalled.join().unwrap()),
        ("dribbling", dribbler.join().unwrap()),
    ] {
        let took = took.unwrap_or_else(|e| panic!("{what} peer: {e}"));
        assert!(
            took < Duration::from_secs(8),
            "{what} peer dropped after {took:?}"
        );
    }
    // Their sessions are gone (the management thread hears of it by message, a moment
    // after the sockets close), and the same ISIDs log in afresh and serve.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let shown = d.tgtadm(&["--lld", "iscsi", "--op", "show", "--mode", "target"]);
        if shown.matches("I_T nexus: ").count() == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "sessions not freed:\n{shown}");
        std::thread::sleep(Duration::from_millis(50));
    }
    for tail in [2, 3] {
        let mut again = session(&d, tail);
        still_serving(&mut again, tail);
    }
    still_serving(&mut good, 0xff);
}
