//! Files a container plants in its own run folder, tried for real from inside (host
//! tier: root, real namespaces, the real CLI on `base = "host"` containers).
//!
//! Each container's `containers/<name>/run/` on the host is bound read-write at
//! `/run/container` inside, and the container's root owns it: anything there may be a
//! symlink, a FIFO or a socket of the container's choosing. Container root plants one
//! (`container exec NAME -- sh -c …`), the test runs the host command that touches it,
//! and asserts the host followed nothing:
//! - a service log (and its rotated part) as a symlink to a host file, or a FIFO:
//!   `container logs` refuses it with an error naming the file and never prints the
//!   host file nor hangs;
//! - `supervisor.log` as a symlink (where older versions kept PID 1's log): `restart`
//!   never opens it (PID 1 logs to the host-private `containers/<name>/supervisor.log`)
//!   and removes it, and the host file it points at is neither created nor written;
//! - `.supervisor.json.tmp` (the temp name writes used to take) as a symlink:
//!   `restart` ignores it and the host file is unchanged (the config is no longer
//!   written in the run folder at all; see `escape_private.rs`);
//! - `control.sock` as a symlink to another container's control socket: `stop` stops
//!   the container it was asked to, and the other one keeps running;
//! - `status.json` as a FIFO: `status` and `list` answer at once, for every container.
//!
//! Containers are named `esc-st-*`; they have no network (`mode = "none"`), so this
//! file uses no addresses (its address salt would be 49).

mod support;

use std::process::{Output, Stdio};
use std::time::{Duration, Instant};
use support::*;

const SLEEPER: &str = r#"base = "host"
[network]
mode = "none"
[processes.main]
command = ["/bin/sh", "-c", "echo started-main; exec /bin/sleep infinity"]
"#;

/// Run `sh -c script` inside as root; it must succeed.
#[track_caller]
fn plant(ct: &Ct, script: &str) {
    ct.exec_ok(&["sh", "-c", script]);
}

/// `container ARGS`, killed after `limit`; `None` when it did not end by then.
fn run_within(args: &[&str], limit: Duration) -> Option<Output> {
    let mut child = container()
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn container");
    let deadline = Instant::now() + limit;
    loop {
        if child.try_wait().expect("wait").is_some() {
            return Some(child.wait_with_output().expect("output"));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn out_text(o: &Output) -> String {
    format!("({})\nstdout: {}\nstderr: {}", o.status, text(&o.stdout), text(&o.stderr))
}

fn running(ct: &Ct) -> bool {
    ct.status()["state"].as_str() == Some("running")
}

/// Whether `pid` runs (a zombie waiting for its reaper does not count).
fn alive(pid: i64) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = stat.rsplit(')').next().and_then(|r| r.split_whitespace().next());
    !matches!(state, None | Some("Z") | Some("X"))
}

#[test]
fn logs_never_follow_a_planted_symlink_or_fifo() {
    require_host!();
    let victim = Victim::new();
    let ct = Ct::new("esc-st-logs", SLEEPER);
    ct.apply_ok();
    let logs = || run_within(&["logs", &ct.name], Duration::from_secs(10));

    // The current log as a symlink to a host file.
    plant(
        &ct,
        &format!(
            "rm -f /run/container/logs/main.log; ln -s {} /run/container/logs/main.log",
            victim.existing.display()
        ),
    );
    let o = logs().expect("`container logs` hangs");
    assert!(!text(&o.stdout).contains(VICTIM_MARKER.trim()), "logs printed the host file {}", out_text(&o));
    assert!(!o.status.success(), "logs of a planted symlink must fail {}", out_text(&o));
    assert!(text(&o.stderr).contains("main.log"), "the error names the log {}", out_text(&o));

    // The rotated part as a symlink, the current log an ordinary (empty) file.
    plant(
        &ct,
        &format!(
            "rm -f /run/container/logs/main.log; : > /run/container/logs/main.log; ln -s {} /run/container/logs/main.log.1",
            victim.existing.display()
        ),
    );
    let o = logs().expect("`container logs` hangs");
    assert!(!text(&o.stdout).contains(VICTIM_MARKER.trim()), "logs printed the host file {}", out_text(&o));
    assert!(!o.status.success(), "logs of a planted symlink must fail {}", out_text(&o));
    assert!(text(&o.stderr).contains("main.log.1"), "the error names the log {}", out_text(&o));

    // The logs folder itself as a symlink to the host file's folder.
    let dir = victim.existing.parent().unwrap();
    plant(&ct, &format!("rm -rf /run/container/logs; ln -s {} /run/container/logs", dir.display()));
    std::fs::write(dir.join("main.log"), VICTIM_MARKER).unwrap();
    let o = logs().expect("`container logs` hangs");
    std::fs::remove_file(dir.join("main.log")).unwrap();
    assert!(!text(&o.stdout).contains(VICTIM_MARKER.trim()), "logs printed a host file {}", out_text(&o));
    assert!(!o.status.success(), "logs through a planted folder symlink must fail {}", out_text(&o));

    // A FIFO nobody writes to: must not hang.
    plant(&ct, "rm -f /run/container/logs; mkdir /run/container/logs; mkfifo /run/container/logs/main.log");
    let o = logs().expect("`container logs` hangs on a planted FIFO");
    assert!(!o.status.success(), "logs of a planted FIFO must fail {}", out_text(&o));
    assert!(text(&o.stderr).contains("main.log"), "the error names the log {}", out_text(&o));

    victim.assert_unchanged();
    assert!(running(&ct), "the container stopped");
}

#[test]
fn restart_never_opens_a_planted_supervisor_log() {
    require_host!();
    let victim = Victim::new();
    let ct = Ct::new("esc-st-suplog", SLEEPER);
    ct.apply_ok();
    for target in [&victim.absent, &victim.existing] {
        plant(
            &ct,
            &format!("rm -f /run/container/supervisor.log; ln -s {} /run/container/supervisor.log", target.display()),
        );
        let o = run(&["restart", &ct.name]);
        assert!(o.status.success(), "restart must ignore the planted supervisor.log {}", out_text(&o));
        victim.assert_unchanged();
        // The stale name is removed (unlink never follows it), never opened.
        let link = ct.dirs().join("run/supervisor.log");
        assert!(link.symlink_metadata().is_err(), "the planted supervisor.log is still there");
        assert!(ct.dirs().join("supervisor.log").symlink_metadata().unwrap().file_type().is_file());
    }
    victim.assert_unchanged();
    assert!(running(&ct));
}

#[test]
fn restart_never_writes_through_a_planted_temp_file() {
    require_host!();
    let victim = Victim::new();
    let ct = Ct::new("esc-st-tmp", SLEEPER);
    ct.apply_ok();
    let tmp = "/run/container/.supervisor.json.tmp";
    plant(&ct, &format!("ln -sf {} {tmp}", victim.existing.display()));
    let o = run(&["restart", &ct.name]);
    assert!(o.status.success(), "restart must ignore the planted temp file {}", out_text(&o));
    victim.assert_unchanged();
    let cfg = ct.dirs().join("supervisor.json");
    assert!(cfg.symlink_metadata().unwrap().file_type().is_file(), "supervisor.json is not a regular file");
    assert!(ct.dirs().join("run/supervisor.json").symlink_metadata().is_err(), "a config in the run folder");
    // The same for an absent target.
    plant(&ct, &format!("rm -f {tmp}; ln -s {} {tmp}", victim.absent.display()));
    let o = run(&["restart", &ct.name]);
    assert!(o.status.success(), "restart must ignore the planted temp file {}", out_text(&o));
    victim.assert_unchanged();
    assert!(running(&ct));
}

#[test]
fn stop_never_talks_to_another_containers_socket() {
    require_host!();
    let a = Ct::new("esc-st-sock-a", SLEEPER);
    let b = Ct::new("esc-st-sock-b", SLEEPER);
    a.apply_ok();
    b.apply_ok();
    let (pid_a, pid_b) = (a.pid1(), b.pid1());
    let other = b.dirs().join("run/control.sock");
    assert!(other.exists());
    plant(&a, &format!("rm -f /run/container/control.sock; ln -s {} /run/container/control.sock", other.display()));
    let o = run(&["stop", &a.name]);
    assert!(o.status.success(), "stop {} {}", a.name, out_text(&o));
    assert!(!alive(pid_a) && !running(&a), "{} still runs", a.name);
    assert!(alive(pid_b) && running(&b), "stopping {} stopped {}", a.name, b.name);
    assert_eq!(b.pid1(), pid_b);
    // A restart through the planted symlink (now a plain file of the stopped one)
    // does not reach b either.
    ok(&["start", &a.name]);
    assert!(running(&a) && running(&b));
    assert_eq!(b.pid1(), pid_b);
}

#[test]
fn status_and_list_never_hang_on_a_planted_fifo() {
    require_host!();
    let a = Ct::new("esc-st-fifo-a", SLEEPER);
    let b = Ct::new("esc-st-fifo-b", SLEEPER);
    a.apply_ok();
    b.apply_ok();
    plant(&a, "rm -f /run/container/status.json; mkfifo /run/container/status.json");
    let quick = Duration::from_secs(3);
    for args in [&["status", &a.name][..], &["status", &a.name, "--json"], &["status"], &["list"], &["list", "--json"]]
    {
        let o = run_within(args, quick).unwrap_or_else(|| panic!("`container {args:?}` hangs on a planted FIFO"));
        assert!(o.status.success(), "container {args:?} {}", out_text(&o));
        let out = text(&o.stdout);
        if args.len() == 1 || args[1] == "--json" {
            assert!(out.contains(&b.name), "container {args:?} lost {}: {out}", b.name);
        }
        assert!(out.contains(&a.name), "container {args:?} lost {}: {out}", a.name);
    }
    let st = b.status();
    assert_eq!(st["status"]["services"]["main"]["state"], "ready", "{st}");
    assert!(running(&a) && running(&b));
}
