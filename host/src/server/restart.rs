//! Restarting `kefu serve` in place: the same process (pid), executable,
//! arguments and environment, keeping its listening socket, so that
//! clients wait in the socket's backlog rather than find the port closed.
//! What the application core asks for when its store cannot be opened
//! again in process (see `app::durability`).

use std::os::fd::{FromRawFd, RawFd};

/// The environment variable naming the listening socket a restarted
/// `kefu serve` adopts instead of binding.
const LISTEN_FD: &str = "KEFU_RESTART_LISTEN_FD";

/// The listener a restart handed over, if this process is one.
pub fn inherited_listener() -> Option<std::io::Result<tokio::net::TcpListener>> {
    let fd: RawFd = std::env::var(LISTEN_FD).ok()?.parse().ok()?;
    // SAFETY: the process that set the variable left this descriptor, a
    // listening TCP socket, open across exec and uses it no more; nothing
    // else in this process owns it.
    let listener = unsafe { std::net::TcpListener::from_raw_fd(fd) };
    Some(
        set_cloexec(fd, true)
            .and_then(|_| listener.set_nonblocking(true))
            .and_then(|_| tokio::net::TcpListener::from_std(listener)),
    )
}

fn set_cloexec(fd: RawFd, on: bool) -> std::io::Result<()> {
    // SAFETY: fcntl on a descriptor this process owns, with plain flags.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFD);
        if flags < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let flags = if on {
            flags | libc::FD_CLOEXEC
        } else {
            flags & !libc::FD_CLOEXEC
        };
        if libc::fcntl(fd, libc::F_SETFD, flags) < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Replace this process with a new `kefu serve` run the same way, handing
/// it the listening socket `fd`. Returns only if that cannot be done (the error says
/// why); the process goes on as it was.
pub fn in_place(fd: RawFd, reason: &str) -> std::io::Error {
    use std::os::unix::process::CommandExt;
    tracing::error!(%reason, "kefu restarts itself in place (same pid, same listening socket)");
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => return e,
    };
    if let Err(e) = set_cloexec(fd, false) {
        return e;
    }
    let e = std::process::Command::new(exe)
        .args(std::env::args_os().skip(1))
        .env(LISTEN_FD, fd.to_string())
        .exec();
    let _ = set_cloexec(fd, true);
    tracing::error!(error = %e, "kefu could not restart itself");
    e
}
