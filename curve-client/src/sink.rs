//! The completion sink: where requests finishing on Curve's threads meet the target thread.
//!
//! A lock-free queue, an eventfd the target's ring keeps a read posted on, and an `armed`
//! flag so that a burst of completions costs one eventfd write rather than one each.
//!
//! The protocol (no lost wake-up): the consumer sets `armed`, then empties the queue;
//! a producer pushes, then clears `armed` and, if it was set, writes the eventfd. Both sides
//! order their write before their read with a sequentially consistent fence, so at least one
//! of them sees the other: either the consumer's drain finds the new completion, or the
//! producer finds `armed` set and wakes the ring (whose next drain finds it). A wake-up with
//! nothing queued is possible and harmless.
//!
//! The queue is bounded by the requests in flight: each request puts exactly one completion
//! in it, and the target bounds its requests by its task table.

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{fence, AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::Arc;

use crossbeam_queue::SegQueue;

use crate::request::Completion;

/// Completions of one target's Curve requests, from any thread, to that target's ring.
#[derive(Debug)]
pub struct CompletionSink {
    queue: SegQueue<Completion>,
    /// The consumer may be waiting on the eventfd: the next producer must write it.
    armed: AtomicBool,
    efd: File,
    /// Eventfd writes made (for tests and stats).
    wakeups: AtomicU64,
}

impl CompletionSink {
    /// A sink with a fresh non-blocking eventfd.
    pub fn new() -> std::io::Result<Arc<CompletionSink>> {
        Ok(Arc::new(CompletionSink {
            queue: SegQueue::new(),
            armed: AtomicBool::new(true),
            efd: crate::ffi::eventfd()?,
            wakeups: AtomicU64::new(0),
        }))
    }

    /// The eventfd to keep a read posted on.
    pub fn eventfd(&self) -> RawFd {
        self.efd.as_raw_fd()
    }

    /// Queues a completion and wakes the consumer if it is armed. Any thread.
    pub fn push(&self, completion: Completion) {
        self.queue.push(completion);
        fence(SeqCst);
        if self.armed.swap(false, SeqCst) {
            self.wakeups.fetch_add(1, SeqCst);
            // EAGAIN means the counter is saturated: the consumer is due to wake anyway.
            if let Err(e) = (&self.efd).write(&1u64.to_ne_bytes()) {
                assert_eq!(
                    e.raw_os_error(),
                    Some(libc::EAGAIN),
                    "writing the completion eventfd failed: {e}"
                );
            }
        }
    }

    /// Arms the wake-up and moves every queued completion into `out`. The consumer calls it
    /// each time the eventfd fires (and may call it at any other time).
    pub fn drain(&self, out: &mut Vec<Completion>) {
        self.armed.store(true, SeqCst);
        fence(SeqCst);
        while let Some(c) = self.queue.pop() {
            out.push(c);
        }
    }

    /// Eventfd writes so far.
    pub fn wakeups(&self) -> u64 {
        self.wakeups.load(SeqCst)
    }

    /// Reads (and so resets) the eventfd counter without blocking; 0 when it was not
    /// signalled. For consumers that poll the eventfd themselves rather than through a ring.
    pub fn take_signal(&self) -> u64 {
        use std::io::Read;
        let mut bytes = [0u8; 8];
        match (&self.efd).read(&mut bytes) {
            Ok(8) => u64::from_ne_bytes(bytes),
            _ => 0,
        }
    }
}
