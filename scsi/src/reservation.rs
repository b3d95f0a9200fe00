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

/// Registrations one LU holds at most; one more is refused with INSUFFICIENT REGISTRATION
/// RESOURCES (SPC-4 §5.9.7).
pub const REGISTRATIONS_MAX: usize = 64;

/// Longest initiator port name kept: an iSCSI name is at most 223 bytes (RFC 7143 §6.1),
/// then `,i,0x` and 12 hex digits of ISID.
pub const INITIATOR_PORT_BYTES_MAX: usize = 240;

/// Longest PERSISTENT RESERVE OUT parameter list accepted: 24 bytes, then one TransportID
/// (REGISTER AND MOVE) with its 4-byte header and a padded initiator port name.
pub const PR_OUT_PARAMETER_BYTES_MAX: usize = 24 + 4 + 256;

/// Largest saved reservation state [`Reservations::restore`] reads.
pub const STATE_BYTES_MAX: usize = 64 * 1024;

/// The first line of saved reservation state: its format and version.
const STATE_HEADER: &str = "gw-scsi reservations v1";

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
    #[error("saved reservation state does not start with `{STATE_HEADER}`")]
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
                if self.registrations.len() >= REGISTRATIONS_MAX {
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

    /// The state APTPL preserves, as text; `None` when nothing must be kept (APTPL off or
    /// no registrations), and the caller then removes what it saved before.
    pub(crate) fn snapshot(&self) -> Option<Vec<u8>> {
        if !self.aptpl || self.registrations.is_empty() {
            return None;
        }
        let mut s = String::new();
        let _ = writeln!(s, "{STATE_HEADER}");
        let _ = writeln!(s, "generation {}", self.generation);
        for (port, r) in &self.registrations {
            let _ = writeln!(
                s,
                "registration {:016x} {} {port}",
                r.key,
                u8::from(r.all_tg_pt)
            );
        }
        if let Some(pr) = &self.persistent {
            let _ = writeln!(
                s,
                "reservation {} {}",
                pr.kind.code(),
                pr.holder.as_deref().unwrap_or("-")
            );
        }
        s.push_str("end\n");
        Some(s.into_bytes())
    }

    /// Replaces the persistent state with one saved by [`Reservations::snapshot`]; an SPC-2
    /// reservation does not survive. Garbage is refused and the state left as it was.
    pub(crate) fn restore(&mut self, bytes: &[u8]) -> Result<(), StateError> {
        if bytes.len() > STATE_BYTES_MAX {
            return Err(StateError::TooLarge(bytes.len()));
        }
        let text = std::str::from_utf8(bytes).map_err(|_| StateError::NotText)?;
        let mut lines = text.split('\n').enumerate().map(|(i, l)| (i + 1, l));
        if lines.next().map(|(_, l)| l) != Some(STATE_HEADER) {
            return Err(StateError::Header);
        }
        let mut generation = None;
        let mut registrations = BTreeMap::new();
        let mut persistent = None;
        let mut ended = false;
        for (line, l) in lines.by_ref() {
            let bad = |reason| StateError::Line { line, reason };
            let mut words = l.split(' ');
            match words.next() {
                Some("generation") if generation.is_none() => {
                    let g = words.next().ok_or(bad("generation has no value"))?;
                    generation = Some(parse_decimal(g).ok_or(bad("bad generation"))?);
                }
                Some("registration") => {
                    let k = words.next().ok_or(bad("registration has no key"))?;
                    if k.len() != 16 || !k.bytes().all(|b| b.is_ascii_hexdigit()) {
                        return Err(bad("a key is 16 hex digits"));
                    }
                    let key = u64::from_str_radix(k, 16).map_err(|_| bad("bad key"))?;
                    if key == 0 {
                        return Err(bad("a registered key is never zero"));
                    }
                    let all_tg_pt = match words.next() {
                        Some("0") => false,
                        Some("1") => true,
                        _ => return Err(bad("ALL_TG_PT is 0 or 1")),
                    };
                    let port = words.next().ok_or(bad("registration has no port"))?;
                    check_port(port).map_err(bad)?;
                    if registrations.len() >= REGISTRATIONS_MAX {
                        return Err(bad("too many registrations"));
                    }
                    let r = Registration { key, all_tg_pt };
                    if registrations.insert(port.to_owned(), r).is_some() {
                        return Err(bad("port registered twice"));
                    }
                }
                Some("reservation") if persistent.is_none() => {
                    let t = words.next().ok_or(bad("reservation has no type"))?;
                    let kind = parse_decimal(t)
                        .and_then(|c| u8::try_from(c).ok())
                        .and_then(PrType::from_code)
                        .ok_or(bad("bad reservation type"))?;
                    let holder = words.next().ok_or(bad("reservation has no holder"))?;
                    let holder = match (kind.all_registrants(), holder) {
                        (true, "-") => None,
                        (false, h) if h != "-" => Some(h.to_owned()),
                        _ => return Err(bad("holder does not fit the reservation type")),
                    };
                    persistent = Some(Persistent { kind, holder });
                }
                Some("end") => {
                    ended = true;
                }
                _ => return Err(bad("unknown or repeated line")),
            }
            if words.next().is_some() {
                return Err(bad("trailing words"));
            }
            if ended {
                break;
            }
        }
        if !ended {
            return Err(StateError::Truncated);
        }
        // Only an empty line may follow: the newline after `end`.
        match (lines.next(), lines.next()) {
            (None, _) | (Some((_, "")), None) => {}
            (Some((line, _)), _) => {
                return Err(StateError::Line {
                    line,
                    reason: "text after `end`",
                })
            }
        }
        let generation = generation.ok_or(StateError::Inconsistent("no generation line"))?;
        if registrations.is_empty() {
            return Err(StateError::Inconsistent("no registrations"));
        }
        if let Some(Persistent {
            holder: Some(h), ..
        }) = &persistent
        {
            if !registrations.contains_key(h) {
                return Err(StateError::Inconsistent(
                    "the reservation holder is not registered",
                ));
            }
        }
        *self = Reservations {
            registrations,
            persistent,
            generation,
            aptpl: true,
            spc2: None,
        };
        Ok(())
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

fn parse_decimal(s: &str) -> Option<u32> {
    if s.is_empty() || s.len() > 10 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
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
mod tests {
    use super::*;
    use crate::{Action, Command, LuConfig, ScsiStatus, Target, TargetConfig};

    const A: NexusId = NexusId(1);
    const B: NexusId = NexusId(2);
    const C: NexusId = NexusId(3);
    /// Never registers, so never has unit attentions: it reads the state for the tests.
    const O: NexusId = NexusId(4);
    const PORT_A: &str = "iqn.2026-11.io.test:a,i,0x23d000000001";
    const PORT_B: &str = "iqn.2026-11.io.test:b,i,0x23d000000002";
    const PORT_C: &str = "iqn.2026-11.io.test:c,i,0x23d000000003";
    const PORT_O: &str = "iqn.2026-11.io.test:o,i,0x23d000000004";

    const WE: u8 = 1;
    const EA: u8 = 3;
    const WE_RO: u8 = 5;
    const EA_RO: u8 = 6;
    const WE_AR: u8 = 7;
    const EA_AR: u8 = 8;
    const TYPES: [u8; 6] = [WE, EA, WE_RO, EA_RO, WE_AR, EA_AR];

    const TUR: [u8; 6] = [0; 6];
    const READ10: [u8; 10] = [0x28, 0, 0, 0, 0, 1, 0, 0, 1, 0];
    const WRITE10: [u8; 10] = [0x2a, 0, 0, 0, 0, 1, 0, 0, 1, 0];
    const INQUIRY: [u8; 6] = [0x12, 0, 0, 0, 36, 0];
    const MODE_SENSE6: [u8; 6] = [0x1a, 0, 0x3f, 0, 255, 0];
    const READ_CAPACITY10: [u8; 10] = [0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    const RESERVE6: [u8; 6] = [0x16, 0, 0, 0, 0, 0];
    const RELEASE6: [u8; 6] = [0x17, 0, 0, 0, 0, 0];

    fn target() -> Target {
        let mut t = Target::new(TargetConfig {
            tid: 1,
            target_name: "iqn.2026-11.io.gateway:t".into(),
            relative_port_id: 1,
            port_group_id: 1,
        });
        t.add_lu(LuConfig {
            lun: 1,
            block_size: 512,
            blocks: 2048,
            vendor_id: "GATEWAY".into(),
            product_id: "DISK".into(),
            product_rev: "0001".into(),
            serial: "sn1".into(),
            naa_id: 42,
            readonly: false,
            removable: false,
            write_cache: true,
            thin: false,
            optimal_xfer_blocks: 128,
            max_xfer_blocks: 32768,
        })
        .unwrap();
        for (n, p) in [(A, PORT_A), (B, PORT_B), (C, PORT_C), (O, PORT_O)] {
            t.nexus_added(n, p);
            drain_ua(&mut t, n);
        }
        t
    }

    fn run(t: &mut Target, nexus: NexusId, cdb: &[u8], data_out: &[u8]) -> Action {
        t.execute(&Command {
            nexus,
            lun: 1,
            cdb,
            data_out,
        })
    }

    /// Takes every pending unit attention of a nexus and returns them.
    fn drain_ua(t: &mut Target, nexus: NexusId) -> Vec<(u8, u8)> {
        let mut got = Vec::new();
        for _ in 0..16 {
            match sense(&run(t, nexus, &TUR, &[])) {
                Some((6, a, q)) => got.push((a, q)),
                _ => return got,
            }
        }
        panic!("unit attentions never end");
    }

    fn sense(a: &Action) -> Option<(u8, u8, u8)> {
        let Action::Respond(r) = a else {
            return None;
        };
        let s = r.sense.as_ref()?;
        Some((s[2] & 0xf, s[12], s[13]))
    }

    fn status(a: &Action) -> ScsiStatus {
        match a {
            Action::Respond(r) => r.status,
            _ => ScsiStatus::Good,
        }
    }

    fn is_good(a: &Action) -> bool {
        status(a) == ScsiStatus::Good
    }

    fn is_conflict(a: &Action) -> bool {
        status(a) == ScsiStatus::ReservationConflict
    }

    fn prout_cdb(sa: u8, kind: u8, len: u32) -> [u8; 10] {
        let mut cdb = [0u8; 10];
        cdb[0] = 0x5f;
        cdb[1] = sa;
        cdb[2] = kind;
        cdb[5..9].copy_from_slice(&len.to_be_bytes());
        cdb
    }

    fn basic(key: u64, sa_key: u64, flags: u8) -> Vec<u8> {
        let mut p = vec![0u8; 24];
        p[..8].copy_from_slice(&key.to_be_bytes());
        p[8..16].copy_from_slice(&sa_key.to_be_bytes());
        p[20] = flags;
        p
    }

    fn prout(t: &mut Target, n: NexusId, sa: u8, kind: u8, key: u64, sa_key: u64) -> Action {
        let p = basic(key, sa_key, 0);
        run(t, n, &prout_cdb(sa, kind, 24), &p)
    }

    fn register(t: &mut Target, n: NexusId, key: u64) {
        let a = prout(t, n, out_sa::REGISTER_AND_IGNORE, 0, 0, key);
        assert!(is_good(&a), "{a:?}");
    }

    fn prin(t: &mut Target, n: NexusId, sa: u8) -> Action {
        run(t, n, &[0x5e, sa, 0, 0, 0, 0, 0, 0x40, 0, 0], &[])
    }

    fn prin_data(t: &mut Target, n: NexusId, sa: u8) -> Vec<u8> {
        match prin(t, n, sa) {
            Action::Respond(r) if r.status == ScsiStatus::Good => r.data,
            a => panic!("{a:?}"),
        }
    }

    fn generation(t: &mut Target) -> u32 {
        let d = prin_data(t, O, in_sa::READ_KEYS);
        u32::from_be_bytes(d[..4].try_into().unwrap())
    }

    fn keys(t: &mut Target) -> Vec<u64> {
        let d = prin_data(t, O, in_sa::READ_KEYS);
        let len = u32::from_be_bytes(d[4..8].try_into().unwrap()) as usize;
        d[8..8 + len]
            .chunks(8)
            .map(|c| u64::from_be_bytes(c.try_into().unwrap()))
            .collect()
    }

    /// (key, type) of the persistent reservation, if any.
    fn reservation(t: &mut Target) -> Option<(u64, u8)> {
        let d = prin_data(t, O, in_sa::READ_RESERVATION);
        if d[4..8] == [0, 0, 0, 0] {
            return None;
        }
        assert_eq!(&d[4..8], &[0, 0, 0, 16]);
        Some((u64::from_be_bytes(d[8..16].try_into().unwrap()), d[21]))
    }

    #[test]
    fn iscsi_initiator_port_name() {
        assert_eq!(
            iscsi_initiator_port("iqn.2026-11.io.Test:x", [0x23, 0xd0, 0, 0, 0xAB, 1]),
            "iqn.2026-11.io.test:x,i,0x23d00000ab01"
        );
    }

    #[test]
    fn register_unregister_and_generation() {
        let mut t = target();
        assert_eq!((generation(&mut t), keys(&mut t)), (0, vec![]));
        // REGISTER from an unregistered nexus must give reservation key zero.
        assert!(is_conflict(&prout(&mut t, A, out_sa::REGISTER, 0, 5, 0xa)));
        // Unregistering what is not registered does nothing and counts nothing.
        assert!(is_good(&prout(&mut t, A, out_sa::REGISTER, 0, 0, 0)));
        assert_eq!(generation(&mut t), 0);
        assert!(is_good(&prout(&mut t, A, out_sa::REGISTER, 0, 0, 0xa)));
        assert_eq!((generation(&mut t), keys(&mut t)), (1, vec![0xa]));
        // Re-registering with the wrong key conflicts (libiscsi ProutRegister).
        assert!(is_conflict(&prout(&mut t, A, out_sa::REGISTER, 0, 0, 0xb)));
        assert!(is_good(&prout(&mut t, A, out_sa::REGISTER, 0, 0xa, 0xb)));
        assert!(is_good(&prout(
            &mut t,
            A,
            out_sa::REGISTER_AND_IGNORE,
            0,
            0x77,
            0xc
        )));
        register(&mut t, B, 0xd);
        assert_eq!((generation(&mut t), keys(&mut t)), (4, vec![0xc, 0xd]));
        assert!(is_good(&prout(&mut t, A, out_sa::REGISTER, 0, 0xc, 0)));
        assert_eq!((generation(&mut t), keys(&mut t)), (5, vec![0xd]));
    }

    #[test]
    fn parameter_list_and_cdb_checks() {
        let mut t = target();
        for len in [0u32, 23, 25, 32] {
            let p = basic(0, 1, 0);
            let mut data = p.clone();
            data.resize(len as usize, 0);
            let cdb = prout_cdb(out_sa::REGISTER, 0, len);
            assert_eq!(t.data_out_len(1, &cdb), u64::from(len));
            assert_eq!(sense(&run(&mut t, A, &cdb, &data)), Some((5, 0x1a, 0)));
        }
        // Less data than the parameter list length says.
        let cdb = prout_cdb(out_sa::REGISTER, 0, 24);
        assert_eq!(sense(&run(&mut t, A, &cdb, &[0; 10])), Some((5, 0x1a, 0)));
        // SPEC_I_PT is not supported; ALL_TG_PT is.
        let spec = basic(0, 1, 0x08);
        assert_eq!(sense(&run(&mut t, A, &cdb, &spec)), Some((5, 0x26, 0)));
        let all = basic(0, 1, 0x04);
        assert!(is_good(&run(&mut t, A, &cdb, &all)));
        // Unknown service actions are bad CDB fields, not unknown commands.
        let bad_out = prout_cdb(0x08, 0, 24);
        assert_eq!(
            sense(&run(&mut t, A, &bad_out, &basic(1, 0, 0))),
            Some((5, 0x24, 0))
        );
        for sa in 4..0x20 {
            assert_eq!(sense(&prin(&mut t, A, sa)), Some((5, 0x24, 0)), "{sa}");
        }
        for sa in 0..4 {
            assert!(is_good(&prin(&mut t, A, sa)));
        }
        // RESERVE needs a valid type and LU scope.
        for bad in [0x00, 0x02, 0x04, 0x09, 0x0f, 0x11] {
            assert_eq!(
                sense(&prout(&mut t, A, out_sa::RESERVE, bad, 1, 0)),
                Some((5, 0x24, 0)),
                "{bad:#x}"
            );
        }
        // The controller LU has no reservations at all.
        let a = t.execute(&Command {
            nexus: A,
            lun: 0,
            cdb: &[0x5e, 0, 0, 0, 0, 0, 0, 0x40, 0, 0],
            data_out: &[],
        });
        assert_eq!(sense(&a), Some((5, 0x20, 0)));
    }

    #[test]
    fn read_keys_truncated_keeps_additional_length() {
        let mut t = target();
        register(&mut t, A, 0x1234);
        let Action::Respond(r) = run(&mut t, A, &[0x5e, 0, 0, 0, 0, 0, 0, 0, 8, 0], &[]) else {
            panic!()
        };
        assert_eq!(r.data, vec![0, 0, 0, 1, 0, 0, 0, 8]);
    }

    #[test]
    fn reserve_release_each_type() {
        let mut t = target();
        register(&mut t, A, 0xa);
        register(&mut t, B, 0xb);
        let gen = generation(&mut t);
        for kind in TYPES {
            assert!(is_good(&prout(&mut t, A, out_sa::RESERVE, kind, 0xa, 0)));
            let shown = if kind >= WE_AR { 0 } else { 0xa };
            assert_eq!(reservation(&mut t), Some((shown, kind)));
            // Again, same type: nothing changes. Another type: conflict.
            assert!(is_good(&prout(&mut t, A, out_sa::RESERVE, kind, 0xa, 0)));
            let other = if kind == WE { EA } else { WE };
            assert!(is_conflict(&prout(
                &mut t,
                A,
                out_sa::RESERVE,
                other,
                0xa,
                0
            )));
            // Wrong key, or not registered: conflict.
            assert!(is_conflict(&prout(
                &mut t,
                A,
                out_sa::RESERVE,
                kind,
                0xb,
                0
            )));
            assert!(is_conflict(&prout(&mut t, C, out_sa::RESERVE, kind, 0, 0)));
            // Releasing with the wrong type is an invalid release.
            assert_eq!(
                sense(&prout(&mut t, A, out_sa::RELEASE, other, 0xa, 0)),
                Some((5, 0x26, 0x04))
            );
            assert!(is_good(&prout(&mut t, A, out_sa::RELEASE, kind, 0xa, 0)));
            assert_eq!(reservation(&mut t), None);
        }
        // RESERVE and RELEASE do not count as generations.
        assert_eq!(generation(&mut t), gen);
        // Releasing when nothing is reserved, or as a non-holder, is a no-op.
        assert!(is_good(&prout(&mut t, A, out_sa::RELEASE, WE, 0xa, 0)));
        assert!(is_good(&prout(&mut t, A, out_sa::RESERVE, EA, 0xa, 0)));
        drain_ua(&mut t, B);
        assert!(is_good(&prout(&mut t, B, out_sa::RELEASE, EA, 0xb, 0)));
        assert_eq!(reservation(&mut t), Some((0xa, EA)));
        assert!(is_conflict(&prout(&mut t, B, out_sa::RESERVE, EA, 0xb, 0)));
    }

    /// For each type: (registered non-holder can read, can write, unregistered can read,
    /// can write), as SPC-4 §5.9.1 and SBC-3 §4.17 give it (and libiscsi ProutReserveAccess).
    #[test]
    fn access_by_type() {
        let table = [
            (WE, [true, false, true, false]),
            (EA, [false, false, false, false]),
            (WE_RO, [true, true, true, false]),
            (EA_RO, [true, true, false, false]),
            (WE_AR, [true, true, true, false]),
            (EA_AR, [true, true, false, false]),
        ];
        for (kind, [reg_r, reg_w, unreg_r, unreg_w]) in table {
            let mut t = target();
            register(&mut t, A, 0xa);
            register(&mut t, B, 0xb);
            assert!(is_good(&prout(&mut t, A, out_sa::RESERVE, kind, 0xa, 0)));
            let can = |t: &mut Target, n, cdb: &[u8], data: &[u8]| {
                let a = run(t, n, cdb, data);
                assert!(is_good(&a) || is_conflict(&a), "{a:?}");
                !is_conflict(&a)
            };
            assert!(can(&mut t, A, &READ10, &[]), "{kind}");
            assert!(can(&mut t, A, &WRITE10, &[0; 512]), "{kind}");
            assert!(can(&mut t, A, &MODE_SENSE6, &[]), "{kind}");
            assert_eq!(can(&mut t, B, &READ10, &[]), reg_r, "{kind}");
            assert_eq!(can(&mut t, B, &WRITE10, &[0; 512]), reg_w, "{kind}");
            assert_eq!(can(&mut t, C, &READ10, &[]), unreg_r, "{kind}");
            assert_eq!(can(&mut t, C, &WRITE10, &[0; 512]), unreg_w, "{kind}");
            // Mode pages and cache flushes count as writes for everyone shut out.
            let sync = [0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0];
            assert_eq!(can(&mut t, C, &MODE_SENSE6, &[]), unreg_w, "{kind}");
            assert_eq!(can(&mut t, C, &sync, &[]), unreg_w, "{kind}");
            // These always pass.
            for cdb in [&TUR[..], &INQUIRY, &READ_CAPACITY10] {
                assert!(is_good(&run(&mut t, C, cdb, &[])), "{kind} {cdb:?}");
            }
            assert!(is_good(&prin(&mut t, C, in_sa::READ_KEYS)));
            // Unregistered B now is shut out like C.
            assert!(is_good(&prout(&mut t, B, out_sa::REGISTER, 0, 0xb, 0)));
            assert_eq!(can(&mut t, B, &READ10, &[]), unreg_r, "{kind}");
            assert_eq!(can(&mut t, B, &WRITE10, &[0; 512]), unreg_w, "{kind}");
        }
    }

    /// libiscsi ProutReserveOwnership: a holder that unregisters takes the reservation with
    /// it, except for the all-registrants types while registrants remain.
    #[test]
    fn unregistering_holder() {
        for kind in TYPES {
            let mut t = target();
            register(&mut t, A, 0xa);
            register(&mut t, B, 0xb);
            assert!(is_good(&prout(&mut t, A, out_sa::RESERVE, kind, 0xa, 0)));
            assert!(is_good(&prout(&mut t, A, out_sa::REGISTER, 0, 0xa, 0)));
            let left = reservation(&mut t);
            let uas = drain_ua(&mut t, B);
            if kind >= WE_AR {
                assert_eq!(left, Some((0, kind)));
                assert!(is_good(&prout(&mut t, B, out_sa::RELEASE, kind, 0xb, 0)));
            } else {
                assert_eq!(left, None);
            }
            let released = uas.contains(&asc::RESERVATIONS_RELEASED);
            assert_eq!(released, kind == WE_RO || kind == EA_RO, "{kind}");
        }
        // The last registrant of an all-registrants reservation ends it.
        let mut t = target();
        register(&mut t, A, 0xa);
        assert!(is_good(&prout(&mut t, A, out_sa::RESERVE, EA_AR, 0xa, 0)));
        assert!(is_good(&prout(&mut t, A, out_sa::REGISTER, 0, 0xa, 0)));
        assert_eq!(reservation(&mut t), None);
    }

    #[test]
    fn release_tells_registrants_for_shared_types() {
        for kind in TYPES {
            let mut t = target();
            register(&mut t, A, 0xa);
            register(&mut t, B, 0xb);
            assert!(is_good(&prout(&mut t, A, out_sa::RESERVE, kind, 0xa, 0)));
            assert!(is_good(&prout(&mut t, A, out_sa::RELEASE, kind, 0xa, 0)));
            let b = drain_ua(&mut t, B);
            assert_eq!(b.contains(&asc::RESERVATIONS_RELEASED), kind > EA, "{kind}");
            assert!(drain_ua(&mut t, A).is_empty());
            assert!(drain_ua(&mut t, C).is_empty(), "not registered, not told");
        }
    }

    #[test]
    fn clear_removes_everything_and_tells_registrants() {
        let mut t = target();
        register(&mut t, A, 0xa);
        register(&mut t, B, 0xb);
        assert!(is_good(&prout(&mut t, A, out_sa::RESERVE, EA, 0xa, 0)));
        let gen = generation(&mut t);
        assert!(is_conflict(&prout(&mut t, C, out_sa::CLEAR, 0, 0, 0)));
        assert!(is_conflict(&prout(&mut t, B, out_sa::CLEAR, 0, 0xa, 0)));
        assert!(is_good(&prout(&mut t, B, out_sa::CLEAR, 0, 0xb, 0)));
        assert_eq!(generation(&mut t), gen + 1);
        assert_eq!((keys(&mut t), reservation(&mut t)), (vec![], None));
        assert_eq!(drain_ua(&mut t, A), vec![asc::RESERVATIONS_PREEMPTED]);
        assert!(drain_ua(&mut t, B).is_empty());
        assert!(is_good(&run(&mut t, C, &WRITE10, &[0; 512])));
    }

    #[test]
    fn preempt_registration_without_reservation() {
        let mut t = target();
        register(&mut t, A, 0xa);
        register(&mut t, B, 0xb);
        let gen = generation(&mut t);
        // libiscsi ProutPreempt: B removes A's registration.
        assert!(is_good(&prout(&mut t, B, out_sa::PREEMPT, EA, 0xb, 0xa)));
        assert_eq!((keys(&mut t), generation(&mut t)), (vec![0xb], gen + 1));
        assert_eq!(drain_ua(&mut t, A), vec![asc::REGISTRATIONS_PREEMPTED]);
        assert!(drain_ua(&mut t, B).is_empty());
        // A key nobody has: conflict. Key zero: invalid. Not registered: conflict.
        assert!(is_conflict(&prout(
            &mut t,
            B,
            out_sa::PREEMPT,
            EA,
            0xb,
            0x99
        )));
        assert_eq!(
            sense(&prout(&mut t, B, out_sa::PREEMPT, EA, 0xb, 0)),
            Some((5, 0x26, 0))
        );
        assert!(is_conflict(&prout(
            &mut t,
            A,
            out_sa::PREEMPT,
            EA,
            0xa,
            0xb
        )));
        assert_eq!(reservation(&mut t), None);
    }

    #[test]
    fn preempt_holder_takes_reservation() {
        let mut t = target();
        register(&mut t, A, 0xa);
        register(&mut t, B, 0xb);
        register(&mut t, C, 0xc);
        assert!(is_good(&prout(&mut t, A, out_sa::RESERVE, EA, 0xa, 0)));
        // PREEMPT AND ABORT behaves as PREEMPT; the type changes, so C hears of it.
        assert!(is_good(&prout(
            &mut t,
            B,
            out_sa::PREEMPT_AND_ABORT,
            WE_RO,
            0xb,
            0xa
        )));
        assert_eq!(reservation(&mut t), Some((0xb, WE_RO)));
        assert_eq!(keys(&mut t), vec![0xb, 0xc]);
        assert_eq!(drain_ua(&mut t, A), vec![asc::REGISTRATIONS_PREEMPTED]);
        assert_eq!(drain_ua(&mut t, C), vec![asc::RESERVATIONS_RELEASED]);
        assert!(drain_ua(&mut t, B).is_empty());
        // Preempting a non-holder's key leaves the reservation alone.
        assert!(is_good(&prout(&mut t, B, out_sa::PREEMPT, EA, 0xb, 0xc)));
        assert_eq!(reservation(&mut t), Some((0xb, WE_RO)));
        assert_eq!(keys(&mut t), vec![0xb]);
        // Key zero against a reservation that is not all-registrants is invalid.
        register(&mut t, A, 0xa);
        assert_eq!(
            sense(&prout(&mut t, A, out_sa::PREEMPT, EA, 0xa, 0)),
            Some((5, 0x26, 0))
        );
    }

    #[test]
    fn preempt_all_registrants_with_key_zero() {
        let mut t = target();
        register(&mut t, A, 0xa);
        register(&mut t, B, 0xb);
        register(&mut t, C, 0xc);
        assert!(is_good(&prout(&mut t, A, out_sa::RESERVE, WE_AR, 0xa, 0)));
        assert!(is_good(&prout(&mut t, C, out_sa::PREEMPT, EA, 0xc, 0)));
        assert_eq!(keys(&mut t), vec![0xc]);
        assert_eq!(reservation(&mut t), Some((0xc, EA)));
        assert_eq!(drain_ua(&mut t, A), vec![asc::REGISTRATIONS_PREEMPTED]);
        assert_eq!(drain_ua(&mut t, B), vec![asc::REGISTRATIONS_PREEMPTED]);
        assert!(is_conflict(&run(&mut t, A, &READ10, &[])));
    }

    fn move_list(key: u64, sa_key: u64, flags: u8, rel_port: u16, port: &str) -> Vec<u8> {
        let tid = transport_id(port);
        let mut p = vec![0u8; 24];
        p[..8].copy_from_slice(&key.to_be_bytes());
        p[8..16].copy_from_slice(&sa_key.to_be_bytes());
        p[17] = flags;
        p[18..20].copy_from_slice(&rel_port.to_be_bytes());
        p[20..24].copy_from_slice(&(tid.len() as u32).to_be_bytes());
        p.extend(tid);
        p
    }

    fn register_and_move(t: &mut Target, n: NexusId, list: &[u8]) -> Action {
        let cdb = prout_cdb(out_sa::REGISTER_AND_MOVE, WE, list.len() as u32);
        run(t, n, &cdb, list)
    }

    #[test]
    fn register_and_move_hands_over() {
        let mut t = target();
        register(&mut t, A, 0xa);
        register(&mut t, C, 0xc);
        // Not the holder yet.
        let to_b = move_list(0xa, 0xb, 0x02, 1, PORT_B);
        assert!(is_conflict(&register_and_move(&mut t, A, &to_b)));
        assert!(is_good(&prout(&mut t, A, out_sa::RESERVE, EA, 0xa, 0)));
        let gen = generation(&mut t);
        let bad = [
            move_list(0xa, 0, 0, 1, PORT_B),
            move_list(0xa, 0xb, 0, 2, PORT_B),
            move_list(0xa, 0xb, 0, 1, PORT_A),
            move_list(0xa, 0xb, 0, 1, "iqn.2026-11.io.test:b"),
        ];
        for list in bad {
            assert_eq!(
                sense(&register_and_move(&mut t, A, &list)),
                Some((5, 0x26, 0))
            );
        }
        let mut short = to_b.clone();
        short.truncate(30);
        assert_eq!(
            sense(&register_and_move(&mut t, A, &short)),
            Some((5, 0x1a, 0))
        );
        assert!(is_conflict(&register_and_move(
            &mut t,
            A,
            &move_list(0x5, 0xb, 0x02, 1, PORT_B)
        )));
        // The move: B (not connected here as a holder before) holds EA; A is unregistered.
        let upper = move_list(0xa, 0xb, 0x02, 1, "IQN.2026-11.IO.TEST:B,i,0x23D000000002");
        assert!(is_good(&register_and_move(&mut t, A, &upper)));
        assert_eq!(reservation(&mut t), Some((0xb, EA)));
        assert_eq!(keys(&mut t), vec![0xb, 0xc]);
        assert_eq!(generation(&mut t), gen + 1);
        assert!(is_good(&run(&mut t, B, &WRITE10, &[0; 512])));
        assert!(is_conflict(&run(&mut t, A, &READ10, &[])));
        // An all-registrants reservation cannot move.
        assert!(is_good(&prout(&mut t, B, out_sa::RELEASE, EA, 0xb, 0)));
        assert!(is_good(&prout(&mut t, B, out_sa::RESERVE, EA_AR, 0xb, 0)));
        let to_a = move_list(0xb, 0xa, 0, 1, PORT_A);
        assert!(is_conflict(&register_and_move(&mut t, B, &to_a)));
    }

    #[test]
    fn read_full_status_and_capabilities() {
        let mut t = target();
        let caps = prin_data(&mut t, A, in_sa::REPORT_CAPABILITIES);
        assert_eq!(caps, vec![0, 8, 0x05, 0x90, 0xea, 0x01, 0, 0]);
        register(&mut t, A, 0xa);
        let p = basic(0, 0xb, 0x05); // ALL_TG_PT and APTPL
        assert!(is_good(&run(
            &mut t,
            B,
            &prout_cdb(out_sa::REGISTER, 0, 24),
            &p
        )));
        assert_eq!(prin_data(&mut t, A, in_sa::REPORT_CAPABILITIES)[3], 0x91);
        assert!(is_good(&prout(&mut t, B, out_sa::RESERVE, WE_RO, 0xb, 0)));
        let d = prin_data(&mut t, C, in_sa::READ_FULL_STATUS);
        assert_eq!(&d[..4], &generation(&mut t).to_be_bytes());
        let len = u32::from_be_bytes(d[4..8].try_into().unwrap()) as usize;
        assert_eq!(len, d.len() - 8);
        // Two descriptors, by port name: A then B.
        let a = &d[8..];
        assert_eq!(&a[..8], &0xau64.to_be_bytes());
        assert_eq!((a[12], a[13]), (0, 0));
        assert_eq!(&a[18..20], &[0, 1]);
        let tid_len = u32::from_be_bytes(a[20..24].try_into().unwrap()) as usize;
        let tid = &a[24..24 + tid_len];
        assert_eq!(tid[0], 0x45, "format 01b, iSCSI");
        assert_eq!(
            usize::from(u16::from_be_bytes([tid[2], tid[3]])),
            tid_len - 4
        );
        assert_eq!(tid_len % 4, 0);
        assert_eq!(&tid[4..4 + PORT_A.len()], PORT_A.as_bytes());
        assert_eq!(tid[4 + PORT_A.len()], 0);
        let b = &a[24 + tid_len..];
        assert_eq!(&b[..8], &0xbu64.to_be_bytes());
        assert_eq!((b[12], b[13]), (0x03, WE_RO));
        assert_eq!(parse_transport_id(&b[24..]).unwrap(), PORT_B);
    }

    #[test]
    fn spc2_reserve_release() {
        let mut t = target();
        assert!(is_good(&run(&mut t, A, &RESERVE6, &[])));
        assert!(is_good(&run(&mut t, A, &RESERVE6, &[])));
        assert!(is_conflict(&run(&mut t, B, &RESERVE6, &[])));
        // libiscsi Reserve6-2initiators: RELEASE from another nexus is a no-op.
        assert!(is_good(&run(&mut t, B, &RELEASE6, &[])));
        assert!(is_good(&run(&mut t, A, &MODE_SENSE6, &[])));
        for cdb in [&MODE_SENSE6[..], &READ10, &TUR, &READ_CAPACITY10] {
            assert!(is_conflict(&run(&mut t, B, cdb, &[])), "{cdb:?}");
        }
        assert!(is_good(&run(&mut t, B, &INQUIRY, &[])));
        // Persistent reservation commands conflict for everyone (SPC-2 §5.5.1).
        assert!(is_conflict(&prin(&mut t, A, in_sa::READ_KEYS)));
        assert!(is_conflict(&prout(&mut t, A, out_sa::REGISTER, 0, 0, 1)));
        assert!(is_good(&run(&mut t, A, &RELEASE6, &[])));
        let reserve10 = [0x56, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        assert!(is_good(&run(&mut t, B, &reserve10, &[])));
        assert!(is_conflict(&run(&mut t, A, &READ10, &[])));
        // Third-party reservations are not supported.
        let third = [0x56, 0x10, 0, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(sense(&run(&mut t, B, &third, &[])), Some((5, 0x24, 0)));
        // Losing the nexus releases it.
        t.nexus_removed(B);
        assert!(is_good(&run(&mut t, A, &READ10, &[])));
        // So does a reset.
        assert!(is_good(&run(&mut t, A, &RESERVE6, &[])));
        t.reset(Some(1));
        drain_ua(&mut t, C);
        assert!(is_good(&run(&mut t, C, &RESERVE6, &[])));
        assert!(is_good(&run(&mut t, C, &RELEASE6, &[])));
        // Registrations shut RESERVE and RELEASE out.
        drain_ua(&mut t, A);
        register(&mut t, A, 0xa);
        assert!(is_conflict(&run(&mut t, A, &RESERVE6, &[])));
        assert!(is_conflict(&run(&mut t, C, &RELEASE6, &[])));
    }

    #[test]
    fn registrations_survive_nexus_loss_and_reset() {
        let mut t = target();
        register(&mut t, A, 0xa);
        assert!(is_good(&prout(&mut t, A, out_sa::RESERVE, EA, 0xa, 0)));
        t.nexus_removed(A);
        t.reset(None);
        // The same initiator port logs in again on a new nexus, ISID in upper case.
        let a2 = NexusId(9);
        t.nexus_added(a2, &PORT_A.to_ascii_uppercase());
        drain_ua(&mut t, a2);
        drain_ua(&mut t, B);
        drain_ua(&mut t, O);
        assert_eq!(reservation(&mut t), Some((0xa, EA)));
        assert!(is_good(&run(&mut t, a2, &WRITE10, &[0; 512])));
        assert!(is_conflict(&run(&mut t, B, &READ10, &[])));
    }

    #[test]
    fn unit_attention_comes_before_conflict() {
        let mut t = target();
        register(&mut t, A, 0xa);
        assert!(is_good(&prout(&mut t, A, out_sa::RESERVE, EA, 0xa, 0)));
        t.resize_lu(1, 4096).unwrap();
        assert_eq!(sense(&run(&mut t, B, &READ10, &[])), Some((6, 0x2a, 0x09)));
        assert!(is_conflict(&run(&mut t, B, &READ10, &[])));
    }

    #[test]
    fn supported_opcodes_lists_reservation_commands() {
        let mut t = target();
        for (op, sa) in [(0x5e, 3), (0x5f, 7)] {
            let rsoc = [0xa3, 0x0c, 0x02, op, 0, sa, 0, 0, 1, 0, 0, 0];
            let Action::Respond(r) = run(&mut t, A, &rsoc, &[]) else {
                panic!()
            };
            assert_eq!(r.data[1] & 0x07, 3, "{op:#x}");
            assert_eq!((r.data[4], r.data[5]), (op, sa));
        }
        for op in [0x16, 0x17, 0x56, 0x57] {
            let rsoc = [0xa3, 0x0c, 0x01, op, 0, 0, 0, 0, 1, 0, 0, 0];
            let Action::Respond(r) = run(&mut t, A, &rsoc, &[]) else {
                panic!()
            };
            assert_eq!(r.data[1] & 0x07, 3, "{op:#x}");
        }
    }

    fn aptpl_register(t: &mut Target, n: NexusId, key: u64, sa_key: u64, aptpl: bool) {
        let p = basic(key, sa_key, u8::from(aptpl));
        let a = run(t, n, &prout_cdb(out_sa::REGISTER, 0, 24), &p);
        assert!(is_good(&a), "{a:?}");
    }

    #[test]
    fn aptpl_state_round_trip() {
        let mut t = target();
        // Without APTPL nothing is saved.
        register(&mut t, A, 0xa);
        assert_eq!(t.take_dirty_reservations(), Vec::<u64>::new());
        assert_eq!(t.reservation_state(1), None);
        aptpl_register(&mut t, B, 0, 0xb, true);
        assert_eq!(t.take_dirty_reservations(), vec![1]);
        assert_eq!(t.take_dirty_reservations(), Vec::<u64>::new());
        assert!(is_good(&prout(&mut t, B, out_sa::RESERVE, WE_RO, 0xb, 0)));
        assert_eq!(t.take_dirty_reservations(), vec![1]);
        let saved = t.reservation_state(1).expect("APTPL is on");
        let before = prin_data(&mut t, A, in_sa::READ_FULL_STATUS);

        // After a restart the same state is back, with APTPL on.
        let mut fresh = target();
        fresh.restore_reservations(1, &saved).unwrap();
        assert_eq!(prin_data(&mut fresh, A, in_sa::READ_FULL_STATUS), before);
        assert_eq!(fresh.reservation_state(1), Some(saved.clone()));
        assert_eq!(
            prin_data(&mut fresh, A, in_sa::REPORT_CAPABILITIES)[3] & 1,
            1
        );
        assert!(is_conflict(&run(&mut fresh, C, &WRITE10, &[0; 512])));
        assert_eq!(
            fresh.restore_reservations(7, &saved),
            Err(crate::ScsiError::NoSuchLun(7))
        );

        // Clearing APTPL: the saved state must become nothing.
        aptpl_register(&mut t, B, 0xb, 0xb, false);
        assert_eq!(t.take_dirty_reservations(), vec![1]);
        assert_eq!(t.reservation_state(1), None);
        // And further changes are not the caller's business.
        assert!(is_good(&prout(&mut t, B, out_sa::RELEASE, WE_RO, 0xb, 0)));
        assert_eq!(t.take_dirty_reservations(), Vec::<u64>::new());
        drain_ua(&mut t, A);
        // The last registration going away ends APTPL too.
        aptpl_register(&mut t, B, 0xb, 0xb, true);
        assert!(is_good(&prout(&mut t, A, out_sa::CLEAR, 0, 0xa, 0)));
        assert_eq!(t.take_dirty_reservations(), vec![1]);
        assert_eq!(t.reservation_state(1), None);
        assert_eq!(prin_data(&mut t, A, in_sa::REPORT_CAPABILITIES)[3] & 1, 0);
    }

    #[test]
    fn aptpl_all_registrants_round_trip() {
        let mut r = Reservations::default();
        r.registrations.insert(
            PORT_A.into(),
            Registration {
                key: u64::MAX,
                all_tg_pt: true,
            },
        );
        r.persistent = Some(Persistent {
            kind: PrType::ExclusiveAccessAllRegistrants,
            holder: None,
        });
        r.generation = u32::MAX;
        r.aptpl = true;
        let saved = r.snapshot().unwrap();
        let mut back = Reservations::default();
        back.restore(&saved).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn garbage_state_is_refused() {
        let good = format!(
            "{STATE_HEADER}\ngeneration 3\nregistration 000000000000000a 0 {PORT_A}\n\
             reservation 1 {PORT_A}\nend\n"
        );
        let mut r = Reservations::default();
        r.restore(good.as_bytes()).unwrap();
        let kept = r.clone();
        let cases: Vec<(String, &str)> = vec![
            (String::new(), "empty"),
            (good.replace("v1", "v2"), "version"),
            (good.replace("end\n", ""), "truncated"),
            (good.replace("generation 3", "generation -3"), "generation"),
            (
                good.replace("generation 3", "generation 99999999999"),
                "huge",
            ),
            (
                good.replace("000000000000000a", "00000000000000a"),
                "short key",
            ),
            (good.replace("000000000000000a", "000000000000000g"), "hex"),
            (
                good.replace("000000000000000a", "0000000000000000"),
                "zero key",
            ),
            (good.replace(" 0 iqn", " 2 iqn"), "all_tg_pt"),
            (good.replace("reservation 1", "reservation 2"), "type"),
            (
                good.replace("reservation 1", "reservation 7"),
                "AR with holder",
            ),
            (
                good.replace(&format!("reservation 1 {PORT_A}"), "reservation 1 x"),
                "holder not registered",
            ),
            (good.replace(":a,i", ":A,i"), "not normalised"),
            (good.replace("end\n", "end\nextra\n"), "after end"),
            (good.replace("end\n", "end\n\n"), "blank after end"),
            (good.replace("generation 3\n", ""), "no generation"),
            (
                good.replace("generation 3\n", "generation 3\ngeneration 4\n"),
                "twice",
            ),
            (good.replace("end", "bogus\nend"), "unknown"),
            (good.replace("end", "end now"), "trailing words"),
            (good.replace("\n", "\r\n"), "CRLF"),
            (
                format!("{STATE_HEADER}\ngeneration 1\nend\n"),
                "no registrations",
            ),
            (
                good.replace(
                    "reservation",
                    &format!("registration 000000000000000b 0 {PORT_A}\nreservation"),
                ),
                "port twice",
            ),
        ];
        for (text, why) in cases {
            assert!(r.restore(text.as_bytes()).is_err(), "{why}: {text:?}");
            assert_eq!(r, kept, "{why}: state must be left alone");
        }
        assert_eq!(r.restore(&[0xff, 0xfe]), Err(StateError::NotText));
        let huge = vec![b'a'; STATE_BYTES_MAX + 1];
        assert_eq!(
            r.restore(&huge),
            Err(StateError::TooLarge(STATE_BYTES_MAX + 1))
        );
        // Too many registrations.
        let mut many = format!("{STATE_HEADER}\ngeneration 1\n");
        for i in 0..=REGISTRATIONS_MAX {
            many.push_str(&format!("registration {:016x} 0 p{i}\n", i + 1));
        }
        many.push_str("end\n");
        assert!(r.restore(many.as_bytes()).is_err());
    }

    #[test]
    fn registrations_are_bounded() {
        let mut t = target();
        for i in 0..REGISTRATIONS_MAX as u64 {
            let n = NexusId(100 + i);
            t.nexus_added(n, &format!("iqn.2026-11.io.test:n{i},i,0x000000000001"));
            drain_ua(&mut t, n);
            register(&mut t, n, i + 1);
        }
        let a = prout(&mut t, A, out_sa::REGISTER_AND_IGNORE, 0, 0, 0xa);
        assert_eq!(sense(&a), Some((5, 0x55, 0x04)));
    }
}
