//! Supervisor tests: each test runs a real supervisor as a separate process.
//!
//! The supervisor takes its signals with a signalfd, which needs every thread of the
//! process to block them, and the test harness is multi-threaded. So this binary
//! re-executes itself: when `CONTAINER_SUPERVISOR_TEST_CONFIG` is set, a constructor in
//! `.init_array` runs the supervisor before the harness (and any thread) starts, and
//! exits with its code. It runs with `run_file` (so `reconfigure` works), or with `run`
//! when `CONTAINER_SUPERVISOR_TEST_PLAIN` is set too. Services are `/bin/sh -c` and `python3 -c` snippets that
//! record what happened in a per-test work folder.

mod support;
use container::exec::supervisor::{
    self, ControlRequest, ServiceState, Status, SupervisorConfig, SupervisorState, TaskState, DEFAULT_PATH,
};
use container::plan::text::Text;
use container::plan::types::{InitTask, ServiceRes};
use container::spec::types::Restart;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

const CONFIG_ENV: &str = "CONTAINER_SUPERVISOR_TEST_CONFIG";
const PLAIN_ENV: &str = "CONTAINER_SUPERVISOR_TEST_PLAIN";

#[used]
#[link_section = ".init_array"]
static SUPERVISOR_ENTRY: extern "C" fn() = supervisor_entry;

extern "C" fn supervisor_entry() {
    let Some(path) = std::env::var_os(CONFIG_ENV) else { return };
    if std::env::var_os(PLAIN_ENV).is_none() {
        let code = supervisor::run_file(Path::new(&path)).unwrap_or_else(|e| {
            eprintln!("supervisor failed: {e}");
            70
        });
        std::process::exit(code);
    }
    let cfg = std::fs::read(&path)
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice::<SupervisorConfig>(&b).map_err(|e| e.to_string()));
    let code = match cfg.map(supervisor::run) {
        Ok(Ok(code)) => code,
        Ok(Err(e)) => {
            eprintln!("supervisor failed: {e}");
            70
        }
        Err(e) => {
            eprintln!("bad supervisor config: {e}");
            71
        }
    };
    std::process::exit(code);
}

/// A temp folder with `run/` (the supervisor's) and `work/` (the services').
struct Scene {
    dir: tempfile::TempDir,
}

impl Scene {
    fn new() -> Scene {
        let dir = tempfile::Builder::new().prefix("sup").tempdir().unwrap();
        std::fs::create_dir(dir.path().join("work")).unwrap();
        Scene { dir }
    }
    fn run_dir(&self) -> PathBuf {
        self.dir.path().join("run")
    }
    fn work(&self) -> PathBuf {
        self.dir.path().join("work")
    }
    fn path(&self, name: &str) -> PathBuf {
        self.work().join(name)
    }
    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(name)).unwrap_or_default()
    }
    fn cfg(&self) -> SupervisorConfig {
        let mut c = SupervisorConfig::new(self.run_dir());
        c.stop_timeout_ms = 3000;
        c.ready_timeout_ms = 20_000;
        c
    }
    /// A `/bin/sh -c` service running in the work folder.
    fn sh(&self, script: &str) -> ServiceRes {
        let mut s = ServiceRes::new(&["/bin/sh", "-c", script]);
        s.workdir = Some(container::vocab::values::AbsPath(self.work().to_string_lossy().into_owned()));
        s
    }
    fn py(&self, script: &str) -> ServiceRes {
        let mut s = ServiceRes::new(&["python3", "-c", script]);
        s.workdir = Some(container::vocab::values::AbsPath(self.work().to_string_lossy().into_owned()));
        s
    }
    /// A `/bin/sh -c` init task; tasks have no workdir, so `cd` first.
    fn task(&self, script: &str) -> InitTask {
        let full = format!("cd '{}' && {{ {script}\n}}", self.work().display());
        InitTask::new(&["/bin/sh", "-c", &full])
    }
    fn log(&self, service: &str) -> String {
        std::fs::read_to_string(self.run_dir().join("logs").join(format!("{service}.log"))).unwrap_or_default()
    }
    fn cfg_path(&self) -> PathBuf {
        self.dir.path().join("supervisor.json")
    }
    fn start(&self, cfg: SupervisorConfig) -> Sup {
        self.start_with(cfg, false)
    }
    /// `plain`: with `supervisor::run` instead of `run_file`.
    fn start_with(&self, cfg: SupervisorConfig, plain: bool) -> Sup {
        self.rewrite(&cfg);
        let err = std::fs::File::create(self.dir.path().join("supervisor.err")).unwrap();
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        if plain {
            cmd.env(PLAIN_ENV, "1");
        }
        let child = cmd
            .env(CONFIG_ENV, self.cfg_path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .unwrap();
        Sup { child, run_dir: self.run_dir(), err: self.dir.path().join("supervisor.err"), exit: None }
    }
    /// Replaces the config file as the executor does: a new file renamed over the old.
    fn rewrite(&self, cfg: &SupervisorConfig) {
        self.write_config(&serde_json::to_vec(cfg).unwrap());
    }
    fn write_config(&self, bytes: &[u8]) {
        let tmp = self.dir.path().join("supervisor.json.tmp");
        std::fs::write(&tmp, bytes).unwrap();
        std::fs::rename(&tmp, self.cfg_path()).unwrap();
    }
}

struct Sup {
    child: Child,
    run_dir: PathBuf,
    err: PathBuf,
    exit: Option<ExitStatus>,
}

impl Sup {
    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    fn status(&self) -> Option<Status> {
        supervisor::read_status(&self.run_dir).ok()
    }

    fn diag(&self) -> String {
        format!(
            "status: {:#?}\nsupervisor stderr:\n{}",
            self.status(),
            std::fs::read_to_string(&self.err).unwrap_or_default()
        )
    }

    /// Polls status.json until `pred` holds (30 s at most).
    fn wait_for(&self, what: &str, pred: impl Fn(&Status) -> bool) -> Status {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(s) = self.status() {
                if pred(&s) {
                    return s;
                }
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}\n{}", self.diag());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn wait_state(&self, svc: &str, state: ServiceState) -> Status {
        self.wait_for(&format!("{svc} {state:?}"), |s| s.services.get(svc).is_some_and(|x| x.state == state))
    }

    /// A request in words (`restart web`, `stop 300`) as the typed request it names;
    /// anything else goes as it is. The reply as JSON.
    fn ctl(&self, req: &str) -> serde_json::Value {
        let reply = match typed(req) {
            Some(r) => supervisor::control(&self.run_dir, self.pid(), &r),
            None => supervisor::control_line(&self.run_dir, self.pid(), req),
        };
        serde_json::to_value(reply.unwrap_or_else(|e| panic!("control {req}: {e}\n{}", self.diag()))).unwrap()
    }

    fn signal(&self, sig: libc::c_int) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.pid(), sig) };
    }

    /// Waits for the supervisor to exit (30 s at most).
    fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                self.exit = Some(st);
                return st;
            }
            assert!(Instant::now() < deadline, "supervisor did not exit\n{}", self.diag());
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Sup {
    /// Stops the supervisor (and so its services) even when a test fails.
    fn drop(&mut self) {
        if self.exit.is_some() || matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        self.signal(libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn ns(s: &str) -> u128 {
    s.trim().parse().unwrap_or_else(|_| panic!("not a timestamp: {s:?}"))
}

#[test]
fn services_start_in_order_after_readiness() {
    let t = Scene::new();
    let port = free_port();
    let mut cfg = t.cfg();
    // a: TCP port opened late; b: unix socket opened late; c: a flag file; d: plain.
    // Each writes its ".ready" time just before it becomes ready, so the file exists
    // by the time a dependent starts.
    let a = t
        .py(&format!(
            "import socket,time\nopen('a.start','w').write(str(time.time_ns()))\ntime.sleep(0.5)\n\
             s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
             s.bind(('127.0.0.1',{port}))\nopen('a.ready','w').write(str(time.time_ns()))\ns.listen()\n\
             while True: c,_=s.accept(); c.close()"
        ))
        .ready_tcp(port);
    let sock = t.path("b.sock");
    let b = t
        .py(&format!(
            "import socket,time\nopen('b.start','w').write(str(time.time_ns()))\ntime.sleep(0.3)\n\
             s=socket.socket(socket.AF_UNIX); s.bind('{}')\n\
             open('b.ready','w').write(str(time.time_ns()))\ns.listen()\ntime.sleep(100)",
            sock.display()
        ))
        .ready_unix(&sock.to_string_lossy())
        .after("a");
    let c = t
        .sh("date +%s%N > c.start; sleep 0.3; date +%s%N > c.ready; touch c.flag; exec sleep 100")
        .ready_command(&["test", "-e", &t.path("c.flag").to_string_lossy()])
        .after("b");
    // Without a probe `d` would count as ready before `date` has filled d.start.
    let d = t
        .sh("date +%s%N > d.start; exec sleep 100")
        .ready_command(&["test", "-s", &t.path("d.start").to_string_lossy()])
        .after("c")
        .after("a");
    cfg.services.extend([("a".into(), a), ("b".into(), b), ("c".into(), c), ("d".into(), d)]);
    let sup = t.start(cfg);
    let st = sup.wait_state("d", ServiceState::Ready);
    for name in ["a", "b", "c", "d"] {
        assert_eq!(st.services[name].state, ServiceState::Ready, "{name}\n{}", sup.diag());
        assert!(st.services[name].pid.is_some());
    }
    assert!(ns(&t.read("b.start")) >= ns(&t.read("a.ready")), "b started before a was ready");
    assert!(ns(&t.read("c.start")) >= ns(&t.read("b.ready")), "c started before b was ready");
    assert!(ns(&t.read("d.start")) >= ns(&t.read("c.ready")), "d started before c was ready");
}

#[test]
fn readiness_timeout_fails_the_service_and_blocks_dependents() {
    let t = Scene::new();
    let mut cfg = t.cfg();
    cfg.ready_timeout_ms = 500;
    cfg.services.insert("slow".into(), t.sh("exec sleep 100").ready_command(&["false"]));
    cfg.services.insert("after".into(), t.sh("exec sleep 100").after("slow"));
    let sup = t.start(cfg);
    let st = sup.wait_state("slow", ServiceState::Failed);
    let slow = &st.services["slow"];
    let msg = slow.message.clone().unwrap_or_default();
    assert!(msg.contains("not ready after 500 ms") && msg.contains("ready command ended with exit code 1"), "{msg}");
    assert_eq!(slow.pid, None);
    assert_eq!(slow.last_exit.as_ref().and_then(|e| e.signal.as_deref()), Some("SIGTERM"));
    assert_eq!(st.services["after"].state, ServiceState::Waiting);
}

#[test]
fn orphaned_grandchildren_are_reaped() {
    let t = Scene::new();
    let mut cfg = t.cfg();
    // The subshell exits at once, orphaning its `sleep`, which then comes to us.
    cfg.services.insert("parent".into(), t.sh("(sleep 1 & echo $! > gc.pid); exec sleep 100"));
    let sup = t.start(cfg);
    sup.wait_state("parent", ServiceState::Ready);
    let deadline = Instant::now() + Duration::from_secs(10);
    let gc: i32 = loop {
        if let Ok(p) = t.read("gc.pid").trim().parse() {
            break p;
        }
        assert!(Instant::now() < deadline, "no grandchild pid");
        std::thread::sleep(Duration::from_millis(10));
    };
    // While it sleeps, its parent must be the supervisor (child subreaper).
    let stat = std::fs::read_to_string(format!("/proc/{gc}/stat")).unwrap();
    let ppid: i32 = stat.rsplit(')').next().unwrap().split_whitespace().nth(1).unwrap().parse().unwrap();
    assert_eq!(ppid, sup.pid(), "grandchild was not re-parented to the supervisor");
    // Then it exits and must disappear entirely (not linger as a zombie).
    let deadline = Instant::now() + Duration::from_secs(10);
    while Path::new(&format!("/proc/{gc}")).exists() {
        let state = std::fs::read_to_string(format!("/proc/{gc}/stat")).unwrap_or_default();
        assert!(Instant::now() < deadline, "grandchild {gc} not reaped: {state}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn on_failure_restarts_with_growing_backoff() {
    let t = Scene::new();
    let mut cfg = t.cfg();
    cfg.services.insert("crash".into(), t.sh("date +%s%N >> runs; exit 3"));
    let sup = t.start(cfg);
    let st = sup.wait_for("4 restarts", |s| s.services["crash"].restarts >= 4);
    let crash = &st.services["crash"];
    assert_eq!(crash.last_exit.as_ref().and_then(|e| e.code), Some(3));
    let runs: Vec<u128> = t.read("runs").lines().map(ns).collect();
    assert!(runs.len() >= 4, "{runs:?}");
    let gaps: Vec<u128> = runs.windows(2).map(|w| w[1] - w[0]).collect();
    // Delays 100, 200, 400 ms: the third gap is clearly longer than the first.
    assert!(gaps[2] > gaps[0] + 150_000_000, "backoff does not grow: {gaps:?}");
    assert!(gaps[0] >= 90_000_000, "restarted too early: {gaps:?}");
}

#[test]
fn restart_policies_and_exit_codes_in_status() {
    let t = Scene::new();
    let mut cfg = t.cfg();
    let with = |mut s: ServiceRes, r: Restart| {
        s.restart = r;
        s
    };
    cfg.services.insert("always".into(), with(t.sh("echo run >> always.runs; exit 0"), Restart::Always));
    cfg.services.insert("no-ok".into(), with(t.sh("exit 0"), Restart::No));
    cfg.services.insert("no-fail".into(), with(t.sh("exit 5"), Restart::No));
    cfg.services.insert("onfail-ok".into(), with(t.sh("exit 0"), Restart::OnFailure));
    cfg.services.insert("killed".into(), with(t.sh("kill -KILL $$"), Restart::No));
    let sup = t.start(cfg);
    let st = sup.wait_for("all settled", |s| {
        s.services["always"].restarts >= 3
            && ["no-ok", "no-fail", "onfail-ok", "killed"]
                .iter()
                .all(|n| matches!(s.services[*n].state, ServiceState::Exited | ServiceState::Failed))
    });
    let code = |n: &str| st.services[n].last_exit.as_ref().and_then(|e| e.code);
    assert_eq!((st.services["no-ok"].state, code("no-ok")), (ServiceState::Exited, Some(0)));
    assert_eq!((st.services["no-fail"].state, code("no-fail")), (ServiceState::Failed, Some(5)));
    assert_eq!((st.services["onfail-ok"].state, code("onfail-ok")), (ServiceState::Exited, Some(0)));
    let killed = &st.services["killed"];
    assert_eq!(killed.state, ServiceState::Failed);
    assert_eq!(killed.last_exit.as_ref().and_then(|e| e.signal.as_deref()), Some("SIGKILL"));
    for n in ["no-ok", "no-fail", "onfail-ok", "killed"] {
        assert_eq!(st.services[n].restarts, 0, "{n}");
        assert_eq!(st.services[n].pid, None, "{n}");
    }
    // The third restart is counted when it is spawned, a moment before the run it
    // started writes its line.
    support::eventually("the fourth run of `always`", 5, || (t.read("always.runs").lines().count() >= 4).then_some(()));

    // The supervisor itself leaks no descriptors across restarts.
    let fds = |pid: i32| std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count();
    let before = fds(sup.pid());
    let r = st.services["always"].restarts;
    sup.wait_for("3 more restarts", |s| s.services["always"].restarts >= r + 3);
    assert_eq!(fds(sup.pid()), before);
}

#[test]
fn logs_are_captured_and_rotated() {
    let t = Scene::new();
    let mut cfg = t.cfg();
    cfg.log_max_bytes = 4096;
    let mut chatty = t.sh("echo to-stderr >&2; i=0; while [ $i -lt 300 ]; do echo \"line $i ..............................\"; i=$((i+1)); done");
    chatty.restart = Restart::No;
    let mut quiet = t.sh("echo out; echo err >&2");
    quiet.restart = Restart::No;
    cfg.services.insert("chatty".into(), chatty);
    cfg.services.insert("quiet".into(), quiet);
    let sup = t.start(cfg);
    sup.wait_state("chatty", ServiceState::Exited);
    sup.wait_state("quiet", ServiceState::Exited);
    assert_eq!(t.log("quiet"), "out\nerr\n");

    let mut expected = String::from("to-stderr\n");
    for i in 0..300 {
        expected.push_str(&format!("line {i} ..............................\n"));
    }
    let logs = t.run_dir().join("logs");
    let old = std::fs::read_to_string(logs.join("chatty.log.1")).unwrap();
    let cur = t.log("chatty");
    assert_eq!(old.len(), 4096);
    assert!(cur.len() <= 4096 && !cur.is_empty());
    assert!(!logs.join("chatty.log.2").exists());
    let tail = format!("{old}{cur}");
    assert!(expected.ends_with(&tail), "rotated logs are not the tail of the output");
    assert!(tail.len() < expected.len());
}

#[test]
fn stop_kills_a_service_that_ignores_sigterm() {
    let t = Scene::new();
    let mut cfg = t.cfg();
    cfg.stop_timeout_ms = 1000;
    let stubborn = t.sh("trap '' TERM; touch up; sleep 100; echo never").ready_command(&["test", "-e", "up"]);
    cfg.services.insert("stubborn".into(), stubborn);
    let mut sup = t.start(cfg);
    let st = sup.wait_state("stubborn", ServiceState::Ready);
    let pid = st.services["stubborn"].pid.unwrap();
    assert_eq!(sup.ctl("stop"), serde_json::json!({"ok": true}));
    let code = sup.wait_exit();
    assert!(code.success(), "{code:?}\n{}", sup.diag());
    let st = sup.status().unwrap();
    assert_eq!(st.state, SupervisorState::Stopped);
    let s = &st.services["stubborn"];
    assert_eq!(s.state, ServiceState::Stopped);
    assert_eq!(s.last_exit.as_ref().and_then(|e| e.signal.as_deref()), Some("SIGKILL"));
    assert!(!Path::new(&format!("/proc/{pid}")).exists());
    assert!(!supervisor::control_socket(&t.run_dir()).exists());
}

#[test]
fn the_control_client_talks_only_to_the_process_it_names() {
    let t = Scene::new();
    let mut cfg = t.cfg();
    cfg.services.insert("idle".into(), t.sh("exec sleep 100"));
    let mut sup = t.start(cfg);
    sup.wait_state("idle", ServiceState::Ready);
    let sock = supervisor::control_socket(&t.run_dir());
    // Another listener in the socket's place (what a container's root can make): the
    // client must refuse it, whatever it would answer.
    let real = t.run_dir().join("real.sock");
    std::fs::rename(&sock, &real).unwrap();
    let fake = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let e = supervisor::control(&t.run_dir(), sup.pid(), &ControlRequest::Status)
        .expect_err("a socket of another process answered");
    assert!(e.to_string().contains("not by the supervisor"), "{e}");
    drop(fake);
    std::fs::remove_file(&sock).unwrap();
    // A symlink to the real socket is not followed either.
    std::os::unix::fs::symlink(&real, &sock).unwrap();
    let e = supervisor::control(&t.run_dir(), sup.pid(), &ControlRequest::Status)
        .expect_err("the client followed a symlink");
    assert!(e.to_string().contains("symlink"), "{e}");
    std::fs::remove_file(&sock).unwrap();
    std::fs::rename(&real, &sock).unwrap();
    // The real one, named by the wrong pid, is refused; by its own, answers.
    let e = supervisor::control(&t.run_dir(), std::process::id() as i32, &ControlRequest::Status)
        .expect_err("wrong pid accepted");
    assert!(e.to_string().contains("not by the supervisor"), "{e}");
    assert_eq!(sup.ctl("stop"), serde_json::json!({"ok": true}));
    assert!(sup.wait_exit().success());
}

#[test]
fn sigterm_stops_services_in_reverse_dependency_order() {
    let t = Scene::new();
    let mut cfg = t.cfg();
    let svc = |name: &str| {
        t.sh(&format!("trap 'echo {name} >> order; exit 0' TERM; echo up > {name}.up; while :; do sleep 0.05; done"))
    };
    cfg.services.insert("a".into(), svc("a"));
    cfg.services.insert("b".into(), svc("b").after("a"));
    cfg.services.insert("c".into(), svc("c").after("b"));
    cfg.services.insert("z".into(), svc("z"));
    let mut sup = t.start(cfg);
    sup.wait_for("all ready", |s| s.services.values().all(|x| x.state == ServiceState::Ready));
    for n in ["a", "b", "c", "z"] {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !t.path(&format!("{n}.up")).exists() {
            assert!(Instant::now() < deadline);
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    sup.signal(libc::SIGTERM);
    assert!(sup.wait_exit().success());
    let order: Vec<String> = t.read("order").lines().map(String::from).collect();
    let pos = |n: &str| order.iter().position(|x| x == n).unwrap_or_else(|| panic!("{n} not stopped: {order:?}"));
    assert!(pos("c") < pos("b") && pos("b") < pos("a"), "{order:?}");
    let st = sup.status().unwrap();
    for n in ["a", "b", "c", "z"] {
        assert_eq!(st.services[n].state, ServiceState::Stopped);
        assert_eq!(st.services[n].last_exit.as_ref().and_then(|e| e.code), Some(0), "{n}");
    }
}

#[test]
fn reload_by_signal_keeps_pid_and_restart_changes_it() {
    let t = Scene::new();
    let mut cfg = t.cfg();
    // Ready once the trap is set: a HUP before that would end the shell.
    let hup = t
        .sh("trap 'echo reloaded' HUP; touch hup.up; while :; do sleep 0.05; done")
        .reload_signal(container::vocab::values::SignalName::hup())
        .ready_command(&["test", "-e", "hup.up"]);
    cfg.services.insert("hup".into(), hup);
    cfg.services.insert(
        "cmd".into(),
        t.sh("exec sleep 100").reload_command(&["/bin/sh", "-c", "echo by-command >> reload.out"]),
    );
    cfg.services.insert("plain".into(), t.sh("exec sleep 100"));
    cfg.services.insert(
        "badcmd".into(),
        t.sh("exec sleep 100").reload_command(&["/bin/sh", "-c", "echo rejected >&2; exit 3"]),
    );
    let sup = t.start(cfg);
    let st = sup.wait_for("all ready", |s| s.services.values().all(|x| x.state == ServiceState::Ready));
    let pid = |s: &Status, n: &str| s.services[n].pid.unwrap();
    let hup = pid(&st, "hup");

    assert_eq!(sup.ctl("reload hup"), serde_json::json!({"ok": true}));
    wait_until("reload logged", || t.log("hup").contains("reloaded"));
    assert_eq!(pid(&sup.status().unwrap(), "hup"), hup);

    // SIGHUP to the supervisor reloads what declares a reload, and only that.
    let plain = pid(&st, "plain");
    sup.signal(libc::SIGHUP);
    wait_until("second reload", || t.log("hup").matches("reloaded").count() == 2);
    wait_until("reload command", || t.read("reload.out") == "by-command\n");
    let st = sup.status().unwrap();
    assert_eq!((pid(&st, "hup"), pid(&st, "plain"), st.services["plain"].restarts), (hup, plain, 0));

    // A reload command is answered when it has ended, with its outcome.
    assert_eq!(sup.ctl("reload cmd"), serde_json::json!({"ok": true}));
    assert_eq!(t.read("reload.out"), "by-command\nby-command\n", "answered before the command ran");
    let bad = sup.ctl("reload badcmd");
    assert_eq!(bad["ok"], false, "{bad}");
    assert!(bad["error"].as_str().unwrap().contains("reload command of badcmd ended with"), "{bad}");

    // The reply names the incarnation the new process gets.
    assert_eq!(sup.ctl("restart hup"), serde_json::json!({"ok": true, "wait": {"hup": 2}}));
    let st = sup.wait_for("hup restarted", |s| {
        s.services["hup"].state == ServiceState::Ready && s.services["hup"].pid.is_some_and(|p| p != hup)
    });
    assert_eq!(st.services["hup"].restarts, 1);
    assert_eq!(st.services["hup"].last_exit.as_ref().and_then(|e| e.signal.as_deref()), Some("SIGTERM"));

    // Without a reload method, reload means restart.
    assert_eq!(sup.ctl("reload plain"), serde_json::json!({"ok": true, "wait": {"plain": 2}}));
    let st = sup.wait_for("plain restarted", |s| s.services["plain"].pid.is_some_and(|p| p != plain));
    assert_eq!(st.services["plain"].restarts, 1);
}

/// `status`, `reload S`, `restart S`, `reconfigure`, `stop [MS]` as requests.
fn typed(words: &str) -> Option<ControlRequest> {
    let w: Vec<&str> = words.split_whitespace().collect();
    Some(match w.as_slice() {
        ["status"] => ControlRequest::Status,
        ["reload", s] => ControlRequest::Reload { service: s.to_string() },
        ["restart", s] => ControlRequest::Restart { service: s.to_string() },
        ["reconfigure"] => ControlRequest::Reconfigure,
        ["stop"] => ControlRequest::Stop { timeout_ms: None },
        ["stop", ms] => ControlRequest::Stop { timeout_ms: Some(ms.parse().ok()?) },
        _ => return None,
    })
}

fn wait_until(what: &str, f: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn init_tasks_run_in_order_and_honour_creates() {
    let t = Scene::new();
    let mut cfg = t.cfg();
    std::fs::write(t.path("exists"), "").unwrap();
    cfg.init.insert("a1".into(), t.task("sleep 0.3; echo a1 >> order"));
    cfg.init.insert("a2".into(), t.task("echo a2 >> order"));
    cfg.init.insert("a3-fails".into(), t.task("echo a3 >> order; exit 4"));
    cfg.init.insert("b-after-svc".into(), t.task("echo b >> order").after("svc"));
    cfg.init.insert("skipped".into(), t.task("echo skipped >> order").creates(&t.path("exists").to_string_lossy()));
    // Ready once its line is written: without a probe a service counts as ready as
    // soon as it runs, and `b-after-svc` could then race the shell's echo.
    let order = t.path("order").to_string_lossy().to_string();
    cfg.services.insert(
        "svc".into(),
        t.sh("echo svc >> order; exec sleep 100").after("a2").ready_command(&["/bin/grep", "-qx", "svc", &order]),
    );
    cfg.services.insert("blocked".into(), t.sh("echo blocked >> order; exec sleep 100").after("a3-fails"));
    let sup = t.start(cfg);
    let st = sup.wait_for("b-after-svc done", |s| s.init["b-after-svc"].state == TaskState::Done);
    assert_eq!(t.read("order"), "a1\na2\na3\nsvc\nb\n");
    assert_eq!(st.init["a1"].state, TaskState::Done);
    assert_eq!(st.init["a1"].exit.as_ref().and_then(|e| e.code), Some(0));
    assert_eq!(st.init["skipped"].state, TaskState::Skipped);
    assert_eq!(st.init["a3-fails"].state, TaskState::Failed);
    assert_eq!(st.init["a3-fails"].exit.as_ref().and_then(|e| e.code), Some(4));
    let blocked = &st.services["blocked"];
    assert_eq!(blocked.state, ServiceState::Waiting);
    assert!(blocked.message.as_deref().unwrap_or_default().contains("init task a3-fails failed"), "{blocked:?}");
    assert!(std::fs::read_to_string(t.run_dir().join("logs/init/a3-fails.log")).unwrap().is_empty());
}

#[test]
fn init_task_stdin_gets_the_rendered_secret() {
    let t = Scene::new();
    let secrets = t.dir.path().join("secrets");
    std::fs::create_dir(&secrets).unwrap();
    std::fs::write(secrets.join("db"), "hunter2").unwrap();
    let mut cfg = t.cfg();
    cfg.secrets_dir = Some(secrets);
    cfg.init.insert("write".into(), t.task("cat > secret.out").stdin(Text::new().lit("pw=").secret("db").lit("\n")));
    cfg.init.insert("missing".into(), t.task("cat > missing.out").stdin(Text::new().secret("nope")));
    cfg.services.insert("svc".into(), t.sh("exec sleep 100"));
    let sup = t.start(cfg);
    let st = sup.wait_state("svc", ServiceState::Ready);
    assert_eq!(t.read("secret.out"), "pw=hunter2\n");
    assert_eq!(st.init["write"].state, TaskState::Done);
    assert_eq!(st.init["missing"].state, TaskState::Failed);
    assert!(st.init["missing"].message.as_deref().unwrap_or_default().contains("secret \"nope\""));
    assert!(!t.path("missing.out").exists());
    // The status never holds a secret's value.
    assert!(!std::fs::read_to_string(t.run_dir().join("status.json")).unwrap().contains("hunter2"));
}

#[test]
fn control_socket_commands() {
    let t = Scene::new();
    let mut cfg = t.cfg();
    cfg.services.insert("svc".into(), t.sh("exec sleep 100"));
    cfg.services.insert("later".into(), t.sh("exec sleep 100").after("never"));
    cfg.services.insert("never".into(), t.sh("exec sleep 100").ready_command(&["false"]));
    let mut sup = t.start(cfg);
    sup.wait_state("svc", ServiceState::Ready);
    let reply = sup.ctl("status");
    let st: Status = serde_json::from_value(reply["status"].clone()).unwrap();
    assert_eq!(st.pid, sup.pid());
    assert_eq!(st.state, SupervisorState::Running);
    assert_eq!(st.services["svc"].state, ServiceState::Ready);
    assert_eq!(st.services["never"].state, ServiceState::Starting);
    let err = |v: serde_json::Value| {
        assert_eq!(v["ok"], false, "{v}");
        v["error"].as_str().unwrap().to_string()
    };
    assert!(err(sup.ctl("frobnicate")).contains("unknown request"));
    assert!(err(sup.ctl("reload nosuch")).contains("no service"));
    assert!(err(sup.ctl("restart later")).contains("waiting"));
    assert!(err(sup.ctl("reload later")).contains("not running"));
    assert_eq!(sup.ctl("stop"), serde_json::json!({"ok": true}));
    assert!(sup.wait_exit().success());
    let st = sup.status().unwrap();
    assert_eq!(st.services["later"].state, ServiceState::Stopped);
    assert_eq!(st.services["never"].state, ServiceState::Stopped);
}

#[test]
fn children_get_only_stdio_a_clean_env_and_their_workdir() {
    let t = Scene::new();
    let mut cfg = t.cfg();
    let mut ls = ServiceRes::new(&["ls", "-l", "/proc/self/fd"]);
    ls.restart = Restart::No;
    cfg.services.insert("ls".into(), ls);
    let mut env = t.sh("echo \"FOO=$FOO PATH=$PATH HOME=$HOME\"; pwd").env("FOO", "bar");
    env.restart = Restart::No;
    cfg.services.insert("env".into(), env);
    let sup = t.start(cfg);
    sup.wait_state("ls", ServiceState::Exited);
    sup.wait_state("env", ServiceState::Exited);
    let log = t.log("ls");
    let fds: BTreeSet<u32> =
        log.lines().filter_map(|l| l.split(" -> ").next()?.split_whitespace().last()?.parse().ok()).collect();
    let extra: Vec<u32> = fds.iter().copied().filter(|fd| *fd > 2).collect();
    // ls itself opens one descriptor to read the folder.
    assert!(fds.is_superset(&[0, 1, 2].into()) && extra.len() <= 1, "{log}");
    for l in log.lines().filter(|l| extra.iter().any(|fd| l.contains(&format!(" {fd} -> ")))) {
        assert!(l.contains("/proc/") && l.ends_with("/fd"), "leaked descriptor: {l}");
    }
    assert!(log.lines().any(|l| l.contains(" 0 -> /dev/null")), "{log}");
    assert_eq!(t.log("env"), format!("FOO=bar PATH={DEFAULT_PATH} HOME=/root\n{}\n", t.work().display()));
}

#[test]
fn start_failures_are_reported() {
    let t = Scene::new();
    let mut cfg = t.cfg();
    cfg.services.insert("missing".into(), ServiceRes::new(&["no-such-program-here"]));
    cfg.services.insert("baduser".into(), ServiceRes::new(&["true"]).user("no-such-user-here"));
    let mut dir = t.sh("exit 0");
    dir.workdir = Some("/no/such/dir".parse().unwrap());
    cfg.services.insert("baddir".into(), dir);
    let sup = t.start(cfg);
    let st = sup.wait_for("all failed", |s| s.services.values().all(|x| x.state == ServiceState::Failed));
    let msg = |n: &str| st.services[n].message.clone().unwrap_or_default();
    assert!(msg("missing").contains("command not found"), "{}", msg("missing"));
    assert!(msg("baduser").contains("unknown user"), "{}", msg("baduser"));
    assert!(msg("baddir").contains("chdir"), "{}", msg("baddir"));
}

#[test]
fn runs_as_the_configured_user() {
    require_host!(); // root, to switch users
    let t = Scene::new();
    let mut cfg = t.cfg();
    let mut id = ServiceRes::new(&["sh", "-c", "id -u; id -g; echo $HOME"]).user("nobody");
    id.restart = Restart::No;
    cfg.services.insert("id".into(), id);
    let sup = t.start(cfg);
    sup.wait_state("id", ServiceState::Exited);
    assert_eq!(t.log("id"), "65534\n65534\n/nonexistent\n");
}

#[test]
fn refuses_to_run_in_a_threaded_process() {
    // The test harness has several threads; `run` must say so instead of starting.
    let t = Scene::new();
    let err = supervisor::run(t.cfg()).unwrap_err();
    assert!(err.to_string().contains("single-threaded"), "{err}");
}

#[test]
fn bad_dependencies_are_config_errors() {
    let t = Scene::new();
    let mut cfg = t.cfg();
    cfg.services.insert("a".into(), t.sh("exit 0").after("ghost"));
    let mut sup = t.start(cfg);
    let code = sup.wait_exit();
    assert_eq!(code.code(), Some(70));
    assert!(std::fs::read_to_string(&sup.err).unwrap().contains("unknown \"ghost\""));
}

/// Children (by pid) of `pid`, from procfs.
fn children_of(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).into_iter().flatten().flatten() {
        let list = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        out.extend(list.split_whitespace().filter_map(|p| p.parse::<i32>().ok()));
    }
    out
}

#[test]
fn runs_as_pid_1_of_a_pid_namespace() {
    require_host!(); // root, for a PID namespace
    let t = Scene::new();
    let mut cfg = t.cfg();
    cfg.services.insert("parent".into(), t.sh("(sleep 1 &); exec sleep 100"));
    let cfg_path = t.dir.path().join("supervisor.json");
    std::fs::write(&cfg_path, serde_json::to_vec(&cfg).unwrap()).unwrap();
    let err = std::fs::File::create(t.dir.path().join("supervisor.err")).unwrap();
    // `unshare --fork` makes our binary PID 1 of a new PID namespace; --kill-child
    // ends it if the test dies first.
    let unshare = Command::new("unshare")
        .args(["--pid", "--fork", "--kill-child"])
        .arg(std::env::current_exe().unwrap())
        .env(CONFIG_ENV, &cfg_path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(err)
        .spawn()
        .unwrap();
    let mut sup = Sup { child: unshare, run_dir: t.run_dir(), err: t.dir.path().join("supervisor.err"), exit: None };
    let st = sup.wait_state("parent", ServiceState::Ready);
    assert_eq!(st.pid, 1, "not PID 1 in its namespace");
    let host_pid = *children_of(sup.pid()).first().expect("no supervisor under unshare");
    // The orphaned `sleep 1` comes to PID 1 (a second child for a while) and must be
    // reaped when it ends (not stay as a zombie child).
    wait_until("orphan re-parented to PID 1", || children_of(host_pid).len() == 2);
    wait_until("orphan reaped", || children_of(host_pid).len() == 1);
    // SIGTERM from outside the namespace reaches PID 1 (it is blocked and read from a
    // signalfd, so the kernel does not drop it as it would for PID 1 without a handler).
    // SAFETY: kill(2) on the supervisor we started.
    unsafe { libc::kill(host_pid, libc::SIGTERM) };
    let code = sup.wait_exit();
    assert!(code.success(), "{code:?}\n{}", sup.diag());
    let st = sup.status().unwrap();
    assert_eq!((st.state, st.services["parent"].state), (SupervisorState::Stopped, ServiceState::Stopped));
}

fn pid_alive(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

fn js(reply: Result<supervisor::ControlReply, supervisor::SupervisorError>) -> serde_json::Value {
    serde_json::to_value(reply.unwrap()).unwrap()
}

fn error_of(v: &serde_json::Value) -> String {
    assert_eq!(v["ok"], false, "{v}");
    v["error"].as_str().unwrap().to_string()
}

#[test]
fn reconfigure_restarts_only_changed_services() {
    let t = Scene::new();
    let mut cfg = t.cfg();
    // `change` marks each definition's start with a file; its probe waits for the file
    // of the running definition, so `fresh` (after it) can tell which one it followed.
    let change = |v: &str| {
        t.sh("echo V=$V; touch change.v$V; exec sleep 100").env("V", v).ready_command(&[
            "/bin/sh",
            "-c",
            "test -e change.v$V",
        ])
    };
    cfg.services.insert("keep".into(), t.sh("exec sleep 100"));
    cfg.services.insert("change".into(), change("1"));
    cfg.services.insert("dependent".into(), t.sh("exec sleep 100").after("change"));
    cfg.services.insert("removed".into(), t.sh("exec sleep 100"));
    let sup = t.start(cfg.clone());
    let before = sup.wait_for("all ready", |s| s.services.values().all(|x| x.state == ServiceState::Ready));
    assert_eq!(before.generation, 0);
    let pid = |s: &Status, n: &str| s.services[n].pid.unwrap_or_else(|| panic!("{n} has no pid: {s:#?}"));

    cfg.services.insert("change".into(), change("2"));
    cfg.services.remove("removed");
    let fresh = "if test -e change.v2; then echo saw-v2; else echo too-early; fi > fresh.tmp; \
                 mv fresh.tmp fresh.out; exec sleep 100";
    cfg.services.insert("fresh".into(), t.sh(fresh).after("change"));
    t.rewrite(&cfg);
    // What starts anew, each with the incarnation it gets: a new service its first.
    assert_eq!(sup.ctl("reconfigure"), serde_json::json!({"ok": true, "wait": {"change": 2, "fresh": 1}}));
    let st = sup.wait_for("new definition ready", |s| {
        s.generation == 1
            && s.services["change"].state == ServiceState::Ready
            && s.services["change"].pid != before.services["change"].pid
            && s.services.get("fresh").is_some_and(|x| x.state == ServiceState::Ready)
    });
    // Unchanged services, and the dependent of the changed one, are left alone.
    for n in ["keep", "dependent"] {
        assert_eq!((pid(&st, n), st.services[n].restarts), (pid(&before, n), 0), "{n}\n{}", sup.diag());
    }
    assert_eq!(st.services["change"].restarts, 1);
    assert_eq!(st.services["change"].last_exit.as_ref().and_then(|e| e.signal.as_deref()), Some("SIGTERM"));
    wait_until("both definitions logged", || t.log("change") == "V=1\nV=2\n");
    assert!(!st.services.contains_key("removed"), "{st:#?}");
    let removed = pid(&before, "removed");
    wait_until("removed service gone", || !pid_alive(removed));
    // `fresh` started only once the new definition of `change` was ready.
    wait_until("fresh wrote its file", || t.path("fresh.out").exists());
    assert_eq!(t.read("fresh.out"), "saw-v2\n");
    assert_eq!(sup.ctl("status")["status"]["generation"], 1);
}

#[test]
fn init_tasks_run_again_on_reconfigure() {
    let t = Scene::new();
    let mut cfg = t.cfg();
    std::fs::write(t.path("exists"), "").unwrap();
    cfg.init.insert("b-early".into(), t.task("echo early >> order"));
    // First by id, but it waits for `svc`: after a reconfigure `svc` is ready at once,
    // yet the task with an empty `after` still goes first.
    cfg.init.insert("a-late".into(), t.task("echo late >> order").after("svc"));
    cfg.init.insert("skip".into(), t.task("echo skip >> order").creates(&t.path("exists").to_string_lossy()));
    cfg.init.insert("removed".into(), t.task("echo removed >> removed.runs"));
    cfg.services.insert("svc".into(), t.sh("exec sleep 100"));
    let sup = t.start(cfg.clone());
    let before = sup.wait_for("tasks done", |s| s.init["a-late"].state == TaskState::Done);
    assert_eq!(t.read("order"), "early\nlate\n");

    cfg.init.remove("removed");
    cfg.services.insert("new".into(), t.sh("echo new >> order; exec sleep 100"));
    t.rewrite(&cfg);
    assert_eq!(sup.ctl("reconfigure"), serde_json::json!({"ok": true, "wait": {"new": 1}}));
    let st = sup.wait_for("tasks done again", |s| {
        s.generation == 1
            && s.init["a-late"].state == TaskState::Done
            && s.init["b-early"].state == TaskState::Done
            && s.services.get("new").is_some_and(|x| x.state == ServiceState::Ready)
    });
    wait_until("five lines", || t.read("order").lines().count() == 5);
    let order = t.read("order");
    let lines: Vec<&str> = order.lines().collect();
    assert_eq!(lines[..3], ["early", "late", "early"], "{order}");
    // After the early task, `a-late` and the new service may go in either order.
    assert_eq!(lines[3..].iter().copied().collect::<BTreeSet<_>>(), ["late", "new"].into(), "{order}");
    assert_eq!(st.init["skip"].state, TaskState::Skipped);
    assert!(!st.init.contains_key("removed"), "{st:#?}");
    assert_eq!(t.read("removed.runs"), "removed\n");
    assert_eq!(st.services["svc"].pid, before.services["svc"].pid);
}

#[test]
fn invalid_config_on_reconfigure_changes_nothing() {
    let t = Scene::new();
    let mut cfg = t.cfg();
    cfg.stop_timeout_ms = 60_000;
    cfg.services.insert("svc".into(), t.sh("exec sleep 100"));
    // Ignores SIGTERM: the stop at the end lasts until a `stop` with a timeout.
    let stubborn = t.sh("trap '' TERM; touch up; sleep 100").ready_command(&["test", "-e", "up"]);
    cfg.services.insert("stubborn".into(), stubborn);
    let mut sup = t.start(cfg.clone());
    let before = sup.wait_for("all ready", |s| s.services.values().all(|x| x.state == ServiceState::Ready));

    t.write_config(b"{ not json");
    assert!(error_of(&sup.ctl("reconfigure")).contains("supervisor.json"));
    let mut bad = cfg.clone();
    bad.services.insert("svc".into(), t.sh("exec sleep 50").after("ghost"));
    t.rewrite(&bad);
    assert!(error_of(&sup.ctl("reconfigure")).contains("unknown \"ghost\""));
    let mut moved = cfg.clone();
    moved.run_dir = t.dir.path().join("elsewhere");
    t.rewrite(&moved);
    assert!(error_of(&sup.ctl("reconfigure")).contains("run_dir"));
    std::fs::remove_file(t.cfg_path()).unwrap();
    assert!(error_of(&sup.ctl("reconfigure")).contains("reading"));

    let st: Status = serde_json::from_value(sup.ctl("status")["status"].clone()).unwrap();
    assert_eq!(st.generation, 0);
    for n in ["svc", "stubborn"] {
        assert_eq!(st.services[n].pid, before.services[n].pid, "{n}");
        assert_eq!(st.services[n].state, ServiceState::Ready, "{n}");
    }

    // Once stopping, reconfigure is refused; a later `stop` with a timeout cuts the
    // wait for the stubborn service short.
    assert_eq!(sup.ctl("stop"), serde_json::json!({"ok": true}));
    t.rewrite(&cfg);
    assert!(error_of(&sup.ctl("reconfigure")).contains("stopping"));
    assert_eq!(sup.ctl("stop 300"), serde_json::json!({"ok": true}));
    assert!(sup.wait_exit().success());
    let st = sup.status().unwrap();
    assert_eq!(st.services["stubborn"].last_exit.as_ref().and_then(|e| e.signal.as_deref()), Some("SIGKILL"));
}

#[test]
fn reconfigure_needs_a_config_file() {
    let t = Scene::new();
    let mut cfg = t.cfg();
    cfg.services.insert("svc".into(), t.sh("exec sleep 100"));
    let sup = t.start_with(cfg, true);
    sup.wait_state("svc", ServiceState::Ready);
    assert!(error_of(&sup.ctl("reconfigure")).contains("not started from a config file"));
    assert!(error_of(&sup.ctl("stop soon")).contains("unknown request"));
    assert!(error_of(&sup.ctl(r#"{"op":"stop","timeout_ms":"soon"}"#)).contains("unknown request"));
}

#[test]
fn stop_with_a_timeout_overrides_stop_timeout() {
    let t = Scene::new();
    let mut cfg = t.cfg();
    cfg.stop_timeout_ms = 60_000;
    let stubborn = t.sh("trap '' TERM; touch up; sleep 100; echo never").ready_command(&["test", "-e", "up"]);
    cfg.services.insert("stubborn".into(), stubborn);
    let mut sup = t.start(cfg);
    let st = sup.wait_state("stubborn", ServiceState::Ready);
    let pid = st.services["stubborn"].pid.unwrap();
    let asked = Instant::now();
    assert_eq!(sup.ctl("stop 300"), serde_json::json!({"ok": true}));
    assert!(sup.wait_exit().success(), "{}", sup.diag());
    // Loose: only shows the 60 s of the config were not waited for.
    assert!(asked.elapsed() < Duration::from_secs(5), "stop took {:?}", asked.elapsed());
    let st = sup.status().unwrap();
    assert_eq!(st.services["stubborn"].state, ServiceState::Stopped);
    assert_eq!(st.services["stubborn"].last_exit.as_ref().and_then(|e| e.signal.as_deref()), Some("SIGKILL"));
    assert!(!pid_alive(pid));
}

/// The runtime's way: the new config as a sealed memfd passed with `reconfigure`
/// (`SCM_RIGHTS`); the file the supervisor started from is not read. An fd that is
/// not sealed is refused and nothing changes.
#[test]
fn reconfigure_takes_its_config_from_a_sealed_memfd() {
    use std::os::fd::{AsFd, FromRawFd, OwnedFd};
    let t = Scene::new();
    let mut cfg = t.cfg();
    cfg.services.insert("svc".into(), t.sh("exec sleep 100"));
    let sup = t.start_with(cfg.clone(), true);
    let before = sup.wait_state("svc", ServiceState::Ready);

    // SAFETY: a NUL-terminated name and valid flags.
    let raw = unsafe { libc::memfd_create(c"unsealed".as_ptr(), libc::MFD_CLOEXEC) };
    assert!(raw >= 0);
    // SAFETY: memfd_create just returned it.
    let unsealed = OwnedFd::from(std::fs::File::from(unsafe { OwnedFd::from_raw_fd(raw) }));
    let mut added = cfg.clone();
    added.services.insert("added".into(), t.sh("touch added.ran; exec sleep 100"));
    std::io::Write::write_all(
        &mut std::fs::File::from(unsealed.try_clone().unwrap()),
        &serde_json::to_vec(&added).unwrap(),
    )
    .unwrap();
    let reply =
        js(supervisor::control_with_fd(&t.run_dir(), sup.pid(), &ControlRequest::Reconfigure, unsealed.as_fd()));
    assert!(error_of(&reply).contains("sealed"), "{reply}");
    assert_eq!(sup.ctl("status")["status"]["generation"], 0);

    let sealed = supervisor::sealed_config(&added).unwrap();
    let reply = js(supervisor::control_with_fd(&t.run_dir(), sup.pid(), &ControlRequest::Reconfigure, sealed.as_fd()));
    assert_eq!(reply, serde_json::json!({"ok": true, "wait": {"added": 1}}));
    let st = sup.wait_for("added ready", |s| {
        s.generation == 1 && s.services.get("added").is_some_and(|x| x.state == ServiceState::Ready)
    });
    assert_eq!(st.services["svc"].pid, before.services["svc"].pid);
    wait_until("added ran", || t.path("added.ran").exists());
}

/// As PID 1 of its own pid namespace (as in a container) the supervisor takes
/// `reconfigure` only from a process outside that namespace, and only with its config
/// as a memfd: a process inside (here one of its services, as the container's root
/// would be) is refused even with a sealed memfd, and re-reading the config file is
/// refused too.
#[test]
fn as_pid_1_reconfigure_comes_only_from_outside_its_pid_namespace() {
    use std::os::fd::AsFd;
    require_host!(); // root, for a PID namespace
    let t = Scene::new();
    let mut cfg = t.cfg();
    cfg.services.insert("main".into(), t.sh("exec sleep 100"));
    let mut evil = cfg.clone();
    evil.services.insert("evil".into(), t.sh("touch evil.ran; exec sleep 100"));
    std::fs::write(t.path("evil.json"), serde_json::to_vec(&evil).unwrap()).unwrap();
    // Inside the namespace: sends `reconfigure` with the evil config sealed in a memfd.
    let client = format!(
        r#"
import array, fcntl, os, socket
fd = os.memfd_create('cfg', os.MFD_ALLOW_SEALING)
os.write(fd, open('evil.json', 'rb').read())
fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_WRITE | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_SEAL)
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect('{}')
s.sendmsg([b'{{"op":"reconfigure"}}\n'], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array('i', [fd]))])
open('inside.tmp', 'w').write(s.makefile().readline())
os.rename('inside.tmp', 'inside.reply')
"#,
        t.run_dir().join("control.sock").display()
    );
    let mut inside = t.py(&client).after("main");
    inside.restart = Restart::No;
    cfg.services.insert("inside".into(), inside.clone());
    evil.services.insert("inside".into(), inside);
    std::fs::write(t.path("evil.json"), serde_json::to_vec(&evil).unwrap()).unwrap();
    t.rewrite(&cfg);
    let err = std::fs::File::create(t.dir.path().join("supervisor.err")).unwrap();
    let unshare = Command::new("unshare")
        .args(["--pid", "--fork", "--kill-child"])
        .arg(std::env::current_exe().unwrap())
        .env(CONFIG_ENV, t.cfg_path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(err)
        .spawn()
        .unwrap();
    let mut sup = Sup { child: unshare, run_dir: t.run_dir(), err: t.dir.path().join("supervisor.err"), exit: None };
    sup.wait_state("main", ServiceState::Ready);
    let host_pid = *children_of(sup.pid()).first().expect("no supervisor under unshare");

    wait_until("the service inside got its reply", || t.path("inside.reply").exists());
    let reply: serde_json::Value = serde_json::from_str(&t.read("inside.reply")).unwrap();
    assert!(error_of(&reply).contains("only the host"), "{reply}");

    // From outside, the config file is not read again: only a memfd is taken.
    t.rewrite(&evil);
    let reply = js(supervisor::control(&t.run_dir(), host_pid, &ControlRequest::Reconfigure));
    assert!(error_of(&reply).contains("sealed memfd"), "{reply}");
    std::thread::sleep(Duration::from_millis(500));
    let st = sup.status().unwrap();
    assert_eq!((st.generation, st.services.contains_key("evil")), (0, false), "{st:#?}");
    assert!(!t.path("evil.ran").exists());

    // From outside with a sealed memfd: taken.
    let mut more = cfg.clone();
    more.services.insert("more".into(), t.sh("exec sleep 100"));
    let fd = supervisor::sealed_config(&more).unwrap();
    let reply = js(supervisor::control_with_fd(&t.run_dir(), host_pid, &ControlRequest::Reconfigure, fd.as_fd()));
    assert_eq!(reply, serde_json::json!({"ok": true, "wait": {"more": 1}}));
    sup.wait_for("more ready", |s| {
        s.generation == 1 && s.services.get("more").is_some_and(|x| x.state == ServiceState::Ready)
    });

    // SAFETY: kill(2) on the supervisor we started.
    unsafe { libc::kill(host_pid, libc::SIGTERM) };
    assert!(sup.wait_exit().success(), "{}", sup.diag());
}

#[test]
fn a_stop_signals_a_whole_layer_at_once() {
    let t = Scene::new();
    let mut cfg = t.cfg();
    cfg.stop_timeout_ms = 1000;
    for i in 0..10 {
        let svc =
            t.sh(&format!("trap '' TERM; touch up.{i}; sleep 100")).ready_command(&["test", "-e", &format!("up.{i}")]);
        cfg.services.insert(format!("s{i}"), svc);
    }
    // A second layer: stopped only once the first has ended.
    cfg.services.insert("base".into(), t.sh("trap 'echo base >> order; exit 0' TERM; while :; do sleep 0.05; done"));
    for i in 0..10 {
        let s = cfg.services.remove(&format!("s{i}")).unwrap().after("base");
        cfg.services.insert(format!("s{i}"), s);
    }
    let mut sup = t.start(cfg);
    sup.wait_for("all ready", |s| s.services.values().all(|x| x.state == ServiceState::Ready));
    let started = Instant::now();
    assert_eq!(sup.ctl("stop"), serde_json::json!({"ok": true}));
    assert!(sup.wait_exit().success(), "{}", sup.diag());
    let took = started.elapsed();
    // One timeout for the ten stubborn ones together (serially: ten).
    assert!(took < Duration::from_millis(2500), "stop took {took:?}");
    let st = sup.status().unwrap();
    for i in 0..10 {
        let s = &st.services[&format!("s{i}")];
        assert_eq!(s.last_exit.as_ref().and_then(|e| e.signal.as_deref()), Some("SIGKILL"), "s{i}");
    }
    assert_eq!(st.services["base"].last_exit.as_ref().and_then(|e| e.code), Some(0));
    assert_eq!(t.read("order"), "base\n");
}

/// A `wait` for incarnation 1 of each of `names`, retried while PID 1 does not
/// listen yet; the reply and how long it took.
fn wait_for_services(sup: &Sup, names: &[&str], no_grace: bool) -> (supervisor::ControlReply, Duration) {
    let services: BTreeMap<String, u64> = names.iter().map(|n| (n.to_string(), 1)).collect();
    let started = Instant::now();
    let reply = loop {
        match supervisor::control(
            &sup.run_dir,
            sup.pid(),
            &ControlRequest::Wait { services: services.clone(), no_grace },
        ) {
            Ok(r) => break r,
            // Not listening yet.
            Err(_) if started.elapsed() < Duration::from_secs(10) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => panic!("wait: {e}"),
        }
    };
    (reply, started.elapsed())
}

/// `start` of what ran before asks without the grace period: a service without a
/// probe counts once spawned, so a start does not cost a second.
#[test]
fn a_wait_without_grace_counts_a_spawned_service_at_once() {
    let t = Scene::new();
    let mut cfg = t.cfg();
    cfg.services.insert("idle".into(), t.sh("exec sleep 100"));
    let sup = t.start(cfg);
    let (reply, took) = wait_for_services(&sup, &["idle"], true);
    assert!(reply.ok, "{reply:?}");
    // With the grace it is answered no sooner than START_GRACE after the spawn.
    assert!(took < supervisor::START_GRACE, "answered after {took:?}, as if it waited the grace period");
    let st = reply.status.expect("the status comes with the answer");
    assert_eq!(st.services["idle"].state, ServiceState::Ready);
    assert_eq!(st.services["idle"].incarnation, 1);
}

#[test]
fn wait_tells_a_started_service_from_one_that_exited_at_once() {
    let t = Scene::new();
    let mut cfg = t.cfg();
    cfg.services.insert("boom".into(), t.sh("echo boom; exit 3"));
    let mut once = t.sh("echo once");
    once.restart = Restart::No;
    cfg.services.insert("once".into(), once);
    cfg.services.insert("idle".into(), t.sh("exec sleep 100"));
    let sup = t.start(cfg);
    let wait = |names: &[&str]| wait_for_services(&sup, names, false);
    // Without a probe, started only counts once it outlived the grace period.
    let (reply, took) = wait(&["idle", "once"]);
    assert!(reply.ok, "{reply:?}");
    assert!(took >= supervisor::START_GRACE - Duration::from_millis(200), "answered after {took:?}");
    let st = reply.status.expect("the status comes with the answer");
    assert_eq!(st.services["once"].state, ServiceState::Exited);
    assert!(!st.services["idle"].probed);
    assert_eq!(st.services["idle"].incarnation, 1);
    // One that fails at once fails the wait, whatever its restart policy does next.
    let (reply, _) = wait(&["boom", "idle"]);
    assert!(!reply.ok, "{reply:?}");
    assert_eq!(reply.failed.keys().collect::<Vec<_>>(), vec!["boom"], "{reply:?}");
    assert!(reply.failed["boom"].contains("exit code 3"), "{reply:?}");
}
