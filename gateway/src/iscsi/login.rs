//! The target side of the login phase (RFC 7143 §6, §11.12–13), one Login Request at a time.
//!
//! The machine checks the stage transitions, reassembles text sent with the Continue bit,
//! resolves the target (and its access rules) through a [`TargetDirectory`], negotiates every
//! key, and stops at [`LoginStep::Ready`] so the caller can decide the session's TSIH
//! (new session, reinstatement) before the final response is built.

use super::params::{negotiate, Answer, SessionParams, SessionType, TargetLimits};
use super::pdu::{Bhs, LoginRequest, LoginResponse};
use super::reader::Pdu;
use super::text::{self, TEXT_BYTES_MAX};

/// Most Login Request PDUs one login may take.
pub const LOGIN_PDUS_MAX: u32 = 32;
/// Commands a session may have outstanding: MaxCmdSN runs this far ahead of ExpCmdSN.
pub const COMMAND_WINDOW: u32 = 256;

/// Stages (RFC 7143 §11.12.3).
const STAGE_SECURITY: u8 = 0;
const STAGE_OPERATIONAL: u8 = 1;
const STAGE_FULL_FEATURE: u8 = 3;

/// Login status codes (class, detail), RFC 7143 §11.13.5.
pub mod status {
    /// Initiator error (misc).
    pub const INITIATOR_ERROR: (u8, u8) = (0x02, 0x00);
    /// Authentication failure.
    pub const AUTH_FAILURE: (u8, u8) = (0x02, 0x01);
    /// Authorization failure.
    pub const NOT_AUTHORIZED: (u8, u8) = (0x02, 0x02);
    /// Target not found.
    pub const NOT_FOUND: (u8, u8) = (0x02, 0x03);
    /// Unsupported version.
    pub const UNSUPPORTED_VERSION: (u8, u8) = (0x02, 0x05);
    /// Too many connections.
    pub const TOO_MANY_CONNECTIONS: (u8, u8) = (0x02, 0x06);
    /// Missing parameter.
    pub const MISSING_PARAMETER: (u8, u8) = (0x02, 0x07);
    /// Session type not supported.
    pub const SESSION_TYPE_UNSUPPORTED: (u8, u8) = (0x02, 0x09);
    /// Invalid request during login.
    pub const INVALID_DURING_LOGIN: (u8, u8) = (0x02, 0x0b);
    /// Out of resources.
    pub const OUT_OF_RESOURCES: (u8, u8) = (0x03, 0x02);
}

/// Why a target refuses a login.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoginRefusal {
    /// No such target.
    NotFound,
    /// Its access rules exclude this initiator.
    NotAuthorized,
}

/// A target a login names, as the directory resolved it.
#[derive(Clone, Debug)]
pub struct ResolvedTarget {
    /// Target ID.
    pub tid: u32,
    /// Portal group tag.
    pub tpgt: u16,
    /// Alias to declare, if any.
    pub alias: Option<String>,
    /// The target's own limits (its iSCSI keys).
    pub limits: TargetLimits,
}

/// Resolves target names (and applies access rules) for logins.
pub trait TargetDirectory {
    /// Resolves `target_name` for `initiator_name`.
    fn resolve(
        &self,
        target_name: &str,
        initiator_name: &str,
    ) -> Result<ResolvedTarget, LoginRefusal>;
}

/// What a completed negotiation decided.
#[derive(Clone, Debug)]
pub struct LoginOutcome {
    /// Negotiated parameters.
    pub params: SessionParams,
    /// The initiator's session ID part.
    pub isid: [u8; 6],
    /// TSIH the initiator asked for (0: a new session).
    pub tsih: u16,
    /// Connection ID.
    pub cid: u16,
    /// The target (None for discovery).
    pub tid: Option<u32>,
    /// The CmdSN the first command will carry.
    pub exp_cmdsn: u32,
    /// The StatSN the first full-feature response will carry.
    pub statsn: u32,
}

/// What to do after a Login Request.
#[derive(Debug)]
pub enum LoginStep {
    /// Send this response and wait for the next request.
    Continue {
        /// Header.
        bhs: Bhs,
        /// Data segment.
        data: Vec<u8>,
    },
    /// Negotiation is complete; call [`Login::finish`] with the session's TSIH.
    Ready(Box<LoginOutcome>),
    /// Send this response, then close the connection.
    Fail {
        /// Header.
        bhs: Bhs,
        /// Data segment.
        data: Vec<u8>,
        /// Why, for the log.
        reason: String,
    },
}

/// The login state of one connection.
#[derive(Debug)]
pub struct Login {
    limits: TargetLimits,
    portal_tpgt: u16,
    first: Option<LoginRequest>,
    last: Option<LoginRequest>,
    statsn: u32,
    stage: u8,
    params: SessionParams,
    tid: Option<u32>,
    pdus: u32,
    text: Vec<u8>,
    /// Keys to send in the final response.
    final_keys: Vec<u8>,
    tpgt_sent: bool,
    mrdsl_sent: bool,
    finished: bool,
}

impl Login {
    /// A login on a portal of group `portal_tpgt`, offering `limits` until a target is named.
    pub fn new(limits: TargetLimits, portal_tpgt: u16) -> Login {
        let params = SessionParams::defaults(&limits);
        Login {
            limits,
            portal_tpgt,
            first: None,
            last: None,
            statsn: 0,
            stage: STAGE_SECURITY,
            params,
            tid: None,
            pdus: 0,
            text: Vec::new(),
            final_keys: Vec::new(),
            tpgt_sent: false,
            mrdsl_sent: false,
            finished: false,
        }
    }

    fn response(
        &mut self,
        req: &LoginRequest,
        transit: bool,
        nsg: u8,
        class_detail: (u8, u8),
        tsih: u16,
        data: &[u8],
    ) -> Bhs {
        let statsn = self.statsn;
        self.statsn = self.statsn.wrapping_add(1);
        LoginResponse {
            transit,
            continue_: false,
            csg: req.csg,
            nsg: if transit { nsg } else { 0 },
            version_max: 0,
            version_active: 0,
            isid: req.isid,
            tsih,
            itt: req.itt,
            statsn,
            exp_cmdsn: req.cmdsn,
            max_cmdsn: req.cmdsn.wrapping_add(COMMAND_WINDOW - 1),
            status_class: class_detail.0,
            status_detail: class_detail.1,
            data_segment_len: data.len() as u32,
        }
        .encode()
    }

    fn fail(&mut self, req: &LoginRequest, code: (u8, u8), reason: String) -> LoginStep {
        let bhs = self.response(req, false, 0, code, 0, &[]);
        LoginStep::Fail {
            bhs,
            data: Vec::new(),
            reason,
        }
    }

    /// A failure response for the last request, for refusals decided after negotiation.
    fn refuse(&mut self, code: (u8, u8)) -> (Bhs, Vec<u8>) {
        let req = self.last.expect("refusals follow a request");
        (self.response(&req, false, 0, code, 0, &[]), Vec::new())
    }

    /// Refuses adding a connection to an existing session (MaxConnections=1).
    pub fn refuse_too_many_connections(&mut self) -> (Bhs, Vec<u8>) {
        self.refuse(status::TOO_MANY_CONNECTIONS)
    }

    /// Refuses for lack of resources (sessions per target exhausted).
    pub fn refuse_out_of_resources(&mut self) -> (Bhs, Vec<u8>) {
        self.refuse(status::OUT_OF_RESOURCES)
    }

    /// Processes one Login Request PDU.
    pub fn on_pdu(&mut self, pdu: &Pdu, dir: &dyn TargetDirectory) -> LoginStep {
        let req = match LoginRequest::parse(&pdu.bhs) {
            Ok(r) => r,
            Err(_) => {
                let req = self.last.unwrap_or(LoginRequest {
                    transit: false,
                    continue_: false,
                    csg: 0,
                    nsg: 0,
                    version_max: 0,
                    version_min: 0,
                    isid: [0; 6],
                    tsih: 0,
                    itt: pdu.bhs.itt(),
                    cid: 0,
                    cmdsn: 0,
                    exp_statsn: 0,
                });
                return self.fail(
                    &req,
                    status::INVALID_DURING_LOGIN,
                    format!("{:?} during login", pdu.bhs),
                );
            }
        };
        self.last = Some(req);
        self.pdus += 1;
        if self.finished || self.pdus > LOGIN_PDUS_MAX {
            return self.fail(&req, status::INITIATOR_ERROR, "too many login PDUs".into());
        }
        match self.first {
            None => {
                self.statsn = req.exp_statsn;
                if req.version_min > 0 {
                    return self.fail(
                        &req,
                        status::UNSUPPORTED_VERSION,
                        format!("version {}..{}", req.version_min, req.version_max),
                    );
                }
                if req.csg != STAGE_SECURITY && req.csg != STAGE_OPERATIONAL {
                    return self.fail(
                        &req,
                        status::INITIATOR_ERROR,
                        format!("login starts in stage {}", req.csg),
                    );
                }
                self.stage = req.csg;
                self.first = Some(req);
            }
            Some(first) => {
                if first.isid != req.isid || first.tsih != req.tsih || first.cid != req.cid {
                    return self.fail(
                        &req,
                        status::INITIATOR_ERROR,
                        "ISID, TSIH or CID changed during login".into(),
                    );
                }
                if req.csg != self.stage {
                    return self.fail(
                        &req,
                        status::INITIATOR_ERROR,
                        format!("stage {} where {} was due", req.csg, self.stage),
                    );
                }
            }
        }
        if req.transit && (req.nsg <= req.csg || req.nsg == 2 || (req.continue_)) {
            return self.fail(
                &req,
                status::INITIATOR_ERROR,
                format!("bad transition {} -> {}", req.csg, req.nsg),
            );
        }
        if self.text.len() + pdu.data.len() > TEXT_BYTES_MAX {
            return self.fail(&req, status::INITIATOR_ERROR, "login text too long".into());
        }
        self.text.extend_from_slice(&pdu.data);
        if req.continue_ {
            // More text follows in the next request: acknowledge with an empty response.
            let bhs = self.response(&req, false, 0, (0, 0), 0, &[]);
            return LoginStep::Continue {
                bhs,
                data: Vec::new(),
            };
        }
        let text = std::mem::take(&mut self.text);
        let pairs = match text::parse(&text) {
            Ok(p) => p,
            Err(e) => return self.fail(&req, status::INITIATOR_ERROR, e.to_string()),
        };
        let mut reply = Vec::new();
        if let Err((code, reason)) = self.declaratives(&pairs, dir, &mut reply) {
            return self.fail(&req, code, reason);
        }
        for (k, v) in &pairs {
            match k.as_str() {
                "InitiatorName" | "InitiatorAlias" | "TargetName" | "SessionType" => {}
                "AuthMethod" => {
                    if req.csg != STAGE_SECURITY {
                        text::push(&mut reply, k, "Irrelevant");
                    } else if v.split(',').any(|m| m == "None") {
                        text::push(&mut reply, k, "None");
                    } else {
                        return self.fail(
                            &req,
                            status::AUTH_FAILURE,
                            format!("AuthMethod={v}: only None is offered"),
                        );
                    }
                }
                k if k.starts_with("CHAP_") => {
                    return self.fail(&req, status::AUTH_FAILURE, "CHAP is not configured".into());
                }
                "TargetAlias" | "TargetAddress" | "TargetPortalGroupTag" => {
                    text::push(&mut reply, k, "Irrelevant");
                }
                _ => match negotiate(k, v, &self.limits, &mut self.params) {
                    Answer::Reply(r) => text::push(&mut reply, k, &r),
                    Answer::Silent => {}
                    Answer::Fail(reason) => {
                        return self.fail(&req, status::INITIATOR_ERROR, reason)
                    }
                },
            }
        }
        if self.params.session_type == SessionType::Normal && !self.tpgt_sent {
            text::push(
                &mut reply,
                "TargetPortalGroupTag",
                &self.params.target_portal_group_tag.to_string(),
            );
            self.tpgt_sent = true;
        }
        let going_operational =
            req.csg == STAGE_OPERATIONAL || (req.transit && req.nsg == STAGE_FULL_FEATURE);
        if going_operational && !self.mrdsl_sent {
            text::push(
                &mut reply,
                "MaxRecvDataSegmentLength",
                &self.limits.max_recv_data_segment_len.to_string(),
            );
            self.mrdsl_sent = true;
        }
        if req.transit && req.nsg == STAGE_FULL_FEATURE {
            if !self.limits.header_digest.none && !self.params.header_digest {
                return self.fail(
                    &req,
                    status::INITIATOR_ERROR,
                    "the target requires HeaderDigest=CRC32C".into(),
                );
            }
            if !self.limits.data_digest.none && !self.params.data_digest {
                return self.fail(
                    &req,
                    status::INITIATOR_ERROR,
                    "the target requires DataDigest=CRC32C".into(),
                );
            }
            self.final_keys = reply;
            self.finished = true;
            let first = self.first.expect("set on the first PDU");
            return LoginStep::Ready(Box::new(LoginOutcome {
                params: self.params.clone(),
                isid: first.isid,
                tsih: first.tsih,
                cid: first.cid,
                tid: self.tid,
                exp_cmdsn: req.cmdsn,
                // The final response takes the current StatSN; full-feature responses follow.
                statsn: self.statsn.wrapping_add(1),
            }));
        }
        let (transit, nsg) = if req.transit {
            self.stage = req.nsg;
            (true, req.nsg)
        } else {
            (false, 0)
        };
        let bhs = self.response(&req, transit, nsg, (0, 0), 0, &reply);
        LoginStep::Continue { bhs, data: reply }
    }

    /// Handles InitiatorName, SessionType and TargetName, resolving the target once named.
    fn declaratives(
        &mut self,
        pairs: &[(String, String)],
        dir: &dyn TargetDirectory,
        reply: &mut Vec<u8>,
    ) -> Result<(), ((u8, u8), String)> {
        let mut target_name = None;
        for (k, v) in pairs {
            match k.as_str() {
                "InitiatorName" => self.params.initiator_name = v.clone(),
                "InitiatorAlias" => self.params.initiator_alias = Some(v.clone()),
                "SessionType" => {
                    self.params.session_type = match v.as_str() {
                        "Discovery" => SessionType::Discovery,
                        "Normal" => SessionType::Normal,
                        _ => {
                            return Err((
                                status::SESSION_TYPE_UNSUPPORTED,
                                format!("SessionType={v}"),
                            ))
                        }
                    }
                }
                "TargetName" => target_name = Some(v.clone()),
                _ => {}
            }
        }
        if self.pdus == 1 && self.params.initiator_name.is_empty() {
            return Err((status::MISSING_PARAMETER, "no InitiatorName".into()));
        }
        if self.params.session_type == SessionType::Discovery {
            return Ok(());
        }
        match (target_name, &self.params.target_name) {
            (Some(name), None) => {
                let resolved =
                    dir.resolve(&name, &self.params.initiator_name)
                        .map_err(|r| match r {
                            LoginRefusal::NotFound => {
                                (status::NOT_FOUND, format!("no target {name}"))
                            }
                            LoginRefusal::NotAuthorized => (
                                status::NOT_AUTHORIZED,
                                format!("{name} does not admit this initiator"),
                            ),
                        })?;
                self.tid = Some(resolved.tid);
                self.params.target_name = Some(name);
                self.params.target_portal_group_tag = resolved.tpgt;
                self.params.max_recv_data_segment_len = resolved.limits.max_recv_data_segment_len;
                self.limits = resolved.limits;
                if let Some(alias) = resolved.alias.or_else(|| self.limits.target_alias.clone()) {
                    text::push(reply, "TargetAlias", &alias);
                }
                let _ = self.portal_tpgt;
            }
            (Some(_), Some(_)) => {}
            (None, None) => {
                return Err((
                    status::MISSING_PARAMETER,
                    "no TargetName in a normal session".into(),
                ))
            }
            (None, Some(_)) => {}
        }
        Ok(())
    }

    /// Builds the final Login Response (transit to full-feature phase) with the session's TSIH.
    pub fn finish(&mut self, tsih: u16) -> (Bhs, Vec<u8>) {
        let req = self.last.expect("finish follows a request");
        let data = std::mem::take(&mut self.final_keys);
        let bhs = self.response(&req, true, STAGE_FULL_FEATURE, (0, 0), tsih, &data);
        (bhs, data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iscsi::pdu::LoginResponse;

    struct Dir;
    impl TargetDirectory for Dir {
        fn resolve(&self, name: &str, initiator: &str) -> Result<ResolvedTarget, LoginRefusal> {
            match name {
                "iqn.t:a" if initiator != "iqn.denied" => Ok(ResolvedTarget {
                    tid: 1,
                    tpgt: 1,
                    alias: None,
                    limits: TargetLimits::default(),
                }),
                "iqn.t:a" => Err(LoginRefusal::NotAuthorized),
                _ => Err(LoginRefusal::NotFound),
            }
        }
    }

    fn request(csg: u8, nsg: u8, transit: bool, keys: &[(&str, &str)]) -> Pdu {
        let mut data = Vec::new();
        for (k, v) in keys {
            text::push(&mut data, k, v);
        }
        let bhs = LoginRequest {
            transit,
            continue_: false,
            csg,
            nsg,
            version_max: 0,
            version_min: 0,
            isid: [0x80, 0, 0, 0, 0, 1],
            tsih: 0,
            itt: 7,
            cid: 0,
            cmdsn: 42,
            exp_statsn: 0,
        }
        .encode(data.len() as u32);
        Pdu {
            bhs,
            ahs: Vec::new(),
            data,
        }
    }

    fn keys(data: &[u8]) -> Vec<(String, String)> {
        text::parse(data).unwrap()
    }

    #[test]
    fn libiscsi_style_normal_login() {
        let mut l = Login::new(TargetLimits::default(), 1);
        let step = l.on_pdu(
            &request(
                0,
                1,
                true,
                &[
                    ("InitiatorName", "iqn.i"),
                    ("TargetName", "iqn.t:a"),
                    ("SessionType", "Normal"),
                    ("AuthMethod", "None"),
                ],
            ),
            &Dir,
        );
        let LoginStep::Continue { bhs, data } = step else {
            panic!("{step:?}")
        };
        let r = LoginResponse::parse(&bhs).unwrap();
        assert!(r.transit && r.csg == 0 && r.nsg == 1 && r.status_class == 0);
        let k = keys(&data);
        assert!(k.contains(&("AuthMethod".into(), "None".into())));
        assert!(k.contains(&("TargetPortalGroupTag".into(), "1".into())));
        let step = l.on_pdu(
            &request(
                1,
                3,
                true,
                &[
                    ("HeaderDigest", "None,CRC32C"),
                    ("DataDigest", "None,CRC32C"),
                    ("InitialR2T", "No"),
                    ("ImmediateData", "Yes"),
                    ("MaxBurstLength", "262144"),
                    ("FirstBurstLength", "262144"),
                    ("MaxRecvDataSegmentLength", "262144"),
                ],
            ),
            &Dir,
        );
        let LoginStep::Ready(outcome) = step else {
            panic!("{step:?}")
        };
        assert_eq!(outcome.tid, Some(1));
        assert_eq!(outcome.exp_cmdsn, 42);
        assert!(!outcome.params.initial_r2t && outcome.params.immediate_data);
        assert_eq!(outcome.params.max_xmit_data_segment_len, 262144);
        let (bhs, data) = l.finish(5);
        let r = LoginResponse::parse(&bhs).unwrap();
        assert!(r.transit && r.nsg == 3 && r.tsih == 5);
        assert_eq!(r.statsn + 1, outcome.statsn);
        assert!(keys(&data)
            .iter()
            .any(|(k, _)| k == "MaxRecvDataSegmentLength"));
    }

    #[test]
    fn refusals() {
        let mut l = Login::new(TargetLimits::default(), 1);
        let step = l.on_pdu(
            &request(
                0,
                1,
                true,
                &[("InitiatorName", "iqn.i"), ("TargetName", "iqn.nope")],
            ),
            &Dir,
        );
        let LoginStep::Fail { bhs, .. } = step else {
            panic!()
        };
        let r = LoginResponse::parse(&bhs).unwrap();
        assert_eq!((r.status_class, r.status_detail), status::NOT_FOUND);
        let mut l = Login::new(TargetLimits::default(), 1);
        let step = l.on_pdu(
            &request(
                0,
                1,
                true,
                &[("InitiatorName", "iqn.denied"), ("TargetName", "iqn.t:a")],
            ),
            &Dir,
        );
        assert!(matches!(step, LoginStep::Fail { .. }));
        let mut l = Login::new(TargetLimits::default(), 1);
        let step = l.on_pdu(&request(0, 1, true, &[("TargetName", "iqn.t:a")]), &Dir);
        let LoginStep::Fail { bhs, .. } = step else {
            panic!()
        };
        assert_eq!(LoginResponse::parse(&bhs).unwrap().status_detail, 0x07);
        let mut l = Login::new(TargetLimits::default(), 1);
        let step = l.on_pdu(
            &request(
                0,
                0,
                true,
                &[("InitiatorName", "iqn.i"), ("SessionType", "Discovery")],
            ),
            &Dir,
        );
        assert!(
            matches!(step, LoginStep::Fail { .. }),
            "a transition must move forward"
        );
    }

    #[test]
    fn discovery_goes_straight_to_full_feature() {
        let mut l = Login::new(TargetLimits::default(), 1);
        let step = l.on_pdu(
            &request(
                0,
                3,
                true,
                &[
                    ("InitiatorName", "iqn.i"),
                    ("SessionType", "Discovery"),
                    ("AuthMethod", "None"),
                    ("MaxBurstLength", "1024"),
                ],
            ),
            &Dir,
        );
        let LoginStep::Ready(o) = step else {
            panic!("{step:?}")
        };
        assert_eq!(o.tid, None);
        assert_eq!(o.params.session_type, SessionType::Discovery);
    }
}
