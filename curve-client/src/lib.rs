//! Access to Curve block volumes for the gateway.
//!
//! This crate's boundary: it knows Curve's volume naming and (as it grows) its client library;
//! it knows nothing of iSCSI or SCSI. Today it holds the volume spec parser that the
//! configuration uses to validate `bs-type curve` backing stores.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod spec;

pub use spec::{SpecError, VolumeSpec};
