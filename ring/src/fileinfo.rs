//! What the kernel says about a file: its direct-I/O constraints (statx STATX_DIOALIGN) and
//! which of its ranges hold data (lseek SEEK_DATA / SEEK_HOLE).

use std::os::fd::{AsRawFd, BorrowedFd};

/// Alignment O_DIRECT needs on a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DirectAlign {
    /// Memory alignment of buffers, in bytes.
    pub mem_bytes: u32,
    /// Alignment of offsets and lengths, in bytes.
    pub offset_bytes: u32,
}

/// The O_DIRECT alignment of an open file, or None when its filesystem does not report one
/// (statx without STATX_DIOALIGN support, or a file that cannot do direct I/O).
pub fn direct_io_alignment(fd: BorrowedFd<'_>) -> std::io::Result<Option<DirectAlign>> {
    // SAFETY: an all-zero statx is a valid value of this plain C struct.
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: the path is a valid NUL-terminated empty string, AT_EMPTY_PATH makes statx
    // describe `fd` itself, and `stx` is a live, writable statx the kernel fills in.
    let rc = unsafe {
        libc::statx(
            fd.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            libc::STATX_DIOALIGN,
            &mut stx,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    if stx.stx_mask & libc::STATX_DIOALIGN == 0 || stx.stx_dio_offset_align == 0 {
        return Ok(None);
    }
    Ok(Some(DirectAlign {
        mem_bytes: stx.stx_dio_mem_align,
        offset_bytes: stx.stx_dio_offset_align,
    }))
}

/// The allocation state of a file from some offset on: one extent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Allocation {
    /// The extent holds data (false: it is a hole and reads as zeros).
    pub mapped: bool,
    /// Where the extent ends (exclusive), in bytes; `u64::MAX` for a hole that runs to the
    /// end of the file.
    pub end: u64,
}

/// The extent of `fd` that starts at byte `offset`: data or hole, and where it ends. None
/// when the file cannot tell (block devices and filesystems without SEEK_DATA): callers then
/// treat everything as data. lseek moves the descriptor's file position, which positional
/// reads and writes (all this project does) never use.
pub fn allocation_at(fd: BorrowedFd<'_>, offset: u64) -> std::io::Result<Option<Allocation>> {
    let Ok(at) = libc::off_t::try_from(offset) else {
        return Ok(Some(Allocation {
            mapped: false,
            end: u64::MAX,
        }));
    };
    let seek = |whence| {
        // SAFETY: lseek only reads its integer arguments; `fd` is a live descriptor for the
        // duration of the borrow.
        let r = unsafe { libc::lseek(fd.as_raw_fd(), at, whence) };
        if r < 0 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(r as u64)
        }
    };
    match seek(libc::SEEK_DATA) {
        Ok(data) if data == offset => {
            let end = seek(libc::SEEK_HOLE)?;
            Ok(Some(Allocation { mapped: true, end }))
        }
        Ok(data) => Ok(Some(Allocation {
            mapped: false,
            end: data,
        })),
        // No data at or after the offset: a hole to the end of the file.
        Err(e) if e.raw_os_error() == Some(libc::ENXIO) => Ok(Some(Allocation {
            mapped: false,
            end: u64::MAX,
        })),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL | libc::EOPNOTSUPP)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The user ID of the process at the other end of a connected Unix socket (SO_PEERCRED), as
/// the kernel recorded it when the peer connected.
pub fn peer_uid(fd: BorrowedFd<'_>) -> std::io::Result<u32> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `cred` is a live, writable ucred and `len` holds its exact size, which is what
    // SO_PEERCRED writes; `fd` is an open descriptor borrowed for the call.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(cred.uid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn reports_or_declines_without_error() {
        let path = std::env::temp_dir().join(format!("gw-statx-{}", std::process::id()));
        let f = std::fs::File::create(&path).unwrap();
        let a = direct_io_alignment(f.as_fd()).unwrap();
        if let Some(a) = a {
            assert!(
                a.offset_bytes.is_power_of_two() && a.mem_bytes.is_power_of_two(),
                "{a:?}"
            );
        }
        std::fs::remove_file(&path).unwrap();
    }
}
