//! Entering a running container: what `container exec` and `container shell` run.
//!
//! Invariant: a command enters only a container that runs now (its PID 1 checked by
//! pid and start time), joins all its namespaces through `exec::attach` and is born
//! in the container's cgroups, so its limits count for it too. The CLI says what to
//! run; this module finds where, and `exec` does it.

use super::layout::{self, Dirs};
use super::RunError;
pub use crate::exec::attach::ExecOpts;
use crate::exec::{attach, cgroup};
use std::path::Path;

/// The running PID 1 of `name`, or a clear error.
pub fn running_pid(root: &Path, name: &str) -> Result<i32, RunError> {
    if super::names(root).iter().all(|x| x != name) {
        return Err(RunError::NotFound(name.to_string()));
    }
    layout::running(&Dirs::new(root, name))
        .map(|i| i.pid)
        .ok_or_else(|| RunError::Failed(format!("{name} is not running (start it with `container start {name}`)")))
}

/// Run `opts` in container `name` with the caller's stdin, stdout and stderr (and its
/// terminal when `opts.tty`); the command's exit code.
pub fn exec(root: &Path, name: &str, mut opts: ExecOpts) -> Result<i32, RunError> {
    let pid = running_pid(root, name)?;
    // The command gets the container's capabilities, no_new_privs and seccomp filter.
    let security = super::applied(root, name)?.map(|plan| plan.security).unwrap_or_default();
    opts.security = Some(security);
    // The helper re-executes `container-init` (read-only) before entering: nothing
    // inside ever sees a process that is a copy of the host CLI binary.
    opts.helper.get_or_insert_with(attach::HelperProgram::installed);
    // This root's container's cgroups, never another root's of the same name.
    let key = super::layout::StateRoot::new(root).host_key(name);
    opts.cgroup_procs = cgroup::Cgroups::open(&key).map(|c| c.procs_files()).unwrap_or_default();
    Ok(attach::exec(pid, &opts, attach::Stdio::inherit())?)
}

/// The login shell of container `name`: bash where its root has one, else sh.
pub fn login_shell(root: &Path, name: &str) -> Result<&'static str, RunError> {
    let pid = running_pid(root, name)?;
    // The container's root is what PID 1 sees.
    let has_bash = Path::new(&format!("/proc/{pid}/root/bin/bash")).exists();
    Ok(if has_bash { "/bin/bash" } else { "/bin/sh" })
}
