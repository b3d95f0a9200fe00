//! The management plane's admin socket: tgt's `tgtadm` protocol ([`wire`]), tgt's `show`
//! text ([`show`]), and the service that runs requests on the management thread
//! ([`service`]).
//!
//! tgt's own `tgtadm` and `tgt-admin`, and our `gatewayadm`, connect to the same Unix socket
//! (`/var/run/tgtd/socket.<control-port>`, or `$TGT_IPC_SOCKET.<control-port>`), send one
//! request, read one answer, and close.

mod reload;
pub mod service;
pub mod show;
pub mod wire;
