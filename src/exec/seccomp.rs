//! seccomp: the system call filter of every process that enters a container.
//!
//! Invariant: [`Filter::compile`] is pure and runs before any fork; [`Filter::install`]
//! is one raw system call on the compiled program, safe between fork and exec. The
//! default policy is Docker's default profile (moby `profiles/seccomp/default.json`)
//! for x86_64 and a process without `CAP_SYS_ADMIN`, made stricter:
//!
//! - anything not listed fails with `EPERM` (Docker's `defaultErrnoRet`): the mount
//!   family (mount, umount2, fsopen, fsmount, fsconfig, fspick, open_tree, move_mount,
//!   mount_setattr, pivot_root), open_by_handle_at (the "Shocker" attack), keyctl,
//!   add_key, request_key, bpf, perf_event_open, kexec_load, kexec_file_load,
//!   init_module, finit_module, delete_module, clock_settime, settimeofday, syslog,
//!   swapon, swapoff, reboot, acct, unshare, setns, userfaultfd, ptrace and
//!   process_vm_readv/writev, iopl/ioperm, quotactl, sethostname, …;
//! - unlike Docker's older profiles, io_uring_setup/enter/register are refused too
//!   (Docker 25 dropped them as well): io_uring bypasses this filter entirely;
//! - `clone` is allowed only without namespace flags (the flags are argument 0 on
//!   x86_64); `clone3` answers `ENOSYS`, so glibc falls back to `clone`, whose flags
//!   a filter can see (what Docker does);
//! - `personality` only with the values Docker allows (query, Linux, and
//!   `ADDR_NO_RANDOMIZE`/`UNAME26` variants); `socket` not for `AF_VSOCK`;
//! - a number above [`MAX_KNOWN`] answers `ENOSYS` (what runc does), so a newer libc
//!   falls back to an older call instead of failing with `EPERM`;
//! - another architecture's calling convention (i386 through `int 0x80`) kills the
//!   process, and the x32 ABI (numbers with bit 30 set) gets `EPERM`: the table is
//!   x86_64's only, so nothing can reach a call under another number.
//!
//! `adjtimex` and `clock_adjtime` stay allowed as in Docker: reading the clock state
//! needs no privilege and changing it needs `CAP_SYS_TIME`, which the default set
//! lacks. As in Docker, a capability brings the calls it is for: a process given
//! `SYS_PTRACE` may ptrace, one given `SYS_ADMIN` may mount, and so on. A process can
//! also be allowed named calls ([`Policy::allow`]): the spec's `seccomp_allow`.
//!
//! The program is a binary search over runs of numbers with the same verdict, so a
//! call costs about a dozen BPF instructions whatever its number.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

pub use crate::vocab::syscalls::MAX_KNOWN;

pub use crate::vocab::syscalls::{name, number};

/// Allowed for every process: Docker's unconditional list (the x86_64 names),
/// without io_uring, plus the calls newer than that list that libc uses.
const BASE_ALLOW: &[&str] = &[
    "read",
    "write",
    "open",
    "close",
    "stat",
    "fstat",
    "lstat",
    "poll",
    "lseek",
    "mmap",
    "mprotect",
    "munmap",
    "brk",
    "rt_sigaction",
    "rt_sigprocmask",
    "rt_sigreturn",
    "ioctl",
    "pread64",
    "pwrite64",
    "readv",
    "writev",
    "access",
    "pipe",
    "select",
    "sched_yield",
    "mremap",
    "msync",
    "mincore",
    "madvise",
    "shmget",
    "shmat",
    "shmctl",
    "dup",
    "dup2",
    "pause",
    "nanosleep",
    "getitimer",
    "alarm",
    "setitimer",
    "getpid",
    "sendfile",
    "connect",
    "accept",
    "sendto",
    "recvfrom",
    "sendmsg",
    "recvmsg",
    "shutdown",
    "bind",
    "listen",
    "getsockname",
    "getpeername",
    "socketpair",
    "setsockopt",
    "getsockopt",
    "fork",
    "vfork",
    "execve",
    "exit",
    "wait4",
    "kill",
    "uname",
    "semget",
    "semop",
    "semctl",
    "shmdt",
    "msgget",
    "msgsnd",
    "msgrcv",
    "msgctl",
    "fcntl",
    "flock",
    "fsync",
    "fdatasync",
    "truncate",
    "ftruncate",
    "getdents",
    "getcwd",
    "chdir",
    "fchdir",
    "rename",
    "mkdir",
    "rmdir",
    "creat",
    "link",
    "unlink",
    "symlink",
    "readlink",
    "chmod",
    "fchmod",
    "chown",
    "fchown",
    "lchown",
    "umask",
    "gettimeofday",
    "getrlimit",
    "getrusage",
    "sysinfo",
    "times",
    "getuid",
    "getgid",
    "setuid",
    "setgid",
    "geteuid",
    "getegid",
    "setpgid",
    "getppid",
    "getpgrp",
    "setsid",
    "setreuid",
    "setregid",
    "getgroups",
    "setgroups",
    "setresuid",
    "getresuid",
    "setresgid",
    "getresgid",
    "getpgid",
    "setfsuid",
    "setfsgid",
    "getsid",
    "capget",
    "capset",
    "rt_sigpending",
    "rt_sigtimedwait",
    "rt_sigqueueinfo",
    "rt_sigsuspend",
    "sigaltstack",
    "utime",
    "mknod",
    "statfs",
    "fstatfs",
    "getpriority",
    "setpriority",
    "sched_setparam",
    "sched_getparam",
    "sched_setscheduler",
    "sched_getscheduler",
    "sched_get_priority_max",
    "sched_get_priority_min",
    "sched_rr_get_interval",
    "mlock",
    "munlock",
    "mlockall",
    "munlockall",
    "modify_ldt",
    "prctl",
    "arch_prctl",
    "adjtimex",
    "setrlimit",
    "sync",
    "gettid",
    "readahead",
    "setxattr",
    "lsetxattr",
    "fsetxattr",
    "getxattr",
    "lgetxattr",
    "fgetxattr",
    "listxattr",
    "llistxattr",
    "flistxattr",
    "removexattr",
    "lremovexattr",
    "fremovexattr",
    "tkill",
    "time",
    "futex",
    "sched_setaffinity",
    "sched_getaffinity",
    "set_thread_area",
    "io_setup",
    "io_destroy",
    "io_getevents",
    "io_submit",
    "io_cancel",
    "get_thread_area",
    "epoll_create",
    "epoll_ctl_old",
    "epoll_wait_old",
    "remap_file_pages",
    "getdents64",
    "set_tid_address",
    "restart_syscall",
    "semtimedop",
    "fadvise64",
    "timer_create",
    "timer_settime",
    "timer_gettime",
    "timer_getoverrun",
    "timer_delete",
    "clock_gettime",
    "clock_getres",
    "clock_nanosleep",
    "exit_group",
    "epoll_wait",
    "epoll_ctl",
    "tgkill",
    "utimes",
    "mq_open",
    "mq_unlink",
    "mq_timedsend",
    "mq_timedreceive",
    "mq_notify",
    "mq_getsetattr",
    "waitid",
    "ioprio_set",
    "ioprio_get",
    "inotify_init",
    "inotify_add_watch",
    "inotify_rm_watch",
    "openat",
    "mkdirat",
    "mknodat",
    "fchownat",
    "futimesat",
    "newfstatat",
    "unlinkat",
    "renameat",
    "linkat",
    "symlinkat",
    "readlinkat",
    "fchmodat",
    "faccessat",
    "pselect6",
    "ppoll",
    "set_robust_list",
    "get_robust_list",
    "splice",
    "tee",
    "sync_file_range",
    "vmsplice",
    "utimensat",
    "epoll_pwait",
    "signalfd",
    "timerfd_create",
    "eventfd",
    "fallocate",
    "timerfd_settime",
    "timerfd_gettime",
    "accept4",
    "signalfd4",
    "eventfd2",
    "epoll_create1",
    "dup3",
    "pipe2",
    "inotify_init1",
    "preadv",
    "pwritev",
    "rt_tgsigqueueinfo",
    "recvmmsg",
    "fanotify_mark",
    "prlimit64",
    "name_to_handle_at",
    "clock_adjtime",
    "syncfs",
    "sendmmsg",
    "getcpu",
    "sched_setattr",
    "sched_getattr",
    "renameat2",
    "seccomp",
    "getrandom",
    "memfd_create",
    "execveat",
    "membarrier",
    "mlock2",
    "copy_file_range",
    "preadv2",
    "pwritev2",
    "pkey_mprotect",
    "pkey_alloc",
    "pkey_free",
    "statx",
    "io_pgetevents",
    "rseq",
    "pidfd_send_signal",
    "pidfd_open",
    "close_range",
    "openat2",
    "faccessat2",
    "epoll_pwait2",
    "landlock_create_ruleset",
    "landlock_add_rule",
    "landlock_restrict_self",
    "memfd_secret",
    "process_mrelease",
    "futex_waitv",
    "cachestat",
    "fchmodat2",
    "map_shadow_stack",
    "futex_wake",
    "futex_wait",
    "futex_requeue",
    "mseal",
];

/// The calls a capability brings (Docker's `includes.caps`), by capability number.
const CAP_ALLOW: &[(u32, &[&str])] = &[
    (2, &["open_by_handle_at"]),
    (16, &["init_module", "finit_module", "delete_module"]),
    (17, &["iopl", "ioperm"]),
    (18, &["chroot"]),
    (19, &["ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "pidfd_getfd", "process_madvise"]),
    (20, &["acct"]),
    (
        21,
        &[
            "bpf",
            "clone",
            "clone3",
            "fanotify_init",
            "fsconfig",
            "fsmount",
            "fsopen",
            "fspick",
            "lookup_dcookie",
            "mount",
            "mount_setattr",
            "move_mount",
            "open_tree",
            "perf_event_open",
            "quotactl",
            "quotactl_fd",
            "setdomainname",
            "sethostname",
            "setns",
            "syslog",
            "umount2",
            "unshare",
        ],
    ),
    (22, &["reboot"]),
    (23, &["get_mempolicy", "mbind", "set_mempolicy", "set_mempolicy_home_node"]),
    (25, &["settimeofday", "clock_settime"]),
    (26, &["vhangup"]),
    (34, &["syslog"]),
    (38, &["perf_event_open"]),
    (39, &["bpf"]),
];

/// CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET (Docker's mask).
const CLONE_NS_FLAGS: u32 = 0x7E02_0000;
/// `personality` values Docker allows: PER_LINUX, UNAME26, ADDR_NO_RANDOMIZE (with
/// PER_LINUX and UNAME26), and 0xffffffff (query).
const PERSONALITIES: [u32; 5] = [0x0, 0x8, 0x2_0000, 0x2_0008, 0xffff_ffff];
const AF_VSOCK: u32 = 40;

const AUDIT_ARCH_X86_64: u32 = 0xC000_003E;
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

const RET_KILL_PROCESS: u32 = 0x8000_0000;
const RET_ERRNO: u32 = 0x0005_0000;
const RET_ALLOW: u32 = 0x7fff_0000;

// Classic BPF opcodes.
const LD_W_ABS: u16 = 0x20;
const JMP_JA: u16 = 0x05;
const JMP_JEQ_K: u16 = 0x15;
const JMP_JGT_K: u16 = 0x25;
const JMP_JGE_K: u16 = 0x35;
const ALU_AND_K: u16 = 0x54;
const RET_K: u16 = 0x06;

// Offsets in `struct seccomp_data`.
const OFF_NR: u32 = 0;
const OFF_ARCH: u32 = 4;
const OFF_ARG0_LO: u32 = 16;

/// One classic BPF instruction, laid out as the kernel's `struct sock_filter`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

const fn stmt(code: u16, k: u32) -> Insn {
    Insn { code, jt: 0, jf: 0, k }
}
const fn jump(code: u16, k: u32, jt: u8, jf: u8) -> Insn {
    Insn { code, jt, jf, k }
}

/// What a process may call beyond the base list.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Policy {
    /// Its capabilities (bit n = capability n): each brings its calls (see [`CAP_ALLOW`]).
    pub caps: u64,
    /// Calls allowed by name, whatever the default says about them.
    pub allow: BTreeSet<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Allow,
    Errno(u32),
    /// `clone`: allowed without namespace flags.
    CloneNoNs,
    Personality,
    /// `socket`: allowed unless the family is AF_VSOCK.
    SocketNoVsock,
}

/// A compiled filter, ready to install.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    insns: Vec<Insn>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FilterError {
    #[error("unknown system call `{0}` (names as in `man 2 syscalls`, x86_64)")]
    Unknown(String),
    #[error("the seccomp filter has {0} instructions, more than the kernel's 4096")]
    TooLong(usize),
}

impl Filter {
    /// Compile `policy` into a BPF program.
    pub fn compile(policy: &Policy) -> Result<Filter, FilterError> {
        let mut verdicts = vec![Verdict::Errno(libc::EPERM as u32); MAX_KNOWN as usize + 1];
        let mut set = |name: &str, v: Verdict| -> Result<(), FilterError> {
            let nr = number(name).ok_or_else(|| FilterError::Unknown(name.to_string()))?;
            verdicts[nr as usize] = v;
            Ok(())
        };
        for n in BASE_ALLOW {
            set(n, Verdict::Allow)?;
        }
        set("clone", Verdict::CloneNoNs)?;
        set("clone3", Verdict::Errno(libc::ENOSYS as u32))?;
        set("personality", Verdict::Personality)?;
        set("socket", Verdict::SocketNoVsock)?;
        for (cap, names) in CAP_ALLOW {
            if policy.caps & (1u64 << cap) != 0 {
                for n in *names {
                    set(n, Verdict::Allow)?;
                }
            }
        }
        for n in &policy.allow {
            set(n, Verdict::Allow)?;
        }
        // Runs of equal verdicts: (first number, verdict).
        let mut runs: Vec<(u32, Verdict)> = Vec::new();
        for (nr, v) in verdicts.iter().enumerate() {
            if runs.last().is_none_or(|(_, last)| last != v) {
                runs.push((nr as u32, *v));
            }
        }
        let mut insns = vec![
            stmt(LD_W_ABS, OFF_ARCH),
            jump(JMP_JEQ_K, AUDIT_ARCH_X86_64, 1, 0),
            stmt(RET_K, RET_KILL_PROCESS),
            stmt(LD_W_ABS, OFF_NR),
            jump(JMP_JGE_K, X32_SYSCALL_BIT, 0, 1),
            stmt(RET_K, RET_ERRNO | libc::EPERM as u32),
            jump(JMP_JGT_K, MAX_KNOWN, 0, 1),
            stmt(RET_K, RET_ERRNO | libc::ENOSYS as u32),
        ];
        insns.extend(search(&runs));
        if insns.len() > 4096 {
            return Err(FilterError::TooLong(insns.len()));
        }
        Ok(Filter { insns })
    }

    /// The compiled filter for `policy`, compiled once per process and policy.
    pub fn cached(policy: &Policy) -> Result<Arc<Filter>, FilterError> {
        static CACHE: Mutex<BTreeMap<Policy, Arc<Filter>>> = Mutex::new(BTreeMap::new());
        let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(f) = cache.get(policy) {
            return Ok(f.clone());
        }
        let f = Arc::new(Filter::compile(policy)?);
        cache.insert(policy.clone(), f.clone());
        Ok(f)
    }

    pub fn instructions(&self) -> &[Insn] {
        &self.insns
    }

    /// Install the filter on the calling thread (`seccomp(SECCOMP_SET_MODE_FILTER)`).
    /// Needs `no_new_privs` or `CAP_SYS_ADMIN`. Async-signal-safe: one system call on
    /// memory compiled before the fork.
    ///
    /// # Safety
    /// Changes what the calling process may do for the rest of its life: the caller
    /// must be the process (a forked child about to exec) meant to be filtered.
    pub unsafe fn install(&self) -> Result<(), libc::c_int> {
        let prog = libc::sock_fprog { len: self.insns.len() as libc::c_ushort, filter: self.insns.as_ptr() as *mut _ };
        // SAFETY: `prog` points at `insns`, which lives as long as `self`; Insn has the
        // layout of `struct sock_filter`. The kernel copies the program during the
        // call and does not write through the pointer.
        let r = unsafe { libc::syscall(libc::SYS_seccomp, libc::SECCOMP_SET_MODE_FILTER, 0 as libc::c_uint, &prog) };
        if r != 0 {
            return Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EINVAL));
        }
        Ok(())
    }
}

/// The code of one leaf (the number is in A).
fn leaf(v: Verdict) -> Vec<Insn> {
    let allow = stmt(RET_K, RET_ALLOW);
    let eperm = stmt(RET_K, RET_ERRNO | libc::EPERM as u32);
    match v {
        Verdict::Allow => vec![allow],
        Verdict::Errno(e) => vec![stmt(RET_K, RET_ERRNO | e)],
        Verdict::CloneNoNs => {
            vec![stmt(LD_W_ABS, OFF_ARG0_LO), stmt(ALU_AND_K, CLONE_NS_FLAGS), jump(JMP_JEQ_K, 0, 0, 1), allow, eperm]
        }
        Verdict::Personality => {
            let mut v = vec![stmt(LD_W_ABS, OFF_ARG0_LO)];
            let n = PERSONALITIES.len();
            for (i, p) in PERSONALITIES.iter().enumerate() {
                // Match: jump over the remaining compares and the EPERM to ALLOW.
                v.push(jump(JMP_JEQ_K, *p, (n - i) as u8, 0));
            }
            v.push(eperm);
            v.push(allow);
            v
        }
        Verdict::SocketNoVsock => vec![stmt(LD_W_ABS, OFF_ARG0_LO), jump(JMP_JEQ_K, AF_VSOCK, 0, 1), eperm, allow],
    }
}

/// A binary search over `runs` (sorted by first number, non-empty).
fn search(runs: &[(u32, Verdict)]) -> Vec<Insn> {
    if runs.len() == 1 {
        return leaf(runs[0].1);
    }
    let mid = runs.len() / 2;
    let below = search(&runs[..mid]);
    let above = search(&runs[mid..]);
    let mut out = Vec::with_capacity(below.len() + above.len() + 2);
    match u8::try_from(below.len()) {
        // nr >= first of the upper half: jump over the lower half.
        Ok(n) => out.push(jump(JMP_JGE_K, runs[mid].0, n, 0)),
        Err(_) => {
            out.push(jump(JMP_JGE_K, runs[mid].0, 0, 1));
            out.push(stmt(JMP_JA, below.len() as u32));
        }
    }
    out.extend(below);
    out.extend(above);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs a filter as the kernel would, on (arch, nr, args).
    fn run(f: &Filter, arch: u32, nr: u32, args: [u64; 6]) -> u32 {
        let mut data = [0u8; 64];
        data[0..4].copy_from_slice(&nr.to_ne_bytes());
        data[4..8].copy_from_slice(&arch.to_ne_bytes());
        for (i, a) in args.iter().enumerate() {
            data[16 + i * 8..24 + i * 8].copy_from_slice(&a.to_ne_bytes());
        }
        let (mut a, mut pc) = (0u32, 0usize);
        loop {
            let i = f.insns[pc];
            pc += 1;
            match i.code {
                LD_W_ABS => {
                    let o = i.k as usize;
                    a = u32::from_ne_bytes([data[o], data[o + 1], data[o + 2], data[o + 3]]);
                }
                ALU_AND_K => a &= i.k,
                JMP_JA => pc += i.k as usize,
                JMP_JEQ_K | JMP_JGT_K | JMP_JGE_K => {
                    let t = match i.code {
                        JMP_JEQ_K => a == i.k,
                        JMP_JGT_K => a > i.k,
                        _ => a >= i.k,
                    };
                    pc += usize::from(if t { i.jt } else { i.jf });
                }
                RET_K => return i.k,
                c => panic!("unexpected opcode {c:#x}"),
            }
        }
    }

    fn call(f: &Filter, name: &str, args: [u64; 6]) -> u32 {
        run(f, AUDIT_ARCH_X86_64, number(name).unwrap_or_else(|| panic!("{name}")), args)
    }

    const EPERM: u32 = RET_ERRNO | libc::EPERM as u32;
    const ENOSYS: u32 = RET_ERRNO | libc::ENOSYS as u32;

    #[test]
    fn the_table_is_sorted_and_every_listed_name_is_known() {
        assert!(crate::vocab::syscalls::SYSCALLS.windows(2).all(|w| w[0].1 < w[1].1));
        assert_eq!(crate::vocab::syscalls::SYSCALLS.last().map(|s| s.1), Some(MAX_KNOWN));
        for n in BASE_ALLOW.iter().chain(CAP_ALLOW.iter().flat_map(|(_, n)| n.iter())) {
            assert!(number(n).is_some(), "{n}");
        }
        assert_eq!(number("read"), Some(0));
        assert_eq!(number("open_by_handle_at"), Some(304));
        assert_eq!(name(56), Some("clone"));
    }

    #[test]
    fn the_default_allows_ordinary_calls_and_refuses_the_dangerous_ones() {
        let f = Filter::compile(&Policy::default()).unwrap();
        for n in BASE_ALLOW {
            assert_eq!(call(&f, n, [0; 6]), RET_ALLOW, "{n}");
        }
        for n in [
            "mount",
            "umount2",
            "fsopen",
            "fsmount",
            "fsconfig",
            "fspick",
            "open_tree",
            "move_mount",
            "mount_setattr",
            "pivot_root",
            "open_by_handle_at",
            "keyctl",
            "add_key",
            "request_key",
            "bpf",
            "perf_event_open",
            "kexec_load",
            "kexec_file_load",
            "init_module",
            "finit_module",
            "delete_module",
            "clock_settime",
            "settimeofday",
            "syslog",
            "swapon",
            "swapoff",
            "reboot",
            "acct",
            "unshare",
            "setns",
            "io_uring_setup",
            "io_uring_enter",
            "io_uring_register",
            "userfaultfd",
            "ptrace",
            "process_vm_readv",
            "process_vm_writev",
            "iopl",
            "ioperm",
            "quotactl",
            "sethostname",
            "uselib",
            "_sysctl",
            "lookup_dcookie",
        ] {
            assert_eq!(call(&f, n, [0; 6]), EPERM, "{n}");
        }
        assert_eq!(call(&f, "chroot", [0; 6]), EPERM, "chroot needs SYS_CHROOT");
    }

    #[test]
    fn clone_personality_and_socket_look_at_their_argument() {
        let f = Filter::compile(&Policy::default()).unwrap();
        // What glibc's fork and pthread_create pass.
        assert_eq!(call(&f, "clone", [0x0120_0011, 0, 0, 0, 0, 0]), RET_ALLOW);
        assert_eq!(call(&f, "clone", [0x003d_0f00, 0, 0, 0, 0, 0]), RET_ALLOW);
        for ns in [0x2_0000u64, 0x0200_0000, 0x0400_0000, 0x0800_0000, 0x1000_0000, 0x2000_0000, 0x4000_0000] {
            assert_eq!(call(&f, "clone", [ns | 0x11, 0, 0, 0, 0, 0]), EPERM, "{ns:#x}");
        }
        assert_eq!(call(&f, "clone3", [0; 6]), ENOSYS);
        for p in PERSONALITIES {
            assert_eq!(call(&f, "personality", [u64::from(p), 0, 0, 0, 0, 0]), RET_ALLOW);
        }
        assert_eq!(call(&f, "personality", [0x0040_0000, 0, 0, 0, 0, 0]), EPERM, "READ_IMPLIES_EXEC");
        assert_eq!(call(&f, "socket", [2, 1, 0, 0, 0, 0]), RET_ALLOW);
        assert_eq!(call(&f, "socket", [u64::from(AF_VSOCK), 1, 0, 0, 0, 0]), EPERM);
    }

    #[test]
    fn other_abis_and_unknown_numbers() {
        let f = Filter::compile(&Policy::default()).unwrap();
        assert_eq!(run(&f, 0x4000_0003, 0, [0; 6]), RET_KILL_PROCESS, "i386");
        assert_eq!(run(&f, AUDIT_ARCH_X86_64, X32_SYSCALL_BIT, [0; 6]), EPERM, "x32 read");
        assert_eq!(run(&f, AUDIT_ARCH_X86_64, X32_SYSCALL_BIT | 165, [0; 6]), EPERM, "x32 mount");
        assert_eq!(run(&f, AUDIT_ARCH_X86_64, MAX_KNOWN + 1, [0; 6]), ENOSYS);
        assert_eq!(run(&f, AUDIT_ARCH_X86_64, 0x3fff_ffff, [0; 6]), ENOSYS);
        assert_eq!(run(&f, AUDIT_ARCH_X86_64, 400, [0; 6]), EPERM, "a hole in the table");
    }

    #[test]
    fn capabilities_and_names_relax_the_filter() {
        let ptrace = Policy { caps: 1 << 19, allow: BTreeSet::new() };
        let f = Filter::compile(&ptrace).unwrap();
        assert_eq!(call(&f, "ptrace", [0; 6]), RET_ALLOW);
        assert_eq!(call(&f, "mount", [0; 6]), EPERM);
        let admin = Filter::compile(&Policy { caps: 1 << 21, allow: BTreeSet::new() }).unwrap();
        assert_eq!(call(&admin, "mount", [0; 6]), RET_ALLOW);
        assert_eq!(call(&admin, "clone", [0x1000_0000, 0, 0, 0, 0, 0]), RET_ALLOW);
        assert_eq!(call(&admin, "keyctl", [0; 6]), EPERM, "no capability brings keyctl");
        let named = Policy { caps: 0, allow: ["keyctl".to_string(), "clone3".to_string()].into() };
        let f = Filter::compile(&named).unwrap();
        assert_eq!(call(&f, "keyctl", [0; 6]), RET_ALLOW);
        assert_eq!(call(&f, "clone3", [0; 6]), RET_ALLOW);
        assert_eq!(call(&f, "add_key", [0; 6]), EPERM);
        let bad = Policy { caps: 0, allow: ["no_such_call".to_string()].into() };
        assert_eq!(Filter::compile(&bad), Err(FilterError::Unknown("no_such_call".into())));
    }

    #[test]
    fn the_program_is_short_and_cached() {
        let f = Filter::compile(&Policy::default()).unwrap();
        assert!(f.insns.len() < 1000, "{}", f.insns.len());
        let a = Filter::cached(&Policy::default()).unwrap();
        let b = Filter::cached(&Policy::default()).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(*a, f);
    }
}
