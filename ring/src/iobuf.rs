//! Page-aligned I/O buffers, usable with O_DIRECT and as registered (fixed) buffers.

use std::alloc::Layout;
use std::ptr::NonNull;

/// Alignment of every I/O buffer: enough for O_DIRECT on any device here.
pub const IO_BUF_ALIGN_BYTES: usize = 4096;

/// A page-aligned heap buffer with a length. It may be one of the ring's registered buffers,
/// in which case reads and writes through it use the fixed-buffer opcodes.
pub struct IoBuf {
    ptr: NonNull<u8>,
    capacity: usize,
    len: usize,
    /// Index in the ring's registered buffer table, if registered.
    pub(crate) fixed: Option<u16>,
}

// SAFETY: IoBuf uniquely owns its allocation (no aliasing pointers are handed out beyond
// borrows tied to &self/&mut self), so moving it to another thread is as sound as moving a
// Vec<u8>.
unsafe impl Send for IoBuf {}

impl std::fmt::Debug for IoBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IoBuf")
            .field("len", &self.len)
            .field("capacity", &self.capacity)
            .field("fixed", &self.fixed)
            .finish()
    }
}

impl IoBuf {
    fn layout(capacity: usize) -> Layout {
        Layout::from_size_align(capacity.max(1), IO_BUF_ALIGN_BYTES)
            .expect("I/O buffer sizes are bounded far below isize::MAX")
    }

    /// A zeroed, aligned, unregistered buffer whose length equals its capacity.
    pub fn new_unregistered(capacity: usize) -> IoBuf {
        let layout = Self::layout(capacity);
        // SAFETY: the layout has a non-zero size (at least 1) and a power-of-two alignment.
        let raw = unsafe { std::alloc::alloc_zeroed(layout) };
        let ptr = NonNull::new(raw).unwrap_or_else(|| std::alloc::handle_alloc_error(layout));
        IoBuf {
            ptr,
            capacity,
            len: capacity,
            fixed: None,
        }
    }

    /// Bytes in use.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no byte is in use.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes allocated.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Sets the length. Panics past the capacity: that would be a bug in the caller.
    pub fn set_len(&mut self, len: usize) {
        assert!(
            len <= self.capacity,
            "IoBuf length {len} past capacity {}",
            self.capacity
        );
        self.len = len;
    }

    /// The bytes in use.
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: ptr is a live allocation of `capacity` initialised (zeroed at allocation)
        // bytes and len <= capacity; the borrow is tied to &self.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    /// The bytes in use, writable.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as in as_slice, and &mut self guarantees exclusive access.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }

    /// Whether this is one of the ring's registered buffers.
    pub fn is_registered(&self) -> bool {
        self.fixed.is_some()
    }

    /// Start of the allocation, for the kernel.
    pub(crate) fn as_mut_ptr(&mut self) -> *mut u8 {
        self.ptr.as_ptr()
    }
}

impl Drop for IoBuf {
    fn drop(&mut self) {
        // SAFETY: ptr was allocated in new_unregistered with exactly this layout, and an IoBuf
        // is only dropped when the kernel no longer uses it: ops own their buffers until their
        // last completion.
        unsafe { std::alloc::dealloc(self.ptr.as_ptr(), Self::layout(self.capacity)) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_zeroed_and_bounded() {
        let mut b = IoBuf::new_unregistered(10000);
        assert_eq!(b.as_slice().as_ptr() as usize % IO_BUF_ALIGN_BYTES, 0);
        assert!(b.as_slice().iter().all(|&x| x == 0));
        b.set_len(5);
        b.as_mut_slice().copy_from_slice(b"hello");
        assert_eq!(b.as_slice(), b"hello");
    }

    #[test]
    #[should_panic(expected = "past capacity")]
    fn set_len_past_capacity_panics() {
        IoBuf::new_unregistered(8).set_len(9);
    }
}
