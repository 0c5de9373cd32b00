//! Containers at boot: `container start --all` after a simulated reboot, a pid of
//! another boot never taken for PID 1, `start --wait` for systemd's template unit,
//! and the shipped units under `systemd-analyze verify`.
//!
//! Host tier (`require_host!`) but for the units' check. Every test keeps a state
//! root of its own (`start --all` acts on a whole root, so the tests of this binary
//! must not see each other's containers) and uses this suite's addresses (salt 97).

mod support;
use container::runtime::layout::{BootId, RunInfo, StateRoot};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::net::try_get;
use support::*;

const SALT: u32 = 97;

/// A unique container name of this run (`rb<slice><tag>`).
fn name(tag: &str) -> String {
    format!("rb{}{tag}", slice(SALT))
}

/// A web server on address `n` of this suite's slice.
fn web(n: u32) -> String {
    format!(
        r#"
[network]
ipv4 = "{}"
ipv6 = "{}"
nat = true

[[files]]
path = "/srv/www/index.html"
content = "back after the reboot"

[processes.web]
command = ["/usr/bin/python3", "-m", "http.server", "8080", "--bind", "::", "--directory", "/srv/www"]
user = "nobody"
ready = {{ tcp = 8080 }}
"#,
        v4(SALT, n),
        v6(SALT, n)
    )
}

const SLEEPER: &str = "[network]\nmode = \"none\"\n[processes.main]\ncommand = [\"/bin/sleep\", \"infinity\"]\n";

fn gone(pid: i32) -> bool {
    container::exec::process::proc_stat(pid).is_none_or(|(_, s)| s == 'Z')
}

#[track_caller]
fn sigkill(pid: i32) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
    eventually(&format!("pid {pid} to end"), 20, || gone(pid).then_some(()));
}

/// A boot id that is not this boot's.
fn other_boot() -> Option<BootId> {
    Some(BootId(BootId::current().expect("this host tells its boot id").0 ^ 0xdead_beef))
}

fn link_exists(dev: &str) -> bool {
    host(&["ip", "link", "show", "dev", dev]).status.success()
}

#[test]
fn start_all_after_a_simulated_reboot_restores_running_containers_and_leaves_stopped_ones() {
    require_host!();
    let mut root = OwnRoot::new();
    let up: Vec<(String, u32)> = (1..=3).map(|n| (name(&format!("up{n}")), n)).collect();
    for (n, addr) in &up {
        root.apply(n, &web(*addr));
    }
    let down = name("down");
    root.apply(&down, &web(4));
    root.ok(&["stop", &down]);
    for (_, addr) in &up {
        assert!(try_get(&v4(SALT, *addr), 8080).is_ok(), "not serving before the reboot");
    }

    // The reboot: every PID 1 dies, its veth and cgroups go, the table is flushed,
    // the run folders are forgotten and the boot id changes.
    let table = StateRoot::new(root.path()).nft_table();
    for (n, _) in &up {
        let info = root.run_info(n).expect("run.json of a running container");
        sigkill(info.pid);
        let veth = container::exec::net::host_ifname(&root.key(n));
        let _ = host(&["ip", "link", "del", &veth]);
        let _ = std::fs::remove_dir(format!("/sys/fs/cgroup/container/{}", root.key(n)));
        let _ = std::fs::remove_dir_all(root.dirs(n).join("run"));
        root.write_run_info(n, &RunInfo { boot_id: other_boot(), ..info });
    }
    host_ok(&["nft", "flush", "table", "inet", &table]);
    for (n, _) in &up {
        assert_ne!(root.state(n), "running", "{n} counted as running after the reboot");
    }
    // (Not "refused": where the default route leads, something may answer.)
    let serves = |n: u32| try_get(&v4(SALT, n), 8080).is_ok_and(|b| b.contains("back after the reboot"));
    assert!(!serves(1), "still serving after the reboot");

    let out = root.cmd(&["start", "--all"]);
    assert!(out.status.success(), "start --all failed: {}\n{}", text(&out.stdout), text(&out.stderr));
    for (n, addr) in &up {
        let got = try_get(&v4(SALT, *addr), 8080);
        assert!(got.as_deref().is_ok_and(|b| b.contains("back after the reboot")), "{n} not back: {got:?}");
        assert_eq!(root.state(n), "running");
        assert!(link_exists(&container::exec::net::host_ifname(&root.key(n))), "{n} has no veth");
    }
    // NAT rules of the three are back in the flushed table.
    let rules = host_ok(&["nft", "list", "table", "inet", &table]);
    for (_, addr) in &up {
        assert!(rules.contains(&v4(SALT, *addr)), "no rule for {} in:\n{rules}", v4(SALT, *addr));
    }
    assert!(root.state(&down).starts_with("stopped"), "the stopped container was started");
    assert!(!serves(4), "the stopped container serves");

    // A second run changes nothing and still succeeds; `stop --all` stops all
    // without changing what comes back.
    root.ok(&["start", "--all"]);
    root.ok(&["stop", "--all"]);
    for (n, _) in &up {
        assert!(root.state(n).starts_with("stopped"), "{n} not stopped by stop --all");
    }
    root.ok(&["start", "--all"]);
    for (n, addr) in &up {
        assert!(try_get(&v4(SALT, *addr), 8080).is_ok(), "{n} not back after stop --all, start --all");
    }
    assert!(root.state(&down).starts_with("stopped"));
}

#[test]
fn start_all_goes_past_a_failing_container_and_exits_1() {
    require_host!();
    let mut root = OwnRoot::new();
    let good = name("good");
    let bad = name("bad");
    root.apply(&good, SLEEPER);
    root.apply(&bad, SLEEPER);
    root.ok(&["stop", "--all"]);
    // The bad one's applied plan is torn.
    let state = root.dirs(&bad).join("state.json");
    let plan = std::fs::read(&state).unwrap();
    std::fs::write(&state, &plan[..plan.len() / 2]).unwrap();
    let out = root.cmd(&["start", "--all"]);
    assert_eq!(out.status.code(), Some(1), "{}\n{}", text(&out.stdout), text(&out.stderr));
    assert!(text(&out.stderr).contains(&bad), "the failure is not named: {}", text(&out.stderr));
    assert_eq!(root.state(&good), "running", "the good one was not started past the failure");
}

#[test]
fn a_recycled_pid_of_another_boot_is_never_signalled() {
    require_host!();
    let mut root = OwnRoot::new();
    let ct = name("pid");
    root.apply(&ct, SLEEPER);
    root.ok(&["stop", &ct]);
    let victim = Bg(Command::new("sleep").arg("1000").spawn().expect("spawn sleep"));
    let pid = victim.0.id() as i32;
    let mut fake = RunInfo::of(pid).expect("stat of the sleep");
    fake.boot_id = other_boot();
    let alive = || !gone(pid);

    root.write_run_info(&ct, &fake);
    assert_ne!(root.state(&ct), "running", "a pid of another boot taken for PID 1");
    root.ok(&["stop", &ct]);
    assert!(alive(), "stop signalled an unrelated process");

    root.write_run_info(&ct, &fake);
    root.ok(&["enable", &ct]);
    root.ok(&["start", "--all"]);
    assert!(alive(), "start --all signalled an unrelated process");
    let info = root.run_info(&ct).expect("started");
    assert_ne!(info.pid, pid);
    assert_eq!(info.boot_id, BootId::current());
    root.ok(&["stop", &ct]);

    root.write_run_info(&ct, &fake);
    root.ok(&["destroy", &ct]);
    assert!(alive(), "destroy signalled an unrelated process");
    drop(victim);
}

/// `container start --wait NAME` with `NOTIFY_SOCKET` at a socket of ours.
fn start_wait(root: &OwnRoot, ct: &str, socket: &Path) -> std::process::Child {
    container_on(root.path())
        .args(["start", "--wait", ct])
        .env("NOTIFY_SOCKET", socket)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .expect("start --wait")
}

#[track_caller]
fn notified(sock: &std::os::unix::net::UnixDatagram) -> String {
    let mut buf = [0u8; 256];
    let n = sock.recv(&mut buf).expect("no sd_notify message within the timeout");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[track_caller]
fn exit_within(child: &mut std::process::Child, secs: u64) -> Option<i32> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("start --wait did not exit within {secs} s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn start_wait_notifies_systemd_and_exits_0_on_stop_and_1_when_pid_1_dies() {
    require_host!();
    let mut root = OwnRoot::new();
    let ct = name("wait");
    root.apply(&ct, SLEEPER);
    root.ok(&["stop", &ct]);
    let sockdir = tempfile::tempdir().unwrap();
    let socket = sockdir.path().join("notify");
    let sock = std::os::unix::net::UnixDatagram::bind(&socket).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(60))).unwrap();

    let mut child = start_wait(&root, &ct, &socket);
    assert_eq!(notified(&sock), "READY=1");
    assert_eq!(root.state(&ct), "running");
    std::thread::sleep(Duration::from_millis(300));
    assert!(child.try_wait().unwrap().is_none(), "start --wait returned while PID 1 runs");
    root.ok(&["stop", &ct]);
    assert_eq!(exit_within(&mut child, 30), Some(0), "a deliberate stop is a success");

    let mut child = start_wait(&root, &ct, &socket);
    assert_eq!(notified(&sock), "READY=1");
    // A restart puts a new PID 1 in place: still watched.
    root.ok(&["restart", &ct]);
    std::thread::sleep(Duration::from_millis(500));
    assert!(child.try_wait().unwrap().is_none(), "start --wait ended at a restart");
    sigkill(root.run_info(&ct).expect("running").pid);
    assert_eq!(exit_within(&mut child, 30), Some(1), "PID 1 died while it was to run");
}

#[test]
fn the_restart_policy_decides_what_comes_back_after_pid_1_dies() {
    require_host!();
    let mut root = OwnRoot::new();
    let status = |root: &OwnRoot, ct: &str| -> serde_json::Value {
        serde_json::from_str(&root.ok(&["status", ct, "--json"])).unwrap()
    };
    let no = name("rno");
    root.apply(&no, &format!("restart = \"no\"\n{SLEEPER}"));
    let st = status(&root, &no);
    assert_eq!((st["restart"].as_str(), st["desired"].as_str()), (Some("no"), Some("running")), "{st:#}");
    let sockdir = tempfile::tempdir().unwrap();
    let socket = sockdir.path().join("notify");
    let sock = std::os::unix::net::UnixDatagram::bind(&socket).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut child = start_wait(&root, &no, &socket);
    assert_eq!(notified(&sock), "READY=1");
    sigkill(root.run_info(&no).expect("running").pid);
    assert_eq!(exit_within(&mut child, 30), Some(0), "restart = \"no\": systemd is to leave it down");
    assert_eq!(root.state(&no), "crashed");

    // Changing the policy restarts nothing; it is recorded.
    root.ok(&["start", &no]);
    let pid = root.run_info(&no).expect("running").pid;
    let always = format!("restart = \"always\"\n{SLEEPER}");
    let spec = sockdir.path().join("always.toml");
    std::fs::write(&spec, format!("name = \"{no}\"\nbase = \"host\"\n{always}")).unwrap();
    let out = root.cmd(&["plan", spec.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stdout));
    assert!(text(&out.stdout).contains("~ restart policy: no → always"), "{}", text(&out.stdout));
    root.apply(&no, &always);
    assert_eq!(root.run_info(&no).expect("running").pid, pid, "a new restart policy restarted the container");
    assert_eq!(status(&root, &no)["restart"], "always");

    // "always" brings back a crashed container that was disabled; "on-failure" does not.
    let fail = name("rof");
    root.apply(&fail, SLEEPER);
    assert_eq!(status(&root, &fail)["restart"], "on-failure");
    for ct in [&no, &fail] {
        root.ok(&["disable", ct]);
        let st = status(&root, ct);
        assert_eq!(st["desired"], "stopped", "{st:#}");
        assert!(st["state_text"].as_str().unwrap().ends_with("(disabled: stays stopped at boot)"), "{st:#}");
        sigkill(root.run_info(ct).expect("running").pid);
    }
    assert!(status(&root, &no)["state_text"].as_str().unwrap().ends_with("(starts at boot)"));
    assert!(status(&root, &fail)["state_text"].as_str().unwrap().ends_with("(stays stopped at boot)"));
    let listed = root.ok(&["list"]);
    assert!(listed.contains(&format!("{fail}: crashed")) && listed.contains("(stays stopped at boot)"), "{listed}");
    root.ok(&["start", "--all"]);
    assert_eq!(root.state(&no), "running", "restart = \"always\": start --all starts it");
    assert_eq!(root.state(&fail), "crashed", "a disabled on-failure container was started");
}

/// The shipped units, with the binary's path replaced by the built one (in a temp
/// folder), pass `systemd-analyze verify` without a word. No root needed.
#[test]
fn the_shipped_units_pass_systemd_analyze_verify() {
    let dir = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_container");
    for unit in ["container.service", "container@.service"] {
        let text = repo_file(&format!("dist/systemd/{unit}"));
        assert!(text.contains("/usr/local/bin/container "), "{unit} does not run /usr/local/bin/container");
        std::fs::write(dir.path().join(unit), text.replace("/usr/local/bin/container", bin)).unwrap();
    }
    let units = [dir.path().join("container.service"), dir.path().join("container@web.service")];
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .args(&units)
        .env("SYSTEMD_LOG_LEVEL", "notice")
        .output()
        .expect("systemd-analyze (apt-get install systemd)");
    let err = text(&out.stderr);
    let ours: Vec<&str> =
        err.lines().filter(|l| l.contains(dir.path().to_str().unwrap()) || l.contains("container")).collect();
    assert!(out.status.success() && ours.is_empty(), "systemd-analyze verify: {}\n{err}", out.status);
    // A broken unit is caught (the check is not a no-op).
    let broken =
        repo_file("dist/systemd/container.service").replace("/usr/local/bin/container", "/nonexistent/container");
    std::fs::write(dir.path().join("container.service"), broken).unwrap();
    let out = Command::new("systemd-analyze").arg("verify").arg(dir.path().join("container.service")).output().unwrap();
    assert!(!out.status.success(), "verify passed a unit whose binary does not exist");
}
