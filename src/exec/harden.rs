//! Hardening: capabilities, no_new_privs and the seccomp filter of a process that
//! enters a container, prepared before the fork and applied between fork and exec.
//!
//! Invariant: [`Hardening::for_process`] and [`Hardening::for_pid1`] allocate and
//! compile (before the fork); [`Hardening::before_setuid`] and
//! [`Hardening::before_exec`] make raw system calls on that prepared data only, so a
//! forked child may call them. A failure names its [`HardenStep`] and errno.
//!
//! Order in the child, as runc does it:
//! 1. `before_setuid` (still with the parent's capabilities): drop the bounding set to
//!    the process's set (needs CAP_SETPCAP), clear the ambient set, and — only for a
//!    process without no_new_privs — install the filter now, while CAP_SYS_ADMIN is
//!    still effective (the kernel allows a filter without no_new_privs only then);
//! 2. the caller switches uid and gid (a switch away from root empties the permitted
//!    and effective sets: a non-root service ends with no capability unless a file
//!    grants it, as in Docker);
//! 3. `before_exec`: limit permitted and effective to the set, empty the inheritable
//!    set, set no_new_privs, install the filter. Last, so nothing the child still does
//!    needs a call the filter refuses (execve and the error report are allowed).
//!
//! The filter only allows the calls the child makes after it: setgroups, setresgid,
//! setresuid, chdir, capset, prctl, write, execve.

use super::caps;
use super::seccomp::{Filter, FilterError, Policy};
use crate::plan::types::Security;
use libc::c_int;
use std::sync::Arc;

/// What is applied; a failure names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HardenStep {
    Bounding,
    Ambient,
    Capabilities,
    NoNewPrivs,
    Seccomp,
}

impl HardenStep {
    pub fn describe(self) -> &'static str {
        match self {
            HardenStep::Bounding => "drop capabilities from the bounding set",
            HardenStep::Ambient => "clear the ambient capabilities",
            HardenStep::Capabilities => "limit the capabilities",
            HardenStep::NoNewPrivs => "set no_new_privs",
            HardenStep::Seccomp => "install the seccomp filter",
        }
    }
}

/// The capabilities, no_new_privs and filter of one process, ready to apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hardening {
    /// Bounding, permitted and effective set (bit n = capability n).
    pub caps: u64,
    pub no_new_privs: bool,
    pub filter: Arc<Filter>,
}

impl Hardening {
    /// A service, init task or exec: its capabilities, no_new_privs and filter.
    pub fn for_process(sec: &Security) -> Result<Hardening, FilterError> {
        let caps = sec.caps();
        let policy = Policy { caps, allow: sec.seccomp_allow.clone() };
        Ok(Hardening { caps, no_new_privs: sec.no_new_privs, filter: Filter::cached(&policy)? })
    }

    /// The defaults (what `exec` gets in a container whose plan changes nothing).
    pub fn default_process() -> Result<Hardening, FilterError> {
        Hardening::for_process(&Security::default())
    }

    /// A build step (`exec::build`): [`caps::build_set`](crate::vocab::caps::build_set),
    /// no_new_privs, and the default filter for those capabilities.
    pub fn for_build() -> Result<Hardening, FilterError> {
        let caps = caps::build_set();
        let policy = Policy { caps, allow: Default::default() };
        Ok(Hardening { caps, no_new_privs: true, filter: Filter::cached(&policy)? })
    }

    /// PID 1 (the supervisor), from [`crate::plan::types::Plan::pid1_security`]: the
    /// union of what its processes may have, so each of them can still get it. PID 1
    /// gets no no_new_privs (a service may opt out of it; the flag is inherited and
    /// cannot be cleared), and a filter that allows every call some process is
    /// allowed: filters stack, so each process's own filter decides for it.
    ///
    /// PID 1's filter also allows `clone3`, which no other process's does (a filter
    /// cannot read its flags, held in memory): the supervisor starts each service
    /// with `CLONE_INTO_CGROUP`, born in its cgroup, as no cgroup migration (10 ms
    /// and more) is needed then. PID 1 is our own code; it makes itself
    /// non-dumpable at start, so no process of the container without
    /// `CAP_SYS_PTRACE` can ptrace it or write its memory to make it clone3 for
    /// them, and every process it starts gets its own filter on top, which answers
    /// clone3 with ENOSYS.
    pub fn for_pid1(sec: &Security) -> Result<Hardening, FilterError> {
        let caps = sec.caps();
        let mut allow = sec.seccomp_allow.clone();
        allow.insert("clone3".to_string());
        let policy = Policy { caps, allow };
        Ok(Hardening { caps, no_new_privs: false, filter: Filter::cached(&policy)? })
    }

    /// Step 1 (see the module docs), before the uid switch.
    ///
    /// # Safety
    /// Call only in a forked child about to exec: it changes the process's privileges.
    pub unsafe fn before_setuid(&self) -> Result<(), (HardenStep, c_int)> {
        // Without CAP_SETPCAP (an unprivileged caller, e.g. the supervisor run by a
        // user in tests) the bounding set cannot change; such a process has nothing to
        // lose, and no_new_privs keeps its child from gaining anything at exec.
        // SAFETY: our caller is a forked child about to exec (this fn's contract), the
        // process whose privileges these calls are meant to reduce. Each is a raw
        // system call on integers, stack structs, or the filter compiled before the
        // fork (kept alive by `self`): async-signal-safe, no allocation, no locks.
        unsafe {
            if caps::effective_has(caps::SETPCAP) {
                caps::drop_bounding(self.caps).map_err(|e| (HardenStep::Bounding, e))?;
            }
            caps::clear_ambient().map_err(|e| (HardenStep::Ambient, e))?;
            if !self.no_new_privs {
                self.filter.install().map_err(|e| (HardenStep::Seccomp, e))?;
            }
        }
        Ok(())
    }

    /// Step 3 (see the module docs), right before exec.
    ///
    /// # Safety
    /// As [`Hardening::before_setuid`].
    pub unsafe fn before_exec(&self) -> Result<(), (HardenStep, c_int)> {
        // SAFETY: as in `before_setuid`: the caller is the forked child right before
        // its exec; capset works on stack structs, PR_SET_NO_NEW_PRIVS on integers, and
        // the filter was compiled before the fork and lives as long as `self`.
        unsafe {
            caps::limit(self.caps).map_err(|e| (HardenStep::Capabilities, e))?;
            if self.no_new_privs {
                if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1 as libc::c_ulong, 0, 0, 0) != 0 {
                    return Err((
                        HardenStep::NoNewPrivs,
                        std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO),
                    ));
                }
                self.filter.install().map_err(|e| (HardenStep::Seccomp, e))?;
            }
        }
        Ok(())
    }
}

/// Give the calling process a new, empty, anonymous session keyring, so keys of the
/// caller's session (host root's, for a container started by root) are out of reach.
///
/// # Safety
/// A raw keyctl call; call it in a forked child.
pub unsafe fn join_new_session_keyring() -> Result<(), c_int> {
    const KEYCTL_JOIN_SESSION_KEYRING: libc::c_long = 1;
    // SAFETY: KEYCTL_JOIN_SESSION_KEYRING with a NULL name creates and joins a new
    // anonymous keyring; the kernel reads no memory of ours. It changes only the
    // calling process's session keyring, which the caller (a forked child) wants.
    let r = unsafe { libc::syscall(libc::SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, std::ptr::null::<libc::c_char>()) };
    if r < 0 {
        return Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pid1_keeps_what_its_processes_need() {
        let mut sec = Security::default();
        sec.cap_add.insert("NET_ADMIN".into());
        sec.seccomp_allow.insert("ptrace".into());
        let h = Hardening::for_pid1(&sec).unwrap();
        assert!(!h.no_new_privs);
        assert_eq!(h.caps, caps::default_set() | 1 << 12);
        let p = Hardening::for_process(&Security::default()).unwrap();
        assert!(p.no_new_privs);
        assert_eq!(p.caps, caps::default_set());
        assert!(Arc::ptr_eq(&p.filter, &Hardening::default_process().unwrap().filter));
    }
}
