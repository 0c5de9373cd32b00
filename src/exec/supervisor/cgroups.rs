//! One cgroup2 child per service, below the container's own cgroup, so that stop and
//! restart end every process of a service, double-forked daemons included.
//!
//! Invariant: the supervisor never mounts a cgroupfs (the container sees its own
//! read-only): it works only through the directory fd of the container's cgroup2
//! cgroup that the host passes PID 1 at [`CGROUP_FD`] ([`adopt`]), which the host
//! delegated to the container's root (the folder and its `cgroup.procs` chowned, as
//! systemd's `Delegate=yes` does; no controller is ever enabled in its
//! `cgroup.subtree_control`, so PID 1 may stay in it beside the children). Each
//! service gets `svc-<name>`, created on its first start; its process is born there
//! (clone3 with `CLONE_INTO_CGROUP`, so no migration and no RCU grace period to wait
//! for), or, where clone3 is refused, the forked child moves itself there (writes
//! `0` to its `cgroup.procs`) before it execs: nothing it forks is ever outside.
//! [`kill`] writes `1` to `cgroup.kill` (Linux 5.14) and waits, bounded, until
//! `cgroup.events` says `populated 0`. Without the fd (no cgroup2, or an older
//! host), every call is a no-op and the supervisor signals process groups only.

use nix::errno::Errno;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The fd at which PID 1 finds the directory of its cgroup2 cgroup, when the host
/// passes one (right after the config at 3).
pub const CGROUP_FD: RawFd = 4;

/// CGROUP2_SUPER_MAGIC.
const CGROUP2_MAGIC: libc::__fsword_t = 0x6367_7270;

static ROOT: OnceLock<OwnedFd> = OnceLock::new();

/// Takes fd [`CGROUP_FD`] as the container's cgroup2 folder when it is one (a
/// directory on a cgroup2 filesystem); anything else there is left alone.
pub fn adopt() {
    // SAFETY: fstatfs/fstat into zeroed structs on a plain integer fd.
    unsafe {
        let mut sfs: libc::statfs = std::mem::zeroed();
        if libc::fstatfs(CGROUP_FD, &mut sfs) != 0 || sfs.f_type != CGROUP2_MAGIC {
            return;
        }
        let mut st: libc::stat = std::mem::zeroed();
        if libc::fstat(CGROUP_FD, &mut st) != 0 || st.st_mode & libc::S_IFMT != libc::S_IFDIR {
            return;
        }
        if libc::fcntl(CGROUP_FD, libc::F_SETFD, libc::FD_CLOEXEC) != 0 {
            return;
        }
        // SAFETY: the fd is open (checked above) and handed to us to own.
        let _ = ROOT.set(OwnedFd::from_raw_fd(CGROUP_FD));
    }
}

/// Whether services get cgroups of their own.
pub fn enabled() -> bool {
    ROOT.get().is_some()
}

fn dir_name(service: &str) -> Option<std::ffi::CString> {
    if service.is_empty() || service.contains('/') || service.starts_with('.') {
        return None;
    }
    std::ffi::CString::new(format!("svc-{service}")).ok()
}

/// The folder `svc-<service>`, made first when `create`; and whether this call made
/// it.
fn open_dir(service: &str, create: bool) -> Option<(OwnedFd, bool)> {
    let root = ROOT.get()?;
    let name = dir_name(service)?;
    // SAFETY: *at calls on our directory fd with a NUL-terminated name; the fd
    // returned is fresh and owned here.
    unsafe {
        let made = create && libc::mkdirat(root.as_raw_fd(), name.as_ptr(), 0o755) == 0;
        if create && !made && Errno::last() != Errno::EEXIST {
            return None;
        }
        let dir = libc::openat(root.as_raw_fd(), name.as_ptr(), libc::O_DIRECTORY | libc::O_CLOEXEC | libc::O_NOFOLLOW);
        (dir >= 0).then(|| (OwnedFd::from_raw_fd(dir), made))
    }
}

/// Removes the (empty) folder `svc-<service>`; a failure leaves it, harmlessly.
fn remove_dir(service: &str) {
    let (Some(root), Some(name)) = (ROOT.get(), dir_name(service)) else { return };
    // SAFETY: unlinkat on our directory fd with a NUL-terminated name.
    unsafe { libc::unlinkat(root.as_raw_fd(), name.as_ptr(), libc::AT_REMOVEDIR) };
}

/// Opens `file` in the folder `dir` with `flags`.
fn open_in(dir: &OwnedFd, file: &std::ffi::CStr, flags: libc::c_int) -> Option<OwnedFd> {
    // SAFETY: openat on our directory fd with a NUL-terminated name; the fd returned
    // is fresh and owned here.
    unsafe {
        let fd = libc::openat(dir.as_raw_fd(), file.as_ptr(), flags | libc::O_CLOEXEC | libc::O_NOFOLLOW);
        (fd >= 0).then(|| OwnedFd::from_raw_fd(fd))
    }
}

/// Opens `svc-<service>/<file>` with `flags`, creating the folder when `create`.
fn open(service: &str, file: &std::ffi::CStr, flags: libc::c_int, create: bool) -> Option<OwnedFd> {
    open_in(&open_dir(service, create)?.0, file, flags)
}

/// A service's cgroup as its spawner needs it: the folder, for clone3's
/// `CLONE_INTO_CGROUP` (the child is born there: no migration), and its
/// `cgroup.procs` open for writing, for a child that could not be (it writes `0`
/// there to move itself in).
#[derive(Debug)]
pub struct ServiceCgroup {
    /// Only for a folder made for this start. Linux 6.18 (seen here; the likely
    /// cause is the `cgroup.kill` sequence count a clone compares with its
    /// parent's cgroup's) SIGKILLs a child born with `CLONE_INTO_CGROUP` in a
    /// cgroup that `cgroup.kill` once ended; [`kill`] therefore removes the emptied
    /// folder, and one it could not remove is joined by the fork-and-write path
    /// only (tests/orphans.rs restarts services ten times).
    pub dir: Option<OwnedFd>,
    pub procs: OwnedFd,
}

/// `service`'s cgroup (made if missing). `None` without cgroups.
pub fn service(service: &str) -> Option<ServiceCgroup> {
    let (dir, made) = open_dir(service, true)?;
    let procs = open_in(&dir, c"cgroup.procs", libc::O_WRONLY)?;
    Some(ServiceCgroup { dir: made.then_some(dir), procs })
}

/// Whether any process is left in `service`'s cgroup (`false` when there is none).
pub fn populated(service: &str) -> bool {
    let Some(fd) = open(service, c"cgroup.events", libc::O_RDONLY, false) else { return false };
    let mut buf = [0u8; 256];
    let n = loop {
        // SAFETY: read into a live stack buffer from our fd.
        let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 && Errno::last() == Errno::EINTR {
            continue;
        }
        break n;
    };
    if n <= 0 {
        return false;
    }
    String::from_utf8_lossy(&buf[..n as usize]).lines().any(|l| l.trim() == "populated 1")
}

/// Ends every process in `service`'s cgroup (`cgroup.kill`) and waits up to
/// `limit` for it to be empty. A process leaves the cgroup when it exits, before it
/// is reaped (the main loop reaps it later, as any child). True when the cgroup is
/// empty (or there are no cgroups); the emptied folder is removed then, so the
/// next start makes a fresh one (see [`ServiceCgroup::dir`]).
pub fn kill(service: &str, limit: Duration) -> bool {
    if !enabled() {
        return true;
    }
    if !populated(service) {
        remove_dir(service);
        return true;
    }
    if let Some(fd) = open(service, c"cgroup.kill", libc::O_WRONLY, false) {
        // SAFETY: a one-byte write from a static buffer to our fd.
        unsafe { libc::write(fd.as_raw_fd(), b"1".as_ptr().cast(), 1) };
    }
    let deadline = Instant::now() + limit;
    let mut pause = Duration::from_millis(1);
    loop {
        if !populated(service) {
            remove_dir(service);
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}
