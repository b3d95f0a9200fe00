//! The ring: set-up with feature probing, submission, and completion handling.

use std::mem::ManuallyDrop;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use io_uring::{cqueue, opcode, squeue, types, IoUring};
use slab::Slab;

use crate::bufring::{BufRing, RECV_GROUP};
use crate::chain::SendChain;
use crate::error::{diagnose, Errno, RingError};
use crate::iobuf::IoBuf;
use crate::op::{Kind, Op, OpId, State, CANCEL_USER_DATA};

/// Largest size class of reusable unregistered buffers (2^24 = 16 MiB).
const SPARE_CLASS_MAX: usize = 24;
/// Reusable unregistered buffers kept per size class.
const SPARES_PER_CLASS_MAX: usize = 64;

/// The power-of-two size class holding `len` bytes (at least a page).
fn size_class(len: usize) -> usize {
    len.max(4096).next_power_of_two().trailing_zeros() as usize
}

/// Most iovecs one sendmsg carries (Linux's IOV_MAX).
pub const SEND_IOVECS_MAX: usize = 1024;

/// Ring sizes and buffer pools.
#[derive(Clone, Debug)]
pub struct RingOptions {
    /// Submission queue entries.
    pub sq_entries: u32,
    /// Completion queue entries.
    pub cq_entries: u32,
    /// Size of each provided receive buffer.
    pub recv_buf_bytes: u32,
    /// Number of provided receive buffers (a power of two).
    pub recv_buf_count: u16,
    /// Size of each registered I/O buffer.
    pub io_buf_bytes: usize,
    /// Number of registered I/O buffers (0: none).
    pub io_buf_count: usize,
}

impl Default for RingOptions {
    fn default() -> Self {
        RingOptions {
            sq_entries: 256,
            cq_entries: 1024,
            recv_buf_bytes: 64 << 10,
            recv_buf_count: 256,
            io_buf_bytes: 1 << 20,
            io_buf_count: 32,
        }
    }
}

/// What set-up found.
#[derive(Clone, Debug, Default)]
pub struct Features {
    /// SINGLE_ISSUER is in use.
    pub single_issuer: bool,
    /// DEFER_TASKRUN is in use.
    pub defer_taskrun: bool,
    /// Registered I/O buffers are in use.
    pub registered_buffers: bool,
}

/// A received chunk in a provided buffer; give it back with [`Ring::recycle`].
#[derive(Debug)]
pub struct RecvBuf {
    bid: u16,
    len: usize,
}

impl RecvBuf {
    /// Bytes received.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing was received.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// A finished operation, or one event of a multishot one.
#[derive(Debug)]
pub enum Completion {
    /// A connection was accepted.
    Accepted {
        /// The caller's token.
        token: u64,
        /// The new socket.
        result: Result<OwnedFd, Errno>,
    },
    /// Bytes arrived (`Ok(Some)`), the peer closed (`Ok(None)`), or receive failed; after
    /// `Ok(None)` or an error the receive is over.
    Received {
        /// The caller's token.
        token: u64,
        /// What happened.
        result: Result<Option<RecvBuf>, Errno>,
    },
    /// A send chain left completely, or failed.
    Sent {
        /// The caller's token.
        token: u64,
        /// Bytes sent.
        result: Result<usize, Errno>,
        /// The chain, given back.
        chain: SendChain,
    },
    /// A read finished (fewer bytes than asked only at end of file).
    Read {
        /// The caller's token.
        token: u64,
        /// Bytes read.
        result: Result<usize, Errno>,
        /// The buffer, given back.
        buf: IoBuf,
    },
    /// A write finished.
    Written {
        /// The caller's token.
        token: u64,
        /// Bytes written.
        result: Result<usize, Errno>,
        /// The buffer, given back.
        buf: IoBuf,
    },
    /// An fdatasync finished.
    Synced {
        /// The caller's token.
        token: u64,
        /// Its outcome.
        result: Result<(), Errno>,
    },
    /// A watched eventfd fired (the read is posted again).
    Signalled {
        /// The caller's token.
        token: u64,
    },
    /// An fallocate (hole punch or zero range) finished; the whole range or nothing.
    Fallocated {
        /// The caller's token.
        token: u64,
        /// Its outcome.
        result: Result<(), Errno>,
    },
    /// A timeout expired.
    Timer {
        /// The caller's token.
        token: u64,
    },
}

/// What an [`Ring::fallocate`] does to a byte range of a file (fallocate(2)); the file's size
/// never changes (FALLOC_FL_KEEP_SIZE).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fallocate {
    /// Deallocate the range: it reads back as zeros and no longer uses space
    /// (FALLOC_FL_PUNCH_HOLE).
    PunchHole,
    /// Zero the range and keep (or allocate) its space (FALLOC_FL_ZERO_RANGE).
    ZeroRange,
}

impl Fallocate {
    fn mode(self) -> i32 {
        match self {
            Fallocate::PunchHole => libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
            Fallocate::ZeroRange => libc::FALLOC_FL_ZERO_RANGE | libc::FALLOC_FL_KEEP_SIZE,
        }
    }
}

/// What a ring has done since it was created, for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RingCounters {
    /// Submission queue entries handed to the kernel.
    pub submitted: u64,
    /// Completion queue entries reaped.
    pub completed: u64,
    /// Completions the kernel could not fit in the completion queue (it kept them aside).
    pub cq_overflows: u64,
    /// Multishot receives that ran out of provided buffers and were re-armed.
    pub enobufs_rearms: u64,
}

/// One thread's io_uring with its op table and buffers.
pub struct Ring {
    counters: RingCounters,
    uring: ManuallyDrop<IoUring>,
    ops: Slab<Op>,
    capacity: usize,
    next_gen: u32,
    bufring: ManuallyDrop<BufRing>,
    /// Receives that ended with ENOBUFS, re-armed when a buffer returns.
    starved: Vec<usize>,
    /// Starved receives cancelled before re-arming; reported at the next reap.
    cancelled_starved: Vec<usize>,
    pool: Vec<IoBuf>,
    /// Unregistered buffers kept for reuse, by power-of-two size class.
    spares: Vec<Vec<IoBuf>>,
    io_buf_bytes: usize,
    /// Registered buffers are owned here too, so their memory outlives the registration.
    features: Features,
    cqes: Vec<(u64, i32, u32)>,
}

impl std::fmt::Debug for Ring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ring")
            .field("in_flight", &self.ops.len())
            .field("features", &self.features)
            .finish()
    }
}

/// Checks that io_uring can be used here, naming the cause when it cannot.
pub fn probe() -> Result<Features, RingError> {
    let ring = IoUring::new(8).map_err(|e| diagnose("creating a ring", e))?;
    let mut probe = io_uring::Probe::new();
    ring.submitter()
        .register_probe(&mut probe)
        .map_err(|e| diagnose("probing supported operations", e))?;
    for (code, name) in [
        (opcode::SendMsg::CODE, "SENDMSG"),
        (opcode::RecvMulti::CODE, "RECV"),
        (opcode::AcceptMulti::CODE, "ACCEPT"),
        (opcode::Read::CODE, "READ"),
        (opcode::Write::CODE, "WRITE"),
        (opcode::ReadFixed::CODE, "READ_FIXED"),
        (opcode::Fsync::CODE, "FSYNC"),
        (opcode::AsyncCancel::CODE, "ASYNC_CANCEL"),
        (opcode::Timeout::CODE, "TIMEOUT"),
    ] {
        if !probe.is_supported(code) {
            return Err(RingError::Unsupported { op: name });
        }
    }
    Ok(Features::default())
}

fn errno(res: i32) -> Errno {
    Errno(-res)
}

impl Ring {
    /// Sets up a ring on the calling thread (which must be the only one to use it).
    pub fn new(opts: &RingOptions) -> Result<Ring, RingError> {
        assert!(opts.recv_buf_count.is_power_of_two() && opts.recv_buf_bytes > 0);
        let mut features = Features::default();
        let uring = match IoUring::builder()
            .setup_cqsize(opts.cq_entries)
            .setup_clamp()
            .setup_single_issuer()
            .setup_defer_taskrun()
            .setup_coop_taskrun()
            .setup_taskrun_flag()
            .build(opts.sq_entries)
        {
            Ok(u) => {
                features.single_issuer = true;
                features.defer_taskrun = true;
                u
            }
            Err(e) => {
                tracing::info!(
                    "io_uring: SINGLE_ISSUER/DEFER_TASKRUN unavailable ({e}); using a plain ring"
                );
                IoUring::builder()
                    .setup_cqsize(opts.cq_entries)
                    .setup_clamp()
                    .build(opts.sq_entries)
                    .map_err(|e| diagnose("creating a ring", e))?
            }
        };
        let bufring = BufRing::new(opts.recv_buf_count, opts.recv_buf_bytes);
        // SAFETY: the buffer ring's memory is owned by `bufring`, which the Ring keeps until
        // after the io_uring itself is closed (see Drop), so it stays valid while registered.
        unsafe {
            uring.submitter().register_buf_ring_with_flags(
                bufring.ring_addr(),
                bufring.count(),
                RECV_GROUP,
                0,
            )
        }
        .map_err(|e| diagnose("registering receive buffers (needs Linux 5.19+)", e))?;

        let mut pool = Vec::new();
        if opts.io_buf_count > 0 {
            let mut bufs: Vec<IoBuf> = (0..opts.io_buf_count)
                .map(|_| IoBuf::new_unregistered(opts.io_buf_bytes))
                .collect();
            let iovecs: Vec<libc::iovec> = bufs
                .iter_mut()
                .map(|b| libc::iovec {
                    iov_base: b.as_mut_ptr().cast(),
                    iov_len: b.capacity(),
                })
                .collect();
            // SAFETY: each iovec describes a live IoBuf allocation; the buffers are kept in the
            // pool or lent to ops (never freed while registered: free_buf returns them to the
            // pool, and Drop leaks what is still in flight).
            match unsafe { uring.submitter().register_buffers(&iovecs) } {
                Ok(()) => {
                    for (i, b) in bufs.iter_mut().enumerate() {
                        b.fixed = Some(i as u16);
                    }
                    pool = bufs;
                    features.registered_buffers = true;
                }
                Err(e) => tracing::info!(
                    "io_uring: registered I/O buffers unavailable ({}); using plain buffers",
                    diagnose("registering I/O buffers", e)
                ),
            }
        }
        let capacity = (opts.cq_entries as usize).max(opts.sq_entries as usize) / 2;
        Ok(Ring {
            counters: RingCounters::default(),
            uring: ManuallyDrop::new(uring),
            ops: Slab::with_capacity(capacity),
            capacity,
            next_gen: 0,
            bufring: ManuallyDrop::new(bufring),
            starved: Vec::new(),
            cancelled_starved: Vec::new(),
            pool,
            spares: (0..=SPARE_CLASS_MAX).map(|_| Vec::new()).collect(),
            io_buf_bytes: opts.io_buf_bytes,
            features,
            cqes: Vec::with_capacity(256),
        })
    }

    /// What set-up found.
    pub fn features(&self) -> &Features {
        &self.features
    }

    /// Ops the table can hold.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Ops the kernel holds now.
    pub fn in_flight(&self) -> usize {
        self.ops.len()
    }

    fn insert(&mut self, kind: Kind, token: u64, state: State) -> Result<OpId, RingError> {
        if self.ops.len() >= self.capacity {
            return Err(RingError::Full {
                capacity: self.capacity,
            });
        }
        self.next_gen = self.next_gen.wrapping_add(1);
        let entry = self.ops.vacant_entry();
        let id = OpId::new(kind, self.next_gen, entry.key());
        entry.insert(Op {
            id,
            token,
            state,
            cancelled: false,
        });
        Ok(id)
    }

    /// Builds the SQE for an op's current state and queues it.
    fn arm(&mut self, slot: usize) {
        let op = &mut self.ops[slot];
        let ud = op.id.0;
        let entry: squeue::Entry = match &mut op.state {
            State::Accept { fd } => opcode::AcceptMulti::new(types::Fd(*fd))
                .flags(libc::SOCK_CLOEXEC)
                .build(),
            State::Recv { fd } => opcode::RecvMulti::new(types::Fd(*fd), RECV_GROUP).build(),
            State::Send {
                fd,
                iovecs,
                first,
                msghdr,
                ..
            } => {
                let n = (iovecs.len() - *first).min(SEND_IOVECS_MAX);
                // SAFETY: an all-zero msghdr is a valid empty header.
                **msghdr = unsafe { std::mem::zeroed() };
                msghdr.msg_iov = iovecs[*first..].as_mut_ptr();
                msghdr.msg_iovlen = n as _;
                opcode::SendMsg::new(types::Fd(*fd), &**msghdr)
                    .flags(libc::MSG_NOSIGNAL as u32)
                    .build()
            }
            State::Read {
                fd,
                buf,
                offset,
                len,
                done,
            } => {
                // SAFETY: done < len <= capacity, so the pointer stays inside the buffer.
                let ptr = unsafe { buf.as_mut_ptr().add(*done) };
                let n = (*len - *done) as u32;
                match buf.fixed {
                    Some(index) => opcode::ReadFixed::new(types::Fd(*fd), ptr, n, index)
                        .offset(*offset + *done as u64)
                        .build(),
                    None => opcode::Read::new(types::Fd(*fd), ptr, n)
                        .offset(*offset + *done as u64)
                        .build(),
                }
            }
            State::Write {
                fd,
                buf,
                offset,
                len,
                done,
                dsync,
            } => {
                // SAFETY: done < len <= capacity, so the pointer stays inside the buffer.
                let ptr = unsafe { buf.as_mut_ptr().add(*done) };
                let n = (*len - *done) as u32;
                let flags = if *dsync { libc::RWF_DSYNC } else { 0 };
                match buf.fixed {
                    Some(index) => opcode::WriteFixed::new(types::Fd(*fd), ptr, n, index)
                        .offset(*offset + *done as u64)
                        .rw_flags(flags)
                        .build(),
                    None => opcode::Write::new(types::Fd(*fd), ptr, n)
                        .offset(*offset + *done as u64)
                        .rw_flags(flags)
                        .build(),
                }
            }
            State::Fsync { fd } => opcode::Fsync::new(types::Fd(*fd))
                .flags(types::FsyncFlags::DATASYNC)
                .build(),
            State::EventFd { fd, scratch } => {
                opcode::Read::new(types::Fd(*fd), (&mut **scratch as *mut u64).cast(), 8).build()
            }
            State::Timeout { ts } => opcode::Timeout::new(&**ts).build(),
            State::Fallocate {
                fd,
                offset,
                len,
                mode,
            } => opcode::Fallocate::new(types::Fd(*fd), *len)
                .offset(*offset)
                .mode(*mode)
                .build(),
        };
        self.push(entry.user_data(ud));
    }

    /// Queues an SQE, submitting first if the queue is full.
    fn push(&mut self, entry: squeue::Entry) {
        loop {
            // SAFETY: every SQE built by `arm` points only into memory owned by its op-table
            // entry (or by the Ring), which lives until the op's last completion.
            if unsafe { self.uring.submission().push(&entry) }.is_ok() {
                return;
            }
            if let Err(e) = self.uring.submit() {
                if e.raw_os_error() != Some(libc::EINTR) && e.raw_os_error() != Some(libc::EBUSY) {
                    panic!("io_uring submit failed while the queue was full: {e}");
                }
            }
        }
    }

    fn start(&mut self, kind: Kind, token: u64, state: State) -> Result<OpId, RingError> {
        let id = self.insert(kind, token, state)?;
        self.arm(id.slot());
        Ok(id)
    }

    /// Multishot accept on a listening socket.
    pub fn accept_multi(&mut self, listener: RawFd, token: u64) -> Result<OpId, RingError> {
        self.start(Kind::Accept, token, State::Accept { fd: listener })
    }

    /// Multishot receive over the provided buffers.
    pub fn recv_multi(&mut self, fd: RawFd, token: u64) -> Result<OpId, RingError> {
        self.start(Kind::Recv, token, State::Recv { fd })
    }

    /// Sends a whole chain; one completion when all of it left or on error.
    pub fn send(&mut self, fd: RawFd, token: u64, mut chain: SendChain) -> Result<OpId, RingError> {
        let iovecs = chain.iovecs();
        if iovecs.is_empty() {
            panic!("empty send chains are never submitted");
        }
        self.start(
            Kind::Send,
            token,
            State::Send {
                fd,
                chain,
                iovecs,
                first: 0,
                // SAFETY: an all-zero msghdr is a valid empty header; arm fills it in.
                msghdr: Box::new(unsafe { std::mem::zeroed() }),
                sent: 0,
            },
        )
    }

    /// Reads `len` bytes at `offset` into `buf[..len]`.
    pub fn read_at(
        &mut self,
        fd: RawFd,
        token: u64,
        buf: IoBuf,
        offset: u64,
        len: usize,
    ) -> Result<OpId, RingError> {
        assert!(
            len <= buf.capacity() && len > 0,
            "read of {len} into a buffer of {}",
            buf.capacity()
        );
        self.start(
            Kind::Read,
            token,
            State::Read {
                fd,
                buf,
                offset,
                len,
                done: 0,
            },
        )
    }

    /// Writes `buf[..len]` at `offset`, durably before completion when `dsync`.
    pub fn write_at(
        &mut self,
        fd: RawFd,
        token: u64,
        buf: IoBuf,
        offset: u64,
        len: usize,
        dsync: bool,
    ) -> Result<OpId, RingError> {
        assert!(
            len <= buf.len() && len > 0,
            "write of {len} from a buffer of {}",
            buf.len()
        );
        self.start(
            Kind::Write,
            token,
            State::Write {
                fd,
                buf,
                offset,
                len,
                done: 0,
                dsync,
            },
        )
    }

    /// fdatasync.
    pub fn fdatasync(&mut self, fd: RawFd, token: u64) -> Result<OpId, RingError> {
        self.start(Kind::Fsync, token, State::Fsync { fd })
    }

    /// fallocate(2) on `len` bytes at `offset`: punches a hole or zeroes the range, as `what`
    /// says. The kernel does it in one step (no short completions), so callers bound `len`
    /// themselves when one op must not hold the file for long.
    pub fn fallocate(
        &mut self,
        fd: RawFd,
        token: u64,
        offset: u64,
        len: u64,
        what: Fallocate,
    ) -> Result<OpId, RingError> {
        assert!(len > 0, "fallocate of an empty range");
        self.start(
            Kind::Fallocate,
            token,
            State::Fallocate {
                fd,
                offset,
                len,
                mode: what.mode(),
            },
        )
    }

    /// Keeps a read posted on an eventfd.
    pub fn watch_eventfd(&mut self, efd: RawFd, token: u64) -> Result<OpId, RingError> {
        self.start(
            Kind::EventFd,
            token,
            State::EventFd {
                fd: efd,
                scratch: Box::new(0),
            },
        )
    }

    /// A one-shot timer.
    pub fn timeout(&mut self, after: Duration, token: u64) -> Result<OpId, RingError> {
        let ts = types::Timespec::new()
            .sec(after.as_secs())
            .nsec(after.subsec_nanos());
        self.start(Kind::Timeout, token, State::Timeout { ts: Box::new(ts) })
    }

    /// Asks the kernel to cancel an op. Nothing is freed here: the op's final completion is
    /// delivered as usual.
    pub fn cancel(&mut self, op: OpId) -> Result<(), RingError> {
        match self.ops.get_mut(op.slot()) {
            Some(entry) if entry.id == op => entry.cancelled = true,
            _ => return Ok(()),
        }
        if self.starved.contains(&op.slot()) {
            // Not in the kernel: finish it now, as a cancelled receive.
            self.starved.retain(|&s| s != op.slot());
            self.cancelled_starved.push(op.slot());
            return Ok(());
        }
        self.push(
            opcode::AsyncCancel::new(op.0)
                .build()
                .user_data(CANCEL_USER_DATA),
        );
        Ok(())
    }

    /// Submits what is queued and waits for `want` completions; one syscall.
    pub fn submit_and_wait(&mut self, want: usize) -> Result<(), RingError> {
        let want = if self.cancelled_starved.is_empty() {
            want
        } else {
            0
        };
        match self.uring.submit_and_wait(want) {
            Ok(n) => {
                self.counters.submitted += n as u64;
                Ok(())
            }
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EINTR) | Some(libc::EBUSY) | Some(libc::EAGAIN)
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(RingError::Enter(e)),
        }
    }

    /// What this ring has done so far.
    pub fn counters(&self) -> RingCounters {
        self.counters
    }

    /// Bytes of a received chunk.
    pub fn recv_data(&self, buf: &RecvBuf) -> &[u8] {
        self.bufring.data(buf.bid, buf.len)
    }

    /// Gives a receive buffer back, re-arming receives that starved.
    pub fn recycle(&mut self, buf: RecvBuf) {
        self.bufring.recycle(buf.bid);
        for slot in std::mem::take(&mut self.starved) {
            self.arm(slot);
        }
    }

    /// A buffer for `len` bytes: a registered one when one is free and large enough.
    pub fn alloc_buf(&mut self, len: usize) -> IoBuf {
        if len <= self.io_buf_bytes {
            if let Some(mut b) = self.pool.pop() {
                b.set_len(len);
                return b;
            }
        }
        // Reuse an unregistered buffer of the right size class: fresh allocations cost page
        // faults and zeroing on every command once the registered pool is in use. A reused
        // buffer holds old bytes; callers only ever expose bytes they wrote or read into it.
        let class = size_class(len);
        if let Some(mut b) = self.spares.get_mut(class).and_then(Vec::pop) {
            b.set_len(len);
            return b;
        }
        let capacity = if class <= SPARE_CLASS_MAX {
            1 << class
        } else {
            len
        };
        let mut b = IoBuf::new_unregistered(capacity.max(1));
        b.set_len(len);
        b
    }

    /// Returns a buffer from [`Self::alloc_buf`].
    pub fn free_buf(&mut self, mut buf: IoBuf) {
        buf.set_len(buf.capacity());
        if buf.fixed.is_some() {
            self.pool.push(buf);
            return;
        }
        let class = size_class(buf.capacity());
        if buf.capacity() == 1 << class {
            if let Some(list) = self.spares.get_mut(class) {
                if list.len() < SPARES_PER_CLASS_MAX {
                    list.push(buf);
                }
            }
        }
    }

    /// Drains the completion queue into `out`.
    pub fn reap(&mut self, out: &mut Vec<Completion>) {
        let mut cqes = std::mem::take(&mut self.cqes);
        let mut cq = self.uring.completion();
        self.counters.cq_overflows = u64::from(cq.overflow());
        cq.sync();
        for cqe in cq {
            cqes.push((cqe.user_data(), cqe.result(), cqe.flags()));
        }
        self.counters.completed += cqes.len() as u64;
        for slot in std::mem::take(&mut self.cancelled_starved) {
            let op = self.ops.remove(slot);
            out.push(Completion::Received {
                token: op.token,
                result: Err(Errno(libc::ECANCELED)),
            });
        }
        for &(ud, res, flags) in &cqes {
            if ud == CANCEL_USER_DATA {
                continue;
            }
            self.complete(OpId(ud), res, flags, out);
        }
        cqes.clear();
        self.cqes = cqes;
    }

    fn complete(&mut self, id: OpId, res: i32, flags: u32, out: &mut Vec<Completion>) {
        let slot = id.slot();
        let op = self.ops.get_mut(slot).unwrap_or_else(|| {
            panic!(
                "completion for empty op slot {slot} (user_data {:#x})",
                id.0
            )
        });
        assert_eq!(
            op.id, id,
            "completion generation mismatch in slot {slot}: op table corrupt"
        );
        let more = cqueue::more(flags);
        let token = op.token;
        match &mut op.state {
            State::Accept { .. } => {
                let result = if res >= 0 {
                    // SAFETY: a non-negative accept result is a new descriptor we now own.
                    Ok(unsafe { OwnedFd::from_raw_fd(res) })
                } else {
                    Err(errno(res))
                };
                let fatal = matches!(res, r if r == -libc::EBADF || r == -libc::EINVAL || r == -libc::ECANCELED || r == -libc::ENOTSOCK);
                if !(fatal && op.cancelled) && res != -libc::ECANCELED {
                    out.push(Completion::Accepted { token, result });
                }
                if !more {
                    if op.cancelled || fatal {
                        self.ops.remove(slot);
                    } else {
                        self.arm(slot);
                    }
                }
            }
            State::Recv { .. } => {
                if res > 0 {
                    let bid = cqueue::buffer_select(flags)
                        .expect("multishot receive completions carry a buffer");
                    out.push(Completion::Received {
                        token,
                        result: Ok(Some(RecvBuf {
                            bid,
                            len: res as usize,
                        })),
                    });
                    if !more {
                        if op.cancelled {
                            out.push(Completion::Received {
                                token,
                                result: Err(Errno(libc::ECANCELED)),
                            });
                            self.ops.remove(slot);
                        } else {
                            self.arm(slot);
                        }
                    }
                } else if res == -libc::ENOBUFS && !op.cancelled {
                    // Out of buffers: wait for one to come back, then re-arm (not reported).
                    if !more {
                        self.counters.enobufs_rearms += 1;
                        self.starved.push(slot);
                    }
                } else {
                    let result = if res == 0 { Ok(None) } else { Err(errno(res)) };
                    out.push(Completion::Received { token, result });
                    if !more {
                        self.ops.remove(slot);
                    }
                }
            }
            State::Send {
                iovecs,
                first,
                sent,
                ..
            } => {
                if res > 0 {
                    let mut n = res as usize;
                    *sent += n;
                    while n > 0 && *first < iovecs.len() {
                        let iov = &mut iovecs[*first];
                        if n >= iov.iov_len {
                            n -= iov.iov_len;
                            *first += 1;
                        } else {
                            // SAFETY: n < iov_len, so the new base stays inside the part.
                            iov.iov_base = unsafe { iov.iov_base.cast::<u8>().add(n) }.cast();
                            iov.iov_len -= n;
                            n = 0;
                        }
                    }
                    if *first < iovecs.len() {
                        self.arm(slot);
                        return;
                    }
                }
                let total = *sent;
                let op = self.ops.remove(slot);
                let State::Send { chain, .. } = op.state else {
                    unreachable!()
                };
                let result = if res > 0 {
                    Ok(total)
                } else if res == 0 {
                    Err(Errno(libc::EPIPE))
                } else {
                    Err(errno(res))
                };
                out.push(Completion::Sent {
                    token,
                    result,
                    chain,
                });
            }
            State::Read { len, done, .. } | State::Write { len, done, .. } => {
                if res > 0 {
                    *done += res as usize;
                    if *done < *len {
                        self.arm(slot);
                        return;
                    }
                }
                let total = *done;
                let result = if res >= 0 { Ok(total) } else { Err(errno(res)) };
                let op = self.ops.remove(slot);
                out.push(match op.state {
                    State::Read { buf, .. } => Completion::Read { token, result, buf },
                    State::Write { buf, .. } => Completion::Written { token, result, buf },
                    _ => unreachable!(),
                });
            }
            State::Fallocate { .. } => {
                self.ops.remove(slot);
                out.push(Completion::Fallocated {
                    token,
                    result: if res >= 0 { Ok(()) } else { Err(errno(res)) },
                });
            }
            State::Fsync { .. } => {
                self.ops.remove(slot);
                out.push(Completion::Synced {
                    token,
                    result: if res >= 0 { Ok(()) } else { Err(errno(res)) },
                });
            }
            State::EventFd { .. } => {
                if res >= 0 {
                    out.push(Completion::Signalled { token });
                }
                if op.cancelled || (res < 0 && res != -libc::EINTR && res != -libc::EAGAIN) {
                    self.ops.remove(slot);
                } else {
                    self.arm(slot);
                }
            }
            State::Timeout { .. } => {
                self.ops.remove(slot);
                if res == -libc::ETIME {
                    out.push(Completion::Timer { token });
                }
            }
        }
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        // SAFETY: the io_uring is dropped exactly once, here, before the memory it may use.
        unsafe { ManuallyDrop::drop(&mut self.uring) };
        if self.ops.is_empty() {
            // SAFETY: the ring is closed and no op is in flight: nothing refers to the buffers.
            unsafe { ManuallyDrop::drop(&mut self.bufring) };
        } else {
            // Ops were still in flight: closing the ring fd does not wait for the kernel to let
            // go of their memory, so leak it rather than risk a write into freed memory.
            tracing::warn!(
                in_flight = self.ops.len(),
                "ring dropped with ops in flight; leaking their memory"
            );
            std::mem::forget(std::mem::take(&mut self.ops));
            std::mem::forget(std::mem::take(&mut self.pool));
        }
    }
}
