//! The systemd notification protocol (`Type=notify`): one datagram to the socket named by
//! `NOTIFY_SOCKET` — `READY=1` once the listeners are bound and serving, `STOPPING=1` when a
//! drain begins. Without the variable (not run by systemd) nothing is sent. A path starting with `@` is an abstract socket.
//! Written here rather than with a crate: the protocol is one `sendto` of a short text.

use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

/// Tells systemd `state` (e.g. `READY=1`); a failure is logged once per call and otherwise
/// ignored (the balancer serves the same either way).
pub fn notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    if let Err(err) = send(&path.to_string_lossy(), state) {
        log::warn!("cannot tell systemd {state} through NOTIFY_SOCKET={path:?}: {err}");
    }
}

fn send(path: &str, state: &str) -> io::Result<()> {
    let addr = match path.strip_prefix('@') {
        Some(name) => SocketAddr::from_abstract_name(name.as_bytes())?,
        None => SocketAddr::from_pathname(path)?,
    };
    let socket = UnixDatagram::unbound()?;
    socket.send_to_addr(state.as_bytes(), &addr)?;
    Ok(())
}
