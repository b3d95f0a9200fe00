//! Operational parameters: what a target offers, and negotiating each key with an initiator
//! (RFC 7143 §13).

/// Discovery or normal session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionType {
    /// SendTargets only.
    Discovery,
    /// SCSI commands to one target.
    Normal,
}

/// The parameters a session runs with.
#[derive(Clone, Debug, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct SessionParams {
    pub session_type: SessionType,
    pub initiator_name: String,
    pub initiator_alias: Option<String>,
    pub target_name: Option<String>,
    pub target_portal_group_tag: u16,
    pub header_digest: bool,
    pub data_digest: bool,
    /// What this target declared: the largest data segment it accepts.
    pub max_recv_data_segment_len: u32,
    /// What the initiator declared: the largest data segment we may send it.
    pub max_xmit_data_segment_len: u32,
    pub first_burst_len: u32,
    pub max_burst_len: u32,
    pub initial_r2t: bool,
    pub immediate_data: bool,
    pub max_outstanding_r2t: u32,
    pub data_pdu_in_order: bool,
    pub data_sequence_in_order: bool,
    pub error_recovery_level: u8,
    pub default_time2wait: u16,
    pub default_time2retain: u16,
    pub max_connections: u16,
}

impl SessionParams {
    /// RFC 7143 defaults, before negotiation.
    pub fn defaults(limits: &TargetLimits) -> SessionParams {
        SessionParams {
            session_type: SessionType::Normal,
            initiator_name: String::new(),
            initiator_alias: None,
            target_name: None,
            target_portal_group_tag: 1,
            header_digest: false,
            data_digest: false,
            max_recv_data_segment_len: limits.max_recv_data_segment_len,
            max_xmit_data_segment_len: 8192,
            first_burst_len: 65536.min(limits.first_burst_len),
            max_burst_len: 262144.min(limits.max_burst_len),
            initial_r2t: true,
            immediate_data: limits.immediate_data,
            max_outstanding_r2t: 1,
            data_pdu_in_order: true,
            data_sequence_in_order: true,
            error_recovery_level: 0,
            default_time2wait: 2,
            default_time2retain: 0,
            max_connections: 1,
        }
    }
}

/// Which digest values a target accepts, in preference order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DigestPolicy {
    /// Accept CRC32C.
    pub crc32c: bool,
    /// Accept None.
    pub none: bool,
}

impl Default for DigestPolicy {
    fn default() -> Self {
        DigestPolicy {
            crc32c: true,
            none: true,
        }
    }
}

/// What a target offers and accepts; defaults are tuned for speed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct TargetLimits {
    pub max_recv_data_segment_len: u32,
    /// A cap on what we will send regardless of what the initiator declares (tgt's
    /// MaxXmitDataSegmentLength).
    pub max_xmit_data_segment_len: u32,
    pub max_burst_len: u32,
    pub first_burst_len: u32,
    pub initial_r2t: bool,
    pub immediate_data: bool,
    pub max_outstanding_r2t: u32,
    pub max_connections: u16,
    pub header_digest: DigestPolicy,
    pub data_digest: DigestPolicy,
    pub data_pdu_in_order: bool,
    pub data_sequence_in_order: bool,
    pub default_time2wait: u16,
    pub default_time2retain: u16,
    pub target_alias: Option<String>,
}

impl Default for TargetLimits {
    fn default() -> Self {
        TargetLimits {
            max_recv_data_segment_len: 262144,
            max_xmit_data_segment_len: 262144,
            max_burst_len: 262144,
            first_burst_len: 262144,
            initial_r2t: false,
            immediate_data: true,
            max_outstanding_r2t: 16,
            max_connections: 1,
            header_digest: DigestPolicy::default(),
            data_digest: DigestPolicy::default(),
            data_pdu_in_order: true,
            data_sequence_in_order: true,
            default_time2wait: 2,
            default_time2retain: 0,
            target_alias: None,
        }
    }
}

/// Range of numbers RFC 7143 allows for MaxRecvDataSegmentLength and the burst lengths.
const SEGMENT_BYTES_MIN: u32 = 512;
const SEGMENT_BYTES_MAX: u32 = (1 << 24) - 1;

fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "Yes" => Some(true),
        "No" => Some(false),
        _ => None,
    }
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "Yes"
    } else {
        "No"
    }
}

fn digest_words(p: &DigestPolicy) -> String {
    match (p.crc32c, p.none) {
        (true, true) => "CRC32C,None",
        (true, false) => "CRC32C",
        _ => "None",
    }
    .to_string()
}

impl SessionParams {
    /// The negotiated keys by their RFC 7143 names, in tgt's order, for `show`.
    pub fn keys(&self) -> Vec<(&'static str, String)> {
        let digest = |on: bool| if on { "CRC32C" } else { "None" }.to_string();
        vec![
            (
                "MaxRecvDataSegmentLength",
                self.max_recv_data_segment_len.to_string(),
            ),
            ("HeaderDigest", digest(self.header_digest)),
            ("DataDigest", digest(self.data_digest)),
            ("InitialR2T", yes_no(self.initial_r2t).to_string()),
            ("MaxOutstandingR2T", self.max_outstanding_r2t.to_string()),
            ("ImmediateData", yes_no(self.immediate_data).to_string()),
            ("FirstBurstLength", self.first_burst_len.to_string()),
            ("MaxBurstLength", self.max_burst_len.to_string()),
            ("DataPDUInOrder", yes_no(self.data_pdu_in_order).to_string()),
            (
                "DataSequenceInOrder",
                yes_no(self.data_sequence_in_order).to_string(),
            ),
            ("ErrorRecoveryLevel", self.error_recovery_level.to_string()),
            ("DefaultTime2Wait", self.default_time2wait.to_string()),
            ("DefaultTime2Retain", self.default_time2retain.to_string()),
            ("MaxConnections", self.max_connections.to_string()),
            (
                "MaxXmitDataSegmentLength",
                self.max_xmit_data_segment_len.to_string(),
            ),
        ]
    }
}

impl TargetLimits {
    /// What this target offers, by RFC 7143 key names in tgt's order, for `show`.
    pub fn keys(&self) -> Vec<(&'static str, String)> {
        let mut keys = vec![
            (
                "MaxRecvDataSegmentLength",
                self.max_recv_data_segment_len.to_string(),
            ),
            ("HeaderDigest", digest_words(&self.header_digest)),
            ("DataDigest", digest_words(&self.data_digest)),
            ("InitialR2T", yes_no(self.initial_r2t).to_string()),
            ("MaxOutstandingR2T", self.max_outstanding_r2t.to_string()),
            ("ImmediateData", yes_no(self.immediate_data).to_string()),
            ("FirstBurstLength", self.first_burst_len.to_string()),
            ("MaxBurstLength", self.max_burst_len.to_string()),
            ("DataPDUInOrder", yes_no(self.data_pdu_in_order).to_string()),
            (
                "DataSequenceInOrder",
                yes_no(self.data_sequence_in_order).to_string(),
            ),
            ("ErrorRecoveryLevel", "0".to_string()),
            ("DefaultTime2Wait", self.default_time2wait.to_string()),
            ("DefaultTime2Retain", self.default_time2retain.to_string()),
            ("MaxConnections", self.max_connections.to_string()),
            (
                "MaxXmitDataSegmentLength",
                self.max_xmit_data_segment_len.to_string(),
            ),
        ];
        if let Some(alias) = &self.target_alias {
            keys.push(("TargetAlias", alias.clone()));
        }
        keys
    }

    /// Applies one iSCSI key from the configuration (tgt's names and values).
    pub fn apply_key(&mut self, key: &str, value: &str) -> Result<(), String> {
        let number = |lo: u32, hi: u32| -> Result<u32, String> {
            value
                .parse::<u32>()
                .ok()
                .filter(|n| (lo..=hi).contains(n))
                .ok_or_else(|| format!("{key}={value}: write a number from {lo} to {hi}"))
        };
        let boolean = || parse_bool(value).ok_or_else(|| format!("{key}={value}: write Yes or No"));
        let digest = || -> Result<DigestPolicy, String> {
            let mut p = DigestPolicy {
                crc32c: false,
                none: false,
            };
            for v in value.split(',') {
                match v.trim() {
                    "CRC32C" => p.crc32c = true,
                    "None" => p.none = true,
                    other => {
                        return Err(format!(
                            "{key}: `{other}` is not a digest; write CRC32C, None or CRC32C,None"
                        ))
                    }
                }
            }
            Ok(p)
        };
        match key {
            "MaxRecvDataSegmentLength" => {
                self.max_recv_data_segment_len = number(SEGMENT_BYTES_MIN, SEGMENT_BYTES_MAX)?
            }
            "MaxXmitDataSegmentLength" => {
                self.max_xmit_data_segment_len = number(SEGMENT_BYTES_MIN, SEGMENT_BYTES_MAX)?
            }
            "MaxBurstLength" => self.max_burst_len = number(SEGMENT_BYTES_MIN, SEGMENT_BYTES_MAX)?,
            "FirstBurstLength" => {
                self.first_burst_len = number(SEGMENT_BYTES_MIN, SEGMENT_BYTES_MAX)?
            }
            "InitialR2T" => self.initial_r2t = boolean()?,
            "ImmediateData" => self.immediate_data = boolean()?,
            "MaxOutstandingR2T" => self.max_outstanding_r2t = number(1, 65535)?,
            "MaxConnections" => {
                let n = number(1, 65535)?;
                if n != 1 {
                    return Err(format!(
                        "{key}={value}: gatewayd serves one connection per session; write 1"
                    ));
                }
                self.max_connections = 1;
            }
            "HeaderDigest" => self.header_digest = digest()?,
            "DataDigest" => self.data_digest = digest()?,
            "DataPDUInOrder" => self.data_pdu_in_order = boolean()?,
            "DataSequenceInOrder" => self.data_sequence_in_order = boolean()?,
            "DefaultTime2Wait" => self.default_time2wait = number(0, 3600)? as u16,
            "DefaultTime2Retain" => self.default_time2retain = number(0, 3600)? as u16,
            "ErrorRecoveryLevel" => {
                if number(0, 2)? != 0 {
                    return Err(format!(
                        "{key}={value}: only ErrorRecoveryLevel 0 is supported"
                    ));
                }
            }
            "TargetAlias" => self.target_alias = Some(value.to_string()),
            other => return Err(format!("{other} is not an iSCSI key gatewayd knows")),
        }
        Ok(())
    }
}

/// The answer to one offered key.
#[derive(Debug, PartialEq, Eq)]
pub enum Answer {
    /// Reply with this value.
    Reply(String),
    /// Declarative key: accepted, nothing to reply.
    Silent,
    /// The offer cannot be accepted and the login must fail.
    Fail(String),
}

/// Negotiates one operational key, updating `p`. Keys handled elsewhere (names, session
/// type, auth) never reach here.
pub fn negotiate(key: &str, value: &str, limits: &TargetLimits, p: &mut SessionParams) -> Answer {
    let discovery = p.session_type == SessionType::Discovery;
    let number = || value.parse::<u32>().ok();
    let reply = |v: String| Answer::Reply(v);
    let reject = || Answer::Reply("Reject".into());
    let irrelevant = || Answer::Reply("Irrelevant".into());
    match key {
        "HeaderDigest" | "DataDigest" => {
            let policy = if key == "HeaderDigest" {
                &limits.header_digest
            } else {
                &limits.data_digest
            };
            let choice = value.split(',').map(str::trim).find(|v| match *v {
                "CRC32C" => policy.crc32c,
                "None" => policy.none,
                _ => false,
            });
            match choice {
                Some(v) => {
                    let on = v == "CRC32C";
                    if key == "HeaderDigest" {
                        p.header_digest = on;
                    } else {
                        p.data_digest = on;
                    }
                    reply(v.to_string())
                }
                None => Answer::Fail(format!(
                    "{key}: the initiator offered {value:?}, the target requires {}",
                    if policy.crc32c { "CRC32C" } else { "None" }
                )),
            }
        }
        "MaxRecvDataSegmentLength" => match number() {
            Some(n) if (SEGMENT_BYTES_MIN..=SEGMENT_BYTES_MAX).contains(&n) => {
                p.max_xmit_data_segment_len = n.min(limits.max_xmit_data_segment_len);
                Answer::Silent
            }
            _ => reject(),
        },
        "MaxBurstLength" | "FirstBurstLength" if discovery => irrelevant(),
        "MaxBurstLength" => match number() {
            Some(n) if (SEGMENT_BYTES_MIN..=SEGMENT_BYTES_MAX).contains(&n) => {
                p.max_burst_len = n.min(limits.max_burst_len);
                p.first_burst_len = p.first_burst_len.min(p.max_burst_len);
                reply(p.max_burst_len.to_string())
            }
            _ => reject(),
        },
        "FirstBurstLength" => match number() {
            Some(n) if (SEGMENT_BYTES_MIN..=SEGMENT_BYTES_MAX).contains(&n) => {
                p.first_burst_len = n.min(limits.first_burst_len).min(p.max_burst_len);
                reply(p.first_burst_len.to_string())
            }
            _ => reject(),
        },
        "InitialR2T"
        | "ImmediateData"
        | "DataPDUInOrder"
        | "DataSequenceInOrder"
        | "MaxOutstandingR2T"
            if discovery =>
        {
            irrelevant()
        }
        "InitialR2T" => match parse_bool(value) {
            Some(b) => {
                p.initial_r2t = b || limits.initial_r2t;
                reply(yes_no(p.initial_r2t).into())
            }
            None => reject(),
        },
        "ImmediateData" => match parse_bool(value) {
            Some(b) => {
                p.immediate_data = b && limits.immediate_data;
                reply(yes_no(p.immediate_data).into())
            }
            None => reject(),
        },
        "DataPDUInOrder" => match parse_bool(value) {
            Some(b) => {
                p.data_pdu_in_order = b || limits.data_pdu_in_order;
                reply(yes_no(p.data_pdu_in_order).into())
            }
            None => reject(),
        },
        "DataSequenceInOrder" => match parse_bool(value) {
            Some(b) => {
                p.data_sequence_in_order = b || limits.data_sequence_in_order;
                reply(yes_no(p.data_sequence_in_order).into())
            }
            None => reject(),
        },
        "MaxOutstandingR2T" => match number() {
            Some(n) if (1..=65535).contains(&n) => {
                p.max_outstanding_r2t = n.min(limits.max_outstanding_r2t);
                reply(p.max_outstanding_r2t.to_string())
            }
            _ => reject(),
        },
        "ErrorRecoveryLevel" => match number() {
            Some(n) if n <= 2 => {
                p.error_recovery_level = 0;
                reply("0".into())
            }
            _ => reject(),
        },
        "DefaultTime2Wait" => match number() {
            Some(n) if n <= 3600 => {
                p.default_time2wait = (n as u16).max(limits.default_time2wait);
                reply(p.default_time2wait.to_string())
            }
            _ => reject(),
        },
        "DefaultTime2Retain" => match number() {
            Some(n) if n <= 3600 => {
                p.default_time2retain = (n as u16).min(limits.default_time2retain);
                reply(p.default_time2retain.to_string())
            }
            _ => reject(),
        },
        "MaxConnections" if discovery => irrelevant(),
        "MaxConnections" => match number() {
            Some(n) if (1..=65535).contains(&n) => {
                p.max_connections = (n as u16).min(limits.max_connections);
                reply(p.max_connections.to_string())
            }
            _ => reject(),
        },
        "OFMarker" | "IFMarker" => reply("No".into()),
        "OFMarkInt" | "IFMarkInt" => irrelevant(),
        // Keys that RFC 7143 defines but this target does not negotiate, vendor keys (X-...,
        // X#...) and anything unknown.
        _ => reply("NotUnderstood".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fresh() -> (TargetLimits, SessionParams) {
        let l = TargetLimits::default();
        let p = SessionParams::defaults(&l);
        (l, p)
    }

    #[test]
    fn numbers_take_the_minimum_and_bools_combine() {
        let (l, mut p) = fresh();
        assert_eq!(
            negotiate("MaxBurstLength", "1048576", &l, &mut p),
            Answer::Reply("262144".into())
        );
        assert_eq!(
            negotiate("FirstBurstLength", "131072", &l, &mut p),
            Answer::Reply("131072".into())
        );
        assert_eq!(
            negotiate("InitialR2T", "No", &l, &mut p),
            Answer::Reply("No".into())
        );
        assert_eq!(
            negotiate("ImmediateData", "Yes", &l, &mut p),
            Answer::Reply("Yes".into())
        );
        assert_eq!(
            negotiate("MaxOutstandingR2T", "64", &l, &mut p),
            Answer::Reply("16".into())
        );
        assert_eq!(
            negotiate("ErrorRecoveryLevel", "2", &l, &mut p),
            Answer::Reply("0".into())
        );
        assert_eq!(
            negotiate("MaxRecvDataSegmentLength", "65536", &l, &mut p),
            Answer::Silent
        );
        assert_eq!(p.max_xmit_data_segment_len, 65536);
        assert_eq!(
            negotiate("MaxBurstLength", "100", &l, &mut p),
            Answer::Reply("Reject".into())
        );
        assert_eq!(
            negotiate("X-com.example.Foo", "1", &l, &mut p),
            Answer::Reply("NotUnderstood".into())
        );
        let mut strict = l.clone();
        strict.initial_r2t = true;
        assert_eq!(
            negotiate("InitialR2T", "No", &strict, &mut p),
            Answer::Reply("Yes".into())
        );
    }

    #[test]
    fn digests_follow_the_initiators_order_within_policy() {
        let (mut l, mut p) = fresh();
        assert_eq!(
            negotiate("HeaderDigest", "None,CRC32C", &l, &mut p),
            Answer::Reply("None".into())
        );
        assert_eq!(
            negotiate("DataDigest", "CRC32C,None", &l, &mut p),
            Answer::Reply("CRC32C".into())
        );
        assert!(p.data_digest && !p.header_digest);
        l.apply_key("HeaderDigest", "CRC32C").unwrap();
        assert_eq!(
            negotiate("HeaderDigest", "None,CRC32C", &l, &mut p),
            Answer::Reply("CRC32C".into())
        );
        assert!(matches!(
            negotiate("HeaderDigest", "None", &l, &mut p),
            Answer::Fail(_)
        ));
    }

    #[test]
    fn discovery_sessions_call_data_keys_irrelevant() {
        let (l, mut p) = fresh();
        p.session_type = SessionType::Discovery;
        assert_eq!(
            negotiate("MaxBurstLength", "262144", &l, &mut p),
            Answer::Reply("Irrelevant".into())
        );
        assert_eq!(
            negotiate("InitialR2T", "No", &l, &mut p),
            Answer::Reply("Irrelevant".into())
        );
    }

    #[test]
    fn configuration_keys() {
        let mut l = TargetLimits::default();
        l.apply_key("MaxRecvDataSegmentLength", "8192").unwrap();
        assert_eq!(l.max_recv_data_segment_len, 8192);
        assert!(l.apply_key("MaxRecvDataSegmentLength", "12").is_err());
        assert!(l.apply_key("InitialR2T", "maybe").is_err());
        assert!(l.apply_key("HeaderDigest", "MD5").is_err());
        assert!(l.apply_key("MaxConnections", "4").is_err());
    }
}
