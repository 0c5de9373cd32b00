//! Supervisor: the PID 1 of a container (also runs as an ordinary process).
//!
//! Invariant: one thread, one `poll` loop, no blocking waits except the few
//! microseconds a fork takes to report its exec. Every child is started in its own
//! session and process group and every signal we send goes to that group. Every child
//! that ends is reaped, including orphans re-parented to us (as PID 1, or as a child
//! subreaper when we are not PID 1). `<run_dir>/status.json` is rewritten (temp file,
//! then rename) after every change of state, so readers never see a torn file.
//! `reconfigure` never touches a service whose definition did not change: same
//! process, same pid, same restart count.
//!
//! Order: init tasks with an empty `after` run first, one at a time in id order. A
//! service starts once every name in its `after` is ready (a service) or done or
//! skipped (an init task) and no init task with an empty `after` is still pending.
//! The other init tasks run, one at a time in id order, once all their `after`
//! services are ready. A service counts as ready (for its dependents, for good) the
//! first time its `ready` probe succeeds, or as soon as it runs when it has none. A
//! probe that has not succeeded after `ready_timeout_ms` stops the service and marks
//! it `failed`. A failed init task blocks only what lists it in `after`.
//!
//! Restart policies: `no`, `on-failure` (non-zero exit or a signal), `always`; the
//! delay doubles from 100 ms to 10 s and is back to 100 ms once an instance ran 10 s.
//! The supervisor keeps running when services end; it exits (0) only when told to stop:
//! SIGTERM, SIGINT or the `stop` control command. Stopping goes in reverse dependency
//! order, one layer at a time ([`stop_layers`]: a service's layer is one more than the
//! highest of what it waits for): SIGTERM to the group of every service of the layer at
//! once, SIGKILL to the groups still there after `stop_timeout_ms` (or the timeout given
//! to `stop`), then the next layer. So a stop takes at most one timeout per layer. SIGHUP reloads every running service that declares a `reload`
//! (services without one are left alone: a stray SIGHUP must not restart a database).
//!
//! Files in `run_dir`: `status.json` ([`Status`]), `control.sock`, `logs/<service>.log`
//! (stdout and stderr of the service, its probes and its reload commands; rotated to
//! `.log.1` at `log_max_bytes`), `logs/init/<task>.log`.
//!
//! Reconfigure: the executor sends `reconfigure` with the new config as a sealed
//! memfd (`SCM_RIGHTS`, [`control_with_fd`]); the supervisor reads it and converges to
//! it without restarting the container. A supervisor started with [`run_file`] and not
//! PID 1 also takes a `reconfigure` without an fd: it reads its file again. A config
//! that cannot be read (an fd that is not a memfd sealed against writes, growing and
//! shrinking, or larger than [`MAX_CONFIG`]), does not parse, has bad dependencies or
//! another `run_dir` is refused and nothing changes. Otherwise:
//! services no longer in the config are stopped (SIGTERM, SIGKILL at the timeout) and
//! leave the status at once; a service whose definition (`ServiceRes`, compared as a
//! whole) changed is stopped, then waits for its `after` like a new service and starts
//! with the new definition (one more restart in its count; its dependents count it as
//! ready again only once the new definition is ready); new services start once their
//! `after` is ready; unchanged services are left alone. Dependents of a changed service
//! are *not* restarted: a dependent that must follow changes its own definition too
//! (the executor can list the dependency's version in its env, say). Every init task of
//! the new config runs again under the order rules above (tasks with an empty `after`
//! before any service waiting to start; `creates` still skips); a task running at that
//! moment finishes first, then runs again if still in the config. Removed tasks leave
//! the status. The other fields (timeouts, log size, `secrets_dir`, `etc_dir`) apply
//! from then on. The status `generation` counts successful reconfigures.
//!
//! Who may reconfigure: the config decides what PID 1 starts, with what user,
//! capabilities, seccomp allowances and no_new_privs, and PID 1 holds the union of
//! every process's capabilities; the control socket is in the run folder, which the
//! container can reach. So as PID 1 of its own pid namespace (`getpid() == 1`: a
//! container's), the supervisor takes `reconfigure` only from a peer outside that
//! namespace, i.e. the host: `SO_PEERCRED` reports the pid of a process our pid
//! namespace cannot see as 0, and every process of the container, its root included,
//! has a pid there (so does one in a nested pid namespace). And it takes the config
//! only from the fd that comes with the request, never from a path (every path it
//! can see, the container may write). Run as an ordinary process (by hand, or the
//! tests), it takes `reconfigure` from its own user or root (the socket is 0600),
//! with an fd or, started with [`run_file`], by reading that file again: there is no
//! container around it to defend against. A refused `reconfigure` changes nothing
//! and answers `{"ok":false,"error":"…"}`. The other requests are open to whoever
//! reaches the socket: they only stop, restart or reload what the config names.
//!
//! Control socket: connect to `control.sock`, send one [`ControlRequest`] as a JSON
//! line (`{"op":"status"}`, `{"op":"restart","service":"web"}`, …), read one
//! [`ControlReply`] JSON line. One grammar on both ends: the supervisor parses the line
//! into the enum once, the host client ([`control`]) serializes the enum; a line that is
//! not a request is answered `{"ok":false,"error":"…"}`. `status` → the [`Status`] in
//! `status`; `reload`, `restart`, `reconfigure` (the reply comes once convergence has
//! begun), `stop` (with `timeout_ms`: SIGKILL after that timeout instead of
//! `stop_timeout_ms`; like every timeout, capped at a day) → `{"ok":true}` or `{"ok":false,"error":"…"}`. A reply that
//! (re)starts services names, in `wait`, the incarnation each of them gets (a number
//! bumped on every spawn of a service); `wait` with such a map is answered once each
//! service is ready in that incarnation or a later one (its probe passed after that
//! spawn; without a probe: it still runs [`START_GRACE`] after its spawn, or ended with
//! exit 0; with `no_grace`, as `start` asks: once spawned), every init task has ended, or with `ok: false`, `failed` naming the
//! services, as soon as one failed (a service without a probe that ends with a failure
//! within [`START_GRACE`] of its spawn fails its start). `reconfigure`, `restart` and
//! `reload` by restart are refused once stopping. An fd passed with a request
//! (`SCM_RIGHTS`, the first one; received close-on-exec) is the config of a
//! `reconfigure` and is ignored by every other request. [`control`] and
//! [`control_with_fd`] are the client.
//!
//! Use: the runtime puts a [`SupervisorConfig`] as JSON in a sealed memfd
//! ([`sealed_config`]) and the sandbox starts, as PID 1 with that memfd at fd
//! [`CONFIG_FD`], the small `container-init --config-fd 3` binary installed next to
//! `container` (through a read-only detached mount, `Program::Exe`); only when that
//! binary is missing does it fall back to a sealed memfd copy of `container` itself
//! running the hidden `__supervise --config-fd 3` subcommand (`Program::SelfExe`).
//! Both call [`pid1_main`], which calls [`run_fd`] (or, given a path, [`run_file`])
//! before any other thread exists (signals
//! are taken with a signalfd, which only works when every thread blocks them; `run`
//! refuses to start in a multi-threaded process). Secrets
//! for init-task stdin come from `secrets_dir/<name>` or, with [`run_with_secrets`],
//! from a lookup function.

mod cgroups;
mod control;
mod engine;
mod log;
mod ready;
pub use log::{parse_times, times_path};
pub use ready::{Listening, ReadyPipe, READY_FD};
mod sealed;
mod spawn;
mod users;

use crate::plan::types::{InitTask, ServiceRes};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

pub use sealed::MAX_CONFIG;

/// The fd at which a container's PID 1 finds its configuration (`container-init
/// --config-fd 3`): a sealed memfd the host made ([`sealed_config`]).
pub const CONFIG_FD: RawFd = 3;

/// The argument that names [`CONFIG_FD`]: `container-init --config-fd 3`.
pub const CONFIG_FD_ARG: &str = "--config-fd";

pub use spawn::DEFAULT_PATH;
pub use users::{resolve as resolve_user, Ident};

/// Everything the supervisor needs; written as JSON by the executor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SupervisorConfig {
    #[serde(default)]
    pub services: BTreeMap<String, ServiceRes>,
    #[serde(default)]
    pub init: BTreeMap<String, InitTask>,
    /// Where logs, `status.json` and `control.sock` live (created if missing).
    pub run_dir: PathBuf,
    /// Size at which a log file is rotated (default 1 MiB).
    #[serde(default = "default_log_max")]
    pub log_max_bytes: u64,
    /// How long a stopping service gets between SIGTERM and SIGKILL (default 10 s).
    #[serde(default = "default_stop_timeout")]
    pub stop_timeout_ms: u64,
    /// How long a service may take to pass its `ready` probe (default 60 s).
    #[serde(default = "default_ready_timeout")]
    pub ready_timeout_ms: u64,
    /// Folder holding one file per secret (file name = secret name), for init-task stdin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secrets_dir: Option<PathBuf>,
    /// Folder with the `passwd` and `group` files users are resolved in (default /etc).
    #[serde(default = "default_etc")]
    pub etc_dir: PathBuf,
}

fn default_log_max() -> u64 {
    1 << 20
}
fn default_stop_timeout() -> u64 {
    10_000
}
fn default_ready_timeout() -> u64 {
    60_000
}
fn default_etc() -> PathBuf {
    PathBuf::from("/etc")
}

impl SupervisorConfig {
    /// No services or tasks, default limits.
    pub fn new(run_dir: impl Into<PathBuf>) -> Self {
        SupervisorConfig {
            services: BTreeMap::new(),
            init: BTreeMap::new(),
            run_dir: run_dir.into(),
            log_max_bytes: default_log_max(),
            stop_timeout_ms: default_stop_timeout(),
            ready_timeout_ms: default_ready_timeout(),
            secrets_dir: None,
            etc_dir: default_etc(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    #[error("supervisor config: {0}")]
    Config(String),
    #[error("{context}: {source}")]
    Io { context: String, source: std::io::Error },
    #[error("{context}: {source}")]
    Sys { context: String, source: nix::errno::Errno },
    #[error("control reply: {0}")]
    Reply(String),
}

impl SupervisorError {
    fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        SupervisorError::Io { context: context.into(), source }
    }
    fn sys(context: impl Into<String>, source: nix::errno::Errno) -> Self {
        SupervisorError::Sys { context: context.into(), source }
    }
}

/// How a process ended: exit code or signal name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitInfo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<String>,
}

impl ExitInfo {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceState {
    /// Not started yet: its `after` dependencies are not ready.
    Waiting,
    /// Running, `ready` probe not passed yet.
    Starting,
    Ready,
    /// Ended and will not be restarted (exit 0, or policy `no`/`on-failure`).
    Exited,
    /// Ended with a failure and will not be restarted, or could not start, or never
    /// became ready (see `message`).
    Failed,
    /// Waiting for its backoff delay, or being restarted on request.
    Restarting,
    /// Got SIGTERM from a stop.
    Stopping,
    Stopped,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceStatus {
    pub state: ServiceState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<i32>,
    pub restarts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_exit: Option<ExitInfo>,
    /// When `state` was entered, in milliseconds since the Unix epoch.
    pub since: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Spawns so far (1 for the first process): `state` describes this incarnation.
    #[serde(default)]
    pub incarnation: u64,
    /// Whether it has a `ready` probe: without one, `ready` only means "started".
    #[serde(default)]
    pub probed: bool,
    /// Lines of its log lost to write errors (a full or read-only disk) since the
    /// supervisor started; `log_error` is the last error.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub log_dropped: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_error: Option<String>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskState {
    Pending,
    Running,
    Done,
    /// `creates` existed.
    Skipped,
    Failed,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskStatus {
    pub state: TaskState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit: Option<ExitInfo>,
    /// Milliseconds since the Unix epoch.
    pub since: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SupervisorState {
    Running,
    Stopping,
    Stopped,
}

/// The content of `status.json` and the reply to `status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub pid: i32,
    pub state: SupervisorState,
    /// Number of successful `reconfigure` requests: once it has grown past the value
    /// seen before a request, this status describes the new config.
    #[serde(default)]
    pub generation: u64,
    pub services: BTreeMap<String, ServiceStatus>,
    pub init: BTreeMap<String, TaskStatus>,
    /// Failed writes of `status.json` so far (the file is then older than this
    /// reply; the host asks the control socket first), and the last error.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub status_error: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_error_message: Option<String>,
    /// Lines of the supervisor's own diagnostics (its stderr) lost to write errors.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub notes_dropped: u64,
}

/// How long a service without a `ready` probe must keep running after its spawn for
/// a start to count as good: one that ends with a failure sooner fails the start.
pub const START_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

/// One request on the control socket (one JSON line; see the module header).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase", deny_unknown_fields)]
pub enum ControlRequest {
    /// The [`Status`], in the reply's `status`.
    Status,
    /// Reload a service (its signal or command; a restart when it declares neither).
    Reload {
        service: String,
    },
    Restart {
        service: String,
    },
    /// Converge to the config passed with the request (or, see [`run_file`], read again).
    Reconfigure,
    /// Stop everything; SIGKILL after `timeout_ms` instead of `stop_timeout_ms`.
    Stop {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timeout_ms: Option<u64>,
    },
    /// Answered once each named service is ready in that incarnation or a later one
    /// and every init task has ended, or as soon as one of them failed.
    Wait {
        services: BTreeMap<String, u64>,
        /// A service without a probe counts as ready once spawned, without the
        /// [`START_GRACE`] it must otherwise outlive (`start`: the spec did not
        /// change, so nothing new is being tried).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        no_grace: bool,
    },
}

/// The one reply to a [`ControlRequest`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlReply {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The incarnation each service (re)started by the request gets: what to `wait` for.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub wait: BTreeMap<String, u64>,
    /// The services a failed `wait` is about, each with why.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub failed: BTreeMap<String, String>,
    /// The reply to `status`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
}

impl ControlReply {
    pub fn ok() -> ControlReply {
        ControlReply { ok: true, ..Default::default() }
    }
    pub fn error(e: impl Into<String>) -> ControlReply {
        ControlReply { ok: false, error: Some(e.into()), ..Default::default() }
    }
}

/// The stop layers of services named by `after` lists (`services`: name → its
/// `after`; `tasks`: init task id → its `after`, a task passes its dependencies on):
/// layer 0 waits for no service, layer k+1 for one of layer k at most. A stop goes
/// from the highest layer down. Unknown names count as nothing; a cycle (refused by
/// the supervisor anyway) does not loop.
pub fn stop_layers(
    services: &BTreeMap<String, std::collections::BTreeSet<String>>,
    tasks: &BTreeMap<String, std::collections::BTreeSet<String>>,
) -> BTreeMap<String, usize> {
    fn depth(
        name: &str,
        services: &BTreeMap<String, std::collections::BTreeSet<String>>,
        tasks: &BTreeMap<String, std::collections::BTreeSet<String>>,
        memo: &mut BTreeMap<String, usize>,
        on_path: &mut Vec<String>,
    ) -> usize {
        if let Some(&d) = memo.get(name) {
            return d;
        }
        if on_path.iter().any(|p| p == name) {
            return 0;
        }
        on_path.push(name.to_string());
        let mut d = 0;
        for dep in services.get(name).into_iter().flatten() {
            if services.contains_key(dep) {
                d = d.max(depth(dep, services, tasks, memo, on_path) + 1);
            } else if let Some(after) = tasks.get(dep) {
                for s in after.iter().filter(|s| services.contains_key(*s)) {
                    d = d.max(depth(s, services, tasks, memo, on_path) + 1);
                }
            }
        }
        on_path.pop();
        memo.insert(name.to_string(), d);
        d
    }
    let mut memo = BTreeMap::new();
    for name in services.keys() {
        depth(name, services, tasks, &mut memo, &mut Vec::new());
    }
    memo
}

/// Runs the supervisor until it is stopped; returns the exit code for the process.
/// Secrets come from `cfg.secrets_dir`. `reconfigure` takes its config only as an fd
/// passed with the request (there is no file to read again).
pub fn run(cfg: SupervisorConfig) -> Result<i32, SupervisorError> {
    engine::run(cfg, None, None)
}

/// [`run`] with secrets from `secret` (name → value).
pub fn run_with_secrets(
    cfg: SupervisorConfig,
    secret: &dyn Fn(&str) -> Option<String>,
) -> Result<i32, SupervisorError> {
    engine::run(cfg, Some(secret), None)
}

/// [`run`] with the config read from the JSON file at `path`; a `reconfigure` that
/// passes no fd reads that file again, unless the supervisor is PID 1 (see the module
/// header, "Who may reconfigure").
pub fn run_file(path: &Path) -> Result<i32, SupervisorError> {
    let cfg = read_config(path)?;
    engine::run(cfg, None, Some(path.to_path_buf()))
}

/// [`run`] with the config read from `fd`, a sealed memfd ([`read_config_fd`]),
/// which is closed before anything starts.
pub fn run_fd(fd: OwnedFd) -> Result<i32, SupervisorError> {
    let cfg = read_config_fd(fd.as_fd())?;
    drop(fd);
    engine::run(cfg, None, None)
}

/// `cfg` as JSON in a new sealed memfd (close-on-exec): what the host passes to PID 1
/// at [`CONFIG_FD`] and with a `reconfigure` ([`control_with_fd`]).
pub fn sealed_config(cfg: &SupervisorConfig) -> Result<OwnedFd, SupervisorError> {
    let json = serde_json::to_vec(cfg).map_err(|e| SupervisorError::Config(e.to_string()))?;
    sealed::seal(c"container-supervisor-config", &json)
        .map_err(|e| SupervisorError::io("sealing the supervisor config in a memfd", e))
}

/// Reads a [`SupervisorConfig`] from a memfd sealed against writes, growing and
/// shrinking (anything else is refused), at most [`MAX_CONFIG`] bytes.
pub fn read_config_fd(fd: BorrowedFd<'_>) -> Result<SupervisorConfig, SupervisorError> {
    let bytes = sealed::read(fd).map_err(|e| SupervisorError::io("reading the supervisor config fd", e))?;
    serde_json::from_slice(&bytes).map_err(|e| SupervisorError::Config(format!("the config fd: {e}")))
}

/// Reads a [`SupervisorConfig`] written as JSON.
pub fn read_config(path: &Path) -> Result<SupervisorConfig, SupervisorError> {
    let bytes = std::fs::read(path).map_err(|e| SupervisorError::io(format!("reading {}", path.display()), e))?;
    serde_json::from_slice(&bytes).map_err(|e| SupervisorError::Config(format!("{}: {e}", path.display())))
}

/// A secret from `dir/<name>`, as [`run`] looks them up.
fn secret_from_dir(dir: Option<&Path>, name: &str) -> Option<String> {
    let dir = dir?;
    // A secret name is a file name, never a path.
    if name.is_empty() || name.contains('/') || name.starts_with('.') {
        return None;
    }
    // An empty one is no value (never an empty password): the task fails, naming it.
    std::fs::read_to_string(dir.join(name)).ok().filter(|v| !v.trim().is_empty())
}

/// Where PID 1 takes its configuration from: the arguments of `container-init` (and
/// of the fallback `container __supervise`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigSource {
    /// `CONFIG`: a JSON file ([`run_file`]); for a supervisor run by hand or by tests.
    File(PathBuf),
    /// `--config-fd N`: a sealed memfd at fd `N` ([`run_fd`]); what containers use.
    Fd(RawFd),
}

impl ConfigSource {
    /// `[CONFIG]` or `[--config-fd, N]`; anything else is `None` (a usage error).
    pub fn parse(args: &[OsString]) -> Option<ConfigSource> {
        match args {
            [flag, n] if flag == CONFIG_FD_ARG => {
                n.to_str()?.parse::<RawFd>().ok().filter(|&n| n > 2).map(ConfigSource::Fd)
            }
            [path] if !path.to_string_lossy().starts_with('-') => Some(ConfigSource::File(PathBuf::from(path))),
            _ => None,
        }
    }
}

/// The whole life of a container's PID 1 (`container-init --config-fd 3`, or the
/// fallback `container __supervise --config-fd 3`; a `CONFIG` path instead for a
/// supervisor started by hand): leave the starter's session, so a terminal's hangup
/// or job-control signals never reach the container, then [`run_fd`] or
/// [`run_file`]. Returns the process exit code.
pub fn pid1_main(config: &ConfigSource) -> u8 {
    // SAFETY: setsid and prctl have no memory effects; setsid fails harmlessly for a
    // group leader.
    // SIGPIPE ignored (Rust's runtime does it too; said here, as PID 1 depends on
    // it): a write to a closed pipe or socket is an EPIPE error, never our death.
    // Non-dumpable: no process of the container without CAP_SYS_PTRACE may ptrace
    // PID 1 or open its /proc/1/mem, so none can make it run the clone3 its filter
    // allows (see `Hardening::for_pid1`). Exec resets the flag, so the services
    // PID 1 starts are dumpable as usual.
    unsafe {
        libc::setsid();
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
        libc::prctl(libc::PR_SET_DUMPABLE, 0 as libc::c_ulong);
    }
    let result = match config {
        ConfigSource::File(path) => run_file(path),
        // SAFETY: F_GETFD/F_SETFD on a plain integer; no memory is passed.
        ConfigSource::Fd(n) => match unsafe { libc::fcntl(*n, libc::F_SETFD, libc::FD_CLOEXEC) } {
            0 => {
                cgroups::adopt();
                ready::adopt();
                // SAFETY: the fd is open (F_SETFD succeeded) and was given to us to
                // own: nothing else in this process uses it.
                run_fd(unsafe { OwnedFd::from_raw_fd(*n) })
            }
            _ => Err(SupervisorError::io(format!("config fd {n}"), std::io::Error::last_os_error())),
        },
    };
    match result {
        Ok(code) => u8::try_from(code).unwrap_or(1),
        Err(e) => {
            // Never a panicking eprintln: stderr may be on a full disk.
            engine::note_line(&format!("error: supervisor: {e}"));
            1
        }
    }
}

/// Path of the control socket in `run_dir`.
pub fn control_socket(run_dir: &Path) -> PathBuf {
    run_dir.join("control.sock")
}

/// Sends one request to the running supervisor whose process is `pid` (a container's
/// PID 1, as `run.json` names it) and returns its reply. The socket is opened
/// beneath `run_dir` without following a symlink, and the reply is read only when the
/// process listening on it is `pid` (`SO_PEERCRED`): a socket the container planted,
/// or another container's, is refused. A `wait` is given as long as it takes, up to
/// [`WAIT_MAX`]; any other request 10 s.
pub fn control(run_dir: &Path, pid: i32, request: &ControlRequest) -> Result<ControlReply, SupervisorError> {
    control::request(run_dir, pid, &line_of(request)?, None, timeout_of(request))
}

/// [`control`] with `fd` passed along (`SCM_RIGHTS`): `reconfigure` with the new
/// config as a sealed memfd ([`sealed_config`]).
pub fn control_with_fd(
    run_dir: &Path,
    pid: i32,
    request: &ControlRequest,
    fd: BorrowedFd<'_>,
) -> Result<ControlReply, SupervisorError> {
    control::request(run_dir, pid, &line_of(request)?, Some(fd), timeout_of(request))
}

/// [`control`] with a raw line, as a person (or a test) may type one.
pub fn control_line(run_dir: &Path, pid: i32, line: &str) -> Result<ControlReply, SupervisorError> {
    control::request(run_dir, pid, line, None, std::time::Duration::from_secs(10))
}

/// The longest a `wait` request is waited for.
pub const WAIT_MAX: std::time::Duration = std::time::Duration::from_secs(90);

fn line_of(request: &ControlRequest) -> Result<String, SupervisorError> {
    serde_json::to_string(request).map_err(|e| SupervisorError::Config(e.to_string()))
}

fn timeout_of(request: &ControlRequest) -> std::time::Duration {
    match request {
        ControlRequest::Wait { .. } => WAIT_MAX,
        _ => std::time::Duration::from_secs(10),
    }
}

/// Reads `<run_dir>/status.json`: never through a symlink, a regular file only (a
/// FIFO cannot hang the reader), at most `beneath::MAX_STATE_FILE` bytes.
pub fn read_status(run_dir: &Path) -> Result<Status, SupervisorError> {
    let path = run_dir.join("status.json");
    let ctx = || format!("reading {}", path.display());
    let dir = crate::exec::beneath::Beneath::open(run_dir).map_err(|e| SupervisorError::io(ctx(), e))?;
    let bytes = dir
        .read(Path::new("status.json"), crate::exec::beneath::MAX_STATE_FILE)
        .map_err(|e| SupervisorError::io(ctx(), e))?
        .ok_or_else(|| SupervisorError::io(ctx(), std::io::ErrorKind::NotFound.into()))?;
    serde_json::from_slice(&bytes).map_err(|e| SupervisorError::Config(format!("{}: {e}", path.display())))
}
