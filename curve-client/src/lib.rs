//! Access to Curve block volumes for the gateway.
//!
//! This crate's boundary: it knows Curve's volume naming, its client library (libcbd, loaded
//! at run time) and a simulated cluster; it knows nothing of iSCSI or SCSI. A target thread
//! opens nothing itself: volumes are opened (a blocking call to the cluster) on the
//! management thread and moved to the target, which then only calls [`Volume::submit`],
//! which never blocks. Each request is answered exactly once, on the target's
//! [`CompletionSink`], from whatever thread the backend completes it on; the sink wakes the
//! target's ring through an eventfd the ring keeps a read posted on.
//!
//! All `unsafe` code is in one module, `ffi`, the C boundary.
#![deny(unsafe_code)]
#![deny(missing_docs)]

pub mod error;
mod ffi;
pub mod libcbd;
pub mod options;
pub mod request;
mod sim;
pub mod sink;
pub mod spec;
pub mod volume;

pub use error::{IoError, OpenError};
pub use options::{BackendOptions, SimOptions};
pub use request::{Completion, Op, Request};
pub use sink::CompletionSink;
pub use spec::{SpecError, VolumeSpec};
pub use volume::Volume;
