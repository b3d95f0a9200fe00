//! The iSCSI protocol (RFC 7143), sans-IO: PDU codec and digests, text keys, operational
//! parameters and their negotiation, the login state machine and its CHAP authentication, and
//! text exchanges (SendTargets). Nothing here touches a socket or a ring; the management and
//! target threads feed bytes in and take bytes out.

pub mod chap;
pub mod digest;
pub mod discovery;
pub mod login;
pub mod params;
pub mod pdu;
pub mod reader;
pub mod text;
pub mod writer;
