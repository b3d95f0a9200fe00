//! The Basic Header Segment (RFC 7143 §11.2) and typed views of every PDU the target
//! receives or sends.

/// Bytes in a BHS.
pub const BHS_BYTES: usize = 48;
/// Bytes in a header or data digest.
pub const DIGEST_BYTES: usize = 4;

/// Reject reasons (RFC 7143 §11.17.1).
pub const REJECT_DATA_DIGEST: u8 = 0x02;
/// Reject: SNACK reject.
pub const REJECT_SNACK: u8 = 0x03;
/// Reject: protocol error.
pub const REJECT_PROTOCOL_ERROR: u8 = 0x04;
/// Reject: command not supported.
pub const REJECT_COMMAND_NOT_SUPPORTED: u8 = 0x05;
/// Reject: invalid PDU field.
pub const REJECT_INVALID_PDU_FIELD: u8 = 0x09;

/// PDU opcodes (RFC 7143 §11.2.1.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
#[allow(missing_docs)]
pub enum Opcode {
    NopOut = 0x00,
    ScsiCommand = 0x01,
    TaskMgmtReq = 0x02,
    LoginReq = 0x03,
    TextReq = 0x04,
    DataOut = 0x05,
    LogoutReq = 0x06,
    SnackReq = 0x10,
    NopIn = 0x20,
    ScsiResponse = 0x21,
    TaskMgmtResp = 0x22,
    LoginResp = 0x23,
    TextResp = 0x24,
    DataIn = 0x25,
    LogoutResp = 0x26,
    R2t = 0x31,
    AsyncMsg = 0x32,
    Reject = 0x3f,
}

impl Opcode {
    /// The opcode of a byte (the low six bits), if known.
    pub fn from_u8(b: u8) -> Option<Opcode> {
        use Opcode::*;
        Some(match b & 0x3f {
            0x00 => NopOut,
            0x01 => ScsiCommand,
            0x02 => TaskMgmtReq,
            0x03 => LoginReq,
            0x04 => TextReq,
            0x05 => DataOut,
            0x06 => LogoutReq,
            0x10 => SnackReq,
            0x20 => NopIn,
            0x21 => ScsiResponse,
            0x22 => TaskMgmtResp,
            0x23 => LoginResp,
            0x24 => TextResp,
            0x25 => DataIn,
            0x26 => LogoutResp,
            0x31 => R2t,
            0x32 => AsyncMsg,
            0x3f => Reject,
            _ => return None,
        })
    }

    /// Whether an initiator may send this opcode.
    pub fn is_initiator(self) -> bool {
        (self as u8) < 0x20
    }
}

/// A PDU field was malformed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("PDU is not a {expected:?}")]
pub struct WrongOpcode {
    /// What the parser wanted.
    pub expected: Opcode,
}

/// A raw Basic Header Segment.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Bhs(pub [u8; BHS_BYTES]);

impl std::fmt::Debug for Bhs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Bhs(op={:#04x} itt={:#x} len={})",
            self.0[0] & 0x3f,
            self.itt(),
            self.data_segment_len()
        )
    }
}

impl Default for Bhs {
    fn default() -> Self {
        Bhs([0; BHS_BYTES])
    }
}

impl Bhs {
    /// The opcode, if known.
    pub fn opcode(&self) -> Option<Opcode> {
        Opcode::from_u8(self.0[0])
    }
    /// The raw opcode byte (low six bits).
    pub fn raw_opcode(&self) -> u8 {
        self.0[0] & 0x3f
    }
    /// The I (immediate) bit.
    pub fn is_immediate(&self) -> bool {
        self.0[0] & 0x40 != 0
    }
    /// The F (final) bit.
    pub fn is_final(&self) -> bool {
        self.0[1] & 0x80 != 0
    }
    /// Byte 1.
    pub fn flags(&self) -> u8 {
        self.0[1]
    }
    /// TotalAHSLength in bytes.
    pub fn total_ahs_bytes(&self) -> usize {
        usize::from(self.0[4]) * 4
    }
    /// DataSegmentLength.
    pub fn data_segment_len(&self) -> u32 {
        u32::from_be_bytes([0, self.0[5], self.0[6], self.0[7]])
    }
    /// Sets DataSegmentLength (24 bits).
    pub fn set_data_segment_len(&mut self, len: u32) {
        assert!(
            len < 1 << 24,
            "data segment length {len} does not fit 24 bits"
        );
        self.0[5..8].copy_from_slice(&len.to_be_bytes()[1..]);
    }
    /// LUN field (bytes 8..16).
    pub fn lun_raw(&self) -> [u8; 8] {
        self.0[8..16].try_into().expect("8 bytes")
    }
    /// Initiator Task Tag.
    pub fn itt(&self) -> u32 {
        self.u32_at(16)
    }
    /// A big-endian u32 at `off`.
    pub fn u32_at(&self, off: usize) -> u32 {
        u32::from_be_bytes(self.0[off..off + 4].try_into().expect("4 bytes"))
    }
    /// A big-endian u16 at `off`.
    pub fn u16_at(&self, off: usize) -> u16 {
        u16::from_be_bytes(self.0[off..off + 2].try_into().expect("2 bytes"))
    }
    fn put_u32(&mut self, off: usize, v: u32) {
        self.0[off..off + 4].copy_from_slice(&v.to_be_bytes());
    }
    fn put_u16(&mut self, off: usize, v: u16) {
        self.0[off..off + 2].copy_from_slice(&v.to_be_bytes());
    }
    fn new(op: Opcode, flags: u8, data_len: u32) -> Bhs {
        let mut b = Bhs::default();
        b.0[0] = op as u8;
        b.0[1] = flags;
        b.set_data_segment_len(data_len);
        b
    }
    fn expect(&self, op: Opcode) -> Result<(), WrongOpcode> {
        if self.raw_opcode() == op as u8 {
            Ok(())
        } else {
            Err(WrongOpcode { expected: op })
        }
    }
}

/// SCSI Command (RFC 7143 §11.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct ScsiCommand {
    pub immediate: bool,
    pub final_: bool,
    pub read: bool,
    pub write: bool,
    pub attr: u8,
    pub lun: [u8; 8],
    pub itt: u32,
    pub expected_len: u32,
    pub cmdsn: u32,
    pub exp_statsn: u32,
    pub cdb: [u8; 16],
}

impl ScsiCommand {
    /// Parses a BHS.
    pub fn parse(b: &Bhs) -> Result<Self, WrongOpcode> {
        b.expect(Opcode::ScsiCommand)?;
        Ok(ScsiCommand {
            immediate: b.is_immediate(),
            final_: b.is_final(),
            read: b.0[1] & 0x40 != 0,
            write: b.0[1] & 0x20 != 0,
            attr: b.0[1] & 0x07,
            lun: b.lun_raw(),
            itt: b.itt(),
            expected_len: b.u32_at(20),
            cmdsn: b.u32_at(24),
            exp_statsn: b.u32_at(28),
            cdb: b.0[32..48].try_into().expect("16 bytes"),
        })
    }

    /// Encodes (for tests and clients).
    pub fn encode(&self) -> Bhs {
        let flags = (u8::from(self.final_) << 7)
            | (u8::from(self.read) << 6)
            | (u8::from(self.write) << 5)
            | (self.attr & 7);
        let mut b = Bhs::new(Opcode::ScsiCommand, flags, 0);
        if self.immediate {
            b.0[0] |= 0x40;
        }
        b.0[8..16].copy_from_slice(&self.lun);
        b.put_u32(16, self.itt);
        b.put_u32(20, self.expected_len);
        b.put_u32(24, self.cmdsn);
        b.put_u32(28, self.exp_statsn);
        b.0[32..48].copy_from_slice(&self.cdb);
        b
    }
}

/// SCSI Data-Out (RFC 7143 §11.7).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct DataOut {
    pub final_: bool,
    pub lun: [u8; 8],
    pub itt: u32,
    pub ttt: u32,
    pub exp_statsn: u32,
    pub datasn: u32,
    pub buffer_offset: u32,
}

impl DataOut {
    /// Parses a BHS.
    pub fn parse(b: &Bhs) -> Result<Self, WrongOpcode> {
        b.expect(Opcode::DataOut)?;
        Ok(DataOut {
            final_: b.is_final(),
            lun: b.lun_raw(),
            itt: b.itt(),
            ttt: b.u32_at(20),
            exp_statsn: b.u32_at(28),
            datasn: b.u32_at(36),
            buffer_offset: b.u32_at(40),
        })
    }

    /// Encodes (for tests and clients).
    pub fn encode(&self, data_len: u32) -> Bhs {
        let mut b = Bhs::new(Opcode::DataOut, u8::from(self.final_) << 7, data_len);
        b.0[8..16].copy_from_slice(&self.lun);
        b.put_u32(16, self.itt);
        b.put_u32(20, self.ttt);
        b.put_u32(28, self.exp_statsn);
        b.put_u32(36, self.datasn);
        b.put_u32(40, self.buffer_offset);
        b
    }
}

/// NOP-Out (RFC 7143 §11.18).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct NopOut {
    pub immediate: bool,
    pub lun: [u8; 8],
    pub itt: u32,
    pub ttt: u32,
    pub cmdsn: u32,
    pub exp_statsn: u32,
}

impl NopOut {
    /// Parses a BHS.
    pub fn parse(b: &Bhs) -> Result<Self, WrongOpcode> {
        b.expect(Opcode::NopOut)?;
        Ok(NopOut {
            immediate: b.is_immediate(),
            lun: b.lun_raw(),
            itt: b.itt(),
            ttt: b.u32_at(20),
            cmdsn: b.u32_at(24),
            exp_statsn: b.u32_at(28),
        })
    }
}

/// Text Request (RFC 7143 §11.10).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct TextRequest {
    pub immediate: bool,
    pub final_: bool,
    pub continue_: bool,
    pub lun: [u8; 8],
    pub itt: u32,
    pub ttt: u32,
    pub cmdsn: u32,
    pub exp_statsn: u32,
}

impl TextRequest {
    /// Parses a BHS.
    pub fn parse(b: &Bhs) -> Result<Self, WrongOpcode> {
        b.expect(Opcode::TextReq)?;
        Ok(TextRequest {
            immediate: b.is_immediate(),
            final_: b.is_final(),
            continue_: b.0[1] & 0x40 != 0,
            lun: b.lun_raw(),
            itt: b.itt(),
            ttt: b.u32_at(20),
            cmdsn: b.u32_at(24),
            exp_statsn: b.u32_at(28),
        })
    }
}

/// Logout Request (RFC 7143 §11.14).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct LogoutRequest {
    pub immediate: bool,
    pub reason: u8,
    pub itt: u32,
    pub cid: u16,
    pub cmdsn: u32,
    pub exp_statsn: u32,
}

impl LogoutRequest {
    /// Parses a BHS.
    pub fn parse(b: &Bhs) -> Result<Self, WrongOpcode> {
        b.expect(Opcode::LogoutReq)?;
        Ok(LogoutRequest {
            immediate: b.is_immediate(),
            reason: b.0[1] & 0x7f,
            itt: b.itt(),
            cid: b.u16_at(20),
            cmdsn: b.u32_at(24),
            exp_statsn: b.u32_at(28),
        })
    }
}

/// Task Management Function Request (RFC 7143 §11.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct TaskMgmtRequest {
    pub immediate: bool,
    pub function: u8,
    pub lun: [u8; 8],
    pub itt: u32,
    pub referenced_itt: u32,
    pub cmdsn: u32,
    pub exp_statsn: u32,
    pub ref_cmdsn: u32,
    pub exp_datasn: u32,
}

impl TaskMgmtRequest {
    /// Parses a BHS.
    pub fn parse(b: &Bhs) -> Result<Self, WrongOpcode> {
        b.expect(Opcode::TaskMgmtReq)?;
        Ok(TaskMgmtRequest {
            immediate: b.is_immediate(),
            function: b.0[1] & 0x7f,
            lun: b.lun_raw(),
            itt: b.itt(),
            referenced_itt: b.u32_at(20),
            cmdsn: b.u32_at(24),
            exp_statsn: b.u32_at(28),
            ref_cmdsn: b.u32_at(32),
            exp_datasn: b.u32_at(36),
        })
    }
}

/// Login Request (RFC 7143 §11.12).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct LoginRequest {
    pub transit: bool,
    pub continue_: bool,
    pub csg: u8,
    pub nsg: u8,
    pub version_max: u8,
    pub version_min: u8,
    pub isid: [u8; 6],
    pub tsih: u16,
    pub itt: u32,
    pub cid: u16,
    pub cmdsn: u32,
    pub exp_statsn: u32,
}

impl LoginRequest {
    /// Parses a BHS.
    pub fn parse(b: &Bhs) -> Result<Self, WrongOpcode> {
        b.expect(Opcode::LoginReq)?;
        Ok(LoginRequest {
            transit: b.0[1] & 0x80 != 0,
            continue_: b.0[1] & 0x40 != 0,
            csg: (b.0[1] >> 2) & 3,
            nsg: b.0[1] & 3,
            version_max: b.0[2],
            version_min: b.0[3],
            isid: b.0[8..14].try_into().expect("6 bytes"),
            tsih: b.u16_at(14),
            itt: b.itt(),
            cid: b.u16_at(20),
            cmdsn: b.u32_at(24),
            exp_statsn: b.u32_at(28),
        })
    }

    /// Encodes (for tests and clients).
    pub fn encode(&self, data_len: u32) -> Bhs {
        let flags = (u8::from(self.transit) << 7)
            | (u8::from(self.continue_) << 6)
            | ((self.csg & 3) << 2)
            | (self.nsg & 3);
        let mut b = Bhs::new(Opcode::LoginReq, flags, data_len);
        b.0[0] |= 0x40;
        b.0[2] = self.version_max;
        b.0[3] = self.version_min;
        b.0[8..14].copy_from_slice(&self.isid);
        b.put_u16(14, self.tsih);
        b.put_u32(16, self.itt);
        b.put_u16(20, self.cid);
        b.put_u32(24, self.cmdsn);
        b.put_u32(28, self.exp_statsn);
        b
    }
}

/// Residual of a command (RFC 7143 §11.4.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Residual {
    /// All the expected data moved.
    None,
    /// Fewer bytes moved than expected.
    Under(u32),
    /// The command wanted to move more than expected.
    Over(u32),
}

impl Residual {
    fn flags(self) -> (u8, u32) {
        match self {
            Residual::None => (0, 0),
            Residual::Under(n) => (0x02, n),
            Residual::Over(n) => (0x04, n),
        }
    }
}

/// SCSI Response (RFC 7143 §11.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct ScsiResponse {
    pub itt: u32,
    pub response: u8,
    pub status: u8,
    pub statsn: u32,
    pub exp_cmdsn: u32,
    pub max_cmdsn: u32,
    pub exp_datasn: u32,
    pub residual: Residual,
    pub data_segment_len: u32,
}

impl ScsiResponse {
    /// Encodes.
    pub fn encode(&self) -> Bhs {
        let (rflags, count) = self.residual.flags();
        let mut b = Bhs::new(Opcode::ScsiResponse, 0x80 | rflags, self.data_segment_len);
        b.0[2] = self.response;
        b.0[3] = self.status;
        b.put_u32(16, self.itt);
        b.put_u32(24, self.statsn);
        b.put_u32(28, self.exp_cmdsn);
        b.put_u32(32, self.max_cmdsn);
        b.put_u32(36, self.exp_datasn);
        b.put_u32(44, count);
        b
    }
}

/// SCSI Data-In (RFC 7143 §11.7).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct DataIn {
    pub final_: bool,
    /// Status carried in this PDU (S bit), only in the last one.
    pub status: Option<u8>,
    pub lun: [u8; 8],
    pub itt: u32,
    pub ttt: u32,
    pub statsn: u32,
    pub exp_cmdsn: u32,
    pub max_cmdsn: u32,
    pub datasn: u32,
    pub buffer_offset: u32,
    pub residual: Residual,
    pub data_segment_len: u32,
}

impl DataIn {
    /// Encodes.
    pub fn encode(&self) -> Bhs {
        let mut flags = u8::from(self.final_ || self.status.is_some()) << 7;
        let mut b;
        if let Some(status) = self.status {
            let (rflags, count) = self.residual.flags();
            flags |= 0x01 | rflags;
            b = Bhs::new(Opcode::DataIn, flags, self.data_segment_len);
            b.0[3] = status;
            b.put_u32(24, self.statsn);
            b.put_u32(44, count);
        } else {
            b = Bhs::new(Opcode::DataIn, flags, self.data_segment_len);
        }
        b.0[8..16].copy_from_slice(&self.lun);
        b.put_u32(16, self.itt);
        b.put_u32(20, self.ttt);
        b.put_u32(28, self.exp_cmdsn);
        b.put_u32(32, self.max_cmdsn);
        b.put_u32(36, self.datasn);
        b.put_u32(40, self.buffer_offset);
        b
    }
}

/// Ready To Transfer (RFC 7143 §11.8).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct R2t {
    pub lun: [u8; 8],
    pub itt: u32,
    pub ttt: u32,
    pub statsn: u32,
    pub exp_cmdsn: u32,
    pub max_cmdsn: u32,
    pub r2tsn: u32,
    pub buffer_offset: u32,
    pub desired_len: u32,
}

impl R2t {
    /// Encodes.
    pub fn encode(&self) -> Bhs {
        let mut b = Bhs::new(Opcode::R2t, 0x80, 0);
        b.0[8..16].copy_from_slice(&self.lun);
        b.put_u32(16, self.itt);
        b.put_u32(20, self.ttt);
        b.put_u32(24, self.statsn);
        b.put_u32(28, self.exp_cmdsn);
        b.put_u32(32, self.max_cmdsn);
        b.put_u32(36, self.r2tsn);
        b.put_u32(40, self.buffer_offset);
        b.put_u32(44, self.desired_len);
        b
    }
}

/// NOP-In (RFC 7143 §11.19).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct NopIn {
    pub lun: [u8; 8],
    pub itt: u32,
    pub ttt: u32,
    pub statsn: u32,
    pub exp_cmdsn: u32,
    pub max_cmdsn: u32,
    pub data_segment_len: u32,
}

impl NopIn {
    /// Encodes.
    pub fn encode(&self) -> Bhs {
        let mut b = Bhs::new(Opcode::NopIn, 0x80, self.data_segment_len);
        b.0[8..16].copy_from_slice(&self.lun);
        b.put_u32(16, self.itt);
        b.put_u32(20, self.ttt);
        b.put_u32(24, self.statsn);
        b.put_u32(28, self.exp_cmdsn);
        b.put_u32(32, self.max_cmdsn);
        b
    }
}

/// Text Response (RFC 7143 §11.11).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct TextResponse {
    pub final_: bool,
    pub continue_: bool,
    pub lun: [u8; 8],
    pub itt: u32,
    pub ttt: u32,
    pub statsn: u32,
    pub exp_cmdsn: u32,
    pub max_cmdsn: u32,
    pub data_segment_len: u32,
}

impl TextResponse {
    /// Encodes.
    pub fn encode(&self) -> Bhs {
        let flags = (u8::from(self.final_) << 7) | (u8::from(self.continue_) << 6);
        let mut b = Bhs::new(Opcode::TextResp, flags, self.data_segment_len);
        b.0[8..16].copy_from_slice(&self.lun);
        b.put_u32(16, self.itt);
        b.put_u32(20, self.ttt);
        b.put_u32(24, self.statsn);
        b.put_u32(28, self.exp_cmdsn);
        b.put_u32(32, self.max_cmdsn);
        b
    }
}

/// Login Response (RFC 7143 §11.13).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct LoginResponse {
    pub transit: bool,
    pub continue_: bool,
    pub csg: u8,
    pub nsg: u8,
    pub version_max: u8,
    pub version_active: u8,
    pub isid: [u8; 6],
    pub tsih: u16,
    pub itt: u32,
    pub statsn: u32,
    pub exp_cmdsn: u32,
    pub max_cmdsn: u32,
    pub status_class: u8,
    pub status_detail: u8,
    pub data_segment_len: u32,
}

impl LoginResponse {
    /// Encodes.
    pub fn encode(&self) -> Bhs {
        let flags = (u8::from(self.transit) << 7)
            | (u8::from(self.continue_) << 6)
            | ((self.csg & 3) << 2)
            | (self.nsg & 3);
        let mut b = Bhs::new(Opcode::LoginResp, flags, self.data_segment_len);
        b.0[2] = self.version_max;
        b.0[3] = self.version_active;
        b.0[8..14].copy_from_slice(&self.isid);
        b.put_u16(14, self.tsih);
        b.put_u32(16, self.itt);
        b.put_u32(24, self.statsn);
        b.put_u32(28, self.exp_cmdsn);
        b.put_u32(32, self.max_cmdsn);
        b.0[36] = self.status_class;
        b.0[37] = self.status_detail;
        b
    }

    /// Parses (for tests and clients).
    pub fn parse(b: &Bhs) -> Result<Self, WrongOpcode> {
        b.expect(Opcode::LoginResp)?;
        Ok(LoginResponse {
            transit: b.0[1] & 0x80 != 0,
            continue_: b.0[1] & 0x40 != 0,
            csg: (b.0[1] >> 2) & 3,
            nsg: b.0[1] & 3,
            version_max: b.0[2],
            version_active: b.0[3],
            isid: b.0[8..14].try_into().expect("6 bytes"),
            tsih: b.u16_at(14),
            itt: b.itt(),
            statsn: b.u32_at(24),
            exp_cmdsn: b.u32_at(28),
            max_cmdsn: b.u32_at(32),
            status_class: b.0[36],
            status_detail: b.0[37],
            data_segment_len: b.data_segment_len(),
        })
    }
}

/// Logout Response (RFC 7143 §11.15).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct LogoutResponse {
    pub response: u8,
    pub itt: u32,
    pub statsn: u32,
    pub exp_cmdsn: u32,
    pub max_cmdsn: u32,
    pub time2wait: u16,
    pub time2retain: u16,
}

impl LogoutResponse {
    /// Encodes.
    pub fn encode(&self) -> Bhs {
        let mut b = Bhs::new(Opcode::LogoutResp, 0x80, 0);
        b.0[2] = self.response;
        b.put_u32(16, self.itt);
        b.put_u32(24, self.statsn);
        b.put_u32(28, self.exp_cmdsn);
        b.put_u32(32, self.max_cmdsn);
        b.put_u16(40, self.time2wait);
        b.put_u16(42, self.time2retain);
        b
    }
}

/// Reject (RFC 7143 §11.17); its data segment is the rejected header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct Reject {
    pub reason: u8,
    pub statsn: u32,
    pub exp_cmdsn: u32,
    pub max_cmdsn: u32,
    pub data_segment_len: u32,
}

impl Reject {
    /// Encodes.
    pub fn encode(&self) -> Bhs {
        let mut b = Bhs::new(Opcode::Reject, 0x80, self.data_segment_len);
        b.0[2] = self.reason;
        b.put_u32(16, 0xffff_ffff);
        b.put_u32(24, self.statsn);
        b.put_u32(28, self.exp_cmdsn);
        b.put_u32(32, self.max_cmdsn);
        b
    }
}

/// Task Management Function Response (RFC 7143 §11.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct TaskMgmtResponse {
    pub response: u8,
    pub itt: u32,
    pub statsn: u32,
    pub exp_cmdsn: u32,
    pub max_cmdsn: u32,
}

impl TaskMgmtResponse {
    /// Encodes.
    pub fn encode(&self) -> Bhs {
        let mut b = Bhs::new(Opcode::TaskMgmtResp, 0x80, 0);
        b.0[2] = self.response;
        b.put_u32(16, self.itt);
        b.put_u32(24, self.statsn);
        b.put_u32(28, self.exp_cmdsn);
        b.put_u32(32, self.max_cmdsn);
        b
    }
}

/// LUN number of an 8-byte LUN field (SAM-5 §4.7): peripheral (00b) and flat (01b) single
/// level addressing; anything else maps to a number no LU has.
pub fn lun_from_wire(raw: [u8; 8]) -> u64 {
    if raw[2..].iter().any(|&b| b != 0) {
        return u64::MAX;
    }
    match raw[0] >> 6 {
        0b00 if raw[0] == 0 => u64::from(raw[1]),
        0b01 => (u64::from(raw[0] & 0x3f) << 8) | u64::from(raw[1]),
        _ => u64::MAX,
    }
}

/// The 8-byte LUN field for a LUN number (peripheral below 256, flat above).
pub fn lun_to_wire(lun: u64) -> [u8; 8] {
    gw_scsi::lun_to_wire(lun)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scsi_command_round_trip() {
        let c = ScsiCommand {
            immediate: false,
            final_: true,
            read: true,
            write: false,
            attr: 1,
            lun: lun_to_wire(3),
            itt: 0x1234,
            expected_len: 4096,
            cmdsn: 7,
            exp_statsn: 9,
            cdb: [0x28, 0, 0, 0, 0, 1, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0],
        };
        let b = c.encode();
        assert_eq!(b.0[0], 0x01);
        assert_eq!(b.0[1], 0xc1);
        assert_eq!(ScsiCommand::parse(&b).unwrap(), c);
        assert!(DataOut::parse(&b).is_err());
    }

    #[test]
    fn data_in_with_status_sets_flags_and_residual() {
        let b = DataIn {
            final_: true,
            status: Some(0),
            lun: [0; 8],
            itt: 1,
            ttt: 0xffff_ffff,
            statsn: 5,
            exp_cmdsn: 6,
            max_cmdsn: 7,
            datasn: 2,
            buffer_offset: 8192,
            residual: Residual::Under(512),
            data_segment_len: 4096,
        }
        .encode();
        assert_eq!(b.0[0], 0x25);
        assert_eq!(b.0[1], 0x80 | 0x02 | 0x01);
        assert_eq!(b.data_segment_len(), 4096);
        assert_eq!(b.u32_at(24), 5);
        assert_eq!(b.u32_at(36), 2);
        assert_eq!(b.u32_at(40), 8192);
        assert_eq!(b.u32_at(44), 512);
    }

    #[test]
    fn luns() {
        for lun in [0u64, 1, 255, 256, 16383] {
            assert_eq!(lun_from_wire(lun_to_wire(lun)), lun);
        }
        assert_eq!(lun_to_wire(1), [0, 1, 0, 0, 0, 0, 0, 0]);
        assert_eq!(lun_from_wire([0xc0, 0, 0, 0, 0, 0, 0, 0]), u64::MAX);
        assert_eq!(lun_from_wire([0, 1, 0, 0, 0, 0, 0, 1]), u64::MAX);
    }

    #[test]
    fn login_request_round_trip() {
        let r = LoginRequest {
            transit: true,
            continue_: false,
            csg: 1,
            nsg: 3,
            version_max: 0,
            version_min: 0,
            isid: [0x80, 0, 0, 0x12, 0x34, 0],
            tsih: 0,
            itt: 1,
            cid: 0,
            cmdsn: 100,
            exp_statsn: 0,
        };
        let b = r.encode(10);
        assert_eq!(b.0[0], 0x43);
        assert_eq!(b.0[1], 0x87);
        assert_eq!(LoginRequest::parse(&b).unwrap(), r);
    }
}
