//! A queue of messages to a thread, with an eventfd its ring watches.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::mpsc;
use std::sync::Arc;

/// The receiving thread is gone.
#[derive(Debug, thiserror::Error)]
#[error("the receiving thread's mailbox is closed")]
pub struct MailboxClosed;

/// Sending side; cheap to clone, usable from any thread.
#[derive(Debug)]
pub struct MailboxSender<T> {
    tx: mpsc::Sender<T>,
    efd: Arc<OwnedFd>,
}

impl<T> Clone for MailboxSender<T> {
    fn clone(&self) -> Self {
        MailboxSender {
            tx: self.tx.clone(),
            efd: self.efd.clone(),
        }
    }
}

/// Receiving side, owned by one thread.
#[derive(Debug)]
pub struct Mailbox<T> {
    rx: mpsc::Receiver<T>,
    efd: Arc<OwnedFd>,
}

/// Creates a mailbox.
pub fn mailbox<T: Send>() -> std::io::Result<(MailboxSender<T>, Mailbox<T>)> {
    // SAFETY: eventfd has no memory-safety preconditions; the result is checked below.
    let raw = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    if raw < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: raw is a fresh eventfd this function owns and nothing else refers to.
    let efd = Arc::new(unsafe { OwnedFd::from_raw_fd(raw) });
    let (tx, rx) = mpsc::channel();
    Ok((
        MailboxSender {
            tx,
            efd: efd.clone(),
        },
        Mailbox { rx, efd },
    ))
}

impl<T: Send> MailboxSender<T> {
    /// Queues a message and wakes the receiving ring.
    pub fn send(&self, msg: T) -> Result<(), MailboxClosed> {
        self.tx.send(msg).map_err(|_| MailboxClosed)?;
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to an eventfd this sender keeps open.
        let n = unsafe {
            libc::write(
                self.efd.as_raw_fd(),
                (&one as *const u64).cast(),
                std::mem::size_of::<u64>(),
            )
        };
        // EAGAIN means the counter is saturated: the reader is already due to wake.
        debug_assert!(
            n == 8 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EAGAIN)
        );
        Ok(())
    }
}

impl<T> Mailbox<T> {
    /// The eventfd to keep a read posted on.
    pub fn eventfd(&self) -> RawFd {
        self.efd.as_raw_fd()
    }

    /// The next message, if any.
    pub fn try_recv(&self) -> Option<T> {
        self.rx.try_recv().ok()
    }
}
