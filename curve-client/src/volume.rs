//! An open Curve volume, whatever backend serves it.

use std::sync::Arc;

use crate::error::OpenError;
use crate::libcbd::LibcbdVolume;
use crate::options::BackendOptions;
use crate::request::Request;
use crate::sim::SimVolume;
use crate::sink::CompletionSink;
use crate::spec::VolumeSpec;

/// Alignment libcbd volumes require of offsets and lengths, in bytes.
pub const LIBCBD_ALIGN_BYTES: u32 = 512;

#[derive(Debug)]
enum Backend {
    Libcbd(LibcbdVolume),
    Sim(SimVolume),
}

/// An open volume. Opening blocks (it asks the cluster for the volume and its size), so it
/// is done off the data path; [`Volume::submit`] never blocks. Dropping a volume never
/// blocks either: the close, which waits for I/O in flight, happens on a backend thread.
#[derive(Debug)]
pub struct Volume {
    backend: Backend,
    name: String,
}

impl Volume {
    /// Opens the volume `spec` names with the backend `options` select.
    pub fn open(spec: &VolumeSpec, options: &BackendOptions) -> Result<Volume, OpenError> {
        let backend = match options {
            BackendOptions::Libcbd { lib, conf } => {
                Backend::Libcbd(LibcbdVolume::open(spec, lib, conf.as_deref())?)
            }
            BackendOptions::Sim(o) => Backend::Sim(SimVolume::open(spec, o)?),
        };
        Ok(Volume {
            backend,
            name: spec.name(),
        })
    }

    /// The volume's name as libcbd knows it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Size in bytes.
    pub fn size_bytes(&self) -> u64 {
        match &self.backend {
            Backend::Libcbd(v) => v.size_bytes(),
            Backend::Sim(v) => v.size_bytes(),
        }
    }

    /// The alignment every offset and length must have, in bytes.
    pub fn align_bytes(&self) -> u32 {
        match &self.backend {
            Backend::Libcbd(_) => LIBCBD_ALIGN_BYTES,
            Backend::Sim(v) => v.block_bytes(),
        }
    }

    /// Starts a request without blocking. Exactly one [`crate::Completion`] for it arrives on
    /// `sink` — possibly before this returns, possibly from another thread — and hands the
    /// buffer back; until then the buffer belongs to the backend.
    pub fn submit(&self, req: Request, sink: &Arc<CompletionSink>) {
        match &self.backend {
            Backend::Libcbd(v) => v.submit(req, sink),
            Backend::Sim(v) => v.submit(req, sink),
        }
    }
}
