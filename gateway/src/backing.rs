//! Backing stores: what a LUN's blocks live on.
//!
//! A store is opened on the management thread (so a bad path is an error at start that names
//! the file) and then moved to its target thread, whose ring does every read, write and flush.
//! `file` serves regular files and block devices, through the page cache (tgt's `rdwr`) or
//! with O_DIRECT (tgt's `aio`); `null` has no storage at all and measures the protocol alone;
//! `curve` is a Curve volume (`cbd:pool//volume_owner_`), opened here through libcbd or the
//! simulated cluster (a blocking call to the cluster, which is why it happens on the
//! management thread) and then served without blocking from its target thread.

use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::config::{BsType, LunConf};

/// Size of a `null` LUN when the configuration gives none.
pub const NULL_SIZE_BYTES_DEFAULT: u64 = 16 << 30;
/// Alignment of memory and offsets we assume O_DIRECT needs when the probe cannot tell.
pub const DIRECT_ALIGN_BYTES: u32 = 4096;

/// Why a backing store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum BackingError {
    /// The path could not be opened.
    #[error("cannot open backing store {path}: {source}")]
    Open {
        /// The path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A block device another program holds (mounted, or opened exclusively).
    #[error("backing store {path} is in use (mounted, or held by another program); stop using it there, or write `allow-in-use yes` if sharing it is intended")]
    InUse {
        /// The path.
        path: PathBuf,
    },
    /// The path is neither a regular file nor a block device.
    #[error("backing store {path} is not a regular file or a block device")]
    NotFileOrDevice {
        /// The path.
        path: PathBuf,
    },
    /// The store holds less than one block.
    #[error("backing store {path} is {size_bytes} bytes, smaller than one {block_size}-byte block; grow it (e.g. `truncate -s 1G {path}`)")]
    TooSmall {
        /// The path.
        path: PathBuf,
        /// Its size.
        size_bytes: u64,
        /// The LUN's block size.
        block_size: u32,
    },
    /// O_DIRECT cannot do I/O of the LUN's block size on this store.
    #[error("backing store {path} refuses O_DIRECT I/O of {block_size} bytes ({source}); use `block-size 4096` or `bs-type rdwr`")]
    DirectAlignment {
        /// The path.
        path: PathBuf,
        /// The LUN's block size.
        block_size: u32,
        /// The OS error of the probe.
        source: std::io::Error,
    },
    /// A Curve volume could not be served.
    #[error("backing store {path}: {source}")]
    Curve {
        /// The volume spec as configured.
        path: PathBuf,
        /// What went wrong (boxed: it is large and rare).
        source: Box<CurveBackingError>,
    },
}

/// Why a Curve volume could not be served.
#[derive(Debug, thiserror::Error)]
pub enum CurveBackingError {
    /// The backing store is not a volume spec.
    #[error(transparent)]
    Spec(#[from] curve_client::SpecError),
    /// The volume could not be opened.
    #[error(transparent)]
    Open(#[from] curve_client::OpenError),
    /// The LUN's block size is not a multiple of the volume's alignment.
    #[error("Curve volume {volume} needs {align_bytes}-byte aligned I/O but the LUN has {block_size}-byte blocks; write `block-size {align_bytes}`")]
    Alignment {
        /// The volume.
        volume: String,
        /// Its alignment.
        align_bytes: u32,
        /// The LUN's block size.
        block_size: u32,
    },
}

/// What a store is.
#[derive(Debug)]
pub enum StoreKind {
    /// A file or block device.
    File {
        /// The open file.
        file: File,
        /// Opened with O_DIRECT.
        direct: bool,
    },
    /// No storage.
    Null,
    /// A Curve volume; its I/O completes through the target's Curve completion sink.
    Curve {
        /// The open volume (boxed: it is larger than the other kinds).
        volume: Box<curve_client::Volume>,
    },
}

/// An open backing store, ready to move to its target thread.
#[derive(Debug)]
pub struct Backing {
    /// The store.
    pub kind: StoreKind,
    /// Usable size in bytes (a whole number of blocks).
    pub size_bytes: u64,
    /// Whether completed writes may sit in a volatile cache until a flush (the WCE bit).
    pub write_cache: bool,
    /// Path, for messages.
    pub path: PathBuf,
    /// Opened for writing (a read-only LUN's file is opened read-only).
    pub writable: bool,
}

impl Backing {
    /// Opens the store a LUN names.
    pub fn open(lun: &LunConf) -> Result<Backing, BackingError> {
        let s = &lun.settings;
        if s.bs_type == BsType::Null {
            let size = s.null_size_bytes.unwrap_or(NULL_SIZE_BYTES_DEFAULT);
            return Ok(Backing {
                kind: StoreKind::Null,
                size_bytes: size - size % u64::from(s.block_size),
                write_cache: s.write_cache.unwrap_or(false),
                path: lun.path.clone(),
                writable: true,
            });
        }
        if s.bs_type == BsType::Curve {
            return Self::open_curve(lun);
        }
        let direct = s.bs_type == BsType::Direct;
        let open_err = |source| BackingError::Open {
            path: lun.path.clone(),
            source,
        };
        // A block device that is mounted or held exclusively by another program is refused,
        // as tgt-admin refuses it, unless `allow-in-use yes`: an exclusive open tells (and is
        // closed at once, so gatewayd itself never holds the device exclusively).
        let is_device = std::fs::metadata(&lun.path)
            .map(|m| m.file_type().is_block_device())
            .unwrap_or(false);
        if is_device && !s.allow_in_use {
            match OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_EXCL)
                .open(&lun.path)
            {
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                    return Err(BackingError::InUse {
                        path: lun.path.clone(),
                    })
                }
                _ => {}
            }
        }
        let mut options = OpenOptions::new();
        options.read(true).write(!s.readonly);
        if direct {
            options.custom_flags(libc::O_DIRECT);
        }
        let mut file = options.open(&lun.path).map_err(open_err)?;
        let meta = file.metadata().map_err(open_err)?;
        let size = if meta.file_type().is_block_device() {
            file.seek(SeekFrom::End(0)).map_err(open_err)?
        } else if meta.is_file() {
            meta.len()
        } else {
            return Err(BackingError::NotFileOrDevice {
                path: lun.path.clone(),
            });
        };
        let block = u64::from(s.block_size);
        if size < block {
            return Err(BackingError::TooSmall {
                path: lun.path.clone(),
                size_bytes: size,
                block_size: s.block_size,
            });
        }
        if direct {
            probe_direct(&file, &lun.path, s.block_size)?;
        }
        Ok(Backing {
            kind: StoreKind::File { file, direct },
            size_bytes: size - size % block,
            // Writes land in the page cache or the device cache until a flush, unless the
            // operator turned the cache off, in which case every write is made durable.
            write_cache: s.write_cache.unwrap_or(true),
            path: lun.path.clone(),
            writable: !s.readonly,
        })
    }
}

impl Backing {
    fn open_curve(lun: &LunConf) -> Result<Backing, BackingError> {
        let s = &lun.settings;
        let fail = |source: CurveBackingError| BackingError::Curve {
            path: lun.path.clone(),
            source: Box::new(source),
        };
        let text = lun.path.to_string_lossy();
        let spec = curve_client::VolumeSpec::parse(&text).map_err(|e| fail(e.into()))?;
        let options = match &s.bs_opts {
            Some(o) => curve_client::BackendOptions::parse(o).map_err(|e| fail(e.into()))?,
            None => curve_client::BackendOptions::default(),
        };
        let volume = curve_client::Volume::open(&spec, &options).map_err(|e| fail(e.into()))?;
        if !s.block_size.is_multiple_of(volume.align_bytes()) {
            return Err(fail(CurveBackingError::Alignment {
                volume: volume.name().to_string(),
                align_bytes: volume.align_bytes(),
                block_size: s.block_size,
            }));
        }
        let size = volume.size_bytes();
        let block = u64::from(s.block_size);
        if size < block {
            return Err(BackingError::TooSmall {
                path: lun.path.clone(),
                size_bytes: size,
                block_size: s.block_size,
            });
        }
        Ok(Backing {
            kind: StoreKind::Curve {
                volume: Box::new(volume),
            },
            size_bytes: size - size % block,
            // Curve acknowledges a write once its replicas hold it: nothing volatile to flush.
            write_cache: s.write_cache.unwrap_or(false),
            path: lun.path.clone(),
            writable: !s.readonly,
        })
    }
}

/// Checks that O_DIRECT I/O of whole blocks works on this store: from the alignment statx
/// reports where the filesystem tells, and by reading one block in any case.
fn probe_direct(file: &File, path: &Path, block_size: u32) -> Result<(), BackingError> {
    use std::os::fd::AsFd;
    use std::os::unix::fs::FileExt;
    if let Ok(Some(align)) = gw_uring::direct_io_alignment(file.as_fd()) {
        let misaligned =
            !block_size.is_multiple_of(align.offset_bytes) || align.mem_bytes > DIRECT_ALIGN_BYTES;
        if misaligned {
            return Err(BackingError::DirectAlignment {
                path: path.to_path_buf(),
                block_size,
                source: std::io::Error::other(format!(
                    "O_DIRECT needs {}-byte offsets and {}-byte memory alignment",
                    align.offset_bytes, align.mem_bytes
                )),
            });
        }
    }
    let mut buf = gw_uring::IoBuf::new_unregistered(DIRECT_ALIGN_BYTES.max(block_size) as usize);
    let slice = &mut buf.as_mut_slice()[..block_size as usize];
    match file.read_at(slice, 0) {
        Ok(_) => Ok(()),
        Err(source) => Err(BackingError::DirectAlignment {
            path: path.to_path_buf(),
            block_size,
            source,
        }),
    }
}
