//! io_uring event loop.
#![deny(missing_docs)]
