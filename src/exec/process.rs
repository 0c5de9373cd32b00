//! A handle on a process that outlives its pid: a pidfd.
//!
//! Invariant: once opened (and checked by the caller to be the right process, e.g.
//! by its start time), a [`Process`] names that process for good: waiting and
//! signalling through it can never hit a recycled pid.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct Process {
    fd: OwnedFd,
}

impl Process {
    /// `pidfd_open(pid)`; `None` when no such process exists.
    pub fn open(pid: i32) -> Option<Process> {
        // SAFETY: plain syscall on integers; it reads and writes no memory of ours.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        // SAFETY: a non-negative result is a new pidfd nobody else owns: the
        // OwnedFd becomes its only owner.
        (fd >= 0).then(|| Process { fd: unsafe { OwnedFd::from_raw_fd(fd as i32) } })
    }

    /// Wait until the process exits, up to `timeout`. True if it did.
    pub fn wait_exit(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let mut p = libc::pollfd { fd: self.fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
            // SAFETY: one pollfd on the stack.
            let n = unsafe { libc::poll(&mut p, 1, left.as_millis().min(i32::MAX as u128) as i32) };
            if n > 0 {
                return true;
            }
            if left.is_zero() {
                return false;
            }
        }
    }

    /// SIGKILL the process (for a container's PID 1: its whole pid namespace).
    pub fn kill(&self) {
        // SAFETY: pidfd_send_signal on our pidfd, no siginfo.
        unsafe {
            libc::syscall(libc::SYS_pidfd_send_signal, self.fd.as_raw_fd(), libc::SIGKILL, std::ptr::null::<u8>(), 0);
        }
    }
}

/// (start time, state letter) of a live process, from `/proc/<pid>/stat`: the start
/// time (field 22, clock ticks since boot) and the pid together name one process.
pub fn proc_stat(pid: i32) -> Option<(u64, char)> {
    let fields = stat_fields(pid)?;
    let state = fields.first()?.chars().next()?;
    Some((fields.get(19)?.parse().ok()?, state))
}

/// The parent pid of a live process (field 4 of `/proc/<pid>/stat`).
pub fn parent(pid: i32) -> Option<i32> {
    stat_fields(pid)?.get(1)?.parse().ok()
}

/// The fields of `/proc/<pid>/stat` after the command name (from field 3, the state).
fn stat_fields(pid: i32) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses: fields follow the last ')'.
    Some(text[text.rfind(')')? + 1..].split_whitespace().map(str::to_string).collect())
}

/// Ignore SIGHUP from now on: a command that changes the host (apply, start, stop,
/// restart, destroy, build, gc) runs to its end when its terminal closes, instead of
/// dying between two steps. Every child we start resets its signals before its exec
/// (`postfork::reset_signals`), so no service inherits the disposition.
pub fn ignore_hangup() {
    // SAFETY: signal(2) with SIG_IGN installs no handler; it touches no memory of ours.
    unsafe {
        libc::signal(libc::SIGHUP, libc::SIG_IGN);
    }
}

/// SIGKILL to ourselves: the crash points' `kill -9` (see `runtime::crash`).
pub fn kill_self() {
    // SAFETY: kill(2) on our own pid.
    unsafe {
        libc::kill(libc::getpid(), libc::SIGKILL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_for_and_kills_a_child() {
        let mut child = std::process::Command::new("sleep").arg("100").spawn().unwrap();
        let p = Process::open(child.id() as i32).expect("pidfd");
        assert!(!p.wait_exit(Duration::from_millis(20)), "sleep ended early");
        p.kill();
        assert!(p.wait_exit(Duration::from_secs(10)));
        assert!(child.wait().unwrap().code().is_none());
    }
}
