//! What the unit tests of several modules build on: one disk LU and its target.

use crate::{Action, LuConfig, Target, TargetConfig};

/// A 1 MiB disk LU (LUN 1, 512-byte blocks, write cache on, not thin); tests change what
/// they need with struct update syntax.
pub(crate) fn disk() -> LuConfig {
    LuConfig {
        lun: 1,
        block_size: 512,
        blocks: 2048,
        vendor_id: "GATEWAY".into(),
        product_id: "DISK".into(),
        product_rev: "0001".into(),
        serial: "sn1".into(),
        device_id: None,
        naa_id: 42,
        readonly: false,
        removable: false,
        write_cache: true,
        thin: false,
        optimal_xfer_blocks: 128,
        max_xfer_blocks: 32768,
    }
}

/// A target named `iqn.2026-11.io.gateway:NAME` holding `lu`.
pub(crate) fn target_with(name: &str, lu: LuConfig) -> Target {
    let mut t = Target::new(TargetConfig {
        tid: 1,
        target_name: format!("iqn.2026-11.io.gateway:{name}"),
        relative_port_id: 1,
        port_group_id: 1,
    });
    t.add_lu(lu).expect("a valid test LU");
    t
}

/// Sense key, ASC and ASCQ of a CHECK CONDITION (fixed format).
pub(crate) fn sense_of(a: &Action) -> (u8, u8, u8) {
    let Action::Respond(r) = a else {
        panic!("{a:?}")
    };
    let s = r.sense.as_ref().expect("sense");
    (s[2] & 0xf, s[12], s[13])
}
