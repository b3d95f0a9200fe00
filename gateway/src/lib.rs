//! The gateway library.
#![forbid(unsafe_code)]
pub mod iscsi;
