//! Attach: run a command inside a running container by joining its namespaces
//! (what `container exec NAME -- CMD…` and `container shell NAME` call).
//!
//! Invariant: the calling process never changes its own namespaces, root, working
//! directory, credentials or signal mask, and may be multi-threaded. Everything that
//! enters the container happens in a forked helper that only makes raw syscalls on data
//! prepared before the fork (or, re-executed, read from its plan first); the command is
//! forked once more from the helper, because `setns` into a PID namespace only moves a
//! process's *children* there. The command gets exactly fds 0, 1 and 2 (pipes of the
//! relay or a terminal of the container's own devpts, never the caller's fds), a fresh
//! session, default signal dispositions and an empty signal mask. When [`exec`]
//! returns, the helper has been reaped and, with a terminal, the caller's terminal
//! modes are restored.
//!
//! Usage:
//! ```no_run
//! use container::exec::attach::*;
//! let mut opts = ExecOpts::new(vec!["sh".into(), "-c".into(), "hostname".into()]);
//! opts.env.insert("TERM".into(), "xterm".into());
//! let code = exec(1234, &opts, Stdio::inherit())?; // 1234: host pid of the container's PID 1
//! std::process::exit(code);
//! # Ok::<(), AttachError>(())
//! ```
//!
//! How it works: the caller opens everything it needs from the host side up front, as
//! fds (so errors name a path, and nothing depends on paths after joining): the
//! container's `/proc/<pid>/ns/*` for each namespace that differs from ours (user,
//! cgroup, ipc, uts, net, pid, mnt), `/proc/<pid>/root`, and the `cgroup.procs` files.
//! The helper then, in this order: closes every fd it does not need (another thread's
//! pipes must not be kept open by a process that never execs), moves the relay's pipes
//! onto its fds 0, 1, 2, lets go of the caller's controlling terminal (`TIOCNOTTY`; it
//! stays in the caller's process group), makes itself non-dumpable (so
//! `/proc/<pid>/exe`, `fd` and `mem` of it and of the command before its execve are out
//! of reach of anyone without CAP_SYS_PTRACE in the caller's user namespace), moves
//! itself into the cgroups (before joining the cgroup namespace, so both ends are
//! visible), joins the other namespaces with the mount namespace last, then the user
//! namespace, becoming its root (see [`NAMESPACES`] for why that order), `chroot`s to
//! the container's root, `chdir`s to the workdir,
//! and — for a terminal — opens `/dev/ptmx` *there* (the container's devpts instance)
//! and sends the master to the caller. It forks the command, forwards SIGHUP, SIGINT,
//! SIGQUIT, SIGTERM, SIGUSR1 and SIGUSR2 to it (the helper shares the caller's process
//! group, so a Ctrl-C on the caller's terminal reaches the command even without a pty),
//! waits for it and reports its status. It gets SIGHUP when the caller's thread dies
//! (`PR_SET_PDEATHSIG`), which it forwards as well.
//!
//! The command is never the caller's binary in a form container code could reopen
//! (the precondition of CVE-2019-5736: container root scanning `/proc` opens
//! `/proc/<pid>/exe` of the command before its execve, and later writes the host
//! binary through it). Between its fork and its execve the command runs as a copy of
//! the helper, and what it is a copy of is the helper's executable. So with
//! [`ExecOpts::helper`] set (the CLI sets [`HelperProgram::installed`]), the helper,
//! right after closing fds, setting its stdio and becoming non-dumpable — still in
//! the host's namespaces, where no container process sees it and where its dynamic
//! loader and libraries are the host's, never the container's — re-executes itself:
//! `container-init __exec-helper SOCK PLAN STEP`, from a read-only detached mount of
//! its folder as PID 1 is exec'd (a sealed memfd copy where the kernel cannot), with
//! the plan (the steps, argv, environment: `helper::EnterPlan`) as JSON in a memfd
//! and the fds it names kept open. [`helper_main`] reads it and runs the same steps;
//! what the container can catch is then `/container-init` on a mount nothing can make
//! writable (`EROFS`, `ETXTBSY`), as for its PID 1. runc does the same with a memfd
//! or overlayfs clone of itself (or the tiny `runc-dmz`), crun with a memfd clone;
//! this reuses the read-only mount of PID 1 and copies nothing. Non-dumpable on top
//! keeps `/proc/<pid>/{exe,fd,mem}` closed entirely to a container without
//! CAP_SYS_PTRACE in the host's user namespace (any container with a user namespace
//! or without that capability), and the command's execve makes it dumpable again as
//! any program.
//!
//! Helper → caller messages go over a `SOCK_SEQPACKET` socketpair, 9 bytes each:
//! `[tag, a: u32 LE, b: i32 LE]` — `E` (setup step `a` failed with errno `b`), `M`
//! (the pty master, as `SCM_RIGHTS`), `X` (exec failed with errno `b`), `S` (the command
//! ended: `a` = 0 exit code / 1 signal, `b` = the number).
//!
//! The caller's fds never reach the container: code inside with an fd of the admin's
//! terminal could type into it (TIOCSTI), and one of a file could read or write it. The
//! helper puts pipes (or /dev/null) on its fds 0, 1, 2 before anything else, and
//! without a terminal [`exec`] relays, in the calling thread with one poll loop over
//! non-blocking pipe ends and a bounded buffer per direction (no deadlock however much
//! either side writes without reading): the caller's stdin → the command's stdin pipe
//! (closed at the end of the caller's stdin: the command sees end of file), its stdout
//! and stderr pipes → the caller's stdout and stderr, byte for byte, until the command
//! has exited and both pipes are drained (or quiet for [`DRAIN_GRACE`], as below). Like
//! ssh, it reads the caller's stdin ahead of the command, but only by a few KiB (one
//! chunk and a one-page pipe): in a `while read` loop give `exec` `</dev/null` as with
//! `ssh -n`. Writes to a caller's fd that fail (EPIPE) close the pipe feeding it, so
//! the command gets EPIPE as it would writing there itself; like any Rust program, the
//! caller is expected to ignore SIGPIPE. With a terminal, [`exec`] relays through it:
//! the caller's stdin → master, master → the caller's stdout, until the command has
//! exited and the master is drained (all slave fds closed; if a background process
//! keeps the terminal, until the master has been quiet for [`DRAIN_GRACE`]). At EOF on
//! the caller's stdin the terminal's EOF character is sent, as `script(1)` does, so a
//! reading command sees end of file. If the caller's stdin is a terminal it is in raw
//! mode for the whole relay. The window size (of the caller's stdout, else stdin, when
//! a terminal) is set before the command starts and again after every SIGWINCH: a
//! handler writes to a self-pipe the relay polls (signalfd needs the signal blocked in
//! every thread, which a library cannot arrange). Only one relay at a time owns that
//! handler; a concurrent one re-checks the size every 250 ms instead.
//!
//! Exit status: the command's exit code, or 128 + the signal that killed it. A
//! command that cannot be executed gives 127 (not found) or 126 (anything else, e.g.
//! permission denied), with a shell-like message written to the given stderr.
//!
//! Caveats: a caller killed by a signal cannot restore its terminal (install
//! handlers in the CLI if that matters). If the relay fails (e.g. the caller's stdout
//! is closed), the master is closed and the helper gets SIGHUP, so the command is
//! hung up as by a closed terminal, and `exec` waits for it. The pid is trusted to
//! name the container while the fds are opened (a pid is not a stable handle).

use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use libc::c_int;

pub use super::sandbox::Stdio;
use super::supervisor::DEFAULT_PATH;

/// After the command exited, how long the relay keeps reading a terminal that
/// another process (e.g. a background job) still holds open.
pub const DRAIN_GRACE: Duration = Duration::from_millis(250);
/// How often a relay that does not own the SIGWINCH handler re-checks the size.
const WINCH_FALLBACK: Duration = Duration::from_millis(250);
/// Stop reading the caller's stdin while this much is waiting for the terminal.
const MAX_PENDING: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    #[error("invalid exec request: {0}")]
    Spec(String),
    #[error("container process {pid} is not running")]
    NotRunning { pid: i32 },
    #[error("cannot open {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{what}: {source}")]
    Os {
        what: &'static str,
        #[source]
        source: io::Error,
    },
    /// A step of entering the container failed; `step` says which.
    #[error("cannot enter container process {pid}: {step}: {source}")]
    Enter {
        pid: i32,
        step: String,
        #[source]
        source: io::Error,
    },
    #[error("the exec helper for container process {pid} ended without reporting the command's status ({how})")]
    HelperDied { pid: i32, how: String },
    #[error("cannot prepare the exec helper: {0}")]
    Helper(#[source] super::sandbox::SandboxError),
}

fn os(what: &'static str) -> impl FnOnce(io::Error) -> AttachError {
    move |source| AttachError::Os { what, source }
}

/// What to run and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOpts {
    /// `argv[0]` is looked up in the `PATH` of `env` *inside* the container unless it
    /// contains a '/'.
    pub argv: Vec<String>,
    /// The whole environment (nothing is inherited from the caller).
    pub env: BTreeMap<String, String>,
    /// Absolute path inside the container.
    pub workdir: String,
    /// Allocate a terminal in the container's devpts and relay through it.
    pub tty: bool,
    /// `cgroup.procs` files (host paths) to put the command into.
    pub cgroup_procs: Vec<PathBuf>,
    /// What the helper re-executes before it enters the container, so that the
    /// command is never a copy of the caller's binary (see the module docs). `None`:
    /// no re-exec; the command is a fork of the caller until its execve, shielded only
    /// by being non-dumpable (enough against a container without CAP_SYS_PTRACE in
    /// the caller's user namespace, not against one with it).
    pub helper: Option<HelperProgram>,
    /// Capabilities, no_new_privs and seccomp filter of the command, applied right
    /// before its `execve` (`exec::harden`); `None` keeps the helper's.
    pub security: Option<crate::vocab::plan::Security>,
}

impl ExecOpts {
    /// `PATH` set to the usual system folders, workdir "/", no terminal, no cgroups,
    /// no re-exec.
    pub fn new(argv: Vec<String>) -> Self {
        let mut env = BTreeMap::new();
        env.insert("PATH".to_string(), DEFAULT_PATH.to_string());
        ExecOpts { argv, env, workdir: "/".into(), tty: false, cgroup_procs: Vec::new(), helper: None, security: None }
    }
}

/// The first argument that makes a binary the exec helper: its `main` must hand the
/// rest to [`helper_main`] (`container-init` and `container` do).
pub const HELPER_ARG: &str = "__exec-helper";

/// A program the exec helper re-executes: one whose `main` runs [`helper_main`] when
/// its first argument is [`HELPER_ARG`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HelperProgram {
    /// A file (`container-init`), exec'd through a read-only detached mount of its
    /// folder as PID 1 is (a sealed memfd copy on kernels without one; see
    /// `sandbox::Program::Exe`): nothing is copied, and what the container can reach
    /// of it can never be written.
    Exe(PathBuf),
    /// A sealed memfd copy of the running binary (made once per process; the whole
    /// binary in shared memory): for when `container-init` is not installed.
    SelfExe,
}

impl HelperProgram {
    /// `container-init` next to the running executable, else our own binary.
    pub fn installed() -> HelperProgram {
        let init = std::env::current_exe()
            .ok()
            .and_then(|exe| Some(exe.parent()?.join("container-init")))
            .filter(|p| p.is_file());
        init.map_or(HelperProgram::SelfExe, HelperProgram::Exe)
    }
}

/// The fd of the program the helper re-executes (above 2, close-on-exec) and what it is.
fn helper_program(program: &HelperProgram) -> Result<(OwnedFd, String), AttachError> {
    match program {
        HelperProgram::Exe(path) => {
            let (fd, what) = super::sandbox::exe_fd(path).map_err(AttachError::Helper)?;
            Ok((above_stdio(fd)?, what))
        }
        HelperProgram::SelfExe => {
            let fd = super::sandbox::self_exe_memfd().map_err(AttachError::Helper)?;
            Ok((dup_high(fd)?, "exec the sealed copy of /proc/self/exe".into()))
        }
    }
}

/// The plan as JSON in a memfd (close-on-exec, above 2), for the re-executed helper.
fn plan_memfd(plan: &helper::EnterPlan) -> Result<OwnedFd, AttachError> {
    let json = serde_json::to_vec(plan).map_err(|e| os("encode the exec plan")(io::Error::other(e)))?;
    // SAFETY: a NUL-terminated name and valid flags.
    let raw = unsafe { libc::memfd_create(c"container-exec-plan".as_ptr(), libc::MFD_CLOEXEC) };
    if raw < 0 {
        return Err(os("memfd_create")(last_err()));
    }
    // SAFETY: memfd_create just returned this fd.
    let fd = above_stdio(unsafe { OwnedFd::from_raw_fd(raw) })?;
    let mut f = File::from(fd.try_clone().map_err(os("dup an fd"))?);
    io::Write::write_all(&mut f, &json).map_err(os("write the exec plan"))?;
    Ok(fd)
}

/// The exec helper after its re-exec: `PROGRAM __exec-helper SOCK PLAN STEP`, with
/// `args` the part after [`HELPER_ARG`]. Reads the plan (JSON) from the fd PLAN,
/// then enters the container and runs the command as the forked helper would have,
/// reporting on the socket SOCK (a failure before the steps as step STEP). Returns
/// only on a usage error; internal: `exec` starts it, it is not meant to be typed.
pub fn helper_main(args: &[std::ffi::OsString]) -> std::process::ExitCode {
    // SAFETY: prctl with plain integer arguments. First of all: no one inside may
    // reach this process's memory, fds or binary.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0 as libc::c_ulong) };
    let nums: Option<Vec<c_int>> = args.iter().map(|a| a.to_str()?.parse().ok()).collect();
    let Some(&[sock, plan_fd, step]) = nums.as_deref() else {
        eprintln!("usage: container-init {HELPER_ARG} SOCK PLAN STEP (internal: started by `container exec`)");
        return std::process::ExitCode::from(2);
    };
    let fail = |errno: c_int| -> ! {
        helper::send(sock, helper::TAG_FAILED, step as u32, errno);
        // SAFETY: _exit has no preconditions.
        unsafe { libc::_exit(1) }
    };
    // SAFETY: the caller handed us this fd for the plan; nothing else here uses it.
    let mut f = unsafe { File::from_raw_fd(plan_fd) };
    let mut json = Vec::new();
    use std::io::{Read, Seek};
    if let Err(e) = f.seek(io::SeekFrom::Start(0)).and_then(|_| f.read_to_end(&mut json)) {
        fail(e.raw_os_error().unwrap_or(libc::EIO));
    }
    drop(f);
    let Ok(plan) = serde_json::from_slice::<helper::EnterPlan>(&json) else { fail(libc::EINVAL) };
    // Exec'd from an fd, the kernel named us after its number; `ps` inside shows this
    // until the command's execve.
    // SAFETY: PR_SET_NAME reads a NUL-terminated string.
    unsafe { libc::prctl(libc::PR_SET_NAME, c"container-exec".as_ptr()) };
    let hardening = match plan.security.as_ref().map(super::harden::Hardening::for_process).transpose() {
        Ok(h) => h,
        Err(_) => fail(libc::EINVAL),
    };
    let script = helper::EnterScript::new(plan, Vec::new(), [0, 1, 2], hardening);
    // SAFETY: a fresh single-threaded process; `script` lives until the end (the
    // steps end with _exit).
    unsafe { helper::run_reexecuted(&script) }
}

/// Namespaces in joining order: the mount namespace after the others (it changes
/// what paths mean; everything is an fd by then), the user namespace last. The
/// sandbox makes the container's mount, pid, uts, ipc and cgroup namespaces as host
/// root, not in its user namespace; only host root may join those, so the helper
/// joins them first and drops to the container's root by entering its user
/// namespace at the end.
const NAMESPACES: [(&str, c_int); 7] = [
    ("cgroup", libc::CLONE_NEWCGROUP),
    ("ipc", libc::CLONE_NEWIPC),
    ("uts", libc::CLONE_NEWUTS),
    ("net", libc::CLONE_NEWNET),
    ("pid", libc::CLONE_NEWPID),
    ("mnt", libc::CLONE_NEWNS),
    ("user", libc::CLONE_NEWUSER),
];

/// Signals the helper passes on to the command.
const FORWARDED: [c_int; 6] = [libc::SIGHUP, libc::SIGINT, libc::SIGQUIT, libc::SIGTERM, libc::SIGUSR1, libc::SIGUSR2];

fn cstr(what: &str, s: &str) -> Result<CString, AttachError> {
    CString::new(s).map_err(|_| AttachError::Spec(format!("{what} contains a NUL byte: {s:?}")))
}

/// Where `execve` is tried, in order, for `argv0` with the command's `PATH`
/// (as execvp does: an empty entry means the working directory).
fn exec_candidates(argv0: &str, path_var: &str) -> Vec<String> {
    if argv0.contains('/') {
        return vec![argv0.to_string()];
    }
    path_var.split(':').map(|dir| if dir.is_empty() { argv0.to_string() } else { format!("{dir}/{argv0}") }).collect()
}

/// The message a shell would print for a command it cannot execute.
fn exec_failure_message(argv0: &str, errno: i32) -> String {
    if errno == libc::ENOENT && !argv0.contains('/') {
        format!("container: {argv0}: command not found\n")
    } else {
        format!("container: {argv0}: {}\n", nix::errno::Errno::from_raw(errno).desc())
    }
}

fn last_err() -> io::Error {
    io::Error::last_os_error()
}

/// `fd` moved above 2 (close-on-exec) if it is one of 0..2, so the command's dup2
/// onto 0, 1, 2 never clobbers another fd we pass along.
fn above_stdio(fd: OwnedFd) -> Result<OwnedFd, AttachError> {
    if fd.as_raw_fd() > 2 {
        return Ok(fd);
    }
    dup_high(fd.as_raw_fd())
}

/// A pipe (read end, write end), both close-on-exec and above 2.
fn pipe() -> Result<(OwnedFd, OwnedFd), AttachError> {
    let mut p = [-1 as c_int; 2];
    // SAFETY: pipe2 fills the two-element array.
    if unsafe { libc::pipe2(p.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(os("make a pipe")(last_err()));
    }
    // SAFETY: pipe2 just returned these fds.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(p[0]), OwnedFd::from_raw_fd(p[1])) };
    Ok((above_stdio(r)?, above_stdio(w)?))
}

/// O_NONBLOCK on an fd whose file description only we use.
fn set_nonblocking(fd: RawFd) {
    // SAFETY: fcntl on an fd we own.
    unsafe {
        let fl = libc::fcntl(fd, libc::F_GETFL);
        libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK);
    }
}

fn dup_high(fd: RawFd) -> Result<OwnedFd, AttachError> {
    // SAFETY: fcntl on an fd the caller owns or borrows.
    let r = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) };
    if r < 0 {
        return Err(os("dup an fd")(last_err()));
    }
    // SAFETY: fcntl just returned this new fd.
    Ok(unsafe { OwnedFd::from_raw_fd(r) })
}

/// The container's namespaces that differ from ours, and its root, as fds.
struct EnterTarget {
    namespaces: Vec<(&'static str, c_int, OwnedFd)>,
    root: OwnedFd,
}

fn open_target(pid: i32) -> Result<EnterTarget, AttachError> {
    if pid <= 0 {
        return Err(AttachError::Spec(format!("{pid} is not a process id")));
    }
    // ENOENT/ESRCH from /proc/<pid>/… means gone (or a zombie, whose namespaces are
    // released already); either way there is nothing to join.
    let gone = |path: String| {
        move |e: io::Error| match e.raw_os_error() {
            Some(libc::ENOENT) | Some(libc::ESRCH) => AttachError::NotRunning { pid },
            _ => AttachError::Open { path: path.into(), source: e },
        }
    };
    let mut namespaces = Vec::new();
    for (kind, nstype) in NAMESPACES {
        // The forking thread's namespaces are the helper's; a kernel without this
        // namespace type has no such file.
        let ours = match std::fs::metadata(format!("/proc/thread-self/ns/{kind}")) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(source) => {
                return Err(AttachError::Open { path: format!("/proc/thread-self/ns/{kind}").into(), source })
            }
        };
        let path = format!("/proc/{pid}/ns/{kind}");
        let file = File::open(&path).map_err(gone(path.clone()))?;
        let theirs = file.metadata().map_err(gone(path.clone()))?;
        if (theirs.dev(), theirs.ino()) != (ours.dev(), ours.ino()) {
            namespaces.push((kind, nstype, above_stdio(file.into())?));
        }
    }
    let path = format!("/proc/{pid}/root");
    let c = cstr("path", &path)?;
    // SAFETY: a NUL-terminated path; O_PATH only names the directory.
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(gone(path)(last_err()));
    }
    // SAFETY: open just returned this fd.
    let root = above_stdio(unsafe { OwnedFd::from_raw_fd(fd) })?;
    Ok(EnterTarget { namespaces, root })
}

/// The window size of `fd` if it is a terminal.
fn winsize(fd: RawFd) -> Option<libc::winsize> {
    // SAFETY: TIOCGWINSZ fills a zeroed struct on the stack.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ writes one `struct winsize` to the live stack `ws`; on a
    // non-terminal fd it fails with ENOTTY and writes nothing.
    (unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) } == 0).then_some(ws)
}

fn isatty(fd: RawFd) -> bool {
    // SAFETY: isatty only inspects the fd.
    unsafe { libc::isatty(fd) == 1 }
}

/// Run `opts` inside the container whose PID 1 has the host pid `pid`; returns the
/// command's exit code, or 128 + the signal that killed it. `stdio`: the fds the relay
/// reads the command's input from and writes its output to; `None` = ours.
pub fn exec(pid: i32, opts: &ExecOpts, stdio: Stdio) -> Result<i32, AttachError> {
    let argv0 = opts.argv.first().ok_or_else(|| AttachError::Spec("empty command".into()))?;
    if argv0.is_empty() {
        return Err(AttachError::Spec("empty program name".into()));
    }
    if !opts.workdir.starts_with('/') {
        return Err(AttachError::Spec(format!("workdir {:?} is not an absolute path", opts.workdir)));
    }
    let argv_store: Vec<CString> = opts.argv.iter().map(|a| cstr("argument", a)).collect::<Result<_, _>>()?;
    let env_store: Vec<CString> = opts
        .env
        .iter()
        .map(|(k, v)| {
            if k.is_empty() || k.contains('=') {
                return Err(AttachError::Spec(format!("bad environment variable name {k:?}")));
            }
            cstr("environment", &format!("{k}={v}"))
        })
        .collect::<Result<_, _>>()?;
    let path_var = opts.env.get("PATH").map_or(DEFAULT_PATH, String::as_str);
    let candidates: Vec<CString> =
        exec_candidates(argv0, path_var).iter().map(|c| cstr("program path", c)).collect::<Result<_, _>>()?;
    let workdir = cstr("workdir", &opts.workdir)?;

    let target = open_target(pid)?;
    let mut cgroups = Vec::new();
    for path in &opts.cgroup_procs {
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(|source| AttachError::Open { path: path.clone(), source })?;
        cgroups.push((path, above_stdio(f.into())?));
    }

    let raw = |fd: &Option<OwnedFd>, default: RawFd| fd.as_ref().map_or(default, |f| f.as_raw_fd());
    let (input, output, errout) = (raw(&stdio.stdin, 0), raw(&stdio.stdout, 1), raw(&stdio.stderr, 2));
    // The helper's (and so the command's) fds 0, 1, 2, set first thing after the
    // fork: never the caller's. Without a terminal, pipes the relay owns; with one,
    // /dev/null until the command puts the terminal's slave there.
    let (child_stdio, pipes): ([OwnedFd; 3], Option<Pipes>) = if opts.tty {
        let null = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/null")
            .map_err(|source| AttachError::Open { path: "/dev/null".into(), source })?;
        let null = above_stdio(null.into())?;
        ([dup_high(null.as_raw_fd())?, dup_high(null.as_raw_fd())?, null], None)
    } else {
        let (cmd_in, to_cmd) = pipe()?;
        let (from_out, cmd_out) = pipe()?;
        let (from_err, cmd_err) = pipe()?;
        for fd in [&to_cmd, &from_out, &from_err] {
            set_nonblocking(fd.as_raw_fd());
        }
        // One page: the relay reads the caller's stdin only this far ahead of the
        // command (a failure just leaves the default size).
        // SAFETY: fcntl on a pipe we own.
        unsafe { libc::fcntl(to_cmd.as_raw_fd(), libc::F_SETPIPE_SZ, CALLER_CHUNK as c_int) };
        ([cmd_in, cmd_out, cmd_err], Some(Pipes { stdin: to_cmd, stdout: from_out, stderr: from_err }))
    };
    let initial_size =
        if opts.tty { [output, input].into_iter().find(|&fd| isatty(fd)).and_then(winsize) } else { None };

    let (ours, theirs) = {
        let mut sv = [-1 as c_int; 2];
        // SAFETY: socketpair fills the two-element array.
        let r =
            unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC, 0, sv.as_mut_ptr()) };
        if r != 0 {
            return Err(os("socketpair")(last_err()));
        }
        // SAFETY: socketpair just returned these two fds.
        let (a, b) = unsafe { (OwnedFd::from_raw_fd(sv[0]), OwnedFd::from_raw_fd(sv[1])) };
        (a, above_stdio(b)?)
    };

    // The helper's steps, each with the description an error will carry.
    let mut ops = Vec::new();
    let mut steps: Vec<String> = Vec::new();
    for (path, fd) in &cgroups {
        ops.push(helper::EnterStep::Cgroup { fd: fd.as_raw_fd() });
        steps.push(format!("join the cgroup {}", path.display()));
    }
    for (kind, nstype, fd) in &target.namespaces {
        let fd = fd.as_raw_fd();
        ops.push(if *nstype == libc::CLONE_NEWUSER {
            helper::EnterStep::JoinUser { fd }
        } else {
            helper::EnterStep::Setns { fd, nstype: *nstype }
        });
        steps.push(format!("join its {kind} namespace"));
    }
    ops.push(helper::EnterStep::Chroot { root: target.root.as_raw_fd() });
    steps.push("change root to its root directory".into());
    ops.push(helper::EnterStep::Chdir { path: workdir });
    steps.push(format!("change directory to {}", opts.workdir));
    if opts.tty {
        let winsize = initial_size.map(|w| [w.ws_row, w.ws_col, w.ws_xpixel, w.ws_ypixel]);
        ops.push(helper::EnterStep::OpenPty { winsize });
        steps.push("allocate a terminal from its /dev/ptmx".into());
    }
    ops.push(helper::EnterStep::Run);
    steps.push("start the command".into());
    let first_command_step = steps.len() as u32;
    steps.push("start a new session for the command".into());
    steps.push("make the terminal the command's controlling terminal".into());
    steps.push("set up the command's stdin, stdout and stderr".into());
    steps.push("give the command a new session keyring, drop its capabilities and install its seccomp filter".into());

    let mut keep: Vec<c_int> = vec![theirs.as_raw_fd(), target.root.as_raw_fd()];
    keep.extend(target.namespaces.iter().map(|(_, _, fd)| fd.as_raw_fd()));
    keep.extend(cgroups.iter().map(|(_, fd)| fd.as_raw_fd()));
    keep.extend(child_stdio.iter().map(|fd| fd.as_raw_fd()));

    let plan = helper::EnterPlan {
        ops,
        sock: theirs.as_raw_fd(),
        parent: std::process::id() as libc::pid_t,
        candidates,
        argv: argv_store,
        envp: env_store,
        first_command_step,
        security: opts.security.clone(),
    };
    // The program the helper re-executes, and the plan it reads after that.
    let reexec = match &opts.helper {
        None => None,
        Some(program) => {
            let (prog, what) = helper_program(program)?;
            let plan_fd = plan_memfd(&plan)?;
            let step = steps.len() as u32;
            steps.push(format!("start the exec helper ({what})"));
            let nums = [theirs.as_raw_fd(), plan_fd.as_raw_fd(), step as c_int];
            let argv0 = match program {
                HelperProgram::Exe(_) => "container-init",
                HelperProgram::SelfExe => "container",
            };
            let argv: Vec<CString> = [argv0.to_string(), HELPER_ARG.to_string()]
                .into_iter()
                .chain(nums.iter().map(|n| n.to_string()))
                .map(|a| cstr("argument", &a))
                .collect::<Result<_, _>>()?;
            keep.extend([prog.as_raw_fd(), plan_fd.as_raw_fd()]);
            Some((prog, plan_fd, argv, step))
        }
    };
    keep.sort_unstable();
    keep.dedup();
    // The re-executed helper compiles the filter itself (it only gets the plan).
    let hardening = match (&reexec, &opts.security) {
        (None, Some(sec)) => Some(
            super::harden::Hardening::for_process(sec)
                .map_err(|e| AttachError::Spec(format!("the command's seccomp filter: {e}")))?,
        ),
        _ => None,
    };
    let script = helper::EnterScript::new(plan, keep, [0, 1, 2].map(|i| child_stdio[i].as_raw_fd()), hardening);
    let reexec_script = reexec.as_ref().map(|(prog, _, argv, step)| helper::Reexec {
        prog: prog.as_raw_fd(),
        argv: argv.iter().map(|c| c.as_ptr()).chain([std::ptr::null()]).collect(),
        step: *step,
    });

    // SAFETY: the child branch runs `helper::run_helper`, which only makes raw
    // syscalls on `script` and `reexec_script` (prepared above, never freed in the
    // child) and never returns: it ends with execveat or _exit.
    let child = unsafe { libc::fork() };
    if child < 0 {
        return Err(os("fork the exec helper")(last_err()));
    }
    if child == 0 {
        // SAFETY: see above.
        unsafe { helper::run_helper(&script, reexec_script.as_ref()) }
    }
    // Our copies of what only the helper needs; the helper's end must close here so
    // its death shows as EOF.
    drop(reexec);
    drop(theirs);
    drop(child_stdio);
    drop(cgroups);
    drop(target);

    let mut helper = Helper { pid: child, sock: ours, reaped: false };
    let mut session = Session::default();
    match pipes {
        None => run_tty(&mut helper, &mut session, input, output, initial_size)?,
        Some(pipes) => relay_pipes(&helper, &mut session, [input, output, errout], pipes)?,
    }
    let how = helper.reap();
    if let Some((step, errno)) = session.failed {
        return Err(AttachError::Enter {
            pid,
            step: steps.get(step as usize).cloned().unwrap_or_else(|| format!("step {step}")),
            source: io::Error::from_raw_os_error(errno),
        });
    }
    let Some(code) = session.status else {
        return Err(AttachError::HelperDied { pid, how });
    };
    if let Some(errno) = session.exec_error {
        // Like a shell: the reason goes to the command's stderr, the code says 126/127.
        let _ = write_all(errout, exec_failure_message(argv0, errno).as_bytes());
    }
    Ok(code)
}

/// One message from the helper.
enum Msg {
    Failed(u32, i32),
    Pty(OwnedFd),
    ExecFailed(i32),
    /// Exit code, or 128 + signal.
    Status(i32),
    Eof,
}

/// What the helper reported so far.
#[derive(Default)]
struct Session {
    status: Option<i32>,
    exec_error: Option<i32>,
    failed: Option<(u32, i32)>,
    lost: bool,
}

impl Session {
    fn finished(&self) -> bool {
        self.status.is_some() || self.failed.is_some() || self.lost
    }

    fn apply(&mut self, msg: Msg) -> Result<(), AttachError> {
        match msg {
            Msg::Failed(step, errno) => self.failed = Some((step, errno)),
            Msg::ExecFailed(errno) => self.exec_error = Some(errno),
            Msg::Status(code) => self.status = Some(code),
            Msg::Eof => self.lost = true,
            Msg::Pty(_) => {
                return Err(os("read from the exec helper")(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "unexpected terminal fd",
                )))
            }
        }
        Ok(())
    }
}

/// The forked helper. Dropping it unreaped (an error on our side) hangs up the
/// command — SIGHUP to the helper, which forwards it — and waits.
struct Helper {
    pid: libc::pid_t,
    sock: OwnedFd,
    reaped: bool,
}

/// Control buffer for one fd, aligned for `cmsghdr`.
#[repr(C, align(8))]
struct CmsgBuf([u8; 64]);

impl Helper {
    fn next(&self) -> Result<Msg, AttachError> {
        let mut buf = [0u8; 16];
        let mut cbuf = CmsgBuf([0; 64]);
        loop {
            let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
            // SAFETY: a zeroed msghdr pointing at stack buffers that outlive the call.
            let mut mh: libc::msghdr = unsafe { std::mem::zeroed() };
            mh.msg_iov = &mut iov;
            mh.msg_iovlen = 1;
            mh.msg_control = cbuf.0.as_mut_ptr().cast();
            mh.msg_controllen = cbuf.0.len() as _;
            // MSG_CMSG_CLOEXEC: a received fd must not leak into a concurrent fork+exec.
            // SAFETY: see above.
            let n = unsafe { libc::recvmsg(self.sock.as_raw_fd(), &mut mh, libc::MSG_CMSG_CLOEXEC) };
            if n < 0 {
                let e = last_err();
                if e.raw_os_error() == Some(libc::EINTR) {
                    continue;
                }
                return Err(os("read from the exec helper")(e));
            }
            let mut fd = None;
            // SAFETY: walking the control messages the kernel wrote into `cbuf`.
            unsafe {
                let mut c = libc::CMSG_FIRSTHDR(&mh);
                while !c.is_null() {
                    if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                        let data = libc::CMSG_DATA(c) as *const c_int;
                        let count = ((*c).cmsg_len as usize - libc::CMSG_LEN(0) as usize) / size_of::<c_int>();
                        for i in 0..count {
                            let owned = OwnedFd::from_raw_fd(std::ptr::read_unaligned(data.add(i)));
                            // Keep the first; any other is closed by the drop.
                            fd.get_or_insert(owned);
                        }
                    }
                    c = libc::CMSG_NXTHDR(&mh, c);
                }
            }
            if n == 0 {
                return Ok(Msg::Eof);
            }
            if n as usize != helper::MSG_LEN {
                return Err(os("read from the exec helper")(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("message of {n} bytes"),
                )));
            }
            let a = u32::from_le_bytes([buf[1], buf[2], buf[3], buf[4]]);
            let b = i32::from_le_bytes([buf[5], buf[6], buf[7], buf[8]]);
            return Ok(match (buf[0], fd) {
                (helper::TAG_FAILED, _) => Msg::Failed(a, b),
                (helper::TAG_PTY, Some(fd)) => Msg::Pty(fd),
                (helper::TAG_EXEC, _) => Msg::ExecFailed(b),
                (helper::TAG_STATUS, _) => Msg::Status(if a == 0 { b } else { 128 + b }),
                (tag, _) => {
                    return Err(os("read from the exec helper")(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("unexpected message {:?}", tag as char),
                    )))
                }
            });
        }
    }

    /// Wait for the helper to exit; describes how it ended.
    fn reap(&mut self) -> String {
        if self.reaped {
            return "already reaped".into();
        }
        self.reaped = true;
        let mut status: c_int = 0;
        loop {
            // SAFETY: waits for our own child, whose pid cannot be reused before this.
            let r = unsafe { libc::waitpid(self.pid, &mut status, 0) };
            if r == self.pid {
                break;
            }
            let e = last_err();
            if e.raw_os_error() != Some(libc::EINTR) {
                return format!("waitpid: {e}");
            }
        }
        if libc::WIFEXITED(status) {
            format!("exit code {}", libc::WEXITSTATUS(status))
        } else if libc::WIFSIGNALED(status) {
            format!("killed by signal {}", libc::WTERMSIG(status))
        } else {
            format!("wait status {status:#x}")
        }
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        if !self.reaped {
            // Not reaped yet, so the pid is still our child's.
            // SAFETY: kill on our own unreaped child.
            unsafe { libc::kill(self.pid, libc::SIGHUP) };
            self.reap();
        }
    }
}

/// Write everything, waiting when `fd` is non-blocking and full.
fn write_all(fd: RawFd, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        // SAFETY: writes from a live slice.
        let n = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
        if n < 0 {
            let e = last_err();
            match e.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::EAGAIN) => {
                    let mut p = libc::pollfd { fd, events: libc::POLLOUT, revents: 0 };
                    // SAFETY: polls one stack pollfd.
                    unsafe { libc::poll(&mut p, 1, -1) };
                    continue;
                }
                _ => return Err(e),
            }
        }
        buf = &buf[n as usize..];
    }
    Ok(())
}

/// The caller's terminal in raw mode; restored on drop (every exit path).
struct RawMode {
    fd: RawFd,
    saved: libc::termios,
}

impl RawMode {
    fn enter(fd: RawFd) -> Result<Option<RawMode>, AttachError> {
        if !isatty(fd) {
            return Ok(None);
        }
        // SAFETY: tcgetattr/tcsetattr on a terminal fd with stack structs.
        unsafe {
            let mut saved: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(fd, &mut saved) != 0 {
                return Err(os("read the terminal's modes")(last_err()));
            }
            let mut raw = saved;
            libc::cfmakeraw(&mut raw);
            if libc::tcsetattr(fd, libc::TCSADRAIN, &raw) != 0 {
                return Err(os("put the terminal in raw mode")(last_err()));
            }
            Ok(Some(RawMode { fd, saved }))
        }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        // SAFETY: restores the modes read in `enter`.
        unsafe { libc::tcsetattr(self.fd, libc::TCSADRAIN, &self.saved) };
    }
}

/// Write end of the SIGWINCH self-pipe, for the handler.
static WINCH_WRITE: AtomicI32 = AtomicI32::new(-1);
/// The self-pipe; made once and never closed, because a handler running on another
/// thread may still be writing to it after a relay ended.
static WINCH_PIPE: OnceLock<Option<(OwnedFd, OwnedFd)>> = OnceLock::new();
/// Only one relay at a time owns the process-wide SIGWINCH handler.
static WINCH_OWNER: Mutex<()> = Mutex::new(());

extern "C" fn on_winch(_: c_int) {
    let fd = WINCH_WRITE.load(Ordering::Relaxed);
    if fd >= 0 {
        // SAFETY: write is async-signal-safe; errno is saved and restored so the
        // interrupted code never sees ours. A full pipe (EAGAIN) already wakes the relay.
        unsafe {
            let errno = *libc::__errno_location();
            libc::write(fd, [1u8].as_ptr().cast(), 1);
            *libc::__errno_location() = errno;
        }
    }
}

/// Our SIGWINCH handler, installed for one relay; the previous action comes back on drop.
struct Winch {
    _owner: MutexGuard<'static, ()>,
    read: RawFd,
    old: libc::sigaction,
}

impl Winch {
    /// None when another relay owns the handler (or the pipe cannot be made).
    fn install() -> Option<Winch> {
        let owner = WINCH_OWNER.try_lock().ok()?;
        let (read, write) = WINCH_PIPE
            .get_or_init(|| {
                let mut p = [-1 as c_int; 2];
                // SAFETY: pipe2 fills the array.
                if unsafe { libc::pipe2(p.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } != 0 {
                    return None;
                }
                // SAFETY: pipe2 just returned these fds.
                Some(unsafe { (OwnedFd::from_raw_fd(p[0]), OwnedFd::from_raw_fd(p[1])) })
            })
            .as_ref()?;
        drain(read.as_raw_fd());
        WINCH_WRITE.store(write.as_raw_fd(), Ordering::Relaxed);
        // SAFETY: installs a handler that only calls write on a pipe; sigaction
        // structs on the stack.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_winch as *const () as usize;
            libc::sigemptyset(&mut sa.sa_mask);
            sa.sa_flags = libc::SA_RESTART;
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(libc::SIGWINCH, &sa, &mut old) != 0 {
                return None;
            }
            Some(Winch { _owner: owner, read: read.as_raw_fd(), old })
        }
    }
}

impl Drop for Winch {
    fn drop(&mut self) {
        // SAFETY: puts back the action saved in `install`.
        unsafe { libc::sigaction(libc::SIGWINCH, &self.old, std::ptr::null_mut()) };
    }
}

/// Read a non-blocking fd until it is empty.
fn drain(fd: RawFd) {
    let mut buf = [0u8; 64];
    // SAFETY: reads into a stack buffer.
    while unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) } > 0 {}
}

/// Receive the pty master, then relay until the command is done and the master drained.
fn run_tty(
    helper: &mut Helper,
    session: &mut Session,
    input: RawFd,
    output: RawFd,
    applied: Option<libc::winsize>,
) -> Result<(), AttachError> {
    let master = match helper.next()? {
        Msg::Pty(fd) => fd,
        other => return session.apply(other),
    };
    // Non-blocking, so a command that does not read its input cannot block the relay.
    // SAFETY: fcntl on the master we own.
    unsafe {
        let fl = libc::fcntl(master.as_raw_fd(), libc::F_GETFL);
        libc::fcntl(master.as_raw_fd(), libc::F_SETFL, fl | libc::O_NONBLOCK);
    }
    let raw = RawMode::enter(input)?;
    let result = relay(helper, session, &master, input, output, applied);
    drop(raw);
    if result.is_err() {
        // Hang up: closing the master sends SIGHUP to the command's terminal session.
        drop(master);
    }
    result
}

fn relay(
    helper: &Helper,
    session: &mut Session,
    master: &OwnedFd,
    input: RawFd,
    output: RawFd,
    applied: Option<libc::winsize>,
) -> Result<(), AttachError> {
    let m = master.as_raw_fd();
    let size_src = [output, input].into_iter().find(|&fd| isatty(fd));
    let winch = size_src.and_then(|_| Winch::install());
    // The size the helper set before the command started (read before the fork), so
    // a resize since then is applied on the first iteration.
    let mut last_size = applied.map(|w| (w.ws_row, w.ws_col, w.ws_xpixel, w.ws_ypixel));
    let mut master_open = true;
    let mut input_open = true;
    let mut pending: Vec<u8> = Vec::new();
    // Set once the helper reported the end: the last time the master had output.
    let mut quiet_since: Option<Instant> = None;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        // Re-read the size on every wake-up (cheap), so a resize is applied before
        // any input that was typed after it.
        if let Some(ws) = size_src.and_then(winsize) {
            let key = Some((ws.ws_row, ws.ws_col, ws.ws_xpixel, ws.ws_ypixel));
            if key != last_size {
                // SAFETY: TIOCSWINSZ with a stack struct; the kernel sends SIGWINCH
                // to the command's foreground process group.
                unsafe { libc::ioctl(m, libc::TIOCSWINSZ, &ws) };
                last_size = key;
            }
        }
        // Done once the command has ended and the master is drained (EIO), or has
        // been quiet for the grace period (someone else still holds the terminal).
        let finished = session.finished();
        let remaining = quiet_since.map(|t| DRAIN_GRACE.saturating_sub(t.elapsed()));
        if finished && (!master_open || remaining == Some(Duration::ZERO)) {
            return Ok(());
        }

        const SOCK: usize = 0;
        const MASTER: usize = 1;
        const INPUT: usize = 2;
        const WINCH: usize = 3;
        let mut fds = [libc::pollfd { fd: -1, events: 0, revents: 0 }; 4];
        if !finished {
            fds[SOCK] = libc::pollfd { fd: helper.sock.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        }
        if master_open {
            let out = if pending.is_empty() { 0 } else { libc::POLLOUT };
            fds[MASTER] = libc::pollfd { fd: m, events: libc::POLLIN | out, revents: 0 };
        }
        if input_open && !finished && pending.len() < MAX_PENDING {
            fds[INPUT] = libc::pollfd { fd: input, events: libc::POLLIN, revents: 0 };
        }
        if let Some(w) = &winch {
            fds[WINCH] = libc::pollfd { fd: w.read, events: libc::POLLIN, revents: 0 };
        }
        let timeout = match remaining {
            Some(d) => d.as_millis().max(1) as c_int,
            None if size_src.is_some() && winch.is_none() => WINCH_FALLBACK.as_millis() as c_int,
            None => -1,
        };
        // SAFETY: polls a stack array; entries with fd -1 are ignored by the kernel.
        if unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) } < 0 {
            let e = last_err();
            if e.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return Err(os("poll the terminal")(e));
        }
        let ready = |i: usize| fds[i].fd >= 0 && fds[i].revents != 0;

        if ready(SOCK) {
            let msg = helper.next()?;
            session.apply(msg)?;
            if session.finished() {
                quiet_since = Some(Instant::now());
            }
        }
        if ready(MASTER) && fds[MASTER].revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0 {
            // SAFETY: reads into our buffer.
            let n = unsafe { libc::read(m, buf.as_mut_ptr().cast(), buf.len()) };
            if n > 0 {
                write_all(output, &buf[..n as usize]).map_err(os("write the command's output"))?;
                if quiet_since.is_some() {
                    quiet_since = Some(Instant::now());
                }
            } else if n == 0 || !matches!(last_err().raw_os_error(), Some(libc::EAGAIN | libc::EINTR)) {
                // EIO: every slave fd is closed and everything written was read.
                master_open = false;
            }
        }
        if master_open && ready(MASTER) && fds[MASTER].revents & libc::POLLOUT != 0 && !pending.is_empty() {
            // SAFETY: writes from our buffer.
            let n = unsafe { libc::write(m, pending.as_ptr().cast(), pending.len()) };
            if n > 0 {
                pending.drain(..n as usize);
            } else if n < 0 && !matches!(last_err().raw_os_error(), Some(libc::EAGAIN | libc::EINTR)) {
                // Nobody holds the terminal any more: the input has no reader.
                pending.clear();
                input_open = false;
            }
        }
        if ready(INPUT) {
            // SAFETY: reads into our buffer.
            let n = unsafe { libc::read(input, buf.as_mut_ptr().cast(), buf.len()) };
            if n > 0 {
                pending.extend_from_slice(&buf[..n as usize]);
            } else if n == 0 || fds[INPUT].revents & libc::POLLNVAL != 0 {
                input_open = false;
                // Like script(1): end of our input is the terminal's EOF character,
                // so a command reading lines sees end of file.
                if let Some(eof) = canonical_eof(m) {
                    pending.push(eof);
                }
            } else if !matches!(last_err().raw_os_error(), Some(libc::EAGAIN | libc::EINTR)) {
                input_open = false;
            }
        }
        if ready(WINCH) {
            if let Some(w) = &winch {
                drain(w.read);
            }
        }
    }
}

/// Our ends of the command's stdio pipes (non-blocking; the command has the others).
struct Pipes {
    stdin: OwnedFd,
    stdout: OwnedFd,
    stderr: OwnedFd,
}

/// Bytes read from the command's stdout or stderr pipe, on their way to the caller's fd.
struct Outflow {
    pipe: Option<OwnedFd>,
    dest: RawFd,
    buf: Vec<u8>,
}

/// Most bytes written to one of the caller's fds at once: what a pipe takes without
/// blocking once it polls writable (the caller's fds may be blocking, and their file
/// descriptions are not ours to make non-blocking).
const CALLER_CHUNK: usize = libc::PIPE_BUF;

/// Without a terminal: relay the caller's stdin to the command's stdin pipe and its
/// stdout and stderr pipes to the caller's fds, until the command has ended and both
/// pipes are at end of file (or quiet for [`DRAIN_GRACE`]: a background process keeps
/// them) and everything read is written. At the end of the caller's stdin the pipe is
/// closed, so the command sees end of file. All our pipe ends are non-blocking and each
/// direction has its own bounded buffer, so a command that writes much while not
/// reading (or the reverse) never deadlocks the relay. If a caller's output fd fails
/// (e.g. EPIPE), the pipe feeding it is closed, so the command gets EPIPE as it would
/// writing there itself.
fn relay_pipes(
    helper: &Helper,
    session: &mut Session,
    [input, output, errout]: [RawFd; 3],
    pipes: Pipes,
) -> Result<(), AttachError> {
    let Pipes { stdin, stdout, stderr } = pipes;
    let mut to_cmd = Some(stdin);
    let mut input_open = true;
    let mut inbuf: Vec<u8> = Vec::new();
    let mut outs = [
        Outflow { pipe: Some(stdout), dest: output, buf: Vec::new() },
        Outflow { pipe: Some(stderr), dest: errout, buf: Vec::new() },
    ];
    let mut quiet_since: Option<Instant> = None;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let finished = session.finished();
        if finished {
            // Nobody reads the command's stdin any more.
            to_cmd = None;
            input_open = false;
        }
        if !input_open && inbuf.is_empty() {
            // End of file for the command.
            to_cmd = None;
        }
        let flushed = outs.iter().all(|o| o.buf.is_empty());
        let drained = outs.iter().all(|o| o.pipe.is_none());
        let remaining = quiet_since.map(|t| DRAIN_GRACE.saturating_sub(t.elapsed()));
        if finished && flushed && (drained || remaining == Some(Duration::ZERO)) {
            return Ok(());
        }

        const SOCK: usize = 0;
        const INPUT: usize = 1;
        const TO_CMD: usize = 2;
        const PIPE: [usize; 2] = [3, 4];
        const DEST: [usize; 2] = [5, 6];
        let mut fds = [libc::pollfd { fd: -1, events: 0, revents: 0 }; 7];
        if !finished {
            fds[SOCK] = libc::pollfd { fd: helper.sock.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        }
        if let Some(w) = &to_cmd {
            // Read ahead of the command as little as we can (one chunk, plus the pipe's
            // one page): what it never reads stays in the caller's stdin for whoever
            // reads it next, as far as a relay can manage that.
            if input_open && inbuf.is_empty() {
                fds[INPUT] = libc::pollfd { fd: input, events: libc::POLLIN, revents: 0 };
            }
            if !inbuf.is_empty() {
                fds[TO_CMD] = libc::pollfd { fd: w.as_raw_fd(), events: libc::POLLOUT, revents: 0 };
            }
        }
        for (i, o) in outs.iter().enumerate() {
            if let Some(p) = &o.pipe {
                if o.buf.len() < MAX_PENDING {
                    fds[PIPE[i]] = libc::pollfd { fd: p.as_raw_fd(), events: libc::POLLIN, revents: 0 };
                }
            }
            if !o.buf.is_empty() {
                fds[DEST[i]] = libc::pollfd { fd: o.dest, events: libc::POLLOUT, revents: 0 };
            }
        }
        // Waiting only for the grace period to end: but never while output is pending.
        let timeout = match remaining {
            Some(d) if flushed => d.as_millis().max(1) as c_int,
            _ => -1,
        };
        // SAFETY: polls a stack array; entries with fd -1 are ignored by the kernel.
        if unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) } < 0 {
            let e = last_err();
            if e.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return Err(os("poll the command's pipes")(e));
        }
        let ready = |i: usize| fds[i].fd >= 0 && fds[i].revents != 0;

        if ready(SOCK) {
            let msg = helper.next()?;
            session.apply(msg)?;
            if session.finished() {
                quiet_since = Some(Instant::now());
            }
        }
        if ready(INPUT) {
            // Readable (or hung up, or not an fd): this read does not block.
            // SAFETY: reads into our buffer.
            let n = unsafe { libc::read(input, buf.as_mut_ptr().cast(), CALLER_CHUNK) };
            if n > 0 {
                inbuf.extend_from_slice(&buf[..n as usize]);
            } else if n == 0 || !matches!(last_err().raw_os_error(), Some(libc::EAGAIN | libc::EINTR)) {
                input_open = false;
            }
        }
        if ready(TO_CMD) {
            if let Some(w) = &to_cmd {
                // SAFETY: writes from our buffer to our non-blocking pipe end.
                let n = unsafe { libc::write(w.as_raw_fd(), inbuf.as_ptr().cast(), inbuf.len()) };
                if n > 0 {
                    inbuf.drain(..n as usize);
                } else if n < 0 && !matches!(last_err().raw_os_error(), Some(libc::EAGAIN | libc::EINTR)) {
                    // The command closed its stdin: the rest of ours has no reader.
                    inbuf.clear();
                    input_open = false;
                    to_cmd = None;
                }
            }
        }
        for (i, o) in outs.iter_mut().enumerate() {
            if ready(PIPE[i]) {
                if let Some(p) = &o.pipe {
                    let room = (MAX_PENDING - o.buf.len().min(MAX_PENDING)).max(1).min(buf.len());
                    // SAFETY: reads into our buffer from our non-blocking pipe end.
                    let n = unsafe { libc::read(p.as_raw_fd(), buf.as_mut_ptr().cast(), room) };
                    if n > 0 {
                        o.buf.extend_from_slice(&buf[..n as usize]);
                        if quiet_since.is_some() {
                            quiet_since = Some(Instant::now());
                        }
                    } else if n == 0 || !matches!(last_err().raw_os_error(), Some(libc::EAGAIN | libc::EINTR)) {
                        o.pipe = None;
                    }
                }
            }
            if ready(DEST[i]) && !o.buf.is_empty() {
                let len = o.buf.len().min(CALLER_CHUNK);
                // SAFETY: writes from our buffer.
                let n = unsafe { libc::write(o.dest, o.buf.as_ptr().cast(), len) };
                if n > 0 {
                    o.buf.drain(..n as usize);
                } else if n < 0 && !matches!(last_err().raw_os_error(), Some(libc::EAGAIN | libc::EINTR)) {
                    // Nobody takes this output: the command learns it from its pipe.
                    o.buf.clear();
                    o.pipe = None;
                }
            }
        }
    }
}

/// The EOF character of the terminal behind `master` if it is in canonical mode.
fn canonical_eof(master: RawFd) -> Option<u8> {
    // SAFETY: tcgetattr fills a zeroed stack struct.
    let mut t: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: tcgetattr writes one `struct termios` to the live stack `t`; `master`
    // is the pty master the relay holds.
    if unsafe { libc::tcgetattr(master, &mut t) } != 0 || t.c_lflag & libc::ICANON == 0 {
        return None;
    }
    Some(t.c_cc[libc::VEOF])
}

mod helper {
    //! The code that runs after `fork`: in the helper, and in the command's process
    //! until `execve`.
    //!
    //! Invariant: nothing here allocates, locks, panics or touches Rust std state. The
    //! caller may be multi-threaded, and a fork copies only the forking thread, so a
    //! lock another thread held at that moment (malloc's, stdio's) stays locked
    //! forever here. Only raw syscalls on the prepared [`EnterScript`]. A failed step is
    //! reported to the caller as (step index, errno) over the socket, then the
    //! process exits. (After a re-exec, [`super::helper_main`] is a fresh
    //! single-threaded process and may allocate while it reads its [`EnterPlan`]; the
    //! steps stay the same raw syscalls.)

    use libc::{c_char, c_int, c_uint};
    use serde::{Deserialize, Serialize};
    use std::ffi::CString;
    use std::ptr;
    use std::sync::atomic::{AtomicI32, Ordering};

    pub(super) const MSG_LEN: usize = 9;
    pub(super) const TAG_FAILED: u8 = b'E';
    pub(super) const TAG_PTY: u8 = b'M';
    pub(super) const TAG_EXEC: u8 = b'X';
    pub(super) const TAG_STATUS: u8 = b'S';

    /// Offsets from `EnterScript::first_command_step` for failures in the command's process.
    const STEP_SESSION: u32 = 0;
    const STEP_CTTY: u32 = 1;
    const STEP_STDIO: u32 = 2;
    const STEP_HARDEN: u32 = 3;

    /// One step of the helper; fds were opened by the caller.
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    pub(super) enum EnterStep {
        /// Write "0" to a cgroup.procs file: moves the helper, so the command is born
        /// there. Done before joining the cgroup namespace, where the helper's
        /// current (host) cgroup would be out of sight.
        Cgroup {
            fd: c_int,
        },
        /// Join the user namespace and become its root (uid/gid 0 inside), as nsenter
        /// does; otherwise we would be the unmapped overflow id.
        JoinUser {
            fd: c_int,
        },
        Setns {
            fd: c_int,
            nstype: c_int,
        },
        /// `fchdir` to the container's root (from `/proc/<pid>/root`), `chroot(".")`.
        Chroot {
            root: c_int,
        },
        Chdir {
            path: CString,
        },
        /// Open `/dev/ptmx` in the container, unlock it, open the slave through the
        /// master (`TIOCGPTPEER`, no path lookup), set the size and send the master.
        OpenPty {
            /// rows, columns, x pixels, y pixels
            winsize: Option<[u16; 4]>,
        },
        /// Fork the command, forward signals, wait, report the status. Never returns.
        Run,
    }

    /// What entering the container takes, as data: built by the caller, and sent
    /// (as JSON) to the helper when it re-executes itself.
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    pub(super) struct EnterPlan {
        pub ops: Vec<EnterStep>,
        pub sock: c_int,
        /// The caller's pid: if our parent is already someone else, it died.
        pub parent: libc::pid_t,
        /// Paths `execve` tries in order.
        pub candidates: Vec<CString>,
        pub argv: Vec<CString>,
        pub envp: Vec<CString>,
        pub first_command_step: u32,
        /// The command's capabilities, no_new_privs and seccomp filter, compiled on
        /// the side that forks the command (before the fork).
        pub security: Option<crate::vocab::plan::Security>,
    }

    /// Everything the helper and the command need, built before the fork.
    pub(super) struct EnterScript {
        pub plan: EnterPlan,
        /// Fds above 2 the helper keeps (sorted); every other one is closed at once.
        pub keep: Vec<c_int>,
        /// Fds (above 2) the helper moves onto its 0, 1, 2 first thing: the relay's
        /// pipes, or /dev/null with a terminal. The command inherits them.
        pub stdio: [c_int; 3],
        /// `plan.argv` and `plan.envp` as NULL-terminated pointer arrays.
        pub argv: Vec<*const c_char>,
        pub envp: Vec<*const c_char>,
        /// The command's capabilities, no_new_privs and filter (from `plan.security`).
        pub hardening: Option<crate::exec::harden::Hardening>,
    }

    impl EnterScript {
        pub fn new(
            plan: EnterPlan,
            keep: Vec<c_int>,
            stdio: [c_int; 3],
            hardening: Option<crate::exec::harden::Hardening>,
        ) -> Self {
            let ptrs = |v: &[CString]| v.iter().map(|c| c.as_ptr()).chain([ptr::null()]).collect();
            let (argv, envp) = (ptrs(&plan.argv), ptrs(&plan.envp));
            EnterScript { plan, keep, stdio, argv, envp, hardening }
        }
    }

    impl std::ops::Deref for EnterScript {
        type Target = EnterPlan;
        fn deref(&self) -> &EnterPlan {
            &self.plan
        }
    }

    /// How the helper re-executes itself before it enters the container (see the
    /// module docs of `attach`): `execveat(prog, "", argv, {}, AT_EMPTY_PATH)`.
    pub(super) struct Reexec {
        pub prog: c_int,
        /// NULL-terminated.
        pub argv: Vec<*const c_char>,
        /// The step index a failed exec is reported as.
        pub step: u32,
    }

    struct EnterState {
        master: c_int,
        slave: c_int,
    }

    /// The command's pid, for the forwarding handler.
    static COMMAND: AtomicI32 = AtomicI32::new(0);

    extern "C" fn forward(sig: c_int) {
        let pid = COMMAND.load(Ordering::Relaxed);
        if pid > 0 {
            // SAFETY: kill is async-signal-safe.
            unsafe { libc::kill(pid, sig) };
        }
    }

    fn errno() -> c_int {
        std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO)
    }

    fn sys(r: c_int) -> Result<c_int, c_int> {
        if r < 0 {
            Err(errno())
        } else {
            Ok(r)
        }
    }

    pub(super) fn send(sock: c_int, tag: u8, a: u32, b: i32) {
        let mut msg = [0u8; MSG_LEN];
        msg[0] = tag;
        msg[1..5].copy_from_slice(&a.to_le_bytes());
        msg[5..9].copy_from_slice(&b.to_le_bytes());
        // SAFETY: sends a stack buffer; a failure only means the caller is gone.
        unsafe { libc::send(sock, msg.as_ptr().cast(), MSG_LEN, libc::MSG_NOSIGNAL) };
    }

    /// Send `fd` with a `TAG_PTY` message.
    fn send_fd(sock: c_int, fd: c_int) -> Result<(), c_int> {
        let mut msg = [0u8; MSG_LEN];
        msg[0] = TAG_PTY;
        #[repr(C, align(8))]
        struct Buf([u8; 64]);
        let mut cbuf = Buf([0; 64]);
        // SAFETY: a msghdr on the stack pointing at stack buffers; the CMSG macros
        // stay within `cbuf` (CMSG_SPACE of one int is far below 64 bytes).
        unsafe {
            let mut iov = libc::iovec { iov_base: msg.as_mut_ptr().cast(), iov_len: MSG_LEN };
            let mut mh: libc::msghdr = std::mem::zeroed();
            mh.msg_iov = &mut iov;
            mh.msg_iovlen = 1;
            mh.msg_control = cbuf.0.as_mut_ptr().cast();
            mh.msg_controllen = libc::CMSG_SPACE(size_of::<c_int>() as u32) as _;
            let c = libc::CMSG_FIRSTHDR(&mh);
            (*c).cmsg_level = libc::SOL_SOCKET;
            (*c).cmsg_type = libc::SCM_RIGHTS;
            (*c).cmsg_len = libc::CMSG_LEN(size_of::<c_int>() as u32) as _;
            ptr::write_unaligned(libc::CMSG_DATA(c) as *mut c_int, fd);
            if libc::sendmsg(sock, &mh, libc::MSG_NOSIGNAL) < 0 {
                return Err(errno());
            }
        }
        Ok(())
    }

    /// Calls `f(lo, hi)` for every inclusive range of fds from 3 up that is not in
    /// the sorted `keep`.
    pub(super) fn for_each_gap(keep: &[c_int], mut f: impl FnMut(c_uint, c_uint)) {
        let mut lo: c_uint = 3;
        for &k in keep {
            if k < 0 || (k as c_uint) < lo {
                continue;
            }
            let k = k as c_uint;
            if k > lo {
                f(lo, k - 1);
            }
            lo = k + 1;
        }
        f(lo, c_uint::MAX);
    }

    /// Close every fd above 2 except `keep`: fds of other threads (their pipes) must
    /// not stay open for as long as the command runs.
    ///
    /// # Safety
    /// Only in the forked helper: it closes fds that other owners (in the caller's
    /// copy of the process) hold; `keep` must be sorted.
    unsafe fn close_except(keep: &[c_int]) {
        // SAFETY: we are the forked helper (contract): the fds closed here are copies
        // the fork gave us, their owners live in the caller's process. close_range,
        // getrlimit and close are async-signal-safe raw calls; `rl` is a zeroed stack
        // rlimit getrlimit fills.
        unsafe {
            for_each_gap(keep, |lo, hi| {
                if libc::syscall(libc::SYS_close_range, lo, hi, 0 as c_uint) != 0 {
                    // Before Linux 5.9: one by one, up to the soft limit.
                    let mut rl: libc::rlimit = std::mem::zeroed();
                    let max = if libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) == 0 {
                        rl.rlim_cur.min(1 << 20) as c_uint
                    } else {
                        4096
                    };
                    let mut fd = lo;
                    while fd <= hi && fd < max {
                        libc::close(fd as c_int);
                        fd += 1;
                    }
                }
            });
        }
    }

    /// `fd` moved above 2, so the command's dup2 onto 0..2 cannot hit it.
    ///
    /// # Safety
    /// `fd` must be an fd the caller owns (it is closed when moved).
    unsafe fn lift(fd: c_int) -> Result<c_int, c_int> {
        // SAFETY: fcntl(F_DUPFD_CLOEXEC) and close on an fd the caller owns (contract);
        // the duplicate is new, and the original is closed exactly once, here.
        unsafe {
            if fd > 2 {
                return Ok(fd);
            }
            let high = sys(libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3))?;
            libc::close(fd);
            Ok(high)
        }
    }

    /// Entry point in the helper after fork. Never returns.
    ///
    /// # Safety
    /// Only in the child just forked by `exec`, with `script` and `reexec` built
    /// before the fork (their fds open, their pointers into live vectors).
    pub(super) unsafe fn run_helper(script: &EnterScript, reexec: Option<&Reexec>) -> ! {
        // SAFETY: we are the helper just forked from a possibly multi-threaded caller
        // (contract), so only raw async-signal-safe calls follow, on data built before
        // the fork: `script.stdio`, `script.keep`, `script.sock` and `r.prog` are fds
        // open in us (inherited), the paths are static C strings, `r.argv` a NULL-
        // terminated vector of pointers into CStrings the caller keeps alive, `envp` a
        // stack array; nothing allocates, and every failure reports on the socket and
        // _exits.
        unsafe {
            close_except(&script.keep);
            // Not for a moment does anything below (and so the command) hold the caller's
            // fds 0, 1, 2: from here on they are the relay's pipes (or /dev/null).
            for (target, &fd) in script.stdio.iter().enumerate() {
                if libc::dup2(fd, target as c_int) < 0 {
                    send(script.sock, TAG_FAILED, script.first_command_step + STEP_STDIO, errno());
                    libc::_exit(1);
                }
            }
            for &fd in &script.stdio {
                libc::close(fd);
            }
            // Nor its controlling terminal: the command inherits ours (the caller's
            // session) until its setsid, and in between /dev/tty would open the admin's
            // terminal. TIOCNOTTY from a process that leads no session only drops it for
            // this process (no signal to anyone); we stay in the caller's process group,
            // so a Ctrl-C on that terminal still reaches us and is forwarded.
            let tty =
                libc::open(c"/dev/tty".as_ptr(), libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC | libc::O_NONBLOCK);
            if tty >= 0 {
                libc::ioctl(tty, libc::TIOCNOTTY);
                libc::close(tty);
            }
            // Nobody but root in our own user namespace may open /proc/<pid>/{exe,fd,mem},
            // ptrace or read the memory of the helper and, until its execve resets this,
            // of the command: they are a copy of the caller until then.
            libc::prctl(libc::PR_SET_DUMPABLE, 0 as libc::c_ulong);
            // If the caller's thread dies, hang up the command (forwarded below). Checked
            // after: the caller may have died before the prctl.
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGHUP as libc::c_ulong);
            if libc::getppid() != script.parent {
                libc::_exit(1);
            }
            if let Some(r) = reexec {
                // What the plan names must survive the exec (the program's fd need not).
                for &fd in &script.keep {
                    if fd != r.prog {
                        libc::fcntl(fd, libc::F_SETFD, 0);
                    }
                }
                let envp: [*const c_char; 1] = [ptr::null()];
                libc::syscall(
                    libc::SYS_execveat,
                    r.prog,
                    c"".as_ptr(),
                    r.argv.as_ptr(),
                    envp.as_ptr(),
                    libc::AT_EMPTY_PATH,
                );
                send(script.sock, TAG_FAILED, r.step, errno());
                libc::_exit(1);
            }
            enter(script)
        }
    }

    /// The helper re-executed ([`super::helper_main`]), with its plan read: the same
    /// checks as before the exec, then the steps. Never returns.
    ///
    /// # Safety
    /// Only in the single-threaded re-executed helper, with `script` alive for the
    /// rest of the process (the steps end with `_exit`).
    pub(super) unsafe fn run_reexecuted(script: &EnterScript) -> ! {
        // SAFETY: we are the fresh single-threaded re-executed helper (contract): prctl
        // and getppid take integers only, and `enter` runs the steps on `script`, which
        // lives until the process _exits.
        unsafe {
            // Kept across execve, but set again: it is the whole point.
            libc::prctl(libc::PR_SET_DUMPABLE, 0 as libc::c_ulong);
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGHUP as libc::c_ulong);
            if libc::getppid() != script.parent {
                libc::_exit(1);
            }
            enter(script)
        }
    }

    /// Run the steps (ending with the command). Never returns.
    ///
    /// # Safety
    /// As [`run_helper`]: only in the single-threaded helper, on its prepared script.
    unsafe fn enter(script: &EnterScript) -> ! {
        // SAFETY: single-threaded helper (contract); `step` only makes raw syscalls on
        // `script`, and on a failure we report and _exit without running destructors of
        // state copied from the caller.
        unsafe {
            let mut st = EnterState { master: -1, slave: -1 };
            for (i, op) in script.ops.iter().enumerate() {
                if let Err(e) = step(op, &mut st, script) {
                    send(script.sock, TAG_FAILED, i as u32, e);
                    libc::_exit(1);
                }
            }
            // The ops end with Run, which does not return; unreachable.
            libc::_exit(1)
        }
    }

    /// One step of entering the container.
    ///
    /// # Safety
    /// As [`enter`]: it changes the helper's namespaces, ids, root and fds.
    unsafe fn step(op: &EnterStep, st: &mut EnterState, script: &EnterScript) -> Result<(), c_int> {
        // SAFETY: single-threaded helper (contract): each arm is raw syscalls on fds
        // the caller opened for us (namespace, cgroup, root fds in `op`), NUL-
        // terminated CStrings of the plan or static C strings, and stack values
        // (`unlock`, `ws`) the ioctls only read; `lift` gets fds we just opened, and
        // the master is closed once after it is sent. setgroups/setresgid/setresuid are
        // raw syscalls because glibc's wrappers would signal threads that do not exist
        // here.
        unsafe {
            match op {
                EnterStep::Cgroup { fd } => {
                    let n = libc::write(*fd, b"0".as_ptr().cast(), 1);
                    if n != 1 {
                        return Err(if n < 0 { errno() } else { libc::EIO });
                    }
                    Ok(())
                }
                EnterStep::JoinUser { fd } => {
                    sys(libc::setns(*fd, libc::CLONE_NEWUSER))?;
                    // Raw syscalls, not glibc's wrappers: those broadcast the change to
                    // every thread glibc knows of, and wait for threads it believes are
                    // being created; we are single-threaded, so the syscall is enough.
                    // setgroups is refused when the container's /proc/<pid>/setgroups
                    // says "deny"; then there are no groups to drop anyway.
                    if libc::syscall(libc::SYS_setgroups, 0 as libc::size_t, ptr::null::<libc::gid_t>()) != 0
                        && errno() != libc::EPERM
                    {
                        return Err(errno());
                    }
                    sys(libc::syscall(libc::SYS_setresgid, 0 as libc::gid_t, 0 as libc::gid_t, 0 as libc::gid_t)
                        as c_int)?;
                    sys(libc::syscall(libc::SYS_setresuid, 0 as libc::uid_t, 0 as libc::uid_t, 0 as libc::uid_t)
                        as c_int)?;
                    Ok(())
                }
                EnterStep::Setns { fd, nstype } => sys(libc::setns(*fd, *nstype)).map(drop),
                EnterStep::Chroot { root } => {
                    // setns(mnt) put us at the namespace's root mount; the container's
                    // root is what its PID 1 sees, which is what we join.
                    sys(libc::fchdir(*root))?;
                    sys(libc::chroot(c".".as_ptr()))?;
                    sys(libc::chdir(c"/".as_ptr())).map(drop)
                }
                EnterStep::Chdir { path } => sys(libc::chdir(path.as_ptr())).map(drop),
                EnterStep::OpenPty { winsize } => {
                    let m = sys(libc::open(c"/dev/ptmx".as_ptr(), libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC))?;
                    st.master = lift(m)?;
                    let unlock: c_int = 0;
                    sys(libc::ioctl(st.master, libc::TIOCSPTLCK, &unlock))?;
                    let flags = libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC;
                    let s = sys(libc::ioctl(st.master, libc::TIOCGPTPEER, flags))?;
                    st.slave = lift(s)?;
                    if let Some([ws_row, ws_col, ws_xpixel, ws_ypixel]) = *winsize {
                        let ws = libc::winsize { ws_row, ws_col, ws_xpixel, ws_ypixel };
                        sys(libc::ioctl(st.master, libc::TIOCSWINSZ, &ws))?;
                    }
                    send_fd(script.sock, st.master)?;
                    // Only the caller holds the master from now on, so its EIO means the
                    // command's side is closed.
                    libc::close(st.master);
                    st.master = -1;
                    Ok(())
                }
                EnterStep::Run => run_command(st, script),
            }
        }
    }

    /// Fork the command, forward signals to it, report how it ended, exit.
    ///
    /// # Safety
    /// As [`enter`]: only in the single-threaded helper, as its last step.
    unsafe fn run_command(st: &mut EnterState, script: &EnterScript) -> Result<(), c_int> {
        // SAFETY: single-threaded helper (contract). The sigset_t and sigaction values
        // are zeroed stack structs (valid all-zero C types) that libc fills or reads;
        // `forward` is an extern "C" handler that only loads an atomic and calls kill
        // (async-signal-safe); the forked child runs `command`, which never returns;
        // waitpid writes the stack `status`; every exit is _exit, so no destructor of
        // the caller's copied state runs.
        unsafe {
            // Signals stay blocked until COMMAND is set, so none is lost in between; the
            // command unblocks them itself after resetting the handlers.
            let mut all: libc::sigset_t = std::mem::zeroed();
            libc::sigfillset(&mut all);
            let mut old: libc::sigset_t = std::mem::zeroed();
            libc::sigprocmask(libc::SIG_BLOCK, &all, &mut old);
            for sig in super::FORWARDED {
                let mut cur: libc::sigaction = std::mem::zeroed();
                libc::sigaction(sig, ptr::null(), &mut cur);
                // A signal the caller ignores (e.g. under nohup) stays ignored.
                if cur.sa_sigaction == libc::SIG_IGN {
                    continue;
                }
                let mut sa: libc::sigaction = std::mem::zeroed();
                sa.sa_sigaction = forward as *const () as usize;
                libc::sigfillset(&mut sa.sa_mask);
                sa.sa_flags = libc::SA_RESTART;
                libc::sigaction(sig, &sa, ptr::null_mut());
            }
            let pid = libc::fork();
            if pid == 0 {
                command(st, script);
            }
            if pid < 0 {
                let e = errno();
                libc::sigprocmask(libc::SIG_SETMASK, &old, ptr::null_mut());
                return Err(e);
            }
            COMMAND.store(pid, Ordering::Relaxed);
            if st.slave >= 0 {
                libc::close(st.slave);
                st.slave = -1;
            }
            let mut none: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut none);
            libc::sigprocmask(libc::SIG_SETMASK, &none, ptr::null_mut());
            let mut status: c_int = 0;
            loop {
                if libc::waitpid(pid, &mut status, 0) == pid {
                    break;
                }
                if errno() != libc::EINTR {
                    libc::_exit(1);
                }
            }
            if libc::WIFSIGNALED(status) {
                send(script.sock, TAG_STATUS, 1, libc::WTERMSIG(status));
            } else {
                send(script.sock, TAG_STATUS, 0, libc::WEXITSTATUS(status));
            }
            libc::_exit(0)
        }
    }

    /// In the command's process: session, terminal, stdio, signals, exec. Never returns.
    ///
    /// # Safety
    /// Only in the child the helper just forked in [`run_command`].
    unsafe fn command(st: &EnterState, script: &EnterScript) -> ! {
        // SAFETY: we are the command's process, just forked from the single-threaded
        // helper (contract): only async-signal-safe raw calls on prepared data follow.
        // `st.slave` is the pty slave the helper opened, `script.sock` its socket,
        // `candidates`/`argv`/`envp` NUL-terminated CStrings and NULL-terminated
        // pointer vectors built before the helper's fork, the hardening's filter
        // compiled before it; `rl` and `none` are zeroed stack structs. Every failure
        // reports and _exits.
        unsafe {
            let fail = |offset: u32| -> ! {
                send(script.sock, TAG_FAILED, script.first_command_step + offset, errno());
                libc::_exit(127)
            };
            if libc::setsid() < 0 {
                fail(STEP_SESSION);
            }
            // Without a terminal, 0, 1 and 2 are the relay's pipes already (the helper's).
            if st.slave >= 0 {
                // We lead a new session without a terminal, so this one becomes ours
                // (and its foreground process group is ours).
                if libc::ioctl(st.slave, libc::TIOCSCTTY, 0) != 0 {
                    fail(STEP_CTTY);
                }
                for target in 0..3 {
                    if libc::dup2(st.slave, target) < 0 {
                        fail(STEP_STDIO);
                    }
                }
            }
            // Everything above 2 closes at exec (the socket must stay open until then,
            // to report an exec failure). Rust ignores SIGPIPE and the helper has
            // handlers; ignored dispositions survive exec, so reset all, then unblock.
            crate::exec::postfork::cloexec_above_stdio();
            crate::exec::postfork::reset_signals();

            // A new session keyring (the caller's keys stay behind), then capabilities,
            // no_new_privs and the seccomp filter, last before exec.
            if let Some(h) = script.hardening.as_ref() {
                if let Err(e) = crate::exec::harden::join_new_session_keyring() {
                    send(script.sock, TAG_FAILED, script.first_command_step + STEP_HARDEN, e);
                    libc::_exit(127);
                }
                let r = h.before_setuid().and_then(|()| h.before_exec());
                if let Err((_, e)) = r {
                    send(script.sock, TAG_FAILED, script.first_command_step + STEP_HARDEN, e);
                    libc::_exit(127);
                }
            }

            // PATH search as execvp does it: keep going past "not here", remember
            // "not allowed", stop at anything else.
            let mut denied = false;
            let mut other = 0;
            for path in &script.candidates {
                libc::execve(path.as_ptr(), script.argv.as_ptr(), script.envp.as_ptr());
                match errno() {
                    libc::EACCES => denied = true,
                    libc::ENOENT | libc::ENOTDIR | libc::ESTALE | libc::ENODEV | libc::ETIMEDOUT => {}
                    e => {
                        other = e;
                        break;
                    }
                }
            }
            let e = if other != 0 {
                other
            } else if denied {
                libc::EACCES
            } else {
                libc::ENOENT
            };
            send(script.sock, TAG_EXEC, 0, e);
            libc::_exit(if e == libc::ENOENT { 127 } else { 126 })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_follow_the_command_path() {
        assert_eq!(exec_candidates("sh", "/usr/bin:/bin"), ["/usr/bin/sh", "/bin/sh"]);
        assert_eq!(exec_candidates("sh", "/bin::"), ["/bin/sh", "sh", "sh"]);
        assert_eq!(exec_candidates("./x", "/bin"), ["./x"]);
        assert_eq!(exec_candidates("/bin/sh", "/usr/bin"), ["/bin/sh"]);
    }

    #[test]
    fn failure_messages_read_like_a_shell() {
        assert_eq!(exec_failure_message("nope", libc::ENOENT), "container: nope: command not found\n");
        assert_eq!(exec_failure_message("/x/nope", libc::ENOENT), "container: /x/nope: No such file or directory\n");
        assert_eq!(
            exec_failure_message("/etc/hostname", libc::EACCES),
            "container: /etc/hostname: Permission denied\n"
        );
    }

    #[test]
    fn gaps_skip_kept_fds() {
        let gaps = |keep: &[c_int]| {
            let mut v = Vec::new();
            helper::for_each_gap(keep, |lo, hi| v.push((lo, hi)));
            v
        };
        let max = libc::c_uint::MAX;
        assert_eq!(gaps(&[]), [(3, max)]);
        assert_eq!(gaps(&[3, 4, 7]), [(5, 6), (8, max)]);
        assert_eq!(gaps(&[0, 2, 5]), [(3, 4), (6, max)]);
    }

    #[test]
    fn the_plan_reaches_the_reexecuted_helper_intact() {
        use helper::{EnterPlan, EnterScript, EnterStep};
        let plan = || EnterPlan {
            ops: vec![
                EnterStep::Cgroup { fd: 5 },
                EnterStep::JoinUser { fd: 6 },
                EnterStep::Setns { fd: 7, nstype: libc::CLONE_NEWNET },
                EnterStep::Chroot { root: 8 },
                EnterStep::Chdir { path: c"/srv/a b".into() },
                EnterStep::OpenPty { winsize: Some([24, 80, 0, 0]) },
                EnterStep::Run,
            ],
            sock: 9,
            parent: 4242,
            candidates: vec![c"/usr/bin/sh".into(), c"/bin/sh".into()],
            argv: vec![c"sh".into(), c"-c".into(), c"printf '\xe9\x01'".into()],
            envp: vec![c"PATH=/usr/bin".into(), c"A=\xff".into()],
            first_command_step: 7,
            security: Some(Default::default()),
        };
        let json = serde_json::to_vec(&plan()).expect("encode");
        let back: EnterPlan = serde_json::from_slice(&json).expect("decode");
        assert_eq!(back, plan());
        let script = EnterScript::new(back, Vec::new(), [0, 1, 2], None);
        assert_eq!(script.argv.len(), 4);
        assert!(script.argv[3].is_null() && script.envp.len() == 3 && script.envp[2].is_null());
        // SAFETY: the pointers point into `script.plan`, alive here.
        let first = unsafe { std::ffi::CStr::from_ptr(script.argv[2]) };
        assert_eq!(first, plan().argv[2].as_c_str());
    }

    #[test]
    fn bad_requests_are_refused_before_anything_runs() {
        let err = |o: &ExecOpts| exec(1, o, Stdio::inherit()).expect_err("must fail").to_string();
        assert!(err(&ExecOpts::new(vec![])).contains("empty command"));
        let mut o = ExecOpts::new(vec!["sh".into()]);
        o.workdir = "tmp".into();
        assert!(err(&o).contains("not an absolute path"));
        let mut o = ExecOpts::new(vec!["sh".into()]);
        o.env.insert("A=B".into(), "x".into());
        assert!(err(&o).contains("bad environment variable name"));
        let o = ExecOpts::new(vec!["sh".into()]);
        assert_eq!(
            exec(i32::MAX, &o, Stdio::inherit()).expect_err("no such pid").to_string(),
            format!("container process {} is not running", i32::MAX)
        );
    }
}
