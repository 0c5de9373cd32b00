//! The code that runs in the cloned child, between `clone3` and `execve`.
//!
//! Invariant: nothing here allocates, locks, panics or touches Rust std state. The
//! parent may be multi-threaded (tests are), and after a raw `clone3` another thread
//! may have held the malloc or stdio lock at the moment of the copy; only raw
//! syscalls on data the parent prepared (`SetupScript`) are safe. Every step reports its
//! failure to the parent as (step index, errno) over the sync socket, then exits.

use libc::{c_char, c_int, c_ulong};
use std::cell::Cell;
use std::ffi::CString;
use std::ptr;

/// Messages child → parent: 9 bytes, `[tag, step u32 LE, errno i32 LE]`.
pub(super) const MSG_LEN: usize = 9;
pub(super) const TAG_READY: u8 = b'R';
pub(super) const TAG_ERROR: u8 = b'E';
/// Parent → child: run the program.
pub(super) const TAG_GO: u8 = b'G';

/// One step of the child's setup; every path and string was built by the parent.
pub(super) enum SetupStep {
    /// Write `0` to a cgroup file the parent opened, moving this process (still
    /// single-threaded) there: a v1 hierarchy's `tasks` (which the kernel does without
    /// the global threadgroup lock that `cgroup.procs` takes), or cgroup2's
    /// `cgroup.procs` (`v2`) — skipped when clone3 already started us in that cgroup
    /// (`SetupScript::into_cgroup`).
    JoinCgroup {
        fd: c_int,
        v2: bool,
    },
    /// `prctl(PR_SET_PDEATHSIG, SIGKILL)`: the child dies with the caller's thread.
    DieWithParent,
    /// `unshare(CLONE_NEWCGROUP)`, after every `JoinCgroup`: the namespace is rooted
    /// at the container's own cgroups.
    UnshareCgroup,
    /// `setns(fd, nstype)`: join a namespace the parent made (the network namespace
    /// owned by the container's user namespace).
    JoinNs {
        fd: c_int,
        nstype: c_int,
    },
    /// Clone the source in `slot` as a detached tree (`open_tree(OPEN_TREE_CLONE |
    /// AT_RECURSIVE)`), set `attr` on every mount of it (`mount_setattr` with
    /// `AT_RECURSIVE`: read-only, nosuid, nodev and, with `idmap`, the container's
    /// id mapping), and attach it at `target` in the new root (`move_mount`).
    BindTree {
        slot: usize,
        target: CString,
        attr: u64,
        idmap: bool,
    },
    /// `mknod` a device node in the root (unless something exists there) and chown
    /// it; done as host root, before entering the user namespace.
    MakeNode {
        file: InRoot,
        mode: libc::mode_t,
        dev: libc::dev_t,
        uid: libc::uid_t,
        gid: libc::gid_t,
    },
    /// Make the mount at the container path `path` and all its submounts read-only
    /// (`mount_setattr(AT_RECURSIVE)`), after binding it onto itself.
    ReadOnlyTree {
        path: CString,
    },
    /// Enter the container's user namespace as its root, then copy the mount
    /// namespace into one it owns: the kernel locks every mount we made (flags,
    /// and submounts against umount) against the container's root.
    EnterUserNs,
    /// Open the host path `path` as `O_PATH` into source slot `slot`. Done first in
    /// the child: an fd opened in the parent belongs to the parent's mount namespace
    /// and the kernel refuses to bind from it.
    OpenSource {
        slot: usize,
        path: CString,
    },
    /// Like `OpenSource`, for a source the container owns (a volume): `base` is opened
    /// by its path (host root's), then `path` (plain names) beneath it with
    /// `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS)`, so a
    /// symlink anywhere on the way or as the last name fails (`ELOOP`), never
    /// followed, whenever it was planted. `dir`: it must be a folder.
    OpenSourceBeneath {
        slot: usize,
        base: CString,
        path: CString,
        dir: bool,
    },
    /// `mount(2)`; `target` is absolute, or relative to the new root when `in_root`
    /// (resolved with `RESOLVE_IN_ROOT`, so a symlink in the root stays inside it).
    Mount {
        src: MountSrc,
        target: CString,
        in_root: bool,
        fstype: Option<CString>,
        flags: c_ulong,
        data: Option<CString>,
    },
    /// Detach (`MNT_DETACH`) the mount at `target` in the new root and everything
    /// below it. Done where the host's mounts came along with a recursive bind; a
    /// missing one, or one locked by a user namespace (`EINVAL`), is left as it is.
    Detach {
        target: CString,
    },
    /// Open `path` as the new root (O_PATH); later in-root steps and `Pivot` use it.
    OpenRoot {
        path: CString,
    },
    /// `mkdirat(root, name)` for one component of our own root skeleton.
    MkdirInRoot {
        name: CString,
        mode: libc::mode_t,
    },
    /// Switch the root: `pivot_root(".", ".")` in the new root, detach the old.
    Pivot,
    /// `mkdir -p` in the root: each (path, parent, name) in order; existing is fine.
    EnsureDir {
        prefixes: Vec<InRoot>,
    },
    /// Create an empty file in the root unless something exists there.
    EnsureFile {
        file: InRoot,
    },
    /// A symlink `name` in the root folder `parent` (relative), pointing at `target`.
    Symlink {
        target: CString,
        file: InRoot,
    },
    /// Bind-remount a container path read-only, nosuid and nodev, keeping the
    /// mount's other flags (locked in a user namespace): for the root, so a file capability or setuid bit in a layer grants nothing (and an
    /// exec of a capability-marked file such as ping does not fail for want of a
    /// capability outside the bounding set).
    RemountRoNoSuid {
        target: CString,
    },
    /// runc's masked path: /dev/null over a file, a read-only tmpfs over a dir.
    Mask {
        path: CString,
    },
    Hostname {
        name: CString,
    },
    /// Give PID 1 a new, empty session keyring (the caller's keys stay out of reach).
    JoinSessionKeyring,
    /// PID 1's capabilities and seccomp filter (see `exec::harden`).
    Harden(crate::exec::harden::Hardening),
    /// Send `TAG_READY`, wait for `TAG_GO`.
    WaitGo,
    /// The last step: exec the program.
    Exec(ExecTarget),
}

pub(super) enum MountSrc {
    None,
    Str(CString),
    /// A source slot, mounted as `/proc/self/fd/N`.
    Slot(usize),
}

/// A path relative to the new root, split for `*at` calls.
pub(super) struct InRoot {
    pub path: CString,
    pub parent: CString,
    pub name: CString,
}

pub(super) enum ExecTarget {
    Path {
        path: CString,
    },
    /// `execveat(fd, "", …, AT_EMPTY_PATH)`: the sealed memfd copy of ourselves.
    Fd {
        fd: c_int,
    },
}

/// What the child carries out; built by the parent before `clone3`.
pub(super) struct SetupScript {
    pub ops: Vec<SetupStep>,
    /// NULL-terminated argv and envp (pointers into `argv_store`/`env_store`).
    pub argv: Vec<*const c_char>,
    pub envp: Vec<*const c_char>,
    /// Fds of `OpenSource`, one per slot (-1 until opened).
    pub slots: Vec<Cell<c_int>>,
    /// Fds to dup onto 0, 1, 2 (already ≥ 3, so no dup clobbers another).
    pub stdio: [c_int; 3],
    /// Fds to put at `PASSED_FD + i` (3, 4, 5) for the program (-1: none there);
    /// each already ≥ 10, so no dup2 onto 3..=5 clobbers another.
    pub passed: [c_int; super::PASSED_MAX],
    /// Set by the parent before each clone3 attempt: whether it passes
    /// `CLONE_INTO_CGROUP` (then the cgroup2 `JoinCgroup` is already done).
    pub into_cgroup: Cell<bool>,
    /// The container's user namespace (-1: none; the container's root is host root).
    pub userns: c_int,
    /// Host uid and gid of the container's root: what folders and files we create
    /// in the new root are chowned to (-1: leave them to host root).
    pub root_ids: (c_int, c_int),
}

fn errno() -> c_int {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO)
}

fn send(sock: c_int, tag: u8, step: u32, err: c_int) {
    let mut msg = [0u8; MSG_LEN];
    msg[0] = tag;
    msg[1..5].copy_from_slice(&step.to_le_bytes());
    msg[5..9].copy_from_slice(&err.to_le_bytes());
    // SAFETY: plain write of a stack buffer; a failure only means the parent is gone.
    unsafe {
        libc::send(sock, msg.as_ptr().cast(), MSG_LEN, libc::MSG_NOSIGNAL);
    }
}

/// Read one byte from the parent; `None` on EOF or error (the parent gave up).
fn recv_byte(sock: c_int) -> Option<u8> {
    let mut b = 0u8;
    loop {
        // SAFETY: reads one byte into a stack variable.
        let n = unsafe { libc::read(sock, (&mut b as *mut u8).cast(), 1) };
        if n == 1 {
            return Some(b);
        }
        if n < 0 && errno() == libc::EINTR {
            continue;
        }
        return None;
    }
}

/// "/proc/self/fd/N" into a stack buffer, NUL-terminated.
fn fd_path(fd: c_int, buf: &mut [u8; 32]) -> *const c_char {
    const PREFIX: &[u8] = b"/proc/self/fd/";
    buf[..PREFIX.len()].copy_from_slice(PREFIX);
    let mut digits = [0u8; 12];
    let mut n = fd.unsigned_abs();
    let mut len = 0;
    loop {
        digits[len] = b'0' + (n % 10) as u8;
        len += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let mut pos = PREFIX.len();
    while len > 0 {
        len -= 1;
        buf[pos] = digits[len];
        pos += 1;
    }
    buf[pos] = 0;
    buf.as_ptr().cast()
}

/// `openat2(root, path, O_PATH, RESOLVE_IN_ROOT)`: resolve as if `root` were "/".
fn open_in_root(root: c_int, path: &CString, extra: c_int) -> Result<c_int, c_int> {
    let how = crate::exec::beneath::open_how(
        (libc::O_PATH | libc::O_CLOEXEC | extra) as u64,
        0,
        libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS,
    );
    // SAFETY: valid pointers to a NUL-terminated path and a stack struct.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            root,
            path.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    } as c_int;
    if fd < 0 {
        Err(errno())
    } else {
        Ok(fd)
    }
}

/// `openat2(base, path, O_PATH, RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
/// RESOLVE_NO_MAGICLINKS)` from the host folder `base` (opened by its path), retried
/// while a rename elsewhere on the system makes the lookup answer `EAGAIN`.
fn open_source_beneath(base: &CString, path: &CString, dir: bool) -> Result<c_int, c_int> {
    // SAFETY: a NUL-terminated path; the fd is closed below.
    let at = unsafe { libc::open(base.as_ptr(), libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC) };
    if at < 0 {
        return Err(errno());
    }
    let flags = libc::O_PATH | libc::O_CLOEXEC | if dir { libc::O_DIRECTORY } else { 0 };
    let how = crate::exec::beneath::open_how(
        flags as u64,
        0,
        libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS,
    );
    let mut r = Err(libc::EAGAIN);
    for _ in 0..64 {
        // SAFETY: valid pointers to a NUL-terminated path and a stack struct.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                at,
                path.as_ptr(),
                &how as *const libc::open_how,
                std::mem::size_of::<libc::open_how>(),
            )
        } as c_int;
        r = if fd < 0 { Err(errno()) } else { Ok(fd) };
        if !matches!(r, Err(libc::EAGAIN) | Err(libc::EINTR)) {
            break;
        }
    }
    // SAFETY: closing the fd opened above.
    unsafe { libc::close(at) };
    r
}

/// Make sure something exists at `p` in the root; create it with `create` in its
/// parent (a plain name, so no symlink is followed there).
fn ensure_in_root(root: c_int, p: &InRoot, create: impl Fn(c_int, *const c_char) -> c_int) -> Result<(), c_int> {
    match open_in_root(root, &p.path, 0) {
        Ok(fd) => {
            // SAFETY: closing an fd we just opened.
            unsafe { libc::close(fd) };
            Ok(())
        }
        Err(libc::ENOENT) => {
            let dir = open_in_root(root, &p.parent, libc::O_DIRECTORY)?;
            let r = create(dir, p.name.as_ptr());
            let e = errno();
            // SAFETY: closing an fd we just opened.
            unsafe { libc::close(dir) };
            match r {
                r if r >= 0 => Ok(()),
                _ if e == libc::EEXIST => Ok(()),
                _ => Err(e),
            }
        }
        Err(e) => Err(e),
    }
}

fn opt_ptr(s: &Option<CString>) -> *const c_char {
    s.as_ref().map_or(ptr::null(), |c| c.as_ptr())
}

/// The per-mount flags to keep on a read-only remount (from statfs' f_flags).
fn kept_flags(target: *const c_char) -> Result<c_ulong, c_int> {
    // SAFETY: statvfs fills a zeroed stack struct (glibc takes the flags from
    // statfs' f_flags; no allocation).
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `target` is a NUL-terminated path from the script (the caller's) and
    // `st` a live stack struct statvfs only writes.
    if unsafe { libc::statvfs(target, &mut st) } != 0 {
        return Err(errno());
    }
    let f = st.f_flag as c_ulong;
    let mut out = 0;
    for (st_bit, ms_bit) in [
        (libc::ST_NOSUID, libc::MS_NOSUID),
        (libc::ST_NODEV, libc::MS_NODEV),
        (libc::ST_NOEXEC, libc::MS_NOEXEC),
        (libc::ST_NOATIME, libc::MS_NOATIME),
        (libc::ST_NODIRATIME, libc::MS_NODIRATIME),
        (libc::ST_RELATIME, libc::MS_RELATIME),
    ] {
        if f & st_bit != 0 {
            out |= ms_bit;
        }
    }
    if f & (libc::ST_NOATIME | libc::ST_RELATIME) == 0 {
        out |= libc::MS_STRICTATIME;
    }
    Ok(out)
}

fn remount_ro_with(target: *const c_char, extra: c_ulong) -> Result<(), c_int> {
    let keep = kept_flags(target)?;
    let flags = libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | keep | extra;
    // SAFETY: all pointers are NUL-terminated strings or NULL.
    if unsafe { libc::mount(ptr::null(), target, ptr::null(), flags, ptr::null()) } != 0 {
        return Err(errno());
    }
    Ok(())
}

fn sys(ret: c_int) -> Result<(), c_int> {
    if ret < 0 {
        Err(errno())
    } else {
        Ok(())
    }
}

/// Is there anything at `path` (following symlinks)? Err on other errors.
fn exists(path: *const c_char) -> Result<Option<libc::mode_t>, c_int> {
    // SAFETY: stat fills a zeroed stack struct.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is a NUL-terminated path built by the parent and `st` a live
    // stack struct stat only writes.
    if unsafe { libc::stat(path, &mut st) } == 0 {
        return Ok(Some(st.st_mode));
    }
    match errno() {
        libc::ENOENT => Ok(None),
        e => Err(e),
    }
}

const OPEN_TREE_CLONE: u32 = 1;
const MOVE_MOUNT_F_EMPTY_PATH: u32 = 0x4;
const MOVE_MOUNT_T_EMPTY_PATH: u32 = 0x40;
pub(super) const MOUNT_ATTR_RDONLY: u64 = 0x1;
pub(super) const MOUNT_ATTR_NOSUID: u64 = 0x2;
pub(super) const MOUNT_ATTR_NODEV: u64 = 0x4;
pub(super) const MOUNT_ATTR_NOEXEC: u64 = 0x8;
const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;

/// `struct mount_attr` of `mount_setattr(2)` (version 0, 32 bytes).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// `mount_setattr(dfd, path, flags | AT_RECURSIVE)` setting `attr` (plus the id
/// mapping of the user namespace `userns` when it is ≥ 0).
///
/// # Safety
/// `path` must be a NUL-terminated string; `dfd` and `userns` (when ≥ 0) fds of
/// this process.
unsafe fn set_attr(dfd: c_int, path: *const c_char, flags: c_int, attr: u64, userns: c_int) -> Result<(), c_int> {
    // SAFETY: `a` is a live stack `struct mount_attr` (version 0, its size passed
    // along) that the kernel only reads; `path` is NUL-terminated and `dfd`/`userns`
    // are fds of ours (this fn's contract). One raw syscall: fine in the cloned child.
    unsafe {
        let a = MountAttr {
            attr_set: attr | if userns >= 0 { MOUNT_ATTR_IDMAP } else { 0 },
            attr_clr: 0,
            propagation: 0,
            userns_fd: if userns >= 0 { userns as u64 } else { 0 },
        };
        let r = libc::syscall(
            libc::SYS_mount_setattr,
            dfd,
            path,
            flags | libc::AT_RECURSIVE,
            &a as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        );
        sys(r as c_int)
    }
}

/// Set `attr` on the detached `tree` and attach it at `target` (in the root `root`).
///
/// # Safety
/// `tree` must be a detached mount fd (open_tree) and `root` a directory fd, both
/// of this process; `userns` as in [`set_attr`].
unsafe fn attach_tree(tree: c_int, root: c_int, target: &CString, attr: u64, userns: c_int) -> Result<(), c_int> {
    // SAFETY: `tree` and `root` are fds of ours (contract); the empty paths are static
    // C strings, so set_attr and move_mount get valid NUL-terminated pointers; `to` is
    // the fd open_in_root just opened and we close it once. Raw syscalls only, fine in
    // the cloned child.
    unsafe {
        set_attr(tree, c"".as_ptr(), libc::AT_EMPTY_PATH, attr, userns)?;
        let to = open_in_root(root, target, 0)?;
        let fl = MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH;
        let r = libc::syscall(libc::SYS_move_mount, tree, c"".as_ptr(), to, c"".as_ptr(), fl) as c_int;
        let e = errno();
        libc::close(to);
        if r < 0 {
            return Err(e);
        }
        Ok(())
    }
}

/// Chown what we just created (`name` in the folder `dir`) to the container's root,
/// so that it is not "nobody" inside (no-op without a user namespace).
///
/// # Safety
/// `dir` must be a directory fd of this process and `name` a NUL-terminated name.
unsafe fn give_to_root(dir: c_int, name: *const c_char, script: &SetupScript) -> Result<(), c_int> {
    // SAFETY: one raw fchownat on `dir` (an fd of ours) and the NUL-terminated `name`
    // (contract); AT_SYMLINK_NOFOLLOW keeps it on the entry we created.
    unsafe {
        let (uid, gid) = script.root_ids;
        if uid < 0 {
            return Ok(());
        }
        sys(libc::fchownat(dir, name, uid as libc::uid_t, gid as libc::gid_t, libc::AT_SYMLINK_NOFOLLOW))
    }
}

struct SetupState {
    sock: c_int,
    root: c_int,
}

fn step(op: &SetupStep, st: &mut SetupState, script: &SetupScript) -> Result<(), c_int> {
    // SAFETY: (whole function) raw syscalls on NUL-terminated strings owned by the
    // script, stack buffers, and fds this process owns.
    unsafe {
        match op {
            SetupStep::JoinCgroup { fd, v2 } => {
                if *v2 && script.into_cgroup.get() {
                    return Ok(());
                }
                let n = libc::write(*fd, b"0".as_ptr().cast(), 1);
                if n != 1 {
                    return Err(if n < 0 { errno() } else { libc::EIO });
                }
                Ok(())
            }
            SetupStep::DieWithParent => sys(libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as c_ulong, 0, 0, 0)),
            SetupStep::UnshareCgroup => sys(libc::unshare(libc::CLONE_NEWCGROUP)),
            SetupStep::JoinNs { fd, nstype } => sys(libc::setns(*fd, *nstype)),
            SetupStep::BindTree { slot, target, attr, idmap } => {
                let src = match script.slots.get(*slot) {
                    Some(fd) if fd.get() >= 0 => fd.get(),
                    _ => return Err(libc::EBADF),
                };
                let fl =
                    OPEN_TREE_CLONE | libc::AT_RECURSIVE as u32 | libc::AT_EMPTY_PATH as u32 | libc::O_CLOEXEC as u32;
                let tree = libc::syscall(libc::SYS_open_tree, src, c"".as_ptr(), fl) as c_int;
                sys(tree)?;
                let r = attach_tree(tree, st.root, target, *attr, if *idmap { script.userns } else { -1 });
                libc::close(tree);
                r
            }
            SetupStep::MakeNode { file, mode, dev, uid, gid } => ensure_in_root(st.root, file, |dir, name| {
                let r = libc::mknodat(dir, name, *mode, *dev);
                if r == 0 {
                    // mknod applies the umask: set the host node's permissions.
                    if libc::fchownat(dir, name, *uid, *gid, libc::AT_SYMLINK_NOFOLLOW) != 0 {
                        return -1;
                    }
                    let fd = libc::openat(dir, name, libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC);
                    if fd < 0 {
                        return -1;
                    }
                    let mut buf = [0u8; 32];
                    let r = libc::chmod(fd_path(fd, &mut buf), *mode & 0o7777);
                    libc::close(fd);
                    return r;
                }
                r
            }),
            SetupStep::ReadOnlyTree { path } => {
                if exists(path.as_ptr())?.is_none() {
                    return Ok(());
                }
                sys(libc::mount(path.as_ptr(), path.as_ptr(), ptr::null(), libc::MS_BIND | libc::MS_REC, ptr::null()))?;
                let attr = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC;
                set_attr(libc::AT_FDCWD, path.as_ptr(), 0, attr, -1)
            }
            SetupStep::EnterUserNs => {
                sys(libc::setns(script.userns, libc::CLONE_NEWUSER))?;
                // Raw syscalls, not glibc's wrappers: glibc applies id changes to every
                // thread of the process (setxid broadcast) and can wait on a futex for
                // a thread that existed in the parent at clone time but not here.
                sys(libc::syscall(libc::SYS_setgroups, 0, ptr::null::<libc::gid_t>()) as c_int)?;
                sys(libc::syscall(libc::SYS_setresgid, 0, 0, 0) as c_int)?;
                sys(libc::syscall(libc::SYS_setresuid, 0, 0, 0) as c_int)?;
                sys(libc::unshare(libc::CLONE_NEWNS))
            }
            SetupStep::Mount { src, target, in_root, fstype, flags, data } => {
                let mut sbuf = [0u8; 32];
                let s = match src {
                    MountSrc::None => ptr::null(),
                    MountSrc::Str(c) => c.as_ptr(),
                    MountSrc::Slot(i) => match script.slots.get(*i) {
                        Some(fd) if fd.get() >= 0 => fd_path(fd.get(), &mut sbuf),
                        _ => return Err(libc::EBADF),
                    },
                };
                let mut buf = [0u8; 32];
                let (fd, t) = if *in_root {
                    let fd = open_in_root(st.root, target, 0)?;
                    (fd, fd_path(fd, &mut buf))
                } else {
                    (-1, target.as_ptr())
                };
                let r = sys(libc::mount(s, t, opt_ptr(fstype), *flags, opt_ptr(data).cast()));
                if fd >= 0 {
                    libc::close(fd);
                }
                r
            }
            SetupStep::Detach { target } => {
                let fd = match open_in_root(st.root, target, 0) {
                    Err(libc::ENOENT) => return Ok(()),
                    r => r?,
                };
                let mut buf = [0u8; 32];
                let r = sys(libc::umount2(fd_path(fd, &mut buf), libc::MNT_DETACH));
                libc::close(fd);
                match r {
                    Err(libc::EINVAL) => Ok(()),
                    r => r,
                }
            }
            SetupStep::OpenSource { slot, path } => {
                let fd = libc::open(path.as_ptr(), libc::O_PATH | libc::O_CLOEXEC);
                sys(fd)?;
                match script.slots.get(*slot) {
                    Some(c) => c.set(fd),
                    None => return Err(libc::EBADF),
                }
                Ok(())
            }
            SetupStep::OpenSourceBeneath { slot, base, path, dir } => {
                let fd = open_source_beneath(base, path, *dir)?;
                match script.slots.get(*slot) {
                    Some(c) => c.set(fd),
                    None => {
                        libc::close(fd);
                        return Err(libc::EBADF);
                    }
                }
                Ok(())
            }
            SetupStep::OpenRoot { path } => {
                let fd = libc::open(path.as_ptr(), libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC);
                sys(fd)?;
                if st.root >= 0 {
                    libc::close(st.root);
                }
                st.root = fd;
                Ok(())
            }
            SetupStep::MkdirInRoot { name, mode } => match sys(libc::mkdirat(st.root, name.as_ptr(), *mode)) {
                Err(libc::EEXIST) => Ok(()),
                Err(e) => Err(e),
                Ok(()) => give_to_root(st.root, name.as_ptr(), script),
            },
            SetupStep::Pivot => {
                sys(libc::fchdir(st.root))?;
                // pivot_root(".", ".") stacks the old root on top of the new one, so
                // no put_old directory is needed (the new root may be read-only).
                let dot = c".".as_ptr();
                sys(libc::syscall(libc::SYS_pivot_root, dot, dot) as c_int)?;
                sys(libc::umount2(dot, libc::MNT_DETACH))?;
                sys(libc::chdir(c"/".as_ptr()))?;
                libc::close(st.root);
                st.root = -1;
                Ok(())
            }
            SetupStep::EnsureDir { prefixes } => {
                for p in prefixes {
                    ensure_in_root(st.root, p, |dir, name| {
                        let r = libc::mkdirat(dir, name, 0o755);
                        if r == 0 && give_to_root(dir, name, script).is_err() {
                            return -1;
                        }
                        r
                    })?;
                }
                Ok(())
            }
            SetupStep::EnsureFile { file } => ensure_in_root(st.root, file, |dir, name| {
                let fd = libc::openat(
                    dir,
                    name,
                    libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY | libc::O_CLOEXEC | libc::O_NOFOLLOW,
                    0o644,
                );
                if fd >= 0 {
                    libc::close(fd);
                    if give_to_root(dir, name, script).is_err() {
                        return -1;
                    }
                }
                fd
            }),
            SetupStep::Symlink { target, file } => {
                ensure_in_root(st.root, file, |dir, name| libc::symlinkat(target.as_ptr(), dir, name))
            }
            SetupStep::RemountRoNoSuid { target } => remount_ro_with(target.as_ptr(), libc::MS_NOSUID | libc::MS_NODEV),
            SetupStep::Mask { path } => match exists(path.as_ptr())? {
                None => Ok(()),
                Some(mode) if mode & libc::S_IFMT == libc::S_IFDIR => sys(libc::mount(
                    c"tmpfs".as_ptr(),
                    path.as_ptr(),
                    c"tmpfs".as_ptr(),
                    libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                    ptr::null(),
                )),
                Some(_) => {
                    sys(libc::mount(c"/dev/null".as_ptr(), path.as_ptr(), ptr::null(), libc::MS_BIND, ptr::null()))
                }
            },
            SetupStep::Hostname { name } => sys(libc::sethostname(name.as_ptr(), name.as_bytes().len())),
            SetupStep::JoinSessionKeyring => crate::exec::harden::join_new_session_keyring(),
            SetupStep::Harden(h) => {
                // No uid switch for PID 1: both halves at once. The filter allows
                // what is left to do (the release handshake, dup2, execveat).
                h.before_setuid().map_err(|(_, e)| e)?;
                h.before_exec().map_err(|(_, e)| e)
            }
            SetupStep::WaitGo => {
                send(st.sock, TAG_READY, 0, 0);
                if recv_byte(st.sock) != Some(TAG_GO) {
                    // The parent dropped the pending container: leave quietly.
                    libc::_exit(0);
                }
                Ok(())
            }
            SetupStep::Exec(target) => {
                let mut exe = match target {
                    ExecTarget::Fd { fd } => *fd,
                    ExecTarget::Path { .. } => -1,
                };
                prepare_exec(script, st, &mut exe)?;
                match target {
                    ExecTarget::Path { path } => {
                        libc::execve(path.as_ptr(), script.argv.as_ptr(), script.envp.as_ptr());
                    }
                    ExecTarget::Fd { .. } => {
                        libc::execveat(
                            exe,
                            c"".as_ptr(),
                            script.argv.as_ptr().cast(),
                            script.envp.as_ptr().cast(),
                            libc::AT_EMPTY_PATH,
                        );
                    }
                }
                Err(errno())
            }
        }
    }
}

/// Stdio, signals and fds as the program must find them. `exe` is the fd the exec
/// goes through (-1: by path); it and `st.sock` are moved off the fds the passed
/// ones go to.
///
/// # Safety
/// Only in the cloned child right before exec: it rewires fds 0-5 and resets the
/// process's signal dispositions and mask.
unsafe fn prepare_exec(script: &SetupScript, st: &mut SetupState, exe: &mut c_int) -> Result<(), c_int> {
    const PASSED: c_int = super::PASSED_FD;
    // SAFETY: we are the single-threaded cloned child right before exec (contract).
    // dup2 and fcntl are async-signal-safe and the fds were opened by the parent for
    // us; the postfork resets are meant for exactly this point (their contract).
    unsafe {
        // The highest fd the program gets (none: 2).
        let top = script.passed.iter().rposition(|&fd| fd >= 0).map_or(2, |i| PASSED + i as c_int);
        // Fds 3..=top may hold the program's fd or our sync socket: both must
        // survive until the exec, so give them another number first (still
        // close-on-exec).
        for fd in [&mut *exe, &mut st.sock] {
            if (PASSED..=top).contains(fd) {
                let moved = libc::fcntl(*fd, libc::F_DUPFD_CLOEXEC, top + 1);
                sys(moved)?;
                *fd = moved;
            }
        }
        for (target, &fd) in script.stdio.iter().enumerate() {
            if fd >= 0 {
                sys(libc::dup2(fd, target as c_int))?;
            }
        }
        // Every inherited fd above 2 (our sync socket, the memfd, anything the caller
        // leaked without O_CLOEXEC) closes at exec, so the program sees only 0, 1, 2
        // (and the passed fds from 3).
        crate::exec::postfork::cloexec_above_stdio();
        for (i, &fd) in script.passed.iter().enumerate() {
            if fd >= 0 {
                // dup2's new fd is not close-on-exec.
                sys(libc::dup2(fd, PASSED + i as c_int))?;
            }
        }
        // The executor (a Rust program) ignores SIGPIPE and may block signals; exec keeps
        // both, so reset them like std::process::Command does.
        crate::exec::postfork::reset_signals();
        Ok(())
    }
}

/// Entry point after `clone3` returned 0. Never returns.
pub(super) fn run(script: &SetupScript, sock: c_int) -> ! {
    let mut st = SetupState { sock, root: -1 };
    for (i, op) in script.ops.iter().enumerate() {
        if let Err(e) = step(op, &mut st, script) {
            // `st.sock`: the exec step may have moved the socket off fd 3.
            send(st.sock, TAG_ERROR, i as u32, e);
            // SAFETY: _exit skips atexit handlers and Rust destructors, which belong
            // to the parent's copy of the process state.
            unsafe { libc::_exit(127) };
        }
    }
    // The script always ends with Exec, which only comes back on failure (handled
    // above); this is unreachable but must not unwind.
    // SAFETY: as above: _exit leaves the parent's copied process state untouched.
    unsafe { libc::_exit(127) }
}
