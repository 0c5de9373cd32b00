//! What every process that enters a container gets between its fork and its exec:
//! default signal dispositions with an empty mask, and no descriptor above stderr.
//!
//! Invariant: raw async-signal-safe system calls only, no allocation and no locks,
//! so each function may run in a child forked from a multi-threaded parent. The
//! sandbox child (PID 1), the attach helper's command and the supervisor's spawn
//! all call these, so their view of signals and fds cannot drift apart again (they
//! had reset `1..SIGRTMAX`, `1..=SIGRTMAX` and `1..32`, and fallen back to marking
//! fds up to 65536 or 1 << 20).

use libc::c_int;

/// The fallback's ceiling when `RLIMIT_NOFILE` cannot be read.
const FALLBACK_MAX_FD: c_int = 4096;
/// The fallback marks fds up to the soft limit, but never more than this many.
const FALLBACK_CAP: libc::rlim_t = 1 << 20;

/// Every signal back to its default disposition, then an empty signal mask.
///
/// Ignored dispositions (Rust ignores SIGPIPE) and the mask survive `execve`;
/// handlers do not, but a handler installed by the parent must not run in the child
/// either. SIGKILL and SIGSTOP cannot be changed and are skipped.
///
/// # Safety
/// Call only in a child between fork and exec (it changes the whole process's
/// signal state).
pub unsafe fn reset_signals() {
    // SAFETY: signal(2) and sigprocmask(2) on plain integers and a zeroed stack
    // sigset; both are async-signal-safe.
    unsafe {
        for sig in 1..=libc::SIGRTMAX() {
            if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                libc::signal(sig, libc::SIG_DFL);
            }
        }
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
    }
}

/// Mark every fd from 3 up close-on-exec: the program sees only 0, 1 and 2, while
/// the report channel stays open until the exec itself.
///
/// `close_range(CLOSE_RANGE_CLOEXEC)` (Linux 5.11); before that, each fd up to the
/// soft `RLIMIT_NOFILE` (at most 2^20) is marked one by one.
///
/// # Safety
/// Call only in a child between fork and exec (it changes every fd of the process).
pub unsafe fn cloexec_above_stdio() {
    // SAFETY: close_range, getrlimit and fcntl on plain integers and a zeroed stack
    // struct; all async-signal-safe. Marking a closed fd fails harmlessly (EBADF).
    unsafe {
        if libc::syscall(libc::SYS_close_range, 3 as libc::c_uint, libc::c_uint::MAX, libc::CLOSE_RANGE_CLOEXEC) == 0 {
            return;
        }
        let mut rl: libc::rlimit = std::mem::zeroed();
        let max = if libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) == 0 {
            rl.rlim_cur.min(FALLBACK_CAP) as c_int
        } else {
            FALLBACK_MAX_FD
        };
        for fd in 3..max {
            libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
        }
    }
}
