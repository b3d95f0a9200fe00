//! The gateway: a shared-nothing io_uring iSCSI target.
//!
//! One management thread ([`mgmt`]) owns the portals, logins and discovery; every target runs
//! on its own pinned thread ([`target`]) with its own ring, its sessions, LUNs and backing
//! stores ([`backing`]). They talk only by messages ([`msg`]). The iSCSI protocol itself
//! ([`iscsi`]) and the SCSI emulation (the `gw-scsi` crate) are sans-IO.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod admin;
pub mod backing;
pub mod config;
pub mod daemon;
pub mod iscsi;
pub mod lograte;
pub mod metrics;
pub mod mgmt;
pub mod msg;
pub mod notify;
pub mod stats;
pub mod target;
