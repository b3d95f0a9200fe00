//! A small blocking iSCSI initiator over a plain socket, for what libiscsi's tools cannot do:
//! data digests (Debian's libiscsi 1.19 only offers DataDigest=None), session reinstatement
//! by ISID, deliberately broken PDUs, and an initiator that stops answering NOP-In pings.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use gateway::iscsi::pdu::{self, Bhs, DataOut, LoginRequest, LoginResponse, Opcode, ScsiCommand};
use gateway::iscsi::reader::{Digests, Pdu, PduReader};
use gateway::iscsi::{text, writer};

/// What a SCSI command returned.
#[derive(Debug)]
pub struct ScsiResult {
    /// SCSI status.
    pub status: u8,
    /// Data-in.
    pub data: Vec<u8>,
    /// Sense data, if any.
    pub sense: Vec<u8>,
}

/// One logged-in session (one connection).
#[derive(Debug)]
pub struct RawSession {
    sock: TcpStream,
    reader: PduReader,
    digests: Digests,
    cmdsn: u32,
    exp_statsn: u32,
    itt: u32,
    first_burst: u32,
    max_send: u32,
    answer_pings: bool,
    pings: u32,
}

/// The ITT and TTT value meaning "none" (RFC 7143 §11.2.1.5).
const RESERVED_TAG: u32 = 0xffff_ffff;

/// Whether a PDU is a target's NOP-In ping, which wants a NOP-Out back (RFC 7143 §11.19).
pub fn is_ping(p: &Pdu) -> bool {
    p.bhs.opcode() == Some(Opcode::NopIn) && p.bhs.u32_at(20) != RESERVED_TAG
}

/// Login options.
#[derive(Clone, Debug)]
pub struct LoginOptions {
    /// Initiator name.
    pub initiator: String,
    /// ISID.
    pub isid: [u8; 6],
    /// Offer CRC32C header digests only.
    pub header_digest: bool,
    /// Offer CRC32C data digests only.
    pub data_digest: bool,
    /// Our MaxRecvDataSegmentLength.
    pub max_recv: u32,
}

impl Default for LoginOptions {
    fn default() -> Self {
        LoginOptions {
            initiator: "iqn.2026-11.io.gateway.test:raw".into(),
            isid: [0x80, 0, 0, 0, 0x12, 0x34],
            header_digest: false,
            data_digest: false,
            max_recv: 65536,
        }
    }
}

impl RawSession {
    /// Logs in to `target` (operational stage straight to full feature phase).
    pub fn login(addr: SocketAddr, target: &str, o: &LoginOptions) -> Result<RawSession, String> {
        let sock = TcpStream::connect(addr).map_err(|e| e.to_string())?;
        sock.set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(|e| e.to_string())?;
        let mut s = RawSession {
            sock,
            reader: PduReader::new(1 << 24),
            digests: Digests::default(),
            cmdsn: 1,
            exp_statsn: 0,
            itt: 1,
            first_burst: 0,
            max_send: 8192,
            answer_pings: true,
            pings: 0,
        };
        let digest = |on: bool| if on { "CRC32C" } else { "None" };
        let mut data = Vec::new();
        for (k, v) in [
            ("InitiatorName", o.initiator.as_str()),
            ("TargetName", target),
            ("SessionType", "Normal"),
            ("HeaderDigest", digest(o.header_digest)),
            ("DataDigest", digest(o.data_digest)),
            ("ImmediateData", "Yes"),
            ("InitialR2T", "No"),
            ("FirstBurstLength", "65536"),
            ("MaxBurstLength", "262144"),
            ("MaxRecvDataSegmentLength", &o.max_recv.to_string()),
        ] {
            text::push(&mut data, k, v);
        }
        let bhs = LoginRequest {
            transit: true,
            continue_: false,
            csg: 1,
            nsg: 3,
            version_max: 0,
            version_min: 0,
            isid: o.isid,
            tsih: 0,
            itt: 0,
            cid: 0,
            cmdsn: s.cmdsn,
            exp_statsn: 0,
        }
        .encode(data.len() as u32);
        s.reader.set_peer_is_target(true);
        s.send(&bhs, &data)?;
        let reply = s.recv()?;
        let r = LoginResponse::parse(&reply.bhs).map_err(|e| e.to_string())?;
        if r.status_class != 0 {
            return Err(format!(
                "login refused: class {:#x} detail {:#x}",
                r.status_class, r.status_detail
            ));
        }
        if !(r.transit && r.nsg == 3) {
            return Err("the target did not move to full feature phase".into());
        }
        s.exp_statsn = r.statsn.wrapping_add(1);
        let keys = text::parse(&reply.data).map_err(|e| e.to_string())?;
        let get = |k: &str| keys.iter().find(|(kk, _)| kk == k).map(|(_, v)| v.clone());
        s.digests = Digests {
            header: get("HeaderDigest").as_deref() == Some("CRC32C"),
            data: get("DataDigest").as_deref() == Some("CRC32C"),
        };
        if s.digests.header != o.header_digest || s.digests.data != o.data_digest {
            return Err(format!("digests not negotiated as asked: {keys:?}"));
        }
        s.first_burst = get("FirstBurstLength")
            .and_then(|v| v.parse().ok())
            .unwrap_or(65536);
        s.max_send = get("MaxRecvDataSegmentLength")
            .and_then(|v| v.parse().ok())
            .unwrap_or(8192);
        s.reader.set_digests(s.digests);
        Ok(s)
    }

    /// Sends one PDU.
    pub fn send(&mut self, bhs: &Bhs, data: &[u8]) -> Result<(), String> {
        let mut wire = Vec::new();
        writer::encode_pdu(bhs, &[], data, self.digests, &mut wire);
        self.sock.write_all(&wire).map_err(|e| e.to_string())
    }

    /// Sends raw bytes (for broken PDUs).
    pub fn send_raw(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.sock.write_all(bytes).map_err(|e| e.to_string())
    }

    /// The digests in use.
    pub fn digests(&self) -> Digests {
        self.digests
    }

    /// Receives the next PDU that is not a NOP-In ping; pings are answered on the way, as an
    /// initiator must, unless [`RawSession::set_answer_pings`] said not to.
    pub fn recv(&mut self) -> Result<Pdu, String> {
        loop {
            let p = self.recv_any()?;
            if !is_ping(&p) {
                return Ok(p);
            }
            self.pings += 1;
            if self.answer_pings {
                self.answer_ping(&p)?;
            }
        }
    }

    /// Whether [`RawSession::recv`] answers pings (it does unless told otherwise).
    pub fn set_answer_pings(&mut self, yes: bool) {
        self.answer_pings = yes;
    }

    /// NOP-In pings received so far (answered or not).
    pub fn pings(&self) -> u32 {
        self.pings
    }

    /// Answers a NOP-In ping: an immediate NOP-Out with no ITT, echoing the LUN and the TTT
    /// (RFC 7143 §11.18), carrying the CmdSN without advancing it.
    pub fn answer_ping(&mut self, ping: &Pdu) -> Result<(), String> {
        let mut b = Bhs::default();
        b.0[0] = 0x40; // immediate NOP-Out
        b.0[1] = 0x80;
        b.0[8..16].copy_from_slice(&ping.bhs.0[8..16]);
        b.0[16..20].copy_from_slice(&RESERVED_TAG.to_be_bytes());
        b.0[20..24].copy_from_slice(&ping.bhs.0[20..24]);
        b.0[24..28].copy_from_slice(&self.cmdsn.to_be_bytes());
        b.0[28..32].copy_from_slice(&self.exp_statsn.to_be_bytes());
        self.send(&b, &[])
    }

    /// Waits up to `within` for the next PDU, whatever it is (pings included, unanswered).
    /// `Ok(None)`: nothing came in time.
    pub fn recv_within(&mut self, within: Duration) -> Result<Option<Pdu>, String> {
        let deadline = Instant::now() + within;
        let mut buf = vec![0u8; 65536];
        let result = loop {
            if let Some(p) = self.reader.next_pdu().map_err(|e| e.to_string())? {
                break Ok(Some(p));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break Ok(None);
            }
            self.sock
                .set_read_timeout(Some(left))
                .map_err(|e| e.to_string())?;
            match self.sock.read(&mut buf) {
                Ok(0) => break Err("connection closed by the target".to_string()),
                Ok(n) => self.reader.push(&buf[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => break Err(e.to_string()),
            }
        };
        self.sock
            .set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(|e| e.to_string())?;
        result
    }

    /// Reads, answering nothing, until the target closes the connection; counts the pings
    /// that came. Fails if it is still open after `within`.
    pub fn wait_closed(&mut self, within: Duration) -> Result<Duration, String> {
        let start = Instant::now();
        loop {
            let left = within.saturating_sub(start.elapsed());
            match self.recv_within(left) {
                Ok(Some(p)) => {
                    if is_ping(&p) {
                        self.pings += 1;
                    }
                }
                Ok(None) => {
                    return Err(format!(
                        "still open after {within:?} ({} pings)",
                        self.pings
                    ))
                }
                Err(_) => return Ok(start.elapsed()),
            }
        }
    }

    /// Receives one PDU, whatever it is.
    pub fn recv_any(&mut self) -> Result<Pdu, String> {
        let mut buf = vec![0u8; 65536];
        loop {
            if let Some(p) = self.reader.next_pdu().map_err(|e| e.to_string())? {
                return Ok(p);
            }
            let n = self.sock.read(&mut buf).map_err(|e| e.to_string())?;
            if n == 0 {
                return Err("connection closed by the target".into());
            }
            self.reader.push(&buf[..n]);
        }
    }

    /// Next CmdSN to use (and advances it).
    pub fn take_cmdsn(&mut self) -> u32 {
        let c = self.cmdsn;
        self.cmdsn = self.cmdsn.wrapping_add(1);
        c
    }

    /// The CmdSN the next non-immediate command will carry (immediate PDUs carry it too,
    /// without advancing it).
    pub fn cmdsn(&self) -> u32 {
        self.cmdsn
    }

    /// The ExpStatSN to send.
    pub fn exp_statsn(&self) -> u32 {
        self.exp_statsn
    }

    /// Runs a SCSI command on `lun` with `data_out` (immediate data, then R2T-solicited
    /// Data-Out) expecting up to `read_len` bytes of data-in.
    pub fn scsi(
        &mut self,
        lun: u64,
        cdb: &[u8],
        data_out: &[u8],
        read_len: u32,
    ) -> Result<ScsiResult, String> {
        let itt = self.itt;
        self.itt += 1;
        let mut c = [0u8; 16];
        c[..cdb.len()].copy_from_slice(cdb);
        let immediate = data_out
            .len()
            .min(self.first_burst as usize)
            .min(self.max_send as usize);
        let mut bhs = ScsiCommand {
            immediate: false,
            final_: data_out.len() == immediate,
            read: read_len > 0,
            write: !data_out.is_empty(),
            attr: 1,
            lun: pdu::lun_to_wire(lun),
            itt,
            expected_len: if data_out.is_empty() {
                read_len
            } else {
                data_out.len() as u32
            },
            cmdsn: self.take_cmdsn(),
            exp_statsn: self.exp_statsn,
            cdb: c,
        }
        .encode();
        bhs.set_data_segment_len(immediate as u32);
        self.send(&bhs, &data_out[..immediate])?;
        // Unsolicited Data-Out up to the first burst.
        let unsolicited_end = data_out.len().min(self.first_burst as usize);
        let mut offset = immediate;
        let mut datasn = 0;
        while offset < unsolicited_end {
            let n = (unsolicited_end - offset).min(self.max_send as usize);
            let d = DataOut {
                final_: offset + n == unsolicited_end,
                lun: pdu::lun_to_wire(lun),
                itt,
                ttt: 0xffff_ffff,
                exp_statsn: self.exp_statsn,
                datasn,
                buffer_offset: offset as u32,
            };
            self.send(&d.encode(n as u32), &data_out[offset..offset + n])?;
            datasn += 1;
            offset += n;
        }
        let mut data_in = vec![0u8; read_len as usize];
        loop {
            let p = self.recv()?;
            match p.bhs.opcode() {
                Some(Opcode::R2t) => {
                    let ttt = p.bhs.u32_at(20);
                    let start = p.bhs.u32_at(40) as usize;
                    let len = p.bhs.u32_at(44) as usize;
                    let mut sent = 0;
                    let mut sn = 0;
                    while sent < len {
                        let n = (len - sent).min(self.max_send as usize);
                        let at = start + sent;
                        let d = DataOut {
                            final_: sent + n == len,
                            lun: pdu::lun_to_wire(lun),
                            itt,
                            ttt,
                            exp_statsn: self.exp_statsn,
                            datasn: sn,
                            buffer_offset: at as u32,
                        };
                        self.send(&d.encode(n as u32), &data_out[at..at + n])?;
                        sn += 1;
                        sent += n;
                    }
                }
                Some(Opcode::DataIn) => {
                    let off = p.bhs.u32_at(40) as usize;
                    let end = off + p.data.len();
                    if end > data_in.len() {
                        return Err(format!("Data-In past the expected length: {end}"));
                    }
                    data_in[off..end].copy_from_slice(&p.data);
                    if p.bhs.flags() & 0x01 != 0 {
                        self.exp_statsn = p.bhs.u32_at(24).wrapping_add(1);
                        return Ok(ScsiResult {
                            status: p.bhs.0[3],
                            data: data_in,
                            sense: Vec::new(),
                        });
                    }
                }
                Some(Opcode::ScsiResponse) => {
                    self.exp_statsn = p.bhs.u32_at(24).wrapping_add(1);
                    let sense = if p.data.len() > 2 {
                        p.data[2..].to_vec()
                    } else {
                        Vec::new()
                    };
                    return Ok(ScsiResult {
                        status: p.bhs.0[3],
                        data: data_in,
                        sense,
                    });
                }
                other => return Err(format!("unexpected PDU {other:?}")),
            }
        }
    }
}
