//! systemd's readiness protocol (sd_notify): one datagram to `$NOTIFY_SOCKET`.
//!
//! A unit with `Type=notify` waits for `READY=1`, sent once every portal listens; `STOPPING=1`
//! tells it a shutdown has begun. Without `$NOTIFY_SOCKET` (not started by systemd) nothing is
//! sent.

use std::os::unix::net::UnixDatagram;

/// Sends `state` (e.g. `READY=1`) to systemd if it is listening. Errors are returned for
/// logging; a daemon keeps running without its supervisor's acknowledgement.
pub fn notify(state: &str) -> std::io::Result<bool> {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return Ok(false);
    };
    let sock = UnixDatagram::unbound()?;
    let bytes = path.as_encoded_bytes();
    if let Some(name) = bytes.strip_prefix(b"@") {
        // An abstract socket: the name after '@', with a leading NUL on the wire.
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
        sock.send_to_addr(state.as_bytes(), &addr)?;
    } else {
        sock.send_to(state.as_bytes(), &path)?;
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    #[test]
    fn no_socket_no_message() {
        // The test environment is not run by systemd with Type=notify.
        if std::env::var_os("NOTIFY_SOCKET").is_none() {
            assert!(!super::notify("READY=1").unwrap());
        }
    }
}
