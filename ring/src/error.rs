//! Errors of ring set-up and submission, and the errno carried by completions.

use std::fmt;

/// An errno from a completion, kept raw so callers can match on it deliberately.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Errno(pub i32);

impl Errno {
    /// The raw errno value.
    pub fn raw(&self) -> i32 {
        self.0
    }
}

impl fmt::Debug for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Errno({}: {})", self.0, self)
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", std::io::Error::from_raw_os_error(self.0))
    }
}

/// Why a ring could not be set up or an op not queued.
#[derive(Debug, thiserror::Error)]
pub enum RingError {
    /// `kernel.io_uring_disabled` forbids io_uring.
    #[error("io_uring is disabled by sysctl kernel.io_uring_disabled={value}; set it to 0 (`sysctl -w kernel.io_uring_disabled=0`){group_hint}")]
    DisabledBySysctl {
        /// The sysctl's value.
        value: u8,
        /// Extra advice for value 1.
        group_hint: &'static str,
    },
    /// A seccomp filter or a kernel without io_uring refused the syscall.
    #[error("io_uring_setup is refused ({errno}): the kernel lacks io_uring or a seccomp filter (container runtime, systemd SystemCallFilter=) blocks it; allow io_uring_setup, io_uring_enter and io_uring_register")]
    Refused {
        /// The errno.
        errno: Errno,
    },
    /// Locked memory limit too small for the ring or its registered buffers.
    #[error("io_uring needs more locked memory than RLIMIT_MEMLOCK allows ({limit}) for {what}; raise it (`ulimit -l unlimited`, or LimitMEMLOCK=infinity in the systemd unit)")]
    Memlock {
        /// What was being set up.
        what: &'static str,
        /// The current limit, readable.
        limit: String,
    },
    /// Another set-up failure.
    #[error("io_uring set-up failed while {what}: {source}")]
    Setup {
        /// What was being set up.
        what: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
    /// The kernel's io_uring lacks an operation the gateway needs.
    #[error("this kernel's io_uring does not support {op}; the gateway needs Linux 6.0 or newer")]
    Unsupported {
        /// The operation.
        op: &'static str,
    },
    /// The op table is full: the caller's bounds should have prevented this.
    #[error("io_uring op table full ({capacity} ops in flight)")]
    Full {
        /// The table's capacity.
        capacity: usize,
    },
    /// io_uring_enter failed.
    #[error("io_uring_enter failed: {0}")]
    Enter(std::io::Error),
}

/// Turns a set-up errno into the error that names its cause.
pub(crate) fn diagnose(what: &'static str, source: std::io::Error) -> RingError {
    let disabled = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
        .ok()
        .and_then(|s| s.trim().parse::<u8>().ok())
        .unwrap_or(0);
    diagnose_with(what, source, disabled)
}

/// [`diagnose`] with the sysctl's value given.
fn diagnose_with(what: &'static str, source: std::io::Error, disabled: u8) -> RingError {
    match source.raw_os_error() {
        Some(libc::EPERM) | Some(libc::EACCES) if disabled > 0 => RingError::DisabledBySysctl {
            value: disabled,
            group_hint: if disabled == 1 {
                ", or run as a member of the group in kernel.io_uring_group"
            } else {
                ""
            },
        },
        Some(e @ (libc::EPERM | libc::ENOSYS | libc::EACCES)) => {
            RingError::Refused { errno: Errno(e) }
        }
        Some(libc::ENOMEM) => RingError::Memlock {
            what,
            limit: memlock_limit(),
        },
        _ => RingError::Setup { what, source },
    }
}

fn memlock_limit() -> String {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Max locked memory"))
                .map(|l| {
                    let f: Vec<&str> = l.split_whitespace().collect();
                    format!(
                        "soft {} {}",
                        f.get(3).unwrap_or(&"?"),
                        f.get(5).unwrap_or(&"")
                    )
                })
        })
        .unwrap_or_else(|| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(e: i32) -> std::io::Error {
        std::io::Error::from_raw_os_error(e)
    }

    #[test]
    fn causes_are_named() {
        let e = diagnose_with("creating a ring", os(libc::EPERM), 2);
        assert!(e.to_string().contains("kernel.io_uring_disabled=2"), "{e}");
        let e = diagnose_with("creating a ring", os(libc::EPERM), 1);
        assert!(e.to_string().contains("io_uring_group"), "{e}");
        let e = diagnose_with("creating a ring", os(libc::EPERM), 0);
        assert!(e.to_string().contains("seccomp"), "{e}");
        let e = diagnose_with("creating a ring", os(libc::ENOSYS), 0);
        assert!(e.to_string().contains("seccomp"), "{e}");
        let e = diagnose_with("registering I/O buffers", os(libc::ENOMEM), 0);
        assert!(
            e.to_string().contains("RLIMIT_MEMLOCK") && e.to_string().contains("ulimit -l"),
            "{e}"
        );
        let e = diagnose_with("creating a ring", os(libc::EINVAL), 0);
        assert!(e.to_string().contains("creating a ring"), "{e}");
    }
}
