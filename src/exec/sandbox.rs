//! Sandbox: start one program as PID 1 of a new container.
//!
//! Invariant: `spawn` either returns a [`Pending`] child that has finished its whole
//! setup (namespaces, root, /proc, /sys, /dev, masks, mounts, hostname, a new
//! session keyring, its capabilities and seccomp filter) and is
//! blocked before `exec`, or an error naming the step that failed, with the child
//! already reaped. Nothing is ever mounted in the caller's mount namespace: every
//! mount happens in the child's private namespace and disappears with it. Parent and
//! child synchronise over one socketpair, never signals.
//!
//! Usage:
//! ```no_run
//! use container::exec::sandbox::*;
//! let spec = SandboxSpec::new("web", RootFs::Host, Program::Path(vec!["/bin/sh".into()]));
//! let pending = spawn(&spec, Stdio::inherit())?;
//! // configure the network of /proc/<pending.pid()>/ns/net here
//! let mut child = pending.release()?;
//! let exit = child.wait()?;
//! # Ok::<(), SandboxError>(())
//! ```
//!
//! How it works: the parent resolves everything up front — it checks every bind
//! source (volumes, rendered files, the host's /usr and /etc, device nodes) and
//! builds a list of steps with all strings in place; then `clone3` with the
//! namespace flags; the child (see `child.rs`) runs the steps with raw syscalls
//! only, first opening every source as an `O_PATH` fd it binds from. A host path
//! ([`MountSource::Bind`]) is opened by its path; a volume
//! ([`MountSource::BindBeneath`], whose folders the container owns) beneath its
//! volumes folder with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
//! RESOLVE_NO_MAGICLINKS)`, so a symlink planted on the way, even after every check,
//! is refused rather than followed.
//!
//! Cgroups ([`SandboxSpec::cgroups`]): the child is born in the container's cgroup2
//! cgroup (`CLONE_INTO_CGROUP` with an fd of it; before Linux 5.7 it writes its
//! `cgroup.procs` itself), and its first steps write `0` to each v1 cgroup's `tasks`
//! (fds the parent opened, so the kernel checks the parent's credentials); only then
//! does it unshare its cgroup namespace, so that namespace is rooted at the
//! container's own cgroups (`CLONE_NEWCGROUP` in clone3 would root it at the
//! parent's: the kernel copies namespaces before it moves the child). Inside, that
//! cgroup2 subtree is mounted read-only on `/sys/fs/cgroup`. Sources are bound through `/proc/self/fd/N`, so they are fixed
//! before the child changes anything, and targets are created and mounted *after*
//! `pivot_root`, so a symlink inside the container root resolves inside it and can
//! never reach a host path.
//!
//! Root filesystems:
//! - [`RootFs::Host`]: a fresh tmpfs root with read-only binds of the host's `/usr`
//!   and `/etc`; `/bin /sbin /lib /lib64 /lib32 /libx32` are copied as symlinks when
//!   they are symlinks on the host (merged /usr) or bound read-only when they are
//!   real directories; `/tmp`, `/run` and `/var` are empty tmpfs mounts; `/root` and
//!   `/home` are empty directories.
//! - [`RootFs::Dir`]: an already built root folder, bound as the new root. It must
//!   contain `/proc`, `/sys` and `/dev` or be writable.
//! - [`RootFs::Build`]: a layer being built (`exec::build`): the layers below it
//!   bound read-only and stacked under the new layer's host folder as a *writable*
//!   overlayfs upper; the folder holding upper and work is bound (from its fd) into
//!   the staging tmpfs first, so the overlay never names a host path the child
//!   shadows. `/tmp` and `/run` are empty tmpfs mounts.
//! - [`RootFs::Overlay`]: the builder's layers stacked with overlayfs in the child's
//!   namespace, over a tmpfs upper layer (so mount points can be made anywhere, with
//!   their parents copied up with the layer's owners and modes), then made
//!   read-only. `/tmp` and `/run` are empty tmpfs mounts, as on a booted system.
//!
//! Mount targets ([`MountReq`]): a missing target directory (or file, for a file
//! source) is created, with its parents, inside the new root before the root is made
//! read-only. With a `Host` root that works anywhere on the root tmpfs (e.g. under
//! `/srv`) and under the tmpfs mounts, but not inside the host's read-only `/usr` or
//! `/etc`; with a `Dir` root the mount point is created in that folder (as runc
//! does), so a read-only overlay must already contain it. Either way a missing
//! target that cannot be created fails `spawn` with the step "create mount point
//! …" and `EROFS`, never silently.
//!
//! Programs: [`Program::Path`] execs a path inside the container (no `$PATH`
//! search). The other two exec a host binary without giving the container a
//! writable path to it (CVE-2019-5736: a container root process reopening
//! `/proc/1/exe` for writing must not reach the host file):
//! - [`Program::Exe`] (what containers use, for `container-init`): the parent clones
//!   the file's folder as a *detached* mount (`open_tree(OPEN_TREE_CLONE)`), makes
//!   that mount read-only (`mount_setattr`), opens the file in it (`O_PATH`), and
//!   closes the clone's fd, which dissolves the mount's anonymous namespace: the
//!   mount now belongs to no namespace (nothing can remount it read-write or clone
//!   it: both answer `EINVAL`) and stays alive only through the file's fd. The child
//!   execs that fd with `execveat(fd, "", AT_EMPTY_PATH)`. Inside, `/proc/1/exe`
//!   reads `/<file name>` and resolves through the read-only mount: opening it for
//!   writing fails with `ETXTBSY` while it runs and `EROFS` always (e.g. through an
//!   `O_PATH` fd kept until PID 1 exited, the CVE's trick). No mount table (the
//!   host's or the container's) shows the mount, nothing is copied, and every
//!   container running the file shares its page cache.
//!   Without `open_tree`/`mount_setattr` (`ENOSYS`, Linux < 5.12, or `EPERM` from a
//!   seccomp filter) it falls back to a sealed memfd copy of the file.
//! - [`Program::SelfExe`]: our own binary from a sealed memfd copy (made once per
//!   process): `/proc/1/exe` inside then is `/memfd:container-self (deleted)`, which
//!   cannot be written. Costs a copy of the whole binary in shared memory per
//!   running container; kept as the fallback when `container-init` is missing.
//!
//! Requires Linux ≥ 5.6 (`clone3` with a pidfd, `openat2`); `close_range` (5.11)
//! and the read-only mount for `Program::Exe` (5.12) have fallbacks; a user
//! namespace needs idmapped mounts (5.12, overlayfs over idmapped layers 5.19).
//!
//! Mount flags: every bind, volume, tmpfs and the overlay root is `nosuid` and
//! `nodev` (device nodes bound from the host are `nosuid,noexec` only); binds are
//! made with `open_tree(OPEN_TREE_CLONE | AT_RECURSIVE)` + `mount_setattr(
//! AT_RECURSIVE)` + `move_mount`, so a read-only bind is read-only with every
//! submount (with `NetNs::Host`, the host's /sys and /sys/fs/cgroup and the rest).
//!
//! User namespace ([`SandboxSpec::user_ns`]): a short-lived holder process makes the
//! user namespace (and, with `NetNs::New`, a network namespace it owns); the parent
//! writes its id maps and keeps fds to both. The child is cloned as host root into
//! new mount, pid, uts, ipc and cgroup namespaces that host root owns, joins the
//! network namespace, and makes every mount as host root: the layers and the host's
//! system folders (and a `Dir` root) through idmapped mounts (`MOUNT_ATTR_IDMAP`
//! with the container's user namespace: host root's files are the container root's,
//! and the shared cache is never chowned); tmpfs mounts and the folders it creates
//! belong to the container's root. Last, it enters the user namespace as its root
//! and unshares its mount namespace into one the user namespace owns: the kernel
//! then locks every mount (read-only, nosuid, nodev cannot be cleared; submounts,
//! e.g. the masks, cannot be unmounted), so the container's root cannot undo any of
//! it even with every capability in its namespace. Without `user_ns` the container's
//! root is host root (only mount flags and masks hold it).
//!
//! With `NetNs::Host` the host's /sys is bound read-only with every submount,
//! except the host's /sys/fs/cgroup, which is detached (the container's read-only
//! cgroup2 mount takes its place).

mod child;

use crate::exec::postfork::{CloneArgs, CLONE_INTO_CGROUP};
use child::{ExecTarget, InRoot, MountSrc, SetupScript, SetupStep, MOUNT_ATTR_NODEV as A_NODEV};
use child::{MOUNT_ATTR_NOEXEC as A_NOEXEC, MOUNT_ATTR_NOSUID as A_NOSUID, MOUNT_ATTR_RDONLY as A_RDONLY};
use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::Mutex;

use libc::c_int;
use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("invalid sandbox spec: {0}")]
    Spec(String),
    #[error("cannot open {path}: {source}")]
    Source {
        path: PathBuf,
        #[source]
        source: nix::Error,
    },
    /// A source beneath a folder (a volume) that is missing, not a folder, or has a
    /// symlink on the way.
    #[error("cannot open {path}: {source}")]
    Beneath {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{what}: {source}")]
    Os {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// A setup step in the child failed; `step` says which.
    #[error("container setup failed at \"{step}\": {source}")]
    Setup {
        step: String,
        #[source]
        source: std::io::Error,
    },
    #[error("container child exited before it was ready ({0})")]
    ChildDied(String),
}

fn os(what: &'static str) -> impl FnOnce(nix::Error) -> SandboxError {
    move |e| SandboxError::Os { what, source: std::io::Error::from(e) }
}

/// Where the new root comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootFs {
    /// Assembled from the host's system folders, read-only (see module docs).
    Host,
    /// An already built root folder, bound as the new root.
    Dir(PathBuf),
    /// The builder's layers (topmost first), stacked read-only with overlayfs.
    /// Mount points are created on a throwaway tmpfs upper layer that lives only in
    /// the container's mount namespace; the root is made read-only once they exist.
    Overlay(Vec<PathBuf>),
    /// A layer being built: `lower` (topmost first) stacked read-only under the
    /// host folder `upper`, which stays writable and keeps what the program writes
    /// (`work` is overlayfs's work folder; both must share a parent folder, which is
    /// bound into the child's namespace for the mount). `/tmp` and `/run` are empty
    /// tmpfs mounts, so nothing written there lands in the layer.
    Build { lower: Vec<PathBuf>, upper: PathBuf, work: PathBuf },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountSource {
    /// Bind a host file or directory (a rendered file, the container's run folder, a
    /// host folder the spec's owner named).
    Bind { source: PathBuf, read_only: bool },
    /// Bind the folder `path` (plain names) beneath the host folder `base`: a volume,
    /// `base` being the container's volumes folder (host root's; opened by its path)
    /// and everything beneath it the container's. The child opens `path` itself with
    /// `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS)` from
    /// `base` and binds that fd, so a name on the way swapped for a symlink at any
    /// time before (e.g. a nested volume's folder, in its outer volume) is refused,
    /// never followed.
    BindBeneath { base: PathBuf, path: PathBuf, read_only: bool },
    /// A fresh tmpfs; `size` in bytes (None: the kernel default, half of RAM).
    Tmpfs { size: Option<u64>, mode: u32, uid: u32, gid: u32 },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountReq {
    /// Absolute path inside the container.
    pub target: String,
    pub kind: MountSource,
}

impl MountReq {
    pub fn bind(target: &str, source: impl Into<PathBuf>, read_only: bool) -> Self {
        MountReq { target: target.into(), kind: MountSource::Bind { source: source.into(), read_only } }
    }
    pub fn tmpfs(target: &str) -> Self {
        MountReq { target: target.into(), kind: MountSource::Tmpfs { size: None, mode: 0o755, uid: 0, gid: 0 } }
    }
    /// A volume: the folder `path` beneath `base` (see [`MountSource::BindBeneath`]).
    pub fn volume(target: &str, base: impl Into<PathBuf>, path: impl Into<PathBuf>, read_only: bool) -> Self {
        MountReq {
            target: target.into(),
            kind: MountSource::BindBeneath { base: base.into(), path: path.into(), read_only },
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetNs {
    /// A new, empty network namespace (only `lo`, down); the caller configures it
    /// between `spawn` and `release`.
    New,
    /// Share the host's network namespace (then /sys is a read-only bind of the host's).
    Host,
}

/// One line of a uid_map/gid_map: `count` ids from `inside` map to `outside`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdRange {
    pub inside: u32,
    pub outside: u32,
    pub count: u32,
}

/// User namespace id maps; the container's root must be mapped (inside 0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdMap {
    pub uids: Vec<IdRange>,
    pub gids: Vec<IdRange>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Program {
    /// Full argv; `argv[0]` is the absolute path executed inside the container.
    Path(Vec<String>),
    /// Full argv (`argv[0]` is only the displayed name); runs a sealed memfd copy of
    /// the running binary (`/proc/self/exe`).
    SelfExe(Vec<String>),
    /// Runs the *host* file `path` (need not exist in the container) through a
    /// private, detached, read-only bind mount of its folder: nothing is copied and
    /// the page cache is shared by every container running it. `argv[0]` is only
    /// the displayed name. Falls back to a sealed memfd copy of `path` on kernels
    /// without `open_tree`/`mount_setattr` (before 5.12).
    Exe { path: PathBuf, argv: Vec<String> },
}

impl Program {
    /// The full argv.
    pub fn argv(&self) -> &[String] {
        match self {
            Program::Path(a) | Program::SelfExe(a) | Program::Exe { argv: a, .. } => a,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxSpec {
    pub hostname: String,
    pub rootfs: RootFs,
    pub mounts: Vec<MountReq>,
    /// Extra host device nodes bound at the same path (e.g. `/dev/net/tun`).
    pub devices: Vec<String>,
    pub net: NetNs,
    /// Unshare the cgroup namespace when the host supports it.
    pub cgroup_ns: bool,
    /// The container's cgroup directories (`cgroup::Cgroups::dirs`). The child is in
    /// every one of them before it makes its cgroup namespace, so that namespace is
    /// rooted at the container's own cgroups: the cgroup2 one from birth
    /// (`CLONE_INTO_CGROUP`), the v1 ones by its first steps (see `CgroupFds`).
    pub cgroups: Vec<PathBuf>,
    pub user_ns: Option<IdMap>,
    pub program: Program,
    /// The program's whole environment (nothing is inherited).
    pub env: BTreeMap<String, String>,
    pub readonly_root: bool,
    /// Join a new, empty session keyring before exec (default), so the program
    /// cannot reach the keys of the caller's session.
    pub new_keyring: bool,
    /// Capabilities, no_new_privs and seccomp filter applied last before exec
    /// (`exec::harden`); `None` keeps the caller's.
    pub hardening: Option<crate::exec::harden::Hardening>,
    /// SIGKILL the program when the caller's thread dies (`PR_SET_PDEATHSIG`, set
    /// first thing in the child; a caller gone before that is noticed at the
    /// release handshake). For build steps: a killed CLI leaves no build running.
    pub die_with_parent: bool,
    /// Clone the program from a keeper (see `exec::keeper`) that stays its parent,
    /// waits for it and records how it ended; `None`: the caller is its parent.
    pub keeper: Option<Keeper>,
}

/// The keeper of a container's PID 1: `exe KEEPER_ARG exit_file` (`container-init
/// __keeper …`). The CLI forks it just before the clone; it clones PID 1, so PID 1
/// is its child, tells the CLI PID 1's pid, and execs `exe` with /dev/null on 0-2,
/// every other fd closed, in a session of its own. Nobody waits for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keeper {
    pub exe: PathBuf,
    pub exit_file: PathBuf,
}

impl SandboxSpec {
    /// Defaults: new netns, cgroup ns, read-only root, no mounts, no user ns,
    /// `PATH` set to the usual system folders.
    pub fn new(hostname: &str, rootfs: RootFs, program: Program) -> Self {
        let mut env = BTreeMap::new();
        env.insert("PATH".to_string(), "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string());
        SandboxSpec {
            hostname: hostname.into(),
            rootfs,
            mounts: Vec::new(),
            devices: Vec::new(),
            net: NetNs::New,
            cgroup_ns: true,
            cgroups: Vec::new(),
            user_ns: None,
            program,
            env,
            readonly_root: true,
            new_keyring: true,
            hardening: None,
            die_with_parent: false,
            keeper: None,
        }
    }
}

/// Fds for the program's stdin, stdout and stderr; `None` inherits the caller's.
#[derive(Debug, Default)]
pub struct Stdio {
    pub stdin: Option<OwnedFd>,
    pub stdout: Option<OwnedFd>,
    pub stderr: Option<OwnedFd>,
}

impl Stdio {
    pub fn inherit() -> Self {
        Stdio::default()
    }
}

/// How the container's PID 1 ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
}

/// A set-up child blocked before exec. Dropping it kills and reaps the child.
#[derive(Debug)]
pub struct Pending {
    pid: Pid,
    pidfd: Option<OwnedFd>,
    sock: Option<OwnedFd>,
    exec_step: String,
    /// A keeper is the child's parent: it reaps the child, we only watch the pidfd.
    kept: bool,
}

/// The running container's PID 1 (a host pid). Dropping it does not kill it.
#[derive(Debug)]
pub struct InitProcess {
    pub pid: i32,
    /// A pidfd for race-free signalling and polling (from `CLONE_PIDFD`).
    pub pidfd: OwnedFd,
}

/// The masked and read-only paths of runc's default spec.
const MASKED: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];
const READ_ONLY: &[&str] = &["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"];
/// Device nodes every container gets, bound from the host.
const DEVICES: &[&str] = &["null", "zero", "full", "random", "urandom", "tty"];
/// Where the new root is mounted in the child's (private) namespace before
/// pivot_root. Any existing directory does: sources are already open fds, so
/// shadowing host paths here cannot change what gets bound.
const STAGE: &str = "/tmp";

/// overlayfs mount options stacking `layers` (topmost first) over the upper folder
/// made on the STAGE tmpfs. Each layer is first bound (read-only, idmapped with a
/// user namespace) at `STAGE/l<i>`, and overlayfs stacks those binds.
fn overlay_options(layers: &[PathBuf]) -> Result<String, SandboxError> {
    if layers.is_empty() {
        return Err(SandboxError::Spec("an overlay root needs at least one layer".into()));
    }
    for l in layers {
        if !l.is_absolute() || !l.is_dir() {
            return Err(SandboxError::Spec(format!("layer {} is not an absolute directory", l.display())));
        }
    }
    let lower: Vec<String> = (0..layers.len()).map(|i| format!("{STAGE}/l{i}")).collect();
    Ok(format!("lowerdir={},upperdir={STAGE}/upper,workdir={STAGE}/work", lower.join(":")))
}

/// overlayfs mount options of a [`RootFs::Build`] root: the layers bound at
/// `STAGE/l<i>` under the upper folder, whose parent is bound at `STAGE/b`.
fn build_overlay_options(lower: &[PathBuf], upper: &Path, work: &Path) -> Result<String, SandboxError> {
    if upper.parent() != work.parent() || !upper.is_absolute() {
        return Err(SandboxError::Spec(format!(
            "a build's upper folder {} and work folder {} must be absolute and share a parent folder",
            upper.display(),
            work.display()
        )));
    }
    let name = |p: &Path| -> Result<String, SandboxError> {
        match p.file_name().and_then(|n| n.to_str()) {
            Some(n) if p.is_dir() && !n.contains([':', ',', '\\']) => Ok(n.to_string()),
            _ => Err(SandboxError::Spec(format!("{} is not a directory with a plain name", p.display()))),
        }
    };
    let (up, wk) = (name(upper)?, name(work)?);
    let lowers = overlay_options(lower)?;
    let lowerdir = lowers.split(',').next().unwrap_or_default();
    Ok(format!("{lowerdir},upperdir={STAGE}/b/{up},workdir={STAGE}/b/{wk}"))
}

fn cstr(s: impl AsRef<[u8]>) -> Result<CString, SandboxError> {
    CString::new(s.as_ref())
        .map_err(|_| SandboxError::Spec(format!("NUL byte in {:?}", String::from_utf8_lossy(s.as_ref()))))
}

/// An absolute container path, normalised; no `..`.
fn container_path(p: &str) -> Result<PathBuf, SandboxError> {
    let path = Path::new(p);
    if !path.is_absolute() {
        return Err(SandboxError::Spec(format!("mount target {p:?} is not absolute")));
    }
    let mut out = PathBuf::from("/");
    for c in path.components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(n) => out.push(n),
            _ => return Err(SandboxError::Spec(format!("mount target {p:?} contains \"..\""))),
        }
    }
    if out == Path::new("/") {
        return Err(SandboxError::Spec("a mount target cannot be \"/\"".into()));
    }
    Ok(out)
}

/// `p` (absolute, normalised) as a path relative to the new root, split for `*at`.
fn in_root(p: &Path) -> Result<InRoot, SandboxError> {
    let rel = p.strip_prefix("/").unwrap_or(p);
    let parent = rel.parent().filter(|q| !q.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = rel.file_name().map(|n| n.as_bytes()).unwrap_or(b".");
    Ok(InRoot {
        path: cstr(rel.as_os_str().as_bytes())?,
        parent: cstr(parent.as_os_str().as_bytes())?,
        name: cstr(name)?,
    })
}

/// Every ancestor of `p` below "/" and `p` itself, shortest first.
fn prefixes(p: &Path) -> Result<Vec<InRoot>, SandboxError> {
    let mut v: Vec<&Path> = p.ancestors().filter(|a| *a != Path::new("/")).collect();
    v.reverse();
    v.into_iter().map(in_root).collect()
}

/// Collects the child's steps with a human description for each.
///
/// Mounts that take something from the host (binds, and everything inside the new
/// root) run before pivot_root: afterwards the host's mounts are detached and the
/// kernel refuses to bind from them. Their targets are resolved inside the new root
/// (`RESOLVE_IN_ROOT`), and read-only binds are remounted at once. Masks, the
/// read-only root and the hostname come after pivot_root, on container paths.
#[derive(Default)]
struct Builder {
    pre: Vec<(String, SetupStep)>,
    post: Vec<(String, SetupStep)>,
    /// Host paths the child opens first, by slot.
    sources: Vec<Source>,
    /// Host ids of the container's root when it has a user namespace: system
    /// folders and layers are then bound through idmapped mounts, and tmpfs mounts
    /// belong to it.
    root_ids: Option<(u32, u32)>,
}

/// A source the child opens first: a host path (symlinks followed), or plain names
/// beneath a host folder (no symlink followed; a folder).
enum Source {
    Path(CString),
    Beneath { base: CString, path: CString },
}

impl Source {
    fn shown(&self) -> String {
        match self {
            Source::Path(p) => p.to_string_lossy().into_owned(),
            Source::Beneath { base, path } => {
                format!("{} beneath {}, following no link", path.to_string_lossy(), base.to_string_lossy())
            }
        }
    }
}

impl Builder {
    fn push(&mut self, what: String, op: SetupStep) {
        self.pre.push((what, op));
    }

    fn push_post(&mut self, what: String, op: SetupStep) {
        self.post.push((what, op));
    }

    /// Register a host path the child binds from; checked now for a clear error.
    /// Returns its slot and whether it is a directory.
    fn source(&mut self, path: &Path) -> Result<(MountSrc, bool), SandboxError> {
        let st =
            nix::sys::stat::stat(path).map_err(|source| SandboxError::Source { path: path.to_path_buf(), source })?;
        let is_dir = st.st_mode & libc::S_IFMT == libc::S_IFDIR;
        let slot = self.sources.len();
        self.sources.push(Source::Path(cstr(path.as_os_str().as_bytes())?));
        Ok((MountSrc::Slot(slot), is_dir))
    }

    /// Bind the folder `path` beneath `base` (a volume): checked now without following
    /// a symlink, for a clear error; the child opens it again the same way and binds
    /// what it opened (see [`MountSource::BindBeneath`]).
    fn bind_beneath(&mut self, base: &Path, path: &Path, target: &Path, read_only: bool) -> Result<(), SandboxError> {
        let full = base.join(path);
        let err = |source| SandboxError::Beneath { path: full.clone(), source };
        let dir = crate::exec::beneath::Beneath::open(base).map_err(err)?;
        dir.open_dir(path).map_err(err)?.ok_or_else(|| err(std::io::ErrorKind::NotFound.into()))?;
        let slot = self.sources.len();
        let (base_c, path_c) = (cstr(base.as_os_str().as_bytes())?, cstr(path.as_os_str().as_bytes())?);
        self.sources.push(Source::Beneath { base: base_c, path: path_c });
        self.ensure(target, true)?;
        let attr = A_NOSUID | A_NODEV | if read_only { A_RDONLY } else { 0 };
        let what = format!("bind {} on {}", full.display(), target.display());
        let rel = target.strip_prefix("/").unwrap_or(target);
        self.push(what, SetupStep::BindTree { slot, target: cstr(rel.as_os_str().as_bytes())?, attr, idmap: false });
        Ok(())
    }

    /// A mount in the new root (before pivot_root).
    fn mount(
        &mut self,
        what: String,
        src: MountSrc,
        target: &Path,
        fstype: Option<&str>,
        flags: libc::c_ulong,
        data: Option<String>,
    ) -> Result<(), SandboxError> {
        let rel = target.strip_prefix("/").unwrap_or(target);
        let op = SetupStep::Mount {
            src,
            target: cstr(rel.as_os_str().as_bytes())?,
            in_root: true,
            fstype: fstype.map(cstr).transpose()?,
            flags,
            data: data.map(cstr).transpose()?,
        };
        self.push(what, op);
        Ok(())
    }

    /// Bind a host path (opened first thing in the child) onto the container path
    /// `target`: nosuid and nodev, read-only (with every submount) if asked.
    fn bind(&mut self, host: &Path, target: &Path, read_only: bool) -> Result<(), SandboxError> {
        let attr = A_NOSUID | A_NODEV | if read_only { A_RDONLY } else { 0 };
        self.bind_tree(host, target, attr, false)
    }

    /// Bind a host system folder or layer read-only; with a user namespace through an
    /// idmapped mount, so that host root's files belong to the container's root.
    /// Bind each layer (topmost first) read-only at `/l<i>` of the staging root, where
    /// the overlay's `lowerdir` names them.
    fn bind_layers(&mut self, layers: &[PathBuf]) -> Result<(), SandboxError> {
        for (i, l) in layers.iter().enumerate() {
            self.push(
                format!("create the folder of layer {i}"),
                SetupStep::MkdirInRoot { name: cstr(format!("l{i}"))?, mode: 0o755 },
            );
            self.bind_system(l, Path::new(&format!("/l{i}")))?;
        }
        Ok(())
    }

    /// Mount the overlay with `data` over STAGE itself and take it as the new root.
    fn mount_overlay(&mut self, what: String, data: String) -> Result<(), SandboxError> {
        let op = SetupStep::Mount {
            src: MountSrc::Str(cstr("overlay")?),
            target: cstr(STAGE)?,
            in_root: false,
            fstype: Some(cstr("overlay")?),
            flags: libc::MS_NOSUID | libc::MS_NODEV,
            data: Some(cstr(data)?),
        };
        self.push(what, op);
        self.push("open the overlay root".into(), SetupStep::OpenRoot { path: cstr(STAGE)? });
        Ok(())
    }

    fn bind_system(&mut self, host: &Path, target: &Path) -> Result<(), SandboxError> {
        let idmap = self.root_ids.is_some();
        self.bind_tree(host, target, A_RDONLY | A_NOSUID | A_NODEV, idmap)
    }

    /// A host device node at the same path. Without a user namespace: bound,
    /// nosuid and noexec (but of course not nodev). With one: made anew in /dev by
    /// mknod (we are still host root), with the host node's mode and its owner
    /// shifted into the container's range, since devtmpfs cannot be idmapped and
    /// a root-only node (/dev/net/tun is 0600) must be the container root's. The
    /// container's root has no CAP_MKNOD over the host, so it cannot add any.
    fn device(&mut self, host: &Path) -> Result<(), SandboxError> {
        let Some((ru, rg)) = self.root_ids else {
            return self.bind_tree(host, host, A_NOSUID | A_NOEXEC, false);
        };
        let st =
            nix::sys::stat::stat(host).map_err(|source| SandboxError::Source { path: host.to_path_buf(), source })?;
        let kind = st.st_mode & libc::S_IFMT;
        if kind != libc::S_IFCHR && kind != libc::S_IFBLK {
            return Err(SandboxError::Spec(format!("{} is not a device node", host.display())));
        }
        let shift = |id: u32, base: u32| if id < 65536 { base + id } else { base };
        if let Some(parent) = host.parent().filter(|p| *p != Path::new("/dev")) {
            self.push(format!("create {}", parent.display()), SetupStep::EnsureDir { prefixes: prefixes(parent)? });
        }
        self.push(
            format!("make the device node {}", host.display()),
            SetupStep::MakeNode {
                file: in_root(host)?,
                mode: st.st_mode,
                dev: st.st_rdev,
                uid: shift(st.st_uid, ru),
                gid: shift(st.st_gid, rg),
            },
        );
        Ok(())
    }

    fn bind_tree(&mut self, host: &Path, target: &Path, attr: u64, idmap: bool) -> Result<(), SandboxError> {
        let (src, is_dir) = self.source(host)?;
        let MountSrc::Slot(slot) = src else { unreachable!("source() returns a slot") };
        self.ensure(target, is_dir)?;
        // Recursive, so volumes with submounts look the same inside, and read-only
        // for every submount.
        let what = format!("bind {} on {}", host.display(), target.display());
        let rel = target.strip_prefix("/").unwrap_or(target);
        self.push(what, SetupStep::BindTree { slot, target: cstr(rel.as_os_str().as_bytes())?, attr, idmap });
        Ok(())
    }

    /// tmpfs mount options for the container's ids `uid`/`gid`, mapped to the host.
    fn tmpfs_ids(&self, uid: u32, gid: u32) -> String {
        match self.root_ids {
            Some((ru, rg)) => format!("uid={},gid={}", ru + uid, rg + gid),
            None => format!("uid={uid},gid={gid}"),
        }
    }

    fn ensure(&mut self, target: &Path, dir: bool) -> Result<(), SandboxError> {
        let what = format!("create mount point {}", target.display());
        if dir {
            self.push(what, SetupStep::EnsureDir { prefixes: prefixes(target)? });
        } else {
            if let Some(parent) = target.parent().filter(|p| *p != Path::new("/")) {
                self.push(what.clone(), SetupStep::EnsureDir { prefixes: prefixes(parent)? });
            }
            self.push(what, SetupStep::EnsureFile { file: in_root(target)? });
        }
        Ok(())
    }

    /// A tmpfs owned by the container's root; `flags` always gain nosuid and nodev.
    fn tmpfs(&mut self, target: &Path, flags: libc::c_ulong, data: String) -> Result<(), SandboxError> {
        self.tmpfs_flags(target, flags | libc::MS_NOSUID | libc::MS_NODEV, data)
    }

    fn tmpfs_flags(&mut self, target: &Path, flags: libc::c_ulong, data: String) -> Result<(), SandboxError> {
        self.ensure(target, true)?;
        let what = format!("mount tmpfs on {}", target.display());
        let data = if data.contains("uid=") { data } else { format!("{data},{}", self.tmpfs_ids(0, 0)) };
        self.mount(what, MountSrc::Str(cstr("tmpfs")?), target, Some("tmpfs"), flags, Some(data))
    }

    fn symlink(&mut self, target: &str, link: &str) -> Result<(), SandboxError> {
        self.push(
            format!("symlink {link} -> {target}"),
            SetupStep::Symlink { target: cstr(target)?, file: in_root(Path::new(link))? },
        );
        Ok(())
    }
}

/// A sealed (immutable) memfd copy of the file `src`, named `name`.
fn sealed_copy(src: &Path, name: &std::ffi::CStr) -> Result<OwnedFd, SandboxError> {
    let io = |what: &'static str| move |source: std::io::Error| SandboxError::Os { what, source };
    // SAFETY: a NUL-terminated name and valid flags.
    let raw = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) };
    if raw < 0 {
        return Err(io("memfd_create")(std::io::Error::last_os_error()));
    }
    // SAFETY: memfd_create just returned this fd.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let mut exe = File::open(src).map_err(io("open the program to copy"))?;
    let mut out = File::from(fd.try_clone().map_err(io("dup memfd"))?);
    std::io::copy(&mut exe, &mut out).map_err(io("copy the program into a memfd"))?;
    drop(out);
    let seals = libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;
    // SAFETY: fcntl on an fd we own.
    if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, seals) } != 0 {
        return Err(io("seal memfd")(std::io::Error::last_os_error()));
    }
    Ok(fd)
}

/// The sealed memfd copy of our own binary, made once per process: it is immutable,
/// so every container can exec the same one.
pub(crate) fn self_exe_memfd() -> Result<RawFd, SandboxError> {
    static MEMFD: Mutex<Option<OwnedFd>> = Mutex::new(None);
    let mut guard = MEMFD.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(fd) = guard.as_ref() {
        return Ok(fd.as_raw_fd());
    }
    let fd = sealed_copy(Path::new("/proc/self/exe"), c"container-self")?;
    let r = fd.as_raw_fd();
    *guard = Some(fd);
    Ok(r)
}

/// `struct mount_attr` of `mount_setattr(2)` (version 0, 32 bytes).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}
const OPEN_TREE_CLONE: libc::c_uint = 1;
const MOUNT_ATTR_RDONLY: u64 = 0x1;
const MOUNT_ATTR_NOSUID: u64 = 0x2;
const MOUNT_ATTR_NODEV: u64 = 0x4;

/// The folder `dir` cloned as a detached bind mount (`open_tree(OPEN_TREE_CLONE)`),
/// made read-only, nosuid and nodev. The returned fd owns the mount's anonymous
/// namespace: closing it dissolves that namespace. Errors are raw errnos.
fn read_only_tree(dir: &CString) -> Result<OwnedFd, i32> {
    let errno = || std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO);
    let flags = OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint;
    // SAFETY: a NUL-terminated path and plain flags; returns a new fd or -1.
    let raw = unsafe { libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, dir.as_ptr(), flags) } as c_int;
    if raw < 0 {
        return Err(errno());
    }
    // SAFETY: open_tree just returned this fd.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: the fd is ours, "" with AT_EMPTY_PATH names it, attr is a stack struct
    // of the size passed.
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
        return Err(errno());
    }
    Ok(fd)
}

/// The fd `Program::Exe` execs (an `O_PATH` fd, close-on-exec), and the exec step's
/// description: `path` opened through a read-only detached clone of its folder, or
/// (old kernels, seccomp) a sealed memfd copy of it. See the module docs.
pub(crate) fn exe_fd(path: &Path) -> Result<(OwnedFd, String), SandboxError> {
    let source = |e: nix::Error| SandboxError::Source { path: path.to_path_buf(), source: e };
    // The real file: `name` is then a plain file in `dir`, never a symlink.
    let real = std::fs::canonicalize(path).map_err(|e| source(nix::Error::from_raw(e.raw_os_error().unwrap_or(0))))?;
    let (Some(dir), Some(name)) = (real.parent(), real.file_name()) else {
        return Err(SandboxError::Spec(format!("program {} is not a file", path.display())));
    };
    let tree = match read_only_tree(&cstr(dir.as_os_str().as_bytes())?) {
        Ok(tree) => tree,
        Err(libc::ENOSYS) | Err(libc::EPERM) => {
            let st = nix::sys::stat::stat(&real).map_err(source)?;
            if st.st_mode & libc::S_IFMT != libc::S_IFREG {
                return Err(SandboxError::Spec(format!("program {} is not a regular file", path.display())));
            }
            let fd = sealed_copy(&real, &cstr(name.as_bytes())?)?;
            return Ok((fd, format!("exec the sealed copy of {}", path.display())));
        }
        Err(e) => return Err(source(nix::Error::from_raw(e))),
    };
    let name = cstr(name.as_bytes())?;
    // SAFETY: openat on an fd we own with a NUL-terminated plain name.
    let raw =
        unsafe { libc::openat(tree.as_raw_fd(), name.as_ptr(), libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC) };
    if raw < 0 {
        return Err(source(nix::Error::last()));
    }
    // SAFETY: openat just returned this fd.
    let exe = unsafe { OwnedFd::from_raw_fd(raw) };
    let st = nix::sys::stat::fstat(&exe).map_err(source)?;
    if st.st_mode & libc::S_IFMT != libc::S_IFREG {
        return Err(SandboxError::Spec(format!("program {} is not a regular file", path.display())));
    }
    // Dissolve the mount's namespace now: from here on the mount is attached to
    // nothing, so no one (the container included) can remount or clone it, while
    // `exe` keeps it alive for the exec.
    drop(tree);
    Ok((exe, format!("exec {} (read-only mount)", path.display())))
}

fn check_spec(spec: &SandboxSpec) -> Result<(), SandboxError> {
    let argv = spec.program.argv();
    if argv.is_empty() {
        return Err(SandboxError::Spec("empty argv".into()));
    }
    if let Program::Path(a) = &spec.program {
        if !a[0].starts_with('/') {
            return Err(SandboxError::Spec(format!("program {:?} is not an absolute path", a[0])));
        }
    }
    if spec.hostname.is_empty() || spec.hostname.len() > 64 {
        return Err(SandboxError::Spec(format!("hostname {:?} must be 1 to 64 bytes", spec.hostname)));
    }
    if let Some(m) = &spec.user_ns {
        if !m.uids.iter().any(|r| r.inside == 0) || !m.gids.iter().any(|r| r.inside == 0) {
            return Err(SandboxError::Spec("the user namespace must map uid and gid 0".into()));
        }
    }
    Ok(())
}

/// Build the child's steps (without the final WaitGo/Exec). Order matters.
fn build(spec: &SandboxSpec, ns: &NsFds) -> Result<Builder, SandboxError> {
    let mut b = Builder { root_ids: spec.user_ns.as_ref().map(root_ids), ..Builder::default() };
    if spec.die_with_parent {
        b.push("die with the caller (PR_SET_PDEATHSIG)".into(), SetupStep::DieWithParent);
    }
    if let Some(fd) = ns.net {
        b.push("join the network namespace".into(), SetupStep::JoinNs { fd, nstype: libc::CLONE_NEWNET });
    }
    // Nothing we mount may propagate back to the host.
    b.push(
        "make / private".into(),
        SetupStep::Mount {
            src: MountSrc::None,
            target: cstr("/")?,
            in_root: false,
            fstype: None,
            flags: libc::MS_REC | libc::MS_PRIVATE,
            data: None,
        },
    );

    // The root mount at STAGE, plus the skeleton.
    let (src, fstype, flags, data) = match &spec.rootfs {
        RootFs::Host => (
            MountSrc::Str(cstr("tmpfs")?),
            Some(cstr("tmpfs")?),
            libc::MS_NOSUID | libc::MS_NODEV,
            Some(cstr(format!("mode=755,size=1m,{}", b.tmpfs_ids(0, 0)))?),
        ),
        RootFs::Dir(dir) => {
            let (src, is_dir) = b.source(dir)?;
            if !is_dir {
                return Err(SandboxError::Spec(format!("root {} is not a directory", dir.display())));
            }
            (src, None, libc::MS_BIND | libc::MS_REC | libc::MS_NOSUID | libc::MS_NODEV, None)
        }
        // The tmpfs that will hold the overlay's upper and work folders (for a
        // build: the mount points of the layers and of the upper's folder).
        RootFs::Overlay(_) | RootFs::Build { .. } => (
            MountSrc::Str(cstr("tmpfs")?),
            Some(cstr("tmpfs")?),
            libc::MS_NOSUID | libc::MS_NODEV,
            Some(cstr("mode=755,size=4m")?),
        ),
    };
    let what = match &spec.rootfs {
        RootFs::Host => "mount the root tmpfs".to_string(),
        RootFs::Dir(d) => format!("bind the root {}", d.display()),
        RootFs::Overlay(_) => "mount the overlay's upper tmpfs".to_string(),
        RootFs::Build { .. } => "mount the tmpfs that stages the build's overlay".to_string(),
    };
    b.push(what, SetupStep::Mount { src, target: cstr(STAGE)?, in_root: false, fstype, flags, data });
    b.push("open the new root".into(), SetupStep::OpenRoot { path: cstr(STAGE)? });
    if let RootFs::Overlay(layers) = &spec.rootfs {
        b.push(
            "create the overlay's upper folder".into(),
            SetupStep::MkdirInRoot { name: cstr("upper")?, mode: 0o755 },
        );
        b.push("create the overlay's work folder".into(), SetupStep::MkdirInRoot { name: cstr("work")?, mode: 0o700 });
        let data = overlay_options(layers)?;
        b.bind_layers(layers)?;
        // Mounted over STAGE itself: the upper folder was resolved at mount time, so
        // hiding its tmpfs leaves it working and out of the container's sight.
        let what = format!(
            "mount the overlay of {}",
            layers.iter().map(|l| l.display().to_string()).collect::<Vec<_>>().join(", ")
        );
        b.mount_overlay(what, data)?;
    }
    if let RootFs::Build { lower, upper, work } = &spec.rootfs {
        let data = build_overlay_options(lower, upper, work)?;
        b.bind_layers(lower)?;
        // The folder holding upper and work, read-write (overlayfs wants both on one
        // mount); bound from the fd opened first, so a path under STAGE works too.
        let parent = upper.parent().unwrap_or(Path::new("/"));
        b.push(
            "create the folder of the layer being built".into(),
            SetupStep::MkdirInRoot { name: cstr("b")?, mode: 0o700 },
        );
        b.bind_tree(parent, Path::new("/b"), A_NOSUID | A_NODEV, false)?;
        let what = format!("mount the build overlay with {} as its upper folder", upper.display());
        b.mount_overlay(what, data)?;
    }
    if spec.rootfs == RootFs::Host {
        for (name, mode) in [
            ("proc", 0o555),
            ("sys", 0o555),
            ("dev", 0o755),
            ("usr", 0o755),
            ("etc", 0o755),
            ("tmp", 0o1777),
            ("run", 0o755),
            ("var", 0o755),
            ("root", 0o700),
            ("home", 0o755),
        ] {
            b.push(format!("create /{name} in the root"), SetupStep::MkdirInRoot { name: cstr(name)?, mode });
        }
    }

    // proc and sysfs are mounted while the host's are still visible: in a user
    // namespace the kernel allows a new instance only then.
    let nodev = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
    b.mount("mount proc on /proc".into(), MountSrc::Str(cstr("proc")?), Path::new("/proc"), Some("proc"), nodev, None)?;
    match spec.net {
        NetNs::New => {
            let what = "mount sysfs on /sys".to_string();
            let fl = nodev | libc::MS_RDONLY;
            b.mount(what, MountSrc::Str(cstr("sysfs")?), Path::new("/sys"), Some("sysfs"), fl, None)?;
        }
        // A new sysfs shows the netns of its mounter; sharing the host's netns, the
        // host's sysfs is the right one, read-only.
        // Recursively read-only: every submount too; the host's cgroup hierarchies
        // that came along are then detached (the container's own cgroup2 mount below
        // takes their place).
        NetNs::Host => {
            b.bind(Path::new("/sys"), Path::new("/sys"), true)?;
            let op = SetupStep::Detach { target: cstr("sys/fs/cgroup")? };
            b.push("detach the host's cgroup mounts under /sys/fs/cgroup".into(), op);
        }
    }
    // The container's own cgroup2 subtree (the root of its cgroup namespace), read-only.
    // Without a cgroup2 cgroup (v1-only host) nothing is mounted: the namespace root
    // there would be the host's cgroup2 root.
    if cgroup_ns(spec) && spec.cgroups.iter().any(|d| is_cgroup2(d).unwrap_or(false)) {
        let what = "mount cgroup2 on /sys/fs/cgroup read-only".to_string();
        let fl = nodev | libc::MS_RDONLY;
        b.mount(what, MountSrc::Str(cstr("cgroup2")?), Path::new("/sys/fs/cgroup"), Some("cgroup2"), fl, None)?;
    }

    if spec.rootfs == RootFs::Host {
        b.bind_system(Path::new("/usr"), Path::new("/usr"))?;
        b.bind_system(Path::new("/etc"), Path::new("/etc"))?;
        for name in ["bin", "sbin", "lib", "lib64", "lib32", "libx32"] {
            let host = Path::new("/").join(name);
            match std::fs::symlink_metadata(&host) {
                Ok(m) if m.file_type().is_symlink() => {
                    let target = std::fs::read_link(&host)
                        .map_err(|source| SandboxError::Os { what: "read a merged-/usr symlink", source })?;
                    b.symlink(&target.to_string_lossy(), &format!("/{name}"))?;
                }
                Ok(m) if m.is_dir() => b.bind_system(&host, &host)?,
                _ => {}
            }
        }
        let fl = libc::MS_NOSUID | libc::MS_NODEV;
        b.tmpfs(Path::new("/tmp"), fl, "mode=1777".into())?;
        b.tmpfs(Path::new("/run"), fl | libc::MS_NOEXEC, "mode=755".into())?;
        b.tmpfs(Path::new("/var"), fl, "mode=755".into())?;
    }
    if matches!(spec.rootfs, RootFs::Overlay(_) | RootFs::Build { .. }) {
        let fl = libc::MS_NOSUID | libc::MS_NODEV;
        b.tmpfs(Path::new("/tmp"), fl, "mode=1777".into())?;
        b.tmpfs(Path::new("/run"), fl, "mode=755".into())?;
    }

    // Minimal /dev: a tmpfs with the host's nodes bound in (binds also work in a user
    // namespace, where mknod does not).
    // Without a user namespace the tmpfs is nodev: only the bound nodes work, never
    // one made inside. With one, the nodes are made in it (see `device`), and the
    // container's root cannot make any.
    let dev_fl = libc::MS_NOSUID | libc::MS_NOEXEC | if b.root_ids.is_some() { 0 } else { libc::MS_NODEV };
    b.tmpfs_flags(Path::new("/dev"), dev_fl, "mode=755,size=64k".into())?;
    for d in DEVICES {
        b.device(Path::new(&format!("/dev/{d}")))?;
    }
    for d in &spec.devices {
        let p = container_path(d)?;
        if !p.starts_with("/dev") {
            return Err(SandboxError::Spec(format!("device {d:?} is not under /dev")));
        }
        b.device(&p)?;
    }
    let pts = Path::new("/dev/pts");
    b.ensure(pts, true)?;
    let pts_data = Some("newinstance,ptmxmode=0666,mode=0620".to_string());
    let fl = libc::MS_NOSUID | libc::MS_NOEXEC;
    b.mount("mount devpts on /dev/pts".into(), MountSrc::Str(cstr("devpts")?), pts, Some("devpts"), fl, pts_data)?;
    b.symlink("pts/ptmx", "/dev/ptmx")?;
    b.tmpfs(Path::new("/dev/shm"), nodev, "mode=1777".into())?;
    for (link, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        b.symlink(target, &format!("/dev/{link}"))?;
    }

    // The caller's mounts, in order (a later one may go inside an earlier one).
    for m in &spec.mounts {
        let target = container_path(&m.target)?;
        match &m.kind {
            MountSource::Bind { source, read_only } => b.bind(source, &target, *read_only)?,
            MountSource::BindBeneath { base, path, read_only } => b.bind_beneath(base, path, &target, *read_only)?,
            MountSource::Tmpfs { size, mode, uid, gid } => {
                let mut data = format!("mode={mode:o},{}", b.tmpfs_ids(*uid, *gid));
                if let Some(s) = size {
                    data.push_str(&format!(",size={s}"));
                }
                b.tmpfs(&target, libc::MS_NOSUID | libc::MS_NODEV, data)?;
            }
        }
    }

    for p in MASKED {
        b.push_post(format!("mask {p}"), SetupStep::Mask { path: cstr(p)? });
    }
    for p in READ_ONLY {
        b.push_post(format!("make {p} read-only"), SetupStep::ReadOnlyTree { path: cstr(p)? });
    }
    if spec.readonly_root {
        let op = SetupStep::RemountRoNoSuid { target: cstr("/")? };
        b.push_post("remount / read-only, nosuid and nodev".into(), op);
    }
    b.push_post("set the hostname".into(), SetupStep::Hostname { name: cstr(&spec.hostname)? });
    if spec.user_ns.is_some() {
        b.push_post("enter the user namespace and lock the mounts".into(), SetupStep::EnterUserNs);
    }
    // After entering the user namespace (setns and unshare are filtered from here on).
    if spec.new_keyring {
        b.push_post("join a new session keyring".into(), SetupStep::JoinSessionKeyring);
    }
    if let Some(h) = &spec.hardening {
        let what = "drop capabilities and install the seccomp filter".to_string();
        b.push_post(what, SetupStep::Harden(h.clone()));
    }
    b.push_post("wait for release".into(), SetupStep::WaitGo);
    Ok(b)
}

const CGROUP_SUPER_MAGIC: i64 = 0x0027_e0eb;
const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;

/// Is `dir` on a cgroup2 (true) or a cgroup v1 (false) file system?
fn is_cgroup2(dir: &Path) -> Result<bool, SandboxError> {
    let st = nix::sys::statfs::statfs(dir).map_err(|source| SandboxError::Source { path: dir.into(), source })?;
    match st.filesystem_type().0 as i64 {
        CGROUP2_SUPER_MAGIC => Ok(true),
        CGROUP_SUPER_MAGIC => Ok(false),
        _ => Err(SandboxError::Spec(format!("{} is not a cgroup", dir.display()))),
    }
}

/// Whether the child makes a cgroup namespace.
fn cgroup_ns(spec: &SandboxSpec) -> bool {
    spec.cgroup_ns && Path::new("/proc/self/ns/cgroup").exists()
}

/// The container's cgroups, opened by the parent before clone3 (so errors name a
/// path, and the kernel checks the parent's credentials).
#[derive(Default)]
struct CgroupFds {
    /// The cgroup2 directory (`O_PATH`) for `CLONE_INTO_CGROUP`, and its
    /// `cgroup.procs` for kernels without it (before 5.7).
    v2: Option<(PathBuf, OwnedFd, OwnedFd)>,
    /// Each v1 cgroup's `tasks`, written by the child itself.
    v1: Vec<(PathBuf, OwnedFd)>,
}

impl CgroupFds {
    fn open(dirs: &[PathBuf]) -> Result<CgroupFds, SandboxError> {
        let open = |path: PathBuf, flags: nix::fcntl::OFlag| {
            nix::fcntl::open(&path, flags | nix::fcntl::OFlag::O_CLOEXEC, nix::sys::stat::Mode::empty())
                .map_err(|source| SandboxError::Source { path, source })
        };
        use nix::fcntl::OFlag;
        let mut out = CgroupFds::default();
        for d in dirs {
            if is_cgroup2(d)? {
                if out.v2.is_some() {
                    return Err(SandboxError::Spec(format!("a second cgroup2 directory {}", d.display())));
                }
                let dir = open(d.clone(), OFlag::O_PATH | OFlag::O_DIRECTORY)?;
                let procs = open(d.join("cgroup.procs"), OFlag::O_WRONLY)?;
                out.v2 = Some((d.clone(), dir, procs));
            } else {
                out.v1.push((d.clone(), open(d.join("tasks"), OFlag::O_WRONLY)?));
            }
        }
        Ok(out)
    }
}

/// Serialises spawns within this process: between socketpair() and closing the
/// child's end in the parent, a concurrent clone would inherit that end and delay
/// the EOF that tells `release` the exec happened.
static SPAWN_LOCK: Mutex<()> = Mutex::new(());

/// Dup a caller's fd above 2 (close-on-exec) so the child's dup2 onto 0..2 never
/// clobbers another of them.
fn high_fd(fd: Option<OwnedFd>) -> Result<Option<OwnedFd>, SandboxError> {
    high_fd_from(fd, 3)
}

/// `fd` dup'ed to a number ≥ `min` (close-on-exec).
fn high_fd_from(fd: Option<OwnedFd>, min: RawFd) -> Result<Option<OwnedFd>, SandboxError> {
    match fd {
        None => Ok(None),
        Some(fd) => {
            // SAFETY: fcntl on an fd we own.
            let r = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, min) };
            if r < 0 {
                return Err(SandboxError::Os { what: "dup a stdio fd", source: std::io::Error::last_os_error() });
            }
            // SAFETY: fcntl just returned this fd.
            Ok(Some(unsafe { OwnedFd::from_raw_fd(r) }))
        }
    }
}

/// clone3 with `args`; in the child, run the script (never returns). In the parent:
/// the child's pid, or -1 with errno set.
fn clone_child(args: &CloneArgs, script: &SetupScript, parent_sock: RawFd, child_sock: RawFd) -> libc::c_long {
    // SAFETY: clone3 without CLONE_VM behaves like fork: the child gets a copy of our
    // memory and runs `child::run`, which only makes raw syscalls on `script` and
    // never returns (exec or _exit).
    let ret = unsafe { args.clone3() };
    if ret == 0 {
        // The child's copy of the parent's end must go, or the child would hold both
        // ends and never see EOF when the parent dies before `release` (e.g. kill -9
        // mid-apply): it would wait for a release forever instead of exiting.
        // SAFETY: close(2) on an fd number we own in this (forked) process.
        unsafe {
            libc::close(parent_sock);
        }
        child::run(script, child_sock);
    }
    ret
}

/// [`clone_child`], once more without `CLONE_INTO_CGROUP` on a kernel before 5.7 (the
/// child joins cgroup2 by its own write instead). Returns clone3's result and errno.
fn clone_with_fallback(
    args: &mut CloneArgs,
    script: &SetupScript,
    parent_sock: RawFd,
    child_sock: RawFd,
) -> (libc::c_long, std::io::Error) {
    let mut ret = clone_child(args, script, parent_sock, child_sock);
    let mut clone_err = std::io::Error::last_os_error();
    let old_kernel = matches!(clone_err.raw_os_error(), Some(libc::E2BIG | libc::EINVAL | libc::ENOSYS));
    if ret < 0 && args.flags & CLONE_INTO_CGROUP != 0 && old_kernel {
        args.flags &= !CLONE_INTO_CGROUP;
        args.cgroup = 0;
        script.into_cgroup.set(false);
        ret = clone_child(args, script, parent_sock, child_sock);
        clone_err = std::io::Error::last_os_error();
    }
    (ret, clone_err)
}

/// What the forked keeper needs, made before the fork (nothing is allocated after).
struct KeeperExec {
    path: CString,
    _argv: Vec<CString>,
    argv: Vec<*const libc::c_char>,
    null: OwnedFd,
}

impl KeeperExec {
    fn new(k: &Keeper) -> Result<KeeperExec, SandboxError> {
        let path = cstr(k.exe.as_os_str().as_bytes())?;
        let store = vec![
            cstr("container-init")?,
            cstr(crate::exec::keeper::KEEPER_ARG)?,
            cstr(k.exit_file.as_os_str().as_bytes())?,
        ];
        let mut argv: Vec<*const libc::c_char> = store.iter().map(|c| c.as_ptr()).collect();
        argv.push(std::ptr::null());
        let null = OwnedFd::from(
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/null")
                .map_err(|source| SandboxError::Os { what: "open /dev/null", source })?,
        );
        Ok(KeeperExec { path, _argv: store, argv, null })
    }
}

/// Fork the keeper, which clones the child (so the child is the keeper's, and stays
/// so after we exit), reports the clone's result to us, waits until we hold a pidfd
/// of the child, and execs `container-init __keeper EXIT_FILE` with nothing of ours
/// open (see `exec::keeper`). Returns clone3's result and errno; `pidfd` is ours.
fn clone_kept(
    k: &KeeperExec,
    args: &mut CloneArgs,
    script: &SetupScript,
    parent_sock: RawFd,
    child_sock: RawFd,
    pidfd: &mut c_int,
) -> (libc::c_long, std::io::Error) {
    let err = |e: i32| (-1, std::io::Error::from_raw_os_error(e));
    let (mine, theirs) = match socketpair(AddressFamily::Unix, SockType::Stream, None, SockFlag::SOCK_CLOEXEC) {
        Ok(p) => p,
        Err(e) => return err(e as i32),
    };
    let envp: [*const libc::c_char; 1] = [std::ptr::null()];
    // SAFETY: fork; the child (the keeper) makes only raw syscalls on memory prepared
    // before (clone3 via `clone_with_fallback`, write, read, dup2, close_range, setsid,
    // signal, execve) and never returns.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return err(std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EAGAIN));
    }
    if pid == 0 {
        // SAFETY: see above; every pointer is to memory this process owns.
        unsafe {
            libc::close(mine.as_raw_fd());
            let t = theirs.as_raw_fd();
            let (ret, e) = clone_with_fallback(args, script, parent_sock, child_sock);
            let mut msg = [0u8; 12];
            // c_long is i64 on the 64-bit targets this runs on; the cast keeps 8 bytes.
            #[allow(clippy::unnecessary_cast)]
            msg[..8].copy_from_slice(&(ret as i64).to_le_bytes());
            msg[8..].copy_from_slice(&e.raw_os_error().unwrap_or(0).to_le_bytes());
            libc::write(t, msg.as_ptr().cast(), msg.len());
            // Neither end of the sync socket stays here: its EOF is the child's.
            libc::close(parent_sock);
            libc::close(child_sock);
            if *pidfd >= 0 {
                libc::close(*pidfd);
            }
            // Until the CLI holds a pidfd of the child (or is gone), the child is not
            // reaped, so its pid names it.
            let mut b = 0u8;
            libc::read(t, (&mut b as *mut u8).cast(), 1);
            if ret < 0 {
                libc::_exit(0);
            }
            libc::setsid();
            libc::signal(libc::SIGHUP, libc::SIG_IGN);
            libc::signal(libc::SIGPIPE, libc::SIG_IGN);
            libc::signal(libc::SIGINT, libc::SIG_IGN);
            for fd in 0..3 {
                libc::dup2(k.null.as_raw_fd(), fd);
            }
            libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32);
            libc::execve(k.path.as_ptr(), k.argv.as_ptr(), envp.as_ptr());
            // No keeper binary: reap the child ourselves, record nothing.
            while libc::waitpid(-1, std::ptr::null_mut(), 0) > 0 {}
            libc::_exit(1);
        }
    }
    drop(theirs);
    let mut f = File::from(mine);
    let mut msg = [0u8; 12];
    if f.read_exact(&mut msg).is_err() {
        return err(libc::ECHILD);
    }
    let ret = i64::from_le_bytes(msg[..8].try_into().unwrap_or_default()) as libc::c_long;
    let e = i32::from_le_bytes(msg[8..].try_into().unwrap_or_default());
    if ret > 0 {
        // SAFETY: pidfd_open on the keeper's child, not yet reapable by anyone.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, ret as libc::pid_t, 0) };
        *pidfd = fd as c_int;
    }
    let _ = f.write_all(&[1]);
    (ret, std::io::Error::from_raw_os_error(e))
}

/// Start a container: clone into new namespaces, set everything up, and stop just
/// before exec. Returns once the child is ready (or failed); see [`Pending`].
pub fn spawn(spec: &SandboxSpec, stdio: Stdio) -> Result<Pending, SandboxError> {
    spawn_passing(spec, stdio, None)
}

/// The fd number at which [`spawn_passing`] gives the program its extra fd.
pub const PASSED_FD: RawFd = 3;

/// How many fds [`spawn_passing_fds`] can give the program (at 3, 4 and 5).
pub const PASSED_MAX: usize = 3;

/// [`spawn`], and the program finds `passed` (if any) at fd [`PASSED_FD`], not
/// close-on-exec; every other fd above 2 still closes at exec. The runtime passes
/// PID 1 its configuration so (a sealed memfd, `container-init --config-fd 3`), never
/// as a file in the container's view.
pub fn spawn_passing(spec: &SandboxSpec, stdio: Stdio, passed: Option<OwnedFd>) -> Result<Pending, SandboxError> {
    spawn_passing_fds(spec, stdio, [passed, None, None])
}

/// [`spawn_passing`] with up to [`PASSED_MAX`] fds: the program finds `passed[i]` at
/// fd [`PASSED_FD`]` + i` (a `None` leaves that number closed). The runtime passes
/// PID 1 its configuration at 3, its cgroup2 folder at 4 and the write end of its
/// readiness pipe at 5.
pub fn spawn_passing_fds(
    spec: &SandboxSpec,
    stdio: Stdio,
    passed: [Option<OwnedFd>; PASSED_MAX],
) -> Result<Pending, SandboxError> {
    check_spec(spec)?;
    let owned = match &spec.user_ns {
        Some(maps) => Some(user_namespace(maps, spec.net == NetNs::New)?),
        None => None,
    };
    let ns = NsFds {
        user: owned.as_ref().map(|o| o.user.as_raw_fd()),
        net: owned.as_ref().and_then(|o| o.net.as_ref().map(|n| n.as_raw_fd())),
    };
    let mut b = build(spec, &ns)?;

    // The parent's copy of a per-spawn exec fd, closed right after clone3.
    let mut exe: Option<OwnedFd> = None;
    let argv = spec.program.argv();
    let (exec, exec_step) = match &spec.program {
        Program::Path(a) => (ExecTarget::Path { path: cstr(&a[0])? }, format!("exec {}", a[0])),
        Program::SelfExe(_) => {
            (ExecTarget::Fd { fd: self_exe_memfd()? }, "exec the sealed copy of /proc/self/exe".to_string())
        }
        Program::Exe { path, .. } => {
            let (fd, step) = exe_fd(path)?;
            let target = ExecTarget::Fd { fd: fd.as_raw_fd() };
            exe = Some(fd);
            (target, step)
        }
    };
    b.push_post(exec_step.clone(), SetupStep::Exec(exec));
    let mut what: Vec<String> = Vec::new();
    let mut ops: Vec<SetupStep> = Vec::new();
    // First the cgroups, then the cgroup namespace: it is rooted where we are then.
    let cgroups = CgroupFds::open(&spec.cgroups)?;
    for (path, fd) in &cgroups.v1 {
        what.push(format!("join the cgroup {}", path.display()));
        ops.push(SetupStep::JoinCgroup { fd: fd.as_raw_fd(), v2: false });
    }
    if let Some((path, _, procs)) = &cgroups.v2 {
        what.push(format!("join the cgroup {}", path.display()));
        ops.push(SetupStep::JoinCgroup { fd: procs.as_raw_fd(), v2: true });
    }
    if cgroup_ns(spec) {
        what.push("unshare the cgroup namespace".into());
        ops.push(SetupStep::UnshareCgroup);
    }
    // The sources are opened next, before the child shadows anything.
    for (slot, source) in b.sources.iter().enumerate() {
        what.push(format!("open {}", source.shown()));
        ops.push(match source {
            Source::Path(path) => SetupStep::OpenSource { slot, path: path.clone() },
            Source::Beneath { base, path } => {
                SetupStep::OpenSourceBeneath { slot, base: base.clone(), path: path.clone(), dir: true }
            }
        });
    }
    for (w, op) in b.pre {
        what.push(w);
        ops.push(op);
    }
    what.push("pivot_root into the new root".into());
    ops.push(SetupStep::Pivot);
    for (w, op) in b.post {
        what.push(w);
        ops.push(op);
    }

    let argv_store: Vec<CString> = argv.iter().map(cstr).collect::<Result<_, _>>()?;
    let env_store: Vec<CString> = spec
        .env
        .iter()
        .map(|(k, v)| {
            if k.is_empty() || k.contains('=') {
                return Err(SandboxError::Spec(format!("bad environment name {k:?}")));
            }
            cstr(format!("{k}={v}"))
        })
        .collect::<Result<_, _>>()?;
    let mut argv_ptrs: Vec<*const libc::c_char> = argv_store.iter().map(|c| c.as_ptr()).collect();
    argv_ptrs.push(std::ptr::null());
    let mut env_ptrs: Vec<*const libc::c_char> = env_store.iter().map(|c| c.as_ptr()).collect();
    env_ptrs.push(std::ptr::null());

    let stdio_fds = [high_fd(stdio.stdin)?, high_fd(stdio.stdout)?, high_fd(stdio.stderr)?];
    let raw_stdio = [0, 1, 2].map(|i| stdio_fds[i].as_ref().map_or(-1, |f| f.as_raw_fd()));
    // The fds to place start above every fd the child may still need at 3..=5
    // until the exec.
    let passed = passed.map(|fd| high_fd_from(fd, 10)).into_iter().collect::<Result<Vec<_>, _>>()?;
    let slots = b.sources.iter().map(|_| std::cell::Cell::new(-1)).collect();
    let into_cgroup = std::cell::Cell::new(cgroups.v2.is_some());
    let root_ids = b.root_ids.map_or((-1, -1), |(u, g)| (u as c_int, g as c_int));
    let script = SetupScript {
        ops,
        slots,
        argv: argv_ptrs,
        envp: env_ptrs,
        stdio: raw_stdio,
        passed: [0, 1, 2].map(|i| passed[i].as_ref().map_or(-1, |f| f.as_raw_fd())),
        into_cgroup,
        userns: ns.user.unwrap_or(-1),
        root_ids,
    };

    // With a user namespace the child starts as host root in namespaces host root
    // owns (mount, pid, uts, ipc, cgroup), joins the network namespace the user
    // namespace owns, sets everything up, and enters the user namespace last: see
    // `user_namespace`.
    let mut flags =
        libc::CLONE_NEWNS | libc::CLONE_NEWPID | libc::CLONE_NEWUTS | libc::CLONE_NEWIPC | libc::CLONE_PIDFD;
    if spec.net == NetNs::New && ns.net.is_none() {
        flags |= libc::CLONE_NEWNET;
    }
    // No CLONE_NEWCGROUP here: the kernel would root the namespace at *our* cgroups
    // (it copies the namespaces before it moves the child into `args.cgroup`); the
    // child unshares it itself once it is in all of the container's cgroups. No
    // CLONE_NEWUSER either: the holder made the user namespace (see above).

    let keeper = spec.keeper.as_ref().map(KeeperExec::new).transpose()?;
    let guard = SPAWN_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let (parent_sock, child_sock) =
        socketpair(AddressFamily::Unix, SockType::Stream, None, SockFlag::SOCK_CLOEXEC).map_err(os("socketpair"))?;
    let mut pidfd: c_int = -1;
    let mut args = CloneArgs::new(flags as u64);
    args.pidfd = &mut pidfd as *mut c_int as u64;
    if let Some((_, dir, _)) = &cgroups.v2 {
        args.flags |= CLONE_INTO_CGROUP;
        args.cgroup = dir.as_raw_fd() as u64;
    }
    let child_raw = child_sock.as_raw_fd();
    let kept = keeper.is_some();
    let (ret, clone_err) = match &keeper {
        None => clone_with_fallback(&mut args, &script, parent_sock.as_raw_fd(), child_raw),
        Some(k) => clone_kept(k, &mut args, &script, parent_sock.as_raw_fd(), child_raw, &mut pidfd),
    };
    drop(child_sock);
    drop(exe);
    drop(guard);
    drop(stdio_fds);
    drop(passed);
    drop(cgroups);
    if ret < 0 {
        return Err(SandboxError::Os { what: "clone3", source: clone_err });
    }
    let pid = Pid::from_raw(ret as i32);
    // SAFETY: CLONE_PIDFD stored a new fd that we own.
    let pidfd = (pidfd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(pidfd) });
    let mut pending = Pending { pid, pidfd, sock: Some(parent_sock), exec_step, kept };
    // The child inherited the namespace fds it needs.
    drop(owned);
    match pending.recv()? {
        Some((child::TAG_READY, _, _)) => Ok(pending),
        Some((_, step, errno)) => {
            pending.reap();
            Err(SandboxError::Setup {
                step: what.get(step as usize).cloned().unwrap_or_else(|| format!("step {step}")),
                source: std::io::Error::from_raw_os_error(errno),
            })
        }
        None => Err(SandboxError::ChildDied(pending.reap())),
    }
}

/// Host uid and gid of the container's root (inside id 0) under `maps`.
fn root_ids(maps: &IdMap) -> (u32, u32) {
    let find = |v: &[IdRange]| v.iter().find(|r| r.inside == 0).map_or(0, |r| r.outside);
    (find(&maps.uids), find(&maps.gids))
}

/// Raw fds of the namespaces the child joins (they stay open in the parent until
/// the child has them).
struct NsFds {
    user: Option<RawFd>,
    net: Option<RawFd>,
}

/// A container's user namespace (and the network namespace it owns).
struct OwnedNs {
    user: OwnedFd,
    net: Option<OwnedFd>,
}

/// Make the container's user namespace, with `maps` written, and (with `new_net`) a
/// network namespace it owns, so that the container's root administers its own
/// network (binds low ports, configures a tun device) and nothing else.
///
/// Why a separate process: every mount the container gets is made by its child as
/// *host root*, in a mount namespace host root owns (idmapped mounts need the
/// capability over the host file system), and only then does the child enter this
/// user namespace and copy its mount namespace into one the user namespace owns.
/// That copy is what makes the kernel lock the mounts against the container's root:
/// a read-only bind cannot be remounted read-write, a mask cannot be unmounted.
/// The namespaces are made by a short-lived holder (`clone3(CLONE_NEWUSER |
/// CLONE_NEWNET)`, which then only waits to be killed); we keep fds to them.
fn user_namespace(maps: &IdMap, new_net: bool) -> Result<OwnedNs, SandboxError> {
    let mut flags = libc::CLONE_NEWUSER as u64;
    if new_net {
        flags |= libc::CLONE_NEWNET as u64;
    }
    let args = CloneArgs::new(flags);
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: clone3 without CLONE_VM behaves like fork; the child only makes raw
    // syscalls (prctl, getppid, pause, _exit) until the SIGKILL below, and never
    // returns.
    let ret = unsafe { args.clone3() };
    if ret == 0 {
        // SAFETY: raw syscalls only. If we are killed before the SIGKILL below, the
        // holder goes with our thread instead of waiting forever.
        unsafe {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong);
            if libc::getppid() != parent {
                libc::_exit(0);
            }
            loop {
                libc::pause();
            }
        }
    }
    if ret < 0 {
        return Err(SandboxError::Os { what: "clone3 a user namespace", source: std::io::Error::last_os_error() });
    }
    let holder = Pid::from_raw(ret as i32);
    let result = (|| {
        write_maps(holder, maps)?;
        let open = |ns: &str| {
            std::fs::File::open(format!("/proc/{holder}/ns/{ns}"))
                .map(OwnedFd::from)
                .map_err(|source| SandboxError::Os { what: "open the new user namespace", source })
        };
        Ok(OwnedNs { user: open("user")?, net: if new_net { Some(open("net")?) } else { None } })
    })();
    let _ = nix::sys::signal::kill(holder, nix::sys::signal::Signal::SIGKILL);
    while let Err(nix::Error::EINTR) = waitpid(holder, None) {}
    result
}

fn write_maps(pid: Pid, maps: &IdMap) -> Result<(), SandboxError> {
    let render =
        |v: &[IdRange]| v.iter().map(|r| format!("{} {} {}\n", r.inside, r.outside, r.count)).collect::<String>();
    for (file, text) in [("uid_map", render(&maps.uids)), ("gid_map", render(&maps.gids))] {
        std::fs::write(format!("/proc/{pid}/{file}"), text)
            .map_err(|source| SandboxError::Os { what: "write the user namespace id map", source })?;
    }
    Ok(())
}

impl Pending {
    /// Host pid of the child (for `/proc/<pid>/ns/net` and friends).
    pub fn pid(&self) -> i32 {
        self.pid.as_raw()
    }

    fn send(&self, tag: u8) -> Result<(), SandboxError> {
        let sock = self.sock.as_ref().map_or(-1, |s| s.as_raw_fd());
        // SAFETY: sends one byte from a stack variable; MSG_NOSIGNAL avoids SIGPIPE.
        let n = unsafe { libc::send(sock, (&tag as *const u8).cast(), 1, libc::MSG_NOSIGNAL) };
        if n != 1 {
            return Err(SandboxError::Os {
                what: "write to the container child",
                source: std::io::Error::last_os_error(),
            });
        }
        Ok(())
    }

    /// One message from the child, or None on EOF.
    fn recv(&self) -> Result<Option<(u8, u32, i32)>, SandboxError> {
        let Some(sock) = self.sock.as_ref() else { return Ok(None) };
        let mut f =
            File::from(sock.try_clone().map_err(|source| SandboxError::Os { what: "dup the sync socket", source })?);
        let mut buf = [0u8; child::MSG_LEN];
        let mut got = 0;
        while got < buf.len() {
            match f.read(&mut buf[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(source) => return Err(SandboxError::Os { what: "read from the container child", source }),
            }
        }
        if got < buf.len() {
            return Ok(None);
        }
        let step = u32::from_le_bytes([buf[1], buf[2], buf[3], buf[4]]);
        let errno = i32::from_le_bytes([buf[5], buf[6], buf[7], buf[8]]);
        Ok(Some((buf[0], step, errno)))
    }

    /// Wait for the child to exit; describes how it ended.
    fn reap(&mut self) -> String {
        self.sock = None;
        let pid = std::mem::replace(&mut self.pid, Pid::from_raw(0));
        if pid.as_raw() <= 0 {
            return "already reaped".into();
        }
        if self.kept {
            // The keeper reaps it (and records how it ended): wait on the pidfd.
            if let Some(fd) = &self.pidfd {
                let mut p = libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
                // SAFETY: poll on one pollfd of ours.
                unsafe { libc::poll(&mut p, 1, 10_000) };
            }
            return "exited (its keeper recorded how)".into();
        }
        loop {
            match waitpid(pid, None) {
                Ok(WaitStatus::Exited(_, c)) => return format!("exit code {c}"),
                Ok(WaitStatus::Signaled(_, s, _)) => return format!("killed by {s}"),
                Ok(_) => {}
                Err(nix::Error::EINTR) => {}
                Err(e) => return format!("waitpid: {e}"),
            }
        }
    }

    /// Let the child exec its program. Returns once the exec succeeded (the sync
    /// socket closed on exec) or with the exec error.
    pub fn release(mut self) -> Result<InitProcess, SandboxError> {
        self.send(child::TAG_GO)?;
        match self.recv()? {
            None => {
                self.sock = None;
                let pid = std::mem::replace(&mut self.pid, Pid::from_raw(0));
                let pidfd = self.pidfd.take().ok_or_else(|| SandboxError::Os {
                    what: "clone3 returned no pidfd",
                    source: std::io::Error::from_raw_os_error(libc::ENOSYS),
                })?;
                Ok(InitProcess { pid: pid.as_raw(), pidfd })
            }
            Some((_, _, errno)) => {
                self.reap();
                Err(SandboxError::Setup {
                    step: self.exec_step.clone(),
                    source: std::io::Error::from_raw_os_error(errno),
                })
            }
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if self.pid.as_raw() > 0 {
            // The child is blocked in setup and not yet reaped, so its pid cannot have
            // been reused; SIGKILL here is cleanup, not synchronisation. A keeper's
            // child may be reaped at any time: it is signalled through its pidfd.
            match (&self.pidfd, self.kept) {
                (Some(fd), true) => {
                    // SAFETY: pidfd_send_signal on our pidfd, no siginfo.
                    unsafe {
                        libc::syscall(
                            libc::SYS_pidfd_send_signal,
                            fd.as_raw_fd(),
                            libc::SIGKILL,
                            std::ptr::null::<libc::siginfo_t>(),
                            0,
                        );
                    }
                }
                (None, true) => {}
                _ => {
                    let _ = nix::sys::signal::kill(self.pid, nix::sys::signal::Signal::SIGKILL);
                }
            }
            self.reap();
        }
    }
}

impl InitProcess {
    /// Block until PID 1 exits (this reaps it).
    pub fn wait(&mut self) -> Result<Exit, SandboxError> {
        loop {
            match waitpid(Pid::from_raw(self.pid), None) {
                Ok(WaitStatus::Exited(_, c)) => return Ok(Exit::Code(c)),
                Ok(WaitStatus::Signaled(_, s, _)) => return Ok(Exit::Signal(s as i32)),
                Ok(_) | Err(nix::Error::EINTR) => {}
                Err(e) => return Err(os("waitpid")(e)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_paths_are_normalised_and_checked() {
        assert_eq!(container_path("/srv//data/./x").ok(), Some(PathBuf::from("/srv/data/x")));
        assert!(container_path("srv").is_err());
        assert!(container_path("/srv/../etc").is_err());
        assert!(container_path("/").is_err());
    }

    #[test]
    fn in_root_splits_relative_paths() {
        let p = in_root(Path::new("/dev/net/tun")).expect("path");
        assert_eq!(p.path.as_bytes(), b"dev/net/tun");
        assert_eq!(p.parent.as_bytes(), b"dev/net");
        assert_eq!(p.name.as_bytes(), b"tun");
        let top = in_root(Path::new("/bin")).expect("path");
        assert_eq!(top.parent.as_bytes(), b".");
        let all: Vec<Vec<u8>> =
            prefixes(Path::new("/a/b/c")).expect("prefixes").into_iter().map(|p| p.path.into_bytes()).collect();
        assert_eq!(all, [b"a".to_vec(), b"a/b".to_vec(), b"a/b/c".to_vec()]);
    }

    #[test]
    fn spec_checks() {
        let mut s = SandboxSpec::new("h", RootFs::Host, Program::Path(vec!["sh".into()]));
        assert!(check_spec(&s).is_err(), "relative program");
        s.program = Program::Path(vec!["/bin/sh".into()]);
        assert!(check_spec(&s).is_ok());
        s.hostname = String::new();
        assert!(check_spec(&s).is_err());
        s.hostname = "h".into();
        s.user_ns = Some(IdMap { uids: vec![], gids: vec![] });
        assert!(check_spec(&s).is_err(), "root unmapped");
    }
}
