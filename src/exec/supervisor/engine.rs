//! The event loop and the state machine of services and init tasks.
//!
//! Invariant: all state lives in `Sup` and changes only on this thread, in response
//! to one of: a signal read from the signalfd (SIGCHLD, SIGTERM, SIGINT, SIGHUP), log
//! data, a control request, or a timer (restart backoff, readiness probe, readiness
//! deadline, kill deadline) found due by `tick`. `tick` is idempotent: it only starts
//! what is due, so calling it after every event keeps the order rules of the module
//! header without any queue of pending work.

use super::cgroups;
use super::control::{self, Conn, Input};
use super::log::LogSink;
use super::spawn::{self, PreparedCommand};
use super::{
    ControlReply, ControlRequest, ExitInfo, ServiceState, ServiceStatus, Status, SupervisorConfig, SupervisorError,
    SupervisorState, TaskState, TaskStatus, START_GRACE,
};
use crate::plan::types::{InitTask, Reload, ServiceRes};
use crate::spec::types::{Ready, Restart};
use crate::vocab::values::SignalName;
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::socket::UnixCredentials;
use nix::unistd::Pid;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Seek, Write};
use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const PROBE_INTERVAL: Duration = Duration::from_millis(100);
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// An instance that ran this long resets the backoff delay.
const BACKOFF_RESET: Duration = Duration::from_secs(10);
/// Spawns after the one a `wait` names, without becoming ready, that make it fail.
const CRASH_LOOP: u64 = 3;
/// How often pending `wait`s are looked at when nothing else happens.
const WAIT_CHECK: Duration = Duration::from_millis(50);

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// Lines of the supervisor's own diagnostics that could not be written.
static NOTES_DROPPED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Writes `line` and a newline to stderr (whatever the executor gave PID 1: a file
/// on the state root, which may be full or read-only). Never `eprintln!`: that
/// panics on a failed write, and PID 1 aborts on panic. A failure is counted
/// (`notes_dropped` in the status).
pub(super) fn note_line(line: &str) {
    let mut buf = Vec::with_capacity(line.len() + 1);
    buf.extend_from_slice(line.as_bytes());
    buf.push(b'\n');
    let mut rest = &buf[..];
    while !rest.is_empty() {
        // SAFETY: a write of a live buffer to fd 2 (always open: `ensure_std_fds`).
        let n = unsafe { libc::write(2, rest.as_ptr().cast(), rest.len()) };
        if n > 0 {
            rest = &rest[n as usize..];
        } else if n < 0 && Errno::last() == Errno::EINTR {
            continue;
        } else {
            NOTES_DROPPED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return;
        }
    }
}

fn note(msg: &str) {
    note_line(&format!("supervisor: {msg}"));
}

/// The longest timeout taken from a request or a config (a day): an `Instant` plus a
/// huge `Duration` would overflow, and a panic is the container's death.
const MAX_TIMEOUT_MS: u64 = 86_400_000;

fn millis(ms: u64) -> Duration {
    Duration::from_millis(ms.min(MAX_TIMEOUT_MS))
}

/// Signals a whole process group; a group that is already gone is not an error.
fn signal_group(pgid: i32, sig: Signal) {
    let _ = nix::sys::signal::killpg(Pid::from_raw(pgid), sig);
}

/// The signal a plan names (one of `vocab::values::SIGNALS`).
fn signal_of(name: &SignalName) -> Signal {
    match name.as_str() {
        "HUP" => Signal::SIGHUP,
        "INT" => Signal::SIGINT,
        "QUIT" => Signal::SIGQUIT,
        "USR1" => Signal::SIGUSR1,
        "USR2" => Signal::SIGUSR2,
        "WINCH" => Signal::SIGWINCH,
        _ => Signal::SIGTERM,
    }
}

/// What to do when a running service's process ends.
enum Intent {
    /// Apply the restart policy.
    None,
    Stop,
    Restart,
    /// Its definition changed (`reconfigure`): wait for the dependencies again, then
    /// start the new definition.
    Replace,
    Fail(String),
}

struct Service {
    name: String,
    res: ServiceRes,
    state: ServiceState,
    message: Option<String>,
    since: u64,
    pid: Option<i32>,
    started_once: bool,
    restarts: u32,
    last_exit: Option<ExitInfo>,
    started: Instant,
    ever_ready: bool,
    backoff: Duration,
    restart_at: Option<Instant>,
    ready_deadline: Option<Instant>,
    probe_at: Option<Instant>,
    probe_pid: Option<i32>,
    probe_error: Option<String>,
    kill_at: Option<Instant>,
    intent: Intent,
    log: LogSink,
    /// Removed by `reconfigure` and still being stopped: not in the status, dropped once
    /// its process has ended. Such services sit after the config's services in `svcs`.
    gone: bool,
    /// Spawns so far (every attempt, a failed one too): the current incarnation.
    incarnation: u64,
    /// The last incarnation without a probe that ended with a failure within
    /// `START_GRACE` of its spawn, and how: it fails a `wait` for it or an earlier one.
    early_exit: Option<(u64, String)>,
}

impl Service {
    fn new(name: &str, res: ServiceRes, log: LogSink) -> Service {
        Service {
            name: name.to_string(),
            res,
            state: ServiceState::Waiting,
            message: None,
            since: now_ms(),
            pid: None,
            started_once: false,
            restarts: 0,
            last_exit: None,
            started: Instant::now(),
            ever_ready: false,
            backoff: BACKOFF_MIN,
            restart_at: None,
            ready_deadline: None,
            probe_at: None,
            probe_pid: None,
            probe_error: None,
            kill_at: None,
            intent: Intent::None,
            log,
            gone: false,
            incarnation: 0,
            early_exit: None,
        }
    }
}

/// A `wait` request not answered yet.
struct Waiter {
    conn: Conn,
    services: BTreeMap<String, u64>,
    no_grace: bool,
}

/// Where a service stands for a `wait` on one of its incarnations.
enum Fresh {
    Ok,
    Pending,
    Fail(String),
}

struct Task {
    id: String,
    task: InitTask,
    state: TaskState,
    exit: Option<ExitInfo>,
    message: Option<String>,
    since: u64,
    pid: Option<i32>,
    log: Option<LogSink>,
    kill_at: Option<Instant>,
    /// Removed by `reconfigure` while running: not in the status, dropped once it has
    /// ended. Such tasks sit after the config's tasks in `tasks`.
    gone: bool,
    /// `reconfigure` came while it ran: it runs again (the new definition) once ended.
    again: bool,
}

impl Task {
    fn new(id: &str, task: InitTask) -> Task {
        Task {
            id: id.to_string(),
            task,
            state: TaskState::Pending,
            exit: None,
            message: None,
            since: now_ms(),
            pid: None,
            log: None,
            kill_at: None,
            gone: false,
            again: false,
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Dep {
    Service(usize),
    Task(usize),
}

#[derive(Clone, Copy)]
enum PollSource {
    Signal,
    Listener,
    Conn(usize),
    ServiceLog(usize),
    TaskLog(usize),
}

/// A secret's value by name.
type SecretFn<'a> = &'a dyn Fn(&str) -> Option<String>;

struct Sup<'a> {
    /// The config's services in name order (the indexes of `svc_deps` and `order`),
    /// then the `gone` ones.
    svcs: Vec<Service>,
    svc_deps: Vec<Vec<Dep>>,
    /// The config's tasks in id order (the indexes of `task_deps`), then the `gone` ones.
    tasks: Vec<Task>,
    task_deps: Vec<Vec<usize>>,
    /// Services in dependency order (dependencies first, then by name).
    order: Vec<usize>,
    /// Some once stopping: the layers of services still to stop, the next one last;
    /// every service of a layer is stopped at once.
    stop_queue: Option<Vec<Vec<usize>>>,
    /// The stop layer of each config service (see `super::stop_layers`).
    layers: Vec<usize>,
    /// `wait` requests to answer.
    waiters: Vec<Waiter>,
    /// Running reload commands: (pid, service name). By name: `reconfigure` renumbers
    /// services.
    /// Running reload commands: pid, service, and the control connection that asked
    /// for it (answered when the command ends, with its outcome).
    reloaders: Vec<(i32, String, Option<Conn>)>,
    conns: Vec<Conn>,
    devnull: OwnedFd,
    /// The caller's secret lookup; without one, files in `secrets_dir`.
    secret: Option<SecretFn<'a>>,
    secrets_dir: Option<PathBuf>,
    /// The config file `reconfigure` reads again, when started from one.
    source: Option<PathBuf>,
    /// Successful `reconfigure`s so far.
    generation: u64,
    run_dir: PathBuf,
    etc_dir: PathBuf,
    log_max: u64,
    stop_timeout: Duration,
    ready_timeout: Duration,
    dirty: bool,
    status_error_shown: bool,
    /// Failed writes of `status.json`, and the last error.
    status_errors: u64,
    status_error: Option<String>,
}

/// Checks names in `after` and refuses cycles; returns the dependency lists and a
/// dependency order of the services.
#[allow(clippy::type_complexity)]
fn graph(cfg: &SupervisorConfig) -> Result<(Vec<Vec<Dep>>, Vec<Vec<usize>>, Vec<usize>), SupervisorError> {
    let svc_index: BTreeMap<&str, usize> = cfg.services.keys().enumerate().map(|(i, k)| (k.as_str(), i)).collect();
    let task_index: BTreeMap<&str, usize> = cfg.init.keys().enumerate().map(|(i, k)| (k.as_str(), i)).collect();
    let mut svc_deps = Vec::new();
    for (name, s) in &cfg.services {
        let mut deps = Vec::new();
        for d in &s.after {
            if let Some(&i) = svc_index.get(d.as_str()) {
                deps.push(Dep::Service(i));
            } else if let Some(&t) = task_index.get(d.as_str()) {
                deps.push(Dep::Task(t));
            } else {
                return Err(SupervisorError::Config(format!("service {name}: `after` names unknown {d:?}")));
            }
        }
        svc_deps.push(deps);
    }
    let mut task_deps = Vec::new();
    for (id, t) in &cfg.init {
        let mut deps = Vec::new();
        for d in &t.after {
            match svc_index.get(d.as_str()) {
                Some(&i) => deps.push(i),
                None => {
                    return Err(SupervisorError::Config(format!("init task {id}: `after` names unknown service {d:?}")))
                }
            }
        }
        task_deps.push(deps);
    }
    // Depth-first over services and tasks together: a service waiting for a task
    // that waits for the service would never start.
    let n = svc_deps.len();
    let mut mark = vec![0u8; n + task_deps.len()];
    let mut order = Vec::new();
    fn visit(
        node: usize,
        n: usize,
        svc_deps: &[Vec<Dep>],
        task_deps: &[Vec<usize>],
        mark: &mut [u8],
        order: &mut Vec<usize>,
    ) -> Result<(), usize> {
        match mark[node] {
            2 => return Ok(()),
            1 => return Err(node),
            _ => {}
        }
        mark[node] = 1;
        let next: Vec<usize> = if node < n {
            svc_deps[node]
                .iter()
                .map(|d| match *d {
                    Dep::Service(i) => i,
                    Dep::Task(t) => n + t,
                })
                .collect()
        } else {
            task_deps[node - n].clone()
        };
        for m in next {
            visit(m, n, svc_deps, task_deps, mark, order)?;
        }
        mark[node] = 2;
        if node < n {
            order.push(node);
        }
        Ok(())
    }
    for node in 0..mark.len() {
        if let Err(at) = visit(node, n, &svc_deps, &task_deps, &mut mark, &mut order) {
            let name = if at < n {
                cfg.services.keys().nth(at).cloned()
            } else {
                cfg.init.keys().nth(at - n).map(|t| format!("init task {t}"))
            };
            return Err(SupervisorError::Config(format!("dependency cycle through {}", name.unwrap_or_default())));
        }
    }
    Ok((svc_deps, task_deps, order))
}

/// The stop layer of each service (indexes of `svc_deps`): 0 when it waits for no
/// service, else one more than the highest layer it waits for, directly or through
/// an init task. `order` has dependencies first.
fn layers_of(svc_deps: &[Vec<Dep>], task_deps: &[Vec<usize>], order: &[usize]) -> Vec<usize> {
    let mut layer = vec![0usize; svc_deps.len()];
    for &i in order {
        let mut l = 0;
        for d in &svc_deps[i] {
            match *d {
                Dep::Service(j) => l = l.max(layer[j] + 1),
                Dep::Task(t) => {
                    for &j in &task_deps[t] {
                        l = l.max(layer[j] + 1);
                    }
                }
            }
        }
        layer[i] = l;
    }
    layer
}

/// `order` cut into stop layers, the first layer to stop last.
fn stop_queue_of(order: &[usize], layers: &[usize]) -> Vec<Vec<usize>> {
    let top = layers.iter().copied().max().map_or(0, |m| m + 1);
    let mut q = vec![Vec::new(); top];
    for &i in order {
        q[layers[i]].push(i);
    }
    q
}

/// Whether `peer` may `reconfigure` (see the module header, "Who may reconfigure").
/// As PID 1 of its pid namespace (a container's), only a process outside that
/// namespace may: the kernel reports the pid of a peer our namespace cannot see as
/// 0, and every process of the container has a pid here, its root's included. Run
/// as an ordinary process, the peer must be our own user or root (the socket is 0600
/// anyway).
fn may_reconfigure(pid1: bool, peer: Option<UnixCredentials>) -> Result<(), String> {
    let Some(peer) = peer else { return Err("reconfigure refused: the sender's credentials are unknown".into()) };
    if pid1 {
        if peer.pid() != 0 {
            return Err(format!(
                "reconfigure refused: it comes from process {} inside this container; only the host may reconfigure",
                peer.pid()
            ));
        }
        return Ok(());
    }
    let me = nix::unistd::geteuid().as_raw();
    if peer.uid() != me && peer.uid() != 0 {
        return Err(format!("reconfigure refused: it comes from uid {}, not from the supervisor's user", peer.uid()));
    }
    Ok(())
}

/// `run` must own the process's only thread: a process-directed signal goes to any
/// thread that does not block it, and only ours does.
fn check_single_threaded() -> Result<(), SupervisorError> {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else { return Ok(()) };
    let threads = status.lines().find_map(|l| l.strip_prefix("Threads:")).and_then(|v| v.trim().parse::<u32>().ok());
    match threads {
        Some(t) if t > 1 => Err(SupervisorError::Config(format!(
            "the supervisor must run in a single-threaded process (this one has {t} threads)"
        ))),
        _ => Ok(()),
    }
}

/// Children get /dev/null, the log pipe and nothing else on 0..2; our own 0..2 must be
/// taken so that no pipe we open lands there.
fn ensure_std_fds() {
    for fd in 0..3 {
        // SAFETY: plain fcntl/open on small integers; the opened fd is intentionally
        // kept for the life of the process.
        unsafe {
            if libc::fcntl(fd, libc::F_GETFD) < 0 && Errno::last() == Errno::EBADF {
                libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
            }
        }
    }
}

fn mkdir(p: &Path) -> Result<(), SupervisorError> {
    std::fs::create_dir_all(p).map_err(|e| SupervisorError::io(format!("creating {}", p.display()), e))
}

fn open_log(run_dir: &Path, service: &str, max: u64) -> Result<LogSink, SupervisorError> {
    let path = run_dir.join("logs").join(format!("{service}.log"));
    LogSink::new(path.clone(), max)
        .map(LogSink::timed)
        .map_err(|e| SupervisorError::io(format!("log {}", path.display()), e))
}

/// `secret` overrides `cfg.secrets_dir`; `source` is the file `cfg` was read from.
pub fn run(
    cfg: SupervisorConfig,
    secret: Option<SecretFn<'_>>,
    source: Option<PathBuf>,
) -> Result<i32, SupervisorError> {
    check_single_threaded()?;
    ensure_std_fds();
    let (svc_deps, task_deps, order) = graph(&cfg)?;
    let layers = layers_of(&svc_deps, &task_deps, &order);
    let logs = cfg.run_dir.join("logs");
    mkdir(&logs.join("init"))?;

    let mut mask = SigSet::empty();
    for s in [Signal::SIGCHLD, Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        mask.add(s);
    }
    let mut old_mask = SigSet::empty();
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&mask), Some(&mut old_mask))
        .map_err(|e| SupervisorError::sys("blocking signals", e))?;
    let result = (|| {
        let sigfd = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
            .map_err(|e| SupervisorError::sys("signalfd", e))?;
        if std::process::id() != 1 {
            // Orphans of our services must come to us to be reaped, as they would to PID 1.
            // SAFETY: prctl with integer arguments.
            if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
                return Err(SupervisorError::sys("PR_SET_CHILD_SUBREAPER", Errno::last()));
            }
        }
        let devnull = File::open("/dev/null").map_err(|e| SupervisorError::io("opening /dev/null", e))?;
        let mut svcs = Vec::new();
        for (name, res) in cfg.services.iter() {
            svcs.push(Service::new(name, res.clone(), open_log(&cfg.run_dir, name, cfg.log_max_bytes)?));
        }
        let tasks = cfg.init.iter().map(|(id, task)| Task::new(id, task.clone())).collect();
        let sock = super::control_socket(&cfg.run_dir);
        let listener =
            control::listen(&sock).map_err(|e| SupervisorError::io(format!("control socket {}", sock.display()), e))?;
        // The host waits on this instead of retrying its connect.
        super::ready::announce();
        let mut sup = Sup {
            svcs,
            svc_deps,
            tasks,
            task_deps,
            order,
            stop_queue: None,
            layers,
            waiters: Vec::new(),
            reloaders: Vec::new(),
            conns: Vec::new(),
            devnull: devnull.into(),
            secret,
            secrets_dir: cfg.secrets_dir.clone(),
            source,
            generation: 0,
            run_dir: cfg.run_dir.clone(),
            etc_dir: cfg.etc_dir.clone(),
            log_max: cfg.log_max_bytes,
            stop_timeout: millis(cfg.stop_timeout_ms),
            ready_timeout: millis(cfg.ready_timeout_ms),
            dirty: true,
            status_error_shown: false,
            status_errors: 0,
            status_error: None,
        };
        let r = sup.main_loop(&sigfd, &listener);
        let _ = std::fs::remove_file(&sock);
        // A second SIGTERM still queued would kill the caller once the mask is
        // restored; it asked for what has just been done.
        while let Ok(Some(_)) = sigfd.read_signal() {}
        r
    })();
    let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&old_mask), None);
    result
}

impl Sup<'_> {
    fn main_loop(&mut self, sigfd: &SignalFd, listener: &UnixListener) -> Result<i32, SupervisorError> {
        loop {
            // Here, between rounds of events, no index into `svcs` or `tasks` is held.
            self.drop_gone();
            // A start can make more things due (a service without probe is ready at once).
            for _ in 0..64 {
                if !self.tick(Instant::now()) {
                    break;
                }
            }
            if self.stop_complete() {
                self.finish();
                return Ok(0);
            }
            if self.dirty {
                self.write_status(SupervisorState::Running);
            }
            // After the status is written: a client told "ready" reads a fresh one.
            self.answer_waiters(Instant::now());
            let timeout = match self.next_deadline() {
                None => PollTimeout::NONE,
                Some(t) => {
                    let ms = t.saturating_duration_since(Instant::now()).as_millis() + 1;
                    PollTimeout::from(u16::try_from(ms).unwrap_or(u16::MAX))
                }
            };
            let mut srcs = vec![PollSource::Signal, PollSource::Listener];
            srcs.extend((0..self.conns.len()).map(PollSource::Conn));
            srcs.extend((0..self.svcs.len()).map(PollSource::ServiceLog));
            srcs.extend(
                self.tasks.iter().enumerate().filter(|(_, t)| t.log.is_some()).map(|(i, _)| PollSource::TaskLog(i)),
            );
            let ready: Vec<PollSource> = {
                let mut fds: Vec<PollFd> = srcs
                    .iter()
                    .filter_map(|s| {
                        let fd = match *s {
                            PollSource::Signal => sigfd.as_fd(),
                            PollSource::Listener => listener.as_fd(),
                            PollSource::Conn(i) => self.conns[i].stream().as_fd(),
                            PollSource::ServiceLog(i) => self.svcs[i].log.reader(),
                            PollSource::TaskLog(i) => self.tasks[i].log.as_ref()?.reader(),
                        };
                        Some(PollFd::new(fd, PollFlags::POLLIN))
                    })
                    .collect();
                match nix::poll::poll(&mut fds, timeout) {
                    Ok(_) | Err(Errno::EINTR | Errno::EAGAIN) => {}
                    Err(e) => {
                        // ENOMEM and the like: PID 1 must outlive them; try again soon.
                        note(&format!("poll: {e}"));
                        std::thread::sleep(Duration::from_millis(100));
                        continue;
                    }
                }
                srcs.iter()
                    .zip(fds.iter())
                    .filter(|(_, f)| f.revents().is_some_and(|r| !r.is_empty()))
                    .map(|(s, _)| *s)
                    .collect()
            };
            let mut conn_events = Vec::new();
            for src in ready {
                match src {
                    PollSource::Signal => self.on_signals(sigfd),
                    PollSource::Listener => self.accept(listener),
                    PollSource::Conn(i) => conn_events.push(i),
                    PollSource::ServiceLog(i) => {
                        if let Err(e) = self.svcs[i].log.drain() {
                            note(&format!("log of {}: {e}", self.svcs[i].name));
                        }
                    }
                    PollSource::TaskLog(i) => {
                        if let Some(Err(e)) = self.tasks[i].log.as_mut().map(LogSink::drain) {
                            note(&format!("log of init task {}: {e}", self.tasks[i].id));
                        }
                    }
                }
            }
            // Highest index first, so removing one keeps the others valid.
            conn_events.sort_unstable_by(|a, b| b.cmp(a));
            for i in conn_events {
                match self.conns[i].read() {
                    Input::More => {}
                    Input::Closed => {
                        self.conns.remove(i);
                    }
                    Input::Line(line) => {
                        let mut conn = self.conns.remove(i);
                        let req = match serde_json::from_str::<ControlRequest>(&line) {
                            Ok(req) => req,
                            Err(e) => {
                                conn.reply(&ControlReply::error(format!(
                                    "unknown request {line:?} ({e}): expected one JSON line such as \
                                     {{\"op\":\"status\"}}; ops: status, reload, restart, reconfigure, stop, wait"
                                )));
                                continue;
                            }
                        };
                        match req {
                            ControlRequest::Wait { services, no_grace } => self.add_waiter(conn, services, no_grace),
                            ControlRequest::Reload { service } if self.reload_by_command(&service) => {
                                self.answer_reload(&service, conn)
                            }
                            req => {
                                let fd = conn.take_fd();
                                let reply = self.request(req, fd, conn.peer());
                                conn.reply(&reply);
                            }
                        }
                    }
                }
            }
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        let svc = self.svcs.iter().flat_map(|s| {
            let probe = if s.probe_pid.is_none() { s.probe_at } else { None };
            [s.kill_at, s.restart_at, s.ready_deadline, probe]
        });
        let wait = (!self.waiters.is_empty()).then(|| Instant::now() + WAIT_CHECK);
        svc.chain(self.tasks.iter().map(|t| t.kill_at)).chain([wait]).flatten().min()
    }

    fn on_signals(&mut self, sigfd: &SignalFd) {
        loop {
            let info = match sigfd.read_signal() {
                Ok(Some(info)) => info,
                Ok(None) => return,
                Err(Errno::EINTR) => continue,
                Err(e) => {
                    note(&format!("reading signals: {e}"));
                    return;
                }
            };
            match Signal::try_from(info.ssi_signo as i32) {
                Ok(Signal::SIGCHLD) => self.reap(),
                Ok(Signal::SIGTERM | Signal::SIGINT) => self.begin_stop(None),
                Ok(Signal::SIGHUP) => {
                    for i in 0..self.svcs.len() {
                        let s = &self.svcs[i];
                        if !s.gone && s.res.reload.is_some() && s.pid.is_some() {
                            if let Err(e) = self.reload(i).map(drop) {
                                note(&format!("reload {}: {e}", self.svcs[i].name));
                            }
                        }
                    }
                }
                _ => {}
            }
        }
    }

    fn accept(&mut self, listener: &UnixListener) {
        loop {
            match listener.accept() {
                Ok((stream, _)) => {
                    if self.conns.len() >= control::MAX_CONNS {
                        continue; // dropped: closes the connection
                    }
                    if let Ok(c) = Conn::new(stream) {
                        self.conns.push(c);
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => return,
            }
        }
    }

    /// One request; `fd` came with it (`SCM_RIGHTS`), `peer` sent it.
    fn request(&mut self, req: ControlRequest, fd: Option<OwnedFd>, peer: Option<UnixCredentials>) -> ControlReply {
        let result = match req {
            ControlRequest::Status => {
                return ControlReply { status: Some(self.status(self.state())), ..ControlReply::ok() }
            }
            ControlRequest::Stop { timeout_ms } => {
                self.begin_stop(timeout_ms.map(millis));
                Ok(BTreeMap::new())
            }
            ControlRequest::Reload { service } => self.find(&service).and_then(|i| self.reload(i)),
            ControlRequest::Restart { service } => self.find(&service).and_then(|i| self.restart(i)),
            ControlRequest::Reconfigure => self.reconfigure(fd, peer),
            // Taken by the main loop.
            ControlRequest::Wait { .. } => Err("wait: not here".into()),
        };
        match result {
            Ok(wait) => ControlReply { wait, ..ControlReply::ok() },
            Err(e) => ControlReply::error(e),
        }
    }

    /// Whether `reload SERVICE` means running its reload command (answered once the
    /// command ends, so `apply` learns whether it worked, e.g. `caddy reload`
    /// rejecting a config).
    fn reload_by_command(&self, service: &str) -> bool {
        self.find(service)
            .is_ok_and(|i| matches!(self.svcs[i].res.reload, Some(Reload::Command(_))) && self.svcs[i].pid.is_some())
    }

    /// Starts the reload command of `service`; `conn` is answered when it ends.
    fn answer_reload(&mut self, service: &str, conn: Conn) {
        match self.find(service).and_then(|i| self.reload(i)) {
            Ok(_) => {
                if let Some(r) = self.reloaders.last_mut() {
                    r.2 = Some(conn);
                }
            }
            Err(e) => conn.reply(&ControlReply::error(e)),
        }
    }

    // ---- waiting for readiness ----------------------------------------------------

    fn add_waiter(&mut self, conn: Conn, services: BTreeMap<String, u64>, no_grace: bool) {
        if self.waiters.len() >= control::MAX_CONNS {
            conn.reply(&ControlReply::error("too many waits under way"));
            return;
        }
        self.waiters.push(Waiter { conn, services, no_grace });
    }

    /// Answers the `wait`s whose services are all ready in their incarnation (and
    /// every init task has ended), or of which one failed.
    fn answer_waiters(&mut self, now: Instant) {
        let mut k = 0;
        while k < self.waiters.len() {
            let verdict = if self.stop_queue.is_some() {
                Some(ControlReply::error("the supervisor is stopping"))
            } else {
                self.verdict(&self.waiters[k].services, self.waiters[k].no_grace, now)
            };
            match verdict {
                Some(reply) => self.waiters.swap_remove(k).conn.reply(&reply),
                None => k += 1,
            }
        }
    }

    fn verdict(&self, services: &BTreeMap<String, u64>, no_grace: bool, now: Instant) -> Option<ControlReply> {
        let mut failed = BTreeMap::new();
        let mut pending = false;
        for (name, &n) in services {
            match self.fresh(name, n, no_grace, now) {
                Fresh::Ok => {}
                Fresh::Pending => pending = true,
                Fresh::Fail(e) => {
                    failed.insert(name.clone(), e);
                }
            }
        }
        let status = Some(self.status(self.state()));
        if !failed.is_empty() {
            let error = failed.iter().map(|(n, e)| format!("service {n}: {e}")).collect::<Vec<_>>().join("; ");
            return Some(ControlReply { ok: false, error: Some(error), failed, status, ..Default::default() });
        }
        let tasks_done = self
            .tasks
            .iter()
            .filter(|t| !t.gone)
            .all(|t| matches!(t.state, TaskState::Done | TaskState::Skipped | TaskState::Failed));
        (!pending && tasks_done).then(|| ControlReply { status, ..ControlReply::ok() })
    }

    /// Whether service `name` is ready in incarnation `n` or a later one.
    fn fresh(&self, name: &str, n: u64, no_grace: bool, now: Instant) -> Fresh {
        let Ok(i) = self.find(name) else { return Fresh::Fail("not in the configuration".into()) };
        let s = &self.svcs[i];
        if let Some((k, msg)) = &s.early_exit {
            if *k >= n {
                return Fresh::Fail(msg.clone());
            }
        }
        if s.incarnation < n {
            if s.state == ServiceState::Waiting {
                if let Some(m) = &s.message {
                    return Fresh::Fail(m.clone());
                }
                for d in &self.svc_deps[i] {
                    if let Dep::Service(j) = *d {
                        let dep = &self.svcs[j];
                        if !dep.ever_ready && matches!(dep.state, ServiceState::Failed | ServiceState::Exited) {
                            return Fresh::Fail(format!("waits for {}, which {}", dep.name, state_word(dep.state)));
                        }
                    }
                }
            }
            return Fresh::Pending;
        }
        match s.state {
            ServiceState::Ready if s.res.ready.is_some() => Fresh::Ok,
            // Started: it must outlive the grace period.
            ServiceState::Ready
                if no_grace || s.pid.is_none() || now.saturating_duration_since(s.started) >= START_GRACE =>
            {
                Fresh::Ok
            }
            ServiceState::Ready => Fresh::Pending,
            ServiceState::Exited => Fresh::Ok,
            ServiceState::Failed => Fresh::Fail(s.message.clone().unwrap_or_else(|| "failed".into())),
            ServiceState::Stopped => Fresh::Fail("stopped".into()),
            _ if s.incarnation >= n + CRASH_LOOP => Fresh::Fail(format!(
                "keeps exiting: started {} times without becoming ready{}",
                s.incarnation + 1 - n,
                s.last_exit.as_ref().map(|e| format!(", last {}", describe(e))).unwrap_or_default()
            )),
            _ => Fresh::Pending,
        }
    }

    fn find(&self, name: &str) -> Result<usize, String> {
        self.svcs.iter().position(|s| !s.gone && s.name == name).ok_or_else(|| format!("no service {name:?}"))
    }

    // ---- reconfigure ------------------------------------------------------------

    /// Reads the new config (from `fd`, or the config file again) and starts
    /// converging to it, when `peer` may ask; see the module header, "Who may
    /// reconfigure". A refusal changes nothing.
    /// Returns the incarnation every service it (re)starts gets.
    fn reconfigure(
        &mut self,
        fd: Option<OwnedFd>,
        peer: Option<UnixCredentials>,
    ) -> Result<BTreeMap<String, u64>, String> {
        if self.stop_queue.is_some() {
            return Err("the supervisor is stopping".into());
        }
        let pid1 = std::process::id() == 1;
        may_reconfigure(pid1, peer)?;
        let cfg = match (fd, self.source.clone()) {
            (Some(fd), _) => super::read_config_fd(fd.as_fd()).map_err(|e| e.to_string())?,
            (None, _) if pid1 => {
                return Err("reconfigure: PID 1 takes a new config only as a sealed memfd passed with the request \
                            (SCM_RIGHTS)"
                    .into())
            }
            (None, Some(path)) => super::read_config(&path).map_err(|e| e.to_string())?,
            (None, None) => {
                return Err("the supervisor was not started from a config file: nothing to read again \
                            (pass the new config as a sealed memfd)"
                    .into())
            }
        };
        if cfg.run_dir != self.run_dir {
            // The status, the control socket and the logs live there.
            return Err(format!(
                "run_dir cannot change while running ({} → {})",
                self.run_dir.display(),
                cfg.run_dir.display()
            ));
        }
        let (svc_deps, task_deps, order) = graph(&cfg).map_err(|e| e.to_string())?;
        // Opening the logs of new services is the last step that can fail: do it
        // before anything changes, so a failed request leaves everything as it was.
        let mut new_logs = BTreeMap::new();
        for name in cfg.services.keys() {
            if !self.svcs.iter().any(|s| &s.name == name) {
                let log = open_log(&self.run_dir, name, cfg.log_max_bytes).map_err(|e| e.to_string())?;
                new_logs.insert(name.clone(), log);
            }
        }

        self.log_max = cfg.log_max_bytes;
        self.stop_timeout = millis(cfg.stop_timeout_ms);
        self.ready_timeout = millis(cfg.ready_timeout_ms);
        self.secrets_dir = cfg.secrets_dir.clone();
        self.etc_dir = cfg.etc_dir.clone();

        // At most one `Service` per name exists (a removed one that comes back is
        // taken over), so the old ones can be looked up by name.
        let mut old: BTreeMap<String, Service> =
            std::mem::take(&mut self.svcs).into_iter().map(|s| (s.name.clone(), s)).collect();
        let mut replaced = Vec::new();
        let (mut added, mut removed) = (Vec::new(), Vec::new());
        for (name, res) in &cfg.services {
            let s = match old.remove(name) {
                Some(mut s) => {
                    // One removed earlier and still stopping must start again too.
                    if s.res != *res || s.gone {
                        replaced.push(self.svcs.len());
                    }
                    s.res = res.clone();
                    s.gone = false;
                    s
                }
                None => {
                    added.push(name.as_str());
                    // Opened above for every name not in `svcs`.
                    let log = new_logs.remove(name).expect("log opened for a new service");
                    Service::new(name, res.clone(), log)
                }
            };
            self.svcs.push(s);
        }
        let n = self.svcs.len();
        for (name, s) in old {
            if !s.gone {
                removed.push(name);
            }
            // A service that no longer runs has nothing left to wait for.
            if s.pid.is_some() {
                self.svcs.push(Service { gone: true, ..s });
            }
        }
        for s in &mut self.svcs {
            s.log.set_max(self.log_max);
        }
        let now = Instant::now();
        for i in n..self.svcs.len() {
            if !matches!(self.svcs[i].intent, Intent::Stop) {
                self.terminate(i, Intent::Stop, now);
                self.set_svc(i, ServiceState::Stopping, None);
            }
        }
        for &i in &replaced {
            self.replace(i, now);
        }
        for i in 0..n {
            // Tasks run again below: an earlier "blocked: init task … failed" may no longer hold.
            if self.svcs[i].state == ServiceState::Waiting && self.svcs[i].message.is_some() {
                self.set_svc(i, ServiceState::Waiting, None);
            }
        }

        // Every task runs again. At most one runs at any time: it keeps running, and
        // if its id is still there it runs again once ended.
        let mut running = std::mem::take(&mut self.tasks).into_iter().find(|t| t.pid.is_some());
        for (id, task) in &cfg.init {
            match running.take_if(|r| &r.id == id) {
                Some(r) => self.tasks.push(Task { task: task.clone(), gone: false, again: true, ..r }),
                None => self.tasks.push(Task::new(id, task.clone())),
            }
        }
        if let Some(r) = running {
            self.tasks.push(Task { gone: true, again: false, ..r });
        }

        // What starts anew: the next spawn of each changed and each new service.
        let mut wait = BTreeMap::new();
        for &i in &replaced {
            wait.insert(self.svcs[i].name.clone(), self.svcs[i].incarnation + 1);
        }
        for name in &added {
            wait.insert(name.to_string(), 1);
        }
        self.layers = layers_of(&svc_deps, &task_deps, &order);
        self.svc_deps = svc_deps;
        self.task_deps = task_deps;
        self.order = order;
        self.generation += 1;
        self.dirty = true;
        let names = |v: Vec<&str>| if v.is_empty() { "-".to_string() } else { v.join(",") };
        note(&format!(
            "reconfigured (generation {}): added {}, changed {}, removed {}",
            self.generation,
            names(added),
            names(replaced.iter().map(|&i| self.svcs[i].name.as_str()).collect()),
            names(removed.iter().map(String::as_str).collect()),
        ));
        Ok(wait)
    }

    /// Stops a service whose definition changed; it then waits for its dependencies
    /// like a service never started, and its new definition has to become ready again
    /// before its dependents count it as ready. Running dependents are left alone.
    fn replace(&mut self, i: usize, now: Instant) {
        let s = &mut self.svcs[i];
        s.ever_ready = false;
        s.backoff = BACKOFF_MIN;
        s.restart_at = None;
        if s.pid.is_some() {
            self.terminate(i, Intent::Replace, now);
            self.set_svc(i, ServiceState::Restarting, Some("configuration changed".into()));
        } else {
            s.intent = Intent::None;
            s.ready_deadline = None;
            s.probe_at = None;
            self.set_svc(i, ServiceState::Waiting, None);
        }
    }

    /// Forgets removed services and tasks that have ended. They are all at the end of
    /// `svcs` and `tasks`, so no index of a config service or task changes.
    fn drop_gone(&mut self) {
        self.svcs.retain(|s| !s.gone || s.pid.is_some());
        self.tasks.retain(|t| !t.gone || t.pid.is_some());
    }

    // ---- state changes -------------------------------------------------------

    fn set_svc(&mut self, i: usize, state: ServiceState, message: Option<String>) {
        let s = &mut self.svcs[i];
        if s.state != state {
            s.since = now_ms();
        }
        s.state = state;
        s.message = message;
        self.dirty = true;
    }

    fn set_task(&mut self, t: usize, state: TaskState, message: Option<String>) {
        let task = &mut self.tasks[t];
        task.state = state;
        task.since = now_ms();
        if let Some(m) = &message {
            note(&format!("init task {}: {m}", task.id));
        }
        task.message = message;
        self.dirty = true;
    }

    fn prepare(&self, i: usize, argv: &[String]) -> Result<PreparedCommand, String> {
        let r = &self.svcs[i].res;
        spawn::prepare(
            argv,
            &r.env,
            r.user.as_deref(),
            r.workdir.as_ref().map(|w| w.0.as_str()),
            &self.etc_dir,
            &r.security,
        )
    }

    fn start_service(&mut self, i: usize) {
        // What an earlier instance left (a daemon it forked) ends first: it would
        // hold the port or the lock the new one needs.
        end_leftovers(&self.svcs[i].name);
        let now = Instant::now();
        self.svcs[i].incarnation += 1;
        let started = self.prepare(i, &self.svcs[i].res.command).and_then(|mut p| {
            let s = &self.svcs[i];
            p.set_cgroup(cgroups::service(&s.name));
            spawn::spawn(&p, self.devnull.as_fd(), s.log.writer())
        });
        let s = &mut self.svcs[i];
        s.restart_at = None;
        match started {
            Ok(pid) => {
                if s.started_once {
                    s.restarts += 1;
                }
                s.started_once = true;
                s.pid = Some(pid);
                s.started = now;
                s.intent = Intent::None;
                s.probe_error = None;
                if s.res.ready.is_some() {
                    s.ready_deadline = Some(now + self.ready_timeout);
                    s.probe_at = Some(now);
                    self.set_svc(i, ServiceState::Starting, None);
                } else {
                    s.ever_ready = true;
                    self.set_svc(i, ServiceState::Ready, None);
                }
            }
            Err(e) => {
                note(&format!("{}: {e}", s.name));
                self.set_svc(i, ServiceState::Failed, Some(e));
            }
        }
    }

    fn mark_ready(&mut self, i: usize) {
        let s = &mut self.svcs[i];
        s.ever_ready = true;
        s.ready_deadline = None;
        s.probe_at = None;
        s.probe_error = None;
        self.set_svc(i, ServiceState::Ready, None);
    }

    fn probe(&mut self, i: usize, now: Instant) {
        let ok = match self.svcs[i].res.ready.clone() {
            None => true,
            Some(Ready::Tcp(port)) => {
                let addrs = [
                    std::net::SocketAddr::from(([127, 0, 0, 1], port.0)),
                    std::net::SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port.0)),
                ];
                addrs.iter().any(|a| std::net::TcpStream::connect_timeout(a, PROBE_INTERVAL).is_ok())
            }
            Some(Ready::Unix(path)) => unix_accepts(Path::new(&path.0)),
            Some(Ready::Command(argv)) => {
                let s = &self.svcs[i];
                match self.prepare(i, &argv).and_then(|p| spawn::spawn(&p, self.devnull.as_fd(), s.log.writer())) {
                    Ok(pid) => {
                        self.svcs[i].probe_pid = Some(pid);
                        self.svcs[i].probe_at = None;
                        return;
                    }
                    Err(e) => {
                        self.svcs[i].probe_error = Some(e);
                        false
                    }
                }
            }
        };
        if ok {
            self.mark_ready(i);
        } else {
            self.svcs[i].probe_at = Some(now + PROBE_INTERVAL);
        }
    }

    /// Asks a running service to end; `intent` says what happens when it has.
    fn terminate(&mut self, i: usize, intent: Intent, now: Instant) {
        let s = &mut self.svcs[i];
        if let Some(pid) = s.pid {
            signal_group(pid, Signal::SIGTERM);
            // A second request (say, `reconfigure` during a restart) must not put off
            // the SIGKILL already due.
            let at = now + self.stop_timeout;
            s.kill_at = Some(s.kill_at.map_or(at, |k| k.min(at)));
        }
        if let Some(p) = s.probe_pid.take() {
            signal_group(p, Signal::SIGKILL);
        }
        s.probe_at = None;
        s.ready_deadline = None;
        s.restart_at = None;
        s.intent = intent;
    }

    /// Reloads service `i`; a reload that restarts it returns the incarnation it gets.
    fn reload(&mut self, i: usize) -> Result<BTreeMap<String, u64>, String> {
        let Some(pid) = self.svcs[i].pid else {
            return Err(format!("{} is not running", self.svcs[i].name));
        };
        match self.svcs[i].res.reload.clone() {
            Some(Reload::Signal(name)) => {
                let sig = signal_of(&name);
                nix::sys::signal::killpg(Pid::from_raw(pid), sig).map_err(|e| format!("sending {sig}: {e}"))?;
                Ok(BTreeMap::new())
            }
            Some(Reload::Command(argv)) => {
                let s = &self.svcs[i];
                let pid =
                    self.prepare(i, &argv).and_then(|p| spawn::spawn(&p, self.devnull.as_fd(), s.log.writer()))?;
                self.reloaders.push((pid, self.svcs[i].name.clone(), None));
                Ok(BTreeMap::new())
            }
            None => self.restart(i),
        }
    }

    /// Restarts service `i`; returns the incarnation its new process gets.
    fn restart(&mut self, i: usize) -> Result<BTreeMap<String, u64>, String> {
        if self.stop_queue.is_some() {
            return Err("the supervisor is stopping".into());
        }
        if self.svcs[i].state == ServiceState::Waiting && self.svcs[i].pid.is_none() {
            return Err(format!("{} is waiting for its dependencies", self.svcs[i].name));
        }
        // The next spawn, whether now or once the running process has ended.
        let next = BTreeMap::from([(self.svcs[i].name.clone(), self.svcs[i].incarnation + 1)]);
        if self.svcs[i].pid.is_some() {
            self.terminate(i, Intent::Restart, Instant::now());
            self.set_svc(i, ServiceState::Restarting, Some("restart requested".into()));
            return Ok(next);
        }
        self.svcs[i].backoff = BACKOFF_MIN;
        self.start_service(i);
        Ok(next)
    }

    // ---- children ending --------------------------------------------------------

    fn reap(&mut self) {
        loop {
            let mut st: libc::c_int = 0;
            // SAFETY: waitpid with a valid out pointer.
            let pid = unsafe { libc::waitpid(-1, &mut st, libc::WNOHANG) };
            if pid == 0 {
                return;
            }
            if pid < 0 {
                if Errno::last() == Errno::EINTR {
                    continue;
                }
                return; // ECHILD: nothing left
            }
            let info = if libc::WIFEXITED(st) {
                ExitInfo { code: Some(libc::WEXITSTATUS(st)), signal: None }
            } else if libc::WIFSIGNALED(st) {
                let n = libc::WTERMSIG(st);
                let name = Signal::try_from(n).map(|s| s.as_str().to_string()).unwrap_or_else(|_| format!("SIG{n}"));
                ExitInfo { code: None, signal: Some(name) }
            } else {
                continue;
            };
            self.child_ended(pid, info);
        }
    }

    fn child_ended(&mut self, pid: i32, info: ExitInfo) {
        if let Some(i) = self.svcs.iter().position(|s| s.pid == Some(pid)) {
            self.service_ended(i, info);
        } else if let Some(i) = self.svcs.iter().position(|s| s.probe_pid == Some(pid)) {
            let s = &mut self.svcs[i];
            s.probe_pid = None;
            if s.state == ServiceState::Starting && s.pid.is_some() {
                if info.success() {
                    self.mark_ready(i);
                } else {
                    s.probe_error = Some(format!("ready command ended with {}", describe(&info)));
                    s.probe_at = Some(Instant::now() + PROBE_INTERVAL);
                }
            }
        } else if let Some(k) = self.reloaders.iter().position(|r| r.0 == pid) {
            let (_, name, conn) = self.reloaders.swap_remove(k);
            let reply = if info.success() {
                ControlReply::ok()
            } else {
                let msg = format!("reload command of {name} ended with {}", describe(&info));
                note(&msg);
                ControlReply::error(msg)
            };
            if let Some(conn) = conn {
                conn.reply(&reply);
            }
        } else if let Some(t) = self.tasks.iter().position(|t| t.pid == Some(pid)) {
            let task = &mut self.tasks[t];
            if let Some(mut log) = task.log.take() {
                let _ = log.drain();
            }
            task.pid = None;
            task.kill_at = None;
            let ok = info.success();
            let msg = (!ok).then(|| format!("ended with {}", describe(&info)));
            task.exit = Some(info);
            if std::mem::take(&mut task.again) {
                // The run `reconfigure` asked for is still to come.
                self.set_task(t, TaskState::Pending, None);
            } else {
                self.set_task(t, if ok { TaskState::Done } else { TaskState::Failed }, msg);
            }
        }
        // Anything else was an orphan re-parented to us: reaping it was the point.
    }

    fn service_ended(&mut self, i: usize, info: ExitInfo) {
        let now = Instant::now();
        let stopping = self.stop_queue.is_some();
        let s = &mut self.svcs[i];
        let _ = s.log.drain();
        let pid = s.pid.take();
        if let Some(p) = s.probe_pid.take() {
            signal_group(p, Signal::SIGKILL);
        }
        s.kill_at = None;
        s.ready_deadline = None;
        s.probe_at = None;
        let failed = !info.success();
        let ran = now.saturating_duration_since(s.started);
        s.last_exit = Some(info.clone());
        if failed && s.res.ready.is_none() && ran < START_GRACE && matches!(s.intent, Intent::None) {
            let msg = format!("ended with {} {} ms after its start", describe(&info), ran.as_millis());
            s.early_exit = Some((s.incarnation, msg));
        }
        match std::mem::replace(&mut s.intent, Intent::None) {
            Intent::Stop => {
                // Whatever it left in its group, or anywhere in its cgroup, goes with it.
                if let Some(p) = pid {
                    signal_group(p, Signal::SIGKILL);
                }
                end_leftovers(&s.name);
                self.set_svc(i, ServiceState::Stopped, None);
            }
            Intent::Restart => {
                s.backoff = BACKOFF_MIN;
                self.start_service(i);
            }
            Intent::Replace => {
                if let Some(p) = pid {
                    signal_group(p, Signal::SIGKILL);
                }
                end_leftovers(&s.name);
                // `tick` starts the new definition once its dependencies are ready.
                self.set_svc(i, ServiceState::Waiting, None);
            }
            Intent::Fail(msg) => {
                note(&format!("{}: {msg}", s.name));
                self.set_svc(i, ServiceState::Failed, Some(msg));
            }
            Intent::None => {
                let again = match s.res.restart {
                    Restart::Always => true,
                    Restart::OnFailure => failed,
                    Restart::No => false,
                };
                if again && !stopping {
                    if ran >= BACKOFF_RESET {
                        s.backoff = BACKOFF_MIN;
                    }
                    let delay = s.backoff;
                    s.backoff = (s.backoff * 2).min(BACKOFF_MAX);
                    s.restart_at = Some(now + delay);
                    let msg = format!("ended with {}; restart in {} ms", describe(&info), delay.as_millis());
                    self.set_svc(i, ServiceState::Restarting, Some(msg));
                } else if failed {
                    let msg = format!("ended with {}", describe(&info));
                    note(&format!("{}: {msg}", s.name));
                    self.set_svc(i, ServiceState::Failed, Some(msg));
                } else {
                    self.set_svc(i, ServiceState::Exited, None);
                }
            }
        }
    }

    // ---- scheduling -------------------------------------------------------------

    fn deps_done(&self, i: usize) -> Result<bool, String> {
        let mut done = true;
        for d in &self.svc_deps[i] {
            match *d {
                Dep::Service(j) => done &= self.svcs[j].ever_ready,
                Dep::Task(t) => match self.tasks[t].state {
                    TaskState::Done | TaskState::Skipped => {}
                    TaskState::Failed => return Err(format!("init task {} failed", self.tasks[t].id)),
                    _ => done = false,
                },
            }
        }
        Ok(done)
    }

    /// Starts what is due; true when something was started or changed state.
    fn tick(&mut self, now: Instant) -> bool {
        let before = self.dirty;
        self.dirty = false;
        for s in &mut self.svcs {
            if s.kill_at.is_some_and(|t| t <= now) {
                s.kill_at = None;
                if let Some(pid) = s.pid {
                    note(&format!("{}: still running after SIGTERM, sending SIGKILL", s.name));
                    signal_group(pid, Signal::SIGKILL);
                    // Its whole cgroup: what left the group (setsid) too.
                    cgroups::kill(&s.name, Duration::ZERO);
                }
            }
        }
        for t in &mut self.tasks {
            if t.kill_at.is_some_and(|k| k <= now) {
                t.kill_at = None;
                if let Some(pid) = t.pid {
                    signal_group(pid, Signal::SIGKILL);
                }
            }
        }
        if self.stop_queue.is_some() {
            self.advance_stop(now);
        } else {
            self.timers(now);
            self.run_due_task();
            self.start_due_services();
        }
        let changed = self.dirty;
        self.dirty |= before;
        changed
    }

    fn timers(&mut self, now: Instant) {
        for i in 0..self.svcs.len() {
            let s = &self.svcs[i];
            match s.state {
                ServiceState::Restarting if s.pid.is_none() && s.restart_at.is_some_and(|t| t <= now) => {
                    self.start_service(i)
                }
                ServiceState::Starting if s.ready_deadline.is_some_and(|t| t <= now) => {
                    let mut msg = format!("not ready after {} ms", self.ready_timeout.as_millis());
                    if let Some(e) = &s.probe_error {
                        msg.push_str(&format!(" (last probe: {e})"));
                    }
                    self.terminate(i, Intent::Fail(msg.clone()), now);
                    self.set_svc(i, ServiceState::Stopping, Some(msg));
                }
                ServiceState::Starting if s.probe_pid.is_none() && s.probe_at.is_some_and(|t| t <= now) => {
                    self.probe(i, now)
                }
                _ => {}
            }
        }
    }

    fn run_due_task(&mut self) {
        if self.tasks.iter().any(|t| t.state == TaskState::Running) {
            return;
        }
        // After `reconfigure` services can be ready while tasks with an empty `after`
        // are pending; those still go first, as at start.
        let early = |t: &Task| !t.gone && t.task.after.is_empty() && t.state == TaskState::Pending;
        let early_pending = self.tasks.iter().any(early);
        for t in 0..self.tasks.len() {
            let task = &self.tasks[t];
            if task.gone
                || task.state != TaskState::Pending
                || (early_pending && !task.task.after.is_empty())
                || !self.task_deps[t].iter().all(|&j| self.svcs[j].ever_ready)
            {
                continue;
            }
            if let Some(c) = &self.tasks[t].task.creates {
                if std::fs::symlink_metadata(&c.0).is_ok() {
                    self.set_task(t, TaskState::Skipped, None);
                    continue;
                }
            }
            match self.start_task(t) {
                Ok(()) => {
                    self.set_task(t, TaskState::Running, None);
                    return; // one at a time
                }
                Err(e) => self.set_task(t, TaskState::Failed, Some(e)),
            }
        }
    }

    fn start_task(&mut self, t: usize) -> Result<(), String> {
        let task = &self.tasks[t].task;
        let p =
            spawn::prepare(&task.command, &BTreeMap::new(), task.user.as_deref(), None, &self.etc_dir, &task.security)?;
        let stdin = match &task.stdin {
            None => None,
            Some(text) => {
                let mut missing = None;
                let body = text.render(|name| {
                    let v = match self.secret {
                        Some(f) => f(name),
                        None => super::secret_from_dir(self.secrets_dir.as_deref(), name),
                    };
                    if v.is_none() {
                        missing = Some(name.to_string());
                    }
                    v
                });
                let body = body.ok_or_else(|| format!("secret {:?} is not available", missing.unwrap_or_default()))?;
                Some(memfd_with(body.as_bytes()).map_err(|e| format!("stdin: {e}"))?)
            }
        };
        let name = self.tasks[t].id.replace('/', "_");
        let path = self.run_dir.join("logs").join("init").join(format!("{name}.log"));
        let log = LogSink::new(path, self.log_max).map_err(|e| format!("log: {e}"))?;
        let input = stdin.as_ref().map_or(self.devnull.as_fd(), |f| f.as_fd());
        let pid = spawn::spawn(&p, input, log.writer())?;
        let task = &mut self.tasks[t];
        task.pid = Some(pid);
        task.log = Some(log);
        task.exit = None;
        Ok(())
    }

    fn start_due_services(&mut self) {
        let early = self
            .tasks
            .iter()
            .any(|t| !t.gone && t.task.after.is_empty() && matches!(t.state, TaskState::Pending | TaskState::Running));
        if early {
            return;
        }
        for k in 0..self.order.len() {
            let i = self.order[k];
            if self.svcs[i].state != ServiceState::Waiting {
                continue;
            }
            match self.deps_done(i) {
                Ok(true) => self.start_service(i),
                Ok(false) => {}
                Err(e) => {
                    let msg = Some(format!("blocked: {e}"));
                    if self.svcs[i].message != msg {
                        self.set_svc(i, ServiceState::Waiting, msg);
                    }
                }
            }
        }
    }

    // ---- stopping ---------------------------------------------------------------

    /// `timeout` replaces `stop_timeout` for this stop, also for what is already being
    /// stopped (a removed service, or everything when a stop is under way).
    fn begin_stop(&mut self, timeout: Option<Duration>) {
        let now = Instant::now();
        if let Some(t) = timeout {
            self.stop_timeout = t;
            let limit = now + t;
            let svcs = self.svcs.iter_mut().map(|s| &mut s.kill_at);
            for at in svcs.chain(self.tasks.iter_mut().map(|t| &mut t.kill_at)).flatten() {
                *at = (*at).min(limit);
            }
        }
        if self.stop_queue.is_some() {
            return;
        }
        note("stopping");
        self.stop_queue = Some(stop_queue_of(&self.order, &self.layers));
        for s in &mut self.svcs {
            s.restart_at = None;
            s.ready_deadline = None;
            s.probe_at = None;
            if let Some(p) = s.probe_pid.take() {
                signal_group(p, Signal::SIGKILL);
            }
        }
        for r in &self.reloaders {
            signal_group(r.0, Signal::SIGKILL);
        }
        for t in &mut self.tasks {
            // A stopped task does not run again.
            t.again = false;
            if let Some(pid) = t.pid {
                signal_group(pid, Signal::SIGTERM);
                t.kill_at = Some(now + self.stop_timeout);
            }
        }
        self.dirty = true;
    }

    fn advance_stop(&mut self, now: Instant) {
        // A running init task ends first: it runs after the services it needs.
        if self.tasks.iter().any(|t| t.pid.is_some()) {
            return;
        }
        // The whole top layer gets SIGTERM at once, so its SIGKILLs are due together.
        while let Some(layer) = self.stop_queue.as_ref().and_then(|q| q.last().cloned()) {
            let mut running = false;
            for i in layer {
                if self.svcs[i].pid.is_none() {
                    if !matches!(
                        self.svcs[i].state,
                        ServiceState::Exited | ServiceState::Failed | ServiceState::Stopped
                    ) {
                        self.set_svc(i, ServiceState::Stopped, None);
                    }
                    continue;
                }
                running = true;
                if !matches!(self.svcs[i].intent, Intent::Stop) {
                    self.terminate(i, Intent::Stop, now);
                    self.set_svc(i, ServiceState::Stopping, None);
                }
            }
            if running {
                return;
            }
            if let Some(q) = self.stop_queue.as_mut() {
                q.pop();
            }
        }
    }

    fn stop_complete(&self) -> bool {
        // Removed services being stopped are in no queue; they are waited for too.
        self.stop_queue.as_ref().is_some_and(|q| q.is_empty())
            && self.tasks.iter().all(|t| t.pid.is_none())
            && self.svcs.iter().all(|s| s.pid.is_none())
    }

    fn finish(&mut self) {
        for w in std::mem::take(&mut self.waiters) {
            w.conn.reply(&ControlReply::error("the supervisor stopped"));
        }
        for r in &self.reloaders {
            signal_group(r.0, Signal::SIGKILL);
        }
        self.reap();
        for s in &mut self.svcs {
            let _ = s.log.drain();
        }
        self.write_status(SupervisorState::Stopped);
        note("stopped");
    }

    // ---- status -----------------------------------------------------------------

    fn state(&self) -> SupervisorState {
        if self.stop_queue.is_some() {
            SupervisorState::Stopping
        } else {
            SupervisorState::Running
        }
    }

    fn status(&self, state: SupervisorState) -> Status {
        Status {
            pid: std::process::id() as i32,
            state: if state == SupervisorState::Stopped { state } else { self.state() },
            generation: self.generation,
            services: self
                .svcs
                .iter()
                .filter(|s| !s.gone)
                .map(|s| {
                    let st = ServiceStatus {
                        state: s.state,
                        pid: s.pid,
                        restarts: s.restarts,
                        last_exit: s.last_exit.clone(),
                        since: s.since,
                        message: s.message.clone(),
                        incarnation: s.incarnation,
                        probed: s.res.ready.is_some(),
                        log_dropped: s.log.dropped().0,
                        log_error: s.log.dropped().1.map(str::to_string),
                    };
                    (s.name.clone(), st)
                })
                .collect(),
            init: self
                .tasks
                .iter()
                .filter(|t| !t.gone)
                .map(|t| {
                    let st =
                        TaskStatus { state: t.state, exit: t.exit.clone(), since: t.since, message: t.message.clone() };
                    (t.id.clone(), st)
                })
                .collect(),
            status_error: self.status_errors,
            status_error_message: self.status_error.clone(),
            notes_dropped: NOTES_DROPPED.load(std::sync::atomic::Ordering::Relaxed),
        }
    }

    fn write_status(&mut self, state: SupervisorState) {
        self.dirty = false;
        let path = self.run_dir.join("status.json");
        let tmp = self.run_dir.join(".status.json.tmp");
        let result = serde_json::to_vec(&self.status(state))
            .map_err(std::io::Error::other)
            .and_then(|mut bytes| {
                bytes.push(b'\n');
                std::fs::write(&tmp, bytes)
            })
            .and_then(|()| std::fs::rename(&tmp, &path));
        if let Err(e) = result {
            let _ = std::fs::remove_file(&tmp);
            self.status_errors = self.status_errors.saturating_add(1);
            self.status_error = Some(match e.raw_os_error() {
                Some(n) => Errno::from_raw(n).desc().to_string(),
                None => e.to_string(),
            });
            // Shown once: a full disk must not flood the supervisor's stderr.
            if !self.status_error_shown {
                note(&format!("writing {}: {e}", path.display()));
                self.status_error_shown = true;
            }
        }
    }
}

fn state_word(s: ServiceState) -> &'static str {
    match s {
        ServiceState::Failed => "failed",
        ServiceState::Exited => "exited",
        _ => "is not ready",
    }
}

/// Ends every process left in `service`'s cgroup (no-op without cgroups) and waits
/// for them, at most a second: they die of SIGKILL, so that is plenty.
fn end_leftovers(service: &str) {
    if !cgroups::kill(service, Duration::from_secs(1)) {
        note(&format!("{service}: processes of an earlier instance are still in its cgroup after SIGKILL"));
    }
}

fn describe(info: &ExitInfo) -> String {
    match (&info.code, &info.signal) {
        (Some(c), _) => format!("exit code {c}"),
        (None, Some(s)) => format!("signal {s}"),
        (None, None) => "unknown status".into(),
    }
}

/// A unix socket counts as ready when a connect is accepted, or queued (EAGAIN: the
/// backlog is full, but something listens).
fn unix_accepts(path: &Path) -> bool {
    use nix::sys::socket::{connect, socket, AddressFamily, SockFlag, SockType, UnixAddr};
    let Ok(addr) = UnixAddr::new(path) else { return false };
    let Ok(fd) = socket(AddressFamily::Unix, SockType::Stream, SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK, None)
    else {
        return false;
    };
    matches!(connect(std::os::fd::AsRawFd::as_raw_fd(&fd), &addr), Ok(()) | Err(Errno::EAGAIN))
}

/// Secret stdin goes through an anonymous memory file, not a pipe: the child can read
/// it at its own pace while we never block on a full pipe.
fn memfd_with(data: &[u8]) -> std::io::Result<File> {
    // SAFETY: memfd_create with a valid C string; the fd is owned by the File.
    let fd = unsafe { libc::memfd_create(c"init-stdin".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor we own.
    let mut f = unsafe { File::from_raw_fd(fd) };
    f.write_all(data)?;
    f.rewind()?;
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_names() {
        for name in crate::vocab::values::SIGNALS {
            let sig = signal_of(&SignalName::parse(name).unwrap());
            assert_eq!(sig.as_str(), format!("SIG{name}"));
        }
    }

    fn cfg(svcs: &[(&str, &[&str])], tasks: &[(&str, &[&str])]) -> SupervisorConfig {
        let mut c = SupervisorConfig::new("/nonexistent");
        for (n, after) in svcs {
            let mut s = ServiceRes::new(&["true"]);
            for a in *after {
                s = s.after(a);
            }
            c.services.insert(n.to_string(), s);
        }
        for (n, after) in tasks {
            let mut t = InitTask::new(&["true"]);
            for a in *after {
                t = t.after(a);
            }
            c.init.insert(n.to_string(), t);
        }
        c
    }

    #[test]
    fn typed_stop_timeout_is_capped_at_a_day() {
        // The typed field takes any u64; an `Instant` plus that would overflow (a
        // panic, PID 1's death), so the engine caps it as it did the `stop MS` word.
        let req: ControlRequest =
            serde_json::from_str(&format!(r#"{{"op":"stop","timeout_ms":{}}}"#, u64::MAX)).unwrap();
        let ControlRequest::Stop { timeout_ms } = req else { panic!("{req:?}") };
        let t = timeout_ms.map(millis).unwrap();
        assert_eq!(t, Duration::from_millis(MAX_TIMEOUT_MS));
        let _ = Instant::now() + t;
    }

    #[test]
    fn dependency_order_and_cycles() {
        let (_, _, order) = graph(&cfg(&[("a", &["c"]), ("b", &[]), ("c", &["b"])], &[])).unwrap();
        assert_eq!(order, vec![1, 2, 0]); // b, c, a
        let e = graph(&cfg(&[("a", &["b"]), ("b", &["a"])], &[])).unwrap_err();
        assert!(e.to_string().contains("cycle"), "{e}");
        let e = graph(&cfg(&[("a", &["t"])], &[("t", &["a"])])).unwrap_err();
        assert!(e.to_string().contains("cycle"), "{e}");
        let e = graph(&cfg(&[("a", &["zz"])], &[])).unwrap_err();
        assert!(e.to_string().contains("unknown"), "{e}");
        assert!(graph(&cfg(&[("a", &["t"])], &[("t", &[])])).is_ok());
    }

    #[test]
    fn stop_layers_follow_dependencies_also_through_tasks() {
        // a ← b ← c; t waits for a, d waits for t; z waits for nothing.
        let c = cfg(&[("a", &[]), ("b", &["a"]), ("c", &["b"]), ("d", &["t"]), ("z", &[])], &[("t", &["a"])]);
        let (svc_deps, task_deps, order) = graph(&c).unwrap();
        let layers = layers_of(&svc_deps, &task_deps, &order);
        assert_eq!(layers, vec![0, 1, 2, 1, 0]);
        assert_eq!(stop_queue_of(&order, &layers), vec![vec![0, 4], vec![1, 3], vec![2]]);
        // The host's count (for its stop timeout) agrees.
        let after = |m: &BTreeMap<String, ServiceRes>| m.iter().map(|(n, s)| (n.clone(), s.after.clone())).collect();
        let tasks = c.init.iter().map(|(n, t)| (n.clone(), t.after.clone())).collect();
        let host = super::super::stop_layers(&after(&c.services), &tasks);
        assert_eq!(host.values().copied().collect::<Vec<_>>(), layers);
    }
}
