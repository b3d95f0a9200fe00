//! Fuzz harnesses: each takes arbitrary bytes and drives one parser of bytes that come off the
//! wire, the way the daemon does. The cargo-fuzz targets in `tests/fuzz` call these (with
//! libFuzzer, on nightly), and the regression test replays every input ever found to crash
//! (`tests/fuzz/regressions/<target>/`) on stable, so a fixed crash stays fixed.
//!
//! A harness must never panic on any input: a panic is the bug the fuzzer reports.

use gateway::iscsi::chap::{Account, Accounts};
use gateway::iscsi::login::{Login, LoginRefusal, LoginStep, ResolvedTarget, TargetDirectory};
use gateway::iscsi::params::{negotiate, SessionParams, TargetLimits};
use gateway::iscsi::pdu::{
    DataOut, LoginRequest, LogoutRequest, NopOut, Opcode, ScsiCommand, TaskMgmtRequest, TextRequest,
};
use gateway::iscsi::reader::{Digests, PduReader};
use gateway::iscsi::text;

/// A harness: arbitrary bytes in, no panic out.
pub type Harness = fn(&[u8]);

/// The harnesses by name, as the fuzz targets and regression directories are named.
pub const TARGETS: &[(&str, Harness)] = &[
    ("pdu", pdu),
    ("text", text_keys),
    ("login", login),
    ("scsi", scsi),
];

/// Bytes as they arrive on a connection: split at points the input chooses, decoded into
/// PDUs, and each PDU's header parsed as its opcode says.
pub fn pdu(data: &[u8]) {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let mut reader = PduReader::new(8192 << (flags & 3));
    reader.set_digests(Digests {
        header: flags & 0x04 != 0,
        data: flags & 0x08 != 0,
    });
    let chunk = usize::from(flags >> 4) * 7 + 1;
    for piece in rest.chunks(chunk) {
        reader.push(piece);
        loop {
            match reader.next_pdu() {
                Ok(Some(p)) => {
                    let b = &p.bhs;
                    match b.opcode() {
                        Some(Opcode::ScsiCommand) => drop(ScsiCommand::parse(b)),
                        Some(Opcode::DataOut) => drop(DataOut::parse(b)),
                        Some(Opcode::NopOut) => drop(NopOut::parse(b)),
                        Some(Opcode::TextReq) => drop(TextRequest::parse(b)),
                        Some(Opcode::LogoutReq) => drop(LogoutRequest::parse(b)),
                        Some(Opcode::TaskMgmtReq) => drop(TaskMgmtRequest::parse(b)),
                        Some(Opcode::LoginReq) => drop(LoginRequest::parse(b)),
                        _ => {}
                    }
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
}

/// A text segment (login or Text request): parsed into keys, each negotiated.
pub fn text_keys(data: &[u8]) {
    let Ok(keys) = text::parse(data) else {
        return;
    };
    let limits = TargetLimits::default();
    let mut params = SessionParams::defaults(&limits);
    for (k, v) in &keys {
        let _ = negotiate(k, v, &limits, &mut params);
    }
}

struct Directory;

impl TargetDirectory for Directory {
    fn resolve(&self, target: &str, _initiator: &str) -> Result<ResolvedTarget, LoginRefusal> {
        let accounts = if target.ends_with("chap") {
            Accounts {
                incoming: vec![Account {
                    user: "user".into(),
                    secret: "secretsecret".into(),
                }],
                outgoing: Some(Account {
                    user: "target".into(),
                    secret: "targetsecret".into(),
                }),
            }
        } else {
            Accounts::default()
        };
        if target.starts_with("iqn.") {
            Ok(ResolvedTarget {
                tid: 1,
                tpgt: 1,
                alias: None,
                limits: TargetLimits::default(),
                accounts,
            })
        } else {
            Err(LoginRefusal::NotFound)
        }
    }

    fn discovery_accounts(&self) -> Accounts {
        Accounts::default()
    }
}

/// A login: Login Request PDUs decoded from the input, fed to the login state machine until
/// it finishes or fails.
pub fn login(data: &[u8]) {
    let mut reader = PduReader::new(8192);
    reader.push(data);
    let mut login = Login::new(TargetLimits::default(), 1);
    while let Ok(Some(p)) = reader.next_pdu() {
        match login.on_pdu(&p, &Directory) {
            LoginStep::Continue { .. } => {}
            LoginStep::Ready(_) => {
                let _ = login.finish(1);
                return;
            }
            LoginStep::Fail { .. } => return,
        }
    }
}

/// SCSI commands on a disk LU: CDBs and parameter lists (MODE SELECT, PERSISTENT RESERVE
/// OUT, UNMAP, ...) from the input, from two nexuses, with backing-store outcomes the input
/// chooses.
pub fn scsi(data: &[u8]) {
    let mut t = gw_scsi::Target::new(gw_scsi::TargetConfig {
        tid: 1,
        target_name: "iqn.2026-11.io.gateway:fuzz".into(),
        relative_port_id: 1,
        port_group_id: 1,
    });
    let lu = gw_scsi::LuConfig {
        lun: 1,
        block_size: 512,
        blocks: 2048,
        vendor_id: "FUZZ".into(),
        product_id: "DISK".into(),
        product_rev: "0001".into(),
        serial: "fuzz1".into(),
        device_id: None,
        naa_id: 1,
        readonly: false,
        removable: true,
        write_cache: true,
        thin: true,
        optimal_xfer_blocks: 128,
        max_xfer_blocks: 2048,
    };
    if t.add_lu(lu).is_err() {
        return;
    }
    for n in 0..2u64 {
        t.nexus_added(
            gw_scsi::NexusId(n),
            &gw_scsi::iscsi_initiator_port(&format!("iqn.x:{n}"), [0, 0, 0, 0, 0, n as u8]),
        );
    }
    let mut rest = data;
    // Each command: nexus/LUN/outcome byte, CDB length, CDB, 2-byte data-out length, data.
    while rest.len() >= 2 {
        let (head, cdb_len) = (rest[0], usize::from(rest[1] % 17));
        rest = &rest[2..];
        if rest.len() < cdb_len + 2 {
            return;
        }
        let (cdb, after) = rest.split_at(cdb_len);
        let n = usize::from(u16::from_be_bytes([after[0], after[1]]));
        let after = &after[2..];
        let (data_out, next) = after.split_at(n.min(after.len()));
        rest = next;
        let nexus = gw_scsi::NexusId(u64::from(head & 1));
        let lun = u64::from((head >> 1) & 1);
        if cdb.is_empty() {
            continue;
        }
        let _ = t.data_out_len(lun, cdb);
        let action = t.execute(&gw_scsi::Command {
            nexus,
            lun,
            cdb,
            data_out,
        });
        if !matches!(action, gw_scsi::Action::Respond(_)) {
            let outcome = match head >> 6 {
                0 => gw_scsi::IoOutcome::Ok,
                1 => gw_scsi::IoOutcome::Error(5),
                2 => gw_scsi::IoOutcome::Error(28),
                _ => gw_scsi::IoOutcome::Miscompare { at: 3 },
            };
            let _ = t.complete(lun, outcome);
        }
        if head & 0x20 != 0 {
            let _ = t.take_dirty_reservations();
            if let Some(state) = t.reservation_state(1) {
                let _ = t.restore_reservations(1, &state);
            }
        }
        if head & 0x10 != 0 {
            t.reset(Some(1));
        }
    }
}

/// Replays every saved input of every target under `dir` (`<dir>/<target>/*`); returns how
/// many ran.
pub fn replay_all(dir: &std::path::Path) -> usize {
    let mut ran = 0;
    for (name, harness) in TARGETS {
        let Ok(entries) = std::fs::read_dir(dir.join(name)) else {
            continue;
        };
        for e in entries.flatten() {
            if let Ok(bytes) = std::fs::read(e.path()) {
                harness(&bytes);
                ran += 1;
            }
        }
    }
    ran
}
