//! SIGTERM, SIGINT, SIGHUP and SIGQUIT, caught with the sender's `si_code`, so that a
//! signal the terminal sent to its whole foreground process group (which the command, when
//! it shares ours, got already) is told apart from one sent to us alone (`kill PID`).
//!
//! The handler writes two bytes into a pipe (async-signal-safe); a thread reads them and
//! hands them to the async side.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::FromRawFd;
use std::sync::atomic::{AtomicI32, Ordering};

use tokio::sync::mpsc;

/// The signals forwarded to the command.
pub const FORWARDED: [libc::c_int; 4] = [libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGQUIT];

#[derive(Debug, Clone, Copy)]
pub struct Signal {
    pub signo: libc::c_int,
    /// Sent by the kernel, not by a process: the terminal's ^C, ^\ or hang-up, which went
    /// to the terminal's whole foreground process group.
    pub from_terminal: bool,
}

static WRITE_END: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_signal(signo: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    let saved = io::Error::last_os_error().raw_os_error().unwrap_or(0);
    // SAFETY: the kernel passes a valid siginfo_t with SA_SIGINFO (checked for null anyway).
    let code = if info.is_null() {
        0
    } else {
        unsafe { (*info).si_code }
    };
    let msg = [signo as u8, from_kernel(code) as u8];
    let fd = WRITE_END.load(Ordering::Relaxed);
    if fd >= 0 {
        // SAFETY: write(2) is async-signal-safe; `msg` lives across the call. A full pipe
        // (non-blocking) drops the signal, which only happens under a flood of signals.
        unsafe { libc::write(fd, msg.as_ptr().cast(), msg.len()) };
    }
    set_errno(saved);
}

#[cfg(target_os = "linux")]
fn from_kernel(code: libc::c_int) -> bool {
    code == libc::SI_KERNEL
}

#[cfg(not(target_os = "linux"))]
fn from_kernel(_code: libc::c_int) -> bool {
    false
}

#[cfg(target_os = "linux")]
fn set_errno(v: libc::c_int) {
    // SAFETY: the calling thread's errno
    unsafe { *libc::__errno_location() = v };
}

#[cfg(target_os = "macos")]
fn set_errno(v: libc::c_int) {
    // SAFETY: the calling thread's errno
    unsafe { *libc::__error() = v };
}

#[cfg(not(any(target_os = "linux", target_os = "macos")))]
fn set_errno(_v: libc::c_int) {}

/// Installs the handlers for [`FORWARDED`] (once per process; not for a signal that is
/// ignored already) and returns the stream of signals caught from now on.
pub fn install() -> io::Result<mpsc::UnboundedReceiver<Signal>> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: fds has room for the two descriptors.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let [read_end, write_end] = fds;
    for (fd, flags) in [(read_end, 0), (write_end, libc::O_NONBLOCK)] {
        // SAFETY: fcntl on descriptors we own; close-on-exec keeps them from the command.
        unsafe {
            if libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) != 0
                || (flags != 0 && libc::fcntl(fd, libc::F_SETFL, flags) != 0)
            {
                return Err(io::Error::last_os_error());
            }
        }
    }
    WRITE_END.store(write_end, Ordering::Relaxed);
    for signo in FORWARDED {
        // SAFETY: a zeroed sigaction is valid; the handler is async-signal-safe (above).
        unsafe {
            // A signal ignored by whoever started us (nohup; `cmd &` in a script ignores
            // SIGINT and SIGQUIT) stays ignored, for us and for the command.
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(signo, std::ptr::null(), &mut old) == 0
                && old.sa_sigaction == libc::SIG_IGN
            {
                continue;
            }
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as *const () as libc::sighandler_t;
            sa.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
            libc::sigemptyset(&mut sa.sa_mask);
            if libc::sigaction(signo, &sa, std::ptr::null_mut()) != 0 {
                return Err(io::Error::last_os_error());
            }
        }
    }
    let (tx, rx) = mpsc::unbounded_channel();
    // SAFETY: the read end is ours alone from here on.
    let mut pipe = unsafe { File::from_raw_fd(read_end) };
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let mut msg = [0u8; 2];
            while pipe.read_exact(&mut msg).is_ok() {
                let signal = Signal {
                    signo: libc::c_int::from(msg[0]),
                    from_terminal: msg[1] != 0,
                };
                if tx.send(signal).is_err() {
                    break;
                }
            }
        })?;
    Ok(rx)
}

/// Whether stdin is a terminal whose foreground process group is ours (run from an
/// interactive shell, not from cron, systemd or a pipeline in the background).
pub fn in_terminal_foreground() -> bool {
    // SAFETY: plain queries of this process's state.
    unsafe { libc::isatty(0) == 1 && libc::tcgetpgrp(0) == libc::getpgrp() }
}

/// Sends `signo` to a process (`pid > 0`) or a process group (`pid < -1`); ESRCH (already
/// gone) is not an error. 0 and -1 (our own group, every process) are refused.
pub fn send(pid: i32, signo: libc::c_int) {
    if pid == 0 || pid == -1 {
        return;
    }
    // SAFETY: kill(2) has no memory-safety preconditions.
    unsafe { libc::kill(pid, signo) };
}

pub fn name(signo: libc::c_int) -> &'static str {
    match signo {
        libc::SIGTERM => "SIGTERM",
        libc::SIGINT => "SIGINT",
        libc::SIGHUP => "SIGHUP",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGKILL => "SIGKILL",
        _ => "a signal",
    }
}
