//! The `libcbd` backend: a real Curve cluster through Curve's C client library, loaded at
//! run time so the gateway builds and runs where Curve is not installed.
//!
//! The library is loaded and initialised once per process per path (Curve's client is a
//! process-wide singleton). Opening and sizing a volume block on the metadata server, so they
//! run on the caller's (management) thread. Reads, writes and discards are submitted without
//! blocking; flushes and the final close, which block, run on the volume's helper thread so
//! that a hung cluster never stalls a target thread.

use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};

use crate::error::OpenError;
use crate::ffi::Library;
use crate::request::{Op, Pending, Request};
use crate::sink::CompletionSink;
use crate::spec::VolumeSpec;

/// Client configuration file used when neither the spec nor `bsopts conf=` names one.
pub const CONF_DEFAULT: &str = "/etc/curve/client.conf";
/// Library loaded when `bsopts lib=` names none (found through the dynamic linker's path).
pub const LIB_DEFAULT: &str = "libcbd.so";

/// Libraries loaded so far, with the configuration each was initialised with.
static LOADED: Mutex<Vec<(PathBuf, &'static Library, String)>> = Mutex::new(Vec::new());

/// Loads (once) and initialises (once) the library at `lib` with `conf`.
fn library(lib: &Path, conf: &str) -> Result<&'static Library, OpenError> {
    let mut loaded = LOADED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, l, active)) = loaded.iter().find(|(p, _, _)| p == lib) {
        if active != conf {
            return Err(OpenError::ConfMismatch {
                lib: lib.to_path_buf(),
                active: active.clone(),
                asked: conf.to_string(),
            });
        }
        return Ok(l);
    }
    let l = Library::load(lib)?;
    let c_conf = CString::new(conf).map_err(|_| OpenError::Nul(conf.to_string()))?;
    let ret = l.init(&c_conf);
    if ret != 0 {
        return Err(OpenError::Init {
            conf: conf.to_string(),
            ret,
        });
    }
    loaded.push((lib.to_path_buf(), l, conf.to_string()));
    Ok(l)
}

/// Blocking work for the helper thread.
#[derive(Debug)]
enum Blocking {
    Flush(Pending),
}

/// An open volume on a real (or fake) libcbd.
#[derive(Debug)]
pub(crate) struct LibcbdVolume {
    lib: &'static Library,
    fd: i32,
    size_bytes: u64,
    helper: mpsc::Sender<Blocking>,
}

impl LibcbdVolume {
    pub(crate) fn open(
        spec: &VolumeSpec,
        lib: &Path,
        conf: Option<&str>,
    ) -> Result<LibcbdVolume, OpenError> {
        let conf = conf.or(spec.conf.as_deref()).unwrap_or(CONF_DEFAULT);
        let l = library(lib, conf)?;
        let name = spec.name();
        let c_name = CString::new(name.clone()).map_err(|_| OpenError::Nul(name.clone()))?;
        let size = l.filesize(&c_name);
        if size < 0 {
            return Err(OpenError::Size {
                volume: name,
                ret: size,
            });
        }
        let fd = l.open(&c_name);
        if fd < 0 {
            return Err(OpenError::Open {
                volume: name,
                ret: fd,
            });
        }
        let (helper, jobs) = mpsc::channel::<Blocking>();
        let spawned = std::thread::Builder::new()
            .name("curve-sync".into())
            .spawn(move || {
                // Runs until the volume is dropped (the channel closes), then closes it: close
                // waits for the volume's I/O in flight, however long the cluster takes.
                for job in jobs {
                    match job {
                        Blocking::Flush(pending) => {
                            let ret = l.sync(fd);
                            pending.complete(if ret < 0 {
                                Err(crate::IoError::Curve { code: -ret })
                            } else {
                                Ok(0)
                            });
                        }
                    }
                }
                let ret = l.close(fd);
                if ret != 0 {
                    tracing::warn!(fd, ret, "cbd_libcurve_close failed");
                }
            });
        if let Err(e) = spawned {
            l.close(fd);
            return Err(OpenError::Thread(e));
        }
        Ok(LibcbdVolume {
            lib: l,
            fd,
            size_bytes: size as u64,
            helper,
        })
    }

    pub(crate) fn size_bytes(&self) -> u64 {
        self.size_bytes
    }

    pub(crate) fn submit(&self, req: Request, sink: &Arc<CompletionSink>) {
        let (offset, len) = (req.offset, req.len);
        let pending = Pending::new(req, sink);
        if pending_is_flush(&pending) {
            // If the helper is gone the job comes back and its Drop answers it as lost.
            let _ = self.helper.send(Blocking::Flush(pending));
            return;
        }
        self.lib.submit(self.fd, offset, len, pending);
    }
}

fn pending_is_flush(p: &Pending) -> bool {
    p.peek_op() == Op::Flush
}
