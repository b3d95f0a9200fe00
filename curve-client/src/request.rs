//! Requests to a volume and their completions, and the guard that answers each request
//! exactly once.

use std::sync::Arc;

use gw_uring::IoBuf;

use crate::error::IoError;
use crate::sink::CompletionSink;

/// What a request does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// Read `len` bytes at `offset` into the buffer.
    Read,
    /// Write the buffer's first `len` bytes at `offset`.
    Write,
    /// Discard `len` bytes at `offset` (no buffer).
    Discard,
    /// Make completed writes durable (no buffer, no range).
    Flush,
}

/// One request. Its buffer belongs to the request, and so to the backend, until the
/// request's single [`Completion`] hands it back: the backend may read or fill it from any
/// thread meanwhile, and nothing else touches it.
#[derive(Debug)]
pub struct Request {
    /// The caller's tag, returned in the completion.
    pub token: u64,
    /// What to do.
    pub op: Op,
    /// Byte offset in the volume.
    pub offset: u64,
    /// Bytes to move (or to discard).
    pub len: usize,
    /// The data buffer for reads and writes.
    pub buf: Option<IoBuf>,
}

/// The answer to one request.
#[derive(Debug)]
pub struct Completion {
    /// The request's token.
    pub token: u64,
    /// The request's operation.
    pub op: Op,
    /// Bytes moved (reads and writes; 0 for discard and flush), or why it failed.
    pub result: Result<usize, IoError>,
    /// The request's buffer, given back.
    pub buf: Option<IoBuf>,
}

/// A request a backend has accepted: it owns the buffer and a handle on the sink, and
/// answers exactly once, either through [`Pending::complete`] (which consumes it) or, if a
/// backend drops it unanswered, with [`IoError::Lost`] from `Drop`.
#[derive(Debug)]
pub(crate) struct Pending {
    inner: Option<(Completion, Arc<CompletionSink>)>,
}

impl Pending {
    pub(crate) fn new(req: Request, sink: &Arc<CompletionSink>) -> Pending {
        Pending {
            inner: Some((
                Completion {
                    token: req.token,
                    op: req.op,
                    result: Ok(0),
                    buf: req.buf,
                },
                sink.clone(),
            )),
        }
    }

    fn parts(&mut self) -> &mut Completion {
        &mut self
            .inner
            .as_mut()
            .expect("a pending request is live until completed")
            .0
    }

    /// The operation.
    pub(crate) fn op(&mut self) -> Op {
        self.parts().op
    }

    /// The operation, through a shared reference.
    pub(crate) fn peek_op(&self) -> Op {
        self.inner.as_ref().expect("live until completed").0.op
    }

    /// The buffer, for the backend to read or fill.
    pub(crate) fn buf_mut(&mut self) -> Option<&mut IoBuf> {
        self.parts().buf.as_mut()
    }

    /// Answers the request.
    pub(crate) fn complete(mut self, result: Result<usize, IoError>) {
        let (mut completion, sink) = self.inner.take().expect("completed once");
        completion.result = result;
        sink.push(completion);
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if let Some((mut completion, sink)) = self.inner.take() {
            completion.result = Err(IoError::Lost);
            sink.push(completion);
        }
    }
}
