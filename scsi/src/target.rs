//! The SCSI target device: LUN 0 controller plus disk LUs, command dispatch and unit
//! attentions (SAM-5, SPC-4).

use std::collections::{BTreeMap, BTreeSet};

use crate::cdb::{op, truncate, u16_at, u32_at};
use crate::inquiry::{self, TYPE_CONTROLLER, TYPE_DISK};
use crate::lu::{Lu, LuConfig};
use crate::mode::{self, PageControl};
use crate::opcodes;
use crate::reservation::{normalize_port, Refusal};
use crate::sense::{asc, key, Sense};
use crate::xcopy::{self, CopyOutcome, CopyPlan, CopyRecords, CopyTarget};
use crate::{Action, Command, IoOutcome, NexusId, Response, ScsiError, ScsiStatus};

/// The target's identity as VPD 0x83 reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetConfig {
    /// Target ID.
    pub tid: u32,
    /// iSCSI name of the target.
    pub target_name: String,
    /// Relative target port identifier.
    pub relative_port_id: u16,
    /// Target port group.
    pub port_group_id: u16,
}

/// What the management plane sees of an LU.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LuStatus {
    /// Its configuration.
    pub cfg: LuConfig,
    /// Medium present (not taken offline, not ejected).
    pub online: bool,
    /// Some nexus holds PREVENT MEDIUM REMOVAL.
    pub prevent_removal: bool,
}

/// One target's LUs.
#[derive(Debug)]
pub struct Target {
    cfg: TargetConfig,
    lus: BTreeMap<u64, Lu>,
    /// Each I_T nexus with its initiator port name.
    nexuses: BTreeMap<NexusId, String>,
    /// LUNs whose APTPL reservation state changed since the caller last asked.
    dirty_reservations: BTreeSet<u64>,
    /// EXTENDED COPY results per nexus, for RECEIVE COPY RESULTS.
    copies: CopyRecords,
}

/// RESERVATION CONFLICT status, which carries no sense data (SAM-5 §5.3.1).
fn conflict() -> Action {
    Action::Respond(Response {
        status: ScsiStatus::ReservationConflict,
        sense: None,
        data: Vec::new(),
    })
}

fn check(sense: Sense, descriptor: bool) -> Response {
    Response {
        status: ScsiStatus::CheckCondition,
        sense: Some(sense.encode(descriptor)),
        data: Vec::new(),
    }
}

impl Target {
    /// A target with only its LUN 0 controller.
    pub fn new(cfg: TargetConfig) -> Target {
        let controller = LuConfig {
            lun: 0,
            block_size: 512,
            blocks: 0,
            vendor_id: "GATEWAY".into(),
            product_id: "CONTROLLER".into(),
            product_rev: "0001".into(),
            serial: format!("ctl{:08x}", cfg.tid),
            device_id: None,
            naa_id: u64::from(cfg.tid) << 16,
            readonly: true,
            removable: false,
            write_cache: false,
            thin: false,
            optimal_xfer_blocks: 0,
            max_xfer_blocks: 0,
        };
        let mut lus = BTreeMap::new();
        lus.insert(0, Lu::new(controller));
        Target {
            cfg,
            lus,
            nexuses: BTreeMap::new(),
            dirty_reservations: BTreeSet::new(),
            copies: CopyRecords::default(),
        }
    }

    /// Adds a disk LU.
    pub fn add_lu(&mut self, cfg: LuConfig) -> Result<(), ScsiError> {
        if cfg.lun == 0 {
            return Err(ScsiError::LunZero);
        }
        if !matches!(cfg.block_size, 512 | 1024 | 2048 | 4096) {
            return Err(ScsiError::BlockSize(cfg.block_size));
        }
        if self.lus.contains_key(&cfg.lun) {
            return Err(ScsiError::LunExists(cfg.lun));
        }
        let lun = cfg.lun;
        let mut lu = Lu::new(cfg);
        for &n in self.nexuses.keys() {
            lu.add_ua(n, asc::POWER_ON_RESET);
        }
        self.lus.insert(lun, lu);
        for (&l, lu) in self.lus.iter_mut() {
            if l != lun {
                for &n in self.nexuses.keys() {
                    lu.add_ua(n, asc::REPORTED_LUNS_CHANGED);
                }
            }
        }
        Ok(())
    }

    /// Removes a disk LU.
    pub fn remove_lu(&mut self, lun: u64) -> Result<(), ScsiError> {
        if lun == 0 {
            return Err(ScsiError::LunZero);
        }
        self.lus.remove(&lun).ok_or(ScsiError::NoSuchLun(lun))?;
        self.dirty_reservations.remove(&lun);
        for lu in self.lus.values_mut() {
            for &n in self.nexuses.keys() {
                lu.add_ua(n, asc::REPORTED_LUNS_CHANGED);
            }
        }
        Ok(())
    }

    /// Changes an LU's capacity; every nexus learns of it by unit attention.
    pub fn resize_lu(&mut self, lun: u64, blocks: u64) -> Result<(), ScsiError> {
        let lu = self
            .lus
            .get_mut(&lun)
            .filter(|_| lun != 0)
            .ok_or(ScsiError::NoSuchLun(lun))?;
        lu.cfg.blocks = blocks;
        for &n in self.nexuses.keys() {
            lu.add_ua(n, asc::CAPACITY_CHANGED);
        }
        Ok(())
    }

    /// An LU's configuration and state, for the management plane.
    pub fn lu_status(&self, lun: u64) -> Option<LuStatus> {
        self.lus.get(&lun).map(|lu| LuStatus {
            cfg: lu.cfg.clone(),
            online: lu.medium_present,
            prevent_removal: !lu.prevent.is_empty(),
        })
    }

    /// Replaces a disk LU's identity and flags (INQUIRY strings, serial, read-only, removable,
    /// thin provisioning) and takes it online or offline (offline: NOT READY, MEDIUM NOT
    /// PRESENT). Every nexus learns of it by unit attention. The capacity and block size stay.
    pub fn reconfigure_lu(&mut self, cfg: LuConfig, online: bool) -> Result<(), ScsiError> {
        let lu = self
            .lus
            .get_mut(&cfg.lun)
            .filter(|_| cfg.lun != 0)
            .ok_or(ScsiError::NoSuchLun(cfg.lun))?;
        let blocks = lu.cfg.blocks;
        let block_size = lu.cfg.block_size;
        if cfg.write_cache != lu.cfg.write_cache {
            // The caching page follows (its WCE decides whether writes are made durable).
            lu.mode.wce = cfg.write_cache;
            lu.default_mode.wce = cfg.write_cache;
        }
        lu.cfg = LuConfig {
            blocks,
            block_size,
            ..cfg
        };
        lu.medium_present = online;
        for &n in self.nexuses.keys() {
            lu.add_ua(n, asc::INQUIRY_DATA_CHANGED);
        }
        Ok(())
    }

    /// The disk LUNs.
    pub fn luns(&self) -> Vec<u64> {
        self.lus.keys().copied().filter(|&l| l != 0).collect()
    }

    /// Whether a LUN exists (LUN 0 always does).
    pub fn lun_known(&self, lun: u64) -> bool {
        self.lus.contains_key(&lun)
    }

    /// A new I_T nexus from `initiator_port` (for iSCSI `<name>,i,0x<isid>`, see
    /// [`crate::iscsi_initiator_port`]): it starts with a power-on unit attention on every LU.
    /// Reservations are kept by initiator port, so a port that logs in again finds its
    /// registrations.
    pub fn nexus_added(&mut self, nexus: NexusId, initiator_port: &str) {
        self.nexuses.insert(nexus, normalize_port(initiator_port));
        for lu in self.lus.values_mut() {
            lu.ua.remove(&nexus);
            lu.add_ua(nexus, asc::POWER_ON_RESET);
        }
    }

    /// An I_T nexus is gone: its unit attentions, medium-removal prevention and SPC-2
    /// reservations go with it; persistent registrations stay (SPC-4 §5.9.6).
    pub fn nexus_removed(&mut self, nexus: NexusId) {
        self.nexuses.remove(&nexus);
        self.copies.nexus_removed(nexus);
        for lu in self.lus.values_mut() {
            lu.ua.remove(&nexus);
            lu.prevent.remove(&nexus);
            lu.reservations.nexus_lost(nexus);
        }
    }

    /// A reset of one LU (or all, for a target reset): prevention and SPC-2 reservations are
    /// cleared and every nexus is told by unit attention. Persistent reservations stay.
    pub fn reset(&mut self, lun: Option<u64>) {
        for (&l, lu) in self.lus.iter_mut() {
            if lun.is_none_or(|x| x == l) {
                lu.prevent.clear();
                lu.reservations.reset();
                for &n in self.nexuses.keys() {
                    lu.add_ua(n, asc::POWER_ON_RESET);
                }
            }
        }
    }

    /// Data-out bytes the CDB asks for (0 when none or when the CDB is not understood).
    pub fn data_out_len(&self, lun: u64, cdb: &[u8]) -> u64 {
        let Some(lu) = self.lus.get(&lun) else {
            return 0;
        };
        // Short CDBs read as zero-padded, as `execute` sees them.
        let mut padded = [0u8; 16];
        let n = cdb.len().min(16);
        padded[..n].copy_from_slice(&cdb[..n]);
        let cdb = &padded[..];
        if n == 0 {
            return 0;
        }
        match cdb.first() {
            Some(&op::MODE_SELECT_6) => u64::from(cdb[4]),
            Some(&op::MODE_SELECT_10) => u64::from(u16_at(cdb, 7)),
            Some(&op::PERSISTENT_RESERVE_OUT) if lun != 0 => u64::from(u32_at(cdb, 5)),
            Some(&op::RESERVE_10 | &op::RELEASE_10) if lun != 0 => u64::from(u16_at(cdb, 7)),
            Some(&op::SANITIZE) if lun != 0 => crate::sanitize::data_out_len(cdb),
            Some(&op::EXTENDED_COPY) if lun != 0 => u64::from(u32_at(cdb, 10)),
            Some(_) if lun != 0 => crate::provisioning::data_out_len(cdb, lu.cfg.block_size)
                .unwrap_or_else(|| lu.data_out_len(cdb)),
            _ => 0,
        }
    }

    /// Executes a command.
    pub fn execute(&mut self, cmd: &Command<'_>) -> Action {
        if cmd.cdb.len() < 6 {
            return Action::Respond(check(
                Sense::new(key::ILLEGAL_REQUEST, asc::INVALID_OPCODE),
                false,
            ));
        }
        let mut cdb = [0u8; 16];
        let n = cmd.cdb.len().min(16);
        cdb[..n].copy_from_slice(&cmd.cdb[..n]);
        let opcode = cdb[0];
        let Some(lu) = self.lus.get(&cmd.lun) else {
            return Action::Respond(self.no_such_lun(&cdb));
        };
        let descriptor = lu.mode.d_sense;
        match self.dispatch(cmd.nexus, cmd.lun, &cdb, cmd.data_out) {
            Ok(action) => action,
            Err(sense) => {
                let _ = opcode;
                Action::Respond(check(sense, descriptor))
            }
        }
    }

    fn no_such_lun(&self, cdb: &[u8]) -> Response {
        match cdb[0] {
            op::INQUIRY if cdb[1] & 0x01 == 0 => {
                Response::good(truncate(inquiry::no_lu(), usize::from(u16_at(cdb, 3))))
            }
            op::REPORT_LUNS => match self.report_luns(cdb) {
                Ok(d) => Response::good(d),
                Err(s) => check(s, false),
            },
            op::REQUEST_SENSE => {
                let desc = cdb[1] & 0x01 != 0;
                let data = Sense::new(key::ILLEGAL_REQUEST, asc::LUN_NOT_SUPPORTED).encode(desc);
                Response::good(truncate(data, usize::from(cdb[4])))
            }
            _ => check(
                Sense::new(key::ILLEGAL_REQUEST, asc::LUN_NOT_SUPPORTED),
                false,
            ),
        }
    }

    fn report_luns(&self, cdb: &[u8]) -> Result<Vec<u8>, Sense> {
        let alloc = u32_at(cdb, 6) as usize;
        if alloc < 16 {
            return Err(Sense::invalid_cdb_field(6, None));
        }
        let luns: Vec<u64> = match cdb[2] {
            0x00 | 0x02 => self.lus.keys().copied().collect(),
            0x01 => Vec::new(), // no well-known LUs
            0x10..=0x12 => self.lus.keys().copied().collect(),
            _ => return Err(Sense::invalid_cdb_field(2, None)),
        };
        let mut v = Vec::with_capacity(8 + luns.len() * 8);
        v.extend_from_slice(&((luns.len() * 8) as u32).to_be_bytes());
        v.extend_from_slice(&[0; 4]);
        for l in luns {
            v.extend_from_slice(&crate::lun_to_wire(l));
        }
        Ok(truncate(v, alloc))
    }

    fn dispatch(
        &mut self,
        nexus: NexusId,
        lun: u64,
        cdb: &[u8; 16],
        data_out: &[u8],
    ) -> Result<Action, Sense> {
        let opcode = cdb[0];
        let controller = lun == 0;
        let table = if controller {
            opcodes::CONTROLLER
        } else {
            opcodes::DISK
        };
        let sa = u16::from(cdb[1] & 0x1f);
        if !opcodes::supports(table, opcode, sa) {
            // An unknown service action of PERSISTENT RESERVE IN or OUT is a bad CDB field
            // (SPC-4 §6.15.1, §6.16.1), and so is one of SANITIZE (SBC-3 §5.30.1), not an
            // unknown command.
            if matches!(
                opcode,
                op::PERSISTENT_RESERVE_IN
                    | op::PERSISTENT_RESERVE_OUT
                    | op::SANITIZE
                    | op::EXTENDED_COPY
                    | op::RECEIVE_COPY_RESULTS
            ) && opcodes::supports_opcode(table, opcode)
            {
                return Err(Sense::invalid_cdb_field(1, Some(4)));
            }
            return Err(Sense::new(key::ILLEGAL_REQUEST, asc::INVALID_OPCODE));
        }
        let lu = self.lus.get_mut(&lun).expect("checked by execute");
        // Unit attentions go before everything but INQUIRY, REPORT LUNS and REQUEST SENSE
        // (SAM-5 §5.14).
        if !matches!(opcode, op::INQUIRY | op::REPORT_LUNS | op::REQUEST_SENSE) {
            if let Some(code) = lu.take_ua(nexus) {
                return Err(Sense::new(key::UNIT_ATTENTION, code));
            }
        }
        let port = self.nexuses.get(&nexus).map_or("", String::as_str);
        if lu.reservations.conflicts(nexus, port, cdb) {
            return Ok(conflict());
        }
        let device_type = if controller {
            TYPE_CONTROLLER
        } else {
            TYPE_DISK
        };
        let good = |d: Vec<u8>| Ok(Action::Respond(Response::good(d)));
        match opcode {
            op::TEST_UNIT_READY => {
                if !lu.medium_present {
                    return Err(Sense::new(key::NOT_READY, asc::MEDIUM_NOT_PRESENT));
                }
                good(Vec::new())
            }
            op::REQUEST_SENSE => {
                let desc = cdb[1] & 0x01 != 0;
                let sense = match lu.take_ua(nexus) {
                    Some(code) => Sense::new(key::UNIT_ATTENTION, code),
                    None if !lu.medium_present => {
                        Sense::new(key::NOT_READY, asc::MEDIUM_NOT_PRESENT)
                    }
                    None => Sense::new(key::NO_SENSE, asc::NONE),
                };
                good(truncate(sense.encode(desc), usize::from(cdb[4])))
            }
            op::INQUIRY => {
                let evpd = cdb[1] & 0x01 != 0;
                let alloc = usize::from(u16_at(cdb, 3));
                if cdb[1] & 0xfe != 0 {
                    return Err(Sense::invalid_cdb_field(1, None));
                }
                if !evpd {
                    if cdb[2] != 0 {
                        return Err(Sense::invalid_cdb_field(2, None));
                    }
                    return good(truncate(inquiry::standard(device_type, &lu.cfg), alloc));
                }
                match inquiry::vpd(cdb[2], device_type, &lu.cfg, &self.cfg) {
                    Some(page) => good(truncate(page, alloc)),
                    None => Err(Sense::invalid_cdb_field(2, None)),
                }
            }
            op::REPORT_LUNS => {
                let data = self.report_luns(cdb)?;
                good(data)
            }
            op::MAINTENANCE_IN => {
                let hidden: &[u8] = if lu.cfg.thin { &[] } else { &[op::UNMAP] };
                good(opcodes::report(table, hidden, cdb)?)
            }
            op::READ_CAPACITY_10 => {
                if !lu.medium_present {
                    return Err(Sense::new(key::NOT_READY, asc::MEDIUM_NOT_PRESENT));
                }
                if cdb[8] & 0x01 == 0 && u32_at(cdb, 2) != 0 {
                    return Err(Sense::invalid_cdb_field(2, None));
                }
                good(lu.capacity10())
            }
            op::SERVICE_ACTION_IN_16 if sa == u16::from(op::SA_GET_LBA_STATUS) => {
                lu.get_lba_status(cdb)
            }
            op::UNMAP => lu.unmap(cdb, data_out),
            op::SANITIZE => lu.sanitize(cdb, data_out),
            op::WRITE_SAME_10 | op::WRITE_SAME_16 => lu.write_same(cdb, data_out),
            op::SERVICE_ACTION_IN_16 => {
                if !lu.medium_present {
                    return Err(Sense::new(key::NOT_READY, asc::MEDIUM_NOT_PRESENT));
                }
                good(truncate(lu.capacity16(), u32_at(cdb, 10) as usize))
            }
            op::MODE_SENSE_6 | op::MODE_SENSE_10 => good(Self::mode_sense(lu, cdb)?),
            op::MODE_SELECT_6 | op::MODE_SELECT_10 => {
                let before = lu.mode;
                Self::mode_select(lu, cdb, data_out)?;
                if lu.mode != before {
                    let others: Vec<NexusId> = self
                        .nexuses
                        .keys()
                        .copied()
                        .filter(|&n| n != nexus)
                        .collect();
                    let lu = self.lus.get_mut(&lun).expect("present");
                    for n in others {
                        lu.add_ua(n, asc::MODE_PARAMETERS_CHANGED);
                    }
                }
                good(Vec::new())
            }
            op::READ_DEFECT_DATA_10 | op::READ_DEFECT_DATA_12 => good(lu_defect_list(cdb)),
            op::START_STOP_UNIT => {
                lu.start_stop(cdb)?;
                good(Vec::new())
            }
            op::PREVENT_ALLOW => {
                lu.prevent_allow(nexus, cdb)?;
                good(Vec::new())
            }
            op::RESERVE_6 | op::RESERVE_10 => match lu.reservations.reserve(nexus, cdb) {
                Ok(()) => good(Vec::new()),
                Err(r) => refused(r),
            },
            op::RELEASE_6 | op::RELEASE_10 => match lu.reservations.release(nexus, cdb) {
                Ok(()) => good(Vec::new()),
                Err(r) => refused(r),
            },
            op::PERSISTENT_RESERVE_IN => good(
                lu.reservations
                    .persistent_in(cdb, self.cfg.relative_port_id)?,
            ),
            op::PERSISTENT_RESERVE_OUT => {
                let aptpl_before = lu.reservations.aptpl();
                let effects = match lu.reservations.persistent_out(
                    port,
                    cdb,
                    data_out,
                    self.cfg.relative_port_id,
                ) {
                    Ok(fx) => fx,
                    Err(r) => return refused(r),
                };
                for (to, code) in &effects.unit_attentions {
                    for (&n, p) in &self.nexuses {
                        if p == to {
                            lu.add_ua(n, *code);
                        }
                    }
                }
                // Saved state must follow every change while APTPL is (or was just) on.
                if effects.changed && (aptpl_before || lu.reservations.aptpl()) {
                    self.dirty_reservations.insert(lun);
                }
                good(Vec::new())
            }
            op::EXTENDED_COPY => {
                if !lu.medium_present {
                    return Err(Sense::new(key::NOT_READY, asc::MEDIUM_NOT_PRESENT));
                }
                let param_len = u32_at(cdb, 10) as usize;
                if param_len == 0 {
                    return good(Vec::new()); // no copy (SPC-4 §6.4.1)
                }
                let targets: Vec<CopyTarget> = self
                    .lus
                    .values()
                    .filter(|l| l.cfg.lun != 0)
                    .map(|l| CopyTarget {
                        lun: l.cfg.lun,
                        designator: inquiry::naa_designator(&l.cfg),
                        block_size: l.cfg.block_size,
                        blocks: l.cfg.blocks,
                        readonly: l.cfg.readonly,
                        present: l.medium_present,
                    })
                    .collect();
                let plan = xcopy::parse(data_out, param_len, &targets)?;
                self.copies.started(nexus, lun, plan.list_id);
                Ok(Action::Copy(plan))
            }
            op::RECEIVE_COPY_RESULTS => {
                let alloc = u32_at(cdb, 10) as usize;
                good(truncate(self.copies.receive(nexus, lun, cdb)?, alloc))
            }
            _ => lu.block_command(cdb, data_out),
        }
    }

    /// The answer to EXTENDED COPY once the caller has carried out (or given up on) the plan
    /// of [`Action::Copy`]; RECEIVE COPY RESULTS reports it from now on.
    pub fn complete_copy(
        &mut self,
        nexus: NexusId,
        lun: u64,
        plan: &CopyPlan,
        outcome: CopyOutcome,
    ) -> Response {
        let descriptor = self.lus.get(&lun).is_some_and(|l| l.mode.d_sense);
        let failure = match outcome {
            CopyOutcome::Done { bytes } => match plan.stops_at {
                None => {
                    let n = plan.segments.len() as u16;
                    self.copies.ended(nexus, lun, plan, n, bytes, None);
                    return Response::good(Vec::new());
                }
                // Blocks past the end of a copy target: it reports LOGICAL BLOCK ADDRESS OUT
                // OF RANGE to the copy manager, which aborts the copy with no additional
                // sense of its own (the code libiscsi expects).
                Some(segment) => (segment, bytes, asc::NONE),
            },
            CopyOutcome::Failed {
                segment,
                bytes,
                errno,
                writing,
            } => {
                let code = if errno == libc_enodev() || errno == libc_eopnotsupp() {
                    asc::COPY_TARGET_DEVICE_NOT_REACHABLE
                } else if writing {
                    asc::WRITE_ERROR
                } else {
                    asc::UNRECOVERED_READ_ERROR
                };
                (segment, bytes, code)
            }
        };
        let (segment, bytes, code) = failure;
        let sense = Sense {
            command_specific: Some(u32::from(segment)),
            ..Sense::new(key::COPY_ABORTED, code)
        };
        self.copies
            .ended(nexus, lun, plan, segment, bytes, Some(sense.encode(false)));
        check(sense, descriptor)
    }

    /// The reservation state of an LU that must survive power loss (APTPL, SPC-4 §5.9.4),
    /// to be saved by the caller; `None` when nothing must be kept, and the caller then
    /// removes what it saved before.
    pub fn reservation_state(&self, lun: u64) -> Option<Vec<u8>> {
        self.lus.get(&lun)?.reservations.snapshot()
    }

    /// Restores reservation state saved from [`Target::reservation_state`], typically at
    /// start-up. Garbage is refused and leaves the LU's reservations as they were.
    pub fn restore_reservations(&mut self, lun: u64, state: &[u8]) -> Result<(), ScsiError> {
        let lu = self
            .lus
            .get_mut(&lun)
            .filter(|_| lun != 0)
            .ok_or(ScsiError::NoSuchLun(lun))?;
        lu.reservations
            .restore(state)
            .map_err(|source| ScsiError::ReservationState { lun, source })
    }

    /// LUNs whose saved reservation state is stale since the last call: for each, save
    /// [`Target::reservation_state`] (or remove the saved state when it is `None`) before
    /// relying on it across a restart.
    pub fn take_dirty_reservations(&mut self) -> Vec<u64> {
        std::mem::take(&mut self.dirty_reservations)
            .into_iter()
            .collect()
    }

    fn mode_sense(lu: &Lu, cdb: &[u8]) -> Result<Vec<u8>, Sense> {
        let ten = cdb[0] == op::MODE_SENSE_10;
        let dbd = cdb[1] & 0x08 != 0;
        let llbaa = ten && cdb[1] & 0x10 != 0;
        let pc = match cdb[2] >> 6 {
            0 => PageControl::Current,
            1 => PageControl::Changeable,
            2 => PageControl::Default,
            _ => return Err(Sense::new(key::ILLEGAL_REQUEST, asc::SAVING_NOT_SUPPORTED)),
        };
        let code = cdb[2] & 0x3f;
        let subpage = cdb[3];
        if subpage != 0 && !(subpage == 0xff && code == 0x3f) {
            return Err(Sense::invalid_cdb_field(3, None));
        }
        let alloc = if ten {
            usize::from(u16_at(cdb, 7))
        } else {
            usize::from(cdb[4])
        };
        let mut pages = Vec::new();
        if code == 0x3f {
            for &p in &mode::PAGES {
                pages.extend(mode::page(p, pc, &lu.mode, &lu.default_mode).expect("listed page"));
            }
        } else {
            pages = mode::page(code, pc, &lu.mode, &lu.default_mode)
                .ok_or_else(|| Sense::invalid_cdb_field(2, Some(5)))?;
        }
        let block_desc = if dbd || lu.cfg.lun == 0 {
            Vec::new()
        } else if llbaa {
            let mut d = vec![0u8; 16];
            d[..8].copy_from_slice(&lu.cfg.blocks.to_be_bytes());
            d[12..16].copy_from_slice(&lu.cfg.block_size.to_be_bytes());
            d
        } else {
            let mut d = vec![0u8; 8];
            d[..4].copy_from_slice(&(lu.cfg.blocks.min(u64::from(u32::MAX)) as u32).to_be_bytes());
            d[5..8].copy_from_slice(&lu.cfg.block_size.to_be_bytes()[1..]);
            d
        };
        let device_specific = if lu.write_protected() && lu.cfg.lun != 0 {
            0x80
        } else {
            0
        } | 0x10; // WP, DPOFUA
        let mut v = Vec::new();
        if ten {
            v.extend_from_slice(&[
                0,
                0,
                0,
                device_specific,
                u8::from(llbaa && !block_desc.is_empty()),
                0,
            ]);
            v.extend_from_slice(&(block_desc.len() as u16).to_be_bytes());
        } else {
            v.extend_from_slice(&[0, 0, device_specific, block_desc.len() as u8]);
        }
        v.extend(block_desc);
        v.extend(pages);
        if ten {
            let len = (v.len() - 2) as u16;
            v[..2].copy_from_slice(&len.to_be_bytes());
        } else {
            v[0] = (v.len() - 1) as u8;
        }
        Ok(truncate(v, alloc))
    }

    fn mode_select(lu: &mut Lu, cdb: &[u8], data: &[u8]) -> Result<(), Sense> {
        let ten = cdb[0] == op::MODE_SELECT_10;
        if cdb[1] & 0x01 != 0 {
            return Err(Sense::invalid_cdb_field(1, Some(0))); // SP: nothing can be saved
        }
        let len = if ten {
            usize::from(u16_at(cdb, 7))
        } else {
            usize::from(cdb[4])
        };
        if len == 0 {
            return Ok(());
        }
        let header = if ten { 8 } else { 4 };
        if data.len() < len || len < header {
            return Err(Sense::new(
                key::ILLEGAL_REQUEST,
                asc::PARAMETER_LIST_LENGTH_ERROR,
            ));
        }
        let data = &data[..len];
        let bd_len = if ten {
            usize::from(u16_at(data, 6))
        } else {
            usize::from(data[3])
        };
        if header + bd_len > len {
            return Err(Sense::new(
                key::ILLEGAL_REQUEST,
                asc::PARAMETER_LIST_LENGTH_ERROR,
            ));
        }
        mode::select(&data[header + bd_len..], &mut lu.mode)
    }

    /// The answer to GET LBA STATUS from what the caller found out for
    /// [`Action::LbaStatus`]: extents from `offset` on, or the errno that stopped it.
    pub fn complete_lba_status(
        &mut self,
        lun: u64,
        offset: u64,
        alloc_len: u32,
        extents: Result<&[crate::Provisioned], i32>,
    ) -> Response {
        let Some(lu) = self.lus.get(&lun) else {
            return check(
                Sense::new(key::ILLEGAL_REQUEST, asc::LUN_NOT_SUPPORTED),
                false,
            );
        };
        match extents {
            Ok(e) => Response::good(lu.lba_status_data(offset, alloc_len, e)),
            Err(errno) => self.complete(lun, IoOutcome::Error(errno)),
        }
    }

    /// Turns a backing-store result into the command's status.
    pub fn complete(&mut self, lun: u64, result: IoOutcome) -> Response {
        let descriptor = self.lus.get(&lun).is_some_and(|l| l.mode.d_sense);
        match result {
            IoOutcome::Ok => Response::good(Vec::new()),
            IoOutcome::Miscompare { at } => check(
                Sense {
                    information: Some(at),
                    ..Sense::new(key::MISCOMPARE, asc::MISCOMPARE_DURING_VERIFY)
                },
                descriptor,
            ),
            IoOutcome::Error(errno) if errno == libc_enospc() => check(
                Sense::new(key::DATA_PROTECT, asc::SPACE_ALLOCATION_FAILED),
                descriptor,
            ),
            IoOutcome::Error(_) => check(
                Sense::new(key::MEDIUM_ERROR, asc::UNRECOVERED_READ_ERROR),
                descriptor,
            ),
        }
    }
}

fn refused(r: Refusal) -> Result<Action, Sense> {
    match r {
        Refusal::Conflict => Ok(conflict()),
        Refusal::Check(s) => Err(s),
    }
}

/// ENODEV on Linux: a copy target's store is gone.
const fn libc_enodev() -> i32 {
    19
}

/// EOPNOTSUPP on Linux: a copy target's store cannot take part in a copy.
const fn libc_eopnotsupp() -> i32 {
    95
}

/// ENOSPC on Linux (kept here so this crate needs no libc).
const fn libc_enospc() -> i32 {
    28
}

/// READ DEFECT DATA 10/12 (SBC-3 §5.12, §5.13): a file or device behind the LU has no defect
/// list the initiator could act on, so the list is empty, in the format asked for, with the
/// PLISTV/GLISTV bits saying which lists were requested and are (emptily) valid.
fn lu_defect_list(cdb: &[u8; 16]) -> Vec<u8> {
    // REQ_PLIST, REQ_GLIST and the format sit in byte 2 of the 10-byte CDB, byte 1 of the
    // 12-byte one.
    let flags = if cdb[0] == op::READ_DEFECT_DATA_10 {
        cdb[2]
    } else {
        cdb[1]
    };
    let lists = flags & 0x18;
    let format = flags & 0x07;
    let mut data = if cdb[0] == op::READ_DEFECT_DATA_10 {
        vec![0, lists | format, 0, 0]
    } else {
        // Header of READ DEFECT DATA (12): generation code, then a 4-byte length.
        vec![0, lists | format, 0, 0, 0, 0, 0, 0]
    };
    let alloc = if cdb[0] == op::READ_DEFECT_DATA_10 {
        usize::from(u16_at(cdb, 7))
    } else {
        u32_at(cdb, 6) as usize
    };
    data.truncate(alloc);
    data
}

#[cfg(test)]
mod tests {
    use super::*;

    const N: NexusId = NexusId(1);

    fn target() -> Target {
        let mut t = crate::testing::target_with(
            "t",
            LuConfig {
                removable: true,
                ..crate::testing::disk()
            },
        );
        t.nexus_added(N, "iqn.2026-11.io.test:one,i,0x000000000001");
        t
    }

    fn run(t: &mut Target, lun: u64, cdb: &[u8], data_out: &[u8]) -> Action {
        t.execute(&Command {
            nexus: N,
            lun,
            cdb,
            data_out,
        })
    }

    fn sense_of(a: &Action) -> (u8, u8, u8) {
        let Action::Respond(r) = a else {
            panic!("{a:?}")
        };
        let s = r.sense.as_ref().expect("sense");
        (s[2] & 0xf, s[12], s[13])
    }

    #[test]
    fn unit_attention_first_then_good() {
        let mut t = target();
        let tur = [0u8; 6];
        assert_eq!(sense_of(&run(&mut t, 1, &tur, &[])), (6, 0x29, 0));
        assert_eq!(
            run(&mut t, 1, &tur, &[]),
            Action::Respond(Response::good(vec![]))
        );
        // INQUIRY does not consume unit attentions.
        t.nexus_added(NexusId(2), "iqn.2026-11.io.test:two,i,0x000000000002");
        let inq = [0x12, 0, 0, 0, 36, 0];
        let a = t.execute(&Command {
            nexus: NexusId(2),
            lun: 1,
            cdb: &inq,
            data_out: &[],
        });
        assert!(matches!(a, Action::Respond(ref r) if r.data.len() == 36 && r.data[1] == 0x80));
    }

    #[test]
    fn reads_writes_and_ranges() {
        let mut t = target();
        let _ = run(&mut t, 1, &[0u8; 6], &[]);
        let read10 = [0x28, 0, 0, 0, 0, 10, 0, 0, 8, 0];
        assert_eq!(
            run(&mut t, 1, &read10, &[]),
            Action::Read {
                offset: 5120,
                len: 4096
            }
        );
        let past = [0x28, 0, 0, 0, 7, 0xfc, 0, 0, 8, 0];
        assert_eq!(sense_of(&run(&mut t, 1, &past, &[])), (5, 0x21, 0));
        let prot = [0x28, 0x20, 0, 0, 0, 0, 0, 0, 1, 0];
        assert_eq!(sense_of(&run(&mut t, 1, &prot, &[])), (5, 0x24, 0));
        let write16 = [0x8a, 0x08, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0];
        assert_eq!(t.data_out_len(1, &write16), 1024);
        assert_eq!(
            run(&mut t, 1, &write16, &[0; 1024]),
            Action::Write {
                offset: 512,
                len: 1024,
                fua: true
            }
        );
        let read6_zero = [0x08, 0, 0, 0, 0, 0];
        assert_eq!(
            run(&mut t, 1, &read6_zero, &[]),
            Action::Read {
                offset: 0,
                len: 256 * 512
            }
        );
        let verify = [0x2f, 0x02, 0, 0, 0, 0, 0, 0, 1, 0];
        assert_eq!(
            run(&mut t, 1, &verify, &[0; 512]),
            Action::Compare {
                offset: 0,
                len: 512
            }
        );
    }

    #[test]
    fn missing_lun_and_unknown_opcode() {
        let mut t = target();
        let inq = [0x12, 0, 0, 0, 96, 0];
        let Action::Respond(r) = run(&mut t, 9, &inq, &[]) else {
            panic!()
        };
        assert_eq!(r.data[0], 0x7f);
        assert_eq!(sense_of(&run(&mut t, 9, &[0u8; 6], &[])), (5, 0x25, 0));
        let _ = run(&mut t, 1, &[0u8; 6], &[]);
        assert_eq!(
            sense_of(&run(&mut t, 1, &[0xc7, 0, 0, 0, 0, 0], &[])),
            (5, 0x20, 0)
        );
        let rl = [0xa0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0];
        let Action::Respond(r) = run(&mut t, 1, &rl, &[]) else {
            panic!()
        };
        assert_eq!(&r.data[..4], &[0, 0, 0, 16]);
    }

    #[test]
    fn eject_prevent_and_load() {
        let mut t = target();
        let _ = run(&mut t, 1, &[0u8; 6], &[]);
        let prevent = [0x1e, 0, 0, 0, 1, 0];
        let eject = [0x1b, 0, 0, 0, 0x02, 0];
        let load = [0x1b, 0, 0, 0, 0x03, 0];
        let _ = run(&mut t, 1, &prevent, &[]);
        assert_eq!(sense_of(&run(&mut t, 1, &eject, &[])), (5, 0x53, 2));
        let _ = run(&mut t, 1, &[0x1e, 0, 0, 0, 0, 0], &[]);
        assert_eq!(
            run(&mut t, 1, &eject, &[]),
            Action::Respond(Response::good(vec![]))
        );
        assert_eq!(sense_of(&run(&mut t, 1, &[0u8; 6], &[])), (2, 0x3a, 0));
        let _ = run(&mut t, 1, &load, &[]);
        assert_eq!(
            run(&mut t, 1, &[0u8; 6], &[]),
            Action::Respond(Response::good(vec![]))
        );
    }

    #[test]
    fn mode_sense_all_pages_and_select() {
        let mut t = target();
        let _ = run(&mut t, 1, &[0u8; 6], &[]);
        let sense6 = [0x1a, 0, 0x3f, 0, 255, 0];
        let Action::Respond(r) = run(&mut t, 1, &sense6, &[]) else {
            panic!()
        };
        assert_eq!(r.data[0] as usize, r.data.len() - 1);
        assert_eq!(r.data[3], 8, "block descriptor");
        let saved = [0x1a, 0, 0xc8, 0, 255, 0];
        assert_eq!(sense_of(&run(&mut t, 1, &saved, &[])), (5, 0x39, 0));
        // Turn the write cache off through MODE SELECT(6).
        let caching_sense = [0x1a, 0x08, 0x08, 0, 255, 0];
        let Action::Respond(r) = run(&mut t, 1, &caching_sense, &[]) else {
            panic!()
        };
        let mut list = r.data.clone();
        list[0] = 0;
        list[4 + 2] &= !0x04;
        let select = [0x15, 0x10, 0, 0, list.len() as u8, 0];
        assert_eq!(t.data_out_len(1, &select), list.len() as u64);
        assert_eq!(
            run(&mut t, 1, &select, &list),
            Action::Respond(Response::good(vec![]))
        );
        let write10 = [0x2a, 0, 0, 0, 0, 0, 0, 0, 1, 0];
        assert!(matches!(
            run(&mut t, 1, &write10, &[0; 512]),
            Action::Write { fua: true, .. }
        ));
    }

    #[test]
    fn supported_opcodes_one_command() {
        let mut t = target();
        let _ = run(&mut t, 1, &[0u8; 6], &[]);
        let rsoc = [0xa3, 0x0c, 0x01, 0x28, 0, 0, 0, 0, 1, 0, 0, 0];
        let Action::Respond(r) = run(&mut t, 1, &rsoc, &[]) else {
            panic!()
        };
        assert_eq!(r.data[1] & 0x07, 3);
        assert_eq!(u16::from_be_bytes([r.data[2], r.data[3]]), 10);
        assert_eq!(r.data[4], 0x28);
        let sa_needed = [0xa3, 0x0c, 0x01, 0x9e, 0, 0, 0, 0, 1, 0, 0, 0];
        assert_eq!(sense_of(&run(&mut t, 1, &sa_needed, &[])), (5, 0x24, 0));
    }

    #[test]
    fn extended_copy_plans_and_reports() {
        let mut t = target();
        let _ = run(&mut t, 1, &[0u8; 6], &[]);
        // VPD 0x8F is listed, INQUIRY says 3PC.
        let Action::Respond(r) = run(&mut t, 1, &[0x12, 1, 0, 0, 64, 0], &[]) else {
            panic!()
        };
        assert!(r.data[4..].contains(&0x8f));
        let Action::Respond(r) = run(&mut t, 1, &[0x12, 0, 0, 0, 36, 0], &[]) else {
            panic!()
        };
        assert_eq!(r.data[5] & 0x08, 0x08);
        let mut list = vec![0u8; 16];
        list[0] = 9;
        list[3] = 32;
        list[11] = 28;
        let mut cscd = vec![0u8; 32];
        cscd[0] = 0xe4;
        cscd[4..16].copy_from_slice(&inquiry::naa_designator(&t.lus[&1].cfg));
        cscd[30] = 0x02;
        list.extend(cscd);
        let mut seg = vec![0u8; 28];
        seg[0] = 0x02;
        seg[3] = 24;
        seg[11] = 4; // 4 blocks from LBA 0 to LBA 8
        seg[27] = 8;
        list.extend(seg);
        let mut cdb = [0u8; 16];
        cdb[0] = 0x83;
        cdb[10..14].copy_from_slice(&(list.len() as u32).to_be_bytes());
        assert_eq!(t.data_out_len(1, &cdb), list.len() as u64);
        let Action::Copy(plan) = run(&mut t, 1, &cdb, &list) else {
            panic!("a copy plan")
        };
        assert_eq!(plan.segments.len(), 1);
        assert_eq!(plan.segments[0].dst_offset, 8 * 512);
        let rcr = [0x84, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0];
        let Action::Respond(r) = run(&mut t, 1, &rcr, &[]) else {
            panic!()
        };
        assert_eq!(r.data[4], 0x00, "in progress");
        let done = t.complete_copy(N, 1, &plan, CopyOutcome::Done { bytes: 2048 });
        assert_eq!(done.status, ScsiStatus::Good);
        let Action::Respond(r) = run(&mut t, 1, &rcr, &[]) else {
            panic!()
        };
        assert_eq!((r.data[4], r.data[10]), (0x01, 0x08));
        // An unknown RECEIVE COPY RESULTS service action is a bad CDB field.
        let bad = [0x84, 0x07, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0];
        assert_eq!(sense_of(&run(&mut t, 1, &bad, &[])), (5, 0x24, 0));
    }
}
