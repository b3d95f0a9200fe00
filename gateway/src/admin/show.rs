//! `show` output in tgt's text format, so that tools which parse tgtadm's output (tgt-admin,
//! OpenStack's tgt driver, monitoring scripts) read ours the same way.
//!
//! Every function renders plain view structures; gathering them is the management thread's
//! job. Indentation is four spaces per level, as tgt's `_TAB1`..`_TAB4`.

use std::fmt::Write;

/// One I_T nexus (an iSCSI session with its one connection).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NexusView {
    /// The session's TSIH (tgt prints it as the I_T nexus number and the session ID).
    pub tsih: u16,
    /// Initiator name.
    pub initiator: String,
    /// InitiatorAlias, if declared.
    pub alias: Option<String>,
    /// Connection ID.
    pub cid: u16,
    /// The initiator's IP address.
    pub ip: String,
}

/// One logical unit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LunView {
    /// LUN.
    pub lun: u64,
    /// Peripheral type word (`disk`, `controller`).
    pub kind: &'static str,
    /// Device identification text.
    pub scsi_id: String,
    /// Unit serial number.
    pub scsi_sn: String,
    /// Capacity in bytes.
    pub size_bytes: u64,
    /// Logical block size.
    pub block_size: u32,
    /// Online.
    pub online: bool,
    /// Removable medium.
    pub removable: bool,
    /// Some nexus holds PREVENT MEDIUM REMOVAL.
    pub prevent_removal: bool,
    /// Read-only.
    pub readonly: bool,
    /// Software write protect (mode page 0x0A SWP).
    pub swp: bool,
    /// Thin provisioned.
    pub thin: bool,
    /// Store type in tgt's words (`rdwr`, `aio`, `null`).
    pub bs_type: String,
    /// Store path, if any.
    pub path: Option<String>,
    /// Open flags in tgt's words (`sync`, `direct`, `sync:direct`, or empty).
    pub bs_flags: String,
}

/// One target, as `--mode target --op show` prints it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetView {
    /// Target ID.
    pub tid: u32,
    /// IQN.
    pub name: String,
    /// `ready` or `offline`.
    pub state: &'static str,
    /// NOP-In interval and count, when pings are on.
    pub nop: Option<(u32, u32)>,
    /// Sessions.
    pub nexuses: Vec<NexusView>,
    /// LUN 0 and the disks.
    pub luns: Vec<LunView>,
    /// Incoming CHAP accounts.
    pub accounts_in: Vec<String>,
    /// The outgoing account.
    pub account_out: Option<String>,
    /// initiator-address rules as given.
    pub acl_addresses: Vec<String>,
    /// initiator-name rules.
    pub acl_names: Vec<String>,
}

/// tgt's capacity in "MB": its own formula, kept so that parsers see the same numbers.
pub fn tgt_megabytes(size_bytes: u64) -> u64 {
    let sectors = size_bytes / 512;
    sectors
        .wrapping_sub((sectors / 625).wrapping_sub(974))
        .wrapping_div(1950)
}

fn yes(b: bool) -> &'static str {
    if b {
        "Yes"
    } else {
        "No"
    }
}

/// `tgtadm --mode target --op show`: every target.
pub fn targets(views: &[TargetView]) -> String {
    let mut s = String::new();
    for t in views {
        let _ = write!(
            s,
            "Target {}: {}\n    System information:\n        Driver: iscsi\n        State: {}\n",
            t.tid, t.name, t.state
        );
        if let Some((interval, count)) = t.nop {
            let _ = write!(
                s,
                "        Nop interval: {interval}\n        Nop count: {count}\n"
            );
        }
        s.push_str("    I_T nexus information:\n");
        for n in &t.nexuses {
            let _ = write!(
                s,
                "        I_T nexus: {}\n            Initiator: {} alias: {}\n            Connection: {}\n                IP Address: {}\n",
                n.tsih,
                n.initiator,
                n.alias.as_deref().unwrap_or("none"),
                n.cid,
                n.ip
            );
        }
        s.push_str("    LUN information:\n");
        for l in &t.luns {
            let _ = write!(
                s,
                "        LUN: {}\n            Type: {}\n            SCSI ID: {}\n            SCSI SN: {}\n            Size: {} MB, Block size: {}\n            Online: {}\n            Removable media: {}\n            Prevent removal: {}\n            Readonly: {}\n            SWP: {}\n            Thin-provisioning: {}\n            Backing store type: {}\n            Backing store path: {}\n            Backing store flags: {}\n",
                l.lun,
                l.kind,
                l.scsi_id,
                l.scsi_sn,
                tgt_megabytes(l.size_bytes),
                l.block_size,
                yes(l.online),
                yes(l.removable),
                yes(l.prevent_removal),
                yes(l.readonly),
                yes(l.swp),
                yes(l.thin),
                l.bs_type,
                l.path.as_deref().unwrap_or("None"),
                l.bs_flags
            );
        }
        s.push_str("    Account information:\n");
        for a in &t.accounts_in {
            let _ = writeln!(s, "        {a}");
        }
        if let Some(a) = &t.account_out {
            let _ = writeln!(s, "        {a} (outgoing)");
        }
        s.push_str("    ACL information:\n");
        for a in t.acl_addresses.iter().chain(&t.acl_names) {
            let _ = writeln!(s, "        {a}");
        }
    }
    s
}

/// `tgtadm --mode target --op show --tid N`: the target's iSCSI parameters, `key=value`.
pub fn target_params(nop: (u32, u32), keys: &[(&str, String)]) -> String {
    let mut s = format!("nop_interval={}\nnop_count={}\n", nop.0, nop.1);
    for (k, v) in keys {
        let _ = writeln!(s, "{k}={v}");
    }
    s
}

/// `tgtadm --mode conn --op show --tid N`: every connection of the target.
pub fn connections(nexuses: &[NexusView]) -> String {
    let mut s = String::new();
    for n in nexuses {
        let _ = write!(
            s,
            "Session: {}\n    Connection: {}\n        Initiator: {}\n        IP Address: {}\n",
            n.tsih, n.cid, n.initiator, n.ip
        );
    }
    s
}

/// `tgtadm --mode account --op show`.
pub fn accounts(users: &[String]) -> String {
    if users.is_empty() {
        return String::new();
    }
    let mut s = String::from("Account list:\n");
    for u in users {
        let _ = writeln!(s, "    {u}");
    }
    s
}

/// `tgtadm --mode portal --op show`: `Portal: ADDR:PORT,TPGT` (IPv6 in brackets).
pub fn portals(addrs: &[(std::net::SocketAddr, u16)]) -> String {
    let mut s = String::new();
    for (a, tpgt) in addrs {
        let _ = writeln!(s, "Portal: {a},{tpgt}");
    }
    s
}

/// `tgtadm --mode lld --op show`.
pub fn llds(ready: bool, targets: &[(u32, String)]) -> String {
    let mut s = format!(
        "LLDs:\n    iscsi: {}\n",
        if ready { "ready" } else { "offline" }
    );
    for (tid, name) in targets {
        let _ = writeln!(s, "        Target {tid}: {name}");
    }
    s
}

/// `tgtadm --mode system --op show`.
pub fn system(state: &'static str, debug: bool) -> String {
    format!(
        "System:\n    State: {state}\n    debug: {}\nLLDs:\n    iscsi: ready\nBacking stores:\n    null\n    rdwr (bsoflags sync:direct)\n    aio\nDevice types:\n    disk\n    controller\n",
        if debug { "on" } else { "off" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn megabytes_like_tgt() {
        // tgt prints "67 MB" for a 64 MiB file and "0 MB" for its controller.
        assert_eq!(tgt_megabytes(64 << 20), 67);
        assert_eq!(tgt_megabytes(0), 0);
        assert_eq!(tgt_megabytes(1 << 30), 1074);
    }

    #[test]
    fn target_block_matches_tgt_layout() {
        let v = TargetView {
            tid: 1,
            name: "iqn.2001-04.com.example:t1".into(),
            state: "ready",
            nop: None,
            nexuses: vec![NexusView {
                tsih: 1,
                initiator: "iqn.test:perf".into(),
                alias: None,
                cid: 0,
                ip: "127.0.0.1".into(),
            }],
            luns: vec![LunView {
                lun: 1,
                kind: "disk",
                scsi_id: "IET     00010001".into(),
                scsi_sn: "beaf11".into(),
                size_bytes: 64 << 20,
                block_size: 512,
                online: true,
                removable: false,
                prevent_removal: false,
                readonly: false,
                swp: false,
                thin: false,
                bs_type: "rdwr".into(),
                path: Some("/tmp/tgt1.img".into()),
                bs_flags: String::new(),
            }],
            accounts_in: vec!["bob".into()],
            account_out: Some("out".into()),
            acl_addresses: vec!["ALL".into()],
            acl_names: vec!["iqn.x:y".into()],
        };
        // What tgtd 1.0.85 printed for the same target (its LUN 0 left out).
        let expected = "Target 1: iqn.2001-04.com.example:t1
    System information:
        Driver: iscsi
        State: ready
    I_T nexus information:
        I_T nexus: 1
            Initiator: iqn.test:perf alias: none
            Connection: 0
                IP Address: 127.0.0.1
    LUN information:
        LUN: 1
            Type: disk
            SCSI ID: IET     00010001
            SCSI SN: beaf11
            Size: 67 MB, Block size: 512
            Online: Yes
            Removable media: No
            Prevent removal: No
            Readonly: No
            SWP: No
            Thin-provisioning: No
            Backing store type: rdwr
            Backing store path: /tmp/tgt1.img
            Backing store flags: 
    Account information:
        bob
        out (outgoing)
    ACL information:
        ALL
        iqn.x:y
";
        assert_eq!(targets(std::slice::from_ref(&v)), expected);

        // With pings on, tgt adds two lines under State (iscsi_print_nop_settings).
        let pinged = TargetView {
            nop: Some((5, 3)),
            ..v
        };
        let expected = expected.replace(
            "        State: ready\n",
            "        State: ready\n        Nop interval: 5\n        Nop count: 3\n",
        );
        assert_eq!(targets(&[pinged]), expected);
    }

    #[test]
    fn target_params_start_with_the_nop_settings() {
        let keys = [("MaxRecvDataSegmentLength", "8192".to_string())];
        assert_eq!(
            target_params((30, 3), &keys),
            "nop_interval=30\nnop_count=3\nMaxRecvDataSegmentLength=8192\n"
        );
    }
}
