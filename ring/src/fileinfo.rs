//! What the kernel says about a file's direct-I/O constraints (statx STATX_DIOALIGN).

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
