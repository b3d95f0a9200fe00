//! The target side of the login phase (RFC 7143 §6, §11.12–13), one Login Request at a time.
//!
//! The machine checks the stage transitions, reassembles text sent with the Continue bit,
//! resolves the target (and its access rules and CHAP accounts) through a [`TargetDirectory`],
//! authenticates the initiator when accounts are configured, negotiates every key, and stops
//! at [`LoginStep::Ready`] so the caller can decide the session's TSIH (new session,
//! reinstatement) before the final response is built.
//!
//! Authentication (RFC 7143 §6.2, §12.1.3): when the target, or discovery, has incoming
//! accounts, the initiator must pass the security stage with `AuthMethod=CHAP`; skipping it,
//! offering only `None`, or failing the CHAP exchange ends the login with status 0x0201
//! (authentication failure). While the exchange runs the target answers with T=0 even when the
//! initiator asks to transit, and transits with the request that completes it.

use super::chap::{Accounts, ChapKeys, Exchange, Progress};
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
    /// Target error (misc).
    pub const TARGET_ERROR: (u8, u8) = (0x03, 0x00);
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
    /// Its CHAP accounts; no incoming account: no authentication.
    pub accounts: Accounts,
}

/// Resolves target names (and applies access rules) for logins.
pub trait TargetDirectory {
    /// Resolves `target_name` for `initiator_name`.
    fn resolve(
        &self,
        target_name: &str,
        initiator_name: &str,
    ) -> Result<ResolvedTarget, LoginRefusal>;

    /// The CHAP accounts discovery sessions authenticate with.
    fn discovery_accounts(&self) -> Accounts;
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
    /// The incoming CHAP account the initiator proved, if it authenticated.
    pub chap_user: Option<String>,
}

/// Where authentication stands.
#[derive(Debug)]
enum Auth {
    /// The first text has not been read: who logs in to what is not known yet.
    Unresolved,
    /// Authentication is required and no method has been chosen.
    Required,
    /// CHAP is chosen and under way.
    Chap(Box<Exchange>),
    /// Authenticated, or no authentication is required.
    Done,
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
    accounts: Accounts,
    auth: Auth,
    chap_user: Option<String>,
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
            accounts: Accounts::default(),
            auth: Auth::Unresolved,
            chap_user: None,
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
        if matches!(self.auth, Auth::Unresolved) {
            self.auth = if self.accounts.required() {
                Auth::Required
            } else {
                Auth::Done
            };
        }
        let mut chap_keys = ChapKeys::default();
        for (k, v) in &pairs {
            match k.as_str() {
                "InitiatorName" | "InitiatorAlias" | "TargetName" | "SessionType" => {}
                "AuthMethod" => {
                    if req.csg != STAGE_SECURITY {
                        text::push(&mut reply, k, "Irrelevant");
                        continue;
                    }
                    match self.auth_method(v) {
                        Ok(chosen) => text::push(&mut reply, k, chosen),
                        Err((code, reason)) => return self.fail(&req, code, reason),
                    }
                }
                k if k.starts_with("CHAP_") => match chap_keys.take(k, v) {
                    Ok(_) => {}
                    Err(e) => return self.fail(&req, status::AUTH_FAILURE, e.to_string()),
                },
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
        if !chap_keys.is_empty() {
            if let Err(reason) = self.chap_step(req.csg, &chap_keys, &mut reply) {
                return self.fail(&req, status::AUTH_FAILURE, reason);
            }
        }
        let mut transit = req.transit;
        match self.auth {
            Auth::Done => {}
            _ if req.csg != STAGE_SECURITY => {
                return self.fail(
                    &req,
                    status::AUTH_FAILURE,
                    "the target requires CHAP; the initiator skipped the security stage".into(),
                );
            }
            // Authentication is under way: stay in the security stage until it completes.
            Auth::Chap(_) => transit = false,
            _ if transit => {
                return self.fail(
                    &req,
                    status::AUTH_FAILURE,
                    "the target requires CHAP; the initiator left the security stage without it"
                        .into(),
                );
            }
            _ => {}
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
            req.csg == STAGE_OPERATIONAL || (transit && req.nsg == STAGE_FULL_FEATURE);
        if going_operational && !self.mrdsl_sent {
            text::push(
                &mut reply,
                "MaxRecvDataSegmentLength",
                &self.limits.max_recv_data_segment_len.to_string(),
            );
            self.mrdsl_sent = true;
        }
        if transit && req.nsg == STAGE_FULL_FEATURE {
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
                chap_user: self.chap_user.clone(),
            }));
        }
        let (transit, nsg) = if transit {
            self.stage = req.nsg;
            (true, req.nsg)
        } else {
            (false, 0)
        };
        let bhs = self.response(&req, transit, nsg, (0, 0), 0, &reply);
        LoginStep::Continue { bhs, data: reply }
    }

    /// Answers an AuthMethod offer in the security stage.
    fn auth_method(&mut self, offer: &str) -> Result<&'static str, ((u8, u8), String)> {
        let offered = |m: &str| offer.split(',').any(|o| o == m);
        match self.auth {
            Auth::Done if !self.accounts.required() => {
                if offered("None") {
                    Ok("None")
                } else {
                    Err((
                        status::AUTH_FAILURE,
                        format!("AuthMethod={offer}: no CHAP account is configured, only None is offered"),
                    ))
                }
            }
            Auth::Required => {
                if !offered("CHAP") {
                    return Err((
                        status::AUTH_FAILURE,
                        format!("AuthMethod={offer}: the target requires CHAP"),
                    ));
                }
                let exchange = Exchange::from_os_random()
                    .map_err(|e| (status::TARGET_ERROR, e.to_string()))?;
                self.auth = Auth::Chap(Box::new(exchange));
                Ok("CHAP")
            }
            _ => Err((
                status::AUTH_FAILURE,
                format!("AuthMethod={offer} after authentication was negotiated"),
            )),
        }
    }

    /// Feeds one request's CHAP keys to the exchange and appends its answer to `reply`.
    fn chap_step(&mut self, csg: u8, keys: &ChapKeys, reply: &mut Vec<u8>) -> Result<(), String> {
        if csg != STAGE_SECURITY {
            return Err("CHAP keys outside the security stage".into());
        }
        let Auth::Chap(exchange) = &mut self.auth else {
            return Err("CHAP keys without AuthMethod=CHAP negotiated".into());
        };
        let who = &self.params.initiator_name;
        let keys_out = match exchange.step(keys, &self.accounts) {
            Ok(Progress::Challenge(keys_out)) => keys_out,
            Ok(Progress::Authenticated {
                user,
                reply: keys_out,
            }) => {
                self.chap_user = Some(user);
                self.auth = Auth::Done;
                keys_out
            }
            Err(e) => return Err(format!("CHAP from {who}: {e}")),
        };
        for (k, v) in keys_out {
            text::push(reply, k, &v);
        }
        Ok(())
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
                    let session_type = match v.as_str() {
                        "Discovery" => SessionType::Discovery,
                        "Normal" => SessionType::Normal,
                        _ => {
                            return Err((
                                status::SESSION_TYPE_UNSUPPORTED,
                                format!("SessionType={v}"),
                            ))
                        }
                    };
                    // The first text decides whose accounts authenticate the login; a later
                    // change of session type would escape them.
                    if !matches!(self.auth, Auth::Unresolved)
                        && session_type != self.params.session_type
                    {
                        return Err((
                            status::INITIATOR_ERROR,
                            "SessionType changed during login".into(),
                        ));
                    }
                    self.params.session_type = session_type;
                }
                "TargetName" => target_name = Some(v.clone()),
                _ => {}
            }
        }
        if self.pdus == 1 && self.params.initiator_name.is_empty() {
            return Err((status::MISSING_PARAMETER, "no InitiatorName".into()));
        }
        if self.params.session_type == SessionType::Discovery {
            if matches!(self.auth, Auth::Unresolved) {
                self.accounts = dir.discovery_accounts();
            }
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
                self.accounts = resolved.accounts;
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
pub(super) mod tests {
    use super::*;
    use crate::iscsi::chap::Account;
    use crate::iscsi::pdu::LoginResponse;

    pub(super) const SECRET: &str = "alice-secret-1";
    pub(super) const TARGET_SECRET: &str = "target-secret-1";

    fn accounts(outgoing: bool) -> Accounts {
        Accounts {
            incoming: vec![Account {
                user: "alice".into(),
                secret: SECRET.into(),
            }],
            outgoing: outgoing.then(|| Account {
                user: "target".into(),
                secret: TARGET_SECRET.into(),
            }),
        }
    }

    pub(super) struct Dir;
    impl TargetDirectory for Dir {
        fn resolve(&self, name: &str, initiator: &str) -> Result<ResolvedTarget, LoginRefusal> {
            let chap = |outgoing| ResolvedTarget {
                tid: 2,
                tpgt: 1,
                alias: None,
                limits: TargetLimits::default(),
                accounts: accounts(outgoing),
            };
            match name {
                "iqn.t:mutual" => Ok(chap(true)),
                "iqn.t:oneway" => Ok(chap(false)),
                "iqn.t:a" if initiator != "iqn.denied" => Ok(ResolvedTarget {
                    tid: 1,
                    tpgt: 1,
                    alias: None,
                    limits: TargetLimits::default(),
                    accounts: Accounts::default(),
                }),
                "iqn.t:a" => Err(LoginRefusal::NotAuthorized),
                _ => Err(LoginRefusal::NotFound),
            }
        }

        fn discovery_accounts(&self) -> Accounts {
            Accounts::default()
        }
    }

    /// Discovery requires CHAP.
    pub(super) struct GuardedDiscovery;
    impl TargetDirectory for GuardedDiscovery {
        fn resolve(&self, name: &str, initiator: &str) -> Result<ResolvedTarget, LoginRefusal> {
            Dir.resolve(name, initiator)
        }

        fn discovery_accounts(&self) -> Accounts {
            accounts(false)
        }
    }

    pub(super) fn request(csg: u8, nsg: u8, transit: bool, keys: &[(&str, &str)]) -> Pdu {
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

    pub(super) fn keys(data: &[u8]) -> Vec<(String, String)> {
        text::parse(data).unwrap()
    }

    /// The response of a Continue step and its keys.
    pub(super) fn continued(step: LoginStep) -> (LoginResponse, Vec<(String, String)>) {
        let LoginStep::Continue { bhs, data } = step else {
            panic!("{step:?}")
        };
        let r = LoginResponse::parse(&bhs).unwrap();
        assert_eq!(r.status_class, 0);
        (r, keys(&data))
    }

    /// The status of a failure step.
    pub(super) fn failure(step: LoginStep) -> (u8, u8) {
        let LoginStep::Fail { bhs, .. } = step else {
            panic!("expected a failure, got {step:?}")
        };
        let r = LoginResponse::parse(&bhs).unwrap();
        (r.status_class, r.status_detail)
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

/// CHAP in the login machine: whole exchanges against the test directory of `tests`.
#[cfg(test)]
mod chap_tests {
    use super::tests::*;
    use super::*;
    use crate::iscsi::chap::{encode_hex, Algorithm};

    /// Sends AuthMethod then CHAP_A; returns (algorithm, identifier, challenge) the target chose.
    fn challenge(
        l: &mut Login,
        dir: &dyn TargetDirectory,
        first: &[(&str, &str)],
        offer: &str,
    ) -> (Algorithm, u8, Vec<u8>) {
        let step = l.on_pdu(&request(0, 1, true, first), dir);
        let (r, k) = continued(step);
        assert!(!r.transit, "no transit before authentication");
        assert!(k.contains(&("AuthMethod".into(), "CHAP".into())), "{k:?}");
        let (r, k) = continued(l.on_pdu(&request(0, 1, false, &[("CHAP_A", offer)]), dir));
        assert!(!r.transit);
        let get = |key: &str| {
            k.iter()
                .find(|(kk, _)| kk == key)
                .map(|(_, v)| v.clone())
                .unwrap_or_else(|| panic!("{key} in {k:?}"))
        };
        let algorithm = Algorithm::from_code(get("CHAP_A").parse().unwrap()).unwrap();
        let identifier: u8 = get("CHAP_I").parse().unwrap();
        let challenge = crate::iscsi::chap::decode_binary("CHAP_C", &get("CHAP_C")).unwrap();
        assert!(challenge.len() >= 16);
        (algorithm, identifier, challenge)
    }

    fn normal(target: &str) -> Vec<(&str, &str)> {
        vec![
            ("InitiatorName", "iqn.i"),
            ("TargetName", target),
            ("SessionType", "Normal"),
            ("AuthMethod", "CHAP,None"),
        ]
    }

    fn respond(a: Algorithm, id: u8, c: &[u8], user: &str, secret: &str) -> (String, String) {
        (
            user.to_string(),
            encode_hex(&a.response(id, secret.as_bytes(), c)),
        )
    }

    /// The operational stage after authentication, up to Ready.
    fn finish_operational(l: &mut Login, dir: &dyn TargetDirectory) -> Box<LoginOutcome> {
        let step = l.on_pdu(
            &request(1, 3, true, &[("MaxRecvDataSegmentLength", "262144")]),
            dir,
        );
        let LoginStep::Ready(o) = step else {
            panic!("{step:?}")
        };
        o
    }

    #[test]
    fn one_way_chap_login() {
        let mut l = Login::new(TargetLimits::default(), 1);
        let (a, id, c) = challenge(&mut l, &Dir, &normal("iqn.t:oneway"), "5");
        assert_eq!(a, Algorithm::Md5);
        let (n, r) = respond(a, id, &c, "alice", SECRET);
        let (resp, k) = continued(l.on_pdu(
            &request(0, 1, true, &[("CHAP_N", &n), ("CHAP_R", &r)]),
            &Dir,
        ));
        assert!(resp.transit && resp.nsg == 1, "transit once authenticated");
        assert!(
            !k.iter().any(|(k, _)| k.starts_with("CHAP_")),
            "one-way: no target response {k:?}"
        );
        let o = finish_operational(&mut l, &Dir);
        assert_eq!(o.tid, Some(2));
        assert_eq!(o.chap_user.as_deref(), Some("alice"));
    }

    #[test]
    fn mutual_chap_login_with_sha256_and_base64() {
        let mut l = Login::new(TargetLimits::default(), 1);
        let (a, id, c) = challenge(&mut l, &Dir, &normal("iqn.t:mutual"), "99,7,5");
        assert_eq!(a, Algorithm::Sha256);
        let r = a.response(id, SECRET.as_bytes(), &c);
        // 0b: base64 (RFC 7143 §6.1) of the same response.
        let b64 = base64(&r);
        let mine = [0x33u8; 24];
        let (resp, k) = continued(l.on_pdu(
            &request(
                0,
                1,
                true,
                &[
                    ("CHAP_N", "alice"),
                    ("CHAP_R", &b64),
                    ("CHAP_I", "9"),
                    ("CHAP_C", &encode_hex(&mine)),
                ],
            ),
            &Dir,
        ));
        assert!(resp.transit && resp.nsg == 1);
        let want = encode_hex(&a.response(9, TARGET_SECRET.as_bytes(), &mine));
        assert!(k.contains(&("CHAP_N".into(), "target".into())), "{k:?}");
        assert!(k.contains(&("CHAP_R".into(), want)), "{k:?}");
        assert_eq!(
            finish_operational(&mut l, &Dir).chap_user.as_deref(),
            Some("alice")
        );
    }

    /// Runs a normal login up to the response and returns the step for that request.
    fn answer(
        target: &str,
        offer: &str,
        keys: impl Fn(Algorithm, u8, &[u8]) -> Vec<(String, String)>,
    ) -> LoginStep {
        let mut l = Login::new(TargetLimits::default(), 1);
        let (a, id, c) = challenge(&mut l, &Dir, &normal(target), offer);
        let pairs = keys(a, id, &c);
        let pairs: Vec<(&str, &str)> = pairs
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        l.on_pdu(&request(0, 1, true, &pairs), &Dir)
    }

    /// Builds the response keys from the algorithm, identifier and challenge the target sent.
    type KeysFor = dyn Fn(Algorithm, u8, &[u8]) -> Vec<(String, String)>;

    #[test]
    fn failed_exchanges_are_authentication_failures() {
        let cases: Vec<(&str, &str, Box<KeysFor>)> = vec![
            (
                "wrong secret",
                "iqn.t:oneway",
                Box::new(|a, id, c| {
                    let (n, r) = respond(a, id, c, "alice", "not-the-secret");
                    vec![("CHAP_N".into(), n), ("CHAP_R".into(), r)]
                }),
            ),
            (
                "wrong user",
                "iqn.t:oneway",
                Box::new(|a, id, c| {
                    let (n, r) = respond(a, id, c, "mallory", SECRET);
                    vec![("CHAP_N".into(), n), ("CHAP_R".into(), r)]
                }),
            ),
            (
                "wrong identifier",
                "iqn.t:oneway",
                Box::new(|a, id, c| {
                    let (n, r) = respond(a, id.wrapping_add(1), c, "alice", SECRET);
                    vec![("CHAP_N".into(), n), ("CHAP_R".into(), r)]
                }),
            ),
            (
                "missing CHAP_R",
                "iqn.t:oneway",
                Box::new(|_, _, _| vec![("CHAP_N".into(), "alice".into())]),
            ),
            (
                "reflected challenge",
                "iqn.t:mutual",
                Box::new(|a, id, c| {
                    let (n, r) = respond(a, id, c, "alice", SECRET);
                    vec![
                        ("CHAP_N".into(), n),
                        ("CHAP_R".into(), r),
                        ("CHAP_I".into(), id.to_string()),
                        ("CHAP_C".into(), encode_hex(c)),
                    ]
                }),
            ),
            (
                "short challenge",
                "iqn.t:mutual",
                Box::new(|a, id, c| {
                    let (n, r) = respond(a, id, c, "alice", SECRET);
                    vec![
                        ("CHAP_N".into(), n),
                        ("CHAP_R".into(), r),
                        ("CHAP_I".into(), "1".into()),
                        ("CHAP_C".into(), "0x0102".into()),
                    ]
                }),
            ),
            (
                "mutual without an outgoing account",
                "iqn.t:oneway",
                Box::new(|a, id, c| {
                    let (n, r) = respond(a, id, c, "alice", SECRET);
                    vec![
                        ("CHAP_N".into(), n),
                        ("CHAP_R".into(), r),
                        ("CHAP_I".into(), "1".into()),
                        ("CHAP_C".into(), encode_hex(&[9; 16])),
                    ]
                }),
            ),
            (
                "unknown CHAP key",
                "iqn.t:oneway",
                Box::new(|a, id, c| {
                    let (n, r) = respond(a, id, c, "alice", SECRET);
                    vec![
                        ("CHAP_N".into(), n),
                        ("CHAP_R".into(), r),
                        ("CHAP_X".into(), "1".into()),
                    ]
                }),
            ),
        ];
        for (what, target, keys) in cases {
            assert_eq!(
                failure(answer(target, "5", keys)),
                status::AUTH_FAILURE,
                "{what}"
            );
        }
    }

    #[test]
    fn chap_is_required_when_accounts_exist() {
        let first = |auth: &str| -> Vec<(&str, String)> {
            vec![
                ("InitiatorName", "iqn.i".into()),
                ("TargetName", "iqn.t:oneway".into()),
                ("AuthMethod", auth.into()),
            ]
        };
        let owned = |v: &[(&'static str, String)]| -> Vec<(&'static str, String)> { v.to_vec() };
        let send = |l: &mut Login, csg, nsg, t, keys: &[(&str, String)]| {
            let keys: Vec<(&str, &str)> = keys.iter().map(|(k, v)| (*k, v.as_str())).collect();
            l.on_pdu(&request(csg, nsg, t, &keys), &Dir)
        };
        // Only None offered.
        let mut l = Login::new(TargetLimits::default(), 1);
        assert_eq!(
            failure(send(&mut l, 0, 1, true, &first("None"))),
            status::AUTH_FAILURE
        );
        // The security stage skipped: libiscsi without credentials starts in operational.
        let mut l = Login::new(TargetLimits::default(), 1);
        let skip = owned(&[
            ("InitiatorName", "iqn.i".into()),
            ("TargetName", "iqn.t:oneway".into()),
        ]);
        assert_eq!(
            failure(send(&mut l, 1, 3, true, &skip)),
            status::AUTH_FAILURE
        );
        // Leaving the security stage without offering any AuthMethod.
        let mut l = Login::new(TargetLimits::default(), 1);
        assert_eq!(
            failure(send(&mut l, 0, 1, true, &skip)),
            status::AUTH_FAILURE
        );
        // No algorithm in common.
        let mut l = Login::new(TargetLimits::default(), 1);
        let (r, _) = continued(send(&mut l, 0, 1, true, &first("CHAP")));
        assert!(!r.transit);
        assert_eq!(
            failure(send(
                &mut l,
                0,
                1,
                false,
                &owned(&[("CHAP_A", "1,2,3".into())])
            )),
            status::AUTH_FAILURE
        );
        // Response keys before the algorithm.
        let mut l = Login::new(TargetLimits::default(), 1);
        continued(send(&mut l, 0, 1, true, &first("CHAP")));
        assert_eq!(
            failure(send(
                &mut l,
                0,
                1,
                true,
                &owned(&[("CHAP_N", "alice".into()), ("CHAP_R", "0x00".into())])
            )),
            status::AUTH_FAILURE
        );
        // CHAP keys at a target without accounts.
        let mut l = Login::new(TargetLimits::default(), 1);
        let open = owned(&[
            ("InitiatorName", "iqn.i".into()),
            ("TargetName", "iqn.t:a".into()),
            ("AuthMethod", "CHAP".into()),
        ]);
        assert_eq!(
            failure(send(&mut l, 0, 1, true, &open)),
            status::AUTH_FAILURE
        );
        // Asking to transit mid-exchange keeps the target in the security stage.
        let mut l = Login::new(TargetLimits::default(), 1);
        continued(send(&mut l, 0, 1, true, &first("CHAP,None")));
        let (r, _) = continued(send(&mut l, 0, 3, true, &owned(&[("CHAP_A", "5".into())])));
        assert!(!r.transit && r.csg == 0);
    }

    #[test]
    fn discovery_with_a_discovery_account() {
        let disco = [
            ("InitiatorName", "iqn.i"),
            ("SessionType", "Discovery"),
            ("AuthMethod", "CHAP,None"),
        ];
        let mut l = Login::new(TargetLimits::default(), 1);
        let (a, id, c) = challenge(&mut l, &GuardedDiscovery, &disco, "5");
        let (n, r) = respond(a, id, &c, "alice", SECRET);
        let step = l.on_pdu(
            &request(0, 3, true, &[("CHAP_N", &n), ("CHAP_R", &r)]),
            &GuardedDiscovery,
        );
        let LoginStep::Ready(o) = step else {
            panic!("{step:?}")
        };
        assert_eq!(o.tid, None);
        assert_eq!(o.chap_user.as_deref(), Some("alice"));
        // Without credentials.
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
                ],
            ),
            &GuardedDiscovery,
        );
        assert_eq!(failure(step), status::AUTH_FAILURE);
        // Discovery without an account needs nothing, as before.
        let mut l = Login::new(TargetLimits::default(), 1);
        let step = l.on_pdu(
            &request(
                0,
                3,
                true,
                &[
                    ("InitiatorName", "iqn.i"),
                    ("SessionType", "Discovery"),
                    ("AuthMethod", "CHAP,None"),
                ],
            ),
            &Dir,
        );
        assert!(matches!(step, LoginStep::Ready(_)), "{step:?}");
    }

    #[test]
    fn session_type_cannot_change_to_escape_authentication() {
        let mut l = Login::new(TargetLimits::default(), 1);
        let (r, _) = continued(l.on_pdu(
            &request(
                0,
                1,
                false,
                &[("InitiatorName", "iqn.i"), ("SessionType", "Discovery")],
            ),
            &Dir,
        ));
        assert!(!r.transit);
        let step = l.on_pdu(
            &request(
                0,
                1,
                true,
                &[("SessionType", "Normal"), ("TargetName", "iqn.t:oneway")],
            ),
            &Dir,
        );
        let LoginStep::Fail { reason, .. } = step else {
            panic!("{step:?}")
        };
        assert!(reason.contains("SessionType changed"), "{reason}");
    }

    fn base64(bytes: &[u8]) -> String {
        const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut s = String::from("0b");
        for chunk in bytes.chunks(3) {
            let mut b = [0u8; 3];
            b[..chunk.len()].copy_from_slice(chunk);
            let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
            for k in 0..4 {
                if k <= chunk.len() {
                    s.push(A[(n >> (18 - 6 * k) & 63) as usize] as char);
                } else {
                    s.push('=');
                }
            }
        }
        s
    }
}
