//! Restarts leave no orphans: each service runs in a cgroup2 child of its own, and a
//! restart (here: an `apply` that changes the service) ends every process of the old
//! instance, forked and `setsid` daemons included, before the new one starts. A
//! daemon that keeps a port therefore never turns a restart into a crash loop.
//!
//! Host tier (root: real containers). Address salt 137 (no address is used yet: the
//! containers have no network, only their own loopback).

mod support;
use std::time::Duration;
use support::*;

/// The marker argument of this suite's sleeps (no other process sleeps this long).
const MARK: &str = "7321";

/// A `base = "host"` container without network whose service `svc` is `command`
/// with `GEN=<generation>` in its environment (a new generation restarts it).
fn body(generation: u32, service: &str) -> String {
    format!(
        "base = \"host\"\n[network]\nmode = \"none\"\n\n[processes.svc]\n{service}env = {{ GEN = \"{generation}\" }}\n"
    )
}

/// Host pids of every process in the pid namespace of host pid `pid`.
fn pids_in_ns_of(pid: i64) -> Vec<i64> {
    let ns = std::fs::read_link(format!("/proc/{pid}/ns/pid")).expect("pid ns");
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(p) = e.file_name().to_string_lossy().parse::<i64>() else { continue };
        if std::fs::read_link(format!("/proc/{p}/ns/pid")).ok().as_ref() == Some(&ns) {
            out.push(p);
        }
    }
    out
}

/// The container's processes whose command line is `sleep MARK`.
fn marked_sleeps(pid1: i64) -> Vec<i64> {
    let want = format!("sleep\0{MARK}\0").into_bytes();
    pids_in_ns_of(pid1)
        .into_iter()
        .filter(|p| std::fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default() == want)
        .collect()
}

fn service(ct: &Ct) -> serde_json::Value {
    ct.status()["status"]["services"]["svc"].clone()
}

#[test]
fn no_process_of_a_forking_service_survives_ten_restarts() {
    require_host!();
    let forker = format!(
        "command = [\"/bin/sh\", \"-c\", \"sleep {MARK} & sleep {MARK} & setsid sleep {MARK} & exec sleep {MARK}\"]\n"
    );
    let ct = Ct::new(&format!("orf{}", slice(137)), &body(0, &forker));
    ct.apply_ok();
    let pid1 = ct.pid1();
    // One instance: the shell's two children, the setsid one and itself (exec'd).
    eventually("the first instance's four sleeps", 20, || (marked_sleeps(pid1).len() == 4).then_some(()));
    for generation in 1..=10 {
        let before = service(&ct)["pid"].as_i64();
        ct.write(&body(generation, &forker));
        ct.apply_ok();
        eventually(&format!("restart {generation}"), 20, || {
            let s = service(&ct);
            (s["pid"].as_i64() != before && s["state"] == "ready").then_some(())
        });
    }
    assert_eq!(ct.pid1(), pid1, "the container was restarted instead of its service");
    // Only the last instance is left, however long one waits.
    std::thread::sleep(Duration::from_millis(500));
    let left = marked_sleeps(pid1);
    assert_eq!(left.len(), 4, "processes of earlier instances survived 10 restarts: {left:?}");
}

/// A service that starts a double-forked daemon on 127.0.0.1:9123 (answering its
/// generation) and fails when the daemon cannot bind, as a real one would.
const DAEMON: &str = r#"
import os, socket, sys, time
gen = os.environ.get("GEN", "?")
r, w = os.pipe()
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.close(r)
        try:
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", 9123))
            s.listen(16)
        except OSError as e:
            print("daemon: cannot listen:", e, flush=True)
            os.write(w, b"E")
            os._exit(1)
        os.write(w, b"K")
        os.close(w)
        while True:
            c, _ = s.accept()
            c.sendall(("gen=" + gen + "\n").encode())
            c.close()
    os._exit(0)
os.close(w)
if os.read(r, 1) != b"K":
    sys.exit(1)
while True:
    time.sleep(1000)
"#;

const ASK: &str = r#"
import socket
s = socket.create_connection(("127.0.0.1", 9123), timeout=5)
print(s.recv(100).decode().strip())
"#;

#[test]
fn a_daemon_that_keeps_a_port_restarts_cleanly() {
    require_host!();
    let svc = format!("command = [\"/usr/bin/python3\", \"-c\", {DAEMON:?}]\nrestart = \"on-failure\"\n");
    let ct = Ct::new(&format!("ord{}", slice(137)), &body(0, &svc));
    ct.apply_ok();
    let pid1 = ct.pid1();
    let ask = |ct: &Ct| text(&ct.exec(&["/usr/bin/python3", "-c", ASK]).stdout).trim().to_string();
    eventually("the first daemon to answer", 20, || (ask(&ct) == "gen=0").then_some(()));
    for generation in 1..=10 {
        ct.write(&body(generation, &svc));
        ct.apply_ok();
        let want = format!("gen={generation}");
        let mut last = String::new();
        let answered = (0..100).any(|_| {
            last = ask(&ct);
            last == want || {
                std::thread::sleep(Duration::from_millis(100));
                false
            }
        });
        assert!(answered, "restart {generation}: the port still answers {last:?}\n{:#}\n{}", service(&ct), ct.logs());
    }
    let s = service(&ct);
    assert_eq!(s["state"], "ready", "{s:#}\n{}", ct.logs());
    // Ten restarts by apply, none by a crash.
    assert_eq!(s["restarts"].as_u64(), Some(10), "the service crash-looped: {s:#}\n{}", ct.logs());
    assert_eq!(ct.pid1(), pid1);
}
