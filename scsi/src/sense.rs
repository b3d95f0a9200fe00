//! Sense data (SPC-4 §4.5): fixed (0x70) and descriptor (0x72) formats, and the sense keys
//! and additional sense codes this target reports.

/// Sense keys (SPC-4 Table 27).
pub mod key {
    /// NO SENSE.
    pub const NO_SENSE: u8 = 0x00;
    /// NOT READY.
    pub const NOT_READY: u8 = 0x02;
    /// MEDIUM ERROR.
    pub const MEDIUM_ERROR: u8 = 0x03;
    /// HARDWARE ERROR.
    pub const HARDWARE_ERROR: u8 = 0x04;
    /// ILLEGAL REQUEST.
    pub const ILLEGAL_REQUEST: u8 = 0x05;
    /// UNIT ATTENTION.
    pub const UNIT_ATTENTION: u8 = 0x06;
    /// DATA PROTECT.
    pub const DATA_PROTECT: u8 = 0x07;
    /// COPY ABORTED (EXTENDED COPY, SPC-4 §6.4).
    pub const COPY_ABORTED: u8 = 0x0a;
    /// ABORTED COMMAND.
    pub const ABORTED_COMMAND: u8 = 0x0b;
    /// MISCOMPARE.
    pub const MISCOMPARE: u8 = 0x0e;
}

/// Additional sense code and qualifier pairs.
pub mod asc {
    /// NO ADDITIONAL SENSE INFORMATION.
    pub const NONE: (u8, u8) = (0x00, 0x00);
    /// LOGICAL UNIT NOT READY, INITIALIZING COMMAND REQUIRED.
    pub const NOT_READY_INIT_REQUIRED: (u8, u8) = (0x04, 0x02);
    /// WRITE ERROR.
    pub const WRITE_ERROR: (u8, u8) = (0x0c, 0x00);
    /// UNRECOVERED READ ERROR.
    pub const UNRECOVERED_READ_ERROR: (u8, u8) = (0x11, 0x00);
    /// MISCOMPARE DURING VERIFY OPERATION.
    pub const MISCOMPARE_DURING_VERIFY: (u8, u8) = (0x1d, 0x00);
    /// INVALID COMMAND OPERATION CODE.
    pub const INVALID_OPCODE: (u8, u8) = (0x20, 0x00);
    /// LOGICAL BLOCK ADDRESS OUT OF RANGE.
    pub const LBA_OUT_OF_RANGE: (u8, u8) = (0x21, 0x00);
    /// INVALID FIELD IN CDB.
    pub const INVALID_FIELD_IN_CDB: (u8, u8) = (0x24, 0x00);
    /// LOGICAL UNIT NOT SUPPORTED.
    pub const LUN_NOT_SUPPORTED: (u8, u8) = (0x25, 0x00);
    /// INVALID FIELD IN PARAMETER LIST.
    pub const INVALID_FIELD_IN_PARAMETER_LIST: (u8, u8) = (0x26, 0x00);
    /// PARAMETER LIST LENGTH ERROR.
    pub const PARAMETER_LIST_LENGTH_ERROR: (u8, u8) = (0x1a, 0x00);
    /// WRITE PROTECTED.
    pub const WRITE_PROTECTED: (u8, u8) = (0x27, 0x00);
    /// SPACE ALLOCATION FAILED WRITE PROTECT.
    pub const SPACE_ALLOCATION_FAILED: (u8, u8) = (0x27, 0x07);
    /// POWER ON, RESET, OR BUS DEVICE RESET OCCURRED.
    pub const POWER_ON_RESET: (u8, u8) = (0x29, 0x00);
    /// MODE PARAMETERS CHANGED.
    pub const MODE_PARAMETERS_CHANGED: (u8, u8) = (0x2a, 0x01);
    /// RESERVATIONS PREEMPTED (SPC-4 §5.9.11.5).
    pub const RESERVATIONS_PREEMPTED: (u8, u8) = (0x2a, 0x03);
    /// RESERVATIONS RELEASED (SPC-4 §5.9.11.2).
    pub const RESERVATIONS_RELEASED: (u8, u8) = (0x2a, 0x04);
    /// REGISTRATIONS PREEMPTED (SPC-4 §5.9.11.5).
    pub const REGISTRATIONS_PREEMPTED: (u8, u8) = (0x2a, 0x05);
    /// INVALID RELEASE OF PERSISTENT RESERVATION (SPC-4 §5.9.11.2).
    pub const INVALID_RELEASE_OF_PERSISTENT_RESERVATION: (u8, u8) = (0x26, 0x04);
    /// INSUFFICIENT REGISTRATION RESOURCES (SPC-4 §5.9.7).
    pub const INSUFFICIENT_REGISTRATION_RESOURCES: (u8, u8) = (0x55, 0x04);
    /// CAPACITY DATA HAS CHANGED.
    pub const CAPACITY_CHANGED: (u8, u8) = (0x2a, 0x09);
    /// REPORTED LUNS DATA HAS CHANGED.
    pub const REPORTED_LUNS_CHANGED: (u8, u8) = (0x3f, 0x0e);
    /// INQUIRY DATA HAS CHANGED.
    pub const INQUIRY_DATA_CHANGED: (u8, u8) = (0x3f, 0x03);
    /// SAVING PARAMETERS NOT SUPPORTED.
    pub const SAVING_NOT_SUPPORTED: (u8, u8) = (0x39, 0x00);
    /// MEDIUM NOT PRESENT.
    pub const MEDIUM_NOT_PRESENT: (u8, u8) = (0x3a, 0x00);
    /// MEDIUM REMOVAL PREVENTED.
    pub const MEDIUM_REMOVAL_PREVENTED: (u8, u8) = (0x53, 0x02);
    /// OPERATION IN PROGRESS.
    pub const OPERATION_IN_PROGRESS: (u8, u8) = (0x00, 0x16);
    /// UNREACHABLE COPY TARGET.
    pub const UNREACHABLE_COPY_TARGET: (u8, u8) = (0x08, 0x04);
    /// COPY TARGET DEVICE NOT REACHABLE.
    pub const COPY_TARGET_DEVICE_NOT_REACHABLE: (u8, u8) = (0x0d, 0x02);
    /// TOO MANY TARGET DESCRIPTORS.
    pub const TOO_MANY_TARGET_DESCRIPTORS: (u8, u8) = (0x26, 0x06);
    /// UNSUPPORTED TARGET DESCRIPTOR TYPE CODE.
    pub const UNSUPPORTED_TARGET_DESCRIPTOR_TYPE_CODE: (u8, u8) = (0x26, 0x07);
    /// TOO MANY SEGMENT DESCRIPTORS.
    pub const TOO_MANY_SEGMENT_DESCRIPTORS: (u8, u8) = (0x26, 0x08);
    /// UNSUPPORTED SEGMENT DESCRIPTOR TYPE CODE.
    pub const UNSUPPORTED_SEGMENT_DESCRIPTOR_TYPE_CODE: (u8, u8) = (0x26, 0x09);
    /// INTERNAL TARGET FAILURE.
    pub const INTERNAL_TARGET_FAILURE: (u8, u8) = (0x44, 0x00);
}

/// One sense condition, encodable in either format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sense {
    /// Sense key.
    pub key: u8,
    /// ASC and ASCQ.
    pub code: (u8, u8),
    /// INFORMATION field, if valid.
    pub information: Option<u64>,
    /// Sense-key-specific field pointer: (in the CDB rather than the parameter list, byte,
    /// bit if known).
    pub field: Option<(bool, u16, Option<u8>)>,
    /// COMMAND-SPECIFIC INFORMATION, if any (EXTENDED COPY: the failed segment's number).
    pub command_specific: Option<u32>,
}

impl Sense {
    /// A sense condition without extra fields.
    pub fn new(key: u8, code: (u8, u8)) -> Sense {
        Sense {
            key,
            code,
            information: None,
            field: None,
            command_specific: None,
        }
    }

    /// INVALID FIELD IN CDB pointing at `byte` (and `bit`).
    pub fn invalid_cdb_field(byte: u16, bit: Option<u8>) -> Sense {
        Sense {
            field: Some((true, byte, bit)),
            ..Sense::new(key::ILLEGAL_REQUEST, asc::INVALID_FIELD_IN_CDB)
        }
    }

    /// INVALID FIELD IN PARAMETER LIST pointing at `byte` (and `bit`) of the parameter list.
    pub fn invalid_parameter_field(byte: u16, bit: Option<u8>) -> Sense {
        Sense {
            field: Some((false, byte, bit)),
            ..Sense::new(key::ILLEGAL_REQUEST, asc::INVALID_FIELD_IN_PARAMETER_LIST)
        }
    }

    /// PARAMETER LIST LENGTH ERROR.
    pub fn parameter_list_length() -> Sense {
        Sense::new(key::ILLEGAL_REQUEST, asc::PARAMETER_LIST_LENGTH_ERROR)
    }

    fn sks(&self) -> Option<[u8; 3]> {
        self.field.map(|(cdb, byte, bit)| {
            let mut b0 = 0x80 | if cdb { 0x40 } else { 0 };
            if let Some(bit) = bit {
                b0 |= 0x08 | (bit & 7);
            }
            let [hi, lo] = byte.to_be_bytes();
            [b0, hi, lo]
        })
    }

    /// Encodes in fixed (0x70) or descriptor (0x72) format.
    pub fn encode(&self, descriptor: bool) -> Vec<u8> {
        if descriptor {
            let mut v = vec![0x72, self.key & 0x0f, self.code.0, self.code.1, 0, 0, 0, 0];
            if let Some(info) = self.information {
                v.extend_from_slice(&[0x00, 0x0a, 0x80, 0]);
                v.extend_from_slice(&info.to_be_bytes());
            }
            if let Some(csi) = self.command_specific {
                v.extend_from_slice(&[0x01, 0x0a, 0, 0]);
                v.extend_from_slice(&u64::from(csi).to_be_bytes());
            }
            if let Some(sks) = self.sks() {
                v.extend_from_slice(&[0x02, 0x06, 0, 0]);
                v.extend_from_slice(&sks);
                v.push(0);
            }
            v[7] = (v.len() - 8) as u8;
            v
        } else {
            let mut v = vec![0u8; 18];
            v[0] = 0x70;
            v[2] = self.key & 0x0f;
            if let Some(info) = self.information {
                v[0] |= 0x80;
                v[3..7].copy_from_slice(&(info.min(u64::from(u32::MAX)) as u32).to_be_bytes());
            }
            v[7] = 10;
            if let Some(csi) = self.command_specific {
                v[8..12].copy_from_slice(&csi.to_be_bytes());
            }
            v[12] = self.code.0;
            v[13] = self.code.1;
            if let Some(sks) = self.sks() {
                v[15..18].copy_from_slice(&sks);
            }
            v
        }
    }
}

/// Fixed-format sense for a key and ASC/ASCQ.
pub fn fixed(key: u8, asc: u8, ascq: u8) -> Vec<u8> {
    Sense::new(key, (asc, ascq)).encode(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_layout() {
        let v = Sense {
            information: Some(0x1234),
            ..Sense::new(key::MISCOMPARE, asc::MISCOMPARE_DURING_VERIFY)
        }
        .encode(false);
        assert_eq!(v.len(), 18);
        assert_eq!(v[0], 0xf0);
        assert_eq!(v[2], 0x0e);
        assert_eq!(&v[3..7], &[0, 0, 0x12, 0x34]);
        assert_eq!((v[12], v[13]), (0x1d, 0));
    }

    #[test]
    fn descriptor_layout() {
        let v = Sense::invalid_cdb_field(2, Some(5)).encode(true);
        assert_eq!(&v[..4], &[0x72, 0x05, 0x24, 0x00]);
        assert_eq!(v[7] as usize, v.len() - 8);
        assert_eq!(&v[8..12], &[0x02, 0x06, 0, 0]);
        assert_eq!(&v[12..15], &[0xcd, 0, 2]);
    }
}
