//! iSCSI protocol (RFC 7143), sans-IO.
