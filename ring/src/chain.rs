//! What one send carries: headers and small data copied into an arena, and ranges of I/O
//! buffers the chain owns, sent with one sendmsg.

use std::ops::Range;

use crate::iobuf::IoBuf;

/// Handle to an I/O buffer attached to a [`SendChain`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BufHandle(usize);

#[derive(Debug)]
enum Part {
    Arena(Range<usize>),
    Owned(Vec<u8>),
    Buf(usize, Range<usize>),
}

/// An ordered list of byte ranges to send in one go.
#[derive(Debug, Default)]
pub struct SendChain {
    arena: Vec<u8>,
    parts: Vec<Part>,
    bufs: Vec<IoBuf>,
    total: usize,
}

impl SendChain {
    /// An empty chain.
    pub fn new() -> SendChain {
        SendChain::default()
    }

    /// Appends owned bytes without copying them.
    pub fn push_bytes(&mut self, bytes: Vec<u8>) {
        if bytes.is_empty() {
            return;
        }
        self.total += bytes.len();
        self.parts.push(Part::Owned(bytes));
    }

    /// Appends a copy of `bytes` (headers, small payloads), merged with the previous part when
    /// that is also arena space.
    pub fn push_slice(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let start = self.arena.len();
        self.arena.extend_from_slice(bytes);
        self.total += bytes.len();
        if let Some(Part::Arena(r)) = self.parts.last_mut() {
            if r.end == start {
                r.end = self.arena.len();
                return;
            }
        }
        self.parts.push(Part::Arena(start..self.arena.len()));
    }

    /// Moves a buffer into the chain; its bytes are sent by [`Self::push_buf_range`].
    pub fn attach_buf(&mut self, buf: IoBuf) -> BufHandle {
        self.bufs.push(buf);
        BufHandle(self.bufs.len() - 1)
    }

    /// Appends a range of an attached buffer. Panics if the range is outside the buffer's
    /// length: that is a bug in the caller.
    pub fn push_buf_range(&mut self, h: BufHandle, range: Range<usize>) {
        assert!(
            range.end <= self.bufs[h.0].len(),
            "send range past the buffer"
        );
        if range.is_empty() {
            return;
        }
        self.total += range.len();
        self.parts.push(Part::Buf(h.0, range));
    }

    /// Bytes in the chain.
    pub fn len_bytes(&self) -> usize {
        self.total
    }

    /// Whether the chain has nothing to send.
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// Empties the chain, giving back its attached buffers.
    pub fn clear(&mut self) -> Vec<IoBuf> {
        self.arena.clear();
        self.parts.clear();
        self.total = 0;
        std::mem::take(&mut self.bufs)
    }

    /// The iovecs of every part, in order. The pointers stay valid while the chain is neither
    /// mutated nor dropped (the op that sends it owns it until its last completion).
    pub(crate) fn iovecs(&mut self) -> Vec<libc::iovec> {
        let arena = self.arena.as_mut_ptr();
        let mut out = Vec::with_capacity(self.parts.len());
        for part in &mut self.parts {
            let (base, len) = match part {
                // SAFETY: the range lies inside the arena (built by push_slice).
                Part::Arena(r) => (unsafe { arena.add(r.start) }, r.len()),
                Part::Owned(v) => (v.as_mut_ptr(), v.len()),
                // SAFETY: push_buf_range checked the range against the buffer's length.
                Part::Buf(i, r) => (unsafe { self.bufs[*i].as_mut_ptr().add(r.start) }, r.len()),
            };
            out.push(libc::iovec {
                iov_base: base.cast(),
                iov_len: len,
            });
        }
        out
    }

    /// The chain's bytes, concatenated (tests and diagnostics).
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.total);
        for part in &self.parts {
            match part {
                Part::Arena(r) => v.extend_from_slice(&self.arena[r.clone()]),
                Part::Owned(b) => v.extend_from_slice(b),
                Part::Buf(i, r) => v.extend_from_slice(&self.bufs[*i].as_slice()[r.clone()]),
            }
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_in_order() {
        let mut c = SendChain::new();
        c.push_slice(b"ab");
        c.push_slice(b"cd");
        let mut b = IoBuf::new_unregistered(8);
        b.as_mut_slice().copy_from_slice(b"01234567");
        let h = c.attach_buf(b);
        c.push_buf_range(h, 2..5);
        c.push_bytes(b"xyz".to_vec());
        c.push_slice(b"!");
        assert_eq!(c.to_vec(), b"abcd234xyz!");
        assert_eq!(c.len_bytes(), 11);
        assert_eq!(c.iovecs().len(), 4, "adjacent arena slices merge");
        assert_eq!(c.clear().len(), 1);
        assert!(c.is_empty());
    }
}
