//! tgt's management wire protocol, as tgt's `tgtadm` speaks it over a Unix stream socket.
//!
//! A request is a fixed 120-byte header (`struct tgtadm_req` on x86_64 and aarch64: mode, op,
//! a 64-byte driver name, total length, tid, sid, lun, cid, host number, device type, account
//! direction, pack, force; native byte order) followed by `len - 120` bytes of parameter text
//! ending in a NUL. The answer is an 8-byte header (error code, total length) followed, on
//! success, by `len - 8` bytes of NUL-terminated text that the client prints.

/// Bytes of a request header.
pub const REQ_BYTES: usize = 120;
/// Bytes of a response header.
pub const RSP_BYTES: usize = 8;
/// Largest parameter text a request may carry (tgt's own limit).
pub const REQ_BODY_BYTES_MAX: usize = 8192;
/// The length of the driver-name field.
pub const LLD_NAME_BYTES: usize = 64;
/// The tid that addresses no target (`GLOBAL_TID`): discovery accounts.
pub const GLOBAL_TID: i32 = -1;
/// The LUN field when the client gave none.
pub const NO_LUN: u64 = u64::MAX;

/// What a request addresses (`enum tgtadm_mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// The daemon.
    System,
    /// A target.
    Target,
    /// A logical unit.
    Device,
    /// A portal.
    Portal,
    /// A low-level driver (only `iscsi` here).
    Lld,
    /// A session.
    Session,
    /// A connection.
    Connection,
    /// A CHAP account.
    Account,
    /// Per-target counters (a gatewayd extension; tgt has no such mode).
    Stats,
}

/// The wire value of [`Mode::Stats`], far from tgt's own values.
pub const MODE_STATS_CODE: u32 = 100;

impl Mode {
    const ALL: [Mode; 8] = [
        Mode::System,
        Mode::Target,
        Mode::Device,
        Mode::Portal,
        Mode::Lld,
        Mode::Session,
        Mode::Connection,
        Mode::Account,
    ];

    /// The wire value.
    pub fn code(self) -> u32 {
        if self == Mode::Stats {
            return MODE_STATS_CODE;
        }
        Mode::ALL.iter().position(|&m| m == self).expect("listed") as u32
    }

    /// From the wire value.
    pub fn from_code(code: u32) -> Option<Mode> {
        if code == MODE_STATS_CODE {
            return Some(Mode::Stats);
        }
        Mode::ALL.get(code as usize).copied()
    }

    /// From tgtadm's `--mode` word (and its abbreviations).
    pub fn from_word(word: &str) -> Option<Mode> {
        Some(match word {
            "system" | "sys" => Mode::System,
            "target" | "tgt" => Mode::Target,
            "logicalunit" | "lu" => Mode::Device,
            "portal" | "pt" => Mode::Portal,
            "session" | "sess" => Mode::Session,
            "connection" | "conn" => Mode::Connection,
            "account" => Mode::Account,
            "lld" => Mode::Lld,
            "stats" => Mode::Stats,
            _ => return None,
        })
    }
}

/// What to do (`enum tgtadm_op`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// Create.
    New,
    /// Remove.
    Delete,
    /// Print.
    Show,
    /// Allow (an initiator, an account).
    Bind,
    /// Disallow.
    Unbind,
    /// Change a parameter.
    Update,
    /// Print counters.
    Stats,
    /// Start a driver.
    Start,
    /// Stop a driver.
    Stop,
}

impl Op {
    const ALL: [Op; 9] = [
        Op::New,
        Op::Delete,
        Op::Show,
        Op::Bind,
        Op::Unbind,
        Op::Update,
        Op::Stats,
        Op::Start,
        Op::Stop,
    ];

    /// The wire value.
    pub fn code(self) -> u32 {
        Op::ALL.iter().position(|&o| o == self).expect("listed") as u32
    }

    /// From the wire value.
    pub fn from_code(code: u32) -> Option<Op> {
        Op::ALL.get(code as usize).copied()
    }

    /// From tgtadm's `--op` word.
    pub fn from_word(word: &str) -> Option<Op> {
        Some(match word {
            "new" => Op::New,
            "delete" => Op::Delete,
            "bind" => Op::Bind,
            "unbind" => Op::Unbind,
            "show" => Op::Show,
            "update" => Op::Update,
            "stat" => Op::Stats,
            "start" => Op::Start,
            "stop" => Op::Stop,
            _ => return None,
        })
    }
}

/// Why a request failed (`enum tgtadm_errno`), with tgtadm's own wording.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[allow(missing_docs)]
pub enum AdmErr {
    #[error("unknown error")]
    Unknown,
    #[error("out of memory")]
    NoMem,
    #[error("can't find the driver")]
    NoDriver,
    #[error("can't find the target")]
    NoTarget,
    #[error("can't find the logical unit")]
    NoLun,
    #[error("can't find the session")]
    NoSession,
    #[error("can't find the connection")]
    NoConnection,
    #[error("can't find the binding")]
    NoBinding,
    #[error("this target already exists")]
    TargetExists,
    #[error("this logical unit number already exists")]
    LunExists,
    #[error("this binding already exists")]
    BindingExists,
    #[error("this access control rule already exists")]
    AclExists,
    #[error("this access control rule does not exist")]
    AclNotFound,
    #[error("this account already exists")]
    UserExists,
    #[error("can't find the account")]
    NoUser,
    #[error("too many accounts")]
    TooManyUsers,
    #[error("invalid request")]
    InvalidRequest,
    #[error("this target already has an outgoing account")]
    OutAccountExists,
    #[error("this target is still active")]
    TargetActive,
    #[error("this logical unit is still active")]
    LunActive,
    #[error("this driver is busy")]
    DriverActive,
    #[error("this operation isn't supported")]
    Unsupported,
    #[error("unknown parameter")]
    UnknownParam,
    #[error("this device has Prevent Removal set")]
    PreventRemoval,
}

impl AdmErr {
    const ALL: [AdmErr; 24] = [
        AdmErr::Unknown,
        AdmErr::NoMem,
        AdmErr::NoDriver,
        AdmErr::NoTarget,
        AdmErr::NoLun,
        AdmErr::NoSession,
        AdmErr::NoConnection,
        AdmErr::NoBinding,
        AdmErr::TargetExists,
        AdmErr::LunExists,
        AdmErr::BindingExists,
        AdmErr::AclExists,
        AdmErr::AclNotFound,
        AdmErr::UserExists,
        AdmErr::NoUser,
        AdmErr::TooManyUsers,
        AdmErr::InvalidRequest,
        AdmErr::OutAccountExists,
        AdmErr::TargetActive,
        AdmErr::LunActive,
        AdmErr::DriverActive,
        AdmErr::Unsupported,
        AdmErr::UnknownParam,
        AdmErr::PreventRemoval,
    ];

    /// The wire value (0 is success, so errors start at 1).
    pub fn code(self) -> u32 {
        1 + AdmErr::ALL.iter().position(|&e| e == self).expect("listed") as u32
    }

    /// From the wire value; None for 0 (success) and for codes this side does not know.
    pub fn from_code(code: u32) -> Option<AdmErr> {
        code.checked_sub(1)
            .and_then(|i| AdmErr::ALL.get(i as usize).copied())
    }
}

/// A decoded request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// Mode.
    pub mode: Mode,
    /// Operation.
    pub op: Op,
    /// Driver name (`iscsi`, or empty for the default).
    pub lld: String,
    /// Target ID (-1: none given, or [`GLOBAL_TID`]).
    pub tid: i32,
    /// Session ID.
    pub sid: u64,
    /// LUN ([`NO_LUN`]: none given).
    pub lun: u64,
    /// Connection ID.
    pub cid: u32,
    /// SCSI host number (unused by iSCSI).
    pub host_no: u32,
    /// SCSI peripheral device type (0: disk).
    pub device_type: u32,
    /// Account direction: 0 incoming, 1 outgoing.
    pub ac_dir: u32,
    /// Unused by tgtadm.
    pub pack: u32,
    /// `--force`.
    pub force: bool,
    /// The parameter text, without its NUL.
    pub body: String,
}

/// Why bytes are not a request.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Unknown mode value.
    #[error("unknown mode {0}")]
    Mode(u32),
    /// Unknown op value.
    #[error("unknown operation {0}")]
    Op(u32),
    /// The length field is below the header size or above the limit.
    #[error("request length {0} is outside {REQ_BYTES}..={max}", max = REQ_BYTES + REQ_BODY_BYTES_MAX)]
    Length(u32),
    /// The parameter text is not UTF-8.
    #[error("parameter text is not UTF-8")]
    Text,
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_ne_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

impl Request {
    /// A request with every optional field as tgtadm leaves it.
    pub fn new(mode: Mode, op: Op) -> Request {
        Request {
            mode,
            op,
            lld: String::new(),
            tid: -1,
            sid: 0,
            lun: NO_LUN,
            cid: 0,
            host_no: 0,
            device_type: 0,
            ac_dir: 0,
            pack: 0,
            force: false,
            body: String::new(),
        }
    }

    /// The body length a header announces, checked against the limit.
    pub fn body_len(header: &[u8; REQ_BYTES]) -> Result<usize, WireError> {
        let len = u32_at(header, 72);
        let body = (len as usize)
            .checked_sub(REQ_BYTES)
            .filter(|&b| b <= REQ_BODY_BYTES_MAX)
            .ok_or(WireError::Length(len))?;
        Ok(body)
    }

    /// Decodes a header and its body (whose length [`Request::body_len`] gave).
    pub fn decode(header: &[u8; REQ_BYTES], body: &[u8]) -> Result<Request, WireError> {
        let mode = Mode::from_code(u32_at(header, 0)).ok_or(WireError::Mode(u32_at(header, 0)))?;
        let op = Op::from_code(u32_at(header, 4)).ok_or(WireError::Op(u32_at(header, 4)))?;
        let lld = &header[8..8 + LLD_NAME_BYTES];
        let lld_end = lld.iter().position(|&b| b == 0).unwrap_or(lld.len());
        let text_end = body.iter().position(|&b| b == 0).unwrap_or(body.len());
        Ok(Request {
            mode,
            op,
            lld: String::from_utf8_lossy(&lld[..lld_end]).into_owned(),
            tid: u32_at(header, 76) as i32,
            sid: u64_at(header, 80),
            lun: u64_at(header, 88),
            cid: u32_at(header, 96),
            host_no: u32_at(header, 100),
            device_type: u32_at(header, 104),
            ac_dir: u32_at(header, 108),
            pack: u32_at(header, 112),
            force: u32_at(header, 116) != 0,
            body: std::str::from_utf8(&body[..text_end])
                .map_err(|_| WireError::Text)?
                .to_owned(),
        })
    }

    /// Encodes the request as tgtadm sends it (the body NUL-terminated when not empty).
    pub fn encode(&self) -> Vec<u8> {
        let mut body = self.body.as_bytes().to_vec();
        if !body.is_empty() {
            body.push(0);
        }
        let mut out = vec![0u8; REQ_BYTES];
        out[0..4].copy_from_slice(&self.mode.code().to_ne_bytes());
        out[4..8].copy_from_slice(&self.op.code().to_ne_bytes());
        let lld = self.lld.as_bytes();
        let n = lld.len().min(LLD_NAME_BYTES - 1);
        out[8..8 + n].copy_from_slice(&lld[..n]);
        out[72..76].copy_from_slice(&((REQ_BYTES + body.len()) as u32).to_ne_bytes());
        out[76..80].copy_from_slice(&self.tid.to_ne_bytes());
        out[80..88].copy_from_slice(&self.sid.to_ne_bytes());
        out[88..96].copy_from_slice(&self.lun.to_ne_bytes());
        out[96..100].copy_from_slice(&self.cid.to_ne_bytes());
        out[100..104].copy_from_slice(&self.host_no.to_ne_bytes());
        out[104..108].copy_from_slice(&self.device_type.to_ne_bytes());
        out[108..112].copy_from_slice(&self.ac_dir.to_ne_bytes());
        out[112..116].copy_from_slice(&self.pack.to_ne_bytes());
        out[116..120].copy_from_slice(&u32::from(self.force).to_ne_bytes());
        out.extend_from_slice(&body);
        out
    }

    /// The parameters of the body: `name=value` items separated by commas, where tgtadm
    /// prefixes `--params` text with `targetOps ` or `portalOps `.
    pub fn params(&self) -> Vec<(String, String)> {
        self.body
            .split(',')
            .map(|item| {
                let item = item
                    .strip_prefix("targetOps ")
                    .or_else(|| item.strip_prefix("portalOps "))
                    .unwrap_or(item);
                match item.split_once('=') {
                    Some((k, v)) => (k.trim().to_owned(), v.to_owned()),
                    None => (item.trim().to_owned(), String::new()),
                }
            })
            .filter(|(k, _)| !k.is_empty())
            .collect()
    }

    /// The value of parameter `name`, if given.
    pub fn param(&self, name: &str) -> Option<String> {
        self.params()
            .into_iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }
}

/// Encodes a response: success with text (NUL-terminated when not empty), or an error.
pub fn encode_response(result: &Result<String, AdmErr>) -> Vec<u8> {
    let (err, text) = match result {
        Ok(text) => (0u32, text.as_bytes()),
        Err(e) => (e.code(), &[][..]),
    };
    let body = if text.is_empty() { 0 } else { text.len() + 1 };
    let mut out = Vec::with_capacity(RSP_BYTES + body);
    out.extend_from_slice(&err.to_ne_bytes());
    out.extend_from_slice(&((RSP_BYTES + body) as u32).to_ne_bytes());
    if body > 0 {
        out.extend_from_slice(text);
        out.push(0);
    }
    out
}

/// Decodes a response header: (error code, body bytes that follow).
pub fn decode_response_header(header: &[u8; RSP_BYTES]) -> (u32, usize) {
    let err = u32_at(header, 0);
    let len = u32_at(header, 4) as usize;
    (err, len.saturating_sub(RSP_BYTES))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_round_trip() {
        let mut req = Request::new(Mode::Device, Op::New);
        req.lld = "iscsi".into();
        req.tid = 3;
        req.lun = 7;
        req.force = true;
        req.body = "path=/tmp/x,bstype=aio".into();
        let bytes = req.encode();
        assert_eq!(bytes.len(), REQ_BYTES + req.body.len() + 1);
        let header: [u8; REQ_BYTES] = bytes[..REQ_BYTES].try_into().unwrap();
        assert_eq!(Request::body_len(&header).unwrap(), req.body.len() + 1);
        let back = Request::decode(&header, &bytes[REQ_BYTES..]).unwrap();
        assert_eq!(back, req);
        assert_eq!(back.param("bstype").as_deref(), Some("aio"));
    }

    #[test]
    fn field_offsets_match_struct_tgtadm_req() {
        let mut req = Request::new(Mode::Account, Op::Update);
        req.tid = 0x0102_0304;
        req.sid = 0x1111_2222_3333_4444;
        req.cid = 9;
        let b = req.encode();
        assert_eq!(u32_at(&b, 0), 7);
        assert_eq!(u32_at(&b, 4), 5);
        assert_eq!(u32_at(&b, 76), 0x0102_0304);
        assert_eq!(u64_at(&b, 80), 0x1111_2222_3333_4444);
        assert_eq!(u64_at(&b, 88), NO_LUN);
        assert_eq!(u32_at(&b, 96), 9);
    }

    #[test]
    fn lengths_outside_the_limit_are_refused() {
        let mut header = [0u8; REQ_BYTES];
        header[72..76].copy_from_slice(&10u32.to_ne_bytes());
        assert_eq!(Request::body_len(&header), Err(WireError::Length(10)));
        header[72..76].copy_from_slice(&(1u32 << 30).to_ne_bytes());
        assert!(Request::body_len(&header).is_err());
        header[0..4].copy_from_slice(&99u32.to_ne_bytes());
        header[72..76].copy_from_slice(&(REQ_BYTES as u32).to_ne_bytes());
        assert_eq!(Request::decode(&header, &[]), Err(WireError::Mode(99)));
    }

    #[test]
    fn params_strip_tgtadm_prefixes() {
        let mut req = Request::new(Mode::Device, Op::Update);
        req.body = "targetOps vendor_id=ACME,product_id=Disk one,".into();
        assert_eq!(
            req.params(),
            vec![
                ("vendor_id".into(), "ACME".into()),
                ("product_id".into(), "Disk one".into())
            ]
        );
    }

    #[test]
    fn error_codes_follow_tgtadm_errno() {
        assert_eq!(AdmErr::NoTarget.code(), 4);
        assert_eq!(AdmErr::PreventRemoval.code(), 24);
        assert_eq!(AdmErr::from_code(16), Some(AdmErr::TooManyUsers));
        assert_eq!(AdmErr::from_code(0), None);
        assert_eq!(AdmErr::NoTarget.to_string(), "can't find the target");
        let ok = encode_response(&Ok("x\n".into()));
        assert_eq!(ok.len(), RSP_BYTES + 3);
        let header: [u8; RSP_BYTES] = ok[..RSP_BYTES].try_into().unwrap();
        assert_eq!(decode_response_header(&header), (0, 3));
    }
}
