//! INQUIRY: standard data and the vital product data pages (SPC-4 §6.6, §7.8; SBC-3 §6.6).
//! Block limits (0xB0) and logical block provisioning (0xB2) tell the truth about thin LUs:
//! what UNMAP and WRITE SAME accept is exactly what they advertise.

use crate::lu::LuConfig;
use crate::provisioning::{
    unmap_granularity_blocks, UNMAP_BLOCKS_MAX, UNMAP_DESCRIPTORS_MAX, WRITE_SAME_BLOCKS_MAX,
};
use crate::target::TargetConfig;

/// Peripheral device types.
pub(crate) const TYPE_DISK: u8 = 0x00;
pub(crate) const TYPE_CONTROLLER: u8 = 0x0c;
/// "No LU here" (peripheral qualifier 011b, type 1Fh).
pub(crate) const NO_LU: u8 = 0x7f;

/// VPD pages, in the order page 0x00 lists them.
pub(crate) const VPD_PAGES: [u8; 7] = [0x00, 0x80, 0x83, 0x8f, 0xb0, 0xb1, 0xb2];

fn padded(text: &str, len: usize) -> Vec<u8> {
    let mut v: Vec<u8> = text
        .bytes()
        .filter(|b| b.is_ascii_graphic() || *b == b' ')
        .take(len)
        .collect();
    v.resize(len, b' ');
    v
}

/// Standard INQUIRY data for an LU of `device_type` (66 bytes).
pub(crate) fn standard(device_type: u8, lu: &LuConfig) -> Vec<u8> {
    let mut v = vec![0u8; 66];
    v[0] = device_type;
    v[1] = if lu.removable { 0x80 } else { 0 };
    v[2] = 0x06; // SPC-4
    v[3] = 0x12; // HISUP, response data format 2
    v[4] = (v.len() - 5) as u8;
    if device_type == TYPE_DISK {
        v[5] = 0x08; // 3PC: EXTENDED COPY (SPC-4 §6.4)
    }
    v[7] = 0x02; // CMDQUE
    v[8..16].copy_from_slice(&padded(&lu.vendor_id, 8));
    v[16..32].copy_from_slice(&padded(&lu.product_id, 16));
    v[32..36].copy_from_slice(&padded(&lu.product_rev, 4));
    // Version descriptors: SAM-5, iSCSI, SPC-4, SBC-3.
    for (i, d) in [0x00a0u16, 0x0960, 0x0460, 0x04c0].iter().enumerate() {
        v[58 + 2 * i..60 + 2 * i].copy_from_slice(&d.to_be_bytes());
    }
    v
}

/// Standard INQUIRY data for a LUN with no LU behind it.
pub(crate) fn no_lu() -> Vec<u8> {
    let mut v = vec![0u8; 36];
    v[0] = NO_LU;
    v[2] = 0x06;
    v[3] = 0x12;
    v[4] = 31;
    v
}

fn page(device_type: u8, code: u8, body: Vec<u8>) -> Vec<u8> {
    let mut v = vec![device_type, code];
    v.extend_from_slice(&(body.len() as u16).to_be_bytes());
    v.extend_from_slice(&body);
    v
}

fn designator(code_set: u8, piv_assoc_type: u8, value: &[u8]) -> Vec<u8> {
    let mut v = vec![code_set, piv_assoc_type, 0, value.len() as u8];
    v.extend_from_slice(value);
    v
}

/// A SCSI name string padded with NULs to a multiple of four (at least one NUL).
fn name_string(name: &str) -> Vec<u8> {
    let mut v = name.as_bytes().to_vec();
    v.push(0);
    while !v.len().is_multiple_of(4) {
        v.push(0);
    }
    v
}

/// The LU's NAA IEEE Registered (5h) designation descriptor, stable from its configuration:
/// VPD 0x83 reports it, and EXTENDED COPY names the LU by it.
pub(crate) fn naa_designator(lu: &LuConfig) -> Vec<u8> {
    let naa = (5u64 << 60) | (lu.naa_id & 0x0fff_ffff_ffff_ffff);
    designator(0x01, 0x03, &naa.to_be_bytes())
}

/// A VPD page, or None if this LU does not have it.
pub(crate) fn vpd(code: u8, device_type: u8, lu: &LuConfig, t: &TargetConfig) -> Option<Vec<u8>> {
    let disk = device_type == TYPE_DISK;
    Some(match code {
        0x00 => {
            let pages: Vec<u8> = VPD_PAGES
                .iter()
                .copied()
                .filter(|&p| disk || p < 0x8f)
                .collect();
            page(device_type, 0x00, pages)
        }
        0x80 => page(
            device_type,
            0x80,
            padded(&lu.serial, lu.serial.len().max(1)),
        ),
        0x83 => {
            let mut body = Vec::new();
            body.extend(naa_designator(lu));
            // T10 vendor ID designator: vendor, then the device identification (the serial
            // unless configured).
            let mut t10 = padded(&lu.vendor_id, 8);
            t10.extend_from_slice(lu.device_id.as_deref().unwrap_or(&lu.serial).as_bytes());
            body.extend(designator(0x02, 0x01, &t10));
            // Target port: SCSI name string, relative port, port group (iSCSI protocol 5h).
            let port_name = format!("{},t,0x{:04x}", t.target_name, t.port_group_id);
            body.extend(designator(0x53, 0x98, &name_string(&port_name)));
            let mut rel = [0u8; 4];
            rel[2..].copy_from_slice(&t.relative_port_id.to_be_bytes());
            body.extend(designator(0x51, 0x94, &rel));
            let mut tpg = [0u8; 4];
            tpg[2..].copy_from_slice(&t.port_group_id.to_be_bytes());
            body.extend(designator(0x51, 0x95, &tpg));
            // Target device name.
            body.extend(designator(0x53, 0xa8, &name_string(&t.target_name)));
            page(device_type, 0x83, body)
        }
        0x8f if disk => page(device_type, 0x8f, crate::xcopy::vpd_page_body()),
        0xb0 if disk => {
            let mut b = vec![0u8; 0x3c];
            // Offsets below are from the start of the page (SBC-3 Table 197) minus 4.
            b[1] = crate::lu::COMPARE_AND_WRITE_BLOCKS_MAX;
            b[2..4].copy_from_slice(&1u16.to_be_bytes()); // optimal transfer length granularity
            b[4..8].copy_from_slice(&lu.max_xfer_blocks.to_be_bytes());
            b[8..12].copy_from_slice(&lu.optimal_xfer_blocks.to_be_bytes());
            // WSNZ (b[0] bit 0) is clear: WRITE SAME of zero blocks runs to the last LBA.
            if lu.thin {
                b[16..20].copy_from_slice(&UNMAP_BLOCKS_MAX.to_be_bytes());
                b[20..24].copy_from_slice(&UNMAP_DESCRIPTORS_MAX.to_be_bytes());
                b[24..28].copy_from_slice(&unmap_granularity_blocks(lu.block_size).to_be_bytes());
            }
            b[32..40].copy_from_slice(&WRITE_SAME_BLOCKS_MAX.to_be_bytes());
            page(device_type, 0xb0, b)
        }
        0xb1 if disk => {
            let mut b = vec![0u8; 0x3c];
            // Page bytes 4 and 5: non-rotating medium.
            b[0..2].copy_from_slice(&1u16.to_be_bytes());
            // Page byte 7: WABEREQ 01b, reads after SANITIZE BLOCK ERASE succeed (and return
            // zeros); WACEREQ 00b, CRYPTO ERASE is not supported (SBC-3 §6.6.2).
            b[3] = 0x40;
            page(device_type, 0xb1, b)
        }
        0xb2 if disk => {
            let mut b = vec![0u8; 4];
            if lu.thin {
                // LBPU, LBPWS, LBPWS10, LBPRZ (holes read as zeros), ANC_SUP.
                b[1] = 0x80 | 0x40 | 0x20 | 0x04 | 0x02;
                b[2] = 0x02; // provisioning type: thin
            }
            page(device_type, 0xb2, b)
        }
        _ => return None,
    })
}
