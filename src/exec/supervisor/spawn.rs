//! Starting one child process.
//!
//! Invariant: everything that allocates (argv, environment, program lookup, user
//! lookup) happens in `prepare`, before fork; between fork and exec the child only
//! makes async-signal-safe libc calls. The child is born in its service's cgroup
//! (clone3, `CLONE_INTO_CGROUP`) where it can be, else forked and moved by itself. The
//! child gets an empty signal mask and default dispositions, its own session and
//! process group (so a signal to `-pid` reaches all it started), stdin/stdout/stderr as
//! given and no other descriptor: every fd above 2 is marked close-on-exec with
//! close_range(2). Failures before exec come back to the parent over a close-on-exec
//! pipe, so a missing program or a refused setuid is a clear error instead of an exit
//! code 127. Every child is hardened ([`crate::exec::harden`]): its capabilities,
//! no_new_privs and seccomp filter come from its plan's `security`, compiled in
//! `prepare`.

use super::cgroups::ServiceCgroup;
use super::users::{self, Ident};
use crate::exec::harden::{HardenStep, Hardening};
use crate::exec::postfork::{CloneArgs, CLONE_INTO_CGROUP};
use crate::plan::types::Security;
use nix::errno::Errno;
use nix::fcntl::OFlag;
use std::collections::BTreeMap;
use std::ffi::{c_char, CString};
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Search path of children unless their `env` sets PATH.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A command ready to be forked and exec'd any number of times.
#[derive(Debug)]
pub struct PreparedCommand {
    path: CString,
    argv: Vec<CString>,
    envp: Vec<CString>,
    ident: Option<Ident>,
    workdir: Option<CString>,
    hardening: Hardening,
    /// The cgroup the child is born in, or moves itself into before exec (see
    /// `cgroups`); `None`: it stays in ours.
    cgroup: Option<ServiceCgroup>,
}

impl PreparedCommand {
    /// The child runs in `cgroup`.
    pub fn set_cgroup(&mut self, cgroup: Option<ServiceCgroup>) {
        self.cgroup = cgroup;
    }
}

fn cstring(what: &str, s: &str) -> Result<CString, String> {
    CString::new(s).map_err(|_| format!("{what} contains a NUL byte: {s:?}"))
}

fn find_program(prog: &str, path_var: &str) -> Option<PathBuf> {
    if prog.contains('/') {
        return Some(PathBuf::from(prog));
    }
    path_var.split(':').find_map(|dir| {
        let p = Path::new(if dir.is_empty() { "." } else { dir }).join(prog);
        let m = std::fs::metadata(&p).ok()?;
        (m.is_file() && m.permissions().mode() & 0o111 != 0).then_some(p)
    })
}

/// Resolves the program (through the child's PATH), the user and the environment:
/// PATH, HOME, USER and LOGNAME, then `env` on top.
pub fn prepare(
    argv: &[String],
    env: &BTreeMap<String, String>,
    user: Option<&str>,
    workdir: Option<&str>,
    etc: &Path,
    security: &Security,
) -> Result<PreparedCommand, String> {
    let prog = argv.first().ok_or("empty command")?;
    let ident = user.map(|u| users::resolve(u, etc)).transpose()?;
    let mut vars: BTreeMap<&str, &str> = BTreeMap::new();
    vars.insert("PATH", DEFAULT_PATH);
    let (name, home) = ident.as_ref().map_or(("root", "/root"), |i| (i.name.as_str(), i.home.as_str()));
    vars.insert("HOME", home);
    vars.insert("USER", name);
    vars.insert("LOGNAME", name);
    for (k, v) in env {
        if k.is_empty() || k.contains('=') {
            return Err(format!("invalid environment variable name {k:?}"));
        }
        vars.insert(k, v);
    }
    let path_var = vars.get("PATH").copied().unwrap_or(DEFAULT_PATH);
    let path = find_program(prog, path_var).ok_or_else(|| format!("{prog}: command not found in PATH={path_var}"))?;
    let path = cstring("program path", &path.to_string_lossy())?;
    Ok(PreparedCommand {
        path,
        argv: argv.iter().map(|a| cstring("argument", a)).collect::<Result<_, _>>()?,
        envp: vars.iter().map(|(k, v)| cstring("environment", &format!("{k}={v}"))).collect::<Result<_, _>>()?,
        ident,
        workdir: workdir.map(|w| cstring("workdir", w)).transpose()?,
        hardening: Hardening::for_process(security).map_err(|e| e.to_string())?,
        cgroup: None,
    })
}

const STAGES: [&str; 12] = [
    "setsid",
    "dup2",
    "setgroups",
    "setgid",
    "setuid",
    "chdir",
    "execve",
    "drop capabilities from the bounding set",
    "clear the ambient capabilities",
    "limit the capabilities",
    "set no_new_privs",
    "install the seccomp filter",
];

/// The report stage of a hardening step (an index into `STAGES`).
fn stage_of(step: HardenStep) -> u8 {
    match step {
        HardenStep::Bounding => 7,
        HardenStep::Ambient => 8,
        HardenStep::Capabilities => 9,
        HardenStep::NoNewPrivs => 10,
        HardenStep::Seccomp => 11,
    }
}

/// Forks and execs `p`; returns the child's pid (also its process group id).
pub fn spawn(p: &PreparedCommand, stdin: BorrowedFd<'_>, out: BorrowedFd<'_>) -> Result<i32, String> {
    let argv: Vec<*const c_char> = p.argv.iter().map(|a| a.as_ptr()).chain(std::iter::once(std::ptr::null())).collect();
    let envp: Vec<*const c_char> = p.envp.iter().map(|a| a.as_ptr()).chain(std::iter::once(std::ptr::null())).collect();
    let groups: Vec<libc::gid_t> = p.ident.as_ref().map(|i| i.groups.clone()).unwrap_or_default();
    let ids = p.ident.as_ref().map(|i| (i.uid, i.gid));
    let workdir = p.workdir.as_ref().map_or(std::ptr::null(), |w| w.as_ptr());
    let (err_r, err_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| format!("pipe: {e}"))?;
    let child = ForkedChild {
        path: p.path.as_ptr(),
        argv: argv.as_ptr(),
        envp: envp.as_ptr(),
        groups: &groups,
        ids,
        workdir,
        stdin: stdin.as_raw_fd(),
        out: out.as_raw_fd(),
        report: err_w.as_raw_fd(),
        hardening: &p.hardening,
        cgroup: p.cgroup.as_ref().map_or(-1, |c| c.procs.as_raw_fd()),
    };
    // Born in the service's cgroup when the kernel and PID 1's filter allow clone3
    // with CLONE_INTO_CGROUP; else (ENOSYS from an older filter or kernel, EPERM,
    // EACCES, EBUSY from a cgroup with controllers of its own) forked, and the child
    // moves itself with a write to `cgroup.procs`, which waits for an RCU grace
    // period (10 ms and more per start).
    let mut pid = -1;
    if let Some(dir) = p.cgroup.as_ref().and_then(|c| c.dir.as_ref()) {
        let mut args = CloneArgs::new(CLONE_INTO_CGROUP);
        args.cgroup = dir.as_raw_fd() as u64;
        // SAFETY: clone3 without CLONE_VM is fork: the supervisor is single-threaded
        // (checked by `run`), and the child branch only calls async-signal-safe
        // functions on memory prepared above; the block holds no pointers.
        pid = unsafe { args.clone3() } as i32;
        if pid == 0 {
            // SAFETY: the freshly cloned child; `child` points at `p`, `argv`, `envp`
            // and `groups`, alive in this frame; `run` never returns.
            unsafe { child.run(false) }
        }
    }
    if pid < 0 {
        // SAFETY: as above, fork from the single-threaded supervisor.
        pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(format!("fork: {}", Errno::last()));
        }
        if pid == 0 {
            // SAFETY: as above: the freshly forked child; `run` never returns.
            unsafe { child.run(true) }
        }
    }
    drop(err_w);
    let mut buf = [0u8; 8];
    let n = loop {
        match nix::unistd::read(&err_r, &mut buf) {
            Err(Errno::EINTR) => continue,
            r => break r,
        }
    };
    match n {
        Ok(0) => Ok(pid),
        Ok(_) => {
            // The child exits right after reporting; reap it here so the main loop
            // never sees a pid it does not know.
            let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
            let stage = STAGES.get(usize::from(buf[0])).copied().unwrap_or("start");
            let errno = Errno::from_raw(i32::from_ne_bytes([buf[4], buf[5], buf[6], buf[7]]));
            let what = if stage == "execve" { p.path.to_string_lossy().into_owned() } else { stage.to_string() };
            Err(format!("{what}: {}", errno.desc()))
        }
        Err(e) => Err(format!("reading the start report: {e}")),
    }
}

/// What the child needs, as raw pointers valid until exec.
struct ForkedChild<'a> {
    path: *const c_char,
    argv: *const *const c_char,
    envp: *const *const c_char,
    groups: &'a [libc::gid_t],
    ids: Option<(u32, u32)>,
    workdir: *const c_char,
    stdin: RawFd,
    out: RawFd,
    report: RawFd,
    hardening: &'a Hardening,
    /// The service cgroup's `cgroup.procs` (-1: none), written when `run` is told
    /// the child was not born there.
    cgroup: RawFd,
}

impl ForkedChild<'_> {
    /// Tells the parent which step failed (with errno) and exits.
    ///
    /// # Safety
    /// Only in the forked child (it `_exit`s the calling process).
    unsafe fn fail(&self, stage: u8) -> ! {
        // SAFETY: our caller is the forked child (this fn's contract); reading errno
        // is a plain load of the thread's errno slot.
        unsafe { self.fail_with(stage, Errno::last_raw()) }
    }

    /// Writes `(stage, errno)` to the report pipe and exits.
    ///
    /// # Safety
    /// Only in the forked child (it `_exit`s the calling process).
    unsafe fn fail_with(&self, stage: u8, errno: i32) -> ! {
        // SAFETY: a write of the 8-byte stack buffer to `report`, the O_CLOEXEC pipe
        // end spawn made for us (the parent reads it), then _exit, which runs no atexit
        // handlers or destructors of the parent's copied state. Both are async-signal-
        // safe.
        unsafe {
            let mut b = [0u8; 8];
            b[0] = stage;
            b[4..].copy_from_slice(&errno.to_ne_bytes());
            libc::write(self.report, b.as_ptr().cast(), b.len());
            libc::_exit(127)
        }
    }

    /// The child's side: into its cgroup when `join_cgroup` (it was forked, not
    /// born there), reset signals, stdio, privileges, then exec.
    ///
    /// # Safety
    /// Only in the child just forked by `spawn` from the single-threaded supervisor,
    /// while the memory the pointers in `self` point at (owned by `spawn`'s frame
    /// and its PreparedCommand, copied by the fork) is still there; never returns.
    unsafe fn run(&self, join_cgroup: bool) -> ! {
        // SAFETY: we are the child forked from the single-threaded supervisor
        // (contract), so only async-signal-safe calls are made, on memory prepared
        // before the fork: `path` and `workdir` point into the PreparedCommand's
        // CStrings, `argv`/`envp` into NULL-terminated pointer vectors of spawn's
        // frame, `groups` is its Vec, `stdin`/`out`/`report` are fds it holds open,
        // and the hardening's filter was compiled in `prepare`; `set` and `lim` are
        // zeroed stack structs written by libc. Nothing allocates; every failure
        // reports and _exits.
        unsafe {
            // Rust ignores SIGPIPE; ignored dispositions survive exec, handlers do not.
            crate::exec::postfork::reset_signals();
            // Into the service's own cgroup while still root, before anything can
            // fork: all it ever starts is in there. A failed move leaves it in ours
            // (signalled by process group, as without cgroups).
            if join_cgroup && self.cgroup >= 0 {
                libc::write(self.cgroup, b"0".as_ptr().cast(), 1);
            }
            if libc::setsid() < 0 {
                self.fail(0);
            }
            if libc::dup2(self.stdin, 0) < 0 || libc::dup2(self.out, 1) < 0 || libc::dup2(self.out, 2) < 0 {
                self.fail(1);
            }
            // Everything above stderr closes at exec, including the report pipe, which
            // must stay open until then.
            crate::exec::postfork::cloexec_above_stdio();
            if let Err((step, e)) = self.hardening.before_setuid() {
                self.fail_with(stage_of(step), e);
            }
            if let Some((uid, gid)) = self.ids {
                if libc::setgroups(self.groups.len(), self.groups.as_ptr()) != 0 {
                    self.fail(2);
                }
                if libc::setgid(gid) != 0 {
                    self.fail(3);
                }
                if libc::setuid(uid) != 0 {
                    self.fail(4);
                }
            }
            if !self.workdir.is_null() && libc::chdir(self.workdir) != 0 {
                self.fail(5);
            }
            if let Err((step, e)) = self.hardening.before_exec() {
                self.fail_with(stage_of(step), e);
            }
            libc::execve(self.path, self.argv, self.envp);
            self.fail(6)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn program_lookup_uses_the_child_path() {
        assert_eq!(find_program("sh", "/nonexistent:/bin"), Some(PathBuf::from("/bin/sh")));
        assert_eq!(find_program("sh", "/nonexistent"), None);
        assert_eq!(find_program("./x", ""), Some(PathBuf::from("./x")));
    }

    #[test]
    fn environment_defaults_and_overrides() {
        let mut env = BTreeMap::new();
        env.insert("FOO".to_string(), "bar".to_string());
        env.insert("HOME".to_string(), "/srv".to_string());
        let p = prepare(&["sh".into()], &env, None, None, Path::new("/etc"), &Security::default()).unwrap();
        let vars: Vec<String> = p.envp.iter().map(|c| c.to_string_lossy().into_owned()).collect();
        assert!(vars.contains(&format!("PATH={DEFAULT_PATH}")));
        assert!(vars.contains(&"HOME=/srv".to_string()));
        assert!(vars.contains(&"FOO=bar".to_string()));
        env.insert("A=B".into(), "x".into());
        assert!(prepare(&["sh".into()], &env, None, None, Path::new("/etc"), &Security::default()).is_err());
        assert!(prepare(
            &["no-such-program-xyz".into()],
            &BTreeMap::new(),
            None,
            None,
            Path::new("/etc"),
            &Security::default()
        )
        .unwrap_err()
        .contains("command not found"));
        assert!(prepare(&[], &BTreeMap::new(), None, None, Path::new("/etc"), &Security::default()).is_err());
    }
}
