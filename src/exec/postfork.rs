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

/// The clone3 argument block, version 2 (88 bytes, Linux 5.7: `cgroup`). Older
/// kernels accept it as long as the fields they do not know are zero.
#[repr(C)]
pub struct CloneArgs {
    pub flags: u64,
    pub pidfd: u64,
    pub child_tid: u64,
    pub parent_tid: u64,
    pub exit_signal: u64,
    pub stack: u64,
    pub stack_size: u64,
    pub tls: u64,
    pub set_tid: u64,
    pub set_tid_size: u64,
    pub cgroup: u64,
}

/// Born in the cgroup whose directory fd is `CloneArgs::cgroup` (Linux 5.7): no
/// migration, so no wait for the RCU grace period a `cgroup.procs` write takes.
pub const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

impl CloneArgs {
    /// `flags`, SIGCHLD at exit (a child like fork's), every other field zero.
    pub fn new(flags: u64) -> CloneArgs {
        CloneArgs {
            flags,
            pidfd: 0,
            child_tid: 0,
            parent_tid: 0,
            exit_signal: libc::SIGCHLD as u64,
            stack: 0,
            stack_size: 0,
            tls: 0,
            set_tid: 0,
            set_tid_size: 0,
            cgroup: 0,
        }
    }

    /// clone3(2) with these arguments: 0 in the child, its pid in the parent, -1
    /// with errno set on failure.
    ///
    /// # Safety
    /// As fork(2): without `CLONE_VM` the child runs on a copy of the caller's
    /// memory and must only make async-signal-safe calls until it execs or `_exit`s;
    /// any pointer in the fields must be valid for the kernel to write.
    pub unsafe fn clone3(&self) -> libc::c_long {
        // SAFETY: the block is a live, correctly sized repr(C) struct; the caller
        // upholds the fork-like contract above.
        unsafe { libc::syscall(libc::SYS_clone3, self as *const CloneArgs, std::mem::size_of::<CloneArgs>()) }
    }
}
