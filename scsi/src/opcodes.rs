//! REPORT SUPPORTED OPERATION CODES (SPC-4 §6.35): exactly the commands this crate emulates,
//! each with its CDB usage data.

use crate::cdb::{op, u16_at, u32_at};
use crate::reservation::{in_sa, out_sa};
use crate::sanitize;
use crate::sense::Sense;

/// A supported command: opcode, service action (if it has one), CDB usage data (whose length
/// is the CDB length).
pub(crate) struct Supported {
    pub opcode: u8,
    pub service_action: Option<u16>,
    pub usage: &'static [u8],
}

const fn c(opcode: u8, service_action: Option<u16>, usage: &'static [u8]) -> Supported {
    Supported {
        opcode,
        service_action,
        usage,
    }
}

/// Commands of a disk LU.
pub(crate) const DISK: &[Supported] = &[
    c(op::TEST_UNIT_READY, None, &[0x00, 0, 0, 0, 0, 0]),
    c(op::REQUEST_SENSE, None, &[0x03, 0x01, 0, 0, 0xff, 0]),
    c(op::READ_6, None, &[0x08, 0x1f, 0xff, 0xff, 0xff, 0]),
    c(op::WRITE_6, None, &[0x0a, 0x1f, 0xff, 0xff, 0xff, 0]),
    c(op::INQUIRY, None, &[0x12, 0x01, 0xff, 0xff, 0xff, 0]),
    c(op::MODE_SELECT_6, None, &[0x15, 0x11, 0, 0, 0xff, 0]),
    c(op::RESERVE_6, None, &[0x16, 0, 0, 0, 0, 0]),
    c(op::RELEASE_6, None, &[0x17, 0, 0, 0, 0, 0]),
    c(op::MODE_SENSE_6, None, &[0x1a, 0x08, 0xff, 0xff, 0xff, 0]),
    c(op::START_STOP_UNIT, None, &[0x1b, 0x01, 0, 0x0f, 0xf7, 0]),
    c(op::PREVENT_ALLOW, None, &[0x1e, 0, 0, 0, 0x03, 0]),
    c(
        op::READ_CAPACITY_10,
        None,
        &[0x25, 0, 0xff, 0xff, 0xff, 0xff, 0, 0, 0x01, 0],
    ),
    c(
        op::READ_10,
        None,
        &[0x28, 0x18, 0xff, 0xff, 0xff, 0xff, 0, 0xff, 0xff, 0],
    ),
    c(
        op::WRITE_10,
        None,
        &[0x2a, 0x18, 0xff, 0xff, 0xff, 0xff, 0, 0xff, 0xff, 0],
    ),
    c(
        op::VERIFY_10,
        None,
        &[0x2f, 0x12, 0xff, 0xff, 0xff, 0xff, 0, 0xff, 0xff, 0],
    ),
    c(
        op::SYNCHRONIZE_CACHE_10,
        None,
        &[0x35, 0x02, 0xff, 0xff, 0xff, 0xff, 0, 0xff, 0xff, 0],
    ),
    c(
        op::WRITE_SAME_10,
        None,
        &[0x41, 0x18, 0xff, 0xff, 0xff, 0xff, 0, 0xff, 0xff, 0],
    ),
    c(op::UNMAP, None, &[0x42, 0x01, 0, 0, 0, 0, 0, 0xff, 0xff, 0]),
    // SANITIZE (SBC-3 §5.30): OVERWRITE, BLOCK ERASE and EXIT FAILURE MODE; not CRYPTO
    // ERASE, and not IMMED.
    c(
        op::SANITIZE,
        Some(sanitize::sa::OVERWRITE as u16),
        &[0x48, sanitize::sa::OVERWRITE, 0, 0, 0, 0, 0, 0xff, 0xff, 0],
    ),
    c(
        op::SANITIZE,
        Some(sanitize::sa::BLOCK_ERASE as u16),
        &[
            0x48,
            sanitize::sa::BLOCK_ERASE,
            0,
            0,
            0,
            0,
            0,
            0xff,
            0xff,
            0,
        ],
    ),
    c(
        op::SANITIZE,
        Some(sanitize::sa::EXIT_FAILURE_MODE as u16),
        &[
            0x48,
            sanitize::sa::EXIT_FAILURE_MODE,
            0,
            0,
            0,
            0,
            0,
            0xff,
            0xff,
            0,
        ],
    ),
    c(
        op::MODE_SELECT_10,
        None,
        &[0x55, 0x11, 0, 0, 0, 0, 0, 0xff, 0xff, 0],
    ),
    c(
        op::RESERVE_10,
        None,
        &[0x56, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0],
    ),
    c(
        op::RELEASE_10,
        None,
        &[0x57, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0],
    ),
    c(
        op::MODE_SENSE_10,
        None,
        &[0x5a, 0x18, 0xff, 0xff, 0, 0, 0, 0xff, 0xff, 0],
    ),
    c(
        op::PERSISTENT_RESERVE_IN,
        Some(in_sa::READ_KEYS as u16),
        &[0x5e, in_sa::READ_KEYS, 0, 0, 0, 0, 0, 0xff, 0xff, 0],
    ),
    c(
        op::PERSISTENT_RESERVE_IN,
        Some(in_sa::READ_RESERVATION as u16),
        &[0x5e, in_sa::READ_RESERVATION, 0, 0, 0, 0, 0, 0xff, 0xff, 0],
    ),
    c(
        op::PERSISTENT_RESERVE_IN,
        Some(in_sa::REPORT_CAPABILITIES as u16),
        &[
            0x5e,
            in_sa::REPORT_CAPABILITIES,
            0,
            0,
            0,
            0,
            0,
            0xff,
            0xff,
            0,
        ],
    ),
    c(
        op::PERSISTENT_RESERVE_IN,
        Some(in_sa::READ_FULL_STATUS as u16),
        &[0x5e, in_sa::READ_FULL_STATUS, 0, 0, 0, 0, 0, 0xff, 0xff, 0],
    ),
    c(
        op::PERSISTENT_RESERVE_OUT,
        Some(out_sa::REGISTER as u16),
        &[
            0x5f,
            out_sa::REGISTER,
            0xff,
            0,
            0,
            0xff,
            0xff,
            0xff,
            0xff,
            0,
        ],
    ),
    c(
        op::PERSISTENT_RESERVE_OUT,
        Some(out_sa::RESERVE as u16),
        &[0x5f, out_sa::RESERVE, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, 0],
    ),
    c(
        op::PERSISTENT_RESERVE_OUT,
        Some(out_sa::RELEASE as u16),
        &[0x5f, out_sa::RELEASE, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, 0],
    ),
    c(
        op::PERSISTENT_RESERVE_OUT,
        Some(out_sa::CLEAR as u16),
        &[0x5f, out_sa::CLEAR, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, 0],
    ),
    c(
        op::PERSISTENT_RESERVE_OUT,
        Some(out_sa::PREEMPT as u16),
        &[0x5f, out_sa::PREEMPT, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, 0],
    ),
    c(
        op::PERSISTENT_RESERVE_OUT,
        Some(out_sa::PREEMPT_AND_ABORT as u16),
        &[
            0x5f,
            out_sa::PREEMPT_AND_ABORT,
            0xff,
            0,
            0,
            0xff,
            0xff,
            0xff,
            0xff,
            0,
        ],
    ),
    c(
        op::PERSISTENT_RESERVE_OUT,
        Some(out_sa::REGISTER_AND_IGNORE as u16),
        &[
            0x5f,
            out_sa::REGISTER_AND_IGNORE,
            0xff,
            0,
            0,
            0xff,
            0xff,
            0xff,
            0xff,
            0,
        ],
    ),
    c(
        op::PERSISTENT_RESERVE_OUT,
        Some(out_sa::REGISTER_AND_MOVE as u16),
        &[
            0x5f,
            out_sa::REGISTER_AND_MOVE,
            0xff,
            0,
            0,
            0xff,
            0xff,
            0xff,
            0xff,
            0,
        ],
    ),
    c(
        op::READ_16,
        None,
        &[
            0x88, 0x18, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0,
            0,
        ],
    ),
    c(
        op::WRITE_VERIFY_10,
        None,
        &[0x2e, 0x12, 0xff, 0xff, 0xff, 0xff, 0, 0xff, 0xff, 0],
    ),
    c(
        op::PRE_FETCH_10,
        None,
        &[0x34, 0, 0xff, 0xff, 0xff, 0xff, 0, 0xff, 0xff, 0],
    ),
    c(
        op::WRITE_VERIFY_12,
        None,
        &[
            0xae, 0x12, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0,
        ],
    ),
    c(
        op::WRITE_VERIFY_16,
        None,
        &[
            0x8e, 0x12, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0,
            0,
        ],
    ),
    c(
        op::PRE_FETCH_16,
        None,
        &[
            0x90, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0,
        ],
    ),
    c(
        op::COMPARE_AND_WRITE,
        None,
        &[
            0x89, 0x18, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0xff, 0, 0,
        ],
    ),
    c(
        op::WRITE_16,
        None,
        &[
            0x8a, 0x18, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0,
            0,
        ],
    ),
    c(
        op::ORWRITE_16,
        None,
        &[
            0x8b, 0x18, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0,
            0,
        ],
    ),
    c(
        op::READ_DEFECT_DATA_10,
        None,
        &[0x37, 0, 0x1f, 0, 0, 0, 0, 0xff, 0xff, 0],
    ),
    c(
        op::READ_DEFECT_DATA_12,
        None,
        &[0xb7, 0x1f, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0],
    ),
    c(
        op::VERIFY_16,
        None,
        &[
            0x8f, 0x12, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0,
            0,
        ],
    ),
    c(
        op::SYNCHRONIZE_CACHE_16,
        None,
        &[
            0x91, 0x02, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0,
            0,
        ],
    ),
    c(
        op::WRITE_SAME_16,
        None,
        &[
            0x93, 0x19, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0,
            0,
        ],
    ),
    c(
        op::EXTENDED_COPY,
        Some(crate::xcopy::SA_EXTENDED_COPY_LID1 as u16),
        &[
            0x83, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0,
        ],
    ),
    c(
        op::RECEIVE_COPY_RESULTS,
        Some(crate::xcopy::rcr_sa::COPY_STATUS as u16),
        &[
            0x84, 0x00, 0xff, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0,
        ],
    ),
    c(
        op::RECEIVE_COPY_RESULTS,
        Some(crate::xcopy::rcr_sa::OPERATING_PARAMETERS as u16),
        &[
            0x84, 0x03, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0,
        ],
    ),
    c(
        op::RECEIVE_COPY_RESULTS,
        Some(crate::xcopy::rcr_sa::FAILED_SEGMENT_DETAILS as u16),
        &[
            0x84, 0x04, 0xff, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0,
        ],
    ),
    c(
        op::SERVICE_ACTION_IN_16,
        Some(op::SA_GET_LBA_STATUS as u16),
        &[
            0x9e, 0x12, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0,
            0,
        ],
    ),
    c(
        op::SERVICE_ACTION_IN_16,
        Some(op::SA_READ_CAPACITY_16 as u16),
        &[
            0x9e, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0,
        ],
    ),
    c(
        op::REPORT_LUNS,
        None,
        &[0xa0, 0, 0xff, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0],
    ),
    c(
        op::MAINTENANCE_IN,
        Some(op::SA_REPORT_SUPPORTED_OPCODES as u16),
        &[
            0xa3, 0x0c, 0x87, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0,
        ],
    ),
    c(
        op::READ_12,
        None,
        &[
            0xa8, 0x18, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0,
        ],
    ),
    c(
        op::WRITE_12,
        None,
        &[
            0xaa, 0x18, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0,
        ],
    ),
    c(
        op::VERIFY_12,
        None,
        &[
            0xaf, 0x12, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0,
        ],
    ),
];

/// Commands of the LUN 0 controller.
pub(crate) const CONTROLLER: &[Supported] = &[
    c(op::TEST_UNIT_READY, None, &[0x00, 0, 0, 0, 0, 0]),
    c(op::REQUEST_SENSE, None, &[0x03, 0x01, 0, 0, 0xff, 0]),
    c(op::INQUIRY, None, &[0x12, 0x01, 0xff, 0xff, 0xff, 0]),
    c(
        op::REPORT_LUNS,
        None,
        &[0xa0, 0, 0xff, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0],
    ),
    c(
        op::MAINTENANCE_IN,
        Some(op::SA_REPORT_SUPPORTED_OPCODES as u16),
        &[
            0xa3, 0x0c, 0x87, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0,
        ],
    ),
];

/// Whether `table` has `opcode` with any service action.
pub(crate) fn supports_opcode(table: &[Supported], opcode: u8) -> bool {
    table.iter().any(|s| s.opcode == opcode)
}

/// Whether `table` has `opcode` (with `sa`, for commands with service actions).
pub(crate) fn supports(table: &[Supported], opcode: u8, sa: u16) -> bool {
    table
        .iter()
        .any(|s| s.opcode == opcode && s.service_action.is_none_or(|x| x == sa))
}

/// Command timeouts descriptor (SPC-4 §6.35.4): no particular timeouts.
fn timeouts() -> [u8; 12] {
    let mut t = [0u8; 12];
    t[1] = 0x0a;
    t
}

/// The parameter data for a REPORT SUPPORTED OPERATION CODES CDB, leaving out the opcodes
/// in `hidden` (commands this particular LU does not support, e.g. UNMAP on a fully
/// provisioned one).
pub(crate) fn report(table: &[Supported], hidden: &[u8], cdb: &[u8]) -> Result<Vec<u8>, Sense> {
    let visible: Vec<&Supported> = table
        .iter()
        .filter(|s| !hidden.contains(&s.opcode))
        .collect();
    let rctd = cdb[2] & 0x80 != 0;
    let options = cdb[2] & 0x07;
    let req_op = cdb[3];
    let req_sa = u16_at(cdb, 4);
    let alloc = u32_at(cdb, 6) as usize;
    let mut out = Vec::new();
    match options {
        0 => {
            out.extend_from_slice(&[0; 4]);
            for s in &visible {
                out.push(s.opcode);
                out.push(0);
                out.extend_from_slice(&s.service_action.unwrap_or(0).to_be_bytes());
                out.push(0);
                out.push(u8::from(rctd) << 1 | u8::from(s.service_action.is_some()));
                out.extend_from_slice(&(s.usage.len() as u16).to_be_bytes());
                if rctd {
                    out.extend_from_slice(&timeouts());
                }
            }
            let len = (out.len() - 4) as u32;
            out[..4].copy_from_slice(&len.to_be_bytes());
        }
        1..=3 => {
            let found = visible.iter().find(|s| s.opcode == req_op);
            let entry = match (options, found) {
                (1, Some(s)) if s.service_action.is_some() => {
                    return Err(Sense::invalid_cdb_field(2, Some(0)));
                }
                (1, f) => f,
                (2, Some(s)) if s.service_action.is_none() => {
                    return Err(Sense::invalid_cdb_field(2, Some(0)));
                }
                (2, _) | (3, _) => visible
                    .iter()
                    .find(|s| s.opcode == req_op && s.service_action.is_none_or(|x| x == req_sa)),
                _ => None,
            };
            match entry {
                Some(s) => {
                    out.push(0);
                    out.push(u8::from(rctd) << 7 | 0x03);
                    out.extend_from_slice(&(s.usage.len() as u16).to_be_bytes());
                    out.extend_from_slice(s.usage);
                    if rctd {
                        out.extend_from_slice(&timeouts());
                    }
                }
                None => out.extend_from_slice(&[0, 0x01, 0, 0]),
            }
        }
        _ => return Err(Sense::invalid_cdb_field(2, Some(0))),
    }
    out.truncate(alloc);
    Ok(out)
}
