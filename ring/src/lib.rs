//! The io_uring event loop every gateway thread runs on.
//!
//! One [`Ring`] per thread, created on that thread (rings set up with SINGLE_ISSUER refuse
//! other threads). Every op in flight has an entry in a slab-backed op table that owns all the
//! memory the kernel may touch — buffers, iovecs, message headers, timespecs — until the op's
//! last completion; `user_data` carries kind, generation and slot and is checked on every
//! completion. Short sends, reads and writes are resumed inside the ring; multishot accept and
//! receive re-arm themselves, receive after ENOBUFS as soon as buffers return. Callers see one
//! [`Completion`] per finished operation (or per received chunk / accepted connection).
//!
//! This crate and curve-client's FFI module are the only places with `unsafe` code; each block
//! says which invariant makes it sound and who keeps it.
#![deny(missing_docs)]

mod bufring;
mod chain;
mod error;
mod fileinfo;
mod iobuf;
mod mailbox;
mod op;
mod ring;
mod thread;

pub use chain::{BufHandle, SendChain};
pub use error::{Errno, RingError};
pub use fileinfo::{allocation_at, direct_io_alignment, peer_uid, Allocation, DirectAlign};
pub use iobuf::IoBuf;
pub use mailbox::{mailbox, Mailbox, MailboxClosed, MailboxSender};
pub use op::OpId;
pub use ring::{probe, Completion, Fallocate, Features, RecvBuf, Ring, RingCounters, RingOptions};
pub use thread::{allowed_cpus, spawn_pinned};
