//! No I/O error kills a running container: with its state folder on a full tmpfs,
//! or its log folder read-only, PID 1 keeps running, the service keeps answering
//! (its output is drained and dropped, never left to block it), `container status`
//! reports the dropped log lines, and logging resumes once the fault is gone.
//!
//! Host tier (root: real containers, mounts). Address salt 107.

mod support;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;
use support::*;

const SALT: u32 = 107;

fn spec(n: u32) -> String {
    format!(
        r#"base = "host"

[network]
ipv4 = "{}"
ipv6 = "{}"

[[files]]
path = "/srv/www/index.html"
content = "hello from the faults test"

[processes.web]
command = ["/usr/bin/python3", "-u", "-m", "http.server", "8080", "--bind", "::", "--directory", "/srv/www"]
user = "nobody"
ready = {{ tcp = 8080 }}
"#,
        v4(SALT, n),
        v6(SALT, n)
    )
}

/// `GET path` over HTTP/1.0; the status line, or what failed.
fn get(host: &str, path: &str) -> Result<String, String> {
    let addr = format!("{host}:8080");
    let sock = addr.parse().map_err(|e| format!("{addr}: {e}"))?;
    let mut s = TcpStream::connect_timeout(&sock, Duration::from_secs(5)).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(5))).map_err(|e| e.to_string())?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").map_err(|e| format!("write: {e}"))?;
    let mut body = Vec::new();
    s.read_to_end(&mut body).map_err(|e| format!("read: {e}"))?;
    let text = String::from_utf8_lossy(&body).into_owned();
    match text.lines().next() {
        Some(l) if l.starts_with("HTTP/") => Ok(l.to_string()),
        _ => Err(format!("no HTTP answer: {text:?}")),
    }
}

/// `n` requests for paths `/<tag>-<i>-<pad>` (each logged by the service with its
/// path: `pad` long lines fill the log fast); every one must be answered.
#[track_caller]
fn hammer(ct: &Ct, host: &str, tag: &str, n: usize, pad: usize) {
    let pad = "p".repeat(pad);
    for i in 0..n {
        if let Err(e) = get(host, &format!("/{tag}-{i}-{pad}")) {
            panic!(
                "request {i} of {n} ({tag}) was not answered: {e}\nstatus: {}\nlogs: {}",
                status_text(ct),
                ct.logs()
            );
        }
    }
}

fn status_text(ct: &Ct) -> String {
    let out = run(&["status", &ct.name]);
    format!("{}{}", text(&out.stdout), text(&out.stderr))
}

/// Host pids of the children of host process `pid`.
fn children_of(pid: i64) -> Vec<i32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(p) = e.file_name().to_string_lossy().parse::<i32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else { continue };
        // pid (comm) state ppid …; comm may hold spaces, so after the last ')'.
        let ppid = stat.rsplit_once(')').and_then(|(_, r)| r.split_whitespace().nth(1)?.parse::<i64>().ok());
        if ppid == Some(pid) {
            out.push(p);
        }
    }
    out
}

/// PID 1 is the same process and the container says it is running.
#[track_caller]
fn still_running(ct: &Ct, pid1: i64) {
    let st = ct.status();
    assert_eq!(st["state"], "running", "the container died: {st:#}\nlogs: {}", ct.logs());
    assert_eq!(st["pid"].as_i64(), Some(pid1), "PID 1 changed: {st:#}");
}

/// Both log files of `web` (the current one and the rotated one), as the host sees them.
fn web_logs(ct: &Ct) -> String {
    let logs = ct.dirs().join("run/logs");
    let read = |p: PathBuf| std::fs::read(p).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
    read(logs.join("web.log.1")) + read(logs.join("web.log")).as_str()
}

/// A tmpfs mounted over a container's (not yet created) folder, and the container
/// on it: destroyed, then unmounted (lazily: PID 1 may still hold files), when dropped.
struct OnTmpfs {
    ct: Option<Ct>,
    dir: PathBuf,
}

impl Drop for OnTmpfs {
    fn drop(&mut self) {
        drop(self.ct.take());
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn a_full_state_folder_leaves_the_container_running_and_counts_dropped_lines() {
    require_host!();
    let name = format!("sff{}", slice(SALT));
    let dir = root().join("containers").join(&name);
    std::fs::create_dir_all(&dir).unwrap();
    let mut guard = OnTmpfs { ct: None, dir: dir.clone() };
    host_ok(&["mount", "-t", "tmpfs", "-o", "size=16m,mode=0700", "ctfaults", dir.to_str().unwrap()]);
    let ct = guard.ct.insert(Ct::new(&name, &spec(1)));
    ct.apply_ok();
    let addr = v4(SALT, 1);
    hammer(ct, &addr, "before", 5, 10);
    let pid1 = ct.pid1();

    // Fill the tmpfs: every write of PID 1 there (service logs, status.json, its own
    // supervisor.log) now fails with ENOSPC.
    let fill = dir.join("fill");
    let _ = Command::new("sh").arg("-c").arg(format!("cat /dev/zero > {}", fill.display())).status();
    assert!(std::fs::metadata(&fill).map(|m| m.len()).unwrap_or(0) > 1 << 20, "the tmpfs was not filled");

    hammer(ct, &addr, "full", 300, 200);
    still_running(ct, pid1);
    let st = status_text(ct);
    let dropped = st
        .lines()
        .find(|l| l.contains("lines dropped (No space left on device)"))
        .unwrap_or_else(|| panic!("status does not report dropped log lines:\n{st}"));
    let n: u64 = dropped.trim().trim_start_matches("log: ").split(' ').next().unwrap().parse().unwrap();
    assert!(n >= 300, "only {n} lines counted as dropped for 300 requests: {dropped}");
    let json = ct.status();
    assert!(json["status"]["services"]["web"]["log_dropped"].as_u64().unwrap_or(0) >= 300, "{json:#}");

    // The fault goes away: logging resumes.
    std::fs::remove_file(&fill).unwrap();
    hammer(ct, &addr, "after-full-marker", 3, 10);
    eventually("logging to resume after the disk was freed", 20, || {
        web_logs(ct).contains("after-full-marker").then_some(())
    });
    still_running(ct, pid1);
}

/// A read-only bind mount over the container's log folder, made in its own mount
/// namespace (where PID 1 writes; mounts do not propagate into it; `-r`: its root,
/// the one it pivoted into), undone when dropped. Its files PID 1 holds open stay
/// writable (they were opened through the mount below): what fails is what opens,
/// creates or renames there, i.e. the rotation at 1 MiB and every write after it.
const LOGS: &str = "/run/container/logs";

struct ReadOnlyLogs {
    pid1: i64,
    on: bool,
}

impl ReadOnlyLogs {
    fn mount(pid1: i64) -> ReadOnlyLogs {
        let pid = pid1.to_string();
        host_ok(&["nsenter", "-t", &pid, "-m", "-r", "mount", "--bind", LOGS, LOGS]);
        let guard = ReadOnlyLogs { pid1, on: true };
        // nosuid, nodev: the flags of the mount below, which a remount must keep.
        host_ok(&["nsenter", "-t", &pid, "-m", "-r", "mount", "-o", "remount,bind,ro,nosuid,nodev", LOGS]);
        guard
    }

    fn unmount(&mut self) {
        if std::mem::take(&mut self.on) {
            let pid = self.pid1.to_string();
            // `-p` too: umount reads /proc/self/mountinfo, which the container's
            // /proc has only for its own processes.
            let _ = Command::new("nsenter").args(["-t", &pid, "-m", "-p", "-r", "umount", "-l", LOGS]).status();
        }
    }
}

impl Drop for ReadOnlyLogs {
    fn drop(&mut self) {
        self.unmount();
    }
}

#[test]
fn a_read_only_log_folder_leaves_the_container_running_and_counts_dropped_lines() {
    require_host!();
    let ct = Ct::new(&format!("sfr{}", slice(SALT)), &spec(2));
    ct.apply_ok();
    let addr = v4(SALT, 2);
    hammer(&ct, &addr, "before", 5, 10);
    let pid1 = ct.pid1();
    // Nothing in the log folder can be created or renamed any more: the log cannot
    // rotate (at 1 MiB).
    let mut ro = ReadOnlyLogs::mount(pid1);
    let probe = Command::new("nsenter")
        .args(["-t", &pid1.to_string(), "-m", "-r", "touch", "/run/container/logs/.probe"])
        .output()
        .unwrap();
    assert!(!probe.status.success(), "the log folder is still writable");

    // About 6 KiB of log per request: well past the rotation size.
    hammer(&ct, &addr, "ro", 300, 6000);
    // A service restarting meanwhile (killed, restarted by its policy) starts and
    // logs into the same read-only folder.
    for pid in children_of(pid1) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
    }
    eventually("web to restart", 20, || {
        (ct.status()["status"]["services"]["web"]["restarts"].as_u64() >= Some(1)).then_some(())
    });
    eventually("web to answer again", 20, || get(&addr, "/").ok());
    hammer(&ct, &addr, "ro-after-restart", 3, 10);
    still_running(&ct, pid1);
    let st = status_text(&ct);
    assert!(st.contains("lines dropped (Read-only file system)"), "status does not report dropped log lines:\n{st}");

    ro.unmount();
    hammer(&ct, &addr, "after-ro-marker", 3, 10);
    let resumed = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(200));
        web_logs(&ct).contains("after-ro-marker")
    });
    let mounts = std::fs::read_to_string(format!("/proc/{pid1}/mountinfo")).unwrap_or_default();
    let mounts: Vec<&str> = mounts.lines().filter(|l| l.contains("/run/container")).collect();
    assert!(resumed, "logging did not resume once the log folder was writable\n{mounts:#?}\n{}", status_text(&ct));
    still_running(&ct, pid1);
}
