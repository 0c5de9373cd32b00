//! Reaching into another network namespace without moving the calling process.
//!
//! Design: a forked child `setns()`s into the target namespace and does the one thing
//! that must happen from inside it, then exits:
//! - `Job::Netlink`: it creates a NETLINK_ROUTE socket there and hands the descriptor
//!   back over a unix socketpair (SCM_RIGHTS). A netlink socket stays bound to the
//!   namespace it was created in, so the parent then configures the container's
//!   links, addresses and routes in-process, with ordinary error handling.
//! - `Job::Sysctls`: it writes `/proc/sys/net/...` files, which resolve against the
//!   namespace of the process that opens them.
//!
//! A thread cannot be used: the executor must stay single-threaded (docs/ARCHITECTURE.md, "Threads") and
//! tests run in threads of one process whose namespaces must not change. The child
//! only makes async-signal-safe calls on memory prepared before `fork`, so this is
//! sound even when the caller has other threads (as the test harness does). It reports
//! back one fixed-size record: (stage, index, errno), stage 0 meaning success.

use super::NetError;
use nix::sys::socket::{recvmsg, socketpair, AddressFamily, ControlMessageOwned, MsgFlags, SockFlag, SockType};
use nix::sys::wait::waitpid;
use nix::unistd::{fork, ForkResult};
use std::ffi::CString;
use std::io::IoSliceMut;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

/// What the child does inside the namespace.
pub enum Job {
    Netlink,
    /// (path under /proc/sys, value) pairs, written in order.
    Sysctls(Vec<(CString, Vec<u8>)>),
}

const STAGE_OK: u32 = 0;
const STAGE_SETNS: u32 = 1;
const STAGE_OPEN: u32 = 2;
const STAGE_WRITE: u32 = 3;
const STAGE_SOCKET: u32 = 4;

/// Runs `job` inside the namespace `netns` (an open `/proc/<pid>/ns/net` or
/// `/run/netns/<name>` descriptor). Returns the netlink socket for `Job::Netlink`.
pub fn run(netns: BorrowedFd<'_>, job: &Job) -> Result<Option<OwnedFd>, NetError> {
    let ctx = |e: nix::Error| NetError::Netns(std::io::Error::from(e));
    let (ours, theirs) =
        socketpair(AddressFamily::Unix, SockType::SeqPacket, None, SockFlag::SOCK_CLOEXEC).map_err(ctx)?;
    // SAFETY: the child only calls async-signal-safe libc functions on memory that
    // exists before the fork, then `_exit`s (see `child`).
    match unsafe { fork() }.map_err(ctx)? {
        // SAFETY: we are the freshly forked child; `netns` and `theirs` are descriptors
        // open in it (inherited over the fork), and `job` was built before the fork.
        ForkResult::Child => unsafe { child(netns.as_raw_fd(), theirs.as_raw_fd(), job) },
        ForkResult::Parent { child } => {
            // Closing our copy of the child's end makes recvmsg see EOF if it dies.
            drop(theirs);
            let got = receive(&ours);
            // Reap the child whatever happened; its status adds nothing to the record.
            let _ = waitpid(child, None);
            got
        }
    }
}

fn receive(sock: &OwnedFd) -> Result<Option<OwnedFd>, NetError> {
    let mut rec = [0u8; 12];
    let mut cmsg = nix::cmsg_space!([RawFd; 1]);
    let (n, fds) = {
        let mut iov = [IoSliceMut::new(&mut rec)];
        let msg = recvmsg::<()>(sock.as_raw_fd(), &mut iov, Some(&mut cmsg), MsgFlags::MSG_CMSG_CLOEXEC)
            .map_err(|e| NetError::Netns(e.into()))?;
        let mut fds = Vec::new();
        if let Ok(cmsgs) = msg.cmsgs() {
            for c in cmsgs {
                if let ControlMessageOwned::ScmRights(v) = c {
                    // SAFETY: the kernel just installed these descriptors for us.
                    fds.extend(v.into_iter().map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }));
                }
            }
        }
        (msg.bytes, fds)
    };
    if n != rec.len() {
        return Err(NetError::Netns(std::io::Error::other("helper process exited without reporting")));
    }
    let word = |i: usize| [rec[i], rec[i + 1], rec[i + 2], rec[i + 3]];
    let stage = u32::from_ne_bytes(word(0));
    let index = u32::from_ne_bytes(word(4)) as usize;
    let errno = i32::from_ne_bytes(word(8));
    let err = std::io::Error::from_raw_os_error(errno);
    match stage {
        STAGE_OK => Ok(fds.into_iter().next()),
        STAGE_SETNS => Err(NetError::Netns(err)),
        STAGE_OPEN | STAGE_WRITE => Err(NetError::SysctlIndex { index, source: err }),
        _ => Err(NetError::Socket(err)),
    }
}

/// The child: never returns.
///
/// # Safety
/// Call only in the child forked by [`run`]: `netns` and `report` must be open
/// descriptors and `job` must have been built before the fork.
unsafe fn child(netns: RawFd, report: RawFd, job: &Job) -> ! {
    // SAFETY: we run in the single-threaded child forked by `run` and only `_exit` from
    // here. Every call is a raw async-signal-safe system call (setns, open, write,
    // close, socket, sendmsg via `send`); `netns` and `report` are descriptors
    // inherited over the fork, the sysctl paths are NUL-terminated CStrings and the
    // values byte vectors built before the fork, so nothing allocates or takes a lock;
    // `__errno_location` is the thread's errno slot, always valid.
    unsafe {
        let fail = |stage: u32, index: usize| -> ! {
            let errno = *libc::__errno_location();
            send(report, stage, index as u32, errno, None);
            libc::_exit(1)
        };
        if libc::setns(netns, libc::CLONE_NEWNET) != 0 {
            fail(STAGE_SETNS, 0);
        }
        match job {
            Job::Sysctls(items) => {
                for (i, (path, value)) in items.iter().enumerate() {
                    let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                    if fd < 0 {
                        fail(STAGE_OPEN, i);
                    }
                    let n = libc::write(fd, value.as_ptr().cast(), value.len());
                    if n < 0 || n as usize != value.len() {
                        fail(STAGE_WRITE, i);
                    }
                    libc::close(fd);
                }
                send(report, STAGE_OK, 0, 0, None);
            }
            Job::Netlink => {
                let s = libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, libc::NETLINK_ROUTE);
                if s < 0 {
                    fail(STAGE_SOCKET, 0);
                }
                send(report, STAGE_OK, 0, 0, Some(s));
            }
        }
        libc::_exit(0)
    }
}

/// Sends the report record, with `fd` attached as SCM_RIGHTS; stack memory only.
///
/// # Safety
/// `sock` must be an open socket and `fd`, if any, an open descriptor; safe between
/// fork and exec (no allocation).
unsafe fn send(sock: RawFd, stage: u32, index: u32, errno: i32, fd: Option<RawFd>) {
    // SAFETY: `msg` is zeroed (a valid empty msghdr) and points only at `iov`, `rec`
    // and `control` on this stack frame, alive until sendmsg returns. `control` is 64
    // bytes aligned for cmsghdr, more than CMSG_SPACE for one fd, so CMSG_FIRSTHDR
    // returns a non-null header inside it, and CMSG_DATA leaves room for the 4 bytes
    // copied from `fd` (distinct memory). `sock` is open (caller's contract).
    unsafe {
        let mut rec = [0u8; 12];
        rec[0..4].copy_from_slice(&stage.to_ne_bytes());
        rec[4..8].copy_from_slice(&index.to_ne_bytes());
        rec[8..12].copy_from_slice(&errno.to_ne_bytes());
        let mut iov = libc::iovec { iov_base: rec.as_mut_ptr().cast(), iov_len: rec.len() };
        // u64 elements give the control buffer cmsghdr alignment.
        let mut control = [0u64; 8];
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        if let Some(fd) = fd {
            let space = libc::CMSG_SPACE(std::mem::size_of::<RawFd>() as u32) as usize;
            msg.msg_control = control.as_mut_ptr().cast();
            msg.msg_controllen = space;
            let c = libc::CMSG_FIRSTHDR(&msg);
            (*c).cmsg_level = libc::SOL_SOCKET;
            (*c).cmsg_type = libc::SCM_RIGHTS;
            (*c).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<RawFd>() as u32) as usize;
            std::ptr::copy_nonoverlapping(
                (&fd as *const RawFd).cast::<u8>(),
                libc::CMSG_DATA(c),
                std::mem::size_of::<RawFd>(),
            );
        }
        libc::sendmsg(sock, &msg, 0);
    }
}
