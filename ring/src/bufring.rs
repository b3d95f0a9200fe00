//! The provided buffer ring multishot receives draw from (buffer group 0).
//!
//! The kernel picks a buffer for each received chunk; the caller copies what it needs and
//! recycles the buffer, which goes back on the ring's tail.

use std::alloc::Layout;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::types::BufRingEntry;

/// The buffer group ID of the receive buffers.
pub(crate) const RECV_GROUP: u16 = 0;

/// Ring of provided buffers, plus the memory behind them.
pub(crate) struct BufRing {
    entries: *mut BufRingEntry,
    entries_layout: Layout,
    data: *mut u8,
    data_layout: Layout,
    count: u16,
    buf_bytes: u32,
    tail: u16,
}

impl std::fmt::Debug for BufRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BufRing")
            .field("count", &self.count)
            .field("buf_bytes", &self.buf_bytes)
            .finish()
    }
}

impl BufRing {
    /// Allocates `count` (a power of two) buffers of `buf_bytes` and the ring describing them,
    /// every buffer initially available. Register with [`Self::ring_addr`] afterwards.
    pub(crate) fn new(count: u16, buf_bytes: u32) -> BufRing {
        assert!(
            count.is_power_of_two(),
            "provided buffer count must be a power of two"
        );
        let entries_layout = Layout::from_size_align(
            usize::from(count) * std::mem::size_of::<BufRingEntry>(),
            4096,
        )
        .expect("small layout");
        let data_layout = Layout::from_size_align(usize::from(count) * buf_bytes as usize, 4096)
            .expect("bounded layout");
        // SAFETY: both layouts have non-zero sizes (count >= 1, buf_bytes >= 1 checked by the
        // caller's options) and power-of-two alignments.
        let entries = unsafe { std::alloc::alloc_zeroed(entries_layout) }.cast::<BufRingEntry>();
        // SAFETY: as above.
        let data = unsafe { std::alloc::alloc(data_layout) };
        if entries.is_null() {
            std::alloc::handle_alloc_error(entries_layout);
        }
        if data.is_null() {
            std::alloc::handle_alloc_error(data_layout);
        }
        let mut ring = BufRing {
            entries,
            entries_layout,
            data,
            data_layout,
            count,
            buf_bytes,
            tail: 0,
        };
        for bid in 0..count {
            ring.push(bid);
        }
        ring.publish();
        ring
    }

    pub(crate) fn ring_addr(&self) -> u64 {
        self.entries as u64
    }

    pub(crate) fn count(&self) -> u16 {
        self.count
    }

    /// Bytes of buffer `bid`, `len` long.
    pub(crate) fn data(&self, bid: u16, len: usize) -> &[u8] {
        assert!(
            bid < self.count && len <= self.buf_bytes as usize,
            "bad provided buffer"
        );
        // SAFETY: bid < count, so the slice lies in the data allocation; the kernel wrote len
        // bytes there and no longer touches the buffer until it is recycled (the caller holds
        // its RecvBuf).
        unsafe {
            std::slice::from_raw_parts(
                self.data.add(usize::from(bid) * self.buf_bytes as usize),
                len,
            )
        }
    }

    fn push(&mut self, bid: u16) {
        let mask = self.count - 1;
        let index = usize::from(self.tail & mask);
        // SAFETY: index < count, inside the entries allocation; the kernel only reads entries
        // between its head and the published tail, and this slot is past the tail.
        let entry = unsafe { &mut *self.entries.add(index) };
        // SAFETY: bid < count, inside the data allocation.
        let addr = unsafe { self.data.add(usize::from(bid) * self.buf_bytes as usize) };
        entry.set_addr(addr as u64);
        entry.set_len(self.buf_bytes);
        entry.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    fn publish(&mut self) {
        // SAFETY: entries is the ring's base address; the tail field overlays the first entry's
        // reserved field, which the kernel reads atomically, so storing through an AtomicU16
        // with Release makes the entries written before visible to it.
        unsafe {
            let tail = BufRingEntry::tail(self.entries) as *const AtomicU16;
            (*tail).store(self.tail, Ordering::Release);
        }
    }

    /// Gives buffer `bid` back to the kernel.
    pub(crate) fn recycle(&mut self, bid: u16) {
        assert!(bid < self.count, "recycled buffer id {bid} out of range");
        self.push(bid);
        self.publish();
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        // SAFETY: allocated in new with these layouts; the ring (and with it the kernel's use
        // of this memory) is torn down before the BufRing is dropped (field order in Ring).
        unsafe {
            std::alloc::dealloc(self.entries.cast(), self.entries_layout);
            std::alloc::dealloc(self.data, self.data_layout);
        }
    }
}
