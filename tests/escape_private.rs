//! The container's root against its own supervisor's configuration, tried for real
//! from inside (host tier: root, real namespaces, the real CLI on `base = "host"`
//! containers, whose `/usr` is the host's, so `python3` is there).
//!
//! PID 1 keeps the union of every process's capabilities (`Plan::pid1_security`):
//! a configuration PID 1 loads from the container could start a service with more
//! than the container's own processes have. Each test plays the container's root
//! (`container exec NAME -- python3 -c …`) and asserts the host and the service set
//! are unchanged:
//! - a new `/run/container/supervisor.json` that adds a service holding NET_ADMIN
//!   (which only `main` may have) without no_new_privs, then `reconfigure` on
//!   `/run/container/control.sock`: refused, nothing started, status unchanged;
//! - the same configuration in a sealed memfd passed with `reconfigure` by
//!   `SCM_RIGHTS`: refused (the sender is a process of the container);
//! - `supervisor.json` and `supervisor.log` are not in the container's view; a
//!   `/run/container/supervisor.log` planted as a symlink to a host path before a
//!   `restart` creates or changes no host file;
//! - after each attack the host's `apply` still reconfigures the container live.
//!
//! Containers are named `esc-pv-*`; they have no network (`mode = "none"`), so this
//! file uses no addresses (its address salt would be 71).

mod support;

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;
use support::*;

/// `main` alone holds NET_ADMIN, so PID 1 keeps it; `exec` does not get it.
const SPEC: &str = r#"base = "host"
[network]
mode = "none"
[processes.main]
command = ["/bin/sh", "-c", "exec /bin/sleep infinity"]
[processes.main.security]
cap_add = ["NET_ADMIN"]
"#;

/// The same, and a second service the host adds by `apply`.
const SPEC_TWO: &str = r#"base = "host"
[network]
mode = "none"
[processes.main]
command = ["/bin/sh", "-c", "exec /bin/sleep infinity"]
[processes.main.security]
cap_add = ["NET_ADMIN"]
[processes.second]
command = ["/bin/sh", "-c", "exec /bin/sleep infinity"]
"#;

/// The supervisor's configuration as the host last wrote it (the host-private copy,
/// or, as older versions kept it, the one in the run folder), with a service `evil`
/// added that keeps NET_ADMIN, runs without no_new_privs and leaves its capabilities
/// in `/run/container/pwned`.
fn evil_config(ct: &Ct) -> Vec<u8> {
    let path = [ct.dirs().join("supervisor.json"), ct.dirs().join("run/supervisor.json")]
        .into_iter()
        .find(|p| p.is_file())
        .expect("the supervisor's configuration on the host");
    let mut cfg: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let mut evil = cfg["services"]["main"].clone();
    evil["command"] =
        serde_json::json!(["/bin/sh", "-c", "grep Cap /proc/self/status > /run/container/pwned; exec sleep 1000"]);
    evil["security"] = serde_json::json!({"cap_add": ["NET_ADMIN"], "no_new_privs": false});
    cfg["services"]["evil"] = evil;
    serde_json::to_vec(&cfg).unwrap()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Python run inside the container as its root; prints the supervisor's reply.
fn py(ct: &Ct, script: &str) -> String {
    let out = ct.exec(&["python3", "-c", script]);
    assert!(out.status.success(), "python3 inside failed: {}\n{}", text(&out.stdout), text(&out.stderr));
    text(&out.stdout)
}

/// `status.json` as the supervisor wrote it.
fn status(ct: &Ct) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(ct.dirs().join("run/status.json")).unwrap()).unwrap()
}

fn services(st: &serde_json::Value) -> Vec<String> {
    st["services"].as_object().map(|m| m.keys().cloned().collect()).unwrap_or_default()
}

/// Nothing the attack asked for happened: no new service, no new generation, `main`
/// untouched, nothing ran.
#[track_caller]
fn assert_unconfigured(ct: &Ct, before: &serde_json::Value) {
    // A service that was started would have written its marker within this time.
    std::thread::sleep(Duration::from_millis(1500));
    let st = status(ct);
    assert_eq!(services(&st), vec!["main".to_string()], "the service set changed: {st}");
    assert_eq!(st["generation"], before["generation"], "the supervisor reconfigured: {st}");
    assert_eq!(st["services"]["main"]["pid"], before["services"]["main"]["pid"], "main was restarted: {st}");
    let pwned = ct.dirs().join("run/pwned");
    assert!(!pwned.exists(), "the container's service ran: {}", std::fs::read_to_string(&pwned).unwrap_or_default());
}

/// The host's own `apply` that adds a service still reconfigures the running
/// container in place.
#[track_caller]
fn assert_host_reconfigures(ct: &Ct) {
    let pid1 = ct.pid1();
    ct.write(SPEC_TWO);
    ct.apply_ok();
    assert_eq!(ct.pid1(), pid1, "apply recreated the container instead of reconfiguring it");
    let st = status(ct);
    assert_eq!(services(&st), vec!["main".to_string(), "second".to_string()], "{st}");
    assert_eq!(st["services"]["second"]["state"], "ready", "{st}");
}

#[test]
fn a_rewritten_config_file_and_reconfigure_from_inside_are_refused() {
    require_host!();
    let ct = Ct::new("esc-pv-file", SPEC);
    ct.apply_ok();
    let before = status(&ct);
    let cfg = evil_config(&ct);
    let reply = py(
        &ct,
        &format!(
            r#"
import socket
open('/run/container/supervisor.json', 'wb').write(bytes.fromhex('{}'))
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect('/run/container/control.sock')
s.sendall(b'{{"op":"reconfigure"}}\n')
print(s.makefile().readline())
"#,
            hex(&cfg)
        ),
    );
    assert!(reply.contains(r#""ok":false"#), "the supervisor took the container's config: {reply}");
    assert_unconfigured(&ct, &before);
    // A restart does not load it either.
    ok(&["restart", &ct.name]);
    let st = status(&ct);
    assert_eq!(services(&st), vec!["main".to_string()], "restart loaded the container's config: {st}");
    assert!(!ct.dirs().join("run/supervisor.json").exists(), "a configuration is left in the container's view");
    assert!(!ct.dirs().join("run/pwned").exists(), "the container's service ran");
    assert_host_reconfigures(&ct);
}

#[test]
fn a_config_memfd_passed_from_inside_is_refused() {
    require_host!();
    let ct = Ct::new("esc-pv-memfd", SPEC);
    ct.apply_ok();
    let before = status(&ct);
    let cfg = evil_config(&ct);
    let reply = py(
        &ct,
        &format!(
            r#"
import array, fcntl, os, socket
fd = os.memfd_create('cfg', os.MFD_ALLOW_SEALING)
os.write(fd, bytes.fromhex('{}'))
fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_WRITE | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_SEAL)
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect('/run/container/control.sock')
s.sendmsg([b'{{"op":"reconfigure"}}\n'], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array('i', [fd]))])
print(s.makefile().readline())
"#,
            hex(&cfg)
        ),
    );
    assert!(reply.contains(r#""ok":false"#), "the supervisor took the container's memfd: {reply}");
    assert!(reply.contains("only the host"), "{reply}");
    assert_unconfigured(&ct, &before);
    assert_host_reconfigures(&ct);
}

#[test]
fn the_supervisor_log_is_host_private_and_a_planted_one_is_never_opened() {
    require_host!();
    let victim = Victim::new();
    let ct = Ct::new("esc-pv-log", SPEC);
    ct.apply_ok();
    let inside = ct.exec_ok(&["sh", "-c", "ls -a /run/container"]);
    for f in ["supervisor.json", "supervisor.log"] {
        assert!(!inside.lines().any(|l| l == f), "{f} is in the container's view:\n{inside}");
    }
    let log = ct.dirs().join("supervisor.log");
    let meta = std::fs::symlink_metadata(&log).expect("supervisor.log in the container's private folder");
    assert!(meta.file_type().is_file());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let cfg = ct.dirs().join("supervisor.json");
    assert_eq!(std::fs::metadata(&cfg).expect("supervisor.json").permissions().mode() & 0o777, 0o600);

    for target in [&victim.absent, &victim.existing] {
        ct.exec_ok(&[
            "sh",
            "-c",
            &format!("rm -f /run/container/supervisor.log; ln -s {} /run/container/supervisor.log", target.display()),
        ]);
        let pid1 = ct.pid1();
        ok(&["restart", &ct.name]);
        assert_ne!(ct.pid1(), pid1, "restart did not restart");
        victim.assert_unchanged();
        // The stale name is gone from the run folder; PID 1 logs to the private one.
        assert!(std::fs::symlink_metadata(ct.dirs().join("run/supervisor.log")).is_err());
        assert!(std::fs::symlink_metadata(&log).unwrap().file_type().is_file());
    }
    victim.assert_unchanged();
}

/// A container an older version started (its `run.json` says nothing of a config
/// fd: its PID 1 reads `run/supervisor.json`) is recreated by the next `apply`,
/// which migrates it, and stops as any other.
#[test]
fn a_container_of_an_older_version_is_recreated_by_apply() {
    require_host!();
    let ct = Ct::new("esc-pv-old", SPEC);
    ct.apply_ok();
    let run_json = ct.dirs().join("run.json");
    let mut info: serde_json::Value = serde_json::from_slice(&std::fs::read(&run_json).unwrap()).unwrap();
    info.as_object_mut().unwrap().remove("config_fd").expect("run.json records the config fd");
    std::fs::write(&run_json, serde_json::to_vec(&info).unwrap()).unwrap();
    let pid1 = ct.pid1();
    let out = ct.apply_ok();
    assert!(out.contains("recreated"), "{out}");
    assert_ne!(ct.pid1(), pid1);
    let info: serde_json::Value = serde_json::from_slice(&std::fs::read(&run_json).unwrap()).unwrap();
    assert_eq!(info["config_fd"], true, "{info}");
    ok(&["stop", &ct.name]);
    assert_ne!(ct.status()["state"], "running", "it still runs after stop");
}
