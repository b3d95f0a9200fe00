//! EXTENDED COPY (LID1) and RECEIVE COPY RESULTS (SPC-4 §6.4, §6.18) between the LUs of one
//! target, and the third-party copy VPD page (SPC-4 §7.8.17).
//!
//! The copy manager is sans-IO like the rest of this crate: [`parse`] turns a parameter list
//! into a [`CopyPlan`] (byte ranges of LUs, every field checked), the caller moves the bytes
//! in bounded steps and reports a [`CopyOutcome`] through [`crate::Target::complete_copy`],
//! which answers the command and keeps what RECEIVE COPY RESULTS reports.
//!
//! Only what VMware's XCOPY and libiscsi use is supported: CSCD descriptors of type E4h
//! (identification descriptor naming an LU of this target by its VPD 0x83 NAA designator)
//! and segment descriptors of type 02h (block device to block device). No inline data, no
//! held data.

use std::collections::{BTreeMap, VecDeque};

use crate::cdb::{u16_at, u32_at, u64_at};
use crate::sense::{asc, key, Sense};
use crate::NexusId;

/// Most CSCD descriptors in one parameter list (RECEIVE COPY RESULTS OPERATING PARAMETERS
/// MAXIMUM CSCD DESCRIPTOR COUNT, VPD 0x8F).
pub const CSCD_DESCRIPTORS_MAX: u16 = 8;
/// Most segment descriptors in one parameter list.
pub const SEGMENT_DESCRIPTORS_MAX: u16 = 16;
/// Most bytes of CSCD and segment descriptors together (MAXIMUM DESCRIPTOR LIST LENGTH).
pub const DESCRIPTOR_LIST_BYTES_MAX: u32 = 1024;
/// Most bytes one segment copies (MAXIMUM SEGMENT LENGTH): 65535 blocks of 4096 bytes, the
/// most a block-to-block segment descriptor can name, fit.
pub const SEGMENT_BYTES_MAX: u32 = 256 << 20;
/// Copies whose results are kept per I_T nexus; the oldest is forgotten first.
pub const COPY_RECORDS_MAX: usize = 16;

/// Parameter list header bytes (SPC-4 §6.4.3.1).
const HEADER_BYTES: usize = 16;
/// Length of an identification CSCD descriptor (and of every type E0h..E9h).
const CSCD_BYTES: usize = 32;
/// Identification descriptor CSCD descriptor type code (SPC-4 §6.4.5.6).
const CSCD_IDENTIFICATION: u8 = 0xe4;
/// Block device to block device segment descriptor type code (SPC-4 §6.4.6.5).
const SEGMENT_BLOCK_TO_BLOCK: u8 = 0x02;
/// Bytes of a block-to-block segment descriptor, header included.
const SEGMENT_BLOCK_TO_BLOCK_BYTES: usize = 28;

/// EXTENDED COPY service action LID1.
pub(crate) const SA_EXTENDED_COPY_LID1: u8 = 0x00;
/// RECEIVE COPY RESULTS service actions (SPC-4 §6.18.1).
pub(crate) mod rcr_sa {
    pub const COPY_STATUS: u8 = 0x00;
    pub const OPERATING_PARAMETERS: u8 = 0x03;
    pub const FAILED_SEGMENT_DETAILS: u8 = 0x04;
}

/// What the copy manager knows of an LU a CSCD descriptor may name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CopyTarget {
    pub lun: u64,
    /// Its VPD 0x83 NAA designation descriptor (header included).
    pub designator: Vec<u8>,
    pub block_size: u32,
    pub blocks: u64,
    pub readonly: bool,
    pub present: bool,
}

/// One range to copy, in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CopySegment {
    /// Source LUN.
    pub src_lun: u64,
    /// Byte offset in the source.
    pub src_offset: u64,
    /// Destination LUN.
    pub dst_lun: u64,
    /// Byte offset in the destination.
    pub dst_offset: u64,
    /// Bytes.
    pub len: u64,
}

/// An EXTENDED COPY to carry out: the segments in order, each to be finished before the next
/// starts (SPC-4 §5.17.7.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CopyPlan {
    /// LIST IDENTIFIER of the parameter list.
    pub list_id: u8,
    /// The segments that can run.
    pub segments: Vec<CopySegment>,
    /// The segment after `segments` names blocks past the end of its LU: once the others are
    /// copied, the command fails there (the copy manager only learns of it when it gets to
    /// it, as a real copy target device would report it).
    pub stops_at: Option<u16>,
    /// Results are held for RECEIVE COPY RESULTS (LIST ID USAGE 00b).
    pub(crate) hold: bool,
}

/// How the caller's copy ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CopyOutcome {
    /// Every segment was copied.
    Done {
        /// Bytes written.
        bytes: u64,
    },
    /// Segment `segment` failed.
    Failed {
        /// Index of the failed segment (as many before it were copied).
        segment: u16,
        /// Bytes written before it failed.
        bytes: u64,
        /// The errno.
        errno: i32,
        /// The destination failed (a write), rather than the source (a read).
        writing: bool,
    },
}

/// COPY ABORTED with the number of the segment that failed in COMMAND-SPECIFIC INFORMATION
/// (SPC-4 §6.4.3: the segments processed before the error).
fn copy_aborted(code: (u8, u8), segment: Option<u16>) -> Sense {
    Sense {
        command_specific: segment.map(u32::from),
        ..Sense::new(key::COPY_ABORTED, code)
    }
}

/// Parses an EXTENDED COPY (LID1) parameter list of `param_len` bytes (the CDB's PARAMETER
/// LIST LENGTH; `data` is what arrived) into a plan, resolving CSCD descriptors among
/// `targets`. Each check gives the sense SPC-4 §6.4 asks for.
pub(crate) fn parse(
    data: &[u8],
    param_len: usize,
    targets: &[CopyTarget],
) -> Result<CopyPlan, Sense> {
    if data.len() < param_len || param_len < HEADER_BYTES {
        return Err(Sense::parameter_list_length());
    }
    let data = &data[..param_len];
    let list_id = data[0];
    let usage = (data[1] >> 3) & 0x03;
    if usage == 0x01 {
        return Err(Sense::invalid_parameter_field(1, Some(3)));
    }
    if usage == 0x03 && list_id != 0 {
        return Err(Sense::invalid_parameter_field(0, None));
    }
    let cscd_len = usize::from(u16_at(data, 2));
    let seg_len = u32_at(data, 8) as usize;
    let inline_len = u32_at(data, 12) as usize;
    if cscd_len.saturating_add(seg_len) > DESCRIPTOR_LIST_BYTES_MAX as usize {
        return Err(Sense::parameter_list_length());
    }
    if HEADER_BYTES + cscd_len + seg_len + inline_len > param_len {
        return Err(Sense::parameter_list_length());
    }
    if inline_len != 0 {
        // MAXIMUM INLINE DATA LENGTH is zero.
        return Err(Sense::invalid_parameter_field(12, None));
    }
    if !cscd_len.is_multiple_of(CSCD_BYTES) {
        return Err(Sense::invalid_parameter_field(2, None));
    }
    if cscd_len / CSCD_BYTES > usize::from(CSCD_DESCRIPTORS_MAX) {
        return Err(Sense::new(
            key::ILLEGAL_REQUEST,
            asc::TOO_MANY_TARGET_DESCRIPTORS,
        ));
    }
    let cscds = &data[HEADER_BYTES..HEADER_BYTES + cscd_len];
    let segs_at = HEADER_BYTES + cscd_len;
    let segs = &data[segs_at..segs_at + seg_len];

    // Count the segment descriptors first: too many is reported before anything in them.
    let mut bounds = Vec::new();
    let mut at = 0;
    while at < segs.len() {
        if segs.len() - at < 4 {
            return Err(Sense::parameter_list_length());
        }
        let len = 4 + usize::from(u16_at(segs, at + 2));
        if at + len > segs.len() {
            return Err(Sense::parameter_list_length());
        }
        bounds.push((at, len));
        if bounds.len() > usize::from(SEGMENT_DESCRIPTORS_MAX) {
            return Err(Sense::new(
                key::ILLEGAL_REQUEST,
                asc::TOO_MANY_SEGMENT_DESCRIPTORS,
            ));
        }
        at += len;
    }

    let mut resolved = Vec::with_capacity(cscds.len() / CSCD_BYTES);
    for (i, d) in cscds.chunks_exact(CSCD_BYTES).enumerate() {
        let base = (HEADER_BYTES + i * CSCD_BYTES) as u16;
        if d[0] != CSCD_IDENTIFICATION {
            return Err(Sense {
                field: Some((false, base, None)),
                ..Sense::new(
                    key::ILLEGAL_REQUEST,
                    asc::UNSUPPORTED_TARGET_DESCRIPTOR_TYPE_CODE,
                )
            });
        }
        // LU ID TYPE and the NUL bit are ignored (SPC-4 §6.4.5.1: obsolete); the LU is named
        // by its designator alone.
        if d[1] & 0x1f != 0 {
            // Only block devices (peripheral device type 00h) are copy targets.
            return Err(Sense::invalid_parameter_field(base + 1, None));
        }
        let desig_len = usize::from(d[7]);
        if desig_len > 16 {
            return Err(Sense::invalid_parameter_field(base + 7, None));
        }
        let designator = &d[4..8 + desig_len];
        let found = targets.iter().find(|t| {
            t.designator.len() == designator.len()
                && t.designator[0] & 0x0f == designator[0] & 0x0f
                && t.designator[1] & 0x3f == designator[1] & 0x3f
                && t.designator[3..] == designator[3..]
        });
        let Some(t) = found else {
            return Err(copy_aborted(asc::UNREACHABLE_COPY_TARGET, None));
        };
        let disk_block = u32::from_be_bytes([0, d[29], d[30], d[31]]);
        if disk_block != t.block_size {
            return Err(Sense::invalid_parameter_field(base + 29, None));
        }
        resolved.push(t);
    }

    let mut plan = CopyPlan {
        list_id,
        segments: Vec::with_capacity(bounds.len()),
        stops_at: None,
        hold: usage == 0x00,
    };
    for (n, &(at, len)) in bounds.iter().enumerate() {
        let d = &segs[at..at + len];
        let base = (segs_at + at) as u16;
        if d[0] != SEGMENT_BLOCK_TO_BLOCK {
            return Err(Sense {
                field: Some((false, base, None)),
                ..Sense::new(
                    key::ILLEGAL_REQUEST,
                    asc::UNSUPPORTED_SEGMENT_DESCRIPTOR_TYPE_CODE,
                )
            });
        }
        if len != SEGMENT_BLOCK_TO_BLOCK_BYTES {
            return Err(Sense::invalid_parameter_field(base + 2, None));
        }
        let dc = d[1] & 0x02 != 0;
        let n = n as u16;
        let endpoint = |index: u16| {
            resolved
                .get(usize::from(index))
                .copied()
                .ok_or_else(|| copy_aborted(asc::COPY_TARGET_DEVICE_NOT_REACHABLE, Some(n)))
        };
        let src = endpoint(u16_at(d, 4))?;
        let dst = endpoint(u16_at(d, 6))?;
        if !src.present || !dst.present {
            return Err(copy_aborted(asc::COPY_TARGET_DEVICE_NOT_REACHABLE, Some(n)));
        }
        if dst.readonly {
            return Err(Sense::new(key::DATA_PROTECT, asc::WRITE_PROTECTED));
        }
        let blocks = u64::from(u16_at(d, 10));
        // DC: the count is in destination blocks, else in source blocks.
        let bytes = blocks * u64::from(if dc { dst.block_size } else { src.block_size });
        if !bytes.is_multiple_of(u64::from(src.block_size))
            || !bytes.is_multiple_of(u64::from(dst.block_size))
        {
            return Err(Sense::invalid_parameter_field(base + 10, None));
        }
        if bytes > u64::from(SEGMENT_BYTES_MAX) {
            return Err(Sense::invalid_parameter_field(base + 10, None));
        }
        let src_lba = u64_at(d, 12);
        let dst_lba = u64_at(d, 20);
        let fits = |lba: u64, t: &CopyTarget| {
            lba.checked_add(bytes / u64::from(t.block_size))
                .is_some_and(|end| end <= t.blocks)
        };
        if plan.stops_at.is_some() {
            continue; // checked for its form only: it is never reached
        }
        if !fits(src_lba, src) || !fits(dst_lba, dst) {
            plan.stops_at = Some(n);
            continue;
        }
        plan.segments.push(CopySegment {
            src_lun: src.lun,
            src_offset: src_lba * u64::from(src.block_size),
            dst_lun: dst.lun,
            dst_offset: dst_lba * u64::from(dst.block_size),
            len: bytes,
        });
    }
    Ok(plan)
}

/// COPY MANAGER STATUS values (SPC-4 §6.18.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Status {
    InProgress = 0x00,
    Good = 0x01,
    Failed = 0x02,
}

/// What RECEIVE COPY RESULTS reports of one copy.
#[derive(Clone, Debug)]
struct Record {
    lun: u64,
    list_id: u8,
    status: Status,
    segments_processed: u16,
    bytes: u64,
    /// Sense data of a failed copy (FAILED SEGMENT DETAILS).
    sense: Option<Vec<u8>>,
}

/// Copies by I_T nexus, at most [`COPY_RECORDS_MAX`] each.
#[derive(Debug, Default)]
pub(crate) struct CopyRecords {
    by_nexus: BTreeMap<NexusId, VecDeque<Record>>,
}

impl CopyRecords {
    /// A copy starts. A list identifier in use names the new copy from now on (duplicates
    /// are not refused: a copy whose task was aborted never reports its end).
    pub fn started(&mut self, nexus: NexusId, lun: u64, list_id: u8) {
        let q = self.by_nexus.entry(nexus).or_default();
        q.retain(|r| !(r.lun == lun && r.list_id == list_id));
        if q.len() >= COPY_RECORDS_MAX {
            q.pop_front();
        }
        q.push_back(Record {
            lun,
            list_id,
            status: Status::InProgress,
            segments_processed: 0,
            bytes: 0,
            sense: None,
        });
    }

    /// A copy ended; `hold` false forgets it.
    pub fn ended(
        &mut self,
        nexus: NexusId,
        lun: u64,
        plan: &CopyPlan,
        segments_processed: u16,
        bytes: u64,
        sense: Option<Vec<u8>>,
    ) {
        let Some(q) = self.by_nexus.get_mut(&nexus) else {
            return;
        };
        let Some(i) = q
            .iter()
            .position(|r| r.lun == lun && r.list_id == plan.list_id)
        else {
            return;
        };
        if !plan.hold {
            q.remove(i);
            return;
        }
        let r = &mut q[i];
        r.status = if sense.is_some() {
            Status::Failed
        } else {
            Status::Good
        };
        r.segments_processed = segments_processed;
        r.bytes = bytes;
        r.sense = sense;
    }

    /// The nexus is gone: so are its results.
    pub fn nexus_removed(&mut self, nexus: NexusId) {
        self.by_nexus.remove(&nexus);
    }

    /// RECEIVE COPY RESULTS (SPC-4 §6.18), before the allocation length cut.
    pub fn receive(&mut self, nexus: NexusId, lun: u64, cdb: &[u8]) -> Result<Vec<u8>, Sense> {
        let sa = cdb[1] & 0x1f;
        let list_id = cdb[2];
        if sa == rcr_sa::OPERATING_PARAMETERS {
            return Ok(operating_parameters());
        }
        let q = self.by_nexus.entry(nexus).or_default();
        let Some(i) = q.iter().position(|r| r.lun == lun && r.list_id == list_id) else {
            return Err(Sense::invalid_cdb_field(2, None));
        };
        match sa {
            rcr_sa::COPY_STATUS => {
                let r = &q[i];
                let mut v = vec![0u8; 12];
                v[..4].copy_from_slice(&8u32.to_be_bytes());
                v[4] = r.status as u8; // HDD clear: no held data is ever discarded
                v[5..7].copy_from_slice(&r.segments_processed.to_be_bytes());
                // TRANSFER COUNT in KiB when bytes do not fit in 32 bits.
                let (units, count) = match u32::try_from(r.bytes) {
                    Ok(b) => (0x00, b),
                    Err(_) => (0x01, u32::try_from(r.bytes >> 10).unwrap_or(u32::MAX)),
                };
                v[7] = units;
                v[8..12].copy_from_slice(&count.to_be_bytes());
                if r.status != Status::InProgress && r.sense.is_none() {
                    // A good copy's results have all been given (SPC-4 §6.18.2).
                    q.remove(i);
                }
                Ok(v)
            }
            rcr_sa::FAILED_SEGMENT_DETAILS => {
                let r = &q[i];
                if r.status == Status::InProgress {
                    return Err(Sense::new(key::ILLEGAL_REQUEST, asc::OPERATION_IN_PROGRESS));
                }
                let Some(sense) = r.sense.clone() else {
                    // Nothing failed: no details (AVAILABLE DATA zero).
                    q.remove(i);
                    return Ok(vec![0u8; 4]);
                };
                let mut v = vec![0u8; 60];
                v[56] = 0x02; // COPY COMMAND STATUS: CHECK CONDITION
                v[58..60].copy_from_slice(&(sense.len() as u16).to_be_bytes());
                v.extend_from_slice(&sense);
                let avail = (v.len() - 4) as u32;
                v[..4].copy_from_slice(&avail.to_be_bytes());
                q.remove(i);
                Ok(v)
            }
            _ => Err(Sense::invalid_cdb_field(1, Some(4))),
        }
    }
}

/// RECEIVE COPY RESULTS OPERATING PARAMETERS data (SPC-4 §6.18.4).
fn operating_parameters() -> Vec<u8> {
    let codes = [SEGMENT_BLOCK_TO_BLOCK, CSCD_IDENTIFICATION];
    let mut v = vec![0u8; 44];
    v[4] = 0x01; // SNLID: list identifiers are kept per I_T nexus
    v[8..10].copy_from_slice(&CSCD_DESCRIPTORS_MAX.to_be_bytes());
    v[10..12].copy_from_slice(&SEGMENT_DESCRIPTORS_MAX.to_be_bytes());
    v[12..16].copy_from_slice(&DESCRIPTOR_LIST_BYTES_MAX.to_be_bytes());
    v[16..20].copy_from_slice(&SEGMENT_BYTES_MAX.to_be_bytes());
    // MAXIMUM INLINE DATA LENGTH, HELD DATA LIMIT, MAXIMUM STREAM DEVICE TRANSFER SIZE: 0.
    // TOTAL CONCURRENT COPIES and MAXIMUM CONCURRENT COPIES: one per command in flight; the
    // fields count what results are kept.
    v[34..36].copy_from_slice(&(COPY_RECORDS_MAX as u16).to_be_bytes());
    v[36] = COPY_RECORDS_MAX as u8;
    v[37] = 9; // DATA SEGMENT GRANULARITY: 512 bytes (log2)
    v[43] = codes.len() as u8;
    v.extend_from_slice(&codes);
    let avail = (v.len() - 4) as u32;
    v[..4].copy_from_slice(&avail.to_be_bytes());
    v
}

/// The body of the third-party copy VPD page (SPC-4 §7.8.17): supported commands, parameter
/// data and supported descriptors.
pub(crate) fn vpd_page_body() -> Vec<u8> {
    let mut body = Vec::new();
    let mut desc = |kind: u16, mut content: Vec<u8>| {
        while !(content.len() + 4).is_multiple_of(4) {
            content.push(0);
        }
        body.extend_from_slice(&kind.to_be_bytes());
        body.extend_from_slice(&(content.len() as u16).to_be_bytes());
        body.extend(content);
    };
    // Supported commands (0001h): EXTENDED COPY LID1, RECEIVE COPY RESULTS.
    let commands: Vec<u8> = vec![
        0x83,
        1,
        SA_EXTENDED_COPY_LID1,
        0x84,
        3,
        rcr_sa::COPY_STATUS,
        rcr_sa::OPERATING_PARAMETERS,
        rcr_sa::FAILED_SEGMENT_DETAILS,
    ];
    let mut c = vec![commands.len() as u8];
    c.extend(commands);
    desc(0x0001, c);
    // Parameter data (0008h).
    let mut p = vec![0u8; 28];
    p[4..6].copy_from_slice(&CSCD_DESCRIPTORS_MAX.to_be_bytes());
    p[6..8].copy_from_slice(&SEGMENT_DESCRIPTORS_MAX.to_be_bytes());
    p[8..12].copy_from_slice(&DESCRIPTOR_LIST_BYTES_MAX.to_be_bytes());
    desc(0x0008, p);
    // Supported descriptors (000Ch).
    desc(0x000c, vec![2, SEGMENT_BLOCK_TO_BLOCK, CSCD_IDENTIFICATION]);
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naa(id: u8) -> Vec<u8> {
        vec![0x01, 0x03, 0, 8, 0x50, 0, 0, 0, 0, 0, 0, id]
    }

    fn targets() -> Vec<CopyTarget> {
        [1u64, 2]
            .iter()
            .map(|&lun| CopyTarget {
                lun,
                designator: naa(lun as u8),
                block_size: 512,
                blocks: 2048,
                readonly: false,
                present: true,
            })
            .collect()
    }

    fn cscd(id: u8) -> Vec<u8> {
        let mut d = vec![0u8; 32];
        d[0] = CSCD_IDENTIFICATION;
        d[4..16].copy_from_slice(&naa(id));
        d[30] = 0x02; // 512-byte blocks
        d
    }

    fn seg(src: u16, dst: u16, blocks: u16, src_lba: u64, dst_lba: u64) -> Vec<u8> {
        let mut d = vec![0u8; 28];
        d[0] = SEGMENT_BLOCK_TO_BLOCK;
        d[2..4].copy_from_slice(&24u16.to_be_bytes());
        d[4..6].copy_from_slice(&src.to_be_bytes());
        d[6..8].copy_from_slice(&dst.to_be_bytes());
        d[10..12].copy_from_slice(&blocks.to_be_bytes());
        d[12..20].copy_from_slice(&src_lba.to_be_bytes());
        d[20..28].copy_from_slice(&dst_lba.to_be_bytes());
        d
    }

    fn list(id: u8, cscds: &[Vec<u8>], segs: &[Vec<u8>]) -> Vec<u8> {
        let c: Vec<u8> = cscds.concat();
        let s: Vec<u8> = segs.concat();
        let mut v = vec![0u8; 16];
        v[0] = id;
        v[2..4].copy_from_slice(&(c.len() as u16).to_be_bytes());
        v[8..12].copy_from_slice(&(s.len() as u32).to_be_bytes());
        v.extend(c);
        v.extend(s);
        v
    }

    fn code(r: Result<CopyPlan, Sense>) -> (u8, (u8, u8)) {
        let s = r.expect_err("refused");
        (s.key, s.code)
    }

    #[test]
    fn two_lus_two_segments() {
        let l = list(
            7,
            &[cscd(1), cscd(2)],
            &[seg(0, 1, 8, 0, 16), seg(1, 1, 1, 0, 4)],
        );
        let p = parse(&l, l.len(), &targets()).unwrap();
        assert_eq!(p.list_id, 7);
        assert!(p.hold);
        assert_eq!(p.stops_at, None);
        assert_eq!(
            p.segments,
            vec![
                CopySegment {
                    src_lun: 1,
                    src_offset: 0,
                    dst_lun: 2,
                    dst_offset: 16 * 512,
                    len: 8 * 512
                },
                CopySegment {
                    src_lun: 2,
                    src_offset: 0,
                    dst_lun: 2,
                    dst_offset: 4 * 512,
                    len: 512
                }
            ]
        );
    }

    #[test]
    fn refusals() {
        let t = targets();
        let l = list(1, &[cscd(1)], &[seg(0, 0, 8, 0, 16)]);
        assert_eq!(
            code(parse(&l, l.len() - 1, &t)).1,
            asc::PARAMETER_LIST_LENGTH_ERROR
        );
        assert_eq!(
            code(parse(&l[..20], l.len(), &t)).1,
            asc::PARAMETER_LIST_LENGTH_ERROR
        );
        let many: Vec<Vec<u8>> = (0..9).map(|_| cscd(1)).collect();
        let l = list(1, &many, &[seg(0, 0, 8, 0, 16)]);
        assert_eq!(
            code(parse(&l, l.len(), &t)).1,
            asc::TOO_MANY_TARGET_DESCRIPTORS
        );
        let segs: Vec<Vec<u8>> = (0..17).map(|_| seg(0, 0, 1, 0, 1)).collect();
        let l = list(1, &[cscd(1)], &segs);
        assert_eq!(
            code(parse(&l, l.len(), &t)).1,
            asc::TOO_MANY_SEGMENT_DESCRIPTORS
        );
        let mut fc = cscd(1);
        fc[0] = 0xe0;
        let l = list(1, &[fc], &[seg(0, 0, 8, 0, 16)]);
        assert_eq!(
            code(parse(&l, l.len(), &t)).1,
            asc::UNSUPPORTED_TARGET_DESCRIPTOR_TYPE_CODE
        );
        let mut s = seg(0, 0, 8, 0, 16);
        s[0] = 0x03;
        let l = list(1, &[cscd(1)], &[s]);
        assert_eq!(
            code(parse(&l, l.len(), &t)).1,
            asc::UNSUPPORTED_SEGMENT_DESCRIPTOR_TYPE_CODE
        );
        let l = list(1, &[cscd(9)], &[seg(0, 0, 8, 0, 16)]);
        assert_eq!(
            code(parse(&l, l.len(), &t)),
            (key::COPY_ABORTED, asc::UNREACHABLE_COPY_TARGET)
        );
        let l = list(1, &[cscd(1)], &[seg(0, 1, 8, 0, 16)]);
        assert_eq!(code(parse(&l, l.len(), &t)).0, key::COPY_ABORTED);
    }

    #[test]
    fn past_the_end_stops_there() {
        let l = list(
            1,
            &[cscd(1), cscd(2)],
            &[
                seg(0, 1, 8, 0, 0),
                seg(0, 1, 8, 0, 2047),
                seg(0, 1, 8, 0, 8),
            ],
        );
        let p = parse(&l, l.len(), &targets()).unwrap();
        assert_eq!(p.segments.len(), 1);
        assert_eq!(p.stops_at, Some(1));
    }

    #[test]
    fn records_and_results() {
        let mut r = CopyRecords::default();
        let n = NexusId(1);
        let rcr = |sa: u8, id: u8| [0x84, sa, id, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0];
        assert!(r.receive(n, 1, &rcr(0, 5)).is_err());
        let plan = CopyPlan {
            list_id: 5,
            segments: vec![],
            stops_at: None,
            hold: true,
        };
        r.started(n, 1, 5);
        assert_eq!(r.receive(n, 1, &rcr(0, 5)).unwrap()[4], 0);
        r.ended(n, 1, &plan, 1, 4096, Some(vec![0x70, 0, 0x0a]));
        let s = r.receive(n, 1, &rcr(0, 5)).unwrap();
        assert_eq!((s[4], u16_at(&s, 5), u32_at(&s, 8)), (2, 1, 4096));
        let f = r.receive(n, 1, &rcr(4, 5)).unwrap();
        assert_eq!(&f[60..63], &[0x70, 0, 0x0a]);
        assert!(
            r.receive(n, 1, &rcr(4, 5)).is_err(),
            "details go once given"
        );
        let op = r.receive(n, 1, &rcr(3, 0)).unwrap();
        assert_eq!(u16_at(&op, 8), CSCD_DESCRIPTORS_MAX);
        assert_eq!(op[43], 2);
    }
}
