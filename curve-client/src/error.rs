//! What can go wrong talking to a Curve volume: opening it, and each I/O.

use std::path::PathBuf;

/// Curve's `LIBCURVE_ERROR` codes that the gateway tells apart (`libcurve_define.h`); a
/// failed request's `ret` is the negated code.
pub mod code {
    /// Generic failure.
    pub const FAILED: i32 = 2;
    /// I/O is disabled on the volume.
    pub const DISABLEIO: i32 = 3;
    /// Authentication failed.
    pub const AUTHFAIL: i32 = 4;
    /// The volume does not exist.
    pub const NOTEXIST: i32 = 6;
    /// The operation is not supported.
    pub const NOT_SUPPORT: i32 = 11;
    /// A parameter is wrong.
    pub const PARAM_ERROR: i32 = 16;
    /// The chunk server's disk failed.
    pub const DISK_FAIL: i32 = 20;
    /// The cluster is out of space.
    pub const NO_SPACE: i32 = 21;
    /// Offset or length is not a multiple of the volume's alignment.
    pub const NOT_ALIGNED: i32 = 22;
    /// The volume is being closed.
    pub const BAD_FD: i32 = 23;
}

/// Why one request failed. Every variant maps to an errno for the SCSI layer
/// ([`IoError::errno`]): only "no space" is told apart there, the rest is a medium error.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IoError {
    /// The library (or the simulated cluster) reported `-code`.
    #[error("Curve reported error {code}")]
    Curve {
        /// The positive `LIBCURVE_ERROR` code.
        code: i32,
    },
    /// The simulated cluster's local file failed.
    #[error("simulated volume I/O failed with errno {errno}")]
    Os {
        /// The errno.
        errno: i32,
    },
    /// The request asked for more bytes than its buffer holds, or carried no buffer.
    #[error("request of {len} bytes with a buffer of {capacity} bytes")]
    BadBuffer {
        /// Bytes asked for.
        len: usize,
        /// Bytes the buffer holds.
        capacity: usize,
    },
    /// The backend does not do this operation (e.g. a libcbd without `aio_pdiscard`).
    #[error("the volume's backend does not support this operation")]
    Unsupported,
    /// The volume was closed with the request still queued (simulated cluster only).
    #[error("the volume was closed before the request completed")]
    Closed,
    /// The request was dropped without an answer: a bug in a backend, reported rather than
    /// leaving the initiator waiting forever.
    #[error("the request was lost by the backend")]
    Lost,
}

impl IoError {
    /// The errno the SCSI layer maps to sense data.
    pub fn errno(&self) -> i32 {
        match *self {
            IoError::Curve {
                code: code::NO_SPACE,
            } => libc::ENOSPC,
            IoError::Curve {
                code: code::NOT_ALIGNED | code::PARAM_ERROR,
            } => libc::EINVAL,
            IoError::Curve { .. } => libc::EIO,
            IoError::Os { errno } => errno,
            IoError::BadBuffer { .. } => libc::EINVAL,
            IoError::Unsupported => libc::EOPNOTSUPP,
            IoError::Closed | IoError::Lost => libc::EIO,
        }
    }
}

/// Why a volume could not be opened or its options not understood.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The `bsopts` string is malformed.
    #[error("bsopts: {0}")]
    Options(String),
    /// libcbd could not be loaded.
    #[error("cannot load libcbd from `{lib}`: {reason}; install Curve's client SDK (the package that ships libcbd.so, e.g. curve-sdk from Curve's releases) or point `bsopts lib=` at it")]
    Load {
        /// What was loaded.
        lib: PathBuf,
        /// dlopen's or dlsym's message.
        reason: String,
    },
    /// libcbd is already initialised with another client configuration file.
    #[error("libcbd `{lib}` is already initialised with conf `{active}` in this process; every Curve LUN served through one library must use the same conf (asked for `{asked}`)")]
    ConfMismatch {
        /// The library.
        lib: PathBuf,
        /// The configuration in force.
        active: String,
        /// The configuration asked for.
        asked: String,
    },
    /// `cbd_libcurve_init` failed.
    #[error("cbd_libcurve_init with conf `{conf}` failed ({ret}); check the file and the MDS addresses in it")]
    Init {
        /// The configuration file.
        conf: String,
        /// What init returned.
        ret: i32,
    },
    /// `cbd_libcurve_open` failed.
    #[error("cannot open Curve volume `{volume}` ({ret}): check that it exists and that its owner and the client configuration are right")]
    Open {
        /// The volume name given to libcbd.
        volume: String,
        /// What open returned.
        ret: i32,
    },
    /// `cbd_libcurve_filesize` failed.
    #[error("cannot read the size of Curve volume `{volume}` ({ret})")]
    Size {
        /// The volume name given to libcbd.
        volume: String,
        /// What filesize returned.
        ret: i64,
    },
    /// The simulated volume's file could not be opened or created.
    #[error("simulated Curve volume file {path}: {source}")]
    SimFile {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A thread for the backend could not be started.
    #[error("cannot start a Curve backend thread: {0}")]
    Thread(std::io::Error),
    /// The volume name holds a NUL byte.
    #[error("volume name `{0}` contains a NUL byte")]
    Nul(String),
}
