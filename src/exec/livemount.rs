//! A file bound into a running container's mount namespace, or swapped for a new one,
//! without a moment where a reader inside sees partial or empty content.
//!
//! Rendered files are bound one by one onto their container path (read-only), so a
//! rewrite in place of the host file would be seen half-written. Instead the host
//! writes the new content to a new inode (temp file, fsync, rename: the old inode is
//! left intact, and a failed write such as ENOSPC changes nothing), and this module
//! puts that inode in the place of the old one inside the container:
//!
//! 1. the parent clones the new host file as a detached mount
//!    (`open_tree(OPEN_TREE_CLONE)`), made read-only, nosuid and nodev like the
//!    sandbox's binds (`mount_setattr`), and opens the container's mount namespace
//!    and root (`/proc/<pid>/ns/mnt`, `/proc/<pid>/root`) while the caller has just
//!    checked that `pid` is the container's PID 1;
//! 2. a forked child (raw system calls on memory prepared before the fork, see
//!    docs/ARCHITECTURE.md "Threads, forks and the post-fork rules") `setns`es into that
//!    mount namespace, resolves the target's folder from the container's root with
//!    `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS)` (a
//!    symlink the container planted on the way is refused, never followed; with
//!    [`Target::Create`] missing folders and the mount point are made there, as host
//!    root, with `mkdirat`/`openat(O_CREAT | O_EXCL | O_NOFOLLOW)`), then
//! 3. replaces: `move_mount(MOVE_MOUNT_BENEATH)` slides the new mount under the top
//!    one at the target and `umount2(MNT_DETACH | UMOUNT_NOFOLLOW)` takes the old top
//!    away: a lookup sees the old file until the unmount and the new one after it,
//!    and a reader that has the old one open keeps reading it whole. The sandbox's own
//!    first bind is locked (the container's mount namespace belongs to its user
//!    namespace, so the kernel locks every mount it inherited) and can be neither
//!    unmounted nor moved beneath: the first swap mounts on top of it
//!    (`move_mount` alone, as atomic for a lookup), every later swap replaces the
//!    previous swap's mount, so at most two mounts stack at a target. A kernel
//!    without `MOVE_MOUNT_BENEATH` (before 6.5) stacks one mount per swap until the
//!    container stops.
//!
//! The host file is bound from a name that stays linked while it is mounted (the
//! runtime's hard link `.<name>@<inode>`): the kernel mounts nothing on, or beneath,
//! a mount whose file's name was unlinked (ENOENT).
//!
//! The calling process never changes namespace. The child reports one record
//! `(stage u32, errno i32)` over a close-on-exec pipe (stage 0: done, and the second
//! word says whether the old top was unmounted).

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

/// Where the new mount goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Over the file already bound there: swapped (see the module header).
    Replace,
    /// A new mount point: made (with missing folders) if it does not exist. The caller
    /// asks for this only beneath a volume or tmpfs of the container (the root is
    /// read-only); elsewhere the kernel answers `EROFS`.
    Create,
}

#[derive(Debug, thiserror::Error)]
pub enum LiveMountError {
    #[error("{path}: a container path must be absolute and plain (no `.`, `..` or empty parts)")]
    Path { path: String },
    #[error("{what}: {source}")]
    Os { what: String, source: std::io::Error },
}

const OPEN_TREE_CLONE: libc::c_uint = 1;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;
const MOVE_MOUNT_BENEATH: libc::c_uint = 0x200;
const MOUNT_ATTR_RDONLY: u64 = 0x1;
const MOUNT_ATTR_NOSUID: u64 = 0x2;
const MOUNT_ATTR_NODEV: u64 = 0x4;

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

const STAGE_OK: u32 = 0;
const STAGES: [&str; 7] = [
    "done",
    "enter the container's mount namespace",
    "open a folder on the way (a symlink or a missing folder is refused)",
    "create a folder on the way",
    "create the mount point",
    "mount the new file",
    "unmount the old file",
];
const STAGE_SETNS: u32 = 1;
const STAGE_OPEN: u32 = 2;
const STAGE_MKDIR: u32 = 3;
const STAGE_CREATE: u32 = 4;
const STAGE_MOUNT: u32 = 5;
const STAGE_UMOUNT: u32 = 6;

fn os(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> LiveMountError {
    let what = what.into();
    move |source| LiveMountError::Os { what, source }
}

/// The new host file `source` cloned as a detached mount, read-only, nosuid, nodev.
fn detached_file(source: &Path) -> Result<OwnedFd, LiveMountError> {
    let what = || format!("clone {} as a mount", source.display());
    let c = CString::new(source.as_os_str().as_encoded_bytes()).map_err(|e| os(what())(std::io::Error::other(e)))?;
    let flags = OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint | libc::AT_SYMLINK_NOFOLLOW as libc::c_uint;
    // SAFETY: a NUL-terminated path and plain flags; returns a new fd or -1.
    let raw = unsafe { libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, c.as_ptr(), flags) } as libc::c_int;
    if raw < 0 {
        return Err(os(what())(std::io::Error::last_os_error()));
    }
    // SAFETY: open_tree just returned this fd, owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: our fd, "" with AT_EMPTY_PATH names it, attr is a stack struct of the
    // size passed.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if r != 0 {
        return Err(os(format!("make the mount of {} read-only", source.display()))(std::io::Error::last_os_error()));
    }
    Ok(fd)
}

/// The folders on the way to `target` (relative names) and its last name.
fn split(target: &str) -> Result<(Vec<CString>, CString), LiveMountError> {
    let bad = || LiveMountError::Path { path: target.to_string() };
    let rest = target.strip_prefix('/').ok_or_else(bad)?;
    let mut parts: Vec<&str> = rest.split('/').collect();
    if parts.iter().any(|p| p.is_empty() || *p == "." || *p == "..") {
        return Err(bad());
    }
    let last = parts.pop().ok_or_else(bad)?;
    let c = |s: &str| CString::new(s).map_err(|_| bad());
    Ok((parts.into_iter().map(c).collect::<Result<_, _>>()?, c(last)?))
}

/// Bind the host file `source` at `target` inside the running container whose PID 1
/// is `pid` (the caller checked it is, by its start time, just before): see the
/// module header. Returns whether the mount it replaced was unmounted (then nothing
/// holds that mount's file any more); false when it went on top.
pub fn bind_file(pid: i32, source: &Path, target: &str, how: Target) -> Result<bool, LiveMountError> {
    let (dirs, name) = split(target)?;
    let tree = detached_file(source)?;
    let open = |p: String, flags: i32| {
        let c = CString::new(p.clone()).expect("no NUL in a /proc path");
        // SAFETY: a NUL-terminated path; returns a new fd or -1.
        let fd = unsafe { libc::open(c.as_ptr(), flags | libc::O_CLOEXEC) };
        if fd < 0 {
            return Err(os(format!("open {p}"))(std::io::Error::last_os_error()));
        }
        // SAFETY: open just returned this fd.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    };
    let mntns = open(format!("/proc/{pid}/ns/mnt"), libc::O_RDONLY)?;
    let root = open(format!("/proc/{pid}/root"), libc::O_PATH | libc::O_DIRECTORY)?;
    let mut fds = [0 as RawFd; 2];
    // SAFETY: a two-int array for pipe2 to fill.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(os("pipe")(std::io::Error::last_os_error()));
    }
    // SAFETY: pipe2 just returned these two fds, owned by nobody else.
    let (rd, wr) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let job = Job {
        mntns: mntns.as_raw_fd(),
        root: root.as_raw_fd(),
        tree: tree.as_raw_fd(),
        report: wr.as_raw_fd(),
        dirs: &dirs,
        name: &name,
        create: how == Target::Create,
    };
    // SAFETY: the child only makes raw system calls on memory prepared above (the
    // job, its CStrings and fds) and ends with `_exit`.
    let child = unsafe { libc::fork() };
    if child < 0 {
        return Err(os("fork")(std::io::Error::last_os_error()));
    }
    if child == 0 {
        // SAFETY: we are the freshly forked child; see `run_child`.
        unsafe { run_child(&job) }
    }
    drop(wr);
    let mut rec = [0u8; 8];
    let mut got = 0;
    while got < rec.len() {
        // SAFETY: reading into the unfilled tail of a stack buffer.
        let n = unsafe { libc::read(rd.as_raw_fd(), rec[got..].as_mut_ptr().cast(), rec.len() - got) };
        if n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
            continue;
        }
        if n <= 0 {
            break;
        }
        got += n as usize;
    }
    let mut status = 0;
    // SAFETY: reaping the child we forked.
    while unsafe { libc::waitpid(child, &mut status, 0) } < 0
        && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted
    {}
    let what = |stage: u32| format!("{target}: {}", STAGES.get(stage as usize).copied().unwrap_or("the mount helper"));
    if got != rec.len() {
        return Err(os(what(u32::MAX))(std::io::Error::other("the mount helper exited without reporting")));
    }
    let stage = u32::from_ne_bytes([rec[0], rec[1], rec[2], rec[3]]);
    let errno = i32::from_ne_bytes([rec[4], rec[5], rec[6], rec[7]]);
    if stage == STAGE_OK {
        return Ok(errno == 1);
    }
    Err(os(what(stage))(std::io::Error::from_raw_os_error(errno)))
}

/// What the child needs, all made before the fork.
struct Job<'a> {
    mntns: RawFd,
    root: RawFd,
    tree: RawFd,
    report: RawFd,
    dirs: &'a [CString],
    name: &'a CString,
    create: bool,
}

/// The child: never returns.
///
/// # Safety
/// Call only in the child forked by [`bind_file`]: the fds of `job` are open in it
/// and its strings were made before the fork.
unsafe fn run_child(job: &Job) -> ! {
    // SAFETY: single-threaded child of a fork; every call is a raw async-signal-safe
    // system call on fds inherited over the fork, on the job's NUL-terminated
    // strings made before it, and on stack memory; it ends with `_exit`.
    unsafe {
        let report = |stage: u32, errno: i32| {
            let mut rec = [0u8; 8];
            rec[..4].copy_from_slice(&stage.to_ne_bytes());
            rec[4..].copy_from_slice(&errno.to_ne_bytes());
            libc::write(job.report, rec.as_ptr().cast(), rec.len());
        };
        let fail = |stage: u32| -> ! {
            report(stage, *libc::__errno_location());
            libc::_exit(1)
        };
        if libc::setns(job.mntns, libc::CLONE_NEWNS) != 0 {
            fail(STAGE_SETNS);
        }
        let resolve = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS;
        let step = |dir: RawFd, name: &CString| -> libc::c_long {
            let how =
                crate::exec::beneath::open_how((libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC) as u64, 0, resolve);
            libc::syscall(
                libc::SYS_openat2,
                dir,
                name.as_ptr(),
                &how as *const libc::open_how,
                size_of::<libc::open_how>(),
            )
        };
        let mut dir = libc::fcntl(job.root, libc::F_DUPFD_CLOEXEC, 0);
        if dir < 0 {
            fail(STAGE_OPEN);
        }
        for part in job.dirs {
            let mut next = step(dir, part);
            if next < 0 && job.create && *libc::__errno_location() == libc::ENOENT {
                if libc::mkdirat(dir, part.as_ptr(), 0o755) != 0 && *libc::__errno_location() != libc::EEXIST {
                    fail(STAGE_MKDIR);
                }
                next = step(dir, part);
            }
            if next < 0 {
                fail(STAGE_OPEN);
            }
            libc::close(dir);
            dir = next as RawFd;
        }
        if job.create {
            let fd = libc::openat(
                dir,
                job.name.as_ptr(),
                libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                0o444,
            );
            if fd >= 0 {
                libc::close(fd);
            } else if *libc::__errno_location() != libc::EEXIST {
                fail(STAGE_CREATE);
            }
        }
        let mv = |flags: libc::c_uint| {
            libc::syscall(
                libc::SYS_move_mount,
                job.tree,
                c"".as_ptr(),
                dir,
                job.name.as_ptr(),
                MOVE_MOUNT_F_EMPTY_PATH | flags,
            )
        };
        // Beneath the top mount, then the old top goes. A first swap (over the
        // sandbox's locked bind), a new mount point, or an older kernel: on top.
        if !job.create && mv(MOVE_MOUNT_BENEATH) == 0 {
            if libc::fchdir(dir) != 0 || libc::umount2(job.name.as_ptr(), libc::MNT_DETACH | libc::UMOUNT_NOFOLLOW) != 0
            {
                fail(STAGE_UMOUNT);
            }
            report(STAGE_OK, 1);
            libc::_exit(0)
        }
        if mv(0) != 0 {
            fail(STAGE_MOUNT);
        }
        report(STAGE_OK, 0);
        libc::_exit(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_split_into_plain_names() {
        let (dirs, name) = split("/srv/www/index.html").unwrap();
        assert_eq!(dirs, [c"srv".to_owned(), c"www".to_owned()]);
        assert_eq!(name.as_c_str(), c"index.html");
        assert!(split("/x").unwrap().0.is_empty());
        for bad in ["x", "/a/../b", "/a//b", "/a/./b", "/", "/a/"] {
            assert!(split(bad).is_err(), "{bad}");
        }
    }
}
