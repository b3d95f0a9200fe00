//! Reservations of one logical unit (SPC-4 §5.9): persistent reservations with their
//! registrations (PERSISTENT RESERVE IN and OUT, SPC-4 §6.15 and §6.16), and the older
//! SPC-2 RESERVE/RELEASE reservation (SPC-2 §7.21, §7.17), which excludes them.
//!
//! A registration belongs to an initiator port (for iSCSI `<name>,i,0x<isid>`, SPC-4
//! §7.6.4.6), not to a session, so it outlives the loss of an I_T nexus; an SPC-2
//! reservation belongs to one I_T nexus and ends with it. This target has one target port,
//! so an initiator port stands for an I_T nexus.
//!
//! Limits of this implementation, on purpose:
//! - SPEC_I_PT is refused (INVALID FIELD IN PARAMETER LIST) and REPORT CAPABILITIES says
//!   SIP_C=0.
//! - ALL_TG_PT is accepted: with a single target port it changes nothing (ATP_C=1).
//! - PREEMPT AND ABORT preempts like PREEMPT; the caller owns the task sets, and the tasks of
//!   the preempted nexuses run to completion instead of being aborted.
//! - REGISTER AND MOVE takes only TransportIDs that name an initiator port (format 01b).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::cdb::{op, u16_at, u32_at, u64_at};
use crate::sense::{asc, key, Sense};
use crate::NexusId;

mod state;

/// Registrations one LU holds at most; one more is refused with INSUFFICIENT REGISTRATION
/// RESOURCES (SPC-4 §5.9.7).
pub const REGISTRATIONS_MAX: usize = 64;

/// Longest initiator port name that may register: an iSCSI name is at most 223 bytes
/// (RFC 7143 §4.2.7.1), then `,i,0x` and 12 hex digits of ISID. A longer one could not be
/// saved, so it is refused with INSUFFICIENT REGISTRATION RESOURCES.
pub const INITIATOR_PORT_BYTES_MAX: usize = 240;

/// Longest PERSISTENT RESERVE OUT parameter list accepted: 24 bytes, then one TransportID
/// (REGISTER AND MOVE) with its 4-byte header and a NUL-terminated, padded port name.
pub const PR_OUT_PARAMETER_BYTES_MAX: usize =
    24 + 4 + (INITIATOR_PORT_BYTES_MAX + 1).next_multiple_of(4);

/// Largest saved reservation state [`Reservations::restore`] reads.
pub const STATE_BYTES_MAX: usize = 64 * 1024;

/// SCSI protocol identifier of iSCSI (SPC-4 Table 444).
const PROTOCOL_ISCSI: u8 = 0x05;

/// What separates the iSCSI name from the ISID in an initiator port name (SPC-4 §7.6.4.6).
const ISID_SEPARATOR: &str = ",i,0x";

/// PERSISTENT RESERVE IN service actions (SPC-4 §6.15.1).
pub(crate) mod in_sa {
    pub const READ_KEYS: u8 = 0x00;
    pub const READ_RESERVATION: u8 = 0x01;
    pub const REPORT_CAPABILITIES: u8 = 0x02;
    pub const READ_FULL_STATUS: u8 = 0x03;
}

/// PERSISTENT RESERVE OUT service actions (SPC-4 §6.16.2).
pub(crate) mod out_sa {
    pub const REGISTER: u8 = 0x00;
    pub const RESERVE: u8 = 0x01;
    pub const RELEASE: u8 = 0x02;
    pub const CLEAR: u8 = 0x03;
    pub const PREEMPT: u8 = 0x04;
    pub const PREEMPT_AND_ABORT: u8 = 0x05;
    pub const REGISTER_AND_IGNORE: u8 = 0x06;
    pub const REGISTER_AND_MOVE: u8 = 0x07;
}

/// The name of an iSCSI initiator port, as SPC-4 §7.6.4.6 spells it in a TransportID:
/// `<initiator name>,i,0x<ISID as 12 hex digits>`.
pub fn iscsi_initiator_port(initiator_name: &str, isid: [u8; 6]) -> String {
    let mut s = String::with_capacity(initiator_name.len() + ISID_SEPARATOR.len() + 12);
    s.push_str(initiator_name);
    s.push_str(ISID_SEPARATOR);
    for b in isid {
        let _ = write!(s, "{b:02x}");
    }
    normalize_port(&s)
}

/// Initiator port names compare without regard to case (iSCSI names are lower case once
/// normalised, RFC 3722; hex digits of the ISID may come either way).
pub(crate) fn normalize_port(port: &str) -> String {
    port.to_ascii_lowercase()
}

/// Persistent reservation types (SPC-4 §6.16.4 Table 228).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PrType {
    WriteExclusive,
    ExclusiveAccess,
    WriteExclusiveRegistrantsOnly,
    ExclusiveAccessRegistrantsOnly,
    WriteExclusiveAllRegistrants,
    ExclusiveAccessAllRegistrants,
}

impl PrType {
    fn from_code(code: u8) -> Option<PrType> {
        Some(match code {
            0x1 => PrType::WriteExclusive,
            0x3 => PrType::ExclusiveAccess,
            0x5 => PrType::WriteExclusiveRegistrantsOnly,
            0x6 => PrType::ExclusiveAccessRegistrantsOnly,
            0x7 => PrType::WriteExclusiveAllRegistrants,
            0x8 => PrType::ExclusiveAccessAllRegistrants,
            _ => return None,
        })
    }

    fn code(self) -> u8 {
        match self {
            PrType::WriteExclusive => 0x1,
            PrType::ExclusiveAccess => 0x3,
            PrType::WriteExclusiveRegistrantsOnly => 0x5,
            PrType::ExclusiveAccessRegistrantsOnly => 0x6,
            PrType::WriteExclusiveAllRegistrants => 0x7,
            PrType::ExclusiveAccessAllRegistrants => 0x8,
        }
    }

    /// Every registrant holds the reservation.
    fn all_registrants(self) -> bool {
        matches!(
            self,
            PrType::WriteExclusiveAllRegistrants | PrType::ExclusiveAccessAllRegistrants
        )
    }

    fn registrants_only(self) -> bool {
        matches!(
            self,
            PrType::WriteExclusiveRegistrantsOnly | PrType::ExclusiveAccessRegistrantsOnly
        )
    }

    /// Only writes are kept from those the reservation shuts out; reads go through.
    fn write_exclusive(self) -> bool {
        matches!(
            self,
            PrType::WriteExclusive
                | PrType::WriteExclusiveRegistrantsOnly
                | PrType::WriteExclusiveAllRegistrants
        )
    }
}

/// One registration.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Registration {
    key: u64,
    all_tg_pt: bool,
}

/// The persistent reservation.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Persistent {
    kind: PrType,
    /// The initiator port holding it; `None` for the all-registrants types, where every
    /// registrant is a holder (SPC-4 §5.9.10).
    holder: Option<String>,
}

/// Why a reservation command was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// RESERVATION CONFLICT status.
    Conflict,
    /// CHECK CONDITION with this sense.
    Check(Sense),
}

impl From<Sense> for Refusal {
    fn from(s: Sense) -> Refusal {
        Refusal::Check(s)
    }
}

/// What a successful PERSISTENT RESERVE OUT did beyond its status.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Effects {
    /// Unit attentions for every I_T nexus of an initiator port.
    pub unit_attentions: Vec<(String, (u8, u8))>,
    /// The state that APTPL preserves changed.
    pub changed: bool,
}

impl Effects {
    fn tell(&mut self, ports: impl IntoIterator<Item = String>, code: (u8, u8)) {
        self.unit_attentions
            .extend(ports.into_iter().map(|p| (p, code)));
    }
}

/// Saved reservation state that [`Reservations::restore`] refuses.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum StateError {
    /// More bytes than [`STATE_BYTES_MAX`].
    #[error("saved reservation state has {0} bytes, more than the {STATE_BYTES_MAX} accepted")]
    TooLarge(usize),
    /// Not UTF-8.
    #[error("saved reservation state is not UTF-8 text")]
    NotText,
    /// The first line names another format or version.
    #[error(
        "saved reservation state does not start with `{}`",
        state::STATE_HEADER
    )]
    Header,
    /// A line that does not parse or does not fit the rest.
    #[error("saved reservation state, line {line}: {reason}")]
    Line {
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// No `end` line: the file was cut short.
    #[error("saved reservation state has no `end` line; it was cut short")]
    Truncated,
    /// The lines parse but do not make a state together.
    #[error("saved reservation state is inconsistent: {0}")]
    Inconsistent(&'static str),
}

/// How a command stands towards reservations (SPC-4 §5.9.1 Table 62 for SPC commands,
/// SBC-3 §4.17 Table 13 for block commands).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Class {
    /// Never conflicts (INQUIRY, REPORT LUNS, REQUEST SENSE, REPORT SUPPORTED OPERATION
    /// CODES, PREVENT ALLOW MEDIUM REMOVAL with PREVENT=0).
    Always,
    /// Allowed through persistent reservations, but not through an SPC-2 one (TEST UNIT
    /// READY, READ CAPACITY, START STOP UNIT that starts).
    Status,
    /// Reads the medium: allowed through the write-exclusive types.
    Read,
    /// Everything else: writes, cache control, mode pages.
    Write,
    /// PERSISTENT RESERVE IN and OUT: they check keys themselves, but all conflict while an
    /// SPC-2 reservation exists (SPC-2 §5.5.1).
    Persistent,
    /// RESERVE and RELEASE: they check for conflicts themselves.
    Spc2,
}

fn class(cdb: &[u8]) -> Class {
    match cdb[0] {
        op::INQUIRY | op::REPORT_LUNS | op::REQUEST_SENSE | op::MAINTENANCE_IN => Class::Always,
        op::PREVENT_ALLOW if cdb[4] & 0x03 == 0 => Class::Always,
        op::TEST_UNIT_READY | op::READ_CAPACITY_10 | op::SERVICE_ACTION_IN_16 => Class::Status,
        op::START_STOP_UNIT if cdb[4] & 0xf1 == 0x01 => Class::Status,
        op::PERSISTENT_RESERVE_IN | op::PERSISTENT_RESERVE_OUT => Class::Persistent,
        op::RESERVE_6 | op::RESERVE_10 | op::RELEASE_6 | op::RELEASE_10 => Class::Spc2,
        op::READ_6
        | op::READ_10
        | op::READ_12
        | op::READ_16
        | op::VERIFY_10
        | op::VERIFY_12
        | op::VERIFY_16
        | op::PRE_FETCH_10
        | op::PRE_FETCH_16 => Class::Read,
        _ => Class::Write,
    }
}

/// The basic PERSISTENT RESERVE OUT parameter list (SPC-4 §6.16.3 Table 229).
struct Basic {
    key: u64,
    sa_key: u64,
    all_tg_pt: bool,
    aptpl: bool,
}

/// The reservation state of one LU.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Reservations {
    /// Registrations by initiator port.
    registrations: BTreeMap<String, Registration>,
    persistent: Option<Persistent>,
    /// PRgeneration (SPC-4 §6.15.2).
    generation: u32,
    /// Activate persist through power loss (SPC-4 §5.9.4).
    aptpl: bool,
    /// The I_T nexus holding an SPC-2 reservation.
    spc2: Option<NexusId>,
}

impl Reservations {
    /// Whether the state must survive power loss.
    pub(crate) fn aptpl(&self) -> bool {
        self.aptpl
    }

    /// Whether `cdb` from `nexus` (of initiator port `port`) meets RESERVATION CONFLICT.
    pub(crate) fn conflicts(&self, nexus: NexusId, port: &str, cdb: &[u8]) -> bool {
        let class = class(cdb);
        if let Some(holder) = self.spc2 {
            return match class {
                Class::Always | Class::Spc2 => false,
                Class::Persistent => true,
                Class::Status | Class::Read | Class::Write => holder != nexus,
            };
        }
        let Some(pr) = &self.persistent else {
            return false;
        };
        let access = match class {
            Class::Always | Class::Status | Class::Persistent | Class::Spc2 => return false,
            Class::Read => false,
            Class::Write => true,
        };
        let registered = self.registrations.contains_key(port);
        let holder = match &pr.holder {
            None => registered,
            Some(h) => h == port,
        };
        if holder {
            return false;
        }
        if registered && (pr.kind.registrants_only() || pr.kind.all_registrants()) {
            return false;
        }
        // Non-holders (and, for the registrants types, non-registrants): reads pass the
        // write-exclusive types only.
        access || !pr.kind.write_exclusive()
    }

    /// RESERVE(6) or RESERVE(10) (SPC-2 §7.21) from `nexus`.
    pub(crate) fn reserve(&mut self, nexus: NexusId, cdb: &[u8]) -> Result<(), Refusal> {
        check_spc2_cdb(cdb)?;
        // Registrations shut SPC-2 reservations out (SPC-2 §5.5.1; CRH=0).
        if !self.registrations.is_empty() || self.persistent.is_some() {
            return Err(Refusal::Conflict);
        }
        match self.spc2 {
            Some(holder) if holder != nexus => Err(Refusal::Conflict),
            _ => {
                self.spc2 = Some(nexus);
                Ok(())
            }
        }
    }

    /// RELEASE(6) or RELEASE(10) (SPC-2 §7.17) from `nexus`: a no-op unless `nexus` holds
    /// the reservation.
    pub(crate) fn release(&mut self, nexus: NexusId, cdb: &[u8]) -> Result<(), Refusal> {
        check_spc2_cdb(cdb)?;
        if !self.registrations.is_empty() || self.persistent.is_some() {
            return Err(Refusal::Conflict);
        }
        if self.spc2 == Some(nexus) {
            self.spc2 = None;
        }
        Ok(())
    }

    /// An I_T nexus is gone: its SPC-2 reservation goes too; registrations stay.
    pub(crate) fn nexus_lost(&mut self, nexus: NexusId) {
        if self.spc2 == Some(nexus) {
            self.spc2 = None;
        }
    }

    /// A logical unit or target reset releases the SPC-2 reservation, never a persistent one
    /// (SPC-4 §5.9.1).
    pub(crate) fn reset(&mut self) {
        self.spc2 = None;
    }

    /// PERSISTENT RESERVE IN (SPC-4 §6.15): the parameter data, cut to the allocation length.
    pub(crate) fn persistent_in(&self, cdb: &[u8], relative_port: u16) -> Result<Vec<u8>, Sense> {
        let alloc = usize::from(u16_at(cdb, 7));
        let mut v = Vec::new();
        match cdb[1] & 0x1f {
            in_sa::READ_KEYS => {
                v.extend_from_slice(&self.generation.to_be_bytes());
                v.extend_from_slice(&((self.registrations.len() * 8) as u32).to_be_bytes());
                for r in self.registrations.values() {
                    v.extend_from_slice(&r.key.to_be_bytes());
                }
            }
            in_sa::READ_RESERVATION => {
                v.extend_from_slice(&self.generation.to_be_bytes());
                match &self.persistent {
                    None => v.extend_from_slice(&0u32.to_be_bytes()),
                    Some(pr) => {
                        v.extend_from_slice(&16u32.to_be_bytes());
                        // The all-registrants types report key zero (SPC-4 §6.15.3.3).
                        let key = pr
                            .holder
                            .as_ref()
                            .and_then(|h| self.registrations.get(h))
                            .map_or(0, |r| r.key);
                        v.extend_from_slice(&key.to_be_bytes());
                        v.extend_from_slice(&[0; 5]);
                        v.push(pr.kind.code()); // LU_SCOPE
                        v.extend_from_slice(&[0; 2]);
                    }
                }
            }
            in_sa::REPORT_CAPABILITIES => {
                v.extend_from_slice(&8u16.to_be_bytes());
                // CRH=0, SIP_C=0, ATP_C=1, PTPL_C=1.
                v.push(0x04 | 0x01);
                // TMV=1, ALLOW COMMANDS=001b (TEST UNIT READY passes WE and EA), PTPL_A.
                v.push(0x80 | 0x10 | u8::from(self.aptpl));
                // Every type: WR_EX_AR, EX_AC_RO, WR_EX_RO, EX_AC, WR_EX; EX_AC_AR.
                v.push(0x80 | 0x40 | 0x20 | 0x08 | 0x02);
                v.push(0x01);
                v.extend_from_slice(&[0; 2]);
            }
            in_sa::READ_FULL_STATUS => {
                v.extend_from_slice(&self.generation.to_be_bytes());
                v.extend_from_slice(&[0; 4]);
                for (port, r) in &self.registrations {
                    let holder = self.persistent.as_ref().filter(|pr| match &pr.holder {
                        None => true,
                        Some(h) => h == port,
                    });
                    v.extend_from_slice(&r.key.to_be_bytes());
                    v.extend_from_slice(&[0; 4]);
                    v.push(u8::from(r.all_tg_pt) << 1 | u8::from(holder.is_some()));
                    v.push(holder.map_or(0, |pr| pr.kind.code()));
                    v.extend_from_slice(&[0; 4]);
                    v.extend_from_slice(&relative_port.to_be_bytes());
                    let tid = transport_id(port);
                    v.extend_from_slice(&(tid.len() as u32).to_be_bytes());
                    v.extend(tid);
                }
                let len = (v.len() - 8) as u32;
                v[4..8].copy_from_slice(&len.to_be_bytes());
            }
            _ => return Err(Sense::invalid_cdb_field(1, Some(4))),
        }
        v.truncate(alloc);
        Ok(v)
    }

    /// PERSISTENT RESERVE OUT (SPC-4 §6.16) from initiator port `port`.
    pub(crate) fn persistent_out(
        &mut self,
        port: &str,
        cdb: &[u8],
        data: &[u8],
        relative_port: u16,
    ) -> Result<Effects, Refusal> {
        let sa = cdb[1] & 0x1f;
        if sa > out_sa::REGISTER_AND_MOVE {
            return Err(Sense::invalid_cdb_field(1, Some(4)).into());
        }
        let len = u32_at(cdb, 5) as usize;
        if len > PR_OUT_PARAMETER_BYTES_MAX || data.len() < len || len < 24 {
            return Err(Sense::parameter_list_length().into());
        }
        let data = &data[..len];
        let scope = cdb[2] >> 4;
        let kind = PrType::from_code(cdb[2] & 0x0f);
        // The service actions that take a reservation need a valid scope and type.
        let kind = if matches!(
            sa,
            out_sa::RESERVE | out_sa::RELEASE | out_sa::PREEMPT | out_sa::PREEMPT_AND_ABORT
        ) {
            if scope != 0 {
                return Err(Sense::invalid_cdb_field(2, Some(7)).into());
            }
            Some(kind.ok_or(Sense::invalid_cdb_field(2, Some(3)))?)
        } else {
            None
        };
        if sa == out_sa::REGISTER_AND_MOVE {
            return self.register_and_move(port, data, relative_port);
        }
        if data[20] & 0x08 != 0 {
            // SPEC_I_PT is not supported (SIP_C=0).
            return Err(Sense::invalid_parameter_field(20, Some(3)).into());
        }
        if len != 24 {
            return Err(Sense::parameter_list_length().into());
        }
        let p = Basic {
            key: u64_at(data, 0),
            sa_key: u64_at(data, 8),
            all_tg_pt: data[20] & 0x04 != 0,
            aptpl: data[20] & 0x01 != 0,
        };
        match sa {
            out_sa::REGISTER => self.register(port, &p, false),
            out_sa::REGISTER_AND_IGNORE => self.register(port, &p, true),
            _ => {
                // Every other service action needs this nexus registered under the key it
                // gives (SPC-4 §5.9.7).
                if self.registrations.get(port).map(|r| r.key) != Some(p.key) {
                    return Err(Refusal::Conflict);
                }
                match (sa, kind) {
                    (out_sa::RESERVE, Some(kind)) => self.reserve_persistent(port, kind),
                    (out_sa::RELEASE, Some(kind)) => self.release_persistent(port, kind),
                    (out_sa::CLEAR, _) => Ok(self.clear(port)),
                    (out_sa::PREEMPT | out_sa::PREEMPT_AND_ABORT, Some(kind)) => {
                        self.preempt(port, p.sa_key, kind)
                    }
                    _ => unreachable!("service action {sa} checked above"),
                }
            }
        }
    }

    /// REGISTER and REGISTER AND IGNORE EXISTING KEY (SPC-4 §5.9.7).
    fn register(&mut self, port: &str, p: &Basic, ignore: bool) -> Result<Effects, Refusal> {
        let mut fx = Effects::default();
        match self.registrations.get_mut(port) {
            None => {
                if !ignore && p.key != 0 {
                    return Err(Refusal::Conflict);
                }
                if p.sa_key == 0 {
                    // Nothing to register and nothing to remove.
                    return Ok(fx);
                }
                if self.registrations.len() >= REGISTRATIONS_MAX
                    || port.is_empty()
                    || port.len() > INITIATOR_PORT_BYTES_MAX
                {
                    // An empty port is a nexus the caller never announced.
                    return Err(Sense::new(
                        key::ILLEGAL_REQUEST,
                        asc::INSUFFICIENT_REGISTRATION_RESOURCES,
                    )
                    .into());
                }
                self.registrations.insert(
                    port.to_owned(),
                    Registration {
                        key: p.sa_key,
                        all_tg_pt: p.all_tg_pt,
                    },
                );
            }
            Some(r) => {
                if !ignore && p.key != r.key {
                    return Err(Refusal::Conflict);
                }
                if p.sa_key == 0 {
                    self.unregister(port, &mut fx);
                } else {
                    r.key = p.sa_key;
                }
            }
        }
        self.aptpl = p.aptpl;
        self.bump(&mut fx);
        Ok(fx)
    }

    /// Removes a registration; a reservation it held goes with it (SPC-4 §5.9.11.2).
    fn unregister(&mut self, port: &str, fx: &mut Effects) {
        self.registrations.remove(port);
        let Some(pr) = &self.persistent else {
            return;
        };
        match &pr.holder {
            Some(h) if h == port => {
                let kind = pr.kind;
                self.persistent = None;
                if kind.registrants_only() {
                    fx.tell(
                        self.registrations.keys().cloned(),
                        asc::RESERVATIONS_RELEASED,
                    );
                }
            }
            None if self.registrations.is_empty() => self.persistent = None,
            _ => {}
        }
    }

    /// Counts a change of the registrations (SPC-4 §6.15.2 PRGENERATION).
    fn bump(&mut self, fx: &mut Effects) {
        self.generation = self.generation.wrapping_add(1);
        if self.registrations.is_empty() {
            // Nothing left to persist.
            self.aptpl = false;
            self.persistent = None;
        }
        fx.changed = true;
    }

    /// RESERVE (SPC-4 §5.9.10).
    fn reserve_persistent(&mut self, port: &str, kind: PrType) -> Result<Effects, Refusal> {
        match &self.persistent {
            None => {
                self.persistent = Some(Persistent {
                    kind,
                    holder: (!kind.all_registrants()).then(|| port.to_owned()),
                });
                Ok(Effects {
                    changed: true,
                    ..Effects::default()
                })
            }
            // Reserving again what one holds is a no-op (SPC-4 §5.9.10).
            Some(pr) if pr.kind == kind && pr.holder.as_deref().is_none_or(|h| h == port) => {
                Ok(Effects::default())
            }
            Some(_) => Err(Refusal::Conflict),
        }
    }

    /// RELEASE (SPC-4 §5.9.11.2).
    fn release_persistent(&mut self, port: &str, kind: PrType) -> Result<Effects, Refusal> {
        let mut fx = Effects::default();
        let Some(pr) = &self.persistent else {
            return Ok(fx);
        };
        if pr.holder.as_deref().is_some_and(|h| h != port) {
            // Not the holder: nothing happens.
            return Ok(fx);
        }
        if pr.kind != kind {
            return Err(Sense::new(
                key::ILLEGAL_REQUEST,
                asc::INVALID_RELEASE_OF_PERSISTENT_RESERVATION,
            )
            .into());
        }
        self.persistent = None;
        if kind.registrants_only() || kind.all_registrants() {
            fx.tell(self.others(port), asc::RESERVATIONS_RELEASED);
        }
        fx.changed = true;
        Ok(fx)
    }

    /// CLEAR (SPC-4 §5.9.11.6).
    fn clear(&mut self, port: &str) -> Effects {
        let mut fx = Effects::default();
        fx.tell(self.others(port), asc::RESERVATIONS_PREEMPTED);
        self.registrations.clear();
        self.bump(&mut fx);
        fx
    }

    /// PREEMPT and PREEMPT AND ABORT (SPC-4 §5.9.11.4).
    fn preempt(&mut self, port: &str, sa_key: u64, kind: PrType) -> Result<Effects, Refusal> {
        let mut fx = Effects::default();
        let current = self.persistent.clone();
        let removed = match current {
            Some(pr) if pr.kind.all_registrants() && sa_key == 0 => {
                // Preempting an all-registrants reservation: everyone else goes, and the
                // preempting nexus holds the new reservation.
                let removed = self.remove_keys(|p, _| p != port);
                self.persistent = Some(Persistent {
                    kind,
                    holder: (!kind.all_registrants()).then(|| port.to_owned()),
                });
                removed
            }
            Some(Persistent {
                kind: old_kind,
                holder: Some(holder),
            }) if self.registrations.get(&holder).map(|r| r.key) == Some(sa_key) => {
                let removed = self.remove_keys(|p, k| p != port && k == sa_key);
                self.persistent = Some(Persistent {
                    kind,
                    holder: (!kind.all_registrants()).then(|| port.to_owned()),
                });
                if old_kind != kind {
                    fx.tell(self.others(port), asc::RESERVATIONS_RELEASED);
                }
                removed
            }
            _ => {
                // Only registrations go; a reservation stays unless its holder loses its
                // registration.
                if sa_key == 0 {
                    return Err(Sense::invalid_parameter_field(8, None).into());
                }
                let removed = self.remove_keys(|_, k| k == sa_key);
                if removed.is_empty() {
                    return Err(Refusal::Conflict);
                }
                let orphaned = match &self.persistent {
                    Some(Persistent {
                        holder: Some(h), ..
                    }) => !self.registrations.contains_key(h),
                    Some(_) => self.registrations.is_empty(),
                    None => false,
                };
                if orphaned {
                    self.persistent = None;
                }
                removed
            }
        };
        fx.tell(
            removed.into_iter().filter(|p| p != port),
            asc::REGISTRATIONS_PREEMPTED,
        );
        self.bump(&mut fx);
        Ok(fx)
    }

    /// Removes the registrations `which` picks; returns their ports.
    fn remove_keys(&mut self, which: impl Fn(&str, u64) -> bool) -> Vec<String> {
        let gone: Vec<String> = self
            .registrations
            .iter()
            .filter(|(p, r)| which(p, r.key))
            .map(|(p, _)| p.clone())
            .collect();
        for p in &gone {
            self.registrations.remove(p);
        }
        gone
    }

    /// Registered initiator ports other than `port`.
    fn others<'a>(&'a self, port: &'a str) -> impl Iterator<Item = String> + 'a {
        self.registrations
            .keys()
            .filter(move |p| *p != port)
            .cloned()
    }

    /// REGISTER AND MOVE (SPC-4 §5.9.8): parameter list of SPC-4 §6.16.4 Table 231.
    fn register_and_move(
        &mut self,
        port: &str,
        data: &[u8],
        relative_port: u16,
    ) -> Result<Effects, Refusal> {
        let tid_len = u32_at(data, 20) as usize;
        if 24 + tid_len > data.len() {
            return Err(Sense::parameter_list_length().into());
        }
        let key = u64_at(data, 0);
        let sa_key = u64_at(data, 8);
        let unreg = data[17] & 0x02 != 0;
        let aptpl = data[17] & 0x01 != 0;
        if self.registrations.get(port).map(|r| r.key) != Some(key) {
            return Err(Refusal::Conflict);
        }
        let kind = match &self.persistent {
            Some(Persistent {
                kind,
                holder: Some(h),
            }) if h == port => *kind,
            // Not the holder, or an all-registrants reservation, which cannot move.
            _ => return Err(Refusal::Conflict),
        };
        if sa_key == 0 {
            return Err(Sense::invalid_parameter_field(8, None).into());
        }
        if u16_at(data, 18) != relative_port {
            return Err(Sense::invalid_parameter_field(18, None).into());
        }
        let dest = parse_transport_id(&data[24..24 + tid_len])?;
        if dest == port {
            return Err(Sense::invalid_parameter_field(24, None).into());
        }
        if !self.registrations.contains_key(&dest) {
            if self.registrations.len() >= REGISTRATIONS_MAX {
                return Err(Sense::new(
                    key::ILLEGAL_REQUEST,
                    asc::INSUFFICIENT_REGISTRATION_RESOURCES,
                )
                .into());
            }
            self.registrations.insert(
                dest.clone(),
                Registration {
                    key: sa_key,
                    all_tg_pt: false,
                },
            );
        }
        self.persistent = Some(Persistent {
            kind,
            holder: Some(dest),
        });
        if unreg {
            self.registrations.remove(port);
        }
        self.aptpl = aptpl;
        let mut fx = Effects::default();
        self.bump(&mut fx);
        Ok(fx)
    }
}

/// RESERVE and RELEASE fields this target does not support: third-party reservations and
/// extents.
fn check_spc2_cdb(cdb: &[u8]) -> Result<(), Sense> {
    match cdb[0] {
        op::RESERVE_10 | op::RELEASE_10 if cdb[1] & 0x10 != 0 => {
            Err(Sense::invalid_cdb_field(1, Some(4)))
        }
        op::RESERVE_6 | op::RELEASE_6 if cdb[1] & 0x01 != 0 => {
            Err(Sense::invalid_cdb_field(1, Some(0)))
        }
        _ => Ok(()),
    }
}

/// A saved initiator port name: printable ASCII without spaces, as normalised.
fn check_port(port: &str) -> Result<(), &'static str> {
    if port.is_empty() || port.len() > INITIATOR_PORT_BYTES_MAX || port == "-" {
        return Err("bad port name length");
    }
    if !port.bytes().all(|b| b.is_ascii_graphic()) || normalize_port(port) != port {
        return Err("port name has characters a normalised name has not");
    }
    Ok(())
}

/// An iSCSI TransportID for an initiator port (SPC-4 §7.6.4.6): format 01b when the name
/// carries an ISID, 00b otherwise; the name NUL-terminated and padded to a multiple of 4,
/// at least 20 bytes.
fn transport_id(port: &str) -> Vec<u8> {
    let format = if port.contains(ISID_SEPARATOR) {
        0x40
    } else {
        0x00
    };
    let padded = (port.len() + 1).div_ceil(4).max(5) * 4;
    let mut v = Vec::with_capacity(4 + padded);
    v.push(format | PROTOCOL_ISCSI);
    v.push(0);
    v.extend_from_slice(&(padded as u16).to_be_bytes());
    v.extend_from_slice(port.as_bytes());
    v.resize(4 + padded, 0);
    v
}

/// The initiator port named by a REGISTER AND MOVE TransportID (which starts at parameter
/// list byte 24).
fn parse_transport_id(tid: &[u8]) -> Result<String, Sense> {
    let bad = |byte: usize| Sense::invalid_parameter_field((24 + byte) as u16, None);
    if tid.len() < 24 {
        return Err(Sense::invalid_parameter_field(20, None));
    }
    if tid[0] & 0x0f != PROTOCOL_ISCSI || tid[0] >> 6 != 0x01 {
        return Err(bad(0));
    }
    let len = usize::from(u16_at(tid, 2));
    if len % 4 != 0 || 4 + len > tid.len() {
        return Err(bad(2));
    }
    let body = &tid[4..4 + len];
    let end = body.iter().position(|&b| b == 0).ok_or(bad(4))?;
    let name = std::str::from_utf8(&body[..end]).map_err(|_| bad(4))?;
    let port = normalize_port(name);
    let (_, isid) = port.split_once(ISID_SEPARATOR).ok_or(bad(4))?;
    if isid.len() != 12 || !isid.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad(4));
    }
    check_port(&port).map_err(|_| bad(4))?;
    Ok(port)
}

#[cfg(test)]
mod tests;
