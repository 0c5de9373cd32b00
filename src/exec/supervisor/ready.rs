//! PID 1's readiness pipe: the host starts PID 1 with the write end of a pipe at
//! [`READY_FD`]; PID 1 writes one byte once its control socket listens, then closes
//! it. The host blocks on the read end ([`ReadyPipe::wait`]) instead of retrying a
//! refused connect on a timer, so `start` learns the moment it can ask.
//!
//! Invariant: the write end lives in PID 1 only, close-on-exec from the moment PID 1
//! takes it and closed after its one byte; no service inherits it. It carries no
//! authority: the host connects to the socket either way and still retries a refused
//! connect (an older PID 1, a pipe the container could not have reached anyway), so a
//! byte that came early would only cost a retry.

use nix::poll::{PollFd, PollFlags, PollTimeout};
use std::io::Write;
use std::os::fd::{AsFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Where PID 1 finds the write end (after its config at 3 and cgroup folder at 4).
pub const READY_FD: RawFd = 5;

static WRITER: Mutex<Option<OwnedFd>> = Mutex::new(None);

/// Takes fd [`READY_FD`] as the readiness pipe when it is a pipe; anything else
/// there (nothing, for a supervisor run by hand) is left alone.
pub fn adopt() {
    // SAFETY: fstat into a zeroed struct and F_SETFD on a plain integer fd.
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        if libc::fstat(READY_FD, &mut st) != 0 || st.st_mode & libc::S_IFMT != libc::S_IFIFO {
            return;
        }
        if libc::fcntl(READY_FD, libc::F_SETFD, libc::FD_CLOEXEC) != 0 {
            return;
        }
        // SAFETY: the fd is open (checked above) and handed to us to own.
        *WRITER.lock().unwrap_or_else(|e| e.into_inner()) = Some(OwnedFd::from_raw_fd(READY_FD));
    }
}

/// Tell the host the control socket listens: one byte, then the pipe closes. Once.
pub fn announce() {
    if let Some(fd) = WRITER.lock().unwrap_or_else(|e| e.into_inner()).take() {
        // A host that gave up reading is no error of ours (SIGPIPE is ignored).
        let _ = std::fs::File::from(fd).write_all(b"L");
    }
}

/// What [`ReadyPipe::wait`] saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listening {
    /// PID 1 said its control socket listens.
    Yes,
    /// The pipe closed without a word: PID 1 ended, or never took the pipe.
    Closed,
    /// Nothing within the time given.
    TimedOut,
}

/// The host's end of the readiness pipe.
#[derive(Debug)]
pub struct ReadyPipe {
    read: OwnedFd,
}

impl ReadyPipe {
    /// A new pipe: the host keeps the [`ReadyPipe`], PID 1 gets the write end (both
    /// close-on-exec here; the sandbox places the write end at [`READY_FD`]).
    pub fn new() -> std::io::Result<(ReadyPipe, OwnedFd)> {
        let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(std::io::Error::from)?;
        Ok((ReadyPipe { read }, write))
    }

    /// Wait up to `max` for PID 1's word (or the pipe's end).
    pub fn wait(&self, max: Duration) -> Listening {
        let deadline = Instant::now() + max;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
            let mut fds = [PollFd::new(self.read.as_fd(), PollFlags::POLLIN)];
            match nix::poll::poll(&mut fds, PollTimeout::from(ms)) {
                Ok(0) if left.is_zero() => return Listening::TimedOut,
                Ok(0) => continue,
                Ok(_) => {
                    let mut b = [0u8; 1];
                    return match nix::unistd::read(&self.read, &mut b) {
                        Ok(1) => Listening::Yes,
                        _ => Listening::Closed,
                    };
                }
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => return Listening::Closed,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_word_a_silence_and_an_end() {
        let (pipe, write) = ReadyPipe::new().unwrap();
        assert_eq!(pipe.wait(Duration::from_millis(20)), Listening::TimedOut);
        std::fs::File::from(write).write_all(b"L").unwrap();
        assert_eq!(pipe.wait(Duration::from_secs(5)), Listening::Yes);
        // The writer is gone: EOF.
        assert_eq!(pipe.wait(Duration::from_secs(5)), Listening::Closed);
        let (pipe, write) = ReadyPipe::new().unwrap();
        drop(write);
        assert_eq!(pipe.wait(Duration::from_secs(5)), Listening::Closed);
    }
}
