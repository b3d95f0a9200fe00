//! SCSI emulation.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
