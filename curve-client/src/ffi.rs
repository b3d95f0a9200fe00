//! The C boundary, and the only module of this crate with `unsafe` code: libcbd's symbols
//! loaded at run time, the AIO context Curve fills and calls back with, and the eventfd
//! syscall.
//!
//! How a request crosses it: [`Library::submit`] boxes an [`Aio`] record whose first field
//! is the `CurveAioContext` libcbd sees (the C struct has no user pointer, so the callback
//! finds the record by casting the context pointer back). The record owns the request —
//! buffer included — until it is answered, which happens exactly once, by whichever of two
//! events comes second: the submitting call returning (`RETURNED`) and libcbd calling back
//! (`CALLED_BACK`). That covers Curve's quirks: a callback on a foreign thread after the
//! call returned; a callback on the caller's own thread before it returned (small
//! discards); a callback *and* an error return (misaligned I/O); an error return with no
//! callback at all. Zero-length requests never get here (libcbd returns 0 and never calls
//! back for them).

#![allow(unsafe_code)]

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::fs::File;
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::Path;
use std::ptr::{addr_of, addr_of_mut};
use std::sync::atomic::{AtomicU8, Ordering::AcqRel};

use crate::error::{IoError, OpenError};
use crate::request::{Op, Pending};

/// A fresh non-blocking, close-on-exec eventfd.
pub(crate) fn eventfd() -> std::io::Result<File> {
    // SAFETY: eventfd has no memory-safety preconditions; the result is checked below.
    let raw = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    if raw < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: raw is a fresh descriptor this function owns and nothing else refers to.
    Ok(File::from(unsafe { OwnedFd::from_raw_fd(raw) }))
}

/// `LIBCURVE_OP` (`libcurve_define.h`).
const LIBCURVE_OP_READ: c_int = 0;
const LIBCURVE_OP_WRITE: c_int = 1;
const LIBCURVE_OP_DISCARD: c_int = 2;

/// `CurveAioContext` from `libcurve_define.h`, field for field.
#[repr(C)]
struct CurveAioContext {
    offset: libc::off_t,
    length: libc::size_t,
    ret: c_int,
    op: c_int,
    cb: Option<unsafe extern "C" fn(*mut CurveAioContext)>,
    buf: *mut c_void,
}

// The layout libcbd was compiled against on x86_64 and aarch64.
const _: () = assert!(std::mem::size_of::<CurveAioContext>() == 40);

/// `CurveOptions` from `libcbd.h`.
#[repr(C)]
struct CurveOptions {
    inited: bool,
    conf: *mut c_char,
}

type InitFn = unsafe extern "C" fn(*const CurveOptions) -> c_int;
type OpenFn = unsafe extern "C" fn(*const c_char) -> c_int;
type FdFn = unsafe extern "C" fn(c_int) -> c_int;
type AioFn = unsafe extern "C" fn(c_int, *mut CurveAioContext) -> c_int;
type SizeFn = unsafe extern "C" fn(*const c_char) -> i64;

/// libcbd, loaded and never unloaded: Curve's client runs threads of its own inside the
/// library for the life of the process, so unmapping its code would pull it from under them.
#[derive(Debug)]
pub(crate) struct Library {
    init: InitFn,
    open: OpenFn,
    close: FdFn,
    sync: FdFn,
    pread: AioFn,
    pwrite: AioFn,
    pdiscard: Option<AioFn>,
    filesize: SizeFn,
}

impl Library {
    /// Loads `path` and resolves the symbols the gateway uses. The library is leaked on
    /// purpose (see the type's documentation).
    pub(crate) fn load(path: &Path) -> Result<&'static Library, OpenError> {
        let load_err = |e: libloading::Error| OpenError::Load {
            lib: path.to_path_buf(),
            reason: e.to_string(),
        };
        // SAFETY: loading runs the library's initialisers. libcbd's are Curve's own static
        // constructors, which is what every program linking libcbd runs too; the gateway
        // accepts that code as it accepts the library itself.
        let lib = unsafe { libloading::Library::new(path) }.map_err(load_err)?;
        let lib: &'static libloading::Library = Box::leak(Box::new(lib));
        /// Resolves one symbol as a function pointer of type `T`.
        ///
        /// # Safety
        ///
        /// `T` must be the C signature the symbol has in `libcbd.h`.
        unsafe fn get<T: Copy>(
            lib: &'static libloading::Library,
            name: &[u8],
        ) -> Result<T, libloading::Error> {
            // SAFETY: the caller names the symbol's true type; the library is never
            // unloaded, so the pointer stays valid for the life of the process.
            unsafe { lib.get::<T>(name).map(|s| *s) }
        }
        // SAFETY: each type below is the prototype of that symbol in Curve's libcbd.h and
        // libcurve_define.h (int/int64_t/CurveOptions*/CurveAioContext* as declared there).
        unsafe {
            Ok(Box::leak(Box::new(Library {
                init: get(lib, b"cbd_libcurve_init\0").map_err(load_err)?,
                open: get(lib, b"cbd_libcurve_open\0").map_err(load_err)?,
                close: get(lib, b"cbd_libcurve_close\0").map_err(load_err)?,
                sync: get(lib, b"cbd_libcurve_sync\0").map_err(load_err)?,
                pread: get(lib, b"cbd_libcurve_aio_pread\0").map_err(load_err)?,
                pwrite: get(lib, b"cbd_libcurve_aio_pwrite\0").map_err(load_err)?,
                // Older libcbd releases have no discard.
                pdiscard: get(lib, b"cbd_libcurve_aio_pdiscard\0").ok(),
                filesize: get(lib, b"cbd_libcurve_filesize\0").map_err(load_err)?,
            })))
        }
    }

    /// `cbd_libcurve_init` with the client configuration file `conf`. Blocking.
    pub(crate) fn init(&self, conf: &CStr) -> c_int {
        // libcbd keeps the pointer (g_cbd_libcurve_options.conf), so it must live forever.
        let conf: &'static CStr = Box::leak(conf.to_owned().into_boxed_c_str());
        let options = CurveOptions {
            inited: false,
            conf: conf.as_ptr().cast_mut(),
        };
        // SAFETY: options is a valid CurveOptions for the duration of the call and its conf
        // string is NUL-terminated and never freed; init does not keep `options` itself.
        unsafe { (self.init)(&options) }
    }

    /// `cbd_libcurve_open`: a volume descriptor, or a negative error. Blocking.
    pub(crate) fn open(&self, name: &CString) -> c_int {
        // SAFETY: name is NUL-terminated and outlives the call; open copies what it keeps.
        unsafe { (self.open)(name.as_ptr()) }
    }

    /// `cbd_libcurve_filesize`: bytes, or a negative error. Blocking.
    pub(crate) fn filesize(&self, name: &CString) -> i64 {
        // SAFETY: as in open.
        unsafe { (self.filesize)(name.as_ptr()) }
    }

    /// `cbd_libcurve_close`; waits for the volume's I/O in flight. Blocking.
    pub(crate) fn close(&self, fd: c_int) -> c_int {
        // SAFETY: plain integer argument; an unknown fd is reported by libcbd, not UB.
        unsafe { (self.close)(fd) }
    }

    /// `cbd_libcurve_sync`. Blocking.
    pub(crate) fn sync(&self, fd: c_int) -> c_int {
        // SAFETY: plain integer argument.
        unsafe { (self.sync)(fd) }
    }

    /// Starts a read, write or discard on volume `fd`. The request is answered exactly once
    /// through its sink, whatever libcbd does (see the module documentation).
    pub(crate) fn submit(&self, fd: c_int, offset: u64, len: usize, mut pending: Pending) {
        let op = pending.op();
        let (function, c_op) = match op {
            Op::Read => (self.pread, LIBCURVE_OP_READ),
            Op::Write => (self.pwrite, LIBCURVE_OP_WRITE),
            Op::Discard => match self.pdiscard {
                Some(f) => (f, LIBCURVE_OP_DISCARD),
                None => return pending.complete(Err(IoError::Unsupported)),
            },
            Op::Flush => unreachable!("flushes go through Library::sync"),
        };
        if len == 0 {
            // libcbd returns 0 and never calls back for zero-length I/O.
            return pending.complete(Ok(0));
        }
        let Ok(offset) = libc::off_t::try_from(offset) else {
            return pending.complete(Err(IoError::Curve {
                code: crate::error::code::PARAM_ERROR,
            }));
        };
        let buf = match (op, pending.buf_mut()) {
            (Op::Discard, _) => std::ptr::null_mut(),
            // The IoBuf's heap block never moves while the record owns it, even when the IoBuf
            // value itself moves with the record.
            (_, Some(b)) if b.len() >= len => b.as_mut_slice().as_mut_ptr().cast::<c_void>(),
            (_, b) => {
                let capacity = b.map_or(0, |b| b.len());
                return pending.complete(Err(IoError::BadBuffer { len, capacity }));
            }
        };
        let record = Box::into_raw(Box::new(Aio {
            ctx: CurveAioContext {
                offset,
                length: len,
                ret: 0,
                op: c_op,
                cb: Some(on_complete),
                buf,
            },
            state: AtomicU8::new(0),
            len,
            pending: Some(pending),
        }));
        // SAFETY: `record` is a live, uniquely owned allocation whose first field is the
        // CurveAioContext (repr(C)), so the context pointer is the record pointer. From here
        // libcbd may use the context and the buffer until it calls back; neither is touched
        // by this thread except through `state` (an atomic) until the second of the two
        // events below answers the request and frees the record.
        let ret = unsafe { function(fd, addr_of_mut!((*record).ctx)) };
        // SAFETY: the record is still allocated: it is only freed by whoever sets the second
        // state bit, and RETURNED has not been set yet.
        let before = unsafe { (*addr_of!((*record).state)).fetch_or(RETURNED, AcqRel) };
        if before & CALLED_BACK != 0 {
            // The callback already ran (on this thread or another) and left the answer to us.
            // SAFETY: both bits are now set and we set the second: the record is ours alone.
            unsafe { finish(record, None) };
        } else if ret < 0 {
            // Refused without a callback: libcbd does not keep a context it returned an
            // error for (it calls back before returning, if at all, as for misaligned I/O).
            // SAFETY: no callback has run and none will; the record is ours alone.
            unsafe { finish(record, Some(ret)) };
        }
        // Otherwise the callback, when it comes, answers and frees the record.
    }
}

const RETURNED: u8 = 1;
const CALLED_BACK: u8 = 2;

/// One request in libcbd's hands. `ctx` must stay first: the callback casts back to it.
#[repr(C)]
struct Aio {
    ctx: CurveAioContext,
    state: AtomicU8,
    len: usize,
    pending: Option<Pending>,
}

/// libcbd's completion callback, on one of Curve's threads or on the submitting thread.
unsafe extern "C" fn on_complete(ctx: *mut CurveAioContext) {
    let record = ctx.cast::<Aio>();
    // SAFETY: libcbd passes back the context we gave it, which is the first field of a live
    // Aio record (freed only after both state bits are set, and this sets the second at
    // the earliest now).
    let before = unsafe { (*addr_of!((*record).state)).fetch_or(CALLED_BACK, AcqRel) };
    if before & RETURNED != 0 {
        // SAFETY: the submitting call has returned and left the answer to us; the record is
        // ours alone.
        unsafe { finish(record, None) };
    }
}

/// Answers the request of `record` and frees it. `ret` overrides the context's result when
/// no callback filled it.
///
/// # Safety
///
/// `record` came from `Box::into_raw` in [`Library::submit`], libcbd is done with it (both
/// events happened, or the call failed without a callback), and no other thread refers to it.
unsafe fn finish(record: *mut Aio, ret: Option<c_int>) {
    // SAFETY: per the contract, we own the allocation; the AcqRel on `state` made libcbd's
    // writes to ctx.ret (and to the buffer) visible to this thread.
    let mut aio = unsafe { Box::from_raw(record) };
    let ret = ret.unwrap_or(aio.ctx.ret);
    let pending = aio.pending.take().expect("an AIO record holds its request");
    let result = match (ret, aio.ctx.op) {
        (r, _) if r < 0 => Err(IoError::Curve { code: -r }),
        (_, LIBCURVE_OP_DISCARD) => Ok(0),
        (r, _) => Ok(usize::try_from(r).unwrap_or(0).min(aio.len)),
    };
    pending.complete(result);
}
